/* SPDX-License-Identifier: MIT */
/*
 * pproto_render.c: turn a STATS/PROCS/CLASSES body (Redis-INFO lines, see
 * docs/stats.md) into JSON or the Prometheus text format. Used by poolctl
 * (--json, --prometheus) and by poold's /metrics, so the three views can
 * never disagree. Pure functions: input is (pointer, length), output goes to
 * a caller's pproto_buf_t; no I/O, no allocation. Every line of the body is
 * parsed with pproto_parse_info_line(); a malformed body is -EINVAL. The
 * Prometheus names, types and HELP texts come from pproto_metrics.c; the
 * text must stay clean under `promtool check metrics` (tests/test_proto.c
 * and tests/test_e2e.c run it).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pproto.h"

int pproto_info_foreach(const char *body, size_t len, pproto_info_fn fn, void *ctx)
{
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        pproto_info_line_t l;
        int kind = pproto_parse_info_line(p, n, &l);
        if (kind < 0)
            return kind;
        if (kind == PPROTO_INFO_END)
            return 0;
        if (kind != PPROTO_INFO_BLANK) {
            int rc = fn(ctx, &l);
            if (rc < 0)
                return rc;
        }
        p = nl ? nl + 1 : end;
    }
    return 0;
}

static bool is_number(const char *s, size_t n)
{
    int64_t v;
    return n > 0 && pproto_parse_i64(s, n, &v) == 0;
}

static bool is_list(const char *s, size_t n)
{
    return memchr(s, '=', n) != NULL;
}

static int add_n(pproto_buf_t *b, const char *s, size_t n)
{
    return pproto_buf_add_mem(b, s, n);
}

/* ---- JSON ---- */

struct json_ctx {
    pproto_buf_t *b;
    char section[PPROTO_MAX_KEY + 1];
    bool section_is_list; /* rows of k=v lists: an array */
    bool first_item;
    bool any_section;
};

/* JSON string: the body is printable ASCII, so escaping " and \ suffices. */
static int add_json_str(pproto_buf_t *b, const char *s, size_t n)
{
    int rc = add_n(b, "\"", 1);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (s[i] == '"' || s[i] == '\\')
            rc = add_n(b, "\\", 1);
        if (rc == 0)
            rc = add_n(b, s + i, 1);
    }
    return rc ? rc : add_n(b, "\"", 1);
}

static int add_json_val(pproto_buf_t *b, const char *s, size_t n)
{
    return is_number(s, n) ? add_n(b, s, n) : add_json_str(b, s, n);
}

static int json_close_section(struct json_ctx *c)
{
    if (!c->any_section)
        return 0;
    return pproto_buf_add_str(c->b, c->section_is_list ? "\n  ]" : "\n  }");
}

static int json_line(void *ctx, const pproto_info_line_t *l)
{
    struct json_ctx *c = ctx;
    pproto_buf_t *b = c->b;
    int rc = 0;
    if (l->kind == PPROTO_INFO_SECTION) {
        rc = json_close_section(c);
        if (rc == 0 && c->any_section)
            rc = pproto_buf_add_str(b, ",");
        size_t n = l->key_len < PPROTO_MAX_KEY ? l->key_len : PPROTO_MAX_KEY;
        memcpy(c->section, l->key, n);
        c->section[n] = '\0';
        /* Sections of rows are arrays; decide on their first line. */
        c->section_is_list =
            strcmp(c->section, "classes") == 0 || strcmp(c->section, "processes") == 0 ||
            strcmp(c->section, "orphans") == 0 || strcmp(c->section, "holdings") == 0 ||
            strcmp(c->section, "warnings") == 0 || strcmp(c->section, "channels") == 0;
        if (rc == 0)
            rc = pproto_buf_add_str(b, "\n  ");
        if (rc == 0)
            rc = add_json_str(b, l->key, l->key_len);
        if (rc == 0)
            rc = pproto_buf_add_str(b, c->section_is_list ? ": [" : ": {");
        c->first_item = true;
        c->any_section = true;
        return rc;
    }
    if (!c->any_section) /* key before any section */
        return -EINVAL;
    rc = pproto_buf_add_str(b, c->first_item ? "\n    " : ",\n    ");
    c->first_item = false;
    if (c->section_is_list && is_list(l->val, l->val_len)) {
        rc = rc ? rc : pproto_buf_add_str(b, "{\"key\": ");
        rc = rc ? rc : add_json_str(b, l->key, l->key_len);
        const char *cur = l->val, *end = l->val + l->val_len;
        pproto_subkv_t kv;
        int r;
        while (rc == 0 && (r = pproto_subkv_next(&cur, end, &kv)) > 0) {
            rc = pproto_buf_add_str(b, ", ");
            rc = rc ? rc : add_json_str(b, kv.key, kv.key_len);
            rc = rc ? rc : pproto_buf_add_str(b, ": ");
            rc = rc ? rc : add_json_val(b, kv.val, kv.val_len);
        }
        if (rc == 0 && r < 0)
            rc = r;
        return rc ? rc : pproto_buf_add_str(b, "}");
    }
    if (c->section_is_list) {
        rc = rc ? rc : pproto_buf_add_str(b, "{\"key\": ");
        rc = rc ? rc : add_json_str(b, l->key, l->key_len);
        rc = rc ? rc : pproto_buf_add_str(b, ", \"value\": ");
        rc = rc ? rc : add_json_val(b, l->val, l->val_len);
        return rc ? rc : pproto_buf_add_str(b, "}");
    }
    rc = rc ? rc : add_json_str(b, l->key, l->key_len);
    rc = rc ? rc : pproto_buf_add_str(b, ": ");
    return rc ? rc : add_json_val(b, l->val, l->val_len);
}

