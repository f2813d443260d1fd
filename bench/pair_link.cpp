// SPDX-License-Identifier: MIT
//
// pair_link.cpp: the 64 B pair with a one-byte write, outside alloc_bench,
// to measure what linking does to it: libpoolclient linked static (as
// alloc_bench links it) or shared, malloc from the C library, from an
// LD_PRELOAD, or from a mimalloc linked into the program. Not built by
// CMake (it needs a static mimalloc); docs/BENCHMARKS.md, "(b') The 64 B
// pair with a write", gives the commands. Rows (wall time, 7 repetitions;
// run with --benchmark_enable_random_interleaving=true):
//   BM_pool          pool_malloc(64), write, pool_free(p, 64)
//   BM_pool_unsized  the same, pool_free(p, 0)
//   BM_malloc        malloc(64), write, free(p)
//
// What it must never do: give one row a different loop than another.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>

#include "poolclient.h"

namespace
{

pool_t *g_pool;

void BM_pool(benchmark::State &state)
{
    unsigned char k = 0;
    for (auto _ : state) {
        void *p = pool_malloc(g_pool, 64);
        *static_cast<volatile unsigned char *>(p) = k++;
        (void)pool_free(g_pool, p, 64);
    }
}

void BM_pool_unsized(benchmark::State &state)
{
    unsigned char k = 0;
    for (auto _ : state) {
        void *p = pool_malloc(g_pool, 64);
        *static_cast<volatile unsigned char *>(p) = k++;
        (void)pool_free(g_pool, p, 0);
    }
}

void BM_malloc(benchmark::State &state)
{
    unsigned char k = 0;
    for (auto _ : state) {
        void *p = std::malloc(64);
        *static_cast<volatile unsigned char *>(p) = k++;
        std::free(p);
    }
}

} // namespace

BENCHMARK(BM_pool)->UseRealTime()->Repetitions(7);
BENCHMARK(BM_pool_unsized)->UseRealTime()->Repetitions(7);
BENCHMARK(BM_malloc)->UseRealTime()->Repetitions(7);

int main(int argc, char **argv)
{
    // Also the instruction count: with --loop=N it only runs N pairs of
    // BM_pool's body (--loop-malloc=N: BM_malloc's), for valgrind
    // --tool=callgrind, N pairs minus 1 pair.
    g_pool = pool_open_embedded(64u << 20);
    if (g_pool == nullptr)
        return 1;
    for (int i = 1; i < argc; i++) {
        bool pool = std::strncmp(argv[i], "--loop=", 7) == 0;
        bool mall = std::strncmp(argv[i], "--loop-malloc=", 14) == 0;
        if (!pool && !mall)
            continue;
        long n = std::atol(std::strchr(argv[i], '=') + 1);
        for (long j = 0; j < n; j++) {
            void *p = pool ? pool_malloc(g_pool, 64) : std::malloc(64);
            *static_cast<volatile unsigned char *>(p) = static_cast<unsigned char>(j);
            if (pool)
                (void)pool_free(g_pool, p, 64);
            else
                std::free(p);
        }
        return 0;
    }
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
