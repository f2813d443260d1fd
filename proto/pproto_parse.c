/* SPDX-License-Identifier: MIT */
/*
 * pproto_parse.c: bytes to structs for the poold control protocol.
 *
 * This file owns every decision about what a line read from the control
 * socket means: framing (LF, tolerated CR, length limit), the printable-ASCII
 * rule, tokenizing, verbs, HELLO arguments, reply lines and INFO body lines,
 * plus the name tables shared with the encoder. Its input comes from a peer
 * that may be hostile or broken, so it must never read past the length it is
 * given (inputs are not NUL-terminated), never allocate, never do I/O, never
 * call locale-dependent or errno-setting libc functions, and it must be safe
 * to run under libFuzzer (see fuzz_pproto.c).
 */
#include "pproto.h"

#include <errno.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* Tables                                                                  */

static const char *const verb_names[] = {
    [PPROTO_HELLO] = "HELLO",     [PPROTO_BYE] = "BYE",         [PPROTO_STATS] = "STATS",
    [PPROTO_PROCS] = "PROCS",     [PPROTO_CLASSES] = "CLASSES", [PPROTO_PING] = "PING",
    [PPROTO_VERSION] = "VERSION",
};
#define NVERBS (sizeof verb_names / sizeof verb_names[0])

static const char *const err_names[] = {
    [PPROTO_ERR_NONE] = "none",
    [PPROTO_ERR_LINE_TOO_LONG] = "line-too-long",
    [PPROTO_ERR_UNKNOWN_VERB] = "unknown-verb",
    [PPROTO_ERR_BAD_ARGUMENT] = "bad-argument",
    [PPROTO_ERR_ABI_MISMATCH] = "abi-mismatch",
    [PPROTO_ERR_SLOTS_FULL] = "slots-full",
    [PPROTO_ERR_PERMISSION_DENIED] = "permission-denied",
    [PPROTO_ERR_NOT_ATTACHED] = "not-attached",
    [PPROTO_ERR_ALREADY_ATTACHED] = "already-attached",
    [PPROTO_ERR_INTERNAL] = "internal",
    [PPROTO_ERR_POOL_CORRUPT] = "pool-corrupt",
};

static const char *const err_messages[] = {
    [PPROTO_ERR_NONE] = "no error",
    [PPROTO_ERR_LINE_TOO_LONG] = "line longer than 1024 bytes",
    [PPROTO_ERR_UNKNOWN_VERB] = "unknown verb",
    [PPROTO_ERR_BAD_ARGUMENT] = "bad argument",
    [PPROTO_ERR_ABI_MISMATCH] = "client and daemon segment ABI differ",
    [PPROTO_ERR_SLOTS_FULL] = "no free process slot",
    [PPROTO_ERR_PERMISSION_DENIED] = "permission denied",
    [PPROTO_ERR_NOT_ATTACHED] = "this connection has not sent HELLO",
    [PPROTO_ERR_ALREADY_ATTACHED] = "this connection is already attached",
    [PPROTO_ERR_INTERNAL] = "internal error",
    [PPROTO_ERR_POOL_CORRUPT] = "the pool segment is corrupt",
};

_Static_assert(sizeof err_names / sizeof err_names[0] == PPROTO_ERR_LAST + 1,
               "one name per error code");
_Static_assert(sizeof err_messages / sizeof err_messages[0] == PPROTO_ERR_LAST + 1,
               "one message per error code");
_Static_assert(NVERBS == PPROTO_VERSION + 1, "one name per verb");

const char *pproto_verb_name(pproto_verb_t v)
{
    if ((unsigned)v < NVERBS && verb_names[v] != NULL)
        return verb_names[v];
    return NULL;
}

bool pproto_verb_multiline(pproto_verb_t v)
{
    return v == PPROTO_STATS || v == PPROTO_PROCS || v == PPROTO_CLASSES;
}

