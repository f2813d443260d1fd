/* SPDX-License-Identifier: MIT */
/*
 * test_crashpoints: death at every store. Built only with the CMake option
 * POOL_CRASH_POINTS, in which every shared store of the shm layer is a
 * numbered crash point (shm/pshm_atomic.h, shm/pshm_crash.c).
 *
 * For each step (refill, flush, carve, install from a region, range
 * return, handoff of the process's own block and of another's, adopt,
 * record claim, thread exit, slot claim, slot release, detach, a topic's
 * send (held by a subscriber, or by nobody: freed at once), last release,
 * leave and subscribe, and four
 * reclaims: of a process that died between two steps, the same under
 * orphans = keep, of one that died in a flush with its journal open, of
 * one that died at every 4th point of a flush),
 * a child process first counts the points of the step; then, for each
 * point N, a child sets up the same state in a fresh segment, runs the
 * step and dies by SIGKILL right after its Nth shared store. The parent
 * then does what poold does: the reclaim of dead processes
 * (pshm_reclaim_dead, with a slot and record of its own as hands), and
 * requires exact books (pshm_check: counted == found per class, nothing
 * lost, nothing in two places), pshm_verify clean, every slot but its own
 * free, every record but its own free, and no reclaimer's lock left.
 *
 * Variants, where the step allows them: "raw", a thread without a record
 * moves both list heads of the class (raw pop, held through the reclaim,
 * pushed back after), so that a dead step is judged by its receipt, not by
 * the head; "busy", a second thread of the child refills, flushes and
 * carves the same class while the step runs, and dies with it anywhere;
 * the reclaim steps are killed at each point of the reclaim itself and the
 * parent, a second reclaimer, takes over ("twice": a second reclaimer
 * child dies at the same point of its run first; the parent is the
 * third). Their dead process either died between two steps or in a flush
 * right after its CAS on the head, its journal open.
 *
 * POOL_CRASH_STRIDE=k runs every kth point only (the sanitizer build).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pshm.h"

enum { C0 = 0, C1 = 1 }; /* 64 B (owner bytes in the span's tail), 1 KiB (in a slice) */

typedef struct world {
    pshm_seg_t s;
    void *base;
    uint64_t bytes;
    uint32_t rslot;           /* the parent's slot: the reclaimer's hands, as poold's */
    struct pshm_thread *rrec; /* and its record */
    uint32_t victim;          /* reclaim steps: the slot of a process that died */
    uint32_t pblock;          /* a block of class C1 the parent holds in use */
} world_t;

/* What the child that runs a step holds. */
typedef struct me {
    uint32_t slot;
    struct pshm_thread *t;
    uint32_t idx; /* the block a step works on (handoff, adopt) */
} me_t;

typedef struct step {
    const char *name;
    void (*setup)(world_t *w, me_t *m); /* in the child, before arming */
    void (*run)(world_t *w, me_t *m);   /* in the child, armed */
    int victim;                         /* enum victim: a dead process to reclaim */
    bool keep;                          /* orphans = keep */
    bool parent_block;                  /* the parent holds a block in use (w->pblock) */
} step_t;

enum variant { V_PLAIN, V_RAW, V_BUSY, V_TWICE, V_COUNT };
static const char *const variant_name[V_COUNT] = {"plain", "raw", "busy", "twice"};

/* The reclaim steps' dead process: none; one that cached, carved and held
 * blocks and died between two steps; one that died in a flush right after
 * its CAS on the head, its journal open (the reclaim finishes the step). */
enum victim { VICTIM_NONE, VICTIM_DEAD, VICTIM_TORN, VICTIM_ANY };
static long flush_points; /* points of the victim's flush */
static long victim_at;    /* the point of it the victim dies at */
/* VICTIM_ANY: the victim dies at every ANY_STRIDE-th point of its flush
 * (and the reclaimer at every point of its reclaim, for each). */
enum { ANY_STRIDE = 4 };

/* Totals for the summary line. */
static struct {
    uint64_t steps, children, died, survived;
} tot;

static long *shared_count; /* a child's count of points, for the parent */
static long stride = 1;

/* ---- a tiny allocator on the shm layer, as libpoolclient's paths do ---- */

static uint8_t own(const me_t *m)
{
    return pshm_own_val(m->slot);
}

/* A malloc: from the cache, else a refill, else carving (install first).
 * The owner byte before the cache word that takes the block out. Every
 * access of the record is relaxed: one thread writes it (single writer,
 * as in libpoolclient), and a reclaimer reads it only once that thread's
 * process is dead. */
