/* SPDX-License-Identifier: MIT */
/*
 * pshm_ring.c: the bounded ring of pshm_ring.h.
 *
 * A cell's state, relative to the position p a sender or receiver looks
 * at, is a number: 3 * lap + state (EMPTY 0, FULL 1, TAKEN 2), the lap
 * counted modulo 2^18. A sender at p wants EMPTY(lap(p)); a receiver
 * FULL(lap(p)). The difference d between what the cell holds and what the
 * looker wants says all:
 *   d == 0        the cell is the looker's to CAS;
 *   d > 0         the hint is behind (the cell went past p's state
 *                 already): move the hint on and look again;
 *   d == -1, -2   a sender: the ring is full (the cell still holds
 *                 position p - cap, FULL or TAKEN and not released);
 *   d == -1, -2   a receiver: the ring is empty (nobody filled p; the
 *                 cell is EMPTY, or still TAKEN by p - cap's receiver);
 *   else          a looker that read its hint long ago, or memory no ring
 *                 writes: look again if the hint moved, else -EPROTO.
 * With correct hints, a sender sees d in -2..3 and a receiver in -2..2,
 * unless it was preempted between its two loads (then the hint moved).
 * A stale CAS (a looker preempted for 2^18 laps that finds the very word
 * it read) changes a cell that is in that state at that moment: it fills
 * an empty cell or takes a full one, never one message twice.
 */
#include "pshm_ring.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(PA_TSAN)
_Atomic unsigned pa_tsan_fence_word_;
#endif

#define LAP_MASK ((UINT32_C(1) << PSHM_RING_LAP_BITS) - 1)

void pshm_ring_init(struct pshm_ring *r, uint32_t shift)
{
    if (shift > PSHM_RING_MAX_SHIFT)
        shift = PSHM_RING_MAX_SHIFT;
    r->shift = shift;
    r->reserved = 0;
    /* Relaxed: nobody uses the ring yet; whoever publishes it (a channel's
     * state word) does so with a release store after these. */
    pa_store_relaxed(&r->tail, 0);
    pa_store_relaxed(&r->head, 0);
    pa_store_relaxed(&r->filled_seq, 0);
    pa_store_relaxed(&r->recv_waiters, 0);
    pa_store_relaxed(&r->fd_seq, 0);
    pa_store_relaxed(&r->fd_waiters, 0);
    pa_store_relaxed(&r->emptied_seq, 0);
    pa_store_relaxed(&r->send_waiters, 0);
    pa_store_relaxed(&r->wakes, 0);
    for (uint32_t i = 0; i < (UINT32_C(1) << shift); i++)
        pa_store_relaxed(&r->cells[i], 0); /* EMPTY, lap 0 */
}

/* State of word minus the state `want` at pos, as a signed number. */
static int32_t state_diff(uint64_t word, uint64_t pos, uint32_t shift, uint32_t want)
{
    uint32_t lap_have = (uint32_t)(word >> 46) & LAP_MASK;
    uint32_t lap_want = (uint32_t)(pos >> shift) & LAP_MASK;
    uint32_t dl = (lap_have - lap_want) & LAP_MASK;
    int32_t dlap = dl > (LAP_MASK >> 1) ? (int32_t)dl - (int32_t)(LAP_MASK + 1) : (int32_t)dl;
    return 3 * dlap + (int32_t)pshm_ring_word_state(word) - (int32_t)want;
}

/* Move a hint from pos to pos + 1 unless somebody did. acq_rel: pairs with
 * the other movers' CAS only (a hint orders nothing else: the cells carry
 * their own acquire and release). */
static void hint_past(pa_u64 *hint, uint64_t pos)
{
    uint64_t expect = pos;
    (void)pa_cas_strong_acq_rel(hint, &expect, pos + 1);
}

/* Shared by reserve and peek: find the cell at the hint in state `want`;
 * `worst` is the most a correct hint can be behind (3 for senders, 2 for
 * receivers), `busy` the most negative d that means full / empty. */
