/*
 * The broker's hooks: which scripts are loaded, which chain each topic
 * has, the circuit breakers and metrics, and retention scripts (loading
 * and reloading the configuration: hook_reload.c).
 *
 * Scripts are kept by path, one current version each. Chains are built
 * per topic on first use from the configured entries (an exact name
 * first, else the first glob that matches, so topics created later get
 * their glob's hooks) and cached; a reload empties the cache, so each
 * topic's next batch builds a chain on the new versions while in-flight
 * batches keep the chain (and versions) they started with.
 */
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "hook.h"
#include "hook_internal.h"
#include "say.h"

/* A topic's cached chain (NULL: the topic has no hooks). */
struct hk_topic_ent {
	struct sk_hnode node;
	char *name;
	struct sk_hook_chain *chain; /* referenced */
};

struct hk_script_ent *hk_script_find(struct sk_hooks *hs, const char *path)
{
	struct sk_hnode *n = sk_hmap_find(&hs->scripts, path, strlen(path));

	return n ? sk_container_of(n, struct hk_script_ent, node) : NULL;
}

/* ------------------------------------------------------------------ */
/* Chains */

void sk_hook_chain_ref(struct sk_hook_chain *c)
{
	c->refs++;
}

void sk_hook_chain_unref(struct sk_hook_chain *c)
{
	if (!c || --c->refs > 0)
		return;
	for (size_t i = 0; i < c->n; i++) {
		struct sk_hook *h = c->hooks[i];

		sk_hook_script_unref(h->script);
		free(h->name);
		free(h->dead_letter_topic);
		free(h->options_json);
		free(h->where);
		free(h);
	}
	free(c->hooks);
	sk_hook_script_unref(c->retention);
	free(c->retention_where);
	free(c->retention_options);
	free(c->topic);
	free(c);
}

/* The entry of topics: that gives topic its hooks, or NULL. */
static const struct sk_topic_decl *decl_for(const struct sk_hooks *hs,
					    const char *topic)
{
	for (size_t i = 0; i < hs->n_decls; i++)
		if (!hs->decls[i].glob && strcmp(hs->decls[i].name, topic) == 0)
			return &hs->decls[i];
	for (size_t i = 0; i < hs->n_decls; i++)
		if (hs->decls[i].glob &&
		    fnmatch(hs->decls[i].name, topic, 0) == 0)
			return &hs->decls[i];
	return NULL;
}

static struct sk_hook_chain *chain_build(struct sk_hooks *hs, const char *topic,
					 const struct sk_topic_decl *d)
{
	struct sk_hook_chain *c = sk_xcalloc(1, sizeof(*c));

	c->refs = 1;
	c->topic = sk_xstrdup(topic);
	c->hooks = sk_xcalloc(d->n_hooks ? d->n_hooks : 1, sizeof(*c->hooks));
	for (size_t i = 0; i < d->n_hooks; i++) {
		const struct sk_hook_decl *hd = &d->hooks[i];
		struct hk_script_ent *se = hk_script_find(hs, hd->script);
		struct sk_hook *h;

		if (!se || !se->cur)
			continue; /* not compiled: reported at load */
		h = sk_xcalloc(1, sizeof(*h));
		h->name = sk_xstrdup(hd->name);
		h->script = se->cur;
		sk_hook_script_ref(h->script);
		h->on_error = hd->on_error;
		h->dead_letter_topic =
			hd->dead_letter_topic
				? sk_xstrdup(hd->dead_letter_topic)
				: NULL;
		h->options_json =
			sk_xstrdup(hd->options_json ? hd->options_json : "{}");
		h->where = sk_xstrdup(hd->where ? hd->where : "");
		c->hooks[c->n++] = h;
	}
	if (d->retention_script) {
		struct hk_script_ent *se =
			hk_script_find(hs, d->retention_script);

		if (se && se->cur) {
			c->retention = se->cur;
			sk_hook_script_ref(c->retention);
			c->retention_where = sk_xstrdup(
				d->retention_where ? d->retention_where : "");
			c->retention_options =
				sk_xstrdup(d->retention_options_json
						   ? d->retention_options_json
						   : "{}");
		}
	}
	return c;
}

