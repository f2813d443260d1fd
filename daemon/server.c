/* SPDX-License-Identifier: MIT */
/*
 * server.c: the control socket and its connections.
 *
 * Owns the AF_UNIX listener (either bound here: refusing to start when
 * another poold answers on the path, removing a stale socket otherwise,
 * owner-only or group permissions; or handed over by systemd's socket
 * unit, whose path, mode and group it never touches), the bounded set of connections (max_connections, idle
 * timeout for connections that are not attached workers, a read
 * high-watermark, an output bound that pauses reading), and line framing:
 * every complete line goes through pproto_parse_request_ex() and then to
 * commands.c; a line over max_line gets `ERR line-too-long` and the
 * connection closes once that reply is flushed. One client's garbage never
 * affects another. It must never parse protocol bytes itself, never log a
 * client's bytes unescaped, and never touch the segment (registry.c does).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <stddef.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "poold.h"

#define PD_READ_HIGH (16u * PPROTO_MAX_LINE) /* stop reading beyond this much input */
#define PD_OUT_HIGH (256u * 1024u)           /* stop reading while this much is unsent */
#define PD_CLOSE_FLUSH_SECONDS 5             /* give up flushing a closing connection */

int pd_server_init(pd_server_t *srv, const pd_config_t *cfg, struct event_base *base, char *err,
                   size_t errlen)
{
    memset(srv, 0, sizeof(*srv));
    srv->cfg = *cfg;
    srv->base = base;
    srv->started = time(NULL);
    srv->gid = -1;
    srv->lock_fd = -1;
    if (cfg->group[0]) {
        struct group *g = getgrnam(cfg->group);
        if (!g) {
            snprintf(err, errlen, "no group named '%s'", cfg->group);
            return -EINVAL;
        }
        srv->gid = (int)g->gr_gid;
    }
    return 0;
}

/* ---- connections ---- */

static void set_idle_timeout(pd_conn_t *c)
{
    uint32_t idle = c->srv->cfg.idle_timeout;
    if (c->closing)
        return;
    if (c->proc || idle == 0) {
        bufferevent_set_timeouts(c->bev, NULL, NULL);
    } else {
        struct timeval tv = {(time_t)idle, 0};
        bufferevent_set_timeouts(c->bev, &tv, NULL);
    }
}

void pd_server_apply_runtime(pd_server_t *srv)
{
    for (pd_conn_t *c = srv->conns; c; c = c->next)
        set_idle_timeout(c);
}

