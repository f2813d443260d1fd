/* SPDX-License-Identifier: MIT */
/*
 * test_storm.c: a crash storm against a real poold (label `stress`).
 *
 * Worker processes attach with pool_attach(), three threads each; every
 * thread keeps a window of 48 owner-tagged blocks of 24 B to 20 KB, and one
 * time in 32 a large block of 64 KiB to 2 MiB (the tag at both ends, checked
 * before every free), and burns a 64 B block between them. Large blocks
 * come and go as runs of spans, and poold sweeps the classes' empty spans
 * back when spans run short; poold purges free spans after 1 s (retain 0),
 * so their memory leaves and comes back under the workers' feet. A random worker is SIGKILLed about every 0.3 s and replaced; poold
 * itself is SIGKILLed and restarted every 6 s. At the end every worker is
 * killed, and: no tag was ever seen changed (no block handed to two
 * owners), no allocation failed, and once poold has reclaimed them all, 0
 * blocks are in use or in transit and the books are exact per class (the
 * segment's counters against a walk of its lists, caches and owner bytes).
 *
 * Beside them, four channel workers, killed the same way: a queue sender
 * and a queue receiver (numbered messages of 16 B to 200 KB), a topic
 * publisher and a topic subscriber (which holds up to 8 messages and
 * releases them in a random order). At the end of a storm the senders are
 * killed first and the receivers must drain both channels within 3 s (no
 * receiver asleep with a message waiting); then: no queue message received
 * twice, every one whose send returned received (or given back by a
 * receiver's death inside pool_chan_recv, or taken by a receiver killed
 * before it counted it), no subscriber got a message twice, and the
 * channels hold nothing.
 *
 * POOL_STORM_SECONDS (default 30) sets the length; POOL_STORM_ROUNDS (1)
 * runs several storms in a row on one segment.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pool_test.h"

enum { NWORKERS = 4, NTHREADS = 3, WINDOW = 48, NCHW = 4, QIDS = 1 << 22 };

struct shared {
    /* Channel workers. */
    _Atomic uint32_t q_next;       /* queue ids handed to senders */
    _Atomic uint8_t q_sent[QIDS];  /* pool_chan_send returned 0 */
    _Atomic uint8_t q_recv[QIDS];  /* times a receiver counted it */
    _Atomic uint64_t q_bad;        /* contents wrong */
    _Atomic uint32_t t_next;       /* topic ids */
    _Atomic uint64_t t_deliveries; /* subscriber receipts */
    _Atomic uint64_t t_bad;        /* contents wrong, or a subscriber got one twice */
    _Atomic uint64_t chan_kills;
    _Atomic uint64_t allocs;
    _Atomic uint64_t tag_errors;
    _Atomic uint64_t alloc_failures;
    _Atomic uint64_t large_allocs;
    _Atomic uint64_t large_failures; /* no run of free spans long enough: counted, not a fault */
    _Atomic uint64_t attach_retries;
    _Atomic uint64_t attached; /* workers that got a pool */
};

