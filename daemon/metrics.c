/* SPDX-License-Identifier: MIT */
/*
 * metrics.c: the opt-in Prometheus endpoint (--metrics HOST:PORT), served
 * with evhttp on poold's one event loop, and the renderer that turns a
 * STATS body into Prometheus text exposition 0.0.4 with the names of
 * docs/stats.md: `# pool` key k -> poold_k; class field f ->
 * poold_class_f{size="..."} (counters get _total); process field f ->
 * poold_proc_f{pid="...",name="..."}.
 *
 * GET /metrics only: other paths get 404, other methods 405; every handler
 * ends in evhttp_send_reply or evhttp_send_error. Off by default; a bind
 * to a non-loopback host is allowed (the host was given explicitly) but
 * logged as a warning. It must never write the segment and never block.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "poold.h"

/* ---- renderer ---- */

typedef struct row {
    const char *val;
    size_t len;
} row_t;

static bool is_number(const char *s, size_t n)
{
    int64_t i;
    uint64_t u;
    return pproto_parse_u64(s, n, &u) == 0 || pproto_parse_i64(s, n, &i) == 0;
}

/* Value of sub-key `key` in a row, or NULL. */
static bool row_get(const row_t *r, const char *key, const char **v, size_t *vn)
{
    const char *c = r->val, *e = r->val + r->len;
    pproto_subkv_t kv;
    size_t kl = strlen(key);
    while (pproto_subkv_next(&c, e, &kv) > 0) {
        if (kv.key_len == kl && memcmp(kv.key, key, kl) == 0) {
            *v = kv.val;
            *vn = kv.val_len;
            return true;
        }
    }
    return false;
}

static void add_label(struct evbuffer *out, const char *name, const char *v, size_t n, bool first)
{
    evbuffer_add_printf(out, "%s%s=\"", first ? "" : ",", name);
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '\\' || v[i] == '"')
            evbuffer_add(out, "\\", 1);
        evbuffer_add(out, &v[i], 1);
    }
    evbuffer_add(out, "\"", 1);
}

static bool class_counter(const char *f, size_t n)
{
    static const char *const counters[] = {"allocs", "frees", "reuses", "same_address",
                                           "cache_misses", "central_misses", "exhausted"};
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
        if (strlen(counters[i]) == n && memcmp(counters[i], f, n) == 0)
            return true;
    return false;
}

/* One metric family per sub-key of the first row, over every row. */
static void render_rows(struct evbuffer *out, const row_t *rows, size_t nrows, bool procs)
{
    if (nrows == 0)
        return;
    const char *c = rows[0].val, *e = rows[0].val + rows[0].len;
    pproto_subkv_t f;
    while (pproto_subkv_next(&c, e, &f) > 0) {
        if (!procs && f.key_len == 4 && memcmp(f.key, "size", 4) == 0)
            continue; /* the label */
        if (procs && ((f.key_len == 3 && memcmp(f.key, "pid", 3) == 0) ||
                      (f.key_len == 4 && memcmp(f.key, "name", 4) == 0)))
            continue;
        char fname[PPROTO_MAX_KEY + 1];
        memcpy(fname, f.key, f.key_len);
        fname[f.key_len] = '\0';
        bool counter = !procs && class_counter(f.key, f.key_len);
        const char *prefix = procs ? "poold_proc_" : "poold_class_";
        const char *suffix = counter ? "_total" : "";
        evbuffer_add_printf(out, "# TYPE %s%s%s %s\n", prefix, fname, suffix,
                            counter ? "counter" : "gauge");
        for (size_t r = 0; r < nrows; r++) {
            const char *v, *lv;
            size_t vn, ln;
            if (!row_get(&rows[r], fname, &v, &vn) || !is_number(v, vn))
                continue;
            evbuffer_add_printf(out, "%s%s%s{", prefix, fname, suffix);
            if (procs) {
                if (row_get(&rows[r], "pid", &lv, &ln))
                    add_label(out, "pid", lv, ln, true);
                if (!row_get(&rows[r], "name", &lv, &ln))
                    lv = "", ln = 0;
                add_label(out, "name", lv, ln, false);
            } else if (row_get(&rows[r], "size", &lv, &ln)) {
                add_label(out, "size", lv, ln, true);
            }
            evbuffer_add(out, "} ", 2);
            evbuffer_add(out, v, vn);
            evbuffer_add(out, "\n", 1);
        }
    }
}

