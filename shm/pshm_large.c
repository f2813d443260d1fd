/* SPDX-License-Identifier: MIT */
/*
 * pshm_large.c: large blocks, runs of whole spans taken from the pool of
 * free spans (pshm_span.c) and given back to it.
 *
 * A large block is the run [head, head + k) of spans. Its spans hold one
 * claim word W (generation G, the claiming record's mark), with G at least
 * the generation of every span of the run when it was free, so that W
 * never stood in any of them before; the span map says LARGE for the head
 * and LCONT for the others. Its owner byte, its length and the size asked
 * live in the head's 64-byte owner slice (pshm_large_owner(), _info()).
 *
 * Every step is journaled in the record's large part (struct pshm_tlarge)
 * before it acts, and acts on claim words it can recognise later:
 * - LCLAIM (head, k, W): CAS each span from (g, 0) to W, commit the run's
 *   memory (pshm_span_commit(): a failure gives the run back, -ENOMEM),
 *   then write the slice and the continuations' map bytes, then the
 *   head's, released.
 *   A dead claimer's run is its block if the head's map byte says LARGE
 *   under W, else every span still holding W goes back.
 * - LFREE (head, k, W): the owner byte moves to FREE by one CAS (double
 *   frees are refused there), then every span still holding W is
 *   released, continuations first. Redoing it is harmless: a span released
 *   and claimed again holds another word.
 * Handoff and adopt move the owner byte as for a small block.
 */
#include <errno.h>

#include "pshm.h"

uint64_t pshm_max_block_default(uint64_t data_bytes, uint32_t span_shift)
{
    uint64_t q = (data_bytes / 4) >> span_shift << span_shift;
    uint64_t span = UINT64_C(1) << span_shift;
    return q > span ? q : span;
}

uint32_t pshm_large_spans_for(const pshm_seg_t *s, uint64_t bytes)
{
    return (uint32_t)((bytes + s->span_mask) >> s->span_shift);
}

int pshm_large_at(const pshm_seg_t *s, uint64_t off)
{
    uint64_t rel = off - s->data_off; /* wraps to huge below the data */
    if (rel >= s->data_bytes || (rel & s->span_mask) != 0)
        return -EINVAL;
    uint32_t n = (uint32_t)(rel >> s->span_shift);
    /* acquire: pairs with the release store that published the head, so
     * its slice (owner byte, length) is read after it. */
    if (pa_load_acquire(&s->spanmap[n]) != PSHM_SPAN_LARGE)
        return -EINVAL;
    return (int)n;
}

uint32_t pshm_large_len(const pshm_seg_t *s, uint32_t n)
{
    uint32_t k = pa_load_relaxed(pshm_large_info(s, n)); /* relaxed: after the map's acquire */
    return k >= 1 && k <= s->nspans - n ? k : 1;
}

/* Open a step in the large journal: the fields, then the op, released. */
static void journal(struct pshm_tlarge *tl, uint32_t op, uint32_t head, uint32_t k, uint64_t word,
                    uint64_t ctr, uint32_t count)
{
    tl->pend.large.head = head;
    tl->pend.large.spans = k;
    tl->pend.tag = word;
    tl->pend.ctr = ctr;
    tl->pend.count = count;
    PSHM_CRASH_POINT();
    pa_store_release(&tl->pend.op, op); /* release: pairs with pshm_large_recover() */
}

static void journal_close(struct pshm_tlarge *tl)
{
    /* release: the step's effects are in place before the journal says
     * there is none (pairs with pshm_large_recover()'s acquire). */
    pa_store_release(&tl->pend.op, PSHM_PEND_NONE);
}

/* Give back every span of [head, head + k) that still holds claim word W,
 * continuations first (pshm_large_recover() relies on the head going last). */
