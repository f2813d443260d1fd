/* SPDX-License-Identifier: MIT */
/*
 * poold.h: the daemon's internal interfaces, shared by the files of daemon/
 * and by tests/test_daemon_cmds.c. Never installed, never included by
 * client/, shm/ or proto/.
 *
 * Conventions (docs/design.md): functions return 0 or a negative errno and never
 * touch errno; setup functions that can fail for a reason a user must read
 * also fill `char *err, size_t errlen`.
 */
#ifndef POOLD_H
#define POOLD_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "pproto.h"
#include "pshm.h"

#ifndef PD_VERSION
#define PD_VERSION "0.0.0"
#endif

struct event_base;
struct event;
struct evbuffer;
struct bufferevent;
struct evconnlistener;
struct evhttp;

/* ---------------------------------------------------------------------- */
/* log.c                                                                   */

enum pd_log_level { PD_LOG_ERROR = 0, PD_LOG_WARN, PD_LOG_INFO, PD_LOG_DEBUG };

void pd_log_init(void);
void pd_log_set_level(int level);
int pd_log_get_level(void);
/* "error", "warn"/"warning", "info", "debug": the level, or -EINVAL. */
int pd_log_level_parse(const char *s);
const char *pd_log_level_name(int level);
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void pd_log(int level, const char *fmt, ...);
#define pd_error(...) pd_log(PD_LOG_ERROR, __VA_ARGS__)
#define pd_warn(...) pd_log(PD_LOG_WARN, __VA_ARGS__)
#define pd_info(...) pd_log(PD_LOG_INFO, __VA_ARGS__)
#define pd_debug(...) pd_log(PD_LOG_DEBUG, __VA_ARGS__)
/* For what clients can trigger at will (refusals, bad lines, attach and
 * detach): at most PD_LOG_CLIENT_BURST lines a second; the rest are counted
 * and reported as suppressed in the next second that logs. */
