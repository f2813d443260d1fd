/* SPDX-License-Identifier: MIT */
/*
 * fuzz_stats: statistics aggregation over arbitrary counters.
 *
 * The segment is real (fuzz_seg.h); each input overwrites counters and
 * cache words where attached processes write them: every thread record,
 * the class table's counters and list heads, the header's counters and the
 * process slots (never the constants pshm_view() checked: poold reads
 * those once, at adoption). Then pshm_stats() and pshm_proc_stats() run,
 * as poold runs them for every STATS. Nothing may crash (UBSan included),
 * loop or read outside the mapping, and every figure must equal the sum
 * this harness recomputes itself from the raw counters of the records, the
 * class table and the slots (a figure that drops a record, a slot or a
 * counter, or mixes classes, fails); pshm_proc_stats() reports every live
 * worker slot, describes the right ones, and writes no row past the ones
 * asked for (canaries around both outputs).
 *
 * Input: patches [u8 region][u16 off][u8 len][bytes]; region 0: thread
 * records, 1: the class table (from each class's first mutable line), 2:
 * the header's mutable part, 3: the process slots.
 */
#include "fuzz_seg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CANARY 0x5aa5c33cf00fbaadULL

static void fz_fail(const char *what, uint32_t c, unsigned long long got, unsigned long long want)
{
    fprintf(stderr, "fuzz_stats: %s (class %u): got %llu, recomputed %llu\n", what, c, got, want);
    abort();
}

/* The class figures recomputed from the raw counters: every record's
 * (owned or not) and the class's counters of work done without a record. A
 * cached count beyond the cache's capacity (+1) is not believed. */
static void check_class(const pshm_seg_t *s, uint32_t c, const pshm_class_stats_t *o)
{
    const struct pshm_class *k = &s->cls[c];
    uint64_t allocs = 0, frees = 0, fresh = 0, uncarved = 0, moved_in = 0, moved_out = 0;
    uint64_t handoffs = 0, adopts = 0, cached = 0, cache_misses = 0, central_misses = 0,
             exhausted = 0;
    for (uint32_t i = 0; i < s->max_threads; i++) {
        const struct pshm_tclass *tc = &pshm_thread_at(s, i)->cls[c];
        /* relaxed (all): single-threaded. */
        uint32_t n = pshm_tclass_cached(tc);
        cached += n <= s->cache_cap[c] + 1 ? n : 0;
        allocs += pshm_tclass_allocs(tc);
        fresh += pshm_tclass_fresh(tc);
        frees += pa_load_relaxed(&tc->frees);
        uncarved += pa_load_relaxed(&tc->uncarved);
        moved_in += pa_load_relaxed(&tc->moved_in);
        moved_out += pa_load_relaxed(&tc->moved_out);
        handoffs += pa_load_relaxed(&tc->handoffs);
        adopts += pa_load_relaxed(&tc->adopts);
        cache_misses += pa_load_relaxed(&tc->cache_misses);
        central_misses += pa_load_relaxed(&tc->central_misses);
        exhausted += pa_load_relaxed(&tc->exhausted);
    }
    allocs += pa_load_relaxed(&k->uncached_allocs);
    frees += pa_load_relaxed(&k->uncached_frees);
    fresh += pa_load_relaxed(&k->uncached_carved);
    moved_out += pa_load_relaxed(&k->uncached_pushed);
    moved_in += pa_load_relaxed(&k->uncached_popped);
    exhausted += pa_load_relaxed(&k->uncached_exhausted);
    handoffs += pa_load_relaxed(&k->put_in_transit);
    uint64_t transit = handoffs - adopts;
    if (o->block_size != s->block_size[c])
        fz_fail("block_size", c, o->block_size, s->block_size[c]);
    if (o->allocations != allocs)
        fz_fail("allocations", c, o->allocations, allocs);
    if (o->frees != frees)
        fz_fail("frees", c, o->frees, frees);
    if (o->blocks_carved != fresh - uncarved)
        fz_fail("blocks_carved", c, o->blocks_carved, fresh - uncarved);
    if (o->blocks_central != moved_out - moved_in)
        fz_fail("blocks_central", c, o->blocks_central, moved_out - moved_in);
    if (o->blocks_cached != cached)
        fz_fail("blocks_cached", c, o->blocks_cached, cached);
    if (o->blocks_free != moved_out - moved_in + cached)
        fz_fail("blocks_free", c, o->blocks_free, moved_out - moved_in + cached);
    if (o->blocks_in_transit != transit)
        fz_fail("blocks_in_transit", c, o->blocks_in_transit, transit);
    if ((uint64_t)o->blocks_in_use != allocs - frees - transit - uncarved)
        fz_fail("blocks_in_use", c, (uint64_t)o->blocks_in_use,
                allocs - frees - transit - uncarved);
    if (o->cache_misses != cache_misses)
        fz_fail("cache_misses", c, o->cache_misses, cache_misses);
    if (o->central_misses != central_misses)
        fz_fail("central_misses", c, o->central_misses, central_misses);
    if (o->exhausted != exhausted)
        fz_fail("exhausted", c, o->exhausted, exhausted);
    if (o->invalid_frees != pa_load_relaxed(&k->invalid_frees))
        fz_fail("invalid_frees", c, o->invalid_frees, pa_load_relaxed(&k->invalid_frees));
}

