/* SPDX-License-Identifier: MIT */
/*
 * pshm_layout.h: the byte layout of a poold segment. Only shm/ knows it.
 *
 *   offset 0            header (struct pshm_header), one page
 *   classes_off         class table: one struct pshm_class per size class
 *   procs_off           process slots: struct pshm_proc[max_procs]
 *   threads_off         thread-cache records: max_threads * thread_bytes
 *   spanmap_off         span map: one byte per span: its class, a large block's
 *                       head or continuation, or 0xff (not carved, or free)
 *   carvers_off         span claims: one u64 per span, generation << 32 | the
 *                       record that holds it (0: free, in the pool of free spans)
 *   owner_slices_off    owner slices of the large classes: 64 bytes per span
 *   span_state_off      span states: one u64 per span, whether its memory is
 *                       committed and when it was last released (below)
 *   data_off            data spans, each span_bytes long, aligned to span_bytes
 *
 * Only the header and the tables (everything below data_off) are committed
 * when the segment is made; a span's memory is committed when it is claimed,
 * before anything is written into it (pshm_span_commit()), and poold gives
 * the memory of spans that stay free back to the system (pshm_span_purge()).
 *
 * Every block has an owner byte, outside the block (invariant 9, docs/design.md):
 * PSHM_OWN_FREE (in a list, a cache or never handed out), the process slot
 * that holds it plus one, PSHM_OWN_TRANSIT (handed off, waiting for a
 * receiver), PSHM_OWN_CHAN (in transit inside a channel: only a receiver
 * of the channel takes it, no free or adopt by offset does) or
 * PSHM_OWN_RECL (taken from a dead process by the reclaimer, on its way
 * into the reclaimer's cache: no free accepts it). A class with more than PSHM_GOWNER_SLICE blocks per span keeps
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
#define PSHM_ABI_VERSION 9u

/* Class numbers are below PSHM_MAX_CLASSES, itself below 0xf0: span-map
 * bytes 0xf0..0xff are kept for span states (PSHM_SPAN_FREE). */
#define PSHM_MAX_CLASSES 64u
#define PSHM_CACHE_CAP 64u   /* most blocks a thread caches per class */
#define PSHM_TCLASS_SHIFT 9u /* a thread record's per-class part: 512 bytes */
#define PSHM_TCLASS_BYTES (1u << PSHM_TCLASS_SHIFT)
#define PSHM_MIN_BLOCK 8u
#define PSHM_SPAN_SHIFT_MIN 16u /* spans are at least 64 KiB */
#define PSHM_MAX_SEGMENT (UINT64_C(32) << 30)
#define PSHM_HEADER_BYTES 4096u
#define PSHM_SPAN_FREE 0xffu  /* span map: span not carved, or free again */
#define PSHM_SPAN_LARGE 0xfeu /* span map: first span of a large block */
#define PSHM_SPAN_LCONT 0xfdu /* span map: a later span of a large block */
/* A span's claim word (carvers[]): the generation, bumped by each release,
 * and the mark of the record that holds it (0: free; PSHM_MARK_RAW: a
 * claim without a record). */
#define PSHM_CLAIM_MARK(w) ((uint32_t)(w))
#define PSHM_CLAIM_GEN(w) ((uint32_t)((w) >> 32))
#define PSHM_CLAIM_WORD(gen, mark) (((uint64_t)(gen) << 32) | (uint32_t)(mark))
#define PSHM_MARK_RAW UINT32_MAX
/* The mark of poold's purge (pshm_span_purge()): the span is free, taken out
 * of the pool while its memory is given back. */
#define PSHM_MARK_PURGE (UINT32_MAX - 1)
/* A span's state word (span_state[]): whether its memory is committed (in
 * /dev/shm now, so that touching it cannot fault for want of memory), and
 * the CLOCK_MONOTONIC millisecond of its last release. Written only by the
 * holder of the span's claim word (the claimer commits, the releaser stamps,
 * poold's purge clears): the claim word's acq_rel CASes order the writers. */
