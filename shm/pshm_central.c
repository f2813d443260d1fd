/* SPDX-License-Identifier: MIT */
/*
 * pshm_central.c: the lock-free central lists of each size class, and the
 * journaled steps that move blocks between them and a thread's record.
 *
 * Two Treiber stacks per class, each with a 16-byte head (a 64-bit
 * generation, the author, the index of the top node; pshm_layout.h) moved
 * by one 16-byte CAS, so that a head that was popped and pushed again
 * between a reader's load and its CAS fails the CAS (ABA).
 * - The batch stack ("central"): each node is the first block of a chain of
 *   free blocks (one refill or flush worth). Moving a batch costs one CAS.
 * - The region stack: uncarved remainders of spans given back by threads.
 * The links live in the first 8 bytes of the free blocks themselves.
 *
 * Crash consistency (invariant 5, docs/design.md). A thread can be killed between
 * any two instructions, and the only moment a batch changes hands is the
 * CAS on a head: before it, the batch is the list's; after it, the
 * thread's, though nothing but a register says so yet. So a record writes
 * what it is about to do in its `pend` journal before the CAS (the node, the
 * generation it expects, the counters before the step), and a reclaimer
 * decides from the journal whether the CAS took effect:
 * - the head still carries the generation after ours and our author: it did;
 * - else our record's receipt for that list says: every thread about to
 *   CAS a head first writes "your CAS at generation g took effect" into the
 *   head's author's record (a max-CAS on its receipts word, receipt_note()), so
 *   the head cannot move past a generation before its author's receipt
 *   holds it. A record sets its own receipt to the generation it reads
 *   before each of its CASes, so that an old receipt never answers for a new
 *   step.
 * Counters are then set (not added) from the journal's "before" values, so
 * that finishing or undoing a step twice is harmless: a reclaimer that dies
 * in the middle of a recovery leaves the next one the same journal.
 *
 * What this costs: one more store or two per batch (the journal, the
 * receipt), none on the fast path. What it assumes: nothing about how long
 * a thread stalls between reading a head and its CAS, since a generation
 * never repeats (64 bits: centuries of moves at any speed a list reaches),
 * so neither ABA nor a stale receipt can come from a wrap. Operations without a record (records full) are not
 * journaled, but they write receipts like every other move of a head:
 * otherwise a record's step that such a move overtook would be judged
 * undone, and its batch would be in two places.
 */
#include <errno.h>

#include "pshm.h"

enum { LIST_CENTRAL = 0, LIST_REGION = 1 };

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
    PSHM_CRASH_POINT();
}

static inline struct pshm_head *list_head(pshm_seg_t *s, uint32_t c, int list)
{
    return list == LIST_REGION ? &s->cls[c].regions : &s->cls[c].central;
}

/* A head's value: the word (author, top node) and the generation. */
typedef struct head {
    uint64_t w, gen;
} head_t;

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "head_pack() puts the word at the lower address");

static inline pa_u128 head_pack(head_t v)
{
    return ((pa_u128)v.gen << 64) | v.w;
}

static inline head_t head_unpack(pa_u128 x)
{
    return (head_t){.w = (uint64_t)x, .gen = (uint64_t)(x >> 64)};
}

/* A first guess at a head, for a CAS to confirm: the generation, then the
 * word. acquire (both): pairs with the CAS that wrote them, so the links of
 * the top node read next are its pusher's. A pair torn by a move between
 * the two loads is never current (generations do not repeat): the CAS
 * expecting it fails and returns the true value. */
static inline head_t head_read(struct pshm_head *h)
{
    head_t v;
    v.gen = pa_load_acquire(&h->gen);
    v.w = pa_load_acquire(&h->w);
    return v;
}

/* Move a head from *old to the next generation with (author, idx) on top.
 * The 16-byte CAS is a full barrier: release for what the caller wrote
 * before it (links, journal, receipts), acquire for what it reads after;
 * each caller says what pairs with it. On failure *old is the current head. */
static inline bool head_cas(struct pshm_head *h, head_t *old, uint32_t author, uint32_t idx)
{
    pa_u128 expected = head_pack(*old);
    head_t next = {.w = PSHM_HEAD_WORD(author, idx), .gen = old->gen + 1};
    if (pa_cas16_acq_rel(h, &expected, head_pack(next)))
        return true;
    *old = head_unpack(expected);
    return false;
}

/* Before a CAS that moves head h on: tell h's author that its CAS took
 * effect. relaxed: the receipt only has to be in place before our CAS on
 * the head, whose release orders it; a reclaimer reads it after acquiring
 * the head (succeeded()). */
