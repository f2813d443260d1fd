// SPDX-License-Identifier: MIT
//
// alloc_bench.cpp: the in-process workloads of the benchmark report
// (docs/BENCHMARKS.md) beyond the seed's own, with Google Benchmark:
//   pair/<alloc>/<size>     (b) one thread, allocate + free, 8 B .. 64 KiB (48 B: a
//                               class that is not a power of two)
//   pair_write/<alloc>/64   (b') one thread, allocate 64 B, write one byte
//                               into the block, free; wall time, 7
//                               repetitions (run with
//                               --benchmark_enable_random_interleaving=true
//                               to interleave them with the other rows)
//   pair_write_unsized/poolclient/64
//                               the same with pool_free(pool, p, 0), as a
//                               free() that is not told the size
//   threads/<alloc>/<n>     (c) n long-lived threads, each allocate + free of
//                               the seed's size for its index; ops/s
//   xthread/<alloc>/<size>  (f) one producer thread allocates and fills, one
//                               consumer thread reads and frees, through a
//                               bounded single-producer ring; blocks/s
//   mixed/<alloc>           (g) mixed sizes and lifetimes (bench_common.hpp)
//   large/<alloc>/<size>    one thread, allocate + write a byte per page + free,
//                           256 KiB, 1 MiB, 16 MiB
// <alloc>: poolclient, malloc (whatever malloc the process has: run it with
// LD_PRELOAD and --expect-malloc=jemalloc etc.), seed_mutex_pool, pmr,
// vector (pairs only), null (pairs only: a bound, not an allocator).
//
// What it must never do: give one allocator a different loop than another.
// Every row of a family runs the same template.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"

