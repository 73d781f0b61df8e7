/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The device side of migration v2 over a devstate stream (devstate-mig.h). */
#include <errno.h>

#include <glib.h>

#include "state/devstate-mig.h"

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

void devstate_mig_reset(DevStateMig *m) {
        drop_streams(m);
        m->state = VU_MIG_RUNNING;
        m->hold = false;
}

bool devstate_mig_may_run(const DevStateMig *m) {
        return !m->hold;
}

const char *devstate_mig_error(const DevStateMig *m) {
        return m->error;
}

static void refused(DevStateMig *m, DevStateReader *r, int err) {
        if (m->error)
                return;
        m->error = g_strdup(r && devstate_reader_error(r) ? devstate_reader_error(r) : g_strerror(-err));
        g_debug("%s: incoming device state refused: %s", m->name ? m->name : "device", m->error);
}

int devstate_mig_load(DevStateMig *m, DevStateReader *r) {
        int ret;

        g_clear_pointer(&m->error, g_free);
        ret = m->ops->load(m->opaque, r);
        if (ret < 0)
                refused(m, r, ret);
        return ret;
}

static int arc(DevStateMig *m, enum vu_mig_state from, enum vu_mig_state to) {
        int r;

        switch (to) {
        case VU_MIG_RUNNING:
                drop_streams(m);
                m->hold = false;
                return 0;
        case VU_MIG_PRE_COPY:
                return 0;
        case VU_MIG_STOP_COPY:
                m->hold = true;
                drop_streams(m);
                return m->ops->save(m->opaque, &m->out);
        case VU_MIG_STOP:
                m->hold = true;
                r = 0;
                if (from == VU_MIG_RESUMING)
                        r = m->in ? devstate_mig_load(m, m->in) : -EINVAL;
                drop_streams(m);
                return r;
        case VU_MIG_RESUMING:
                m->hold = true;
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
                /* The server puts the device in ERROR: it stays held until a reset. */
                m->hold = true;
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
