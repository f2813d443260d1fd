/* SPDX-License-Identifier: MIT */
/*
 * test_recovery: deaths at chosen instructions of the journaled steps,
 * built deterministically. Each test puts a thread record in the state a
 * thread killed at that instruction leaves (with shm's own functions, on an
 * embedded pool's segment), lets other threads move on as they may, runs the
 * real reclaim of the dead slot, and then requires exact books by walking
 * (pshm_check): nothing lost, nothing in two places.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool_test.h"

enum { CLS = 2 }; /* a small class: many blocks per span */

typedef struct dead {
    uint32_t slot;
    struct pshm_thread *t;
    struct pshm_tclass *tc;
} dead_t;

/* A slot and record of a process that will die (pid 1: never reclaimed by
 * anyone but the test). */
static dead_t dead_make(pshm_seg_t *s)
{
    dead_t d;
    int slot = pshm_proc_claim(s, 1, 1, PSHM_VIA_DIRECT);
    assert_true(slot >= 0);
    d.slot = (uint32_t)slot;
    d.t = pshm_thread_claim(s, d.slot, 1);
    assert_non_null(d.t);
    d.tc = &d.t->cls[CLS];
    return d;
}

/* Carve k blocks from the record's range and free them into its cache, as
 * pool_malloc then pool_free do. */
static void carve_to_cache(pshm_seg_t *s, dead_t *d, uint32_t k)
{
    uint8_t own = pshm_own_val(d->slot);
    for (uint32_t i = 0; i < k; i++) {
        uint64_t w = pa_load_relaxed(&d->tc->fresh_w); /* relaxed: one thread */
        uint32_t idx = (uint32_t)w;
        if (idx >= d->tc->fresh_end)
            assert_int_equal(pshm_rec_install(s, d->t, CLS), 0);
        w = pa_load_relaxed(&d->tc->fresh_w);
        idx = (uint32_t)w;
        pa_store_relaxed(pshm_owner_idx(s, CLS, idx), own);
        pa_store_relaxed(&d->tc->fresh_w, w + (UINT64_C(1) << 32) + (s->block_size[CLS] >> 3));
        uint32_t n = pa_load_relaxed(&d->tc->count);
        d->tc->slots[n + 1] = idx;
        pa_store_relaxed(&d->tc->count, n + 1);
        pa_store_relaxed(&d->tc->frees, pa_load_relaxed(&d->tc->frees) + 1);
        pa_store_relaxed(pshm_owner_idx(s, CLS, idx), PSHM_OWN_FREE);
    }
}

/* The process is dead: reclaim its slot (poold's part). */
static void reclaim(pool_t *pool, dead_t *d)
{
    pshm_reclaimed_t r;
    assert_int_equal(pshm_proc_reclaim(&pool->seg, d->slot, NULL, &r), 0);
    assert_int_equal(r.entries_dropped, 0);
}

/* A record that flushed a batch to central and died after the CAS, before
 * journal_done (only the op differs from a finished flush). */
static dead_t dead_after_flush(pshm_seg_t *s)
{
    dead_t d = dead_make(s);
    carve_to_cache(s, &d, s->batch[CLS] + 4);
    pshm_rec_flush(s, d.t, CLS, s->batch[CLS]);
    pa_store_release(&d.tc->pend.op, PSHM_PEND_PUSH);
    return d;
}

/* A flush's CAS took effect and the thread died before closing its journal;
 * a thread without a record then popped that batch (and later pushed it
 * back). The raw pop must leave the receipt that says the flush was done,
 * else recovery puts the batch back into the cache too. */
static void test_recovery_flush_overtaken_by_raw_pop(void **state)
{
    pool_t *pool = *state;
    pshm_seg_t *s = &pool->seg;
    dead_t d = dead_after_flush(s);

    uint32_t buf[PSHM_CACHE_CAP];
    uint32_t n = pshm_central_pop_raw(s, CLS, buf, s->batch[CLS]);
    assert_int_equal(n, s->batch[CLS]);
    reclaim(pool, &d);
    pshm_central_push_raw(s, CLS, buf, n); /* the raw popper is done with it */
    pool_test_check(pool);
}