struct sk_hook_chain *sk_hooks_chain(struct sk_hooks *hs, const char *topic)
{
	size_t len = strlen(topic);
	struct sk_hnode *n = sk_hmap_find(&hs->topics, topic, len);
	const struct sk_topic_decl *d;
	struct hk_topic_ent *e;

	if (n)
		return sk_container_of(n, struct hk_topic_ent, node)->chain;
	if (hs->n_decls == 0)
		return NULL;
	d = decl_for(hs, topic);
	e = sk_xcalloc(1, sizeof(*e));
	e->name = sk_xstrdup(topic);
	e->chain = d ? chain_build(hs, topic, d) : NULL;
	sk_hmap_insert(&hs->topics, &e->node, e->name, len);
	return e->chain;
}

struct sk_hook *sk_hooks_find(struct sk_hooks *hs, const char *topic,
			      const char *name)
{
	struct sk_hook_chain *c = sk_hooks_chain(hs, topic);

	for (size_t i = 0; c && i < c->n; i++)
		if (strcmp(c->hooks[i]->name, name) == 0)
			return c->hooks[i];
	return NULL;
}

void hk_topics_clear(struct sk_hooks *hs)
{
	struct sk_hnode *n = sk_hmap_first(&hs->topics);

	while (n) {
		struct sk_hnode *next = sk_hmap_next(&hs->topics, n);
		struct hk_topic_ent *e =
			sk_container_of(n, struct hk_topic_ent, node);

		sk_hmap_remove(&hs->topics, n);
		sk_hook_chain_unref(e->chain);
		free(e->name);
		free(e);
		n = next;
	}
}

/* ------------------------------------------------------------------ */
/* Breaker and metrics */

void sk_hook_chain_gate(struct sk_hook_chain *c, bool *skip)
{
	int64_t now = sk_mono_ms();

	for (size_t i = 0; i < c->n; i++) {
		struct sk_hook *h = c->hooks[i];

		skip[i] = false;
		if (!h->open)
			continue;
		if (now >= h->open_until) {
			/* Half open: this batch tries; others still skip. */
			h->open_until = now + 1000;
			continue;
		}
		skip[i] = true;
	}
}

/* The skald_hook_* series: m's fields, by offset. */
static const struct {
	const char *name;
	const char *help;
	size_t off;
	double scale;
	bool gauge;
} hook_series[] = {
	{ "skald_hook_calls_total", "Batches a hook was called on",
	  offsetof(struct sk_hook_metrics, calls), 1, false },
	{ "skald_hook_records_in_total", "Records given to a hook",
	  offsetof(struct sk_hook_metrics, records_in), 1, false },
	{ "skald_hook_records_out_total", "Records a hook kept",
	  offsetof(struct sk_hook_metrics, records_out), 1, false },
	{ "skald_hook_records_dropped_total", "Records a hook dropped",
	  offsetof(struct sk_hook_metrics, records_dropped), 1, false },
	{ "skald_hook_errors_total",
	  "Failed hook calls (errors, timeouts, memory)",
	  offsetof(struct sk_hook_metrics, errors), 1, false },
	{ "skald_hook_timeouts_total", "Hook calls cut off at timeout.ms",
	  offsetof(struct sk_hook_metrics, timeouts), 1, false },
	{ "skald_hook_seconds_total", "Time spent in a hook",
	  offsetof(struct sk_hook_metrics, time_ns), 1e-9, false },
	{ "skald_hook_lua_memory_bytes", "Lua heap of a hook's script states",
	  offsetof(struct sk_hook_metrics, memory), 1, true },
	{ "skald_hook_breaker_trips_total", "Times a hook's breaker opened",
	  offsetof(struct sk_hook_metrics, breaker_trips), 1, false },
	{ "skald_hook_skipped_total", "Batches an open breaker answered",
	  offsetof(struct sk_hook_metrics, skipped), 1, false },
	{ "skald_hook_acks0_closes_total",
	  "acks=0 connections closed for a hook's refusal",
	  offsetof(struct sk_hook_metrics, acks0_closes), 1, false },
};

