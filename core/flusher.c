#include "flusher.h"

#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "say.h"

/* One round: the syncs it covers, prepared on the loop thread. */
struct flush_round {
	struct sk_job job;
	struct sk_flusher *f;
	uint64_t id;
	struct sk_log_sync *syncs;
	size_t n;
	int rc;
};

static void start_round(struct sk_flusher *f);

static void round_run(struct sk_job *job)
{
	struct flush_round *r = sk_container_of(job, struct flush_round, job);

	for (size_t i = 0; i < r->n; i++)
		if (sk_log_sync_run(&r->syncs[i]) < 0 && r->rc == 0)
			r->rc = r->syncs[i].rc;
}

/* After a failed sync, stop appends to whichever partition it hit. */
static void check_all(struct sk_broker *b)
{
	size_t n;
	struct sk_topic **all = sk_topics_list(&b->topics, &n);

	for (size_t i = 0; i < n; i++)
		for (int32_t p = 0; p < all[i]->n_parts; p++)
			sk_partition_check_sync(all[i]->parts[p]->log);
	free(all);
}

static void round_done(struct sk_job *job)
{
	struct flush_round *r = sk_container_of(job, struct flush_round, job);
	struct sk_flusher *f = r->f;

	for (size_t i = 0; i < r->n; i++)
		sk_log_sync_end(&r->syncs[i]);
	if (r->rc) {
		sk_error("flush failed: %s", strerror(-r->rc));
		check_all(f->b);
	}
	f->running = false;
	/* Waiters are in registration order, hence in order of need. */
	while (!sk_list_empty(&f->waiters)) {
		struct sk_flush_wait *w = sk_list_first(&f->waiters,
							struct sk_flush_wait,
							link);
		if (w->need > r->id)
			break;
		sk_list_del(&w->link);
		w->done(w, r->rc);
	}
	free(r->syncs);
	free(r);
	if (!sk_list_empty(&f->waiters))
		start_round(f);
}

static void start_round(struct sk_flusher *f)
{
	struct flush_round *r = sk_xcalloc(1, sizeof(*r));
	size_t cap = 0;

	r->f = f;
	r->id = ++f->started;
	while (!sk_list_empty(&f->dirty)) {
		struct sk_tpart *tp = sk_list_first(&f->dirty, struct sk_tpart,
						    flush_link);
		sk_list_del(&tp->flush_link);
		if (r->n == cap) {
			cap = cap ? cap * 2 : 8;
			r->syncs = sk_xrealloc(r->syncs,
					       cap * sizeof(*r->syncs));
		}
		if (sk_partition_sync_begin(tp->log, &r->syncs[r->n]))
			r->n++;
	}
	r->job.run = round_run;
	r->job.done = round_done;
	f->running = true;
	sk_pool_submit(f->pool, &r->job);
}

void sk_flusher_init(struct sk_flusher *f, struct sk_broker *b)
{
	memset(f, 0, sizeof(*f));
	f->b = b;
	sk_list_init(&f->dirty);
	sk_list_init(&f->waiters);
	f->pool = sk_pool_new(b->loop, 1, "flusher");
}

void sk_flusher_fini(struct sk_flusher *f)
{
	if (!f->pool)
		return;
	/* Runs the round in flight and any round its completion starts. */
	sk_pool_free(f->pool);
	f->pool = NULL;
	while (!sk_list_empty(&f->dirty))
		sk_list_del(f->dirty.next);
}

void sk_flusher_mark(struct sk_flusher *f, struct sk_tpart *tp)
{
	if (!sk_list_linked(&tp->flush_link))
		sk_list_add_tail(&f->dirty, &tp->flush_link);
}

void sk_flusher_forget(struct sk_flusher *f, struct sk_tpart *tp)
{
	(void)f;
	sk_list_del(&tp->flush_link);
}

void sk_flusher_wait(struct sk_flusher *f, struct sk_flush_wait *w,
		     sk_flush_done_fn done)
{
	/* The next round to start collects everything marked until then. */
	w->need = f->started + 1;
	w->done = done;
	sk_list_add_tail(&f->waiters, &w->link);
	if (!f->running)
		start_round(f);
}

void sk_flusher_cancel(struct sk_flush_wait *w)
{
	sk_list_del(&w->link);
}
