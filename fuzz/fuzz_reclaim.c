/* SPDX-License-Identifier: MIT */
/*
 * fuzz_reclaim: poold's reclaim of a dead slot over an arbitrary record,
 * owner table and list contents.
 *
 * The segment is real (fuzz_seg.h): two children worked through their own
 * slots and died. Each input then scribbles where a dying or malicious
 * process could have: the first dead slot's thread records (any byte,
 * their journal in particular), its slot, owner bytes of carved spans, the
 * class list heads and the link words of blocks; then pshm_proc_reclaim()
 * reclaims both dead slots with poold's slot and record as the actor, and
 * the statistics and the checker run over what is left. Nothing may crash,
 * hang or touch memory outside the mapping. Where the input wrote nothing,
 * or nothing but journals that name no operation (NONE, or a code past the
 * last, which the reclaim must ignore), the books must be exact after the
 * reclaim of the two dead slots: pshm_check() clean and neither slot still
 * live (a reclaim that drops a block, hands one out twice or acts on an
 * empty journal fails). Any other scribble, a forged journal of a real
 * operation included, may leave a segment pshm_check() reports corrupt.
 *
 * Input: a list of operations [u8 op][...]:
 *   0: [u8 rec][u16 off][u8 len][bytes] into one of the dead slot's records
 *   1: [u8 span][u16 i][u8 v]    owner byte i of a carved span
 *   2: [u8 c][u8 which][8 bytes] a class's central or region head
 *   3: [u8 span][u16 i][8 bytes] the link word of block i of a carved span
 *   4: [u8 off][u8 len][bytes]   the dead slot's proc record
 *   5: [u8 c][u8 op][u16 da][u16 db][u8 n] a journal (pend) near real blocks
 *   6: [u8 rec][u8 c][u32 seed]  during the reclaim, from a second thread,
 *      pseudo-random bytes into the class-c part of one of the dead slot's
 *      records (c past the last: the whole record) until the reclaim ends:
 *      a peer writing a record while poold recovers it. The reclaim reads
 *      every field once and checks what it read before it uses it, so this
 *      may corrupt the books but never makes it read or write outside the
 *      mapping (ASan and the bounds of every index say so).
 *   7: [u8 span][u8 which][8 bytes] a span's claim word (which odd), or a
 *      word of its owner slice (a large block keeps its owner byte, length
 *      and size asked there)
 *   8: [u8 rec][u8 op][u8 head][u8 k] the large-block journal of one of the
 *      dead slot's records, naming a span near real ones
 */
#include <pthread.h>
#include <sched.h>

#include "fuzz_seg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Records owned by slot `slot` (in the image, as it was). */
static uint32_t dead_records(const pshm_seg_t *s, uint32_t slot, struct pshm_thread **out)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->max_threads; i++) {
        struct pshm_thread *t = pshm_thread_at(s, i);
        if (pa_load_relaxed(&t->owner) == slot + 1) /* relaxed: single-threaded */
            out[n++] = t;
    }
    return n;
}

/* The n-th carved span (cycling), or UINT32_MAX when none is carved. */
static uint32_t carved_span(const pshm_seg_t *s, uint32_t n)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->nspans; i++)
        k += pa_load_relaxed(&s->spanmap[i]) < s->nclasses; /* relaxed: as above */
    if (k == 0)
        return UINT32_MAX;
    n %= k;
    for (uint32_t i = 0; i < s->nspans; i++)
        if (pa_load_relaxed(&s->spanmap[i]) < s->nclasses && n-- == 0)
            return i;
    return UINT32_MAX;
}

/* Op 6: what the second thread writes, and until when. */
struct racer {
    uint8_t *at;
    uint32_t len;
    uint64_t x; /* xorshift state */
    pa_u32 stop;
    pa_u32 writing; /* set once the thread writes: the reclaim starts then */
    pthread_t th;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    while (!pa_load_relaxed(&r->stop)) { /* relaxed: a flag; the join orders the rest */
        r->x ^= r->x << 13;
        r->x ^= r->x >> 7;
        r->x ^= r->x << 17;
        /* volatile: a store the reclaimer must not assume absent; the race
         * with its reads is the point (a plain harness, not TSan). */
        ((volatile uint8_t *)r->at)[r->x % r->len] = (uint8_t)(r->x >> 56);
        pa_store_relaxed(&r->writing, 1); /* relaxed: a flag */
    }
    return NULL;
}

