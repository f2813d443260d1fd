/* SPDX-License-Identifier: MIT */
/*
 * observe.c: who holds the memory, and what deserves a warning.
 *
 * Once a second (and at every STATS) poold reads the owner byte of every
 * carved block: the slot of the process that holds it, free, or in
 * transit. That gives, exactly and without any count a worker could
 * scribble, the blocks each process holds in each class. From these
 * snapshots it keeps the high-water marks (per class, per process and
 * class, per process), a minute of each process's in-use bytes (growth over
 * the last minute) and a few checkpoints over `leak_window` (a process
 * whose bytes never went down and mostly went up over the whole window is a
 * leak suspect).
 *
 * The warnings (docs/stats.md, "Warnings") are recomputed at each tick from
 * these figures and the segment's counters, so a cause that goes away
 * clears its warning at the next tick. Raised and cleared warnings are
 * logged, each (kind, subject) at most once a PD_WARN_LOG_SECONDS.
 *
 * It never writes the segment and never follows an offset read from it:
 * spans come from the span map, owner bytes are bounded by the layout.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "poold.h"

static uint64_t mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

const char *pd_human_bytes(uint64_t b, char *buf, size_t cap)
{
    static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(buf, cap, "%" PRIu64 " B", b);
    else if (v == (double)(uint64_t)v)
        snprintf(buf, cap, "%.0f %s", v, u[i]); /* a round figure: "32 GiB" */
    else
        snprintf(buf, cap, "%.1f %s", v, u[i]);
    return buf;
}