/* The segment-wide figures: the class figures summed, the header's
 * counters, the live worker slots counted. */
static void check_totals(const pshm_seg_t *s, const pshm_stats_t *st)
{
    /* The large blocks' part, recounted from the span map and the owner
     * slices (the large stats are what pshm_large_totals() says). */
    pshm_large_stats_t L;
    pshm_large_totals(s, &L);
    if (memcmp(&L, &st->large, sizeof(L)) != 0)
        fz_fail("large", 0, st->large.in_use, L.in_use);
    uint64_t transit = L.in_transit, invalid = L.invalid_frees, bytes_in_use = L.bytes_in_use,
             attached = 0;
    if (st->nclasses != s->nclasses)
        fz_fail("nclasses", 0, st->nclasses, s->nclasses);
    for (uint32_t c = 0; c < s->nclasses; c++) {
        transit += st->cls[c].blocks_in_transit;
        invalid += st->cls[c].invalid_frees;
        if (st->cls[c].blocks_in_use > 0)
            bytes_in_use += (uint64_t)st->cls[c].blocks_in_use * s->block_size[c];
    }
    for (uint32_t i = 0; i < s->max_procs; i++) /* relaxed: single-threaded */
        attached += pa_load_relaxed(&s->procs[i].state) == PSHM_PROC_LIVE &&
                    pa_load_relaxed(&s->procs[i].via_daemon) != PSHM_VIA_POOLD;
    if (st->blocks_in_transit != transit)
        fz_fail("total blocks_in_transit", 0, st->blocks_in_transit, transit);
    if (st->invalid_frees != invalid)
        fz_fail("total invalid_frees", 0, st->invalid_frees, invalid);
    if (st->bytes_in_use != bytes_in_use)
        fz_fail("bytes_in_use", 0, st->bytes_in_use, bytes_in_use);
    if (st->procs_attached != attached)
        fz_fail("procs_attached", 0, st->procs_attached, attached);
    if (st->procs_reclaimed != pa_load_relaxed(&s->hdr->procs_reclaimed))
        fz_fail("procs_reclaimed", 0, st->procs_reclaimed,
                pa_load_relaxed(&s->hdr->procs_reclaimed));
    if (st->reclaimed_in_use != pa_load_relaxed(&s->hdr->reclaimed_in_use))
        fz_fail("reclaimed_in_use", 0, st->reclaimed_in_use,
                pa_load_relaxed(&s->hdr->reclaimed_in_use));
}

/* pshm_proc_stats() with room for `max` rows between two canary rows: it
 * returns the number of live worker slots, fills min(n, max) rows in slot
 * order with each slot's own pid, and writes nothing else. */
