/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The DMA map table.  A sorted array of non-overlapping maps; lookups are a
 * binary search.  The array is only changed on the control thread while the
 * device is quiesced, so data-path translations take no lock.  Dirty bits
 * are set with atomics because several data-path threads may write them.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "dma.h"
#include "proto.h"

typedef struct VuDmaFile {
        dev_t dev;
        ino_t ino;
        int fd;
        unsigned refs;
} VuDmaFile;

typedef struct VuDmaRegion {
        uint64_t gpa, size, fd_offset;
        uint32_t prot;                  /* VU_DMA_READ | VU_DMA_WRITE */
        VuDmaFile *file;                /* NULL: message-only map, never touched */
        void *map;                      /* mmap base (aligned down) */
        size_t map_len;
        uint8_t *host;                  /* host address of gpa */
        uint64_t *dirty;                /* one bit per logging page, or NULL */
        uint64_t dirty_first;           /* first logging page number covered */
        uint64_t dirty_bits;
} VuDmaRegion;

struct VuDma {
        VuDmaRegion *r;
        unsigned n, cap;
        unsigned max_maps;
        GPtrArray *files;               /* VuDmaFile*, de-duplicated by inode */
        uint64_t log_pgsize;            /* 0: logging off */
};

VuDma *vu_dma_new(unsigned max_maps) {
        VuDma *d = g_new0(VuDma, 1);

        d->max_maps = max_maps ? max_maps : VU_MAX_DMA_MAPS;
        d->files = g_ptr_array_new();
        return d;
}

void vu_dma_free(VuDma *d) {
        if (!d)
                return;
        vu_dma_unmap_all(d);
        g_ptr_array_unref(d->files);
        g_free(d->r);
        g_free(d);
}

unsigned vu_dma_count(const VuDma *d) {
        return d->n;
}

static void file_unref(VuDma *d, VuDmaFile *f) {
        if (!f || --f->refs)
                return;
        g_ptr_array_remove_fast(d->files, f);
        close(f->fd);
        g_free(f);
}

static int file_get(VuDma *d, int fd, const struct stat *st, VuDmaFile **out) {
        VuDmaFile *f;
        int nfd;

        for (unsigned i = 0; i < d->files->len; i++) {
                f = g_ptr_array_index(d->files, i);
                if (f->dev == st->st_dev && f->ino == st->st_ino) {
                        f->refs++;
                        *out = f;
                        return 0;
                }
        }
        nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (nfd < 0)
                return -errno;
        f = g_new0(VuDmaFile, 1);
        f->dev = st->st_dev;
        f->ino = st->st_ino;
        f->fd = nfd;
        f->refs = 1;
        g_ptr_array_add(d->files, f);
        *out = f;
        return 0;
}

static void region_release(VuDma *d, VuDmaRegion *r) {
        if (r->map)
                munmap(r->map, r->map_len);
        file_unref(d, r->file);
        g_free(r->dirty);
        memset(r, 0, sizeof(*r));
}

