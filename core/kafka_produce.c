/*
 * Produce (key 0), v3-7: one RecordBatch v2 per partition, validated with
 * Kafka's rules, stamped with offsets and appended as the bytes that came
 * in. The whole request is decoded before anything is appended, so a
 * malformed request changes nothing. With acks=all the answer waits for
 * the flusher to make the appends durable (group commit).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "compact.h"
#include "kafka.h"
#include "say.h"

/* One partition's part of the request, and its result. */
struct produce_part {
	struct sk_str topic; /* borrowed from the request until appended */
	int32_t partition;
	struct sk_str records;
	bool first_of_topic; /* starts a topic group in the response */
	int32_t topic_parts; /* partitions of that group */
	int16_t kerr;
	int64_t base_offset;
	int64_t append_time;
	int64_t log_start;
	bool hooked;		/* the batch went to the topic's hooks */
	struct sk_hook_wait hw; /* ... and comes back through this */
};

/* A produce waiting for its appends to become durable. */
struct produce_wait {
	struct sk_flush_wait fw;
	struct sk_resp *resp;
	int16_t version;
	bool flex;
	int32_t n_topics;
	struct produce_part *parts;
	size_t n_parts;
	char *names;  /* topic names copied out of the request buffer */
	char *client; /* client.id, for acks=0 refusals */
	size_t client_len;
	struct sk_broker *b;
	int16_t acks;
	int32_t hooks_left; /* hooked batches not yet appended */
	bool any_durable;   /* acks=all and something was appended */
	bool flushing;	    /* fw is with the flusher */
	bool meta_waiting;  /* then with sk_meta_wait (answer) */
};

/* Validate and append one batch; fills the response fields. */
static int16_t produce_one(struct sk_broker *b, struct produce_part *pp,
			   int64_t *base_offset, int64_t *append_time,
			   int64_t *log_start)
{
	struct sk_topic *tp =
		sk_topics_find(&b->topics, (const char *)pp->topic.p,
			       (size_t)SK_MAX(pp->topic.len, 0));
	struct sk_tpart *part = tp ? sk_topic_part(tp, pp->partition) : NULL;
	struct sk_batch_hdr h;
	struct sk_err err = { "" };
	/*
	 * The request body lives in the connection's own input buffer, which
	 * is ours to modify: the batch is stamped in place and written from
	 * there, without a copy.
	 */
	uint8_t *batch = (uint8_t *)(uintptr_t)pp->records.p;
	size_t len = (size_t)SK_MAX(pp->records.len, 0);
	enum sk_kerr kerr;

	*base_offset = -1;
	*append_time = -1;
	*log_start = -1;
	if (!part)
		return SK_KERR_UNKNOWN_TOPIC_OR_PARTITION;
	*log_start = sk_partition_start_offset(part->log);
	if (!batch)
		return SK_KERR_CORRUPT_MESSAGE;
	/*
	 * A hooked topic's batch is appended when its hooks are done; its
	 * records are checked on the hook worker, in the pass that decodes
	 * them, and a compacted one's keys after the hooks (a hook may set
	 * one).
	 */
	kerr = sk_batch_validate_header(batch, len, tp->cfg.max_message_bytes,
					&h, &err);
	if (!kerr && sk_hook_produce(b, tp, part, batch, len, &pp->hw)) {
		pp->hooked = true;
		return SK_KERR_NONE;
	}
	if (!kerr) {
		kerr = sk_batch_validate_records(batch, len, &h,
						 tp->cfg.max_message_bytes,
						 &b->scratch, NULL, NULL, &err);
		sk_batch_scratch_trim(&b->scratch);
	}
	if (!kerr && (tp->cfg.cleanup_policy & SK_CLEANUP_COMPACT))
		kerr = sk_compact_check_keys(batch, len, &h, &b->scratch, &err);
	if (kerr) {
		sk_debug("produce to %s-%d refused: %s (%s)", tp->name,
			 pp->partition, sk_kerr_name((int16_t)kerr), err.msg);
		return (int16_t)kerr;
	}
	return sk_produce_append(b, tp, part, batch, len, base_offset,
				 append_time);
}