static uint32_t take(world_t *w, me_t *m, uint32_t c)
{
    pshm_seg_t *s = &w->s;
    struct pshm_tclass *tc = &m->t->cls[c];
    for (;;) {
        uint32_t n = pa_load_relaxed(&tc->count); /* relaxed: single writer */
        if (n > 0) {
            uint32_t idx = tc->slots[n];
            pa_store_relaxed(pshm_owner_idx(s, c, idx), own(m)); /* relaxed: our block */
            pa_store_relaxed(&tc->count, n - 1);                 /* relaxed: single writer */
            return idx;
        }
        uint64_t fw = pa_load_relaxed(&tc->fresh_w); /* relaxed: single writer */
        uint32_t idx = (uint32_t)fw;
        if (idx < tc->fresh_end) {
            pa_store_relaxed(pshm_owner_idx(s, c, idx), own(m)); /* relaxed: our range */
            /* relaxed: single writer; carving and counting in one store. */
            pa_store_relaxed(&tc->fresh_w, fw + (UINT64_C(1) << 32) + (s->block_size[c] >> 3));
            return idx;
        }
        if (pshm_rec_refill(s, m->t, c) > 0)
            continue;
        if (pshm_rec_install(s, m->t, c) < 0)
            return PSHM_IDX_NONE;
    }
}

/* A free into the cache (a flush first when it is full). The cache word
 * before the owner byte that says free. relaxed (all): as in take(). */
static void put(world_t *w, me_t *m, uint32_t c, uint32_t idx)
{
    pshm_seg_t *s = &w->s;
    struct pshm_tclass *tc = &m->t->cls[c];
    if (pa_load_relaxed(&tc->count) >= s->cache_cap[c])
        pshm_rec_flush(s, m->t, c, s->batch[c]);
    uint32_t n = pa_load_relaxed(&tc->count);
    tc->slots[n + 1] = idx;
    pa_store_relaxed(&tc->count, n + 1);
    pa_inc_single_writer(&tc->frees, 1);
    pa_store_relaxed(pshm_owner_idx(s, c, idx), PSHM_OWN_FREE);
}

/* k blocks carved and freed into the cache. */
static void cache_fill(world_t *w, me_t *m, uint32_t c, uint32_t k)
{
    uint32_t b[PSHM_CACHE_CAP];
    assert_true(k <= PSHM_CACHE_CAP);
    for (uint32_t i = 0; i < k; i++) {
        b[i] = take(w, m, c);
        if (b[i] == PSHM_IDX_NONE)
            _exit(2);
    }
    for (uint32_t i = 0; i < k; i++)
        put(w, m, c, b[i]);
}

static void in_use(world_t *w, me_t *m, uint32_t c, uint32_t k)
{
    for (uint32_t i = 0; i < k; i++)
        if (take(w, m, c) == PSHM_IDX_NONE)
            _exit(2);
}

static void attach_slot(world_t *w, me_t *m)
{
    pid_t me = getpid();
    int slot = pshm_proc_claim(&w->s, me, pshm_os_proc_start_time(me), PSHM_VIA_DIRECT);
    if (slot < 0)
        _exit(2);
    m->slot = (uint32_t)slot;
}

static void attach(world_t *w, me_t *m)
{
    attach_slot(w, m);
    m->t = pshm_thread_claim(&w->s, m->slot, (int32_t)getpid());
    if (!m->t)
        _exit(2);
}

/* ---- the steps ---- */

static void setup_refill(world_t *w, me_t *m)
{
    attach(w, m);
    cache_fill(w, m, C0, w->s.batch[C0]);
    pshm_rec_flush(&w->s, m->t, C0, w->s.batch[C0]); /* cache empty, a batch in central */
}
static void run_refill(world_t *w, me_t *m)
{
    pshm_rec_refill(&w->s, m->t, C0);
}

static void setup_flush(world_t *w, me_t *m)
{
    attach(w, m);
    cache_fill(w, m, C0, w->s.batch[C0] + 4);
}
static void run_flush(world_t *w, me_t *m)
{
    pshm_rec_flush(&w->s, m->t, C0, w->s.batch[C0]);
}

static void setup_attach(world_t *w, me_t *m)
{
    attach(w, m);
}
static void run_install(world_t *w, me_t *m)
{
    pshm_rec_install(&w->s, m->t, C1);
}

