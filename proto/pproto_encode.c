/* SPDX-License-Identifier: MIT */
/*
 * pproto_encode.c: structs to bytes for the poold control protocol.
 *
 * This file owns the reply builder (pproto_buf_t) and the encoders of
 * requests, reply lines and errors. Everything is written into a buffer the
 * caller supplies: it must never write past the capacity it is given, must
 * always leave that buffer NUL-terminated, must never emit a line longer than
 * PPROTO_MAX_LINE or a byte outside printable ASCII (other than the LF that
 * ends a line), and must never allocate, do I/O or use a printf-style format
 * (keys and values are appended piece by piece, so no caller string is ever
 * interpreted as a format).
 */
#include "pproto.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* Items: one append is composed here first, then committed all at once.  */

typedef struct item {
    char s[PPROTO_MAX_LINE];
    size_t n;
    bool over;
} item_t;

static void item_mem(item_t *it, const char *p, size_t n)
{
    if (it->over || n > sizeof it->s - it->n) {
        it->over = true;
        return;
    }
    memcpy(it->s + it->n, p, n);
    it->n += n;
}

static void item_str(item_t *it, const char *s)
{
    item_mem(it, s, strlen(s));
}

static void item_u64(item_t *it, uint64_t v)
{
    char d[20];
    size_t i = sizeof d;

    do {
        d[--i] = (char)('0' + (char)(v % 10));
        v /= 10;
    } while (v != 0);
    item_mem(it, d + i, sizeof d - i);
}

static void item_i64(item_t *it, int64_t v)
{
    if (v < 0) {
        item_mem(it, "-", 1);
        item_u64(it, (uint64_t)0 - (uint64_t)v); /* also right for INT64_MIN */
    } else {
        item_u64(it, (uint64_t)v);
    }
}

/*
 * Append a C string, replacing each byte that is not printable ASCII, or
 * that is one of the characters listed in `also`, with `repl`.
 */
static void item_sanitized(item_t *it, const char *s, const char *also, char repl)
{
    for (; *s != '\0'; s++) {
        char c = *s;
        if (c < 0x20 || c > 0x7e || (also != NULL && strchr(also, c) != NULL))
            c = repl;
        item_mem(it, &c, 1);
        if (it->over)
            return;
    }
}

/* Length of s, looking at no more than max + 1 bytes. */
static size_t bounded_len(const char *s, size_t max)
{
    size_t n = 0;
    while (n <= max && s[n] != '\0')
        n++;
    return n;
}

static bool key_ok(const char *key)
{
    return key != NULL && pproto_key_valid(key, bounded_len(key, PPROTO_MAX_KEY));
}

/* ---------------------------------------------------------------------- */
/* Builder                                                                  */

void pproto_buf_init(pproto_buf_t *b, char *p, size_t cap)
{
    b->p = p;
    b->cap = p != NULL ? cap : 0;
    b->len = 0;
    b->overflow = false;
    if (b->cap > 0)
        b->p[0] = '\0';
}

int pproto_buf_result(const pproto_buf_t *b)
{
    if (b->overflow)
        return -ENOSPC;
    if (b->len > INT_MAX)
        return -EOVERFLOW;
    return (int)b->len;
}

static int fail(pproto_buf_t *b, int rc)
{
    b->overflow = true;
    return rc;
}

/* Bytes already on the current (unterminated) line of b. */
static size_t tail_len(const pproto_buf_t *b)
{
    size_t i = b->len;
    while (i > 0 && b->p[i - 1] != '\n')
        i--;
    return b->len - i;
}

/* Commit n bytes, all or nothing, keeping every line within the limit. */
static int commit(pproto_buf_t *b, const char *s, size_t n)
{
    size_t line;

    if (b->overflow)
        return -ENOSPC;
    if (b->p == NULL || b->cap == 0 || n >= b->cap - b->len)
        return fail(b, -ENOSPC);
    line = tail_len(b);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n') {
            line = 0;
        } else if (++line > PPROTO_MAX_LINE - 1) {
            return fail(b, -EMSGSIZE);
        }
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int commit_item(pproto_buf_t *b, const item_t *it)
{
    if (b->overflow)
        return -ENOSPC;
    if (it->over)
        return fail(b, -EMSGSIZE);
    return commit(b, it->s, it->n);
}