static int look(struct pshm_ring *r, pa_u64 *hint, uint32_t want, int32_t worst, int32_t busy,
                uint64_t *pos, uint64_t *word)
{
    uint64_t mask = ((uint64_t)1 << r->shift) - 1;
    for (;;) {
        /* Relaxed: a hint; the cell's acquire load below is what orders. */
        uint64_t p = pa_load_relaxed(hint);
        /* Acquire: pairs with the release of the CAS that wrote this state,
         * so that its writer's earlier stores are visible to us. */
        uint64_t c = pa_load_acquire(&r->cells[p & mask]);
        int32_t d = state_diff(c, p, r->shift, want);
        if (d == 0) {
            *pos = p;
            *word = c;
            return 0;
        }
        bool moved = pa_load_relaxed(hint) != p;
        if (d > 0 && (d <= worst || moved)) {
            hint_past(hint, p);
            continue;
        }
        if (moved)
            continue;
        return d < 0 && d >= busy ? -EAGAIN : -EPROTO;
    }
}

int pshm_ring_reserve(struct pshm_ring *r, uint64_t *pos, uint64_t *empty_word)
{
    return look(r, &r->tail, PSHM_RING_EMPTY, 3, -2, pos, empty_word);
}

int pshm_ring_peek(struct pshm_ring *r, uint64_t *pos, uint64_t *full_word)
{
    return look(r, &r->head, PSHM_RING_FULL, 2, -2, pos, full_word);
}

bool pshm_ring_fill(struct pshm_ring *r, uint64_t pos, uint64_t empty_word, uint32_t who,
                    uint32_t value)
{
    uint64_t mask = ((uint64_t)1 << r->shift) - 1;
    uint64_t expect = empty_word;
    /* acq_rel: the release publishes what the sender wrote before (the
     * message's block) to the receiver whose peek loads this word with
     * acquire; the acquire orders us after the release that emptied it. */
    if (!pa_cas_strong_acq_rel(&r->cells[pos & mask], &expect,
                               pshm_ring_word(pos, r->shift, PSHM_RING_FULL, who, value)))
        return false;
    hint_past(&r->tail, pos);
    return true;
}

bool pshm_ring_take(struct pshm_ring *r, uint64_t pos, uint64_t full_word, uint32_t taker,
                    uint64_t *taken_word)
{
    uint64_t mask = ((uint64_t)1 << r->shift) - 1;
    uint64_t expect = full_word;
    uint64_t w =
        pshm_ring_word(pos, r->shift, PSHM_RING_TAKEN, taker, pshm_ring_word_value(full_word));
    /* acq_rel: acquire pairs with the fill's release; only one taker wins. */
    if (!pa_cas_strong_acq_rel(&r->cells[pos & mask], &expect, w))
        return false;
    hint_past(&r->head, pos);
    if (taken_word)
        *taken_word = w;
    return true;
}

bool pshm_ring_release(struct pshm_ring *r, uint64_t pos, uint64_t taken_word)
{
    uint64_t mask = ((uint64_t)1 << r->shift) - 1;
    uint64_t expect = taken_word;
    /* acq_rel: the release orders the receiver's work on the message (its
     * adopt) before the next lap's sender, who loads EMPTY with acquire. */
    return pa_cas_strong_acq_rel(&r->cells[pos & mask], &expect,
                                 pshm_ring_word(pos + mask + 1, r->shift, PSHM_RING_EMPTY, 0, 0));
}

int32_t pshm_ring_diff(const struct pshm_ring *r, uint64_t word, uint64_t pos, uint32_t want)
{
    return state_diff(word, pos, r->shift, want);
}

bool pshm_ring_cas(struct pshm_ring *r, uint64_t pos, uint64_t from, uint64_t to)
{
    uint64_t mask = ((uint64_t)1 << r->shift) - 1;
    uint64_t expect = from;
    /* acq_rel: as in pshm_ring_take() and pshm_ring_release(). */
    return pa_cas_strong_acq_rel(&r->cells[pos & mask], &expect, to);
}

