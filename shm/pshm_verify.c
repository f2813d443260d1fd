/* SPDX-License-Identifier: MIT */
/*
 * pshm_verify.c: a bounded check for corruption that is valid while
 * workers run (poold at adoption and on a timer); pshm_check() is the
 * exact one, valid only at rest.
 *
 * It never trusts what it reads: every index is checked before it is
 * followed, every walk is bounded, and what it finds is reported, never
 * repaired. It reads only; what it reads may change under it, so each
 * finding is either one a race cannot produce, or one seen twice in a row:
 * - The central and region stacks: a Treiber stack changes only through
 *   its head, so a walk that reads the same head word (generation
 *   included) before and after saw a stable list. Such a walk checks that
 *   every node and chain entry is a block of the class (index in range),
 *   free by its owner byte, and seen once (a cycle, or a block twice on
 *   the lists). A walk whose head moved is dropped (counted as raced).
 * - Caches of records: a block both on a stable central list and in a
 *   record's cache (slots[1..count] or hot) is on two lists: refills and
 *   flushes move the head.
 * - Records (a window of them per call): the owner field names a slot or
 *   none, count is within the cache, the journal's op is known, the
 *   carving range is inside one span of the class, cache entries are
 *   blocks of the class.
 * - Owner bytes (a window of spans per call): each is free, a slot number,
 *   in transit or reclaimed; one naming a free slot is reported only when
 *   the next call reads it again the same (a detach races the read); so is
 *   a record's carving range that leaves its span (set in two stores).
 * The caller owns the state (struct pshm_verify): a bitmap of one bit per
 * 8-byte index of the data area, and the cursors of the windows.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pshm.h"

int pshm_verify_init(pshm_verify_t *v, const pshm_seg_t *s, uint64_t budget)
{
    memset(v, 0, sizeof(*v));
    v->map_bytes = (s->data_bytes >> 3) / 8 + 1;
    v->map = calloc(1, v->map_bytes);
    if (!v->map)
        return -ENOMEM;
    v->budget = budget ? budget : 1;
    v->dirty_lo = UINT64_MAX;
    return 0;
}

void pshm_verify_free(pshm_verify_t *v)
{
    free(v->map);
    v->map = NULL;
}

static void found(pshm_corruption_t *out, uint32_t kind, uint32_t c, uint64_t where,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void found(pshm_corruption_t *out, uint32_t kind, uint32_t c, uint64_t where,
                  const char *fmt, ...)
{
    if (out->kind != PSHM_CORRUPT_NONE)
        return; /* the first finding is the one reported */
    out->kind = kind;
    out->cls = c;
    out->where = where;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->what, sizeof(out->what), fmt, ap);
    va_end(ap);
}

/* Bit of data index idx (a block checked with pshm_idx_is_block first). */
static inline bool test_and_set(pshm_verify_t *v, const pshm_seg_t *s, uint32_t idx)
{
    uint64_t bit = (((uint64_t)idx << 3) - s->data_off) >> 3;
    uint8_t m = (uint8_t)(1u << (bit & 7));
    bool was = (v->map[bit >> 3] & m) != 0;
    v->map[bit >> 3] |= m;
    if ((bit >> 3) < v->dirty_lo)
        v->dirty_lo = bit >> 3;
    if ((bit >> 3) >= v->dirty_hi)
        v->dirty_hi = (bit >> 3) + 1;
    return was;
}

/* Read a word of a block that may be in use by a live process: only a
 * stable head (checked after) makes the value meaningful. Hidden from TSan
 * as peek_next_node() in pshm_central.c is. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
__attribute__((no_sanitize("thread")))
#endif
static uint64_t
peek_word(const pshm_seg_t *s, uint32_t idx)
{
    return *(const volatile uint64_t *)pshm_ptr(s, idx);
}

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
__attribute__((no_sanitize("thread")))
#endif
static uint32_t
peek_u32(const uint32_t *p)
{
    return *(const volatile uint32_t *)p;
}

/* Walk class c's central (batch) stack, at most budget entries, marking
 * what it sees in the bitmap. True when the head did not move (the walk
 * is meaningful, findings reported); *walked the entries marked. */
