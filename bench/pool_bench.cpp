// SPDX-License-Identifier: MIT
//
// pool_bench.cpp: the seed's test_memory_pool suite reproduced with Google
// Benchmark, plus a no-allocator floor, a rewrite of the seed's mutex pool,
// single-thread malloc+free pairs and a ratio table.
//
// Workload (DESIGN.md): one iteration starts 10 std::threads with block sizes
// 50, 50, 100, 100, 100, 500, 500, 1000, 1000, 2000 bytes; each thread, 2000
// times, allocates one block, touches it and frees it at once. Threads are
// created and joined inside the timed loop. The touch is chosen at run time:
//   --touch=first  (default; or POOL_BENCH_TOUCH=first): memset(p, i & 0xff, n)
//   --touch=second (or POOL_BENCH_TOUCH=second): read every byte
// --quick (or POOL_BENCH_QUICK=1) makes the whole run short, for CI smoke runs.
//
// This file owns no allocator; it must never change what it measures between
// allocators: every workload goes through run_workload() with the same touch.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <memory_resource>
#include <new>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "poolclient.h"
#include "poolclient.hpp"
#include "seed_mutex_pool.hpp"

namespace {

// ---- configuration -------------------------------------------------------

enum class Touch { First, Second };

Touch g_touch = Touch::First;
bool g_quick = false;

constexpr std::size_t kSizes[] = {50, 50, 100, 100, 100, 500, 500, 1000, 1000, 2000};
constexpr int kRounds = 2000;
constexpr std::size_t kMaxSize = 2000;

const char *touch_name(Touch t) { return t == Touch::First ? "first" : "second"; }

bool parse_touch(const char *s, Touch *out)
{
    if (std::strcmp(s, "first") == 0 || std::strcmp(s, "FIRST") == 0) {
        *out = Touch::First;
        return true;
    }
    if (std::strcmp(s, "second") == 0 || std::strcmp(s, "SECOND") == 0) {
        *out = Touch::Second;
        return true;
    }
    return false;
}

bool env_true(const char *name)
{
    const char *v = std::getenv(name);
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0 &&
           std::strcmp(v, "false") != 0 && std::strcmp(v, "no") != 0;
}

// ---- touch ---------------------------------------------------------------
//
// Both touches are out of line and noipa, so that the caller knows nothing
// about what they do: GCC can neither drop the memset as a dead store before
// free() nor fold the reads of a block it has just seen zeroed (vector).

// FIRST: write every byte, as the seed did with memset.
BENCH_OPAQUE void touch_write(unsigned char *p, std::size_t n,
                                                  unsigned round)
{
    std::memset(p, static_cast<int>(round & 0xffu), n);
}

// SECOND: load every byte. The seed's `for i: DoNotOptimize(p[i])` does not
// load anything with GCC: the asm takes p[i] as an "m" operand and never
// reads it. Summing the bytes makes each load necessary for the result, which
// the caller then hands to DoNotOptimize. bench/README.md shows the loop in
// the disassembly.
BENCH_OPAQUE std::uint64_t touch_read(const unsigned char *p,
                                                          std::size_t n)
{
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < n; ++i)
        sum += p[i];
    return sum;
}

inline void touch(void *ptr, std::size_t n, unsigned round)
{
    unsigned char *p = static_cast<unsigned char *>(ptr);
    if (g_touch == Touch::First) {
        touch_write(p, n, round);
        benchmark::DoNotOptimize(p);
        benchmark::ClobberMemory();
    } else {
        std::uint64_t sum = touch_read(p, n);
        benchmark::DoNotOptimize(sum);
    }
}

// ---- allocators under test ------------------------------------------------
//
// Each has alloc(size) and release(ptr, size); alloc may return nullptr.

pool_t *g_pool = nullptr; // pool_default(), fetched once in main()

struct PoolClient {
    static const char *check() { return g_pool ? nullptr : "pool_default() returned NULL"; }
    static void *alloc(std::size_t n) { return pool_malloc(g_pool, n); }
    static void release(void *p, std::size_t n) { (void)pool_free(g_pool, p, n); }
};