namespace
{

using namespace bench;
using clock_type = std::chrono::steady_clock;

bool g_quick = false; // --quick: every row short (CI smoke run)

constexpr std::size_t kSeedSizes[] = {50, 50, 100, 100, 100, 500, 500, 1000, 1000, 2000};

// ---- (b) pairs ----------------------------------------------------------------

struct Vector {
}; // std::vector<char>(n): malloc plus the constructor's zeroing

template <class A> void bm_pair(benchmark::State &state)
{
    const std::size_t n = static_cast<std::size_t>(state.range(0));
    for (auto _ : state) {
        if constexpr (std::is_same_v<A, Vector>) {
            std::vector<char> v(n);
            benchmark::DoNotOptimize(v.data());
        } else {
            void *p = A::alloc(n);
            benchmark::DoNotOptimize(p);
            if (p == nullptr) {
                state.SkipWithError("allocation returned NULL");
                break;
            }
            A::release(p, n);
        }
    }
}

// (b') The pair as a caller that uses its block writes it: one byte stored
// into the block between the allocation and the free. Sized: the free is
// told the size (pool_free(pool, p, n)); unsized: pool_free(pool, p, 0),
// which finds the class from the pointer, as free() does.
template <class A, bool Sized> void bm_pair_write(benchmark::State &state)
{
    const std::size_t n = static_cast<std::size_t>(state.range(0));
    unsigned char k = 0;
    for (auto _ : state) {
        void *p = A::alloc(n);
        if (p == nullptr) {
            state.SkipWithError("allocation returned NULL");
            break;
        }
        *static_cast<volatile unsigned char *>(p) = k++;
        if constexpr (Sized)
            A::release(p, n);
        else
            A::release(p, 0);
    }
}

// ---- (c) thread scaling: long-lived threads --------------------------------------
//
// The threads are started once per repetition and live through all its
// iterations; each iteration releases them at once, each does kOps
// allocate+free pairs of its size, and the iteration's wall time is from the
// release to the last one done. A mutex and condition variable hand out the
// start and collect the ends: a few microseconds against kOps pairs.

int kThreadOps = 20000; // --quick: 2000

template <class A> void bm_threads(benchmark::State &state)
{
    const int nthreads = static_cast<int>(state.range(0));
    std::mutex mu;
    std::condition_variable cv_go, cv_done;
    std::uint64_t generation = 0;
    int done = 0;
    bool quit = false;
    std::atomic<bool> failed{false};

    auto body = [&](int idx) {
        const std::size_t n = kSeedSizes[static_cast<std::size_t>(idx) % std::size(kSeedSizes)];
        std::uint64_t seen = 0;
        for (;;) {
            {
                std::unique_lock<std::mutex> lk(mu);
                cv_go.wait(lk, [&] { return quit || generation != seen; });
                if (quit)
                    return;
                seen = generation;
            }
            for (int i = 0; i < kThreadOps; ++i) {
                void *p = A::alloc(n);
                benchmark::DoNotOptimize(p);
                if (p == nullptr) {
                    failed.store(true, std::memory_order_relaxed);
                    break;
                }
                A::release(p, n);
            }
            std::lock_guard<std::mutex> lk(mu);
            if (++done == nthreads)
                cv_done.notify_one();
        }
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < nthreads; ++t)
        pool.emplace_back(body, t);

    double total_s = 0;
    std::uint64_t ops = 0;
    for (auto _ : state) {
        auto t0 = clock_type::now();
        {
            std::lock_guard<std::mutex> lk(mu);
            done = 0;
            ++generation;
        }
        cv_go.notify_all();
        {
            std::unique_lock<std::mutex> lk(mu);
            cv_done.wait(lk, [&] { return done == nthreads; });
        }
        std::chrono::duration<double> d = clock_type::now() - t0;
        state.SetIterationTime(d.count());
        total_s += d.count();
        ops += static_cast<std::uint64_t>(nthreads) * kThreadOps;
    }
    {
        std::lock_guard<std::mutex> lk(mu);
        quit = true;
    }
    cv_go.notify_all();
    for (auto &t : pool)
        t.join();
    if (failed.load())
        state.SkipWithError("allocation returned NULL");
    else if (total_s > 0)
        state.counters["ops_per_s"] = benchmark::Counter(static_cast<double>(ops) / total_s);
}

// ---- (f) cross-thread producer / consumer ----------------------------------------

constexpr std::size_t kRing = 256; // bounded: at most this many blocks in flight

struct alignas(64) Ring {
    Progress head; // written by the producer
    Progress tail; // written by the consumer
    alignas(64) void *slot[kRing];
};

template <class A> void bm_xthread(benchmark::State &state)
{
    const std::size_t n = static_cast<std::size_t>(state.range(0));
    const std::uint64_t blocks = (n <= 4096 ? 20000 : 4000) / (g_quick ? 10 : 1);
    auto ring = std::make_unique<Ring>();
    std::atomic<bool> failed{false};
    double total_s = 0;
    std::uint64_t moved = 0;
    for (auto _ : state) {
        ring->head.reset();
        ring->tail.reset();
        auto t0 = clock_type::now();
        std::thread consumer([&] {
            std::uint64_t sum = 0;
            for (std::uint64_t i = 0; i < blocks; ++i) {
                // acquire (in wait): pairs with the producer's publish of head
                ring->head.wait([i](std::uint64_t h) { return h > i; });
                void *p = ring->slot[i % kRing];
                // release: the slot is read before the producer may reuse it
                ring->tail.publish(i + 1);
                if (p == nullptr)
                    continue;
                sum += read_all(p, n);
                A::release(p, n);
            }
            benchmark::DoNotOptimize(sum);
        });
        for (std::uint64_t i = 0; i < blocks; ++i) {
            void *p = A::alloc(n);
            if (p == nullptr)
                failed.store(true, std::memory_order_relaxed);
            else
                fill(p, n, static_cast<unsigned>(i));
            // acquire (in wait): pairs with the consumer's publish of tail
            ring->tail.wait([i](std::uint64_t t) { return i - t < kRing; });
            ring->slot[i % kRing] = p;
            ring->head.publish(i + 1);
        }
        consumer.join();
        std::chrono::duration<double> d = clock_type::now() - t0;
        state.SetIterationTime(d.count());
        total_s += d.count();
        moved += blocks;
    }
    if (failed.load())
        state.SkipWithError("allocation returned NULL");
    else if (total_s > 0)
        state.counters["blocks_per_s"] = benchmark::Counter(static_cast<double>(moved) / total_s);
}

// ---- (g) mixed ----------------------------------------------------------------

constexpr int kMixedSteps = 20000;

template <class A> void bm_mixed(benchmark::State &state)
{
    auto w = std::make_unique<Mixed<A>>();
    for (int i = 0; i < 2 * static_cast<int>(Mixed<A>::kLong); ++i) // reach steady state
        if (!w->step()) {
            state.SkipWithError("allocation returned NULL");
            return;
        }
    for (auto _ : state) {
        for (int i = 0; i < kMixedSteps; ++i)
            if (!w->step()) {
                state.SkipWithError("allocation returned NULL");
                break;
            }
    }
    state.counters["live_kib"] = benchmark::Counter(static_cast<double>(w->live_bytes()) / 1024);
    state.SetItemsProcessed(state.iterations() * kMixedSteps);
    w->drain();
}

// ---- large blocks ---------------------------------------------------------------

// One thread: allocate, write one byte in every 4 KiB page, free; 256 KiB to
// 16 MiB (the pool serves them as runs of whole spans).
template <class A> void bm_large(benchmark::State &state)
{
    const std::size_t n = static_cast<std::size_t>(state.range(0));
    for (auto _ : state) {
        auto *p = static_cast<unsigned char *>(A::alloc(n));
        if (p == nullptr) {
            state.SkipWithError("allocation returned NULL");
            break;
        }
        for (std::size_t i = 0; i < n; i += 4096)
            p[i] = static_cast<unsigned char>(i);
        benchmark::DoNotOptimize(p);
        A::release(p, n);
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(n));
}

// ---- registration -----------------------------------------------------------

const std::int64_t kPairSizes[] = {8,    16,   32,   48,   64,   128,   256,   512,
                                   1024, 2000, 4096, 8192, 16384, 32768, 65536};

template <class A>
void register_family(const char *name, bool pairs, bool threads, bool xthread, bool mixed)
{
    if (pairs) {
        auto *b = benchmark::RegisterBenchmark((std::string("pair/") + name).c_str(), bm_pair<A>);
        for (std::int64_t s : kPairSizes)
            b->Arg(s);
        // Short: one pair is a few ns, and 14 sizes x 6 allocators are many rows.
        b->UseRealTime()->MinTime(g_quick ? 0.002 : 0.05)->Unit(benchmark::kNanosecond);
    }
    if constexpr (!std::is_same_v<A, Vector>) {
        if (pairs) {
            auto *b = benchmark::RegisterBenchmark((std::string("pair_write/") + name).c_str(),
                                                   bm_pair_write<A, true>);
            b->Arg(64)->UseRealTime()->Repetitions(g_quick ? 1 : 7);
            b->MinTime(g_quick ? 0.002 : 0.05)->Unit(benchmark::kNanosecond);
        }
        if constexpr (std::is_same_v<A, PoolClient>) {
            auto *b = benchmark::RegisterBenchmark(
                (std::string("pair_write_unsized/") + name).c_str(), bm_pair_write<A, false>);
            b->Arg(64)->UseRealTime()->Repetitions(g_quick ? 1 : 7);
            b->MinTime(g_quick ? 0.002 : 0.05)->Unit(benchmark::kNanosecond);
        }
    }
    if constexpr (!std::is_same_v<A, Vector>) {
        if (threads) {
            auto *b = benchmark::RegisterBenchmark((std::string("threads/") + name).c_str(),
                                                   bm_threads<A>);
            for (int n : {1, 2, 4, 8, 16})
                b->Arg(n);
            b->UseManualTime()->Unit(benchmark::kMicrosecond);
        }
        if (xthread) {
            auto *b = benchmark::RegisterBenchmark((std::string("xthread/") + name).c_str(),
                                                   bm_xthread<A>);
            for (int n : {64, 2000, 16384})
                b->Arg(n);
            b->UseManualTime()->Unit(benchmark::kMicrosecond);
        }
        if (mixed)
            benchmark::RegisterBenchmark((std::string("mixed/") + name).c_str(), bm_mixed<A>)
                ->UseRealTime()
                ->Unit(benchmark::kMicrosecond);
        // The seed's pool has no block above 64 KiB (its malloc returns NULL).
        if (mixed && !std::is_same_v<A, SeedMutexPool>) {
            auto *b = benchmark::RegisterBenchmark((std::string("large/") + name).c_str(),
                                                   bm_large<A>);
            for (std::int64_t s : {std::int64_t(256) << 10, std::int64_t(1) << 20,
                                   std::int64_t(16) << 20})
                b->Arg(s);
            b->UseRealTime()->MinTime(g_quick ? 0.002 : 0.2)->Unit(benchmark::kMicrosecond);
        }
    }
}

} // namespace

