/* SPDX-License-Identifier: MIT */
/*
 * fuzz_seedgen: writes the seed corpora of the segment fuzzers from real
 * segments. `fuzz_seedgen DIR` makes DIR/segment, DIR/reclaim, DIR/stats,
 * DIR/verify.
 *
 * It builds the same base as the fuzzers (fuzz_seg.h), then makes more
 * real segments from it: children SIGKILLed at random moments in the
 * middle of their workload (torn caches, journals left set, blocks in
 * transit), a child that hands everything off, the same after the
 * creator's own reclaim. Each seed is the difference between the base and
 * one of them, in the input format of the fuzzer it is for, so that the
 * fuzzers start from the states a real crash leaves. Plus a few inputs
 * made by hand for every operation of fuzz_reclaim, and operation lists
 * for fuzz_verify: a process that works and dies in each way, in each
 * class, then is reclaimed.
 */
#include <sys/stat.h>

#include "fuzz_seg.h"

static int nseed;

static void put(const char *dir, const char *what, const uint8_t *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s-%03d", dir, what, nseed++);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

struct out {
    uint8_t *p;
    size_t n, cap;
};

static void emit(struct out *o, const void *p, size_t n)
{
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2 + 4096;
        o->p = realloc(o->p, o->cap);
        if (!o->p)
            exit(1);
    }
    memcpy(o->p + o->n, p, n);
    o->n += n;
}

static void emit_u8(struct out *o, uint32_t v)
{
    uint8_t b = (uint8_t)v;
    emit(o, &b, 1);
}

static void emit_u16(struct out *o, uint32_t v)
{
    emit_u8(o, v & 0xff);
    emit_u8(o, v >> 8);
}

/* fuzz_segment patches turning `from` into `to` (whole image, region 2). */
static void diff_segment(struct out *o, const uint8_t *from, const uint8_t *to, uint64_t bytes)
{
    emit_u8(o, 0); /* no cut */
    for (uint64_t i = 0; i < bytes && o->n < 60000;) {
        if (from[i] == to[i]) {
            i++;
            continue;
        }
        uint32_t n = 0;
        while (n < 32 && i + n < bytes && from[i + n] != to[i + n])
            n++;
        uint32_t w = (2u << 30) | (uint32_t)i;
        for (int k = 0; k < 4; k++)
            emit_u8(o, w >> (8 * k));
        emit_u8(o, n - 1);
        emit(o, to + i, n);
        i += n;
    }
}

/* fuzz_reclaim op 0 patches turning record r of the base into `to`. */
static void diff_record(struct out *o, uint32_t r, const uint8_t *from, const uint8_t *to,
                        uint32_t len)
{
    for (uint32_t i = 0; i < len && i < 65536;) {
        if (from[i] == to[i]) {
            i++;
            continue;
        }
        uint32_t n = 0;
        while (n < 16 && i + n < len && from[i + n] != to[i + n])
            n++;
        emit_u8(o, 0);
        emit_u8(o, r);
        emit_u16(o, i);
        emit_u8(o, n - 1);
        emit(o, to + i, n);
        i += n;
    }
}

/* Records of slot `slot` in a segment image (by view). */
static uint32_t records_of(const pshm_seg_t *s, uint32_t slot, uint8_t **out, uint32_t max)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->max_threads && n < max; i++) {
        struct pshm_thread *t = pshm_thread_at(s, i);
        if (pa_load_relaxed(&t->owner) == slot + 1) /* relaxed: single-threaded */
            out[n++] = (uint8_t *)t;
    }
    return n;
}

