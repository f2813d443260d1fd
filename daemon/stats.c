/* SPDX-License-Identifier: MIT */
/*
 * stats.c: the bodies of STATS, PROCS and CLASSES, exactly as docs/stats.md
 * lists them (that page is the contract with poolctl: keys are added, never
 * renamed), and the one-line sd_notify STATUS summary.
 *
 * Figures come from pshm_stats()/pshm_proc_stats() (which read the segment
 * with relaxed loads and never believe a scribbled count), the header's
 * counters, the registry (names, connected flag) and the orphans poold
 * recorded. It must never write the segment, never follow an offset read
 * from it, and never emit a line the pproto_buf builder would refuse.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "poold.h"

static void section_server(pd_server_t *srv, pproto_buf_t *b, time_t now)
{
    pproto_buf_add_section(b, "server");
    pproto_buf_add_info_str(b, "version", PD_VERSION);
    pproto_buf_add_info_u64(b, "abi", PSHM_ABI_VERSION);
    pproto_buf_add_info_u64(b, "pid", (uint64_t)getpid());
    pproto_buf_add_info_u64(b, "uptime_seconds",
                            now > srv->started ? (uint64_t)(now - srv->started) : 0);
    /* relaxed: poold is the only writer; a statistic. */
    pproto_buf_add_info_u64(b, "daemon_gen", pa_load_relaxed(&srv->seg.hdr->daemon_gen));
    pproto_buf_add_info_str(b, "shm_name", srv->cfg.shm_name);
    pproto_buf_add_info_str(b, "socket", srv->cfg.socket);
    pproto_buf_add_info_u64(b, "connections", srv->nconns);
}

static void section_pool(pd_server_t *srv, pproto_buf_t *b, const pshm_stats_t *st)
{
    const struct pshm_header *h = srv->seg.hdr;
    uint64_t allocs = 0, frees = 0, reuses = 0, same = 0, cache_misses = 0, central_misses = 0,
             exh = 0;
    for (uint32_t c = 0; c < st->nclasses; c++) {
        const pshm_class_stats_t *k = &st->cls[c];
        allocs += k->allocations;
        frees += k->frees;
        reuses += k->reuses;
        same += k->same_address;
        cache_misses += k->cache_misses;
        central_misses += k->central_misses;
        exh += k->exhausted;
    }
    pproto_buf_add_section(b, "pool");
    pproto_buf_add_info_u64(b, "segment_bytes", st->segment_bytes);
    pproto_buf_add_info_u64(b, "span_bytes", st->span_bytes);
    pproto_buf_add_info_u64(b, "spans_max", st->spans_total);
    pproto_buf_add_info_u64(b, "spans_carved", st->spans_carved);
    pproto_buf_add_info_u64(b, "bytes_carved", st->bytes_carved);
    pproto_buf_add_info_u64(b, "bytes_in_use", st->bytes_in_use);
    pproto_buf_add_info_u64(b, "bytes_committed", st->bytes_committed);
    pproto_buf_add_info_u64(b, "bytes_retained", st->bytes_retained);
    pproto_buf_add_info_u64(b, "bytes_purged_total", st->bytes_purged);
    pproto_buf_add_info_u64(b, "spans_free", st->spans_free);
    pproto_buf_add_info_u64(b, "large_blocks_in_use", st->large.in_use);
    pproto_buf_add_info_u64(b, "large_bytes_in_use", st->large.bytes_in_use);
    pproto_buf_add_info_u64(b, "large_bytes_asked", st->large.bytes_asked);
    pproto_buf_add_info_u64(b, "large_blocks_in_transit", st->large.in_transit);
    pproto_buf_add_info_u64(b, "large_allocations_total", st->large.allocs);
    pproto_buf_add_info_u64(b, "large_frees_total", st->large.frees);
    pproto_buf_add_info_u64(b, "large_reclaimed_total", st->large.reclaimed);
    pproto_buf_add_info_u64(b, "large_exhausted_total", st->large.exhausted);
    pproto_buf_add_info_u64(b, "spans_swept_total", srv->obs ? srv->obs->spans_swept : 0);
    pproto_buf_add_info_u64(b, "procs_attached", st->procs_attached);
    pproto_buf_add_info_u64(b, "procs_max", srv->seg.max_procs);
    pproto_buf_add_info_u64(b, "procs_reclaimed_total", st->procs_reclaimed);
    pproto_buf_add_info_u64(b, "procs_exited_total", st->procs_exited);
    pproto_buf_add_info_u64(b, "blocks_reclaimed_total", st->blocks_reclaimed);
    pproto_buf_add_info_u64(b, "blocks_orphaned_total", st->blocks_orphaned);
    pproto_buf_add_info_u64(b, "blocks_reclaimed_in_use_total", st->reclaimed_in_use);
    pproto_buf_add_info_u64(b, "blocks_in_transit", st->blocks_in_transit);
    pproto_buf_add_info_u64(b, "invalid_frees_total", st->invalid_frees);
    pproto_buf_add_info_u64(b, "allocations_total", allocs);
    pproto_buf_add_info_u64(b, "frees_total", frees);
    pproto_buf_add_info_u64(b, "reuses_total", reuses);
    pproto_buf_add_info_u64(b, "same_address_total", same);
    pproto_buf_add_info_u64(b, "cache_misses_total", cache_misses);
    pproto_buf_add_info_u64(b, "central_misses_total", central_misses);
    pproto_buf_add_info_u64(b, "exhausted_total", exh);
    /* relaxed: statistics with RMW writers in the workers. */
    pproto_buf_add_info_u64(b, "uncached_ops_total", pa_load_relaxed(&h->uncached_ops));
    pproto_buf_add_info_u64(b, "entries_dropped_total", pa_load_relaxed(&h->entries_dropped));
    pproto_buf_add_info_u64(b, "corrupt", srv->corrupt ? 1 : 0);
    pproto_buf_add_info_u64(b, "corruptions_total", srv->corruptions_total);
    pproto_buf_add_info_u64(b, "integrity_checks_total", srv->verify.checks);
}

