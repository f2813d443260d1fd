/* SPDX-License-Identifier: MIT */
/*
 * test_owners.c: every block has an owner (DESIGN.md invariant 9).
 *
 * Double frees at any distance (same thread, another thread, another
 * process) are refused; handoff and adopt move a block between processes;
 * a dead sender's blocks in transit wait for the receiver, a dead
 * receiver's adopted blocks come back; orphans = keep puts a dead process's
 * blocks in transit; a live free racing the reclaim of the same block: one
 * wins; and processes SIGKILLed at random instructions of refills, flushes,
 * carves and thread exits leave the books exact (pshm_check walks the
 * lists, caches and owner bytes and compares them with the counters).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pool_test.h"

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static uint64_t invalid(pool_t *p)
{
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    return st.invalid_frees;
}

/* ---- double frees ---- */

static void test_double_free_same_thread_at_distance(void **state)
{
    pool_t *p = *state;
    void *a = pool_malloc(p, 64);
    assert_non_null(a);
    assert_true(pool_free(p, a, 64));
    /* Other blocks come and go in between: a is deep in the cache. */
    void *o[100];
    for (int i = 0; i < 100; i++)
        o[i] = pool_malloc(p, 64);
    for (int i = 0; i < 100; i++)
        assert_true(pool_free(p, o[i], 64));
    uint64_t before = invalid(p);
    assert_false(pool_free(p, a, 64));
    assert_false(pool_free(p, a, 0));
    assert_int_equal(invalid(p), before + 2);
    /* Each block is handed out once. */
    void *seen[101];
    for (int i = 0; i < 101; i++) {
        seen[i] = pool_malloc(p, 64);
        for (int j = 0; j < i; j++)
            assert_true(seen[j] != seen[i]);
    }
    for (int i = 0; i < 101; i++)
        assert_true(pool_free(p, seen[i], 64));
}

struct df_arg {
    pool_t *pool;
    void *ptr;
    bool ok;
};

static void *free_in_thread(void *arg)
{
    struct df_arg *a = arg;
    a->ok = pool_free(a->pool, a->ptr, 128);
    return NULL;
}

static void test_double_free_another_thread(void **state)
{
    pool_t *p = *state;
    void *a = pool_malloc(p, 128);
    assert_true(pool_free(p, a, 128));
    uint64_t before = invalid(p);
    struct df_arg arg = {p, a, true};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, free_in_thread, &arg), 0);
    pthread_join(t, NULL);
    assert_false(arg.ok);
    assert_int_equal(invalid(p), before + 1);
    /* And the other way: freed by a thread, freed again here. */
    void *b = pool_malloc(p, 128);
    arg = (struct df_arg){p, b, false};
    assert_int_equal(pthread_create(&t, NULL, free_in_thread, &arg), 0);
    pthread_join(t, NULL);
    assert_true(arg.ok);
    assert_false(pool_free(p, b, 128));
}