const char *pproto_err_name(pproto_err_t e)
{
    if ((unsigned)e <= (unsigned)PPROTO_ERR_LAST)
        return err_names[e];
    return err_names[PPROTO_ERR_INTERNAL];
}

const char *pproto_err_message(pproto_err_t e)
{
    if ((unsigned)e <= (unsigned)PPROTO_ERR_LAST)
        return err_messages[e];
    return err_messages[PPROTO_ERR_INTERNAL];
}

int pproto_err_from_name(const char *name, size_t len, pproto_err_t *out)
{
    if (name == NULL || out == NULL)
        return -EINVAL;
    /* Start at 1: "none" is not a wire code. */
    for (unsigned i = 1; i <= (unsigned)PPROTO_ERR_LAST; i++) {
        if (strlen(err_names[i]) == len && memcmp(err_names[i], name, len) == 0) {
            *out = (pproto_err_t)i;
            return 0;
        }
    }
    return -ENOENT;
}

/* ---------------------------------------------------------------------- */
/* Characters, numbers, tokens                                             */

static bool is_print(char c)
{
    return c >= 0x20 && c <= 0x7e;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char to_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* s[0..len) equals the lower-case literal lit, ignoring ASCII case. */
static bool eq_nocase(const char *s, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    if (n != len)
        return false;
    for (size_t i = 0; i < n; i++)
        if (to_lower(s[i]) != to_lower(lit[i]))
            return false;
    return true;
}

bool pproto_key_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > PPROTO_MAX_KEY)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || is_digit(c) || c == '_'))
            return false;
    }
    return true;
}

bool pproto_name_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > PPROTO_MAX_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

int pproto_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (s == NULL || out == NULL || len == 0)
        return -EINVAL;
    for (size_t i = 0; i < len; i++)
        if (!is_digit(s[i]))
            return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int pproto_parse_i64(const char *s, size_t len, int64_t *out)
{
    bool neg = len > 0 && s != NULL && s[0] == '-';
    uint64_t mag;
    int rc;

    if (out == NULL)
        return -EINVAL;
    rc = pproto_parse_u64(neg ? s + 1 : s, neg ? len - 1 : len, &mag);
    if (rc < 0)
        return rc;
    if (neg) {
        /* "-0" is not a number any encoder writes, and pproto_parse_u64()
         * refuses it (a sign): refusing it here too keeps the two parsers in
         * agreement on every non-negative value (fuzz_pproto checks this). */
        if (mag == 0)
            return -EINVAL;
        if (mag > (uint64_t)INT64_MAX + 1)
            return -ERANGE;
        /* -mag without overflowing: INT64_MIN is -(INT64_MAX + 1). */
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX)
            return -ERANGE;
        *out = (int64_t)mag;
    }
    return 0;
}

/*
 * Framing shared by every kind of line: drop one trailing LF, then one
 * trailing CR, enforce PPROTO_MAX_LINE (which counts the LF, present or not)
 * and the printable-ASCII rule. *body_len is the length that remains.
 */
static int frame(const char *line, size_t len, size_t *body_len)
{
    if (line == NULL && len != 0)
        return -EINVAL;
    if (len > 0 && line[len - 1] == '\n')
        len--;
    if (len > PPROTO_MAX_LINE - 1)
        return -E2BIG;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    for (size_t i = 0; i < len; i++)
        if (!is_print(line[i]))
            return -EINVAL;
    *body_len = len;
    return 0;
}

typedef struct tok {
    const char *p;
    size_t n;
} tok_t;

/* Next space-separated token of [*cur, end); false when none is left. */
static bool next_tok(const char **cur, const char *end, tok_t *t)
{
    const char *p = *cur;

    while (p < end && *p == ' ')
        p++;
    if (p == end) {
        *cur = p;
        return false;
    }
    t->p = p;
    while (p < end && *p != ' ')
        p++;
    t->n = (size_t)(p - t->p);
    *cur = p;
    return true;
}