static struct shared *sh;
static char dir[64], sock[96], shm[64], logpath[160];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static bool socket_answers(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static pid_t start_poold(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd < 0 || dup2(fd, 2) < 0 || dup2(fd, 1) < 0)
            _exit(126);
        /* 96 MiB: twelve threads hold up to 48 blocks each (1/32 of them
         * up to 2 MiB) and a thread's caches up to 128 KiB per class of the
         * 45; a small allocation that fails counts as a fault below. */
        execl(POOLD_BIN, POOLD_BIN, "--socket", sock, "--shm-name", shm, "--size", "96M",
              "--purge-delay", "1", "--retain", "0", "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    double end = now_s() + 10;
    while (!socket_answers()) {
        assert_true(now_s() < end);
        sleep_ms(5);
    }
    return pid;
}

static pool_t *attach_retrying(void);

struct wthread {
    pool_t *pool;
    uint64_t id;
};

static void *worker_thread(void *arg)
{
    struct wthread *w = arg;
    void *win[WINDOW] = {0};
    size_t sz[WINDOW] = {0};
    unsigned seed = (unsigned)(w->id * 2654435761u) ^ (unsigned)getpid();
    for (uint64_t r = 0;; r++) {
        int k = (int)(rand_r(&seed) % WINDOW);
        if (win[k]) {
            uint64_t tag = (w->id << 32) | (uint64_t)k, a, b;
            memcpy(&a, win[k], 8);
            memcpy(&b, (char *)win[k] + sz[k] - 8, 8);
            if (a != tag || b != tag)
                atomic_fetch_add(&sh->tag_errors, 1);
            if (!pool_free(w->pool, win[k], sz[k]))
                atomic_fetch_add(&sh->tag_errors, 1);
            win[k] = NULL;
        }
        bool large = rand_r(&seed) % 32 == 0;
        size_t s = large ? 65537 + (size_t)rand_r(&seed) % (2u << 20)
                         : 24 + (size_t)(rand_r(&seed) % (20000 - 24));
        void *p = pool_malloc(w->pool, s);
        if (!p) {
            atomic_fetch_add(large ? &sh->large_failures : &sh->alloc_failures, 1);
            continue;
        }
        if (large)
            atomic_fetch_add_explicit(&sh->large_allocs, 1, memory_order_relaxed);
        uint64_t tag = (w->id << 32) | (uint64_t)k;
        memcpy(p, &tag, 8);
        memcpy((char *)p + s - 8, &tag, 8);
        win[k] = p;
        sz[k] = s;
        /* Burn after reading. */
        char *burn = pool_malloc(w->pool, 64);
        if (!burn) {
            atomic_fetch_add(&sh->alloc_failures, 1);
            continue;
        }
        memset(burn, (int)r, 64);
        pool_free(w->pool, burn, 64);
        atomic_fetch_add_explicit(&sh->allocs, 2, memory_order_relaxed);
    }
    return NULL;
}

static pid_t start_worker(uint32_t n)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0)
        return pid;
    pool_t *pool = attach_retrying();
    if (!pool)
        _exit(2);
    atomic_fetch_add(&sh->attached, 1);
    pthread_t t[NTHREADS];
    struct wthread w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct wthread){pool, ((uint64_t)n << 8) | (uint64_t)i};
        pthread_create(&t[i], NULL, worker_thread, &w[i]);
    }
    for (;;)
        pause();
}

/* ---- channel workers ---- */

static size_t q_size(uint32_t id)
{
    return id % 41 == 0 ? (size_t)200000 : 16 + id % 3000;
}

static void chan_sender(pool_t *pool, bool topic)
{
    struct pool_chan_opts o = {topic ? POOL_CHAN_TOPIC : POOL_CHAN_QUEUE, 64, POOL_CHAN_CREATE};
    pool_chan_t *ch = pool_chan_open(pool, topic ? "storm-t" : "storm-q", &o);
    if (!ch)
        _exit(3);
    for (;;) {
        uint32_t id = atomic_fetch_add(topic ? &sh->t_next : &sh->q_next, 1);
        if (id >= QIDS)
            pause();
        size_t n = q_size(id);
        uint32_t *m = pool_malloc(pool, n);
        if (!m) {
            sleep_ms(1);
            continue;
        }
        m[0] = id;
        m[n / 4 - 1] = ~id;
        while (pool_chan_send(ch, m, n, 100) != 0)
            ;
        if (!topic)
            atomic_store(&sh->q_sent[id], 1);
    }
}

static void q_receiver(pool_t *pool)
{
    struct pool_chan_opts o = {POOL_CHAN_QUEUE, 64, POOL_CHAN_CREATE};
    pool_chan_t *ch = pool_chan_open(pool, "storm-q", &o);
    if (!ch)
        _exit(3);
    for (;;) {
        uint32_t *m = pool_chan_recv(ch, NULL, -1);
        if (!m)
            continue;
        uint32_t id = m[0];
        if (id >= QIDS || m[q_size(id) / 4 - 1] != ~id)
            atomic_fetch_add(&sh->q_bad, 1);
        else
            atomic_fetch_add(&sh->q_recv[id], 1);
        pool_free(pool, m, 0);
    }
}

