/* SPDX-License-Identifier: MIT */
/*
 * registry.c: the processes attached to poold's segment, and crash reclaim.
 *
 * One entry per process slot that poold watches: slot, pid, start time,
 * name, how many control connections it holds (none when adopted after a
 * restart, or after its connection closed) and a pidfd with an EV_READ event. A process's death
 * is seen at once, by connection EOF (server.c calls
 * pd_registry_conn_closed) or by its pidfd turning readable, and its slot is
 * reclaimed with pshm_proc_reclaim(): cached blocks go back to the central
 * lists, the blocks it still had in use are recorded as orphans (the last
 * PD_ORPHANS_KEPT of them, for STATS). A persistent timer sweeps every
 * PD_SWEEP_SECONDS as a backstop, for slots poold was never told about.
 *
 * It must never reclaim a slot whose pid is not the dead process's (slots
 * are reused), never reclaim a live process, and never trust a count read
 * from the segment beyond what pshm_* validates.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "poold.h"

static int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : (int)fd;
#else
    (void)pid;
    return -ENOSYS;
#endif
}

const pshm_actor_t *pd_actor(const pd_server_t *srv)
{
    return srv->have_actor ? &srv->actor : NULL;
}

int pd_registry_init(pd_server_t *srv)
{
    srv->nprocs = srv->seg.max_procs;
    srv->procs = calloc(srv->nprocs, sizeof(*srv->procs));
    return srv->procs ? 0 : -ENOMEM;
}

static void drop(pd_server_t *srv, pd_proc_t *p)
{
    for (pd_conn_t *c = srv->conns; c && p->nconn; c = c->next)
        if (c->proc == p)
            c->proc = NULL;
    if (p->pidev)
        event_free(p->pidev);
    if (p->pidfd >= 0)
        close(p->pidfd);
    if (p->slot < srv->nprocs && srv->procs[p->slot] == p)
        srv->procs[p->slot] = NULL;
    free(p);
}

void pd_registry_free(pd_server_t *srv)
{
    for (uint32_t i = 0; srv->procs && i < srv->nprocs; i++)
        if (srv->procs[i])
            drop(srv, srv->procs[i]);
    free(srv->procs);
    srv->procs = NULL;
    srv->nprocs = 0;
    if (srv->sweep_ev) {
        event_free(srv->sweep_ev);
        srv->sweep_ev = NULL;
    }
}

pd_proc_t *pd_registry_get(pd_server_t *srv, uint32_t slot)
{
    return slot < srv->nprocs ? srv->procs[slot] : NULL;
}

uint32_t pd_registry_count(const pd_server_t *srv)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < srv->nprocs; i++)
        n += srv->procs[i] != NULL;
    return n;
}

/* The slot is LIVE and held by pid. */
static bool slot_holds(const pd_server_t *srv, uint32_t slot, pid_t pid)
{
    const struct pshm_proc *sp = &srv->seg.procs[slot];
    /* acquire: pairs with the release store of LIVE in pshm_proc_claim(), so
     * the pid read next is the claimer's. */
    return pa_load_acquire(&sp->state) == PSHM_PROC_LIVE && pa_load_relaxed(&sp->pid) == pid;
}

static void pidfd_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pd_proc_t *p = arg;
    pd_registry_reclaim(p->srv, p, "exited");
}

