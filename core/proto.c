#include "proto.h"

#include <string.h>

static const uint8_t *take(struct sk_rd *r, size_t n)
{
	const uint8_t *p;

	if (r->err || (size_t)(r->end - r->p) < n) {
		r->err = true;
		return NULL;
	}
	p = r->p;
	r->p += n;
	return p;
}

int8_t sk_rd_i8(struct sk_rd *r)
{
	const uint8_t *p = take(r, 1);
	return p ? (int8_t)p[0] : 0;
}

int16_t sk_rd_i16(struct sk_rd *r)
{
	const uint8_t *p = take(r, 2);
	return p ? (int16_t)sk_be16(p) : 0;
}

int32_t sk_rd_i32(struct sk_rd *r)
{
	const uint8_t *p = take(r, 4);
	return p ? (int32_t)sk_be32(p) : 0;
}

uint32_t sk_rd_u32(struct sk_rd *r)
{
	const uint8_t *p = take(r, 4);
	return p ? sk_be32(p) : 0;
}

int64_t sk_rd_i64(struct sk_rd *r)
{
	const uint8_t *p = take(r, 8);
	return p ? (int64_t)sk_be64(p) : 0;
}

/* Unsigned LEB128 of at most max_bytes bytes. */
static uint64_t rd_leb128(struct sk_rd *r, int max_bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < max_bytes; i++) {
		const uint8_t *p = take(r, 1);
		if (!p)
			return 0;
		v |= (uint64_t)(*p & 0x7f) << (7 * i);
		if (!(*p & 0x80))
			return v;
	}
	r->err = true; /* too long for its type */
	return 0;
}

uint32_t sk_rd_uvarint(struct sk_rd *r)
{
	uint64_t v = rd_leb128(r, 5);

	if (v > UINT32_MAX) {
		r->err = true;
		return 0;
	}
	return (uint32_t)v;
}

int32_t sk_rd_varint(struct sk_rd *r)
{
	uint64_t v = rd_leb128(r, 5);

	if (v > UINT32_MAX) {
		r->err = true;
		return 0;
	}
	return (int32_t)((uint32_t)v >> 1 ^ -(uint32_t)(v & 1));
}

int64_t sk_rd_varlong(struct sk_rd *r)
{
	uint64_t v = rd_leb128(r, 10);

	return (int64_t)(v >> 1 ^ -(v & 1));
}

const uint8_t *sk_rd_raw(struct sk_rd *r, size_t n)
{
	return take(r, n);
}

static struct sk_str rd_counted(struct sk_rd *r, int64_t len)
{
	struct sk_str s = { NULL, -1 };

	if (len < 0 || r->err)
		return s;
	if (len > INT32_MAX) {
		r->err = true;
		return s;
	}
	s.p = take(r, (size_t)len);
	if (!s.p)
		return (struct sk_str){ NULL, -1 };
	s.len = (int32_t)len;
	return s;
}

struct sk_str sk_rd_string(struct sk_rd *r)
{
	int16_t len = sk_rd_i16(r);

	if (len < -1)
		r->err = true;
	return rd_counted(r, len);
}

struct sk_str sk_rd_compact_string(struct sk_rd *r)
{
	return rd_counted(r, (int64_t)sk_rd_uvarint(r) - 1);
}

struct sk_str sk_rd_str(struct sk_rd *r, bool flexible)
{
	return flexible ? sk_rd_compact_string(r) : sk_rd_string(r);
}

struct sk_str sk_rd_bytes(struct sk_rd *r, bool flexible)
{
	int64_t len;

	if (flexible) {
		len = (int64_t)sk_rd_uvarint(r) - 1;
	} else {
		len = sk_rd_i32(r);
		if (len < -1)
			r->err = true;
	}
	return rd_counted(r, len);
}

int32_t sk_rd_array(struct sk_rd *r, bool flexible, size_t min_elem_size)
{
	int64_t n;

	if (flexible) {
		n = (int64_t)sk_rd_uvarint(r) - 1;
	} else {
		n = sk_rd_i32(r);
		if (n < -1)
			r->err = true;
	}
	if (r->err)
		return 0;
	if (n < 0)
		return -1;
	if (min_elem_size == 0)
		min_elem_size = 1;
	if ((uint64_t)n > sk_rd_left(r) / min_elem_size) {
		r->err = true;
		return 0;
	}
	return (int32_t)n;
}

