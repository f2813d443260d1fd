/* SPDX-License-Identifier: MIT */
/*
 * test_client_malloc: the single-threaded behaviour of libpoolclient: class
 * mapping, burn-after-reading address reuse, exhaustion, invalid frees,
 * offsets, and that thread exit and detach give every cached block back.
 * Every test ends with the invariant check (free + cached + in use == carved).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define POOL_TEST_BYTES (16u << 20)
#include "pool_test.h"

/* The default classes ("fine"): 8, 16, 32, 48, 64, then four per
 * doubling: a size above 64 between b and 2b (b a power of two) gets the
 * next multiple of b / 4. */
static size_t fine_class(size_t size)
{
    if (size <= 8)
        return 8;
    if (size <= 64)
        return (size + 15) / 16 * 16;
    size_t b = 64;
    while (b * 2 < size)
        b *= 2;
    return (size + b / 4 - 1) / (b / 4) * (b / 4);
}

static void test_class_mapping_default(void **state)
{
    pool_t *p = *state;
    size_t sizes[] = {0,    1,    7,    8,    9,    16,   17,   24,    33,    48,
                      49,   50,   64,   65,   80,   81,   100,  128,   129,   500,
                      1000, 1024, 1025, 2000, 4096, 4097, 5121, 40961, 65535, 65536};
    /* Above the largest class (65536) come large blocks, up to max_block. */
    assert_int_equal(pool_max_size(p), pa_load_relaxed(&p->seg.hdr->max_block));
    assert_true(pool_max_size(p) > 65536);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t want = fine_class(sizes[i]);
        void *b = pool_malloc(p, sizes[i]);
        assert_non_null(b);
        assert_int_equal(pool_block_size(p, b), want);
        /* aligned to the largest power of two dividing the block size, up
         * to a page; to 16 from 16 bytes on (malloc's alignment) */
        size_t align = want & (~want + 1);
        assert_int_equal((uintptr_t)b % (align < 4096 ? align : 4096), 0);
        if (want >= 16)
            assert_int_equal((uintptr_t)b % 16, 0);
        memset(b, 0xab, sizes[i]);
        assert_true(pool_free(p, b, sizes[i]));
    }
}

/* Blocks of classes that are not powers of two, freed with their size
 * beyond a span's first block: accepted by the inline check; a pointer
 * inside a block (8, 16, 24 ... bytes past its start) refused, with its
 * size or without, and nothing changed. */
static void test_free_non_power_of_two_classes(void **state)
{
    pool_t *p = *state;
    static const size_t sizes[] = {48, 80, 112, 320, 1792, 40960};
    enum { N = 100 };
    static char *held[N];
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t sz = sizes[i];
        for (int k = 0; k < N; k++) {
            assert_non_null(held[k] = pool_malloc(p, sz));
            assert_int_equal(pool_block_size(p, held[k]), sz);
            memset(held[k], k, sz);
        }
        for (int k = 0; k < N; k++)
            for (size_t in = 8; in < sz && in <= 256; in += 8) {
                assert_false(pool_free(p, held[k] + in, sz));
                assert_false(pool_free(p, held[k] + in, 0));
                assert_false(pool_free(p, held[k] + in - 4, sz));
            }
        for (int k = 0; k < N; k++) {
            assert_int_equal((unsigned char)held[k][sz - 1], (unsigned char)k);
            assert_true(pool_free(p, held[k], sz));
        }
        for (int k = 0; k < N; k++)
            assert_false(pool_free(p, held[k], sz)); /* double free */
    }
}

static void test_class_mapping_too_big(void **state)
{
    pool_t *p = *state;
    errno = 0;
    assert_null(pool_malloc(p, pool_max_size(p) + 1));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(pool_malloc(p, SIZE_MAX));
    assert_int_equal(errno, EINVAL);
    assert_null(pool_malloc(NULL, 8));
}

