/* SPDX-License-Identifier: MIT */
/*
 * segment.c: poold's segment at start-up: adopt the one that exists under
 * the configured name, or create and format a new one.
 *
 * Adopting means: open it, validate it with pshm_view(), bump daemon_gen,
 * write daemon_pid and daemon_started_unix, then hand the live slots to the
 * registry (which reclaims the dead ones). A segment that fails validation
 * (foreign, truncated, another ABI, corrupt) is refused with pshm_view()'s
 * message: this file must never format over, truncate or unlink a segment
 * it did not just create, and never unlinks one at shutdown either (workers
 * keep allocating while poold is down).
 *
 * Memory (prefault = none, the default): a new segment commits only its
 * header and tables; spans are committed as they are carved, by whoever
 * claims them. poold's purge timer (every PD_PURGE_SECONDS) gives back the
 * memory of spans free for longer than purge_delay beyond `retain` bytes
 * (pshm_span_purge()). At open, spans a poold killed mid-purge left marked
 * are put back first (pshm_span_purge_recover(): only one poold serves a
 * segment, so no purge of another runs). With prefault = all the whole
 * segment is committed at creation and nothing is purged.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "poold.h"

static void stamp_header(pd_server_t *srv)
{
    struct pshm_header *h = srv->seg.hdr;
    /* relaxed RMW: poold is the only writer of daemon_gen (one poold per
     * segment); clients read it relaxed as a hint that poold changed and
     * trust the gen of the HELLO reply. */
    srv->gen = pa_add_relaxed(&h->daemon_gen, 1) + 1;
    /* relaxed: informational fields, written by poold only, read by tools. */
    pa_store_relaxed(&h->daemon_pid, (int32_t)getpid());
    pa_store_relaxed(&h->daemon_started_unix, (uint64_t)srv->started);
    pa_store_relaxed(&h->daemon_start_time, pshm_os_proc_start_time(getpid()));
}

void pd_segment_apply_settings(pd_server_t *srv)
{
    /* relaxed: a setting, read by whoever reclaims next; it needs no
     * ordering with anything else in the segment. */
    if (!srv->seg_base)
        return;
    pshm_seg_t *s = &srv->seg;
    pa_store_relaxed(&s->hdr->orphans_keep, srv->cfg.orphans_keep ? 1u : 0u);
    /* relaxed: a setting, read by each large allocation as a bound. A
     * block above it that is already in use stays valid. */
    uint64_t mb = srv->cfg.max_block ? srv->cfg.max_block
                                     : pshm_max_block_default(s->data_bytes, s->span_shift);
    pa_store_relaxed(&s->hdr->max_block, mb < s->data_bytes ? mb : s->data_bytes);
}

static int build_params(pd_server_t *srv, pshm_params_t *p, char *err, size_t errlen)
{
    char e[256];
    pshm_params_default(p, srv->cfg.size);
    if (pshm_params_set_classes(p, srv->cfg.classes, e, sizeof(e)) < 0) {
        snprintf(err, errlen, "classes: %.200s", e);
        return -EINVAL;
    }
    p->max_procs = srv->cfg.max_procs;
    p->max_threads = srv->cfg.max_threads;
    return 0;
}

static int adopt(pd_server_t *srv, void *base, uint64_t bytes, char *err, size_t errlen)
{
    const char *name = srv->cfg.shm_name;
    char e[256];
    int rc = pshm_view(&srv->seg, base, bytes, e, sizeof(e));
    if (rc < 0) {
        pshm_os_unmap(base, bytes);
        snprintf(err, errlen,
                 "refusing segment %s: %s; poold leaves it untouched (remove /dev/shm%s "
                 "yourself if it is stale, or choose another --shm-name)",
                 name, e, name);
        return rc;
    }
    srv->seg_base = base;
    srv->seg_bytes = bytes;
    srv->seg_created = false;

    /* relaxed: poold's own fields; a poold that stops cleanly clears the
     * pid, one that died leaves a pid that is gone or reused (start time). */
    int32_t prev_pid = pa_load_relaxed(&srv->seg.hdr->daemon_pid);
    uint64_t prev_start = pa_load_relaxed(&srv->seg.hdr->daemon_start_time);
    if (prev_pid > 0 && prev_pid != (int32_t)getpid() && prev_start != 0 &&
        pshm_os_proc_alive(prev_pid, prev_start)) {
        snprintf(err, errlen,
                 "segment %s is served by another poold (pid %d, still running): two poolds "
                 "must not serve one segment; stop it first, or choose another --shm-name",
                 name, (int)prev_pid);
        memset(&srv->seg, 0, sizeof(srv->seg));
        srv->seg_base = NULL;
        pshm_os_unmap(base, bytes);
        return -EBUSY;
    }
    stamp_header(srv);

    pshm_params_t want;
    if (build_params(srv, &want, e, sizeof(e)) == 0) {
        bool same_classes = want.nclasses == srv->seg.nclasses;
        for (uint32_t i = 0; same_classes && i < want.nclasses; i++)
            same_classes = want.class_size[i] == srv->seg.block_size[i];
        if (srv->seg.bytes != srv->cfg.size || !same_classes ||
            srv->seg.max_procs != srv->cfg.max_procs ||
            srv->seg.max_threads != srv->cfg.max_threads)
            pd_warn("segment %s keeps its own geometry (%llu bytes, %u classes, %u procs, %u "
                    "threads); size/classes/max_procs/max_threads apply when it is made anew",
                    name, (unsigned long long)srv->seg.bytes, srv->seg.nclasses, srv->seg.max_procs,
                    srv->seg.max_threads);
    }
    return 0;
}

