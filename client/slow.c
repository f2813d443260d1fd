/* SPDX-License-Identifier: MIT */
/*
 * slow.c: the slow paths of pool_malloc and pool_free: batch refill from
 * and flush to the central lists, span carving, exhaustion, refused frees,
 * and the uncached path of a thread that could get no record.
 *
 * Blocks move between a thread cache and the central lists through the
 * shm layer's journaled steps (pshm_rec_refill/flush/install), so that a
 * process killed at any instruction loses nothing (pshm_central.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* The owner byte of this process, or 0 when it has no slot. */
static uint8_t own_of(pool_t *pool)
{
    return pool->slot >= 0 && pool->pid == pool_pid_ ? pshm_own_val((uint32_t)pool->slot) : 0;
}

/* ---- without a thread record (all records taken): correct, slower, and
 * not journaled: a crash in the middle of one of these can lose a block ---- */

static bool carve_raw(pshm_seg_t *s, uint32_t c, uint32_t *a, uint32_t *b)
{
    int n = pshm_span_claim(s, NULL, 0);
    if (n < 0)
        return false;
    if (pshm_span_commit(s, (uint32_t)n, 1) < 0) {
        /* No memory for it (a full /dev/shm): back to the pool, ENOMEM.
         * relaxed: the span is ours. */
        pshm_span_release(s, (uint32_t)n, pa_load_relaxed(&s->carvers[n]));
        return false;
    }
    pshm_span_publish(s, (uint32_t)n, c, a, b);
    return true;
}

static void *uncached_malloc(pool_t *pool, uint32_t c)
{
    pshm_seg_t *s = &pool->seg;
    struct pshm_class *cls = &s->cls[c];
    uint8_t own = own_of(pool);
    uint32_t buf[PSHM_CACHE_CAP];
    uint32_t a, b;
    if (own == 0) { /* no slot: no owner to mark a block with */
        errno = ENOMEM;
        return NULL;
    }
    uint32_t n = pshm_central_pop_raw(s, c, buf, s->batch[c]);
    if (n) {
        a = buf[0];
        if (n > 1)
            pshm_central_push_raw(s, c, buf + 1, n - 1);
    } else if (pshm_region_pop_raw(s, c, &a, &b) || carve_raw(s, c, &a, &b)) {
        uint32_t next = a + (s->block_size[c] >> 3);
        if (next < b)
            pshm_region_push_raw(s, c, next, b);
        pa_add_relaxed(&cls->uncached_carved, 1); /* relaxed: statistic */
    } else {
        pa_add_relaxed(&cls->uncached_exhausted, 1); /* relaxed: statistic */
        errno = ENOMEM;
        return NULL;
    }
    pa_store_relaxed(pshm_owner_idx(s, c, a), own); /* relaxed: the block is ours */
    /* relaxed: statistics, many writers, so RMW; this path is rare. */
    pa_add_relaxed(&cls->uncached_allocs, 1);
    pa_add_relaxed(&s->hdr->uncached_ops, 1);
    pa_add_relaxed(&s->procs[pool->slot].folded_allocs, 1);
    return pshm_ptr(s, a);
}

static void uncached_free(pool_t *pool, uint32_t idx, uint32_t c)
{
    pshm_seg_t *s = &pool->seg;
    /* Free before pushed: once pushed, another thread may take it and mark
     * it its own. relaxed: the block is ours until the push publishes it. */
    pa_store_relaxed(pshm_owner_idx(s, c, idx), PSHM_OWN_FREE);
    pshm_central_push_raw(s, c, &idx, 1);
    /* relaxed: statistics. */
    pa_add_relaxed(&s->cls[c].uncached_frees, 1);
    pa_add_relaxed(&s->hdr->uncached_ops, 1);
    if (own_of(pool))
        pa_add_relaxed(&s->procs[pool->slot].folded_frees, 1);
}

/* ---- with a thread record ---- */

/* Before a pool reports exhaustion, give back what dead processes held
 * (an embedded pool has no poold to do it). Only when no span is left. */
static bool reclaim_if_exhausted(pool_t *pool)
{
    pshm_seg_t *s = &pool->seg;
    /* relaxed: a hint; carving re-checks with a CAS. */
    if (pa_load_relaxed(&s->hdr->next_span) < s->nspans)
        return false;
    return pool_reclaim_dead_(pool) > 0;
}

/* The sum of the generations of every class's list heads: it moves with
 * every batch or region pushed or popped. */
