/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Device state for migration streams: a versioned, self-describing format
 * with a checksum, a streaming writer and a streaming reader that validates
 * every byte before a device sees any of it.
 *
 * Wire format (all integers little-endian; see devstate-wire.h):
 *
 *   header   magic "VFUDEVST", u16 major, u16 minor,
 *            u16 type length + device type (1..64 printable bytes),
 *            u16 id length + device identity (0..255 printable bytes)
 *   section  u16 id (≠ 0), u16 flags, u32 instance, u32 length, then
 *            fields filling exactly length bytes:
 *   field      u16 id (≠ 0), u8 type, u8 flags, u32 length, value
 *   end      a section with id 0, flags 0, instance 0, length 4 whose
 *            value is the CRC-32C of every byte before it
 *
 * A section or field flagged MANDATORY must be understood by the reader;
 * unknown optional ones are skipped (newer minor versions add those).
 * A device describes what it understands with DevStateSectionSpec tables;
 * the reader checks sections and fields against them (types, sizes,
 * instance numbers, duplicates, required ones) so device code only has to
 * check values.
 *
 * Errors are negative errno with a message for people:
 *   -EBADMSG          not a device-state stream, malformed framing, checksum
 *                     mismatch, wrong field type or size, duplicates,
 *                     missing required parts, bytes after the end
 *   -ENODATA          the stream ended early (truncated)
 *   -EPROTONOSUPPORT  a format major version we do not read
 *   -ENODEV           the stream is for another device type or identity
 *   -EOPNOTSUPP       an unknown mandatory section or field
 *   -E2BIG            a field, section or the stream beyond its limit
 *   -EINVAL           (from devices, via devstate_reader_fail()) a value
 *                     the device refuses
 */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <glib.h>

#define DEVSTATE_VERSION_MAJOR 1
#define DEVSTATE_VERSION_MINOR 0
#define DEVSTATE_MAX_TYPE_LEN 64u
#define DEVSTATE_MAX_ID_LEN 255u
/* Largest unknown optional section a reader skips. */
#define DEVSTATE_MAX_SKIP_SECTION (1u << 20)
/* Default bound on a whole stream. */
#define DEVSTATE_DEFAULT_MAX_STREAM (16u << 20)

typedef enum DevStateType {
        DEVSTATE_T_U8 = 1,
        DEVSTATE_T_U16 = 2,
        DEVSTATE_T_U32 = 3,
        DEVSTATE_T_U64 = 4,
        DEVSTATE_T_BOOL = 5,            /* one byte, 0 or 1 */
        DEVSTATE_T_BYTES = 6,
        DEVSTATE_T_STRING = 7,          /* printable ASCII, no NUL */
        _DEVSTATE_T_MAX,
        _DEVSTATE_T_INVALID = -EINVAL,
} DevStateType;

const char *devstate_type_to_string(DevStateType t);

/* Section and field flags on the wire. */
#define DEVSTATE_F_MANDATORY 0x1u

/* What a device understands. */
typedef struct DevStateFieldSpec {
        uint16_t id;
        DevStateType type;
        const char *name;
        uint32_t max_len;               /* BYTES/STRING: largest accepted; fixed types: ignored */
        bool required;                  /* every instance of the section must carry it */
} DevStateFieldSpec;

typedef struct DevStateSectionSpec {
        uint16_t id;
        const char *name;
        uint32_t max_instances;         /* instance numbers are < max_instances (≥ 1) */
        bool required;                  /* at least one instance must be present */
        const DevStateFieldSpec *fields;
        size_t n_fields;
} DevStateSectionSpec;

/* CRC-32C (Castagnoli), as iSCSI and ext4 use: crc = devstate_crc32c(0, buf, len) and chained. */
uint32_t devstate_crc32c(uint32_t crc, const void *buf, size_t len);

/* ---- Writer ------------------------------------------------------------ */

typedef struct DevStateWriter DevStateWriter;

/*
 * Start a stream for device_type (1..64 printable chars) and device_id
 * (0..255 printable chars, NULL for none).  Never NULL; a bad type or id
 * makes every later call fail with -EINVAL.
 */
