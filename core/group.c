/*
 * The classic group coordinator: state machine, timers, held JoinGroup
 * and SyncGroup responses, and each group's committed offsets in memory.
 * See group.h for the states and the costs.
 *
 * The rules follow Kafka's GroupCoordinator (protocol vote, leader
 * choice, KIP-394 pending members, KIP-345 static members, sync
 * deadline) so that every client sees the errors it was written for.
 * Where Kafka could not tell that a client went away (its sockets are
 * muted while a JoinGroup waits) we can: a held JoinGroup whose
 * connection closes no longer counts as joined, so a rebalance does not
 * wait the full rebalance timeout for a process that was killed.
 *
 * Re-entrancy: answering a held response runs its connection, which may
 * dispatch that client's next request straight into this file. So state
 * changes never answer anything directly: answers are written into their
 * slots and queued on gs->ready, and flush() sends them once the change
 * is complete (every entry point ends with it). A queued answer whose
 * connection closes is simply dropped.
 */
#include "group.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "broker.h"
#include "kafka.h"
#include "say.h"

/* Supporting members of one protocol name, for the vote. */
struct proto_count {
	struct sk_hnode node;
	char *name;
	int32_t n;
	uint64_t stamp; /* last counting pass that saw it (duplicates) */
};

/* A KIP-394 member id handed out with MEMBER_ID_REQUIRED. */
struct pending_member {
	struct sk_hnode node;
	struct sk_group *g;
	char *id;
	ev_timer timer; /* session timeout: forget it */
};

/* A topic the current "consumer" generation subscribes to. */
struct topic_name {
	struct sk_hnode node;
	char *name;
};

/* An answer written and waiting for flush(). */
struct ready_resp {
	struct sk_list link; /* in ready_list */
	struct sk_resp *resp;
	struct sk_groups *gs;
};

/*
 * Answers to send, per coordinator. A list head cannot live in struct
 * sk_groups without widening the header for a private detail, so it is
 * kept with a flag in this companion struct at the start of the
 * allocation (see sk_groups_open).
 */
struct groups_priv {
	struct sk_groups pub;
	struct sk_list ready;
	bool flushing;
};

static struct groups_priv *priv(struct sk_groups *gs)
{
	return sk_container_of(gs, struct groups_priv, pub);
}

/* clang-format off */
static const char *const state_names[] = {
	[SK_GROUP_EMPTY] = "Empty",
	[SK_GROUP_PREPARING] = "PreparingRebalance",
	[SK_GROUP_COMPLETING] = "CompletingRebalance",
	[SK_GROUP_STABLE] = "Stable",
	[SK_GROUP_DEAD] = "Dead",
};
/* clang-format on */

const char *sk_group_state_name(enum sk_group_state s)
{
	return state_names[s];
}

static const struct sk_config *cfg(const struct sk_groups *gs)
{
	return &gs->b->cfg;
}

static void group_free(struct sk_group *g);
static void maybe_forget(struct sk_group *g);
static void try_complete_join(struct sk_group *g);
static void prepare_rebalance(struct sk_group *g, const char *why);

/* --- answers ------------------------------------------------------ */

static void ready_cancel(struct sk_resp *resp)
{
	struct ready_resp *rr = resp->pending;

	sk_list_del(&rr->link);
	free(rr);
	sk_resp_drop(resp);
}

/* Queue a written answer for flush(). */
static void ready(struct sk_groups *gs, struct sk_resp *resp)
{
	struct ready_resp *rr = sk_xcalloc(1, sizeof(*rr));

	rr->resp = resp;
	rr->gs = gs;
	sk_list_add_tail(&priv(gs)->ready, &rr->link);
	sk_resp_set_pending(resp, ready_cancel, rr);
}

/* Send every queued answer; answers queued meanwhile go too. */
static void flush(struct sk_groups *gs)
{
	struct groups_priv *p = priv(gs);

	if (p->flushing)
		return; /* the outer flush picks them up */
	p->flushing = true;
	while (!sk_list_empty(&p->ready)) {
		struct ready_resp *rr =
			sk_list_first(&p->ready, struct ready_resp, link);
		struct sk_resp *resp = rr->resp;

		sk_list_del(&rr->link);
		free(rr);
		sk_resp_finish(resp);
	}
	p->flushing = false;
}

/*
 * JoinGroup response body, v0-5 (flexible encoding from v6 is written
 * too, for when the range grows). members: the group whose member list
 * the leader gets, or NULL.
 */
static void join_write(struct sk_resp *resp, int16_t v, enum sk_kerr ec,
		       int32_t generation, const char *protocol,
		       const char *leader, const char *member_id,
		       const struct sk_group *members)
{
	bool flex = v >= 6;
	struct sk_wr w = sk_resp_writer(resp);

	if (v >= 2)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_i16(&w, (int16_t)ec);
	sk_wr_i32(&w, generation);
	if (v >= 7)
		sk_wr_str(&w, members ? members->protocol_type : NULL, flex);
	sk_wr_str(&w, protocol ? protocol : "", flex);
	sk_wr_str(&w, leader ? leader : "", flex);
	sk_wr_str(&w, member_id, flex);
	if (!members) {
		sk_wr_array(&w, 0, flex);
	} else {
		sk_wr_array(&w, members->n_members, flex);
		for (struct sk_list *it = members->member_list.next;
		     it != &members->member_list; it = it->next) {
			struct sk_member *m =
				sk_container_of(it, struct sk_member, link);
			const struct sk_group_proto *p =
				sk_member_proto(m, members->protocol);

			sk_wr_str(&w, m->id, flex);
			if (v >= 5)
				sk_wr_str(&w, m->instance_id, flex);
			sk_wr_bytes(&w, p ? (const void *)p->meta : "",
				    p ? p->len : 0, flex);
			sk_wr_tags(&w, flex);
		}
	}
	sk_wr_tags(&w, flex);
}

/* An error answer to a JoinGroup that is not (or no longer) held. */
static void join_error(struct sk_groups *gs, struct sk_resp *resp, int16_t v,
		       enum sk_kerr ec, const char *member_id)
{
	join_write(resp, v, ec, -1, NULL, NULL, member_id, NULL);
	ready(gs, resp);
}

static void sync_write(struct sk_groups *gs, struct sk_resp *resp, int16_t v,
		       enum sk_kerr ec, const uint8_t *assignment, int32_t len)
{
	bool flex = v >= 4;
	struct sk_wr w = sk_resp_writer(resp);

	if (v >= 1)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_i16(&w, (int16_t)ec);
	if (v >= 5) {
		sk_wr_str(&w, NULL, flex); /* protocol_type */
		sk_wr_str(&w, NULL, flex); /* protocol_name */
	}
	sk_wr_bytes(&w, assignment ? (const void *)assignment : "",
		    assignment ? len : 0, flex);
	sk_wr_tags(&w, flex);
	ready(gs, resp);
}

/*
 * Answer m's held JoinGroup: the current generation on NONE (with the
 * member list for the leader when members is set), else the error.
 */
static void member_join_answer(struct sk_member *m, enum sk_kerr ec,
			       bool members)
{
	struct sk_group *g = m->g;
	struct sk_resp *resp = m->join_resp;

	if (!resp)
		return;
	m->join_resp = NULL;
	g->n_awaiting_join--;
	m->last_seen = sk_mono_ms();
	if (ec) {
		join_write(resp, m->join_version, ec, -1, NULL, NULL,
			   ec == SK_KERR_UNKNOWN_MEMBER_ID ? "" : m->id, NULL);
	} else {
		join_write(resp, m->join_version, SK_KERR_NONE, g->generation,
			   g->protocol, g->leader ? g->leader->id : "", m->id,
			   members && m == g->leader ? g : NULL);
	}
	ready(g->gs, resp);
}

