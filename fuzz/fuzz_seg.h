/* SPDX-License-Identifier: MIT */
/*
 * fuzz_seg.h: what the segment fuzzers share (fuzz_segment, fuzz_reclaim,
 * fuzz_stats, and fuzz_seedgen, which writes their seed corpora).
 *
 * The base: a real small segment made by the real client library (an
 * embedded pool of fixed parameters) and a short, deterministic workload:
 * the creator allocates, frees and hands off; two forked children do the
 * same through their own slots and exit without detaching, so that the
 * image holds live and dead slots, thread records with caches, carving
 * ranges and counters, batch and region stacks, owner bytes of every kind
 * (free, owned, in transit) in small, odd-sized and large classes. The
 * image is copied out of the pool, and each input works on a fresh copy in
 * a mapping fenced by PROT_NONE pages, so that any read or write outside
 * the mapping faults (ASan does not watch mmap'd memory).
 *
 * Inputs are patch lists, so that the fuzzer mutates what matters (a few
 * bytes of a table) instead of a whole image, and so that a seed can turn
 * the base into another real segment (fuzz_seedgen writes the difference
 * between the base and segments whose workers were SIGKILLed mid-flight).
 * Only harnesses include this file.
 */
#ifndef FUZZ_SEG_H
#define FUZZ_SEG_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "poolclient.h"
#include "pshm.h"

#define FZ_PAGE 4096u
#define FZ_CLASSES "16,48,256,8192"
#define FZ_MAX_PROCS 6u
#define FZ_MAX_THREADS 8u
#define FZ_SPANS 12u

struct fz_base {
    uint8_t *img; /* a private copy of the segment after the workload */
    uint64_t bytes;
    uint64_t data_off;
    uint32_t thread_bytes;
    uint32_t dead_slot[2]; /* the children's slots (their processes exited) */
    uint32_t creator_slot;
};

/* Open an embedded pool with the fuzzers' parameters (pool_open_embedded()
 * with chosen classes and table sizes). */
static inline pool_t *fz_open_pool(void)
{
    char err[256];
    pshm_params_t p;
    void *base = NULL;
    pshm_params_default(&p, 0);
    if (pshm_params_set_classes(&p, FZ_CLASSES, err, sizeof(err)) < 0)
        return NULL;
    p.max_procs = FZ_MAX_PROCS;
    p.max_threads = FZ_MAX_THREADS;
    p.bytes = (pshm_params_min_bytes(&p) + ((uint64_t)FZ_SPANS << 16) + 0xffff) & ~0xffffULL;
    pool_t *pool = pool_new_();
    if (!pool)
        return NULL;
    if (pshm_os_create(NULL, p.bytes, p.bytes, 0600, -1, true, &base, err, sizeof(err)) < 0)
        goto fail;
    pool->seg.base = base;
    pool->seg.bytes = p.bytes;
    if (pshm_format(base, &p, err, sizeof(err)) < 0 ||
        pshm_view(&pool->seg, base, p.bytes, err, sizeof(err)) < 0)
        goto fail;
    pool_build_class_table_(pool);
    pool->creator = true;
    if (pool_register_(pool) < 0)
        goto fail;
    return pool;
fail:
    fprintf(stderr, "fuzz: cannot make the base segment: %s\n", err);
    pool_free_handle_(pool);
    return NULL;
}

/* A deterministic workload of `n` steps on the calling thread: allocate
 * blocks of every class, free two in three (some in another order), hand
 * some off. Blocks left allocated stay owned. */
static inline void fz_workload(pool_t *pool, unsigned seed, int n)
{
    /* Every class, and a large block of two spans. */
    static const size_t sizes[] = {9, 16, 40, 48, 100, 256, 3000, 8192, 70000};
    void *held[256] = {0};
    size_t held_size[256] = {0};
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned k = (seed >> 8) % 256, z = (seed >> 20) % 9;
        if (held[k]) {
            if ((seed >> 4) % 7 == 0)
                (void)pool_handoff(pool, held[k]);
            else
                (void)pool_free(pool, held[k], held_size[k]);
            held[k] = NULL;
        } else {
            held[k] = pool_malloc(pool, sizes[z]);
            held_size[k] = sizes[z];
            if (held[k])
                memset(held[k], (int)k, sizes[z] < 64 ? sizes[z] : 64);
        }
    }
}

/* Run a child process that does `n` steps of the workload through its own
 * slot and then dies: with `kill_after_us` > 0 it is SIGKILLed at about
 * that time (a torn state); else it waits until the pipe `hold` (or NULL)
 * closes and exits without detaching. Returns its pid; the caller
 * reaps it (fz_reap). With `hold`, the call returns once the workload is
 * done, so that the next child, alive beside it, does not reclaim it. */
static inline pid_t fz_child(pool_t *pool, unsigned seed, int n, long kill_after_us,
                             const int hold[2])
{
    int done[2];
    if (pipe(done) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(done[0]);
        if (hold)
            close(hold[1]);
        fz_workload(pool, seed, n);
        if (kill_after_us > 0)
            for (;;)
                fz_workload(pool, ++seed, 64);
        char c = 1, x;
        if (write(done[1], &c, 1) != 1)
            _exit(1);
        if (hold)
            while (read(hold[0], &x, 1) > 0)
                ;
        _exit(0);
    }
    close(done[1]);
    if (kill_after_us > 0) {
        usleep((useconds_t)kill_after_us);
        kill(pid, SIGKILL);
    } else {
        char c;
        (void)!read(done[0], &c, 1);
    }
    close(done[0]);
    return pid;
}

