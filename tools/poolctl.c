/* SPDX-License-Identifier: MIT */
/*
 * poolctl.c: the command-line client of poold's control socket.
 *
 *   poolctl [--socket PATH] stats [--json | --prometheus] [--watch SECONDS]
 *   poolctl [--socket PATH] top [--delay SECONDS] [--sort KEY] [--iterations N]
 *   poolctl [--socket PATH] procs [--json] [--sort KEY] | classes [--json]
 *   poolctl [--socket PATH] show PID | warnings | ping | version
 *
 * Links proto/ only and never includes the library's internal.h: it knows
 * poold through the protocol, like any other observer. Every reply goes
 * through pproto_parse_* before it is shown; a reply is bounded in size and
 * time. Exit codes: 0 done (also when the reader of stdout went away);
 * 1 poold answered with an error or nonsense, or stdout cannot be written;
 * 2 usage; 3 poold cannot be reached.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "poolclient.h"
#include "pproto.h"

#define EXIT_OK 0
#define EXIT_REPLY 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3
#define REPLY_MAX (4u << 20)
#define TIMEOUT_MS 5000

static const char *socket_path;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: poolctl [--socket PATH] COMMAND [OPTIONS]\n"
            "\n"
            "Commands:\n"
            "  stats [--json | --prometheus] [--watch SECONDS]\n"
            "                 per-class, per-process and whole-pool statistics, warnings\n"
            "                 first; --watch redraws the table every SECONDS, as top\n"
            "  top [--delay SECONDS] [--sort KEY] [--iterations N]\n"
            "                 full-screen view redrawn every second: rates per second over\n"
            "                 the last interval, per class and per process; keys i, g, a, p\n"
            "                 sort, q quits; without a terminal, frames as plain lines\n"
            "  procs [--json] [--sort inuse|growth|pid]\n"
            "                 the processes attached to the pool: what each holds, its\n"
            "                 high-water mark and its growth over the last minute\n"
            "  show PID       one process: what it holds in each class\n"
            "  warnings       what poold warns about now, and what to do\n"
            "  classes [--json]\n"
            "                 the size classes: block size, blocks per span, thread-cache\n"
            "                 cap and batch, and any other figure poold gives per class\n"
            "  chans [--json]  the channels in use: messages in each, bytes held, members,\n"
            "                 messages sent and received per second, sleeping receivers\n"
            "  ping           check that poold answers, and the round-trip time\n"
            "  version        poold's version, segment layout and protocol\n"
            "  help           this text\n"
            "\n"
            "Options:\n"
            "  -s, --socket PATH   poold's control socket (default: $POOLD_SOCKET, else\n"
            "                      poold's own default for your uid: %s as root;\n"
            "                      else $XDG_RUNTIME_DIR/poold/poold.sock or\n"
            "                      /tmp/poold-$UID/poold.sock, or %s when only that\n"
            "                      one exists)\n"
            "  -h, --help          this text\n"
            "  -V, --version       poolctl's version\n"
            "  --json              (stats, procs, classes, chans) one JSON object, a member per\n"
            "                      section, figures as numbers\n"
            "  --prometheus        (stats) the Prometheus text format, as poold's /metrics\n"
            "  --watch SECONDS     (stats) redraw every SECONDS until interrupted\n"
            "  --delay SECONDS     (top) seconds between frames (default 1)\n"
            "  --sort KEY          (top, procs) inuse (default), growth, allocs (top only)\n"
            "                      or pid\n"
            "  --iterations N      (top) stop after N frames\n"
            "\n"
            "Exit status: 0 done (also when the reader of the output went away), 1 poold\n"
            "replied with an error or the output cannot be written, 2 usage, 3 poold\n"
            "cannot be reached.\n",
            POOL_DEFAULT_SOCKET, POOL_DEFAULT_SOCKET);
}

/* ---- standard output ----
 *
 * Everything poolctl prints on stdout is first built in memory, a frame at a
 * time (one table, one JSON object, one line), then written with write(2)
 * by out_write(), which sees the exact errno of the write that failed: stdio
 * would report the error of a buffer flushed somewhere in the middle of a
 * table, with errno clobbered since. SIGPIPE stays ignored (main): killed by
 * it, poolctl would end with status 141, while a reader that stops reading
 * (`poolctl stats --watch 1 | head`) is a normal way to end. So EPIPE ends
 * poolctl with status 0 and no message, at the first write after the reader
 * left; any other error (ENOSPC on /dev/full, EBADF on a closed stdout, EIO)
 * is a failure: a message and status 1. A loop that writes nothing cannot
 * notice, so `stats --watch` writes at every turn, poold reachable or not. */