static void setup_install_region(world_t *w, me_t *m)
{
    attach(w, m);
    cache_fill(w, m, C1, 2);
    pshm_rec_return_range(&w->s, m->t, C1); /* the rest of the span: a region */
}

static void setup_return_range(world_t *w, me_t *m)
{
    attach(w, m);
    cache_fill(w, m, C0, 3);
}
static void run_return_range(world_t *w, me_t *m)
{
    pshm_rec_return_range(&w->s, m->t, C0);
}

static void setup_handoff(world_t *w, me_t *m)
{
    attach(w, m);
    m->idx = take(w, m, C1);
}
static void run_handoff(world_t *w, me_t *m)
{
    pshm_rec_handoff(&w->s, m->t, C1, m->idx, own(m));
}

/* A block another (live) process holds, handed on by its offset: the
 * handoff takes it over by CAS. */
static void setup_handoff_foreign(world_t *w, me_t *m)
{
    attach(w, m);
    m->idx = w->pblock;
}

static void setup_adopt(world_t *w, me_t *m)
{
    setup_handoff(w, m);
    if (pshm_rec_handoff(&w->s, m->t, C1, m->idx, own(m)) < 0)
        _exit(2);
}
static void run_adopt(world_t *w, me_t *m)
{
    pshm_rec_adopt(&w->s, m->t, m->slot, C1, m->idx);
}

static void setup_slot_only(world_t *w, me_t *m)
{
    attach_slot(w, m);
}
static void run_record_claim(world_t *w, me_t *m)
{
    pshm_thread_claim(&w->s, m->slot, (int32_t)getpid());
}

/* A record with cached blocks, blocks in use and a carving range in two
 * classes. */
static void setup_busy_record(world_t *w, me_t *m)
{
    attach(w, m);
    cache_fill(w, m, C0, 10);
    in_use(w, m, C0, 3);
    cache_fill(w, m, C1, 5);
    in_use(w, m, C1, 2);
}
static void run_thread_exit(world_t *w, me_t *m)
{
    pshm_release_result_t res = {0};
    pshm_thread_release(&w->s, m->t, m->slot, false, &res);
}

static void setup_none(world_t *w, me_t *m)
{
    (void)w;
    (void)m;
}
static void run_slot_claim(world_t *w, me_t *m)
{
    attach_slot(w, m);
}

static void run_slot_release(world_t *w, me_t *m)
{
    pshm_proc_release(&w->s, m->slot);
}

/* Two records, so that the detach releases one while the other holds. */
static void setup_detach(world_t *w, me_t *m)
{
    setup_busy_record(w, m);
    me_t m2 = {.slot = m->slot, .t = pshm_thread_claim(&w->s, m->slot, 2)};
    if (!m2.t)
        _exit(2);
    cache_fill(w, &m2, C0, 4);
    in_use(w, &m2, C0, 2);
}
static void run_detach(world_t *w, me_t *m)
{
    pshm_release_result_t res = {0};
    pshm_proc_detach(&w->s, m->slot, false, &res);
}

/* Large blocks: a run of three spans (claim, free, handoff, adopt). */
#define LARGE_BYTES(w) (2 * ((w)->s.span_mask + 1) + 1)
static uint32_t large_head(world_t *w, int64_t off)
{
    if (off < 0)
        _exit(2);
    return (uint32_t)(((uint64_t)off - w->s.data_off) >> w->s.span_shift);
}
static void run_large_alloc(world_t *w, me_t *m)
{
    pshm_large_alloc(&w->s, m->t, own(m), LARGE_BYTES(w));
}
static void setup_large(world_t *w, me_t *m)
{
    attach(w, m);
    m->idx = large_head(w, pshm_large_alloc(&w->s, m->t, own(m), LARGE_BYTES(w)));
}
static void run_large_free(world_t *w, me_t *m)
{
    pshm_large_free(&w->s, m->t, m->idx, own(m));
}
static void run_large_handoff(world_t *w, me_t *m)
{
    pshm_large_handoff(&w->s, m->t, m->idx, own(m));
}
static void setup_large_adopt(world_t *w, me_t *m)
{
    setup_large(w, m);
    if (pshm_large_handoff(&w->s, m->t, m->idx, own(m)) < 0)
        _exit(2);
}
static void run_large_adopt(world_t *w, me_t *m)
{
    pshm_large_adopt(&w->s, m->t, m->slot, m->idx);
}

/* A sweep of C1: two spans all free (in central and the cache), a third
 * with blocks in use and part of it still a carving range. */
