/* SPDX-License-Identifier: MIT */
/*
 * pshm_layout.h: the byte layout of a poold segment. Only shm/ knows it.
 *
 *   offset 0            header (struct pshm_header), one page
 *   classes_off         class table: one struct pshm_class per size class
 *   procs_off           process slots: struct pshm_proc[max_procs]
 *   threads_off         thread-cache records: max_threads * thread_bytes
 *   spanmap_off         span map: one byte per span, its class (0xff: not carved)
 *   carvers_off         span carvers: one u32 per span, the record that carved it
 *   owner_slices_off          owner slices of the large classes: 64 bytes per span
 *   data_off            data spans, each span_bytes long, aligned to span_bytes
 *
 * Every block has an owner byte, outside the block (invariant 9, docs/design.md):
 * PSHM_OWN_FREE (in a list, a cache or never handed out), the process slot
 * that holds it plus one, PSHM_OWN_TRANSIT (handed off, waiting for a
 * receiver) or PSHM_OWN_RECL (taken from a dead process by the reclaimer,
 * on its way into the reclaimer's cache: no free accepts it). A class with more than PSHM_GOWNER_SLICE blocks per span keeps
 * its owner bytes at the tail of each span (the span holds fewer blocks); a
 * larger class keeps them in the span's 64-byte slice at owner_slices_off. Either
 * way the byte of the block at in-span offset `in` of span n is at
 *   owner_base[c] + (n << owner_span_shift[c]) + in / block_size
 * (pshm_owner()), and the entries past the last block stay FREE, so that a
 * pointer into a span's tail is refused as not in use.
 *
 * Everything in the segment refers to everything else by offset: each
 * process maps it at a different address. Block references inside the
 * segment are 32-bit "indices", the byte offset divided by 8 (blocks are
 * 8-byte aligned), so a segment holds at most 32 GiB; index 0 is the header,
 * never a block, and stands for "none".
 *
 * Invariant, per class, whenever no thread is inside pool_malloc/pool_free:
 *   blocks_central + blocks_cached + blocks_in_use + blocks_in_transit
 *     == blocks_carved
 * counted two ways: from the records' counters (struct pshm_tclass), and
 * physically, by walking the lists, the caches and the owner bytes.
 * pshm_check() holds the two to each other.
 */
#ifndef PSHM_LAYOUT_H
#define PSHM_LAYOUT_H

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#include "pshm_atomic.h"

/* "POOLDSEG" read as a little-endian 64-bit word. */
#define PSHM_MAGIC UINT64_C(0x474553444c4f4f50)
#define PSHM_ABI_VERSION 4u

#define PSHM_MAX_CLASSES 32u
#define PSHM_CACHE_CAP 64u   /* most blocks a thread caches per class */
#define PSHM_TCLASS_SHIFT 9u /* a thread record's per-class part: 512 bytes */
#define PSHM_TCLASS_BYTES (1u << PSHM_TCLASS_SHIFT)
#define PSHM_MIN_BLOCK 8u
#define PSHM_SPAN_SHIFT_MIN 16u /* spans are at least 64 KiB */
#define PSHM_MAX_SEGMENT (UINT64_C(32) << 30)
#define PSHM_HEADER_BYTES 4096u
#define PSHM_SPAN_FREE 0xffu /* span map: span not carved yet */
#define PSHM_NO_OWNER 0u
#define PSHM_IDX_NONE 0u
#define PSHM_GOWNER_SLICE 64u /* owner bytes per span for the large classes */

/* Owner bytes. */
#define PSHM_OWN_FREE 0u
#define PSHM_OWN_TRANSIT 0xffu
#define PSHM_OWN_RECL 0xfeu    /* taken from a dead process by its reclaimer */
#define PSHM_MAX_PROCS 250u    /* owner values 1..250 name a slot */
#define PSHM_MAX_THREADS 4095u /* a record's number fits a head's author field */

#define PSHM_DEFAULT_MAX_PROCS 64u
#define PSHM_DEFAULT_MAX_THREADS 256u
#define PSHM_CACHE_BYTES (256u << 10) /* a class's cache holds about this much */

/*
 * Stack heads: 16 bytes, moved by one 16-byte CAS (cmpxchg16b). The low
 * word holds the 12-bit author (the thread record that wrote the head, plus
 * one; 0: none) and the 32-bit index of the top node; the high word, a
 * 64-bit generation that every move of the head increments. The generation
 * makes a CAS fail on a head that was popped and pushed again since it was
 * read (ABA), and at 2^64 moves it never wraps (a list moving 10^8 times a
 * second needs 5,800 years); the author lets a reclaimer tell whether a dead
 * thread's CAS took effect (pshm_central.c, "receipts").
 */
