/*
 * core/group.c through an in-process broker: clients are socketpairs
 * adopted with sk_conn_new, so the test sees both the answers and the
 * coordinator's own state (counters, leader, generation), and it can
 * close a connection at any moment. Covers the KIP-394 pending member
 * holding a rebalance, a closed connection taking its held JoinGroup out
 * of the rebalance at once, leader re-election, session expiry, and a
 * rebalance of 5000 members staying linear.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "say.h"
#include "tap.h"

static struct ev_loop *loop;
static struct sk_broker b;
static char dir[256];

struct cli {
	int fd;
	struct sk_buf out; /* bytes not yet written to the socket */
	struct sk_buf in;  /* bytes read, not yet taken as frames */
	int32_t corr;
};

static struct cli *cli_new(void)
{
	struct cli *c = calloc(1, sizeof(*c));
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv)) {
		perror("socketpair");
		exit(1);
	}
	sk_conn_new(&b.server, sv[0]);
	c->fd = sv[1];
	return c;
}

static void cli_free(struct cli *c)
{
	close(c->fd);
	sk_buf_free(&c->out);
	sk_buf_free(&c->in);
	free(c);
}

/* One loop iteration, then move bytes both ways. */
static void pump(struct cli **cs, size_t n)
{
	ev_run(loop, EVRUN_NOWAIT);
	for (size_t i = 0; i < n; i++) {
		struct cli *c = cs[i];
		ssize_t k;

		if (!c)
			continue;
		while (c->out.len) {
			k = write(c->fd, c->out.data, c->out.len);
			if (k <= 0)
				break;
			memmove(c->out.data, c->out.data + k,
				c->out.len - (size_t)k);
			c->out.len -= (size_t)k;
		}
		for (;;) {
			sk_buf_reserve(&c->in, 65536);
			k = read(c->fd, c->in.data + c->in.len,
				 c->in.cap - c->in.len);
			if (k <= 0)
				break;
			c->in.len += (size_t)k;
		}
	}
}

/* A complete frame already read (body after the correlation id)? */
static bool frame_ready(struct cli *c)
{
	return c->in.len >= 4 && c->in.len >= 4 + sk_be32(c->in.data);
}

/* Wait up to ms for c's next response; returns it (malloc'd) or NULL. */
static uint8_t *recv_frame(struct cli *c, struct cli **all, size_t n,
			   int64_t ms, size_t *len)
{
	int64_t end = sk_mono_ms() + ms;
	uint8_t *f;
	size_t sz;

	while (!frame_ready(c) && sk_mono_ms() < end)
		pump(all, n);
	if (!frame_ready(c))
		return NULL;
	sz = sk_be32(c->in.data);
	f = malloc(sz);
	memcpy(f, c->in.data + 4, sz);
	memmove(c->in.data, c->in.data + 4 + sz, c->in.len - 4 - sz);
	c->in.len -= 4 + sz;
	*len = sz;
	return f;
}

/* Start a request frame; finish with frame_end. */
static struct sk_wr frame_start(struct cli *c, struct sk_buf *tmp, int16_t key,
				int16_t ver)
{
	struct sk_wr w = { tmp };

	tmp->len = 0;
	sk_wr_i32(&w, 0);
	sk_wr_i16(&w, key);
	sk_wr_i16(&w, ver);
	sk_wr_i32(&w, ++c->corr);
	sk_wr_str(&w, "unit", false);
	return w;
}

static void frame_end(struct cli *c, struct sk_buf *tmp)
{
	sk_put_be32(tmp->data, (uint32_t)(tmp->len - 4));
	sk_buf_put(&c->out, tmp->data, tmp->len);
}

static void send_join(struct cli *c, const char *group, const char *member,
		      int16_t ver, int32_t session)
{
	struct sk_buf tmp = { 0 };
	struct sk_wr w = frame_start(c, &tmp, 11, ver);

	sk_wr_str(&w, group, false);
	sk_wr_i32(&w, session);
	if (ver >= 1)
		sk_wr_i32(&w, 5000);
	sk_wr_str(&w, member, false);
	if (ver >= 5)
		sk_wr_str(&w, NULL, false);
	sk_wr_str(&w, "consumer", false);
	sk_wr_array(&w, 1, false);
	sk_wr_str(&w, "range", false);
	sk_wr_bytes(&w, "meta", 4, false);
	frame_end(c, &tmp);
	sk_buf_free(&tmp);
}

static void send_sync(struct cli *c, const char *group, int32_t gen,
		      const char *member)
{
	struct sk_buf tmp = { 0 };
	struct sk_wr w = frame_start(c, &tmp, 14, 1);

	sk_wr_str(&w, group, false);
	sk_wr_i32(&w, gen);
	sk_wr_str(&w, member, false);
	sk_wr_array(&w, 0, false);
	frame_end(c, &tmp);
	sk_buf_free(&tmp);
}

