/* SPDX-License-Identifier: MIT */
/*
 * pshm_stats.c: live statistics, the physical audit and the invariant
 * checker.
 *
 * Statistics sum the single-writer counters of every thread record (records
 * keep their counters for good, whoever owns them now) and the class's
 * counters of operations done without a record, with relaxed loads only:
 * readers never write the segment and never slow a worker down
 * (invariant 8, docs/design.md). A snapshot taken while workers run is a little skewed
 * between counters; one taken at rest is exact. The audit counts the same
 * figures a second way, by walking the lists, the caches and the owner
 * bytes, and pshm_check() holds the two to each other.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pshm.h"

struct class_sum {
    uint64_t allocs, frees, fresh, same, cache_misses, central_misses, exhausted, cached;
    uint64_t moved_in, moved_out, handoffs, adopts, uncarved;
};

static void sum_class(const pshm_seg_t *s, uint32_t c, struct class_sum *o)
{
    const struct pshm_class *cls = &s->cls[c];
    memset(o, 0, sizeof(*o));
    /* Every record, owned or not: records keep their counters for good. */
    for (uint32_t i = 0; i < s->max_threads; i++) {
        const struct pshm_tclass *tc = &pshm_thread_at(s, i)->cls[c];
        /* relaxed (all): statistics of single writers. */
        uint32_t n = pshm_tclass_cached(tc);
        if (n > s->cache_cap[c] + 1)
            n = 0; /* a scribbled count is not believed */
        o->allocs += pshm_tclass_allocs(tc);
        o->fresh += pshm_tclass_fresh(tc);
        o->frees += pa_load_relaxed(&tc->frees);
        o->moved_in += pa_load_relaxed(&tc->moved_in);
        o->moved_out += pa_load_relaxed(&tc->moved_out);
        o->handoffs += pa_load_relaxed(&tc->handoffs);
        o->adopts += pa_load_relaxed(&tc->adopts);
        o->uncarved += pa_load_relaxed(&tc->uncarved);
        o->same += pa_load_relaxed(&tc->frees) - pa_load_relaxed(&tc->displaced) -
                   pshm_hot_cached(pa_load_relaxed(&tc->hot));
        o->cache_misses += pa_load_relaxed(&tc->cache_misses);
        o->central_misses += pa_load_relaxed(&tc->central_misses);
        o->exhausted += pa_load_relaxed(&tc->exhausted);
        o->cached += n;
    }
    /* And what was done without a record. relaxed: RMW statistics. */
    o->allocs += pa_load_relaxed(&cls->uncached_allocs);
    o->frees += pa_load_relaxed(&cls->uncached_frees);
    o->fresh += pa_load_relaxed(&cls->uncached_carved);
    o->moved_out += pa_load_relaxed(&cls->uncached_pushed);
    o->moved_in += pa_load_relaxed(&cls->uncached_popped);
    o->exhausted += pa_load_relaxed(&cls->uncached_exhausted);
    o->handoffs += pa_load_relaxed(&cls->put_in_transit);
}

