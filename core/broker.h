/*
 * The broker: the one owner of configuration, stores, topics and the
 * listener, passed explicitly everywhere (no hidden globals).
 */
#ifndef SK_BROKER_H
#define SK_BROKER_H

#include <ev.h>

#include "config.h"
#include "flusher.h"
#include "group.h"
#include "hook.h"
#include "meta.h"
#include "metrics.h"
#include "net.h"
#include "topic.h"

struct sk_admin;
struct sk_plugins;
struct sk_scrub;
struct sk_tier;

struct sk_broker {
	struct ev_loop *loop;
	struct sk_config cfg;	    /* owned */
	struct sk_metrics *metrics; /* every metric, for /metrics */
	struct sk_admin *admin;	    /* admin.listener (admin_http.h), or NULL */
	struct sk_plugins *plugins; /* loaded plugins (core/plugin.h) */
	struct sk_tier *tier;	    /* storage.tier, or NULL */
	struct sk_remote *remote;   /* tiered storage on tier (log_remote.h) */
	int exit_code;		    /* main's: 1 when a plugin failed */
	struct sk_meta *meta;
	struct sk_topics topics;
	struct sk_groups *groups; /* group coordinator and offsets */
	struct sk_server server;
	struct sk_flusher flusher; /* group commit for acks=all */
	/*
	 * Produce validation's buffer for decompressed records, reused
	 * from request to request (batch.c shrinks it after an outsized
	 * batch); owned, freed in sk_broker_fini.
	 */
	struct sk_buf scratch;
	char adv_host[256]; /* host clients are told to connect to */
	int32_t adv_port;
	struct sk_list fetches;	      /* every long-poll fetch waiting */
	struct sk_list ready_fetches; /* woken fetches to re-evaluate */
	ev_timer fetch_timer;	      /* runs them on the next iteration */
	struct sk_list offset_waits;  /* ListOffsets awaiting downloads */
	ev_timer retention_timer;     /* time/size retention (retention.c) */
	struct sk_cleaner *cleaner;   /* compaction (compact.h); NULL if off */
	struct sk_scrub *scrub;	      /* bit-rot scrub (scrub.h); NULL if off */
	ev_signal sig_term, sig_int;
	struct sk_hooks hooks;	 /* Lua topic hooks (hook.h) */
	ev_signal sig_hup;	 /* reload the hooks (hook_chain.c) */
	const char *config_path; /* YAML file reloaded on SIGHUP, or NULL */
	ev_timer stop_timer;	 /* polls the drain during shutdown */
	int64_t stop_deadline;	 /* monotonic ms: give up draining */
	bool stopping;
};

/*
 * Start a broker from b->cfg (already loaded): data directory, metadata,
 * topics, listener. On failure err says what and everything is released.
 */
int sk_broker_init(struct sk_broker *b, struct ev_loop *loop,
		   struct sk_err *err);
/* Begin a graceful stop: no new requests, answer pending, then exit. */
void sk_broker_stop(struct sk_broker *b);
/* Release everything (after the loop returned). */
void sk_broker_fini(struct sk_broker *b);

#endif
