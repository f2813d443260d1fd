/* SPDX-License-Identifier: MIT */
/*
 * log.c: poold's leveled logging to stderr.
 *
 * When stderr is connected to the journal (JOURNAL_STREAM names stderr's
 * device and inode) each line starts with an sd-daemon priority prefix
 * (`<3>` error ... `<7>` debug) and no timestamp, since journald adds one;
 * otherwise each line gets a local timestamp and the level. Owns the level
 * and the escaping of client bytes: it must never print a byte a client sent
 * without passing it through pd_log_escape(), and never allocates.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "poold.h"

static int log_level = PD_LOG_INFO;
static bool log_journal;

static const struct {
    const char *name;
    const char *prefix; /* sd-daemon priority */
} levels[] = {
    [PD_LOG_ERROR] = {"error", "<3>"},
    [PD_LOG_WARN] = {"warn", "<4>"},
    [PD_LOG_INFO] = {"info", "<6>"},
    [PD_LOG_DEBUG] = {"debug", "<7>"},
};

void pd_log_init(void)
{
    /* JOURNAL_STREAM is "dev:ino" of the stream systemd connected; only
     * believe it if stderr is still that stream (not redirected since). */
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long long dev, ino;
    log_journal = false;
    if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
        (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
        log_journal = true;
}

void pd_log_set_level(int level)
{
    if (level >= PD_LOG_ERROR && level <= PD_LOG_DEBUG)
        log_level = level;
}

int pd_log_get_level(void)
{
    return log_level;
}

int pd_log_level_parse(const char *s)
{
    if (!s)
        return -EINVAL;
    for (int i = PD_LOG_ERROR; i <= PD_LOG_DEBUG; i++)
        if (strcasecmp(s, levels[i].name) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return PD_LOG_WARN;
    return -EINVAL;
}

const char *pd_log_level_name(int level)
{
    if (level < PD_LOG_ERROR || level > PD_LOG_DEBUG)
        return "?";
    return levels[level].name;
}

void pd_log(int level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    if (level > log_level || level < PD_LOG_ERROR)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* One write per line, so that lines of concurrent writers never mix. */
    char line[2200];
    if (log_journal) {
        snprintf(line, sizeof(line), "%s%s\n", levels[level].prefix, msg);
    } else {
        struct timeval tv;
        struct tm tm;
        char ts[32];
        gettimeofday(&tv, NULL);
        localtime_r(&tv.tv_sec, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
        snprintf(line, sizeof(line), "%s.%03ld poold[%ld] %-5s %s\n", ts, (long)(tv.tv_usec / 1000),
                 (long)getpid(), levels[level].name, msg);
    }
    size_t n = strlen(line);
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w; /* nowhere to report a failed log write */
}

static struct {
    time_t second;   /* the window */
    unsigned logged; /* lines logged in it */
    unsigned long suppressed;
} client_budget;

void pd_log_client(int level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    if (level > log_level || level < PD_LOG_ERROR)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    if (now.tv_sec != client_budget.second) {
        if (client_budget.suppressed)
            pd_log(PD_LOG_WARN, "%lu messages about clients suppressed (more than %d a second)",
                   client_budget.suppressed, PD_LOG_CLIENT_BURST);
        client_budget.second = now.tv_sec;
        client_budget.logged = 0;
        client_budget.suppressed = 0;
    }
    if (client_budget.logged >= PD_LOG_CLIENT_BURST) {
        client_budget.suppressed++;
        return;
    }
    client_budget.logged++;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pd_log(level, "%s", msg);
}

void pd_log_escape(const char *in, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap == 0)
        return;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        bool plain = ch >= 0x20 && ch <= 0x7e && ch != '\\';
        size_t need = plain ? 1 : 4;
        if (o + need + 4 > cap) { /* room for "..." and the NUL */
            if (o + 4 <= cap) {
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        if (plain) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
}