void pshm_ring_settle_head(struct pshm_ring *r)
{
    uint64_t mask = ((uint64_t)1 << r->shift) - 1;
    for (uint32_t n = 0; n <= mask; n++) {
        uint64_t h = pa_load_relaxed(&r->head); /* relaxed: a hint */
        /* acquire: as in look(). Emptied: EMPTY one lap on. */
        uint64_t c = pa_load_acquire(&r->cells[h & mask]);
        if (state_diff(c, h, r->shift, PSHM_RING_EMPTY) != 3 || h >= pa_load_relaxed(&r->tail))
            return;
        hint_past(&r->head, h);
    }
}

uint64_t pshm_ring_cell(struct pshm_ring *r, uint32_t i)
{
    /* Acquire: a reclaimer then sees what the CAS that wrote it followed. */
    return pa_load_acquire(&r->cells[i & ((UINT32_C(1) << r->shift) - 1)]);
}

uint64_t pshm_ring_cell_pos(struct pshm_ring *r, uint32_t i, uint64_t word)
{
    /* The position of cell i whose lap (mod 2^18) the word names, taken
     * near the head: the lap of head, or of the lap before or after. */
    uint64_t h = pa_load_relaxed(&r->head); /* relaxed: a hint */
    uint64_t base = (h >> r->shift) << r->shift | i;
    uint64_t lap = UINT64_C(1) << r->shift;
    for (int k = -1; k <= 1; k++) {
        uint64_t p = k < 0 ? base - lap : base + (uint64_t)k * lap; /* wraps below 0: no match */
        if (state_diff(word, p, r->shift, pshm_ring_word_state(word)) == 0)
            return p;
    }
    return base;
}

int pshm_ring_push(struct pshm_ring *r, uint32_t who, uint32_t value)
{
    for (;;) {
        uint64_t pos, word;
        int rc = pshm_ring_reserve(r, &pos, &word);
        if (rc < 0)
            return rc;
        if (pshm_ring_fill(r, pos, word, who, value))
            return 0;
    }
}

int pshm_ring_pop(struct pshm_ring *r, uint32_t *who, uint32_t *value)
{
    for (;;) {
        uint64_t pos, word, taken;
        int rc = pshm_ring_peek(r, &pos, &word);
        if (rc < 0)
            return rc;
        if (pshm_ring_take(r, pos, word, 0, &taken)) {
            (void)pshm_ring_release(r, pos, taken);
            *who = pshm_ring_word_who(word);
            *value = pshm_ring_word_value(word);
            return 0;
        }
    }
}

uint64_t pshm_ring_depth(struct pshm_ring *r)
{
    /* Relaxed: a moment's view for statistics; head read first so that a
     * tail read later is at least as new (depth is never negative in a
     * quiet ring, and is clamped in a busy one). */
    uint64_t h = pa_load_relaxed(&r->head);
    uint64_t t = pa_load_relaxed(&r->tail);
    return t > h ? t - h : 0;
}

static void futex_wake(pa_u32 *word, int n)
{
    (void)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* Sleep while *word == seen, at most ms (< 0: no bound). Shared futex (the
 * word is in memory other processes map), so not FUTEX_PRIVATE_FLAG. */
static void futex_sleep(pa_u32 *word, uint32_t seen, int ms)
{
    struct timespec ts, *tp = NULL;
    if (ms >= 0) {
        ts.tv_sec = ms / 1000;
        ts.tv_nsec = (long)(ms % 1000) * 1000000L;
        tp = &ts;
    }
    (void)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, seen, tp, NULL, 0);
}

/* The waker's half of the event count: after its CAS on a cell, a
 * seq_cst fence, then the waiters count. A sleeper does the mirror image
 * (count itself, fence, look at the cells): of the two, at least one sees
 * the other's store, so either the sleeper finds the cell or the waker
 * finds the sleeper. With no sleeper this is the fence and one load. */
static void wake_side(struct pshm_ring *r, pa_u32 *waiters, pa_u32 *seq, int n)
{
    pa_fence_seq_cst();
    if (pa_load_relaxed(waiters) == 0)
        return;
    /* Release: a sleeper that reads the new seq (acquire, in wait_side)
     * sees the cell we changed before it. */
    atomic_fetch_add_explicit(seq, 1, memory_order_release);
    futex_wake(seq, n);
    pa_add_relaxed(&r->wakes, 1); /* relaxed: statistics */
}