static void receipt_note(pshm_seg_t *s, uint32_t c, int list, head_t h, uint32_t me)
{
    uint32_t a = PSHM_HEAD_AUTHOR(h.w);
    if (a == 0 || a == me || a > s->max_threads)
        return;
    pa_u64 *r = &pshm_thread_at(s, a - 1)->cls[c].receipts[list];
    uint64_t cur = pa_load_relaxed(r);
    while (cur < h.gen)
        if (pa_cas_weak_relaxed(r, &cur, h.gen))
            break;
}

/* The journal's step is about to CAS head `old`: record the generation it
 * expects, then refresh our own receipt to it (order matters: a death
 * between the two leaves a receipt older than the journal's generation). */
static inline void journal_tag(struct pshm_tclass *tc, int list, head_t old)
{
    tc->pend.tag = old.gen;
    PSHM_CRASH_POINT();
    pa_store_relaxed(&tc->receipts[list], old.gen); /* relaxed: see receipt_note() */
}

/* Did record `me`'s journaled CAS on list `list` of class c, expecting
 * generation tag (the journal's, read once by the caller), take effect?
 * Valid once the record's thread is dead. The receipt is read from the
 * record itself: live threads write it. */
static bool succeeded(pshm_seg_t *s, uint32_t c, int list, const struct pshm_tclass *tc,
                      uint64_t tag, uint32_t me)
{
    /* The exact pair (a torn one could show our generation with another's
     * author), read by a CAS: a full barrier that pairs with the CAS of
     * whoever moved the head last, so every receipt written before any move
     * up to that one is visible. */
    head_t h = head_unpack(pa_load16_exact(list_head(s, c, list)));
    uint64_t want = tag + 1;
    if (h.gen == want && PSHM_HEAD_AUTHOR(h.w) == me)
        return true;
    if (h.gen == tag)
        return false;                                    /* the head has not moved since */
    return pa_load_relaxed(&tc->receipts[list]) >= want; /* relaxed: after the barrier */
}

/* Push `node` (its chain already linked) on a list as record t. The
 * journal (op and fields) is in place; each try records its generation. */
static void rec_push(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, int list, uint32_t node,
                     head_t old)
{
    struct pshm_tclass *tc = &t->cls[c];
    uint32_t me = pshm_rec_id(s, t);
    struct pshm_head *head = list_head(s, c, list);
    for (;;) {
        set_next_node(s, node, PSHM_HEAD_IDX(old.w));
        receipt_note(s, c, list, old, me);
        journal_tag(tc, list, old);
        /* release: publishes the node's link words (and the chain) and the
         * receipts above to the loads and CAS in rec_pop(); on failure
         * `old` is the current head. */
        if (head_cas(head, &old, me, node))
            return;
    }
}

/* Pop the top node of a list as record t, journaling `op` with it: the
 * node, or PSHM_IDX_NONE when the list is empty (or its head corrupt; then
 * it is treated as empty rather than followed). */
static uint32_t rec_pop(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, int list, uint32_t op)
{
    struct pshm_tclass *tc = &t->cls[c];
    uint32_t me = pshm_rec_id(s, t);
    struct pshm_head *head = list_head(s, c, list);
    /* head_read: acquire, pairs with the CAS in rec_push(), so the node's
     * link word we read next is the one its pusher wrote. */
    head_t old = head_read(head);
    for (;;) {
        uint32_t node = PSHM_HEAD_IDX(old.w);
        if (node == PSHM_IDX_NONE || !pshm_idx_is_block(s, node, c))
            return PSHM_IDX_NONE;
        uint32_t next = peek_next_node(s, node);
        receipt_note(s, c, list, old, me);
        tc->pend.pop.node = node;
        PSHM_CRASH_POINT();
        journal_tag(tc, list, old);
        /* release: the journal is written before the CAS can take effect;
         * pairs with the acquire load in pshm_rec_recover(). */
        pa_store_release(&tc->pend.op, op);
        /* full barrier: acquire pairs with the pusher's CAS, release orders
         * the journal and receipts before the head moves. */
        if (head_cas(head, &old, me, next))
            return node;
    }
}

static inline void journal_done(struct pshm_tclass *tc)
{
    /* release: the step's last writes (counters, cache) come before it. */
    pa_store_release(&tc->pend.op, PSHM_PEND_NONE);
}

/* Copy the chain that starts at node into out[0..cap): how many. The chain
 * is ours (popped), so plain reads; bounded, and every index checked, so
 * that a corrupt chain cannot loop or escape. *dropped counts a bad tail. */
