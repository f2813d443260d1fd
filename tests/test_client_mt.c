/* SPDX-License-Identifier: MIT */
/*
 * test_client_mt: threads and forked processes sharing one pool.
 *
 * - the central lists under many threads pushing and popping batches (ABA);
 * - the seed's workload with every block filled with its owner's tag and
 *   checked before it is freed, so a block handed out twice is caught;
 * - forked processes and threads handing blocks to each other by offset and
 *   freeing the other's blocks;
 * - a forked child never sees its parent's cache;
 * - a child killed with blocks in its caches: they come back.
 * Every test ends with the invariant check.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define POOL_TEST_BYTES (64u << 20)
#include "pool_test.h"

/* ---- central lists: ABA stress ---- */

struct aba_arg {
    pshm_seg_t *seg;
    uint32_t cls;
    int rounds;
    uint8_t tag;
    _Atomic int *errors;
};

static void *aba_thread(void *arg)
{
    struct aba_arg *a = arg;
    uint32_t held[PSHM_CACHE_CAP];
    for (int r = 0; r < a->rounds; r++) {
        uint32_t n = pshm_central_pop_raw(a->seg, a->cls, held, a->seg->batch[a->cls]);
        /* Claim every block: write our tag into its second word, wait a
         * little, check nobody else wrote it (a block popped twice). */
        for (uint32_t i = 0; i < n; i++)
            ((volatile uint8_t *)pshm_ptr(a->seg, held[i]))[8] = a->tag;
        for (uint32_t i = 0; i < n; i++)
            if (((volatile uint8_t *)pshm_ptr(a->seg, held[i]))[8] != a->tag)
                atomic_fetch_add(a->errors, 1);
        /* Push back in small, varying batches to shuffle the stack. */
        uint32_t k = 0;
        while (k < n) {
            uint32_t m = 1 + ((uint32_t)r + k) % 3;
            if (m > n - k)
                m = n - k;
            pshm_central_push_raw(a->seg, a->cls, held + k, m);
            k += m;
        }
    }
    return NULL;
}

static void test_central_aba_stress(void **state)
{
    pool_t *p = *state;
    pshm_seg_t *s = &p->seg;
    const uint32_t cls = 2; /* 32-byte blocks */
    uint32_t a, b;
    int sn = pshm_span_claim(s, NULL, 0);
    assert_true(sn >= 0);
    assert_int_equal(pshm_span_commit(s, (uint32_t)sn, 1), 0);
    pshm_span_publish(s, (uint32_t)sn, cls, &a, &b);
    /* Put 256 blocks on the central list. */
    uint32_t step = s->block_size[cls] >> 3;
    uint32_t idx[4];
    uint32_t total = 0;
    for (uint32_t i = a; i + 4 * step <= b && total < 256; i += 4 * step) {
        for (int j = 0; j < 4; j++)
            idx[j] = i + (uint32_t)j * step;
        pshm_central_push_raw(s, cls, idx, 4);
        total += 4;
    }
    _Atomic int errors = 0;
    enum { NT = 8 };
    pthread_t t[NT];
    struct aba_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (struct aba_arg){s, cls, 20000, (uint8_t)(i + 1), &errors};
        assert_int_equal(pthread_create(&t[i], NULL, aba_thread, &args[i]), 0);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&errors), 0);
    /* Every block is back exactly once: drain and count distinct ones. */
    uint8_t *seen = calloc(b - a + 1, 1);
    uint32_t out[PSHM_CACHE_CAP], got = 0, n;
    while ((n = pshm_central_pop_raw(s, cls, out, PSHM_CACHE_CAP)) > 0) {
        for (uint32_t i = 0; i < n; i++) {
            assert_true(out[i] >= a && out[i] < b);
            assert_int_equal(seen[out[i] - a], 0);
            seen[out[i] - a] = 1;
            got++;
        }
    }
    assert_int_equal(got, total);
    assert_int_equal(pa_load_relaxed(&s->cls[cls].uncached_pushed),
                     pa_load_relaxed(&s->cls[cls].uncached_popped));
    free(seen);
    /* The blocks were carved outside the pool's accounting; give the span
     * back to the class as a region so the invariant check holds. */
    pshm_region_push_raw(s, cls, a, b);
}

