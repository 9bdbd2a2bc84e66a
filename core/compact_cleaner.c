/*
 * The broker's log cleaner: which partition to compact, and when.
 *
 * One worker thread (Kafka's log.cleaner.threads default) and one job at
 * a time. A timer on the loop looks every log.cleaner.backoff.ms at the
 * partitions of compacted topics and starts the one most in need (the
 * highest dirty ratio; one whose max.compaction.lag.ms or a tombstone's
 * delete horizon has passed comes first); when a job ends, it looks
 * again at once, so a backlog is worked off without waiting.
 *
 * A job goes run (worker) -> install (loop) -> commit (worker) -> finish
 * (loop), see compact.h. The partition may change or go away meanwhile:
 * install checks the segments it replaces, and a topic deletion cancels
 * the job through sk_cleaner_forget before the directory is renamed.
 *
 * Per-partition state (the checkpoint, read from the partition directory
 * the first time the partition is looked at) lives in a map keyed by the
 * struct sk_tpart address; sk_cleaner_forget removes the entry before the
 * partition is freed, so an address is never reused with stale state.
 */
#include "compact.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "log_internal.h"
#include "pool.h"
#include "say.h"

/* The cleaner's view of one partition. */
struct cleaner_part {
	struct sk_hnode hnode;	    /* in sk_cleaner.parts, by tp */
	struct sk_tpart *tp;	    /* the key: its address */
	struct sk_compact_state st; /* as in its checkpoint file */
	bool failed;		    /* corrupt or unmappable: left alone */
};

/* A job in the pool. */
struct clean_task {
	struct sk_job job;
	struct sk_cleaner *c;
	struct sk_tpart *tp;	 /* NULL once the partition is gone */
	struct cleaner_part *cp; /* NULL once the partition is gone */
	struct sk_compact_job *cj;
	bool committing; /* the pool runs commit, not run */
	int rc;
	struct sk_err err;
	int64_t started; /* monotonic ms */
};

struct sk_cleaner {
	struct sk_broker *b;
	struct sk_pool *pool;
	ev_timer timer;
	struct sk_hmap parts;	     /* struct cleaner_part */
	struct clean_task *inflight; /* at most one */
	bool stopping;
};

static void task_submit(struct clean_task *t);

static void settings_of(const struct sk_broker *b, const struct sk_topic *t,
			struct sk_compact_config *cfg)
{
	cfg->delete_retention_ms = t->cfg.delete_retention_ms;
	cfg->min_cleanable_ratio = t->cfg.min_cleanable_ratio;
	cfg->min_lag_ms = t->cfg.min_compaction_lag_ms;
	cfg->max_lag_ms = t->cfg.max_compaction_lag_ms;
	cfg->segment_bytes = t->cfg.segment_bytes;
	cfg->index_interval_bytes = t->cfg.index_interval_bytes;
	cfg->map_bytes = b->cfg.log_cleaner_dedupe_buffer_size;
}

static struct cleaner_part *part_get(struct sk_cleaner *c, struct sk_tpart *tp)
{
	struct sk_hnode *h = sk_hmap_find(&c->parts, &tp, sizeof(tp));
	struct cleaner_part *cp;

	if (h)
		return sk_container_of(h, struct cleaner_part, hnode);
	cp = sk_xcalloc(1, sizeof(*cp));
	cp->tp = tp;
	sk_compact_state_load(sk_partition_dir(tp->log), &cp->st);
	sk_hmap_insert(&c->parts, &cp->hnode, &cp->tp, sizeof(cp->tp));
	return cp;
}

/* Re-arm the timer: soon after a job, else after the backoff. */
static void rearm(struct sk_cleaner *c, bool soon)
{
	double every = (double)c->b->cfg.log_cleaner_backoff_ms / 1000.0;

	if (c->stopping)
		return;
	ev_timer_stop(c->b->loop, &c->timer);
	ev_timer_set(&c->timer, soon ? 0.0 : every, every);
	ev_timer_start(c->b->loop, &c->timer);
}

static void task_free(struct clean_task *t)
{
	if (t->c->inflight == t)
		t->c->inflight = NULL;
	sk_compact_job_free(t->cj);
	free(t);
}

static void log_done(const struct clean_task *t,
		     const struct sk_compact_stats *s)
{
	const struct sk_tpart *tp = t->tp;
	char mapped[96] = "nothing dirty";

	if (s->map_end > s->first_dirty)
		snprintf(mapped, sizeof(mapped),
			 "offsets %" PRId64 "-%" PRId64 " mapped (%" PRId64
			 " keys)",
			 s->first_dirty, s->map_end - 1, s->keys);
	sk_info("compaction: topic %s partition %" PRId32 " (%s): %s; %" PRId64
		" segments, %" PRId64 " bytes -> %" PRId64 " segments, %" PRId64
		" bytes; %" PRId64 " records removed (%" PRId64
		" tombstones), %" PRId64 " batches rewritten, %" PRId64
		" removed%s in %" PRId64 " ms",
		tp->topic->name, tp->id, s->why, mapped, s->segments_before,
		s->bytes_before, s->segments_after, s->bytes_after,
		s->records_removed, s->tombstones_removed, s->batches_rewritten,
		s->batches_removed,
		s->groups_skipped ? "; segments retention took meanwhile "
				    "left as they were"
				  : "",
		sk_mono_ms() - t->started);
	if (s->horizon != INT64_MAX)
		sk_debug("compaction: topic %s partition %" PRId32
			 ": next tombstone delete horizon %" PRId64,
			 tp->topic->name, tp->id, s->horizon);
}