pd_proc_t *pd_registry_add(pd_server_t *srv, uint32_t slot, pid_t pid, uint64_t start_time,
                           const char *name)
{
    if (slot >= srv->nprocs)
        return NULL;
    pd_proc_t *p = srv->procs[slot];
    if (p && p->pid == pid) {
        if (name && *name)
            snprintf(p->name, sizeof(p->name), "%s", name);
        return p;
    }
    if (p) /* a stale entry for a slot reused by another pid */
        drop(srv, p);
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->srv = srv;
    p->slot = slot;
    p->pid = pid;
    p->start_time = start_time;
    /* relaxed: written by the claimer before its release store of LIVE,
     * which the caller has acquired (slot_holds or pshm_proc_find). */
    p->attached_unix = pa_load_relaxed(&srv->seg.procs[slot].attached_unix);
    if (name)
        snprintf(p->name, sizeof(p->name), "%s", name);
    p->pidfd = pidfd_open_(pid);
    if (p->pidfd >= 0) {
        p->pidev = event_new(srv->base, p->pidfd, EV_READ, pidfd_cb, p);
        if (!p->pidev || event_add(p->pidev, NULL) < 0) {
            pd_warn("cannot watch pid %d by pidfd; relying on EOF and the sweep", (int)pid);
            if (p->pidev)
                event_free(p->pidev);
            p->pidev = NULL;
        }
    } else {
        pd_debug("pidfd_open(%d): %s; relying on EOF and the sweep", (int)pid, strerror(-p->pidfd));
    }
    srv->procs[slot] = p;
    return p;
}

void pd_registry_forget(pd_server_t *srv, pd_proc_t *p)
{
    drop(srv, p);
}

void pd_registry_note_reclaim(pd_server_t *srv, const pshm_reclaimed_t *r, const char *name,
                              const char *why)
{
    name = name && *name ? name : "unnamed";
    if (r->ended == PSHM_END_EXEC) {
        pd_info("pid %d (%s) replaced its image by exec: %llu cached and %llu in-use blocks of "
                "the old image returned, %llu kept in transit [slot %u]",
                (int)r->pid, name, (unsigned long long)r->blocks_returned,
                (unsigned long long)r->in_use_returned, (unsigned long long)r->in_use_kept,
                r->slot);
        return;
    }
    if (r->ended == PSHM_END_EXIT) {
        pd_debug("pid %d (%s) exited: %llu cached and %llu in-use blocks returned, %llu kept in "
                 "transit [slot %u, %s]",
                 (int)r->pid, name, (unsigned long long)r->blocks_returned,
                 (unsigned long long)r->in_use_returned, (unsigned long long)r->in_use_kept,
                 r->slot, why);
        return;
    }
    /* A crash: the last few are kept for STATS (# orphans). */
    pd_orphan_t *o = &srv->orphans[srv->orphan_next];
    o->pid = r->pid;
    o->slot = r->slot;
    o->blocks = (int64_t)(r->in_use_returned + r->in_use_kept);
    o->kept = r->in_use_kept;
    o->reclaimed_blocks = r->blocks_returned;
    o->reclaimed_unix = (uint64_t)time(NULL);
    srv->orphan_next = (srv->orphan_next + 1) % PD_ORPHANS_KEPT;
    if (srv->norphans < PD_ORPHANS_KEPT)
        srv->norphans++;
    pd_info("reclaimed pid %d (%s), which died attached: %llu cached and %llu in-use blocks "
            "returned, %llu kept in transit, in %.1f ms (%.1f ms CPU) [slot %u, %s]",
            (int)r->pid, name, (unsigned long long)r->blocks_returned,
            (unsigned long long)r->in_use_returned, (unsigned long long)r->in_use_kept,
            (double)r->usec / 1000.0, (double)r->cpu_usec / 1000.0, r->slot, why);
}

void pd_registry_reclaim(pd_server_t *srv, pd_proc_t *p, const char *why)
{
    pshm_reclaimed_t r;
    /* Never touch a slot that another process holds now. */
    int rc = slot_holds(srv, p->slot, p->pid)
                 ? pshm_proc_reclaim_pid(&srv->seg, p->slot, p->pid, pd_actor(srv), &r)
                 : -ESRCH;
    if (rc == 0)
        pd_registry_note_reclaim(srv, &r, p->name, why);
    else if (rc == -EAGAIN)
        pd_debug("pid %d (%s) %s; another process is reclaiming, the sweep takes slot %u",
                 (int)p->pid, p->name[0] ? p->name : "unnamed", why, p->slot);
    else
        pd_debug("pid %d (%s) %s; its slot %u was already free", (int)p->pid,
                 p->name[0] ? p->name : "unnamed", why, p->slot);
    drop(srv, p);
}