#define PSHM_STATE_COMMITTED (UINT64_C(1) << 63)
#define PSHM_STATE_FREED_MS(w) ((w) & ~PSHM_STATE_COMMITTED)
#define PSHM_NO_OWNER 0u
#define PSHM_IDX_NONE 0u
#define PSHM_GOWNER_SLICE 64u /* owner bytes per span for the large classes */

/* Owner bytes. */
#define PSHM_OWN_FREE 0u
#define PSHM_OWN_TRANSIT 0xffu
#define PSHM_OWN_RECL 0xfeu  /* taken from a dead process by its reclaimer */
#define PSHM_OWN_SWEPT 0xfdu /* free, held by the sweeper (the reclaim lock's holder) */
#define PSHM_OWN_CHAN 0xfcu  /* in transit inside a channel (pshm_chan.c) */
/* In transit, handed off by offset or inside a channel. */
#define PSHM_OWN_IN_TRANSIT(v) ((v) == PSHM_OWN_TRANSIT || (v) == PSHM_OWN_CHAN)
/* Lifetime buckets: upper bounds 1 us, 10 us, ... 10 s, then the rest. */
#define PSHM_LIFE_BUCKETS 9u
#define PSHM_LIFE_SAMPLE 4096u /* frees of a class per sampled allocation */
#define PSHM_MAX_PROCS 250u    /* owner values 1..250 name a slot */
#define PSHM_MAX_THREADS                                                                           \
    4093u /* a record's number fits a head's author field, and
                                 * its number + 1 a ring cell's who below 0xffe */

#define PSHM_DEFAULT_MAX_PROCS 64u
#define PSHM_DEFAULT_MAX_THREADS 256u
#define PSHM_CACHE_BYTES (128u << 10) /* a class's cache holds about this much */

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
    uint64_t span_state_off;
    uint64_t chans_off;      /* the channel table (struct pshm_chan[PSHM_MAX_CHANS]) */
    uint64_t chan_rings_off; /* their rings, PSHM_CHAN_RING_BYTES each */
    uint64_t data_off;
    uint64_t created_unix;
    int32_t creator_pid;
    uint32_t layout_check; /* sizeof of the records, to catch ABI drift */

    /* Mutable. */
    alignas(64) pa_u32 next_span; /* high water: no span at or above it was ever
                                     claimed (spans are claimed in their
                                     carvers[] word, pshm_span.c) */
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
    pa_u32 free_hint;             /* a hint: no span below it is free (pshm_span.c) */
    pa_u64 procs_exited;          /* slots given up by a clean end: a detach, or a reclaim
                            of a slot marked at exit or exec (struct pshm_proc) */
    pa_u64 reclaim_lock;          /* the one reclaimer at work: its pid | low 32 bits of its
                            start time << 32; 0: none (pshm_slots.c) */
    pa_u64 spans_free;            /* a hint: spans released below next_span and not
                            claimed again (pshm_span.c) */
    pa_u64 large_put_in_transit;  /* in-use large blocks put in transit without a
                                    record (a walk with no hands) */
    pa_u64 large_invalid_frees;   /* frees of large blocks refused */
    pa_u64 max_block;             /* the largest block served, in bytes; writer: format,
                         then poold (config max_block) */
    pa_u64 spans_purged;          /* spans whose memory poold's purge gave back, ever;
                                     writer: poold (one per segment) */
};

/*
 * Channels (shm/pshm_chan.c): named rings of blocks in transit between
 * processes. A fixed table of PSHM_MAX_CHANS; each channel's ring of at
 * most 2^PSHM_CHAN_SHIFT_MAX cells lives in its own slot of the rings
 * area. `word` says whether the entry is used: generation (32 bits) <<
 * 32 | members (16) << 16 | state (2); every change of it is one CAS, so
 * that a join, a leave and the freeing of the last member's channel
 * cannot cross. While INIT, `members` holds the creator's slot + 1 (its
 * reclaimer frees the entry). opens[slot] counts the slot's opens not yet
 * closed, so that a reclaimer takes a dead process's membership back.
 */
