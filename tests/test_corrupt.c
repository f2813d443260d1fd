/* SPDX-License-Identifier: MIT */
/*
 * test_corrupt: a corrupt pool is detected, not served.
 *
 * Unit part: a real pool (embedded, blocks on the central lists, in caches
 * and in use) is corrupted on purpose, one structure at a time: a list
 * cycle, an index out of range, a block on two lists (twice on central, or
 * on central and in a cache), a wrong owner byte (an impossible value, a
 * free block on the list marked owned, a block owned by a free slot), a
 * record with a count past its cache; pshm_verify() must name each, and
 * must find nothing on the clean pool, also while other threads allocate.
 *
 * Daemon part: a real poold serving a worker; the test scribbles on the
 * segment; within seconds `poolctl stats` says corrupt:1, poold's log says
 * what and where, a new worker's HELLO is refused (pool-corrupt: it is
 * handed no block at all), STATS still answers, and the running worker's
 * blocks were never handed to anyone else (its tags stayed intact). A
 * poold started on the corrupt segment reports it at adoption.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pool_test.h"

/* ---- unit: pshm_verify over a corrupted real pool ---- */

struct fix {
    pool_t *pool;
    uint8_t *saved; /* the clean image, restored before each corruption */
    uint64_t bytes;
};

static void *held[512];

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    pshm_params_t p;
    char err[256];
    pshm_params_default(&p, 0);
    if (pshm_params_set_classes(&p, "16,48,256,4096", err, sizeof(err)) < 0)
        return -1;
    p.max_procs = 8;
    p.max_threads = 8;
    p.bytes = pshm_params_min_bytes(&p) + (UINT64_C(16) << 16);
    f->pool = pool_test_custom(&p);
    /* Blocks everywhere: allocate 512 of 16 and 48 B, free most (flushes
     * put batches on central), keep some in use. */
    for (int i = 0; i < 512; i++)
        held[i] = pool_malloc(f->pool, i % 2 ? 16 : 48);
    for (int i = 0; i < 512; i++)
        if (i % 8)
            assert_true(pool_free(f->pool, held[i], i % 2 ? 16 : 48));
    f->bytes = f->pool->seg.bytes;
    f->saved = malloc(f->bytes);
    memcpy(f->saved, f->pool->seg.base, f->bytes);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    memcpy(f->pool->seg.base, f->saved, f->bytes);
    pool_detach(f->pool);
    free(f->saved);
    free(f);
    return 0;
}

/* Verify twice (a finding a race could make is reported on the second). */
static uint32_t verify(struct fix *f, char *what, size_t cap)
{
    pshm_verify_t v;
    pshm_corruption_t c = {0};
    assert_int_equal(pshm_verify_init(&v, &f->pool->seg, UINT64_MAX), 0);
    for (int i = 0; i < 2 && c.kind == PSHM_CORRUPT_NONE; i++)
        (void)pshm_verify(&f->pool->seg, &v, true, &c);
    pshm_verify_free(&v);
    if (what)
        snprintf(what, cap, "%s", c.what);
    return c.kind;
}

/* Sampled checks (windows of 2 records and 2 spans), as poold's timer
 * runs them: the finding within `calls` calls, or PSHM_CORRUPT_NONE. */
static uint32_t verify_sampled(struct fix *f, int calls)
{
    pshm_verify_t v;
    pshm_corruption_t c = {0};
    assert_int_equal(pshm_verify_init(&v, &f->pool->seg, 64), 0);
    v.rec_window = 2;
    v.span_window = 2;
    for (int i = 0; i < calls && c.kind == PSHM_CORRUPT_NONE; i++)
        (void)pshm_verify(&f->pool->seg, &v, false, &c);
    pshm_verify_free(&v);
    return c.kind;
}

static void restore(struct fix *f)
{
    memcpy(f->pool->seg.base, f->saved, f->bytes);
}

/* The class index of block size bs. */
static uint32_t cls_of(const pshm_seg_t *s, uint32_t bs)
{
    for (uint32_t c = 0; c < s->nclasses; c++)
        if (s->block_size[c] == bs)
            return c;
    fail_msg("no class %u", bs);
    return 0;
}

static uint64_t *link_of(const pshm_seg_t *s, uint32_t idx)
{
    return (uint64_t *)pshm_ptr(s, idx);
}

/* Make the last block of the chain that starts at node link on to `to`
 * (the chain word is the low half of a block's link). */
static void link_chain_end(const pshm_seg_t *s, uint32_t node, uint32_t to)
{
    uint32_t cur = node, last = node;
    while (cur) {
        last = cur;
        cur = (uint32_t)*link_of(s, cur);
    }
    uint64_t *w = link_of(s, last);
    *w = (*w & ~UINT64_C(0xffffffff)) | to;
}

