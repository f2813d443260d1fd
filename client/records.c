/* SPDX-License-Identifier: MIT */
/*
 * records.c: what libpoolclient keeps per process: the table of open pools,
 * each pool's slot and the calling thread's record in it (claimed on first
 * use, given back at thread exit), fork (a child forgets its parent's
 * caches and takes a slot of its own), the mark of a normal exit, and the
 * reclaim of dead processes with a borrowed slot. One mutex guards it all;
 * it is never taken on the fast path.
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

/* The process's state: its open pools and what guards them. */
static struct {
    pthread_mutex_t lock;         /* never taken on the fast path */
    pool_t *pools[POOL_MAX_OPEN]; /* open pools, by idx */
    uint64_t serial;              /* last serial given to a pool */
    pthread_key_t key;            /* its destructor is thread_exit_cb */
    pthread_once_t once;
} proc = {.lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT};

pid_t pool_pid_;

/* Thread exit: give back every record this thread holds in a pool that is
 * still open in this process. */
static void thread_exit_cb(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&proc.lock);
    for (uint32_t i = 0; i < POOL_MAX_OPEN; i++) {
        struct pool_tls *e = &pool_tls_[i];
        pool_t *p = proc.pools[i];
        if (e->serial != 0 && p && p->serial == e->serial && e->rec && p->slot >= 0 &&
            p->pid == pool_pid_) {
            pshm_release_result_t res = {0};
            pshm_thread_release(&p->seg, e->rec, (uint32_t)p->slot, false, &res);
        }
        e->serial = 0;
        e->rec = NULL;
    }
    memset(&pool_tls_last_, 0, sizeof(pool_tls_last_));
    pthread_mutex_unlock(&proc.lock);
}

static void atfork_prepare(void)
{
    pthread_mutex_lock(&proc.lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&proc.lock);
}

/* The child must never use its parent's caches: forget them. It runs in the
 * only thread of the child, the one that called fork(). The child takes its
 * own slot and records on first use. */
static void atfork_child(void)
{
    memset(pool_tls_, 0, sizeof(pool_tls_));
    memset(&pool_tls_last_, 0, sizeof(pool_tls_last_));
    pool_life_armed_ = 0;
    pool_pid_ = getpid();
    pthread_mutex_unlock(&proc.lock);
}

