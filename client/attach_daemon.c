/* SPDX-License-Identifier: MIT */
/*
 * attach_daemon.c: pool_attach and everything the library says to poold:
 * the HELLO handshake (with a check of poold's credentials), the mapping of
 * the segment poold names, re-registration after a poold restart, and BYE.
 *
 * Allocation never comes here (invariant 1, docs/design.md): these run at attach,
 * at detach, in a forked child's first allocation, and at most once a second
 * on a slow path after poold has restarted. Every socket read is bounded in
 * time and size; every reply goes through proto/ before it is believed.
 * A HELLO that poold closes unanswered (it was stopping) is sent again on a
 * new connection, a few times: with poold.socket that connection waits in
 * the socket's queue for the next poold. Writes use MSG_NOSIGNAL: the
 * library never raises SIGPIPE in its host.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "pproto.h"

#define HELLO_TIMEOUT_MS 5000
#define HELLO_ATTEMPTS 5 /* when poold closes before its reply (it is stopping) */
#define REREGISTER_EVERY_NS UINT64_C(1000000000)

static bool path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The socket to try: named, else $POOLD_SOCKET, else the default poold
 * itself takes for our uid (proto/pproto_socket.c), into buf. */
static const char *socket_path_of(const char *path, char *buf, size_t cap)
{
    if (path && *path)
        return path;
    const char *env = getenv("POOLD_SOCKET");
    if (env && *env)
        return env;
    if (pproto_socket_to_try(buf, cap, (unsigned)geteuid(), getenv("XDG_RUNTIME_DIR"),
                             path_exists) < 0)
        return POOL_DEFAULT_SOCKET;
    return buf;
}

/* "cannot reach poold at PATH: <why>; <what to do>" for pool_last_error(). */
static void connect_error(const char *path, int errnum)
{
    struct stat st;
    pproto_path_info_t info;
    pproto_path_info_of(&info, stat(path, &st) == 0 ? &st : NULL);
    char advice[200];
    (void)pproto_connect_error(advice, sizeof(advice), errnum, &info);
    pool_set_error_("cannot reach poold at %s: %s; %s", path, strerror(errnum), advice);
}

/* poold must run as root, as us, as the user "poold", or as $POOLD_UID. */
static bool daemon_uid_ok(uid_t uid)
{
    if (uid == 0 || uid == geteuid())
        return true;
    const char *env = getenv("POOLD_UID");
    if (env && *env && (uid_t)strtoul(env, NULL, 10) == uid)
        return true;
    struct passwd pw, *res = NULL;
    char buf[1024];
    if (getpwnam_r("poold", &pw, buf, sizeof(buf), &res) == 0 && res && res->pw_uid == uid)
        return true;
    return false;
}

/* This process image's number for HELLO's image=: a hash of the 16 random
 * bytes the kernel gives each exec (AT_RANDOM), so that poold tells an
 * exec (same pid, new image) from a second HELLO of the same image. Hashed:
 * glibc draws the stack guard from those bytes, which must not leave the
 * process. Never 0 (absent). */
static uint32_t image_number(void)
{
    const uint8_t *r = (const uint8_t *)getauxval(AT_RANDOM);
    uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a, then a final mix */
    if (r)
        for (int i = 0; i < 16; i++)
            h = (h ^ r[i]) * UINT64_C(0x100000001b3);
    else
        h ^= (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    uint32_t v = (uint32_t)h ^ (uint32_t)(h >> 32);
    return v ? v : 1;
}

static int read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t n = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (n + 1 < cap) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (spent >= timeout_ms)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, (int)(timeout_ms - spent));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return -errno;
        if (rc == 0)
            return -ETIMEDOUT;
        ssize_t r = read(fd, buf + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ECONNRESET;
        if (buf[n] == '\n') {
            buf[n + 1] = '\0';
            return (int)(n + 1);
        }
        n++;
    }
    return -E2BIG;
}

static int errno_of(pproto_err_t e)
{
    switch (e) {
    case PPROTO_ERR_ABI_MISMATCH: return EPROTO;
    case PPROTO_ERR_SLOTS_FULL: return EBUSY;
    case PPROTO_ERR_PERMISSION_DENIED: return EACCES;
    case PPROTO_ERR_ALREADY_ATTACHED: return EISCONN;
    case PPROTO_ERR_POOL_CORRUPT: return EUCLEAN;
    default: return EPROTO;
    }
}

/* One HELLO on a new connection. *again is set when poold closed the
 * connection before it replied: it was stopping, and with a socket held by
 * systemd the next connection waits for its successor. */
