/* SPDX-License-Identifier: MIT */
/*
 * pshm_atomic.h: the only atomics wrapper of poold.
 *
 * Every macro names its memory order, so that a reader sees at each call site
 * what it is ordered with; callers add a comment saying what it pairs with.
 * Nothing else in the tree includes <stdatomic.h>: there is no implicit
 * seq_cst access anywhere. The objects live in shared memory, mapped by many
 * processes, so only lock-free atomics may be used (checked at attach).
 */
#ifndef PSHM_ATOMIC_H
#define PSHM_ATOMIC_H

#include <stdatomic.h>
#include <stdint.h>

typedef _Atomic uint32_t pa_u32;
typedef _Atomic uint64_t pa_u64;
typedef _Atomic int32_t pa_i32;
typedef _Atomic uint8_t pa_u8;

/*
 * Crash points (test builds only: CMake option POOL_CRASH_POINTS, never a
 * release build). With POOL_CRASH_POINTS defined, every store, exchange,
 * add and compare-and-swap below (pa_cas16_acq_rel included) calls
 * pshm_crash_point_() right after the operation, and the slow paths call
 * PSHM_CRASH_POINT() after each plain store to shared memory: a test arms
 * the calling thread to die (SIGKILL) at its Nth point, so that "death at
 * point N" leaves the Nth shared store done and the next one not
 * (shm/pshm_crash.c, tests/test_crashpoints.c). Without the option the
 * wrappers below are the bare operations and PSHM_CRASH_POINT() is
 * nothing: the fast path's code is the same.
 */
#if defined(POOL_CRASH_POINTS)
void pshm_crash_point_(void);
/* n > 0: the calling thread dies at its nth point from now; 0: it counts
 * its points only; < 0: disarmed (the default). */
void pshm_crash_arm(long n);
/* Points the calling thread passed since it was armed. */
long pshm_crash_points(void);
#define PSHM_CRASH_POINT() pshm_crash_point_()
#define PA_CP_(e)                                                                                  \
    (__extension__({                                                                               \
        __typeof__(e) pa_cp_r_ = (e);                                                              \
        pshm_crash_point_();                                                                       \
        pa_cp_r_;                                                                                  \
    }))
#define PA_CPV_(e) ((e), pshm_crash_point_())
#else
#define PSHM_CRASH_POINT() ((void)0)
#define PA_CP_(e) (e)
#define PA_CPV_(e) (e)
#endif

#if defined(__SANITIZE_THREAD__)
#define PA_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PA_TSAN 1
#endif
#endif

#if defined(PA_TSAN)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
/*
 * Under TSan only: an ordering another process makes is invisible to TSan.
 * Most of it does not matter (a block stays in its class, and the owner
 * bytes and list heads carry their own acquire and release), but a span
 * goes from one use to another (a class, a large block, its tail of owner
 * bytes) through a release that is often another process's: this thread's
 * sweep reads a span's owner bytes, another process frees the span, a
 * third thread of ours claims it as a large block and writes there. The
 * chain is real (our release, their acquire and release, our acquire),
 * but TSan sees only its two ends, and reports a race. So every release
 * below also releases one token of the process, and a span claim
 * (pshm_span.c) acquires it: a span claimed from the free pool is ordered
 * after everything this process released into the segment before.
 */
extern char pa_tsan_segment_token_;
#define PA_TSAN_REL_() __tsan_release(&pa_tsan_segment_token_)
#define pa_tsan_span_claimed() __tsan_acquire(&pa_tsan_segment_token_)
#else
#define PA_TSAN_REL_() ((void)0)
#define pa_tsan_span_claimed() ((void)0)
#endif

/*
 * A seq_cst fence (the ring's event counts, pshm_ring.c). GCC refuses
 * atomic_thread_fence under TSan, so there it is a seq_cst read-modify-
 * write of one word of the process, which x86 makes with a locked
 * instruction: a full barrier as well.
 */
#if defined(PA_TSAN)
extern _Atomic unsigned pa_tsan_fence_word_;
#define pa_fence_seq_cst()                                                                         \
    ((void)atomic_fetch_add_explicit(&pa_tsan_fence_word_, 0u, memory_order_seq_cst))
#else
#define pa_fence_seq_cst() atomic_thread_fence(memory_order_seq_cst)
#endif

#define pa_load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define pa_load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
#define pa_store_relaxed(p, v) PA_CPV_(atomic_store_explicit((p), (v), memory_order_relaxed))
#define pa_store_release(p, v)                                                                     \
    (PA_TSAN_REL_(), PA_CPV_(atomic_store_explicit((p), (v), memory_order_release)))

#define pa_add_relaxed(p, v) PA_CP_(atomic_fetch_add_explicit((p), (v), memory_order_relaxed))
#define pa_sub_relaxed(p, v) PA_CP_(atomic_fetch_sub_explicit((p), (v), memory_order_relaxed))
#define pa_or_relaxed(p, v) PA_CP_(atomic_fetch_or_explicit((p), (v), memory_order_relaxed))
#define pa_or_acq_rel(p, v)                                                                        \
    (PA_TSAN_REL_(), PA_CP_(atomic_fetch_or_explicit((p), (v), memory_order_acq_rel)))
