/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The image stream (see migrate-stream.h; docs/migration.md has the format).
 *
 *   header  "VFUIMG\r\n", u16 major, u16 minor, u32 flags (0), u64 image size,
 *           u32 reserved (0), u32 CRC-32C of the 28 bytes before it
 *   record  u32 type, u32 length, u64 offset, u32 CRC-32C of the payload,
 *           u32 CRC-32C of the 20 bytes before it; then length bytes
 *
 * Little-endian.  DATA records ascend and never overlap; END comes last,
 * its payload the DATA bytes and records sent, and the stream closes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "manager.h"
#include "migrate-stream.h"
#include "state/devstate.h"

#define READ_CHUNK (1u << 20)

static void put16(uint8_t *p, uint16_t v) {
        v = GUINT16_TO_LE(v);
        memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v) {
        v = GUINT32_TO_LE(v);
        memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v) {
        v = GUINT64_TO_LE(v);
        memcpy(p, &v, 8);
}

static uint16_t get16(const uint8_t *p) {
        uint16_t v;

        memcpy(&v, p, 2);
        return GUINT16_FROM_LE(v);
}

static uint32_t get32(const uint8_t *p) {
        uint32_t v;

        memcpy(&v, p, 4);
        return GUINT32_FROM_LE(v);
}

static uint64_t get64(const uint8_t *p) {
        uint64_t v;

        memcpy(&v, p, 8);
        return GUINT64_FROM_LE(v);
}

static gboolean cancelled(int cancel_fd, GError **error) {
        struct pollfd p = { .fd = cancel_fd, .events = POLLIN };

        if (cancel_fd >= 0 && poll(&p, 1, 0) > 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "the image transfer was cancelled");
                return TRUE;
        }
        return FALSE;
}

/* Wait until fd is ready for events or cancel_fd is readable. */
static gboolean wait_fd(int fd, short events, int cancel_fd, GError **error) {
        struct pollfd p[2] = { { .fd = fd, .events = events }, { .fd = cancel_fd, .events = POLLIN } };

        for (;;) {
                int n = poll(p, cancel_fd >= 0 ? 2 : 1, -1);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "poll: %s", g_strerror(errno));
                        return FALSE;
                }
                if (cancel_fd >= 0 && (p[1].revents & POLLIN)) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "the image transfer was cancelled");
                        return FALSE;
                }
                if (p[0].revents)
                        return TRUE;
        }
}

/* ---- sending ---- */

typedef struct Sender {
        int out_fd, cancel_fd;
        bool pipe;                      /* out_fd is a pipe: extents of the mapped image go by vmsplice */
        ImageStreamStats stats;
} Sender;

static gboolean send_all(Sender *s, struct iovec *iov, int n, GError **error) {
        while (n > 0) {
                ssize_t w = writev(s->out_fd, iov, n);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0 && errno == EAGAIN) {
                        if (!wait_fd(s->out_fd, POLLOUT, s->cancel_fd, error))
                                return FALSE;
                        continue;
                }
                if (w < 0) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                                    "the receiving end of the image stream went away (%s)", g_strerror(errno));
                        return FALSE;
                }
                for (size_t left = (size_t) w; left > 0 && n > 0;) {
                        size_t k = MIN(left, iov->iov_len);

                        iov->iov_base = (uint8_t *) iov->iov_base + k;
                        iov->iov_len -= k;
                        left -= k;
                        if (iov->iov_len == 0) {
                                iov++;
                                n--;
                        }
                }
                while (n > 0 && iov->iov_len == 0) {
                        iov++;
                        n--;
                }
        }
        return TRUE;
}

/*
 * Pages of the mapped image into the pipe without copying them: the pipe
 * holds references to the page cache, the reader copies once.  (The device
 * is stopped: nothing changes the pages before they are read.)
 */
static gboolean send_pages(Sender *s, const uint8_t *p, size_t n, GError **error) {
        while (n > 0) {
                struct iovec iov = { (void *) p, n };
                ssize_t w = vmsplice(s->out_fd, &iov, 1, SPLICE_F_NONBLOCK);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0 && errno == EAGAIN) {
                        if (!wait_fd(s->out_fd, POLLOUT, s->cancel_fd, error))
                                return FALSE;
                        continue;
                }
                if (w <= 0) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                                    "the receiving end of the image stream went away (%s)",
                                    g_strerror(w < 0 ? errno : EPIPE));
                        return FALSE;
                }
                p += w;
                n -= (size_t) w;
        }
        return TRUE;
}

