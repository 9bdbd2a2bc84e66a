#include "topic.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "compact.h"
#include "kafka.h"
#include "log_remote.h"
#include "say.h"

/* Upper bound on partitions per topic: keeps one request from opening
 * an absurd number of files. */
#define SK_MAX_PARTITIONS 100000

void sk_topics_init(struct sk_topics *t)
{
	sk_hmap_init(&t->map);
}

struct sk_topic *sk_topics_find(const struct sk_topics *t, const char *name,
				size_t len)
{
	struct sk_hnode *n = sk_hmap_find(&t->map, name, len);

	return n ? sk_container_of(n, struct sk_topic, hnode) : NULL;
}

static void topics_insert(struct sk_topics *t, struct sk_topic *tp)
{
	sk_hmap_insert(&t->map, &tp->hnode, tp->name, strlen(tp->name));
}

static void topics_remove(struct sk_topics *t, struct sk_topic *tp)
{
	sk_hmap_remove(&t->map, &tp->hnode);
}

static int cmp_topic(const void *a, const void *b)
{
	return strcmp((*(struct sk_topic *const *)a)->name,
		      (*(struct sk_topic *const *)b)->name);
}

struct sk_topic **sk_topics_list(const struct sk_topics *t, size_t *n)
{
	struct sk_topic **v =
		sk_xmalloc((t->map.count ? t->map.count : 1) * sizeof(*v));
	size_t k = 0;

	for (struct sk_hnode *h = sk_hmap_first(&t->map); h;
	     h = sk_hmap_next(&t->map, h))
		v[k++] = sk_container_of(h, struct sk_topic, hnode);
	qsort(v, k, sizeof(*v), cmp_topic);
	*n = k;
	return v;
}

static void free_kv(struct sk_config_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

static void topic_free(struct sk_topic *tp)
{
	for (int32_t i = 0; i < tp->n_parts; i++) {
		sk_partition_close(tp->parts[i]->log);
		free(tp->parts[i]);
	}
	free(tp->parts);
	free_kv(tp->overrides, tp->n_overrides);
	free(tp->name);
	free(tp);
}

void sk_topics_fini(struct sk_topics *t)
{
	struct sk_hnode *h = sk_hmap_first(&t->map);

	while (h) {
		struct sk_hnode *next = sk_hmap_next(&t->map, h);

		sk_hmap_remove(&t->map, h);
		topic_free(sk_container_of(h, struct sk_topic, hnode));
		h = next;
	}
	sk_hmap_fini(&t->map);
}

static void log_config_of(const struct sk_topic_config *tc,
			  struct sk_log_config *lc)
{
	lc->segment_bytes = tc->segment_bytes;
	lc->segment_ms = tc->segment_ms;
	/*
	 * As Kafka's maxSegmentMs: a compacted topic rolls by
	 * max.compaction.lag.ms too, or the active segment, which is never
	 * cleaned, could hold records past it.
	 */
	if ((tc->cleanup_policy & SK_CLEANUP_COMPACT) &&
	    tc->max_compaction_lag_ms < lc->segment_ms)
		lc->segment_ms = tc->max_compaction_lag_ms;
	lc->index_interval_bytes = tc->index_interval_bytes;
}

static char *part_dir(const struct sk_broker *b, const char *topic, int32_t id)
{
	return sk_xasprintf("%s/%s-%d", b->cfg.log_dir, topic, id);
}

/* Open partitions [from, to) of tp, growing its array. */
static int open_parts(struct sk_broker *b, struct sk_topic *tp, int32_t to,
		      struct sk_err *err)
{
	struct sk_log_config lc;
	int32_t from = tp->n_parts;

	log_config_of(&tp->cfg, &lc);
	tp->parts = sk_xrealloc(tp->parts, (size_t)to * sizeof(*tp->parts));
	for (int32_t i = from; i < to; i++) {
		struct sk_tpart *p = sk_xcalloc(1, sizeof(*p));
		char *dir = part_dir(b, tp->name, i);
		int rc = sk_partition_open(&p->log, dir, &lc, err);

		free(dir);
		if (rc) {
			free(p);
			return rc;
		}
		p->topic = tp;
		p->id = i;
		sk_list_init(&p->waiters);
		sk_list_init(&p->flush_link);
		sk_list_init(&p->lazy_link);
		tp->parts[i] = p;
		tp->n_parts = i + 1;
	}
	return 0;
}

/*
 * Build the effective config of a topic from the broker defaults and the
 * given overrides, and the normalised override list to store.
 */
static enum sk_kerr build_config(const struct sk_broker *b,
				 const struct sk_config_kv *kv, size_t n,
				 struct sk_topic_config *tc,
				 struct sk_config_kv **norm, struct sk_err *err)
{
	sk_topic_config_defaults(&b->cfg, tc);
	*norm = sk_xcalloc(n ? n : 1, sizeof(**norm));
	for (size_t i = 0; i < n; i++) {
		char val[128];
		int idx;

		if (!kv[i].value) {
			sk_err_set(err, "%s: a value is required", kv[i].key);
			goto invalid;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(kv[j].key, kv[i].key) == 0) {
				sk_err_set(err, "%s: given more than once",
					   kv[i].key);
				goto invalid;
			}
		}
		if (sk_topic_config_set(tc, kv[i].key, kv[i].value, err))
			goto invalid;
		idx = sk_topic_config_find(kv[i].key);
		sk_topic_config_value(tc, (size_t)idx, val, sizeof(val));
		(*norm)[i].key = sk_xstrdup(kv[i].key);
		(*norm)[i].value = sk_xstrdup(val);
	}
	return SK_KERR_NONE;
invalid:
	free_kv(*norm, n);
	*norm = NULL;
	return SK_KERR_INVALID_CONFIG;
}

