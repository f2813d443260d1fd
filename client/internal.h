/* SPDX-License-Identifier: MIT */
/*
 * internal.h: libpoolclient's private structures. Never installed; poolctl
 * never includes it.
 *
 * A pool_t is process-local: the mapping, a validated view of the segment,
 * this process's slot and a size-to-class table. Each thread finds its
 * cache record for a pool through a thread-local table indexed by the pool's
 * `idx`; the entry is valid only while its `serial` equals the pool's (a
 * detached pool's idx can be reused by a later pool with a new serial).
 */
#ifndef POOL_INTERNAL_H
#define POOL_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "poolclient.h"
#include "pshm.h"

#define POOL_MAX_OPEN 16     /* pools open at once in one process */
#define POOL_SMALL_MAX 65536 /* sizes up to this map to a class with one table load */

struct pool {
    /* Hot: the fast path reads these and the head of seg. */
    uint32_t idx;    /* index in the thread-local table */
    uint64_t serial; /* unique per open pool */
    uint64_t max_size;
    uint64_t small_limit; /* min(max_size, POOL_SMALL_MAX): sizes the table maps */
    uint8_t small_class[POOL_SMALL_MAX / 8 + 1]; /* (size + 7) / 8 -> class */
    /* Sizes of class c are (size_lo[c], size_lo[c] + size_span[c]]. */
    uint32_t size_lo[PSHM_MAX_CLASSES];
    uint32_t size_span[PSHM_MAX_CLASSES];
    pshm_seg_t seg;
    pid_t pid;    /* the process that holds `slot` (changes after fork) */
    int slot;     /* process slot, -1 until the first allocation */
    bool shared;  /* attached through poold */
    bool creator; /* embedded: this process made it */
    /* Attached pools (attach.c). */
    int sock; /* connection to poold, -1 when none */
    char shm_name[64];
    char socket_path[108];
    pa_u64 daemon_gen;      /* poold generation we registered with (relaxed:
                               written under the registry lock, read as a hint) */
    uint64_t next_hello_ns; /* earliest time for the next re-registration try */
};

struct pool_tls {
    uint64_t serial;
    struct pshm_thread *rec;
};

#if defined(__GNUC__)
#define POOL_TLS_MODEL __attribute__((tls_model("initial-exec")))
#else
#define POOL_TLS_MODEL
#endif
extern __thread struct pool_tls pool_tls_[POOL_MAX_OPEN] POOL_TLS_MODEL;

/* The pool this thread used last and its record: one TLS load, no load of
 * pool->idx first, for the common case of one pool per process. Serials
 * are unique for the life of the process (never 0), so a matching serial
 * alone proves the entry is this pool's. */
struct pool_tls_last {
    pool_t *pool;
    uint64_t serial;
    struct pshm_thread *rec;
    uint64_t own; /* owner byte of this process's slot (pshm_own_val) */
};
extern __thread struct pool_tls_last pool_tls_last_ POOL_TLS_MODEL;

/* Lifetime sampling (slow.c). The free that makes a class's free count a
 * multiple of PSHM_LIFE_SAMPLE arms the thread: it clears the last-pool
 * serial, so that the thread's next call takes the slow path. A malloc
 * there times the block it hands out; a free there restores the serial (a
 * thread that only frees must not stay off the fast path), and the next
 * malloc that reaches the slow path takes the sample. The timed block's
 * index goes in its class's `life_idx` (in hot's cache line), the time in
 * `life_t0`. A sampled block is never left noted in `hot`, so its free
 * leaves the burn-after-reading path, and the frees that do compare the
 * index with life_idx (pool_free_sampled_ on a match). One block per class
 * and thread at a time; a block freed by another thread or process is not
 * timed, and its place is taken by the next sample once its owner byte
 * shows it gone. */
extern __thread uint32_t pool_life_armed_ POOL_TLS_MODEL;
/* The rest of a free of this thread's block idx (owner byte o), which is
 * the block tc is timing: its lifetime noted, then the push on tc. */
bool pool_free_sampled_(pool_t *pool, struct pshm_thread *rec, struct pshm_tclass *tc, uint32_t c,
                        uint32_t idx, pa_u8 *o);
/* Arm the sampler (out of line: the free paths reach it by a tail call,
 * so that arming costs them no register). Returns true, the free's result. */
bool pool_life_arm_(void);
/* One free counted in tc: the new count, whose multiples of
 * PSHM_LIFE_SAMPLE arm the sampler. relaxed: statistic, single writer. */