static void member_sync_answer(struct sk_member *m, enum sk_kerr ec)
{
	struct sk_resp *resp = m->sync_resp;

	if (!resp)
		return;
	m->sync_resp = NULL;
	m->last_seen = sk_mono_ms();
	if (ec)
		sync_write(m->g->gs, resp, m->sync_version, ec, NULL, 0);
	else
		sync_write(m->g->gs, resp, m->sync_version, SK_KERR_NONE,
			   m->assignment, m->assignment_len);
}

/* --- lookups ------------------------------------------------------ */

enum sk_kerr sk_group_id_check(struct sk_str id)
{
	if (id.len <= 0 || id.len > SK_GROUP_ID_MAX)
		return SK_KERR_INVALID_GROUP_ID;
	return SK_KERR_NONE;
}

struct sk_group *sk_groups_find(const struct sk_groups *gs, const char *id,
				size_t len)
{
	struct sk_hnode *n = sk_hmap_find(&gs->map, id, len);

	return n ? sk_container_of(n, struct sk_group, node) : NULL;
}

struct sk_member *sk_group_member(const struct sk_group *g, const char *id,
				  size_t len)
{
	struct sk_hnode *n = sk_hmap_find(&g->members, id, len);

	return n ? sk_container_of(n, struct sk_member, node) : NULL;
}

static struct sk_member *static_member(const struct sk_group *g,
				       struct sk_str instance_id)
{
	struct sk_hnode *n = sk_hmap_find(&g->statics, instance_id.p,
					  (size_t)instance_id.len);

	return n ? sk_container_of(n, struct sk_member, inode) : NULL;
}

static struct pending_member *pending_find(const struct sk_group *g,
					   struct sk_str id)
{
	struct sk_hnode *n = sk_hmap_find(&g->pending, id.p, (size_t)id.len);

	return n ? sk_container_of(n, struct pending_member, node) : NULL;
}

const struct sk_group_proto *sk_member_proto(const struct sk_member *m,
					     const char *name)
{
	if (!name)
		return NULL;
	for (int32_t i = 0; i < m->n_protos; i++)
		if (strcmp(m->protos[i].name, name) == 0)
			return &m->protos[i];
	return NULL;
}

static bool str_is(struct sk_str s, const char *c)
{
	return c && s.len >= 0 && strlen(c) == (size_t)s.len &&
	       memcmp(s.p, c, (size_t)s.len) == 0;
}

/* --- groups ------------------------------------------------------- */

static void set_state(struct sk_group *g, enum sk_group_state s)
{
	g->state = s;
	g->state_ms = sk_now_ms();
}

static void on_group_timer(struct ev_loop *loop, ev_timer *w, int revents);

static struct sk_group *group_new(struct sk_groups *gs, const char *id,
				  size_t len)
{
	struct sk_group *g = sk_xcalloc(1, sizeof(*g));

	g->gs = gs;
	g->id = sk_xstrndup(id, len);
	g->id_len = len;
	set_state(g, SK_GROUP_EMPTY);
	sk_list_init(&g->member_list);
	sk_hmap_init(&g->members);
	sk_hmap_init(&g->statics);
	sk_hmap_init(&g->pending);
	sk_hmap_init(&g->protos);
	sk_hmap_init(&g->subscribed);
	sk_hmap_init(&g->offsets);
	ev_init(&g->timer, on_group_timer);
	sk_hmap_insert(&gs->map, &g->node, g->id, len);
	return g;
}

static void arm_group_timer(struct sk_group *g, int64_t ms)
{
	ev_timer_stop(g->gs->loop, &g->timer);
	ev_timer_set(&g->timer, (double)SK_MAX(ms, 0) / 1000.0, 0.0);
	ev_timer_start(g->gs->loop, &g->timer);
}

/* Kafka: the largest rebalance timeout of any member. */
static int32_t rebalance_timeout(const struct sk_group *g)
{
	int32_t t = 0;

	for (struct sk_list *it = g->member_list.next; it != &g->member_list;
	     it = it->next)
		t = SK_MAX(t, sk_container_of(it, struct sk_member, link)
				      ->rebalance_ms);
	return t;
}

/*
 * Add delta to the count of every protocol m supports. A name listed
 * twice by one member counts once, or a lone member listing "range"
 * twice would look like two supporters.
 */
static void protos_count(struct sk_group *g, const struct sk_member *m,
			 int delta)
{
	uint64_t stamp = ++g->proto_stamp;

	for (int32_t i = 0; i < m->n_protos; i++) {
		const char *name = m->protos[i].name;
		struct sk_hnode *n =
			sk_hmap_find(&g->protos, name, strlen(name));
		struct proto_count *pc;

		if (!n) {
			pc = sk_xcalloc(1, sizeof(*pc));
			pc->name = sk_xstrdup(name);
			sk_hmap_insert(&g->protos, &pc->node, pc->name,
				       strlen(pc->name));
		} else {
			pc = sk_container_of(n, struct proto_count, node);
			if (pc->stamp == stamp)
				continue;
		}
		pc->stamp = stamp;
		pc->n += delta;
		if (pc->n <= 0) {
			sk_hmap_remove(&g->protos, &pc->node);
			free(pc->name);
			free(pc);
		}
	}
}

static int32_t proto_support(const struct sk_group *g, const char *name)
{
	struct sk_hnode *n = sk_hmap_find(&g->protos, name, strlen(name));

	return n ? sk_container_of(n, struct proto_count, node)->n : 0;
}

/*
 * Kafka's supportsProtocols: an empty group takes any non-empty protocol
 * type and list; otherwise the type must match and at least one of the
 * member's protocols must be supported by every current member.
 */
static bool supports_protocols(const struct sk_group *g, struct sk_str type,
			       const struct sk_group_proto *protos,
			       int32_t n_protos)
{
	if (g->n_members == 0)
		return type.len > 0 && n_protos > 0;
	if (!str_is(type, g->protocol_type))
		return false;
	for (int32_t i = 0; i < n_protos; i++)
		if (proto_support(g, protos[i].name) == g->n_members)
			return true;
	return false;
}

/*
 * The protocol vote: candidates are the protocols every member supports;
 * each member votes for the first candidate in its own list; most votes
 * wins (ties: the one whose first vote came earliest, for determinism).
 * O(members x protocols per member).
 */
static const char *select_protocol(const struct sk_group *g)
{
	struct {
		const char *name;
		int32_t votes;
	} *tally = NULL;
	size_t n_tally = 0, cap = 0, best = 0;
	const char *winner = NULL;

	for (struct sk_list *it = g->member_list.next; it != &g->member_list;
	     it = it->next) {
		struct sk_member *m =
			sk_container_of(it, struct sk_member, link);
		const char *vote = NULL;
		size_t k;

		for (int32_t i = 0; i < m->n_protos && !vote; i++)
			if (proto_support(g, m->protos[i].name) == g->n_members)
				vote = m->protos[i].name;
		if (!vote)
			continue;
		for (k = 0; k < n_tally; k++)
			if (strcmp(tally[k].name, vote) == 0)
				break;
		if (k == n_tally) {
			if (n_tally == cap) {
				cap = cap ? cap * 2 : 4;
				tally = sk_xrealloc(tally,
						    cap * sizeof(*tally));
			}
			tally[n_tally].name = vote;
			tally[n_tally].votes = 0;
			n_tally++;
		}
		tally[k].votes++;
	}
	for (size_t k = 0; k < n_tally; k++)
		if (!winner || tally[k].votes > tally[best].votes) {
			winner = tally[k].name;
			best = k;
		}
	free(tally);
	return winner;
}

