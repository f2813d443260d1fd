/* SPDX-License-Identifier: MIT */
/*
 * pshm_chan.c: channels, named rings of blocks moving between processes
 * (docs/internals.md, "Channels").
 *
 * A message is a block in transit whose offset sits in a ring cell. The
 * sender fills the cell while it still owns the block (FULL names its
 * owner byte), then hands the block off (owner byte to CHAN, the
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
_Static_assert(PSHM_MAX_THREADS < PSHM_CHAN_NO_FINISHER, "a record's number + 1 fits a cell and "
                                                         "is neither reclaimer nor no finisher");
_Static_assert(PSHM_CHAN_RECLAIMER == PSHM_RING_WHO_MAX, "the reclaimer's who");
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
        for (uint32_t i = 0; i < sizeof(c->opens); i++) {
            pa_store_relaxed(&c->opens[i], 0); /* relaxed: published by the store below */
            pa_store_relaxed(&c->watching[i], 0);
            pa_store_relaxed(&c->sleeping_recv[i], 0);
            pa_store_relaxed(&c->sleeping_send[i], 0);
        }
        pa_store_relaxed(&c->sent, 0);
        pa_store_relaxed(&c->received, 0);
        pa_store_relaxed(&c->given_back, 0);
        pa_store_relaxed(&c->handed_on, 0);
        pa_store_relaxed(&c->full_waits, 0);
        pa_store_relaxed(&c->refused, 0);
        pa_store_relaxed(&c->unheard, 0);
        pa_store_relaxed(&c->freed, 0);
        pshm_ring_init(pshm_chan_ring(s, ch), shift);
        pa_store_relaxed(&c->opens[slot], 1);
        /* release: pairs with try_join()'s acquire: the entry and its ring
         * are whole before anyone sees it LIVE. */
        pa_store_release(&c->word, PSHM_CHAN_WORD(gen, 1, PSHM_CHAN_LIVE));
        return (int)ch;
    }
    return -ENOSPC;
}

static int subscribe(pshm_seg_t *s, uint32_t ch, uint32_t slot);

/* Join or make, then take a seat when asked (undoing the join when none is
 * free). */
static int open_as(pshm_seg_t *s, const pshm_actor_t *actor, const char *name, uint32_t kind,
                   uint32_t shift, bool create_missing, bool exclusive);

int pshm_chan_open(pshm_seg_t *s, const pshm_actor_t *actor, const char *name, uint32_t kind,
                   uint32_t shift, bool create_missing, bool exclusive, int *seat)
{
    if (!pshm_chan_name_ok(name) || (kind != PSHM_CHAN_QUEUE && kind != PSHM_CHAN_TOPIC) ||
        shift > PSHM_CHAN_SHIFT_MAX || (seat && kind != PSHM_CHAN_TOPIC))
        return -EINVAL;
    int ch = open_as(s, actor, name, kind, shift, create_missing, exclusive);
    if (ch < 0 || !seat)
        return ch;
    int rc = subscribe(s, (uint32_t)ch, actor->slot);
    if (rc < 0) {
        pshm_chan_close(s, (uint32_t)ch, actor->slot);
        return rc;
    }
    *seat = rc;
    return ch;
}

