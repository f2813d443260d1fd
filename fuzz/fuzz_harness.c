/* SPDX-License-Identifier: MIT */
/*
 * fuzz_harness.c: what every segment harness (fuzz_segment, fuzz_reclaim,
 * fuzz_stats) shares: the base segment, made once before the first input
 * by libFuzzer's LLVMFuzzerInitialize, and the fenced mapping each input is
 * copied into.
 */
#include "fuzz_seg.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

struct fz_base fz_seg_base;
struct fz_map fz_seg_map;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (fz_make_base(&fz_seg_base) < 0)
        abort();
    return 0;
}

void fz_view_base(pshm_seg_t *s)
{
    uint8_t *img = fz_map_image(&fz_seg_map, fz_seg_base.img, fz_seg_base.bytes);
    char err[256];
    if (pshm_view(s, img, fz_seg_base.bytes, err, sizeof(err)) != 0)
        abort();
}
