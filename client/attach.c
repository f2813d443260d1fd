/* SPDX-License-Identifier: MIT */
/*
 * attach.c: opening and closing pools: the embedded pool (no daemon), the
 * process-wide default pool, detach, and statistics.
 *
 * Every segment is validated (pshm_view) before any offset in it is
 * followed. Never on the allocation fast path.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static __thread char last_error[256];

void pool_set_error_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
}

POOL_API const char *pool_last_error(void)
{
    return last_error;
}

pool_t *pool_new_(void)
{
    pool_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->slot = -1;
    p->sock = -1;
    p->idx = POOL_MAX_OPEN;
    return p;
}

void pool_free_handle_(pool_t *pool)
{
    if (pool->seg.base)
        pshm_os_unmap(pool->seg.base, pool->seg.bytes);
    if (pool->sock >= 0)
        close(pool->sock);
    free(pool);
}

size_t pool_env_size_(const char *name, size_t dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v)
        return dflt;
    unsigned shift = 0;
    switch (*end) {
    case 'k':
    case 'K': shift = 10; break;
    case 'm':
    case 'M': shift = 20; break;
    case 'g':
    case 'G': shift = 30; break;
    default: break;
    }
    if (n > (SIZE_MAX >> shift))
        return SIZE_MAX; /* too large: the caller's size check refuses it */
    return (size_t)(n << shift);
}

size_t pool_embedded_bytes_(void)
{
    /* POOLD_ is the prefix of every variable; the old name is still read. */
    const char *v = getenv("POOLD_EMBEDDED_BYTES");
    return pool_env_size_(v && *v ? "POOLD_EMBEDDED_BYTES" : "POOL_EMBEDDED_BYTES",
                          POOL_DEFAULT_BYTES);
}

POOL_API pool_t *pool_open_embedded(size_t bytes)
{
    char err[256] = "";
    pshm_params_t params;
    void *base = NULL;
    int rc;

    if (bytes == 0)
        bytes = POOL_DEFAULT_BYTES;
    pshm_params_default(&params, bytes);
    /* A small pool gets fewer thread records rather than no pool: a record
     * costs 512 bytes per class (23 KiB with the 45 default classes), so
     * the default 256 of them need 5.8 MiB. Halved until the tables fit,
     * down to 8; threads beyond the records still allocate, uncached. */
    while (bytes < pshm_params_min_bytes(&params) && params.max_threads > 8)
        params.max_threads /= 2;
    if (bytes > PSHM_MAX_SEGMENT || bytes < pshm_params_min_bytes(&params)) {
        pool_set_error_("embedded pool of %zu bytes: size must be %llu to %llu bytes", bytes,
                        (unsigned long long)pshm_params_min_bytes(&params),
                        (unsigned long long)PSHM_MAX_SEGMENT);
        errno = EINVAL;
        return NULL;
    }
    pool_t *pool = pool_new_();
    if (!pool) {
        errno = ENOMEM;
        return NULL;
    }
    /* The tables now, the spans as they are carved. */
    rc = pshm_os_create(NULL, bytes, pshm_params_tables_bytes(&params), 0600, -1, true, &base, err,
                        sizeof(err));
    if (rc < 0)
        goto fail;
    pool->seg.base = base;
    pool->seg.bytes = bytes;
    rc = pshm_format(base, &params, err, sizeof(err));
    if (rc < 0)
        goto fail;
    rc = pshm_view(&pool->seg, base, bytes, err, sizeof(err));
    if (rc < 0)
        goto fail;
    pool_build_class_table_(pool);
    pool->creator = true;
    rc = pool_register_(pool);
    if (rc < 0)
        goto fail;
    return pool;
fail:
    if (rc == -EMFILE)
        snprintf(err, sizeof(err), "more than %d pools open in this process", POOL_MAX_OPEN);
    pool_set_error_("embedded pool: %s", err);
    pool_free_handle_(pool);
    errno = -rc;
    return NULL;
}

