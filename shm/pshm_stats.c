/* SPDX-License-Identifier: MIT */
/*
 * pshm_stats.c: live statistics and the invariant checker.
 *
 * Statistics sum the single-writer counters of every thread record and the
 * totals of exited threads, with relaxed loads only: readers never write the
 * segment and never slow a worker down (DESIGN.md invariant 8). A snapshot
 * taken while workers run is a little skewed between counters; one taken at
 * rest is exact, and pshm_check() holds it to the invariants.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "poolclient.h"
#include "pshm.h"

struct class_sum {
    uint64_t allocs, frees, fresh, same, cmiss, cenmiss, exhausted, cached;
};

static void sum_class(const pshm_seg_t *s, uint32_t c, struct class_sum *o)
{
    const struct pshm_class *k = &s->cls[c];
    /* relaxed: statistics (single writers, or RMW totals of gone threads). */
    o->allocs = pa_load_relaxed(&k->r_allocs);
    o->frees = pa_load_relaxed(&k->r_frees);
    o->fresh = pa_load_relaxed(&k->r_fresh);
    o->same = pa_load_relaxed(&k->r_same);
    o->cmiss = pa_load_relaxed(&k->r_cmiss);
    o->cenmiss = pa_load_relaxed(&k->r_cenmiss);
    o->exhausted = pa_load_relaxed(&k->r_exhausted);
    o->cached = 0;
    for (uint32_t i = 0; i < s->max_threads; i++) {
        const struct pshm_thread *t = pshm_thread_at(s, i);
        if (pa_load_relaxed(&t->owner) == PSHM_NO_OWNER)
            continue;
        const struct pshm_tclass *tc = &t->cls[c];
        o->allocs += pshm_tclass_allocs(tc);
        o->frees += pa_load_relaxed(&tc->frees);
        o->fresh += pa_load_relaxed(&tc->fresh);
        o->same += pshm_tclass_same(tc);
        o->cmiss += pa_load_relaxed(&tc->cmiss);
        o->cenmiss += pa_load_relaxed(&tc->cenmiss);
        o->exhausted += pa_load_relaxed(&tc->exhausted);
        uint32_t n = pshm_tclass_cached(tc);
        o->cached += n <= s->cache_cap[c] ? n : 0; /* a scribbled count is not believed */
    }
}

void pshm_stats(const pshm_seg_t *s, struct pool_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->segment_bytes = s->bytes;
    out->span_bytes = UINT64_C(1) << s->span_shift;
    out->spans_total = s->nspans;
    uint32_t carved = pa_load_relaxed(&s->hdr->next_span); /* relaxed: statistic */
    out->spans_carved = carved < s->nspans ? carved : s->nspans;
    out->bytes_carved = out->spans_carved << s->span_shift;
    out->procs_reclaimed = pa_load_relaxed(&s->hdr->procs_reclaimed);
    out->blocks_reclaimed = pa_load_relaxed(&s->hdr->blocks_reclaimed);
    out->blocks_orphaned = pa_load_relaxed(&s->hdr->blocks_orphaned);
    for (uint32_t i = 0; i < s->max_procs; i++)
        if (pa_load_relaxed(&s->procs[i].state) == PSHM_PROC_LIVE)
            out->procs_attached++;
    out->nclasses = s->nclasses;
    for (uint32_t c = 0; c < s->nclasses; c++) {
        struct class_sum sum;
        pool_class_stats_t *o = &out->cls[c];
        sum_class(s, c, &sum);
        o->block_size = s->block_size[c];
        o->spans_carved = pa_load_relaxed(&s->cls[c].spans_carved);
        o->blocks_carved = sum.fresh;
        o->blocks_central = pa_load_relaxed(&s->cls[c].central_blocks);
        o->blocks_cached = sum.cached;
        o->blocks_free = o->blocks_central + o->blocks_cached;
        o->blocks_in_use = (int64_t)(sum.allocs - sum.frees);
        o->allocations = sum.allocs;
        o->frees = sum.frees;
        o->reuses = sum.allocs >= sum.fresh ? sum.allocs - sum.fresh : 0;
        o->same_address = sum.same;
        o->cache_misses = sum.cmiss;
        o->central_misses = sum.cenmiss;
        o->exhausted = sum.exhausted;
        if (o->blocks_in_use > 0)
            out->bytes_in_use += (uint64_t)o->blocks_in_use * o->block_size;
    }
}