static int create(pd_server_t *srv, char *err, size_t errlen)
{
    const char *name = srv->cfg.shm_name;
    pshm_params_t p;
    void *base = NULL;
    char e[256];
    int rc = build_params(srv, &p, err, errlen);
    if (rc < 0)
        return rc;
    unsigned mode = srv->gid >= 0 ? 0660u : 0600u;
    /* prefault = all: the whole segment now; none: the header and tables,
     * the spans as they are carved. */
    uint64_t commit = srv->cfg.prefault_all ? p.bytes : pshm_params_tables_bytes(&p);
    rc = pshm_os_create(name, p.bytes, commit, mode, srv->gid, true, &base, e, sizeof(e));
    if (rc < 0) {
        snprintf(err, errlen, "cannot create segment %s: %s", name, e);
        return rc;
    }
    rc = pshm_format(base, &p, e, sizeof(e));
    if (rc == 0)
        rc = pshm_view(&srv->seg, base, p.bytes, e, sizeof(e));
    if (rc < 0) {
        /* We made it a moment ago and nobody can have used it yet. */
        pshm_os_unmap(base, p.bytes);
        pshm_os_unlink(name);
        snprintf(err, errlen, "cannot format segment %s: %s", name, e);
        return rc;
    }
    srv->seg_base = base;
    srv->seg_bytes = p.bytes;
    srv->seg_created = true;
    if (srv->cfg.prefault_all) /* fallocate committed every span; nobody attached yet */
        pshm_span_note_committed(&srv->seg, 0, srv->seg.nspans);
    stamp_header(srv);
    return 0;
}

/* poold's own slot and record, through which it frees the in-use blocks
 * of dead processes. A slot left by a poold that died is reclaimed like any
 * other (its pid is gone). */
static int claim_actor(pd_server_t *srv, char *err, size_t errlen)
{
    pid_t me = getpid();
    int slot = pshm_proc_claim(&srv->seg, me, pshm_os_proc_start_time(me), PSHM_VIA_POOLD);
    if (slot == -EBUSY && pshm_reclaim_dead(&srv->seg, NULL, NULL, 0) > 0)
        slot = pshm_proc_claim(&srv->seg, me, pshm_os_proc_start_time(me), PSHM_VIA_POOLD);
    if (slot < 0) {
        snprintf(err, errlen, "segment %s has no free process slot for poold itself",
                 srv->cfg.shm_name);
        return slot;
    }
    struct pshm_thread *t = pshm_thread_claim(&srv->seg, (uint32_t)slot, (int32_t)me);
    if (!t) {
        pshm_proc_release(&srv->seg, (uint32_t)slot);
        snprintf(err, errlen, "segment %s has no free thread record for poold itself",
                 srv->cfg.shm_name);
        return -EBUSY;
    }
    srv->actor = (pshm_actor_t){(uint32_t)slot, t};
    srv->have_actor = true;
    return 0;
}

