/* SPDX-License-Identifier: MIT */
/*
 * pshm.h: the internal API of the shm layer, shared by libpoolclient and
 * poold. A pshm_seg_t is one process's view of a mapped segment: the base
 * address plus local copies of the header's constants, taken once by
 * pshm_view() after validation, so that hot paths and the daemon never
 * re-read (possibly corrupted) constants from shared memory.
 *
 * Functions return 0 (or a count) on success and a negative errno on
 * failure; they never touch errno. Setup functions that can fail for a
 * reason a user must read also fill `err` (Redis anet style).
 */
#ifndef PSHM_H
#define PSHM_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pshm_layout.h"

#ifndef POOL_DEBUG
#define POOL_DEBUG 0
#endif
#if POOL_DEBUG >= 1
#include <stdio.h>
#include <stdlib.h>
#define pool_assert(x)                                                                             \
    ((x) ? (void)0                                                                                 \
         : (fprintf(stderr, "poold: assertion failed: %s (%s:%d)\n", #x, __FILE__, __LINE__),      \
            abort()))
#else
#define pool_assert(x) ((void)0)
#endif
#if POOL_DEBUG >= 2
#define pool_assert_expensive(x) pool_assert(x)
#else
#define pool_assert_expensive(x) ((void)0)
#endif

#if defined(__GNUC__)
#define pshm_likely(x) __builtin_expect(!!(x), 1)
#define pshm_unlikely(x) __builtin_expect(!!(x), 0)
#else
#define pshm_likely(x) (x)
#define pshm_unlikely(x) (x)
#endif

typedef struct pshm_seg {
    /* Hot: read by every pool_free() check. */
    uint8_t *base;
    pa_u8 *spanmap;
    uint64_t data_off;   /* byte offset of the data spans */
    uint64_t data_bytes; /* their length */
    uint32_t span_shift;
    uint32_t nclasses;
    /* UINT64_MAX / size + 1, for pshm_on_block_start(): an in-span offset n
     * (below 2^32) is a multiple of the size iff n * block_magic mod 2^64 is
     * below block_magic. One multiply, for every size. */
    uint64_t block_magic[PSHM_MAX_CLASSES];
    uint32_t cache_cap[PSHM_MAX_CLASSES];
    /* Owner bytes (pshm_owner()): base of class c's bytes for span 0, the
     * shift from a span number to its bytes, and ceil(2^32 / block size). */
    uint8_t *owner_base[PSHM_MAX_CLASSES];
    uint32_t owner_span_shift[PSHM_MAX_CLASSES];
    uint64_t block_recip[PSHM_MAX_CLASSES];
    uint64_t span_mask;
    /* The rest. */
    uint64_t data_end;
    uint64_t bytes;
    struct pshm_header *hdr;
    struct pshm_class *cls;
    struct pshm_proc *procs;
    uint8_t *threads;
    pa_u64 *carvers;
    uint8_t *owner_slices;
    pa_u64 *span_state; /* PSHM_STATE_COMMITTED | last release's millisecond */
    struct pshm_chan *chans;
    uint8_t *chan_rings;
    uint32_t nspans;
    uint32_t max_procs;
    uint32_t max_threads;
    uint32_t thread_bytes;
    /* Local copies of the class constants (validated at view time). */
    uint32_t block_size[PSHM_MAX_CLASSES];
    uint32_t blocks_per_span[PSHM_MAX_CLASSES];
    uint32_t batch[PSHM_MAX_CLASSES];
} pshm_seg_t;

typedef struct pshm_params {
    uint64_t bytes;
    uint32_t nclasses;
    uint32_t class_size[PSHM_MAX_CLASSES];
    uint32_t max_procs;
    uint32_t max_threads;
} pshm_params_t;

/* ---- layout (pshm_layout.c) ---- */
void pshm_params_default(pshm_params_t *p, uint64_t bytes);
/* "fine" (the default list: 8, 16, 32, 48, 64, then four classes per
 * doubling up to 65536), "pow2" (powers of two from 8 to 65536), "8,16,32"
 * or "8-65536" (powers of two in the range); sorted, unique, >= 8,
 * multiples of 8. */
int pshm_params_set_classes(pshm_params_t *p, const char *list, char *err, size_t errlen);
/* The bytes below the data spans (header and tables): what a segment
 * commits at creation. */
uint64_t pshm_params_tables_bytes(const pshm_params_t *p);
/* Memory the owner table costs per block, in bytes. */
uint32_t pshm_owner_bytes_per_block(void);
/* Smallest segment these parameters can make. */
uint64_t pshm_params_min_bytes(const pshm_params_t *p);
int pshm_format(void *base, const pshm_params_t *p, char *err, size_t errlen);
/* Validate a mapped segment of `bytes` bytes and fill the view. Refuses a
 * foreign segment, another ABI version, a truncated one, or inconsistent
 * offsets, saying which in err. */
int pshm_view(pshm_seg_t *seg, void *base, uint64_t bytes, char *err, size_t errlen);

/* ---- OS (pshm_os.c): the only caller of shm_open/mmap/munmap ---- */
/* name NULL: an anonymous segment (memfd), shared only with forked children.
 * The file is `bytes` long; its first `commit` bytes (the header and
 * tables, pshm_params_tables_bytes(), or all of it) are reserved with
 * posix_fallocate, so that a /dev/shm too small for them fails here. The
 * rest is committed span by span as spans are claimed (pshm_span_commit()).
 * With `exclusive`, an existing name is -EEXIST. */
int pshm_os_create(const char *name, uint64_t bytes, uint64_t commit, unsigned mode, int gid,
                   bool exclusive, void **base, char *err, size_t errlen);
/* Commit the memory of [addr, addr + len) of a shared mapping: 0, -ENOMEM
 * (no memory left for the file: /dev/shm full), or -ENOTSUP (a kernel
 * without MADV_POPULATE_WRITE: the pages come at first touch). */
int pshm_os_commit(void *addr, uint64_t len);
/* Give the memory of [addr, addr + len) back to the system (a hole in the
 * file; reads see zeros, a write commits again): 0 or -errno. */
int pshm_os_decommit(void *addr, uint64_t len);
int pshm_os_open(const char *name, void **base, uint64_t *bytes, char *err, size_t errlen);
void pshm_os_unmap(void *base, uint64_t bytes);
/* Map every page of a mapping now (poold: reclaims then never fault).
 * 0, or -errno (-ENOTSUP on an old kernel: harmless). */
int pshm_os_prefault(void *base, uint64_t bytes);
/* A forked child's own heap (libpoolclient-preload): before fork, a private
 * anonymous mapping of `bytes` bytes holding a copy of the first `copy`
 * bytes of [base, base + bytes) (the rest reads as zeros), which the child
 * inherits; in the child, pshm_os_place() moves it over base, so that the
 * segment is no longer shared with anyone there. 0, or -errno. */
int pshm_os_snapshot(const void *base, uint64_t bytes, uint64_t copy, void **out);
int pshm_os_place(void *snapshot, void *base, uint64_t bytes);
int pshm_os_unlink(const char *name);
/* 0 when unknown. */
uint64_t pshm_os_proc_start_time(pid_t pid);
/* false when pid is gone or is another process than the one that started at
 * start_time (pid reuse). */
bool pshm_os_proc_alive(pid_t pid, uint64_t start_time);

/* ---- blocks ---- */
static inline void *pshm_ptr(const pshm_seg_t *s, uint32_t idx)
{
    return s->base + ((uint64_t)idx << 3);
}

/* Class c's size d divides the in-span offset n of rel (the byte offset
 * from the start of the data spans) when lo < block_magic[c]; q is n / d
 * when it does. Lemire's test and quotient ("Faster remainder by direct
 * computation", 2019): with M = floor((2^64 - 1) / d) + 1, for n and d
 * below 2^32, n * M mod 2^64 < M iff d divides n, and the high word of
 * the 128-bit n * M is n / d. In-span offsets are below the span size, at
 * most 2^30. One multiply, exact for every size, power of two or not. */
typedef struct pshm_divided {
    uint64_t lo; /* n * M mod 2^64 */
    uint64_t q;  /* n / d, when d divides n */
} pshm_divided_t;

static inline pshm_divided_t pshm_divide(const pshm_seg_t *s, uint64_t rel, uint32_t c)
{
    uint64_t n = rel & s->span_mask;
    pshm_divided_t d;
#if defined(__SIZEOF_INT128__)
    __extension__ unsigned __int128 p = (unsigned __int128)n * s->block_magic[c];
    d.lo = (uint64_t)p;
    d.q = (uint64_t)(p >> 64);
#else
    d.lo = n * s->block_magic[c];
    d.q = (n * s->block_recip[c]) >> 32;
#endif
    return d;
}

/* rel is a multiple of class c's size inside its span: a block start, if
 * the span is one of class c. */
static inline bool pshm_on_block_start(const pshm_seg_t *s, uint64_t rel, uint32_t c)
{
    return pshm_divide(s, rel, c).lo < s->block_magic[c];
}

/* The class of the block that starts at byte offset `off`, or -EINVAL when
 * no block starts there (outside the data spans, span not carved, not on a
 * block boundary). Safe on any input: the hot check of pool_free(). */
static inline int pshm_block_class(const pshm_seg_t *s, uint64_t off)
{
    uint64_t rel = off - s->data_off; /* wraps to huge below the data */
    if (pshm_unlikely(rel >= s->data_bytes))
        return -EINVAL;
    /* acquire: pairs with the release store in pshm_span_publish(), so the span
     * is known carved before its class is trusted. */
    uint32_t c = pa_load_acquire(&s->spanmap[rel >> s->span_shift]);
    if (pshm_unlikely(c >= s->nclasses))
        return -EINVAL;
    return pshm_likely(pshm_on_block_start(s, rel, c)) ? (int)c : -EINVAL;
}

/* The block of class c at byte offset off (pshm_block_class() said c) is
 * before its span's owner tail: a block lists and caches may hold. */
static inline bool pshm_before_tail(const pshm_seg_t *s, uint64_t off, uint32_t c)
{
    return (((off - s->data_off) & s->span_mask) * s->block_recip[c] >> 32) < s->blocks_per_span[c];
}

/* The class of the block at byte offset off, a block before its span's
 * owner tail (one lists and caches may hold), or -EINVAL: the check of a
 * block named from outside (an offset, a pointer handed over). */
static inline int pshm_block_at(const pshm_seg_t *s, uint64_t off)
{
    int c = pshm_block_class(s, off);
    return c >= 0 && pshm_before_tail(s, off, (uint32_t)c) ? c : -EINVAL;
}

/* A block of class c, and before the span's owner tail (what lists and
 * caches may hold): the check of every index read from the segment. */
static inline bool pshm_idx_is_block(const pshm_seg_t *s, uint32_t idx, uint32_t c)
{
    return pshm_block_at(s, (uint64_t)idx << 3) == (int)c;
}

/* The owner byte of the block of class c at byte offset off (a block start
 * inside a span of class c: callers check that first, or know it). */
static inline pa_u8 *pshm_owner(const pshm_seg_t *s, uint32_t c, uint64_t off)
{
    uint64_t rel = off - s->data_off;
    return (pa_u8 *)(s->owner_base[c] + ((rel >> s->span_shift) << s->owner_span_shift[c]) +
                     (((rel & s->span_mask) * s->block_recip[c]) >> 32));
}

/* The same, for the block at rel (from the start of the data spans) whose
 * number in its span, q, pshm_divide() gave. */
static inline pa_u8 *pshm_owner_nth(const pshm_seg_t *s, uint32_t c, uint64_t rel, uint64_t q)
{
    return (pa_u8 *)(s->owner_base[c] + ((rel >> s->span_shift) << s->owner_span_shift[c]) + q);
}

static inline pa_u8 *pshm_owner_idx(const pshm_seg_t *s, uint32_t c, uint32_t idx)
{
    return pshm_owner(s, c, (uint64_t)idx << 3);
}

/* The owner byte that names process slot `slot`. */
static inline uint8_t pshm_own_val(uint32_t slot)
{
    return (uint8_t)(slot + 1);
}

/* Open a one-block journal step (handoff, adopt) in tc: the block and the
 * counter's value before the step; then the step's op, released after
 * them, so that a reclaimer that reads the op sees both. */
static inline void pshm_journal_block(struct pshm_tclass *tc, uint32_t op, uint32_t idx,
                                      uint64_t ctr)
{
    tc->pend.block.idx = idx;
    PSHM_CRASH_POINT();
    tc->pend.ctr = ctr;
    PSHM_CRASH_POINT();
    pa_store_release(&tc->pend.op, op); /* release: pairs with pshm_rec_recover()'s acquire */
}

/* Handoff and adopt of block idx of class c by record t (of the process
 * whose owner byte is `own`, of slot `slot`): 0, or -EINVAL (the block is
 * not owned / not in transit). Journaled like
 * every step of a record (pshm_rec_recover() finishes or undoes them);
 * inline, because pool_handoff() and pool_adopt() are a fast path of their
 * own: one span-map check, then this. */
static inline int pshm_rec_handoff(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, uint32_t idx,
                                   uint8_t own)
{
    struct pshm_tclass *tc = &t->cls[c];
    pa_u8 *o = pshm_owner_idx(s, c, idx);
    uint64_t h0 = pa_load_relaxed(&tc->handoffs); /* relaxed: single writer */
    pshm_journal_block(tc, PSHM_PEND_HANDOFF, idx, h0);
    uint8_t v = pa_load_relaxed(o); /* relaxed: checked below */
    int rc = -EINVAL;
    if (pshm_likely(v == own && own != 0)) {
        /* The caller's own block, as pool_free()'s fast path sees it: no
         * reclaim takes a live process's blocks, so only a free or handoff
         * of this block racing ours in this program (the race pool_free()
         * documents) writes its byte. A store, not a CAS: the line that the
         * receiver's adopt took last is then not waited for here.
         * release: orders the sender's writes into the block before the
         * receiver's acquire CAS in adopt. */
        pa_store_release(o, PSHM_OWN_TRANSIT);
        pa_store_relaxed(&tc->handoffs, h0 + 1); /* relaxed: single writer */
        rc = 0;
    } else {
        while (v >= 1 && v <= s->max_procs) {
            /* Another process's block (handed on after pool_offset()):
             * acq_rel: exactly one of a handoff, a free or a reclaim of a
             * dead owner moves it out of its owner's hands; release orders
             * the writes into the block before a receiver's adopt. */
            if (pa_cas_strong_acq_rel(o, &v, PSHM_OWN_TRANSIT)) {
                pa_store_relaxed(&tc->handoffs, h0 + 1); /* relaxed: single writer */
                rc = 0;
                break;
            }
        }
    }
    /* release: the step's last writes (the counter) come before it. */
    pa_store_release(&tc->pend.op, PSHM_PEND_NONE);
    return rc;
}

/* The handoff of a channel send (pshm_chan.c): block idx of class c is
 * the caller's own (checked before its message was put in the ring), and
 * receivers adopt it only once it is in transit. Journaled as CHANDOFF,
 * judged done by its byte no longer being ours: a receiver may adopt it
 * between this store and the count, which a HANDOFF step would misjudge. */
static inline void pshm_rec_chan_handoff(pshm_seg_t *s, struct pshm_thread *t, uint32_t c,
                                         uint32_t idx)
{
    struct pshm_tclass *tc = &t->cls[c];
    pa_u8 *o = pshm_owner_idx(s, c, idx);
    uint64_t h0 = pa_load_relaxed(&tc->handoffs); /* relaxed: single writer */
    pshm_journal_block(tc, PSHM_PEND_CHANDOFF, idx, h0);
    /* release: orders the sender's writes into the block before the
     * receiver's acquire load of CHAN and its adopt CAS. */
    pa_store_release(o, PSHM_OWN_CHAN);
    pa_store_relaxed(&tc->handoffs, h0 + 1); /* relaxed: single writer */
    /* release: the step's last writes (the counter) come before it. */
    pa_store_release(&tc->pend.op, PSHM_PEND_NONE);
}

/* Adopt block idx of class c from transit (`from`: PSHM_OWN_TRANSIT, or
 * PSHM_OWN_CHAN for a channel's receiver): 0, or -EINVAL when it is not
 * in that state (another adopter won). */
/* A reclaimer's (or detacher's) move, by its record t, of block idx of class
 * c between a channel and a slot's hands: from owner byte `from` into the
 * channel (to PSHM_OWN_CHAN: counted as t's handoff), or out of it (from
 * PSHM_OWN_CHAN to `to`: counted as t's adopt), so that a death between
 * the CAS and the count is a journaled step (CHANPUT, CHANBACK) its
 * successor finishes. True when the CAS moved it. */
static inline bool pshm_rec_chan_move(pshm_seg_t *s, struct pshm_thread *t, uint32_t c,
                                      uint32_t idx, uint8_t from, uint8_t to)
{
    struct pshm_tclass *tc = &t->cls[c];
    bool put = to == PSHM_OWN_CHAN;
    pa_u64 *ctr = put ? &tc->handoffs : &tc->adopts;
    uint64_t c0 = pa_load_relaxed(ctr); /* relaxed: single writer */
    tc->pend.count = from;
    pshm_journal_block(tc, put ? PSHM_PEND_CHANPUT : PSHM_PEND_CHANBACK, idx, c0);
    uint8_t v = from;
    /* acq_rel: one mover of the block (against a live free of a dead
     * slot's block); release orders its writes before a receiver's adopt. */
    bool moved = pa_cas_strong_acq_rel(pshm_owner_idx(s, c, idx), &v, to);
    if (moved)
        pa_store_relaxed(ctr, c0 + 1); /* relaxed: single writer */
    /* release: the step's last writes (the counter) come before it. */
    pa_store_release(&tc->pend.op, PSHM_PEND_NONE);
    return moved;
}

static inline int pshm_rec_adopt_from(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot,
                                      uint32_t c, uint32_t idx, uint8_t from)
{
    struct pshm_tclass *tc = &t->cls[c];
    pa_u8 *o = pshm_owner_idx(s, c, idx);
    uint64_t a0 = pa_load_relaxed(&tc->adopts); /* relaxed: single writer */
    pshm_journal_block(tc, PSHM_PEND_ADOPT, idx, a0);
    uint8_t v = from;
    int rc = -EINVAL;
    /* acq_rel: acquire pairs with the sender's release store (or CAS) of
     * TRANSIT in handoff, so the block's contents are visible to us; only
     * one receiver wins. */
    if (pa_cas_strong_acq_rel(o, &v, pshm_own_val(slot))) {
        pa_store_relaxed(&tc->adopts, a0 + 1); /* relaxed: single writer */
        rc = 0;
    }
    /* release: the step's last writes (the counter) come before it. */
    pa_store_release(&tc->pend.op, PSHM_PEND_NONE);
    return rc;
}

static inline int pshm_rec_adopt(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot, uint32_t c,
                                 uint32_t idx)
{
    return pshm_rec_adopt_from(s, t, slot, c, idx, PSHM_OWN_TRANSIT);
}

/* True when a `hot` word holds a cached block (not empty, not a taken note;
 * struct pshm_tclass). */
static inline bool pshm_hot_cached(uint64_t hot)
{
    return (int64_t)hot > 0;
}

/* The block index a `hot` word caches, or PSHM_IDX_NONE: not cached, or not
 * a block offset at all (a corrupt record of a dead process). */
static inline uint32_t pshm_hot_idx(uint64_t hot)
{
    return pshm_hot_cached(hot) && hot < PSHM_MAX_SEGMENT && (hot & 7) == 0 ? (uint32_t)(hot >> 3)
                                                                            : PSHM_IDX_NONE;
}

/* Blocks in a thread's cache of one class (see struct pshm_tclass).
 * relaxed loads: statistics of a single writer. */
static inline uint32_t pshm_tclass_cached(const struct pshm_tclass *tc)
{
    return pa_load_relaxed(&tc->count) + pshm_hot_cached(pa_load_relaxed(&tc->hot));
}

/* Blocks a thread carved from spans (high half of fresh_w). */
static inline uint64_t pshm_tclass_fresh(const struct pshm_tclass *tc)
{
    return pa_load_relaxed(&tc->fresh_w) >> 32;
}

static inline uint32_t pshm_tclass_fresh_next(const struct pshm_tclass *tc)
{
    return (uint32_t)pa_load_relaxed(&tc->fresh_w);
}

/* A thread's allocations of one class, derived from its counters: every
 * block that came into its hands (carved, freed to it, refilled, adopted)
 * less those still cached and those it gave to central or to transit.
 * Handoffs and adopts move blocks without an allocation: they cancel. */
static inline uint64_t pshm_tclass_allocs(const struct pshm_tclass *tc)
{
    return pshm_tclass_fresh(tc) + pa_load_relaxed(&tc->frees) + pa_load_relaxed(&tc->moved_in) -
           pa_load_relaxed(&tc->moved_out) - pshm_tclass_cached(tc);
}

/* Allocations that returned the block this thread freed last (took hot). */
static inline uint64_t pshm_tclass_same(const struct pshm_tclass *tc)
{
    return pa_load_relaxed(&tc->frees) - pa_load_relaxed(&tc->displaced) -
           pshm_hot_cached(pa_load_relaxed(&tc->hot));
}

/* ---- central lists and journaled moves (pshm_central.c) ---- */
/* A record's author number in list heads: its index plus one. */
static inline uint32_t pshm_rec_id(const pshm_seg_t *s, const struct pshm_thread *t)
{
    return (uint32_t)(((const uint8_t *)t - s->threads) / s->thread_bytes) + 1;
}

/* Record t refills its empty cache of class c with one batch from central:
 * the number of blocks now in slots[1..count] (0: central is empty). */
uint32_t pshm_rec_refill(pshm_seg_t *s, struct pshm_thread *t, uint32_t c);
/* Record t pushes the top m entries of slots[] (m <= count) to central. */
void pshm_rec_flush(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, uint32_t m);
/* The same for a reclaimer on a dead record that a peer may write
 * meanwhile: count bounded by the cache, m by count, entries checked. */
void pshm_rec_flush_checked(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, uint32_t m);
/* Record t, whose carving range is empty, takes a new one: an uncarved
 * region, else a fresh span. 0, or -ENOMEM when neither is left. */
int pshm_rec_install(pshm_seg_t *s, struct pshm_thread *t, uint32_t c);
/* pshm_rec_install() without the fresh span: only an uncarved region
 * (fresh = false; the sweep's way), else -ENOMEM. */
int pshm_rec_install_from(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, bool fresh);
/* Record t gives its carving range back to the region stack. */
void pshm_rec_return_range(pshm_seg_t *s, struct pshm_thread *t, uint32_t c);
/* Record t, a reclaimer, takes the blocks owned by value v from in-span
 * index i of the span at span_off on (each by one CAS, until one is lost or
 * not v's) and gives them back as one uncarved region: how many (0: the
 * first was not taken). Touches owner bytes and one word of the first
 * block only, so that a large reclaim stays fast. */
uint32_t pshm_rec_reclaim_run(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, uint64_t span_off,
                              uint32_t i, uint8_t v);
/* Record t (a detaching process's, or a reclaimer's) puts block idx of
 * class c, owned by value v (a process slot's), in transit by one CAS,
 * journaled and counted as one of its handoffs: true when it moved (false:
 * the byte was no longer v, a live free took the block). */
bool pshm_rec_to_transit(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, uint32_t idx, uint8_t v);
/* Put a dead record's pending step right (finish or undo it); then its
 * cache, carving range and counters are what they would be had it not died
 * in the middle of a step. Returns entries dropped as invalid. */
uint64_t pshm_rec_recover(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot, uint32_t c);

/* Without a record (records full): not journaled, so a crash in the middle
 * can lose the batch; counted in the class's u_* counters. */
uint32_t pshm_central_pop_raw(pshm_seg_t *s, uint32_t c, uint32_t *out, uint32_t cap);
void pshm_central_push_raw(pshm_seg_t *s, uint32_t c, const uint32_t *idx, uint32_t n);
bool pshm_region_pop_raw(pshm_seg_t *s, uint32_t c, uint32_t *start, uint32_t *end);
void pshm_region_push_raw(pshm_seg_t *s, uint32_t c, uint32_t start, uint32_t end);

/* ---- spans (pshm_span.c) ---- */
/* Claim a fresh span on behalf of record `rec_id` (0: none): its number,
 * or -ENOMEM when every span is carved. With `pend` (the claiming record's
 * journal of the class), each try is journaled as PSHM_PEND_CARVE first. */
int pshm_span_claim(pshm_seg_t *s, struct pshm_pending *pend, uint32_t rec_id);
/* Make claimed span n a span of class c (idempotent): its owner bytes
 * zeroed, its class published; [*start, *end) its blocks. */
void pshm_span_publish(pshm_seg_t *s, uint32_t n, uint32_t c, uint32_t *start, uint32_t *end);
/* Spans carved for class c, and in all (from the span map). */
uint32_t pshm_spans_of(const pshm_seg_t *s, uint32_t c);
uint32_t pshm_spans_carved(const pshm_seg_t *s);

/* The high water of the claims (no span at or above was ever claimed),
 * bounded by nspans. */
uint32_t pshm_span_high(const pshm_seg_t *s);
/* Give span n, held with claim word `word`, back to the pool of free
 * spans: its map byte FREE, then its word (g + 1, 0). false when the span
 * no longer holds `word` (given back already). */
bool pshm_span_release(pshm_seg_t *s, uint32_t n, uint64_t word);
/* The same for one span of a run given back at once: the release time is
 * the caller's (one clock read per run), and the free-span hints are left
 * to pshm_span_released(), called once after the run with its lowest span
 * given back and how many were. */
bool pshm_span_release_at(pshm_seg_t *s, uint32_t n, uint64_t word, uint64_t now_ms);
void pshm_span_released(pshm_seg_t *s, uint32_t lowest, uint32_t count);
/* Commit the memory of the k spans from `first`, which the caller holds
 * (claimed, not yet published): the spans already committed cost nothing.
 * 0, or -ENOMEM when the system has no memory left for them (a full
 * /dev/shm): the caller gives the spans back and fails with ENOMEM. Call it
 * after every claim, before anything is written into the spans. */
int pshm_span_commit(pshm_seg_t *s, uint32_t first, uint32_t k);
/* Note that the memory of the k spans from `first` is committed (the
 * caller committed the whole range: fallocate, a prefault): sets their
 * COMMITTED bit, held or free. Never while a purge may run. */
void pshm_span_note_committed(pshm_seg_t *s, uint32_t first, uint32_t k);
/* The span states (relaxed: a snapshot). A span in the pool whose memory
 * is not committed is neither: address space only. */
typedef struct pshm_span_counts {
    uint64_t committed; /* spans whose memory is committed (in /dev/shm) */
    uint64_t free;      /* of those, free: in the pool, ready to claim */
} pshm_span_counts_t;
void pshm_span_count(const pshm_seg_t *s, pshm_span_counts_t *out);
/* poold's purge: gives the memory of free committed spans that have been
 * free since before now_ms - delay_ms back to the system, highest spans
 * first, until at most `retain` bytes of free committed spans remain, `max`
 * spans at most (a bound on one call's time). Each
 * span is taken out of the pool by a CAS of its claim word to
 * PSHM_MARK_PURGE, punched out, marked uncommitted, then released. Only
 * one purger per segment (poold). Returns the spans purged, or -errno when
 * the punch failed (the span went back committed). */
int pshm_span_purge(pshm_seg_t *s, uint64_t now_ms, uint64_t delay_ms, uint64_t retain,
                    uint32_t max);
/* At poold's start: every span a purger left holding PSHM_MARK_PURGE (it
 * died mid-purge) is punched out, marked uncommitted and released.
 * Returns how many. */
uint32_t pshm_span_purge_recover(pshm_seg_t *s);
/* A private copy of the segment for a forked child (pshm_os_snapshot()):
 * the header and tables, and the committed spans among the first `spans`;
 * the rest reads as zeros. 0, or -errno. */
int pshm_span_snapshot(const pshm_seg_t *s, uint32_t spans, void **out);
/* CLOCK_MONOTONIC in milliseconds: the clock of the span states. */
uint64_t pshm_now_ms(void);
/* Claim the k spans from `first` with claim word `word` (every one free,
 * of a generation not above word's): 0, or -EAGAIN after giving back the
 * ones taken when one was lost to another claimer. */
int pshm_span_claim_run(pshm_seg_t *s, uint32_t first, uint32_t k, uint64_t word);
/* The first span of a free run of k spans, best fit (the shortest run that
 * holds k, else a run at the high water grown into fresh spans, else fresh
 * spans), and the highest generation in it; `all`: look from span 0, not
 * from the hint. -ENOMEM when none. A candidate: claim it to own it. */
int pshm_span_find_run(const pshm_seg_t *s, uint32_t k, bool all, uint32_t *gen);
/* `first` when the k spans from it are all free (and in the segment) and
 * the span before it is not (first is the left end of a free run), with
 * the highest generation among them; else -ENOMEM. A candidate, as above. */
int pshm_span_run_at(const pshm_seg_t *s, uint32_t first, uint32_t k, uint32_t *gen);

/* ---- large blocks (pshm_large.c) ---- */
#define PSHM_LARGE_BUCKETS 6u /* up to 256 KiB, 1, 4, 16, 64 MiB, more */

static inline struct pshm_tlarge *pshm_tlarge_of(const pshm_seg_t *s, struct pshm_thread *t)
{
    return (struct pshm_tlarge *)(void *)&t->cls[s->nclasses];
}
/* A large block's head span n keeps in its owner slice: the owner byte,
 * the run's length in spans (a continuation: its head) and the bytes asked. */
static inline pa_u8 *pshm_large_owner(const pshm_seg_t *s, uint32_t n)
{
    return (pa_u8 *)(s->owner_slices + ((uint64_t)n << 6));
}
static inline pa_u32 *pshm_large_info(const pshm_seg_t *s, uint32_t n)
{
    return (pa_u32 *)(void *)(s->owner_slices + ((uint64_t)n << 6) + 8);
}
static inline pa_u64 *pshm_large_asked(const pshm_seg_t *s, uint32_t n)
{
    return (pa_u64 *)(void *)(s->owner_slices + ((uint64_t)n << 6) + 16);
}
/* The default max_block: a quarter of the data spans, whole spans. */
uint64_t pshm_max_block_default(uint64_t data_bytes, uint32_t span_shift);
uint32_t pshm_large_spans_for(const pshm_seg_t *s, uint64_t bytes);
/* The head span of the large block that starts at byte offset off, or
 * -EINVAL: the check of a pointer or offset. */
int pshm_large_at(const pshm_seg_t *s, uint64_t off);
/* The length in spans of the large block at head n (1 if its slice lies). */
uint32_t pshm_large_len(const pshm_seg_t *s, uint32_t n);
/* A large block of `bytes` for the process whose owner byte is `own`, by
 * record t: its byte offset, or -ENOMEM (no free run long enough). */
int64_t pshm_large_alloc(pshm_seg_t *s, struct pshm_thread *t, uint8_t own, uint64_t bytes);
/* Free, hand off, adopt the large block at head n: 0, or -EINVAL (not in
 * use by a process / not in transit). */
int pshm_large_free(pshm_seg_t *s, struct pshm_thread *t, uint32_t n, uint8_t own);
int pshm_large_handoff(pshm_seg_t *s, struct pshm_thread *t, uint32_t n, uint8_t own);
/* The handoff of a channel send, as pshm_rec_chan_handoff() for a large block. */
void pshm_large_chan_handoff(pshm_seg_t *s, struct pshm_thread *t, uint32_t n);
int pshm_large_adopt(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot, uint32_t n);
int pshm_large_adopt_from(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot, uint32_t n,
                          uint8_t from);
/* pshm_rec_chan_move() for the large block at span n. */
bool pshm_large_chan_move(pshm_seg_t *s, struct pshm_thread *t, uint32_t n, uint8_t from,
                          uint8_t to);
/* A reclaimer (record t) gives back the block at head n held by owner
 * value v of a dead process; or puts it in transit (t NULL: not journaled,
 * counted in the header). 0 / true when it moved. */
int pshm_large_reclaim(pshm_seg_t *s, struct pshm_thread *t, uint32_t n, uint8_t v);
bool pshm_large_to_transit(pshm_seg_t *s, struct pshm_thread *t, uint32_t n, uint8_t v);
/* Finish or undo a dead record's large step: entries dropped as invalid. */
uint64_t pshm_large_recover(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot);

typedef struct pshm_large_stats {
    uint64_t allocs, frees, handoffs, adopts, reclaimed, exhausted; /* records' sums */
    uint64_t put_in_transit, invalid_frees;                         /* header */
    uint64_t in_use, in_transit;         /* from the span map and owner bytes */
    uint64_t bytes_in_use, bytes_asked;  /* spans' bytes, and asked, of those in use */
    uint64_t bucket[PSHM_LARGE_BUCKETS]; /* blocks by size: up to 256 KiB, 1, 4, 16, 64 MiB, more */
} pshm_large_stats_t;
void pshm_large_totals(const pshm_seg_t *s, pshm_large_stats_t *out);

/* ---- process slots and thread records (pshm_slots.c) ---- */
static inline struct pshm_thread *pshm_thread_at(const pshm_seg_t *s, uint32_t i)
{
    return (struct pshm_thread *)(void *)(s->threads + (uint64_t)i * s->thread_bytes);
}
/* Claim a free slot for pid: slot number, or -EBUSY when all are taken. */
/* via: who claims, enum pshm_via. */
int pshm_proc_claim(pshm_seg_t *s, pid_t pid, uint64_t start_time, enum pshm_via via);
/* The live slot held by pid, or -ENOENT. */
int pshm_proc_find(const pshm_seg_t *s, pid_t pid);
/* Give a slot back (its threads' records must be released first). */
void pshm_proc_release(pshm_seg_t *s, uint32_t slot);
/* The process image that holds a live slot (poold sets it at HELLO; 0:
 * unknown): a HELLO of the same pid from another image follows an exec. */
void pshm_proc_set_image(pshm_seg_t *s, uint32_t slot, uint32_t image);
uint32_t pshm_proc_image(const pshm_seg_t *s, uint32_t slot);
/* Mark slot's end (enum pshm_proc_end), so that its reclaim counts an exit
 * or exec rather than a crash. The holder calls it at exit; poold at exec. */
void pshm_proc_note_end(pshm_seg_t *s, uint32_t slot, uint32_t how);
/* Claim a thread record for a thread of slot `slot`; NULL when all taken. */
struct pshm_thread *pshm_thread_claim(pshm_seg_t *s, uint32_t slot, int32_t tid);

typedef struct pshm_release_result {
    uint64_t blocks_returned; /* cached blocks pushed back to central */
    uint64_t entries_dropped; /* invalid entries ignored (untrusted mode) */
    uint64_t threads;         /* records released */
} pshm_release_result_t;

/* Return a thread record's cached blocks and carving range to the class
 * lists and free it; its counters stay in it (statistics). `untrusted`: the
 * owner may have died in the middle of a step or scribbled: its pending
 * step is put right first and every entry is validated (reclaim). */
void pshm_thread_release(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot, bool untrusted,
                         pshm_release_result_t *res);
/* Release every record owned by slot; then free the slot. Its blocks still
 * in use stay owned by it: call only when the process gives them up too
 * (pool_detach), or reclaim instead. */
void pshm_proc_detach(pshm_seg_t *s, uint32_t slot, bool untrusted, pshm_release_result_t *res);

/* Who reclaims: a live process slot and one of its thread records, which
 * takes the dead process's in-use blocks over and frees them. rec NULL:
 * no record to free them through; they are put in transit instead. */
typedef struct pshm_actor {
    uint32_t slot;
    struct pshm_thread *rec;
} pshm_actor_t;

/* The one reclaimer's lock (pshm_slots.c), which a sweep holds too: 0, or
 * -EAGAIN when a live process holds it. Taking it over from a dead holder
 * first finishes that holder's work (its slots, its sweep). */
int pshm_lock_take(pshm_seg_t *s, const pshm_actor_t *actor);
void pshm_lock_give(pshm_seg_t *s);

/* ---- channels (pshm_chan.c) ---- */
struct pshm_ring;
struct pshm_ring *pshm_chan_ring(const pshm_seg_t *s, uint32_t ch);
/* A channel name: 1 to PSHM_CHAN_NAME_MAX printable bytes, no spaces. */
bool pshm_chan_name_ok(const char *name);
/* Open channel `name` as actor->slot: its number, joined; made (of kind,
 * 2^shift messages) when missing and create_missing; exclusive: only made,
 * never joined. A topic opened with *seat not NULL also subscribes: *seat
 * gets the subscriber's seat. -EINVAL (name, kind or shift), -ENOENT
 * (missing), -EEXIST (exclusive, and it exists), -EPROTOTYPE (it is of
 * another kind), -ENOSPC (every entry is used), -EMFILE (65,535 members,
 * or every seat of the topic taken), -EAGAIN (a reclaim held the lock for
 * a second). */
int pshm_chan_open(pshm_seg_t *s, const pshm_actor_t *actor, const char *name, uint32_t kind,
                   uint32_t shift, bool create_missing, bool exclusive, int *seat);
/* Leave channel ch (one open of slot's). The last member of an empty
 * channel frees it; messages keep a memberless channel. */
void pshm_chan_close(pshm_seg_t *s, uint32_t ch, uint32_t slot);
/* Nothing in the ring, not even a message being taken. */
bool pshm_chan_is_empty(pshm_seg_t *s, uint32_t ch);
/* Send the block at off, owned by `own`, by record t: 0; -EAGAIN (full
 * for timeout_ms; 0: do not wait, < 0: for ever), -EINVAL (not a block of
 * ours). A topic message that no subscriber holds is freed at once (the
 * block adopted by t and given to give(ctx, off)). */
typedef void (*pshm_give_fn)(void *ctx, uint64_t off);
typedef struct pshm_chan_actor {
    struct pshm_thread *t; /* the caller's record */
    uint32_t slot;         /* its process slot */
    uint8_t own;           /* pshm_own_val(slot) */
    pshm_give_fn give;     /* frees a block t adopted (topics) */
    void *ctx;
} pshm_chan_actor_t;
int pshm_chan_send(pshm_seg_t *s, uint32_t ch, const pshm_chan_actor_t *a, uint64_t off,
                   int timeout_ms);
/* Receive: a queue's message into the caller's hands (0 and *off); a
 * topic's next message for seat `seat`, shared read-only until released.
 * -EAGAIN (nothing came in time), -EBADF (a topic, and seat is not the
 * caller's subscription). */
int pshm_chan_recv(pshm_seg_t *s, uint32_t ch, const pshm_chan_actor_t *a, int seat, uint64_t *off,
                   int timeout_ms);
/* A topic subscriber is done with the message at off: 0, or -EINVAL (not
 * a message the seat holds). The last release frees the block. */
int pshm_chan_release(pshm_seg_t *s, uint32_t ch, const pshm_chan_actor_t *a, int seat,
                      uint64_t off);
/* Would a receive on channel ch (a topic: by seat) find a message now? A
 * look, for a watcher (a true may be a message another receiver then
 * takes first). */
bool pshm_chan_ready(pshm_seg_t *s, uint32_t ch, int seat);
/* A watcher of slot's starts (delta 1) or stops (-1) watching ch's ring
 * (pshm_ring_watch()), counted per slot for its reclaimer. */
int pshm_chan_watch(pshm_seg_t *s, uint32_t ch, uint32_t slot, int delta);
/* Give up a topic seat: every message it holds is released. */
void pshm_chan_unsubscribe(pshm_seg_t *s, uint32_t ch, const pshm_chan_actor_t *a, int seat);
/* Every seat of a->slot, in every topic (a process detaching). */
void pshm_chan_unsubscribe_all(pshm_seg_t *s, const pshm_chan_actor_t *a);
typedef struct pshm_chan_stats {
    char name[PSHM_CHAN_NAME_MAX + 1];
    uint32_t kind, capacity, members, generation;
    uint64_t depth;      /* messages in the ring (sent, not yet received / released) */
    uint64_t taking;     /* of which a receiver is taking now (TAKEN cells) */
    uint64_t bytes_held; /* bytes of the blocks of those messages */
    uint64_t sent, received, given_back, handed_on, full_waits, refused;
    uint64_t unheard, freed; /* topics: sent to nobody; freed after the last release */
    uint32_t subscribers;    /* topics: seats taken */
    uint32_t slow;           /* topics: subscribers a capacity behind (senders wait for them) */
    uint64_t lag_max;        /* topics: most messages a subscriber has not released */
    uint32_t receivers_waiting, senders_waiting; /* asleep on the ring now */
    uint64_t created_unix;
    int32_t creator_pid;
} pshm_chan_stats_t;
/* Channel ch's figures: true when it is in use (LIVE), from one pass over
 * its cells (a moment's view while senders and receivers run). */
bool pshm_chan_stats(const pshm_seg_t *s, uint32_t ch, pshm_chan_stats_t *out);
typedef struct pshm_chan_reclaimed {
    uint64_t given_back; /* messages a dead receiver had taken (or held, topics) */
    uint64_t handed_on;  /* messages a dead sender had not handed off */
    uint64_t left;       /* memberships taken back */
} pshm_chan_reclaimed_t;
/* Finish slot's channel steps and take its memberships and seats back:
 * under the reclaim lock (who: PSHM_CHAN_RECLAIMER), after slot's records'
 * journals are finished and before they are released; or by slot's own
 * detach (who: one of its records' number + 1). Topic messages nobody
 * holds any more go into slot's hands (its owner walk frees them); hands,
 * the reclaimer's record (or NULL), journals the moves of blocks. */
#define PSHM_CHAN_RECLAIMER 0xfffu   /* PSHM_RING_WHO_MAX */
#define PSHM_CHAN_NO_FINISHER 0xffeu /* a detach without a record: finishes nothing */
void pshm_chan_reclaim_slot(pshm_seg_t *s, uint32_t slot, uint32_t who, struct pshm_thread *hands,
                            pshm_chan_reclaimed_t *out);

/* ---- the sweep (pshm_sweep.c) ---- */
typedef struct pshm_swept {
    uint64_t blocks;       /* free blocks taken out of the lists and regions */
    uint32_t spans;        /* spans given back to the free spans */
    uint64_t blocks_freed; /* blocks of those spans */
} pshm_swept_t;
/* Under the reclaim lock, record t (the actor's) takes every free block of
 * class c off the central list and the region stack, gives the spans all
 * of whose blocks it then holds back to the pool of free spans, and frees
 * the rest again. 0, or -EAGAIN (the lock is busy). */
int pshm_sweep_class(pshm_seg_t *s, const pshm_actor_t *actor, uint32_t c, pshm_swept_t *out);
/* Free blocks a dead sweeper still held (SWEPT owner bytes) go back as
 * uncarved regions, counted by record t. Under the lock. */
void pshm_sweep_recover(pshm_seg_t *s, struct pshm_thread *t);

typedef struct pshm_reclaimed {
    int32_t pid;
    uint32_t slot;
    uint64_t blocks_returned;    /* cached blocks given back */
    uint64_t in_use_returned;    /* blocks it had in use, given back */
    uint64_t in_use_kept;        /* blocks it had in use, put in transit (orphans = keep) */
    uint64_t entries_dropped;    /* invalid entries (corruption) */
    int64_t blocks_orphaned;     /* = in_use_kept, signed (STATS's orphans rows) */
    uint32_t ended;              /* enum pshm_proc_end: how the process said it ends */
    uint64_t usec;               /* how long the reclaim took */
    uint64_t cpu_usec;           /* of which on the CPU (the rest: waiting for one) */
    pshm_chan_reclaimed_t chans; /* its channel steps finished, memberships taken back */
} pshm_reclaimed_t;
/* Reclaim one slot whose process is known dead (poold: pidfd/EOF), or
 * finish the reclaim of a slot whose reclaimer died. One reclaimer at a
 * time per segment (pshm_slots.c): -EAGAIN while another one works, or
 * when the slot is not live; with pid, -ESRCH when the slot is held by
 * another process than pid (checked under the reclaimers' lock). */
int pshm_proc_reclaim_pid(pshm_seg_t *s, uint32_t slot, pid_t pid, const pshm_actor_t *actor,
                          pshm_reclaimed_t *out);
/* The same, whoever holds the slot. */
int pshm_proc_reclaim(pshm_seg_t *s, uint32_t slot, const pshm_actor_t *actor,
                      pshm_reclaimed_t *out);
/* True when some slot's process (or reclaimer) has gone. */
bool pshm_any_dead(const pshm_seg_t *s);
/* Reclaim every slot whose process (or reclaimer) has gone; returns how
 * many, and fills up to max entries of out (may be NULL). */
int pshm_reclaim_dead(pshm_seg_t *s, const pshm_actor_t *actor, pshm_reclaimed_t *out, int max);

/* ---- statistics and checks (pshm_stats.c) ---- */
/* The figures of one class, derived from the segment's counters
 * (docs/stats.md says what each means). The library's public
 * pool_class_stats_t is copied from this field by field, so that the
 * segment's counters are not the library's ABI. */
typedef struct pshm_class_stats {
    uint64_t block_size;
    uint64_t spans_carved;
    uint64_t blocks_carved;  /* blocks ever cut from spans, less those given back uncarved */
    uint64_t blocks_free;    /* central + cached */
    uint64_t blocks_central; /* in the class's central list */
    uint64_t blocks_cached;  /* in thread caches */
    int64_t blocks_in_use;   /* allocations - frees - in transit - given back uncarved */
    uint64_t allocations;
    uint64_t frees;
    uint64_t reuses;                  /* allocations of a block freed before */
    uint64_t same_address;            /* the block this thread freed last */
    uint64_t cache_misses;            /* thread cache empty: went to central */
    uint64_t central_misses;          /* central empty: a new span was carved */
    uint64_t exhausted;               /* no span left: NULL returned */
    uint64_t blocks_in_transit;       /* handed off, not adopted yet */
    uint64_t invalid_frees;           /* frees refused: the block was not in use */
    uint64_t reclaimed_in_use;        /* blocks dead processes had in use, given back */
    uint64_t life[PSHM_LIFE_BUCKETS]; /* sampled lifetimes per bucket (pshm_life_bound_ns) */
    uint64_t life_ns;                 /* their sum, nanoseconds */
} pshm_class_stats_t;

/* The whole pool's figures (pshm_stats()). */
typedef struct pshm_stats {
    uint64_t segment_bytes;
    uint64_t span_bytes;
    uint64_t spans_total;
    uint64_t spans_carved;
    uint64_t bytes_carved; /* spans carved * span size */
    uint64_t bytes_in_use; /* sum of blocks in use * block size, large blocks' spans included */
    /* Memory (pshm_span.c): spans whose memory is in /dev/shm now, the free
     * ones among them (in the pool, ready to claim without a commit), and
     * the bytes poold's purge gave back since the segment was made. */
    uint64_t bytes_committed;
    uint64_t bytes_retained;
    uint64_t bytes_purged;
    uint64_t procs_attached;
    uint64_t procs_reclaimed;  /* died without detaching or saying they exit */
    uint64_t procs_exited;     /* detached, exited normally, or replaced by exec */
    uint64_t blocks_reclaimed; /* cached blocks given back from dead processes */
    uint64_t blocks_orphaned;  /* in-use blocks of dead processes kept in transit */
    uint64_t blocks_in_transit;
    uint64_t invalid_frees;
    uint64_t reclaimed_in_use; /* in-use blocks of dead processes given back */
    uint64_t spans_free;       /* spans in no use now: never claimed, or given back */
    pshm_large_stats_t large;  /* large blocks (pshm_large_totals) */
    uint32_t nclasses;
    pshm_class_stats_t cls[PSHM_MAX_CLASSES];
} pshm_stats_t;

typedef struct pshm_proc_stats {
    uint32_t slot;
    int32_t pid;
    uint32_t via_daemon;
    uint64_t attached_unix;
    uint64_t allocations;
    uint64_t frees;
    uint64_t cache_misses;
    uint64_t blocks_cached;
    int64_t blocks_in_use;
    uint64_t threads;
} pshm_proc_stats_t;
/* A live snapshot, without stopping anyone. */
void pshm_stats(const pshm_seg_t *s, pshm_stats_t *out);
/* Lifetime bucket `bucket`'s upper bound (exclusive) in nanoseconds:
 * 1 us, 10 us, ... 10 s; UINT64_MAX for the last. */
uint64_t pshm_life_bound_ns(uint32_t bucket);
/* Count one sampled lifetime of a class-c block (ns from malloc to free). */
void pshm_life_note(pshm_seg_t *s, uint32_t c, uint64_t ns);
/* Per live process: fills up to max, returns the number of live slots. */
int pshm_proc_stats(const pshm_seg_t *s, pshm_proc_stats_t *out, int max);
/* Check the invariants; valid only while no thread is inside the pool.
 * 0, or -EUCLEAN with a description in err. */
int pshm_check(const pshm_seg_t *s, char *err, size_t errlen);

/* A physical count of one class, by walking lists, caches and owner bytes:
 * valid only at rest. */
typedef struct pshm_audit {
    uint64_t carved;  /* blocks of carved spans, less uncarved regions and ranges */
    uint64_t central; /* on the batch stack */
    uint64_t cached;  /* in live records' caches */
    uint64_t owned;   /* owner byte names a slot */
    uint64_t transit; /* owner byte says in transit */
    uint64_t regions; /* uncarved blocks on the region stack and in ranges */
} pshm_audit_t;
int pshm_audit_class(const pshm_seg_t *s, uint32_t c, pshm_audit_t *out, char *err, size_t errlen);

/* ---- corruption checks while workers run (pshm_verify.c) ---- */
enum pshm_corrupt_kind {
    PSHM_CORRUPT_NONE = 0,
    PSHM_CORRUPT_INDEX = 1,  /* an index out of range / not a block of its class */
    PSHM_CORRUPT_CYCLE = 2,  /* a list longer than it can be */
    PSHM_CORRUPT_TWICE = 3,  /* a block twice on the lists, or on a list and in a cache */
    PSHM_CORRUPT_OWNER = 4,  /* an owner byte that cannot be */
    PSHM_CORRUPT_RECORD = 5, /* a thread record's fields out of range */
};
typedef struct pshm_corruption {
    uint32_t kind; /* enum pshm_corrupt_kind */
    uint32_t cls;
    uint64_t where; /* the block index, record or span the finding is about */
    char what[240];
} pshm_corruption_t;
/* The checker's state, owned by the caller; budget: list entries walked
 * per class per call. Windows: records and spans per sampled call (0: 16). */
typedef struct pshm_verify {
    uint8_t *map; /* a bit per 8-byte index of the data area */
    uint64_t map_bytes;
    uint64_t dirty_lo, dirty_hi; /* bytes of map set since it was last cleared */
    uint64_t budget;
    uint32_t rec_window, rec_cursor;
    uint32_t span_window, span_cursor;
    uint32_t suspect, suspect_next;         /* block index + 1 seen owned by a free slot */
    uint32_t rec_suspect, rec_suspect_next; /* record * PSHM_MAX_CLASSES + class + 1 */
    uint64_t raced;                         /* list walks dropped: the head moved */
    uint64_t checks;
} pshm_verify_t;
int pshm_verify_init(pshm_verify_t *v, const pshm_seg_t *s, uint64_t budget);
void pshm_verify_free(pshm_verify_t *v);
/* One bounded check, valid while workers run (see pshm_verify.c): every
 * record and span with `full`, else a window of them (the cursors move on).
 * 0 clean, 1 corruption found (out says what and where). */
int pshm_verify(const pshm_seg_t *s, pshm_verify_t *v, bool full, pshm_corruption_t *out);

#endif /* PSHM_H */
