// SPDX-License-Identifier: MIT
//
// proc_bench.cpp: the workloads of the benchmark report that span processes,
// with Google Benchmark (one iteration per repetition, manual time):
//   procs/<alloc>/<n>      (d) n worker processes each run the seed workload
//                              (10 threads x 2000 rounds of allocate, memset,
//                              free; `--proc-iterations` times); allocations/s
//                              over all of them, from the start signal to the
//                              last one done (fork and attach not timed)
//   procs_lt/<alloc>/<n>       the same rounds on 10 long-lived threads per
//                              process (thread start and exit not timed),
//                              `--proc-lt-iterations` times (default 50: a
//                              repetition of tens of ms, not a few scheduler
//                              slices)
//   handoff/<alloc>/<size> (e) 64 B to 16 MiB: a producer process
//                              allocates, fills and hands each block through
//                              a lock-free ring in shared memory to a
//                              consumer process that takes it, reads every
//                              byte and frees it; blocks/s with at most 256
//                              in flight (64 MiB of them above 64 KiB), then
//                              p50/p99 latency (from the producer's
//                              allocation to the consumer's
//                              free) with at most 4 in flight
// <alloc>: poolclient (each process pool_attach()es the poold at --socket or
// $POOLD_SOCKET; handoff through pool_handoff/pool_adopt), boost
// (Boost.Interprocess managed_shared_memory made before the fork; handoff by
// handle), malloc (procs only: each process its own private malloc), none
// (handoff only: the producer cycles through preallocated shared buffers).
//
// What it must never do: time a process's start-up or attach, or give one
// allocator a different loop: every row goes through the same children.
#include <benchmark/benchmark.h>

#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/interprocess/managed_shared_memory.hpp>

#include "bench_common.hpp"

