/*
 * Group membership APIs: JoinGroup (11) v0-5, Heartbeat (12) v0-3,
 * LeaveGroup (13) v0-3, SyncGroup (14) v0-3, DescribeGroups (15) v0-4,
 * ListGroups (16) v0-2 and DeleteGroups (42) v0-1.
 *
 * These handlers only decode and encode; the state machine is in
 * group.c, which also writes the JoinGroup and SyncGroup answers since
 * it may hold them. Every request is decoded completely before the group
 * is touched, so a malformed one changes nothing. Encoding goes through
 * the flexible-aware helpers, so raising a maximum version past the
 * first flexible one needs no new encoding code.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "group.h"
#include "kafka.h"

/* Bit of each ACL operation Kafka reports for a group with no authorizer:
 * READ (3), DELETE (6), DESCRIBE (8). */
#define GROUP_AUTHORIZED_OPS ((1 << 3) | (1 << 6) | (1 << 8))

int sk_kafka_join_group(struct sk_req *req)
{
	struct sk_rd *r = &req->rd;
	bool flex = req->flexible;
	int16_t v = req->api_version;
	struct sk_join_args a = { 0 };
	int32_t n;

	a.group_id = sk_rd_str(r, flex);
	a.session_ms = sk_rd_i32(r);
	/* v0 has no rebalance timeout: Kafka uses the session timeout. */
	a.rebalance_ms = v >= 1 ? sk_rd_i32(r) : a.session_ms;
	a.member_id = sk_rd_str(r, flex);
	if (v >= 5)
		a.instance_id = sk_rd_str(r, flex);
	a.protocol_type = sk_rd_str(r, flex);
	n = sk_rd_array(r, flex, flex ? 2 : 6);
	if (n > 0)
		a.protos = sk_xcalloc((size_t)n, sizeof(*a.protos));
	for (int32_t i = 0; i < n && sk_rd_ok(r); i++) {
		struct sk_str name = sk_rd_str(r, flex);
		struct sk_str meta = sk_rd_bytes(r, flex);

		sk_rd_tags(r, flex);
		if (!sk_rd_ok(r))
			break;
		a.protos[i].name = sk_str_dup(name);
		a.protos[i].len = SK_MAX(meta.len, 0);
		a.protos[i].meta = sk_xmalloc((size_t)a.protos[i].len + 1);
		if (a.protos[i].len)
			memcpy(a.protos[i].meta, meta.p,
			       (size_t)a.protos[i].len);
		a.n_protos = i + 1;
	}
	if (v >= 8)
		sk_rd_str(r, flex); /* reason */
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r) || n < 0) {
		for (int32_t i = 0; i < a.n_protos; i++) {
			free(a.protos[i].name);
			free(a.protos[i].meta);
		}
		free(a.protos);
		return -EPROTO;
	}
	sk_group_join(req->b->groups, req, &a);
	return 0;
}

int sk_kafka_sync_group(struct sk_req *req)
{
	struct sk_rd *r = &req->rd;
	bool flex = req->flexible;
	int16_t v = req->api_version;
	struct sk_sync_args a = { 0 };
	int32_t n;

	a.group_id = sk_rd_str(r, flex);
	a.generation = sk_rd_i32(r);
	a.member_id = sk_rd_str(r, flex);
	if (v >= 3)
		a.instance_id = sk_rd_str(r, flex);
	if (v >= 5) {
		sk_rd_str(r, flex); /* protocol_type */
		sk_rd_str(r, flex); /* protocol_name */
	}
	n = sk_rd_array(r, flex, flex ? 2 : 6);
	if (n > 0) {
		a.assign_member = sk_xcalloc((size_t)n, sizeof(struct sk_str));
		a.assign_bytes = sk_xcalloc((size_t)n, sizeof(struct sk_str));
	}
	for (int32_t i = 0; i < n && sk_rd_ok(r); i++) {
		a.assign_member[i] = sk_rd_str(r, flex);
		a.assign_bytes[i] = sk_rd_bytes(r, flex);
		sk_rd_tags(r, flex);
		a.n_assign = i + 1;
	}
	sk_rd_tags(r, flex);
	if (sk_rd_ok(r) && n >= 0)
		sk_group_sync(req->b->groups, req, &a);
	free(a.assign_member);
	free(a.assign_bytes);
	return sk_rd_ok(r) && n >= 0 ? 0 : -EPROTO;
}