// The upstream of the pmr pool: new_delete_resource() behind a byte cap.
// The pool only calls it to carve chunks (under its own exclusive lock), so
// the counter costs nothing on the measured path. Past the cap allocate()
// throws std::bad_alloc, the worker records a failure and the row is skipped
// with an error instead of growing until the OOM killer comes (the seed's
// fate; bench/README.md, "pmr", says why it happened).
class CappedUpstream : public std::pmr::memory_resource {
public:
    static constexpr std::size_t kCap = std::size_t(256) << 20;

    std::size_t peak() const { return peak_.load(std::memory_order_relaxed); }

private:
    void *do_allocate(std::size_t n, std::size_t align) override
    {
        // relaxed: a statistic and a cap, ordered by the pool's own lock
        std::size_t now = used_.fetch_add(n, std::memory_order_relaxed) + n;
        if (now > kCap) {
            used_.fetch_sub(n, std::memory_order_relaxed);
            throw std::bad_alloc();
        }
        std::size_t p = peak_.load(std::memory_order_relaxed);
        while (now > p && !peak_.compare_exchange_weak(p, now, std::memory_order_relaxed))
            ;
        return std::pmr::new_delete_resource()->allocate(n, align);
    }
    void do_deallocate(void *p, std::size_t n, std::size_t align) override
    {
        std::pmr::new_delete_resource()->deallocate(p, n, align);
        used_.fetch_sub(n, std::memory_order_relaxed);
    }
    bool do_is_equal(const std::pmr::memory_resource &o) const noexcept override
    {
        return this == &o;
    }

    std::atomic<std::size_t> used_{0};
    std::atomic<std::size_t> peak_{0};
};

CappedUpstream &pmr_upstream()
{
    static CappedUpstream r;
    return r;
}

// One synchronized_pool_resource shared by every thread of every iteration
// (and by the pmr pair rows), with default pool_options.
std::pmr::synchronized_pool_resource &pmr_pool()
{
    static std::pmr::synchronized_pool_resource r(&pmr_upstream());
    return r;
}

struct Pmr {
    static const char *check() { return nullptr; }
    static void *alloc(std::size_t n)
    {
        try {
            return pmr_pool().allocate(n, alignof(std::max_align_t));
        } catch (const std::bad_alloc &) {
            return nullptr; // CappedUpstream refused: reported as an error
        }
    }
    static void release(void *p, std::size_t n)
    {
        pmr_pool().deallocate(p, n, alignof(std::max_align_t));
    }
};

// The pmr workload on libpoolclient: the same calls as Pmr (allocate(size,
// alignof(max_align_t)) and deallocate, through std::pmr::memory_resource's
// virtual interface), on a poold::memory_resource over g_pool.
std::pmr::memory_resource *g_pool_resource = nullptr; // set in main() with g_pool

struct PooldPmr {
    static const char *check()
    {
        return g_pool_resource ? nullptr : "pool_default() returned NULL";
    }
    static void *alloc(std::size_t n)
    {
        try {
            return g_pool_resource->allocate(n, alignof(std::max_align_t));
        } catch (const std::bad_alloc &) {
            return nullptr; // pool exhausted: reported as an error
        }
    }
    static void release(void *p, std::size_t n)
    {
        g_pool_resource->deallocate(p, n, alignof(std::max_align_t));
    }
};

struct Malloc {
    static const char *check() { return nullptr; }
    static void *alloc(std::size_t n) { return std::malloc(n); }
    static void release(void *p, std::size_t) { std::free(p); }
};

struct SeedMutexPool {
    static const char *check() { return nullptr; }
    static void *alloc(std::size_t n) { return seed::MemoryPool::GetMemoryPool().malloc(n); }
    static void release(void *p, std::size_t n) { seed::MemoryPool::GetMemoryPool().free(p, n); }
};

