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
 * memory outside the mapping (guard pages); the checker may say a patched
 * segment is corrupt, it may not misbehave finding out. Where the patches
 * changed no byte, the image is the real base segment: uncut, it must be
 * adopted, pshm_check() and pshm_verify() must find it clean before and
 * pshm_check() after the reclaims (a false alarm, or a reclaim that breaks
 * the books, fails); cut, it must be refused (a view that maps less than
 * the header says would read past the end). pshm_proc_stats() writes no
 * row past those asked for (canaries).
 *
 * Input: byte 0 = pages cut off the end of the mapping (low 2 bits), then
 * patches of [u32 where][u8 len][len bytes]; where's top 2 bits pick the
 * region (0: header page, 1: the tables up to the data, 2 and 3: anywhere)
 * and the rest is an offset modulo its length.
 */
#include "fuzz_seg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_fail(const char *what, const char *err)
{
    fprintf(stderr, "fuzz_segment: %s%s%s\n", what, err ? ": " : "", err ? err : "");
    abort();
}

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
    bool pristine = memcmp(work, fz_seg_base.img, fz_seg_base.bytes) == 0;
    uint8_t *img = fz_map_image(&fz_seg_map, work, bytes);

    char err[256];
    pshm_seg_t s;
    int viewed = pshm_view(&s, img, bytes, err, sizeof(err));
    if (pristine && cut == 0 && viewed != 0)
        fz_fail("the base segment was refused", err);
    if (pristine && cut != 0 && viewed == 0)
        fz_fail("a truncated segment was adopted", NULL);
    if (viewed == 0) {
        pshm_stats_t st;
        /* Rows between two canary rows. */
        static pshm_proc_stats_t ps[PSHM_MAX_PROCS + 2];
        static uint8_t fill[sizeof(ps[0])];
        memset(ps, 0xa5, sizeof(ps));
        memset(fill, 0xa5, sizeof(fill));
        pshm_stats(&s, &st);
        int n = pshm_proc_stats(&s, ps + 1, (int)PSHM_MAX_PROCS);
        if (n < 0 || n > (int)s.max_procs || memcmp(&ps[0], fill, sizeof(fill)) != 0 ||
            memcmp(&ps[PSHM_MAX_PROCS + 1], fill, sizeof(fill)) != 0)
            fz_fail("pshm_proc_stats: row count out of range or a write outside its rows", NULL);
        if (pshm_check(&s, err, sizeof(err)) != 0 && pristine)
            fz_fail("pshm_check reports the base segment corrupt", err);
        pshm_verify_t v;
        pshm_corruption_t f;
        if (pshm_verify_init(&v, &s, UINT64_MAX) == 0) {
            int full = pshm_verify(&s, &v, true, &f);
            int sampled = pshm_verify(&s, &v, false, &f);
            pshm_verify_free(&v);
            if (pristine && (full != 0 || sampled != 0))
                fz_fail("pshm_verify reports the base segment corrupt", NULL);
        } else if (pristine) {
            fz_fail("pshm_verify_init failed on the base segment", NULL);
        }
        pshm_actor_t actor = fz_actor(&s);
        for (uint32_t i = 0; i < s.max_procs; i++) {
            if (i == actor.slot)
                continue;
            pshm_reclaimed_t r;
            (void)pshm_proc_reclaim(&s, i, &actor, &r);
        }
        pshm_stats(&s, &st);
        if (pshm_check(&s, err, sizeof(err)) != 0 && pristine)
            fz_fail("books not exact after reclaiming the base segment's slots", err);
    }
    fz_unmap_image(&fz_seg_map);
    return 0;
}