static uint32_t chain_copy(const pshm_seg_t *s, uint32_t c, uint32_t node, uint32_t *out,
                           uint32_t cap, uint64_t *dropped)
{
    uint32_t n = 0;
    uint32_t cur = node;
    while (cur != PSHM_IDX_NONE) {
        if (n == cap || !pshm_idx_is_block(s, cur, c)) {
            (*dropped)++;
            break;
        }
        out[n++] = cur;
        PSHM_CRASH_POINT(); /* out[] is a record's cache in a refill */
        cur = (uint32_t)(*link_word(s, cur) & 0xffffffffu);
    }
    return n;
}

static void count_dropped(pshm_seg_t *s, uint64_t dropped)
{
    if (dropped)
        pa_add_relaxed(&s->hdr->entries_dropped, dropped); /* relaxed: statistic */
}

uint32_t pshm_rec_refill(pshm_seg_t *s, struct pshm_thread *t, uint32_t c)
{
    struct pshm_tclass *tc = &t->cls[c];
    pool_assert(pa_load_relaxed(&tc->count) == 0);
    uint64_t mi = pa_load_relaxed(&tc->moved_in); /* relaxed: single writer, us */
    tc->pend.ctr = mi;
    PSHM_CRASH_POINT();
    uint32_t node = rec_pop(s, t, c, LIST_CENTRAL, PSHM_PEND_POP);
    if (node == PSHM_IDX_NONE) {
        journal_done(tc);
        return 0;
    }
    uint64_t dropped = 0;
    uint32_t n = chain_copy(s, c, node, tc->slots + 1, s->cache_cap[c] - 1, &dropped);
    count_dropped(s, dropped);
    /* relaxed (both): single writer; statistics read them. The count is the
     * step's commit: from here the batch is in the cache. */
    pa_store_relaxed(&tc->count, n);
    pa_store_relaxed(&tc->moved_in, mi + n);
    journal_done(tc);
    return n;
}

/* Push the top m entries of record t's cache of class c to central. With
 * `check` (a reclaimer's flush of a dead record, which a peer may write
 * meanwhile), the count is bounded by the cache and each entry, read once,
 * must be a block of the class: a bad one is dropped, never followed. */
static void flush(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, uint32_t m, bool check)
{
    struct pshm_tclass *tc = &t->cls[c];
    uint32_t n0 = pa_load_relaxed(&tc->count); /* relaxed: single writer, us */
    if (check) {
        n0 = n0 < s->cache_cap[c] ? n0 : s->cache_cap[c];
        m = m < n0 ? m : n0;
        if (m == 0)
            return;
    }
    pool_assert(m >= 1 && m <= n0);
    /* Chain the top m entries (zeros are entries a reclaimer dropped). */
    uint32_t first = PSHM_IDX_NONE, prev = PSHM_IDX_NONE, k = 0;
    uint64_t dropped = 0;
    for (uint32_t i = n0 - m + 1; i <= n0; i++) {
        uint32_t b = ((volatile uint32_t *)tc->slots)[i];
        if (b == PSHM_IDX_NONE)
            continue;
        if (check && !pshm_idx_is_block(s, b, c)) {
            dropped++;
            continue;
        }
        if (prev == PSHM_IDX_NONE)
            first = b;
        else {
            *link_word(s, prev) = b;
            PSHM_CRASH_POINT();
        }
        prev = b;
        k++;
    }
    count_dropped(s, dropped);
    if (k == 0) {
        pa_store_relaxed(&tc->count, n0 - m); /* relaxed: single writer */
        return;
    }
    *link_word(s, prev) = PSHM_IDX_NONE;
    PSHM_CRASH_POINT();
    uint64_t mo = pa_load_relaxed(&tc->moved_out);
    tc->pend.push.node = first;
    PSHM_CRASH_POINT();
    tc->pend.push.slots = m;
    PSHM_CRASH_POINT();
    tc->pend.push.blocks = k;
    PSHM_CRASH_POINT();
    tc->pend.count = n0;
    PSHM_CRASH_POINT();
    tc->pend.ctr = mo;
    PSHM_CRASH_POINT();
    head_t old = head_read(list_head(s, c, LIST_CENTRAL)); /* a first guess, the CAS decides */
    journal_tag(tc, LIST_CENTRAL, old);
    /* release: the journal before the cache shrinks (a death after this
     * store is undone or finished from it). */
    pa_store_release(&tc->pend.op, PSHM_PEND_PUSH);
    pa_store_relaxed(&tc->count, n0 - m); /* relaxed: single writer */
    pa_store_relaxed(&tc->moved_out, mo + k);
    rec_push(s, t, c, LIST_CENTRAL, first, old);
    journal_done(tc);
}

void pshm_rec_flush(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, uint32_t m)
{
    flush(s, t, c, m, false);
}