static void check_procs(const pshm_seg_t *s, int max)
{
    pshm_proc_stats_t rows[FZ_MAX_PROCS + 2];
    memset(rows, 0xa5, sizeof(rows));
    int n = pshm_proc_stats(s, rows + 1, max);
    uint32_t live = 0;
    for (uint32_t i = 0; i < s->max_procs; i++) /* acquire: as pshm_proc_stats() loads it */
        live += pa_load_acquire(&s->procs[i].state) == PSHM_PROC_LIVE &&
                pa_load_relaxed(&s->procs[i].via_daemon) != PSHM_VIA_POOLD;
    if (n < 0 || (uint32_t)n != live)
        fz_fail("pshm_proc_stats rows", 0, (unsigned long long)n, live);
    uint8_t fill[sizeof(pshm_proc_stats_t)];
    memset(fill, 0xa5, sizeof(fill));
    int filled = n < max ? n : max;
    for (int r = filled + 1; r < (int)FZ_MAX_PROCS + 2; r++)
        if (memcmp(&rows[r], fill, sizeof(fill)) != 0)
            fz_fail("pshm_proc_stats wrote past its rows", 0, (unsigned long long)r, 0);
    if (memcmp(&rows[0], fill, sizeof(fill)) != 0)
        fz_fail("pshm_proc_stats wrote before its rows", 0, 0, 0);
    uint32_t prev = 0;
    for (int r = 1; r <= filled; r++) {
        uint32_t slot = rows[r].slot;
        if (slot >= s->max_procs || (r > 1 && slot <= prev) ||
            pa_load_relaxed(&s->procs[slot].state) != PSHM_PROC_LIVE ||
            pa_load_relaxed(&s->procs[slot].via_daemon) == PSHM_VIA_POOLD)
            fz_fail("pshm_proc_stats row names a slot that is not a live worker", 0, slot, 0);
        if (rows[r].pid != pa_load_relaxed(&s->procs[slot].pid))
            fz_fail("pshm_proc_stats row pid", slot, (unsigned long long)rows[r].pid,
                    (unsigned long long)pa_load_relaxed(&s->procs[slot].pid));
        prev = slot;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {data, size, 0};
    pshm_seg_t s;
    fz_view_base(&s);
    while (in.i + 4 <= in.n) {
        uint32_t region = fz_u8(&in) % 4, off = fz_u8(&in) | fz_u8(&in) << 8;
        uint32_t len = fz_u8(&in) % 16 + 1;
        uint8_t *lo;
        uint64_t span;
        switch (region) {
        case 0:
            lo = s.threads;
            span = (uint64_t)s.max_threads * s.thread_bytes;
            off = (uint32_t)(((uint64_t)off * 97) % span); /* spread over all records */
            break;
        case 1: {
            uint32_t c = off % s.nclasses;
            lo = (uint8_t *)&s.cls[c] + offsetof(struct pshm_class, central);
            span = sizeof(struct pshm_class) - offsetof(struct pshm_class, central);
            off = (off >> 5) % (uint32_t)span;
            break;
        }
        case 2:
            lo = (uint8_t *)s.hdr + offsetof(struct pshm_header, next_span);
            span = sizeof(struct pshm_header) - offsetof(struct pshm_header, next_span);
            off %= (uint32_t)span;
            break;
        default:
            lo = (uint8_t *)s.procs;
            span = (uint64_t)s.max_procs * sizeof(struct pshm_proc);
            off %= (uint32_t)span;
            break;
        }
        if (off + len > span)
            len = (uint32_t)(span - off);
        fz_copy(&in, lo + off, len);
    }
    struct {
        uint64_t before;
        pshm_stats_t st;
        uint64_t after;
    } out = {FZ_CANARY, {0}, FZ_CANARY};
    pshm_stats(&s, &out.st);
    if (out.before != FZ_CANARY || out.after != FZ_CANARY)
        fz_fail("pshm_stats wrote outside its output", 0, 0, 0);
    for (uint32_t c = 0; c < s.nclasses; c++)
        check_class(&s, c, &out.st.cls[c]);
    check_totals(&s, &out.st);
    check_procs(&s, 3);
    check_procs(&s, (int)FZ_MAX_PROCS);
    fz_unmap_image(&fz_seg_map);
    return 0;
}