/* ---- the seed workload, tagged ---- */

static const size_t seed_sizes[10] = {50, 50, 100, 100, 100, 500, 500, 1000, 1000, 2000};

struct seed_arg {
    pool_t *pool;
    size_t size;
    uint8_t tag;
    int rounds;
    int hold; /* blocks held at once, to mix in real reuse across threads */
    _Atomic int *errors;
};

static void *seed_thread(void *arg)
{
    struct seed_arg *a = arg;
    uint8_t *held[64] = {0};
    for (int r = 0; r < a->rounds; r++) {
        uint8_t *b = pool_malloc(a->pool, a->size);
        if (!b) {
            atomic_fetch_add(a->errors, 1);
            continue;
        }
        memset(b, a->tag, a->size);
        int slot = a->hold ? r % a->hold : 0;
        if (a->hold) {
            uint8_t *old = held[slot];
            held[slot] = b;
            b = old;
            if (!b)
                continue;
        }
        for (size_t i = 0; i < a->size; i++) {
            if (b[i] != a->tag) {
                atomic_fetch_add(a->errors, 1);
                break;
            }
        }
        if (!pool_free(a->pool, b, a->size))
            atomic_fetch_add(a->errors, 1);
    }
    for (int i = 0; i < a->hold; i++)
        if (held[i] && !pool_free(a->pool, held[i], a->size))
            atomic_fetch_add(a->errors, 1);
    return NULL;
}

static void run_seed(pool_t *p, int iterations, int rounds, int hold)
{
    _Atomic int errors = 0;
    for (int it = 0; it < iterations; it++) {
        pthread_t t[10];
        struct seed_arg args[10];
        for (int i = 0; i < 10; i++) {
            args[i] =
                (struct seed_arg){p, seed_sizes[i], (uint8_t)(0x10 + i), rounds, hold, &errors};
            assert_int_equal(pthread_create(&t[i], NULL, seed_thread, &args[i]), 0);
        }
        for (int i = 0; i < 10; i++)
            pthread_join(t[i], NULL);
    }
    assert_int_equal(atomic_load(&errors), 0);
}

static void test_seed_workload_tagged_blocks(void **state)
{
    pool_t *p = *state;
    run_seed(p, 20, 2000, 0);
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    const pool_class_stats_t *c64 = pool_test_class(&st, 50);
    assert_int_equal(c64->allocations, 20 * 2 * 2000);
    assert_int_equal(c64->frees, 20 * 2 * 2000);
    assert_int_equal(c64->blocks_in_use, 0);
    /* Burn after reading: all but the first allocation of each thread hit
     * the block that thread freed last. */
    assert_true(c64->same_address >= 20 * 2 * 1999);
}

static void test_seed_workload_tagged_held_blocks(void **state)
{
    pool_t *p = *state;
    /* Hold up to 48 blocks per thread so caches overflow and refill and
     * blocks travel between threads through the central lists. */
    run_seed(p, 10, 3000, 48);
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    assert_int_equal(pool_test_class(&st, 2000)->blocks_in_use, 0);
    assert_true(pool_test_class(&st, 100)->reuses > 0);
}

/* ---- processes sharing one embedded pool ---- */

struct xfer_arg {
    pool_t *pool;
    int wfd; /* send offsets of our blocks here */
    int rfd; /* receive offsets of the peer's blocks here */
    int count;
    uint8_t tag;
    uint8_t peer_tag;
    _Atomic int *errors;
};

