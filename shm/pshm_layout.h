/* SPDX-License-Identifier: MIT */
/*
 * pshm_layout.h: the byte layout of a poold segment. Only shm/ knows it.
 *
 *   offset 0            header (struct pshm_header), one page
 *   classes_off         class table: one struct pshm_class per size class
 *   procs_off           process slots: struct pshm_proc[max_procs]
 *   threads_off         thread-cache records: max_threads * thread_bytes
 *   spanmap_off         span map: one byte per span, its class (0xff: not carved)
 *   data_off            data spans, each span_bytes long, aligned to span_bytes
 *
 * Everything in the segment refers to everything else by offset: each
 * process maps it at a different address. Block references inside the
 * segment are 32-bit "indices", the byte offset divided by 8 (blocks are
 * 8-byte aligned), so a segment holds at most 32 GiB; index 0 is the header,
 * never a block, and stands for "none".
 *
 * Invariant, per class, whenever no thread is inside pool_malloc/pool_free:
 *   blocks_central + blocks_cached + blocks_in_use == blocks_carved
 * where blocks_carved is the sum of the threads' `fresh` counters (blocks cut
 * from spans), blocks_in_use the sum of allocs - frees (allocs derived, see
 * struct pshm_tclass). pshm_check() enforces it.
 */
#ifndef PSHM_LAYOUT_H
#define PSHM_LAYOUT_H

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#include "pshm_atomic.h"

/* "POOLDSEG" read as a little-endian 64-bit word. */
#define PSHM_MAGIC UINT64_C(0x474553444c4f4f50)
#define PSHM_ABI_VERSION 2u

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

#define PSHM_DEFAULT_MAX_PROCS 64u
#define PSHM_DEFAULT_MAX_THREADS 256u
#define PSHM_CACHE_BYTES (256u << 10) /* a class's cache holds about this much */

/* Tagged stack heads: generation in the high 32 bits, index in the low. */
#define PSHM_HEAD_IDX(w) ((uint32_t)((w)&0xffffffffu))
#define PSHM_HEAD_TAG(w) ((uint32_t)((w) >> 32))
#define PSHM_HEAD_MAKE(tag, idx) (((uint64_t)(tag) << 32) | (uint64_t)(idx))

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
    uint64_t data_off;
    uint64_t created_unix;
    int32_t creator_pid;
    uint32_t layout_check; /* sizeof of the records, to catch ABI drift */

    /* Mutable. */
    alignas(64) pa_u32 next_span; /* carving cursor: writers CAS, all read */
    pa_i32 daemon_pid;            /* writer: poold; 0 = none (embedded) */
    pa_u64 daemon_gen;            /* bumped by each poold that adopts */
    pa_u64 daemon_started_unix;   /* writer: poold */
    pa_u64 daemon_start_time;     /* writer: poold; its /proc starttime (tells pid reuse) */
    pa_u64 procs_reclaimed;       /* writer: reclaimer (poold or embedded owner) */
    pa_u64 blocks_reclaimed;      /* cached blocks given back from dead processes */
    pa_u64 blocks_orphaned;       /* blocks dead processes still had in use */
    pa_u64 entries_dropped;       /* invalid cache entries found at reclaim */
    pa_u64 uncached_ops;          /* ops done without a thread record (records full) */
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
     * chain. Writers: pshm_central_push/pop (CAS). */
    alignas(64) pa_u64 central;
    pa_u64 central_blocks; /* statistic: blocks on the batch stack (relaxed) */

    /* Region stack: uncarved remainders of spans left by exited threads.
     * Node word: high 32 = next node, low 32 = end index of the region. */
    alignas(64) pa_u64 regions;
    pa_u64 region_blocks; /* statistic */
    pa_u64 spans_carved;  /* statistic */

    /* Counters of threads that are gone (folded in at thread exit or
     * reclaim, relaxed RMW: statistics, many writers, slow path only). */
    alignas(64) pa_u64 r_allocs;
    pa_u64 r_frees;
    pa_u64 r_fresh;
    pa_u64 r_same;
    pa_u64 r_cmiss;
    pa_u64 r_cenmiss;
    pa_u64 r_exhausted;
};

