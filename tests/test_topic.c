/* SPDX-License-Identifier: MIT */
/*
 * test_topic.c: topics (pool_chan_* of kind POOL_CHAN_TOPIC), on an
 * embedded pool shared with forked children.
 *
 * A message goes to every subscriber that had subscribed when it was sent,
 * as the very same block, read-only: a subscriber cannot free it, releases
 * it in any order, and the last release frees it; a message nobody
 * subscribed to is freed at once; a subscriber a capacity behind makes
 * senders wait (EAGAIN), and its leaving frees what only it held. Between
 * processes, four subscribers get every message in order, a 1 MiB one with
 * a single allocation; and in a storm of publishers and subscribers
 * SIGKILLed at random, no subscriber gets a message twice or out of order,
 * and at the end nothing is in use or in transit and the books are exact.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pool_test.h"

static uint32_t chan_no(pool_t *p, const char *name)
{
    struct pshm_chan *c = pool_test_chan(p, name);
    assert_non_null(c);
    return (uint32_t)(c - p->seg.chans);
}

static int64_t in_use(pool_t *p)
{
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    int64_t n = 0;
    for (uint32_t c = 0; c < st.nclasses; c++)
        n += st.cls[c].blocks_in_use;
    pshm_large_stats_t lt;
    pshm_large_totals(&p->seg, &lt);
    return n + (int64_t)lt.in_use;
}

static uint64_t in_transit(pool_t *p)
{
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    pshm_large_stats_t lt;
    pshm_large_totals(&p->seg, &lt);
    return st.blocks_in_transit + lt.in_transit;
}

static void test_topic_in_one_process(void **state)
{
    pool_t *p = *state;
    struct pool_chan_opts pub_o = {POOL_CHAN_TOPIC, 4, POOL_CHAN_CREATE};
    struct pool_chan_opts sub_o = {POOL_CHAN_TOPIC, 4, POOL_CHAN_CREATE | POOL_CHAN_SUBSCRIBE};
    struct pool_chan_opts bad = {POOL_CHAN_QUEUE, 4, POOL_CHAN_CREATE | POOL_CHAN_SUBSCRIBE};
    errno = 0;
    assert_null(pool_chan_open(p, "news", &bad)); /* only a topic has subscribers */
    assert_int_equal(errno, EINVAL);
    pool_chan_t *pub = pool_chan_open(p, "news", &pub_o);
    assert_non_null(pub);
    assert_null(pool_chan_open(p, "news", NULL)); /* joined as a queue */
    assert_int_equal(errno, EPROTOTYPE);
    int64_t base = in_use(p);
    struct pshm_chan *c = pool_test_chan(p, "news");

    /* Nobody subscribed: the message is freed at once. */
    char *m = pool_malloc(p, 100);
    assert_non_null(m);
    assert_int_equal(pool_chan_send(pub, m, 100, 0), 0);
    assert_int_equal(pa_load_relaxed(&c->unheard), 1);
    assert_int_equal(in_use(p), base);
    assert_int_equal(in_transit(p), 0);
    errno = 0;
    assert_null(pool_chan_recv(pub, NULL, 0)); /* not a subscription */
    assert_int_equal(errno, EBADF);

    /* Two subscribers get the same blocks, in order. */
    pool_chan_t *s1 = pool_chan_open(p, "news", &sub_o);
    pool_chan_t *s2 = pool_chan_open(p, "news", &sub_o);
    assert_non_null(s1);
    assert_non_null(s2);
    char *msg[8];
    for (int i = 0; i < 3; i++) {
        msg[i] = pool_malloc(p, 100 + (size_t)i);
        assert_non_null(msg[i]);
        msg[i][0] = (char)('a' + i);
        assert_int_equal(pool_chan_send(pub, msg[i], 100, 0), 0);
    }
    assert_int_equal(in_transit(p), 3);
    char *r1[3], *r2[2];
    for (int i = 0; i < 3; i++) {
        r1[i] = pool_chan_recv(s1, NULL, 0);
        assert_ptr_equal(r1[i], msg[i]);
        assert_int_equal(r1[i][0], 'a' + i);
    }
    assert_null(pool_chan_recv(s1, NULL, 0));
    assert_int_equal(errno, EAGAIN);
    for (int i = 0; i < 2; i++)
        assert_ptr_equal(r2[i] = pool_chan_recv(s2, NULL, 0), msg[i]);
    /* Shared, not the subscriber's: it cannot free it. */
    assert_false(pool_free(p, r1[0], 0));
    /* s1 releases out of order; s2 still holds 0 and 1, and has 2 to come. */
    assert_int_equal(pool_chan_release(s1, r1[2]), 0);
    assert_int_equal(pool_chan_release(s1, r1[0]), 0);
    assert_int_equal(pool_chan_release(s1, r1[0]), -1); /* twice */
    assert_int_equal(errno, EINVAL);
    assert_int_equal(pool_chan_release(s1, r1[1]), 0);
    uint64_t freed0 = pa_load_relaxed(&c->freed);
    assert_int_equal(in_transit(p), 3);
    assert_int_equal(pool_chan_release(s2, msg[2]), -1); /* not received yet */
    assert_int_equal(errno, EINVAL);
    /* The last release frees it. */
    assert_int_equal(pool_chan_release(s2, r2[0]), 0);
    assert_int_equal(pa_load_relaxed(&c->freed), freed0 + 1);
    assert_int_equal(in_transit(p), 2);

    /* s2 holds position 1 and has not received 2: a capacity behind after
     * two more sends, so the third waits for it (EAGAIN), and the block
     * stays the sender's. */
    for (int i = 3; i < 6; i++) {
        msg[i] = pool_malloc(p, 64);
        msg[i][0] = (char)('a' + i);
    }
    assert_int_equal(pool_chan_send(pub, msg[3], 64, 0), 0);
    assert_int_equal(pool_chan_send(pub, msg[4], 64, 0), 0);
    errno = 0;
    assert_int_equal(pool_chan_send(pub, msg[5], 64, 10), -1);
    assert_int_equal(errno, EAGAIN);
    pshm_chan_stats_t cs;
    assert_true(pshm_chan_stats(&p->seg, chan_no(p, "news"), &cs));
    assert_int_equal(cs.kind, PSHM_CHAN_TOPIC);
    assert_int_equal(cs.subscribers, 2);
    assert_int_equal(cs.slow, 1);
    assert_int_equal(cs.lag_max, 4);
    assert_int_equal(cs.depth, 4);
    /* s2 leaves: what only it held is freed, and there is room. */
    pool_chan_close(s2);
    assert_int_equal(pool_chan_send(pub, msg[5], 64, 0), 0);
    for (int i = 3; i < 6; i++) {
        char *r = pool_chan_recv(s1, NULL, 0);
        assert_ptr_equal(r, msg[i]);
        assert_int_equal(pool_chan_release(s1, r), 0);
    }
    assert_int_equal(in_transit(p), 0);
    assert_int_equal(in_use(p), base);

    /* 16 subscribers, then EMFILE. */
    pool_chan_t *subs[PSHM_CHAN_SEATS];
    subs[0] = s1;
    for (uint32_t i = 1; i < PSHM_CHAN_SEATS; i++)
        assert_non_null(subs[i] = pool_chan_open(p, "news", &sub_o));
    errno = 0;
    assert_null(pool_chan_open(p, "news", &sub_o));
    assert_int_equal(errno, EMFILE);
    /* A message to all sixteen, then they close holding it: freed. */
    m = pool_malloc(p, 3000);
    assert_int_equal(pool_chan_send(pub, m, 3000, 0), 0);
    for (uint32_t i = 0; i < PSHM_CHAN_SEATS; i++)
        assert_ptr_equal(pool_chan_recv(subs[i], NULL, 0), m);
    assert_int_equal(in_transit(p), 1);
    for (uint32_t i = 0; i < PSHM_CHAN_SEATS; i++)
        pool_chan_close(subs[i]);
    assert_int_equal(in_transit(p), 0);
    assert_int_equal(in_use(p), base);
    pool_chan_close(pub);
    assert_null(pool_test_chan(p, "news"));
    pool_test_check(p);
}

