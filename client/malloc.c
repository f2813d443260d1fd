/* SPDX-License-Identifier: MIT */
/*
 * malloc.c: the fast path of libpoolclient, and only the fast path.
 *
 * pool_malloc pops the top of the calling thread's cache for the class (LIFO,
 * so burn-after-reading gets the block it just freed, still hot in cache),
 * else cuts the next block of the thread's own span. pool_free checks the
 * pointer against the span map and pushes it on the cache. Neither takes a
 * lock, makes a system call or does an atomic read-modify-write (DESIGN.md
 * invariants 1 and 2): counters are single-writer, in the thread's record.
 * Anything else (no record yet, cache empty or full) goes to cache.c.
 */
#include <errno.h>
#include <stdint.h>

#include "internal.h"

__thread struct pool_tls pool_tls_[POOL_MAX_OPEN] POOL_TLS_MODEL;

void pool_build_class_table_(pool_t *pool)
{
    const pshm_seg_t *s = &pool->seg;
    uint32_t c = 0;
    for (uint32_t g = 0; g <= POOL_SMALL_MAX / 8; g++) {
        size_t size = (size_t)g * 8;
        while (c + 1 < s->nclasses && s->block_size[c] < size)
            c++;
        pool->small_class[g] = (uint8_t)c;
    }
    pool->max_size = s->block_size[s->nclasses - 1];
}

POOL_API void *pool_malloc(pool_t *pool, size_t size)
{
    uint32_t c;
    if (pshm_likely(size <= POOL_SMALL_MAX && pool != NULL)) {
        c = pool->small_class[(size + 7) >> 3];
    } else {
        if (pool == NULL || size > pool->max_size) {
            errno = EINVAL;
            return NULL;
        }
        c = pool_class_of_(pool, size);
    }
    struct pool_tls *e = &pool_tls_[pool->idx];
    if (pshm_unlikely(e->serial != pool->serial))
        return pool_malloc_slow_(pool, c);
    struct pshm_tclass *tc = &e->rec->cls[c];

    /* relaxed (all counters here): single writer, this thread; poold and
     * pool_stats read them for statistics only. Allocations are derived
     * (struct pshm_tclass), not counted here. */
    uint32_t n = pa_load_relaxed(&tc->count);
    if (pshm_likely(n != 0)) {
        uint32_t idx = tc->slots[n - 1];
        pa_store_relaxed(&tc->count, n - 1);
        pa_inc_single_writer(&tc->same, (uint64_t)(idx == tc->last_freed));
        return pshm_ptr(&pool->seg, idx);
    }
    if (tc->fresh_next < tc->fresh_end) {
        uint32_t idx = tc->fresh_next;
        tc->fresh_next = idx + (pool->seg.block_size[c] >> 3);
        pa_inc_single_writer(&tc->fresh, 1);
        return pshm_ptr(&pool->seg, idx);
    }
    return pool_malloc_slow_(pool, c);
}

POOL_API bool pool_free(pool_t *pool, void *ptr, size_t size)
{
    if (pshm_unlikely(pool == NULL))
        return false;
    /* Unsigned arithmetic on addresses: a pointer below the base (NULL
     * included) wraps to a huge offset, which pshm_block_class() refuses. */
    uint64_t off = (uint64_t)((uintptr_t)ptr - (uintptr_t)pool->seg.base);
    int c = pshm_block_class(&pool->seg, off);
    if (pshm_unlikely(c < 0))
        return false;
    if (size != 0 && (size > pool->max_size || pool_class_of_(pool, size) != (uint32_t)c))
        return false;
    uint32_t idx = (uint32_t)(off >> 3);
    struct pool_tls *e = &pool_tls_[pool->idx];
    if (pshm_unlikely(e->serial != pool->serial))
        return pool_free_slow_(pool, idx, (uint32_t)c);
    struct pshm_tclass *tc = &e->rec->cls[c];
    uint32_t n = pa_load_relaxed(&tc->count); /* relaxed: single writer */
    if (pshm_unlikely(n >= pool->seg.cache_cap[c]))
        return pool_free_slow_(pool, idx, (uint32_t)c);
    tc->slots[n] = idx;
    pa_store_relaxed(&tc->count, n + 1); /* relaxed: single writer */
    pa_inc_single_writer(&tc->frees, 1);
    tc->last_freed = idx;
    return true;
}

POOL_API uint64_t pool_offset(pool_t *pool, const void *ptr)
{
    if (!pool || !ptr)
        return UINT64_MAX;
    uint64_t off = (uint64_t)((uintptr_t)ptr - (uintptr_t)pool->seg.base);
    if (off - pool->seg.data_off >= pool->seg.data_end - pool->seg.data_off)
        return UINT64_MAX;
    return off;
}

POOL_API void *pool_at(pool_t *pool, uint64_t offset)
{
    if (!pool || offset - pool->seg.data_off >= pool->seg.data_end - pool->seg.data_off) {
        errno = EINVAL;
        return NULL;
    }
    return pool->seg.base + offset;
}

POOL_API size_t pool_max_size(const pool_t *pool)
{
    return pool ? (size_t)pool->max_size : 0;
}

POOL_API size_t pool_block_size(pool_t *pool, const void *ptr)
{
    if (!pool || !ptr)
        return 0;
    uint64_t off = (uint64_t)((uintptr_t)ptr - (uintptr_t)pool->seg.base);
    int c = pshm_block_class(&pool->seg, off);
    return c < 0 ? 0 : pool->seg.block_size[c];
}
