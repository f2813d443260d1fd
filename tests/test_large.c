/* SPDX-License-Identifier: MIT */
/*
 * test_large.c: blocks above the largest class, runs of whole spans from
 * the segment's pool of free spans.
 *
 * Every size from 1 B to max_block is served; memory a large block gave
 * back serves any class (a pool filled with 1 MiB blocks and emptied serves
 * 95% of its bytes again as 64 B or 4 KiB blocks); free neighbours
 * coalesce, so a mix of sizes does not fragment the pool; a 16 MiB block
 * handed off crosses to another process intact; a process killed holding
 * large blocks has them reclaimed (or put in transit with orphans = keep);
 * bad pointers and double frees are refused. Every test ends with
 * pshm_check(), which walks the span map and the large books.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool_test.h"

static int setup_128m(void **state)
{
    pool_t *p = pool_open_embedded(128u << 20);
    if (!p)
        return -1;
    *state = p;
    return 0;
}

static pshm_large_stats_t large(pool_t *p)
{
    pshm_large_stats_t L;
    pshm_large_totals(&p->seg, &L);
    return L;
}

static void test_every_size(void **state)
{
    pool_t *p = *state;
    size_t maxb = pool_max_size(p);
    assert_true(maxb >= (16u << 20));
    assert_int_equal(maxb, pa_load_relaxed(&p->seg.hdr->max_block));
    size_t sizes[] = {1,      8,      64,      4096,          65536,     65537,
                      100000, 262144, 1 << 20, (3 << 20) + 5, 16u << 20, maxb};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        unsigned char *b = pool_malloc(p, n);
        assert_non_null(b);
        assert_true(pool_block_size(p, b) >= n);
        memset(b, (int)i, n);
        assert_int_equal(b[n - 1], (unsigned char)i);
        assert_true(pool_free(p, b, n));
        assert_false(pool_free(p, b, n)); /* a double free is refused */
    }
    errno = 0;
    assert_null(pool_malloc(p, maxb + 1));
    assert_int_equal(errno, EINVAL);
    pshm_large_stats_t L = large(p);
    assert_int_equal(L.in_use, 0);
    assert_true(L.allocs >= 6);
    assert_int_equal(L.allocs, L.frees);
    pool_test_check(p);
}

static void test_bad_pointers(void **state)
{
    pool_t *p = *state;
    char *b = pool_malloc(p, 1 << 20);
    assert_non_null(b);
    assert_false(pool_free(p, b + 8, 0));     /* not a block start */
    assert_false(pool_free(p, b + 65536, 0)); /* its second span */
    assert_false(pool_free(p, b, 64));        /* a small size */
    assert_false(pool_free(p, b, 4u << 20));  /* another length */
    assert_int_equal(pool_handoff(p, b + 65536), UINT64_MAX);
    assert_int_equal(pool_block_size(p, b + 65536), 0);
    assert_true(pool_free(p, b, (1 << 20) - 100)); /* any size of its length */
    assert_false(pool_free(p, b, 0));
    assert_null(pool_adopt(p, pool_offset(p, b)));
    /* In transit: freed without adopting it, as a small block can be. */
    char *c = pool_malloc(p, 300000);
    uint64_t off = pool_handoff(p, c);
    assert_int_not_equal(off, UINT64_MAX);
    assert_int_equal(pool_handoff(p, c), UINT64_MAX); /* not ours any more */
    assert_true(pool_free(p, c, 0));
    assert_int_equal(large(p).in_transit, 0);
    pool_test_check(p);
}

/* Fill the pool with blocks of `size` until it refuses one: how many bytes
 * of blocks it served; the blocks are freed again. */
static uint64_t fill_and_empty(pool_t *p, size_t size)
{
    size_t cap = 1u << 21, n = 0;
    void **v = malloc(cap * sizeof(*v));
    assert_non_null(v);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            v = realloc(v, cap * sizeof(*v));
            assert_non_null(v);
        }
        void *b = pool_malloc(p, size);
        if (!b)
            break;
        v[n++] = b;
    }
    assert_int_equal(errno, ENOMEM);
    for (size_t i = 0; i < n; i++)
        assert_true(pool_free(p, v[i], size));
    free(v);
    return (uint64_t)n * size;
}

static void test_memory_moves_from_large_to_classes(void **state)
{
    pool_t *p = *state;
    uint64_t data = p->seg.data_bytes;
    uint64_t big = fill_and_empty(p, 1u << 20);
    assert_true(big * 100 >= data * 95);
    /* The same spans serve 4 KiB blocks, then 1 MiB blocks again, then 64 B. */
    assert_true(fill_and_empty(p, 4096) * 100 >= data * 95);
    pool_test_check(p);
}

static void test_memory_moves_to_64b(void **state)
{
    pool_t *p = *state;
    uint64_t data = p->seg.data_bytes;
    assert_true(fill_and_empty(p, 1u << 20) * 100 >= data * 95);
    assert_true(fill_and_empty(p, 64) * 100 >= data * 95);
    pool_test_check(p);
}

/* The other way: memory freed as small blocks serves large ones and other
 * classes (the empty spans are swept back to the free spans). */
static void test_memory_moves_from_64b(void **state)
{
    pool_t *p = *state;
    uint64_t data = p->seg.data_bytes;
    assert_true(fill_and_empty(p, 64) * 100 >= data * 95);
    assert_true(fill_and_empty(p, 4096) * 100 >= data * 95);
    assert_true(fill_and_empty(p, 64) * 100 >= data * 95);
    assert_true(fill_and_empty(p, 1u << 20) * 100 >= data * 95);
    pool_test_check(p);
}

