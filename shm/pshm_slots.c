/* SPDX-License-Identifier: MIT */
/*
 * pshm_slots.c: process slots and thread-cache records.
 *
 * A process holds one slot; each of its threads that allocates holds one
 * thread record, owned by the slot (DESIGN.md invariant 6), so that a dead
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

#include "pshm.h"

int pshm_proc_claim(pshm_seg_t *s, pid_t pid, uint64_t start_time, bool via_daemon)
{
    for (uint32_t i = 0; i < s->max_procs; i++) {
        struct pshm_proc *p = &s->procs[i];
        uint32_t st = PSHM_PROC_FREE;
        /* acq_rel: acquire pairs with the release store of FREE in
         * pshm_proc_release(), so the previous owner is wholly gone. */
        if (!pa_cas_strong_acq_rel(&p->state, &st, PSHM_PROC_CLAIMING))
            continue;
        pa_store_relaxed(&p->pid, (int32_t)pid);
        pa_store_relaxed(&p->start_time, start_time);
        pa_store_relaxed(&p->attached_unix, (uint64_t)time(NULL));
        pa_store_relaxed(&p->via_daemon, via_daemon ? 1u : 0u);
        pa_store_relaxed(&p->r_allocs, 0);
        pa_store_relaxed(&p->r_frees, 0);
        pa_store_relaxed(&p->r_cmiss, 0);
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
        if (pa_load_acquire(&p->state) == PSHM_PROC_LIVE && pa_load_relaxed(&p->pid) == pid)
            return (int)i;
    }
    return -ENOENT;
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
         * pshm_thread_release(): the record was left empty and zeroed. */
        if (!pa_cas_strong_acq_rel(&t->owner, &expect, slot + 1))
            continue;
        pa_store_relaxed(&t->tid, tid);
        for (uint32_t c = 0; c < s->nclasses; c++) {
            struct pshm_tclass *tc = &t->cls[c];
            pool_assert(pa_load_relaxed(&tc->count) == 0 && pa_load_relaxed(&tc->hot) == 0);
            tc->fresh_next = tc->fresh_end = PSHM_IDX_NONE;
        }
        return t;
    }
    return NULL;
}

/* Fold a thread's counter into a shared total and zero it. The add comes
 * first: a live reader may count it twice for an instant, never lose it.
 * Zero counters are skipped: no traffic on the shared line. */
static uint64_t fold(pa_u64 *ctr, pa_u64 *total)
{
    uint64_t v = pa_load_relaxed(ctr); /* relaxed: single writer is us now */
    if (v) {
        pa_add_relaxed(total, v); /* relaxed: statistic */
        pa_store_relaxed(ctr, 0);
    }
    return v;
}

void pshm_thread_release(pshm_seg_t *s, struct pshm_thread *t, uint32_t slot, bool untrusted,
                         pshm_release_result_t *res)
{
    struct pshm_proc *p = &s->procs[slot];
    uint32_t buf[PSHM_CACHE_CAP];

    for (uint32_t c = 0; c < s->nclasses; c++) {
        struct pshm_tclass *tc = &t->cls[c];
        struct pshm_class *k = &s->cls[c];
        uint32_t n = pa_load_relaxed(&tc->count); /* relaxed: owner is us or dead */
        uint64_t hot_word = pa_load_relaxed(&tc->hot);
        uint32_t hot = pshm_hot_idx(hot_word);
        /* A class this thread never touched has nothing to give back: skip
         * it without touching the shared class record. */
        if (n == 0 && hot_word == 0 && tc->fresh_next >= tc->fresh_end &&
            pa_load_relaxed(&tc->fresh) == 0 && pa_load_relaxed(&tc->frees) == 0 &&
            pa_load_relaxed(&tc->moved_in) == 0 && pa_load_relaxed(&tc->cmiss) == 0 &&
            pa_load_relaxed(&tc->exhausted) == 0)
            continue;
        /* Before the cache is emptied: both are derived from its content. */
        bool sane = n < s->cache_cap[c];
        uint64_t allocs = sane ? pshm_tclass_allocs(tc) : 0;
        uint64_t same = sane ? pshm_tclass_same(tc) : 0;
        if (!sane) {
            res->entries_dropped += n;
            n = 0;
        }
        /* Give back the cached blocks in batches, hot last. */
        uint32_t m = 0;
        for (uint32_t i = 1; i <= n + 1; i++) {
            uint32_t idx = i <= n ? tc->slots[i] : hot;
            if (idx == PSHM_IDX_NONE)
                continue;
            if (untrusted && !pshm_idx_is_block(s, idx, c)) {
                res->entries_dropped++;
                continue;
            }
            buf[m++] = idx;
            if (m == s->batch[c]) {
                pshm_central_push(s, c, buf, m);
                res->blocks_returned += m;
                m = 0;
            }
        }
        if (m) {
            pshm_central_push(s, c, buf, m);
            res->blocks_returned += m;
        }
        pa_store_relaxed(&tc->count, 0); /* relaxed: statistic readers only */
        pa_store_relaxed(&tc->hot, 0);

        /* The uncarved rest of the thread's span goes to the region stack. */
        uint32_t a = tc->fresh_next, b = tc->fresh_end;
        if (a < b) {
            bool ok = true;
            if (untrusted) {
                uint64_t span_mask = (UINT64_C(1) << s->span_shift) - 1;
                uint64_t ao = (uint64_t)a << 3, bo = (uint64_t)b << 3;
                ok = pshm_idx_is_block(s, a, c) && bo > ao &&
                     bo - ao <= span_mask + 1 - ((ao - s->data_off) & span_mask) &&
                     (bo - ao) % s->block_size[c] == 0;
            }
            if (ok)
                pshm_region_push(s, c, a, b);
            else
                res->entries_dropped++;
        }
        tc->fresh_next = tc->fresh_end = PSHM_IDX_NONE;

        /* Statistics, summed by readers that tolerate a moment's double
         * count (see fold()). */
        if (allocs)
            pa_add_relaxed(&k->r_allocs, allocs); /* relaxed: statistic */
        if (same)
            pa_add_relaxed(&k->r_same, same); /* relaxed: statistic */
        pa_store_relaxed(&tc->moved_in, 0);
        pa_store_relaxed(&tc->moved_out, 0);
        pa_store_relaxed(&tc->displaced, 0);
        uint64_t frees = fold(&tc->frees, &k->r_frees);
        uint64_t cm = fold(&tc->cmiss, &k->r_cmiss);
        fold(&tc->fresh, &k->r_fresh);
        fold(&tc->cenmiss, &k->r_cenmiss);
        fold(&tc->exhausted, &k->r_exhausted);
        /* relaxed: statistics of the slot. */
        if (allocs)
            pa_add_relaxed(&p->r_allocs, allocs);
        if (frees)
            pa_add_relaxed(&p->r_frees, frees);
        if (cm)
            pa_add_relaxed(&p->r_cmiss, cm);
    }
    res->threads++;
    /* release: pairs with the acquire CAS in pshm_thread_claim(); the next
     * owner sees the record empty. */
    pa_store_release(&t->owner, PSHM_NO_OWNER);
}

