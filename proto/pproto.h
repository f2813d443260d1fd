/* SPDX-License-Identifier: MIT */
/*
 * pproto.h: the control protocol spoken between poold and its clients
 * (libpoolclient and poolctl). See PROTOCOL.md for the wire format.
 *
 * This layer is the only place where bytes read from the control socket
 * become structs, and where structs become bytes to write. It is made of pure
 * functions: no I/O, no allocation, no libevent, no global state. Every input
 * is a (pointer, length) pair that need not be NUL-terminated and is never
 * read past its length; every output goes to a buffer the caller supplies.
 *
 * Errors: functions return 0 (or a count / a kind) on success and a negative
 * errno on failure. They never touch errno.
 */
#ifndef PPROTO_H
#define PPROTO_H

#include <stdbool.h>
#include <sys/stat.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PPROTO_NODISCARD __attribute__((warn_unused_result))
#else
#define PPROTO_NODISCARD
#endif

/* Version of this wire protocol (the shm ABI is versioned separately). Not
 * named PPROTO_VERSION: that name is the VERSION verb of pproto_verb_t. */
#define PPROTO_WIRE_VERSION 1

/* Longest line, request or reply, counting its terminating LF. */
#define PPROTO_MAX_LINE 1024
/* Longest worker name in HELLO, in bytes, and its alphabet [A-Za-z0-9._-]. */
#define PPROTO_MAX_NAME 64
/* Longest key (reply pairs, INFO keys, sub-keys), alphabet [a-z0-9_]. */
#define PPROTO_MAX_KEY 31
/* Longest value of a key=value pair on an OK line. */
#define PPROTO_MAX_VAL 255
/* Longest human message kept from an OK or ERR line. */
#define PPROTO_MAX_MSG 255
/* Most key=value pairs on one OK line. */
#define PPROTO_MAX_KV 16

/* ---------------------------------------------------------------------- */
/* Verbs and error codes                                                   */

typedef enum pproto_verb {
    PPROTO_HELLO = 1, /* HELLO abi=<u32> pid=<int> [name=<token>] [image=<u32>] */
    PPROTO_BYE,       /* BYE */
    PPROTO_STATS,     /* STATS     (multi-line reply) */
    PPROTO_PROCS,     /* PROCS     (multi-line reply) */
    PPROTO_CLASSES,   /* CLASSES   (multi-line reply) */
    PPROTO_PING,      /* PING */
    PPROTO_VERSION    /* VERSION */
} pproto_verb_t;

/* Error codes sent as `ERR <code> <message>`. PPROTO_ERR_NONE is never sent. */
typedef enum pproto_err {
    PPROTO_ERR_NONE = 0,
    PPROTO_ERR_LINE_TOO_LONG,     /* line-too-long */
    PPROTO_ERR_UNKNOWN_VERB,      /* unknown-verb */
    PPROTO_ERR_BAD_ARGUMENT,      /* bad-argument */
    PPROTO_ERR_ABI_MISMATCH,      /* abi-mismatch */
    PPROTO_ERR_SLOTS_FULL,        /* slots-full */
    PPROTO_ERR_PERMISSION_DENIED, /* permission-denied */
    PPROTO_ERR_NOT_ATTACHED,      /* not-attached */
    PPROTO_ERR_ALREADY_ATTACHED,  /* already-attached */
    PPROTO_ERR_INTERNAL,          /* internal */
    PPROTO_ERR_POOL_CORRUPT       /* pool-corrupt */
} pproto_err_t;

#define PPROTO_ERR_LAST PPROTO_ERR_POOL_CORRUPT

/* Wire name of a verb ("HELLO"...), NULL when v is not a verb. */
const char *pproto_verb_name(pproto_verb_t v);
/* True when the verb's success reply is `OK` + INFO body + `END`. */
bool pproto_verb_multiline(pproto_verb_t v);

/* Wire name of an error code ("bad-argument"...); "none" for
 * PPROTO_ERR_NONE and "internal" for a value out of range, never NULL. */
const char *pproto_err_name(pproto_err_t e);
/* Default human message for a code, never NULL. */
const char *pproto_err_message(pproto_err_t e);
/* Code whose wire name is exactly name[0..len). 0, or -ENOENT. */
PPROTO_NODISCARD int pproto_err_from_name(const char *name, size_t len, pproto_err_t *out);