int pproto_buf_add_mem(pproto_buf_t *b, const void *p, size_t n)
{
    if (p == NULL && n != 0)
        return fail(b, -EINVAL);
    return commit(b, p, n);
}

int pproto_buf_add_str(pproto_buf_t *b, const char *s)
{
    if (s == NULL)
        return fail(b, -EINVAL);
    return commit(b, s, strlen(s));
}

/* key=value pairs already on the current line: what the parser of an OK
 * line will count against PPROTO_MAX_KV. */
static size_t line_pairs(const pproto_buf_t *b)
{
    size_t n = 0, start = b->len - tail_len(b);
    bool in_tok = false, has_eq = false;

    for (size_t i = start; i <= b->len; i++) {
        char c = i < b->len ? b->p[i] : ' ';
        if (c == ' ') {
            if (in_tok && has_eq)
                n++;
            in_tok = has_eq = false;
        } else {
            in_tok = true;
            has_eq = has_eq || c == '=';
        }
    }
    return n;
}

/* Checks shared by the OK-line pair appenders. */
static int kv_check(pproto_buf_t *b, const char *key)
{
    if (b->overflow)
        return -ENOSPC;
    if (!key_ok(key))
        return fail(b, -EINVAL);
    if (b->p != NULL && b->cap > 0 && line_pairs(b) >= PPROTO_MAX_KV)
        return fail(b, -EMSGSIZE);
    return 0;
}

int pproto_buf_add_kv_u64(pproto_buf_t *b, const char *key, uint64_t v)
{
    item_t it = {.n = 0};
    int rc;

    if ((rc = kv_check(b, key)) < 0)
        return rc;
    item_mem(&it, " ", 1);
    item_str(&it, key);
    item_mem(&it, "=", 1);
    item_u64(&it, v);
    return commit_item(b, &it);
}

int pproto_buf_add_kv_str(pproto_buf_t *b, const char *key, const char *val)
{
    item_t it = {.n = 0};
    int rc;

    if (val == NULL)
        return fail(b, -EINVAL);
    if ((rc = kv_check(b, key)) < 0)
        return rc;
    if (bounded_len(val, PPROTO_MAX_VAL) > PPROTO_MAX_VAL)
        return fail(b, -EMSGSIZE);
    item_mem(&it, " ", 1);
    item_str(&it, key);
    item_mem(&it, "=", 1);
    item_sanitized(&it, val, " ", '_');
    return commit_item(b, &it);
}

int pproto_buf_add_info_u64(pproto_buf_t *b, const char *key, uint64_t v)
{
    item_t it = {.n = 0};

    if (!key_ok(key))
        return fail(b, -EINVAL);
    item_str(&it, key);
    item_mem(&it, ":", 1);
    item_u64(&it, v);
    item_mem(&it, "\n", 1);
    return commit_item(b, &it);
}

int pproto_buf_add_info_i64(pproto_buf_t *b, const char *key, int64_t v)
{
    item_t it = {.n = 0};

    if (!key_ok(key))
        return fail(b, -EINVAL);
    item_str(&it, key);
    item_mem(&it, ":", 1);
    item_i64(&it, v);
    item_mem(&it, "\n", 1);
    return commit_item(b, &it);
}

int pproto_buf_add_info_str(pproto_buf_t *b, const char *key, const char *val)
{
    item_t it = {.n = 0};

    if (!key_ok(key) || val == NULL)
        return fail(b, -EINVAL);
    item_str(&it, key);
    item_mem(&it, ":", 1);
    item_sanitized(&it, val, NULL, '?');
    item_mem(&it, "\n", 1);
    return commit_item(b, &it);
}

int pproto_buf_add_section(pproto_buf_t *b, const char *name)
{
    item_t it = {.n = 0};
    size_t i = 0;

    if (name == NULL)
        return fail(b, -EINVAL);
    while (name[i] == ' ')
        i++;
    if (name[i] == '\0')
        return fail(b, -EINVAL);
    item_mem(&it, "# ", 2);
    item_sanitized(&it, name + i, NULL, '?');
    while (it.n > 2 && it.s[it.n - 1] == ' ') /* the parser trims them */
        it.n--;
    item_mem(&it, "\n", 1);
    return commit_item(b, &it);
}