static int persist(struct sk_broker *b, const struct sk_topic *tp,
		   struct sk_err *err)
{
	return sk_meta_topic_put(b->meta, tp->name, tp->n_parts, tp->overrides,
				 tp->n_overrides, err);
}

enum sk_kerr sk_topic_create(struct sk_broker *b, const char *name,
			     int32_t partitions,
			     const struct sk_config_kv *configs,
			     size_t n_configs, bool validate_only,
			     struct sk_err *err)
{
	struct sk_topic_config tc;
	struct sk_config_kv *norm;
	struct sk_topic *tp;
	enum sk_kerr kerr;

	if (!sk_topic_name_valid(name, err))
		return SK_KERR_INVALID_TOPIC_EXCEPTION;
	if (partitions < 1 || partitions > SK_MAX_PARTITIONS) {
		sk_err_set(err, "partitions must be in [1, %d], got %d",
			   SK_MAX_PARTITIONS, partitions);
		return SK_KERR_INVALID_PARTITIONS;
	}
	if (sk_topics_find(&b->topics, name, strlen(name))) {
		sk_err_set(err, "topic '%s' already exists", name);
		return SK_KERR_TOPIC_ALREADY_EXISTS;
	}
	kerr = build_config(b, configs, n_configs, &tc, &norm, err);
	if (kerr)
		return kerr;
	if (validate_only) {
		free_kv(norm, n_configs);
		return SK_KERR_NONE;
	}
	tp = sk_xcalloc(1, sizeof(*tp));
	tp->name = sk_xstrdup(name);
	tp->cfg = tc;
	tp->overrides = norm;
	tp->n_overrides = n_configs;
	if (open_parts(b, tp, partitions, err) || persist(b, tp, err)) {
		sk_error("creating topic '%s' failed: %s", name, err->msg);
		for (int32_t i = 0; i < tp->n_parts; i++) {
			sk_partition_destroy(tp->parts[i]->log);
			free(tp->parts[i]);
		}
		if (tp->n_parts < partitions) {
			/* The partition that failed may have left its dir. */
			char *dir = part_dir(b, name, tp->n_parts);
			sk_rmtree(dir);
			free(dir);
		}
		tp->n_parts = 0;
		topic_free(tp);
		return SK_KERR_KAFKA_STORAGE_ERROR;
	}
	topics_insert(&b->topics, tp);
	sk_info("created topic '%s' with %d partition%s", name, partitions,
		partitions == 1 ? "" : "s");
	return SK_KERR_NONE;
}

