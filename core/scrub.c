/*
 * The scrubber (scrub.h). A pass snapshots the partitions by name, then
 * walks them one chunk at a time: the loop thread picks the chunk
 * (sk_partition_scrub_next), the scrub thread reads and checks it, the
 * loop thread judges it (sk_partition_scrub_end) and waits what the rate
 * asks before the next one. Partitions deleted meanwhile are skipped;
 * segments deleted or rewritten meanwhile are only ever read through the
 * chunk's reference, and never judged once they are not the partition's.
 */
#include "scrub.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "log.h"
#include "pool.h"
#include "say.h"

/* Bounds of one chunk: a tenth of a second's worth at the rate. */
#define SK_SCRUB_CHUNK_MIN ((size_t)64 << 10)
#define SK_SCRUB_CHUNK_MAX ((size_t)4 << 20)
/* The first pass starts at most this long after startup. */
#define SK_SCRUB_FIRST_MS 60000

/* A partition of the pass, by name: it may be deleted meanwhile. */
struct scrub_target {
	char *topic;
	int32_t part;
};

struct sk_scrub {
	struct sk_broker *b;
	struct sk_pool *pool; /* one thread: the reading */
	ev_timer timer;	      /* the next chunk, or the next pass */
	struct sk_job job;    /* reads chunk */
	struct sk_scrub_chunk chunk;
	struct scrub_target *targets;
	size_t n_targets, at; /* the pass; at: the partition now */
	size_t chunk_max;     /* bytes per chunk */
	bool in_pass, busy, stopping;
	int64_t pass_start;  /* sk_mono_ms */
	int64_t chunk_start; /* sk_mono_ms */
	int64_t pass_bytes;
	int pass_damaged;
	struct sk_metric *m_bytes, *m_damaged, *m_passes;
};

static void step(struct sk_scrub *s);

static struct sk_partition *target_log(struct sk_scrub *s, size_t i)
{
	struct scrub_target *t = &s->targets[i];
	struct sk_topic *tp =
		sk_topics_find(&s->b->topics, t->topic, strlen(t->topic));
	struct sk_tpart *part = tp ? sk_topic_part(tp, t->part) : NULL;

	return part ? part->log : NULL;
}

static void free_targets(struct sk_scrub *s)
{
	for (size_t i = 0; i < s->n_targets; i++)
		free(s->targets[i].topic);
	free(s->targets);
	s->targets = NULL;
	s->n_targets = s->at = 0;
}

static void arm(struct sk_scrub *s, int64_t ms)
{
	ev_timer_stop(s->b->loop, &s->timer);
	ev_timer_set(&s->timer, (double)SK_MAX(ms, 0) / 1000.0, 0.0);
	ev_timer_start(s->b->loop, &s->timer);
}

static void start_pass(struct sk_scrub *s)
{
	const struct sk_topics *ts = &s->b->topics;
	size_t n = 0, cap = 0;

	for (struct sk_hnode *h = sk_hmap_first(&ts->map); h;
	     h = sk_hmap_next(&ts->map, h)) {
		struct sk_topic *t = sk_container_of(h, struct sk_topic, hnode);

		for (int32_t p = 0; p < t->n_parts; p++) {
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				s->targets = sk_xrealloc(
					s->targets, cap * sizeof(*s->targets));
			}
			s->targets[n].topic = sk_xstrdup(t->name);
			s->targets[n].part = p;
			n++;
		}
	}
	s->n_targets = n;
	s->at = 0;
	s->in_pass = true;
	s->pass_start = sk_mono_ms();
	s->pass_bytes = 0;
	s->pass_damaged = 0;
	sk_debug("scrub: pass over %zu partitions begins", n);
}

static void end_pass(struct sk_scrub *s)
{
	int64_t now = sk_mono_ms();

	/* A pass with nothing to read is not news. */
	sk_say(s->pass_bytes ? SK_SAY_INFO : SK_SAY_DEBUG,
	       "scrub: verified %" PRId64 " bytes of closed segments in %zu "
	       "partitions in %" PRId64 " ms; %d found damaged",
	       s->pass_bytes, s->n_targets, now - s->pass_start,
	       s->pass_damaged);
	sk_metric_add(s->m_passes, 1);
	free_targets(s);
	s->in_pass = false;
	arm(s, s->pass_start + s->b->cfg.log_scrub_interval_ms - now);
}

