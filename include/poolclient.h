/* SPDX-License-Identifier: MIT */
/*
 * poolclient.h: the public API of libpoolclient, the client side of poold.
 *
 * A pool is a POSIX shared-memory segment cut into size classes. Each thread
 * keeps a small cache of free blocks per class inside the segment, so that
 * pool_malloc() and pool_free() take no lock and make no system call on the
 * fast path. Blocks can be handed to another process that uses the same
 * segment with pool_offset() and pool_at().
 *
 * Errors: functions returning a pointer return NULL and set errno;
 * pool_free() returns false and changes nothing; int functions return 0, or
 * -1 with errno set.
 *
 * Thread safety: every function may be called from any thread, except
 * pool_detach(), which must not race with other calls on the same pool.
 */
#ifndef POOLCLIENT_H
#define POOLCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define POOL_API __attribute__((visibility("default")))
#define POOL_NODISCARD __attribute__((warn_unused_result))
#else
#define POOL_API
#define POOL_NODISCARD
#endif

#define POOL_VERSION_MAJOR 0
#define POOL_VERSION_MINOR 1
#define POOL_VERSION_PATCH 0
#define POOL_VERSION_STRING "0.1.0"

/* Default control socket, overridden by $POOLD_SOCKET. */
#define POOL_DEFAULT_SOCKET "/run/poold/poold.sock"
/* Default size of a pool made by pool_open_embedded(0): 64 MiB. */
#define POOL_DEFAULT_BYTES ((size_t)64 << 20)
/* Most size classes a pool can have. */
#define POOL_MAX_CLASSES 64

typedef struct pool pool_t;

/*
 * pool_attach: attach to the pool served by poold at socket_path (NULL:
 * $POOLD_SOCKET, else poold's default for this uid: POOL_DEFAULT_SOCKET as
 * root; else $XDG_RUNTIME_DIR/poold/poold.sock or /tmp/poold-UID/poold.sock,
 * or POOL_DEFAULT_SOCKET when only that one exists; pool_last_error() says
 * what is wrong when none answers). The segment is mapped read-write
 * and the connection stays open so that poold notices this process's exit.
 * Returns NULL with errno set: ECONNREFUSED or ENOENT when poold does not
 * answer, EPROTO when it speaks another protocol or ABI, EACCES when its
 * credentials or the segment's permissions do not match, EBUSY when poold has
 * no free process slot; pool_last_error() says which, in a sentence.
 * Allocation never talks to poold: the process keeps allocating while poold
 * is stopped or restarted, and says HELLO again to the new poold on its own.
 * A child forked afterwards says HELLO on its own connection at its first
 * allocation.
 */
POOL_API POOL_NODISCARD pool_t *pool_attach(const char *socket_path);

/*
 * pool_detach: return every block cached by this process's threads to the
 * pool, give up this process's slot and unmap the segment. Blocks still in
 * use stay allocated: another process may still free them. An embedded pool
 * is closed; its memory goes away once no process maps it any more.
 * No other thread may use the pool during or after this call.
 */
POOL_API void pool_detach(pool_t *pool);

/*
 * pool_open_embedded: a pool of `bytes` bytes (0: POOL_DEFAULT_BYTES) with
 * no daemon. It is shared with the children this process forks afterwards.
 * `bytes` is a ceiling: the pool's tables are reserved at once (if they
 * cannot be, NULL with errno ENOMEM or ENOSPC), a span's memory when it is
 * carved (an allocation that finds none left fails with ENOMEM). Too small
 * a size (under one span per class) fails with EINVAL. It has 256 thread
 * caches (23 KiB each with the 45 default classes), or fewer in a pool too
 * small for them (halved until they fit, down to 8).
 */
POOL_API POOL_NODISCARD pool_t *pool_open_embedded(size_t bytes);

