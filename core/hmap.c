#include "hmap.h"

#include <stdlib.h>
#include <string.h>

uint64_t sk_hash(const void *p, size_t len)
{
	const uint8_t *s = p;
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

void sk_hmap_fini(struct sk_hmap *m)
{
	free(m->buckets);
	sk_hmap_init(m);
}

struct sk_hnode *sk_hmap_find(const struct sk_hmap *m, const void *key,
			      size_t len)
{
	uint64_t h;

	if (!m->count)
		return NULL;
	h = sk_hash(key, len);
	for (struct sk_hnode *n = m->buckets[h % m->n_buckets]; n; n = n->next)
		if (n->hash == h && n->len == len &&
		    memcmp(n->key, key, len) == 0)
			return n;
	return NULL;
}

/* Double the bucket array once the load factor passes 1. */
static void grow(struct sk_hmap *m)
{
	size_t nb = m->n_buckets ? m->n_buckets * 2 : 16;
	struct sk_hnode **b = sk_xcalloc(nb, sizeof(*b));

	for (size_t i = 0; i < m->n_buckets; i++) {
		while (m->buckets[i]) {
			struct sk_hnode *n = m->buckets[i];

			m->buckets[i] = n->next;
			n->next = b[n->hash % nb];
			b[n->hash % nb] = n;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->n_buckets = nb;
}

void sk_hmap_insert(struct sk_hmap *m, struct sk_hnode *n, const void *key,
		    size_t len)
{
	size_t slot;

	if (m->count + 1 > m->n_buckets)
		grow(m);
	n->key = key;
	n->len = len;
	n->hash = sk_hash(key, len);
	slot = n->hash % m->n_buckets;
	n->next = m->buckets[slot];
	m->buckets[slot] = n;
	m->count++;
}

void sk_hmap_remove(struct sk_hmap *m, struct sk_hnode *n)
{
	struct sk_hnode **pp = &m->buckets[n->hash % m->n_buckets];

	for (; *pp; pp = &(*pp)->next) {
		if (*pp == n) {
			*pp = n->next;
			m->count--;
			return;
		}
	}
}

static struct sk_hnode *scan(const struct sk_hmap *m, size_t from)
{
	for (size_t i = from; i < m->n_buckets; i++)
		if (m->buckets[i])
			return m->buckets[i];
	return NULL;
}

struct sk_hnode *sk_hmap_first(const struct sk_hmap *m)
{
	return m->count ? scan(m, 0) : NULL;
}

struct sk_hnode *sk_hmap_next(const struct sk_hmap *m,
			      const struct sk_hnode *prev)
{
	if (prev->next)
		return prev->next;
	return scan(m, prev->hash % m->n_buckets + 1);
}
