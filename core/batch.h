/*
 * Kafka RecordBatch v2 (magic 2): header access, produce-time validation,
 * and the in-place rewrites the broker makes (base offset, LogAppendTime).
 *
 * Layout (big-endian), 61 bytes before the records:
 *   0 baseOffset i64, 8 batchLength i32 (bytes after this field),
 *  12 partitionLeaderEpoch i32, 16 magic i8, 17 crc u32,
 *  21 attributes i16, 23 lastOffsetDelta i32, 27 baseTimestamp i64,
 *  35 maxTimestamp i64, 43 producerId i64, 51 producerEpoch i16,
 *  53 baseSequence i32, 57 recordsCount i32.
 * The CRC-32C covers bytes 21..end, so baseOffset and the leader epoch can
 * be rewritten without recomputing it.
 */
#ifndef SK_BATCH_H
#define SK_BATCH_H

#include "kafka_errors.h"
#include "proto.h"

#define SK_BATCH_HEADER_SIZE 61
/* Bytes needed to learn a batch's total size: baseOffset + batchLength. */
#define SK_BATCH_LOG_OVERHEAD	   12
#define SK_BATCH_LENGTH_OFFSET	   8
#define SK_BATCH_EPOCH_OFFSET	   12
#define SK_BATCH_MAGIC_OFFSET	   16
#define SK_BATCH_CRC_OFFSET	   17
#define SK_BATCH_ATTR_OFFSET	   21
#define SK_BATCH_LAST_DELTA_OFFSET 23
#define SK_BATCH_BASE_TS_OFFSET	   27
#define SK_BATCH_MAX_TS_OFFSET	   35
#define SK_BATCH_PID_OFFSET	   43
#define SK_BATCH_PEPOCH_OFFSET	   51
#define SK_BATCH_SEQ_OFFSET	   53
#define SK_BATCH_COUNT_OFFSET	   57

#define SK_BATCH_ATTR_CODEC_MASK      0x07
#define SK_BATCH_ATTR_LOG_APPEND_TIME 0x08
#define SK_BATCH_ATTR_TRANSACTIONAL   0x10
#define SK_BATCH_ATTR_CONTROL	      0x20
/*
 * Set by compaction (KIP-534): baseTimestamp holds the delete horizon,
 * the time after which the cleaner may drop the batch's tombstones;
 * record timestamps stay baseTimestamp + timestampDelta.
 */
#define SK_BATCH_ATTR_DELETE_HORIZON 0x40

enum sk_codec {
	SK_CODEC_NONE = 0,
	SK_CODEC_GZIP = 1,
	SK_CODEC_SNAPPY = 2,
	SK_CODEC_LZ4 = 3,
	SK_CODEC_ZSTD = 4,
};

/* A decoded batch header. */
struct sk_batch_hdr {
	int64_t base_offset;
	int32_t batch_length; /* bytes after the batchLength field */
	int32_t leader_epoch;
	int8_t magic;
	uint32_t crc;
	int16_t attributes;
	int32_t last_offset_delta;
	int64_t base_timestamp;
	int64_t max_timestamp;
	int64_t producer_id;
	int16_t producer_epoch;
	int32_t base_sequence;
	int32_t records_count;
};

/* Total size of the batch on the wire: batch_length + 12. */
static inline size_t sk_batch_size(const struct sk_batch_hdr *h)
{
	return (size_t)h->batch_length + SK_BATCH_LOG_OVERHEAD;
}

/*
 * Decode the header at p (len bytes available). Returns 0, or -EINVAL if
 * len < SK_BATCH_HEADER_SIZE, the magic is not 2, or batchLength is too
 * small to hold a header. Does not check the CRC or that the whole batch
 * is present.
 */
int sk_batch_parse_header(const uint8_t *p, size_t len, struct sk_batch_hdr *h);

/* True if the stored CRC matches bytes 21..len of a whole batch. */
bool sk_batch_crc_ok(const uint8_t *p, size_t len);

