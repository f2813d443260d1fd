/* SPDX-License-Identifier: MIT */
/*
 * test_chan.c: channels (pool_chan_*), on an embedded pool shared with
 * forked children.
 *
 * Opening, joining and naming rules; a message moves its block (the sender
 * no longer owns it, the receiver does, contents intact, small and large);
 * a full channel refuses without taking the block; first in, first out
 * between processes; and a storm of senders and receivers SIGKILLed at
 * random, after which no message was delivered twice, every message whose
 * send returned was received, given back by a dead receiver's reclaim or
 * is still in the channel, and the books are exact with nothing in use.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pool_test.h"
#include "pshm_ring.h"

static void test_open_join_and_names(void **state)
{
    pool_t *p = *state;
    struct pool_chan_opts join = {0, 0, 0}, excl = {0, 4, POOL_CHAN_CREATE | POOL_CHAN_EXCL};
    errno = 0;
    assert_null(pool_chan_open(p, "jobs", &join));
    assert_int_equal(errno, ENOENT);
    pool_chan_t *a = pool_chan_open(p, "jobs", &excl);
    assert_non_null(a);
    assert_null(pool_chan_open(p, "jobs", &excl));
    assert_int_equal(errno, EEXIST);
    pool_chan_t *b = pool_chan_open(p, "jobs", &join);
    assert_non_null(b);
    struct pshm_chan *c = pool_test_chan(p, "jobs");
    assert_non_null(c);
    assert_int_equal(PSHM_CHAN_MEMBERS(pa_load_relaxed(&c->word)), 2);
    const char *bad[] = {"", "has space", "tab\there",
                         "a-name-that-is-longer-than-forty-seven-bytes-long"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        assert_null(pool_chan_open(p, bad[i], NULL));
        assert_int_equal(errno, EINVAL);
    }
    struct pool_chan_opts big = {0, POOL_CHAN_MAX_CAPACITY + 1, POOL_CHAN_CREATE};
    assert_null(pool_chan_open(p, "big", &big));
    assert_int_equal(errno, EINVAL);
    /* Capacity 4: the fifth send finds it full, and the block stays ours. */
    char *m[5];
    for (int i = 0; i < 5; i++) {
        m[i] = pool_malloc(p, 100);
        assert_non_null(m[i]);
        m[i][0] = (char)('a' + i);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pool_chan_send(a, m[i], 100, 0), 0);
    errno = 0;
    assert_int_equal(pool_chan_send(a, m[4], 100, 20), -1);
    assert_int_equal(errno, EAGAIN);
    assert_true(pool_free(p, m[4], 100)); /* still ours */
    /* What was sent is the channel's: neither a free nor an adopt by
     * offset takes it out. */
    assert_false(pool_free(p, m[0], 100));
    assert_null(pool_adopt(p, pool_offset(p, m[0])));
    struct pshm_chan *jobs = pool_test_chan(p, "jobs");
    for (int i = 0; i < 4; i++) {
        size_t n = 0;
        char *r = pool_chan_recv(b, &n, 0);
        assert_ptr_equal(r, m[i]);
        assert_int_equal(r[0], 'a' + i);
        assert_true(n >= 100);
        assert_true(pool_free(p, r, 0));
    }
    assert_int_equal(pa_load_relaxed(&jobs->refused), 0);
    errno = 0;
    assert_null(pool_chan_recv(b, NULL, 0));
    assert_int_equal(errno, EAGAIN);
    /* A block that is not ours is refused. */
    int local;
    assert_int_equal(pool_chan_send(a, &local, sizeof(local), 0), -1);
    assert_int_equal(errno, EINVAL);
    /* The last member to leave an empty channel frees the name... */
    pool_chan_close(a);
    pool_chan_close(b);
    assert_null(pool_test_chan(p, "jobs"));
    assert_null(pool_chan_open(p, "jobs", &join));
    /* ...and one holding a message keeps it, for the next receiver. */
    a = pool_chan_open(p, "keep", NULL);
    char *k = pool_malloc(p, 64);
    k[0] = 'k';
    assert_int_equal(pool_chan_send(a, k, 64, 0), 0);
    pool_chan_close(a);
    assert_non_null(pool_test_chan(p, "keep"));
    b = pool_chan_open(p, "keep", &join);
    assert_non_null(b);
    char *r = pool_chan_recv(b, NULL, 0);
    assert_ptr_equal(r, k);
    assert_true(pool_free(p, r, 64));
    pool_chan_close(b);
    /* 32 entries, then ENOSPC. */
    pool_chan_t *all[PSHM_MAX_CHANS];
    for (uint32_t i = 0; i < PSHM_MAX_CHANS; i++) {
        char name[16];
        snprintf(name, sizeof(name), "c%u", i);
        all[i] = pool_chan_open(p, name, NULL);
        assert_non_null(all[i]);
    }
    assert_null(pool_chan_open(p, "one-more", NULL));
    assert_int_equal(errno, ENOSPC);
    for (uint32_t i = 0; i < PSHM_MAX_CHANS; i++)
        pool_chan_close(all[i]);
    pool_test_check(p);
}