static void setup_sweep(world_t *w, me_t *m)
{
    attach(w, m);
    enum { N = 140 };
    uint32_t b[N];
    for (uint32_t i = 0; i < N; i++)
        if ((b[i] = take(w, m, C1)) == PSHM_IDX_NONE)
            _exit(2);
    for (uint32_t i = 0; i < N - 3; i++)
        put(w, m, C1, b[i]);
}
static void run_sweep(world_t *w, me_t *m)
{
    pshm_actor_t actor = {m->slot, m->t};
    pshm_swept_t out;
    pshm_sweep_class(&w->s, &actor, C1, &out);
}

static void run_reclaim(world_t *w, me_t *m)
{
    pshm_actor_t actor = {m->slot, m->t};
    pshm_reclaim_dead(&w->s, &actor, NULL, 0);
}

/* Topics (pshm_chan.c). A block a finisher adopted stays the child's: its
 * reclaim gives it back with the rest. */
static void give_none(void *ctx, uint64_t off)
{
    (void)ctx;
    (void)off;
}

static pshm_chan_actor_t chan_actor(const me_t *m)
{
    return (pshm_chan_actor_t){m->t, m->slot, own(m), give_none, NULL};
}

static int topic_ch; /* the channel a topic step made (in the child) */
static int topic_seat;

/* A topic of 4 messages, made by the child; `parent_sub`: the parent's
 * slot subscribes (it holds what is sent), else nobody does. */
static void setup_topic(world_t *w, me_t *m, bool parent_sub)
{
    attach(w, m);
    pshm_actor_t a = {m->slot, m->t};
    topic_ch = pshm_chan_open(&w->s, &a, "t", PSHM_CHAN_TOPIC, 2, true, false, NULL);
    if (topic_ch < 0)
        _exit(2);
    if (parent_sub) {
        pshm_actor_t pa = {w->rslot, w->rrec};
        int seat;
        if (pshm_chan_open(&w->s, &pa, "t", PSHM_CHAN_TOPIC, 2, false, false, &seat) < 0)
            _exit(2);
    }
    m->idx = take(w, m, C1);
    if (m->idx == PSHM_IDX_NONE)
        _exit(2);
}
static void setup_topic_held(world_t *w, me_t *m)
{
    setup_topic(w, m, true);
}
static void setup_topic_unheard(world_t *w, me_t *m)
{
    setup_topic(w, m, false);
}
static void run_topic_send(world_t *w, me_t *m)
{
    pshm_chan_actor_t a = chan_actor(m);
    pshm_chan_send(&w->s, (uint32_t)topic_ch, &a, (uint64_t)m->idx << 3, 0);
}

/* The child subscribes, sends itself a message and receives it: its
 * release is the last, and frees the block. */
static void setup_topic_release(world_t *w, me_t *m)
{
    attach(w, m);
    pshm_actor_t a = {m->slot, m->t};
    topic_ch = pshm_chan_open(&w->s, &a, "t", PSHM_CHAN_TOPIC, 2, true, false, &topic_seat);
    if (topic_ch < 0)
        _exit(2);
    m->idx = take(w, m, C1);
    pshm_chan_actor_t ca = chan_actor(m);
    uint64_t off;
    if (m->idx == PSHM_IDX_NONE ||
        pshm_chan_send(&w->s, (uint32_t)topic_ch, &ca, (uint64_t)m->idx << 3, 0) < 0 ||
        pshm_chan_recv(&w->s, (uint32_t)topic_ch, &ca, topic_seat, &off, 0) < 0)
        _exit(2);
}
static void run_topic_release(world_t *w, me_t *m)
{
    pshm_chan_actor_t a = chan_actor(m);
    pshm_chan_release(&w->s, (uint32_t)topic_ch, &a, topic_seat, (uint64_t)m->idx << 3);
}
static void run_topic_unsubscribe(world_t *w, me_t *m)
{
    pshm_chan_actor_t a = chan_actor(m);
    pshm_chan_unsubscribe(&w->s, (uint32_t)topic_ch, &a, topic_seat);
}
static void setup_topic_channel(world_t *w, me_t *m)
{
    attach(w, m);
    pshm_actor_t a = {m->slot, m->t};
    topic_ch = pshm_chan_open(&w->s, &a, "t", PSHM_CHAN_TOPIC, 2, true, false, NULL);
    if (topic_ch < 0)
        _exit(2);
}
static void run_topic_subscribe(world_t *w, me_t *m)
{
    pshm_actor_t a = {m->slot, m->t};
    pshm_chan_open(&w->s, &a, "t", PSHM_CHAN_TOPIC, 2, false, false, &topic_seat);
}

