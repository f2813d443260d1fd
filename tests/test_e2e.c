/* SPDX-License-Identifier: MIT */
/*
 * test_e2e: poold, poolctl and worker processes as users run them.
 *
 * Each test starts its own poold on a temporary socket and segment, runs
 * tools/pool_worker processes that attach with pool_attach, and checks what
 * `poolctl stats --json` reports against what the workers did. It stops
 * everything it started (by pid) and unlinks its segments.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "poolclient.h"
#include "pshm.h"

extern char **environ;

struct e2e {
    char dir[64];
    char sock[128];
    char shm[64];
    char log[128];
    pid_t poold;
};

static int seq;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Spawn argv with stdout (and stderr) to files; returns the pid. */
static pid_t spawn(char *const argv[], const char *out, const char *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (out)
        posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (err)
        posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_APPEND, 0600);
    /* Children start with SIGPIPE at its default, as from a shell (this
     * process ignores it). */
    posix_spawnattr_t at;
    sigset_t def;
    posix_spawnattr_init(&at);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, &at, argv, environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(rc, 0);
    return pid;
}

/* Wait for pid up to `seconds`; returns the exit status or -1 on timeout
 * (then the process is killed). */
static int wait_for(pid_t pid, double seconds)
{
    double end = now_s() + seconds;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (now_s() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return -1;
        }
        sleep_ms(10);
    }
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

static char *slurp_dir(struct e2e *e, const char *name)
{
    char path[200];
    snprintf(path, sizeof(path), "%s/%s", e->dir, name);
    return slurp(path);
}

/* Run a command to completion (bounded); its stdout in *out (malloc'd). */
static int run(char *const argv[], char **out, double seconds)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/poold-e2e-out-%d-%d", (int)getpid(), ++seq);
    pid_t pid = spawn(argv, path, path);
    int rc = wait_for(pid, seconds);
    if (out)
        *out = slurp(path);
    unlink(path);
    return rc;
}

static int poolctl(struct e2e *e, const char *cmd, const char *opt, char **out)
{
    char *argv[] = {POOLCTL_BIN, "--socket", e->sock, (char *)cmd, (char *)opt, NULL};
    return run(argv, out, 10);
}

/* The number after "key": in poolctl's JSON (first match). */
static long long json_num(const char *json, const char *key)
{
    char pat[96];
    snprintf(pat, sizeof(pat), "\"%s\": ", key);
    const char *p = strstr(json, pat);
    if (!p)
        fail_msg("no %s in %s", key, json);
    return strtoll(p + strlen(pat), NULL, 10);
}

static long long stat_num(struct e2e *e, const char *key)
{
    char *out = NULL;
    assert_int_equal(poolctl(e, "stats", "--json", &out), 0);
    long long v = json_num(out, key);
    free(out);
    return v;
}

static void start_poold_args(struct e2e *e, char *const extra[])
{
    char *argv[32] = {POOLD_BIN, "--socket", e->sock, "--shm-name", e->shm, "--log-level", "debug"};
    int n = 7;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    e->poold = spawn(argv, NULL, e->log);
    double end = now_s() + 10;
    while (now_s() < end) {
        if (poolctl(e, "ping", NULL, NULL) == 0)
            return;
        int status;
        if (waitpid(e->poold, &status, WNOHANG) == e->poold) {
            char *l = slurp(e->log);
            fail_msg("poold exited at start:\n%s", l);
        }
        sleep_ms(20);
    }
    fail_msg("poold did not answer within 10 s");
}

static void stop_poold(struct e2e *e)
{
    if (e->poold > 0) {
        kill(e->poold, SIGTERM);
        assert_int_equal(wait_for(e->poold, 10), 0);
        e->poold = 0;
    }
}

/* The books at rest, by walking: with poold stopped, the segment's lists,
 * caches and owner bytes are held to its counters (pshm_check), and
 * nothing is in use, in transit or attached. poolctl's figures come from
 * the counters alone, which a lost or doubly handed-out block leaves
 * consistent with each other. */
static void assert_books_idle(const struct e2e *e)
{
    char err[256];
    void *base = NULL;
    uint64_t bytes = 0;
    assert_int_equal(e->poold, 0);
    if (pshm_os_open(e->shm, &base, &bytes, err, sizeof(err)) != 0)
        fail_msg("cannot open %s: %s", e->shm, err);
    pshm_seg_t seg;
    if (pshm_view(&seg, base, bytes, err, sizeof(err)) != 0)
        fail_msg("cannot view %s: %s", e->shm, err);
    int rc = pshm_check(&seg, err, sizeof(err));
    if (rc != 0)
        fail_msg("books not exact at rest: %s", err);
    pshm_stats_t st;
    pshm_stats(&seg, &st);
    for (uint32_t c = 0; c < st.nclasses; c++) {
        assert_int_equal(st.cls[c].blocks_in_use, 0);
        assert_int_equal(st.cls[c].blocks_in_transit, 0);
    }
    assert_int_equal(st.procs_attached, 0);
    pshm_os_unmap(base, bytes);
}

