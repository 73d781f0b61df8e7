/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The device-state reader: bytes arrive in pieces of any size (one per
 * MIG_DATA_WRITE); each piece is appended to a bounded buffer and parsed
 * as far as it goes, so a stream for the wrong device, a bad header, an
 * unknown mandatory section or an oversize field fails at the first piece
 * that shows it.  Nothing is handed to the device before the end section's
 * checksum matched: devstate_reader_finish() is the gate.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "state/devstate-wire.h"

/* Slack for optional fields a newer writer adds to a section we know. */
#define DEVSTATE_UNKNOWN_FIELD_SLACK (64u << 10)

typedef enum ParseState {
        P_HDR_FIXED,            /* magic, version, type length */
        P_HDR_TYPE,
        P_HDR_ID_LEN,
        P_HDR_ID,
        P_SECTION_HDR,
        P_SECTION_BODY,
        P_CRC,
        P_DONE,
        _P_STATE_MAX,
} ParseState;

static const char *const parse_state_names[_P_STATE_MAX] = {
        [P_HDR_FIXED] = "the header",
        [P_HDR_TYPE] = "the device type",
        [P_HDR_ID_LEN] = "the device identity length",
        [P_HDR_ID] = "the device identity",
        [P_SECTION_HDR] = "a section header",
        [P_SECTION_BODY] = "a section",
        [P_CRC] = "the checksum",
        [P_DONE] = "nothing",
};

struct DevStateSection {
        const DevStateReader *r;
        const DevStateSectionSpec *spec;        /* NULL: described without a schema */
        uint16_t id;
        uint16_t flags;
        uint32_t instance;
        size_t off;                             /* payload offset in the buffer */
        uint32_t len;
};

struct DevStateReader {
        char *type;
        char *id;
        size_t max_stream;
        bool describe;                          /* any device, no schema, keep every section */
        GPtrArray *specs;                       /* const DevStateSectionSpec * */

        GByteArray *buf;
        size_t pos;                             /* parse position */
        uint32_t crc;
        ParseState state;
        size_t need;                            /* bytes the state needs at pos */
        uint16_t type_len, id_len;
        /* the section being received */
        DevStateSection cur;
        bool cur_skip;

        GArray *sections;                       /* DevStateSection, kept ones */
        bool done;
        int err;
        char *msg;
};

/* ---- errors --------------------------------------------------------------- */

G_GNUC_PRINTF(3, 0)
static int vfail(DevStateReader *r, int err, const char *fmt, va_list ap) {
        if (r->err)
                return r->err;
        r->err = err;
        r->msg = g_strdup_vprintf(fmt, ap);
        return err;
}

int devstate_reader_fail(DevStateReader *r, int err, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vfail(r, err, fmt, ap);
        va_end(ap);
        return r->err;
}

/* A framing error at offset off. */
G_GNUC_PRINTF(4, 5)
static int fail_at(DevStateReader *r, int err, size_t off, const char *fmt, ...) {
        g_autofree char *what = NULL;
        va_list ap;

        va_start(ap, fmt);
        what = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        return devstate_reader_fail(r, err, "device state stream, byte %zu: %s", off, what);
}

const char *devstate_reader_error(const DevStateReader *r) {
        return r->msg;
}

int devstate_reader_errno(const DevStateReader *r) {
        return r->err;
}

size_t devstate_reader_offset(const DevStateReader *r) {
        return r->pos;
}

/* ---- construction ------------------------------------------------------------ */

static const char *const type_names[_DEVSTATE_T_MAX] = {
        [DEVSTATE_T_U8] = "u8",
        [DEVSTATE_T_U16] = "u16",
        [DEVSTATE_T_U32] = "u32",
        [DEVSTATE_T_U64] = "u64",
        [DEVSTATE_T_BOOL] = "bool",
        [DEVSTATE_T_BYTES] = "bytes",
        [DEVSTATE_T_STRING] = "string",
};

const char *devstate_type_to_string(DevStateType t) {
        return t > 0 && t < _DEVSTATE_T_MAX ? type_names[t] : NULL;
}

