/* SPDX-License-Identifier: MIT */
/*
 * test_ring.c: the shared ring that carries channels (shm/pshm_ring.h).
 *
 * First in, first out, full and empty said as such, across the wrap of the
 * 24-bit lap; every value delivered exactly once among threads and among
 * processes; senders and receivers SIGKILLed at random leave a ring that
 * still works and delivers nothing twice; 20,000 sleep/wake round trips
 * between two processes with unbounded sleeps (a lost wake-up hangs, and
 * the alarm fails the test); no futex call while nobody sleeps.
 */
#include <errno.h>
#include <pthread.h>
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
    uint64_t v;
    assert_int_equal(pshm_ring_pop(r, &v), -EAGAIN);
    for (uint64_t i = 1; i <= 4; i++)
        assert_int_equal(pshm_ring_push(r, i), 0);
    assert_int_equal(pshm_ring_push(r, 5), -EAGAIN);
    assert_int_equal(pshm_ring_depth(r), 4);
    for (uint64_t i = 1; i <= 4; i++) {
        assert_int_equal(pshm_ring_pop(r, &v), 0);
        assert_int_equal(v, i);
    }
    assert_int_equal(pshm_ring_pop(r, &v), -EAGAIN);
    /* Many laps, the ring two thirds full. */
    uint64_t next_in = 1, next_out = 1;
    for (int i = 0; i < 3; i++)
        assert_int_equal(pshm_ring_push(r, next_in++), 0);
    for (int i = 0; i < 1000000; i++) {
        assert_int_equal(pshm_ring_push(r, next_in++), 0);
        assert_int_equal(pshm_ring_pop(r, &v), 0);
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
        pa_store_relaxed(&r->cells[p & 3], pshm_ring_word(p, 2, 0));
    uint64_t v, n = 1;
    for (int lap = 0; lap < 12; lap++) {
        for (int i = 0; i < 4; i++)
            assert_int_equal(pshm_ring_push(r, n + (uint64_t)i), 0);
        assert_int_equal(pshm_ring_push(r, 99), -EAGAIN);
        for (int i = 0; i < 4; i++) {
            assert_int_equal(pshm_ring_pop(r, &v), 0);
            assert_int_equal(v, n + (uint64_t)i);
        }
        assert_int_equal(pshm_ring_pop(r, &v), -EAGAIN);
        n += 4;
    }
    assert_true(pa_load_relaxed(&r->tail) >> 2 > (UINT64_C(1) << PSHM_RING_LAP_BITS));
    ring_free(r);
}

static void test_bad_values_and_overwritten_cells(void **state)
{
    (void)state;
    struct pshm_ring *r = ring_new(3);
    uint64_t v;
    assert_int_equal(pshm_ring_push(r, 0), -EINVAL);
    assert_int_equal(pshm_ring_push(r, PSHM_RING_VALUE_MAX + 1), -EINVAL);
    assert_int_equal(pshm_ring_push(r, PSHM_RING_VALUE_MAX), 0);
    assert_int_equal(pshm_ring_pop(r, &v), 0);
    assert_int_equal(v, PSHM_RING_VALUE_MAX);
    /* A cell overwritten with a word five laps ahead: both sides refuse
     * it rather than spin or deliver it. */
    uint64_t h = pa_load_relaxed(&r->head);
    pa_store_relaxed(&r->cells[h & 7], pshm_ring_word(h + 5 * 8, 3, 7));
    assert_int_equal(pshm_ring_pop(r, &v), -EPROTO);
    pa_store_relaxed(&r->cells[h & 7], 0x123456789abcdefULL);
    assert_int_equal(pshm_ring_push(r, 1), -EPROTO);
    ring_free(r);
}

/* The two-step forms a journal sits between: a word tells whether its CAS
 * took place, and a CAS with a stale word does nothing. */