/* ---------------------------------------------------------------------- */
/* Requests                                                                */

static int parse_hello_args(const char *cur, const char *end, pproto_req_t *out,
                            const char **detail)
{
    bool have_abi = false, have_pid = false, have_name = false, have_image = false;
    tok_t t;

    while (next_tok(&cur, end, &t)) {
        const char *eq = memchr(t.p, '=', t.n);
        size_t klen, vlen;
        const char *val;
        uint64_t v;

        if (eq == NULL) {
            *detail = "HELLO arguments are key=value";
            return -EINVAL;
        }
        klen = (size_t)(eq - t.p);
        val = eq + 1;
        vlen = t.n - klen - 1;

        if (eq_nocase(t.p, klen, "abi")) {
            if (have_abi) {
                *detail = "duplicate abi";
                return -EINVAL;
            }
            have_abi = true;
            if (pproto_parse_u64(val, vlen, &v) < 0 || v > UINT32_MAX) {
                *detail = "abi must be a number in 0..4294967295";
                return -EINVAL;
            }
            out->abi = (uint32_t)v;
        } else if (eq_nocase(t.p, klen, "pid")) {
            if (have_pid) {
                *detail = "duplicate pid";
                return -EINVAL;
            }
            have_pid = true;
            if (pproto_parse_u64(val, vlen, &v) < 0 || v == 0 || v > INT32_MAX) {
                *detail = "pid must be a number in 1..2147483647";
                return -EINVAL;
            }
            out->pid = (int32_t)v;
        } else if (eq_nocase(t.p, klen, "name")) {
            if (have_name) {
                *detail = "duplicate name";
                return -EINVAL;
            }
            have_name = true;
            if (!pproto_name_valid(val, vlen)) {
                *detail = "name must be 1 to 64 characters of [A-Za-z0-9._-]";
                return -EINVAL;
            }
            memcpy(out->name, val, vlen);
            out->name[vlen] = '\0';
        } else if (eq_nocase(t.p, klen, "image")) {
            if (have_image) {
                *detail = "duplicate image";
                return -EINVAL;
            }
            have_image = true;
            if (pproto_parse_u64(val, vlen, &v) < 0 || v == 0 || v > UINT32_MAX) {
                *detail = "image must be a number in 1..4294967295";
                return -EINVAL;
            }
            out->image = (uint32_t)v;
        } else {
            *detail = "unknown HELLO argument";
            return -EINVAL;
        }
    }
    if (!have_abi) {
        *detail = "HELLO needs abi=";
        return -EINVAL;
    }
    if (!have_pid) {
        *detail = "HELLO needs pid=";
        return -EINVAL;
    }
    return 0;
}

int pproto_parse_request_ex(const char *line, size_t len, pproto_req_t *out, pproto_err_t *err,
                            const char **detail)
{
    const char *why = NULL;
    pproto_err_t code = PPROTO_ERR_NONE;
    const char *cur, *end;
    size_t n = 0;
    tok_t verb;
    int rc;

    if (out == NULL) {
        code = PPROTO_ERR_INTERNAL;
        why = "no output";
        rc = -EINVAL;
        goto out;
    }
    memset(out, 0, sizeof *out);
    if (line == NULL && len == 0)
        line = ""; /* no pointer arithmetic on NULL */

    rc = frame(line, len, &n);
    if (rc == -E2BIG) {
        code = PPROTO_ERR_LINE_TOO_LONG;
        why = "line longer than 1024 bytes";
        goto out;
    }
    if (rc < 0) {
        code = PPROTO_ERR_BAD_ARGUMENT;
        why = "line holds a byte that is not printable ASCII";
        goto out;
    }

    cur = line;
    end = line + n;
    if (n == 0 || !next_tok(&cur, end, &verb)) {
        code = PPROTO_ERR_UNKNOWN_VERB;
        why = "empty request";
        rc = -ENOTSUP;
        goto out;
    }
    for (unsigned v = PPROTO_HELLO; v < NVERBS; v++) {
        if (eq_nocase(verb.p, verb.n, verb_names[v])) {
            out->verb = (pproto_verb_t)v;
            break;
        }
    }
    if (out->verb == 0) {
        code = PPROTO_ERR_UNKNOWN_VERB;
        why = "unknown verb";
        rc = -ENOTSUP;
        goto out;
    }

    if (out->verb == PPROTO_HELLO) {
        rc = parse_hello_args(cur, end, out, &why);
    } else {
        tok_t extra;
        if (next_tok(&cur, end, &extra)) {
            why = "this verb takes no arguments";
            rc = -EINVAL;
        }
    }
    if (rc < 0)
        code = PPROTO_ERR_BAD_ARGUMENT;

out:
    if (rc < 0 && out != NULL) {
        pproto_verb_t keep = out->verb;
        memset(out, 0, sizeof *out);
        out->verb = keep; /* lets the caller log which verb failed */
    }
    if (err != NULL)
        *err = code;
    if (detail != NULL)
        *detail = why;
    return rc;
}