static void test_malloc_burn_after_reading_same_address(void **state)
{
    pool_t *p = *state;
    size_t sizes[] = {50, 100, 500, 1000, 2000};
    for (size_t s = 0; s < 5; s++) {
        void *first = pool_malloc(p, sizes[s]);
        assert_non_null(first);
        memset(first, 1, sizes[s]);
        assert_true(pool_free(p, first, sizes[s]));
        for (int i = 0; i < 2000; i++) {
            void *b = pool_malloc(p, sizes[s]);
            assert_ptr_equal(b, first);
            memset(b, i & 0xff, sizes[s]);
            assert_true(pool_free(p, b, sizes[s]));
        }
    }
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    const pool_class_stats_t *c = pool_test_class(&st, 64);
    assert_int_equal(c->allocations, 2001);
    assert_int_equal(c->frees, 2001);
    assert_int_equal(c->same_address, 2000);
    assert_int_equal(c->reuses, 2000);
    assert_int_equal(c->blocks_carved, 1);
    assert_int_equal(c->blocks_in_use, 0);
    assert_int_equal(c->central_misses, 1);
}

/* Sampled lifetimes of class c: how many, and how many below bucket
 * `below` (exclusive). */
static uint64_t life_samples(pool_t *p, uint32_t c, uint32_t below, uint64_t *under)
{
    pshm_stats_t st;
    pshm_stats(&p->seg, &st);
    uint64_t n = 0;
    *under = 0;
    for (uint32_t b = 0; b < PSHM_LIFE_BUCKETS; b++) {
        n += st.cls[c].life[b];
        if (b < below)
            *under += st.cls[c].life[b];
    }
    return n;
}

/* Burn-after-reading: one allocation per PSHM_LIFE_SAMPLE frees is timed,
 * and nearly all of them live less than 100 us (the block is freed right
 * after a memset). Guards against a sampler that never arms, times the
 * wrong free or loses the entry of a block that left the noted path. */
static void test_lifetimes_burn_after_reading(void **state)
{
    pool_t *p = *state;
    const int pairs = 200 * (int)PSHM_LIFE_SAMPLE;
    uint32_t c = pool_class_of_(p, 64);
    for (int i = 0; i < pairs; i++) {
        char *b = pool_malloc(p, 64);
        assert_non_null(b);
        memset(b, i & 0xff, 64);
        assert_true(pool_free(p, b, 64));
    }
    uint64_t fast;
    uint64_t n = life_samples(p, c, 3, &fast); /* buckets < 1, 10, 100 us */
    /* Every PSHM_LIFE_SAMPLE-th free arms one sample, taken by the next
     * malloc and timed at its free: the last arm may still wait. */
    assert_true(n + 1 >= (uint64_t)pairs / PSHM_LIFE_SAMPLE);
    assert_true(n <= (uint64_t)pairs / PSHM_LIFE_SAMPLE);
    assert_true(fast * 10 >= n * 9);
}

/* Long-lived blocks: held 30 ms each round, so every timed lifetime is in
 * a bucket of 10 ms or more (a lifetime cannot be shorter than the hold). */
static void test_lifetimes_long_lived(void **state)
{
    pool_t *p = *state;
    enum { N = PSHM_LIFE_SAMPLE, ROUNDS = 4 };
    static void *held[N];
    uint32_t c = pool_class_of_(p, 256);
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++)
            assert_non_null(held[i] = pool_malloc(p, 256));
        struct timespec ts = {0, 30 * 1000 * 1000};
        nanosleep(&ts, NULL);
        for (int i = 0; i < N; i++)
            assert_true(pool_free(p, held[i], 256));
    }
    uint64_t short_lived;
    uint64_t n = life_samples(p, c, 4, &short_lived); /* buckets < 1 ms */
    /* One arm per round; each but the last is taken by the next round's
     * first malloc. */
    assert_true(n >= ROUNDS - 1);
    uint64_t under_10ms;
    life_samples(p, c, 5, &under_10ms);
    assert_int_equal(under_10ms, 0);
    assert_int_equal(short_lived, 0);
}

