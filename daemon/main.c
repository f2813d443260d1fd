/* SPDX-License-Identifier: MIT */
/*
 * main.c: poold's entry point: command line, configuration precedence
 * (defaults < config file < flags), lifecycle, signals and sd_notify.
 *
 * Start-up order: settings, the control socket (one handed over by systemd
 * through sd_listen_fds(), validated as a listening AF_UNIX stream socket,
 * else bound here; another poold on the path is exit 1), the segment (create or adopt; a refused segment is exit 1), the
 * optional metrics endpoint, then READY=1 once the listener accepts. The
 * segment's prefault runs on a thread of its own meanwhile (see "Prefault"
 * below): poold answers from the start, whatever the segment's size. SIGTERM
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
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "poold.h"

#define STATUS_SECONDS 5
#define MAX_OVERRIDES 64
#define PREFAULT_CHUNK (16u << 20) /* bytes per madvise: a stop waits for one */

typedef struct override {
    const char *name; /* directive */
    const char *value;
} override_t;

/*
 * Prefault. pshm_os_prefault (MADV_POPULATE_WRITE) fills poold's page
 * tables for the header and tables (prefault = none: the spans' memory is
 * committed as they are carved, so poold must not touch the rest), or for
 * the whole segment (prefault = all), so that a reclaim, which walks owner
 * bytes and touches the first block of each run, never stops on a page
 * fault; on a segment just created it also has tmpfs clear each page once,
 * here rather than in a worker's first touch. With prefault = all, once the
 * whole segment is done every span is noted committed (an adopted segment
 * may have had spans given back by a purge). It costs about 2 s per GiB on a
 * segment just created (4 GiB: 7.5 s on a 2-core VM, much less on one
 * adopted), and done in line it held the loop while the socket already
 * listened: clients got no answer for that long. So it runs on a thread of
 * its own while the loop serves. That is safe with the segment in use: it
 * only installs page-table entries, never reads or writes a byte of the
 * segment, and a fault taken meanwhile by poold's own reclaim just installs
 * the same entry first; workers have their own page tables. It goes from the
 * segment's start (header, slots, thread records and span map, which every
 * reclaim reads, come first) to its end in PREFAULT_CHUNK steps and checks
 * `stop` between steps, so a shutdown waits for one step at most (16 MiB,
 * about 35 ms) before the segment is unmapped. When it is done, a byte on a
 * pipe wakes the loop, which joins the thread and logs how long it took.
 */
typedef struct prefault {
    pthread_t thread;
    bool started; /* loop thread only: a thread to join */
    char *base;   /* the segment, mapped until the thread is joined */
    uint64_t bytes;
    pa_u32 stop; /* relaxed: a flag, set by the loop, polled by the thread;
                    nothing is published through it (the join is) */
    int wake[2]; /* pipe: the thread writes one byte when it ends */
    struct event *ev_done;
    /* Written by the thread, read by the loop after pthread_join. */
    uint64_t done; /* bytes prefaulted */
    int rc;        /* 0 or pshm_os_prefault's negative errno */
    double seconds;
} prefault_t;

typedef struct app {
    pd_server_t srv;
    const char *config_path;
    override_t ov[MAX_OVERRIDES];
    size_t nov;
    struct event *ev_term, *ev_int, *ev_hup, *ev_status;
    struct event *ev_watchdog; /* NULL without WatchdogSec= */
    prefault_t prefault;
} app_t;