/* ---------------------------------------------------------------------- */
/* Requests (client -> poold)                                              */

typedef struct pproto_req {
    pproto_verb_t verb;
    uint32_t abi;                   /* HELLO only */
    int32_t pid;                    /* HELLO only, > 0 */
    char name[PPROTO_MAX_NAME + 1]; /* HELLO only, "" when absent */
    uint32_t image;                 /* HELLO only: the sender's process image (a
                                       new one after each exec); 0 when absent */
} pproto_req_t;

/*
 * Parse one request line: line[0..len), with or without its LF (a CR before
 * the LF is stripped too). Never reads past len. On failure *out is all
 * zero except verb, which names the verb recognized (0 if none), for logs.
 * Returns 0, or:
 *   -E2BIG   line longer than PPROTO_MAX_LINE        (*err = line-too-long)
 *   -ENOTSUP empty line or unknown verb              (*err = unknown-verb)
 *   -EINVAL  non-printable byte, bad/missing/extra
 *            argument                                (*err = bad-argument)
 * *err is PPROTO_ERR_NONE on success. err may be NULL.
 */
PPROTO_NODISCARD int pproto_parse_request(const char *line, size_t len, pproto_req_t *out,
                                          pproto_err_t *err);
/* Same, and *detail (if detail != NULL) is set to a static string saying
 * what was wrong ("HELLO needs pid=", ...), suitable as the ERR message, or
 * to NULL on success. */
PPROTO_NODISCARD int pproto_parse_request_ex(const char *line, size_t len, pproto_req_t *out,
                                             pproto_err_t *err, const char **detail);

/* Write a request line, LF included, NUL-terminated, verb in upper case.
 * Returns the bytes written (without the NUL), -ENOSPC when cap is too small,
 * -EINVAL when req is not a valid request (unknown verb; HELLO with pid <= 0
 * or an invalid name). On failure buf holds "" when cap > 0. */
PPROTO_NODISCARD int pproto_encode_request(char *buf, size_t cap, const pproto_req_t *req);

/* ---------------------------------------------------------------------- */
/* Replies (poold -> client): the first line                               */

typedef struct pproto_kv {
    char key[PPROTO_MAX_KEY + 1];
    char val[PPROTO_MAX_VAL + 1];
} pproto_kv_t;

typedef struct pproto_reply {
    bool ok;                      /* OK line, else ERR line */
    pproto_err_t err;             /* ERR code; PPROTO_ERR_NONE when ok */
    char msg[PPROTO_MAX_MSG + 1]; /* ERR message, or the bare words of an OK
                                     line ("pong"); truncated to fit */
    size_t nkv;                   /* OK line: its key=value pairs, in order */
    pproto_kv_t kv[PPROTO_MAX_KV];
} pproto_reply_t;

/*
 * Parse the first line of a reply: `OK [word|key=value]...` or
 * `ERR <code> [message]`. Same framing rules as requests. An unknown ERR code
 * is reported as PPROTO_ERR_INTERNAL (the message is kept). *out is zeroed
 * first. Returns 0, or -E2BIG (line too long), -EINVAL (malformed: not
 * printable, neither OK nor ERR, bad key, duplicate key, value too long),
 * -EOVERFLOW (more than PPROTO_MAX_KV pairs).
 */
PPROTO_NODISCARD int pproto_parse_reply(const char *line, size_t len, pproto_reply_t *out);

/* Value of key in an OK reply, NULL when absent. */
const char *pproto_kv_get(const pproto_reply_t *r, const char *key);
/* Value of key as a decimal u64: 0, -ENOENT (absent), -EINVAL (not a
 * decimal number), -ERANGE (does not fit 64 bits). */
PPROTO_NODISCARD int pproto_kv_get_u64(const pproto_reply_t *r, const char *key, uint64_t *out);

/* Write a reply line (LF included) from a struct: `OK <msg> k=v...` or
 * `ERR <code> <msg>` (the message sanitized as by pproto_encode_error()).
 * The inverse of pproto_parse_reply(). Returns bytes written, -ENOSPC (cap
 * too small), -EMSGSIZE (the line would exceed PPROTO_MAX_LINE), or -EINVAL
 * (bad code, bad or duplicate key, more than PPROTO_MAX_KV pairs, an OK msg holding '='
 * or a non-printable byte, a value holding a space or a non-printable
 * byte). On failure buf holds "" when cap > 0. */
