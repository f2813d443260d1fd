// SPDX-License-Identifier: MIT
//
// alloc_probe.cpp: one allocator, one workload, one process, no timing
// harness: what bench/run.sh runs under valgrind --tool=cachegrind (so the
// counts are the workload's and the allocator's, not Google Benchmark's),
// and for the memory and address figures of docs/BENCHMARKS.md. Prints one
// JSON object on stdout.
//
//   alloc_probe --alloc=A --workload=W [--size=N] [--iterations=K]
//               [--expect-malloc=glibc|jemalloc|tcmalloc|mimalloc]
//   A: poolclient (an embedded pool of 256 MiB), malloc (the process's
//      malloc: glibc, or what LD_PRELOAD put there), vector, pmr,
//      seed_mutex_pool, none (the floor: a static buffer per thread), null
//   W: first      K iterations of the seed's FIRST workload (10 threads x
//                 2000 rounds of allocate, memset, free); K=0 runs nothing,
//                 the baseline that run.sh subtracts
//      pair       K x 20000 allocate+free pairs of N bytes, one thread
//      burst      K x 20 rounds of allocating 1024 blocks of N bytes, then
//                 freeing them all, one thread: every 32 allocations or
//                 frees move a batch to or from the central list (refill,
//                 flush), so the central list's cost shows
//      addresses  one FIRST iteration; distinct addresses per thread
//      mixed      K x 100000 steps of the mixed workload (bench_common.hpp):
//                 peak RSS, bytes reserved, and for poolclient the internal
//                 fragmentation per class
//
// What it must never do: allocate on the measured path for its own
// bookkeeping (the addresses go to static arrays).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"

namespace
{

using namespace bench;

constexpr std::size_t kSizes[] = {50, 50, 100, 100, 100, 500, 500, 1000, 1000, 2000};
constexpr int kRounds = 2000;

struct Vector {
};

struct None {
    [[maybe_unused]] static constexpr const char *name = "none";
};
// The floor's buffers: one per workload thread, static (a thread_local
// array would be zeroed at every thread's start, in every allocator's run).
alignas(64) unsigned char g_floor[std::size(kSizes)][2048];

void *g_seen[std::size(kSizes)][kRounds]; // addresses: thread k, round r

template <class A> void first_thread(std::size_t k, bool record)
{
    const std::size_t n = kSizes[k];
    for (int r = 0; r < kRounds; ++r) {
        if constexpr (std::is_same_v<A, Vector>) {
            std::vector<char> v(n);
            fill(v.data(), n, static_cast<unsigned>(r));
            if (record)
                g_seen[k][r] = v.data();
        } else if constexpr (std::is_same_v<A, None>) {
            unsigned char *p = g_floor[k];
            asm volatile("" : "+r"(p));
            fill(p, n, static_cast<unsigned>(r));
            if (record)
                g_seen[k][r] = p;
        } else {
            void *p = A::alloc(n);
            if (p == nullptr) {
                std::fprintf(stderr, "alloc_probe: allocation returned NULL\n");
                std::exit(1);
            }
            fill(p, n, static_cast<unsigned>(r));
            if (record)
                g_seen[k][r] = p;
            A::release(p, n);
        }
    }
}

template <class A> void first(int iterations, bool record)
{
    for (int it = 0; it < iterations; ++it) {
        std::thread t[std::size(kSizes)];
        for (std::size_t k = 0; k < std::size(kSizes); ++k)
            t[k] = std::thread(first_thread<A>, k, record);
        for (auto &th : t)
            th.join();
    }
}

static void *g_burst[1024];

template <class A> void burst(std::size_t n, long rounds)
{
    for (long r = 0; r < rounds; ++r) {
        for (void *&p : g_burst) {
            p = A::alloc(n);
            asm volatile("" : "+r"(p) : : "memory");
        }
        for (void *p : g_burst)
            A::release(p, n);
    }
}

template <class A> void pairs(std::size_t n, long count)
{
    for (long i = 0; i < count; ++i) {
        if constexpr (std::is_same_v<A, Vector>) {
            std::vector<char> v(n);
            asm volatile("" : : "r"(v.data()) : "memory");
        } else if constexpr (std::is_same_v<A, None>) {
            void *p = g_floor[0];
            asm volatile("" : "+r"(p) : : "memory");
        } else {
            void *p = A::alloc(n);
            asm volatile("" : "+r"(p) : : "memory");
            A::release(p, n);
        }
    }
}

// The pool's blocks, per class: how many, bytes asked for, bytes given.
struct ClassUse {
    unsigned long long count = 0, requested = 0, block = 0;
};
std::map<std::size_t, ClassUse> g_class_use;

struct TrackedPool {
    static void *alloc(std::size_t n)
    {
        void *p = PoolClient::alloc(n);
        if (p != nullptr) {
            std::size_t b = pool_block_size(pool_handle(), p);
            ClassUse &u = g_class_use[b];
            u.count++;
            u.requested += n;
            u.block += b;
        }
        return p;
    }
    static void release(void *p, std::size_t n)
    {
        PoolClient::release(p, n);
    }
};

long long reserved_bytes(const std::string &alloc)
{
    if (alloc == "poolclient") {
        pool_stats_t st;
        return pool_stats(pool_handle(), &st) == 0 ? static_cast<long long>(st.bytes_carved) : -1;
    }
    if (alloc == "pmr")
        return static_cast<long long>(pmr_upstream().held());
    if (alloc == "malloc" || alloc == "vector")
        return malloc_reserved_bytes();
    return -1; // seed_mutex_pool: its pages are not counted anywhere
}

template <class A> int mixed(const std::string &alloc, int iterations)
{
    auto w = std::make_unique<Mixed<A>>();
    const long steps = 100000L * iterations;
    for (long i = 0; i < steps; ++i)
        if (!w->step()) {
            std::fprintf(stderr, "alloc_probe: allocation returned NULL\n");
            return 1;
        }
    long long reserved = reserved_bytes(alloc);
    std::printf("\"steps\": %ld, \"peak_live_bytes\": %zu, \"live_bytes\": %zu, "
                "\"reserved_bytes\": %lld",
                steps, w->peak_live_bytes(), w->live_bytes(), reserved);
    if constexpr (std::is_same_v<A, TrackedPool>) {
        std::printf(", \"classes\": [");
        bool comma = false;
        for (auto &kv : g_class_use) {
            std::printf("%s{\"block\": %zu, \"count\": %llu, \"requested\": %llu, "
                        "\"given\": %llu}",
                        comma ? ", " : "", kv.first, kv.second.count, kv.second.requested,
                        kv.second.block);
            comma = true;
        }
        std::printf("]");
    }
    w->drain();
    return 0;
}

template <class A>
int run(const std::string &alloc, const std::string &workload, std::size_t size, int iterations)
{
    if (workload == "first") {
        first<A>(iterations, false);
        std::printf("\"pairs\": %ld, \"reserved_bytes\": %lld",
                    static_cast<long>(iterations) * kRounds * static_cast<long>(std::size(kSizes)),
                    reserved_bytes(alloc));
    } else if (workload == "pair") {
        long count = 20000L * iterations;
        pairs<A>(size, count);
        std::printf("\"pairs\": %ld", count);
    } else if (workload == "burst") {
        if constexpr (std::is_same_v<A, Vector> || std::is_same_v<A, None>) {
            std::fprintf(stderr, "alloc_probe: no burst workload for %s\n", alloc.c_str());
            return 2;
        } else {
            long rounds = 20L * iterations;
            burst<A>(size, rounds);
            std::printf("\"blocks\": %ld", rounds * static_cast<long>(std::size(g_burst)));
        }
    } else if (workload == "addresses") {
        first<A>(1, true);
        std::printf("\"distinct\": [");
        for (std::size_t k = 0; k < std::size(kSizes); ++k) {
            std::vector<void *> v(g_seen[k], g_seen[k] + kRounds);
            std::sort(v.begin(), v.end());
            std::size_t d = static_cast<std::size_t>(std::unique(v.begin(), v.end()) - v.begin());
            std::printf("%s%zu", k ? ", " : "", d);
        }
        std::printf("]");
    } else if (workload == "mixed") {
        if constexpr (std::is_same_v<A, Vector> || std::is_same_v<A, None> ||
                      std::is_same_v<A, NullAllocator>) {
            std::fprintf(stderr, "alloc_probe: no mixed workload for %s\n", alloc.c_str());
            return 2;
        } else if constexpr (std::is_same_v<A, PoolClient>) {
            return mixed<TrackedPool>(alloc, iterations);
        } else {
            return mixed<A>(alloc, iterations);
        }
    } else {
        std::fprintf(stderr, "alloc_probe: unknown workload %s\n", workload.c_str());
        return 2;
    }
    return 0;
}

const char *opt(int argc, char **argv, const char *name, const char *dflt)
{
    std::size_t n = std::strlen(name);
    for (int i = 1; i < argc; ++i)
        if (std::strncmp(argv[i], name, n) == 0 && argv[i][n] == '=')
            return argv[i] + n + 1;
    return dflt;
}

} // namespace

