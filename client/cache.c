/* SPDX-License-Identifier: MIT */
/*
 * cache.c: the slow paths of libpoolclient: thread-record claim, batch
 * refill from and flush to the central lists, span carving, thread exit,
 * fork, and the process's table of open pools.
 *
 * Order of writes when blocks move between a thread cache and a central list
 * is chosen so that a process killed between two steps can leak at most one
 * batch, never put a block in two places: refill pops from central before the
 * cache count grows; flush shrinks the cache count before it pushes.
 * The process-local mutex here is never taken on the fast path.
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
    if (slot == -EBUSY && pshm_reclaim_dead(&pool->seg, NULL, 0) > 0)
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
        if (!rec && pshm_reclaim_dead(&pool->seg, NULL, 0) > 0)
            rec = pshm_thread_claim(&pool->seg, (uint32_t)pool->slot, tid);
        if (rec) {
            e->rec = rec;
            e->serial = pool->serial;
            pool_tls_last_ = (struct pool_tls_last){pool, pool->serial, rec};
            /* Any non-NULL value makes the destructor run at thread exit. */
            pthread_setspecific(reg_key, pool);
        }
    }
    pthread_mutex_unlock(&reg_lock);
    return rec;
}

/* ---- without a thread record (all records taken): correct, slower ---- */

static void count_uncached(pool_t *pool, uint32_t c, bool alloc, bool fresh)
{
    struct pshm_class *k = &pool->seg.cls[c];
    /* relaxed: statistics, many writers, so RMW; this path is rare. */
    pa_add_relaxed(alloc ? &k->r_allocs : &k->r_frees, 1);
    if (fresh)
        pa_add_relaxed(&k->r_fresh, 1);
    pa_add_relaxed(&pool->seg.hdr->uncached_ops, 1);
    if (pool->slot >= 0 && pool->pid == reg_pid)
        pa_add_relaxed(alloc ? &pool->seg.procs[pool->slot].r_allocs
                             : &pool->seg.procs[pool->slot].r_frees,
                       1);
}

static void *uncached_malloc(pool_t *pool, uint32_t c)
{
    pshm_seg_t *s = &pool->seg;
    uint32_t buf[PSHM_CACHE_CAP];
    uint32_t n = pshm_central_pop(s, c, buf, PSHM_CACHE_CAP);
    if (n) {
        if (n > 1)
            pshm_central_push(s, c, buf + 1, n - 1);
        count_uncached(pool, c, true, false);
        return pshm_ptr(s, buf[0]);
    }
    uint32_t a, b;
    if (pshm_region_pop(s, c, &a, &b) || pshm_span_carve(s, c, &a, &b) == 0) {
        uint32_t next = a + (s->block_size[c] >> 3);
        if (next < b)
            pshm_region_push(s, c, next, b);
        count_uncached(pool, c, true, true);
        return pshm_ptr(s, a);
    }
    pa_add_relaxed(&s->cls[c].r_exhausted, 1); /* relaxed: statistic */
    errno = ENOMEM;
    return NULL;
}

/* ---- with a thread record ---- */

/* Before a pool reports exhaustion, give back what dead processes cached
 * (an embedded pool has no poold to do it). Only when no span is left. */
static bool reclaim_if_exhausted(pool_t *pool)
{
    pshm_seg_t *s = &pool->seg;
    /* relaxed: a hint; carving re-checks with a CAS. */
    if (pa_load_relaxed(&s->hdr->next_span) < s->nspans)
        return false;
    return pshm_reclaim_dead(s, NULL, 0) > 0;
}

void *pool_malloc_slow_(pool_t *pool, uint32_t c)
{
    pshm_seg_t *s = &pool->seg;
    struct pshm_thread *rec = pool_rec_(pool);
    if (!rec && (rec = claim_record(pool)) == NULL)
        return uncached_malloc(pool, c);
    struct pshm_tclass *tc = &rec->cls[c];
    uint32_t a, b;

    /* pool_malloc comes here with the cache empty or no record yet, and a
     * freshly claimed record is empty; taking first keeps this exact for
     * any caller. */
    void *p = pool_cache_take_(pool, tc, c);
    if (p)
        return p;
    /* relaxed (counters, count): single writer, this thread. */
    pa_inc_single_writer(&tc->cmiss, 1);
    if (pshm_unlikely(pool->shared))
        pool_reregister_if_needed_(pool);
    uint32_t n = pshm_central_pop(s, c, tc->slots + 1, s->cache_cap[c] - 1);
    if (n == 0 && reclaim_if_exhausted(pool))
        n = pshm_central_pop(s, c, tc->slots + 1, s->cache_cap[c] - 1);
    if (n) {
        /* moved_in before count: a death in between counts the batch as
         * in use by the dead process (orphaned), not as lost. */
        pa_inc_single_writer(&tc->moved_in, n);
        pa_store_relaxed(&tc->count, n);
    } else if (pshm_region_pop(s, c, &a, &b)) {
        tc->fresh_next = a;
        tc->fresh_end = b;
    } else if (pshm_span_carve(s, c, &a, &b) == 0) {
        pa_inc_single_writer(&tc->cenmiss, 1);
        tc->fresh_next = a;
        tc->fresh_end = b;
    } else {
        pa_inc_single_writer(&tc->exhausted, 1);
        errno = ENOMEM;
        return NULL;
    }
    return pool_cache_take_(pool, tc, c); /* not empty now */
}

bool pool_free_slow_(pool_t *pool, uint32_t idx, uint32_t c)
{
    pshm_seg_t *s = &pool->seg;
    struct pshm_thread *rec = pool_rec_(pool);
    if (!rec && (rec = claim_record(pool)) == NULL) {
        pshm_central_push(s, c, &idx, 1);
        count_uncached(pool, c, false, false);
        return true;
    }
    struct pshm_tclass *tc = &rec->cls[c];
    /* relaxed (all): single writer, this thread. */
    uint32_t n = pa_load_relaxed(&tc->count);
    if (pshm_hot_cached(pa_load_relaxed(&tc->hot)) && n + 1 >= s->cache_cap[c]) {
        /* Full: flush the older (bottom) half, keep the hot top. The count
         * shrinks before the push (see the top of this file). */
        uint32_t batch = s->batch[c];
        uint32_t out[PSHM_CACHE_CAP];
        memcpy(out, tc->slots + 1, batch * sizeof(uint32_t));
        memmove(tc->slots + 1, tc->slots + 1 + batch, (n - batch) * sizeof(uint32_t));
        pa_store_relaxed(&tc->count, n - batch);
        pa_inc_single_writer(&tc->moved_out, batch);
        pshm_central_push(s, c, out, batch);
    }
    return pool_cache_push_(pool, tc, c, idx);
}
