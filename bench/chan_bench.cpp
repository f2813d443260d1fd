// SPDX-License-Identifier: MIT
//
// chan_bench.cpp: (i) channels against what users would use instead, two
// processes on this machine (docs/BENCHMARKS.md, "Channels").
//
//   pingpong   one message in flight: process A sends a message of S bytes,
//              B receives it (checks its number at the front and touches its
//              last byte) and sends S bytes back, A receives them. The time
//              of each round trip, p50 and p99 over the rounds.
//   stream     a full window: A sends messages of S bytes as fast as the
//              transport takes them, B receives and consumes each. Four
//              windows untimed first (every transport warm), then at least
//              200 messages (more for small S) and at least 0.3 s; messages/s
//              and bytes/s from the first timed send to the last receipt.
//   fanout     a poold topic: one publisher, k subscriber processes (1, 2, 4),
//              messages/s delivered to every subscriber. The publisher
//              allocates each message once and every subscriber reads it in
//              place (tests/test_topic.c asserts one allocation per message
//              from the pool's own counts).
//
// Transports, the same loop for each:
//   poold   a channel (queue) of an embedded pool made before the fork:
//           zero copy; a stream's producer allocates each block, its
//           consumer frees it; a ping-pong passes one block back and forth
//   ring    (e)'s no-allocator ring: preallocated shared buffers, an index
//           through a lock-free ring, the waiting side spinning then
//           yielding (zero copy, no allocator, no wake-up)
//   unix    a Unix domain socket pair (stream), the payload copied in and out
//   pipe    two pipes, the same
//   mqueue  POSIX message queues (message size S: sizes above the system's
//           msgsize_max are n/a)
//   zmq     ZeroMQ PAIR sockets over ipc:// (Debian's libzmq), zmq_send and
//           zmq_recv of S bytes
//   boost   Boost.Interprocess message_queue (a copy in, a copy out, under its
//           mutex)
//
// Output: one line per figure on stdout, "chan <kind> <transport> <size>
// <key>=<value> ...", read by bench/report.py; n/a lines say why. A run
// that has not ended after --deadline seconds (default 120) is killed and
// reported n/a; its children say on stderr where they stopped.
#include <boost/interprocess/ipc/message_queue.hpp>

#include <fcntl.h>
#include <mqueue.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "poolclient.h"

namespace bip = boost::interprocess;

namespace {

double g_scale = 1.0;         // --quick: fewer rounds and messages
std::size_t g_only_size = 0; // --size=N: that size alone
unsigned g_deadline_s = 120; // --deadline=S: a run that takes longer is stopped and reported n/a

// A child's progress, for the report when it overruns the deadline: a store
// to its own memory per message, read only by its SIGALRM handler.
volatile std::uint64_t g_progress, g_total;
char g_label[96];

void on_alarm(int)
{
    char line[192];
    int n = std::snprintf(line, sizeof(line), "chan_bench: %s: no end after %u s, at message %llu of %llu\n",
                          g_label, g_deadline_s, (unsigned long long)g_progress, (unsigned long long)g_total);
    if (n > 0)
        (void)!write(2, line, std::size_t(n));
    _exit(3);
}

// In a child: SIGALRM ends it at the deadline, saying where it was.
void arm_deadline(const char *label, std::uint64_t total)
{
    std::snprintf(g_label, sizeof(g_label), "%s", label);
    g_progress = 0;
    g_total = total;
    signal(SIGALRM, on_alarm);
    alarm(g_deadline_s);
}

std::uint64_t now_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::uint64_t(ts.tv_sec) * 1000000000u + std::uint64_t(ts.tv_nsec);
}

[[noreturn]] void die(const char *what)
{
    std::fprintf(stderr, "chan_bench: %s: %s\n", what, std::strerror(errno));
    std::_Exit(1);
}

// ---- transports ------------------------------------------------------------

// One end of a two-way link between A and B. send() gives S bytes from buf
// (or, zero copy, the block itself); recv() returns where the S bytes are.
struct End {
    virtual ~End() = default;
    virtual void *buffer() = 0;              // where to write a message to send
    virtual void send(void *msg) = 0;        // msg: from buffer() or recv()
    virtual void *recv() = 0;                // the message
    virtual void done(void *msg) = 0;        // finished with a received message
    virtual bool zero_copy() const { return false; }
};

std::size_t g_size;

// Copying transports: a private buffer in, a private buffer out.
struct CopyEnd : End {
    std::vector<char> out, in;
    CopyEnd() : out(g_size, 'x'), in(g_size) {}
    void *buffer() override { return out.data(); }
    void done(void *) override {}
};

