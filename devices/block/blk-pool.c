/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Worker threads running requests synchronously; completions go back through the event fd. */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "blk-internal.h"

static void *blk_pool_main(void *arg) {
        BlkPool *p = arg;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                while (!p->stop && !p->work.head)
                        pthread_cond_wait(&p->cond, &p->lock);
                if (p->stop && !p->work.head)
                        break;
                BlkRequest *r = blk_list_pop(&p->work);
                pthread_mutex_unlock(&p->lock);

                r->ret_ = blk_execute_sync(p->b, r);

                pthread_mutex_lock(&p->lock);
                bool was_empty = !p->done.head;
                blk_list_push(&p->done, r);
                if (was_empty)
                        blk_event_signal(p->b);
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

int blk_pool_start(BlkPool *p, BlkBackend *b, unsigned n_threads) {
        memset(p, 0, sizeof(*p));
        p->b = b;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        p->threads = g_new0(pthread_t, n_threads);
        for (unsigned i = 0; i < n_threads; i++) {
                int r = pthread_create(&p->threads[i], NULL, blk_pool_main, p);
                if (r != 0) {
                        blk_pool_stop(p);
                        return -r;
                }
                p->n_threads++;
        }
        return 0;
}

void blk_pool_stop(BlkPool *p) {
        if (!p->threads)
                return;
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        for (unsigned i = 0; i < p->n_threads; i++)
                pthread_join(p->threads[i], NULL);
        g_free(p->threads);
        p->threads = NULL;
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
}

void blk_pool_queue(BlkPool *p, BlkList *reqs) {
        if (!reqs->head)
                return;
        pthread_mutex_lock(&p->lock);
        blk_list_splice(&p->work, reqs);
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
}

void blk_pool_take_done(BlkPool *p, BlkList *out) {
        pthread_mutex_lock(&p->lock);
        blk_list_splice(out, &p->done);
        pthread_mutex_unlock(&p->lock);
}

bool blk_pool_has_done(BlkPool *p) {
        pthread_mutex_lock(&p->lock);
        bool any = p->done.head != NULL;
        pthread_mutex_unlock(&p->lock);
        return any;
}
