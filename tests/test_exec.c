/* SPDX-License-Identifier: MIT */
/*
 * test_exec: poold's choice of a slot for HELLO (pd_registry_slot_for) when
 * the pid already holds one. The same image (a second pool, or HELLO again
 * after a restart of poold, or a client that does not say its image) keeps
 * its slot; another image of the same pid and start time follows an exec:
 * the old image's records and in-use blocks are reclaimed at once, counted
 * as an exit (procs_exited), never as a crash, and the books stay exact.
 * Runs poold's server in-process on a temporary segment; this test process
 * plays the worker (its pid, a live one, is the one HELLO names).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "poold.h"

typedef struct st {
    struct event_base *base;
    pd_server_t srv;
    char shm[64];
    char dir[64];
} st_t;

static int setup(void **state)
{
    st_t *st = calloc(1, sizeof(*st));
    assert_non_null(st);
    snprintf(st->shm, sizeof(st->shm), "/poold-test-exec-%d", (int)getpid());
    snprintf(st->dir, sizeof(st->dir), "/tmp/pdexec-XXXXXX");
    assert_non_null(mkdtemp(st->dir));
    st->base = event_base_new();
    assert_non_null(st->base);
    pd_config_t cfg;
    pd_config_defaults(&cfg);
    snprintf(cfg.shm_name, sizeof(cfg.shm_name), "%s", st->shm);
    snprintf(cfg.socket, sizeof(cfg.socket), "%s/poold.sock", st->dir);
    cfg.size = 4u << 20;
    cfg.max_threads = 8;
    cfg.max_procs = 8;
    cfg.log_level = PD_LOG_ERROR;
    pd_log_set_level(getenv("PD_TEST_LOG") ? PD_LOG_DEBUG : PD_LOG_ERROR);
    char err[256];
    if (pd_server_init(&st->srv, &cfg, st->base, err, sizeof(err)) < 0 ||
        pd_segment_open(&st->srv, err, sizeof(err)) < 0)
        fail_msg("poold in-process: %s", err);
    *state = st;
    return 0;
}

static int teardown(void **state)
{
    st_t *st = *state;
    pd_server_free(&st->srv);
    event_base_free(st->base);
    pshm_os_unlink(st->shm);
    rmdir(st->dir);
    free(st);
    return 0;
}

static void check_books(const pshm_seg_t *s)
{
    char err[256] = "";
    if (pshm_check(s, err, sizeof(err)) != 0)
        fail_msg("books: %s", err);
}

/* What a worker image leaves in its slot when exec ends it: a thread record
 * with cached blocks and a carving range, and blocks in use. */
static void work_as(pshm_seg_t *s, uint32_t slot, uint32_t c, int in_use)
{
    struct pshm_thread *t = pshm_thread_claim(s, slot, (int32_t)getpid());
    assert_non_null(t);
    struct pshm_tclass *tc = &t->cls[c];
    assert_int_equal(pshm_rec_install(s, t, c), 0);
    uint8_t own = pshm_own_val(slot);
    for (int i = 0; i < in_use + 3; i++) {
        /* Carve one block as pool_malloc does: owner byte, then the
         * cursor (one store carves and counts it). */
        uint64_t w = pa_load_relaxed(&tc->fresh_w); /* relaxed: single-threaded */
        uint32_t idx = (uint32_t)w;
        assert_true(idx < tc->fresh_end);
        pa_store_relaxed(pshm_owner_idx(s, c, idx), own);
        pa_store_relaxed(&tc->fresh_w, w + (UINT64_C(1) << 32) + (s->block_size[c] >> 3));
        if (i >= in_use) { /* freed into the cache, as pool_free does */
            uint32_t n = pa_load_relaxed(&tc->count);
            tc->slots[n + 1] = idx;
            pa_store_relaxed(&tc->count, n + 1);
            pa_store_relaxed(&tc->frees, pa_load_relaxed(&tc->frees) + 1);
            pa_store_relaxed(pshm_owner_idx(s, c, idx), PSHM_OWN_FREE);
        }
    }
}

static uint64_t threads_of(const pshm_seg_t *s, uint32_t slot)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < s->max_threads; i++)
        n += pa_load_relaxed(&pshm_thread_at(s, i)->owner) == slot + 1; /* relaxed: at rest */
    return n;
}

