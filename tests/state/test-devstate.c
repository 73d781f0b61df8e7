/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The device-state format: round trips in pieces of every size, the golden
 * sample stream (wire format stability), corruption of every byte,
 * truncation at every length, and each class of bad stream with its errno
 * and message.
 *
 * DEVSTATE_REGENERATE=1 rewrites the golden file (golden/sample.bin) and
 * the fuzz seeds made from it (corpus/) from the current writer; review the
 * diff before committing them.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "sample.h"
#include "state/devstate-wire.h"

static GBytes *sample_bytes(void) {
        g_autoptr(DevStateWriter) w = sample_write();
        const uint8_t *d;
        size_t len;

        d = devstate_writer_data(w, &len);
        assert_non_null(d);
        return g_bytes_new(d, len);
}

/* Feed buf in pieces of chunk bytes (0: all at once), then finish. */
static int feed_all(DevStateReader *r, const uint8_t *buf, size_t len, size_t chunk) {
        size_t off = 0;
        int ret;

        if (chunk == 0)
                chunk = len ? len : 1;
        while (off < len) {
                size_t n = MIN(chunk, len - off);
                ret = devstate_reader_feed(r, buf + off, n);
                if (ret < 0)
                        return ret;
                off += n;
        }
        return devstate_reader_finish(r);
}

/* Read a stream for the sample device; when it is the sample stream (check), verify its values. */
static int read_stream_ex(const uint8_t *buf, size_t len, size_t chunk, char **msg, bool check) {
        g_autoptr(DevStateReader) r = sample_reader();
        int ret = feed_all(r, buf, len, chunk);

        if (msg)
                *msg = g_strdup(devstate_reader_error(r));
        if (ret == 0 && check)
                assert_int_equal(sample_check(r), 0);
        else if (ret < 0)
                assert_non_null(devstate_reader_error(r));
        return ret;
}

static int read_stream(const uint8_t *buf, size_t len, size_t chunk, char **msg) {
        return read_stream_ex(buf, len, chunk, msg, true);
}