enum pshm_proc_state {
    PSHM_PROC_FREE = 0,
    PSHM_PROC_CLAIMING = 1, /* a process is filling it in */
    PSHM_PROC_LIVE = 2,
    PSHM_PROC_RECLAIMING = 3, /* a reclaimer is emptying it */
};

/* A process slot. Written by the owner at claim, by a reclaimer at death;
 * read by anyone for statistics. */
struct pshm_proc {
    pa_u32 state; /* enum pshm_proc_state; CAS transitions */
    pa_i32 pid;
    pa_u64 start_time; /* /proc/<pid>/stat starttime: tells pid reuse */
    pa_u64 attached_unix;
    pa_u32 via_daemon; /* 1: attached through poold */
    pa_u32 reserved;
    pa_u64 r_allocs; /* counters of the process's exited threads */
    pa_u64 r_frees;
    pa_u64 r_cmiss;
    pa_u64 reserved2[1];
};

/* Per class part of a thread record. Written by its owner thread only
 * (single writer); counters, count and hot are read live by statistics, so
 * they are atomics accessed relaxed; slots[] is read only by a reclaimer
 * after the owner died or by the owner itself.
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
 * Offsets rather than indices: malloc adds the word to the base as it is,
 * and free's check is one exact compare, hot == ~(ptr - base), with no
 * alignment test.
 *
 * Nothing is counted on malloc's fast path; the figures are derived:
 *   cached = count + hot_cached
 *   allocs = fresh + frees + moved_in - moved_out - cached
 *   same   = frees - displaced - hot_cached   (mallocs that took `hot`)
 * where hot_cached = ((int64_t)hot > 0).
 */
struct pshm_tclass {
    pa_u64 hot;          /* see above */
    pa_u32 count;        /* blocks in slots[1..count] under hot */
    uint32_t fresh_next; /* carving region [fresh_next, fresh_end) */
    uint32_t fresh_end;
    uint32_t reserved0;
    pa_u64 frees;
    pa_u64 displaced;                   /* hot blocks that left hot other than by malloc */
    uint32_t slots[PSHM_CACHE_CAP + 1]; /* slots[0] unused */
    uint32_t reserved2;
    /* Cold: counted on slow paths only. */
    pa_u64 moved_in;  /* blocks refilled from the central list */
    pa_u64 moved_out; /* blocks flushed to the central list */
    pa_u64 fresh;     /* allocations cut fresh from a span */
    pa_u64 cmiss;     /* cache empty, went to central */
    pa_u64 cenmiss;   /* central empty, carved a span */
    pa_u64 exhausted;
    uint8_t pad[PSHM_TCLASS_BYTES - 40 - 4 * (PSHM_CACHE_CAP + 2) - 48];
};

struct pshm_thread {
    pa_u32 owner; /* PSHM_NO_OWNER or proc slot + 1; claim by CAS, release store */
    pa_i32 tid;
    uint32_t reserved[14];
    struct pshm_tclass cls[]; /* nclasses of them */
};

_Static_assert(sizeof(struct pshm_header) <= PSHM_HEADER_BYTES, "header fits its page");
_Static_assert(sizeof(struct pshm_class) % 64 == 0, "class records are cache-line sized");
_Static_assert(sizeof(struct pshm_proc) == 64, "one proc slot per cache line");
_Static_assert(sizeof(struct pshm_thread) == 64, "thread record header is one line");
_Static_assert(sizeof(struct pshm_tclass) == PSHM_TCLASS_BYTES, "tclass stride is a power of two");
_Static_assert(offsetof(struct pshm_header, magic) == 0, "magic first");

#define PSHM_LAYOUT_CHECK                                                                          \
    ((uint32_t)(sizeof(struct pshm_class) ^ (sizeof(struct pshm_tclass) << 8) ^                    \
                (sizeof(struct pshm_proc) << 16) ^ (sizeof(struct pshm_header) << 20)))

#endif /* PSHM_LAYOUT_H */