static int open_as(pshm_seg_t *s, const pshm_actor_t *actor, const char *name, uint32_t kind,
                   uint32_t shift, bool create_missing, bool exclusive)
{
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

/* A reclaimer's move of the block at off (class k, or large head n) from
 * owner byte `from` to `to`, one of them CHAN: journaled in its record
 * `hands` when it has one (pshm_rec_chan_move()), else counted in the
 * class (put_in_transit), as the owner walk does. True when it moved. */
static bool chan_move(pshm_seg_t *s, struct pshm_thread *hands, int k, int n, uint64_t off,
                      uint8_t from, uint8_t to)
{
    if (hands)
        return k >= 0 ? pshm_rec_chan_move(s, hands, (uint32_t)k, (uint32_t)(off >> 3), from, to)
                      : pshm_large_chan_move(s, hands, (uint32_t)n, from, to);
    pa_u8 *o = k >= 0 ? pshm_owner(s, (uint32_t)k, off) : pshm_large_owner(s, (uint32_t)n);
    uint8_t v = from;
    if (!pa_cas_strong_acq_rel(o, &v, to)) /* acq_rel: as in pshm_rec_chan_move() */
        return false;
    if (to == PSHM_OWN_CHAN)
        pa_add_relaxed(put_in_transit_of(s, k), 1); /* relaxed: statistic */
    else
        pa_sub_relaxed(put_in_transit_of(s, k), 1);
    return true;
}

static uint32_t rec_number(const pshm_seg_t *s, const struct pshm_thread *t)
{
    return (uint32_t)(((const uint8_t *)t - s->threads) / s->thread_bytes);
}

struct send_arg {
    struct pshm_ring *r;
    struct pshm_chan *c;
    const pshm_chan_actor_t *a;
    struct finisher *f; /* topics: frees the oldest message when nobody holds it */
    uint64_t off, pos;
    bool counted_full;
};

static bool topic_finish(struct finisher *f, struct pshm_chan *c, struct pshm_ring *r,
                         uint64_t pos);

static int send_step(void *arg)
{
    struct send_arg *a = arg;
    for (;;) {
        uint64_t pos, empty;
        int rc = pshm_ring_reserve(a->r, &pos, &empty);
        if (rc == -EAGAIN && a->f) {
            /* A topic's oldest message may be released by all: free it,
             * and its cell is room. relaxed: a hint (the cell decides). */
            uint64_t t = pa_load_relaxed(&a->r->tail);
            if (t >= pshm_ring_cap(a->r) && topic_finish(a->f, a->c, a->r, t - pshm_ring_cap(a->r)))
                continue;
        }
        if (rc == -EAGAIN && !a->counted_full) {
            a->counted_full = true;
            pa_add_relaxed(&a->c->full_waits, 1); /* relaxed: statistic */
        }
        if (rc < 0)
            return rc;
        if (pshm_ring_fill(a->r, pos, empty, a->a->own, (uint32_t)(a->off >> 3))) {
            a->pos = pos;
            return 0;
        }
    }
}

/* Who finishes a topic's message: a live record (t), which adopts the
 * block and gives it to give(); or a reclaimer (t NULL), which moves it
 * into the hands of `slot` (dead or detaching) for its owner walk. */
struct finisher {
    pshm_seg_t *s;
    struct pshm_thread *t;
    uint32_t slot;
    uint32_t who; /* what its TAKEN cells name */
    pshm_give_fn give;
    void *ctx;
    struct pshm_thread *hands; /* a reclaimer's record, journaling its moves */
};

static struct finisher live_finisher(pshm_seg_t *s, const pshm_chan_actor_t *a)
{
    return (struct finisher){s, a->t, a->slot, rec_number(s, a->t) + 1, a->give, a->ctx, NULL};
}

int pshm_chan_send(pshm_seg_t *s, uint32_t ch, const pshm_chan_actor_t *act, uint64_t off,
                   int timeout_ms)
{
    if (ch >= PSHM_MAX_CHANS || (off & 7) || off < s->data_off || off >= s->data_end)
        return -EINVAL;
    int k, n;
    pa_u8 *o = block_owner(s, off, &k, &n);
    /* relaxed: our own block's byte (only a racing free of it in this
     * program writes it); the handoff below makes the real CAS. */
    if (!o || pa_load_relaxed(o) != act->own)
        return -EINVAL;
    struct pshm_chan *c = &s->chans[ch];
    bool topic = c->kind == PSHM_CHAN_TOPIC;
    struct finisher f; /* a topic's only: a queue's send frees nothing */
    if (topic)
        f = live_finisher(s, act);
    struct send_arg a = {ring_checked(s, ch), c, act, topic ? &f : NULL, off, 0, false};
    if (!a.r)
        return -EPROTO;
    int rc = pshm_ring_wait(a.r, true, send_step, &a, timeout_ms, CHAN_SLICE_MS,
                            &c->sleeping_send[act->slot]);
    if (rc < 0)
        return rc;
    /* The message is in the ring; the block goes to transit (journaled).
     * Until it does, receivers leave the cell alone. */
    if (k >= 0)
        pshm_rec_chan_handoff(s, act->t, (uint32_t)k, (uint32_t)(off >> 3));
    else
        pshm_large_chan_handoff(s, act->t, (uint32_t)n);
    pa_add_relaxed(&c->sent, 1); /* relaxed: statistic */
    /* A topic message nobody subscribed to is freed now (topic_finish()
     * looks at the seats again after its CAS: a subscriber arriving meanwhile
     * keeps it). */
    if (topic && topic_finish(&f, c, a.r, a.pos))
        pa_add_relaxed(&c->unheard, 1); /* relaxed: statistic */
    if (topic)
        pshm_ring_filled_all(a.r); /* every subscriber reads it */
    else
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
        /* acquire: pairs with the sender's release of CHAN, so the
         * block's contents are visible once we adopt it. */
        uint8_t v = o ? pa_load_acquire(o) : 0;
        if (o && v != PSHM_OWN_CHAN && v == pshm_ring_word_who(full))
            return -EAGAIN; /* its sender is between fill and handoff: it wakes us */
        if (!pshm_ring_take(a->r, pos, full, a->taker, &a->taken))
            continue;
        a->pos = pos;
        a->k = k;
        a->n = n;
        if (o && v == PSHM_OWN_CHAN)
            return 0;
        /* Neither in the channel nor its sender's: no program can free or
         * adopt a CHAN block, so only an overwritten segment does this. */
        pa_add_relaxed(&a->c->refused, 1); /* relaxed: statistic */
        (void)pshm_ring_release(a->r, pos, a->taken);
        pshm_ring_emptied(a->r);
    }
}