struct pshm_head {
    alignas(16) pa_u64 w; /* author << 32 | index of the top node */
    pa_u64 gen;           /* moves of the head so far */
};
#define PSHM_HEAD_IDX(w) ((uint32_t)((w)&0xffffffffu))
#define PSHM_HEAD_AUTHOR(w) ((uint32_t)((w) >> 32) & 0xfffu)
#define PSHM_HEAD_WORD(author, idx) (((uint64_t)(author) << 32) | (uint64_t)(idx))

/*
 * Header. Constant fields are written once by pshm_format() before the magic
 * is published with a release store; readers load the magic with acquire.
 */
struct pshm_header {
    pa_u64 magic;           /* written last by format (release) */
    uint32_t abi_version;   /* PSHM_ABI_VERSION */
    uint32_t header_bytes;  /* sizeof(struct pshm_header) */
    uint64_t segment_bytes; /* whole mapping */
    uint32_t span_shift;    /* log2(span bytes) */
    uint32_t nspans;
    uint32_t nclasses;
    uint32_t max_procs;
    uint32_t max_threads;
    uint32_t thread_bytes; /* one thread record */
    uint64_t classes_off;
    uint64_t procs_off;
    uint64_t threads_off;
    uint64_t spanmap_off;
    uint64_t carvers_off;
    uint64_t owner_slices_off;
    uint64_t data_off;
    uint64_t created_unix;
    int32_t creator_pid;
    uint32_t layout_check; /* sizeof of the records, to catch ABI drift */

    /* Mutable. */
    alignas(64) pa_u32 next_span; /* carving cursor, a hint: spans are claimed
                                     in their carvers[] word (pshm_span.c) */
    pa_i32 daemon_pid;            /* writer: poold; 0 = none (embedded) */
    pa_u64 daemon_gen;            /* bumped by each poold that adopts */
    pa_u64 daemon_started_unix;   /* writer: poold */
    pa_u64 daemon_start_time;     /* writer: poold; its /proc starttime (tells pid reuse) */
    pa_u64 procs_reclaimed;       /* writer: reclaimer (poold or embedded owner) */
    pa_u64 blocks_reclaimed;      /* cached blocks given back from dead processes */
    pa_u64 blocks_orphaned;       /* in-use blocks of dead processes put in transit (keep) */
    pa_u64 entries_dropped;       /* invalid cache entries found at reclaim */
    pa_u64 uncached_ops;          /* ops done without a thread record (records full) */
    pa_u64 reclaimed_in_use;      /* in-use blocks of dead processes given back */
    pa_u32 orphans_keep;          /* writer: poold (config); 1: put them in transit */
    pa_u32 reserved_m;
    pa_u64 procs_exited; /* slots given up by a clean end: a detach, or a reclaim
                            of a slot marked at exit or exec (struct pshm_proc) */
    pa_u64 reclaim_lock; /* the one reclaimer at work: its pid | low 32 bits of its
                            start time << 32; 0: none (pshm_slots.c) */
};

/* One size class. Constant part first, then the two hot stack heads on
 * their own cache lines so that refills of one class do not bounce the other. */
struct pshm_class {
    uint32_t block_size;
    uint32_t blocks_per_span;
    uint32_t cache_cap; /* <= PSHM_CACHE_CAP */
    uint32_t batch;     /* blocks moved per refill/flush, cache_cap / 2 */
    uint32_t shift;     /* log2(block_size) when a power of two, else 0 */
    uint32_t reserved[11];

    /* Batch stack: each node is the first block of a chain of up to `batch`
     * free blocks. Node word: high 32 = next node, low 32 = next block in
     * chain. Writers: pshm_central.c (CAS). */
    alignas(64) struct pshm_head central;

    /* Region stack: uncarved remainders of spans left by exited threads.
     * Node word: high 32 = next node, low 32 = end index of the region. */
    alignas(64) struct pshm_head regions;

    /* Operations without a thread record (records full: "uncached"), and
     * what reclaimers and refused frees count. Relaxed RMW: statistics with
     * many writers, slow paths only. Thread records keep their own counters
     * for good (never folded here), so that no crash can count twice. */
    alignas(64) pa_u64 uncached_allocs;
    pa_u64 uncached_frees;
    pa_u64 uncached_carved;
    pa_u64 uncached_pushed; /* blocks pushed on the batch stack uncached */
    pa_u64 uncached_popped;
    pa_u64 uncached_exhausted;
    pa_u64 put_in_transit;   /* in-use blocks put in transit by a detach or reclaim */
    pa_u64 invalid_frees;    /* frees refused: not in use (double free) */
    pa_u64 reclaimed_in_use; /* in-use blocks of dead processes given back */
};