static const step_t steps[] = {
    {"refill", setup_refill, run_refill, VICTIM_NONE, false, false},
    {"flush", setup_flush, run_flush, VICTIM_NONE, false, false},
    {"carve", setup_attach, run_install, VICTIM_NONE, false, false},
    {"install-region", setup_install_region, run_install, VICTIM_NONE, false, false},
    {"return-range", setup_return_range, run_return_range, VICTIM_NONE, false, false},
    {"handoff", setup_handoff, run_handoff, VICTIM_NONE, false, false},
    {"handoff-foreign", setup_handoff_foreign, run_handoff, VICTIM_NONE, false, true},
    {"adopt", setup_adopt, run_adopt, VICTIM_NONE, false, false},
    {"record-claim", setup_slot_only, run_record_claim, VICTIM_NONE, false, false},
    {"thread-exit", setup_busy_record, run_thread_exit, VICTIM_NONE, false, false},
    {"slot-claim", setup_none, run_slot_claim, VICTIM_NONE, false, false},
    {"slot-release", setup_slot_only, run_slot_release, VICTIM_NONE, false, false},
    {"detach", setup_detach, run_detach, VICTIM_NONE, false, false},
    {"large-alloc", setup_attach, run_large_alloc, VICTIM_NONE, false, false},
    {"large-free", setup_large, run_large_free, VICTIM_NONE, false, false},
    {"large-handoff", setup_large, run_large_handoff, VICTIM_NONE, false, false},
    {"large-adopt", setup_large_adopt, run_large_adopt, VICTIM_NONE, false, false},
    {"sweep", setup_sweep, run_sweep, VICTIM_NONE, false, false},
    {"topic-send", setup_topic_held, run_topic_send, VICTIM_NONE, false, false},
    {"topic-unheard", setup_topic_unheard, run_topic_send, VICTIM_NONE, false, false},
    {"topic-release", setup_topic_release, run_topic_release, VICTIM_NONE, false, false},
    {"topic-leave", setup_topic_release, run_topic_unsubscribe, VICTIM_NONE, false, false},
    {"topic-subscribe", setup_topic_channel, run_topic_subscribe, VICTIM_NONE, false, false},
    {"reclaim", setup_attach, run_reclaim, VICTIM_DEAD, false, false},
    {"reclaim-keep", setup_attach, run_reclaim, VICTIM_DEAD, true, false},
    {"reclaim-torn", setup_attach, run_reclaim, VICTIM_TORN, false, false},
    {"reclaim-any", setup_attach, run_reclaim, VICTIM_ANY, false, false},
};

/* ---- the world: a fresh segment per child ---- */

static pid_t dead_pid(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    return pid;
}

static void world_make(world_t *w, const step_t *st);

/* A process that dies at point victim_at of a flush (0: it only counts
 * them, in flush_points): VICTIM_TORN's point is right after its CAS on
 * the head, before it closes its journal. */
static void victim_torn(world_t *w)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        me_t m = {0};
        attach(w, &m);
        cache_fill(w, &m, C1, 5);
        in_use(w, &m, C0, 3);
        cache_fill(w, &m, C0, w->s.batch[C0] + 4);
        pshm_crash_arm(victim_at);
        pshm_rec_flush(&w->s, m.t, C0, w->s.batch[C0]);
        *shared_count = pshm_crash_points();
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (victim_at == 0) {
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        flush_points = *shared_count;
        return;
    }
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    if (victim_at != flush_points - 1)
        return;
    /* The CAS is the flush's last point but one (journal_done's store is
     * the last): the journal is open on PUSH and the head names the victim. */
    struct pshm_tclass *tc = NULL;
    for (uint32_t i = 0; i < w->s.max_threads && !tc; i++) {
        struct pshm_thread *t = pshm_thread_at(&w->s, i);
        if (t != w->rrec && pa_load_relaxed(&t->owner) != PSHM_NO_OWNER) /* relaxed: dead */
            tc = &t->cls[C0];
    }
    assert_non_null(tc);
    assert_int_equal(pa_load_relaxed(&tc->pend.op), PSHM_PEND_PUSH); /* relaxed: dead */
    /* relaxed: nobody moves the head now (the parent is the only process). */
    assert_int_equal(pa_load_relaxed(&w->s.cls[C0].central.gen), tc->pend.tag + 1);
}