/* ---- between processes, in order, small and large ---- */

enum { NMSG = 20000 };

static size_t msg_size(uint32_t i)
{
    /* Mostly small, every 97th a large block of up to 2 MiB. */
    return i % 97 == 0 ? (size_t)(64u << 10) + (i % 7) * (300u << 10) : 16 + (i * 37) % 4000;
}

static void test_fifo_between_processes(void **state)
{
    pool_t *p = *state;
    pool_chan_t *ch = pool_chan_open(p, "fifo", NULL);
    assert_non_null(ch);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        alarm(60);
        for (uint32_t i = 0; i < NMSG; i++) {
            size_t n;
            uint32_t *b = pool_chan_recv(ch, &n, -1);
            if (!b || b[0] != i || n < msg_size(i))
                _exit(2);
            size_t words = msg_size(i) / 4;
            if (b[words - 1] != (i ^ 0x5a5a5a5au))
                _exit(3);
            if (!pool_free(p, b, 0))
                _exit(4);
        }
        _exit(0);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint32_t i = 0; i < NMSG; i++) {
        size_t n = msg_size(i);
        uint32_t *b;
        while (!(b = pool_malloc(p, n))) /* the receiver frees as it goes */
            usleep(100);
        b[0] = i;
        b[n / 4 - 1] = i ^ 0x5a5a5a5au;
        assert_int_equal(pool_chan_send(ch, b, n, -1), 0);
    }
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    struct pshm_chan *c = pool_test_chan(p, "fifo");
    print_message("%d messages (small and up to 2 MiB) to another process in %.2f s; "
                  "%llu sends found it full\n",
                  NMSG, s, (unsigned long long)pa_load_relaxed(&c->full_waits));
    assert_int_equal(pa_load_relaxed(&c->sent), NMSG);
    assert_int_equal(pa_load_relaxed(&c->received), NMSG);
    pool_chan_close(ch);
    pool_stats_t stats;
    assert_int_equal(pool_stats(p, &stats), 0);
    assert_int_equal(stats.blocks_in_transit, 0);
    pool_test_check(p);
}

/* ---- a file descriptor for event loops ---- */

enum { FD_MSGS = 5000 };

/* A sender in another process, pausing at random so that the receiver's
 * loop often waits in epoll_wait with the channel empty; the receiver
 * reads the eventfd when it is readable and receives until EAGAIN. Every
 * message arrives, and no wait lasts the 5 s bound (a lost readiness
 * would, up to the watcher's 200 ms look-again). */
