/* SPDX-License-Identifier: MIT */
/*
 * test_ring.c: the shared ring that carries channels (shm/pshm_ring.h).
 *
 * First in, first out, full and empty said as such, across the wrap of the
 * 24-bit lap; every value delivered exactly once among threads and among
 * processes; senders and receivers SIGKILLed at random leave a ring that
 * still works and delivers nothing twice; 20,000 sleep/wake round trips
 * between two processes with unbounded sleeps (a lost wake-up hangs, and
 * the alarm fails the test); no futex call while nobody sleeps; a fill
 * for every receiver (a topic's) wakes every sleeper.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "pshm_ring.h"

static struct pshm_ring *ring_new(uint32_t shift)
{
    /* Shared, so that forked children use the same ring. */
    void *m = mmap(NULL, pshm_ring_bytes(shift), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    assert_true(m != MAP_FAILED);
    struct pshm_ring *r = m;
    pshm_ring_init(r, shift);
    return r;
}

static void ring_free(struct pshm_ring *r)
{
    munmap(r, pshm_ring_bytes(r->shift));
}

static void test_fifo_full_and_empty(void **state)
{
    (void)state;
    struct pshm_ring *r = ring_new(2);
    uint32_t v, who;
    assert_int_equal(pshm_ring_pop(r, &who, &v), -EAGAIN);
    for (uint32_t i = 1; i <= 4; i++)
        assert_int_equal(pshm_ring_push(r, i, i * 10), 0);
    assert_int_equal(pshm_ring_push(r, 5, 50), -EAGAIN);
    assert_int_equal(pshm_ring_depth(r), 4);
    for (uint32_t i = 1; i <= 4; i++) {
        assert_int_equal(pshm_ring_pop(r, &who, &v), 0);
        assert_int_equal(who, i);
        assert_int_equal(v, i * 10);
    }
    assert_int_equal(pshm_ring_pop(r, &who, &v), -EAGAIN);
    /* Many laps, the ring three quarters full; values of all 32 bits. */
    uint32_t next_in = 0xfffff000u, next_out = 0xfffff000u;
    for (int i = 0; i < 3; i++)
        assert_int_equal(pshm_ring_push(r, PSHM_RING_WHO_MAX, next_in++), 0);
    for (int i = 0; i < 1000000; i++) {
        assert_int_equal(pshm_ring_push(r, PSHM_RING_WHO_MAX, next_in++), 0);
        assert_int_equal(pshm_ring_pop(r, &who, &v), 0);
        assert_int_equal(who, PSHM_RING_WHO_MAX);
        assert_int_equal(v, next_out++);
    }
    assert_int_equal(pshm_ring_depth(r), 3);
    /* Nobody slept: no futex call was made. */
    assert_int_equal(pa_load_relaxed(&r->wakes), 0);
    ring_free(r);
}

/* A ring whose positions start just below the wrap of the lap field. */
static void test_lap_wraps(void **state)
{
    (void)state;
    struct pshm_ring *r = ring_new(2);
    uint64_t base = ((UINT64_C(1) << PSHM_RING_LAP_BITS) - 3) << 2;
    pa_store_relaxed(&r->tail, base);
    pa_store_relaxed(&r->head, base);
    for (uint64_t p = base; p < base + 4; p++)
        pa_store_relaxed(&r->cells[p & 3], pshm_ring_word(p, 2, PSHM_RING_EMPTY, 0, 0));
    uint32_t v, who, n = 1;
    for (int lap = 0; lap < 12; lap++) {
        for (uint32_t i = 0; i < 4; i++)
            assert_int_equal(pshm_ring_push(r, 1, n + i), 0);
        assert_int_equal(pshm_ring_push(r, 1, 99), -EAGAIN);
        for (uint32_t i = 0; i < 4; i++) {
            assert_int_equal(pshm_ring_pop(r, &who, &v), 0);
            assert_int_equal(v, n + i);
        }
        assert_int_equal(pshm_ring_pop(r, &who, &v), -EAGAIN);
        n += 4;
    }
    assert_true(pa_load_relaxed(&r->tail) >> 2 > (UINT64_C(1) << PSHM_RING_LAP_BITS));
    ring_free(r);
}

