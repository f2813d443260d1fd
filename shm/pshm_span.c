/* SPDX-License-Identifier: MIT */
/*
 * pshm_span.c: claiming spans from the data area, and giving them back.
 *
 * Every span has a claim word (carvers[]): a generation in the high half
 * and, in the low half, the mark of the record that holds it (0: the span
 * is free). A span is claimed by one CAS of that word from (g, 0) to
 * (g, mark), so that a dead thread's claim is known by its record
 * (pshm_rec_recover, pshm_large.c), and released by one CAS to (g + 1, 0):
 * a claim word never repeats, so a journal that names one can tell "still
 * the claim I made" from "released and claimed again since".
 *
 * The free spans are one pool for the whole segment (invariant 7,
 * docs/design.md): a size class carving a span and a large block taking a
 * run of them both take from it, and both give back to it. The header
 * keeps three hints, none of which decides anything:
 * - next_span, the high water: no span at or above it was ever claimed;
 * - free_hint: no released span below it (a hint a race can leave high:
 *   then the last look over every span, before -ENOMEM, finds the span);
 * - spans_free: released spans not claimed again.
 * The span map records each span's use (a class, a large block's head or
 * continuation, or free) so that any pointer can be checked without
 * trusting its owner.
 *
 * Memory is committed as spans are claimed and given back when they stay
 * free. Each span has a state word (span_state[]): COMMITTED when its
 * memory is in /dev/shm, and the millisecond of its last release. A claimer
 * commits the spans it won (pshm_span_commit()) before it publishes or
 * writes them: a span already committed costs one load; a commit that
 * fails (no memory left) is -ENOMEM, and the claimer gives the spans back.
 * A claimer killed between its claim and its commit leaves a claimed span
 * not yet committed, which its reclaimer commits or gives back (the claim
 * is journaled; committing twice is harmless). The COMMITTED bit is set
 * after the memory is there and cleared after it is gone, so that it never
 * claims memory the span lacks (a crash in between leaves memory the bit
 * does not count, never the reverse).
 *
 * poold's purge (pshm_span_purge()) takes a span that has been free long
 * enough out of the pool by one CAS of its claim word from (g, 0) to
 * (g, PSHM_MARK_PURGE), punches its memory out, clears COMMITTED, and
 * releases it: (g + 1, 0). A claimer meanwhile sees the span taken and
 * looks further. A poold killed mid-purge leaves the mark; the next poold
 * finishes the purge at its start (pshm_span_purge_recover()), and only one
 * poold serves a segment.
 *
 * The state word has one writer at a time, the holder of the span's claim
 * word (claimer, releaser, purger); the claim word's acq_rel CASes order
 * one holder's writes before the next one's, so the state is read and
 * written relaxed. Statistics read it relaxed as a snapshot.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "pshm.h"

#if defined(PA_TSAN)
char pa_tsan_segment_token_; /* pshm_atomic.h */
#endif

/* Lower the free-span hint to n (a CAS-min). relaxed: a hint. */
static void hint_lower(pshm_seg_t *s, uint32_t n)
{
    uint32_t cur = pa_load_relaxed(&s->hdr->free_hint);
    while (cur > n && !pa_cas_weak_relaxed(&s->hdr->free_hint, &cur, n))
        ;
}

/* Raise the high water to n (a CAS-max). acq_rel: pairs with nothing in
 * particular; it only has to be ordered after our claims, which readers of
 * the high water (the preload's fork) do not need more than as a bound. */
static void high_raise(pshm_seg_t *s, uint32_t n)
{
    uint32_t cur = pa_load_relaxed(&s->hdr->next_span);
    while (cur < n && !pa_cas_strong_acq_rel(&s->hdr->next_span, &cur, n))
        ;
}

uint32_t pshm_span_high(const pshm_seg_t *s)
{
    uint32_t hw = pa_load_relaxed(&s->hdr->next_span); /* relaxed: a bound */
    return hw < s->nspans ? hw : s->nspans;
}