#define PD_LOG_CLIENT_BURST 20
void pd_log_client(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define pd_warn_client(...) pd_log_client(PD_LOG_WARN, __VA_ARGS__)
#define pd_info_client(...) pd_log_client(PD_LOG_INFO, __VA_ARGS__)
/* Copy in[0..len) to out (NUL-terminated, at most cap-1 bytes) with every
 * byte that is not printable ASCII, and the backslash, escaped as \xNN;
 * an ellipsis marks a cut. For logging bytes a client sent. */
void pd_log_escape(const char *in, size_t len, char *out, size_t cap);

/* ---------------------------------------------------------------------- */
/* config.c                                                                */

#define PD_PATH_MAX 108 /* sun_path */
#define PD_SHM_NAME_MAX 63
#define PD_STR_MAX 256

typedef struct pd_config {
    char socket[PD_PATH_MAX];
    char shm_name[PD_SHM_NAME_MAX + 1];
    uint64_t size;
    char classes[PD_STR_MAX];
    uint32_t max_procs;
    uint32_t max_threads;
    char group[64];
    char metrics[PD_STR_MAX];
    int log_level;
    uint32_t idle_timeout; /* seconds, 0 = never */
    uint32_t max_connections;
    uint32_t max_line;     /* bytes with the LF, <= PPROTO_MAX_LINE */
    uint32_t orphans_keep; /* orphans = keep */
    uint64_t max_block;    /* largest block served; 0: a quarter of the segment */
    uint32_t leak_window;  /* seconds of steady growth that make a leak suspect */
    uint32_t prefault_all; /* prefault = all: the whole segment committed at start */
    uint32_t purge_delay;  /* seconds a span stays free before its memory is given back */
    uint64_t retain;       /* bytes of free spans kept committed */
} pd_config_t;

/* The default size: half of /dev/shm, from PD_DEFAULT_SIZE_MIN to _MAX. */
#define PD_DEFAULT_SIZE_MIN (UINT64_C(64) << 20)
#define PD_DEFAULT_SIZE_MAX (UINT64_C(8) << 30)
uint64_t pd_default_size(void);

/* One directive of the table (config.c): for --help and the flag list. */
typedef struct pd_directive_info {
    const char *name;  /* config key, snake_case; the flag is --name-with-dashes */
    const char *deflt; /* "" when computed at run time (socket, shm_name) */
    const char *help;
    bool runtime; /* SIGHUP applies it */
} pd_directive_info_t;

/* The table: *n gets its length. */
const pd_directive_info_t *pd_config_directives(size_t *n);
/* Every directive to its default ("" for the computed ones). */
void pd_config_defaults(pd_config_t *c);
/* Set one directive from text: 0, -ENOENT (unknown key), -EINVAL (bad value). */
int pd_config_set(pd_config_t *c, const char *name, const char *value, char *err, size_t errlen);
/* Read a config file (inih). Errors say FILE:LINE: ... */
int pd_config_load(pd_config_t *c, const char *path, char *err, size_t errlen);
/* Fill the computed defaults (socket, shm name) from uid and environment. */
int pd_config_finalize(pd_config_t *c, char *err, size_t errlen);
/* Format the value of directive `name` into out. */
int pd_config_format(const pd_config_t *c, const char *name, char *out, size_t cap);
/* Log the effective settings, one line per directive. */
void pd_config_log(const pd_config_t *c);
/* Parse a size with an optional K/M/G suffix (binary). */
int pd_parse_size(const char *s, uint64_t *out);

/* ---------------------------------------------------------------------- */
/* Server, connections, registry                                          */

#define PD_ORPHANS_KEPT 16
#define PD_SWEEP_SECONDS 2
/* How long poold waits, at most, for another process's reclaim to end
 * before it reclaims an image a HELLO says was replaced by exec. */
#define PD_RECLAIM_WAIT_MS 200

typedef struct pd_server pd_server_t;
typedef struct pd_conn pd_conn_t;
typedef struct pd_proc pd_proc_t;

/* One attached process, indexed by its slot (registry.c). */
struct pd_proc {
    pd_server_t *srv;
    uint32_t slot;
    pid_t pid;
    uint64_t start_time;
    uint64_t attached_unix;
    char name[PPROTO_MAX_NAME + 1];
    uint32_t nconn;      /* control connections attached for it (0: adopted, or
                            its connection closed while it lives) */
    int pidfd;           /* -1 when pidfd_open failed */
    struct event *pidev; /* EV_READ on pidfd */
};

typedef struct pd_orphan {
    int32_t pid;
    uint32_t slot;
    int64_t blocks; /* in use when it died: given back, or kept in transit */
    uint64_t kept;  /* of those, kept in transit (orphans = keep) */
    uint64_t reclaimed_blocks;
    uint64_t reclaimed_unix;
} pd_orphan_t;

struct pd_conn {
    pd_server_t *srv;
    struct bufferevent *bev;
    pd_conn_t *prev, *next;
    uint64_t id;
    bool have_cred;
    pid_t peer_pid;
    uid_t peer_uid;
    gid_t peer_gid;
    pd_proc_t *proc; /* set by HELLO */
    bool closing;    /* close once the output is flushed */
    bool paused;     /* reading stopped until the output drains */
};

struct pd_server {
    pd_config_t cfg;
    struct event_base *base;
    time_t started;
    /* The segment. */
    void *seg_base;
    uint64_t seg_bytes;
    pshm_seg_t seg;
    bool seg_created; /* false: adopted */
    /* poold's own slot and thread record: the hands that take a dead
     * process's in-use blocks over and free them (pshm_proc_reclaim). */
    pshm_actor_t actor;
    bool have_actor;
    uint64_t gen;
    int gid; /* --group, or -1 */
    /* The control socket. */
    struct evconnlistener *listener;
    bool socket_owned;  /* unlink at shutdown */
    bool socket_handed; /* from systemd (socket activation): never unlink or chmod */
    ino_t socket_ino;   /* the socket we bound, to unlink only that one */
    int lock_fd;        /* <socket>.lock, flock()ed; -1 without */
    pd_conn_t *conns;
    uint32_t nconns;
    uint64_t next_conn_id;
    /* Registry: procs[slot], seg.max_procs entries. */
    pd_proc_t **procs;
    uint32_t nprocs;
    pd_orphan_t orphans[PD_ORPHANS_KEPT];
    uint32_t norphans;    /* kept, <= PD_ORPHANS_KEPT */
    uint32_t orphan_next; /* ring cursor */
    struct event *sweep_ev;
    /* Corruption checks (integrity.c): at adoption, then sampled on a timer. */
    pshm_verify_t verify;
    bool verify_on;
    struct event *verify_ev;
    struct event *purge_ev;      /* the purge timer (segment.c); NULL with prefault = all */
    struct event *purge_more_ev; /* the purge's next slice, at once (segment.c) */
    bool corrupt;                /* sticky: refuse HELLO until restarted */
    uint64_t corruptions_total;  /* checks that found corruption */
    char corrupt_what[300];      /* the last finding */
    time_t corrupt_logged;       /* monotonic seconds of the last log line */
    uint64_t corrupt_suppressed; /* findings not logged since */
    /* Who holds the memory, peaks, growth and warnings (observe.c). */
    struct pd_observe *obs;
    /* Metrics endpoint. */
    struct evhttp *http;
    char http_bound[PD_STR_MAX];
};

/* registry.c: poold's reclaiming hands, or NULL before it has them. */
const pshm_actor_t *pd_actor(const pd_server_t *srv);

/* server.c */
int pd_server_init(pd_server_t *srv, const pd_config_t *cfg, struct event_base *base, char *err,
                   size_t errlen);
/* Make cfg.socket ours before the segment is touched: its directory, the
 * lock beside it (<socket>.lock, held until exit), a stale socket removed;
 * -EADDRINUSE when another poold holds the lock or answers on the socket. */
int pd_server_claim_socket(pd_server_t *srv, char *err, size_t errlen);
/* Bind and listen on the control socket (claimed first if it was not). */
int pd_server_listen(pd_server_t *srv, char *err, size_t errlen);
/* Serve a listening AF_UNIX stream socket handed over by systemd (socket
 * activation): no bind, no unlink, no chmod; its path (if any) replaces
 * cfg.socket. The caller validated it (sd_is_socket_unix). */
int pd_server_listen_fd(pd_server_t *srv, int fd, char *err, size_t errlen);
/* Stop accepting (shutdown): pending connections stay queued. */
void pd_server_pause_listening(pd_server_t *srv);
/* Wrap a connected socket as a connection (the accept path, and tests). */
pd_conn_t *pd_server_add_fd(pd_server_t *srv, int fd);
/* Apply run-time settings to open connections (idle timeout). */
void pd_server_apply_runtime(pd_server_t *srv);
/* Close the listener and unlink the socket; connections stay. */
void pd_server_stop_listening(pd_server_t *srv);
/* Free everything: connections, registry, listener, mapping. Never unlinks
 * the segment. */
void pd_server_free(pd_server_t *srv);
void pd_conn_close(pd_conn_t *c);
/* Process one request line; returns PD_CMD_CLOSE when the connection must
 * close after its output is flushed. */
int pd_server_dispatch(pd_server_t *srv, pd_conn_t *c, const char *line, size_t len,
                       struct evbuffer *out);

/* segment.c */
#define PD_VERIFY_SECONDS 1       /* the sampled check's period */
#define PD_VERIFY_BUDGET 65536    /* list entries walked per class per check */
#define PD_VERIFY_RECORDS 16      /* thread records per check */
#define PD_VERIFY_SPANS 64        /* spans whose owner bytes are read per check */
#define PD_CORRUPT_LOG_SECONDS 10 /* at most one corruption line this often */
/* integrity.c: open runs the full check of an adopted segment (called by
 * pd_segment_open); tick is one sampled check (the timer's, and tests'). */
int pd_integrity_open(pd_server_t *srv);
void pd_integrity_tick(pd_server_t *srv);
int pd_integrity_start(pd_server_t *srv);
void pd_integrity_close(pd_server_t *srv);

int pd_segment_open(pd_server_t *srv, char *err, size_t errlen);
void pd_segment_close(pd_server_t *srv);
#define PD_PURGE_SECONDS 1                       /* the purge timer's period */
#define PD_PURGE_MAX_BYTES (UINT64_C(256) << 20) /* given back per tick at most */
/* The purge timer (prefault = none), and one purge (the timer's, tests'). */
int pd_segment_purge_start(pd_server_t *srv);
void pd_segment_purge(pd_server_t *srv);
/* Write the settings the segment carries for its reclaimers (orphans) from
 * srv->cfg: at open and on reload. */
void pd_segment_apply_settings(pd_server_t *srv);

/* registry.c */
int pd_registry_init(pd_server_t *srv);
void pd_registry_free(pd_server_t *srv);
pd_proc_t *pd_registry_get(pd_server_t *srv, uint32_t slot);
/* Register a slot held by pid (adopted: conn NULL). Starts the pidfd watch. */
pd_proc_t *pd_registry_add(pd_server_t *srv, uint32_t slot, pid_t pid, uint64_t start_time,
                           const char *name);
/* Forget a registration without touching the segment (BYE). */
void pd_registry_forget(pd_server_t *srv, pd_proc_t *p);
/* The connection of p closed: reclaim when the process is dead, else keep
 * watching its pidfd. */
void pd_registry_conn_closed(pd_server_t *srv, pd_proc_t *p);
/* Reclaim p's slot now (the process is dead). */
void pd_registry_reclaim(pd_server_t *srv, pd_proc_t *p, const char *why);
/* The slot for a HELLO of pid (its start time, and its process image, 0
 * when the client did not say): the slot this image already holds
 * (*reused), else a new one, after reclaiming a slot the pid holds from an
 * earlier process (pid reuse) or an earlier image (exec). A negative errno
 * (-EBUSY: all taken) on failure. */
int pd_registry_slot_for(pd_server_t *srv, pid_t pid, uint64_t start, uint32_t image, bool *reused);
/* HELLO of pid: the slot it gets (pd_registry_slot_for) and its entry
 * (*out, pidfd watch started). A slot claimed here is released again when
 * the entry cannot be made. The slot, or -EBUSY (all taken), -ENOMEM or
 * another negative errno. */
int pd_registry_attach(pd_server_t *srv, pid_t pid, uint32_t image, const char *name,
                       pd_proc_t **out, bool *reused);
/* p's slot is LIVE and still held by p's pid (BYE: the library freed it
 * before saying BYE, unless it could not). */
bool pd_registry_holds(const pd_server_t *srv, const pd_proc_t *p);
/* Note a reclaim done elsewhere (sweep) and log it. */
void pd_registry_note_reclaim(pd_server_t *srv, const pshm_reclaimed_t *r, const char *name,
                              const char *why);
/* Adopt: reclaim dead slots, register the live ones. Returns live count. */
int pd_registry_adopt(pd_server_t *srv);
/* Backstop: reclaim dead slots poold does not know, watch unknown live ones. */
void pd_registry_sweep(pd_server_t *srv);
int pd_registry_start_sweep(pd_server_t *srv);
uint32_t pd_registry_count(const pd_server_t *srv);

/* commands.c */
#define PD_CMD_CLOSE 1
typedef int (*pd_cmd_fn)(pd_server_t *, pd_conn_t *, const pproto_req_t *, struct evbuffer *);
int pd_cmd_hello(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out);
int pd_cmd_bye(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out);
int pd_cmd_stats(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out);
int pd_cmd_procs(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out);
int pd_cmd_classes(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out);
int pd_cmd_ping(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out);
int pd_cmd_version(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out);
/* Run the handler of req->verb. */
int pd_cmd_run(pd_server_t *srv, pd_conn_t *c, const pproto_req_t *req, struct evbuffer *out);
/* Append `ERR <code> <msg>\n` built by pproto_encode_error. */
void pd_reply_error(struct evbuffer *out, pproto_err_t e, const char *msg);
/* May uid/gid attach? (euid, root, or the configured group) */
bool pd_peer_allowed(const pd_server_t *srv, uid_t uid, gid_t gid);

/* stats.c: bodies from `OK\n` to `END\n` inclusive, into a heap buffer
 * (*out, *len; free() it). */
int pd_stats_build(pd_server_t *srv, pproto_verb_t verb, char **out, size_t *len);
/* One-line summary for sd_notify STATUS=. */
void pd_stats_summary(pd_server_t *srv, char *out, size_t cap);

/* observe.c: a 1 s timer reads the segment's owner bytes (which slot holds
 * each block) and counters, keeps per class and per process the blocks in
 * use, their high-water marks and a minute of history, and raises or clears
 * the warnings (docs/stats.md, "Warnings"). */
#define PD_OBSERVE_SECONDS 1
#define PD_OBSERVE_MIN_MS 250    /* STATS and PROCS rescan at most this often */
#define PD_GROWTH_SECONDS 60     /* growth_1m: in-use bytes now less a minute ago */
#define PD_WARN_RECENT_SECONDS 5 /* exhausted, double frees: counted over this */
#define PD_WARN_FULL_PCT 90      /* pool, slots and thread records: above this share */
#define PD_WARN_INVALID_MIN 10   /* double frees of a class in PD_WARN_RECENT_SECONDS */
#define PD_LEAK_STEPS 10         /* checkpoints over leak_window */
#define PD_WARN_MAX 64
#define PD_WARN_LOG_SECONDS 60 /* a warning is logged again at most this often */

typedef struct pd_warning {
    char kind[24]; /* pool_full, pool_carved, class_exhausted, leak_suspect, double_free, slots */
    char subject[40]; /* pool, class_64, pid_1234, procs, threads */
    char message[400];
    uint64_t since_unix;
    uint64_t value; /* what is measured: percent, blocks, bytes grown */
    bool logged;    /* its raising was logged: so will its clearing be */
} pd_warning_t;

/* One process slot as observe.c sees it. */
typedef struct pd_obs_proc {
    int32_t pid; /* 0: nobody */
    uint64_t since_mono;
    uint64_t blocks[PSHM_MAX_CLASSES]; /* in use, by the owner bytes */
    uint64_t peak_blocks[PSHM_MAX_CLASSES];
    uint64_t bytes, peak_bytes;
    uint64_t sec[PD_GROWTH_SECONDS + 1]; /* bytes, one sample a second (ring) */
    uint32_t nsec, sec_next;
    uint64_t leak[PD_LEAK_STEPS + 1]; /* bytes at each checkpoint, oldest first */
    uint32_t nleak;
    uint64_t leak_last_mono;
} pd_obs_proc_t;

typedef struct pd_observe {
    struct event *ev;
    uint32_t nprocs;
    pd_obs_proc_t *procs; /* [max_procs], by slot */
    uint64_t class_blocks[PSHM_MAX_CLASSES];
    uint64_t class_peak[PSHM_MAX_CLASSES];
    /* Counters one sample a second, PD_WARN_RECENT_SECONDS + 1 deep. */
    uint64_t exh[PSHM_MAX_CLASSES][PD_WARN_RECENT_SECONDS + 1];
    uint64_t inv[PSHM_MAX_CLASSES][PD_WARN_RECENT_SECONDS + 1];
    uint64_t uncached[PD_WARN_RECENT_SECONDS + 1];
    uint32_t nhist, hist_next;
    uint64_t threads; /* thread records held by attached processes */
    pd_warning_t warn[PD_WARN_MAX];
    uint32_t nwarn;
    /* Log rate limit: when each (kind, subject) was last logged. */
    struct {
        char kind[24], subject[40];
        uint64_t mono;
    } logged[PD_WARN_MAX];
    uint32_t nlogged;
    uint64_t ticks;
    uint64_t scanned_ms; /* monotonic ms of the last scan, 0: never */
    /* The sweep (sweep_classes()): each class's allocations + frees at the
     * last tick, when it was last swept, and the totals. */
    uint64_t sweep_ops[PSHM_MAX_CLASSES];
    uint64_t sweep_at[PSHM_MAX_CLASSES];
    uint64_t sweeps, spans_swept;
    /* Channels: each one's counters at the last tick (of its generation),
     * and the messages per second sent and received since the tick before. */
    uint64_t chan_at_ms;
    uint32_t chan_gen[PSHM_MAX_CHANS];
    bool chan_seen[PSHM_MAX_CHANS];
    uint64_t chan_sent[PSHM_MAX_CHANS], chan_received[PSHM_MAX_CHANS];
    uint64_t chan_sent_rate[PSHM_MAX_CHANS], chan_received_rate[PSHM_MAX_CHANS];
} pd_observe_t;

int pd_observe_start(pd_server_t *srv);
void pd_observe_stop(pd_server_t *srv);
/* Refresh the figures of who holds what now (STATS calls it too). */
void pd_observe_scan(pd_server_t *srv);
/* One tick: scan, history, warnings (the timer's; tests call it). */
void pd_observe_tick(pd_server_t *srv);
/* In-use bytes now less a minute ago (less at attach when younger). */
int64_t pd_observe_growth(const pd_obs_proc_t *p);
/* "1.5 MiB": bytes in binary units. */
const char *pd_human_bytes(uint64_t b, char *buf, size_t cap);
/* The warning line for sd_notify: the first warning and how many more, or
 * "" when none. */
void pd_observe_status(const pd_server_t *srv, char *out, size_t cap);

/* metrics.c */
int pd_metrics_start(pd_server_t *srv, const char *endpoint, char *err, size_t errlen);
void pd_metrics_stop(pd_server_t *srv);
/* Turn a STATS reply (OK ... END) into Prometheus text 0.0.4. */
int pd_render_prometheus(const char *info, size_t len, struct evbuffer *out);

#endif /* POOLD_H */
