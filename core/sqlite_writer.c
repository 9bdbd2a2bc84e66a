/*
 * The durable sqlite writer: see sqlite_writer.h for the scheme.
 *
 * The connection is used by the writer thread only, one job at a time
 * (the pool has one thread), so SQLITE_OPEN_NOMUTEX is enough; the loop
 * thread never touches it while the writer exists.
 */
#include "sqlite_writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "say.h"
#include "util.h"

/* One transaction's worth of records and the waiters it completes. */
struct batch {
	struct sk_job job;
	struct sk_sqlw *w;
	char *recs; /* n records of ops->rec_size bytes */
	size_t n, cap;
	struct {
		sk_sqlw_done_fn fn;
		void *arg;
	} * waiters;
	size_t n_waiters, cap_waiters;
	int rc;		  /* set by the writer */
	char errmsg[256]; /* sqlite's words when rc != 0 */
};

struct sk_sqlw {
	struct ev_loop *loop;
	sqlite3 *db;
	const struct sk_sqlw_ops *ops;
	void *ctx;
	struct sk_pool *pool;
	struct batch *cur;	/* accumulating, not yet submitted */
	struct batch *inflight; /* with the writer (at most one) */
	ev_prepare kick;	/* submits cur before the loop sleeps */
	size_t pending;		/* records in cur and inflight */
	char name[16];
};

static void *rec_at(const struct batch *bt, size_t i)
{
	return bt->recs + i * bt->w->ops->rec_size;
}

/* Writer thread: the whole batch in one transaction. */
static void batch_run(struct sk_job *job)
{
	struct batch *bt = sk_container_of(job, struct batch, job);
	struct sk_sqlw *w = bt->w;
	int rc = 0;

	if (bt->n == 0)
		return;
	if (sqlite3_exec(w->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK)
		rc = -EIO;
	for (size_t i = 0; rc == 0 && i < bt->n; i++)
		if (w->ops->write(w->ctx, w->db, rec_at(bt, i)))
			rc = -EIO;
	if (rc == 0 &&
	    sqlite3_exec(w->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = -EIO;
	if (rc) {
		snprintf(bt->errmsg, sizeof(bt->errmsg), "%s",
			 sqlite3_errmsg(w->db));
		sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
	}
	bt->rc = rc;
}

static void batch_free(struct batch *bt)
{
	free(bt->recs);
	free(bt->waiters);
	free(bt);
}

static void settle_all(struct batch *bt, int rc)
{
	struct sk_sqlw *w = bt->w;

	if (rc == 0)
		for (size_t i = 0; i < bt->n; i++)
			w->ops->settle(w->ctx, rec_at(bt, i), 0);
	else
		for (size_t i = bt->n; i-- > 0;)
			w->ops->settle(w->ctx, rec_at(bt, i), rc);
	w->pending -= bt->n;
}

static void answer(struct batch *bt, int rc)
{
	for (size_t i = 0; i < bt->n_waiters; i++)
		bt->waiters[i].fn(bt->waiters[i].arg, rc);
	batch_free(bt);
}

static void submit(struct sk_sqlw *w)
{
	w->inflight = w->cur;
	w->cur = NULL;
	w->inflight->job.run = batch_run;
	sk_pool_submit(w->pool, &w->inflight->job);
}

/* Loop thread, after the writer: settle, answer, and start the next. */
static void batch_done(struct sk_job *job)
{
	struct batch *bt = sk_container_of(job, struct batch, job);
	struct sk_sqlw *w = bt->w;
	struct batch *next = NULL;

	w->inflight = NULL;
	if (bt->rc) {
		sk_error("%s store: cannot write %zu records: %s", w->name,
			 bt->n, bt->errmsg);
		/* What queued behind it assumed it would be stored. */
		next = w->cur;
		w->cur = NULL;
		if (next)
			settle_all(next, bt->rc);
	}
	settle_all(bt, bt->rc);
	answer(bt, bt->rc);
	if (next)
		answer(next, bt->rc);
	/* What queued up during this write goes now, as one batch. */
	if (w->cur && !w->inflight)
		submit(w);
}

static void on_kick(struct ev_loop *loop, ev_prepare *p, int revents)
{
	struct sk_sqlw *w = sk_container_of(p, struct sk_sqlw, kick);

	(void)revents;
	ev_prepare_stop(loop, p);
	if (w->cur && !w->inflight)
		submit(w);
}

static struct batch *cur_batch(struct sk_sqlw *w)
{
	if (!w->cur) {
		w->cur = sk_xcalloc(1, sizeof(*w->cur));
		w->cur->w = w;
		w->cur->job.done = batch_done;
	}
	if (!w->inflight && !ev_is_active(&w->kick))
		ev_prepare_start(w->loop, &w->kick);
	return w->cur;
}

void sk_sqlw_queue(struct sk_sqlw *w, const void *rec)
{
	struct batch *bt = cur_batch(w);
	size_t sz = w->ops->rec_size;

	if (bt->n == bt->cap) {
		bt->cap = bt->cap ? bt->cap * 2 : 16;
		bt->recs = sk_xrealloc(bt->recs, bt->cap * sz);
	}
	memcpy(bt->recs + bt->n * sz, rec, sz);
	bt->n++;
	w->pending++;
}

void sk_sqlw_wait(struct sk_sqlw *w, sk_sqlw_done_fn done, void *arg)
{
	struct batch *bt;

	if (!w->cur && !w->inflight) {
		done(arg, 0); /* nothing outstanding: already durable */
		return;
	}
	bt = w->cur ? w->cur : w->inflight;
	if (bt->n_waiters == bt->cap_waiters) {
		bt->cap_waiters = bt->cap_waiters ? bt->cap_waiters * 2 : 16;
		bt->waiters = sk_xrealloc(
			bt->waiters, bt->cap_waiters * sizeof(*bt->waiters));
	}
	bt->waiters[bt->n_waiters].fn = done;
	bt->waiters[bt->n_waiters].arg = arg;
	bt->n_waiters++;
}

size_t sk_sqlw_pending(const struct sk_sqlw *w)
{
	return w->pending;
}

struct sk_sqlw *sk_sqlw_new(struct ev_loop *loop, sqlite3 *db, const char *name,
			    const struct sk_sqlw_ops *ops, void *ctx)
{
	struct sk_sqlw *w = sk_xcalloc(1, sizeof(*w));

	w->loop = loop;
	w->db = db;
	w->ops = ops;
	w->ctx = ctx;
	snprintf(w->name, sizeof(w->name), "%s", name);
	ev_prepare_init(&w->kick, on_kick);
	w->pool = sk_pool_new(loop, 1, w->name);
	return w;
}

/* Run every queued batch and its completions here; the pool stops. */
static void drain(struct sk_sqlw *w)
{
	ev_prepare_stop(w->loop, &w->kick);
	if (w->cur && !w->inflight)
		submit(w);
	/* Runs each batch, its done(), and the follow-up batches. */
	sk_pool_free(w->pool);
	w->pool = NULL;
	ev_prepare_stop(w->loop, &w->kick);
	if (w->cur) { /* queued by a completion after the last write */
		struct batch *bt = w->cur;

		w->cur = NULL;
		settle_all(bt, -EIO);
		answer(bt, -EIO);
	}
}

void sk_sqlw_flush(struct sk_sqlw *w)
{
	if (!w->cur && !w->inflight)
		return;
	drain(w);
	w->pool = sk_pool_new(w->loop, 1, w->name);
}

void sk_sqlw_free(struct sk_sqlw *w)
{
	if (!w)
		return;
	drain(w);
	free(w);
}
