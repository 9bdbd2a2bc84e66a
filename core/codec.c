/*
 * Compression codecs: gzip (zlib), snappy, LZ4 frames and zstd.
 *
 * Decompression is the hostile direction: the input comes from a
 * producer, so every decoder runs with an output limit and a corrupt,
 * truncated or padded input is an error rather than a partial result.
 * Output goes straight into the caller's buffer, grown geometrically and
 * never past the limit, so a small bomb cannot make us allocate more than
 * the caller allowed.
 */
#include "codec.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

/* The first output chunk is at least this big when the size is unknown. */
#define SK_CODEC_MIN_CHUNK (64 * 1024)
/* Guess of the output size from the input size, for the first chunk. */
#define SK_CODEC_RATIO_GUESS 4
/*
 * Largest input either direction accepts: a record batch cannot be
 * larger (batchLength is an int32), and it keeps every size within the
 * 32-bit fields of zlib and snappy.
 */
#define SK_CODEC_MAX_INPUT ((size_t)INT32_MAX)

/* xerial (snappy-java SnappyOutputStream) framing. */
/* clang-format off */
static const uint8_t xerial_magic[8] = {
	0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0
};
/* clang-format on */
#define SK_XERIAL_HEADER_SIZE 16 /* magic, version i32, compat i32 */

/* zstd's own default window limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT). */
#define SK_ZSTD_WINDOWLOG_DEFAULT 27
#define SK_ZSTD_WINDOWLOG_MIN	  10

const char *sk_codec_name(enum sk_codec codec)
{
	switch (codec) {
	case SK_CODEC_NONE:
		return "none";
	case SK_CODEC_GZIP:
		return "gzip";
	case SK_CODEC_SNAPPY:
		return "snappy";
	case SK_CODEC_LZ4:
		return "lz4";
	case SK_CODEC_ZSTD:
		return "zstd";
	}
	return "unknown";
}

/*
 * Where one decompression call stands: out->len was base when it began,
 * and it may append at most limit bytes. limit is max_out + 1, so a
 * decoder that fills it has proved the output is too big without us
 * having to ask it whether more is coming.
 */
struct inflate_ctx {
	struct sk_buf *out;
	size_t base;
	size_t limit;
	size_t max_out;
	const char *name; /* codec, for messages */
	struct sk_err *err;
};

static size_t produced(const struct inflate_ctx *c)
{
	return c->out->len - c->base;
}

static int too_big(const struct inflate_ctx *c)
{
	return sk_err_setc(c->err, -E2BIG,
			   "%s: decompressed data exceeds the limit of %zu "
			   "bytes",
			   c->name, c->max_out);
}

/*
 * Room for more output at out->data + out->len, growing out when it is
 * full: by what was produced so far (doubling), at least hint and
 * SK_CODEC_MIN_CHUNK, never past base + limit. Returns 0 once limit bytes
 * were produced.
 */
static size_t out_room(struct inflate_ctx *c, size_t hint)
{
	struct sk_buf *out = c->out;
	size_t used = produced(c);
	size_t left = c->limit - used;
	size_t grow;

	if (used >= c->limit)
		return 0;
	if (out->cap > out->len)
		return SK_MIN(out->cap - out->len, left);
	grow = SK_MAX(SK_MAX(used, hint), (size_t)SK_CODEC_MIN_CHUNK);
	grow = SK_MIN(grow, left);
	out->data = sk_xrealloc(out->data, out->len + grow);
	out->cap = out->len + grow;
	return grow;
}

/*
 * gzip: one gzip stream (windowBits 15 + 16). A zlib header is refused
 * although librdkafka and kafkajs would read it: Java's GZIPInputStream
 * and kafka-python read only gzip, and no client writes zlib for codec 1.
 * A second gzip member is refused too: Java would read it but librdkafka
 * stops after the first, so consumers would disagree about what the
 * batch holds.
 */
