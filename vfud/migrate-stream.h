/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The image stream of a cold migration (migrate-stream.c; format in
 * docs/migration.md): one namespace image sent over one byte stream — a
 * pipe handed to the destination vfud as a D-Bus Unix fd, or ssh's stdin.
 * Holes (SEEK_DATA/SEEK_HOLE) and all-zero blocks are not sent; every
 * extent carries a CRC-32C; the receiver writes into an emptied image and
 * flushes it before it reports success.  Both ends run in threads of their
 * own and poll a cancel fd (an eventfd: readable means stop).  Memory is a
 * buffer of IMAGE_STREAM_MAX_EXTENT per end, whatever the image's size.
 *
 * Errors: FALSE with a GError in MANAGER_ERROR (FAILED for cancelled or a
 * broken stream, BACKEND_FAILED for the image's own I/O).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#define IMAGE_STREAM_MAGIC "VFUIMG\r\n"
#define IMAGE_STREAM_MAJOR 1
#define IMAGE_STREAM_MINOR 0
#define IMAGE_STREAM_HEADER_SIZE 32
#define IMAGE_STREAM_RECORD_SIZE 24
#define IMAGE_STREAM_MAX_EXTENT (4u << 20)
#define IMAGE_STREAM_ZERO_BLOCK 4096u

typedef enum ImageRecordType {
        IMAGE_RECORD_DATA = 1,          /* length bytes at offset follow */
        IMAGE_RECORD_END = 2,           /* 16 bytes follow: u64 data bytes, u64 data records */
} ImageRecordType;

/* Bytes of the image covered so far (sent or skipped as holes/zeros); called from the sending thread. */
typedef void (*ImageStreamProgressFunc)(uint64_t covered, void *userdata);

typedef struct ImageStreamStats {
        uint64_t data_bytes;            /* bytes carried in DATA records */
        uint64_t records;               /* DATA records */
} ImageStreamStats;


/*
 * Send the first size bytes of image_fd (a file or a block device) to out_fd
 * (made non-blocking here).  Blocks until the END record is written; stops
 * with an error once cancel_fd is readable or the reader went away.
 */
gboolean image_stream_send(int image_fd, uint64_t size, int out_fd, int cancel_fd, ImageStreamProgressFunc progress,
                           void *userdata, ImageStreamStats *stats, GError **error);

/*
 * Receive a stream from in_fd into image_fd, an image file of size bytes
 * which is emptied first (what the stream skips reads as zeros).  Every
 * header, extent and the end are checked (size, bounds, ascending order,
 * CRC-32C, counts, nothing after the end); the image is fdatasync'ed
 * before TRUE.  On FALSE the image's content is undefined.
 */
gboolean image_stream_receive(int in_fd, int image_fd, uint64_t size, int cancel_fd, ImageStreamStats *stats,
                              GError **error);
