// SPDX-License-Identifier: MIT
//
// bench_common.hpp: what alloc_bench, proc_bench and alloc_probe share: the
// allocators under test (one struct each, static alloc/release, so that a
// workload template calls them directly, never through a pointer), the check
// that an LD_PRELOADed malloc really is the one serving malloc(), and the
// process's memory figures (peak RSS, bytes an allocator says it reserved).
//
// What it must never do: make one allocator do more or less work than
// another in a workload. Every adapter is the allocator's plain calls.
#ifndef POOL_BENCH_COMMON_HPP
#define POOL_BENCH_COMMON_HPP

// A function the caller cannot inline, drop or fold: GCC also needs noipa
// (no interprocedural reasoning about its body); clang has no such
// attribute and does not drop a call to a noinline function with effects.
#if defined(__clang__)
#define BENCH_OPAQUE __attribute__((noinline))
#else
#define BENCH_OPAQUE __attribute__((noinline, noipa))
#endif

#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory_resource>
#include <new>
#include <string>

#include "poolclient.h"
#include "seed_mutex_pool.hpp"

namespace bench
{

// ---- which malloc serves this process --------------------------------------

// The shared object that defines the malloc() this program calls: with an
// LD_PRELOADed allocator, its path; else glibc's libc.so.6. dladdr on the
// address the dynamic linker bound for malloc is the proof that the preload
// took effect, /proc/self/maps only that the library is mapped.
inline std::string malloc_provider()
{
    Dl_info info;
    void *(*fn)(std::size_t) = &::malloc;
    if (dladdr(reinterpret_cast<void *>(fn), &info) == 0 || info.dli_fname == nullptr)
        return "unknown";
    return info.dli_fname;
}

inline bool mapped(const char *needle)
{
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line))
        if (line.find(needle) != std::string::npos)
            return true;
    return false;
}

// The library file name that identifies each allocator name.
inline const char *malloc_lib_of(const std::string &name)
{
    if (name == "glibc")
        return "libc.so";
    if (name == "jemalloc")
        return "libjemalloc";
    if (name == "tcmalloc")
        return "libtcmalloc";
    if (name == "mimalloc")
        return "libmimalloc";
    return nullptr;
}

// --expect-malloc=NAME: exit 3, loudly, unless malloc() is NAME's. A preload
// that silently did not take would publish glibc's figures under another
// allocator's name.
inline void expect_malloc(const std::string &name, const char *prog)
{
    const char *lib = malloc_lib_of(name);
    if (lib == nullptr) {
        std::fprintf(stderr,
                     "%s: --expect-malloc=%s: expected glibc, jemalloc, tcmalloc or "
                     "mimalloc\n",
                     prog, name.c_str());
        std::exit(2);
    }
    std::string who = malloc_provider();
    bool ok = who.find(lib) != std::string::npos && (name == "glibc" || mapped(lib));
    // A block from malloc must also be one that this allocator knows.
    void *p = std::malloc(100);
    bool usable = p != nullptr && malloc_usable_size(p) >= 100;
    std::free(p);
    if (!ok || !usable) {
        std::fprintf(stderr,
                     "%s: FATAL: expected malloc() from %s (%s), but it comes from %s%s "
                     "(LD_PRELOAD=%s)\n",
                     prog, name.c_str(), lib, who.c_str(),
                     usable ? "" : " and malloc_usable_size disagrees",
                     std::getenv("LD_PRELOAD") ? std::getenv("LD_PRELOAD") : "");
        std::exit(3);
    }
}

// ---- memory figures ----------------------------------------------------------

// A line "Key:   N kB" of /proc/self/status, in bytes; 0 if absent.
inline std::size_t status_bytes(const char *key)
{
    std::ifstream st("/proc/self/status");
    std::string line;
    std::size_t klen = std::strlen(key);
    while (std::getline(st, line))
        if (line.compare(0, klen, key) == 0 && line.size() > klen && line[klen] == ':')
            return std::strtoull(line.c_str() + klen + 1, nullptr, 10) * 1024;
    return 0;
}

// Reset VmHWM to the current RSS (Linux: "5" to clear_refs), so that peak
// RSS is the workload's own. False when the kernel refuses.
inline bool reset_peak_rss()
{
    FILE *f = std::fopen("/proc/self/clear_refs", "w");
    if (f == nullptr)
        return false;
    bool ok = std::fputs("5", f) >= 0;
    return std::fclose(f) == 0 && ok;
}