#define PSHM_MAX_CHANS 32u
#define PSHM_CHAN_NAME_MAX 47u     /* bytes of a name, without its NUL */
#define PSHM_CHAN_SHIFT_MAX 10u    /* a channel holds at most 1024 messages */
#define PSHM_CHAN_SHIFT_DEFAULT 8u /* 256 */
/* pshm_ring_bytes(PSHM_CHAN_SHIFT_MAX): the ring's 256-byte header and its
 * cells (checked in pshm_chan.c). */
#define PSHM_CHAN_RING_BYTES (256u + (8u << PSHM_CHAN_SHIFT_MAX))

enum pshm_chan_state {
    PSHM_CHAN_FREE = 0,
    PSHM_CHAN_INIT = 1, /* being made by the slot in `members` - 1 */
    PSHM_CHAN_LIVE = 2,
};
enum pshm_chan_kind {
    PSHM_CHAN_QUEUE = 1, /* each message to exactly one receiver */
    PSHM_CHAN_TOPIC = 2, /* each message to every subscriber, shared read-only */
};
#define PSHM_CHAN_WORD(gen, members, state)                                                        \
    ((uint64_t)(gen) << 32 | (uint64_t)((members)&0xffffu) << 16 | (uint64_t)(state))
#define PSHM_CHAN_GEN(w) ((uint32_t)((w) >> 32))
#define PSHM_CHAN_MEMBERS(w) ((uint32_t)((w) >> 16) & 0xffffu)
#define PSHM_CHAN_STATE(w) ((uint32_t)(w)&3u)

/*
 * A topic's subscriber (a seat). `word` is generation (32 bits) << 32 |
 * slot + 1 (16) << 16 | state (2), changed by its holder's CAS or store and
 * by the reclaimer of a dead holder. Positions are those of the ring: the
 * subscriber has received every message below `read` (that was sent to it)
 * and released every one below `rel`; done[] marks the positions in
 * [rel, rel + capacity) released out of order, bit (pos mod capacity). A
 * message at position p is still held while some ACTIVE seat has rel <= p
 * (or a seat is CLAIMING): the last release frees it. See docs/internals.md,
 * "Topics".
 */
#define PSHM_CHAN_SEATS 16u
enum pshm_seat_state {
    PSHM_SEAT_FREE = 0,
    PSHM_SEAT_CLAIM = 1, /* being taken: holds every message until ACTIVE */
    PSHM_SEAT_ACTIVE = 2,
};
#define PSHM_SEAT_WORD(gen, slot1, state)                                                          \
    ((uint64_t)(gen) << 32 | (uint64_t)((slot1)&0xffffu) << 16 | (uint64_t)(state))
#define PSHM_SEAT_GEN(w) ((uint32_t)((w) >> 32))
#define PSHM_SEAT_SLOT1(w) ((uint32_t)((w) >> 16) & 0xffffu)
#define PSHM_SEAT_STATE(w) ((uint32_t)(w)&3u)
struct pshm_seat {
    alignas(64) pa_u64 word;
    pa_u64 read;     /* next position to look at; receivers of the seat (CAS) */
    pa_u64 rel;      /* every position below is released; its one advancer */
    pa_u64 received; /* messages received (statistic, relaxed) */
    uint64_t joined_unix;
    uint64_t reserved[3];
    pa_u64 done[(1u << PSHM_CHAN_SHIFT_MAX) / 64];
};
_Static_assert(sizeof(struct pshm_seat) == 192, "a seat is three cache lines");

