/*
 * Committed offsets: OffsetCommit (8) v0-7, OffsetFetch (9) v0-7 and
 * OffsetDelete (47) v0.
 *
 * OffsetCommit and OffsetDelete queue their changes for the offsets
 * writer (core/offsets.h) and are answered only once the batch holding
 * them is on disk; a failed write turns their NONE results into
 * NOT_COORDINATOR (Kafka's answer to a failed offsets append), which
 * clients retry. OffsetFetch answers from memory, which only ever holds
 * durable offsets.
 *
 * Partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION before the
 * group is looked at, as Kafka checks its metadata first. Transactions
 * do not exist yet, so require_stable (OffsetFetch v7) never finds an
 * unstable offset.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "group.h"
#include "kafka.h"

static bool partition_exists(struct sk_broker *b, struct sk_str topic,
			     int32_t partition)
{
	struct sk_topic *t;

	if (topic.len <= 0)
		return false;
	t = sk_topics_find(&b->topics, (const char *)topic.p,
			   (size_t)topic.len);
	return t && sk_topic_part(t, partition);
}

/* Skip one OffsetCommit partition entry. */
static void commit_part_skip(struct sk_rd *r, int16_t v, bool flex)
{
	sk_rd_i32(r);
	sk_rd_i64(r);
	if (v >= 6)
		sk_rd_i32(r);
	if (v == 1)
		sk_rd_i64(r);
	sk_rd_str(r, flex);
	sk_rd_tags(r, flex);
}

int sk_kafka_offset_commit(struct sk_req *req)
{
	struct sk_broker *b = req->b;
	struct sk_groups *gs = b->groups;
	struct sk_rd *r = &req->rd, first;
	bool flex = req->flexible;
	int16_t v = req->api_version;
	struct sk_wr w = sk_resp_writer(req->resp);
	struct sk_str group_id, member_id = { NULL, -1 };
	struct sk_str instance_id = { NULL, -1 };
	int32_t generation = -1, n_topics;
	int64_t retention = -1, now = sk_now_ms();
	size_t *pos = NULL, n_pos = 0, n_parts = 0, n_known = 0;
	enum sk_kerr gec = SK_KERR_NONE;
	struct sk_group *g = NULL;

	group_id = sk_rd_str(r, flex);
	if (v >= 1) {
		generation = sk_rd_i32(r);
		member_id = sk_rd_str(r, flex);
	}
	if (v >= 7)
		instance_id = sk_rd_str(r, flex);
	if (v >= 2 && v <= 4)
		retention = sk_rd_i64(r);
	n_topics = sk_rd_array(r, flex, flex ? 2 : 6);
	first = *r;
	for (int32_t t = 0; t < n_topics && sk_rd_ok(r); t++) {
		struct sk_str topic = sk_rd_str(r, flex);
		int32_t np = sk_rd_array(r, flex, 14);

		if (np < 0)
			sk_rd_fail(r);
		for (int32_t i = 0; i < np && sk_rd_ok(r); i++) {
			struct sk_rd at = *r;

			if (partition_exists(b, topic, sk_rd_i32(&at)))
				n_known++;
			commit_part_skip(r, v, flex);
			n_parts++;
		}
		sk_rd_tags(r, flex);
	}
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r) || n_topics < 0)
		return -EPROTO;

	if (n_known > 0)
		gec = sk_group_commit_check(gs, group_id, generation, member_id,
					    instance_id, &g);
	else
		gec = sk_group_id_check(group_id);
	if (n_parts > 0)
		pos = sk_xmalloc(n_parts * sizeof(*pos));
	if (v >= 3)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_array(&w, n_topics, flex);
	for (int32_t t = 0; t < n_topics; t++) {
		struct sk_str topic = sk_rd_str(&first, flex);
		int32_t np = sk_rd_array(&first, flex, 14);

		sk_wr_strn(&w, (const char *)topic.p, topic.len, flex);
		sk_wr_array(&w, np, flex);
		for (int32_t i = 0; i < np; i++) {
			int32_t part = sk_rd_i32(&first);
			int64_t offset = sk_rd_i64(&first);
			int32_t epoch = v >= 6 ? sk_rd_i32(&first) : -1;
			int64_t ts = v == 1 ? sk_rd_i64(&first) : -1;
			struct sk_str meta = sk_rd_str(&first, flex);
			enum sk_kerr ec = gec;

			sk_rd_tags(&first, flex);
			if (!partition_exists(b, topic, part))
				ec = SK_KERR_UNKNOWN_TOPIC_OR_PARTITION;
			else if (!ec &&
				 meta.len > b->cfg.offset_metadata_max_bytes)
				ec = SK_KERR_OFFSET_METADATA_TOO_LARGE;
			if (!ec) {
				struct sk_offset_rec rec = {
					.op = SK_OFFSET_PUT,
					.group = sk_xstrdup(g->id),
					.topic = sk_str_dup(topic),
					.partition = part,
					.offset = offset,
					.leader_epoch = epoch,
					.metadata = sk_str_dup(meta),
					.commit_ms = ts >= 0 ? ts : now,
					.expire_ms = retention >= 0
							     ? now + retention
							     : -1,
				};
				sk_offsets_queue(gs->store, &rec);
				pos[n_pos++] = req->resp->buf.len;
			}
			sk_wr_i32(&w, part);
			sk_wr_i16(&w, (int16_t)ec);
			sk_wr_tags(&w, flex);
		}
		sk_rd_tags(&first, flex);
		sk_wr_tags(&w, flex);
	}
	sk_wr_tags(&w, flex);
	sk_groups_answer_durable(gs, req->resp, pos, n_pos,
				 SK_KERR_NOT_COORDINATOR);
	free(pos);
	return 0;
}