bool full_write(int fd, const char *p, std::size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k <= 0)
            return false;
        p += k;
        n -= std::size_t(k);
    }
    return true;
}

bool full_read(int fd, char *p, std::size_t n)
{
    while (n) {
        ssize_t k = read(fd, p, n);
        if (k <= 0)
            return false;
        p += k;
        n -= std::size_t(k);
    }
    return true;
}

struct FdEnd : CopyEnd {
    int rfd, wfd;
    FdEnd(int r, int w) : rfd(r), wfd(w) {}
    void send(void *msg) override
    {
        if (!full_write(wfd, static_cast<char *>(msg), g_size))
            die("write");
    }
    void *recv() override
    {
        if (!full_read(rfd, in.data(), g_size))
            die("read");
        return in.data();
    }
};

struct MqEnd : CopyEnd {
    mqd_t rq, wq;
    MqEnd(mqd_t r, mqd_t w) : rq(r), wq(w) {}
    void send(void *msg) override
    {
        while (mq_send(wq, static_cast<char *>(msg), g_size, 0) != 0)
            if (errno != EINTR)
                die("mq_send");
    }
    void *recv() override
    {
        while (mq_receive(rq, in.data(), g_size, nullptr) < 0)
            if (errno != EINTR)
                die("mq_receive");
        return in.data();
    }
};

struct ZmqEnd : CopyEnd {
    void *ctx, *sock;
    ZmqEnd(bool bind, const std::string &addr, int hwm)
    {
        ctx = zmq_ctx_new();
        sock = zmq_socket(ctx, ZMQ_PAIR);
        zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
        zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
        if ((bind ? zmq_bind(sock, addr.c_str()) : zmq_connect(sock, addr.c_str())) != 0)
            die("zmq bind/connect");
    }
    ~ZmqEnd() override
    {
        // A goodbye each way before the close: a sender that closed after its
        // last zmq_send lost the tail of a stream now and then (the receiver
        // got 9890 of 10000 messages and waited forever), linger or not. Each
        // side sends one byte after its last message and reads until the
        // other's byte arrives, which follows everything the other sent.
        char bye = 0;
        if (zmq_send(sock, &bye, 1, 0) != 1)
            die("zmq_send (goodbye)");
        for (int n; (n = zmq_recv(sock, in.data(), g_size, 0)) != 1;)
            if (n < 0 && errno != EINTR)
                die("zmq_recv (goodbye)");
        zmq_close(sock);
        zmq_ctx_term(ctx);
    }
    void send(void *msg) override
    {
        if (zmq_send(sock, msg, g_size, 0) != int(g_size))
            die("zmq_send");
    }
    void *recv() override
    {
        if (zmq_recv(sock, in.data(), g_size, 0) != int(g_size))
            die("zmq_recv");
        return in.data();
    }
};

struct BoostEnd : CopyEnd {
    bip::message_queue rq, wq;
    BoostEnd(const char *r, const char *w) : rq(bip::open_only, r), wq(bip::open_only, w) {}
    void send(void *msg) override { wq.send(msg, g_size, 0); }
    void *recv() override
    {
        bip::message_queue::size_type got;
        unsigned prio;
        rq.receive(in.data(), g_size, got, prio);
        return in.data();
    }
};

// poold: a channel each way on an embedded pool shared by the fork. A
// stream's producer allocates each message, its consumer frees it; a
// ping-pong's block goes back and forth.
pool_t *g_pool;
struct PoolEnd : End {
    pool_chan_t *rx, *tx;
    bool stream = false;
    PoolEnd(const char *r, const char *w, bool s) : stream(s)
    {
        rx = pool_chan_open(g_pool, r, nullptr);
        tx = pool_chan_open(g_pool, w, nullptr);
        if (!rx || !tx)
            die("pool_chan_open");
    }
    ~PoolEnd() override
    {
        pool_chan_close(rx);
        pool_chan_close(tx);
    }
    void *buffer() override
    {
        void *p;
        while (!(p = pool_malloc(g_pool, g_size)))
            sched_yield(); // the consumer frees as it goes
        return p;
    }
    void send(void *msg) override
    {
        if (pool_chan_send(tx, msg, g_size, -1) != 0)
            die("pool_chan_send");
    }
    void *recv() override
    {
        void *p = pool_chan_recv(rx, nullptr, -1);
        if (!p)
            die("pool_chan_recv");
        return p;
    }
    void done(void *msg) override
    {
        if (stream)
            pool_free(g_pool, msg, g_size);
    }
    bool zero_copy() const override { return true; }
};