static bool walk_central(const pshm_seg_t *s, pshm_verify_t *v, uint32_t c, uint64_t *head,
                         uint64_t *walked, pshm_corruption_t *out)
{
    pshm_corruption_t f = {0};
    /* acquire (both): pair with the CAS of the last push, so the links
     * below are the pusher's (if the generation is still this one after:
     * every move of the head increments it). */
    uint64_t h = pa_load_acquire(&s->cls[c].central.gen);
    uint32_t node = PSHM_HEAD_IDX(pa_load_acquire(&s->cls[c].central.w));
    uint64_t n = 0, limit = v->budget;
    while (node != PSHM_IDX_NONE && n < limit && f.kind == PSHM_CORRUPT_NONE) {
        if (!pshm_idx_is_block(s, node, c)) {
            found(&f, PSHM_CORRUPT_INDEX, c, node,
                  "class %u (%u B): central list node %u is not a block of the class", c,
                  s->block_size[c], node);
            break;
        }
        uint64_t w = peek_word(s, node);
        uint32_t cur = node;
        for (uint32_t k = 0; cur != PSHM_IDX_NONE && n < limit; k++) {
            if (!pshm_idx_is_block(s, cur, c)) {
                found(&f, PSHM_CORRUPT_INDEX, c, cur,
                      "class %u (%u B): central chain of node %u holds index %u, not a block "
                      "of the class",
                      c, s->block_size[c], node, cur);
                break;
            }
            if (test_and_set(v, s, cur)) {
                found(&f, PSHM_CORRUPT_TWICE, c, cur,
                      "class %u (%u B): block %u (offset %llu) is twice on the central list "
                      "(a cycle, or on two batches)",
                      c, s->block_size[c], cur, (unsigned long long)cur << 3);
                break;
            }
            /* relaxed: compared only if the head is stable after. */
            uint8_t o = pa_load_relaxed(pshm_owner_idx(s, c, cur));
            if (o != PSHM_OWN_FREE) {
                found(&f, PSHM_CORRUPT_OWNER, c, cur,
                      "class %u (%u B): block %u (offset %llu) is on the central list but its "
                      "owner byte is %u, not free",
                      c, s->block_size[c], cur, (unsigned long long)cur << 3, o);
                break;
            }
            n++;
            if (k + 1 > s->cache_cap[c] && cur != node) {
                found(&f, PSHM_CORRUPT_CYCLE, c, node,
                      "class %u (%u B): central chain of node %u is longer than a batch", c,
                      s->block_size[c], node);
                break;
            }
            cur = (uint32_t)(peek_word(s, cur) & 0xffffffffu);
        }
        node = (uint32_t)(w >> 32);
    }
    /* acquire: as above; the same generation means no push or pop in between. */
    bool stable = pa_load_acquire(&s->cls[c].central.gen) == h;
    if (stable && f.kind != PSHM_CORRUPT_NONE)
        found(out, f.kind, f.cls, f.where, "%s", f.what);
    *head = h;
    *walked = n;
    return stable;
}

/* The region stack: nodes are blocks of the class, regions inside one
 * span. Each region holds at least one block and regions never share one,
 * so a node seen twice in one walk is a cycle; the walk marks the nodes in
 * the bitmap (cleared by the caller) and is bounded by the budget only: a
 * class may hold as many regions as it has blocks (a reclaim gives every
 * run of a dead process's blocks back as one). */
static void walk_regions(const pshm_seg_t *s, pshm_verify_t *v, uint32_t c, pshm_corruption_t *out)
{
    pshm_corruption_t f = {0};
    uint64_t h = pa_load_acquire(&s->cls[c].regions.gen); /* acquire: as in walk_central() */
    uint32_t node = PSHM_HEAD_IDX(pa_load_acquire(&s->cls[c].regions.w));
    uint32_t stride = s->block_size[c] >> 3;
    for (uint64_t n = 0; node != PSHM_IDX_NONE && n < v->budget && f.kind == PSHM_CORRUPT_NONE;
         n++) {
        if (!pshm_idx_is_block(s, node, c)) {
            found(&f, PSHM_CORRUPT_INDEX, c, node,
                  "class %u (%u B): region stack node %u is not a block of the class", c,
                  s->block_size[c], node);
            break;
        }
        if (test_and_set(v, s, node)) {
            found(&f, PSHM_CORRUPT_CYCLE, c, node,
                  "class %u (%u B): region stack node %u (offset %llu) is on the stack twice "
                  "(a cycle)",
                  c, s->block_size[c], node, (unsigned long long)node << 3);
            break;
        }
        uint64_t w = peek_word(s, node);
        uint32_t e = (uint32_t)w;
        uint64_t span_of_node = (((uint64_t)node << 3) - s->data_off) >> s->span_shift;
        uint64_t span_of_end = ((((uint64_t)e << 3) - 8) - s->data_off) >> s->span_shift;
        if (e <= node || (e - node) % stride || span_of_end != span_of_node) {
            found(&f, PSHM_CORRUPT_INDEX, c, node, "class %u (%u B): region at %u has a bad end %u",
                  c, s->block_size[c], node, e);
            break;
        }
        node = (uint32_t)(w >> 32);
    }
    if (pa_load_acquire(&s->cls[c].regions.gen) == h && f.kind != PSHM_CORRUPT_NONE) /* acquire */
        found(out, f.kind, f.cls, f.where, "%s", f.what);
}

