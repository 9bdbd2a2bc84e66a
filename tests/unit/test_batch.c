/*
 * RecordBatch v2: build -> parse -> validate, one test per validation
 * rule with the Kafka error it must produce, the in-place rewrites,
 * record iteration (including malformed records), and compressed batches
 * (decompressed and checked like uncompressed ones). Inputs are copied
 * into exact-size heap blocks so ASan catches any read past len.
 */
#include "batch.h"
#include "codec.h"
#include "crc32c.h"
#include "tap.h"

#include <errno.h>
#include <stdlib.h>

/* clang-format off */
static const struct sk_record_header_in hdrs0[] = {
	{ "h1", 2, "v1", 2 },
	{ "h2", 2, NULL, -1 },
	{ "", 0, "", 0 },
};
/* clang-format on */
static uint8_t big_value[300];
static uint8_t big_hval[200];
static struct sk_record_header_in hdrs2[1];
static struct sk_record_in recs[3];
/* Validation's scratch buffer, shared by every test as the broker does. */
static struct sk_buf scratch;

/* Three records covering null/empty keys and values and headers. */
static void init_records(void)
{
	for (size_t i = 0; i < sizeof(big_value); i++)
		big_value[i] = (uint8_t)(i * 7);
	for (size_t i = 0; i < sizeof(big_hval); i++)
		big_hval[i] = (uint8_t)(255 - i);
	hdrs2[0] = (struct sk_record_header_in){ "big", 3, big_hval,
						 (int32_t)sizeof(big_hval) };
	recs[0] = (struct sk_record_in){ "k0", 2, "v0", 2, 1000, hdrs0, 3 };
	recs[1] = (struct sk_record_in){ NULL, -1, NULL, 0, 1005, NULL, 0 };
	recs[2] = (struct sk_record_in){
		"", 0, big_value, (int32_t)sizeof(big_value), 999, hdrs2, 1
	};
}

/* The standard test batch, with the given attributes and producer. */
static void build3(struct sk_buf *b, int16_t attr, int64_t pid, int32_t seq)
{
	b->len = 0;
	sk_batch_build(b, 0, recs, 3, attr, pid, pid >= 0 ? 3 : -1, seq);
}

/* Recompute the CRC after a test edits bytes inside it. */
static void refresh_crc(uint8_t *p, size_t len)
{
	sk_put_be32(p + SK_BATCH_CRC_OFFSET,
		    sk_crc32c(0, p + SK_BATCH_ATTR_OFFSET,
			      len - SK_BATCH_ATTR_OFFSET));
}

/* Validate an exact-size copy of p[0..len). */
static enum sk_kerr validate(const uint8_t *p, size_t len, int64_t max)
{
	uint8_t *q = malloc(len ? len : 1);
	struct sk_batch_hdr h;
	enum sk_kerr e;

	if (len)
		memcpy(q, p, len);
	e = sk_batch_validate_produce(q, len, max, &scratch, &h, NULL);
	free(q);
	return e;
}

#define MAXB 1000000

static bool str_eq(struct sk_str s, const void *p, int32_t len)
{
	if (len < 0)
		return s.p == NULL && s.len == -1;
	return s.len == len && (len == 0 || memcmp(s.p, p, (size_t)len) == 0);
}

/* Headers of a record, parsed back and compared with what was built. */
static bool headers_eq(const struct sk_record *rec,
		       const struct sk_record_in *in)
{
	struct sk_rd r;

	if (rec->header_count != in->n_headers)
		return false;
	sk_rd_init(&r, rec->headers, rec->headers_len);
	for (int32_t i = 0; i < in->n_headers; i++) {
		const struct sk_record_header_in *h = &in->headers[i];
		int32_t kl = sk_rd_varint(&r);
		const uint8_t *k = sk_rd_raw(&r, kl < 0 ? 0 : (size_t)kl);
		int32_t vl = sk_rd_varint(&r);
		const uint8_t *v = vl < 0 ? NULL : sk_rd_raw(&r, (size_t)vl);

		if (!sk_rd_ok(&r) || kl != h->key_len ||
		    memcmp(k, h->key, (size_t)kl) != 0 || vl != h->value_len ||
		    (vl > 0 && memcmp(v, h->value, (size_t)vl) != 0))
			return false;
	}
	return sk_rd_ok(&r) && sk_rd_left(&r) == 0;
}

static void test_build_parse(void)
{
	struct sk_buf b = { 0 };
	struct sk_batch_hdr h;
	struct sk_record rec;
	struct sk_rd r;
	bool recs_ok = true;
	int n = 0;

	build3(&b, 0, -1, -1);
	is(sk_batch_parse_header(b.data, b.len, &h), 0, "header parses");
	is(h.base_offset, 0, "baseOffset");
	is(h.batch_length, b.len - SK_BATCH_LOG_OVERHEAD,
	   "batchLength counts the bytes after it");
	is(sk_batch_size(&h), b.len, "sk_batch_size is the whole batch");
	is(h.leader_epoch, -1, "partitionLeaderEpoch -1");
	is(h.magic, 2, "magic 2");
	is(h.attributes, 0, "attributes");
	is(h.last_offset_delta, 2, "lastOffsetDelta");
	is(h.base_timestamp, 1000, "baseTimestamp is the first record's");
	is(h.max_timestamp, 1005, "maxTimestamp is the largest");
	ok(h.producer_id == -1 && h.producer_epoch == -1 &&
		   h.base_sequence == -1,
	   "no producer: -1/-1/-1");
	is(h.records_count, 3, "recordsCount");
	is(h.crc, sk_crc32c(0, b.data + 21, b.len - 21),
	   "crc covers bytes 21..end");
	ok(sk_batch_crc_ok(b.data, b.len), "sk_batch_crc_ok");
	memset(&h, 0, sizeof(h));
	is(sk_batch_validate_produce(b.data, b.len, MAXB, NULL, &h, NULL),
	   SK_KERR_NONE, "built batch validates");
	ok(h.records_count == 3 && h.batch_length == (int32_t)b.len - 12,
	   "validate fills the header");

	sk_rd_init(&r, b.data + SK_BATCH_HEADER_SIZE,
		   b.len - SK_BATCH_HEADER_SIZE);
	while (sk_batch_record_next(&r, &rec)) {
		const struct sk_record_in *in = &recs[n];

		recs_ok &= n < 3;
		if (!recs_ok)
			break;
		recs_ok &= rec.offset_delta == n;
		recs_ok &=
			h.base_timestamp + rec.timestamp_delta == in->timestamp;
		recs_ok &= str_eq(rec.key, in->key, in->key_len);
		recs_ok &= str_eq(rec.value, in->value, in->value_len);
		recs_ok &= headers_eq(&rec, in);
		n++;
	}
	ok(sk_rd_ok(&r) && n == 3, "iteration ends cleanly after 3 records");
	ok(recs_ok, "keys, values, headers, deltas byte-exact");

	/* The specific null/empty cases, spelled out. */
	sk_rd_init(&r, b.data + SK_BATCH_HEADER_SIZE,
		   b.len - SK_BATCH_HEADER_SIZE);
	sk_batch_record_next(&r, &rec);
	sk_batch_record_next(&r, &rec);
	ok(rec.key.p == NULL && rec.key.len == -1, "null key is null");
	ok(rec.value.p != NULL && rec.value.len == 0, "empty value is empty");
	ok(rec.header_count == 0 && rec.headers_len == 0, "no headers");
	sk_batch_record_next(&r, &rec);
	ok(rec.key.p != NULL && rec.key.len == 0, "empty key is not null");
	ok(rec.timestamp_delta == -1, "negative timestamp delta");
	sk_buf_free(&b);
}