void pshm_stats(const pshm_seg_t *s, pshm_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->segment_bytes = s->bytes;
    out->span_bytes = UINT64_C(1) << s->span_shift;
    out->spans_total = s->nspans;
    out->spans_carved = pshm_spans_carved(s);
    out->bytes_carved = out->spans_carved << s->span_shift;
    out->spans_free = s->nspans - out->spans_carved;
    pshm_large_totals(s, &out->large);
    out->bytes_in_use = out->large.bytes_in_use;
    out->blocks_in_transit = out->large.in_transit;
    pshm_span_counts_t k;
    pshm_span_count(s, &k);
    out->bytes_committed = k.committed << s->span_shift;
    out->bytes_retained = k.free << s->span_shift;
    /* relaxed: statistic, one writer (poold). */
    out->bytes_purged = pa_load_relaxed(&s->hdr->spans_purged) << s->span_shift;
    /* relaxed (all): statistics. */
    out->procs_reclaimed = pa_load_relaxed(&s->hdr->procs_reclaimed);
    out->procs_exited = pa_load_relaxed(&s->hdr->procs_exited);
    out->blocks_reclaimed = pa_load_relaxed(&s->hdr->blocks_reclaimed);
    out->blocks_orphaned = pa_load_relaxed(&s->hdr->blocks_orphaned);
    out->reclaimed_in_use = pa_load_relaxed(&s->hdr->reclaimed_in_use);
    for (uint32_t i = 0; i < s->max_procs; i++)
        if (pa_load_relaxed(&s->procs[i].state) == PSHM_PROC_LIVE &&
            pa_load_relaxed(&s->procs[i].via_daemon) != PSHM_VIA_POOLD)
            out->procs_attached++;
    out->nclasses = s->nclasses;
    for (uint32_t c = 0; c < s->nclasses; c++) {
        struct class_sum sum;
        pshm_class_stats_t *o = &out->cls[c];
        sum_class(s, c, &sum);
        o->block_size = s->block_size[c];
        o->spans_carved = pshm_spans_of(s, c);
        o->blocks_carved = sum.fresh - sum.uncarved;
        o->blocks_central = sum.moved_out - sum.moved_in;
        o->blocks_cached = sum.cached;
        o->blocks_free = o->blocks_central + o->blocks_cached;
        o->blocks_in_transit = sum.handoffs - sum.adopts;
        o->blocks_in_use = (int64_t)(sum.allocs - sum.frees - o->blocks_in_transit - sum.uncarved);
        o->allocations = sum.allocs;
        o->frees = sum.frees;
        o->reuses = sum.allocs >= sum.fresh ? sum.allocs - sum.fresh : 0;
        o->same_address = sum.same;
        o->cache_misses = sum.cache_misses;
        o->central_misses = sum.central_misses;
        o->exhausted = sum.exhausted;
        o->invalid_frees = pa_load_relaxed(&s->cls[c].invalid_frees);
        o->reclaimed_in_use = pa_load_relaxed(&s->cls[c].reclaimed_in_use);
        for (uint32_t b = 0; b < PSHM_LIFE_BUCKETS; b++)
            o->life[b] = pa_load_relaxed(&s->cls[c].life[b]);
        o->life_ns = pa_load_relaxed(&s->cls[c].life_ns);
        if (o->blocks_in_use > 0)
            out->bytes_in_use += (uint64_t)o->blocks_in_use * o->block_size;
        out->blocks_in_transit += o->blocks_in_transit;
        out->invalid_frees += o->invalid_frees;
    }
    out->invalid_frees += out->large.invalid_frees;
}

uint64_t pshm_life_bound_ns(uint32_t bucket)
{
    uint64_t ns = 1000; /* 1 us, then each bucket ten times the one before */
    if (bucket + 1 >= PSHM_LIFE_BUCKETS)
        return UINT64_MAX;
    while (bucket--)
        ns *= 10;
    return ns;
}

void pshm_life_note(pshm_seg_t *s, uint32_t c, uint64_t ns)
{
    uint32_t b = 0;
    while (b + 1 < PSHM_LIFE_BUCKETS && ns >= pshm_life_bound_ns(b))
        b++;
    /* relaxed: statistics with many writers; nothing is published. */
    pa_add_relaxed(&s->cls[c].life[b], 1);
    pa_add_relaxed(&s->cls[c].life_ns, ns);
}

int pshm_proc_stats(const pshm_seg_t *s, pshm_proc_stats_t *out, int max)
{
    int n = 0;
    for (uint32_t i = 0; i < s->max_procs; i++) {
        const struct pshm_proc *p = &s->procs[i];
        /* acquire: pairs with the release store of LIVE in pshm_proc_claim(). */
        if (pa_load_acquire(&p->state) != PSHM_PROC_LIVE ||
            pa_load_relaxed(&p->via_daemon) == PSHM_VIA_POOLD)
            continue;
        if (n < max) {
            pshm_proc_stats_t *o = &out[n];
            memset(o, 0, sizeof(*o));
            o->slot = i;
            o->pid = pa_load_relaxed(&p->pid);
            o->via_daemon = pa_load_relaxed(&p->via_daemon);
            o->attached_unix = pa_load_relaxed(&p->attached_unix);
            o->allocations = pa_load_relaxed(&p->folded_allocs);
            o->frees = pa_load_relaxed(&p->folded_frees);
            o->cache_misses = pa_load_relaxed(&p->r_cmiss);
            for (uint32_t t = 0; t < s->max_threads; t++) {
                const struct pshm_thread *th = pshm_thread_at(s, t);
                if (pa_load_relaxed(&th->owner) != i + 1)
                    continue;
                o->threads++;
                for (uint32_t c = 0; c < s->nclasses; c++) {
                    const struct pshm_tclass *tc = &th->cls[c];
                    o->allocations += pshm_tclass_allocs(tc) - pa_load_relaxed(&tc->base_allocs);
                    o->frees += pa_load_relaxed(&tc->frees) - pa_load_relaxed(&tc->base_frees);
                    o->cache_misses += pa_load_relaxed(&tc->cache_misses) -
                                       pa_load_relaxed(&tc->base_cache_misses);
                    uint32_t cached = pshm_tclass_cached(tc);
                    o->blocks_cached += cached <= s->cache_cap[c] + 1 ? cached : 0;
                }
            }
            o->blocks_in_use = (int64_t)(o->allocations - o->frees);
        }
        n++;
    }
    return n;
}