DevStateReader *devstate_reader_new(const char *device_type, const char *device_id, size_t max_stream) {
        DevStateReader *r = g_new0(DevStateReader, 1);

        r->type = g_strdup(device_type ? device_type : "");
        r->id = g_strdup(device_id ? device_id : "");
        r->max_stream = max_stream ? max_stream : DEVSTATE_DEFAULT_MAX_STREAM;
        r->specs = g_ptr_array_new();
        r->buf = g_byte_array_new();
        r->sections = g_array_new(FALSE, TRUE, sizeof(DevStateSection));
        r->state = P_HDR_FIXED;
        r->need = DEVSTATE_HDR_FIXED;
        return r;
}

void devstate_reader_free(DevStateReader *r) {
        if (!r)
                return;
        g_free(r->type);
        g_free(r->id);
        g_ptr_array_unref(r->specs);
        g_byte_array_unref(r->buf);
        g_array_unref(r->sections);
        g_free(r->msg);
        g_free(r);
}

static const DevStateSectionSpec *find_spec(const DevStateReader *r, uint16_t id) {
        for (unsigned i = 0; i < r->specs->len; i++) {
                const DevStateSectionSpec *s = g_ptr_array_index(r->specs, i);
                if (s->id == id)
                        return s;
        }
        return NULL;
}

int devstate_reader_add_sections(DevStateReader *r, const DevStateSectionSpec *specs, size_t n) {
        if (r->buf->len > 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                const DevStateSectionSpec *s = &specs[i];

                if (s->id == DEVSTATE_END_ID || s->max_instances == 0 || find_spec(r, s->id))
                        return -EINVAL;
                for (size_t j = 0; j < i; j++)
                        if (specs[j].id == s->id)
                                return -EINVAL;
                for (size_t f = 0; f < s->n_fields; f++)
                        if (s->fields[f].id == 0 || devstate_fixed_size((unsigned) s->fields[f].type) < 0)
                                return -EINVAL;
        }
        for (size_t i = 0; i < n; i++)
                g_ptr_array_add(r->specs, (gpointer) &specs[i]);
        return 0;
}

/* The largest section a spec allows: every field at its largest, plus slack for optional newer ones. */
static uint64_t spec_max_len(const DevStateSectionSpec *s) {
        uint64_t len = DEVSTATE_UNKNOWN_FIELD_SLACK;

        for (size_t i = 0; i < s->n_fields; i++) {
                int fixed = devstate_fixed_size((unsigned) s->fields[i].type);
                len += DEVSTATE_FIELD_HDR + (fixed > 0 ? (uint64_t) fixed : s->fields[i].max_len);
        }
        return len;
}

static const char *spec_name(const DevStateSectionSpec *s, uint16_t id, char tmp[16]) {
        if (s && s->name)
                return s->name;
        snprintf(tmp, 16, "#%u", id);
        return tmp;
}

/* ---- parsing --------------------------------------------------------------------- */

static int check_header(DevStateReader *r, const uint8_t *p) {
        uint16_t major = devstate_le16(p + DEVSTATE_MAGIC_LEN), minor = devstate_le16(p + DEVSTATE_MAGIC_LEN + 2);

        if (memcmp(p, DEVSTATE_MAGIC, DEVSTATE_MAGIC_LEN) != 0)
                return fail_at(r, -EBADMSG, 0, "not a device state stream (bad magic)");
        if (major != DEVSTATE_VERSION_MAJOR)
                return fail_at(r, -EPROTONOSUPPORT, DEVSTATE_MAGIC_LEN,
                               "format version %u.%u, this build reads version %u.x; migrate with matching vfu versions",
                               major, minor, DEVSTATE_VERSION_MAJOR);
        r->type_len = devstate_le16(p + DEVSTATE_MAGIC_LEN + 4);
        if (r->type_len == 0 || r->type_len > DEVSTATE_MAX_TYPE_LEN)
                return fail_at(r, -EBADMSG, DEVSTATE_MAGIC_LEN + 4, "device type length %u out of range 1..%u",
                               r->type_len, DEVSTATE_MAX_TYPE_LEN);
        return 0;
}