/* 0, or a negative errno. */
static int out_write(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The exit status for a failed write (err < 0): EPIPE is the reader leaving. */
static int out_failed(int err)
{
    if (err == -EPIPE)
        return EXIT_OK;
    fprintf(stderr, "poolctl: cannot write the output: %s\n", strerror(-err));
    return EXIT_REPLY;
}

/* A frame: a stream into memory, written to stdout in one go by frame_emit. */
struct frame {
    FILE *f;
    char *buf;
    size_t len;
};

static int frame_open(struct frame *fr)
{
    fr->buf = NULL;
    fr->len = 0;
    fr->f = open_memstream(&fr->buf, &fr->len);
    if (!fr->f) {
        fprintf(stderr, "poolctl: out of memory\n");
        return EXIT_REPLY;
    }
    return EXIT_OK;
}

/* Close the frame and, when `write` is true, write it out: 0 or a negative
 * errno (out_failed() says what it means). */
static int frame_emit(struct frame *fr, bool write)
{
    int rc = fclose(fr->f) == 0 ? 0 : -ENOMEM;
    if (rc == 0 && write)
        rc = out_write(fr->buf, fr->len);
    free(fr->buf);
    return rc;
}

struct reply {
    char *buf; /* whole reply, NUL-terminated */
    size_t len;
    size_t body; /* offset of the first body line (after the OK line) */
    pproto_reply_t first;
};

static int connect_poold(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(socket_path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "poolctl: socket path too long: %s\n", socket_path);
        return -1;
    }
    strcpy(sa.sun_path, socket_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        struct stat st;
        pproto_path_info_t info;
        pproto_path_info_of(&info, stat(socket_path, &st) == 0 ? &st : NULL);
        char advice[200];
        (void)pproto_connect_error(advice, sizeof(advice), e, &info);
        fprintf(stderr, "poolctl: cannot reach poold at %s: %s; %s\n", socket_path, strerror(e),
                advice);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Send one verb, read the whole reply (through END for multi-line ones). */
static int request(const char *verb, bool multiline, struct reply *r)
{
    memset(r, 0, sizeof(*r));
    int fd = connect_poold();
    if (fd < 0)
        return EXIT_UNREACHABLE;
    char line[64];
    int n = snprintf(line, sizeof(line), "%s\n", verb);
    if (write(fd, line, (size_t)n) != n) {
        fprintf(stderr, "poolctl: write to %s: %s\n", socket_path, strerror(errno));
        close(fd);
        return EXIT_UNREACHABLE;
    }
    size_t cap = 64 << 10;
    r->buf = malloc(cap);
    int rc = EXIT_REPLY;
    size_t scanned = 0;
    bool have_first = false;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        /* Look for complete lines. */
        char *nl;
        while ((nl = memchr(r->buf + scanned, '\n', r->len - scanned)) != NULL) {
            size_t start = scanned, llen = (size_t)(nl - (r->buf + start));
            scanned = start + llen + 1;
            if (!have_first) {
                if (pproto_parse_reply(r->buf + start, llen, &r->first) < 0) {
                    fprintf(stderr, "poolctl: malformed reply from poold: %.*s\n", (int)llen,
                            r->buf + start);
                    goto out;
                }
                have_first = true;
                r->body = scanned;
                if (!r->first.ok || !multiline) {
                    rc = EXIT_OK;
                    goto out;
                }
                continue;
            }
            pproto_info_line_t il;
            int kind = pproto_parse_info_line(r->buf + start, llen, &il);
            if (kind < 0) {
                fprintf(stderr, "poolctl: malformed line in poold's reply: %.*s\n", (int)llen,
                        r->buf + start);
                goto out;
            }
            if (kind == PPROTO_INFO_END) {
                rc = EXIT_OK;
                goto out;
            }
        }
        if (r->len + 1 >= cap) {
            if (cap >= REPLY_MAX) {
                fprintf(stderr, "poolctl: reply from poold larger than %u bytes\n", REPLY_MAX);
                goto out;
            }
            cap *= 2;
            char *nb = realloc(r->buf, cap);
            if (!nb)
                goto out;
            r->buf = nb;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = spent < TIMEOUT_MS ? poll(&p, 1, (int)(TIMEOUT_MS - spent)) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            fprintf(stderr, "poolctl: poold at %s did not answer within %d ms\n", socket_path,
                    TIMEOUT_MS);
            goto out;
        }
        ssize_t got = read(fd, r->buf + r->len, cap - r->len - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            fprintf(stderr, "poolctl: poold closed the connection mid-reply\n");
            goto out;
        }
        r->len += (size_t)got;
        r->buf[r->len] = '\0';
    }
out:
    if (r->buf)
        r->buf[r->len] = '\0';
    close(fd);
    if (rc == EXIT_OK && !r->first.ok) {
        fprintf(stderr, "poolctl: poold: %s %s\n", pproto_err_name(r->first.err), r->first.msg);
        rc = EXIT_REPLY;
    }
    return rc;
}

/* ---- the human table ---- */

#define MAX_ROWS 256
#define MAX_HOLD 2048
#define MAX_FIELDS 32

struct row {
    char key[PPROTO_MAX_KEY + 1];
    int n;
    char k[MAX_FIELDS][PPROTO_MAX_KEY + 1];
    char v[MAX_FIELDS][64];
    char text[PPROTO_MAX_LINE]; /* a long text field (a warning's message) */
};

struct view {
    char section[PPROTO_MAX_KEY + 1];
    /* scalars of # server and # pool */
    int nscalar;
    char sk[64][PPROTO_MAX_KEY + 1];
    char sv[64][128];
    int nclass, nproc, norphan, nhold, nwarn, nchan;
    struct row cls[MAX_ROWS], proc[MAX_ROWS], orphan[MAX_ROWS], warn[MAX_ROWS], chan[MAX_ROWS];
    struct row hold[MAX_HOLD];
};

static void copy_n(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static int view_line(void *ctx, const pproto_info_line_t *l)
{
    struct view *v = ctx;
    if (l->kind == PPROTO_INFO_SECTION) {
        copy_n(v->section, sizeof(v->section), l->key, l->key_len);
        return 0;
    }
    struct row *r = NULL;
    if (!strcmp(v->section, "classes") && v->nclass < MAX_ROWS)
        r = &v->cls[v->nclass++];
    else if (!strcmp(v->section, "processes") && v->nproc < MAX_ROWS)
        r = &v->proc[v->nproc++];
    else if (!strcmp(v->section, "orphans") && v->norphan < MAX_ROWS)
        r = &v->orphan[v->norphan++];
    else if (!strcmp(v->section, "holdings") && v->nhold < MAX_HOLD)
        r = &v->hold[v->nhold++];
    else if (!strcmp(v->section, "warnings") && v->nwarn < MAX_ROWS)
        r = &v->warn[v->nwarn++];
    else if (!strcmp(v->section, "channels") && v->nchan < MAX_ROWS)
        r = &v->chan[v->nchan++];
    else if (!strcmp(v->section, "classes") || !strcmp(v->section, "processes") ||
             !strcmp(v->section, "orphans") || !strcmp(v->section, "holdings") ||
             !strcmp(v->section, "warnings") || !strcmp(v->section, "channels"))
        return 0; /* more rows than poolctl keeps */
    if (r) {
        r->n = 0;
        r->text[0] = '\0';
        copy_n(r->key, sizeof(r->key), l->key, l->key_len);
        const char *c = l->val, *e = l->val + l->val_len;
        pproto_subkv_t kv;
        while (r->n < MAX_FIELDS && pproto_subkv_next(&c, e, &kv) > 0) {
            if (kv.key_len == 7 && !memcmp(kv.key, "message", 7))
                copy_n(r->text, sizeof(r->text), kv.val, kv.val_len);
            copy_n(r->k[r->n], sizeof(r->k[0]), kv.key, kv.key_len);
            copy_n(r->v[r->n], sizeof(r->v[0]), kv.val, kv.val_len);
            r->n++;
        }
    } else if (v->nscalar < 64) {
        copy_n(v->sk[v->nscalar], sizeof(v->sk[0]), l->key, l->key_len);
        copy_n(v->sv[v->nscalar], sizeof(v->sv[0]), l->val, l->val_len);
        v->nscalar++;
    }
    return 0;
}

static int parse_view(const char *body, size_t len, struct view *v)
{
    /* Rows are reset as they are filled: the view is large. */
    v->section[0] = '\0';
    v->nscalar = v->nclass = v->nproc = v->norphan = v->nhold = v->nwarn = 0;
    return pproto_info_foreach(body, len, view_line, v) < 0 ? -1 : 0;
}

static const char *scalar(const struct view *v, const char *k)
{
    for (int i = 0; i < v->nscalar; i++)
        if (!strcmp(v->sk[i], k))
            return v->sv[i];
    return "?";
}

static double scalar_num(const struct view *v, const char *k)
{
    return strtod(scalar(v, k), NULL);
}

static const char *field(const struct row *r, const char *k)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->k[i], k))
            return r->v[i];
    return "-";
}

static double field_num(const struct row *r, const char *k)
{
    return strtod(field(r, k), NULL);
}

static const struct row *find_row(const struct row *rows, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(rows[i].key, key))
            return &rows[i];
    return NULL;
}

static const char *human_bytes(double b, char *buf, size_t cap)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", b, u[i]);
    return buf;
}

static const char *pct(double num, double den, char *buf, size_t cap)
{
    if (den <= 0)
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.1f%%", 100.0 * num / den);
    return buf;
}

/* ---- human units ---- */

/* "45s", "12m05s", "1h02m", "3d04h". */
static const char *human_uptime(double sec, char *buf, size_t cap)
{
    unsigned long long s = sec > 0 ? (unsigned long long)sec : 0;
    if (s < 60)
        snprintf(buf, cap, "%llus", s);
    else if (s < 3600)
        snprintf(buf, cap, "%llum%02llus", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, cap, "%lluh%02llum", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, cap, "%llud%02lluh", s / 86400, s % 86400 / 3600);
    return buf;
}

/* Bytes with a sign: "+1.5 MiB", "-512 B", "0 B". */
static const char *human_signed(double b, char *buf, size_t cap)
{
    if (cap < 2)
        return buf;
    buf[0] = b > 0 ? '+' : '-';
    human_bytes(b < 0 ? -b : b, buf + (b != 0), cap - 1);
    return buf;
}

/* A count or rate in three significant figures: "950", "12.3k", "1.20M". */
static const char *human_count(double v, char *buf, size_t cap)
{
    const char *u[] = {"", "k", "M", "G", "T"};
    int i = 0;
    while (v >= 999.5 && i < 4) {
        v /= 1000;
        i++;
    }
    if (i == 0)
        snprintf(buf, cap, v < 9.995 && v != (double)(long long)v ? "%.2f" : "%.0f", v);
    else
        snprintf(buf, cap, v < 9.995 ? "%.2f%s" : v < 99.95 ? "%.1f%s" : "%.0f%s", v, u[i]);
    return buf;
}

/* How top and procs sort: the most first (pid: the lowest first). */
enum top_sort { SORT_INUSE, SORT_GROWTH, SORT_ALLOCS, SORT_PID };
static const char *const sort_names[] = {"in use", "growth", "allocs/s", "pid/size"};

struct sort_item {
    const struct row *r;
    const struct row *prev; /* the same row in the frame before, or NULL */
    double key;
};

static int by_key_desc(const void *a, const void *b)
{
    const struct sort_item *x = a, *y = b;
    return x->key < y->key ? 1 : x->key > y->key ? -1 : 0;
}