static void return_run(pshm_seg_t *s, uint32_t head, uint32_t k, uint64_t word)
{
    uint64_t now = pshm_now_ms(); /* one release time for the run */
    uint32_t given = 0, lowest = 0;
    for (uint32_t i = k; i-- > 0;) {
        /* relaxed (both): the CAS decides. A span of a size class is never
         * a large block's, whatever a (scribbled) journal says. */
        uint8_t m = pa_load_relaxed(&s->spanmap[head + i]);
        if (pa_load_relaxed(&s->carvers[head + i]) == word &&
            (m == PSHM_SPAN_FREE || m == PSHM_SPAN_LARGE || m == PSHM_SPAN_LCONT) &&
            pshm_span_release_at(s, head + i, word, now)) {
            given++;
            lowest = head + i;
        }
    }
    if (given)
        pshm_span_released(s, lowest, given);
}

int64_t pshm_large_alloc(pshm_seg_t *s, struct pshm_thread *t, uint8_t own, uint64_t bytes)
{
    struct pshm_tlarge *tl = pshm_tlarge_of(s, t);
    uint32_t me = pshm_rec_id(s, t);
    uint32_t k = pshm_large_spans_for(s, bytes);
    uint64_t a0 = pa_load_relaxed(&tl->allocs);     /* relaxed: single writer */
    uint64_t last = pa_load_relaxed(&tl->last_run); /* relaxed: single writer */
    bool all = false;
    for (int tries = 0; tries < 64; tries++) {
        uint32_t gen;
        /* The run this thread gave back last, if it is still free and long
         * enough (a block freed and allocated again, as the small blocks'
         * hot one); else the best fit. */
        int first = tries == 0 && last ? pshm_span_run_at(s, (uint32_t)(last - 1), k, &gen) : -1;
        if (first < 0)
            first = pshm_span_find_run(s, k, all, &gen);
        if (first < 0) {
            if (!all) {
                all = true;
                continue;
            }
            break;
        }
        uint32_t a = (uint32_t)first;
        uint64_t word = PSHM_CLAIM_WORD(gen, me);
        journal(tl, PSHM_PEND_LCLAIM, a, k, word, a0, 0);
        if (pshm_span_claim_run(s, a, k, word) < 0) {
            journal_close(tl);
            all = true; /* lost a race: look at everything next time */
            continue;
        }
        if (pshm_span_commit(s, a, k) < 0) {
            /* No memory for the run (a full /dev/shm): give it back (the
             * LCLAIM step still names it, so a crash here is undone the
             * same way) and refuse. */
            return_run(s, a, k, word);
            journal_close(tl);
            break;
        }
        for (uint32_t i = 1; i < k; i++) {
            pa_store_relaxed(pshm_large_info(s, a + i), a); /* relaxed: the head's release */
            pa_store_relaxed(&s->spanmap[a + i], PSHM_SPAN_LCONT);
        }
        pa_store_relaxed(pshm_large_info(s, a), k); /* relaxed: published below */
        pa_store_relaxed(pshm_large_asked(s, a), bytes);
        pa_store_relaxed(pshm_large_owner(s, a), own);
        /* release: pairs with the acquire in pshm_large_at(); the block's
         * slice and continuations are in place before anyone can name it. */
        pa_store_release(&s->spanmap[a], PSHM_SPAN_LARGE);
        pa_store_relaxed(&tl->allocs, a0 + 1); /* relaxed: single writer */
        journal_close(tl);
        return (int64_t)(s->data_off + ((uint64_t)a << s->span_shift));
    }
    pa_store_relaxed(&tl->exhausted, pa_load_relaxed(&tl->exhausted) + 1); /* single writer */
    return -ENOMEM;
}

/* Move head n's owner byte from a holder's value to FREE, journaled as an
 * LFREE (count: 0 a free, 1 a reclaim), and give its spans back. */
static int give_back(pshm_seg_t *s, struct pshm_thread *t, uint32_t n, uint8_t v, bool reclaim)
{
    struct pshm_tlarge *tl = pshm_tlarge_of(s, t);
    pa_u64 *ctr = reclaim ? &tl->reclaimed : &tl->frees;
    uint64_t c0 = pa_load_relaxed(ctr);              /* relaxed: single writer */
    uint64_t word = pa_load_relaxed(&s->carvers[n]); /* relaxed: the block is held */
    uint32_t k = pshm_large_len(s, n);
    journal(tl, PSHM_PEND_LFREE, n, k, word, c0, reclaim);
    /* acq_rel: exactly one of a free, a handoff and a reclaim moves the
     * block out of its holder's hands; acquire orders the holder's writes
     * into the block before the spans go to their next claimer. */
    if (!pa_cas_strong_acq_rel(pshm_large_owner(s, n), &v, PSHM_OWN_FREE)) {
        journal_close(tl);
        return -EINVAL;
    }
    return_run(s, n, k, word);
    pa_store_relaxed(ctr, c0 + 1); /* relaxed: single writer */
    journal_close(tl);
    pa_store_relaxed(&tl->last_run, (uint64_t)n + 1); /* relaxed: single writer, a hint */
    return 0;
}

