/*
 * ListOffsets (key 2), v1-3: earliest (-2), latest (-1), or the first
 * offset at or after a timestamp, from the time index.
 *
 * A timestamp inside a remote segment that is not in the download cache
 * needs that segment's records: the answer then waits (a pending
 * response, looked at again whenever a download ends) until the
 * download is done, at most SK_LO_WAIT_MS, after which those partitions
 * answer KAFKA_STORAGE_ERROR.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "kafka.h"
#include "log_remote.h"

#define SK_LATEST_TIMESTAMP   (-1)
#define SK_EARLIEST_TIMESTAMP (-2)
#define SK_LO_WAIT_MS	      15000

static int16_t lookup_offset(struct sk_broker *b, struct sk_str topic,
			     int32_t partition, int64_t ts, int64_t *out_ts,
			     int64_t *out_off, bool *wait)
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
			if (rc == -EAGAIN)
				*wait = true;
			if (rc != -ENOENT)
				return SK_KERR_KAFKA_STORAGE_ERROR;
		}
	}
	return SK_KERR_NONE;
}

/*
 * Decode the request in r and write the answer into resp; *wait is set
 * if some partition's answer is still downloading. 0 or -EPROTO.
 */
static int answer(struct sk_broker *b, struct sk_resp *resp, struct sk_rd *r,
		  int16_t v, bool flex, bool *wait)
{
	struct sk_wr w = sk_resp_writer(resp);
	int32_t n_topics;
	size_t hdr_len = resp->buf.len;

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
			kerr = lookup_offset(b, topic, partition, ts, &off_ts,
					     &off, wait);
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
		resp->buf.len = hdr_len;
		return -EPROTO;
	}
	sk_wr_tags(&w, flex);
	return 0;
}

/* A response waiting for remote segments to download. */
struct lo_wait {
	struct sk_list link; /* in b->offset_waits */
	struct sk_broker *b;
	struct sk_resp *resp;
	ev_timer timer; /* the deadline, or 0 s once woken */
	int16_t version;
	bool flex;
	size_t hdr_len;
	int64_t deadline; /* monotonic ms */
	size_t len;
	uint8_t body[]; /* the request body, from replica_id on */
};

static void wait_free(struct lo_wait *lw)
{
	ev_timer_stop(lw->b->loop, &lw->timer);
	sk_list_del(&lw->link);
	free(lw);
}

static void wait_cancel(struct sk_resp *resp)
{
	wait_free(resp->pending);
	sk_resp_drop(resp);
}

static void wait_check(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct lo_wait *lw = sk_container_of(t, struct lo_wait, timer);
	bool wait = false;
	struct sk_rd r;
	int64_t now;

	(void)loop;
	(void)revents;
	sk_rd_init(&r, lw->body, lw->len);
	lw->resp->buf.len = lw->hdr_len;
	answer(lw->b, lw->resp, &r, lw->version, lw->flex, &wait);
	now = sk_mono_ms();
	if (wait && now < lw->deadline) {
		lw->resp->buf.len = lw->hdr_len;
		ev_timer_set(&lw->timer, (double)(lw->deadline - now) / 1000.0,
			     0.0);
		ev_timer_start(lw->b->loop, &lw->timer);
		return;
	}
	sk_resp_finish(lw->resp);
	wait_free(lw);
}

void sk_list_offsets_wake(struct sk_broker *b)
{
	/*
	 * On the next iteration, not from here: the end of a download is no
	 * place to start another.
	 */
	for (struct sk_list *n = b->offset_waits.next; n != &b->offset_waits;
	     n = n->next) {
		struct lo_wait *lw = sk_container_of(n, struct lo_wait, link);

		ev_timer_stop(b->loop, &lw->timer);
		ev_timer_set(&lw->timer, 0.0, 0.0);
		ev_timer_start(b->loop, &lw->timer);
	}
}

int sk_kafka_list_offsets(struct sk_req *req)
{
	struct sk_rd body = req->rd;
	size_t hdr_len = req->resp->buf.len;
	bool wait = false;
	struct lo_wait *lw;
	int rc;

	rc = answer(req->b, req->resp, &req->rd, req->api_version,
		    req->flexible, &wait);
	if (rc)
		return rc;
	if (!wait) {
		sk_resp_finish(req->resp);
		return 0;
	}
	/* Answered again once the downloads it started are done. */
	req->resp->buf.len = hdr_len;
	lw = sk_xcalloc(1, sizeof(*lw) + (size_t)(body.end - body.p));
	lw->b = req->b;
	lw->resp = req->resp;
	lw->version = req->api_version;
	lw->flex = req->flexible;
	lw->hdr_len = hdr_len;
	lw->deadline = sk_mono_ms() + SK_LO_WAIT_MS;
	lw->len = (size_t)(body.end - body.p);
	memcpy(lw->body, body.p, lw->len);
	ev_timer_init(&lw->timer, wait_check, SK_LO_WAIT_MS / 1000.0, 0.0);
	ev_timer_start(lw->b->loop, &lw->timer);
	sk_list_add_tail(&lw->b->offset_waits, &lw->link);
	sk_resp_set_pending(req->resp, wait_cancel, lw);
	return 0;
}
