/* SPDX-License-Identifier: MIT */
/*
 * fuzz_segment: adoption of an arbitrary segment image.
 *
 * Each input patches a copy of a real segment (fuzz_seg.h), may truncate
 * the mapping, and hands it to pshm_view() as poold does when it adopts a
 * segment. When the view accepts it, everything poold then does with a
 * segment it did not make runs over it: statistics (pshm_stats,
 * pshm_proc_stats), the checkers (pshm_check, and pshm_verify, full and
 * sampled, as poold runs it at adoption and on its timer), the reclaim of every slot
 * with poold's own slot and record as the actor (pshm_proc_reclaim), and
 * statistics and the checker once more. Nothing may crash, hang or touch
 * memory outside the mapping (guard pages); the checker may say the
 * segment is corrupt, it may not misbehave finding out.
 *
 * Input: byte 0 = pages cut off the end of the mapping (low 2 bits), then
 * patches of [u32 where][u8 len][len bytes]; where's top 2 bits pick the
 * region (0: header page, 1: the tables up to the data, 2 and 3: anywhere)
 * and the rest is an offset modulo its length.
 */
#include "fuzz_seg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Apply the input's patches to img (len bytes); the cut is applied later. */
static void apply_patches(struct fz_in *in, uint8_t *img, uint64_t len, uint64_t data_off)
{
    while (in->i + 5 <= in->n) {
        uint32_t w = fz_u32(in);
        uint32_t n = fz_u8(in) % 32 + 1;
        uint64_t lo = 0, span = len;
        switch (w >> 30) {
        case 0: span = FZ_PAGE; break;
        case 1: lo = FZ_PAGE, span = data_off - FZ_PAGE; break;
        default: break;
        }
        uint64_t off = lo + (w & 0x3fffffffu) % span;
        if (off + n > len)
            n = (uint32_t)(len - off);
        fz_copy(in, img + off, n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {data, size, 0};
    uint32_t cut = fz_u8(&in) & 3;
    uint64_t bytes = fz_seg_base.bytes - (uint64_t)cut * FZ_PAGE;
    static uint8_t *work;
    if (!work && !(work = malloc(fz_seg_base.bytes)))
        abort();
    memcpy(work, fz_seg_base.img, fz_seg_base.bytes);
    apply_patches(&in, work, fz_seg_base.bytes, fz_seg_base.data_off);
    uint8_t *img = fz_map_image(&fz_seg_map, work, bytes);

    char err[256];
    pshm_seg_t s;
    if (pshm_view(&s, img, bytes, err, sizeof(err)) == 0) {
        pool_stats_t st;
        pshm_proc_stats_t ps[PSHM_MAX_PROCS];
        pshm_stats(&s, &st);
        (void)pshm_proc_stats(&s, ps, (int)PSHM_MAX_PROCS);
        (void)pshm_check(&s, err, sizeof(err));
        pshm_verify_t v;
        pshm_corruption_t f;
        if (pshm_verify_init(&v, &s, UINT64_MAX) == 0) {
            (void)pshm_verify(&s, &v, true, &f);
            (void)pshm_verify(&s, &v, false, &f);
            pshm_verify_free(&v);
        }
        pshm_actor_t actor = fz_actor(&s);
        for (uint32_t i = 0; i < s.max_procs; i++) {
            if (i == actor.slot)
                continue;
            pshm_reclaimed_t r;
            (void)pshm_proc_reclaim(&s, i, &actor, &r);
        }
        pshm_stats(&s, &st);
        (void)pshm_check(&s, err, sizeof(err));
    }
    fz_unmap_image(&fz_seg_map);
    return 0;
}
