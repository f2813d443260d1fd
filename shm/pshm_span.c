/* SPDX-License-Identifier: MIT */
/*
 * pshm_span.c: carving spans out of the data area.
 *
 * Spans are handed out once, in address order, by a CAS on the header's
 * cursor, and never given back: the segment size is the pool's limit
 * (DESIGN.md invariant 7). The span map records each span's class so that
 * any pointer can be checked and classed without trusting its owner.
 */
#include <errno.h>

#include "pshm.h"

int pshm_span_carve(pshm_seg_t *s, uint32_t c, uint32_t *start, uint32_t *end)
{
    /* relaxed: the CAS below decides; the cursor guards no other data. */
    uint32_t n = pa_load_relaxed(&s->hdr->next_span);
    do {
        if (n >= s->nspans)
            return -ENOMEM;
    } while (!pa_cas_weak_acq_rel(&s->hdr->next_span, &n, n + 1));

    /* release: pairs with the acquire load in pshm_block_class(); a block of
     * this span is valid for pool_free() only after this store. */
    pa_store_release(&s->spanmap[n], (uint8_t)c);
    pa_add_relaxed(&s->cls[c].spans_carved, 1); /* relaxed: statistic */

    uint64_t off = s->data_off + ((uint64_t)n << s->span_shift);
    uint64_t used = (uint64_t)s->blocks_per_span[c] * s->block_size[c];
    *start = (uint32_t)(off >> 3);
    *end = (uint32_t)((off + used) >> 3);
    return 0;
}

int pshm_block_class_div(const pshm_seg_t *s, uint64_t rel, uint32_t c)
{
    uint64_t in = rel & ((UINT64_C(1) << s->span_shift) - 1);
    if (in % s->block_size[c] != 0 || in / s->block_size[c] >= s->blocks_per_span[c])
        return -EINVAL;
    return (int)c;
}
