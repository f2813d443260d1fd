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
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    if (srv->seg_base)
        pa_store_relaxed(&srv->seg.hdr->orphans_keep, srv->cfg.orphans_keep ? 1u : 0u);
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
    rc = pshm_os_create(name, p.bytes, mode, srv->gid, true, &base, e, sizeof(e));
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

void pd_segment_close(pd_server_t *srv)
{
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
