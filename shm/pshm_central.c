/* SPDX-License-Identifier: MIT */
/*
 * pshm_central.c: the lock-free central lists of each size class.
 *
 * Two Treiber stacks per class, both with a tagged 64-bit head (generation in
 * the high 32 bits, block index in the low 32) so that a head that was popped
 * and pushed again between a reader's load and its CAS fails the CAS (ABA).
 * - The batch stack: each node is the first block of a chain of free blocks
 *   (one refill or flush worth). Moving a batch costs one CAS.
 * - The region stack: uncarved remainders of spans left by exited threads.
 * The links live in the first 8 bytes of the free blocks themselves.
 *
 * Crash consistency: the only shared write is the CAS on the head. A process
 * killed before it leaves the list as it was; killed after it, the batch is
 * wholly in the list (push) or wholly out (pop). There is no lock a dead
 * process could hold. Never call into the OS here.
 */
#include "pshm.h"

static inline uint64_t *link_word(const pshm_seg_t *s, uint32_t idx)
{
    return (uint64_t *)pshm_ptr(s, idx);
}

/*
 * Read the "next node" half of a node's link word while the node may, in a
 * race we lose, have been popped by another thread and handed to a user who
 * is writing into it. The value read then is garbage, but it is used only if
 * the CAS on the head succeeds, and the tagged head guarantees that a
 * successful CAS means the node was not popped in between, so the value was
 * the true link. The read never faults (the block is inside the mapping).
 * This is the one benign race of a Treiber stack; it is hidden from TSan,
 * which cannot see the tag argument, by reading through a volatile pointer in
 * an uninstrumented function.
 */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
__attribute__((no_sanitize("thread")))
#endif
static uint32_t
peek_next_node(const pshm_seg_t *s, uint32_t idx)
{
    const volatile uint64_t *w = (const volatile uint64_t *)pshm_ptr(s, idx);
    return (uint32_t)(*w >> 32);
}

/* Set the "next node" half of a node we own, keeping the low half. */
static inline void set_next_node(const pshm_seg_t *s, uint32_t idx, uint32_t next)
{
    uint64_t *w = link_word(s, idx);
    *w = ((uint64_t)next << 32) | (*w & 0xffffffffu);
}

static void stack_push(const pshm_seg_t *s, pa_u64 *head, uint32_t node)
{
    /* relaxed: only a starting guess; the CAS below re-reads with acquire. */
    uint64_t old = pa_load_relaxed(head);
    for (;;) {
        set_next_node(s, node, PSHM_HEAD_IDX(old));
        /* release: publishes the node's link words (and the chain written by
         * our caller) to the acquire CAS or load in stack_pop(). */
        if (pa_cas_weak_acq_rel(head, &old, PSHM_HEAD_MAKE(PSHM_HEAD_TAG(old) + 1, node)))
            return;
    }
}

static uint32_t stack_pop(const pshm_seg_t *s, pa_u64 *head, uint32_t c)
{
    /* acquire: pairs with the release CAS in stack_push(), so the node's link
     * word we read next is the one its pusher wrote. */
    uint64_t old = pa_load_acquire(head);
    for (;;) {
        uint32_t node = PSHM_HEAD_IDX(old);
        if (node == PSHM_IDX_NONE)
            return PSHM_IDX_NONE;
        /* A corrupt head (scribbled segment) must not send us outside the
         * mapping: treat it as empty rather than follow it. */
        if (pshm_unlikely(!pshm_idx_is_block(s, node, c)))
            return PSHM_IDX_NONE;
        uint32_t next = peek_next_node(s, node);
        /* acq_rel: acquire pairs with the pusher's release, release orders
         * our earlier reads before anyone who pushes this node again. */
        if (pa_cas_weak_acq_rel(head, &old, PSHM_HEAD_MAKE(PSHM_HEAD_TAG(old) + 1, next)))
            return node;
    }
}

void pshm_central_push(pshm_seg_t *s, uint32_t c, const uint32_t *idx, uint32_t n)
{
    pool_assert(n >= 1 && n <= s->batch[c] + 1);
    /* Chain the blocks; the node's high half is set by stack_push. */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t nx = i + 1 < n ? idx[i + 1] : PSHM_IDX_NONE;
        *link_word(s, idx[i]) = (uint64_t)nx;
    }
    stack_push(s, &s->cls[c].central, idx[0]);
    /* relaxed: statistic, read by stats only. */
    pa_add_relaxed(&s->cls[c].central_blocks, n);
}

uint32_t pshm_central_pop(pshm_seg_t *s, uint32_t c, uint32_t *out, uint32_t cap)
{
    uint32_t node = stack_pop(s, &s->cls[c].central, c);
    uint32_t n = 0;
    uint32_t dropped = 0;

    /* The chain is ours now: plain reads, ordered after the acquire in
     * stack_pop. Bound the walk and check every index, so that a corrupt
     * chain (a double free, a scribbling process) cannot loop or escape. */
    uint32_t cur = node;
    while (cur != PSHM_IDX_NONE) {
        if (n == cap || !pshm_idx_is_block(s, cur, c)) {
            dropped++;
            break;
        }
        out[n++] = cur;
        cur = (uint32_t)(*link_word(s, cur) & 0xffffffffu);
    }
    if (n)
        pa_sub_relaxed(&s->cls[c].central_blocks, n); /* relaxed: statistic */
    if (dropped)
        pa_add_relaxed(&s->hdr->entries_dropped, dropped); /* relaxed: statistic */
    return n;
}

void pshm_region_push(pshm_seg_t *s, uint32_t c, uint32_t start, uint32_t end)
{
    pool_assert(start < end);
    *link_word(s, start) = (uint64_t)end;
    stack_push(s, &s->cls[c].regions, start);
    uint32_t blocks = (uint32_t)(((uint64_t)(end - start) << 3) / s->block_size[c]);
    pa_add_relaxed(&s->cls[c].region_blocks, blocks); /* relaxed: statistic */
}

bool pshm_region_pop(pshm_seg_t *s, uint32_t c, uint32_t *start, uint32_t *end)
{
    uint32_t node = stack_pop(s, &s->cls[c].regions, c);
    if (node == PSHM_IDX_NONE)
        return false;
    uint32_t e = (uint32_t)(*link_word(s, node) & 0xffffffffu);
    /* The region must end inside the node's span, on a block boundary. */
    uint64_t span_mask = (UINT64_C(1) << s->span_shift) - 1;
    uint64_t node_off = (uint64_t)node << 3;
    uint64_t span_end = ((node_off - s->data_off) & ~span_mask) + s->data_off + span_mask + 1;
    uint64_t end_off = (uint64_t)e << 3;
    if (end_off <= node_off || end_off > span_end || (end_off - node_off) % s->block_size[c]) {
        pa_add_relaxed(&s->hdr->entries_dropped, 1); /* relaxed: statistic */
        return false;
    }
    *start = node;
    *end = e;
    uint32_t blocks = (uint32_t)((end_off - node_off) / s->block_size[c]);
    pa_sub_relaxed(&s->cls[c].region_blocks, blocks); /* relaxed: statistic */
    return true;
}