static void test_double_free_another_process(void **state)
{
    pool_t *p = *state;
    void *a = pool_malloc(p, 256);
    void *b = pool_malloc(p, 256);
    assert_true(pool_free(p, a, 256));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* a is free already: refused. b is the parent's, in use: a free by
         * another process is allowed, once. */
        int ok = !pool_free(p, a, 256) && pool_free(p, b, 256) && !pool_free(p, b, 256);
        _exit(ok ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_false(pool_free(p, b, 256)); /* the child freed it */
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    assert_int_equal(pool_test_class(&st, 256)->invalid_frees, 3);
    assert_int_equal(pool_test_class(&st, 256)->blocks_in_use, 0);
}

/* ---- handoff and adopt ---- */

static void test_handoff_adopt(void **state)
{
    pool_t *p = *state;
    char *a = pool_malloc(p, 1000);
    memset(a, 0x5a, 1000);
    uint64_t off = pool_handoff(p, a);
    assert_int_not_equal(off, UINT64_MAX);
    assert_int_equal(off, pool_offset(p, a));
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    assert_int_equal(pool_test_class(&st, 1024)->blocks_in_transit, 1);
    assert_int_equal(pool_test_class(&st, 1024)->blocks_in_use, 0);
    assert_int_equal(pool_handoff(p, a), UINT64_MAX); /* not ours any more */
    assert_int_equal(errno, EINVAL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *b = pool_adopt(p, off);
        int ok = b == a && b[999] == 0x5a && pool_adopt(p, off) == NULL && errno == EINVAL &&
                 pool_free(p, b, 1000);
        _exit(ok ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_null(pool_adopt(p, off));
    assert_int_equal(errno, EINVAL);
    assert_null(pool_adopt(p, off + 8)); /* not a block start */
    assert_int_equal(pool_handoff(p, NULL), UINT64_MAX);
    /* A block-aligned offset inside a span's owner tail (where the owner
     * bytes of a 64 B span live) is no block: neither call takes it. */
    {
        const pshm_seg_t *s = &p->seg;
        char *d = pool_malloc(p, 64);
        assert_non_null(d);
        uint32_t k = (uint32_t)pshm_block_class(s, pool_offset(p, d));
        assert_true(s->blocks_per_span[k] < (s->span_mask + 1) / 64); /* has a tail */
        uint64_t span = (pool_offset(p, d) - s->data_off) & ~s->span_mask;
        uint64_t tail = s->data_off + span + (uint64_t)s->blocks_per_span[k] * 64;
        assert_null(pool_adopt(p, tail));
        assert_int_equal(errno, EINVAL);
        assert_int_equal(pool_handoff(p, s->base + tail), UINT64_MAX);
        assert_int_equal(errno, EINVAL);
        assert_int_equal(pool_block_size(p, s->base + tail), 0);
        assert_int_equal(pool_block_size(p, d), 64);
        assert_true(pool_free(p, d, 64));
    }
    /* A block in transit may be freed without adopting it. */
    void *c = pool_malloc(p, 64);
    assert_int_not_equal(pool_handoff(p, c), UINT64_MAX);
    assert_true(pool_free(p, c, 64));
    assert_false(pool_free(p, c, 64));
    assert_int_equal(pool_stats(p, &st), 0);
    for (uint32_t k = 0; k < st.nclasses; k++) {
        assert_int_equal(st.cls[k].blocks_in_transit, 0);
        assert_int_equal(st.cls[k].blocks_in_use, 0);
    }
}

enum { NSENT = 50 };

static void test_sender_dies_with_blocks_in_transit(void **state)
{
    pool_t *p = *state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint64_t offs[NSENT];
        for (int i = 0; i < NSENT; i++) {
            uint8_t *b = pool_malloc(p, 500);
            memset(b, i, 500);
            offs[i] = pool_handoff(p, b);
        }
        full_write(fds[1], offs, sizeof(offs));
        for (;;)
            pause();
    }
    uint64_t offs[NSENT];
    full_read(fds[0], offs, sizeof(offs));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0); /* reclaims the sender */
    assert_int_equal(st.procs_reclaimed, 1);
    assert_int_equal(pool_test_class(&st, 512)->blocks_in_transit, NSENT);
    for (int i = 0; i < NSENT; i++) {
        uint8_t *b = pool_adopt(p, offs[i]);
        assert_non_null(b);
        for (int j = 0; j < 500; j++)
            assert_int_equal(b[j], (uint8_t)i);
        assert_true(pool_free(p, b, 500));
    }
    assert_int_equal(pool_stats(p, &st), 0);
    assert_int_equal(pool_test_class(&st, 512)->blocks_in_transit, 0);
    assert_int_equal(pool_test_class(&st, 512)->blocks_in_use, 0);
    close(fds[0]);
    close(fds[1]);
}

static void test_receiver_dies_after_adopting(void **state)
{
    pool_t *p = *state;
    uint64_t offs[NSENT];
    for (int i = 0; i < NSENT; i++)
        offs[i] = pool_handoff(p, pool_malloc(p, 2000));
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char ok = 1;
        for (int i = 0; i < NSENT; i++)
            ok &= pool_adopt(p, offs[i]) != NULL;
        full_write(fds[1], &ok, 1);
        for (;;)
            pause();
    }
    char ok = 0;
    full_read(fds[0], &ok, 1);
    assert_true(ok);
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    assert_int_equal(pool_test_class(&st, 2048)->blocks_in_use, NSENT);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_int_equal(pool_stats(p, &st), 0);
    assert_int_equal(st.reclaimed_in_use, NSENT);
    assert_int_equal(pool_test_class(&st, 2048)->blocks_in_use, 0);
    assert_int_equal(pool_test_class(&st, 2048)->blocks_in_transit, 0);
    assert_int_equal(pool_test_class(&st, 2048)->blocks_carved,
                     pool_test_class(&st, 2048)->blocks_free);
    close(fds[0]);
    close(fds[1]);
}