/* A thread that only frees (a consumer) is armed by its frees but must
 * not stay off the fast path: the free after the arming one restores the
 * last-pool entry. Guards against a sampler that waits for a malloc with
 * every free of the thread going the slow way. */
static void test_lifetimes_freeing_thread_stays_fast(void **state)
{
    pool_t *p = *state;
    enum { N = PSHM_LIFE_SAMPLE + 2 };
    static void *held[N];
    for (int i = 0; i < N; i++)
        assert_non_null(held[i] = pool_malloc(p, 64));
    for (int i = 0; i < (int)PSHM_LIFE_SAMPLE; i++)
        assert_true(pool_free(p, held[i], 64));
    assert_int_equal(pool_life_armed_, 1); /* the 4096th free armed it */
    assert_true(pool_tls_last_.serial != p->serial);
    assert_true(pool_free(p, held[PSHM_LIFE_SAMPLE], 64));
    assert_true(pool_tls_last_.serial == p->serial); /* back on the fast path */
    assert_int_equal(pool_life_armed_, 1);           /* the next slow malloc samples */
    assert_true(pool_free(p, held[PSHM_LIFE_SAMPLE + 1], 64));
}

static void test_free_size_zero_looks_up_class(void **state)
{
    pool_t *p = *state;
    void *b = pool_malloc(p, 300);
    assert_non_null(b);
    size_t bs = pool_block_size(p, b);
    assert_int_equal(bs, 320);
    assert_true(pool_free(p, b, 0));
    assert_ptr_equal(pool_malloc(p, bs), b); /* the same class */
    assert_true(pool_free(p, b, bs));
}

static void test_free_invalid_changes_nothing(void **state)
{
    pool_t *p = *state;
    int on_stack;
    void *heap = malloc(64);
    void *b = pool_malloc(p, 64);
    assert_non_null(b);
    pool_stats_t before, after;
    assert_int_equal(pool_stats(p, &before), 0);

    assert_false(pool_free(p, NULL, 64));
    assert_false(pool_free(p, &on_stack, 64));     /* outside */
    assert_false(pool_free(p, heap, 64));          /* outside */
    assert_false(pool_free(p, (char *)b + 1, 64)); /* misaligned */
    assert_false(pool_free(p, (char *)b + 8, 64)); /* inside, not a block start */
    assert_false(pool_free(p, b, 2000));           /* wrong size */
    assert_false(pool_free(p, b, 8));              /* wrong size */
    assert_false(pool_free(p, b, 1u << 20));       /* larger than any class */
    assert_false(pool_free(p, p->seg.base, 0));    /* the header */
    assert_false(pool_free(p, p->seg.base + p->seg.data_end - 64, 0)); /* span not carved */
    assert_false(pool_free(NULL, b, 64));

    assert_int_equal(pool_stats(p, &after), 0);
    assert_memory_equal(&before, &after, sizeof(before));
    assert_true(pool_free(p, b, 64));
    free(heap);
}

static void test_free_twice_in_a_row_refused(void **state)
{
    pool_t *p = *state;
    void *a = pool_malloc(p, 64);
    void *b = pool_malloc(p, 64);
    assert_true(pool_free(p, a, 64));
    pool_stats_t before, after;
    assert_int_equal(pool_stats(p, &before), 0);
    assert_false(pool_free(p, a, 64)); /* with its size */
    assert_false(pool_free(p, a, 0));  /* and looked up */
    assert_int_equal(pool_stats(p, &after), 0);
    /* Counted as refused, and nothing else changed. */
    assert_int_equal(pool_test_class(&after, 64)->invalid_frees,
                     pool_test_class(&before, 64)->invalid_frees + 2);
    assert_int_equal(after.invalid_frees, before.invalid_frees + 2);
    ((pool_class_stats_t *)pool_test_class(&after, 64))->invalid_frees =
        pool_test_class(&before, 64)->invalid_frees;
    after.invalid_frees = before.invalid_frees;
    assert_memory_equal(&before, &after, sizeof(before));
    assert_true(pool_free(p, b, 64));
    /* a and b each come back once. */
    void *x = pool_malloc(p, 64), *y = pool_malloc(p, 64), *z = pool_malloc(p, 64);
    assert_ptr_equal(x, b);
    assert_ptr_equal(y, a);
    assert_true(z != a && z != b);
    assert_true(pool_free(p, x, 64) && pool_free(p, y, 64) && pool_free(p, z, 64));
}