static void test_crc32c(void **state) {
        /* The CRC-32C check value (RFC 3720 B.4 polynomial). */
        assert_int_equal(devstate_crc32c(0, "123456789", 9), 0xe3069283u);
        assert_int_equal(devstate_crc32c(devstate_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
        assert_int_equal(devstate_crc32c(0, NULL, 0), 0);
        /* Every length and alignment against a bit-wise reference (the CPU's instruction or the table). */
        uint8_t buf[300];
        for (unsigned i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t) (i * 37 + 11);
        for (unsigned off = 0; off < 8; off++)
                for (unsigned len = 0; len + off <= sizeof(buf); len += 7) {
                        uint32_t ref = 0xffffffffu;
                        for (unsigned i = 0; i < len; i++) {
                                ref ^= buf[off + i];
                                for (int k = 0; k < 8; k++)
                                        ref = ref & 1 ? (ref >> 1) ^ 0x82f63b78u : ref >> 1;
                        }
                        assert_int_equal(devstate_crc32c(0, buf + off, len), ~ref);
                }
}

static void test_round_trip(void **state) {
        g_autoptr(GBytes) b = sample_bytes();
        size_t len;
        const uint8_t *d = g_bytes_get_data(b, &len);
        size_t chunks[] = { 0, 1, 2, 3, 7, 12, 13, 64, 4096 };

        for (size_t i = 0; i < G_N_ELEMENTS(chunks); i++)
                assert_int_equal(read_stream(d, len, chunks[i], NULL), 0);
}

static void test_writer_read_pieces(void **state) {
        g_autoptr(DevStateWriter) w = sample_write();
        g_autoptr(GByteArray) got = g_byte_array_new();
        const uint8_t *d;
        size_t len;
        uint8_t piece[5];
        ssize_t n;

        d = devstate_writer_data(w, &len);
        while ((n = devstate_writer_read(w, piece, sizeof(piece))) > 0)
                g_byte_array_append(got, piece, (guint) n);
        assert_int_equal(n, 0);
        assert_int_equal(got->len, len);
        assert_memory_equal(got->data, d, len);
        assert_int_equal(devstate_writer_read(w, piece, sizeof(piece)), 0);
}

static void test_writer_misuse(void **state) {
        g_autoptr(DevStateWriter) w = devstate_writer_new("t", NULL);
        g_autoptr(DevStateWriter) bad_type = devstate_writer_new("", NULL);
        g_autoptr(DevStateWriter) bad_id = devstate_writer_new("t", "line\nbreak");
        g_autofree char *long_type = g_strnfill(DEVSTATE_MAX_TYPE_LEN + 1, 'x');
        g_autoptr(DevStateWriter) too_long = devstate_writer_new(long_type, NULL);
        uint8_t b;
        size_t len;

        assert_int_equal(devstate_writer_finish(bad_type), -EINVAL);
        assert_int_equal(devstate_writer_finish(bad_id), -EINVAL);
        assert_int_equal(devstate_writer_finish(too_long), -EINVAL);
        /* A field outside a section: the error sticks. */
        assert_int_equal(devstate_writer_read(w, &b, 1), -EINVAL);   /* not finished */
        assert_int_equal(devstate_put_u8(w, 1, 1), -EINVAL);
        assert_int_equal(devstate_writer_begin(w, 1, 0, 0), -EINVAL);
        assert_int_equal(devstate_writer_finish(w), -EINVAL);
        assert_null(devstate_writer_data(w, &len));

        g_autoptr(DevStateWriter) w2 = devstate_writer_new("t", NULL);
        assert_int_equal(devstate_writer_begin(w2, 0, 0, 0), -EINVAL);          /* id 0 is the end */
        g_autoptr(DevStateWriter) w3 = devstate_writer_new("t", NULL);
        assert_int_equal(devstate_writer_begin(w3, 1, 0, 0), 0);
        assert_int_equal(devstate_writer_begin(w3, 2, 0, 0), -EINVAL);          /* nested */
        g_autoptr(DevStateWriter) w4 = devstate_writer_new("t", NULL);
        assert_int_equal(devstate_writer_begin(w4, 1, 0, 0), 0);
        assert_int_equal(devstate_put_field(w4, 1, DEVSTATE_T_U16, 0, "abc", 3), -EINVAL);      /* wrong size */
        g_autoptr(DevStateWriter) w5 = devstate_writer_new("t", NULL);
        assert_int_equal(devstate_writer_begin(w5, 1, 0, 0), 0);
        assert_int_equal(devstate_put_string(w5, 1, "tab\there"), -EINVAL);
        g_autoptr(DevStateWriter) w6 = devstate_writer_new("t", NULL);
        assert_int_equal(devstate_writer_begin(w6, 1, 0, 0), 0);
        assert_int_equal(devstate_writer_finish(w6), -EINVAL);                  /* section still open */
}

/* The sample stream must stay byte-identical: a change is a format change (bump the version). */
static void test_golden(void **state) {
        g_autoptr(GBytes) b = sample_bytes();
        g_autofree char *path = g_build_filename(SOURCE_DIR, "golden", "sample.bin", NULL);
        g_autofree char *golden = NULL;
        g_autoptr(GError) err = NULL;
        size_t len, glen;
        const uint8_t *d = g_bytes_get_data(b, &len);

        if (g_getenv("DEVSTATE_REGENERATE")) {
                /* Fuzz seeds: a control byte (fuzz-devstate.c), then the stream. */
                const uint8_t ctl[] = { 0x00, 0x03 };
                assert_true(g_file_set_contents(path, (const char *) d, (gssize) len, &err));
                for (size_t i = 0; i < G_N_ELEMENTS(ctl); i++) {
                        g_autofree char *name = g_strdup_printf("sample-%02x", ctl[i]);
                        g_autofree char *seed = g_build_filename(SOURCE_DIR, "corpus", name, NULL);
                        g_autofree uint8_t *s = g_malloc(len + 1);
                        s[0] = ctl[i];
                        memcpy(s + 1, d, len);
                        assert_true(g_file_set_contents(seed, (const char *) s, (gssize) len + 1, &err));
                }
                fprintf(stderr, "regenerated %s and the fuzz seeds: review the diff\n", path);
        }
        if (!g_file_get_contents(path, &golden, &glen, &err))
                fail_msg("%s: %s (run with DEVSTATE_REGENERATE=1 to create it)", path, err->message);
        assert_int_equal(glen, len);
        assert_memory_equal(golden, d, len);
        assert_memory_equal(d, "VFUDEVST\x01\x00\x00\x00", 12);
}

/* Every byte of the stream matters: any change to any byte is refused. */
static void test_corrupt_every_byte(void **state) {
        g_autoptr(GBytes) b = sample_bytes();
        size_t len;
        const uint8_t *d = g_bytes_get_data(b, &len);
        g_autofree uint8_t *c = g_memdup2(d, len);
        const uint8_t flips[] = { 0x01, 0x80, 0xff, 0x10 };
        const int allowed[] = { -EBADMSG, -ENODATA, -EPROTONOSUPPORT, -ENODEV, -EOPNOTSUPP, -E2BIG };

        for (size_t off = 0; off < len; off++) {
                for (size_t f = 0; f < G_N_ELEMENTS(flips); f++) {
                        bool known = false;
                        int r;

                        c[off] = d[off] ^ flips[f];
                        r = read_stream(c, len, (off + f) % 3 == 0 ? 0 : 1 + (off % 17), NULL);
                        for (size_t k = 0; k < G_N_ELEMENTS(allowed); k++)
                                known |= r == allowed[k];
                        if (!known)
                                fail_msg("byte %zu ^ 0x%02x: got %d", off, flips[f], r);
                        c[off] = d[off];
                }
        }
}

/* Every proper prefix is a truncated stream, whatever the piece size. */
static void test_truncate_every_length(void **state) {
        g_autoptr(GBytes) b = sample_bytes();
        size_t len;
        const uint8_t *d = g_bytes_get_data(b, &len);

        for (size_t l = 0; l < len; l++) {
                g_autofree char *msg = NULL;

                assert_int_equal(read_stream(d, l, l % 2 ? 0 : 1 + (l % 5), &msg), -ENODATA);
                assert_non_null(strstr(msg, "truncated"));
        }
        /* And one byte more than the stream is refused too. */
        {
                g_autofree uint8_t *longer = g_malloc0(len + 1);
                g_autofree char *msg = NULL;

                memcpy(longer, d, len);
                assert_int_equal(read_stream(longer, len + 1, 0, &msg), -EBADMSG);
                assert_non_null(strstr(msg, "after the end"));
                assert_int_equal(read_stream(longer, len + 1, 1, NULL), -EBADMSG);
        }
}

/* ---- hand-built streams ------------------------------------------------------ */

typedef struct Raw {
        GByteArray *b;
        size_t sec;
} Raw;

static void raw_put(Raw *r, const void *p, size_t n) {
        g_byte_array_append(r->b, p, (guint) n);
}

static void raw16(Raw *r, uint16_t v) {
        v = htole16(v);
        raw_put(r, &v, 2);
}

static void raw32(Raw *r, uint32_t v) {
        v = htole32(v);
        raw_put(r, &v, 4);
}

static Raw raw_new(uint16_t major, const char *type, const char *id) {
        Raw r = { g_byte_array_new(), 0 };

        raw_put(&r, DEVSTATE_MAGIC, 8);
        raw16(&r, major);
        raw16(&r, 0);
        raw16(&r, (uint16_t) strlen(type));
        raw_put(&r, type, strlen(type));
        raw16(&r, (uint16_t) strlen(id));
        raw_put(&r, id, strlen(id));
        return r;
}

static void raw_section(Raw *r, uint16_t id, uint16_t flags, uint32_t instance) {
        r->sec = r->b->len;
        raw16(r, id);
        raw16(r, flags);
        raw32(r, instance);
        raw32(r, 0);
}

static void raw_section_end(Raw *r) {
        uint32_t len = htole32((uint32_t) (r->b->len - r->sec - DEVSTATE_SECTION_HDR));

        memcpy(r->b->data + r->sec + 8, &len, 4);
}

static void raw_field(Raw *r, uint16_t id, uint8_t type, uint8_t flags, const void *v, uint32_t len) {
        raw16(r, id);
        raw_put(r, &type, 1);
        raw_put(r, &flags, 1);
        raw32(r, len);
        raw_put(r, v, len);
}

/* A valid regs section, optionally without the field skip (0: complete). */
static void raw_regs(Raw *r, uint16_t skip) {
        uint8_t u8 = 1, b = 0;
        uint16_t u16 = 2;
        uint32_t u32 = 3;
        uint64_t u64 = 4;

        raw_section(r, SAMPLE_SEC_REGS, DEVSTATE_F_MANDATORY, 0);
        if (skip != SAMPLE_F_U8)
                raw_field(r, SAMPLE_F_U8, DEVSTATE_T_U8, 1, &u8, 1);
        if (skip != SAMPLE_F_U16)
                raw_field(r, SAMPLE_F_U16, DEVSTATE_T_U16, 1, &u16, 2);
        if (skip != SAMPLE_F_U32)
                raw_field(r, SAMPLE_F_U32, DEVSTATE_T_U32, 1, &u32, 4);
        if (skip != SAMPLE_F_U64)
                raw_field(r, SAMPLE_F_U64, DEVSTATE_T_U64, 1, &u64, 8);
        if (skip != SAMPLE_F_BOOL)
                raw_field(r, SAMPLE_F_BOOL, DEVSTATE_T_BOOL, 1, &b, 1);
        if (skip != SAMPLE_F_BYTES)
                raw_field(r, SAMPLE_F_BYTES, DEVSTATE_T_BYTES, 1, "xyz", 3);
        raw_section_end(r);
}

/* End section with the right checksum; returns the stream (free with g_byte_array_unref). */
static GByteArray *raw_finish(Raw *r) {
        raw16(r, 0);
        raw16(r, 0);
        raw32(r, 0);
        raw32(r, 4);
        raw32(r, devstate_crc32c(0, r->b->data, r->b->len));
        return r->b;
}

/* Read a raw stream whole and in single bytes: both must agree on the errno; returns it and the message. */
static int raw_read(GByteArray *b, char **msg) {
        int r1 = read_stream_ex(b->data, b->len, 0, msg, false);
        int r2 = read_stream_ex(b->data, b->len, 1, NULL, false);

        assert_int_equal(r1, r2);
        return r1;
}

#define EXPECT(stream, err, needle)                                                                     \
        do {                                                                                            \
                g_autoptr(GByteArray) s_ = (stream);                                                    \
                g_autofree char *m_ = NULL;                                                             \
                assert_int_equal(raw_read(s_, &m_), (err));                                             \
                if (!strstr(m_, (needle)))                                                              \
                        fail_msg("message \"%s\" lacks \"%s\"", m_, (needle));                          \
        } while (0)

static void test_minimal_valid(void **state) {
        Raw r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        g_autoptr(GByteArray) b = NULL;
        g_autoptr(DevStateReader) rd = sample_reader();

        raw_regs(&r, 0);
        b = raw_finish(&r);
        assert_int_equal(feed_all(rd, b->data, b->len, 0), 0);
        assert_true(devstate_reader_done(rd));
        assert_int_equal(devstate_reader_count(rd, SAMPLE_SEC_QUEUE), 0);
        {
                const DevStateSection *s = devstate_reader_find(rd, SAMPLE_SEC_REGS, 0);
                char name[4];
                uint16_t v;
                uint32_t v32;

                assert_non_null(s);
                assert_string_equal(devstate_section_name(s), "regs");
                assert_int_equal(devstate_get_string(s, SAMPLE_F_NAME, name, sizeof(name)), -ENOENT);
                assert_int_equal(devstate_get_u32(s, SAMPLE_F_U16, &v32), -EBADMSG);   /* asked as the wrong type */
                assert_int_equal(devstate_get_u16(s, SAMPLE_F_U16, &v), 0);
                assert_int_equal(v, 2);
                assert_false(devstate_section_has(s, 99));
        }
}

static void test_bad_header(void **state) {
        Raw r;

        /* Bad magic is seen in the very first byte. */
        {
                g_autoptr(DevStateReader) rd = sample_reader();
                assert_int_equal(devstate_reader_feed(rd, "X", 1), -EBADMSG);
                assert_non_null(strstr(devstate_reader_error(rd), "bad magic"));
                assert_int_equal(devstate_reader_feed(rd, "VFU", 3), -EBADMSG);   /* sticky */
                assert_int_equal(devstate_reader_finish(rd), -EBADMSG);
        }
        r = raw_new(2, SAMPLE_TYPE, SAMPLE_ID);
        raw_regs(&r, 0);
        EXPECT(raw_finish(&r), -EPROTONOSUPPORT, "version 2.0");
        r = raw_new(0, SAMPLE_TYPE, SAMPLE_ID);
        EXPECT(raw_finish(&r), -EPROTONOSUPPORT, "version");
        r = raw_new(1, "nvme", SAMPLE_ID);
        raw_regs(&r, 0);
        EXPECT(raw_finish(&r), -ENODEV, "type 'nvme'");
        r = raw_new(1, SAMPLE_TYPE, "dev1");
        raw_regs(&r, 0);
        EXPECT(raw_finish(&r), -ENODEV, "'dev1'");
        r = raw_new(1, SAMPLE_TYPE, "");
        raw_regs(&r, 0);
        EXPECT(raw_finish(&r), -ENODEV, "this device is 'dev0'");
        r = raw_new(1, "sample\x01", SAMPLE_ID);
        EXPECT(raw_finish(&r), -EBADMSG, "not printable");
        /* Type length 0 and over the limit. */
        r = (Raw) { g_byte_array_new(), 0 };
        raw_put(&r, DEVSTATE_MAGIC, 8);
        raw16(&r, 1);
        raw16(&r, 0);
        raw16(&r, 0);
        EXPECT(r.b, -EBADMSG, "type length 0");
        r = (Raw) { g_byte_array_new(), 0 };
        raw_put(&r, DEVSTATE_MAGIC, 8);
        raw16(&r, 1);
        raw16(&r, 0);
        raw16(&r, 65);
        EXPECT(r.b, -EBADMSG, "type length 65");
        /* Identity length over the limit. */
        r = (Raw) { g_byte_array_new(), 0 };
        raw_put(&r, DEVSTATE_MAGIC, 8);
        raw16(&r, 1);
        raw16(&r, 0);
        raw16(&r, (uint16_t) strlen(SAMPLE_TYPE));
        raw_put(&r, SAMPLE_TYPE, strlen(SAMPLE_TYPE));
        raw16(&r, 300);
        EXPECT(r.b, -EBADMSG, "identity length 300");
}

static void test_checksum(void **state) {
        g_autoptr(GBytes) b = sample_bytes();
        size_t len;
        const uint8_t *d = g_bytes_get_data(b, &len);
        g_autofree uint8_t *c = g_memdup2(d, len);
        g_autofree char *msg = NULL;
        const uint8_t *hit = memmem(d, len, "hello", 5);

        /* A change inside a string value keeps the framing valid: only the checksum can tell. */
        assert_non_null(hit);
        c[hit - d] = 'j';
        assert_int_equal(read_stream(c, len, 0, &msg), -EBADMSG);
        assert_non_null(strstr(msg, "checksum mismatch"));
        /* And inside the checksum itself. */
        memcpy(c, d, len);
        c[len - 1] ^= 0x40;
        g_clear_pointer(&msg, g_free);
        assert_int_equal(read_stream(c, len, 3, &msg), -EBADMSG);
        assert_non_null(strstr(msg, "checksum mismatch"));
}

static void test_sections(void **state) {
        Raw r;
        uint32_t v = 5;
        uint16_t q16 = 8;
        uint64_t q64 = 9;

        /* Unknown mandatory section: refused; unknown optional one: skipped. */
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_regs(&r, 0);
        raw_section(&r, 77, DEVSTATE_F_MANDATORY, 0);
        raw_field(&r, 1, DEVSTATE_T_U32, 1, &v, 4);
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -EOPNOTSUPP, "unknown mandatory section #77");
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_section(&r, 77, 0, 0);
        raw_field(&r, 1, DEVSTATE_T_U32, 1, &v, 4);
        raw_section_end(&r);
        raw_regs(&r, 0);
        {
                g_autoptr(GByteArray) s = raw_finish(&r);
                assert_int_equal(raw_read(s, NULL), 0);
        }
        /* Unknown optional field in a known section: skipped; mandatory: refused. */
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_regs(&r, 0);
        raw_section(&r, SAMPLE_SEC_OPTIONAL, 0, 0);
        raw_field(&r, SAMPLE_F_U32, DEVSTATE_T_U32, 1, &v, 4);
        raw_field(&r, 40, DEVSTATE_T_U32, 0, &v, 4);
        raw_section_end(&r);
        {
                g_autoptr(GByteArray) s = raw_finish(&r);
                assert_int_equal(raw_read(s, NULL), 0);
        }
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_regs(&r, 0);
        raw_section(&r, SAMPLE_SEC_OPTIONAL, 0, 0);
        raw_field(&r, SAMPLE_F_U32, DEVSTATE_T_U32, 1, &v, 4);
        raw_field(&r, 40, DEVSTATE_T_U32, 1, &v, 4);
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -EOPNOTSUPP, "unknown mandatory field #40");
        /* Missing required section and field. */
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        EXPECT(raw_finish(&r), -EBADMSG, "lacks the required section 'regs'");
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_regs(&r, SAMPLE_F_BYTES);
        EXPECT(raw_finish(&r), -EBADMSG, "lacks field 'blob'");
        /* Duplicate section instance, instance out of range. */
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_regs(&r, 0);
        raw_regs(&r, 0);
        EXPECT(raw_finish(&r), -EBADMSG, "appears twice");
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_regs(&r, 0);
        raw_section(&r, SAMPLE_SEC_QUEUE, 1, 8);
        raw_field(&r, SAMPLE_F_U16, DEVSTATE_T_U16, 1, &q16, 2);
        raw_field(&r, SAMPLE_F_U64, DEVSTATE_T_U64, 1, &q64, 8);
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -EBADMSG, "instance 8, at most 7");
        /* Unknown section flags; a malformed end section. */
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_section(&r, SAMPLE_SEC_REGS, 0x8001, 0);
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -EBADMSG, "unknown flags");
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_regs(&r, 0);
        raw16(&r, 0);
        raw16(&r, 0);
        raw32(&r, 0);
        raw32(&r, 8);
        EXPECT(r.b, -EBADMSG, "malformed end section");
}