static void world_make(world_t *w, const step_t *st)
{
    char err[256];
    pshm_params_t p;
    pshm_params_default(&p, 2u << 20);
    assert_int_equal(pshm_params_set_classes(&p, "64,1024", err, sizeof(err)), 0);
    p.max_procs = 8;
    p.max_threads = 8;
    memset(w, 0, sizeof(*w));
    w->bytes = p.bytes;
    assert_int_equal(
        pshm_os_create(NULL, p.bytes, p.bytes, 0600, -1, true, &w->base, err, sizeof(err)), 0);
    assert_int_equal(pshm_format(w->base, &p, err, sizeof(err)), 0);
    assert_int_equal(pshm_view(&w->s, w->base, p.bytes, err, sizeof(err)), 0);
    pid_t me = getpid();
    int slot = pshm_proc_claim(&w->s, me, pshm_os_proc_start_time(me), PSHM_VIA_POOLD);
    assert_true(slot >= 0);
    w->rslot = (uint32_t)slot;
    w->rrec = pshm_thread_claim(&w->s, w->rslot, 1);
    assert_non_null(w->rrec);
    /* relaxed: a setting, read by reclaims in children forked after it. */
    pa_store_relaxed(&w->s.hdr->orphans_keep, st->keep ? 1u : 0u);
    if (st->parent_block) {
        me_t pm = {.slot = w->rslot, .t = w->rrec};
        w->pblock = take(w, &pm, C1);
        assert_true(w->pblock != PSHM_IDX_NONE);
    }
    if (st->victim == VICTIM_TORN || st->victim == VICTIM_ANY)
        victim_torn(w);
    if (st->victim == VICTIM_DEAD) {
        /* A process that cached, carved and held blocks in two classes,
         * then died: two runs of in-use blocks per class, a gap between. */
        pid_t pid = dead_pid();
        slot = pshm_proc_claim(&w->s, pid, 0, PSHM_VIA_DIRECT);
        assert_true(slot >= 0);
        me_t v = {.slot = (uint32_t)slot, .t = pshm_thread_claim(&w->s, (uint32_t)slot, pid)};
        assert_non_null(v.t);
        w->victim = v.slot;
        for (uint32_t c = C0; c <= C1; c++) {
            in_use(w, &v, c, 3);
            uint32_t gap = take(w, &v, c);
            in_use(w, &v, c, 2);
            cache_fill(w, &v, c, 4);
            put(w, &v, c, gap);
        }
        /* And two large blocks, of one span and of three. */
        uint8_t vo = pshm_own_val(v.slot);
        assert_true(pshm_large_alloc(&w->s, v.t, vo, 100000 - 65536) >= 0);
        assert_true(pshm_large_alloc(&w->s, v.t, vo, LARGE_BYTES(w)) >= 0);
        /* And a topic it alone subscribed to: two messages it sent itself,
         * one received (held), one not yet: its reclaim frees both. */
        int seat;
        pshm_actor_t va = {v.slot, v.t};
        int ch = pshm_chan_open(&w->s, &va, "dead", PSHM_CHAN_TOPIC, 2, true, false, &seat);
        assert_true(ch >= 0);
        pshm_chan_actor_t vca = chan_actor(&v);
        for (int i = 0; i < 2; i++) {
            uint32_t idx = take(w, &v, C1);
            assert_true(idx != PSHM_IDX_NONE);
            assert_int_equal(pshm_chan_send(&w->s, (uint32_t)ch, &vca, (uint64_t)idx << 3, 0), 0);
        }
        uint64_t off;
        assert_int_equal(pshm_chan_recv(&w->s, (uint32_t)ch, &vca, seat, &off, 0), 0);
    }
}

static void world_free(world_t *w)
{
    pshm_os_unmap(w->base, w->bytes);
}

/* ---- the parent's side: recovery and the books ---- */

/* A thread without a record moving the class's heads: it pops from both
 * lists (held in *held) before the reclaim. */
typedef struct held {
    uint32_t batch[2][PSHM_CACHE_CAP];
    uint32_t nb[2];
    uint32_t ra[2], rb[2];
    bool region[2];
} held_t;

static void raw_take(world_t *w, held_t *h)
{
    memset(h, 0, sizeof(*h));
    for (uint32_t c = C0; c <= C1; c++) {
        h->nb[c] = pshm_central_pop_raw(&w->s, c, h->batch[c], w->s.batch[c]);
        h->region[c] = pshm_region_pop_raw(&w->s, c, &h->ra[c], &h->rb[c]);
    }
}