/*
 * Validate the records field of one partition of a ProduceRequest with
 * Kafka's rules for client writes: exactly one whole magic-2 batch
 * spanning len bytes, valid CRC, lastOffsetDelta + 1 == recordsCount > 0,
 * no control batch, a known codec, a producer id implies a sequence >= 0,
 * the batch not larger than max_message_bytes, and exactly recordsCount
 * well-formed records with offset deltas 0..n-1. Compressed records are
 * decompressed into scratch for that check (undecodable: CORRUPT_MESSAGE;
 * decoded but malformed: INVALID_RECORD; more than
 * max(64 MiB, 16 x max_message_bytes), at most 1 GiB, once decompressed:
 * MESSAGE_TOO_LARGE).
 *
 * scratch is the caller's, reused across calls so that validation does
 * not allocate per request; its contents are meaningless afterwards, it
 * is released here when it grew past 8 MiB, and the caller frees it when
 * done with it. NULL uses a temporary buffer. h is filled once the header
 * has been parsed. err (may be NULL) says why a batch was refused.
 * Returns SK_KERR_NONE or the Kafka error to answer with
 * (CORRUPT_MESSAGE, INVALID_RECORD, MESSAGE_TOO_LARGE,
 * UNSUPPORTED_COMPRESSION_TYPE, UNSUPPORTED_FOR_MESSAGE_FORMAT, and
 * UNKNOWN_SERVER_ERROR if a decoder cannot allocate its state).
 */
enum sk_kerr sk_batch_validate_produce(const uint8_t *p, size_t len,
				       int64_t max_message_bytes,
				       struct sk_buf *scratch,
				       struct sk_batch_hdr *h,
				       struct sk_err *err);

/*
 * The same in two steps, for a caller that checks the records elsewhere
 * (a hooked batch: on the hook worker, in the pass that decodes them).
 * The header step is everything but the records, the CRC included.
 */
enum sk_kerr sk_batch_validate_header(const uint8_t *p, size_t len,
				      int64_t max_message_bytes,
				      struct sk_batch_hdr *h,
				      struct sk_err *err);

struct sk_record;
/* Called for each record, in order, as it passes the checks. */
typedef void (*sk_batch_each_fn)(void *arg, const struct sk_record *rec);

/*
 * The records step, on a batch whose header step passed (h): compressed
 * records are decompressed into out (emptied first), where each's
 * records point and which the caller frees; each may be NULL. Errors as
 * sk_batch_validate_produce's. each may have seen records before a
 * later one fails.
 */
enum sk_kerr sk_batch_validate_records(const uint8_t *p, size_t len,
				       const struct sk_batch_hdr *h,
				       int64_t max_message_bytes,
				       struct sk_buf *out,
				       sk_batch_each_fn each, void *arg,
				       struct sk_err *err);
/* Empty a reused scratch buffer, releasing it past 8 MiB. */
void sk_batch_scratch_trim(struct sk_buf *scratch);

/* Rewrite baseOffset in place (outside the CRC). */
void sk_batch_set_base_offset(uint8_t *p, int64_t base_offset);

/*
 * Stamp a whole batch with LogAppendTime ts: set attribute bit 3 and
 * maxTimestamp, then recompute the CRC.
 */
void sk_batch_set_log_append_time(uint8_t *p, size_t len, int64_t ts);

/* One record of an uncompressed batch, borrowed from the batch bytes. */
struct sk_record {
	int64_t timestamp_delta;
	int32_t offset_delta;
	struct sk_str key;   /* len -1 for null */
	struct sk_str value; /* len -1 for null */
	int32_t header_count;
	const uint8_t *headers; /* raw header bytes, header_count entries */
	size_t headers_len;
	/*
	 * Where sk_batch_record_next found the record: all its wire bytes,
	 * length varint included (raw), and those from the key's length to
	 * the end of the headers (tail). sk_batch_record_write copies them
	 * rather than encoding the fields. NULL (lengths 0) for a record
	 * made by hand, or whose key, value or headers were changed.
	 */
	const uint8_t *raw;
	size_t raw_len;
	const uint8_t *tail;
	size_t tail_len;
};