/* ---- warnings ---- */

static void print_warnings(const struct view *v, FILE *f)
{
    for (int i = 0; i < v->nwarn; i++)
        fprintf(f, "WARNING %s %s: %s\n", field(&v->warn[i], "kind"), field(&v->warn[i], "subject"),
                v->warn[i].text);
}

/* `poolctl chans`: one line per channel in use, in 79 columns. DEPTH is
 * the messages in it (sent, not yet received or, a topic, not yet released
 * by all), SUBS and SLOW a topic's subscribers and those a capacity behind
 * (senders wait for them), HELD the blocks' bytes, SENT/s and RECV/s the
 * rates over poold's last second, LOST the messages given back because
 * their receiver died holding them. */
static void print_chans(const struct view *v, FILE *f)
{
    fprintf(f, "%-14s %5s %6s %4s %4s %4s %4s %8s %8s %8s %4s\n", "CHANNEL", "KIND", "DEPTH", "CAP",
            "MEMB", "SUBS", "SLOW", "HELD", "SENT/s", "RECV/s", "LOST");
    for (int i = 0; i < v->nchan; i++) {
        const struct row *r = &v->chan[i];
        char held[32];
        bool topic = !strcmp(field(r, "kind"), "topic");
        fprintf(f, "%-14.14s %5s %6s %4s %4s %4s %4s %8s %8s %8s %4s\n", field(r, "name"),
                field(r, "kind"), field(r, "depth"), field(r, "capacity"), field(r, "members"),
                topic ? field(r, "subscribers") : "-", topic ? field(r, "slow_subscribers") : "-",
                human_bytes(field_num(r, "bytes_held"), held, sizeof(held)), field(r, "sent_per_s"),
                field(r, "received_per_s"), field(r, "given_back"));
    }
    if (v->nchan == 0)
        fprintf(f, "%-16s (no channel in use)\n", "-");
}

/* The processes: `poolctl procs` and the middle of `poolctl stats`.
 * IN USE counts blocks (allocations less frees); BYTES, PEAK and GROWTH/1m
 * are the bytes the process holds (owner bytes), their high-water mark and
 * their change over the last minute. */
static void print_procs(const struct view *v, FILE *f, enum top_sort sort)
{
    fprintf(f, "%8s %-16s %5s %7s %12s %12s %7s %7s %7s %10s %10s %10s %8s %5s\n", "PID", "NAME",
            "SLOT", "THREADS", "ALLOCS", "FREES", "IN USE", "CACHED", "MISS", "BYTES", "PEAK",
            "GROWTH/1m", "ATTACHED", "CONN");
    struct sort_item items[MAX_ROWS];
    for (int i = 0; i < v->nproc; i++) {
        const struct row *r = &v->proc[i];
        double key = sort == SORT_GROWTH ? field_num(r, "growth_1m_bytes")
                     : sort == SORT_PID  ? -field_num(r, "pid")
                                         : field_num(r, "in_use_bytes");
        items[i] = (struct sort_item){r, NULL, key};
    }
    qsort(items, (size_t)v->nproc, sizeof(items[0]), by_key_desc);
    for (int i = 0; i < v->nproc; i++) {
        const struct row *r = items[i].r;
        char p1[16], b1[32], b2[32], b3[32], u[32];
        fprintf(f, "%8s %-16.16s %5s %7s %12s %12s %7s %7s %7s %10s %10s %10s %8s %5s\n",
                field(r, "pid"), field(r, "name"), field(r, "slot"), field(r, "threads"),
                field(r, "allocs"), field(r, "frees"), field(r, "in_use"), field(r, "cached"),
                pct(field_num(r, "cache_misses"), field_num(r, "allocs"), p1, sizeof(p1)),
                human_bytes(field_num(r, "in_use_bytes"), b1, sizeof(b1)),
                human_bytes(field_num(r, "peak_bytes"), b2, sizeof(b2)),
                human_signed(field_num(r, "growth_1m_bytes"), b3, sizeof(b3)),
                human_uptime(field_num(r, "uptime_seconds"), u, sizeof(u)),
                field_num(r, "connected") > 0 ? "yes" : "no");
    }
    if (v->nproc == 0)
        fprintf(f, "%8s (no process attached)\n", "-");
}

/* A column of the classes table: the sub-key it shows, its header, its width. */
struct col {
    char key[PPROTO_MAX_KEY + 1];
    char head[PPROTO_MAX_KEY + 1];
    int width;
};

static int col_add(struct col *cols, int n, int cap, const char *key, const char *head)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(cols[i].key, key))
            return n;
    if (n >= cap)
        return n;
    snprintf(cols[n].key, sizeof(cols[n].key), "%s", key);
    if (head) {
        snprintf(cols[n].head, sizeof(cols[n].head), "%s", head);
    } else { /* a key poolctl does not know: "owner_bytes" -> "OWNER BYTES" */
        size_t i = 0;
        for (; key[i] && i + 1 < sizeof(cols[n].head); i++)
            cols[n].head[i] = key[i] == '_'                      ? ' '
                              : (key[i] >= 'a' && key[i] <= 'z') ? (char)(key[i] - 'a' + 'A')
                                                                 : key[i];
        cols[n].head[i] = '\0';
    }
    cols[n].width = (int)strlen(cols[n].head);
    return n + 1;
}

/* `poolctl classes`: the configuration poolctl knows first, then every
 * other figure poold gives per class, in the order it sends them, as a
 * column headed by its key: a key added to CLASSES later shows up with no
 * change here. Columns are as wide as their widest cell. */
static void print_classes(const struct view *v, FILE *f)
{
    static const char *const known[][2] = {{"size", "SIZE"},
                                           {"blocks_per_span", "BLOCKS/SPAN"},
                                           {"cache_cap", "CACHE CAP"},
                                           {"batch", "BATCH"}};
    struct col cols[MAX_FIELDS + 4];
    int cap = (int)(sizeof(cols) / sizeof(cols[0])), n = 0;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        n = col_add(cols, n, cap, known[i][0], known[i][1]);
    for (int r = 0; r < v->nclass; r++)
        for (int k = 0; k < v->cls[r].n; k++)
            n = col_add(cols, n, cap, v->cls[r].k[k], NULL);
    for (int r = 0; r < v->nclass; r++)
        for (int c = 0; c < n; c++) {
            int w = (int)strlen(field(&v->cls[r], cols[c].key));
            if (w > cols[c].width)
                cols[c].width = w;
        }
    for (int c = 0; c < n; c++)
        fprintf(f, "%s%*s", c ? "  " : "", cols[c].width, cols[c].head);
    fputc('\n', f);
    for (int r = 0; r < v->nclass; r++) {
        for (int c = 0; c < n; c++)
            fprintf(f, "%s%*s", c ? "  " : "", cols[c].width, field(&v->cls[r], cols[c].key));
        fputc('\n', f);
    }
    if (v->nclass == 0)
        fprintf(f, "%*s (no size class)\n", cols[0].width, "-");
}

