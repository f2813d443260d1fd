/* SPDX-License-Identifier: MIT */
/*
 * pshm_sweep.c: giving a size class's empty spans back to the pool of free
 * spans, so that memory freed as 64 B blocks can serve 4 KiB or 1 MiB ones.
 *
 * A span is empty when every one of its blocks is free; but free blocks
 * are spread over the central list's batches, the region stack, thread
 * caches and carving ranges, linked through their own first words, so no
 * span can leave while any list may still hand out one of its blocks. The
 * sweep therefore takes them all out first, through the journaled steps a
 * thread's malloc uses (refill, region install), into one record, marking
 * each block's owner byte SWEPT: a value no free, handoff or adopt accepts,
 * held only by the holder of the reclaim lock, which a sweep takes. Then a
 * span all of whose owner bytes say SWEPT holds no block anyone else can
 * reach: it goes back to the free spans (a journaled SRELEASE step, decided
 * once journaled), and its blocks leave the books as `uncarved`. Every
 * other swept block goes back through the record's cache, as a free.
 *
 * Blocks in other threads' caches and ranges are not touched: a span with
 * one there stays. The sweep costs the sweeper one pass over the class's
 * free blocks and owner bytes; workers of the class meanwhile find the
 * central list empty and carve, as they would under load.
 *
 * Crash consistency: the sweeper's record journals every list move (as a
 * malloc's do) and every span release; a block taken is marked SWEPT before
 * the cache word that gave it up, and one given back is marked FREE after
 * the cache word that holds it (pshm_rec_recover() reads a SWEPT entry as
 * cached). A sweeper that dies holding SWEPT blocks holds the reclaim lock:
 * its taker finishes the sweeper's steps, then gives every SWEPT block back
 * as an uncarved region (pshm_sweep_recover()), as a reclaim gives back a
 * dead process's blocks.
 */
#include <errno.h>

#include "pshm.h"

/* Take every block of t's cache and carving range for class c, SWEPT. */
static uint64_t take_cache(pshm_seg_t *s, struct pshm_thread *t, uint32_t c)
{
    struct pshm_tclass *tc = &t->cls[c];
    uint64_t k = 0;
    /* relaxed (all): single writer, the sweeping thread. */
    uint64_t h = pa_load_relaxed(&tc->hot);
    if (pshm_hot_cached(h)) {
        pa_store_relaxed(pshm_owner_idx(s, c, pshm_hot_idx(h)), PSHM_OWN_SWEPT);
        pa_store_relaxed(&tc->hot, 0);
        k++;
    } else if (h != 0) {
        pa_store_relaxed(&tc->hot, 0); /* a note of a block in use: not ours to sweep */
    }
    for (uint32_t n = pa_load_relaxed(&tc->count); n > 0; n--) {
        uint32_t idx = tc->slots[n];
        /* The owner byte first, then the cache word (as a malloc). */
        pa_store_relaxed(pshm_owner_idx(s, c, idx), PSHM_OWN_SWEPT);
        pa_store_relaxed(&tc->count, n - 1);
        k++;
    }
    for (;;) {
        uint64_t w = pa_load_relaxed(&tc->fresh_w);
        uint32_t idx = (uint32_t)w;
        if (idx >= tc->fresh_end)
            break;
        pa_store_relaxed(pshm_owner_idx(s, c, idx), PSHM_OWN_SWEPT);
        /* One store carves the block and counts it. */
        pa_store_relaxed(&tc->fresh_w, w + (UINT64_C(1) << 32) + (s->block_size[c] >> 3));
        k++;
    }
    return k;
}

/* Give block idx, SWEPT, back through t's cache (flushing when full): the
 * cache word first, the owner byte last (as a free). */
static void put_back(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, uint32_t idx)
{
    struct pshm_tclass *tc = &t->cls[c];
    uint32_t n = pa_load_relaxed(&tc->count); /* relaxed: single writer */
    if (n + 1 >= s->cache_cap[c]) {
        pshm_rec_flush(s, t, c, s->batch[c]);
        n = pa_load_relaxed(&tc->count); /* relaxed: single writer */
    }
    tc->slots[n + 1] = idx;
    PSHM_CRASH_POINT();
    pa_store_relaxed(&tc->count, n + 1); /* relaxed: single writer */
    /* relaxed: the block is ours; a flush publishes it with its CAS. */
    pa_store_relaxed(pshm_owner_idx(s, c, idx), PSHM_OWN_FREE);
}

/* Span n of class c, all of whose blocks t holds SWEPT, goes back to the
 * free spans: journaled, then released; its blocks leave the books. */