static void t_subscriber(pool_t *pool)
{
    struct pool_chan_opts o = {POOL_CHAN_TOPIC, 64, POOL_CHAN_CREATE | POOL_CHAN_SUBSCRIBE};
    pool_chan_t *ch = pool_chan_open(pool, "storm-t", &o);
    if (!ch)
        _exit(3);
    uint8_t *seen = calloc(QIDS / 8, 1);
    const uint32_t *held[8];
    int nheld = 0;
    unsigned seed = (unsigned)getpid();
    for (;;) {
        const uint32_t *m = pool_chan_recv(ch, NULL, 50);
        if (!m) {
            while (nheld) /* idle: give everything back */
                pool_chan_release(ch, held[--nheld]);
            continue;
        }
        uint32_t id = m[0];
        if (id >= QIDS || m[q_size(id) / 4 - 1] != ~id || (seen[id / 8] >> (id % 8)) & 1)
            atomic_fetch_add(&sh->t_bad, 1);
        else
            seen[id / 8] |= (uint8_t)(1u << (id % 8));
        atomic_fetch_add(&sh->t_deliveries, 1);
        held[nheld++] = m;
        if (nheld == 8 || rand_r(&seed) % 2) {
            int k = (int)((unsigned)rand_r(&seed) % (unsigned)nheld);
            if (pool_chan_release(ch, held[k]) != 0)
                atomic_fetch_add(&sh->t_bad, 1);
            held[k] = held[--nheld];
        }
    }
}

static pool_t *attach_retrying(void)
{
    pool_t *pool = NULL;
    for (int i = 0; i < 400 && !pool; i++) { /* poold may be restarting */
        pool = pool_attach(sock);
        if (!pool) {
            atomic_fetch_add(&sh->attach_retries, 1);
            sleep_ms(25);
        }
    }
    return pool;
}

/* Channel worker `role`: 0 queue sender, 1 queue receiver, 2 topic
 * publisher, 3 topic subscriber. */
static pid_t start_chan_worker(int role)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0)
        return pid;
    pool_t *pool = attach_retrying();
    if (!pool)
        _exit(2);
    switch (role) {
    case 0: chan_sender(pool, false); break;
    case 1: q_receiver(pool); break;
    case 2: chan_sender(pool, true); break;
    default: t_subscriber(pool); break;
    }
    _exit(0);
}

/* SIGKILL a worker and reap it: it must have died of that signal. A worker
 * that gave up attaching exits 2 on its own, which would otherwise leave the
 * storm with fewer workers than it claims and go unnoticed. */