/* ---- fan-out to four processes ---- */

enum { FAN_MSGS = 4000, FAN_SUBS = 4 };

static size_t fan_size(uint32_t i)
{
    return i % 50 == 0 ? (size_t)1 << 20 : 16 + (i * 131) % 6000;
}

static void fan_subscriber(pool_t *p, int ready_fd)
{
    struct pool_chan_opts o = {POOL_CHAN_TOPIC, 64, POOL_CHAN_SUBSCRIBE};
    pool_chan_t *ch = pool_chan_open(p, "fan", &o);
    if (!ch)
        _exit(5);
    full_write(ready_fd, "r", 1);
    for (uint32_t i = 0; i < FAN_MSGS; i++) {
        size_t n;
        const uint32_t *m = pool_chan_recv(ch, &n, 10000);
        if (!m)
            _exit(6);
        if (m[0] != i || n < fan_size(i))
            _exit(7);
        if (m[fan_size(i) / 4 - 1] != (i ^ 0xc3c3c3c3u))
            _exit(8);
        if (pool_chan_release(ch, m) != 0)
            _exit(9);
    }
    pool_chan_close(ch);
    _exit(0);
}

static void test_topic_fanout_to_four_processes(void **state)
{
    pool_t *p = *state;
    struct pool_chan_opts o = {POOL_CHAN_TOPIC, 64, POOL_CHAN_CREATE};
    pool_chan_t *pub = pool_chan_open(p, "fan", &o);
    assert_non_null(pub);
    int64_t base = in_use(p);
    pshm_large_stats_t l0, l1;
    pshm_large_totals(&p->seg, &l0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t kids[FAN_SUBS];
    for (int k = 0; k < FAN_SUBS; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            alarm(120);
            close(fds[0]);
            fan_subscriber(p, fds[1]);
        }
    }
    close(fds[1]);
    char ready[FAN_SUBS];
    full_read(fds[0], ready, sizeof(ready));
    close(fds[0]);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint32_t i = 0; i < FAN_MSGS; i++) {
        size_t n = fan_size(i);
        uint32_t *m;
        while (!(m = pool_malloc(p, n)))
            usleep(100);
        m[0] = i;
        m[n / 4 - 1] = i ^ 0xc3c3c3c3u;
        assert_int_equal(pool_chan_send(pub, m, n, -1), 0);
    }
    for (int k = 0; k < FAN_SUBS; k++) {
        int st;
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pshm_large_totals(&p->seg, &l1);
    struct pshm_chan *c = pool_test_chan(p, "fan");
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    uint64_t large = FAN_MSGS / 50;
    print_message("%d messages (%llu of 1 MiB) to %d subscriber processes in %.2f s: "
                  "%llu sent, %llu received, %llu freed; %llu large allocations for "
                  "%llu large deliveries\n",
                  FAN_MSGS, (unsigned long long)large, FAN_SUBS, s,
                  (unsigned long long)pa_load_relaxed(&c->sent),
                  (unsigned long long)pa_load_relaxed(&c->received),
                  (unsigned long long)pa_load_relaxed(&c->freed),
                  (unsigned long long)(l1.allocs - l0.allocs),
                  (unsigned long long)(large * FAN_SUBS));
    assert_int_equal(pa_load_relaxed(&c->sent), FAN_MSGS);
    assert_int_equal(pa_load_relaxed(&c->received), FAN_MSGS * FAN_SUBS);
    assert_int_equal(pa_load_relaxed(&c->freed), FAN_MSGS);
    assert_int_equal(pa_load_relaxed(&c->unheard), 0);
    /* One allocation per 1 MiB message, whatever the number of receivers. */
    assert_int_equal(l1.allocs - l0.allocs, large);
    pool_chan_close(pub);
    assert_int_equal(in_transit(p), 0);
    assert_int_equal(in_use(p), base);
    pool_test_check(p);
}

