/*
 * ListOffsets (key 2), v1-3: earliest (-2), latest (-1), or the first
 * offset at or after a timestamp, from the time index.
 */
#include <errno.h>
#include <string.h>

#include "broker.h"
#include "kafka.h"
#include "log_remote.h"

#define SK_LATEST_TIMESTAMP   (-1)
#define SK_EARLIEST_TIMESTAMP (-2)

static int16_t lookup_offset(struct sk_broker *b, struct sk_str topic,
			     int32_t partition, int64_t ts, int64_t *out_ts,
			     int64_t *out_off)
{
	struct sk_topic *tp = sk_topics_find(&b->topics, (const char *)topic.p,
					     (size_t)SK_MAX(topic.len, 0));
	struct sk_tpart *p = tp ? sk_topic_part(tp, partition) : NULL;

	*out_ts = -1;
	*out_off = -1;
	if (!p)
		return SK_KERR_UNKNOWN_TOPIC_OR_PARTITION;
	if (ts == SK_LATEST_TIMESTAMP) {
		*out_off = sk_partition_end_offset(p->log);
	} else if (ts == SK_EARLIEST_TIMESTAMP) {
		*out_off = sk_remote_start_offset(b, p);
	} else if (ts < 0) {
		return SK_KERR_INVALID_REQUEST;
	} else {
		int rc = sk_remote_offset_for_time(b, p, ts, out_off, out_ts);
		if (rc) {
			*out_ts = -1;
			*out_off = -1;
			/* -ENOENT: every record is older; Kafka answers -1. */
			if (rc != -ENOENT)
				return SK_KERR_KAFKA_STORAGE_ERROR;
		}
	}
	return SK_KERR_NONE;
}

int sk_kafka_list_offsets(struct sk_req *req)
{
	struct sk_rd *r = &req->rd;
	struct sk_wr w = sk_resp_writer(req->resp);
	bool flex = req->flexible;
	int16_t v = req->api_version;
	int32_t n_topics;
	size_t hdr_len = req->resp->buf.len;

	sk_rd_i32(r); /* replica_id */
	if (v >= 2)
		sk_rd_i8(r); /* isolation_level: LSO == HWM without txns */
	n_topics = sk_rd_array(r, flex, 6);
	if (v >= 2)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_array(&w, n_topics, flex);
	for (int32_t t = 0; t < n_topics && sk_rd_ok(r); t++) {
		struct sk_str topic = sk_rd_str(r, flex);
		int32_t np = sk_rd_array(r, flex, 12);

		sk_wr_strn(&w, (const char *)topic.p, topic.len, flex);
		sk_wr_array(&w, np, flex);
		for (int32_t i = 0; i < np && sk_rd_ok(r); i++) {
			int32_t partition = sk_rd_i32(r);
			int64_t ts = sk_rd_i64(r), off_ts, off;
			int16_t kerr;

			sk_rd_tags(r, flex);
			if (!sk_rd_ok(r))
				break;
			kerr = lookup_offset(req->b, topic, partition, ts,
					     &off_ts, &off);
			sk_wr_i32(&w, partition);
			sk_wr_i16(&w, kerr);
			sk_wr_i64(&w, off_ts);
			sk_wr_i64(&w, off);
			sk_wr_tags(&w, flex);
		}
		sk_rd_tags(r, flex);
		sk_wr_tags(&w, flex);
	}
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r) || n_topics < 0) {
		req->resp->buf.len = hdr_len;
		return -EPROTO;
	}
	sk_wr_tags(&w, flex);
	sk_resp_finish(req->resp);
	return 0;
}
