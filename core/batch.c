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
		       sk_batch_each_fn each, void *arg, struct sk_err *err)
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
		if (each)
			each(arg, &rec);
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
					  struct sk_buf *out,
					  sk_batch_each_fn each, void *arg,
					  struct sk_err *err)
{
	enum sk_codec codec = h->attributes & SK_BATCH_ATTR_CODEC_MASK;
	int rc;

	out->len = 0;
	rc = sk_codec_decompress(codec, p + SK_BATCH_HEADER_SIZE,
				 len - SK_BATCH_HEADER_SIZE, out,
				 inflate_bound(max_message_bytes), err);
	if (rc == -E2BIG)
		return SK_KERR_MESSAGE_TOO_LARGE;
	if (rc == -EBADMSG)
		return SK_KERR_CORRUPT_MESSAGE;
	if (rc)
		return SK_KERR_UNKNOWN_SERVER_ERROR;
	if (!records_ok(out->len ? out->data : (const uint8_t *)"", out->len,
			h->records_count, each, arg, err))
		return SK_KERR_INVALID_RECORD;
	return SK_KERR_NONE;
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
enum sk_kerr sk_batch_validate_header(const uint8_t *p, size_t len,
				      int64_t max_message_bytes,
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

	return SK_KERR_NONE;
}

enum sk_kerr sk_batch_validate_records(const uint8_t *p, size_t len,
				       const struct sk_batch_hdr *h,
				       int64_t max_message_bytes,
				       struct sk_buf *out,
				       sk_batch_each_fn each, void *arg,
				       struct sk_err *err)
{
	if ((h->attributes & SK_BATCH_ATTR_CODEC_MASK) == SK_CODEC_NONE) {
		if (!records_ok(p + SK_BATCH_HEADER_SIZE,
				len - SK_BATCH_HEADER_SIZE, h->records_count,
				each, arg, err))
			return SK_KERR_INVALID_RECORD;
		return SK_KERR_NONE;
	}
	return compressed_records_ok(p, len, h, max_message_bytes, out, each,
				     arg, err);
}

enum sk_kerr sk_batch_validate_produce(const uint8_t *p, size_t len,
				       int64_t max_message_bytes,
				       struct sk_buf *scratch,
				       struct sk_batch_hdr *h,
				       struct sk_err *err)
{
	struct sk_buf own = { 0 };
	struct sk_buf *out = scratch ? scratch : &own;
	enum sk_kerr kerr;