/* [a, e) is a range of blocks of class c inside one span. */
static bool in_one_span(const pshm_seg_t *s, uint32_t a, uint32_t e, uint32_t c)
{
    if (a >= e || !pshm_idx_is_block(s, a, c))
        return false;
    uint64_t sa = (((uint64_t)a << 3) - s->data_off) >> s->span_shift;
    uint64_t se = ((((uint64_t)e << 3) - 8) - s->data_off) >> s->span_shift;
    return sa == se;
}

/* The range of tc that ends at e is the one its open journal step is
 * installing (set_range() in pshm_central.c stores the end first): the
 * owner's INSTALL of [a, b); or a reclaimer's recovery of a dead owner's
 * region pop (RPOP: the region at a, its end in a's link word) or span
 * claim (CARVE: span n's blocks). A reclaimer can die there too, and the
 * slot then waits, RECLAIMING, for the next one to finish the step. */
static bool range_in_journal(const pshm_seg_t *s, const struct pshm_tclass *tc, uint32_t e,
                             uint32_t c)
{
    uint32_t op = pa_load_relaxed(&tc->pend.op); /* relaxed: a snapshot */
    uint32_t a = peek_u32(&tc->pend.word[0]);    /* range.start, or RPOP's pop.node */
    switch (op) {
    case PSHM_PEND_INSTALL: return e == peek_u32(&tc->pend.range.end) && in_one_span(s, a, e, c);
    case PSHM_PEND_RPOP: return in_one_span(s, a, e, c) && (uint32_t)peek_word(s, a) == e;
    case PSHM_PEND_CARVE: { /* the span (pshm_span_claim()) */
        uint32_t n = peek_u32(&tc->pend.range.span);
        if (n >= s->nspans)
            return false;
        uint64_t first = s->data_off + ((uint64_t)n << s->span_shift);
        return e == (uint32_t)((first + (uint64_t)s->blocks_per_span[c] * s->block_size[c]) >> 3);
    }
    default: return false;
    }
}

/* Record i, class c: its own fields; and, when `central_stable`, whether
 * its cached blocks are also on the central list (bitmap). */