int main(int argc, char **argv)
{
    std::vector<char *> args;
    std::string expect;
    for (int i = 0; i < argc; ++i) {
        if (i > 0 && std::strncmp(argv[i], "--expect-malloc=", 16) == 0)
            expect = argv[i] + 16;
        else if (i > 0 && std::strcmp(argv[i], "--quick") == 0)
            g_quick = true;
        else
            args.push_back(argv[i]);
    }
    if (!expect.empty())
        expect_malloc(expect, "alloc_bench");
    if (g_quick)
        kThreadOps = 2000;
    int nargs = static_cast<int>(args.size());
    args.push_back(nullptr);
    benchmark::Initialize(&nargs, args.data());
    if (benchmark::ReportUnrecognizedArguments(nargs, args.data()))
        return 2;

    pool_handle() = pool_default();
    if (pool_handle() == nullptr) {
        std::fprintf(stderr, "alloc_bench: pool_default: %s\n", std::strerror(errno));
        return 1;
    }
    register_family<PoolClient>(PoolClient::name, true, true, true, true);
    register_family<Malloc>(Malloc::name, true, true, true, true);
    register_family<SeedMutexPool>(SeedMutexPool::name, true, true, true, true);
    register_family<Pmr>(Pmr::name, true, true, true, true);
    register_family<Vector>("vector", true, false, false, false);
    register_family<NullAllocator>(NullAllocator::name, true, false, false, false);

    benchmark::AddCustomContext("malloc", malloc_provider());
    benchmark::AddCustomContext("poolclient",
                                pool_is_shared(pool_handle()) ? "shared (poold)" : "embedded");
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
