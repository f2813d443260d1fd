/* SPDX-License-Identifier: MIT */
/*
 * fuzz_verify: pshm_verify() never reports a healthy pool.
 *
 * The segment is the fuzzers' base (fuzz_seg.h: a live creator, two dead
 * children). Each input is a sequence of LEGAL operations on it, in one
 * process: simulated processes (slots claimed with pshm_proc_claim(), our
 * pid, so that only an explicit reclaim takes them) whose threads are
 * thread records; blocks move through the client's own cache steps
 * (pool_cache_take_, pool_cache_put_) and the shm layer's journaled steps
 * (pshm_rec_refill, flush, install, return_range, handoff, adopt); a
 * process frees another's block as pool_free() does (one CAS of the owner
 * byte), threads exit (pshm_thread_release), processes detach
 * (pshm_proc_detach) or die. A death may come in the middle of a step:
 * the record is then left as the documented instruction boundary leaves
 * it (a take or a free between its owner-byte and cache-word stores, an
 * install between the two stores of its range, a refill or flush or
 * handoff after its CAS, before its journal is closed; or its reclaimer
 * dies in the middle of recovering an install), and the process
 * does nothing more until poold's reclaimer (fz_actor) reclaims it with
 * pshm_proc_reclaim(), sooner or later, or pshm_reclaim_dead() reclaims
 * the base's dead children.
 *
 * After every operation pshm_verify() runs in poold's sampled mode (its
 * budget and windows) and in the full mode: a finding on these states is a
 * false alarm, and aborts with its text. At the end the dead are
 * reclaimed and pshm_check() must find the books exact.
 *
 * Input: a list of operations [u8 op][u8 a][u8 b][u8 c], the arguments
 * taken modulo what exists (see step()).
 */
#include "fuzz_seg.h"
#include "poold.h" /* PD_VERIFY_BUDGET, PD_VERIFY_RECORDS, PD_VERIFY_SPANS */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { PROCS = FZ_MAX_PROCS, RECS = 3, HELD = 64, TRANSIT = 64 };

struct block {
    uint32_t idx, cls;
};

struct process {
    bool live;     /* claimed and running */
    bool dead;     /* died, not reclaimed yet */
    uint32_t slot; /* process slot */
    struct pshm_thread *rec[RECS];
    struct block held[HELD]; /* blocks in use */
    uint32_t nheld;
};

struct world {
    pshm_seg_t *s;
    pshm_actor_t actor;
    struct process proc[PROCS];
    struct block transit[TRANSIT]; /* handed off, not adopted */
    uint32_t ntransit;
    pshm_verify_t sampled, full;
    uint32_t op; /* operations done, for the message */
};

/* The client's cache steps take a pool; only its segment view is used. */
static pool_t fz_pool;

static void check(struct world *w, const char *after)
{
    pshm_corruption_t c;
    if (pshm_verify(w->s, &w->sampled, false, &c) == 0 &&
        pshm_verify(w->s, &w->full, true, &c) == 0)
        return;
    fprintf(stderr,
            "fuzz_verify: false alarm after operation %u (%s): kind %u, class %u, at %llu: %s\n",
            w->op, after, c.kind, c.cls, (unsigned long long)c.where, c.what);
    abort();
}

static uint8_t own_of(const struct process *p)
{
    return pshm_own_val(p->slot);
}

/* Process number a (modulo) that is live, or NULL. */
static struct process *live(struct world *w, uint32_t a)
{
    for (uint32_t k = 0; k < PROCS; k++) {
        struct process *p = &w->proc[(a + k) % PROCS];
        if (p->live)
            return p;
    }
    return NULL;
}

/* One of p's records (claimed if it has none), or NULL (records full). */
static struct pshm_thread *thread_of(struct world *w, struct process *p, uint32_t b)
{
    for (uint32_t k = 0; k < RECS; k++)
        if (p->rec[(b + k) % RECS])
            return p->rec[(b + k) % RECS];
    p->rec[0] = pshm_thread_claim(w->s, p->slot, (int32_t)(b + 1));
    return p->rec[0];
}

static void hold(struct process *p, uint32_t idx, uint32_t c)
{
    if (p->nheld < HELD)
        p->held[p->nheld++] = (struct block){idx, c};
    /* else: kept in use for good, as a program may */
}

/* Take held block k of p out of its list. */
static struct block unhold(struct process *p, uint32_t k)
{
    struct block b = p->held[k];
    p->held[k] = p->held[--p->nheld];
    return b;
}

/* A block of class c for record t of p, as pool_malloc() gets one: from
 * the cache, else a batch from central, else a new carving range. */