_Static_assert(SK_ARRAY_SIZE(hook_series) <=
		       SK_ARRAY_SIZE(((struct sk_hook *)0)->series),
	       "room for every hook series");

/* Bring /metrics up to date with h->m (deltas since the last time). */
static void hook_publish(struct sk_hooks *hs, const char *topic,
			 struct sk_hook *h)
{
	const char *labels[] = { "topic", topic, "hook", h->name };
	struct sk_err err;

	if (!hs->metrics)
		return;
	for (size_t i = 0; i < SK_ARRAY_SIZE(hook_series); i++) {
		uint64_t now = *(const uint64_t *)((const char *)&h->m +
						   hook_series[i].off);
		uint64_t *was =
			(uint64_t *)((char *)&h->pub + hook_series[i].off);

		if (now == *was && h->series[i])
			continue;
		if (!h->series[i]) {
			h->series[i] = sk_metrics_get(
				hs->metrics,
				hook_series[i].gauge ? SK_METRIC_GAUGE
						     : SK_METRIC_COUNTER,
				hook_series[i].name, hook_series[i].help,
				labels, 2, NULL, 0, &err);
			if (!h->series[i])
				continue;
		}
		if (hook_series[i].gauge)
			sk_metric_set(h->series[i],
				      (double)now * hook_series[i].scale);
		else if (now > *was)
			sk_metric_add(h->series[i],
				      (double)(now - *was) *
					      hook_series[i].scale);
		*was = now;
	}
}

static void chain_fold(struct sk_hooks *hs, struct sk_hook_chain *c,
		       const struct sk_hook_delta *d)
{
	for (size_t i = 0; i < c->n; i++) {
		struct sk_hook *h = c->hooks[i];
		const struct sk_hook_res *r = &d[i].res;
		struct sk_hook_metrics *m = &h->m;

		if (d[i].skipped) {
			m->skipped++;
			continue;
		}
		if (!d[i].ran)
			continue;
		m->calls++;
		m->records_in += r->in;
		m->records_out += r->out;
		m->records_dropped += r->dropped;
		m->time_ns += (uint64_t)r->ns;
		m->memory = sk_hook_script_memory(h->script);
		if (r->status == SK_HOOK_OK) {
			if (h->open)
				sk_info("hooks: hook %s of topic %s works "
					"again: circuit breaker closed",
					h->name, c->topic);
			h->open = false;
			h->fails = 0;
			continue;
		}
		m->errors++;
		if (r->status == SK_HOOK_TIMEOUT)
			m->timeouts++;
		if (h->fails++ == 0 || h->open)
			sk_warn("hooks: hook %s of topic %s failed: %s",
				h->name, c->topic, r->msg);
		if (h->fails >= hs->set.breaker_failures) {
			if (!h->open) {
				m->breaker_trips++;
				sk_warn("hooks: hook %s of topic %s failed "
					"%d times in a row: circuit breaker "
					"open, on_error applies without "
					"running it for %" PRId64 " ms",
					h->name, c->topic, h->fails,
					hs->set.breaker_reset_ms);
			}
			h->open = true;
			h->open_until = sk_mono_ms() + hs->set.breaker_reset_ms;
		}
	}
}

void sk_hook_chain_account(struct sk_hooks *hs, struct sk_hook_chain *c,
			   const struct sk_hook_delta *d)
{
	chain_fold(hs, c, d);
	for (size_t i = 0; i < c->n; i++)
		hook_publish(hs, c->topic, c->hooks[i]);
}

/* ------------------------------------------------------------------ */
/* Workers */