int pd_segment_open(pd_server_t *srv, char *err, size_t errlen)
{
    const char *name = srv->cfg.shm_name;
    void *base = NULL;
    uint64_t bytes = 0;
    char e[256];
    int rc;

    rc = pshm_os_open(name, &base, &bytes, e, sizeof(e));
    if (rc == -ENOENT) {
        rc = create(srv, err, errlen);
        if (rc == -EEXIST) /* another process made it meanwhile: adopt that one */
            rc = pshm_os_open(name, &base, &bytes, e, sizeof(e));
        else if (rc < 0)
            return rc;
        else
            pd_info("created segment %s: %llu bytes, %u classes (%u..%u B), %u process slots, "
                    "%u thread records, mode %s",
                    name, (unsigned long long)srv->seg.bytes, srv->seg.nclasses,
                    srv->seg.block_size[0], srv->seg.block_size[srv->seg.nclasses - 1],
                    srv->seg.max_procs, srv->seg.max_threads, srv->gid >= 0 ? "0660" : "0600");
    }
    if (rc < 0) {
        snprintf(err, errlen, "refusing segment %s: %s", name, e);
        return rc;
    }
    if (!srv->seg_created) {
        rc = adopt(srv, base, bytes, err, errlen);
        if (rc < 0)
            return rc;
    }
    rc = pd_registry_init(srv);
    if (rc < 0) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    uint32_t put_back = pshm_span_purge_recover(&srv->seg);
    if (put_back)
        pd_info("segment %s: %u span%s a stopped purge had taken put back in the pool", name,
                put_back, put_back == 1 ? "" : "s");
    pd_segment_apply_settings(srv);
    /* No prefault here: filling the page tables of a large segment takes
     * seconds, so poold's main runs it on a thread of its own while the
     * loop serves (main.c, "Prefault"). */
    rc = claim_actor(srv, err, errlen);
    if (rc < 0)
        return rc;
    if (!srv->seg_created) {
        int live = pd_registry_adopt(srv);
        pd_info("adopted segment %s: %llu bytes, generation %llu, %d live process%s kept, %u "
                "dead reclaimed",
                name, (unsigned long long)srv->seg.bytes, (unsigned long long)srv->gen, live,
                live == 1 ? "" : "es", srv->norphans);
    }
    /* After the dead were reclaimed: a record its thread left in the
     * middle of a step is not corruption, it is what reclaim puts right. */
    pd_integrity_open(srv);
    return 0;
}

/* One purge: at most PD_PURGE_MAX_BYTES (about 16 us per 64 KiB span:
 * 65 ms for 256 MiB), so that a large free holds the loop that long at
 * most; a slice that hit the limit schedules the next one at once, after
 * the events already waiting, so that 1 GiB is given back in four slices
 * in a quarter of a second, not in four ticks. */
void pd_segment_purge(pd_server_t *srv)
{
    if (!srv->seg_base || srv->cfg.prefault_all)
        return;
    pshm_seg_t *s = &srv->seg;
    uint32_t max = (uint32_t)(PD_PURGE_MAX_BYTES >> s->span_shift);
    max = max ? max : 1;
    int n = pshm_span_purge(s, pshm_now_ms(), (uint64_t)srv->cfg.purge_delay * 1000u,
                            srv->cfg.retain, max);
    if (n < 0) {
        pd_warn("purge of segment %s failed: %s; its free spans stay committed", srv->cfg.shm_name,
                strerror(-n));
    } else if (n > 0) {
        char b[32];
        pd_debug("purged %d free span%s (%s) of segment %s", n, n == 1 ? "" : "s",
                 pd_human_bytes((uint64_t)n << s->span_shift, b, sizeof(b)), srv->cfg.shm_name);
        static const struct timeval now = {0, 0};
        if ((uint32_t)n >= max && srv->purge_more_ev)
            event_add(srv->purge_more_ev, &now); /* a failure waits for the tick */
    }
}

static void purge_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pd_segment_purge(arg);
}

int pd_segment_purge_start(pd_server_t *srv)
{
    struct timeval tv = {PD_PURGE_SECONDS, 0};
    if (srv->cfg.prefault_all)
        return 0;
    srv->purge_ev = event_new(srv->base, -1, EV_PERSIST, purge_cb, srv);
    srv->purge_more_ev = evtimer_new(srv->base, purge_cb, srv);
    if (!srv->purge_ev || !srv->purge_more_ev || event_add(srv->purge_ev, &tv) < 0)
        return -ENOMEM;
    return 0;
}

void pd_segment_close(pd_server_t *srv)
{
    if (srv->purge_more_ev) {
        event_free(srv->purge_more_ev);
        srv->purge_more_ev = NULL;
    }
    if (srv->purge_ev) {
        event_free(srv->purge_ev);
        srv->purge_ev = NULL;
    }
    if (!srv->seg_base)
        return;
    pd_observe_stop(srv);
    pd_integrity_close(srv);
    /* relaxed: informational; 0 says "no poold now". Only if it is still us:
     * a successor poold may already have adopted the segment. */
    int32_t me = (int32_t)getpid();
    if (srv->have_actor) {
        pshm_release_result_t res = {0};
        pshm_proc_detach(&srv->seg, srv->actor.slot, false, &res);
        srv->have_actor = false;
    }
    if (pa_load_relaxed(&srv->seg.hdr->daemon_pid) == me)
        pa_store_relaxed(&srv->seg.hdr->daemon_pid, 0);
    pshm_os_unmap(srv->seg_base, srv->seg_bytes);
    srv->seg_base = NULL;
    memset(&srv->seg, 0, sizeof(srv->seg));
}