/* One record pinned to the bytes Kafka's DefaultRecord writes. */
static void test_golden_record(void)
{
	struct sk_buf b = { 0 };
	struct sk_record_in one = { NULL, -1, "a", 1, 42, NULL, 0 };
	static const uint8_t want[] = { 0x0e, 0x00, 0x00, 0x00,
					0x01, 0x02, 'a',  0x00 };

	sk_batch_build(&b, 0, &one, 1, 0, -1, -1, -1);
	ok(b.len == SK_BATCH_HEADER_SIZE + sizeof(want) &&
		   memcmp(b.data + SK_BATCH_HEADER_SIZE, want, sizeof(want)) ==
			   0,
	   "record encoding matches Kafka's layout");
	sk_buf_free(&b);
}

static void test_builder(void)
{
	struct sk_buf b = { 0 };
	struct sk_batch_hdr h, h2;
	struct sk_record_in ext[2] = {
		{ "a", 1, "b", 1, INT64_MAX, NULL, 0 },
		{ "c", 1, "d", 1, INT64_MIN, NULL, 0 },
	};
	struct sk_record rec;
	struct sk_rd r;
	size_t first;

	build3(&b, 0x13, 9, 0); /* gzip bits + transactional */
	sk_batch_parse_header(b.data, b.len, &h);
	is(h.attributes, SK_BATCH_ATTR_TRANSACTIONAL,
	   "codec bits dropped, transactional kept");
	ok(h.producer_id == 9 && h.producer_epoch == 3 && h.base_sequence == 0,
	   "producer fields written");
	is(validate(b.data, b.len, MAXB), SK_KERR_NONE,
	   "transactional batch with pid and seq validates");

	b.len = 0;
	sk_batch_build(&b, 5, NULL, 0, 0, -1, -1, -1);
	sk_batch_parse_header(b.data, b.len, &h);
	ok(b.len == SK_BATCH_HEADER_SIZE && h.records_count == 0 &&
		   h.last_offset_delta == -1 && h.base_timestamp == -1 &&
		   h.max_timestamp == -1 && sk_batch_crc_ok(b.data, b.len),
	   "empty batch: count 0, lastOffsetDelta -1, timestamps -1");
	is(validate(b.data, b.len, MAXB), SK_KERR_INVALID_RECORD,
	   "count 0 rejected");

	/* Appending after existing bytes. */
	b.len = 0;
	sk_buf_put(&b, "xyz", 3);
	sk_batch_build(&b, 0, recs, 3, 0, -1, -1, -1);
	first = b.len;
	sk_batch_build(&b, 3, recs, 2, 0, -1, -1, -1);
	sk_batch_parse_header(b.data + 3, first - 3, &h);
	sk_batch_parse_header(b.data + first, b.len - first, &h2);
	ok(validate(b.data + 3, first - 3, MAXB) == SK_KERR_NONE &&
		   validate(b.data + first, b.len - first, MAXB) ==
			   SK_KERR_NONE &&
		   h2.base_offset == 3 && h2.records_count == 2,
	   "batches appended to a non-empty buffer are independent");

	/* Extreme timestamps: the delta wraps and adds back exactly. */
	b.len = 0;
	sk_batch_build(&b, 0, ext, 2, 0, -1, -1, -1);
	sk_batch_parse_header(b.data, b.len, &h);
	sk_rd_init(&r, b.data + 61, b.len - 61);
	sk_batch_record_next(&r, &rec);
	sk_batch_record_next(&r, &rec);
	ok(sk_rd_ok(&r) && h.max_timestamp == INT64_MAX &&
		   (int64_t)((uint64_t)h.base_timestamp +
			     (uint64_t)rec.timestamp_delta) == INT64_MIN,
	   "extreme timestamps round trip");
	sk_buf_free(&b);
}

/*
 * A record of a set: key (NULL: null), value (NULL: null), headers.
 * Six records with keys, null keys and values, empty ones and headers
 * (one with a null header value), some long enough for 2-byte varints.
 */
static struct sk_record_in mixed[6];

static void init_mixed(void)
{
	mixed[0] = (struct sk_record_in){ "k0", 2, "v0", 2, 2000, hdrs0, 3 };
	mixed[1] = (struct sk_record_in){ NULL, -1, NULL, -1, 2001, NULL, 0 };
	mixed[2] = (struct sk_record_in){
		"k2", 2, big_value, (int32_t)sizeof(big_value), 1990, hdrs2, 1
	};
	mixed[3] = (struct sk_record_in){ "", 0, NULL, -1, 2500, hdrs0, 3 };
	mixed[4] = (struct sk_record_in){ NULL, -1, "", 0, 2000, NULL, 0 };
	mixed[5] = (struct sk_record_in){ big_hval, 100,   "v5", 2,
					  1000000,  hdrs0, 2 };
}