static void test_overwritten_cells_refused(void **state)
{
    (void)state;
    struct pshm_ring *r = ring_new(3);
    uint32_t v, who;
    assert_int_equal(pshm_ring_push(r, 3, 0), 0); /* 0 is a value like any */
    assert_int_equal(pshm_ring_pop(r, &who, &v), 0);
    assert_int_equal(v, 0);
    /* A cell overwritten with a word five laps ahead: both sides refuse
     * it rather than spin or deliver it. */
    uint64_t h = pa_load_relaxed(&r->head);
    pa_store_relaxed(&r->cells[h & 7], pshm_ring_word(h + 5 * 8, 3, PSHM_RING_FULL, 1, 7));
    assert_int_equal(pshm_ring_pop(r, &who, &v), -EPROTO);
    pa_store_relaxed(&r->cells[h & 7], pshm_ring_word(h + 100 * 8, 3, PSHM_RING_EMPTY, 0, 0));
    assert_int_equal(pshm_ring_push(r, 1, 1), -EPROTO);
    ring_free(r);
}

/* The steps a channel does its work between: the cell says at each
 * moment who holds the message, and a CAS with a stale word does nothing. */
static void test_steps_and_words(void **state)
{
    (void)state;
    struct pshm_ring *r = ring_new(2);
    uint64_t pos, empty, pos2, empty2, full, taken;
    uint32_t who, v;
    assert_int_equal(pshm_ring_reserve(r, &pos, &empty), 0);
    /* Another sender is first: our fill fails, the cell names the other. */
    assert_int_equal(pshm_ring_push(r, 5, 7), 0);
    uint64_t c = pshm_ring_cell(r, (uint32_t)pos);
    assert_int_equal(pshm_ring_word_state(c), PSHM_RING_FULL);
    assert_int_equal(pshm_ring_word_who(c), 5);
    assert_int_equal(pshm_ring_cell_pos(r, (uint32_t)pos, c), pos);
    assert_false(pshm_ring_fill(r, pos, empty, 6, 8));
    assert_int_equal(pshm_ring_reserve(r, &pos2, &empty2), 0);
    assert_int_equal(pos2, pos + 1);
    assert_true(pshm_ring_fill(r, pos2, empty2, 6, 8));
    /* Two receivers peek the same word: one take wins, and the cell says
     * which until it is released; senders wait for the release. */
    assert_int_equal(pshm_ring_peek(r, &pos, &full), 0);
    assert_int_equal(pshm_ring_word_value(full), 7);
    assert_true(pshm_ring_take(r, pos, full, 77, &taken));
    assert_false(pshm_ring_take(r, pos, full, 78, NULL));
    c = pshm_ring_cell(r, (uint32_t)pos);
    assert_int_equal(c, taken);
    assert_int_equal(pshm_ring_word_state(c), PSHM_RING_TAKEN);
    assert_int_equal(pshm_ring_word_who(c), 77);
    assert_int_equal(pshm_ring_word_value(c), 7);
    assert_int_equal(pshm_ring_push(r, 1, 1), 0);
    assert_int_equal(pshm_ring_push(r, 1, 2), 0);
    assert_int_equal(pshm_ring_push(r, 1, 3), -EAGAIN); /* the TAKEN cell is not room */
    assert_true(pshm_ring_release(r, pos, taken));
    assert_false(pshm_ring_release(r, pos, taken));
    assert_int_equal(pshm_ring_push(r, 1, 3), 0);
    for (uint32_t want = 8; want != 4; want = want == 8 ? 1 : want + 1) {
        assert_int_equal(pshm_ring_pop(r, &who, &v), 0);
        assert_int_equal(v, want);
    }
    assert_int_equal(pshm_ring_pop(r, &who, &v), -EAGAIN);
    ring_free(r);
}

/* ---- threads: every value once, in each producer's order ---- */

enum { PRODUCERS = 3, CONSUMERS = 3, PER_PRODUCER = 200000 };
#define SENTINEL 0xffffffffu

