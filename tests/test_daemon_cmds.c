/* SPDX-License-Identifier: MIT */
/*
 * test_daemon_cmds: poold's command handlers, registry and segment adoption,
 * driven in-process: the test owns an event_base, wraps one end of a
 * socketpair (or a real connection to a temporary listener) as a poold
 * connection, writes requests on the other end and pumps the loop until the
 * reply is read. Covers every verb, the HELLO refusals (abi-mismatch,
 * permission-denied for a foreign pid and for another uid, slots-full,
 * already-attached), malformed and oversized lines, isolation between
 * connections, the STATS keys of docs/stats.md, crash reclaim by EOF and
 * pidfd, adoption of an existing segment and refusal of a foreign one.
 * Segments are named /poold-test-<pid>-N and unlinked in teardown.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "poold.h"
#include "pshm_layout.h"

/* The ABI version requests name, as text for literal requests. */
#define TEST_ABI "9"
_Static_assert(PSHM_ABI_VERSION == 9, "update TEST_ABI to PSHM_ABI_VERSION");

typedef struct st {
    struct event_base *base;
    pd_server_t srv;
    char shm[64];
    char dir[64];
    bool have_srv;
} st_t;

static st_t *cur;
static int seq;
static char err[512];

static void make_name(char *out, size_t cap)
{
    snprintf(out, cap, "/poold-test-%d-%d", (int)getpid(), ++seq);
}

static void base_cfg(st_t *st, pd_config_t *cfg, uint32_t max_procs)
{
    pd_config_defaults(cfg);
    snprintf(cfg->shm_name, sizeof(cfg->shm_name), "%s", st->shm);
    snprintf(cfg->socket, sizeof(cfg->socket), "%s/poold.sock", st->dir);
    cfg->size = 4u << 20;
    cfg->max_threads = 8;
    cfg->max_procs = max_procs;
    cfg->log_level = PD_LOG_ERROR;
    pd_log_set_level(getenv("PD_TEST_LOG") ? PD_LOG_DEBUG : PD_LOG_ERROR);
}

/* A fixture; the segment may already exist (adoption tests). */
static st_t *mk_cfg(const pd_config_t *cfg_in, const char *shm, int *rc_out)
{
    st_t *st = calloc(1, sizeof(*st));
    assert_non_null(st);
    cur = st;
    snprintf(st->dir, sizeof(st->dir), "/tmp/pdtest-XXXXXX");
    assert_non_null(mkdtemp(st->dir));
    if (shm)
        snprintf(st->shm, sizeof(st->shm), "%s", shm);
    else
        make_name(st->shm, sizeof(st->shm));
    st->base = event_base_new();
    assert_non_null(st->base);
    pd_config_t cfg;
    if (cfg_in)
        cfg = *cfg_in;
    else
        base_cfg(st, &cfg, 8);
    snprintf(cfg.shm_name, sizeof(cfg.shm_name), "%s", st->shm);
    snprintf(cfg.socket, sizeof(cfg.socket), "%s/poold.sock", st->dir);
    assert_int_equal(pd_server_init(&st->srv, &cfg, st->base, err, sizeof(err)), 0);
    st->have_srv = true;
    int rc = pd_segment_open(&st->srv, err, sizeof(err));
    if (rc_out)
        *rc_out = rc;
    else if (rc < 0)
        fail_msg("pd_segment_open: %s", err);
    if (rc == 0)
        assert_int_equal(pd_registry_start_sweep(&st->srv), 0);
    return st;
}

static st_t *mk(uint32_t max_procs)
{
    st_t tmp = {0};
    pd_config_t cfg;
    base_cfg(&tmp, &cfg, max_procs);
    return mk_cfg(&cfg, NULL, NULL);
}

static int teardown(void **state)
{
    (void)state;
    st_t *st = cur;
    if (!st)
        return 0;
    if (st->have_srv)
        pd_server_free(&st->srv);
    if (st->base)
        event_base_free(st->base);
    pshm_os_unlink(st->shm);
    char path[128];
    snprintf(path, sizeof(path), "%s/poold.sock", st->dir);
    unlink(path);
    rmdir(st->dir);
    free(st);
    cur = NULL;
    return 0;
}

static void pump(st_t *st, int ms)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        event_base_loop(st->base, EVLOOP_NONBLOCK);
        usleep(1000);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 < ms);
}

/* A connection to poold over a socketpair; returns the client end. */
static int client(st_t *st)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_non_null(pd_server_add_fd(&st->srv, sv[0]));
    return sv[1];
}

static void send_str(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(write(fd, s, n), (ssize_t)n);
}

static bool complete(const char *buf, size_t n, bool multi)
{
    if (!memchr(buf, '\n', n))
        return false;
    if (!multi || strncmp(buf, "ERR", 3) == 0)
        return true;
    return n >= 4 && (strcmp(buf + n - 4, "END\n") == 0);
}

/* Read one reply (single line, or OK..END); returns its length, 0 on EOF
 * before anything, -ETIMEDOUT. */
static int read_reply(st_t *st, int fd, char *buf, size_t cap, bool multi)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < 5000; i++) {
        event_base_loop(st->base, EVLOOP_NONBLOCK);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1) > 0) {
            ssize_t r = read(fd, buf + n, cap - 1 - n);
            if (r <= 0)
                return (int)n;
            n += (size_t)r;
            buf[n] = '\0';
            if (complete(buf, n, multi))
                return (int)n;
        }
    }
    return -ETIMEDOUT;
}

static void expect(st_t *st, int fd, const char *req, const char *prefix)
{
    char buf[4096];
    send_str(fd, req);
    int n = read_reply(st, fd, buf, sizeof(buf), false);
    assert_true(n > 0);
    if (strncmp(buf, prefix, strlen(prefix)) != 0)
        fail_msg("request %s: got \"%s\", want a reply starting \"%s\"", req, buf, prefix);
}

/* The connection is closed by poold: read returns 0 (after any bytes). */
static bool wait_eof(st_t *st, int fd)
{
    char buf[4096];
    for (int i = 0; i < 3000; i++) {
        event_base_loop(st->base, EVLOOP_NONBLOCK);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1) > 0) {
            ssize_t r = read(fd, buf, sizeof(buf));
            if (r == 0 || (r < 0 && errno == ECONNRESET))
                return true;
        }
    }
    return false;
}

