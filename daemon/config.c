/* SPDX-License-Identifier: MIT */
/*
 * config.c: poold's settings, as ONE table of directives (Redis style):
 * name, type, default, help text, and whether SIGHUP may change it at run
 * time. The config file (read with inih), the command-line flags and the
 * start-up log all go through this table, so a directive exists everywhere
 * or nowhere. Owns parsing and validating values; it must never open
 * sockets or segments, and never exits (main.c decides).
 *
 * File format: `key = value` lines, optionally under a `[poold]` section,
 * `#` or `;` comments. Unknown keys and bad values are errors with FILE:LINE.
 */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <ini.h>

#include "poold.h"

enum dtype {
    T_STR,
    T_SHM,
    T_SIZE,
    T_U32,
    T_LEVEL,
    T_CLASSES,
    T_ENDPOINT,
    T_ORPHANS,
    T_DUR,
    T_PREFAULT
};

typedef struct directive {
    pd_directive_info_t info;
    enum dtype type;
    size_t off;      /* offsetof(pd_config_t, field) */
    size_t cap;      /* string fields: buffer size */
    uint64_t lo, hi; /* numbers: inclusive range */
} directive_t;

#define STR(field, t) t, offsetof(pd_config_t, field), sizeof(((pd_config_t *)0)->field), 0, 0
#define NUM(field, t, lo, hi) t, offsetof(pd_config_t, field), 0, lo, hi

static const directive_t table[] = {
    {{"socket", "",
      "control socket path (default: /run/poold/poold.sock as root, else "
      "$XDG_RUNTIME_DIR/poold/poold.sock or /tmp/poold-$UID/poold.sock)",
      false},
     STR(socket, T_STR)},
    {{"shm_name", "",
      "POSIX shared-memory name of the segment (default: /poold as root, else "
      "/poold-$UID)",
      false},
     STR(shm_name, T_SHM)},
    {{"size", "",
      "segment size in bytes, K/M/G suffixes allowed: a ceiling, memory is committed as it is "
      "carved (default: half of /dev/shm, from 64M to 8G)",
      false},
     NUM(size, T_SIZE, 1u << 20, PSHM_MAX_SEGMENT)},
    {{"prefault", "none",
      "'none' commits a span's memory when it is carved and gives back what stays free; 'all' "
      "commits and prefaults the whole segment at start",
      false},
     NUM(prefault_all, T_PREFAULT, 0, 1)},
    {{"purge_delay", "10s",
      "free spans are given back to the system after this long free (prefault none); seconds, "
      "or with an s/m/h suffix",
      true},
     NUM(purge_delay, T_DUR, 0, 86400)},
    {{"retain", "4M",
      "bytes of free spans kept committed for reuse, never given back (prefault none)", true},
     NUM(retain, T_SIZE, 0, PSHM_MAX_SEGMENT)},
    {{"classes", "fine",
      "size classes: 'fine' (8, 16, 32, 48, 64, then four per doubling to 65536: 45 classes), "
      "'pow2' (powers of two 8..65536: 14), a list '8,16,64' or a power-of-two range "
      "'8-65536'",
      false},
     STR(classes, T_CLASSES)},
    {{"max_block", "0",
      "largest block pool_malloc serves (sizes above the largest class are runs of whole "
      "spans), K/M/G suffixes; 0: a quarter of the segment",
      true},
     NUM(max_block, T_SIZE, 0, PSHM_MAX_SEGMENT)},
    {{"max_procs", "64", "process slots in the segment (poold takes one)", false},
     NUM(max_procs, T_U32, 2, PSHM_MAX_PROCS)},
    {{"max_threads", "256", "thread-cache records in the segment (poold takes one)", false},
     NUM(max_threads, T_U32, 2, PSHM_MAX_THREADS)},
    {{"orphans", "reclaim",
      "blocks a dead process still had in use: 'reclaim' gives them back to the pool, 'keep' "
      "puts them in transit for a live process to free or adopt (for programs that pass raw "
      "offsets with pool_offset)",
      true},
     NUM(orphans_keep, T_ORPHANS, 0, 1)},
    {{"group", "", "group whose members may attach (socket and segment 0660); empty: owner only",
      false},
     STR(group, T_STR)},
    {{"metrics", "", "serve Prometheus /metrics on HOST:PORT (e.g. 127.0.0.1:9464); empty: off",
      true},
     STR(metrics, T_ENDPOINT)},
    {{"log_level", "info", "error, warn, info or debug", true}, NUM(log_level, T_LEVEL, 0, 3)},
    {{"idle_timeout", "300",
      "seconds before an idle connection that is not an attached worker "
      "is closed; 0: never",
      true},
     NUM(idle_timeout, T_U32, 0, 86400 * 365)},
    {{"max_connections", "1024", "control connections open at once", true},
     NUM(max_connections, T_U32, 1, 1000000)},
    {{"leak_window", "10m",
      "a process whose in-use bytes grow steadily for this long is reported as a leak "
      "suspect; seconds, or with an s/m/h suffix",
      true},
     NUM(leak_window, T_DUR, 10, 7 * 86400)},
    {{"max_line", "1024", "longest request line in bytes, LF included (at most 1024)", false},
     NUM(max_line, T_U32, 16, PPROTO_MAX_LINE)},
};