static int setup(void **state)
{
    struct e2e *e = calloc(1, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/poold-e2e-%d-%d", (int)getpid(), ++seq);
    mkdir(e->dir, 0700);
    snprintf(e->sock, sizeof(e->sock), "%s/poold.sock", e->dir);
    snprintf(e->log, sizeof(e->log), "%s/poold.log", e->dir);
    snprintf(e->shm, sizeof(e->shm), "/poold-e2e-%d-%d", (int)getpid(), seq);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct e2e *e = *state;
    if (e->poold > 0) {
        kill(e->poold, SIGKILL);
        waitpid(e->poold, NULL, 0);
    }
    shm_unlink(e->shm);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", e->dir);
    free(e);
    return 0;
}

static pid_t start_worker_rounds(struct e2e *e, const char *out, const char *iters_flag,
                                 const char *iters, const char *hold, const char *rounds,
                                 const char *burst)
{
    char *argv[] = {WORKER_BIN,     "--socket", e->sock,       (char *)iters_flag,
                    (char *)iters,  "--hold",   (char *)hold,  "--rounds",
                    (char *)rounds, "--burst",  (char *)burst, NULL};
    return spawn(argv, out, out);
}

static pid_t start_worker(struct e2e *e, const char *out, const char *iters_flag, const char *iters,
                          const char *hold)
{
    return start_worker_rounds(e, out, iters_flag, iters, hold, "2000", "0");
}

static long long worker_field(const char *out_path, const char *key)
{
    char *s = slurp(out_path);
    char pat[32];
    snprintf(pat, sizeof(pat), " %s=", key);
    char *p = strstr(s, pat);
    if (!p)
        fail_msg("worker output lacks %s: %s", key, s);
    long long v = strtoll(p + strlen(pat), NULL, 10);
    free(s);
    return v;
}

/* ---- tests ---- */

static void test_e2e_workers_counts_match_stats(void **state)
{
    struct e2e *e = *state;
    start_poold_args(e, NULL);
    enum { N = 3 };
    char outs[N][160];
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        snprintf(outs[i], sizeof(outs[i]), "%s/w%d.out", e->dir, i);
        pids[i] = start_worker(e, outs[i], "--iterations", "5", i ? "8" : "0");
    }
    long long allocs = 0, frees = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(wait_for(pids[i], 120), 0);
        assert_int_equal(worker_field(outs[i], "errors"), 0);
        assert_int_equal(worker_field(outs[i], "shared"), 1);
        allocs += worker_field(outs[i], "allocs");
        frees += worker_field(outs[i], "frees");
    }
    assert_int_equal(allocs, N * 5 * 10 * 2000);
    assert_int_equal(stat_num(e, "allocations_total"), allocs);
    assert_int_equal(stat_num(e, "frees_total"), frees);
    assert_true(stat_num(e, "reuses_total") > 0);
    assert_true(stat_num(e, "same_address_total") > allocs / 2);
    assert_int_equal(stat_num(e, "procs_attached"), 0);
    assert_int_equal(stat_num(e, "bytes_in_use"), 0);
    /* The human table names every used class. */
    char *table = NULL;
    assert_int_equal(poolctl(e, "stats", NULL, &table), 0);
    assert_non_null(strstr(table, "2048"));
    assert_non_null(strstr(table, "TOTAL"));
    free(table);
    char *prom = NULL;
    assert_int_equal(poolctl(e, "stats", "--prometheus", &prom), 0);
    assert_non_null(strstr(prom, "poold_allocations_total "));
    assert_non_null(strstr(prom, "poold_class_allocs_total{size=\"64\"}"));
    free(prom);
    stop_poold(e);
    assert_books_idle(e);
}

static void test_e2e_sigkill_worker_caches_come_back(void **state)
{
    struct e2e *e = *state;
    start_poold_args(e, NULL);
    char out[160];
    snprintf(out, sizeof(out), "%s/killed.out", e->dir);
    /* Long-lived threads, each with a burst of blocks in its cache, when
     * the worker dies. */
    pid_t w = start_worker_rounds(e, out, "--seconds", "60", "8", "100000000", "16");
    /* Wait until it is attached, its ten threads are past their bursts and
     * each holds its 8 blocks (a slow machine, or TSan, starts ten threads
     * in more than a moment): 80 in use, and one in flight per thread. */
    char want[48];
    snprintf(want, sizeof(want), "\"key\": \"proc_%d\"", (int)w);
    double end = now_s() + 20;
    for (;;) {
        char *procs = NULL;
        assert_int_equal(poolctl(e, "procs", "--json", &procs), 0);
        const char *mine = strstr(procs, want);
        long long in_use = mine ? json_num(mine, "in_use") : 0;
        bool held =
            mine && json_num(mine, "threads") == 10 && in_use >= 10 * 8 && in_use <= 10 * 8 + 10;
        free(procs);
        if (held)
            break;
        assert_true(now_s() < end);
        sleep_ms(20);
    }
    sleep_ms(100);
    double t_kill = now_s();
    kill(w, SIGKILL);
    waitpid(w, NULL, 0);
    while (stat_num(e, "procs_reclaimed_total") != 1) {
        assert_true(now_s() < t_kill + 5);
        sleep_ms(5);
    }
    double took = now_s() - t_kill;
    print_message("reclaimed %.0f ms after SIGKILL\n", took * 1000);
    char *json = NULL;
    assert_int_equal(poolctl(e, "stats", "--json", &json), 0);
    long long orphaned = json_num(json, "blocks_orphaned_total");
    long long back = json_num(json, "blocks_reclaimed_in_use_total");
    long long in_use_total = 0;
    /* Per class: free + in use == carved, and nothing cached any more. */
    const char *p = json;
    while ((p = strstr(p, "{\"key\": \"class_")) != NULL) {
        long long carved = json_num(p, "carved"), free_ = json_num(p, "free");
        long long in_use = json_num(p, "in_use"), cached = json_num(p, "cached");
        assert_int_equal(cached, 0);
        assert_int_equal(free_ + in_use, carved);
        in_use_total += in_use;
        p++;
    }
    print_message("reclaimed %lld in-use and %lld cached blocks, %lld kept\n", back,
                  json_num(json, "blocks_reclaimed_total"), orphaned);
    /* Every block it held came back: none in use, none kept. */
    assert_int_equal(in_use_total, 0);
    assert_int_equal(orphaned, 0);
    assert_true(back >= 10 * 8 && back <= 10 * 8 + 10); /* the held blocks */
    /* Each thread cached its burst of 16, less the 8 it holds and the one
     * in flight: 7 or 8 per thread, all of it came back. */
    assert_true(json_num(json, "blocks_reclaimed_total") >= 10 * 7);
    assert_int_equal(json_num(json, "procs_attached"), 0);
    free(json);
    char *log = slurp(e->log);
    assert_non_null(strstr(log, "reclaimed pid"));
    free(log);
    /* Nothing lost, by a walk of the segment at rest. */
    stop_poold(e);
    assert_books_idle(e);
    /* The totals live in the segment: a restarted poold still reports them. */
    start_poold_args(e, NULL);
    assert_int_equal(stat_num(e, "blocks_reclaimed_in_use_total"), back);
    assert_int_equal(stat_num(e, "procs_reclaimed_total"), 1);
    stop_poold(e);
}

