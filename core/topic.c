#include "topic.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "broker.h"
#include "compact.h"
#include "kafka.h"
#include "log_remote.h"
#include "say.h"
#include "shutdown.h"

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
	struct sk_hnode *h;
	struct sk_partition **logs;
	size_t n = 0, cap = 0, late;
	int64_t t0 = sk_mono_ms();

	/* The partitions first, all at once (shutdown.h). */
	for (h = sk_hmap_first(&t->map); h; h = sk_hmap_next(&t->map, h))
		cap += (size_t)sk_container_of(h, struct sk_topic, hnode)
			       ->n_parts;
	logs = sk_xcalloc(cap ? cap : 1, sizeof(*logs));
	for (h = sk_hmap_first(&t->map); h; h = sk_hmap_next(&t->map, h)) {
		struct sk_topic *tp =
			sk_container_of(h, struct sk_topic, hnode);

		for (int32_t i = 0; i < tp->n_parts; i++) {
			logs[n++] = tp->parts[i]->log;
			tp->parts[i]->log = NULL;
		}
	}
	late = sk_partitions_close_all(logs, n, SK_STOP_CLOSE_THREADS,
				       SK_STOP_CLOSE_BUDGET_MS);
	if (late)
		sk_warn("shutdown: %zu partitions closed without a recovery "
			"checkpoint after %d ms; the next start scans their "
			"unsynced tails",
			late, SK_STOP_CLOSE_BUDGET_MS);
	if (n)
		sk_info("closed %zu partitions in %lld ms", n,
			(long long)(sk_mono_ms() - t0));
	free(logs);
	h = sk_hmap_first(&t->map);
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
		/* Index writes and segment deletions: off the loop. */
		sk_partition_set_offload(p->log, sk_flusher_offload,
					 &b->flusher);
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

/*
 * Metadata changes are applied to memory at once and stored by the meta
 * writer (meta.h); the admin requests answer once they are durable. If
 * the store fails, the change is undone here. Failures settle newest
 * first, so finding the topic by name is enough: later changes to it
 * were undone already.
 */
enum undo_kind { UNDO_CREATE, UNDO_PARTITIONS, UNDO_CONFIGS, UNDO_DELETE };

struct undo {
	struct sk_broker *b;
	enum undo_kind kind;
	char *name;
	int32_t n_parts;	 /* PARTITIONS, DELETE: the count before */
	struct sk_config_kv *kv; /* CONFIGS, DELETE: the overrides before */
	size_t n_kv;
};

static int load_one(void *arg, const char *name, int32_t partitions,
		    const struct sk_config_kv *configs, size_t n_configs,
		    struct sk_err *err);

static struct sk_config_kv *dup_kv(const struct sk_config_kv *kv, size_t n)
{
	struct sk_config_kv *d = sk_xcalloc(n ? n : 1, sizeof(*d));

	for (size_t i = 0; i < n; i++) {
		d[i].key = sk_xstrdup(kv[i].key);
		d[i].value = sk_xstrdup(kv[i].value);
	}
	return d;
}

static struct undo *undo_new(struct sk_broker *b, enum undo_kind kind,
			     const struct sk_topic *tp)
{
	struct undo *u = sk_xcalloc(1, sizeof(*u));

	u->b = b;
	u->kind = kind;
	u->name = sk_xstrdup(tp->name);
	u->n_parts = tp->n_parts;
	return u;
}

/*
 * Close partition p, number i of the topic called name, without saving
 * (its files are going) and remove its directory off the loop. It is
 * renamed to a -delete name first, so that a new partition of the same
 * name never meets its files; a -delete left by a crash goes at start.
 * The caller has already made p unreachable: waiting fetches look it up
 * again and find it gone.
 */
static void retire_part(struct sk_broker *b, const char *name, int32_t i,
			struct sk_tpart *p)
{
	char *dir = part_dir(b, name, i);
	char *trash =
		sk_xasprintf("%s.%lld-delete", dir, (long long)sk_now_ms());

	sk_fetch_wake(b, p);
	sk_flusher_forget(&b->flusher, p);
	sk_cleaner_forget(b->cleaner, p);
	sk_remote_forget(b->remote, p, true);
	sk_partition_abandon(p->log);
	free(p);
	if (rename(dir, trash) == 0) {
		sk_flusher_rmtree(&b->flusher, trash);
	} else {
		sk_warn("cannot rename %s for deletion: %s", dir,
			strerror(errno));
		/* Under its live name it must be gone before a new
		 * partition of that name may use it: so here. */
		sk_rmtree(dir);
		free(trash);
	}
	free(dir);
}