static void test_exec_same_image_keeps_its_slot(void **state)
{
    st_t *st = *state;
    pshm_seg_t *s = &st->srv.seg;
    pid_t me = getpid();
    uint64_t start = pshm_os_proc_start_time(me);
    bool reused;
    int slot = pd_registry_slot_for(&st->srv, me, start, 1234, &reused);
    assert_true(slot >= 0);
    assert_false(reused);
    work_as(s, (uint32_t)slot, 1, 5);
    /* A second pool of the same image, and a client that does not say. */
    assert_int_equal(pd_registry_slot_for(&st->srv, me, start, 1234, &reused), slot);
    assert_true(reused);
    assert_int_equal(pd_registry_slot_for(&st->srv, me, start, 0, &reused), slot);
    assert_true(reused);
    assert_int_equal(threads_of(s, (uint32_t)slot), 1);
    assert_int_equal(pa_load_relaxed(&s->hdr->procs_exited), 0);
    /* The process gives its blocks back and detaches, as pool_detach does. */
    pshm_release_result_t res = {0};
    pshm_proc_detach(s, (uint32_t)slot, false, &res);
    check_books(s);
}

static void test_exec_new_image_reclaims_the_old_one(void **state)
{
    st_t *st = *state;
    pshm_seg_t *s = &st->srv.seg;
    pid_t me = getpid();
    uint64_t start = pshm_os_proc_start_time(me);
    bool reused;
    int slot = pd_registry_slot_for(&st->srv, me, start, 1111, &reused);
    assert_true(slot >= 0);
    work_as(s, (uint32_t)slot, 2, 7);
    assert_non_null(pd_registry_add(&st->srv, (uint32_t)slot, me, start, "bash"));
    uint64_t in_use_before = pa_load_relaxed(&s->hdr->reclaimed_in_use); /* relaxed: at rest */

    /* The same pid and start time, another image: an exec. */
    int next = pd_registry_slot_for(&st->srv, me, start, 2222, &reused);
    assert_true(next >= 0);
    assert_false(reused);
    assert_int_equal(pshm_proc_image(s, (uint32_t)next), 2222);
    assert_int_equal(threads_of(s, (uint32_t)next), 0); /* the old records went back */
    assert_int_equal(pa_load_relaxed(&s->hdr->procs_exited), 1);
    assert_int_equal(pa_load_relaxed(&s->hdr->procs_reclaimed), 0);
    assert_int_equal(pa_load_relaxed(&s->hdr->reclaimed_in_use) - in_use_before, 7);
    /* The old image's registration went with it. */
    pd_proc_t *old = pd_registry_get(&st->srv, (uint32_t)slot);
    assert_true(old == NULL || strcmp(old->name, "bash") != 0);
    pshm_release_result_t res = {0};
    pshm_proc_detach(s, (uint32_t)next, false, &res);
    check_books(s);
}

/* HELLO's image= on the wire: encoded when set, parsed back, 0 and
 * repeats refused. */
static void test_exec_hello_image_on_the_wire(void **state)
{
    (void)state;
    pproto_req_t req = {.verb = PPROTO_HELLO, .abi = 3, .pid = 42, .image = 4000000000u};
    char line[PPROTO_MAX_LINE + 1];
    int n = pproto_encode_request(line, sizeof(line), &req);
    assert_true(n > 0);
    assert_non_null(strstr(line, " image=4000000000"));
    pproto_req_t back;
    assert_int_equal(pproto_parse_request(line, (size_t)n, &back, NULL), 0);
    assert_int_equal(back.image, 4000000000u);
    static const char *const bad[] = {
        "HELLO abi=3 pid=42 image=0\n",
        "HELLO abi=3 pid=42 image=4294967296\n",
        "HELLO abi=3 pid=42 image=1 image=2\n",
        "HELLO abi=3 pid=42 image=x\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_true(pproto_parse_request(bad[i], strlen(bad[i]), &back, NULL) < 0);
    assert_int_equal(pproto_parse_request("HELLO abi=3 pid=42\n", 19, &back, NULL), 0);
    assert_int_equal(back.image, 0); /* absent: unknown */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exec_hello_image_on_the_wire),
        cmocka_unit_test_setup_teardown(test_exec_same_image_keeps_its_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_new_image_reclaims_the_old_one, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
