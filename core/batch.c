/*
 * RecordBatch v2: header decoding, produce-time validation, in-place
 * rewrites and record iteration.
 *
 * Batches stay bytes from the socket to the segment file; this file is
 * the one place that decides whether those bytes are safe to store and to
 * hand back to consumers. Validation therefore checks the framing before
 * it looks at anything else and never reads outside [p, p + len).
 */
#include "batch.h"

#include "codec.h"
#include "crc32c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Offsets of the header fields not already named in batch.h. */
#define SK_BATCH_LENGTH_OFFSET	   8
#define SK_BATCH_EPOCH_OFFSET	   12
#define SK_BATCH_LAST_DELTA_OFFSET 23
#define SK_BATCH_BASE_TS_OFFSET	   27
#define SK_BATCH_MAX_TS_OFFSET	   35
#define SK_BATCH_PID_OFFSET	   43
#define SK_BATCH_PEPOCH_OFFSET	   51
#define SK_BATCH_SEQ_OFFSET	   53
#define SK_BATCH_COUNT_OFFSET	   57

/*
 * Smallest legacy (magic 0) message after its offset and size fields:
 * crc, magic, attributes, key length, value length. Kafka treats a size
 * below this as corruption whatever the magic says.
 */
#define SK_BATCH_MIN_LEGACY_SIZE 14

/*
 * Bounds on the decompressed records of one produced batch. Kafka
 * streams through compressed records and so has no such bound; we
 * decompress into one buffer, so we need one. 16 times
 * max.message.bytes leaves room for ratios well beyond what producers
 * reach on real data (their own batch limits count uncompressed bytes or
 * an estimated ratio), with a 64 MiB floor for small limits and a 1 GiB
 * ceiling so that a large max.message.bytes cannot turn one request into
 * tens of GiB of memory. Beyond the bound the batch is MESSAGE_TOO_LARGE,
 * which the Java producer answers by splitting the batch.
 */
#define SK_BATCH_INFLATE_FACTOR 16
#define SK_BATCH_INFLATE_MIN	((size_t)64 << 20)
#define SK_BATCH_INFLATE_MAX	((size_t)1 << 30)
/*
 * The caller's scratch buffer is kept between requests up to this size;
 * a larger one (left by an unusually big batch) is released after use so
 * that one such batch does not pin its memory for the broker's lifetime.
 */
#define SK_BATCH_SCRATCH_KEEP ((size_t)8 << 20)

int sk_batch_parse_header(const uint8_t *p, size_t len, struct sk_batch_hdr *h)
{
	if (len < SK_BATCH_HEADER_SIZE)
		return -EINVAL;
	h->base_offset = (int64_t)sk_be64(p);
	h->batch_length = (int32_t)sk_be32(p + SK_BATCH_LENGTH_OFFSET);
	h->leader_epoch = (int32_t)sk_be32(p + SK_BATCH_EPOCH_OFFSET);
	h->magic = (int8_t)p[SK_BATCH_MAGIC_OFFSET];
	h->crc = sk_be32(p + SK_BATCH_CRC_OFFSET);
	h->attributes = (int16_t)sk_be16(p + SK_BATCH_ATTR_OFFSET);
	h->last_offset_delta = (int32_t)sk_be32(p + SK_BATCH_LAST_DELTA_OFFSET);
	h->base_timestamp = (int64_t)sk_be64(p + SK_BATCH_BASE_TS_OFFSET);
	h->max_timestamp = (int64_t)sk_be64(p + SK_BATCH_MAX_TS_OFFSET);
	h->producer_id = (int64_t)sk_be64(p + SK_BATCH_PID_OFFSET);
	h->producer_epoch = (int16_t)sk_be16(p + SK_BATCH_PEPOCH_OFFSET);
	h->base_sequence = (int32_t)sk_be32(p + SK_BATCH_SEQ_OFFSET);
	h->records_count = (int32_t)sk_be32(p + SK_BATCH_COUNT_OFFSET);
	if (h->magic != 2 ||
	    h->batch_length < SK_BATCH_HEADER_SIZE - SK_BATCH_LOG_OVERHEAD)
		return -EINVAL;
	return 0;
}