// (e)'s ring: preallocated shared buffers; an index through a single-
// producer ring each way; the waiting side spins, then yields.
constexpr std::uint32_t kRingCells = 1024;
struct Ring {
    alignas(64) std::atomic<std::uint64_t> head{0};
    alignas(64) std::atomic<std::uint64_t> tail{0};
    std::uint32_t cell[kRingCells];
};
struct RingShared {
    Ring ab, ba;
    std::atomic<std::uint64_t> next_buf{0};
};
RingShared *g_ring;
char *g_ring_bufs;
std::size_t g_ring_nbufs; // buffers, and so the most indices in flight
// Bytes from one ring buffer to the next: the message size, cache-line aligned.
std::size_t ring_stride() { return (g_size + 63) & ~std::size_t(63); }

// Waits until the next push has room. A buffer is reused only once the
// consumer has popped the message after it (it reads a buffer between its
// pop and its next pop): nbufs - 1 in flight at most. Called before the
// producer writes the next buffer, not only before it pushes the index.
void ring_wait_room(Ring &r)
{
    std::uint64_t h = r.head.load(std::memory_order_relaxed);
    std::uint64_t cap = std::min<std::uint64_t>(kRingCells, g_ring_nbufs - 1);
    for (int spin = 0; h - r.tail.load(std::memory_order_acquire) >= cap; spin++)
        if (spin > 100)
            sched_yield();
}

void ring_push(Ring &r, std::uint32_t v)
{
    ring_wait_room(r);
    std::uint64_t h = r.head.load(std::memory_order_relaxed);
    r.cell[h % kRingCells] = v;
    r.head.store(h + 1, std::memory_order_release); // pairs with ring_pop's acquire
}

std::uint32_t ring_pop(Ring &r)
{
    std::uint64_t t = r.tail.load(std::memory_order_relaxed);
    for (int spin = 0; r.head.load(std::memory_order_acquire) == t; spin++)
        if (spin > 100)
            sched_yield();
    std::uint32_t v = r.cell[t % kRingCells];
    r.tail.store(t + 1, std::memory_order_release); // pairs with ring_push's acquire
    return v;
}

struct RingEnd : End {
    Ring &rx, &tx;
    std::uint64_t mine = 0;
    RingEnd(Ring &r, Ring &w) : rx(r), tx(w)
    {
        // Its buffers mapped in this process before the run, as a program
        // that preallocates them would have them: a forked child's first
        // touch of each page is a fault, which would be most of a run's
        // time at 64 KiB and above.
        std::size_t len = (g_ring_nbufs * ring_stride() + 4095) & ~std::size_t(4095);
#ifdef MADV_POPULATE_WRITE
        if (madvise(g_ring_bufs, len, MADV_POPULATE_WRITE) == 0)
            return;
#endif
        for (std::size_t i = 0; i < len; i += 4096)
            static_cast<volatile char *>(g_ring_bufs)[i] = 0;
    }
    char *at(std::uint32_t i) { return g_ring_bufs + std::size_t(i) * ring_stride(); }
    void *buffer() override
    {
        ring_wait_room(tx);
        return at(std::uint32_t(mine++ % g_ring_nbufs));
    }
    void send(void *msg) override
    {
        ring_push(tx, std::uint32_t((static_cast<char *>(msg) - g_ring_bufs) / ring_stride()));
    }
    void *recv() override { return at(ring_pop(rx)); }
    void done(void *) override {}
    bool zero_copy() const override { return true; }
};

// ---- the set-up of one transport for one size --------------------------------

enum class T { Pool, Ring, Unix, Pipe, Mq, Zmq, Boost };
const char *tname(T t)
{
    switch (t) {
    case T::Pool: return "poold";
    case T::Ring: return "ring";
    case T::Unix: return "unix";
    case T::Pipe: return "pipe";
    case T::Mq: return "mqueue";
    case T::Zmq: return "zmq";
    case T::Boost: return "boost";
    }
    return "?";
}

// The window of a stream: messages in flight at most (what the queues
// hold), 256 or 64 MiB of them.
std::uint32_t window(std::size_t s)
{
    return std::uint32_t(std::min<std::uint64_t>(256, std::max<std::uint64_t>(2, (64u << 20) / s)));
}