static void raw_give(world_t *w, held_t *h)
{
    for (uint32_t c = C0; c <= C1; c++) {
        if (h->nb[c])
            pshm_central_push_raw(&w->s, c, h->batch[c], h->nb[c]);
        if (h->region[c])
            pshm_region_push_raw(&w->s, c, h->ra[c], h->rb[c]);
    }
}

/* The books after the reclaim: "" when right, else what is wrong. */
static void books(world_t *w, char *err, size_t errlen)
{
    pshm_seg_t *s = &w->s;
    err[0] = 0;
    if (pshm_check(s, err, errlen) != 0)
        return;
    for (uint32_t i = 0; i < s->max_procs; i++) {
        /* acquire: pairs with the release stores of the slot's state. */
        uint32_t st = pa_load_acquire(&s->procs[i].state);
        if (i != w->rslot && st != PSHM_PROC_FREE) {
            snprintf(err, errlen, "slot %u left in state %#x", i, st);
            return;
        }
    }
    for (uint32_t i = 0; i < s->max_threads; i++) {
        struct pshm_thread *t = pshm_thread_at(s, i);
        /* acquire: pairs with the release store of the record's owner. */
        uint32_t o = pa_load_acquire(&t->owner);
        if (t != w->rrec && o != PSHM_NO_OWNER) {
            snprintf(err, errlen, "record %u left owned by slot %u", i, o - 1);
            return;
        }
    }
    if (pa_load_acquire(&s->hdr->reclaim_lock) != 0) { /* acquire: as above */
        snprintf(err, errlen, "the reclaimers' lock is still held");
        return;
    }
    pshm_verify_t v;
    pshm_corruption_t out;
    assert_int_equal(pshm_verify_init(&v, s, UINT64_MAX), 0);
    /* Twice: a suspect is reported when it is seen twice. */
    int rc = pshm_verify(s, &v, true, &out) || pshm_verify(s, &v, true, &out);
    pshm_verify_free(&v);
    if (rc)
        snprintf(err, errlen, "pshm_verify: %s", out.what);
}

/* Busy variant: a second thread of the child, with a record of its own,
 * takes and gives back blocks of the step's classes without end. */
typedef struct busy {
    world_t *w;
    me_t m;
    pa_u32 started;
} busy_t;

static void *busy_main(void *arg)
{
    busy_t *b = arg;
    uint32_t held[40];
    for (uint64_t round = 0;; round++) {
        uint32_t c = (uint32_t)(round & 1);
        uint32_t k = (uint32_t)(round % 40) + 1;
        for (uint32_t i = 0; i < k; i++)
            held[i] = take(b->w, &b->m, c);
        for (uint32_t i = 0; i < k; i++)
            if (held[i] != PSHM_IDX_NONE)
                put(b->w, &b->m, c, held[i]);
        /* release: pairs with the acquire in busy_start(); only a flag. */
        pa_store_release(&b->started, 1);
    }
    return NULL;
}

static void busy_start(world_t *w, me_t *m, busy_t *b)
{
    b->w = w;
    b->m.slot = m->slot;
    b->m.t = pshm_thread_claim(&w->s, m->slot, 3);
    if (!b->m.t)
        _exit(2);
    pthread_t th;
    if (pthread_create(&th, NULL, busy_main, b) != 0)
        _exit(2);
    while (!pa_load_acquire(&b->started)) /* acquire: see busy_main() */
        sched_yield();
}

/* One child: set up, arm (n: die at point n; 0: count), run. Returns the
 * wait status. */
static int child(const step_t *st, enum variant v, long n, world_t *w)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        me_t m = {0};
        busy_t b = {0};
        st->setup(w, &m);
        if (v == V_BUSY)
            busy_start(w, &m, &b);
        pshm_crash_arm(n);
        st->run(w, &m);
        *shared_count = pshm_crash_points();
        pshm_crash_arm(-1);
        _exit(0); /* survived: no point n (a retry loop ran shorter) */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static bool variant_applies(const step_t *st, enum variant v)
{
    if (v == V_PLAIN)
        return true;
    /* The busy thread needs a record of the child's slot: the slot steps
     * have none yet. A detach gives up the records of all the process's
     * threads, so none may be running (pool_detach's contract). The reclaim
     * steps run with a raw mover, not with a busy reclaimer thread. */
    if (st->victim == VICTIM_ANY) /* a matrix already: victim point x reclaimer point */
        return false;
    if (st->victim != VICTIM_NONE)
        return v == V_RAW || v == V_TWICE;
    if (v == V_TWICE)
        return false;
    if (st->run == run_slot_claim || st->run == run_slot_release)
        return false;
    if (st->run == run_detach)
        return v != V_BUSY;
    return true;
}