#define NDIR (sizeof(table) / sizeof(table[0]))

const pd_directive_info_t *pd_config_directives(size_t *n)
{
    /* The info part heads each entry: hand out a copy of the infos. */
    static pd_directive_info_t infos[NDIR];
    for (size_t i = 0; i < NDIR; i++)
        infos[i] = table[i].info;
    *n = NDIR;
    return infos;
}

static const directive_t *lookup(const char *name)
{
    for (size_t i = 0; i < NDIR; i++)
        if (strcmp(table[i].info.name, name) == 0)
            return &table[i];
    return NULL;
}

int pd_parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -ERANGE;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    default: return -EINVAL;
    }
    /* Accept K, KB, KiB (all binary). */
    if (shift && (strcasecmp(end, "b") == 0 || strcasecmp(end, "ib") == 0))
        end += strlen(end);
    if (*end)
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

/* A duration: seconds, or a number with an s, m or h suffix. */
static int parse_duration(const char *s, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || v > UINT32_MAX)
        return -ERANGE;
    uint64_t mul = 1;
    if (*end == 's')
        end++;
    else if (*end == 'm')
        mul = 60, end++;
    else if (*end == 'h')
        mul = 3600, end++;
    if (*end)
        return -EINVAL;
    *out = v * mul;
    return 0;
}

static bool shm_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 2 || n > PD_SHM_NAME_MAX || s[0] != '/')
        return false;
    for (size_t i = 1; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* HOST:PORT, [V6]:PORT; host may be empty only for "" (off). */
static int endpoint_ok(const char *s)
{
    if (!*s)
        return 0;
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port == 0 || port > 65535)
        return -EINVAL;
    return 0;
}

