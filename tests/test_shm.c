/* SPDX-License-Identifier: MIT */
/*
 * test_shm: the segment layer alone: class lists, format and validation
 * (foreign, other ABI, truncated, corrupt), named segments, reservation on a
 * full /dev/shm, non-power-of-two classes and the span map.
 */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pshm.h"

static char err[512];

static void *make(pshm_params_t *p, uint64_t bytes)
{
    void *base = NULL;
    assert_int_equal(pshm_os_create(NULL, bytes, bytes, 0600, -1, true, &base, err, sizeof(err)),
                     0);
    p->bytes = bytes;
    assert_int_equal(pshm_format(base, p, err, sizeof(err)), 0);
    return base;
}

/* The class of size n in a sorted list: the smallest class that holds it. */
static uint32_t class_for(const pshm_params_t *p, uint32_t n)
{
    uint32_t c = 0;
    while (p->class_size[c] < n)
        c++;
    return p->class_size[c];
}

/* Internal waste of a class list over every size 1..65536: how much larger
 * the block is than the size rounded up to malloc's alignment (8 bytes up
 * to 8, 16 above: no block can be smaller than that), as a fraction of the
 * block. The worst and the mean, in hundredths of a percent. */
static void waste(const pshm_params_t *p, uint32_t *worst_bp, uint32_t *worst_at, uint32_t *mean_bp)
{
    double worst = 0, sum = 0;
    *worst_at = 0;
    for (uint32_t n = 1; n <= 65536; n++) {
        uint32_t granule = n <= 8 ? 8 : 16;
        uint32_t need = (n + granule - 1) / granule * granule;
        uint32_t bs = class_for(p, n);
        double w = (double)(bs - need) / bs;
        sum += w;
        if (w > worst) {
            worst = w;
            *worst_at = n;
        }
    }
    *worst_bp = (uint32_t)(worst * 10000 + 0.5);
    *mean_bp = (uint32_t)(sum / 65536 * 10000 + 0.5);
}

static void test_params_default_classes(void **state)
{
    (void)state;
    pshm_params_t p;
    pshm_params_default(&p, 1u << 20);
    /* "fine": 8, 16, 32, 48, 64, then four classes per doubling. */
    assert_int_equal(p.nclasses, 45);
    assert_true(p.nclasses <= PSHM_MAX_CLASSES && PSHM_MAX_CLASSES < 0xf0);
    assert_int_equal(p.class_size[0], 8);
    assert_int_equal(p.class_size[3], 48);
    assert_int_equal(p.class_size[4], 64);
    assert_int_equal(p.class_size[5], 80);
    assert_int_equal(p.class_size[8], 128);
    assert_int_equal(p.class_size[9], 160);
    assert_int_equal(p.class_size[44], 65536);
    for (uint32_t c = 1; c < p.nclasses; c++) {
        assert_true(p.class_size[c] > p.class_size[c - 1]);
        assert_int_equal(p.class_size[c] % 16, 0); /* malloc's alignment above 8 bytes */
    }
    uint32_t worst, at, mean;
    waste(&p, &worst, &at, &mean);
    printf("fine classes (%u): worst waste %u.%02u%% (size %u), mean %u.%02u%%\n", p.nclasses,
           worst / 100, worst % 100, at, mean / 100, mean % 100);
    assert_true(worst <= 2000);
    assert_true(mean <= 1000);

    /* The default segment (64 MiB, POOL_DEFAULT_BYTES) holds the default
     * tables: a thread record is 64 + 45 * 512 + 512 (the large-block
     * part) = 23,616 bytes. */
    uint64_t min = pshm_params_min_bytes(&p);
    printf("fine classes: thread record %zu bytes, smallest segment %llu bytes\n",
           sizeof(struct pshm_thread) + p.nclasses * sizeof(struct pshm_tclass) +
               sizeof(struct pshm_tlarge),
           (unsigned long long)min);
    assert_true(min <= UINT64_C(64) << 20);

    /* "pow2", the default before: 14 classes, twice the waste. */
    assert_int_equal(pshm_params_set_classes(&p, "pow2", err, sizeof(err)), 0);
    assert_int_equal(p.nclasses, 14);
    assert_int_equal(p.class_size[0], 8);
    assert_int_equal(p.class_size[13], 65536);
    waste(&p, &worst, &at, &mean);
    printf("pow2 classes (%u): worst waste %u.%02u%% (size %u), mean %u.%02u%%\n", p.nclasses,
           worst / 100, worst % 100, at, mean / 100, mean % 100);
    assert_true(worst >= 4900 && mean >= 2400);
    assert_int_equal(pshm_params_set_classes(&p, "fine", err, sizeof(err)), 0);
    assert_int_equal(p.nclasses, 45);
}

