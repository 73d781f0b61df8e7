/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The device-state writer: the stream is built in memory (device state is
 * small) and handed out in pieces of any size with devstate_writer_read(),
 * which is what a MIG_DATA_READ handler needs.
 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "state/devstate-wire.h"

struct DevStateWriter {
        GByteArray *buf;
        int error;                      /* sticky, first one */
        bool in_section;
        size_t section_off;             /* offset of the open section's header */
        bool finished;
        size_t read_off;
};

static int fail(DevStateWriter *w, int err) {
        if (!w->error)
                w->error = err;
        return w->error;
}

static void put16(GByteArray *b, uint16_t v) {
        v = htole16(v);
        g_byte_array_append(b, (const guint8 *) &v, 2);
}

static void put32(GByteArray *b, uint32_t v) {
        v = htole32(v);
        g_byte_array_append(b, (const guint8 *) &v, 4);
}

static bool valid_name(const char *s, size_t min, size_t max) {
        size_t len;

        if (!s)
                return min == 0;
        len = strlen(s);
        return len >= min && len <= max && devstate_printable((const uint8_t *) s, len);
}

DevStateWriter *devstate_writer_new(const char *device_type, const char *device_id) {
        DevStateWriter *w = g_new0(DevStateWriter, 1);
        size_t tl, il;

        w->buf = g_byte_array_sized_new(4096);
        if (!valid_name(device_type, 1, DEVSTATE_MAX_TYPE_LEN) || !valid_name(device_id, 0, DEVSTATE_MAX_ID_LEN)) {
                fail(w, -EINVAL);
                return w;
        }
        tl = strlen(device_type);
        il = device_id ? strlen(device_id) : 0;
        g_byte_array_append(w->buf, (const guint8 *) DEVSTATE_MAGIC, DEVSTATE_MAGIC_LEN);
        put16(w->buf, DEVSTATE_VERSION_MAJOR);
        put16(w->buf, DEVSTATE_VERSION_MINOR);
        put16(w->buf, (uint16_t) tl);
        g_byte_array_append(w->buf, (const guint8 *) device_type, (guint) tl);
        put16(w->buf, (uint16_t) il);
        if (il)
                g_byte_array_append(w->buf, (const guint8 *) device_id, (guint) il);
        return w;
}

void devstate_writer_free(DevStateWriter *w) {
        if (!w)
                return;
        g_byte_array_unref(w->buf);
        g_free(w);
}

static void section_header(GByteArray *b, uint16_t id, uint16_t flags, uint32_t instance, uint32_t len) {
        put16(b, id);
        put16(b, flags);
        put32(b, instance);
        put32(b, len);
}

int devstate_writer_begin(DevStateWriter *w, uint16_t id, uint32_t instance, unsigned flags) {
        if (w->error)
                return w->error;
        if (w->in_section || w->finished || id == DEVSTATE_END_ID || (flags & ~DEVSTATE_F_MANDATORY))
                return fail(w, -EINVAL);
        w->in_section = true;
        w->section_off = w->buf->len;
        section_header(w->buf, id, (uint16_t) flags, instance, 0);
        return 0;
}

int devstate_writer_end(DevStateWriter *w) {
        size_t len;
        uint32_t le;

        if (w->error)
                return w->error;
        if (!w->in_section)
                return fail(w, -EINVAL);
        len = w->buf->len - w->section_off - DEVSTATE_SECTION_HDR;
        if (len > UINT32_MAX)
                return fail(w, -E2BIG);
        le = htole32((uint32_t) len);
        memcpy(w->buf->data + w->section_off + 8, &le, 4);
        w->in_section = false;
        return 0;
}

int devstate_put_field(DevStateWriter *w, uint16_t field, DevStateType type, unsigned flags, const void *value,
                       size_t len) {
        int fixed = devstate_fixed_size((unsigned) type);

        if (w->error)
                return w->error;
        if (!w->in_section || field == 0 || fixed < 0 || (fixed > 0 && len != (size_t) fixed) ||
            (flags & ~DEVSTATE_F_MANDATORY) || (len && !value))
                return fail(w, -EINVAL);
        if (type == DEVSTATE_T_BOOL && *(const uint8_t *) value > 1)
                return fail(w, -EINVAL);
        if (type == DEVSTATE_T_STRING && !devstate_printable(value, len))
                return fail(w, -EINVAL);
        if (len > UINT32_MAX - DEVSTATE_FIELD_HDR || w->buf->len > G_MAXUINT - DEVSTATE_FIELD_HDR - len)
                return fail(w, -E2BIG);
        put16(w->buf, field);
        g_byte_array_append(w->buf, (const guint8[]) { (guint8) type, (guint8) flags }, 2);
        put32(w->buf, (uint32_t) len);
        if (len)
                g_byte_array_append(w->buf, value, (guint) len);
        return 0;
}

int devstate_put_u8(DevStateWriter *w, uint16_t field, uint8_t v) {
        return devstate_put_field(w, field, DEVSTATE_T_U8, DEVSTATE_F_MANDATORY, &v, 1);
}

int devstate_put_u16(DevStateWriter *w, uint16_t field, uint16_t v) {
        v = htole16(v);
        return devstate_put_field(w, field, DEVSTATE_T_U16, DEVSTATE_F_MANDATORY, &v, 2);
}

int devstate_put_u32(DevStateWriter *w, uint16_t field, uint32_t v) {
        v = htole32(v);
        return devstate_put_field(w, field, DEVSTATE_T_U32, DEVSTATE_F_MANDATORY, &v, 4);
}

int devstate_put_u64(DevStateWriter *w, uint16_t field, uint64_t v) {
        v = htole64(v);
        return devstate_put_field(w, field, DEVSTATE_T_U64, DEVSTATE_F_MANDATORY, &v, 8);
}

int devstate_put_bool(DevStateWriter *w, uint16_t field, bool v) {
        uint8_t b = v ? 1 : 0;
        return devstate_put_field(w, field, DEVSTATE_T_BOOL, DEVSTATE_F_MANDATORY, &b, 1);
}

int devstate_put_bytes(DevStateWriter *w, uint16_t field, const void *data, size_t len) {
        return devstate_put_field(w, field, DEVSTATE_T_BYTES, DEVSTATE_F_MANDATORY, data, len);
}

int devstate_put_string(DevStateWriter *w, uint16_t field, const char *s) {
        if (!s)
                return fail(w, -EINVAL);
        return devstate_put_field(w, field, DEVSTATE_T_STRING, DEVSTATE_F_MANDATORY, s, strlen(s));
}

int devstate_writer_finish(DevStateWriter *w) {
        uint32_t crc;

        if (w->error)
                return w->error;
        if (w->in_section || w->finished)
                return fail(w, -EINVAL);
        section_header(w->buf, DEVSTATE_END_ID, 0, 0, DEVSTATE_CRC_LEN);
        crc = devstate_crc32c(0, w->buf->data, w->buf->len);
        put32(w->buf, crc);
        w->finished = true;
        return 0;
}

ssize_t devstate_writer_read(DevStateWriter *w, void *buf, size_t len) {
        size_t n;

        if (w->error || !w->finished)
                return -EINVAL;
        n = MIN(len, w->buf->len - w->read_off);
        if (n)
                memcpy(buf, w->buf->data + w->read_off, n);
        w->read_off += n;
        return (ssize_t) n;
}

const uint8_t *devstate_writer_data(const DevStateWriter *w, size_t *len) {
        if (w->error || !w->finished)
                return NULL;
        *len = w->buf->len;
        return w->buf->data;
}
