// SPDX-License-Identifier: MIT
//
// poolclient.hpp: the C++17 binding of libpoolclient, header-only, over the
// C API of poolclient.h (link libpoolclient as for C).
//
//   poold::pool             an RAII handle: attach(), embedded(), default_pool()
//   poold::memory_resource  a std::pmr::memory_resource on a pool_t *
//   poold::allocator<T>     a standard allocator on a pool_t *
//
// Allocation failures throw std::bad_alloc: a size above pool_max_size(),
// an alignment above what the pool guarantees (below), an exhausted pool.
// Failures to open a pool throw std::system_error with the errno of the C
// call and pool_last_error()'s sentence.
//
// Alignment. A block of class size C lies at a multiple of C inside its span,
// spans are aligned to at least 64 KiB inside the segment, and the segment is
// mapped on a page boundary; so a block is aligned to the largest power of
// two dividing C, at most 4 KiB (poold::max_alignment). Every class is a
// multiple of 8. A request for `bytes` at alignment A above 8 asks the pool
// for `bytes` rounded up to a multiple of A (A for 0): with the default
// classes (8, 16, 32, 48, 64, then four per doubling) and with powers of two,
// the class serving it is then a multiple of A, for any A up to 4 KiB. With
// a class list where that fails (poold --classes 8,24,48: 16 bytes at 16 go
// to 24), the class serving the request may guarantee less than A; then the
// request is refused with std::bad_alloc, deterministically (whatever the
// address of the block happened to be). Alignments above 4 KiB are always
// refused.
//
// This header owns no state of its own beyond the pool pointer it is given:
// it must never bypass the C API nor include the library's internals.
#ifndef POOLCLIENT_HPP
#define POOLCLIENT_HPP

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <memory_resource>
#include <new>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

// poolclient.h names a function and a struct pool_stats, as C does;
// g++ -Wshadow would say the function hides the struct's constructor.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#include "poolclient.h"
#pragma GCC diagnostic pop

namespace poold
{

// The largest alignment any block of any pool is guaranteed to have.
inline constexpr std::size_t max_alignment = 4096;

// Every block is aligned to at least this (every class is a multiple of 8).
inline constexpr std::size_t min_alignment = 8;

namespace detail
{

// The size asked of the pool for `bytes` at alignment `align` (a power of
// two): bytes rounded up to a multiple of align, at least align; the same
// computation on both sides, so that pool_free() gets a size of the class
// that pool_malloc() served. A size that would wrap stays above every class.
constexpr std::size_t request_size(std::size_t bytes, std::size_t align) noexcept
{
    if (bytes <= align)
        return align;
    if (align <= min_alignment || bytes > SIZE_MAX - (align - 1))
        return bytes;
    return (bytes + align - 1) & ~(align - 1);
}

// The alignment every block of class size `block` has: the largest power of
// two dividing it, at most max_alignment.
constexpr std::size_t class_alignment(std::size_t block) noexcept
{
    std::size_t low = block & (~block + 1); // 0 for 0: no block, no guarantee
    return low > max_alignment ? max_alignment : low;
}

constexpr bool valid_alignment(std::size_t align) noexcept
{
    return align != 0 && (align & (align - 1)) == 0 && align <= max_alignment;
}

// Allocate `bytes` at `align`. check_class: verify that the serving class
// guarantees `align` (needed only above min_alignment, and only when the
// pool's class list does not guarantee it: memory_resource::need_class_check).
inline void *allocate(pool_t *pool, std::size_t bytes, std::size_t align, bool check_class)
{
    if (!valid_alignment(align))
        throw std::bad_alloc();
    std::size_t need = request_size(bytes, align);
    void *p = pool_malloc(pool, need); // NULL: above pool_max_size(), or exhausted
    if (p == nullptr)
        throw std::bad_alloc();
    if (check_class && align > min_alignment && class_alignment(pool_block_size(pool, p)) < align) {
        (void)pool_free(pool, p, need);
        throw std::bad_alloc();
    }
    return p;
}

inline void deallocate(pool_t *pool, void *p, std::size_t bytes, std::size_t align) noexcept
{
    // false only for a pointer that allocate() did not return: nothing changed.
    (void)pool_free(pool, p, request_size(bytes, align));
}

[[noreturn]] inline void throw_errno(int err, const char *call)
{
    std::string what = call;
    const char *why = pool_last_error();
    if (why != nullptr && *why != '\0') {
        what += ": ";
        what += why;
    }
    throw std::system_error(err != 0 ? err : EIO, std::generic_category(), what);
}

} // namespace detail

// A std::pmr::memory_resource on a pool. It does not own the pool: the pool
// must outlive the resource and every block allocated from it. Two resources
// are equal when they use the same pool. Thread-safe as the pool is.
class memory_resource : public std::pmr::memory_resource
{
  public:
    explicit memory_resource(pool_t *pool) noexcept : pool_(pool)
    {
    }
    memory_resource(const memory_resource &o) noexcept
        : std::pmr::memory_resource(o), pool_(o.pool_),
          classes_(o.classes_.load(std::memory_order_relaxed))
    {
    }
    memory_resource &operator=(const memory_resource &) = delete;