void sk_rd_tags(struct sk_rd *r, bool flexible)
{
	uint32_t n;

	if (!flexible)
		return;
	n = sk_rd_uvarint(r);
	for (uint32_t i = 0; i < n && !r->err; i++) {
		sk_rd_uvarint(r); /* tag */
		take(r, sk_rd_uvarint(r));
	}
}

bool sk_str_eq(struct sk_str s, const char *c)
{
	size_t n = strlen(c);

	return s.len >= 0 && (size_t)s.len == n && memcmp(s.p, c, n) == 0;
}

char *sk_str_dup(struct sk_str s)
{
	if (s.len < 0)
		return sk_xstrdup("");
	return sk_xstrndup((const char *)s.p, (size_t)s.len);
}

void sk_wr_i8(struct sk_wr *w, int8_t v)
{
	*sk_buf_extend(w->b, 1) = (uint8_t)v;
}

void sk_wr_i16(struct sk_wr *w, int16_t v)
{
	sk_put_be16(sk_buf_extend(w->b, 2), (uint16_t)v);
}

void sk_wr_i32(struct sk_wr *w, int32_t v)
{
	sk_put_be32(sk_buf_extend(w->b, 4), (uint32_t)v);
}

void sk_wr_i64(struct sk_wr *w, int64_t v)
{
	sk_put_be64(sk_buf_extend(w->b, 8), (uint64_t)v);
}

static void wr_leb128(struct sk_wr *w, uint64_t v)
{
	uint8_t tmp[10];
	size_t n = 0;

	while (v >= 0x80) {
		tmp[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	tmp[n++] = (uint8_t)v;
	sk_buf_put(w->b, tmp, n);
}

void sk_wr_uvarint(struct sk_wr *w, uint32_t v)
{
	wr_leb128(w, v);
}

void sk_wr_varint(struct sk_wr *w, int32_t v)
{
	wr_leb128(w, (uint32_t)((uint32_t)v << 1 ^ (uint32_t)(v >> 31)));
}

void sk_wr_varlong(struct sk_wr *w, int64_t v)
{
	wr_leb128(w, (uint64_t)v << 1 ^ (uint64_t)(v >> 63));
}

void sk_wr_raw(struct sk_wr *w, const void *p, size_t n)
{
	sk_buf_put(w->b, p, n);
}

void sk_wr_strn(struct sk_wr *w, const char *s, int32_t len, bool flexible)
{
	if (!s)
		len = -1;
	if (flexible)
		sk_wr_uvarint(w, (uint32_t)(len + 1));
	else
		sk_wr_i16(w, (int16_t)len);
	if (len > 0)
		sk_buf_put(w->b, s, (size_t)len);
}

void sk_wr_str(struct sk_wr *w, const char *s, bool flexible)
{
	sk_wr_strn(w, s, s ? (int32_t)strlen(s) : -1, flexible);
}

void sk_wr_bytes(struct sk_wr *w, const void *p, int32_t len, bool flexible)
{
	if (!p)
		len = -1;
	if (flexible)
		sk_wr_uvarint(w, (uint32_t)(len + 1));
	else
		sk_wr_i32(w, len);
	if (len > 0)
		sk_buf_put(w->b, p, (size_t)len);
}

void sk_wr_array(struct sk_wr *w, int32_t n, bool flexible)
{
	if (flexible)
		sk_wr_uvarint(w, (uint32_t)(n + 1));
	else
		sk_wr_i32(w, n);
}

void sk_wr_tags(struct sk_wr *w, bool flexible)
{
	if (flexible)
		sk_wr_uvarint(w, 0);
}

size_t sk_wr_i32_reserve(struct sk_wr *w)
{
	size_t at = w->b->len;

	sk_buf_extend(w->b, 4);
	return at;
}

void sk_wr_i32_patch(struct sk_wr *w, size_t at, int32_t v)
{
	sk_put_be32(w->b->data + at, (uint32_t)v);
}