struct mt {
    struct pshm_ring *r;
    atomic_uchar seen[PRODUCERS][PER_PRODUCER];
    atomic_int dup, disorder, errors; /* counted: cmocka asserts only on the main thread */
};

struct mt_arg {
    struct mt *m;
    int id;
};

static void *producer(void *p)
{
    struct mt_arg *a = p;
    for (uint32_t s = 0; s < PER_PRODUCER; s++) {
        if (pshm_ring_send(a->m->r, (uint32_t)a->id, s + 1, -1, -1) != 0)
            atomic_fetch_add(&a->m->errors, 1);
    }
    return NULL;
}

static void *consumer(void *p)
{
    struct mt_arg *a = p;
    uint32_t last[PRODUCERS] = {0};
    for (;;) {
        uint32_t id, s;
        if (pshm_ring_recv(a->m->r, &id, &s, -1, -1) != 0) {
            atomic_fetch_add(&a->m->errors, 1);
            return NULL;
        }
        if (s == SENTINEL)
            return NULL;
        if (id >= PRODUCERS || s < 1 || s > PER_PRODUCER) {
            atomic_fetch_add(&a->m->errors, 1);
            continue;
        }
        if (atomic_fetch_add(&a->m->seen[id][s - 1], 1) != 0)
            atomic_fetch_add(&a->m->dup, 1);
        if (s <= last[id])
            atomic_fetch_add(&a->m->disorder, 1);
        last[id] = s;
    }
}

