// SPDX-License-Identifier: MIT
//
// test_cpp: the C++ binding (include/poolclient.hpp) through the public API
// only: std::pmr containers on poold::memory_resource, standard containers
// on poold::allocator<T>, and poold::pool handles, on an embedded pool and
// on a live poold started on a temporary socket and segment (stopped by pid,
// segment unlinked in teardown). Every test checks that the containers' data
// lies in the pool, that over-size and over-aligned requests throw
// std::bad_alloc, and that the pool's books balance afterwards.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <map>
#include <memory_resource>
#include <new>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

// cmocka.h declares some of its functions (print_error) outside its own
// extern "C" block.
extern "C" {
#include <cmocka.h>
}

#include "poolclient.hpp"

extern char **environ;

namespace
{

static_assert(!std::is_copy_constructible_v<poold::pool>);
static_assert(!std::is_copy_assignable_v<poold::pool>);
static_assert(std::is_nothrow_move_constructible_v<poold::pool>);
static_assert(std::is_nothrow_move_assignable_v<poold::pool>);
static_assert(std::is_same_v<std::allocator_traits<poold::allocator<int>>::rebind_alloc<double>,
                             poold::allocator<double>>);
static_assert(std::is_base_of_v<std::pmr::memory_resource, poold::memory_resource>);

constexpr std::size_t kPoolBytes = std::size_t(16) << 20;

// ---- helpers ---------------------------------------------------------------

bool in_pool(pool_t *p, const void *ptr)
{
    return pool_offset(p, ptr) != UINT64_MAX;
}

template <class F> bool throws_bad_alloc(F f)
{
    try {
        f();
    } catch (const std::bad_alloc &) {
        return true;
    }
    return false;
}

pool_stats_t snap(pool_t *p)
{
    pool_stats_t st;
    assert_int_equal(pool_stats(p, &st), 0);
    return st;
}

std::int64_t in_use_total(const pool_stats_t &st)
{
    std::int64_t n = 0;
    for (std::uint32_t c = 0; c < st.nclasses; c++)
        n += st.cls[c].blocks_in_use;
    return n;
}

// At rest, per class: central + cached + in use == carved (DESIGN.md, 5).
void check_books(const pool_stats_t &st)
{
    for (std::uint32_t c = 0; c < st.nclasses; c++) {
        const pool_class_stats_t &k = st.cls[c];
        std::int64_t sum =
            static_cast<std::int64_t>(k.blocks_central + k.blocks_cached) + k.blocks_in_use;
        if (sum != static_cast<std::int64_t>(k.blocks_carved))
            fail_msg("class %llu: central %llu + cached %llu + in use %lld != carved %llu",
                     (unsigned long long)k.block_size, (unsigned long long)k.blocks_central,
                     (unsigned long long)k.blocks_cached, (long long)k.blocks_in_use,
                     (unsigned long long)k.blocks_carved);
    }
}

// Every class has as many blocks in use as before: everything was freed.
void check_returned(const pool_stats_t &before, const pool_stats_t &after)
{
    assert_int_equal(before.nclasses, after.nclasses);
    for (std::uint32_t c = 0; c < after.nclasses; c++)
        if (before.cls[c].blocks_in_use != after.cls[c].blocks_in_use)
            fail_msg("class %llu: %lld blocks in use before, %lld after",
                     (unsigned long long)after.cls[c].block_size,
                     (long long)before.cls[c].blocks_in_use, (long long)after.cls[c].blocks_in_use);
    assert_int_equal(before.bytes_in_use, after.bytes_in_use);
    check_books(after);
}

// ---- what every pool is put through ----------------------------------------

// std::pmr::vector, string and map on poold::memory_resource.
void exercise_pmr(pool_t *p)
{
    pool_stats_t before = snap(p);
    {
        poold::memory_resource res(p);
        assert_true(res.pool() == p);

        std::pmr::vector<int> v(&res);
        for (int i = 0; i < 1000; i++)
            v.push_back(i);
        assert_true(in_pool(p, v.data()));
        assert_true(pool_block_size(p, v.data()) >= v.capacity() * sizeof(int));

        std::pmr::string s("a string long enough to leave the small-string buffer behind", &res);
        assert_true(in_pool(p, s.data()));
        s.append(3000, 'y');
        assert_true(in_pool(p, s.data()));
        assert_int_equal(s.size(), 60 + 3000);

        // uses-allocator construction: the mapped strings use the pool too
        std::pmr::map<int, std::pmr::string> m(&res);
        for (int i = 0; i < 200; i++)
            m.emplace(i, std::pmr::string(40, static_cast<char>('a' + i % 26)));
        assert_int_equal(m.size(), 200);
        for (const auto &kv : m) {
            assert_true(in_pool(p, &kv));
            assert_true(in_pool(p, kv.second.data()));
            assert_true(kv.second.get_allocator().resource()->is_equal(res));
        }

        pool_stats_t mid = snap(p);
        // vector + string + 200 nodes + 200 strings, at least
        assert_true(in_use_total(mid) >= in_use_total(before) + 402);
        assert_true(mid.bytes_in_use > before.bytes_in_use);

        long long sum = 0;
        for (int x : v)
            sum += x;
        assert_int_equal(sum, 999 * 1000 / 2);
        assert_int_equal(m.at(27)[0], 'b');
    }
    check_returned(before, snap(p));
}

struct alignas(64) Line {
    unsigned char bytes[64];
};

// std::vector, std::list, std::map with poold::allocator<T>.
void exercise_allocator(pool_t *p)
{
    pool_stats_t before = snap(p);
    {
        poold::allocator<int> a(p);
        std::vector<int, poold::allocator<int>> v(a);
        for (int i = 0; i < 5000; i++)
            v.push_back(i);
        assert_true(in_pool(p, v.data()));
        assert_true(v.get_allocator() == a);

        // copies and moves keep the pool
        std::vector<int, poold::allocator<int>> copy(v);
        assert_true(in_pool(p, copy.data()));
        assert_true(copy.data() != v.data());
        std::vector<int, poold::allocator<int>> moved(std::move(copy));
        assert_true(in_pool(p, moved.data()));
        assert_int_equal(moved[4999], 4999);

        std::list<int, poold::allocator<int>> l(a); // rebinds to its node type
        for (int i = 0; i < 300; i++)
            l.push_back(i);
        for (const int &x : l)
            assert_true(in_pool(p, &x));

        using Map =
            std::map<int, long, std::less<int>, poold::allocator<std::pair<const int, long>>>;
        Map m{poold::allocator<std::pair<const int, long>>(p)};
        for (int i = 0; i < 300; i++)
            m[i] = i * 2L;
        for (const auto &kv : m)
            assert_true(in_pool(p, &kv));
        assert_int_equal(m.at(150), 300);

        // a type aligned above 8: every element where its alignment says
        std::vector<Line, poold::allocator<Line>> lines(p);
        lines.resize(100);
        assert_true(in_pool(p, lines.data()));
        assert_int_equal(reinterpret_cast<std::uintptr_t>(lines.data()) % alignof(Line), 0);

        pool_stats_t mid = snap(p);
        assert_true(in_use_total(mid) >= in_use_total(before) + 2 + 300 + 300 + 1);
    }
    check_returned(before, snap(p));
}

// Sizes above pool_max_size(), alignments above what the pool guarantees.
void exercise_limits(pool_t *p)
{
    pool_stats_t before = snap(p);
    poold::memory_resource res(p);
    const std::size_t max = pool_max_size(p);
    assert_true(max >= 4096);

    assert_true(throws_bad_alloc([&] { (void)res.allocate(max + 1); }));
    assert_true(throws_bad_alloc([&] { (void)res.allocate(max + 1, 1); }));
    void *big = res.allocate(max, 8);
    assert_true(in_pool(p, big));
    res.deallocate(big, max, 8);

    assert_true(throws_bad_alloc([&] { (void)res.allocate(8, 2 * poold::max_alignment); }));
    assert_true(throws_bad_alloc([&] { (void)res.allocate(1, 8192); }));
    volatile std::size_t not_pow2 = 24; // a run-time value: clang refuses the constant
    assert_true(throws_bad_alloc([&] { (void)res.allocate(64, not_pow2); }));

    std::pmr::vector<char> cv(&res);
    assert_true(throws_bad_alloc([&] { cv.resize(max + 1); }));
    cv.resize(max);
    assert_true(in_pool(p, cv.data()));
    cv = std::pmr::vector<char>(&res);

    poold::allocator<char> ca(p);
    assert_true(throws_bad_alloc([&] { (void)ca.allocate(max + 1); }));
    poold::allocator<long> la(p);
    bool length = false;
    try {
        (void)la.allocate(SIZE_MAX / 4);
    } catch (const std::bad_array_new_length &) {
        length = true;
    }
    assert_true(length);

    struct alignas(8192) Huge {
        char c;
    };
    poold::allocator<Huge> ha(p);
    assert_true(throws_bad_alloc([&] { (void)ha.allocate(1); }));

    // Equality: same pool, same resource; another pool, not.
    poold::memory_resource res2(p);
    assert_true(res.is_equal(res2));
    assert_true(res == res2);
    assert_false(res.is_equal(*std::pmr::new_delete_resource()));
    poold::pool other = poold::pool::embedded(8u << 20);
    assert_false(res.is_equal(*other.resource()));
    assert_true(poold::allocator<int>(p) == poold::allocator<double>(p));
    assert_true(poold::allocator<int>(p) != poold::allocator<int>(other.get()));
    poold::allocator<double> rebound(poold::allocator<int>{p});
    assert_true(rebound.pool() == p);

    check_returned(before, snap(p));
}

// Every power-of-two alignment up to poold::max_alignment, at sizes around
// it, is honoured by a pool with the default classes (or powers of two):
// blocks held together (so not one LIFO block) are each aligned.
void exercise_alignment(pool_t *p)
{
    pool_stats_t before = snap(p);
    poold::memory_resource res(p);
    // The largest class (above it, large blocks: whole spans, up to pool_max_size()).
    const std::size_t max = before.cls[before.nclasses - 1].block_size;
    for (std::size_t align = 1; align <= poold::max_alignment; align *= 2) {
        const std::size_t sizes[] = {0, 1, align / 2, align, align + 1, 3 * align, 5000};
        for (std::size_t bytes : sizes) {
            if (bytes > max)
                continue;
            void *held[6];
            for (void *&h : held) {
                h = res.allocate(bytes, align);
                assert_true(in_pool(p, h));
                if (reinterpret_cast<std::uintptr_t>(h) % align != 0)
                    fail_msg("allocate(%zu, %zu) returned %p", bytes, align, h);
                assert_true(pool_block_size(p, h) >= bytes);
            }
            for (void *h : held)
                res.deallocate(h, bytes, align);
        }
    }
    // The largest class at the largest alignment, several at once; then a
    // large block, which is aligned to its span.
    void *big = res.allocate(4 * max + 1, poold::max_alignment);
    assert_int_equal(reinterpret_cast<std::uintptr_t>(big) % poold::max_alignment, 0);
    res.deallocate(big, 4 * max + 1, poold::max_alignment);
    void *held[4];
    for (void *&h : held) {
        h = res.allocate(max, poold::max_alignment);
        assert_int_equal(reinterpret_cast<std::uintptr_t>(h) % poold::max_alignment, 0);
    }
    for (void *h : held)
        res.deallocate(h, max, poold::max_alignment);
    check_returned(before, snap(p));
}

// ---- embedded pool -----------------------------------------------------------

int setup_embedded(void **state)
{
    *state = new poold::pool(poold::pool::embedded(kPoolBytes));
    return 0;
}

int teardown_embedded(void **state)
{
    auto *h = static_cast<poold::pool *>(*state);
    check_books(h->stats());
    delete h;
    return 0;
}

pool_t *state_pool(void **state)
{
    return static_cast<poold::pool *>(*state)->get();
}

void test_cpp_embedded_pmr_containers(void **state)
{
    assert_false(pool_is_shared(state_pool(state)));
    exercise_pmr(state_pool(state));
}

void test_cpp_embedded_allocator_containers(void **state)
{
    exercise_allocator(state_pool(state));
}

void test_cpp_embedded_limits(void **state)
{
    exercise_limits(state_pool(state));
}

void test_cpp_embedded_alignment(void **state)
{
    exercise_alignment(state_pool(state));
}

// One resource shared by threads, as a pmr resource usually is: the first
// over-aligned requests race to learn the pool's classes.
void test_cpp_embedded_threads(void **state)
{
    pool_t *p = state_pool(state);
    pool_stats_t before = snap(p);
    {
        poold::memory_resource res(p);
        std::atomic<int> bad{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; t++) {
            threads.emplace_back([&res, &bad, p, t] {
                const std::size_t size = std::size_t(50) << t;
                for (int i = 0; i < 2000; i++) {
                    void *b = res.allocate(size, alignof(std::max_align_t));
                    if (!in_pool(p, b) ||
                        reinterpret_cast<std::uintptr_t>(b) % alignof(std::max_align_t) != 0)
                        bad.fetch_add(1, std::memory_order_relaxed);
                    std::memset(b, t, size);
                    res.deallocate(b, size, alignof(std::max_align_t));
                }
                std::pmr::vector<int> v(&res);
                std::vector<int, poold::allocator<int>> w(p);
                for (int i = 0; i < 3000; i++) {
                    v.push_back(i);
                    w.push_back(i);
                }
                if (!in_pool(p, v.data()) || !in_pool(p, w.data()))
                    bad.fetch_add(1, std::memory_order_relaxed);
            });
        }
        for (auto &th : threads)
            th.join();
        assert_int_equal(bad.load(), 0);
    }
    check_returned(before, snap(p));
}

// poold::pool: ownership, moves, errors.
void test_cpp_pool_handle(void **)
{
    poold::pool a = poold::pool::embedded(8u << 20);
    assert_true(a.owns());
    assert_true(static_cast<bool>(a));
    assert_false(a.is_shared());
    assert_int_equal(a.max_size(), pool_max_size(a.get()));
    assert_true(a.max_size() > 65536); // large blocks above the largest class
    pool_t *raw = a.get();
    poold::memory_resource *r = a.resource();
    assert_true(r != nullptr && r->pool() == raw);

    // a pmr vector keeps working across a move of the handle
    poold::pool b = poold::pool::embedded(8u << 20);
    {
        std::pmr::vector<int> v(a.resource());
        v.assign(100, 7);
        b = std::move(a); // detaches b's first pool, takes a's
        assert_true(a.get() == nullptr && a.resource() == nullptr && !a.owns());
        assert_true(b.get() == raw && b.resource() == r);
        v.assign(2000, 9);
        assert_true(in_pool(raw, v.data()));
        assert_true(pool_stats(raw, nullptr) == -1 && errno == EINVAL);
    }
    pool_stats_t st = b.stats();
    check_books(st);
    assert_int_equal(in_use_total(st), 0);

    b = poold::pool::embedded(8u << 20); // detaches the first pool
    assert_true(b.get() != raw && b.owns());
    b.reset();
    assert_true(b.get() == nullptr);

    // errors carry errno
    try {
        (void)poold::pool::embedded(1);
        fail_msg("embedded(1) did not throw");
    } catch (const std::system_error &e) {
        assert_int_equal(e.code().value(), EINVAL);
        assert_true(e.code().category() == std::generic_category());
    }
    try {
        (void)poold::pool::attach("/nonexistent-poold-dir/poold.sock");
        fail_msg("attach of a missing socket did not throw");
    } catch (const std::system_error &e) {
        assert_true(e.code().value() == ENOENT || e.code().value() == ECONNREFUSED);
        assert_true(std::strstr(e.what(), "pool_attach") != nullptr);
    }

    // default_pool(): not owned, so its handle going away detaches nothing
    setenv("POOLD_SOCKET", "/nonexistent-poold-dir/poold.sock", 1);
    setenv("POOL_EMBEDDED_BYTES", "8M", 1);
    pool_t *def = nullptr;
    {
        poold::pool d = poold::pool::default_pool();
        assert_false(d.owns());
        def = d.get();
        assert_true(def == pool_default());
        poold::pool d2 = std::move(d);
        assert_true(d2.get() == def);
    }
    assert_true(poold::pool::default_pool().get() == def);
    poold::memory_resource dres(def); // still attached: usable
    std::pmr::vector<long> w(&dres);
    w.assign(500, 3);
    assert_true(in_pool(def, w.data()));
}

// ---- a live poold ------------------------------------------------------------

#ifdef POOLD_BIN
struct Live {
    char dir[64];
    char sock[128];
    char shm[64];
    char log[128];
    pid_t pid = 0;
    std::optional<poold::pool> pool; // once poold answers
};

int seq;

pid_t spawn(const std::vector<const char *> &args, const char *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_APPEND, 0600);
    std::vector<char *> argv;
    for (const char *a : args)
        argv.push_back(const_cast<char *>(a));
    argv.push_back(nullptr);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? pid : -1;
}