/*
 * pool_default: the process-wide pool, made on first use (as a
 * MemoryPool::GetMemoryPool() singleton would be). It is poold's pool when poold answers
 * at $POOLD_SOCKET or the default socket, else an embedded pool of
 * $POOLD_EMBEDDED_BYTES bytes (or the older name $POOL_EMBEDDED_BYTES) (default POOL_DEFAULT_BYTES). Never detach it.
 * NULL with errno set only when neither can be had.
 */
POOL_API POOL_NODISCARD pool_t *pool_default(void);

/* pool_last_error: a sentence saying why the last pool_attach(),
 * pool_open_embedded() or pool_default() of this thread failed ("" if none). */
POOL_API const char *pool_last_error(void);

/* pool_is_shared: true when the pool is served by poold. */
POOL_API bool pool_is_shared(const pool_t *pool);

/*
 * pool_malloc: a block of at least `size` bytes, from the smallest class
 * that fits. Blocks are aligned to 8 bytes, and to their class size when it
 * is a power of two, up to 4 KiB. size 0 gives a block of the smallest
 * class. Above the largest class, up to pool_max_size() (the pool's
 * max_block), a large block: a run of whole spans (64 KiB each by
 * default), aligned to its span, taken from the same free spans as the
 * classes and given back to them when freed. NULL with errno EINVAL when
 * size exceeds pool_max_size(), ENOMEM when the pool is exhausted (no span
 * left, or no run of free spans long enough); blocks freed later are
 * served again at once.
 * The fast path takes no lock and makes no system call; a thread's first
 * allocation in a pool takes a process-local lock to claim its cache.
 */
POOL_API POOL_NODISCARD void *pool_malloc(pool_t *pool, size_t size);

/*
 * pool_free: give back a block from pool_malloc(). `size` is the size asked
 * for (any size of the same class will do), or 0 to look the class up.
 * Any process attached to the pool may free any block in use, whoever
 * allocated it (the burn-after-reading handoff across processes), and a
 * block in transit (pool_handoff) may be freed without adopting it first.
 * Returns false and changes nothing when ptr is NULL, outside the pool, not
 * at the start of a block, of another class than `size`, or not in use:
 * a double free, at any distance, from any thread or process, is refused and
 * counted (invalid_frees). Two frees of one block at the same instant from
 * two threads, a race in the program, may both succeed.
 */
POOL_API bool pool_free(pool_t *pool, void *ptr, size_t size);

/*
 * pool_handoff: give a block up to another process: it leaves the caller's
 * hands ("in transit": a crash of the caller no longer reclaims it) and its
 * offset is returned, to pass to the receiver (a ring, a socket, a queue in
 * the segment), which calls pool_adopt(). UINT64_MAX with errno EINVAL when
 * ptr is not a block in use, EAGAIN when this thread has no cache record
 * (all max_threads records taken). As with pool_free(), a handoff and a
 * free (or two handoffs) of one of this process's blocks at the same
 * instant from two threads, a race in the program, may both succeed.
 */
POOL_API uint64_t pool_handoff(pool_t *pool, void *ptr);

/*
 * pool_adopt: take a block in transit: the caller owns it now (a crash of
 * the caller reclaims it) and gets its pointer. NULL with errno EINVAL when
 * the offset is not the start of a block in transit (never handed off, or
 * adopted already: exactly one receiver wins); EAGAIN as pool_handoff().
 */
POOL_API POOL_NODISCARD void *pool_adopt(pool_t *pool, uint64_t offset);

/* pool_offset: the offset of ptr in the segment (for another process), or
 * UINT64_MAX when ptr is not inside the pool. The owner does not change:
 * if the allocating process dies before the receiver frees the block, poold
 * gives it back to the pool (unless configured `orphans = keep`), and the
 * receiver's pool_free then returns false. Use pool_handoff() to hand a
 * block over for good. */
POOL_API uint64_t pool_offset(pool_t *pool, const void *ptr);

/* pool_at: the pointer for an offset from pool_offset(), in this process;
 * NULL with errno EINVAL when the offset is outside the pool's blocks. */
POOL_API void *pool_at(pool_t *pool, uint64_t offset);