static void print_table(const struct view *v, FILE *f)
{
    char a[32], b[32], c[32], u[32];
    print_warnings(v, f);
    if (v->nwarn)
        fputc('\n', f);
    /* Memory first: what the segment holds of /dev/shm, of its size. */
    char m1[32], m2[32], m3[32], m4[32];
    fprintf(f, "memory: %s committed of %s, %s retained free, %s spans free, %s purged\n",
            human_bytes(scalar_num(v, "bytes_committed"), m1, sizeof(m1)),
            human_bytes(scalar_num(v, "segment_bytes"), m2, sizeof(m2)),
            human_bytes(scalar_num(v, "bytes_retained"), m3, sizeof(m3)), scalar(v, "spans_free"),
            human_bytes(scalar_num(v, "bytes_purged_total"), m4, sizeof(m4)));
    fprintf(f, "poold %s  pid %s  up %s  segment %s (%s)  carved %s  in use %s  procs %s/%s\n",
            scalar(v, "version"), scalar(v, "pid"),
            human_uptime(scalar_num(v, "uptime_seconds"), u, sizeof(u)), scalar(v, "shm_name"),
            human_bytes(scalar_num(v, "segment_bytes"), a, sizeof(a)),
            human_bytes(scalar_num(v, "bytes_carved"), b, sizeof(b)),
            human_bytes(scalar_num(v, "bytes_in_use"), c, sizeof(c)), scalar(v, "procs_attached"),
            scalar(v, "procs_max"));
    fprintf(f, "\n%8s %9s %10s %10s %9s %12s %12s %7s %7s %7s %9s %9s\n", "SIZE", "IN USE", "BYTES",
            "PEAK", "FREE", "ALLOCS", "FREES", "REUSE", "SAME", "MISS", "CENTRAL", "EXHAUSTED");
    for (int i = 0; i < v->nclass; i++) {
        const struct row *r = &v->cls[i];
        double allocs = field_num(r, "allocs");
        if (allocs == 0 && field_num(r, "carved") == 0)
            continue; /* a class never used: keep the table short */
        char p1[16], p2[16], p3[16], b1[32], b2[32];
        double size = field_num(r, "size");
        fprintf(f, "%8s %9s %10s %10s %9s %12s %12s %7s %7s %7s %9s %9s\n", field(r, "size"),
                field(r, "in_use"), human_bytes(field_num(r, "in_use") * size, b1, sizeof(b1)),
                human_bytes(field_num(r, "peak") * size, b2, sizeof(b2)), field(r, "free"),
                field(r, "allocs"), field(r, "frees"),
                pct(field_num(r, "reuses"), allocs, p1, sizeof(p1)),
                pct(field_num(r, "same_address"), allocs, p2, sizeof(p2)),
                pct(field_num(r, "cache_misses"), allocs, p3, sizeof(p3)),
                field(r, "central_misses"), field(r, "exhausted"));
    }
    fputc('\n', f);
    print_procs(v, f, SORT_INUSE);
    char p1[16], p2[16], p3[16];
    double allocs = scalar_num(v, "allocations_total");
    fprintf(f,
            "\nTOTAL  allocations %s  frees %s  reuse %s  same-address %s  cache miss %s  "
            "central misses %s  exhausted %s\n",
            scalar(v, "allocations_total"), scalar(v, "frees_total"),
            pct(scalar_num(v, "reuses_total"), allocs, p1, sizeof(p1)),
            pct(scalar_num(v, "same_address_total"), allocs, p2, sizeof(p2)),
            pct(scalar_num(v, "cache_misses_total"), allocs, p3, sizeof(p3)),
            scalar(v, "central_misses_total"), scalar(v, "exhausted_total"));
    fprintf(f,
            "       processes exited %s, crashed %s  blocks given back: cached %s, in use %s  "
            "kept in transit %s\n",
            scalar(v, "procs_exited_total"), scalar(v, "procs_reclaimed_total"),
            scalar(v, "blocks_reclaimed_total"), scalar(v, "blocks_reclaimed_in_use_total"),
            scalar(v, "blocks_orphaned_total"));
    fprintf(f, "       blocks in transit %s  double frees refused %s\n",
            scalar(v, "blocks_in_transit"), scalar(v, "invalid_frees_total"));
    for (int i = 0; i < v->norphan; i++) {
        const struct row *r = &v->orphan[i];
        fprintf(
            f, "       reclaimed pid %s: %s blocks in use at death (%s kept), %s cached returned\n",
            field(r, "pid"), field(r, "blocks"), field(r, "kept"), field(r, "reclaimed_blocks"));
    }
    if (scalar_num(v, "corrupt") != 0)
        fprintf(f,
                "\nCORRUPT: poold found the segment corrupt (%s findings); it refuses new "
                "attaches.\n         See poold's log for what and where; to recover, stop every "
                "worker,\n         remove /dev/shm/<name> and restart poold.\n",
                scalar(v, "corruptions_total"));
}

static enum top_sort procs_sort = SORT_INUSE;
static long show_pid;

/* show PID: one process, and what it holds in each class. */
static int print_show(const struct view *v, FILE *f, long pid)
{
    char key[32];
    snprintf(key, sizeof(key), "proc_%ld", pid);
    const struct row *p = find_row(v->proc, v->nproc, key);
    if (!p) {
        fprintf(stderr, "poolctl: show: no process %ld is attached to poold at %s\n", pid,
                socket_path);
        return EXIT_REPLY;
    }
    char a[32], b[32], c[32], u[32], m[16];
    fprintf(f,
            "pid %s  %s  slot %s  threads %s  attached %s ago  holds %s  peak %s  growth "
            "over 1m %s\n",
            field(p, "pid"), field(p, "name")[0] ? field(p, "name") : "(no name)", field(p, "slot"),
            field(p, "threads"), human_uptime(field_num(p, "uptime_seconds"), u, sizeof(u)),
            human_bytes(field_num(p, "in_use_bytes"), a, sizeof(a)),
            human_bytes(field_num(p, "peak_bytes"), b, sizeof(b)),
            human_signed(field_num(p, "growth_1m_bytes"), c, sizeof(c)));
    fprintf(f, "allocations %s  frees %s  cache misses %s  cached blocks %s\n\n",
            field(p, "allocs"), field(p, "frees"),
            pct(field_num(p, "cache_misses"), field_num(p, "allocs"), m, sizeof(m)),
            field(p, "cached"));
    fprintf(f, "%8s %10s %10s %10s %10s\n", "SIZE", "BLOCKS", "BYTES", "PEAK", "PEAK BYTES");
    int n = 0;
    for (int i = 0; i < v->nhold; i++) {
        const struct row *h = &v->hold[i];
        if (field_num(h, "pid") != (double)pid)
            continue;
        double size = field_num(h, "size");
        fprintf(f, "%8s %10s %10s %10s %10s\n", field(h, "size"), field(h, "blocks"),
                human_bytes(field_num(h, "bytes"), a, sizeof(a)), field(h, "peak"),
                human_bytes(field_num(h, "peak") * size, b, sizeof(b)));
        n++;
    }
    if (n == 0)
        fprintf(f, "%8s (holds no block and never did)\n", "-");
    for (int i = 0; i < v->nwarn; i++) {
        char subj[32];
        snprintf(subj, sizeof(subj), "pid_%ld", pid);
        if (!strcmp(field(&v->warn[i], "subject"), subj))
            fprintf(f, "\nWARNING %s: %s\n", field(&v->warn[i], "kind"), v->warn[i].text);
    }
    return EXIT_OK;
}

/* fmt: "table" (stats), "procs", "classes", "json" or "prometheus"; into
 * the frame stream f. */