/* CRC-32C of bytes 21..len, as stored at offset 17. */
static uint32_t batch_crc(const uint8_t *p, size_t len)
{
	return sk_crc32c(0, p + SK_BATCH_ATTR_OFFSET,
			 len - SK_BATCH_ATTR_OFFSET);
}

bool sk_batch_crc_ok(const uint8_t *p, size_t len)
{
	if (len < SK_BATCH_HEADER_SIZE)
		return false;
	return sk_be32(p + SK_BATCH_CRC_OFFSET) == batch_crc(p, len);
}

/*
 * Walk a batch's records (the bytes after the header, decompressed if
 * need be): exactly count well-formed records with offset deltas 0, 1,
 * 2, ... must fill the bytes. Kafka checks the same when it iterates the
 * batch (InvalidRecordException); the offset-delta rule is stricter than
 * Kafka but every client writes it, and it lets Fetch and the offset
 * index trust lastOffsetDelta for every record.
 */
static bool records_ok(const uint8_t *p, size_t len, int32_t count,
		       struct sk_err *err)
{
	struct sk_rd r;
	struct sk_record rec;
	int32_t i = 0;

	sk_rd_init(&r, p, len);
	while (sk_batch_record_next(&r, &rec)) {
		if (i == count) {
			sk_err_set(err, "more than the %d records declared",
				   count);
			return false;
		}
		if (rec.offset_delta != i) {
			sk_err_set(err, "record %d has offset delta %d", i,
				   rec.offset_delta);
			return false;
		}
		i++;
	}
	if (!sk_rd_ok(&r)) {
		sk_err_set(err, "record %d is malformed", i);
		return false;
	}
	if (i != count) {
		sk_err_set(err, "%d records but %d declared", i, count);
		return false;
	}
	return true;
}

/* The decompressed-size bound for a topic's max.message.bytes. */
static size_t inflate_bound(int64_t max_message_bytes)
{
	uint64_t n = max_message_bytes > 0 ? (uint64_t)max_message_bytes : 0;

	if (n > SK_BATCH_INFLATE_MAX / SK_BATCH_INFLATE_FACTOR)
		return SK_BATCH_INFLATE_MAX;
	return SK_MAX((size_t)n * SK_BATCH_INFLATE_FACTOR,
		      SK_BATCH_INFLATE_MIN);
}

/*
 * Decompress the records of a compressed batch into scratch and check
 * them like an uncompressed batch's. Undecodable data is corruption
 * (CORRUPT_MESSAGE); data that decodes to bad records is INVALID_RECORD,
 * the split Kafka makes between a failing decompression stream and
 * DefaultRecord's InvalidRecordException.
 */
static enum sk_kerr compressed_records_ok(const uint8_t *p, size_t len,
					  const struct sk_batch_hdr *h,
					  int64_t max_message_bytes,
					  struct sk_buf *scratch,
					  struct sk_err *err)
{
	enum sk_codec codec = h->attributes & SK_BATCH_ATTR_CODEC_MASK;
	struct sk_buf own = { 0 };
	struct sk_buf *out = scratch ? scratch : &own;
	enum sk_kerr kerr = SK_KERR_NONE;
	int rc;

	out->len = 0;
	rc = sk_codec_decompress(codec, p + SK_BATCH_HEADER_SIZE,
				 len - SK_BATCH_HEADER_SIZE, out,
				 inflate_bound(max_message_bytes), err);
	if (rc == -E2BIG)
		kerr = SK_KERR_MESSAGE_TOO_LARGE;
	else if (rc == -EBADMSG)
		kerr = SK_KERR_CORRUPT_MESSAGE;
	else if (rc)
		kerr = SK_KERR_UNKNOWN_SERVER_ERROR;
	else if (!records_ok(out->len ? out->data : (const uint8_t *)"",
			     out->len, h->records_count, err))
		kerr = SK_KERR_INVALID_RECORD;
	out->len = 0;
	if (out == &own || out->cap > SK_BATCH_SCRATCH_KEEP)
		sk_buf_free(out);
	return kerr;
}