// What the malloc serving this process says it holds from the system, in
// bytes, through its own statistics interface looked up at run time (so
// that a preload needs no link against it); -1 when it has no such figure.
inline long long malloc_reserved_bytes()
{
    using mallctl_fn = int (*)(const char *, void *, std::size_t *, void *, std::size_t);
    if (auto mallctl = reinterpret_cast<mallctl_fn>(dlsym(RTLD_DEFAULT, "mallctl"))) {
        std::uint64_t epoch = 1;
        std::size_t sz = sizeof epoch;
        mallctl("epoch", &epoch, &sz, &epoch, sz); // refresh jemalloc's stats
        std::size_t mapped_bytes = 0;
        sz = sizeof mapped_bytes;
        if (mallctl("stats.mapped", &mapped_bytes, &sz, nullptr, 0) == 0)
            return static_cast<long long>(mapped_bytes);
        return -1;
    }
    using tc_fn = int (*)(const char *, std::size_t *);
    if (auto get =
            reinterpret_cast<tc_fn>(dlsym(RTLD_DEFAULT, "MallocExtension_GetNumericProperty"))) {
        std::size_t heap = 0, unmapped = 0;
        if (get("generic.heap_size", &heap) == 0)
            return -1;
        get("tcmalloc.pageheap_unmapped_bytes", &unmapped);
        return static_cast<long long>(heap - unmapped);
    }
    using mi_fn = void (*)(std::size_t *, std::size_t *, std::size_t *, std::size_t *,
                           std::size_t *, std::size_t *, std::size_t *, std::size_t *);
    if (auto info = reinterpret_cast<mi_fn>(dlsym(RTLD_DEFAULT, "mi_process_info"))) {
        std::size_t el, us, sy, rss, prss, commit = 0, pcommit, pf;
        info(&el, &us, &sy, &rss, &prss, &commit, &pcommit, &pf);
        return static_cast<long long>(commit);
    }
    struct mallinfo2 mi = mallinfo2(); // glibc: the main arena plus the others, and mmaps
    return static_cast<long long>(mi.arena + mi.hblkhd);
}

// ---- allocators ---------------------------------------------------------------
//
// alloc(n) may return nullptr; release(p, n) gives back a block of size n.

inline pool_t *&pool_handle()
{
    static pool_t *p = nullptr;
    return p;
}

struct PoolClient {
    static constexpr const char *name = "poolclient";
    static void *alloc(std::size_t n)
    {
        return pool_malloc(pool_handle(), n);
    }
    static void release(void *p, std::size_t n)
    {
        (void)pool_free(pool_handle(), p, n);
    }
};

struct Malloc {
    static constexpr const char *name = "malloc";
    static void *alloc(std::size_t n)
    {
        return std::malloc(n);
    }
    static void release(void *p, std::size_t)
    {
        std::free(p);
    }
};

struct SeedMutexPool {
    static constexpr const char *name = "seed_mutex_pool";
    static void *alloc(std::size_t n)
    {
        return seed::MemoryPool::GetMemoryPool().malloc(n);
    }
    static void release(void *p, std::size_t n)
    {
        seed::MemoryPool::GetMemoryPool().free(p, n);
    }
};

// new_delete_resource() with a count of the bytes lent: the pmr pool's
// "reserved" figure.
class CountingUpstream : public std::pmr::memory_resource
{
  public:
    std::size_t held() const
    {
        return held_.load(std::memory_order_relaxed);
    }
    std::size_t peak() const
    {
        return peak_.load(std::memory_order_relaxed);
    }

  private:
    void *do_allocate(std::size_t n, std::size_t align) override
    {
        // relaxed: statistics, ordered by the pool's own lock around upstream calls
        std::size_t now = held_.fetch_add(n, std::memory_order_relaxed) + n;
        std::size_t p = peak_.load(std::memory_order_relaxed);
        while (now > p && !peak_.compare_exchange_weak(p, now, std::memory_order_relaxed))
            ;
        return std::pmr::new_delete_resource()->allocate(n, align);
    }
    void do_deallocate(void *p, std::size_t n, std::size_t align) override
    {
        std::pmr::new_delete_resource()->deallocate(p, n, align);
        held_.fetch_sub(n, std::memory_order_relaxed);
    }
    bool do_is_equal(const std::pmr::memory_resource &o) const noexcept override
    {
        return this == &o;
    }
    std::atomic<std::size_t> held_{0}, peak_{0};
};

inline CountingUpstream &pmr_upstream()
{
    static CountingUpstream r;
    return r;
}

inline std::pmr::synchronized_pool_resource &pmr_pool()
{
    static std::pmr::synchronized_pool_resource r(&pmr_upstream());
    return r;
}

struct Pmr {
    static constexpr const char *name = "pmr";
    static void *alloc(std::size_t n)
    {
        try {
            return pmr_pool().allocate(n, alignof(std::max_align_t));
        } catch (const std::bad_alloc &) {
            return nullptr;
        }
    }
    static void release(void *p, std::size_t n)
    {
        pmr_pool().deallocate(p, n, alignof(std::max_align_t));
    }
};

// The least an allocator behind a call can do: one per-thread buffer.
// Not an allocator (one block per thread at a time): a bound. The buffer is
// allocated at a thread's first call, not a thread_local array: every
// thread of the process would zero one of those at its start (its TLS
// block), allocator under test or not, and cachegrind would count it.
constexpr std::size_t kNullMax = 64 * 1024;
inline thread_local unsigned char *t_null_block = nullptr;