static void from_torn(const char *dir, const struct fz_base *b, pool_t *pool, bool reclaim)
{
    const pshm_seg_t *s = &pool->seg;
    if (reclaim) {
        pool_stats_t st;
        (void)pool_stats(pool, &st); /* an embedded pool reclaims the dead here */
    }
    struct out o = {0};
    diff_segment(&o, b->img, s->base, s->bytes);
    char sub[512];
    snprintf(sub, sizeof(sub), "%s/segment", dir);
    put(sub, "torn", o.p, o.n);
    o.n = 0;
    /* fuzz_reclaim: a dead slot's records in the torn segment, over the
     * base's dead slot's records. */
    pshm_seg_t bv;
    char err[256];
    if (pshm_view(&bv, b->img, b->bytes, err, sizeof(err)) < 0)
        return;
    uint8_t *from[FZ_MAX_THREADS], *to[FZ_MAX_THREADS];
    uint32_t nf = records_of(&bv, b->dead_slot[0], from, FZ_MAX_THREADS);
    for (uint32_t slot = 0; slot < s->max_procs; slot++) {
        if (slot == b->creator_slot)
            continue;
        uint32_t nt = records_of(s, slot, to, FZ_MAX_THREADS);
        for (uint32_t k = 0; k < nt && k < nf; k++)
            diff_record(&o, k, from[k], to[k], s->thread_bytes);
        if (o.n) {
            snprintf(sub, sizeof(sub), "%s/reclaim", dir);
            put(sub, "torn", o.p, o.n);
            o.n = 0;
        }
    }
    free(o.p);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seedgen DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    char sub[512];
    const char *subs[] = {"segment", "reclaim", "stats", "verify"};
    mkdir(dir, 0755);
    for (int i = 0; i < 4; i++) {
        snprintf(sub, sizeof(sub), "%s/%s", dir, subs[i]);
        mkdir(sub, 0755);
    }
    struct fz_base b;
    if (fz_make_base(&b) < 0) {
        fprintf(stderr, "fuzz_seedgen: cannot make the base\n");
        return 1;
    }
    /* Torn segments: the base's workload again, then children killed. */
    for (int round = 0; round < 6; round++) {
        pool_t *pool = fz_open_pool();
        if (!pool)
            return 1;
        fz_base_workload(pool);
        for (int k = 0; k < 2; k++)
            fz_reap(fz_child(pool, (unsigned)(10 + round * 2 + k), 300, 200 + 700 * round + 300 * k,
                             NULL));
        from_torn(dir, &b, pool, round % 2 == 1);
    }
    /* Plain inputs: the base as is, and cut short. */
    uint8_t zero[1] = {0}, cut[1] = {1};
    snprintf(sub, sizeof(sub), "%s/segment", dir);
    put(sub, "base", zero, 1);
    put(sub, "cut", cut, 1);
    /* fuzz_reclaim: each operation, and each journal step in each class. */
    snprintf(sub, sizeof(sub), "%s/reclaim", dir);
    for (uint32_t op = 0; op <= 10; op++)
        for (uint32_t c = 0; c < 4; c++) {
            uint8_t in[] = {5, (uint8_t)c, (uint8_t)op, 0, (uint8_t)(op * 3), 4, 1, 7};
            put(sub, "pend", in, sizeof(in));
        }
    {
        uint8_t own[] = {1, 0, 3, 0, 0xff, 1, 1, 5, 0, 1, 1, 2, 9, 0, 0xfe};
        uint8_t head[] = {2, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0};
        uint8_t link[] = {3, 0, 1, 0, 0x10, 0, 0, 0, 0x10, 0, 0, 0};
        uint8_t proc[] = {4, 0, 4, 3, 0, 0, 0};
        put(sub, "own", own, sizeof(own));
        put(sub, "head", head, sizeof(head));
        put(sub, "link", link, sizeof(link));
        put(sub, "proc", proc, sizeof(proc));
        /* A peer writing a record during the reclaim: one class, the whole record. */
        uint8_t race_cls[] = {6, 0, 2, 0x5a, 0xa5, 0x0f, 0xf0};
        uint8_t race_all[] = {6, 1, 0xff, 1, 2, 3, 4};
        put(sub, "race-class", race_cls, sizeof(race_cls));
        put(sub, "race-record", race_all, sizeof(race_all));
    }
    /* fuzz_stats: counters at their limits. */
    snprintf(sub, sizeof(sub), "%s/stats", dir);
    {
        uint8_t hot[] = {0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        uint8_t cnt[] = {0, 8, 0, 3, 0xff, 0xff, 0xff, 0xff};
        uint8_t cls[] = {1, 0, 0, 15, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        uint8_t hdr[] = {2, 8, 0, 7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        uint8_t prc[] = {3, 0, 0, 3, 2, 0, 0, 0};
        put(sub, "hot", hot, sizeof(hot));
        put(sub, "count", cnt, sizeof(cnt));
        put(sub, "class", cls, sizeof(cls));
        put(sub, "header", hdr, sizeof(hdr));
        put(sub, "proc", prc, sizeof(prc));
    }
    /* fuzz_verify: [op a b c] steps (fuzz_verify.c's step()): two
     * processes start and work (allocate, free, free each other's, hand
     * off, adopt), one dies in way `how` in class c, the checks run, the
     * other goes on, the dead one is reclaimed. */
    snprintf(sub, sizeof(sub), "%s/verify", dir);
    for (uint32_t how = 0; how < 8; how++)
        for (uint32_t c = 0; c < 4; c++) {
            struct out o = {0};
            const uint8_t work[][4] = {{0, 0, 0, 0},
                                       {0, 0, 0, 0},
                                       {1, 0, 0, 0},
                                       {2, 0, 7, (uint8_t)c},
                                       {2, 1, 7, (uint8_t)c},
                                       {2, 0, 5, 1},
                                       {4, 0, 0, 2},
                                       {5, 0, 1, 3},
                                       {6, 1, 0, 0},
                                       {7, 0, 0, 1},
                                       {2, 0, 7, (uint8_t)c},
                                       {9, 1, 0, (uint8_t)c},
                                       {12, 0, (uint8_t)how, (uint8_t)c},
                                       {2, 1, 7, (uint8_t)c},
                                       {4, 1, 0, 7},
                                       {13, 0, 0, 0},
                                       {10, 1, 0, 0},
                                       {13, 0, 0, 0}};
            emit(&o, work, sizeof(work));
            put(sub, "death", o.p, o.n);
            free(o.p);
        }
    printf("fuzz_seedgen: %d seeds in %s\n", nseed, dir);
    return 0;
}
