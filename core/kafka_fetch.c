/*
 * Fetch (key 1), v4-11: whole batches straight from the segment files
 * (sendfile), at least one batch for the first partition with data
 * (KIP-74), and long-poll: with fewer than min_bytes available the
 * request waits on the partitions it reads, up to max_wait_ms. Appends
 * wake it; it then runs again from the next loop iteration, never from
 * inside the producer's request.
 *
 * Sessions (KIP-227) are never created: every answer is full, with
 * session id 0, which is what all the clients we serve expect.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "kafka.h"
#include "log_remote.h"
#include "say.h"

struct fetch_part {
	int32_t partition;
	int64_t offset;
	int32_t max_bytes;
};

struct fetch_topic {
	char *name;
	int32_t n_parts;
	struct fetch_part *parts;
};

/* Registration of a waiting fetch on one partition's waiter list. */
struct fetch_link {
	struct sk_list node; /* in sk_tpart.waiters */
	struct sk_fetch *f;
};

/* A decoded Fetch request, alive until answered or cancelled. */
struct sk_fetch {
	struct sk_broker *b;
	struct sk_resp *resp;
	int16_t version;
	bool flex;
	int32_t max_wait_ms;
	int32_t min_bytes;
	int32_t max_bytes;
	int8_t isolation;
	struct fetch_topic *topics;
	int32_t n_topics;
	size_t n_links;
	struct fetch_link *links; /* one per requested partition */
	ev_timer timer;		  /* max_wait_ms */
	struct sk_list link;	  /* in b->fetches while waiting */
	struct sk_list ready;	  /* in b->ready_fetches when woken */
};

static void fetch_free(struct sk_fetch *f)
{
	/* links is allocated once the request has been decoded. */
	for (size_t i = 0; f->links && i < f->n_links; i++)
		sk_list_del(&f->links[i].node);
	sk_list_del(&f->link);
	sk_list_del(&f->ready);
	ev_timer_stop(f->b->loop, &f->timer);
	for (int32_t t = 0; t < f->n_topics; t++) {
		free(f->topics[t].name);
		free(f->topics[t].parts);
	}
	free(f->topics);
	free(f->links);
	free(f);
}

static struct sk_tpart *lookup(struct sk_broker *b, const char *topic,
			       int32_t partition)
{
	struct sk_topic *tp = sk_topics_find(&b->topics, topic, strlen(topic));

	return tp ? sk_topic_part(tp, partition) : NULL;
}

/* Bytes readable now, or -1 if some partition answers with an error. */
static int64_t available(struct sk_fetch *f)
{
	int64_t total = 0;

	for (int32_t t = 0; t < f->n_topics; t++) {
		struct fetch_topic *ft = &f->topics[t];

		for (int32_t i = 0; i < ft->n_parts; i++) {
			struct sk_tpart *p =
				lookup(f->b, ft->name, ft->parts[i].partition);
			struct sk_log_slice s;
			int rc = p ? sk_remote_read(
					     f->b, p, ft->parts[i].offset,
					     (size_t)SK_MAX(
						     ft->parts[i].max_bytes, 0),
					     true, &s)
				   : -ENOENT;

			/* Being read from the storage tier: wait for it. */
			if (rc == -EAGAIN)
				continue;
			if (rc)
				return -1;
			total += (int64_t)s.len;
			sk_log_slice_release(&s);
			if (total >= f->min_bytes)
				return total;
		}
	}
	return total;
}