/* ---- a storm of deaths ---- */

enum { IDS = 1 << 20, PUBS = 2, SUBS = 4 };

struct board {
    atomic_uint next;          /* ids handed to publishers */
    atomic_uchar sent_ok[IDS]; /* pool_chan_send returned 0 */
    atomic_uint bad;           /* contents wrong, a message twice, or out of order */
    atomic_ulong deliveries;
};

static size_t storm_size(uint32_t id)
{
    return id % 53 == 0 ? (size_t)(96u << 10) : 8 + id % 700;
}

static void storm_publisher(pool_t *p, struct board *b)
{
    struct pool_chan_opts o = {POOL_CHAN_TOPIC, 0, 0};
    pool_chan_t *ch = pool_chan_open(p, "storm", &o);
    if (!ch)
        _exit(5);
    for (;;) {
        uint32_t id = atomic_fetch_add(&b->next, 1);
        if (id >= IDS)
            _exit(0);
        size_t n = storm_size(id);
        uint32_t *m = pool_malloc(p, n);
        if (!m) {
            usleep(1000);
            continue;
        }
        m[0] = id;
        m[n / 4 - 1] = ~id;
        while (pool_chan_send(ch, m, n, 20) != 0)
            ;
        atomic_store(&b->sent_ok[id], 1);
    }
}