static int check_name(DevStateReader *r, const uint8_t *p, size_t len, bool type) {
        const char *want = type ? r->type : r->id;
        g_autofree char *got = NULL;

        if (!devstate_printable(p, len))
                return fail_at(r, -EBADMSG, r->pos, "device %s is not printable", type ? "type" : "identity");
        if (r->describe)
                return 0;
        got = g_strndup((const char *) p, len);
        if (strcmp(got, want) != 0)
                return devstate_reader_fail(r, -ENODEV,
                                            "device state is for %s '%s', this device is '%s'; migrate into a device "
                                            "created from the same definition",
                                            type ? "a device of type" : "the device", got, want);
        return 0;
}

static bool is_duplicate(const DevStateReader *r, uint16_t id, uint32_t instance) {
        for (unsigned i = 0; i < r->sections->len; i++) {
                const DevStateSection *s = &g_array_index(r->sections, DevStateSection, i);
                if (s->id == id && s->instance == instance)
                        return true;
        }
        return false;
}

static int section_header(DevStateReader *r, const uint8_t *p) {
        uint16_t id = devstate_le16(p), flags = devstate_le16(p + 2);
        uint32_t instance = devstate_le32(p + 4), len = devstate_le32(p + 8);
        const DevStateSectionSpec *spec;
        char tmp[16];

        if (id == DEVSTATE_END_ID) {
                if (flags || instance || len != DEVSTATE_CRC_LEN)
                        return fail_at(r, -EBADMSG, r->pos, "malformed end section");
                r->state = P_CRC;
                r->need = DEVSTATE_CRC_LEN;
                return 0;
        }
        if (flags & ~DEVSTATE_F_MANDATORY)
                return fail_at(r, -EBADMSG, r->pos, "section #%u has unknown flags 0x%x", id, flags);
        spec = r->describe ? NULL : find_spec(r, id);
        r->cur = (DevStateSection) { .r = r, .spec = spec, .id = id, .flags = flags, .instance = instance,
                                     .off = r->pos + DEVSTATE_SECTION_HDR, .len = len };
        r->cur_skip = false;
        if (!spec && !r->describe) {
                if (flags & DEVSTATE_F_MANDATORY)
                        return fail_at(r, -EOPNOTSUPP, r->pos,
                                       "unknown mandatory section #%u: the stream comes from a newer or different "
                                       "device model", id);
                if (len > DEVSTATE_MAX_SKIP_SECTION)
                        return fail_at(r, -E2BIG, r->pos, "unknown section #%u is %u bytes, more than %u", id, len,
                                       DEVSTATE_MAX_SKIP_SECTION);
                r->cur_skip = true;
        }
        if (spec) {
                if (instance >= spec->max_instances)
                        return fail_at(r, -EBADMSG, r->pos, "section '%s' instance %u, at most %u allowed",
                                       spec_name(spec, id, tmp), instance, spec->max_instances - 1);
                if ((uint64_t) len > spec_max_len(spec))
                        return fail_at(r, -E2BIG, r->pos, "section '%s' is %u bytes, at most %" G_GUINT64_FORMAT,
                                       spec_name(spec, id, tmp), len, spec_max_len(spec));
        }
        if (!r->cur_skip && is_duplicate(r, id, instance))
                return fail_at(r, -EBADMSG, r->pos, "section %s instance %u appears twice", spec_name(spec, id, tmp),
                               instance);
        if ((uint64_t) r->pos + DEVSTATE_SECTION_HDR + len + DEVSTATE_SECTION_HDR + DEVSTATE_CRC_LEN > r->max_stream)
                return fail_at(r, -E2BIG, r->pos, "section %s of %u bytes would make the stream longer than %zu bytes",
                               spec_name(spec, id, tmp), len, r->max_stream);
        r->state = P_SECTION_BODY;
        r->need = len;
        return 0;
}