/* One record; mapped: data lies in the image's mapping (it may be handed over by reference). */
static gboolean send_record(Sender *s, ImageRecordType type, uint64_t offset, const void *data, uint32_t len,
                            bool mapped, GError **error) {
        uint8_t h[IMAGE_STREAM_RECORD_SIZE];
        struct iovec iov[2] = { { h, sizeof(h) }, { (void *) data, len } };
        bool by_ref = mapped && s->pipe && len >= 16 * 1024;

        put32(h, type);
        put32(h + 4, len);
        put64(h + 8, offset);
        put32(h + 16, devstate_crc32c(0, data, len));
        put32(h + 20, devstate_crc32c(0, h, 20));
        if (!send_all(s, iov, len && !by_ref ? 2 : 1, error))
                return FALSE;
        return !by_ref || send_pages(s, data, len, error);
}

static bool block_zero(const uint8_t *p, size_t n) {
        return p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}

/* Send the non-zero runs of buf (the image at offset). */
static gboolean send_runs(Sender *s, const uint8_t *buf, size_t n, uint64_t offset, bool mapped, GError **error) {
        size_t i = 0;

        while (i < n) {
                size_t start, bs;

                for (; i < n; i += bs) {
                        bs = MIN((size_t) IMAGE_STREAM_ZERO_BLOCK, n - i);
                        if (!block_zero(buf + i, bs))
                                break;
                }
                start = i;
                for (; i < n; i += bs) {
                        bs = MIN((size_t) IMAGE_STREAM_ZERO_BLOCK, n - i);
                        if (block_zero(buf + i, bs))
                                break;
                }
                if (i > start) {
                        if (!send_record(s, IMAGE_RECORD_DATA, offset + start, buf + start, (uint32_t) (i - start),
                                         mapped, error))
                                return FALSE;
                        s->stats.data_bytes += i - start;
                        s->stats.records++;
                }
        }
        return TRUE;
}

static gboolean read_full(int fd, uint8_t *buf, size_t n, uint64_t offset, GError **error) {
        for (size_t got = 0; got < n;) {
                ssize_t r = pread(fd, buf + got, n - got, (off_t) (offset + got));

                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED, "reading the image: %s",
                                    r < 0 ? g_strerror(errno) : "it is shorter than the namespace");
                        return FALSE;
                }
                got += (size_t) r;
        }
        return TRUE;
}

/* The next extent with data at or after off: [*start, *end); FALSE when only holes remain. */
static bool next_data(int fd, uint64_t off, uint64_t size, uint64_t *start, uint64_t *end) {
        off_t d = lseek(fd, (off_t) off, SEEK_DATA), h;

        if (d < 0 && errno == ENXIO)
                return false;
        if (d < 0) {
                /* no SEEK_DATA (a block device, an old file system): all of it is data */
                *start = off;
                *end = size;
                return true;
        }
        if ((uint64_t) d >= size)
                return false;
        h = lseek(fd, d, SEEK_HOLE);
        *start = (uint64_t) d;
        *end = h < 0 || (uint64_t) h > size ? size : (uint64_t) h;
        return true;
}

/* n bytes of the image at off: mapped when the stream is a pipe, else read into buf. */
static gboolean send_chunk(Sender *s, int image_fd, uint8_t *buf, size_t n, uint64_t off, GError **error) {
        if (s->pipe) {
                uint64_t page = (uint64_t) sysconf(_SC_PAGESIZE), base = off & ~(page - 1);
                size_t delta = (size_t) (off - base);
                uint8_t *m = mmap(NULL, n + delta, PROT_READ, MAP_SHARED | MAP_POPULATE, image_fd, (off_t) base);

                if (m != MAP_FAILED) {
                        gboolean ok = send_runs(s, m + delta, n, off, true, error);

                        munmap(m, n + delta);
                        return ok;
                }
        }
        return read_full(image_fd, buf, n, off, error) && send_runs(s, buf, n, off, false, error);
}