static void proc_reset(pd_obs_proc_t *p, int32_t pid)
{
    memset(p, 0, sizeof(*p));
    p->pid = pid;
    p->since_mono = mono_seconds();
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void pd_observe_scan(pd_server_t *srv)
{
    pd_observe_t *o = srv->obs;
    const pshm_seg_t *s = &srv->seg;
    if (!o || !s->hdr)
        return;
    /* A byte per carved block: however many clients ask, at most one
     * scan per PD_OBSERVE_MIN_MS. */
    uint64_t now_ms = mono_ms();
    if (o->scanned_ms && now_ms - o->scanned_ms < PD_OBSERVE_MIN_MS)
        return;
    o->scanned_ms = now_ms;
    uint32_t max = s->max_procs < o->nprocs ? s->max_procs : o->nprocs;
    pshm_proc_stats_t *ps = calloc(max ? max : 1, sizeof(*ps));
    if (!ps)
        return;
    int n = pshm_proc_stats(s, ps, (int)max);
    if (n > (int)max)
        n = (int)max;
    /* Which slots are live, and whose. */
    bool live[PSHM_MAX_PROCS] = {false};
    o->threads = 0;
    for (int i = 0; i < n; i++) {
        if (ps[i].slot >= max)
            continue;
        pd_obs_proc_t *p = &o->procs[ps[i].slot];
        if (p->pid != ps[i].pid)
            proc_reset(p, ps[i].pid);
        live[ps[i].slot] = true;
        o->threads += ps[i].threads;
    }
    for (uint32_t i = 0; i < max; i++) {
        if (!live[i] && o->procs[i].pid != 0)
            memset(&o->procs[i], 0, sizeof(o->procs[i]));
        memset(o->procs[i].blocks, 0, sizeof(o->procs[i].blocks));
    }
    free(ps);
    /* The owner bytes of every carved span. */
    for (uint32_t c = 0; c < s->nclasses; c++)
        o->class_blocks[c] = 0;
    for (uint32_t sp = 0; sp < s->nspans; sp++) {
        uint32_t c = pa_load_relaxed(&s->spanmap[sp]); /* relaxed: a statistic */
        if (c >= s->nclasses)
            continue;
        uint64_t span_off = s->data_off + ((uint64_t)sp << s->span_shift);
        const pa_u8 *own = pshm_owner(s, c, span_off);
        uint32_t bps = s->blocks_per_span[c];
        uint32_t b = 0;
        /* Eight bytes at a time: a run of free blocks, or of one process's,
         * is one compare, and the scan's cost grows with the carved blocks.
         * A plain load: a statistic of bytes that workers in other
         * processes write; each byte counted is one the load saw. Under
         * TSan, byte by byte: a test that runs workers as threads of this
         * process would have it report the plain load against their atomic
         * stores. */
#if !defined(PA_TSAN)
        for (; b + 8 <= bps; b += 8) {
            uint64_t w;
            memcpy(&w, (const uint8_t *)&own[b], sizeof(w));
            uint8_t v = (uint8_t)w;
            if (w == v * UINT64_C(0x0101010101010101)) {
                if (v != PSHM_OWN_FREE && v <= max)
                    o->procs[v - 1].blocks[c] += 8;
                continue;
            }
            for (unsigned k = 0; k < 8; k++) {
                uint8_t x = (uint8_t)(w >> (8 * k));
                if (x != PSHM_OWN_FREE && x <= max)
                    o->procs[x - 1].blocks[c]++;
            }
        }
#endif
        for (; b < bps; b++) {
            uint8_t v = pa_load_relaxed(&own[b]);
            if (v == PSHM_OWN_FREE || v > max)
                continue; /* free, in transit, being reclaimed, or nonsense */
            o->procs[v - 1].blocks[c]++;
        }
    }
    for (uint32_t i = 0; i < max; i++) {
        pd_obs_proc_t *p = &o->procs[i];
        if (!p->pid)
            continue;
        p->bytes = 0;
        for (uint32_t c = 0; c < s->nclasses; c++) {
            p->bytes += p->blocks[c] * s->block_size[c];
            o->class_blocks[c] += p->blocks[c];
            if (p->blocks[c] > p->peak_blocks[c])
                p->peak_blocks[c] = p->blocks[c];
        }
        if (p->bytes > p->peak_bytes)
            p->peak_bytes = p->bytes;
    }
    for (uint32_t c = 0; c < s->nclasses; c++)
        if (o->class_blocks[c] > o->class_peak[c])
            o->class_peak[c] = o->class_blocks[c];
}

int64_t pd_observe_growth(const pd_obs_proc_t *p)
{
    if (p->nsec == 0)
        return 0;
    /* The oldest sample of the ring: a minute ago once it is full. */
    uint32_t oldest = p->nsec < PD_GROWTH_SECONDS + 1 ? 0 : p->sec_next;
    return (int64_t)p->bytes - (int64_t)p->sec[oldest];
}

/* Steady growth over the whole window: every checkpoint at least the one
 * before it, at least half of the steps up, and nothing given back since
 * the last checkpoint. */
static bool leak_suspect(const pd_obs_proc_t *p)
{
    if (p->nleak < PD_LEAK_STEPS + 1 || p->bytes < p->leak[PD_LEAK_STEPS])
        return false;
    uint32_t up = 0;
    for (uint32_t i = 1; i <= PD_LEAK_STEPS; i++) {
        if (p->leak[i] < p->leak[i - 1])
            return false;
        up += p->leak[i] > p->leak[i - 1];
    }
    return up * 2 >= PD_LEAK_STEPS && p->leak[PD_LEAK_STEPS] > p->leak[0];
}

static void history(pd_server_t *srv, uint64_t now)
{
    pd_observe_t *o = srv->obs;
    uint64_t step = srv->cfg.leak_window / PD_LEAK_STEPS;
    if (step == 0)
        step = 1;
    for (uint32_t i = 0; i < o->nprocs && i < srv->seg.max_procs; i++) {
        pd_obs_proc_t *p = &o->procs[i];
        if (!p->pid)
            continue;
        p->sec[p->sec_next] = p->bytes;
        p->sec_next = (p->sec_next + 1) % (PD_GROWTH_SECONDS + 1);
        if (p->nsec < PD_GROWTH_SECONDS + 1)
            p->nsec++;
        if (p->nleak == 0 || now - p->leak_last_mono >= step) {
            if (p->nleak == PD_LEAK_STEPS + 1) {
                memmove(p->leak, p->leak + 1, PD_LEAK_STEPS * sizeof(p->leak[0]));
                p->nleak--;
            }
            p->leak[p->nleak++] = p->bytes;
            p->leak_last_mono = now;
        }
    }
}

/* Rise of a counter over the last PD_WARN_RECENT_SECONDS (or since the
 * first sample). */
static uint64_t recent_rise(const pd_observe_t *o, const uint64_t *ring)
{
    if (o->nhist < 2)
        return 0;
    uint32_t depth = PD_WARN_RECENT_SECONDS + 1;
    uint32_t newest = (o->hist_next + depth - 1) % depth;
    uint32_t oldest = o->nhist < depth ? 0 : o->hist_next;
    return ring[newest] >= ring[oldest] ? ring[newest] - ring[oldest] : 0;
}

static void add_warning(pd_warning_t *w, uint32_t *n, const char *kind, const char *subject,
                        uint64_t value, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void add_warning(pd_warning_t *w, uint32_t *n, const char *kind, const char *subject,
                        uint64_t value, const char *fmt, ...)
{
    if (*n >= PD_WARN_MAX)
        return;
    pd_warning_t *x = &w[(*n)++];
    memset(x, 0, sizeof(*x));
    snprintf(x->kind, sizeof(x->kind), "%s", kind);
    snprintf(x->subject, sizeof(x->subject), "%s", subject);
    x->value = value;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->message, sizeof(x->message), fmt, ap);
    va_end(ap);
    /* STATS carries it as a row field: no ',' (the field separator). */
    for (char *c = x->message; *c; c++)
        if (*c == ',')
            *c = ';';
}

static bool may_log(pd_observe_t *o, const pd_warning_t *w, uint64_t now)
{
    for (uint32_t i = 0; i < o->nlogged; i++)
        if (!strcmp(o->logged[i].kind, w->kind) && !strcmp(o->logged[i].subject, w->subject)) {
            if (now - o->logged[i].mono < PD_WARN_LOG_SECONDS)
                return false;
            o->logged[i].mono = now;
            return true;
        }
    uint32_t i = o->nlogged < PD_WARN_MAX ? o->nlogged++ : 0;
    snprintf(o->logged[i].kind, sizeof(o->logged[i].kind), "%s", w->kind);
    snprintf(o->logged[i].subject, sizeof(o->logged[i].subject), "%s", w->subject);
    o->logged[i].mono = now;
    return true;
}

static const pd_warning_t *find_warning(const pd_warning_t *w, uint32_t n, const pd_warning_t *x)
{
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(w[i].kind, x->kind) && !strcmp(w[i].subject, x->subject))
            return &w[i];
    return NULL;
}