/* A flush's CAS took effect (the head went from generation g to g + 1),
 * the thread died before closing its journal, and the list then moved
 * 2^20 - 1 more times, so that the head's generation is g + 2^20, which a
 * 20-bit generation would read as g: "the head has not moved since the
 * journal", the flush undone, and the batch put back in the cache while it
 * is also in a raw popper's hands. The generation is 64 bits: no wrap. */
static void test_recovery_flush_judged_after_a_million_moves(void **state)
{
    pool_t *pool = *state;
    pshm_seg_t *s = &pool->seg;
    dead_t d = dead_after_flush(s);
    uint64_t g = d.tc->pend.tag;
    assert_int_equal(pa_load_relaxed(&s->cls[CLS].central.gen), g + 1);

    uint32_t buf[PSHM_CACHE_CAP];
    uint32_t moves = (1u << 20) - 1, n = 0;
    for (uint32_t i = 0; i < moves / 2; i++) {
        n = pshm_central_pop_raw(s, CLS, buf, s->batch[CLS]);
        assert_int_equal(n, s->batch[CLS]);
        pshm_central_push_raw(s, CLS, buf, n);
    }
    n = pshm_central_pop_raw(s, CLS, buf, s->batch[CLS]); /* the last move: held */
    assert_int_equal(n, s->batch[CLS]);
    assert_int_equal(pa_load_relaxed(&s->cls[CLS].central.gen), g + (1u << 20));
    reclaim(pool, &d);
    pshm_central_push_raw(s, CLS, buf, n);
    pool_test_check(pool);
}

/* The same on the region stack: a range given back (RPUSH done, journal
 * open) and popped raw meanwhile must not be installed again by recovery. */
static void test_recovery_range_return_overtaken_by_raw_pop(void **state)
{
    pool_t *pool = *state;
    pshm_seg_t *s = &pool->seg;
    dead_t d = dead_make(s);
    carve_to_cache(s, &d, 3);
    pshm_rec_return_range(s, d.t, CLS);
    pa_store_release(&d.tc->pend.op, PSHM_PEND_RPUSH);

    uint32_t a, b;
    assert_true(pshm_region_pop_raw(s, CLS, &a, &b));
    reclaim(pool, &d);
    pshm_region_push_raw(s, CLS, a, b);
    pool_test_check(pool);
}

/* Install claimed and published a fresh span (journal CARVE) and died after
 * its first store of the new range, before the op became INSTALL: recovery
 * must still find the span by the carve journal and give its blocks back. */
static void test_recovery_install_dies_before_its_op(void **state)
{
    pool_t *pool = *state;
    pshm_seg_t *s = &pool->seg;
    dead_t d = dead_make(s);
    int n = pshm_span_claim(s, &d.tc->pend, pshm_rec_id(s, d.t));
    assert_true(n >= 0);
    uint32_t a, b;
    pshm_span_publish(s, (uint32_t)n, CLS, &a, &b);
    d.tc->pend.range.start = a; /* pshm_rec_install()'s first store; then death */
    reclaim(pool, &d);
    pool_test_check(pool);
    /* The span's blocks are back as a region: all of them can be had. */
    uint32_t ra, rb;
    assert_true(pshm_region_pop_raw(s, CLS, &ra, &rb));
    assert_int_equal(ra, a);
    assert_int_equal(rb, b);
    pshm_region_push_raw(s, CLS, ra, rb);
}

/* A pid that was a process and is gone now. */
static pid_t dead_pid(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    return pid;
}

/* A live process of ours that does nothing until killed. */
static pid_t idle_child(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        for (;;)
            pause();
    return pid;
}

/* The reclaimers' lock word of process pid (see pshm_slots.c). */
static uint64_t lock_of(pid_t pid)
{
    return (uint64_t)(uint32_t)pid | (pshm_os_proc_start_time(pid) & 0xffffffffu) << 32;
}