static uint64_t lists_moved(const pshm_seg_t *s)
{
    uint64_t g = 0;
    for (uint32_t c = 0; c < s->nclasses; c++)
        /* relaxed (both): a hint of whether anything changed. */
        g += pa_load_relaxed(&s->cls[c].central.gen) + pa_load_relaxed(&s->cls[c].regions.gen);
    return g;
}

/* Before a pool reports exhaustion, give the empty spans of every class
 * back to the free spans (pshm_sweep.c), with this thread's record as the
 * sweeper: true when some came back. After a sweep that found none, not
 * again until some list moved (a free reached a list), so that a pool that
 * is really full fails fast. */
static bool sweep_if_exhausted(pool_t *pool, struct pshm_thread *rec)
{
    static pa_u64 fruitless; /* lists_moved() after the last sweep that found nothing, + 1 */
    pshm_seg_t *s = &pool->seg;
    if (pa_load_relaxed(&fruitless) == lists_moved(s) + 1) /* relaxed: a hint */
        return false;
    pshm_actor_t actor = {(uint32_t)pool->slot, rec};
    uint32_t spans = 0;
    for (uint32_t c = 0; c < s->nclasses; c++) {
        pshm_swept_t w;
        if (pshm_sweep_class(s, &actor, c, &w) == 0)
            spans += w.spans;
    }
    pa_store_relaxed(&fruitless, spans > 0 ? 0 : lists_moved(s) + 1); /* relaxed: a hint */
    return spans > 0;
}

/* ---- lifetime sampling (internal.h, pool_life_armed_) ---- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* the vDSO: no system call */
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool pool_life_arm_(void)
{
    pool_life_armed_ = 1;
    pool_tls_last_.serial = 0; /* the next pool_malloc takes the slow path */
    return true;
}

/* The malloc an armed thread makes: the block of the ordinary path, timed
 * unless the class is still timing a block this process owns. */
static void *malloc_sampled(pool_t *pool, uint32_t c)
{
    pool_life_armed_ = 0;
    void *p = pool_malloc_slow_(pool, c);
    struct pshm_thread *rec = p ? pool_rec_(pool) : NULL;
    if (!rec)
        return p; /* failed, or uncached: nothing to time */
    pshm_seg_t *s = &pool->seg;
    uint64_t off = (uint64_t)((uint8_t *)p - s->base);
    struct pshm_tclass *tc = &rec->cls[c];
    uint32_t prev = tc->life_idx;
    /* relaxed: a hint; a timed block still ours keeps its place (it may
     * live long), one gone elsewhere gives it up untimed. */
    if (prev != 0 && prev != PSHM_IDX_NONE && pshm_idx_is_block(s, prev, c) &&
        pa_load_relaxed(pshm_owner_idx(s, c, prev)) == own_of(pool))
        return p;
    /* relaxed (hot): single writer, this thread. Drop the note of this
     * block, so that its free leaves the burn-after-reading path; 0 says
     * "nothing in hot", as after any note. */
    if (pa_load_relaxed(&tc->hot) == ~off)
        pa_store_relaxed(&tc->hot, 0);
    tc->life_t0 = now_ns();
    tc->life_idx = (uint32_t)(off >> 3);
    return p;
}

bool pool_free_sampled_(pool_t *pool, struct pshm_thread *rec, struct pshm_tclass *tc, uint32_t c,
                        uint32_t idx, pa_u8 *o)
{
    uint64_t t = now_ns();
    pshm_life_note(&pool->seg, c, t > tc->life_t0 ? t - tc->life_t0 : 0);
    tc->life_idx = 0;
    return pool_cache_put_(pool, rec, tc, c, idx, o);
}

void *pool_malloc_slow_(pool_t *pool, uint32_t c)
{
    if (pshm_unlikely(pool_life_armed_))
        return malloc_sampled(pool, c);
    pshm_seg_t *s = &pool->seg;
    struct pshm_thread *rec = pool_rec_get_(pool);
    if (!rec)
        return uncached_malloc(pool, c);
    struct pshm_tclass *tc = &rec->cls[c];
    uint8_t own = (uint8_t)pshm_own_val((uint32_t)pool->slot);

    for (int tries = 0;; tries++) {
        /* pool_malloc comes here with the cache empty or no record yet, and
         * a freshly claimed record is empty; taking first keeps this exact
         * for any caller. */
        void *p = pool_cache_take_(pool, tc, c, own);
        if (p)
            return p;
        /* relaxed (counters): single writer, this thread. */
        pa_inc_single_writer(&tc->cache_misses, 1);
        if (pshm_unlikely(pool->shared))
            pool_rehello_if_restarted_(pool);
        if (pshm_rec_refill(s, rec, c) > 0 || pshm_rec_install(s, rec, c) == 0)
            continue; /* not empty now */
        if (tries == 0 && reclaim_if_exhausted(pool))
            continue;
        if (tries <= 1 && sweep_if_exhausted(pool, rec))
            continue;
        pa_inc_single_writer(&tc->exhausted, 1);
        errno = ENOMEM;
        return NULL;
    }
}