/* Say why (if err is given) and return kerr. */
static enum sk_kerr refuse(struct sk_err *err, enum sk_kerr kerr,
			   const char *fmt, ...) SK_PRINTF(3, 4);

static enum sk_kerr refuse(struct sk_err *err, enum sk_kerr kerr,
			   const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return kerr;
}

/*
 * Checks run in this order so that each failure gets the code Kafka
 * would give, and so that nothing covered by the CRC is trusted before
 * the CRC is checked:
 *  1. framing: the batch must span exactly len bytes. A short or missing
 *     batch, trailing bytes or a second batch are INVALID_RECORD, as for
 *     Kafka's "exactly one record batch" rule; a size field too small to
 *     be any message is CORRUPT_MESSAGE.
 *  2. magic: 0 and 1 are real but unsupported formats (Skald stores only
 *     v2); anything else is corruption.
 *  3. size against max.message.bytes (MESSAGE_TOO_LARGE), before the CRC
 *     like Kafka, so an oversized batch is refused without hashing it.
 *  4. CRC (CORRUPT_MESSAGE, which clients retry).
 *  5. the LogValidator rules (INVALID_RECORD) and the codec.
 *  6. the records themselves, decompressed first if need be (the most
 *     expensive step, so the last).
 * Codes other than CORRUPT_MESSAGE are not retriable, so a client with a
 * broken encoder fails fast instead of retrying until its timeout.
 */
enum sk_kerr sk_batch_validate_produce(const uint8_t *p, size_t len,
				       int64_t max_message_bytes,
				       struct sk_buf *scratch,
				       struct sk_batch_hdr *h,
				       struct sk_err *err)
{
	int32_t blen;
	int8_t magic;
	int codec;

	if (len < SK_BATCH_LOG_OVERHEAD)
		return refuse(err, SK_KERR_INVALID_RECORD,
			      "%zu bytes cannot hold a batch", len);
	blen = (int32_t)sk_be32(p + SK_BATCH_LENGTH_OFFSET);
	if (blen < SK_BATCH_MIN_LEGACY_SIZE)
		return refuse(err, SK_KERR_CORRUPT_MESSAGE,
			      "batchLength %d is too small", blen);
	/* blen >= 14 here, so len >= 26 below and the magic is in range. */
	if ((uint64_t)blen + SK_BATCH_LOG_OVERHEAD != len)
		return refuse(err, SK_KERR_INVALID_RECORD,
			      "batchLength %d does not span the %zu bytes "
			      "given (one batch expected)",
			      blen, len);

	magic = (int8_t)p[SK_BATCH_MAGIC_OFFSET];
	if (magic == 0 || magic == 1)
		return refuse(err, SK_KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT,
			      "magic %d is not supported", magic);
	if (magic != 2 || sk_batch_parse_header(p, len, h) != 0)
		return refuse(err, SK_KERR_CORRUPT_MESSAGE,
			      "bad magic %d or header", magic);

	if ((int64_t)len > max_message_bytes)
		return refuse(err, SK_KERR_MESSAGE_TOO_LARGE,
			      "%zu bytes exceed max.message.bytes %" PRId64,
			      len, max_message_bytes);
	if (!sk_batch_crc_ok(p, len))
		return refuse(err, SK_KERR_CORRUPT_MESSAGE, "bad CRC");

	if (h->records_count <= 0 || h->last_offset_delta < 0 ||
	    (int64_t)h->last_offset_delta + 1 != h->records_count)
		return refuse(err, SK_KERR_INVALID_RECORD,
			      "recordsCount %d with lastOffsetDelta %d",
			      h->records_count, h->last_offset_delta);
	if (h->attributes & SK_BATCH_ATTR_CONTROL)
		return refuse(err, SK_KERR_INVALID_RECORD,
			      "control batch from a client");
	if (h->producer_id >= 0 && h->base_sequence < 0)
		return refuse(err, SK_KERR_INVALID_RECORD,
			      "producer id %" PRId64 " with sequence %d",
			      h->producer_id, h->base_sequence);
	codec = h->attributes & SK_BATCH_ATTR_CODEC_MASK;
	if (codec > SK_CODEC_ZSTD)
		return refuse(err, SK_KERR_UNSUPPORTED_COMPRESSION_TYPE,
			      "unknown codec %d", codec);