static void on_task_done(struct sk_job *job)
{
	struct clean_task *t = sk_container_of(job, struct clean_task, job);
	struct sk_cleaner *c = t->c;
	struct sk_compact_stats stats;

	if (!t->tp) {
		task_free(t);
		rearm(c, true);
		return;
	}
	if (!t->committing) {
		if (t->rc < 0) {
			if (t->rc != -ECANCELED) {
				sk_error(
					"compaction: topic %s partition %" PRId32
					": %s; the partition is not compacted "
					"until restart",
					t->tp->topic->name, t->tp->id,
					t->err.msg);
				t->cp->failed = true;
			}
			task_free(t);
			rearm(c, true);
			return;
		}
		sk_compact_install(t->tp->log, t->cj);
		t->committing = true;
		task_submit(t);
		return;
	}
	if (t->rc < 0 && t->rc != -ECANCELED)
		sk_error("compaction: topic %s partition %" PRId32 ": %s",
			 t->tp->topic->name, t->tp->id, t->err.msg);
	sk_compact_finish(t->tp->log, t->cj, &t->cp->st, &stats);
	if (stats.cleaned)
		log_done(t, &stats);
	task_free(t);
	rearm(c, true);
}

static void on_task_run(struct sk_job *job)
{
	struct clean_task *t = sk_container_of(job, struct clean_task, job);

	t->err.msg[0] = '\0';
	if (t->committing)
		t->rc = sk_compact_commit(t->cj, &t->err);
	else
		t->rc = sk_compact_run(t->cj, &t->err);
}

static void task_submit(struct clean_task *t)
{
	t->job.run = on_task_run;
	t->job.done = on_task_done;
	sk_pool_submit(t->c->pool, &t->job);
}

/*
 * How urgently a partition needs cleaning: its plan, if any, and a score
 * (its dirty ratio, plus one when a deadline passed). Planning takes
 * segment references, so the losers' plans are freed again: cheap next
 * to the cleaning itself.
 */
static void pick(struct sk_cleaner *c)
{
	struct sk_broker *b = c->b;
	struct sk_compact_job *best = NULL;
	struct sk_tpart *best_tp = NULL;
	int64_t now = sk_now_ms();
	double best_score = -1.0;

	for (struct sk_hnode *h = sk_hmap_first(&b->topics.map); h;
	     h = sk_hmap_next(&b->topics.map, h)) {
		struct sk_topic *t = sk_container_of(h, struct sk_topic, hnode);
		struct sk_compact_config cfg;

		if (!(t->cfg.cleanup_policy & SK_CLEANUP_COMPACT))
			continue;
		settings_of(b, t, &cfg);
		for (int32_t i = 0; i < t->n_parts; i++) {
			struct sk_tpart *tp = t->parts[i];
			struct cleaner_part *cp = part_get(c, tp);
			struct sk_compact_job *cj;
			double score;

			if (cp->failed)
				continue;
			sk_compact_plan(tp->log, &cp->st, &cfg, now, &cj);
			if (!cj)
				continue;
			score = sk_compact_job_score(cj);
			if (score > best_score) {
				sk_compact_job_free(best);
				best = cj;
				best_tp = tp;
				best_score = score;
			} else {
				sk_compact_job_free(cj);
			}
		}
	}
	if (!best)
		return;
	c->inflight = sk_xcalloc(1, sizeof(*c->inflight));
	c->inflight->c = c;
	c->inflight->tp = best_tp;
	c->inflight->cp = part_get(c, best_tp);
	c->inflight->cj = best;
	c->inflight->started = sk_mono_ms();
	sk_debug("compaction: topic %s partition %" PRId32 ": starting",
		 best_tp->topic->name, best_tp->id);
	task_submit(c->inflight);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sk_cleaner *c = sk_container_of(w, struct sk_cleaner, timer);

	(void)loop;
	(void)revents;
	if (c->stopping || c->b->stopping || c->inflight)
		return;
	pick(c);
	if (!c->inflight)
		rearm(c, false);
}

struct sk_cleaner *sk_cleaner_new(struct sk_broker *b)
{
	struct sk_cleaner *c;
	double every = (double)b->cfg.log_cleaner_backoff_ms / 1000.0;

	if (!b->cfg.log_cleaner_enable)
		return NULL;
	c = sk_xcalloc(1, sizeof(*c));
	c->b = b;
	sk_hmap_init(&c->parts);
	c->pool = sk_pool_new(b->loop, 1, "cleaner");
	ev_timer_init(&c->timer, on_timer, every, every);
	ev_timer_start(b->loop, &c->timer);
	return c;
}

void sk_cleaner_free(struct sk_cleaner *c)
{
	struct sk_hnode *h;

	if (!c)
		return;
	c->stopping = true;
	ev_timer_stop(c->b->loop, &c->timer);
	/* A long rewrite stops; a swap under way completes. */
	if (c->inflight)
		sk_compact_abort(c->inflight->cj);
	sk_pool_free(c->pool);
	h = sk_hmap_first(&c->parts);
	while (h) {
		struct sk_hnode *next = sk_hmap_next(&c->parts, h);

		sk_hmap_remove(&c->parts, h);
		free(sk_container_of(h, struct cleaner_part, hnode));
		h = next;
	}
	sk_hmap_fini(&c->parts);
	free(c);
}

void sk_cleaner_forget(struct sk_cleaner *c, struct sk_tpart *tp)
{
	struct sk_hnode *h;

	if (!c)
		return;
	if (c->inflight && c->inflight->tp == tp) {
		sk_compact_cancel(c->inflight->cj);
		c->inflight->tp = NULL;
		c->inflight->cp = NULL;
	}
	h = sk_hmap_find(&c->parts, &tp, sizeof(tp));
	if (h) {
		sk_hmap_remove(&c->parts, h);
		free(sk_container_of(h, struct cleaner_part, hnode));
	}
}
