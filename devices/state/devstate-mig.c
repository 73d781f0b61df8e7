/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The device side of migration v2 over a devstate stream (devstate-mig.h). */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "state/devstate-mig.h"
#include "state/devstate-wire.h"

void devstate_mig_init(DevStateMig *m, const DevStateMigOps *ops, void *opaque, const char *name) {
        *m = (DevStateMig) { .ops = ops, .opaque = opaque, .state = VU_MIG_RUNNING, .name = g_strdup(name) };
}

static void drop_streams(DevStateMig *m) {
        g_clear_pointer(&m->out, devstate_writer_free);
        g_clear_pointer(&m->in, devstate_reader_free);
}

void devstate_mig_fini(DevStateMig *m) {
        drop_streams(m);
        g_clear_pointer(&m->error, g_free);
        g_clear_pointer(&m->name, g_free);
}

/* Hold or release the data path, telling the device when that changes. */
static void set_hold(DevStateMig *m, bool on) {
        if (m->hold == on)
                return;
        m->hold = on;
        if (m->ops->hold)
                m->ops->hold(m->opaque, on);
}

void devstate_mig_reset(DevStateMig *m) {
        drop_streams(m);
        m->state = VU_MIG_RUNNING;
        set_hold(m, false);
}

bool devstate_mig_may_run(const DevStateMig *m) {
        return !m->hold;
}

const char *devstate_mig_error(const DevStateMig *m) {
        return m->error;
}

/* The first reason the incoming state was refused is kept and told once. */
static void refuse(DevStateMig *m, const char *why) {
        if (m->error)
                return;
        m->error = g_strdup(why);
        if (m->ops->refused)
                m->ops->refused(m->opaque, m->error);
        else
                g_debug("%s: incoming device state refused: %s", m->name ? m->name : "device", m->error);
}

static void refused(DevStateMig *m, DevStateReader *r, int err) {
        refuse(m, r && devstate_reader_error(r) ? devstate_reader_error(r) : g_strerror(-err));
}

static int load(DevStateMig *m, DevStateReader *r) {
        int ret = m->ops->load(m->opaque, r);

        if (ret < 0)
                refused(m, r, ret);
        return ret;
}

int devstate_mig_load(DevStateMig *m, DevStateReader *r) {
        g_clear_pointer(&m->error, g_free);
        return load(m, r);
}

/* RESUMING → STOP: the stream received (a refusal while it arrived was already told). */
static int load_incoming(DevStateMig *m) {
        if (!m->in) {
                refuse(m, "no device state was received");
                return -EINVAL;
        }
        return load(m, m->in);
}

static int arc(DevStateMig *m, enum vu_mig_state from, enum vu_mig_state to) {
        int r;

        switch (to) {
        case VU_MIG_RUNNING:
                drop_streams(m);
                set_hold(m, false);
                return 0;
        case VU_MIG_PRE_COPY:
                return 0;
        case VU_MIG_STOP_COPY:
                set_hold(m, true);
                drop_streams(m);
                return m->ops->save(m->opaque, &m->out);
        case VU_MIG_STOP:
                set_hold(m, true);
                r = 0;
                if (from == VU_MIG_RESUMING)
                        r = load_incoming(m);
                drop_streams(m);
                return r;
        case VU_MIG_RESUMING:
                set_hold(m, true);
                drop_streams(m);
                g_clear_pointer(&m->error, g_free);
                m->ops->reset(m->opaque);
                m->in = m->ops->reader(m->opaque);
                return m->in ? 0 : -ENOMEM;
        default:
                return -EINVAL;
        }
}

int devstate_mig_transition(DevStateMig *m, enum vu_mig_state from, enum vu_mig_state to) {
        int r = arc(m, from, to);

        if (r < 0) {
                /* The server puts the device in ERROR: it stays held (and reset, when resuming) until a reset. */
                set_hold(m, true);
                if (from == VU_MIG_RESUMING || to == VU_MIG_RESUMING)
                        m->ops->reset(m->opaque);
                m->state = VU_MIG_ERROR;
                drop_streams(m);
                return r;
        }
        m->state = to;
        return 0;
}

ssize_t devstate_mig_read(DevStateMig *m, void *buf, size_t len) {
        if (m->state == VU_MIG_PRE_COPY)
                return 0;
        if (!m->out)
                return -EINVAL;
        return devstate_writer_read(m->out, buf, len);
}

int devstate_mig_write(DevStateMig *m, const void *buf, size_t len) {
        int r;

        if (!m->in)
                return -EINVAL;
        r = devstate_reader_feed(m->in, buf, len);
        if (r < 0)
                refused(m, m->in, r);
        return r;
}