struct Setup {
    T t = T::Pool;
    bool stream = false;
    int sv[2] = {-1, -1}, p1[2] = {-1, -1}, p2[2] = {-1, -1};
    std::string mq1, mq2, zaddr, b1, b2, c1, c2;
    std::string why; // n/a: why
    pool_chan_t *keep[2] = {nullptr, nullptr}; // poold: the parent's, until both ends are done
};

int g_seq;

bool prepare(Setup &st)
{
    std::string tag = std::to_string(getpid()) + "_" + std::to_string(g_seq++);
    std::uint32_t win = st.stream ? window(g_size) : 1;
    switch (st.t) {
    case T::Unix:
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, st.sv) != 0)
            die("socketpair");
        return true;
    case T::Pipe:
        if (pipe(st.p1) != 0 || pipe(st.p2) != 0)
            die("pipe");
        return true;
    case T::Mq: {
        st.mq1 = "/chan_bench_a_" + tag;
        st.mq2 = "/chan_bench_b_" + tag;
        mq_attr a{};
        a.mq_maxmsg = std::min<long>(win, 10); // the system's msg_max (10) unless raised
        a.mq_msgsize = long(g_size);
        for (auto *n : {&st.mq1, &st.mq2}) {
            mqd_t q = mq_open(n->c_str(), O_CREAT | O_EXCL | O_RDWR, 0600, &a);
            if (q == mqd_t(-1)) {
                st.why = std::string("mq_open: ") + std::strerror(errno) +
                         " (a message above /proc/sys/fs/mqueue/msgsize_max, or the queues' bytes "
                         "above RLIMIT_MSGQUEUE)";
                mq_unlink(st.mq1.c_str());
                return false;
            }
            mq_close(q);
        }
        return true;
    }
    case T::Zmq: st.zaddr = "ipc:///tmp/chan_bench_" + tag; return true;
    case T::Boost:
        st.b1 = "chan_bench_a_" + tag;
        st.b2 = "chan_bench_b_" + tag;
        try {
            bip::message_queue(bip::create_only, st.b1.c_str(), win, g_size);
            bip::message_queue(bip::create_only, st.b2.c_str(), win, g_size);
        } catch (const std::exception &e) {
            st.why = std::string("message_queue: ") + e.what();
            return false;
        }
        return true;
    case T::Pool: {
        st.c1 = "cb_a" + std::to_string(g_seq);
        st.c2 = "cb_b" + std::to_string(g_seq);
        pool_chan_opts o{POOL_CHAN_QUEUE, win < 2 ? 2u : win, POOL_CHAN_CREATE};
        o.capacity = std::min<unsigned>(o.capacity, POOL_CHAN_MAX_CAPACITY);
        // Made by the parent, kept open until both ends are done.
        st.keep[0] = pool_chan_open(g_pool, st.c1.c_str(), &o);
        st.keep[1] = pool_chan_open(g_pool, st.c2.c_str(), &o);
        if (!st.keep[0] || !st.keep[1])
            die("pool_chan_open (make)");
        return true;
    }
    case T::Ring: {
        new (g_ring) RingShared();
        g_ring_nbufs = std::max<std::size_t>(2, std::min<std::size_t>(4096, (std::size_t(256) << 20) / ring_stride()));
        return true;
    }
    }
    return false;
}

void cleanup(Setup &st)
{
    for (pool_chan_t *c : st.keep)
        if (c)
            pool_chan_close(c);
    for (int *fd : {&st.sv[0], &st.sv[1], &st.p1[0], &st.p1[1], &st.p2[0], &st.p2[1]})
        if (*fd >= 0)
            close(*fd);
    if (!st.mq1.empty()) {
        mq_unlink(st.mq1.c_str());
        mq_unlink(st.mq2.c_str());
    }
    if (!st.b1.empty()) {
        bip::message_queue::remove(st.b1.c_str());
        bip::message_queue::remove(st.b2.c_str());
    }
}