int pproto_render_json(const char *body, size_t len, pproto_buf_t *out)
{
    struct json_ctx c = {.b = out};
    int rc = pproto_buf_add_str(out, "{");
    if (rc == 0)
        rc = pproto_info_foreach(body, len, json_line, &c);
    if (rc == 0)
        rc = json_close_section(&c);
    if (rc == 0)
        rc = pproto_buf_add_str(out, "\n}\n");
    return rc < 0 ? rc : pproto_buf_result(out);
}

/* ---- Prometheus text format 0.0.4 ---- */

/*
 * promtool wants every family once, as one group of lines under its # HELP
 * and # TYPE. The body lists a row's fields together (one class, all its
 * figures), so rendering takes passes: the first collects the families in
 * the order they first appear, then each family walks the body for its
 * samples. A family is (section, key) of the body: a scalar, or a field of
 * the rows of a section of rows.
 */
struct family {
    const char *sec, *key; /* into the body */
    size_t sec_len, key_len;
    bool row;                 /* a field of rows, labelled */
    bool counter;             /* else a gauge */
    bool hist;                /* a histogram: the row's buckets and sum */
    const pproto_metric_t *m; /* the table's entry, NULL: generic */
    const char *prefix;       /* rows: the section's name prefix */
    char name[PPROTO_MAX_KEY + 48];
};

struct prom_ctx {
    pproto_buf_t *b;
    const char *sec; /* the current section, into the body */
    size_t sec_len;
    struct family *fam;
    int nfam;
    const struct family *cur; /* pass 2: the family being rendered */
    bool scalar_done;         /* pass 2: a scalar family has its one sample */
    char sec_z[PPROTO_MAX_KEY + 1];
    /* The label keys of the current section's rows, from the table. */
    const pproto_metric_t *labels[8];
    int nlabels;
};

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static bool same(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && memcmp(a, b, an) == 0;
}

/* Track the section; returns its NUL-terminated copy for table lookups. */
static void prom_section(struct prom_ctx *c, const pproto_info_line_t *l)
{
    c->sec = l->key;
    c->sec_len = l->key_len;
    size_t n = l->key_len < PPROTO_MAX_KEY ? l->key_len : PPROTO_MAX_KEY;
    memcpy(c->sec_z, l->key, n);
    c->sec_z[n] = '\0';
    c->nlabels = 0;
    const pproto_metric_t *m;
    for (size_t i = 0; (m = pproto_metric_at(i)) != NULL; i++)
        if (m->kind == PPROTO_METRIC_LABEL && strcmp(m->section, c->sec_z) == 0 &&
            c->nlabels < (int)(sizeof(c->labels) / sizeof(c->labels[0])))
            c->labels[c->nlabels++] = m;
}

static const pproto_metric_t *prom_label(const struct prom_ctx *c, const pproto_subkv_t *kv)
{
    for (int i = 0; i < c->nlabels; i++)
        if (same(c->labels[i]->key, strlen(c->labels[i]->key), kv->key, kv->key_len))
            return c->labels[i];
    return NULL;
}

