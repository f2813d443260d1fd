/* SPDX-License-Identifier: MIT */
/*
 * fuzz_stats: statistics aggregation over arbitrary counters.
 *
 * The segment is real (fuzz_seg.h); each input overwrites counters and
 * cache words where attached processes write them: every thread record,
 * the class table's counters and list heads, the header's counters and the
 * process slots (never the constants pshm_view() checked: poold reads
 * those once, at adoption). Then pshm_stats() and pshm_proc_stats() run,
 * as poold runs them for every STATS. Nothing may crash (UBSan included),
 * loop or read outside the mapping, and the figures keep their
 * definitions: free == central + cached for every class, and no more
 * process rows are filled than asked for.
 *
 * Input: patches [u8 region][u16 off][u8 len][bytes]; region 0: thread
 * records, 1: the class table (from each class's first mutable line), 2:
 * the header's mutable part, 3: the process slots.
 */
#include "fuzz_seg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {data, size, 0};
    pshm_seg_t s;
    fz_view_base(&s);
    while (in.i + 4 <= in.n) {
        uint32_t region = fz_u8(&in) % 4, off = fz_u8(&in) | fz_u8(&in) << 8;
        uint32_t len = fz_u8(&in) % 16 + 1;
        uint8_t *lo;
        uint64_t span;
        switch (region) {
        case 0:
            lo = s.threads;
            span = (uint64_t)s.max_threads * s.thread_bytes;
            off = (uint32_t)(((uint64_t)off * 97) % span); /* spread over all records */
            break;
        case 1: {
            uint32_t c = off % s.nclasses;
            lo = (uint8_t *)&s.cls[c] + offsetof(struct pshm_class, central);
            span = sizeof(struct pshm_class) - offsetof(struct pshm_class, central);
            off = (off >> 5) % (uint32_t)span;
            break;
        }
        case 2:
            lo = (uint8_t *)s.hdr + offsetof(struct pshm_header, next_span);
            span = sizeof(struct pshm_header) - offsetof(struct pshm_header, next_span);
            off %= (uint32_t)span;
            break;
        default:
            lo = (uint8_t *)s.procs;
            span = (uint64_t)s.max_procs * sizeof(struct pshm_proc);
            off %= (uint32_t)span;
            break;
        }
        if (off + len > span)
            len = (uint32_t)(span - off);
        fz_copy(&in, lo + off, len);
    }
    pool_stats_t st;
    pshm_stats(&s, &st);
    for (uint32_t c = 0; c < st.nclasses; c++)
        if (st.cls[c].blocks_free != st.cls[c].blocks_central + st.cls[c].blocks_cached)
            abort();
    pshm_proc_stats_t ps[3];
    int n = pshm_proc_stats(&s, ps, 3);
    if (n < 0 || n > (int)s.max_procs)
        abort();
    fz_unmap_image(&fz_seg_map);
    return 0;
}
