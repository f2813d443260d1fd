/* SPDX-License-Identifier: MIT */
/*
 * commands.c: one handler per verb of the control protocol (proto/PROTOCOL.md).
 *
 * Each handler takes the server, the connection, the parsed request and the
 * connection's output buffer, appends exactly one reply (built with the
 * pproto_buf builder or pproto_encode_error) and returns 0, or PD_CMD_CLOSE
 * when the connection must close once the reply is flushed. HELLO checks
 * the peer's SO_PEERCRED credentials, the ABI and finds or claims the
 * process slot; BYE forgets the registration. Handlers never read the
 * socket, never block, and never write a reply by hand.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "poold.h"

void pd_reply_error(struct evbuffer *out, pproto_err_t e, const char *msg)
{
    char buf[PPROTO_MAX_LINE + 1];
    int n = pproto_encode_error(buf, sizeof(buf), e, msg);
    if (n > 0)
        evbuffer_add(out, buf, (size_t)n);
}

static int send_buf(struct evbuffer *out, const pproto_buf_t *b)
{
    int n = pproto_buf_result(b);
    if (n < 0) {
        pd_reply_error(out, PPROTO_ERR_INTERNAL, "reply does not fit");
        return 0;
    }
    evbuffer_add(out, b->p, (size_t)n);
    return 0;
}

static bool in_group(uid_t uid, gid_t want)
{
    struct passwd pw, *res = NULL;
    char pwbuf[4096];
    if (getpwuid_r(uid, &pw, pwbuf, sizeof(pwbuf), &res) != 0 || !res)
        return false;
    if (pw.pw_gid == want)
        return true;
    int n = 64;
    gid_t *groups = NULL;
    bool found = false;
    for (int tries = 0; tries < 4; tries++) {
        gid_t *g = realloc(groups, (size_t)n * sizeof(*g));
        if (!g)
            break;
        groups = g;
        int m = n;
        if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &m) >= 0) {
            for (int i = 0; i < m && !found; i++)
                found = groups[i] == want;
            break;
        }
        n = m > n ? m : n * 2; /* too small: m holds the needed count */
    }
    free(groups);
    return found;
}

bool pd_peer_allowed(const pd_server_t *srv, uid_t uid, gid_t gid)
{
    if (uid == 0 || uid == geteuid())
        return true;
    if (srv->gid < 0)
        return false;
    return gid == (gid_t)srv->gid || in_group(uid, (gid_t)srv->gid);
}

int pd_cmd_ping(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out)
{
    (void)srv;
    (void)c;
    (void)req;
    char line[64];
    pproto_buf_t b;
    pproto_buf_init(&b, line, sizeof(line));
    pproto_buf_add_str(&b, "OK pong");
    pproto_buf_end_line(&b);
    return send_buf(out, &b);
}

int pd_cmd_version(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out)
{
    (void)srv;
    (void)c;
    (void)req;
    char line[PPROTO_MAX_LINE];
    pproto_buf_t b;
    pproto_buf_init(&b, line, sizeof(line));
    pproto_buf_add_str(&b, "OK");
    pproto_buf_add_kv_str(&b, "version", PD_VERSION);
    pproto_buf_add_kv_u64(&b, "proto", PPROTO_WIRE_VERSION);
    pproto_buf_add_kv_u64(&b, "abi", PSHM_ABI_VERSION);
    pproto_buf_end_line(&b);
    return send_buf(out, &b);
}

static int body(pd_server_t *srv, pproto_verb_t verb, struct evbuffer *out)
{
    char *text = NULL;
    size_t len = 0;
    int rc = pd_stats_build(srv, verb, &text, &len);
    if (rc < 0) {
        pd_error("building the %s reply: %s", pproto_verb_name(verb), strerror(-rc));
        pd_reply_error(out, PPROTO_ERR_INTERNAL, "cannot build the statistics");
        return 0;
    }
    evbuffer_add(out, text, len);
    free(text);
    return 0;
}

int pd_cmd_stats(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out)
{
    (void)c;
    (void)req;
    return body(srv, PPROTO_STATS, out);
}

int pd_cmd_procs(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out)
{
    (void)c;
    (void)req;
    return body(srv, PPROTO_PROCS, out);
}

int pd_cmd_classes(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out)
{
    (void)c;
    (void)req;
    return body(srv, PPROTO_CLASSES, out);
}