static const DevStateFieldSpec *find_field(const DevStateSectionSpec *s, uint16_t id, size_t *idx) {
        for (size_t i = 0; s && i < s->n_fields; i++) {
                if (s->fields[i].id == id) {
                        *idx = i;
                        return &s->fields[i];
                }
        }
        return NULL;
}

/* Walk the fields of the complete section at r->cur: framing for all, the spec for known ones. */
static int section_body(DevStateReader *r) {
        const DevStateSection *s = &r->cur;
        const DevStateSectionSpec *spec = s->spec;
        const uint8_t *p = r->buf->data + s->off;
        g_autofree bool *seen = spec ? g_new0(bool, spec->n_fields + 1) : NULL;
        size_t off = 0;
        char tmp[16];
        const char *sname = spec_name(spec, s->id, tmp);

        while (off < s->len) {
                size_t at = s->off + off, fi = 0;
                uint16_t id;
                uint8_t type, flags;
                uint32_t len;
                int fixed;
                const DevStateFieldSpec *fs;

                if (s->len - off < DEVSTATE_FIELD_HDR)
                        return fail_at(r, -EBADMSG, at, "section %s: field header runs past the section end", sname);
                id = devstate_le16(p + off);
                type = p[off + 2];
                flags = p[off + 3];
                len = devstate_le32(p + off + 4);
                off += DEVSTATE_FIELD_HDR;
                fixed = devstate_fixed_size(type);
                if (id == 0)
                        return fail_at(r, -EBADMSG, at, "section %s: field id 0", sname);
                if (fixed < 0)
                        return fail_at(r, -EBADMSG, at, "section %s field #%u: unknown type %u", sname, id, type);
                if (flags & ~DEVSTATE_F_MANDATORY)
                        return fail_at(r, -EBADMSG, at, "section %s field #%u: unknown flags 0x%x", sname, id, flags);
                if (len > s->len - off)
                        return fail_at(r, -EBADMSG, at, "section %s field #%u: %u bytes run past the section end",
                                       sname, id, len);
                if (fixed > 0 && len != (uint32_t) fixed)
                        return fail_at(r, -EBADMSG, at, "section %s field #%u: a %s is %d bytes, not %u", sname, id,
                                       devstate_type_to_string(type), fixed, len);
                if (type == DEVSTATE_T_BOOL && p[off] > 1)
                        return fail_at(r, -EBADMSG, at, "section %s field #%u: bool value %u", sname, id, p[off]);
                if (type == DEVSTATE_T_STRING && !devstate_printable(p + off, len))
                        return fail_at(r, -EBADMSG, at, "section %s field #%u: string is not printable", sname, id);
                fs = find_field(spec, id, &fi);
                if (spec && !fs && (flags & DEVSTATE_F_MANDATORY))
                        return fail_at(r, -EOPNOTSUPP, at, "section %s: unknown mandatory field #%u", sname, id);
                if (fs) {
                        if ((int) type != (int) fs->type)
                                return fail_at(r, -EBADMSG, at, "section %s field '%s': type %s, expected %s", sname,
                                               fs->name, devstate_type_to_string(type),
                                               devstate_type_to_string(fs->type));
                        if (fixed == 0 && len > fs->max_len)
                                return fail_at(r, -E2BIG, at, "section %s field '%s': %u bytes, at most %u", sname,
                                               fs->name, len, fs->max_len);
                        if (seen[fi])
                                return fail_at(r, -EBADMSG, at, "section %s field '%s' appears twice", sname,
                                               fs->name);
                        seen[fi] = true;
                }
                off += len;
        }
        for (size_t i = 0; spec && i < spec->n_fields; i++)
                if (spec->fields[i].required && !seen[i])
                        return fail_at(r, -EBADMSG, s->off, "section %s instance %u lacks field '%s'", sname,
                                       s->instance, spec->fields[i].name);
        if (!r->cur_skip)
                g_array_append_val(r->sections, r->cur);
        r->state = P_SECTION_HDR;
        r->need = DEVSTATE_SECTION_HDR;
        return 0;
}