void pshm_rec_flush_checked(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, uint32_t m)
{
    flush(s, t, c, m, true);
}

/* Set record t's carving range of class c to [a, b). */
static void set_range(struct pshm_tclass *tc, uint32_t a, uint32_t b)
{
    /* relaxed (both): single writer; the journal covers a death between. */
    tc->fresh_end = b;
    PSHM_CRASH_POINT();
    uint64_t w = pa_load_relaxed(&tc->fresh_w);
    pa_store_relaxed(&tc->fresh_w, (w & ~UINT64_C(0xffffffff)) | a);
}

/* [a, e) is a range of whole blocks of class c inside one span, before
 * its owner tail: the check of every range read from a record or a list. */
static bool valid_range(const pshm_seg_t *s, uint32_t c, uint32_t a, uint32_t e)
{
    uint32_t stride = s->block_size[c] >> 3;
    if (e <= a || (e - a) % stride != 0 || !pshm_idx_is_block(s, a, c) ||
        !pshm_idx_is_block(s, e - stride, c))
        return false;
    uint64_t first = (((uint64_t)a << 3) - s->data_off) >> s->span_shift;
    uint64_t last = (((uint64_t)(e - stride) << 3) - s->data_off) >> s->span_shift;
    return first == last;
}

/* The end of region node `node` popped from class c's region stack, or 0
 * when its link word does not describe a region of that span. */
static uint32_t region_end(const pshm_seg_t *s, uint32_t c, uint32_t node)
{
    uint32_t e = (uint32_t)(*link_word(s, node) & 0xffffffffu);
    return valid_range(s, c, node, e) ? e : 0;
}

int pshm_rec_install(pshm_seg_t *s, struct pshm_thread *t, uint32_t c)
{
    return pshm_rec_install_from(s, t, c, true);
}

int pshm_rec_install_from(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, bool fresh)
{
    struct pshm_tclass *tc = &t->cls[c];
    uint32_t a, b;
    for (;;) {
        uint32_t node = rec_pop(s, t, c, LIST_REGION, PSHM_PEND_RPOP);
        if (node == PSHM_IDX_NONE)
            break;
        uint32_t e = region_end(s, c, node);
        if (e == 0) { /* a corrupt region: dropped, never handed out */
            journal_done(tc);
            count_dropped(s, 1);
            continue;
        }
        a = node;
        b = e;
        goto install;
    }
    if (!fresh) {
        journal_done(tc);
        return -ENOMEM;
    }
    int n = pshm_span_claim(s, &tc->pend, pshm_rec_id(s, t));
    if (n >= 0 && pshm_span_commit(s, (uint32_t)n, 1) < 0) {
        /* No memory for the span (a full /dev/shm): it goes back to the
         * pool before the journal closes (the CARVE step names it until
         * then; its reclaimer finds it no longer ours). relaxed: we hold
         * it. */
        pshm_span_release(s, (uint32_t)n, pa_load_relaxed(&s->carvers[n]));
        n = -ENOMEM;
    }
    if (n < 0) {
        journal_done(tc);
        return n;
    }
    pshm_span_publish(s, (uint32_t)n, c, &a, &b);
    pa_inc_single_writer(&tc->central_misses, 1); /* relaxed: statistic, single writer */
install:
    tc->pend.range.start = a;
    PSHM_CRASH_POINT();
    tc->pend.range.end = b;
    PSHM_CRASH_POINT();
    /* release: the range is ours before the record says so. */
    pa_store_release(&tc->pend.op, PSHM_PEND_INSTALL);
    set_range(tc, a, b);
    journal_done(tc);
    return 0;
}

void pshm_rec_return_range(pshm_seg_t *s, struct pshm_thread *t, uint32_t c)
{
    struct pshm_tclass *tc = &t->cls[c];
    uint32_t a = pshm_tclass_fresh_next(tc), b = tc->fresh_end;
    if (a >= b)
        return;
    if (!valid_range(s, c, a, b)) { /* a scribbled record: dropped, never followed */
        count_dropped(s, 1);
        tc->fresh_end = a;
        PSHM_CRASH_POINT();
        return;
    }
    *link_word(s, a) = b;
    PSHM_CRASH_POINT();
    tc->pend.range.start = a;
    PSHM_CRASH_POINT();
    tc->pend.range.end = b;
    PSHM_CRASH_POINT();
    head_t old = head_read(list_head(s, c, LIST_REGION)); /* a first guess */
    journal_tag(tc, LIST_REGION, old);
    pa_store_release(&tc->pend.op, PSHM_PEND_RPUSH); /* release: journal first */
    tc->fresh_end = a;                               /* the range is empty */
    PSHM_CRASH_POINT();
    rec_push(s, t, c, LIST_REGION, a, old);
    journal_done(tc);
}