int pshm_audit_class(const pshm_seg_t *s, uint32_t c, pshm_audit_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    uint64_t limit = (uint64_t)s->nspans * s->blocks_per_span[c] + 1;
    uint32_t stride = s->block_size[c] >> 3;
    /* Owner bytes and carved spans. */
    for (uint32_t n = 0; n < s->nspans; n++) {
        if (pa_load_relaxed(&s->spanmap[n]) != c) /* relaxed: at rest */
            continue;
        uint64_t span_off = s->data_off + ((uint64_t)n << s->span_shift);
        const pa_u8 *o = pshm_owner(s, c, span_off);
        out->carved += s->blocks_per_span[c];
        for (uint32_t i = 0; i < s->blocks_per_span[c]; i++) {
            uint8_t v = pa_load_relaxed(&o[i]);
            if (PSHM_OWN_IN_TRANSIT(v))
                out->transit++;
            else if (v != PSHM_OWN_FREE)
                out->owned++;
        }
    }
    /* Uncarved: the region stack and live records' ranges. */
    uint32_t node = PSHM_HEAD_IDX(pa_load_acquire(&s->cls[c].regions.w)); /* acquire: at rest */
    uint64_t walked = 0;
    while (node != PSHM_IDX_NONE && walked++ < limit) {
        if (!pshm_idx_is_block(s, node, c)) {
            snprintf(err, errlen, "class %u: region stack holds a bad node", c);
            return -EUCLEAN;
        }
        uint64_t w = *(const uint64_t *)pshm_ptr(s, node);
        uint32_t e = (uint32_t)(w & 0xffffffffu);
        if (e <= node || (e - node) % stride) {
            snprintf(err, errlen, "class %u: region at %u has a bad end %u", c, node, e);
            return -EUCLEAN;
        }
        out->regions += (e - node) / stride;
        node = (uint32_t)(w >> 32);
    }
    for (uint32_t i = 0; i < s->max_threads; i++) {
        const struct pshm_thread *t = pshm_thread_at(s, i);
        if (pa_load_relaxed(&t->owner) == PSHM_NO_OWNER)
            continue;
        const struct pshm_tclass *tc = &t->cls[c];
        uint32_t a = pshm_tclass_fresh_next(tc);
        if (a < tc->fresh_end)
            out->regions += (tc->fresh_end - a) / stride;
        out->cached += pshm_tclass_cached(tc);
    }
    out->carved -= out->regions;
    /* The batch stack. */
    node = PSHM_HEAD_IDX(pa_load_acquire(&s->cls[c].central.w)); /* acquire: at rest */
    walked = 0;
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
            if (pa_load_relaxed(pshm_owner_idx(s, c, cur)) != PSHM_OWN_FREE) {
                snprintf(err, errlen, "class %u: block %u is on the central list but in use", c,
                         cur);
                return -EUCLEAN;
            }
            walked++;
            cur = (uint32_t)(*(const uint64_t *)pshm_ptr(s, cur) & 0xffffffffu);
        }
        node = (uint32_t)(w >> 32);
    }
    out->central = walked;
    return 0;
}

/* The spans and the large blocks: every span's map byte agrees with its
 * claim word; one in use (a class's, a large block's) is held by a claim
 * (not free, not a purge's) and committed; one a purge holds
 * (PSHM_MARK_PURGE: its purger died; the next poold puts it back) is free
 * in the span map; every large block's run is whole, and the large books
 * hold:
 *   allocs + adopts - frees - handoffs - reclaimed - put in transit == in use
 *   handoffs + put in transit - adopts                               == in transit
 * summed over the records, against the owner bytes of the heads. */