	kerr = sk_batch_validate_header(p, len, max_message_bytes, h, err);
	if (kerr)
		return kerr;
	kerr = sk_batch_validate_records(p, len, h, max_message_bytes, out,
					 NULL, NULL, err);
	if (out == &own)
		sk_buf_free(out);
	else
		sk_batch_scratch_trim(out);
	return kerr;
}

void sk_batch_scratch_trim(struct sk_buf *scratch)
{
	scratch->len = 0;
	if (scratch->cap > SK_BATCH_SCRATCH_KEEP)
		sk_buf_free(scratch);
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
 * Records are read with bare pointers and a bound rather than through an
 * sk_rd: every produced batch is walked here once to validate it, and a
 * hooked one a second time to decode it, so this is per-record work on
 * the produce path. The rules are sk_rd_varint's and sk_rd_varlong's:
 * at most 5 (10) bytes, a varint's value within 32 bits.
 */

/* rec_leb128 beyond two bytes, and its failures. */
static __attribute__((noinline)) bool
rec_leb128_long(const uint8_t **pp, const uint8_t *end, int max, uint64_t *v)
{
	const uint8_t *p = *pp;
	uint64_t x = 0;

	for (int i = 0; i < max && p < end; i++) {
		uint8_t b = *p++;

		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = x;
			*pp = p;
			return true;
		}
	}
	return false; /* ran out, or too long for its type */
}

/*
 * Unsigned LEB128 of at most max (>= 2) bytes at *pp (< end), or false.
 * Most lengths and deltas of a record take one or two bytes: those are
 * read inline, the rest out of line.
 */
static inline __attribute__((always_inline)) bool
rec_leb128(const uint8_t **pp, const uint8_t *end, int max, uint64_t *v)
{
	const uint8_t *p = *pp;

	if (__builtin_expect(p < end && p[0] < 0x80, 1)) {
		*v = p[0];
		*pp = p + 1;
		return true;
	}
	if (end - p >= 2 && p[1] < 0x80) {
		*v = (uint64_t)(p[0] & 0x7f) | (uint64_t)p[1] << 7;
		*pp = p + 2;
		return true;
	}
	return rec_leb128_long(pp, end, max, v);
}

/* A zigzag varint (32 bits), as sk_rd_varint reads it. */
static inline __attribute__((always_inline)) bool
rec_varint(const uint8_t **pp, const uint8_t *end, int32_t *v)
{
	uint64_t u;

	if (!rec_leb128(pp, end, 5, &u) || u > UINT32_MAX)
		return false;
	*v = (int32_t)((uint32_t)u >> 1 ^ -(uint32_t)(u & 1));
	return true;
}

/* A zigzag varlong (64 bits), as sk_rd_varlong reads it. */
static inline __attribute__((always_inline)) bool
rec_varlong(const uint8_t **pp, const uint8_t *end, int64_t *v)
{
	uint64_t u;

	if (!rec_leb128(pp, end, 10, &u))
		return false;
	*v = (int64_t)(u >> 1 ^ -(u & 1));
	return true;
}

/*
 * A key, value or header value: varint length (-1 null, below that an
 * error), then the bytes, which must lie before end.
 */
static inline __attribute__((always_inline)) bool
rec_bytes(const uint8_t **pp, const uint8_t *end, struct sk_str *s)
{
	int32_t len;

	if (!rec_varint(pp, end, &len) || len < -1)
		return false;
	if (len < 0) {
		*s = (struct sk_str){ NULL, -1 };
		return true;
	}
	if ((size_t)(end - *pp) < (size_t)len)
		return false;
	*s = (struct sk_str){ *pp, len };
	*pp += len;
	return true;
}

/*
 * The record's length varint bounds everything inside it: its fields
 * must not run past that length and must end exactly at it. Headers are
 * checked one by one: a non-null key and a possibly null value, both
 * varint-prefixed (Kafka rejects a null header key); each takes at least
 * two bytes, so a huge count fails as soon as the record runs out. Any
 * failure marks r, so callers see one sticky error for the whole batch.
 */
bool sk_batch_record_next(struct sk_rd *r, struct sk_record *rec)
{
	const uint8_t *p = r->p, *end, *tail;
	int32_t len, count;
	struct sk_str k, v;

	if (r->err || p == r->end) {
		memset(rec, 0, sizeof(*rec));
		return false;
	}
	if (!rec_varint(&p, r->end, &len) || len <= 0 ||
	    (size_t)(r->end - p) < (size_t)len)
		goto fail;
	end = p + len;
	p++; /* record attributes: unused */
	if (!rec_varlong(&p, end, &rec->timestamp_delta) ||
	    !rec_varint(&p, end, &rec->offset_delta))
		goto fail;
	tail = p;
	if (!rec_bytes(&p, end, &rec->key) ||
	    !rec_bytes(&p, end, &rec->value) || !rec_varint(&p, end, &count) ||
	    count < 0)
		goto fail;
	rec->header_count = count;
	rec->headers = p;
	for (int32_t i = 0; i < count; i++) {
		if (!rec_bytes(&p, end, &k) || k.len < 0 ||
		    !rec_bytes(&p, end, &v))
			goto fail;
	}
	if (p != end)
		goto fail;
	rec->headers_len = (size_t)(end - rec->headers);
	rec->raw = r->p;
	rec->raw_len = (size_t)(end - r->p);
	rec->tail = tail;
	rec->tail_len = (size_t)(end - tail);
	r->p = end;
	return true;
fail:
	sk_rd_fail(r);
	memset(rec, 0, sizeof(*rec));
	return false;
}
