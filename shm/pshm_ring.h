/* SPDX-License-Identifier: MIT */
/*
 * pshm_ring.h: a bounded ring of messages in shared memory, for many
 * senders and many receivers in any number of processes, that a process
 * killed at any instruction cannot wedge or make lose track of a message;
 * with futex wake-ups that cost nothing while nobody sleeps. The carrier
 * of channels (docs/internals.md, "Rings").
 *
 * A message is a 32-bit value (a channel sends a block's offset / 8) and a
 * 12-bit `who`. Every change of the ring is one compare-and-swap of one
 * 64-bit cell, which goes through EMPTY, FULL(who = the sender, v),
 * TAKEN(who = the receiver, v) and EMPTY again, one lap further:
 *   - a sender turns the cell at position p from EMPTY(lap(p)) into
 *     FULL(lap(p), sender, v);
 *   - a receiver turns it into TAKEN(lap(p), receiver, v): the message is
 *     its own, and the cell says whose;
 *   - when the receiver has done what it must (a channel: adopted the
 *     block), it turns the cell into EMPTY(lap(p) + 1), the room for the
 *     next lap's sender.
 * So at every instant the ring itself says who holds each message it has
 * seen and not let go, and a reclaimer that finds a dead sender's FULL or
 * a dead receiver's TAKEN cell knows exactly what to finish. `tail` and
 * `head` only say where to look: whoever finds one behind moves it on.
 *
 * Positions fill in order (a sender takes the cell at `tail`, and `tail`
 * passes a cell only once it is full) and are taken in order, so the ring
 * is first in, first out for every receiver.
 */
#ifndef PSHM_RING_H
#define PSHM_RING_H

#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>

#include "pshm_atomic.h"

/* Cell word: lap (18 bits) | state (2) | who (12) | value (32). */
#define PSHM_RING_LAP_BITS 18u
#define PSHM_RING_WHO_MAX 0xfffu
#define PSHM_RING_MAX_SHIFT 20u /* at most 2^20 cells */

enum pshm_ring_state {
    PSHM_RING_EMPTY = 0,
    PSHM_RING_FULL = 1,
    PSHM_RING_TAKEN = 2,
};

struct pshm_ring {
    /* Hints: every position below `tail` is full or was emptied, every
     * position below `head` was emptied. Each on its own line: senders
     * move one, receivers the other. */
    alignas(64) pa_u64 tail;
    alignas(64) pa_u64 head;
    /* Wake-ups (an event count each way): a receiver that finds the ring
     * empty counts itself in recv_waiters, reads filled_seq, looks once
     * more and sleeps on filled_seq; a sender that filled a cell looks at
     * recv_waiters and only when it is not 0 bumps filled_seq and wakes.
     * Senders waiting for room do the same with the other pair. */
    alignas(64) pa_u32 filled_seq;
    pa_u32 recv_waiters;
    /* Watchers (a thread behind a file descriptor, pool_chan_fd()): the same
     * pair, but every fill that finds one bumps fd_seq and wakes them all. */
    pa_u32 fd_seq;
    pa_u32 fd_waiters;
    alignas(64) pa_u32 emptied_seq;
    pa_u32 send_waiters;
    pa_u64 wakes;   /* futex wakes issued (statistics; relaxed RMW) */
    uint32_t shift; /* log2 of the number of cells; constant after init */
    uint32_t reserved;
    alignas(64) pa_u64 cells[];
};

/* Bytes a ring of 2^shift cells takes. */
static inline uint64_t pshm_ring_bytes(uint32_t shift)
{
    return sizeof(struct pshm_ring) + (sizeof(pa_u64) << shift);
}

/* Lay out an empty ring of 2^shift cells (shift <= PSHM_RING_MAX_SHIFT)
 * in zeroed memory or over a ring nobody uses. */
void pshm_ring_init(struct pshm_ring *r, uint32_t shift);

static inline uint32_t pshm_ring_cap(const struct pshm_ring *r)
{
    return UINT32_C(1) << r->shift;
}

static inline uint64_t pshm_ring_word(uint64_t pos, uint32_t shift, uint32_t state, uint32_t who,
                                      uint32_t value)
{
    uint64_t lap = (pos >> shift) & ((UINT64_C(1) << PSHM_RING_LAP_BITS) - 1);
    return lap << 46 | (uint64_t)state << 44 | (uint64_t)(who & PSHM_RING_WHO_MAX) << 32 | value;
}
static inline uint32_t pshm_ring_word_state(uint64_t w)
{
    return (uint32_t)(w >> 44) & 3u;
}
static inline uint32_t pshm_ring_word_who(uint64_t w)
{
    return (uint32_t)(w >> 32) & PSHM_RING_WHO_MAX;
}
static inline uint32_t pshm_ring_word_value(uint64_t w)
{
    return (uint32_t)w;
}

/*
 * The steps, for a caller that does work between them:
 * pshm_ring_reserve() finds the cell a send would fill: its position and
 * the EMPTY word it holds (0), or -EAGAIN when the ring is full;
 * pshm_ring_fill() makes the CAS that puts (who, value) there: true when it
 * took place (false: another sender was first; reserve again).
 * pshm_ring_peek() finds the FULL cell at the head (0), or -EAGAIN when the
 * ring is empty; pshm_ring_take() makes it TAKEN by `taker`, true when it
 * took place; *taken_word gets the word it wrote. pshm_ring_release() ends
 * a TAKEN cell (room for the next lap): true when it did, false when the
 * cell no longer holds that word (someone released it already).
 * -EPROTO: a cell in a state no ring reaches (the memory was overwritten).
 */