static void section_classes(pd_server_t *srv, pproto_buf_t *b, const pshm_stats_t *st)
{
    const pd_observe_t *o = srv->obs;
    char key[32];
    pproto_buf_add_section(b, "classes");
    for (uint32_t c = 0; c < st->nclasses; c++) {
        const pshm_class_stats_t *k = &st->cls[c];
        snprintf(key, sizeof(key), "class_%llu", (unsigned long long)k->block_size);
        pproto_buf_begin_row(b, key);
        pproto_buf_add_subkv_u64(b, "size", k->block_size);
        pproto_buf_add_subkv_u64(b, "spans", k->spans_carved);
        pproto_buf_add_subkv_u64(b, "carved", k->blocks_carved);
        pproto_buf_add_subkv_u64(b, "free", k->blocks_free);
        pproto_buf_add_subkv_u64(b, "central", k->blocks_central);
        pproto_buf_add_subkv_u64(b, "cached", k->blocks_cached);
        pproto_buf_add_subkv_i64(b, "in_use", k->blocks_in_use);
        pproto_buf_add_subkv_u64(b, "allocs", k->allocations);
        pproto_buf_add_subkv_u64(b, "frees", k->frees);
        pproto_buf_add_subkv_u64(b, "reuses", k->reuses);
        pproto_buf_add_subkv_u64(b, "same_address", k->same_address);
        pproto_buf_add_subkv_u64(b, "cache_misses", k->cache_misses);
        pproto_buf_add_subkv_u64(b, "central_misses", k->central_misses);
        pproto_buf_add_subkv_u64(b, "exhausted", k->exhausted);
        pproto_buf_add_subkv_u64(b, "in_transit", k->blocks_in_transit);
        pproto_buf_add_subkv_u64(b, "invalid_frees", k->invalid_frees);
        pproto_buf_add_subkv_u64(b, "reclaimed_in_use", k->reclaimed_in_use);
        if (o) {
            /* The high-water mark of the blocks processes held (owner bytes). */
            uint64_t peak = o->class_peak[c];
            pproto_buf_add_subkv_u64(b, "peak", peak);
            pproto_buf_add_subkv_u64(b, "peak_bytes", peak * k->block_size);
        }
        pproto_buf_end_line(b);
    }
}