/* pool_max_size: the largest size pool_malloc() serves (max_block, set by
 * poold; a quarter of the segment by default). */
POOL_API size_t pool_max_size(const pool_t *pool);

/* pool_block_size: the size of the block that holds ptr, 0 if none. */
POOL_API size_t pool_block_size(pool_t *pool, const void *ptr);

/* ---- statistics (see README, "What the statistics mean") ---- */

/*
 * Channels: named queues and topics of blocks between the processes
 * attached to one pool, without a copy. A block sent belongs to the
 * channel (it is in transit: no process's death loses it).
 *   - queue: each message goes to exactly one receiver, first in, first
 *     out; the receiver owns the block then and frees it as any block;
 *   - topic: each message goes to every subscriber that had subscribed when
 *     it was sent, in order; they share the block read-only and release it
 *     (pool_chan_release), and the last release frees it. A subscriber
 *     that is `capacity` messages behind makes senders wait (or get
 *     EAGAIN) until it catches up: nothing is dropped.
 * See poolclient(3), CHANNELS.
 */
typedef struct pool_chan pool_chan_t;

enum pool_chan_kind {
    POOL_CHAN_QUEUE = 1, /* each message to exactly one receiver */
    POOL_CHAN_TOPIC = 2, /* each message to every subscriber, shared read-only */
};

#define POOL_CHAN_CREATE 1u    /* make the channel if it does not exist */
#define POOL_CHAN_EXCL 2u      /* with POOL_CHAN_CREATE: fail (EEXIST) if it exists */
#define POOL_CHAN_SUBSCRIBE 4u /* a topic: this handle receives (one of 16 seats) */
#define POOL_CHAN_MAX_CAPACITY 1024u
#define POOL_CHAN_NAME_MAX 47u

struct pool_chan_opts {
    unsigned kind;     /* enum pool_chan_kind; 0: a queue */
    unsigned capacity; /* messages it holds when made: rounded up to a power
                          of two, 1 to POOL_CHAN_MAX_CAPACITY; 0: 256 */
    unsigned flags;    /* POOL_CHAN_CREATE, POOL_CHAN_EXCL, POOL_CHAN_SUBSCRIBE;
                          0: join only */
};

/*
 * pool_chan_open: join channel `name` (1 to POOL_CHAN_NAME_MAX printable
 * bytes, no spaces), or make it. opts NULL: a queue of 256 messages, made
 * if missing, else joined. NULL with errno: EINVAL (name or opts), ENOENT
 * (missing and not POOL_CHAN_CREATE), EEXIST (POOL_CHAN_EXCL and it
 * exists), EPROTOTYPE (it exists with another kind), ENOSPC (the pool's
 * 32 channels are all in use), EMFILE (a topic's 16 subscribers are all
 * taken), EAGAIN (no thread record, or a reclaim held the pool for a
 * second), ENOMEM. A topic handle receives only when opened with
 * POOL_CHAN_SUBSCRIBE: from the next message sent on.
 */
POOL_API POOL_NODISCARD pool_chan_t *pool_chan_open(pool_t *pool, const char *name,
                                                    const struct pool_chan_opts *opts);

/*
 * pool_chan_send: send the block at ptr (this process's, from pool_malloc;
 * size is informational and may be 0): it belongs to the channel from now
 * on. Waits for room up to timeout_ms (0: never, -1: for ever). 0, or -1
 * with errno: EAGAIN (full for that long: the block is still the
 * caller's), EINVAL (not a block this process owns).
 */
POOL_API int pool_chan_send(pool_chan_t *ch, void *ptr, size_t size, int timeout_ms);

/*
 * pool_chan_recv: the next message, waiting up to timeout_ms (0: never,
 * -1: for ever). A queue's: the caller owns the block now (pool_free it
 * when done). A topic's: shared, read it only, and pool_chan_release it
 * when done. *size, when size is not NULL, gets the block's size
 * (pool_block_size). NULL with errno EAGAIN when nothing came in time,
 * EBADF on a topic handle opened without POOL_CHAN_SUBSCRIBE.
 */