int pd_cmd_hello(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out)
{
    char msg[PPROTO_MAX_MSG + 1];

    if (c->proc) {
        snprintf(msg, sizeof(msg), "this connection is already attached (pid %d, slot %u)",
                 (int)c->proc->pid, c->proc->slot);
        pd_reply_error(out, PPROTO_ERR_ALREADY_ATTACHED, msg);
        return 0;
    }
    if (!c->have_cred) {
        pd_reply_error(out, PPROTO_ERR_PERMISSION_DENIED, "cannot read the peer's credentials");
        return 0;
    }
    if (srv->corrupt) {
        /* No new process gets blocks that may be handed out twice. */
        snprintf(msg, sizeof(msg),
                 "segment %s is corrupt, no new attaches (poolctl stats; poold's log): %.100s",
                 srv->cfg.shm_name, srv->corrupt_what);
        pd_warn_client("HELLO from pid %d refused: the segment is corrupt", (int)req->pid);
        pd_reply_error(out, PPROTO_ERR_POOL_CORRUPT, msg);
        return 0;
    }
    if (req->pid != (int32_t)c->peer_pid) {
        snprintf(msg, sizeof(msg), "pid=%d is not the peer's pid", (int)req->pid);
        pd_warn_client("HELLO refused: pid=%d but the peer is pid %d (uid %u)", (int)req->pid,
                       (int)c->peer_pid, (unsigned)c->peer_uid);
        pd_reply_error(out, PPROTO_ERR_PERMISSION_DENIED, msg);
        return 0;
    }
    if (!pd_peer_allowed(srv, c->peer_uid, c->peer_gid)) {
        snprintf(msg, sizeof(msg), "uid %u may not attach%s%s", (unsigned)c->peer_uid,
                 srv->gid >= 0 ? ": not in group " : " (owner only)",
                 srv->gid >= 0 ? srv->cfg.group : "");
        pd_warn_client("HELLO refused: pid %d uid %u gid %u may not attach", (int)c->peer_pid,
                       (unsigned)c->peer_uid, (unsigned)c->peer_gid);
        pd_reply_error(out, PPROTO_ERR_PERMISSION_DENIED, msg);
        return 0;
    }
    if (req->abi != PSHM_ABI_VERSION) {
        snprintf(msg, sizeof(msg), "daemon serves abi %u, client sent abi %u", PSHM_ABI_VERSION,
                 req->abi);
        pd_reply_error(out, PPROTO_ERR_ABI_MISMATCH, msg);
        return 0;
    }

    pid_t pid = (pid_t)req->pid;
    bool reused;
    pd_proc_t *p;
    int slot = pd_registry_attach(srv, pid, req->image, req->name, &p, &reused);
    if (slot == -EBUSY) {
        snprintf(msg, sizeof(msg), "no free process slot (all %u taken)", srv->seg.max_procs);
        pd_warn_client("HELLO from pid %d refused: all %u process slots are taken", (int)pid,
                       srv->seg.max_procs);
        pd_reply_error(out, PPROTO_ERR_SLOTS_FULL, msg);
        return 0;
    }
    if (slot < 0) {
        pd_reply_error(out, PPROTO_ERR_INTERNAL,
                       slot == -ENOMEM ? "out of memory" : "cannot claim a process slot");
        return 0;
    }
    p->nconn++; /* a process may hold several connections (several pools) */
    c->proc = p;
    bufferevent_set_timeouts(c->bev, NULL, NULL); /* attached workers never idle out */

    char line[PPROTO_MAX_LINE];
    pproto_buf_t b;
    pproto_buf_init(&b, line, sizeof(line));
    pproto_buf_add_str(&b, "OK");
    pproto_buf_add_kv_str(&b, "shm", srv->cfg.shm_name);
    pproto_buf_add_kv_u64(&b, "abi", PSHM_ABI_VERSION);
    pproto_buf_add_kv_u64(&b, "slot", (uint64_t)slot);
    pproto_buf_add_kv_u64(&b, "size", srv->seg.bytes);
    pproto_buf_add_kv_u64(&b, "max_procs", srv->seg.max_procs);
    pproto_buf_add_kv_u64(&b, "gen", srv->gen);
    pproto_buf_end_line(&b);
    pd_info_client("%s pid %d (%s) uid %u in slot %d", reused ? "re-registered" : "attached",
                   (int)pid, p->name[0] ? p->name : "unnamed", (unsigned)c->peer_uid, slot);
    return send_buf(out, &b);
}

int pd_cmd_bye(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out)
{
    (void)req;
    pd_proc_t *p = c->proc;
    if (!p) {
        pd_reply_error(out, PPROTO_ERR_NOT_ATTACHED, "this connection has not sent HELLO");
        return 0;
    }
    c->proc = NULL;
    if (p->nconn > 0)
        p->nconn--;
    if (p->nconn > 0) {
        /* Another connection of this process (another pool) still holds it. */
        pd_info_client("pid %d (%s) said BYE on one of its connections", (int)p->pid,
                       p->name[0] ? p->name : "unnamed");
    } else {
        /* The library gave back its caches and freed its slot before BYE.
         * If the slot is still held by this pid (it did not), keep watching
         * it by pidfd and reclaim it when the process dies; never touch it
         * otherwise. */
        bool held = pd_registry_holds(srv, p);
        pd_info_client("pid %d (%s) said BYE%s", (int)p->pid, p->name[0] ? p->name : "unnamed",
                       held ? "; its slot is still held, watching it" : "");
        if (!held)
            pd_registry_forget(srv, p);
    }
    char line[32];
    pproto_buf_t b;
    pproto_buf_init(&b, line, sizeof(line));
    pproto_buf_add_str(&b, "OK bye");
    pproto_buf_end_line(&b);
    send_buf(out, &b);
    return PD_CMD_CLOSE;
}

int pd_cmd_run(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out)
{
    static const pd_cmd_fn table[] = {
        [PPROTO_HELLO] = pd_cmd_hello,     [PPROTO_BYE] = pd_cmd_bye,
        [PPROTO_STATS] = pd_cmd_stats,     [PPROTO_PROCS] = pd_cmd_procs,
        [PPROTO_CLASSES] = pd_cmd_classes, [PPROTO_PING] = pd_cmd_ping,
        [PPROTO_VERSION] = pd_cmd_version,
    };
    unsigned v = (unsigned)req->verb;
    if (v >= sizeof(table) / sizeof(table[0]) || !table[v]) {
        pd_reply_error(out, PPROTO_ERR_UNKNOWN_VERB, NULL);
        return 0;
    }
    return table[v](srv, c, req, out);
}