static void test_threads_every_value_once_in_order(void **state)
{
    (void)state;
    struct mt *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->r = ring_new(4); /* 16 cells: full and empty often, so both sides sleep */
    pthread_t pt[PRODUCERS], ct[CONSUMERS];
    struct mt_arg pa[PRODUCERS], ca[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        ca[i] = (struct mt_arg){m, i};
        assert_int_equal(pthread_create(&ct[i], NULL, consumer, &ca[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pa[i] = (struct mt_arg){m, i};
        assert_int_equal(pthread_create(&pt[i], NULL, producer, &pa[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(pt[i], NULL);
    for (int i = 0; i < CONSUMERS; i++)
        assert_int_equal(pshm_ring_send(m->r, 0, SENTINEL, -1, -1), 0);
    for (int i = 0; i < CONSUMERS; i++)
        pthread_join(ct[i], NULL);
    long missing = 0;
    for (int p = 0; p < PRODUCERS; p++)
        for (int s = 0; s < PER_PRODUCER; s++)
            missing += atomic_load(&m->seen[p][s]) == 0;
    print_message("%d values through 16 cells: %ld missing, %d twice, %d out of order, "
                  "%llu futex wakes\n",
                  PRODUCERS * PER_PRODUCER, missing, atomic_load(&m->dup),
                  atomic_load(&m->disorder), (unsigned long long)pa_load_relaxed(&m->r->wakes));
    assert_int_equal(atomic_load(&m->errors), 0);
    assert_int_equal(missing, 0);
    assert_int_equal(atomic_load(&m->dup), 0);
    assert_int_equal(atomic_load(&m->disorder), 0);
    assert_int_equal(pshm_ring_depth(m->r), 0);
    ring_free(m->r);
    free(m);
}

/* ---- processes killed at random ---- */

enum { KVALUES = 1 << 20 };

struct shared_books {
    atomic_uint next;            /* values handed to producers */
    atomic_uchar taken[KVALUES]; /* times each value was popped */
    atomic_uint bad;             /* values out of range */
};

static struct timespec ms_ts(long ms)
{
    return (struct timespec){ms / 1000, (ms % 1000) * 1000000L};
}

static void kid_producer(struct pshm_ring *r, struct shared_books *b)
{
    for (;;) {
        unsigned v = atomic_fetch_add(&b->next, 1);
        if (v >= KVALUES)
            _exit(0);
        /* A producer killed here loses v: the caller's to journal, not
         * the ring's. */
        while (pshm_ring_send(r, 1, v, 50, 10) == -EAGAIN)
            ;
    }
}

/* A receive in two steps, as channels do it: take as `taker` (the cell
 * then names us), count the value, release. */
struct take_arg {
    struct pshm_ring *r;
    uint32_t taker;
    uint64_t pos, taken;
};

static int take_step(void *arg)
{
    struct take_arg *t = arg;
    for (;;) {
        uint64_t full;
        int rc = pshm_ring_peek(t->r, &t->pos, &full);
        if (rc < 0)
            return rc;
        if (pshm_ring_take(t->r, t->pos, full, t->taker, &t->taken))
            return 0;
    }
}

static void kid_consumer(struct pshm_ring *r, struct shared_books *b, uint32_t taker)
{
    struct take_arg t = {r, taker, 0, 0};
    for (;;) {
        int rc = pshm_ring_wait(r, false, take_step, &t, 50, 10, NULL);
        if (rc == -EAGAIN)
            continue;
        uint32_t v = pshm_ring_word_value(t.taken);
        if (rc != 0 || v >= KVALUES)
            atomic_fetch_add(&b->bad, 1);
        else
            atomic_fetch_add(&b->taken[v], 1);
        if (!pshm_ring_release(r, t.pos, t.taken))
            atomic_fetch_add(&b->bad, 1);
        pshm_ring_emptied(r);
    }
}

/* What a reclaimer does for a dead receiver: end the cells it had taken
 * (their messages are its, given back by the channel above the ring). */
static unsigned release_dead(struct pshm_ring *r, uint32_t taker)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < pshm_ring_cap(r); i++) {
        uint64_t c = pshm_ring_cell(r, i);
        if (pshm_ring_word_state(c) == PSHM_RING_TAKEN && pshm_ring_word_who(c) == taker)
            n += pshm_ring_release(r, pshm_ring_cell_pos(r, i, c), c);
    }
    pshm_ring_kick(r);
    return n;
}

static pid_t spawn_kid(struct pshm_ring *r, struct shared_books *b, int i)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(60);
        if (i % 2 == 0)
            kid_producer(r, b);
        else
            kid_consumer(r, b, (uint32_t)i + 1);
        _exit(0);
    }
    return pid;
}

static void test_processes_killed_at_random(void **state)
{
    (void)state;
    struct pshm_ring *r = ring_new(5);
    struct shared_books *b =
        mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(b != MAP_FAILED);
    enum { KIDS = 6 };
    pid_t kids[KIDS];
    for (int i = 0; i < KIDS; i++)
        kids[i] = spawn_kid(r, b, i);
    unsigned seed = (unsigned)time(NULL);
    print_message("seed %u\n", seed);
    int killed = 0;
    unsigned released = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct timespec d = ms_ts(1 + rand_r(&seed) % 8), t;
        nanosleep(&d, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec >= 3 || atomic_load(&b->next) >= KVALUES)
            break;
        int i = (int)(rand_r(&seed) % KIDS);
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
        killed++;
        if (i % 2)
            released += release_dead(r, (uint32_t)i + 1);
        kids[i] = spawn_kid(r, b, i);
    }
    for (int i = 0; i < KIDS; i++) {
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
        if (i % 2)
            released += release_dead(r, (uint32_t)i + 1);
    }
    /* What is left in the ring comes out, each value once. */
    uint32_t v, who;
    unsigned drained = 0;
    int rc;
    while ((rc = pshm_ring_pop(r, &who, &v)) == 0) {
        assert_true(v < KVALUES);
        atomic_fetch_add(&b->taken[v], 1);
        drained++;
    }
    assert_int_equal(rc, -EAGAIN);
    unsigned once = 0, twice = 0;
    unsigned sent = atomic_load(&b->next) < KVALUES ? atomic_load(&b->next) : KVALUES;
    for (unsigned i = 0; i < sent; i++) {
        once += atomic_load(&b->taken[i]) == 1;
        twice += atomic_load(&b->taken[i]) > 1;
    }
    print_message("%d kills; %u values handed out, %u delivered once (%u drained at the end), "
                  "%u twice; %u cells of dead receivers released\n",
                  killed, sent, once, drained, twice, released);
    assert_true(killed > 20);
    assert_int_equal(twice, 0);
    assert_int_equal(atomic_load(&b->bad), 0);
    assert_true(once > sent / 2);
    /* Not wedged: a full lap goes through, and the hints meet. */
    for (uint32_t i = 1; i <= 32; i++)
        assert_int_equal(pshm_ring_push(r, 2, i), 0);
    assert_int_equal(pshm_ring_push(r, 2, 33), -EAGAIN);
    for (uint32_t i = 1; i <= 32; i++) {
        assert_int_equal(pshm_ring_pop(r, &who, &v), 0);
        assert_int_equal(v, i);
    }
    assert_int_equal(pa_load_relaxed(&r->head), pa_load_relaxed(&r->tail));
    munmap(b, sizeof(*b));
    ring_free(r);
}

/* ---- sleep and wake between processes, no bound on any sleep ---- */

enum { ROUNDS = 20000 };

static void test_ping_pong_between_processes(void **state)
{
    (void)state;
    struct pshm_ring *ping = ring_new(2), *pong = ring_new(2);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        alarm(60); /* a lost wake-up hangs: this ends it, and the test fails */
        for (uint32_t i = 1; i <= ROUNDS; i++) {
            uint32_t who, v;
            if (pshm_ring_recv(ping, &who, &v, -1, -1) != 0 || v != i)
                _exit(2);
            if (pshm_ring_send(pong, 2, v, -1, -1) != 0)
                _exit(3);
        }
        _exit(0);
    }
    alarm(60);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint32_t i = 1; i <= ROUNDS; i++) {
        uint32_t who, v;
        assert_int_equal(pshm_ring_send(ping, 1, i, -1, -1), 0);
        assert_int_equal(pshm_ring_recv(pong, &who, &v, -1, -1), 0);
        assert_int_equal(v, i);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    alarm(0);
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    double us =
        ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / ROUNDS / 1e3;
    unsigned long long w = pa_load_relaxed(&ping->wakes) + pa_load_relaxed(&pong->wakes);
    print_message("%d round trips between two processes, %.1f us each; %llu futex wakes\n", ROUNDS,
                  us, w);
    /* The receivers did sleep (a test that never slept proves nothing). */
    assert_true(w > 0);
    ring_free(ping);
    ring_free(pong);
}

/* A watcher (pool_chan_fd()'s thread) sleeps on the watch count with no
 * bound, in another process; each round the sender sends one value and
 * waits for the watcher's answer, so that every round is a race between
 * the watcher going to sleep and the fill that must wake it. A lost
 * wake-up hangs the round (the alarm fails the test). */
static void test_watcher_never_misses_a_fill(void **state)
{
    (void)state;
    struct pshm_ring *ring = ring_new(4), *ack = ring_new(2);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        alarm(60);
        pshm_ring_watch(ring, 1);
        uint32_t next = 1, sleeps = 0;
        while (next <= ROUNDS) {
            uint32_t seen = pshm_ring_watch_seq(ring);
            uint32_t who, v;
            bool any = false;
            while (pshm_ring_pop(ring, &who, &v) == 0) {
                if (v != next++)
                    _exit(2);
                any = true;
            }
            if (any) {
                if (pshm_ring_send(ack, 2, next - 1, -1, -1) != 0)
                    _exit(3);
                continue;
            }
            sleeps++;
            pshm_ring_watch_sleep(ring, seen, -1);
        }
        pshm_ring_watch(ring, -1);
        _exit(sleeps > ROUNDS / 10 ? 0 : 4); /* it did sleep, most rounds */
    }
    alarm(60);
    for (uint32_t i = 1; i <= ROUNDS; i++) {
        uint32_t who, v;
        assert_int_equal(pshm_ring_send(ring, 1, i, -1, -1), 0);
        assert_int_equal(pshm_ring_recv(ack, &who, &v, -1, -1), 0);
        assert_int_equal(v, i);
    }
    alarm(0);
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    print_message("%d fills each raced by a watcher going to sleep: none missed\n", ROUNDS);
    ring_free(ring);
    ring_free(ack);
}