static int check_spans(const pshm_seg_t *s, char *err, size_t errlen)
{
    uint64_t in_use = 0, transit = 0;
    uint32_t cont_until = 0, head = 0;
    uint64_t head_word = 0;
    /* relaxed (all): no thread is inside the pool. */
    for (uint32_t n = 0; n < s->nspans; n++) {
        uint64_t w = pa_load_relaxed(&s->carvers[n]);
        uint32_t m = pa_load_relaxed(&s->spanmap[n]);
        uint32_t mark = PSHM_CLAIM_MARK(w);
        bool used = m < s->nclasses || m == PSHM_SPAN_LARGE || m == PSHM_SPAN_LCONT;
        bool held = mark != 0 && mark != PSHM_MARK_PURGE;
        bool committed = (pa_load_relaxed(&s->span_state[n]) & PSHM_STATE_COMMITTED) != 0;
        const char *bad = NULL;
        if (used && !held)
            bad = "in use but not claimed";
        else if (used && !committed)
            bad = "in use but not committed";
        else if (mark == PSHM_MARK_PURGE && m != PSHM_SPAN_FREE)
            bad = "taken by a purge but in use";
        else if (m == PSHM_SPAN_LCONT) {
            if (n >= cont_until || pa_load_relaxed(pshm_large_info(s, n)) != head || w != head_word)
                bad = "a large block's span outside its block";
            if (!bad)
                continue;
        } else if (n < cont_until) {
            bad = "a large block's run is cut short";
        } else if (m == PSHM_SPAN_LARGE) {
            uint32_t k = pa_load_relaxed(pshm_large_info(s, n));
            uint8_t v = pa_load_relaxed(pshm_large_owner(s, n));
            if (k == 0 || k > s->nspans - n)
                bad = "a large block with a bad length";
            else if (PSHM_OWN_IN_TRANSIT(v))
                transit++;
            else if (v >= 1 && v <= s->max_procs)
                in_use++;
            else
                bad = "a large block with no owner";
            head = n, head_word = w, cont_until = n + k;
        } else if (m == PSHM_SPAN_FREE) {
            /* A claim without a record is not journaled: a crash can leave
             * it claimed and unused (docs/internals.md); a purge's is put
             * back by the next poold. */
            if (mark != 0 && mark != PSHM_MARK_RAW && mark != PSHM_MARK_PURGE)
                bad = "a claimed span nobody uses";
        } else if (m >= s->nclasses) {
            bad = "a span map byte of no meaning";
        }
        if (bad) {
            snprintf(err, errlen, "span %u (map 0x%02x, claim %#llx): %s", n, m,
                     (unsigned long long)w, bad);
            return -EUCLEAN;
        }
    }
    pshm_large_stats_t L;
    pshm_large_totals(s, &L);
    uint64_t c_use = L.allocs + L.adopts - L.frees - L.handoffs - L.reclaimed - L.put_in_transit;
    uint64_t c_transit = L.handoffs + L.put_in_transit - L.adopts;
    if (c_use != in_use || c_transit != transit) {
        snprintf(err, errlen,
                 "large blocks: counted in use %lld, in transit %lld; found in use %llu, in "
                 "transit %llu",
                 (long long)c_use, (long long)c_transit, (unsigned long long)in_use,
                 (unsigned long long)transit);
        return -EUCLEAN;
    }
    return 0;
}

int pshm_check(const pshm_seg_t *s, char *err, size_t errlen)
{
    int src = check_spans(s, err, errlen);
    if (src < 0)
        return src;
    for (uint32_t c = 0; c < s->nclasses; c++) {
        struct class_sum sum;
        pshm_audit_t a;
        sum_class(s, c, &sum);
        int rc = pshm_audit_class(s, c, &a, err, errlen);
        if (rc < 0)
            return rc;
        uint64_t central = sum.moved_out - sum.moved_in;
        uint64_t transit = sum.handoffs - sum.adopts;
        int64_t in_use = (int64_t)(sum.allocs - sum.frees - transit - sum.uncarved);
        uint64_t carved = sum.fresh - sum.uncarved;
        /* Unsigned: scribbled counters may be anything, and the sum is
         * compared modulo 2^64 (a signed sum could overflow). */
        if (central + sum.cached + transit + (uint64_t)in_use != carved) {
            snprintf(err, errlen,
                     "class %u (%u B): central %llu + cached %llu + in use %lld + in transit "
                     "%llu != carved %llu",
                     c, s->block_size[c], (unsigned long long)central,
                     (unsigned long long)sum.cached, (long long)in_use, (unsigned long long)transit,
                     (unsigned long long)carved);
            return -EUCLEAN;
        }
        if (a.carved != carved || a.central != central || a.cached != sum.cached ||
            (int64_t)a.owned != in_use || a.transit != transit ||
            a.carved != a.central + a.cached + a.owned + a.transit) {
            snprintf(err, errlen,
                     "class %u (%u B): counted carved %llu central %llu cached %llu in use %lld "
                     "transit %llu; found carved %llu central %llu cached %llu owned %llu "
                     "transit %llu",
                     c, s->block_size[c], (unsigned long long)carved, (unsigned long long)central,
                     (unsigned long long)sum.cached, (long long)in_use, (unsigned long long)transit,
                     (unsigned long long)a.carved, (unsigned long long)a.central,
                     (unsigned long long)a.cached, (unsigned long long)a.owned,
                     (unsigned long long)a.transit);
            return -EUCLEAN;
        }
    }
    return 0;
}