#define pa_and_acq_rel(p, v)                                                                       \
    (PA_TSAN_REL_(), PA_CP_(atomic_fetch_and_explicit((p), (v), memory_order_acq_rel)))
#define pa_exchange_acq_rel(p, v)                                                                  \
    (PA_TSAN_REL_(), PA_CP_(atomic_exchange_explicit((p), (v), memory_order_acq_rel)))

/* Compare-and-swap; on failure *expected gets the current value (acquire). */
#define pa_cas_weak_acq_rel(p, expected, desired)                                                  \
    (PA_TSAN_REL_(), PA_CP_(atomic_compare_exchange_weak_explicit(                                 \
                         (p), (expected), (desired), memory_order_acq_rel, memory_order_acquire)))
#define pa_cas_weak_relaxed(p, expected, desired)                                                  \
    PA_CP_(atomic_compare_exchange_weak_explicit((p), (expected), (desired), memory_order_relaxed, \
                                                 memory_order_relaxed))
#define pa_cas_strong_acq_rel(p, expected, desired)                                                \
    (PA_TSAN_REL_(), PA_CP_(atomic_compare_exchange_strong_explicit(                               \
                         (p), (expected), (desired), memory_order_acq_rel, memory_order_acquire)))

/*
 * Single-writer counter: a relaxed load and a relaxed store, no read-modify-
 * write instruction (a plain add on x86 and arm64). Correct only when one
 * thread writes the counter; others may read it at any time (statistics).
 */
#define pa_inc_single_writer(p, v) pa_store_relaxed((p), pa_load_relaxed(p) + (v))

#define pa_is_lock_free_u64(p) atomic_is_lock_free(p)

/*
 * 16-byte compare-and-swap, for the stack heads (struct pshm_head): a pair
 * of 64-bit words moved as one. Built on the __sync builtin, which GCC and
 * clang turn into `lock cmpxchg16b` with -mcx16 (CMakeLists.txt): lock-free
 * and address-free, so it works between processes. (The __atomic form of a
 * 16-byte CAS calls libatomic, which may take a lock private to the process,
 * useless in shared memory.) The instruction is a full barrier, stronger
 * than acq_rel: callers comment on what they pair with as for acq_rel. On
 * failure *expected gets the current value, read atomically by the same
 * instruction. pshm_cpu_check() refuses a CPU without the instruction.
 *
 * There is no 16-byte atomic load: readers load the two words one by one
 * (a torn pair is never current, so a CAS expecting it fails), or, where
 * the exact pair matters, use pa_load16_exact(), a CAS that rewrites the
 * value it finds.
 */
__extension__ typedef unsigned __int128 pa_u128;

#if !defined(__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16)
#error "a 16-byte CAS is needed (x86-64: build with -mcx16)"
#endif

#if defined(PA_TSAN) && defined(__x86_64__)
/*
 * Under TSan the builtin becomes a call into the sanitizer's runtime, which
 * does a 16-byte CAS under a mutex of its own process: not atomic against
 * another process, nor against the plain 8-byte loads of the two words. So
 * the instruction is written out here, and the ordering it makes is told to
 * TSan: a release on the head's address before, an acquire after (the
 * acquire loads of head words in pshm_central.c pair with that release).
 */
static inline pa_u128 pa_cas16_val_(void *p, pa_u128 expected, pa_u128 desired)
{
    uint64_t lo = (uint64_t)expected, hi = (uint64_t)(expected >> 64);
    __tsan_release(p);
    PA_TSAN_REL_();
    __asm__ __volatile__("lock cmpxchg16b %0"
                         : "+m"(*(volatile pa_u128 *)p), "+a"(lo), "+d"(hi)
                         : "b"((uint64_t)desired), "c"((uint64_t)(desired >> 64))
                         : "memory", "cc");
    __tsan_acquire(p);
    return ((pa_u128)hi << 64) | lo;
}
#else
static inline pa_u128 pa_cas16_val_(void *p, pa_u128 expected, pa_u128 desired)
{
    return __sync_val_compare_and_swap((pa_u128 *)p, expected, desired);
}
#endif

static inline _Bool pa_cas16_acq_rel(void *p, pa_u128 *expected, pa_u128 desired)
{
    pa_u128 seen = pa_cas16_val_(p, *expected, desired);
    PSHM_CRASH_POINT(); /* after the CAS, whether it took effect or not */
    if (seen == *expected)
        return 1;
    *expected = seen;
    return 0;
}

/* The exact 16 bytes at p: a CAS of 0 by 0 (a write only when the value is
 * 0, which it leaves). Slow paths only: it takes the line exclusive. */
static inline pa_u128 pa_load16_exact(void *p)
{
    return pa_cas16_val_(p, (pa_u128)0, (pa_u128)0);
}

#endif /* PSHM_ATOMIC_H */