/* ---- a receiver that sleeps is woken, and one that does not costs no call ---- */

static void *late_sender(void *p)
{
    struct timespec d = ms_ts(100);
    nanosleep(&d, NULL);
    return (void *)(intptr_t)pshm_ring_send(p, 1, 42, 0, -1);
}

static void test_timeouts_and_wakes(void **state)
{
    (void)state;
    struct pshm_ring *r = ring_new(1);
    uint32_t v, who;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(pshm_ring_recv(r, &who, &v, 150, -1), -EAGAIN);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_true(ms >= 149);
    assert_int_equal(pshm_ring_recv(r, &who, &v, 0, -1), -EAGAIN);
    assert_int_equal(pa_load_relaxed(&r->wakes), 0);
    /* A sleeping receiver is woken by a send: one futex wake. */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, late_sender, r), 0);
    assert_int_equal(pshm_ring_recv(r, &who, &v, -1, -1), 0);
    assert_int_equal(v, 42);
    void *rc;
    pthread_join(t, &rc);
    assert_int_equal((intptr_t)rc, 0);
    assert_int_equal(pa_load_relaxed(&r->wakes), 1);
    /* A full ring: send with a timeout gives EAGAIN, never drops. */
    assert_int_equal(pshm_ring_send(r, 1, 1, 0, -1), 0);
    assert_int_equal(pshm_ring_send(r, 1, 2, 0, -1), 0);
    assert_int_equal(pshm_ring_send(r, 1, 3, 50, -1), -EAGAIN);
    assert_int_equal(pshm_ring_recv(r, &who, &v, 0, -1), 0);
    assert_int_equal(v, 1);
    assert_int_equal(pshm_ring_recv(r, &who, &v, 0, -1), 0);
    assert_int_equal(v, 2);
    ring_free(r);
}