// The least any allocator behind a function call can do: hand back one
// per-thread buffer, and on free compare the pointer with it. Not an
// allocator (one block per thread); a bound. Its row, next to the floor,
// shows what the calls themselves cost in the workload, so that the rest of
// an allocator's distance to the floor is the work it does per call.
alignas(64) thread_local unsigned char t_null_block[kMaxSize];

struct NullAllocator {
    static const char *check() { return nullptr; }
    __attribute__((noinline)) static void *alloc(std::size_t n)
    {
        return n <= kMaxSize ? t_null_block : nullptr;
    }
    __attribute__((noinline)) static void release(void *p, std::size_t)
    {
        if (p != t_null_block)
            std::abort(); // never: the workload frees what it allocated
    }
};

// ---- the multi-threaded workload -----------------------------------------

struct Failure {
    std::atomic<bool> failed{false};
};

template <class A>
void worker(std::size_t size, Failure *f)
{
    for (int i = 0; i < kRounds; ++i) {
        void *p = A::alloc(size);
        if (p == nullptr) {
            f->failed.store(true, std::memory_order_relaxed);
            return;
        }
        touch(p, size, static_cast<unsigned>(i));
        A::release(p, size);
    }
}

// std::vector<char>(size): value-initialised (zeroed) by the constructor, as
// in the seed, so it always writes the block once before the touch.
void worker_vector(std::size_t size, Failure *)
{
    for (int i = 0; i < kRounds; ++i) {
        std::vector<char> v(size);
        touch(v.data(), size, static_cast<unsigned>(i));
    }
}

// The floor: no allocation at all, one per-thread buffer, the same touch.
alignas(64) thread_local unsigned char t_floor_block[kMaxSize];
void worker_none(std::size_t size, Failure *)
{
    for (int i = 0; i < kRounds; ++i) {
        unsigned char *p = t_floor_block;
        benchmark::DoNotOptimize(p);
        touch(p, size, static_cast<unsigned>(i));
    }
}

// One iteration of the workload: start the 10 threads, join them.
void run_once(void (*fn)(std::size_t, Failure *), Failure *f)
{
    std::thread t[std::size(kSizes)];
    for (std::size_t k = 0; k < std::size(kSizes); ++k)
        t[k] = std::thread(fn, kSizes[k], f);
    for (auto &th : t)
        th.join();
}

void run_threads(benchmark::State &state, void (*fn)(std::size_t, Failure *))
{
    Failure f;
    for (auto _ : state) {
        run_once(fn, &f);
        if (f.failed.load(std::memory_order_relaxed)) {
            state.SkipWithError("allocation returned NULL");
            break;
        }
    }
    state.SetLabel(touch_name(g_touch));
}

template <class A>
void work_thread(benchmark::State &state)
{
    if (const char *why = A::check()) {
        state.SkipWithError(why);
        return;
    }
    run_threads(state, &worker<A>);
}

// ---- paired with the floor: one workload iteration each, alternating ----
//
// The rows above are timed apart, so a spell of noise on the host (this
// machine kind moves a row by 10% between repetitions) lands on one row and
// not the other. Here every benchmark iteration runs one iteration of the
// allocator's workload and one of the floor's, in alternating order, and
// times each; the ratio of the two sums compares them over the same spells.
// The row's time is the allocator's; counters give the floor's time and
// the ratio (x_floor).

template <class A>
void paired(benchmark::State &state)
{
    if (const char *why = A::check()) {
        state.SkipWithError(why);
        return;
    }
    using clock = std::chrono::steady_clock;
    Failure f;
    double alloc_s = 0, floor_s = 0;
    std::uint64_t n = 0;
    for (auto _ : state) {
        double t[2];
        for (int k = 0; k < 2; ++k) {
            bool alloc_turn = ((n + k) & 1) == 0; // ABBA: alternate who goes first
            auto t0 = clock::now();
            run_once(alloc_turn ? &worker<A> : &worker_none, &f);
            std::chrono::duration<double> d = clock::now() - t0;
            t[alloc_turn ? 0 : 1] = d.count();
        }
        alloc_s += t[0];
        floor_s += t[1];
        state.SetIterationTime(t[0]);
        ++n;
        if (f.failed.load(std::memory_order_relaxed)) {
            state.SkipWithError("allocation returned NULL");
            break;
        }
    }
    if (n != 0 && floor_s > 0) {
        state.counters["floor_us"] = benchmark::Counter(floor_s * 1e6 / static_cast<double>(n));
        state.counters["x_floor"] = benchmark::Counter(alloc_s / floor_s);
    }
    state.SetLabel(touch_name(g_touch));
}

