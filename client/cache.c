/* SPDX-License-Identifier: MIT */
/*
 * cache.c: the slow paths of libpoolclient: thread-record claim, batch
 * refill from and flush to the central lists, span carving, thread exit,
 * fork, and the process's table of open pools.
 *
 * Blocks move between a thread cache and the central lists through the
 * shm layer's journaled steps (pshm_rec_refill/flush/install), so that a
 * process killed at any instruction loses nothing (pshm_central.c). The
 * process-local mutex here is never taken on the fast path.
 *
 * A normal exit marks the slot of every pool this process holds
 * (pool_note_exit_, from a destructor here and from the preload library's
 * _exit), so that its reclaim counts an exit, not a crash.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pool_t *reg_pools[POOL_MAX_OPEN];
static uint64_t reg_serial;
static pthread_key_t reg_key;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
/* getpid() is a system call in glibc; the pid changes only at fork. */
static pid_t reg_pid;

/* Thread exit: give back every record this thread holds in a pool that is
 * still open in this process. */
static void thread_exit_cb(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&reg_lock);
    for (uint32_t i = 0; i < POOL_MAX_OPEN; i++) {
        struct pool_tls *e = &pool_tls_[i];
        pool_t *p = reg_pools[i];
        if (e->serial != 0 && p && p->serial == e->serial && e->rec && p->slot >= 0 &&
            p->pid == reg_pid) {
            pshm_release_result_t res = {0};
            pshm_thread_release(&p->seg, e->rec, (uint32_t)p->slot, false, &res);
        }
        e->serial = 0;
        e->rec = NULL;
    }
    memset(&pool_tls_last_, 0, sizeof(pool_tls_last_));
    pthread_mutex_unlock(&reg_lock);
}

static void atfork_prepare(void)
{
    pthread_mutex_lock(&reg_lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&reg_lock);
}

/* The child must never use its parent's caches: forget them. It runs in the
 * only thread of the child, the one that called fork(). The child takes its
 * own slot and records on first use. */
static void atfork_child(void)
{
    memset(pool_tls_, 0, sizeof(pool_tls_));
    memset(&pool_tls_last_, 0, sizeof(pool_tls_last_));
    reg_pid = getpid();
    pthread_mutex_unlock(&reg_lock);
}

