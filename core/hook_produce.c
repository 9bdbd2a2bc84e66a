/*
 * Hooks on the produce path: a batch of a hooked topic, its header
 * validated, is copied into a job, queued behind the partition's earlier
 * batches, checked and run through the topic's chain on a hook worker,
 * and appended on the loop thread when its turn comes. Only the head of a partition's queue is on
 * the pool, so appends happen in the order the batches arrived while
 * other partitions proceed in parallel. A batch of an unhooked topic still
 * waits behind hooked ones of its partition (after a reload removed the
 * hooks), never overtakes them.
 *
 * The result of a chain: the original bytes when no hook changed or
 * dropped anything (CRC untouched); otherwise one re-encoded batch with
 * the same codec, attributes, producer id, epoch, base sequence,
 * baseTimestamp and lastOffsetDelta, whose kept records keep their offset
 * deltas (so a record no hook changed keeps its bytes: it is copied, not
 * encoded again). A dropped record thus leaves an offset gap, exactly as
 * compaction does, and the batch still covers the sequence numbers the
 * producer sent, which is what an idempotent producer's state is built
 * from. A batch whose every record was dropped is written as an empty
 * batch when it carries a producer id (so the sequence range is kept)
 * and not at all otherwise.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "codec.h"
#include "compact.h"
#include "hook.h"
#include "kafka.h"
#include "say.h"

/* One partition's queue of batches in the hooks. */
struct hk_pq {
	struct sk_hnode node;
	char *key;	     /* "topic/partition" */
	struct sk_list jobs; /* struct hk_job; the head is on the pool */
};

struct hk_job {
	struct sk_job job;
	struct sk_list link; /* in pq->jobs */
	struct sk_hooks *hs;
	struct hk_pq *pq;
	struct sk_hook_chain *chain; /* referenced; NULL: pass through */
	bool *skip;		     /* [chain->n]: breaker open */
	char *topic;
	int32_t partition;
	uint8_t *bytes; /* the batch as produced */
	size_t len;
	int64_t max_message_bytes;
	bool compact; /* a compacted topic: keys checked after the hooks */
	struct sk_hook_batch_out out;
	struct sk_hook_wait *w; /* NULL once the produce went away */
};

/* ------------------------------------------------------------------ */
/* Decoding and encoding */

/* Parsed headers of a record, for sk_batch_build. */
static struct sk_record_header_in *parse_headers(const struct sk_hook_rec *r,
						 size_t extra, int32_t *n)
{
	struct sk_record_header_in *h = sk_xcalloc(
		(size_t)SK_MAX(r->n_hdrs, 0) + extra + 1, sizeof(*h));
	struct sk_rd rd;

	*n = 0;
	sk_rd_init(&rd, r->hdrs, r->hdrs_len);
	for (int32_t i = 0; i < r->n_hdrs; i++) {
		int32_t kl = sk_rd_varint(&rd), vl;
		const uint8_t *k, *v = NULL;

		if (kl < 0)
			break;
		k = sk_rd_raw(&rd, (size_t)kl);
		vl = sk_rd_varint(&rd);
		if (vl > 0)
			v = sk_rd_raw(&rd, (size_t)vl);
		if (!sk_rd_ok(&rd))
			break;
		h[*n] = (struct sk_record_header_in){ k, kl, v,
						      vl < 0 ? -1 : vl };
		(*n)++;
	}
	return h;
}

/*
 * Records of a validated batch into rs, and into raws each record's wire
 * bytes (what sk_batch_record_write copies for a record no hook
 * changed); records_buf receives the decompressed records of a
 * compressed batch (rs and raws point into it).
 */
/* What decode_one fills as the validation walks the records. */
struct hk_decode {
	const struct sk_batch_hdr *h;
	struct sk_hook_recs *rs;
	struct sk_str *raws; /* [rs->cap] */
};

/* Smallest record: a length and six one-byte fields. */
#define HK_MIN_RECORD 7
/* Records made room for at once in a compressed batch. */
#define HK_DECODE_CHUNK 4096