_Static_assert(PPROTO_LIFE_BUCKETS == PSHM_LIFE_BUCKETS, "one STATS key per lifetime bucket");

/* Sampled lifetimes: per class, the count in each bucket (not cumulative)
 * and the sum in nanoseconds. */
static void section_lifetimes(pproto_buf_t *b, const pshm_stats_t *st)
{
    char key[32];
    pproto_buf_add_section(b, "lifetimes");
    for (uint32_t c = 0; c < st->nclasses; c++) {
        const pshm_class_stats_t *k = &st->cls[c];
        snprintf(key, sizeof(key), "class_%llu", (unsigned long long)k->block_size);
        pproto_buf_begin_row(b, key);
        pproto_buf_add_subkv_u64(b, "size", k->block_size);
        for (uint32_t i = 0; i < PSHM_LIFE_BUCKETS; i++)
            pproto_buf_add_subkv_u64(b, pproto_life_keys[i], k->life[i]);
        pproto_buf_add_subkv_u64(b, PPROTO_LIFE_SUM_KEY, k->life_ns);
        pproto_buf_end_line(b);
    }
}

/* The bucket that holds quantile q (percent) of a class's sampled
 * lifetimes, as its bound ("<1us" ... "<10s", "10s+"); "-" without
 * samples. */
static const char *life_quantile(const pshm_class_stats_t *k, unsigned q)
{
    static const char *const bound[PSHM_LIFE_BUCKETS] = {
        "<1us", "<10us", "<100us", "<1ms", "<10ms", "<100ms", "<1s", "<10s", "10s+"};
    uint64_t n = 0, seen = 0;
    for (uint32_t i = 0; i < PSHM_LIFE_BUCKETS; i++)
        n += k->life[i];
    if (n == 0)
        return "-";
    for (uint32_t i = 0; i < PSHM_LIFE_BUCKETS; i++) {
        seen += k->life[i];
        if (seen * 100 >= n * q)
            return bound[i];
    }
    return bound[PSHM_LIFE_BUCKETS - 1];
}

static void section_class_config(pd_server_t *srv, pproto_buf_t *b, const pshm_stats_t *st)
{
    const pshm_seg_t *s = &srv->seg;
    char key[32];
    pproto_buf_add_section(b, "classes");
    for (uint32_t c = 0; c < s->nclasses; c++) {
        snprintf(key, sizeof(key), "class_%u", s->block_size[c]);
        pproto_buf_begin_row(b, key);
        pproto_buf_add_subkv_u64(b, "size", s->block_size[c]);
        pproto_buf_add_subkv_u64(b, "blocks_per_span", s->blocks_per_span[c]);
        pproto_buf_add_subkv_u64(b, "owner_bytes", pshm_owner_bytes_per_block());
        pproto_buf_add_subkv_u64(b, "cache_cap", s->cache_cap[c]);
        pproto_buf_add_subkv_u64(b, "batch", s->batch[c]);
        /* Sampled lifetimes (STATS # lifetimes has the buckets). */
        uint64_t n = 0;
        for (uint32_t i = 0; i < PSHM_LIFE_BUCKETS; i++)
            n += st->cls[c].life[i];
        pproto_buf_add_subkv_u64(b, "life_samples", n);
        pproto_buf_add_subkv_str(b, "life_p50", life_quantile(&st->cls[c], 50));
        pproto_buf_add_subkv_str(b, "life_p99", life_quantile(&st->cls[c], 99));
        pproto_buf_end_line(b);
    }
}

static const pd_obs_proc_t *obs_proc(const pd_server_t *srv, uint32_t slot, int32_t pid)
{
    const pd_observe_t *o = srv->obs;
    if (!o || slot >= o->nprocs || o->procs[slot].pid != pid)
        return NULL;
    return &o->procs[slot];
}