static void run_chunk(struct sk_job *job)
{
	struct sk_scrub *s = sk_container_of(job, struct sk_scrub, job);

	sk_scrub_chunk_run(&s->chunk);
}

static void chunk_done(struct sk_job *job)
{
	struct sk_scrub *s = sk_container_of(job, struct sk_scrub, job);
	struct sk_scrub_chunk *c = &s->chunk;
	struct scrub_target *t = &s->targets[s->at];
	int64_t bytes = c->done_pos - c->pos, wait;

	s->busy = false;
	s->pass_bytes += bytes;
	sk_metric_add(s->m_bytes, (double)bytes);
	if (sk_partition_scrub_end(target_log(s, s->at), c)) {
		sk_error("scrub: topic %s partition %" PRId32
			 " is damaged; fetches from offset %" PRId64
			 " on answer KAFKA_STORAGE_ERROR",
			 t->topic, t->part, c->bad_offset);
		sk_metric_add(s->m_damaged, 1);
		s->pass_damaged++;
	}
	if (s->stopping)
		return;
	/* What the rate allows for these bytes, less the time they took. */
	wait = bytes * 1000 / s->b->cfg.log_scrub_bytes_per_sec -
	       (sk_mono_ms() - s->chunk_start);
	if (wait > 0)
		arm(s, wait);
	else
		step(s);
}

/* Start the next chunk of the pass, or end the pass. */
static void step(struct sk_scrub *s)
{
	if (!s->in_pass)
		start_pass(s);
	while (s->at < s->n_targets) {
		struct sk_partition *p = target_log(s, s->at);

		if (p && sk_partition_scrub_next(p, s->chunk_max, &s->chunk)) {
			s->busy = true;
			s->chunk_start = sk_mono_ms();
			sk_pool_submit(s->pool, &s->job);
			return;
		}
		sk_scrub_chunk_release(&s->chunk);
		s->at++;
	}
	end_pass(s);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sk_scrub *s = sk_container_of(w, struct sk_scrub, timer);

	(void)loop;
	(void)revents;
	if (!s->busy && !s->stopping && !s->b->stopping)
		step(s);
}

static struct sk_metric *counter(struct sk_broker *b, const char *name,
				 const char *help)
{
	struct sk_err err;

	return sk_metrics_get(b->metrics, SK_METRIC_COUNTER, name, help, NULL,
			      0, NULL, 0, &err);
}

struct sk_scrub *sk_scrub_new(struct sk_broker *b)
{
	const struct sk_config *cfg = &b->cfg;
	struct sk_scrub *s;

	if (cfg->log_scrub_interval_ms <= 0 ||
	    cfg->log_scrub_bytes_per_sec <= 0)
		return NULL;
	s = sk_xcalloc(1, sizeof(*s));
	s->b = b;
	s->pool = sk_pool_new(b->loop, 1, "scrub");
	s->job.run = run_chunk;
	s->job.done = chunk_done;
	s->chunk_max = (size_t)SK_MIN(SK_MAX(cfg->log_scrub_bytes_per_sec / 10,
					     (int64_t)SK_SCRUB_CHUNK_MIN),
				      (int64_t)SK_SCRUB_CHUNK_MAX);
	s->m_bytes = counter(b, "skald_log_scrub_bytes_total",
			     "Bytes of closed segments the scrub verified.");
	s->m_damaged = counter(b, "skald_log_scrub_damaged_total",
			       "Partitions the scrub found a bad batch in and "
			       "marked damaged.");
	s->m_passes = counter(b, "skald_log_scrub_passes_total",
			      "Scrub passes over every partition completed.");
	ev_timer_init(&s->timer, on_timer, 0.0, 0.0);
	arm(s, SK_MIN(cfg->log_scrub_interval_ms, SK_SCRUB_FIRST_MS));
	return s;
}

void sk_scrub_free(struct sk_scrub *s)
{
	if (!s)
		return;
	s->stopping = true;
	ev_timer_stop(s->b->loop, &s->timer);
	/* Finishes the chunk being read; its completion starts nothing. */
	sk_pool_free(s->pool);
	sk_scrub_chunk_release(&s->chunk);
	free_targets(s);
	free(s);
}