static void decode_one(void *arg, const struct sk_record *rec)
{
	struct hk_decode *d = arg;
	struct sk_hook_recs *rs = d->rs;

	/* Never past recordsCount: the walk fails before that. */
	if (rs->n == rs->cap) {
		rs->cap = SK_MIN(rs->cap * 2, (size_t)d->h->records_count);
		rs->r = sk_xrealloc(rs->r, rs->cap * sizeof(*rs->r));
		d->raws = sk_xrealloc(d->raws, rs->cap * sizeof(*d->raws));
	}
	d->raws[rs->n] = (struct sk_str){ rec->raw, (int32_t)rec->raw_len };
	rs->r[rs->n++] = (struct sk_hook_rec){
		.offset_delta = rec->offset_delta,
		.timestamp = (int64_t)((uint64_t)d->h->base_timestamp +
				       (uint64_t)rec->timestamp_delta),
		.key = rec->key.p,
		.key_len = rec->key.len,
		.value = rec->value.p,
		.value_len = rec->value.len,
		.hdrs = rec->headers,
		.hdrs_len = rec->headers_len,
		.n_hdrs = rec->header_count,
	};
}

/*
 * Check the records of a batch whose header passed (h) and collect them
 * into rs in the same pass, decompressing into records_buf if need be:
 * a hooked batch's records are checked here, off the loop. Returns the
 * Kafka error the produce gets if they are not well formed.
 */
static enum sk_kerr decode(const uint8_t *batch, size_t len,
			   const struct sk_batch_hdr *h,
			   int64_t max_message_bytes,
			   struct sk_buf *records_buf, struct sk_hook_recs *rs,
			   struct sk_str **raws, struct sk_err *err)
{
	struct hk_decode d = { .h = h, .rs = rs };
	size_t payload = len - SK_BATCH_HEADER_SIZE;
	enum sk_kerr kerr;

	/* recordsCount is the client's word: room grows with the records. */
	rs->cap = (h->attributes & SK_BATCH_ATTR_CODEC_MASK) == SK_CODEC_NONE
			  ? payload / HK_MIN_RECORD + 1
			  : HK_DECODE_CHUNK;
	rs->cap = SK_MIN(rs->cap, (size_t)SK_MAX(h->records_count, 1));
	rs->r = sk_xmalloc(rs->cap * sizeof(*rs->r));
	d.raws = sk_xmalloc(rs->cap * sizeof(*d.raws));
	kerr = sk_batch_validate_records(batch, len, h, max_message_bytes,
					 records_buf, decode_one, &d, err);
	*raws = d.raws;
	return kerr;
}

/*
 * Re-encode the kept records of rs as one batch like h (see the top):
 * the same baseTimestamp and offset deltas, so a record no hook changed
 * is copied as it came (raws[i]). An uncompressed batch is written
 * straight into out, sized once.
 */
static int encode(const struct sk_batch_hdr *h, const struct sk_hook_recs *rs,
		  const struct sk_str *raws, struct sk_buf *out,
		  struct sk_err *err)
{
	enum sk_codec codec = h->attributes & SK_BATCH_ATTR_CODEC_MASK;
	struct sk_buf recs = { 0 }, comp = { 0 };
	struct sk_buf *to = codec != SK_CODEC_NONE ? &recs : out;
	struct sk_batch_hdr nh = *h;
	size_t need = SK_BATCH_HEADER_SIZE, start = 0;
	int32_t kept = 0;
	int rc = 0;

	nh.base_offset = 0;
	nh.max_timestamp = -1;
	for (size_t i = 0; i < rs->n; i++) {
		const struct sk_hook_rec *r = &rs->r[i];

		if (r->dropped)
			continue;
		kept++;
		nh.max_timestamp = SK_MAX(nh.max_timestamp, r->timestamp);
		need += SK_BATCH_RECORD_OVERHEAD_MAX +
			(size_t)SK_MAX(r->key_len, 0) +
			(size_t)SK_MAX(r->value_len, 0) + r->hdrs_len;
	}
	if (kept == 0)
		nh.max_timestamp = h->max_timestamp;
	nh.records_count = kept;
	sk_buf_reserve(to, need);
	if (to == out)
		start = sk_batch_frame_begin(out, &nh);
	for (size_t i = 0; i < rs->n; i++) {
		const struct sk_hook_rec *r = &rs->r[i];
		int64_t ts_delta = (int64_t)((uint64_t)r->timestamp -
					     (uint64_t)h->base_timestamp);
		struct sk_record rec = {
			.timestamp_delta = ts_delta,
			.offset_delta = r->offset_delta,
			.key = { r->key, r->key_len },
			.value = { r->value, r->value_len },
			.header_count = r->n_hdrs,
			.headers = r->hdrs,
			.headers_len = r->hdrs_len,
		};

		if (r->dropped)
			continue;
		if (!r->changed) {
			rec.raw = raws[i].p;
			rec.raw_len = (size_t)raws[i].len;
		}
		sk_batch_record_write(to, &rec, ts_delta, r->offset_delta);
	}
	if (to == out) {
		sk_batch_frame_end(out, start);
	} else if (recs.len) {
		rc = sk_codec_compress(codec, recs.data, recs.len, &comp, 0,
				       err);
		if (rc == 0)
			sk_batch_frame(out, &nh, comp.data, comp.len);
	} else {
		sk_batch_frame(out, &nh, NULL, 0);
	}
	sk_buf_free(&recs);
	sk_buf_free(&comp);
	return rc;
}

