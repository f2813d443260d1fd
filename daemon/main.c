/* SPDX-License-Identifier: MIT */
/*
 * main.c: poold's entry point: command line, configuration precedence
 * (defaults < config file < flags), lifecycle, signals and sd_notify.
 *
 * Start-up order: settings, the control socket (one handed over by systemd
 * through sd_listen_fds(), validated as a listening AF_UNIX stream socket,
 * else bound here; another poold on the path is exit 1), the segment (create or adopt; a refused segment is exit 1), the
 * optional metrics endpoint, then READY=1 once the listener accepts. SIGTERM
 * and SIGINT stop cleanly: STOPPING=1, close the listener, unlink the
 * socket, and KEEP the segment (workers keep allocating while poold is down;
 * the next poold adopts it). SIGHUP re-reads the configuration and applies
 * what may change at run time. Signals arrive through evsignal events: no
 * logic runs in a raw signal handler. Under a systemd watchdog
 * (WatchdogSec=), a timer of the event loop sends WATCHDOG=1 at half the
 * interval: a loop that hangs stops the pings and systemd restarts poold.
 * Exit codes: 0 clean stop, 1 start-up
 * failure, 2 usage or configuration error.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "poold.h"

#define STATUS_SECONDS 5
#define MAX_OVERRIDES 64

typedef struct override {
    const char *name; /* directive */
    const char *value;
} override_t;

typedef struct app {
    pd_server_t srv;
    const char *config_path;
    override_t ov[MAX_OVERRIDES];
    size_t nov;
    struct event *ev_term, *ev_int, *ev_hup, *ev_status;
    struct event *ev_watchdog; /* NULL without WatchdogSec= */
} app_t;

static void usage(FILE *f)
{
    size_t n;
    const pd_directive_info_t *d = pd_config_directives(&n);
    fprintf(f, "usage: poold [--config FILE] [--socket PATH] [--shm-name NAME] [--size BYTES]\n"
               "             [--classes LIST] [--max-procs N] [--metrics HOST:PORT]\n"
               "             [--log-level LEVEL] [--group NAME] [--help] [--version]\n\n"
               "poold serves a shared-memory pool allocator to the processes that attach to\n"
               "it with libpoolclient. It runs in the foreground and logs to stderr.\n\n"
               "  --config FILE        read settings from FILE (key = value); flags win over it\n");
    for (size_t i = 0; i < n; i++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "%s", d[i].name);
        for (char *p = flag; *p; p++)
            if (*p == '_')
                *p = '-';
        fprintf(f, "  --%-18s %s%s%s%s%s\n", flag, d[i].help, d[i].deflt[0] ? " [default: " : "",
                d[i].deflt, d[i].deflt[0] ? "]" : "", d[i].runtime ? " (SIGHUP reloads it)" : "");
    }
    fprintf(f, "  --help               this text\n"
               "  --version            print the version and exit\n\n"
               "Exit status: 0 clean stop, 1 start-up failure, 2 usage or configuration error.\n");
}

/* Defaults, then the file, then the flags. */
static int build_config(const app_t *app, pd_config_t *cfg, char *err, size_t errlen)
{
    char e[400];
    int rc;
    pd_config_defaults(cfg);
    if (app->config_path && (rc = pd_config_load(cfg, app->config_path, err, errlen)) < 0)
        return rc;
    for (size_t i = 0; i < app->nov; i++) {
        if ((rc = pd_config_set(cfg, app->ov[i].name, app->ov[i].value, e, sizeof(e))) < 0) {
            snprintf(err, errlen, "--%s", e);
            for (char *p = err + 2; *p && *p != ':'; p++)
                if (*p == '_')
                    *p = '-';
            return rc;
        }
    }
    return pd_config_finalize(cfg, err, errlen);
}

static void notify_status(pd_server_t *srv)
{
    char s[256];
    pd_stats_summary(srv, s, sizeof(s));
    sd_notifyf(0, "STATUS=%s", s);
}

static void on_status(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    notify_status(&((app_t *)arg)->srv);
}

/* Runs only when the loop does: a hung loop sends no WATCHDOG=1. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    sd_notify(0, "WATCHDOG=1");
}

/* The control socket: the one systemd hands over (poold.socket), else bind
 * cfg.socket. */
