/*
 * The cleaner's offset map: key -> latest offset in bounded memory.
 *
 * Keys are not stored, only a 128-bit SipHash-2-4 of them (fixed keys:
 * the hash need not resist an attacker, who could only make the map
 * think two of their own keys are one), so a slot is 24 bytes whatever
 * the key's size, as in Kafka's SkimpyOffsetMap (an MD5 there). Linear
 * probing; the table doubles up to the budget and is kept at most 3/4
 * full so probes stay short.
 */
#include "compact.h"

#include <stdlib.h>
#include <string.h>

/* One slot: offset -1 marks it empty (offsets are >= 0). */
struct sk_compact_slot {
	uint64_t h0, h1;
	int64_t offset;
};

#define SK_MAP_MIN_SLOTS 1024

/* ------------------------------------------------------------------ */
/* SipHash-2-4 with 128-bit output (Aumasson and Bernstein's reference) */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND                   \
	do {                       \
		v0 += v1;          \
		v1 = ROTL(v1, 13); \
		v1 ^= v0;          \
		v0 = ROTL(v0, 32); \
		v2 += v3;          \
		v3 = ROTL(v3, 16); \
		v3 ^= v2;          \
		v0 += v3;          \
		v3 = ROTL(v3, 21); \
		v3 ^= v0;          \
		v2 += v1;          \
		v1 = ROTL(v1, 17); \
		v1 ^= v2;          \
		v2 = ROTL(v2, 32); \
	} while (0)

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void siphash128(const void *in, size_t len, uint64_t *out0,
		       uint64_t *out1)
{
	/* Any fixed key will do; these spell "skald-compaction". */
	const uint64_t k0 = 0x6f632d646c616b73ull, k1 = 0x6e6f69746361706dull;
	uint64_t v0 = 0x736f6d6570736575ull ^ k0;
	uint64_t v1 = 0x646f72616e646f6dull ^ k1;
	uint64_t v2 = 0x6c7967656e657261ull ^ k0;
	uint64_t v3 = 0x7465646279746573ull ^ k1;
	const uint8_t *p = in, *end = p + (len - len % 8);
	uint64_t b = (uint64_t)len << 56, m;

	v1 ^= 0xee;
	for (; p != end; p += 8) {
		m = le64(p);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (size_t i = 0; i < len % 8; i++)
		b |= (uint64_t)p[i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xee;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	*out0 = v0 ^ v1 ^ v2 ^ v3;
	v1 ^= 0xdd;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	*out1 = v0 ^ v1 ^ v2 ^ v3;
}

/* ------------------------------------------------------------------ */

void sk_compact_map_init(struct sk_compact_map *m, size_t max_bytes)
{
	size_t max = max_bytes / sizeof(struct sk_compact_slot), n = 1;

	memset(m, 0, sizeof(*m));
	m->latest = -1;
	/* The largest power of two within the budget, at least a few. */
	while (n <= max / 2)
		n *= 2;
	m->max_slots = SK_MAX(n, (size_t)16);
}

void sk_compact_map_free(struct sk_compact_map *m)
{
	free(m->slots);
	m->slots = NULL;
	m->n_slots = 0;
	m->used = 0;
	m->latest = -1;
}

/* The slot of (h0, h1): its own, or the empty one where it would go. */
static struct sk_compact_slot *probe(struct sk_compact_slot *slots,
				     size_t n_slots, uint64_t h0, uint64_t h1)
{
	size_t mask = n_slots - 1, i = (size_t)h0 & mask;

	for (;;) {
		struct sk_compact_slot *s = &slots[i];

		if (s->offset < 0 || (s->h0 == h0 && s->h1 == h1))
			return s;
		i = (i + 1) & mask;
	}
}

static struct sk_compact_slot *new_table(size_t n)
{
	struct sk_compact_slot *t = sk_xmalloc(n * sizeof(*t));

	for (size_t i = 0; i < n; i++)
		t[i].offset = -1;
	return t;
}

static void rehash(struct sk_compact_map *m, size_t n)
{
	struct sk_compact_slot *t = new_table(n);

	for (size_t i = 0; i < m->n_slots; i++) {
		struct sk_compact_slot *s = &m->slots[i];

		if (s->offset >= 0)
			*probe(t, n, s->h0, s->h1) = *s;
	}
	free(m->slots);
	m->slots = t;
	m->n_slots = n;
}

/* Keys a table of n slots takes: 3/4 full at most. */
static size_t capacity(size_t n)
{
	return n / 4 * 3;
}

bool sk_compact_map_reserve(struct sk_compact_map *m, size_t n)
{
	size_t want = m->n_slots ? m->n_slots : SK_MAP_MIN_SLOTS;

	if (n >
	    capacity(m->max_slots) - SK_MIN(m->used, capacity(m->max_slots)))
		return false;
	while (capacity(want) < m->used + n && want < m->max_slots)
		want *= 2;
	want = SK_MIN(want, m->max_slots);
	if (want != m->n_slots)
		rehash(m, want);
	return true;
}

void sk_compact_map_put(struct sk_compact_map *m, const void *key, size_t len,
			int64_t offset)
{
	struct sk_compact_slot *s;
	uint64_t h0, h1;

	siphash128(key, len, &h0, &h1);
	s = probe(m->slots, m->n_slots, h0, h1);
	if (s->offset < 0) {
		s->h0 = h0;
		s->h1 = h1;
		m->used++;
	}
	/* Offsets come in order, but a later one must win regardless. */
	if (offset > s->offset)
		s->offset = offset;
	if (offset > m->latest)
		m->latest = offset;
}

int64_t sk_compact_map_get(const struct sk_compact_map *m, const void *key,
			   size_t len)
{
	uint64_t h0, h1;

	if (!m->used)
		return -1;
	siphash128(key, len, &h0, &h1);
	return probe(m->slots, m->n_slots, h0, h1)->offset;
}