/* Write the response with whatever is there now, and send it. */
static void respond(struct sk_fetch *f)
{
	struct sk_resp *resp = f->resp;
	struct sk_wr w = sk_resp_writer(resp);
	size_t budget = (size_t)SK_MIN(SK_MAX(f->max_bytes, 0),
				       f->b->cfg.fetch_max_bytes);
	bool got_data = false;
	bool flex = f->flex;

	if (f->version >= 1)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	if (f->version >= 7) {
		sk_wr_i16(&w, SK_KERR_NONE);
		sk_wr_i32(&w, 0); /* session_id: sessionless */
	}
	sk_wr_array(&w, f->n_topics, flex);
	for (int32_t t = 0; t < f->n_topics; t++) {
		struct fetch_topic *ft = &f->topics[t];

		sk_wr_str(&w, ft->name, flex);
		sk_wr_array(&w, ft->n_parts, flex);
		for (int32_t i = 0; i < ft->n_parts; i++) {
			struct fetch_part *fp = &ft->parts[i];
			struct sk_tpart *p =
				lookup(f->b, ft->name, fp->partition);
			struct sk_log_slice s = { 0 };
			int64_t hwm = -1, start = -1;
			int16_t kerr = SK_KERR_NONE;

			if (!p) {
				kerr = SK_KERR_UNKNOWN_TOPIC_OR_PARTITION;
			} else {
				size_t limit = SK_MIN(
					budget,
					(size_t)SK_MAX(fp->max_bytes, 0));
				int rc = sk_remote_read(f->b, p, fp->offset,
							limit, !got_data, &s);

				hwm = sk_partition_end_offset(p->log);
				start = sk_remote_start_offset(f->b, p);
				if (rc == -EAGAIN)
					rc = 0; /* not here yet: no records */
				if (rc == -ERANGE)
					kerr = SK_KERR_OFFSET_OUT_OF_RANGE;
				else if (rc)
					kerr = SK_KERR_KAFKA_STORAGE_ERROR;
			}
			if (s.len > 0) {
				got_data = true;
				budget -= SK_MIN(budget, s.len);
			}
			sk_wr_i32(&w, fp->partition);
			sk_wr_i16(&w, kerr);
			sk_wr_i64(&w, hwm);
			sk_wr_i64(&w, hwm); /* last_stable_offset */
			if (f->version >= 5)
				sk_wr_i64(&w, start);
			/* aborted_transactions: none without transactions */
			if (f->isolation == 1)
				sk_wr_array(&w, 0, flex);
			else
				sk_wr_array(&w, -1, flex);
			if (f->version >= 11)
				sk_wr_i32(&w, -1); /* preferred_read_replica */
			if (flex)
				sk_wr_uvarint(&w, (uint32_t)s.len + 1);
			else
				sk_wr_i32(&w, (int32_t)s.len);
			sk_resp_add_slice(resp, &s);
			w = sk_resp_writer(resp);
			sk_wr_tags(&w, flex);
		}
		sk_wr_tags(&w, flex);
	}
	sk_wr_tags(&w, flex);
	f->resp = NULL;
	fetch_free(f);
	sk_resp_finish(resp);
}

static void fetch_cancel(struct sk_resp *resp)
{
	struct sk_fetch *f = resp->pending;

	f->resp = NULL;
	fetch_free(f);
	sk_resp_drop(resp);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	respond(sk_container_of(w, struct sk_fetch, timer));
}

/* Wait for data on every requested partition. */
static void wait_for_data(struct sk_fetch *f)
{
	size_t k = 0;

	for (int32_t t = 0; t < f->n_topics; t++) {
		struct fetch_topic *ft = &f->topics[t];

		for (int32_t i = 0; i < ft->n_parts; i++, k++) {
			struct sk_tpart *p =
				lookup(f->b, ft->name, ft->parts[i].partition);

			f->links[k].f = f;
			sk_list_init(&f->links[k].node);
			if (p)
				sk_list_add_tail(&p->waiters,
						 &f->links[k].node);
		}
	}
	if (!sk_list_linked(&f->link))
		sk_list_add_tail(&f->b->fetches, &f->link);
}

/*
 * Answer now if there is enough, otherwise (keep) waiting. Returns true
 * if the fetch still waits; false if it was answered (and freed).
 */
static bool evaluate(struct sk_fetch *f)
{
	int64_t avail = available(f);

	if (avail < 0 || avail >= f->min_bytes || f->max_wait_ms <= 0 ||
	    f->b->stopping) {
		respond(f);
		return false;
	}
	wait_for_data(f);
	return true;
}

static void on_ready(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sk_broker *b = sk_container_of(w, struct sk_broker, fetch_timer);
	struct sk_list batch;

	(void)loop;
	(void)revents;
	sk_list_init(&batch);
	sk_list_splice(&batch, &b->ready_fetches);
	while (!sk_list_empty(&batch)) {
		struct sk_fetch *f =
			sk_list_first(&batch, struct sk_fetch, ready);
		sk_list_del(&f->ready);
		evaluate(f);
	}
}