static void test_params_class_lists(void **state)
{
    (void)state;
    pshm_params_t p;
    pshm_params_default(&p, 0);
    assert_int_equal(pshm_params_set_classes(&p, "16-1024", err, sizeof(err)), 0);
    assert_int_equal(p.nclasses, 7);
    assert_int_equal(p.class_size[6], 1024);
    assert_int_equal(pshm_params_set_classes(&p, "8,24,40,4000", err, sizeof(err)), 0);
    assert_int_equal(p.nclasses, 4);
    assert_int_equal(p.class_size[3], 4000);
    assert_int_equal(pshm_params_set_classes(&p, "8,100", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "multiple of 8"));
    assert_int_equal(pshm_params_set_classes(&p, "64,32", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "increase"));
    assert_int_equal(pshm_params_set_classes(&p, "8-100", err, sizeof(err)), -EINVAL);
    assert_int_equal(pshm_params_set_classes(&p, "abc", err, sizeof(err)), -EINVAL);
    assert_int_equal(pshm_params_set_classes(&p, "", err, sizeof(err)), -EINVAL);
    assert_int_equal(pshm_params_set_classes(&p, "8,", err, sizeof(err)), 0);
    assert_int_equal(p.nclasses, 1);
}

static void test_view_accepts_fresh_segment(void **state)
{
    (void)state;
    pshm_params_t p;
    pshm_params_default(&p, 0);
    void *base = make(&p, 16u << 20);
    pshm_seg_t s;
    assert_int_equal(pshm_view(&s, base, 16u << 20, err, sizeof(err)), 0);
    assert_int_equal(s.nclasses, p.nclasses);
    assert_int_equal(s.data_off % (1u << s.span_shift), 0);
    assert_true(s.nspans > p.nclasses);
    assert_int_equal(pshm_check(&s, err, sizeof(err)), 0);
    pshm_os_unmap(base, 16u << 20);
}

static void test_view_refuses_foreign(void **state)
{
    (void)state;
    pshm_seg_t s;
    uint64_t *junk = calloc(1, 8192);
    memcpy(junk, "NOTPOOLD", 8);
    assert_int_equal(pshm_view(&s, junk, 8192, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "foreign"));
    free(junk);
}

static void test_view_refuses_other_abi(void **state)
{
    (void)state;
    pshm_params_t p;
    pshm_params_default(&p, 0);
    void *base = make(&p, 16u << 20);
    ((struct pshm_header *)base)->abi_version = PSHM_ABI_VERSION + 1;
    pshm_seg_t s;
    assert_int_equal(pshm_view(&s, base, 16u << 20, err, sizeof(err)), -EPROTO);
    assert_non_null(strstr(err, "ABI version"));
    pshm_os_unmap(base, 16u << 20);
}

static void test_view_refuses_truncated(void **state)
{
    (void)state;
    pshm_params_t p;
    pshm_params_default(&p, 0);
    void *base = make(&p, 16u << 20);
    pshm_seg_t s;
    assert_int_equal(pshm_view(&s, base, 8u << 20, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "truncated"));
    assert_int_equal(pshm_view(&s, base, 100, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "truncated"));
    pshm_os_unmap(base, 16u << 20);
}