static void hello(st_t *st, int fd, pproto_reply_t *rep)
{
    char req[128], buf[1100];
    snprintf(req, sizeof(req), "HELLO abi=%u pid=%d name=tester\n", PSHM_ABI_VERSION,
             (int)getpid());
    send_str(fd, req);
    int n = read_reply(st, fd, buf, sizeof(buf), false);
    assert_true(n > 0);
    assert_int_equal(pproto_parse_reply(buf, (size_t)n, rep), 0);
    if (!rep->ok)
        fail_msg("HELLO refused: %s", buf);
}

/* ---- every verb ---- */

static void test_cmd_ping_version(void **state)
{
    (void)state;
    st_t *st = mk(8);
    int fd = client(st);
    char buf[1100];
    send_str(fd, "PING\n");
    assert_true(read_reply(st, fd, buf, sizeof(buf), false) > 0);
    assert_string_equal(buf, "OK pong\n");
    expect(st, fd, "ping\r\n", "OK pong");
    send_str(fd, "VERSION\n");
    int n = read_reply(st, fd, buf, sizeof(buf), false);
    pproto_reply_t rep;
    assert_int_equal(pproto_parse_reply(buf, (size_t)n, &rep), 0);
    assert_true(rep.ok);
    assert_string_equal(pproto_kv_get(&rep, "version"), PD_VERSION);
    uint64_t abi = 0;
    assert_int_equal(pproto_kv_get_u64(&rep, "abi", &abi), 0);
    assert_int_equal(abi, PSHM_ABI_VERSION);
    close(fd);
}

static void test_cmd_hello_reply_and_bye(void **state)
{
    (void)state;
    st_t *st = mk(8);
    int fd = client(st);
    pproto_reply_t rep;
    hello(st, fd, &rep);
    uint64_t slot, size, maxp, gen, abi;
    assert_string_equal(pproto_kv_get(&rep, "shm"), st->shm);
    assert_int_equal(pproto_kv_get_u64(&rep, "slot", &slot), 0);
    assert_int_equal(pproto_kv_get_u64(&rep, "size", &size), 0);
    assert_int_equal(pproto_kv_get_u64(&rep, "max_procs", &maxp), 0);
    assert_int_equal(pproto_kv_get_u64(&rep, "gen", &gen), 0);
    assert_int_equal(pproto_kv_get_u64(&rep, "abi", &abi), 0);
    assert_int_equal(size, st->srv.seg.bytes);
    assert_int_equal(maxp, 8);
    assert_int_equal(gen, 1);
    assert_int_equal(abi, PSHM_ABI_VERSION);
    assert_int_equal(pshm_proc_find(&st->srv.seg, getpid()), (int)slot);

    /* A second HELLO on the same connection. */
    expect(st, fd, "HELLO abi=" TEST_ABI " pid=1\n", "ERR already-attached");

    /* PROCS shows us, connected, with our name. */
    char buf[8192], want[64];
    send_str(fd, "PROCS\n");
    assert_true(read_reply(st, fd, buf, sizeof(buf), true) > 0);
    snprintf(want, sizeof(want), "proc_%d:pid=%d,slot=%d,name=tester,", (int)getpid(),
             (int)getpid(), (int)slot);
    assert_non_null(strstr(buf, "# processes\n"));
    assert_non_null(strstr(buf, want));
    assert_non_null(strstr(buf, ",connected=1\n"));

    /* Another connection of the same process gets the same slot. */
    int fd2 = client(st);
    pproto_reply_t rep2;
    hello(st, fd2, &rep2);
    uint64_t slot2;
    assert_int_equal(pproto_kv_get_u64(&rep2, "slot", &slot2), 0);
    assert_int_equal(slot2, slot);
    close(fd2);
    pump(st, 20);
    pd_proc_t *p = pd_registry_get(&st->srv, (uint32_t)slot);
    assert_non_null(p);
    assert_int_equal(p->nconn, 1); /* fd's connection still holds it */

    /* The library frees its slot, then says BYE: poold forgets it. */
    pshm_release_result_t res = {0};
    pshm_proc_detach(&st->srv.seg, (uint32_t)slot, false, &res);
    expect(st, fd, "BYE\n", "OK bye");
    assert_true(wait_eof(st, fd));
    assert_null(pd_registry_get(&st->srv, (uint32_t)slot));
    close(fd);
}

static void test_cmd_bye_not_attached(void **state)
{
    (void)state;
    st_t *st = mk(8);
    int fd = client(st);
    expect(st, fd, "BYE\n", "ERR not-attached");
    expect(st, fd, "PING\n", "OK pong"); /* still open */
    close(fd);
}

static void test_cmd_classes(void **state)
{
    (void)state;
    st_t *st = mk(8);
    int fd = client(st);
    char buf[8192];
    send_str(fd, "CLASSES\n");
    assert_true(read_reply(st, fd, buf, sizeof(buf), true) > 0);
    assert_non_null(strstr(buf, "OK\n# classes\n"));
    assert_non_null(strstr(buf, "class_8:size=8,blocks_per_span="));
    assert_non_null(
        strstr(buf, "class_64:size=64,blocks_per_span=1008,owner_bytes=1,cache_cap=64,batch=32,"
                    "life_samples=0,life_p50=-,life_p99=-\n"));
    assert_non_null(strstr(buf, "class_65536:"));
    close(fd);
}

/* ---- HELLO refusals ---- */

static void test_hello_abi_mismatch(void **state)
{
    (void)state;
    st_t *st = mk(8);
    int fd = client(st);
    char req[64];
    snprintf(req, sizeof(req), "HELLO abi=%u pid=%d\n", PSHM_ABI_VERSION + 1, (int)getpid());
    expect(st, fd, req, "ERR abi-mismatch");
    assert_int_equal(pshm_proc_find(&st->srv.seg, getpid()), -ENOENT);
    close(fd);
}

static void test_hello_pid_not_peer(void **state)
{
    (void)state;
    st_t *st = mk(8);
    int fd = client(st);
    expect(st, fd, "HELLO abi=" TEST_ABI " pid=1\n", "ERR permission-denied");
    assert_int_equal(pshm_proc_find(&st->srv.seg, 1), -ENOENT);
    close(fd);
}

