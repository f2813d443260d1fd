/* SPDX-License-Identifier: MIT */
/*
 * pshm_layout.c: format a segment and validate one before use.
 *
 * Owns the arithmetic of the layout (where each table starts and how big it
 * is) and the checks a mapped segment must pass before anyone follows an
 * offset in it. Never maps or unmaps memory (pshm_os.c does).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pshm.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

/* The CPU can run pa_cas16_acq_rel(): checked before a segment is formatted
 * or used, so that a CPU without it is refused with a sentence rather than
 * killed by SIGILL at its first refill. */
static int cpu_check(char *err, size_t errlen)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_CMPXCHG16B)) {
        snprintf(err, errlen, "this CPU lacks cmpxchg16b, which the pool's lists need");
        return -ENOTSUP;
    }
#else
    (void)err;
    (void)errlen;
#endif
    return 0;
}

#define ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((uint64_t)(a)-1))

static uint32_t log2_u32(uint32_t v)
{
    uint32_t r = 0;
    while ((UINT32_C(1) << r) < v)
        r++;
    return r;
}

static bool is_pow2(uint32_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

/* The "fine" list, the default: 8, 16, 32, 48, 64, then four classes per
 * doubling (b + b/4, b + b/2, b + 3b/4, 2b) up to 64 KiB, as jemalloc
 * spaces its small classes: 45 classes. Every class from 16 up is a
 * multiple of 16, so that every block of more than 8 bytes has malloc's
 * alignment (libpoolclient-preload refuses a block without it). Against the
 * size rounded up to that alignment (8 up to 8 bytes, 16 above), a block is
 * at most 20% larger (mean 7.8% over the sizes 1..65536), against 50%
 * (mean 24.9%) with powers of two; test_shm computes and prints both. */
static uint32_t classes_fine(uint32_t *sizes)
{
    static const uint32_t small[] = {8, 16, 32, 48, 64};
    uint32_t n = 0;
    for (uint32_t i = 0; i < sizeof(small) / sizeof(small[0]); i++)
        sizes[n++] = small[i];
    for (uint32_t b = 64; b < 65536; b <<= 1)
        for (uint32_t q = 5; q <= 8; q++)
            sizes[n++] = b / 4 * q;
    return n;
}

/* The "pow2" list, the default before: powers of two from 8 to 64 KiB. */
static uint32_t classes_pow2(uint32_t *sizes)
{
    uint32_t n = 0;
    for (uint32_t sz = 8; sz <= 65536; sz <<= 1)
        sizes[n++] = sz;
    return n;
}

_Static_assert(5 + 10 * 4 <= PSHM_MAX_CLASSES, "the fine list fits the class table");

void pshm_params_default(pshm_params_t *p, uint64_t bytes)
{
    memset(p, 0, sizeof(*p));
    p->bytes = bytes;
    p->nclasses = classes_fine(p->class_size);
    p->max_procs = PSHM_DEFAULT_MAX_PROCS;
    p->max_threads = PSHM_DEFAULT_MAX_THREADS;
}

int pshm_params_set_classes(pshm_params_t *p, const char *list, char *err, size_t errlen)
{
    uint32_t sizes[PSHM_MAX_CLASSES];
    uint32_t n = 0;
    const char *s = list;
    unsigned long lo, hi;
    char *end;

    if (!list || !*list) {
        snprintf(err, errlen, "empty class list");
        return -EINVAL;
    }
    if (strcmp(list, "fine") == 0) {
        p->nclasses = classes_fine(p->class_size);
        return 0;
    }
    if (strcmp(list, "pow2") == 0) {
        p->nclasses = classes_pow2(p->class_size);
        return 0;
    }
    /* Range form: LO-HI, powers of two. */
    if (strchr(list, '-')) {
        errno = 0;
        lo = strtoul(s, &end, 10);
        if (errno || end == s || *end != '-')
            goto bad;
        s = end + 1;
        hi = strtoul(s, &end, 10);
        if (errno || end == s || *end != '\0')
            goto bad;
        if (!is_pow2((uint32_t)lo) || !is_pow2((uint32_t)hi) || lo < PSHM_MIN_BLOCK || hi < lo ||
            hi > (1u << 30)) {
            snprintf(err, errlen, "class range '%s': bounds must be powers of two, 8 <= lo <= hi",
                     list);
            return -EINVAL;
        }
        for (unsigned long v = lo; v <= hi; v <<= 1) {
            if (n == PSHM_MAX_CLASSES) {
                snprintf(err, errlen, "class range '%s': more than %u classes", list,
                         PSHM_MAX_CLASSES);
                return -EINVAL;
            }
            sizes[n++] = (uint32_t)v;
        }
    } else {
        while (*s) {
            errno = 0;
            unsigned long v = strtoul(s, &end, 10);
            if (errno || end == s || (*end != ',' && *end != '\0'))
                goto bad;
            if (v < PSHM_MIN_BLOCK || v % 8 != 0 || v > (1u << 30)) {
                snprintf(err, errlen, "class size %lu: must be a multiple of 8, from 8 to 1 GiB",
                         v);
                return -EINVAL;
            }
            if (n == PSHM_MAX_CLASSES) {
                snprintf(err, errlen, "more than %u classes", PSHM_MAX_CLASSES);
                return -EINVAL;
            }
            if (n > 0 && v <= sizes[n - 1]) {
                snprintf(err, errlen, "class sizes must increase: %lu after %u", v, sizes[n - 1]);
                return -EINVAL;
            }
            sizes[n++] = (uint32_t)v;
            s = *end ? end + 1 : end;
        }
    }
    memcpy(p->class_size, sizes, n * sizeof(sizes[0]));
    p->nclasses = n;
    return 0;
bad:
    snprintf(err, errlen,
             "cannot parse class list '%s' (want 'fine', 'pow2', '8,16,64' or '8-65536')", list);
    return -EINVAL;
}

struct layout {
    uint32_t span_shift;
    uint64_t classes_off, procs_off, threads_off, spanmap_off, carvers_off, owner_slices_off,
        span_state_off, chans_off, chan_rings_off, data_off;
    uint32_t thread_bytes;
    uint32_t nspans;
};

static void compute(const pshm_params_t *p, uint64_t bytes, struct layout *l)
{
    uint32_t largest = p->nclasses ? p->class_size[p->nclasses - 1] : 8;
    l->span_shift = log2_u32(largest);
    if (l->span_shift < PSHM_SPAN_SHIFT_MIN)
        l->span_shift = PSHM_SPAN_SHIFT_MIN;
    uint64_t span = UINT64_C(1) << l->span_shift;
    l->thread_bytes =
        (uint32_t)(sizeof(struct pshm_thread) + (uint64_t)p->nclasses * sizeof(struct pshm_tclass) +
                   sizeof(struct pshm_tlarge));
    l->classes_off = PSHM_HEADER_BYTES;
    l->procs_off = ALIGN_UP(l->classes_off + p->nclasses * sizeof(struct pshm_class), 64);
    l->threads_off = ALIGN_UP(l->procs_off + p->max_procs * sizeof(struct pshm_proc), 64);
    l->spanmap_off = ALIGN_UP(l->threads_off + (uint64_t)p->max_threads * l->thread_bytes, 64);
    /* The span map needs one byte per span, the claim words eight, the
     * owner slices (large classes, large blocks) 64 and the span states
     * eight; bound them by the whole size. */
    uint64_t max_spans = bytes >> l->span_shift;
    l->carvers_off = ALIGN_UP(l->spanmap_off + max_spans, 64);
    l->owner_slices_off = ALIGN_UP(l->carvers_off + 8 * max_spans, 64);
    l->span_state_off = ALIGN_UP(l->owner_slices_off + PSHM_GOWNER_SLICE * max_spans, 64);
    l->chans_off = ALIGN_UP(l->span_state_off + 8 * max_spans, 64);
    l->chan_rings_off = ALIGN_UP(l->chans_off + PSHM_MAX_CHANS * sizeof(struct pshm_chan), 64);
    l->data_off =
        ALIGN_UP(l->chan_rings_off + (uint64_t)PSHM_MAX_CHANS * PSHM_CHAN_RING_BYTES, span);
    l->nspans = bytes > l->data_off ? (uint32_t)((bytes - l->data_off) >> l->span_shift) : 0;
}

uint64_t pshm_params_tables_bytes(const pshm_params_t *p)
{
    struct layout l;
    compute(p, p->bytes, &l);
    return l.data_off < p->bytes ? l.data_off : p->bytes;
}

uint64_t pshm_params_min_bytes(const pshm_params_t *p)
{
    struct layout l;
    compute(p, 0, &l);
    /* One span per class, plus the per-span tables (at most a few pages). */
    return ALIGN_UP(l.data_off + 4 * 4096, UINT64_C(1) << l.span_shift) +
           ((uint64_t)p->nclasses << l.span_shift);
}

/* Entries a span of block size bs needs in its owner table: one per block
 * start a pointer can name, ceil(span / bs), so that every aligned pointer
 * into the span has a byte (FREE past the last block). */
static uint64_t own_entries(uint32_t span_shift, uint32_t bs)
{
    return ((UINT64_C(1) << span_shift) - 1) / bs + 1;
}

/* A class keeps its owner bytes at the tail of each span when it has more
 * entries than a 64-byte slice holds. */
static bool own_in_tail(uint32_t span_shift, uint32_t bs)
{
    return own_entries(span_shift, bs) > PSHM_GOWNER_SLICE;
}

static uint32_t blocks_per_span_for(uint32_t span_shift, uint32_t bs)
{
    uint64_t span = UINT64_C(1) << span_shift;
    if (own_in_tail(span_shift, bs))
        span -= own_entries(span_shift, bs);
    return (uint32_t)(span / bs);
}

uint32_t pshm_owner_bytes_per_block(void)
{
    return 1;
}

static uint32_t cache_cap_for(uint32_t block_size)
{
    uint32_t cap = PSHM_CACHE_BYTES / block_size;
    if (cap > PSHM_CACHE_CAP)
        cap = PSHM_CACHE_CAP;
    if (cap < 2)
        cap = 2;
    return cap;
}

int pshm_format(void *base, const pshm_params_t *p, char *err, size_t errlen)
{
    struct layout l;
    struct pshm_header *h = base;

    int rc = cpu_check(err, errlen);
    if (rc < 0)
        return rc;
    if (p->nclasses == 0 || p->nclasses > PSHM_MAX_CLASSES) {
        snprintf(err, errlen, "need 1 to %u size classes, got %u", PSHM_MAX_CLASSES, p->nclasses);
        return -EINVAL;
    }
    if (p->max_procs == 0 || p->max_procs > PSHM_MAX_PROCS || p->max_threads == 0 ||
        p->max_threads > PSHM_MAX_THREADS) {
        snprintf(err, errlen, "max procs must be 1..%u and max threads 1..%u", PSHM_MAX_PROCS,
                 PSHM_MAX_THREADS);
        return -EINVAL;
    }
    if (p->bytes > PSHM_MAX_SEGMENT) {
        snprintf(err, errlen, "segment of %llu bytes is over the 32 GiB limit",
                 (unsigned long long)p->bytes);
        return -EINVAL;
    }
    uint64_t min = pshm_params_min_bytes(p);
    if (p->bytes < min) {
        snprintf(err, errlen,
                 "segment of %llu bytes is too small for %u classes, %u procs and %u threads: "
                 "need at least %llu",
                 (unsigned long long)p->bytes, p->nclasses, p->max_procs, p->max_threads,
                 (unsigned long long)min);
        return -EINVAL;
    }
    compute(p, p->bytes, &l);

    /* The memory is fresh (zero) from ftruncate/fallocate; clear the tables
     * anyway so that formatting over an old segment starts clean. Every
     * span starts uncommitted (its state word 0): a segment committed
     * whole at creation says so with pshm_span_commit_free(). */
    memset(base, 0, l.data_off);
    h->abi_version = PSHM_ABI_VERSION;
    h->header_bytes = (uint32_t)sizeof(*h);
    h->segment_bytes = p->bytes;
    h->span_shift = l.span_shift;
    h->nspans = l.nspans;
    h->nclasses = p->nclasses;
    h->max_procs = p->max_procs;
    h->max_threads = p->max_threads;
    h->thread_bytes = l.thread_bytes;
    h->classes_off = l.classes_off;
    h->procs_off = l.procs_off;
    h->threads_off = l.threads_off;
    h->spanmap_off = l.spanmap_off;
    h->carvers_off = l.carvers_off;
    h->owner_slices_off = l.owner_slices_off;
    h->span_state_off = l.span_state_off;
    h->chans_off = l.chans_off;
    h->chan_rings_off = l.chan_rings_off;
    h->data_off = l.data_off;
    h->created_unix = (uint64_t)time(NULL);
    h->creator_pid = (int32_t)getpid();
    h->layout_check = PSHM_LAYOUT_CHECK;

    struct pshm_class *cls = (struct pshm_class *)(void *)((uint8_t *)base + l.classes_off);
    for (uint32_t i = 0; i < p->nclasses; i++) {
        uint32_t bs = p->class_size[i];
        cls[i].block_size = bs;
        cls[i].blocks_per_span = blocks_per_span_for(l.span_shift, bs);
        cls[i].cache_cap = cache_cap_for(bs);
        cls[i].batch = cls[i].cache_cap / 2;
        cls[i].shift = is_pow2(bs) ? log2_u32(bs) : 0;
    }
    memset((uint8_t *)base + l.spanmap_off, PSHM_SPAN_FREE, l.nspans);
    h->max_block = pshm_max_block_default((uint64_t)l.nspans << l.span_shift, l.span_shift);

    /* release: publishes every field above; pairs with the acquire load of
     * the magic in pshm_view(). */
    pa_store_release(&h->magic, PSHM_MAGIC);
    return 0;
}

int pshm_view(pshm_seg_t *s, void *base, uint64_t bytes, char *err, size_t errlen)
{
    struct pshm_header *h = base;
    struct layout l;
    pshm_params_t p;

    memset(s, 0, sizeof(*s));
    if (bytes < PSHM_HEADER_BYTES) {
        snprintf(err, errlen, "segment truncated: %llu bytes, smaller than a header",
                 (unsigned long long)bytes);
        return -EBADMSG;
    }
    if (!pa_is_lock_free_u64(&h->magic)) {
        snprintf(err, errlen, "64-bit atomics are not lock-free here: cannot share a segment");
        return -ENOTSUP;
    }
    int rc = cpu_check(err, errlen);
    if (rc < 0)
        return rc;
    /* acquire: pairs with the release store of the magic in pshm_format(). */
    uint64_t magic = pa_load_acquire(&h->magic);
    if (magic != PSHM_MAGIC) {
        snprintf(err, errlen, "foreign segment: bad magic 0x%016llx (not a poold segment)",
                 (unsigned long long)magic);
        return -EBADMSG;
    }
    if (h->abi_version != PSHM_ABI_VERSION || h->header_bytes != sizeof(*h) ||
        h->layout_check != PSHM_LAYOUT_CHECK) {
        snprintf(err, errlen,
                 "segment has ABI version %u (layout %08x), this build speaks %u "
                 "(layout %08x)",
                 h->abi_version, h->layout_check, PSHM_ABI_VERSION, PSHM_LAYOUT_CHECK);
        return -EPROTO;
    }
    if (h->segment_bytes > bytes) {
        snprintf(err, errlen, "segment truncated: header says %llu bytes, only %llu mapped",
                 (unsigned long long)h->segment_bytes, (unsigned long long)bytes);
        return -EBADMSG;
    }
    /* Recompute the layout from the header's parameters: every offset must
     * be exactly what this build would have written. */
    memset(&p, 0, sizeof(p));
    p.bytes = h->segment_bytes;
    p.nclasses = h->nclasses;
    p.max_procs = h->max_procs;
    p.max_threads = h->max_threads;
    if (p.nclasses == 0 || p.nclasses > PSHM_MAX_CLASSES || p.max_procs == 0 ||
        p.max_procs > PSHM_MAX_PROCS || p.max_threads == 0 || p.max_threads > PSHM_MAX_THREADS ||
        p.bytes > PSHM_MAX_SEGMENT) {
        snprintf(err, errlen, "corrupt header: %u classes, %u procs, %u threads", p.nclasses,
                 p.max_procs, p.max_threads);
        return -EBADMSG;
    }
    struct pshm_class *cls = (struct pshm_class *)(void *)((uint8_t *)base + PSHM_HEADER_BYTES);
    for (uint32_t i = 0; i < p.nclasses; i++) {
        uint32_t bs = cls[i].block_size;
        if (bs < PSHM_MIN_BLOCK || bs % 8 || (i > 0 && bs <= cls[i - 1].block_size)) {
            snprintf(err, errlen, "corrupt class table: class %u has block size %u", i, bs);
            return -EBADMSG;
        }
        p.class_size[i] = bs;
    }
    compute(&p, p.bytes, &l);
    if (h->span_shift != l.span_shift || h->nspans != l.nspans ||
        h->thread_bytes != l.thread_bytes || h->classes_off != l.classes_off ||
        h->procs_off != l.procs_off || h->threads_off != l.threads_off ||
        h->spanmap_off != l.spanmap_off || h->carvers_off != l.carvers_off ||
        h->owner_slices_off != l.owner_slices_off || h->span_state_off != l.span_state_off ||
        h->chans_off != l.chans_off || h->chan_rings_off != l.chan_rings_off ||
        h->data_off != l.data_off) {
        snprintf(err, errlen, "corrupt header: offsets do not match its own sizes");
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < p.nclasses; i++) {
        uint32_t bs = cls[i].block_size;
        if (cls[i].blocks_per_span != blocks_per_span_for(l.span_shift, bs) ||
            cls[i].cache_cap != cache_cap_for(bs) || cls[i].batch != cls[i].cache_cap / 2 ||
            cls[i].shift != (is_pow2(bs) ? log2_u32(bs) : 0)) {
            snprintf(err, errlen, "corrupt class table: class %u (%u bytes) has bad constants", i,
                     bs);
            return -EBADMSG;
        }
        s->block_size[i] = bs;
        s->block_magic[i] = UINT64_MAX / bs + 1;
        s->blocks_per_span[i] = cls[i].blocks_per_span;
        s->cache_cap[i] = cls[i].cache_cap;
        s->batch[i] = cls[i].batch;
        uint64_t span = UINT64_C(1) << l.span_shift;
        if (own_in_tail(l.span_shift, bs)) {
            s->owner_base[i] = (uint8_t *)base + l.data_off + span - own_entries(l.span_shift, bs);
            s->owner_span_shift[i] = l.span_shift;
        } else {
            s->owner_base[i] = (uint8_t *)base + l.owner_slices_off;
            s->owner_span_shift[i] = 6; /* log2(PSHM_GOWNER_SLICE) */
        }
        s->block_recip[i] = ((UINT64_C(1) << 32) + bs - 1) / bs;
    }
    s->base = base;
    s->bytes = h->segment_bytes;
    s->hdr = h;
    s->cls = cls;
    s->procs = (struct pshm_proc *)(void *)((uint8_t *)base + l.procs_off);
    s->threads = (uint8_t *)base + l.threads_off;
    s->spanmap = (pa_u8 *)((uint8_t *)base + l.spanmap_off);
    s->carvers = (pa_u64 *)(void *)((uint8_t *)base + l.carvers_off);
    s->owner_slices = (uint8_t *)base + l.owner_slices_off;
    s->span_state = (pa_u64 *)(void *)((uint8_t *)base + l.span_state_off);
    s->chans = (struct pshm_chan *)(void *)((uint8_t *)base + l.chans_off);
    s->chan_rings = (uint8_t *)base + l.chan_rings_off;
    s->span_mask = (UINT64_C(1) << l.span_shift) - 1;
    s->data_off = l.data_off;
    s->data_end = l.data_off + ((uint64_t)l.nspans << l.span_shift);
    s->data_bytes = s->data_end - s->data_off;
    s->span_shift = l.span_shift;
    s->nspans = l.nspans;
    s->nclasses = p.nclasses;
    s->max_procs = p.max_procs;
    s->max_threads = p.max_threads;
    s->thread_bytes = l.thread_bytes;
    return 0;
}