/* Close and remove partitions [from, n_parts) of tp, data included. */
static void drop_parts(struct sk_broker *b, struct sk_topic *tp, int32_t from)
{
	while (tp->n_parts > from) {
		int32_t i = --tp->n_parts;

		retire_part(b, tp->name, i, tp->parts[i]);
	}
}

/* Make tc and norm (n pairs, taken over) the configs of tp. */
static void install_config(struct sk_topic *tp,
			   const struct sk_topic_config *tc,
			   struct sk_config_kv *norm, size_t n)
{
	struct sk_log_config lc;

	free_kv(tp->overrides, tp->n_overrides);
	tp->overrides = norm;
	tp->n_overrides = n;
	tp->cfg = *tc;
	log_config_of(tc, &lc);
	for (int32_t i = 0; i < tp->n_parts; i++)
		sk_partition_set_config(tp->parts[i]->log, &lc);
}

static void undo(struct undo *u)
{
	struct sk_broker *b = u->b;
	struct sk_topic *tp =
		sk_topics_find(&b->topics, u->name, strlen(u->name));
	struct sk_topic_config tc;
	struct sk_config_kv *norm;
	struct sk_err err;

	switch (u->kind) {
	case UNDO_CREATE:
		if (!tp)
			break;
		topics_remove(&b->topics, tp);
		drop_parts(b, tp, 0);
		topic_free(tp);
		sk_error("topic '%s' removed: its creation could not be stored",
			 u->name);
		break;
	case UNDO_PARTITIONS:
		if (tp && tp->n_parts > u->n_parts) {
			drop_parts(b, tp, u->n_parts);
			sk_error("topic '%s' back to %d partitions: the new "
				 "count could not be stored",
				 u->name, u->n_parts);
		}
		break;
	case UNDO_CONFIGS:
		if (!tp || build_config(b, u->kv, u->n_kv, &tc, &norm, &err))
			break;
		install_config(tp, &tc, norm, u->n_kv);
		sk_error("topic '%s': configs restored: the change could not "
			 "be stored",
			 u->name);
		break;
	case UNDO_DELETE:
		/* Still in the store: back as at a restart (data gone). */
		if (tp)
			break;
		if (load_one(b, u->name, u->n_parts, u->kv, u->n_kv, &err))
			sk_error("topic '%s': its deletion could not be "
				 "stored, and reopening it failed: %s",
				 u->name, err.msg);
		else
			sk_error("topic '%s' is back, empty: its deletion "
				 "could not be stored",
				 u->name);
		break;
	}
}

static void undo_settle(void *arg, int rc)
{
	struct undo *u = arg;

	if (rc)
		undo(u);
	free_kv(u->kv, u->n_kv);
	free(u->name);
	free(u);
}

/*
 * Partition directories [from, to) of a topic about to get them must not
 * exist: any that do were left by a creation whose metadata never became
 * durable (a crash before the commit), and may hold records produced in
 * between. Set them aside, kept for inspection, so the new partitions
 * start empty.
 */
static void set_aside_leftovers(struct sk_broker *b, const char *name,
				int32_t from, int32_t to)
{
	struct stat st;

	for (int32_t i = from; i < to; i++) {
		char *dir = part_dir(b, name, i), *stray;

		if (stat(dir, &st) < 0) {
			free(dir);
			continue;
		}
		stray = sk_xasprintf("%s.%lld-stray", dir,
				     (long long)sk_now_ms());
		if (rename(dir, stray) < 0)
			sk_warn("cannot set aside %s: %s", dir,
				strerror(errno));
		else
			sk_warn("%s has no metadata (left by a crash?): "
				"moved to %s",
				dir, stray);
		free(stray);
		free(dir);
	}
}

/* Queue tp's current shape for the store; u says how to take it back. */
static void persist(struct sk_broker *b, const struct sk_topic *tp,
		    struct undo *u)
{
	sk_meta_topic_put(b->meta, tp->name, tp->n_parts, tp->overrides,
			  tp->n_overrides, undo_settle, u);
}