static void test_fields(void **state) {
        Raw r;
        uint16_t v16 = 1;
        uint8_t two = 2;
        uint8_t big[SAMPLE_BYTES_MAX + 1] = { 0 };

        /* Wrong type for a known field, wrong size for the type, bad bool, unknown type, id 0. */
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_regs(&r, 0);
        raw_section(&r, SAMPLE_SEC_OPTIONAL, 0, 0);
        raw_field(&r, SAMPLE_F_U32, DEVSTATE_T_U16, 1, &v16, 2);
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -EBADMSG, "type u16, expected u32");
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_regs(&r, 0);
        raw_section(&r, SAMPLE_SEC_OPTIONAL, 0, 0);
        raw_field(&r, SAMPLE_F_U32, DEVSTATE_T_U32, 1, &v16, 2);
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -EBADMSG, "a u32 is 4 bytes, not 2");
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_section(&r, SAMPLE_SEC_QUEUE, 1, 0);
        raw_field(&r, SAMPLE_F_BOOL, DEVSTATE_T_BOOL, 1, &two, 1);
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -EBADMSG, "bool value 2");
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_section(&r, SAMPLE_SEC_QUEUE, 1, 0);
        raw_field(&r, SAMPLE_F_BOOL, 9, 1, &two, 1);
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -EBADMSG, "unknown type 9");
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_section(&r, SAMPLE_SEC_QUEUE, 1, 0);
        raw_field(&r, 0, DEVSTATE_T_U8, 1, &two, 1);
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -EBADMSG, "field id 0");
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_section(&r, SAMPLE_SEC_QUEUE, 1, 0);
        raw_field(&r, SAMPLE_F_BOOL, DEVSTATE_T_BOOL, 0x81, &two, 1);
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -EBADMSG, "unknown flags 0x81");
        /* Duplicate field. */
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_section(&r, SAMPLE_SEC_QUEUE, 1, 0);
        raw_field(&r, SAMPLE_F_U16, DEVSTATE_T_U16, 1, &v16, 2);
        raw_field(&r, SAMPLE_F_U16, DEVSTATE_T_U16, 1, &v16, 2);
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -EBADMSG, "'size' appears twice");
        /* Oversize bytes and string fields. */
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_section(&r, SAMPLE_SEC_REGS, 1, 0);
        raw_field(&r, SAMPLE_F_BYTES, DEVSTATE_T_BYTES, 1, big, sizeof(big));
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -E2BIG, "'blob': 65 bytes, at most 64");
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_section(&r, SAMPLE_SEC_REGS, 1, 0);
        raw_field(&r, SAMPLE_F_NAME, DEVSTATE_T_STRING, 1, "a name longer than sixteen", 26);
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -E2BIG, "'name': 26 bytes, at most 16");
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_section(&r, SAMPLE_SEC_REGS, 1, 0);
        raw_field(&r, SAMPLE_F_NAME, DEVSTATE_T_STRING, 1, "nul\0in", 6);
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -EBADMSG, "not printable");
        /* A field running past its section. */
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_section(&r, SAMPLE_SEC_QUEUE, 1, 0);
        raw_field(&r, SAMPLE_F_U16, DEVSTATE_T_U16, 1, &v16, 2);
        raw_section_end(&r);
        r.b->data[r.sec + DEVSTATE_SECTION_HDR + 4] = 200;      /* field length */
        EXPECT(raw_finish(&r), -EBADMSG, "run past the section end");
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_section(&r, SAMPLE_SEC_QUEUE, 1, 0);
        raw16(&r, 1);
        raw16(&r, 2);
        raw_section_end(&r);
        EXPECT(raw_finish(&r), -EBADMSG, "field header runs past");
}

