/*
 * Skald plugin ABI: the services the broker offers a plugin.
 *
 * init() receives a const struct skald_host that belongs to that plugin:
 * keep the pointer and pass it back as the first argument of every
 * service, which is how the broker knows who is calling (log lines carry
 * the plugin's name, memory is counted per plugin, keys of the key/value
 * store live under the plugin's name). The table stays valid until fini()
 * returns.
 *
 * Growth. The table starts with abi_major, abi_minor and size and is only
 * ever appended to (see version.h). A plugin built against newer headers
 * than the broker it runs in cannot load (its minor is newer), so within
 * its own minor every member exists; a plugin that wants to use a newer
 * member when present, and still load into an older broker, builds with
 * the older SKALD_ABI_MINOR and tests SKALD_HOST_HAS(host, member).
 *
 * Threads. Each service says where it may be called:
 *   any thread   log, memory, metrics, clocks, config, post, records,
 *                tier_done, tier_list_add;
 *   loop thread  timers, submit, the key/value store, registration.
 * "The loop thread" is the thread running init, start, stop, fini, timer
 * callbacks, post callbacks and submit's done callbacks. Nothing may
 * block it: file or network I/O, sleeping, waiting for a lock held
 * across I/O all go to submit (the broker's pool) or the plugin's own
 * threads, which report back with post.
 *
 * Ownership. Strings and buffers passed to a service are borrowed for the
 * call (the broker copies what it keeps). What the broker passes to a
 * callback is borrowed for that callback. Memory from mem_alloc is freed
 * with mem_free of the same host.
 *
 * Errors. Services that can fail return 0 or a negative errno. After the
 * plugin's stop(), timer_add returns NULL and register_* fail with
 * -ESHUTDOWN; post and submit keep working until fini so that work in
 * flight can finish.
 *
 * Compiles alone as C99 or later and as C++11 or later.
 */
#ifndef SKALD_HOST_H
#define SKALD_HOST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "plugin.h"
#include "record.h"
#include "storage.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Log levels (host->log). */
enum skald_log_level {
	SKALD_LOG_DEBUG = 0,
	SKALD_LOG_INFO = 1,
	SKALD_LOG_WARN = 2,
	SKALD_LOG_ERROR = 3
};

/* A metric series (host->metric_*). Opaque; valid until fini returns. */
struct skald_metric;

/* One label of a metric series. Layout frozen for ABI major 1. */
struct skald_label {
	const char *name;  /* [a-zA-Z_][a-zA-Z0-9_]*, not "plugin" */
	const char *value; /* any UTF-8 text */
};

/* A timer (host->timer_add). Opaque. */
struct skald_timer;

/* A callback with one argument (timers, post, submit). */
typedef void (*skald_fn)(void *arg);

/*
 * Called by kv_list for each key under the prefix, in key order. Return
 * 0 to go on; anything else stops the walk and is returned by kv_list.
 */
typedef int (*skald_kv_fn)(void *arg, const char *key, const void *value,
			   size_t len);

struct skald_host {
	/* The broker's ABI version and the bytes of this table it filled. */
	uint32_t abi_major;
	uint32_t abi_minor;
	uint32_t size;
	uint32_t build_sig; /* the broker's SKALD_BUILD_SIG */

	/* The plugin's name as loaded, and the broker's SKALD_VERSION. */
	const char *plugin_name;
	const char *broker_version;

	/* ---- Logging (any thread) ---------------------------------- */

	/*
	 * Write one line to the broker's log, prefixed with the plugin's
	 * name, at level (enum skald_log_level). No trailing newline.
	 */
	void (*log)(const struct skald_host *host, int level, const char *fmt,
		    ...) SKALD_PRINTF(3, 4);
	void (*vlog)(const struct skald_host *host, int level,
		     const char *fmt, va_list ap) SKALD_PRINTF(3, 0);

	/* ---- Memory (any thread), counted per plugin ---------------- */

	/* Like malloc/realloc/free; NULL when out of memory. */
	void *(*mem_alloc)(const struct skald_host *host, size_t size);
	void *(*mem_realloc)(const struct skald_host *host, void *p,
			     size_t size);
	void (*mem_free)(const struct skald_host *host, void *p);

	/* ---- Metrics (any thread), published by the broker ---------- */

	/*
	 * Register a series of a Prometheus counter, gauge or histogram.
	 * name: [a-zA-Z_:][a-zA-Z0-9_:]*; help: one line. The broker adds
	 * the label plugin="NAME". Registering the same name and labels
	 * again returns the same series; the same name with another type
	 * or help, or a bad name, returns NULL (logged). bounds: the
	 * histogram's bucket upper bounds, increasing (+Inf is implied).
	 */
	struct skald_metric *(*metric_counter)(
		const struct skald_host *host, const char *name,
		const char *help, const struct skald_label *labels,
		size_t n_labels);
	struct skald_metric *(*metric_gauge)(
		const struct skald_host *host, const char *name,
		const char *help, const struct skald_label *labels,
		size_t n_labels);
	struct skald_metric *(*metric_histogram)(
		const struct skald_host *host, const char *name,
		const char *help, const struct skald_label *labels,
		size_t n_labels, const double *bounds, size_t n_bounds);
	/* Counter: add v >= 0. Gauge: add v (may be negative). */
	void (*metric_add)(struct skald_metric *m, double v);
	/* Gauge: set to v. */
	void (*metric_set)(struct skald_metric *m, double v);
	/* Histogram: count one observation of v. */
	void (*metric_observe)(struct skald_metric *m, double v);