struct join_res {
	int16_t err;
	int32_t gen;
	char leader[256];
	char member[256];
	int32_t n_members;
};

/* Parse a JoinGroup v2-v5 (non-static) response frame. */
static bool parse_join(const uint8_t *f, size_t len, int16_t ver,
		       struct join_res *out)
{
	struct sk_rd r;
	struct sk_str s;

	sk_rd_init(&r, f + 4, len - 4);
	if (ver >= 2)
		sk_rd_i32(&r);
	out->err = sk_rd_i16(&r);
	out->gen = sk_rd_i32(&r);
	sk_rd_string(&r);
	s = sk_rd_string(&r);
	snprintf(out->leader, sizeof(out->leader), "%.*s", (int)s.len,
		 (const char *)s.p);
	s = sk_rd_string(&r);
	snprintf(out->member, sizeof(out->member), "%.*s", (int)s.len,
		 (const char *)s.p);
	out->n_members = sk_rd_array(&r, false, 6);
	for (int32_t i = 0; i < out->n_members; i++) {
		sk_rd_string(&r);
		if (ver >= 5)
			sk_rd_string(&r);
		sk_rd_bytes(&r, false);
	}
	return sk_rd_ok(&r) && sk_rd_left(&r) == 0;
}

static bool join_wait(struct cli *c, struct cli **all, size_t n, int16_t ver,
		      int64_t ms, struct join_res *out)
{
	size_t len;
	uint8_t *f = recv_frame(c, all, n, ms, &len);
	bool good = f && parse_join(f, len, ver, out);

	free(f);
	return good;
}

static struct sk_group *group(const char *id)
{
	return sk_groups_find(b.groups, id, strlen(id));
}

/* "127.0.0.1:<a port nobody listens on now>" (the config wants 1+). */
static void free_listener(char *out, size_t cap)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
		perror("picking a port");
		exit(1);
	}
	close(fd);
	snprintf(out, cap, "127.0.0.1:%d", ntohs(sa.sin_port));
}