enum pshm_proc_state {
    PSHM_PROC_FREE = 0,
    PSHM_PROC_CLAIMING = 1, /* a process is filling it in */
    PSHM_PROC_LIVE = 2,
    PSHM_PROC_RECLAIMING = 3, /* a reclaimer is emptying it */
};

#define PSHM_VIA_POOLD 2u /* via_daemon of poold's own slot (its reclaims) */

/* How the process holding a slot said it ends (struct pshm_proc, `ended`):
 * a reclaim of a slot marked so counts as an exit, not as a crash. */
enum pshm_proc_end {
    PSHM_END_NONE = 0, /* running, or died without saying so (a crash) */
    PSHM_END_EXIT = 1, /* exit(), a return from main, _exit() (preload) */
    PSHM_END_EXEC = 2, /* replaced by exec: the pid lives on in a new image */
};

/* A process slot. Written by the owner at claim, by a reclaimer at death;
 * read by anyone for statistics. */
struct pshm_proc {
    pa_u32 state; /* enum pshm_proc_state; CAS transitions */
    pa_i32 pid;
    pa_u64 start_time; /* /proc/<pid>/stat starttime: tells pid reuse */
    pa_u64 attached_unix;
    pa_u32 via_daemon;    /* 1: attached through poold */
    pa_i32 reclaimer;     /* RECLAIMING: pid of the reclaimer (taken over if it dies) */
    pa_u64 folded_allocs; /* counters of the process's exited threads (display) */
    pa_u64 folded_frees;
    pa_u64 r_cmiss;
    pa_u32 image; /* writer: poold at HELLO; the holder's process image (a number
                     drawn anew at each exec), 0: unknown */
    pa_u32 ended; /* enum pshm_proc_end; writer: the holder at its end, or poold
                     when a new image of the pid says HELLO */
};

/* Per class part of a thread record. Written by its owner thread only
 * (single writer), or by a reclaimer once the owner is dead; counters,
 * count and hot are read live by statistics, so they are atomics accessed
 * relaxed; slots[] is read only by a reclaimer after the owner died or by
 * the owner itself.
 *
 * The cache is a LIFO stack: `hot`, the block freed last, on top of
 * slots[1..count]. Burn-after-reading (free, then malloc of the same class)
 * only moves a block in and out of `hot`: free stores it, malloc takes it,
 * neither touches `count`, so the two calls share one memory round trip
 * instead of two. A free that finds `hot` holding a block pushes it down
 * into slots[].
 *
 * `hot` holds 0 (empty), the byte offset of a block (cached: positive as an
 * int64_t, since offsets are below PSHM_MAX_SEGMENT), or the bitwise NOT of
 * a block's offset (negative): the block malloc took from `hot` last, not
 * cached, a note that lets the free of exactly that block skip the span-map
 * check (the block came from this cache, so it is a block of this class).
 *
 * `fresh_w` packs the carving cursor (low 32 bits: index of the next block
 * of the thread's span) and the count of blocks carved (high 32), so that
 * one store moves both: a crash can never carve a block without counting it.
 * The range is [fresh_w low, fresh_end).
 *
 * Nothing is counted on malloc's fast path; the figures are derived:
 *   cached = count + hot_cached
 *   allocs = fresh + frees + moved_in - moved_out - cached
 *   in use = allocs - frees - handoffs + adopts - uncarved  (summed over records)
 *   carved = fresh - uncarved
 *   same   = frees - displaced - hot_cached   (mallocs that took `hot`)
 * where hot_cached = ((int64_t)hot > 0). Counters are never reset: a record
 * reused by another thread goes on counting, and statistics subtract the
 * base_* taken when it was claimed for per-process figures.
 *
 * Crash consistency: every step that moves blocks between this record and
 * a shared list is journaled in `pend` first (pshm_central.c), and the
 * owner byte of a block is written before the cache word that takes it out
 * and cleared after the cache word that takes it in, so that a reclaimer
 * finds each block of a dead thread in exactly one place.
 */
struct pshm_pending {
    pa_u32 op;      /* enum pshm_pend_op; release-stored after the fields below */
    uint32_t count; /* `count` before the step */
    uint64_t tag;   /* head generation the CAS expects */
    uint32_t a, b;  /* node, block, span or region start / end or count */
    uint32_t n;     /* slots in the batch */
    uint32_t reserved;
    uint64_t ctr; /* moved_in / moved_out / handoffs / adopts before the step */
};