/* A fill for one receiver wakes one sleeper; one for every receiver (a
 * topic's message, or a cell a subscriber may be waiting to see change)
 * wakes them all. */
static void filled(struct pshm_ring *r, int n)
{
    wake_side(r, &r->recv_waiters, &r->filled_seq, n);
    /* relaxed: ordered by wake_side()'s fence, as its own load is; the
     * same cache line as recv_waiters, so no further miss. */
    if (pa_load_relaxed(&r->fd_waiters) != 0) {
        atomic_fetch_add_explicit(&r->fd_seq, 1, memory_order_release); /* as in wake_side */
        futex_wake(&r->fd_seq, INT_MAX);
    }
}

void pshm_ring_filled(struct pshm_ring *r)
{
    filled(r, 1);
}

void pshm_ring_filled_all(struct pshm_ring *r)
{
    filled(r, INT_MAX);
}

void pshm_ring_watch(struct pshm_ring *r, int delta)
{
    /* relaxed: the count only tells fillers whether to bump and wake; the
     * fence in pshm_ring_watch_seq() orders it before the watcher's look. */
    if (delta > 0)
        atomic_fetch_add_explicit(&r->fd_waiters, (uint32_t)delta, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&r->fd_waiters, (uint32_t)-delta, memory_order_relaxed);
}

uint32_t pshm_ring_watch_seq(struct pshm_ring *r)
{
    pa_fence_seq_cst(); /* pairs with the fence in wake_side() */
    /* acquire: pairs with the release bump in pshm_ring_filled(). */
    return atomic_load_explicit(&r->fd_seq, memory_order_acquire);
}

void pshm_ring_watch_sleep(struct pshm_ring *r, uint32_t seen, int ms)
{
    futex_sleep(&r->fd_seq, seen, ms);
}

void pshm_ring_emptied(struct pshm_ring *r)
{
    wake_side(r, &r->send_waiters, &r->emptied_seq, 1);
}