int pshm_proc_stats(const pshm_seg_t *s, pshm_proc_stats_t *out, int max)
{
    int n = 0;
    for (uint32_t i = 0; i < s->max_procs; i++) {
        const struct pshm_proc *p = &s->procs[i];
        /* acquire: pairs with the release store of LIVE in pshm_proc_claim(). */
        if (pa_load_acquire(&p->state) != PSHM_PROC_LIVE)
            continue;
        if (n < max) {
            pshm_proc_stats_t *o = &out[n];
            memset(o, 0, sizeof(*o));
            o->slot = i;
            o->pid = pa_load_relaxed(&p->pid);
            o->via_daemon = pa_load_relaxed(&p->via_daemon);
            o->attached_unix = pa_load_relaxed(&p->attached_unix);
            o->allocations = pa_load_relaxed(&p->r_allocs);
            o->frees = pa_load_relaxed(&p->r_frees);
            o->cache_misses = pa_load_relaxed(&p->r_cmiss);
            for (uint32_t t = 0; t < s->max_threads; t++) {
                const struct pshm_thread *th = pshm_thread_at(s, t);
                if (pa_load_relaxed(&th->owner) != i + 1)
                    continue;
                o->threads++;
                for (uint32_t c = 0; c < s->nclasses; c++) {
                    const struct pshm_tclass *tc = &th->cls[c];
                    o->allocations += pshm_tclass_allocs(tc);
                    o->frees += pa_load_relaxed(&tc->frees);
                    o->cache_misses += pa_load_relaxed(&tc->cmiss);
                    uint32_t k = pshm_tclass_cached(tc);
                    o->blocks_cached += k <= s->cache_cap[c] ? k : 0;
                }
            }
            o->blocks_in_use = (int64_t)(o->allocations - o->frees);
        }
        n++;
    }
    return n;
}

int pshm_check(const pshm_seg_t *s, char *err, size_t errlen)
{
    uint64_t spans = 0;
    for (uint32_t c = 0; c < s->nclasses; c++) {
        struct class_sum sum;
        sum_class(s, c, &sum);
        uint64_t central = pa_load_relaxed(&s->cls[c].central_blocks);
        int64_t in_use = (int64_t)(sum.allocs - sum.frees);
        if ((int64_t)(central + sum.cached) + in_use != (int64_t)sum.fresh) {
            snprintf(err, errlen,
                     "class %u (%u B): central %llu + cached %llu + in use %lld != carved %llu", c,
                     s->block_size[c], (unsigned long long)central, (unsigned long long)sum.cached,
                     (long long)in_use, (unsigned long long)sum.fresh);
            return -EUCLEAN;
        }
        /* Walk the central list: its length must match the counter. */
        uint64_t walked = 0;
        uint32_t node = PSHM_HEAD_IDX(pa_load_acquire(&s->cls[c].central));
        uint64_t limit = (uint64_t)s->nspans * s->blocks_per_span[c] + 1;
        while (node != PSHM_IDX_NONE && walked < limit) {
            if (!pshm_idx_is_block(s, node, c)) {
                snprintf(err, errlen, "class %u: central list holds a bad node", c);
                return -EUCLEAN;
            }
            uint64_t w = *(const uint64_t *)pshm_ptr(s, node);
            uint32_t cur = node;
            while (cur != PSHM_IDX_NONE && walked < limit) {
                if (!pshm_idx_is_block(s, cur, c)) {
                    snprintf(err, errlen, "class %u: a central chain holds a bad block", c);
                    return -EUCLEAN;
                }
                walked++;
                cur = (uint32_t)(*(const uint64_t *)pshm_ptr(s, cur) & 0xffffffffu);
            }
            node = (uint32_t)(w >> 32);
        }
        if (walked != central) {
            snprintf(err, errlen, "class %u: central list has %llu blocks, counter says %llu", c,
                     (unsigned long long)walked, (unsigned long long)central);
            return -EUCLEAN;
        }
        spans += pa_load_relaxed(&s->cls[c].spans_carved);
    }
    uint32_t cursor = pa_load_relaxed(&s->hdr->next_span);
    if (spans != cursor) {
        snprintf(err, errlen, "span cursor at %u but classes hold %llu spans", cursor,
                 (unsigned long long)spans);
        return -EUCLEAN;
    }
    return 0;
}