static void test_hello_slots_full(void **state)
{
    (void)state;
    st_t *st = mk(3); /* poold holds one */
    /* Two live processes hold the other two. */
    pid_t a = 1, b = getppid();
    assert_true(pshm_proc_claim(&st->srv.seg, a, pshm_os_proc_start_time(a), PSHM_VIA_DIRECT) >= 0);
    assert_true(pshm_proc_claim(&st->srv.seg, b, pshm_os_proc_start_time(b), PSHM_VIA_DIRECT) >= 0);
    int fd = client(st);
    char req[64];
    snprintf(req, sizeof(req), "HELLO abi=" TEST_ABI " pid=%d\n", (int)getpid());
    expect(st, fd, req, "ERR slots-full");
    expect(st, fd, "PING\n", "OK pong");
    close(fd);
}

static void test_hello_slots_full_reclaims_dead_first(void **state)
{
    (void)state;
    st_t *st = mk(3); /* poold holds one */
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    assert_true(pshm_proc_claim(&st->srv.seg, 1, pshm_os_proc_start_time(1), PSHM_VIA_DIRECT) >= 0);
    assert_true(pshm_proc_claim(&st->srv.seg, dead, 0, PSHM_VIA_DIRECT) >= 0);
    int fd = client(st);
    pproto_reply_t rep;
    hello(st, fd, &rep); /* the dead one's slot is reclaimed and given to us */
    assert_int_equal(st->srv.norphans, 1);
    assert_int_equal(st->srv.orphans[0].pid, dead);
    close(fd);
}

static int child_hello_as(const char *path, uid_t uid)
{
    if (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0)
        return 3;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return 4;
    char req[64], buf[512];
    int n = snprintf(req, sizeof(req), "HELLO abi=" TEST_ABI " pid=%d\n", (int)getpid());
    if (write(fd, req, (size_t)n) != n)
        return 5;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1)
        return 6;
    ssize_t r = read(fd, buf, sizeof(buf) - 1);
    if (r <= 0)
        return 7;
    buf[r] = '\0';
    return strncmp(buf, "ERR permission-denied", 21) == 0 ? 0 : 8;
}

static void test_hello_wrong_uid(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        print_message("skipped: needs root to run a client as uid 65534\n");
        skip();
    }
    st_t *st = mk(8);
    assert_int_equal(pd_server_listen(&st->srv, err, sizeof(err)), 0);
    char path[PD_PATH_MAX];
    struct stat sb;
    snprintf(path, sizeof(path), "%s", st->srv.cfg.socket);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600); /* owner only */
    /* Let the other uid reach the socket, so that poold's own check is what
     * refuses it. */
    assert_int_equal(chmod(st->dir, 0755), 0);
    assert_int_equal(chmod(path, 0666), 0);
    pid_t pid = fork();
    if (pid == 0)
        _exit(child_hello_as(path, 65534));
    int status = -1;
    for (int i = 0; i < 5000; i++) {
        event_base_loop(st->base, EVLOOP_NONBLOCK);
        if (waitpid(pid, &status, WNOHANG) == pid)
            break;
        usleep(1000);
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(pshm_proc_find(&st->srv.seg, pid), -ENOENT);
}

/* ---- framing ---- */

static void test_malformed_lines_keep_connection(void **state)
{
    (void)state;
    st_t *st = mk(8);
    int fd = client(st);
    expect(st, fd, "\n", "ERR unknown-verb");
    expect(st, fd, "   \n", "ERR unknown-verb");
    expect(st, fd, "RELOAD\n", "ERR unknown-verb");
    expect(st, fd, "PING\t\n", "ERR bad-argument");
    expect(st, fd, "PING x\n", "ERR bad-argument");
    expect(st, fd, "HELLO abi=" TEST_ABI "\n", "ERR bad-argument");
    expect(st, fd, "HELLO abi=" TEST_ABI " pid=5 pid=5\n", "ERR bad-argument");
    expect(st, fd, "HELLO abi=x pid=5\n", "ERR bad-argument");
    char bin[] = "PI\x01NG\n";
    expect(st, fd, bin, "ERR bad-argument");
    char nul[] = {'P', 'I', 0, 'N', 'G', '\n'};
    assert_int_equal(write(fd, nul, sizeof(nul)), (ssize_t)sizeof(nul));
    char buf[512];
    assert_true(read_reply(st, fd, buf, sizeof(buf), false) > 0);
    assert_true(strncmp(buf, "ERR bad-argument", 16) == 0);
    expect(st, fd, "PING\n", "OK pong");
    close(fd);
}

