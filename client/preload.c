/* SPDX-License-Identifier: MIT */
/*
 * preload.c: libpoolclient-preload.so, the malloc family of an unmodified
 * program on poold's pool (LD_PRELOAD).
 *
 * It owns the routing of every malloc, free, calloc, realloc, reallocarray,
 * posix_memalign, aligned_alloc, memalign, valloc, pvalloc and
 * malloc_usable_size call: a size up to the ceiling ($POOLD_PRELOAD_MAX,
 * default the largest class) whose alignment the pool guarantees gets a block
 * of poold's pool (the one pool_default() returns); anything else, and
 * anything the pool cannot give (exhausted), goes to glibc through its
 * __libc_* entry points, which never call back into us and need no dlsym.
 * When no poold answers (or it refuses), the whole process stays on glibc:
 * it costs a failed connect() at start, no memory, and says so on stderr
 * with POOLD_PRELOAD_VERBOSE=1. The next process tries poold again. With
 * POOLD_PRELOAD_FALLBACK=embedded it takes a private embedded pool instead
 * ($POOLD_EMBEDDED_BYTES, reserved in /dev/shm up front). free, realloc and malloc_usable_size
 * tell the two apart by address: a pointer inside the pool's blocks is the
 * pool's, anything else is glibc's. There is no table of our own.
 *
 * It must never recurse or wait on itself: before its constructor ran (the
 * dynamic loader, other libraries' constructors), while the pool is being
 * made (the attach allocates), and whenever a pool call of this thread is in
 * progress (its slow paths may allocate: fopen, the HELLO to poold), a
 * thread-local guard sends the call to glibc. It takes no lock of its own.
 *
 * fork: a forked child must not share its heap with its parent, and a
 * pool's mapping is shared. So the child gets a private copy of the mapping
 * at the same address, taken just before the fork (pshm_span_snapshot and
 * pshm_os_place): the blocks it inherited stay valid and its own, but are
 * never given back to a pool (free ignores them); its first allocation
 * attaches to poold as a process of its own (else glibc, or an embedded
 * pool of its own). Only fork() runs the
 * handlers: a child of vfork, posix_spawn or a raw clone shares its
 * parent's memory anyway and must only exec.
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define PL_EXPORT __attribute__((visibility("default")))

/* glibc's own allocator, exported for this purpose (malloc interposition). */
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t align, size_t size);

/* The largest alignment a block is guaranteed (its class size, when a power
 * of two, up to a page). */
#define PL_MAX_ALIGN 4096

/* A pool this process allocated from. In a forked child the parent's pool is
 * an `image`: a private copy of the parent's blocks, never allocated from
 * and never freed into. */
struct pl_heap {
    pool_t *pool;
    uintptr_t lo;   /* address of the first byte of the pool's blocks */
    uintptr_t span; /* bytes of blocks from lo: p is ours iff p - lo < span */
    size_t max;     /* the largest size served from it */
    bool image;
};

enum { PL_EARLY, PL_NEW, PL_BUSY, PL_ON, PL_OFF };

static struct pl_heap pl_heaps[POOL_MAX_OPEN];
/* Heaps made so far. release (writer: the one thread in PL_BUSY, or the
 * child at fork): after the heap's fields; acquire in pl_image_of(). */
static pa_u32 pl_nheaps;
/* The heap new blocks come from, as an address; 0: none (glibc). release:
 * pairs with the acquire in pl_cur_heap(), after the heap's fields. */
static pa_u64 pl_cur;
/* PL_EARLY until our constructor ran, then PL_NEW -> PL_BUSY (one thread
 * makes the pool) -> PL_ON or PL_OFF; a fork child goes back to PL_NEW. */
static pa_u32 pl_state;
/* Settings, read once by the constructor (before any heap exists). */
static size_t pl_ceiling = SIZE_MAX;
static bool pl_disabled;

/* Nonzero while this thread is inside a pool call or making the pool: any
 * allocation it makes meanwhile goes to glibc. initial-exec: no allocation
 * on first access (a dynamic TLS block would call malloc). */
static __thread unsigned pl_guard POOL_TLS_MODEL;

