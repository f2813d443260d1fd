/* SPDX-License-Identifier: MIT */
/*
 * pool_check: read a poold segment at rest and say whether its books are
 * exact, for tests/soak.sh and for an operator who suspects a pool.
 *
 * Maps /dev/shm/<name>, validates it (pshm_view), waits (bounded) until no
 * slot is being reclaimed, then prints one line of figures summed over the
 * classes and runs pshm_check(): the counters against a walk of the lists,
 * caches and owner bytes. Exit 0 when the books are exact (and, with
 * --idle, nothing is in use or in transit), 1 when not, 2 on usage or when
 * the segment cannot be read. It only reads the segment; the walk is valid
 * only while no worker is inside the pool.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pshm.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: pool_check [--idle] [--wait SECONDS] SHM_NAME\n"
               "  --idle          also require 0 blocks in use and 0 in transit\n"
               "  --wait SECONDS  wait this long for reclaims to finish (default 15)\n");
}

static bool busy(const pshm_seg_t *s, bool idle)
{
    pshm_stats_t st;
    pshm_stats(s, &st);
    if (idle && st.procs_attached != 0)
        return true;
    for (uint32_t i = 0; i < s->max_procs; i++)
        /* acquire: pairs with the release stores of the slot's state. */
        if (pa_load_acquire(&s->procs[i].state) == PSHM_PROC_RECLAIMING)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"idle", no_argument, NULL, 'i'},
                                         {"wait", required_argument, NULL, 'w'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool idle = false;
    double wait = 15;
    int c;
    while ((c = getopt_long(argc, argv, "iw:h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': idle = true; break;
        case 'w': wait = atof(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return 2;
    }
    char err[512];
    void *base;
    uint64_t bytes;
    if (pshm_os_open(argv[optind], &base, &bytes, err, sizeof(err)) < 0) {
        fprintf(stderr, "pool_check: %s\n", err);
        return 2;
    }
    pshm_seg_t seg;
    if (pshm_view(&seg, base, bytes, err, sizeof(err)) < 0) {
        fprintf(stderr, "pool_check: %s\n", err);
        pshm_os_unmap(base, bytes);
        return 2;
    }
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (!busy(&seg, idle))
            break;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 > wait)
            break;
        struct timespec ms = {0, 20 * 1000000};
        nanosleep(&ms, NULL);
    }
    pshm_stats_t st;
    pshm_stats(&seg, &st);
    uint64_t carved = 0, central = 0, cached = 0, transit = 0, allocs = 0;
    int64_t in_use = 0;
    for (uint32_t k = 0; k < st.nclasses; k++) {
        carved += st.cls[k].blocks_carved;
        central += st.cls[k].blocks_central;
        cached += st.cls[k].blocks_cached;
        transit += st.cls[k].blocks_in_transit;
        in_use += st.cls[k].blocks_in_use;
        allocs += st.cls[k].allocations;
    }
    printf("pool_check: carved=%llu central=%llu cached=%llu in_use=%lld transit=%llu "
           "allocations=%llu procs_attached=%llu procs_reclaimed=%llu reclaimed_in_use=%llu "
           "entries_dropped=%llu\n",
           (unsigned long long)carved, (unsigned long long)central, (unsigned long long)cached,
           (long long)in_use, (unsigned long long)transit, (unsigned long long)allocs,
           (unsigned long long)st.procs_attached, (unsigned long long)st.procs_reclaimed,
           (unsigned long long)st.reclaimed_in_use,
           (unsigned long long)pa_load_relaxed(&seg.hdr->entries_dropped)); /* relaxed: statistic */
    int rc = pshm_check(&seg, err, sizeof(err));
    int status = 0;
    if (rc < 0) {
        printf("pool_check: books NOT exact: %s\n", err);
        status = 1;
    } else {
        printf("pool_check: books exact (counters match the walk, every class)\n");
    }
    if (idle && (in_use != 0 || transit != 0 || st.procs_attached != 0)) {
        printf("pool_check: not idle: %lld in use, %llu in transit, %llu attached\n",
               (long long)in_use, (unsigned long long)transit,
               (unsigned long long)st.procs_attached);
        status = 1;
    }
    pshm_os_unmap(base, bytes);
    return status;
}