static void test_orphans_keep(void **state)
{
    pool_t *p = *state;
    pa_store_relaxed(&p->seg.hdr->orphans_keep, 1); /* relaxed: a setting */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint64_t offs[NSENT];
        for (int i = 0; i < NSENT; i++)
            offs[i] = pool_offset(p, pool_malloc(p, 64)); /* raw offsets, no handoff */
        full_write(fds[1], offs, sizeof(offs));
        for (;;)
            pause();
    }
    uint64_t offs[NSENT];
    full_read(fds[0], offs, sizeof(offs));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    assert_int_equal(st.blocks_orphaned, NSENT);
    assert_int_equal(st.reclaimed_in_use, 0);
    assert_int_equal(pool_test_class(&st, 64)->blocks_in_transit, NSENT);
    /* The receiver of the raw offsets frees them, as it would have. */
    for (int i = 0; i < NSENT; i++)
        assert_true(pool_free(p, pool_at(p, offs[i]), 64));
    assert_int_equal(pool_stats(p, &st), 0);
    assert_int_equal(pool_test_class(&st, 64)->blocks_in_transit, 0);
    assert_int_equal(pool_test_class(&st, 64)->blocks_in_use, 0);
    pa_store_relaxed(&p->seg.hdr->orphans_keep, 0);
    close(fds[0]);
    close(fds[1]);
}

/* ---- a live free racing the reclaim of the same block ---- */

enum { NRACE = 100000 };

struct race_arg {
    pool_t *pool;
    uint64_t *offs;
    pthread_barrier_t *bar;
    atomic_int *halfway; /* set by the free loop when half is freed */
    int freed;
    int slot; /* the dead child's */
};

static void *race_free(void *arg)
{
    struct race_arg *a = arg;
    pthread_barrier_wait(a->bar);
    /* From the end, while the reclaim walks from the start: they meet in
     * the middle. Halfway, the reclaim is let go and this thread gives up
     * its CPU once, so that the reclaim runs while half is left, however
     * loaded the machine (a timed start let the loop finish first). */
    for (int i = NRACE - 1; i >= 0; i--) {
        a->freed += pool_free(a->pool, pool_at(a->pool, a->offs[i]), 32);
        if (i == NRACE / 2) {
            atomic_store(a->halfway, 1); /* seq_cst: read by race_reclaim */
            sched_yield();
        }
    }
    return NULL;
}

static void *race_reclaim(void *arg)
{
    struct race_arg *a = arg;
    pthread_barrier_wait(a->bar);
    while (!atomic_load(a->halfway)) /* seq_cst: set by race_free */
        sched_yield();
    pool_stats_t st;
    pool_stats(a->pool, &st); /* reclaims the dead child */
    return NULL;
}

