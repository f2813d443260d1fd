/* SPDX-License-Identifier: MIT */
/*
 * pshm_slots.c: process slots and thread-cache records.
 *
 * A process holds one slot; each of its threads that allocates holds one
 * thread record, owned by the slot (invariant 6, docs/design.md), so that a dead
 * process's cached blocks can be given back by whoever reclaims its slot.
 * Claims are CAS on a state word; releases are release stores. When the
 * owner may have died or scribbled (untrusted), every index read from its
 * record is checked before it is followed: a corrupt record loses its
 * entries, never crashes the reclaimer.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pshm.h"

int pshm_proc_claim(pshm_seg_t *s, pid_t pid, uint64_t start_time, enum pshm_via via)
{
    for (uint32_t i = 0; i < s->max_procs; i++) {
        struct pshm_proc *p = &s->procs[i];
        uint32_t st = PSHM_PROC_FREE;
        /* acq_rel: acquire pairs with the release store of FREE in
         * pshm_proc_release(), so the previous owner is wholly gone. The
         * word names us: should we die before LIVE, a reclaimer sees that
         * the claimer is gone and frees the slot (free_dead_claim()). */
        if (!pa_cas_strong_acq_rel(&p->state, &st, PSHM_PROC_CLAIMING_BY(pid)))
            continue;
        pa_store_relaxed(&p->pid, (int32_t)pid);
        pa_store_relaxed(&p->start_time, start_time);
        pa_store_relaxed(&p->attached_unix, (uint64_t)time(NULL));
        pa_store_relaxed(&p->via_daemon, (uint32_t)via);
        pa_store_relaxed(&p->reclaimer, 0);
        pa_store_relaxed(&p->folded_allocs, 0);
        pa_store_relaxed(&p->folded_frees, 0);
        pa_store_relaxed(&p->r_cmiss, 0);
        pa_store_relaxed(&p->image, 0);
        pa_store_relaxed(&p->ended, PSHM_END_NONE);
        /* release: readers that see LIVE (acquire) see the fields above. */
        pa_store_release(&p->state, PSHM_PROC_LIVE);
        return (int)i;
    }
    return -EBUSY;
}

int pshm_proc_find(const pshm_seg_t *s, pid_t pid)
{
    for (uint32_t i = 0; i < s->max_procs; i++) {
        const struct pshm_proc *p = &s->procs[i];
        /* acquire: pairs with the release store of LIVE in pshm_proc_claim(),
         * so the pid read next is the claimer's. */
        if (pa_load_acquire(&p->state) == PSHM_PROC_LIVE && pa_load_relaxed(&p->pid) == pid &&
            pa_load_relaxed(&p->via_daemon) != PSHM_VIA_POOLD)
            return (int)i;
    }
    return -ENOENT;
}

void pshm_proc_set_image(pshm_seg_t *s, uint32_t slot, uint32_t image)
{
    /* relaxed: read by poold only, the writer, at a later HELLO. */
    pa_store_relaxed(&s->procs[slot].image, image);
}

uint32_t pshm_proc_image(const pshm_seg_t *s, uint32_t slot)
{
    return pa_load_relaxed(&s->procs[slot].image); /* relaxed: see pshm_proc_set_image() */
}

void pshm_proc_note_end(pshm_seg_t *s, uint32_t slot, uint32_t how)
{
    /* release: pairs with the acquire in pshm_proc_reclaim(), which runs
     * once the holder is gone. */
    pa_store_release(&s->procs[slot].ended, how);
}

void pshm_proc_release(pshm_seg_t *s, uint32_t slot)
{
    /* release: pairs with the acquire CAS in pshm_proc_claim(). */
    pa_store_release(&s->procs[slot].state, PSHM_PROC_FREE);
}

