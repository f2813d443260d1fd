/* SPDX-License-Identifier: MIT */
/*
 * malloc.c: the fast path of libpoolclient, and only the fast path.
 *
 * pool_malloc takes the block the calling thread freed last for the class
 * (`hot`: burn-after-reading gets the same block, still hot in cache), else
 * pops the thread's cache (LIFO),
 * else cuts the next block of the thread's own span. pool_free checks the
 * pointer against the span map and pushes it on the cache. Neither takes a
 * lock, makes a system call or does an atomic read-modify-write
 * (invariants 1 and 2, docs/design.md): counters are single-writer, in the thread's record.
 * Anything else (no record yet, cache empty or full) goes to slow.c.
 */
#include <errno.h>
#include <stdint.h>

#include "internal.h"

__thread struct pool_tls pool_tls_[POOL_MAX_OPEN] POOL_TLS_MODEL;
__thread struct pool_tls_last pool_tls_last_ POOL_TLS_MODEL;
__thread uint32_t pool_life_armed_ POOL_TLS_MODEL;

struct pshm_thread *pool_rec_lookup_(pool_t *pool)
{
    struct pool_tls *e = &pool_tls_[pool->idx];
    if (e->serial != pool->serial || pool->slot < 0)
        return NULL;
    /* All four fields: the fast paths mark and check owner bytes with
     * `own`, which is this pool's slot, not the last pool's. */
    pool_tls_last_.pool = pool;
    pool_tls_last_.serial = pool->serial;
    pool_tls_last_.rec = e->rec;
    pool_tls_last_.own = pshm_own_val((uint32_t)pool->slot);
    return e->rec;
}

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
    pool->small_limit = pool->max_size < POOL_SMALL_MAX ? pool->max_size : POOL_SMALL_MAX;
    for (uint32_t k = 0; k < s->nclasses; k++) {
        pool->size_lo[k] = k ? s->block_size[k - 1] : 0;
        pool->size_span[k] = s->block_size[k] - pool->size_lo[k];
    }
}

POOL_API void *pool_malloc(pool_t *pool, size_t size)
{
    uint32_t c;
    if (pshm_likely(pool != NULL && size <= pool->small_limit)) {
        c = pool->small_class[(size + 7) >> 3];
    } else {
        if (pool == NULL) {
            errno = EINVAL;
            return NULL;
        }
        if (size > pool->max_size)
            return pool_malloc_large_(pool, size);
        c = pool_class_of_(pool, size);
    }
    /* This thread used this pool last (then its record is set): take from
     * the cache. Anything else, the slow path sorts out. */
    if (pshm_likely(pool_tls_last_.serial == pool->serial)) {
        void *p =
            pool_cache_take_(pool, &pool_tls_last_.rec->cls[c], c, (uint8_t)pool_tls_last_.own);
        if (pshm_likely(p != NULL))
            return p;
    }
    return pool_malloc_slow_(pool, c);
}

/* Everything pool_free() does not do inline: no size or a size beyond the
 * table, no record for this pool in the last-pool entry, a block this
 * process does not own, a pointer that is not a block. Checks everything
 * again. */
static bool __attribute__((noinline)) free_generic(pool_t *pool, void *ptr, size_t size)
{
    if (pool == NULL)
        return false;
    /* Unsigned arithmetic on addresses: a pointer below the base (NULL
     * included) wraps to a huge offset, which pshm_block_class() refuses. */
    uint64_t off = (uint64_t)((uintptr_t)ptr - (uintptr_t)pool->seg.base);
    int k = pshm_block_class(&pool->seg, off);
    if (k < 0) {
        /* A large block, with no size or a size of its length. */
        int n = pshm_large_at(&pool->seg, off);
        if (n < 0 ||
            (size != 0 && (size <= pool->max_size || pshm_large_spans_for(&pool->seg, size) !=
                                                         pshm_large_len(&pool->seg, (uint32_t)n))))
            return false;
        return pool_free_large_(pool, (uint32_t)n);
    }
    /* A size of another class: (size - 1 - lo) wraps when size <= lo. */
    if (size != 0 && (uint64_t)(size - 1 - pool->size_lo[k]) >= pool->size_span[k])
        return false;
    uint32_t idx = (uint32_t)(off >> 3);
    /* A free without a size (or past the size table) of this process's
     * block, by a thread that used this pool last: the class came from the
     * span map, the rest is free_known_class()'s push. */
    if (pshm_likely(pool_tls_last_.serial == pool->serial)) {
        struct pshm_tclass *tc = &pool_tls_last_.rec->cls[k];
        pa_u8 *o = pshm_owner(&pool->seg, (uint32_t)k, off);
        /* relaxed: a block we own has no other writer of its byte */
        if (pshm_likely(pa_load_relaxed(o) == (uint8_t)pool_tls_last_.own)) {
            if (pshm_unlikely(tc->life_idx == idx))
                return pool_free_sampled_(pool, pool_tls_last_.rec, tc, (uint32_t)k, idx, o);
            return pool_cache_put_(pool, pool_tls_last_.rec, tc, (uint32_t)k, idx, o);
        }
    }
    return pool_free_slow_(pool, idx, (uint32_t)k);
}