namespace
{

namespace bip = boost::interprocess;
using namespace bench;

enum class Kind { Pool, Boost, Malloc, None };

constexpr std::size_t kSeedSizes[] = {50, 50, 100, 100, 100, 500, 500, 1000, 1000, 2000};
constexpr int kSeedRounds = 2000;
constexpr int kMaxProcs = 16;
constexpr std::size_t kRing = 1024;
constexpr std::size_t kMaxLat = 1u << 16;

const char *g_socket = nullptr;
int g_proc_iterations = 10;
int g_lt_iterations = 50;
double g_scale = 1.0; // --quick: 0.1
const std::size_t kBoostBytes = std::size_t(256) << 20;

std::uint64_t now_ns()
{
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return static_cast<std::uint64_t>(t.tv_sec) * 1000000000u +
           static_cast<std::uint64_t>(t.tv_nsec);
}

struct Entry {
    std::uint64_t ref;     // pool offset, Boost handle or buffer index
    std::uint64_t t_start; // latency phase: when the producer began
};

// In a MAP_SHARED mapping made before any fork. Every field's writer is
// named; the parent resets it between runs, with no child alive.
struct Ctl {
    std::atomic<int> ready;                      // children: +1 when set up
    std::atomic<int> go;                         // parent: 1 to start
    std::atomic<int> failed;                     // children: 1 on any error
    std::atomic<std::uint64_t> t_end[kMaxProcs]; // child i: when it finished
    char why[128];                               // the first child to fail: why
    Progress head;                               // producer: entries published
    Progress tail;                               // consumer: entries done (freed)
    alignas(64) Entry slot[kRing];
    std::uint64_t lat[kMaxLat]; // consumer: latency of block i (latency phase)
};

Ctl *g_ctl = nullptr;
bip::managed_shared_memory *g_bip = nullptr; // per benchmark, made before the fork
unsigned char *g_bufs = nullptr;             // "none": preallocated shared buffers
std::size_t g_bufs_bytes = 0;

void fail(const char *what)
{
    int expected = 0;
    if (g_ctl->failed.compare_exchange_strong(expected, 1))
        std::snprintf(g_ctl->why, sizeof g_ctl->why, "%s (pid %d, errno %s)", what,
                      static_cast<int>(getpid()), std::strerror(errno));
}

inline void relax(unsigned &spins)
{
    if (++spins > 64) { // 2 CPUs shared by both sides and other tenants
        sched_yield();
        spins = 0;
    }
}

void wait_go()
{
    g_ctl->ready.fetch_add(1);
    unsigned spins = 0;
    while (g_ctl->go.load(std::memory_order_acquire) == 0)
        relax(spins);
}

// ---- the allocators inside a child -------------------------------------------

pool_t *g_child_pool = nullptr;

struct ChildAlloc {
    Kind kind;
    void *alloc(std::size_t n) const
    {
        switch (kind) {
        case Kind::Pool: return pool_malloc(g_child_pool, n);
        case Kind::Boost: return g_bip->allocate(n, std::nothrow);
        case Kind::Malloc: return std::malloc(n);
        case Kind::None: break;
        }
        return nullptr;
    }
    void release(void *p, std::size_t n) const
    {
        switch (kind) {
        case Kind::Pool:
            if (!pool_free(g_child_pool, p, n))
                fail("pool_free refused a block");
            break;
        case Kind::Boost: g_bip->deallocate(p); break;
        case Kind::Malloc: std::free(p); break;
        case Kind::None: break;
        }
    }
};

bool child_setup(Kind kind)
{
    if (kind == Kind::None) {
        // Map every preallocated buffer's pages in this process before the
        // start: a shared mapping's page tables are not copied by fork, and
        // a fault per page (costly in a VM) is not what the row is for.
        std::uint64_t sum = 0;
        for (std::size_t off = 0; off < g_bufs_bytes; off += 4096)
            sum += g_bufs[off];
        benchmark::DoNotOptimize(sum);
        return true;
    }
    if (kind != Kind::Pool)
        return true;
    g_child_pool = pool_attach(g_socket);
    if (g_child_pool == nullptr) {
        fail(pool_last_error());
        return false;
    }
    return true;
}

void child_teardown(Kind kind)
{
    if (kind == Kind::Pool && g_child_pool != nullptr)
        pool_detach(g_child_pool);
}

// Fork n children running fn(i); wait until all are set up, start them and
// wait for them. Returns the seconds from the start to the last t_end, or
// -1 when a child failed.
template <class F> double run_children(int n, F fn)
{
    g_ctl->ready.store(0);
    g_ctl->go.store(0);
    g_ctl->failed.store(0);
    g_ctl->why[0] = '\0';
    std::vector<pid_t> kids;
    for (int i = 0; i < n; ++i) {
        g_ctl->t_end[i].store(0);
        std::fflush(nullptr);
        pid_t pid = fork();
        if (pid == 0) {
            int rc = fn(i);
            _exit(rc);
        }
        if (pid < 0) {
            fail("fork");
            break;
        }
        kids.push_back(pid);
    }
    while (g_ctl->ready.load() < static_cast<int>(kids.size()) && g_ctl->failed.load() == 0)
        usleep(200);
    std::uint64_t t0 = now_ns();
    g_ctl->go.store(1, std::memory_order_release); // release: pairs with wait_go()'s acquire
    bool ok = true;
    for (pid_t pid : kids) {
        int st = 0;
        if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            ok = false;
    }
    if (!ok || g_ctl->failed.load() != 0)
        return -1;
    std::uint64_t end = 0;
    for (int i = 0; i < n; ++i)
        end = std::max(end, g_ctl->t_end[i].load());
    return static_cast<double>(end - t0) / 1e9;
}

// ---- (d) processes -----------------------------------------------------------

// One seed thread's work: `rounds` times allocate n bytes, fill, free.
void seed_rounds(ChildAlloc a, std::size_t n, int rounds)
{
    for (int r = 0; r < rounds; ++r) {
        void *p = a.alloc(n);
        if (p == nullptr) {
            fail("allocation returned NULL");
            return;
        }
        fill(p, n, static_cast<unsigned>(r));
        a.release(p, n);
    }
}

// The seed's rounds on 10 threads that live through all iterations: what
// the allocator costs once thread start and exit are out of the way.
int seed_child_long_lived(Kind kind, int idx)
{
    if (!child_setup(kind))
        return 1;
    ChildAlloc a{kind};
    std::thread t[std::size(kSeedSizes)];
    std::atomic<int> started{0};
    for (std::size_t k = 0; k < std::size(kSeedSizes); ++k)
        t[k] = std::thread([a, k, &started] {
            started.fetch_add(1);
            unsigned spins = 0;
            while (g_ctl->go.load(std::memory_order_acquire) == 0)
                relax(spins);
            seed_rounds(a, kSeedSizes[k], g_lt_iterations * kSeedRounds);
        });
    while (started.load() < static_cast<int>(std::size(kSeedSizes)))
        sched_yield();
    wait_go();
    for (auto &th : t)
        th.join();
    g_ctl->t_end[idx].store(now_ns());
    child_teardown(kind);
    return g_ctl->failed.load() ? 1 : 0;
}

int seed_child(Kind kind, int idx)
{
    if (!child_setup(kind))
        return 1;
    ChildAlloc a{kind};
    wait_go();
    for (int it = 0; it < g_proc_iterations && g_ctl->failed.load() == 0; ++it) {
        std::thread t[std::size(kSeedSizes)];
        for (std::size_t k = 0; k < std::size(kSeedSizes); ++k)
            t[k] = std::thread([a, k] { seed_rounds(a, kSeedSizes[k], kSeedRounds); });
        for (auto &th : t)
            th.join();
    }
    g_ctl->t_end[idx].store(now_ns());
    child_teardown(kind);
    return g_ctl->failed.load() ? 1 : 0;
}

void make_boost()
{
    std::string name = "pool_bench_bip_" + std::to_string(getpid());
    bip::shared_memory_object::remove(name.c_str());
    g_bip = new bip::managed_shared_memory(bip::create_only, name.c_str(), kBoostBytes);
}

void drop_boost()
{
    std::string name = "pool_bench_bip_" + std::to_string(getpid());
    delete g_bip;
    g_bip = nullptr;
    bip::shared_memory_object::remove(name.c_str());
}

void bm_procs(benchmark::State &state, Kind kind, bool long_lived)
{
    const int n = static_cast<int>(state.range(0));
    if (kind == Kind::Pool && g_socket == nullptr) {
        state.SkipWithError("no poold: pass --socket or set POOLD_SOCKET");
        return;
    }
    if (kind == Kind::Boost)
        make_boost();
    double total_s = 0, allocs = 0;
    for (auto _ : state) {
        double s = run_children(n, [kind, long_lived](int i) {
            return long_lived ? seed_child_long_lived(kind, i) : seed_child(kind, i);
        });
        if (s < 0) {
            state.SkipWithError(g_ctl->why[0] ? g_ctl->why : "a worker process failed");
            break;
        }
        state.SetIterationTime(s);
        total_s += s;
        allocs += static_cast<double>(n) * (long_lived ? g_lt_iterations : g_proc_iterations) *
                  std::size(kSeedSizes) * kSeedRounds;
    }
    if (kind == Kind::Boost)
        drop_boost();
    if (total_s > 0)
        state.counters["allocs_per_s"] = benchmark::Counter(allocs / total_s);
}

// ---- (e) handoff ---------------------------------------------------------------

std::uint64_t handoff_blocks(std::size_t n)
{
    // About 400 MB filled and read per run, between 6400 and 200000 blocks
    // up to 64 KiB; above, 400 MB whatever the count (25 blocks of 16 MiB).
    std::uint64_t b = (std::uint64_t(400) << 20) / n;
    b = std::clamp<std::uint64_t>(b, n > 65536 ? 1 : 6400, 200000);
    return std::max<std::uint64_t>(n > 65536 ? 8 : 1000, static_cast<std::uint64_t>(b * g_scale));
}

// Blocks in flight at most: 256, or 64 MiB of them for large blocks (4 of
// 16 MiB), so that the pool, Boost's segment and the preallocated ring hold
// them all (none_count() >= this for every size).
std::uint64_t handoff_window(std::size_t n)
{
    return std::min<std::uint64_t>(256, std::max<std::uint64_t>(2, (std::uint64_t(64) << 20) / n));
}

std::size_t none_stride(std::size_t n)
{
    return (n + 63) & ~std::size_t(63);
}
std::size_t none_count(std::size_t n)
{
    return std::min<std::size_t>(4096, (std::size_t(64) << 20) / none_stride(n));
}

// Producer: blocks 0..count-1, at most `window` not yet freed by the consumer.
int producer(Kind kind, std::size_t n, std::uint64_t count, std::uint64_t window, bool stamp)
{
    ChildAlloc a{kind};
    for (std::uint64_t i = 0; i < count; ++i) {
        // acquire (in wait): pairs with the consumer's publish of tail
        g_ctl->tail.wait([&](std::uint64_t t) { return i - t < window; });
        std::uint64_t t = stamp ? now_ns() : 0, ref;
        if (kind == Kind::None) {
            ref = i % none_count(n);
            fill(g_bufs + ref * none_stride(n), n, static_cast<unsigned>(i));
        } else {
            void *p = a.alloc(n);
            if (p == nullptr) {
                fail("allocation returned NULL");
                return 1;
            }
            fill(p, n, static_cast<unsigned>(i));
            if (kind == Kind::Pool) {
                ref = pool_handoff(g_child_pool, p);
                if (ref == UINT64_MAX) {
                    fail("pool_handoff");
                    return 1;
                }
            } else {
                ref = static_cast<std::uint64_t>(g_bip->get_handle_from_address(p));
            }
        }
        g_ctl->slot[i % kRing] = Entry{ref, t};
        g_ctl->head.publish(i + 1); // release: the entry above
    }
    return 0;
}

int consumer(Kind kind, std::size_t n, std::uint64_t count, bool stamp)
{
    ChildAlloc a{kind};
    std::uint64_t sum = 0;
    for (std::uint64_t i = 0; i < count; ++i) {
        // acquire (in wait): pairs with the producer's publish of head
        g_ctl->head.wait([&](std::uint64_t h) { return h > i; });
        Entry e = g_ctl->slot[i % kRing];
        void *p;
        if (kind == Kind::None) {
            p = g_bufs + e.ref * none_stride(n);
        } else if (kind == Kind::Pool) {
            p = pool_adopt(g_child_pool, e.ref);
            if (p == nullptr) {
                fail("pool_adopt");
                return 1;
            }
        } else {
            p = g_bip->get_address_from_handle(
                static_cast<bip::managed_shared_memory::handle_t>(e.ref));
        }
        sum += read_all(p, n);
        if (kind != Kind::None)
            a.release(p, n);
        if (stamp && i < kMaxLat)
            g_ctl->lat[i] = now_ns() - e.t_start;
        g_ctl->tail.publish(i + 1); // release: done with the block
    }
    benchmark::DoNotOptimize(sum);
    return g_ctl->failed.load() ? 1 : 0;
}

int handoff_child(Kind kind, int idx, std::size_t n, std::uint64_t count, std::uint64_t window,
                  bool stamp)
{
    if (!child_setup(kind))
        return 1;
    wait_go();
    int rc = idx == 0 ? producer(kind, n, count, window, stamp) : consumer(kind, n, count, stamp);
    g_ctl->t_end[idx].store(now_ns());
    child_teardown(kind);
    return rc;
}

double percentile(std::vector<std::uint64_t> v, double q)
{
    if (v.empty())
        return 0;
    std::size_t k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return static_cast<double>(v[k]);
}

void bm_handoff(benchmark::State &state, Kind kind)
{
    const std::size_t n = static_cast<std::size_t>(state.range(0));
    if (kind == Kind::Pool && g_socket == nullptr) {
        state.SkipWithError("no poold: pass --socket or set POOLD_SOCKET");
        return;
    }
    if (kind == Kind::Boost)
        make_boost();
    if (kind == Kind::None) {
        g_bufs_bytes = none_count(n) * none_stride(n);
        void *m =
            mmap(nullptr, g_bufs_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            state.SkipWithError("mmap");
            return;
        }
        std::memset(m, 0, g_bufs_bytes); // fault every buffer in before timing
        g_bufs = static_cast<unsigned char *>(m);
    }
    const std::uint64_t count = handoff_blocks(n);
    const std::uint64_t lat_count = std::min<std::uint64_t>(count, 20000);
    double total_s = 0, blocks = 0;
    std::vector<std::uint64_t> lat;
    for (auto _ : state) {
        g_ctl->head.reset();
        g_ctl->tail.reset();
        double s =
            run_children(2, [&](int i) {
            return handoff_child(kind, i, n, count, handoff_window(n), false);
        });
        if (s < 0) {
            state.SkipWithError(g_ctl->why[0] ? g_ctl->why : "a handoff process failed");
            break;
        }
        state.SetIterationTime(s);
        total_s += s;
        blocks += static_cast<double>(count);
        // Latency, apart: at most 4 blocks in flight, so that a full ring's
        // queueing is not what is measured.
        g_ctl->head.reset();
        g_ctl->tail.reset();
        if (run_children(2, [&](int i) { return handoff_child(kind, i, n, lat_count, 4, true); }) <
            0) {
            state.SkipWithError(g_ctl->why[0] ? g_ctl->why : "a handoff process failed");
            break;
        }
        lat.insert(lat.end(), g_ctl->lat, g_ctl->lat + lat_count);
    }
    if (kind == Kind::Boost)
        drop_boost();
    if (g_bufs != nullptr) {
        munmap(g_bufs, g_bufs_bytes);
        g_bufs = nullptr;
    }
    if (total_s > 0) {
        state.counters["blocks_per_s"] = benchmark::Counter(blocks / total_s);
        state.counters["p50_ns"] = benchmark::Counter(percentile(lat, 0.50));
        state.counters["p99_ns"] = benchmark::Counter(percentile(lat, 0.99));
    }
}

} // namespace