struct pshm_thread *pshm_thread_claim(pshm_seg_t *s, uint32_t slot, int32_t tid)
{
    for (uint32_t i = 0; i < s->max_threads; i++) {
        struct pshm_thread *t = pshm_thread_at(s, i);
        /* relaxed: a cheap filter; the CAS decides. */
        if (pa_load_relaxed(&t->owner) != PSHM_NO_OWNER)
            continue;
        uint32_t expect = PSHM_NO_OWNER;
        /* acq_rel: acquire pairs with the release store of NO_OWNER in
         * pshm_thread_release(): the record was left empty. */
        if (!pa_cas_strong_acq_rel(&t->owner, &expect, slot + 1))
            continue;
        pa_store_relaxed(&t->tid, tid);
        uint64_t dropped = 0;
        for (uint32_t c = 0; c < s->nclasses; c++) {
            struct pshm_tclass *tc = &t->cls[c];
            /* A free record was left empty by its release; one that is not
             * was scribbled on (a corrupt segment): its entries are not
             * believed (the record's next flush would follow them), and
             * it starts empty. relaxed (all): the record is ours now. */
            uint32_t n = pa_load_relaxed(&tc->count);
            uint64_t h = pa_load_relaxed(&tc->hot);
            if (pshm_unlikely(n != 0 || h != 0 ||
                              pa_load_relaxed(&tc->pend.op) != PSHM_PEND_NONE)) {
                dropped += (n <= s->cache_cap[c] ? n : 1) + (h != 0);
                pa_store_relaxed(&tc->count, 0);
                pa_store_relaxed(&tc->hot, 0);
                pa_store_relaxed(&tc->pend.op, PSHM_PEND_NONE);
            }
            /* The counters go on from the last owner's; the bases make the
             * per-process figures start at zero. relaxed: single writer. */
            tc->fresh_end = pshm_tclass_fresh_next(tc);
            PSHM_CRASH_POINT();
            pa_store_relaxed(&tc->base_allocs, pshm_tclass_allocs(tc));
            pa_store_relaxed(&tc->base_frees, pa_load_relaxed(&tc->frees));
            pa_store_relaxed(&tc->base_cache_misses, pa_load_relaxed(&tc->cache_misses));
            tc->life_idx = 0; /* the last owner's sample is not ours */
        }
        struct pshm_tlarge *tl = pshm_tlarge_of(s, t);
        /* relaxed (all): the record is ours now; as above. */
        if (pshm_unlikely(pa_load_relaxed(&tl->pend.op) != PSHM_PEND_NONE)) {
            dropped++;
            pa_store_relaxed(&tl->pend.op, PSHM_PEND_NONE);
        }
        pa_store_relaxed(&tl->base_allocs, pa_load_relaxed(&tl->allocs));
        pa_store_relaxed(&tl->base_frees, pa_load_relaxed(&tl->frees));
        if (dropped)
            pa_add_relaxed(&s->hdr->entries_dropped, dropped); /* relaxed: statistic */
        return t;
    }
    return NULL;
}

/* A class this record never touched since its claim has nothing to give
 * back: skip it without touching shared lines. */
static bool tclass_idle(const struct pshm_tclass *tc)
{
    /* relaxed (all): the owner is us, gone, or dead. */
    return pa_load_relaxed(&tc->count) == 0 && pa_load_relaxed(&tc->hot) == 0 &&
           pshm_tclass_fresh_next(tc) >= tc->fresh_end &&
           pa_load_relaxed(&tc->pend.op) == PSHM_PEND_NONE;
}

/* Give every block of record t's cache of class c to central: how many.
 * `untrusted` (a dead owner's record, which a peer may still write): every
 * count is bounded by the cache when read, entries are checked as they are
 * pushed, and the loop is bounded, whatever the record says meanwhile. */