/* A slot whose process died, with cached blocks and a range. */
static uint32_t dead_slot_with_blocks(pshm_seg_t *s, pid_t pid)
{
    int slot = pshm_proc_claim(s, pid, 0, PSHM_VIA_DIRECT);
    assert_true(slot >= 0);
    dead_t d = {.slot = (uint32_t)slot, .t = pshm_thread_claim(s, (uint32_t)slot, pid)};
    assert_non_null(d.t);
    d.tc = &d.t->cls[CLS];
    carve_to_cache(s, &d, 5);
    return d.slot;
}

/* While a live process reclaims, nobody else does (two reclaimers on one
 * slot drained the same records twice); once it is dead, its lock is
 * taken over and the slot reclaimed. */
static void test_recovery_one_reclaimer_at_a_time(void **state)
{
    pool_t *pool = *state;
    pshm_seg_t *s = &pool->seg;
    uint32_t slot = dead_slot_with_blocks(s, dead_pid());
    pid_t holder = idle_child();
    pa_store_release(&s->hdr->reclaim_lock, lock_of(holder));
    /* Its reclaim started: the slot is RECLAIMING, no reclaimer written. */
    pa_store_release(&s->procs[slot].state, PSHM_PROC_RECLAIMING);
    pshm_reclaimed_t r;
    assert_int_equal(pshm_proc_reclaim(s, slot, NULL, &r), -EAGAIN);
    assert_int_equal(pshm_reclaim_dead(s, NULL, NULL, 0), 0);
    assert_int_equal(pa_load_acquire(&s->procs[slot].state), PSHM_PROC_RECLAIMING);
    kill(holder, SIGKILL);
    assert_int_equal(waitpid(holder, NULL, 0), holder);
    assert_int_equal(pshm_reclaim_dead(s, NULL, NULL, 0), 1);
    assert_int_equal(pa_load_acquire(&s->procs[slot].state), PSHM_PROC_FREE);
    assert_int_equal(pa_load_acquire(&s->hdr->reclaim_lock), 0);
    pool_test_check(pool);
}

/* A reclaimer that judged pid P dead must not reclaim the slot once
 * another process holds it. */
static void test_recovery_reclaim_checks_the_holder(void **state)
{
    pool_t *pool = *state;
    pshm_seg_t *s = &pool->seg;
    pid_t gone = dead_pid();
    int slot = pshm_proc_claim(s, getpid(), pshm_os_proc_start_time(getpid()), PSHM_VIA_DIRECT);
    assert_true(slot >= 0);
    pshm_reclaimed_t r;
    assert_int_equal(pshm_proc_reclaim_pid(s, (uint32_t)slot, gone, NULL, &r), -ESRCH);
    assert_int_equal(pa_load_acquire(&s->procs[slot].state), PSHM_PROC_LIVE);
    pshm_proc_release(s, (uint32_t)slot);
    pool_test_check(pool);
}

/* A reclaimer that died holding the lock: the next one reclaims the dead
 * holder's own slot too (its records journal its unfinished run). */
static void test_recovery_dead_reclaimer_is_taken_over(void **state)
{
    pool_t *pool = *state;
    pshm_seg_t *s = &pool->seg;
    pid_t holder = dead_pid();
    uint32_t holder_slot = dead_slot_with_blocks(s, holder);
    uint32_t victim = dead_slot_with_blocks(s, dead_pid());
    pa_store_release(&s->hdr->reclaim_lock, (uint64_t)(uint32_t)holder);
    pa_store_release(&s->procs[victim].state, PSHM_PROC_RECLAIMING);
    assert_true(pshm_reclaim_dead(s, NULL, NULL, 0) >= 1);
    assert_int_equal(pa_load_acquire(&s->procs[holder_slot].state), PSHM_PROC_FREE);
    assert_int_equal(pa_load_acquire(&s->procs[victim].state), PSHM_PROC_FREE);
    assert_int_equal(pa_load_acquire(&s->hdr->reclaim_lock), 0);
    pool_test_check(pool);
}