static inline struct pl_heap *pl_cur_heap(void)
{
    /* acquire: pairs with the release store in pl_init(). */
    return (struct pl_heap *)(uintptr_t)pa_load_acquire(&pl_cur);
}

static bool pl_verbose, pl_fallback_embedded;

/* poold's pool, else an embedded one if asked for, else NULL (glibc). The
 * first pool of the process is pool_default()'s, so that a program calling
 * pool_* itself shares it with us; a child after fork makes its own. */
static pool_t *pl_open_pool(bool first)
{
    pool_t *p = first ? pool_default_attached_() : pool_attach(NULL);
    char why[300];
    snprintf(why, sizeof(why), "%s", p ? "" : pool_last_error());
    if (!p && pl_fallback_embedded)
        p = first ? pool_default() : pool_open_embedded(pool_embedded_bytes_());
    if (pl_verbose) {
        char msg[400];
        int len = p && pool_is_shared(p)
                      ? snprintf(msg, sizeof(msg),
                                 "libpoolclient-preload: pid %d: allocating from poold's pool\n",
                                 (int)getpid())
                  : p ? snprintf(msg, sizeof(msg),
                                 "libpoolclient-preload: pid %d: poold not used (%s); allocating "
                                 "from an embedded pool of this process\n",
                                 (int)getpid(), why)
                      : snprintf(msg, sizeof(msg),
                                 "libpoolclient-preload: pid %d: poold not used (%s); this "
                                 "process uses glibc's malloc\n",
                                 (int)getpid(), why);
        if (len > 0)
            (void)!write(2, msg, (size_t)len < sizeof(msg) ? (size_t)len : sizeof(msg) - 1);
    }
    return p;
}

/* Make the pool (PL_NEW -> PL_ON or PL_OFF); only one thread does it, the
 * others keep using glibc meanwhile. */
static void pl_init(void)
{
    uint32_t expect = PL_NEW;
    /* acq_rel: one thread wins; pairs with the release stores of pl_state. */
    if (!pa_cas_strong_acq_rel(&pl_state, &expect, PL_BUSY))
        return;
    pl_guard++;
    uint32_t next = PL_OFF;
    uint32_t n = pa_load_relaxed(&pl_nheaps); /* relaxed: we are its writer */
    if (!pl_disabled && n < POOL_MAX_OPEN) {
        int saved = errno;
        pool_t *pool = pl_open_pool(n == 0);
        errno = saved;
        if (pool) {
            struct pl_heap *h = &pl_heaps[n];
            const pshm_seg_t *s = &pool->seg;
            h->pool = pool;
            h->lo = (uintptr_t)s->base + s->data_off;
            h->span = (uintptr_t)(s->data_end - s->data_off);
            size_t max = pool_max_size(pool);
            h->max = pl_ceiling < max ? pl_ceiling : max;
            h->image = false;
            /* release (both): the heap's fields before it can be seen. */
            pa_store_release(&pl_nheaps, n + 1);
            pa_store_release(&pl_cur, (uint64_t)(uintptr_t)h);
            next = PL_ON;
        }
    }
    pl_guard--;
    /* release: pairs with the acquire in pl_slow_heap(). */
    pa_store_release(&pl_state, next);
}

/* No current heap: make the pool if it is time to, else glibc. */
static __attribute__((noinline)) struct pl_heap *pl_slow_heap(size_t size)
{
    /* acquire: pairs with the release stores of pl_state. */
    if (pa_load_acquire(&pl_state) != PL_NEW)
        return NULL;
    pl_init();
    struct pl_heap *h = pl_cur_heap();
    return h && size <= h->max ? h : NULL;
}

/* The heap to serve `size` from, or NULL for glibc. */
static inline struct pl_heap *pl_heap_for(size_t size)
{
    if (pshm_unlikely(pl_guard != 0))
        return NULL;
    struct pl_heap *h = pl_cur_heap();
    if (pshm_likely(h != NULL))
        return size <= h->max ? h : NULL;
    return pl_slow_heap(size);
}

/* A block of at least `size` bytes aligned to `align` (a power of two, at
 * most PL_MAX_ALIGN), or NULL with errno unchanged (then glibc serves). */
