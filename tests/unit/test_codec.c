/*
 * Codecs: round trips for every codec over empty, small, random and
 * compressible inputs; xerial-framed snappy; corrupt, truncated and
 * padded inputs; the output bound (including a decompression bomb that
 * must not allocate past it); the frame details other clients rely on.
 * Compressed inputs are copied into exact-size heap blocks so ASan
 * catches any read past len.
 */
#include "codec.h"
#include "tap.h"

#include <errno.h>
#include <snappy-c.h>
#include <stdlib.h>
#include <zlib.h>

#define MIB ((size_t)1 << 20)

static const enum sk_codec codecs[] = { SK_CODEC_GZIP, SK_CODEC_SNAPPY,
					SK_CODEC_LZ4, SK_CODEC_ZSTD };
#define N_CODECS (sizeof(codecs) / sizeof(codecs[0]))

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(next_rand() >> 24);
}

/* Log-like text: compresses well but not trivially. */
static void fill_text(uint8_t *p, size_t n)
{
	static const char *words[] = { "GET ",		 "/index.html ",
				       "200 ",		 "user=alice ",
				       "ts=1700000000 ", "POST ",
				       "/api/v1/items ", "404 " };
	size_t i = 0;

	while (i < n) {
		const char *w = words[next_rand() % 8];

		for (; *w && i < n; w++)
			p[i++] = (uint8_t)*w;
	}
}

/* Decompress an exact-size copy of in[0..len). */
static int inflate_copy(enum sk_codec c, const uint8_t *in, size_t len,
			struct sk_buf *out, size_t max_out, struct sk_err *err)
{
	uint8_t *q = malloc(len ? len : 1);
	int rc;

	if (len)
		memcpy(q, in, len);
	rc = sk_codec_decompress(c, q, len, out, max_out, err);
	free(q);
	return rc;
}

/* Compress and decompress in[0..n); true if the bytes come back. */
static bool round_trip(enum sk_codec c, const uint8_t *in, size_t n,
		       size_t *zlen)
{
	struct sk_buf z = { 0 }, out = { 0 };
	struct sk_err err = { "" };
	bool good;

	good = sk_codec_compress(c, in, n, &z, 0, &err) == 0;
	if (good)
		good = inflate_copy(c, z.data, z.len, &out, n, &err) == 0 &&
		       out.len == n && (n == 0 || memcmp(out.data, in, n) == 0);
	if (!good)
		diag("%s: %s", sk_codec_name(c), err.msg);
	*zlen = z.len;
	sk_buf_free(&z);
	sk_buf_free(&out);
	return good;
}

static void test_round_trips(void)
{
	uint8_t *rnd = malloc(MIB), *txt = malloc(MIB), *zero = calloc(1, MIB);
	static const uint8_t small[] = "hello, kafka";
	size_t zl;

	fill_random(rnd, MIB);
	fill_text(txt, MIB);
	for (size_t i = 0; i < N_CODECS; i++) {
		enum sk_codec c = codecs[i];
		const char *nm = sk_codec_name(c);

		bool good;

		good = round_trip(c, NULL, 0, &zl);
		ok(good, "%s: empty input (%zu bytes)", nm, zl);
		good = round_trip(c, small, sizeof(small), &zl);
		ok(good, "%s: small input (%zu bytes)", nm, zl);
		good = round_trip(c, rnd, MIB, &zl);
		ok(good, "%s: 1 MiB random (%zu bytes)", nm, zl);
		good = round_trip(c, txt, MIB, &zl);
		ok(good, "%s: 1 MiB text (%zu bytes)", nm, zl);
		good = round_trip(c, zero, MIB, &zl);
		ok(good, "%s: 1 MiB zeros (%zu bytes)", nm, zl);
	}
	ok(round_trip(SK_CODEC_NONE, small, sizeof(small), &zl) &&
		   zl == sizeof(small),
	   "none: a copy");
	free(rnd);
	free(txt);
	free(zero);
}