static void warnings(pd_server_t *srv, const pshm_stats_t *st, uint64_t now)
{
    pd_observe_t *o = srv->obs;
    const pshm_seg_t *s = &srv->seg;
    pd_warning_t *w = calloc(PD_WARN_MAX, sizeof(*w));
    uint32_t n = 0;
    char a[32], b[32], c[32], d[32], bk[32];
    if (!w)
        return;

    /* The pool: in-use bytes against the data the spans can hold. */
    uint64_t data = st->spans_total * st->span_bytes;
    uint64_t book = st->segment_bytes > data ? st->segment_bytes - data : 0;
    if (data > 0 && st->bytes_in_use * 100 >= data * PD_WARN_FULL_PCT)
        add_warning(
            w, &n, "pool_full", "pool", st->bytes_in_use * 100 / data,
            "pool %s is %" PRIu64 "%% full: %s of %s of data spans in use (%s carved); "
            "the %s segment holds %s of bookkeeping. Free memory in the processes that "
            "hold it (poolctl procs --sort=inuse) or restart poold with a larger size",
            srv->cfg.shm_name, st->bytes_in_use * 100 / data,
            pd_human_bytes(st->bytes_in_use, a, sizeof(a)), pd_human_bytes(data, b, sizeof(b)),
            pd_human_bytes(st->bytes_carved, c, sizeof(c)),
            pd_human_bytes(st->segment_bytes, d, sizeof(d)), pd_human_bytes(book, bk, sizeof(bk)));

    /* Nearly every span in use: a class that needs one more, or a large
     * block, is served only from what the sweep gives back (the empty spans
     * of idle classes); blocks free in caches and half-used spans are not. */
    if (st->spans_total > 0 && st->spans_carved * 100 >= st->spans_total * PD_WARN_FULL_PCT)
        add_warning(
            w, &n, "pool_carved", "pool", st->spans_carved * 100 / st->spans_total,
            "pool %s: %" PRIu64 " of %" PRIu64 " spans in use (%s of %s); %s of their "
            "blocks are free but spread over spans still in use, which poold cannot "
            "give back. A class or large block that needs another span may be "
            "refused. Free memory, or restart poold with a larger size on a new "
            "segment",
            srv->cfg.shm_name, st->spans_carved, st->spans_total,
            pd_human_bytes(st->bytes_carved, a, sizeof(a)), pd_human_bytes(data, b, sizeof(b)),
            pd_human_bytes(st->bytes_carved > st->bytes_in_use ? st->bytes_carved - st->bytes_in_use
                                                               : 0,
                           c, sizeof(c)));

    /* Per class: allocations refused, double frees. */
    for (uint32_t k = 0; k < st->nclasses; k++) {
        char subj[40];
        snprintf(subj, sizeof(subj), "class_%" PRIu64, st->cls[k].block_size);
        uint64_t e = recent_rise(o, o->exh[k]);
        if (e > 0)
            add_warning(w, &n, "class_exhausted", subj, e,
                        "class %" PRIu64 " B: %" PRIu64 " allocations refused in the last %d s "
                        "(no span left: %" PRIu64 " of %" PRIu64 " spans carved). Free blocks or "
                        "restart poold with a larger size",
                        st->cls[k].block_size, e, PD_WARN_RECENT_SECONDS, st->spans_carved,
                        st->spans_total);
        uint64_t inv = recent_rise(o, o->inv[k]);
        if (inv >= PD_WARN_INVALID_MIN)
            add_warning(w, &n, "double_free", subj, inv,
                        "class %" PRIu64 " B: %" PRIu64 " frees of blocks not in use (double "
                        "frees) refused in the last %d s. A program frees blocks twice: find "
                        "which with poolctl show PID and fix it",
                        st->cls[k].block_size, inv, PD_WARN_RECENT_SECONDS);
    }

    /* Per process: steady growth over leak_window. */
    for (uint32_t i = 0; i < o->nprocs && i < s->max_procs; i++) {
        const pd_obs_proc_t *p = &o->procs[i];
        if (!p->pid || !leak_suspect(p))
            continue;
        char subj[40];
        snprintf(subj, sizeof(subj), "pid_%d", (int)p->pid);
        const pd_proc_t *r = pd_registry_get(srv, i);
        uint64_t grown = p->bytes - p->leak[0];
        add_warning(w, &n, "leak_suspect", subj, grown,
                    "process %d (%s) grew steadily by %s over the last %u s to %s in use. "
                    "A leak? See its classes with poolctl show %d",
                    (int)p->pid, r && r->pid == p->pid && r->name[0] ? r->name : "?",
                    pd_human_bytes(grown, a, sizeof(a)), srv->cfg.leak_window,
                    pd_human_bytes(p->bytes, b, sizeof(b)), (int)p->pid);
    }

    /* Slots: process slots and thread records (poold holds one of each). */
    uint64_t pmax = s->max_procs > 1 ? s->max_procs - 1 : 1;
    if (st->procs_attached * 100 >= pmax * PD_WARN_FULL_PCT)
        add_warning(w, &n, "slots", "procs", st->procs_attached,
                    "%" PRIu64 " of %" PRIu64 " process slots taken: more processes will "
                    "be refused. Restart poold with a larger max_procs on a new segment",
                    st->procs_attached, pmax);
    uint64_t tmax = s->max_threads > 1 ? s->max_threads - 1 : 1;
    uint64_t unc = recent_rise(o, o->uncached);
    if (o->threads * 100 >= tmax * PD_WARN_FULL_PCT || unc > 0)
        add_warning(w, &n, "slots", "threads", o->threads,
                    "%" PRIu64 " of %" PRIu64 " thread caches taken; %" PRIu64 " operations "
                    "without a cache in the last %d s (slower). Restart poold with a larger "
                    "max_threads on a new segment",
                    o->threads, tmax, unc, PD_WARN_RECENT_SECONDS);

    /* Keep the start of those already raised; log what changed. */
    uint64_t unix_now = (uint64_t)time(NULL);
    for (uint32_t i = 0; i < n; i++) {
        const pd_warning_t *old = find_warning(o->warn, o->nwarn, &w[i]);
        if (old) {
            w[i].since_unix = old->since_unix;
            w[i].logged = old->logged;
            continue;
        }
        w[i].since_unix = unix_now;
        w[i].logged = may_log(o, &w[i], now);
        if (w[i].logged)
            pd_warn("warning %s %s: %s", w[i].kind, w[i].subject, w[i].message);
    }
    /* A warning that comes and goes is logged once a PD_WARN_LOG_SECONDS,
     * with its clearing. */
    for (uint32_t i = 0; i < o->nwarn; i++)
        if (!find_warning(w, n, &o->warn[i]) && o->warn[i].logged)
            pd_info("warning %s %s cleared", o->warn[i].kind, o->warn[i].subject);
    memcpy(o->warn, w, n * sizeof(*w));
    o->nwarn = n;
    free(w);
}