	/* ---- Time and execution ------------------------------------- */

	/* Wall clock, ms since the epoch (any thread). */
	int64_t (*now_ms)(const struct skald_host *host);
	/* Monotonic clock in ms, for intervals (any thread). */
	int64_t (*monotonic_ms)(const struct skald_host *host);
	/*
	 * Loop thread: call fn(arg) on the loop thread after after_ms, then
	 * every repeat_ms if repeat_ms > 0. The handle stays valid until
	 * timer_del, also after a one-shot timer fired; timer_del may be
	 * called from fn. NULL after stop().
	 */
	struct skald_timer *(*timer_add)(const struct skald_host *host,
					 uint64_t after_ms, uint64_t repeat_ms,
					 skald_fn fn, void *arg);
	void (*timer_del)(const struct skald_host *host,
			  struct skald_timer *timer);
	/*
	 * Any thread: call fn(arg) on the loop thread soon, in posting
	 * order. 0, or -ENOMEM.
	 */
	int (*post)(const struct skald_host *host, skald_fn fn, void *arg);
	/*
	 * Loop thread: call run(arg) on a broker pool thread, where it may
	 * block, then done(arg) on the loop thread (done may be NULL).
	 * Jobs run in parallel, in no particular order.
	 */
	int (*submit)(const struct skald_host *host, skald_fn run,
		      skald_fn done, void *arg);

	/* ---- Config (any thread, until fini) ----------------------- */

	/*
	 * The value of a key of the plugin's schema: the given one, else
	 * the default. config_string: NULL when the key has neither (or is
	 * not a STRING key); config_int: 0; config_bool: 0 or 1.
	 */
	const char *(*config_string)(const struct skald_config *config,
				     const char *key);
	int64_t (*config_int)(const struct skald_config *config,
			      const char *key);
	int (*config_bool)(const struct skald_config *config,
			   const char *key);
	/* 1 if the key was given in the YAML file, 0 if not, -ENOENT if the
	 * schema has no such key. */
	int (*config_given)(const struct skald_config *config,
			    const char *key);

	/* ---- Key/value store (loop thread) -------------------------- */

	/*
	 * Small durable values (at most 1 MiB each) in the broker's
	 * metadata database, under the plugin's name: plugins cannot see
	 * each other's keys. Each put or del is one short SQLite
	 * transaction, so keep them rare (state, not data). It returns
	 * without waiting for the disk (this is the loop thread): the
	 * broker's metadata writer syncs it milliseconds later.
	 * kv_get copies the value into buf (cap bytes) and stores its
	 * length in *len: -ENOENT if the key is absent, -ENOBUFS (with
	 * *len set) if cap is too small.
	 */
	int (*kv_put)(const struct skald_host *host, const char *key,
		      const void *value, size_t len);
	int (*kv_get)(const struct skald_host *host, const char *key,
		      void *buf, size_t cap, size_t *len);
	/* 0, also when the key was absent. */
	int (*kv_del)(const struct skald_host *host, const char *key);
	int (*kv_list)(const struct skald_host *host, const char *prefix,
		       skald_kv_fn fn, void *arg);

	/* ---- Records (any thread) ----------------------------------- */

	/*
	 * Walk the RecordBatch v2 batches in batches[0..len) (as stored in
	 * a segment: whole batches back to back; a partial batch at the end
	 * is ignored) and call fn for every record, decompressing
	 * compressed batches; control batches (transaction markers) are
	 * skipped. flags: SKALD_RECORDS_*. Returns 0, fn's
	 * non-zero result, -EBADMSG for a malformed batch (or a bad CRC
	 * with SKALD_RECORDS_VERIFY_CRC), -ENOTSUP for an unknown codec,
	 * -E2BIG for a batch above 64 MiB once decompressed.
	 */
	int (*records_foreach)(const struct skald_host *host,
			       const void *batches, size_t len,
			       uint32_t flags, skald_record_fn fn, void *arg);

	/* ---- Registration (loop thread, during init) ---------------- */

	/*
	 * Provide a storage tier named after the plugin (storage.h). The
	 * descriptor's provides must include SKALD_PROVIDES_STORAGE_TIER.
	 * One per plugin. -EINVAL (a bad ops table), -EEXIST, -EPERM,
	 * -EBUSY (after init).
	 */
	int (*register_storage_tier)(const struct skald_host *host,
				     const struct skald_storage_tier_ops *ops,
				     void *tier);
	/* Any thread: finish a tier operation (see storage.h). */
	void (*tier_done)(const struct skald_host *host,
			  struct skald_tier_op *op, int rc, const char *msg);
	/*
	 * Any thread, one at a time per op: one object found by list().
	 * -EINVAL if op is not a list.
	 */
	int (*tier_list_add)(const struct skald_host *host,
			     struct skald_tier_op *op, const char *key,
			     uint64_t size);
};

/*
 * True if the broker's table has member (a pointer to a struct
 * skald_host and a member name): redis's NULL check, but typed.
 */
#define SKALD_HOST_HAS(host, member)                                    \
	(offsetof(struct skald_host, member) +                          \
		 sizeof(((const struct skald_host *)0)->member) <=      \
	 (size_t)(host)->size)

/* The size of the table of ABI 1.0. */
#define SKALD_HOST_V1_SIZE                                              \
	(offsetof(struct skald_host, tier_list_add) +                   \
	 sizeof(((const struct skald_host *)0)->tier_list_add))

#ifdef __cplusplus
}
#endif

#endif