enum pshm_pend_op {
    PSHM_PEND_NONE = 0,
    PSHM_PEND_POP = 1,     /* refill: pop batch node a from central */
    PSHM_PEND_PUSH = 2,    /* flush: push batch node a (n slots, b blocks) */
    PSHM_PEND_RPOP = 3,    /* pop region node a */
    PSHM_PEND_RPUSH = 4,   /* push region [a, b) */
    PSHM_PEND_CARVE = 5,   /* claim span n (not a: the install that follows
                              writes a and b before its op replaces this one) */
    PSHM_PEND_INSTALL = 6, /* region [a, b) is ours, being installed */
    PSHM_PEND_HANDOFF = 7, /* block a: owned -> transit */
    PSHM_PEND_ADOPT = 8,   /* block a: transit -> owned */
    PSHM_PEND_RRUN = 9,    /* blocks [a, b) (+ candidate n) of a dead slot -> a region;
                              count: 0 taking them, 1 pushing the region */
    PSHM_PEND_LAST = PSHM_PEND_RRUN,
};

struct pshm_tclass {
    pa_u64 hot;         /* see above */
    pa_u32 count;       /* blocks in slots[1..count] under hot */
    uint32_t fresh_end; /* carving region end (index) */
    pa_u64 fresh_w;     /* carving cursor and carved count, see above */
    pa_u64 frees;
    pa_u64 displaced; /* hot blocks that left hot other than by malloc */
    /* Offset of the owner byte of the block in (or noted in) hot: written
     * with hot, read by this thread only; a cache of pshm_owner() for the
     * burn-after-reading pair. */
    uint64_t hot_own;
    uint32_t slots[PSHM_CACHE_CAP + 1]; /* slots[0] unused */
    uint32_t reserved2;
    /* Cold: counted on slow paths only. */
    pa_u64 moved_in;       /* blocks refilled from the central list */
    pa_u64 moved_out;      /* blocks flushed to the central list */
    pa_u64 cache_misses;   /* cache empty, went to central */
    pa_u64 central_misses; /* central empty, carved a span */
    pa_u64 exhausted;
    pa_u64 handoffs;    /* blocks this thread put in transit */
    pa_u64 adopts;      /* blocks this thread took from transit */
    pa_u64 uncarved;    /* in-use blocks of dead processes this record (a
                        reclaimer's) gave back as uncarved regions */
    pa_u64 base_allocs; /* at claim: for per-process figures */
    pa_u64 base_frees;
    pa_u64 base_cache_misses;
    struct pshm_pending pend;
    /* Receipts: the newest generation of each list head that this record
     * wrote (max-CAS by any thread that read it; pshm_central.c). */
    pa_u64 receipts[2];
    uint8_t pad[PSHM_TCLASS_BYTES - 48 - 4 * (PSHM_CACHE_CAP + 2) - 88 - 40 - 16];
};

struct pshm_thread {
    pa_u32 owner; /* PSHM_NO_OWNER or proc slot + 1; claim by CAS, release store */
    pa_i32 tid;
    uint32_t reserved[14];
    struct pshm_tclass cls[]; /* nclasses of them */
};

_Static_assert(sizeof(struct pshm_header) <= PSHM_HEADER_BYTES, "header fits its page");
_Static_assert(sizeof(struct pshm_header) == 256, "header size (PSHM_LAYOUT_CHECK reads it)");
_Static_assert(sizeof(struct pshm_head) == 16 && alignof(struct pshm_head) == 16,
               "a head is one 16-byte CAS");
_Static_assert(sizeof(struct pshm_class) % 64 == 0, "class records are cache-line sized");
_Static_assert(sizeof(struct pshm_proc) == 64, "one proc slot per cache line");
_Static_assert(sizeof(struct pshm_thread) == 64, "thread record header is one line");
_Static_assert(sizeof(struct pshm_tclass) == PSHM_TCLASS_BYTES, "tclass stride is a power of two");
_Static_assert(offsetof(struct pshm_header, magic) == 0, "magic first");

#define PSHM_LAYOUT_CHECK                                                                          \
    ((uint32_t)(sizeof(struct pshm_class) ^ (sizeof(struct pshm_tclass) << 8) ^                    \
                (sizeof(struct pshm_proc) << 16) ^ (sizeof(struct pshm_header) << 20) ^            \
                (offsetof(struct pshm_tclass, pend) << 4)))

#endif /* PSHM_LAYOUT_H */