static int gzip_inflate(struct inflate_ctx *c, const uint8_t *in, size_t len)
{
	z_stream zs;
	size_t room;
	int zr, rc = 0;

	memset(&zs, 0, sizeof(zs));
	zr = inflateInit2(&zs, 15 + 16);
	if (zr != Z_OK)
		return sk_err_setc(c->err, -ENOMEM, "gzip: %s", zError(zr));
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)len;
	for (;;) {
		room = out_room(c, len * SK_CODEC_RATIO_GUESS);
		if (room == 0) {
			rc = too_big(c);
			goto out;
		}
		room = SK_MIN(room, (size_t)UINT_MAX);
		zs.next_out = c->out->data + c->out->len;
		zs.avail_out = (uInt)room;
		zr = inflate(&zs, Z_NO_FLUSH);
		c->out->len += room - zs.avail_out;
		if (zr == Z_STREAM_END)
			break;
		if (zr == Z_OK)
			continue;
		/* With room to write, Z_BUF_ERROR means the input ran out. */
		if (zr == Z_BUF_ERROR)
			rc = sk_err_setc(c->err, -EBADMSG,
					 "gzip: stream truncated");
		else if (zr == Z_MEM_ERROR)
			rc = sk_err_setc(c->err, -ENOMEM, "gzip: %s",
					 zError(zr));
		else
			rc = sk_err_setc(c->err, -EBADMSG, "gzip: %s",
					 zs.msg ? zs.msg : zError(zr));
		goto out;
	}
	if (produced(c) > c->max_out)
		rc = too_big(c);
	else if (zs.avail_in)
		rc = sk_err_setc(c->err, -EBADMSG,
				 "gzip: %u stray bytes after the stream",
				 zs.avail_in);
out:
	inflateEnd(&zs);
	return rc;
}

/*
 * Snappy's best case: a 3-byte copy element writes 64 bytes. A block
 * header claiming more than this many times its input is damaged, not
 * big.
 */
#define SK_SNAPPY_MAX_RATIO 22

/*
 * One raw snappy block. Its header states the output size, so the limit
 * is checked before anything is allocated and the block is decoded in
 * place.
 */
static int snappy_block(struct inflate_ctx *c, const uint8_t *in, size_t len)
{
	struct sk_buf *out = c->out;
	size_t ulen, n;
	char empty;
	char *dst;

	if (snappy_uncompressed_length((const char *)in, len, &ulen) !=
	    SNAPPY_OK)
		return sk_err_setc(c->err, -EBADMSG,
				   "snappy: bad block header");
	if (ulen / SK_SNAPPY_MAX_RATIO > len)
		return sk_err_setc(c->err, -EBADMSG,
				   "snappy: block of %zu bytes claims %zu", len,
				   ulen);
	if (ulen > c->max_out - produced(c))
		return too_big(c);
	if (out->cap - out->len < ulen) {
		out->data = sk_xrealloc(out->data, out->len + ulen);
		out->cap = out->len + ulen;
	}
	/* An empty block still has to be checked; never offset NULL. */
	dst = ulen ? (char *)out->data + out->len : &empty;
	n = ulen;
	if (snappy_uncompress((const char *)in, len, dst, &n) != SNAPPY_OK ||
	    n != ulen)
		return sk_err_setc(c->err, -EBADMSG, "snappy: corrupt block");
	out->len += n;
	return 0;
}

/*
 * Raw snappy (librdkafka) or xerial framing (Java, kafka-python). A valid
 * raw block cannot start with the xerial magic (its first element would
 * be a copy with nothing to copy from), so the magic decides.
 */