/* ---- a message for every receiver wakes every sleeper ---- */

/* A topic's subscribers all sleep on one ring's filled_seq: a fill that
 * each of them must read wakes them all, not one per message (the others
 * would sleep through it). The sleeps here are unbounded (slice -1), so a
 * sleeper left asleep stays so, and the timed join below finds it. */
static atomic_uint g_gen;

static int gen_moved(void *arg)
{
    (void)arg;
    /* acquire: pairs with the release store in the test before its fill. */
    return atomic_load_explicit(&g_gen, memory_order_acquire) != 0 ? 0 : -EAGAIN;
}

static void *gen_sleeper(void *p)
{
    return (void *)(intptr_t)pshm_ring_wait(p, false, gen_moved, NULL, -1, -1, NULL);
}

static void test_fill_for_all_wakes_every_sleeper(void **state)
{
    (void)state;
    enum { N = 3 };
    struct pshm_ring *r = ring_new(2);
    atomic_store(&g_gen, 0);
    pthread_t t[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&t[i], NULL, gen_sleeper, r), 0);
    while (pa_load_relaxed(&r->recv_waiters) < N)
        sched_yield();
    struct timespec d = ms_ts(50); /* past their spin: asleep in the futex */
    nanosleep(&d, NULL);
    atomic_store_explicit(&g_gen, 1, memory_order_release);
    pshm_ring_filled_all(r);
    int woken = 0;
    for (int i = 0; i < N; i++) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        void *rc;
        if (pthread_timedjoin_np(t[i], &rc, &until) == 0) {
            assert_int_equal((intptr_t)rc, 0);
            woken++;
        } else {
            pshm_ring_kick(r); /* free it, then report */
            pthread_join(t[i], &rc);
        }
    }
    assert_int_equal(woken, N);
    assert_int_equal(pa_load_relaxed(&r->recv_waiters), 0);
    ring_free(r);
}

#if defined(POOL_CRASH_POINTS)
/* ---- death at every shared store of a send and of a receive ---- */

/* A ring of 4 cells holding 1, 2 (after 0 was sent and taken), with both
 * hints one behind, so that the step also moves a lagging hint. */