/* ---- deaths at one instruction of the real code, in any build ---- */

typedef struct stepped {
    pshm_seg_t *s;
    void (*setup)(struct stepped *); /* in the child, run freely */
    void (*run)(struct stepped *);   /* in the child, one instruction at a time */
    uint32_t slot;
    struct pshm_thread *t;
    uint64_t start;
} stepped_t;

/* Run x->setup then x->run in a child, the run one instruction at a time
 * (ptrace), and kill the child (SIGKILL) right after the first instruction
 * of the run that changes the n bytes at watch, a word of the segment: the
 * death that instruction would see, deterministic. False when the run
 * ended without changing them. */
static bool die_after_store(stepped_t *x, const volatile void *watch, size_t n)
{
    uint8_t before[16];
    assert_true(n <= sizeof(before));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        x->setup(x);
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0)
            _exit(3);
        raise(SIGSTOP);
        x->run(x);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSTOPPED(st));            /* else the setup or PTRACE_TRACEME failed */
    memcpy(before, (const void *)watch, n); /* as the setup left them */
    for (;;) {
        if (memcmp(before, (const void *)watch, n) != 0) {
            kill(pid, SIGKILL);
            assert_int_equal(waitpid(pid, &st, 0), pid);
            assert_true(WIFSIGNALED(st));
            return true;
        }
        assert_int_equal(ptrace(PTRACE_SINGLESTEP, pid, NULL, NULL), 0);
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (WIFEXITED(st))
            return false;
        assert_true(WIFSTOPPED(st));
    }
}

static void claim_setup(stepped_t *x)
{
    x->start = pshm_os_proc_start_time(getpid());
}

static void claim_run(stepped_t *x)
{
    pshm_proc_claim(x->s, getpid(), x->start, PSHM_VIA_DIRECT);
}

/* A process killed right after the CAS that claims a free slot, before
 * the slot is LIVE: the slot names its claimer, so the reclaim of dead
 * processes gives it back (it was left CLAIMING for good: a slot lost to
 * every later attach). */
static void test_recovery_claimer_dies_mid_claim(void **state)
{
    pool_t *pool = *state;
    pshm_seg_t *s = &pool->seg;
    uint32_t i = 0;
    while (pa_load_acquire(&s->procs[i].state) != PSHM_PROC_FREE) /* acquire: as a claim */
        i++;
    stepped_t x = {.s = s, .setup = claim_setup, .run = claim_run};
    assert_true(die_after_store(&x, &s->procs[i].state, sizeof(s->procs[i].state)));
    /* acquire (both): the claimer is dead; pairs with its CAS, as a reclaim's load. */
    assert_true(PSHM_PROC_IS_CLAIMING(pa_load_acquire(&s->procs[i].state)));
    assert_true(pshm_any_dead(s));
    assert_int_equal(pshm_reclaim_dead(s, NULL, NULL, 0), 1);
    assert_int_equal(pa_load_acquire(&s->procs[i].state), PSHM_PROC_FREE);
    pool_test_check(pool);
}

/* The child's slot and record (a process that reclaims, or holds blocks). */
static void reclaimer_setup(stepped_t *x)
{
    pid_t me = getpid();
    int slot = pshm_proc_claim(x->s, me, pshm_os_proc_start_time(me), PSHM_VIA_DIRECT);
    if (slot < 0)
        _exit(2);
    x->slot = (uint32_t)slot;
    x->t = pshm_thread_claim(x->s, x->slot, me);
    if (!x->t)
        _exit(2);
}

/* A process with cached blocks and one block in use, and a record: what
 * a detach finds. The in-use block is the first block of class CLS's
 * range of x->t. */
