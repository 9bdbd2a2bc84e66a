/*
 * Internals shared by the plugin loader (plugin.c), the record views
 * (record_view.c) and the storage-tier glue (plugin_tier.c). Nothing else
 * includes this.
 */
#ifndef SK_PLUGIN_INTERNAL_H
#define SK_PLUGIN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "list.h"
#include "plugin.h"
#include "plugin_tier.h"
#include "pool.h"
#include "skald/host.h"

/* Where a plugin is in its life. */
enum sk_plugin_phase {
	SK_PLUGIN_LOADED,  /* checked, config validated; no code run */
	SK_PLUGIN_INIT,	   /* inside init() */
	SK_PLUGIN_READY,   /* init() succeeded */
	SK_PLUGIN_STARTED, /* start() succeeded */
	SK_PLUGIN_STOPPED, /* stop() called */
	SK_PLUGIN_DONE,	   /* fini() called */
};

/* A storage tier a plugin registered. */
struct sk_tier {
	struct sk_plugin *pl;
	/* The plugin's table, copied up to its size; the rest zero. */
	struct skald_storage_tier_ops ops;
	void *state;	    /* the plugin's tier pointer */
	_Atomic long users; /* sk_tier_use */
};

/* One loaded plugin. */
struct sk_plugin {
	/*
	 * The plugin's own host table: the first member, so that a host
	 * pointer is also the plugin's (sk_plugin_of).
	 */
	struct skald_host host;
	struct sk_plugins *set;
	char *path;  /* as given in the YAML file */
	char *where; /* FILE:LINE of its entry */
	char *label; /* "plugins[i]" */
	void *dl;    /* dlopen handle */
	/* The descriptor, copied up to its desc_size; the rest zero. */
	struct skald_plugin_desc desc;
	struct skald_config *config;
	void *state; /* from init() */
	enum sk_plugin_phase phase;
	_Atomic int64_t mem_bytes;  /* live bytes from mem_alloc */
	_Atomic int64_t mem_blocks; /* live blocks from mem_alloc */
	/* Posts, pool jobs and tier operations not yet completed. */
	_Atomic long inflight;
	struct sk_list timers;	 /* struct sk_ptimer, live ones */
	struct sk_tier *tier;	 /* registered, or NULL */
	struct sk_metric *m_mem; /* skald_plugin_memory_bytes */
};

/* The set of loaded plugins, owned by the broker. */
struct sk_plugins {
	struct ev_loop *loop;
	struct sk_meta *meta;
	struct sk_metrics *metrics;
	pthread_t loop_thread;
	struct sk_plugin **v; /* load order */
	size_t n;
	struct sk_pool *pool; /* for submit and blocking tiers; lazy */
	/* post(): queued callbacks, run on the loop by post_wake */
	pthread_mutex_t post_mu;
	struct sk_list posts;
	ev_async post_wake;
	bool post_started;
	ev_timer start_timer;
	void (*start_failed)(void *arg, const char *msg);
	void *start_arg;
	bool inited;  /* sk_plugins_init ran to the end */
	bool stopped; /* sk_plugins_stop ran */
};

static inline struct sk_plugin *sk_plugin_of(const struct skald_host *h)
{
	return (struct sk_plugin *)(void *)h;
}

/* True on the thread that runs the loop. */
bool sk_plugins_on_loop(const struct sk_plugins *ps);

/*
 * Any thread: run fn(arg) on the loop thread soon. When pl is given, the
 * call counts as pl's work in flight until fn returned.
 */
void sk_plugins_post(struct sk_plugins *ps, struct sk_plugin *pl,
		     void (*fn)(void *arg), void *arg);

/* Loop thread: the pool for plugin jobs, started on first use. */
struct sk_pool *sk_plugins_pool(struct sk_plugins *ps);

/* host->log at a level, with the plugin's prefix (for the host's own). */
void sk_plugin_say(struct sk_plugin *pl, int level, const char *fmt, ...)
	SK_PRINTF(3, 4);

/* Services implemented in plugin_tier.c and record_view.c. */
int sk_plugin_register_tier(const struct skald_host *h,
			    const struct skald_storage_tier_ops *ops,
			    void *tier);
void sk_plugin_tier_done(const struct skald_host *h, struct skald_tier_op *op,
			 int rc, const char *msg);
int sk_plugin_tier_list_add(const struct skald_host *h,
			    struct skald_tier_op *op, const char *key,
			    uint64_t size);
int sk_plugin_records_foreach(const struct skald_host *h, const void *batches,
			      size_t len, uint32_t flags, skald_record_fn fn,
			      void *arg);

#endif