static uint64_t drain(pshm_seg_t *s, struct pshm_thread *t, uint32_t c, bool untrusted)
{
    struct pshm_tclass *tc = &t->cls[c];
    uint32_t cap = s->cache_cap[c];
    void (*push)(pshm_seg_t *, struct pshm_thread *, uint32_t, uint32_t) =
        untrusted ? pshm_rec_flush_checked : pshm_rec_flush;
    uint64_t moved = 0;
    /* relaxed (all): the record is ours, or its owner is dead. */
    uint64_t h = pa_load_relaxed(&tc->hot);
    uint32_t n = pa_load_relaxed(&tc->count);
    n = n < cap ? n : cap;
    if (pshm_hot_cached(h) && n >= cap) {
        /* A full cache under a cached hot (a dead owner's record, which
         * recovery lets hold up to cache_cap entries): no room to push hot
         * down into slots[], which ends at PSHM_CACHE_CAP; flush first. */
        uint32_t before = n;
        push(s, t, c, s->batch[c]);
        n = pa_load_relaxed(&tc->count);
        n = n < cap ? n : cap;
        moved += before > n ? before - n : 0;
    }
    uint32_t hi = pshm_hot_idx(h);
    if (hi != PSHM_IDX_NONE && n < cap) {
        /* Into slots[] first, then out of hot: a death in between leaves
         * hot == slots[count], which recovery reads as one. */
        tc->slots[n + 1] = hi;
        PSHM_CRASH_POINT();
        pa_store_relaxed(&tc->count, n + 1);
        n++;
    }
    pa_store_relaxed(&tc->hot, 0);
    for (uint32_t rounds = 0; n > 0 && rounds <= cap; rounds++) {
        uint32_t m = n < s->batch[c] ? n : s->batch[c];
        uint32_t before = n;
        push(s, t, c, m);
        n = pa_load_relaxed(&tc->count);
        n = n < cap ? n : cap;
        moved += before > n ? before - n : 0;
    }
    return moved;
}

void pshm_thread_release(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot, bool untrusted,
                         pshm_release_result_t *res)
{
    struct pshm_proc *p = &s->procs[slot];

    for (uint32_t c = 0; c < s->nclasses; c++) {
        struct pshm_tclass *tc = &t->cls[c];
        if (!untrusted && tclass_idle(tc))
            goto fold;
        if (untrusted)
            res->entries_dropped += pshm_rec_recover(s, t, slot, c);
        res->blocks_returned += drain(s, t, c, untrusted);
        pshm_rec_return_range(s, t, c);
    fold:
        /* Per-process figures of the slot (display only: records keep
         * their own counters for the pool's books). relaxed: statistics. */
        if (!untrusted) {
            uint64_t al = pshm_tclass_allocs(tc) - pa_load_relaxed(&tc->base_allocs);
            uint64_t fr = pa_load_relaxed(&tc->frees) - pa_load_relaxed(&tc->base_frees);
            uint64_t cm =
                pa_load_relaxed(&tc->cache_misses) - pa_load_relaxed(&tc->base_cache_misses);
            if (al)
                pa_add_relaxed(&p->folded_allocs, al);
            if (fr)
                pa_add_relaxed(&p->folded_frees, fr);
            if (cm)
                pa_add_relaxed(&p->r_cmiss, cm);
        }
    }
    /* The large part: its journal (its blocks stay in the owner bytes,
     * which the owner walk reads). */
    struct pshm_tlarge *tl = pshm_tlarge_of(s, t);
    if (untrusted) {
        res->entries_dropped += pshm_large_recover(s, t, slot);
    } else {
        /* relaxed: statistics of the slot (display only). */
        uint64_t al = pa_load_relaxed(&tl->allocs) - pa_load_relaxed(&tl->base_allocs);
        uint64_t fr = pa_load_relaxed(&tl->frees) - pa_load_relaxed(&tl->base_frees);
        if (al)
            pa_add_relaxed(&p->folded_allocs, al);
        if (fr)
            pa_add_relaxed(&p->folded_frees, fr);
    }
    res->threads++;
    /* release: pairs with the acquire CAS in pshm_thread_claim(); the next
     * owner sees the record empty. */
    pa_store_release(&t->owner, PSHM_NO_OWNER);
}

/* The index of the first byte equal to v in o[0..n), or n. Owner bytes are
 * read while live processes CAS some of them (a free racing the reclaim):
 * a stale read only makes the CAS that follows fail, so eight at a time,
 * through a volatile pointer hidden from TSan as peek_next_node() is. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
__attribute__((no_sanitize("thread")))
#endif
static size_t
find_byte(const uint8_t *o, size_t n, uint8_t v)
{
    size_t i = 0;
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    uint64_t pat = ones * v;
    while (i < n && ((uintptr_t)(o + i) & 7))
        if (((const volatile uint8_t *)o)[i] == v)
            return i;
        else
            i++;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = *(const volatile uint64_t *)(const void *)(o + i) ^ pat;
        if ((w - ones) & ~w & highs)
            break;
    }
    for (; i < n; i++)
        if (((const volatile uint8_t *)o)[i] == v)
            return i;
    return n;
}

/* Everything slot still owns: to the actor (which frees it), or in transit
 * (orphans = keep, or no actor). Each block moves by one CAS, so a live
 * process freeing the same block (it was handed over by offset) and this
 * walk cannot both have it: exactly one wins. A block put in transit is
 * journaled as a handoff by `hands` (a record of the detaching process or
 * of the reclaimer) and counted there, so that a walker killed between the
 * CAS and the count leaves its successor the journal; without a record the
 * move is counted in the class (put_in_transit), not journaled. */
