/* SPDX-License-Identifier: MIT */
/*
 * fuzz_pproto.c: libFuzzer harness for the control protocol codec.
 *
 * Feeds arbitrary bytes to every parser (as a whole and line by line, the
 * way a connection is read) and checks the properties the rest of poold
 * relies on: parsers never read past their input and never crash; whatever
 * parses re-encodes and re-parses to the same struct; encoders fed hostile
 * strings still emit only printable lines within PPROTO_MAX_LINE that parse
 * back. A failed property calls abort() so that libFuzzer keeps the input.
 * Built only with POOL_FUZZ=ON and clang; it is not part of any library.
 */
#include "pproto.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void check_request(const char *p, size_t n)
{
    pproto_req_t a, b;
    pproto_err_t e = PPROTO_ERR_NONE;
    const char *why = NULL;
    char buf[PPROTO_MAX_LINE + 1];
    int rc = pproto_parse_request_ex(p, n, &a, &e, &why);

    if (rc < 0) {
        CHECK(rc == -EINVAL || rc == -ENOTSUP || rc == -E2BIG);
        CHECK(e != PPROTO_ERR_NONE && why != NULL);
        return;
    }
    CHECK(e == PPROTO_ERR_NONE && why == NULL);
    rc = pproto_encode_request(buf, sizeof buf, &a);
    CHECK(rc > 0 && (size_t)rc == strlen(buf) && rc <= PPROTO_MAX_LINE);
    CHECK(pproto_parse_request(buf, (size_t)rc, &b, &e) == 0);
    CHECK(a.verb == b.verb && a.abi == b.abi && a.pid == b.pid);
    CHECK(strcmp(a.name, b.name) == 0);
}

static bool same_reply(const pproto_reply_t *a, const pproto_reply_t *b)
{
    if (a->ok != b->ok || a->err != b->err || a->nkv != b->nkv || strcmp(a->msg, b->msg) != 0)
        return false;
    for (size_t i = 0; i < a->nkv; i++)
        if (strcmp(a->kv[i].key, b->kv[i].key) != 0 || strcmp(a->kv[i].val, b->kv[i].val) != 0)
            return false;
    return true;
}

static void check_reply(const char *p, size_t n)
{
    pproto_reply_t a, b;
    char buf[2 * PPROTO_MAX_LINE];
    int rc = pproto_parse_reply(p, n, &a);

    if (rc < 0) {
        CHECK(rc == -EINVAL || rc == -E2BIG || rc == -EOVERFLOW);
        return;
    }
    CHECK(a.nkv <= PPROTO_MAX_KV && strlen(a.msg) <= PPROTO_MAX_MSG);
    CHECK(a.ok ? a.err == PPROTO_ERR_NONE : a.err != PPROTO_ERR_NONE);
    for (size_t i = 0; i < a.nkv; i++)
        CHECK(pproto_kv_get(&a, a.kv[i].key) == a.kv[i].val);
    rc = pproto_encode_reply(buf, sizeof buf, &a);
    CHECK(rc > 0 && (size_t)rc == strlen(buf) && rc <= PPROTO_MAX_LINE);
    CHECK(pproto_parse_reply(buf, (size_t)rc, &b) == 0);
    CHECK(same_reply(&a, &b));
}

static void check_info(const char *p, size_t n)
{
    pproto_info_line_t l;
    int rc = pproto_parse_info_line(p, n, &l);

    if (rc < 0) {
        CHECK(rc == -EINVAL || rc == -E2BIG);
        return;
    }
    CHECK(rc == (int)l.kind);
    if (l.kind == PPROTO_INFO_SECTION)
        CHECK(l.key >= p && l.key + l.key_len <= p + n && l.key_len > 0);
    if (l.kind == PPROTO_INFO_KV) {
        const char *c = l.val, *end = l.val + l.val_len;
        pproto_subkv_t kv;
        size_t guard = 0;

        CHECK(pproto_key_valid(l.key, l.key_len));
        CHECK(l.val >= p && end <= p + n);
        while ((rc = pproto_subkv_next(&c, end, &kv)) > 0) {
            CHECK(kv.key >= l.val && kv.val + kv.val_len <= end);
            CHECK(pproto_key_valid(kv.key, kv.key_len));
            CHECK(++guard <= l.val_len);
            {
                uint64_t u = 0;
                int64_t i = 0;
                int ru = pproto_parse_u64(kv.val, kv.val_len, &u);
                int ri = pproto_parse_i64(kv.val, kv.val_len, &i);
                if (ru == 0 && u <= (uint64_t)INT64_MAX)
                    CHECK(ri == 0 && (uint64_t)i == u);
                if (ri == 0 && i >= 0)
                    CHECK(ru == 0 && (uint64_t)i == u);
            }
        }
        CHECK(rc == 0 || (rc == -EINVAL && c == end));
    }
}