int sk_kafka_heartbeat(struct sk_req *req)
{
	struct sk_rd *r = &req->rd;
	bool flex = req->flexible;
	int16_t v = req->api_version;
	struct sk_wr w = sk_resp_writer(req->resp);
	struct sk_str group_id, member_id, instance_id = { NULL, -1 };
	int32_t generation;
	enum sk_kerr ec;

	group_id = sk_rd_str(r, flex);
	generation = sk_rd_i32(r);
	member_id = sk_rd_str(r, flex);
	if (v >= 3)
		instance_id = sk_rd_str(r, flex);
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r))
		return -EPROTO;
	ec = sk_group_heartbeat(req->b->groups, group_id, member_id,
				instance_id, generation);
	if (v >= 1)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_i16(&w, (int16_t)ec);
	sk_wr_tags(&w, flex);
	sk_resp_finish(req->resp);
	return 0;
}

int sk_kafka_leave_group(struct sk_req *req)
{
	struct sk_groups *gs = req->b->groups;
	struct sk_rd *r = &req->rd, first;
	bool flex = req->flexible;
	int16_t v = req->api_version;
	struct sk_wr w = sk_resp_writer(req->resp);
	struct sk_str group_id, member_id = { NULL, -1 };
	struct sk_group *g = NULL;
	enum sk_kerr ec;
	int32_t n = 1;

	group_id = sk_rd_str(r, flex);
	if (v <= 2) {
		member_id = sk_rd_str(r, flex);
	} else {
		/* Check the batch decodes; read it again from first. */
		n = sk_rd_array(r, flex, flex ? 3 : 4);
		first = *r;
		for (int32_t i = 0; i < n && sk_rd_ok(r); i++) {
			sk_rd_str(r, flex);
			sk_rd_str(r, flex);
			if (v >= 5)
				sk_rd_str(r, flex); /* reason */
			sk_rd_tags(r, flex);
		}
	}
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r) || n < 0)
		return -EPROTO;

	ec = sk_group_id_check(group_id);
	if (!ec) {
		g = sk_groups_find(gs, (const char *)group_id.p,
				   (size_t)group_id.len);
		/* v0-2 report the member's error; v3+ per member. */
		if (!g && v <= 2)
			ec = SK_KERR_UNKNOWN_MEMBER_ID;
	}
	if (v >= 1)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	if (v <= 2) {
		if (!ec)
			ec = sk_group_leave(g, member_id,
					    (struct sk_str){ NULL, -1 });
		sk_wr_i16(&w, (int16_t)ec);
	} else {
		sk_wr_i16(&w, (int16_t)ec);
		sk_wr_array(&w, ec ? 0 : n, flex);
		for (int32_t i = 0; i < n && !ec; i++) {
			struct sk_str mid = sk_rd_str(&first, flex);
			struct sk_str iid = sk_rd_str(&first, flex);
			enum sk_kerr mec = SK_KERR_UNKNOWN_MEMBER_ID;

			if (v >= 5)
				sk_rd_str(&first, flex);
			sk_rd_tags(&first, flex);
			/* A member's leave may empty and free the group. */
			if (g)
				g = sk_groups_find(gs, (const char *)group_id.p,
						   (size_t)group_id.len);
			if (g)
				mec = sk_group_leave(g, mid, iid);
			sk_wr_strn(&w, (const char *)mid.p, mid.len, flex);
			sk_wr_strn(&w, (const char *)iid.p, iid.len, flex);
			sk_wr_i16(&w, (int16_t)mec);
			sk_wr_tags(&w, flex);
		}
	}
	sk_wr_tags(&w, flex);
	sk_resp_finish(req->resp);
	sk_groups_flush(gs);
	return 0;
}

static void describe_one(struct sk_wr *w, struct sk_groups *gs,
			 struct sk_str id, int16_t v, bool flex,
			 bool include_ops)
{
	enum sk_kerr ec = sk_group_id_check(id);
	struct sk_group *g = NULL;
	bool stable;

	if (!ec)
		g = sk_groups_find(gs, (const char *)id.p, (size_t)id.len);
	sk_wr_i16(w, (int16_t)ec);
	sk_wr_strn(w, (const char *)id.p, id.len, flex);
	if (!g) {
		/* Kafka describes an unknown group as Dead, without error. */
		sk_wr_str(w, ec ? "" : "Dead", flex);
		sk_wr_str(w, "", flex);
		sk_wr_str(w, "", flex);
		sk_wr_array(w, 0, flex);
	} else {
		stable = g->state == SK_GROUP_STABLE;
		sk_wr_str(w, sk_group_state_name(g->state), flex);
		sk_wr_str(w, g->protocol_type ? g->protocol_type : "", flex);
		/* Kafka names the protocol, with metadata, only when Stable. */
		sk_wr_str(w, stable && g->protocol ? g->protocol : "", flex);
		sk_wr_array(w, g->n_members, flex);
		for (struct sk_list *it = g->member_list.next;
		     it != &g->member_list; it = it->next) {
			struct sk_member *m =
				sk_container_of(it, struct sk_member, link);
			const struct sk_group_proto *p =
				stable ? sk_member_proto(m, g->protocol) : NULL;

			sk_wr_str(w, m->id, flex);
			if (v >= 4)
				sk_wr_str(w, m->instance_id, flex);
			sk_wr_str(w, m->client_id, flex);
			sk_wr_str(w, m->client_host, flex);
			sk_wr_bytes(w, p ? (const void *)p->meta : "",
				    p ? p->len : 0, flex);
			sk_wr_bytes(w,
				    stable && m->assignment
					    ? (const void *)m->assignment
					    : "",
				    stable ? m->assignment_len : 0, flex);
			sk_wr_tags(w, flex);
		}
	}
	if (v >= 3)
		sk_wr_i32(w, include_ops ? GROUP_AUTHORIZED_OPS : INT32_MIN);
	sk_wr_tags(w, flex);
}