/* The records of an uncompressed batch, decoded; returns how many. */
static size_t decode_all(const uint8_t *p, size_t len, struct sk_record *out,
			 size_t max, bool *ok_out)
{
	struct sk_rd r;
	size_t n = 0;

	sk_rd_init(&r, p + SK_BATCH_HEADER_SIZE, len - SK_BATCH_HEADER_SIZE);
	while (n < max && sk_batch_record_next(&r, &out[n]))
		n++;
	*ok_out = sk_rd_ok(&r) && sk_rd_left(&r) == 0;
	return n;
}

/*
 * sk_batch_record_write: a decoded record copied (raw, or tail after new
 * deltas) is byte for byte what encoding its fields gives, and a batch
 * keeping some records of another (as hooks and the cleaner make it)
 * has the kept records' content and offset deltas, whichever path wrote
 * them.
 */
static void test_record_write(void)
{
	static const int keep[] = { 0, 2, 3, 5 };
	struct sk_buf b = { 0 }, copy = { 0 }, fields = { 0 }, tmp = { 0 };
	struct sk_record dec[6], back[6];
	struct sk_batch_hdr h, nh;
	bool all = true, rd_ok;
	size_t n, s1, s2;

	init_mixed();
	sk_batch_build(&b, 0, mixed, 6, 0, 11, 2, 40);
	sk_batch_parse_header(b.data, b.len, &h);
	n = decode_all(b.data, b.len, dec, 6, &rd_ok);
	ok(n == 6 && rd_ok && validate(b.data, b.len, MAXB) == SK_KERR_NONE,
	   "mixed batch: 6 records, valid");
	for (size_t i = 0; i < n; i++) {
		struct sk_record bare = dec[i];
		size_t whole = (size_t)(dec[i].raw_len);

		bare.raw = bare.tail = NULL;
		bare.raw_len = bare.tail_len = 0;
		all &= dec[i].tail > dec[i].raw &&
		       dec[i].tail + dec[i].tail_len == dec[i].raw + whole &&
		       dec[i].headers + dec[i].headers_len ==
			       dec[i].raw + whole;
		/* Own deltas: raw copy; by fields; tail after the deltas. */
		tmp.len = 0;
		sk_batch_record_write(&tmp, &dec[i], dec[i].timestamp_delta,
				      dec[i].offset_delta);
		all &= tmp.len == whole &&
		       memcmp(tmp.data, dec[i].raw, whole) == 0;
		tmp.len = 0;
		sk_batch_record_write(&tmp, &bare, dec[i].timestamp_delta,
				      dec[i].offset_delta);
		all &= tmp.len == whole &&
		       memcmp(tmp.data, dec[i].raw, whole) == 0;
		/* New deltas (2-byte varints now): tail copy == fields. */
		copy.len = fields.len = 0;
		sk_batch_record_write(&copy, &dec[i],
				      dec[i].timestamp_delta + 100000,
				      dec[i].offset_delta + 70);
		sk_batch_record_write(&fields, &bare,
				      dec[i].timestamp_delta + 100000,
				      dec[i].offset_delta + 70);
		all &= copy.len == fields.len &&
		       memcmp(copy.data, fields.data, copy.len) == 0;
		{
			struct sk_rd r;
			struct sk_record x;

			sk_rd_init(&r, copy.data, copy.len);
			all &= sk_batch_record_next(&r, &x) &&
			       sk_rd_left(&r) == 0 &&
			       x.timestamp_delta ==
				       dec[i].timestamp_delta + 100000 &&
			       x.offset_delta == dec[i].offset_delta + 70 &&
			       str_eq(x.key, mixed[i].key, mixed[i].key_len) &&
			       str_eq(x.value, mixed[i].value,
				      mixed[i].value_len) &&
			       headers_eq(&x, &mixed[i]);
		}
	}
	ok(all, "a decoded record written back: copied or by fields, with "
		"its own deltas or new ones, the same bytes and content");

	/* Records 1 and 4 dropped: copied vs encoded field by field. */
	nh = h;
	nh.records_count = (int32_t)SK_ARRAY_SIZE(keep);
	copy.len = fields.len = 0;
	s1 = sk_batch_frame_begin(&copy, &nh);
	s2 = sk_batch_frame_begin(&fields, &nh);
	for (size_t j = 0; j < SK_ARRAY_SIZE(keep); j++) {
		struct sk_record bare = dec[keep[j]];

		bare.raw = bare.tail = NULL;
		sk_batch_record_write(&copy, &dec[keep[j]],
				      dec[keep[j]].timestamp_delta,
				      dec[keep[j]].offset_delta);
		sk_batch_record_write(&fields, &bare, bare.timestamp_delta,
				      bare.offset_delta);
	}
	sk_batch_frame_end(&copy, s1);
	sk_batch_frame_end(&fields, s2);
	ok(copy.len == fields.len &&
		   memcmp(copy.data, fields.data, copy.len) == 0,
	   "a batch with records dropped: copying kept records gives the "
	   "bytes encoding them does");
	sk_batch_parse_header(copy.data, copy.len, &nh);
	n = decode_all(copy.data, copy.len, back, 6, &rd_ok);
	all = n == 4 && rd_ok && sk_batch_crc_ok(copy.data, copy.len) &&
	      nh.batch_length == (int32_t)(copy.len - SK_BATCH_LOG_OVERHEAD) &&
	      nh.records_count == 4 && nh.last_offset_delta == 5 &&
	      nh.base_timestamp == h.base_timestamp &&
	      nh.max_timestamp == h.max_timestamp && nh.producer_id == 11 &&
	      nh.producer_epoch == 2 && nh.base_sequence == 40;
	for (size_t j = 0; j < n && j < SK_ARRAY_SIZE(keep); j++) {
		const struct sk_record_in *in = &mixed[keep[j]];

		all &= back[j].offset_delta == keep[j] &&
		       (int64_t)((uint64_t)nh.base_timestamp +
				 (uint64_t)back[j].timestamp_delta) ==
			       in->timestamp &&
		       str_eq(back[j].key, in->key, in->key_len) &&
		       str_eq(back[j].value, in->value, in->value_len) &&
		       headers_eq(&back[j], in);
	}
	ok(all,
	   "and it has a valid CRC and length, the header's fields, and "
	   "records 0, 2, 3, 5 with their offset deltas, timestamps, keys, "
	   "values and headers");
	/* Nothing dropped, written by copying: the validator takes it. */
	nh = h;
	copy.len = 0;
	s1 = sk_batch_frame_begin(&copy, &nh);
	for (size_t i = 0; i < 6; i++)
		sk_batch_record_write(&copy, &dec[i], dec[i].timestamp_delta,
				      dec[i].offset_delta);
	sk_batch_frame_end(&copy, s1);
	ok(copy.len == b.len && memcmp(copy.data, b.data, b.len) == 0 &&
		   validate(copy.data, copy.len, MAXB) == SK_KERR_NONE,
	   "all records copied into a new frame: the original batch");
	sk_buf_free(&b);
	sk_buf_free(&copy);
	sk_buf_free(&fields);
	sk_buf_free(&tmp);
}