static int snappy_inflate(struct inflate_ctx *c, const uint8_t *in, size_t len)
{
	size_t pos = SK_XERIAL_HEADER_SIZE;
	uint32_t blen;
	int rc;

	if (len < sizeof(xerial_magic) ||
	    memcmp(in, xerial_magic, sizeof(xerial_magic)) != 0)
		return snappy_block(c, in, len);
	if (len < SK_XERIAL_HEADER_SIZE)
		return sk_err_setc(c->err, -EBADMSG,
				   "snappy: truncated xerial header");
	/* Version and compat are not checked, as librdkafka does not. */
	while (pos < len) {
		if (len - pos < 4)
			return sk_err_setc(c->err, -EBADMSG,
					   "snappy: truncated xerial block "
					   "length");
		blen = sk_be32(in + pos);
		pos += 4;
		if (blen > len - pos)
			return sk_err_setc(c->err, -EBADMSG,
					   "snappy: xerial block of %u bytes "
					   "but %zu left",
					   blen, len - pos);
		rc = snappy_block(c, in + pos, blen);
		if (rc)
			return rc;
		pos += blen;
	}
	return 0;
}

/*
 * One LZ4 frame (header checksum, block and content checksums verified by
 * LZ4F). Bytes after the frame are refused: Java's reader ignores them
 * while librdkafka's decodes them as another frame.
 */
static int lz4_inflate(struct inflate_ctx *c, const uint8_t *in, size_t len)
{
	LZ4F_dctx *dctx;
	size_t pos = 0, hint = 1, room, dn, sn;
	int rc = 0;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
		return sk_err_setc(c->err, -ENOMEM,
				   "lz4: cannot create a decoder");
	while (hint != 0) {
		room = out_room(c, len * SK_CODEC_RATIO_GUESS);
		if (room == 0) {
			rc = too_big(c);
			goto out;
		}
		dn = room;
		sn = len - pos;
		hint = LZ4F_decompress(dctx, c->out->data + c->out->len, &dn,
				       in + pos, &sn, NULL);
		if (LZ4F_isError(hint)) {
			rc = sk_err_setc(c->err, -EBADMSG, "lz4: %s",
					 LZ4F_getErrorName(hint));
			goto out;
		}
		pos += sn;
		c->out->len += dn;
		/* Neither input taken nor output given: the frame is cut. */
		if (hint != 0 && dn == 0 && sn == 0) {
			rc = sk_err_setc(c->err, -EBADMSG,
					 "lz4: frame truncated");
			goto out;
		}
	}
	if (produced(c) > c->max_out)
		rc = too_big(c);
	else if (pos < len)
		rc = sk_err_setc(c->err, -EBADMSG,
				 "lz4: %zu stray bytes after the frame",
				 len - pos);
out:
	LZ4F_freeDecompressionContext(dctx);
	return rc;
}

/* Smallest window log that covers n bytes, within zstd's usual range. */
static int zstd_window_log(size_t n)
{
	int log = SK_ZSTD_WINDOWLOG_MIN;

	while (log < SK_ZSTD_WINDOWLOG_DEFAULT && ((size_t)1 << log) < n)
		log++;
	return log;
}

/*
 * zstd: any number of frames (skippable ones included), as zstd's own
 * tools and every client's reader accept. The window is capped at the
 * output limit, so a frame cannot make the decoder allocate a window
 * larger than the output it is allowed to produce.
 */