static void test_verify_clean_pool(void **state)
{
    struct fix *f = *state;
    char what[256];
    assert_int_equal(verify(f, what, sizeof(what)), PSHM_CORRUPT_NONE);
    /* The central list of class 16 has at least two batches (the tests
     * below need them). */
    const pshm_seg_t *s = &f->pool->seg;
    uint32_t node = PSHM_HEAD_IDX(pa_load_relaxed(&s->cls[cls_of(s, 16)].central.w));
    assert_true(node != 0);
    assert_true((uint32_t)(*link_of(s, node) >> 32) != 0);
}

static void test_verify_list_cycle(void **state)
{
    struct fix *f = *state;
    pshm_seg_t *s = &f->pool->seg;
    char what[256];
    uint32_t c = cls_of(s, 16);
    uint32_t node = PSHM_HEAD_IDX(pa_load_relaxed(&s->cls[c].central.w));
    /* The second batch's "next node" points back at the first: the stack
     * is a cycle. */
    uint32_t second = (uint32_t)(*link_of(s, node) >> 32);
    uint64_t *w = link_of(s, second);
    *w = ((uint64_t)node << 32) | (*w & 0xffffffffu);
    uint32_t k = verify(f, what, sizeof(what));
    print_message("cycle: %s\n", what);
    assert_true(k == PSHM_CORRUPT_TWICE || k == PSHM_CORRUPT_CYCLE);
    restore(f);
    /* A chain that loops on itself. */
    link_chain_end(s, node, node);
    k = verify(f, what, sizeof(what));
    print_message("chain cycle: %s\n", what);
    assert_true(k == PSHM_CORRUPT_TWICE || k == PSHM_CORRUPT_CYCLE);
    restore(f);
}

static void test_verify_index_out_of_range(void **state)
{
    struct fix *f = *state;
    pshm_seg_t *s = &f->pool->seg;
    char what[256];
    uint32_t c = cls_of(s, 48);
    uint64_t h = pa_load_relaxed(&s->cls[c].central.w);
    uint32_t past = (uint32_t)(s->data_end >> 3) + 5;
    pa_store_relaxed(&s->cls[c].central.w, PSHM_HEAD_WORD(0, past));
    assert_int_equal(verify(f, what, sizeof(what)), PSHM_CORRUPT_INDEX);
    print_message("head: %s\n", what);
    assert_non_null(strstr(what, "not a block"));
    restore(f);
    /* A chain link into the header. */
    uint32_t node = PSHM_HEAD_IDX(h);
    uint64_t *w = link_of(s, node);
    *w = (*w & ~UINT64_C(0xffffffff)) | 3;
    assert_int_equal(verify(f, what, sizeof(what)), PSHM_CORRUPT_INDEX);
    restore(f);
}

static void test_verify_block_on_two_lists(void **state)
{
    struct fix *f = *state;
    pshm_seg_t *s = &f->pool->seg;
    char what[256];
    uint32_t c = cls_of(s, 16);
    uint32_t node = PSHM_HEAD_IDX(pa_load_relaxed(&s->cls[c].central.w));
    uint32_t second = (uint32_t)(*link_of(s, node) >> 32);
    /* The first chain's last block links on into the second batch. */
    link_chain_end(s, node, second);
    assert_int_equal(verify(f, what, sizeof(what)), PSHM_CORRUPT_TWICE);
    print_message("two batches: %s\n", what);
    restore(f);
    /* A block on central and in this thread's cache too. */
    struct pshm_thread *t = pool_rec_lookup_(f->pool);
    assert_non_null(t);
    struct pshm_tclass *tc = &t->cls[c];
    uint32_t n = pa_load_relaxed(&tc->count);
    assert_true(n + 1 <= s->cache_cap[c]);
    tc->slots[n + 1] = second;
    pa_store_relaxed(&tc->count, n + 1);
    assert_int_equal(verify(f, what, sizeof(what)), PSHM_CORRUPT_TWICE);
    print_message("central and cache: %s\n", what);
    assert_non_null(strstr(what, "cache"));
    restore(f);
}

static void test_verify_wrong_owner(void **state)
{
    struct fix *f = *state;
    pshm_seg_t *s = &f->pool->seg;
    char what[256];
    uint32_t c = cls_of(s, 16);
    uint32_t node = PSHM_HEAD_IDX(pa_load_relaxed(&s->cls[c].central.w));
    /* A free block on the central list, marked owned by a live slot. */
    pa_store_relaxed(pshm_owner_idx(s, c, node), pshm_own_val((uint32_t)f->pool->slot));
    assert_int_equal(verify(f, what, sizeof(what)), PSHM_CORRUPT_OWNER);
    print_message("owned on central: %s\n", what);
    restore(f);
    /* An owner byte that names no slot. */
    uint32_t blk = (uint32_t)((uintptr_t)held[8] - (uintptr_t)s->base) >> 3; /* in use */
    uint32_t c48 = cls_of(s, 48);
    pa_store_relaxed(pshm_owner_idx(s, c48, blk), 0x80);
    assert_int_equal(verify(f, what, sizeof(what)), PSHM_CORRUPT_OWNER);
    print_message("no such slot: %s\n", what);
    restore(f);
    /* A block in use by a free slot. */
    pa_store_relaxed(pshm_owner_idx(s, c48, blk), pshm_own_val(s->max_procs - 1));
    assert_int_equal(verify(f, what, sizeof(what)), PSHM_CORRUPT_OWNER);
    assert_non_null(strstr(what, "which is free"));
    /* The sampled check finds it too, once its window reaches the span. */
    assert_int_equal(verify_sampled(f, (int)s->nspans + 4), PSHM_CORRUPT_OWNER);
    restore(f);
    assert_int_equal(verify_sampled(f, (int)s->nspans + 4), PSHM_CORRUPT_NONE);
}