PPROTO_NODISCARD int pproto_encode_reply(char *buf, size_t cap, const pproto_reply_t *r);

/* Write `ERR <code> <msg>\n`. msg is sanitized: every byte that is not
 * printable ASCII (CR and LF included) becomes a space, leading and trailing
 * spaces are dropped, and it is cut to PPROTO_MAX_MSG bytes. msg NULL: the
 * code's default message; msg "": no message. Returns bytes written, -ENOSPC,
 * or -EINVAL (e is not a sendable code). On failure buf holds "" when
 * cap > 0. */
PPROTO_NODISCARD int pproto_encode_error(char *buf, size_t cap, pproto_err_t e, const char *msg);

/* ---------------------------------------------------------------------- */
/* Multi-line bodies (Redis INFO layout)                                   */

typedef enum pproto_info_kind {
    PPROTO_INFO_BLANK = 0, /* empty line (or spaces only): skip it */
    PPROTO_INFO_SECTION,   /* "# name": key/key_len is the name */
    PPROTO_INFO_KV,        /* "key:value": both set, value may be empty */
    PPROTO_INFO_END        /* "END": the body is over */
} pproto_info_kind_t;

/* Pointers into the parsed line; nothing is copied or NUL-terminated. */
typedef struct pproto_info_line {
    pproto_info_kind_t kind;
    const char *key;
    size_t key_len;
    const char *val;
    size_t val_len;
} pproto_info_line_t;

/* Parse one body line (with or without LF/CRLF). Returns the kind (>= 0), or
 * -E2BIG (too long), -EINVAL (not printable, bad key, unknown shape). */
PPROTO_NODISCARD int pproto_parse_info_line(const char *line, size_t len, pproto_info_line_t *out);

/* One k=v item of a comma-separated value ("size=64,in_use=3"). */
typedef struct pproto_subkv {
    const char *key;
    size_t key_len;
    const char *val;
    size_t val_len;
} pproto_subkv_t;

/*
 * Iterate over the items of a comma-separated list in [*cursor, end):
 *   const char *c = info.val, *e = info.val + info.val_len;
 *   while ((rc = pproto_subkv_next(&c, e, &kv)) > 0) ...
 * Returns 1 with *out set and *cursor advanced, 0 at the end of the list,
 * -EINVAL on a malformed item (empty item, no '=', bad key); after an error
 * *cursor is set to end so that a loop stops.
 */
PPROTO_NODISCARD int pproto_subkv_next(const char **cursor, const char *end, pproto_subkv_t *out);

/* Decimal u64 in s[0..len): digits only, no sign, no spaces. 0, -EINVAL,
 * -ERANGE. */
PPROTO_NODISCARD int pproto_parse_u64(const char *s, size_t len, uint64_t *out);

/* Decimal i64 in s[0..len): an optional '-', then digits; a negative zero
 * ("-0", "-00") is refused, as pproto_parse_u64() refuses it, so that the
 * two agree on every value >= 0. 0, -EINVAL, -ERANGE. */
PPROTO_NODISCARD int pproto_parse_i64(const char *s, size_t len, int64_t *out);

/* True when s[0..len) has the key alphabet [a-z0-9_] and 1..PPROTO_MAX_KEY
 * bytes. */
bool pproto_key_valid(const char *s, size_t len);
/* True when s[0..len) is a valid HELLO name: 1..PPROTO_MAX_NAME bytes of
 * [A-Za-z0-9._-]. */
bool pproto_name_valid(const char *s, size_t len);

/* ---------------------------------------------------------------------- */
/* The control socket (pproto_socket.c)                                    */

/* The socket poold listens on by default for effective uid `uid`:
 * /run/poold/poold.sock for root, else $XDG_RUNTIME_DIR/poold/poold.sock
 * (xdg, when absolute) or /tmp/poold-<uid>/poold.sock. 0, or -ENAMETOOLONG
 * when it does not fit in out[cap]. */
int pproto_default_socket(char *out, size_t cap, unsigned uid, const char *xdg);

/* The socket a client tries when none is named: the default of its uid
 * (as poold's, above) if `exists` says it is there; else, for a user other
 * than root, /run/poold/poold.sock if it is there (a poold of the system
 * serving the user's group); else the user's default. */