int pshm_large_free(pshm_seg_t *s, struct pshm_thread *t, uint32_t n, uint8_t own)
{
    uint8_t v = pa_load_relaxed(pshm_large_owner(s, n)); /* relaxed: the CAS decides */
    /* The caller's own block, or another live process's handed on by
     * offset (as for small blocks); anything else is not in use. */
    int rc = (v == own && own != 0) || (v >= 1 && v <= s->max_procs) ? give_back(s, t, n, v, false)
                                                                     : -EINVAL;
    if (rc < 0)
        pa_add_relaxed(&s->hdr->large_invalid_frees, 1); /* relaxed: statistic */
    return rc;
}

int pshm_large_handoff(pshm_seg_t *s, struct pshm_thread *t, uint32_t n, uint8_t own)
{
    uint8_t v = pa_load_relaxed(pshm_large_owner(s, n)); /* relaxed: the CAS decides */
    /* The caller's own block, or another live process's handed on by
     * offset (as in pshm_rec_handoff()); anything else is not in use. */
    if (!((v == own && own != 0) || (v >= 1 && v <= s->max_procs)))
        return -EINVAL;
    return pshm_large_to_transit(s, t, n, v) ? 0 : -EINVAL;
}

/* Open a one-block step (HANDOFF, ADOPT) in the large journal: the block
 * and the counter before the step, then the op, released. */
static void journal_block(struct pshm_tlarge *tl, uint32_t op, uint32_t n, uint64_t ctr)
{
    tl->pend.block.idx = n;
    tl->pend.ctr = ctr;
    PSHM_CRASH_POINT();
    pa_store_release(&tl->pend.op, op); /* release: pairs with pshm_large_recover() */
}

int pshm_large_adopt(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot, uint32_t n)
{
    return pshm_large_adopt_from(s, t, slot, n, PSHM_OWN_TRANSIT);
}

int pshm_large_adopt_from(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot, uint32_t n,
                          uint8_t from)
{
    struct pshm_tlarge *tl = pshm_tlarge_of(s, t);
    uint64_t a0 = pa_load_relaxed(&tl->adopts); /* relaxed: single writer */
    journal_block(tl, PSHM_PEND_ADOPT, n, a0);
    uint8_t v = from;
    /* acq_rel: acquire pairs with the sender's release, so its writes into
     * the block are visible to the receiver; one adopter wins. */
    int rc = pa_cas_strong_acq_rel(pshm_large_owner(s, n), &v, pshm_own_val(slot)) ? 0 : -EINVAL;
    if (rc == 0)
        pa_store_relaxed(&tl->adopts, a0 + 1); /* relaxed: single writer */
    journal_close(tl);
    return rc;
}

int pshm_large_reclaim(pshm_seg_t *s, struct pshm_thread *t, uint32_t n, uint8_t v)
{
    return give_back(s, t, n, v, true);
}

bool pshm_large_to_transit(pshm_seg_t *s, struct pshm_thread *t, uint32_t n, uint8_t v)
{
    pa_u8 *o = pshm_large_owner(s, n);
    if (!t) {
        /* acq_rel: against a live free of the block (handed on by offset). */
        if (!pa_cas_strong_acq_rel(o, &v, PSHM_OWN_TRANSIT))
            return false;
        pa_add_relaxed(&s->hdr->large_put_in_transit, 1); /* relaxed: statistic */
        return true;
    }
    struct pshm_tlarge *tl = pshm_tlarge_of(s, t);
    uint64_t h0 = pa_load_relaxed(&tl->handoffs); /* relaxed: single writer */
    journal_block(tl, PSHM_PEND_HANDOFF, n, h0);
    /* acq_rel: release orders the sender's writes into the block before the
     * receiver's acquire in adopt; against a live free, one wins. */
    bool moved = pa_cas_strong_acq_rel(o, &v, PSHM_OWN_TRANSIT);
    if (moved)
        pa_store_relaxed(&tl->handoffs, h0 + 1); /* relaxed: single writer */
    journal_close(tl);
    return moved;
}