static void subscribed_clear(struct sk_group *g)
{
	struct sk_hnode *n = sk_hmap_first(&g->subscribed);

	while (n) {
		struct sk_hnode *next = sk_hmap_next(&g->subscribed, n);
		struct topic_name *t =
			sk_container_of(n, struct topic_name, node);

		sk_hmap_remove(&g->subscribed, n);
		free(t->name);
		free(t);
		n = next;
	}
	g->subscribed_known = false;
}

/*
 * The topics of a "consumer" generation, from each member's
 * ConsumerProtocolSubscription (version, then the topic names; every
 * version starts that way). Used by retention and OffsetDelete.
 */
static void compute_subscribed(struct sk_group *g)
{
	subscribed_clear(g);
	if (!g->protocol_type || strcmp(g->protocol_type, "consumer") != 0)
		return;
	for (struct sk_list *it = g->member_list.next; it != &g->member_list;
	     it = it->next) {
		struct sk_member *m =
			sk_container_of(it, struct sk_member, link);
		const struct sk_group_proto *p =
			sk_member_proto(m, g->protocol);
		struct sk_rd r;
		int32_t n;

		if (!p)
			return;
		sk_rd_init(&r, p->meta, (size_t)p->len);
		if (sk_rd_i16(&r) < 0)
			return;
		n = sk_rd_array(&r, false, 2);
		for (int32_t i = 0; i < n && sk_rd_ok(&r); i++) {
			struct sk_str t = sk_rd_string(&r);
			struct topic_name *tn;

			if (!sk_rd_ok(&r) || t.len <= 0)
				break;
			if (sk_hmap_find(&g->subscribed, t.p, (size_t)t.len))
				continue;
			tn = sk_xcalloc(1, sizeof(*tn));
			tn->name = sk_str_dup(t);
			sk_hmap_insert(&g->subscribed, &tn->node, tn->name,
				       (size_t)t.len);
		}
		if (!sk_rd_ok(&r)) {
			subscribed_clear(g);
			return;
		}
	}
	g->subscribed_known = true;
}

bool sk_group_subscribed(const struct sk_group *g, const char *topic,
			 size_t tlen)
{
	return g->subscribed_known &&
	       sk_hmap_find(&g->subscribed, topic, tlen) != NULL;
}

/* --- members ------------------------------------------------------ */

static void on_session_timer(struct ev_loop *loop, ev_timer *w, int revents);

static void protos_free(struct sk_group_proto *p, int32_t n)
{
	for (int32_t i = 0; i < n; i++) {
		free(p[i].name);
		free(p[i].meta);
	}
	free(p);
}

/* Kafka's generateMemberId: "<client id or instance id>-<uuid4>". */
static char *member_id_new(const char *prefix)
{
	uint8_t u[16];

	if (getrandom(u, sizeof(u), 0) != (ssize_t)sizeof(u)) {
		uint64_t t = (uint64_t)sk_mono_ms() * 6364136223846793005ULL +
			     (uint64_t)(uintptr_t)u;
		for (size_t i = 0; i < sizeof(u); i++)
			u[i] = (uint8_t)(t >> (i % 8 * 8)) ^ (uint8_t)(i * 97);
	}
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	return sk_xasprintf("%s-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
			    "%02x%02x%02x%02x%02x%02x",
			    prefix, u[0], u[1], u[2], u[3], u[4], u[5], u[6],
			    u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
			    u[15]);
}

/* "/1.2.3.4" from "1.2.3.4:5678", "/::1" from "[::1]:5678". */
static char *client_host(const struct sk_req *req)
{
	const char *peer = sk_conn_peer(req->conn);
	const char *colon = strrchr(peer, ':');
	size_t len = colon ? (size_t)(colon - peer) : strlen(peer);

	if (peer[0] == '[' && len >= 2)
		return sk_xasprintf("/%.*s", (int)(len - 2), peer + 1);
	return sk_xasprintf("/%.*s", (int)len, peer);
}

static void join_cancel(struct sk_resp *resp);

/* Hold req's response as m's JoinGroup. */
static void member_hold_join(struct sk_member *m, struct sk_req *req)
{
	if (m->join_resp) /* a retry on another connection replaces it */
		member_join_answer(m, SK_KERR_REBALANCE_IN_PROGRESS, false);
	m->join_resp = req->resp;
	m->join_version = req->api_version;
	m->g->n_awaiting_join++;
	sk_resp_set_pending(req->resp, join_cancel, m);
}

static void member_set_protos(struct sk_member *m, struct sk_join_args *a)
{
	struct sk_group *g = m->g;

	protos_count(g, m, -1);
	protos_free(m->protos, m->n_protos);
	m->protos = a->protos;
	m->n_protos = a->n_protos;
	a->protos = NULL;
	a->n_protos = 0;
	protos_count(g, m, +1);
}

static bool member_matches(const struct sk_member *m,
			   const struct sk_join_args *a)
{
	if (m->n_protos != a->n_protos)
		return false;
	for (int32_t i = 0; i < a->n_protos; i++)
		if (strcmp(m->protos[i].name, a->protos[i].name) != 0 ||
		    m->protos[i].len != a->protos[i].len ||
		    memcmp(m->protos[i].meta, a->protos[i].meta,
			   (size_t)a->protos[i].len) != 0)
			return false;
	return true;
}

static void pending_remove(struct pending_member *pm)
{
	struct sk_group *g = pm->g;

	ev_timer_stop(g->gs->loop, &pm->timer);
	sk_hmap_remove(&g->pending, &pm->node);
	free(pm->id);
	free(pm);
}

/* Kafka's group.add: a new member, its join held. */
static struct sk_member *member_add(struct sk_group *g, char *id,
				    struct sk_req *req, struct sk_join_args *a)
{
	struct sk_member *m = sk_xcalloc(1, sizeof(*m));
	struct pending_member *pm;

	m->g = g;
	m->id = id;
	if (a->instance_id.p)
		m->instance_id = sk_str_dup(a->instance_id);
	m->client_id = sk_str_dup(req->client_id);
	m->client_host = client_host(req);
	m->session_ms = a->session_ms;
	m->rebalance_ms = a->rebalance_ms;
	m->is_new = true;
	m->last_seen = sk_mono_ms();
	if (g->n_members == 0) {
		free(g->protocol_type);
		g->protocol_type = sk_str_dup(a->protocol_type);
	}
	sk_hmap_insert(&g->members, &m->node, m->id, strlen(m->id));
	if (m->instance_id)
		sk_hmap_insert(&g->statics, &m->inode, m->instance_id,
			       strlen(m->instance_id));
	sk_list_add_tail(&g->member_list, &m->link);
	g->n_members++;
	if (!g->leader)
		g->leader = m;
	member_set_protos(m, a);
	member_hold_join(m, req);
	pm = pending_find(g, (struct sk_str){ (const uint8_t *)m->id,
					      (int32_t)strlen(m->id) });
	if (pm)
		pending_remove(pm);
	ev_init(&m->session, on_session_timer);
	ev_timer_set(&m->session, (double)m->session_ms / 1000.0, 0.0);
	ev_timer_start(g->gs->loop, &m->session);
	return m;
}

/*
 * Kafka's group.remove: unlink and free m. A held JoinGroup is answered
 * UNKNOWN_MEMBER_ID (so a live client rejoins afresh), as is a held
 * SyncGroup.
 */