int16_t sk_produce_append(struct sk_broker *b, struct sk_topic *tp,
			  struct sk_tpart *part, uint8_t *batch, size_t len,
			  int64_t *base_offset, int64_t *append_time)
{
	struct sk_err err = { "" };
	int rc;

	*base_offset = -1;
	*append_time = -1;
	if (tp->cfg.timestamp_type == SK_TS_LOG_APPEND_TIME) {
		*append_time = sk_now_ms();
		sk_batch_set_log_append_time(batch, len, *append_time);
	}
	rc = sk_partition_append(part->log, batch, len, base_offset, &err);
	if (rc) {
		sk_error("append to %s-%d failed: %s", tp->name, part->id,
			 err.msg);
		*base_offset = -1;
		return SK_KERR_KAFKA_STORAGE_ERROR;
	}
	/* flush.messages counts records: lastOffsetDelta + 1. */
	sk_flusher_appended(&b->flusher, part,
			    (int64_t)(int32_t)sk_be32(batch + 23) + 1);
	sk_fetch_wake(b, part);
	return SK_KERR_NONE;
}

static void write_response(struct sk_resp *resp, int16_t version, bool flex,
			   int32_t n_topics, const struct produce_part *parts,
			   size_t n_parts)
{
	struct sk_wr w = sk_resp_writer(resp);

	sk_wr_array(&w, n_topics, flex);
	for (size_t i = 0; i < n_parts; i++) {
		const struct produce_part *pp = &parts[i];

		if (pp->first_of_topic) {
			if (i > 0)
				sk_wr_tags(&w, flex);
			sk_wr_strn(&w, (const char *)pp->topic.p, pp->topic.len,
				   flex);
			sk_wr_array(&w, pp->topic_parts, flex);
			if (pp->topic_parts == 0)
				continue;
		}
		sk_wr_i32(&w, pp->partition);
		sk_wr_i16(&w, pp->kerr);
		sk_wr_i64(&w, pp->base_offset);
		sk_wr_i64(&w, pp->append_time);
		if (version >= 5)
			sk_wr_i64(&w, pp->log_start);
		sk_wr_tags(&w, flex);
	}
	if (n_parts > 0)
		sk_wr_tags(&w, flex);
	sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_tags(&w, flex);
}

static void produce_wait_free(struct produce_wait *pw)
{
	free(pw->parts);
	free(pw->names);
	free(pw->client);
	free(pw);
}

static void answer(struct produce_wait *pw, int rc)
{
	struct sk_resp *resp = pw->resp;

	for (size_t i = 0; rc && i < pw->n_parts; i++) {
		if (pw->parts[i].kerr == SK_KERR_NONE) {
			pw->parts[i].kerr = SK_KERR_KAFKA_STORAGE_ERROR;
			pw->parts[i].base_offset = -1;
		}
	}
	write_response(resp, pw->version, pw->flex, pw->n_topics, pw->parts,
		       pw->n_parts);
	produce_wait_free(pw);
	sk_resp_finish(resp);
}

static void on_meta_durable(void *arg, int rc)
{
	struct produce_wait *pw = arg;

	pw->meta_waiting = false;
	if (!pw->resp) { /* the connection went away meanwhile */
		produce_wait_free(pw);
		return;
	}
	answer(pw, rc);
}

static void on_durable(struct sk_flush_wait *fw, int rc)
{
	struct produce_wait *pw = sk_container_of(fw, struct produce_wait, fw);

	pw->flushing = false;
	/*
	 * A topic created a moment ago (auto-created by Metadata, say) may
	 * not be in meta.db yet: records in it are not durable until the
	 * topic is, and if storing it fails the topic and its records are
	 * undone. Topic changes are rare, so waiting for all of them is
	 * cheap.
	 */
	if (rc == 0 && sk_meta_pending(pw->b->meta)) {
		pw->meta_waiting = true;
		sk_meta_wait(pw->b->meta, on_meta_durable, pw);
		return;
	}
	answer(pw, rc);
}

static void produce_cancel(struct sk_resp *resp)
{
	struct produce_wait *pw = resp->pending;

	/* Hooked batches still go through; only the answer is dropped. */
	for (size_t i = 0; i < pw->n_parts; i++)
		if (pw->parts[i].hooked)
			sk_hook_wait_cancel(&pw->parts[i].hw);
	if (pw->flushing)
		sk_flusher_cancel(&pw->fw);
	sk_resp_drop(resp);
	if (pw->meta_waiting) /* on_meta_durable frees it */
		pw->resp = NULL;
	else
		produce_wait_free(pw);
}

