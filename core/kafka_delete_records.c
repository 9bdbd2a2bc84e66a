/*
 * DeleteRecords (key 21), v0-1 (the flexible v2 decodes too): move each
 * partition's log start offset forward to the requested offset, -1
 * meaning the high watermark, and answer the new start as the low
 * watermark. The log deletes the segments that fall entirely below it
 * (sk_partition_delete_before).
 *
 * As in Kafka: an offset past the high watermark (or below -1) is
 * OFFSET_OUT_OF_RANGE, one at or below the current start changes nothing
 * and answers the start, a topic whose cleanup.policy lacks delete is a
 * POLICY_VIOLATION, and a failed partition answers low watermark -1.
 * timeout_ms is read and ignored: with one node there are no replicas to
 * wait for.
 *
 * The request is decoded completely before anything is deleted, so a
 * malformed one (which closes the connection) deletes nothing.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "broker.h"
#include "kafka.h"
#include "log_remote.h"
#include "say.h"

#define SK_DELETE_TO_HWM (-1)

/* Apply one partition's deletion; the error code and *low to answer. */
static int16_t delete_partition(struct sk_broker *b, struct sk_str topic,
				int32_t partition, int64_t offset, int64_t *low)
{
	struct sk_topic *t =
		topic.len > 0
			? sk_topics_find(&b->topics, (const char *)topic.p,
					 (size_t)topic.len)
			: NULL;
	struct sk_tpart *tp = t ? sk_topic_part(t, partition) : NULL;
	int64_t before, hwm;
	struct sk_err err;
	int rc;

	*low = -1;
	if (!tp)
		return SK_KERR_UNKNOWN_TOPIC_OR_PARTITION;
	if (!(t->cfg.cleanup_policy & SK_CLEANUP_DELETE))
		return SK_KERR_POLICY_VIOLATION;
	hwm = sk_partition_end_offset(tp->log);
	if (offset == SK_DELETE_TO_HWM)
		offset = hwm;
	if (offset < 0 || offset > hwm)
		return SK_KERR_OFFSET_OUT_OF_RANGE;
	before = sk_remote_start_offset(b, tp);
	rc = sk_partition_delete_before(tp->log, offset, &err);
	if (rc < 0) {
		sk_error("DeleteRecords: topic %s partition %" PRId32 ": %s",
			 t->name, partition, err.msg);
		return rc == -ERANGE ? SK_KERR_OFFSET_OUT_OF_RANGE
				     : SK_KERR_KAFKA_STORAGE_ERROR;
	}
	/* Remote data below the new start goes too (tiered storage). */
	sk_remote_delete_before(b, tp, offset);
	*low = sk_remote_start_offset(b, tp);
	if (*low > before)
		sk_info("DeleteRecords: topic %s partition %" PRId32
			": log start offset %" PRId64 " -> %" PRId64
			" (high watermark %" PRId64 ", %zu segments left)",
			t->name, partition, before, *low, hwm,
			sk_partition_segment_count(tp->log));
	return SK_KERR_NONE;
}

/*
 * Read the request body from r; with w, also act on each partition and
 * write the response. Returns whether the body decoded completely (w ==
 * NULL is the checking pass run first).
 */
static bool walk(struct sk_req *req, struct sk_rd *r, struct sk_wr *w)
{
	bool flex = req->flexible;
	int32_t n_topics;

	n_topics = sk_rd_array(r, flex, flex ? 3 : 6);
	if (n_topics < 0)
		sk_rd_fail(r); /* not nullable */
	if (w) {
		sk_wr_i32(w, 0); /* throttle_time_ms */
		sk_wr_array(w, n_topics, flex);
	}
	for (int32_t t = 0; t < n_topics && sk_rd_ok(r); t++) {
		struct sk_str topic = sk_rd_str(r, flex);
		int32_t np = sk_rd_array(r, flex, 12);

		if (np < 0)
			sk_rd_fail(r);
		if (w) {
			sk_wr_strn(w, (const char *)topic.p, topic.len, flex);
			sk_wr_array(w, np, flex);
		}
		for (int32_t i = 0; i < np && sk_rd_ok(r); i++) {
			int32_t partition = sk_rd_i32(r);
			int64_t offset = sk_rd_i64(r), low;
			int16_t kerr;

			sk_rd_tags(r, flex);
			if (!w || !sk_rd_ok(r))
				continue;
			kerr = delete_partition(req->b, topic, partition,
						offset, &low);
			sk_wr_i32(w, partition);
			sk_wr_i64(w, low);
			sk_wr_i16(w, kerr);
			sk_wr_tags(w, flex);
		}
		sk_rd_tags(r, flex);
		if (w)
			sk_wr_tags(w, flex);
	}
	sk_rd_i32(r); /* timeout_ms */
	sk_rd_tags(r, flex);
	if (w)
		sk_wr_tags(w, flex);
	return sk_rd_ok(r);
}

int sk_kafka_delete_records(struct sk_req *req)
{
	struct sk_rd check = req->rd;
	struct sk_wr w;

	if (!walk(req, &check, NULL))
		return -EPROTO;
	w = sk_resp_writer(req->resp);
	walk(req, &req->rd, &w);
	sk_resp_finish(req->resp);
	return 0;
}