/* Every point of step st in variant v: a child dies at each, then the
 * reclaim and the books. The step's point count. */
static long run_points(const step_t *st, enum variant v)
{
    world_t w;
    world_make(&w, st);
    *shared_count = -1;
    int status = child(st, v, 0, &w);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || *shared_count < 0)
        fail_msg("%s/%s: the counting child failed (status %#x)", st->name, variant_name[v],
                 (unsigned)status);
    long count = *shared_count;
    world_free(&w);
    for (long n = 1; n <= count; n += stride) {
        world_make(&w, st);
        status = child(st, v, n, &w);
        tot.children++;
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
            tot.died++;
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            tot.survived++;
        } else {
            fail_msg("%s/%s point %ld: the child failed (status %#x)", st->name, variant_name[v], n,
                     (unsigned)status);
        }
        if (v == V_TWICE && WIFSIGNALED(status)) {
            /* A second reclaimer takes over and dies at the same point
             * of its own run; the parent is the third. */
            status = child(st, V_PLAIN, n, &w);
            tot.children++;
            if (!WIFSIGNALED(status) && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                fail_msg("%s/%s point %ld: the second reclaimer failed (status %#x)", st->name,
                         variant_name[v], n, (unsigned)status);
        }
        held_t h;
        if (v == V_RAW)
            raw_take(&w, &h);
        pshm_reclaim_dead(&w.s, &(pshm_actor_t){w.rslot, w.rrec}, NULL, 0);
        if (v == V_RAW)
            raw_give(&w, &h);
        char err[512];
        books(&w, err, sizeof(err));
        if (err[0])
            fail_msg("%s/%s: death at point %ld of %ld (victim at %ld): %s", st->name,
                     variant_name[v], n, count, victim_at, err);
        world_free(&w);
    }
    return count;
}

static void run_step(const step_t *st)
{
    tot.steps++;
    if (st->victim == VICTIM_TORN || st->victim == VICTIM_ANY) {
        if (flush_points == 0) { /* count the victim's flush once */
            world_t w;
            static const step_t plain = {"count",     setup_none, setup_none,
                                         VICTIM_NONE, false,      false};
            world_make(&w, &plain);
            victim_at = 0;
            victim_torn(&w);
            world_free(&w);
            assert_true(flush_points > 1);
        }
        victim_at = flush_points - 1;
    }
    if (st->victim == VICTIM_ANY) {
        long total = 0, victims = 0;
        for (victim_at = 1; victim_at <= flush_points; victim_at += ANY_STRIDE * stride) {
            total += run_points(st, V_PLAIN);
            victims++;
        }
        print_message("%-15s %-5s %3ld victim points, %ld reclaimer points in all\n", st->name,
                      variant_name[V_PLAIN], victims, total);
        return;
    }
    for (int v = 0; v < V_COUNT; v++) {
        if (!variant_applies(st, (enum variant)v))
            continue;
        long count = run_points(st, (enum variant)v);
        print_message("%-15s %-5s %3ld points\n", st->name, variant_name[v], count);
    }
}

static void test_step(void **state)
{
    run_step(*state);
}

static int group_setup(void **state)
{
    (void)state;
    const char *e = getenv("POOL_CRASH_STRIDE");
    if (e && *e)
        stride = strtol(e, NULL, 10) > 0 ? strtol(e, NULL, 10) : 1;
    shared_count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return shared_count == MAP_FAILED ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    printf("crash points: %llu steps, %llu points (every %ld), %llu children, %llu deaths "
           "at a point, %llu runs shorter than counted\n",
           (unsigned long long)tot.steps, (unsigned long long)(tot.died + tot.survived), stride,
           (unsigned long long)tot.children, (unsigned long long)tot.died,
           (unsigned long long)tot.survived);
    munmap(shared_count, 4096);
    return 0;
}

int main(void)
{
    struct CMUnitTest tests[sizeof(steps) / sizeof(steps[0])];
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
        tests[i] = (struct CMUnitTest){steps[i].name, test_step, NULL, NULL, (void *)&steps[i]};
    return _cmocka_run_group_tests("test_crashpoints", tests, sizeof(tests) / sizeof(tests[0]),
                                   group_setup, group_teardown);
}