static void test_view_refuses_corrupt_tables(void **state)
{
    (void)state;
    pshm_params_t p;
    pshm_params_default(&p, 0);
    void *base = make(&p, 16u << 20);
    struct pshm_header *h = base;
    pshm_seg_t s;
    uint64_t saved = h->data_off;
    h->data_off = 12345;
    assert_int_equal(pshm_view(&s, base, 16u << 20, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "corrupt"));
    h->data_off = saved;
    struct pshm_class *k = (struct pshm_class *)(void *)((uint8_t *)base + h->classes_off);
    uint32_t bs3 = k[3].block_size;
    k[3].block_size = 7;
    assert_int_equal(pshm_view(&s, base, 16u << 20, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "class"));
    k[3].block_size = bs3;
    k[3].batch = 1000;
    assert_int_equal(pshm_view(&s, base, 16u << 20, err, sizeof(err)), -EBADMSG);
    k[3].batch = k[3].cache_cap / 2;
    uint32_t nclasses = h->nclasses;
    h->nclasses = 1000;
    assert_int_equal(pshm_view(&s, base, 16u << 20, err, sizeof(err)), -EBADMSG);
    h->nclasses = nclasses;
    assert_int_equal(pshm_view(&s, base, 16u << 20, err, sizeof(err)), 0);
    pshm_os_unmap(base, 16u << 20);
}

static void test_format_refuses_bad_params(void **state)
{
    (void)state;
    pshm_params_t p;
    pshm_params_default(&p, 4096);
    uint8_t *buf = calloc(1, 4096);
    assert_int_equal(pshm_format(buf, &p, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "too small"));
    p.bytes = UINT64_C(64) << 30;
    assert_int_equal(pshm_format(buf, &p, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "32 GiB"));
    free(buf);
}

static void test_block_class_non_power_of_two(void **state)
{
    (void)state;
    pshm_params_t p;
    pshm_params_default(&p, 0);
    assert_int_equal(pshm_params_set_classes(&p, "24,40,1000", err, sizeof(err)), 0);
    void *base = make(&p, 4u << 20);
    pshm_seg_t s;
    assert_int_equal(pshm_view(&s, base, 4u << 20, err, sizeof(err)), 0);
    uint32_t a, b;
    int n = pshm_span_claim(&s, NULL, 0);
    assert_true(n >= 0);
    assert_int_equal(pshm_span_commit(&s, (uint32_t)n, 1), 0);
    pshm_span_publish(&s, (uint32_t)n, 2, &a, &b);
    uint64_t off = (uint64_t)a << 3;
    assert_int_equal(pshm_block_class(&s, off), 2);
    assert_int_equal(pshm_block_class(&s, off + 1000), 2);
    assert_int_equal(pshm_block_class(&s, off + 1008), -EINVAL);
    assert_int_equal(pshm_block_class(&s, off + 64 * 1000), 2);
    /* A block start in the span's owner tail: a block start by the size, so
     * pshm_block_class() names the class (as it does for a power of two),
     * and pshm_block_at(), the check of a block named from outside,
     * refuses it; its owner byte stays FREE, so a free refuses it too. */
    assert_int_equal(pshm_block_class(&s, off + 65 * 1000), 2);
    assert_int_equal(pshm_block_at(&s, off + 64 * 1000), 2);
    assert_int_equal(pshm_block_at(&s, off + 65 * 1000), -EINVAL);
    assert_int_equal(pshm_owner(&s, 2, off + 65 * 1000)[0], PSHM_OWN_FREE);
    assert_int_equal(b - a, 65 * 1000 / 8);
    /* The next span is not carved yet. */
    assert_int_equal(pshm_block_class(&s, off + 65536), -EINVAL);
    assert_int_equal(pshm_block_class(&s, 0), -EINVAL);
    assert_int_equal(pshm_block_class(&s, UINT64_MAX - 7), -EINVAL);
    pshm_region_push_raw(&s, 2, a, b);
    pshm_os_unmap(base, 4u << 20);
}

/* pshm_on_block_start() (one multiply) against the remainder, and
 * pshm_divide()'s quotient against the division, on every
 * in-span offset a 64 KiB span has, aligned or not, for every multiple of
 * 8 up to 2 KiB and every default class; and on offsets around multiples
 * of larger sizes in a 1 GiB span (the largest a span can be). */