static uint32_t holder_setup_blocks(stepped_t *x)
{
    reclaimer_setup(x);
    dead_t d = {.slot = x->slot, .t = x->t, .tc = &x->t->cls[CLS]};
    carve_to_cache(x->s, &d, 5);
    uint64_t w = pa_load_relaxed(&d.tc->fresh_w); /* relaxed: one thread */
    uint32_t idx = (uint32_t)w;
    /* A malloc. relaxed (both): one thread; the owner byte first. */
    pa_store_relaxed(pshm_owner_idx(x->s, CLS, idx), pshm_own_val(x->slot));
    pa_store_relaxed(&d.tc->fresh_w, w + (UINT64_C(1) << 32) + (x->s->block_size[CLS] >> 3));
    return idx;
}

static void detach_setup(stepped_t *x)
{
    holder_setup_blocks(x);
}

static void detach_run(stepped_t *x)
{
    pshm_release_result_t res = {0};
    pshm_proc_detach(x->s, x->slot, false, &res);
}

/* The first block the next carve of a fresh record of class CLS takes:
 * the start of the next span (the test's pool carved none before). */
static uint32_t next_carved_block(pshm_seg_t *s)
{
    uint32_t n = pa_load_relaxed(&s->hdr->next_span); /* relaxed: nobody carves now */
    return (uint32_t)((s->data_off + ((uint64_t)n << s->span_shift)) >> 3);
}

/* A detach killed right after the CAS that puts a block it still had in
 * use in transit, before that move is counted: the move is journaled as
 * a handoff of one of the process's records, and the reclaim of the dead
 * process finishes it (the block was in transit and counted nowhere). */
static void test_recovery_detach_dies_after_a_transit_cas(void **state)
{
    pool_t *pool = *state;
    pshm_seg_t *s = &pool->seg;
    uint32_t idx = next_carved_block(s) + 5 * (s->block_size[CLS] >> 3);
    stepped_t x = {.s = s, .setup = detach_setup, .run = detach_run};
    assert_true(die_after_store(&x, pshm_owner_idx(s, CLS, idx), 1));
    /* relaxed: the writer is dead; waitpid() ordered its stores before us. */
    assert_int_equal(pa_load_relaxed(pshm_owner_idx(s, CLS, idx)), PSHM_OWN_TRANSIT);
    assert_int_equal(pshm_reclaim_dead(s, NULL, NULL, 0), 1);
    pool_test_check(pool);
    pshm_stats_t st;
    pshm_stats(s, &st);
    assert_int_equal(st.cls[CLS].blocks_in_transit, 1);
}

static void reclaimer_run(stepped_t *x)
{
    pshm_actor_t actor = {x->slot, x->t};
    pshm_reclaim_dead(x->s, &actor, NULL, 0);
}

/* orphans = keep: a reclaimer killed right after the CAS that puts a dead
 * process's in-use block in transit, before the move is counted: the
 * reclaimer's record journals it as a handoff, and the next reclaimer
 * (which takes over the dead one's lock) finishes it. */
static void test_recovery_keep_reclaimer_dies_after_a_transit_cas(void **state)
{
    pool_t *pool = *state;
    pshm_seg_t *s = &pool->seg;
    pa_store_relaxed(&s->hdr->orphans_keep, 1); /* relaxed: a setting, before the fork */
    uint32_t idx = next_carved_block(s) + 5 * (s->block_size[CLS] >> 3);
    /* The victim: a process that died holding blocks, one in use. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        stepped_t v = {.s = s};
        holder_setup_blocks(&v);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* relaxed: as below. The victim's block, in use: a slot's value. */
    uint8_t held = pa_load_relaxed(pshm_owner_idx(s, CLS, idx));
    assert_true(held >= 1 && held <= s->max_procs);
    stepped_t x = {.s = s, .setup = reclaimer_setup, .run = reclaimer_run};
    assert_true(die_after_store(&x, pshm_owner_idx(s, CLS, idx), 1));
    /* relaxed: the writer is dead; waitpid() ordered its stores before us. */
    assert_int_equal(pa_load_relaxed(pshm_owner_idx(s, CLS, idx)), PSHM_OWN_TRANSIT);
    assert_true(pshm_reclaim_dead(s, NULL, NULL, 0) >= 1);
    pool_test_check(pool);
    pshm_stats_t sts;
    pshm_stats(s, &sts);
    assert_int_equal(sts.cls[CLS].blocks_in_transit, 1);
}

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define __SANITIZE_THREAD__ 1
#endif
#endif

