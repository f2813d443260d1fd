/* SPDX-License-Identifier: MIT */
/*
 * test_preload: libpoolclient-preload.so's malloc family, run under it
 * (ctest sets LD_PRELOAD). This program links libpoolclient too and calls
 * pool_* itself: it gets the preload's copy, so pool_default() is the pool
 * malloc() serves from, and pool_offset() tells which allocator a pointer
 * came from.
 *
 * Modes: with no argument, the cmocka suite; `--report`, one line for the
 * environment
 * settings, run again through execve with them: "64:A 2000:B", A and B 1
 * when malloc(64) and malloc(2000) came from the pool.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "poolclient.h"

static bool in_pool(const void *p)
{
    pool_t *pool = pool_default();
    return pool && pool_offset(pool, p) != UINT64_MAX;
}

static void fill(void *p, size_t n, int seed)
{
    for (size_t i = 0; i < n; i++)
        ((unsigned char *)p)[i] = (unsigned char)(seed + (int)i * 7);
}

static bool filled(const void *p, size_t n, int seed)
{
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != (unsigned char)(seed + (int)i * 7))
            return false;
    return true;
}

static void test_preload_small_from_pool_large_from_glibc(void **state)
{
    (void)state;
    pool_t *pool = pool_default();
    assert_non_null(pool);
    size_t max = pool_max_size(pool);
    assert_true(max >= 4096);
    if (!getenv("LD_PRELOAD") || !strstr(getenv("LD_PRELOAD"), "poolclient-preload"))
        fail_msg("run under LD_PRELOAD=libpoolclient-preload.so (ctest does)");
    void *a = malloc(64), *b = malloc(max), *c = malloc(max + 1), *z = malloc(0);
    assert_true(in_pool(a));
    assert_true(in_pool(b));
    assert_false(in_pool(c));
    assert_non_null(z); /* malloc(0): a unique pointer */
    assert_true(in_pool(z));
    assert_ptr_not_equal(z, a);
    fill(a, 64, 1);
    fill(b, max, 2);
    fill(c, max + 1, 3);
    assert_true(filled(a, 64, 1) && filled(b, max, 2) && filled(c, max + 1, 3));
    assert_true(malloc_usable_size(a) >= 64);
    assert_true(malloc_usable_size(c) >= max + 1);
    assert_int_equal(malloc_usable_size(NULL), 0);
    assert_int_equal((uintptr_t)a % 16, 0); /* glibc's alignment for 16 B and up */
    free(a);
    free(b);
    free(c);
    free(z);
    free(NULL);
    /* Burn after reading: the same block again. */
    void *d = malloc(64);
    assert_ptr_equal(d, a);
    free(d);
}

static void test_preload_calloc_zeroes_and_overflows(void **state)
{
    (void)state;
    unsigned char *a = malloc(200);
    memset(a, 0xff, 200);
    free(a);
    unsigned char *b = calloc(10, 20); /* the same class: the same block */
    assert_ptr_equal(b, a);
    for (int i = 0; i < 200; i++)
        assert_int_equal(b[i], 0);
    free(b);
    errno = 0;
    assert_null(calloc(SIZE_MAX / 2, 3));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(reallocarray(NULL, SIZE_MAX / 4, 8));
    assert_int_equal(errno, ENOMEM);
    void *c = calloc(0, 8);
    assert_non_null(c);
    free(c);
    char *r = reallocarray(NULL, 10, 10);
    assert_true(in_pool(r));
    free(r);
}