/* Add the family of (current section, key) unless it is known already. */
static int prom_add_family(struct prom_ctx *c, const char *key, size_t key_len, bool row,
                           const char *prefix, const pproto_metric_t *m)
{
    for (int i = 0; i < c->nfam; i++)
        if (c->fam[i].row == row && same(c->fam[i].sec, c->fam[i].sec_len, c->sec, c->sec_len) &&
            same(c->fam[i].key, c->fam[i].key_len, key, key_len))
            return 0;
    struct family f = {.sec = c->sec,
                       .sec_len = c->sec_len,
                       .key = key,
                       .key_len = key_len,
                       .row = row,
                       .m = m,
                       .prefix = prefix};
    if (m) {
        f.counter = m->kind == PPROTO_METRIC_COUNTER;
        f.hist = m->kind == PPROTO_METRIC_HISTOGRAM;
        snprintf(f.name, sizeof(f.name), "%s", m->name);
    } else {
        /* Generic: a key ending in _total only grows. */
        f.counter = ends_with(key, key_len, "_total");
        snprintf(f.name, sizeof(f.name), "%s%.*s", row ? prefix : "poold_", (int)key_len, key);
    }
    /* Two keys that come to one name: the first one wins, the other is left
     * out (a family must be one group). */
    for (int i = 0; i < c->nfam; i++)
        if (strcmp(c->fam[i].name, f.name) == 0)
            return 0;
    if (c->nfam >= PPROTO_MAX_FAMILIES)
        return -E2BIG;
    c->fam[c->nfam++] = f;
    return 0;
}

/* Pass 1: the families, in order of first appearance. */
static int prom_collect(void *ctx, const pproto_info_line_t *l)
{
    struct prom_ctx *c = ctx;
    if (l->kind == PPROTO_INFO_SECTION) {
        prom_section(c, l);
        return 0;
    }
    if (!c->sec) /* a key before any section */
        return -EINVAL;
    if (!is_list(l->val, l->val_len)) {
        if (!is_number(l->val, l->val_len))
            return 0; /* strings go to poold_info */
        return prom_add_family(c, l->key, l->key_len, false, NULL,
                               pproto_metric_find(c->sec_z, l->key, l->key_len));
    }
    const char *prefix = pproto_metric_row_prefix(c->sec_z);
    if (!prefix)
        return 0; /* rows of a section we do not know: JSON shows them */
    const char *cur = l->val, *end = l->val + l->val_len;
    pproto_subkv_t kv;
    int r, rc = 0;
    while (rc == 0 && (r = pproto_subkv_next(&cur, end, &kv)) > 0) {
        if (prom_label(c, &kv) || !is_number(kv.val, kv.val_len))
            continue;
        rc = prom_add_family(c, kv.key, kv.key_len, true, prefix,
                             pproto_metric_find(c->sec_z, kv.key, kv.key_len));
    }
    return rc ? rc : r;
}

/* "# HELP name text": text escaped (backslash; it holds no line break). */
static int prom_help(pproto_buf_t *b, const struct family *f)
{
    char generic[160];
    const char *help = f->m ? f->m->help : NULL;
    if (!help) {
        snprintf(generic, sizeof(generic), "poold STATS key %.*s of section %.*s (docs/stats.md)",
                 (int)f->key_len, f->key, (int)f->sec_len, f->sec);
        help = generic;
    }
    int rc = pproto_buf_add_str(b, "# HELP ");
    rc = rc ? rc : pproto_buf_add_str(b, f->name);
    rc = rc ? rc : pproto_buf_add_str(b, " ");
    for (const char *p = help; *p && rc == 0; p++)
        rc = *p == '\\' ? pproto_buf_add_str(b, "\\\\") : add_n(b, p, 1);
    rc = rc ? rc : pproto_buf_add_str(b, "\n# TYPE ");
    rc = rc ? rc : pproto_buf_add_str(b, f->name);
    rc = rc ? rc
            : pproto_buf_add_str(b, f->hist      ? " histogram\n"
                                    : f->counter ? " counter\n"
                                                 : " gauge\n");
    return rc;
}

/* Label value: printable ASCII already; escape " and \. */
static int add_label(pproto_buf_t *b, const char *name, size_t name_len, const char *v, size_t n,
                     bool first)
{
    int rc = pproto_buf_add_str(b, first ? "" : ",");
    rc = rc ? rc : add_n(b, name, name_len);
    rc = rc ? rc : pproto_buf_add_str(b, "=\"");
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (v[i] == '"' || v[i] == '\\')
            rc = add_n(b, "\\", 1);
        if (rc == 0)
            rc = add_n(b, v + i, 1);
    }
    return rc ? rc : pproto_buf_add_str(b, "\"");
}

