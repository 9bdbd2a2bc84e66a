#include "flusher.h"

#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "say.h"

/*
 * After a round, the flusher thread watches this long for the next one
 * before parking: with one record in flight, the next request arrives
 * within a client round trip, and then finds the thread awake (a parked
 * thread costs a futex wake-up and, on a VM, an idle vCPU's wake-up
 * latency: tens of µs). Bounded, so an idle broker idles.
 */
#define SK_FLUSHER_SPIN_US 300

/* One round: the syncs it covers, prepared on the loop thread. */
struct flush_round {
	struct sk_job job;
	struct sk_flusher *f;
	uint64_t id;
	struct sk_log_sync *syncs;
	size_t n, cap;
	int rc;
	bool ckpt; /* a checkpoint round */
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

	for (size_t i = 0; i < r->n; i++) {
		f->syncs += r->syncs[i].rc == 0;
		sk_log_sync_end(&r->syncs[i]);
	}
	if (r->rc) {
		sk_error("flush failed: %s", strerror(-r->rc));
		check_all(f->b);
	}
	f->checkpoints += r->ckpt;
	f->running = false;
	/* Waiters are in registration order, hence in order of need. */
	while (!sk_list_empty(&f->waiters)) {
		struct sk_flush_wait *w =
			sk_list_first(&f->waiters, struct sk_flush_wait, link);
		if (w->need > r->id)
			break;
		sk_list_del(&w->link);
		w->done(w, r->rc);
	}
	free(r->syncs);
	free(r);
	if (!sk_list_empty(&f->waiters) || !sk_list_empty(&f->dirty) ||
	    f->ckpt_due)
		start_round(f);
}

/* Room for one more sync in r. */
static struct sk_log_sync *next_sync(struct flush_round *r)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 8;
		r->syncs = sk_xrealloc(r->syncs, r->cap * sizeof(*r->syncs));
	}
	return &r->syncs[r->n];
}

/* tp goes into a round: what it held for flush.* is covered now. */
static void take(struct sk_tpart *tp)
{
	sk_list_del(&tp->flush_link);
	sk_list_del(&tp->lazy_link);
	tp->unflushed = 0;
}

static void start_round(struct sk_flusher *f)
{
	struct flush_round *r = sk_xcalloc(1, sizeof(*r));

	r->f = f;
	r->id = ++f->started;
	r->ckpt = f->ckpt_due;
	f->ckpt_due = false;
	if (r->ckpt) {
		size_t n;
		struct sk_topic **all = sk_topics_list(&f->b->topics, &n);

		for (size_t i = 0; i < n; i++) {
			for (int32_t p = 0; p < all[i]->n_parts; p++) {
				struct sk_tpart *tp = all[i]->parts[p];

				take(tp);
				if (sk_partition_checkpoint_begin(tp->log,
								  next_sync(r)))
					r->n++;
			}
		}
		free(all);
	}
	while (!sk_list_empty(&f->dirty)) {
		struct sk_tpart *tp =
			sk_list_first(&f->dirty, struct sk_tpart, flush_link);

		take(tp);
		if (sk_partition_sync_begin(tp->log, next_sync(r)))
			r->n++;
	}
	r->job.run = round_run;
	r->job.done = round_done;
	f->running = true;
	sk_pool_submit(f->pool, &r->job);
}

/* A round now, or right after the one in flight (round_done). */
static void kick(struct sk_flusher *f)
{
	if (!f->running)
		start_round(f);
}

/* Have the lazy timer fire at deadline (sk_mono_ms) at the latest. */
static void arm(struct sk_flusher *f, int64_t deadline)
{
	struct ev_loop *loop = f->b->loop;
	int64_t now = sk_mono_ms();

	if (ev_is_active(&f->lazy_timer) && f->lazy_deadline <= deadline)
		return;
	ev_timer_stop(loop, &f->lazy_timer);
	ev_timer_set(&f->lazy_timer,
		     deadline > now ? (double)(deadline - now) / 1000.0 : 0.0,
		     0.0);
	f->lazy_deadline = deadline;
	ev_timer_start(loop, &f->lazy_timer);
}

/* flush.ms: sync the partitions whose oldest unsynced record is due. */
static void on_lazy_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sk_flusher *f =
		sk_container_of(w, struct sk_flusher, lazy_timer);
	int64_t now = sk_mono_ms(), next = INT64_MAX;
	bool any = false;

	(void)loop;
	(void)revents;
	for (struct sk_list *l = f->lazy.next; l != &f->lazy; l = l->next) {
		struct sk_tpart *tp =
			sk_container_of(l, struct sk_tpart, lazy_link);
		int64_t ms = tp->topic->cfg.flush_ms;

		if (ms == INT64_MAX)
			continue;
		if (ms <= now - tp->unflushed_since) {
			sk_flusher_mark(f, tp);
			any = true;
		} else if (tp->unflushed_since + ms < next) {
			next = tp->unflushed_since + ms;
		}
	}
	if (any)
		kick(f);
	if (next != INT64_MAX)
		arm(f, next);
}

