/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), byte-wise with a
 * table built once.  Streams are a few KiB: simplicity over speed.
 */
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

uint32_t devstate_crc32c(uint32_t crc, const void *buf, size_t len) {
        static gsize once = 0;
        const uint8_t *p = buf;

        if (g_once_init_enter(&once)) {
                build_table();
                g_once_init_leave(&once, 1);
        }
        crc = ~crc;
        for (size_t i = 0; i < len; i++)
                crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
        return ~crc;
}