static enum sk_kerr topic_create(struct sk_broker *b, const char *name,
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
	/*
	 * Directories first, metadata after: a crash between them leaves
	 * directories without metadata, set aside by the next creation of
	 * the name.
	 */
	set_aside_leftovers(b, name, 0, partitions);
	if (open_parts(b, tp, partitions, err)) {
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
	persist(b, tp, undo_new(b, UNDO_CREATE, tp));
	sk_info("created topic '%s' with %d partition%s", name, partitions,
		partitions == 1 ? "" : "s");
	return SK_KERR_NONE;
}

/*
 * The topics: entry a new topic takes its partitions and configs from:
 * its exact name, else the first glob that matches ("logs.*").
 */
static const struct sk_topic_decl *entry_for(const struct sk_broker *b,
					     const char *name)
{
	for (size_t i = 0; i < b->cfg.n_topics; i++)
		if (!b->cfg.topics[i].glob &&
		    strcmp(b->cfg.topics[i].name, name) == 0)
			return &b->cfg.topics[i];
	return sk_config_topic_glob(&b->cfg, name);
}

enum sk_kerr sk_topic_create(struct sk_broker *b, const char *name,
			     int32_t partitions,
			     const struct sk_config_kv *configs,
			     size_t n_configs, bool validate_only,
			     struct sk_err *err)
{
	const struct sk_topic_decl *d = entry_for(b, name);
	struct sk_config_kv *kv;
	size_t n = n_configs;
	enum sk_kerr kerr;

	if (partitions == -1)
		partitions = d && d->partitions > 0 ? d->partitions
						    : b->cfg.num_partitions;
	if (!d || d->n_configs == 0)
		return topic_create(b, name, partitions, configs, n_configs,
				    validate_only, err);
	/* The request's configs win over the entry's, key by key. */
	kv = sk_xcalloc(n_configs + d->n_configs, sizeof(*kv));
	if (n_configs)
		memcpy(kv, configs, n_configs * sizeof(*kv));
	for (size_t i = 0; i < d->n_configs; i++) {
		bool given = false;

		for (size_t j = 0; j < n_configs && !given; j++)
			given = strcmp(configs[j].key, d->configs[i].key) == 0;
		if (!given)
			kv[n++] = d->configs[i];
	}
	kerr = topic_create(b, name, partitions, kv, n, validate_only, err);
	free(kv);
	return kerr;
}

enum sk_kerr sk_topic_delete(struct sk_broker *b, struct sk_topic *tp,
			     struct sk_err *err)
{
	struct undo *u = undo_new(b, UNDO_DELETE, tp);

	(void)err;
	/*
	 * Data first, metadata after: a crash between them brings the
	 * topic back empty (its trash is removed at start), never a
	 * metadata-less directory whose data a new topic would find.
	 */
	u->kv = dup_kv(tp->overrides, tp->n_overrides);
	u->n_kv = tp->n_overrides;
	sk_meta_topic_delete(b->meta, tp->name, undo_settle, u);
	topics_remove(&b->topics, tp);
	drop_parts(b, tp, 0);
	sk_info("deleted topic '%s'", tp->name);
	topic_free(tp);
	return SK_KERR_NONE;
}

enum sk_kerr sk_topic_add_partitions(struct sk_broker *b, struct sk_topic *tp,
				     int32_t new_total, bool validate_only,
				     struct sk_err *err)
{
	int32_t old = tp->n_parts;
	struct undo *u;

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
	set_aside_leftovers(b, tp->name, old, new_total);
	if (open_parts(b, tp, new_total, err)) {
		sk_error("adding partitions to '%s': %s", tp->name, err->msg);
		while (tp->n_parts > old) {
			struct sk_tpart *p = tp->parts[--tp->n_parts];
			sk_flusher_forget(&b->flusher, p);
			sk_partition_destroy(p->log);
			free(p);
		}
		return SK_KERR_KAFKA_STORAGE_ERROR;
	}
	u = undo_new(b, UNDO_PARTITIONS, tp);
	u->n_parts = old;
	persist(b, tp, u);
	sk_info("topic '%s' now has %d partitions", tp->name, new_total);
	return SK_KERR_NONE;
}

enum sk_kerr sk_topic_set_configs(struct sk_broker *b, struct sk_topic *tp,
				  const struct sk_config_kv *configs,
				  size_t n_configs, bool validate_only,
				  struct sk_err *err)
{
	struct sk_topic_config tc;
	struct sk_config_kv *norm;
	struct undo *u;
	enum sk_kerr kerr;

	kerr = build_config(b, configs, n_configs, &tc, &norm, err);
	if (kerr || validate_only) {
		if (!kerr)
			free_kv(norm, n_configs);
		return kerr;
	}
	u = undo_new(b, UNDO_CONFIGS, tp);
	u->kv = dup_kv(tp->overrides, tp->n_overrides);
	u->n_kv = tp->n_overrides;
	install_config(tp, &tc, norm, n_configs);
	persist(b, tp, u);
	return SK_KERR_NONE;
}

void sk_topics_answer_durable(struct sk_broker *b, struct sk_resp *resp,
			      const size_t *pos, size_t n, int16_t fail)
{
	sk_meta_wait(b->meta, sk_resp_defer_done,
		     sk_resp_defer(resp, pos, n, fail));
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