static void release_span(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, uint32_t n)
{
    struct pshm_tclass *tc = &t->cls[c];
    uint64_t w = pa_load_relaxed(&s->carvers[n]); /* relaxed: the span is held */
    uint64_t u = pa_load_relaxed(&tc->uncarved);  /* relaxed: single writer */
    tc->pend.range.span = n;
    PSHM_CRASH_POINT();
    tc->pend.tag = w;
    PSHM_CRASH_POINT();
    tc->pend.ctr = u;
    PSHM_CRASH_POINT();
    /* release: pairs with the acquire in pshm_rec_recover(). */
    pa_store_release(&tc->pend.op, PSHM_PEND_SRELEASE);
    pshm_span_release(s, n, w);
    pa_store_relaxed(&tc->uncarved, u + s->blocks_per_span[c]); /* relaxed: single writer */
    /* release: the step's writes come before the journal says none. */
    pa_store_release(&tc->pend.op, PSHM_PEND_NONE);
}

int pshm_sweep_class(pshm_seg_t *s, const pshm_actor_t *actor, uint32_t c, pshm_swept_t *out)
{
    *out = (pshm_swept_t){0};
    if (!actor || !actor->rec || c >= s->nclasses)
        return -EINVAL;
    int rc = pshm_lock_take(s, actor);
    if (rc < 0)
        return rc;
    struct pshm_thread *t = actor->rec;
    /* Blocks a sweeper before us left SWEPT (it died, and its lock was
     * taken over by a process without a record) go back first. */
    pshm_sweep_recover(s, t);
    uint32_t bps = s->blocks_per_span[c];
    /* Bounded by the class's blocks: live frees keep feeding the lists. */
    uint64_t limit = (uint64_t)pshm_spans_of(s, c) * bps;
    uint64_t k = take_cache(s, t, c);
    while (k < limit) {
        if (pshm_rec_refill(s, t, c) == 0 && pshm_rec_install_from(s, t, c, false) < 0)
            break;
        k += take_cache(s, t, c);
    }
    out->blocks = k;
    for (uint32_t n = 0; n < s->nspans && k > 0; n++) {
        /* acquire: as in pshm_block_class(). */
        if (pa_load_acquire(&s->spanmap[n]) != c)
            continue;
        uint64_t span_off = s->data_off + ((uint64_t)n << s->span_shift);
        pa_u8 *o = pshm_owner(s, c, span_off);
        uint32_t swept = 0;
        for (uint32_t i = 0; i < bps; i++)
            swept += pa_load_relaxed(&o[i]) == PSHM_OWN_SWEPT; /* relaxed: ours alone */
        if (swept == 0)
            continue;
        if (swept == bps) {
            release_span(s, t, c, n);
            out->spans++;
            out->blocks_freed += bps;
        } else {
            uint32_t stride = s->block_size[c] >> 3;
            for (uint32_t i = 0; i < bps; i++)
                if (pa_load_relaxed(&o[i]) == PSHM_OWN_SWEPT) /* relaxed: ours alone */
                    put_back(s, t, c, (uint32_t)(span_off >> 3) + i * stride);
        }
        k -= swept;
    }
    /* What is left in the record goes back to central: the sweeper keeps
     * nothing. */
    struct pshm_tclass *tc = &t->cls[c];
    for (uint32_t n; (n = pa_load_relaxed(&tc->count)) > 0;) /* relaxed: single writer */
        pshm_rec_flush(s, t, c, n < s->batch[c] ? n : s->batch[c]);
    pshm_lock_give(s);
    return 0;
}

void pshm_sweep_recover(pshm_seg_t *s, struct pshm_thread *t)
{
    for (uint32_t n = 0; n < s->nspans; n++) {
        uint32_t c = pa_load_acquire(&s->spanmap[n]); /* acquire: as in pshm_block_class() */
        if (c >= s->nclasses)
            continue;
        uint64_t span_off = s->data_off + ((uint64_t)n << s->span_shift);
        const pa_u8 *o = pshm_owner(s, c, span_off);
        uint32_t bps = s->blocks_per_span[c];
        for (uint32_t i = 0; i < bps;) {
            if (pa_load_relaxed(&o[i]) != PSHM_OWN_SWEPT) { /* relaxed: the CAS decides */
                i++;
                continue;
            }
            uint32_t k = pshm_rec_reclaim_run(s, t, c, span_off, i, PSHM_OWN_SWEPT);
            i += k ? k : 1;
        }
    }
}
