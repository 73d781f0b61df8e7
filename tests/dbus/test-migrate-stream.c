/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of the image stream (vfud/migrate-stream.c): CRC-32C against
 * the bitwise definition, round trips through a pipe (vmsplice and splice)
 * and through a socket (plain reads and writes) of images with holes, zero
 * blocks and data compared byte for byte with the holes kept, every header
 * byte and a sample of data bytes corrupted, every truncation, bytes after
 * the end, another image size, and cancellation of either end.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "manager.h"
#include "migrate-stream.h"
#include "state/devstate.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

/* migrate-stream.c's only use of the daemon */
GQuark manager_error_quark(void) {
        return g_quark_from_static_string("manager-error-quark");
}

static uint32_t crc_bitwise(uint32_t crc, const uint8_t *p, size_t n) {
        crc = ~crc;
        while (n--) {
                crc ^= *p++;
                for (int k = 0; k < 8; k++)
                        crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
        }
        return ~crc;
}

static void test_crc(void **state) {
        g_autofree uint8_t *buf = g_malloc(256 * KiB + 64);
        GRand *r = g_rand_new_with_seed(7);

        assert_int_equal(devstate_crc32c(0, "123456789", 9), 0xe3069283u);
        for (size_t i = 0; i < 256 * KiB + 64; i++)
                buf[i] = (uint8_t) g_rand_int(r);
        /* short, around the three-way block sizes, and long; chained from a seed */
        for (size_t n = 0; n < 3 * 8192 * 3 + 100; n += n < 64 ? 1 : n < 800 ? 7 : 1531) {
                uint32_t seed = g_rand_int(r);
                size_t off = g_rand_int_range(r, 0, 64);

                assert_int_equal(devstate_crc32c(seed, buf + off, n), crc_bitwise(seed, buf + off, n));
        }
        assert_int_equal(devstate_crc32c(0, buf, 256 * KiB), crc_bitwise(0, buf, 256 * KiB));
        g_rand_free(r);
}

static int temp_file(uint64_t size) {
        g_autofree char *path = g_build_filename(g_get_tmp_dir(), "test-migrate-stream-XXXXXX", NULL);
        int fd = mkostemp(path, O_CLOEXEC);

        assert_true(fd >= 0);
        unlink(path);
        assert_int_equal(ftruncate(fd, (off_t) size), 0);
        return fd;
}

static void put(int fd, uint64_t off, const void *p, size_t n) {
        assert_int_equal(pwrite(fd, p, n, (off_t) off), (ssize_t) n);
}

/* An image of 9 MiB + 12 KiB: data at 0, a hole, a data extent with zero blocks inside, a lone byte, data at the end. */
#define IMG_SIZE (9 * MiB + 12 * KiB)
static int make_image(void) {
        int fd = temp_file(IMG_SIZE);
        g_autofree uint8_t *data = g_malloc(3 * MiB);
        GRand *r = g_rand_new_with_seed(11);

        for (size_t i = 0; i < 3 * MiB; i++)
                data[i] = (uint8_t) g_rand_int(r);
        memset(data + 512 * KiB, 0, 64 * KiB);          /* zero blocks inside data */
        put(fd, 0, data, 100 * KiB);
        put(fd, 2 * MiB, data, 3 * MiB);
        put(fd, 6 * MiB + 4097, "x", 1);
        put(fd, IMG_SIZE - 8 * KiB, data + 7, 8 * KiB);
        g_rand_free(r);
        return fd;
}

typedef struct Rx {
        int in_fd, image_fd, cancel_fd;
        uint64_t size;
        gboolean ok;
        GError *error;
        ImageStreamStats stats;
} Rx;

static gpointer rx_thread(gpointer data) {
        Rx *rx = data;

        rx->ok = image_stream_receive(rx->in_fd, rx->image_fd, rx->size, rx->cancel_fd, &rx->stats, &rx->error);
        return NULL;
}

static void assert_same(int a, int b, uint64_t size) {
        g_autofree uint8_t *x = g_malloc(MiB), *y = g_malloc(MiB);

        for (uint64_t off = 0; off < size; off += MiB) {
                size_t n = (size_t) MIN((uint64_t) MiB, size - off);

                assert_int_equal(pread(a, x, n, (off_t) off), (ssize_t) n);
                assert_int_equal(pread(b, y, n, (off_t) off), (ssize_t) n);
                assert_memory_equal(x, y, n);
        }
}

static void round_trip(bool use_pipe) {
        int src = make_image(), dst = temp_file(0), fds[2];
        Rx rx = { .image_fd = dst, .cancel_fd = -1, .size = IMG_SIZE };
        ImageStreamStats sent;
        GError *error = NULL;
        struct stat st;
        GThread *t;

        if (use_pipe)
                assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        else
                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        rx.in_fd = fds[0];
        t = g_thread_new("rx", rx_thread, &rx);
        assert_true(image_stream_send(src, IMG_SIZE, fds[1], -1, NULL, NULL, &sent, &error));
        close(fds[1]);
        g_thread_join(t);
        if (!rx.ok)
                fail_msg("receive: %s", rx.error->message);
        assert_int_equal(rx.stats.data_bytes, sent.data_bytes);
        assert_int_equal(rx.stats.records, sent.records);
        /* zeros and holes were not sent: 100K + 3M - 64K + one block + 8K */
        assert_int_equal(sent.data_bytes, 100 * KiB + 3 * MiB - 64 * KiB + 4 * KiB + 8 * KiB);
        assert_same(src, dst, IMG_SIZE);
        assert_int_equal(fstat(dst, &st), 0);
        assert_true((uint64_t) st.st_blocks * 512 < IMG_SIZE / 2);     /* the holes stayed holes */
        close(fds[0]);
        close(src);
        close(dst);
}