/*
 * Varint lengths at every size boundary: what the builder writes must
 * decode back (the sizes it computes are the bytes it writes, which it
 * asserts), for lengths and deltas of 1 to 7 bytes.
 */
static void test_varint_sizes(void)
{
	static const int64_t ts[] = { 0,    63,	     64,      8191,
				      8192, 1048575, 1048576, INT64_C(1) << 40,
				      -1,   -65 };
	static uint8_t big[1 << 17];
	static const int32_t lens[] = { 0, 1, 63, 64, 8191, 8192, 1 << 17 };
	struct sk_record_in in[SK_ARRAY_SIZE(lens)];
	struct sk_buf b = { 0 };
	bool all = true;

	for (size_t t = 0; t < SK_ARRAY_SIZE(ts); t++) {
		for (size_t i = 0; i < SK_ARRAY_SIZE(lens); i++)
			in[i] = (struct sk_record_in){
				big,
				lens[i],
				big,
				lens[SK_ARRAY_SIZE(lens) - 1 - i],
				(int64_t)i * ts[t],
				NULL,
				0
			};
		b.len = 0;
		sk_batch_build(&b, 0, in, SK_ARRAY_SIZE(lens), 0, -1, -1, -1);
		all &= validate(b.data, b.len, INT32_MAX) == SK_KERR_NONE;
	}
	ok(all, "varints of every length round trip through build and "
		"validation");
	sk_buf_free(&b);
}

static void test_parse_header_errors(void)
{
	struct sk_buf b = { 0 };
	struct sk_batch_hdr h;

	build3(&b, 0, -1, -1);
	is(sk_batch_parse_header(b.data, 60, &h), -EINVAL,
	   "parse_header: 60 bytes is too short");
	ok(!sk_batch_crc_ok(b.data, 60), "crc_ok: 60 bytes is false");
	b.data[SK_BATCH_MAGIC_OFFSET] = 1;
	is(sk_batch_parse_header(b.data, b.len, &h), -EINVAL,
	   "parse_header: magic 1");
	b.data[SK_BATCH_MAGIC_OFFSET] = 2;
	sk_put_be32(b.data + 8, 48);
	is(sk_batch_parse_header(b.data, b.len, &h), -EINVAL,
	   "parse_header: batchLength 48 cannot hold a header");
	sk_put_be32(b.data + 8, 49);
	is(sk_batch_parse_header(b.data, b.len, &h), 0,
	   "parse_header: batchLength 49 is a bare header");
	sk_buf_free(&b);
}

/* A batch with one header field set, CRC recomputed. */
static enum sk_kerr with_field32(const struct sk_buf *b, size_t off, uint32_t v,
				 size_t off2, uint32_t v2)
{
	uint8_t *q = malloc(b->len);
	enum sk_kerr e;

	memcpy(q, b->data, b->len);
	sk_put_be32(q + off, v);
	if (off2)
		sk_put_be32(q + off2, v2);
	refresh_crc(q, b->len);
	e = validate(q, b->len, MAXB);
	free(q);
	return e;
}