static struct sk_hook_extra *extra_add(struct sk_hook_batch_out *out,
				       const char *topic)
{
	struct sk_hook_extra *e;

	for (size_t i = 0; i < out->n_extra; i++)
		if (strcmp(out->extra[i].topic, topic) == 0)
			return &out->extra[i];
	out->extra = sk_xrealloc(out->extra,
				 (out->n_extra + 1) * sizeof(*out->extra));
	e = &out->extra[out->n_extra++];
	memset(e, 0, sizeof(*e));
	e->topic = sk_xstrdup(topic);
	return e;
}

/* Batches of the records emitted (ctx.emit), one per target topic. */
static void build_emits(const struct sk_hook_recs *rs,
			struct sk_hook_batch_out *out)
{
	for (size_t i = 0; i < rs->n_emits; i++) {
		const char *topic = rs->emits[i].topic;
		struct sk_record_in *in;
		struct sk_record_header_in **hs;
		size_t n = 0;
		bool first = true;

		/* Each topic once, at its first emit. */
		for (size_t j = 0; j < i; j++)
			if (strcmp(rs->emits[j].topic, topic) == 0)
				first = false;
		if (!first)
			continue;
		in = sk_xcalloc(rs->n_emits, sizeof(*in));
		hs = sk_xcalloc(rs->n_emits, sizeof(*hs));
		for (size_t j = i; j < rs->n_emits; j++) {
			const struct sk_hook_rec *r = &rs->emits[j].rec;

			if (strcmp(rs->emits[j].topic, topic) != 0)
				continue;
			hs[n] = parse_headers(r, 0, &in[n].n_headers);
			in[n].key = r->key;
			in[n].key_len = r->key_len;
			in[n].value = r->value;
			in[n].value_len = r->value_len;
			in[n].timestamp = r->timestamp;
			in[n].headers = hs[n];
			n++;
		}
		sk_batch_build(&extra_add(out, topic)->batch, 0, in, n, 0, -1,
			       -1, -1);
		for (size_t j = 0; j < n; j++)
			free(hs[j]);
		free(hs);
		free(in);
	}
}

static const char *status_name(const struct sk_hook_delta *d)
{
	if (d->skipped)
		return "breaker";
	switch (d->res.status) {
	case SK_HOOK_TIMEOUT:
		return "timeout";
	case SK_HOOK_MEMORY:
		return "memory";
	default:
		return "error";
	}
}

/*
 * The original records, with headers saying why, for the dead-letter
 * topic: skald.hook, skald.reason (error | timeout | memory | breaker),
 * skald.error (the first line of the message), skald.topic and
 * skald.partition.
 */
static void build_dead_letters(const struct sk_hook *hk,
			       const struct sk_hook_delta *d, const char *topic,
			       int32_t partition,
			       const struct sk_hook_rec *orig, size_t n,
			       struct sk_hook_batch_out *out)
{
	struct sk_record_in *in = sk_xcalloc(n ? n : 1, sizeof(*in));
	struct sk_record_header_in **hs = sk_xcalloc(n ? n : 1, sizeof(*hs));
	const char *reason = status_name(d);
	char msg[512], part[16];
	size_t ml;