static void test_verify_corrupt_record(void **state)
{
    struct fix *f = *state;
    pshm_seg_t *s = &f->pool->seg;
    struct pshm_thread *t = pool_rec_lookup_(f->pool);
    assert_non_null(t);
    pa_store_relaxed(&t->cls[0].count, 100000);
    assert_int_equal(verify(f, NULL, 0), PSHM_CORRUPT_RECORD);
    restore(f);
    pa_store_relaxed(&t->cls[1].pend.op, 77);
    assert_int_equal(verify(f, NULL, 0), PSHM_CORRUPT_RECORD);
    restore(f);
    /* Every real journal step is known, the reclaim's run included (a
     * poold killed in the middle of one leaves it in its record). */
    for (uint32_t op = PSHM_PEND_NONE; op <= PSHM_PEND_LAST; op++) {
        pa_store_relaxed(&t->cls[1].pend.op, op);
        assert_int_equal(verify(f, NULL, 0), PSHM_CORRUPT_NONE);
    }
    restore(f);
    t->cls[1].fresh_end = (uint32_t)(s->data_end >> 3) + 100;
    uint64_t w = pa_load_relaxed(&t->cls[1].fresh_w);
    pa_store_relaxed(&t->cls[1].fresh_w, w & ~UINT64_C(0xffffffff));
    assert_int_equal(verify(f, NULL, 0), PSHM_CORRUPT_RECORD);
    assert_int_equal(verify_sampled(f, (int)s->max_threads + 4), PSHM_CORRUPT_RECORD);
    restore(f);
}

static atomic_int stop_flag;

static void *churn(void *arg)
{
    pool_t *pool = arg;
    void *w[100] = {0};
    for (unsigned i = 0; !atomic_load(&stop_flag); i++) {
        unsigned k = (i * 2654435761u) % 100;
        if (w[k]) {
            pool_free(pool, w[k], 16 + (size_t)(k % 3) * 32);
            w[k] = NULL;
        } else {
            w[k] = pool_malloc(pool, 16 + (k % 3) * 32);
        }
    }
    for (int k = 0; k < 100; k++)
        if (w[k])
            pool_free(pool, w[k], 16 + (size_t)(k % 3) * 32);
    return NULL;
}

/* No finding on a clean pool while threads allocate and free through it
 * (the sampled check runs while workers run). */
static void test_verify_no_false_alarm_while_busy(void **state)
{
    struct fix *f = *state;
    pthread_t th[3];
    atomic_store(&stop_flag, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, churn, f->pool), 0);
    pshm_verify_t v;
    assert_int_equal(pshm_verify_init(&v, &f->pool->seg, 4096), 0);
    v.rec_window = 4;
    v.span_window = 4;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t n = 0;
    do {
        pshm_corruption_t c;
        int rc = pshm_verify(&f->pool->seg, &v, n % 10 == 0, &c);
        if (rc != 0) {
            atomic_store(&stop_flag, 1);
            fail_msg("false alarm after %llu checks: %s", (unsigned long long)n, c.what);
        }
        n++;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - t0.tv_sec < 2);
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    /* Walks that raced prove nothing: some walk of a class the threads used
     * must have seen a stable list, or a checker that gives up on every busy
     * list would pass. Only busy classes race; each check walks each class
     * once. */
    pool_stats_t st;
    assert_int_equal(pool_stats(f->pool, &st), 0);
    uint64_t busy = 0;
    for (uint32_t c = 0; c < st.nclasses; c++)
        busy += st.cls[c].allocations > 0;
    print_message("%llu checks while busy, %llu walks of %llu busy classes, %llu raced\n",
                  (unsigned long long)n, (unsigned long long)(v.checks * busy),
                  (unsigned long long)busy, (unsigned long long)v.raced);
    assert_int_equal(v.checks, n);
    assert_true(busy > 0);
    assert_true(v.raced < v.checks * busy);
    pshm_verify_free(&v);
    memcpy(f->saved, f->pool->seg.base, f->bytes); /* teardown restores this */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verify_clean_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_list_cycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_index_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_block_on_two_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_wrong_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_corrupt_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_no_false_alarm_while_busy, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