static int render(const char *fmt, const struct reply *r, FILE *f)
{
    const char *body = r->buf + r->body;
    size_t len = r->len - r->body;
    if (!strcmp(fmt, "table") || !strcmp(fmt, "procs") || !strcmp(fmt, "classes") ||
        !strcmp(fmt, "show") || !strcmp(fmt, "warnings") || !strcmp(fmt, "chans")) {
        static struct view v;
        if (parse_view(body, len, &v) < 0) {
            fprintf(stderr, "poolctl: malformed reply from poold\n");
            return EXIT_REPLY;
        }
        if (!strcmp(fmt, "procs"))
            print_procs(&v, f, procs_sort);
        else if (!strcmp(fmt, "classes"))
            print_classes(&v, f);
        else if (!strcmp(fmt, "show"))
            return print_show(&v, f, show_pid);
        else if (!strcmp(fmt, "chans"))
            print_chans(&v, f);
        else if (!strcmp(fmt, "warnings")) {
            print_warnings(&v, f);
            if (v.nwarn == 0)
                fprintf(f, "no warnings\n");
        } else
            print_table(&v, f);
        return EXIT_OK;
    }
    /* A sample repeats its row's labels: the text can be several times the
     * body. Grow on -ENOSPC, as poold's /metrics does. */
    size_t cap = 4 * len + 65536;
    for (int tries = 0; tries < 8; tries++, cap *= 2) {
        char *out = malloc(cap);
        if (!out) {
            fprintf(stderr, "poolctl: out of memory\n");
            return EXIT_REPLY;
        }
        pproto_buf_t b;
        pproto_buf_init(&b, out, cap);
        int rc = !strcmp(fmt, "json") ? pproto_render_json(body, len, &b)
                                      : pproto_render_prometheus(body, len, &b);
        if (rc >= 0)
            fwrite(out, 1, b.len, f);
        free(out);
        if (rc >= 0)
            return EXIT_OK;
        if (rc != -ENOSPC) {
            fprintf(stderr, "poolctl: cannot render poold's reply: %s\n", strerror(-rc));
            return EXIT_REPLY;
        }
    }
    fprintf(stderr, "poolctl: cannot render poold's reply: %s\n", strerror(ENOSPC));
    return EXIT_REPLY;
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* ---- tables that fit a width ----
 *
 * A table is columns with a priority (1 first); fit_columns() keeps the
 * most important ones that fit the width, in their display order, so a
 * wide terminal shows more and an 80-column one the essentials. */

#define TMAX_COLS 16
#define CELL 32

struct tcol {
    const char *head;
    int width;
    int prio;
    bool left; /* left-aligned text */
};

static void fit_columns(const struct tcol *c, int n, int width, bool *on)
{
    int used = 0;
    for (int i = 0; i < n; i++)
        on[i] = false;
    for (int p = 1; p <= 9; p++)
        for (int i = 0; i < n; i++)
            if (c[i].prio == p) {
                int w = c[i].width + (used ? 1 : 0);
                if (used + w <= width) {
                    on[i] = true;
                    used += w;
                }
            }
}

static void print_cells(FILE *f, const struct tcol *c, int n, const bool *on, char cells[][CELL])
{
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (!on[i])
            continue;
        if (!first)
            fputc(' ', f);
        first = false;
        if (c[i].left)
            fprintf(f, "%-*.*s", c[i].width, c[i].width, cells[i]);
        else
            fprintf(f, "%*.*s", c[i].width, c[i].width, cells[i]);
    }
    fputc('\n', f);
}

static void print_heads(FILE *f, const struct tcol *c, int n, const bool *on)
{
    char cells[TMAX_COLS][CELL];
    for (int i = 0; i < n; i++)
        snprintf(cells[i], CELL, "%s", c[i].head);
    print_cells(f, c, n, on, cells);
}

/* ---- top: rates between two STATS snapshots ---- */

struct top_state {
    struct view *prev, *cur; /* prev NULL: the first snapshot */
    double dt;               /* seconds between them */
    enum top_sort sort;
    int width, height; /* height 0: no limit (plain output) */
    bool tty;
};

/* Counter difference of field k between a row and its previous self. */
static double delta(const struct row *now, const struct row *was, const char *k)
{
    if (!was)
        return 0;
    double d = field_num(now, k) - field_num(was, k);
    return d > 0 ? d : 0;
}

static const char *rate_cell(const struct top_state *t, const struct row *now,
                             const struct row *was, const char *k, char *buf)
{
    if (!t->prev || !was || t->dt <= 0)
        return snprintf(buf, CELL, "-"), buf;
    return human_count(delta(now, was, k) / t->dt, buf, CELL);
}

/* Over the interval: part of allocations that were k (same_address, cache_misses). */
static const char *share_cell(const struct top_state *t, const struct row *now,
                              const struct row *was, const char *k, char *buf)
{
    if (!t->prev || !was || delta(now, was, "allocs") <= 0)
        return snprintf(buf, CELL, "-"), buf;
    return pct(delta(now, was, k), delta(now, was, "allocs"), buf, CELL);
}

static double class_inuse_bytes(const struct row *r)
{
    return field_num(r, "in_use") * field_num(r, "size");
}

static void top_classes(const struct top_state *t, FILE *f, int budget)
{
    static const struct tcol c[] = {
        /* At 80 columns: priorities 1 to 3 (78 columns). */
        {"SIZE", 5, 1, false},         {"IN USE", 10, 1, false}, {"FREE", 10, 3, false},
        {"PEAK", 10, 4, false},        {"BLOCKS", 9, 5, false},  {"ALLOC/s", 7, 1, false},
        {"FREE/s", 7, 2, false},       {"MISS/s", 6, 2, false},  {"CENT/s", 6, 3, false},
        {"EXH/s", 6, 2, false},        {"SAME%", 6, 3, false},   {"MISS%", 6, 3, false},
        {"ALLOCS", 12, 6, false},      {"FREES", 12, 6, false},  {"EXHAUSTED", 10, 7, false},
        {"DOUBLE FREES", 12, 7, false}};
    int n = (int)(sizeof(c) / sizeof(c[0]));
    bool on[TMAX_COLS];
    fit_columns(c, n, t->width, on);
    print_heads(f, c, n, on);
    struct sort_item items[MAX_ROWS];
    int m = 0;
    for (int i = 0; i < t->cur->nclass; i++) {
        const struct row *r = &t->cur->cls[i];
        if (field_num(r, "allocs") == 0 && field_num(r, "carved") == 0)
            continue; /* never used */
        const struct row *w = t->prev ? find_row(t->prev->cls, t->prev->nclass, r->key) : NULL;
        double key = 0;
        switch (t->sort) {
        case SORT_INUSE: key = class_inuse_bytes(r); break;
        case SORT_GROWTH: key = w ? class_inuse_bytes(r) - class_inuse_bytes(w) : 0; break;
        case SORT_ALLOCS: key = delta(r, w, "allocs"); break;
        case SORT_PID: key = -field_num(r, "size"); break;
        }
        items[m++] = (struct sort_item){r, w, key};
    }
    qsort(items, (size_t)m, sizeof(items[0]), by_key_desc);
    for (int i = 0; i < m; i++) {
        if (budget > 0 && i == budget - 1 && m > budget) {
            fprintf(f, "  ... %d more classes\n", m - i);
            break;
        }
        const struct row *r = items[i].r, *w = items[i].prev;
        char cells[TMAX_COLS][CELL];
        double size = field_num(r, "size");
        snprintf(cells[0], CELL, "%s", field(r, "size"));
        human_bytes(class_inuse_bytes(r), cells[1], CELL);
        human_bytes(field_num(r, "free") * size, cells[2], CELL);
        human_bytes(field_num(r, "peak") * size, cells[3], CELL);
        snprintf(cells[4], CELL, "%s", field(r, "in_use"));
        rate_cell(t, r, w, "allocs", cells[5]);
        rate_cell(t, r, w, "frees", cells[6]);
        rate_cell(t, r, w, "cache_misses", cells[7]);
        rate_cell(t, r, w, "central_misses", cells[8]);
        rate_cell(t, r, w, "exhausted", cells[9]);
        share_cell(t, r, w, "same_address", cells[10]);
        share_cell(t, r, w, "cache_misses", cells[11]);
        snprintf(cells[12], CELL, "%s", field(r, "allocs"));
        snprintf(cells[13], CELL, "%s", field(r, "frees"));
        snprintf(cells[14], CELL, "%s", field(r, "exhausted"));
        snprintf(cells[15], CELL, "%s", field(r, "invalid_frees"));
        print_cells(f, c, n, on, cells);
    }
    if (m == 0)
        fprintf(f, "  (no class used yet)\n");
}

