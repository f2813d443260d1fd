/* SPDX-License-Identifier: MIT */
/*
 * pproto_render.c: turn a STATS/PROCS/CLASSES body (Redis-INFO lines, see
 * docs/stats.md) into JSON or the Prometheus text format. Used by poolctl
 * (--json, --prometheus) and by poold's /metrics, so the three views can
 * never disagree. Pure functions: input is (pointer, length), output goes to
 * a caller's pproto_buf_t; no I/O, no allocation. Every line of the body is
 * parsed with pproto_parse_info_line(); a malformed body is -EINVAL.
 */
#include <errno.h>
#include <stdio.h>
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
        c->section_is_list = strcmp(c->section, "classes") == 0 ||
                             strcmp(c->section, "processes") == 0 ||
                             strcmp(c->section, "orphans") == 0;
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

struct prom_ctx {
    pproto_buf_t *b;
    char section[PPROTO_MAX_KEY + 1];
    /* Metric families already given their # TYPE line (by name). */
    char typed[96][112];
    int ntyped;
};

/* Class and process fields that only grow: counters, named ..._total. */
static bool field_is_counter(const char *k, size_t n)
{
    static const char *const counters[] = {"allocs",       "frees",           "reuses",
                                           "same_address", "cache_misses",    "central_misses",
                                           "exhausted",    "reclaimed_blocks"};
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
        if (strlen(counters[i]) == n && memcmp(counters[i], k, n) == 0)
            return true;
    return false;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* "# TYPE name kind" once per family. */
static int prom_type(struct prom_ctx *c, const char *name, bool counter)
{
    for (int i = 0; i < c->ntyped; i++)
        if (strcmp(c->typed[i], name) == 0)
            return 0;
    if (c->ntyped < (int)(sizeof(c->typed) / sizeof(c->typed[0]))) {
        snprintf(c->typed[c->ntyped], sizeof(c->typed[0]), "%s", name);
        c->ntyped++;
    }
    char line[192];
    snprintf(line, sizeof(line), "# TYPE %s %s\n", name, counter ? "counter" : "gauge");
    return pproto_buf_add_str(c->b, line);
}

/* Label value: printable ASCII already; escape " and \. */
static int add_label(pproto_buf_t *b, const char *name, const char *v, size_t n, bool first)
{
    int rc = pproto_buf_add_str(b, first ? "" : ",");
    rc = rc ? rc : pproto_buf_add_str(b, name);
    rc = rc ? rc : pproto_buf_add_str(b, "=\"");
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (v[i] == '"' || v[i] == '\\')
            rc = add_n(b, "\\", 1);
        if (rc == 0)
            rc = add_n(b, v + i, 1);
    }
    return rc ? rc : pproto_buf_add_str(b, "\"");
}

static int prom_scalar(struct prom_ctx *c, const pproto_info_line_t *l)
{
    char name[80];
    if (!is_number(l->val, l->val_len))
        return 0; /* strings go to poold_info */
    snprintf(name, sizeof(name), "poold_%.*s", (int)l->key_len, l->key);
    bool counter = ends_with(l->key, l->key_len, "_total");
    int rc = prom_type(c, name, counter);
    rc = rc ? rc : pproto_buf_add_str(c->b, name);
    rc = rc ? rc : pproto_buf_add_str(c->b, " ");
    rc = rc ? rc : add_n(c->b, l->val, l->val_len);
    return rc ? rc : pproto_buf_add_str(c->b, "\n");
}