/* ---- sections by table ------------------------------------------------------------------ */

/* A scalar type's width, 0 for any other. */
static size_t type_width(DevStateType t) {
        int n = devstate_fixed_size((unsigned) t);

        return n > 0 ? (size_t) n : 0;
}

/* Through the typed writers: values go little-endian whatever the host. */
static int put_scalar(DevStateWriter *w, const DevStateFieldMap *f, const void *v) {
        union {
                uint8_t u8;
                uint16_t u16;
                uint32_t u32;
                uint64_t u64;
                bool b;
        } x;

        if (type_width(f->type) != f->size)
                return -EINVAL;
        memcpy(&x, v, f->size);
        switch (f->type) {
        case DEVSTATE_T_U8:
                return devstate_put_u8(w, f->id, x.u8);
        case DEVSTATE_T_U16:
                return devstate_put_u16(w, f->id, x.u16);
        case DEVSTATE_T_U32:
                return devstate_put_u32(w, f->id, x.u32);
        case DEVSTATE_T_U64:
                return devstate_put_u64(w, f->id, x.u64);
        default:
                return devstate_put_bool(w, f->id, x.b);
        }
}

int devstate_put_mapped(DevStateWriter *w, const DevStateFieldMap *map, size_t n, const void *base) {
        const uint8_t *b = base;
        int r = 0;

        for (size_t i = 0; i < n && r == 0; i++) {
                const DevStateFieldMap *f = &map[i];
                const void *v = b + f->offset;
                unsigned count;
                bool on;

                if (f->optional) {
                        memcpy(&on, b + f->present, sizeof(on));
                        if (!on)
                                continue;
                }
                if (f->type == DEVSTATE_T_BYTES) {
                        size_t len = f->size;
                        if (f->elem) {
                                memcpy(&count, b + f->count, sizeof(count));
                                if (count > f->size / f->elem)
                                        return -EINVAL;
                                len = count * f->elem;
                        }
                        r = devstate_put_field(w, f->id, f->type, DEVSTATE_F_MANDATORY, v, len);
                } else {
                        r = put_scalar(w, f, v);
                }
        }
        return r;
}

static int get_scalar(const DevStateSection *s, const DevStateFieldMap *f, void *v) {
        switch (f->type) {
        case DEVSTATE_T_U8:
                return devstate_get_u8(s, f->id, v);
        case DEVSTATE_T_U16:
                return devstate_get_u16(s, f->id, v);
        case DEVSTATE_T_U32:
                return devstate_get_u32(s, f->id, v);
        case DEVSTATE_T_U64:
                return devstate_get_u64(s, f->id, v);
        case DEVSTATE_T_BOOL:
                return devstate_get_bool(s, f->id, v);
        default:
                return -EINVAL;
        }
}

int devstate_get_mapped(DevStateReader *r, const DevStateSection *s, const DevStateFieldMap *map, size_t n,
                        void *base) {
        uint8_t *b = base;

        for (size_t i = 0; i < n; i++) {
                const DevStateFieldMap *f = &map[i];
                void *v = b + f->offset;
                const void *p;
                size_t len;
                int ret;

                if (f->type != DEVSTATE_T_BYTES) {
                        if (type_width(f->type) != f->size)
                                return devstate_reader_fail(r, -EINVAL, "%s: no %zu-byte field", f->what, f->size);
                        ret = get_scalar(s, f, v);
                } else {
                        ret = devstate_get_bytes(s, f->id, &p, &len);
                        if (ret == 0 && f->elem) {
                                unsigned count = (unsigned) (len / f->elem);
                                if (len % f->elem != 0 || len > f->size)
                                        return devstate_reader_fail(r, -EINVAL,
                                                                    "%s: %zu bytes is not a list of at most %zu "
                                                                    "entries", f->what, len, f->size / f->elem);
                                memcpy(v, p, len);
                                memcpy(b + f->count, &count, sizeof(count));
                        } else if (ret == 0) {
                                if (len != f->size)
                                        return devstate_reader_fail(r, -EINVAL, "%s: %zu bytes, expected %zu",
                                                                    f->what, len, f->size);
                                memcpy(v, p, len);
                        }
                }
                if (f->optional) {
                        bool on = ret == 0;
                        memcpy(b + f->present, &on, sizeof(on));
                        if (ret == -ENOENT)
                                continue;
                }
                if (ret < 0)
                        return devstate_reader_fail(r, ret, "device state: %s (field %u of %s) unreadable", f->what,
                                                    f->id, devstate_section_name(s));
        }
        return 0;
}