static void top_procs(const struct top_state *t, FILE *f, int budget)
{
    static const struct tcol c[] = {
        {"PID", 8, 1, false},      {"NAME", 14, 2, true},       {"IN USE", 10, 1, false},
        {"PEAK", 10, 3, false},    {"GROWTH/1m", 10, 1, false}, {"ALLOC/s", 8, 1, false},
        {"FREE/s", 8, 2, false},   {"MISS/s", 7, 3, false},     {"THR", 4, 4, false},
        {"ATTACHED", 9, 5, false}, {"ALLOCS", 12, 6, false},    {"FREES", 12, 6, false}};
    int n = (int)(sizeof(c) / sizeof(c[0]));
    bool on[TMAX_COLS];
    fit_columns(c, n, t->width, on);
    print_heads(f, c, n, on);
    struct sort_item items[MAX_ROWS];
    int m = 0;
    for (int i = 0; i < t->cur->nproc; i++) {
        const struct row *r = &t->cur->proc[i];
        const struct row *w = t->prev ? find_row(t->prev->proc, t->prev->nproc, r->key) : NULL;
        double key = 0;
        switch (t->sort) {
        case SORT_INUSE: key = field_num(r, "in_use_bytes"); break;
        case SORT_GROWTH: key = field_num(r, "growth_1m_bytes"); break;
        case SORT_ALLOCS: key = delta(r, w, "allocs"); break;
        case SORT_PID: key = -field_num(r, "pid"); break;
        }
        items[m++] = (struct sort_item){r, w, key};
    }
    qsort(items, (size_t)m, sizeof(items[0]), by_key_desc);
    for (int i = 0; i < m; i++) {
        if (budget > 0 && i == budget - 1 && m > budget) {
            fprintf(f, "  ... %d more processes\n", m - i);
            break;
        }
        const struct row *r = items[i].r, *w = items[i].prev;
        char cells[TMAX_COLS][CELL];
        snprintf(cells[0], CELL, "%s", field(r, "pid"));
        snprintf(cells[1], CELL, "%s", field(r, "name"));
        human_bytes(field_num(r, "in_use_bytes"), cells[2], CELL);
        human_bytes(field_num(r, "peak_bytes"), cells[3], CELL);
        human_signed(field_num(r, "growth_1m_bytes"), cells[4], CELL);
        rate_cell(t, r, w, "allocs", cells[5]);
        rate_cell(t, r, w, "frees", cells[6]);
        rate_cell(t, r, w, "cache_misses", cells[7]);
        snprintf(cells[8], CELL, "%s", field(r, "threads"));
        human_uptime(field_num(r, "uptime_seconds"), cells[9], CELL);
        snprintf(cells[10], CELL, "%s", field(r, "allocs"));
        snprintf(cells[11], CELL, "%s", field(r, "frees"));
        print_cells(f, c, n, on, cells);
    }
    if (m == 0)
        fprintf(f, "  (no process attached)\n");
}

/* Whole-pool rates: the sum of the classes' differences. */
static double total_rate(const struct top_state *t, const char *k)
{
    if (!t->prev || t->dt <= 0)
        return -1;
    double d = 0;
    for (int i = 0; i < t->cur->nclass; i++)
        d += delta(&t->cur->cls[i], find_row(t->prev->cls, t->prev->nclass, t->cur->cls[i].key), k);
    return d / t->dt;
}

static const char *total_cell(const struct top_state *t, const char *k, char *buf)
{
    double r = total_rate(t, k);
    if (r < 0)
        return snprintf(buf, CELL, "-"), buf;
    return human_count(r, buf, CELL);
}

/* One frame of top into f: every line at most t->width columns, at most
 * t->height lines (when set). */
static void top_frame(const struct top_state *t, FILE *out)
{
    struct frame fr;
    if (frame_open(&fr) != EXIT_OK)
        return;
    FILE *f = fr.f;
    const struct view *v = t->cur;
    char a[32], b[32], c[32], d[32], e[32];
    fprintf(f, "poold %s  pid %s  up %s  %s %s  carved %s  in use %s  procs %s/%s\n",
            scalar(v, "version"), scalar(v, "pid"),
            human_uptime(scalar_num(v, "uptime_seconds"), a, sizeof(a)), scalar(v, "shm_name"),
            human_bytes(scalar_num(v, "segment_bytes"), b, sizeof(b)),
            human_bytes(scalar_num(v, "bytes_carved"), c, sizeof(c)),
            human_bytes(scalar_num(v, "bytes_in_use"), d, sizeof(d)), scalar(v, "procs_attached"),
            scalar(v, "procs_max"));
    char r1[CELL], r2[CELL], r3[CELL], r4[CELL], r5[CELL];
    snprintf(e, sizeof(e), "%.3f s", t->prev ? t->dt : 0.0);
    fprintf(f,
            "per second: allocs %s  frees %s  cache misses %s  central misses %s  exhausted %s"
            "  (interval %s)\n",
            total_cell(t, "allocs", r1), total_cell(t, "frees", r2),
            total_cell(t, "cache_misses", r3), total_cell(t, "central_misses", r4),
            total_cell(t, "exhausted", r5), t->prev ? e : "-");
    int shown = 0;
    for (int i = 0; i < v->nwarn; i++) {
        if (t->height && shown == 2 && v->nwarn > 3) {
            fprintf(f, "WARNING ... %d more: poolctl warnings\n", v->nwarn - i);
            shown++;
            break;
        }
        fprintf(f, "WARNING %s %s: %s\n", field(&v->warn[i], "kind"), field(&v->warn[i], "subject"),
                v->warn[i].text);
        shown++;
    }
    if (scalar_num(v, "corrupt") != 0) {
        fprintf(f, "CORRUPT: poold found the segment corrupt; see poolctl stats\n");
        shown++;
    }
    if (t->tty)
        fprintf(f, "sort: %s   keys: i in use, g growth, a allocs/s, p pid/size, q quit\n",
                sort_names[t->sort]);
    else
        fprintf(f, "sort: %s\n", sort_names[t->sort]);
    int head = 3 + shown;
    int budget_c = 0, budget_p = 0;
    if (t->height) {
        /* What is left, less two blank lines and two table headers. */
        int left = t->height - head - 4;
        if (left < 2)
            left = 2;
        int nproc = v->nproc ? v->nproc : 1, ncls = 0;
        for (int i = 0; i < v->nclass; i++)
            ncls += field_num(&v->cls[i], "allocs") != 0 || field_num(&v->cls[i], "carved") != 0;
        if (ncls == 0)
            ncls = 1;
        budget_p = nproc < left / 2 ? nproc : left / 2;
        budget_c = left - budget_p;
        if (budget_c > ncls) {
            budget_p += budget_c - ncls;
            budget_c = ncls;
        }
        if (budget_c < 1)
            budget_c = 1;
        if (budget_p < 1)
            budget_p = 1;
    }
    fputc('\n', f);
    top_classes(t, f, budget_c);
    fputc('\n', f);
    top_procs(t, f, budget_p);
    if (fclose(fr.f) != 0) {
        free(fr.buf);
        return;
    }
    /* Cut every line to the width and the frame to the height. */
    int lines = 0;
    for (char *p = fr.buf; p < fr.buf + fr.len;) {
        char *nl = memchr(p, '\n', (size_t)(fr.buf + fr.len - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(fr.buf + fr.len - p);
        if (t->height && lines >= t->height)
            break;
        fwrite(p, 1, n < (size_t)t->width ? n : (size_t)t->width, out);
        fputs(t->tty ? "\033[K\n" : "\n", out);
        lines++;
        p += n + 1;
    }
    free(fr.buf);
}

/* ---- the terminal ---- */

static struct termios saved_tio;
static bool tio_saved, screen_on;

static void term_restore(void)
{
    if (screen_on) {
        /* Cursor back, the normal screen back. */
        static const char bye[] = "\033[?25h\033[?1049l";
        (void)!write(STDOUT_FILENO, bye, sizeof(bye) - 1);
        screen_on = false;
    }
    if (tio_saved) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
        tio_saved = false;
    }
}

/* Keys one at a time, no echo (signals still work: Ctrl-C ends top). */
static void term_raw(void)
{
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
        struct termios raw = saved_tio;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO | IEXTEN);
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0)
            tio_saved = true;
    }
    static const char hello[] = "\033[?1049h\033[?25l";
    if (write(STDOUT_FILENO, hello, sizeof(hello) - 1) > 0)
        screen_on = true;
    atexit(term_restore);
}

static void term_size(int *w, int *h)
{
    struct winsize ws;
    *w = 80;
    *h = 24;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
        *w = ws.ws_col;
        *h = ws.ws_row;
    }
    if (*w < 40)
        *w = 40;
    if (*h < 10)
        *h = 10;
}

static volatile sig_atomic_t resized;