/* Index of the first region whose gpa is > addr. */
static unsigned upper_bound(const VuDma *d, uint64_t addr) {
        unsigned lo = 0, hi = d->n;

        while (lo < hi) {
                unsigned mid = lo + (hi - lo) / 2;

                if (d->r[mid].gpa <= addr)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* The region containing addr, or NULL. */
static const VuDmaRegion *find(const VuDma *d, uint64_t addr) {
        unsigned i = upper_bound(d, addr);

        if (i == 0)
                return NULL;
        if (addr - d->r[i - 1].gpa < d->r[i - 1].size)
                return &d->r[i - 1];
        return NULL;
}

static int dirty_alloc(VuDmaRegion *r, uint64_t pgsize) {
        uint64_t first = r->gpa / pgsize, last = (r->gpa + r->size - 1) / pgsize;
        uint64_t bits = last - first + 1;

        r->dirty = g_try_malloc0_n((gsize) ((bits + 63) / 64), sizeof(uint64_t));
        if (!r->dirty)
                return -ENOMEM;
        r->dirty_first = first;
        r->dirty_bits = bits;
        return 0;
}

static bool same_map(const VuDmaRegion *r, uint64_t gpa, uint64_t size, uint64_t off,
                     uint32_t prot, const struct stat *st) {
        if (r->gpa != gpa || r->size != size || r->fd_offset != off || r->prot != prot)
                return false;
        if (!st)
                return r->file == NULL;
        return r->file && r->file->dev == st->st_dev && r->file->ino == st->st_ino;
}

int vu_dma_map(VuDma *d, uint64_t gpa, uint64_t size, uint64_t fd_offset, uint32_t prot, int fd) {
        VuDmaRegion nr = { .gpa = gpa, .size = size, .fd_offset = fd_offset, .prot = prot };
        struct stat st;
        unsigned i;
        int r;

        if (prot == 0 || (prot & ~(VU_DMA_READ | VU_DMA_WRITE)))
                return -EINVAL;
        if (size == 0 || size > VU_MAX_DMA_SIZE || gpa + size - 1 < gpa)
                return -EINVAL;
        if ((gpa | size) & (VU_PGSIZE - 1))
                return -EINVAL;
        if (fd >= 0) {
                if (fstat(fd, &st) < 0)
                        return -errno;
                /* A map beyond the end of the file would SIGBUS us on access. */
                if (!S_ISREG(st.st_mode) || st.st_size < 0 || fd_offset > (uint64_t) st.st_size ||
                    size > (uint64_t) st.st_size - fd_offset)
                        return -EINVAL;
        }

        i = upper_bound(d, gpa);
        if (i > 0 && d->r[i - 1].gpa + d->r[i - 1].size > gpa)
                return same_map(&d->r[i - 1], gpa, size, fd_offset, prot, fd >= 0 ? &st : NULL) ? 0 : -EINVAL;
        if (i < d->n && d->r[i].gpa <= gpa + size - 1)
                return -EINVAL;
        if (d->n >= d->max_maps)
                return -ENOSPC;

        if (fd >= 0) {
                uint64_t align = VU_PGSIZE, delta;
                int mprot = PROT_READ | ((prot & VU_DMA_WRITE) ? PROT_WRITE : 0), seals;

                /* hugetlbfs files need maps in their own page size. */
                if (st.st_blksize > (blksize_t) VU_PGSIZE && st.st_blksize <= (1 << 30) &&
                    !(st.st_blksize & (st.st_blksize - 1)))
                        align = (uint64_t) st.st_blksize;
                delta = fd_offset & (align - 1);
                if (size + delta < size || size + delta > SIZE_MAX - align)
                        return -EINVAL;
                nr.map_len = (size_t) ((size + delta + align - 1) & ~(align - 1));
                nr.map = mmap(NULL, nr.map_len, mprot, MAP_SHARED, fd, (off_t) (fd_offset - delta));
                if (nr.map == MAP_FAILED)
                        return -errno;
                (void) madvise(nr.map, nr.map_len, MADV_DONTDUMP);
                /*
                 * A client that shrinks the file under our map would make
                 * every later access SIGBUS.  QEMU's memfd backend seals
                 * against shrinking; an unsealed memfd gets the seal from
                 * us, and the size is checked again under it.  Plain files
                 * (memory-backend-file) cannot be sealed: noted only.
                 */
                seals = fcntl(fd, F_GET_SEALS);
                if (seals >= 0 && !(seals & F_SEAL_SHRINK) && !(seals & F_SEAL_SEAL) &&
                    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0) {
                        struct stat st2;
                        if (fstat(fd, &st2) < 0 || fd_offset > (uint64_t) st2.st_size ||
                            size > (uint64_t) st2.st_size - fd_offset) {
                                munmap(nr.map, nr.map_len);
                                return -EINVAL;
                        }
                        seals |= F_SEAL_SHRINK;
                }
                if (seals < 0 || !(seals & F_SEAL_SHRINK))
                        g_debug("DMA map at 0x%" G_GINT64_MODIFIER "x: file not sealed against shrinking", gpa);
                nr.host = (uint8_t *) nr.map + delta;
                r = file_get(d, fd, &st, &nr.file);
                if (r < 0) {
                        munmap(nr.map, nr.map_len);
                        return r;
                }
                if (d->log_pgsize && (r = dirty_alloc(&nr, d->log_pgsize)) < 0) {
                        region_release(d, &nr);
                        return r;
                }
        }

        if (d->n == d->cap) {
                d->cap = d->cap ? d->cap * 2 : 16;
                d->r = g_renew(VuDmaRegion, d->r, d->cap);
        }
        memmove(&d->r[i + 1], &d->r[i], (d->n - i) * sizeof(VuDmaRegion));
        d->r[i] = nr;
        d->n++;
        return 0;
}

int vu_dma_unmap(VuDma *d, uint64_t gpa, uint64_t size) {
        unsigned i = upper_bound(d, gpa);

        if (i == 0 || d->r[i - 1].gpa != gpa || d->r[i - 1].size != size)
                return -ENOENT;
        i--;
        region_release(d, &d->r[i]);
        memmove(&d->r[i], &d->r[i + 1], (d->n - i - 1) * sizeof(VuDmaRegion));
        d->n--;
        return 0;
}

void vu_dma_unmap_all(VuDma *d) {
        for (unsigned i = 0; i < d->n; i++)
                region_release(d, &d->r[i]);
        d->n = 0;
}

static void mark_dirty(const VuDmaRegion *r, uint64_t pgsize, uint64_t gpa, uint64_t len) {
        uint64_t first = gpa / pgsize, last = (gpa + len - 1) / pgsize;

        if (!r->dirty || len == 0)
                return;
        for (uint64_t p = first; p <= last; p++) {
                uint64_t bit = p - r->dirty_first;

                __atomic_fetch_or(&r->dirty[bit / 64], 1ull << (bit % 64), __ATOMIC_RELAXED);
        }
}

static int dma_translate(void *opaque, uint64_t gpa, uint64_t len, int prot,
                         struct iovec *iov, unsigned max_iov) {
        VuDma *d = opaque;
        uint64_t pgsize = __atomic_load_n(&d->log_pgsize, __ATOMIC_ACQUIRE);
        unsigned n = 0;

        if (len == 0)
                return 0;
        if (gpa + len - 1 < gpa)
                return -EINVAL;
        while (len > 0) {
                const VuDmaRegion *r = find(d, gpa);
                uint64_t off, chunk;
                uint8_t *host;

                if (!r || !r->host)
                        return -EFAULT;
                if (((prot & VU_PROT_READ) && !(r->prot & VU_DMA_READ)) ||
                    ((prot & VU_PROT_WRITE) && !(r->prot & VU_DMA_WRITE)))
                        return -EACCES;
                off = gpa - r->gpa;
                chunk = MIN(len, r->size - off);
                host = r->host + off;
                if (n > 0 && (uint8_t *) iov[n - 1].iov_base + iov[n - 1].iov_len == host)
                        iov[n - 1].iov_len += chunk;
                else {
                        if (n == max_iov)
                                return -ENOSPC;
                        iov[n].iov_base = host;
                        iov[n].iov_len = chunk;
                        n++;
                }
                if ((prot & VU_PROT_WRITE) && pgsize)
                        mark_dirty(r, pgsize, gpa, chunk);
                gpa += chunk;
                len -= chunk;
        }
        return (int) n;
}

static void dma_mark_dirty(void *opaque, uint64_t gpa, uint64_t len) {
        VuDma *d = opaque;
        uint64_t pgsize = __atomic_load_n(&d->log_pgsize, __ATOMIC_ACQUIRE);

        if (!pgsize || len == 0 || gpa + len - 1 < gpa)
                return;
        while (len > 0) {
                const VuDmaRegion *r = find(d, gpa);
                uint64_t chunk;

                if (!r) {
                        /* skip to the next map, if any */
                        unsigned i = upper_bound(d, gpa);

                        if (i >= d->n || d->r[i].gpa - gpa >= len)
                                return;
                        len -= d->r[i].gpa - gpa;
                        gpa = d->r[i].gpa;
                        continue;
                }
                chunk = MIN(len, r->size - (gpa - r->gpa));
                mark_dirty(r, pgsize, gpa, chunk);
                gpa += chunk;
                len -= chunk;
        }
}

static const VuMemOps dma_mem_ops = {
        .translate = dma_translate,
        .mark_dirty = dma_mark_dirty,
};

VuMem vu_dma_mem(VuDma *d) {
        return (VuMem) { .ops = &dma_mem_ops, .opaque = d };
}

int vu_dma_logging_start(VuDma *d, uint64_t page_size) {
        int r;

        if (page_size < VU_PGSIZE || (page_size & (page_size - 1)))
                return -EINVAL;
        if (d->log_pgsize)
                return -EBUSY;
        for (unsigned i = 0; i < d->n; i++) {
                if (!d->r[i].host)
                        continue;
                r = dirty_alloc(&d->r[i], page_size);
                if (r < 0) {
                        for (unsigned j = 0; j <= i; j++)
                                g_clear_pointer(&d->r[j].dirty, g_free);
                        return r;
                }
        }
        __atomic_store_n(&d->log_pgsize, page_size, __ATOMIC_RELEASE);
        return 0;
}

void vu_dma_logging_stop(VuDma *d) {
        __atomic_store_n(&d->log_pgsize, 0, __ATOMIC_RELEASE);
        for (unsigned i = 0; i < d->n; i++)
                g_clear_pointer(&d->r[i].dirty, g_free);
}

bool vu_dma_logging_active(const VuDma *d) {
        return __atomic_load_n(&d->log_pgsize, __ATOMIC_ACQUIRE) != 0;
}

static void set_bits(uint8_t *bm, uint64_t from, uint64_t to) {
        for (uint64_t b = from; b <= to; b++)
                bm[b / 8] |= (uint8_t) (1u << (b % 8));
}

int vu_dma_logging_report(VuDma *d, uint64_t iova, uint64_t length, uint64_t page_size,
                          uint8_t *bitmap, size_t bitmap_len) {
        uint64_t end, pages, lp = d->log_pgsize;

        if (!lp)
                return -EINVAL;
        if (page_size == 0 || (page_size & (page_size - 1)) || length == 0 ||
            iova + length - 1 < iova)
                return -EINVAL;
        end = iova + length - 1;
        pages = (length - 1) / page_size + 1;
        if (bitmap_len < pages / 8 + (pages % 8 != 0))
                return -EINVAL;
        memset(bitmap, 0, bitmap_len);

        unsigned start = upper_bound(d, iova);

        for (unsigned i = start ? start - 1 : 0; i < d->n; i++) {
                const VuDmaRegion *r = &d->r[i];
                uint64_t lo, hi, plo, phi;

                if (r->gpa > end)
                        break;
                if (!r->dirty || r->gpa + r->size - 1 < iova)
                        continue;
                lo = MAX(r->gpa, iova);
                hi = MIN(r->gpa + r->size - 1, end);
                plo = lo / lp;
                phi = hi / lp;
                for (uint64_t p = plo; p <= phi; p++) {
                        uint64_t bit = p - r->dirty_first, old, a, b;

                        if ((bit % 64) == 0 && p + 63 <= phi &&
                            __atomic_load_n(&r->dirty[bit / 64], __ATOMIC_RELAXED) == 0) {
                                p += 63;
                                continue;
                        }
                        old = __atomic_fetch_and(&r->dirty[bit / 64], ~(1ull << (bit % 64)),
                                                 __ATOMIC_RELAXED);
                        if (!(old & (1ull << (bit % 64))))
                                continue;
                        a = MAX(p * lp, lo);
                        b = MIN(p * lp + lp - 1, hi);
                        set_bits(bitmap, (a - iova) / page_size, (b - iova) / page_size);
                }
        }
        return 0;
}