/*
 * The sweep: give the empty spans of a class back to the free spans
 * (pshm_sweep.c), so that memory freed in one class serves the others and
 * large blocks. A sweep takes every free block of the class off its lists
 * for a moment, so it runs on a class with at least two spans' worth of
 * free blocks on its lists that has been idle for a tick, or whose lists
 * hold half of its blocks or more (a burst that has gone: the class's
 * steady users keep working meanwhile), or on any such class when fewer
 * than an eighth of the spans are free; and again on the same class only
 * 5 s later, unless its last sweep found spans.
 */
static void sweep_classes(pd_server_t *srv, const pshm_stats_t *st, uint64_t now)
{
    pd_observe_t *o = srv->obs;
    const pshm_actor_t *actor = pd_actor(srv);
    if (!actor)
        return;
    bool pressed = st->spans_free * 8 < st->spans_total;
    for (uint32_t k = 0; k < st->nclasses; k++) {
        const pshm_class_stats_t *c = &st->cls[k];
        uint64_t ops = c->allocations + c->frees;
        bool idle = ops == o->sweep_ops[k];
        o->sweep_ops[k] = ops;
        bool drained = c->blocks_central * 2 >= c->blocks_carved;
        if (c->blocks_central < 2 * (uint64_t)srv->seg.blocks_per_span[k] ||
            (!idle && !drained && !pressed) || now < o->sweep_at[k])
            continue;
        pshm_swept_t w;
        if (pshm_sweep_class(&srv->seg, actor, k, &w) < 0)
            continue; /* a reclaim holds the lock: next tick */
        o->sweeps++;
        o->spans_swept += w.spans;
        o->sweep_at[k] = w.spans ? now : now + 5;
        if (w.spans) {
            char b[32];
            pd_info("sweep: class %llu B gave %u spans (%s) back to the free spans",
                    (unsigned long long)c->block_size, w.spans,
                    pd_human_bytes((uint64_t)w.spans * st->span_bytes, b, sizeof(b)));
        }
    }
}