enum sk_kerr sk_topic_delete(struct sk_broker *b, struct sk_topic *tp,
			     struct sk_err *err)
{
	char **trash;
	int32_t n = tp->n_parts;

	if (sk_meta_topic_delete(b->meta, tp->name, err)) {
		sk_error("deleting topic '%s': %s", tp->name, err->msg);
		return SK_KERR_KAFKA_STORAGE_ERROR;
	}
	topics_remove(&b->topics, tp);
	trash = sk_xcalloc((size_t)(n ? n : 1), sizeof(*trash));
	for (int32_t i = 0; i < n; i++) {
		struct sk_tpart *p = tp->parts[i];
		char *dir = part_dir(b, tp->name, i);

		/* Waiting fetches look the topic up again and find it gone. */
		sk_fetch_wake(b, p);
		sk_flusher_forget(&b->flusher, p);
		sk_cleaner_forget(b->cleaner, p);
		sk_remote_forget(b->remote, p, true);
		trash[i] = sk_xasprintf("%s.%lld-delete", dir,
					(long long)sk_now_ms());
		sk_partition_close(p->log);
		p->log = NULL;
		if (rename(dir, trash[i]) < 0) {
			sk_warn("cannot rename %s for deletion: %s", dir,
				strerror(errno));
			free(trash[i]);
			trash[i] = dir;
		} else {
			free(dir);
		}
	}
	tp->n_parts = 0;
	for (int32_t i = 0; i < n; i++) {
		free(tp->parts[i]);
		sk_rmtree(trash[i]);
		free(trash[i]);
	}
	free(trash);
	sk_info("deleted topic '%s'", tp->name);
	topic_free(tp);
	return SK_KERR_NONE;
}

enum sk_kerr sk_topic_add_partitions(struct sk_broker *b, struct sk_topic *tp,
				     int32_t new_total, bool validate_only,
				     struct sk_err *err)
{
	int32_t old = tp->n_parts;

	if (new_total <= old) {
		sk_err_set(err,
			   "topic '%s' has %d partitions; the new count "
			   "must be larger, got %d",
			   tp->name, old, new_total);
		return SK_KERR_INVALID_PARTITIONS;
	}
	if (new_total > SK_MAX_PARTITIONS) {
		sk_err_set(err, "partitions must be at most %d, got %d",
			   SK_MAX_PARTITIONS, new_total);
		return SK_KERR_INVALID_PARTITIONS;
	}
	if (validate_only)
		return SK_KERR_NONE;
	if (open_parts(b, tp, new_total, err) || persist(b, tp, err)) {
		sk_error("adding partitions to '%s': %s", tp->name, err->msg);
		while (tp->n_parts > old) {
			struct sk_tpart *p = tp->parts[--tp->n_parts];
			sk_flusher_forget(&b->flusher, p);
			sk_partition_destroy(p->log);
			free(p);
		}
		return SK_KERR_KAFKA_STORAGE_ERROR;
	}
	sk_info("topic '%s' now has %d partitions", tp->name, new_total);
	return SK_KERR_NONE;
}

enum sk_kerr sk_topic_set_configs(struct sk_broker *b, struct sk_topic *tp,
				  const struct sk_config_kv *configs,
				  size_t n_configs, bool validate_only,
				  struct sk_err *err)
{
	struct sk_topic_config tc;
	struct sk_config_kv *norm, *old_kv = tp->overrides;
	size_t old_n = tp->n_overrides;
	struct sk_log_config lc;
	enum sk_kerr kerr;