static void test_free_neighbours_coalesce(void **state)
{
    pool_t *p = *state;
    enum { SLOTS = 64 };
    void *v[SLOTS] = {0};
    size_t sz[SLOTS] = {0};
    uint32_t seed = 12345;
    for (int op = 0; op < 20000; op++) {
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 8) % SLOTS);
        if (v[i]) {
            assert_true(pool_free(p, v[i], sz[i]));
            v[i] = NULL;
        } else {
            sz[i] = 65537 + (size_t)((seed >> 3) % (3u << 20));
            v[i] = pool_malloc(p, sz[i]); /* NULL when full: fine */
            if (v[i])
                memset(v[i], i, 64);
        }
    }
    for (int i = 0; i < SLOTS; i++)
        if (v[i])
            assert_true(pool_free(p, v[i], sz[i]));
    /* Nothing left in pieces: the largest block fits, and the pool fills
     * with the largest blocks as a fresh one does. */
    size_t maxb = pool_max_size(p);
    uint64_t got = fill_and_empty(p, maxb);
    assert_int_equal(got / maxb, p->seg.data_bytes / maxb);
    assert_int_equal(large(p).in_use, 0);
    pool_test_check(p);
}

static void test_handoff_16mib_to_another_process(void **state)
{
    pool_t *p = *state;
    size_t n = 16u << 20;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint32_t *b = pool_malloc(p, n);
        if (!b)
            _exit(2);
        for (size_t i = 0; i < n / 4; i++)
            b[i] = (uint32_t)(i * 2654435761u);
        uint64_t off = pool_handoff(p, b);
        full_write(fds[1], &off, sizeof(off));
        _exit(off == UINT64_MAX ? 4 : 0);
    }
    uint64_t off = 0;
    full_read(fds[0], &off, sizeof(off));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_not_equal(off, UINT64_MAX);
    uint32_t *b = pool_adopt(p, off);
    assert_non_null(b);
    for (size_t i = 0; i < n / 4; i++)
        if (b[i] != (uint32_t)(i * 2654435761u))
            fail_msg("word %zu of the adopted block differs", i);
    assert_null(pool_adopt(p, off)); /* adopted once */
    assert_true(pool_free(p, b, n));
    pshm_large_stats_t L = large(p);
    assert_int_equal(L.in_use, 0);
    assert_int_equal(L.in_transit, 0);
    close(fds[0]);
    close(fds[1]);
    pool_test_check(p);
}

enum { NHELD = 6 };

/* A child allocates NHELD large blocks (one handed off), says so, waits to
 * be killed. */
static pid_t child_holding(pool_t *p, uint64_t offs[NHELD])
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint64_t o[NHELD];
        for (int i = 0; i < NHELD; i++) {
            char *b = pool_malloc(p, (size_t)(i + 1) << 19);
            if (!b)
                _exit(2);
            memset(b, 0x40 + i, (size_t)(i + 1) << 19);
            o[i] = i == 0 ? pool_handoff(p, b) : pool_offset(p, b);
        }
        full_write(fds[1], o, sizeof(o));
        for (;;)
            pause();
    }
    full_read(fds[0], offs, NHELD * sizeof(uint64_t));
    close(fds[0]);
    close(fds[1]);
    return pid;
}

static void test_killed_holding_large_blocks(void **state)
{
    pool_t *p = *state;
    uint64_t offs[NHELD];
    pid_t pid = child_holding(p, offs);
    assert_int_equal(large(p).in_use, NHELD - 1);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0); /* reclaims the child */
    assert_int_equal(st.procs_reclaimed, 1);
    pshm_large_stats_t L = large(p);
    assert_int_equal(L.in_use, 0);
    assert_int_equal(L.reclaimed, NHELD - 1);
    assert_int_equal(L.in_transit, 1); /* the handed-off one waits for its receiver */
    char *b = pool_adopt(p, offs[0]);
    assert_non_null(b);
    assert_int_equal(b[(1 << 19) - 1], 0x40);
    assert_true(pool_free(p, b, 0));
    assert_int_equal(large(p).in_transit, 0);
    pool_test_check(p);
    /* Everything came back: the pool fills with 1 MiB blocks as before. */
    assert_true(fill_and_empty(p, 1u << 20) * 100 >= p->seg.data_bytes * 95);
}

static void test_killed_with_orphans_kept(void **state)
{
    pool_t *p = *state;
    pa_store_relaxed(&p->seg.hdr->orphans_keep, 1); /* relaxed: a setting */
    uint64_t offs[NHELD];
    pid_t pid = child_holding(p, offs);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    assert_int_equal(large(p).in_transit, NHELD);
    pool_test_check(p);
    /* The receivers of the raw offsets free them, as they would have. */
    for (int i = 0; i < NHELD; i++) {
        char *b = pool_at(p, offs[i]);
        assert_int_equal(b[0], 0x40 + i);
        assert_true(pool_free(p, b, 0));
    }
    pa_store_relaxed(&p->seg.hdr->orphans_keep, 0);
    pshm_large_stats_t L = large(p);
    assert_int_equal(L.in_use, 0);
    assert_int_equal(L.in_transit, 0);
    pool_test_check(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_size, setup_128m, pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_bad_pointers, setup_128m, pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_memory_moves_from_large_to_classes, setup_128m,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_memory_moves_to_64b, setup_128m, pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_memory_moves_from_64b, setup_128m, pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_free_neighbours_coalesce, setup_128m,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_handoff_16mib_to_another_process, setup_128m,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_killed_holding_large_blocks, setup_128m,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_killed_with_orphans_kept, setup_128m,
                                        pool_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