/* Claim span n if it is free, journaled as a CARVE first with `pend`. */
static bool try_claim(pshm_seg_t *s, struct pshm_pending *pend, uint32_t n, uint32_t mark)
{
    uint64_t w = pa_load_relaxed(&s->carvers[n]); /* relaxed: the CAS decides */
    if (PSHM_CLAIM_MARK(w) != 0)
        return false;
    if (pend) {
        /* range.span, the third word: pshm_rec_install() writes the range's
         * start and end while this op still stands (until it stores
         * INSTALL). */
        pend->range.span = n;
        PSHM_CRASH_POINT();
        /* release: the journal names the span before the claim can happen
         * (pairs with the acquire in pshm_rec_recover()). */
        pa_store_release(&pend->op, PSHM_PEND_CARVE);
    }
    /* acq_rel: the winner alone holds span n; acquire pairs with the
     * release CAS of pshm_span_release(), so that the releaser's writes
     * (its span map store) are behind us; release orders the claim before
     * what the claimer writes into the span. */
    if (!pa_cas_strong_acq_rel(&s->carvers[n], &w, w | mark))
        return false;
    pa_tsan_span_claimed();
    return true;
}

/* A released span below the high water, from the hint on (all: from 0). */
static int claim_released(pshm_seg_t *s, struct pshm_pending *pend, uint32_t mark, bool all)
{
    uint32_t hw = pshm_span_high(s);
    uint32_t h = all ? 0 : pa_load_relaxed(&s->hdr->free_hint); /* relaxed: a hint */
    for (uint32_t n = h; n < hw; n++) {
        if (try_claim(s, pend, n, mark)) {
            pa_sub_relaxed(&s->hdr->spans_free, 1); /* relaxed: a hint */
            uint32_t cur = h;
            /* relaxed: a hint; losing means a release moved it meanwhile. */
            pa_cas_weak_relaxed(&s->hdr->free_hint, &cur, n + 1);
            return (int)n;
        }
    }
    if (!all) {
        uint32_t cur = h;
        pa_cas_weak_relaxed(&s->hdr->free_hint, &cur, hw); /* relaxed: a hint */
    }
    return -ENOMEM;
}

int pshm_span_claim(pshm_seg_t *s, struct pshm_pending *pend, uint32_t rec_id)
{
    /* A claim by no record (uncached) still needs a nonzero mark. */
    uint32_t mark = rec_id ? rec_id : PSHM_MARK_RAW;
    /* Released spans first: their memory was used already. */
    if ((int64_t)pa_load_relaxed(&s->hdr->spans_free) > 0) { /* relaxed: a hint */
        int n = claim_released(s, pend, mark, false);
        if (n >= 0)
            return n;
    }
    for (uint32_t n = pshm_span_high(s); n < s->nspans; n++) {
        if (try_claim(s, pend, n, mark)) {
            /* Past n, for us or for a claimer that died before it did. */
            high_raise(s, n + 1);
            return (int)n;
        }
    }
    /* The last look, whatever the hints say. */
    return claim_released(s, pend, mark, true);
}

uint64_t pshm_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

bool pshm_span_release_at(pshm_seg_t *s, uint32_t n, uint64_t word, uint64_t now_ms)
{
    /* The span map says "free" before the claim word does: a claimer that
     * wins the span next sees it so (its acquire CAS pairs with ours). */
    pa_store_relaxed(&s->spanmap[n], PSHM_SPAN_FREE); /* relaxed: the CAS releases it */
    PSHM_CRASH_POINT();
    /* Free since now, committed or not as it was. relaxed: we hold the
     * span, the state's one writer; the CAS below publishes it to the next
     * holder and to the purge's acquire load. */
    uint64_t st = pa_load_relaxed(&s->span_state[n]);
    pa_store_relaxed(&s->span_state[n], (st & PSHM_STATE_COMMITTED) | now_ms);
    PSHM_CRASH_POINT();
    uint64_t w = word;
    /* acq_rel: release publishes the span map store above (and, for the
     * caller, everything it did with the span) to the next claimer. */
    return pa_cas_strong_acq_rel(&s->carvers[n], &w, PSHM_CLAIM_WORD(PSHM_CLAIM_GEN(word) + 1, 0));
}

void pshm_span_released(pshm_seg_t *s, uint32_t lowest, uint32_t count)
{
    pa_add_relaxed(&s->hdr->spans_free, count); /* relaxed: a hint */
    hint_lower(s, lowest);
}