static int topic_recv(pshm_seg_t *s, uint32_t ch, const pshm_chan_actor_t *act, int seat,
                      uint64_t *off, int timeout_ms);

int pshm_chan_recv(pshm_seg_t *s, uint32_t ch, const pshm_chan_actor_t *act, int seat,
                   uint64_t *off, int timeout_ms)
{
    if (ch >= PSHM_MAX_CHANS)
        return -EINVAL;
    struct pshm_chan *c = &s->chans[ch];
    if (c->kind == PSHM_CHAN_TOPIC)
        return topic_recv(s, ch, act, seat, off, timeout_ms);
    struct recv_arg a = {s, ring_checked(s, ch), c, rec_number(s, act->t) + 1, 0, 0, -1, -1};
    if (!a.r)
        return -EPROTO;
    for (;;) {
        int rc = pshm_ring_wait(a.r, false, recv_step, &a, timeout_ms, CHAN_SLICE_MS,
                                &c->sleeping_recv[act->slot]);
        if (rc < 0)
            return rc;
        uint64_t o = (uint64_t)pshm_ring_word_value(a.taken) << 3;
        rc = a.k >= 0 ? pshm_rec_adopt_from(s, act->t, act->slot, (uint32_t)a.k, (uint32_t)(o >> 3),
                                            PSHM_OWN_CHAN)
                      : pshm_large_adopt_from(s, act->t, act->slot, (uint32_t)a.n, PSHM_OWN_CHAN);
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

/*
 * Topics (docs/internals.md, "Topics"). A message at position p stays in
 * its FULL cell, its block in transit, while some subscriber holds it: an
 * ACTIVE seat with rel <= p, or a seat being taken. Whoever finds that
 * nobody does finishes it: it CASes the cell to TAKEN(its own who), looks
 * at the seats again, and either puts the cell back (someone holds it) or
 * takes the block out of transit, empties the cell and frees the block.
 * A new subscriber stores its seat ACTIVE, then reads cells; a finisher
 * CASes a cell, then reads seats; each with a seq_cst fence between, so
 * that at least one of the two sees the other: a subscriber never gets a
 * message that is being freed, and one that finds a cell TAKEN waits
 * until its finisher has put it back or emptied it.
 */

/* Does a subscriber hold position pos? */
static bool seats_hold(struct pshm_chan *c, uint64_t pos)
{
    for (uint32_t i = 0; i < PSHM_CHAN_SEATS; i++) {
        struct pshm_seat *st = &c->seats[i];
        /* acquire: pairs with the release store of ACTIVE in subscribe(),
         * so the rel read next is the subscriber's, or newer. */
        uint64_t w = pa_load_acquire(&st->word);
        uint32_t state = PSHM_SEAT_STATE(w);
        if (state == PSHM_SEAT_FREE)
            continue;
        if (state != PSHM_SEAT_ACTIVE)
            return true;
        /* relaxed: ordered by the caller's fence (see above). */
        if (pa_load_relaxed(&st->rel) <= pos)
            return true;
    }
    return false;
}

/* The cell at pos is TAKEN(taken) by f, and nobody holds its message: take
 * the block out of transit, empty the cell, free the block. */
static void finish_taken(struct finisher *f, struct pshm_chan *c, struct pshm_ring *r, uint64_t pos,
                         uint64_t taken)
{
    pshm_seg_t *s = f->s;
    uint64_t off = (uint64_t)pshm_ring_word_value(taken) << 3;
    int k, n;
    pa_u8 *o = block_owner(s, off, &k, &n);
    bool give = false;
    if (o && f->t) {
        give = (k >= 0 ? pshm_rec_adopt_from(s, f->t, f->slot, (uint32_t)k, (uint32_t)(off >> 3),
                                             PSHM_OWN_CHAN)
                       : pshm_large_adopt_from(s, f->t, f->slot, (uint32_t)n, PSHM_OWN_CHAN)) == 0;
    } else if (o) {
        /* Into slot's hands, for its owner walk. */
        (void)chan_move(s, f->hands, k, n, off, PSHM_OWN_CHAN, pshm_own_val(f->slot));
    }
    PSHM_CRASH_POINT();
    (void)pshm_ring_release(r, pos, taken);
    pshm_ring_settle_head(r);
    pa_add_relaxed(&c->freed, 1); /* relaxed: statistic */
    pshm_ring_emptied(r);
    pshm_ring_filled_all(r); /* subscribers that found it TAKEN wait for this */
    if (give)
        f->give(f->ctx, off);
}

/* Free the topic message at pos if nobody holds it: true when f did. */
static bool topic_finish(struct finisher *f, struct pshm_chan *c, struct pshm_ring *r, uint64_t pos)
{
    uint32_t i = (uint32_t)(pos & (pshm_ring_cap(r) - 1));
    uint64_t w = pshm_ring_cell(r, i);
    if (pshm_ring_diff(r, w, pos, PSHM_RING_FULL) != 0 || seats_hold(c, pos))
        return false;
    uint64_t off = (uint64_t)pshm_ring_word_value(w) << 3;
    int k, n;
    pa_u8 *o = block_owner(f->s, off, &k, &n);
    /* acquire: as in recv_step(). Its sender between fill and handoff: not
     * sent yet (the sender finishes it itself if need be). */
    if (o && pa_load_acquire(o) == pshm_ring_word_who(w))
        return false;
    uint64_t taken =
        pshm_ring_word(pos, r->shift, PSHM_RING_TAKEN, f->who, pshm_ring_word_value(w));
    if (!pshm_ring_cas(r, pos, w, taken))
        return false;
    /* seq_cst: between our CAS and our reading of the seats; pairs with
     * the fence in subscribe() between its ACTIVE store and its reads of
     * cells (and with seat_done()'s after a store of rel). */
    pa_fence_seq_cst();
    if (seats_hold(c, pos)) {
        (void)pshm_ring_cas(r, pos, taken, w); /* held after all: put it back */
        pshm_ring_filled_all(r);
        return false;
    }
    finish_taken(f, c, r, pos, taken);
    return true;
}

/* Seat st is done with position p (released, or passed over): mark it,
 * then move rel over every position done, freeing each message nobody
 * holds any more. Only the thread that clears the bit at rel moves rel. */
static void seat_done(struct finisher *f, struct pshm_chan *c, struct pshm_ring *r,
                      struct pshm_seat *st, uint64_t p)
{
    uint32_t mask = pshm_ring_cap(r) - 1;
    uint32_t b = (uint32_t)(p & mask);
    /* acq_rel, then seq_cst: pairs with the fence after the store of rel
     * below in another thread of this seat: either it sees our bit, or we
     * see its rel (and move it on ourselves). */
    pa_or_acq_rel(&st->done[b >> 6], UINT64_C(1) << (b & 63));
    pa_fence_seq_cst();
    for (;;) {
        uint64_t l = pa_load_relaxed(&st->rel); /* relaxed: ordered by the fences */
        uint32_t i = (uint32_t)(l & mask);
        uint64_t bit = UINT64_C(1) << (i & 63);
        if (!(pa_load_relaxed(&st->done[i >> 6]) & bit))
            return;
        if (!(pa_and_acq_rel(&st->done[i >> 6], ~bit) & bit))
            return; /* another thread took it: it moves rel */
        pa_store_relaxed(&st->rel, l + 1);
        pa_fence_seq_cst(); /* see above, and topic_finish()'s fence */
        (void)topic_finish(f, c, r, l);
    }
}

/* Take a free seat of topic ch for slot: its number, or -EMFILE. */
static int subscribe(pshm_seg_t *s, uint32_t ch, uint32_t slot)
{
    struct pshm_chan *c = &s->chans[ch];
    struct pshm_ring *r = ring_checked(s, ch);
    if (!r)
        return -EPROTO;
    for (uint32_t i = 0; i < PSHM_CHAN_SEATS; i++) {
        struct pshm_seat *st = &c->seats[i];
        uint64_t w = pa_load_acquire(&st->word); /* acquire: the CAS decides */
        if (PSHM_SEAT_STATE(w) != PSHM_SEAT_FREE)
            continue;
        uint32_t gen = PSHM_SEAT_GEN(w) + 1;
        /* acq_rel: one taker of the seat; while CLAIM it holds every
         * message (seats_hold()), so nothing is freed under our setup. */
        if (!pa_cas_strong_acq_rel(&st->word, &w, PSHM_SEAT_WORD(gen, slot + 1, PSHM_SEAT_CLAIM)))
            continue;
        PSHM_CRASH_POINT();
        /* From the next message sent on: relaxed, a hint; a message whose
         * sender filled its cell before we read the tail is not ours. */
        uint64_t t = pa_load_relaxed(&r->tail);
        for (uint32_t j = 0; j < sizeof(st->done) / sizeof(st->done[0]); j++)
            pa_store_relaxed(&st->done[j], 0); /* relaxed: published below */
        pa_store_relaxed(&st->read, t);
        pa_store_relaxed(&st->rel, t);
        pa_store_relaxed(&st->received, 0);
        st->joined_unix = (uint64_t)time(NULL);
        /* release: pairs with seats_hold()'s acquire. */
        pa_store_release(&st->word, PSHM_SEAT_WORD(gen, slot + 1, PSHM_SEAT_ACTIVE));
        pa_fence_seq_cst(); /* pairs with topic_finish()'s fence */
        return (int)i;
    }
    return -EMFILE;
}

/* Seat number seat of channel ch, when it is slot's and ACTIVE. */
static struct pshm_seat *seat_of(pshm_seg_t *s, uint32_t ch, int seat, uint32_t slot)
{
    if (ch >= PSHM_MAX_CHANS || seat < 0 || (uint32_t)seat >= PSHM_CHAN_SEATS)
        return NULL;
    struct pshm_seat *st = &s->chans[ch].seats[seat];
    uint64_t w = pa_load_acquire(&st->word); /* acquire: as in seats_hold() */
    if (PSHM_SEAT_STATE(w) != PSHM_SEAT_ACTIVE || PSHM_SEAT_SLOT1(w) != slot + 1)
        return NULL;
    return st;
}

struct topic_arg {
    struct finisher *f;
    struct pshm_chan *c;
    struct pshm_ring *r;
    struct pshm_seat *st;
    uint64_t off;
};

static int topic_step(void *arg)
{
    struct topic_arg *a = arg;
    uint32_t mask = pshm_ring_cap(a->r) - 1;
    for (;;) {
        uint64_t p = pa_load_relaxed(&a->st->read); /* relaxed: the CAS below decides */
        uint64_t w = pshm_ring_cell(a->r, (uint32_t)(p & mask));
        int32_t d = pshm_ring_diff(a->r, w, p, PSHM_RING_FULL);
        if (d < 0 || d == 1)
            return -EAGAIN; /* not sent yet, or being freed: its finisher wakes us */
        uint64_t e = p;
        if (d >= 2) {
            /* Freed before we could see it: sent before we subscribed. */
            if (pa_cas_strong_acq_rel(&a->st->read, &e, p + 1)) /* acq_rel: one taker of p */
                seat_done(a->f, a->c, a->r, a->st, p);
            continue;
        }
        uint64_t off = (uint64_t)pshm_ring_word_value(w) << 3;
        int k, n;
        pa_u8 *o = block_owner(a->f->s, off, &k, &n);
        uint8_t v = o ? pa_load_acquire(o) : 0; /* acquire: as in recv_step() */
        if (o && v != PSHM_OWN_CHAN && v == pshm_ring_word_who(w))
            return -EAGAIN; /* its sender is between fill and handoff: it wakes us */
        if (!pa_cas_strong_acq_rel(&a->st->read, &e, p + 1)) /* acq_rel: one taker of p */
            continue;
        if (o && v == PSHM_OWN_CHAN) {
            a->off = off;
            return 0;
        }
        pa_add_relaxed(&a->c->refused, 1); /* relaxed: statistic (as in recv_step()) */
        seat_done(a->f, a->c, a->r, a->st, p);
    }
}

static int topic_recv(pshm_seg_t *s, uint32_t ch, const pshm_chan_actor_t *act, int seat,
                      uint64_t *off, int timeout_ms)
{
    struct pshm_seat *st = seat_of(s, ch, seat, act->slot);
    struct pshm_ring *r = ring_checked(s, ch);
    if (!st)
        return -EBADF;
    if (!r)
        return -EPROTO;
    struct finisher f = live_finisher(s, act);
    struct topic_arg a = {&f, &s->chans[ch], r, st, 0};
    int rc = pshm_ring_wait(r, false, topic_step, &a, timeout_ms, CHAN_SLICE_MS,
                            &a.c->sleeping_recv[act->slot]);
    if (rc < 0)
        return rc;
    pa_add_relaxed(&a.c->received, 1); /* relaxed: statistics */
    pa_add_relaxed(&st->received, 1);
    *off = a.off;
    return 0;
}

int pshm_chan_release(pshm_seg_t *s, uint32_t ch, const pshm_chan_actor_t *act, int seat,
                      uint64_t off)
{
    struct pshm_seat *st = seat_of(s, ch, seat, act->slot);
    struct pshm_ring *r = ring_checked(s, ch);
    if (!st || !r || (off & 7))
        return -EINVAL;
    uint32_t mask = pshm_ring_cap(r) - 1;
    /* The message is one the seat received and did not release: between
     * rel and read, FULL at its position, with that block, bit not done.
     * relaxed: our own seat's positions (its threads' CAS and stores). */
    uint64_t lo = pa_load_relaxed(&st->rel), hi = pa_load_relaxed(&st->read);
    for (uint64_t p = lo; p < hi && p - lo <= mask; p++) {
        uint64_t w = pshm_ring_cell(r, (uint32_t)(p & mask));
        uint32_t b = (uint32_t)(p & mask);
        if (pshm_ring_diff(r, w, p, PSHM_RING_FULL) != 0 ||
            (uint64_t)pshm_ring_word_value(w) << 3 != off ||
            (pa_load_relaxed(&st->done[b >> 6]) & (UINT64_C(1) << (b & 63))))
            continue;
        struct finisher f = live_finisher(s, act);
        seat_done(&f, &s->chans[ch], r, st, p);
        return 0;
    }
    return -EINVAL;
}

/* Free every message in topic c's ring that nobody holds now (after a
 * seat was freed). */
static void finish_unheld(struct finisher *f, struct pshm_chan *c, struct pshm_ring *r)
{
    uint64_t t = pa_load_relaxed(&r->tail); /* relaxed: a hint */
    uint32_t cap = pshm_ring_cap(r);
    for (uint64_t p = t > cap ? t - cap : 0; p < t; p++)
        (void)topic_finish(f, c, r, p);
}

/* Free seat st (slot's): every position it had not released is released
 * (f finishes what nobody else holds). */
static uint64_t seat_leave(struct finisher *f, struct pshm_chan *c, struct pshm_ring *r,
                           struct pshm_seat *st)
{
    uint64_t w = pa_load_acquire(&st->word); /* acquire: the CAS decides */
    if (PSHM_SEAT_STATE(w) == PSHM_SEAT_FREE)
        return 0;
    /* relaxed: the seat's own positions; its holder is gone or is us. */
    uint64_t lo = pa_load_relaxed(&st->rel), hi = pa_load_relaxed(&st->read);
    /* acq_rel: against nobody but a reclaimer of ours (one wins). */
    if (!pa_cas_strong_acq_rel(&st->word, &w, PSHM_SEAT_WORD(PSHM_SEAT_GEN(w), 0, PSHM_SEAT_FREE)))
        return 0;
    pa_fence_seq_cst(); /* the seat is free before we look at cells */
    uint64_t held = hi > lo ? hi - lo : 0;
    finish_unheld(f, c, r);
    return held;
}

bool pshm_chan_ready(pshm_seg_t *s, uint32_t ch, int seat)
{
    struct pshm_ring *r = ch < PSHM_MAX_CHANS ? ring_checked(s, ch) : NULL;
    if (!r)
        return false;
    uint32_t mask = pshm_ring_cap(r) - 1;
    uint64_t p, w;
    if (s->chans[ch].kind != PSHM_CHAN_TOPIC) {
        if (pshm_ring_peek(r, &p, &w) < 0)
            return false;
    } else {
        if (seat < 0 || (uint32_t)seat >= PSHM_CHAN_SEATS)
            return false;
        /* relaxed: a look; the receive decides. */
        p = pa_load_relaxed(&s->chans[ch].seats[seat].read);
        w = pshm_ring_cell(r, (uint32_t)(p & mask));
        int32_t d = pshm_ring_diff(r, w, p, PSHM_RING_FULL);
        if (d >= 2)
            return true; /* one to pass over: the receive moves on */
        if (d != 0)
            return false;
    }
    int k, n;
    pa_u8 *o = block_owner(s, (uint64_t)pshm_ring_word_value(w) << 3, &k, &n);
    /* acquire: as in recv_step(). Its sender between fill and handoff:
     * not yet (the handoff's wake-up comes after). */
    return !o || pa_load_acquire(o) != pshm_ring_word_who(w);
}

int pshm_chan_watch(pshm_seg_t *s, uint32_t ch, uint32_t slot, int delta)
{
    struct pshm_ring *r = ch < PSHM_MAX_CHANS ? ring_checked(s, ch) : NULL;
    if (!r)
        return -EINVAL;
    struct pshm_chan *c = &s->chans[ch];
    /* relaxed: the slot's own count, as opens[]. The slot's count first
     * going up, last going down: a death in between leaves its reclaimer
     * one too few to take off, never one too many. */
    if (delta > 0) {
        pshm_ring_watch(r, delta);
        pa_add_relaxed(&c->watching[slot], (uint8_t)delta);
    } else {
        pa_sub_relaxed(&c->watching[slot], (uint8_t)-delta);
        pshm_ring_watch(r, delta);
    }
    return 0;
}

void pshm_chan_unsubscribe(pshm_seg_t *s, uint32_t ch, const pshm_chan_actor_t *act, int seat)
{
    struct pshm_seat *st = seat_of(s, ch, seat, act->slot);
    struct pshm_ring *r = ring_checked(s, ch);
    if (!st || !r)
        return;
    struct finisher f = live_finisher(s, act);
    (void)seat_leave(&f, &s->chans[ch], r, st);
}

void pshm_chan_unsubscribe_all(pshm_seg_t *s, const pshm_chan_actor_t *act)
{
    for (uint32_t ch = 0; ch < PSHM_MAX_CHANS; ch++)
        for (int i = 0; i < (int)PSHM_CHAN_SEATS; i++)
            pshm_chan_unsubscribe(s, ch, act, i);
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

/* Take back slot's seats of topic c: each is freed (what it held counted in
 * out). */
static bool reclaim_seats(struct pshm_chan *c, uint32_t slot, pshm_chan_reclaimed_t *out)
{
    bool any = false;
    for (uint32_t i = 0; i < PSHM_CHAN_SEATS; i++) {
        struct pshm_seat *st = &c->seats[i];
        uint64_t w = pa_load_acquire(&st->word); /* acquire: as in seats_hold() */
        if (PSHM_SEAT_STATE(w) == PSHM_SEAT_FREE || PSHM_SEAT_SLOT1(w) != slot + 1)
            continue;
        /* relaxed: its holder is gone; the lock orders us after it. */
        uint64_t lo = pa_load_relaxed(&st->rel), hi = pa_load_relaxed(&st->read);
        /* acq_rel: one freer of the seat. */
        if (!pa_cas_strong_acq_rel(&st->word, &w,
                                   PSHM_SEAT_WORD(PSHM_SEAT_GEN(w), 0, PSHM_SEAT_FREE)))
            continue;
        if (PSHM_SEAT_STATE(w) == PSHM_SEAT_ACTIVE && hi > lo) {
            pa_add_relaxed(&c->given_back, hi - lo); /* relaxed: statistic */
            if (out)
                out->given_back += hi - lo;
        }
        any = true;
    }
    pa_fence_seq_cst(); /* the seats are free before we look at cells */
    return any;
}

void pshm_chan_reclaim_slot(pshm_seg_t *s, uint32_t slot, uint32_t who, struct pshm_thread *hands,
                            pshm_chan_reclaimed_t *out)
{
    uint8_t own = pshm_own_val(slot);
    struct finisher f = {s, NULL, slot, who, NULL, NULL, hands};
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
        bool topic = c->kind == PSHM_CHAN_TOPIC;
        bool changed = topic && reclaim_seats(c, slot, out);
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
            uint32_t taker = pshm_ring_word_who(cell);
            bool ours =
                st == PSHM_RING_TAKEN && (rec_of_slot(s, taker, slot) ||
                                          (taker == PSHM_RING_WHO_MAX && who == PSHM_RING_WHO_MAX));
            if (ours && topic && who != PSHM_CHAN_NO_FINISHER) {
                /* A finisher of ours died freeing a topic message: finish
                 * it, or put it back if a subscriber holds it after all. */
                uint64_t pos = pshm_ring_cell_pos(r, i, cell);
                if (seats_hold(c, pos)) {
                    if (v == own)
                        (void)chan_move(s, hands, k, n, off, own, PSHM_OWN_CHAN);
                    (void)pshm_ring_cas(r, pos, cell,
                                        pshm_ring_word(pos, r->shift, PSHM_RING_FULL, 0,
                                                       pshm_ring_word_value(cell)));
                } else {
                    finish_taken(&f, c, r, pos, cell);
                }
                changed = true;
            } else if (ours) {
                /* A receiver of ours died before returning the message: if
                 * it had not adopted the block yet, take it out of transit
                 * into its hands (one fewer put in transit: the books'
                 * equations count it so); the owner walk gives it back. */
                if (v == PSHM_OWN_CHAN)
                    (void)chan_move(s, hands, k, n, off, PSHM_OWN_CHAN, own);
                (void)pshm_ring_release(r, pshm_ring_cell_pos(r, i, cell), cell);
                pa_add_relaxed(&c->given_back, 1); /* relaxed: statistic */
                if (out)
                    out->given_back++;
                changed = true;
            } else if (v == own) {
                /* Sent by us, not handed off yet: hand it off for us. */
                if (chan_move(s, hands, k, n, off, own, PSHM_OWN_CHAN)) {
                    pa_add_relaxed(&c->handed_on, 1); /* relaxed: statistic */
                    if (out)
                        out->handed_on++;
                    changed = true;
                }
            }
        }
        if (topic && who != PSHM_CHAN_NO_FINISHER)
            finish_unheld(&f, c, r); /* what only its seats held, or it sent to nobody */
        /* Its watchers, off the ring's count. relaxed: as below. */
        uint32_t wn = pa_load_relaxed(&c->watching[slot]);
        if (wn) {
            pa_store_relaxed(&c->watching[slot], 0);
            pshm_ring_watch(r, -(int)wn);
        }
        /* Its sleepers, off the ring's counts. relaxed: as above. */
        uint32_t sr = pa_load_relaxed(&c->sleeping_recv[slot]);
        uint32_t ss = pa_load_relaxed(&c->sleeping_send[slot]);
        if (sr || ss) {
            pa_store_relaxed(&c->sleeping_recv[slot], 0);
            pa_store_relaxed(&c->sleeping_send[slot], 0);
            pshm_ring_forget(r, sr, ss);
        }
        /* Its memberships. relaxed: the lock orders us after its death. */
        uint32_t m = pa_load_relaxed(&c->opens[slot]);
        if (m) {
            pa_store_relaxed(&c->opens[slot], 0);
            leave(s, ch, m);
            if (out)
                out->left += m;
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
    out->unheard = pa_load_relaxed(&c->unheard);
    out->freed = pa_load_relaxed(&c->freed);
    uint64_t tail = pa_load_relaxed(&r->tail);
    for (uint32_t i = 0; c->kind == PSHM_CHAN_TOPIC && i < PSHM_CHAN_SEATS; i++) {
        const struct pshm_seat *st = &c->seats[i];
        if (PSHM_SEAT_STATE(pa_load_relaxed(&st->word)) != PSHM_SEAT_ACTIVE)
            continue;
        uint64_t rel = pa_load_relaxed(&st->rel);
        uint64_t lag = tail > rel ? tail - rel : 0;
        out->subscribers++;
        out->slow += lag >= out->capacity;
        if (lag > out->lag_max)
            out->lag_max = lag;
    }
    out->receivers_waiting = pa_load_relaxed(&r->recv_waiters);
    out->senders_waiting = pa_load_relaxed(&r->send_waiters);
    out->created_unix = c->created_unix;
    out->creator_pid = c->creator_pid;
    return true;
}