static void test_e2e_restart_poold_while_workers_allocate(void **state)
{
    struct e2e *e = *state;
    start_poold_args(e, NULL);
    enum { N = 2 };
    char outs[N][160];
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        snprintf(outs[i], sizeof(outs[i]), "%s/r%d.out", e->dir, i);
        pids[i] = start_worker(e, outs[i], "--seconds", "4", "4");
    }
    sleep_ms(1000);
    stop_poold(e); /* workers keep allocating with no poold */
    sleep_ms(700);
    start_poold_args(e, NULL);
    long long allocs = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(wait_for(pids[i], 60), 0);
        assert_int_equal(worker_field(outs[i], "errors"), 0);
        allocs += worker_field(outs[i], "allocs");
    }
    print_message("workers made %lld allocations across the restart\n", allocs);
    /* The counters live in the segment: nothing was lost across poolds. */
    assert_int_equal(stat_num(e, "allocations_total"), allocs);
    assert_int_equal(stat_num(e, "frees_total"), allocs);
    assert_int_equal(stat_num(e, "procs_reclaimed_total"), 0);
    assert_int_equal(stat_num(e, "daemon_gen"), 2);
    char *log = slurp(e->log);
    assert_non_null(strstr(log, "adopted segment"));
    free(log);
    stop_poold(e);
    assert_books_idle(e);
}

static int connect_sock(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Read what the server sends until `ms` pass without data or it closes;
 * returns bytes read, *closed set on EOF. */
static size_t read_some(int fd, char *buf, size_t cap, int ms, bool *closed)
{
    size_t n = 0;
    *closed = false;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms) <= 0)
            break;
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r <= 0) {
            *closed = true;
            break;
        }
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

static void test_e2e_garbage_on_socket_disturbs_nobody(void **state)
{
    struct e2e *e = *state;
    start_poold_args(e, NULL);
    char out[160];
    snprintf(out, sizeof(out), "%s/g.out", e->dir);
    pid_t w = start_worker(e, out, "--seconds", "3", "4");
    char buf[8192];
    bool closed;
    /* Half-open connections: connect and say nothing, or half a line. */
    int idle[8];
    for (int i = 0; i < 8; i++) {
        idle[i] = connect_sock(e->sock);
        if (i % 2)
            assert_int_equal(write(idle[i], "PIN", 3), 3);
    }
    /* Garbage lines get an ERR each and the connection stays usable. */
    int g = connect_sock(e->sock);
    const char garbage[] = "\x01\x02\xff\xfe\n"
                           "FLY me to the moon\n"
                           "HELLO abi=banana pid=-3\n"
                           "STATS extra\n"
                           "\n"
                           "PING\n";
    assert_int_equal(write(g, garbage, sizeof(garbage) - 1), (ssize_t)sizeof(garbage) - 1);
    read_some(g, buf, sizeof(buf), 300, &closed);
    assert_false(closed);
    int errs = 0;
    for (const char *p = buf; (p = strstr(p, "ERR ")) != NULL; p++)
        errs++;
    assert_int_equal(errs, 5);
    assert_non_null(strstr(buf, "OK pong"));
    /* An oversized line: ERR line-too-long, then the server closes. */
    int big = connect_sock(e->sock);
    char huge[5000];
    memset(huge, 'A', sizeof(huge));
    assert_int_equal(write(big, huge, sizeof(huge)), (ssize_t)sizeof(huge));
    read_some(big, buf, sizeof(buf), 2000, &closed);
    assert_non_null(strstr(buf, "ERR line-too-long"));
    assert_true(closed);
    /* Others are undisturbed: poolctl works, the worker finishes clean. */
    assert_int_equal(poolctl(e, "ping", NULL, NULL), 0);
    assert_int_equal(wait_for(w, 60), 0);
    assert_int_equal(worker_field(out, "errors"), 0);
    for (int i = 0; i < 8; i++)
        close(idle[i]);
    close(g);
    close(big);
    assert_int_equal(poolctl(e, "ping", NULL, NULL), 0);
    stop_poold(e);
}

