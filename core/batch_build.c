/*
 * Building uncompressed RecordBatch v2 batches from records in memory.
 *
 * Used by tests and by the broker for batches it writes itself. Records
 * are encoded straight into the output buffer: each record's length is
 * computed first (it is a varint in front of the record, so its own size
 * depends on it), which avoids a scratch buffer and a copy.
 */
#include "batch.h"

#include "crc32c.h"

#include <assert.h>

/* Bytes taken by v as an unsigned LEB128. */
static size_t leb128_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Bytes taken by v as a zigzag varint (what sk_wr_varint writes). */
static size_t varint_size(int32_t v)
{
	return leb128_size((uint32_t)((uint32_t)v << 1 ^ (uint32_t)(v >> 31)));
}

/* Bytes taken by v as a zigzag varlong (what sk_wr_varlong writes). */
static size_t varlong_size(int64_t v)
{
	return leb128_size((uint64_t)v << 1 ^ (uint64_t)(v >> 63));
}

/* Bytes taken by a varint length (-1 null) and the bytes after it. */
static size_t field_size(int32_t len)
{
	return varint_size(len < 0 ? -1 : len) + (len > 0 ? (size_t)len : 0);
}

/* Write a varint length (-1 null) and the bytes after it. */
static void wr_field(struct sk_wr *w, const void *p, int32_t len)
{
	sk_wr_varint(w, len < 0 ? -1 : len);
	if (len > 0)
		sk_wr_raw(w, p, (size_t)len);
}

/* Size of one record after its length varint. */
static size_t record_body_size(const struct sk_record_in *r, int64_t ts_delta,
			       int32_t offset_delta)
{
	size_t n = 1; /* attributes */

	n += varlong_size(ts_delta) + varint_size(offset_delta);
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
	struct sk_wr w = { out };
	size_t start = out->len, len_at;
	int64_t base_ts = n ? recs[0].timestamp : -1, max_ts = base_ts;
	uint16_t attr = (uint16_t)attributes & ~SK_BATCH_ATTR_CODEC_MASK;
	size_t total;

	assert(n <= INT32_MAX);
	for (size_t i = 1; i < n; i++)
		max_ts = SK_MAX(max_ts, recs[i].timestamp);

	sk_wr_i64(&w, base_offset);
	len_at = sk_wr_i32_reserve(&w);
	sk_wr_i32(&w, -1); /* partitionLeaderEpoch */
	sk_wr_i8(&w, 2);   /* magic */
	sk_wr_i32(&w, 0);  /* crc, patched below */
	sk_wr_i16(&w, (int16_t)attr);
	sk_wr_i32(&w, (int32_t)n - 1);
	sk_wr_i64(&w, base_ts);
	sk_wr_i64(&w, max_ts);
	sk_wr_i64(&w, producer_id);
	sk_wr_i16(&w, producer_epoch);
	sk_wr_i32(&w, base_sequence);
	sk_wr_i32(&w, (int32_t)n);

	for (size_t i = 0; i < n; i++) {
		const struct sk_record_in *r = &recs[i];
		int64_t ts_delta =
			(int64_t)((uint64_t)r->timestamp - (uint64_t)base_ts);
		size_t body = record_body_size(r, ts_delta, (int32_t)i);
		size_t body_at;

		assert(body <= INT32_MAX && r->n_headers >= 0);
		sk_wr_varint(&w, (int32_t)body);
		body_at = out->len;
		sk_wr_i8(&w, 0);
		sk_wr_varlong(&w, ts_delta);
		sk_wr_varint(&w, (int32_t)i);
		wr_field(&w, r->key, r->key_len);
		wr_field(&w, r->value, r->value_len);
		sk_wr_varint(&w, r->n_headers);
		for (int32_t j = 0; j < r->n_headers; j++) {
			const struct sk_record_header_in *h = &r->headers[j];

			wr_field(&w, h->key, h->key_len);
			wr_field(&w, h->value, h->value_len);
		}
		assert(out->len - body_at == body);
		(void)body_at;
	}

	total = out->len - start;
	assert(total - SK_BATCH_LOG_OVERHEAD <= INT32_MAX);
	sk_wr_i32_patch(&w, len_at, (int32_t)(total - SK_BATCH_LOG_OVERHEAD));
	sk_put_be32(out->data + start + SK_BATCH_CRC_OFFSET,
		    sk_crc32c(0, out->data + start + SK_BATCH_ATTR_OFFSET,
			      total - SK_BATCH_ATTR_OFFSET));
}

void sk_batch_record_write(struct sk_buf *out, const struct sk_record *rec,
			   int64_t timestamp_delta, int32_t offset_delta)
{
	struct sk_wr w = { out };
	size_t body = 1; /* attributes */

	body += varlong_size(timestamp_delta) + varint_size(offset_delta);
	body += field_size(rec->key.len) + field_size(rec->value.len);
	body += varint_size(rec->header_count) + rec->headers_len;
	assert(body <= INT32_MAX);
	sk_wr_varint(&w, (int32_t)body);
	sk_wr_i8(&w, 0);
	sk_wr_varlong(&w, timestamp_delta);
	sk_wr_varint(&w, offset_delta);
	wr_field(&w, rec->key.p, rec->key.len);
	wr_field(&w, rec->value.p, rec->value.len);
	sk_wr_varint(&w, rec->header_count);
	if (rec->headers_len)
		sk_wr_raw(&w, rec->headers, rec->headers_len);
}

void sk_batch_frame(struct sk_buf *out, const struct sk_batch_hdr *h,
		    const uint8_t *records, size_t len)
{
	struct sk_wr w = { out };
	size_t start = out->len, total;

	assert(len <= INT32_MAX - SK_BATCH_HEADER_SIZE);
	total = SK_BATCH_HEADER_SIZE + len;
	sk_wr_i64(&w, h->base_offset);
	sk_wr_i32(&w, (int32_t)(total - SK_BATCH_LOG_OVERHEAD));
	sk_wr_i32(&w, h->leader_epoch);
	sk_wr_i8(&w, 2);  /* magic */
	sk_wr_i32(&w, 0); /* crc, patched below */
	sk_wr_i16(&w, h->attributes);
	sk_wr_i32(&w, h->last_offset_delta);
	sk_wr_i64(&w, h->base_timestamp);
	sk_wr_i64(&w, h->max_timestamp);
	sk_wr_i64(&w, h->producer_id);
	sk_wr_i16(&w, h->producer_epoch);
	sk_wr_i32(&w, h->base_sequence);
	sk_wr_i32(&w, h->records_count);
	if (len)
		sk_wr_raw(&w, records, len);
	sk_put_be32(out->data + start + SK_BATCH_CRC_OFFSET,
		    sk_crc32c(0, out->data + start + SK_BATCH_ATTR_OFFSET,
			      total - SK_BATCH_ATTR_OFFSET));
}