int pproto_socket_to_try(char *out, size_t cap, unsigned uid, const char *xdg,
                         bool (*exists)(const char *path));

/* What stat(2) said of a socket path (exists false: it failed). */
typedef struct pproto_path_info {
    bool exists;
    bool is_socket;
    bool is_dir;
    unsigned uid, gid, mode;
} pproto_path_info_t;

/* info from stat(2)'s result: st NULL when stat failed. */
void pproto_path_info_of(pproto_path_info_t *info, const struct stat *st);

/* What to tell a user whose connect(2) to a poold socket failed with
 * errnum, after "cannot reach poold at PATH: <strerror>; ": what is wrong
 * (no socket, not a socket, the socket's owner and mode when permission is
 * denied, nothing listening) and what to do. 0, or -ENAMETOOLONG
 * (truncated). */
int pproto_connect_error(char *out, size_t cap, int errnum, const pproto_path_info_t *info);

/* ---------------------------------------------------------------------- */
/* Reply builder                                                            */

/*
 * A builder appends to a caller's buffer, keeps it NUL-terminated and never
 * writes past cap. Each append is all-or-nothing: when it does not fit (or
 * its key is invalid) nothing is written, `overflow` is set and stays set, and
 * every later append is refused. Check `overflow` (or pproto_buf_result())
 * once, at the end, before sending.
 *
 *   pproto_buf_init(&b, out, sizeof out);
 *   pproto_buf_add_str(&b, "OK");
 *   pproto_buf_add_kv_u64(&b, "slot", 3);     -> "OK slot=3"
 *   pproto_buf_end_line(&b);                  -> "OK slot=3\n"
 *
 * No line may exceed PPROTO_MAX_LINE bytes with its LF: an append that would
 * make the current line longer is refused like one that does not fit.
 *
 * Every append returns 0, or sets overflow and returns -ENOSPC (the buffer
 * is full, or an earlier append failed), -EMSGSIZE (the line would exceed
 * PPROTO_MAX_LINE) or -EINVAL (invalid key or empty section name).
 */
typedef struct pproto_buf {
    char *p;
    size_t cap, len;
    bool overflow;
} pproto_buf_t;

void pproto_buf_init(pproto_buf_t *b, char *p, size_t cap);
/* Bytes written so far (as int), or -ENOSPC when overflow is set. */
int pproto_buf_result(const pproto_buf_t *b);
/* Raw bytes, not sanitized: the caller owns what it appends. */
int pproto_buf_add_mem(pproto_buf_t *b, const void *p, size_t n);
int pproto_buf_add_str(pproto_buf_t *b, const char *s);
/* " key=<v>", for OK lines: -EMSGSIZE when the line already holds
 * PPROTO_MAX_KV pairs. */
int pproto_buf_add_kv_u64(pproto_buf_t *b, const char *key, uint64_t v);
/* " key=<val>"; in val, spaces and non-printable bytes become '_'. Also
 * -EMSGSIZE when val is longer than PPROTO_MAX_VAL. */
int pproto_buf_add_kv_str(pproto_buf_t *b, const char *key, const char *val);
/* "key:<v>\n" */
int pproto_buf_add_info_u64(pproto_buf_t *b, const char *key, uint64_t v);
/* "key:<v>\n", v signed (gauges that can dip below zero). */
int pproto_buf_add_info_i64(pproto_buf_t *b, const char *key, int64_t v);
/* "key:<val>\n"; in val, non-printable bytes become '?'. */
int pproto_buf_add_info_str(pproto_buf_t *b, const char *key, const char *val);
/* "# <name>\n"; in name, non-printable bytes become '?'. */
int pproto_buf_add_section(pproto_buf_t *b, const char *name);
/* Rows whose value is a list: begin_row "key:", then sub-pairs "k=v" joined
 * by ',', then pproto_buf_end_line(). */
int pproto_buf_begin_row(pproto_buf_t *b, const char *key);
int pproto_buf_add_subkv_u64(pproto_buf_t *b, const char *key, uint64_t v);
int pproto_buf_add_subkv_i64(pproto_buf_t *b, const char *key, int64_t v);
/* In val, ',' and non-printable bytes become '_'. */
int pproto_buf_add_subkv_str(pproto_buf_t *b, const char *key, const char *val);
/* "\n" */
int pproto_buf_end_line(pproto_buf_t *b);
/* "END\n" */
int pproto_buf_add_end(pproto_buf_t *b);