static void *pl_alloc(struct pl_heap *h, size_t size, size_t align)
{
    int saved = errno;
    pl_guard++;
    void *p = pool_malloc(h->pool, size);
    if (pshm_unlikely(p != NULL && ((uintptr_t)p & (align - 1)) != 0)) {
        /* A class that is not a power of two (poold --classes): only 8. */
        (void)pool_free(h->pool, p, 0);
        p = NULL;
    }
    pl_guard--;
    if (!p)
        errno = saved;
    return p;
}

/* malloc's alignment: what glibc gives (16) to anything that can hold a
 * 16-byte object, 8 below (as jemalloc and tcmalloc do). */
static inline size_t pl_malloc_align(size_t size)
{
    return size > 8 ? 16 : 8;
}

/* The size of the block at p in heap h (0: not a block start of a carved
 * span's class; a wild pointer). */
static size_t pl_block_size(struct pl_heap *h, const void *p)
{
    pl_guard++;
    size_t bs = pool_block_size(h->pool, p);
    pl_guard--;
    return bs;
}

/* A free the pool refuses (a double free, a pointer into the middle of a
 * block) is ignored: glibc would abort. The pool counts double frees in
 * invalid_frees (poolctl stats). */
static void pl_free_block(struct pl_heap *h, void *p)
{
    pl_guard++;
    size_t bs = pool_block_size(h->pool, p);
    if (bs != 0)
        (void)pool_free(h->pool, p, bs);
    pl_guard--;
}

/* In a forked child: the image (a parent's pool) that holds p, or NULL. */
static struct pl_heap *pl_image_of(uintptr_t a)
{
    /* acquire: pairs with the release store in pl_init(). */
    uint32_t n = pa_load_acquire(&pl_nheaps);
    for (uint32_t i = 0; i < n; i++) {
        struct pl_heap *h = &pl_heaps[i];
        if (h->image && a - h->lo < h->span)
            return h;
    }
    return NULL;
}

PL_EXPORT void *malloc(size_t size)
{
    struct pl_heap *h = pl_heap_for(size);
    if (h) {
        void *p = pl_alloc(h, size, pl_malloc_align(size));
        if (p)
            return p;
    }
    return __libc_malloc(size);
}

PL_EXPORT void free(void *ptr)
{
    if (!ptr)
        return;
    uintptr_t a = (uintptr_t)ptr;
    struct pl_heap *h = pl_cur_heap();
    if (pshm_likely(h != NULL) && a - h->lo < h->span) {
        pl_free_block(h, ptr);
        return;
    }
    /* Only a forked child has images (and then more than one heap). */
    if (pshm_unlikely(pa_load_relaxed(&pl_nheaps) > 1 || !h) && pl_image_of(a))
        return; /* the parent's block: kept, never reused */
    __libc_free(ptr);
}

PL_EXPORT void *calloc(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    struct pl_heap *h = pl_heap_for(total);
    if (h) {
        void *p = pl_alloc(h, total, pl_malloc_align(total));
        if (p) {
            memset(p, 0, total); /* blocks are reused: never zero by themselves */
            return p;
        }
    }
    return __libc_calloc(n, size);
}

/* realloc of a block of `old` usable bytes (the pool's, or an image's when
 * keep): a new block (pool or glibc), min(old, size) bytes copied. */
static void *pl_move(struct pl_heap *h, void *ptr, size_t old, size_t size, bool keep)
{
    void *q = malloc(size);
    if (!q)
        return size <= old && !keep ? ptr : NULL; /* a shrink never fails */
    memcpy(q, ptr, old < size ? old : size);
    if (!keep)
        pl_free_block(h, ptr);
    return q;
}

PL_EXPORT void *realloc(void *ptr, size_t size)
{
    if (!ptr)
        return malloc(size);
    if (size == 0) { /* glibc: free, and NULL */
        free(ptr);
        return NULL;
    }
    uintptr_t a = (uintptr_t)ptr;
    struct pl_heap *h = pl_cur_heap();
    if (h && a - h->lo < h->span) {
        size_t bs = pl_block_size(h, ptr);
        if (bs == 0) { /* not a block: a wild pointer */
            errno = ENOMEM;
            return NULL;
        }
        /* Stays when it still fits and is not much smaller: the class of
         * `size` would be this one or the one below. */
        if (size <= bs && (size > bs / 2 || bs <= 16))
            return ptr;
        return pl_move(h, ptr, bs, size, false);
    }
    struct pl_heap *img = (pa_load_relaxed(&pl_nheaps) > 1 || !h) ? pl_image_of(a) : NULL;
    if (img) {
        size_t bs = pl_block_size(img, ptr);
        return pl_move(img, ptr, bs, size, true);
    }
    return __libc_realloc(ptr, size);
}