static int hello_once(const char *path, pool_hello_reply_t *r, bool *again)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char line[PPROTO_MAX_LINE + 1];
    pproto_reply_t rep;
    int rc;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        pool_set_error_("socket path too long: %s", path);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        pool_set_error_("socket: %s", strerror(-rc));
        return rc;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        connect_error(path, -rc);
        goto fail;
    }
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
        rc = -errno;
        pool_set_error_("SO_PEERCRED on %s: %s", path, strerror(-rc));
        goto fail;
    }
    if (!daemon_uid_ok(cred.uid)) {
        rc = -EACCES;
        pool_set_error_("the process on %s (pid %d) runs as uid %u, not as root, us or poold: "
                        "refusing to attach",
                        path, (int)cred.pid, (unsigned)cred.uid);
        goto fail;
    }
    pproto_req_t req = {.verb = PPROTO_HELLO,
                        .abi = PSHM_ABI_VERSION,
                        .pid = (int32_t)getpid(),
                        .image = image_number()};
    const char *name = program_invocation_short_name;
    size_t nl = strlen(name);
    if (nl > PPROTO_MAX_NAME)
        nl = PPROTO_MAX_NAME;
    if (pproto_name_valid(name, nl)) {
        memcpy(req.name, name, nl);
        req.name[nl] = '\0';
    }
    int len = pproto_encode_request(line, sizeof(line), &req);
    if (len < 0) {
        req.name[0] = '\0';
        len = pproto_encode_request(line, sizeof(line), &req);
    }
    if (len < 0 || send(fd, line, (size_t)len, MSG_NOSIGNAL) != len) {
        rc = len < 0 ? len : -errno;
        *again = rc == -EPIPE || rc == -ECONNRESET;
        pool_set_error_("sending HELLO to %s: %s", path, strerror(-rc));
        goto fail;
    }
    rc = read_line(fd, line, sizeof(line), HELLO_TIMEOUT_MS);
    if (rc < 0) {
        *again = rc == -ECONNRESET; /* EOF or reset: closed unanswered */
        pool_set_error_("no HELLO reply from %s: %s", path, strerror(-rc));
        goto fail;
    }
    if (pproto_parse_reply(line, (size_t)rc, &rep) < 0) {
        rc = -EPROTO;
        pool_set_error_("malformed HELLO reply from %s", path);
        goto fail;
    }
    if (!rep.ok) {
        rc = -errno_of(rep.err);
        pool_set_error_("poold at %s refused HELLO: %s %s", path, pproto_err_name(rep.err),
                        rep.msg);
        goto fail;
    }
    uint64_t s = 0, abi = 0, b = 0, g = 0;
    const char *shm = pproto_kv_get(&rep, "shm");
    if (!shm || pproto_kv_get_u64(&rep, "slot", &s) < 0 ||
        pproto_kv_get_u64(&rep, "abi", &abi) < 0 || pproto_kv_get_u64(&rep, "size", &b) < 0 ||
        abi != PSHM_ABI_VERSION || s > 4096 || strlen(shm) + 1 > sizeof(r->shm)) {
        rc = -EPROTO;
        pool_set_error_("HELLO reply from %s lacks shm/slot/abi/size or has another ABI", path);
        goto fail;
    }
    if (pproto_kv_get_u64(&rep, "gen", &g) < 0)
        g = 0;
    memcpy(r->shm, shm, strlen(shm) + 1);
    r->slot = (int)s;
    r->bytes = b;
    r->gen = g;
    r->fd = fd;
    return 0;
fail:
    close(fd);
    return rc;
}

int pool_hello_(const char *path, pool_hello_reply_t *r)
{
    int rc;
    for (int attempt = 1;; attempt++) {
        bool again = false;
        rc = hello_once(path, r, &again);
        if (rc == 0 || !again || attempt == HELLO_ATTEMPTS)
            return rc;
        struct timespec ts = {0, 20000000L * attempt}; /* 20, 40, ... ms */
        nanosleep(&ts, NULL);
    }
}

/* The one check of a HELLO reply, against the segment the pool maps: the
 * same segment, of the size poold says, and a slot poold claimed for this
 * process. */
static bool reply_fits(const pool_t *pool, const pool_hello_reply_t *r)
{
    /* acquire: pairs with the release store of LIVE by poold's claim. */
    return strcmp(r->shm, pool->shm_name) == 0 && pool->seg.hdr->segment_bytes == r->bytes &&
           (uint32_t)r->slot < pool->seg.max_procs &&
           pa_load_acquire(&pool->seg.procs[r->slot].pid) == (int32_t)getpid();
}