/* Blocks [a, e) of class c, k of them, all RECL (or FREE, set by us): free
 * them and push them as a region, journaled (PSHM_PEND_RRUN, phase 1). */
static void finish_run(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, uint32_t a, uint32_t e,
                       uint32_t k)
{
    struct pshm_tclass *tc = &t->cls[c];
    uint32_t stride = s->block_size[c] >> 3;
    for (uint32_t b = a; b < e; b += stride)
        /* relaxed: RECL blocks are ours alone; the push below publishes. */
        pa_store_relaxed(pshm_owner_idx(s, c, b), PSHM_OWN_FREE);
    *link_word(s, a) = e;
    PSHM_CRASH_POINT();
    head_t old = head_read(list_head(s, c, LIST_REGION)); /* a first guess */
    journal_tag(tc, LIST_REGION, old);
    tc->pend.count = 1; /* pushing: the op word below orders it */
    PSHM_CRASH_POINT();
    pa_store_release(&tc->pend.op, PSHM_PEND_RRUN); /* release: journal first */
    rec_push(s, t, c, LIST_REGION, a, old);
    pa_store_relaxed(&tc->uncarved, tc->pend.ctr + k); /* relaxed: single writer */
    journal_done(tc);
}

uint32_t pshm_rec_reclaim_run(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, uint64_t span_off,
                              uint32_t i, uint8_t v)
{
    struct pshm_tclass *tc = &t->cls[c];
    pa_u8 *o = pshm_owner(s, c, span_off);
    uint32_t bps = s->blocks_per_span[c];
    uint32_t stride = s->block_size[c] >> 3;
    uint32_t a = (uint32_t)(span_off >> 3) + i * stride;
    tc->pend.run.start = tc->pend.run.end = tc->pend.run.candidate = a;
    PSHM_CRASH_POINT();
    tc->pend.count = 0;
    PSHM_CRASH_POINT();
    tc->pend.ctr = pa_load_relaxed(&tc->uncarved); /* relaxed: single writer */
    PSHM_CRASH_POINT();
    /* release: the journal names the run before any block of it is ours. */
    pa_store_release(&tc->pend.op, PSHM_PEND_RRUN);
    uint32_t j = i;
    while (j < bps) {
        tc->pend.run.candidate = a + (j - i) * stride; /* before its CAS */
        PSHM_CRASH_POINT();
        uint8_t cur = v;
        /* acq_rel: exactly one of this walk and a live free of the block
         * moves it out of the dead slot's hands; RECL, which no free
         * accepts, keeps it ours until it is back in a list. The CAS also
         * orders the journal's candidate before it. */
        if (!pa_cas_strong_acq_rel(&o[j], &cur, PSHM_OWN_RECL))
            break;
        j++;
        tc->pend.run.end = a + (j - i) * stride;
        PSHM_CRASH_POINT();
    }
    uint32_t k = j - i;
    if (k == 0) {
        journal_done(tc);
        return 0;
    }
    finish_run(s, t, c, a, a + k * stride, k);
    return k;
}

bool pshm_rec_to_transit(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, uint32_t idx, uint8_t v)
{
    struct pshm_tclass *tc = &t->cls[c];
    uint64_t h0 = pa_load_relaxed(&tc->handoffs); /* relaxed: single writer */
    /* The journal (release: before the CAS) makes a death between the CAS
     * and the count a HANDOFF step, which pshm_rec_recover() judges by the
     * owner byte. */
    pshm_journal_block(tc, PSHM_PEND_HANDOFF, idx, h0);
    uint8_t cur = v;
    /* acq_rel: exactly one of this move and a live free of the block (or
     * a reclaim's CAS) moves it out of slot v's hands; release orders the
     * owner's writes into the block before a receiver's adopt. */
    bool moved = pa_cas_strong_acq_rel(pshm_owner_idx(s, c, idx), &cur, PSHM_OWN_TRANSIT);
    if (moved)
        pa_store_relaxed(&tc->handoffs, h0 + 1); /* relaxed: single writer */
    journal_done(tc);
    return moved;
}

/* ---- recovery of a dead record ---- */

/* The journal of a dead record, each field read once: a peer that writes
 * the record while we recover it (a corrupt or malicious process can) must
 * not make a value we checked differ from the one we use. */
static uint32_t journal_snapshot(const struct pshm_tclass *tc, struct pshm_pending *j)
{
    /* acquire: pairs with the release stores of op in the steps above, so
     * the journal's fields read next are the step's. */
    uint32_t op = pa_load_acquire(&tc->pend.op);
    const volatile struct pshm_pending *v = (const volatile struct pshm_pending *)&tc->pend;
    j->tag = v->tag;
    for (int i = 0; i < 3; i++)
        j->word[i] = v->word[i];
    j->count = v->count;
    j->ctr = v->ctr;
    return op;
}

