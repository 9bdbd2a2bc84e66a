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
 * wait for. Each new start is made durable (a checkpoint with two syncs,
 * written on the flusher's thread) before the answer goes out.
 *
 * The request is decoded completely before anything is deleted, so a
 * malformed one (which closes the connection) deletes nothing.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "kafka.h"
#include "log_remote.h"
#include "say.h"

#define SK_DELETE_TO_HWM (-1)

/* One partition of the request and its answer. */
struct del_part {
	int32_t partition;
	int16_t kerr;
	int64_t low;	/* low watermark to answer */
	int64_t before; /* the start before, for the log line */
	bool writing;	/* w must be run and ended */
	struct sk_log_start_write w;
};

/* The request, parked while the checkpoints are written. */
struct del_req {
	struct sk_job job; /* on the flusher's thread */
	struct sk_broker *b;
	struct sk_resp *resp; /* NULL once the connection went away */
	bool flex;
	int32_t n_topics;
	char **topics;	    /* names, owned */
	int32_t *topic_len; /* as sent: -1 for a null name */
	int32_t *n_parts;   /* per topic */
	struct del_part *parts;
	size_t n;
};

static struct sk_tpart *find_part(struct sk_broker *b, const char *topic,
				  int32_t partition, struct sk_topic **t)
{
	*t = sk_topics_find(&b->topics, topic, strlen(topic));
	return *t ? sk_topic_part(*t, partition) : NULL;
}

/*
 * Check one partition's deletion and begin it; the checkpoint is written
 * later, off the loop. Sets dp->kerr, or dp->writing.
 */
static void delete_begin(struct sk_broker *b, const char *topic,
			 struct del_part *dp, int64_t offset)
{
	struct sk_topic *t;
	struct sk_tpart *tp = find_part(b, topic, dp->partition, &t);
	int64_t hwm;
	struct sk_err err;
	int rc;

	dp->low = -1;
	if (!tp) {
		dp->kerr = SK_KERR_UNKNOWN_TOPIC_OR_PARTITION;
		return;
	}
	if (!(t->cfg.cleanup_policy & SK_CLEANUP_DELETE)) {
		dp->kerr = SK_KERR_POLICY_VIOLATION;
		return;
	}
	hwm = sk_partition_end_offset(tp->log);
	if (offset == SK_DELETE_TO_HWM)
		offset = hwm;
	if (offset < 0 || offset > hwm) {
		dp->kerr = SK_KERR_OFFSET_OUT_OF_RANGE;
		return;
	}
	dp->before = sk_remote_start_offset(b, tp);
	rc = sk_partition_delete_begin(tp->log, offset, &dp->w, &err);
	if (rc < 0) {
		sk_error("DeleteRecords: topic %s partition %" PRId32 ": %s",
			 t->name, dp->partition, err.msg);
		dp->kerr = rc == -ERANGE ? SK_KERR_OFFSET_OUT_OF_RANGE
					 : SK_KERR_KAFKA_STORAGE_ERROR;
		return;
	}
	dp->writing = rc > 0;
	/* Nothing to write: remote data below the offset may still go. */
	if (!dp->writing) {
		sk_remote_delete_before(b, tp, offset);
		dp->low = sk_remote_start_offset(b, tp);
	}
}

/* The checkpoint is durable (or failed): move the start, answer. */
static void delete_end(struct sk_broker *b, const char *topic,
		       struct del_part *dp)
{
	struct sk_partition *log = dp->w.p;
	int64_t start = dp->w.start;
	struct sk_topic *t;
	struct sk_tpart *tp;
	struct sk_err err;
	int rc;

	rc = sk_partition_delete_end(&dp->w, &err);
	tp = find_part(b, topic, dp->partition, &t);
	if (rc < 0 || !tp || tp->log != log) {
		if (rc != -ECANCELED)
			sk_error("DeleteRecords: topic %s partition %" PRId32
				 ": %s",
				 topic, dp->partition, err.msg);
		dp->kerr = rc == -ECANCELED || !tp
				   ? SK_KERR_UNKNOWN_TOPIC_OR_PARTITION
				   : SK_KERR_KAFKA_STORAGE_ERROR;
		return;
	}
	/* Remote data below the new start goes too (tiered storage). */
	sk_remote_delete_before(b, tp, start);
	dp->low = sk_remote_start_offset(b, tp);
	if (dp->low > dp->before)
		sk_info("DeleteRecords: topic %s partition %" PRId32
			": log start offset %" PRId64 " -> %" PRId64
			" (high watermark %" PRId64 ", %zu segments left)",
			t->name, dp->partition, dp->before, dp->low,
			sk_partition_end_offset(tp->log),
			sk_partition_segment_count(tp->log));
}

static void write_response(struct del_req *d)
{
	struct sk_wr w = sk_resp_writer(d->resp);
	size_t k = 0;

	sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_array(&w, d->n_topics, d->flex);
	for (int32_t t = 0; t < d->n_topics; t++) {
		sk_wr_strn(&w, d->topics[t], d->topic_len[t], d->flex);
		sk_wr_array(&w, d->n_parts[t], d->flex);
		for (int32_t i = 0; i < d->n_parts[t]; i++, k++) {
			sk_wr_i32(&w, d->parts[k].partition);
			sk_wr_i64(&w, d->parts[k].low);
			sk_wr_i16(&w, d->parts[k].kerr);
			sk_wr_tags(&w, d->flex);
		}
		sk_wr_tags(&w, d->flex);
	}
	sk_wr_tags(&w, d->flex);
}

static void del_req_free(struct del_req *d)
{
	for (int32_t t = 0; t < d->n_topics; t++)
		free(d->topics[t]);
	free(d->topics);
	free(d->topic_len);
	free(d->n_parts);
	free(d->parts);
	free(d);
}

/* Flusher thread: the checkpoints, with their syncs. */
static void run_writes(struct sk_job *job)
{
	struct del_req *d = sk_container_of(job, struct del_req, job);

	for (size_t k = 0; k < d->n; k++)
		if (d->parts[k].writing)
			sk_log_start_write_run(&d->parts[k].w);
}

/* Loop thread: apply what became durable and answer. */
static void writes_done(struct sk_job *job)
{
	struct del_req *d = sk_container_of(job, struct del_req, job);
	size_t k = 0;

	for (int32_t t = 0; t < d->n_topics; t++)
		for (int32_t i = 0; i < d->n_parts[t]; i++, k++)
			if (d->parts[k].writing)
				delete_end(d->b, d->topics[t], &d->parts[k]);
	if (d->resp) {
		write_response(d);
		sk_resp_finish(d->resp);
	}
	del_req_free(d);
}

/* The connection went away: the deletions still complete, unanswered. */
static void del_cancel(struct sk_resp *resp)
{
	struct del_req *d = resp->pending;

	d->resp = NULL;
	sk_resp_drop(resp);
}

/*
 * Read the request body from r; with d, also record each partition and
 * begin its deletion. Returns whether the body decoded completely. d ==
 * NULL is the checking pass run first, which counts the partitions into
 * *count: d->parts is sized from it once, because a deletion in flight
 * is linked into its partition by address (sk_log_start_write).
 */
static bool walk(struct sk_req *req, struct sk_rd *r, struct del_req *d,
		 size_t *count)
{
	bool flex = req->flexible;
	int32_t n_topics;

	n_topics = sk_rd_array(r, flex, flex ? 3 : 6);
	if (n_topics < 0)
		sk_rd_fail(r); /* not nullable */
	if (d && sk_rd_ok(r)) {
		d->topics = sk_xcalloc((size_t)n_topics + 1, sizeof(char *));
		d->topic_len =
			sk_xcalloc((size_t)n_topics + 1, sizeof(int32_t));
		d->n_parts = sk_xcalloc((size_t)n_topics + 1, sizeof(int32_t));
	}
	for (int32_t t = 0; t < n_topics && sk_rd_ok(r); t++) {
		struct sk_str topic = sk_rd_str(r, flex);
		int32_t np = sk_rd_array(r, flex, 12);

		if (np < 0)
			sk_rd_fail(r);
		if (d && sk_rd_ok(r)) {
			d->topics[t] = sk_xstrndup(
				topic.p ? (const char *)topic.p : "",
				(size_t)SK_MAX(topic.len, 0));
			d->topic_len[t] = topic.len;
			d->n_parts[t] = np;
			d->n_topics = t + 1;
		}
		for (int32_t i = 0; i < np && sk_rd_ok(r); i++) {
			int32_t partition = sk_rd_i32(r);
			int64_t offset = sk_rd_i64(r);
			struct del_part *dp;

			sk_rd_tags(r, flex);
			if (!d) {
				(*count)++;
				continue;
			}
			if (!sk_rd_ok(r) || d->n == *count)
				continue;
			dp = &d->parts[d->n++];
			dp->partition = partition;
			delete_begin(req->b, d->topics[t], dp, offset);
		}
		sk_rd_tags(r, flex);
	}
	sk_rd_i32(r); /* timeout_ms */
	sk_rd_tags(r, flex);
	return sk_rd_ok(r);
}

int sk_kafka_delete_records(struct sk_req *req)
{
	struct sk_rd check = req->rd;
	struct del_req *d;
	bool writing = false;
	size_t count = 0;

	if (!walk(req, &check, NULL, &count))
		return -EPROTO;
	d = sk_xcalloc(1, sizeof(*d));
	d->b = req->b;
	d->resp = req->resp;
	d->flex = req->flexible;
	d->parts = sk_xcalloc(SK_MAX(count, 1), sizeof(*d->parts));
	walk(req, &req->rd, d, &count);
	for (size_t k = 0; k < d->n; k++)
		writing |= d->parts[k].writing;
	if (!writing) {
		write_response(d);
		del_req_free(d);
		sk_resp_finish(req->resp);
		return 0;
	}
	/*
	 * The flusher's thread: its one thread runs the writes in the
	 * order begun, as sk_partition_delete_begin requires.
	 */
	d->job.run = run_writes;
	d->job.done = writes_done;
	sk_resp_set_pending(req->resp, del_cancel, d);
	sk_pool_submit(d->b->flusher.pool, &d->job);
	return 0;
}