static void test_e2e_foreign_segment_refused(void **state)
{
    struct e2e *e = *state;
    int fd = shm_open(e->shm, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    char junk[8192];
    memset(junk, 0x5a, sizeof(junk));
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    char *argv[] = {POOLD_BIN, "--socket", e->sock, "--shm-name", e->shm, NULL};
    pid_t p = spawn(argv, NULL, e->log);
    assert_int_equal(wait_for(p, 10), 1);
    char *log = slurp(e->log);
    assert_non_null(strstr(log, "foreign"));
    free(log);
    /* Left as it was. */
    fd = shm_open(e->shm, O_RDONLY, 0);
    assert_true(fd >= 0);
    char back[8192];
    assert_int_equal(read(fd, back, sizeof(back)), (ssize_t)sizeof(back));
    assert_memory_equal(back, junk, sizeof(junk));
    close(fd);
}

static void test_e2e_second_poold_on_one_segment_refused(void **state)
{
    struct e2e *e = *state;
    start_poold_args(e, NULL);
    char sock2[160], log2[160];
    snprintf(sock2, sizeof(sock2), "%s/other.sock", e->dir);
    snprintf(log2, sizeof(log2), "%s/other.log", e->dir);
    char *argv[] = {POOLD_BIN, "--socket", sock2, "--shm-name", e->shm, NULL};
    pid_t p = spawn(argv, NULL, log2);
    assert_int_equal(wait_for(p, 10), 1);
    char *log = slurp(log2);
    assert_non_null(strstr(log, "another poold"));
    free(log);
    /* The first one is undisturbed. */
    assert_int_equal(poolctl(e, "ping", NULL, NULL), 0);
    assert_int_equal(stat_num(e, "daemon_gen"), 1);
    stop_poold(e);
}

static void test_e2e_slots_full_and_missing_daemon(void **state)
{
    struct e2e *e = *state;
    char *extra[] = {"--max-procs", "2", NULL}; /* poold holds one */
    start_poold_args(e, extra);
    char out1[160], out2[160];
    snprintf(out1, sizeof(out1), "%s/s1.out", e->dir);
    snprintf(out2, sizeof(out2), "%s/s2.out", e->dir);
    pid_t a = start_worker(e, out1, "--seconds", "2", "0");
    double end = now_s() + 10;
    while (stat_num(e, "procs_attached") != 1)
        assert_true(now_s() < end), sleep_ms(10);
    pid_t b = start_worker(e, out2, "--iterations", "1", "0");
    assert_int_equal(wait_for(b, 30), 3);
    char *msg = slurp(out2);
    assert_non_null(strstr(msg, "slots-full"));
    free(msg);
    assert_int_equal(wait_for(a, 30), 0);
    stop_poold(e);
    /* No poold at all: a clear error and exit code 3. */
    char *s = NULL;
    assert_int_equal(poolctl(e, "stats", NULL, &s), 3);
    assert_non_null(strstr(s, "cannot reach poold at"));
    assert_non_null(strstr(s, "no socket there: start poold"));
    free(s);
}

static void test_e2e_metrics_endpoint(void **state)
{
    struct e2e *e = *state;
    /* A free loopback port. */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(probe, (struct sockaddr *)&sa, sizeof(sa)), 0);
    getsockname(probe, (struct sockaddr *)&sa, &sl);
    close(probe);
    char hostport[64];
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", ntohs(sa.sin_port));
    char *extra[] = {"--metrics", hostport, NULL};
    start_poold_args(e, extra);
    char out[160];
    snprintf(out, sizeof(out), "%s/m.out", e->dir);
    pid_t w = start_worker(e, out, "--iterations", "2", "0");
    assert_int_equal(wait_for(w, 60), 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char req[] = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    static char buf[1 << 18];
    bool closed;
    read_some(fd, buf, sizeof(buf), 2000, &closed);
    close(fd);
    assert_non_null(strstr(buf, "200"));
    assert_non_null(strstr(buf, "text/plain; version=0.0.4"));
    char want[64];
    snprintf(want, sizeof(want), "poold_allocations_total %d", 2 * 10 * 2000);
    assert_non_null(strstr(buf, want));
    stop_poold(e);
}

/* ---- poolctl's tables, --json and the Prometheus lint ---- */

/* Run a /bin/sh script (bounded); its stdout and stderr in *out. */
static int sh(const char *script, char **out)
{
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    return run(argv, out, 60);
}

static bool have_cmd(const char *cmd)
{
    char script[128];
    snprintf(script, sizeof(script), "command -v %s >/dev/null 2>&1", cmd);
    return sh(script, NULL) == 0;
}

/* `poolctl ARGS --json` is valid JSON: python3 -m json.tool takes it. */
static void assert_json_parses(struct e2e *e, const char *args)
{
    if (!have_cmd("python3"))
        fail_msg("python3 is needed to check poolctl's JSON (bash scripts/deps.sh installs it)");
    char script[512];
    char *said = NULL;
    snprintf(script, sizeof(script),
             "'%s' --socket '%s' %s >'%s/j.json' && python3 -m json.tool "
             "<'%s/j.json' >/dev/null",
             POOLCTL_BIN, e->sock, args, e->dir, e->dir);
    int rc = sh(script, &said);
    if (rc != 0)
        fail_msg("poolctl %s is not valid JSON (%d): %s\n%s", args, rc, said,
                 slurp_dir(e, "j.json"));
    free(said);
}

/* The lines of a table are equally long: its columns line up. Returns the
 * number of lines. */
static int assert_aligned(const char *table)
{
    size_t width = 0;
    int n = 0;
    for (const char *p = table; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        size_t len = (size_t)(nl - p);
        if (n == 0)
            width = len;
        else if (len != width)
            fail_msg("line %d is %zu wide, the header %zu:\n%s", n + 1, len, width, table);
        n++;
        p = nl + 1;
    }
    return n;
}

/* The value of sub-key `key` in a row "class_8:size=8,batch=32", or -1. */
static long long subval(const char *row, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = strstr(row, key); p; p = strstr(p + 1, key))
        if ((p[-1] == ':' || p[-1] == ',') && p[kl] == '=')
            return strtoll(p + kl + 1, NULL, 10);
    return -1;
}

