/* SPDX-License-Identifier: MIT */
/*
 * test_verify.c: pshm_verify() never reports a healthy pool (label
 * `stress`). poold refuses every new worker once the check reports a
 * finding, so a false one takes the pool away from all its users.
 *
 * A property test: from a seed (printed; POOL_VERIFY_SEED replays one), a
 * driver runs random legal operations on a small embedded pool (few spans,
 * four classes, one of a size that is not a power of two) shared with the
 * worker processes it forks. Each worker runs threads that allocate blocks
 * of every class and keep a window of them, free their own, free a
 * sibling thread's, hand blocks off to any process (pool_handoff) and
 * adopt or free what others handed off, free the driver's blocks by offset
 * (pool_at) and give theirs to the driver to free, and exit (a new thread
 * takes the place). The driver forks workers, SIGKILLs them at random
 * moments (mid-operation), makes one exec /bin/sleep while its threads run
 * (the pid lives on, its mapping and threads are gone; the driver then
 * reclaims its slot with pshm_proc_reclaim() as poold does for an exec),
 * stops others normally (detach, exit after joining its threads, or exit
 * with them running), reclaims dead slots (pool_reclaim_dead_(), as
 * pool_stats() does, or pshm_reclaim_dead()), and allocates, frees, hands
 * off and adopts itself.
 *
 * After every step the driver calls pshm_verify() twice, in the sampled
 * mode with poold's budget and windows and in the full mode, and a thread
 * of the driver calls both without pause while the workers run: none may
 * report anything. At the end, at rest, pshm_check() must find the books
 * exact and pshm_verify() nothing. Legal means what a correct program
 * does: a block is freed once, by its owner or by whoever it was given to,
 * and the offset of a block is given to another process only by a process
 * that outlives the free (the driver), or by handoff.
 *
 * POOL_VERIFY_SEED replays a seed (the schedule of the driver; the
 * workers' timing is the machine's); POOL_VERIFY_SECONDS (default 8) and
 * POOL_VERIFY_STEPS (default 2000) bound the run.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pool_test.h"
#include "poold.h" /* PD_VERIFY_BUDGET, PD_VERIFY_RECORDS, PD_VERIFY_SPANS */

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define __SANITIZE_THREAD__ 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
/* Under TSan: this test's processes share the lists with each other, and
 * TSan cannot see an ordering made by another process's release (a push in
 * one process, the pop of that node in another), so it reports races on
 * the blocks and links that moved through such a list, and halts the
 * worker. Those reports are suppressed for this test only; test_client_mt,
 * test_owners and test_storm keep TSan's eye on the list code. */
/* Default visibility: TSan's runtime looks it up by name. */
__attribute__((visibility("default"))) const char *__tsan_default_suppressions(void);
__attribute__((visibility("default"))) const char *__tsan_default_suppressions(void)
{
    return "race:pshm_central.c\n";
}
#endif

enum {
    SPANS = 20,     /* data spans beyond the one per class */
    MAX_PROCS = 12, /* driver, live workers, dead ones not reclaimed yet */
    MAX_THREADS = 64,
    WORKERS = 16,     /* worker numbers (reused) */
    LIVE_MAX = 4,     /* workers alive at once */
    THREADS = 3,      /* threads per worker */
    WINDOW = 24,      /* blocks a worker thread keeps */
    MAIL = 64,        /* mailbox entries */
    EXCHANGE = 8,     /* a worker's blocks on their way between its threads */
    DRIVER_HELD = 64, /* blocks the driver keeps */
    ERROR_SITES = 7
};

static const size_t sizes[] = {8, 16, 17, 24, 40, 100, 200, 256, 700, 1500, 2048};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/* ---- shared between the driver and its workers (MAP_SHARED) ---- */

/* A mailbox entry: one block on its way to another process. `state`
 * holds the state and, while WRITING or TAKEN, the holder (a worker
 * number plus one, or DRIVER_ID) in bits 8 and up. The fields are
 * written while WRITING, read after TAKEN. */