DevStateWriter *devstate_writer_new(const char *device_type, const char *device_id);
void devstate_writer_free(DevStateWriter *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(DevStateWriter, devstate_writer_free)

/*
 * Open section id (≠ 0) instance; flags DEVSTATE_F_MANDATORY or 0.  Fields
 * go into the open section; devstate_writer_end() closes it.  Errors are
 * sticky: the first one is returned by every later call and by finish.
 * 0 or -EINVAL (nested, id 0, finished).
 */
int devstate_writer_begin(DevStateWriter *w, uint16_t id, uint32_t instance, unsigned flags);
int devstate_writer_end(DevStateWriter *w);

/* Fields (mandatory unless the _opt variant).  0 or -EINVAL (no open section, id 0), -E2BIG. */
int devstate_put_u8(DevStateWriter *w, uint16_t field, uint8_t v);
int devstate_put_u16(DevStateWriter *w, uint16_t field, uint16_t v);
int devstate_put_u32(DevStateWriter *w, uint16_t field, uint32_t v);
int devstate_put_u64(DevStateWriter *w, uint16_t field, uint64_t v);
int devstate_put_bool(DevStateWriter *w, uint16_t field, bool v);
int devstate_put_bytes(DevStateWriter *w, uint16_t field, const void *data, size_t len);
int devstate_put_string(DevStateWriter *w, uint16_t field, const char *s);
/* Any field with explicit flags (for optional fields a newer reader may skip). */
int devstate_put_field(DevStateWriter *w, uint16_t field, DevStateType type, unsigned flags, const void *value,
                       size_t len);

/* Close the stream: end section and checksum.  0 or the first error. */
int devstate_writer_finish(DevStateWriter *w);
/*
 * Copy up to len bytes of the finished stream, continuing where the last
 * call stopped.  Bytes copied (0: everything was read), or -EINVAL when
 * the stream is not finished / failed.
 */
ssize_t devstate_writer_read(DevStateWriter *w, void *buf, size_t len);
/* The finished stream, or NULL (not finished, failed). */
const uint8_t *devstate_writer_data(const DevStateWriter *w, size_t *len);

/* ---- Reader ------------------------------------------------------------ */

typedef struct DevStateReader DevStateReader;
typedef struct DevStateSection DevStateSection;

/*
 * A reader for streams of device_type with identity device_id (NULL or ""
 * for a device without one: then the stream must carry none either).
 * max_stream bounds the whole stream (0: DEVSTATE_DEFAULT_MAX_STREAM).
 */
DevStateReader *devstate_reader_new(const char *device_type, const char *device_id, size_t max_stream);
void devstate_reader_free(DevStateReader *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(DevStateReader, devstate_reader_free)

/*
 * Declare the sections a layer understands (the table must outlive the
 * reader).  Call before the first feed.  0 or -EINVAL (duplicate id, bad spec).
 */
int devstate_reader_add_sections(DevStateReader *r, const DevStateSectionSpec *specs, size_t n);

/*
 * Feed the next len bytes.  Everything that can be checked with the bytes
 * so far is checked now (magic, version, type, identity, framing, limits,
 * section and field specs), so bad streams fail early.  0 or -errno; after
 * an error every call returns the same error.
 */
int devstate_reader_feed(DevStateReader *r, const void *buf, size_t len);
/*
 * The stream is complete: checksum verified, end reached, required
 * sections present.  0, -ENODATA when truncated, or the feed error.
 */
int devstate_reader_finish(DevStateReader *r);
/* True once finish succeeded: the getters below may be used. */
bool devstate_reader_done(const DevStateReader *r);

/* The first error as a sentence for people (NULL without error), and its errno (0 without). */
const char *devstate_reader_error(const DevStateReader *r);
int devstate_reader_errno(const DevStateReader *r);
/*
 * Record a device's refusal of a value (the first error wins) and return
 * err.  Devices call it while checking a finished stream so their reason
 * reaches whoever reports the error.
 */
int devstate_reader_fail(DevStateReader *r, int err, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* Bytes consumed so far. */
size_t devstate_reader_offset(const DevStateReader *r);

/* After finish: how many instances of section id, the n-th (in stream order), or one instance. */
unsigned devstate_reader_count(const DevStateReader *r, uint16_t id);
const DevStateSection *devstate_reader_nth(const DevStateReader *r, uint16_t id, unsigned n);
const DevStateSection *devstate_reader_find(const DevStateReader *r, uint16_t id, uint32_t instance);
uint32_t devstate_section_instance(const DevStateSection *s);
const char *devstate_section_name(const DevStateSection *s);

/*
 * Field values.  0, -ENOENT (absent: an optional field the stream lacks)
 * or -EBADMSG (other type; cannot happen for fields in the spec).
 */
bool devstate_section_has(const DevStateSection *s, uint16_t field);
int devstate_get_u8(const DevStateSection *s, uint16_t field, uint8_t *v);
int devstate_get_u16(const DevStateSection *s, uint16_t field, uint16_t *v);
int devstate_get_u32(const DevStateSection *s, uint16_t field, uint32_t *v);
int devstate_get_u64(const DevStateSection *s, uint16_t field, uint64_t *v);
int devstate_get_bool(const DevStateSection *s, uint16_t field, bool *v);
/* A pointer into the reader's buffer, valid while the reader lives. */
int devstate_get_bytes(const DevStateSection *s, uint16_t field, const void **data, size_t *len);
/* Copied NUL-terminated into buf; -ENOSPC when cap is too small. */
int devstate_get_string(const DevStateSection *s, uint16_t field, char *buf, size_t cap);

/*
 * Describe any well-formed stream without a schema (sections, fields,
 * values), one line each, for logs and tools.  0 or the reader's -errno
 * (with what was described so far in out).
 */
int devstate_describe(const void *buf, size_t len, GString *out);