static void test_reclaim_races_live_free_threads(void **state)
{
    pool_t *p = *state;
    uint64_t *offs = malloc(NRACE * sizeof(uint64_t));
    int hit = 0;
    for (int round = 0; round < 20 && hit < 3; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            for (int i = 0; i < NRACE; i++)
                offs[i] = pool_offset(p, pool_malloc(p, 32));
            full_write(fds[1], offs, NRACE * sizeof(uint64_t));
            for (;;)
                pause();
        }
        full_read(fds[0], offs, NRACE * sizeof(uint64_t));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(fds[0]);
        close(fds[1]);
        pshm_stats_t before;
        pshm_stats(&p->seg, &before); /* no reclaim: the raw snapshot */
        int slot = pshm_proc_find(&p->seg, pid);
        assert_true(slot >= 0);
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, 2);
        atomic_int halfway = 0;
        struct race_arg fa = {p, offs, &bar, &halfway, 0, slot},
                        ra = {p, offs, &bar, &halfway, 0, slot};
        pthread_t tf, tr;
        assert_int_equal(pthread_create(&tf, NULL, race_free, &fa), 0);
        assert_int_equal(pthread_create(&tr, NULL, race_reclaim, &ra), 0);
        pthread_join(tf, NULL);
        pthread_join(tr, NULL);
        pthread_barrier_destroy(&bar);
        pool_stats_t after;
        assert_int_equal(pool_stats(p, &after), 0);
        uint64_t reclaimed = after.reclaimed_in_use - before.reclaimed_in_use;
        /* Exactly one of the two gave each block back. */
        assert_int_equal((uint64_t)fa.freed + reclaimed, NRACE);
        assert_int_equal(pool_test_class(&after, 32)->blocks_in_use, 0);
        pool_test_check(p);
        if (fa.freed > 0 && reclaimed > 0)
            hit++;
        print_message("round %d: %d freed by the live process, %llu by the reclaim\n", round,
                      fa.freed, (unsigned long long)reclaimed);
    }
    free(offs);
    /* The race was really run, not one side winning every time. */
    assert_true(hit > 0);
}

/* ---- SIGKILL at any instruction ---- */

/* A child churning through refills, flushes, carves and thread exits of
 * small-batch classes, killed at a random moment; then the books must be
 * exact. Each churn thread notes, in a page shared with the parent, the
 * offset of the block it is handing off and adopting back: a kill between
 * the two leaves that block in transit (a dead sender's blocks wait for a
 * receiver), and the parent is that receiver. */
struct churn_arg {
    pool_t *pool;
    _Atomic uint64_t *passing; /* shared with the parent; 0: none */
};

static void *churn(void *arg)
{
    struct churn_arg *a = arg;
    pool_t *p = a->pool;
    static const size_t sizes[] = {24, 64, 600, 4000, 20000, 32768};
    void *held[200] = {0};
    unsigned seed = (unsigned)(uintptr_t)&held;
    for (int r = 0; r < 1000000; r++) {
        int k = (int)(rand_r(&seed) % 200);
        size_t sz = sizes[rand_r(&seed) % 6];
        if (held[k]) {
            pool_free(p, held[k], 0);
            held[k] = NULL;
        } else {
            held[k] = pool_malloc(p, sz);
        }
        if (r % 5000 == 4999) { /* sometimes hand one off and take it back */
            void *b = pool_malloc(p, 128);
            /* seq_cst: noted before the handoff, cleared after the adopt;
             * the parent reads it after this process is dead. */
            atomic_store(a->passing, (uint64_t)((char *)b - (char *)p->seg.base));
            void *c = pool_adopt(p, pool_handoff(p, b));
            atomic_store(a->passing, 0);
            pool_free(p, c, 128);
        }
    }
    return NULL;
}

static void *churn_short(void *arg)
{
    pool_t *p = arg;
    void *b[300];
    for (int i = 0; i < 300; i++)
        b[i] = pool_malloc(p, 32768);
    for (int i = 0; i < 300; i++)
        pool_free(p, b[i], 32768);
    return NULL; /* thread exit: its cache goes back */
}