/* ---------------------------------------------------------------------- */
/* Rendering a STATS/PROCS/CLASSES body (pproto_render.c)                   */

/* Call fn for each section and key line of body[0..len) (blank lines
 * skipped), up to END. Returns 0, the first negative value fn returns, or
 * the error of pproto_parse_info_line() on a malformed line. */
typedef int (*pproto_info_fn)(void *ctx, const pproto_info_line_t *line);
PPROTO_NODISCARD int pproto_info_foreach(const char *body, size_t len, pproto_info_fn fn,
                                         void *ctx);

/* body[0..len): the lines after the OK line, through END (docs/stats.md).
 * JSON: one object, a member per section; sections of rows (classes,
 * processes, orphans) are arrays of objects, numbers stay numbers. Returns
 * the bytes in out, or -EINVAL (malformed body), -ENOSPC / -EMSGSIZE. */
PPROTO_NODISCARD int pproto_render_json(const char *body, size_t len, pproto_buf_t *out);
/* Prometheus text format 0.0.4, clean under `promtool check metrics`: each
 * family once, as one group, with its # HELP and # TYPE lines. Names come
 * from the table of pproto_metrics.c; a key it lacks becomes `poold_<key>`
 * (a scalar: a counter when it ends in `_total`) or `<row prefix><key>` (a
 * row's field: a gauge), with a generic HELP. String scalars become labels
 * of `poold_info{...} 1`. Returns the bytes in out, -EINVAL (malformed
 * body), -ENOSPC / -EMSGSIZE (out too small), -E2BIG (more than
 * PPROTO_MAX_FAMILIES metric families). Reentrant. */
#define PPROTO_MAX_FAMILIES 256
PPROTO_NODISCARD int pproto_render_prometheus(const char *body, size_t len, pproto_buf_t *out);

/* ---------------------------------------------------------------------- */
/* Prometheus names and HELP texts (pproto_metrics.c)                       */

typedef enum pproto_metric_kind {
    PPROTO_METRIC_GAUGE,
    PPROTO_METRIC_COUNTER, /* only grows; its name ends in _total */
    PPROTO_METRIC_LABEL,   /* a row's identity: a label on each of the row's samples */
    PPROTO_METRIC_INFO,    /* a string scalar: a label of poold_info */
    /* A bucket (or the sum) of a histogram: the rows of its section are
     * one histogram each (pproto_life_keys), rendered as Prometheus's
     * _bucket (cumulative, le=), _sum and _count. */
    PPROTO_METRIC_HISTOGRAM
} pproto_metric_kind_t;

typedef struct pproto_metric {
    const char *section; /* "server", "pool", "classes", "processes", "orphans", "holdings",
                            "warnings" */
    const char *key;     /* the STATS key or row sub-key: never renamed */
    pproto_metric_kind_t kind;
    const char *name; /* Prometheus metric name, or label name */
    const char *help; /* # HELP text: one line, no backslash */
} pproto_metric_t;

/* Block lifetimes (STATS section "lifetimes", a row per class): the keys
 * of the buckets, shortest first (counts of lifetimes below 1 us, below
 * 10 us, ... below 10 s, and the rest), their upper bounds in seconds as
 * Prometheus writes them, and the key of the sum in nanoseconds. */
#define PPROTO_LIFE_BUCKETS 9
extern const char *const pproto_life_keys[PPROTO_LIFE_BUCKETS];
extern const char *const pproto_life_le[PPROTO_LIFE_BUCKETS];
#define PPROTO_LIFE_SUM_KEY "sum_ns"

/* The table's entry for key[0..key_len) of section, or NULL. */
const pproto_metric_t *pproto_metric_find(const char *section, const char *key, size_t key_len);
/* Entry i of the table (to walk it), NULL past the end. */
const pproto_metric_t *pproto_metric_at(size_t i);
/* The entry of poold_info (section and key NULL). */
const pproto_metric_t *pproto_metric_info(void);
/* "poold_class_" for "classes", "poold_proc_", "poold_orphan_"; NULL for a
 * section that does not hold rows. */
const char *pproto_metric_row_prefix(const char *section);

#ifdef __cplusplus
}
#endif

#endif /* PPROTO_H */
