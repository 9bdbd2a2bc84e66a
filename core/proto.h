/*
 * Kafka wire primitives: a bounded reader and a buffer-backed writer.
 *
 * The reader never reads past its end. Any short read or malformed value
 * sets a sticky error flag and yields zeros, so a decoder reads a whole
 * message field by field and checks sk_rd_ok() once at the end (no macros
 * hiding a goto). All multi-byte integers are big-endian. Record-level
 * varints are zigzag-encoded; lengths in flexible versions are unsigned
 * varints of N+1 with 0 meaning null.
 */
#ifndef SK_PROTO_H
#define SK_PROTO_H

#include "buf.h"

/* A borrowed, possibly null, byte string inside a request. */
struct sk_str {
	const uint8_t *p; /* NULL for a null string */
	int32_t len;	  /* -1 for null */
};

struct sk_rd {
	const uint8_t *p;   /* next byte to read */
	const uint8_t *end; /* one past the last readable byte */
	bool err;	    /* sticky: set by the first bad read */
};

static inline void sk_rd_init(struct sk_rd *r, const void *p, size_t len)
{
	r->p = p;
	r->end = (const uint8_t *)p + len;
	r->err = false;
}

static inline bool sk_rd_ok(const struct sk_rd *r)
{
	return !r->err;
}
static inline size_t sk_rd_left(const struct sk_rd *r)
{
	return (size_t)(r->end - r->p);
}

/* Mark the reader failed (for semantic errors found by the caller). */
static inline void sk_rd_fail(struct sk_rd *r)
{
	r->err = true;
}

int8_t sk_rd_i8(struct sk_rd *r);
int16_t sk_rd_i16(struct sk_rd *r);
int32_t sk_rd_i32(struct sk_rd *r);
int64_t sk_rd_i64(struct sk_rd *r);
uint32_t sk_rd_u32(struct sk_rd *r);
/* Unsigned LEB128 up to 32 bits (flexible-version lengths, tags). */
uint32_t sk_rd_uvarint(struct sk_rd *r);
/* Zigzag varint (32 bits) and varlong (64 bits), as used inside records. */
int32_t sk_rd_varint(struct sk_rd *r);
int64_t sk_rd_varlong(struct sk_rd *r);
/* Borrow n raw bytes; NULL (and error) if fewer remain. */
const uint8_t *sk_rd_raw(struct sk_rd *r, size_t n);

/* Classic int16-length string; -1 is null. */
struct sk_str sk_rd_string(struct sk_rd *r);
/* Compact (uvarint N+1) string; 0 is null. */
struct sk_str sk_rd_compact_string(struct sk_rd *r);
/* Either form, chosen by the version being flexible. */
struct sk_str sk_rd_str(struct sk_rd *r, bool flexible);
/* Classic int32-length bytes / compact bytes, chosen by flexible. */
struct sk_str sk_rd_bytes(struct sk_rd *r, bool flexible);
/*
 * Array length: classic int32 or compact uvarint N+1. Returns -1 for null.
 * A length that cannot possibly fit in the remaining bytes (each element
 * needs at least min_elem_size bytes) sets the error and returns 0, so
 * callers can size allocations from it safely.
 */
int32_t sk_rd_array(struct sk_rd *r, bool flexible, size_t min_elem_size);
/* Skip a tagged-field section (flexible versions only; no-op otherwise). */
void sk_rd_tags(struct sk_rd *r, bool flexible);

/* True if s equals the C string c. */
bool sk_str_eq(struct sk_str s, const char *c);
/* Copy s into a new NUL-terminated string ("" for null). */
char *sk_str_dup(struct sk_str s);

/* The writer appends to a buffer owned by the caller. */
struct sk_wr {
	struct sk_buf *b;
};

void sk_wr_i8(struct sk_wr *w, int8_t v);
void sk_wr_i16(struct sk_wr *w, int16_t v);
void sk_wr_i32(struct sk_wr *w, int32_t v);
void sk_wr_i64(struct sk_wr *w, int64_t v);
void sk_wr_uvarint(struct sk_wr *w, uint32_t v);
void sk_wr_varint(struct sk_wr *w, int32_t v);
void sk_wr_varlong(struct sk_wr *w, int64_t v);
void sk_wr_raw(struct sk_wr *w, const void *p, size_t n);
/* A string (NULL = null) in classic or compact form. */
void sk_wr_str(struct sk_wr *w, const char *s, bool flexible);
/* Same, from a counted string (len -1 = null). */
void sk_wr_strn(struct sk_wr *w, const char *s, int32_t len, bool flexible);
/* Bytes (NULL = null) in classic int32 or compact form. */
void sk_wr_bytes(struct sk_wr *w, const void *p, int32_t len, bool flexible);
/* An array length (-1 = null) in classic or compact form. */
void sk_wr_array(struct sk_wr *w, int32_t n, bool flexible);
/* An empty tagged-field section (flexible versions only). */
void sk_wr_tags(struct sk_wr *w, bool flexible);

/* Reserve an int32 to be filled later; returns its offset in the buffer. */
size_t sk_wr_i32_reserve(struct sk_wr *w);
void sk_wr_i32_patch(struct sk_wr *w, size_t at, int32_t v);

/* Big-endian helpers on raw memory (record batch headers, index files). */
static inline uint32_t sk_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t sk_be64(const uint8_t *p)
{
	return (uint64_t)sk_be32(p) << 32 | sk_be32(p + 4);
}
static inline uint16_t sk_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}
static inline void sk_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void sk_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline void sk_put_be64(uint8_t *p, uint64_t v)
{
	sk_put_be32(p, (uint32_t)(v >> 32));
	sk_put_be32(p + 4, (uint32_t)v);
}

#endif