static void *xfer_sender(void *arg)
{
    struct xfer_arg *a = arg;
    for (int i = 0; i < a->count; i++) {
        size_t size = (size_t)(16 << (i % 7));
        uint8_t *b = pool_malloc(a->pool, size);
        if (!b) {
            atomic_fetch_add(a->errors, 1);
            uint64_t none = UINT64_MAX;
            if (write(a->wfd, &none, 8) != 8)
                atomic_fetch_add(a->errors, 1);
            continue;
        }
        memset(b, a->tag, size);
        uint64_t off = pool_offset(a->pool, b);
        if (write(a->wfd, &off, 8) != 8)
            atomic_fetch_add(a->errors, 1);
    }
    return NULL;
}

static void *xfer_receiver(void *arg)
{
    struct xfer_arg *a = arg;
    for (int i = 0; i < a->count; i++) {
        uint64_t off;
        if (read(a->rfd, &off, 8) != 8) {
            atomic_fetch_add(a->errors, 1);
            return NULL;
        }
        if (off == UINT64_MAX)
            continue;
        size_t size = (size_t)(16 << (i % 7));
        uint8_t *b = pool_at(a->pool, off);
        if (!b || pool_block_size(a->pool, b) != size) {
            atomic_fetch_add(a->errors, 1);
            continue;
        }
        for (size_t k = 0; k < size; k++)
            if (b[k] != a->peer_tag) {
                atomic_fetch_add(a->errors, 1);
                break;
            }
        if (!pool_free(a->pool, b, size))
            atomic_fetch_add(a->errors, 1);
    }
    return NULL;
}

/* One process: a sender and a receiver thread; returns errors. */
static int xfer_process(pool_t *p, int wfd, int rfd, int count, uint8_t tag, uint8_t peer_tag)
{
    _Atomic int errors = 0;
    struct xfer_arg a = {p, wfd, rfd, count, tag, peer_tag, &errors};
    pthread_t ts, tr;
    pthread_create(&ts, NULL, xfer_sender, &a);
    pthread_create(&tr, NULL, xfer_receiver, &a);
    pthread_join(ts, NULL);
    pthread_join(tr, NULL);
    return atomic_load(&errors);
}

static void test_processes_hand_blocks_by_offset(void **state)
{
    pool_t *p = *state;
    enum { NP = 4, COUNT = 20000 };
    int pipes[NP][2];
    for (int i = 0; i < NP; i++)
        assert_int_equal(pipe(pipes[i]), 0);
    pid_t pids[NP];
    /* Process i sends to pipe i and receives from pipe i-1 (a ring). */
    for (int i = 0; i < NP; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            int prev = (i + NP - 1) % NP;
            int errs = xfer_process(p, pipes[i][1], pipes[prev][0], COUNT, (uint8_t)(0xa0 + i),
                                    (uint8_t)(0xa0 + prev));
            pool_detach(p);
            _exit(errs ? 1 : 0);
        }
    }
    for (int i = 0; i < NP; i++) {
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    for (int i = 0; i < NP; i++) {
        close(pipes[i][0]);
        close(pipes[i][1]);
    }
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    uint64_t allocs = 0, frees = 0;
    for (uint32_t c = 0; c < st.nclasses; c++) {
        allocs += st.cls[c].allocations;
        frees += st.cls[c].frees;
        assert_int_equal(st.cls[c].blocks_in_use, 0);
        assert_int_equal(st.cls[c].blocks_cached, 0);
    }
    assert_int_equal(allocs, NP * COUNT);
    assert_int_equal(frees, NP * COUNT);
    assert_int_equal(st.procs_attached, 0);
}

static void test_fork_child_gets_own_cache(void **state)
{
    pool_t *p = *state;
    void *x = pool_malloc(p, 256);
    assert_non_null(x);
    assert_true(pool_free(p, x, 256)); /* x is on top of the parent's cache */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        void *y = pool_malloc(p, 256);
        uint64_t off = pool_offset(p, y);
        ssize_t w = write(fds[1], &off, 8);
        pool_free(p, y, 256);
        pool_detach(p);
        _exit(w == 8 ? 0 : 1);
    }
    uint64_t child_off;
    assert_int_equal(read(fds[0], &child_off, 8), 8);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(child_off != pool_offset(p, x)); /* not the parent's cached block */
    assert_ptr_equal(pool_malloc(p, 256), x);    /* the parent's cache is intact */
    assert_true(pool_free(p, x, 256));
    close(fds[0]);
    close(fds[1]);
}