static void proc_init(void)
{
    pool_pid_ = getpid();
    pthread_key_create(&proc.key, thread_exit_cb);
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

int pool_register_(pool_t *pool)
{
    pthread_once(&proc.once, proc_init);
    pthread_mutex_lock(&proc.lock);
    int rc = -EMFILE;
    for (uint32_t i = 0; i < POOL_MAX_OPEN; i++) {
        if (proc.pools[i] == NULL) {
            proc.pools[i] = pool;
            pool->idx = i;
            pool->serial = ++proc.serial;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&proc.lock);
    return rc;
}

void pool_unregister_(pool_t *pool)
{
    if (pool->slot >= 0 && pool->pid == pool_pid_)
        pool_chan_detach_(pool); /* frees blocks: before the lock */
    pthread_mutex_lock(&proc.lock);
    if (pool->slot >= 0 && pool->pid == pool_pid_) {
        pshm_release_result_t res = {0};
        pshm_proc_detach(&pool->seg, (uint32_t)pool->slot, false, &res);
        pa_add_relaxed(&pool->seg.hdr->procs_exited, 1); /* relaxed: statistic */
    }
    pool->slot = -1;
    if (pool->idx < POOL_MAX_OPEN && proc.pools[pool->idx] == pool)
        proc.pools[pool->idx] = NULL;
    /* This thread's entry; other threads' entries die by serial mismatch. */
    if (pool_tls_[pool->idx].serial == pool->serial) {
        pool_tls_[pool->idx].serial = 0;
        pool_tls_[pool->idx].rec = NULL;
    }
    if (pool_tls_last_.pool == pool)
        memset(&pool_tls_last_, 0, sizeof(pool_tls_last_));
    pthread_mutex_unlock(&proc.lock);
}

void pool_note_exit_(void)
{
    /* A child of vfork or posix_spawn that calls _exit shares our memory,
     * pool_pid_ included, but not our pid: it holds no slot of its own.
     * getpid() is a system call, safe in a signal handler's _exit. */
    pid_t me = pool_pid_;
    if (me == 0 || getpid() != me)
        return;
    /* trylock: _exit may run in a signal handler that interrupted this
     * very thread inside the lock; then the slot is not marked (its
     * reclaim counts a crash), which beats a deadlock at exit. */
    if (pthread_mutex_trylock(&proc.lock) != 0)
        return;
    for (uint32_t i = 0; i < POOL_MAX_OPEN; i++) {
        pool_t *p = proc.pools[i];
        if (p && p->slot >= 0 && p->pid == me)
            pshm_proc_note_end(&p->seg, (uint32_t)p->slot, PSHM_END_EXIT);
    }
    pthread_mutex_unlock(&proc.lock);
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
    pid_t me = pool_pid_;
    if (pool->slot >= 0 && pool->pid == me)
        return 0;
    /* A forked child of an attached process says its own HELLO; when poold
     * is away it takes a slot in the segment directly, which poold's sweep
     * watches once it is back. */
    if (pool->shared && pool_hello_child_(pool) == 0)
        return 0;
    uint64_t start = pshm_os_proc_start_time(me);
    int slot =
        pshm_proc_claim(&pool->seg, me, start, pool->shared ? PSHM_VIA_DAEMON : PSHM_VIA_DIRECT);
    if (slot == -EBUSY && pshm_reclaim_dead(&pool->seg, NULL, NULL, 0) > 0)
        slot = pshm_proc_claim(&pool->seg, me, start,
                               pool->shared ? PSHM_VIA_DAEMON : PSHM_VIA_DIRECT);
    if (slot < 0)
        return slot;
    pool->slot = slot;
    pool->pid = me;
    return 0;
}

void pool_rehello_if_restarted_(pool_t *pool)
{
    /* relaxed (both): a hint; the HELLO reply decides. Cheap enough for
     * every slow path: one shared line that changes only when poold starts. */
    if (pa_load_relaxed(&pool->seg.hdr->daemon_gen) == pa_load_relaxed(&pool->daemon_gen))
        return;
    pthread_mutex_lock(&proc.lock);
    if (pool->pid == pool_pid_)
        pool_rehello_locked_(pool);
    pthread_mutex_unlock(&proc.lock);
}

static struct pshm_thread *claim_record(pool_t *pool)
{
    struct pool_tls *e = &pool_tls_[pool->idx];
    pthread_mutex_lock(&proc.lock);
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
            pthread_setspecific(proc.key, pool);
        }
    }
    pthread_mutex_unlock(&proc.lock);
    return rec;
}

struct pshm_thread *pool_rec_get_(pool_t *pool)
{
    struct pshm_thread *rec = pool_rec_(pool);
    return rec ? rec : claim_record(pool);
}

int pool_reclaim_dead_(pool_t *pool)
{
    pshm_seg_t *s = &pool->seg;
    if (!pshm_any_dead(s))
        return 0;
    pthread_once(&proc.once, proc_init);
    /* Under the lock: this thread may have no record (pool_stats), so
     * nothing else orders our read of the slot after another thread's
     * first claim of it (ensure_slot_locked). */
    pthread_mutex_lock(&proc.lock);
    int own_slot = pool->slot >= 0 && pool->pid == pool_pid_ ? pool->slot : -1;
    pthread_mutex_unlock(&proc.lock);
    if (own_slot >= 0) {
        struct pshm_thread *rec = pool_rec_get_(pool);
        pshm_actor_t actor = {(uint32_t)own_slot, rec};
        return pshm_reclaim_dead(s, rec ? &actor : NULL, NULL, 0);
    }
    /* No slot of our own: borrow one for the reclaim (the dead process's
     * in-use blocks need a live owner to pass through), then give it back. */
    pid_t me = getpid();
    int slot = pshm_proc_claim(s, me, pshm_os_proc_start_time(me), PSHM_VIA_DIRECT);
    if (slot < 0)
        return pshm_reclaim_dead(s, NULL, NULL, 0);
    struct pshm_thread *rec = pshm_thread_claim(s, (uint32_t)slot, (int32_t)gettid());
    pshm_actor_t actor = {(uint32_t)slot, rec};
    int n = pshm_reclaim_dead(s, rec ? &actor : NULL, NULL, 0);
    pshm_release_result_t res = {0};
    pshm_proc_detach(s, (uint32_t)slot, false, &res);
    return n;
}