POOL_API POOL_NODISCARD void *pool_chan_recv(pool_chan_t *ch, size_t *size, int timeout_ms);

/*
 * pool_chan_release: a topic subscriber is done with the message at ptr
 * (from its pool_chan_recv; in any order). The last subscriber's release
 * frees the block. 0, or -1 with errno EINVAL (not a message this handle
 * holds).
 */
POOL_API int pool_chan_release(pool_chan_t *ch, const void *ptr);

/*
 * pool_chan_fd: a file descriptor (an eventfd, non-blocking, close-on-exec)
 * that becomes readable when a message may be waiting for this handle, for
 * poll/epoll/libevent loops: on readiness, read() it (8 bytes) and then
 * pool_chan_recv(ch, ..., 0) until EAGAIN. It is made on the first call (a
 * thread of the library watches the channel for it; senders then wake it
 * with each message) and closed by pool_chan_close(); every call returns
 * the same descriptor. -1 with errno: EINVAL (no handle, or a handle of
 * the process before a fork), EBADF (a topic handle opened without
 * POOL_CHAN_SUBSCRIBE), EMFILE/ENFILE/ENOMEM/EAGAIN as eventfd(2)
 * and pthread_create(3).
 */
POOL_API int pool_chan_fd(pool_chan_t *ch);

/* pool_chan_close: leave the channel and free the handle (a topic
 * subscriber's messages are released). The last member to leave an empty
 * channel frees its name; queue messages keep a channel (and wait for the
 * next receiver) when nobody has it open. pool_detach() releases every
 * subscription of the process. */
POOL_API void pool_chan_close(pool_chan_t *ch);

typedef struct pool_class_stats {
    uint64_t block_size;
    uint64_t spans_carved;
    uint64_t blocks_carved;  /* blocks ever cut from spans */
    uint64_t blocks_free;    /* central + cached */
    uint64_t blocks_central; /* in the class's central list */
    uint64_t blocks_cached;  /* in thread caches */
    int64_t blocks_in_use;   /* owned by a process: allocations - frees - in transit */
    uint64_t allocations;
    uint64_t frees;
    uint64_t reuses;            /* allocations of a block freed before */
    uint64_t same_address;      /* the block this thread freed last */
    uint64_t cache_misses;      /* thread cache empty: went to central */
    uint64_t central_misses;    /* central empty: a new span was carved */
    uint64_t exhausted;         /* no span left: NULL returned */
    uint64_t blocks_in_transit; /* handed off (pool_handoff), not adopted yet */
    uint64_t invalid_frees;     /* frees refused: the block was not in use */
    uint64_t reclaimed_in_use;  /* blocks dead processes had in use, given back */
} pool_class_stats_t;

typedef struct pool_stats {
    uint64_t segment_bytes;
    uint64_t span_bytes;
    uint64_t spans_total;
    uint64_t spans_carved;
    uint64_t bytes_carved; /* spans carved * span size */
    uint64_t bytes_in_use; /* sum of blocks in use * block size */
    uint64_t procs_attached;
    uint64_t procs_reclaimed;  /* died without detaching or saying they exit: crashes */
    uint64_t procs_exited;     /* detached, exited normally, or replaced by exec */
    uint64_t blocks_reclaimed; /* cached blocks given back from dead processes */
    uint64_t blocks_orphaned;  /* in-use blocks of dead processes kept in transit */
    uint64_t blocks_in_transit;
    uint64_t invalid_frees;
    uint64_t reclaimed_in_use; /* in-use blocks of dead processes given back */
    uint32_t nclasses;
    pool_class_stats_t cls[POOL_MAX_CLASSES];
} pool_stats_t;

/* pool_stats: a live snapshot of the whole pool's counters, summed over
 * every thread of every process, without stopping them. 0, or -1 + errno. */
POOL_API int pool_stats(pool_t *pool, pool_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif /* POOLCLIENT_H */
