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

#define pa_load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define pa_load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
#define pa_store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define pa_store_release(p, v) atomic_store_explicit((p), (v), memory_order_release)

#define pa_add_relaxed(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define pa_sub_relaxed(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)
#define pa_exchange_acq_rel(p, v) atomic_exchange_explicit((p), (v), memory_order_acq_rel)

/* Compare-and-swap; on failure *expected gets the current value (acquire). */
#define pa_cas_weak_acq_rel(p, expected, desired)                                                  \
    atomic_compare_exchange_weak_explicit((p), (expected), (desired), memory_order_acq_rel,        \
                                          memory_order_acquire)
#define pa_cas_weak_relaxed(p, expected, desired)                                                  \
    atomic_compare_exchange_weak_explicit((p), (expected), (desired), memory_order_relaxed,        \
                                          memory_order_relaxed)
#define pa_cas_strong_acq_rel(p, expected, desired)                                                \
    atomic_compare_exchange_strong_explicit((p), (expected), (desired), memory_order_acq_rel,      \
                                            memory_order_acquire)

/*
 * Single-writer counter: a relaxed load and a relaxed store, no read-modify-
 * write instruction (a plain add on x86 and arm64). Correct only when one
 * thread writes the counter; others may read it at any time (statistics).
 */
#define pa_inc_single_writer(p, v) pa_store_relaxed((p), pa_load_relaxed(p) + (v))

#define pa_is_lock_free_u64(p) atomic_is_lock_free(p)

#endif /* PSHM_ATOMIC_H */