/* Limits are enforced from headers, before the bytes they announce arrive. */
static void test_limits(void **state) {
        Raw r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        g_autoptr(DevStateReader) rd = sample_reader();
        g_autoptr(DevStateReader) small = devstate_reader_new(SAMPLE_TYPE, SAMPLE_ID, 100);
        g_autoptr(GBytes) b = sample_bytes();
        size_t len;
        const uint8_t *d = g_bytes_get_data(b, &len);

        raw_section(&r, SAMPLE_SEC_QUEUE, 1, 0);
        {
                uint32_t huge = htole32(100u << 20);
                memcpy(r.b->data + r.sec + 8, &huge, 4);
        }
        assert_int_equal(devstate_reader_feed(rd, r.b->data, r.b->len), -E2BIG);
        assert_non_null(strstr(devstate_reader_error(rd), "section 'queue' is 104857600 bytes"));
        g_byte_array_unref(r.b);

        /* An unknown optional section larger than anything we skip. */
        r = raw_new(1, SAMPLE_TYPE, SAMPLE_ID);
        raw_section(&r, 500, 0, 0);
        {
                uint32_t huge = htole32(DEVSTATE_MAX_SKIP_SECTION + 1);
                memcpy(r.b->data + r.sec + 8, &huge, 4);
        }
        {
                g_autoptr(DevStateReader) rd2 = sample_reader();
                assert_int_equal(devstate_reader_feed(rd2, r.b->data, r.b->len), -E2BIG);
        }
        g_byte_array_unref(r.b);

        /* The whole-stream bound. */
        devstate_reader_add_sections(small, sample_sections, sample_n_sections);
        assert_int_equal(feed_all(small, d, len, 0), -E2BIG);
        assert_non_null(strstr(devstate_reader_error(small), "longer than 100 bytes"));
}