static void reg_init(void)
{
    reg_pid = getpid();
    pthread_key_create(&reg_key, thread_exit_cb);
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

int pool_register_(pool_t *pool)
{
    pthread_once(&reg_once, reg_init);
    pthread_mutex_lock(&reg_lock);
    int rc = -EMFILE;
    for (uint32_t i = 0; i < POOL_MAX_OPEN; i++) {
        if (reg_pools[i] == NULL) {
            reg_pools[i] = pool;
            pool->idx = i;
            pool->serial = ++reg_serial;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

void pool_unregister_(pool_t *pool)
{
    pthread_mutex_lock(&reg_lock);
    if (pool->slot >= 0 && pool->pid == reg_pid) {
        pshm_release_result_t res = {0};
        pshm_proc_detach(&pool->seg, (uint32_t)pool->slot, false, &res);
        pa_add_relaxed(&pool->seg.hdr->procs_exited, 1); /* relaxed: statistic */
    }
    pool->slot = -1;
    if (pool->idx < POOL_MAX_OPEN && reg_pools[pool->idx] == pool)
        reg_pools[pool->idx] = NULL;
    /* This thread's entry; other threads' entries die by serial mismatch. */
    if (pool_tls_[pool->idx].serial == pool->serial) {
        pool_tls_[pool->idx].serial = 0;
        pool_tls_[pool->idx].rec = NULL;
    }
    if (pool_tls_last_.pool == pool)
        memset(&pool_tls_last_, 0, sizeof(pool_tls_last_));
    pthread_mutex_unlock(&reg_lock);
}

void pool_note_exit_(void)
{
    /* A child of vfork or posix_spawn that calls _exit shares our memory,
     * reg_pid included, but not our pid: it holds no slot of its own.
     * getpid() is a system call, safe in a signal handler's _exit. */
    pid_t me = reg_pid;
    if (me == 0 || getpid() != me)
        return;
    /* trylock: _exit may run in a signal handler that interrupted this
     * very thread inside the lock; then the slot is not marked (its
     * reclaim counts a crash), which beats a deadlock at exit. */
    if (pthread_mutex_trylock(&reg_lock) != 0)
        return;
    for (uint32_t i = 0; i < POOL_MAX_OPEN; i++) {
        pool_t *p = reg_pools[i];
        if (p && p->slot >= 0 && p->pid == me)
            pshm_proc_note_end(&p->seg, (uint32_t)p->slot, PSHM_END_EXIT);
    }
    pthread_mutex_unlock(&reg_lock);
}

/* exit() and a return from main: the last destructors run after this one
 * may still allocate and free; the slot stays ours until the process is
 * gone, only marked. */
__attribute__((destructor)) static void exit_dtor(void)
{
    pool_note_exit_();
}

static int ensure_slot_locked(pool_t *pool)
{
    pid_t me = reg_pid;
    if (pool->slot >= 0 && pool->pid == me)
        return 0;
    if (pool->shared) {
        /* A forked child of an attached process: its own HELLO, on its own
         * connection (the inherited one is the parent's). */
        if (pool->sock >= 0 && pool->pid != me) {
            close(pool->sock);
            pool->sock = -1;
        }
        char shm[64];
        int fd, slot;
        uint64_t bytes, gen;
        if (pool_hello_(pool, pool->socket_path, &fd, &slot, shm, sizeof(shm), &bytes, &gen) == 0 &&
            strcmp(shm, pool->shm_name) == 0 && (uint32_t)slot < pool->seg.max_procs) {
            pool->sock = fd;
            pool->slot = slot;
            pool->pid = me;
            pa_store_relaxed(&pool->daemon_gen, gen); /* relaxed: see internal.h */
            return 0;
        }
        /* poold is away: take a slot in the segment directly; poold's
         * sweep watches it once it is back. */
    }
    uint64_t start = pshm_os_proc_start_time(me);
    int slot = pshm_proc_claim(&pool->seg, me, start, pool->shared);
    if (slot == -EBUSY && pshm_reclaim_dead(&pool->seg, NULL, NULL, 0) > 0)
        slot = pshm_proc_claim(&pool->seg, me, start, pool->shared);
    if (slot < 0)
        return slot;
    pool->slot = slot;
    pool->pid = me;
    return 0;
}

void pool_reregister_if_needed_(pool_t *pool)
{
    /* relaxed (both): a hint; the HELLO reply decides. Cheap enough for
     * every slow path: one shared line that changes only when poold starts. */
    if (pa_load_relaxed(&pool->seg.hdr->daemon_gen) == pa_load_relaxed(&pool->daemon_gen))
        return;
    pthread_mutex_lock(&reg_lock);
    if (pool->pid == reg_pid)
        pool_maybe_reregister_(pool);
    pthread_mutex_unlock(&reg_lock);
}

static struct pshm_thread *claim_record(pool_t *pool)
{
    struct pool_tls *e = &pool_tls_[pool->idx];
    pthread_mutex_lock(&reg_lock);
    struct pshm_thread *rec = NULL;
    if (ensure_slot_locked(pool) == 0) {
        int32_t tid = (int32_t)gettid();
        rec = pshm_thread_claim(&pool->seg, (uint32_t)pool->slot, tid);
        if (!rec && pshm_reclaim_dead(&pool->seg, NULL, NULL, 0) > 0)
            rec = pshm_thread_claim(&pool->seg, (uint32_t)pool->slot, tid);
        if (rec) {
            e->rec = rec;
            e->serial = pool->serial;
            pool_tls_last_ =
                (struct pool_tls_last){pool, pool->serial, rec, pshm_own_val((uint32_t)pool->slot)};
            /* Any non-NULL value makes the destructor run at thread exit. */
            pthread_setspecific(reg_key, pool);
        }
    }
    pthread_mutex_unlock(&reg_lock);
    return rec;
}

struct pshm_thread *pool_rec_get_(pool_t *pool)
{
    struct pshm_thread *rec = pool_rec_(pool);
    return rec ? rec : claim_record(pool);
}

/* The owner byte of this process, or 0 when it has no slot. */
static uint8_t own_of(pool_t *pool)
{
    return pool->slot >= 0 && pool->pid == reg_pid ? pshm_own_val((uint32_t)pool->slot) : 0;
}

int pool_reclaim_dead_(pool_t *pool)
{
    pshm_seg_t *s = &pool->seg;
    if (!pshm_any_dead(s))
        return 0;
    pthread_once(&reg_once, reg_init);
    /* Under the lock: this thread may have no record (pool_stats), so
     * nothing else orders our read of the slot after another thread's
     * first claim of it (ensure_slot_locked). */
    pthread_mutex_lock(&reg_lock);
    int own_slot = pool->slot >= 0 && pool->pid == reg_pid ? pool->slot : -1;
    pthread_mutex_unlock(&reg_lock);
    if (own_slot >= 0) {
        struct pshm_thread *rec = pool_rec_get_(pool);
        pshm_actor_t actor = {(uint32_t)own_slot, rec};
        return pshm_reclaim_dead(s, rec ? &actor : NULL, NULL, 0);
    }
    /* No slot of our own: borrow one for the reclaim (the dead process's
     * in-use blocks need a live owner to pass through), then give it back. */
    pid_t me = getpid();
    int slot = pshm_proc_claim(s, me, pshm_os_proc_start_time(me), 0);
    if (slot < 0)
        return pshm_reclaim_dead(s, NULL, NULL, 0);
    struct pshm_thread *rec = pshm_thread_claim(s, (uint32_t)slot, (int32_t)gettid());
    pshm_actor_t actor = {(uint32_t)slot, rec};
    int n = pshm_reclaim_dead(s, rec ? &actor : NULL, NULL, 0);
    pshm_release_result_t res = {0};
    pshm_proc_detach(s, (uint32_t)slot, false, &res);
    return n;
}

/* ---- without a thread record (all records taken): correct, slower, and
 * not journaled: a crash in the middle of one of these can lose a block ---- */

static bool carve_raw(pshm_seg_t *s, uint32_t c, uint32_t *a, uint32_t *b)
{
    int n = pshm_span_claim(s, NULL, 0);
    if (n < 0)
        return false;
    pshm_span_publish(s, (uint32_t)n, c, a, b);
    return true;
}

static void *uncached_malloc(pool_t *pool, uint32_t c)
{
    pshm_seg_t *s = &pool->seg;
    struct pshm_class *k = &s->cls[c];
    uint8_t own = own_of(pool);
    uint32_t buf[PSHM_CACHE_CAP];
    uint32_t a, b;
    if (own == 0) { /* no slot: no owner to mark a block with */
        errno = ENOMEM;
        return NULL;
    }
    uint32_t n = pshm_central_pop_raw(s, c, buf, s->batch[c]);
    if (n) {
        a = buf[0];
        if (n > 1)
            pshm_central_push_raw(s, c, buf + 1, n - 1);
    } else if (pshm_region_pop_raw(s, c, &a, &b) || carve_raw(s, c, &a, &b)) {
        uint32_t next = a + (s->block_size[c] >> 3);
        if (next < b)
            pshm_region_push_raw(s, c, next, b);
        pa_add_relaxed(&k->u_fresh, 1); /* relaxed: statistic */
    } else {
        pa_add_relaxed(&k->u_exhausted, 1); /* relaxed: statistic */
        errno = ENOMEM;
        return NULL;
    }
    pa_store_relaxed(pshm_owner_idx(s, c, a), own); /* relaxed: the block is ours */
    /* relaxed: statistics, many writers, so RMW; this path is rare. */
    pa_add_relaxed(&k->u_allocs, 1);
    pa_add_relaxed(&s->hdr->uncached_ops, 1);
    pa_add_relaxed(&s->procs[pool->slot].r_allocs, 1);
    return pshm_ptr(s, a);
}

static void uncached_free(pool_t *pool, uint32_t idx, uint32_t c)
{
    pshm_seg_t *s = &pool->seg;
    /* Free before pushed: once pushed, another thread may take it and mark
     * it its own. relaxed: the block is ours until the push publishes it. */
    pa_store_relaxed(pshm_owner_idx(s, c, idx), PSHM_OWN_FREE);
    pshm_central_push_raw(s, c, &idx, 1);
    /* relaxed: statistics. */
    pa_add_relaxed(&s->cls[c].u_frees, 1);
    pa_add_relaxed(&s->hdr->uncached_ops, 1);
    if (own_of(pool))
        pa_add_relaxed(&s->procs[pool->slot].r_frees, 1);
}

/* ---- with a thread record ---- */

/* Before a pool reports exhaustion, give back what dead processes held
 * (an embedded pool has no poold to do it). Only when no span is left. */
static bool reclaim_if_exhausted(pool_t *pool)
{
    pshm_seg_t *s = &pool->seg;
    /* relaxed: a hint; carving re-checks with a CAS. */
    if (pa_load_relaxed(&s->hdr->next_span) < s->nspans)
        return false;
    return pool_reclaim_dead_(pool) > 0;
}

void *pool_malloc_slow_(pool_t *pool, uint32_t c)
{
    pshm_seg_t *s = &pool->seg;
    struct pshm_thread *rec = pool_rec_(pool);
    if (!rec && (rec = claim_record(pool)) == NULL)
        return uncached_malloc(pool, c);
    struct pshm_tclass *tc = &rec->cls[c];
    uint8_t own = (uint8_t)pshm_own_val((uint32_t)pool->slot);

    for (int tries = 0;; tries++) {
        /* pool_malloc comes here with the cache empty or no record yet, and
         * a freshly claimed record is empty; taking first keeps this exact
         * for any caller. */
        void *p = pool_cache_take_(pool, tc, c, own);
        if (p)
            return p;
        /* relaxed (counters): single writer, this thread. */
        pa_inc_single_writer(&tc->cmiss, 1);
        if (pshm_unlikely(pool->shared))
            pool_reregister_if_needed_(pool);
        if (pshm_rec_refill(s, rec, c) > 0 || pshm_rec_install(s, rec, c) == 0)
            continue; /* not empty now */
        if (tries == 0 && reclaim_if_exhausted(pool))
            continue;
        pa_inc_single_writer(&tc->exhausted, 1);
        errno = ENOMEM;
        return NULL;
    }
}

void pool_cache_full_(pool_t *pool, struct pshm_thread *rec, uint32_t c)
{
    /* Full: flush the top half (the blocks pushed down last), keep hot. */
    pshm_rec_flush(&pool->seg, rec, c, pool->seg.batch[c]);
}

/* Count a refused free. relaxed: statistic, many writers, rare. */
static bool refuse(pool_t *pool, uint32_t c)
{
    pa_add_relaxed(&pool->seg.cls[c].invalid_frees, 1);
    return false;
}

bool pool_free_slow_(pool_t *pool, uint32_t idx, uint32_t c)
{
    pshm_seg_t *s = &pool->seg;
    struct pshm_thread *rec = pool_rec_get_(pool);
    uint8_t own = own_of(pool);
    if (own == 0)
        return false; /* no slot: this process cannot hold blocks */
    pa_u8 *o = pshm_owner_idx(s, c, idx);
    uint8_t v = pa_load_relaxed(o); /* relaxed: the CAS below decides */
    for (;;) {
        if (v == own)
            break;
        if (v == PSHM_OWN_FREE || (v > s->max_procs && v != PSHM_OWN_TRANSIT))
            return refuse(pool, c);
        if (v == PSHM_OWN_TRANSIT) {
            /* Freed without adopting: adopt it first, so that the books
             * and a crash in between both see it as ours. Without a record
             * (records full) there is nowhere to count the adoption. */
            if (!rec || pshm_rec_adopt(s, rec, (uint32_t)pool->slot, c, idx) < 0)
                return refuse(pool, c);
            break;
        }
        /* Another process's block (or in transit, uncached): make it ours
         * with one CAS. acq_rel: exactly one of this free, another free and
         * a reclaim of a dead owner moves it; acquire makes the owner's
         * writes to the block happen before our reuse of it. */
        if (pa_cas_strong_acq_rel(o, &v, own))
            break;
    }
    if (!rec) {
        uncached_free(pool, idx, c);
        return true;
    }
    pool_cache_put_(pool, rec, &rec->cls[c], c, idx, o);
    return true;
}
