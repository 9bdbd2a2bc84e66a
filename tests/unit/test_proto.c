/*
 * Wire primitives: zigzag varints at their extremes, unsigned varints,
 * rejection of overlong and truncated encodings, a reader that never
 * reads past its end and keeps its error, strings and arrays in classic
 * and compact form, and the writer's reserve/patch.
 */
#include "proto.h"
#include "tap.h"

#include <stdlib.h>

/*
 * Copy bytes into a heap block of exactly that size, so that a read past
 * the end is caught by ASan instead of landing in a neighbouring buffer.
 */
static uint8_t *exact(const void *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	if (n)
		memcpy(q, p, n);
	return q;
}

/* Encode v, check its size, and read it back from an exact buffer. */
static void varint_rt(int32_t v, size_t want_len)
{
	struct sk_buf b = { 0 };
	struct sk_wr w = { &b };
	struct sk_rd r;
	uint8_t *q;
	int32_t got;

	sk_wr_varint(&w, v);
	q = exact(b.data, b.len);
	sk_rd_init(&r, q, b.len);
	got = sk_rd_varint(&r);
	ok(got == v && sk_rd_ok(&r) && sk_rd_left(&r) == 0 &&
		   (want_len == 0 || b.len == want_len),
	   "varint %" PRId32 " round trips in %zu bytes", v, b.len);
	free(q);
	sk_buf_free(&b);
}

static void varlong_rt(int64_t v, size_t want_len)
{
	struct sk_buf b = { 0 };
	struct sk_wr w = { &b };
	struct sk_rd r;
	uint8_t *q;
	int64_t got;

	sk_wr_varlong(&w, v);
	q = exact(b.data, b.len);
	sk_rd_init(&r, q, b.len);
	got = sk_rd_varlong(&r);
	ok(got == v && sk_rd_ok(&r) && sk_rd_left(&r) == 0 &&
		   (want_len == 0 || b.len == want_len),
	   "varlong %" PRId64 " round trips in %zu bytes", v, b.len);
	free(q);
	sk_buf_free(&b);
}

static void uvarint_rt(uint32_t v, size_t want_len)
{
	struct sk_buf b = { 0 };
	struct sk_wr w = { &b };
	struct sk_rd r;
	uint8_t *q;
	uint32_t got;

	sk_wr_uvarint(&w, v);
	q = exact(b.data, b.len);
	sk_rd_init(&r, q, b.len);
	got = sk_rd_uvarint(&r);
	ok(got == v && sk_rd_ok(&r) && sk_rd_left(&r) == 0 && b.len == want_len,
	   "uvarint %" PRIu32 " round trips in %zu bytes", v, b.len);
	free(q);
	sk_buf_free(&b);
}

/* Known encodings, to pin zigzag to what Kafka writes. */
static void test_varint_bytes(void)
{
	struct sk_buf b = { 0 };
	struct sk_wr w = { &b };
	static const uint8_t want[] = {
		0x00,			      /* 0 */
		0x01,			      /* -1 */
		0x02,			      /* 1 */
		0x7f,			      /* -64 */
		0x80, 0x01,		      /* 64 */
		0xfe, 0xff, 0xff, 0xff, 0x0f, /* INT32_MAX */
		0xff, 0xff, 0xff, 0xff, 0x0f, /* INT32_MIN */
	};

	sk_wr_varint(&w, 0);
	sk_wr_varint(&w, -1);
	sk_wr_varint(&w, 1);
	sk_wr_varint(&w, -64);
	sk_wr_varint(&w, 64);
	sk_wr_varint(&w, INT32_MAX);
	sk_wr_varint(&w, INT32_MIN);
	ok(b.len == sizeof(want) && memcmp(b.data, want, b.len) == 0,
	   "zigzag varint encodings match Kafka's");
	sk_buf_free(&b);
}

