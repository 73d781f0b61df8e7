/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The DMA map table.  A balanced tree (GTree) of non-overlapping maps by
 * guest address: map, unmap and lookup are O(log n) in any order.  The tree
 * is only changed on the control thread while the device is quiesced, and
 * lookups only read it, so data-path translations take no lock.  Dirty bits
 * are set with atomics because several data-path threads may write them.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "dma.h"
#include "proto.h"

typedef struct VuDmaRegion {
        uint64_t gpa, size, fd_offset;
        uint32_t prot;                  /* VU_DMA_READ | VU_DMA_WRITE */
        bool has_file;                  /* false: message-only map, never touched */
        dev_t dev;                      /* the file's identity, for identical re-maps */
        ino_t ino;
        void *map;                      /* mmap base (aligned down) */
        size_t map_len;
        uint8_t *host;                  /* host address of gpa */
        uint64_t *dirty;                /* one bit per logging page, or NULL */
        uint64_t dirty_first;           /* first logging page number covered */
        uint64_t dirty_bits;
        bool lost;                      /* the file shrank under it: zeroes in its place (atomic) */
} VuDmaRegion;

struct VuDma {
        GTree *tree;                    /* VuDmaRegion* (key and value), by gpa; non-overlapping */
        unsigned n;
        unsigned max_maps;
        uint64_t log_pgsize;            /* 0: logging off */
        unsigned lost;                  /* maps lost to a shrunk file (atomic) */
        int slot;                       /* in the guard's list, or -1 */
};

/*
 * The SIGBUS guard.  A client can shrink a file it cannot seal (QEMU's
 * memory-backend-file, a memfd made without sealing) under our map, and the
 * next access to the lost pages raises SIGBUS.  The handler finds the map
 * holding the faulting address, puts private zeroed memory in its place,
 * marks it lost (later translations fail with -EFAULT: an NVMe Data
 * Transfer Error), notes the fault for the copy in progress
 * (vu_mem_fault_mark) and returns: the access completes on the zeroes.
 * Faults anywhere else go to the handler that was there before.  The
 * handler only reads the trees: they change only while the device is
 * quiesced, when no thread of theirs touches guest memory.
 */
#define VU_DMA_GUARD_SLOTS 64

static VuDma *guard_tables[VU_DMA_GUARD_SLOTS];
static struct sigaction guard_prev;