static void test_validate(void)
{
	struct sk_buf b = { 0 }, two = { 0 };
	uint8_t *q;
	bool all;

	build3(&b, 0, -1, -1);
	q = malloc(b.len + 1);

	/* CRC */
	memcpy(q, b.data, b.len);
	q[b.len - 5] ^= 0x40;
	is(validate(q, b.len, MAXB), SK_KERR_CORRUPT_MESSAGE,
	   "bad crc: flipped record byte");
	memcpy(q, b.data, b.len);
	q[SK_BATCH_CRC_OFFSET + 3] ^= 1;
	is(validate(q, b.len, MAXB), SK_KERR_CORRUPT_MESSAGE,
	   "bad crc: flipped stored crc");
	memcpy(q, b.data, b.len);
	q[SK_BATCH_ATTR_OFFSET + 1] |= SK_BATCH_ATTR_CONTROL;
	is(validate(q, b.len, MAXB), SK_KERR_CORRUPT_MESSAGE,
	   "bad crc: attributes are covered by the crc");
	memcpy(q, b.data, b.len);
	sk_put_be32(q + 12, 77); /* leader epoch: outside the crc */
	is(validate(q, b.len, MAXB), SK_KERR_NONE,
	   "leader epoch is outside the crc");

	/* Framing */
	all = true;
	for (size_t n = 0; n < b.len; n++)
		all &= validate(b.data, n, MAXB) == SK_KERR_INVALID_RECORD;
	ok(all, "every truncation (0..len-1 bytes) is INVALID_RECORD");
	is(validate(b.data, b.len - 1, MAXB), SK_KERR_INVALID_RECORD,
	   "truncated by one byte");
	memcpy(q, b.data, b.len);
	q[b.len] = 0;
	is(validate(q, b.len + 1, MAXB), SK_KERR_INVALID_RECORD,
	   "one trailing byte");
	sk_buf_put(&two, b.data, b.len);
	sk_buf_put(&two, b.data, b.len);
	is(validate(two.data, two.len, MAXB), SK_KERR_INVALID_RECORD,
	   "two batches");
	is(with_field32(&b, 8, (uint32_t)-1, 0, 0), SK_KERR_CORRUPT_MESSAGE,
	   "negative batchLength");
	is(with_field32(&b, 8, 13, 0, 0), SK_KERR_CORRUPT_MESSAGE,
	   "batchLength below any message size");
	memcpy(q, b.data, b.len);
	sk_put_be32(q + 8, 40); /* magic 2 but shorter than a v2 header */
	is(validate(q, 52, MAXB), SK_KERR_CORRUPT_MESSAGE,
	   "magic 2 with batchLength 40");

	/* Magic */
	memcpy(q, b.data, b.len);
	q[SK_BATCH_MAGIC_OFFSET] = 1;
	is(validate(q, b.len, MAXB), SK_KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT,
	   "magic 1");
	q[SK_BATCH_MAGIC_OFFSET] = 0;
	is(validate(q, b.len, MAXB), SK_KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT,
	   "magic 0");
	q[SK_BATCH_MAGIC_OFFSET] = 3;
	is(validate(q, b.len, MAXB), SK_KERR_CORRUPT_MESSAGE, "magic 3");
	q[SK_BATCH_MAGIC_OFFSET] = 0xff;
	is(validate(q, b.len, MAXB), SK_KERR_CORRUPT_MESSAGE, "magic -1");

	/* Size */
	is(validate(b.data, b.len, (int64_t)b.len - 1),
	   SK_KERR_MESSAGE_TOO_LARGE, "one byte over max.message.bytes");
	is(validate(b.data, b.len, (int64_t)b.len), SK_KERR_NONE,
	   "exactly max.message.bytes");
	memcpy(q, b.data, b.len);
	q[b.len - 5] ^= 0x40;
	is(validate(q, b.len, 100), SK_KERR_MESSAGE_TOO_LARGE,
	   "size is checked before the crc");

	/* Counts */
	is(with_field32(&b, 23, 5, 0, 0), SK_KERR_INVALID_RECORD,
	   "lastOffsetDelta 5 with 3 records");
	is(with_field32(&b, 23, 1, 0, 0), SK_KERR_INVALID_RECORD,
	   "lastOffsetDelta 1 with 3 records");
	is(with_field32(&b, 57, 0, 23, (uint32_t)-1), SK_KERR_INVALID_RECORD,
	   "count 0 with lastOffsetDelta -1");
	is(with_field32(&b, 57, (uint32_t)-5, 23, (uint32_t)-6),
	   SK_KERR_INVALID_RECORD, "negative count");
	is(with_field32(&b, 57, (uint32_t)INT32_MIN, 23, INT32_MAX),
	   SK_KERR_INVALID_RECORD, "lastOffsetDelta + 1 overflowing");
	is(with_field32(&b, 57, 4, 23, 3), SK_KERR_INVALID_RECORD,
	   "count 4 but 3 records present");
	is(with_field32(&b, 57, 2, 23, 1), SK_KERR_INVALID_RECORD,
	   "count 2 but 3 records present");

	/* Control, producer, codec */
	build3(&b, SK_BATCH_ATTR_CONTROL | SK_BATCH_ATTR_TRANSACTIONAL, 4, -1);
	is(validate(b.data, b.len, MAXB), SK_KERR_INVALID_RECORD,
	   "control batch from a client");
	build3(&b, 0, 4, -1);
	is(validate(b.data, b.len, MAXB), SK_KERR_INVALID_RECORD,
	   "producer id with sequence -1");
	build3(&b, 0, 4, 0);
	is(validate(b.data, b.len, MAXB), SK_KERR_NONE,
	   "producer id with sequence 0");
	build3(&b, 0, -1, -1);
	for (int codec = 5; codec <= 7; codec++)
		is(with_field32(&b, 21, (uint32_t)codec << 16, 0, 0),
		   SK_KERR_UNSUPPORTED_COMPRESSION_TYPE, "codec %d", codec);
	/* Bytes 21..24: attributes, then the zero top of lastOffsetDelta. */
	is(with_field32(&b, 21, (uint32_t)SK_CODEC_ZSTD << 16, 0, 0),
	   SK_KERR_CORRUPT_MESSAGE,
	   "zstd bits over uncompressed records: the body is decompressed");
	free(q);
	sk_buf_free(&b);
	sk_buf_free(&two);
}

/* Append a raw record (length computed) built from a few varint fields. */
static void put_record(struct sk_buf *b, int32_t len, const int32_t *f,
		       size_t nf)
{
	struct sk_buf body = { 0 };
	struct sk_wr w = { &body }, o = { b };

	sk_wr_i8(&w, 0);
	for (size_t i = 0; i < nf; i++)
		sk_wr_varint(&w, f[i]);
	sk_wr_varint(&o, len >= -1000 ? len : (int32_t)body.len);
	sk_wr_raw(&o, body.data, body.len);
	sk_buf_free(&body);
}

/* Run the iterator over an exact copy; count good records, report err. */
static int iterate(const struct sk_buf *b, bool *err)
{
	uint8_t *q = malloc(b->len ? b->len : 1);
	struct sk_record rec;
	struct sk_rd r;
	int n = 0;

	if (b->len)
		memcpy(q, b->data, b->len);
	sk_rd_init(&r, q, b->len);
	while (sk_batch_record_next(&r, &rec))
		n++;
	*err = !sk_rd_ok(&r);
	free(q);
	return n;
}

#define AUTO (-2000) /* put_record: use the real body length */