static void member_remove(struct sk_member *m)
{
	struct sk_group *g = m->g;

	member_join_answer(m, SK_KERR_UNKNOWN_MEMBER_ID, false);
	member_sync_answer(m, SK_KERR_UNKNOWN_MEMBER_ID);
	protos_count(g, m, -1);
	sk_hmap_remove(&g->members, &m->node);
	if (m->instance_id)
		sk_hmap_remove(&g->statics, &m->inode);
	sk_list_del(&m->link);
	g->n_members--;
	if (m->pending_sync)
		g->n_pending_sync--;
	if (g->leader == m)
		g->leader = sk_list_empty(&g->member_list)
				    ? NULL
				    : sk_list_first(&g->member_list,
						    struct sk_member, link);
	ev_timer_stop(g->gs->loop, &m->session);
	protos_free(m->protos, m->n_protos);
	free(m->id);
	free(m->instance_id);
	free(m->client_id);
	free(m->client_host);
	free(m->assignment);
	free(m);
}

static bool can_rebalance(const struct sk_group *g)
{
	return g->state == SK_GROUP_STABLE || g->state == SK_GROUP_COMPLETING ||
	       g->state == SK_GROUP_EMPTY;
}

static void maybe_prepare_rebalance(struct sk_group *g, const char *why)
{
	if (can_rebalance(g))
		prepare_rebalance(g, why);
}

/* Kafka's removeMemberAndUpdateGroup. */
static void member_remove_and_update(struct sk_member *m, const char *why)
{
	struct sk_group *g = m->g;

	member_remove(m);
	switch (g->state) {
	case SK_GROUP_STABLE:
	case SK_GROUP_COMPLETING:
		maybe_prepare_rebalance(g, why);
		break;
	case SK_GROUP_PREPARING:
		try_complete_join(g);
		break;
	default:
		break;
	}
}

static void join_cancel(struct sk_resp *resp)
{
	struct sk_member *m = resp->pending;
	struct sk_group *g = m->g;
	struct sk_groups *gs = g->gs;

	m->join_resp = NULL;
	g->n_awaiting_join--;
	sk_resp_drop(resp);
	/*
	 * Its client cannot see this rebalance's answer any more. A member
	 * that was not in a generation yet is gone with it; an older one
	 * no longer counts as rejoined (it is dropped when the join
	 * completes unless it rejoins first).
	 */
	if (m->is_new && !m->instance_id)
		member_remove(m);
	if (g->state == SK_GROUP_PREPARING)
		try_complete_join(g);
	flush(gs);
}

static void sync_cancel(struct sk_resp *resp)
{
	struct sk_member *m = resp->pending;

	m->sync_resp = NULL;
	sk_resp_drop(resp);
}

/* Sign of life: answer the session timer lazily (see group.h). */
static void member_touch(struct sk_member *m)
{
	m->last_seen = sk_mono_ms();
}

static void on_session_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sk_member *m = sk_container_of(w, struct sk_member, session);
	struct sk_groups *gs = m->g->gs;
	int64_t left;

	(void)revents;
	/* A member waiting for a held answer cannot heartbeat. */
	if (m->join_resp || m->sync_resp)
		m->last_seen = sk_mono_ms();
	left = m->last_seen + m->session_ms - sk_mono_ms();
	if (left > 0) {
		ev_timer_set(w, (double)left / 1000.0, 0.0);
		ev_timer_start(loop, w);
		return;
	}
	sk_info("group %s: member %s timed out after %d ms (session "
		"timeout); removing it",
		m->g->id, m->id, m->session_ms);
	member_remove_and_update(m, "session timeout");
	flush(gs);
}

static void on_pending_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pending_member *pm =
		sk_container_of(w, struct pending_member, timer);
	struct sk_group *g = pm->g;

	(void)loop;
	(void)revents;
	pending_remove(pm);
	if (g->state == SK_GROUP_PREPARING)
		try_complete_join(g);
	flush(g->gs);
}

static void pending_add(struct sk_group *g, char *id, int32_t session_ms)
{
	struct pending_member *pm = sk_xcalloc(1, sizeof(*pm));

	pm->g = g;
	pm->id = id;
	sk_hmap_insert(&g->pending, &pm->node, pm->id, strlen(pm->id));
	ev_timer_init(&pm->timer, on_pending_timer, (double)session_ms / 1000.0,
		      0.0);
	ev_timer_start(g->gs->loop, &pm->timer);
}

/* --- rebalancing -------------------------------------------------- */

/* Kafka's prepareRebalance. */
static void prepare_rebalance(struct sk_group *g, const char *why)
{
	int32_t timeout = rebalance_timeout(g);

	sk_info("group %s: preparing to rebalance (generation %d, %d "
		"members): %s",
		g->id, g->generation, g->n_members, why);
	/* Followers waiting for the assignment must rejoin instead. */
	if (g->state == SK_GROUP_COMPLETING)
		for (struct sk_list *it = g->member_list.next;
		     it != &g->member_list; it = it->next) {
			struct sk_member *m =
				sk_container_of(it, struct sk_member, link);

			free(m->assignment);
			m->assignment = NULL;
			m->assignment_len = 0;
			member_sync_answer(m, SK_KERR_REBALANCE_IN_PROGRESS);
		}
	/* The SyncGroup deadline of the old generation is void. */
	for (struct sk_list *it = g->member_list.next; it != &g->member_list;
	     it = it->next)
		sk_container_of(it, struct sk_member, link)->pending_sync =
			false;
	g->n_pending_sync = 0;
	g->new_member_added = false;
	if (g->state == SK_GROUP_EMPTY) {
		int32_t delay = cfg(g->gs)->group_initial_rebalance_delay_ms;

		g->initial_delay = true;
		g->initial_left_ms = SK_MAX(timeout - delay, 0);
		arm_group_timer(g, delay);
	} else {
		g->initial_delay = false;
		arm_group_timer(g, timeout);
	}
	set_state(g, SK_GROUP_PREPARING);
	try_complete_join(g);
}

/*
 * Kafka's onCompleteJoin: drop dynamic members that did not rejoin,
 * bump the generation, vote the protocol, answer every held JoinGroup
 * (the leader gets the member list) and start the SyncGroup deadline.
 */
static void complete_join(struct sk_group *g)
{
	bool any_joined = false;
	const char *winner;

	ev_timer_stop(g->gs->loop, &g->timer);
	for (struct sk_list *it = g->member_list.next; it != &g->member_list;) {
		struct sk_member *m =
			sk_container_of(it, struct sk_member, link);

		it = it->next;
		if (m->join_resp)
			any_joined = true;
		else if (!m->instance_id)
			member_remove(m);
	}
	if (g->n_members > 0 && !any_joined) {
		/* Only static members that did not rejoin: wait again. */
		g->initial_delay = false;
		arm_group_timer(g, rebalance_timeout(g));
		return;
	}
	if (g->leader && !g->leader->join_resp) {
		for (struct sk_list *it = g->member_list.next;
		     it != &g->member_list; it = it->next) {
			struct sk_member *m =
				sk_container_of(it, struct sk_member, link);
			if (m->join_resp) {
				g->leader = m;
				break;
			}
		}
	}
	g->generation++;
	free(g->protocol);
	g->protocol = NULL;
	if (g->n_members == 0) {
		subscribed_clear(g);
		set_state(g, SK_GROUP_EMPTY);
		sk_info("group %s: generation %d is empty", g->id,
			g->generation);
		return;
	}
	/*
	 * The join checks make a winner certain; the leader's first choice
	 * is only a fallback against a NULL here.
	 */
	winner = select_protocol(g);
	g->protocol = sk_xstrdup(winner ? winner : g->leader->protos[0].name);
	compute_subscribed(g);
	set_state(g, SK_GROUP_COMPLETING);
	sk_info("group %s: generation %d with %d members, protocol %s, "
		"leader %s",
		g->id, g->generation, g->n_members, g->protocol, g->leader->id);
	for (struct sk_list *it = g->member_list.next; it != &g->member_list;
	     it = it->next) {
		struct sk_member *m =
			sk_container_of(it, struct sk_member, link);

		member_join_answer(m, SK_KERR_NONE, true);
		member_touch(m);
		m->is_new = false;
		m->pending_sync = true;
	}
	g->n_pending_sync = g->n_members;
	arm_group_timer(g, rebalance_timeout(g));
}