/* Recovery, part one: finish or undo the step a dead record's journal
 * names (its effects on the lists judged by receipts), then close the
 * journal. Returns the entries dropped as invalid. */
static uint64_t finish_step(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot, uint32_t c)
{
    struct pshm_tclass *tc = &t->cls[c];
    uint32_t me = pshm_rec_id(s, t);
    uint32_t stride = s->block_size[c] >> 3;
    uint64_t dropped = 0;
    struct pshm_pending j; /* its op is not used: `op` */
    uint32_t op = journal_snapshot(tc, &j);
    switch (op) {
    case PSHM_PEND_NONE: break;
    case PSHM_PEND_POP:
        if (succeeded(s, c, LIST_CENTRAL, tc, j.tag, me)) {
            uint32_t n = pa_load_relaxed(&tc->count);
            if (n == 0 && pshm_idx_is_block(s, j.pop.node, c)) {
                n = chain_copy(s, c, j.pop.node, tc->slots + 1, s->cache_cap[c] - 1, &dropped);
                pa_store_relaxed(&tc->count, n);
            } else if (n > s->cache_cap[c]) {
                n = 0; /* scribbled: the cache check below drops it */
            }
            pa_store_relaxed(&tc->moved_in, j.ctr + n);
        } else {
            pa_store_relaxed(&tc->moved_in, j.ctr);
        }
        break;
    case PSHM_PEND_PUSH:
        if (j.count > s->cache_cap[c] || j.push.slots > j.count) {
            dropped++;
        } else if (succeeded(s, c, LIST_CENTRAL, tc, j.tag, me)) {
            pa_store_relaxed(&tc->count, j.count - j.push.slots);
            pa_store_relaxed(&tc->moved_out, j.ctr + j.push.blocks);
        } else {
            pa_store_relaxed(&tc->count, j.count);
            pa_store_relaxed(&tc->moved_out, j.ctr);
        }
        break;
    case PSHM_PEND_RPOP:
        if (succeeded(s, c, LIST_REGION, tc, j.tag, me) && pshm_idx_is_block(s, j.pop.node, c)) {
            uint32_t e = region_end(s, c, j.pop.node);
            if (e)
                set_range(tc, j.pop.node, e);
            else
                dropped++;
        }
        break;
    case PSHM_PEND_RPUSH:
        if (!succeeded(s, c, LIST_REGION, tc, j.tag, me)) {
            if (valid_range(s, c, j.range.start, j.range.end))
                set_range(tc, j.range.start, j.range.end);
            else
                dropped++;
        }
        break;
    case PSHM_PEND_CARVE:
        if (j.range.span < s->nspans &&
            PSHM_CLAIM_MARK(pa_load_relaxed(&s->carvers[j.range.span])) == me) {
            /* The dead claimer may have died before its commit: commit
             * (again: harmless), or give the span back. */
            uint32_t a, b;
            if (pshm_span_commit(s, j.range.span, 1) < 0) {
                /* relaxed: the dead record's claim, ours to finish now. */
                pshm_span_release(s, j.range.span, pa_load_relaxed(&s->carvers[j.range.span]));
                break;
            }
            pshm_span_publish(s, j.range.span, c, &a, &b);
            set_range(tc, a, b);
        }
        break;
    case PSHM_PEND_INSTALL:
        if (valid_range(s, c, j.range.start, j.range.end))
            set_range(tc, j.range.start, j.range.end);
        else
            dropped++;
        break;
    case PSHM_PEND_RRUN: {
        uint32_t a = j.run.start, e = j.run.end;
        if (!pshm_idx_is_block(s, a, c) || (e != a && !valid_range(s, c, a, e))) {
            dropped++;
            break;
        }
        if (j.count == 0) {
            /* Taking: the candidate is ours too if its CAS took effect
             * (every RECL byte is the one reclaimer's: pshm_slots.c). */
            if (j.run.candidate == e && valid_range(s, c, a, e + stride) &&
                pa_load_relaxed(pshm_owner_idx(s, c, e)) == PSHM_OWN_RECL) /* relaxed: ours */
                e += stride;
            if (e > a)
                finish_run(s, t, c, a, e, (e - a) / stride);
        } else if (succeeded(s, c, LIST_REGION, tc, j.tag, me)) {
            pa_store_relaxed(&tc->uncarved, j.ctr + (e - a) / stride);
        } else {
            finish_run(s, t, c, a, e, (e - a) / stride);
        }
        break;
    }
    case PSHM_PEND_SRELEASE:
        /* Decided when journaled: every block of the span was ours, SWEPT,
         * which no free accepts; finish it. */
        if (j.range.span < s->nspans) {
            if (pa_load_relaxed(&s->carvers[j.range.span]) == j.tag) /* relaxed: ours */
                pshm_span_release(s, j.range.span, j.tag);
            pa_store_relaxed(&tc->uncarved, j.ctr + s->blocks_per_span[c]);
        } else {
            dropped++;
        }
        break;
    case PSHM_PEND_HANDOFF:
    case PSHM_PEND_ADOPT: {
        bool blk = pshm_idx_is_block(s, j.block.idx, c);
        uint8_t v = blk ? pa_load_relaxed(pshm_owner_idx(s, c, j.block.idx)) : 0;
        bool done = op == PSHM_PEND_HANDOFF ? v == PSHM_OWN_TRANSIT : v == pshm_own_val(slot);
        pa_store_relaxed(op == PSHM_PEND_HANDOFF ? &tc->handoffs : &tc->adopts,
                         j.ctr + (done ? 1 : 0));
        break;
    }
    case PSHM_PEND_CHANDOFF: {
        /* Our own block, whose message is in a ring: done once its byte is
         * no longer ours (in transit, or adopted by its receiver). */
        bool blk = pshm_idx_is_block(s, j.block.idx, c);
        uint8_t v = blk ? pa_load_relaxed(pshm_owner_idx(s, c, j.block.idx)) : 0;
        pa_store_relaxed(&tc->handoffs, j.ctr + (blk && v != pshm_own_val(slot) ? 1 : 0));
        break;
    }
    case PSHM_PEND_CHANPUT:
    case PSHM_PEND_CHANBACK: {
        /* A reclaimer's move between a channel and a slot's hands: done
         * once the byte is no longer the one it moved from. */
        bool blk = pshm_idx_is_block(s, j.block.idx, c);
        uint8_t v = blk ? pa_load_relaxed(pshm_owner_idx(s, c, j.block.idx)) : 0;
        uint8_t from = op == PSHM_PEND_CHANPUT ? (uint8_t)j.count : PSHM_OWN_CHAN;
        pa_store_relaxed(op == PSHM_PEND_CHANPUT ? &tc->handoffs : &tc->adopts,
                         j.ctr + (blk && v != from ? 1 : 0));
        break;
    }
    default: dropped++; break;
    }
    journal_done(tc);
    return dropped;
}