static inline uint64_t pool_count_free_(struct pshm_tclass *tc)
{
    uint64_t f = pa_load_relaxed(&tc->frees) + 1;
    pa_store_relaxed(&tc->frees, f);
    return f;
}
#define POOL_LIFE_ARMS(f) pshm_unlikely(((f) & (PSHM_LIFE_SAMPLE - 1)) == 0)

/* The calling thread's record in pool, or NULL (then take the slow path). */
struct pshm_thread *pool_rec_lookup_(pool_t *pool);
static inline struct pshm_thread *pool_rec_(pool_t *pool)
{
    if (pshm_likely(pool_tls_last_.serial == pool->serial))
        return pool_tls_last_.rec;
    return pool_rec_lookup_(pool);
}

/* attach.c */
/* The process-wide default pool if poold serves it (attached on first
 * call, shared with pool_default()), else NULL and errno set, without
 * making an embedded pool. */
pool_t *pool_default_attached_(void);
/* The size in environment variable `name` (digits, then an optional K, M
 * or G), dflt when unset or not a number, SIZE_MAX when it overflows. No
 * allocation: the preload library reads its settings before any heap. */
size_t pool_env_size_(const char *name, size_t dflt);
/* The embedded pool's size: $POOLD_EMBEDDED_BYTES, else the old name
 * $POOL_EMBEDDED_BYTES, else POOL_DEFAULT_BYTES. */
size_t pool_embedded_bytes_(void);

/* slow.c */
void *pool_malloc_slow_(pool_t *pool, uint32_t c);
/* Free block idx, a block of class c (checked by the caller), whatever its
 * owner byte says: the slow path of every free. */
bool pool_free_slow_(pool_t *pool, uint32_t idx, uint32_t c);
/* Push block idx (owned by this process, not marked free yet) on the
 * record's cache, flushing half to central when full. */
void pool_cache_full_(pool_t *pool, struct pshm_thread *rec, uint32_t c);

/* records.c */
/* This process's pid, set when the first pool opens and again in a forked
 * child (getpid() is a system call in glibc). 0 before any pool opened. */
extern pid_t pool_pid_;
int pool_register_(pool_t *pool);    /* take an idx and serial; -EMFILE when full */
void pool_unregister_(pool_t *pool); /* release every record of this process, slot, idx */
/* Mark the slot of every pool of this process as ending by exit (the
 * reclaim that follows the process's death then counts an exit, not a
 * crash). Safe in a signal handler; does nothing in a vfork child. */
void pool_note_exit_(void);
/* If poold restarted since we said HELLO, say it again (rate-limited). */
void pool_rehello_if_restarted_(pool_t *pool);
/* Reclaim dead processes' slots (embedded pools), with the calling
 * thread's record as the actor when it has one: how many. */
int pool_reclaim_dead_(pool_t *pool);
/* The calling thread's record, claimed if it has none; NULL when none can
 * be had (the uncached path). */
struct pshm_thread *pool_rec_get_(pool_t *pool);

/* The record of this thread for pool, claimed if it has none: NULL when
 * every record is taken. */
static inline struct pshm_thread *pool_rec_or_claim_(pool_t *pool)
{
    struct pshm_thread *rec = pool_rec_(pool);
    return pshm_likely(rec != NULL) ? rec : pool_rec_get_(pool);
}

/* Take a block from the thread's cache for class c: `hot` (leaving a note of
 * the block taken: its free skips the span-map check), else the top of
 * slots[], else the next block of the thread's span. NULL when all three
 * are empty (no block starts at offset 0). The block's owner byte is set to
 * `own` first, then the cache word that takes it out is written: a death in
 * between leaves it both cached and owned, which a reclaimer reads as
 * cached (pshm_rec_recover). Nothing is counted: allocations and
 * same-address hits are derived (struct pshm_tclass). */