/* Every line of an encoder's output is printable, LF-terminated, within the
 * limit, and parses as a body line. */
static void check_body(const char *s, size_t n)
{
    size_t start = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n') {
            CHECK(i + 1 - start <= PPROTO_MAX_LINE);
            start = i + 1;
        } else {
            CHECK(s[i] >= 0x20 && s[i] <= 0x7e);
        }
    }
}

static void check_encoders(const char *str)
{
    static char out[4 * PPROTO_MAX_LINE];
    pproto_buf_t b;
    pproto_reply_t r;
    char line[PPROTO_MAX_LINE + 1];
    int rc;

    pproto_buf_init(&b, out, sizeof out);
    pproto_buf_add_section(&b, str);
    pproto_buf_add_info_str(&b, "k", str);
    pproto_buf_begin_row(&b, "row");
    pproto_buf_add_subkv_str(&b, "a", str);
    pproto_buf_add_subkv_u64(&b, "b", 1);
    pproto_buf_end_line(&b);
    pproto_buf_add_end(&b);
    CHECK(b.len < b.cap && out[b.len] == '\0');
    check_body(out, b.len);
    if (!b.overflow) {
        /* Each line parses; the row's list iterates cleanly. */
        size_t start = 0;
        for (size_t i = 0; i < b.len; i++) {
            if (out[i] != '\n')
                continue;
            pproto_info_line_t l;
            rc = pproto_parse_info_line(out + start, i + 1 - start, &l);
            CHECK(rc >= 0);
            start = i + 1;
        }
    }

    pproto_buf_init(&b, line, sizeof line);
    pproto_buf_add_str(&b, "OK");
    pproto_buf_add_kv_str(&b, "v", str);
    pproto_buf_end_line(&b);
    check_body(line, b.len);
    if (!b.overflow)
        CHECK(pproto_parse_reply(line, b.len, &r) == 0 && r.ok && r.nkv == 1);

    rc = pproto_encode_error(line, sizeof line, PPROTO_ERR_BAD_ARGUMENT, str);
    CHECK(rc > 0);
    check_body(line, (size_t)rc);
    CHECK(pproto_parse_reply(line, (size_t)rc, &r) == 0);
    CHECK(!r.ok && r.err == PPROTO_ERR_BAD_ARGUMENT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy so that ASan sees any read past the input. */
    char *p = malloc(size > 0 ? size : 1);
    char *str;
    size_t start = 0;

    if (p == NULL)
        return 0;
    if (size > 0)
        memcpy(p, data, size);

    /* The whole input as one line. */
    check_request(p, size);
    check_reply(p, size);
    check_info(p, size);

    /* Line by line, as a connection is read (each line with its LF). */
    for (size_t i = 0; i <= size; i++) {
        if (i == size || p[i] == '\n') {
            size_t end = i < size ? i + 1 : i;
            if (end > start) {
                check_request(p + start, end - start);
                check_reply(p + start, end - start);
                check_info(p + start, end - start);
            }
            start = end;
        }
    }

    /* The input as a string handed to the encoders. */
    str = malloc(size + 1);
    if (str != NULL) {
        memcpy(str, p, size);
        str[size] = '\0';
        check_encoders(str);
        free(str);
    }
    free(p);
    return 0;
}