    pool_t *pool() const noexcept
    {
        return pool_;
    }

  private:
    enum : int { classes_unknown = 0, classes_aligned = 1, classes_other = 2 };

    // Whether some over-aligned request may be served by a class that does
    // not guarantee its alignment: some class C whose sizes, (previous
    // class, C], hold a multiple of an alignment A (16 to 4 KiB) that C is
    // not a multiple of. Then an over-aligned request must check the class
    // that served it. Powers of two and the default list pass. Asked of
    // pool_stats() once, on the first over-aligned request; the classes of
    // a mapped pool never change.
    bool need_class_check() const noexcept
    {
        // relaxed: a cache of a constant of the pool; racing writers store
        // the same value, and nothing else is published through it.
        int c = classes_.load(std::memory_order_relaxed);
        if (c == classes_unknown) {
            pool_stats_t st;
            c = classes_other; // if the classes cannot be read, check every time
            if (pool_stats(pool_, &st) == 0) {
                c = classes_aligned;
                std::uint64_t prev = 0;
                for (std::uint32_t i = 0; i < st.nclasses; i++) {
                    std::uint64_t b = st.cls[i].block_size;
                    for (std::uint64_t a = 2 * min_alignment; a <= max_alignment; a *= 2)
                        if ((prev / a + 1) * a <= b && b % a != 0)
                            c = classes_other;
                    prev = b;
                }
            }
            classes_.store(c, std::memory_order_relaxed);
        }
        return c == classes_other;
    }

    void *do_allocate(std::size_t bytes, std::size_t align) override
    {
        bool check = align > min_alignment && align <= max_alignment && need_class_check();
        return detail::allocate(pool_, bytes, align, check);
    }

    void do_deallocate(void *p, std::size_t bytes, std::size_t align) override
    {
        detail::deallocate(pool_, p, bytes, align);
    }

    bool do_is_equal(const std::pmr::memory_resource &other) const noexcept override
    {
        if (this == &other)
            return true;
        auto *o = dynamic_cast<const memory_resource *>(&other);
        return o != nullptr && o->pool_ == pool_;
    }

    pool_t *pool_;
    mutable std::atomic<int> classes_{classes_unknown};
};

// A standard allocator on a pool (std::vector, std::list, std::map, ...).
// It does not own the pool. Copies, rebinds and moves keep the pool, and
// containers carry it along on copy, move and swap; two allocators are equal
// when they use the same pool.
template <class T> class allocator
{
  public:
    using value_type = T;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using propagate_on_container_copy_assignment = std::true_type;
    using propagate_on_container_move_assignment = std::true_type;
    using propagate_on_container_swap = std::true_type;
    using is_always_equal = std::false_type;

    template <class U> struct rebind {
        using other = allocator<U>;
    };

    // Not explicit, like std::pmr::polymorphic_allocator's constructor from
    // a resource: `std::vector<int, poold::allocator<int>> v(pool);`
    allocator(pool_t *pool) noexcept : pool_(pool)
    {
    }
    template <class U> allocator(const allocator<U> &o) noexcept : pool_(o.pool())
    {
    }

    pool_t *pool() const noexcept
    {
        return pool_;
    }

    // n objects of T; std::bad_array_new_length when n * sizeof(T) overflows,
    // std::bad_alloc when the pool cannot serve it.
    T *allocate(std::size_t n)
    {
        if (n > std::numeric_limits<std::size_t>::max() / sizeof(T))
            throw std::bad_array_new_length();
        // Above min_alignment the serving class is checked on every call:
        // over-aligned types are rare, and a checked class costs one lookup.
        void *p = detail::allocate(pool_, n * sizeof(T), alignof(T), alignof(T) > min_alignment);
        return static_cast<T *>(p);
    }

    void deallocate(T *p, std::size_t n) noexcept
    {
        detail::deallocate(pool_, p, n * sizeof(T), alignof(T));
    }

  private:
    pool_t *pool_;
};

template <class T, class U> bool operator==(const allocator<T> &a, const allocator<U> &b) noexcept
{
    return a.pool() == b.pool();
}

template <class T, class U> bool operator!=(const allocator<T> &a, const allocator<U> &b) noexcept
{
    return a.pool() != b.pool();
}

// An RAII handle on a pool: attach() and embedded() own theirs and detach it
// on destruction; default_pool() does not (the process-wide pool is never
// detached). Movable, not copyable. resource() is a memory_resource on the
// pool whose address stays the same when the handle is moved.
class pool
{
  public:
    // pool_attach(): socket_path nullptr means $POOLD_SOCKET, else
    // POOL_DEFAULT_SOCKET. std::system_error on failure.
    static pool attach(const char *socket_path = nullptr)
    {
        pool_t *p = pool_attach(socket_path);
        if (p == nullptr)
            detail::throw_errno(errno, "pool_attach");
        return pool(p, true);
    }