static void fd_loop(pool_t *p, pool_chan_t *rx, const char *name, unsigned kind)
{
    int fd = pool_chan_fd(rx);
    assert_true(fd >= 0);
    assert_int_equal(pool_chan_fd(rx), fd); /* the same descriptor each call */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    assert_true(ep >= 0);
    struct epoll_event ev = {.events = EPOLLIN};
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        alarm(60);
        struct pool_chan_opts o = {kind, 0, 0};
        pool_chan_t *tx = pool_chan_open(p, name, &o);
        if (!tx)
            _exit(2);
        unsigned seed = (unsigned)getpid();
        for (uint32_t i = 0; i < FD_MSGS; i++) {
            uint32_t *m;
            while (!(m = pool_malloc(p, 64)))
                usleep(100);
            m[0] = i;
            if (pool_chan_send(tx, m, 64, -1) != 0)
                _exit(3);
            if (rand_r(&seed) % 4 == 0)
                usleep((unsigned)rand_r(&seed) % 300);
        }
        pool_chan_close(tx);
        _exit(0);
    }
    uint32_t got = 0, waits = 0;
    while (got < FD_MSGS) {
        struct epoll_event out;
        int n = epoll_wait(ep, &out, 1, 5000);
        assert_int_equal(n, 1);
        waits++;
        uint64_t cnt;
        (void)!read(fd, &cnt, sizeof(cnt));
        uint32_t *m;
        while ((m = pool_chan_recv(rx, NULL, 0))) {
            assert_int_equal(m[0], got);
            got++;
            if (kind == POOL_CHAN_TOPIC)
                assert_int_equal(pool_chan_release(rx, m), 0);
            else
                assert_true(pool_free(p, m, 0));
        }
        assert_int_equal(errno, EAGAIN);
    }
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    print_message("%s: %u messages through epoll in %u wake-ups of the loop\n", name, got, waits);
    close(ep);
}

static void test_fd_for_event_loops(void **state)
{
    pool_t *p = *state;
    pool_chan_t *q = pool_chan_open(p, "fdq", NULL);
    assert_non_null(q);
    fd_loop(p, q, "fdq", POOL_CHAN_QUEUE);
    struct pool_chan_opts sub = {POOL_CHAN_TOPIC, 64, POOL_CHAN_CREATE | POOL_CHAN_SUBSCRIBE};
    struct pool_chan_opts pub = {POOL_CHAN_TOPIC, 64, POOL_CHAN_CREATE};
    pool_chan_t *t = pool_chan_open(p, "fdt", &sub);
    pool_chan_t *tp = pool_chan_open(p, "fdt", &pub);
    assert_non_null(t);
    assert_non_null(tp);
    errno = 0;
    assert_int_equal(pool_chan_fd(tp), -1); /* a publisher receives nothing */
    assert_int_equal(errno, EBADF);
    fd_loop(p, t, "fdt", POOL_CHAN_TOPIC);
    /* Closing stops the watcher: the ring's watch count goes back to 0. */
    uint32_t qn = (uint32_t)(pool_test_chan(p, "fdq") - p->seg.chans);
    struct pshm_ring *rq = pshm_chan_ring(&p->seg, qn);
    assert_int_equal(pa_load_relaxed(&rq->fd_waiters), 1);
    pool_chan_close(q);
    assert_int_equal(pa_load_relaxed(&rq->fd_waiters), 0);
    pool_chan_close(t);
    pool_chan_close(tp);
    assert_null(pool_test_chan(p, "fdq"));
    assert_null(pool_test_chan(p, "fdt"));
    pool_test_check(p);
}

/* ---- a process killed asleep leaves no sleeper behind ---- */

/* Waits (bounded) until the ring's count of sleeping receivers or senders
 * is n. */
static void wait_count(pa_u32 *count, uint32_t n)
{
    for (int i = 0; i < 10000 && pa_load_relaxed(count) != n; i++)
        usleep(1000);
    assert_int_equal(pa_load_relaxed(count), n);
}