static void on_ckpt_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sk_flusher *f =
		sk_container_of(w, struct sk_flusher, ckpt_timer);

	(void)loop;
	(void)revents;
	sk_flusher_checkpoint(f);
}

void sk_flusher_init(struct sk_flusher *f, struct sk_broker *b)
{
	double every = (double)b->cfg.log_flush_checkpoint_ms / 1000.0;

	memset(f, 0, sizeof(*f));
	f->b = b;
	sk_list_init(&f->dirty);
	sk_list_init(&f->waiters);
	sk_list_init(&f->lazy);
	f->pool = sk_pool_new(b->loop, 1, "flusher");
	sk_pool_set_spin(f->pool, SK_FLUSHER_SPIN_US);
	f->bg = sk_pool_new(b->loop, 1, "disk-bg");
	ev_timer_init(&f->lazy_timer, on_lazy_timer, 0.0, 0.0);
	ev_timer_init(&f->ckpt_timer, on_ckpt_timer, every, every);
	ev_timer_start(b->loop, &f->ckpt_timer);
	/* Housekeeping: not a reason for the loop to keep running. */
	ev_unref(b->loop);
}

void sk_flusher_fini(struct sk_flusher *f)
{
	if (!f->pool)
		return;
	ev_ref(f->b->loop);
	ev_timer_stop(f->b->loop, &f->ckpt_timer);
	ev_timer_stop(f->b->loop, &f->lazy_timer);
	/* Runs the round in flight and any round its completion starts. */
	sk_pool_free(f->pool);
	f->pool = NULL;
	sk_pool_free(f->bg);
	f->bg = NULL;
	while (!sk_list_empty(&f->dirty))
		sk_list_del(f->dirty.next);
	while (!sk_list_empty(&f->lazy))
		sk_list_del(f->lazy.next);
}

void sk_flusher_mark(struct sk_flusher *f, struct sk_tpart *tp)
{
	if (!sk_list_linked(&tp->flush_link))
		sk_list_add_tail(&f->dirty, &tp->flush_link);
}

void sk_flusher_appended(struct sk_flusher *f, struct sk_tpart *tp,
			 int64_t records)
{
	const struct sk_topic_config *tc = &tp->topic->cfg;

	if (tc->flush_messages == INT64_MAX && tc->flush_ms == INT64_MAX)
		return;
	if (tp->unflushed == 0)
		tp->unflushed_since = sk_mono_ms();
	tp->unflushed += records;
	if (tp->unflushed >= tc->flush_messages || tc->flush_ms == 0) {
		sk_flusher_mark(f, tp);
		kick(f);
		return;
	}
	if (!sk_list_linked(&tp->lazy_link))
		sk_list_add_tail(&f->lazy, &tp->lazy_link);
	if (tc->flush_ms != INT64_MAX)
		arm(f, tp->unflushed_since + tc->flush_ms);
}

void sk_flusher_checkpoint(struct sk_flusher *f)
{
	f->ckpt_due = true;
	kick(f);
}

void sk_flusher_forget(struct sk_flusher *f, struct sk_tpart *tp)
{
	(void)f;
	sk_list_del(&tp->flush_link);
	sk_list_del(&tp->lazy_link);
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

struct rmtree_job {
	struct sk_job job;
	char *path;
	int rc;
};

static void rmtree_run(struct sk_job *job)
{
	struct rmtree_job *r = sk_container_of(job, struct rmtree_job, job);

	r->rc = sk_rmtree(r->path);
}

static void rmtree_done(struct sk_job *job)
{
	struct rmtree_job *r = sk_container_of(job, struct rmtree_job, job);

	if (r->rc < 0)
		sk_error("cannot remove %s: %s (removed at the next start "
			 "if it ends in -delete)",
			 r->path, strerror(-r->rc));
	free(r->path);
	free(r);
}

void sk_flusher_rmtree(struct sk_flusher *f, char *path)
{
	struct rmtree_job *r = sk_xcalloc(1, sizeof(*r));

	r->path = path;
	r->job.run = rmtree_run;
	r->job.done = rmtree_done;
	sk_pool_submit(f->bg, &r->job);
}

void sk_flusher_offload(void *flusher, struct sk_job *job)
{
	struct sk_flusher *f = flusher;

	sk_pool_submit(f->bg, job);
}
