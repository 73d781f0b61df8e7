/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the SSE4.2 crc32
 * instruction where the CPU has it (the same polynomial), else byte-wise
 * with a table built once.  Streams are a few KiB, but every one is
 * checked whole before it is applied, and fuzzed by the thousand.
 */
#include <string.h>

#include <glib.h>

#include "state/devstate.h"

#define CRC32C_POLY 0x82f63b78u

static uint32_t crc_table[256];

static void build_table(void) {
        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;

                for (int k = 0; k < 8; k++)
                        c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
                crc_table[i] = c;
        }
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t len) {
        uint64_t c = crc;

        for (; len >= 8; p += 8, len -= 8) {
                uint64_t v;

                memcpy(&v, p, 8);
                c = __builtin_ia32_crc32di(c, v);
        }
        crc = (uint32_t) c;
        for (; len > 0; p++, len--)
                crc = __builtin_ia32_crc32qi(crc, *p);
        return crc;
}
#endif

uint32_t devstate_crc32c(uint32_t crc, const void *buf, size_t len) {
        static gsize once = 0;
        static bool hw;
        const uint8_t *p = buf;

        if (g_once_init_enter(&once)) {
                build_table();
#if defined(__x86_64__)
                hw = __builtin_cpu_supports("sse4.2");
#endif
                g_once_init_leave(&once, 1);
        }
        crc = ~crc;
#if defined(__x86_64__)
        if (hw)
                return ~crc32c_hw(crc, p, len);
#endif
        for (size_t i = 0; i < len; i++)
                crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
        return ~crc;
}