static void test_bad_records(void)
{
	/* ts, offset, key len, value len, header count */
	static const int32_t good[] = { 0, 0, -1, -1, 0 };
	static const int32_t key_m2[] = { 0, 0, -2, -1, 0 };
	static const int32_t val_m2[] = { 0, 0, -1, -2, 0 };
	static const int32_t hc_m1[] = { 0, 0, -1, -1, -1 };
	static const int32_t hc_big[] = { 0, 0, -1, -1, INT32_MAX };
	static const int32_t hnull[] = { 0, 0, -1, -1, 1, -1, -1 };
	static const int32_t key5[] = { 0, 0, 5 };
	struct sk_buf b = { 0 };
	struct sk_wr w = { &b };
	bool err;
	int n;

	n = iterate(&b, &err);
	ok(n == 0 && !err, "no bytes: no records, no error");

	put_record(&b, AUTO, good, 5);
	put_record(&b, AUTO, good, 5);
	n = iterate(&b, &err);
	ok(n == 2 && !err, "two minimal records");

	b.len = 0;
	put_record(&b, AUTO, good, 5);
	put_record(&b, AUTO, key_m2, 5);
	n = iterate(&b, &err);
	ok(n == 1 && err, "key length -2 fails after one good record");

	b.len = 0;
	put_record(&b, AUTO, val_m2, 5);
	n = iterate(&b, &err);
	ok(n == 0 && err, "value length -2");

	b.len = 0;
	put_record(&b, AUTO, hc_m1, 5);
	n = iterate(&b, &err);
	ok(n == 0 && err, "header count -1");

	b.len = 0;
	put_record(&b, AUTO, hc_big, 5);
	n = iterate(&b, &err);
	ok(n == 0 && err, "header count INT32_MAX");

	b.len = 0;
	put_record(&b, AUTO, hnull, 7);
	n = iterate(&b, &err);
	ok(n == 0 && err, "null header key");

	/* Key of 5 bytes in a 4-byte record, with plenty of batch after it. */
	b.len = 0;
	put_record(&b, AUTO, key5, 3);
	memset(sk_buf_extend(&b, 20), 0, 20);
	n = iterate(&b, &err);
	ok(n == 0 && err, "key bounded by the record's own length");

	/* A record longer than what is left. */
	b.len = 0;
	put_record(&b, 50, good, 5);
	n = iterate(&b, &err);
	ok(n == 0 && err, "record length past the end");

	/* A record whose length leaves a byte unread inside it. */
	b.len = 0;
	put_record(&b, 7, good, 5);
	sk_wr_i8(&w, 0);
	n = iterate(&b, &err);
	ok(n == 0 && err, "unread byte inside a record");

	b.len = 0;
	put_record(&b, -1, good, 5);
	n = iterate(&b, &err);
	ok(n == 0 && err, "negative record length");

	b.len = 0;
	put_record(&b, 0, NULL, 0);
	n = iterate(&b, &err);
	ok(n == 0 && err, "record length 0");

	/* Same problems inside a batch, CRC fixed: INVALID_RECORD. */
	{
		struct sk_buf bb = { 0 };
		struct sk_record_in one = { "k", 1, "v", 1, 5, NULL, 0 };
		size_t at;

		sk_batch_build(&bb, 0, &one, 1, 0, -1, -1, -1);
		at = SK_BATCH_HEADER_SIZE + 4; /* length, attr, ts, off */
		bb.data[at] = 0x7e;	       /* key length 63 */
		refresh_crc(bb.data, bb.len);
		is(validate(bb.data, bb.len, MAXB), SK_KERR_INVALID_RECORD,
		   "batch with an over-long key");
		bb.data[at] = 0x02;
		bb.data[at - 1] = 0x02; /* offset delta 1 for record 0 */
		refresh_crc(bb.data, bb.len);
		is(validate(bb.data, bb.len, MAXB), SK_KERR_INVALID_RECORD,
		   "batch whose first record has offset delta 1");
		bb.data[at - 1] = 0x00;
		refresh_crc(bb.data, bb.len);
		is(validate(bb.data, bb.len, MAXB), SK_KERR_NONE,
		   "and restored it validates again");
		sk_buf_free(&bb);
	}
	sk_buf_free(&b);
}

static void test_rewrites(void)
{
	struct sk_buf b = { 0 };
	struct sk_batch_hdr h;

	build3(&b, SK_BATCH_ATTR_TRANSACTIONAL, 8, 0);
	sk_batch_set_base_offset(b.data, 12345678901LL);
	sk_batch_parse_header(b.data, b.len, &h);
	is(h.base_offset, 12345678901LL, "set_base_offset");
	ok(sk_batch_crc_ok(b.data, b.len), "crc still valid after it");
	is(validate(b.data, b.len, MAXB), SK_KERR_NONE, "and validates");

	sk_batch_set_log_append_time(b.data, b.len, 1700000000123LL);
	sk_batch_parse_header(b.data, b.len, &h);
	is(h.attributes,
	   SK_BATCH_ATTR_TRANSACTIONAL | SK_BATCH_ATTR_LOG_APPEND_TIME,
	   "LogAppendTime bit set, other bits kept");
	is(h.max_timestamp, 1700000000123LL, "maxTimestamp stamped");
	is(h.base_timestamp, 1000, "baseTimestamp untouched");
	ok(h.base_offset == 12345678901LL && h.records_count == 3,
	   "other fields untouched");
	ok(sk_batch_crc_ok(b.data, b.len), "crc recomputed");
	is(validate(b.data, b.len, MAXB), SK_KERR_NONE, "still validates");
	sk_buf_free(&b);
}

/*
 * Count the records of a whole batch, decompressing them first if need
 * be; -1 if they do not decompress or iterate cleanly.
 */
static int records_iterate(const uint8_t *p, size_t len)
{
	struct sk_buf plain = { 0 };
	struct sk_record rec;
	struct sk_rd r;
	int n = 0;
	int codec =
		sk_be16(p + SK_BATCH_ATTR_OFFSET) & SK_BATCH_ATTR_CODEC_MASK;

	if (sk_codec_decompress(codec, p + SK_BATCH_HEADER_SIZE,
				len - SK_BATCH_HEADER_SIZE, &plain, 1u << 30,
				NULL) != 0)
		return -1;
	sk_rd_init(&r, plain.data, plain.len);
	while (sk_batch_record_next(&r, &rec))
		n++;
	sk_buf_free(&plain);
	return sk_rd_ok(&r) ? n : -1;
}

/*
 * Make out a batch with the header of plain (61 bytes), the given codec
 * in its attributes and blob as its records, with batchLength and CRC
 * fixed up.
 */
static void seal(struct sk_buf *out, const uint8_t *plain, enum sk_codec c,
		 const void *blob, size_t blob_len)
{
	uint16_t attr = sk_be16(plain + SK_BATCH_ATTR_OFFSET);

	out->len = 0;
	sk_buf_put(out, plain, SK_BATCH_HEADER_SIZE);
	sk_buf_put(out, blob, blob_len);
	attr = (uint16_t)((attr & ~SK_BATCH_ATTR_CODEC_MASK) | c);
	sk_put_be16(out->data + SK_BATCH_ATTR_OFFSET, attr);
	sk_put_be32(out->data + 8, (uint32_t)(out->len - 12));
	refresh_crc(out->data, out->len);
}