void pshm_proc_detach(pshm_seg_t *s, uint32_t slot, bool untrusted, pshm_release_result_t *res)
{
    for (uint32_t i = 0; i < s->max_threads; i++) {
        struct pshm_thread *t = pshm_thread_at(s, i);
        /* acquire: pairs with the claim CAS, so the owner's writes to the
         * record before its death or detach are visible. */
        if (pa_load_acquire(&t->owner) == slot + 1)
            pshm_thread_release(s, t, slot, untrusted, res);
    }
    pshm_proc_release(s, slot);
}

int pshm_proc_reclaim(pshm_seg_t *s, uint32_t slot, pshm_reclaimed_t *out)
{
    if (slot >= s->max_procs)
        return -EINVAL;
    struct pshm_proc *p = &s->procs[slot];
    uint32_t st = PSHM_PROC_LIVE;
    /* acq_rel: only one reclaimer wins the slot (poold and an embedded owner
     * may both try). */
    if (!pa_cas_strong_acq_rel(&p->state, &st, PSHM_PROC_RECLAIMING))
        return -EAGAIN;
    pshm_release_result_t res = {0};
    int32_t pid = pa_load_relaxed(&p->pid);
    /* Release the records first: that folds their counters into the slot. */
    for (uint32_t i = 0; i < s->max_threads; i++) {
        struct pshm_thread *t = pshm_thread_at(s, i);
        if (pa_load_acquire(&t->owner) == slot + 1) /* acquire: as in pshm_proc_detach */
            pshm_thread_release(s, t, slot, true, &res);
    }
    int64_t orphaned = (int64_t)(pa_load_relaxed(&p->r_allocs) - pa_load_relaxed(&p->r_frees));
    pa_add_relaxed(&s->hdr->procs_reclaimed, 1);                    /* relaxed: statistic */
    pa_add_relaxed(&s->hdr->blocks_reclaimed, res.blocks_returned); /* relaxed: statistic */
    if (orphaned > 0)
        pa_add_relaxed(&s->hdr->blocks_orphaned, (uint64_t)orphaned); /* relaxed: statistic */
    if (res.entries_dropped)
        pa_add_relaxed(&s->hdr->entries_dropped, res.entries_dropped);
    if (out) {
        out->pid = pid;
        out->slot = slot;
        out->blocks_returned = res.blocks_returned;
        out->blocks_orphaned = orphaned;
    }
    pshm_proc_release(s, slot);
    return 0;
}

int pshm_reclaim_dead(pshm_seg_t *s, pshm_reclaimed_t *out, int max)
{
    int n = 0;
    for (uint32_t i = 0; i < s->max_procs; i++) {
        struct pshm_proc *p = &s->procs[i];
        /* acquire: pairs with the release store of LIVE in pshm_proc_claim(). */
        if (pa_load_acquire(&p->state) != PSHM_PROC_LIVE)
            continue;
        pid_t pid = pa_load_relaxed(&p->pid);
        if (pshm_os_proc_alive(pid, pa_load_relaxed(&p->start_time)))
            continue;
        pshm_reclaimed_t r;
        if (pshm_proc_reclaim(s, i, &r) == 0) {
            if (out && n < max)
                out[n] = r;
            n++;
        }
    }
    return n;
}