void pd_conn_close(pd_conn_t *c)
{
    pd_server_t *srv = c->srv;
    pd_proc_t *p = c->proc;
    if (p) {
        c->proc = NULL;
        pd_registry_conn_closed(srv, p);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    bufferevent_free(c->bev);
    pd_debug("connection %llu closed", (unsigned long long)c->id);
    free(c);
}

static void start_close(pd_conn_t *c)
{
    struct timeval tv = {PD_CLOSE_FLUSH_SECONDS, 0};
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_set_timeouts(c->bev, NULL, &tv);
}

int pd_server_dispatch(pd_server_t *srv, pd_conn_t *c, const char *line, size_t len,
                       struct evbuffer *out)
{
    pproto_req_t req;
    pproto_err_t e = PPROTO_ERR_NONE;
    const char *detail = NULL;
    int rc = pproto_parse_request_ex(line, len, &req, &e, &detail);
    if (rc < 0) {
        char esc[160];
        pd_log_escape(line, len, esc, sizeof(esc));
        pd_debug("connection %llu: %s (%s): \"%s\"", (unsigned long long)c->id, pproto_err_name(e),
                 detail ? detail : "?", esc);
        pd_reply_error(out, e, detail);
        return e == PPROTO_ERR_LINE_TOO_LONG ? PD_CMD_CLOSE : 0;
    }
    return pd_cmd_run(srv, c, &req, out);
}

/* Handle every complete line buffered; returns false when c was freed. */
static bool process_input(pd_conn_t *c)
{
    pd_server_t *srv = c->srv;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t max_line = srv->cfg.max_line;

    while (!c->closing) {
        if (evbuffer_get_length(out) > PD_OUT_HIGH) {
            /* The client does not read its replies: stop reading its
             * requests until the write callback sees the output drained. */
            c->paused = true;
            bufferevent_disable(c->bev, EV_READ);
            break;
        }
        size_t n = 0;
        char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
        if (!line) {
            /* No LF within max_line bytes: the line is too long. */
            if (evbuffer_get_length(in) >= max_line) {
                pd_warn_client("connection %llu: line longer than %zu bytes; closing it",
                               (unsigned long long)c->id, max_line);
                pd_reply_error(out, PPROTO_ERR_LINE_TOO_LONG, "line longer than 1024 bytes");
                start_close(c);
            }
            break;
        }
        int rc;
        if (n + 1 > max_line) {
            pd_warn_client("connection %llu: line of %zu bytes, over %zu; closing it",
                           (unsigned long long)c->id, n + 1, max_line);
            pd_reply_error(out, PPROTO_ERR_LINE_TOO_LONG, "line longer than 1024 bytes");
            rc = PD_CMD_CLOSE;
        } else {
            rc = pd_server_dispatch(srv, c, line, n, out);
        }
        free(line);
        if (rc == PD_CMD_CLOSE)
            start_close(c);
    }
    if (c->closing && evbuffer_get_length(out) == 0) {
        pd_conn_close(c);
        return false;
    }
    return true;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    process_input(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    pd_conn_t *c = arg;
    if (c->closing) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            pd_conn_close(c);
        return;
    }
    if (c->paused) {
        c->paused = false;
        bufferevent_enable(bev, EV_READ);
        process_input(c);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    pd_conn_t *c = arg;
    if (what & BEV_EVENT_TIMEOUT) {
        if (!c->closing)
            pd_info_client("connection %llu idle for %u s: closing it", (unsigned long long)c->id,
                           c->srv->cfg.idle_timeout);
    } else if (what & BEV_EVENT_ERROR) {
        pd_debug("connection %llu: %s", (unsigned long long)c->id,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    pd_conn_close(c);
}

pd_conn_t *pd_server_add_fd(pd_server_t *srv, int fd)
{
    pd_conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return NULL;
    }
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0 && clen == sizeof(cred)) {
        c->have_cred = true;
        c->peer_pid = cred.pid;
        c->peer_uid = cred.uid;
        c->peer_gid = cred.gid;
    }
    c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        free(c);
        return NULL;
    }
    c->srv = srv;
    c->id = ++srv->next_conn_id;
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, PD_READ_HIGH);
    set_idle_timeout(c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    pd_debug("connection %llu from pid %d uid %u", (unsigned long long)c->id,
             c->have_cred ? (int)c->peer_pid : -1, c->have_cred ? (unsigned)c->peer_uid : 0u);
    return c;
}

/* ---- listener ---- */

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    (void)l;
    (void)sa;
    (void)socklen;
    pd_server_t *srv = arg;
    if (srv->nconns >= srv->cfg.max_connections) {
        char buf[128];
        int n = pproto_encode_error(buf, sizeof(buf), PPROTO_ERR_INTERNAL, "too many connections");
        if (n > 0) {
            ssize_t w = send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
            (void)w; /* best effort: the peer may not read it */
        }
        close(fd);
        pd_warn_client("refused a connection: %u open, max_connections is %u", srv->nconns,
                       srv->cfg.max_connections);
        return;
    }
    if (!pd_server_add_fd(srv, fd))
        pd_error("out of memory accepting a connection");
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    /* EMFILE and friends: libevent keeps the listener; log and go on. */
    pd_error("accept on the control socket: %s",
             evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static int ensure_dir(pd_server_t *srv, const char *path, char *err, size_t errlen)
{
    char tmp[PD_PATH_MAX];
    struct stat st;
    snprintf(tmp, sizeof(tmp), "%s", path);
    const char *dir = dirname(tmp);
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "%s is not a directory", dir);
            return -ENOTDIR;
        }
        /* Someone else's directory that others may write (a squatted
         * /tmp/poold-$UID): they could swap our socket. */
        if (st.st_uid != geteuid() && st.st_uid != 0 && (st.st_mode & 0022)) {
            snprintf(err, errlen,
                     "%s belongs to uid %u and others may write it; refusing to "
                     "put the socket there",
                     dir, (unsigned)st.st_uid);
            return -EPERM;
        }
        return 0;
    }
    if (errno != ENOENT) {
        int e = errno;
        snprintf(err, errlen, "stat %s: %s", dir, strerror(e));
        return -e;
    }
    mode_t mode = srv->gid >= 0 ? 0750 : 0700;
    if (mkdir(dir, mode) < 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(e));
        return -e;
    }
    if (chmod(dir, mode) < 0 || (srv->gid >= 0 && chown(dir, (uid_t)-1, (gid_t)srv->gid) < 0)) {
        int e = errno;
        snprintf(err, errlen, "cannot set mode/group of %s: %s", dir, strerror(e));
        return -e;
    }
    pd_info("created %s (mode %04o)", dir, (unsigned)mode);
    return 0;
}