static int check_crc(DevStateReader *r, const uint8_t *p) {
        uint32_t want = devstate_le32(p);

        if (want != r->crc)
                return fail_at(r, -EBADMSG, r->pos, "checksum mismatch (stream says %08x, data has %08x): the stream "
                               "was corrupted in transfer", want, r->crc);
        r->state = P_DONE;
        r->need = 0;
        return 0;
}

/* Handle the r->need bytes at r->pos for the current state. */
static int step(DevStateReader *r) {
        const uint8_t *p = r->buf->data + r->pos;
        size_t consumed = r->need;
        int ret = 0;

        /* Fold everything before the checksum into it. */
        if (r->state != P_CRC)
                r->crc = devstate_crc32c(r->crc, p, consumed);
        switch (r->state) {
        case P_HDR_FIXED:
                ret = check_header(r, p);
                r->state = P_HDR_TYPE;
                r->need = r->type_len;
                break;
        case P_HDR_TYPE:
                ret = check_name(r, p, r->type_len, true);
                r->state = P_HDR_ID_LEN;
                r->need = 2;
                break;
        case P_HDR_ID_LEN:
                r->id_len = devstate_le16(p);
                if (r->id_len > DEVSTATE_MAX_ID_LEN)
                        ret = fail_at(r, -EBADMSG, r->pos, "device identity length %u, at most %u", r->id_len,
                                      DEVSTATE_MAX_ID_LEN);
                r->state = P_HDR_ID;
                r->need = r->id_len;
                break;
        case P_HDR_ID:
                ret = check_name(r, p, r->id_len, false);
                r->state = P_SECTION_HDR;
                r->need = DEVSTATE_SECTION_HDR;
                break;
        case P_SECTION_HDR:
                ret = section_header(r, p);
                break;
        case P_SECTION_BODY:
                ret = section_body(r);
                break;
        case P_CRC:
                ret = check_crc(r, p);
                break;
        default:
                ret = fail_at(r, -EBADMSG, r->pos, "internal parse state");
                break;
        }
        r->pos += consumed;
        return ret;
}

int devstate_reader_feed(DevStateReader *r, const void *buf, size_t len) {
        if (r->err)
                return r->err;
        if (len == 0)
                return 0;
        if (r->state == P_DONE)
                return fail_at(r, -EBADMSG, r->pos, "%zu bytes after the end of the stream", len);
        if (len > r->max_stream - r->buf->len)
                return fail_at(r, -E2BIG, r->buf->len, "the stream is longer than %zu bytes", r->max_stream);
        g_byte_array_append(r->buf, buf, (guint) len);

        /* A wrong magic shows in the first byte: say so without waiting for the whole header. */
        if (r->state == P_HDR_FIXED) {
                size_t k = MIN(r->buf->len, (size_t) DEVSTATE_MAGIC_LEN);
                if (memcmp(r->buf->data, DEVSTATE_MAGIC, k) != 0)
                        return fail_at(r, -EBADMSG, 0, "not a device state stream (bad magic)");
        }
        while (r->state != P_DONE && r->buf->len - r->pos >= r->need) {
                int ret = step(r);
                if (ret < 0)
                        return ret;
        }
        if (r->state == P_DONE && r->buf->len > r->pos)
                return fail_at(r, -EBADMSG, r->pos, "%zu bytes after the end of the stream", r->buf->len - r->pos);
        return 0;
}

int devstate_reader_finish(DevStateReader *r) {
        if (r->err)
                return r->err;
        if (r->done)
                return 0;
        if (r->state != P_DONE)
                return devstate_reader_fail(r, -ENODATA,
                                            "device state stream truncated: %zu bytes received, %s incomplete (%zu "
                                            "more bytes expected there)",
                                            (size_t) r->buf->len, parse_state_names[r->state], r->need - ((size_t) r->buf->len - r->pos));
        for (unsigned i = 0; i < r->specs->len; i++) {
                const DevStateSectionSpec *s = g_ptr_array_index(r->specs, i);
                if (s->required && devstate_reader_count(r, s->id) == 0)
                        return devstate_reader_fail(r, -EBADMSG, "device state stream lacks the required section '%s'",
                                                    s->name);
        }
        r->done = true;
        return 0;
}

