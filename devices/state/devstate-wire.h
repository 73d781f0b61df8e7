/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The device-state wire layout (devstate.h), shared by the writer and the reader.  Not installed. */
#pragma once

#include <endian.h>
#include <stdint.h>
#include <string.h>

#include "state/devstate.h"

#define DEVSTATE_MAGIC "VFUDEVST"
#define DEVSTATE_MAGIC_LEN 8u
/* magic, major, minor, type length (the type follows, then u16 id length and the id) */
#define DEVSTATE_HDR_FIXED (DEVSTATE_MAGIC_LEN + 2u + 2u + 2u)
#define DEVSTATE_SECTION_HDR 12u        /* u16 id, u16 flags, u32 instance, u32 length */
#define DEVSTATE_FIELD_HDR 8u           /* u16 id, u8 type, u8 flags, u32 length */
#define DEVSTATE_END_ID 0u
#define DEVSTATE_CRC_LEN 4u

static inline uint16_t devstate_le16(const uint8_t *p) {
        uint16_t v;
        memcpy(&v, p, 2);
        return le16toh(v);
}

static inline uint32_t devstate_le32(const uint8_t *p) {
        uint32_t v;
        memcpy(&v, p, 4);
        return le32toh(v);
}

static inline uint64_t devstate_le64(const uint8_t *p) {
        uint64_t v;
        memcpy(&v, p, 8);
        return le64toh(v);
}

/* Size of a fixed-size type's value, 0 for variable ones, -1 for unknown types. */
static inline int devstate_fixed_size(unsigned type) {
        switch (type) {
        case DEVSTATE_T_U8:
        case DEVSTATE_T_BOOL:
                return 1;
        case DEVSTATE_T_U16:
                return 2;
        case DEVSTATE_T_U32:
                return 4;
        case DEVSTATE_T_U64:
                return 8;
        case DEVSTATE_T_BYTES:
        case DEVSTATE_T_STRING:
                return 0;
        default:
                return -1;
        }
}

/* Printable ASCII (type strings, identities, string fields). */
static inline int devstate_printable(const uint8_t *p, size_t len) {
        for (size_t i = 0; i < len; i++)
                if (p[i] < 0x20 || p[i] > 0x7e)
                        return 0;
        return 1;
}
