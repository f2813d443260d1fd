/* SPDX-License-Identifier: MIT */
/*
 * pshm_span.c: carving spans out of the data area.
 *
 * Spans are handed out once and never given back: the segment size is the
 * pool's limit (invariant 7, docs/design.md). A span is claimed by a CAS of its
 * carvers[] word from 0 to the claiming record's number, so that a dead
 * thread's claim is known by its record (pshm_rec_recover); the header's
 * cursor is only a hint of where the unclaimed spans start. The span map
 * records each span's class so that any pointer can be checked and classed
 * without trusting its owner.
 */
#include <errno.h>
#include <string.h>

#include "pshm.h"

int pshm_span_claim(pshm_seg_t *s, struct pshm_pending *pend, uint32_t rec_id)
{
    /* relaxed: a hint; the CAS on carvers[n] decides. */
    uint32_t n = pa_load_relaxed(&s->hdr->next_span);
    /* A claim by no record (uncached) still needs a nonzero word. */
    uint32_t mark = rec_id ? rec_id : UINT32_MAX;
    for (;;) {
        if (n >= s->nspans)
            return -ENOMEM;
        if (pend) {
            /* n, not a: pshm_rec_install() writes the range into a and b
             * while this op still stands (until it stores INSTALL). */
            pend->n = n;
            /* release: the journal names the span before the claim can
             * happen (pairs with the acquire in pshm_rec_recover()). */
            pa_store_release(&pend->op, PSHM_PEND_CARVE);
        }
        uint32_t expect = 0;
        /* acq_rel: the winner alone owns span n; acquire pairs with nothing
         * in particular (the span is fresh), release orders the claim before
         * the cursor moves past it. */
        bool won = pa_cas_strong_acq_rel(&s->carvers[n], &expect, mark);
        /* Move the cursor past n, for us or for a claimer that died before
         * it did; losing this CAS means someone moved it already. */
        uint32_t cur = n;
        pa_cas_strong_acq_rel(&s->hdr->next_span, &cur, n + 1);
        if (won)
            return (int)n;
        n++;
    }
}

void pshm_span_publish(pshm_seg_t *s, uint32_t n, uint32_t c, uint32_t *start, uint32_t *end)
{
    uint64_t span_off = s->data_off + ((uint64_t)n << s->span_shift);
    uint64_t used = (uint64_t)s->blocks_per_span[c] * s->block_size[c];
    /* The owner bytes of a class kept in the span's tail start FREE; the
     * span is zero in a new segment, but spans are never trusted to be. The
     * large classes' slices were zeroed at format. */
    if (s->owner_span_shift[c] == s->span_shift) {
        uint8_t *own = (uint8_t *)pshm_owner(s, c, span_off);
        memset(own, 0, (size_t)((s->base + span_off + s->span_mask + 1) - own));
    }
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
    for (uint32_t n = 0; n < s->nspans; n++)
        k += pa_load_relaxed(&s->carvers[n]) != 0; /* relaxed: statistic */
    return k;
}

int pshm_block_class_div(const pshm_seg_t *s, uint64_t rel, uint32_t c)
{
    uint64_t in = rel & ((UINT64_C(1) << s->span_shift) - 1);
    if (in % s->block_size[c] != 0 || in / s->block_size[c] >= s->blocks_per_span[c])
        return -EINVAL;
    return (int)c;
}