bool pshm_span_release(pshm_seg_t *s, uint32_t n, uint64_t word)
{
    if (!pshm_span_release_at(s, n, word, pshm_now_ms()))
        return false;
    pshm_span_released(s, n, 1);
    return true;
}

int pshm_span_claim_run(pshm_seg_t *s, uint32_t first, uint32_t k, uint64_t word)
{
    if (first + k > pshm_span_high(s))
        high_raise(s, first + k); /* first: the preload's fork copies up to it */
    for (uint32_t i = 0; i < k; i++) {
        uint32_t n = first + i;
        uint64_t w = pa_load_relaxed(&s->carvers[n]); /* relaxed: the CAS decides */
        /* A word of a later generation than the run's would repeat one. */
        if (PSHM_CLAIM_MARK(w) != 0 || PSHM_CLAIM_GEN(w) > PSHM_CLAIM_GEN(word) ||
            /* acq_rel: as in try_claim(). */
            !pa_cas_strong_acq_rel(&s->carvers[n], &w, word)) {
            /* Lost a span: give back those taken, last first, with one
             * release time. spans_free never counted them: only the hint
             * moves, to the lowest. */
            uint64_t now = pshm_now_ms();
            bool any = i > 0;
            while (i-- > 0)
                pshm_span_release_at(s, first + i, word, now);
            if (any)
                hint_lower(s, first);
            return -EAGAIN;
        }
    }
    pa_tsan_span_claimed();
    return 0;
}

int pshm_span_run_at(const pshm_seg_t *s, uint32_t first, uint32_t k, uint32_t *gen)
{
    if (first >= s->nspans || k > s->nspans - first)
        return -ENOMEM;
    /* relaxed: a candidate. The left end of a free run only: taken from
     * the middle, a run would leave two pieces where best fit leaves one. */
    if (first > 0 && PSHM_CLAIM_MARK(pa_load_relaxed(&s->carvers[first - 1])) == 0)
        return -ENOMEM;
    uint32_t g = 0;
    for (uint32_t n = first; n < first + k; n++) {
        uint64_t w = pa_load_relaxed(&s->carvers[n]); /* relaxed: a candidate */
        if (PSHM_CLAIM_MARK(w) != 0)
            return -ENOMEM;
        if (PSHM_CLAIM_GEN(w) > g)
            g = PSHM_CLAIM_GEN(w);
    }
    *gen = g;
    return (int)first;
}

int pshm_span_find_run(const pshm_seg_t *s, uint32_t k, bool all, uint32_t *gen)
{
    uint32_t hw = pshm_span_high(s);
    uint32_t from = all ? 0 : pa_load_relaxed(&s->hdr->free_hint); /* relaxed: a hint */
    uint32_t best = UINT32_MAX, best_len = UINT32_MAX, best_gen = 0;
    uint32_t run = 0, run_len = 0, run_gen = 0;
    /* relaxed (all): a candidate; the claim's CASes decide. */
    if ((int64_t)pa_load_relaxed(&s->hdr->spans_free) > 0 || all) {
        for (uint32_t n = from; n <= hw; n++) {
            uint64_t w = n < hw ? pa_load_relaxed(&s->carvers[n]) : 1;
            if (PSHM_CLAIM_MARK(w) == 0) {
                if (run_len == 0)
                    run = n, run_gen = 0;
                run_len++;
                if (PSHM_CLAIM_GEN(w) > run_gen)
                    run_gen = PSHM_CLAIM_GEN(w);
                continue;
            }
            /* Best fit: the shortest run that holds k; a run that ends at
             * the high water can grow into the fresh spans above it. */
            if (run_len >= k && run_len < best_len) {
                best = run, best_len = run_len, best_gen = run_gen;
                if (run_len == k)
                    break;
            } else if (n == hw && run_len > 0 && best == UINT32_MAX && run + k <= s->nspans) {
                best = run, best_len = k, best_gen = run_gen;
            }
            run_len = 0;
        }
    }
    if (best == UINT32_MAX) {
        if (hw + k > s->nspans)
            return -ENOMEM;
        best = hw, best_gen = 0;
    }
    *gen = best_gen;
    return (int)best;
}