int pd_render_prometheus(const char *info, size_t len, struct evbuffer *out)
{
    enum { S_NONE, S_POOL, S_CLASSES, S_PROCS, S_OTHER } sec = S_NONE;
    row_t *classes = NULL, *procs = NULL;
    size_t ncls = 0, nprocs = 0, cap = 0;
    const char *p = info, *end = info + len;
    int rc = 0;

    /* Rows are at most one per line: bound the arrays by the line count. */
    for (const char *q = info; q < end; q++)
        cap += *q == '\n';
    classes = calloc(cap + 1, sizeof(*classes));
    procs = calloc(cap + 1, sizeof(*procs));
    if (!classes || !procs) {
        rc = -ENOMEM;
        goto out;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *line = p;
        p = nl ? nl + 1 : end;
        if (n == 2 && memcmp(line, "OK", 2) == 0)
            continue;
        pproto_info_line_t il;
        int k = pproto_parse_info_line(line, n, &il);
        if (k < 0) {
            rc = -EINVAL;
            goto out;
        }
        if (k == PPROTO_INFO_END)
            break;
        if (k == PPROTO_INFO_SECTION) {
            sec = il.key_len == 4 && memcmp(il.key, "pool", 4) == 0          ? S_POOL
                  : il.key_len == 7 && memcmp(il.key, "classes", 7) == 0     ? S_CLASSES
                  : il.key_len == 9 && memcmp(il.key, "processes", 9) == 0 ? S_PROCS
                                                                               : S_OTHER;
            continue;
        }
        if (k != PPROTO_INFO_KV)
            continue;
        if (sec == S_POOL && is_number(il.val, il.val_len)) {
            bool counter = il.key_len > 6 && memcmp(il.key + il.key_len - 6, "_total", 6) == 0;
            evbuffer_add_printf(out, "# TYPE poold_%.*s %s\npoold_%.*s ", (int)il.key_len, il.key,
                                counter ? "counter" : "gauge", (int)il.key_len, il.key);
            evbuffer_add(out, il.val, il.val_len);
            evbuffer_add(out, "\n", 1);
        } else if (sec == S_CLASSES) {
            classes[ncls++] = (row_t){il.val, il.val_len};
        } else if (sec == S_PROCS) {
            procs[nprocs++] = (row_t){il.val, il.val_len};
        }
    }
    render_rows(out, classes, ncls, false);
    render_rows(out, procs, nprocs, true);
out:
    free(classes);
    free(procs);
    return rc;
}

/* ---- the endpoint ---- */

static void metrics_cb(struct evhttp_request *req, void *arg)
{
    pd_server_t *srv = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || strcmp(path, "/metrics") != 0) {
        evhttp_send_error(req, HTTP_NOTFOUND, "Not Found (try /metrics)");
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
        evhttp_send_error(req, 405, "Method Not Allowed");
        return;
    }
    char *text = NULL;
    size_t len = 0;
    struct evbuffer *body = evbuffer_new();
    if (!body || pd_stats_build(srv, PPROTO_STATS, &text, &len) < 0 ||
        pd_render_prometheus(text, len, body) < 0) {
        free(text);
        if (body)
            evbuffer_free(body);
        evhttp_send_error(req, HTTP_INTERNAL, "cannot build the statistics");
        return;
    }
    free(text);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
}

static bool is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

int pd_metrics_start(pd_server_t *srv, const char *endpoint, char *err, size_t errlen)
{
    char host[PD_STR_MAX];
    const char *colon = strrchr(endpoint, ':');
    if (!colon || colon == endpoint || (size_t)(colon - endpoint) >= sizeof(host)) {
        snprintf(err, errlen, "metrics: '%s' is not HOST:PORT", endpoint);
        return -EINVAL;
    }
    size_t hl = (size_t)(colon - endpoint);
    memcpy(host, endpoint, hl);
    host[hl] = '\0';
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') { /* [::1]:9464 */
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    unsigned long port = strtoul(colon + 1, NULL, 10);
    if (port == 0 || port > 65535) {
        snprintf(err, errlen, "metrics: bad port in '%s'", endpoint);
        return -EINVAL;
    }
    if (!is_loopback(host))
        pd_warn("metrics endpoint on %s is not loopback: anyone who reaches it can read the "
                "pool's statistics",
                host);
    struct evhttp *http = evhttp_new(srv->base);
    if (!http) {
        snprintf(err, errlen, "metrics: out of memory");
        return -ENOMEM;
    }
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                         EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_timeout(http, 10);
    evhttp_set_max_headers_size(http, 8192);
    evhttp_set_max_body_size(http, 4096);
    evhttp_set_gencb(http, metrics_cb, srv);
    if (!evhttp_bind_socket_with_handle(http, host, (uint16_t)port)) {
        int e = errno;
        evhttp_free(http);
        snprintf(err, errlen, "metrics: cannot listen on %s: %s", endpoint,
                 e ? strerror(e) : "bind failed");
        return e ? -e : -EADDRNOTAVAIL;
    }
    srv->http = http;
    snprintf(srv->http_bound, sizeof(srv->http_bound), "%s", endpoint);
    pd_info("serving Prometheus metrics on http://%s/metrics", endpoint);
    return 0;
}

void pd_metrics_stop(pd_server_t *srv)
{
    if (srv->http) {
        evhttp_free(srv->http);
        srv->http = NULL;
        pd_info("metrics endpoint %s closed", srv->http_bound);
        srv->http_bound[0] = '\0';
    }
}