static int listen_control(pd_server_t *srv, char *err, size_t errlen)
{
    int n = sd_listen_fds(1);
    if (n < 0) {
        snprintf(err, errlen, "sd_listen_fds: %s", strerror(-n));
        return n;
    }
    if (n == 0)
        return pd_server_listen(srv, err, errlen);
    if (n > 1) {
        snprintf(err, errlen, "systemd handed over %d sockets; poold takes exactly one", n);
        return -EINVAL;
    }
    int fd = SD_LISTEN_FDS_START;
    int r = sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0);
    if (r <= 0) {
        snprintf(err, errlen,
                 "the socket systemd handed over (fd %d) is not a listening AF_UNIX stream "
                 "socket%s%s",
                 fd, r < 0 ? ": " : "", r < 0 ? strerror(-r) : "");
        return r < 0 ? r : -ENOTSOCK;
    }
    return pd_server_listen_fd(srv, fd, err, errlen);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    app_t *app = arg;
    /* Accept nothing more: what is still queued on a socket from systemd
     * goes to the next poold. */
    pd_server_pause_listening(&app->srv);
    pd_info("received %s: shutting down (the segment %s stays for the workers)",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", app->srv.cfg.shm_name);
    sd_notify(0, "STOPPING=1");
    event_base_loopexit(app->srv.base, NULL);
}

static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    app_t *app = arg;
    pd_server_t *srv = &app->srv;
    pd_config_t next;
    char err[512];
    size_t n;
    const pd_directive_info_t *d = pd_config_directives(&n);

    pd_info("received SIGHUP: reloading %s", app->config_path ? app->config_path : "(no file)");
    /* systemd shows "reloading" until READY=1 comes back below. */
    sd_notify(0, "RELOADING=1");
    if (build_config(app, &next, err, sizeof(err)) < 0) {
        pd_error("reload failed: %s; keeping the current settings", err);
        sd_notify(0, "READY=1");
        return;
    }
    bool metrics_changed = false;
    int changes = 0;
    for (size_t i = 0; i < n; i++) {
        char was[PD_STR_MAX], now[PD_STR_MAX];
        pd_config_format(&srv->cfg, d[i].name, was, sizeof(was));
        pd_config_format(&next, d[i].name, now, sizeof(now));
        if (strcmp(was, now) == 0)
            continue;
        changes++;
        if (!d[i].runtime) {
            pd_warn("reload: %s changed (%s -> %s) but needs a restart; keeping %s", d[i].name,
                    was[0] ? was : "(none)", now[0] ? now : "(none)", was[0] ? was : "(none)");
            continue;
        }
        pd_info("reload: %s %s -> %s", d[i].name, was[0] ? was : "(none)", now[0] ? now : "(none)");
        if (strcmp(d[i].name, "metrics") == 0)
            metrics_changed = true;
    }
    srv->cfg.log_level = next.log_level;
    pd_log_set_level(next.log_level);
    srv->cfg.idle_timeout = next.idle_timeout;
    srv->cfg.max_connections = next.max_connections;
    srv->cfg.orphans_keep = next.orphans_keep;
    pd_server_apply_runtime(srv);
    if (metrics_changed) {
        pd_metrics_stop(srv);
        snprintf(srv->cfg.metrics, sizeof(srv->cfg.metrics), "%s", next.metrics);
        if (srv->cfg.metrics[0] && pd_metrics_start(srv, srv->cfg.metrics, err, sizeof(err)) < 0)
            pd_error("reload: %s; metrics are off", err);
    }
    if (changes == 0)
        pd_info("reload: nothing changed");
    sd_notify(0, "READY=1");
    notify_status(srv);
}

static int add_override(app_t *app, const char *name, const char *value)
{
    if (app->nov == MAX_OVERRIDES)
        return -E2BIG;
    app->ov[app->nov++] = (override_t){name, value};
    return 0;
}