/* One sample of a row: name{labels of the row} value. */
static int prom_row_sample(struct prom_ctx *c, const pproto_info_line_t *l)
{
    const struct family *f = c->cur;
    const char *cur = l->val, *end = l->val + l->val_len;
    pproto_subkv_t kv, hit = {0};
    bool found = false;
    while (!found && pproto_subkv_next(&cur, end, &kv) > 0)
        if (same(kv.key, kv.key_len, f->key, f->key_len) && is_number(kv.val, kv.val_len)) {
            hit = kv;
            found = true;
        }
    if (!found)
        return 0;
    int rc = pproto_buf_add_str(c->b, f->name);
    bool first = true;
    cur = l->val;
    while (rc == 0 && pproto_subkv_next(&cur, end, &kv) > 0) {
        const pproto_metric_t *m = prom_label(c, &kv);
        if (!m)
            continue;
        rc = pproto_buf_add_str(c->b, first ? "{" : "");
        rc = rc ? rc : add_label(c->b, m->name, strlen(m->name), kv.val, kv.val_len, first);
        first = false;
    }
    rc = rc ? rc : pproto_buf_add_str(c->b, first ? " " : "} ");
    rc = rc ? rc : add_n(c->b, hit.val, hit.val_len);
    return rc ? rc : pproto_buf_add_str(c->b, "\n");
}

/* The labels of a row ({a="x",b="y"} without the braces), for the lines
 * of a histogram. */
static int add_row_labels(struct prom_ctx *c, const pproto_info_line_t *l, bool *first)
{
    const char *cur = l->val, *end = l->val + l->val_len;
    pproto_subkv_t kv;
    int rc = 0;
    while (rc == 0 && pproto_subkv_next(&cur, end, &kv) > 0) {
        const pproto_metric_t *m = prom_label(c, &kv);
        if (!m)
            continue;
        rc = add_label(c->b, m->name, strlen(m->name), kv.val, kv.val_len, *first);
        *first = false;
    }
    return rc;
}

/* name_suffix{labels of the row[,le="le"]} value */
static int hist_line(struct prom_ctx *c, const pproto_info_line_t *l, const char *suffix,
                     const char *le, const char *value)
{
    bool first = true;
    int rc = pproto_buf_add_str(c->b, c->cur->name);
    rc = rc ? rc : pproto_buf_add_str(c->b, suffix);
    rc = rc ? rc : pproto_buf_add_str(c->b, "{");
    rc = rc ? rc : add_row_labels(c, l, &first);
    if (le)
        rc = rc ? rc : add_label(c->b, "le", 2, le, strlen(le), first);
    rc = rc ? rc : pproto_buf_add_str(c->b, "} ");
    rc = rc ? rc : pproto_buf_add_str(c->b, value);
    return rc ? rc : pproto_buf_add_str(c->b, "\n");
}

/* One row as a histogram: the buckets of pproto_life_keys, cumulative,
 * then _sum (seconds, from the row's nanoseconds) and _count. A row
 * without every bucket is left out (a histogram cannot be partial). */
static int prom_hist_sample(struct prom_ctx *c, const pproto_info_line_t *l)
{
    uint64_t n[PPROTO_LIFE_BUCKETS], sum_ns = 0;
    unsigned have = 0;
    bool have_sum = false;
    const char *cur = l->val, *end = l->val + l->val_len;
    pproto_subkv_t kv;
    while (pproto_subkv_next(&cur, end, &kv) > 0) {
        char num[24];
        if (!is_number(kv.val, kv.val_len) || kv.val_len >= sizeof(num) || kv.val[0] == '-')
            continue;
        memcpy(num, kv.val, kv.val_len);
        num[kv.val_len] = '\0';
        uint64_t v = strtoull(num, NULL, 10);
        if (same(kv.key, kv.key_len, PPROTO_LIFE_SUM_KEY, strlen(PPROTO_LIFE_SUM_KEY))) {
            sum_ns = v;
            have_sum = true;
        }
        for (unsigned i = 0; i < PPROTO_LIFE_BUCKETS; i++)
            if (same(kv.key, kv.key_len, pproto_life_keys[i], strlen(pproto_life_keys[i]))) {
                n[i] = v;
                have |= 1u << i;
            }
    }
    if (have != (1u << PPROTO_LIFE_BUCKETS) - 1 || !have_sum)
        return 0;
    char v[48];
    uint64_t cum = 0;
    int rc = 0;
    for (unsigned i = 0; rc == 0 && i < PPROTO_LIFE_BUCKETS; i++) {
        cum += n[i];
        snprintf(v, sizeof(v), "%llu", (unsigned long long)cum);
        rc = hist_line(c, l, "_bucket", pproto_life_le[i], v);
    }
    snprintf(v, sizeof(v), "%llu.%09llu", (unsigned long long)(sum_ns / 1000000000u),
             (unsigned long long)(sum_ns % 1000000000u));
    rc = rc ? rc : hist_line(c, l, "_sum", NULL, v);
    snprintf(v, sizeof(v), "%llu", (unsigned long long)cum);
    return rc ? rc : hist_line(c, l, "_count", NULL, v);
}