/* Each channel's messages per second since the last tick. */
static void channel_rates(pd_server_t *srv)
{
    pd_observe_t *o = srv->obs;
    uint64_t now = mono_ms();
    uint64_t dt = o->chan_at_ms && now > o->chan_at_ms ? now - o->chan_at_ms : 0;
    for (uint32_t ch = 0; ch < PSHM_MAX_CHANS; ch++) {
        pshm_chan_stats_t cs;
        bool live = pshm_chan_stats(&srv->seg, ch, &cs);
        bool same = live && o->chan_seen[ch] && o->chan_gen[ch] == cs.generation;
        o->chan_sent_rate[ch] = same && dt && cs.sent >= o->chan_sent[ch]
                                    ? (cs.sent - o->chan_sent[ch]) * 1000 / dt
                                    : 0;
        o->chan_received_rate[ch] = same && dt && cs.received >= o->chan_received[ch]
                                        ? (cs.received - o->chan_received[ch]) * 1000 / dt
                                        : 0;
        o->chan_seen[ch] = live;
        o->chan_gen[ch] = cs.generation;
        o->chan_sent[ch] = cs.sent;
        o->chan_received[ch] = cs.received;
    }
    o->chan_at_ms = now;
}

void pd_observe_tick(pd_server_t *srv)
{
    pd_observe_t *o = srv->obs;
    if (!o || !srv->seg.hdr)
        return;
    uint64_t now = mono_seconds();
    pd_observe_scan(srv);
    history(srv, now);
    pshm_stats_t *st = malloc(sizeof(*st));
    if (!st)
        return;
    pshm_stats(&srv->seg, st);
    uint32_t depth = PD_WARN_RECENT_SECONDS + 1;
    for (uint32_t k = 0; k < st->nclasses; k++) {
        o->exh[k][o->hist_next] = st->cls[k].exhausted;
        o->inv[k][o->hist_next] = st->cls[k].invalid_frees;
    }
    /* relaxed: a statistic with RMW writers in the workers. */
    o->uncached[o->hist_next] = pa_load_relaxed(&srv->seg.hdr->uncached_ops);
    o->hist_next = (o->hist_next + 1) % depth;
    if (o->nhist < depth)
        o->nhist++;
    warnings(srv, st, now);
    sweep_classes(srv, st, now);
    channel_rates(srv);
    o->ticks++;
    free(st);
}