/* Compress the records of the uncompressed batch plain into out. */
static void compress_batch(struct sk_buf *out, const struct sk_buf *plain,
			   enum sk_codec c)
{
	struct sk_buf z = { 0 };

	sk_codec_compress(c, plain->data + SK_BATCH_HEADER_SIZE,
			  plain->len - SK_BATCH_HEADER_SIZE, &z, 0, NULL);
	seal(out, plain->data, c, z.data, z.len);
	sk_buf_free(&z);
}

/* Compress blob with c and seal it under plain's header. */
static void seal_compressed(struct sk_buf *out, const uint8_t *plain,
			    enum sk_codec c, const void *blob, size_t blob_len)
{
	struct sk_buf z = { 0 };

	sk_codec_compress(c, blob, blob_len, &z, 0, NULL);
	seal(out, plain, c, z.data, z.len);
	sk_buf_free(&z);
}

/* xerial snappy framing: magic "\x82SNAPPY\0", version 1, compat 1. */
static const uint8_t xerial_hdr[16] = { 0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0,
					0,    0,   0,	1,   0,	  0,   0,   1 };

static const enum sk_codec codecs[] = { SK_CODEC_GZIP, SK_CODEC_SNAPPY,
					SK_CODEC_LZ4, SK_CODEC_ZSTD };

static void test_compressed(void)
{
	struct sk_buf plain = { 0 }, b = { 0 }, z = { 0 };
	struct sk_batch_hdr h;
	struct sk_err err = { "" };
	const uint8_t *recs_p;
	size_t recs_len;
	enum sk_kerr e;

	build3(&plain, SK_BATCH_ATTR_TRANSACTIONAL, 7, 0);
	recs_p = plain.data + SK_BATCH_HEADER_SIZE;
	recs_len = plain.len - SK_BATCH_HEADER_SIZE;
	for (size_t i = 0; i < sizeof(codecs) / sizeof(codecs[0]); i++) {
		compress_batch(&b, &plain, codecs[i]);
		is(validate(b.data, b.len, MAXB), SK_KERR_NONE,
		   "%s batch validates", sk_codec_name(codecs[i]));
	}

	/* Java and kafka-python frame snappy xerial-style. */
	{
		size_t at;

		z.len = 0;
		sk_buf_put(&z, xerial_hdr, sizeof(xerial_hdr));
		at = z.len;
		sk_buf_extend(&z, 4);
		sk_codec_compress(SK_CODEC_SNAPPY, recs_p, recs_len, &z, 0,
				  NULL);
		sk_put_be32(z.data + at, (uint32_t)(z.len - at - 4));
		seal(&b, plain.data, SK_CODEC_SNAPPY, z.data, z.len);
		is(validate(b.data, b.len, MAXB), SK_KERR_NONE,
		   "xerial-framed snappy batch validates");
	}

	/* Undecodable: CORRUPT_MESSAGE, with the codec's own words. */
	seal(&b, plain.data, SK_CODEC_GZIP, "not gzip", 8);
	e = sk_batch_validate_produce(b.data, b.len, MAXB, &scratch, &h, &err);
	is(e, SK_KERR_CORRUPT_MESSAGE, "gzip batch with a garbage blob");
	ok(strncmp(err.msg, "gzip: ", 6) == 0, "  err says why (%s)", err.msg);
	seal(&b, plain.data, SK_CODEC_GZIP, "", 0);
	is(validate(b.data, b.len, MAXB), SK_KERR_CORRUPT_MESSAGE,
	   "gzip batch with an empty blob");
	for (size_t i = 0; i < sizeof(codecs) / sizeof(codecs[0]); i++) {
		compress_batch(&b, &plain, codecs[i]);
		b.len--; /* cut the compressed data by one byte */
		sk_put_be32(b.data + 8, (uint32_t)(b.len - 12));
		refresh_crc(b.data, b.len);
		is(validate(b.data, b.len, MAXB), SK_KERR_CORRUPT_MESSAGE,
		   "%s batch with truncated data", sk_codec_name(codecs[i]));
	}

	/* Decodes, but not to good records: INVALID_RECORD. */
	seal_compressed(&b, plain.data, SK_CODEC_GZIP, "\x01\x02garbage", 9);
	e = sk_batch_validate_produce(b.data, b.len, MAXB, &scratch, &h, &err);
	is(e, SK_KERR_INVALID_RECORD, "valid gzip of malformed records (%s)",
	   err.msg);
	seal_compressed(&b, plain.data, SK_CODEC_GZIP, "", 0);
	is(validate(b.data, b.len, MAXB), SK_KERR_INVALID_RECORD,
	   "valid gzip of no records");
	z.len = 0;
	sk_buf_put(&z, recs_p, recs_len);
	sk_buf_put(&z, "\0", 1);
	seal_compressed(&b, plain.data, SK_CODEC_LZ4, z.data, z.len);
	is(validate(b.data, b.len, MAXB), SK_KERR_INVALID_RECORD,
	   "a stray byte after the last record, inside lz4");
	/* Record 0's offset delta (after length, attributes, ts delta). */
	z.len = 0;
	sk_buf_put(&z, recs_p, recs_len);
	z.data[1 + 1 + 1] = 0x02;
	seal_compressed(&b, plain.data, SK_CODEC_ZSTD, z.data, z.len);
	is(validate(b.data, b.len, MAXB), SK_KERR_INVALID_RECORD,
	   "offset delta 1 for record 0, inside zstd");

	/* recordsCount disagreeing with the compressed records. */
	compress_batch(&b, &plain, SK_CODEC_GZIP);
	is(with_field32(&b, 57, 4, 23, 3), SK_KERR_INVALID_RECORD,
	   "gzip: count 4 but 3 records inside");
	is(with_field32(&b, 57, 2, 23, 1), SK_KERR_INVALID_RECORD,
	   "gzip: count 2 but 3 records inside");
	compress_batch(&b, &plain, SK_CODEC_SNAPPY);
	is(with_field32(&b, 57, 1, 23, 0), SK_KERR_INVALID_RECORD,
	   "snappy: count 1 but 3 records inside");

	/* The header rules still come first. */
	compress_batch(&b, &plain, SK_CODEC_LZ4);
	b.data[b.len - 1] ^= 1;
	is(validate(b.data, b.len, MAXB), SK_KERR_CORRUPT_MESSAGE,
	   "lz4: bad CRC before any decompression");
	is(validate(b.data, b.len, 10), SK_KERR_MESSAGE_TOO_LARGE,
	   "lz4: size before CRC");

	/* scratch is reused: a second validation does not reallocate it. */
	compress_batch(&b, &plain, SK_CODEC_ZSTD);
	validate(b.data, b.len, MAXB);
	{
		uint8_t *before = scratch.data;
		size_t cap = scratch.cap;

		is(validate(b.data, b.len, MAXB), SK_KERR_NONE,
		   "zstd again, same scratch");
		ok(scratch.data == before && scratch.cap == cap && cap > 0 &&
			   scratch.len == 0,
		   "  scratch reused as is (cap %zu)", cap);
	}
	sk_buf_free(&plain);
	sk_buf_free(&b);
	sk_buf_free(&z);
}