void pshm_span_publish(pshm_seg_t *s, uint32_t n, uint32_t c, uint32_t *start, uint32_t *end)
{
    uint64_t span_off = s->data_off + ((uint64_t)n << s->span_shift);
    uint64_t used = (uint64_t)s->blocks_per_span[c] * s->block_size[c];
    /* The owner bytes start FREE: in the span's tail, or in its slice (a
     * large block that held the span before left its own bytes there). The
     * span is zero in a new segment, but spans are never trusted to be. */
    uint8_t *own = (uint8_t *)pshm_owner(s, c, span_off);
    size_t nown = s->owner_span_shift[c] == s->span_shift
                      ? (size_t)((s->base + span_off + s->span_mask + 1) - own)
                      : PSHM_GOWNER_SLICE;
    memset(own, 0, nown);
    PSHM_CRASH_POINT();
    /* release: pairs with the acquire load in pshm_block_class(); a block of
     * this span is valid for pool_free() only after this store, and its
     * owner bytes are zero before it. */
    pa_store_release(&s->spanmap[n], (uint8_t)c);
    *start = (uint32_t)(span_off >> 3);
    *end = (uint32_t)((span_off + used) >> 3);
}

uint32_t pshm_spans_of(const pshm_seg_t *s, uint32_t c)
{
    uint32_t k = 0;
    for (uint32_t n = 0; n < s->nspans; n++)
        k += pa_load_relaxed(&s->spanmap[n]) == c; /* relaxed: statistic */
    return k;
}

uint32_t pshm_spans_carved(const pshm_seg_t *s)
{
    uint32_t k = 0;
    for (uint32_t n = 0; n < s->nspans; n++) {
        uint32_t m = PSHM_CLAIM_MARK(pa_load_relaxed(&s->carvers[n])); /* relaxed: statistic */
        k += m != 0 && m != PSHM_MARK_PURGE;                           /* a span in purge is free */
    }
    return k;
}

static uint8_t *span_addr(const pshm_seg_t *s, uint32_t n)
{
    return s->base + s->data_off + ((uint64_t)n << s->span_shift);
}

static bool committed(const pshm_seg_t *s, uint32_t n)
{
    /* relaxed: the caller holds span n (the state's one writer), or reads
     * a statistic. */
    return (pa_load_relaxed(&s->span_state[n]) & PSHM_STATE_COMMITTED) != 0;
}

int pshm_span_commit(pshm_seg_t *s, uint32_t first, uint32_t k)
{
    uint32_t end = first + k;
    for (uint32_t n = first; n < end;) {
        if (committed(s, n)) {
            n++;
            continue;
        }
        /* One call for the run of uncommitted spans from n. */
        uint32_t m = n + 1;
        while (m < end && !committed(s, m))
            m++;
        uint64_t len = (uint64_t)(m - n) << s->span_shift;
        int rc = pshm_os_commit(span_addr(s, n), len);
        if (rc == -ENOMEM) {
            /* Give back what the commit took before it failed: the spans
             * are ours, and their bits say uncommitted. */
            (void)pshm_os_decommit(span_addr(s, n), len);
            return -ENOMEM;
        }
        /* 0, or -ENOTSUP (an old kernel): the pages come at first touch,
         * as in any tmpfs mapping; nothing better can be done here. */
        for (uint32_t i = n; i < m; i++) {
            /* relaxed: we hold span i (see above); after the memory is there. */
            uint64_t st = pa_load_relaxed(&s->span_state[i]);
            pa_store_relaxed(&s->span_state[i], st | PSHM_STATE_COMMITTED);
        }
        n = m;
    }
    return 0;
}

void pshm_span_note_committed(pshm_seg_t *s, uint32_t first, uint32_t k)
{
    /* relaxed RMW: a holder's store keeps the bit (it committed its span at
     * claim), so an OR racing it loses nothing; no purge runs meanwhile. */
    for (uint32_t n = first; n < first + k && n < s->nspans; n++)
        pa_or_relaxed(&s->span_state[n], PSHM_STATE_COMMITTED);
}

void pshm_span_count(const pshm_seg_t *s, pshm_span_counts_t *out)
{
    *out = (pshm_span_counts_t){0};
    /* Every span: a segment committed whole at creation (prefault = all)
     * has committed spans above the high water. */
    for (uint32_t n = 0; n < s->nspans; n++) {
        if (!committed(s, n))
            continue;
        out->committed++;
        /* relaxed: statistic. */
        out->free += PSHM_CLAIM_MARK(pa_load_relaxed(&s->carvers[n])) == 0;
    }
}