static inline void fz_reap(pid_t pid)
{
    int st;
    if (pid > 0)
        waitpid(pid, &st, 0);
}

/* The base's workload: the creator's, then two children alive together
 * that exit without detaching. */
static inline void fz_base_workload(pool_t *pool)
{
    int hold[2];
    if (pipe(hold) < 0)
        abort();
    fz_workload(pool, 1, 400);
    pid_t a = fz_child(pool, 2, 700, 0, hold);
    pid_t b = fz_child(pool, 3, 500, 0, hold);
    close(hold[0]);
    close(hold[1]);
    fz_reap(a);
    fz_reap(b);
}

static inline int fz_make_base(struct fz_base *b)
{
    memset(b, 0, sizeof(*b));
    pool_t *pool = fz_open_pool();
    if (!pool)
        return -1;
    fz_base_workload(pool);
    const pshm_seg_t *s = &pool->seg;
    b->bytes = s->bytes;
    b->data_off = s->data_off;
    b->thread_bytes = s->thread_bytes;
    b->img = malloc(s->bytes);
    if (!b->img)
        return -1;
    memcpy(b->img, s->base, s->bytes);
    /* The slots: the creator first, then the children, in order. */
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->max_procs; i++) {
        /* relaxed: the children are gone, we are alone. */
        if (pa_load_relaxed(&s->procs[i].state) != PSHM_PROC_LIVE)
            continue;
        if (pa_load_relaxed(&s->procs[i].pid) == (int32_t)getpid())
            b->creator_slot = i;
        else if (k < 2)
            b->dead_slot[k++] = i;
    }
    /* The pool stays open (its mapping unused from here): detaching would
     * reclaim the children and change nothing we keep. */
    return k == 2 ? 0 : -1;
}

/* A mapping of `bytes` with PROT_NONE pages before and after. */
struct fz_map {
    uint8_t *map; /* guard, bytes, guard */
    uint64_t cap;
};

static inline uint8_t *fz_map_image(struct fz_map *m, const uint8_t *img, uint64_t bytes)
{
    uint64_t len = (bytes + FZ_PAGE - 1) & ~(uint64_t)(FZ_PAGE - 1);
    if (m->map && m->cap != len) {
        munmap(m->map, m->cap + 2 * FZ_PAGE);
        m->map = NULL;
    }
    if (!m->map) {
        void *p = mmap(NULL, len + 2 * FZ_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            abort();
        m->map = p;
        m->cap = len;
    }
    uint8_t *base = m->map + FZ_PAGE + (len - bytes); /* ends at the tail guard */
    if (mprotect(m->map + FZ_PAGE, len, PROT_READ | PROT_WRITE) < 0)
        abort();
    memcpy(base, img, bytes);
    return base;
}

/* Fence the mapping again (so that the next input starts clean). */
static inline void fz_unmap_image(struct fz_map *m)
{
    if (m->map)
        mprotect(m->map + FZ_PAGE, m->cap, PROT_NONE);
}

/* Every harness's base segment and its fenced copy, made once by the
 * LLVMFuzzerInitialize they share (fuzz_harness.c). */
extern struct fz_base fz_seg_base;
extern struct fz_map fz_seg_map;
/* A fresh copy of the base in the fenced mapping, viewed in *s (the base is
 * a real segment: a failed view aborts). */
void fz_view_base(pshm_seg_t *s);

/* The reclaimer poold would be: its own slot (PSHM_VIA_POOLD) and one
 * record, claimed in the segment under test; rec NULL when none is free
 * (the reclaim then puts blocks in transit). */
static inline pshm_actor_t fz_actor(pshm_seg_t *s)
{
    pshm_actor_t a = {UINT32_MAX, NULL}; /* slot UINT32_MAX: none claimed */
    int slot = pshm_proc_claim(s, getpid(), 0, PSHM_VIA_POOLD);
    if (slot < 0)
        return a;
    a.slot = (uint32_t)slot;
    a.rec = pshm_thread_claim(s, a.slot, 1);
    return a;
}

/* Little-endian reads from a fuzz input, 0 past its end. */
struct fz_in {
    const uint8_t *p;
    size_t n, i;
};

static inline uint32_t fz_u8(struct fz_in *in)
{
    return in->i < in->n ? in->p[in->i++] : 0;
}

static inline uint32_t fz_u32(struct fz_in *in)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++)
        v |= fz_u8(in) << (8 * k);
    return v;
}

/* Copy up to len bytes of input to dst (not past the input's end). */
static inline void fz_copy(struct fz_in *in, uint8_t *dst, size_t len)
{
    size_t k = in->n - in->i < len ? in->n - in->i : len;
    memcpy(dst, in->p + in->i, k);
    in->i += k;
}

#endif /* FUZZ_SEG_H */