void pshm_large_chan_handoff(pshm_seg_t *s, struct pshm_thread *t, uint32_t n)
{
    struct pshm_tlarge *tl = pshm_tlarge_of(s, t);
    uint64_t h0 = pa_load_relaxed(&tl->handoffs); /* relaxed: single writer */
    journal_block(tl, PSHM_PEND_CHANDOFF, n, h0);
    /* release: orders the sender's writes into the block before the
     * receiver's acquire load of CHAN and its adopt CAS. */
    pa_store_release(pshm_large_owner(s, n), PSHM_OWN_CHAN);
    pa_store_relaxed(&tl->handoffs, h0 + 1); /* relaxed: single writer */
    journal_close(tl);
}

bool pshm_large_chan_move(pshm_seg_t *s, struct pshm_thread *t, uint32_t n, uint8_t from,
                          uint8_t to)
{
    struct pshm_tlarge *tl = pshm_tlarge_of(s, t);
    bool put = to == PSHM_OWN_CHAN;
    pa_u64 *ctr = put ? &tl->handoffs : &tl->adopts;
    uint64_t c0 = pa_load_relaxed(ctr); /* relaxed: single writer */
    tl->pend.count = from;
    journal_block(tl, put ? PSHM_PEND_CHANPUT : PSHM_PEND_CHANBACK, n, c0);
    uint8_t v = from;
    /* acq_rel: as in pshm_rec_chan_move(). */
    bool moved = pa_cas_strong_acq_rel(pshm_large_owner(s, n), &v, to);
    if (moved)
        pa_store_relaxed(ctr, c0 + 1); /* relaxed: single writer */
    journal_close(tl);
    return moved;
}

