/*
 * Worker threads for blocking work (fsync, sqlite commits, later Lua and
 * plugin jobs), with completion back on the event loop.
 *
 * A job's run() executes on a pool thread and must not touch loop-owned
 * state; its done() executes on the loop thread afterwards, where it may.
 * Jobs of a one-thread pool run in submission order, which is how a
 * serial writer (the log flusher, the offsets writer) is built.
 */
#ifndef SK_POOL_H
#define SK_POOL_H

#include <ev.h>

#include "list.h"

struct sk_job;

/* Runs on a pool thread. */
typedef void (*sk_job_run_fn)(struct sk_job *job);
/* Runs on the loop thread once run() returned; may free the job. */
typedef void (*sk_job_done_fn)(struct sk_job *job);

/* Embed in the caller's own struct; the pool never allocates for it. */
struct sk_job {
	struct sk_list link;
	sk_job_run_fn run;
	sk_job_done_fn done;
};

struct sk_pool;

/* Start n_threads threads named "skald-<name>" (for top and gdb). */
struct sk_pool *sk_pool_new(struct ev_loop *loop, int n_threads,
			    const char *name);
/* Queue a job (loop thread only). */
void sk_pool_submit(struct sk_pool *p, struct sk_job *job);
/*
 * After each job, a worker watches for the next one for up to spin_us
 * (0, the default: it parks at once) before parking. For a latency-bound
 * serial worker (the flusher) that is handed a job per request: the
 * submit then finds it awake, with no wake-up to wait for. Any thread.
 */
void sk_pool_set_spin(struct sk_pool *p, int spin_us);
/* Jobs submitted and not yet completed (done() not yet run). */
size_t sk_pool_pending(const struct sk_pool *p);
/*
 * Finish every queued job (run, then done on this thread), stop the
 * threads and free the pool. Safe with NULL.
 */
void sk_pool_free(struct sk_pool *p);

#endif
