/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The DMA map table: what the client told us of guest memory.
 *
 * Mutations (map, unmap) happen on the control thread only and only after
 * the device has been quiesced (VuDeviceOps.quiesce), so translations from
 * data-path threads need no lock: they never race a mutation.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "mem.h"

typedef struct VuDma VuDma;

/*
 * At most max_maps maps (0: as many as the host allows), and never more
 * than the host allows: every map is a memory mapping of the process, and
 * vm.max_map_count bounds those.
 */
VuDma *vu_dma_new(unsigned max_maps);
void vu_dma_free(VuDma *d);
/*
 * How many maps a host with this vm.max_map_count allows: what is left
 * after a quarter (at least 1024) for the process's own mappings, at most
 * VU_MAX_DMA_MAPS, at least 1.  ≤ 0 means unknown: the kernel's default.
 */
unsigned vu_dma_limit_for(long max_map_count);
/* vu_dma_limit_for() of this host's /proc/sys/vm/max_map_count. */
unsigned vu_dma_host_limit(void);

/*
 * Add a map.  fd < 0 means a message-only map (accepted, never touched).
 * The fd is not consumed, nor kept: the mapping holds the file.
 * gpa and size are 4 KiB-aligned, size ≤ 8 TiB; prot is VU_DMA_READ and/or
 * VU_DMA_WRITE.  The fd must be a regular file (memfd, tmpfs, hugetlbfs)
 * holding fd_offset+size bytes, so the mapping cannot run past its end.
 * Returns 0 (also for an identical re-map), -EINVAL (other overlap, bad
 * flags, unaligned, too large, file too small or not a file), -ENOSPC
 * (the table's limit reached), or the errno of fstat/mmap.
 */
int vu_dma_map(VuDma *d, uint64_t gpa, uint64_t size, uint64_t fd_offset,
               uint32_t prot, int fd);
/* Exact-match removal (same gpa and size as a map): 0 or -ENOENT. */
int vu_dma_unmap(VuDma *d, uint64_t gpa, uint64_t size);
void vu_dma_unmap_all(VuDma *d);
unsigned vu_dma_count(const VuDma *d);
unsigned vu_dma_max_maps(const VuDma *d);
/*
 * Maps whose file shrank under them (the client truncated guest RAM it
 * could not seal).  The first table created installs a process-wide
 * SIGBUS handler: an access to such a map finds zeroes instead of killing
 * the process, and translations there fail with -EFAULT from then on.
 */
unsigned vu_dma_lost_count(const VuDma *d);

/* The VuMem face of the table, for device models. */
VuMem vu_dma_mem(VuDma *d);

/* Dirty logging (migration v2).  page_size is a power of two ≥ 4096. */
int vu_dma_logging_start(VuDma *d, uint64_t page_size);
void vu_dma_logging_stop(VuDma *d);
bool vu_dma_logging_active(const VuDma *d);
/*
 * Fill bitmap (one bit per page_size page of [iova, iova+length)) with the
 * pages dirtied since the last report for that range, and clear them.
 * page_size may differ from the logging page size (scaled).  0 or -errno.
 */
int vu_dma_logging_report(VuDma *d, uint64_t iova, uint64_t length,
                          uint64_t page_size, uint8_t *bitmap, size_t bitmap_len);
