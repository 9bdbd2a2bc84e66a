#include "retention.h"

#include <inttypes.h>

#include "broker.h"
#include "log_remote.h"
#include "say.h"

/* One partition; returns the segments deleted. */
static int64_t retain_partition(struct sk_broker *b, struct sk_topic *t,
				struct sk_tpart *tp, int64_t now_ms)
{
	int64_t deleted = 0;
	int rc;

	/* Tiered partitions: retention over both tiers (log_remote.c). */
	if (sk_remote_retention(b->remote, t, tp, now_ms, &deleted))
		return deleted;

	rc = sk_partition_retention(tp->log, now_ms, t->cfg.retention_ms,
				    t->cfg.retention_bytes, &deleted);
	if (deleted > 0)
		sk_info("retention: topic %s partition %" PRId32
			": deleted %" PRId64 " segments, log start offset "
			"now %" PRId64 " (retention.ms %" PRId64
			", retention.bytes %" PRId64 ")",
			t->name, tp->id, deleted,
			sk_partition_start_offset(tp->log), t->cfg.retention_ms,
			t->cfg.retention_bytes);
	if (rc < 0)
		sk_warn("retention: topic %s partition %" PRId32
			": stopped at a segment that could not be deleted "
			"(retried next run)",
			t->name, tp->id);
	return deleted;
}

int64_t sk_retention_run(struct sk_broker *b, int64_t now_ms)
{
	const struct sk_topics *ts = &b->topics;
	int64_t total = 0;

	/*
	 * Map order is fine: partitions are independent. Nothing here adds
	 * or removes topics, so the walk is safe.
	 */
	for (struct sk_hnode *h = sk_hmap_first(&ts->map); h;
	     h = sk_hmap_next(&ts->map, h)) {
		struct sk_topic *t = sk_container_of(h, struct sk_topic, hnode);

		if (!(t->cfg.cleanup_policy & SK_CLEANUP_DELETE))
			continue;
		for (int32_t p = 0; p < t->n_parts; p++)
			total += retain_partition(b, t, t->parts[p], now_ms);
		/* Then the topic's retention script, off the loop. */
		sk_hooks_retention(&b->hooks, t);
	}
	return total;
}

static void on_retention_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sk_broker *b =
		sk_container_of(w, struct sk_broker, retention_timer);

	(void)loop;
	(void)revents;
	if (!b->stopping)
		sk_retention_run(b, sk_now_ms());
}

void sk_retention_start(struct sk_broker *b)
{
	double every = (double)b->cfg.log_retention_check_interval_ms / 1000.0;

	ev_timer_init(&b->retention_timer, on_retention_timer, every, every);
	ev_timer_start(b->loop, &b->retention_timer);
}

void sk_retention_stop(struct sk_broker *b)
{
	if (b->loop)
		ev_timer_stop(b->loop, &b->retention_timer);
}