static bool pidfd_readable(const pd_proc_t *p)
{
    if (p->pidfd < 0)
        return false;
    struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN);
}

static bool proc_dead(const pd_proc_t *p)
{
    return pidfd_readable(p) || !pshm_os_proc_alive(p->pid, p->start_time);
}

void pd_registry_conn_closed(pd_server_t *srv, pd_proc_t *p)
{
    if (p->nconn > 0)
        p->nconn--;
    if (p->nconn > 0) /* another connection of the same process remains */
        return;
    if (proc_dead(p)) {
        pd_registry_reclaim(srv, p, "connection closed, process gone");
        return;
    }
    if (!slot_holds(srv, p->slot, p->pid)) {
        pd_debug("pid %d closed its connection after freeing slot %u", (int)p->pid, p->slot);
        drop(srv, p);
        return;
    }
    /* An exec (the socket is close-on-exec), or a program that closed it:
     * the new image's HELLO or the process's death ends the slot. */
    pd_debug("pid %d (%s) closed its connection but lives: keeping slot %u, watching it",
             (int)p->pid, p->name[0] ? p->name : "unnamed", p->slot);
}

/* Reclaim slot, held by pid (dead, or an image it replaced by exec), now:
 * a reclaim by another process (an embedded reclaimer) is waited for, a
 * few milliseconds, at most PD_RECLAIM_WAIT_MS. */
