/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the SSE4.2 crc32
 * instruction where the CPU has it (the same polynomial), three streams at
 * once over long buffers, else byte-wise with a table built once.  Device
 * states are a few KiB; migrated images go through it by the GiB.
 */
#include <string.h>

#include <glib.h>

#include "state/devstate.h"

#define CRC32C_POLY 0x82f63b78u

static uint32_t crc_table[256];

static void crc_build_table(void) {
        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;

                for (int k = 0; k < 8; k++)
                        c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
                crc_table[i] = c;
        }
}

/*
 * The crc32 instruction has a latency of three cycles and a throughput of
 * one: three independent CRCs over three thirds of a block keep it busy, and
 * are then combined by shifting (multiplying by x^(8·len) modulo the
 * polynomial, one table lookup per byte of the CRC).  The same method as
 * Mark Adler's crc32c.c and the kernel's crc32c-intel.
 */
#define CRC_LONG 8192u
#define CRC_SHORT 256u

static uint32_t crc_long[4][256], crc_short[4][256];

static uint32_t gf2_times(const uint32_t *mat, uint32_t vec) {
        uint32_t sum = 0;

        for (; vec; vec >>= 1, mat++)
                if (vec & 1)
                        sum ^= *mat;
        return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat) {
        for (int n = 0; n < 32; n++)
                square[n] = gf2_times(mat, mat[n]);
}

/* The operator that appends len zero bytes to a CRC register, as four byte tables. */
static void crc_zeros(uint32_t zeros[4][256], size_t len) {
        uint32_t odd[32], even[32], *op = even;

        odd[0] = CRC32C_POLY;
        for (int n = 1; n < 32; n++)
                odd[n] = 1u << (n - 1);
        gf2_square(even, odd);          /* two zero bits */
        gf2_square(odd, even);          /* four */
        for (;;) {
                gf2_square(even, odd);  /* eight, then 32, ...: one byte at the first round */
                op = even;
                len >>= 1;
                if (!len)
                        break;
                gf2_square(odd, even);
                op = odd;
                len >>= 1;
                if (!len)
                        break;
        }
        for (uint32_t n = 0; n < 256; n++)
                for (int k = 0; k < 4; k++)
                        zeros[k][n] = gf2_times(op, n << (8 * k));
}

static uint32_t crc_shift(uint32_t zeros[4][256], uint32_t crc) {
        return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^
               zeros[3][crc >> 24];
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint64_t crc_words(uint64_t c, const uint8_t *p, size_t len) {
        for (; len >= 8; p += 8, len -= 8) {
                uint64_t v;

                memcpy(&v, p, 8);
                c = __builtin_ia32_crc32di(c, v);
        }
        return c;
}

__attribute__((target("sse4.2")))
static uint32_t crc3(uint32_t crc, const uint8_t **pp, size_t *lenp, size_t block, uint32_t zeros[4][256]) {
        const uint8_t *p = *pp;
        size_t len = *lenp;

        while (len >= 3 * block) {
                uint64_t c0 = crc, c1 = 0, c2 = 0;

                for (const uint8_t *end = p + block; p < end; p += 8) {
                        uint64_t v0, v1, v2;

                        memcpy(&v0, p, 8);
                        memcpy(&v1, p + block, 8);
                        memcpy(&v2, p + 2 * block, 8);
                        c0 = __builtin_ia32_crc32di(c0, v0);
                        c1 = __builtin_ia32_crc32di(c1, v1);
                        c2 = __builtin_ia32_crc32di(c2, v2);
                }
                crc = crc_shift(zeros, (uint32_t) c0) ^ (uint32_t) c1;
                crc = crc_shift(zeros, crc) ^ (uint32_t) c2;
                p += 2 * block;
                len -= 3 * block;
        }
        *pp = p;
        *lenp = len;
        return crc;
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t len) {
        size_t words;

        crc = crc3(crc, &p, &len, CRC_LONG, crc_long);
        crc = crc3(crc, &p, &len, CRC_SHORT, crc_short);
        words = len & ~(size_t) 7;
        crc = (uint32_t) crc_words(crc, p, words);
        p += words;
        len -= words;
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
                crc_build_table();
                crc_zeros(crc_long, CRC_LONG);
                crc_zeros(crc_short, CRC_SHORT);
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