/*
 * More than max(64 MiB, 16 x max.message.bytes) once decompressed:
 * MESSAGE_TOO_LARGE, and the oversized scratch is not kept.
 */
static void test_compressed_bound(void)
{
	size_t big = (64u << 20) + 1;
	uint8_t *zero = calloc(1, big);
	struct sk_record_in one = { NULL, -1, zero, (int32_t)big, 1, NULL, 0 };
	struct sk_buf plain = { 0 }, b = { 0 };

	sk_batch_build(&plain, 0, &one, 1, 0, -1, -1, -1);
	compress_batch(&b, &plain, SK_CODEC_ZSTD);
	diag("a %zu-byte zstd batch of %zu bytes", b.len, plain.len);
	is(validate(b.data, b.len, MAXB), SK_KERR_MESSAGE_TOO_LARGE,
	   "decompressing past 64 MiB: MESSAGE_TOO_LARGE");
	ok(scratch.cap == 0, "  and the grown scratch was released");
	is(validate(b.data, b.len, 5 * 1000 * 1000), SK_KERR_NONE,
	   "with max.message.bytes 5 MB the bound is 80 MB: accepted");
	ok(scratch.cap == 0, "  scratch released again");
	free(zero);
	sk_buf_free(&plain);
	sk_buf_free(&b);
}

/*
 * Random corruption of compressed data behind a fixed-up CRC: the
 * decoders must stay in bounds (ASan) and every answer must be a known
 * code; anything accepted must hold exactly recordsCount records.
 */
static void test_fuzz_compressed(void)
{
	struct sk_buf plain = { 0 }, b = { 0 };
	uint64_t s = 0x9E3779B97F4A7C15ULL;

	build3(&plain, 0, -1, -1);
	for (size_t c = 0; c < sizeof(codecs) / sizeof(codecs[0]); c++) {
		int accepted = 0;
		bool all = true;

		compress_batch(&b, &plain, codecs[c]);
		for (int i = 0; i < 3000; i++) {
			uint8_t *q = malloc(b.len);
			size_t blob = b.len - SK_BATCH_HEADER_SIZE;
			enum sk_kerr e;

			memcpy(q, b.data, b.len);
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			for (int f = 0; f < 1 + (int)(s % 3); f++) {
				size_t at = SK_BATCH_HEADER_SIZE +
					    (s >> (8 * f + 8)) % blob;

				q[at] ^= (uint8_t)(1u << ((s >> (4 * f + 40)) &
							  7));
			}
			refresh_crc(q, b.len);
			e = validate(q, b.len, MAXB);
			if (e == SK_KERR_NONE) {
				accepted++;
				all &= records_iterate(q, b.len) == 3;
			} else {
				/* A damaged size field can claim too much. */
				all &= e == SK_KERR_INVALID_RECORD ||
				       e == SK_KERR_CORRUPT_MESSAGE ||
				       e == SK_KERR_MESSAGE_TOO_LARGE;
			}
			free(q);
		}
		diag("%s fuzz: %d of 3000 mutants accepted",
		     sk_codec_name(codecs[c]), accepted);
		ok(all, "%s: random damage gives known codes",
		   sk_codec_name(codecs[c]));
	}
	sk_buf_free(&plain);
	sk_buf_free(&b);
}

/*
 * Random corruption behind a fixed-up CRC: validation and iteration must
 * never read out of bounds (ASan) and must answer a known code; anything
 * accepted must iterate to exactly recordsCount records.
 */
static void test_fuzz(void)
{
	struct sk_buf b = { 0 };
	uint64_t s = 0x2545F4914F6CDD1DULL;
	bool all = true;
	int accepted = 0;

	build3(&b, 0, -1, -1);
	for (int i = 0; i < 20000; i++) {
		uint8_t *q = malloc(b.len);
		int flips;
		enum sk_kerr e;
		struct sk_batch_hdr h;

		memcpy(q, b.data, b.len);
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		flips = 1 + (int)(s % 4);
		for (int f = 0; f < flips; f++) {
			size_t at = SK_BATCH_ATTR_OFFSET +
				    (size_t)((s >> (8 * f + 8)) %
					     (b.len - SK_BATCH_ATTR_OFFSET));

			q[at] ^= (uint8_t)(1u << ((s >> (4 * f + 40)) & 7));
		}
		refresh_crc(q, b.len);
		e = sk_batch_validate_produce(q, b.len, MAXB, &scratch, &h,
					      NULL);
		if (e == SK_KERR_NONE) {
			accepted++;
			all &= records_iterate(q, b.len) == h.records_count;
		} else {
			all &= e == SK_KERR_INVALID_RECORD ||
			       e == SK_KERR_CORRUPT_MESSAGE ||
			       e == SK_KERR_UNSUPPORTED_COMPRESSION_TYPE;
		}
		free(q);
	}
	diag("fuzz: %d of 20000 mutants accepted", accepted);
	ok(all, "random mutations: known codes, accepted ones iterate");
	sk_buf_free(&b);
}

int main(void)
{
	plan(93 + 31 + 6);
	init_records();
	test_build_parse();
	test_golden_record();
	test_builder();
	test_record_write();
	test_varint_sizes();
	test_parse_header_errors();
	test_validate();
	test_bad_records();
	test_rewrites();
	test_fuzz();
	test_compressed();
	test_compressed_bound();
	test_fuzz_compressed();
	sk_buf_free(&scratch);
	return check_status();
}