PL_EXPORT void *reallocarray(void *ptr, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(ptr, total);
}

/* align: a power of two. A block of the class of size rounded up to a
 * multiple of align (align for 0) is aligned to align when
 * align <= PL_MAX_ALIGN, with the default classes and with powers of two
 * (pl_alloc checks it). */
static void *pl_aligned(size_t align, size_t size)
{
    size_t need = size <= align                   ? align
                  : size > SIZE_MAX - (align - 1) ? size
                                                  : (size + align - 1) & ~(align - 1);
    if (align <= PL_MAX_ALIGN) {
        struct pl_heap *h = pl_heap_for(need);
        if (h) {
            size_t a = align > pl_malloc_align(size) ? align : pl_malloc_align(size);
            void *p = pl_alloc(h, need, a);
            if (p)
                return p;
        }
    }
    return __libc_memalign(align, size);
}

static inline bool pl_pow2(size_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

PL_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    if (!pl_pow2(align) || align % sizeof(void *) != 0)
        return EINVAL;
    int saved = errno;
    void *p = pl_aligned(align, size);
    errno = saved; /* posix_memalign reports by its return value only */
    if (!p)
        return ENOMEM; /* the only failure left once align is valid */
    *out = p;
    return 0;
}

PL_EXPORT void *aligned_alloc(size_t align, size_t size)
{
    /* Not a power of two: glibc's own rule (it rounds up, or EINVAL). */
    if (!pl_pow2(align))
        return __libc_memalign(align, size);
    return pl_aligned(align, size);
}

PL_EXPORT void *memalign(size_t align, size_t size)
{
    return aligned_alloc(align, size);
}

PL_EXPORT void *valloc(size_t size)
{
    return pl_aligned((size_t)sysconf(_SC_PAGESIZE), size);
}

PL_EXPORT void *pvalloc(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (size > SIZE_MAX - page) {
        errno = ENOMEM;
        return NULL;
    }
    size_t rounded = size == 0 ? page : (size + page - 1) & ~(page - 1);
    return pl_aligned(page, rounded);
}

/* glibc's malloc_usable_size, found once in libc itself: RTLD_NEXT could
 * find another allocator's (redis-server links libjemalloc, whose
 * malloc_usable_size crashes on a glibc block). dlopen and dlsym allocate:
 * guarded. */
static size_t (*pl_libc_usable)(void *);
static pthread_once_t pl_usable_once = PTHREAD_ONCE_INIT;

static void pl_find_usable(void)
{
    pl_guard++;
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (libc) {
        *(void **)&pl_libc_usable = dlsym(libc, "malloc_usable_size");
        dlclose(libc);
    }
    pl_guard--;
}

PL_EXPORT size_t malloc_usable_size(void *ptr)
{
    if (!ptr)
        return 0;
    uintptr_t a = (uintptr_t)ptr;
    struct pl_heap *h = pl_cur_heap();
    if (h && a - h->lo < h->span)
        return pl_block_size(h, ptr);
    struct pl_heap *img = (pa_load_relaxed(&pl_nheaps) > 1 || !h) ? pl_image_of(a) : NULL;
    if (img)
        return pl_block_size(img, ptr);
    pthread_once(&pl_usable_once, pl_find_usable);
    return pl_libc_usable ? pl_libc_usable(ptr) : 0;
}

/* fork. The copy of the pool is taken in the parent, in the forking thread,
 * just before the fork: after the program's own prepare handlers (ours was
 * registered first, so it runs last), while the locks the program holds
 * across fork keep its other threads off the data they guard, as a real
 * fork's copy-on-write snapshot would see it. The child inherits the copy
 * (copy-on-write) and moves it over the pool's address; the parent drops
 * it. Per thread: two threads may fork at once. */