static void test_block_start_is_exact(void **state)
{
    (void)state;
    pshm_seg_t s;
    memset(&s, 0, sizeof(s));
    pshm_params_t p;
    pshm_params_default(&p, 0);
    uint32_t sizes[PSHM_MAX_CLASSES + 256];
    uint32_t n = 0;
    for (uint32_t c = 0; c < p.nclasses; c++)
        sizes[n++] = p.class_size[c];
    for (uint32_t d = 8; d <= 2048; d += 8)
        sizes[n++] = d;
    s.span_mask = 0xffff;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t d = sizes[i];
        s.block_magic[0] = UINT64_MAX / d + 1;
        for (uint64_t in = 0; in <= 0xffff; in++) {
            /* A span number above it must not matter: rel is masked. */
            uint64_t rel = in + (UINT64_C(5) << 16);
            if (pshm_on_block_start(&s, rel, 0) != (in % d == 0) ||
                (in % d == 0 && pshm_divide(&s, rel, 0).q != in / d))
                fail_msg("size %u, offset %llu", d, (unsigned long long)in);
        }
    }
    static const uint32_t big[] = {40960, 65544, 1000000, 3u << 20, (1u << 30) - 8, 1u << 30};
    s.span_mask = (UINT64_C(1) << 30) - 1;
    uint64_t x = 88172645463325252ull; /* xorshift64 */
    for (uint32_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        uint32_t d = big[i];
        s.block_magic[0] = UINT64_MAX / d + 1;
        for (int k = 0; k < 200000; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            uint64_t m = (x % ((UINT64_C(1) << 30) / d)) * d; /* a multiple below 2^30 */
            for (int64_t delta = -9; delta <= 9; delta++) {
                uint64_t in = (m + (uint64_t)delta) & s.span_mask;
                if (pshm_on_block_start(&s, in, 0) != (in % d == 0) ||
                    (in % d == 0 && pshm_divide(&s, in, 0).q != in / d))
                    fail_msg("size %u, offset %llu", d, (unsigned long long)in);
            }
        }
    }
}

static void test_named_segment_create_open_unlink(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof(name), "/poold-test-shm-%d", (int)getpid());
    pshm_os_unlink(name);
    void *base = NULL;
    assert_int_equal(
        pshm_os_create(name, 16u << 20, 16u << 20, 0600, -1, true, &base, err, sizeof(err)), 0);
    pshm_params_t p;
    pshm_params_default(&p, 16u << 20);
    assert_int_equal(pshm_format(base, &p, err, sizeof(err)), 0);
    void *again = NULL;
    assert_int_equal(
        pshm_os_create(name, 16u << 20, 16u << 20, 0600, -1, true, &again, err, sizeof(err)),
        -EEXIST);
    void *other = NULL;
    uint64_t bytes = 0;
    assert_int_equal(pshm_os_open(name, &other, &bytes, err, sizeof(err)), 0);
    assert_int_equal(bytes, 16u << 20);
    pshm_seg_t s;
    assert_int_equal(pshm_view(&s, other, bytes, err, sizeof(err)), 0);
    pshm_os_unmap(other, bytes);
    pshm_os_unmap(base, 16u << 20);
    assert_int_equal(pshm_os_unlink(name), 0);
    assert_int_equal(pshm_os_open(name, &other, &bytes, err, sizeof(err)), -ENOENT);
}

/* A /dev/shm too small for the segment: a clear error at creation, never a
 * SIGBUS later. Needs root to mount a small tmpfs in a private namespace. */