static int zstd_inflate(struct inflate_ctx *c, const uint8_t *in, size_t len)
{
	ZSTD_DStream *ds = ZSTD_createDStream();
	ZSTD_inBuffer ib = { in, len, 0 };
	ZSTD_outBuffer ob;
	size_t zr, room;
	int rc = 0;

	if (!ds)
		return sk_err_setc(c->err, -ENOMEM,
				   "zstd: cannot create a decoder");
	zr = ZSTD_DCtx_setParameter(ds, ZSTD_d_windowLogMax,
				    zstd_window_log(c->max_out));
	if (ZSTD_isError(zr)) {
		rc = sk_err_setc(c->err, -ENOMEM, "zstd: %s",
				 ZSTD_getErrorName(zr));
		goto out;
	}
	/*
	 * zr 0 is a frame decoded and flushed; with input left, the next
	 * frame follows. A call may consume input without producing output
	 * (the decoder buffers a block), so only a call that does neither
	 * shows the input has run out mid-frame.
	 */
	for (;;) {
		size_t in_before = ib.pos;

		room = out_room(c, len * SK_CODEC_RATIO_GUESS);
		if (room == 0) {
			rc = too_big(c);
			goto out;
		}
		ob = (ZSTD_outBuffer){ c->out->data + c->out->len, room, 0 };
		zr = ZSTD_decompressStream(ds, &ob, &ib);
		c->out->len += ob.pos;
		/*
		 * A window over the limit means a frame whose content
		 * (when known; zstd never uses a larger window then) is
		 * over it too: the same verdict as for the output itself.
		 */
		if (ZSTD_isError(zr) &&
		    ZSTD_getErrorCode(zr) ==
			    ZSTD_error_frameParameter_windowTooLarge) {
			rc = sk_err_setc(c->err, -E2BIG,
					 "zstd: frame window exceeds the limit "
					 "of %zu bytes",
					 c->max_out);
			goto out;
		}
		if (ZSTD_isError(zr)) {
			rc = sk_err_setc(c->err, -EBADMSG, "zstd: %s",
					 ZSTD_getErrorName(zr));
			goto out;
		}
		if (zr == 0 && ib.pos == ib.size)
			break;
		if (ob.pos == 0 && ib.pos == in_before) {
			rc = sk_err_setc(c->err, -EBADMSG,
					 "zstd: frame truncated");
			goto out;
		}
	}
	if (produced(c) > c->max_out)
		rc = too_big(c);
out:
	ZSTD_freeDStream(ds);
	return rc;
}

int sk_codec_decompress(enum sk_codec codec, const uint8_t *in, size_t len,
			struct sk_buf *out, size_t max_out, struct sk_err *err)
{
	struct inflate_ctx c = {
		.out = out,
		.base = out->len,
		.limit = max_out == SIZE_MAX ? max_out : max_out + 1,
		.max_out = max_out,
		.name = sk_codec_name(codec),
		.err = err,
	};
	static const uint8_t none[1];
	int rc;

	if (len > SK_CODEC_MAX_INPUT)
		return sk_err_setc(err, -EINVAL,
				   "%s: input of %zu bytes is too large",
				   c.name, len);
	if (!in)
		in = none; /* len is 0: keep the decoders off NULL */
	switch (codec) {
	case SK_CODEC_NONE:
		if (len > max_out)
			return too_big(&c);
		sk_buf_put(out, in, len);
		return 0;
	case SK_CODEC_GZIP:
		rc = gzip_inflate(&c, in, len);
		break;
	case SK_CODEC_SNAPPY:
		rc = snappy_inflate(&c, in, len);
		break;
	case SK_CODEC_LZ4:
		rc = lz4_inflate(&c, in, len);
		break;
	case SK_CODEC_ZSTD:
		rc = zstd_inflate(&c, in, len);
		break;
	default:
		return sk_err_setc(err, -EINVAL, "unknown codec %d",
				   (int)codec);
	}
	if (rc)
		out->len = c.base;
	return rc;
}

