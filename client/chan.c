/* SPDX-License-Identifier: MIT */
/*
 * chan.c: pool_chan_*, channels over shm/pshm_chan.c. A handle names a
 * channel entry of the segment and the process slot that opened it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pshm_ring.h"

struct pool_chan {
    pool_t *pool;
    uint32_t ch;
    uint32_t slot; /* the slot whose membership this handle holds */
    int seat;      /* a topic subscription's seat, else -1 */
};

/* The calling thread's record and this process's owner byte, claiming the
 * slot and a record on first use; NULL when no record can be had. */
static struct pshm_thread *chan_rec(pool_t *pool, uint8_t *own)
{
    struct pshm_thread *rec = pool_rec_(pool);
    if (!rec)
        rec = pool_rec_get_(pool);
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
    *c = (pool_chan_t){pool, (uint32_t)ch, (uint32_t)pool->slot, seat};
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

POOL_API void pool_chan_close(pool_chan_t *ch)
{
    if (!ch)
        return;
    pshm_chan_actor_t a;
    if (ch->seat >= 0 && ch->pool->slot == (int)ch->slot && chan_actor(ch->pool, &a))
        pshm_chan_unsubscribe(&ch->pool->seg, ch->ch, &a, ch->seat);
    pshm_chan_close(&ch->pool->seg, ch->ch, ch->slot);
    free(ch);
}