static void test_create_on_full_dev_shm_fails_cleanly(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        skip();
        return;
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=4m") < 0)
            _exit(77);
        void *base = NULL;
        int rc = pshm_os_create("/poold-test-full", 64u << 20, 64u << 20, 0600, -1, true, &base,
                                err, sizeof(err));
        int ok = rc == -ENOSPC && strstr(err, "/dev/shm") != NULL;
        /* and nothing is left behind */
        void *o;
        uint64_t b;
        ok = ok && pshm_os_open("/poold-test-full", &o, &b, err, sizeof(err)) == -ENOENT;
        _exit(ok ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
        skip();
        return;
    }
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A small segment (classes 16 and 256, 4 process slots, 4 records) and a
 * dead process in it: its slot and one record, with a carving range of
 * class 0 installed. */
struct dead_seg {
    void *base;
    uint64_t bytes;
    pshm_seg_t s;
    int dead;
    struct pshm_thread *dt;
};

static void dead_seg_make(struct dead_seg *d)
{
    pshm_params_t p;
    pshm_params_default(&p, 0);
    assert_int_equal(pshm_params_set_classes(&p, "16,256", err, sizeof(err)), 0);
    p.max_procs = 4;
    p.max_threads = 4;
    d->bytes = pshm_params_min_bytes(&p) + (UINT64_C(8) << 16);
    d->base = make(&p, d->bytes);
    assert_int_equal(pshm_view(&d->s, d->base, d->bytes, err, sizeof(err)), 0);
    d->dead = pshm_proc_claim(&d->s, 999999999, 0, PSHM_VIA_DIRECT);
    assert_true(d->dead >= 0);
    d->dt = pshm_thread_claim(&d->s, (uint32_t)d->dead, 1);
    assert_non_null(d->dt);
    assert_int_equal(pshm_rec_install(&d->s, d->dt, 0), 0);
}

/* Carve the next block of tc's range (tc of class 0) as the fast path
 * does (cursor and count in one store); its index. */
static uint32_t carve_one(const pshm_seg_t *s, struct pshm_tclass *tc)
{
    uint32_t idx = pshm_tclass_fresh_next(tc);
    uint64_t w = pa_load_relaxed(&tc->fresh_w);
    pa_store_relaxed(&tc->fresh_w, w + (UINT64_C(1) << 32) + s->block_size[0] / 8);
    return idx;
}

/* Regression (fuzz_segment): a free thread record whose cache words were
 * scribbled on (count far past the cache) was claimed as it was, and the
 * next flush through it (poold's own record, reclaiming a dead slot)
 * indexed slots[] with the scribbled count. A claimed record starts empty;
 * what it held is counted as dropped. */
static void test_claim_scribbled_free_record_starts_empty(void **state)
{
    (void)state;
    struct dead_seg d;
    dead_seg_make(&d);
    pshm_seg_t s = d.s;
    int dead = d.dead;
    struct pshm_thread *dt = d.dt;
    /* The dead process owns 100 blocks of class 0. */
    for (int i = 0; i < 100; i++)
        pa_store_relaxed(pshm_owner_idx(&s, 0, carve_one(&s, &dt->cls[0])),
                         pshm_own_val((uint32_t)dead));
    /* Scribble every free record's cache words. */
    for (uint32_t i = 0; i < s.max_threads; i++) {
        struct pshm_thread *t = pshm_thread_at(&s, i);
        if (pa_load_relaxed(&t->owner) != PSHM_NO_OWNER)
            continue;
        pa_store_relaxed(&t->cls[0].count, 3684465);
        pa_store_relaxed(&t->cls[1].hot, 12345);
        pa_store_relaxed(&t->cls[1].pend.op, PSHM_PEND_PUSH);
    }
    uint64_t dropped0 = pa_load_relaxed(&s.hdr->entries_dropped);
    int me = pshm_proc_claim(&s, getpid(), 0, PSHM_VIA_POOLD);
    assert_true(me >= 0);
    pshm_actor_t actor = {(uint32_t)me, pshm_thread_claim(&s, (uint32_t)me, 2)};
    assert_non_null(actor.rec);
    assert_int_equal(pa_load_relaxed(&actor.rec->cls[0].count), 0);
    assert_int_equal(pa_load_relaxed(&actor.rec->cls[1].hot), 0);
    assert_int_equal(pa_load_relaxed(&actor.rec->cls[1].pend.op), PSHM_PEND_NONE);
    assert_true(pa_load_relaxed(&s.hdr->entries_dropped) > dropped0);
    pshm_reclaimed_t r;
    assert_int_equal(pshm_proc_reclaim(&s, (uint32_t)dead, &actor, &r), 0);
    assert_int_equal(r.in_use_returned, 100);
    pshm_os_unmap(d.base, d.bytes);
}

/* Regression (fuzz_reclaim): counters scribbled so that the books' sum
 * overflowed a signed 64-bit add in pshm_check (UBSan); they are reported
 * as books that disagree. */
static void test_check_huge_counters(void **state)
{
    (void)state;
    struct dead_seg d;
    dead_seg_make(&d);
    struct pshm_tclass *tc = &d.dt->cls[0];
    pa_store_relaxed(&tc->moved_out, UINT64_C(0x7000000000000000));
    pa_store_relaxed(&tc->uncarved, UINT64_C(0x2000000000000000));
    int rc = pshm_check(&d.s, err, sizeof(err));
    print_message("check: %d %s\n", rc, err);
    assert_int_equal(rc, -EUCLEAN);
    pshm_os_unmap(d.base, d.bytes);
}

/* Regression (fuzz_reclaim): a dead thread's record with a full cache
 * (count == cache_cap, which recovery accepts) and a block in `hot`: the
 * reclaim's drain pushed hot down into slots[cache_cap + 1], past the end
 * of slots[] (UBSan: index 65 out of bounds; it clobbered the field after
 * it). It flushes first now, and every block comes back. */
static void test_reclaim_full_cache_with_hot(void **state)
{
    (void)state;
    struct dead_seg d;
    dead_seg_make(&d);
    pshm_seg_t s = d.s;
    int dead = d.dead;
    struct pshm_tclass *tc = &d.dt->cls[0];
    uint32_t cap = s.cache_cap[0];
    assert_int_equal(cap, PSHM_CACHE_CAP);
    /* Carve cap + 1 blocks straight into the cache: cap in slots, one hot
     * (as the fast path leaves them: owner bytes free, counted carved). */
    for (uint32_t i = 0; i <= cap; i++) {
        uint32_t idx = carve_one(&s, tc);
        if (i < cap)
            tc->slots[i + 1] = idx;
        else
            pa_store_relaxed(&tc->hot, (uint64_t)idx << 3);
    }
    pa_store_relaxed(&tc->count, cap);
    tc->reserved2 = 0;
    assert_int_equal(pshm_check(&s, err, sizeof(err)), 0);
    int me = pshm_proc_claim(&s, getpid(), 0, PSHM_VIA_POOLD);
    pshm_actor_t actor = {(uint32_t)me, pshm_thread_claim(&s, (uint32_t)me, 2)};
    pshm_reclaimed_t r;
    assert_int_equal(pshm_proc_reclaim(&s, (uint32_t)dead, &actor, &r), 0);
    assert_int_equal(tc->reserved2, 0); /* nothing written past slots[] */
    assert_int_equal(r.blocks_returned, cap + 1);
    assert_int_equal(r.entries_dropped, 0);
    if (pshm_check(&s, err, sizeof(err)) != 0)
        fail_msg("books after the reclaim: %s", err);
    pshm_os_unmap(d.base, d.bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_default_classes),
        cmocka_unit_test(test_params_class_lists),
        cmocka_unit_test(test_view_accepts_fresh_segment),
        cmocka_unit_test(test_view_refuses_foreign),
        cmocka_unit_test(test_view_refuses_other_abi),
        cmocka_unit_test(test_view_refuses_truncated),
        cmocka_unit_test(test_view_refuses_corrupt_tables),
        cmocka_unit_test(test_format_refuses_bad_params),
        cmocka_unit_test(test_block_class_non_power_of_two),
        cmocka_unit_test(test_block_start_is_exact),
        cmocka_unit_test(test_named_segment_create_open_unlink),
        cmocka_unit_test(test_create_on_full_dev_shm_fails_cleanly),
        cmocka_unit_test(test_claim_scribbled_free_record_starts_empty),
        cmocka_unit_test(test_check_huge_counters),
        cmocka_unit_test(test_reclaim_full_cache_with_hot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