gboolean image_stream_send(int image_fd, uint64_t size, int out_fd, int cancel_fd, ImageStreamProgressFunc progress,
                           void *userdata, ImageStreamStats *stats, GError **error) {
        g_autofree uint8_t *buf = g_malloc(READ_CHUNK);
        Sender s = { .out_fd = out_fd, .cancel_fd = cancel_fd };
        uint8_t h[IMAGE_STREAM_HEADER_SIZE] = { 0 }, end[16];
        struct iovec iov = { h, sizeof(h) };
        uint64_t off = 0, start, stop;
        int fl = fcntl(out_fd, F_GETFL);
        struct stat st;

        if (fl >= 0)
                (void) fcntl(out_fd, F_SETFL, fl | O_NONBLOCK);
        s.pipe = fstat(out_fd, &st) == 0 && S_ISFIFO(st.st_mode);
        memcpy(h, IMAGE_STREAM_MAGIC, 8);
        put16(h + 8, IMAGE_STREAM_MAJOR);
        put16(h + 10, IMAGE_STREAM_MINOR);
        put64(h + 16, size);
        put32(h + 28, devstate_crc32c(0, h, 28));
        if (!send_all(&s, &iov, 1, error))
                return FALSE;
        while (off < size && next_data(image_fd, off, size, &start, &stop)) {
                if (progress)
                        progress(start, userdata);
                for (off = start; off < stop;) {
                        size_t n = (size_t) MIN((uint64_t) READ_CHUNK, stop - off);

                        if (cancelled(cancel_fd, error) || !send_chunk(&s, image_fd, buf, n, off, error))
                                return FALSE;
                        off += n;
                        if (progress)
                                progress(off, userdata);
                }
        }
        put64(end, s.stats.data_bytes);
        put64(end + 8, s.stats.records);
        if (!send_record(&s, IMAGE_RECORD_END, 0, end, sizeof(end), false, error))
                return FALSE;
        if (progress)
                progress(size, userdata);
        if (stats)
                *stats = s.stats;
        return TRUE;
}

/* ---- receiving ---- */

/* Read exactly n bytes; *eof set (and FALSE without error) when the stream ended before the first byte. */
static gboolean recv_full(int fd, int cancel_fd, uint8_t *buf, size_t n, bool *eof, GError **error) {
        size_t got = 0;

        *eof = false;
        while (got < n) {
                ssize_t r = read(fd, buf + got, n - got);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0 && errno == EAGAIN) {
                        if (!wait_fd(fd, POLLIN, cancel_fd, error))
                                return FALSE;
                        continue;
                }
                if (r < 0) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "reading the image stream: %s",
                                    g_strerror(errno));
                        return FALSE;
                }
                if (r == 0) {
                        if (got == 0) {
                                *eof = true;
                                return FALSE;
                        }
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                                    "the image stream ended in the middle of a record: the sender stopped");
                        return FALSE;
                }
                got += (size_t) r;
        }
        return TRUE;
}

static gboolean recv_exact(int fd, int cancel_fd, uint8_t *buf, size_t n, const char *what, GError **error) {
        bool eof;

        if (recv_full(fd, cancel_fd, buf, n, &eof, error))
                return TRUE;
        if (eof)
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                            "the image stream ended before %s: the sender stopped", what);
        return FALSE;
}

static gboolean write_full(int fd, const uint8_t *buf, size_t n, uint64_t offset, GError **error) {
        for (size_t done = 0; done < n;) {
                ssize_t w = pwrite(fd, buf + done, n - done, (off_t) (offset + done));

                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED, "writing the image: %s",
                                    g_strerror(w < 0 ? errno : EIO));
                        return FALSE;
                }
                done += (size_t) w;
        }
        return TRUE;
}

static gboolean bad(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static gboolean bad(GError **error, const char *fmt, ...) {
        va_list ap;
        g_autofree char *msg = NULL;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "the image stream is damaged: %s", msg);
        return FALSE;
}

