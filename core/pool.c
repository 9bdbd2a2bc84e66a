#include "pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	int n_threads;
	pthread_t *threads;
	char name[16];
};

static void *worker_main(void *arg)
{
	struct sk_pool *p = arg;

	pthread_setname_np(pthread_self(), p->name);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct sk_job *job;

		while (sk_list_empty(&p->todo) && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		if (sk_list_empty(&p->todo))
			break; /* stopping and drained */
		job = sk_list_first(&p->todo, struct sk_job, link);
		sk_list_del(&job->link);
		pthread_mutex_unlock(&p->mu);
		job->run(job);
		pthread_mutex_lock(&p->mu);
		sk_list_add_tail(&p->finished, &job->link);
		ev_async_send(p->loop, &p->wake);
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
	pthread_mutex_unlock(&p->mu);
	/* Signalled after unlocking, so the woken worker does not block on
	 * the mutex we still hold. */
	pthread_cond_signal(&p->cv);
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
