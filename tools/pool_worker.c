/* SPDX-License-Identifier: MIT */
/*
 * pool_worker: a worker process that runs the seed's burn-after-reading
 * workload through libpoolclient, for the main job, the end-to-end tests and
 * anyone who wants to see poold under load.
 *
 * Each iteration starts 10 threads with block sizes 50, 50, 100, 100, 100,
 * 500, 500, 1000, 1000, 2000; each thread, `rounds` times, allocates a
 * block, fills it with its tag, checks the tag, and frees it (--hold K keeps
 * the last K blocks per thread alive to force reuse across threads). At the
 * end it prints one line: `pool_worker pid=.. allocs=.. frees=.. errors=..`
 * and exits 0 only when every allocation succeeded and every tag was intact.
 *
 * --leak, --fill and --double-free run no workload: they provoke poold's
 * warnings (docs/stats.md, "Warnings"), for the tests and for a look at
 * `poolctl warnings`, until SIGTERM or --seconds. SIGUSR1 ends the
 * provocation: the worker frees every block it holds, stops, and waits.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "poolclient.h"

static const size_t sizes[10] = {50, 50, 100, 100, 100, 500, 500, 1000, 1000, 2000};

struct cfg {
    pool_t *pool;
    long iterations;
    double seconds;
    int rounds;
    int hold;
    int burst;
};

static atomic_ullong n_allocs, n_frees, n_errors;
static atomic_int stop_flag, calm_flag;

struct targ {
    const struct cfg *cfg;
    size_t size;
    unsigned char tag;
};

static void *run_thread(void *p)
{
    struct targ *a = p;
    unsigned char *held[64] = {0};
    unsigned long long allocs = 0, frees = 0, errors = 0;
    /* A burst first: allocate, then free, `burst` blocks; they stay in the
     * thread's cache while the loop below reuses the top one. */
    unsigned char *burst[64];
    for (int i = 0; i < a->cfg->burst; i++) {
        burst[i] = pool_malloc(a->cfg->pool, a->size);
        if (burst[i])
            allocs++;
        else
            errors++;
    }
    for (int i = a->cfg->burst - 1; i >= 0; i--)
        if (burst[i] && pool_free(a->cfg->pool, burst[i], a->size))
            frees++;
    for (int r = 0; r < a->cfg->rounds; r++) {
        unsigned char *b = pool_malloc(a->cfg->pool, a->size);
        if (!b) {
            errors++;
            continue;
        }
        allocs++;
        memset(b, a->tag, a->size);
        if (a->cfg->hold > 0) {
            int slot = r % a->cfg->hold;
            unsigned char *old = held[slot];
            held[slot] = b;
            b = old;
            if (!b)
                continue;
        }
        for (size_t i = 0; i < a->size; i++)
            if (b[i] != a->tag) {
                errors++;
                break;
            }
        if (pool_free(a->cfg->pool, b, a->size))
            frees++;
        else
            errors++;
    }
    for (int i = 0; i < a->cfg->hold; i++)
        if (held[i]) {
            if (pool_free(a->cfg->pool, held[i], a->size))
                frees++;
            else
                errors++;
        }
    atomic_fetch_add(&n_allocs, allocs);
    atomic_fetch_add(&n_frees, frees);
    atomic_fetch_add(&n_errors, errors);
    return NULL;
}

static void on_term(int sig)
{
    (void)sig;
    atomic_store(&stop_flag, 1);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void on_usr1(int sig)
{
    (void)sig;
    atomic_store(&calm_flag, 1);
}

/* What to provoke: blocks leaked a second, fill the pool, double frees a
 * second; block size of each. */
struct provoke {
    long leak, double_free;
    int fill;
    size_t size;
};

/* The blocks held, to free them all on SIGUSR1. */
struct held {
    void **p;
    size_t n, cap;
};

static int held_add(struct held *h, void *b)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 1024;
        void **np = realloc(h->p, cap * sizeof(*np));
        if (!np)
            return -1;
        h->p = np;
        h->cap = cap;
    }
    h->p[h->n++] = b;
    return 0;
}

/* Ten steps a second until SIGTERM or `seconds`: leak, fill, double free;
 * after SIGUSR1 free what is held and idle. */