static void test_device_refusal(void **state) {
        g_autoptr(GBytes) b = sample_bytes();
        g_autoptr(DevStateReader) r = sample_reader();
        size_t len;
        const uint8_t *d = g_bytes_get_data(b, &len);

        assert_null(devstate_reader_error(r));
        assert_int_equal(feed_all(r, d, len, 0), 0);
        assert_int_equal(devstate_reader_fail(r, -EINVAL, "queue %u: size %u is not a power of two", 1, 100), -EINVAL);
        assert_int_equal(devstate_reader_fail(r, -EIO, "second"), -EINVAL);     /* the first error wins */
        assert_string_equal(devstate_reader_error(r), "queue 1: size 100 is not a power of two");
        assert_int_equal(devstate_reader_errno(r), -EINVAL);
        assert_int_equal(devstate_reader_feed(r, d, 1), -EINVAL);
}

static void test_schema_errors(void **state) {
        static const DevStateSectionSpec dup[] = {
                { 5, "a", 1, false, NULL, 0 },
                { 5, "b", 1, false, NULL, 0 },
        };
        static const DevStateSectionSpec end_id[] = { { 0, "end", 1, false, NULL, 0 } };
        g_autoptr(DevStateReader) r = devstate_reader_new("t", NULL, 0);

        assert_int_equal(devstate_reader_add_sections(r, dup, 2), -EINVAL);
        assert_int_equal(devstate_reader_add_sections(r, end_id, 1), -EINVAL);
        assert_int_equal(devstate_reader_add_sections(r, sample_sections, sample_n_sections), 0);
        assert_int_equal(devstate_reader_add_sections(r, sample_sections, 1), -EINVAL);  /* already known */
}