static struct pshm_ring *crash_ring(void)
{
    struct pshm_ring *r = ring_new(2);
    uint32_t v, who;
    assert_int_equal(pshm_ring_push(r, 1, 5), 0);
    assert_int_equal(pshm_ring_pop(r, &who, &v), 0);
    assert_int_equal(pshm_ring_push(r, 1, 1), 0);
    assert_int_equal(pshm_ring_push(r, 1, 2), 0);
    pa_store_relaxed(&r->tail, pa_load_relaxed(&r->tail) - 1);
    pa_store_relaxed(&r->head, pa_load_relaxed(&r->head) - 1);
    return r;
}

/* Run a push of 9 (send) or a pop in a child that dies at its nth shared
 * store: true when it died there, false when the step had fewer points. */
static bool crash_child(struct pshm_ring *r, bool send, long n)
{
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        uint32_t v = 0, who;
        pshm_crash_arm(n);
        int rc = send ? pshm_ring_push(r, 1, 9) : pshm_ring_pop(r, &who, &v);
        pshm_crash_arm(-1);
        _exit(rc == 0 && (send || v == 1) ? 0 : 1);
    }
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    if (WIFSIGNALED(st)) {
        assert_int_equal(WTERMSIG(st), SIGKILL);
        return true;
    }
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return false;
}

static void test_death_at_every_store(void **state)
{
    (void)state;
    for (int send = 0; send <= 1; send++) {
        long points = 0;
        for (long n = 1;; n++) {
            struct pshm_ring *r = crash_ring();
            bool died = crash_child(r, send, n);
            /* What the ring holds now, in order: 1 unless a receive took
             * it, then 2, then 9 if a send got to fill its cell. */
            uint32_t got[4], v, who;
            int k = 0;
            /* A receive killed between its take and its release leaves its
             * TAKEN cell: what a reclaimer then releases. */
            unsigned released = release_dead(r, 0);
            assert_true(released <= (send ? 0u : 1u));
            while (k < 4 && pshm_ring_pop(r, &who, &v) == 0)
                got[k++] = v;
            assert_int_equal(pshm_ring_pop(r, &who, &v), -EAGAIN);
            int i = 0;
            if (k > 0 && got[0] == 1)
                i = 1;
            else
                assert_false(send); /* only a receive takes 1 */
            assert_true(i < k);
            assert_int_equal(got[i++], 2);
            if (send && i < k)
                assert_int_equal(got[i++], 9);
            assert_int_equal(i, k);
            if (!died)
                assert_int_equal(k, send ? 3 : 1);
            /* Not wedged: a full lap, and the hints meet. */
            for (uint32_t j = 1; j <= 4; j++)
                assert_int_equal(pshm_ring_push(r, 1, j), 0);
            assert_int_equal(pshm_ring_push(r, 1, 5), -EAGAIN);
            for (uint32_t j = 1; j <= 4; j++) {
                assert_int_equal(pshm_ring_pop(r, &who, &v), 0);
                assert_int_equal(v, j);
            }
            assert_int_equal(pa_load_relaxed(&r->head), pa_load_relaxed(&r->tail));
            ring_free(r);
            if (!died)
                break;
            points++;
        }
        print_message("%s: died at each of its %ld shared stores, the ring intact after each\n",
                      send ? "send" : "receive", points);
        assert_true(points >= 2);
    }
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_full_and_empty),
        cmocka_unit_test(test_lap_wraps),
        cmocka_unit_test(test_overwritten_cells_refused),
        cmocka_unit_test(test_steps_and_words),
        cmocka_unit_test(test_threads_every_value_once_in_order),
        cmocka_unit_test(test_processes_killed_at_random),
        cmocka_unit_test(test_ping_pong_between_processes),
        cmocka_unit_test(test_watcher_never_misses_a_fill),
        cmocka_unit_test(test_timeouts_and_wakes),
        cmocka_unit_test(test_fill_for_all_wakes_every_sleeper),
#if defined(POOL_CRASH_POINTS)
        cmocka_unit_test(test_death_at_every_store),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