/* Pass 2: the samples of family c->cur. */
static int prom_samples(void *ctx, const pproto_info_line_t *l)
{
    struct prom_ctx *c = ctx;
    const struct family *f = c->cur;
    if (l->kind == PPROTO_INFO_SECTION) {
        prom_section(c, l);
        return 0;
    }
    if (!c->sec || !same(c->sec, c->sec_len, f->sec, f->sec_len))
        return 0;
    bool list = is_list(l->val, l->val_len);
    if (f->row && list)
        return f->hist ? prom_hist_sample(c, l) : prom_row_sample(c, l);
    if (f->row || list || !same(l->key, l->key_len, f->key, f->key_len) ||
        !is_number(l->val, l->val_len) || c->scalar_done)
        return 0;
    c->scalar_done = true; /* a scalar: its first line only (one series) */
    int rc = pproto_buf_add_str(c->b, f->name);
    rc = rc ? rc : pproto_buf_add_str(c->b, " ");
    rc = rc ? rc : add_n(c->b, l->val, l->val_len);
    return rc ? rc : pproto_buf_add_str(c->b, "\n");
}

/* poold_info{version="..",shm_name="..",...} 1 from the string scalars. */
struct info_ctx {
    pproto_buf_t *b;
    char sec_z[PPROTO_MAX_KEY + 1];
    bool first;
    /* Label names given so far: a label appears once. */
    char seen[32][PPROTO_MAX_KEY + 8];
    int nseen;
};

static int info_line(void *ctx, const pproto_info_line_t *l)
{
    struct info_ctx *c = ctx;
    if (l->kind == PPROTO_INFO_SECTION) {
        size_t n = l->key_len < PPROTO_MAX_KEY ? l->key_len : PPROTO_MAX_KEY;
        memcpy(c->sec_z, l->key, n);
        c->sec_z[n] = '\0';
        return 0;
    }
    if (is_number(l->val, l->val_len) || is_list(l->val, l->val_len))
        return 0;
    const pproto_metric_t *m = pproto_metric_find(c->sec_z, l->key, l->key_len);
    char name[PPROTO_MAX_KEY + 8];
    if (m && m->kind == PPROTO_METRIC_INFO)
        snprintf(name, sizeof(name), "%s", m->name);
    else if ((l->key[0] >= '0' && l->key[0] <= '9') ||
             (l->key_len > 1 && l->key[0] == '_' && l->key[1] == '_'))
        /* A label name starts with a letter or _, and __ is Prometheus's. */
        snprintf(name, sizeof(name), "key_%.*s", (int)l->key_len, l->key);
    else
        snprintf(name, sizeof(name), "%.*s", (int)l->key_len, l->key);
    for (int i = 0; i < c->nseen; i++)
        if (strcmp(c->seen[i], name) == 0)
            return 0;
    if (c->nseen >= (int)(sizeof(c->seen) / sizeof(c->seen[0])))
        return 0;
    snprintf(c->seen[c->nseen++], sizeof(c->seen[0]), "%s", name);
    int rc = add_label(c->b, name, strlen(name), l->val, l->val_len, c->first);
    c->first = false;
    return rc;
}

int pproto_render_prometheus(const char *body, size_t len, pproto_buf_t *out)
{
    struct family fam[PPROTO_MAX_FAMILIES];
    struct prom_ctx c = {.b = out, .fam = fam};
    int rc = pproto_info_foreach(body, len, prom_collect, &c);
    for (int i = 0; rc == 0 && i < c.nfam; i++) {
        c.cur = &fam[i];
        c.sec = NULL;
        c.sec_len = 0;
        c.scalar_done = false;
        rc = prom_help(out, &fam[i]);
        rc = rc ? rc : pproto_info_foreach(body, len, prom_samples, &c);
    }
    if (rc < 0)
        return rc;
    struct family info = {.m = pproto_metric_info()};
    snprintf(info.name, sizeof(info.name), "%s", info.m->name);
    rc = prom_help(out, &info);
    rc = rc ? rc : pproto_buf_add_str(out, "poold_info{");
    struct info_ctx ic = {.b = out, .first = true};
    rc = rc ? rc : pproto_info_foreach(body, len, info_line, &ic);
    rc = rc ? rc : pproto_buf_add_str(out, "} 1\n");
    return rc < 0 ? rc : pproto_buf_result(out);
}