static void kill_worker(pid_t pid)
{
    int status = 0;
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("worker %d did not die of SIGKILL (status 0x%x: exit %d; 2 = never attached)",
                 (int)pid, status, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* Channel `name`'s figures (found false: not in use), from the segment. */
static bool chan_figures(const char *name, pshm_chan_stats_t *out)
{
    char err[256];
    void *base;
    uint64_t bytes;
    pshm_seg_t seg;
    bool found = false;
    memset(out, 0, sizeof(*out));
    if (pshm_os_open(shm, &base, &bytes, err, sizeof(err)) != 0)
        return false;
    if (pshm_view(&seg, base, bytes, err, sizeof(err)) == 0)
        for (uint32_t ch = 0; ch < PSHM_MAX_CHANS && !found; ch++)
            found = pshm_chan_stats(&seg, ch, out) && strcmp(out->name, name) == 0;
    pshm_os_unmap(base, bytes);
    return found;
}

/* The end of a storm's channels: senders killed, the receivers (alive)
 * drain both within 3 s, then every channel worker is killed and the
 * messages are accounted for. */
static void chan_end(pid_t *cw)
{
    kill_worker(cw[0]);
    kill_worker(cw[2]);
    pshm_chan_stats_t q, t;
    double end = now_s() + 3;
    for (;;) {
        bool qf = chan_figures("storm-q", &q), tf = chan_figures("storm-t", &t);
        if ((!qf || q.depth == 0) && (!tf || t.depth == 0))
            break;
        if (now_s() > end)
            fail_msg("messages wait with their receivers alive: queue %llu, topic %llu (receivers "
                     "asleep: %u, %u)",
                     (unsigned long long)q.depth, (unsigned long long)t.depth, q.receivers_waiting,
                     t.receivers_waiting);
        sleep_ms(20);
    }
    kill_worker(cw[1]);
    kill_worker(cw[3]);
    atomic_fetch_add(&sh->chan_kills, 4);
    uint32_t ids = atomic_load(&sh->q_next) < QIDS ? atomic_load(&sh->q_next) : QIDS;
    uint64_t sent = 0, got = 0, twice = 0, lost = 0;
    for (uint32_t i = 0; i < ids; i++) {
        uint8_t r = atomic_load(&sh->q_recv[i]);
        sent += atomic_load(&sh->q_sent[i]);
        got += r > 0;
        twice += r > 1;
        lost += atomic_load(&sh->q_sent[i]) && r == 0;
    }
    print_message("channels: queue %llu sends returned, %llu received, %llu twice, %llu not "
                  "counted by a receiver (%llu given back by dead receivers' reclaims, %llu "
                  "channel workers killed); topic %llu deliveries\n",
                  (unsigned long long)sent, (unsigned long long)got, (unsigned long long)twice,
                  (unsigned long long)lost, (unsigned long long)q.given_back,
                  (unsigned long long)atomic_load(&sh->chan_kills),
                  (unsigned long long)atomic_load(&sh->t_deliveries));
    assert_int_equal(twice, 0);
    assert_int_equal(atomic_load(&sh->q_bad), 0);
    assert_int_equal(atomic_load(&sh->t_bad), 0);
    /* Not counted: given back by a receiver's death inside recv, or
     * received by a receiver killed before it counted it (one each). */
    assert_true(lost <= q.given_back + atomic_load(&sh->chan_kills));
    assert_true(got > 0);
    assert_true(atomic_load(&sh->t_deliveries) > 0);
}

/* The segment, mapped here to read it at rest. */
static void check_at_rest(pid_t *poold, uint64_t *in_use, uint64_t *transit, uint64_t *reclaimed,
                          uint64_t *carved, uint64_t *large_in_use, uint64_t *large_frees,
                          uint64_t *purged)
{
    char err[256];
    void *base;
    uint64_t bytes;
    assert_int_equal(pshm_os_open(shm, &base, &bytes, err, sizeof(err)), 0);
    pshm_seg_t seg;
    assert_int_equal(pshm_view(&seg, base, bytes, err, sizeof(err)), 0);
    /* Wait until poold has reclaimed every worker (pidfd, EOF, sweep). */
    double end = now_s() + 15;
    for (;;) {
        pshm_stats_t st;
        pshm_stats(&seg, &st);
        bool busy = st.procs_attached != 0;
        for (uint32_t i = 0; i < seg.max_procs; i++)
            busy |= pa_load_acquire(&seg.procs[i].state) == PSHM_PROC_RECLAIMING;
        if (!busy)
            break;
        assert_true(now_s() < end);
        sleep_ms(20);
    }
    /* poold is stopped for the walk: its sweep moves the lists. */
    kill(*poold, SIGTERM);
    waitpid(*poold, NULL, 0);
    pshm_stats_t st;
    pshm_stats(&seg, &st);
    *large_in_use = st.large.in_use + st.large.in_transit;
    *large_frees = st.large.frees;
    *purged = st.bytes_purged;
    *in_use = *transit = *carved = 0;
    for (uint32_t c = 0; c < st.nclasses; c++) {
        *in_use += (uint64_t)st.cls[c].blocks_in_use;
        *transit += st.cls[c].blocks_in_transit;
        *carved += st.cls[c].blocks_carved;
        if (st.cls[c].blocks_in_use != 0 || st.cls[c].blocks_in_transit != 0)
            print_message("class %llu: in use %lld, in transit %llu\n",
                          (unsigned long long)st.cls[c].block_size,
                          (long long)st.cls[c].blocks_in_use,
                          (unsigned long long)st.cls[c].blocks_in_transit);
    }
    *reclaimed = st.reclaimed_in_use;
    int rc = pshm_check(&seg, err, sizeof(err));
    if (rc != 0)
        fail_msg("books not exact after the storm: %s", err);
    pshm_os_unmap(base, bytes);
    *poold = start_poold();
}

static void test_crash_storm(void **state)
{
    (void)state;
    const char *e = getenv("POOL_STORM_SECONDS");
    double seconds = e ? atof(e) : 30;
    e = getenv("POOL_STORM_ROUNDS");
    int rounds = e ? atoi(e) : 1;
    snprintf(dir, sizeof(dir), "/tmp/poold-storm-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(sock, sizeof(sock), "%s/poold.sock", dir);
    snprintf(shm, sizeof(shm), "/poold-storm-%d", (int)getpid());
    snprintf(logpath, sizeof(logpath), "%s/poold.log", dir);
    pshm_os_unlink(shm);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED);
    memset(sh, 0, sizeof(*sh));
    signal(SIGPIPE, SIG_IGN);

    pid_t poold = start_poold();
    unsigned seed = (unsigned)getpid();
    uint64_t kills = 0, restarts = 0, started = 0;
    for (int round = 0; round < rounds; round++) {
        pid_t w[NWORKERS], cw[NCHW];
        for (uint32_t i = 0; i < NWORKERS; i++)
            w[i] = start_worker((uint32_t)started++);
        for (int i = 0; i < NCHW; i++)
            cw[i] = start_chan_worker(i);
        double t0 = now_s(), next_poold = t0 + 6;
        while (now_s() - t0 < seconds) {
            sleep_ms(200 + (long)(rand_r(&seed) % 200));
            uint32_t k = (uint32_t)rand_r(&seed) % (NWORKERS + NCHW);
            if (k >= NWORKERS) {
                kill_worker(cw[k - NWORKERS]);
                atomic_fetch_add(&sh->chan_kills, 1);
                cw[k - NWORKERS] = start_chan_worker((int)(k - NWORKERS));
            } else {
                kill_worker(w[k]);
                w[k] = start_worker((uint32_t)started++);
            }
            kills++;
            if (now_s() >= next_poold) {
                kill(poold, SIGKILL);
                waitpid(poold, NULL, 0);
                poold = start_poold();
                restarts++;
                next_poold = now_s() + 6;
            }
        }
        chan_end(cw);
        for (uint32_t i = 0; i < NWORKERS; i++) {
            kill_worker(w[i]);
            kills++;
        }
        uint64_t in_use, transit, reclaimed, carved, large_in_use, large_frees, purged;
        check_at_rest(&poold, &in_use, &transit, &reclaimed, &carved, &large_in_use, &large_frees,
                      &purged);
        print_message("storm %d: %.0f s, %llu workers killed, %llu poold restarts, %llu "
                      "allocations, %llu in-use blocks reclaimed so far, %llu carved; in use %llu, "
                      "in transit %llu, lost 0 (books exact), tag errors %llu, allocation "
                      "failures %llu; large blocks %llu (%llu refused for room, %llu freed), "
                      "%llu left; %llu MiB purged so far\n",
                      round + 1, seconds, (unsigned long long)kills, (unsigned long long)restarts,
                      (unsigned long long)atomic_load(&sh->allocs), (unsigned long long)reclaimed,
                      (unsigned long long)carved, (unsigned long long)in_use,
                      (unsigned long long)transit, (unsigned long long)atomic_load(&sh->tag_errors),
                      (unsigned long long)atomic_load(&sh->alloc_failures),
                      (unsigned long long)atomic_load(&sh->large_allocs),
                      (unsigned long long)atomic_load(&sh->large_failures),
                      (unsigned long long)large_frees, (unsigned long long)large_in_use,
                      (unsigned long long)(purged >> 20));
        assert_int_equal(in_use, 0);
        assert_int_equal(large_in_use, 0);
        assert_true(atomic_load(&sh->large_allocs) > 0);
        assert_int_equal(transit, 0);
        assert_int_equal(atomic_load(&sh->tag_errors), 0);
        assert_int_equal(atomic_load(&sh->alloc_failures), 0);
        assert_true(atomic_load(&sh->allocs) > 0);
        assert_true(atomic_load(&sh->attached) > 0);
    }
    kill(poold, SIGTERM);
    waitpid(poold, NULL, 0);
    pshm_os_unlink(shm);
    unlink(logpath);
    /* A poold killed by the storm leaves its socket and lock file behind. */
    unlink(sock);
    char lock[sizeof(sock) + 8];
    snprintf(lock, sizeof(lock), "%s.lock", sock);
    unlink(lock);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_storm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
