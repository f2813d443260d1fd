/* SPDX-License-Identifier: MIT */
/*
 * integrity.c: poold's watch for a corrupt segment (invariant 4, docs/design.md).
 *
 * A segment any attached process can scribble on is checked when poold
 * adopts it (every list, record and owner byte) and then on a timer, a
 * bounded sample each second (a prefix of each class's lists, a window of
 * records and of spans; pshm_verify() in shm/ does the walking and never
 * trusts an offset). A corrupt segment is reported, never repaired: the
 * first finding and every later one are logged (at most one line per
 * PD_CORRUPT_LOG_SECONDS, with a count of the rest), STATS shows
 * `corrupt:1` and `corruptions_total`, and HELLO is refused with
 * `pool-corrupt`, so that no new process is handed blocks that may be
 * handed out twice. STATS and the rest keep answering; the operator stops
 * the workers, removes the segment and restarts poold (README).
 */
#include <errno.h>
#include <event2/event.h>
#include <string.h>
#include <time.h>

#include "poold.h"

static const char *kind_name(uint32_t k)
{
    switch (k) {
    case PSHM_CORRUPT_INDEX: return "index out of range";
    case PSHM_CORRUPT_CYCLE: return "list cycle";
    case PSHM_CORRUPT_TWICE: return "block on two lists";
    case PSHM_CORRUPT_OWNER: return "wrong owner byte";
    case PSHM_CORRUPT_RECORD: return "corrupt thread record";
    default: return "corruption";
    }
}

static void note(pd_server_t *srv, const pshm_corruption_t *f, const char *when)
{
    bool first = !srv->corrupt;
    srv->corrupt = true;
    srv->corruptions_total++;
    snprintf(srv->corrupt_what, sizeof(srv->corrupt_what), "%s: %s", kind_name(f->kind), f->what);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    if (!first && now.tv_sec - srv->corrupt_logged < PD_CORRUPT_LOG_SECONDS) {
        srv->corrupt_suppressed++;
        return;
    }
    pd_error("segment %s is corrupt (%s, finding %llu%s): %s; refusing new attaches",
             srv->cfg.shm_name, when, (unsigned long long)srv->corruptions_total,
             first ? ", the first" : "", srv->corrupt_what);
    if (srv->corrupt_suppressed)
        pd_error("%llu more corruption findings in the last %d s not logged",
                 (unsigned long long)srv->corrupt_suppressed, PD_CORRUPT_LOG_SECONDS);
    if (first)
        pd_error("to recover: stop every worker, remove /dev/shm%s%s, restart poold",
                 srv->cfg.shm_name[0] == '/' ? "" : "/", srv->cfg.shm_name);
    srv->corrupt_logged = now.tv_sec;
    srv->corrupt_suppressed = 0;
}

int pd_integrity_open(pd_server_t *srv)
{
    int rc = pshm_verify_init(&srv->verify, &srv->seg, (srv->seg.data_bytes >> 3) + 1);
    if (rc < 0) {
        pd_warn("no memory for the corruption checks of segment %s: not checked",
                srv->cfg.shm_name);
        return 0;
    }
    srv->verify_on = true;
    srv->verify.rec_window = PD_VERIFY_RECORDS;
    srv->verify.span_window = PD_VERIFY_SPANS;
    /* At adoption: everything, twice (a finding that a race could cause is
     * reported only when seen twice). A segment we just made is clean. */
    if (!srv->seg_created) {
        for (int i = 0; i < 2 && !srv->corrupt; i++) {
            pshm_corruption_t f;
            if (pshm_verify(&srv->seg, &srv->verify, true, &f))
                note(srv, &f, "at adoption");
        }
        if (!srv->corrupt)
            pd_info("segment %s checked at adoption: no corruption found", srv->cfg.shm_name);
    }
    srv->verify.budget = PD_VERIFY_BUDGET;
    return 0;
}

void pd_integrity_tick(pd_server_t *srv)
{
    if (!srv->verify_on || !srv->seg_base)
        return;
    pshm_corruption_t f;
    if (pshm_verify(&srv->seg, &srv->verify, false, &f))
        note(srv, &f, "sampled check");
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pd_integrity_tick(arg);
}

int pd_integrity_start(pd_server_t *srv)
{
    struct timeval tv = {PD_VERIFY_SECONDS, 0};
    srv->verify_ev = event_new(srv->base, -1, EV_PERSIST, tick_cb, srv);
    if (!srv->verify_ev || event_add(srv->verify_ev, &tv) < 0)
        return -ENOMEM;
    return 0;
}

void pd_integrity_close(pd_server_t *srv)
{
    if (srv->verify_ev) {
        event_free(srv->verify_ev);
        srv->verify_ev = NULL;
    }
    if (srv->verify_on)
        pshm_verify_free(&srv->verify);
    srv->verify_on = false;
}