/* Recovery, part two: the cache and the carving range of a dead record
 * whose journal is closed. Returns the entries dropped as invalid. */
static uint64_t clean_cache(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot, uint32_t c)
{
    struct pshm_tclass *tc = &t->cls[c];
    uint64_t dropped = 0;
    /* The cache: a block that a torn malloc or free left both in the cache
     * and owned by this slot is cached (the owner byte is written before the
     * cache word that takes a block out, cleared after the one that puts it
     * in). Anything else that is not a free block of this class is dropped
     * in place (a zero entry), never pushed. Each word is read once. */
    uint32_t n = pa_load_relaxed(&tc->count);
    if (n >= s->cache_cap[c] + 1) {
        dropped += n;
        n = 0;
        pa_store_relaxed(&tc->count, 0);
    }
    uint64_t h = pa_load_relaxed(&tc->hot);
    if (pshm_hot_cached(h)) {
        uint32_t hi = pshm_hot_idx(h);
        if (n >= 1 && tc->slots[n] == hi) /* a torn push-down: it is in slots[] */
            h = 0;
        else if (hi == PSHM_IDX_NONE)
            h = 0, dropped++;
        pa_store_relaxed(&tc->hot, h);
    } else if (h != 0) {
        pa_store_relaxed(&tc->hot, 0); /* a taken note: that block is owned */
    }
    uint8_t mine = pshm_own_val(slot);
    for (uint32_t i = 0; i <= n; i++) {
        uint32_t b = i == 0 ? pshm_hot_idx(h) : ((volatile uint32_t *)tc->slots)[i];
        if (b == PSHM_IDX_NONE)
            continue;
        bool ok = pshm_idx_is_block(s, b, c);
        if (ok) {
            pa_u8 *o = pshm_owner_idx(s, c, b);
            uint8_t v = pa_load_relaxed(o); /* relaxed: the CAS decides */
            /* acq_rel: against a live process's cross-free of the same
             * block (it cannot have one: the block was never handed out). */
            ok = v == PSHM_OWN_FREE || ((v == mine || v == PSHM_OWN_SWEPT) &&
                                        pa_cas_strong_acq_rel(o, &v, PSHM_OWN_FREE));
        }
        if (!ok) {
            dropped++;
            if (i == 0)
                pa_store_relaxed(&tc->hot, 0);
            else {
                tc->slots[i] = PSHM_IDX_NONE;
                PSHM_CRASH_POINT();
            }
        }
    }
    /* The range: a torn carving left its first block owned; a range that
     * is not whole blocks of one span is dropped (emptied). */
    uint32_t a = pshm_tclass_fresh_next(tc), e = tc->fresh_end;
    if (a < e) {
        if (valid_range(s, c, a, e)) {
            pa_u8 *o = pshm_owner_idx(s, c, a);
            uint8_t v = mine;
            /* acq_rel: as above; a sweeper carves with SWEPT. */
            if (!pa_cas_strong_acq_rel(o, &v, PSHM_OWN_FREE) && v == PSHM_OWN_SWEPT)
                pa_cas_strong_acq_rel(o, &v, PSHM_OWN_FREE);
        } else {
            dropped++;
            tc->fresh_end = a;
            PSHM_CRASH_POINT();
        }
    }
    return dropped;
}

