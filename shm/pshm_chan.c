/* SPDX-License-Identifier: MIT */
/*
 * pshm_chan.c: channels, named rings of blocks moving between processes
 * (docs/internals.md, "Channels").
 *
 * A message is a block in transit whose offset sits in a ring cell. The
 * sender fills the cell while it still owns the block (FULL names its
 * owner byte), then hands the block off (owner byte to TRANSIT, the
 * journaled handoff of pshm.h), then wakes a sleeper. A receiver takes a
 * FULL cell only once its block is in transit (TAKEN names its record),
 * adopts the block (the journaled adopt), and then releases the cell. So
 * at every moment the cell and the owner byte together say where each
 * message is, and a reclaimer finishes a dead process's part exactly:
 *   - a FULL or TAKEN cell whose block the dead process still owns as a
 *     sender (it died between its fill and its handoff): the block goes to
 *     transit (the handoff made for it), and the message stays;
 *   - a TAKEN cell of one of its records: the receiver died inside
 *     pool_chan_recv(), before the message was returned to it. The block
 *     is its own (the adopt was made) or still in transit (taken out of
 *     transit into the dead process's hands); the owner walk that follows
 *     gives it back to the pool, and the cell is released.
 * Joining and leaving are one CAS of the channel's word; creating takes
 * the reclaim lock, so that two processes creating one name make one
 * channel and a creator's death is finished by the next lock holder.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pshm.h"
#include "pshm_ring.h"

_Static_assert(sizeof(struct pshm_ring) == 256, "PSHM_CHAN_RING_BYTES reads the ring's header");
_Static_assert(PSHM_CHAN_RING_BYTES == 256u + (8u << PSHM_CHAN_SHIFT_MAX), "ring bytes");
_Static_assert(PSHM_MAX_THREADS <= PSHM_RING_WHO_MAX, "a record's number + 1 fits a cell");
_Static_assert(PSHM_MAX_SEGMENT >> 3 <= (UINT64_C(1) << 32), "an offset / 8 fits a cell");

/* A sleeping receiver or sender looks again at least this often, so that a
 * waker that died between its change and its wake-up costs it no more. */
#define CHAN_SLICE_MS 200

struct pshm_ring *pshm_chan_ring(const pshm_seg_t *s, uint32_t ch)
{
    return (struct pshm_ring *)(void *)(s->chan_rings + (uint64_t)ch * PSHM_CHAN_RING_BYTES);
}

/* Channel ch's ring, or NULL when its size field was overwritten beyond
 * the ring's room (a corrupt segment): every use of a ring checks this
 * first, so that no cell index leaves the channel's area. */
static struct pshm_ring *ring_checked(const pshm_seg_t *s, uint32_t ch)
{
    struct pshm_ring *r = pshm_chan_ring(s, ch);
    return r->shift <= PSHM_CHAN_SHIFT_MAX ? r : NULL;
}

bool pshm_chan_name_ok(const char *name)
{
    size_t n = name ? strnlen(name, PSHM_CHAN_NAME_MAX + 1) : 0;
    if (n == 0 || n > PSHM_CHAN_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] <= ' ' || (unsigned char)name[i] >= 0x7f)
            return false; /* printable, no spaces: it is shown in tables and lines */
    return true;
}

/* Join channel ch if it is LIVE under `name` (and of `kind`): 0, -ENOENT
 * (not that channel), -EPROTOTYPE (that name, another kind). */