static uint32_t take(struct world *w, struct process *p, struct pshm_thread *t, uint32_t c)
{
    struct pshm_tclass *tc = &t->cls[c];
    for (int tries = 0; tries < 2; tries++) {
        void *ptr = pool_cache_take_(&fz_pool, tc, c, own_of(p));
        if (ptr)
            return (uint32_t)(((uint8_t *)ptr - w->s->base) >> 3);
        if (pshm_rec_refill(w->s, t, c) == 0 && pshm_rec_install(w->s, t, c) < 0)
            return PSHM_IDX_NONE;
    }
    return PSHM_IDX_NONE;
}

/* Record t of p frees block b, which p owns now. */
static void put(struct world *w, struct pshm_thread *t, struct block b)
{
    pool_cache_put_(&fz_pool, t, &t->cls[b.cls], b.cls, b.idx, pshm_owner_idx(w->s, b.cls, b.idx));
}

/* A pid no process has: a child's, reaped. */
static int32_t dead_pid(void)
{
    static pid_t pid;
    if (pid == 0) {
        pid = fork();
        if (pid == 0)
            _exit(0);
        if (pid < 0 || waitpid(pid, NULL, 0) != pid)
            abort();
    }
    return (int32_t)pid;
}

/* p dies: it does nothing more until reclaimed. */
static void die(struct process *p)
{
    p->live = false;
    p->dead = true;
}

enum death {
    DEATH_TAKE,      /* between a take's owner byte and its cache word */
    DEATH_PUT,       /* between a free's cache word and its owner byte */
    DEATH_INSTALL,   /* between the two stores of an install's range */
    DEATH_REFILL,    /* after a refill's CAS, before its count */
    DEATH_FLUSH,     /* after a flush's CAS, before its journal is closed */
    DEATH_HANDOFF,   /* after a handoff's owner CAS, before its journal is closed */
    DEATH_RECLAIMER, /* after an install's pop or claim; its reclaimer dies between the
                        two stores of the range */
    DEATH_BETWEEN,   /* between two operations */
    DEATH_KINDS
};

/* p dies in the middle of a step of record t, class c. */
static void die_in_step(struct world *w, struct process *p, struct pshm_thread *t, uint32_t c,
                        uint32_t how)
{
    pshm_seg_t *s = w->s;
    struct pshm_tclass *tc = &t->cls[c];
    /* relaxed (all): the record is ours, single-threaded. */
    switch (how) {
    case DEATH_TAKE: {
        /* From the cache as it is (a refill or install before would be
         * steps of their own). The owner byte is set, the cache word
         * that takes the block out not yet. */
        uint64_t hot = pa_load_relaxed(&tc->hot), fresh = pa_load_relaxed(&tc->fresh_w);
        uint32_t n = pa_load_relaxed(&tc->count);
        if (pool_cache_take_(&fz_pool, tc, c, own_of(p))) {
            pa_store_relaxed(&tc->hot, hot);
            pa_store_relaxed(&tc->count, n);
            pa_store_relaxed(&tc->fresh_w, fresh);
        }
        break;
    }
    case DEATH_PUT:
        for (uint32_t k = 0; k < p->nheld; k++) {
            if (p->held[k].cls != c)
                continue;
            struct block b = unhold(p, k);
            put(w, t, b);
            pa_store_relaxed(pshm_owner_idx(s, b.cls, b.idx), own_of(p)); /* not cleared yet */
            break;
        }
        break;
    case DEATH_INSTALL: {
        if (pshm_tclass_fresh_next(tc) < tc->fresh_end)
            pshm_rec_return_range(s, t, c); /* install needs an empty range */
        uint64_t before = pa_load_relaxed(&tc->fresh_w);
        if (pshm_rec_install(s, t, c) == 0) {
            /* The end is stored, the start not yet, the journal open. */
            uint64_t now = pa_load_relaxed(&tc->fresh_w);
            pa_store_relaxed(&tc->fresh_w, (now & ~UINT64_C(0xffffffff)) | (uint32_t)before);
            pa_store_relaxed(&tc->pend.op, PSHM_PEND_INSTALL);
        }
        break;
    }
    case DEATH_REFILL:
        if (pa_load_relaxed(&tc->count) == 0 && pshm_rec_refill(s, t, c) > 0) {
            pa_store_relaxed(&tc->count, 0);
            pa_store_relaxed(&tc->moved_in, tc->pend.ctr);
            pa_store_relaxed(&tc->pend.op, PSHM_PEND_POP);
        }
        break;
    case DEATH_FLUSH: {
        uint32_t n = pa_load_relaxed(&tc->count);
        if (n) {
            pshm_rec_flush(s, t, c, n < s->batch[c] ? n : s->batch[c]);
            pa_store_relaxed(&tc->pend.op, PSHM_PEND_PUSH);
        }
        break;
    }
    case DEATH_HANDOFF:
        for (uint32_t k = 0; k < p->nheld; k++) {
            if (p->held[k].cls != c)
                continue;
            /* Its offset was never given to anyone (pool_handoff() had
             * not returned): the block stays in transit for good. */
            struct block b = unhold(p, k);
            if (pshm_rec_handoff(s, t, c, b.idx, own_of(p)) == 0)
                pa_store_relaxed(&tc->pend.op, PSHM_PEND_HANDOFF);
            break;
        }
        break;
    case DEATH_RECLAIMER: {
        /* p died just after the pop (or claim) of an install: the journal
         * says RPOP (or CARVE), the range is still the old, empty one. A
         * reclaimer took p's slot and, recovering the step, stored the
         * new range's end, not yet its start, when it died in turn. */
        if (pshm_tclass_fresh_next(tc) < tc->fresh_end)
            break;
        uint64_t before = pa_load_relaxed(&tc->fresh_w),
                 carved = pa_load_relaxed(&tc->central_misses);
        if (pshm_rec_install(s, t, c) < 0)
            break;
        if (pa_load_relaxed(&tc->central_misses) != carved) {
            /* The claim's journal: its span (range.span) is still there. */
            tc->pend.range.span =
                (uint32_t)((((uint64_t)tc->pend.range.start << 3) - s->data_off) >> s->span_shift);
            pa_store_relaxed(&tc->pend.op, PSHM_PEND_CARVE);
        } else {
            pa_store_relaxed(&tc->pend.op, PSHM_PEND_RPOP);
        }
        uint64_t now = pa_load_relaxed(&tc->fresh_w);
        pa_store_relaxed(&tc->fresh_w, (now & ~UINT64_C(0xffffffff)) | (uint32_t)before);
        pa_store_relaxed(&s->procs[p->slot].state, PSHM_PROC_RECLAIMING);
        pa_store_relaxed(&s->procs[p->slot].reclaimer, dead_pid());
        break;
    }
    default: break;
    }
    die(p);
}