int pshm_span_purge(pshm_seg_t *s, uint64_t now_ms, uint64_t delay_ms, uint64_t retain,
                    uint32_t max)
{
    pshm_span_counts_t k;
    pshm_span_count(s, &k);
    uint64_t keep = retain >> s->span_shift;
    if (k.free <= keep)
        return 0;
    uint64_t excess = k.free - keep;
    if (excess > max)
        excess = max;
    int purged = 0;
    /* Highest spans first: claims take the lowest free spans first
     * (free_hint), so the purge gives back what is least likely reused. */
    for (uint32_t n = s->nspans; n-- > 0 && excess > 0;) {
        /* acquire: pairs with the release CAS of pshm_span_release(), so
         * that the state its releaser stamped is the one read next. */
        uint64_t w = pa_load_acquire(&s->carvers[n]);
        if (PSHM_CLAIM_MARK(w) != 0)
            continue;
        uint64_t st = pa_load_relaxed(&s->span_state[n]); /* relaxed: after the acquire */
        if (!(st & PSHM_STATE_COMMITTED) || PSHM_STATE_FREED_MS(st) + delay_ms > now_ms)
            continue;
        uint64_t held = PSHM_CLAIM_WORD(PSHM_CLAIM_GEN(w), PSHM_MARK_PURGE);
        /* acq_rel: as a claim (try_claim()): the purge alone holds the
         * span; the word never repeats, so an unchanged word means the
         * state read above is still the span's. */
        if (!pa_cas_strong_acq_rel(&s->carvers[n], &w, held))
            continue;
        pa_sub_relaxed(&s->hdr->spans_free, 1); /* relaxed: a hint; the release adds it back */
        int rc = pshm_os_decommit(span_addr(s, n), UINT64_C(1) << s->span_shift);
        if (rc == 0) {
            /* relaxed: we hold the span; after the memory is gone. */
            pa_store_relaxed(&s->span_state[n], PSHM_STATE_FREED_MS(st));
            pa_add_relaxed(&s->hdr->spans_purged, 1); /* relaxed: statistic, one writer */
        }
        pshm_span_release(s, n, held);
        if (rc < 0)
            return purged ? purged : rc;
        purged++;
        excess--;
    }
    return purged;
}

uint32_t pshm_span_purge_recover(pshm_seg_t *s)
{
    uint32_t k = 0;
    for (uint32_t n = 0; n < s->nspans; n++) {
        /* acquire: pairs with the purge's acq_rel CAS that set the mark. */
        uint64_t w = pa_load_acquire(&s->carvers[n]);
        if (PSHM_CLAIM_MARK(w) != PSHM_MARK_PURGE)
            continue;
        /* The dead purger may have punched the span or not: again (a hole
         * punched twice is one hole), then uncommitted. */
        if (pshm_os_decommit(span_addr(s, n), UINT64_C(1) << s->span_shift) == 0) {
            uint64_t st = pa_load_relaxed(&s->span_state[n]); /* relaxed: the mark is ours */
            pa_store_relaxed(&s->span_state[n], PSHM_STATE_FREED_MS(st));
        }
        pshm_span_release(s, n, w);
        k++;
    }
    return k;
}

int pshm_span_snapshot(const pshm_seg_t *s, uint32_t spans, void **out)
{
    /* The header and tables, then only the committed spans: a span without
     * memory reads as zeros in the copy anyway, and reading it through the
     * shared mapping would commit it again (tmpfs allocates a page on a
     * read fault of a hole), undoing a purge. */
    int rc = pshm_os_snapshot(s->base, s->bytes, s->data_off, out);
    if (rc < 0)
        return rc;
    uint8_t *copy = *out;
    uint64_t span = UINT64_C(1) << s->span_shift;
    for (uint32_t n = 0; n < spans && n < s->nspans; n++) {
        if (!committed(s, n))
            continue;
        uint64_t off = s->data_off + ((uint64_t)n << s->span_shift);
        memcpy(copy + off, s->base + off, (size_t)span);
    }
    return 0;
}