void pd_observe_status(const pd_server_t *srv, char *out, size_t cap)
{
    const pd_observe_t *o = srv->obs;
    out[0] = '\0';
    if (!o || o->nwarn == 0)
        return;
    if (o->nwarn == 1)
        snprintf(out, cap, "WARNING %s", o->warn[0].message);
    else
        snprintf(out, cap, "WARNING %s (and %u more: poolctl warnings)", o->warn[0].message,
                 o->nwarn - 1);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pd_observe_tick(arg);
}

int pd_observe_start(pd_server_t *srv)
{
    pd_observe_t *o = calloc(1, sizeof(*o));
    if (!o)
        return -ENOMEM;
    o->nprocs = srv->seg.max_procs;
    o->procs = calloc(o->nprocs ? o->nprocs : 1, sizeof(*o->procs));
    if (!o->procs) {
        free(o);
        return -ENOMEM;
    }
    srv->obs = o;
    pd_observe_tick(srv);
    if (!srv->base)
        return 0;
    struct timeval tv = {PD_OBSERVE_SECONDS, 0};
    o->ev = event_new(srv->base, -1, EV_PERSIST, tick_cb, srv);
    if (!o->ev || event_add(o->ev, &tv) < 0) {
        pd_observe_stop(srv);
        return -ENOMEM;
    }
    return 0;
}

void pd_observe_stop(pd_server_t *srv)
{
    pd_observe_t *o = srv->obs;
    if (!o)
        return;
    if (o->ev)
        event_free(o->ev);
    free(o->procs);
    free(o);
    srv->obs = NULL;
}
