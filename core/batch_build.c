/*
 * Building uncompressed RecordBatch v2 batches from records in memory.
 *
 * Used by tests, by the broker for batches it writes itself, and to
 * re-encode the records hooks changed or compaction kept. Records are
 * encoded straight into the output buffer: each record's length is
 * computed first (it is a varint in front of the record, so its own size
 * depends on it), room for it is made once, and its fields are written
 * with bare pointers. The batch header goes first with batchLength and
 * CRC left blank, and both are filled in once the records are there, so
 * the CRC is computed once, over the final bytes.
 */
#include "batch.h"

#include "crc32c.h"

#include <assert.h>
#include <string.h>

/* Bytes taken by v as an unsigned LEB128: 7 bits a byte, no loop. */
static inline size_t leb128_size(uint64_t v)
{
	size_t bits = 64 - (size_t)__builtin_clzll(v | 1);

	return (bits * 9 + 64) / 64;
}

/* Bytes taken by v as a zigzag varint (what sk_wr_varint writes). */
static inline size_t varint_size(int32_t v)
{
	return leb128_size((uint32_t)((uint32_t)v << 1 ^ (uint32_t)(v >> 31)));
}

/* Bytes taken by v as a zigzag varlong (what sk_wr_varlong writes). */
static inline size_t varlong_size(int64_t v)
{
	return leb128_size((uint64_t)v << 1 ^ (uint64_t)(v >> 63));
}

/* Bytes taken by a varint length (-1 null) and the bytes after it. */
static inline size_t field_size(int32_t len)
{
	return varint_size(len < 0 ? -1 : len) + (len > 0 ? (size_t)len : 0);
}