// The end of side a (true) or b, in a child.
End *open_end(Setup &st, bool a)
{
    switch (st.t) {
    case T::Unix: return new FdEnd(st.sv[a ? 0 : 1], st.sv[a ? 0 : 1]);
    case T::Pipe: return a ? new FdEnd(st.p2[0], st.p1[1]) : new FdEnd(st.p1[0], st.p2[1]);
    case T::Mq: {
        mqd_t q1 = mq_open(st.mq1.c_str(), O_RDWR), q2 = mq_open(st.mq2.c_str(), O_RDWR);
        if (q1 == mqd_t(-1) || q2 == mqd_t(-1))
            die("mq_open");
        return a ? new MqEnd(q2, q1) : new MqEnd(q1, q2);
    }
    case T::Zmq: return new ZmqEnd(a, st.zaddr, int(st.stream ? window(g_size) : 1));
    case T::Boost: return a ? new BoostEnd(st.b2.c_str(), st.b1.c_str())
                            : new BoostEnd(st.b1.c_str(), st.b2.c_str());
    case T::Pool: return a ? new PoolEnd(st.c2.c_str(), st.c1.c_str(), st.stream)
                           : new PoolEnd(st.c1.c_str(), st.c2.c_str(), st.stream);
    case T::Ring: return a ? new RingEnd(g_ring->ba, g_ring->ab) : new RingEnd(g_ring->ab, g_ring->ba);
    }
    return nullptr;
}

// Results from the children, in shared memory.
struct Board {
    std::atomic<int> ready{0};
    std::atomic<int> go{0};
    std::atomic<int> warm{0}; // a stream's receiver has had the warm-up
    std::atomic<std::uint64_t> total{0}; // a stream's timed messages, once its last is sent
    std::uint64_t t0, t1;
    std::uint64_t rtt[200000];
    std::uint64_t bad;
};
Board *g_board;

void stamp(void *msg, std::uint64_t i)
{
    std::memcpy(msg, &i, sizeof(i));
    static_cast<char *>(msg)[g_size - 1] = char(i);
}

bool check(const void *msg, std::uint64_t i)
{
    std::uint64_t v;
    std::memcpy(&v, msg, sizeof(v));
    return v == i && static_cast<const char *>(msg)[g_size - 1] == char(i);
}

void start_line()
{
    g_board->ready.fetch_add(1);
    while (!g_board->go.load())
        sched_yield();
}

// ---- ping-pong -----------------------------------------------------------------

std::uint64_t pp_rounds(std::size_t s)
{
    std::uint64_t r = s <= 65536 ? 20000 : s <= (1u << 20) ? 2000 : 200;
    return std::max<std::uint64_t>(20, std::uint64_t(double(r) * g_scale));
}

void pingpong_a(Setup &st, std::uint64_t rounds)
{
    End *e = open_end(st, true);
    void *msg = e->buffer();
    start_line();
    for (std::uint64_t i = 0; i < rounds; ++i) {
        g_progress = i;
        std::uint64_t t = now_ns();
        stamp(msg, i);
        e->send(msg);
        void *back = e->recv();
        if (!check(back, i))
            g_board->bad++;
        g_board->rtt[i] = now_ns() - t;
        if (e->zero_copy())
            msg = back; // the same block came back
        else
            e->done(back);
    }
    if (st.t == T::Pool)
        pool_free(g_pool, msg, g_size);
    delete e;
}

void pingpong_b(Setup &st, std::uint64_t rounds)
{
    End *e = open_end(st, false);
    void *reply = e->zero_copy() ? nullptr : e->buffer();
    start_line();
    for (std::uint64_t i = 0; i < rounds; ++i) {
        g_progress = i;
        void *m = e->recv();
        if (!check(m, i))
            g_board->bad++;
        if (e->zero_copy()) {
            e->send(m); // the block goes back as it is
        } else {
            stamp(reply, i);
            e->send(reply);
        }
    }
    delete e;
}

// ---- stream ------------------------------------------------------------------

std::uint64_t st_count(std::size_t s)
{
    std::uint64_t c = std::clamp<std::uint64_t>((std::uint64_t(1) << 30) / s, 200, 1000000);
    return std::max<std::uint64_t>(8, std::uint64_t(double(c) * g_scale));
}

// A stream first passes four windows of messages untimed, so that every
// transport starts warm: the ring's buffers and the kernel's socket and
// queue buffers are touched, and the pool has carved and committed the
// blocks a window holds. Then the timed run, from A's first send after
// B had the warm-up to B's last receive.
std::uint64_t warm_count(std::size_t s) { return 4 * window(s); }
constexpr std::uint64_t kStreamMinNs = 300000000; // 0.3 s
constexpr std::uint64_t kStreamMax = 50000000;

