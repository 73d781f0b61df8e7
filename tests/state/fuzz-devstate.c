/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the device-state reader.  Input: one control byte,
 * then the stream.  Control bit 0 rewrites the last four bytes as the
 * stream's checksum, so mutations get past the CRC into section and field
 * checks; bits 1..7 pick the piece size the stream is fed in.  Whatever
 * the reader accepts is read back through every getter.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <glib.h>

#include "sample.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_back(const DevStateReader *r) {
        for (size_t i = 0; i < sample_n_sections; i++) {
                const DevStateSectionSpec *spec = &sample_sections[i];
                unsigned n = devstate_reader_count(r, spec->id);

                for (unsigned k = 0; k < n; k++) {
                        const DevStateSection *s = devstate_reader_nth(r, spec->id, k);
                        uint64_t v64;
                        uint32_t v32;
                        uint16_t v16;
                        uint8_t v8;
                        bool b;
                        const void *p;
                        size_t len;
                        char str[SAMPLE_NAME_MAX + 1];

                        for (size_t f = 0; f < spec->n_fields; f++) {
                                uint16_t id = spec->fields[f].id;
                                (void) devstate_get_u8(s, id, &v8);
                                (void) devstate_get_u16(s, id, &v16);
                                (void) devstate_get_u32(s, id, &v32);
                                (void) devstate_get_u64(s, id, &v64);
                                (void) devstate_get_bool(s, id, &b);
                                if (devstate_get_bytes(s, id, &p, &len) == 0 && len)
                                        v8 = ((const uint8_t *) p)[len - 1];
                                (void) devstate_get_string(s, id, str, sizeof(str));
                        }
                        (void) devstate_section_instance(s);
                        (void) v8;
                }
        }
        (void) sample_check(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        g_autoptr(DevStateReader) r = NULL;
        g_autoptr(GString) desc = g_string_new(NULL);
        g_autofree uint8_t *s = NULL;
        size_t chunk, off = 0, len;
        int ret = 0;

        if (size < 1)
                return 0;
        len = size - 1;
        s = g_memdup2(data + 1, len);
        if ((data[0] & 1) && len >= 4) {
                uint32_t crc = GUINT32_TO_LE(devstate_crc32c(0, s, len - 4));
                memcpy(s + len - 4, &crc, 4);
        }
        chunk = (data[0] >> 1) ? (data[0] >> 1) : len;
        r = sample_reader();
        while (off < len && ret == 0) {
                size_t n = MIN(chunk, len - off);
                ret = devstate_reader_feed(r, s + off, n);
                off += n;
        }
        if (ret == 0 && devstate_reader_finish(r) == 0)
                read_back(r);
        (void) devstate_describe(s, len, desc);
        return 0;
}