static void usage(FILE *f)
{
    size_t n;
    const pd_directive_info_t *d = pd_config_directives(&n);
    fprintf(f, "usage: poold [--config FILE] [--SETTING VALUE]... | --help | --version\n\n"
               "poold serves a shared-memory pool allocator to the processes that attach to\n"
               "it with libpoolclient. It runs in the foreground and logs to stderr. Every\n"
               "setting below is also a key of the config file (--max-procs is max_procs).\n\n"
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
    fprintf(f, "  -h, --help           this text\n"
               "  -V, --version        print the version and exit\n\n"
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
    char s[768];
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

/* The control socket: the one systemd hands over (poold.socket), else
 * cfg.socket, bound only once the segment is ready, so that poold answers
 * from the moment its socket appears. claim_control runs before the
 * segment is touched, listen_control after. */
static int control_handed_over(char *err, size_t errlen)
{
    int n = sd_listen_fds(0);
    if (n < 0) {
        snprintf(err, errlen, "sd_listen_fds: %s", strerror(-n));
        return n;
    }
    if (n > 1) {
        snprintf(err, errlen, "systemd handed over %d sockets; poold takes exactly one", n);
        return -EINVAL;
    }
    return n;
}

static int claim_control(pd_server_t *srv, char *err, size_t errlen)
{
    int n = control_handed_over(err, errlen);
    if (n != 0)
        return n < 0 ? n : 0;
    return pd_server_claim_socket(srv, err, errlen);
}

static int listen_control(pd_server_t *srv, char *err, size_t errlen)
{
    int n = control_handed_over(err, errlen);
    if (n < 0)
        return n;
    if (n == 0)
        return pd_server_listen(srv, err, errlen);
    int fd = SD_LISTEN_FDS_START;
    int r = sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0);
    if (r <= 0) {
        snprintf(err, errlen,
                 "the socket systemd handed over (fd %d) is not a listening AF_UNIX stream "
                 "socket%s%s",
                 fd, r < 0 ? ": " : "", r < 0 ? strerror(-r) : "");
        return r < 0 ? r : -ENOTSOCK;
    }
    unsetenv("LISTEN_FDS"); /* what sd_listen_fds(1) did: not for our children */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    return pd_server_listen_fd(srv, fd, err, errlen);
}

static double mono_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *prefault_run(void *arg)
{
    prefault_t *pf = arg;
    double t0 = mono_seconds();
    /* relaxed: see prefault_t.stop. */
    while (pf->done < pf->bytes && !pa_load_relaxed(&pf->stop)) {
        uint64_t n = pf->bytes - pf->done < PREFAULT_CHUNK ? pf->bytes - pf->done : PREFAULT_CHUNK;
        pf->rc = pshm_os_prefault(pf->base + pf->done, n);
        if (pf->rc < 0)
            break;
        pf->done += n;
    }
    pf->seconds = mono_seconds() - t0;
    char b = 1;
    ssize_t w = write(pf->wake[1], &b, 1);
    (void)w; /* the pipe is empty: one byte always fits */
    return NULL;
}

/* Join the thread (after the wake-up, or to stop it) and log its result. */
static void prefault_join(prefault_t *pf, const char *name)
{
    if (!pf->started)
        return;
    pthread_join(pf->thread, NULL);
    pf->started = false;
    double mib = (double)pf->done / (1 << 20);
    if (pf->rc < 0)
        pd_info("prefault of segment %s stopped after %.0f MiB in %.3f s: %s (reclaims may fault "
                "pages in)",
                name, mib, pf->seconds, strerror(-pf->rc));
    else if (pf->done < pf->bytes)
        pd_info("prefault of segment %s stopped at shutdown after %.0f of %.0f MiB", name, mib,
                (double)pf->bytes / (1 << 20));
    else
        pd_info("prefaulted segment %s: %.0f MiB in %.3f s, in the background", name, mib,
                pf->seconds);
}

static void on_prefault_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    app_t *app = arg;
    prefault_t *pf = &app->prefault;
    prefault_join(pf, app->srv.cfg.shm_name);
    /* prefault = all: every page of the segment is in /dev/shm now. */
    if (app->srv.cfg.prefault_all && pf->rc == 0 && pf->done == pf->bytes)
        pshm_span_note_committed(&app->srv.seg, 0, app->srv.seg.nspans);
}

static int prefault_start(app_t *app)
{
    prefault_t *pf = &app->prefault;
    pf->base = app->srv.seg_base;
    pf->bytes = app->srv.cfg.prefault_all ? app->srv.seg_bytes : app->srv.seg.data_off;
    if (pipe2(pf->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        pf->wake[0] = pf->wake[1] = -1;
        return -errno;
    }
    pf->ev_done = event_new(app->srv.base, pf->wake[0], EV_READ, on_prefault_done, app);
    if (!pf->ev_done || event_add(pf->ev_done, NULL) < 0)
        return -ENOMEM;
    int rc = pthread_create(&pf->thread, NULL, prefault_run, pf);
    if (rc != 0)
        return -rc;
    pf->started = true;
    return 0;
}

/* Before the segment is unmapped: stop the thread between two steps. */
static void prefault_stop(app_t *app)
{
    prefault_t *pf = &app->prefault;
    /* relaxed: see prefault_t.stop. */
    pa_store_relaxed(&pf->stop, 1u);
    prefault_join(pf, app->srv.cfg.shm_name);
    if (pf->ev_done)
        event_free(pf->ev_done);
    pf->ev_done = NULL;
    for (int i = 0; i < 2; i++)
        if (pf->wake[i] >= 0)
            close(pf->wake[i]);
    pf->wake[0] = pf->wake[1] = -1;
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
    srv->cfg.max_block = next.max_block;
    srv->cfg.purge_delay = next.purge_delay;
    srv->cfg.retain = next.retain;
    pd_segment_apply_settings(srv);
    srv->cfg.leak_window = next.leak_window;
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

/* The flags: every directive is also one (--shm-name for shm_name), plus
 * -c/--config, -h/--help and -V/--version. Returns -1 to go on, else the
 * exit status (0 after --help or --version, 2 on a bad command line). */
static int parse_args(app_t *app, int argc, char **argv)
{
    size_t n;
    const pd_directive_info_t *d = pd_config_directives(&n);
    struct option *opts = calloc(n + 4, sizeof(*opts));
    char(*flags)[64] = calloc(n, sizeof(*flags));
    int status = -1;
    if (!opts || !flags) {
        fprintf(stderr, "poold: out of memory\n");
        status = 1;
        goto out;
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
    opterr = 0; /* our messages: "poold: ...", never the path of the binary */
    while (status < 0 && (ch = getopt_long(argc, argv, ":c:hV", opts, NULL)) != -1) {
        if (ch == 'c') {
            app->config_path = optarg;
        } else if (ch == 'h') {
            usage(stdout);
            status = 0;
        } else if (ch == 'V') {
            printf("poold %s (segment abi %u, protocol %u)\n", PD_VERSION, PSHM_ABI_VERSION,
                   PPROTO_WIRE_VERSION);
            status = 0;
        } else if (ch >= 1000 && ch < 1000 + (int)n) {
            if (add_override(app, d[ch - 1000].name, optarg) < 0) {
                fprintf(stderr, "poold: too many flags\n");
                status = 2;
            }
        } else {
            const char *what = argv[optind - 1];
            if (ch == ':')
                fprintf(stderr, "poold: %s needs a value (see poold --help)\n", what);
            else
                fprintf(stderr, "poold: unknown option '%s' (see poold --help)\n", what);
            status = 2;
        }
    }
    if (status < 0 && optind < argc) {
        fprintf(stderr, "poold: unexpected argument '%s' (see poold --help)\n", argv[optind]);
        status = 2;
    }
out:
    free(opts);
    free(flags);
    return status;
}

/* Signals and the status timer, each an event of the loop. */
static int add_events(app_t *app)
{
    struct event_base *base = app->srv.base;
    struct timeval every = {STATUS_SECONDS, 0};
    const struct {
        struct event **ev;
        int sig; /* -1: a timer of `every` */
        event_callback_fn cb;
    } tab[] = {
        {&app->ev_term, SIGTERM, on_stop},
        {&app->ev_int, SIGINT, on_stop},
        {&app->ev_hup, SIGHUP, on_reload},
        {&app->ev_status, -1, on_status},
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
        bool timer = tab[i].sig < 0;
        *tab[i].ev = event_new(base, tab[i].sig, timer ? EV_PERSIST : EV_SIGNAL | EV_PERSIST,
                               tab[i].cb, app);
        if (!*tab[i].ev || event_add(*tab[i].ev, timer ? &every : NULL) < 0)
            return -1;
    }
    return 0;
}

/* Under systemd's WatchdogSec=: WATCHDOG=1 at half the period. */
static int start_watchdog(app_t *app)
{
    uint64_t wd_usec = 0;
    int wd = sd_watchdog_enabled(1, &wd_usec);
    if (wd < 0)
        pd_warn("sd_watchdog_enabled: %s; no watchdog pings", strerror(-wd));
    if (wd <= 0 || wd_usec == 0)
        return 0;
    uint64_t half = wd_usec / 2;
    struct timeval tv = {(time_t)(half / 1000000), (suseconds_t)(half % 1000000)};
    app->ev_watchdog = event_new(app->srv.base, -1, EV_PERSIST, on_watchdog, app);
    if (!app->ev_watchdog || event_add(app->ev_watchdog, &tv) < 0) {
        pd_error("cannot start the watchdog timer");
        return -1;
    }
    pd_info("systemd watchdog: %llu ms, WATCHDOG=1 every %llu ms",
            (unsigned long long)(wd_usec / 1000), (unsigned long long)(half / 1000));
    return 0;
}

/* Everything between a valid configuration and the loop: the server, its
 * socket, the segment, the timers. Logs what failed; returns the exit
 * status to stop with, or 0 when poold is ready to serve. */
static int start(app_t *app, const pd_config_t *cfg, struct event_base *base)
{
    pd_server_t *srv = &app->srv;
    char err[512];
    if (pd_server_init(srv, cfg, base, err, sizeof(err)) < 0) {
        pd_error("%s", err);
        return 2;
    }
    /* The socket's path first: when another poold holds it, stop before
     * touching the segment (adopting bumps its generation). The socket is
     * bound once the segment is ready (a new one's reservation,
     * posix_fallocate, takes about 0.1 s per GiB, more on a loaded
     * machine), so that whoever sees it gets an answer at once; the
     * prefault runs in the background. */
    if (claim_control(srv, err, sizeof(err)) < 0 || pd_segment_open(srv, err, sizeof(err)) < 0 ||
        listen_control(srv, err, sizeof(err)) < 0) {
        pd_error("%s", err);
        return 1;
    }
    int pf = prefault_start(app);
    if (pf < 0)
        pd_warn("cannot start the prefault of the segment: %s (reclaims may fault pages in)",
                strerror(-pf));
    if (pd_registry_start_sweep(srv) < 0) {
        pd_error("cannot start the reclaim sweep");
        return 1;
    }
    if (pd_segment_purge_start(srv) < 0) {
        pd_error("cannot start the purge timer");
        return 1;
    }
    if (pd_integrity_start(srv) < 0) {
        pd_error("cannot start the corruption checks");
        return 1;
    }
    if (pd_observe_start(srv) < 0) {
        pd_error("cannot start the statistics timer");
        return 1;
    }
    if (cfg->metrics[0] && pd_metrics_start(srv, cfg->metrics, err, sizeof(err)) < 0) {
        pd_error("%s", err);
        return 1;
    }
    if (add_events(app) < 0) {
        pd_error("cannot install the signal handlers");
        return 1;
    }
    return start_watchdog(app) < 0 ? 1 : 0;
}

/* After the loop, or a failed start: stop the prefault before the segment
 * is unmapped, then free what start() made. */
static void stop(app_t *app, struct event_base *base)
{
    prefault_stop(app);
    pd_server_stop_listening(&app->srv);
    pd_server_free(&app->srv);
    struct event *evs[] = {app->ev_term, app->ev_int, app->ev_hup, app->ev_status,
                           app->ev_watchdog};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    event_base_free(base);
}

int main(int argc, char **argv)
{
    static app_t app;
    pd_config_t cfg;
    char err[512];
    app.prefault.wake[0] = app.prefault.wake[1] = -1;

    int status = parse_args(&app, argc, argv);
    if (status >= 0)
        return status;
    pd_log_init();
    if (build_config(&app, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "poold: %s\n", err);
        return 2;
    }
    pd_log_set_level(cfg.log_level);
    pd_info("poold %s starting (pid %d, uid %u, segment abi %u)", PD_VERSION, (int)getpid(),
            (unsigned)geteuid(), PSHM_ABI_VERSION);
    pd_info("config file: %s", app.config_path ? app.config_path : "(none)");
    pd_config_log(&cfg);

    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    if (!base) {
        pd_error("cannot create the event loop");
        return 1;
    }
    status = start(&app, &cfg, base);
    if (status == 0) {
        char s[768];
        pd_stats_summary(&app.srv, s, sizeof(s));
        sd_notifyf(0, "READY=1\nSTATUS=%s\nMAINPID=%d", s, (int)getpid());
        pd_info("ready: %s", s);
        if (event_base_dispatch(base) < 0) {
            pd_error("the event loop failed");
            status = 1;
        }
    }
    stop(&app, base);
    if (status == 0)
        pd_info("stopped");
    return status;
}