	if (codec == SK_CODEC_NONE) {
		if (!records_ok(p + SK_BATCH_HEADER_SIZE,
				len - SK_BATCH_HEADER_SIZE, h->records_count,
				err))
			return SK_KERR_INVALID_RECORD;
		return SK_KERR_NONE;
	}
	return compressed_records_ok(p, len, h, max_message_bytes, scratch,
				     err);
}

void sk_batch_set_base_offset(uint8_t *p, int64_t base_offset)
{
	sk_put_be64(p, (uint64_t)base_offset);
}

void sk_batch_set_log_append_time(uint8_t *p, size_t len, int64_t ts)
{
	uint16_t attr;

	/* Not a whole batch: nothing sensible to stamp (caller bug). */
	if (len < SK_BATCH_HEADER_SIZE)
		return;
	attr = sk_be16(p + SK_BATCH_ATTR_OFFSET);
	sk_put_be16(p + SK_BATCH_ATTR_OFFSET,
		    (uint16_t)(attr | SK_BATCH_ATTR_LOG_APPEND_TIME));
	sk_put_be64(p + SK_BATCH_MAX_TS_OFFSET, (uint64_t)ts);
	sk_put_be32(p + SK_BATCH_CRC_OFFSET, batch_crc(p, len));
}

/*
 * Read a record's key or value: varint length (-1 null), then the bytes,
 * taken from the record's own reader so they cannot run into the next
 * record.
 */
static struct sk_str record_bytes(struct sk_rd *r)
{
	struct sk_str s = { NULL, -1 };
	int32_t len = sk_rd_varint(r);

	if (len < -1)
		sk_rd_fail(r);
	if (len < 0 || !sk_rd_ok(r))
		return s;
	s.p = sk_rd_raw(r, (size_t)len);
	if (!s.p)
		return (struct sk_str){ NULL, -1 };
	s.len = len;
	return s;
}

/*
 * Step over count record headers, checking each: a non-null key and a
 * possibly null value, both varint-prefixed (Kafka rejects a null header
 * key). Every header takes at least two bytes, so a huge count fails as
 * soon as the record runs out instead of looping.
 */
static void record_skip_headers(struct sk_rd *r, int32_t count)
{
	for (int32_t i = 0; i < count && sk_rd_ok(r); i++) {
		int32_t klen = sk_rd_varint(r);

		if (klen < 0) {
			sk_rd_fail(r);
			break;
		}
		sk_rd_raw(r, (size_t)klen);
		record_bytes(r);
	}
}

/*
 * The record's length varint bounds everything inside it: a sub-reader
 * over exactly that many bytes parses the fields, must not run short and
 * must end exactly at the record's end. Any failure marks the outer
 * reader, so callers see one sticky error for the whole batch.
 */
bool sk_batch_record_next(struct sk_rd *r, struct sk_record *rec)
{
	struct sk_rd in;
	const uint8_t *body;
	int32_t len;

	memset(rec, 0, sizeof(*rec));
	if (!sk_rd_ok(r) || sk_rd_left(r) == 0)
		return false;
	len = sk_rd_varint(r);
	if (len < 0)
		sk_rd_fail(r);
	body = sk_rd_raw(r, (size_t)(len < 0 ? 0 : len));
	if (!sk_rd_ok(r))
		return false;

	sk_rd_init(&in, body, (size_t)len);
	sk_rd_i8(&in); /* record attributes: unused */
	rec->timestamp_delta = sk_rd_varlong(&in);
	rec->offset_delta = sk_rd_varint(&in);
	rec->key = record_bytes(&in);
	rec->value = record_bytes(&in);
	rec->header_count = sk_rd_varint(&in);
	if (rec->header_count < 0)
		sk_rd_fail(&in);
	rec->headers = in.p;
	record_skip_headers(&in, rec->header_count);
	rec->headers_len = (size_t)(in.p - rec->headers);
	if (!sk_rd_ok(&in) || sk_rd_left(&in) != 0) {
		sk_rd_fail(r);
		memset(rec, 0, sizeof(*rec));
		return false;
	}
	return true;
}