static void on_winch(int sig)
{
    (void)sig;
    resized = 1;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Draw one frame: full screen on a terminal, plain lines otherwise (frames
 * apart by a blank line). 0 or a negative errno of the write. */
static int top_draw(struct top_state *t)
{
    struct frame fr;
    if (frame_open(&fr) != EXIT_OK)
        return -ENOMEM;
    if (t->tty) {
        term_size(&t->width, &t->height);
        /* The last line stays empty (writing it would scroll the screen),
         * and so does the last column (a character there leaves the cursor
         * waiting to wrap, where the erase that ends each line would take
         * it away). */
        t->height -= 1;
        t->width -= 1;
        fputs("\033[H", fr.f);
    }
    top_frame(t, fr.f);
    if (t->tty)
        fputs("\033[J", fr.f);
    else
        fputc('\n', fr.f);
    return frame_emit(&fr, true);
}

/* top and stats --watch: a frame every `delay` seconds, rates over the last
 * interval; `frames` > 0 stops after that many. A poold that cannot be
 * reached ends top at its first frame (status 3), unless `keep_trying`
 * (stats --watch); once it answered, top waits for it to come back. */
static int run_top(double delay, enum top_sort sort, long frames, bool keep_trying)
{
    static struct view va, vb;
    struct top_state t = {.prev = NULL, .cur = &va, .sort = sort};
    t.tty = isatty(STDOUT_FILENO);
    if (!t.tty) {
        const char *cols = getenv("COLUMNS");
        t.width = cols && atoi(cols) >= 40 ? atoi(cols) : 1000;
        t.height = 0;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (t.tty) {
        signal(SIGWINCH, on_winch);
        term_raw();
    }
    double t_prev = 0;
    bool have = false;
    int rc = EXIT_OK;
    for (long n = 0; !stop; n++) {
        struct reply r;
        rc = request("STATS", true, &r);
        double t_now = mono_now();
        if (rc == EXIT_OK) {
            struct view *next = have ? (t.cur == &va ? &vb : &va) : t.cur;
            if (parse_view(r.buf + r.body, r.len - r.body, next) < 0) {
                fprintf(stderr, "poolctl: malformed reply from poold\n");
                rc = EXIT_REPLY;
            } else {
                if (have) {
                    t.prev = t.cur;
                    t.dt = t_now - t_prev;
                }
                t.cur = next;
                t_prev = t_now;
                have = true;
            }
        }
        free(r.buf);
        if (rc != EXIT_OK && rc != EXIT_UNREACHABLE)
            break;
        if (rc == EXIT_UNREACHABLE && !have && !keep_trying)
            break;
        int w;
        if (rc == EXIT_OK)
            w = top_draw(&t);
        else /* unreachable: still write, to notice a reader gone */
            w = t.tty ? 0 : out_write("\n", 1);
        if (w < 0) {
            term_restore();
            return out_failed(w);
        }
        if (frames > 0 && n + 1 >= frames)
            break;
        /* Wait for the next frame; keys redraw at once. */
        double until = mono_now() + delay;
        while (!stop) {
            double left = until - mono_now();
            if (left <= 0)
                break;
            if (!tio_saved) {
                struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
                nanosleep(&ts, NULL);
                continue;
            }
            struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
            int pr = poll(&p, 1, (int)(left * 1000) + 1);
            if (resized) {
                resized = 0;
                if (have && top_draw(&t) < 0)
                    break;
            }
            if (pr <= 0)
                continue;
            char ch;
            if (read(STDIN_FILENO, &ch, 1) != 1)
                continue;
            switch (ch) {
            case 'q':
            case 'Q': stop = 1; break;
            case 'i': t.sort = SORT_INUSE; break;
            case 'g': t.sort = SORT_GROWTH; break;
            case 'a': t.sort = SORT_ALLOCS; break;
            case 'p': t.sort = SORT_PID; break;
            default: continue;
            }
            if (!stop && have && (w = top_draw(&t)) < 0) {
                term_restore();
                return out_failed(w);
            }
        }
    }
    term_restore();
    return stop && rc == EXIT_UNREACHABLE && (have || keep_trying) ? EXIT_OK : rc;
}

/* getopt's complaint in poolctl's words (opterr is 0: getopt itself would
 * name the binary by its path). */
static int bad_option(char **argv, int c)
{
    const char *what = argv[optind - 1];
    if (c == ':')
        fprintf(stderr, "poolctl: %s needs a value (see poolctl --help)\n", what);
    else
        fprintf(stderr, "poolctl: unknown option '%s' (see poolctl --help)\n", what);
    return EXIT_USAGE;
}

/* "--watch 2", "--delay 0.5": seconds, 0 < s <= 86400. */
static int parse_seconds(const char *opt, const char *arg, double *out)
{
    char *end;
    double v = strtod(arg, &end);
    if (end == arg || *end || !(v > 0) || v > 86400) {
        fprintf(stderr, "poolctl: %s wants seconds (0 < s <= 86400), got '%s'\n", opt, arg);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_sort(const char *arg, enum top_sort *out)
{
    if (!strcmp(arg, "inuse"))
        *out = SORT_INUSE;
    else if (!strcmp(arg, "growth"))
        *out = SORT_GROWTH;
    else if (!strcmp(arg, "allocs"))
        *out = SORT_ALLOCS;
    else if (!strcmp(arg, "pid"))
        *out = SORT_PID;
    else {
        fprintf(stderr, "poolctl: --sort wants inuse, growth, allocs or pid, got '%s'\n", arg);
        return -1;
    }
    return 0;
}

static int cmd_stats(int argc, char **argv)
{
    const char *fmt = "table";
    double watch = 0;
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"prometheus", no_argument, NULL, 'p'},
                                         {"watch", required_argument, NULL, 'w'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":jpw:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
        case 'p': {
            const char *want = c == 'j' ? "json" : "prometheus";
            if (strcmp(fmt, "table") != 0 && strcmp(fmt, want) != 0) {
                fprintf(stderr, "poolctl: stats: --json and --prometheus exclude each other\n");
                return EXIT_USAGE;
            }
            fmt = want;
            break;
        }
        case 'w':
            if (parse_seconds("--watch", optarg, &watch) < 0)
                return EXIT_USAGE;
            break;
        case 'h': usage(stdout); return EXIT_OK;
        default: return bad_option(argv, c);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "poolctl: stats: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    /* The table, watched, is top with that delay. */
    if (watch > 0 && !strcmp(fmt, "table"))
        return run_top(watch, SORT_INUSE, 0, true);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    for (;;) {
        struct reply r;
        int rc = request("STATS", true, &r);
        if (rc == EXIT_OK) {
            struct frame fr;
            rc = frame_open(&fr);
            if (rc == EXIT_OK) {
                rc = render(fmt, &r, fr.f);
                int w = frame_emit(&fr, rc == EXIT_OK);
                if (w < 0) {
                    free(r.buf);
                    return out_failed(w);
                }
            }
        }
        free(r.buf);
        if (watch <= 0 || stop || (rc != EXIT_OK && rc != EXIT_UNREACHABLE))
            return rc;
        /* Frames apart; also the write that finds the reader gone while
         * poold does not answer. */
        int w = out_write("\n", 1);
        if (w < 0)
            return out_failed(w);
        struct timespec ts = {(time_t)watch, (long)((watch - (double)(time_t)watch) * 1e9)};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !stop)
            ;
        if (stop)
            return EXIT_OK;
    }
}

static int cmd_top(int argc, char **argv)
{
    double delay = 1;
    long frames = 0;
    enum top_sort sort = SORT_INUSE;
    static const struct option opts[] = {{"delay", required_argument, NULL, 'd'},
                                         {"sort", required_argument, NULL, 'o'},
                                         {"iterations", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":d:o:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            if (parse_seconds("--delay", optarg, &delay) < 0)
                return EXIT_USAGE;
            break;
        case 'o':
            if (parse_sort(optarg, &sort) < 0)
                return EXIT_USAGE;
            break;
        case 'n': {
            char *end;
            frames = strtol(optarg, &end, 10);
            if (end == optarg || *end || frames <= 0) {
                fprintf(stderr, "poolctl: --iterations wants a count above 0, got '%s'\n", optarg);
                return EXIT_USAGE;
            }
            break;
        }
        case 'h': usage(stdout); return EXIT_OK;
        default: return bad_option(argv, c);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "poolctl: top: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    return run_top(delay, sort, frames, false);
}

/* procs and classes: a table, or --json; procs --sort. */
/* Keep only section `name` of a STATS reply's body (and its END line), so
 * that --json of one table of STATS prints that table alone. */
static void keep_section(struct reply *r, const char *name)
{
    char *body = r->buf + r->body, *end = r->buf + r->len, *out = body;
    bool in = false;
    for (char *l = body; l < end;) {
        char *nl = memchr(l, '\n', (size_t)(end - l));
        size_t n = nl ? (size_t)(nl - l) + 1 : (size_t)(end - l);
        if (n >= 2 && l[0] == '#' && l[1] == ' ')
            in = n - 3 == strlen(name) && !memcmp(l + 2, name, strlen(name));
        if (in || (n >= 3 && !memcmp(l, "END", 3))) {
            memmove(out, l, n);
            out += n;
        }
        l += n;
    }
    *out = '\0';
    r->len = (size_t)(out - r->buf);
}

static int cmd_view(const char *verb, const char *table, int argc, char **argv)
{
    bool json = false;
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"sort", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":jo:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 'o':
            if (strcmp(table, "procs") != 0) {
                fprintf(stderr, "poolctl: %s: unknown option '--sort'\n", argv[0]);
                return EXIT_USAGE;
            }
            if (parse_sort(optarg, &procs_sort) < 0)
                return EXIT_USAGE;
            if (procs_sort == SORT_ALLOCS) {
                fprintf(stderr, "poolctl: procs: --sort wants inuse, growth or pid (allocs/s "
                                "needs two snapshots: poolctl top)\n");
                return EXIT_USAGE;
            }
            break;
        case 'h': usage(stdout); return EXIT_OK;
        default: return bad_option(argv, c);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "poolctl: %s: unexpected argument '%s'\n", argv[0], argv[optind]);
        return EXIT_USAGE;
    }
    struct reply r;
    int rc = request(verb, true, &r);
    if (rc == EXIT_OK && json && !strcmp(table, "chans"))
        keep_section(&r, "channels");
    struct frame fr;
    if (rc == EXIT_OK && (rc = frame_open(&fr)) == EXIT_OK) {
        rc = render(json ? "json" : table, &r, fr.f);
        int w = frame_emit(&fr, rc == EXIT_OK);
        if (w < 0)
            rc = out_failed(w);
    }
    free(r.buf);
    return rc;
}

/* show PID and warnings: views of one STATS. */
static int cmd_stats_view(const char *what, int argc, char **argv)
{
    bool show = !strcmp(what, "show");
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return EXIT_OK;
        default: return bad_option(argv, c);
        }
    }
    if (show) {
        char *end;
        if (optind >= argc) {
            fprintf(stderr, "poolctl: show wants a process id: poolctl show PID\n");
            return EXIT_USAGE;
        }
        long pid = strtol(argv[optind], &end, 10);
        if (end == argv[optind] || *end || pid <= 0 || pid > 0x7fffffff) {
            fprintf(stderr, "poolctl: show: '%s' is not a process id\n", argv[optind]);
            return EXIT_USAGE;
        }
        show_pid = pid;
        optind++;
    }
    if (optind < argc) {
        fprintf(stderr, "poolctl: %s: unexpected argument '%s'\n", what, argv[optind]);
        return EXIT_USAGE;
    }
    struct reply r;
    int rc = request("STATS", true, &r);
    struct frame fr;
    if (rc == EXIT_OK && (rc = frame_open(&fr)) == EXIT_OK) {
        rc = render(what, &r, fr.f);
        int w = frame_emit(&fr, rc == EXIT_OK);
        if (w < 0)
            rc = out_failed(w);
    }
    free(r.buf);
    return rc;
}

/* A command that takes no argument was given one. */
static int refuse_argument(const char *cmd)
{
    fprintf(stderr, "poolctl: %s takes no argument\n", cmd);
    return EXIT_USAGE;
}

/* ping: poold answers, and how long the round trip took. */
static int cmd_ping(int argc, char **argv)
{
    if (argc > 1)
        return refuse_argument(argv[0]);
    struct reply r;
    double t0 = mono_now();
    int rc = request("PING", false, &r);
    double ms = (mono_now() - t0) * 1000;
    if (rc == EXIT_OK) {
        char line[512];
        int n = snprintf(line, sizeof(line), "poold at %s answered in %.3f ms\n", socket_path, ms);
        int w = out_write(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
        if (w < 0)
            rc = out_failed(w);
    }
    free(r.buf);
    return rc;
}

/* version: poold's, in words, with poolctl's own. */
static int cmd_version(int argc, char **argv)
{
    if (argc > 1)
        return refuse_argument(argv[0]);
    struct reply r;
    int rc = request("VERSION", false, &r);
    if (rc == EXIT_OK) {
        const char *v = pproto_kv_get(&r.first, "version");
        const char *abi = pproto_kv_get(&r.first, "abi");
        const char *proto = pproto_kv_get(&r.first, "proto");
        char line[512];
        int n = snprintf(
            line, sizeof(line), "poold %s (segment layout %s, protocol %s) at %s; poolctl %s\n",
            v ? v : "?", abi ? abi : "?", proto ? proto : "?", socket_path, POOL_VERSION_STRING);
        int w = out_write(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
        if (w < 0)
            rc = out_failed(w);
    }
    free(r.buf);
    return rc;
}

/* usage() and --version print through stdio: flush it and check it like a
 * frame. A failed write never hides an earlier failure's status. */
static int out_close(int rc)
{
    int err = fflush(stdout) == 0 ? 0 : -errno;
    if (err == 0 && ferror(stdout))
        err = -EIO;
    if (err == 0)
        return rc;
    int w = out_failed(err);
    return rc == EXIT_OK ? w : rc;
}

static bool path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int run(int argc, char **argv)
{
    static const struct option opts[] = {{"socket", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {NULL, 0, NULL, 0}};
    int c;
    static char default_socket[108];
    socket_path = getenv("POOLD_SOCKET");
    if (!socket_path || !*socket_path) {
        /* poold's own default for our uid (proto/pproto_socket.c). */
        socket_path = POOL_DEFAULT_SOCKET;
        if (pproto_socket_to_try(default_socket, sizeof(default_socket), (unsigned)geteuid(),
                                 getenv("XDG_RUNTIME_DIR"), path_exists) == 0)
            socket_path = default_socket;
    }
    /* Options before the command only ("+": stop at the first non-option). */
    while ((c = getopt_long(argc, argv, "+:s:hV", opts, NULL)) != -1) {
        switch (c) {
        case 's': socket_path = optarg; break;
        case 'h': usage(stdout); return EXIT_OK;
        case 'V': printf("poolctl %s\n", POOL_VERSION_STRING); return EXIT_OK;
        default: return bad_option(argv, c);
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    char **sub = argv + optind;
    int nsub = argc - optind;
    const char *cmd = sub[0];
    if (!strcmp(cmd, "stats"))
        return cmd_stats(nsub, sub);
    if (!strcmp(cmd, "procs"))
        return cmd_view("PROCS", "procs", nsub, sub);
    if (!strcmp(cmd, "classes"))
        return cmd_view("CLASSES", "classes", nsub, sub);
    if (!strcmp(cmd, "chans"))
        return cmd_view("STATS", "chans", nsub, sub);
    if (!strcmp(cmd, "top"))
        return cmd_top(nsub, sub);
    if (!strcmp(cmd, "show") || !strcmp(cmd, "warnings"))
        return cmd_stats_view(cmd, nsub, sub);
    if (!strcmp(cmd, "ping"))
        return cmd_ping(nsub, sub);
    if (!strcmp(cmd, "version"))
        return cmd_version(nsub, sub);
    if (!strcmp(cmd, "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    fprintf(stderr, "poolctl: unknown command '%s' (try poolctl --help)\n", cmd);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    /* A closed socket to poold, or a reader of stdout gone, is an EPIPE to
     * act on, never a signal (see "standard output" above). */
    signal(SIGPIPE, SIG_IGN);
    opterr = 0; /* bad_option() speaks */
    return out_close(run(argc, argv));
}
