// SPDX-License-Identifier: MIT
//
// seed_mutex_pool.hpp: the seed's "map memory pool", rewritten as a baseline
// for pool_bench (bench/ only; nothing in the library uses it).
//
// What it reproduces, on purpose, from the seed (DESIGN.md, "Where it comes
// from"): power-of-two size classes from 8 B; a hash map from block size to a
// LIFO free list; one std::mutex per class, taken on every malloc and free;
// 4 KiB pages from mmap carved into blocks; memory never returned to the
// system; a process-wide singleton GetMemoryPool() with malloc(size) and
// free(ptr, size).
//
// What it must never do: be "improved". Its contended mutex on the hot path
// is exactly what the benchmark measures against libpoolclient.
#ifndef POOL_BENCH_SEED_MUTEX_POOL_HPP
#define POOL_BENCH_SEED_MUTEX_POOL_HPP

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <unordered_map>

namespace seed {

class MemoryPool {
public:
    static constexpr std::size_t kMinClass = 8;
    static constexpr std::size_t kMaxClass = 64 * 1024;
    static constexpr std::size_t kPage = 4096;

    // The process-wide pool, as MemoryPool::GetMemoryPool() in the seed.
    static MemoryPool &GetMemoryPool()
    {
        static MemoryPool pool;
        return pool;
    }

    // A block of at least `size` bytes (its class: the next power of two,
    // at least 8 B). nullptr when size is above kMaxClass or mmap fails.
    void *malloc(std::size_t size)
    {
        Class *c = find(size);
        if (c == nullptr)
            return nullptr;
        std::lock_guard<std::mutex> lock(c->mu);
        if (c->head == nullptr && !carve(*c))
            return nullptr;
        Node *n = c->head; // LIFO: the block freed last comes back first
        c->head = n->next;
        return n;
    }

    // Give a block back to the class of `size` (same size class as asked).
    void free(void *ptr, std::size_t size)
    {
        if (ptr == nullptr)
            return;
        Class *c = find(size);
        if (c == nullptr)
            return;
        std::lock_guard<std::mutex> lock(c->mu);
        Node *n = static_cast<Node *>(ptr);
        n->next = c->head;
        c->head = n;
    }

    MemoryPool(const MemoryPool &) = delete;
    MemoryPool &operator=(const MemoryPool &) = delete;

private:
    struct Node {
        Node *next;
    };
    struct Class {
        std::size_t block = 0;
        std::mutex mu;        // guards head; taken on every malloc/free
        Node *head = nullptr; // LIFO free list
    };

    MemoryPool()
    {
        // The map is filled once here and only read afterwards, so lookups
        // need no lock (the seed's per-class mutex guards the list only).
        for (std::size_t b = kMinClass; b <= kMaxClass; b <<= 1)
            classes_[b].block = b;
    }
    ~MemoryPool() = default; // memory is never returned, as in the seed

    static std::size_t class_of(std::size_t size)
    {
        std::size_t b = kMinClass;
        while (b < size)
            b <<= 1;
        return b;
    }

    Class *find(std::size_t size)
    {
        if (size > kMaxClass)
            return nullptr;
        auto it = classes_.find(class_of(size));
        return it == classes_.end() ? nullptr : &it->second;
    }

    // Map one page (or one block, for classes above 4 KiB) and push every
    // block on the class's list. Called with c.mu held.
    static bool carve(Class &c)
    {
        std::size_t bytes = c.block > kPage ? c.block : kPage;
        void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return false;
        char *base = static_cast<char *>(p);
        // Push from the end so that the first block of the page is on top.
        for (std::size_t off = bytes; off >= c.block; off -= c.block) {
            Node *n = reinterpret_cast<Node *>(base + off - c.block);
            n->next = c.head;
            c.head = n;
        }
        return true;
    }

    std::unordered_map<std::size_t, Class> classes_;
};

} // namespace seed

#endif // POOL_BENCH_SEED_MUTEX_POOL_HPP