enum mail_state { MAIL_EMPTY = 0, MAIL_WRITING = 1, MAIL_FULL = 2, MAIL_TAKEN = 3 };
/* One mailbox per kind, so that a taker never holds, even for a look, an
 * entry that is not for it. */
enum mail_kind {
    MAIL_HANDOFF = 0,     /* in transit (pool_handoff): anyone adopts or frees it */
    MAIL_FROM_DRIVER = 1, /* the driver's block in use: a worker frees it by offset */
    MAIL_TO_DRIVER = 2,   /* a worker's block in use: the driver frees it by offset */
    MAIL_KINDS
};
#define DRIVER_ID 0xffu

struct mail {
    _Atomic uint32_t state;
    uint32_t sender;
    uint32_t size;
    uint64_t offset;
};

enum command {
    CMD_RUN = 0,
    CMD_EXEC = 1,        /* execve /bin/sleep with the threads running */
    CMD_DETACH = 2,      /* stop the threads, pool_detach, exit */
    CMD_EXIT = 3,        /* stop the threads, exit without detaching */
    CMD_EXIT_RUNNING = 4 /* exit with the threads running */
};

struct shared {
    struct mail mail[MAIL_KINDS][MAIL];
    _Atomic uint32_t command[WORKERS];
    /* Counters, relaxed: statistics. */
    _Atomic uint64_t ops, alloc_failures, cross_thread, cross_process, handoffs, adopts,
        thread_exits;
    /* A block found changed, or a legal call refused, by where: a tag, a
     * free of our own, a handoff, an adopt back, an adopt, a free of a
     * block in transit, a free of the driver's. */
    _Atomic uint64_t errors[ERROR_SITES];
};

static struct shared *sh;
static pool_t *pool;

/* ---- the mailboxes ---- */

static bool mail_post(uint32_t me, uint32_t kind, uint64_t offset, uint32_t size, unsigned *seed)
{
    uint32_t start = (uint32_t)rand_r(seed) % MAIL;
    for (uint32_t k = 0; k < MAIL; k++) {
        struct mail *m = &sh->mail[kind][(start + k) % MAIL];
        uint32_t st = MAIL_EMPTY;
        if (!atomic_compare_exchange_strong(&m->state, &st, MAIL_WRITING | me << 8))
            continue;
        m->sender = me;
        m->size = size;
        m->offset = offset;
        /* release: the fields before the entry is seen full. */
        atomic_store_explicit(&m->state, MAIL_FULL, memory_order_release);
        return true;
    }
    return false;
}

/* Take a full entry of kind `kind`, or NULL. */
static struct mail *mail_take(uint32_t me, uint32_t kind, unsigned *seed)
{
    uint32_t start = (uint32_t)rand_r(seed) % MAIL;
    for (uint32_t k = 0; k < MAIL; k++) {
        struct mail *m = &sh->mail[kind][(start + k) % MAIL];
        uint32_t st = MAIL_FULL;
        /* acquire: pairs with the release in mail_post(). */
        if (atomic_compare_exchange_strong_explicit(&m->state, &st, MAIL_TAKEN | me << 8,
                                                    memory_order_acquire, memory_order_relaxed))
            return m;
    }
    return NULL;
}

static void mail_done(struct mail *m)
{
    atomic_store_explicit(&m->state, MAIL_EMPTY, memory_order_release);
}