static void owner_walk(pshm_seg_t *s, uint32_t slot, const pshm_actor_t *actor, bool keep,
                       struct pshm_thread *hands, pshm_reclaimed_t *out)
{
    uint8_t v = pshm_own_val(slot);
    bool give = !keep && actor && actor->rec && actor->slot != slot;
    for (uint32_t n = 0; n < s->nspans; n++) {
        uint32_t c = pa_load_acquire(&s->spanmap[n]); /* acquire: as in pshm_block_class() */
        if (c == PSHM_SPAN_LARGE) {
            /* relaxed: the CAS in the step decides. */
            if (pa_load_relaxed(pshm_large_owner(s, n)) != v)
                continue;
            if (give) {
                if (pshm_large_reclaim(s, actor->rec, n, v) == 0)
                    out->in_use_returned++;
            } else if (pshm_large_to_transit(s, hands, n, v)) {
                out->in_use_kept++;
            }
            continue;
        }
        if (c >= s->nclasses)
            continue;
        uint64_t span_off = s->data_off + ((uint64_t)n << s->span_shift);
        pa_u8 *o = pshm_owner(s, c, span_off);
        uint32_t bps = s->blocks_per_span[c];
        for (uint32_t i = 0;;) {
            i += (uint32_t)find_byte((const uint8_t *)o + i, bps - i, v);
            if (i >= bps)
                break;
            if (give) {
                /* Runs of them go back as uncarved regions, touching no
                 * block but the first of each run. */
                uint32_t k = pshm_rec_reclaim_run(s, actor->rec, c, span_off, i, v);
                if (k) {
                    pa_add_relaxed(&s->cls[c].reclaimed_in_use, k); /* relaxed: statistic */
                    out->in_use_returned += k;
                }
                i += k ? k : 1;
                continue;
            }
            if (hands) {
                uint32_t idx = (uint32_t)(span_off >> 3) + i * (s->block_size[c] >> 3);
                if (pshm_rec_to_transit(s, hands, c, idx, v))
                    out->in_use_kept++;
                i++;
                continue;
            }
            uint8_t cur = v;
            /* acq_rel: exactly one of this walk and a live free of the
             * block moves it out of the dead slot's hands. */
            if (pa_cas_strong_acq_rel(&o[i], &cur, PSHM_OWN_TRANSIT)) {
                pa_add_relaxed(&s->cls[c].put_in_transit, 1); /* relaxed: statistic */
                out->in_use_kept++;
            }
            i++;
        }
    }
}

void pshm_proc_detach(pshm_seg_t *s, uint32_t slot, bool untrusted, pshm_release_result_t *res)
{
    /* One record (the first) is released last: the walk below journals
     * its moves in it, and a reclaimer of a detach that died recovers them
     * from it as handoffs. */
    struct pshm_thread *hands = NULL;
    /* Its channel memberships (and, untrusted, steps), while its records
     * still name it; topic messages it finishes name its first record. */
    uint32_t who = 0;
    for (uint32_t i = 0; i < s->max_threads && !who; i++)
        if (pa_load_acquire(&pshm_thread_at(s, i)->owner) == slot + 1) /* acquire: as below */
            who = i + 1;
    pshm_chan_reclaim_slot(s, slot, who ? who : PSHM_CHAN_NO_FINISHER,
                           who ? pshm_thread_at(s, who - 1) : NULL, NULL);
    for (uint32_t i = 0; i < s->max_threads; i++) {
        struct pshm_thread *t = pshm_thread_at(s, i);
        /* acquire: pairs with the claim CAS, so the owner's writes to the
         * record before its death or detach are visible. */
        if (pa_load_acquire(&t->owner) != slot + 1)
            continue;
        if (hands)
            pshm_thread_release(s, t, slot, untrusted, res);
        else
            hands = t;
    }
    /* Blocks still in use go in transit: another process may still free
     * them, and the slot's next holder must not be taken for their owner. */
    pshm_reclaimed_t r = {0};
    if (hands && untrusted) /* its own step first: the walk's journal replaces it */
        for (uint32_t c = 0; c < s->nclasses; c++)
            res->entries_dropped += pshm_rec_recover(s, hands, slot, c);
    owner_walk(s, slot, NULL, true, hands, &r);
    if (hands)
        pshm_thread_release(s, hands, slot, untrusted, res);
    pshm_proc_release(s, slot);
}