/* Mark what was appended for the flusher and wait for the sync. */
static void wait_flush(struct produce_wait *pw)
{
	for (size_t i = 0; i < pw->n_parts; i++) {
		struct produce_part *pp = &pw->parts[i];
		struct sk_topic *tp;
		struct sk_tpart *part;

		if (pp->kerr != SK_KERR_NONE)
			continue;
		tp = sk_topics_find(&pw->b->topics, (const char *)pp->topic.p,
				    (size_t)SK_MAX(pp->topic.len, 0));
		part = tp ? sk_topic_part(tp, pp->partition) : NULL;
		if (part)
			sk_flusher_mark(&pw->b->flusher, part);
	}
	pw->flushing = true;
	sk_flusher_wait(&pw->b->flusher, &pw->fw, on_durable);
}

/* Whether any part of an acks=0 produce failed (each one reported). */
static bool acks0_refused(struct produce_wait *pw)
{
	bool any = false;

	for (size_t i = 0; i < pw->n_parts; i++) {
		const struct produce_part *pp = &pw->parts[i];

		if (pp->kerr == SK_KERR_NONE ||
		    (pp->first_of_topic && pp->topic_parts == 0))
			continue;
		if (!any)
			sk_hook_acks0_refused(&pw->b->hooks,
					      (const uint8_t *)pw->client,
					      pw->client_len, pp->topic,
					      pp->partition, pp->kerr);
		any = true;
	}
	return any;
}

/* A hooked batch was appended (or refused): the last one answers. */
static void on_hooked(struct sk_hook_wait *hw, int16_t kerr,
		      int64_t base_offset, int64_t append_time)
{
	struct produce_part *pp = sk_container_of(hw, struct produce_part, hw);
	struct produce_wait *pw = hw->arg;
	struct sk_resp *resp = pw->resp;

	pp->kerr = kerr;
	pp->base_offset = base_offset;
	pp->append_time = append_time;
	if (kerr == SK_KERR_NONE && pw->acks == -1)
		pw->any_durable = true;
	if (--pw->hooks_left > 0)
		return;
	if (pw->acks == 0 && acks0_refused(pw)) {
		/* No answer can say so: close the connection, as Kafka does. */
		produce_wait_free(pw);
		sk_resp_abort(resp, "a produce with acks=0 was refused");
		return;
	}
	if (pw->any_durable) {
		wait_flush(pw);
		return;
	}
	write_response(resp, pw->version, pw->flex, pw->n_topics, pw->parts,
		       pw->n_parts);
	resp->noreply = pw->acks == 0;
	produce_wait_free(pw);
	sk_resp_finish(resp);
}

/*
 * Park the response until the hooks and then the flusher are done.
 * Topic names are copied, since the request buffer is reused once we
 * return.
 */
static struct produce_wait *park(struct sk_req *req, struct produce_part *parts,
				 size_t n_parts, int32_t n_topics)
{
	struct produce_wait *pw = sk_xcalloc(1, sizeof(*pw));
	size_t len = 0, at = 0;

	for (size_t i = 0; i < n_parts; i++)
		if (parts[i].first_of_topic)
			len += (size_t)SK_MAX(parts[i].topic.len, 0);
	pw->names = sk_xmalloc(len ? len : 1);
	for (size_t i = 0; i < n_parts; i++) {
		struct produce_part *pp = &parts[i];

		if (pp->first_of_topic && pp->topic.len > 0) {
			memcpy(pw->names + at, pp->topic.p,
			       (size_t)pp->topic.len);
			at += (size_t)pp->topic.len;
		}
		pp->topic.p = (const uint8_t *)pw->names + at -
			      SK_MAX(pp->topic.len, 0);
		pp->records = (struct sk_str){ NULL, -1 };
		if (pp->hooked) {
			pp->hw.done = on_hooked;
			pp->hw.arg = pw;
			pw->hooks_left++;
		}
	}
	pw->b = req->b;
	pw->client_len = (size_t)SK_MAX(req->client_id.len, 0);
	pw->client = sk_xmalloc(pw->client_len + 1);
	if (pw->client_len)
		memcpy(pw->client, req->client_id.p, pw->client_len);
	pw->client[pw->client_len] = '\0';
	pw->resp = req->resp;
	pw->version = req->api_version;
	pw->flex = req->flexible;
	pw->n_topics = n_topics;
	pw->parts = parts;
	pw->n_parts = n_parts;
	sk_resp_set_pending(req->resp, produce_cancel, pw);
	return pw;
}