    static pool attach(const std::string &socket_path)
    {
        return attach(socket_path.c_str());
    }

    // pool_open_embedded(): no daemon; 0 means POOL_DEFAULT_BYTES.
    static pool embedded(std::size_t bytes = 0)
    {
        pool_t *p = pool_open_embedded(bytes);
        if (p == nullptr)
            detail::throw_errno(errno, "pool_open_embedded");
        return pool(p, true);
    }

    // pool_default(): the process-wide pool, not owned.
    static pool default_pool()
    {
        pool_t *p = ::pool_default();
        if (p == nullptr)
            detail::throw_errno(errno, "pool_default");
        return pool(p, false);
    }

    pool(pool &&o) noexcept
        : pool_(std::exchange(o.pool_, nullptr)), owned_(std::exchange(o.owned_, false)),
          res_(std::move(o.res_))
    {
    }

    pool &operator=(pool &&o) noexcept
    {
        if (this != &o) {
            reset();
            pool_ = std::exchange(o.pool_, nullptr);
            owned_ = std::exchange(o.owned_, false);
            res_ = std::move(o.res_);
        }
        return *this;
    }

    pool(const pool &) = delete;
    pool &operator=(const pool &) = delete;

    ~pool()
    {
        reset();
    }

    // The pool, or nullptr after a move or reset().
    pool_t *get() const noexcept
    {
        return pool_;
    }

    explicit operator bool() const noexcept
    {
        return pool_ != nullptr;
    }

    // Whether this handle detaches the pool when it goes away.
    bool owns() const noexcept
    {
        return owned_;
    }

    bool is_shared() const noexcept
    {
        return pool_is_shared(pool_);
    }

    std::size_t max_size() const noexcept
    {
        return pool_max_size(pool_);
    }

    // A memory_resource on this pool, valid until the pool is detached;
    // nullptr after a move or reset().
    memory_resource *resource() const noexcept
    {
        return res_.get();
    }

    template <class T> poold::allocator<T> allocator() const noexcept
    {
        return poold::allocator<T>(pool_);
    }

    // pool_stats(); std::system_error on failure.
    pool_stats_t stats() const
    {
        pool_stats_t st;
        if (pool_stats(pool_, &st) != 0)
            throw std::system_error(errno, std::generic_category(), "pool_stats");
        return st;
    }

    // Detach now (if owned) and become empty. Blocks still in use stay
    // allocated in the pool; no container may use it any more.
    void reset() noexcept
    {
        if (owned_ && pool_ != nullptr)
            pool_detach(pool_);
        pool_ = nullptr;
        owned_ = false;
        res_.reset();
    }

  private:
    pool(pool_t *p, bool owned) : pool_(p), owned_(owned)
    {
        try {
            res_ = std::make_unique<memory_resource>(p);
        } catch (...) {
            if (owned)
                pool_detach(p);
            throw;
        }
    }

    pool_t *pool_;
    bool owned_;
    std::unique_ptr<memory_resource> res_;
};

} // namespace poold

#endif // POOLCLIENT_HPP