static void test_varints(void)
{
	uint64_t s = 88172645463325252u;
	bool rt = true;

	varint_rt(0, 1);
	varint_rt(-1, 1);
	varint_rt(63, 1);
	varint_rt(-64, 1);
	varint_rt(64, 2);
	varint_rt(-65, 2);
	varint_rt(INT32_MAX, 5);
	varint_rt(INT32_MIN, 5);
	varint_rt(INT32_MIN + 1, 5);
	varlong_rt(0, 1);
	varlong_rt(-1, 1);
	varlong_rt(INT32_MAX, 5);
	varlong_rt(INT32_MIN, 5);
	varlong_rt((int64_t)INT32_MAX + 1, 5);
	varlong_rt((int64_t)INT32_MIN - 1, 5);
	varlong_rt(INT64_MAX, 10);
	varlong_rt(INT64_MIN, 10);
	varlong_rt(INT64_MIN + 1, 10);
	uvarint_rt(0, 1);
	uvarint_rt(127, 1);
	uvarint_rt(128, 2);
	uvarint_rt(16383, 2);
	uvarint_rt(16384, 3);
	uvarint_rt(UINT32_MAX, 5);

	/* Random values of every magnitude. */
	for (int i = 0; i < 20000; i++) {
		struct sk_buf b = { 0 };
		struct sk_wr w = { &b };
		struct sk_rd r;
		int64_t v;
		int32_t v32;

		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		v = (int64_t)(s >> (s % 64));
		v = s & 1 ? -v : v;
		v32 = (int32_t)(uint32_t)(v >> (s % 33));
		sk_wr_varlong(&w, v);
		sk_wr_varint(&w, v32);
		sk_wr_uvarint(&w, (uint32_t)v);
		sk_rd_init(&r, b.data, b.len);
		rt &= sk_rd_varlong(&r) == v;
		rt &= sk_rd_varint(&r) == v32;
		rt &= sk_rd_uvarint(&r) == (uint32_t)v;
		rt &= sk_rd_ok(&r) && sk_rd_left(&r) == 0;
		sk_buf_free(&b);
	}
	ok(rt, "20000 random varint/varlong/uvarint round trips");
}

/* Read one value of a kind from an exact copy of bytes; report the error. */
enum vkind { V_INT, V_LONG, V_UNSIGNED };

static bool varint_rejected(enum vkind k, const uint8_t *p, size_t n)
{
	uint8_t *q = exact(p, n);
	struct sk_rd r;
	int64_t v;

	sk_rd_init(&r, q, n);
	if (k == V_INT)
		v = sk_rd_varint(&r);
	else if (k == V_LONG)
		v = sk_rd_varlong(&r);
	else
		v = sk_rd_uvarint(&r);
	free(q);
	return !sk_rd_ok(&r) && v == 0;
}

static void test_bad_varints(void)
{
	static const uint8_t six[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x00 };
	static const uint8_t big5[] = { 0xff, 0xff, 0xff, 0xff, 0x1f };
	static const uint8_t eleven[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
					  0x80, 0x80, 0x80, 0x80, 0x00 };
	static const uint8_t cut[] = { 0x80, 0x80 };

	ok(varint_rejected(V_INT, six, sizeof(six)),
	   "overlong (6-byte) varint rejected");
	ok(varint_rejected(V_UNSIGNED, six, sizeof(six)),
	   "overlong (6-byte) uvarint rejected");
	ok(varint_rejected(V_INT, big5, sizeof(big5)),
	   "5-byte varint above 32 bits rejected");
	ok(varint_rejected(V_UNSIGNED, big5, sizeof(big5)),
	   "5-byte uvarint above 32 bits rejected");
	ok(varint_rejected(V_LONG, eleven, sizeof(eleven)),
	   "overlong (11-byte) varlong rejected");
	ok(varint_rejected(V_INT, cut, sizeof(cut)),
	   "varint cut off mid-way rejected");
	ok(varint_rejected(V_LONG, cut, 0), "varlong from no bytes rejected");
}

/* Short reads fail, yield zero, consume nothing, and the error sticks. */
static void test_bounds(void)
{
	static const uint8_t src[] = { 1, 2, 3 };
	uint8_t *q = exact(src, sizeof(src));
	struct sk_rd r;

	sk_rd_init(&r, q, sizeof(src));
	is(sk_rd_i32(&r), 0, "i32 from 3 bytes yields 0");
	ok(!sk_rd_ok(&r), "and sets the error");
	is(sk_rd_left(&r), 3, "and consumes nothing");
	is(sk_rd_i8(&r), 0, "a later i8 yields 0 although bytes remain");
	ok(!sk_rd_ok(&r) && sk_rd_left(&r) == 3, "error is sticky");

	sk_rd_init(&r, q, sizeof(src));
	is(sk_rd_i16(&r), 0x0102, "i16 reads big-endian");
	is(sk_rd_i8(&r), 3, "i8 reads the last byte");
	ok(sk_rd_ok(&r) && sk_rd_left(&r) == 0, "exactly consumed, no error");
	is(sk_rd_i8(&r), 0, "i8 at the end yields 0");
	ok(!sk_rd_ok(&r), "reading at the end fails");

	sk_rd_init(&r, q, sizeof(src));
	ok(sk_rd_raw(&r, 4) == NULL && !sk_rd_ok(&r), "raw past end fails");
	sk_rd_init(&r, q, sizeof(src));
	ok(sk_rd_raw(&r, SIZE_MAX) == NULL && !sk_rd_ok(&r),
	   "raw of SIZE_MAX fails without wrapping");
	sk_rd_init(&r, q, sizeof(src));
	ok(sk_rd_i64(&r) == 0 && !sk_rd_ok(&r), "i64 from 3 bytes fails");
	free(q);
}