/*
 * One reclaimer at a time per segment. hdr->reclaim_lock holds the pid of
 * the process reclaiming and the low 32 bits of its start time (0: none);
 * every reclaim takes it by CAS from 0 and gives it back with a release
 * store. So no two reclaimers ever work on one slot, a slot's state and
 * pid checked under the lock cannot change but by its holder's own detach,
 * and every RECL (0xfe) owner byte is the current holder's. A holder that
 * died is taken over by a CAS of its exact word; the taker then reclaims
 * the dead holder's own slots first, whose records journal its unfinished
 * run, before any other run can mark a block RECL. A live holder (another
 * thread of ours included) makes the others wait: -EAGAIN, and poold's
 * sweep or the next slow path tries again.
 */
static uint64_t lock_word(pid_t pid)
{
    return (uint64_t)(uint32_t)pid | (pshm_os_proc_start_time(pid) & 0xffffffffu) << 32;
}

static bool lock_holder_gone(uint64_t w)
{
    pid_t pid = (pid_t)(uint32_t)w;
    uint32_t start = (uint32_t)(w >> 32);
    if (pid <= 0)
        return true; /* not a pid: a scribbled word */
    uint64_t now = pshm_os_proc_start_time(pid);
    if (now == 0)
        return !pshm_os_proc_alive(pid, 0);
    return start != 0 && (uint32_t)now != start; /* the pid was reused */
}

static int reclaim_locked(pshm_seg_t *s, uint32_t slot, pid_t expect, const pshm_actor_t *actor,
                          pshm_reclaimed_t *out);

/* Take the lock: 0, or -EAGAIN while a live reclaimer holds it. */
static int lock_take(pshm_seg_t *s, const pshm_actor_t *actor)
{
    pa_u64 *l = &s->hdr->reclaim_lock;
    pid_t me_pid = getpid();
    uint64_t me = lock_word(me_pid);
    /* acquire: pairs with the release store in lock_give(), so the last
     * holder's writes to the segment are visible to us. */
    uint64_t cur = pa_load_acquire(l);
    for (int tries = 0; tries < 4; tries++) {
        if (cur != 0 && ((pid_t)(uint32_t)cur == me_pid || !lock_holder_gone(cur)))
            return -EAGAIN;
        uint64_t dead = cur;
        /* acq_rel: one taker; acquire as above; on failure cur is fresh. */
        if (!pa_cas_strong_acq_rel(l, &cur, me))
            continue;
        if (dead != 0) {
            /* Its own slots first: their records hold its run. */
            pid_t d = (pid_t)(uint32_t)dead;
            for (uint32_t i = 0; i < s->max_procs; i++) {
                const struct pshm_proc *p = &s->procs[i];
                /* acquire: pairs with the release store of LIVE in pshm_proc_claim(). */
                uint32_t st = pa_load_acquire(&p->state);
                if ((st == PSHM_PROC_LIVE || st == PSHM_PROC_RECLAIMING) &&
                    pa_load_relaxed(&p->pid) == d)
                    reclaim_locked(s, i, d, actor, NULL);
            }
            /* Then the free blocks it held as a sweeper. */
            if (actor && actor->rec)
                pshm_sweep_recover(s, actor->rec);
        }
        return 0;
    }
    return -EAGAIN;
}

static void lock_give(pshm_seg_t *s)
{
    /* release: pairs with the acquire in lock_take(): our reclaim's writes
     * come before the next holder's. */
    pa_store_release(&s->hdr->reclaim_lock, 0);
}

