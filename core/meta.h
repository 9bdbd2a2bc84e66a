/*
 * The metadata store: sqlite3 (WAL mode) in the data directory, holding
 * what must outlive the process apart from the log itself: the cluster id,
 * topics with their partition counts and per-topic config overrides.
 *
 * Topic changes have the discipline of committed offsets (offsets.h):
 * queued on the loop thread, stored by a writer thread in group-committed
 * transactions with synchronous=FULL (core/sqlite_writer.h), settled back
 * on the loop. The caller applies a change to memory when it queues it,
 * answers its client from sk_meta_wait once the change is durable, and
 * undoes it in its settle callback if it could not be stored (those run
 * newest first). Reads run on the loop thread (WAL readers do not wait
 * for the writer); the broker reads topics once, at start.
 */
#ifndef SK_META_H
#define SK_META_H

#include <ev.h>

#include "config.h"

struct sk_meta;

/*
 * Open or create DIR/meta.db, migrating the schema if needed, with the
 * cluster id stored durably. Reads and the plugin store work at once;
 * topic changes need sk_meta_start.
 */
int sk_meta_open(struct sk_meta **out, const char *dir, struct sk_err *err);
/* Start the writer thread, its completions on loop. */
void sk_meta_start(struct sk_meta *m, struct ev_loop *loop);
/* Write and settle what is queued, stop the writer, close. NULL-safe. */
void sk_meta_close(struct sk_meta *m);

/* The cluster id, generated once at first start. */
const char *sk_meta_cluster_id(const struct sk_meta *m);

/* A change's fate, on the loop thread: 0 durable, -EIO not stored. */
typedef void (*sk_meta_settle_fn)(void *arg, int rc);

/* Queue: insert or replace a topic with its config overrides (copied).
 * settle (may be NULL) runs once it is durable or failed. */
void sk_meta_topic_put(struct sk_meta *m, const char *name, int32_t partitions,
		       const struct sk_config_kv *configs, size_t n_configs,
		       sk_meta_settle_fn settle, void *arg);
/* Queue: delete a topic and its configs. */
void sk_meta_topic_delete(struct sk_meta *m, const char *name,
			  sk_meta_settle_fn settle, void *arg);
/* done(arg, rc) once every change queued so far is settled: rc 0 if all
 * of them are durable, -EIO if any failed. */
void sk_meta_wait(struct sk_meta *m, sk_meta_settle_fn done, void *arg);
/* Changes queued or being written. */
size_t sk_meta_pending(const struct sk_meta *m);
/* Write and settle what is queued now, blocking (shutdown, tests). */
void sk_meta_flush(struct sk_meta *m);

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