int pproto_buf_begin_row(pproto_buf_t *b, const char *key)
{
    item_t it = {.n = 0};

    if (!key_ok(key))
        return fail(b, -EINVAL);
    item_str(&it, key);
    item_mem(&it, ":", 1);
    return commit_item(b, &it);
}

/* True when the current line is exactly "key:" so far (no item yet). Keys
 * hold no ':', so the row's first ':' ends its key. */
static bool row_is_empty(const pproto_buf_t *b)
{
    size_t start = b->len - tail_len(b);
    const char *colon = memchr(b->p + start, ':', b->len - start);
    return colon != NULL && colon == b->p + b->len - 1;
}

enum subkv_type { SUBKV_STR, SUBKV_U64, SUBKV_I64 };

static int add_subkv(pproto_buf_t *b, const char *key, enum subkv_type type, const char *sval,
                     uint64_t uval, int64_t ival)
{
    item_t it = {.n = 0};

    if (b->overflow)
        return -ENOSPC;
    if (!key_ok(key) || b->p == NULL)
        return fail(b, -EINVAL);
    if (!row_is_empty(b))
        item_mem(&it, ",", 1);
    item_str(&it, key);
    item_mem(&it, "=", 1);
    switch (type) {
    case SUBKV_STR: item_sanitized(&it, sval, ",", '_'); break;
    case SUBKV_U64: item_u64(&it, uval); break;
    case SUBKV_I64: item_i64(&it, ival); break;
    }
    return commit_item(b, &it);
}

int pproto_buf_add_subkv_u64(pproto_buf_t *b, const char *key, uint64_t v)
{
    return add_subkv(b, key, SUBKV_U64, NULL, v, 0);
}

int pproto_buf_add_subkv_i64(pproto_buf_t *b, const char *key, int64_t v)
{
    return add_subkv(b, key, SUBKV_I64, NULL, 0, v);
}

int pproto_buf_add_subkv_str(pproto_buf_t *b, const char *key, const char *val)
{
    if (val == NULL)
        return fail(b, -EINVAL);
    return add_subkv(b, key, SUBKV_STR, val, 0, 0);
}

int pproto_buf_end_line(pproto_buf_t *b)
{
    return commit(b, "\n", 1);
}

int pproto_buf_add_end(pproto_buf_t *b)
{
    return commit(b, "END\n", 4);
}

/* ---------------------------------------------------------------------- */
/* Whole lines                                                              */

/* Result of an encoder: the length, or rc with buf emptied. */
static int finish(pproto_buf_t *b, int rc)
{
    if (rc == 0)
        rc = pproto_buf_result(b);
    if (rc < 0 && b->cap > 0)
        b->p[0] = '\0';
    return rc;
}

int pproto_encode_request(char *buf, size_t cap, const pproto_req_t *req)
{
    const char *verb;
    pproto_buf_t b;
    int rc;

    pproto_buf_init(&b, buf, cap);
    if (req == NULL || (verb = pproto_verb_name(req->verb)) == NULL) {
        rc = -EINVAL;
        goto out;
    }
    if ((rc = pproto_buf_add_str(&b, verb)) < 0)
        goto out;
    if (req->verb == PPROTO_HELLO) {
        size_t nlen = bounded_len(req->name, PPROTO_MAX_NAME);
        if (req->pid <= 0 || nlen > PPROTO_MAX_NAME ||
            (nlen > 0 && !pproto_name_valid(req->name, nlen))) {
            rc = -EINVAL;
            goto out;
        }
        if ((rc = pproto_buf_add_kv_u64(&b, "abi", req->abi)) < 0)
            goto out;
        if ((rc = pproto_buf_add_kv_u64(&b, "pid", (uint64_t)req->pid)) < 0)
            goto out;
        if (nlen > 0 && (rc = pproto_buf_add_kv_str(&b, "name", req->name)) < 0)
            goto out;
        if (req->image != 0 && (rc = pproto_buf_add_kv_u64(&b, "image", req->image)) < 0)
            goto out;
    }
    rc = pproto_buf_end_line(&b);
out:
    return finish(&b, rc);
}