static void provoke(pool_t *pool, const struct provoke *pv, double seconds)
{
    struct held h = {0};
    double t0 = now_s();
    bool calm = false;
    while (!atomic_load(&stop_flag) && (seconds <= 0 || now_s() - t0 < seconds)) {
        if (!calm && atomic_load(&calm_flag)) {
            for (size_t i = 0; i < h.n; i++)
                if (pool_free(pool, h.p[i], pv->size))
                    atomic_fetch_add(&n_frees, 1);
            h.n = 0;
            calm = true;
            printf("pool_worker pid=%d calm\n", (int)getpid());
            fflush(stdout);
        }
        if (!calm) {
            for (long i = 0; i < (pv->leak + 9) / 10; i++) {
                void *b = pool_malloc(pool, pv->size);
                if (b && held_add(&h, b) == 0)
                    atomic_fetch_add(&n_allocs, 1);
            }
            /* Fill: allocate until refused, then keep asking (each refusal
             * counts as exhausted). */
            for (int i = 0; pv->fill && i < 100000; i++) {
                void *b = pool_malloc(pool, pv->size);
                if (!b || held_add(&h, b) < 0)
                    break;
                atomic_fetch_add(&n_allocs, 1);
            }
            for (long i = 0; i < (pv->double_free + 9) / 10; i++) {
                void *b = pool_malloc(pool, pv->size);
                if (!b)
                    break;
                atomic_fetch_add(&n_allocs, 1);
                if (pool_free(pool, b, pv->size))
                    atomic_fetch_add(&n_frees, 1);
                /* The second free is refused and counted by the pool as
                 * an invalid free: that is the point. */
                (void)pool_free(pool, b, pv->size);
            }
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (size_t i = 0; i < h.n; i++)
        if (pool_free(pool, h.p[i], pv->size))
            atomic_fetch_add(&n_frees, 1);
    free(h.p);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pool_worker [--socket PATH | --embedded] [--iterations N | --seconds S]\n"
            "                   [--rounds N] [--hold K] [--detach]\n"
            "  Runs the seed's workload (10 threads per iteration) through libpoolclient.\n"
            "  --socket PATH   attach to poold there (default $POOLD_SOCKET, else %s)\n"
            "  --embedded      no daemon: a private embedded pool\n"
            "  --iterations N  iterations of 10 threads (default 50)\n"
            "  --seconds S     run iterations until S seconds have passed (or SIGTERM)\n"
            "  --rounds N      allocations per thread per iteration (default 2000)\n"
            "  --hold K        keep the last K blocks of each thread alive (default 0)\n"
            "  --burst K       each thread first allocates and frees K blocks (default 0)\n"
            "  --no-detach     exit without pool_detach (as a crashing worker would)\n"
            "Provoking poold's warnings (no workload; until SIGTERM or --seconds; SIGUSR1\n"
            "frees every block held and stops provoking):\n"
            "  --leak N        allocate N blocks a second and keep them\n"
            "  --fill          allocate until the pool refuses, and keep asking\n"
            "  --double-free N free N blocks a second twice\n"
            "  --size BYTES    block size of these (default 1000)\n",
            POOL_DEFAULT_SOCKET);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"socket", required_argument, NULL, 's'},
                                         {"embedded", no_argument, NULL, 'e'},
                                         {"iterations", required_argument, NULL, 'i'},
                                         {"seconds", required_argument, NULL, 't'},
                                         {"rounds", required_argument, NULL, 'r'},
                                         {"hold", required_argument, NULL, 'k'},
                                         {"no-detach", no_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"burst", required_argument, NULL, 'b'},
                                         {"leak", required_argument, NULL, 'L'},
                                         {"fill", no_argument, NULL, 'F'},
                                         {"double-free", required_argument, NULL, 'D'},
                                         {"size", required_argument, NULL, 'S'},
                                         {NULL, 0, NULL, 0}};
    struct provoke pv = {.size = 1000};
    struct cfg cfg = {.iterations = 50, .rounds = 2000};
    const char *sock = NULL;
    int embedded = 0, detach = 1, c;
    while ((c = getopt_long(argc, argv, "s:ei:t:r:k:nhb:", opts, NULL)) != -1) {
        switch (c) {
        case 's': sock = optarg; break;
        case 'e': embedded = 1; break;
        case 'i': cfg.iterations = atol(optarg); break;
        case 't': cfg.seconds = atof(optarg); break;
        case 'r': cfg.rounds = atoi(optarg); break;
        case 'k': cfg.hold = atoi(optarg); break;
        case 'n': detach = 0; break;
        case 'b': cfg.burst = atoi(optarg); break;
        case 'L': pv.leak = atol(optarg); break;
        case 'F': pv.fill = 1; break;
        case 'D': pv.double_free = atol(optarg); break;
        case 'S': pv.size = (size_t)atol(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (cfg.rounds <= 0 || cfg.hold < 0 || cfg.hold > 64 || cfg.iterations < 0 || cfg.burst < 0 ||
        cfg.burst > 64 || pv.leak < 0 || pv.double_free < 0 || pv.size == 0) {
        usage(stderr);
        return 2;
    }
    cfg.pool = embedded ? pool_open_embedded(0) : pool_attach(sock);
    if (!cfg.pool) {
        fprintf(stderr, "pool_worker: %s\n", pool_last_error());
        return 3;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGUSR1, on_usr1);
    double t0 = now_s();
    long it = 0;
    if (pv.leak || pv.fill || pv.double_free) {
        printf("pool_worker pid=%d provoking\n", (int)getpid());
        fflush(stdout);
        provoke(cfg.pool, &pv, cfg.seconds);
    }
    for (; !(pv.leak || pv.fill || pv.double_free); it++) {
        if (atomic_load(&stop_flag))
            break;
        if (cfg.seconds > 0 ? now_s() - t0 >= cfg.seconds : it >= cfg.iterations)
            break;
        pthread_t t[10];
        struct targ args[10];
        for (int i = 0; i < 10; i++) {
            args[i] = (struct targ){&cfg, sizes[i], (unsigned char)(0x30 + i + (it % 7) * 10)};
            if (pthread_create(&t[i], NULL, run_thread, &args[i]) != 0) {
                fprintf(stderr, "pool_worker: pthread_create: %s\n", strerror(errno));
                return 1;
            }
        }
        for (int i = 0; i < 10; i++)
            pthread_join(t[i], NULL);
    }
    double dt = now_s() - t0;
    unsigned long long e = atomic_load(&n_errors);
    printf("pool_worker pid=%d shared=%d iterations=%ld allocs=%llu frees=%llu errors=%llu "
           "seconds=%.2f\n",
           (int)getpid(), pool_is_shared(cfg.pool) ? 1 : 0, it, atomic_load(&n_allocs),
           atomic_load(&n_frees), e, dt);
    fflush(stdout);
    if (detach)
        pool_detach(cfg.pool);
    else
        _exit(e ? 1 : 0);
    return e ? 1 : 0;
}