static void test_dead_sleepers_forgotten(void **state)
{
    pool_t *p = *state;
    struct pool_chan_opts o = {POOL_CHAN_QUEUE, 2, POOL_CHAN_CREATE};
    pool_chan_t *ch = pool_chan_open(p, "sleepers", &o);
    assert_non_null(ch);
    struct pshm_ring *r =
        pshm_chan_ring(&p->seg, (uint32_t)(pool_test_chan(p, "sleepers") - p->seg.chans));
    /* A sender asleep on a full queue, killed. */
    for (int i = 0; i < 2; i++) {
        void *m = pool_malloc(p, 64);
        assert_non_null(m);
        assert_int_equal(pool_chan_send(ch, m, 64, 0), 0);
    }
    pid_t kids[3];
    kids[0] = fork();
    assert_true(kids[0] >= 0);
    if (kids[0] == 0) {
        alarm(30);
        pool_chan_t *c = pool_chan_open(p, "sleepers", NULL);
        (void)pool_chan_send(c, pool_malloc(p, 64), 64, -1);
        _exit(1);
    }
    wait_count(&r->send_waiters, 1);
    void *m;
    while ((m = pool_chan_recv(ch, NULL, 0)))
        assert_true(pool_free(p, m, 0));
    /* The dead sender's count stays until its reclaim. */
    kill(kids[0], SIGKILL);
    waitpid(kids[0], NULL, 0);
    /* Two receivers asleep on the empty queue, killed. */
    for (int i = 1; i < 3; i++) {
        kids[i] = fork();
        assert_true(kids[i] >= 0);
        if (kids[i] == 0) {
            alarm(30);
            pool_chan_t *c = pool_chan_open(p, "sleepers", NULL);
            void *got = pool_chan_recv(c, NULL, -1);
            _exit(got ? 2 : 1);
        }
    }
    wait_count(&r->recv_waiters, 2);
    for (int i = 1; i < 3; i++) {
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
    }
    assert_int_equal(pa_load_relaxed(&r->recv_waiters), 2);
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0); /* reclaims the dead */
    assert_int_equal(pa_load_relaxed(&r->recv_waiters), 0);
    assert_int_equal(pa_load_relaxed(&r->send_waiters), 0);
    /* Nothing sleeps now: a send and a receive call no futex. */
    uint64_t wakes = pa_load_relaxed(&r->wakes);
    m = pool_malloc(p, 64);
    assert_int_equal(pool_chan_send(ch, m, 64, 0), 0);
    m = pool_chan_recv(ch, NULL, 0);
    assert_non_null(m);
    assert_true(pool_free(p, m, 0));
    assert_int_equal(pa_load_relaxed(&r->wakes), wakes);
    pool_chan_close(ch);
    pool_test_check(p);
}

/* ---- a storm of deaths ---- */

enum { IDS = 1 << 20 };

struct storm {
    atomic_uint next;           /* ids handed to senders */
    atomic_uchar sent_ok[IDS];  /* pool_chan_send returned 0 */
    atomic_uchar received[IDS]; /* times a receiver got it */
    atomic_uint bad;            /* contents wrong */
};

static void storm_sender(pool_t *p, struct storm *b)
{
    pool_chan_t *ch = pool_chan_open(p, "storm", NULL);
    if (!ch)
        _exit(5);
    for (;;) {
        uint32_t id = atomic_fetch_add(&b->next, 1);
        if (id >= IDS)
            _exit(0);
        size_t n = id % 61 == 0 ? (size_t)(128u << 10) : 8 + id % 500;
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

static void storm_receiver(pool_t *p, struct storm *b)
{
    pool_chan_t *ch = pool_chan_open(p, "storm", NULL);
    if (!ch)
        _exit(5);
    for (;;) {
        uint32_t *m = pool_chan_recv(ch, NULL, 20);
        if (!m)
            continue;
        uint32_t id = m[0];
        size_t n = id % 61 == 0 ? (size_t)(128u << 10) : 8 + id % 500;
        if (id >= IDS || m[n / 4 - 1] != ~id)
            atomic_fetch_add(&b->bad, 1);
        else
            atomic_fetch_add(&b->received[id], 1);
        pool_free(p, m, 0);
    }
}

static pid_t storm_kid(pool_t *p, struct storm *b, int i)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(60);
        if (i % 2 == 0)
            storm_sender(p, b);
        else
            storm_receiver(p, b);
        _exit(0);
    }
    return pid;
}