static void test_preload_realloc_across_allocators(void **state)
{
    (void)state;
    size_t max = pool_max_size(pool_default());
    char *p = realloc(NULL, 100); /* realloc(NULL) is malloc */
    assert_true(in_pool(p));
    fill(p, 100, 4);
    size_t block = malloc_usable_size(p);
    assert_true(block >= 100 && block < 128);
    char *q = realloc(p, block); /* still fits its block (112 B) */
    assert_ptr_equal(q, p);
    q = realloc(q, 3000); /* pool to pool */
    assert_true(in_pool(q));
    assert_true(filled(q, 100, 4));
    fill(q, 3000, 5);
    char *g = realloc(q, max * 2); /* pool to glibc: the whole block copied */
    assert_false(in_pool(g));
    assert_true(filled(g, 3000, 5));
    fill(g, max * 2, 6);
    char *g2 = realloc(g, max * 3); /* glibc to glibc */
    assert_false(in_pool(g2));
    assert_true(filled(g2, max * 2, 6));
    char *s = realloc(g2, 10); /* glibc stays glibc: it owns the block */
    assert_true(filled(s, 10, 6));
    free(s);
    char *t = malloc(4000);
    fill(t, 4000, 7);
    char *u = realloc(t, 30); /* a big shrink moves to a small block */
    assert_true(in_pool(u));
    assert_true(malloc_usable_size(u) < 4000);
    assert_true(filled(u, 30, 7));
    assert_null(realloc(u, 0)); /* glibc: frees, NULL */
    errno = 0;
    assert_null(reallocarray(malloc(8), SIZE_MAX, 2));
    assert_int_equal(errno, ENOMEM);
}

static void test_preload_aligned_family(void **state)
{
    (void)state;
    void *p = (void *)1;
    assert_int_equal(posix_memalign(&p, 3, 16), EINVAL);
    assert_int_equal(posix_memalign(&p, 4, 16), EINVAL); /* under sizeof(void *) */
    assert_int_equal(posix_memalign(&p, 0, 16), EINVAL);
    assert_ptr_equal(p, (void *)1); /* untouched on error */
    errno = 0;
    assert_int_equal(posix_memalign(&p, 64, 10), 0);
    assert_int_equal(errno, 0);
    assert_true(in_pool(p));
    assert_int_equal((uintptr_t)p % 64, 0);
    free(p);
    assert_int_equal(posix_memalign(&p, 4096, 100), 0);
    assert_true(in_pool(p));
    assert_int_equal((uintptr_t)p % 4096, 0);
    free(p);
    assert_int_equal(posix_memalign(&p, 8192, 100), 0); /* beyond a pool's guarantee */
    assert_false(in_pool(p));
    assert_int_equal((uintptr_t)p % 8192, 0);
    free(p);
    assert_int_equal(posix_memalign(&p, 16, 0), 0);
    free(p);
    errno = 0;
    assert_int_equal(posix_memalign(&p, 64, SIZE_MAX - 100), ENOMEM);
    assert_int_equal(errno, 0);
    void *a = aligned_alloc(256, 256);
    assert_true(in_pool(a));
    assert_int_equal((uintptr_t)a % 256, 0);
    free(a);
    void *m = memalign(32, 1);
    assert_int_equal((uintptr_t)m % 32, 0);
    free(m);
    long page = sysconf(_SC_PAGESIZE);
    void *v = valloc(10);
    assert_int_equal((uintptr_t)v % (uintptr_t)page, 0);
    free(v);
    void *pv = pvalloc(0);
    assert_non_null(pv);
    assert_int_equal((uintptr_t)pv % (uintptr_t)page, 0);
    assert_true(malloc_usable_size(pv) >= (size_t)page);
    free(pv);
    errno = 0;
    assert_null(pvalloc(SIZE_MAX - 10));
    assert_int_equal(errno, ENOMEM);
}

static uint64_t invalid_frees(void)
{
    pool_stats_t st;
    assert_int_equal(pool_stats(pool_default(), &st), 0);
    return st.invalid_frees;
}

static void test_preload_double_free_is_ignored_and_counted(void **state)
{
    (void)state;
    uint64_t before = invalid_frees();
    char *p = malloc(48);
    char *q = malloc(48);
    free(p);
    free(q);
    free(p); /* glibc would abort; the pool refuses and counts */
    assert_int_equal(invalid_frees(), before + 1);
    free(p + 8); /* inside a block: refused, nothing changes */
    char *a = malloc(48), *b = malloc(48);
    assert_ptr_not_equal(a, b); /* the double free did not put p in twice */
    free(a);
    free(b);
}