static int section_processes(pd_server_t *srv, pproto_buf_t *b, time_t now)
{
    uint32_t max = srv->seg.max_procs;
    pshm_proc_stats_t *ps = calloc(max, sizeof(*ps));
    char key[32];
    if (!ps)
        return -ENOMEM;
    int n = pshm_proc_stats(&srv->seg, ps, (int)max);
    if (n > (int)max)
        n = (int)max;
    pproto_buf_add_section(b, "processes");
    for (int i = 0; i < n; i++) {
        const pshm_proc_stats_t *p = &ps[i];
        const pd_proc_t *r = pd_registry_get(srv, p->slot);
        if (r && r->pid != p->pid)
            r = NULL;
        snprintf(key, sizeof(key), "proc_%d", (int)p->pid);
        pproto_buf_begin_row(b, key);
        pproto_buf_add_subkv_i64(b, "pid", p->pid);
        pproto_buf_add_subkv_u64(b, "slot", p->slot);
        pproto_buf_add_subkv_str(b, "name", r ? r->name : "");
        pproto_buf_add_subkv_u64(b, "attached_unix", p->attached_unix);
        pproto_buf_add_subkv_u64(b, "uptime_seconds",
                                 (uint64_t)now > p->attached_unix ? (uint64_t)now - p->attached_unix
                                                                  : 0);
        pproto_buf_add_subkv_u64(b, "allocs", p->allocations);
        pproto_buf_add_subkv_u64(b, "frees", p->frees);
        pproto_buf_add_subkv_u64(b, "cache_misses", p->cache_misses);
        pproto_buf_add_subkv_u64(b, "cached", p->blocks_cached);
        pproto_buf_add_subkv_i64(b, "in_use", p->blocks_in_use);
        pproto_buf_add_subkv_u64(b, "threads", p->threads);
        pproto_buf_add_subkv_u64(b, "connected", r && r->nconn > 0 ? 1 : 0);
        const pd_obs_proc_t *op = obs_proc(srv, p->slot, p->pid);
        if (op) {
            pproto_buf_add_subkv_u64(b, "in_use_bytes", op->bytes);
            pproto_buf_add_subkv_u64(b, "peak_bytes", op->peak_bytes);
            pproto_buf_add_subkv_i64(b, "growth_1m_bytes", pd_observe_growth(op));
        }
        pproto_buf_end_line(b);
    }
    free(ps);
    return 0;
}

/* Per process and class: the blocks it holds now (owner bytes) and their
 * high-water mark; rows only for what a process holds or held. */
static void section_holdings(pd_server_t *srv, pproto_buf_t *b)
{
    const pd_observe_t *o = srv->obs;
    const pshm_seg_t *s = &srv->seg;
    char key[32];
    pproto_buf_add_section(b, "holdings");
    if (!o)
        return;
    for (uint32_t i = 0; i < o->nprocs && i < s->max_procs; i++) {
        const pd_obs_proc_t *p = &o->procs[i];
        if (!p->pid)
            continue;
        const pd_proc_t *r = pd_registry_get(srv, i);
        for (uint32_t c = 0; c < s->nclasses; c++) {
            if (!p->blocks[c] && !p->peak_blocks[c])
                continue;
            snprintf(key, sizeof(key), "hold_%d_%u", (int)p->pid, s->block_size[c]);
            pproto_buf_begin_row(b, key);
            pproto_buf_add_subkv_i64(b, "pid", p->pid);
            pproto_buf_add_subkv_str(b, "name", r && r->pid == p->pid ? r->name : "");
            pproto_buf_add_subkv_u64(b, "size", s->block_size[c]);
            pproto_buf_add_subkv_u64(b, "blocks", p->blocks[c]);
            pproto_buf_add_subkv_u64(b, "bytes", p->blocks[c] * s->block_size[c]);
            pproto_buf_add_subkv_u64(b, "peak", p->peak_blocks[c]);
            pproto_buf_end_line(b);
        }
    }
}

/* Channels in use: one row each (pshm_chan_stats), with the rates of the
 * last observe tick. */