void stream_a(Setup &st, std::uint64_t count)
{
    End *e = open_end(st, true);
    start_line();
    std::uint64_t w = warm_count(g_size);
    for (std::uint64_t i = 0; i < w; ++i) {
        void *m = e->buffer();
        stamp(m, i);
        e->send(m);
    }
    while (!g_board->warm.load())
        sched_yield();
    g_board->t0 = now_ns();
    // At least count messages and at least kStreamMinNs: a fast transport's
    // count alone can take a few milliseconds, which the scheduler's noise
    // would decide. The last message's number is on the board before it
    // is sent, so that the receiver knows it when it has it.
    for (std::uint64_t i = 0;; ++i) {
        g_progress = i;
        bool last = false;
        if (i + 1 >= count && (i + 1 - count) % 64 == 0)
            last = double(now_ns() - g_board->t0) >= double(kStreamMinNs) * g_scale || i + 1 >= kStreamMax;
        if (last)
            g_board->total = i + 1;
        void *m = e->buffer();
        stamp(m, w + i);
        e->send(m);
        if (last)
            break;
    }
    g_progress = count;
    delete e; // a transport's close may wait for its queue to drain
}

void stream_b(Setup &st)
{
    End *e = open_end(st, false);
    start_line();
    std::uint64_t w = warm_count(g_size);
    for (std::uint64_t i = 0;; ++i) {
        if (i == w)
            g_board->warm = 1;
        if (i >= w)
            g_progress = i - w;
        void *m = e->recv();
        if (!check(m, i))
            g_board->bad++;
        e->done(m);
        if (i >= w && i - w + 1 == g_board->total.load())
            break;
    }
    g_board->t1 = now_ns();
    delete e;
}

// ---- one run: two children ------------------------------------------------------