struct NullAllocator {
    static constexpr const char *name = "null";
    __attribute__((noinline)) static void *alloc(std::size_t n)
    {
        if (n > kNullMax)
            return nullptr;
        if (t_null_block == nullptr)
            t_null_block = static_cast<unsigned char *>(std::aligned_alloc(64, kNullMax));
        return t_null_block;
    }
    __attribute__((noinline)) static void release(void *p, std::size_t)
    {
        if (p != t_null_block)
            std::abort();
    }
};

// ---- touches ------------------------------------------------------------------

// Out of line and noipa, as in pool_bench.cpp, so the caller cannot drop or
// fold them.
BENCH_OPAQUE inline void fill(void *p, std::size_t n, unsigned v)
{
    std::memset(p, static_cast<int>(v & 0xffu), n);
}

// Reads every byte, eight at a time (the same loads for every allocator).
BENCH_OPAQUE inline std::uint64_t read_all(const void *p, std::size_t n)
{
    const unsigned char *b = static_cast<const unsigned char *>(p);
    std::uint64_t sum = 0, w;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::memcpy(&w, b + i, 8);
        sum += w;
    }
    for (; i < n; ++i)
        sum += b[i];
    return sum;
}

// ---- waiting for the other side of a ring -------------------------------------
//
// A counter that one side advances and the other waits on. The waiter
// spins a little, then yields the CPU between looks. It never sleeps: a
// futex sleep here was tried, and on 2 CPUs shared with other tenants each
// wake-up took about 80 us (the woken side waits for a CPU), so the figures
// measured the scheduler's wake-up latency, not the allocator. Yielding
// keeps the waiter runnable and gives its CPU to the side it waits for.
struct Progress {
    alignas(64) std::atomic<std::uint64_t> value{0}; // the one writer's count

    void reset()
    {
        value.store(0, std::memory_order_relaxed);
    }

    // The writer: publish v; release pairs with the acquire load in wait().
    void publish(std::uint64_t v)
    {
        value.store(v, std::memory_order_release);
    }

    // The reader: return the first value for which ok(value) holds.
    template <class Ok> std::uint64_t wait(Ok ok)
    {
        for (unsigned spins = 0;; ++spins) {
            std::uint64_t v = value.load(std::memory_order_acquire);
            if (ok(v))
                return v;
            if (spins < 64)
                __builtin_ia32_pause();
            else
                sched_yield();
        }
    }
};

// ---- (g) mixed sizes and lifetimes ------------------------------------------
//
// One thread; each step allocates one block, fills it, and frees the block
// whose slot it takes. Sizes, from a fixed xorshift stream: 60% 16-128 B,
// 30% 128 B-1 KiB, 9% 1-8 KiB, 1% 8-64 KiB, uniform within each range (not
// rounded to any allocator's classes). Lifetimes: 90% of blocks go to a ring
// of 32 slots (freed 32 short-lived allocations later), 10% to one of 8192
// long-lived slots picked at random (freed when that slot is picked again).
// Steady state: about 8200 blocks, about 8 MB live.
template <class A> class Mixed
{
  public:
    static constexpr std::size_t kShort = 32, kLong = 8192;

    // One step; false when the allocator returned nullptr.
    bool step()
    {
        std::uint64_t r = next();
        std::size_t n = size_of(r);
        void *p = A::alloc(n);
        if (p == nullptr)
            return false;
        live_ += n;
        if (live_ > peak_live_)
            peak_live_ = live_;
        fill(p, n, static_cast<unsigned>(r));
        Slot &s = ((r >> 40) % 10 == 0) ? long_[(r >> 20) % kLong] : short_[ring_++ % kShort];
        if (s.p != nullptr) {
            A::release(s.p, s.n);
            live_ -= s.n;
        }
        s.p = p;
        s.n = n;
        return true;
    }

    // Free every block still held.
    void drain()
    {
        for (Slot &s : short_)
            release(s);
        for (Slot &s : long_)
            release(s);
    }

    std::size_t live_bytes() const
    {
        return live_;
    }
    std::size_t peak_live_bytes() const
    {
        return peak_live_;
    }

    static std::size_t size_of(std::uint64_t r)
    {
        unsigned pick = static_cast<unsigned>(r % 100);
        std::uint64_t u = r >> 8;
        if (pick < 60)
            return 16 + u % 113; // 16..128
        if (pick < 90)
            return 129 + u % 896; // 129..1024
        if (pick < 99)
            return 1025 + u % 7168; // 1025..8192
        return 8193 + u % 57344;    // 8193..65536
    }

  private:
    struct Slot {
        void *p = nullptr;
        std::size_t n = 0;
    };
    void release(Slot &s)
    {
        if (s.p != nullptr) {
            A::release(s.p, s.n);
            live_ -= s.n;
            s.p = nullptr;
        }
    }
    std::uint64_t next()
    {
        x_ ^= x_ << 13;
        x_ ^= x_ >> 7;
        x_ ^= x_ << 17;
        return x_;
    }

    std::uint64_t x_ = 0x9e3779b97f4a7c15ull;
    std::size_t ring_ = 0, live_ = 0, peak_live_ = 0;
    Slot short_[kShort];
    Slot long_[kLong];
};

} // namespace bench

#endif // POOL_BENCH_COMMON_HPP