static void test_sigkill_at_random_instructions(void **state)
{
    pool_t *p = *state;
    unsigned seed = (unsigned)getpid();
    uint64_t kills = 0, in_use_back = 0, adopted = 0;
    _Atomic uint64_t *passing =
        mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(passing != MAP_FAILED);
    for (int round = 0; round < 60; round++) {
        atomic_store(&passing[0], 0);
        atomic_store(&passing[1], 0);
        int ready[2];
        assert_int_equal(pipe(ready), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* Attached (a slot of its own) before the parent starts the
             * clock: a child killed before it ever touched the pool would
             * make a round that tests nothing. */
            close(ready[0]);
            pool_free(p, pool_malloc(p, 64), 64);
            if (write(ready[1], "a", 1) != 1)
                _exit(3);
            pthread_t t[3];
            struct churn_arg ca[2] = {{p, &passing[0]}, {p, &passing[1]}};
            pthread_create(&t[0], NULL, churn, &ca[0]);
            pthread_create(&t[1], NULL, churn, &ca[1]);
            for (;;) {
                pthread_create(&t[2], NULL, churn_short, p);
                pthread_join(t[2], NULL);
            }
        }
        close(ready[1]);
        char ch;
        assert_int_equal(read(ready[0], &ch, 1), 1);
        close(ready[0]);
        assert_true(pshm_proc_find(&p->seg, pid) >= 0);
        pshm_stats_t before;
        pshm_stats(&p->seg, &before); /* no reclaim: the raw snapshot */
        sleep_us(2000 + (long)(rand_r(&seed) % 30000));
        kill(pid, SIGKILL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        kills++;
        pool_stats_t st;
        assert_int_equal(pool_stats(p, &st), 0); /* reclaims it */
        /* It was reclaimed, by this call, and its slot is gone. */
        assert_int_equal(st.procs_reclaimed, before.procs_reclaimed + 1);
        assert_int_equal(pshm_proc_find(&p->seg, pid), -ENOENT);
        in_use_back = st.reclaimed_in_use;
        /* A block the child had handed off and not yet adopted back waits
         * in transit; adopt it as its receiver. A noted block the kill
         * caught before its handoff or after its adopt is not in transit,
         * and pool_adopt() refuses it. */
        uint64_t waiting = (uint64_t)pool_test_class(&st, 128)->blocks_in_transit, got = 0;
        for (int i = 0; i < 2; i++) {
            uint64_t off = atomic_load(&passing[i]);
            void *b = off ? pool_adopt(p, off) : NULL;
            if (b) {
                assert_true(pool_free(p, b, 128));
                got++;
            }
        }
        assert_int_equal(got, waiting);
        adopted += got;
        assert_int_equal(pool_stats(p, &st), 0);
        for (uint32_t c = 0; c < st.nclasses; c++) {
            assert_int_equal(st.cls[c].blocks_in_use, 0);
            assert_int_equal(st.cls[c].blocks_in_transit, 0);
        }
        pool_test_check(p); /* counters == lists + caches + owner bytes */
    }
    print_message("%llu kills, %llu in-use blocks given back, %llu adopted from transit, 0 lost\n",
                  (unsigned long long)kills, (unsigned long long)in_use_back,
                  (unsigned long long)adopted);
    munmap((void *)passing, 4096);
}

/* How long the reclaim of a dead process takes on a 1 GiB segment, with
 * half of it in 64 B blocks the process still had in use (the owner walk's
 * worst case is many small blocks). Prints the figure; a benchmark, not a
 * timed assertion. */
static void test_reclaim_time_1gib(void **state)
{
    (void)state;
    pool_t *p = pool_open_embedded((size_t)1 << 30);
    assert_non_null(p);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
#ifndef POOL_RECLAIM_BENCH_MB
#define POOL_RECLAIM_BENCH_MB 512
#endif
    const long n = ((long)POOL_RECLAIM_BENCH_MB << 20) / 64;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        long got = 0;
        for (long i = 0; i < n; i++)
            got += pool_malloc(p, 64) != NULL;
        full_write(fds[1], &got, sizeof(got));
        for (;;)
            pause();
    }
    long got = 0;
    full_read(fds[0], &got, sizeof(got));
    assert_int_equal(got, n);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(pool_reclaim_dead_(p), 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    assert_int_equal(st.reclaimed_in_use, (uint64_t)n);
    print_message("reclaimed a dead process's %ld in-use blocks (%d MiB of 64 B) in a 1 GiB "
                  "segment in %.1f ms\n",
                  n, POOL_RECLAIM_BENCH_MB, ms);
    pool_test_check(p);
    pool_detach(p);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_double_free_same_thread_at_distance, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_double_free_another_thread, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_double_free_another_process, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_handoff_adopt, pool_test_setup, pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_sender_dies_with_blocks_in_transit, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_receiver_dies_after_adopting, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_orphans_keep, pool_test_setup, pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_reclaim_races_live_free_threads, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_at_random_instructions, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test(test_reclaim_time_1gib),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