int pproto_parse_request(const char *line, size_t len, pproto_req_t *out, pproto_err_t *err)
{
    return pproto_parse_request_ex(line, len, out, err, NULL);
}

/* ---------------------------------------------------------------------- */
/* Replies                                                                 */

/* Append word to msg (words joined by one space), cutting at PPROTO_MAX_MSG. */
static void msg_add_word(char *msg, const char *w, size_t n)
{
    size_t used = strlen(msg);
    size_t room;

    if (used > 0) {
        if (used >= PPROTO_MAX_MSG)
            return;
        msg[used++] = ' ';
    }
    room = PPROTO_MAX_MSG - used;
    if (n > room)
        n = room;
    memcpy(msg + used, w, n);
    msg[used + n] = '\0';
}

static void msg_trim_right(char *msg)
{
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == ' ')
        msg[--n] = '\0';
}

static int parse_ok_rest(const char *cur, const char *end, pproto_reply_t *out)
{
    tok_t t;

    while (next_tok(&cur, end, &t)) {
        const char *eq = memchr(t.p, '=', t.n);
        size_t klen, vlen;

        if (eq == NULL) {
            msg_add_word(out->msg, t.p, t.n);
            continue;
        }
        klen = (size_t)(eq - t.p);
        vlen = t.n - klen - 1;
        if (!pproto_key_valid(t.p, klen) || vlen > PPROTO_MAX_VAL)
            return -EINVAL;
        for (size_t i = 0; i < out->nkv; i++)
            if (strlen(out->kv[i].key) == klen && memcmp(out->kv[i].key, t.p, klen) == 0)
                return -EINVAL;
        if (out->nkv == PPROTO_MAX_KV)
            return -EOVERFLOW;
        memcpy(out->kv[out->nkv].key, t.p, klen);
        out->kv[out->nkv].key[klen] = '\0';
        memcpy(out->kv[out->nkv].val, eq + 1, vlen);
        out->kv[out->nkv].val[vlen] = '\0';
        out->nkv++;
    }
    msg_trim_right(out->msg);
    return 0;
}

static int parse_err_rest(const char *cur, const char *end, pproto_reply_t *out)
{
    tok_t code;
    size_t n;

    if (!next_tok(&cur, end, &code))
        return -EINVAL;
    if (pproto_err_from_name(code.p, code.n, &out->err) < 0)
        out->err = PPROTO_ERR_INTERNAL; /* a code newer than us */
    while (cur < end && *cur == ' ')
        cur++;
    while (end > cur && end[-1] == ' ')
        end--;
    n = (size_t)(end - cur);
    if (n > PPROTO_MAX_MSG)
        n = PPROTO_MAX_MSG;
    memcpy(out->msg, cur, n);
    out->msg[n] = '\0';
    msg_trim_right(out->msg);
    return 0;
}