static void test_two_steps_and_words(void **state)
{
    (void)state;
    struct pshm_ring *r = ring_new(2);
    uint64_t pos, empty, pos2, empty2, full, v;
    assert_int_equal(pshm_ring_reserve(r, &pos, &empty), 0);
    assert_true(pshm_ring_holds(r, pos, empty));
    /* Another sender is first: our fill fails, the cell holds its word. */
    assert_int_equal(pshm_ring_push(r, 7), 0);
    assert_false(pshm_ring_holds(r, pos, empty));
    assert_true(pshm_ring_holds(r, pos, pshm_ring_word(pos, 2, 7)));
    assert_false(pshm_ring_fill(r, pos, empty, 8));
    assert_int_equal(pshm_ring_reserve(r, &pos2, &empty2), 0);
    assert_int_equal(pos2, pos + 1);
    assert_true(pshm_ring_fill(r, pos2, empty2, 8));
    /* Two receivers peek the same word: one take wins. */
    assert_int_equal(pshm_ring_peek(r, &pos, &full), 0);
    assert_int_equal(pshm_ring_word_value(full), 7);
    assert_true(pshm_ring_take(r, pos, full));
    assert_false(pshm_ring_take(r, pos, full));
    assert_false(pshm_ring_holds(r, pos, full));
    assert_int_equal(pshm_ring_pop(r, &v), 0);
    assert_int_equal(v, 8);
    /* Four laps later the cell's words are new ones. */
    for (uint64_t i = 1; i <= 16; i++) {
        assert_int_equal(pshm_ring_push(r, 7), 0);
        assert_int_equal(pshm_ring_pop(r, &v), 0);
    }
    assert_false(pshm_ring_holds(r, pos, full));
    ring_free(r);
}

/* ---- threads: every value once, in each producer's order ---- */

enum { PRODUCERS = 3, CONSUMERS = 3, PER_PRODUCER = 200000 };
#define SENTINEL PSHM_RING_VALUE_MAX

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
    for (uint64_t s = 0; s < PER_PRODUCER; s++) {
        uint64_t v = (uint64_t)a->id << 32 | (s + 1);
        if (pshm_ring_send(a->m->r, v, -1, -1) != 0)
            atomic_fetch_add(&a->m->errors, 1);
    }
    return NULL;
}

static void *consumer(void *p)
{
    struct mt_arg *a = p;
    uint64_t last[PRODUCERS] = {0};
    for (;;) {
        uint64_t v;
        if (pshm_ring_recv(a->m->r, &v, -1, -1) != 0) {
            atomic_fetch_add(&a->m->errors, 1);
            return NULL;
        }
        if (v == SENTINEL)
            return NULL;
        unsigned id = (unsigned)(v >> 32);
        uint64_t s = v & 0xffffffffu;
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
        assert_int_equal(pshm_ring_send(m->r, SENTINEL, -1, -1), 0);
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
        /* value v + 1 (0 is no value); a producer killed here loses v,
         * which is the caller's to journal, not the ring's. */
        while (pshm_ring_send(r, v + 1, 50, 10) == -EAGAIN)
            ;
    }
}

static void kid_consumer(struct pshm_ring *r, struct shared_books *b)
{
    for (;;) {
        uint64_t v;
        int rc = pshm_ring_recv(r, &v, 50, 10);
        if (rc == -EAGAIN)
            continue;
        if (rc != 0 || v == 0 || v > KVALUES) {
            atomic_fetch_add(&b->bad, 1);
            continue;
        }
        atomic_fetch_add(&b->taken[v - 1], 1);
    }
}