/* Send one verb on the control socket, read the reply through END. */
static char *raw_request(struct e2e *e, const char *verb)
{
    int fd = connect_sock(e->sock);
    char line[32];
    int n = snprintf(line, sizeof(line), "%s\n", verb);
    assert_int_equal(write(fd, line, (size_t)n), n);
    static char buf[1 << 16];
    size_t len = 0;
    double end = now_s() + 5;
    while (!strstr(buf, "\nEND\n") && now_s() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = read(fd, buf + len, sizeof(buf) - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = '\0';
    }
    close(fd);
    assert_non_null(strstr(buf, "\nEND\n"));
    return strdup(buf);
}

/* Blocks of `size` bytes in a span of `span` bytes, as docs/stats.md says:
 * a class with more than 64 blocks per span keeps its owner bytes (one per
 * block start) at the span's tail, so it fits a few blocks fewer. */
static long long blocks_per_span(long long span, long long size)
{
    if (span / size > 64)
        span -= span / size;
    return span / size;
}

static void test_e2e_poolctl_procs_and_classes_tables(void **state)
{
    struct e2e *e = *state;
    char *extra[] = {"--classes", "64,256,4096", NULL};
    start_poold_args(e, extra);
    char out[160];
    snprintf(out, sizeof(out), "%s/t.out", e->dir);
    pid_t w = start_worker(e, out, "--seconds", "60", "4");
    char want[64];
    snprintf(want, sizeof(want), "\"pid\": %d,", (int)w);
    double end = now_s() + 10;
    for (;;) {
        char *procs = NULL;
        assert_int_equal(poolctl(e, "procs", "--json", &procs), 0);
        bool seen = strstr(procs, want) != NULL;
        free(procs);
        if (seen)
            break;
        assert_true(now_s() < end);
        sleep_ms(20);
    }

    /* procs: a header and one aligned row for the worker. */
    char *t = NULL;
    assert_int_equal(poolctl(e, "procs", NULL, &t), 0);
    print_message("%s", t);
    const char *heads[] = {"PID",   "NAME",   "SLOT",   "THREADS", "ALLOCS",
                           "FREES", "IN USE", "CACHED", "MISS",    "CONN"};
    const char *nl = strchr(t, '\n');
    assert_non_null(nl);
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        const char *h = strstr(t, heads[i]);
        assert_true(h != NULL && h < nl);
    }
    assert_int_equal(assert_aligned(t), 2);
    long long pid = 0, slot = -1;
    char name[32] = "";
    assert_int_equal(sscanf(nl + 1, "%lld %31s %lld", &pid, name, &slot), 3);
    assert_int_equal(pid, w);
    assert_string_equal(name, "pool_worker");
    /* poold holds a slot of its own (slot 0 of the segment it created),
     * never listed: the worker has another. */
    assert_true(slot > 0);
    assert_non_null(strstr(nl, " yes\n"));
    free(t);
    /* procs --json: valid, and the worker's figures. */
    assert_json_parses(e, "procs --json");
    assert_int_equal(poolctl(e, "procs", "--json", &t), 0);
    assert_non_null(strstr(t, "\"processes\": ["));
    assert_int_equal(json_num(t, "pid"), w);
    assert_int_equal(json_num(t, "slot"), slot);
    assert_int_equal(json_num(t, "connected"), 1);
    assert_true(json_num(t, "allocs") > 0);
    assert_non_null(strstr(t, "\"name\": \"pool_worker\""));
    free(t);

    /* classes: the table and --json say what CLASSES says. */
    char *raw = raw_request(e, "CLASSES");
    assert_int_equal(poolctl(e, "classes", NULL, &t), 0);
    print_message("%s", t);
    nl = strchr(t, '\n');
    assert_non_null(nl);
    const char head[] =
        "SIZE  BLOCKS/SPAN  CACHE CAP  BATCH  OWNER BYTES  LIFE SAMPLES  LIFE P50  LIFE P99\n";
    assert_true(strncmp(t, head, strlen(head)) == 0);
    assert_int_equal(assert_aligned(t), 4);
    char *json = NULL;
    assert_json_parses(e, "classes --json");
    assert_int_equal(poolctl(e, "classes", "--json", &json), 0);
    const char *row = nl + 1;
    const long long sizes[] = {64, 256, 4096};
    for (int i = 0; i < 3; i++) {
        char key[32];
        snprintf(key, sizeof(key), "\nclass_%lld:", sizes[i]);
        const char *r = strstr(raw, key);
        assert_non_null(r);
        long long bps = subval(r, "blocks_per_span"), cap = subval(r, "cache_cap");
        long long batch = subval(r, "batch");
        assert_int_equal(subval(r, "size"), sizes[i]);
        assert_int_equal(bps, blocks_per_span(65536, sizes[i]));
        assert_int_equal(subval(r, "owner_bytes"), 1);
        assert_true(cap > 0 && batch > 0);
        long long c[5];
        assert_int_equal(sscanf(row, "%lld %lld %lld %lld %lld", &c[0], &c[1], &c[2], &c[3], &c[4]),
                         5);
        assert_int_equal(c[0], sizes[i]);
        assert_int_equal(c[1], bps);
        assert_int_equal(c[2], cap);
        assert_int_equal(c[3], batch);
        assert_int_equal(c[4], 1); /* OWNER BYTES */
        row = strchr(row, '\n') + 1;
        snprintf(key, sizeof(key), "\"key\": \"class_%lld\"", sizes[i]);
        const char *o = strstr(json, key);
        assert_non_null(o);
        assert_int_equal(json_num(o, "size"), sizes[i]);
        assert_int_equal(json_num(o, "blocks_per_span"), bps);
        assert_int_equal(json_num(o, "cache_cap"), cap);
        assert_int_equal(json_num(o, "batch"), batch);
        assert_int_equal(json_num(o, "owner_bytes"), 1);
    }
    free(json);
    free(raw);
    free(t);
    kill(w, SIGTERM);
    assert_int_equal(wait_for(w, 30), 0);
    stop_poold(e);
}

/* A stand-in for poold that answers every connection with `reply`. */
static pid_t fake_poold(struct e2e *e, const char *reply, int conns)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(e->sock) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, e->sock, strlen(e->sock) + 1);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(l, 8), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(20); /* never outlive a failed test */
        for (int i = 0; i < conns; i++) {
            int c = accept(l, NULL, NULL);
            if (c < 0)
                _exit(1);
            char req[256];
            if (read(c, req, sizeof(req)) <= 0 ||
                write(c, reply, strlen(reply)) != (ssize_t)strlen(reply))
                _exit(1);
            close(c);
        }
        _exit(0);
    }
    close(l);
    return pid;
}

/* Figures poolctl has no column for (owner_bytes, the owner table's cost
 * per block, and a key poold may add later) show up in the table, after
 * the ones it knows and in the order poold sends them, and in --json, with
 * no change to poolctl. */
static void test_e2e_poolctl_classes_shows_new_keys(void **state)
{
    struct e2e *e = *state;
    pid_t f = fake_poold(e,
                         "OK\n# classes\n"
                         "class_8:size=8,blocks_per_span=7168,owner_bytes=1,cache_cap=64,batch=32,"
                         "future_key=2\n"
                         "class_65536:size=65536,blocks_per_span=1,owner_bytes=1,cache_cap=4,"
                         "batch=2,future_key=16\n"
                         "END\n",
                         3);
    char *t = NULL;
    assert_int_equal(poolctl(e, "classes", NULL, &t), 0);
    print_message("%s", t);
    assert_int_equal(assert_aligned(t), 3);
    const char head[] = " SIZE  BLOCKS/SPAN  CACHE CAP  BATCH  OWNER BYTES  FUTURE KEY\n";
    assert_true(strncmp(t, head, strlen(head)) == 0);
    assert_non_null(strstr(t, "\n    8         7168         64     32            1           2\n"));
    assert_non_null(strstr(t, "\n65536            1          4      2            1          16\n"));
    free(t);
    assert_json_parses(e, "classes --json");
    assert_int_equal(poolctl(e, "classes", "--json", &t), 0);
    const char *o = strstr(t, "\"key\": \"class_65536\"");
    assert_non_null(o);
    assert_int_equal(json_num(o, "owner_bytes"), 1);
    assert_int_equal(json_num(o, "future_key"), 16);
    free(t);
    assert_int_equal(wait_for(f, 10), 0);
}

/* promtool check metrics has nothing to say about `poolctl stats
 * --prometheus` nor about /metrics, with processes attached and orphans
 * reported (every section of STATS rendered). */