gboolean image_stream_receive(int in_fd, int image_fd, uint64_t size, int cancel_fd, ImageStreamStats *stats,
                              GError **error) {
        g_autofree uint8_t *buf = g_malloc(IMAGE_STREAM_MAX_EXTENT);
        uint8_t h[IMAGE_STREAM_HEADER_SIZE];
        ImageStreamStats got = { 0 };
        uint64_t next = 0;
        bool eof;

        if (ftruncate(image_fd, 0) < 0 || ftruncate(image_fd, (off_t) size) < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED, "emptying the image: %s",
                            g_strerror(errno));
                return FALSE;
        }
        if (!recv_exact(in_fd, cancel_fd, h, sizeof(h), "its header", error))
                return FALSE;
        if (memcmp(h, IMAGE_STREAM_MAGIC, 8) != 0)
                return bad(error, "it does not start with an image stream header");
        if (get32(h + 28) != devstate_crc32c(0, h, 28))
                return bad(error, "header checksum mismatch");
        if (get16(h + 8) != IMAGE_STREAM_MAJOR) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_NOT_SUPPORTED,
                            "the image stream is version %u, this vfud reads version %u", get16(h + 8),
                            IMAGE_STREAM_MAJOR);
                return FALSE;
        }
        if (get32(h + 12) != 0)
                return bad(error, "unknown flags 0x%x", get32(h + 12));
        if (get64(h + 16) != size) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "the image stream is of a %" G_GUINT64_FORMAT "-byte image, the namespace here has %"
                            G_GUINT64_FORMAT " bytes", get64(h + 16), size);
                return FALSE;
        }
        for (;;) {
                uint8_t r[IMAGE_STREAM_RECORD_SIZE];
                uint32_t type, len;
                uint64_t off;

                if (!recv_exact(in_fd, cancel_fd, r, sizeof(r), "its end", error))
                        return FALSE;
                if (get32(r + 20) != devstate_crc32c(0, r, 20))
                        return bad(error, "record header checksum mismatch after offset %" G_GUINT64_FORMAT, next);
                type = get32(r);
                len = get32(r + 4);
                off = get64(r + 8);
                if (type == IMAGE_RECORD_END) {
                        if (len != 16 || off != 0)
                                return bad(error, "malformed end record");
                        if (!recv_exact(in_fd, cancel_fd, buf, 16, "its end", error))
                                return FALSE;
                        if (get32(r + 16) != devstate_crc32c(0, buf, 16))
                                return bad(error, "end record checksum mismatch");
                        if (get64(buf) != got.data_bytes || get64(buf + 8) != got.records)
                                return bad(error, "%" G_GUINT64_FORMAT " bytes in %" G_GUINT64_FORMAT " extents sent, %"
                                           G_GUINT64_FORMAT " in %" G_GUINT64_FORMAT " received", get64(buf),
                                           get64(buf + 8), got.data_bytes, got.records);
                        break;
                }
                if (type != IMAGE_RECORD_DATA)
                        return bad(error, "unknown record type %u", type);
                if (len == 0 || len > IMAGE_STREAM_MAX_EXTENT)
                        return bad(error, "extent of %u bytes (1 to %u)", len, IMAGE_STREAM_MAX_EXTENT);
                if (off < next || off > size || len > size - off)
                        return bad(error, "extent of %u bytes at %" G_GUINT64_FORMAT " out of order or outside the "
                                   "image", len, off);
                if (!recv_exact(in_fd, cancel_fd, buf, len, "its end", error))
                        return FALSE;
                if (get32(r + 16) != devstate_crc32c(0, buf, len))
                        return bad(error, "checksum mismatch in the extent of %u bytes at offset %" G_GUINT64_FORMAT,
                                   len, off);
                if (!write_full(image_fd, buf, len, off, error))
                        return FALSE;
                next = off + len;
                got.data_bytes += len;
                got.records++;
        }
        /* the sender closes after the end: anything else is not ours */
        if (recv_full(in_fd, cancel_fd, buf, 1, &eof, error))
                return bad(error, "data after the end record");
        if (!eof)
                return FALSE;
        if (fdatasync(image_fd) < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED, "flushing the image: %s",
                            g_strerror(errno));
                return FALSE;
        }
        if (stats)
                *stats = got;
        return TRUE;
}
