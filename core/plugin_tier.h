/*
 * Storage tiers registered by plugins, as the broker uses them (the log's
 * remote layer): each operation is handed to the plugin (on the loop
 * thread, or on a pool thread for SKALD_TIER_BLOCKING tiers) and its
 * completion comes back to the loop thread as one callback, never from
 * inside the call that started it.
 *
 * The structs and strings passed to an operation, and the fds in them,
 * must stay valid until its callback ran. After the plugin was stopped,
 * operations complete with -ESHUTDOWN.
 */
#ifndef SK_PLUGIN_TIER_H
#define SK_PLUGIN_TIER_H

#include "skald/storage.h"
#include "util.h"

struct sk_tier;

/* The outcome of one operation, borrowed for the callback. */
struct sk_tier_result {
	int rc;		 /* 0 or a negative errno */
	const char *msg; /* the plugin's words, "" if none */
	/* list: the objects found */
	size_t n;
	const char *const *keys;
	const uint64_t *sizes;
};

/* Loop thread, once per operation. */
typedef void (*sk_tier_cb)(void *arg, const struct sk_tier_result *r);

/* Loop thread: start an operation (see storage.h for each). */
void sk_tier_upload(struct sk_tier *t, const struct skald_tier_segment *seg,
		    sk_tier_cb cb, void *arg);
void sk_tier_download(struct sk_tier *t, const struct skald_tier_get *get,
		      sk_tier_cb cb, void *arg);
void sk_tier_remove(struct sk_tier *t, const struct skald_tier_segment *seg,
		    sk_tier_cb cb, void *arg);
void sk_tier_list(struct sk_tier *t, const char *prefix, sk_tier_cb cb,
		  void *arg);

/* The plugin's name. */
const char *sk_tier_name(const struct sk_tier *t);

/*
 * Mark the tier in use (by the log) or no longer: a plugin whose tier is
 * in use is not unloaded.
 */
void sk_tier_use(struct sk_tier *t);
void sk_tier_unuse(struct sk_tier *t);

/* True for results storage.h calls "the tier is unavailable". */
bool sk_tier_retriable(int rc);

#endif