static void test_describe(void **state) {
        g_autoptr(GBytes) b = sample_bytes();
        g_autoptr(GString) out = g_string_new(NULL);
        g_autoptr(GString) bad = g_string_new(NULL);
        size_t len;
        const uint8_t *d = g_bytes_get_data(b, &len);

        assert_int_equal(devstate_describe(d, len, out), 0);
        assert_non_null(strstr(out->str, "type \"sample-dev\" id \"dev0\""));
        assert_non_null(strstr(out->str, "section #2 instance 2 mandatory"));
        assert_non_null(strstr(out->str, "field #7 string = \"hello\""));
        assert_non_null(strstr(out->str, "field #2 u16 = 48879"));
        assert_int_equal(devstate_describe(d, len - 1, bad), -ENODATA);
        assert_non_null(strstr(bad->str, "error: device state stream truncated"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_crc32c),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_writer_read_pieces),
                cmocka_unit_test(test_writer_misuse),
                cmocka_unit_test(test_golden),
                cmocka_unit_test(test_corrupt_every_byte),
                cmocka_unit_test(test_truncate_every_length),
                cmocka_unit_test(test_minimal_valid),
                cmocka_unit_test(test_bad_header),
                cmocka_unit_test(test_checksum),
                cmocka_unit_test(test_sections),
                cmocka_unit_test(test_fields),
                cmocka_unit_test(test_limits),
                cmocka_unit_test(test_device_refusal),
                cmocka_unit_test(test_schema_errors),
                cmocka_unit_test(test_describe),
        };

        return cmocka_run_group_tests_name("devstate", tests, NULL, NULL);
}