struct pshm_chan {
    pa_u64 word;    /* see above; writers: members (CAS) */
    uint32_t kind;  /* enum pshm_chan_kind; constant while LIVE */
    uint32_t shift; /* log2 of its capacity in messages; constant while LIVE */
    char name[PSHM_CHAN_NAME_MAX + 1];
    uint64_t created_unix;
    int32_t creator_pid;
    uint32_t reserved0;
    /* Per slot: opens not yet closed. Writers: the slot's process (relaxed
     * RMW, before its leave CAS) and its reclaimer. */
    pa_u8 opens[256];
    /* Per slot: its watchers of the ring (pshm_ring_watch()), which its
     * reclaimer takes off the ring's count. Writers: as opens[]. */
    pa_u8 watching[256];
    /* Per slot: its threads asleep in the ring's recv_waiters and
     * send_waiters (pshm_ring_wait()), which its reclaimer takes off those
     * counts. Writers: the slot's threads (relaxed CAS) and its reclaimer. */
    pa_u8 sleeping_recv[256];
    pa_u8 sleeping_send[256];
    /* Statistics: relaxed RMW, read by poold. The senders' on one cache
     * line, the receivers' on the next, so that a stream's two sides do
     * not pass a line back and forth on every message. */
    alignas(64) pa_u64 sent;     /* messages put in the ring */
    pa_u64 full_waits;           /* sends that found the ring full */
    pa_u64 unheard;              /* topic messages sent while nobody subscribed:
                                    freed at once */
    pa_u64 handed_on;            /* sent by a process that died before its handoff:
                                    put in transit by its reclaimer */
    alignas(64) pa_u64 received; /* messages taken and adopted by a receiver */
    pa_u64 refused;              /* messages dropped because their block was not the
                                    channel's when taken */
    pa_u64 freed;                /* topic messages freed after their last release */
    pa_u64 given_back;           /* taken by a receiver that died before it returned
                                    them: given back to the pool by its reclaimer */
    /* A topic's subscribers. */
    struct pshm_seat seats[PSHM_CHAN_SEATS];
};
_Static_assert(PSHM_MAX_PROCS < 256, "opens[] covers every slot");
_Static_assert(sizeof(struct pshm_chan) % 64 == 0, "channel entries are cache-line sized");

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

    /* Block lifetimes, sampled: for about one allocation in
     * PSHM_LIFE_SAMPLE, the time from its malloc to its free by the same
     * thread, counted in the bucket of PSHM_LIFE_BOUNDS_NS it falls in, and
     * summed. Relaxed RMW (pshm_life_note): statistics with many writers,
     * reached once per sample. */
    alignas(64) pa_u64 life[PSHM_LIFE_BUCKETS];
    pa_u64 life_ns; /* sum of the sampled lifetimes, nanoseconds */
};

enum pshm_proc_state {
    PSHM_PROC_FREE = 0,
    PSHM_PROC_CLAIMING = 1, /* a process is filling it in (with its pid: below) */
    PSHM_PROC_LIVE = 2,
    PSHM_PROC_RECLAIMING = 3, /* a reclaimer is emptying it */
};

/* How a process slot was claimed (struct pshm_proc, via_daemon). */
enum pshm_via {
    PSHM_VIA_DIRECT = 0, /* an embedded pool, or a process that opened the segment itself */
    PSHM_VIA_DAEMON = 1, /* a worker attached through poold */
    PSHM_VIA_POOLD = 2,  /* poold's own slot (its reclaims) */
};

/* The state a claim stores by its CAS from FREE: CLAIMING with the
 * claimer's pid in the bits above the state (pids are below 2^22), so that
 * a reclaimer can tell a claimer that died before its slot went LIVE and
 * give the slot back (pshm_slots.c). A CLAIMING word without a pid (0) is
 * never judged dead. */
