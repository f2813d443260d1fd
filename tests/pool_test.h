/* SPDX-License-Identifier: MIT */
/* pool_test.h: helpers shared by the cmocka tests (not part of the product). */
#ifndef POOL_TEST_H
#define POOL_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"

/* Write all of buf to a pipe (in a forked child: _exit(3) when it cannot),
 * and read all of it back (in the test). */
static inline void full_write(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k <= 0)
            _exit(3);
        p += k;
        n -= (size_t)k;
    }
}

static inline void full_read(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n) {
        ssize_t k = read(fd, p, n);
        assert_true(k > 0);
        p += k;
        n -= (size_t)k;
    }
}

/* A cmocka setup: an embedded pool of 64 MiB, shared with forked children. */
static inline int pool_test_setup_64m(void **state)
{
    pool_t *p = pool_open_embedded(64u << 20);
    if (!p)
        return -1;
    *state = p;
    return 0;
}

/* The channel entry named `name`, LIVE, or NULL. */
static inline struct pshm_chan *pool_test_chan(pool_t *p, const char *name)
{
    for (uint32_t i = 0; i < PSHM_MAX_CHANS; i++) {
        struct pshm_chan *c = &p->seg.chans[i];
        if (PSHM_CHAN_STATE(pa_load_relaxed(&c->word)) == PSHM_CHAN_LIVE &&
            strcmp(c->name, name) == 0)
            return c;
    }
    return NULL;
}

/* Fail the test unless the pool's invariants hold (no thread inside it). */
static inline void pool_test_check(pool_t *pool)
{
    char err[256] = "";
    int rc = pshm_check(&pool->seg, err, sizeof(err));
    if (rc != 0)
        fail_msg("invariant broken: %s", err);
}

/* The class that serves allocations of `size` bytes: the smallest whose
 * blocks hold it. Tests name classes by the sizes they allocate, not by a
 * class number or block size of one class list. */
static inline const pool_class_stats_t *pool_test_class(const pool_stats_t *st, size_t size)
{
    for (uint32_t c = 0; c < st->nclasses; c++)
        if (st->cls[c].block_size >= size)
            return &st->cls[c];
    fail_msg("no class holds %zu bytes", size);
    return NULL;
}

/* An embedded pool made from explicit parameters (classes, record limits),
 * as poold would make it: the same path as pool_open_embedded() otherwise. */
static inline pool_t *pool_test_custom(const pshm_params_t *params)
{
    char err[256];
    pool_t *p = pool_new_();
    void *base = NULL;
    assert_int_equal(pshm_os_create(NULL, params->bytes, pshm_params_tables_bytes(params), 0600, -1,
                                    true, &base, err, sizeof(err)),
                     0);
    assert_int_equal(pshm_format(base, params, err, sizeof(err)), 0);
    assert_int_equal(pshm_view(&p->seg, base, params->bytes, err, sizeof(err)), 0);
    pool_build_class_table_(p);
    p->creator = true;
    assert_int_equal(pool_register_(p), 0);
    return p;
}

/* cmocka fixtures: an embedded pool of POOL_TEST_BYTES; teardown checks the
 * invariants, then detaches. */
#ifndef POOL_TEST_BYTES
#define POOL_TEST_BYTES (16u << 20)
#endif
static inline int pool_test_setup(void **state)
{
    pool_t *p = pool_open_embedded(POOL_TEST_BYTES);
    if (!p)
        return -1;
    *state = p;
    return 0;
}

static inline int pool_test_teardown(void **state)
{
    pool_t *p = *state;
    pool_test_check(p);
    pool_detach(p);
    return 0;
}

#endif