int pproto_parse_reply(const char *line, size_t len, pproto_reply_t *out)
{
    const char *cur, *end;
    size_t n = 0;
    tok_t first;
    int rc;

    if (out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    if (line == NULL && len == 0)
        line = ""; /* no pointer arithmetic on NULL */
    rc = frame(line, len, &n);
    if (rc < 0)
        return rc;
    cur = line;
    end = line + n;
    if (n == 0 || !next_tok(&cur, end, &first))
        return -EINVAL;
    if (eq_nocase(first.p, first.n, "ok")) {
        out->ok = true;
        rc = parse_ok_rest(cur, end, out);
    } else if (eq_nocase(first.p, first.n, "err")) {
        rc = parse_err_rest(cur, end, out);
    } else {
        rc = -EINVAL;
    }
    if (rc < 0)
        memset(out, 0, sizeof *out);
    return rc;
}

const char *pproto_kv_get(const pproto_reply_t *r, const char *key)
{
    if (r == NULL || key == NULL)
        return NULL;
    for (size_t i = 0; i < r->nkv && i < PPROTO_MAX_KV; i++)
        if (strcmp(r->kv[i].key, key) == 0)
            return r->kv[i].val;
    return NULL;
}

int pproto_kv_get_u64(const pproto_reply_t *r, const char *key, uint64_t *out)
{
    const char *v = pproto_kv_get(r, key);

    if (v == NULL)
        return -ENOENT;
    return pproto_parse_u64(v, strlen(v), out);
}

/* ---------------------------------------------------------------------- */
/* INFO bodies                                                             */

int pproto_parse_info_line(const char *line, size_t len, pproto_info_line_t *out)
{
    const char *p, *end, *colon;
    size_t n = 0;
    int rc;

    if (out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    if (line == NULL && len == 0)
        line = ""; /* no pointer arithmetic on NULL */
    rc = frame(line, len, &n);
    if (rc < 0)
        return rc;

    p = line;
    end = line + n;
    while (p < end && *p == ' ')
        p++;
    if (p == end) {
        out->kind = PPROTO_INFO_BLANK;
        return (int)out->kind;
    }
    if (line[0] == '#') {
        p = line + 1;
        while (p < end && *p == ' ')
            p++;
        while (end > p && end[-1] == ' ')
            end--;
        if (p == end)
            return -EINVAL;
        out->kind = PPROTO_INFO_SECTION;
        out->key = p;
        out->key_len = (size_t)(end - p);
        return (int)out->kind;
    }
    if (n == 3 && memcmp(line, "END", 3) == 0) {
        out->kind = PPROTO_INFO_END;
        return (int)out->kind;
    }
    colon = memchr(line, ':', n);
    if (colon == NULL || !pproto_key_valid(line, (size_t)(colon - line)))
        return -EINVAL;
    out->kind = PPROTO_INFO_KV;
    out->key = line;
    out->key_len = (size_t)(colon - line);
    out->val = colon + 1;
    out->val_len = (size_t)(end - (colon + 1));
    return (int)out->kind;
}

int pproto_subkv_next(const char **cursor, const char *end, pproto_subkv_t *out)
{
    const char *p, *item_end, *comma, *eq;

    if (cursor == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    p = *cursor;
    if (p == end)
        return 0;
    if (p == NULL || end == NULL || p > end) {
        *cursor = end;
        return -EINVAL;
    }
    comma = memchr(p, ',', (size_t)(end - p));
    item_end = comma != NULL ? comma : end;
    eq = memchr(p, '=', (size_t)(item_end - p));
    if (eq == NULL || !pproto_key_valid(p, (size_t)(eq - p))) {
        *cursor = end;
        return -EINVAL;
    }
    out->key = p;
    out->key_len = (size_t)(eq - p);
    out->val = eq + 1;
    out->val_len = (size_t)(item_end - (eq + 1));
    *cursor = comma != NULL ? comma + 1 : end;
    return 1;
}