static __thread void *pl_fork_copy POOL_TLS_MODEL;
static __thread int pl_fork_err POOL_TLS_MODEL;

static void pl_fork_prepare(void)
{
    struct pl_heap *h = pl_cur_heap();
    pl_fork_copy = NULL;
    pl_fork_err = 0;
    if (!h)
        return;
    const pshm_seg_t *s = &h->pool->seg;
    /* Spans are carved in order: those below the cursor, and one being
     * claimed, hold every block handed out. relaxed: a hint, +1 covers a
     * claim in flight. */
    uint64_t spans = (uint64_t)pa_load_relaxed(&s->hdr->next_span) + 1;
    if (spans > s->nspans)
        spans = s->nspans;
    /* The committed spans only: the others hold no block. */
    pl_fork_err = pshm_span_snapshot(s, (uint32_t)spans, &pl_fork_copy);
}

static void pl_fork_parent(void)
{
    struct pl_heap *h = pl_cur_heap();
    if (pl_fork_copy && h)
        pshm_os_unmap(pl_fork_copy, h->pool->seg.bytes);
    pl_fork_copy = NULL;
}

/* In the child, the only thread: the parent's pool becomes a private image
 * (see the top of this file), then back to PL_NEW so that the first
 * allocation makes a pool of the child's own. */
static void pl_fork_child(void)
{
    struct pl_heap *h = pl_cur_heap();
    /* relaxed (all): the child has one thread. */
    pa_store_relaxed(&pl_cur, 0);
    if (h) {
        pool_t *pool = h->pool;
        int rc = pl_fork_copy ? pshm_os_place(pl_fork_copy, pool->seg.base, pool->seg.bytes)
                              : pl_fork_err;
        pl_fork_copy = NULL;
        if (rc < 0) {
            /* Without a copy the child's writes would reach its parent's
             * blocks: better no child than a corrupt parent. */
            char msg[160];
            int len = snprintf(msg, sizeof(msg),
                               "libpoolclient-preload: fork: cannot copy the pool for the "
                               "child: %s\n",
                               strerror(-rc));
            if (len > 0)
                (void)!write(2, msg, (size_t)len < sizeof(msg) ? (size_t)len : sizeof(msg) - 1);
            _exit(127);
        }
        h->image = true;
        /* The parent's connection to poold stays the parent's. */
        if (pool->sock >= 0) {
            close(pool->sock);
            pool->sock = -1;
        }
    }
    uint32_t st = pa_load_relaxed(&pl_state);
    if (st == PL_ON || st == PL_BUSY)
        pa_store_relaxed(&pl_state, PL_NEW);
}

/* _exit and _Exit skip the destructors that mark a normal exit
 * (pool_note_exit_): mark it here, then end the process as glibc does.
 * Async-signal-safe, as _exit must be. glibc's exit() ends in its own
 * _exit, not this one, after the destructors ran. */
PL_EXPORT void _exit(int status)
{
    pool_note_exit_();
    syscall(SYS_exit_group, status);
    for (;;)
        syscall(SYS_exit, status);
}

PL_EXPORT void _Exit(int status)
{
    _exit(status);
}

/* After libc and libpoolclient's objects are ready, before main(). Anything
 * allocated earlier (the loader, earlier constructors) is glibc's. */
__attribute__((constructor)) static void pl_ctor(void)
{
    const char *v = getenv("POOLD_PRELOAD");
    pl_disabled = v && (strcmp(v, "off") == 0 || strcmp(v, "0") == 0);
    v = getenv("POOLD_PRELOAD_VERBOSE");
    pl_verbose = v && *v && strcmp(v, "0") != 0;
    v = getenv("POOLD_PRELOAD_FALLBACK");
    pl_fallback_embedded = v && strcmp(v, "embedded") == 0;
    pl_ceiling = pool_env_size_("POOLD_PRELOAD_MAX", SIZE_MAX);
    pthread_atfork(pl_fork_prepare, pl_fork_parent, pl_fork_child);
    /* release: pairs with the acquire in pl_slow_heap(). */
    pa_store_release(&pl_state, PL_NEW);
    pl_init();
}