std::string slurp(const char *path)
{
    std::string s;
    if (FILE *f = std::fopen(path, "r")) {
        char buf[4096];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
            s.append(buf, n);
        std::fclose(f);
    }
    return s;
}

// Start poold with `classes`; attach to it (retrying until it answers).
int start_live(void **state, const char *classes)
{
    auto *l = new Live;
    ++seq;
    std::snprintf(l->dir, sizeof l->dir, "/tmp/poold-cpp-%d-%d", (int)getpid(), seq);
    std::snprintf(l->sock, sizeof l->sock, "%s/poold.sock", l->dir);
    std::snprintf(l->log, sizeof l->log, "%s/poold.log", l->dir);
    std::snprintf(l->shm, sizeof l->shm, "/poold-cpp-%d-%d", (int)getpid(), seq);
    mkdir(l->dir, 0700);
    *state = l;
    l->pid = spawn({POOLD_BIN, "--socket", l->sock, "--shm-name", l->shm, "--size", "16M",
                    "--classes", classes, "--log-level", "debug"},
                   l->log);
    if (l->pid <= 0) {
        std::fprintf(stderr, "cannot start %s\n", POOLD_BIN);
        return -1;
    }
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < end) {
        try {
            l->pool.emplace(poold::pool::attach(l->sock));
            return 0;
        } catch (const std::system_error &) {
        }
        int status;
        if (waitpid(l->pid, &status, WNOHANG) == l->pid) {
            l->pid = 0;
            std::fprintf(stderr, "poold exited at start:\n%s", slurp(l->log).c_str());
            return -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::fprintf(stderr, "poold did not answer within 10 s:\n%s", slurp(l->log).c_str());
    return -1;
}

int setup_live(void **state)
{
    return start_live(state, "8-65536");
}

// Classes that are not all powers of two: a class of 24 bytes guarantees 8.
int setup_live_odd(void **state)
{
    return start_live(state, "8,24,48,64,4096");
}

int teardown_live(void **state)
{
    auto *l = static_cast<Live *>(*state);
    int rc = 0;
    if (l->pool)
        check_books(l->pool->stats());
    l->pool.reset(); // detach before poold goes
    if (l->pid > 0) {
        kill(l->pid, SIGTERM);
        int status = 0;
        auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (waitpid(l->pid, &status, WNOHANG) != l->pid) {
            if (std::chrono::steady_clock::now() > end) {
                kill(l->pid, SIGKILL);
                waitpid(l->pid, &status, 0);
                std::fprintf(stderr, "poold did not stop on SIGTERM\n");
                rc = -1;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            std::fprintf(stderr, "poold exited with status %d:\n%s", status, slurp(l->log).c_str());
            rc = -1;
        }
    }
    shm_unlink(l->shm);
    unlink(l->sock);
    unlink((std::string(l->sock) + ".lock").c_str()); // poold's lock beside its socket
    unlink(l->log);
    rmdir(l->dir);
    delete l;
    return rc;
}

pool_t *live_pool(void **state)
{
    pool_t *p = static_cast<Live *>(*state)->pool->get();
    assert_true(pool_is_shared(p));
    return p;
}

void test_cpp_live_pmr_containers(void **state)
{
    exercise_pmr(live_pool(state));
}

void test_cpp_live_allocator_containers(void **state)
{
    exercise_allocator(live_pool(state));
}

void test_cpp_live_limits(void **state)
{
    exercise_limits(live_pool(state));
    exercise_alignment(live_pool(state));
}

// With a 24-byte class, 16-byte alignment cannot be promised for requests
// it serves: refused every time (not only when a block happens to be
// misaligned); classes whose size is a multiple of the alignment serve it.
void test_cpp_live_odd_classes_alignment(void **state)
{
    pool_t *p = live_pool(state);
    pool_stats_t before = snap(p);
    poold::memory_resource res(p);
    for (int i = 0; i < 10; i++) {
        assert_true(throws_bad_alloc([&] { (void)res.allocate(16, 16); })); // class 24
        assert_true(throws_bad_alloc([&] { (void)res.allocate(20, 32); })); // 32: class 48
    }
    void *held[10];
    for (void *&h : held) {
        h = res.allocate(40, 16); // class 48: aligned to 16
        assert_int_equal(reinterpret_cast<std::uintptr_t>(h) % 16, 0);
        assert_int_equal(pool_block_size(p, h), 48);
    }
    for (void *h : held)
        res.deallocate(h, 40, 16);
    for (void *&h : held) {
        h = res.allocate(20, 8); // class 24: aligned to 8
        assert_int_equal(reinterpret_cast<std::uintptr_t>(h) % 8, 0);
    }
    for (void *h : held)
        res.deallocate(h, 20, 8);
    void *page = res.allocate(100, 4096); // class 4096
    assert_int_equal(reinterpret_cast<std::uintptr_t>(page) % 4096, 0);
    res.deallocate(page, 100, 4096);

    struct alignas(16) Pair16 {
        long a, b;
    };
    poold::allocator<Pair16> a16(p);
    assert_true(throws_bad_alloc([&] { (void)a16.allocate(1); })); // class 24
    Pair16 *two = a16.allocate(2);                                 // class 48
    assert_int_equal(reinterpret_cast<std::uintptr_t>(two) % 16, 0);
    a16.deallocate(two, 2);
    check_returned(before, snap(p));
}
#endif

} // namespace

int main()
{
    const struct CMUnitTest embedded[] = {
        cmocka_unit_test_setup_teardown(test_cpp_embedded_pmr_containers, setup_embedded,
                                        teardown_embedded),
        cmocka_unit_test_setup_teardown(test_cpp_embedded_allocator_containers, setup_embedded,
                                        teardown_embedded),
        cmocka_unit_test_setup_teardown(test_cpp_embedded_limits, setup_embedded,
                                        teardown_embedded),
        cmocka_unit_test_setup_teardown(test_cpp_embedded_alignment, setup_embedded,
                                        teardown_embedded),
        cmocka_unit_test_setup_teardown(test_cpp_embedded_threads, setup_embedded,
                                        teardown_embedded),
        cmocka_unit_test(test_cpp_pool_handle),
    };
    int failed = cmocka_run_group_tests_name("cpp_embedded", embedded, nullptr, nullptr);
#ifdef POOLD_BIN
    const struct CMUnitTest live[] = {
        cmocka_unit_test_setup_teardown(test_cpp_live_pmr_containers, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_cpp_live_allocator_containers, setup_live,
                                        teardown_live),
        cmocka_unit_test_setup_teardown(test_cpp_live_limits, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_cpp_live_odd_classes_alignment, setup_live_odd,
                                        teardown_live),
    };
    failed += cmocka_run_group_tests_name("cpp_live", live, nullptr, nullptr);
#endif
    return failed == 0 ? 0 : 1;
}