void pshm_ring_kick(struct pshm_ring *r)
{
    atomic_fetch_add_explicit(&r->filled_seq, 1, memory_order_release); /* as in wake_side */
    atomic_fetch_add_explicit(&r->emptied_seq, 1, memory_order_release);
    atomic_fetch_add_explicit(&r->fd_seq, 1, memory_order_release);
    futex_wake(&r->filled_seq, INT_MAX);
    futex_wake(&r->emptied_seq, INT_MAX);
    futex_wake(&r->fd_seq, INT_MAX);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Before its first sleep a waiter looks again for up to WAIT_NS: a peer
 * running on another CPU answers within microseconds, and a futex sleep
 * and wake-up costs tens of them (docs/BENCHMARKS.md, channels). It spins
 * for the first SPIN_NS, then yields its CPU between looks, so that with
 * more runnable processes than CPUs (a topic's subscribers) the peer it
 * waits for gets to run. On one CPU: no spin, yields only. */
#define SPIN_NS 5000u
#define WAIT_NS 50000u

static bool spin_pays(void)
{
    static int ncpu; /* a race here only computes the same value twice */
    int n = __atomic_load_n(&ncpu, __ATOMIC_RELAXED);
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 1 ? 2 : 1;
        __atomic_store_n(&ncpu, n, __ATOMIC_RELAXED);
    }
    return n > 1;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* One more in a process's own count of sleepers (pshm_ring_wait()'s
 * mine): false when it is at its ceiling and this sleeper goes uncounted
 * there (its death then leaves the ring's count one too high: a futex call
 * per fill that wakes nobody, never a lost wake-up). */
static bool count_mine(pa_u8 *mine)
{
    if (!mine)
        return false;
    /* relaxed: a count only its own process and its reclaimer (after the
     * process died) write; nothing else is published through it. */
    uint8_t v = pa_load_relaxed(mine);
    do {
        if (v == UINT8_MAX)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(mine, &v, (uint8_t)(v + 1),
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

void pshm_ring_forget(struct pshm_ring *r, uint32_t recv_n, uint32_t send_n)
{
    /* relaxed: as every other change of the counts; a dead process's
     * sleepers can no longer be woken, so only fillers' extra calls end. */
    if (recv_n)
        atomic_fetch_sub_explicit(&r->recv_waiters, recv_n, memory_order_relaxed);
    if (send_n)
        atomic_fetch_sub_explicit(&r->send_waiters, send_n, memory_order_relaxed);
}

int pshm_ring_wait(struct pshm_ring *r, bool for_room, pshm_ring_attempt_fn attempt, void *arg,
                   int timeout_ms, int slice_ms, pa_u8 *mine)
{
    pa_u32 *waiters = for_room ? &r->send_waiters : &r->recv_waiters;
    pa_u32 *seq = for_room ? &r->emptied_seq : &r->filled_seq;
    /* The first look before any clock read: a busy channel's send and
     * receive succeed here, and a clock read would be most of their cost. */
    int rc = attempt(arg);
    if (rc != -EAGAIN || timeout_ms == 0)
        return rc;
    int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
    bool spin = spin_pays();
    for (uint64_t t0 = now_ns(), t = t0; t - t0 < WAIT_NS; t = now_ns()) {
        if (spin && t - t0 < SPIN_NS)
            for (int i = 0; i < 64; i++)
                cpu_relax();
        else
            sched_yield();
        rc = attempt(arg);
        if (rc != -EAGAIN)
            return rc;
    }
    for (;;) {
        rc = attempt(arg);
        if (rc != -EAGAIN || timeout_ms == 0)
            return rc;
        int ms = -1;
        if (timeout_ms > 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return -EAGAIN;
            ms = left > INT_MAX ? INT_MAX : (int)left;
        }
        if (slice_ms > 0 && (ms < 0 || ms > slice_ms))
            ms = slice_ms;
        /* Relaxed add, then the seq_cst fence that wake_side's pairs with.
         * The ring's count goes up first and down last, the process's own
         * between: a death in between leaves its reclaimer one too few to
         * take off, never one too many (which could leave a live sleeper
         * unwoken until its slice ends). */
        atomic_fetch_add_explicit(waiters, 1, memory_order_relaxed);
        bool counted = count_mine(mine);
        pa_fence_seq_cst();
        /* Acquire: pairs with wake_side's release bump. Read before the
         * last look, so that a change after the look moves it and the
         * futex does not sleep. */
        uint32_t seen = atomic_load_explicit(seq, memory_order_acquire);
        rc = attempt(arg);
        if (rc == -EAGAIN)
            futex_sleep(seq, seen, ms);
        /* Relaxed: the counts only tell wakers whether to call futex. */
        if (counted)
            atomic_fetch_sub_explicit(mine, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(waiters, 1, memory_order_relaxed);
        if (rc != -EAGAIN)
            return rc;
    }
}

struct one_step {
    struct pshm_ring *r;
    uint32_t who, value;
};

static int push_step(void *arg)
{
    struct one_step *o = arg;
    return pshm_ring_push(o->r, o->who, o->value);
}

static int pop_step(void *arg)
{
    struct one_step *o = arg;
    return pshm_ring_pop(o->r, &o->who, &o->value);
}

int pshm_ring_send(struct pshm_ring *r, uint32_t who, uint32_t value, int timeout_ms, int slice_ms)
{
    struct one_step o = {r, who, value};
    int rc = pshm_ring_wait(r, true, push_step, &o, timeout_ms, slice_ms, NULL);
    if (rc == 0)
        pshm_ring_filled(r);
    return rc;
}

int pshm_ring_recv(struct pshm_ring *r, uint32_t *who, uint32_t *value, int timeout_ms,
                   int slice_ms)
{
    struct one_step o = {r, 0, 0};
    int rc = pshm_ring_wait(r, false, pop_step, &o, timeout_ms, slice_ms, NULL);
    if (rc == 0) {
        pshm_ring_emptied(r);
        *who = o.who;
        *value = o.value;
    }
    return rc;
}