	snprintf(msg, sizeof(msg), "%s",
		 d->skipped ? "hook disabled by its circuit breaker"
			    : d->res.msg);
	ml = strcspn(msg, "\n");
	snprintf(part, sizeof(part), "%d", partition);
	for (size_t i = 0; i < n; i++) {
		struct sk_record_header_in *h;
		int32_t k;

		h = hs[i] = parse_headers(&orig[i], 5, &k);
		h[k++] = (struct sk_record_header_in){
			"skald.hook", 10, hk->name, (int32_t)strlen(hk->name)
		};
		h[k++] = (struct sk_record_header_in){
			"skald.reason", 12, reason, (int32_t)strlen(reason)
		};
		h[k++] = (struct sk_record_header_in){ "skald.error", 11, msg,
						       (int32_t)ml };
		h[k++] = (struct sk_record_header_in){ "skald.topic", 11, topic,
						       (int32_t)strlen(topic) };
		h[k++] = (struct sk_record_header_in){ "skald.partition", 15,
						       part,
						       (int32_t)strlen(part) };
		in[i] = (struct sk_record_in){ .key = orig[i].key,
					       .key_len = orig[i].key_len,
					       .value = orig[i].value,
					       .value_len = orig[i].value_len,
					       .timestamp = orig[i].timestamp,
					       .headers = h,
					       .n_headers = k };
	}
	sk_batch_build(&extra_add(out, hk->dead_letter_topic)->batch, 0, in, n,
		       0, -1, -1, -1);
	for (size_t i = 0; i < n; i++)
		free(hs[i]);
	free(hs);
	free(in);
}

void sk_hook_batch_out_free(struct sk_hook_batch_out *out)
{
	sk_buf_free(&out->batch);
	for (size_t i = 0; i < out->n_extra; i++) {
		free(out->extra[i].topic);
		sk_buf_free(&out->extra[i].batch);
	}
	free(out->extra);
	free(out->d);
	memset(out, 0, sizeof(*out));
}

static void drop_extras(struct sk_hook_batch_out *out)
{
	for (size_t i = 0; i < out->n_extra; i++) {
		free(out->extra[i].topic);
		sk_buf_free(&out->extra[i].batch);
	}
	out->n_extra = 0;
}

void sk_hook_chain_process(const struct sk_hook_chain *c, int slot,
			   const bool *skip, const char *topic,
			   int32_t partition, const uint8_t *batch, size_t len,
			   int64_t max_message_bytes,
			   struct sk_hook_batch_out *out)
{
	struct sk_buf records = { 0 };
	struct sk_hook_recs rs = { 0 };
	struct sk_hook_rec *orig = NULL;
	struct sk_str *raws = NULL;
	struct sk_batch_hdr h;
	struct sk_err err = { "" };
	enum sk_kerr kerr;
	bool changed = false, dropped = false;

	memset(out, 0, sizeof(*out));
	out->d = sk_xcalloc(c->n ? c->n : 1, sizeof(*out->d));
	if (sk_batch_parse_header(batch, len, &h)) {
		/* Its header was validated: not expected. */
		out->what = SK_HOOK_OUT_REJECT;
		out->kerr = SK_KERR_CORRUPT_MESSAGE;
		snprintf(out->err, sizeof(out->err), "bad header");
		goto out;
	}
	kerr = decode(batch, len, &h, max_message_bytes, &records, &rs, &raws,
		      &err);
	if (kerr) {
		out->what = SK_HOOK_OUT_REJECT;
		out->kerr = (int16_t)kerr;
		snprintf(out->err, sizeof(out->err), "refused: %.400s",
			 err.msg);
		goto out;
	}
	/* The originals are only needed for dead letters. */
	for (size_t i = 0; i < c->n && !orig; i++) {
		if (c->hooks[i]->on_error != SK_HOOK_ON_ERROR_DEAD_LETTER)
			continue;
		orig = sk_xmalloc((rs.n ? rs.n : 1) * sizeof(*orig));
		if (rs.n)
			memcpy(orig, rs.r, rs.n * sizeof(*orig));
	}

