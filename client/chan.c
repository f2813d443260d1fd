/* SPDX-License-Identifier: MIT */
/*
 * chan.c: pool_chan_*, channels over shm/pshm_chan.c. A handle names a
 * channel entry of the segment and the process slot that opened it.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"
#include "pshm_ring.h"

struct pool_chan {
    pool_t *pool;
    uint32_t ch;
    uint32_t slot; /* the slot whose membership this handle holds */
    int seat;      /* a topic subscription's seat, else -1 */
    /* pool_chan_fd(): an eventfd and the thread that watches the ring for
     * it (efd -1: none yet). */
    pthread_mutex_t fd_lock;
    int efd;
    pthread_t watcher;
    atomic_bool stop;
};

/* A watcher looks again at least this often, so that a receive that left
 * messages behind (or a waker that died) delays readiness no longer. */
#define WATCH_SLICE_MS 200

/* The calling thread's record and this process's owner byte, claiming the
 * slot and a record on first use; NULL when no record can be had. */
static struct pshm_thread *chan_rec(pool_t *pool, uint8_t *own)
{
    struct pshm_thread *rec = pool_rec_or_claim_(pool);
    if (!rec || pool->slot < 0)
        return NULL;
    *own = pshm_own_val((uint32_t)pool->slot);
    return rec;
}

/* A topic message nobody holds any more, adopted by this thread: freed. */
static void give_back(void *ctx, uint64_t off)
{
    pool_t *pool = ctx;
    (void)pool_free(pool, pool->seg.base + off, 0);
}

/* The channel actor of the calling thread: false when it has no record. */
static bool chan_actor(pool_t *pool, pshm_chan_actor_t *a)
{
    uint8_t own;
    struct pshm_thread *rec = chan_rec(pool, &own);
    if (!rec)
        return false;
    *a = (pshm_chan_actor_t){rec, (uint32_t)pool->slot, own, give_back, pool};
    return true;
}

void pool_chan_detach_(pool_t *pool)
{
    pshm_chan_actor_t a;
    struct pshm_thread *rec = pool_rec_(pool);
    if (!rec || pool->slot < 0)
        return;
    a = (pshm_chan_actor_t){rec, (uint32_t)pool->slot, pshm_own_val((uint32_t)pool->slot),
                            give_back, pool};
    pshm_chan_unsubscribe_all(&pool->seg, &a);
}

static uint32_t shift_for(unsigned capacity)
{
    uint32_t sh = 0;
    while ((1u << sh) < capacity)
        sh++;
    return sh;
}

POOL_API pool_chan_t *pool_chan_open(pool_t *pool, const char *name,
                                     const struct pool_chan_opts *opts)
{
    unsigned kind = opts && opts->kind ? opts->kind : POOL_CHAN_QUEUE;
    unsigned cap = opts && opts->capacity ? opts->capacity : 1u << PSHM_CHAN_SHIFT_DEFAULT;
    unsigned flags = opts ? opts->flags : POOL_CHAN_CREATE;
    if (!pool || !pshm_chan_name_ok(name) || (kind != POOL_CHAN_QUEUE && kind != POOL_CHAN_TOPIC) ||
        cap > POOL_CHAN_MAX_CAPACITY ||
        (flags & ~(POOL_CHAN_CREATE | POOL_CHAN_EXCL | POOL_CHAN_SUBSCRIBE)) ||
        (flags & POOL_CHAN_EXCL && !(flags & POOL_CHAN_CREATE)) ||
        (flags & POOL_CHAN_SUBSCRIBE && kind != POOL_CHAN_TOPIC)) {
        errno = EINVAL;
        return NULL;
    }
    uint8_t own;
    struct pshm_thread *rec = chan_rec(pool, &own);
    if (!rec) {
        errno = EAGAIN;
        return NULL;
    }
    pool_chan_t *c = malloc(sizeof(*c));
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    pshm_actor_t actor = {(uint32_t)pool->slot, rec};
    int seat = -1;
    int ch = pshm_chan_open(&pool->seg, &actor, name,
                            kind == POOL_CHAN_TOPIC ? PSHM_CHAN_TOPIC : PSHM_CHAN_QUEUE,
                            shift_for(cap), flags & POOL_CHAN_CREATE, flags & POOL_CHAN_EXCL,
                            flags & POOL_CHAN_SUBSCRIBE ? &seat : NULL);
    if (ch < 0) {
        free(c);
        errno = -ch;
        return NULL;
    }
    *c = (pool_chan_t){
        .pool = pool, .ch = (uint32_t)ch, .slot = (uint32_t)pool->slot, .seat = seat, .efd = -1};
    pthread_mutex_init(&c->fd_lock, NULL);
    atomic_init(&c->stop, false);
    return c;
}

/* The caller's actor for a call on ch: false with errno EINVAL (no handle,
 * or args_ok false) or EAGAIN (no thread record to be had). */
static bool chan_begin(pool_chan_t *ch, bool args_ok, pshm_chan_actor_t *a)
{
    if (!ch || !args_ok) {
        errno = EINVAL;
        return false;
    }
    if (!chan_actor(ch->pool, a)) {
        errno = EAGAIN;
        return false;
    }
    return true;
}