static void test_line_too_long_closes(void **state)
{
    (void)state;
    st_t *st = mk(8);
    /* Without a LF. */
    int fd = client(st);
    char big[2000];
    memset(big, 'A', sizeof(big));
    assert_int_equal(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
    char buf[512];
    assert_true(read_reply(st, fd, buf, sizeof(buf), false) > 0);
    assert_true(strncmp(buf, "ERR line-too-long", 17) == 0);
    assert_true(wait_eof(st, fd));
    close(fd);
    /* With a LF, 1025 bytes: one over the limit. */
    fd = client(st);
    memset(big, ' ', 1024);
    memcpy(big, "PING", 4);
    big[1024] = '\n';
    assert_int_equal(write(fd, big, 1025), 1025);
    assert_true(read_reply(st, fd, buf, sizeof(buf), false) > 0);
    assert_true(strncmp(buf, "ERR line-too-long", 17) == 0);
    assert_true(wait_eof(st, fd));
    close(fd);
    /* Exactly 1024 with the LF is fine. */
    fd = client(st);
    big[1023] = '\n';
    assert_int_equal(write(fd, big, 1024), 1024);
    assert_true(read_reply(st, fd, buf, sizeof(buf), false) > 0);
    assert_string_equal(buf, "OK pong\n");
    close(fd);
    pump(st, 10);
    assert_int_equal(st->srv.nconns, 0);
}

static void test_garbage_does_not_disturb_others(void **state)
{
    (void)state;
    st_t *st = mk(8);
    int bad = client(st);
    int good = client(st);
    fcntl(bad, F_SETFL, O_NONBLOCK);
    /* 20000 garbage lines; the bad client never reads its replies. */
    static char junk[20000 * 8];
    for (size_t i = 0; i < 20000; i++)
        memcpy(junk + i * 8, "GARBAGE\n", 8);
    size_t off = 0;
    for (int round = 0; round < 200 && off < sizeof(junk); round++) {
        ssize_t w = write(bad, junk + off, sizeof(junk) - off);
        if (w > 0)
            off += (size_t)w;
        event_base_loop(st->base, EVLOOP_NONBLOCK);
        expect(st, good, "PING\n", "OK pong");
    }
    char buf[65536];
    send_str(good, "STATS\n");
    assert_true(read_reply(st, good, buf, sizeof(buf), true) > 0);
    assert_true(strncmp(buf, "OK\n# server\n", 12) == 0);
    /* The bad one is still served, in order. */
    ssize_t r = read(bad, buf, 64);
    assert_true(r > 0);
    assert_true(strncmp(buf, "ERR unknown-verb", 16) == 0);
    close(bad);
    close(good);
}

/* ---- STATS keys (docs/stats.md) ---- */

static bool has_key(const char *body, const char *section, const char *key)
{
    char want[128];
    const char *s = strstr(body, section);
    if (!s)
        return false;
    snprintf(want, sizeof(want), "\n%s:", key);
    const char *k = strstr(s, want);
    const char *next = strstr(s + 1, "\n# ");
    return k && (!next || k < next);
}

static void test_stats_keys(void **state)
{
    (void)state;
    st_t *st = mk(8);
    int fd = client(st);
    pproto_reply_t rep;
    hello(st, fd, &rep);
    char *body = malloc(1 << 20);
    assert_non_null(body);
    send_str(fd, "STATS\n");
    int n = read_reply(st, fd, body, 1 << 20, true);
    assert_true(n > 0);
    assert_true(strncmp(body, "OK\n", 3) == 0);

    /* Every line parses; the last is END. */
    const char *p = body + 3, *end = body + n;
    int kind = -1;
    bool lifetimes = false; /* in # lifetimes, else # classes for class_ rows */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        assert_non_null(nl);
        assert_true(nl - p + 1 <= PPROTO_MAX_LINE);
        pproto_info_line_t il;
        kind = pproto_parse_info_line(p, (size_t)(nl - p + 1), &il);
        if (kind < 0)
            fail_msg("line does not parse: %.*s", (int)(nl - p), p);
        if (kind == PPROTO_INFO_SECTION)
            lifetimes = il.key_len == 9 && memcmp(il.key, "lifetimes", 9) == 0;
        if (kind == PPROTO_INFO_KV && il.key_len > 6 && memcmp(il.key, "class_", 6) == 0) {
            const char *c = il.val, *e = il.val + il.val_len;
            pproto_subkv_t kv;
            int items = 0, rc;
            while ((rc = pproto_subkv_next(&c, e, &kv)) > 0)
                items++;
            assert_int_equal(rc, 0);
            /* size, the buckets and the sum; or the class's 17 figures */
            assert_int_equal(items, lifetimes ? 2 + PPROTO_LIFE_BUCKETS : 17);
        }
        p = nl + 1;
    }
    assert_int_equal(kind, PPROTO_INFO_END);

    static const char *const server[] = {"version",    "abi",      "pid",    "uptime_seconds",
                                         "daemon_gen", "shm_name", "socket", "connections"};
    static const char *const pool[] = {"segment_bytes",
                                       "span_bytes",
                                       "spans_max",
                                       "spans_carved",
                                       "bytes_carved",
                                       "bytes_in_use",
                                       "bytes_committed",
                                       "bytes_retained",
                                       "bytes_purged_total",
                                       "spans_free",
                                       "large_blocks_in_use",
                                       "large_bytes_in_use",
                                       "large_bytes_asked",
                                       "large_blocks_in_transit",
                                       "large_allocations_total",
                                       "large_frees_total",
                                       "large_reclaimed_total",
                                       "large_exhausted_total",
                                       "spans_swept_total",
                                       "procs_attached",
                                       "procs_max",
                                       "procs_reclaimed_total",
                                       "blocks_reclaimed_total",
                                       "blocks_orphaned_total",
                                       "blocks_reclaimed_in_use_total",
                                       "blocks_in_transit",
                                       "invalid_frees_total",
                                       "allocations_total",
                                       "frees_total",
                                       "reuses_total",
                                       "same_address_total",
                                       "cache_misses_total",
                                       "central_misses_total",
                                       "exhausted_total",
                                       "uncached_ops_total",
                                       "entries_dropped_total"};
    for (size_t i = 0; i < sizeof(server) / sizeof(server[0]); i++)
        if (!has_key(body, "# server\n", server[i]))
            fail_msg("no %s in # server", server[i]);
    for (size_t i = 0; i < sizeof(pool) / sizeof(pool[0]); i++)
        if (!has_key(body, "# pool\n", pool[i]))
            fail_msg("no %s in # pool", pool[i]);
    assert_non_null(
        strstr(body, "\n# classes\nclass_8:size=8,spans=0,carved=0,free=0,central=0,"
                     "cached=0,in_use=0,allocs=0,frees=0,reuses=0,same_address=0,"
                     "cache_misses=0,central_misses=0,exhausted=0,in_transit=0,invalid_frees=0,"
                     "reclaimed_in_use=0\n"));
    char want[160];
    snprintf(want, sizeof(want),
             "\nproc_%d:pid=%d,slot=1,name=tester,attached_unix=", (int)getpid(), (int)getpid());
    assert_non_null(strstr(body, want));
    assert_non_null(strstr(body, ",allocs=0,frees=0,cache_misses=0,cached=0,in_use=0,threads=0,"
                                 "connected=1\n"));
    assert_non_null(strstr(body, "\n# orphans\n# holdings\n# channels\n# warnings\nEND\n"));
    assert_non_null(strstr(body, "\nprocs_attached:1\n"));
    assert_non_null(strstr(body, "\nconnections:1\n"));

    /* The Prometheus rendering of the same body. */
    struct evbuffer *prom = evbuffer_new();
    assert_int_equal(pd_render_prometheus(body, (size_t)n, prom), 0);
    size_t pl = evbuffer_get_length(prom);
    char *text = calloc(1, pl + 1);
    evbuffer_remove(prom, text, pl);
    assert_non_null(
        strstr(text, "# TYPE poold_allocations_total counter\npoold_allocations_total 0\n"));
    assert_non_null(strstr(text, "poold_procs_attached 1\n"));
    assert_non_null(strstr(text, "# TYPE poold_class_allocs_total counter\n"));
    assert_non_null(strstr(text, "poold_class_allocs_total{size=\"64\"} 0\n"));
    snprintf(want, sizeof(want), "poold_proc_connected{pid=\"%d\",name=\"tester\"} 1\n",
             (int)getpid());
    assert_non_null(strstr(text, want));
    free(text);
    evbuffer_free(prom);
    free(body);
    close(fd);
}