	for (size_t i = 0; i < c->n; i++) {
		const struct sk_hook *hk = c->hooks[i];
		struct sk_hook_delta *d = &out->d[i];
		struct sk_hook_call call = {
			.topic = topic,
			.partition = partition,
			.hook = hk->name,
			.options_json = hk->options_json,
		};

		if (skip && skip[i]) {
			d->skipped = true;
		} else {
			d->ran = true;
			sk_hook_run_records(hk->script, slot, &call, &rs,
					    &d->res);
			if (d->res.status == SK_HOOK_OK)
				continue;
		}
		snprintf(out->err, sizeof(out->err), "hook %.100s: %.400s",
			 hk->name,
			 d->skipped ? "disabled by its circuit breaker"
				    : d->res.msg);
		switch (hk->on_error) {
		case SK_HOOK_ON_ERROR_PASS:
			continue;
		case SK_HOOK_ON_ERROR_REJECT:
			out->what = SK_HOOK_OUT_REJECT;
			out->kerr = SK_KERR_POLICY_VIOLATION;
			drop_extras(out);
			goto out;
		case SK_HOOK_ON_ERROR_DEAD_LETTER:
			drop_extras(out);
			build_dead_letters(hk, d, topic, partition, orig, rs.n,
					   out);
			/* Nothing goes to the topic itself. */
			__attribute__((fallthrough));
		default:
			for (size_t j = 0; j < rs.n; j++)
				rs.r[j].dropped = true;
			rs.n_emits = 0;
			goto done;
		}
	}
done:
	for (size_t i = 0; i < rs.n; i++) {
		changed |= rs.r[i].changed && !rs.r[i].dropped;
		dropped |= rs.r[i].dropped;
	}
	build_emits(&rs, out);
	if (!changed && !dropped) {
		out->what = SK_HOOK_OUT_ORIGINAL;
		goto out;
	}
	if (!changed) {
		bool any = false;

		for (size_t i = 0; i < rs.n; i++)
			any |= !rs.r[i].dropped;
		if (!any && h.producer_id < 0) {
			out->what = SK_HOOK_OUT_NOTHING;
			goto out;
		}
	}
	if (encode(&h, &rs, raws, &out->batch, &err)) {
		out->what = SK_HOOK_OUT_REJECT;
		out->kerr = SK_KERR_UNKNOWN_SERVER_ERROR;
		snprintf(out->err, sizeof(out->err), "re-encoding: %.400s",
			 err.msg);
		drop_extras(out);
		goto out;
	}
	if ((int64_t)out->batch.len > max_message_bytes) {
		out->what = SK_HOOK_OUT_REJECT;
		out->kerr = SK_KERR_MESSAGE_TOO_LARGE;
		snprintf(out->err, sizeof(out->err),
			 "the transformed batch is %zu bytes, more than "
			 "max.message.bytes",
			 out->batch.len);
		drop_extras(out);
		sk_buf_free(&out->batch);
		goto out;
	}
	out->what = SK_HOOK_OUT_REBUILT;
out:
	free(orig);
	free(raws);
	sk_hook_recs_free(&rs);
	sk_buf_free(&records);
}

/* ------------------------------------------------------------------ */
/* Jobs and partition queues */

/*
 * A compacted topic refuses records without a key: checked on what the
 * hooks made of the batch, so that a hook may give a record its key.
 */
static void check_keys(struct hk_job *job)
{
	struct sk_hook_batch_out *out = &job->out;
	const uint8_t *p = job->bytes;
	size_t n = job->len;
	struct sk_batch_hdr h;
	struct sk_err err = { "" };
	enum sk_kerr kerr;

	if (out->what == SK_HOOK_OUT_REBUILT) {
		p = out->batch.data;
		n = out->batch.len;
	} else if (out->what != SK_HOOK_OUT_ORIGINAL) {
		return;
	}
	if (sk_batch_parse_header(p, n, &h))
		return; /* validated before */
	kerr = sk_compact_check_keys(p, n, &h, NULL, &err);
	if (kerr == SK_KERR_NONE)
		return;
	out->what = SK_HOOK_OUT_REJECT;
	out->kerr = (int16_t)kerr;
	snprintf(out->err, sizeof(out->err), "after the hooks: %.400s",
		 err.msg);
	drop_extras(out);
	sk_buf_free(&out->batch);
}

/* A batch queued behind hooked ones, with no hooks of its own. */
static void pass_through(struct hk_job *job)
{
	struct sk_hook_batch_out *out = &job->out;
	struct sk_buf scratch = { 0 };
	struct sk_batch_hdr h;
	struct sk_err err = { "" };
	enum sk_kerr kerr = SK_KERR_CORRUPT_MESSAGE;

	if (sk_batch_parse_header(job->bytes, job->len, &h) == 0)
		kerr = sk_batch_validate_records(job->bytes, job->len, &h,
						 job->max_message_bytes,
						 &scratch, NULL, NULL, &err);
	sk_buf_free(&scratch);
	out->what = kerr ? SK_HOOK_OUT_REJECT : SK_HOOK_OUT_ORIGINAL;
	out->kerr = (int16_t)kerr;
	if (kerr)
		snprintf(out->err, sizeof(out->err), "refused: %.400s",
			 err.msg);
}