static void test_round_trip_pipe(void **state) {
        round_trip(true);
}

static void test_round_trip_socket(void **state) {
        round_trip(false);
}

/* The stream of a small image, as bytes. */
static GByteArray *small_stream(uint64_t *size) {
        int src = temp_file(64 * KiB), out = temp_file(0);
        GByteArray *b = g_byte_array_new();
        uint8_t data[6000];
        GError *error = NULL;
        struct stat st;

        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t) (i * 13 + 1);
        put(src, 4096, data, sizeof(data));
        put(src, 40 * KiB, data, 100);
        assert_true(image_stream_send(src, 64 * KiB, out, -1, NULL, NULL, NULL, &error));
        assert_int_equal(fstat(out, &st), 0);
        g_byte_array_set_size(b, (guint) st.st_size);
        assert_int_equal(pread(out, b->data, b->len, 0), (ssize_t) b->len);
        close(src);
        close(out);
        *size = 64 * KiB;
        return b;
}

/* A file in memory: thousands of streams are received below, and closing unlinked disk files is slow. */
static int mem_file(void) {
        int fd = memfd_create("test-migrate-stream", MFD_CLOEXEC);

        assert_true(fd >= 0);
        return fd;
}

/* Receive bytes (from a file) into a new image; the error message, NULL on success. */
static char *receive_bytes(const uint8_t *p, size_t n, uint64_t size) {
        int in = mem_file(), img = mem_file();
        GError *error = NULL;
        char *msg = NULL;

        put(in, 0, p, n);
        if (!image_stream_receive(in, img, size, -1, NULL, &error)) {
                msg = g_strdup(error->message);
                g_error_free(error);
        }
        close(in);
        close(img);
        return msg;
}

static void test_damage(void **state) {
        uint64_t size;
        g_autoptr(GByteArray) s = small_stream(&size);
        g_autofree uint8_t *copy = g_memdup2(s->data, s->len);
        g_autofree char *ok = receive_bytes(s->data, s->len, size);

        assert_null(ok);
        /* every byte of the header and of the first record header, then every 11th byte, inverted */
        for (size_t i = 0; i < s->len; i += i < 64 ? 1 : 11) {
                g_autofree char *msg = NULL;

                copy[i] ^= 0xff;
                msg = receive_bytes(copy, s->len, size);
                copy[i] ^= 0xff;
                if (!msg)
                        fail_msg("byte %zu inverted was accepted", i);
        }
        /* every truncation through the first record's header, then every 13th, and each end but one byte */
        for (size_t n = 0; n < s->len; n += n < 128 || n + 64 > s->len ? 1 : 13) {
                g_autofree char *msg = receive_bytes(s->data, n, size);

                if (!msg)
                        fail_msg("a stream cut at %zu of %u bytes was accepted", n, s->len);
        }
        /* a byte after the end, another size */
        g_byte_array_append(s, (const guint8 *) "", 1);
        {
                g_autofree char *after = receive_bytes(s->data, s->len, size);
                g_autofree char *other = receive_bytes(s->data, s->len - 1, size + 4096);

                assert_non_null(after);
                assert_non_null(strstr(after, "after the end"));
                assert_non_null(other);
                assert_non_null(strstr(other, "namespace here"));
        }
}

static void test_data_corruption_named(void **state) {
        uint64_t size;
        g_autoptr(GByteArray) s = small_stream(&size);
        /* the first extent's data starts after the header and its record header */
        g_autofree char *msg = NULL;

        s->data[IMAGE_STREAM_HEADER_SIZE + IMAGE_STREAM_RECORD_SIZE + 10] ^= 1;
        msg = receive_bytes(s->data, s->len, size);
        assert_non_null(msg);
        assert_non_null(strstr(msg, "checksum mismatch in the extent of 8192 bytes at offset 4096"));
}

static void test_cancel(void **state) {
        int fds[2], img = temp_file(0), src = make_image(), cancel = eventfd(1, EFD_CLOEXEC);
        GError *error = NULL;

        assert_int_equal(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
        /* nothing ever arrives: the cancel ends the wait */
        assert_false(image_stream_receive(fds[0], img, 4096, cancel, NULL, &error));
        assert_non_null(strstr(error->message, "cancelled"));
        g_clear_error(&error);
        /* nobody reads: the cancel ends the sender too */
        assert_false(image_stream_send(src, IMG_SIZE, fds[1], cancel, NULL, NULL, NULL, &error));
        assert_non_null(strstr(error->message, "cancelled"));
        g_clear_error(&error);
        close(fds[0]);
        /* the reader went away */
        assert_false(image_stream_send(src, IMG_SIZE, fds[1], -1, NULL, NULL, NULL, &error));
        assert_non_null(strstr(error->message, "went away"));
        g_clear_error(&error);
        close(fds[1]);
        close(cancel);
        close(img);
        close(src);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_crc),
                cmocka_unit_test(test_round_trip_pipe),
                cmocka_unit_test(test_round_trip_socket),
                cmocka_unit_test(test_damage),
                cmocka_unit_test(test_data_corruption_named),
                cmocka_unit_test(test_cancel),
        };

        signal(SIGPIPE, SIG_IGN);       /* as vfud: a reader gone is an error, not a death */
        return cmocka_run_group_tests(tests, NULL, NULL);
}