/* Write v as an unsigned LEB128 at p; returns the byte after it. */
static inline uint8_t *put_leb128(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static inline uint8_t *put_varint(uint8_t *p, int32_t v)
{
	return put_leb128(p,
			  (uint32_t)((uint32_t)v << 1 ^ (uint32_t)(v >> 31)));
}

static inline uint8_t *put_varlong(uint8_t *p, int64_t v)
{
	return put_leb128(p, (uint64_t)v << 1 ^ (uint64_t)(v >> 63));
}

/* A varint length (-1 null) and the bytes after it. */
static inline uint8_t *put_field(uint8_t *p, const void *s, int32_t len)
{
	p = put_varint(p, len < 0 ? -1 : len);
	if (len > 0) {
		memcpy(p, s, (size_t)len);
		p += len;
	}
	return p;
}

/* Room for n more bytes at the end of out, and where they start. */
static inline uint8_t *room(struct sk_buf *out, size_t n)
{
	if (out->cap - out->len < n)
		sk_buf_reserve(out, n);
	return out->data + out->len;
}

/*
 * What every record starts with: its length (body bytes follow), the
 * attributes (0: none is defined) and the two deltas.
 */
static inline uint8_t *put_record_head(uint8_t *p, size_t body,
				       int64_t ts_delta, int32_t offset_delta)
{
	p = put_varint(p, (int32_t)body);
	*p++ = 0;
	p = put_varlong(p, ts_delta);
	return put_varint(p, offset_delta);
}

/* Size of the head's attributes and deltas (its length excluded). */
static inline size_t record_head_size(int64_t ts_delta, int32_t offset_delta)
{
	return 1 + varlong_size(ts_delta) + varint_size(offset_delta);
}

/* Size of one record after its length varint. */
static size_t record_body_size(const struct sk_record_in *r, int64_t ts_delta,
			       int32_t offset_delta)
{
	size_t n = record_head_size(ts_delta, offset_delta);

	n += field_size(r->key_len) + field_size(r->value_len);
	n += varint_size(r->n_headers);
	for (int32_t i = 0; i < r->n_headers; i++) {
		assert(r->headers[i].key_len >= 0);
		n += field_size(r->headers[i].key_len);
		n += field_size(r->headers[i].value_len);
	}
	return n;
}

/*
 * Timestamp deltas are computed with unsigned arithmetic so extreme
 * timestamps wrap exactly as a reader adding them back expects, rather
 * than overflowing a signed subtraction.
 */
void sk_batch_build(struct sk_buf *out, int64_t base_offset,
		    const struct sk_record_in *recs, size_t n,
		    int16_t attributes, int64_t producer_id,
		    int16_t producer_epoch, int32_t base_sequence)
{
	int64_t base_ts = n ? recs[0].timestamp : -1, max_ts = base_ts;
	struct sk_batch_hdr h;
	size_t start;

	assert(n <= INT32_MAX);
	for (size_t i = 1; i < n; i++)
		max_ts = SK_MAX(max_ts, recs[i].timestamp);
	h = (struct sk_batch_hdr){
		.base_offset = base_offset,
		.leader_epoch = -1,
		.attributes = (int16_t)((uint16_t)attributes &
					~SK_BATCH_ATTR_CODEC_MASK),
		.last_offset_delta = (int32_t)n - 1,
		.base_timestamp = base_ts,
		.max_timestamp = max_ts,
		.producer_id = producer_id,
		.producer_epoch = producer_epoch,
		.base_sequence = base_sequence,
		.records_count = (int32_t)n,
	};
	start = sk_batch_frame_begin(out, &h);

	for (size_t i = 0; i < n; i++) {
		const struct sk_record_in *r = &recs[i];
		int64_t ts_delta =
			(int64_t)((uint64_t)r->timestamp - (uint64_t)base_ts);
		size_t body = record_body_size(r, ts_delta, (int32_t)i);
		uint8_t *p, *q;

		assert(body <= INT32_MAX && r->n_headers >= 0);
		p = q = room(out, varint_size((int32_t)body) + body);
		p = put_record_head(p, body, ts_delta, (int32_t)i);
		p = put_field(p, r->key, r->key_len);
		p = put_field(p, r->value, r->value_len);
		p = put_varint(p, r->n_headers);
		for (int32_t j = 0; j < r->n_headers; j++) {
			const struct sk_record_header_in *hd = &r->headers[j];

			p = put_field(p, hd->key, hd->key_len);
			p = put_field(p, hd->value, hd->value_len);
		}
		assert((size_t)(p - q) == varint_size((int32_t)body) + body);
		out->len += (size_t)(p - q);
	}
	sk_batch_frame_end(out, start);
}

void sk_batch_record_write(struct sk_buf *out, const struct sk_record *rec,
			   int64_t timestamp_delta, int32_t offset_delta)
{
	size_t tail, body;
	uint8_t *p;

	if (rec->raw && timestamp_delta == rec->timestamp_delta &&
	    offset_delta == rec->offset_delta) {
		memcpy(room(out, rec->raw_len), rec->raw, rec->raw_len);
		out->len += rec->raw_len;
		return;
	}
	tail = rec->tail
		       ? rec->tail_len
		       : field_size(rec->key.len) + field_size(rec->value.len) +
				 varint_size(rec->header_count) +
				 rec->headers_len;
	body = record_head_size(timestamp_delta, offset_delta) + tail;
	assert(body <= INT32_MAX);
	p = room(out, varint_size((int32_t)body) + body);
	p = put_record_head(p, body, timestamp_delta, offset_delta);
	if (rec->tail) {
		memcpy(p, rec->tail, tail);
		p += tail;
	} else {
		p = put_field(p, rec->key.p, rec->key.len);
		p = put_field(p, rec->value.p, rec->value.len);
		p = put_varint(p, rec->header_count);
		if (rec->headers_len) {
			memcpy(p, rec->headers, rec->headers_len);
			p += rec->headers_len;
		}
	}
	out->len = (size_t)(p - out->data);
}

size_t sk_batch_frame_begin(struct sk_buf *out, const struct sk_batch_hdr *h)
{
	size_t start = out->len;
	uint8_t *p = sk_buf_extend(out, SK_BATCH_HEADER_SIZE);

	sk_put_be64(p, (uint64_t)h->base_offset);
	sk_put_be32(p + SK_BATCH_LENGTH_OFFSET, 0); /* see frame_end */
	sk_put_be32(p + SK_BATCH_EPOCH_OFFSET, (uint32_t)h->leader_epoch);
	p[SK_BATCH_MAGIC_OFFSET] = 2;
	sk_put_be32(p + SK_BATCH_CRC_OFFSET, 0); /* see frame_end */
	sk_put_be16(p + SK_BATCH_ATTR_OFFSET, (uint16_t)h->attributes);
	sk_put_be32(p + SK_BATCH_LAST_DELTA_OFFSET,
		    (uint32_t)h->last_offset_delta);
	sk_put_be64(p + SK_BATCH_BASE_TS_OFFSET, (uint64_t)h->base_timestamp);
	sk_put_be64(p + SK_BATCH_MAX_TS_OFFSET, (uint64_t)h->max_timestamp);
	sk_put_be64(p + SK_BATCH_PID_OFFSET, (uint64_t)h->producer_id);
	sk_put_be16(p + SK_BATCH_PEPOCH_OFFSET, (uint16_t)h->producer_epoch);
	sk_put_be32(p + SK_BATCH_SEQ_OFFSET, (uint32_t)h->base_sequence);
	sk_put_be32(p + SK_BATCH_COUNT_OFFSET, (uint32_t)h->records_count);
	return start;
}

void sk_batch_frame_end(struct sk_buf *out, size_t start)
{
	uint8_t *p = out->data + start;
	size_t total = out->len - start;

	assert(total >= SK_BATCH_HEADER_SIZE &&
	       total - SK_BATCH_LOG_OVERHEAD <= INT32_MAX);
	sk_put_be32(p + SK_BATCH_LENGTH_OFFSET,
		    (uint32_t)(total - SK_BATCH_LOG_OVERHEAD));
	sk_put_be32(p + SK_BATCH_CRC_OFFSET,
		    sk_crc32c(0, p + SK_BATCH_ATTR_OFFSET,
			      total - SK_BATCH_ATTR_OFFSET));
}

void sk_batch_frame(struct sk_buf *out, const struct sk_batch_hdr *h,
		    const uint8_t *records, size_t len)
{
	size_t start;

	assert(len <= INT32_MAX - SK_BATCH_HEADER_SIZE);
	start = sk_batch_frame_begin(out, h);
	if (len)
		sk_buf_put(out, records, len);
	sk_batch_frame_end(out, start);
}