static void count(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- a worker process ---- */

struct held {
    void *ptr;
    size_t size;
};

struct worker_thread {
    pthread_t thread;
    uint32_t worker, index;
    unsigned seed;
    atomic_bool done;
};

static atomic_bool worker_stop;
/* Blocks on their way from one thread of this worker to another. */
static _Atomic(void *) exchange[EXCHANGE];

static uint64_t tag_of(uint32_t worker, uint32_t index, uint32_t k)
{
    return (uint64_t)worker << 40 | (uint64_t)index << 32 | k | UINT64_C(1) << 63;
}

static void keep(struct held *h, uint64_t tag, void *p, size_t size)
{
    memcpy(p, &tag, sizeof(tag));
    h->ptr = p;
    h->size = size;
}

/* Free window entry h (checking its tag first). */
static void drop(struct held *h, uint64_t tag, unsigned *seed)
{
    uint64_t t;
    memcpy(&t, h->ptr, sizeof(t));
    if (t != tag)
        count(&sh->errors[0]);
    if (!pool_free(pool, h->ptr, rand_r(seed) % 4 ? h->size : 0))
        count(&sh->errors[1]);
    h->ptr = NULL;
}

static void *worker_main(void *arg)
{
    struct worker_thread *w = arg;
    uint32_t me = w->worker + 1;
    struct held win[WINDOW] = {{0}};
    unsigned *seed = &w->seed;
    while (!atomic_load_explicit(&worker_stop, memory_order_relaxed)) {
        uint32_t k = (uint32_t)rand_r(seed) % WINDOW, r = (uint32_t)rand_r(seed) % 100;
        uint64_t tag = tag_of(w->worker, w->index, k);
        struct held *h = &win[k];
        count(&sh->ops);
        if (r < 40) { /* allocate and keep */
            if (h->ptr)
                drop(h, tag, seed);
            size_t size = sizes[(uint32_t)rand_r(seed) % NSIZES];
            void *p = pool_malloc(pool, size);
            if (p)
                keep(h, tag, p, size);
            else
                count(&sh->alloc_failures);
        } else if (r < 62) { /* free one of ours */
            if (h->ptr)
                drop(h, tag, seed);
        } else if (r < 70) { /* to a sibling thread, which frees it */
            if (!h->ptr)
                continue;
            void *old = atomic_exchange(&exchange[k % EXCHANGE], h->ptr);
            h->ptr = NULL;
            if (old && pool_free(pool, old, 0))
                count(&sh->cross_thread);
        } else if (r < 76) { /* hand off to any process */
            if (!h->ptr)
                continue;
            uint64_t off = pool_handoff(pool, h->ptr);
            if (off == UINT64_MAX) {
                count(&sh->errors[2]); /* our own block, in use */
                continue;
            }
            count(&sh->handoffs);
            if (mail_post(me, MAIL_HANDOFF, off, (uint32_t)h->size, seed)) {
                h->ptr = NULL;
                continue;
            }
            /* The mailbox is full: take it back. */
            void *p = pool_adopt(pool, off);
            if (p != h->ptr)
                count(&sh->errors[3]);
            count(&sh->adopts);
        } else if (r < 84) { /* adopt, or free without adopting, a block handed off */
            struct mail *m = mail_take(me, MAIL_HANDOFF, seed);
            if (!m)
                continue;
            if (rand_r(seed) % 2) {
                if (h->ptr)
                    drop(h, tag, seed);
                void *p = pool_adopt(pool, m->offset);
                if (p) {
                    keep(h, tag, p, m->size);
                    count(&sh->adopts);
                } else {
                    count(&sh->errors[4]);
                }
            } else if (pool_free(pool, pool_at(pool, m->offset), m->size)) {
                count(&sh->cross_process);
            } else {
                count(&sh->errors[5]);
            }
            mail_done(m);
        } else if (r < 90) { /* free one of the driver's by offset */
            struct mail *m = mail_take(me, MAIL_FROM_DRIVER, seed);
            if (!m)
                continue;
            if (pool_free(pool, pool_at(pool, m->offset), rand_r(seed) % 2 ? m->size : 0))
                count(&sh->cross_process);
            else
                count(&sh->errors[6]);
            mail_done(m);
        } else if (r < 94) { /* give one to the driver, which frees it by offset */
            if (h->ptr &&
                mail_post(me, MAIL_TO_DRIVER, pool_offset(pool, h->ptr), (uint32_t)h->size, seed))
                h->ptr = NULL;
        } else if (r < 95) { /* exit: the blocks kept stay this process's */
            count(&sh->thread_exits);
            break;
        } else { /* burn after reading */
            size_t size = sizes[(uint32_t)rand_r(seed) % NSIZES];
            void *p = pool_malloc(pool, size);
            if (p)
                pool_free(pool, p, size);
        }
    }
    atomic_store(&w->done, true);
    return NULL;
}

/* Detached: a worker may end with its threads running, or finished and
 * not joined yet, and a sanitizer would call either a leak. */
static void worker_start_thread(struct worker_thread *t)
{
    pthread_attr_t attr;
    atomic_store(&t->done, false);
    t->seed = t->seed * 1103515245u + 12345u;
    if (pthread_attr_init(&attr) != 0 ||
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) != 0 ||
        pthread_create(&t->thread, &attr, worker_main, t) != 0)
        _exit(3);
    pthread_attr_destroy(&attr);
}