#if !defined(__SANITIZE_THREAD__)
/* A peer that writes a dead record while it is reclaimed (a corrupt or
 * malicious process can): random words into its counts, cache, range and
 * journal, without pause. */
struct scribbler {
    struct pshm_thread *t;
    uint32_t nclasses;
    volatile int stop;
    uint64_t writes;
};

static void *scribble(void *arg)
{
    struct scribbler *sc = arg;
    uint64_t x = 0x9e3779b97f4a7c15u;
    while (!sc->stop) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        struct pshm_tclass *tc = &sc->t->cls[x % sc->nclasses];
        volatile uint32_t *w;
        switch ((x >> 8) % 6) {
        case 0: w = (volatile uint32_t *)&tc->count; break;
        case 1: w = (volatile uint32_t *)&tc->slots[(x >> 16) % (PSHM_CACHE_CAP + 1)]; break;
        case 2: w = (volatile uint32_t *)&tc->fresh_end; break;
        case 3: w = (volatile uint32_t *)&tc->fresh_w; break;
        case 4: w = (volatile uint32_t *)&tc->pend.word[0] + (x >> 20) % 6; break;
        default: w = (volatile uint32_t *)&tc->hot + (x >> 24) % 2; break;
        }
        *w = (x >> 32) % 3 ? (uint32_t)(x >> 32) : (uint32_t)(x >> 40) % 200;
        sc->writes++;
    }
    return NULL;
}

/* The reclaim of a record that a peer writes meanwhile reads each word
 * once and checks it before use: it ends, and never writes outside the
 * record's cache or the segment (a scribbled count used twice indexed
 * slots[] far past its end). The books may be wrong afterwards (the peer
 * scribbled), the reclaimer must not crash or hang. */
static void test_recovery_record_scribbled_during_reclaim(void **state)
{
    pool_t *pool = *state;
    pshm_seg_t *s = &pool->seg;
    uint64_t writes = 0;
    for (int round = 0; round < 200; round++) {
        dead_t d = dead_make(s);
        carve_to_cache(s, &d, 10);
        pa_store_release(&d.tc->pend.op, PSHM_PEND_INSTALL); /* died mid-step */
        struct scribbler sc = {.t = d.t, .nclasses = s->nclasses};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, scribble, &sc), 0);
        pshm_reclaimed_t r;
        int rc = pshm_proc_reclaim(s, d.slot, NULL, &r);
        sc.stop = 1;
        pthread_join(th, NULL);
        writes += sc.writes;
        assert_int_equal(rc, 0);
        /* The record is free again; leave it empty for the next round. */
        memset(d.t->cls, 0, (size_t)s->nclasses * sizeof(struct pshm_tclass));
    }
    print_message("200 reclaims of a record scribbled meanwhile (%llu writes): no crash\n",
                  (unsigned long long)writes);
}

/* The scribbled pool's books are not checked: only detached. */
static int detach_only(void **state)
{
    pool_detach(*state);
    return 0;
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_recovery_flush_overtaken_by_raw_pop, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_flush_judged_after_a_million_moves,
                                        pool_test_setup, pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_range_return_overtaken_by_raw_pop,
                                        pool_test_setup, pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_install_dies_before_its_op, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_one_reclaimer_at_a_time, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_reclaim_checks_the_holder, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_dead_reclaimer_is_taken_over, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_claimer_dies_mid_claim, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_detach_dies_after_a_transit_cas,
                                        pool_test_setup, pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_keep_reclaimer_dies_after_a_transit_cas,
                                        pool_test_setup, pool_test_teardown),
#if !defined(__SANITIZE_THREAD__) /* the peer races the reclaimer on purpose */
        cmocka_unit_test_setup_teardown(test_recovery_record_scribbled_during_reclaim,
                                        pool_test_setup, detach_only),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
