/* SPDX-License-Identifier: MIT */
/*
 * pshm_ring.h: a bounded ring of 40-bit values in shared memory, for many
 * senders and many receivers in any number of processes, that a process
 * killed at any instruction cannot wedge; with futex wake-ups that cost
 * nothing while nobody sleeps. The carrier of channels (docs/internals.md,
 * "Rings").
 *
 * Every change of the ring is one compare-and-swap of one cell. A cell
 * holds a lap number (24 bits) and a value (40 bits, 0: none), and goes
 * through the states EMPTY(0), FULL(0, v), EMPTY(1), FULL(1, w), ... : the
 * sender of position p turns EMPTY(lap(p)) into FULL(lap(p), v), and its
 * receiver turns that into EMPTY(lap(p) + 1). `tail` and `head` only say
 * where to look: whoever finds one behind its cell moves it on, so that a
 * process that dies between its cell's CAS and the hint's leaves nothing
 * half done. A cell's word names its lap and its value, so that a journal
 * holding the word can tell later whether that very CAS took place (the
 * word is still there, or not); a word repeats only after 2^24 laps.
 *
 * Positions fill in order (a sender takes the cell at `tail`, and `tail`
 * passes a cell only once it is full) and empty in order, so the ring is
 * first in, first out for every receiver.
 */
#ifndef PSHM_RING_H
#define PSHM_RING_H

#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>

#include "pshm_atomic.h"

#define PSHM_RING_VALUE_BITS 40u
#define PSHM_RING_VALUE_MAX ((UINT64_C(1) << PSHM_RING_VALUE_BITS) - 1)
#define PSHM_RING_LAP_BITS 24u
#define PSHM_RING_MAX_SHIFT 20u /* at most 2^20 cells */

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

/* The words a journal may keep. */
static inline uint64_t pshm_ring_word(uint64_t pos, uint32_t shift, uint64_t value)
{
    uint64_t lap = (pos >> shift) & ((UINT64_C(1) << PSHM_RING_LAP_BITS) - 1);
    return lap << PSHM_RING_VALUE_BITS | value;
}
static inline uint64_t pshm_ring_word_value(uint64_t word)
{
    return word & PSHM_RING_VALUE_MAX;
}

/*
 * Two-step send, for a caller that journals between the steps:
 * pshm_ring_reserve() finds the cell a send would fill (its position and
 * the EMPTY word it holds; 0) or says the ring is full (-EAGAIN);
 * pshm_ring_fill() makes that one CAS, true when it took place (false:
 * another sender was first; reserve again). -EPROTO: a cell in a state no
 * ring reaches (the memory was overwritten).
 */
int pshm_ring_reserve(struct pshm_ring *r, uint64_t *pos, uint64_t *empty_word);
bool pshm_ring_fill(struct pshm_ring *r, uint64_t pos, uint64_t empty_word, uint64_t value);

/* Two-step receive: pshm_ring_peek() gives the position and FULL word at
 * the head (0), or -EAGAIN when the ring is empty; pshm_ring_take() makes
 * the CAS that empties it, true when it took place. -EPROTO as above. */
int pshm_ring_peek(struct pshm_ring *r, uint64_t *pos, uint64_t *full_word);
bool pshm_ring_take(struct pshm_ring *r, uint64_t pos, uint64_t full_word);

/* One-step forms: 0, -EAGAIN (full / empty), -EINVAL (value 0 or above
 * PSHM_RING_VALUE_MAX), -EPROTO. They do not wake anyone: see below. */
int pshm_ring_push(struct pshm_ring *r, uint64_t value);
int pshm_ring_pop(struct pshm_ring *r, uint64_t *value);

/* Is the cell at pos still holding word? For a reclaimer reading a dead
 * process's journal: the CAS it names is still to be made (or was undone
 * by nothing: words do not come back for 2^24 laps). */
bool pshm_ring_holds(struct pshm_ring *r, uint64_t pos, uint64_t word);

/* Messages in the ring now (tail - head, from the hints: a moment's view). */
uint64_t pshm_ring_depth(struct pshm_ring *r);

/* After a fill: wake a receiver if one sleeps (a fence and one load when
 * none does). After a take: the same for a sender waiting for room. */
void pshm_ring_filled(struct pshm_ring *r);
void pshm_ring_emptied(struct pshm_ring *r);

/*
 * Blocking forms. timeout_ms: 0 never waits, < 0 waits for ever, else up
 * to that long. slice_ms > 0 bounds each sleep, so that a waker that died
 * between its fill and its wake-up costs a sleeper at most that long
 * (< 0: unbounded sleeps, for tests that must see every wake-up arrive).
 * 0, -EAGAIN when the time ran out (full / empty), -EINVAL, -EPROTO. A
 * signal that interrupts a sleep does not end the wait (as with
 * pthread_cond_wait).
 */
int pshm_ring_send(struct pshm_ring *r, uint64_t value, int timeout_ms, int slice_ms);
int pshm_ring_recv(struct pshm_ring *r, uint64_t *value, int timeout_ms, int slice_ms);

/* Wake every sleeper on both sides (a reclaimer, after a death). */
void pshm_ring_kick(struct pshm_ring *r);

#endif