/* One OffsetFetch partition result. */
static void fetch_part(struct sk_wr *w, int16_t v, bool flex,
		       const struct sk_offset *o, int32_t partition,
		       enum sk_kerr ec)
{
	sk_wr_i32(w, partition);
	sk_wr_i64(w, o ? o->offset : -1);
	if (v >= 5)
		sk_wr_i32(w, o ? o->leader_epoch : -1);
	sk_wr_str(w, o ? o->metadata : "", flex);
	sk_wr_i16(w, (int16_t)ec);
	sk_wr_tags(w, flex);
}

static int offset_cmp(const void *pa, const void *pb)
{
	const struct sk_offset *a = *(const struct sk_offset *const *)pa;
	const struct sk_offset *b = *(const struct sk_offset *const *)pb;
	int c = strcmp(sk_offset_topic(a), sk_offset_topic(b));

	if (c)
		return c;
	return a->partition < b->partition ? -1 : a->partition > b->partition;
}

/* topics = null (v2+): every offset of the group, grouped by topic. */
static void fetch_all(struct sk_wr *w, int16_t v, bool flex,
		      const struct sk_group *g)
{
	size_t n = g ? g->offsets.count : 0, k = 0, i, j;
	struct sk_offset **all = NULL;
	int32_t n_topics = 0;

	if (n) {
		all = sk_xmalloc(n * sizeof(*all));
		for (struct sk_hnode *h = sk_hmap_first(&g->offsets); h;
		     h = sk_hmap_next(&g->offsets, h))
			all[k++] = sk_container_of(h, struct sk_offset, node);
		qsort(all, n, sizeof(*all), offset_cmp);
	}
	for (i = 0; i < n; i = j, n_topics++)
		for (j = i; j < n && strcmp(sk_offset_topic(all[i]),
					    sk_offset_topic(all[j])) == 0;)
			j++;
	sk_wr_array(w, n_topics, flex);
	for (i = 0; i < n; i = j) {
		for (j = i; j < n && strcmp(sk_offset_topic(all[i]),
					    sk_offset_topic(all[j])) == 0;)
			j++;
		sk_wr_str(w, sk_offset_topic(all[i]), flex);
		sk_wr_array(w, (int32_t)(j - i), flex);
		for (size_t x = i; x < j; x++)
			fetch_part(w, v, flex, all[x], all[x]->partition,
				   SK_KERR_NONE);
		sk_wr_tags(w, flex);
	}
	free(all);
}

int sk_kafka_offset_fetch(struct sk_req *req)
{
	struct sk_groups *gs = req->b->groups;
	struct sk_rd *r = &req->rd, first;
	bool flex = req->flexible;
	int16_t v = req->api_version;
	struct sk_wr w = sk_resp_writer(req->resp);
	struct sk_str group_id;
	struct sk_group *g = NULL;
	enum sk_kerr gec;
	int32_t n_topics;

	group_id = sk_rd_str(r, flex);
	n_topics = sk_rd_array(r, flex, flex ? 2 : 6);
	first = *r;
	for (int32_t t = 0; t < n_topics && sk_rd_ok(r); t++) {
		int32_t np;

		sk_rd_str(r, flex);
		np = sk_rd_array(r, flex, 4);
		for (int32_t i = 0; i < np && sk_rd_ok(r); i++)
			sk_rd_i32(r);
		if (np < 0)
			sk_rd_fail(r);
		sk_rd_tags(r, flex);
	}
	if (v >= 7)
		sk_rd_i8(r); /* require_stable: nothing is ever unstable */
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r) || (n_topics < 0 && v < 2))
		return -EPROTO;

	gec = sk_group_id_check(group_id);
	if (!gec)
		g = sk_groups_find(gs, (const char *)group_id.p,
				   (size_t)group_id.len);
	if (v >= 3)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	if (gec && v >= 2) {
		/* v2+ carry a group error at the top, with no topics. */
		sk_wr_array(&w, 0, flex);
	} else if (n_topics < 0) {
		fetch_all(&w, v, flex, g);
	} else {
		sk_wr_array(&w, n_topics, flex);
		for (int32_t t = 0; t < n_topics; t++) {
			struct sk_str topic = sk_rd_str(&first, flex);
			int32_t np = sk_rd_array(&first, flex, 4);

			sk_wr_strn(&w, (const char *)topic.p, topic.len, flex);
			sk_wr_array(&w, np, flex);
			for (int32_t i = 0; i < np; i++) {
				int32_t part = sk_rd_i32(&first);
				const struct sk_offset *o =
					g && !gec
						? sk_group_offset(
							  g,
							  (const char *)topic.p,
							  (size_t)SK_MAX(
								  topic.len, 0),
							  part)
						: NULL;

				fetch_part(&w, v, flex, o, part, gec);
			}
			sk_rd_tags(&first, flex);
			sk_wr_tags(&w, flex);
		}
	}
	if (v >= 2)
		sk_wr_i16(&w, (int16_t)gec);
	sk_wr_tags(&w, flex);
	sk_resp_finish(req->resp);
	return 0;
}

