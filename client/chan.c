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
    if (!pool || !pshm_chan_name_ok(name) || kind != POOL_CHAN_QUEUE ||
        cap > POOL_CHAN_MAX_CAPACITY || (flags & ~(POOL_CHAN_CREATE | POOL_CHAN_EXCL)) ||
        (flags & POOL_CHAN_EXCL && !(flags & POOL_CHAN_CREATE))) {
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
    int ch = pshm_chan_open(&pool->seg, &actor, name, PSHM_CHAN_QUEUE, shift_for(cap),
                            flags & POOL_CHAN_CREATE, flags & POOL_CHAN_EXCL);
    if (ch < 0) {
        free(c);
        errno = -ch;
        return NULL;
    }
    *c = (pool_chan_t){pool, (uint32_t)ch, (uint32_t)pool->slot};
    return c;
}

POOL_API int pool_chan_send(pool_chan_t *ch, void *ptr, size_t size, int timeout_ms)
{
    (void)size;
    uint8_t own;
    struct pshm_thread *rec = ch ? chan_rec(ch->pool, &own) : NULL;
    if (!ch || !ptr || !rec) {
        errno = ch && ptr ? EAGAIN : EINVAL;
        return -1;
    }
    pshm_seg_t *s = &ch->pool->seg;
    uint64_t off = (uint64_t)((uintptr_t)ptr - (uintptr_t)s->base);
    int rc = pshm_chan_send(s, ch->ch, rec, own, off, timeout_ms);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}

POOL_API void *pool_chan_recv(pool_chan_t *ch, size_t *size, int timeout_ms)
{
    uint8_t own;
    struct pshm_thread *rec = ch ? chan_rec(ch->pool, &own) : NULL;
    if (!ch || !rec) {
        errno = ch ? EAGAIN : EINVAL;
        return NULL;
    }
    pshm_seg_t *s = &ch->pool->seg;
    uint64_t off;
    int rc = pshm_chan_recv(s, ch->ch, rec, (uint32_t)ch->pool->slot, &off, timeout_ms);
    if (rc < 0) {
        errno = -rc;
        return NULL;
    }
    void *p = s->base + off;
    if (size)
        *size = pool_block_size(ch->pool, p);
    return p;
}

POOL_API void pool_chan_close(pool_chan_t *ch)
{
    if (!ch)
        return;
    pshm_chan_close(&ch->pool->seg, ch->ch, ch->slot);
    free(ch);
}