uint64_t pshm_rec_recover(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot, uint32_t c)
{
    uint64_t dropped = finish_step(s, t, slot, c);
    return dropped + clean_cache(s, t, slot, c);
}

/* ---- without a record ---- */

/* Moves without a record still write the receipt of the head they move
 * on (receipt_note() with no author of their own): a record's journaled
 * step is judged by its receipt once another thread moved the head past
 * it, whoever that thread is. */
static void raw_push(pshm_seg_t *s, uint32_t c, int list, uint32_t node)
{
    struct pshm_head *head = list_head(s, c, list);
    head_t old = head_read(head); /* a starting guess; the CAS decides */
    for (;;) {
        set_next_node(s, node, PSHM_HEAD_IDX(old.w));
        receipt_note(s, c, list, old, 0);
        /* release: publishes the chain (and the receipt) to the loads and
         * CAS of raw_pop/rec_pop and to succeeded(). */
        if (head_cas(head, &old, 0, node))
            return;
    }
}

static uint32_t raw_pop(pshm_seg_t *s, uint32_t c, int list)
{
    struct pshm_head *head = list_head(s, c, list);
    head_t old = head_read(head); /* acquire: pairs with the pusher's CAS */
    for (;;) {
        uint32_t node = PSHM_HEAD_IDX(old.w);
        if (node == PSHM_IDX_NONE || !pshm_idx_is_block(s, node, c))
            return PSHM_IDX_NONE;
        uint32_t next = peek_next_node(s, node);
        receipt_note(s, c, list, old, 0);
        /* full barrier: as in rec_pop(); release orders the receipt before
         * the head moves. */
        if (head_cas(head, &old, 0, next))
            return node;
    }
}

void pshm_central_push_raw(pshm_seg_t *s, uint32_t c, const uint32_t *idx, uint32_t n)
{
    pool_assert(n >= 1 && n <= s->batch[c]);
    for (uint32_t i = 0; i < n; i++) {
        *link_word(s, idx[i]) = (uint64_t)(i + 1 < n ? idx[i + 1] : PSHM_IDX_NONE);
        PSHM_CRASH_POINT();
    }
    raw_push(s, c, LIST_CENTRAL, idx[0]);
    pa_add_relaxed(&s->cls[c].uncached_pushed, n); /* relaxed: statistic */
}

uint32_t pshm_central_pop_raw(pshm_seg_t *s, uint32_t c, uint32_t *out, uint32_t cap)
{
    uint32_t node = raw_pop(s, c, LIST_CENTRAL);
    uint64_t dropped = 0;
    uint32_t n = node ? chain_copy(s, c, node, out, cap, &dropped) : 0;
    count_dropped(s, dropped);
    if (n)
        pa_add_relaxed(&s->cls[c].uncached_popped, n); /* relaxed: statistic */
    return n;
}

void pshm_region_push_raw(pshm_seg_t *s, uint32_t c, uint32_t start, uint32_t end)
{
    pool_assert(start < end);
    *link_word(s, start) = (uint64_t)end;
    PSHM_CRASH_POINT();
    raw_push(s, c, LIST_REGION, start);
}

bool pshm_region_pop_raw(pshm_seg_t *s, uint32_t c, uint32_t *start, uint32_t *end)
{
    uint32_t node = raw_pop(s, c, LIST_REGION);
    if (node == PSHM_IDX_NONE)
        return false;
    uint32_t e = region_end(s, c, node);
    if (e == 0) {
        count_dropped(s, 1);
        return false;
    }
    *start = node;
    *end = e;
    return true;
}