static pid_t spawn_kid(struct pshm_ring *r, struct shared_books *b, bool prod)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(60);
        if (prod)
            kid_producer(r, b);
        else
            kid_consumer(r, b);
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
        kids[i] = spawn_kid(r, b, i % 2 == 0);
    unsigned seed = (unsigned)time(NULL);
    print_message("seed %u\n", seed);
    int killed = 0;
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
        kids[i] = spawn_kid(r, b, i % 2 == 0);
    }
    for (int i = 0; i < KIDS; i++) {
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
    }
    /* What is left in the ring comes out, each value once. */
    uint64_t v;
    unsigned drained = 0;
    int rc;
    while ((rc = pshm_ring_pop(r, &v)) == 0) {
        assert_true(v >= 1 && v <= KVALUES);
        atomic_fetch_add(&b->taken[v - 1], 1);
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
                  "%u twice\n",
                  killed, sent, once, drained, twice);
    assert_true(killed > 20);
    assert_int_equal(twice, 0);
    assert_int_equal(atomic_load(&b->bad), 0);
    assert_true(once > sent / 2);
    /* Not wedged: a full lap goes through, and the hints meet. */
    for (uint64_t i = 1; i <= 32; i++)
        assert_int_equal(pshm_ring_push(r, i), 0);
    assert_int_equal(pshm_ring_push(r, 33), -EAGAIN);
    for (uint64_t i = 1; i <= 32; i++) {
        assert_int_equal(pshm_ring_pop(r, &v), 0);
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
        for (uint64_t i = 1; i <= ROUNDS; i++) {
            uint64_t v;
            if (pshm_ring_recv(ping, &v, -1, -1) != 0 || v != i)
                _exit(2);
            if (pshm_ring_send(pong, v, -1, -1) != 0)
                _exit(3);
        }
        _exit(0);
    }
    alarm(60);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t i = 1; i <= ROUNDS; i++) {
        uint64_t v;
        assert_int_equal(pshm_ring_send(ping, i, -1, -1), 0);
        assert_int_equal(pshm_ring_recv(pong, &v, -1, -1), 0);
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

/* ---- a receiver that sleeps is woken, and one that does not costs no call ---- */

static void *late_sender(void *p)
{
    struct timespec d = ms_ts(100);
    nanosleep(&d, NULL);
    return (void *)(intptr_t)pshm_ring_send(p, 42, 0, -1);
}

static void test_timeouts_and_wakes(void **state)
{
    (void)state;
    struct pshm_ring *r = ring_new(1);
    uint64_t v;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(pshm_ring_recv(r, &v, 150, -1), -EAGAIN);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_true(ms >= 149);
    assert_int_equal(pshm_ring_recv(r, &v, 0, -1), -EAGAIN);
    assert_int_equal(pa_load_relaxed(&r->wakes), 0);
    /* A sleeping receiver is woken by a send: one futex wake. */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, late_sender, r), 0);
    assert_int_equal(pshm_ring_recv(r, &v, -1, -1), 0);
    assert_int_equal(v, 42);
    void *rc;
    pthread_join(t, &rc);
    assert_int_equal((intptr_t)rc, 0);
    assert_int_equal(pa_load_relaxed(&r->wakes), 1);
    /* A full ring: send with a timeout gives EAGAIN, never drops. */
    assert_int_equal(pshm_ring_send(r, 1, 0, -1), 0);
    assert_int_equal(pshm_ring_send(r, 2, 0, -1), 0);
    assert_int_equal(pshm_ring_send(r, 3, 50, -1), -EAGAIN);
    assert_int_equal(pshm_ring_recv(r, &v, 0, -1), 0);
    assert_int_equal(v, 1);
    assert_int_equal(pshm_ring_recv(r, &v, 0, -1), 0);
    assert_int_equal(v, 2);
    ring_free(r);
}

#if defined(POOL_CRASH_POINTS)
/* ---- death at every shared store of a send and of a receive ---- */

/* A ring of 4 cells holding 1, 2 (after 0 was sent and taken), with both
 * hints one behind, so that the step also moves a lagging hint. */
static struct pshm_ring *crash_ring(void)
{
    struct pshm_ring *r = ring_new(2);
    uint64_t v;
    assert_int_equal(pshm_ring_push(r, 5), 0);
    assert_int_equal(pshm_ring_pop(r, &v), 0);
    assert_int_equal(pshm_ring_push(r, 1), 0);
    assert_int_equal(pshm_ring_push(r, 2), 0);
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
        uint64_t v;
        pshm_crash_arm(n);
        int rc = send ? pshm_ring_push(r, 9) : pshm_ring_pop(r, &v);
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
            uint64_t got[4], v;
            int k = 0, rc;
            while (k < 4 && (rc = pshm_ring_pop(r, &v)) == 0)
                got[k++] = v;
            assert_int_equal(pshm_ring_pop(r, &v), -EAGAIN);
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
            for (uint64_t j = 1; j <= 4; j++)
                assert_int_equal(pshm_ring_push(r, j), 0);
            assert_int_equal(pshm_ring_push(r, 5), -EAGAIN);
            for (uint64_t j = 1; j <= 4; j++) {
                assert_int_equal(pshm_ring_pop(r, &v), 0);
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
        cmocka_unit_test(test_bad_values_and_overwritten_cells),
        cmocka_unit_test(test_two_steps_and_words),
        cmocka_unit_test(test_threads_every_value_once_in_order),
        cmocka_unit_test(test_processes_killed_at_random),
        cmocka_unit_test(test_ping_pong_between_processes),
        cmocka_unit_test(test_timeouts_and_wakes),
#if defined(POOL_CRASH_POINTS)
        cmocka_unit_test(test_death_at_every_store),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