/* The worker's control thread: keeps THREADS threads running until the
 * driver says how to end. */
static _Noreturn void worker_process(uint32_t worker, unsigned seed)
{
    struct worker_thread t[THREADS];
    for (uint32_t i = 0; i < THREADS; i++) {
        t[i] = (struct worker_thread){.worker = worker, .index = i, .seed = seed + i};
        worker_start_thread(&t[i]);
    }
    for (;;) {
        /* acquire: pairs with the driver's release store of the command. */
        uint32_t cmd = atomic_load_explicit(&sh->command[worker], memory_order_acquire);
        switch (cmd) {
        case CMD_EXEC: {
            char *argv[] = {"sleep", "30", NULL};
            execv("/bin/sleep", argv);
            _exit(127);
        }
        case CMD_EXIT_RUNNING: exit(0);
        case CMD_DETACH:
        case CMD_EXIT:
            atomic_store(&worker_stop, true);
            for (uint32_t i = 0; i < THREADS; i++)
                while (!atomic_load(&t[i].done))
                    sched_yield();
            if (cmd == CMD_DETACH)
                pool_detach(pool);
            exit(0);
        default: break;
        }
        for (uint32_t i = 0; i < THREADS; i++) {
            if (atomic_load(&t[i].done))
                worker_start_thread(&t[i]);
        }
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
}

/* ---- the checker thread of the driver ---- */

struct checker {
    pthread_t thread;
    atomic_bool stop;
    bool running;
    _Atomic uint64_t calls;
    atomic_bool found;
    char what[300];
};

static struct checker checker;

/* poold's sampled check (its budget and windows) and its full check. */
static void verify_states(pshm_verify_t *sampled, pshm_verify_t *full)
{
    const pshm_seg_t *s = &pool->seg;
    assert_int_equal(pshm_verify_init(sampled, s, PD_VERIFY_BUDGET), 0);
    sampled->rec_window = PD_VERIFY_RECORDS;
    sampled->span_window = PD_VERIFY_SPANS;
    assert_int_equal(pshm_verify_init(full, s, (s->data_bytes >> 3) + 1), 0);
}

/* One sampled and one full check: 0, or 1 with the finding in what. */
static int verify_both(pshm_verify_t *sampled, pshm_verify_t *full, char *what, size_t cap)
{
    pshm_corruption_t c;
    if (pshm_verify(&pool->seg, sampled, false, &c) || pshm_verify(&pool->seg, full, true, &c)) {
        snprintf(what, cap, "kind %u, class %u, at %llu: %s", c.kind, c.cls,
                 (unsigned long long)c.where, c.what);
        return 1;
    }
    return 0;
}

static void *checker_main(void *arg)
{
    (void)arg;
    pshm_verify_t sampled, full;
    verify_states(&sampled, &full);
    while (!atomic_load(&checker.stop)) {
        if (verify_both(&sampled, &full, checker.what, sizeof(checker.what))) {
            atomic_store(&checker.found, true);
            break;
        }
        atomic_fetch_add_explicit(&checker.calls, 2, memory_order_relaxed);
    }
    pshm_verify_free(&sampled);
    pshm_verify_free(&full);
    return NULL;
}

static void checker_start(void)
{
    atomic_store(&checker.stop, false);
    assert_int_equal(pthread_create(&checker.thread, NULL, checker_main, NULL), 0);
    checker.running = true;
}

/* Stopped around each fork: a sanitizer's child of a threaded parent may
 * not start threads. */
static void checker_stop(void)
{
    if (!checker.running)
        return;
    atomic_store(&checker.stop, true);
    pthread_join(checker.thread, NULL);
    checker.running = false;
}

/* ---- the driver ---- */

enum worker_state { W_FREE = 0, W_LIVE };

struct driver {
    uint64_t rng;
    unsigned seed; /* for the mailbox's rand_r */
    struct {
        enum worker_state state;
        pid_t pid;
        int exec_pipe; /* read end; EOF once the exec closed the write end */
    } w[WORKERS];
    uint32_t live, dead; /* dead: ended, not reclaimed yet */
    uint64_t seed0;      /* the seed of the run */
    struct held held[DRIVER_HELD];
    pshm_verify_t sampled, full;
    /* What was driven. */
    uint64_t steps, ops, spawns, kills, execs, exits, reclaims, checks;
};

static uint64_t next_random(struct driver *d)
{
    /* splitmix64 */
    uint64_t z = (d->rng += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint32_t below(struct driver *d, uint32_t n)
{
    return (uint32_t)(next_random(d) % n);
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void spawn(struct driver *d)
{
    uint32_t k = 0;
    while (k < WORKERS && d->w[k].state != W_FREE)
        k++;
    if (k == WORKERS || d->live >= LIVE_MAX)
        return;
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    atomic_store_explicit(&sh->command[k], CMD_RUN,
                          memory_order_release); /* release: before fork */
    unsigned seed = (unsigned)next_random(d);
    checker_stop();
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A failed test ends the driver: its workers end with it. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(1);
        close(fds[0]);
        worker_process(k, seed);
    }
    checker_start();
    close(fds[1]);
    d->w[k].state = W_LIVE;
    d->w[k].pid = pid;
    d->w[k].exec_pipe = fds[0];
    d->live++;
    d->spawns++;
}

/* A live worker, at random, or -1. */
static int pick_live(struct driver *d)
{
    if (d->live == 0)
        return -1;
    uint32_t n = below(d, d->live);
    for (uint32_t k = 0; k < WORKERS; k++)
        if (d->w[k].state == W_LIVE && n-- == 0)
            return (int)k;
    return -1;
}

/* Worker k is gone (its threads no longer run): its mailbox entries in
 * the middle of a post or a take are let go (their blocks stay where the
 * worker left them), and the blocks it gave the driver are no longer the
 * driver's to free (a reclaim gives them back). Before any reclaim. */
static void forget_worker(struct driver *d, uint32_t k)
{
    for (uint32_t kind = 0; kind < MAIL_KINDS; kind++) {
        for (uint32_t i = 0; i < MAIL; i++) {
            struct mail *m = &sh->mail[kind][i];
            /* acquire: pairs with the release in mail_post(). */
            uint32_t st = atomic_load_explicit(&m->state, memory_order_acquire);
            if ((st & 0xff) == MAIL_WRITING || (st & 0xff) == MAIL_TAKEN) {
                if (st >> 8 == k + 1)
                    mail_done(m); /* only its holder, dead, moves it */
            } else if (st == MAIL_FULL && kind == MAIL_TO_DRIVER && m->sender == k + 1) {
                mail_done(m); /* only the driver, us, takes these */
            }
        }
    }
    close(d->w[k].exec_pipe);
    d->w[k].state = W_FREE;
    d->live--;
    d->dead++;
}

static void kill_worker(struct driver *d)
{
    int k = pick_live(d);
    if (k < 0)
        return;
    sleep_us((long)below(d, 2000)); /* let it get into something */
    kill(d->w[k].pid, SIGKILL);
    assert_int_equal(waitpid(d->w[k].pid, NULL, 0), d->w[k].pid);
    forget_worker(d, (uint32_t)k);
    d->kills++;
}

/* The driver's reclaimer: its slot and its thread's record (as poold's). */
static pshm_actor_t actor_of(void)
{
    struct pshm_thread *rec = pool_rec_get_(pool);
    assert_non_null(rec);
    return (pshm_actor_t){(uint32_t)pool->slot, rec};
}

/* Worker k execs /bin/sleep while its threads run; once the exec is done
 * (the close-on-exec pipe reads EOF) the slot is reclaimed while the pid
 * lives on, as poold does when the new image says HELLO. */
static void exec_worker(struct driver *d)
{
    int k = pick_live(d);
    if (k < 0)
        return;
    pid_t pid = d->w[k].pid;
    sleep_us((long)below(d, 2000));
    atomic_store_explicit(&sh->command[k], CMD_EXEC, memory_order_release); /* release: a command */
    struct pollfd p = {d->w[k].exec_pipe, POLLIN, 0};
    char c;
    assert_int_equal(poll(&p, 1, 10000), 1);
    assert_int_equal(read(d->w[k].exec_pipe, &c, 1), 0);
    int slot = pshm_proc_find(&pool->seg, pid);
    forget_worker(d, (uint32_t)k);
    d->dead--;
    if (slot >= 0) {
        assert_int_equal(kill(pid, 0), 0); /* the pid lives on */
        pshm_actor_t actor = actor_of();
        pshm_reclaimed_t r;
        if (pshm_proc_reclaim(&pool->seg, (uint32_t)slot, &actor, &r) == 0)
            d->reclaims++;
    }
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    d->execs++;
}

static void stop_worker(struct driver *d, uint32_t how)
{
    int k = pick_live(d);
    if (k < 0)
        return;
    sleep_us((long)below(d, 1000));
    atomic_store_explicit(&sh->command[k], how, memory_order_release); /* release: a command */
    assert_int_equal(waitpid(d->w[k].pid, NULL, 0), d->w[k].pid);
    forget_worker(d, (uint32_t)k);
    if (how == CMD_DETACH)
        d->dead--; /* its slot is free already */
    d->exits++;
}

static void reclaim(struct driver *d)
{
    int n;
    if (below(d, 2)) {
        n = pool_reclaim_dead_(pool); /* what pool_stats() does */
    } else {
        pshm_actor_t actor = actor_of();
        n = pshm_reclaim_dead(&pool->seg, &actor, NULL, 0);
    }
    assert_true(n >= 0);
    d->reclaims += (uint64_t)n;
    d->dead = 0;
}

/* The driver's own work: allocate, free, give blocks to the workers by
 * offset or by handoff, free theirs, adopt what they hand off. */
static void driver_ops(struct driver *d)
{
    uint32_t n = 1 + below(d, 32);
    for (uint32_t i = 0; i < n; i++, d->ops++) {
        struct held *h = &d->held[below(d, DRIVER_HELD)];
        uint32_t r = below(d, 100);
        if (r < 35) {
            if (h->ptr)
                assert_true(pool_free(pool, h->ptr, h->size));
            h->size = sizes[below(d, NSIZES)];
            h->ptr = pool_malloc(pool, h->size);
        } else if (r < 55) {
            if (h->ptr)
                assert_true(pool_free(pool, h->ptr, h->size));
            h->ptr = NULL;
        } else if (r < 70) {
            if (h->ptr && mail_post(DRIVER_ID, MAIL_FROM_DRIVER, pool_offset(pool, h->ptr),
                                    (uint32_t)h->size, &d->seed))
                h->ptr = NULL;
        } else if (r < 80) {
            if (!h->ptr)
                continue;
            uint64_t off = pool_handoff(pool, h->ptr);
            assert_int_not_equal(off, UINT64_MAX);
            if (mail_post(DRIVER_ID, MAIL_HANDOFF, off, (uint32_t)h->size, &d->seed))
                h->ptr = NULL;
            else
                assert_ptr_equal(pool_adopt(pool, off), h->ptr);
        } else if (r < 90) {
            /* A worker's block: its sender is alive (forget_worker() let
             * go of the dead ones' before any reclaim could run). */
            struct mail *m = mail_take(DRIVER_ID, MAIL_TO_DRIVER, &d->seed);
            if (!m)
                continue;
            assert_true(pool_free(pool, pool_at(pool, m->offset), m->size));
            mail_done(m);
        } else {
            struct mail *m = mail_take(DRIVER_ID, MAIL_HANDOFF, &d->seed);
            if (!m)
                continue;
            if (h->ptr)
                assert_true(pool_free(pool, h->ptr, h->size));
            h->ptr = pool_adopt(pool, m->offset);
            assert_non_null(h->ptr);
            h->size = m->size;
            mail_done(m);
        }
    }
}

static void fail_finding(struct driver *d, const char *when, const char *what)
{
    for (uint32_t k = 0; k < WORKERS; k++) {
        if (d->w[k].state == W_LIVE) {
            kill(d->w[k].pid, SIGKILL);
            waitpid(d->w[k].pid, NULL, 0);
        }
    }
    fail_msg("pshm_verify reported a healthy pool (%s, step %llu; POOL_VERIFY_SEED=%llu "
             "replays the schedule): %s",
             when, (unsigned long long)d->steps, (unsigned long long)d->seed0, what);
}

/* The driver's checks after a step, and the checker thread's finding. */
static void check_step(struct driver *d)
{
    char what[300];
    if (verify_both(&d->sampled, &d->full, what, sizeof(what)))
        fail_finding(d, "after a step", what);
    d->checks += 2;
    if (atomic_load(&checker.found))
        fail_finding(d, "while workers ran", checker.what);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *e = getenv(name);
    return e && *e ? strtoull(e, NULL, 0) : dflt;
}

static void test_verify_never_reports_a_healthy_pool(void **state)
{
    (void)state;
    uint64_t seed = env_u64("POOL_VERIFY_SEED", (uint64_t)time(NULL) ^ (uint64_t)getpid() << 20);
    double seconds = (double)env_u64("POOL_VERIFY_SECONDS", 8);
    uint64_t max_steps = env_u64("POOL_VERIFY_STEPS", 2000);
    print_message("seed %llu (POOL_VERIFY_SEED=%llu replays it)\n", (unsigned long long)seed,
                  (unsigned long long)seed);

    pshm_params_t params;
    char err[256];
    pshm_params_default(&params, 0);
    assert_int_equal(pshm_params_set_classes(&params, "16,40,256,2048", err, sizeof(err)), 0);
    params.max_procs = MAX_PROCS;
    params.max_threads = MAX_THREADS;
    params.bytes = pshm_params_min_bytes(&params) + ((uint64_t)SPANS << 16);
    pool = pool_test_custom(&params);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED);
    memset(sh, 0, sizeof(*sh));

    struct driver *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    d->rng = d->seed0 = seed;
    d->seed = (unsigned)seed;
    /* The driver's slot and record first: it reclaims through them. */
    void *first = pool_malloc(pool, 16);
    assert_non_null(first);
    assert_true(pool_free(pool, first, 16));
    verify_states(&d->sampled, &d->full);
    memset(&checker, 0, sizeof(checker));
    checker_start();
    for (int i = 0; i < 3; i++)
        spawn(d);

    double end = now_s() + seconds;
    for (; d->steps < max_steps && now_s() < end; d->steps++) {
        uint32_t r = below(d, 100);
        if (d->dead >= 3)
            reclaim(d); /* slots for the living: a full table refuses them */
        else if (d->live == 0 || r < 12)
            spawn(d);
        else if (r < 26)
            kill_worker(d);
        else if (r < 32)
            exec_worker(d);
        else if (r < 38)
            stop_worker(d, CMD_DETACH + below(d, 3));
        else if (r < 50)
            reclaim(d);
        else if (r < 80)
            driver_ops(d);
        else
            sleep_us(500 + (long)below(d, 3000)); /* the workers run, the checker checks */
        check_step(d);
    }

    /* At rest: every worker ends, the dead are reclaimed, what is left in
     * the mailbox goes back to the driver. */
    while (d->live) {
        uint32_t r = d->kills == 0 ? 0 : d->execs == 0 ? 1 : below(d, 3);
        if (r == 0)
            kill_worker(d);
        else if (r == 1)
            exec_worker(d);
        else
            stop_worker(d, CMD_DETACH + below(d, 3));
        check_step(d);
    }
    checker_stop();
    /* The blocks handed off and the driver's: freed by offset (the
     * workers' to the driver were let go of when they ended). */
    for (uint32_t kind = 0; kind < MAIL_KINDS; kind++) {
        for (uint32_t i = 0; i < MAIL; i++) {
            struct mail *m = &sh->mail[kind][i];
            if (atomic_load(&m->state) == MAIL_FULL && kind != MAIL_TO_DRIVER)
                assert_true(pool_free(pool, pool_at(pool, m->offset), m->size));
            mail_done(m);
        }
    }
    for (uint32_t i = 0; i < DRIVER_HELD; i++)
        if (d->held[i].ptr)
            assert_true(pool_free(pool, d->held[i].ptr, d->held[i].size));
    reclaim(d);
    assert_false(pshm_any_dead(&pool->seg));
    /* Enough sampled calls for the windows to cover every record and span
     * twice over. */
    char what[300];
    uint32_t calls = 2 * (MAX_THREADS / PD_VERIFY_RECORDS + pool->seg.nspans / PD_VERIFY_SPANS + 2);
    for (uint32_t i = 0; i < calls; i++, d->checks += 2)
        if (verify_both(&d->sampled, &d->full, what, sizeof(what)))
            fail_finding(d, "at rest", what);
    pool_test_check(pool);

    uint64_t checker_calls = atomic_load(&checker.calls);
    print_message(
        "seed %llu: %llu steps; %llu worker operations, %llu by the driver (%llu "
        "cross-thread frees, %llu cross-process, %llu handoffs, %llu adopts, %llu "
        "thread exits, %llu allocations refused: pool full); %llu workers started, "
        "%llu SIGKILLed, %llu exec'd, %llu ended normally; %llu slots reclaimed by the driver; "
        "%llu checker calls (%llu after steps, %llu while workers ran), 0 findings; "
        "books exact at rest\n",
        (unsigned long long)seed, (unsigned long long)d->steps,
        (unsigned long long)atomic_load(&sh->ops), (unsigned long long)d->ops,
        (unsigned long long)atomic_load(&sh->cross_thread),
        (unsigned long long)atomic_load(&sh->cross_process),
        (unsigned long long)atomic_load(&sh->handoffs),
        (unsigned long long)atomic_load(&sh->adopts),
        (unsigned long long)atomic_load(&sh->thread_exits),
        (unsigned long long)atomic_load(&sh->alloc_failures), (unsigned long long)d->spawns,
        (unsigned long long)d->kills, (unsigned long long)d->execs, (unsigned long long)d->exits,
        (unsigned long long)d->reclaims, (unsigned long long)(d->checks + checker_calls),
        (unsigned long long)d->checks, (unsigned long long)checker_calls);
    for (int i = 0; i < ERROR_SITES; i++) {
        if (atomic_load(&sh->errors[i]))
            print_message("errors at site %d: %llu\n", i,
                          (unsigned long long)atomic_load(&sh->errors[i]));
        assert_int_equal(atomic_load(&sh->errors[i]), 0);
    }
    assert_true(d->kills > 0 && d->execs > 0 && d->reclaims > 0);
    pshm_verify_free(&d->sampled);
    pshm_verify_free(&d->full);
    free(d);
    munmap(sh, sizeof(*sh));
    pool_detach(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_never_reports_a_healthy_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
