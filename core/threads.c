/* core/threads.c - a parallel-for over an index range, and how many threads to use. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "core.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
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

/* The CPU time a cgroup folder allows, in CPUs rounded up, or 0 when it sets no limit or
 * cannot be read: cgroup v2's cpu.max ("QUOTA PERIOD", "max" for none) under `root`, or
 * v1's cpu.cfs_quota_us (-1 for none) and cpu.cfs_period_us. */
static int cgroup_cpus(const char *root, const char *dir, bool v1) {
    char path[4400], buf[64];
    long long quota = 0, period = 0;
    snprintf(path, sizeof path, "%s%s/%s", root, dir, v1 ? "cpu.cfs_quota_us" : "cpu.max");
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    bool ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (v1) {
        ok = ok && sscanf(buf, "%lld", &quota) == 1;
        snprintf(path, sizeof path, "%s%s/cpu.cfs_period_us", root, dir);
        f = ok ? fopen(path, "r") : NULL;
        ok = f && fgets(buf, sizeof buf, f) != NULL && sscanf(buf, "%lld", &period) == 1;
        if (f) fclose(f);
    } else {
        ok = ok && sscanf(buf, "%lld %lld", &quota, &period) == 2;
    }
    if (!ok || quota <= 0 || period <= 0) return 0;
    const long long n = (quota + period - 1) / period;
    return n > 4096 ? 4096 : (int)n;
}

/* The tightest limit of a cgroup folder and its ancestors (a container's quota often sits
 * on an ancestor, or on "/" inside its namespace). */
static int cgroup_chain(const char *root, const char *leaf, bool v1) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", strcmp(leaf, "/") ? leaf : "");
    int best = 0;
    for (;;) {
        const int n = cgroup_cpus(root, dir, v1);
        if (n > 0 && (best == 0 || n < best)) best = n;
        char *slash = strrchr(dir, '/');
        if (!slash) break;
        *slash = 0;
    }
    return best;
}

/* The cgroup CPU limit on this process, from /proc/self/cgroup: the unified hierarchy
 * ("0::PATH", cgroup v2) or v1's cpu controller ("N:cpu,cpuacct:PATH"). 0: none. */
static int cgroup_limit(void) {
    char line[4096];
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return 0;
    int best = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = 0;
        const char *ctrl = c1 + 1, *path = c2 + 1;
        int n = 0;
        if (!*ctrl) {
            n = cgroup_chain("/sys/fs/cgroup", path, false);
        } else {
            char list[256];
            snprintf(list, sizeof list, ",%s,", ctrl);
            if (strstr(list, ",cpu,")) {
                n = cgroup_chain("/sys/fs/cgroup/cpu", path, true);
                if (!n) n = cgroup_chain("/sys/fs/cgroup/cpu,cpuacct", path, true);
            }
        }
        if (n > 0 && (best == 0 || n < best)) best = n;
    }
    fclose(f);
    return best;
}

/* The CPUs this process may really use: those of its affinity mask (taskset, a container's
 * cpuset), capped by its cgroup's CPU quota (docker --cpus, a CI runner's limit). More
 * threads than that only wait for each other's time slices. */
int pare_default_threads(void) {
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n <= 0) {
        const long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    const int q = cgroup_limit();
    if (q > 0 && q < n) n = q;
    return n;
}

/* Workers get 8 MiB of stack whatever the platform's default (musl's is 128 KiB): the
 * evaluator's f32 product keeps a 128 KiB packed panel on its stack. */
static int start_worker(pthread_t *tid, void *(*fn)(void *), void *arg) {
    pthread_attr_t a;
    if (pthread_attr_init(&a)) return -1;
    pthread_attr_setstacksize(&a, (size_t)8 << 20);
    const int r = pthread_create(tid, &a, fn, arg);
    pthread_attr_destroy(&a);
    return r;
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
        if (start_worker(&tids[t], pf_run, &workers[t]) != 0) break;
        started = t;
    }
    workers[0] = (pf_worker){&sh, 0};
    pf_run(&workers[0]);
    for (int t = 1; t <= started; t++) pthread_join(tids[t], NULL);
}

/* ------------------------------------------------------------------------ pool */

/* Spin iterations (with a pause each) before a worker or the caller sleeps: 0.2-0.3 ms on
 * the test VM (a pause is ~140 cycles on recent Intel cores, ~10 on older ones),
 * longer than the gap between two parallel-fors of the evaluator, much shorter than
 * anything a user would notice as a busy CPU. */
#define POOL_SPIN 20000

struct pare_pool {
    int n_threads;
    pthread_t *tids;
    pf_worker *workers;
    pf_shared job;           /* the current job; written by the caller before gen moves */
    atomic_uint gen;         /* bumped once per job */
    atomic_int active;       /* workers not yet done with the current job */
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *pool_worker(void *arg) {
    pf_worker *w = arg;
    pare_pool *p = (pare_pool *)((char *)w->sh - offsetof(pare_pool, job));
    unsigned seen = 0;
    for (;;) {
        for (int s = 0; s < POOL_SPIN && atomic_load(&p->gen) == seen && !atomic_load(&p->stop); s++) cpu_relax();
        if (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) {
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->work, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load(&p->gen);
        pf_run(w);
        if (atomic_fetch_sub(&p->active, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

pare_pool *pare_pool_new(int n_threads) {
    if (n_threads <= 0) n_threads = pare_default_threads();
    if (n_threads > 256) n_threads = 256;
    pare_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = 1;
    atomic_init(&p->gen, 0);
    atomic_init(&p->active, 0);
    atomic_init(&p->stop, false);
    atomic_init(&p->job.next, 0);
    p->tids = calloc((size_t)n_threads, sizeof *p->tids);
    p->workers = calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->tids || !p->workers || pthread_mutex_init(&p->mu, NULL)) goto fail_alloc;
    if (pthread_cond_init(&p->work, NULL)) goto fail_mu;
    if (pthread_cond_init(&p->done, NULL)) goto fail_work;
    for (int t = 1; t < n_threads; t++) {
        p->workers[t] = (pf_worker){&p->job, t};
        if (start_worker(&p->tids[t], pool_worker, &p->workers[t]) != 0) break;
        p->n_threads = t + 1;
    }
    p->workers[0] = (pf_worker){&p->job, 0};
    return p;
fail_work:
    pthread_cond_destroy(&p->work);
fail_mu:
    pthread_mutex_destroy(&p->mu);
fail_alloc:
    free(p->tids);
    free(p->workers);
    free(p);
    return NULL;
}

void pare_pool_free(pare_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->n_threads; t++) pthread_join(p->tids[t], NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
    free(p->tids);
    free(p->workers);
    free(p);
}

int pare_pool_threads(const pare_pool *p) { return p ? p->n_threads : 1; }

void pare_pool_for(pare_pool *p, int64_t n, pare_parallel_fn fn, void *ctx) {
    if (n <= 0) return;
    if (!p || p->n_threads == 1 || n == 1) {
        for (int64_t i = 0; i < n; i++) fn(ctx, i, 0);
        return;
    }
    p->job.fn = fn;
    p->job.ctx = ctx;
    p->job.n = n;
    atomic_store(&p->job.next, 0);
    atomic_store(&p->active, p->n_threads - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: the job fields above are visible before it */
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    pf_run(&p->workers[0]);
    for (int s = 0; s < POOL_SPIN && atomic_load(&p->active) != 0; s++) cpu_relax();
    if (atomic_load(&p->active) != 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->active) != 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