POOL_API pool_t *pool_attach(const char *socket_path)
{
    char def[108];
    const char *path = socket_path_of(socket_path, def, sizeof(def));
    char err[256] = "";
    void *base = NULL;
    uint64_t mapped = 0;
    pool_hello_reply_t r;
    int rc;

    pool_t *pool = pool_new_();
    if (!pool) {
        errno = ENOMEM;
        return NULL;
    }
    rc = pool_hello_(path, &r);
    if (rc < 0)
        goto fail_quiet;
    pool->sock = r.fd;
    memcpy(pool->shm_name, r.shm, sizeof(pool->shm_name));
    rc = pshm_os_open(pool->shm_name, &base, &mapped, err, sizeof(err));
    if (rc < 0)
        goto fail;
    pool->seg.base = base;
    pool->seg.bytes = mapped;
    rc = pshm_view(&pool->seg, base, mapped, err, sizeof(err));
    if (rc < 0)
        goto fail;
    pool->seg.bytes = mapped; /* unmap what was mapped */
    if (!reply_fits(pool, &r)) {
        snprintf(err, sizeof(err), "segment %s does not match poold's HELLO reply (slot %d)",
                 pool->shm_name, r.slot);
        rc = -EPROTO;
        goto fail;
    }
    pool_build_class_table_(pool);
    pool->shared = true;
    pool->slot = r.slot;
    pool->pid = getpid();
    pa_store_relaxed(&pool->daemon_gen, r.gen); /* relaxed: not shared yet */
    size_t pl = strlen(path);
    if (pl < sizeof(pool->socket_path))
        memcpy(pool->socket_path, path, pl + 1);
    rc = pool_register_(pool);
    if (rc < 0) {
        snprintf(err, sizeof(err), "more than %d pools open in this process", POOL_MAX_OPEN);
        goto fail;
    }
    return pool;
fail:
    pool_set_error_("attach to poold at %s: %s", path, err);
fail_quiet:
    /* The slot poold gave us is freed by poold when the connection closes. */
    pool_free_handle_(pool);
    errno = -rc;
    return NULL;
}

int pool_hello_child_(pool_t *pool)
{
    /* The inherited connection is the parent's. */
    if (pool->sock >= 0) {
        close(pool->sock);
        pool->sock = -1;
    }
    pool_hello_reply_t r;
    int rc = pool_hello_(pool->socket_path, &r);
    if (rc < 0)
        return rc;
    if (!reply_fits(pool, &r)) {
        close(r.fd);
        return -EPROTO;
    }
    pool->sock = r.fd;
    pool->slot = r.slot;
    pool->pid = getpid();
    pa_store_relaxed(&pool->daemon_gen, r.gen); /* relaxed: under the process lock */
    return 0;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t); /* vDSO: no system call */
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void pool_rehello_locked_(pool_t *pool)
{
    if (!pool->shared || pool->slot < 0)
        return;
    /* relaxed: a hint that poold restarted; the HELLO reply is the truth. */
    uint64_t gen = pa_load_relaxed(&pool->seg.hdr->daemon_gen);
    if (gen == pa_load_relaxed(&pool->daemon_gen)) /* relaxed: under the process lock */
        return;
    uint64_t now = now_ns();
    if (now < pool->next_hello_ns)
        return;
    pool->next_hello_ns = now + REREGISTER_EVERY_NS;
    pool_hello_reply_t r;
    if (pool_hello_(pool->socket_path, &r) < 0)
        return;
    if (r.slot != pool->slot || !reply_fits(pool, &r)) {
        /* Not our slot or not our segment: keep what we have. */
        close(r.fd);
        return;
    }
    if (pool->sock >= 0)
        close(pool->sock);
    pool->sock = r.fd;
    pa_store_relaxed(&pool->daemon_gen, r.gen); /* relaxed: under the process lock */
}

void pool_bye_(pool_t *pool)
{
    if (pool->sock < 0 || pool->pid != getpid())
        return;
    static const char bye[] = "BYE\n";
    /* MSG_NOSIGNAL: poold may be gone; a library never raises SIGPIPE. */
    if (send(pool->sock, bye, sizeof(bye) - 1, MSG_NOSIGNAL) == (ssize_t)sizeof(bye) - 1) {
        char line[PPROTO_MAX_LINE + 1];
        (void)read_line(pool->sock, line, sizeof(line), 1000);
    }
}