static int try_join(pshm_seg_t *s, uint32_t ch, const char *name, uint32_t kind, uint32_t slot)
{
    struct pshm_chan *c = &s->chans[ch];
    /* acquire: pairs with the release store of LIVE in create(), so the
     * name and kind read below are the creator's. */
    uint64_t w = pa_load_acquire(&c->word);
    for (;;) {
        if (PSHM_CHAN_STATE(w) != PSHM_CHAN_LIVE || strncmp(c->name, name, sizeof(c->name)) != 0)
            return -ENOENT;
        if (c->kind != kind)
            return -EPROTOTYPE;
        if (PSHM_CHAN_MEMBERS(w) == 0xffffu)
            return -EMFILE;
        uint64_t nw = PSHM_CHAN_WORD(PSHM_CHAN_GEN(w), PSHM_CHAN_MEMBERS(w) + 1, PSHM_CHAN_LIVE);
        /* acq_rel: against a leave that frees the entry (its CAS moves the
         * generation on, and ours then fails) and other joins; on failure
         * w is fresh (acquire), so the name is checked again. */
        if (pa_cas_strong_acq_rel(&c->word, &w, nw)) {
            /* relaxed: a count the slot's process and its reclaimer keep;
             * the reclaim lock orders the reclaimer after our death. */
            pa_add_relaxed(&c->opens[slot], 1);
            return 0;
        }
    }
}

static int find_and_join(pshm_seg_t *s, const char *name, uint32_t kind, uint32_t slot)
{
    for (uint32_t ch = 0; ch < PSHM_MAX_CHANS; ch++) {
        int rc = try_join(s, ch, name, kind, slot);
        if (rc != -ENOENT)
            return rc == 0 ? (int)ch : rc;
    }
    return -ENOENT;
}

/* Under the reclaim lock: make channel `name` in a free entry, the caller
 * its first member. */
static int create(pshm_seg_t *s, const char *name, uint32_t kind, uint32_t shift, uint32_t slot)
{
    for (uint32_t ch = 0; ch < PSHM_MAX_CHANS; ch++) {
        struct pshm_chan *c = &s->chans[ch];
        uint64_t w = pa_load_acquire(&c->word); /* acquire: as in try_join() */
        if (PSHM_CHAN_STATE(w) != PSHM_CHAN_FREE)
            continue;
        uint32_t gen = PSHM_CHAN_GEN(w);
        /* acq_rel: a free entry changes only by this CAS (creators hold the
         * lock); release orders nothing yet, acquire the last free. */
        if (!pa_cas_strong_acq_rel(&c->word, &w, PSHM_CHAN_WORD(gen, slot + 1, PSHM_CHAN_INIT)))
            continue;
        c->kind = kind;
        c->shift = shift;
        memset(c->name, 0, sizeof(c->name));
        memcpy(c->name, name, strlen(name));
        c->created_unix = (uint64_t)time(NULL);
        c->creator_pid = (int32_t)getpid();
        PSHM_CRASH_POINT();
        for (uint32_t i = 0; i < sizeof(c->opens); i++)
            pa_store_relaxed(&c->opens[i], 0); /* relaxed: published by the store below */
        pa_store_relaxed(&c->sent, 0);
        pa_store_relaxed(&c->received, 0);
        pa_store_relaxed(&c->given_back, 0);
        pa_store_relaxed(&c->handed_on, 0);
        pa_store_relaxed(&c->full_waits, 0);
        pa_store_relaxed(&c->refused, 0);
        pshm_ring_init(pshm_chan_ring(s, ch), shift);
        pa_store_relaxed(&c->opens[slot], 1);
        /* release: pairs with try_join()'s acquire: the entry and its ring
         * are whole before anyone sees it LIVE. */
        pa_store_release(&c->word, PSHM_CHAN_WORD(gen, 1, PSHM_CHAN_LIVE));
        return (int)ch;
    }
    return -ENOSPC;
}