static void *thread_body(void *arg)
{
    uintptr_t seed = (uintptr_t)arg;
    void *keep[64];
    for (int round = 0; round < 2000; round++) {
        for (int i = 0; i < 64; i++) {
            keep[i] = malloc((size_t)(8 + (seed * 31 + (uintptr_t)i * 97) % 3000));
            if (!keep[i])
                return (void *)1;
            memset(keep[i], (int)seed, 8);
        }
        for (int i = 0; i < 64; i++)
            free(keep[i]);
    }
    /* Left for another thread to free, after this one exits. */
    return malloc(100);
}

static void test_preload_threads_that_exit(void **state)
{
    (void)state;
    for (int wave = 0; wave < 4; wave++) {
        pthread_t t[8];
        for (uintptr_t i = 0; i < 8; i++)
            assert_int_equal(pthread_create(&t[i], NULL, thread_body, (void *)(i + 1)), 0);
        for (int i = 0; i < 8; i++) {
            void *r;
            assert_int_equal(pthread_join(t[i], &r), 0);
            assert_true(r != (void *)1);
            assert_true(in_pool(r));
            free(r);
        }
    }
}

static void test_preload_fork_child_has_its_own_heap(void **state)
{
    (void)state;
    char *mine = malloc(32);
    strcpy(mine, "parent's");
    char *big = malloc(1 << 20); /* glibc's */
    strcpy(big, "parent's big");
    char *other = malloc(40);
    strcpy(other, "other");
    for (int round = 0; round < 3; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* The inherited blocks are readable and private. */
            if (strcmp(mine, "parent's") != 0 || strcmp(big, "parent's big") != 0)
                _exit(10);
            strcpy(mine, "child's!");
            free(mine); /* an inherited block: kept, never reused */
            free(big);
            char *c = malloc(32);
            if (!c || c == mine || !in_pool(mine))
                _exit(11);
            strcpy(c, "child");
            char *d = realloc(other, 5000); /* from the parent's image */
            if (!d || strcmp(d, "other") != 0)
                _exit(12);
            for (int i = 0; i < 10000; i++) {
                void *x = malloc((size_t)(i % 5000) + 1);
                if (!x)
                    _exit(13);
                free(x);
            }
            free(c);
            free(d);
            if (round == 2) {
                /* A child that execs: the image and its own pool go away. */
                execl("/bin/sh", "sh", "-c", "exit 0", (char *)NULL);
                _exit(14);
            }
            _exit(0);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        /* The child's writes and frees never reached us. */
        assert_string_equal(mine, "parent's");
        char *again = malloc(32);
        assert_ptr_not_equal(again, mine);
        free(again);
    }
    assert_string_equal(other, "other");
    free(mine);
    free(big);
    free(other);
}

/* Runs this program again with `env` added, in --report mode. */
static void run_report(const char *env, char *out, size_t len)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        putenv((char *)env);
        execl("/proc/self/exe", "test_preload", "--report", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], out, len - 1);
    close(fds[0]);
    out[n > 0 ? n : 0] = '\0';
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_preload_environment(void **state)
{
    (void)state;
    char out[128];
    run_report("POOLD_PRELOAD=off", out, sizeof(out));
    assert_string_equal(out, "64:0 2000:0\n"); /* a pass-through */
    run_report("POOLD_PRELOAD_MAX=1k", out, sizeof(out));
    assert_string_equal(out, "64:1 2000:0\n"); /* 64 B on the pool, 2000 B not */
    run_report("POOLD_PRELOAD=on", out, sizeof(out));
    assert_string_equal(out, "64:1 2000:1\n");
}

static int report(void)
{
    void *a = malloc(64), *b = malloc(2000);
    printf("64:%d 2000:%d\n", in_pool(a), in_pool(b));
    free(a);
    free(b);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--report") == 0)
        return report();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preload_small_from_pool_large_from_glibc),
        cmocka_unit_test(test_preload_calloc_zeroes_and_overflows),
        cmocka_unit_test(test_preload_realloc_across_allocators),
        cmocka_unit_test(test_preload_aligned_family),
        cmocka_unit_test(test_preload_double_free_is_ignored_and_counted),
        cmocka_unit_test(test_preload_threads_that_exit),
        cmocka_unit_test(test_preload_fork_child_has_its_own_heap),
        cmocka_unit_test(test_preload_environment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