static void storm_subscriber(pool_t *p, struct board *b, unsigned seed)
{
    struct pool_chan_opts o = {POOL_CHAN_TOPIC, 0, POOL_CHAN_SUBSCRIBE};
    pool_chan_t *ch = pool_chan_open(p, "storm", &o);
    if (!ch)
        _exit(5);
    /* No id twice. Hold up to 8 messages, released in a random order. */
    static uint8_t seen[IDS / 8];
    const uint32_t *held[8];
    int nheld = 0;
    for (;;) {
        const uint32_t *m = pool_chan_recv(ch, NULL, 20);
        if (!m)
            continue;
        uint32_t id = m[0];
        if (id >= IDS || m[storm_size(id) / 4 - 1] != ~id || (seen[id / 8] >> (id % 8)) & 1)
            atomic_fetch_add(&b->bad, 1);
        else
            seen[id / 8] |= (uint8_t)(1u << (id % 8));
        atomic_fetch_add(&b->deliveries, 1);
        held[nheld++] = m;
        if (nheld == 8 || rand_r(&seed) % 3 == 0) {
            int k = (int)((unsigned)rand_r(&seed) % (unsigned)nheld);
            if (pool_chan_release(ch, held[k]) != 0)
                atomic_fetch_add(&b->bad, 1);
            held[k] = held[--nheld];
        }
    }
}

static pid_t storm_kid(pool_t *p, struct board *b, int i, unsigned seed)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(60);
        if (i < PUBS)
            storm_publisher(p, b);
        else
            storm_subscriber(p, b, seed);
        _exit(0);
    }
    return pid;
}

static void test_topic_storm_of_deaths(void **state)
{
    pool_t *p = *state;
    struct board *b =
        mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(b != MAP_FAILED);
    struct pool_chan_opts o = {POOL_CHAN_TOPIC, 0, POOL_CHAN_CREATE};
    pool_chan_t *ch = pool_chan_open(p, "storm", &o);
    assert_non_null(ch);
    int64_t base = in_use(p);
    enum { KIDS = PUBS + SUBS };
    pid_t kids[KIDS];
    unsigned seed = (unsigned)time(NULL);
    print_message("seed %u\n", seed);
    for (int i = 0; i < KIDS; i++)
        kids[i] = storm_kid(p, b, i, seed + (unsigned)i);
    int killed_pub = 0, killed_sub = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        usleep(2000 + (unsigned)rand_r(&seed) % 20000);
        int i = (int)(rand_r(&seed) % KIDS);
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
        if (i < PUBS)
            killed_pub++;
        else
            killed_sub++;
        pool_stats_t st;
        assert_int_equal(pool_stats(p, &st), 0); /* reclaims the dead */
        kids[i] = storm_kid(p, b, i, (unsigned)rand_r(&seed));
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - t0.tv_sec < 4 && atomic_load(&b->next) < IDS);
    for (int i = 0; i < KIDS; i++) {
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
    }
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    struct pshm_chan *c = pool_test_chan(p, "storm");
    assert_non_null(c);
    unsigned ok = 0;
    for (unsigned i = 0; i < IDS; i++)
        ok += atomic_load(&b->sent_ok[i]);
    print_message("%d publishers and %d subscribers killed; %u sends returned, %lu "
                  "deliveries; channel: %llu sent, %llu received, %llu freed, %llu unheard, "
                  "%llu given back by dead subscribers, %llu handed on for dead publishers\n",
                  killed_pub, killed_sub, ok, atomic_load(&b->deliveries),
                  (unsigned long long)pa_load_relaxed(&c->sent),
                  (unsigned long long)pa_load_relaxed(&c->received),
                  (unsigned long long)pa_load_relaxed(&c->freed),
                  (unsigned long long)pa_load_relaxed(&c->unheard),
                  (unsigned long long)pa_load_relaxed(&c->given_back),
                  (unsigned long long)pa_load_relaxed(&c->handed_on));
    assert_int_equal(atomic_load(&b->bad), 0);
    assert_true(atomic_load(&b->deliveries) > 1000);
    /* Every subscriber is gone: every message is freed. */
    assert_int_equal(in_transit(p), 0);
    assert_int_equal(in_use(p), base);
    pool_chan_close(ch);
    assert_null(pool_test_chan(p, "storm"));
    pool_test_check(p);
    munmap(b, sizeof(*b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_topic_in_one_process, pool_test_setup_64m,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_topic_fanout_to_four_processes, pool_test_setup_64m,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_topic_storm_of_deaths, pool_test_setup_64m,
                                        pool_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