// Waits for the children until the deadline (and a little more: each child's
// own alarm reports where it stopped first); then kills those still there.
// True when every one exited 0.
bool reap(const std::vector<pid_t> &kids)
{
    std::uint64_t end = now_ns() + (std::uint64_t(g_deadline_s) + 5) * 1000000000u;
    std::vector<pid_t> left = kids;
    bool ok = true;
    while (!left.empty()) {
        for (std::size_t k = 0; k < left.size();) {
            int st;
            pid_t r = waitpid(left[k], &st, WNOHANG);
            if (r == left[k]) {
                if (!WIFEXITED(st) || WEXITSTATUS(st)) {
                    std::fprintf(stderr, "chan_bench: child %d %s %d\n", int(r),
                                 WIFEXITED(st) ? "exited with" : "killed by signal",
                                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
                    ok = false;
                }
                left.erase(left.begin() + long(k));
            } else {
                k++;
            }
        }
        if (left.empty())
            break;
        if (now_ns() > end) {
            for (pid_t p : left) {
                kill(p, SIGKILL);
                waitpid(p, nullptr, 0);
            }
            std::fprintf(stderr, "chan_bench: %zu child(ren) killed at the deadline\n", left.size());
            return false;
        }
        usleep(2000);
    }
    return ok;
}

// Both children at the start line, or one gone before it: false.
bool start_all(int n, const std::vector<pid_t> &kids)
{
    std::uint64_t end = now_ns() + std::uint64_t(g_deadline_s) * 1000000000u;
    while (g_board->ready.load() < n) {
        for (pid_t p : kids)
            if (waitpid(p, nullptr, WNOHANG) == p) {
                std::fprintf(stderr, "chan_bench: child %d ended before the start\n", int(p));
                return false;
            }
        if (now_ns() > end)
            return false;
        sched_yield();
    }
    g_board->go = 1;
    return true;
}

// The board as a run starts: nobody at the line, no warm-up, no last
// message named, nothing bad.
void reset_board()
{
    g_board->ready = 0;
    g_board->go = 0;
    g_board->warm = 0;
    g_board->total = UINT64_MAX;
    g_board->bad = 0;
}

template <class A, class B> bool two(const char *label, std::uint64_t total, A a, B b)
{
    reset_board();
    std::vector<pid_t> kids;
    std::string la = std::string(label) + " side a", lb = std::string(label) + " side b";
    pid_t pa = fork();
    if (pa == 0) {
        arm_deadline(la.c_str(), total);
        a();
        std::_Exit(0);
    }
    kids.push_back(pa);
    pid_t pb = fork();
    if (pb == 0) {
        arm_deadline(lb.c_str(), total);
        b();
        std::_Exit(0);
    }
    kids.push_back(pb);
    bool started = start_all(2, kids);
    bool ok = reap(kids);
    return started && ok;
}

void run_pingpong(T t, std::size_t s)
{
    g_size = s;
    Setup st;
    st.t = t;
    st.stream = false;
    if (!prepare(st)) {
        std::printf("chan pingpong %s %zu na=\"%s\"\n", tname(t), s, st.why.c_str());
        cleanup(st);
        std::fflush(stdout);
        return;
    }
    std::uint64_t rounds = std::min<std::uint64_t>(pp_rounds(s), 200000);
    std::string label = std::string("pingpong ") + tname(t) + " " + std::to_string(s);
    bool ok = two(label.c_str(), rounds, [&] { pingpong_a(st, rounds); }, [&] { pingpong_b(st, rounds); });
    cleanup(st);
    if (!ok) {
        std::printf("chan pingpong %s %zu na=\"did not finish within %u s\"\n", tname(t), s, g_deadline_s);
        std::fflush(stdout);
        return;
    }
    std::vector<std::uint64_t> v(g_board->rtt, g_board->rtt + rounds);
    std::sort(v.begin(), v.end());
    std::printf("chan pingpong %s %zu rounds=%llu p50_us=%.2f p99_us=%.2f bad=%llu\n", tname(t), s,
                (unsigned long long)rounds, double(v[v.size() / 2]) / 1e3,
                double(v[std::min(v.size() - 1, v.size() * 99 / 100)]) / 1e3,
                (unsigned long long)g_board->bad);
    std::fflush(stdout);
}

void run_stream(T t, std::size_t s)
{
    g_size = s;
    Setup st;
    st.t = t;
    st.stream = true;
    if (!prepare(st)) {
        std::printf("chan stream %s %zu na=\"%s\"\n", tname(t), s, st.why.c_str());
        cleanup(st);
        std::fflush(stdout);
        return;
    }
    std::uint64_t count = st_count(s);
    std::string label = std::string("stream ") + tname(t) + " " + std::to_string(s);
    bool ok = two(label.c_str(), count, [&] { stream_a(st, count); }, [&] { stream_b(st); });
    cleanup(st);
    if (!ok) {
        std::printf("chan stream %s %zu na=\"did not finish within %u s\"\n", tname(t), s, g_deadline_s);
        std::fflush(stdout);
        return;
    }
    double sec = double(g_board->t1 - g_board->t0) / 1e9;
    count = g_board->total.load();
    std::printf("chan stream %s %zu msgs=%llu msgs_per_s=%.0f mib_per_s=%.1f bad=%llu\n", tname(t), s,
                (unsigned long long)count, double(count) / sec, double(count) * double(s) / sec / 1048576.0,
                (unsigned long long)g_board->bad);
    std::fflush(stdout);
}

// ---- topic fan-out -----------------------------------------------------------------

void run_fanout(int subs, std::size_t s)
{
    g_size = s;
    std::string name = "fan" + std::to_string(g_seq++);
    pool_chan_opts o{POOL_CHAN_TOPIC, std::uint32_t(std::min<std::uint32_t>(window(s), 256)), POOL_CHAN_CREATE};
    pool_chan_t *keep = pool_chan_open(g_pool, name.c_str(), &o);
    if (!keep)
        die("pool_chan_open (topic)");
    std::uint64_t count = st_count(s);
    reset_board();
    std::vector<pid_t> kids;
    for (int k = 0; k < subs; k++) {
        pid_t p = fork();
        if (p == 0) {
            arm_deadline(("fanout subscriber " + std::to_string(k)).c_str(), count);
            pool_chan_opts so = o;
            so.flags = POOL_CHAN_SUBSCRIBE;
            pool_chan_t *ch = pool_chan_open(g_pool, name.c_str(), &so);
            if (!ch)
                die("subscribe");
            start_line();
            for (std::uint64_t i = 0; i < count; ++i) {
                g_progress = i;
                void *m = pool_chan_recv(ch, nullptr, -1);
                if (!m || !check(m, i))
                    g_board->bad++;
                pool_chan_release(ch, m);
            }
            pool_chan_close(ch);
            std::_Exit(0);
        }
        kids.push_back(p);
    }
    pid_t pub = fork();
    if (pub == 0) {
        arm_deadline("fanout publisher", count);
        pool_chan_t *ch = pool_chan_open(g_pool, name.c_str(), &o);
        start_line();
        g_board->t0 = now_ns();
        for (std::uint64_t i = 0; i < count; ++i) {
            g_progress = i;
            void *m;
            while (!(m = pool_malloc(g_pool, s)))
                sched_yield();
            stamp(m, i);
            if (pool_chan_send(ch, m, s, -1) != 0)
                die("pool_chan_send (topic)");
        }
        pool_chan_close(ch);
        std::_Exit(0);
    }
    std::vector<pid_t> all = kids;
    all.push_back(pub);
    bool ok = start_all(subs + 1, all) && reap(kids);
    std::uint64_t t1 = now_ns();
    ok = reap({pub}) && ok;
    pool_chan_close(keep);
    if (!ok) {
        std::printf("chan fanout poold/%d %zu na=\"did not finish within %u s\"\n", subs, s, g_deadline_s);
        std::fflush(stdout);
        return;
    }
    double sec = double(t1 - g_board->t0) / 1e9;
    std::printf("chan fanout poold/%d %zu msgs=%llu msgs_per_s=%.0f deliveries_per_s=%.0f "
                "mib_per_s=%.1f bad=%llu\n",
                subs, s, (unsigned long long)count, double(count) / sec,
                double(count) * subs / sec, double(count) * double(s) / sec / 1048576.0,
                (unsigned long long)g_board->bad);
    std::fflush(stdout);
}

const char kMsgsizeMax[] = "/proc/sys/fs/mqueue/msgsize_max";
long g_old_msgsize_max = -1;

void restore_msgsize_max()
{
    if (FILE *f = std::fopen(kMsgsizeMax, "w")) {
        std::fprintf(f, "%ld\n", g_old_msgsize_max);
        std::fclose(f);
    }
}

void raise_msgsize_max()
{
    FILE *f = std::fopen(kMsgsizeMax, "r");
    if (!f || std::fscanf(f, "%ld", &g_old_msgsize_max) != 1) {
        if (f)
            std::fclose(f);
        return;
    }
    std::fclose(f);
    f = std::fopen(kMsgsizeMax, "w");
    if (!f)
        return; // not root: sizes above it are n/a
    std::fprintf(f, "%d\n", 16 << 20);
    if (std::fclose(f) == 0)
        std::atexit(restore_msgsize_max);
}

} // namespace