/* Output is appended, and an error leaves what was there. */
static void test_append(void)
{
	struct sk_buf z = { 0 }, out = { 0 };
	bool all = true;

	for (size_t i = 0; i < N_CODECS; i++) {
		z.len = 0;
		out.len = 0;
		sk_buf_put(&out, "prefix", 6);
		sk_codec_compress(codecs[i], (const uint8_t *)"data", 4, &z, 0,
				  NULL);
		all &= sk_codec_decompress(codecs[i], z.data, z.len, &out, 4,
					   NULL) == 0 &&
		       out.len == 10 && memcmp(out.data, "prefixdata", 10) == 0;
		all &= sk_codec_decompress(codecs[i], z.data, z.len - 1, &out,
					   4, NULL) == -EBADMSG &&
		       out.len == 10;
		/* max_out counts only what this call appends. */
		all &= sk_codec_decompress(codecs[i], z.data, z.len, &out, 3,
					   NULL) == -E2BIG &&
		       out.len == 10 && memcmp(out.data, "prefixdata", 10) == 0;
	}
	ok(all, "output is appended; failures restore out->len");
	sk_buf_free(&z);
	sk_buf_free(&out);
}

/* Frame xerial-style, as snappy-java and kafka-python write it. */
static void xerial_frame(struct sk_buf *out, const uint8_t *in, size_t n,
			 size_t block)
{
	static const uint8_t hdr[16] = {
		0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1
	};

	sk_buf_put(out, hdr, sizeof(hdr));
	for (size_t at = 0; at < n; at += block) {
		size_t len_at = out->len;

		sk_buf_extend(out, 4);
		sk_codec_compress(SK_CODEC_SNAPPY, in + at,
				  SK_MIN(block, n - at), out, 0, NULL);
		sk_put_be32(out->data + len_at,
			    (uint32_t)(out->len - len_at - 4));
	}
}

static void test_xerial(void)
{
	uint8_t *txt = malloc(MIB);
	struct sk_buf z = { 0 }, out = { 0 };
	struct sk_err err = { "" };
	int rc;

	fill_text(txt, MIB);
	xerial_frame(&z, txt, MIB, 32 * 1024);
	rc = inflate_copy(SK_CODEC_SNAPPY, z.data, z.len, &out, MIB, &err);
	ok(rc == 0 && out.len == MIB && memcmp(out.data, txt, MIB) == 0,
	   "xerial: 32 KiB blocks of 1 MiB decode (%s)", err.msg);
	out.len = 0;
	is(inflate_copy(SK_CODEC_SNAPPY, z.data, z.len, &out, MIB - 1, &err),
	   -E2BIG, "xerial: output bound spans blocks");
	out.len = 0;
	is(inflate_copy(SK_CODEC_SNAPPY, z.data, 16, &out, MIB, &err), 0,
	   "xerial: header alone is empty");
	is(out.len, 0, "  and gives nothing");
	is(inflate_copy(SK_CODEC_SNAPPY, z.data, 12, &out, MIB, &err), -EBADMSG,
	   "xerial: truncated header");
	is(inflate_copy(SK_CODEC_SNAPPY, z.data, 18, &out, MIB, &err), -EBADMSG,
	   "xerial: truncated block length");
	is(inflate_copy(SK_CODEC_SNAPPY, z.data, z.len - 1, &out, MIB, &err),
	   -EBADMSG, "xerial: last block cut short");
	sk_put_be32(z.data + 16, 0x80000000u);
	is(inflate_copy(SK_CODEC_SNAPPY, z.data, z.len, &out, MIB, &err),
	   -EBADMSG, "xerial: negative block length (%s)", err.msg);
	z.len = 0;
	xerial_frame(&z, txt, 100, 32 * 1024);
	z.data[21] ^= 0xff; /* inside the block: the varint length */
	is(inflate_copy(SK_CODEC_SNAPPY, z.data, z.len, &out, MIB, &err),
	   -EBADMSG, "xerial: corrupt block");
	free(txt);
	sk_buf_free(&z);
	sk_buf_free(&out);
}