static pool_t *default_pool, *attached_pool;
static int default_errno, attached_errno;
static pthread_once_t default_once = PTHREAD_ONCE_INIT, attached_once = PTHREAD_ONCE_INIT;

static void default_attach(void)
{
    attached_pool = pool_attach(NULL);
    attached_errno = attached_pool ? 0 : errno;
}

pool_t *pool_default_attached_(void)
{
    pthread_once(&attached_once, default_attach);
    if (!attached_pool)
        errno = attached_errno;
    return attached_pool;
}

static void default_init(void)
{
    default_pool = pool_default_attached_();
    if (default_pool)
        return;
    default_pool = pool_open_embedded(pool_embedded_bytes_());
    default_errno = default_pool ? 0 : errno;
}

POOL_API pool_t *pool_default(void)
{
    pthread_once(&default_once, default_init);
    if (!default_pool)
        errno = default_errno;
    return default_pool;
}

POOL_API bool pool_is_shared(const pool_t *pool)
{
    return pool && pool->shared;
}

POOL_API void pool_detach(pool_t *pool)
{
    if (!pool)
        return;
    pool_unregister_(pool);
    if (pool->shared)
        pool_bye_(pool);
    pool_free_handle_(pool);
}

_Static_assert(POOL_MAX_CLASSES == PSHM_MAX_CLASSES, "pool_stats_t holds every class");

/* The segment's figures in the library's public struct, field by field. */
static void public_stats(const pshm_stats_t *in, pool_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->segment_bytes = in->segment_bytes;
    out->span_bytes = in->span_bytes;
    out->spans_total = in->spans_total;
    out->spans_carved = in->spans_carved;
    out->bytes_carved = in->bytes_carved;
    out->bytes_in_use = in->bytes_in_use;
    out->procs_attached = in->procs_attached;
    out->procs_reclaimed = in->procs_reclaimed;
    out->procs_exited = in->procs_exited;
    out->blocks_reclaimed = in->blocks_reclaimed;
    out->blocks_orphaned = in->blocks_orphaned;
    out->blocks_in_transit = in->blocks_in_transit;
    out->invalid_frees = in->invalid_frees;
    out->reclaimed_in_use = in->reclaimed_in_use;
    out->nclasses = in->nclasses;
    for (uint32_t c = 0; c < in->nclasses && c < POOL_MAX_CLASSES; c++) {
        const pshm_class_stats_t *i = &in->cls[c];
        pool_class_stats_t *o = &out->cls[c];
        o->block_size = i->block_size;
        o->spans_carved = i->spans_carved;
        o->blocks_carved = i->blocks_carved;
        o->blocks_free = i->blocks_free;
        o->blocks_central = i->blocks_central;
        o->blocks_cached = i->blocks_cached;
        o->blocks_in_use = i->blocks_in_use;
        o->allocations = i->allocations;
        o->frees = i->frees;
        o->reuses = i->reuses;
        o->same_address = i->same_address;
        o->cache_misses = i->cache_misses;
        o->central_misses = i->central_misses;
        o->exhausted = i->exhausted;
        o->blocks_in_transit = i->blocks_in_transit;
        o->invalid_frees = i->invalid_frees;
        o->reclaimed_in_use = i->reclaimed_in_use;
    }
}

POOL_API int pool_stats(pool_t *pool, pool_stats_t *out)
{
    if (!pool || !out) {
        errno = EINVAL;
        return -1;
    }
    /* With no poold, whoever reads the statistics also reclaims the caches
     * of processes that died without detaching. */
    if (!pool->shared)
        pool_reclaim_dead_(pool);
    else
        pool_rehello_if_restarted_(pool);
    pshm_stats_t st; /* 4.5 KiB, like *out; no malloc: the preload's malloc is ours */
    pshm_stats(&pool->seg, &st);
    public_stats(&st, out);
    return 0;
}
