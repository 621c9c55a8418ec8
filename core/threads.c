/* core/threads.c - a parallel-for over an index range. */
#include "core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
    pare_parallel_fn fn;
    void *ctx;
    int64_t n;
    atomic_llong next; /* the next index to hand out */
} pf_shared;

typedef struct {
    pf_shared *sh;
    int index;
} pf_worker;

static void *pf_run(void *arg) {
    pf_worker *w = arg;
    pf_shared *sh = w->sh;
    for (;;) {
        int64_t i = (int64_t)atomic_fetch_add(&sh->next, 1);
        if (i >= sh->n) break;
        sh->fn(sh->ctx, i, w->index);
    }
    return NULL;
}

int pare_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void pare_parallel_for(int n_threads, int64_t n, pare_parallel_fn fn, void *ctx) {
    if (n_threads <= 0) n_threads = pare_default_threads();
    if (n_threads > 256) n_threads = 256;
    if ((int64_t)n_threads > n) n_threads = (int)(n > 0 ? n : 1);
    pf_shared sh = {.fn = fn, .ctx = ctx, .n = n};
    atomic_init(&sh.next, 0);
    pf_worker workers[256];
    pthread_t tids[256];
    int started = 0;
    for (int t = 1; t < n_threads; t++) {
        workers[t] = (pf_worker){&sh, t};
        if (pthread_create(&tids[t], NULL, pf_run, &workers[t]) != 0) break;
        started = t;
    }
    workers[0] = (pf_worker){&sh, 0};
    pf_run(&workers[0]);
    for (int t = 1; t <= started; t++) pthread_join(tids[t], NULL);
}