static void check_record(const pshm_seg_t *s, pshm_verify_t *v, uint32_t i, uint32_t c,
                         bool central_stable, pshm_corruption_t *out)
{
    const struct pshm_thread *t = pshm_thread_at(s, i);
    uint32_t owner = pa_load_relaxed(&t->owner); /* relaxed: a snapshot */
    if (owner > s->max_procs) {
        found(out, PSHM_CORRUPT_RECORD, c, i, "thread record %u names process slot %u of %u", i,
              owner, s->max_procs);
        return;
    }
    if (owner == PSHM_NO_OWNER)
        return;
    const struct pshm_tclass *tc = &t->cls[c];
    /* relaxed (all): single-writer fields read as a snapshot. */
    uint32_t n = pa_load_relaxed(&tc->count);
    uint32_t op = pa_load_relaxed(&tc->pend.op);
    if (n > s->cache_cap[c]) {
        found(out, PSHM_CORRUPT_RECORD, c, i,
              "thread record %u, class %u (%u B): cache count %u over its capacity %u", i, c,
              s->block_size[c], n, s->cache_cap[c]);
        return;
    }
    if (op > PSHM_PEND_LAST) {
        found(out, PSHM_CORRUPT_RECORD, c, i,
              "thread record %u, class %u (%u B): unknown journal step %u", i, c, s->block_size[c],
              op);
        return;
    }
    uint32_t a = pshm_tclass_fresh_next(tc), e = peek_u32(&tc->fresh_end); /* a snapshot */
    if (a < e) {
        if (!in_one_span(s, a, e, c)) {
            /* A new range's end is stored a moment before its start, in
             * a step whose journal names the range: a thread stopped (or
             * killed) there shows this for as long as it likes. Otherwise
             * a suspect, until the next call reads it the same. */
            if (range_in_journal(s, tc, e, c))
                return;
            uint32_t key = i * PSHM_MAX_CLASSES + c + 1;
            if (v->rec_suspect != key) {
                v->rec_suspect_next = key;
                return;
            }
            found(out, PSHM_CORRUPT_RECORD, c, i,
                  "thread record %u, class %u (%u B): carving range [%u, %u) is not inside "
                  "one span of the class",
                  i, c, s->block_size[c], a, e);
            return;
        }
    }
    uint64_t h = pa_load_relaxed(&tc->hot);
    for (uint32_t k = 0; k <= n; k++) {
        uint32_t b = k == 0 ? (pshm_hot_cached(h) ? pshm_hot_idx(h) : PSHM_IDX_NONE)
                            : peek_u32(&tc->slots[k]);
        if (b == PSHM_IDX_NONE)
            continue;
        if (!pshm_idx_is_block(s, b, c)) {
            found(out, PSHM_CORRUPT_INDEX, c, b,
                  "thread record %u, class %u (%u B): cache entry %u holds index %u, not a "
                  "block of the class",
                  i, c, s->block_size[c], k, b);
            return;
        }
        uint64_t bit = (((uint64_t)b << 3) - s->data_off) >> 3;
        if (central_stable && (v->map[bit >> 3] & (1u << (bit & 7)))) {
            found(out, PSHM_CORRUPT_TWICE, c, b,
                  "class %u (%u B): block %u (offset %llu) is both on the central list and in "
                  "thread record %u's cache",
                  c, s->block_size[c], b, (unsigned long long)b << 3, i);
            return;
        }
    }
}

/* Owner bytes of span n: values in range; one naming a free slot is a
 * suspect (confirmed by the next call). */
static void check_owners(const pshm_seg_t *s, pshm_verify_t *v, uint32_t n, pshm_corruption_t *out)
{
    uint32_t c = pa_load_acquire(&s->spanmap[n]); /* acquire: as in pshm_block_class() */
    if (c == PSHM_SPAN_FREE || c == PSHM_SPAN_LCONT)
        return;
    if (c == PSHM_SPAN_LARGE) {
        /* A large block's one owner byte (FREE: a free in flight). */
        uint8_t b = pa_load_relaxed(pshm_large_owner(s, n)); /* relaxed: a snapshot */
        if (b > s->max_procs && !PSHM_OWN_IN_TRANSIT(b) && b != PSHM_OWN_RECL)
            found(out, PSHM_CORRUPT_OWNER, 0, n,
                  "large block at span %u has owner byte %u: no such slot", n, b);
        return;
    }
    if (c >= s->nclasses) {
        found(out, PSHM_CORRUPT_INDEX, 0, n, "span %u has class %u of %u in the span map", n, c,
              s->nclasses);
        return;
    }
    uint64_t span_off = s->data_off + ((uint64_t)n << s->span_shift);
    const pa_u8 *o = pshm_owner(s, c, span_off);
    for (uint32_t i = 0; i < s->blocks_per_span[c]; i++) {
        uint8_t b = pa_load_relaxed(&o[i]); /* relaxed: a snapshot */
        if (b == PSHM_OWN_FREE || PSHM_OWN_IN_TRANSIT(b) || b == PSHM_OWN_RECL ||
            b == PSHM_OWN_SWEPT)
            continue;
        uint32_t idx = (uint32_t)((span_off + (uint64_t)i * s->block_size[c]) >> 3);
        if (b > s->max_procs) {
            found(out, PSHM_CORRUPT_OWNER, c, idx,
                  "class %u (%u B): block %u (offset %llu) has owner byte %u: no such slot", c,
                  s->block_size[c], idx, (unsigned long long)idx << 3, b);
            return;
        }
        /* acquire: pairs with the release stores of the slot's state. */
        uint32_t st = pa_load_acquire(&s->procs[b - 1].state);
        if (st != PSHM_PROC_FREE)
            continue;
        if (v->suspect != idx + 1 && v->suspect_next == 0)
            v->suspect_next = idx + 1; /* recheck() reads it again next call */
    }
}