int sk_kafka_describe_groups(struct sk_req *req)
{
	struct sk_rd *r = &req->rd, first;
	bool flex = req->flexible;
	int16_t v = req->api_version;
	struct sk_wr w = sk_resp_writer(req->resp);
	bool include_ops = false;
	int32_t n;

	n = sk_rd_array(r, flex, flex ? 1 : 2);
	first = *r;
	for (int32_t i = 0; i < n && sk_rd_ok(r); i++)
		sk_rd_str(r, flex);
	if (v >= 3)
		include_ops = sk_rd_i8(r) != 0;
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r) || n < 0)
		return -EPROTO;

	if (v >= 1)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_array(&w, n, flex);
	for (int32_t i = 0; i < n; i++)
		describe_one(&w, req->b->groups, sk_rd_str(&first, flex), v,
			     flex, include_ops);
	sk_wr_tags(&w, flex);
	sk_resp_finish(req->resp);
	return 0;
}

int sk_kafka_list_groups(struct sk_req *req)
{
	struct sk_groups *gs = req->b->groups;
	struct sk_rd *r = &req->rd;
	bool flex = req->flexible;
	int16_t v = req->api_version;
	struct sk_wr w = sk_resp_writer(req->resp);

	if (v >= 4) {
		/* states_filter: not advertised yet; read and ignore */
		int32_t n = sk_rd_array(r, flex, 1);
		for (int32_t i = 0; i < n && sk_rd_ok(r); i++)
			sk_rd_str(r, flex);
	}
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r))
		return -EPROTO;
	if (v >= 1)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_i16(&w, SK_KERR_NONE);
	sk_wr_array(&w, (int32_t)gs->map.count, flex);
	for (struct sk_hnode *n = sk_hmap_first(&gs->map); n;
	     n = sk_hmap_next(&gs->map, n)) {
		struct sk_group *g = sk_container_of(n, struct sk_group, node);

		sk_wr_str(&w, g->id, flex);
		sk_wr_str(&w, g->protocol_type ? g->protocol_type : "", flex);
		if (v >= 4)
			sk_wr_str(&w, sk_group_state_name(g->state), flex);
		sk_wr_tags(&w, flex);
	}
	sk_wr_tags(&w, flex);
	sk_resp_finish(req->resp);
	return 0;
}

int sk_kafka_delete_groups(struct sk_req *req)
{
	struct sk_groups *gs = req->b->groups;
	struct sk_rd *r = &req->rd, first;
	bool flex = req->flexible;
	struct sk_wr w = sk_resp_writer(req->resp);
	size_t *pos = NULL, n_pos = 0;
	int32_t n;

	n = sk_rd_array(r, flex, flex ? 1 : 2);
	first = *r;
	for (int32_t i = 0; i < n && sk_rd_ok(r); i++)
		sk_rd_str(r, flex);
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r) || n < 0)
		return -EPROTO;

	if (n > 0)
		pos = sk_xmalloc((size_t)n * sizeof(*pos));
	sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_array(&w, n, flex);
	for (int32_t i = 0; i < n; i++) {
		struct sk_str id = sk_rd_str(&first, flex);
		enum sk_kerr ec = sk_group_delete(gs, id);

		sk_wr_strn(&w, (const char *)id.p, id.len, flex);
		if (!ec)
			pos[n_pos++] = req->resp->buf.len;
		sk_wr_i16(&w, (int16_t)ec);
		sk_wr_tags(&w, flex);
	}
	sk_wr_tags(&w, flex);
	/* Answered once the deletion of the offsets is on disk. */
	sk_groups_answer_durable(gs, req->resp, pos, n_pos,
				 SK_KERR_KAFKA_STORAGE_ERROR);
	free(pos);
	return 0;
}