/* Scribble what the input says; true when it wrote anything but a journal.
 * An op 6 fills *rc (rc->len 0: none). */
static bool scribble(pshm_seg_t *s, struct fz_in *in, uint32_t slot, struct racer *rc)
{
    bool scribbled = false;
    struct pshm_thread *recs[FZ_MAX_THREADS];
    uint32_t nrec = dead_records(s, slot, recs);
    while (in->i < in->n) {
        uint32_t op = fz_u8(in) % 9;
        switch (op) {
        case 0: {
            uint32_t r = fz_u8(in), off = fz_u8(in) | fz_u8(in) << 8, len = fz_u8(in) % 16 + 1;
            if (nrec == 0)
                break;
            struct pshm_thread *t = recs[r % nrec];
            off %= s->thread_bytes;
            if (off + len > s->thread_bytes)
                len = s->thread_bytes - off;
            fz_copy(in, (uint8_t *)t + off, len);
            scribbled = true;
            break;
        }
        case 1:
        case 3: {
            uint32_t sp = carved_span(s, fz_u8(in));
            uint32_t i = fz_u8(in) | fz_u8(in) << 8;
            if (sp == UINT32_MAX)
                break;
            uint32_t c = pa_load_relaxed(&s->spanmap[sp]); /* relaxed: single-threaded */
            i %= s->blocks_per_span[c];
            uint64_t off =
                s->data_off + ((uint64_t)sp << s->span_shift) + (uint64_t)i * s->block_size[c];
            if (op == 1)
                fz_copy(in, (uint8_t *)pshm_owner(s, c, off), 1);
            else
                fz_copy(in, s->base + off, 8);
            scribbled = true;
            break;
        }
        case 2: {
            uint32_t c = fz_u8(in) % s->nclasses, which = fz_u8(in) & 1;
            fz_copy(in, (uint8_t *)(which ? &s->cls[c].regions : &s->cls[c].central), 16);
            scribbled = true;
            break;
        }
        case 4: {
            uint32_t off = fz_u8(in) % sizeof(struct pshm_proc), len = fz_u8(in) % 8 + 1;
            if (off + len > sizeof(struct pshm_proc))
                len = (uint32_t)sizeof(struct pshm_proc) - off;
            fz_copy(in, (uint8_t *)&s->procs[slot] + off, len);
            scribbled = true;
            break;
        }
        case 5: {
            uint32_t c = fz_u8(in) % s->nclasses, pop = fz_u8(in) % (PSHM_PEND_LAST + 2);
            uint32_t da = fz_u8(in) | fz_u8(in) << 8, db = fz_u8(in) | fz_u8(in) << 8;
            uint32_t n = fz_u8(in);
            if (nrec == 0)
                break;
            struct pshm_tclass *tc = &recs[da % nrec]->cls[c];
            /* Near a real block of the class: the head of its central list
             * or its carving cursor, moved by a small step. */
            uint32_t near = PSHM_HEAD_IDX(pa_load_relaxed(&s->cls[c].central.w));
            if (near == 0)
                near = pshm_tclass_fresh_next(tc);
            uint32_t stride = s->block_size[c] >> 3;
            tc->pend.word[0] = near + (uint32_t)(int32_t)(int8_t)(da >> 8) * stride;
            tc->pend.word[1] = near + (db & 0xff) * stride;
            tc->pend.word[2] = n % (s->cache_cap[c] + 2);
            tc->pend.count = (db >> 8) % (s->cache_cap[c] + 2);
            tc->pend.tag = pa_load_relaxed(&s->cls[c].central.gen) - (n & 1);
            pa_store_relaxed(&tc->pend.op, pop); /* relaxed: single-threaded */
            /* A journal of a real operation, forged near real blocks, can
             * name blocks or a span the process never took: the reclaim has
             * to believe it. One with no operation (NONE, or a code past the
             * last) must change nothing. */
            scribbled |= pop != PSHM_PEND_NONE && pop <= PSHM_PEND_LAST;
            break;
        }
        case 7: {
            uint32_t sp = fz_u8(in) % s->nspans, which = fz_u8(in);
            if (which & 1)
                fz_copy(in, (uint8_t *)&s->carvers[sp], 8);
            else
                fz_copy(in, (uint8_t *)pshm_large_owner(s, sp) + (which >> 1) % 8 * 8, 8);
            scribbled = true;
            break;
        }
        case 8: {
            uint32_t r = fz_u8(in), lop = fz_u8(in) % (PSHM_PEND_LAST + 2);
            uint32_t head = fz_u8(in) % s->nspans, k = fz_u8(in) % 4 + 1;
            if (nrec == 0)
                break;
            struct pshm_tlarge *tl = pshm_tlarge_of(s, recs[r % nrec]);
            tl->pend.large.head = head;
            tl->pend.large.spans = k;
            tl->pend.tag = pa_load_relaxed(&s->carvers[head]); /* relaxed: single-threaded */
            tl->pend.ctr = pa_load_relaxed(&tl->allocs);
            pa_store_relaxed(&tl->pend.op, lop); /* relaxed: single-threaded */
            scribbled |= lop != PSHM_PEND_NONE && lop <= PSHM_PEND_LAST;
            break;
        }
        case 6: {
            uint32_t ri = fz_u8(in), c = fz_u8(in);
            uint64_t seed =
                fz_u8(in) | fz_u8(in) << 8 | fz_u8(in) << 16 | (uint64_t)fz_u8(in) << 24;
            if (nrec == 0)
                break;
            struct pshm_thread *t = recs[ri % nrec];
            if (c < s->nclasses) {
                rc->at = (uint8_t *)&t->cls[c];
                rc->len = (uint32_t)sizeof(t->cls[c]);
            } else {
                rc->at = (uint8_t *)t;
                rc->len = s->thread_bytes;
            }
            rc->x = seed * 0x9e3779b97f4a7c15u | 1;
            scribbled = true;
            break;
        }
        }
    }
    return scribbled;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {data, size, 0};
    pshm_seg_t s;
    fz_view_base(&s);
    pshm_actor_t actor = fz_actor(&s);
    struct racer racer = {.len = 0};
    bool scribbled = scribble(&s, &in, fz_seg_base.dead_slot[0], &racer);
    pa_store_relaxed(&racer.stop, 0); /* relaxed (both): before the thread exists */
    pa_store_relaxed(&racer.writing, 0);
    if (racer.len && pthread_create(&racer.th, NULL, race, &racer) != 0)
        racer.len = 0;
    while (racer.len && !pa_load_relaxed(&racer.writing)) /* relaxed: a flag */
        sched_yield();
    for (int k = 0; k < 2; k++) {
        pshm_reclaimed_t r;
        (void)pshm_proc_reclaim(&s, fz_seg_base.dead_slot[k], &actor, &r);
    }
    if (racer.len) {
        pa_store_relaxed(&racer.stop, 1); /* relaxed: see race() */
        pthread_join(racer.th, NULL);
    }
    pshm_stats_t st;
    pshm_stats(&s, &st);
    char err[256];
    int rc = pshm_check(&s, err, sizeof(err));
    if (!scribbled) {
        if (rc != 0) {
            fprintf(stderr, "fuzz_reclaim: books not exact after a reclaim: %s\n", err);
            abort();
        }
        for (int k = 0; k < 2; k++) /* relaxed: single-threaded */
            if (pa_load_relaxed(&s.procs[fz_seg_base.dead_slot[k]].state) == PSHM_PROC_LIVE) {
                fprintf(stderr, "fuzz_reclaim: dead slot %u still live after its reclaim\n",
                        fz_seg_base.dead_slot[k]);
                abort();
            }
    }
    fz_unmap_image(&fz_seg_map);
    return 0;
}
