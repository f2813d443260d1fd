/* SPDX-License-Identifier: MIT */
/*
 * poolctl.c: the command-line client of poold's control socket.
 *
 *   poolctl [--socket PATH] stats [--json | --prometheus] [--watch SECONDS]
 *   poolctl [--socket PATH] procs [--json] | classes [--json]
 *   poolctl [--socket PATH] ping | version
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
#include <sys/stat.h>
#include <sys/un.h>
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
            "                 per-class, per-process and whole-pool statistics\n"
            "  procs [--json] the processes attached to the pool\n"
            "  classes [--json]\n"
            "                 the size classes: block size, blocks per span, thread-cache\n"
            "                 cap and batch, and any other figure poold gives per class\n"
            "  ping           check that poold answers\n"
            "  version        poold's version and segment ABI\n"
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
            "  --json              (stats, procs, classes) one JSON object, a member per\n"
            "                      section, figures as numbers\n"
            "  --prometheus        (stats) the Prometheus text format, as poold's /metrics\n"
            "  --watch SECONDS     (stats) redraw every SECONDS until interrupted\n"
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
#define MAX_FIELDS 32

struct row {
    char key[PPROTO_MAX_KEY + 1];
    int n;
    char k[MAX_FIELDS][PPROTO_MAX_KEY + 1];
    char v[MAX_FIELDS][64];
};

struct view {
    char section[PPROTO_MAX_KEY + 1];
    /* scalars of # server and # pool */
    int nscalar;
    char sk[64][PPROTO_MAX_KEY + 1];
    char sv[64][128];
    int nclass, nproc, norphan;
    struct row cls[MAX_ROWS], proc[MAX_ROWS], orphan[MAX_ROWS];
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
    if (r) {
        copy_n(r->key, sizeof(r->key), l->key, l->key_len);
        const char *c = l->val, *e = l->val + l->val_len;
        pproto_subkv_t kv;
        while (r->n < MAX_FIELDS && pproto_subkv_next(&c, e, &kv) > 0) {
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
    memset(v, 0, sizeof(*v));
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

/* The processes: `poolctl procs` and the middle of `poolctl stats`. */
static void print_procs(const struct view *v, FILE *f)
{
    fprintf(f, "%8s %-16s %5s %7s %12s %12s %7s %7s %7s %5s\n", "PID", "NAME", "SLOT", "THREADS",
            "ALLOCS", "FREES", "IN USE", "CACHED", "MISS", "CONN");
    for (int i = 0; i < v->nproc; i++) {
        const struct row *r = &v->proc[i];
        char p1[16];
        fprintf(f, "%8s %-16.16s %5s %7s %12s %12s %7s %7s %7s %5s\n", field(r, "pid"),
                field(r, "name"), field(r, "slot"), field(r, "threads"), field(r, "allocs"),
                field(r, "frees"), field(r, "in_use"), field(r, "cached"),
                pct(field_num(r, "cache_misses"), field_num(r, "allocs"), p1, sizeof(p1)),
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
    char a[32], b[32], c[32];
    fprintf(f, "poold %s  pid %s  up %ss  segment %s (%s)  carved %s  in use %s  procs %s/%s\n",
            scalar(v, "version"), scalar(v, "pid"), scalar(v, "uptime_seconds"),
            scalar(v, "shm_name"), human_bytes(scalar_num(v, "segment_bytes"), a, sizeof(a)),
            human_bytes(scalar_num(v, "bytes_carved"), b, sizeof(b)),
            human_bytes(scalar_num(v, "bytes_in_use"), c, sizeof(c)), scalar(v, "procs_attached"),
            scalar(v, "procs_max"));
    fprintf(f, "\n%8s %9s %9s %12s %12s %7s %7s %7s %9s %9s\n", "SIZE", "IN USE", "FREE", "ALLOCS",
            "FREES", "REUSE", "SAME", "MISS", "CENTRAL", "EXHAUSTED");
    for (int i = 0; i < v->nclass; i++) {
        const struct row *r = &v->cls[i];
        double allocs = field_num(r, "allocs");
        if (allocs == 0 && field_num(r, "carved") == 0)
            continue; /* a class never used: keep the table short */
        char p1[16], p2[16], p3[16];
        fprintf(f, "%8s %9s %9s %12s %12s %7s %7s %7s %9s %9s\n", field(r, "size"),
                field(r, "in_use"), field(r, "free"), field(r, "allocs"), field(r, "frees"),
                pct(field_num(r, "reuses"), allocs, p1, sizeof(p1)),
                pct(field_num(r, "same_address"), allocs, p2, sizeof(p2)),
                pct(field_num(r, "cache_misses"), allocs, p3, sizeof(p3)),
                field(r, "central_misses"), field(r, "exhausted"));
    }
    fputc('\n', f);
    print_procs(v, f);
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

/* fmt: "table" (stats), "procs", "classes", "json" or "prometheus"; into
 * the frame stream f. */
static int render(const char *fmt, const struct reply *r, FILE *f)
{
    const char *body = r->buf + r->body;
    size_t len = r->len - r->body;
    if (!strcmp(fmt, "table") || !strcmp(fmt, "procs") || !strcmp(fmt, "classes")) {
        static struct view v;
        if (parse_view(body, len, &v) < 0) {
            fprintf(stderr, "poolctl: malformed reply from poold\n");
            return EXIT_REPLY;
        }
        if (!strcmp(fmt, "procs"))
            print_procs(&v, f);
        else if (!strcmp(fmt, "classes"))
            print_classes(&v, f);
        else
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
    while ((c = getopt_long(argc, argv, "jpw:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': fmt = "json"; break;
        case 'p': fmt = "prometheus"; break;
        case 'w': {
            char *end;
            watch = strtod(optarg, &end);
            if (*end || watch <= 0 || watch > 86400) {
                fprintf(stderr, "poolctl: --watch wants seconds (0 < s <= 86400), got '%s'\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        }
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "poolctl: stats: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    bool tty = isatty(STDOUT_FILENO);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    for (;;) {
        struct reply r;
        int rc = request("STATS", true, &r);
        if (rc == EXIT_OK) {
            struct frame fr;
            rc = frame_open(&fr);
            if (rc == EXIT_OK) {
                if (watch > 0 && tty)
                    fputs("\033[H\033[2J", fr.f); /* redraw, like top */
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
        /* Frames apart in a file or a pipe; also the write that finds the
         * reader gone while poold does not answer. */
        int w = tty ? 0 : out_write("\n", 1);
        if (w < 0)
            return out_failed(w);
        struct timespec ts = {(time_t)watch, (long)((watch - (double)(time_t)watch) * 1e9)};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !stop)
            ;
        if (stop)
            return EXIT_OK;
    }
}

/* procs and classes: a table, or --json. */
static int cmd_view(const char *verb, const char *table, int argc, char **argv)
{
    bool json = false;
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "poolctl: %s: unexpected argument '%s'\n", argv[0], argv[optind]);
        return EXIT_USAGE;
    }
    struct reply r;
    int rc = request(verb, true, &r);
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

/* ping and version: poold's one-line answer. */
static int cmd_simple(const char *verb, int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "poolctl: %s takes no argument\n", argv[0]);
        return EXIT_USAGE;
    }
    struct reply r;
    int rc = request(verb, false, &r);
    if (rc == EXIT_OK) {
        /* The first line, with its LF (the reply may lack one at EOF). */
        const char *nl = strchr(r.buf, '\n');
        size_t len = nl ? (size_t)(nl - r.buf) : r.len;
        r.buf[len] = '\n';
        int w = out_write(r.buf, len + 1);
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
    while ((c = getopt_long(argc, argv, "+s:hV", opts, NULL)) != -1) {
        switch (c) {
        case 's': socket_path = optarg; break;
        case 'h': usage(stdout); return EXIT_OK;
        case 'V': printf("poolctl %s\n", POOL_VERSION_STRING); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
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
    if (!strcmp(cmd, "ping"))
        return cmd_simple("PING", nsub, sub);
    if (!strcmp(cmd, "version"))
        return cmd_simple("VERSION", nsub, sub);
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
    return out_close(run(argc, argv));
}