int sk_hooks_slot(struct sk_hooks *hs)
{
	static __thread struct sk_hooks *owner;
	static __thread int slot;

	if (owner != hs) {
		owner = hs;
		slot = atomic_fetch_add(&hs->next_slot, 1) %
		       SK_HOOK_MAX_WORKERS;
	}
	return slot;
}

struct sk_pool *sk_hooks_pool(struct sk_hooks *hs)
{
	if (!hs->pool)
		hs->pool = sk_pool_new(hs->b->loop, hs->set.workers, "hook");
	return hs->pool;
}

int sk_hooks_init(struct sk_hooks *hs, struct sk_broker *b,
		  const struct sk_config *cfg, struct sk_err *err)
{
	int rc;

	memset(hs, 0, sizeof(*hs));
	hs->b = b;
	hs->metrics = b ? b->metrics : NULL;
	sk_hmap_init(&hs->scripts);
	sk_hmap_init(&hs->topics);
	sk_hmap_init(&hs->parts);
	sk_list_init(&hs->reload_waits);
	atomic_init(&hs->next_slot, 0);
	rc = hk_hooks_load(hs, cfg, err);
	if (rc) {
		sk_hooks_fini(hs);
		return rc;
	}
	if (hs->n_decls)
		sk_info("hooks: %zu topic entries with hooks, %zu scripts "
			"(interpreter, timeout.ms %" PRId64
			", memory.mb %" PRId64 ", %d workers)",
			hs->n_decls, hs->scripts.count, hs->set.timeout_ms,
			hs->set.memory_mb, hs->set.workers);
	return 0;
}

void sk_hooks_fini(struct sk_hooks *hs)
{
	struct sk_hnode *n;

	/* Runs what is queued; done() appends while topics still exist. */
	hk_reload_close(hs);
	sk_pool_free(hs->pool);
	hs->pool = NULL;
	hk_reload_close(hs);
	hk_topics_clear(hs);
	sk_hmap_fini(&hs->topics);
	n = sk_hmap_first(&hs->scripts);
	while (n) {
		struct sk_hnode *next = sk_hmap_next(&hs->scripts, n);
		struct hk_script_ent *se =
			sk_container_of(n, struct hk_script_ent, node);

		sk_hmap_remove(&hs->scripts, n);
		sk_hook_script_unref(se->cur);
		free(se->path);
		free(se);
		n = next;
	}
	sk_hmap_fini(&hs->scripts);
	sk_hmap_fini(&hs->parts);
	hk_decls_free(hs->decls, hs->n_decls);
	hs->decls = NULL;
	hs->n_decls = 0;
}

/* ------------------------------------------------------------------ */
/* Retention scripts */

/* Closed segments asked about per partition and pass. */
#define HK_RETAIN_MAX_SEGS 1000

/* One partition of a retention pass. */
struct hk_retain_part {
	int32_t id;
	struct sk_segment_info *segs;
	size_t n;
	size_t n_delete; /* the oldest n_delete segments go */
};

/* A retention pass of one topic, on the hook pool. */
struct hk_retain_job {
	struct sk_job job;
	struct sk_hooks *hs;
	struct sk_hook_chain *chain; /* referenced */
	struct hk_retain_part *parts;
	int32_t n_parts;
	struct sk_hook_res res; /* the first failure, if any */
};

/* The first batch's baseTimestamp, read from the file; -1 if unknown. */
static int64_t first_timestamp(struct sk_segment *seg)
{
	uint8_t hdr[SK_BATCH_HEADER_SIZE];
	struct sk_batch_hdr h;

	if (pread(sk_segment_fd(seg), hdr, sizeof(hdr), 0) !=
		    (ssize_t)sizeof(hdr) ||
	    sk_batch_parse_header(hdr, sizeof(hdr), &h))
		return -1;
	return h.base_timestamp;
}