/* Kafka's DelayedJoin.tryComplete (the initial delay never ends early). */
static void try_complete_join(struct sk_group *g)
{
	if (g->state != SK_GROUP_PREPARING || g->initial_delay)
		return;
	if (g->n_awaiting_join == g->n_members && g->pending.count == 0)
		complete_join(g);
}

static void on_group_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sk_group *g = sk_container_of(w, struct sk_group, timer);
	struct sk_groups *gs = g->gs;

	(void)loop;
	(void)revents;
	switch (g->state) {
	case SK_GROUP_PREPARING:
		if (g->initial_delay && g->new_member_added &&
		    g->initial_left_ms > 0) {
			/* More members came: wait another delay. */
			int32_t delay = SK_MIN(
				cfg(gs)->group_initial_rebalance_delay_ms,
				(int32_t)g->initial_left_ms);

			g->new_member_added = false;
			g->initial_left_ms -= delay;
			arm_group_timer(g, delay);
			break;
		}
		g->initial_delay = false;
		complete_join(g);
		break;
	case SK_GROUP_COMPLETING:
	case SK_GROUP_STABLE: {
		/* Members that never sent their SyncGroup are gone. */
		bool removed = false;

		for (struct sk_list *it = g->member_list.next;
		     it != &g->member_list;) {
			struct sk_member *m =
				sk_container_of(it, struct sk_member, link);

			it = it->next;
			if (m->pending_sync) {
				sk_info("group %s: member %s sent no "
					"SyncGroup within the rebalance "
					"timeout; removing it",
					g->id, m->id);
				member_remove(m);
				removed = true;
			}
		}
		if (removed)
			maybe_prepare_rebalance(g, "members missed SyncGroup");
		break;
	}
	default:
		break;
	}
	flush(gs);
}

/* --- JoinGroup ---------------------------------------------------- */

/* Kafka's acceptJoiningMember (group.max.size). */
static bool accept_member(const struct sk_group *g, struct sk_member *m)
{
	int32_t max = cfg(g->gs)->group_max_size;

	switch (g->state) {
	case SK_GROUP_EMPTY:
	case SK_GROUP_DEAD:
		return true;
	case SK_GROUP_PREPARING:
		return (m && m->join_resp) || g->n_awaiting_join < max;
	default:
		return m || g->n_members < max;
	}
}

/*
 * Kafka's validateCurrentMember: a given instance id must map to this
 * member id (else FENCED_INSTANCE_ID), and the member must exist.
 */
static enum sk_kerr validate_member(const struct sk_group *g,
				    struct sk_str member_id,
				    struct sk_str instance_id,
				    struct sk_member **out)
{
	struct sk_member *m;

	*out = NULL;
	if (instance_id.p) {
		m = static_member(g, instance_id);
		if (!m)
			return SK_KERR_UNKNOWN_MEMBER_ID;
		if (!str_is(member_id, m->id))
			return SK_KERR_FENCED_INSTANCE_ID;
	}
	m = sk_group_member(g, (const char *)member_id.p,
			    (size_t)SK_MAX(member_id.len, 0));
	if (!m)
		return SK_KERR_UNKNOWN_MEMBER_ID;
	*out = m;
	return SK_KERR_NONE;
}

static void add_member_and_rebalance(struct sk_group *g, char *id,
				     struct sk_req *req, struct sk_join_args *a)
{
	if (g->state == SK_GROUP_PREPARING && g->generation == 0)
		g->new_member_added = true;
	member_add(g, id, req, a);
	maybe_prepare_rebalance(g, "a new member joined");
}

static void update_member_and_rebalance(struct sk_member *m, struct sk_req *req,
					struct sk_join_args *a, const char *why)
{
	member_set_protos(m, a);
	m->rebalance_ms = a->rebalance_ms;
	m->session_ms = a->session_ms;
	member_touch(m);
	member_hold_join(m, req);
	maybe_prepare_rebalance(m->g, why);
}

/*
 * A known group.instance.id with a fresh member id (KIP-345): the new
 * id replaces the old one, whose held requests are fenced. A Stable
 * group whose protocol would not change keeps its assignment and only
 * this member learns its new id.
 */
static void replace_static_member(struct sk_group *g, struct sk_member *m,
				  char *new_id, struct sk_req *req,
				  struct sk_join_args *a)
{
	char *leader = g->leader ? sk_xstrdup(g->leader->id) : NULL;
	const char *next;

	member_join_answer(m, SK_KERR_FENCED_INSTANCE_ID, false);
	member_sync_answer(m, SK_KERR_FENCED_INSTANCE_ID);
	sk_hmap_remove(&g->members, &m->node);
	free(m->id);
	m->id = new_id;
	sk_hmap_insert(&g->members, &m->node, m->id, strlen(m->id));
	free(m->client_id);
	m->client_id = sk_str_dup(req->client_id);
	free(m->client_host);
	m->client_host = client_host(req);
	member_set_protos(m, a);
	m->rebalance_ms = a->rebalance_ms;
	m->session_ms = a->session_ms;
	member_touch(m);
	member_hold_join(m, req);
	switch (g->state) {
	case SK_GROUP_STABLE:
		next = select_protocol(g);
		if (next && g->protocol && strcmp(next, g->protocol) == 0) {
			/*
			 * The old leader id, so that the current leader does
			 * not take itself for a new leader with nothing to
			 * assign (Kafka does the same).
			 */
			struct sk_resp *resp = m->join_resp;

			m->join_resp = NULL;
			g->n_awaiting_join--;
			join_write(resp, m->join_version, SK_KERR_NONE,
				   g->generation, g->protocol, leader, m->id,
				   NULL);
			ready(g->gs, resp);
		} else {
			maybe_prepare_rebalance(g, "a static member rejoined "
						   "with other protocols");
		}
		break;
	case SK_GROUP_COMPLETING:
		prepare_rebalance(g, "a static member rejoined during the "
				     "assignment");
		break;
	default:
		break;
	}
	free(leader);
}

static void join_new_member(struct sk_group *g, struct sk_req *req,
			    struct sk_join_args *a)
{
	struct sk_groups *gs = g->gs;
	char *id;

	if (!supports_protocols(g, a->protocol_type, a->protos, a->n_protos)) {
		join_error(gs, req->resp, req->api_version,
			   SK_KERR_INCONSISTENT_GROUP_PROTOCOL, "");
		return;
	}
	if (a->instance_id.p) {
		struct sk_member *old = static_member(g, a->instance_id);
		char *prefix = sk_str_dup(a->instance_id);

		id = member_id_new(prefix);
		free(prefix);
		if (old)
			replace_static_member(g, old, id, req, a);
		else
			add_member_and_rebalance(g, id, req, a);
		return;
	}
	{
		char *prefix = sk_str_dup(req->client_id);

		id = member_id_new(prefix);
		free(prefix);
	}
	if (req->api_version >= 4) {
		/* KIP-394: come back with this id. */
		join_error(gs, req->resp, req->api_version,
			   SK_KERR_MEMBER_ID_REQUIRED, id);
		pending_add(g, id, a->session_ms);
		return;
	}
	add_member_and_rebalance(g, id, req, a);
}

