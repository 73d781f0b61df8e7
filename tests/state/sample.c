/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>

#include "sample.h"

static const DevStateFieldSpec regs_fields[] = {
        { SAMPLE_F_U8, DEVSTATE_T_U8, "u8", 0, true },
        { SAMPLE_F_U16, DEVSTATE_T_U16, "u16", 0, true },
        { SAMPLE_F_U32, DEVSTATE_T_U32, "u32", 0, true },
        { SAMPLE_F_U64, DEVSTATE_T_U64, "u64", 0, true },
        { SAMPLE_F_BOOL, DEVSTATE_T_BOOL, "flag", 0, true },
        { SAMPLE_F_BYTES, DEVSTATE_T_BYTES, "blob", SAMPLE_BYTES_MAX, true },
        { SAMPLE_F_NAME, DEVSTATE_T_STRING, "name", SAMPLE_NAME_MAX, false },
};

static const DevStateFieldSpec queue_fields[] = {
        { SAMPLE_F_U16, DEVSTATE_T_U16, "size", 0, true },
        { SAMPLE_F_U64, DEVSTATE_T_U64, "addr", 0, true },
        { SAMPLE_F_BOOL, DEVSTATE_T_BOOL, "enabled", 0, false },
};

static const DevStateFieldSpec opt_fields[] = {
        { SAMPLE_F_U32, DEVSTATE_T_U32, "value", 0, true },
};

const DevStateSectionSpec sample_sections[] = {
        { SAMPLE_SEC_REGS, "regs", 1, true, regs_fields, G_N_ELEMENTS(regs_fields) },
        { SAMPLE_SEC_QUEUE, "queue", 8, false, queue_fields, G_N_ELEMENTS(queue_fields) },
        { SAMPLE_SEC_OPTIONAL, "optional", 1, false, opt_fields, G_N_ELEMENTS(opt_fields) },
};
const size_t sample_n_sections = G_N_ELEMENTS(sample_sections);

static const uint8_t blob[20] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5, 0x66, 0x77, 0x88,
                                  0x99 };

DevStateWriter *sample_write(void) {
        DevStateWriter *w = devstate_writer_new(SAMPLE_TYPE, SAMPLE_ID);

        devstate_writer_begin(w, SAMPLE_SEC_REGS, 0, DEVSTATE_F_MANDATORY);
        devstate_put_u8(w, SAMPLE_F_U8, 0xa5);
        devstate_put_u16(w, SAMPLE_F_U16, 0xbeef);
        devstate_put_u32(w, SAMPLE_F_U32, 0xdeadbeef);
        devstate_put_u64(w, SAMPLE_F_U64, 0x0123456789abcdefull);
        devstate_put_bool(w, SAMPLE_F_BOOL, true);
        devstate_put_bytes(w, SAMPLE_F_BYTES, blob, sizeof(blob));
        devstate_put_string(w, SAMPLE_F_NAME, "hello");
        devstate_writer_end(w);
        for (uint32_t q = 0; q < SAMPLE_QUEUES; q++) {
                devstate_writer_begin(w, SAMPLE_SEC_QUEUE, q, DEVSTATE_F_MANDATORY);
                devstate_put_u16(w, SAMPLE_F_U16, (uint16_t) (64 << q));
                devstate_put_u64(w, SAMPLE_F_U64, 0x100000000ull + q * 0x1000);
                devstate_put_bool(w, SAMPLE_F_BOOL, q != 1);
                devstate_writer_end(w);
        }
        devstate_writer_finish(w);
        return w;
}

DevStateReader *sample_reader(void) {
        DevStateReader *r = devstate_reader_new(SAMPLE_TYPE, SAMPLE_ID, 0);

        devstate_reader_add_sections(r, sample_sections, sample_n_sections);
        return r;
}

int sample_check(const DevStateReader *r) {
        const DevStateSection *s = devstate_reader_find(r, SAMPLE_SEC_REGS, 0);
        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
        uint64_t u64;
        bool b;
        const void *data;
        size_t len;
        char name[SAMPLE_NAME_MAX + 1];

        if (!s || devstate_get_u8(s, SAMPLE_F_U8, &u8) || u8 != 0xa5 || devstate_get_u16(s, SAMPLE_F_U16, &u16) ||
            u16 != 0xbeef || devstate_get_u32(s, SAMPLE_F_U32, &u32) || u32 != 0xdeadbeef ||
            devstate_get_u64(s, SAMPLE_F_U64, &u64) || u64 != 0x0123456789abcdefull ||
            devstate_get_bool(s, SAMPLE_F_BOOL, &b) || !b || devstate_get_bytes(s, SAMPLE_F_BYTES, &data, &len) ||
            len != sizeof(blob) || memcmp(data, blob, len) != 0 ||
            devstate_get_string(s, SAMPLE_F_NAME, name, sizeof(name)) || strcmp(name, "hello") != 0)
                return -EINVAL;
        if (devstate_reader_count(r, SAMPLE_SEC_QUEUE) != SAMPLE_QUEUES)
                return -EINVAL;
        for (uint32_t q = 0; q < SAMPLE_QUEUES; q++) {
                s = devstate_reader_find(r, SAMPLE_SEC_QUEUE, q);
                if (!s || devstate_get_u16(s, SAMPLE_F_U16, &u16) || u16 != (uint16_t) (64 << q) ||
                    devstate_get_u64(s, SAMPLE_F_U64, &u64) || u64 != 0x100000000ull + q * 0x1000 ||
                    devstate_get_bool(s, SAMPLE_F_BOOL, &b) || b != (q != 1))
                        return -EINVAL;
        }
        return 0;
}