static void test_offset_round_trip(void **state)
{
    pool_t *p = *state;
    int on_stack;
    void *b = pool_malloc(p, 1000);
    uint64_t off = pool_offset(p, b);
    assert_true(off != UINT64_MAX);
    assert_ptr_equal(pool_at(p, off), b);
    assert_int_equal(pool_offset(p, &on_stack), UINT64_MAX);
    assert_int_equal(pool_offset(p, NULL), UINT64_MAX);
    errno = 0;
    assert_null(pool_at(p, 0)); /* the header is not a block area */
    assert_int_equal(errno, EINVAL);
    assert_null(pool_at(p, UINT64_MAX));
    assert_true(pool_free(p, pool_at(p, off), 0));
}

static void test_exhaustion_returns_enomem_then_recovers(void **state)
{
    (void)state;
    pshm_params_t params;
    pshm_params_default(&params, 0);
    size_t bytes = (size_t)pshm_params_min_bytes(&params);
    pool_t *p = pool_open_embedded(bytes);
    assert_non_null(p);
    void **blocks = calloc(1u << 20, sizeof(void *));
    size_t n = 0;
    void *b;
    while ((b = pool_malloc(p, 65536)) != NULL) {
        blocks[n++] = b;
        assert_true(n < (1u << 20));
    }
    assert_int_equal(errno, ENOMEM);
    assert_true(n >= 1);
    /* Other classes are exhausted too: every span is carved. */
    errno = 0;
    assert_null(pool_malloc(p, 8));
    assert_int_equal(errno, ENOMEM);
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    assert_int_equal(st.spans_carved, st.spans_total);
    assert_true(pool_test_class(&st, 65536)->exhausted >= 1);
    assert_true(pool_test_class(&st, 8)->exhausted >= 1);
    /* After a free, the pool works again. */
    assert_true(pool_free(p, blocks[n - 1], 65536));
    b = pool_malloc(p, 65536);
    assert_ptr_equal(b, blocks[n - 1]);
    for (size_t i = 0; i < n; i++)
        assert_true(pool_free(p, blocks[i], 0));
    pool_test_check(p);
    pool_detach(p);
    free(blocks);
}

/* A thread that goes from one pool to another and back marks each pool's
 * blocks with that pool's own slot, on the fast path too: the two pools
 * here have different slots (slot 0 of the second is held for our parent,
 * alive). */
static void owned_by_its_pool(pool_t *p, void *blk)
{
    const pshm_seg_t *s = &p->seg;
    uint64_t off = pool_offset(p, blk);
    int c = pshm_block_class(s, off);
    assert_true(c >= 0);
    assert_int_equal(*(const uint8_t *)pshm_owner(s, (uint32_t)c, off),
                     pshm_own_val((uint32_t)p->slot));
}