static void section_channels(pd_server_t *srv, pproto_buf_t *b)
{
    const pd_observe_t *o = srv->obs;
    char key[32];
    pproto_buf_add_section(b, "channels");
    for (uint32_t ch = 0; ch < PSHM_MAX_CHANS; ch++) {
        pshm_chan_stats_t cs;
        if (!pshm_chan_stats(&srv->seg, ch, &cs))
            continue;
        snprintf(key, sizeof(key), "chan_%u", ch);
        pproto_buf_begin_row(b, key);
        pproto_buf_add_subkv_str(b, "name", cs.name);
        pproto_buf_add_subkv_str(b, "kind", cs.kind == PSHM_CHAN_TOPIC ? "topic" : "queue");
        pproto_buf_add_subkv_u64(b, "capacity", cs.capacity);
        pproto_buf_add_subkv_u64(b, "depth", cs.depth);
        pproto_buf_add_subkv_u64(b, "taking", cs.taking);
        pproto_buf_add_subkv_u64(b, "bytes_held", cs.bytes_held);
        pproto_buf_add_subkv_u64(b, "members", cs.members);
        pproto_buf_add_subkv_u64(b, "sent", cs.sent);
        pproto_buf_add_subkv_u64(b, "received", cs.received);
        bool fresh = o && o->chan_seen[ch] && o->chan_gen[ch] == cs.generation;
        pproto_buf_add_subkv_u64(b, "sent_per_s", fresh ? o->chan_sent_rate[ch] : 0);
        pproto_buf_add_subkv_u64(b, "received_per_s", fresh ? o->chan_received_rate[ch] : 0);
        pproto_buf_add_subkv_u64(b, "full_waits", cs.full_waits);
        pproto_buf_add_subkv_u64(b, "given_back", cs.given_back);
        pproto_buf_add_subkv_u64(b, "handed_on", cs.handed_on);
        pproto_buf_add_subkv_u64(b, "refused", cs.refused);
        pproto_buf_add_subkv_u64(b, "subscribers", cs.subscribers);
        pproto_buf_add_subkv_u64(b, "slow_subscribers", cs.slow);
        pproto_buf_add_subkv_u64(b, "lag_max", cs.lag_max);
        pproto_buf_add_subkv_u64(b, "unheard", cs.unheard);
        pproto_buf_add_subkv_u64(b, "freed", cs.freed);
        pproto_buf_add_subkv_u64(b, "receivers_waiting", cs.receivers_waiting);
        pproto_buf_add_subkv_u64(b, "senders_waiting", cs.senders_waiting);
        pproto_buf_add_subkv_u64(b, "created_unix", cs.created_unix);
        pproto_buf_end_line(b);
    }
}

/* What poold warns about now (observe.c). */
static void section_warnings(pd_server_t *srv, pproto_buf_t *b)
{
    const pd_observe_t *o = srv->obs;
    char key[32];
    pproto_buf_add_section(b, "warnings");
    if (!o)
        return;
    for (uint32_t i = 0; i < o->nwarn; i++) {
        const pd_warning_t *w = &o->warn[i];
        /* Keys are short (PPROTO_MAX_KEY): kind and subject are fields. */
        snprintf(key, sizeof(key), "warning_%u", i + 1);
        pproto_buf_begin_row(b, key);
        pproto_buf_add_subkv_str(b, "kind", w->kind);
        pproto_buf_add_subkv_str(b, "subject", w->subject);
        pproto_buf_add_subkv_u64(b, "active", 1);
        pproto_buf_add_subkv_u64(b, "value", w->value);
        pproto_buf_add_subkv_u64(b, "since_unix", w->since_unix);
        pproto_buf_add_subkv_str(b, "message", w->message);
        pproto_buf_end_line(b);
    }
}