static void test_e2e_prometheus_lints_clean(void **state)
{
    struct e2e *e = *state;
    if (!have_cmd("promtool")) {
        print_message("promtool not installed (Debian package prometheus; bash scripts/deps.sh "
                      "installs it): lint skipped\n");
        skip();
    }
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(probe, (struct sockaddr *)&sa, sizeof(sa)), 0);
    getsockname(probe, (struct sockaddr *)&sa, &sl);
    close(probe);
    char hostport[64];
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", ntohs(sa.sin_port));
    char *extra[] = {"--metrics", hostport, NULL};
    start_poold_args(e, extra);
    char out1[160], out2[160];
    snprintf(out1, sizeof(out1), "%s/p1.out", e->dir);
    snprintf(out2, sizeof(out2), "%s/p2.out", e->dir);
    pid_t live = start_worker(e, out1, "--seconds", "60", "4");
    pid_t dies = start_worker(e, out2, "--seconds", "60", "4");
    double end = now_s() + 10;
    while (stat_num(e, "procs_attached") != 2)
        assert_true(now_s() < end), sleep_ms(10);
    kill(dies, SIGKILL);
    waitpid(dies, NULL, 0);
    while (stat_num(e, "procs_reclaimed_total") != 1)
        assert_true(now_s() < end), sleep_ms(10);

    /* poolctl stats --prometheus */
    char path[200], script[600];
    char *text = NULL, *said = NULL;
    snprintf(path, sizeof(path), "%s/prom.txt", e->dir);
    snprintf(script, sizeof(script), "'%s' --socket '%s' stats --prometheus >'%s'", POOLCTL_BIN,
             e->sock, path);
    assert_int_equal(sh(script, NULL), 0);
    text = slurp(path);
    char want[96];
    snprintf(want, sizeof(want), "poold_proc_allocs_total{pid=\"%d\",name=\"pool_worker\"} ",
             (int)live);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof(want), "poold_orphan_blocks{pid=\"%d\"} ", (int)dies);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "# HELP poold_class_allocs_total "));
    free(text);
    snprintf(script, sizeof(script), "promtool check metrics <'%s'", path);
    int rc = sh(script, &said);
    if (rc != 0 || *said)
        fail_msg("promtool check metrics on poolctl stats --prometheus (%d):\n%s", rc, said);
    free(said);

    /* /metrics */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char req[] = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    static char buf[1 << 18];
    bool closed;
    read_some(fd, buf, sizeof(buf), 2000, &closed);
    close(fd);
    char *body = strstr(buf, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    assert_non_null(strstr(body, want)); /* the same renderer: the orphan */
    snprintf(path, sizeof(path), "%s/metrics.txt", e->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(body, f);
    fclose(f);
    snprintf(script, sizeof(script), "promtool check metrics <'%s'", path);
    rc = sh(script, &said);
    if (rc != 0 || *said)
        fail_msg("promtool check metrics on /metrics (%d):\n%s", rc, said);
    free(said);
    kill(live, SIGTERM);
    assert_int_equal(wait_for(live, 30), 0);
    stop_poold(e);
}

/* Many processes with long names: the Prometheus text, which repeats a
 * row's labels on each of its samples, is many times the STATS body, and
 * poolctl still renders all of it (and promtool still finds nothing). */
static void test_e2e_poolctl_prometheus_many_procs(void **state)
{
    struct e2e *e = *state;
    enum { PROCS = 64 };
    static char body[1 << 16];
    size_t n = 0;
    n += (size_t)snprintf(body + n, sizeof(body) - n,
                          "OK\n# pool\nprocs_attached:%d\n# processes\n", PROCS);
    for (int i = 0; i < PROCS; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n,
                              "proc_%d:pid=%d,slot=%d,name=%.64s,attached_unix=1764270000,"
                              "uptime_seconds=1,allocs=1,frees=1,cache_misses=0,cached=0,in_use=0,"
                              "threads=1,connected=1\n",
                              1000 + i, 1000 + i, i,
                              "a-worker-with-a-very-long-name-that-fills-all-sixty-four-bytes-x");
    n += (size_t)snprintf(body + n, sizeof(body) - n, "END\n");
    pid_t f = fake_poold(e, body, 1);
    char path[200], script[600];
    snprintf(path, sizeof(path), "%s/many.txt", e->dir);
    snprintf(script, sizeof(script), "'%s' --socket '%s' stats --prometheus >'%s'", POOLCTL_BIN,
             e->sock, path);
    char *said = NULL;
    int rc = sh(script, &said);
    if (rc != 0)
        fail_msg("poolctl stats --prometheus (%d): %s", rc, said);
    free(said);
    assert_int_equal(wait_for(f, 10), 0);
    char *text = slurp(path);
    int samples = 0;
    for (const char *p = text; (p = strstr(p, "\npoold_proc_threads{")) != NULL; p++)
        samples++;
    assert_int_equal(samples, PROCS);
    print_message("%zu bytes of STATS became %zu bytes of Prometheus text\n", (size_t)n,
                  strlen(text));
    assert_true(strlen(text) > 4 * (size_t)n);
    free(text);
    if (have_cmd("promtool")) {
        snprintf(script, sizeof(script), "promtool check metrics <'%s'", path);
        rc = sh(script, &said);
        if (rc != 0 || *said)
            fail_msg("promtool check metrics (%d):\n%s", rc, said);
        free(said);
    }
}

/* A worker that detaches after poold went away must not die of SIGPIPE
 * (BYE on a socket whose peer closed): the library never raises it. */
static void test_e2e_worker_detaches_after_poold_is_gone(void **state)
{
    struct e2e *e = *state;
    start_poold_args(e, NULL);
    char out[160];
    snprintf(out, sizeof(out), "%s/g.out", e->dir);
    pid_t w = start_worker(e, out, "--seconds", "1.5", "0");
    double end = now_s() + 10;
    while (stat_num(e, "procs_attached") != 1)
        assert_true(now_s() < end), sleep_ms(10);
    stop_poold(e);
    assert_int_equal(wait_for(w, 30), 0);
    assert_int_equal(worker_field(out, "errors"), 0);
}

/* ---- systemd's interfaces, outside systemd ---- */

/* Start poold as systemd does: fork; in the child, the listening socket
 * lfd on fd 3 with LISTEN_FDS=1 and LISTEN_PID=<its pid> (when lfd >= 0),
 * and the NAME=VALUE strings of env; then exec poold on e's socket and
 * segment, logging to e->log. */
static pid_t spawn_poold_sd(struct e2e *e, int lfd, char *const env[])
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0)
        return pid;
    signal(SIGPIPE, SIG_DFL);
    int logfd = open(e->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    int nul = open("/dev/null", O_RDONLY);
    if (logfd < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
        _exit(126);
    if (lfd >= 0) {
        /* dup2 onto 3 clears FD_CLOEXEC; fd 3 itself needs it cleared. */
        if (lfd == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(lfd, 3) < 0)
            _exit(126);
        char pidbuf[24];
        snprintf(pidbuf, sizeof(pidbuf), "%d", (int)getpid());
        if (setenv("LISTEN_FDS", "1", 1) < 0 || setenv("LISTEN_PID", pidbuf, 1) < 0)
            _exit(126);
    }
    for (size_t i = 0; env && env[i]; i++)
        if (putenv(env[i]) != 0)
            _exit(126);
    execl(POOLD_BIN, POOLD_BIN, "--socket", e->sock, "--shm-name", e->shm, "--log-level", "debug",
          (char *)NULL);
    _exit(127);
}

/* A socket bound to path, as a socket unit makes it: `type`, mode 0640,
 * listening when `listening`. */
static int bind_sock(const char *path, int type, bool listening)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(chmod(path, 0640), 0);
    if (listening)
        assert_int_equal(listen(fd, 16), 0);
    return fd;
}