/* Sanitize msg into out (PPROTO_MAX_MSG + 1 bytes): non-printable bytes
 * become spaces, leading and trailing spaces go, at most PPROTO_MAX_MSG. */
static size_t sanitize_msg(char *out, const char *msg)
{
    size_t n = 0;

    for (; *msg != '\0' && n < PPROTO_MAX_MSG; msg++) {
        char c = (*msg >= 0x20 && *msg <= 0x7e) ? *msg : ' ';
        if (n == 0 && c == ' ')
            continue;
        out[n++] = c;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
    return n;
}

int pproto_encode_error(char *buf, size_t cap, pproto_err_t e, const char *msg)
{
    char clean[PPROTO_MAX_MSG + 1];
    pproto_buf_t b;
    int rc;

    pproto_buf_init(&b, buf, cap);
    if (e == PPROTO_ERR_NONE || (unsigned)e > (unsigned)PPROTO_ERR_LAST) {
        rc = -EINVAL;
        goto out;
    }
    if (msg == NULL)
        msg = pproto_err_message(e);
    if ((rc = pproto_buf_add_str(&b, "ERR ")) < 0)
        goto out;
    if ((rc = pproto_buf_add_str(&b, pproto_err_name(e))) < 0)
        goto out;
    if (sanitize_msg(clean, msg) > 0) {
        if ((rc = pproto_buf_add_str(&b, " ")) < 0)
            goto out;
        if ((rc = pproto_buf_add_str(&b, clean)) < 0)
            goto out;
    }
    rc = pproto_buf_end_line(&b);
out:
    return finish(&b, rc);
}

int pproto_encode_reply(char *buf, size_t cap, const pproto_reply_t *r)
{
    pproto_buf_t b;
    size_t mlen;
    int rc;

    pproto_buf_init(&b, buf, cap);
    if (r == NULL) {
        rc = -EINVAL;
        goto out;
    }
    mlen = bounded_len(r->msg, PPROTO_MAX_MSG);
    if (mlen > PPROTO_MAX_MSG) {
        rc = -EINVAL;
        goto out;
    }
    if (!r->ok) {
        rc = pproto_encode_error(buf, cap, r->err, r->msg);
        return rc;
    }
    if (r->nkv > PPROTO_MAX_KV) {
        rc = -EINVAL;
        goto out;
    }
    for (size_t i = 0; i < mlen; i++) {
        if (r->msg[i] < 0x20 || r->msg[i] > 0x7e || r->msg[i] == '=') {
            rc = -EINVAL;
            goto out;
        }
    }
    for (size_t i = 0; i < r->nkv; i++) {
        const char *v = r->kv[i].val;
        size_t klen = bounded_len(r->kv[i].key, PPROTO_MAX_KEY);
        size_t vlen = bounded_len(v, PPROTO_MAX_VAL);
        if (!pproto_key_valid(r->kv[i].key, klen) || vlen > PPROTO_MAX_VAL) {
            rc = -EINVAL;
            goto out;
        }
        for (size_t j = 0; j < vlen; j++) {
            if (v[j] <= 0x20 || v[j] > 0x7e) {
                rc = -EINVAL;
                goto out;
            }
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(r->kv[j].key, r->kv[i].key) == 0) { /* parser refuses it */
                rc = -EINVAL;
                goto out;
            }
        }
    }
    if ((rc = pproto_buf_add_str(&b, "OK")) < 0)
        goto out;
    if (mlen > 0) {
        if ((rc = pproto_buf_add_str(&b, " ")) < 0)
            goto out;
        if ((rc = pproto_buf_add_mem(&b, r->msg, mlen)) < 0)
            goto out;
    }
    for (size_t i = 0; i < r->nkv; i++)
        if ((rc = pproto_buf_add_kv_str(&b, r->kv[i].key, r->kv[i].val)) < 0)
            goto out;
    rc = pproto_buf_end_line(&b);
out:
    return finish(&b, rc);
}
