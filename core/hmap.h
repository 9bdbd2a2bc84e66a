/*
 * An intrusive hash map keyed by byte strings: the node lives inside the
 * owning struct and points at a key the owner keeps, so inserting and
 * removing never allocate except when the bucket array grows.
 *
 * Used by the group coordinator for groups, members, static instance
 * ids and committed offsets, where a rebalance of thousands of members
 * must stay O(1) per request.
 */
#ifndef SK_HMAP_H
#define SK_HMAP_H

#include "util.h"

struct sk_hnode {
	struct sk_hnode *next; /* hash chain */
	uint64_t hash;
	const void *key; /* owned by the containing struct */
	size_t len;
};

struct sk_hmap {
	struct sk_hnode **buckets; /* NULL until the first insert */
	size_t n_buckets;
	size_t count;
};

/* FNV-1a, as the topic registry uses. */
uint64_t sk_hash(const void *p, size_t len);

static inline void sk_hmap_init(struct sk_hmap *m)
{
	m->buckets = NULL;
	m->n_buckets = 0;
	m->count = 0;
}

/* Free the bucket array; the nodes belong to their owners. */
void sk_hmap_fini(struct sk_hmap *m);
struct sk_hnode *sk_hmap_find(const struct sk_hmap *m, const void *key,
			      size_t len);
/* Insert n under key (kept by reference); the key must not be present. */
void sk_hmap_insert(struct sk_hmap *m, struct sk_hnode *n, const void *key,
		    size_t len);
void sk_hmap_remove(struct sk_hmap *m, struct sk_hnode *n);
/*
 * Iteration: first, then next(prev). Removing prev after taking its
 * successor is safe: removal never moves other nodes.
 */
struct sk_hnode *sk_hmap_first(const struct sk_hmap *m);
struct sk_hnode *sk_hmap_next(const struct sk_hmap *m,
			      const struct sk_hnode *prev);

#endif