static void section_orphans(pd_server_t *srv, pproto_buf_t *b)
{
    char key[32];
    pproto_buf_add_section(b, "orphans");
    /* Oldest first. */
    uint32_t first = srv->norphans < PD_ORPHANS_KEPT ? 0 : srv->orphan_next;
    for (uint32_t i = 0; i < srv->norphans; i++) {
        const pd_orphan_t *o = &srv->orphans[(first + i) % PD_ORPHANS_KEPT];
        snprintf(key, sizeof(key), "orphan_%d", (int)o->pid);
        pproto_buf_begin_row(b, key);
        pproto_buf_add_subkv_i64(b, "pid", o->pid);
        pproto_buf_add_subkv_u64(b, "slot", o->slot);
        pproto_buf_add_subkv_i64(b, "blocks", o->blocks);
        pproto_buf_add_subkv_u64(b, "kept", o->kept);
        pproto_buf_add_subkv_u64(b, "reclaimed_blocks", o->reclaimed_blocks);
        pproto_buf_add_subkv_u64(b, "reclaimed_unix", o->reclaimed_unix);
        pproto_buf_end_line(b);
    }
}

int pd_stats_build(pd_server_t *srv, pproto_verb_t verb, char **out, size_t *len)
{
    /* Upper bound: every line at most PPROTO_MAX_LINE bytes. */
    size_t lines = 64 + 2 * (size_t)srv->seg.nclasses + srv->seg.max_procs + PD_ORPHANS_KEPT +
                   (size_t)srv->seg.max_procs * srv->seg.nclasses + PD_WARN_MAX + PSHM_MAX_CHANS;
    size_t cap = lines * PPROTO_MAX_LINE;
    char *text = malloc(cap);
    pshm_stats_t *st = NULL;
    pproto_buf_t b;
    time_t now = time(NULL);
    int rc = 0;

    if (!text)
        return -ENOMEM;
    pproto_buf_init(&b, text, cap);
    pproto_buf_add_str(&b, "OK");
    pproto_buf_end_line(&b);
    if (verb == PPROTO_STATS) {
        st = malloc(sizeof(*st));
        if (!st) {
            rc = -ENOMEM;
            goto out;
        }
        pd_observe_scan(srv);
        pshm_stats(&srv->seg, st);
        section_server(srv, &b, now);
        section_pool(srv, &b, st);
        section_classes(srv, &b, st);
        section_lifetimes(&b, st);
        rc = section_processes(srv, &b, now);
        if (rc < 0)
            goto out;
        section_orphans(srv, &b);
        section_holdings(srv, &b);
        section_channels(srv, &b);
        section_warnings(srv, &b);
    } else if (verb == PPROTO_PROCS) {
        pd_observe_scan(srv);
        rc = section_processes(srv, &b, now);
        if (rc < 0)
            goto out;
    } else if (verb == PPROTO_CLASSES) {
        st = malloc(sizeof(*st));
        if (!st) {
            rc = -ENOMEM;
            goto out;
        }
        pshm_stats(&srv->seg, st);
        section_class_config(srv, &b, st);
    } else {
        rc = -EINVAL;
        goto out;
    }
    pproto_buf_add_end(&b);
    rc = pproto_buf_result(&b);
    if (rc >= 0) {
        *out = text;
        *len = (size_t)rc;
        text = NULL;
        rc = 0;
    }
out:
    free(st);
    free(text);
    return rc;
}

void pd_stats_summary(pd_server_t *srv, char *out, size_t cap)
{
    pshm_stats_t *st = malloc(sizeof(*st));
    if (!st) {
        snprintf(out, cap, "serving %s", srv->cfg.shm_name);
        return;
    }
    pshm_stats(&srv->seg, st);
    char warn[512], a[32], b[32], c[32];
    pd_observe_status(srv, warn, sizeof(warn));
    char d[32];
    snprintf(out, cap,
             "%s%s%llu procs attached, %s of %s in use, %s carved, %s committed, %u connections",
             warn, warn[0] ? "; " : "", (unsigned long long)st->procs_attached,
             pd_human_bytes(st->bytes_in_use, a, sizeof(a)),
             pd_human_bytes(st->segment_bytes, b, sizeof(b)),
             pd_human_bytes(st->bytes_carved, c, sizeof(c)),
             pd_human_bytes(st->bytes_committed, d, sizeof(d)), srv->nconns);
    free(st);
}
