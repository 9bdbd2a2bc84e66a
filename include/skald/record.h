/*
 * Skald plugin ABI: read-only views of Kafka records.
 *
 * A view borrows the bytes of a record batch (or of its decompressed
 * records): every pointer in it is valid only during the callback that
 * received it. Copy what you keep. Lua hooks see the same view.
 *
 * Records are produced by host->records_foreach (host.h), which walks
 * RecordBatch v2 bytes as they are stored in a segment or sent in a
 * Produce request, decompressing batches as needed.
 *
 * Compiles alone as C99 or later and as C++11 or later.
 */
#ifndef SKALD_RECORD_H
#define SKALD_RECORD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One record header. Layout frozen for ABI major 1 (used in arrays). */
struct skald_header_view {
	const char *key;     /* not NUL-terminated */
	const void *value;   /* NULL when value_len is -1 */
	int32_t key_len;
	int32_t value_len;   /* -1: null value */
};

/*
 * One record with the fields of its batch. The broker may append members
 * in later minor versions: size says how many bytes of this struct it
 * filled, and a plugin reads only members it knows of.
 */
struct skald_record_view {
	uint32_t size;          /* sizeof(struct skald_record_view), host's */
	int32_t offset_delta;   /* within its batch */
	int64_t offset;         /* absolute: base_offset + offset_delta */
	int64_t timestamp;      /* absolute, ms since the epoch */
	const void *key;        /* NULL when key_len is -1 */
	const void *value;      /* NULL when value_len is -1 */
	int32_t key_len;        /* -1: null key */
	int32_t value_len;      /* -1: null value (a tombstone) */
	const struct skald_header_view *headers; /* n_headers entries */
	uint32_t n_headers;
	int16_t attributes;     /* the batch's: codec, timestamp type, ... */
	int16_t reserved;       /* 0 */
	int64_t base_offset;    /* of the batch */
	int64_t producer_id;    /* of the batch; -1 without idempotence */
};

/* skald_record_view.attributes bits (Kafka's RecordBatch attributes) */
#define SKALD_RECORD_ATTR_CODEC_MASK 0x07
#define SKALD_RECORD_ATTR_LOG_APPEND_TIME 0x08
#define SKALD_RECORD_ATTR_TRANSACTIONAL 0x10
#define SKALD_RECORD_ATTR_CONTROL 0x20

/* host->records_foreach flags */
#define SKALD_RECORDS_VERIFY_CRC 0x1u /* check each batch's CRC-32C */

/*
 * Called once per record, in offset order. Return 0 to go on; any other
 * value stops the walk and is returned by records_foreach.
 */
typedef int (*skald_record_fn)(void *arg,
			       const struct skald_record_view *record);

#ifdef __cplusplus
}
#endif

#endif