static void test_storm_of_deaths(void **state)
{
    pool_t *p = *state;
    struct storm *b =
        mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(b != MAP_FAILED);
    /* The parent keeps the channel open, so that it lives through the storm. */
    pool_chan_t *ch = pool_chan_open(p, "storm", NULL);
    assert_non_null(ch);
    enum { KIDS = 6 };
    pid_t kids[KIDS];
    for (int i = 0; i < KIDS; i++)
        kids[i] = storm_kid(p, b, i);
    unsigned seed = (unsigned)time(NULL);
    print_message("seed %u\n", seed);
    int killed_recv = 0, killed_send = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        usleep(2000 + (unsigned)rand_r(&seed) % 20000);
        int i = (int)(rand_r(&seed) % KIDS);
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
        if (i % 2)
            killed_recv++;
        else
            killed_send++;
        pool_stats_t st;
        assert_int_equal(pool_stats(p, &st), 0); /* reclaims the dead */
        kids[i] = storm_kid(p, b, i);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - t0.tv_sec < 4 && atomic_load(&b->next) < IDS);
    for (int i = 0; i < KIDS; i++) {
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
        killed_recv += i % 2;
        killed_send += !(i % 2);
    }
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    /* What is left in the channel comes out. */
    unsigned drained = 0;
    uint32_t *m;
    while ((m = pool_chan_recv(ch, NULL, 0))) {
        uint32_t id = m[0];
        assert_true(id < IDS);
        atomic_fetch_add(&b->received[id], 1);
        assert_true(pool_free(p, m, 0));
        drained++;
    }
    struct pshm_chan *c = pool_test_chan(p, "storm");
    assert_non_null(c);
    uint64_t given_back = pa_load_relaxed(&c->given_back);
    uint64_t handed_on = pa_load_relaxed(&c->handed_on);
    unsigned ids = atomic_load(&b->next) < IDS ? atomic_load(&b->next) : IDS;
    unsigned ok = 0, got = 0, twice = 0, lost = 0;
    for (unsigned i = 0; i < ids; i++) {
        unsigned r = atomic_load(&b->received[i]);
        ok += atomic_load(&b->sent_ok[i]);
        got += r >= 1;
        twice += r > 1;
        lost += atomic_load(&b->sent_ok[i]) && r == 0;
    }
    print_message("%d senders and %d receivers killed; %u sends returned, %u received "
                  "(%u drained at the end), %u twice; %u sent and not received: %llu given "
                  "back by dead receivers' reclaims; %llu handed on for dead senders\n",
                  killed_send, killed_recv, ok, got, drained, twice, lost,
                  (unsigned long long)given_back, (unsigned long long)handed_on);
    assert_int_equal(atomic_load(&b->bad), 0);
    assert_int_equal(twice, 0);
    /* A message whose send returned and that nobody recorded: given back by
     * a dead receiver's reclaim, or received by a receiver killed before
     * it recorded it (one each at most). */
    assert_true(lost <= given_back + (unsigned)killed_recv);
    assert_true(got > 1000);
    pool_chan_close(ch);
    assert_null(pool_test_chan(p, "storm"));
    assert_int_equal(pool_stats(p, &st), 0);
    assert_int_equal(st.blocks_in_transit, 0);
    pool_test_check(p);
    munmap(b, sizeof(*b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_join_and_names, pool_test_setup_64m,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_fifo_between_processes, pool_test_setup_64m,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_fd_for_event_loops, pool_test_setup_64m,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_dead_sleepers_forgotten, pool_test_setup_64m,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_storm_of_deaths, pool_test_setup_64m,
                                        pool_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
