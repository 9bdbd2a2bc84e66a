/*
 * Record views (see record_view.h).
 *
 * The view points into the batch (or the decompressed records): nothing
 * is copied but the header array, which lives in a buffer reused for the
 * whole walk.
 */
#include "record_view.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "codec.h"
#include "plugin_internal.h"

/* Decode rec's raw headers into hv (n entries); false if malformed. */
static bool headers_decode(const struct sk_record *rec,
			   struct skald_header_view *hv)
{
	struct sk_rd r;

	sk_rd_init(&r, rec->headers, rec->headers_len);
	for (int32_t i = 0; i < rec->header_count; i++) {
		int32_t klen = sk_rd_varint(&r);
		int32_t vlen;

		if (klen < 0)
			return false;
		hv[i].key = (const char *)sk_rd_raw(&r, (size_t)klen);
		hv[i].key_len = klen;
		vlen = sk_rd_varint(&r);
		if (vlen < -1)
			return false;
		hv[i].value_len = vlen;
		hv[i].value = vlen < 0 ? NULL : sk_rd_raw(&r, (size_t)vlen);
		if (!sk_rd_ok(&r))
			return false;
	}
	return sk_rd_ok(&r);
}

/* Walk the records of one batch. */
static int batch_walk(const uint8_t *b, size_t size,
		      const struct sk_batch_hdr *h, struct sk_buf *scratch,
		      struct skald_header_view **hv, size_t *hv_cap,
		      skald_record_fn fn, void *arg)
{
	int codec = h->attributes & SK_BATCH_ATTR_CODEC_MASK;
	const uint8_t *recs = b + SK_BATCH_HEADER_SIZE;
	size_t recs_len = size - SK_BATCH_HEADER_SIZE;
	struct skald_record_view v;
	struct sk_record rec;
	struct sk_rd r;
	int rc;

	if (codec != SK_CODEC_NONE) {
		if (codec > SK_CODEC_ZSTD)
			return -ENOTSUP;
		scratch->len = 0;
		rc = sk_codec_decompress((enum sk_codec)codec, recs, recs_len,
					 scratch, SK_RECORD_VIEW_MAX_INFLATE,
					 NULL);
		if (rc)
			return rc == -E2BIG    ? -E2BIG
			       : rc == -ENOMEM ? -ENOMEM
					       : -EBADMSG;
		recs = scratch->data;
		recs_len = scratch->len;
	}
	sk_rd_init(&r, recs, recs_len);
	for (int32_t i = 0; i < h->records_count; i++) {
		if (!sk_batch_record_next(&r, &rec))
			return -EBADMSG;
		if ((size_t)rec.header_count > *hv_cap) {
			*hv_cap = (size_t)rec.header_count;
			*hv = sk_xrealloc(*hv, *hv_cap * sizeof(**hv));
		}
		if (rec.header_count && !headers_decode(&rec, *hv))
			return -EBADMSG;
		memset(&v, 0, sizeof(v));
		v.size = (uint32_t)sizeof(v);
		v.offset_delta = rec.offset_delta;
		v.offset = h->base_offset + rec.offset_delta;
		v.timestamp = (h->attributes & SK_BATCH_ATTR_LOG_APPEND_TIME)
				      ? h->max_timestamp
				      : h->base_timestamp + rec.timestamp_delta;
		v.key = rec.key.p;
		v.key_len = rec.key.len;
		v.value = rec.value.p;
		v.value_len = rec.value.len;
		v.headers = *hv;
		v.n_headers = (uint32_t)rec.header_count;
		v.attributes = h->attributes;
		v.base_offset = h->base_offset;
		v.producer_id = h->producer_id;
		rc = fn(arg, &v);
		if (rc)
			return rc;
	}
	return sk_rd_left(&r) == 0 ? 0 : -EBADMSG;
}

int sk_record_view_foreach(const void *p, size_t len, uint32_t flags,
			   struct sk_buf *scratch, skald_record_fn fn,
			   void *arg)
{
	const uint8_t *b = p;
	struct skald_header_view *hv = NULL;
	struct sk_buf tmp = { 0 };
	size_t hv_cap = 0, pos = 0;
	int rc = 0;

	if (!scratch)
		scratch = &tmp;
	while (rc == 0 && len - pos >= SK_BATCH_LOG_OVERHEAD) {
		struct sk_batch_hdr h;
		size_t size;

		if (sk_batch_parse_header(b + pos, len - pos, &h)) {
			/* A short tail is a partial batch; else damage. */
			if (len - pos >= SK_BATCH_HEADER_SIZE)
				rc = -EBADMSG;
			break;
		}
		size = sk_batch_size(&h);
		if (size > len - pos)
			break; /* partial batch */
		if ((flags & SKALD_RECORDS_VERIFY_CRC) &&
		    !sk_batch_crc_ok(b + pos, size)) {
			rc = -EBADMSG;
			break;
		}
		if (!(h.attributes & SK_BATCH_ATTR_CONTROL))
			rc = batch_walk(b + pos, size, &h, scratch, &hv,
					&hv_cap, fn, arg);
		pos += size;
	}
	free(hv);
	sk_buf_free(&tmp);
	return rc;
}

int sk_plugin_records_foreach(const struct skald_host *h, const void *batches,
			      size_t len, uint32_t flags, skald_record_fn fn,
			      void *arg)
{
	(void)h;
	if (!fn || (len && !batches))
		return -EINVAL;
	return sk_record_view_foreach(batches, len, flags, NULL, fn, arg);
}