static int prom_row(struct prom_ctx *c, const pproto_info_line_t *l)
{
    /* Rows: class_<size>, proc_<pid>, orphan_<pid>. Labels first. */
    const char *prefix;
    const char *label_keys[2];
    int nlabels;
    if (strcmp(c->section, "classes") == 0) {
        prefix = "poold_class_";
        label_keys[0] = "size";
        nlabels = 1;
    } else if (strcmp(c->section, "processes") == 0) {
        prefix = "poold_proc_";
        label_keys[0] = "pid";
        label_keys[1] = "name";
        nlabels = 2;
    } else if (strcmp(c->section, "orphans") == 0) {
        prefix = "poold_orphan_";
        label_keys[0] = "pid";
        nlabels = 1;
    } else {
        return 0;
    }
    char labels[256];
    pproto_buf_t lb;
    pproto_buf_init(&lb, labels, sizeof(labels));
    int rc = 0;
    for (int i = 0; i < nlabels; i++) {
        const char *cur = l->val, *end = l->val + l->val_len;
        pproto_subkv_t kv;
        while (pproto_subkv_next(&cur, end, &kv) > 0)
            if (strlen(label_keys[i]) == kv.key_len &&
                memcmp(kv.key, label_keys[i], kv.key_len) == 0)
                rc = rc ? rc : add_label(&lb, label_keys[i], kv.val, kv.val_len, lb.len == 0);
    }
    if (rc < 0)
        return rc;
    const char *cur = l->val, *end = l->val + l->val_len;
    pproto_subkv_t kv;
    int r;
    while ((r = pproto_subkv_next(&cur, end, &kv)) > 0) {
        bool is_label = false;
        for (int i = 0; i < nlabels; i++)
            if (strlen(label_keys[i]) == kv.key_len &&
                memcmp(kv.key, label_keys[i], kv.key_len) == 0)
                is_label = true;
        if (is_label || !is_number(kv.val, kv.val_len))
            continue;
        bool counter = field_is_counter(kv.key, kv.key_len);
        char name[96];
        snprintf(name, sizeof(name), "%s%.*s%s", prefix, (int)kv.key_len, kv.key,
                 counter ? "_total" : "");
        rc = prom_type(c, name, counter);
        rc = rc ? rc : pproto_buf_add_str(c->b, name);
        rc = rc ? rc : pproto_buf_add_str(c->b, "{");
        rc = rc ? rc : pproto_buf_add_str(c->b, labels);
        rc = rc ? rc : pproto_buf_add_str(c->b, "} ");
        rc = rc ? rc : add_n(c->b, kv.val, kv.val_len);
        rc = rc ? rc : pproto_buf_add_str(c->b, "\n");
        if (rc < 0)
            return rc;
    }
    return r < 0 ? r : 0;
}

static int prom_line(void *ctx, const pproto_info_line_t *l)
{
    struct prom_ctx *c = ctx;
    if (l->kind == PPROTO_INFO_SECTION) {
        size_t n = l->key_len < PPROTO_MAX_KEY ? l->key_len : PPROTO_MAX_KEY;
        memcpy(c->section, l->key, n);
        c->section[n] = '\0';
        return 0;
    }
    if (is_list(l->val, l->val_len))
        return prom_row(c, l);
    return prom_scalar(c, l);
}

/* poold_info{version="..",shm_name="..",...} 1 from the string values. */
struct info_ctx {
    pproto_buf_t *b;
    bool first;
};

static int info_line(void *ctx, const pproto_info_line_t *l)
{
    struct info_ctx *c = ctx;
    if (l->kind != PPROTO_INFO_KV || is_number(l->val, l->val_len) || is_list(l->val, l->val_len))
        return 0;
    char key[PPROTO_MAX_KEY + 1];
    size_t n = l->key_len < PPROTO_MAX_KEY ? l->key_len : PPROTO_MAX_KEY;
    memcpy(key, l->key, n);
    key[n] = '\0';
    int rc = add_label(c->b, key, l->val, l->val_len, c->first);
    c->first = false;
    return rc;
}

int pproto_render_prometheus(const char *body, size_t len, pproto_buf_t *out)
{
    static struct prom_ctx c; /* large; never shared: callers are single-threaded */
    memset(&c, 0, sizeof(c));
    c.b = out;
    int rc = pproto_info_foreach(body, len, prom_line, &c);
    if (rc < 0)
        return rc;
    rc = pproto_buf_add_str(out, "# TYPE poold_info gauge\npoold_info{");
    struct info_ctx ic = {out, true};
    rc = rc ? rc : pproto_info_foreach(body, len, info_line, &ic);
    rc = rc ? rc : pproto_buf_add_str(out, "} 1\n");
    return rc < 0 ? rc : pproto_buf_result(out);
}
