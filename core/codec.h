/*
 * The four Kafka compression codecs, one call each way, on whole buffers.
 *
 * Used by produce validation (core/batch.c) to look inside compressed
 * record batches, and by anything that re-encodes a batch it changed
 * (Lua hooks). Both directions append to a caller-owned struct sk_buf so a
 * caller can keep one buffer across requests instead of allocating per
 * batch.
 */
#ifndef SK_CODEC_H
#define SK_CODEC_H

#include "batch.h"
#include "buf.h"

/*
 * Decompress in[0..len) with codec and append the result to out, at most
 * max_out bytes of it. The formats read are what Kafka clients write:
 *  - gzip: one gzip stream (not zlib: Java cannot read it), nothing
 *    after it;
 *  - snappy: raw snappy (librdkafka) or xerial framing (Java,
 *    kafka-python): "\x82SNAPPY\0", version, compat, then
 *    [int32 BE length, raw block]*;
 *  - lz4: one LZ4 frame, nothing after it;
 *  - zstd: one or more zstd frames;
 *  - none: a bounded copy.
 * Returns 0; -E2BIG if the output would pass max_out; -EBADMSG if the
 * input is corrupt, truncated or followed by stray bytes (err carries the
 * codec's own message); -EINVAL for an unknown codec or an input over
 * INT32_MAX bytes; -ENOMEM if a codec library cannot allocate its
 * state. On error out->len is restored (the bytes past it are garbage)
 * but out may have grown. Memory stays within about max_out plus the
 * codec's own state (for zstd a window of at most max_out, rounded up to
 * a power of two).
 */
int sk_codec_decompress(enum sk_codec codec, const uint8_t *in, size_t len,
			struct sk_buf *out, size_t max_out, struct sk_err *err);

/*
 * Compress in[0..len) with codec and append the result to out, in a form
 * every client Skald is tested with can read. level 0 is the codec's
 * default everywhere:
 *  - gzip: a gzip stream; level 1..9 (-1 also means the default);
 *  - snappy: raw snappy, as librdkafka writes it. librdkafka, Java
 *    (snappy-java falls back to raw when the xerial magic is absent),
 *    kafka-python and kafkajs-snappy all read raw; xerial framing would
 *    only add 20 bytes. level is ignored;
 *  - lz4: one LZ4 frame with independent 64 KiB blocks and no content
 *    size or checksums, the subset Java's KafkaLZ4BlockInputStream reads;
 *    level as LZ4F's compressionLevel (0 default, >= 3 HC);
 *  - zstd: one zstd frame with its content size; level as ZSTD (0
 *    default);
 *  - none: a copy.
 * Returns 0, or -EINVAL (unknown codec, a gzip or zstd level out of
 * range, an input over INT32_MAX bytes) with err set; -EIO if the
 * library fails (not expected).
 */
int sk_codec_compress(enum sk_codec codec, const uint8_t *in, size_t len,
		      struct sk_buf *out, int level, struct sk_err *err);

/* Kafka's name for codec ("gzip", ...), "unknown" outside 0..4. */
const char *sk_codec_name(enum sk_codec codec);

#endif