/* pool_free() with a size and this thread's record, past the noted block:
 * check the pointer against the span map and its owner byte, and push it.
 * Out of line, so that the burn-after-reading path of pool_free() saves no
 * registers: it is reached by a tail call. The arguments are in the order
 * pool_free() holds them in registers at that call (size, then the offset
 * it computed), which spares the inline path a move. */
static bool __attribute__((noinline))
free_known_class(pool_t *pool, struct pshm_tclass *tc, size_t size, uint64_t off, uint32_t c,
                 void *ptr)
{
    const pshm_seg_t *s = &pool->seg;
    uint64_t rel = off - s->data_off; /* wraps to huge below the data */
    if (pshm_unlikely(rel >= s->data_bytes))
        return free_generic(pool, ptr, size);
    /* One multiply says whether ptr is a block start by the size, and
     * which block of its span it is (for its owner byte). */
    pshm_divided_t d = pshm_divide(s, rel, c);
    /* acquire: pairs with the release store in pshm_span_publish(). */
    if (pshm_likely(d.lo < s->block_magic[c] &&
                    pa_load_acquire(&s->spanmap[rel >> s->span_shift]) == c)) {
        pa_u8 *o = pshm_owner_nth(s, c, rel, d.q);
        /* relaxed: a block we own has no other writer of its byte */
        if (pshm_likely(pa_load_relaxed(o) == (uint8_t)pool_tls_last_.own)) {
            /* A sampled block: out of line, reached by a tail call, so that
             * this path keeps no registers across a call. */
            if (pshm_unlikely(tc->life_idx == (uint32_t)(off >> 3)))
                return pool_free_sampled_(pool, pool_tls_last_.rec, tc, c, (uint32_t)(off >> 3), o);
            return pool_cache_put_(pool, pool_tls_last_.rec, tc, c, (uint32_t)(off >> 3), o);
        }
    }
    return free_generic(pool, ptr, size);
}

POOL_API bool pool_free(pool_t *pool, void *ptr, size_t size)
{
    /* The common case, inline: a size is given, this thread used this pool
     * last, and the block is this process's. The cache to push on comes
     * from the size, and the checks of the pointer against the span map are
     * predicted branches beside the stores, not loads they wait for: the
     * chain from this free to the next malloc (which loads the `hot` stored
     * here) stays short. The empty asm hides tc's origin, so that the
     * compiler cannot rebuild it from the span-map class once the check has
     * proved the two equal. Every other case, and every failed check, goes
     * to free_generic(). */
    if (pshm_likely(pool != NULL && size - 1 < pool->small_limit &&
                    pool_tls_last_.serial == pool->serial)) {
        const pshm_seg_t *s = &pool->seg;
        uint32_t c = pool->small_class[(size + 7) >> 3];
        struct pshm_tclass *tc = &pool_tls_last_.rec->cls[c];
        __asm__("" : "+r"(tc));
        uint64_t off = (uint64_t)((uintptr_t)ptr - (uintptr_t)s->base);
        uint8_t own = (uint8_t)pool_tls_last_.own;
        /* Burn-after-reading: the block malloc just took from this cache's
         * `hot` (the note says which) is a block of this class, so no
         * span-map check is needed; only that ptr is exactly its start, and
         * that it is still ours (not freed since by another thread or
         * process: a double free). */
        uint64_t h = pa_load_relaxed(&tc->hot); /* relaxed: single writer */
        /* h == ~off, written h + off + 1 == 0 (the same in unsigned
         * arithmetic) so that it is one lea and a compare that leave h for
         * the sign test. Exact: a note is negative and only malloc writes
         * one, as ~offset of a block; an empty or cached `hot` is not
         * negative. */
        if (pshm_likely(h + off + 1 == 0 && (int64_t)h < 0)) {
            pa_u8 *o = (pa_u8 *)(s->base + tc->hot_own); /* the noted block's */
            /* relaxed: we own the block, so no one else writes its byte but
             * a free racing ours (a double free in the program) */
            if (pshm_likely(pa_load_relaxed(o) == own)) {
                pa_store_relaxed(&tc->hot, off);
                uint64_t f = pool_count_free_(tc);
                pa_store_relaxed(o, PSHM_OWN_FREE); /* after the cache word: see take */
                return POOL_LIFE_ARMS(f) ? pool_life_arm_() : true;
            }
            return free_generic(pool, ptr, size);
        }
        return free_known_class(pool, tc, size, off, c, ptr);
    }
    return free_generic(pool, ptr, size);
}