static void test_corrupt(void)
{
	static const uint8_t garbage[] = "this is not compressed at all, "
					 "not even close";
	uint8_t *txt = malloc(64 * 1024);
	struct sk_buf z = { 0 }, out = { 0 };
	struct sk_err err;

	fill_text(txt, 64 * 1024);
	for (size_t i = 0; i < N_CODECS; i++) {
		enum sk_codec c = codecs[i];
		const char *nm = sk_codec_name(c);
		bool all = true;

		err.msg[0] = 0;
		is(inflate_copy(c, garbage, sizeof(garbage), &out, MIB, &err),
		   -EBADMSG, "%s: garbage is EBADMSG", nm);
		ok(strncmp(err.msg, nm, strlen(nm)) == 0,
		   "%s: the message names the codec (%s)", nm, err.msg);
		is(inflate_copy(c, NULL, 0, &out, MIB, &err), -EBADMSG,
		   "%s: no bytes at all (%s)", nm, err.msg);

		z.len = 0;
		sk_codec_compress(c, txt, 64 * 1024, &z, 0, NULL);
		z.data[0] ^= 0x55;
		is(inflate_copy(c, z.data, z.len, &out, MIB, &err), -EBADMSG,
		   "%s: corrupt first byte (%s)", nm, err.msg);
		z.data[0] ^= 0x55;

		/* Every cut of the first and last 64 bytes, and the middle. */
		for (size_t n = 0; n < z.len; n++) {
			if (n > 64 && n < z.len - 64 && n != z.len / 2)
				continue;
			out.len = 0;
			all &= inflate_copy(c, z.data, n, &out, MIB, &err) ==
			       -EBADMSG;
		}
		ok(all, "%s: truncated frames are EBADMSG (%s)", nm, err.msg);
		out.len = 0;
		sk_buf_put(&z, "\0", 1);
		is(inflate_copy(c, z.data, z.len, &out, MIB, &err), -EBADMSG,
		   "%s: a stray byte after the data (%s)", nm, err.msg);
	}
	/* A raw snappy header claiming 1 GiB from 8 bytes: damage, not size. */
	{
		static const uint8_t claim[] = { 0x80, 0x80, 0x80, 0x80,
						 0x04, 0x00, 'a',  0x00 };

		is(inflate_copy(SK_CODEC_SNAPPY, claim, sizeof(claim), &out,
				MIB, &err),
		   -EBADMSG, "snappy: impossible ratio is EBADMSG (%s)",
		   err.msg);
	}
	/* gzip's CRC-32 catches damage inside the data. */
	z.len = 0;
	sk_codec_compress(SK_CODEC_GZIP, txt, 64 * 1024, &z, -1, NULL);
	z.data[z.len / 2] ^= 0x10;
	is(inflate_copy(SK_CODEC_GZIP, z.data, z.len, &out, MIB, &err),
	   -EBADMSG, "gzip: damage inside the stream (%s)", err.msg);
	is(inflate_copy(SK_CODEC_GZIP, z.data, z.len, &out, MIB, NULL),
	   -EBADMSG, "a NULL err is allowed");
	free(txt);
	sk_buf_free(&z);
	sk_buf_free(&out);
}

static void test_bound(void)
{
	size_t bomb_len = 64 * MIB;
	uint8_t *zero = calloc(1, bomb_len);
	struct sk_buf z = { 0 }, out = { 0 };
	struct sk_err err = { "" };

	for (size_t i = 0; i < N_CODECS; i++) {
		enum sk_codec c = codecs[i];
		const char *nm = sk_codec_name(c);

		z.len = 0;
		sk_codec_compress(c, zero, MIB, &z, 0, NULL);
		sk_buf_free(&out);
		is(inflate_copy(c, z.data, z.len, &out, MIB - 1, &err), -E2BIG,
		   "%s: one byte over max_out is E2BIG (%s)", nm, err.msg);
		is(inflate_copy(c, z.data, z.len, &out, MIB, &err), 0,
		   "%s: exactly max_out is fine", nm);

		/* 64 MiB of zeros against a 1 MiB bound. */
		z.len = 0;
		sk_codec_compress(c, zero, bomb_len, &z, 0, NULL);
		sk_buf_free(&out);
		is(inflate_copy(c, z.data, z.len, &out, MIB, &err), -E2BIG,
		   "%s: %zu-byte bomb refused", nm, z.len);
		ok(out.cap <= MIB + 1,
		   "%s: without allocating past the bound (cap %zu)", nm,
		   out.cap);
	}
	/*
	 * zstd refused the bomb above by its window (2 MiB for 1 MiB of
	 * output); with room for the window, the output bound stops it.
	 */
	z.len = 0;
	sk_codec_compress(SK_CODEC_ZSTD, zero, bomb_len, &z, 0, NULL);
	sk_buf_free(&out);
	is(inflate_copy(SK_CODEC_ZSTD, z.data, z.len, &out, 4 * MIB, &err),
	   -E2BIG, "zstd: bomb against a 4 MiB bound (%s)", err.msg);
	ok(out.cap <= 4 * MIB + 1 && strstr(err.msg, "decompressed"),
	   "zstd: stopped by the output bound (cap %zu)", out.cap);
	sk_buf_free(&out);
	is(sk_codec_decompress(SK_CODEC_NONE, zero, 10, &out, 9, &err), -E2BIG,
	   "none: bounded too");
	free(zero);
	sk_buf_free(&z);
	sk_buf_free(&out);
}