static void job_run(struct sk_job *j)
{
	struct hk_job *job = sk_container_of(j, struct hk_job, job);

	if (!job->chain)
		pass_through(job);
	else
		sk_hook_chain_process(job->chain, sk_hooks_slot(job->hs),
				      job->skip, job->topic, job->partition,
				      job->bytes, job->len,
				      job->max_message_bytes, &job->out);
	if (job->compact)
		check_keys(job);
}

int sk_hook_append_extra(struct sk_broker *b, const char *topic,
			 int32_t part_hint, struct sk_buf *batch,
			 struct sk_err *err)
{
	struct sk_topic *tp = sk_topics_find(&b->topics, topic, strlen(topic));
	struct sk_tpart *part;
	int64_t base, at;
	int16_t kerr;

	if (!tp && b->cfg.auto_create_topics) {
		kerr = sk_topic_create(b, topic, -1, NULL, 0, false, err);
		if (kerr)
			return -EINVAL;
		tp = sk_topics_find(&b->topics, topic, strlen(topic));
	}
	if (!tp)
		return sk_err_set(err, "topic '%s' does not exist", topic);
	part = sk_topic_part(
		tp, (int32_t)((uint32_t)part_hint % (uint32_t)tp->n_parts));
	if (tp->cfg.cleanup_policy & SK_CLEANUP_COMPACT) {
		struct sk_batch_hdr h;
		struct sk_err why = { "" };

		if (sk_batch_parse_header(batch->data, batch->len, &h) ||
		    sk_compact_check_keys(batch->data, batch->len, &h,
					  &b->scratch, &why))
			return sk_err_set(err, "append to '%s': %s", topic,
					  why.msg);
	}
	kerr = sk_produce_append(b, tp, part, batch->data, batch->len, &base,
				 &at);
	if (kerr)
		return sk_err_set(err, "append to '%s': %s", topic,
				  sk_kerr_name(kerr));
	sk_flusher_mark(&b->flusher, part);
	return 0;
}

static void job_free(struct hk_job *job)
{
	sk_hook_batch_out_free(&job->out);
	if (job->chain)
		sk_hook_chain_unref(job->chain);
	free(job->skip);
	free(job->topic);
	free(job->bytes);
	free(job);
}

/* The hook whose failure refused an acks=0 batch counts the close. */
static void count_acks0(struct hk_job *job)
{
	for (size_t i = 0; i < job->chain->n; i++) {
		const struct sk_hook_delta *d = &job->out.d[i];

		if (d->skipped || (d->ran && d->res.status != SK_HOOK_OK)) {
			job->chain->hooks[i]->m.acks0_closes++;
			return;
		}
	}
}

void sk_hook_acks0_refused(struct sk_hooks *hs, const uint8_t *client,
			   size_t client_len, struct sk_str topic,
			   int32_t partition, int16_t kerr)
{
	uint64_t h = 14695981039346656037ull; /* FNV-1a */

	hs->acks0_closes++;
	for (size_t i = 0; i < client_len; i++)
		h = (h ^ client[i]) * 1099511628211ull;
	for (size_t i = 0; i < hs->n_acks0_logged; i++)
		if (hs->acks0_logged[i] == h)
			return;
	if (hs->n_acks0_logged == SK_ARRAY_SIZE(hs->acks0_logged))
		return;
	hs->acks0_logged[hs->n_acks0_logged++] = h;
	sk_warn("produce: topic %.*s partition %d refused a batch of client "
		"'%.*s' (%s); it produces with acks=0, which has no answer "
		"to say so, so its connection is closed (logged once per "
		"client.id)",
		(int)SK_MAX(topic.len, 0), topic.p ? (const char *)topic.p : "",
		partition, (int)SK_MIN(client_len, 100), (const char *)client,
		sk_kerr_name(kerr));
}