static void reclaim(struct world *w, struct process *p)
{
    pshm_reclaimed_t r;
    if (pshm_proc_reclaim(w->s, p->slot, &w->actor, &r) != 0) {
        fprintf(stderr, "fuzz_verify: the reclaim of slot %u was refused\n", p->slot);
        abort();
    }
    memset(p, 0, sizeof(*p));
}

static void step(struct world *w, uint32_t op, uint32_t a, uint32_t b, uint32_t c8)
{
    pshm_seg_t *s = w->s;
    uint32_t c = c8 % s->nclasses;
    struct process *p = live(w, a);
    switch (op % 14) {
    case 0: { /* a process starts */
        for (uint32_t k = 0; k < PROCS; k++) {
            struct process *q = &w->proc[k];
            if (q->live || q->dead)
                continue;
            int slot = pshm_proc_claim(s, getpid(), 0, PSHM_VIA_DIRECT);
            if (slot >= 0)
                *q = (struct process){.live = true, .slot = (uint32_t)slot};
            break;
        }
        return;
    }
    case 1: /* a thread starts */
        if (p)
            for (uint32_t k = 0; k < RECS; k++)
                if (!p->rec[k]) {
                    p->rec[k] = pshm_thread_claim(s, p->slot, (int32_t)(b + 1));
                    break;
                }
        return;
    case 2:
    case 3: { /* malloc */
        struct pshm_thread *t = p ? thread_of(w, p, b) : NULL;
        if (!t)
            return;
        for (uint32_t k = 0; k <= b % 8; k++) {
            uint32_t idx = take(w, p, t, c);
            if (idx != PSHM_IDX_NONE)
                hold(p, idx, c);
        }
        return;
    }
    case 4: { /* free of its own blocks */
        struct pshm_thread *t = p ? thread_of(w, p, b) : NULL;
        for (uint32_t k = 0; t && k <= c8 % 8 && p->nheld; k++)
            put(w, t, unhold(p, (b + k) % p->nheld));
        return;
    }
    case 5: { /* another process frees one of p's blocks, as pool_free() does */
        struct process *q = live(w, b);
        struct pshm_thread *t = q && p && p->nheld ? thread_of(w, q, c8) : NULL;
        if (!t)
            return;
        struct block blk = unhold(p, c8 % p->nheld);
        pa_u8 *o = pshm_owner_idx(s, blk.cls, blk.idx);
        uint8_t v = own_of(p);
        /* acq_rel: as pool_free_slow_()'s CAS. */
        if (v == own_of(q) || pa_cas_strong_acq_rel(o, &v, own_of(q)))
            put(w, t, blk);
        return;
    }
    case 6: { /* handoff */
        struct pshm_thread *t = p && p->nheld ? thread_of(w, p, b) : NULL;
        if (!t || w->ntransit == TRANSIT)
            return;
        struct block blk = unhold(p, c8 % p->nheld);
        if (pshm_rec_handoff(s, t, blk.cls, blk.idx, own_of(p)) == 0)
            w->transit[w->ntransit++] = blk;
        return;
    }
    case 7: { /* adopt, or free without adopting (pool_free adopts first) */
        struct pshm_thread *t = p && w->ntransit ? thread_of(w, p, b) : NULL;
        if (!t)
            return;
        uint32_t k = c8 % w->ntransit;
        struct block blk = w->transit[k];
        w->transit[k] = w->transit[--w->ntransit];
        if (pshm_rec_adopt(s, t, p->slot, blk.cls, blk.idx) == 0) {
            if (b & 1)
                put(w, t, blk);
            else
                hold(p, blk.idx, blk.cls);
        }
        return;
    }
    case 8: { /* flush part of a cache */
        struct pshm_thread *t = p ? thread_of(w, p, b) : NULL;
        uint32_t n = t ? pa_load_relaxed(&t->cls[c].count) : 0; /* relaxed: ours */
        if (n)
            pshm_rec_flush(s, t, c, 1 + (b >> 2) % n);
        return;
    }
    case 9: { /* give a carving range back */
        struct pshm_thread *t = p ? thread_of(w, p, b) : NULL;
        if (t)
            pshm_rec_return_range(s, t, c);
        return;
    }
    case 10: /* a thread exits */
        if (p && p->rec[b % RECS]) {
            pshm_release_result_t res = {0};
            pshm_thread_release(s, p->rec[b % RECS], p->slot, false, &res);
            p->rec[b % RECS] = NULL;
        }
        return;
    case 11: /* a process detaches: its blocks in use go in transit */
        if (p) {
            pshm_release_result_t res = {0};
            pshm_proc_detach(s, p->slot, false, &res);
            for (uint32_t k = 0; k < p->nheld && w->ntransit < TRANSIT; k++)
                w->transit[w->ntransit++] = p->held[k];
            memset(p, 0, sizeof(*p));
        }
        return;
    case 12: { /* a process dies, maybe in the middle of a step */
        struct pshm_thread *t = p ? thread_of(w, p, b) : NULL;
        if (t)
            die_in_step(w, p, t, c, b % DEATH_KINDS);
        else if (p)
            die(p);
        return;
    }
    case 13: /* a reclaim: of one dead process, or of every dead one */
        for (uint32_t k = 0; k < PROCS; k++) {
            struct process *q = &w->proc[(a + k) % PROCS];
            if (q->dead) {
                reclaim(w, q);
                return;
            }
        }
        (void)pshm_reclaim_dead(s, &w->actor, NULL, 0); /* the base's dead children */
        return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {data, size, 0};
    static struct world w;
    memset(&w, 0, sizeof(w));
    fz_view_base(&fz_pool.seg);
    w.s = &fz_pool.seg;
    w.actor = fz_actor(w.s);
    if (w.actor.slot == UINT32_MAX || pshm_verify_init(&w.sampled, w.s, PD_VERIFY_BUDGET) < 0 ||
        pshm_verify_init(&w.full, w.s, (w.s->data_bytes >> 3) + 1) < 0)
        abort();
    w.sampled.rec_window = PD_VERIFY_RECORDS;
    w.sampled.span_window = PD_VERIFY_SPANS;
    check(&w, "the base");
    while (in.i < in.n && w.op < 4096) {
        uint32_t op = fz_u8(&in), a = fz_u8(&in), b = fz_u8(&in), c = fz_u8(&in);
        step(&w, op, a, b, c);
        w.op++;
        check(&w, "an operation");
    }
    /* At rest: the dead reclaimed, the books exact. */
    for (uint32_t k = 0; k < PROCS; k++)
        if (w.proc[k].dead)
            reclaim(&w, &w.proc[k]);
    (void)pshm_reclaim_dead(w.s, &w.actor, NULL, 0);
    check(&w, "the reclaims at the end");
    char err[256];
    if (pshm_check(w.s, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_verify: books not exact at rest: %s\n", err);
        abort();
    }
    pshm_verify_free(&w.sampled);
    pshm_verify_free(&w.full);
    fz_unmap_image(&fz_seg_map);
    return 0;
}