int sk_kafka_produce(struct sk_req *req)
{
	struct sk_rd *r = &req->rd;
	bool flex = req->flexible;
	struct produce_part *parts = NULL;
	size_t n_parts = 0, cap = 0;
	int16_t acks;
	int32_t n_topics;
	bool any_durable = false;

	sk_rd_str(r, flex); /* transactional_id: no transactions yet */
	acks = sk_rd_i16(r);
	sk_rd_i32(r); /* timeout_ms: appends complete at once */
	n_topics = sk_rd_array(r, flex, 6);
	for (int32_t t = 0; t < n_topics && sk_rd_ok(r); t++) {
		struct sk_str topic = sk_rd_str(r, flex);
		int32_t np = sk_rd_array(r, flex, 8);

		for (int32_t p = 0; p < np && sk_rd_ok(r); p++) {
			struct produce_part *pp;

			if (n_parts == cap) {
				cap = cap ? cap * 2 : 8;
				parts = sk_xrealloc(parts,
						    cap * sizeof(*parts));
			}
			pp = &parts[n_parts++];
			pp->topic = topic;
			pp->partition = sk_rd_i32(r);
			pp->records = sk_rd_bytes(r, flex);
			pp->first_of_topic = p == 0;
			pp->topic_parts = np;
			pp->hooked = false;
			pp->hw.noreply = acks == 0;
			sk_rd_tags(r, flex);
		}
		if (np == 0) {
			/* Keep the topic in the response with no partitions. */
			if (n_parts == cap) {
				cap = cap ? cap * 2 : 8;
				parts = sk_xrealloc(parts,
						    cap * sizeof(*parts));
			}
			parts[n_parts++] =
				(struct produce_part){ .topic = topic,
						       .first_of_topic = true,
						       .topic_parts = 0,
						       .partition = -1 };
		}
		sk_rd_tags(r, flex);
	}
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r) || n_topics < 0) {
		free(parts);
		return -EPROTO;
	}

	for (size_t i = 0; i < n_parts; i++) {
		struct produce_part *pp = &parts[i];

		if (pp->first_of_topic && pp->topic_parts == 0)
			continue;
		if (acks != 0 && acks != 1 && acks != -1) {
			pp->kerr = SK_KERR_INVALID_REQUIRED_ACKS;
			pp->base_offset = pp->append_time = pp->log_start = -1;
		} else {
			pp->kerr =
				produce_one(req->b, pp, &pp->base_offset,
					    &pp->append_time, &pp->log_start);
			if (pp->kerr == SK_KERR_NONE && acks == -1)
				any_durable = true;
		}
	}
	for (size_t i = 0; i < n_parts; i++) {
		if (parts[i].hooked) {
			struct produce_wait *pw =
				park(req, parts, n_parts, n_topics);

			pw->acks = acks;
			pw->any_durable = any_durable;
			return 0;
		}
	}
	if (any_durable) {
		wait_flush(park(req, parts, n_parts, n_topics));
		return 0;
	}
	if (acks == 0) {
		/*
		 * Nothing answers acks=0, so a failure can only be told by
		 * closing the connection, as Kafka does; the producer then
		 * refreshes its metadata and notices.
		 */
		for (size_t i = 0; i < n_parts; i++) {
			if (parts[i].kerr != SK_KERR_NONE &&
			    !(parts[i].first_of_topic &&
			      parts[i].topic_parts == 0)) {
				free(parts);
				return -ECONNABORTED;
			}
		}
	}
	write_response(req->resp, req->api_version, flex, n_topics, parts,
		       n_parts);
	free(parts);
	req->resp->noreply = acks == 0;
	sk_resp_finish(req->resp);
	return 0;
}
