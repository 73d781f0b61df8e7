/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Copies between flat buffers and iovec arrays. */
#include <string.h>

#include "virtio/vq-walk.h"

size_t vq_iov_to_buf(const struct iovec *iov, unsigned n, size_t offset, void *buf, size_t len) {
        size_t done = 0;

        for (unsigned i = 0; i < n && done < len; i++) {
                size_t l = iov[i].iov_len;

                if (offset >= l) {
                        offset -= l;
                        continue;
                }
                size_t take = l - offset;
                if (take > len - done)
                        take = len - done;
                memcpy((uint8_t *) buf + done, (const uint8_t *) iov[i].iov_base + offset, take);
                done += take;
                offset = 0;
        }
        return done;
}

size_t vq_buf_to_iov(const struct iovec *iov, unsigned n, size_t offset, const void *buf, size_t len) {
        size_t done = 0;

        for (unsigned i = 0; i < n && done < len; i++) {
                size_t l = iov[i].iov_len;

                if (offset >= l) {
                        offset -= l;
                        continue;
                }
                size_t take = l - offset;
                if (take > len - done)
                        take = len - done;
                memcpy((uint8_t *) iov[i].iov_base + offset, (const uint8_t *) buf + done, take);
                done += take;
                offset = 0;
        }
        return done;
}