	kerr = build_config(b, configs, n_configs, &tc, &norm, err);
	if (kerr || validate_only) {
		if (!kerr)
			free_kv(norm, n_configs);
		return kerr;
	}
	tp->overrides = norm;
	tp->n_overrides = n_configs;
	if (persist(b, tp, err)) {
		tp->overrides = old_kv;
		tp->n_overrides = old_n;
		free_kv(norm, n_configs);
		return SK_KERR_KAFKA_STORAGE_ERROR;
	}
	free_kv(old_kv, old_n);
	tp->cfg = tc;
	log_config_of(&tc, &lc);
	for (int32_t i = 0; i < tp->n_parts; i++)
		sk_partition_set_config(tp->parts[i]->log, &lc);
	return SK_KERR_NONE;
}

/* Restore one stored topic at start. */
static int load_one(void *arg, const char *name, int32_t partitions,
		    const struct sk_config_kv *configs, size_t n_configs,
		    struct sk_err *err)
{
	struct sk_broker *b = arg;
	struct sk_topic *tp = sk_xcalloc(1, sizeof(*tp));
	struct sk_err cerr;

	tp->name = sk_xstrdup(name);
	if (build_config(b, configs, n_configs, &tp->cfg, &tp->overrides,
			 &cerr)) {
		/* A stored value the current rules refuse: keep the topic on
		 * defaults rather than refusing to start. */
		sk_warn("topic '%s': ignoring stored configs: %s", name,
			cerr.msg);
		sk_topic_config_defaults(&b->cfg, &tp->cfg);
		tp->overrides = NULL;
	} else {
		tp->n_overrides = n_configs;
	}
	if (open_parts(b, tp, partitions, err)) {
		topic_free(tp);
		return -EIO;
	}
	topics_insert(&b->topics, tp);
	return 0;
}

/* Remove directories left by a deletion that a crash interrupted. */
static void remove_trash(const char *log_dir)
{
	DIR *d = opendir(log_dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);

		if (n > 7 && strcmp(e->d_name + n - 7, "-delete") == 0) {
			char *p = sk_xasprintf("%s/%s", log_dir, e->d_name);
			sk_info("removing %s left by an earlier deletion", p);
			sk_rmtree(p);
			free(p);
		}
	}
	closedir(d);
}

/* Make a YAML-declared topic exist with at least its declared shape. */
static int apply_decl(struct sk_broker *b, const struct sk_topic_decl *d,
		      struct sk_err *err)
{
	struct sk_topic *tp =
		sk_topics_find(&b->topics, d->name, strlen(d->name));
	int32_t parts =
		d->partitions > 0 ? d->partitions : b->cfg.num_partitions;
	struct sk_err kerr_msg = { "" };
	enum sk_kerr k;

	if (!tp) {
		k = sk_topic_create(b, d->name, parts, d->configs, d->n_configs,
				    false, &kerr_msg);
	} else {
		k = sk_topic_set_configs(b, tp, d->configs, d->n_configs, false,
					 &kerr_msg);
		if (!k && parts > tp->n_parts)
			k = sk_topic_add_partitions(b, tp, parts, false,
						    &kerr_msg);
		else if (!k && parts < tp->n_parts)
			sk_warn("%s: topic '%s' has %d partitions, more than "
				"the %d declared; partitions are never removed",
				d->where, d->name, tp->n_parts, parts);
	}
	if (k)
		return sk_err_set(err, "%s: topic '%s': %s (%s)", d->where,
				  d->name, kerr_msg.msg, sk_kerr_name(k));
	return 0;
}

int sk_topics_load(struct sk_broker *b, struct sk_err *err)
{
	int rc;

	remove_trash(b->cfg.log_dir);
	rc = sk_meta_topics_load(b->meta, load_one, b, err);
	for (size_t i = 0; rc == 0 && i < b->cfg.n_topics; i++)
		if (!b->cfg.topics[i].glob) /* globs only carry hooks */
			rc = apply_decl(b, &b->cfg.topics[i], err);
	return rc;
}