uint64_t pshm_large_recover(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot)
{
    struct pshm_tlarge *tl = pshm_tlarge_of(s, t);
    /* acquire: pairs with the release store of the op, so the fields are
     * the step's. Each is read once: a peer may scribble meanwhile. */
    uint32_t op = pa_load_acquire(&tl->pend.op);
    uint32_t a = tl->pend.large.head, k = tl->pend.large.spans, count = tl->pend.count;
    uint64_t word = tl->pend.tag, ctr = tl->pend.ctr;
    uint64_t dropped = 0;
    bool run_ok = a < s->nspans && k >= 1 && k <= s->nspans - a;
    switch (op) {
    case PSHM_PEND_NONE: break;
    case PSHM_PEND_LCLAIM:
        if (!run_ok || PSHM_CLAIM_MARK(word) != pshm_rec_id(s, t)) {
            dropped++;
            break;
        }
        /* relaxed (both): the dead claimer's stores, after our acquire. */
        if (pa_load_relaxed(&s->spanmap[a]) == PSHM_SPAN_LARGE &&
            pa_load_relaxed(&s->carvers[a]) == word) {
            pa_store_relaxed(&tl->allocs, ctr + 1); /* its block: the owner walk has it */
        } else {
            return_run(s, a, k, word);
            pa_store_relaxed(&tl->allocs, ctr);
        }
        break;
    case PSHM_PEND_LFREE: {
        pa_u64 *c = count ? &tl->reclaimed : &tl->frees;
        if (!run_ok) {
            dropped++;
            break;
        }
        /* relaxed: as above. */
        if (pa_load_relaxed(&s->carvers[a]) != word) {
            pa_store_relaxed(c, ctr + 1); /* the head went back: all did */
        } else if (pa_load_relaxed(pshm_large_owner(s, a)) == PSHM_OWN_FREE) {
            return_run(s, a, k, word);
            pa_store_relaxed(c, ctr + 1);
        } else {
            pa_store_relaxed(c, ctr);
        }
        break;
    }
    case PSHM_PEND_HANDOFF:
    case PSHM_PEND_ADOPT: {
        uint32_t n = tl->pend.block.idx;
        bool blk = n < s->nspans && pa_load_relaxed(&s->spanmap[n]) == PSHM_SPAN_LARGE;
        uint8_t v = blk ? pa_load_relaxed(pshm_large_owner(s, n)) : 0;
        bool done = op == PSHM_PEND_HANDOFF ? v == PSHM_OWN_TRANSIT : v == pshm_own_val(slot);
        pa_store_relaxed(op == PSHM_PEND_HANDOFF ? &tl->handoffs : &tl->adopts,
                         ctr + (done ? 1 : 0));
        break;
    }
    case PSHM_PEND_CHANPUT:
    case PSHM_PEND_CHANBACK: {
        /* As in pshm_rec_recover(). */
        uint32_t n = tl->pend.block.idx;
        bool blk = n < s->nspans && pa_load_relaxed(&s->spanmap[n]) == PSHM_SPAN_LARGE;
        uint8_t v = blk ? pa_load_relaxed(pshm_large_owner(s, n)) : 0;
        uint8_t from = op == PSHM_PEND_CHANPUT ? (uint8_t)count : PSHM_OWN_CHAN;
        pa_store_relaxed(op == PSHM_PEND_CHANPUT ? &tl->handoffs : &tl->adopts,
                         ctr + (blk && v != from ? 1 : 0));
        break;
    }
    case PSHM_PEND_CHANDOFF: {
        /* As in pshm_rec_recover(): done once the byte is no longer ours. */
        uint32_t n = tl->pend.block.idx;
        bool blk = n < s->nspans && pa_load_relaxed(&s->spanmap[n]) == PSHM_SPAN_LARGE;
        uint8_t v = blk ? pa_load_relaxed(pshm_large_owner(s, n)) : 0;
        pa_store_relaxed(&tl->handoffs, ctr + (blk && v != pshm_own_val(slot) ? 1 : 0));
        break;
    }
    default: dropped++; break;
    }
    pa_store_relaxed(&tl->pend.op, PSHM_PEND_NONE); /* relaxed: the reclaimer's own */
    return dropped;
}

void pshm_large_totals(const pshm_seg_t *s, pshm_large_stats_t *out)
{
    *out = (pshm_large_stats_t){0};
    /* relaxed (all): statistics. */
    for (uint32_t i = 0; i < s->max_threads; i++) {
        struct pshm_tlarge *tl = pshm_tlarge_of(s, pshm_thread_at(s, i));
        out->allocs += pa_load_relaxed(&tl->allocs);
        out->frees += pa_load_relaxed(&tl->frees);
        out->handoffs += pa_load_relaxed(&tl->handoffs);
        out->adopts += pa_load_relaxed(&tl->adopts);
        out->reclaimed += pa_load_relaxed(&tl->reclaimed);
        out->exhausted += pa_load_relaxed(&tl->exhausted);
    }
    out->put_in_transit = pa_load_relaxed(&s->hdr->large_put_in_transit);
    out->invalid_frees = pa_load_relaxed(&s->hdr->large_invalid_frees);
    uint32_t hw = pshm_span_high(s);
    for (uint32_t n = 0; n < hw; n++) {
        uint8_t m = pa_load_relaxed(&s->spanmap[n]);
        if (m != PSHM_SPAN_LARGE)
            continue;
        uint8_t v = pa_load_relaxed(pshm_large_owner(s, n));
        uint64_t bytes = (uint64_t)pshm_large_len(s, n) << s->span_shift;
        if (PSHM_OWN_IN_TRANSIT(v)) {
            out->in_transit++;
        } else if (v != PSHM_OWN_FREE) {
            out->in_use++;
            out->bytes_in_use += bytes;
            out->bytes_asked += pa_load_relaxed(pshm_large_asked(s, n));
        }
        uint32_t b = 0;
        while (b + 1 < PSHM_LARGE_BUCKETS && bytes > (UINT64_C(256) << 10 << (2 * b)))
            b++;
        out->bucket[b]++;
    }
}