static void join_current_member(struct sk_group *g, struct sk_req *req,
				struct sk_join_args *a)
{
	struct sk_groups *gs = g->gs;
	char *mid = sk_str_dup(a->member_id);
	struct pending_member *pm;
	struct sk_member *m;
	enum sk_kerr ec;

	if (!supports_protocols(g, a->protocol_type, a->protos, a->n_protos)) {
		join_error(gs, req->resp, req->api_version,
			   SK_KERR_INCONSISTENT_GROUP_PROTOCOL, mid);
		goto out;
	}
	pm = pending_find(g, a->member_id);
	if (pm && !a->instance_id.p) {
		add_member_and_rebalance(g, mid, req, a);
		return; /* mid is the member's now */
	}
	ec = validate_member(g, a->member_id, a->instance_id, &m);
	if (ec) {
		join_error(gs, req->resp, req->api_version, ec, mid);
		goto out;
	}
	switch (g->state) {
	case SK_GROUP_PREPARING:
		update_member_and_rebalance(m, req, a, "a member rejoined");
		break;
	case SK_GROUP_COMPLETING:
		if (member_matches(m, a)) {
			/* It missed the answer: give it again. */
			member_touch(m);
			member_hold_join(m, req);
			member_join_answer(m, SK_KERR_NONE, true);
		} else {
			update_member_and_rebalance(m, req, a,
						    "a member changed its "
						    "protocols");
		}
		break;
	case SK_GROUP_STABLE:
		if (m == g->leader || !member_matches(m, a)) {
			/* The leader rejoining asks for a new assignment. */
			update_member_and_rebalance(
				m, req, a,
				m == g->leader ? "the leader rejoined"
					       : "a member changed its "
						 "protocols");
		} else {
			member_touch(m);
			member_hold_join(m, req);
			member_join_answer(m, SK_KERR_NONE, false);
		}
		break;
	default:
		join_error(gs, req->resp, req->api_version,
			   SK_KERR_UNKNOWN_MEMBER_ID, mid);
		break;
	}
out:
	free(mid);
}

void sk_group_join(struct sk_groups *gs, struct sk_req *req,
		   struct sk_join_args *a)
{
	const struct sk_config *c = cfg(gs);
	char *mid = sk_str_dup(a->member_id);
	bool unknown = a->member_id.len <= 0;
	struct sk_group *g;
	struct sk_member *m;
	enum sk_kerr ec;

	ec = sk_group_id_check(a->group_id);
	if (!ec && gs->stopping)
		ec = SK_KERR_NOT_COORDINATOR;
	if (!ec && (a->session_ms < c->group_min_session_timeout_ms ||
		    a->session_ms > c->group_max_session_timeout_ms))
		ec = SK_KERR_INVALID_SESSION_TIMEOUT;
	if (ec) {
		join_error(gs, req->resp, req->api_version, ec, mid);
		goto out;
	}
	g = sk_groups_find(gs, (const char *)a->group_id.p,
			   (size_t)a->group_id.len);
	if (!g) {
		if (!unknown) {
			join_error(gs, req->resp, req->api_version,
				   SK_KERR_UNKNOWN_MEMBER_ID, mid);
			goto out;
		}
		g = group_new(gs, (const char *)a->group_id.p,
			      (size_t)a->group_id.len);
	}
	m = unknown ? NULL : sk_group_member(g, mid, (size_t)a->member_id.len);
	if (!accept_member(g, m)) {
		sk_info("group %s: refusing a member: group.max.size (%d) "
			"reached",
			g->id, c->group_max_size);
		if (m)
			member_remove_and_update(m, "group.max.size");
		join_error(gs, req->resp, req->api_version,
			   SK_KERR_GROUP_MAX_SIZE_REACHED, "");
		goto out;
	}
	if (unknown)
		join_new_member(g, req, a);
	else
		join_current_member(g, req, a);
	if (g->state == SK_GROUP_PREPARING)
		try_complete_join(g);
	/* A refused first member leaves no empty group behind. */
	maybe_forget(g);
out:
	free(mid);
	protos_free(a->protos, a->n_protos);
	a->protos = NULL;
	a->n_protos = 0;
	flush(gs);
}

/* --- SyncGroup ---------------------------------------------------- */

void sk_group_sync(struct sk_groups *gs, struct sk_req *req,
		   const struct sk_sync_args *a)
{
	int16_t v = req->api_version;
	struct sk_member *m = NULL;
	struct sk_group *g;
	enum sk_kerr ec;

	ec = sk_group_id_check(a->group_id);
	if (!ec && gs->stopping)
		ec = SK_KERR_NOT_COORDINATOR;
	g = ec ? NULL
	       : sk_groups_find(gs, (const char *)a->group_id.p,
				(size_t)a->group_id.len);
	if (!ec && !g)
		ec = SK_KERR_UNKNOWN_MEMBER_ID;
	if (!ec)
		ec = validate_member(g, a->member_id, a->instance_id, &m);
	if (!ec && a->generation != g->generation)
		ec = SK_KERR_ILLEGAL_GENERATION;
	if (!ec && g->state == SK_GROUP_EMPTY)
		ec = SK_KERR_UNKNOWN_MEMBER_ID;
	if (!ec && g->state == SK_GROUP_PREPARING)
		ec = SK_KERR_REBALANCE_IN_PROGRESS;
	if (ec) {
		sync_write(gs, req->resp, v, ec, NULL, 0);
		flush(gs);
		return;
	}
	if (m->pending_sync) {
		m->pending_sync = false;
		g->n_pending_sync--;
	}
	member_touch(m);
	if (g->state == SK_GROUP_STABLE) {
		sync_write(gs, req->resp, v, SK_KERR_NONE, m->assignment,
			   m->assignment_len);
		goto done;
	}
	/* CompletingRebalance: hold it until the leader's arrives. */
	if (m->sync_resp)
		member_sync_answer(m, SK_KERR_REBALANCE_IN_PROGRESS);
	m->sync_resp = req->resp;
	m->sync_version = v;
	sk_resp_set_pending(req->resp, sync_cancel, m);
	if (m == g->leader) {
		for (int32_t i = 0; i < a->n_assign; i++) {
			struct sk_member *t = sk_group_member(
				g, (const char *)a->assign_member[i].p,
				(size_t)SK_MAX(a->assign_member[i].len, 0));
			struct sk_str bytes = a->assign_bytes[i];

			if (!t)
				continue;
			free(t->assignment);
			t->assignment = NULL;
			t->assignment_len = SK_MAX(bytes.len, 0);
			if (t->assignment_len > 0) {
				t->assignment =
					sk_xmalloc((size_t)t->assignment_len);
				memcpy(t->assignment, bytes.p,
				       (size_t)t->assignment_len);
			}
		}
		set_state(g, SK_GROUP_STABLE);
		sk_info("group %s: generation %d is stable", g->id,
			g->generation);
		for (struct sk_list *it = g->member_list.next;
		     it != &g->member_list; it = it->next)
			member_sync_answer(
				sk_container_of(it, struct sk_member, link),
				SK_KERR_NONE);
	}
done:
	if (g->n_pending_sync == 0)
		ev_timer_stop(gs->loop, &g->timer);
	flush(gs);
}

/* --- Heartbeat, LeaveGroup ---------------------------------------- */