int main(int argc, char **argv)
{
    static app_t app;
    pd_server_t *srv = &app.srv;
    struct event_base *base = NULL;
    pd_config_t cfg;
    char err[512];
    int status = 1;
    size_t n;
    const pd_directive_info_t *d = pd_config_directives(&n);

    /* Every directive is also a flag: --shm-name for shm_name. */
    struct option *opts = calloc(n + 4, sizeof(*opts));
    char(*flags)[64] = calloc(n, sizeof(*flags));
    if (!opts || !flags) {
        fprintf(stderr, "poold: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(flags[i], sizeof(flags[i]), "%s", d[i].name);
        for (char *p = flags[i]; *p; p++)
            if (*p == '_')
                *p = '-';
        opts[i] = (struct option){flags[i], required_argument, NULL, 1000 + (int)i};
    }
    opts[n] = (struct option){"config", required_argument, NULL, 'c'};
    opts[n + 1] = (struct option){"help", no_argument, NULL, 'h'};
    opts[n + 2] = (struct option){"version", no_argument, NULL, 'V'};

    int ch;
    while ((ch = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        if (ch == 'c') {
            app.config_path = optarg;
        } else if (ch == 'h') {
            usage(stdout);
            status = 0;
            goto out;
        } else if (ch == 'V') {
            printf("poold %s (segment abi %u, protocol %u)\n", PD_VERSION, PSHM_ABI_VERSION,
                   PPROTO_WIRE_VERSION);
            status = 0;
            goto out;
        } else if (ch >= 1000 && ch < 1000 + (int)n) {
            if (add_override(&app, d[ch - 1000].name, optarg) < 0) {
                fprintf(stderr, "poold: too many flags\n");
                status = 2;
                goto out;
            }
        } else {
            usage(stderr);
            status = 2;
            goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "poold: unexpected argument '%s' (see --help)\n", argv[optind]);
        status = 2;
        goto out;
    }

    pd_log_init();
    if (build_config(&app, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "poold: %s\n", err);
        status = 2;
        goto out;
    }
    pd_log_set_level(cfg.log_level);
    pd_info("poold %s starting (pid %d, uid %u, segment abi %u)", PD_VERSION, (int)getpid(),
            (unsigned)geteuid(), PSHM_ABI_VERSION);
    pd_info("config file: %s", app.config_path ? app.config_path : "(none)");
    pd_config_log(&cfg);

    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    if (!base) {
        pd_error("cannot create the event loop");
        goto out;
    }
    if (pd_server_init(srv, &cfg, base, err, sizeof(err)) < 0) {
        pd_error("%s", err);
        status = 2;
        goto out;
    }
    /* The socket first: when another poold answers on it, stop before
     * touching the segment (adopting bumps its generation). Nothing is
     * accepted before the loop runs, by then the segment is ready. */
    if (listen_control(srv, err, sizeof(err)) < 0) {
        pd_error("%s", err);
        goto out;
    }
    if (pd_segment_open(srv, err, sizeof(err)) < 0) {
        pd_error("%s", err);
        goto out;
    }
    if (pd_registry_start_sweep(srv) < 0) {
        pd_error("cannot start the reclaim sweep");
        goto out;
    }
    if (pd_integrity_start(srv) < 0) {
        pd_error("cannot start the corruption checks");
        goto out;
    }
    if (cfg.metrics[0] && pd_metrics_start(srv, cfg.metrics, err, sizeof(err)) < 0) {
        pd_error("%s", err);
        goto out;
    }
    app.ev_term = evsignal_new(base, SIGTERM, on_stop, &app);
    app.ev_int = evsignal_new(base, SIGINT, on_stop, &app);
    app.ev_hup = evsignal_new(base, SIGHUP, on_reload, &app);
    app.ev_status = event_new(base, -1, EV_PERSIST, on_status, &app);
    struct timeval every = {STATUS_SECONDS, 0};
    if (!app.ev_term || !app.ev_int || !app.ev_hup || !app.ev_status ||
        event_add(app.ev_term, NULL) < 0 || event_add(app.ev_int, NULL) < 0 ||
        event_add(app.ev_hup, NULL) < 0 || event_add(app.ev_status, &every) < 0) {
        pd_error("cannot install the signal handlers");
        goto out;
    }
    uint64_t wd_usec = 0;
    int wd = sd_watchdog_enabled(1, &wd_usec);
    if (wd < 0)
        pd_warn("sd_watchdog_enabled: %s; no watchdog pings", strerror(-wd));
    if (wd > 0 && wd_usec > 0) {
        uint64_t half = wd_usec / 2;
        struct timeval tv = {(time_t)(half / 1000000), (suseconds_t)(half % 1000000)};
        app.ev_watchdog = event_new(base, -1, EV_PERSIST, on_watchdog, &app);
        if (!app.ev_watchdog || event_add(app.ev_watchdog, &tv) < 0) {
            pd_error("cannot start the watchdog timer");
            goto out;
        }
        pd_info("systemd watchdog: %llu ms, WATCHDOG=1 every %llu ms",
                (unsigned long long)(wd_usec / 1000), (unsigned long long)(half / 1000));
    }

    char s[256];
    pd_stats_summary(srv, s, sizeof(s));
    sd_notifyf(0, "READY=1\nSTATUS=%s\nMAINPID=%d", s, (int)getpid());
    pd_info("ready: %s", s);
    if (event_base_dispatch(base) < 0) {
        pd_error("the event loop failed");
        goto out;
    }
    status = 0;
out:
    if (base) {
        pd_server_stop_listening(srv);
        pd_server_free(srv);
        if (app.ev_term)
            event_free(app.ev_term);
        if (app.ev_int)
            event_free(app.ev_int);
        if (app.ev_hup)
            event_free(app.ev_hup);
        if (app.ev_status)
            event_free(app.ev_status);
        if (app.ev_watchdog)
            event_free(app.ev_watchdog);
        event_base_free(base);
        if (status == 0)
            pd_info("stopped");
    }
    free(opts);
    free(flags);
    return status;
}
