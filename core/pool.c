#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

struct sk_pool {
	struct ev_loop *loop;
	ev_async wake; /* a worker finished something */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct sk_list todo;	 /* queued, not started (under mu) */
	struct sk_list finished; /* run() done, done() pending (under mu) */
	size_t pending;		 /* loop thread only */
	bool stop;		 /* under mu */
	atomic_size_t queued;	 /* jobs in todo, read by spinning workers */
	atomic_int spin_us;	 /* see sk_pool_set_spin */
	int n_threads;
	pthread_t *threads;
	char name[16];
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/*
 * Called with mu held, todo empty, right after a job: watch for the next
 * job for up to spin_us without the mutex, so a submit finds the worker
 * awake (no futex wake-up, no scheduler latency). Returns with mu held.
 */
static void spin_for_work(struct sk_pool *p)
{
	int us = atomic_load_explicit(&p->spin_us, memory_order_relaxed);
	int64_t until;

	if (us <= 0)
		return;
	pthread_mutex_unlock(&p->mu);
	until = mono_ns() + (int64_t)us * 1000;
	for (unsigned i = 1;; i++) {
		if (atomic_load_explicit(&p->queued, memory_order_acquire))
			break;
		cpu_relax();
		if ((i & 63) == 0 && mono_ns() >= until)
			break;
	}
	pthread_mutex_lock(&p->mu);
}

static void *worker_main(void *arg)
{
	struct sk_pool *p = arg;
	bool ran = false;

	pthread_setname_np(pthread_self(), p->name);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct sk_job *job;

		if (ran && sk_list_empty(&p->todo) && !p->stop)
			spin_for_work(p);
		while (sk_list_empty(&p->todo) && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		if (sk_list_empty(&p->todo))
			break; /* stopping and drained */
		job = sk_list_first(&p->todo, struct sk_job, link);
		sk_list_del(&job->link);
		atomic_fetch_sub_explicit(&p->queued, 1, memory_order_relaxed);
		pthread_mutex_unlock(&p->mu);
		job->run(job);
		ran = true;
		pthread_mutex_lock(&p->mu);
		sk_list_add_tail(&p->finished, &job->link);
		pthread_mutex_unlock(&p->mu);
		/* Outside the mutex: the loop, woken, takes it in reap(). */
		ev_async_send(p->loop, &p->wake);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Run done() for every finished job, on the loop thread. */
static void reap(struct sk_pool *p)
{
	struct sk_list done;

	sk_list_init(&done);
	pthread_mutex_lock(&p->mu);
	sk_list_splice(&done, &p->finished);
	pthread_mutex_unlock(&p->mu);
	while (!sk_list_empty(&done)) {
		struct sk_job *job = sk_list_first(&done, struct sk_job, link);

		sk_list_del(&job->link);
		p->pending--;
		job->done(job);
	}
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)loop;
	(void)revents;
	reap(sk_container_of(w, struct sk_pool, wake));
}

struct sk_pool *sk_pool_new(struct ev_loop *loop, int n_threads,
			    const char *name)
{
	struct sk_pool *p = sk_xcalloc(1, sizeof(*p));

	p->loop = loop;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	sk_list_init(&p->todo);
	sk_list_init(&p->finished);
	snprintf(p->name, sizeof(p->name), "skald-%s", name);
	ev_async_init(&p->wake, on_wake);
	ev_async_start(loop, &p->wake);
	/* The wake-up must not keep ev_run alive on its own. */
	ev_unref(loop);
	p->n_threads = n_threads;
	p->threads = sk_xcalloc((size_t)n_threads, sizeof(*p->threads));
	for (int i = 0; i < n_threads; i++) {
		int rc = pthread_create(&p->threads[i], NULL, worker_main, p);
		if (rc) {
			fprintf(stderr, "skald: cannot start %s thread: %s\n",
				p->name, strerror(rc));
			abort();
		}
	}
	return p;
}

void sk_pool_submit(struct sk_pool *p, struct sk_job *job)
{
	p->pending++;
	pthread_mutex_lock(&p->mu);
	sk_list_add_tail(&p->todo, &job->link);
	atomic_fetch_add_explicit(&p->queued, 1, memory_order_release);
	pthread_mutex_unlock(&p->mu);
	/*
	 * Signalled after unlocking, so the woken worker does not block on
	 * the mutex we still hold. With no worker parked on the condition
	 * (one is spinning), this makes no system call.
	 */
	pthread_cond_signal(&p->cv);
}

void sk_pool_set_spin(struct sk_pool *p, int spin_us)
{
	atomic_store_explicit(&p->spin_us, spin_us, memory_order_relaxed);
}

size_t sk_pool_pending(const struct sk_pool *p)
{
	return p->pending;
}

void sk_pool_free(struct sk_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	/* done() may submit follow-up jobs; run those inline. */
	for (;;) {
		reap(p);
		pthread_mutex_lock(&p->mu);
		if (sk_list_empty(&p->todo)) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		struct sk_job *job =
			sk_list_first(&p->todo, struct sk_job, link);
		sk_list_del(&job->link);
		atomic_fetch_sub_explicit(&p->queued, 1, memory_order_relaxed);
		pthread_mutex_unlock(&p->mu);
		job->run(job);
		pthread_mutex_lock(&p->mu);
		sk_list_add_tail(&p->finished, &job->link);
		pthread_mutex_unlock(&p->mu);
	}
	ev_ref(p->loop);
	ev_async_stop(p->loop, &p->wake);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->threads);
	free(p);
}