enum sk_kerr sk_group_heartbeat(struct sk_groups *gs, struct sk_str group_id,
				struct sk_str member_id,
				struct sk_str instance_id, int32_t generation)
{
	struct sk_group *g;
	struct sk_member *m;
	enum sk_kerr ec = sk_group_id_check(group_id);

	if (ec)
		return ec;
	g = sk_groups_find(gs, (const char *)group_id.p, (size_t)group_id.len);
	if (!g)
		return SK_KERR_UNKNOWN_MEMBER_ID;
	ec = validate_member(g, member_id, instance_id, &m);
	if (ec)
		return ec;
	switch (g->state) {
	case SK_GROUP_EMPTY:
		return SK_KERR_UNKNOWN_MEMBER_ID;
	case SK_GROUP_COMPLETING:
		/* It may heartbeat between its JoinGroup and SyncGroup. */
		member_touch(m);
		return SK_KERR_NONE;
	case SK_GROUP_PREPARING:
		member_touch(m);
		return SK_KERR_REBALANCE_IN_PROGRESS;
	case SK_GROUP_STABLE:
		if (generation != g->generation)
			return SK_KERR_ILLEGAL_GENERATION;
		member_touch(m);
		return SK_KERR_NONE;
	default:
		return SK_KERR_UNKNOWN_MEMBER_ID;
	}
}

enum sk_kerr sk_group_leave(struct sk_group *g, struct sk_str member_id,
			    struct sk_str instance_id)
{
	struct pending_member *pm;
	struct sk_member *m;
	enum sk_kerr ec;

	if (member_id.len <= 0) {
		/* Administrative removal by group.instance.id. */
		m = instance_id.p ? static_member(g, instance_id) : NULL;
		if (!m)
			return SK_KERR_UNKNOWN_MEMBER_ID;
	} else if ((pm = pending_find(g, member_id))) {
		pending_remove(pm);
		if (g->state == SK_GROUP_PREPARING)
			try_complete_join(g);
		return SK_KERR_NONE;
	} else {
		ec = validate_member(g, member_id, instance_id, &m);
		if (ec)
			return ec;
	}
	sk_info("group %s: member %s left", g->id, m->id);
	member_remove_and_update(m, "a member left");
	return SK_KERR_NONE;
}

void sk_groups_flush(struct sk_groups *gs)
{
	flush(gs);
}

void sk_groups_answer_durable(struct sk_groups *gs, struct sk_resp *resp,
			      const size_t *pos, size_t n, int16_t fail)
{
	sk_offsets_wait(gs->store, sk_resp_defer_done,
			sk_resp_defer(resp, pos, n, fail));
}

/* --- offsets ------------------------------------------------------ */

enum sk_kerr sk_group_commit_check(struct sk_groups *gs, struct sk_str id,
				   int32_t generation, struct sk_str member_id,
				   struct sk_str instance_id,
				   struct sk_group **out)
{
	struct sk_group *g;
	struct sk_member *m;
	enum sk_kerr ec = sk_group_id_check(id);

	*out = NULL;
	if (ec)
		return ec;
	g = sk_groups_find(gs, (const char *)id.p, (size_t)id.len);
	if (!g) {
		if (generation >= 0)
			return SK_KERR_ILLEGAL_GENERATION;
		/* Not using the group protocol: a standalone group. */
		g = group_new(gs, (const char *)id.p, (size_t)id.len);
	}
	if (generation >= 0 || member_id.len > 0 || instance_id.p) {
		ec = validate_member(g, member_id, instance_id, &m);
		if (ec)
			return ec;
		if (generation != g->generation)
			return SK_KERR_ILLEGAL_GENERATION;
		if (g->state == SK_GROUP_COMPLETING)
			return SK_KERR_REBALANCE_IN_PROGRESS;
		member_touch(m);
	} else if (g->state != SK_GROUP_EMPTY) {
		/* Only members commit for a group with members. */
		return SK_KERR_UNKNOWN_MEMBER_ID;
	}
	*out = g;
	return SK_KERR_NONE;
}

struct sk_offset *sk_group_offset(const struct sk_group *g, const char *topic,
				  size_t tlen, int32_t partition)
{
	char key[SK_GROUP_ID_MAX + 512];
	struct sk_hnode *n;

	if (tlen + 5 > sizeof(key))
		return NULL;
	n = sk_hmap_find(
		&g->offsets, key,
		sk_offset_key(key, sizeof(key), topic, tlen, partition));
	return n ? sk_container_of(n, struct sk_offset, node) : NULL;
}

static void offset_free(struct sk_group *g, struct sk_offset *o)
{
	sk_hmap_remove(&g->offsets, &o->node);
	free(o->key);
	free(o->metadata);
	free(o);
}

static void offsets_clear(struct sk_group *g)
{
	struct sk_hnode *n = sk_hmap_first(&g->offsets);

	while (n) {
		struct sk_hnode *next = sk_hmap_next(&g->offsets, n);

		offset_free(g, sk_container_of(n, struct sk_offset, node));
		n = next;
	}
}

/* An Empty group with nothing left to remember is forgotten. */
static void maybe_forget(struct sk_group *g)
{
	if (g->state == SK_GROUP_EMPTY && g->n_members == 0 &&
	    g->pending.count == 0 && g->offsets.count == 0)
		group_free(g);
}

/* A durable record, applied to memory (offsets.h explains the order). */
static void apply(void *arg, const struct sk_offset_rec *r)
{
	struct sk_groups *gs = arg;
	struct sk_group *g = sk_groups_find(gs, r->group, strlen(r->group));
	struct sk_offset *o;

	switch (r->op) {
	case SK_OFFSET_PUT:
		if (!g)
			g = group_new(gs, r->group, strlen(r->group));
		o = sk_group_offset(g, r->topic, strlen(r->topic),
				    r->partition);
		if (!o) {
			char key[SK_GROUP_ID_MAX + 512];
			size_t tlen = strlen(r->topic);
			size_t klen;

			if (tlen + 5 > sizeof(key))
				return; /* topic names are at most 249 */
			klen = sk_offset_key(key, sizeof(key), r->topic, tlen,
					     r->partition);
			o = sk_xcalloc(1, sizeof(*o));
			o->key = sk_xmalloc(klen);
			memcpy(o->key, key, klen);
			o->partition = r->partition;
			sk_hmap_insert(&g->offsets, &o->node, o->key, klen);
		}
		free(o->metadata);
		o->metadata = sk_xstrdup(r->metadata ? r->metadata : "");
		o->offset = r->offset;
		o->leader_epoch = r->leader_epoch;
		o->commit_ms = r->commit_ms;
		o->expire_ms = r->expire_ms;
		break;
	case SK_OFFSET_DEL:
		if (!g)
			return;
		o = sk_group_offset(g, r->topic, strlen(r->topic),
				    r->partition);
		if (o && (r->commit_ms < 0 || o->commit_ms == r->commit_ms))
			offset_free(g, o);
		maybe_forget(g);
		break;
	case SK_OFFSET_DEL_GROUP:
		if (!g)
			return;
		offsets_clear(g);
		maybe_forget(g);
		break;
	}
}

static void load(void *arg, struct sk_offset_rec *r)
{
	apply(arg, r);
}

/*
 * KIP-211 retention, as Kafka's removeExpiredOffsets: a group with a
 * protocol type expires its offsets only while Empty, counting from when
 * it became Empty; a Stable consumer group expires the offsets of topics
 * it no longer subscribes to; standalone commits count from the commit.
 * An explicit expiry (OffsetCommit v2-4 retention_time) is honoured
 * where the group's offsets may expire at all.
 */