/* Every key of STATS (scalars and row fields, in every section) has its
 * line in proto/pproto_metrics.c: a Prometheus name and a HELP text. A key
 * added to stats.c without one fails here. */
struct help_walk {
    char section[PPROTO_MAX_KEY + 1];
    int keys[8]; /* server, pool, classes, processes, orphans, holdings, warnings, lifetimes */
};

static int help_walk_line(void *ctx, const pproto_info_line_t *l)
{
    struct help_walk *w = ctx;
    static const char *const sections[] = {"server",  "pool",     "classes",  "processes",
                                           "orphans", "holdings", "warnings", "lifetimes"};
    if (l->kind == PPROTO_INFO_SECTION) {
        snprintf(w->section, sizeof(w->section), "%.*s", (int)l->key_len, l->key);
        return 0;
    }
    int s = -1;
    for (int i = 0; i < 8; i++)
        if (!strcmp(w->section, sections[i]))
            s = i;
    if (s < 0)
        fail_msg("STATS section %s: add it to the test and its keys to pproto_metrics.c",
                 w->section);
    if (s < 2) {
        if (!pproto_metric_find(w->section, l->key, l->key_len))
            fail_msg("STATS key %.*s of # %s has no line in proto/pproto_metrics.c",
                     (int)l->key_len, l->key, w->section);
        w->keys[s]++;
        return 0;
    }
    const char *c = l->val, *e = l->val + l->val_len;
    pproto_subkv_t kv;
    int rc;
    while ((rc = pproto_subkv_next(&c, e, &kv)) > 0) {
        int64_t num;
        /* A text field that is not a label (a warning's message) is for
         * JSON and poolctl; Prometheus carries numbers and labels only. */
        if (pproto_parse_i64(kv.val, kv.val_len, &num) < 0 &&
            !pproto_metric_find(w->section, kv.key, kv.key_len))
            continue;
        if (!pproto_metric_find(w->section, kv.key, kv.key_len))
            fail_msg("STATS field %.*s of # %s rows has no line in proto/pproto_metrics.c",
                     (int)kv.key_len, kv.key, w->section);
        w->keys[s]++;
    }
    assert_int_equal(rc, 0);
    return 0;
}

static void test_stats_keys_have_help(void **state)
{
    (void)state;
    st_t *st = mk(8);
    int fd = client(st);
    pproto_reply_t rep;
    hello(st, fd, &rep);
    /* An orphan row, as a crash would leave one. */
    st->srv.orphans[0] = (pd_orphan_t){
        .pid = 77, .slot = 3, .blocks = 2, .reclaimed_blocks = 5, .reclaimed_unix = 1764270050};
    st->srv.norphans = 1;
    st->srv.orphan_next = 1;
    /* A holdings row (a peak of the attached tester) and a warning row. */
    assert_int_equal(pd_observe_start(&st->srv), 0);
    bool found = false;
    for (uint32_t i = 0; i < st->srv.obs->nprocs; i++)
        if (st->srv.obs->procs[i].pid == (int32_t)getpid()) {
            st->srv.obs->procs[i].peak_blocks[0] = 1;
            found = true;
        }
    assert_true(found);
    st->srv.obs->warn[0] = (pd_warning_t){.kind = "slots",
                                          .subject = "procs",
                                          .message = "3 of 3 process slots taken",
                                          .since_unix = 1764270050,
                                          .value = 3};
    st->srv.obs->nwarn = 1;
    char *body = malloc(1 << 20);
    assert_non_null(body);
    send_str(fd, "STATS\n");
    int n = read_reply(st, fd, body, 1 << 20, true);
    assert_true(n > 3);
    struct help_walk w = {0};
    assert_int_equal(pproto_info_foreach(body + 3, (size_t)n - 3, help_walk_line, &w), 0);
    for (int i = 0; i < 8; i++)
        assert_true(w.keys[i] > 0);
    free(body);
    close(fd);
}

/* ---- crash reclaim ---- */

static pid_t child_attach(const char *path, int ctl)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* Dies with the test, should an assert end it before it says 'x'. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(8);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        _exit(4);
    char req[64], buf[512], cmd;
    int n =
        snprintf(req, sizeof(req), "HELLO abi=" TEST_ABI " pid=%d name=victim\n", (int)getpid());
    if (write(fd, req, (size_t)n) != n)
        _exit(5);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1 || read(fd, buf, sizeof(buf)) <= 0 || strncmp(buf, "OK ", 3))
        _exit(6);
    /* Tell the parent, then obey: 'x' exit at once, 'c' close and live. */
    if (write(ctl, "a", 1) != 1)
        _exit(7);
    while (read(ctl, &cmd, 1) == 1) {
        if (cmd == 'x')
            _exit(0);
        if (cmd == 'c')
            close(fd);
    }
    _exit(0);
}

static bool wait_ctl(st_t *st, int ctl)
{
    char ch;
    for (int i = 0; i < 5000; i++) {
        event_base_loop(st->base, EVLOOP_NONBLOCK);
        struct pollfd p = {.fd = ctl, .events = POLLIN};
        if (poll(&p, 1, 1) == 1)
            return read(ctl, &ch, 1) == 1;
    }
    return false;
}