int main(int argc, char **argv)
{
    std::string alloc = opt(argc, argv, "--alloc", "");
    std::string workload = opt(argc, argv, "--workload", "first");
    std::size_t size = std::strtoull(opt(argc, argv, "--size", "64"), nullptr, 10);
    int iterations = std::atoi(opt(argc, argv, "--iterations", "1"));
    std::string expect = opt(argc, argv, "--expect-malloc", "");
    if (!expect.empty())
        expect_malloc(expect, "alloc_probe");
    if (alloc == "poolclient") {
        pool_handle() = pool_open_embedded(std::size_t(256) << 20);
        if (pool_handle() == nullptr) {
            std::perror("alloc_probe: pool_open_embedded");
            return 1;
        }
    }
    std::size_t rss0 = status_bytes("VmRSS");
    bool hwm_reset = reset_peak_rss();
    std::printf("{\"alloc\": \"%s\", \"workload\": \"%s\", \"size\": %zu, \"iterations\": %d, "
                "\"malloc\": \"%s\", ",
                alloc.c_str(), workload.c_str(), size, iterations, malloc_provider().c_str());
    int rc;
    if (alloc == "poolclient")
        rc = run<PoolClient>(alloc, workload, size, iterations);
    else if (alloc == "malloc")
        rc = run<Malloc>(alloc, workload, size, iterations);
    else if (alloc == "vector")
        rc = run<Vector>(alloc, workload, size, iterations);
    else if (alloc == "pmr")
        rc = run<Pmr>(alloc, workload, size, iterations);
    else if (alloc == "seed_mutex_pool")
        rc = run<SeedMutexPool>(alloc, workload, size, iterations);
    else if (alloc == "none")
        rc = run<None>(alloc, workload, size, iterations);
    else if (alloc == "null")
        rc = run<NullAllocator>(alloc, workload, size, iterations);
    else {
        std::fprintf(stderr, "alloc_probe: unknown --alloc=%s\n", alloc.c_str());
        return 2;
    }
    std::size_t hwm = status_bytes("VmHWM");
    std::printf(", \"rss_before_bytes\": %zu, \"peak_rss_bytes\": %zu, \"peak_rss_reset\": %s}\n",
                rss0, hwm, hwm_reset ? "true" : "false");
    return rc;
}