void sk_groups_expire_offsets(struct sk_groups *gs)
{
	int64_t now = sk_now_ms();
	int64_t retention = (int64_t)cfg(gs)->offsets_retention_minutes * 60000;
	size_t n_expired = 0;

	for (struct sk_hnode *gn = sk_hmap_first(&gs->map); gn;
	     gn = sk_hmap_next(&gs->map, gn)) {
		struct sk_group *g = sk_container_of(gn, struct sk_group, node);
		bool stable_consumer = false;

		if (g->protocol_type) {
			stable_consumer = g->state == SK_GROUP_STABLE &&
					  g->subscribed_known;
			if (g->state != SK_GROUP_EMPTY && !stable_consumer)
				continue;
		}
		for (struct sk_hnode *n = sk_hmap_first(&g->offsets); n;
		     n = sk_hmap_next(&g->offsets, n)) {
			struct sk_offset *o =
				sk_container_of(n, struct sk_offset, node);
			int64_t base = o->commit_ms;
			bool expired;

			if (stable_consumer &&
			    sk_group_subscribed(g, o->key, strlen(o->key)))
				continue;
			if (g->protocol_type && !stable_consumer)
				base = g->state_ms;
			if (o->expire_ms >= 0)
				expired = now >= o->expire_ms;
			else
				expired = now - base >= retention;
			if (expired) {
				struct sk_offset_rec r = {
					.op = SK_OFFSET_DEL,
					.group = sk_xstrdup(g->id),
					.topic = sk_xstrdup(o->key),
					.partition = o->partition,
					.commit_ms = o->commit_ms,
				};
				sk_offsets_queue(gs->store, &r);
				n_expired++;
			}
		}
	}
	/* Groups with neither members nor offsets are forgotten too. */
	for (struct sk_hnode *gn = sk_hmap_first(&gs->map); gn;) {
		struct sk_hnode *next = sk_hmap_next(&gs->map, gn);

		maybe_forget(sk_container_of(gn, struct sk_group, node));
		gn = next;
	}
	if (n_expired)
		sk_info("offsets: %zu committed offsets expired "
			"(offsets.retention.minutes)",
			n_expired);
}

static void on_retention_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	sk_groups_expire_offsets(
		sk_container_of(w, struct sk_groups, retention));
}

enum sk_kerr sk_group_delete(struct sk_groups *gs, struct sk_str id)
{
	struct sk_offset_rec r = { .op = SK_OFFSET_DEL_GROUP };
	struct sk_group *g;
	enum sk_kerr ec = sk_group_id_check(id);

	if (ec)
		return ec;
	g = sk_groups_find(gs, (const char *)id.p, (size_t)id.len);
	if (!g)
		return SK_KERR_GROUP_ID_NOT_FOUND;
	if (g->state != SK_GROUP_EMPTY)
		return SK_KERR_NON_EMPTY_GROUP;
	r.group = sk_xstrdup(g->id);
	sk_offsets_queue(gs->store, &r);
	sk_info("group %s deleted", g->id);
	group_free(g);
	return SK_KERR_NONE;
}

void sk_groups_lag_foreach(struct sk_groups *gs, sk_offset_lag_fn fn, void *arg)
{
	for (struct sk_hnode *gn = sk_hmap_first(&gs->map); gn;
	     gn = sk_hmap_next(&gs->map, gn)) {
		struct sk_group *g = sk_container_of(gn, struct sk_group, node);

		for (struct sk_hnode *n = sk_hmap_first(&g->offsets); n;
		     n = sk_hmap_next(&g->offsets, n)) {
			struct sk_offset *o =
				sk_container_of(n, struct sk_offset, node);
			struct sk_topic *t = sk_topics_find(
				&gs->b->topics, o->key, strlen(o->key));
			struct sk_tpart *tp =
				t ? sk_topic_part(t, o->partition) : NULL;
			struct sk_offset_lag v = {
				.group = g->id,
				.topic = o->key,
				.partition = o->partition,
				.committed = o->offset,
				.log_end = tp ? sk_partition_end_offset(tp->log)
					      : -1,
				.state = sk_group_state_name(g->state),
			};

			v.lag = v.log_end < 0
					? -1
					: SK_MAX(v.log_end - o->offset, 0);
			fn(arg, &v);
		}
	}
}

/* --- lifecycle ---------------------------------------------------- */

static void group_free(struct sk_group *g)
{
	struct sk_groups *gs = g->gs;

	while (!sk_list_empty(&g->member_list))
		member_remove(
			sk_list_first(&g->member_list, struct sk_member, link));
	while (g->pending.count)
		pending_remove(sk_container_of(sk_hmap_first(&g->pending),
					       struct pending_member, node));
	ev_timer_stop(gs->loop, &g->timer);
	offsets_clear(g);
	subscribed_clear(g);
	sk_hmap_remove(&gs->map, &g->node);
	sk_hmap_fini(&g->members);
	sk_hmap_fini(&g->statics);
	sk_hmap_fini(&g->pending);
	sk_hmap_fini(&g->protos);
	sk_hmap_fini(&g->subscribed);
	sk_hmap_fini(&g->offsets);
	free(g->protocol_type);
	free(g->protocol);
	free(g->id);
	free(g);
}

int sk_groups_open(struct sk_groups **out, struct sk_broker *b,
		   struct sk_err *err)
{
	struct groups_priv *p = sk_xcalloc(1, sizeof(*p));
	struct sk_groups *gs = &p->pub;
	double every;
	int rc;

	gs->b = b;
	gs->loop = b->loop;
	sk_hmap_init(&gs->map);
	sk_list_init(&p->ready);
	rc = sk_offsets_open(&gs->store, b->loop, b->cfg.log_dir, load, apply,
			     gs, err);
	if (rc) {
		sk_groups_free(gs);
		return rc;
	}
	every = (double)b->cfg.offsets_retention_check_interval_ms / 1000.0;
	ev_timer_init(&gs->retention, on_retention_timer, every, every);
	ev_timer_start(b->loop, &gs->retention);
	/* Housekeeping alone must not keep the loop running. */
	ev_unref(b->loop);
	if (gs->map.count)
		sk_info("offsets: loaded committed offsets of %zu groups",
			gs->map.count);
	*out = gs;
	return 0;
}

void sk_groups_stop(struct sk_groups *gs)
{
	if (!gs)
		return;
	gs->stopping = true;
	for (struct sk_hnode *gn = sk_hmap_first(&gs->map); gn;
	     gn = sk_hmap_next(&gs->map, gn)) {
		struct sk_group *g = sk_container_of(gn, struct sk_group, node);

		for (struct sk_list *it = g->member_list.next;
		     it != &g->member_list; it = it->next) {
			struct sk_member *m =
				sk_container_of(it, struct sk_member, link);

			member_join_answer(m, SK_KERR_NOT_COORDINATOR, false);
			member_sync_answer(m, SK_KERR_NOT_COORDINATOR);
		}
	}
	flush(gs);
}

void sk_groups_free(struct sk_groups *gs)
{
	if (!gs)
		return;
	/* Commits still queued are written and applied first. */
	sk_offsets_close(gs->store);
	gs->store = NULL;
	if (ev_is_active(&gs->retention)) {
		ev_ref(gs->loop);
		ev_timer_stop(gs->loop, &gs->retention);
	}
	while (gs->map.count)
		group_free(sk_container_of(sk_hmap_first(&gs->map),
					   struct sk_group, node));
	flush(gs);
	sk_hmap_fini(&gs->map);
	free(priv(gs));
}