int pshm_chan_open(pshm_seg_t *s, const pshm_actor_t *actor, const char *name, uint32_t kind,
                   uint32_t shift, bool create_missing, bool exclusive)
{
    if (!pshm_chan_name_ok(name) || kind != PSHM_CHAN_QUEUE || shift > PSHM_CHAN_SHIFT_MAX)
        return -EINVAL;
    if (!exclusive) {
        int ch = find_and_join(s, name, kind, actor->slot);
        if (ch != -ENOENT || !create_missing)
            return ch;
    }
    /* Creating: one at a time, under the reclaim lock, which a dead
     * creator's successor takes over (finishing its INIT entry). A live
     * holder is waited for, 1 ms at a time, up to a second. */
    int rc = -EAGAIN;
    for (int tries = 0; tries < 1000 && (rc = pshm_lock_take(s, actor)) == -EAGAIN; tries++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    if (rc < 0)
        return rc;
    /* Under the lock nobody else creates: look once more, then make it. */
    int ch = find_and_join(s, name, kind, actor->slot);
    if (ch >= 0 && exclusive) {
        pshm_chan_close(s, (uint32_t)ch, actor->slot);
        ch = -EEXIST;
    } else if (ch == -ENOENT) {
        ch = create(s, name, kind, shift, actor->slot);
    }
    pshm_lock_give(s);
    return ch;
}

/* Take one membership of `slot` off channel ch (k: how many), freeing the
 * entry when it was the last and the ring holds nothing. */
static void leave(pshm_seg_t *s, uint32_t ch, uint32_t k)
{
    struct pshm_chan *c = &s->chans[ch];
    uint64_t w = pa_load_acquire(&c->word); /* acquire: as in try_join() */
    for (;;) {
        if (PSHM_CHAN_STATE(w) != PSHM_CHAN_LIVE || PSHM_CHAN_MEMBERS(w) < k)
            return; /* a scribbled word: leave it to pshm_check() */
        uint32_t m = PSHM_CHAN_MEMBERS(w) - k;
        uint64_t nw = PSHM_CHAN_WORD(PSHM_CHAN_GEN(w), m, PSHM_CHAN_LIVE);
        if (m == 0 && pshm_chan_is_empty(s, ch))
            nw = PSHM_CHAN_WORD(PSHM_CHAN_GEN(w) + 1, 0, PSHM_CHAN_FREE);
        /* acq_rel: one of this leave and the joins wins; a join that lost
         * sees the new generation and looks elsewhere. */
        if (pa_cas_strong_acq_rel(&c->word, &w, nw)) {
            struct pshm_ring *r = ring_checked(s, ch);
            if (r && PSHM_CHAN_STATE(nw) == PSHM_CHAN_FREE)
                pshm_ring_kick(r); /* nobody should sleep on it; wake any that do */
            return;
        }
    }
}

void pshm_chan_close(pshm_seg_t *s, uint32_t ch, uint32_t slot)
{
    if (ch >= PSHM_MAX_CHANS)
        return;
    struct pshm_chan *c = &s->chans[ch];
    /* relaxed: our own count; the reclaim lock orders a reclaimer's read. */
    if (pa_load_relaxed(&c->opens[slot]) == 0)
        return;
    pa_sub_relaxed(&c->opens[slot], 1);
    leave(s, ch, 1);
}

bool pshm_chan_is_empty(pshm_seg_t *s, uint32_t ch)
{
    struct pshm_ring *r = ring_checked(s, ch);
    if (!r)
        return false; /* keep a corrupt channel for pshm_check to report */
    for (uint32_t i = 0; i < pshm_ring_cap(r); i++)
        if (pshm_ring_word_state(pshm_ring_cell(r, i)) != PSHM_RING_EMPTY)
            return false;
    return true;
}

/* The block at off: its owner byte, *k its class (or -1) and *n its large
 * head (or -1); NULL when off names no block. */
static pa_u8 *block_owner(const pshm_seg_t *s, uint64_t off, int *k, int *n)
{
    *k = pshm_block_at(s, off);
    *n = *k < 0 ? pshm_large_at(s, off) : -1;
    if (*k >= 0)
        return pshm_owner(s, (uint32_t)*k, off);
    if (*n >= 0)
        return pshm_large_owner(s, (uint32_t)*n);
    return NULL;
}

/* The count of blocks reclaimers moved into transit, of class k or (k < 0)
 * of the large blocks: what the books' equations read as handoffs. */
static pa_u64 *put_in_transit_of(pshm_seg_t *s, int k)
{
    return k >= 0 ? &s->cls[k].put_in_transit : &s->hdr->large_put_in_transit;
}

static uint32_t rec_number(const pshm_seg_t *s, const struct pshm_thread *t)
{
    return (uint32_t)(((const uint8_t *)t - s->threads) / s->thread_bytes);
}

struct send_arg {
    struct pshm_ring *r;
    uint8_t own;
    uint64_t off;
    struct pshm_chan *c;
    bool counted_full;
};

static int send_step(void *arg)
{
    struct send_arg *a = arg;
    for (;;) {
        uint64_t pos, empty;
        int rc = pshm_ring_reserve(a->r, &pos, &empty);
        if (rc == -EAGAIN && !a->counted_full) {
            a->counted_full = true;
            pa_add_relaxed(&a->c->full_waits, 1); /* relaxed: statistic */
        }
        if (rc < 0)
            return rc;
        if (pshm_ring_fill(a->r, pos, empty, a->own, (uint32_t)(a->off >> 3)))
            return 0;
    }
}

int pshm_chan_send(pshm_seg_t *s, uint32_t ch, struct pshm_thread *t, uint8_t own, uint64_t off,
                   int timeout_ms)
{
    if (ch >= PSHM_MAX_CHANS || (off & 7) || off < s->data_off || off >= s->data_end)
        return -EINVAL;
    int k, n;
    pa_u8 *o = block_owner(s, off, &k, &n);
    /* relaxed: our own block's byte (only a racing free of it in this
     * program writes it); the handoff below makes the real CAS. */
    if (!o || pa_load_relaxed(o) != own)
        return -EINVAL;
    struct pshm_chan *c = &s->chans[ch];
    struct send_arg a = {ring_checked(s, ch), own, off, c, false};
    if (!a.r)
        return -EPROTO;
    int rc = pshm_ring_wait(a.r, true, send_step, &a, timeout_ms, CHAN_SLICE_MS);
    if (rc < 0)
        return rc;
    /* The message is in the ring; the block goes to transit (journaled).
     * Until it does, receivers leave the cell alone. */
    if (k >= 0)
        pshm_rec_chan_handoff(s, t, (uint32_t)k, (uint32_t)(off >> 3));
    else
        pshm_large_chan_handoff(s, t, (uint32_t)n);
    pa_add_relaxed(&c->sent, 1); /* relaxed: statistic */
    pshm_ring_filled(a.r);
    return 0;
}

struct recv_arg {
    pshm_seg_t *s;
    struct pshm_ring *r;
    struct pshm_chan *c;
    uint32_t taker;
    uint64_t pos, taken;
    int k, n; /* the taken block's class, or its large head (block_owner()) */
};

static int recv_step(void *arg)
{
    struct recv_arg *a = arg;
    for (;;) {
        uint64_t pos, full;
        int rc = pshm_ring_peek(a->r, &pos, &full);
        if (rc < 0)
            return rc;
        uint64_t off = (uint64_t)pshm_ring_word_value(full) << 3;
        int k, n;
        pa_u8 *o = block_owner(a->s, off, &k, &n);
        /* acquire: pairs with the sender's release of TRANSIT, so the
         * block's contents are visible once we adopt it. */
        uint8_t v = o ? pa_load_acquire(o) : 0;
        if (o && v != PSHM_OWN_TRANSIT && v == pshm_ring_word_who(full))
            return -EAGAIN; /* its sender is between fill and handoff: it wakes us */
        if (!pshm_ring_take(a->r, pos, full, a->taker, &a->taken))
            continue;
        a->pos = pos;
        a->k = k;
        a->n = n;
        if (o && v == PSHM_OWN_TRANSIT)
            return 0;
        /* Neither in transit nor its sender's: freed by offset since. */
        pa_add_relaxed(&a->c->refused, 1); /* relaxed: statistic */
        (void)pshm_ring_release(a->r, pos, a->taken);
        pshm_ring_emptied(a->r);
    }
}

int pshm_chan_recv(pshm_seg_t *s, uint32_t ch, struct pshm_thread *t, uint32_t slot, uint64_t *off,
                   int timeout_ms)
{
    if (ch >= PSHM_MAX_CHANS)
        return -EINVAL;
    struct pshm_chan *c = &s->chans[ch];
    struct recv_arg a = {s, ring_checked(s, ch), c, rec_number(s, t) + 1, 0, 0, -1, -1};
    if (!a.r)
        return -EPROTO;
    for (;;) {
        int rc = pshm_ring_wait(a.r, false, recv_step, &a, timeout_ms, CHAN_SLICE_MS);
        if (rc < 0)
            return rc;
        uint64_t o = (uint64_t)pshm_ring_word_value(a.taken) << 3;
        rc = a.k >= 0 ? pshm_rec_adopt(s, t, slot, (uint32_t)a.k, (uint32_t)(o >> 3))
                      : pshm_large_adopt(s, t, slot, (uint32_t)a.n);
        (void)pshm_ring_release(a.r, a.pos, a.taken);
        pshm_ring_emptied(a.r);
        if (rc == 0) {
            pa_add_relaxed(&c->received, 1); /* relaxed: statistic */
            *off = o;
            return 0;
        }
        /* Adopted by offset by someone else meanwhile: not ours; next. */
        pa_add_relaxed(&c->refused, 1); /* relaxed: statistic */
    }
}

/* Is record number `who - 1` one of slot's? (Under the reclaim lock, before
 * the slot's records are released.) */
static bool rec_of_slot(const pshm_seg_t *s, uint32_t who, uint32_t slot)
{
    if (who == 0 || who > s->max_threads)
        return false;
    /* acquire: as in pshm_proc_detach(). */
    return pa_load_acquire(&pshm_thread_at(s, who - 1)->owner) == slot + 1;
}

void pshm_chan_reclaim_slot(pshm_seg_t *s, uint32_t slot, pshm_chan_reclaimed_t *out)
{
    uint8_t own = pshm_own_val(slot);
    for (uint32_t ch = 0; ch < PSHM_MAX_CHANS; ch++) {
        struct pshm_chan *c = &s->chans[ch];
        uint64_t w = pa_load_acquire(&c->word); /* acquire: as in try_join() */
        if (PSHM_CHAN_STATE(w) == PSHM_CHAN_INIT && PSHM_CHAN_MEMBERS(w) == slot + 1) {
            /* Its creator died making it: nobody else saw it. acq_rel: as
             * in leave(). */
            (void)pa_cas_strong_acq_rel(&c->word, &w,
                                        PSHM_CHAN_WORD(PSHM_CHAN_GEN(w) + 1, 0, PSHM_CHAN_FREE));
            continue;
        }
        struct pshm_ring *r = ring_checked(s, ch);
        if (PSHM_CHAN_STATE(w) != PSHM_CHAN_LIVE || !r)
            continue;
        bool changed = false;
        for (uint32_t i = 0; i < pshm_ring_cap(r); i++) {
            uint64_t cell = pshm_ring_cell(r, i);
            uint32_t st = pshm_ring_word_state(cell);
            if (st == PSHM_RING_EMPTY)
                continue;
            uint64_t off = (uint64_t)pshm_ring_word_value(cell) << 3;
            int k, n;
            pa_u8 *o = block_owner(s, off, &k, &n);
            if (!o)
                continue;
            uint8_t v = pa_load_acquire(o); /* acquire: the CAS below decides */
            if (st == PSHM_RING_TAKEN && rec_of_slot(s, pshm_ring_word_who(cell), slot)) {
                /* A receiver of ours died before returning the message: if
                 * it had not adopted the block yet, take it out of transit
                 * into its hands (one fewer put in transit: the books'
                 * equations count it so); the owner walk gives it back. */
                if (v == PSHM_OWN_TRANSIT &&
                    pa_cas_strong_acq_rel(o, &v, own))          /* acq_rel: one mover */
                    pa_sub_relaxed(put_in_transit_of(s, k), 1); /* relaxed: statistic */
                (void)pshm_ring_release(r, pshm_ring_cell_pos(r, i, cell), cell);
                pa_add_relaxed(&c->given_back, 1); /* relaxed: statistic */
                if (out)
                    out->given_back++;
                changed = true;
            } else if (v == own) {
                /* Sent by us, not handed off yet: hand it off for us. */
                if (pa_cas_strong_acq_rel(o, &v, PSHM_OWN_TRANSIT)) { /* acq_rel: one mover */
                    pa_add_relaxed(put_in_transit_of(s, k), 1);       /* relaxed: statistic */
                    pa_add_relaxed(&c->handed_on, 1);
                    if (out)
                        out->handed_on++;
                    changed = true;
                }
            }
        }
        /* Its memberships. relaxed: the lock orders us after its death. */
        uint32_t k = pa_load_relaxed(&c->opens[slot]);
        if (k) {
            pa_store_relaxed(&c->opens[slot], 0);
            leave(s, ch, k);
            if (out)
                out->left += k;
        }
        if (changed)
            pshm_ring_kick(r); /* sleepers look again */
    }
}

bool pshm_chan_stats(const pshm_seg_t *s, uint32_t ch, pshm_chan_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (ch >= PSHM_MAX_CHANS)
        return false;
    const struct pshm_chan *c = &s->chans[ch];
    /* acquire: as in try_join(): the constants below are the creator's. */
    uint64_t w = pa_load_acquire(&c->word);
    struct pshm_ring *r = ring_checked(s, ch);
    if (PSHM_CHAN_STATE(w) != PSHM_CHAN_LIVE || !r)
        return false;
    memcpy(out->name, c->name, sizeof(out->name));
    out->name[PSHM_CHAN_NAME_MAX] = '\0';
    out->kind = c->kind;
    out->capacity = pshm_ring_cap(r);
    out->members = PSHM_CHAN_MEMBERS(w);
    out->generation = PSHM_CHAN_GEN(w);
    for (uint32_t i = 0; i < out->capacity; i++) {
        uint64_t cell = pshm_ring_cell(r, i);
        uint32_t st = pshm_ring_word_state(cell);
        if (st == PSHM_RING_EMPTY)
            continue;
        out->depth++;
        out->taking += st == PSHM_RING_TAKEN;
        uint64_t off = (uint64_t)pshm_ring_word_value(cell) << 3;
        int k = pshm_block_at(s, off), n = k < 0 ? pshm_large_at(s, off) : -1;
        if (k >= 0)
            out->bytes_held += s->block_size[k];
        else if (n >= 0)
            out->bytes_held += (uint64_t)pshm_large_len(s, (uint32_t)n) << s->span_shift;
    }
    /* relaxed (all): statistics. */
    out->sent = pa_load_relaxed(&c->sent);
    out->received = pa_load_relaxed(&c->received);
    out->given_back = pa_load_relaxed(&c->given_back);
    out->handed_on = pa_load_relaxed(&c->handed_on);
    out->full_waits = pa_load_relaxed(&c->full_waits);
    out->refused = pa_load_relaxed(&c->refused);
    out->receivers_waiting = pa_load_relaxed(&r->recv_waiters);
    out->senders_waiting = pa_load_relaxed(&r->send_waiters);
    out->created_unix = c->created_unix;
    out->creator_pid = c->creator_pid;
    return true;
}
