/*
 * The plugin loader and host: loads the shared objects named by the YAML
 * `plugins:` list, checks their descriptors and configs before running
 * any of their code, gives each its own struct skald_host table, runs
 * their lifecycle, and keeps them loaded while anything of theirs is in
 * use. The ABI itself is described in include/skald/plugin.h and host.h.
 *
 * Phases, all on the loop thread, driven by the broker:
 *   sk_plugins_load    dlopen, descriptor checks, config validation
 *                      (no plugin code has run yet);
 *   sk_plugins_init    init() of each, in the order of the YAML list;
 *   sk_plugins_start_soon
 *                      start() of each from inside the running loop;
 *   sk_plugins_stop    stop() of each, in reverse order; the loop keeps
 *                      running what they still have in flight, and
 *                      sk_plugins_busy says when that is finished;
 *   sk_plugins_free    stop (if not done), drain, fini() in reverse
 *                      order, then dlclose each plugin that has no
 *                      operation in flight and no registration in use.
 * A refusal anywhere before start stops the broker's start with a
 * message naming the plugin's file and saying expected versus found.
 */
#ifndef SK_PLUGIN_H
#define SK_PLUGIN_H

#include <ev.h>

#include "config.h"
#include "meta.h"
#include "metrics.h"

struct sk_plugins;
struct sk_tier; /* a registered storage tier: plugin_tier.h */

/*
 * Load every plugin of decls (n of them) and validate its config. On
 * failure nothing stays loaded, and err names the file and says what was
 * expected and what was found. n may be 0 (an empty set).
 */
int sk_plugins_load(struct sk_plugins **out, const struct sk_plugin_decl *decls,
		    size_t n, struct sk_err *err);

/*
 * Call init() of each plugin with its host table. loop, meta (for the
 * key/value store) and metrics must outlive the set. On failure the
 * plugins already initialised are stopped and finished (reverse order),
 * and err says which plugin failed and why.
 */
int sk_plugins_init(struct sk_plugins *ps, struct ev_loop *loop,
		    struct sk_meta *meta, struct sk_metrics *metrics,
		    struct sk_err *err);

/*
 * Call start() of each plugin at the next loop iteration. If one fails,
 * failed(arg, message) is called (the broker logs and stops); the later
 * plugins are not started.
 */
void sk_plugins_start_soon(struct sk_plugins *ps,
			   void (*failed)(void *arg, const char *msg),
			   void *arg);

/* Call stop() of each initialised plugin, in reverse order (once). */
void sk_plugins_stop(struct sk_plugins *ps);

/* Operations, posts and pool jobs of plugins still in flight. */
size_t sk_plugins_busy(const struct sk_plugins *ps);

/*
 * Run the loop until no plugin work is in flight or drain_ms passed (for
 * when the loop is no longer running on its own). Safe with NULL.
 */
void sk_plugins_drain(struct sk_plugins *ps, int64_t drain_ms);

/*
 * Stop if not done, drain in-flight work for up to drain_ms (running the
 * loop), fini() each plugin in reverse order, then unload each that is
 * safe to unload (a plugin with work still in flight or a registration
 * still in use stays mapped, with a warning). Safe with NULL.
 */
void sk_plugins_free(struct sk_plugins *ps, int64_t drain_ms);

/* Number of plugins loaded. */
size_t sk_plugins_count(const struct sk_plugins *ps);
/* Name of plugin i (load order). */
const char *sk_plugins_name(const struct sk_plugins *ps, size_t i);

/*
 * The storage tier registered by the plugin called name, or NULL. Names
 * of the plugins that registered one are written to list (", "-joined)
 * for messages.
 */
struct sk_tier *sk_plugins_tier(struct sk_plugins *ps, const char *name,
				char *list, size_t cap);

#endif