#define PSHM_PROC_CLAIMING_BY(pid) (((uint32_t)(pid) << 2) | (uint32_t)PSHM_PROC_CLAIMING)
#define PSHM_PROC_IS_CLAIMING(st) (((st)&3u) == (uint32_t)PSHM_PROC_CLAIMING)
#define PSHM_PROC_CLAIMER(st) ((int32_t)((st) >> 2))

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
    pa_u32 via_daemon;    /* enum pshm_via */
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
    /* Three words, named by the step that writes them (the same words
     * under each name: word[i]). */
    union {
        struct {
            uint32_t node; /* POP, RPOP: the node the pop takes */
        } pop;
        struct {
            uint32_t node;   /* PUSH: the first node of the batch pushed */
            uint32_t blocks; /* blocks in the batch */
            uint32_t slots;  /* cache entries it came from */
        } push;
        struct {
            uint32_t start, end; /* RPUSH, INSTALL: the range [start, end) */
            uint32_t span;       /* CARVE: the span claimed; the third word, so
                                    that the INSTALL that follows, which writes
                                    the first two before its op replaces CARVE,
                                    never overwrites it */
        } range;
        struct {
            uint32_t idx; /* HANDOFF, ADOPT: the block */
        } block;
        struct {
            uint32_t start, end; /* RRUN: blocks [start, end) taken so far */
            uint32_t candidate;  /* the next block, before its CAS */
        } run;
        struct {
            uint32_t head;  /* LCLAIM, LFREE: the block's first span */
            uint32_t spans; /* its length in spans */
        } large;
        uint32_t word[3];
    };
    uint32_t reserved;
    uint64_t ctr; /* moved_in / moved_out / handoffs / adopts before the step */
};

enum pshm_pend_op {
    PSHM_PEND_NONE = 0,
    PSHM_PEND_POP = 1,       /* refill: pop batch pop.node from central */
    PSHM_PEND_PUSH = 2,      /* flush: push the batch at push.node */
    PSHM_PEND_RPOP = 3,      /* pop region node pop.node */
    PSHM_PEND_RPUSH = 4,     /* push region range [start, end) */
    PSHM_PEND_CARVE = 5,     /* claim span range.span */
    PSHM_PEND_INSTALL = 6,   /* range [start, end) is ours, being installed */
    PSHM_PEND_HANDOFF = 7,   /* block.idx: owned -> transit */
    PSHM_PEND_ADOPT = 8,     /* block.idx: transit -> owned */
    PSHM_PEND_RRUN = 9,      /* run [start, end) (+ candidate) of a dead slot -> a region;
                              count: 0 taking them, 1 pushing the region */
    PSHM_PEND_LCLAIM = 10,   /* large: claim the run [large.head, + large.spans) with
                              claim word `tag` (struct pshm_tlarge) */
    PSHM_PEND_LFREE = 11,    /* large: give back the block at large.head, whose
                              spans hold claim word `tag` */
    PSHM_PEND_SRELEASE = 12, /* sweep: give span range.span (claim word `tag`), all
                                of whose blocks the record holds SWEPT, back to
                                the free spans; ctr: uncarved before */
    PSHM_PEND_CHANDOFF = 13, /* channel send: block.idx, the record's own block, whose
                                message is in a ring cell: owned -> transit. Done
                                once its byte is no longer ours (in transit, or
                                adopted already by its receiver) */
    PSHM_PEND_CHANPUT = 14,  /* a reclaimer's move of block.idx from owner byte
                                `count` into a channel (CHAN): a handoff of the
                                record's. Done once the byte is no longer `count` */
    PSHM_PEND_CHANBACK = 15, /* a reclaimer's move of block.idx out of a channel
                                (CHAN) into a dead slot's hands: an adopt of the
                                record's. Done once the byte is no longer CHAN */
    PSHM_PEND_LAST = PSHM_PEND_CHANBACK,
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
    union {
        uint32_t slots[PSHM_CACHE_CAP + 1]; /* the cache: slots[1..count] */
        /* slots[0]'s place, in hot's cache line: the block of this class
         * this thread is timing (lifetime sampling, client/slow.c), 0 when
         * none. Written and read by the owner thread only, reset at claim;
         * a reclaim or a check never reads it. */
        uint32_t life_idx;
    };
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
    uint64_t life_t0; /* CLOCK_MONOTONIC ns at life_idx's malloc; owner thread only */
    uint8_t pad[PSHM_TCLASS_BYTES - 48 - 4 * (PSHM_CACHE_CAP + 2) - 88 - 40 - 16 - 8];
};