int pd_server_claim_socket(pd_server_t *srv, char *err, size_t errlen)
{
    const char *path = srv->cfg.socket;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    char lock[PATH_MAX];
    int rc;

    if (srv->lock_fd >= 0)
        return 0;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "socket path too long (%zu bytes, at most %zu): %s", strlen(path),
                 sizeof(sa.sun_path) - 1, path);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    rc = ensure_dir(srv, path, err, errlen);
    if (rc < 0)
        return rc;
    /* The lock: of two poolds started at once on one path, the second
     * stops here, before it touches the segment. Held until exit; the file
     * stays (removing a lock file races with its next taker). */
    snprintf(lock, sizeof(lock), "%s.lock", path);
    srv->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (srv->lock_fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open %s: %s", lock, strerror(-rc));
        return rc;
    }
    if (flock(srv->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? -EADDRINUSE : -errno;
        snprintf(err, errlen, "another poold is running on %s (it holds %s)", path, lock);
        close(srv->lock_fd);
        srv->lock_fd = -1;
        return rc;
    }

    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket; not removing it", path);
            return -EEXIST;
        }
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            snprintf(err, errlen, "socket: %s", strerror(-rc));
            return rc;
        }
        rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
        close(fd);
        if (rc == 0) {
            snprintf(err, errlen, "another poold is running on %s", path);
            return -EADDRINUSE;
        }
        if (unlink(path) < 0 && errno != ENOENT) {
            rc = -errno;
            snprintf(err, errlen, "cannot remove stale socket %s: %s", path, strerror(-rc));
            return rc;
        }
        pd_info("removed stale socket %s (%s)", path, strerror(-rc));
    }
    return 0;
}

int pd_server_listen(pd_server_t *srv, char *err, size_t errlen)
{
    const char *path = srv->cfg.socket;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    int rc = pd_server_claim_socket(srv, err, errlen);
    if (rc < 0)
        return rc;
    memcpy(sa.sun_path, path, strlen(path) + 1);

    /* Bind with a umask that leaves no window where others could connect. */
    mode_t mode = srv->gid >= 0 ? 0660 : 0600;
    mode_t old = umask(0777 & ~mode);
    srv->listener =
        evconnlistener_new_bind(srv->base, accept_cb, srv,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
                                128, (struct sockaddr *)&sa, (int)sizeof(sa));
    int bind_errno = errno;
    umask(old);
    if (!srv->listener) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(bind_errno));
        return -bind_errno;
    }
    srv->socket_owned = true;
    evconnlistener_set_error_cb(srv->listener, accept_error_cb);
    if (chmod(path, mode) < 0 || (srv->gid >= 0 && chown(path, (uid_t)-1, (gid_t)srv->gid) < 0)) {
        rc = -errno;
        snprintf(err, errlen, "cannot set mode/group of %s: %s", path, strerror(-rc));
        pd_server_stop_listening(srv);
        return rc;
    }
    if (lstat(path, &st) == 0)
        srv->socket_ino = st.st_ino;
    pd_info("listening on %s (mode %04o%s%s)", path, (unsigned)mode,
            srv->gid >= 0 ? ", group " : "", srv->gid >= 0 ? srv->cfg.group : "");
    return 0;
}