static void retain_run(struct sk_job *j)
{
	struct hk_retain_job *job =
		sk_container_of(j, struct hk_retain_job, job);
	int slot = sk_hooks_slot(job->hs);

	for (int32_t p = 0; p < job->n_parts; p++) {
		struct hk_retain_part *rp = &job->parts[p];
		struct sk_hook_call call = {
			.topic = job->chain->topic,
			.partition = rp->id,
			.hook = "retention",
			.options_json = job->chain->retention_options,
		};

		/* Only the oldest segments can go: stop at the first kept. */
		for (size_t i = 0; i < rp->n; i++) {
			struct sk_hook_segment seg = {
				.base_offset = rp->segs[i].base_offset,
				.last_offset = rp->segs[i].end_offset - 1,
				.first_timestamp =
					first_timestamp(rp->segs[i].seg),
				.max_timestamp = rp->segs[i].max_timestamp,
				.size = rp->segs[i].size,
			};
			struct sk_hook_res res;
			bool keep;

			sk_hook_run_retain(job->chain->retention, slot, &call,
					   &seg, &keep, &res);
			if (res.status != SK_HOOK_OK) {
				if (job->res.status == SK_HOOK_OK)
					job->res = res;
				break; /* a failing script deletes nothing */
			}
			if (keep)
				break;
			rp->n_delete = i + 1;
		}
	}
}

static void retain_done(struct sk_job *j)
{
	struct hk_retain_job *job =
		sk_container_of(j, struct hk_retain_job, job);
	struct sk_broker *b = job->hs->b;
	struct sk_topic *t = sk_topics_find(&b->topics, job->chain->topic,
					    strlen(job->chain->topic));

	if (job->res.status != SK_HOOK_OK)
		sk_warn("retention: topic %s: the retention script failed, "
			"nothing deleted by it: %s",
			job->chain->topic, job->res.msg);
	for (int32_t p = 0; p < job->n_parts; p++) {
		struct hk_retain_part *rp = &job->parts[p];
		struct sk_tpart *tp = t ? sk_topic_part(t, rp->id) : NULL;
		struct sk_err err;

		if (tp && !b->stopping && rp->n_delete > 0) {
			int64_t upto = rp->segs[rp->n_delete - 1].end_offset;

			if (upto > sk_partition_start_offset(tp->log) &&
			    sk_partition_delete_before(tp->log, upto, &err))
				sk_warn("retention: topic %s partition %d: %s",
					t->name, rp->id, err.msg);
			else if (upto > 0)
				sk_info("retention: topic %s partition %d: "
					"the retention script deleted %zu "
					"segments, log start offset now %" PRId64,
					t->name, rp->id, rp->n_delete,
					sk_partition_start_offset(tp->log));
		}
		for (size_t i = 0; i < rp->n; i++)
			sk_segment_unref(rp->segs[i].seg);
		free(rp->segs);
	}
	free(job->parts);
	job->chain->retention_busy = false;
	sk_hook_chain_unref(job->chain);
	free(job);
}

void sk_hooks_retention(struct sk_hooks *hs, struct sk_topic *t)
{
	struct sk_hook_chain *c = hs->b ? sk_hooks_chain(hs, t->name) : NULL;
	struct hk_retain_job *job;

	if (!c || !c->retention || c->retention_busy || t->n_parts == 0)
		return;
	job = sk_xcalloc(1, sizeof(*job));
	job->hs = hs;
	job->chain = c;
	sk_hook_chain_ref(c);
	c->retention_busy = true;
	job->n_parts = t->n_parts;
	job->parts = sk_xcalloc((size_t)t->n_parts, sizeof(*job->parts));
	for (int32_t p = 0; p < t->n_parts; p++) {
		struct hk_retain_part *rp = &job->parts[p];

		rp->id = p;
		rp->segs = sk_xcalloc(HK_RETAIN_MAX_SEGS, sizeof(*rp->segs));
		rp->n = sk_partition_closed_segments(t->parts[p]->log, rp->segs,
						     HK_RETAIN_MAX_SEGS);
	}
	job->job.run = retain_run;
	job->job.done = retain_done;
	sk_pool_submit(sk_hooks_pool(hs), &job->job);
}