/* The suspects of the last call, read again: a finding only if they
 * still look the same (the windows have moved on since). */
static void recheck(const pshm_seg_t *s, pshm_verify_t *v, pshm_corruption_t *out)
{
    if (v->rec_suspect) {
        uint32_t k = v->rec_suspect - 1;
        check_record(s, v, k / PSHM_MAX_CLASSES, k % PSHM_MAX_CLASSES, false, out);
    }
    uint32_t idx = v->suspect ? v->suspect - 1 : 0;
    int c = idx ? pshm_block_at(s, (uint64_t)idx << 3) : -1;
    if (c >= 0) {
        uint8_t b = pa_load_relaxed(pshm_owner_idx(s, (uint32_t)c, idx)); /* relaxed: snapshot */
        /* acquire: pairs with the release stores of the slot's state. */
        if (b >= 1 && b <= s->max_procs &&
            pa_load_acquire(&s->procs[b - 1].state) == PSHM_PROC_FREE)
            found(out, PSHM_CORRUPT_OWNER, (uint32_t)c, idx,
                  "class %d (%u B): block %u (offset %llu) is owned by process slot %u, which "
                  "is free",
                  c, s->block_size[c], idx, (unsigned long long)idx << 3, b - 1);
    }
}

/* Clear only what the walks marked. */
static void clear_marks(pshm_verify_t *v)
{
    if (v->dirty_hi > v->dirty_lo)
        memset(v->map + v->dirty_lo, 0, v->dirty_hi - v->dirty_lo);
    v->dirty_lo = UINT64_MAX;
    v->dirty_hi = 0;
}

int pshm_verify(const pshm_seg_t *s, pshm_verify_t *v, bool full, pshm_corruption_t *out)
{
    memset(out, 0, sizeof(*out));
    v->suspect_next = 0;
    v->rec_suspect_next = 0;
    recheck(s, v, out);
    v->rec_suspect = 0;
    for (uint32_t c = 0; c < s->nclasses && out->kind == PSHM_CORRUPT_NONE; c++) {
        uint64_t head, walked;
        bool stable = walk_central(s, v, c, &head, &walked, out);
        if (!stable)
            v->raced++;
        /* Records: all of them (full), or a window. */
        uint32_t nrec = full ? s->max_threads : (v->rec_window ? v->rec_window : 16);
        for (uint32_t k = 0; k < nrec && k < s->max_threads; k++) {
            uint32_t i = full ? k : (v->rec_cursor + k) % s->max_threads;
            check_record(s, v, i, c, false, out);
        }
        /* A block on central and in a cache: only a stable central list
         * says so, checked again after the caches were read. */
        if (stable && walked) {
            pshm_corruption_t twice = {0};
            for (uint32_t i = 0; i < s->max_threads; i++)
                check_record(s, v, i, c, true, &twice);
            if (twice.kind == PSHM_CORRUPT_TWICE &&
                pa_load_acquire(&s->cls[c].central.gen) == head) /* acquire: as above */
                found(out, twice.kind, twice.cls, twice.where, "%s", twice.what);
        }
        clear_marks(v);
        /* Its own marks: a region node is never on the batch stack, but
         * the two walks are not one snapshot. */
        walk_regions(s, v, c, out);
        clear_marks(v);
    }
    if (!full)
        v->rec_cursor = (v->rec_cursor + (v->rec_window ? v->rec_window : 16)) % s->max_threads;
    /* Owner bytes: every span (full), or a window. */
    uint32_t nsp = full ? s->nspans : (v->span_window ? v->span_window : 16);
    for (uint32_t k = 0; k < nsp && k < s->nspans && out->kind == PSHM_CORRUPT_NONE; k++)
        check_owners(s, v, full ? k : (v->span_cursor + k) % s->nspans, out);
    if (!full && s->nspans)
        v->span_cursor = (v->span_cursor + nsp) % s->nspans;
    v->suspect = v->suspect_next;
    v->rec_suspect = v->rec_suspect_next;
    v->checks++;
    return out->kind == PSHM_CORRUPT_NONE ? 0 : 1;
}