/* A pshm_chan_* result as the API's: 0, or -1 with errno. */
static int chan_result(int rc)
{
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}

static uint64_t offset_of(const pool_chan_t *ch, const void *ptr)
{
    return (uint64_t)((uintptr_t)ptr - (uintptr_t)ch->pool->seg.base);
}

POOL_API int pool_chan_send(pool_chan_t *ch, void *ptr, size_t size, int timeout_ms)
{
    (void)size;
    pshm_chan_actor_t a;
    if (!chan_begin(ch, ptr != NULL, &a))
        return -1;
    return chan_result(pshm_chan_send(&ch->pool->seg, ch->ch, &a, offset_of(ch, ptr), timeout_ms));
}

POOL_API void *pool_chan_recv(pool_chan_t *ch, size_t *size, int timeout_ms)
{
    pshm_chan_actor_t a;
    uint64_t off;
    if (!chan_begin(ch, true, &a) ||
        chan_result(pshm_chan_recv(&ch->pool->seg, ch->ch, &a, ch->seat, &off, timeout_ms)) < 0)
        return NULL;
    void *p = ch->pool->seg.base + off;
    if (size)
        *size = pool_block_size(ch->pool, p);
    return p;
}

POOL_API int pool_chan_release(pool_chan_t *ch, const void *ptr)
{
    pshm_chan_actor_t a;
    if (!chan_begin(ch, ptr != NULL && ch && ch->seat >= 0, &a))
        return -1;
    return chan_result(pshm_chan_release(&ch->pool->seg, ch->ch, &a, ch->seat, offset_of(ch, ptr)));
}

/* The watcher: each round, the ring's watch count (a fence, then fd_seq),
 * a look, a write to the eventfd when a message waits, and a sleep until
 * the next fill (or WATCH_SLICE_MS). A fill after the look bumps fd_seq,
 * so the sleep returns at once: no message waits unsignalled. */
static void *watch_main(void *arg)
{
    pool_chan_t *ch = arg;
    pshm_seg_t *s = &ch->pool->seg;
    struct pshm_ring *r = pshm_chan_ring(s, ch->ch);
    for (;;) {
        uint32_t seen = pshm_ring_watch_seq(r);
        /* acquire: pairs with the release store in stop_watcher(). */
        if (atomic_load_explicit(&ch->stop, memory_order_acquire))
            break;
        if (pshm_chan_ready(s, ch->ch, ch->seat)) {
            uint64_t one = 1;
            (void)!write(ch->efd, &one, sizeof(one)); /* EAGAIN: the count is full, readable */
        }
        pshm_ring_watch_sleep(r, seen, WATCH_SLICE_MS);
    }
    return NULL;
}

POOL_API int pool_chan_fd(pool_chan_t *ch)
{
    if (!ch || (ch->pool->slot != (int)ch->slot)) {
        errno = EINVAL;
        return -1;
    }
    if (ch->seat < 0 && ch->pool->seg.chans[ch->ch].kind == PSHM_CHAN_TOPIC) {
        errno = EBADF; /* a topic handle that does not subscribe receives nothing */
        return -1;
    }
    pthread_mutex_lock(&ch->fd_lock);
    int fd = ch->efd;
    if (fd < 0) {
        fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        int rc = fd < 0 ? errno : 0;
        if (rc == 0) {
            ch->efd = fd;
            (void)pshm_chan_watch(&ch->pool->seg, ch->ch, ch->slot, 1);
            /* The watcher takes no signal of the program's. */
            sigset_t all, old;
            sigfillset(&all);
            pthread_sigmask(SIG_SETMASK, &all, &old);
            rc = pthread_create(&ch->watcher, NULL, watch_main, ch);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            if (rc != 0) {
                (void)pshm_chan_watch(&ch->pool->seg, ch->ch, ch->slot, -1);
                close(fd);
                ch->efd = fd = -1;
            }
        }
        if (rc != 0)
            errno = rc;
    }
    pthread_mutex_unlock(&ch->fd_lock);
    return fd;
}

static void stop_watcher(pool_chan_t *ch)
{
    if (ch->efd < 0)
        return;
    /* release: pairs with the acquire in watch_main(); the kick wakes it. */
    atomic_store_explicit(&ch->stop, true, memory_order_release);
    pshm_ring_kick(pshm_chan_ring(&ch->pool->seg, ch->ch));
    pthread_join(ch->watcher, NULL);
    (void)pshm_chan_watch(&ch->pool->seg, ch->ch, ch->slot, -1);
    close(ch->efd);
    ch->efd = -1;
}

POOL_API void pool_chan_close(pool_chan_t *ch)
{
    if (!ch)
        return;
    if (ch->pool->slot == (int)ch->slot)
        stop_watcher(ch);
    pshm_chan_actor_t a;
    if (ch->seat >= 0 && ch->pool->slot == (int)ch->slot && chan_actor(ch->pool, &a))
        pshm_chan_unsubscribe(&ch->pool->seg, ch->ch, &a, ch->seat);
    pshm_chan_close(&ch->pool->seg, ch->ch, ch->slot);
    pthread_mutex_destroy(&ch->fd_lock);
    free(ch);
}