static void wait_ping(struct e2e *e)
{
    double end = now_s() + 10;
    while (poolctl(e, "ping", NULL, NULL) != 0) {
        int status;
        if (waitpid(e->poold, &status, WNOHANG) == e->poold) {
            e->poold = 0;
            char *l = slurp(e->log);
            fail_msg("poold exited at start:\n%s", l);
        }
        if (now_s() > end)
            fail_msg("poold did not answer within 10 s");
        sleep_ms(20);
    }
}

static void test_e2e_socket_from_systemd_queues_attaches(void **state)
{
    struct e2e *e = *state;
    int lfd = bind_sock(e->sock, SOCK_STREAM, true);
    struct stat st0, st;
    assert_int_equal(stat(e->sock, &st0), 0);
    e->poold = spawn_poold_sd(e, lfd, NULL);
    wait_ping(e);
    char *log = slurp(e->log);
    assert_non_null(strstr(log, "handed over by systemd"));
    free(log);
    /* poold left the socket unit's mode alone (its own would be 0600). */
    assert_int_equal(stat(e->sock, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(st.st_ino, st0.st_ino);
    stop_poold(e);
    /* ... and did not unlink it at exit. */
    assert_int_equal(stat(e->sock, &st), 0);
    assert_int_equal(st.st_ino, st0.st_ino);

    /* No poold now: an attach queues on the socket instead of failing with
     * ECONNREFUSED, and succeeds once the next poold takes the socket. */
    char out[160];
    snprintf(out, sizeof(out), "%s/q.out", e->dir);
    pid_t w = start_worker(e, out, "--iterations", "1", "0");
    sleep_ms(500);
    assert_int_equal(waitpid(w, NULL, WNOHANG), 0); /* still waiting */
    e->poold = spawn_poold_sd(e, lfd, NULL);
    assert_int_equal(wait_for(w, 30), 0);
    assert_int_equal(worker_field(out, "errors"), 0);
    assert_int_equal(stat_num(e, "daemon_gen"), 2);
    stop_poold(e);
    close(lfd);
}

/* A poold that stops right after accepting a worker closes it unanswered;
 * the worker connects again and, the socket being held (as systemd does),
 * is served by the next poold. */
static void test_e2e_hello_closed_unanswered_is_retried(void **state)
{
    struct e2e *e = *state;
    int lfd = bind_sock(e->sock, SOCK_STREAM, true);
    char out[160];
    snprintf(out, sizeof(out), "%s/u.out", e->dir);
    pid_t w = start_worker(e, out, "--iterations", "1", "0");
    /* The stopping poold: accept, read nothing, close. */
    int c = accept(lfd, NULL, NULL);
    assert_true(c >= 0);
    close(c);
    e->poold = spawn_poold_sd(e, lfd, NULL);
    assert_int_equal(wait_for(w, 30), 0);
    assert_int_equal(worker_field(out, "errors"), 0);
    stop_poold(e);
    close(lfd);
}

static void test_e2e_socket_from_systemd_must_be_listening_stream(void **state)
{
    struct e2e *e = *state;
    /* A datagram socket, then a stream socket that does not listen. */
    for (int i = 0; i < 2; i++) {
        int fd = bind_sock(e->sock, i == 0 ? SOCK_DGRAM : SOCK_STREAM, false);
        e->poold = spawn_poold_sd(e, fd, NULL);
        assert_int_equal(wait_for(e->poold, 10), 1);
        e->poold = 0;
        char *log = slurp(e->log);
        assert_non_null(strstr(log, "is not a listening AF_UNIX stream socket"));
        free(log);
        assert_int_equal(unlink(e->log), 0);
        /* Refused without touching the path. */
        struct stat st;
        assert_int_equal(stat(e->sock, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0640);
        close(fd);
        assert_int_equal(unlink(e->sock), 0);
    }
}

/* Count the WATCHDOG=1 datagrams on nfd for ms milliseconds; *ready set
 * when READY=1 came. */
static int count_pings(int nfd, int ms, bool *ready)
{
    int n = 0;
    double end = now_s() + ms / 1000.0;
    for (;;) {
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0)
            break;
        struct pollfd p = {.fd = nfd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            continue;
        char buf[4096];
        ssize_t r = recv(nfd, buf, sizeof(buf) - 1, 0);
        if (r <= 0)
            continue;
        buf[r] = '\0';
        for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
            if (strcmp(l, "WATCHDOG=1") == 0)
                n++;
            else if (ready && strcmp(l, "READY=1") == 0)
                *ready = true;
        }
    }
    return n;
}

static void test_e2e_watchdog_pings_only_while_the_loop_runs(void **state)
{
    struct e2e *e = *state;
    char npath[128];
    snprintf(npath, sizeof(npath), "%s/notify", e->dir);
    int nfd = bind_sock(npath, SOCK_DGRAM, false);
    char env_notify[160];
    snprintf(env_notify, sizeof(env_notify), "NOTIFY_SOCKET=%s", npath);
    char *env[] = {env_notify, "WATCHDOG_USEC=200000", NULL};
    e->poold = spawn_poold_sd(e, -1, env);
    bool ready = false;
    /* Counted from READY=1: poold's start (slow under a sanitizer on a busy
     * machine) is not the loop's time. */
    for (int i = 0; i < 100 && !ready; i++)
        count_pings(nfd, 100, &ready);
    assert_true(ready);
    /* 200 ms watchdog: a ping every 100 ms. */
    int n = count_pings(nfd, 1500, NULL);
    print_message("%d pings in 1.5 s after READY=1\n", n);
    assert_in_range(n, 8, 20);
    /* A loop that does not run sends nothing. */
    assert_int_equal(kill(e->poold, SIGSTOP), 0);
    sleep_ms(50);
    /* Drain what was sent before the stop: on a loaded machine this test
     * can be descheduled between its last count and the SIGSTOP while
     * poold's timer fires. count_pings() with 0 ms would read nothing. */
    char junk[4096];
    while (recv(nfd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
        ;
    n = count_pings(nfd, 600, NULL);
    assert_int_equal(n, 0);
    assert_int_equal(kill(e->poold, SIGCONT), 0);
    n = count_pings(nfd, 600, NULL);
    assert_true(n >= 3);
    stop_poold(e);
    char *log = slurp(e->log);
    assert_non_null(strstr(log, "systemd watchdog: 200 ms, WATCHDOG=1 every 100 ms"));
    free(log);
    close(nfd);
}

/* ---- a corrupt pool is detected, not served ---- */

/* Scribble on e's segment: the central head of class 0 (8 B, which the
 * workers here never use) points past the data, and an owner byte of a
 * carved span names no slot. */
static void corrupt_segment(struct e2e *e)
{
    char err[256];
    void *base;
    uint64_t bytes;
    assert_int_equal(pshm_os_open(e->shm, &base, &bytes, err, sizeof(err)), 0);
    pshm_seg_t s;
    assert_int_equal(pshm_view(&s, base, bytes, err, sizeof(err)), 0);
    assert_int_equal(s.block_size[0], 8);
    pa_store_relaxed(&s.cls[0].central.w, PSHM_HEAD_WORD(0, (uint32_t)(s.data_end >> 3) + 7));
    pa_add_relaxed(&s.cls[0].central.gen, 1);
    for (uint32_t n = 0; n < s.nspans; n++) {
        uint32_t c = pa_load_relaxed(&s.spanmap[n]);
        if (c >= s.nclasses)
            continue;
        uint64_t off = s.data_off + ((uint64_t)n << s.span_shift) +
                       (uint64_t)(s.blocks_per_span[c] - 1) * s.block_size[c];
        pa_store_relaxed(pshm_owner(&s, c, off), 0x80);
        break;
    }
    pshm_os_unmap(base, bytes);
}

static int count_lines_with(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)) != NULL; p++)
        n++;
    return n;
}

static void test_e2e_corrupt_segment_detected_and_refused(void **state)
{
    struct e2e *e = *state;
    start_poold_args(e, NULL);
    assert_int_equal(stat_num(e, "corrupt"), 0);
    char out1[160], out2[160];
    snprintf(out1, sizeof(out1), "%s/c1.out", e->dir);
    snprintf(out2, sizeof(out2), "%s/c2.out", e->dir);
    pid_t a = start_worker(e, out1, "--seconds", "4", "8");
    double end = now_s() + 10;
    while (stat_num(e, "procs_attached") != 1)
        assert_true(now_s() < end), sleep_ms(10);
    sleep_ms(300); /* spans carved */
    corrupt_segment(e);
    double t0 = now_s();
    end = t0 + 10;
    while (stat_num(e, "corrupt") != 1)
        assert_true(now_s() < end), sleep_ms(50);
    print_message("corruption reported %.2f s after it was made\n", now_s() - t0);
    assert_true(stat_num(e, "corruptions_total") >= 1);
    /* poolctl's table says so; STATS keeps answering. */
    char *t = NULL;
    assert_int_equal(poolctl(e, "stats", NULL, &t), 0);
    assert_non_null(strstr(t, "CORRUPT: poold found the segment corrupt"));
    free(t);
    /* A new worker is handed nothing: its HELLO is refused. */
    pid_t b = start_worker(e, out2, "--iterations", "1", "0");
    assert_int_equal(wait_for(b, 30), 3);
    char *msg = slurp(out2);
    assert_non_null(strstr(msg, "corrupt"));
    free(msg);
    /* The worker that was attached kept its blocks to itself: every tag
     * it checked was intact. */
    assert_int_equal(wait_for(a, 30), 0);
    assert_int_equal(worker_field(out1, "errors"), 0);
    /* The log says what and where, rate-limited (one line per 10 s, and
     * the first finding's recovery advice). */
    sleep_ms(2500);
    char *log = slurp(e->log);
    assert_non_null(strstr(log, "is corrupt"));
    assert_non_null(strstr(log, "class 0 (8 B): central list node"));
    int lines = count_lines_with(log, "is corrupt (");
    double secs = now_s() - t0;
    print_message("%d corruption lines in %.1f s, %lld findings\n", lines, secs,
                  stat_num(e, "corruptions_total"));
    assert_true(lines <= 1 + (int)(secs / 10) + 1);
    assert_true(stat_num(e, "corruptions_total") > lines);
    free(log);
    /* A poold started on the corrupt segment says so at adoption. */
    stop_poold(e);
    start_poold_args(e, NULL);
    assert_int_equal(stat_num(e, "corrupt"), 1);
    log = slurp(e->log);
    assert_non_null(strstr(log, "at adoption"));
    free(log);
    stop_poold(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_e2e_corrupt_segment_detected_and_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_e2e_workers_counts_match_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_e2e_sigkill_worker_caches_come_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_e2e_restart_poold_while_workers_allocate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_e2e_garbage_on_socket_disturbs_nobody, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_e2e_foreign_segment_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_e2e_second_poold_on_one_segment_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_e2e_slots_full_and_missing_daemon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_e2e_metrics_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_e2e_poolctl_procs_and_classes_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_e2e_poolctl_classes_shows_new_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_e2e_prometheus_lints_clean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_e2e_poolctl_prometheus_many_procs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_e2e_worker_detaches_after_poold_is_gone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_e2e_socket_from_systemd_queues_attaches, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_e2e_hello_closed_unanswered_is_retried, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_e2e_socket_from_systemd_must_be_listening_stream,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_e2e_watchdog_pings_only_while_the_loop_runs, setup,
                                        teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