static bool wait_reclaimed(st_t *st, uint32_t n)
{
    for (int i = 0; i < 3000 && st->srv.norphans < n; i++) {
        event_base_loop(st->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
    return st->srv.norphans >= n;
}

static void test_crash_reclaimed_by_eof_and_pidfd(void **state)
{
    (void)state;
    st_t *st = mk(8);
    assert_int_equal(pd_server_listen(&st->srv, err, sizeof(err)), 0);
    int sv[2];

    /* 1: the worker dies with its connection open. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid_t w = child_attach(st->srv.cfg.socket, sv[1]);
    assert_true(wait_ctl(st, sv[0]));
    int slot = pshm_proc_find(&st->srv.seg, w);
    assert_true(slot >= 0);
    assert_non_null(pd_registry_get(&st->srv, (uint32_t)slot));
    assert_int_equal(write(sv[0], "x", 1), 1);
    assert_true(wait_reclaimed(st, 1));
    assert_int_equal(st->srv.orphans[0].pid, w);
    assert_int_equal(pshm_proc_find(&st->srv.seg, w), -ENOENT);
    assert_null(pd_registry_get(&st->srv, (uint32_t)slot));
    waitpid(w, NULL, 0);
    close(sv[0]);
    close(sv[1]);

    /* 2: the worker closes its connection but lives: its slot stays until
     * it dies (seen by pidfd). */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    w = child_attach(st->srv.cfg.socket, sv[1]);
    assert_true(wait_ctl(st, sv[0]));
    slot = pshm_proc_find(&st->srv.seg, w);
    assert_true(slot >= 0);
    assert_int_equal(write(sv[0], "c", 1), 1);
    pump(st, 300);
    assert_int_equal(pshm_proc_find(&st->srv.seg, w), slot);
    pd_proc_t *p = pd_registry_get(&st->srv, (uint32_t)slot);
    assert_non_null(p);
    assert_int_equal(p->nconn, 0);
    assert_int_equal(st->srv.norphans, 1);
    /* Guards against a pidfd watch that does not work (pidfd_open_ failing
     * with ENOSYS): the backstop sweep is stopped here, so only the pidfd can
     * tell poold of this death, and it must do so at once, well within one
     * sweep period. Valgrind does not implement pidfd_open (scripts/
     * memcheck.sh says so with POOL_TEST_VALGRIND): there the sweep stays
     * and only the reclaim is checked; every other build checks the pidfd. */
    bool pidfd_checked = getenv("POOL_TEST_VALGRIND") == NULL;
    assert_non_null(st->srv.sweep_ev);
    if (pidfd_checked) {
        assert_int_equal(event_del(st->srv.sweep_ev), 0);
        assert_true(p->pidfd >= 0);
    }
    struct timespec k0, k1;
    clock_gettime(CLOCK_MONOTONIC, &k0);
    kill(w, SIGKILL);
    assert_true(wait_reclaimed(st, 2));
    clock_gettime(CLOCK_MONOTONIC, &k1);
    double took = (double)(k1.tv_sec - k0.tv_sec) + (double)(k1.tv_nsec - k0.tv_nsec) / 1e9;
    assert_true(!pidfd_checked || took < PD_SWEEP_SECONDS / 2.0);
    assert_int_equal(pshm_proc_find(&st->srv.seg, w), -ENOENT);
    waitpid(w, NULL, 0);
    close(sv[0]);
    close(sv[1]);
    assert_int_equal(pa_load_relaxed(&st->srv.seg.hdr->procs_reclaimed), 2);
}

/* ---- connection limits ---- */

static int connect_to(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void test_max_connections_and_idle(void **state)
{
    (void)state;
    st_t tmp = {0};
    pd_config_t cfg;
    base_cfg(&tmp, &cfg, 8);
    cfg.max_connections = 1;
    cfg.idle_timeout = 1;
    st_t *st = mk_cfg(&cfg, NULL, NULL);
    assert_int_equal(pd_server_listen(&st->srv, err, sizeof(err)), 0);
    int a = connect_to(st->srv.cfg.socket);
    expect(st, a, "PING\n", "OK pong");
    int b = connect_to(st->srv.cfg.socket);
    char buf[256];
    assert_true(read_reply(st, b, buf, sizeof(buf), false) > 0);
    assert_string_equal(buf, "ERR internal too many connections\n");
    assert_true(wait_eof(st, b));
    close(b);
    /* a is idle: closed after about a second. */
    assert_true(wait_eof(st, a));
    close(a);
    /* Another poold on the same socket is refused. */
    pd_server_t other;
    pd_config_t c2 = st->srv.cfg;
    assert_int_equal(pd_server_init(&other, &c2, st->base, err, sizeof(err)), 0);
    assert_int_equal(pd_server_listen(&other, err, sizeof(err)), -EADDRINUSE);
    assert_non_null(strstr(err, "another poold is running on"));
    pd_server_free(&other);
}

/* ---- adoption ---- */

static void test_adopt_existing_segment(void **state)
{
    (void)state;
    char name[64];
    make_name(name, sizeof(name));
    pshm_params_t prm;
    pshm_params_default(&prm, 4u << 20);
    prm.max_procs = 8;
    prm.max_threads = 8;
    void *base = NULL;
    assert_int_equal(
        pshm_os_create(name, prm.bytes, prm.bytes, 0600, -1, true, &base, err, sizeof(err)), 0);
    assert_int_equal(pshm_format(base, &prm, err, sizeof(err)), 0);
    pshm_seg_t seg;
    assert_int_equal(pshm_view(&seg, base, prm.bytes, err, sizeof(err)), 0);

    /* A live worker (a sleeping child) and a dead one with 5 blocks in use. */
    pid_t parent = getpid();
    pid_t live = fork();
    if (live == 0) {
        /* Killed below; and with this test, should an assert end it
         * first, so that no sleeping child outlives it. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(1);
        pause();
        _exit(0);
    }
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0);
    int ls = pshm_proc_claim(&seg, live, pshm_os_proc_start_time(live), PSHM_VIA_DAEMON);
    int ds = pshm_proc_claim(&seg, dead, 0, PSHM_VIA_DAEMON);
    assert_true(ls >= 0 && ds >= 0);
    struct pshm_thread *t = pshm_thread_claim(&seg, (uint32_t)ds, dead);
    assert_non_null(t);
    /* 5 blocks cut fresh, owned by the dead one and never freed: 5 in use.
     * relaxed: test setup. */
    assert_int_equal(pshm_rec_install(&seg, t, 3), 0);
    for (int i = 0; i < 5; i++) {
        uint64_t w = pa_load_relaxed(&t->cls[3].fresh_w);
        pa_store_relaxed(pshm_owner_idx(&seg, 3, (uint32_t)w), pshm_own_val((uint32_t)ds));
        pa_store_relaxed(&t->cls[3].fresh_w, w + (UINT64_C(1) << 32) + (seg.block_size[3] >> 3));
    }
    pshm_os_unmap(base, prm.bytes);

    int rc;
    st_t *st = mk_cfg(NULL, name, &rc);
    assert_int_equal(rc, 0);
    assert_false(st->srv.seg_created);
    assert_int_equal(st->srv.gen, 1);
    assert_int_equal(pa_load_relaxed(&st->srv.seg.hdr->daemon_pid), getpid());
    /* The dead one was reclaimed at once and is an orphan. */
    assert_int_equal(st->srv.norphans, 1);
    assert_int_equal(st->srv.orphans[0].pid, dead);
    assert_int_equal(st->srv.orphans[0].blocks, 5);
    assert_int_equal(pshm_proc_find(&st->srv.seg, dead), -ENOENT);
    /* The live one kept its slot and is watched, not connected. */
    assert_int_equal(pshm_proc_find(&st->srv.seg, live), ls);
    pd_proc_t *p = pd_registry_get(&st->srv, (uint32_t)ls);
    assert_non_null(p);
    assert_int_equal(p->nconn, 0);

    int fd = client(st);
    char buf[65536], want[96];
    send_str(fd, "STATS\n");
    assert_true(read_reply(st, fd, buf, sizeof(buf), true) > 0);
    snprintf(want, sizeof(want), "\nproc_%d:pid=%d,slot=%d,", (int)live, (int)live, ls);
    assert_non_null(strstr(buf, want));
    assert_non_null(strstr(buf, ",connected=0\n"));
    snprintf(want, sizeof(want), "\norphan_%d:pid=%d,slot=%d,blocks=5,kept=0,reclaimed_blocks=0,",
             (int)dead, (int)dead, ds);
    assert_non_null(strstr(buf, want));
    assert_non_null(strstr(buf, "\nprocs_reclaimed_total:1\n"));
    assert_non_null(strstr(buf, "\nblocks_orphaned_total:0\n"));
    assert_non_null(strstr(buf, "\nblocks_reclaimed_in_use_total:5\n"));
    assert_non_null(strstr(buf, "\nblocks_in_transit:0\n"));
    assert_non_null(strstr(buf, "\ndaemon_gen:1\n"));

    /* The live one dies: the pidfd tells poold at once. */
    kill(live, SIGKILL);
    assert_true(wait_reclaimed(st, 2));
    assert_int_equal(pshm_proc_find(&st->srv.seg, live), -ENOENT);
    waitpid(live, NULL, 0);
    close(fd);
}

static void test_adopt_bumps_generation(void **state)
{
    (void)state;
    st_t *st = mk(8);
    char name[64];
    snprintf(name, sizeof(name), "%s", st->shm);
    pd_server_free(&st->srv);
    st->have_srv = false;
    pd_config_t cfg = {0};
    base_cfg(st, &cfg, 8);
    assert_int_equal(pd_server_init(&st->srv, &cfg, st->base, err, sizeof(err)), 0);
    st->have_srv = true;
    assert_int_equal(pd_segment_open(&st->srv, err, sizeof(err)), 0);
    assert_false(st->srv.seg_created);
    assert_int_equal(st->srv.gen, 2);
}

static void write_junk(const char *name, size_t bytes, unsigned char fill)
{
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    unsigned char *buf = malloc(bytes);
    memset(buf, fill, bytes);
    assert_int_equal(write(fd, buf, bytes), (ssize_t)bytes);
    free(buf);
    close(fd);
}

static void test_refuse_foreign_segment(void **state)
{
    (void)state;
    char name[64];
    make_name(name, sizeof(name));
    write_junk(name, 64 * 1024, 0xab);
    int rc;
    st_t *st = mk_cfg(NULL, name, &rc);
    assert_true(rc < 0);
    assert_non_null(strstr(err, "foreign"));
    /* Untouched: still the junk. */
    int fd = shm_open(name, O_RDONLY, 0);
    assert_true(fd >= 0);
    unsigned char b[16];
    assert_int_equal(read(fd, b, sizeof(b)), (ssize_t)sizeof(b));
    assert_int_equal(b[0], 0xab);
    assert_int_equal(b[15], 0xab);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    assert_int_equal(sb.st_size, 64 * 1024);
    close(fd);
    (void)st;
}

static void test_refuse_truncated_segment(void **state)
{
    (void)state;
    char name[64];
    make_name(name, sizeof(name));
    write_junk(name, 100, 0);
    int rc;
    st_t *st = mk_cfg(NULL, name, &rc);
    assert_true(rc < 0);
    assert_non_null(strstr(err, "truncated"));
    (void)st;
}

/* ---- configuration ---- */

static void test_config_table(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(pd_parse_size("64M", &v), 0);
    assert_int_equal(v, 64u << 20);
    assert_int_equal(pd_parse_size("2g", &v), 0);
    assert_int_equal(v, UINT64_C(2) << 30);
    assert_int_equal(pd_parse_size("512KiB", &v), 0);
    assert_int_equal(v, 512u << 10);
    assert_int_equal(pd_parse_size("12Q", &v), -EINVAL);
    assert_int_equal(pd_parse_size("-1", &v), -EINVAL);

    pd_config_t c;
    pd_config_defaults(&c);
    assert_int_equal(c.size, 0); /* computed: half of /dev/shm, bounded */
    uint64_t dflt = pd_default_size();
    assert_true(dflt >= PD_DEFAULT_SIZE_MIN && dflt <= PD_DEFAULT_SIZE_MAX);
    assert_int_equal(dflt & ((1u << 20) - 1), 0);
    assert_int_equal(c.prefault_all, 0);
    assert_int_equal(c.purge_delay, 10);
    assert_int_equal(c.retain, 4u << 20);
    assert_int_equal(pd_config_set(&c, "prefault", "some", err, sizeof(err)), -EINVAL);
    assert_int_equal(pd_config_set(&c, "prefault", "all", err, sizeof(err)), 0);
    assert_int_equal(c.prefault_all, 1);
    assert_int_equal(pd_config_set(&c, "purge_delay", "0", err, sizeof(err)), 0);
    assert_int_equal(c.purge_delay, 0);
    assert_int_equal(pd_config_set(&c, "retain", "0", err, sizeof(err)), 0);
    assert_int_equal(c.retain, 0);
    pd_config_defaults(&c);
    assert_int_equal(c.max_procs, 64);
    assert_string_equal(c.classes, "fine");
    assert_int_equal(pd_config_set(&c, "classes", "pow2", err, sizeof(err)), 0);
    assert_int_equal(pd_config_set(&c, "classes", "8-65536", err, sizeof(err)), 0);
    assert_int_equal(pd_config_set(&c, "classes", "fine", err, sizeof(err)), 0);
    assert_int_equal(pd_config_set(&c, "classes", "finer", err, sizeof(err)), -EINVAL);
    assert_int_equal(pd_config_set(&c, "shm_name", "no-slash", err, sizeof(err)), -EINVAL);
    assert_int_equal(pd_config_set(&c, "metrics", "127.0.0.1", err, sizeof(err)), -EINVAL);
    assert_int_equal(pd_config_set(&c, "classes", "8,12", err, sizeof(err)), -EINVAL);
    assert_int_equal(pd_config_set(&c, "bogus", "1", err, sizeof(err)), -ENOENT);

    char path[] = "/tmp/pdtest-conf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# comment\n[poold]\nsize = 8M\nlog_level = debug\nmax_lines = 3\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    pd_config_defaults(&c);
    assert_int_equal(pd_config_load(&c, path, err, sizeof(err)), -EINVAL);
    char want[128];
    snprintf(want, sizeof(want), "%s:5: unknown directive 'max_lines'", path);
    assert_string_equal(err, want);
    assert_int_equal(c.size, 8u << 20);
    unlink(path);

    /* Comments after a value, with '#' or ';'; leak_window's units. */
    snprintf(path, sizeof(path), "/tmp/pdtest-conf-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    text = "size = 8M # the hard limit\nlog_level = warn\t# quieter\nmax_procs = 9 ; slots\n"
           "leak_window = 2m # two minutes\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    pd_config_defaults(&c);
    assert_int_equal(c.leak_window, 600);
    assert_int_equal(pd_config_load(&c, path, err, sizeof(err)), 0);
    assert_int_equal(c.size, 8u << 20);
    assert_int_equal(c.log_level, PD_LOG_WARN);
    assert_int_equal(c.max_procs, 9);
    assert_int_equal(c.leak_window, 120);
    unlink(path);
    assert_int_equal(pd_config_set(&c, "leak_window", "1h", err, sizeof(err)), 0);
    assert_int_equal(c.leak_window, 3600);
    assert_int_equal(pd_config_set(&c, "leak_window", "45", err, sizeof(err)), 0);
    assert_int_equal(c.leak_window, 45);
    assert_int_equal(pd_config_set(&c, "leak_window", "5s", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "from 10 s"));
    assert_int_equal(pd_config_set(&c, "leak_window", "3d", err, sizeof(err)), -EINVAL);
}

/* A client hammering poold with refused requests cannot flood the log: at
 * most PD_LOG_CLIENT_BURST lines a second, then one line saying how many
 * were suppressed. */
static void test_log_client_rate_limited(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/poold-test-log-%d", (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    int level = pd_log_get_level();
    pd_log_set_level(PD_LOG_INFO);
    /* Start at the beginning of a second so that the burst fits in one. */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    time_t start = now.tv_sec;
    do
        clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    while (now.tv_sec == start);
    for (int i = 0; i < 500; i++)
        pd_warn_client("refused request %d", i);
    /* Next second: the suppressed count is reported before the next line. */
    start = now.tv_sec;
    do
        clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    while (now.tv_sec == start);
    pd_warn_client("one more");
    fflush(stderr);
    pd_log_set_level(level);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[65536];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    buf[n] = '\0';
    int lines = 0;
    for (char *p = buf; (p = strstr(p, "refused request")) != NULL; p++)
        lines++;
    assert_int_equal(lines, PD_LOG_CLIENT_BURST);
    assert_non_null(strstr(buf, "480 messages about clients suppressed"));
    assert_non_null(strstr(buf, "one more"));
}

int main(void)
{
    pd_log_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_cmd_ping_version, teardown),
        cmocka_unit_test_teardown(test_cmd_hello_reply_and_bye, teardown),
        cmocka_unit_test_teardown(test_cmd_bye_not_attached, teardown),
        cmocka_unit_test_teardown(test_cmd_classes, teardown),
        cmocka_unit_test_teardown(test_hello_abi_mismatch, teardown),
        cmocka_unit_test_teardown(test_hello_pid_not_peer, teardown),
        cmocka_unit_test_teardown(test_hello_slots_full, teardown),
        cmocka_unit_test_teardown(test_hello_slots_full_reclaims_dead_first, teardown),
        cmocka_unit_test_teardown(test_hello_wrong_uid, teardown),
        cmocka_unit_test_teardown(test_malformed_lines_keep_connection, teardown),
        cmocka_unit_test_teardown(test_line_too_long_closes, teardown),
        cmocka_unit_test_teardown(test_garbage_does_not_disturb_others, teardown),
        cmocka_unit_test_teardown(test_stats_keys, teardown),
        cmocka_unit_test_teardown(test_stats_keys_have_help, teardown),
        cmocka_unit_test_teardown(test_crash_reclaimed_by_eof_and_pidfd, teardown),
        cmocka_unit_test_teardown(test_max_connections_and_idle, teardown),
        cmocka_unit_test_teardown(test_adopt_existing_segment, teardown),
        cmocka_unit_test_teardown(test_adopt_bumps_generation, teardown),
        cmocka_unit_test_teardown(test_refuse_foreign_segment, teardown),
        cmocka_unit_test_teardown(test_refuse_truncated_segment, teardown),
        cmocka_unit_test(test_config_table),
        cmocka_unit_test(test_log_client_rate_limited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