struct pshm_thread {
    pa_u32 owner; /* PSHM_NO_OWNER or proc slot + 1; claim by CAS, release store */
    pa_i32 tid;
    uint32_t reserved[14];
    struct pshm_tclass cls[]; /* nclasses of them */
};

/*
 * A thread record's part for large blocks (runs of whole spans), after its
 * nclasses struct pshm_tclass and as long as one. Single writer like a
 * tclass, and journaled in `pend` like one (pshm_large.c): a reclaimer
 * finishes or undoes a dead record's step from it.
 */
struct pshm_tlarge {
    pa_u64 allocs;                  /* large blocks this record allocated */
    pa_u64 frees;                   /* large blocks this record freed */
    pa_u64 handoffs;                /* large blocks this record put in transit */
    pa_u64 adopts;                  /* large blocks this record took from transit */
    pa_u64 reclaimed;               /* in-use large blocks of dead processes it gave back */
    pa_u64 exhausted;               /* requests refused: no run of free spans long enough */
    pa_u64 base_allocs, base_frees; /* at claim: for per-process figures */
    struct pshm_pending pend;
    /* The first span of the run this record gave back last, plus one (0:
     * none): its next large block tries that run first, before the
     * best-fit scan, if the run still starts a free run there. A hint,
     * written by the record's thread only. */
    pa_u64 last_run;
    uint8_t pad[PSHM_TCLASS_BYTES - 64 - sizeof(struct pshm_pending) - 8];
};

_Static_assert(sizeof(struct pshm_tlarge) == PSHM_TCLASS_BYTES, "large part: one tclass stride");
_Static_assert(sizeof(struct pshm_header) <= PSHM_HEADER_BYTES, "header fits its page");
_Static_assert(sizeof(struct pshm_header) == 384, "header size (PSHM_LAYOUT_CHECK reads it)");
_Static_assert(sizeof(struct pshm_head) == 16 && alignof(struct pshm_head) == 16,
               "a head is one 16-byte CAS");
_Static_assert(sizeof(struct pshm_class) % 64 == 0, "class records are cache-line sized");
_Static_assert(sizeof(struct pshm_proc) == 64, "one proc slot per cache line");
_Static_assert(sizeof(struct pshm_thread) == 64, "thread record header is one line");
_Static_assert(sizeof(struct pshm_tclass) == PSHM_TCLASS_BYTES, "tclass stride is a power of two");
_Static_assert(offsetof(struct pshm_header, magic) == 0, "magic first");
_Static_assert(PSHM_MAX_CLASSES < 0xf0u, "a class number fits a span-map byte below its states");

/* Sizes and offsets that change with the layout: the span states (the
 * header's span_state_off and spans_purged, sizeof unchanged) enter by the
 * offset of spans_purged. */
#define PSHM_LAYOUT_CHECK                                                                          \
    ((uint32_t)(sizeof(struct pshm_class) ^ (sizeof(struct pshm_tclass) << 8) ^                    \
                (sizeof(struct pshm_proc) << 16) ^ (sizeof(struct pshm_header) << 20) ^            \
                (offsetof(struct pshm_tclass, pend) << 4) ^                                        \
                (offsetof(struct pshm_header, spans_purged) << 12) ^                               \
                (sizeof(struct pshm_chan) << 24)))

#endif /* PSHM_LAYOUT_H */