void sk_fetch_wake(struct sk_broker *b, struct sk_tpart *tp)
{
	while (!sk_list_empty(&tp->waiters)) {
		struct fetch_link *l =
			sk_list_first(&tp->waiters, struct fetch_link, node);
		struct sk_fetch *f = l->f;

		/* Off every partition it waits on; evaluate re-registers. */
		for (size_t i = 0; i < f->n_links; i++)
			sk_list_del(&f->links[i].node);
		if (!sk_list_linked(&f->ready))
			sk_list_add_tail(&b->ready_fetches, &f->ready);
	}
	if (!sk_list_empty(&b->ready_fetches) &&
	    !ev_is_active(&b->fetch_timer)) {
		ev_timer_init(&b->fetch_timer, on_ready, 0.0, 0.0);
		ev_timer_start(b->loop, &b->fetch_timer);
	}
}

void sk_fetch_wake_all(struct sk_broker *b)
{
	while (!sk_list_empty(&b->fetches))
		respond(sk_list_first(&b->fetches, struct sk_fetch, link));
}

int sk_kafka_fetch(struct sk_req *req)
{
	struct sk_rd *r = &req->rd;
	bool flex = req->flexible;
	int16_t v = req->api_version;
	struct sk_fetch *f = sk_xcalloc(1, sizeof(*f));
	size_t k = 0;

	f->b = req->b;
	f->resp = req->resp;
	f->version = v;
	f->flex = flex;
	sk_list_init(&f->link);
	sk_list_init(&f->ready);
	ev_init(&f->timer, on_timeout);

	sk_rd_i32(r); /* replica_id: consumers send -1 */
	f->max_wait_ms = sk_rd_i32(r);
	f->min_bytes = sk_rd_i32(r);
	f->max_bytes = sk_rd_i32(r);
	f->isolation = sk_rd_i8(r);
	if (v >= 7) {
		sk_rd_i32(r); /* session_id */
		sk_rd_i32(r); /* session_epoch */
	}
	f->n_topics = sk_rd_array(r, flex, 6);
	if (f->n_topics > 0)
		f->topics = sk_xcalloc((size_t)f->n_topics, sizeof(*f->topics));
	for (int32_t t = 0; t < f->n_topics && sk_rd_ok(r); t++) {
		struct fetch_topic *ft = &f->topics[t];

		ft->name = sk_str_dup(sk_rd_str(r, flex));
		ft->n_parts = sk_rd_array(r, flex, 16);
		if (ft->n_parts > 0)
			ft->parts = sk_xcalloc((size_t)ft->n_parts,
					       sizeof(*ft->parts));
		for (int32_t i = 0; i < ft->n_parts && sk_rd_ok(r); i++) {
			ft->parts[i].partition = sk_rd_i32(r);
			if (v >= 9)
				sk_rd_i32(r); /* current_leader_epoch */
			ft->parts[i].offset = sk_rd_i64(r);
			if (v >= 5)
				sk_rd_i64(r); /* follower log_start_offset */
			ft->parts[i].max_bytes = sk_rd_i32(r);
			sk_rd_tags(r, flex);
		}
		if (ft->n_parts < 0)
			sk_rd_fail(r);
		else
			f->n_links += (size_t)ft->n_parts;
		sk_rd_tags(r, flex);
	}
	if (v >= 7) {
		/* forgotten_topics_data: meaningless without sessions */
		int32_t n = sk_rd_array(r, flex, 6);
		for (int32_t i = 0; i < n && sk_rd_ok(r); i++) {
			sk_rd_str(r, flex);
			int32_t np = sk_rd_array(r, flex, 4);
			for (int32_t j = 0; j < np && sk_rd_ok(r); j++)
				sk_rd_i32(r);
			sk_rd_tags(r, flex);
		}
	}
	if (v >= 11)
		sk_rd_str(r, flex); /* rack_id */
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r) || f->n_topics < 0) {
		f->resp = NULL;
		fetch_free(f);
		return -EPROTO;
	}
	f->links = sk_xcalloc(f->n_links ? f->n_links : 1, sizeof(*f->links));
	for (k = 0; k < f->n_links; k++)
		sk_list_init(&f->links[k].node);
	sk_resp_set_pending(req->resp, fetch_cancel, f);
	if (evaluate(f)) {
		ev_timer_set(&f->timer, (double)f->max_wait_ms / 1000.0, 0.0);
		ev_timer_start(f->b->loop, &f->timer);
	}
	return 0;
}