int main(int argc, char **argv)
{
    bool quick = false;
    const char *only = nullptr; // --only=<transport>: that one alone (and no fan-out)
    for (int i = 1; i < argc; i++)
        if (!std::strcmp(argv[i], "--quick"))
            quick = true;
        else if (!std::strncmp(argv[i], "--only=", 7))
            only = argv[i] + 7;
        else if (!std::strncmp(argv[i], "--size=", 7))
            g_only_size = std::strtoull(argv[i] + 7, nullptr, 10);
        else if (!std::strncmp(argv[i], "--deadline=", 11))
            g_deadline_s = unsigned(std::strtoul(argv[i] + 11, nullptr, 10));
        else {
            std::fprintf(stderr, "usage: chan_bench [--quick] [--only=poold|ring|unix|pipe|mqueue|zmq|boost|fanout]\n"
                                 "                  [--size=BYTES] [--deadline=SECONDS]\n");
            return 2;
        }
    if (quick)
        g_scale = 0.05;
    // Large POSIX message queues: as root, raise the per-user byte limit
    // and the largest message (16 MiB, the kernel's ceiling), for this run.
    rlimit rl{RLIM_INFINITY, RLIM_INFINITY};
    (void)setrlimit(RLIMIT_MSGQUEUE, &rl);
    raise_msgsize_max();
    g_pool = pool_open_embedded(std::size_t(1) << 30);
    if (!g_pool)
        die("pool_open_embedded (1 GiB)");
    g_board = static_cast<Board *>(
        mmap(nullptr, sizeof(Board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    g_ring = static_cast<RingShared *>(
        mmap(nullptr, sizeof(RingShared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    g_ring_bufs = static_cast<char *>(mmap(nullptr, std::size_t(300) << 20, PROT_READ | PROT_WRITE,
                                           MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    if (g_board == MAP_FAILED || g_ring == MAP_FAILED || g_ring_bufs == MAP_FAILED)
        die("mmap");
    const std::size_t sizes[] = {64, 4096, 65536, 1u << 20, 16u << 20};
    const T all[] = {T::Pool, T::Ring, T::Unix, T::Pipe, T::Mq, T::Zmq, T::Boost};
    for (std::size_t s : sizes)
        for (T t : all)
            if ((!only || !std::strcmp(only, tname(t))) && (!g_only_size || s == g_only_size))
                run_pingpong(t, s);
    for (std::size_t s : sizes)
        for (T t : all)
            if ((!only || !std::strcmp(only, tname(t))) && (!g_only_size || s == g_only_size))
                run_stream(t, s);
    for (std::size_t s : {std::size_t(64), std::size_t(1) << 20})
        for (int k : {1, 2, 4})
            if (!only || !std::strcmp(only, "fanout"))
                run_fanout(k, s);
    return 0;
}
