/*
 * What hook_chain.c and hook_reload.c share about struct sk_hooks.
 * Loop thread, unless said otherwise.
 */
#ifndef SK_HOOK_INTERNAL_H
#define SK_HOOK_INTERNAL_H

#include "hook.h"

/* A script path and its current version. */
struct hk_script_ent {
	struct sk_hnode node;
	char *path;
	struct sk_hook_script *cur; /* referenced */
	bool used;		    /* named by the configuration in force */
};

struct hk_script_ent *hk_script_find(struct sk_hooks *hs, const char *path);
/* Forget every topic's cached chain: the next batch builds a new one. */
void hk_topics_clear(struct sk_hooks *hs);

/* Take the hooks from cfg at once, compiling here (start-up, tests). */
int hk_hooks_load(struct sk_hooks *hs, const struct sk_config *cfg,
		  struct sk_err *err);
/* Let go of the configured entries (hs->decls). */
void hk_decls_free(struct sk_topic_decl *d, size_t n);
/*
 * Closing: a reload still on the pool is dropped when it comes back, and
 * whoever waits for one is answered. Before and after the pool is freed.
 */
void hk_reload_close(struct sk_hooks *hs);

#endif