int pshm_proc_reclaim_pid(pshm_seg_t *s, uint32_t slot, pid_t pid, const pshm_actor_t *actor,
                          pshm_reclaimed_t *out)
{
    if (slot >= s->max_procs)
        return -EINVAL;
    int rc = lock_take(s, actor);
    if (rc < 0)
        return rc;
    rc = reclaim_locked(s, slot, pid, actor, out);
    lock_give(s);
    return rc;
}

int pshm_proc_reclaim(pshm_seg_t *s, uint32_t slot, const pshm_actor_t *actor,
                      pshm_reclaimed_t *out)
{
    return pshm_proc_reclaim_pid(s, slot, 0, actor, out);
}

/* Under the lock: a slot left CLAIMING (state st) by a claimer that died
 * between its claim CAS and the store of LIVE. It holds no record and no
 * block (both are had only through the slot number, which the claim
 * returns once the slot is LIVE), so it is only given back. -EAGAIN while
 * the claimer lives, or when the word names none. */
static int free_dead_claim(pshm_seg_t *s, uint32_t slot, uint32_t st, pshm_reclaimed_t *out)
{
    int32_t pid = PSHM_PROC_CLAIMER(st);
    if (pid <= 0 || pshm_os_proc_alive(pid, 0))
        return -EAGAIN;
    /* acq_rel: only the claimer writes a CLAIMING slot, and it is gone;
     * release pairs with the acquire CAS in pshm_proc_claim() as
     * pshm_proc_release()'s store does. */
    if (!pa_cas_strong_acq_rel(&s->procs[slot].state, &st, PSHM_PROC_FREE))
        return -EAGAIN;
    if (out)
        *out = (pshm_reclaimed_t){.pid = pid, .slot = slot};
    return 0;
}

/* Under the lock: reclaim slot, LIVE (held by `expect` unless 0) or left
 * RECLAIMING by a reclaimer that died, or free it when its claimer died
 * before it went LIVE. */
static int reclaim_locked(pshm_seg_t *s, uint32_t slot, pid_t expect, const pshm_actor_t *actor,
                          pshm_reclaimed_t *out)
{
    struct pshm_proc *p = &s->procs[slot];
    /* acquire: pairs with the release store of LIVE in pshm_proc_claim(),
     * so the pid read next is the holder's. */
    uint32_t st = pa_load_acquire(&p->state);
    if (PSHM_PROC_IS_CLAIMING(st))
        return free_dead_claim(s, slot, st, out);
    if (st != PSHM_PROC_LIVE && st != PSHM_PROC_RECLAIMING)
        return -EAGAIN;
    if (expect != 0 && pa_load_relaxed(&p->pid) != expect)
        return -ESRCH; /* another process holds the slot now */
    /* acq_rel: against the holder's own release of the slot (a detach):
     * only it can change a LIVE slot while we hold the lock. A RECLAIMING
     * slot under the lock is a dead reclaimer's unfinished work. */
    if (st == PSHM_PROC_LIVE && !pa_cas_strong_acq_rel(&p->state, &st, PSHM_PROC_RECLAIMING))
        return -EAGAIN;
    pa_store_relaxed(&p->reclaimer, (int32_t)getpid()); /* relaxed: informational */
    struct timespec t0, t1, c0, c1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    pshm_reclaimed_t r = {0};
    pshm_release_result_t res = {0};
    r.pid = pa_load_relaxed(&p->pid);
    r.slot = slot;
    /* acquire: pairs with the release in pshm_proc_note_end(). Anything
     * but a known end is a crash (a corrupt word included). */
    r.ended = pa_load_acquire(&p->ended);
    if (r.ended != PSHM_END_EXIT && r.ended != PSHM_END_EXEC)
        r.ended = PSHM_END_NONE;
    /* The records' journaled steps first; then its channel steps, which
     * read the block owner bytes those steps settle and name its records;
     * then the records (their caches and ranges), then the blocks still
     * owned: a torn free left its block in a cache. */
    for (uint32_t i = 0; i < s->max_threads; i++) {
        struct pshm_thread *t = pshm_thread_at(s, i);
        if (pa_load_acquire(&t->owner) != slot + 1) /* acquire: as in pshm_proc_detach */
            continue;
        for (uint32_t c = 0; c < s->nclasses; c++)
            res.entries_dropped += pshm_rec_recover(s, t, slot, c);
        res.entries_dropped += pshm_large_recover(s, t, slot);
    }
    pshm_chan_reclaim_slot(s, slot, PSHM_CHAN_RECLAIMER, actor ? actor->rec : NULL, &r.chans);
    for (uint32_t i = 0; i < s->max_threads; i++) {
        struct pshm_thread *t = pshm_thread_at(s, i);
        if (pa_load_acquire(&t->owner) == slot + 1) /* acquire: as in pshm_proc_detach */
            pshm_thread_release(s, t, slot, true, &res);
    }
    bool keep = pa_load_relaxed(&s->hdr->orphans_keep) != 0; /* relaxed: a setting */
    owner_walk(s, slot, actor, keep, actor ? actor->rec : NULL, &r);
    r.blocks_returned = res.blocks_returned;
    r.entries_dropped = res.entries_dropped;
    r.blocks_orphaned = (int64_t)r.in_use_kept;
    /* relaxed (all): statistics. */
    pa_add_relaxed(r.ended ? &s->hdr->procs_exited : &s->hdr->procs_reclaimed, 1);
    pa_add_relaxed(&s->hdr->blocks_reclaimed, res.blocks_returned);
    if (r.in_use_returned)
        pa_add_relaxed(&s->hdr->reclaimed_in_use, r.in_use_returned);
    if (r.in_use_kept)
        pa_add_relaxed(&s->hdr->blocks_orphaned, r.in_use_kept);
    if (res.entries_dropped)
        pa_add_relaxed(&s->hdr->entries_dropped, res.entries_dropped);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    r.usec = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000);
    r.cpu_usec = (uint64_t)((c1.tv_sec - c0.tv_sec) * 1000000 + (c1.tv_nsec - c0.tv_nsec) / 1000);
    if (out)
        *out = r;
    pa_store_relaxed(&p->reclaimer, 0); /* relaxed: the release below orders it */
    pshm_proc_release(s, slot);
    return 0;
}

