/* SPDX-License-Identifier: MIT */
/*
 * pshm_crash.c: crash points, for tests only (CMake option
 * POOL_CRASH_POINTS, which no release build sets; shm/pshm_atomic.h).
 *
 * Every shared store of the shm layer passes a point after it takes effect.
 * A test arms one thread (pshm_crash_arm): its points are counted, and at
 * the chosen one the whole process is killed with SIGKILL, as a crash at
 * that instruction would end it; other threads' points are not counted.
 * Armed with 0, the thread only counts, so that a test learns how many
 * points an operation has and then dies at each one in turn
 * (tests/test_crashpoints.c).
 */
#include <signal.h>
#include <unistd.h>

#include "pshm_atomic.h"

/* The calling thread's arming: < 0 off, 0 count only, n > 0 die at n. */
static _Thread_local long crash_at = -1;
static _Thread_local long crash_seen;

void pshm_crash_arm(long n)
{
    crash_seen = 0;
    crash_at = n;
}

long pshm_crash_points(void)
{
    return crash_seen;
}

void pshm_crash_point_(void)
{
    if (crash_at < 0)
        return;
    if (++crash_seen != crash_at)
        return;
    /* SIGKILL cannot be caught or blocked: the process ends here, every
     * thread at whatever instruction it was running. */
    kill(getpid(), SIGKILL);
    _exit(86); /* not reached */
}