/* What other clients read: frame details and the alternative wrappers. */
static void test_formats(void)
{
	uint8_t *txt = malloc(256 * 1024);
	struct sk_buf z = { 0 }, out = { 0 };
	struct sk_err err = { "" };
	uLongf zl;
	size_t n;
	int rc;

	fill_text(txt, 256 * 1024);
	sk_codec_compress(SK_CODEC_GZIP, txt, 1000, &z, -1, NULL);
	ok(z.len > 10 && z.data[0] == 0x1f && z.data[1] == 0x8b,
	   "gzip: writes a gzip header");

	z.len = 0;
	sk_codec_compress(SK_CODEC_SNAPPY, txt, 1000, &z, 0, NULL);
	ok(snappy_validate_compressed_buffer((const char *)z.data, z.len) ==
			   SNAPPY_OK &&
		   z.data[0] != 0x82,
	   "snappy: writes raw snappy, not xerial");

	z.len = 0;
	sk_codec_compress(SK_CODEC_LZ4, txt, 256 * 1024, &z, 0, NULL);
	ok(z.len > 7 && sk_be32(z.data) == 0x04224d18 && z.data[4] == 0x60 &&
		   z.data[5] == 0x40,
	   "lz4: frame v1, independent 64 KiB blocks, no size or checksums");

	z.len = 0;
	sk_codec_compress(SK_CODEC_ZSTD, txt, 1000, &z, 0, NULL);
	ok(z.len > 4 && sk_be32(z.data) == 0x28b52ffd,
	   "zstd: writes a zstd frame");

	/* A zlib-wrapped stream is refused: Java reads only gzip. */
	zl = compressBound(1000);
	sk_buf_free(&z);
	sk_buf_reserve(&z, zl);
	compress2(z.data, &zl, txt, 1000, 6);
	out.len = 0;
	rc = inflate_copy(SK_CODEC_GZIP, z.data, zl, &out, MIB, &err);
	is(rc, -EBADMSG, "gzip: a zlib stream is refused (%s)", err.msg);

	/* zstd: two frames concatenated are one stream. */
	z.len = 0;
	sk_codec_compress(SK_CODEC_ZSTD, txt, 1000, &z, 1, NULL);
	sk_codec_compress(SK_CODEC_ZSTD, txt + 1000, 1000, &z, 19, NULL);
	out.len = 0;
	rc = inflate_copy(SK_CODEC_ZSTD, z.data, z.len, &out, MIB, &err);
	ok(rc == 0 && out.len == 2000 && memcmp(out.data, txt, 2000) == 0,
	   "zstd: concatenated frames decode");

	/* gzip: a second member is refused (librdkafka would drop it). */
	z.len = 0;
	sk_codec_compress(SK_CODEC_GZIP, txt, 1000, &z, -1, NULL);
	sk_codec_compress(SK_CODEC_GZIP, txt, 1000, &z, -1, NULL);
	is(inflate_copy(SK_CODEC_GZIP, z.data, z.len, &out, MIB, &err),
	   -EBADMSG, "gzip: a second member is refused (%s)", err.msg);

	/* Levels. */
	ok(sk_codec_compress(SK_CODEC_GZIP, txt, 10, &z, 10, &err) == -EINVAL &&
		   sk_codec_compress(SK_CODEC_ZSTD, txt, 10, &z, 99, &err) ==
			   -EINVAL,
	   "out-of-range levels are EINVAL");
	ok(round_trip(SK_CODEC_LZ4, txt, 256 * 1024, &n) &&
		   sk_codec_compress(SK_CODEC_LZ4, txt, 1000, &z, 9, &err) == 0,
	   "lz4: HC levels work");
	ok(sk_codec_compress(7, txt, 10, &z, 0, &err) == -EINVAL &&
		   sk_codec_decompress(7, txt, 10, &z, 10, &err) == -EINVAL,
	   "unknown codec: EINVAL (%s)", err.msg);
	is_str(sk_codec_name(SK_CODEC_LZ4), "lz4", "sk_codec_name");
	free(txt);
	sk_buf_free(&z);
	sk_buf_free(&out);
}

int main(void)
{
	test_round_trips();
	test_append();
	test_xerial();
	test_corrupt();
	test_bound();
	test_formats();
	plan(tap_n);
	return check_status();
}