/* The slot needs a reclaimer: its process died, or its reclaimer did. */
static bool slot_dead(const pshm_seg_t *s, uint32_t i)
{
    const struct pshm_proc *p = &s->procs[i];
    /* acquire: pairs with the release store of LIVE in pshm_proc_claim(). */
    uint32_t st = pa_load_acquire(&p->state);
    if (st == PSHM_PROC_LIVE)
        return !pshm_os_proc_alive(pa_load_relaxed(&p->pid), pa_load_relaxed(&p->start_time));
    if (st == PSHM_PROC_RECLAIMING) {
        int32_t r = pa_load_relaxed(&p->reclaimer); /* relaxed: a hint */
        return !(r > 0 && pshm_os_proc_alive(r, 0));
    }
    if (PSHM_PROC_IS_CLAIMING(st)) {
        int32_t c = PSHM_PROC_CLAIMER(st);
        return c > 0 && !pshm_os_proc_alive(c, 0);
    }
    return false;
}

bool pshm_any_dead(const pshm_seg_t *s)
{
    for (uint32_t i = 0; i < s->max_procs; i++)
        if (slot_dead(s, i))
            return true;
    return false;
}

int pshm_reclaim_dead(pshm_seg_t *s, const pshm_actor_t *actor, pshm_reclaimed_t *out, int max)
{
    if (lock_take(s, actor) < 0)
        return 0;
    int n = 0;
    for (uint32_t i = 0; i < s->max_procs; i++) {
        /* Judged under the lock: the slot cannot change holder but by its
         * own detach (see lock_take()), and RECLAIMING is a dead
         * reclaimer's unfinished work, whatever its pid says now. */
        if (pa_load_acquire(&s->procs[i].state) != PSHM_PROC_RECLAIMING && !slot_dead(s, i))
            continue; /* acquire: as in slot_dead() */
        pshm_reclaimed_t r;
        if (reclaim_locked(s, i, pa_load_relaxed(&s->procs[i].pid), actor, &r) == 0) {
            if (out && n < max)
                out[n] = r;
            n++;
        }
    }
    lock_give(s);
    return n;
}

int pshm_lock_take(pshm_seg_t *s, const pshm_actor_t *actor)
{
    return lock_take(s, actor);
}

void pshm_lock_give(pshm_seg_t *s)
{
    lock_give(s);
}