static void reclaim_slot(pd_server_t *srv, uint32_t slot, pid_t pid, const char *why)
{
    pd_proc_t *old = pd_registry_get(srv, slot);
    const char *name = old && old->pid == pid ? old->name : NULL;
    pshm_reclaimed_t r;
    int rc;
    for (int waited = 0;; waited++) {
        rc = pshm_proc_reclaim_pid(&srv->seg, slot, pid, pd_actor(srv), &r);
        if (rc != -EAGAIN || waited >= PD_RECLAIM_WAIT_MS)
            break;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    if (rc == 0)
        pd_registry_note_reclaim(srv, &r, name, why);
    else
        pd_warn("pid %d: slot %u of its %s image not reclaimed: %s", (int)pid, slot,
                strcmp(why, "exec") == 0 ? "earlier" : "dead", strerror(-rc));
    if (old && old->pid == pid)
        drop(srv, old);
}

int pd_registry_slot_for(pd_server_t *srv, pid_t pid, uint64_t start, uint32_t image, bool *reused)
{
    pshm_seg_t *seg = &srv->seg;
    int slot = pshm_proc_find(seg, pid);
    *reused = false;
    if (slot >= 0) {
        /* relaxed: after the acquire of LIVE in pshm_proc_find(). */
        uint64_t had = pa_load_relaxed(&seg->procs[slot].start_time);
        bool same_process = start == 0 || had == 0 || had == start;
        uint32_t held = pshm_proc_image(seg, (uint32_t)slot);
        if (same_process && (image == 0 || held == 0 || held == image)) {
            /* This image's slot: a second pool, or HELLO again after a
             * restart of poold. */
            if (held == 0)
                pshm_proc_set_image(seg, (uint32_t)slot, image);
            *reused = true;
            return slot;
        }
        /* Pid reuse (another start time: that process is dead), or the
         * image the process replaced by exec, whose threads the kernel
         * ended at any instruction: reclaimed as after a death, counted
         * as an exec. */
        if (same_process)
            pshm_proc_note_end(seg, (uint32_t)slot, PSHM_END_EXEC);
        reclaim_slot(srv, (uint32_t)slot, pid, same_process ? "exec" : "pid reused");
    }
    slot = pshm_proc_claim(seg, pid, start, PSHM_VIA_DAEMON);
    if (slot == -EBUSY) {
        pd_registry_sweep(srv); /* reclaims dead slots nobody told us about */
        slot = pshm_proc_claim(seg, pid, start, PSHM_VIA_DAEMON);
    }
    if (slot >= 0)
        pshm_proc_set_image(seg, (uint32_t)slot, image);
    return slot;
}

int pd_registry_attach(pd_server_t *srv, pid_t pid, uint32_t image, const char *name,
                       pd_proc_t **out, bool *reused)
{
    uint64_t start = pshm_os_proc_start_time(pid);
    int slot = pd_registry_slot_for(srv, pid, start, image, reused);
    if (slot < 0)
        return slot;
    pd_proc_t *p = pd_registry_add(srv, (uint32_t)slot, pid, start, name);
    if (!p) {
        if (!*reused)
            pshm_proc_release(&srv->seg, (uint32_t)slot);
        return -ENOMEM;
    }
    *out = p;
    return slot;
}

bool pd_registry_holds(const pd_server_t *srv, const pd_proc_t *p)
{
    return slot_holds(srv, p->slot, p->pid);
}

/* One pass over the segment's slots: reclaim the dead, watch the unknown
 * live ones, forget entries whose slot was freed. Returns live slots. */
static int scan(pd_server_t *srv, bool adopting)
{
    int live = 0;
    for (uint32_t i = 0; i < srv->nprocs; i++) {
        struct pshm_proc *sp = &srv->seg.procs[i];
        pd_proc_t *p = srv->procs[i];
        if (srv->have_actor && i == srv->actor.slot)
            continue; /* poold's own */
        /* acquire: pairs with the release store of LIVE in pshm_proc_claim(). */
        uint32_t state = pa_load_acquire(&sp->state);
        if (state == PSHM_PROC_RECLAIMING) {
            /* A reclaimer (a poold killed mid-reclaim) died: finish it. */
            pshm_reclaimed_t r;
            if (pshm_proc_reclaim(&srv->seg, i, pd_actor(srv), &r) == 0)
                pd_registry_note_reclaim(srv, &r, NULL,
                                         "reclaim finished after its reclaimer died");
            continue;
        }
        if (state != PSHM_PROC_LIVE) {
            if (p && p->nconn == 0) { /* freed by its owner (pool_detach) */
                pd_debug("slot %u of pid %d is free now; forgetting it", i, (int)p->pid);
                drop(srv, p);
            }
            continue;
        }
        pid_t pid = pa_load_relaxed(&sp->pid); /* relaxed: after the acquire above */
        uint64_t st = pa_load_relaxed(&sp->start_time);
        if (p && p->pid != pid) { /* slot reused behind our back */
            drop(srv, p);
            p = NULL;
        }
        bool dead = p ? proc_dead(p) : !pshm_os_proc_alive(pid, st);
        if (dead) {
            if (p) {
                pd_registry_reclaim(srv, p, adopting ? "dead at adoption" : "found dead by sweep");
            } else {
                pshm_reclaimed_t r;
                if (pshm_proc_reclaim_pid(&srv->seg, i, pid, pd_actor(srv), &r) == 0)
                    pd_registry_note_reclaim(srv, &r, NULL,
                                             adopting ? "dead at adoption" : "found dead by sweep");
            }
            continue;
        }
        live++;
        if (!p && pd_registry_add(srv, i, pid, st, NULL))
            pd_info("%s pid %d in slot %u (no connection; watching it until it says HELLO)",
                    adopting ? "kept" : "watching", (int)pid, i);
    }
    return live;
}

int pd_registry_adopt(pd_server_t *srv)
{
    return scan(srv, true);
}

void pd_registry_sweep(pd_server_t *srv)
{
    if (srv->procs)
        scan(srv, false);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pd_registry_sweep(arg);
}

int pd_registry_start_sweep(pd_server_t *srv)
{
    struct timeval tv = {PD_SWEEP_SECONDS, 0};
    srv->sweep_ev = event_new(srv->base, -1, EV_PERSIST, sweep_cb, srv);
    if (!srv->sweep_ev || event_add(srv->sweep_ev, &tv) < 0)
        return -ENOMEM;
    return 0;
}