bool devstate_reader_done(const DevStateReader *r) {
        return r->done;
}

/* ---- getters ---------------------------------------------------------------------- */

unsigned devstate_reader_count(const DevStateReader *r, uint16_t id) {
        unsigned n = 0;

        for (unsigned i = 0; i < r->sections->len; i++)
                n += g_array_index(r->sections, DevStateSection, i).id == id;
        return n;
}

const DevStateSection *devstate_reader_nth(const DevStateReader *r, uint16_t id, unsigned n) {
        for (unsigned i = 0; i < r->sections->len; i++) {
                const DevStateSection *s = &g_array_index(r->sections, DevStateSection, i);
                if (s->id == id && n-- == 0)
                        return s;
        }
        return NULL;
}

const DevStateSection *devstate_reader_find(const DevStateReader *r, uint16_t id, uint32_t instance) {
        for (unsigned i = 0; i < r->sections->len; i++) {
                const DevStateSection *s = &g_array_index(r->sections, DevStateSection, i);
                if (s->id == id && s->instance == instance)
                        return s;
        }
        return NULL;
}

uint32_t devstate_section_instance(const DevStateSection *s) {
        return s->instance;
}

const char *devstate_section_name(const DevStateSection *s) {
        return s->spec ? s->spec->name : NULL;
}

/* The value of field id: its type, pointer and length; false when absent. */
static bool field_get(const DevStateSection *s, uint16_t id, uint8_t *type, const uint8_t **val, uint32_t *len) {
        const uint8_t *p = s->r->buf->data + s->off;
        size_t off = 0;

        while (s->len - off >= DEVSTATE_FIELD_HDR) {
                uint16_t fid = devstate_le16(p + off);
                uint32_t flen = devstate_le32(p + off + 4);

                if (flen > s->len - off - DEVSTATE_FIELD_HDR)
                        return false;           /* validated when fed; defensive */
                if (fid == id) {
                        *type = p[off + 2];
                        *val = p + off + DEVSTATE_FIELD_HDR;
                        *len = flen;
                        return true;
                }
                off += DEVSTATE_FIELD_HDR + flen;
        }
        return false;
}

bool devstate_section_has(const DevStateSection *s, uint16_t field) {
        uint8_t t;
        const uint8_t *v;
        uint32_t l;

        return field_get(s, field, &t, &v, &l);
}

static int get_fixed(const DevStateSection *s, uint16_t field, DevStateType want, const uint8_t **v) {
        uint8_t t;
        uint32_t l;

        if (!field_get(s, field, &t, v, &l))
                return -ENOENT;
        if (t != want || l != (uint32_t) devstate_fixed_size(want))
                return -EBADMSG;
        return 0;
}

int devstate_get_u8(const DevStateSection *s, uint16_t field, uint8_t *v) {
        const uint8_t *p;
        int r = get_fixed(s, field, DEVSTATE_T_U8, &p);

        if (r == 0)
                *v = p[0];
        return r;
}

int devstate_get_u16(const DevStateSection *s, uint16_t field, uint16_t *v) {
        const uint8_t *p;
        int r = get_fixed(s, field, DEVSTATE_T_U16, &p);

        if (r == 0)
                *v = devstate_le16(p);
        return r;
}

int devstate_get_u32(const DevStateSection *s, uint16_t field, uint32_t *v) {
        const uint8_t *p;
        int r = get_fixed(s, field, DEVSTATE_T_U32, &p);

        if (r == 0)
                *v = devstate_le32(p);
        return r;
}

int devstate_get_u64(const DevStateSection *s, uint16_t field, uint64_t *v) {
        const uint8_t *p;
        int r = get_fixed(s, field, DEVSTATE_T_U64, &p);

        if (r == 0)
                *v = devstate_le64(p);
        return r;
}

int devstate_get_bool(const DevStateSection *s, uint16_t field, bool *v) {
        const uint8_t *p;
        int r = get_fixed(s, field, DEVSTATE_T_BOOL, &p);

        if (r == 0)
                *v = p[0] != 0;
        return r;
}