static bool guard_patch(VuDma *d, uintptr_t addr) {
        for (GTreeNode *n = g_tree_node_first(d->tree); n; n = g_tree_node_next(n)) {
                VuDmaRegion *r = g_tree_node_value(n);

                if (!r->map || addr - (uintptr_t) r->map >= r->map_len)
                        continue;
                if (mmap(r->map, r->map_len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == MAP_FAILED)
                        return false;
                if (!__atomic_exchange_n(&r->lost, true, __ATOMIC_ACQ_REL))
                        __atomic_fetch_add(&d->lost, 1, __ATOMIC_RELAXED);
                return true;
        }
        return false;
}

static void guard_sigbus(int sig, siginfo_t *si, void *uc) {
        int saved = errno;

        for (unsigned i = 0; i < VU_DMA_GUARD_SLOTS; i++) {
                VuDma *d = __atomic_load_n(&guard_tables[i], __ATOMIC_ACQUIRE);

                if (d && guard_patch(d, (uintptr_t) si->si_addr)) {
                        vu_mem_fault_note();
                        errno = saved;
                        return;
                }
        }
        errno = saved;
        if (guard_prev.sa_flags & SA_SIGINFO)
                guard_prev.sa_sigaction(sig, si, uc);
        else if (guard_prev.sa_handler != SIG_DFL && guard_prev.sa_handler != SIG_IGN)
                guard_prev.sa_handler(sig);
        else
                signal(SIGBUS, SIG_DFL);        /* the access faults again, with the default action */
}

/*
 * Be the SIGBUS handler, chaining to whoever was.  Checked at every map too:
 * test frameworks install and restore their own around each test.
 */
static void guard_install(void) {
        static GMutex lock;
        struct sigaction sa = { .sa_sigaction = guard_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER }, cur;

        g_mutex_lock(&lock);
        if (sigaction(SIGBUS, NULL, &cur) == 0 &&
            !((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == guard_sigbus)) {
                sigemptyset(&sa.sa_mask);
                guard_prev = cur;
                if (sigaction(SIGBUS, &sa, NULL) < 0)
                        g_debug("cannot install the DMA SIGBUS guard: %s", g_strerror(errno));
        }
        g_mutex_unlock(&lock);
}

static void guard_add(VuDma *d) {
        guard_install();
        d->slot = -1;
        for (int i = 0; i < VU_DMA_GUARD_SLOTS && d->slot < 0; i++) {
                VuDma *none = NULL;

                if (__atomic_compare_exchange_n(&guard_tables[i], &none, d, false, __ATOMIC_ACQ_REL,
                                                __ATOMIC_RELAXED))
                        d->slot = i;
        }
        if (d->slot < 0)
                g_debug("DMA SIGBUS guard full: a table without it");
}

static void guard_remove(VuDma *d) {
        if (d->slot >= 0)
                __atomic_store_n(&guard_tables[d->slot], NULL, __ATOMIC_RELEASE);
}

#define VU_DMA_DEFAULT_MAX_MAP_COUNT 65530

unsigned vu_dma_limit_for(long max_map_count) {
        long n;

        if (max_map_count <= 0)
                max_map_count = VU_DMA_DEFAULT_MAX_MAP_COUNT;
        /* A quarter (at least 1024) stays for the process's own maps: libraries, stacks, heaps, rings. */
        n = max_map_count - MAX(max_map_count / 4, 1024);
        return (unsigned) CLAMP(n, 1, (long) VU_MAX_DMA_MAPS);
}

unsigned vu_dma_host_limit(void) {
        g_autofree char *text = NULL;
        long v = 0;

        if (g_file_get_contents("/proc/sys/vm/max_map_count", &text, NULL, NULL))
                v = strtol(text, NULL, 10);
        return vu_dma_limit_for(v);
}

static int region_cmp(gconstpointer a, gconstpointer b, gpointer unused) {
        uint64_t x = ((const VuDmaRegion *) a)->gpa, y = ((const VuDmaRegion *) b)->gpa;

        return x < y ? -1 : x > y;
}

VuDma *vu_dma_new(unsigned max_maps) {
        VuDma *d = g_new0(VuDma, 1);
        unsigned host = vu_dma_host_limit();

        d->max_maps = max_maps ? MIN(max_maps, host) : host;
        d->tree = g_tree_new_full(region_cmp, NULL, NULL, NULL);
        guard_add(d);
        return d;
}

void vu_dma_free(VuDma *d) {
        if (!d)
                return;
        guard_remove(d);
        vu_dma_unmap_all(d);
        g_tree_unref(d->tree);
        g_free(d);
}

unsigned vu_dma_count(const VuDma *d) {
        return d->n;
}

unsigned vu_dma_max_maps(const VuDma *d) {
        return d->max_maps;
}

unsigned vu_dma_lost_count(const VuDma *d) {
        return __atomic_load_n(&d->lost, __ATOMIC_RELAXED);
}

static void region_free(VuDmaRegion *r) {
        if (r->map)
                munmap(r->map, r->map_len);
        g_free(r->dirty);
        g_free(r);
}

static VuDmaRegion *node_region(GTreeNode *n) {
        return n ? g_tree_node_value(n) : NULL;
}

/* The region with the largest gpa ≤ addr, or NULL. */
static VuDmaRegion *floor_region(const VuDma *d, uint64_t addr) {
        VuDmaRegion key = { .gpa = addr };
        GTreeNode *n = g_tree_upper_bound(d->tree, &key);

        return node_region(n ? g_tree_node_previous(n) : g_tree_node_last(d->tree));
}

/* The first region with gpa > addr, or NULL. */
static VuDmaRegion *next_region(const VuDma *d, uint64_t addr) {
        VuDmaRegion key = { .gpa = addr };

        return node_region(g_tree_upper_bound(d->tree, &key));
}

static gint contains(gconstpointer key, gconstpointer user_data) {
        const VuDmaRegion *r = key;
        uint64_t addr = *(const uint64_t *) user_data;

        if (addr < r->gpa)
                return -1;
        return addr - r->gpa < r->size ? 0 : 1;
}

/* The region containing addr, or NULL: one descent of the tree, no allocation. */
static const VuDmaRegion *find(const VuDma *d, uint64_t addr) {
        return node_region(g_tree_search_node(d->tree, contains, &addr));
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
                return !r->has_file;
        return r->has_file && r->dev == st->st_dev && r->ino == st->st_ino;
}

int vu_dma_map(VuDma *d, uint64_t gpa, uint64_t size, uint64_t fd_offset, uint32_t prot, int fd) {
        VuDmaRegion nr = { .gpa = gpa, .size = size, .fd_offset = fd_offset, .prot = prot };
        const VuDmaRegion *prev, *next;
        struct stat st;
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

        prev = floor_region(d, gpa);
        if (prev && prev->gpa + prev->size > gpa)
                return same_map(prev, gpa, size, fd_offset, prot, fd >= 0 ? &st : NULL) ? 0 : -EINVAL;
        next = next_region(d, gpa);
        if (next && next->gpa <= gpa + size - 1)
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
                 * (memory-backend-file) and memfds made without sealing
                 * cannot be sealed, and are legitimate: the SIGBUS guard
                 * covers them.
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
                        g_debug("DMA map at 0x%" G_GINT64_MODIFIER "x: file not sealed against shrinking "
                                "(the SIGBUS guard covers it)", gpa);
                nr.host = (uint8_t *) nr.map + delta;
                nr.has_file = true;
                guard_install();        /* still ours? a test framework may have taken SIGBUS since */
                nr.dev = st.st_dev;
                nr.ino = st.st_ino;
                if (d->log_pgsize && (r = dirty_alloc(&nr, d->log_pgsize)) < 0) {
                        munmap(nr.map, nr.map_len);
                        return r;
                }
        }

        VuDmaRegion *reg = g_new(VuDmaRegion, 1);
        *reg = nr;
        g_tree_insert(d->tree, reg, reg);
        d->n++;
        return 0;
}

int vu_dma_unmap(VuDma *d, uint64_t gpa, uint64_t size) {
        VuDmaRegion *r = floor_region(d, gpa);

        if (!r || r->gpa != gpa || r->size != size)
                return -ENOENT;
        g_tree_remove(d->tree, r);
        region_free(r);
        d->n--;
        return 0;
}

static gboolean free_one(gpointer key, gpointer value, gpointer unused) {
        region_free(value);
        return FALSE;
}

void vu_dma_unmap_all(VuDma *d) {
        g_tree_foreach(d->tree, free_one, NULL);
        g_tree_remove_all(d->tree);
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

                if (!r || !r->host || __atomic_load_n(&r->lost, __ATOMIC_ACQUIRE))
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
                        const VuDmaRegion *nx = next_region(d, gpa);

                        if (!nx || nx->gpa - gpa >= len)
                                return;
                        len -= nx->gpa - gpa;
                        gpa = nx->gpa;
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

typedef struct DirtyAllocCtx {
        uint64_t pgsize;
        int ret;
} DirtyAllocCtx;

static gboolean dirty_alloc_one(gpointer key, gpointer value, gpointer data) {
        VuDmaRegion *r = value;
        DirtyAllocCtx *ctx = data;

        if (r->host)
                ctx->ret = dirty_alloc(r, ctx->pgsize);
        return ctx->ret < 0;
}

static gboolean dirty_free_one(gpointer key, gpointer value, gpointer unused) {
        g_clear_pointer(&((VuDmaRegion *) value)->dirty, g_free);
        return FALSE;
}

int vu_dma_logging_start(VuDma *d, uint64_t page_size) {
        DirtyAllocCtx ctx = { page_size, 0 };

        if (page_size < VU_PGSIZE || (page_size & (page_size - 1)))
                return -EINVAL;
        if (d->log_pgsize)
                return -EBUSY;
        g_tree_foreach(d->tree, dirty_alloc_one, &ctx);
        if (ctx.ret < 0) {
                g_tree_foreach(d->tree, dirty_free_one, NULL);
                return ctx.ret;
        }
        __atomic_store_n(&d->log_pgsize, page_size, __ATOMIC_RELEASE);
        return 0;
}

void vu_dma_logging_stop(VuDma *d) {
        __atomic_store_n(&d->log_pgsize, 0, __ATOMIC_RELEASE);
        g_tree_foreach(d->tree, dirty_free_one, NULL);
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

        VuDmaRegion key = { .gpa = iova };
        GTreeNode *node = g_tree_upper_bound(d->tree, &key);

        node = node ? g_tree_node_previous(node) : g_tree_node_last(d->tree);
        if (!node)
                node = g_tree_node_first(d->tree);
        for (; node; node = g_tree_node_next(node)) {
                const VuDmaRegion *r = g_tree_node_value(node);
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