static void job_done(struct sk_job *j)
{
	struct hk_job *job = sk_container_of(j, struct hk_job, job);
	struct sk_hooks *hs = job->hs;
	struct sk_broker *b = hs->b;
	struct sk_topic *tp =
		sk_topics_find(&b->topics, job->topic, strlen(job->topic));
	struct sk_tpart *part = tp ? sk_topic_part(tp, job->partition) : NULL;
	struct hk_pq *pq = job->pq;
	int64_t base = -1, at = -1;
	int16_t kerr = SK_KERR_NONE;
	struct sk_err err;

	if (!part) {
		kerr = SK_KERR_UNKNOWN_TOPIC_OR_PARTITION;
	} else {
		switch (job->out.what) {
		case SK_HOOK_OUT_ORIGINAL:
			kerr = sk_produce_append(b, tp, part, job->bytes,
						 job->len, &base, &at);
			break;
		case SK_HOOK_OUT_REBUILT:
			kerr = sk_produce_append(
				b, tp, part, job->out.batch.data,
				job->out.batch.len, &base, &at);
			break;
		case SK_HOOK_OUT_NOTHING:
			break;
		case SK_HOOK_OUT_REJECT:
			kerr = job->out.kerr;
			break;
		}
	}
	if (job->out.err[0])
		sk_debug("hooks: topic %s partition %d: %s", job->topic,
			 job->partition, job->out.err);
	for (size_t i = 0; kerr == SK_KERR_NONE && i < job->out.n_extra; i++)
		if (sk_hook_append_extra(b, job->out.extra[i].topic,
					 job->partition,
					 &job->out.extra[i].batch, &err))
			sk_warn("hooks: topic %s: cannot write to %s: %s",
				job->topic, job->out.extra[i].topic, err.msg);
	if (job->chain && kerr != SK_KERR_NONE && job->w && job->w->noreply)
		count_acks0(job);
	if (job->chain)
		sk_hook_chain_account(hs, job->chain, job->out.d);
	if (job->w) {
		job->w->job = NULL;
		job->w->done(job->w, kerr, base, at);
	}

	sk_list_del(&job->link);
	hs->inflight--;
	if (sk_list_empty(&pq->jobs)) {
		sk_hmap_remove(&hs->parts, &pq->node);
		free(pq->key);
		free(pq);
	} else {
		struct hk_job *next =
			sk_list_first(&pq->jobs, struct hk_job, link);
		sk_pool_submit(sk_hooks_pool(hs), &next->job);
	}
	job_free(job);
}

bool sk_hook_produce(struct sk_broker *b, struct sk_topic *tp,
		     struct sk_tpart *part, const uint8_t *batch, size_t len,
		     struct sk_hook_wait *w)
{
	struct sk_hooks *hs = &b->hooks;
	struct sk_hook_chain *chain = sk_hooks_chain(hs, tp->name);
	struct sk_hnode *n = NULL;
	struct hk_pq *pq;
	struct hk_job *job;
	char key[320];
	int klen;

	if (chain && chain->n == 0)
		chain = NULL;
	if (!chain && hs->inflight == 0)
		return false;
	klen = snprintf(key, sizeof(key), "%s/%d", tp->name, part->id);
	n = sk_hmap_find(&hs->parts, key, (size_t)klen);
	if (!chain && !n)
		return false;

	job = sk_xcalloc(1, sizeof(*job));
	job->hs = hs;
	job->job.run = job_run;
	job->job.done = job_done;
	job->topic = sk_xstrdup(tp->name);
	job->partition = part->id;
	job->bytes = sk_xmalloc(len);
	memcpy(job->bytes, batch, len);
	job->len = len;
	job->max_message_bytes = tp->cfg.max_message_bytes;
	job->compact = (tp->cfg.cleanup_policy & SK_CLEANUP_COMPACT) != 0;
	if (chain) {
		sk_hook_chain_ref(chain);
		job->chain = chain;
		job->skip = sk_xcalloc(chain->n, sizeof(*job->skip));
		sk_hook_chain_gate(chain, job->skip);
	}
	if (n) {
		pq = sk_container_of(n, struct hk_pq, node);
	} else {
		pq = sk_xcalloc(1, sizeof(*pq));
		pq->key = sk_xstrdup(key);
		sk_list_init(&pq->jobs);
		sk_hmap_insert(&hs->parts, &pq->node, pq->key, (size_t)klen);
	}
	job->pq = pq;
	job->w = w;
	w->job = job;
	sk_list_add_tail(&pq->jobs, &job->link);
	hs->inflight++;
	if (pq->jobs.next == &job->link)
		sk_pool_submit(sk_hooks_pool(hs), &job->job);
	return true;
}

void sk_hook_wait_cancel(struct sk_hook_wait *w)
{
	if (w->job)
		w->job->w = NULL;
	w->job = NULL;
}