void benchmark_map_memory_pool_work_thread(benchmark::State &s) { work_thread<PoolClient>(s); }
void benchmark_pmr_memory_pool_work_thread(benchmark::State &s)
{ work_thread<Pmr>(s); }
void benchmark_poold_pmr_memory_pool_work_thread(benchmark::State &s)
{ work_thread<PooldPmr>(s); }
void benchmark_malloc_work_thread(benchmark::State &s) { work_thread<Malloc>(s); }
void benchmark_vector_work_thread(benchmark::State &s) { run_threads(s, &worker_vector); }
void benchmark_seed_mutex_pool_work_thread(benchmark::State &s) { work_thread<SeedMutexPool>(s); }
void benchmark_no_allocator_work_thread(benchmark::State &s) { run_threads(s, &worker_none); }
void benchmark_null_allocator_work_thread(benchmark::State &s) { work_thread<NullAllocator>(s); }

// ---- single-thread pairs: one malloc + free, no touch --------------------

template <class A, std::size_t N>
void pair(benchmark::State &state)
{
    if (const char *why = A::check()) {
        state.SkipWithError(why);
        return;
    }
    for (auto _ : state) {
        void *p = A::alloc(N);
        benchmark::DoNotOptimize(p);
        if (p == nullptr) {
            state.SkipWithError("allocation returned NULL");
            break;
        }
        A::release(p, N);
    }
}

#define POOL_WORKLOAD(fn) \
    BENCHMARK(fn)->UseRealTime()->Unit(benchmark::kMicrosecond)