static int gzip_deflate(const uint8_t *in, size_t len, struct sk_buf *out,
			int level, struct sk_err *err)
{
	z_stream zs;
	uLong bound;
	int zr;

	if (level < -1 || level > Z_BEST_COMPRESSION)
		return sk_err_setc(err, -EINVAL,
				   "gzip: level %d is not 0 (default) or 1..9",
				   level);
	/* 0 is "default" for every codec here, not zlib's "store". */
	if (level <= 0)
		level = Z_DEFAULT_COMPRESSION;
	memset(&zs, 0, sizeof(zs));
	/* 15 + 16: a gzip header and trailer rather than zlib's. */
	zr = deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8,
			  Z_DEFAULT_STRATEGY);
	if (zr != Z_OK)
		return sk_err_setc(err, -EIO, "gzip: %s", zError(zr));
	bound = deflateBound(&zs, (uLong)len);
	sk_buf_reserve(out, bound);
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)len;
	zs.next_out = out->data + out->len;
	zs.avail_out = (uInt)bound;
	zr = deflate(&zs, Z_FINISH);
	if (zr == Z_STREAM_END)
		out->len += bound - zs.avail_out;
	deflateEnd(&zs);
	if (zr != Z_STREAM_END)
		return sk_err_setc(err, -EIO, "gzip: deflate failed: %s",
				   zs.msg ? zs.msg : zError(zr));
	return 0;
}

static int snappy_deflate(const uint8_t *in, size_t len, struct sk_buf *out,
			  struct sk_err *err)
{
	size_t n = snappy_max_compressed_length(len);

	sk_buf_reserve(out, n);
	if (snappy_compress((const char *)in, len, (char *)out->data + out->len,
			    &n) != SNAPPY_OK)
		return sk_err_setc(err, -EIO, "snappy: compression failed");
	out->len += n;
	return 0;
}

static int lz4_deflate(const uint8_t *in, size_t len, struct sk_buf *out,
		       int level, struct sk_err *err)
{
	LZ4F_preferences_t prefs;
	size_t bound, n;

	memset(&prefs, 0, sizeof(prefs));
	prefs.frameInfo.blockSizeID = LZ4F_max64KB;
	prefs.frameInfo.blockMode = LZ4F_blockIndependent;
	prefs.frameInfo.contentChecksumFlag = LZ4F_noContentChecksum;
	prefs.frameInfo.blockChecksumFlag = LZ4F_noBlockChecksum;
	prefs.compressionLevel = level;
	bound = LZ4F_compressFrameBound(len, &prefs);
	sk_buf_reserve(out, bound);
	n = LZ4F_compressFrame(out->data + out->len, bound, in, len, &prefs);
	if (LZ4F_isError(n))
		return sk_err_setc(err, -EIO, "lz4: %s", LZ4F_getErrorName(n));
	out->len += n;
	return 0;
}

static int zstd_deflate(const uint8_t *in, size_t len, struct sk_buf *out,
			int level, struct sk_err *err)
{
	size_t bound = ZSTD_compressBound(len), n;

	if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
		return sk_err_setc(err, -EINVAL, "zstd: level %d is not %d..%d",
				   level, ZSTD_minCLevel(), ZSTD_maxCLevel());
	sk_buf_reserve(out, bound);
	n = ZSTD_compress(out->data + out->len, bound, in, len, level);
	if (ZSTD_isError(n))
		return sk_err_setc(err, -EIO, "zstd: %s", ZSTD_getErrorName(n));
	out->len += n;
	return 0;
}

int sk_codec_compress(enum sk_codec codec, const uint8_t *in, size_t len,
		      struct sk_buf *out, int level, struct sk_err *err)
{
	static const uint8_t none[1];

	if (len > SK_CODEC_MAX_INPUT)
		return sk_err_setc(err, -EINVAL,
				   "%s: input of %zu bytes is too large",
				   sk_codec_name(codec), len);
	if (!in)
		in = none;
	switch (codec) {
	case SK_CODEC_NONE:
		sk_buf_put(out, in, len);
		return 0;
	case SK_CODEC_GZIP:
		return gzip_deflate(in, len, out, level, err);
	case SK_CODEC_SNAPPY:
		return snappy_deflate(in, len, out, err);
	case SK_CODEC_LZ4:
		return lz4_deflate(in, len, out, level, err);
	case SK_CODEC_ZSTD:
		return zstd_deflate(in, len, out, level, err);
	}
	return sk_err_setc(err, -EINVAL, "unknown codec %d", (int)codec);
}
