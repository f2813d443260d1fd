/* SPDX-License-Identifier: MIT */
/*
 * metrics.c: the opt-in Prometheus endpoint (--metrics HOST:PORT), served
 * with evhttp on poold's one event loop, and the renderer that turns a
 * STATS body into Prometheus text exposition 0.0.4 with the names of
 * docs/stats.md, through proto's pproto_render_prometheus() so that
 * /metrics and `poolctl stats --prometheus` are the same text.
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

#include "poold.h"

/* ---- renderer ---- */

int pd_render_prometheus(const char *info, size_t len, struct evbuffer *out)
{
    /* proto/ renders (the same text as `poolctl stats --prometheus`); it
     * wants the body after the OK line. */
    if (len >= 3 && memcmp(info, "OK\n", 3) == 0) {
        info += 3;
        len -= 3;
    }
    size_t cap = 4 * len + 65536;
    for (int tries = 0; tries < 6; tries++, cap *= 2) {
        char *text = malloc(cap);
        pproto_buf_t b;
        if (!text)
            return -ENOMEM;
        pproto_buf_init(&b, text, cap);
        int rc = pproto_render_prometheus(info, len, &b);
        if (rc >= 0)
            evbuffer_add(out, text, (size_t)rc);
        free(text);
        if (rc != -ENOSPC)
            return rc < 0 ? rc : 0;
    }
    return -ENOSPC;
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
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                         EVHTTP_REQ_PATCH);
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