int pd_config_set(pd_config_t *c, const char *name, const char *value, char *err, size_t errlen)
{
    const directive_t *d = lookup(name);
    char *field;
    uint64_t v = 0;
    int rc;

    if (!d) {
        snprintf(err, errlen, "unknown directive '%s'", name);
        return -ENOENT;
    }
    field = (char *)c + d->off;
    switch (d->type) {
    case T_STR:
    case T_SHM:
    case T_CLASSES:
    case T_ENDPOINT:
        if (strlen(value) >= d->cap) {
            snprintf(err, errlen, "%s: value longer than %zu bytes", name, d->cap - 1);
            return -EINVAL;
        }
        if (d->type == T_SHM && *value && !shm_name_ok(value)) {
            snprintf(err, errlen, "%s: '%s' is not a shm name ('/' then 1 to %d of [A-Za-z0-9._-])",
                     name, value, PD_SHM_NAME_MAX - 1);
            return -EINVAL;
        }
        if (d->type == T_CLASSES) {
            pshm_params_t p;
            char e2[200];
            pshm_params_default(&p, 0);
            if (pshm_params_set_classes(&p, value, e2, sizeof(e2)) < 0) {
                snprintf(err, errlen, "%s: %s", name, e2);
                return -EINVAL;
            }
        }
        if (d->type == T_ENDPOINT && endpoint_ok(value) < 0) {
            snprintf(err, errlen, "%s: '%s' is not HOST:PORT", name, value);
            return -EINVAL;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case T_PREFAULT:
        if (strcmp(value, "none") != 0 && strcmp(value, "all") != 0) {
            snprintf(err, errlen, "%s: '%s' is not none or all", name, value);
            return -EINVAL;
        }
        *(uint32_t *)(void *)field = strcmp(value, "all") == 0;
        return 0;
    case T_ORPHANS:
        if (strcmp(value, "reclaim") != 0 && strcmp(value, "keep") != 0) {
            snprintf(err, errlen, "%s: '%s' is not reclaim or keep", name, value);
            return -EINVAL;
        }
        *(uint32_t *)(void *)field = strcmp(value, "keep") == 0;
        return 0;
    case T_LEVEL:
        rc = pd_log_level_parse(value);
        if (rc < 0) {
            snprintf(err, errlen, "%s: '%s' is not error, warn, info or debug", name, value);
            return -EINVAL;
        }
        *(int *)(void *)field = rc;
        return 0;
    case T_DUR:
        rc = parse_duration(value, &v);
        if (rc < 0 || v < d->lo || v > d->hi) {
            snprintf(err, errlen,
                     "%s: '%s' is not a duration from %" PRIu64 " s to %" PRIu64
                     " s (seconds, or an s/m/h suffix)",
                     name, value, d->lo, d->hi);
            return -EINVAL;
        }
        *(uint32_t *)(void *)field = (uint32_t)v;
        return 0;
    case T_SIZE:
    case T_U32:
        if (d->type == T_SIZE && !*value && d->info.deflt[0] == '\0') {
            *(uint64_t *)(void *)field = 0; /* computed (pd_config_finalize) */
            return 0;
        }
        rc = d->type == T_SIZE ? pd_parse_size(value, &v)
                               : pproto_parse_u64(value, strlen(value), &v);
        if (d->type == T_SIZE && (rc == -ERANGE || (rc == 0 && (v < d->lo || v > d->hi)))) {
            char lim[32];
            bool big = rc == -ERANGE || v > d->hi;
            snprintf(err, errlen, "%s: '%s' is too %s: at %s %s", name, value,
                     big ? "big" : "small", big ? "most" : "least",
                     pd_human_bytes(big ? d->hi : d->lo, lim, sizeof(lim)));
            return -EINVAL;
        }
        if (rc < 0 || v < d->lo || v > d->hi) {
            snprintf(err, errlen, "%s: '%s' is not a %s from %" PRIu64 " to %" PRIu64, name, value,
                     d->type == T_SIZE ? "size (K/M/G suffix allowed)" : "number", d->lo, d->hi);
            return -EINVAL;
        }
        if (d->type == T_SIZE)
            *(uint64_t *)(void *)field = v;
        else
            *(uint32_t *)(void *)field = (uint32_t)v;
        return 0;
    }
    return -EINVAL;
}

void pd_config_defaults(pd_config_t *c)
{
    char err[256];
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NDIR; i++) {
        int rc = pd_config_set(c, table[i].info.name, table[i].info.deflt, err, sizeof(err));
        pool_assert(rc == 0);
        (void)rc;
    }
}

int pd_config_format(const pd_config_t *c, const char *name, char *out, size_t cap)
{
    const directive_t *d = lookup(name);
    if (!d)
        return -ENOENT;
    const char *field = (const char *)c + d->off;
    switch (d->type) {
    case T_STR:
    case T_SHM:
    case T_CLASSES:
    case T_ENDPOINT: snprintf(out, cap, "%s", field); break;
    case T_LEVEL:
        snprintf(out, cap, "%s", pd_log_level_name(*(const int *)(const void *)field));
        break;
    case T_ORPHANS:
        snprintf(out, cap, "%s", *(const uint32_t *)(const void *)field ? "keep" : "reclaim");
        break;
    case T_PREFAULT:
        snprintf(out, cap, "%s", *(const uint32_t *)(const void *)field ? "all" : "none");
        break;
    case T_SIZE: snprintf(out, cap, "%" PRIu64, *(const uint64_t *)(const void *)field); break;
    case T_U32: snprintf(out, cap, "%" PRIu32, *(const uint32_t *)(const void *)field); break;
    case T_DUR: snprintf(out, cap, "%" PRIu32 "s", *(const uint32_t *)(const void *)field); break;
    }
    return 0;
}

struct load_ctx {
    pd_config_t *c;
    char err[PD_STR_MAX * 2 + 64];
    bool failed;
};

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *ctx = user;
    char e[PD_STR_MAX * 2];
    if (ctx->failed) /* keep the first error: ini_parse reports its line */
        return 0;
    if (section && *section && strcmp(section, "poold") != 0) {
        snprintf(ctx->err, sizeof(ctx->err), "unknown section [%s] (only [poold])", section);
        ctx->failed = true;
        return 0;
    }
    /* A comment after the value: `size = 8M # the hard limit` (inih itself
     * only knows ';' after a space). '#' after a space starts it; values
     * never hold one. */
    char v[PD_STR_MAX * 2];
    snprintf(v, sizeof(v), "%s", value);
    for (char *h = v; (h = strchr(h, '#')) != NULL; h++)
        if (h > v && (h[-1] == ' ' || h[-1] == '\t')) {
            *h = '\0';
            break;
        }
    size_t vl = strlen(v);
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        v[--vl] = '\0';
    if (pd_config_set(ctx->c, name, v, e, sizeof(e)) < 0) {
        snprintf(ctx->err, sizeof(ctx->err), "%s", e);
        ctx->failed = true;
        return 0;
    }
    return 1;
}