int pshm_ring_reserve(struct pshm_ring *r, uint64_t *pos, uint64_t *empty_word);
bool pshm_ring_fill(struct pshm_ring *r, uint64_t pos, uint64_t empty_word, uint32_t who,
                    uint32_t value);
int pshm_ring_peek(struct pshm_ring *r, uint64_t *pos, uint64_t *full_word);
bool pshm_ring_take(struct pshm_ring *r, uint64_t pos, uint64_t full_word, uint32_t taker,
                    uint64_t *taken_word);
bool pshm_ring_release(struct pshm_ring *r, uint64_t pos, uint64_t taken_word);

/* One-step forms (a pop takes and releases at once, as taker 0): 0,
 * -EAGAIN (full / empty), -EPROTO. They wake nobody: see below. */
int pshm_ring_push(struct pshm_ring *r, uint32_t who, uint32_t value);
int pshm_ring_pop(struct pshm_ring *r, uint32_t *who, uint32_t *value);

/* The word in cell i (0 <= i < cap), for a reclaimer's walk; the cell's
 * position is that of its lap: pshm_ring_cell_pos(). */
uint64_t pshm_ring_cell(struct pshm_ring *r, uint32_t i);
uint64_t pshm_ring_cell_pos(struct pshm_ring *r, uint32_t i, uint64_t word);

/* What a cell's word holds relative to state `want` at position pos, as
 * the number 3 * laps + state (docs above pshm_ring.c's look()): 0 when it
 * is in that very state, > 0 when it went past it, < 0 when not there yet. */
int32_t pshm_ring_diff(const struct pshm_ring *r, uint64_t word, uint64_t pos, uint32_t want);

/* Rings whose cells are released out of order (topics): CAS the cell at pos
 * from `from` to `to` (acq_rel), and move the head hint past every cell
 * already emptied. */
bool pshm_ring_cas(struct pshm_ring *r, uint64_t pos, uint64_t from, uint64_t to);
void pshm_ring_settle_head(struct pshm_ring *r);

/* Messages between head and tail now (a moment's view, from the hints). */
uint64_t pshm_ring_depth(struct pshm_ring *r);

/* After a fill: wake a receiver if one sleeps (a fence and one load when
 * none does); _all: every receiver that sleeps, for a message each of them
 * reads (a topic's). After a release: wake a sender waiting for room. */
void pshm_ring_filled(struct pshm_ring *r);
void pshm_ring_filled_all(struct pshm_ring *r);
void pshm_ring_emptied(struct pshm_ring *r);

/*
 * Waiting. pshm_ring_wait() runs attempt(arg) until it returns anything but
 * -EAGAIN, sleeping in between on the receivers' side (for_room false: a
 * fill wakes it) or the senders' (for_room true: a release wakes it).
 * timeout_ms: 0 never sleeps, < 0 waits for ever, else up to that long;
 * slice_ms > 0 bounds each sleep, so that a waker that died between its
 * change and its wake-up costs a sleeper at most that long (< 0: no bound,
 * for tests that must see every wake-up arrive). Returns what attempt
 * returned, or -EAGAIN when the time ran out. A signal that interrupts a
 * sleep does not end the wait (as with pthread_cond_wait). mine (or NULL):
 * the calling process's own count of sleepers on that side, kept with the
 * ring's so that its reclaimer can take a dead process's sleepers off
 * (pshm_ring_forget()).
 */
typedef int (*pshm_ring_attempt_fn)(void *arg);
int pshm_ring_wait(struct pshm_ring *r, bool for_room, pshm_ring_attempt_fn attempt, void *arg,
                   int timeout_ms, int slice_ms, pa_u8 *mine);
/* Take recv_n receivers' and send_n senders' sleeps off the counts: those
 * of a process that died asleep. */
void pshm_ring_forget(struct pshm_ring *r, uint32_t recv_n, uint32_t send_n);

/* push / pop with waiting and the wake-ups. */
int pshm_ring_send(struct pshm_ring *r, uint32_t who, uint32_t value, int timeout_ms, int slice_ms);
int pshm_ring_recv(struct pshm_ring *r, uint32_t *who, uint32_t *value, int timeout_ms,
                   int slice_ms);

/* Wake every sleeper on both sides, and every watcher (a reclaimer, after
 * a death). */
void pshm_ring_kick(struct pshm_ring *r);

/*
 * Watching: a thread that turns "a message may be waiting" into a file
 * descriptor's readiness. It counts itself in fd_waiters for as long as it
 * watches (pshm_ring_watch(r, +1) ... (r, -1)); each round it reads the
 * event count (pshm_ring_watch_seq(): a fence, then fd_seq), looks at the
 * ring, and sleeps while fd_seq is still what it read (up to ms; < 0: for
 * ever). A fill after its look bumps fd_seq, so no fill is missed.
 */
void pshm_ring_watch(struct pshm_ring *r, int delta);
uint32_t pshm_ring_watch_seq(struct pshm_ring *r);
void pshm_ring_watch_sleep(struct pshm_ring *r, uint32_t seen, int ms);

#endif