int devstate_get_bytes(const DevStateSection *s, uint16_t field, const void **data, size_t *len) {
        uint8_t t;
        const uint8_t *v;
        uint32_t l;

        if (!field_get(s, field, &t, &v, &l))
                return -ENOENT;
        if (t != DEVSTATE_T_BYTES)
                return -EBADMSG;
        *data = v;
        *len = l;
        return 0;
}

int devstate_get_string(const DevStateSection *s, uint16_t field, char *buf, size_t cap) {
        uint8_t t;
        const uint8_t *v;
        uint32_t l;

        if (!field_get(s, field, &t, &v, &l))
                return -ENOENT;
        if (t != DEVSTATE_T_STRING)
                return -EBADMSG;
        if ((size_t) l >= cap)
                return -ENOSPC;
        memcpy(buf, v, l);
        buf[l] = '\0';
        return 0;
}

/* ---- describe ----------------------------------------------------------------------- */

static void describe_value(GString *out, uint8_t type, const uint8_t *v, uint32_t len) {
        switch (type) {
        case DEVSTATE_T_U8:
        case DEVSTATE_T_BOOL:
                g_string_append_printf(out, "%u", v[0]);
                break;
        case DEVSTATE_T_U16:
                g_string_append_printf(out, "%u", devstate_le16(v));
                break;
        case DEVSTATE_T_U32:
                g_string_append_printf(out, "%u", devstate_le32(v));
                break;
        case DEVSTATE_T_U64:
                g_string_append_printf(out, "0x%" G_GINT64_MODIFIER "x", devstate_le64(v));
                break;
        case DEVSTATE_T_STRING:
                g_string_append_printf(out, "\"%.*s\"", (int) len, (const char *) v);
                break;
        default:
                for (uint32_t i = 0; i < len && i < 32; i++)
                        g_string_append_printf(out, "%02x", v[i]);
                if (len > 32)
                        g_string_append_printf(out, "... (%u bytes)", len);
                break;
        }
}

int devstate_describe(const void *buf, size_t len, GString *out) {
        g_autoptr(DevStateReader) r = devstate_reader_new(NULL, NULL, MAX(len, (size_t) DEVSTATE_DEFAULT_MAX_STREAM));
        const uint8_t *p = buf;
        int ret;

        r->describe = true;
        ret = devstate_reader_feed(r, buf, len);
        if (ret == 0)
                ret = devstate_reader_finish(r);
        if (r->pos >= DEVSTATE_HDR_FIXED + r->type_len + 2 + r->id_len && r->type_len)
                g_string_append_printf(out, "device state v%u.%u type \"%.*s\" id \"%.*s\"\n",
                                       devstate_le16(p + DEVSTATE_MAGIC_LEN), devstate_le16(p + DEVSTATE_MAGIC_LEN + 2),
                                       (int) r->type_len, (const char *) p + DEVSTATE_HDR_FIXED, (int) r->id_len,
                                       (const char *) p + DEVSTATE_HDR_FIXED + r->type_len + 2);
        for (unsigned i = 0; i < r->sections->len; i++) {
                const DevStateSection *s = &g_array_index(r->sections, DevStateSection, i);
                size_t off = 0;

                g_string_append_printf(out, "section #%u instance %u%s (%u bytes)\n", s->id, s->instance,
                                       (s->flags & DEVSTATE_F_MANDATORY) ? " mandatory" : "", s->len);
                while (s->len - off >= DEVSTATE_FIELD_HDR) {
                        const uint8_t *f = p + s->off + off;
                        uint32_t flen = devstate_le32(f + 4);

                        g_string_append_printf(out, "  field #%u %s = ", devstate_le16(f),
                                               devstate_type_to_string(f[2]) ? devstate_type_to_string(f[2]) : "?");
                        describe_value(out, f[2], f + DEVSTATE_FIELD_HDR, flen);
                        g_string_append_c(out, '\n');
                        off += DEVSTATE_FIELD_HDR + flen;
                }
        }
        if (ret < 0)
                g_string_append_printf(out, "error: %s\n", r->msg);
        return ret;
}