/* Fixed-width integers: big-endian, signed extremes. */
static void test_ints(void)
{
	struct sk_buf b = { 0 };
	struct sk_wr w = { &b };
	struct sk_rd r;
	static const uint8_t want[] = { 0x01, 0x02, 0x03, 0x04 };

	sk_wr_i32(&w, 0x01020304);
	ok(memcmp(b.data, want, 4) == 0, "i32 written big-endian");
	sk_wr_i8(&w, INT8_MIN);
	sk_wr_i16(&w, INT16_MIN);
	sk_wr_i32(&w, INT32_MIN);
	sk_wr_i64(&w, INT64_MIN);
	sk_wr_i64(&w, INT64_MAX);
	sk_wr_i32(&w, -1);
	sk_rd_init(&r, b.data, b.len);
	ok(sk_rd_i32(&r) == 0x01020304 && sk_rd_i8(&r) == INT8_MIN &&
		   sk_rd_i16(&r) == INT16_MIN && sk_rd_i32(&r) == INT32_MIN &&
		   sk_rd_i64(&r) == INT64_MIN && sk_rd_i64(&r) == INT64_MAX &&
		   sk_rd_u32(&r) == UINT32_MAX && sk_rd_ok(&r) &&
		   sk_rd_left(&r) == 0,
	   "fixed-width integers round trip at their extremes");
	sk_buf_free(&b);
}

/* Compare a read string with the expected one (NULL for null). */
static bool str_is(struct sk_str s, const char *want)
{
	if (!want)
		return s.p == NULL && s.len == -1;
	return s.p && sk_str_eq(s, want);
}

static void test_strings(void)
{
	for (int flex = 0; flex <= 1; flex++) {
		struct sk_buf b = { 0 };
		struct sk_wr w = { &b };
		struct sk_rd r;
		struct sk_str a, n, e, x, bb, bn;
		char *dup, *dupn;
		uint8_t *q;

		sk_wr_str(&w, "abc", flex);
		sk_wr_str(&w, NULL, flex);
		sk_wr_str(&w, "", flex);
		sk_wr_strn(&w, "xyz-ignored", 3, flex);
		sk_wr_bytes(&w, "\0\1\2", 3, flex);
		sk_wr_bytes(&w, NULL, 5, flex);
		q = exact(b.data, b.len);
		sk_rd_init(&r, q, b.len);
		a = sk_rd_str(&r, flex);
		n = sk_rd_str(&r, flex);
		e = sk_rd_str(&r, flex);
		x = sk_rd_str(&r, flex);
		bb = sk_rd_bytes(&r, flex);
		bn = sk_rd_bytes(&r, flex);
		ok(sk_rd_ok(&r) && sk_rd_left(&r) == 0,
		   "%s strings: all read, none left",
		   flex ? "compact" : "classic");
		ok(str_is(a, "abc") && str_is(n, NULL) && str_is(e, "") &&
			   str_is(x, "xyz"),
		   "%s strings: value, null, empty, counted",
		   flex ? "compact" : "classic");
		ok(bb.len == 3 && memcmp(bb.p, "\0\1\2", 3) == 0 &&
			   bn.p == NULL && bn.len == -1,
		   "%s bytes: binary and null", flex ? "compact" : "classic");
		dup = sk_str_dup(a);
		dupn = sk_str_dup(n);
		ok(strcmp(dup, "abc") == 0 && strcmp(dupn, "") == 0,
		   "sk_str_dup copies, null becomes empty");
		free(dup);
		free(dupn);

		/* The same bytes cut short: the first string fails. */
		sk_rd_init(&r, q, flex ? 3 : 4);
		a = sk_rd_str(&r, flex);
		ok(!sk_rd_ok(&r) && a.p == NULL && a.len == -1,
		   "%s string longer than the input fails as null",
		   flex ? "compact" : "classic");
		free(q);
		sk_buf_free(&b);
	}
	{
		static const uint8_t neg[] = { 0xff, 0xfe, 'a' };
		static const uint8_t negb[] = { 0xff, 0xff, 0xff, 0xfe };
		struct sk_rd r;
		struct sk_str s;

		sk_rd_init(&r, neg, sizeof(neg));
		s = sk_rd_string(&r);
		ok(!sk_rd_ok(&r) && s.len == -1, "string length -2 rejected");
		sk_rd_init(&r, negb, sizeof(negb));
		s = sk_rd_bytes(&r, false);
		ok(!sk_rd_ok(&r) && s.len == -1, "bytes length -2 rejected");
	}
}

