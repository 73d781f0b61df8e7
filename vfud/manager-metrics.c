/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The metrics file for prometheus-node-exporter's textfile collector
 * (--collector.textfile.directory, /var/lib/prometheus/node-exporter on
 * Debian): DIR/vfud.prom in the Prometheus text format, from the same
 * statistics the Device objects show, rewritten every [Metrics] Interval=.
 * The collector reads *.prom files only, and the file is replaced by a
 * rename, so it never sees a partial one.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "common/metrics.h"
#include "device.h"
#include "manager.h"

#define METRICS_FILE "vfud.prom"

static int device_name_cmp(const void *a, const void *b) {
        return strcmp((*(Device *const *) a)->name, (*(Device *const *) b)->name);
}

static char *manager_metrics_text(Manager *m) {
        guint n = g_hash_table_size(m->devices), i = 0;
        g_autofree Device **list = g_new0(Device *, n + 1);
        g_autofree MetricsDevice *devs = NULL;
        GHashTableIter it;
        gpointer v;

        g_hash_table_iter_init(&it, m->devices);
        while (i < n && g_hash_table_iter_next(&it, NULL, &v))
                list[i++] = v;
        qsort(list, n, sizeof(*list), device_name_cmp);
        devs = g_new0(MetricsDevice, n + 1);
        for (guint j = 0; j < n; j++) {
                Device *d = list[j];

                devs[j] = (MetricsDevice) {
                        .name = d->name,
                        .vm = d->vm ? d->vm : "",
                        .type = d->type,
                        .state = device_state_to_string(d->state),
                        .connected = d->connected,
                        .restarts = d->restarts,
                        .stats = d->stats,
                };
        }
        return metrics_render(devs, n, METRICS_PROMETHEUS);
}

gboolean manager_metrics_write(Manager *m, GError **error) {
        g_autofree char *text = NULL, *path = NULL;
        mode_t old_mask;
        gboolean ok;

        if (!m->config.metrics_dir || !*m->config.metrics_dir)
                return TRUE;
        text = manager_metrics_text(m);
        path = g_build_filename(m->config.metrics_dir, METRICS_FILE, NULL);
        /*
         * A temporary file in the same directory, renamed over the old one (not a *.prom meanwhile),
         * readable by node-exporter whatever the unit's UMask= (0077).
         */
        old_mask = umask(0022);
        ok = g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644, error);
        umask(old_mask);
        return ok;
}

static void metrics_write_logged(Manager *m) {
        g_autoptr(GError) error = NULL;

        if (manager_metrics_write(m, &error)) {
                if (m->metrics_error)
                        g_message("metrics: writing %s/%s again", m->config.metrics_dir, METRICS_FILE);
                g_clear_pointer(&m->metrics_error, g_free);
                return;
        }
        /* Once per distinct failure, not every interval. */
        if (g_strcmp0(m->metrics_error, error->message) != 0)
                g_warning("metrics: %s (check [Metrics] TextfileDirectory= in vfud.conf)", error->message);
        g_free(m->metrics_error);
        m->metrics_error = g_strdup(error->message);
}

static int on_metrics_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        metrics_write_logged(m);
        (void) sd_event_source_set_time_relative(s, m->config.metrics_interval_usec);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

void manager_metrics_start(Manager *m) {
        int r;

        if (!m->config.metrics_dir || !*m->config.metrics_dir || m->metrics_timer)
                return;
        metrics_write_logged(m);
        r = sd_event_add_time_relative(m->event, &m->metrics_timer, CLOCK_MONOTONIC,
                                       m->config.metrics_interval_usec, 0, on_metrics_timer, m);
        if (r < 0)
                g_warning("metrics: cannot start the timer: %s", g_strerror(-r));
}

void manager_metrics_stop(Manager *m) {
        m->metrics_timer = sd_event_source_disable_unref(m->metrics_timer);
        g_clear_pointer(&m->metrics_error, g_free);
}
