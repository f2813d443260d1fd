/* SPDX-License-Identifier: MIT */
/*
 * test_exit: how a process's end is counted. An embedded pool is shared
 * with forked children; each child takes a slot, allocates (keeping some
 * blocks in use and some cached) and ends one way; the parent's pool_stats()
 * reclaims the dead slots (as poold does for an attached pool) and the
 * counters must say: exit() and a return through the destructors count in
 * procs_exited, pool_detach too; _exit() without the preload library (no
 * destructor runs), SIGKILL and abort() are crashes, in procs_reclaimed.
 * Every end gives every block back: the books are exact after each.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool_test.h"

enum end { END_EXIT, END_UNDERSCORE_EXIT, END_KILL, END_ABORT, END_DETACH };

/* The child's life: blocks in use and cached, then its end. Never returns. */
static void child(pool_t *pool, enum end how, int ready_fd)
{
    for (int i = 0; i < 200; i++) {
        void *p = pool_malloc(pool, 64 + (size_t)(i % 5) * 100);
        if (!p)
            _exit(3);
        memset(p, 0xab, 64);
        if (i % 3 != 0)
            (void)pool_free(pool, p, 0); /* cached; the rest stay in use */
    }
    switch (how) {
    case END_EXIT: exit(0);
    case END_UNDERSCORE_EXIT: _exit(0);
    case END_ABORT: signal(SIGABRT, SIG_DFL); abort();
    case END_DETACH: pool_detach(pool); _exit(0);
    case END_KILL: break;
    }
    (void)!write(ready_fd, "r", 1);
    for (;;)
        pause();
}

/* Run one child that ends `how`, then reclaim it from the parent. */
static void run_child(pool_t *pool, enum end how)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child(pool, how, fds[1]);
    }
    close(fds[1]);
    if (how == END_KILL) {
        char c;
        assert_int_equal(read(fds[0], &c, 1), 1);
        kill(pid, SIGKILL);
    }
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (how == END_EXIT || how == END_UNDERSCORE_EXIT || how == END_DETACH)
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    pool_stats_t st;
    assert_int_equal(pool_stats(pool, &st), 0); /* reclaims the dead slot */
    assert_int_equal(st.procs_attached, 0);
}

static void test_exit_ends_are_counted_apart_from_crashes(void **state)
{
    pool_t *pool = *state;
    static const struct {
        enum end how;
        uint64_t exited, crashed; /* totals after this end */
    } steps[] = {
        {END_EXIT, 1, 0},  {END_UNDERSCORE_EXIT, 1, 1}, {END_KILL, 1, 2},
        {END_ABORT, 1, 3}, {END_DETACH, 2, 3},          {END_EXIT, 3, 3},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        run_child(pool, steps[i].how);
        pool_stats_t st;
        assert_int_equal(pool_stats(pool, &st), 0);
        if (st.procs_exited != steps[i].exited || st.procs_reclaimed != steps[i].crashed)
            fail_msg("after end %zu (kind %d): procs_exited %llu (want %llu), procs_reclaimed "
                     "%llu (want %llu)",
                     i, (int)steps[i].how, (unsigned long long)st.procs_exited,
                     (unsigned long long)steps[i].exited, (unsigned long long)st.procs_reclaimed,
                     (unsigned long long)steps[i].crashed);
        assert_int_equal(st.bytes_in_use, 0);
        pool_test_check(pool); /* every block back, counted by walking */
    }
}

/* A slot marked at exit but reclaimed while its mark is garbage (a corrupt
 * word) counts as a crash: only the two known ends count as exits. */
static void test_exit_unknown_mark_is_a_crash(void **state)
{
    pool_t *pool = *state;
    pshm_seg_t *s = &pool->seg;
    int slot = pshm_proc_claim(s, 1, 1, PSHM_VIA_DIRECT); /* pid 1 never dies: reclaimed by hand */
    assert_true(slot >= 0);
    pshm_proc_note_end(s, (uint32_t)slot, 77);
    pshm_reclaimed_t r;
    assert_int_equal(pshm_proc_reclaim(s, (uint32_t)slot, NULL, &r), 0);
    assert_int_equal(r.ended, PSHM_END_NONE);
    pool_stats_t st;
    assert_int_equal(pool_stats(pool, &st), 0);
    assert_int_equal(st.procs_reclaimed, 1);
    assert_int_equal(st.procs_exited, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exit_ends_are_counted_apart_from_crashes,
                                        pool_test_setup, pool_test_teardown),
        cmocka_unit_test_setup_teardown(test_exit_unknown_mark_is_a_crash, pool_test_setup,
                                        pool_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