static inline void *pool_cache_take_(pool_t *pool, struct pshm_tclass *tc, uint32_t c, uint8_t own)
{
    const pshm_seg_t *s = &pool->seg;
    /* relaxed (all): single writer, this thread; statistics read them. The
     * owner byte: only this thread writes it while the block is ours. */
    uint64_t h = pa_load_relaxed(&tc->hot);
    if (pshm_likely(pshm_hot_cached(h))) {
        pa_store_relaxed((pa_u8 *)(s->base + tc->hot_own), own);
        pa_store_relaxed(&tc->hot, ~h); /* the taken note */
        return s->base + h;
    }
    uint32_t n = pa_load_relaxed(&tc->count);
    if (pshm_likely(n != 0)) {
        uint32_t idx = tc->slots[n];
        pa_store_relaxed(pshm_owner_idx(s, c, idx), own);
        pa_store_relaxed(&tc->count, n - 1);
        return pshm_ptr(s, idx);
    }
    uint64_t w = pa_load_relaxed(&tc->fresh_w);
    uint32_t idx = (uint32_t)w;
    if (idx < tc->fresh_end) {
        pa_store_relaxed(pshm_owner_idx(s, c, idx), own);
        /* One store carves the block and counts it. */
        pa_store_relaxed(&tc->fresh_w, w + (UINT64_C(1) << 32) + (s->block_size[c] >> 3));
        return pshm_ptr(s, idx);
    }
    return NULL;
}

/* Push a block this process owns (o: its owner byte) on the thread's cache
 * and mark it free:
 * into `hot`, pushing the old hot block down into slots[] if it holds one
 * (a full cache flushes half first). The cache words first, the owner byte
 * last (see pool_cache_take_). Returns true (a free's result). */
static inline bool pool_cache_put_(pool_t *pool, struct pshm_thread *rec, struct pshm_tclass *tc,
                                   uint32_t c, uint32_t idx, pa_u8 *o)
{
    /* relaxed (all): single writer, this thread; statistics read them. */
    uint64_t h = pa_load_relaxed(&tc->hot);
    uint64_t off = (uint64_t)idx << 3;
    if (pshm_unlikely(pshm_hot_cached(h))) {
        uint32_t n = pa_load_relaxed(&tc->count);
        if (pshm_unlikely(n + 1 >= pool->seg.cache_cap[c])) {
            pool_cache_full_(pool, rec, c);
            n = pa_load_relaxed(&tc->count);
        }
        tc->slots[n + 1] = (uint32_t)(h >> 3);
        pa_store_relaxed(&tc->count, n + 1);
        pa_inc_single_writer(&tc->displaced, 1);
    }
    tc->hot_own = (uint64_t)((uint8_t *)o - pool->seg.base);
    pa_store_relaxed(&tc->hot, off);
    uint64_t f = pool_count_free_(tc);
    pa_store_relaxed(o, PSHM_OWN_FREE);
    return POOL_LIFE_ARMS(f) ? pool_life_arm_() : true;
}

/* slow.c: large blocks, above the largest class up to max_block. */
void *pool_malloc_large_(pool_t *pool, size_t size);
bool pool_free_large_(pool_t *pool, uint32_t head);

/* malloc.c */
void pool_build_class_table_(pool_t *pool);
static inline uint32_t pool_class_of_(const pool_t *pool, size_t size)
{
    if (size <= POOL_SMALL_MAX)
        return pool->small_class[(size + 7) >> 3];
    uint32_t c = pool->small_class[POOL_SMALL_MAX >> 3];
    while (pool->seg.block_size[c] < size)
        c++;
    return c;
}

/* attach.c */
pool_t *pool_new_(void);
void pool_free_handle_(pool_t *pool);
/* Before a detach: give up every topic seat of this process (chan.c), so
 * that what only it held is freed, not kept as an orphan. */
void pool_chan_detach_(pool_t *pool);
/* Record a message for pool_last_error() (printf-like). */
void pool_set_error_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* attach_daemon.c: the link with poold */
/* What a HELLO answered. */
typedef struct pool_hello_reply {
    int fd;         /* the connection, open */
    int slot;       /* the slot poold claimed for this process */
    char shm[64];   /* the segment's name */
    uint64_t bytes; /* its size */
    uint64_t gen;   /* poold's generation (daemon_gen) */
} pool_hello_reply_t;
/* HELLO on a new connection to path: 0 and *r filled, or -errno (message
 * recorded). Retried briefly when poold closes before replying (stopping). */
int pool_hello_(const char *path, pool_hello_reply_t *r);
/* A forked child of an attached process: its own HELLO on its own
 * connection (the inherited one is closed), for a slot in the segment the
 * pool maps: 0 with the pool's sock, slot, pid and daemon_gen set, or
 * -errno. Call with the process lock held (records.c). */
int pool_hello_child_(pool_t *pool);
/* After a poold restart: say HELLO again (rate-limited, never blocks long).
 * Call with the process lock held (pool_rehello_if_restarted_). */
void pool_rehello_locked_(pool_t *pool);
/* Tell poold this process leaves (after its slot was given back). */
void pool_bye_(pool_t *pool);

#endif /* POOL_INTERNAL_H */