void pool_cache_full_(pool_t *pool, struct pshm_thread *rec, uint32_t c)
{
    /* Full: flush the top half (the blocks pushed down last), keep hot. */
    pshm_rec_flush(&pool->seg, rec, c, pool->seg.batch[c]);
}

/* Count a refused free. relaxed: statistic, many writers, rare. */
static bool refuse(pool_t *pool, uint32_t c)
{
    pa_add_relaxed(&pool->seg.cls[c].invalid_frees, 1);
    return false;
}

bool pool_free_slow_(pool_t *pool, uint32_t idx, uint32_t c)
{
    pshm_seg_t *s = &pool->seg;
    struct pshm_thread *rec = pool_rec_get_(pool);
    uint8_t own = own_of(pool);
    if (own == 0)
        return false; /* no slot: this process cannot hold blocks */
    pa_u8 *o = pshm_owner_idx(s, c, idx);
    uint8_t v = pa_load_relaxed(o); /* relaxed: the CAS below decides */
    for (;;) {
        if (v == own)
            break;
        if (v == PSHM_OWN_FREE || (v > s->max_procs && v != PSHM_OWN_TRANSIT))
            return refuse(pool, c);
        if (v == PSHM_OWN_TRANSIT) {
            /* Freed without adopting: adopt it first, so that the books
             * and a crash in between both see it as ours. Without a record
             * (records full) there is nowhere to count the adoption. */
            if (!rec || pshm_rec_adopt(s, rec, (uint32_t)pool->slot, c, idx) < 0)
                return refuse(pool, c);
            break;
        }
        /* Another process's block (or in transit, uncached): make it ours
         * with one CAS. acq_rel: exactly one of this free, another free and
         * a reclaim of a dead owner moves it; acquire makes the owner's
         * writes to the block happen before our reuse of it. */
        if (pa_cas_strong_acq_rel(o, &v, own))
            break;
    }
    if (!rec) {
        uncached_free(pool, idx, c);
        return true;
    }
    if (pshm_unlikely(rec->cls[c].life_idx == idx))
        return pool_free_sampled_(pool, rec, &rec->cls[c], c, idx, o);
    return pool_cache_put_(pool, rec, &rec->cls[c], c, idx, o);
}

/* ---- large blocks (pshm_large.c) ---- */

void *pool_malloc_large_(pool_t *pool, size_t size)
{
    pshm_seg_t *s = &pool->seg;
    /* relaxed: a setting. */
    if (size > pa_load_relaxed(&s->hdr->max_block) || size > s->data_bytes) {
        errno = EINVAL;
        return NULL;
    }
    /* Large blocks are journaled in a record: without one (every record
     * taken), none is served. */
    struct pshm_thread *rec = pool_rec_get_(pool);
    if (!rec) {
        errno = ENOMEM;
        return NULL;
    }
    if (pshm_unlikely(pool->shared))
        pool_rehello_if_restarted_(pool);
    for (int tries = 0;; tries++) {
        int64_t off = pshm_large_alloc(s, rec, own_of(pool), size);
        if (off >= 0)
            return s->base + off;
        if (tries == 0 && pool_reclaim_dead_(pool) > 0)
            continue;
        if (tries <= 1 && sweep_if_exhausted(pool, rec))
            continue;
        errno = ENOMEM;
        return NULL;
    }
}

bool pool_free_large_(pool_t *pool, uint32_t n)
{
    pshm_seg_t *s = &pool->seg;
    struct pshm_thread *rec = pool_rec_get_(pool);
    uint8_t own = own_of(pool);
    if (own == 0 || !rec)
        return false; /* no slot, or no record to journal the free in */
    /* In transit: adopt it first, as for a small block. relaxed: the
     * adopt's CAS decides. */
    if (pa_load_relaxed(pshm_large_owner(s, n)) == PSHM_OWN_TRANSIT &&
        pshm_large_adopt(s, rec, (uint32_t)pool->slot, n) < 0) {
        pa_add_relaxed(&s->hdr->large_invalid_frees, 1); /* relaxed: statistic */
        return false;
    }
    return pshm_large_free(s, rec, n, own) == 0;
}