static void test_two_pools_mark_their_own_slots(void **state)
{
    (void)state;
    pool_t *a = pool_open_embedded(POOL_TEST_BYTES);
    pool_t *b = pool_open_embedded(POOL_TEST_BYTES);
    assert_non_null(a);
    assert_non_null(b);
    pid_t parent = getppid();
    int held = pshm_proc_claim(&b->seg, parent, pshm_os_proc_start_time(parent), PSHM_VIA_DIRECT);
    assert_int_equal(held, 0);
    for (int round = 0; round < 3; round++) {
        /* Twice in each pool in a row: the second comes from the cache the
         * first filled (or its hot block), on the fast path. */
        pool_t *order[] = {a, a, b, b, a, a};
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
            pool_t *p = order[i];
            void *x = pool_malloc(p, 64);
            assert_non_null(x);
            owned_by_its_pool(p, x);
            uint64_t h = pool_handoff(p, x);
            assert_int_equal(h, pool_offset(p, x));
            assert_ptr_equal(pool_adopt(p, h), x);
            owned_by_its_pool(p, x);
            assert_true(pool_free(p, x, 64));
        }
    }
    assert_int_not_equal(a->slot, b->slot);
    pool_stats_t st;
    assert_int_equal(pool_stats(a, &st), 0);
    assert_int_equal(st.invalid_frees, 0);
    assert_int_equal(pool_stats(b, &st), 0);
    assert_int_equal(st.invalid_frees, 0);
    pshm_proc_release(&b->seg, (uint32_t)held);
    pool_test_check(a);
    pool_test_check(b);
    pool_detach(b);
    pool_detach(a);
}

static void test_open_embedded_bad_sizes(void **state)
{
    (void)state;
    errno = 0;
    assert_null(pool_open_embedded(4096));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(pool_open_embedded((size_t)64 << 30));
    assert_int_equal(errno, EINVAL);
}

/* A pool too small for the default 256 thread records (23 KiB each with
 * the default classes) gets fewer, and still serves every class. */
static void test_open_embedded_small_pool_fewer_records(void **state)
{
    (void)state;
    pool_t *p = pool_open_embedded(4u << 20);
    assert_non_null(p);
    assert_true(p->seg.max_threads >= 8 && p->seg.max_threads < PSHM_DEFAULT_MAX_THREADS);
    for (size_t size = 8; size <= pool_max_size(p); size *= 2) {
        void *b = pool_malloc(p, size + 1 <= pool_max_size(p) ? size + 1 : size);
        assert_non_null(b);
        assert_true(pool_free(p, b, 0));
    }
    pool_test_check(p);
    pool_detach(p);
    p = pool_open_embedded(POOL_DEFAULT_BYTES);
    assert_non_null(p);
    assert_int_equal(p->seg.max_threads, PSHM_DEFAULT_MAX_THREADS);
    pool_detach(p);
}

struct churn_arg {
    pool_t *pool;
    int n;
};

static void *churn_thread(void *arg)
{
    struct churn_arg *a = arg;
    void *keep[200];
    for (int i = 0; i < a->n; i++)
        keep[i] = pool_malloc(a->pool, (size_t)(8 << (i % 8)));
    for (int i = 0; i < a->n; i++)
        pool_free(a->pool, keep[i], 0);
    return NULL;
}

static void test_thread_exit_returns_cached_blocks(void **state)
{
    pool_t *p = *state;
    struct churn_arg a = {p, 200};
    for (int round = 0; round < 20; round++) {
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, churn_thread, &a), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
    }
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    for (uint32_t c = 0; c < st.nclasses; c++) {
        assert_int_equal(st.cls[c].blocks_cached, 0);
        assert_int_equal(st.cls[c].blocks_in_use, 0);
        assert_int_equal(st.cls[c].blocks_central, st.cls[c].blocks_carved);
    }
    assert_int_equal(pool_test_class(&st, 8)->allocations, 20 * 25);
    pool_test_check(p);
}