int pd_server_listen_fd(pd_server_t *srv, int fd, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    socklen_t sl = sizeof(sa);
    struct stat st;
    int rc;

    memset(&sa, 0, sizeof(sa));
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        rc = -errno;
        snprintf(err, errlen, "getsockname on the socket from systemd (fd %d): %s", fd,
                 strerror(-rc));
        return rc;
    }
    if (sa.sun_family != AF_UNIX) {
        snprintf(err, errlen, "the socket from systemd (fd %d) is not AF_UNIX", fd);
        return -EAFNOSUPPORT;
    }
    /* A path socket names its file; an abstract or unnamed one has none. */
    size_t plen = sl > offsetof(struct sockaddr_un, sun_path)
                      ? (size_t)sl - offsetof(struct sockaddr_un, sun_path)
                      : 0;
    char path[PD_PATH_MAX] = "";
    if (plen > 0 && sa.sun_path[0] != '\0')
        snprintf(path, sizeof(path), "%.*s", (int)strnlen(sa.sun_path, plen), sa.sun_path);
    if (path[0] && strcmp(path, srv->cfg.socket) != 0) {
        pd_warn("systemd handed over %s, not the configured %s: serving %s", path, srv->cfg.socket,
                path);
        snprintf(srv->cfg.socket, sizeof(srv->cfg.socket), "%s", path);
    }
    if (evutil_make_socket_nonblocking(fd) < 0 || evutil_make_socket_closeonexec(fd) < 0) {
        rc = -errno;
        snprintf(err, errlen, "fcntl on the socket from systemd (fd %d): %s", fd, strerror(-rc));
        return rc;
    }
    /* Backlog 0: it listens already. The path, its mode and group are the
     * socket unit's (SocketMode=, SocketGroup=): never chmod or unlink. */
    srv->listener = evconnlistener_new(srv->base, accept_cb, srv,
                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (!srv->listener) {
        rc = errno ? -errno : -ENOMEM;
        snprintf(err, errlen, "cannot accept on the socket from systemd (fd %d): %s", fd,
                 strerror(-rc));
        return rc;
    }
    srv->socket_owned = false;
    srv->socket_handed = true;
    evconnlistener_set_error_cb(srv->listener, accept_error_cb);
    if (path[0] && stat(path, &st) == 0) {
        pd_info("listening on %s, handed over by systemd (mode %04o, uid %u, gid %u)", path,
                (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, (unsigned)st.st_gid);
        if (st.st_mode & 0007)
            pd_warn("%s is open to all users (mode %04o): check SocketMode= in poold.socket", path,
                    (unsigned)(st.st_mode & 07777));
    } else {
        pd_info("listening on a socket handed over by systemd (fd %d%s%s)", fd,
                path[0] ? ", " : ", no path", path);
    }
    return 0;
}

void pd_server_pause_listening(pd_server_t *srv)
{
    /* Connections not yet accepted stay queued in the socket: with a socket
     * handed over by systemd, the next poold accepts them. */
    if (srv->listener)
        evconnlistener_disable(srv->listener);
}

void pd_server_stop_listening(pd_server_t *srv)
{
    if (srv->listener) {
        evconnlistener_free(srv->listener);
        srv->listener = NULL;
    }
    if (srv->socket_owned) {
        struct stat st;
        /* Only our own socket: a successor may have bound the path since. */
        if (lstat(srv->cfg.socket, &st) == 0 && S_ISSOCK(st.st_mode) &&
            st.st_ino == srv->socket_ino)
            unlink(srv->cfg.socket);
        srv->socket_owned = false;
    }
}

void pd_server_free(pd_server_t *srv)
{
    pd_metrics_stop(srv);
    pd_server_stop_listening(srv);
    while (srv->conns)
        pd_conn_close(srv->conns);
    pd_registry_free(srv);
    pd_segment_close(srv);
    if (srv->lock_fd >= 0)
        close(srv->lock_fd);
    srv->lock_fd = -1;
}
