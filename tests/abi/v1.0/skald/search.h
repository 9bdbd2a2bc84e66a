/*
 * Skald plugin ABI: search indexers (reserved).
 *
 * PROVISIONAL. ABI 1.0 has no register_indexer in struct skald_host, so
 * no plugin can provide one yet, and the shape below may still change
 * without a major version bump. It becomes part of the ABI, frozen by the
 * rules of version.h, in the minor version that appends register_indexer
 * to struct skald_host.
 *
 * The intended flow: the broker hands an indexer the batches appended to
 * the topics it indexes (records read with host->records_foreach), on a
 * pool thread, in offset order per partition; searches arrive from the
 * HTTP API and answer with (partition, offset) hits.
 *
 * Compiles alone as C99 or later and as C++11 or later.
 */
#ifndef SKALD_SEARCH_H
#define SKALD_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#include "record.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One hit of a search. Layout frozen once part of the ABI. */
struct skald_search_hit {
	int32_t partition;
	int32_t reserved;
	int64_t offset;
	double score;
};

struct skald_indexer_ops {
	uint32_t size;           /* sizeof(struct skald_indexer_ops) */
	uint32_t flags;
	/* Pool thread: index records of one partition, in offset order. */
	int (*index)(void *ix, const char *topic, int32_t partition,
		     const void *batches, size_t len);
	/* Pool thread: up to max hits for query, best first; *n found. */
	int (*search)(void *ix, const char *topic, const char *query,
		      struct skald_search_hit *hits, size_t max, size_t *n);
};

#ifdef __cplusplus
}
#endif

#endif