static void setup(void)
{
	struct sk_err err;
	char data[300], listen[32];

	snprintf(dir, sizeof(dir), "/tmp/skald-group-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(data, sizeof(data), "%s/data", dir);
	free_listener(listen, sizeof(listen));
	loop = ev_loop_new(EVFLAG_AUTO);
	sk_say_setup(SK_SAY_ERROR, SK_SAY_TEXT);
	sk_config_init(&b.cfg);
	if (sk_config_set(&b.cfg, "log.dir", data, "test", &err) ||
	    sk_config_set(&b.cfg, "listeners", listen, "test", &err) ||
	    sk_config_set(&b.cfg, "group.initial.rebalance.delay.ms", "0",
			  "test", &err) ||
	    sk_config_set(&b.cfg, "group.min.session.timeout.ms", "10", "test",
			  &err) ||
	    sk_config_set(&b.cfg, "queued.max.requests", "100000", "test",
			  &err) ||
	    sk_broker_init(&b, loop, &err)) {
		fprintf(stderr, "setup: %s\n", err.msg);
		exit(1);
	}
}

static void teardown(void)
{
	sk_broker_fini(&b);
	sk_config_free(&b.cfg);
	ev_loop_destroy(loop);
	sk_rmtree(dir);
}

static void send_leave(struct cli *c, const char *group, const char *member)
{
	struct sk_buf tmp = { 0 };
	struct sk_wr w = frame_start(c, &tmp, 13, 1);

	sk_wr_str(&w, group, false);
	sk_wr_str(&w, member, false);
	frame_end(c, &tmp);
	sk_buf_free(&tmp);
}

/* Read and drop n responses of c (Sync, Leave answers). */
static bool skip_frames(struct cli *c, struct cli **all, size_t n_all, int n)
{
	for (int i = 0; i < n; i++) {
		size_t len;
		uint8_t *f = recv_frame(c, all, n_all, 2000, &len);

		if (!f)
			return false;
		free(f);
	}
	return true;
}

/* A one-member generation of group id, led by cs[0]; its member id. */
static bool form(const char *id, struct cli **cs, size_t n, int32_t session,
		 struct join_res *a)
{
	send_join(cs[0], id, "", 3, session);
	if (!join_wait(cs[0], cs, n, 3, 2000, a) || a->err)
		return false;
	send_sync(cs[0], id, a->gen, a->member);
	return skip_frames(cs[0], cs, n, 1);
}

static void settle(struct cli **cs, size_t n)
{
	for (int i = 0; i < 20; i++)
		pump(cs, n);
}

/* KIP-394: a pending member holds the rebalance until it rejoins. */
static void test_pending(void)
{
	struct cli *cs[3] = { cli_new(), cli_new(), cli_new() };
	struct join_res a, q, r0, r1, r2;
	struct sk_group *g;

	ok(form("g1", cs, 3, 10000, &a) && a.gen == 1,
	   "pending: the first member forms generation 1");
	g = group("g1");
	send_join(cs[2], "g1", "", 4, 10000);
	ok(join_wait(cs[2], cs, 3, 4, 2000, &q) && q.err == 79,
	   "pending: JoinGroup v4 without an id: MEMBER_ID_REQUIRED");
	is(g->pending.count, 1, "pending: one pending member");
	send_join(cs[1], "g1", "", 3, 10000);
	send_join(cs[0], "g1", a.member, 3, 10000);
	settle(cs, 3);
	ok(g->state == SK_GROUP_PREPARING && g->n_awaiting_join == 2 &&
		   g->n_members == 2 && !frame_ready(cs[0]) &&
		   !frame_ready(cs[1]),
	   "pending: everyone joined but the pending member: still held");
	send_join(cs[2], "g1", q.member, 4, 10000);
	ok(join_wait(cs[0], cs, 3, 3, 2000, &r0) &&
		   join_wait(cs[1], cs, 3, 3, 2000, &r1) &&
		   join_wait(cs[2], cs, 3, 4, 2000, &r2),
	   "pending: its rejoin completes the rebalance");
	ok(r0.gen == 2 && r1.gen == 2 && r2.gen == 2 && r0.n_members == 3 &&
		   r1.n_members == 0 && strcmp(r0.leader, a.member) == 0,
	   "pending: generation 2, 3 members, the same leader");
	ok(g->n_awaiting_join == 0 && g->n_pending_sync == 3 &&
		   g->pending.count == 0 && g->state == SK_GROUP_COMPLETING,
	   "pending: counters after the join");
	for (int i = 0; i < 3; i++)
		cli_free(cs[i]);
}

/*
 * A new member whose connection closes while its JoinGroup is held is
 * gone at once: the rebalance completes without it, long before the
 * rebalance timeout.
 */
static void test_cancel(void)
{
	struct cli *cs[2] = { cli_new(), cli_new() };
	struct join_res a, r;
	struct sk_group *g;
	int64_t t0;

	ok(form("g2", cs, 2, 10000, &a), "cancel: generation 1");
	g = group("g2");
	send_join(cs[1], "g2", "", 3, 10000);
	settle(cs, 2);
	is(g->n_members, 2, "cancel: a second member joined");
	cli_free(cs[1]);
	cs[1] = NULL;
	settle(cs, 2);
	is(g->n_members, 1, "cancel: its connection closed: it is gone");
	t0 = sk_mono_ms();
	send_join(cs[0], "g2", a.member, 3, 10000);
	ok(join_wait(cs[0], cs, 2, 3, 2000, &r) && r.gen == 2 &&
		   r.n_members == 1,
	   "cancel: the leader's rejoin completes generation 2 alone");
	ok(sk_mono_ms() - t0 < 1000, "cancel: without waiting the rebalance "
				     "timeout");
	cli_free(cs[0]);
}

/* The leader leaves: a remaining member leads the next generation. */
static void test_leader_leaves(void)
{
	struct cli *cs[2] = { cli_new(), cli_new() };
	struct join_res a, r0, r1, r;
	struct sk_group *g;

	ok(form("g3", cs, 2, 10000, &a), "leader: generation 1");
	g = group("g3");
	send_join(cs[1], "g3", "", 3, 10000);
	settle(cs, 2);
	send_join(cs[0], "g3", a.member, 3, 10000);
	ok(join_wait(cs[0], cs, 2, 3, 2000, &r0) &&
		   join_wait(cs[1], cs, 2, 3, 2000, &r1) && r0.gen == 2,
	   "leader: two members in generation 2");
	send_leave(cs[0], "g3", a.member);
	ok(skip_frames(cs[0], cs, 2, 1), "leader: LeaveGroup answered");
	ok(g->leader && strcmp(g->leader->id, r1.member) == 0,
	   "leader: the other member leads now");
	send_join(cs[1], "g3", r1.member, 3, 10000);
	ok(join_wait(cs[1], cs, 2, 3, 2000, &r) && r.gen == 3 &&
		   r.n_members == 1 && strcmp(r.leader, r1.member) == 0,
	   "leader: generation 3 led by it");
	cli_free(cs[0]);
	cli_free(cs[1]);
}

/* Silence past the session timeout removes the member. */
static void test_session_expiry(void)
{
	struct cli *cs[1] = { cli_new() };
	struct join_res a;
	struct sk_group *g;
	int64_t end;

	ok(form("g4", cs, 1, 50, &a), "expiry: a member with a 50 ms session");
	g = group("g4");
	end = sk_mono_ms() + 2000;
	while (g->n_members && sk_mono_ms() < end)
		pump(cs, 1);
	ok(g->n_members == 0 && g->state == SK_GROUP_EMPTY &&
		   g->generation == 2,
	   "expiry: removed; the group is Empty in generation 2");
	cli_free(cs[0]);
}

/*
 * 5000 members rebalance: every join is O(1) and the completion O(n),
 * so this takes a fraction of a second (an O(n^2) step, such as building
 * the leader's member list per join, would take minutes).
 */
static void test_many(void)
{
	enum { N = 5000 };
	struct cli *cs[2] = { cli_new(), cli_new() };
	struct join_res a, r;
	struct sk_group *g;
	int64_t t0;
	int good = 0;

	ok(form("g5", cs, 2, 30000, &a), "many: generation 1");
	g = group("g5");
	t0 = sk_mono_ms();
	for (int i = 1; i < N; i++)
		send_join(cs[1], "g5", "", 3, 30000);
	while (g->n_members < N && sk_mono_ms() - t0 < 20000)
		pump(cs, 2);
	diag("%d joins held after %lld ms", g->n_members,
	     (long long)(sk_mono_ms() - t0));
	send_join(cs[0], "g5", a.member, 3, 30000);
	ok(join_wait(cs[0], cs, 2, 3, 30000, &r) && r.gen == 2 &&
		   r.n_members == N,
	   "many: the leader gets all %d members", N);
	for (int i = 1; i < N; i++)
		if (join_wait(cs[1], cs, 2, 3, 5000, &r) && r.err == 0 &&
		    r.gen == 2)
			good++;
	is(good, N - 1, "many: every other member got generation 2");
	diag("%d members joined and rebalanced in %lld ms", N,
	     (long long)(sk_mono_ms() - t0));
	ok(sk_mono_ms() - t0 < 10000, "many: in well under 10 s");
	is(g->n_members, N, "many: %d members", N);
	cli_free(cs[0]);
	cli_free(cs[1]);
}

/* Collects the lag view's rows for one group. */
struct lag_seen {
	int rows;
	struct sk_offset_lag last;
};

static void on_lag(void *arg, const struct sk_offset_lag *v)
{
	struct lag_seen *seen = arg;

	if (strcmp(v->group, "lagg") != 0)
		return;
	seen->rows++;
	seen->last = *v;
}

/* The internal lag view: committed offset, log end and their distance. */
static void test_lag_view(void)
{
	struct cli *cs[1] = { cli_new() };
	struct sk_record_in recs[5];
	struct sk_buf batch = { 0 }, tmp = { 0 };
	struct sk_err err = { "" };
	struct lag_seen seen = { 0 };
	struct sk_topic *tp;
	struct sk_wr w;
	int64_t base;
	uint8_t *f;
	size_t len;

	is(sk_topic_create(&b, "lagt", 1, NULL, 0, false, &err), SK_KERR_NONE,
	   "lag: topic created");
	tp = sk_topics_find(&b.topics, "lagt", 4);
	memset(recs, 0, sizeof(recs));
	for (int i = 0; i < 5; i++) {
		recs[i].key_len = -1;
		recs[i].value = "v";
		recs[i].value_len = 1;
		recs[i].timestamp = 1000 + i;
	}
	sk_batch_build(&batch, 0, recs, 5, 0, -1, -1, -1);
	is(sk_partition_append(tp->parts[0]->log, batch.data, batch.len, &base,
			       &err),
	   0, "lag: five records appended");

	/* A simple consumer's commit (generation -1) of offset 2. */
	w = frame_start(cs[0], &tmp, 8, 2);
	sk_wr_str(&w, "lagg", false);
	sk_wr_i32(&w, -1);
	sk_wr_str(&w, "", false);
	sk_wr_i64(&w, -1);
	sk_wr_array(&w, 1, false);
	sk_wr_str(&w, "lagt", false);
	sk_wr_array(&w, 1, false);
	sk_wr_i32(&w, 0);
	sk_wr_i64(&w, 2);
	sk_wr_str(&w, "", false);
	frame_end(cs[0], &tmp);
	f = recv_frame(cs[0], cs, 1, 5000, &len);
	ok(f != NULL, "lag: the commit was answered");
	free(f);

	sk_groups_lag_foreach(b.groups, on_lag, &seen);
	is(seen.rows, 1, "lag: one row for the group");
	is(seen.last.committed, 2, "lag: committed offset");
	is(seen.last.log_end, 5, "lag: log end offset");
	is(seen.last.lag, 3, "lag: lag is log end minus committed");
	sk_buf_free(&batch);
	sk_buf_free(&tmp);
	cli_free(cs[0]);
}

int main(void)
{
	plan(31);
	setup();
	test_pending();
	test_cancel();
	test_leader_leaves();
	test_session_expiry();
	test_many();
	test_lag_view();
	teardown();
	return tap_failed != 0;
}