static void test_killed_child_caches_are_reclaimed(void **state)
{
    pool_t *p = *state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        void *b[40];
        for (int i = 0; i < 40; i++)
            b[i] = pool_malloc(p, 128);
        for (int i = 0; i < 30; i++) /* 30 cached, 10 left in use */
            pool_free(p, b[i], 128);
        char ok = 1;
        if (write(fds[1], &ok, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    char c;
    assert_int_equal(read(fds[0], &c, 1), 1);
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    assert_int_equal(st.procs_attached, 1);
    assert_int_equal(pool_test_class(&st, 128)->blocks_cached, 30);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_int_equal(pool_stats(p, &st), 0); /* reclaims the dead child */
    assert_int_equal(st.procs_attached, 0);
    assert_int_equal(st.procs_reclaimed, 1);
    assert_int_equal(st.blocks_reclaimed, 30);
    const pool_class_stats_t *k = pool_test_class(&st, 128);
    assert_int_equal(k->blocks_cached, 0);
    /* The 10 it had in use came back too, taken over by the reclaimer (this
     * process) and given back as uncarved blocks. */
    assert_int_equal(k->blocks_central, 30);
    assert_int_equal(k->blocks_free, k->blocks_carved);
    assert_int_equal(k->blocks_in_use, 0);
    assert_int_equal(k->reclaimed_in_use, 10);
    assert_int_equal(st.reclaimed_in_use, 10);
    close(fds[0]);
    close(fds[1]);
}

/* More threads than thread-cache records: the extra threads still allocate
 * and free (uncached, through the central lists), and nothing is lost. */
struct few_arg {
    pool_t *pool;
    pthread_barrier_t *barrier;
    _Atomic int *errors;
};

static void *few_thread(void *arg)
{
    struct few_arg *a = arg;
    pthread_barrier_wait(a->barrier); /* all threads alive at once */
    void *held[32];
    for (int r = 0; r < 200; r++) {
        for (int i = 0; i < 32; i++)
            if ((held[i] = pool_malloc(a->pool, 100)) == NULL)
                atomic_fetch_add(a->errors, 1);
        for (int i = 0; i < 32; i++)
            if (held[i] && !pool_free(a->pool, held[i], 100))
                atomic_fetch_add(a->errors, 1);
    }
    pthread_barrier_wait(a->barrier); /* keep the records taken until all are done */
    return NULL;
}

static void test_threads_beyond_records_still_allocate(void **state)
{
    (void)state;
    pshm_params_t params;
    pshm_params_default(&params, 8u << 20);
    params.max_threads = 2;
    pool_t *p = pool_test_custom(&params);

    enum { NT = 5 };
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, NT);
    _Atomic int errors = 0;
    struct few_arg a = {p, &barrier, &errors};
    pthread_t t[NT];
    for (int i = 0; i < NT; i++)
        assert_int_equal(pthread_create(&t[i], NULL, few_thread, &a), 0);
    for (int i = 0; i < NT; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&barrier);
    assert_int_equal(atomic_load(&errors), 0);
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    const pool_class_stats_t *k = pool_test_class(&st, 100);
    assert_int_equal(k->allocations, NT * 200 * 32);
    assert_int_equal(k->frees, NT * 200 * 32);
    assert_int_equal(k->blocks_in_use, 0);
    assert_true(pa_load_relaxed(&p->seg.hdr->uncached_ops) >= 3 * 200 * 32 * 2);
    pool_test_check(p);
    pool_detach(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_central_aba_stress, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_seed_workload_tagged_blocks, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_seed_workload_tagged_held_blocks, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_processes_hand_blocks_by_offset, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_fork_child_gets_own_cache, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_killed_child_caches_are_reclaimed, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test(test_threads_beyond_records_still_allocate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
