/*
 * The metadata store: sqlite3 (WAL mode) in the data directory, holding
 * what must outlive the process apart from the log itself: the cluster id,
 * topics with their partition counts and per-topic config overrides.
 *
 * Writes are rare administrative events (CreateTopics, AlterConfigs) and
 * run on the loop thread; WAL with synchronous=NORMAL keeps them to a
 * page-cache write plus an occasional checkpoint.
 */
#ifndef SK_META_H
#define SK_META_H

#include "config.h"

struct sk_meta;

/* Open or create DIR/meta.db, migrating the schema if needed. */
int sk_meta_open(struct sk_meta **out, const char *dir, struct sk_err *err);
void sk_meta_close(struct sk_meta *m);

/* The cluster id, generated once at first start. */
const char *sk_meta_cluster_id(const struct sk_meta *m);

/* Insert or replace a topic with its config overrides. */
int sk_meta_topic_put(struct sk_meta *m, const char *name, int32_t partitions,
		      const struct sk_config_kv *configs, size_t n_configs,
		      struct sk_err *err);
int sk_meta_topic_delete(struct sk_meta *m, const char *name,
			 struct sk_err *err);

/* Called once per stored topic by sk_meta_topics_load. */
typedef int (*sk_meta_topic_fn)(void *arg, const char *name, int32_t partitions,
				const struct sk_config_kv *configs,
				size_t n_configs, struct sk_err *err);
int sk_meta_topics_load(struct sk_meta *m, sk_meta_topic_fn fn, void *arg,
			struct sk_err *err);

/*
 * Plugins' key/value store: values (blobs) under a namespace, the plugin's
 * name. kv_get copies the value into buf: -ENOENT when absent, -ENOBUFS
 * when longer than cap (*len says how long). kv_list calls fn for each
 * key starting with prefix, in key order, and stops at fn's first
 * non-zero result, which it returns. A database failure is -EIO with err
 * set.
 */
int sk_meta_kv_put(struct sk_meta *m, const char *ns, const char *key,
		   const void *value, size_t len, struct sk_err *err);
int sk_meta_kv_get(struct sk_meta *m, const char *ns, const char *key,
		   void *buf, size_t cap, size_t *len, struct sk_err *err);
int sk_meta_kv_del(struct sk_meta *m, const char *ns, const char *key,
		   struct sk_err *err);
typedef int (*sk_meta_kv_fn)(void *arg, const char *key, const void *value,
			     size_t len);
int sk_meta_kv_list(struct sk_meta *m, const char *ns, const char *prefix,
		    sk_meta_kv_fn fn, void *arg, struct sk_err *err);

#endif