int sk_kafka_offset_delete(struct sk_req *req)
{
	struct sk_broker *b = req->b;
	struct sk_groups *gs = b->groups;
	struct sk_rd *r = &req->rd, first;
	bool flex = req->flexible;
	struct sk_wr w = sk_resp_writer(req->resp);
	struct sk_str group_id;
	struct sk_group *g = NULL;
	size_t *pos = NULL, n_pos = 0, n_parts = 0;
	bool consumer_busy = false;
	enum sk_kerr gec;
	int32_t n_topics;

	group_id = sk_rd_str(r, flex);
	n_topics = sk_rd_array(r, flex, flex ? 2 : 6);
	first = *r;
	for (int32_t t = 0; t < n_topics && sk_rd_ok(r); t++) {
		int32_t np;

		sk_rd_str(r, flex);
		np = sk_rd_array(r, flex, 4);
		for (int32_t i = 0; i < np && sk_rd_ok(r); i++) {
			sk_rd_i32(r);
			sk_rd_tags(r, flex);
			n_parts++;
		}
		if (np < 0)
			sk_rd_fail(r);
		sk_rd_tags(r, flex);
	}
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r) || n_topics < 0)
		return -EPROTO;

	gec = sk_group_id_check(group_id);
	if (!gec) {
		g = sk_groups_find(gs, (const char *)group_id.p,
				   (size_t)group_id.len);
		if (!g)
			gec = SK_KERR_GROUP_ID_NOT_FOUND;
	}
	if (!gec && g->state != SK_GROUP_EMPTY) {
		/*
		 * A live consumer group may lose the offsets of topics it
		 * does not subscribe to; any other live group none.
		 */
		if (g->protocol_type &&
		    strcmp(g->protocol_type, "consumer") == 0)
			consumer_busy = true;
		else
			gec = SK_KERR_NON_EMPTY_GROUP;
	}
	sk_wr_i16(&w, (int16_t)gec);
	sk_wr_i32(&w, 0); /* throttle_time_ms */
	if (gec) {
		sk_wr_array(&w, 0, flex);
		sk_wr_tags(&w, flex);
		sk_resp_finish(req->resp);
		return 0;
	}
	if (n_parts > 0)
		pos = sk_xmalloc(n_parts * sizeof(*pos));
	sk_wr_array(&w, n_topics, flex);
	for (int32_t t = 0; t < n_topics; t++) {
		struct sk_str topic = sk_rd_str(&first, flex);
		int32_t np = sk_rd_array(&first, flex, 4);
		bool busy = consumer_busy &&
			    sk_group_subscribed(g, (const char *)topic.p,
						(size_t)SK_MAX(topic.len, 0));

		sk_wr_strn(&w, (const char *)topic.p, topic.len, flex);
		sk_wr_array(&w, np, flex);
		for (int32_t i = 0; i < np; i++) {
			int32_t part = sk_rd_i32(&first);
			enum sk_kerr ec = SK_KERR_NONE;

			sk_rd_tags(&first, flex);
			if (!partition_exists(b, topic, part))
				ec = SK_KERR_UNKNOWN_TOPIC_OR_PARTITION;
			else if (busy)
				ec = SK_KERR_GROUP_SUBSCRIBED_TO_TOPIC;
			if (!ec) {
				struct sk_offset_rec rec = {
					.op = SK_OFFSET_DEL,
					.group = sk_xstrdup(g->id),
					.topic = sk_str_dup(topic),
					.partition = part,
					.commit_ms = -1,
				};
				sk_offsets_queue(gs->store, &rec);
				pos[n_pos++] = req->resp->buf.len;
			}
			sk_wr_i32(&w, part);
			sk_wr_i16(&w, (int16_t)ec);
			sk_wr_tags(&w, flex);
		}
		sk_rd_tags(&first, flex);
		sk_wr_tags(&w, flex);
	}
	sk_wr_tags(&w, flex);
	sk_groups_answer_durable(gs, req->resp, pos, n_pos,
				 SK_KERR_NOT_COORDINATOR);
	free(pos);
	return 0;
}