/*
 * Iterate the records of an uncompressed batch: initialise r over the
 * bytes after the 61-byte header (or over the decompressed records of a
 * compressed batch), then call until it returns false.
 * A malformed record sets r->err and returns false.
 */
bool sk_batch_record_next(struct sk_rd *r, struct sk_record *rec);

/* One record header for sk_batch_build; the key may not be null. */
struct sk_record_header_in {
	const void *key;
	int32_t key_len;
	const void *value;
	int32_t value_len; /* -1 for null */
};

/*
 * One record for sk_batch_build, borrowed for the duration of the call.
 * A pointer may be NULL when its length is 0 or -1.
 */
struct sk_record_in {
	const void *key;
	int32_t key_len; /* -1 for null */
	const void *value;
	int32_t value_len; /* -1 for null */
	int64_t timestamp; /* absolute, ms */
	const struct sk_record_header_in *headers;
	int32_t n_headers;
};

/*
 * Append to out one uncompressed v2 batch holding recs[0..n) with offset
 * deltas 0..n-1 and a valid CRC. baseTimestamp is the first record's
 * timestamp and maxTimestamp the largest (both -1 when n is 0, which
 * gives the empty batch Kafka writes after compaction, lastOffsetDelta
 * -1). partitionLeaderEpoch is written as -1, as clients do. The codec
 * bits of attributes are ignored; the transactional, control and
 * timestamp-type bits are kept. For tests and for batches the broker
 * makes itself (Lua transforms, transaction markers); sizes are trusted.
 */
void sk_batch_build(struct sk_buf *out, int64_t base_offset,
		    const struct sk_record_in *recs, size_t n,
		    int16_t attributes, int64_t producer_id,
		    int16_t producer_epoch, int32_t base_sequence);

/*
 * Bytes a record takes beyond its key, value and raw header bytes, at
 * most: length, attributes, deltas, key, value and header-count varints.
 * For sizing a buffer once for many records.
 */
#define SK_BATCH_RECORD_OVERHEAD_MAX (5 + 1 + 10 + 5 + 5 + 5 + 5)

/*
 * Append one record in wire form with the given deltas, and rec's key,
 * value and raw headers: how the cleaner re-encodes the records it keeps
 * when a batch's baseTimestamp changes, and hooks the records of a batch
 * they changed. A record is written as attributes 0 and varints in their
 * shortest form, except that bytes rec says it was decoded from are
 * copied as they are, as for a batch that is stored unchanged: rec->raw
 * whole when the deltas are rec's own, else rec->tail after the new
 * length, attributes and deltas.
 */
void sk_batch_record_write(struct sk_buf *out, const struct sk_record *rec,
			   int64_t timestamp_delta, int32_t offset_delta);

/*
 * Append a whole batch: a header with h's base offset, leader epoch,
 * attributes, lastOffsetDelta, timestamps, producer fields and
 * recordsCount (batchLength, magic and CRC are computed), then len bytes
 * of records, already compressed when the codec bits say so. Unlike
 * sk_batch_build, nothing ties lastOffsetDelta to recordsCount: a
 * compacted batch keeps its original offset range with fewer records.
 */
void sk_batch_frame(struct sk_buf *out, const struct sk_batch_hdr *h,
		    const uint8_t *records, size_t len);

/*
 * sk_batch_frame in two steps, for records written straight into out:
 * sk_batch_frame_begin appends the header and returns where the batch
 * starts; the caller appends the records (already compressed when the
 * codec bits say so); sk_batch_frame_end fills in batchLength and the
 * CRC over everything appended since.
 */
size_t sk_batch_frame_begin(struct sk_buf *out, const struct sk_batch_hdr *h);
void sk_batch_frame_end(struct sk_buf *out, size_t start);

#endif