int main(int argc, char **argv)
{
    std::vector<char *> args;
    bool quick = false;
    for (int i = 0; i < argc; ++i) {
        if (i > 0 && std::strncmp(argv[i], "--socket=", 9) == 0)
            g_socket = argv[i] + 9;
        else if (i > 0 && std::strncmp(argv[i], "--proc-iterations=", 18) == 0)
            g_proc_iterations = std::max(1, std::atoi(argv[i] + 18));
        else if (i > 0 && std::strncmp(argv[i], "--proc-lt-iterations=", 21) == 0)
            g_lt_iterations = std::max(1, std::atoi(argv[i] + 21));
        else if (i > 0 && std::strcmp(argv[i], "--quick") == 0)
            quick = true;
        else
            args.push_back(argv[i]);
    }
    if (g_socket == nullptr)
        g_socket = std::getenv("POOLD_SOCKET");
    if (quick) {
        g_scale = 0.1;
        g_proc_iterations = std::min(g_proc_iterations, 2);
        g_lt_iterations = std::min(g_lt_iterations, 2);
    }
    int nargs = static_cast<int>(args.size());
    args.push_back(nullptr);
    benchmark::Initialize(&nargs, args.data());
    if (benchmark::ReportUnrecognizedArguments(nargs, args.data()))
        return 2;

    void *m = mmap(nullptr, sizeof(Ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        std::perror("proc_bench: mmap");
        return 1;
    }
    g_ctl = new (m) Ctl();

    struct Row {
        const char *name;
        Kind kind;
    };
    for (Row r :
         {Row{"poolclient", Kind::Pool}, Row{"boost", Kind::Boost}, Row{"malloc", Kind::Malloc}}) {
        for (bool ll : {false, true}) {
            auto *b = benchmark::RegisterBenchmark(
                (std::string(ll ? "procs_lt/" : "procs/") + r.name).c_str(),
                [k = r.kind, ll](benchmark::State &s) { bm_procs(s, k, ll); });
            for (int n : {1, 2, 4, 8})
                b->Arg(n);
            b->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
        }
    }
    for (Row r :
         {Row{"poolclient", Kind::Pool}, Row{"boost", Kind::Boost}, Row{"none", Kind::None}}) {
        auto *b =
            benchmark::RegisterBenchmark((std::string("handoff/") + r.name).c_str(),
                                         [k = r.kind](benchmark::State &s) { bm_handoff(s, k); });
        for (int n : {64, 256, 2000, 16384, 65536, 1 << 20, 16 << 20})
            b->Arg(n);
        b->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
    }
    benchmark::AddCustomContext("poold_socket", g_socket ? g_socket : "(none)");
    benchmark::AddCustomContext("proc_iterations", std::to_string(g_proc_iterations));
    benchmark::AddCustomContext("proc_lt_iterations", std::to_string(g_lt_iterations));
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