#define POOL_PAIR(name, A, N)                                      \
    BENCHMARK_TEMPLATE(pair, A, N)                                 \
        ->Name("benchmark_pair_" #name "_" #N)                     \
        ->UseRealTime()                                            \
        ->Unit(benchmark::kNanosecond)

POOL_WORKLOAD(benchmark_map_memory_pool_work_thread);
POOL_WORKLOAD(benchmark_pmr_memory_pool_work_thread);
POOL_WORKLOAD(benchmark_poold_pmr_memory_pool_work_thread);
POOL_WORKLOAD(benchmark_malloc_work_thread);
POOL_WORKLOAD(benchmark_vector_work_thread);
POOL_WORKLOAD(benchmark_seed_mutex_pool_work_thread);
POOL_WORKLOAD(benchmark_no_allocator_work_thread);
POOL_WORKLOAD(benchmark_null_allocator_work_thread);

#define POOL_PAIRED(name, A)                                        \
    BENCHMARK_TEMPLATE(paired, A)                                   \
        ->Name("benchmark_paired_" #name "_vs_floor")               \
        ->UseManualTime()                                           \
        ->Unit(benchmark::kMicrosecond)
POOL_PAIRED(map_memory_pool, PoolClient);
POOL_PAIRED(malloc, Malloc);
POOL_PAIRED(null_allocator, NullAllocator);

POOL_PAIR(poolclient, PoolClient, 64);
POOL_PAIR(poolclient, PoolClient, 2000);
POOL_PAIR(malloc, Malloc, 64);
POOL_PAIR(malloc, Malloc, 2000);
POOL_PAIR(seed_mutex_pool, SeedMutexPool, 64);
POOL_PAIR(seed_mutex_pool, SeedMutexPool, 2000);
POOL_PAIR(pmr, Pmr, 64);
POOL_PAIR(pmr, Pmr, 2000);
POOL_PAIR(poold_pmr, PooldPmr, 64);
POOL_PAIR(poold_pmr, PooldPmr, 2000);

// ---- reporter: the usual console table, then ratios ----------------------

class RatioReporter : public benchmark::BenchmarkReporter {
public:
    explicit RatioReporter(benchmark::ConsoleReporter::OutputOptions o) : console_(o) {}

    bool ReportContext(const Context &c) override
    {
        console_.SetOutputStream(&GetOutputStream());
        console_.SetErrorStream(&GetErrorStream());
        return console_.ReportContext(c);
    }

    void ReportRuns(const std::vector<Run> &runs) override
    {
        console_.ReportRuns(runs);
        for (const Run &r : runs) {
            if (r.error_occurred) { // errored repetitions get no aggregates
                Row &row = rows_[r.run_name.function_name];
                row.error = true;
                row.ns = NAN;
                continue;
            }
            // Keep the median of repeated runs, or the single run otherwise.
            bool single = r.run_type == Run::RT_Iteration && r.repetitions <= 1;
            bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
            if (!single && !median)
                continue;
            Row &row = rows_[r.run_name.function_name];
            if (row.error)
                continue;
            row.ns = r.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(r.time_unit) * 1e9;
            row.reps = single ? 1 : r.repetitions;
            auto xf = r.counters.find("x_floor"), fu = r.counters.find("floor_us");
            if (xf != r.counters.end() && fu != r.counters.end()) {
                row.x_floor = xf->second.value;
                row.floor_us = fu->second.value;
            }
        }
    }

    void Finalize() override
    {
        console_.Finalize();
        std::ostream &out = GetOutputStream();
        static const char *const workloads[] = {
            "benchmark_map_memory_pool_work_thread", "benchmark_pmr_memory_pool_work_thread",
            "benchmark_poold_pmr_memory_pool_work_thread",
            "benchmark_malloc_work_thread",          "benchmark_vector_work_thread",
            "benchmark_seed_mutex_pool_work_thread", "benchmark_no_allocator_work_thread",
            "benchmark_null_allocator_work_thread"};
        static const char *const pairs[] = {
            "benchmark_pair_poolclient_64",      "benchmark_pair_poolclient_2000",
            "benchmark_pair_malloc_64",          "benchmark_pair_malloc_2000",
            "benchmark_pair_seed_mutex_pool_64", "benchmark_pair_seed_mutex_pool_2000",
            "benchmark_pair_pmr_64",             "benchmark_pair_pmr_2000",
            "benchmark_pair_poold_pmr_64",       "benchmark_pair_poold_pmr_2000"};
        static const char *const paired_rows[] = {"benchmark_paired_map_memory_pool_vs_floor",
                                                  "benchmark_paired_malloc_vs_floor",
                                                  "benchmark_paired_null_allocator_vs_floor"};
        const double m = ns("benchmark_malloc_work_thread");
        const double floor = ns("benchmark_no_allocator_work_thread");
        const double m64 = ns("benchmark_pair_malloc_64");
        char line[256];

        std::snprintf(line, sizeof line,
                      "\nRatios (touch=%s; median real time of %s; lower is better)\n",
                      touch_name(g_touch), reps_text().c_str());
        out << line;
        if (any_of(workloads)) {
            std::snprintf(line, sizeof line, "%-44s %14s %12s %12s\n", "Workload (10 threads)",
                          "Time (us)", "x malloc", "x floor");
            out << line << std::string(85, '-') << '\n';
            for (const char *name : workloads) {
                if (!rows_.count(name))
                    continue;
                double t = ns(name);
                std::snprintf(line, sizeof line, "%-44s %14s %12s %12s\n", name,
                              time_text(name, t / 1e3).c_str(), num(t / m, "%.2f").c_str(),
                              num(t / floor, "%.2f").c_str());
                out << line;
            }
        }
        if (any_of(paired_rows)) {
            std::snprintf(line, sizeof line, "\n%-44s %14s %12s %12s\n",
                          "Paired with the floor (alternating)", "Time (us)", "Floor (us)",
                          "x floor");
            out << line << std::string(85, '-') << '\n';
            for (const char *name : paired_rows) {
                auto it = rows_.find(name);
                if (it == rows_.end())
                    continue;
                const Row &row = it->second;
                std::snprintf(line, sizeof line, "%-44s %14s %12s %12s\n", name,
                              time_text(name, row.ns / 1e3).c_str(),
                              row.error ? "error" : num(row.floor_us, "%.1f").c_str(),
                              row.error ? "error" : num(row.x_floor, "%.3f").c_str());
                out << line;
            }
        }
        if (any_of(pairs)) {
            std::snprintf(line, sizeof line, "\n%-44s %14s %12s\n",
                          "Pair (1 thread, malloc+free)", "Time (ns)", "x malloc 64");
            out << line << std::string(72, '-') << '\n';
            for (const char *name : pairs) {
                if (!rows_.count(name))
                    continue;
                double t = ns(name);
                std::snprintf(line, sizeof line, "%-44s %14s %12s\n", name,
                              time_text(name, t).c_str(), num(t / m64, "%.2f").c_str());
                out << line;
            }
        }
        if (rows_.count(workloads[1]) || rows_.count(pairs[6]) || rows_.count(pairs[7])) {
            std::snprintf(line, sizeof line,
                          "\npmr: the most the pool ever held from upstream: %zu KiB (cap %zu MiB)\n",
                          pmr_upstream().peak() / 1024, CappedUpstream::kCap >> 20);
            out << line;
        }
        out << "(n/a: row skipped with an error, filtered out, or its reference is missing)\n";
        out.flush();
    }

private:
    struct Row {
        double ns = NAN;
        double x_floor = NAN;  // paired rows: median of the per-repetition ratios
        double floor_us = NAN; // paired rows: the floor's time beside them
        bool error = false;
        std::int64_t reps = 1;
    };

    double ns(const std::string &name) const
    {
        auto it = rows_.find(name);
        return it == rows_.end() ? NAN : it->second.ns;
    }

    template <std::size_t N>
    bool any_of(const char *const (&names)[N]) const
    {
        for (const char *n : names)
            if (rows_.count(n))
                return true;
        return false;
    }

    std::string reps_text() const
    {
        std::int64_t lo = 0, hi = 0;
        for (const auto &kv : rows_) {
            if (kv.second.error)
                continue;
            lo = lo == 0 ? kv.second.reps : std::min(lo, kv.second.reps);
            hi = std::max(hi, kv.second.reps);
        }
        if (hi <= 1)
            return "1 run";
        return lo == hi ? std::to_string(hi) + " repetitions"
                        : std::to_string(lo) + "-" + std::to_string(hi) + " repetitions";
    }

    std::string time_text(const char *name, double v) const
    {
        auto it = rows_.find(name);
        return it != rows_.end() && it->second.error ? "error" : num(v, "%.1f");
    }

    static std::string num(double v, const char *fmt)
    {
        if (!std::isfinite(v))
            return "n/a";
        char b[32];
        std::snprintf(b, sizeof b, fmt, v);
        return b;
    }

    benchmark::ConsoleReporter console_;
    std::map<std::string, Row> rows_;
};

bool has_flag(const std::vector<char *> &args, const char *prefix)
{
    std::size_t n = std::strlen(prefix);
    for (std::size_t i = 1; i < args.size(); ++i)
        if (std::strncmp(args[i], prefix, n) == 0)
            return true;
    return false;
}

} // namespace

int main(int argc, char **argv)
{
    // Our flags first, removed before benchmark::Initialize sees argv.
    if (const char *t = std::getenv("POOL_BENCH_TOUCH")) {
        if (!parse_touch(t, &g_touch)) {
            std::fprintf(stderr, "pool_bench: POOL_BENCH_TOUCH=%s: expected first or second\n", t);
            return 2;
        }
    }
    g_quick = env_true("POOL_BENCH_QUICK");

    std::vector<char *> args;
    args.push_back(argv[0]);
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], "--touch=", 8) == 0) {
            if (!parse_touch(argv[i] + 8, &g_touch)) {
                std::fprintf(stderr, "pool_bench: %s: expected --touch=first|second\n", argv[i]);
                return 2;
            }
        } else if (std::strcmp(argv[i], "--quick") == 0) {
            g_quick = true;
        } else if (std::strncmp(argv[i], "--expect-malloc=", 16) == 0) {
            // An LD_PRELOADed malloc that did not take would publish glibc's
            // figures under its name: exit 3 unless malloc() is this one.
            bench::expect_malloc(argv[i] + 16, "pool_bench");
        } else if (std::strcmp(argv[i], "--help") == 0) {
            std::printf("pool_bench [--touch=first|second] [--quick] "
                        "[--expect-malloc=glibc|jemalloc|tcmalloc|mimalloc] [benchmark flags]\n"
                        "  env: POOL_BENCH_TOUCH=first|second, POOL_BENCH_QUICK=1\n"
                        "  defaults: --benchmark_repetitions=15 (quick: 3)\n"
                        "            --benchmark_min_time=0.2 (quick: 0.05)\n"
                        "            --benchmark_enable_random_interleaving=true\n"
                        "            --benchmark_report_aggregates_only=true\n\n");
            args.push_back(argv[i]);
        } else {
            args.push_back(argv[i]);
        }
    }

    // Defaults the caller did not override. This machine's noise moves a
    // row by 10% between repetitions, more than the differences measured:
    // many short repetitions, interleaved at random so that every row sees
    // the same spells of noise, and the median of each row.
    static char reps15[] = "--benchmark_repetitions=15";
    static char reps3[] = "--benchmark_repetitions=3";
    static char aggr[] = "--benchmark_report_aggregates_only=true";
    static char time02[] = "--benchmark_min_time=0.2";
    static char quick_time[] = "--benchmark_min_time=0.05";
    static char interleave[] = "--benchmark_enable_random_interleaving=true";
    if (!has_flag(args, "--benchmark_repetitions="))
        args.push_back(g_quick ? reps3 : reps15);
    if (!has_flag(args, "--benchmark_report_aggregates_only=") &&
        !has_flag(args, "--benchmark_display_aggregates_only="))
        args.push_back(aggr);
    if (!has_flag(args, "--benchmark_min_time="))
        args.push_back(g_quick ? quick_time : time02);
    if (!has_flag(args, "--benchmark_enable_random_interleaving="))
        args.push_back(interleave);
    bool color = isatty(STDOUT_FILENO) && !has_flag(args, "--benchmark_color=false") &&
                 !has_flag(args, "--benchmark_color=no");
    bool console = !has_flag(args, "--benchmark_format=") ||
                   has_flag(args, "--benchmark_format=console");
    args.push_back(nullptr);

    int nargs = static_cast<int>(args.size()) - 1;
    benchmark::Initialize(&nargs, args.data());
    if (benchmark::ReportUnrecognizedArguments(nargs, args.data()))
        return 2;

    // Make the process-wide pool before any timing, as the seed's singleton.
    g_pool = pool_default();
    static std::optional<poold::memory_resource> pool_resource;
    if (g_pool != nullptr)
        g_pool_resource = &pool_resource.emplace(g_pool);
    if (g_pool == nullptr)
        std::fprintf(stderr, "pool_bench: pool_default: %s (poolclient rows skipped)\n",
                     std::strerror(errno));
    benchmark::AddCustomContext("touch", touch_name(g_touch));
    benchmark::AddCustomContext("malloc", bench::malloc_provider());
    benchmark::AddCustomContext("poolclient",
                                g_pool == nullptr       ? "unavailable"
                                : pool_is_shared(g_pool) ? "shared (poold)"
                                                         : "embedded");
    if (g_quick)
        benchmark::AddCustomContext("mode", "quick");

    if (console) {
        RatioReporter reporter(color ? benchmark::ConsoleReporter::OO_ColorTabular
                                     : benchmark::ConsoleReporter::OO_Tabular);
        benchmark::RunSpecifiedBenchmarks(&reporter);
    } else {
        benchmark::RunSpecifiedBenchmarks();
    }
    benchmark::Shutdown();
    return 0;
}