/* Encode an array header, then pad with left bytes; read it back. */
static int32_t read_array(bool flex, int32_t n, size_t left, size_t min,
			  bool *okp)
{
	struct sk_buf b = { 0 };
	struct sk_wr w = { &b };
	struct sk_rd r;
	int32_t got;

	if (flex)
		sk_wr_uvarint(&w, (uint32_t)n);
	else
		sk_wr_i32(&w, n);
	memset(sk_buf_extend(&b, left), 0, left);
	sk_rd_init(&r, b.data, b.len);
	got = sk_rd_array(&r, flex, min);
	*okp = sk_rd_ok(&r);
	sk_buf_free(&b);
	return got;
}

static void test_arrays(void)
{
	bool rok;
	int32_t n;

	n = read_array(false, 3, 12, 4, &rok);
	ok(n == 3 && rok, "classic array of 3 x 4 bytes in 12 bytes");
	n = read_array(false, 4, 12, 4, &rok);
	ok(n == 0 && !rok, "classic array of 4 x 4 bytes in 12 bytes fails");
	n = read_array(false, 1000000000, 10, 1, &rok);
	ok(n == 0 && !rok, "classic absurd count rejected");
	n = read_array(false, INT32_MAX, 10, 0, &rok);
	ok(n == 0 && !rok, "INT32_MAX count rejected (min size 0 -> 1)");
	n = read_array(false, -1, 0, 4, &rok);
	ok(n == -1 && rok, "classic -1 is a null array");
	n = read_array(false, -2, 10, 1, &rok);
	ok(n == 0 && !rok, "classic -2 rejected");
	n = read_array(true, 0, 0, 4, &rok);
	ok(n == -1 && rok, "compact 0 is a null array");
	n = read_array(true, 1, 0, 4, &rok);
	ok(n == 0 && rok, "compact 1 is an empty array");
	n = read_array(true, 3, 8, 4, &rok);
	ok(n == 2 && rok, "compact 3 is two elements");
	n = read_array(true, UINT32_MAX, 100, 1, &rok);
	ok(n == 0 && !rok, "compact absurd count rejected");
}

static void test_reserve_patch(void)
{
	struct sk_buf b = { 0 };
	struct sk_wr w = { &b };
	struct sk_rd r;
	size_t at;

	sk_wr_i16(&w, 7);
	at = sk_wr_i32_reserve(&w);
	is(at, 2, "reserve returns the offset of the hole");
	for (int i = 0; i < 1000; i++) /* force reallocations */
		sk_wr_i64(&w, i);
	sk_wr_i32_patch(&w, at, (int32_t)(b.len - at - 4));
	sk_rd_init(&r, b.data, b.len);
	ok(sk_rd_i16(&r) == 7 && sk_rd_i32(&r) == 8000 && sk_rd_i64(&r) == 0 &&
		   sk_rd_ok(&r),
	   "patched length survives buffer growth");
	sk_buf_free(&b);
}

static void test_tags(void)
{
	static const uint8_t src[] = { 2, 0, 1, 'x', 5, 2, 'a', 'b', 9 };
	static const uint8_t bad[] = { 1, 0, 5, 'x' };
	struct sk_rd r;

	sk_rd_init(&r, src, sizeof(src));
	sk_rd_tags(&r, true);
	ok(sk_rd_ok(&r) && sk_rd_i8(&r) == 9, "tagged fields skipped");
	sk_rd_init(&r, src, sizeof(src));
	sk_rd_tags(&r, false);
	ok(sk_rd_left(&r) == sizeof(src), "no tags in classic versions");
	sk_rd_init(&r, bad, sizeof(bad));
	sk_rd_tags(&r, true);
	ok(!sk_rd_ok(&r), "tag longer than the input fails");
}

int main(void)
{
	plan(75);
	test_varint_bytes();
	test_varints();
	test_bad_varints();
	test_bounds();
	test_ints();
	test_strings();
	test_arrays();
	test_reserve_patch();
	test_tags();
	return check_status();
}
