/* SPDX-License-Identifier: MIT */
/* pool_test.h: helpers shared by the cmocka tests (not part of the product). */
#ifndef POOL_TEST_H
#define POOL_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "internal.h"

/* Fail the test unless the pool's invariants hold (no thread inside it). */
static inline void pool_test_check(pool_t *pool)
{
    char err[256] = "";
    int rc = pshm_check(&pool->seg, err, sizeof(err));
    if (rc != 0)
        fail_msg("invariant broken: %s", err);
}

static inline const pool_class_stats_t *pool_test_class(const pool_stats_t *st, size_t bs)
{
    for (uint32_t c = 0; c < st->nclasses; c++)
        if (st->cls[c].block_size == bs)
            return &st->cls[c];
    fail_msg("no class of %zu bytes", bs);
    return NULL;
}

#endif
