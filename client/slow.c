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
    pshm_span_publish(s, (uint32_t)n, c, a, b);
    return true;
}

static void *uncached_malloc(pool_t *pool, uint32_t c)
{
    pshm_seg_t *s = &pool->seg;
    struct pshm_class *k = &s->cls[c];
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
        pa_add_relaxed(&k->uncached_carved, 1); /* relaxed: statistic */
    } else {
        pa_add_relaxed(&k->uncached_exhausted, 1); /* relaxed: statistic */
        errno = ENOMEM;
        return NULL;
    }
    pa_store_relaxed(pshm_owner_idx(s, c, a), own); /* relaxed: the block is ours */
    /* relaxed: statistics, many writers, so RMW; this path is rare. */
    pa_add_relaxed(&k->uncached_allocs, 1);
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

void *pool_malloc_slow_(pool_t *pool, uint32_t c)
{
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
    pool_cache_put_(pool, rec, &rec->cls[c], c, idx, o);
    return true;
}