/* pool_handoff() and pool_adopt() carry a block from one process to another,
 * once per block: one span-map check (the class, and a block before its
 * span's owner tail), the record from the last-pool entry, and the one CAS
 * of the owner byte with its journal step around it, inline. */
POOL_API uint64_t pool_handoff(pool_t *pool, void *ptr)
{
    if (pshm_unlikely(pool == NULL)) {
        errno = EINVAL;
        return UINT64_MAX;
    }
    pshm_seg_t *s = &pool->seg;
    uint64_t off = (uint64_t)((uintptr_t)ptr - (uintptr_t)s->base);
    int k = pshm_block_at(s, off);
    int n = k < 0 ? pshm_large_at(s, off) : -1;
    if (pshm_unlikely(k < 0 && n < 0)) {
        errno = EINVAL;
        return UINT64_MAX;
    }
    /* The journal and counters live in a record: none, no handoff. */
    struct pshm_thread *rec = pool_rec_or_claim_(pool);
    int rc = !rec     ? -EAGAIN
             : k >= 0 ? pshm_rec_handoff(s, rec, (uint32_t)k, (uint32_t)(off >> 3),
                                         (uint8_t)pool_tls_last_.own)
                      : pshm_large_handoff(s, rec, (uint32_t)n, (uint8_t)pool_tls_last_.own);
    if (pshm_unlikely(rc < 0)) {
        errno = -rc;
        return UINT64_MAX;
    }
    return off;
}

POOL_API void *pool_adopt(pool_t *pool, uint64_t offset)
{
    if (pshm_unlikely(pool == NULL || offset >= pool->seg.data_end || (offset & 7))) {
        errno = EINVAL;
        return NULL;
    }
    pshm_seg_t *s = &pool->seg;
    int k = pshm_block_at(s, offset);
    int n = k < 0 ? pshm_large_at(s, offset) : -1;
    if (pshm_unlikely(k < 0 && n < 0)) {
        errno = EINVAL;
        return NULL;
    }
    struct pshm_thread *rec = pool_rec_or_claim_(pool);
    int rc = !rec     ? -EAGAIN
             : k >= 0 ? pshm_rec_adopt(s, rec, (uint32_t)pool->slot, (uint32_t)k,
                                       (uint32_t)(offset >> 3))
                      : pshm_large_adopt(s, rec, (uint32_t)pool->slot, (uint32_t)n);
    if (pshm_unlikely(rc < 0)) {
        errno = -rc;
        return NULL;
    }
    return s->base + offset;
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
    if (!pool)
        return 0;
    /* relaxed: a setting (poold may change it at a reload). */
    uint64_t m = pa_load_relaxed(&pool->seg.hdr->max_block);
    return (size_t)(m > pool->max_size ? m : pool->max_size);
}

POOL_API size_t pool_block_size(pool_t *pool, const void *ptr)
{
    if (!pool || !ptr)
        return 0;
    uint64_t off = (uint64_t)((uintptr_t)ptr - (uintptr_t)pool->seg.base);
    int c = pshm_block_at(&pool->seg, off);
    if (c >= 0)
        return pool->seg.block_size[c];
    int n = pshm_large_at(&pool->seg, off);
    return n < 0 ? 0 : (size_t)pshm_large_len(&pool->seg, (uint32_t)n) << pool->seg.span_shift;
}