int pd_config_load(pd_config_t *c, const char *path, char *err, size_t errlen)
{
    struct load_ctx ctx = {.c = c};
    int line = ini_parse(path, ini_cb, &ctx);
    if (line == 0)
        return 0;
    if (line == -1) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -ENOENT;
    }
    if (line < 0) {
        snprintf(err, errlen, "%s: out of memory while parsing", path);
        return -ENOMEM;
    }
    snprintf(err, errlen, "%s:%d: %s", path, line,
             ctx.failed ? ctx.err : "syntax error (want 'key = value')");
    return -EINVAL;
}

static int ensure_default_socket(pd_config_t *c, char *err, size_t errlen)
{
    /* The same default libpoolclient and poolctl try (proto/). */
    if (pproto_default_socket(c->socket, sizeof(c->socket), (unsigned)geteuid(),
                              getenv("XDG_RUNTIME_DIR")) < 0) {
        snprintf(err, errlen, "default socket path is too long; set --socket");
        return -ENAMETOOLONG;
    }
    return 0;
}

uint64_t pd_default_size(void)
{
    /* Half of /dev/shm: the ceiling of a pool that commits what it carves,
     * so generous costs nothing until used; the rest of /dev/shm stays for
     * others. Bounded: 64 MiB at least (the old fixed default), 8 GiB at
     * most (the tables, committed at creation, are about 0.13% of it). */
    struct statvfs v;
    uint64_t half = statvfs("/dev/shm", &v) == 0 ? (uint64_t)v.f_blocks * v.f_frsize / 2 : 0;
    half &= ~((UINT64_C(1) << 20) - 1);
    if (half < PD_DEFAULT_SIZE_MIN)
        half = PD_DEFAULT_SIZE_MIN;
    return half > PD_DEFAULT_SIZE_MAX ? PD_DEFAULT_SIZE_MAX : half;
}

int pd_config_finalize(pd_config_t *c, char *err, size_t errlen)
{
    int rc;
    if (c->size == 0)
        c->size = pd_default_size();
    if (!c->socket[0] && (rc = ensure_default_socket(c, err, errlen)) < 0)
        return rc;
    if (!c->shm_name[0]) {
        if (geteuid() == 0)
            snprintf(c->shm_name, sizeof(c->shm_name), "/poold");
        else
            snprintf(c->shm_name, sizeof(c->shm_name), "/poold-%u", (unsigned)geteuid());
    }
    /* The segment must hold the classes, slots and thread caches asked for:
     * say so now rather than when the segment is created. */
    pshm_params_t p;
    char e[256], have[32], need[32];
    pshm_params_default(&p, c->size);
    if (pshm_params_set_classes(&p, c->classes, e, sizeof(e)) == 0) {
        p.max_procs = c->max_procs;
        p.max_threads = c->max_threads;
        uint64_t min = pshm_params_min_bytes(&p);
        if (c->size < min) {
            /* Rounded up to a MiB: a size one can type. */
            uint64_t mib = (min + (1u << 20) - 1) >> 20;
            snprintf(err, errlen,
                     "size: %s is too small for %u classes, %u process slots and %u thread "
                     "caches: at least %s (size = %lluM)",
                     pd_human_bytes(c->size, have, sizeof(have)), p.nclasses, p.max_procs,
                     p.max_threads, pd_human_bytes(min, need, sizeof(need)),
                     (unsigned long long)mib);
            return -EINVAL;
        }
    }
    if (c->group[0] && !getgrnam(c->group)) {
        snprintf(err, errlen, "group: no group named '%s'", c->group);
        return -EINVAL;
    }
    return 0;
}

void pd_config_log(const pd_config_t *c)
{
    char v[PD_STR_MAX];
    for (size_t i = 0; i < NDIR; i++) {
        pd_config_format(c, table[i].info.name, v, sizeof(v));
        pd_info("config %s = %s", table[i].info.name, v[0] ? v : "(none)");
    }
}