static void test_detach_returns_cached_blocks(void **state)
{
    pool_t *p = *state;
    /* A child fills its caches, keeps one block, detaches and exits; the
     * parent still maps the segment and checks nothing was lost. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct churn_arg a = {p, 100};
        churn_thread(&a);
        void *held = pool_malloc(p, 64);
        pool_stats_t st;
        int ok = held != NULL && pool_stats(p, &st) == 0 &&
                 pool_test_class(&st, 8)->blocks_cached > 0 && st.procs_attached == 1;
        pool_detach(p);
        _exit(ok ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    assert_int_equal(st.procs_attached, 0);
    assert_int_equal(st.procs_reclaimed, 0); /* detached, not reclaimed */
    for (uint32_t c = 0; c < st.nclasses; c++)
        assert_int_equal(st.cls[c].blocks_cached, 0);
    /* The block it kept is in transit: any process may still free it. */
    assert_int_equal(pool_test_class(&st, 64)->blocks_in_use, 0);
    assert_int_equal(pool_test_class(&st, 64)->blocks_in_transit, 1);
    assert_int_equal(pool_test_class(&st, 8)->blocks_central,
                     pool_test_class(&st, 8)->blocks_carved);
}

/* A pool with configured, non-power-of-two classes (as poold --classes
 * makes): sizes above the largest class are large blocks, frees of the
 * wrong size fail. */
static pool_t *custom_pool(const char *classes)
{
    char err[256];
    pshm_params_t params;
    pshm_params_default(&params, 8u << 20);
    assert_int_equal(pshm_params_set_classes(&params, classes, err, sizeof(err)), 0);
    return pool_test_custom(&params);
}

static void test_custom_classes_bounds(void **state)
{
    (void)state;
    pool_t *p = custom_pool("8,24,1000");
    assert_int_equal(pool_max_size(p), pa_load_relaxed(&p->seg.hdr->max_block));
    char *l = pool_malloc(p, 1001); /* a large block: one whole span */
    assert_non_null(l);
    assert_int_equal(pool_block_size(p, l), p->seg.span_mask + 1);
    assert_false(pool_free(p, l, 1000)); /* a size of a class */
    assert_true(pool_free(p, l, 2000));
    char *a = pool_malloc(p, 1000);
    char *b = pool_malloc(p, 1000);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(pool_block_size(p, a), 1000);
    assert_int_equal((size_t)(b > a ? b - a : a - b), 1000);
    assert_false(pool_free(p, a, 2000)); /* a large size */
    assert_false(pool_free(p, a, 1001));
    assert_false(pool_free(p, a, 24));       /* another class */
    assert_false(pool_free(p, a + 8, 1000)); /* not a block start */
    assert_false(pool_free(p, a + 504, 0));
    char *c = pool_malloc(p, 20);
    assert_int_equal(pool_block_size(p, c), 24);
    assert_false(pool_free(p, c, 8));
    assert_false(pool_free(p, c, 25));
    assert_true(pool_free(p, c, 17));
    assert_true(pool_free(p, a, 1000));
    assert_true(pool_free(p, b, 0));
    assert_ptr_equal(pool_malloc(p, 999), b);
    assert_true(pool_free(p, b, 999));
    pool_test_check(p);
    pool_detach(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_class_mapping_default, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_free_non_power_of_two_classes, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_class_mapping_too_big, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_malloc_burn_after_reading_same_address,
                                        pool_test_setup, pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_lifetimes_burn_after_reading, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_lifetimes_long_lived, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_lifetimes_freeing_thread_stays_fast, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_free_size_zero_looks_up_class, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_free_invalid_changes_nothing, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_free_twice_in_a_row_refused, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_offset_round_trip, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test(test_exhaustion_returns_enomem_then_recovers),
        cmocka_unit_test(test_open_embedded_bad_sizes),
        cmocka_unit_test(test_open_embedded_small_pool_fewer_records),
        cmocka_unit_test(test_custom_classes_bounds),
        cmocka_unit_test(test_two_pools_mark_their_own_slots),
        cmocka_unit_test_setup_teardown(test_thread_exit_returns_cached_blocks, pool_test_setup,
                                        pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_detach_returns_cached_blocks, pool_test_setup,
                                        pool_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
