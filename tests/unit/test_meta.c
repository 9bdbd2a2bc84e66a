/*
 * The metadata store (meta.c) and the offsets store (offsets.c) under
 * simulated power loss, through tests/unit/sqlite_crash_vfs.c.
 *
 * First the basics: topic changes settle in order and are readable after
 * a reopen; a failed write settles its changes newest first with -EIO,
 * fails its waiters, and the store works again afterwards.
 *
 * Then the walk: a workload of topic puts (partitions and a config that
 * must change together), a topic deletion, offset commits and a couple of
 * explicit WAL checkpoints runs against both stores, recording what each
 * store acknowledged as durable. For each crash point (an even sample,
 * CRASH_POINTS=n, 0 for all) it runs again from an empty directory, the
 * machine stops at that mutating call, power is lost (on odd points the
 * last unsynced write is torn), and both databases are reopened through
 * the real code and checked:
 *   - both pass PRAGMA integrity_check;
 *   - the cluster id, once acknowledged, is unchanged;
 *   - every acknowledged topic is there, its partition count never below
 *     the acknowledged one, its config from the same write (atomicity);
 *     an acknowledged deletion stays deleted;
 *   - every committed offset is at least the acknowledged one (offsets
 *     never go back) and is a value the workload wrote;
 *   - both stores take new writes after recovery.
 */
#include <errno.h>
#include <ev.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "meta.h"
#include "offsets.h"
#include "say.h"
#include "sqlite_crash_vfs.h"
#include "tap.h"
#include "util.h"

#define N_TOPICS 3 /* put in turn; a fourth, "doomed", is deleted */
#define N_PARTS	 3 /* partitions of the committed offsets */
#define N_STEPS	 24

static struct ev_loop *loop;
static ev_timer keepalive; /* lets EVRUN_ONCE block for the writers */

static void on_keepalive(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
}
static char root[256];

/* ---- helpers ---- */

static void rm_root(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		abort();
}

static void fresh_root(void)
{
	rm_root();
	if (mkdir(root, 0755) < 0) {
		perror(root);
		abort();
	}
}

/* Run the loop until *flag is set. */
static void run_until(const bool *flag)
{
	while (!*flag)
		ev_run(loop, EVRUN_ONCE);
}

struct waited {
	bool done;
	int rc;
};

static void on_wait(void *arg, int rc)
{
	struct waited *w = arg;

	w->done = true;
	w->rc = rc;
}

static int meta_wait(struct sk_meta *m)
{
	struct waited w = { false, 0 };

	sk_meta_wait(m, on_wait, &w);
	run_until(&w.done);
	return w.rc;
}

static int offsets_wait(struct sk_offsets *o)
{
	struct waited w = { false, 0 };

	sk_offsets_wait(o, on_wait, &w);
	run_until(&w.done);
	return w.rc;
}

static void put_topic(struct sk_meta *m, const char *name, int32_t parts,
		      sk_meta_settle_fn settle, void *arg)
{
	char val[32];
	struct sk_config_kv kv = { (char *)"retention.ms", val };

	snprintf(val, sizeof(val), "%d", parts);
	sk_meta_topic_put(m, name, parts, &kv, 1, settle, arg);
}

/* What a topics load found. */
struct found {
	int n;
	char names[16][32];
	int32_t parts[16];
	long cfg[16]; /* retention.ms, -1 if missing */
};

static int on_topic(void *arg, const char *name, int32_t partitions,
		    const struct sk_config_kv *configs, size_t n_configs,
		    struct sk_err *err)
{
	struct found *f = arg;

	(void)err;
	if (f->n == 16)
		return 0;
	snprintf(f->names[f->n], sizeof(f->names[0]), "%s", name);
	f->parts[f->n] = partitions;
	f->cfg[f->n] = -1;
	for (size_t i = 0; i < n_configs; i++)
		if (strcmp(configs[i].key, "retention.ms") == 0)
			f->cfg[f->n] = strtol(configs[i].value, NULL, 10);
	f->n++;
	return 0;
}

static int found_idx(const struct found *f, const char *name)
{
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->names[i], name) == 0)
			return i;
	return -1;
}

/* ---- basics ---- */

static int settled[8], n_settled;

static void on_settle(void *arg, int rc)
{
	settled[n_settled++] = (int)(intptr_t)arg * (rc ? -1 : 1);
}

static void test_basics(void)
{
	struct sk_meta *m;
	struct sk_err err;
	struct found f = { 0 };
	char id[32];
	uint64_t ops;

	fresh_root();
	crash_vfs_reset(root, 0);
	if (sk_meta_open(&m, root, &err)) {
		diag("%.400s", err.msg);
		abort();
	}
	sk_meta_start(m, loop);
	snprintf(id, sizeof(id), "%s", sk_meta_cluster_id(m));
	n_settled = 0;
	put_topic(m, "a", 1, on_settle, (void *)1);
	put_topic(m, "b", 2, on_settle, (void *)2);
	is(sk_meta_pending(m), 2, "basics: two changes pending");
	is(meta_wait(m), 0, "basics: the wait reports them durable");
	ok(n_settled == 2 && settled[0] == 1 && settled[1] == 2,
	   "basics: settled in order, both durable");

	/* The next mutating call fails: the batch fails as a whole. */
	ops = crash_vfs_ops();
	crash_vfs_reset(root, 1);
	n_settled = 0;
	put_topic(m, "c", 3, on_settle, (void *)3);
	sk_meta_topic_delete(m, "a", on_settle, (void *)4);
	is(meta_wait(m), -EIO, "failure: the wait gets -EIO");
	ok(n_settled == 2 && settled[0] == -4 && settled[1] == -3,
	   "failure: both changes settle failed, newest first");
	ok(ops > 0, "failure: the first writes went through the VFS");

	/* The disk works again: so does the store. */
	crash_vfs_reset(root, 0);
	put_topic(m, "d", 4, NULL, NULL);
	is(meta_wait(m), 0, "after a failure, a new change is durable");
	sk_meta_close(m);

	if (sk_meta_open(&m, root, &err)) {
		diag("%.400s", err.msg);
		abort();
	}
	is_str(sk_meta_cluster_id(m), id, "reopen: the same cluster id");
	sk_meta_topics_load(m, on_topic, &f, &err);
	ok(f.n == 3 && found_idx(&f, "a") >= 0 && found_idx(&f, "b") >= 0 &&
		   found_idx(&f, "d") >= 0,
	   "reopen: a, b and d are stored, the failed c is not");
	ok(found_idx(&f, "b") >= 0 && f.parts[found_idx(&f, "b")] == 2 &&
		   f.cfg[found_idx(&f, "b")] == 2,
	   "reopen: b has its partitions and config");
	sk_meta_close(m);
}

/*
 * A plugin value is written on the loop's connection without a sync; the
 * META_SYNC it queues has the writer's FULL commit sync the WAL, so once
 * the writer ran the value survives power loss.
 */
static void test_kv_power_loss(void)
{
	struct sk_meta *m;
	struct sk_err err;
	char buf[16];
	size_t len = 0;

	fresh_root();
	crash_vfs_reset(root, 0);
	if (sk_meta_open(&m, root, &err)) {
		diag("%.400s", err.msg);
		abort();
	}
	sk_meta_start(m, loop);
	is(sk_meta_kv_put(m, "plug", "k", "v1", 2, &err), 0, "kv: put");
	ok(sk_meta_pending(m) > 0, "kv: the put queued a sync");
	is(meta_wait(m), 0, "kv: the writer synced it");
	crash_vfs_power_loss(false);
	sk_meta_close(m);
	crash_vfs_reset(root, 0);
	if (sk_meta_open(&m, root, &err)) {
		diag("%.400s", err.msg);
		abort();
	}
	ok(sk_meta_kv_get(m, "plug", "k", buf, sizeof(buf), &len, &err) == 0 &&
		   len == 2 && memcmp(buf, "v1", 2) == 0,
	   "kv: the value survives power loss");
	sk_meta_close(m);
}

/* ---- the power-loss walk ---- */

/* What the stores acknowledged in one run. */
struct acks {
	char cluster_id[32];
	int32_t parts[N_TOPICS]; /* 0: no put acknowledged */
	bool doomed_created, doomed_deleted;
	int64_t offset[N_PARTS]; /* -1: none */
};

static struct acks acks;

struct topic_ack {
	int topic; /* -1: the doomed topic */
	int32_t parts;
	bool del;
};

static struct topic_ack tacks[N_STEPS * 2];

static void on_topic_settle(void *arg, int rc)
{
	struct topic_ack *t = arg;

	if (rc)
		return;
	if (t->topic < 0 && t->del)
		acks.doomed_deleted = true;
	else if (t->topic < 0)
		acks.doomed_created = true;
	else if (t->parts > acks.parts[t->topic])
		acks.parts[t->topic] = t->parts;
}

/* offsets apply: runs for each durable record. */
static void on_offset_durable(void *arg, const struct sk_offset_rec *r)
{
	(void)arg;
	if (r->partition >= 0 && r->partition < N_PARTS &&
	    r->offset > acks.offset[r->partition])
		acks.offset[r->partition] = r->offset;
}

static void on_offset_load(void *arg, struct sk_offset_rec *r)
{
	int64_t *got = arg;

	if (r->partition >= 0 && r->partition < N_PARTS)
		got[r->partition] = r->offset;
}

static void ignore_load(void *arg, struct sk_offset_rec *r)
{
	(void)arg;
	(void)r;
}

/* Checkpoint a database from a connection of our own (via the VFS). */
static void checkpoint(const char *file)
{
	char path[300];
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/%s", root, file);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) ==
	    SQLITE_OK) {
		sqlite3_busy_timeout(db, 5000);
		sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL,
			     NULL);
	}
	sqlite3_close(db);
}

static void workload(void)
{
	struct sk_meta *m = NULL;
	struct sk_offsets *o = NULL;
	struct sk_err err;
	size_t nt = 0;

	memset(&acks, 0, sizeof(acks));
	for (int p = 0; p < N_PARTS; p++)
		acks.offset[p] = -1;
	if (sk_meta_open(&m, root, &err) == 0) {
		snprintf(acks.cluster_id, sizeof(acks.cluster_id), "%s",
			 sk_meta_cluster_id(m));
		sk_meta_start(m, loop);
	} else {
		m = NULL;
	}
	if (sk_offsets_open(&o, loop, root, ignore_load, on_offset_durable,
			    NULL, &err))
		o = NULL;
	for (int s = 0; s < N_STEPS && (m || o); s++) {
		if (m) {
			char name[16];
			struct topic_ack *t = &tacks[nt++];

			t->topic = s % N_TOPICS;
			t->parts = s + 1;
			t->del = false;
			snprintf(name, sizeof(name), "t%d", t->topic);
			put_topic(m, name, t->parts, on_topic_settle, t);
			if (s == 1 || s == N_STEPS / 2) {
				t = &tacks[nt++];
				t->topic = -1;
				t->del = s != 1;
				if (t->del)
					sk_meta_topic_delete(m, "doomed",
							     on_topic_settle,
							     t);
				else
					put_topic(m, "doomed", 1,
						  on_topic_settle, t);
			}
		}
		if (o) {
			struct sk_offset_rec r = {
				.op = SK_OFFSET_PUT,
				.group = sk_xstrdup("g"),
				.topic = sk_xstrdup("t0"),
				.partition = s % N_PARTS,
				.offset = (s + 1) * 10,
				.leader_epoch = -1,
				.metadata = sk_xstrdup(""),
				.commit_ms = s,
				.expire_ms = -1,
			};

			sk_offsets_queue(o, &r);
		}
		/* Every other step waits: batches of one and of two. */
		if (s % 2) {
			if (m)
				meta_wait(m);
			if (o)
				offsets_wait(o);
		}
		if (s == N_STEPS / 3 || s == 2 * N_STEPS / 3) {
			checkpoint("meta.db");
			checkpoint("offsets.db");
		}
	}
	/* Power goes with the stores still open: close writes nothing
	 * once crashed, and a clean end is a legitimate outcome too. */
	sk_offsets_close(o);
	sk_meta_close(m);
}

static bool integrity_ok(const char *file, char *why, size_t cap)
{
	char path[300];
	sqlite3 *db;
	sqlite3_stmt *st = NULL;
	bool good = false;

	snprintf(path, sizeof(path), "%s/%s", root, file);
	if (access(path, F_OK) != 0)
		return true; /* never created durably: fine */
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) ==
		    SQLITE_OK &&
	    sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) ==
		    SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		const char *res = (const char *)sqlite3_column_text(st, 0);

		good = res && strcmp(res, "ok") == 0;
		if (!good)
			snprintf(why, cap, "%s: integrity_check: %s", file,
				 res ? res : "?");
	} else {
		snprintf(why, cap, "%s: %s", file, sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return good;
}

/* Reopen both stores and check the acknowledgements; "" if all good. */
static void verify(char *why, size_t cap)
{
	struct sk_meta *m;
	struct sk_offsets *o;
	struct sk_err err;
	struct found f = { 0 };
	int64_t got[N_PARTS];

	why[0] = '\0';
	if (!integrity_ok("meta.db", why, cap) ||
	    !integrity_ok("offsets.db", why, cap))
		return;
	if (sk_meta_open(&m, root, &err)) {
		snprintf(why, cap, "meta reopen: %.400s", err.msg);
		return;
	}
	sk_meta_start(m, loop);
	if (acks.cluster_id[0] &&
	    strcmp(acks.cluster_id, sk_meta_cluster_id(m)) != 0)
		snprintf(why, cap, "cluster id %s became %s", acks.cluster_id,
			 sk_meta_cluster_id(m));
	if (!why[0] && sk_meta_topics_load(m, on_topic, &f, &err))
		snprintf(why, cap, "topics load: %.400s", err.msg);
	for (int t = 0; !why[0] && t < N_TOPICS; t++) {
		char name[16];
		int i;

		snprintf(name, sizeof(name), "t%d", t);
		i = found_idx(&f, name);
		if (acks.parts[t] && i < 0)
			snprintf(why, cap, "%s: acknowledged, missing", name);
		else if (i >= 0 && f.parts[i] < acks.parts[t])
			snprintf(why, cap, "%s: %d partitions, %d acknowledged",
				 name, f.parts[i], acks.parts[t]);
		else if (i >= 0 && f.cfg[i] != f.parts[i])
			snprintf(why, cap,
				 "%s: %d partitions with the config of %ld",
				 name, f.parts[i], f.cfg[i]);
	}
	if (!why[0]) {
		int i = found_idx(&f, "doomed");

		if (acks.doomed_deleted && i >= 0)
			snprintf(why, cap,
				 "doomed: deletion acknowledged, "
				 "still there");
		else if (acks.doomed_created && !acks.doomed_deleted && i < 0)
			snprintf(why, cap,
				 "doomed: creation acknowledged, "
				 "missing");
	}
	if (!why[0]) {
		put_topic(m, "after", 1, NULL, NULL);
		if (meta_wait(m))
			snprintf(why, cap,
				 "meta: a write after recovery "
				 "failed");
	}
	sk_meta_close(m);
	if (why[0])
		return;

	for (int p = 0; p < N_PARTS; p++)
		got[p] = -1;
	if (sk_offsets_open(&o, loop, root, on_offset_load, on_offset_durable,
			    got, &err)) {
		snprintf(why, cap, "offsets reopen: %.400s", err.msg);
		return;
	}
	for (int p = 0; !why[0] && p < N_PARTS; p++) {
		if (got[p] < acks.offset[p])
			snprintf(why, cap,
				 "partition %d: offset %lld, %lld acknowledged",
				 p, (long long)got[p],
				 (long long)acks.offset[p]);
		else if (got[p] >= 0 &&
			 (got[p] % 10 || (got[p] / 10 - 1) % N_PARTS != p))
			snprintf(why, cap,
				 "partition %d: offset %lld was never written",
				 p, (long long)got[p]);
	}
	if (!why[0]) {
		struct sk_offset_rec r = {
			.op = SK_OFFSET_PUT,
			.group = sk_xstrdup("g"),
			.topic = sk_xstrdup("t0"),
			.partition = 0,
			.offset = 1000,
			.leader_epoch = -1,
			.metadata = sk_xstrdup(""),
			.commit_ms = 1,
			.expire_ms = -1,
		};

		sk_offsets_queue(o, &r);
		if (offsets_wait(o))
			snprintf(why, cap,
				 "offsets: a write after recovery "
				 "failed");
	}
	sk_offsets_close(o);
}

static void test_walk(void)
{
	const char *env = getenv("CRASH_POINTS");
	uint64_t want = env ? strtoull(env, NULL, 10) : 40;
	uint64_t total, step, tried = 0, bad = 0, crashed = 0;
	char why[512];

	/* A run without a crash counts the points and must verify too. */
	fresh_root();
	crash_vfs_reset(root, 0);
	workload();
	total = crash_vfs_ops();
	crash_vfs_power_loss(false);
	crash_vfs_reset(root, 0);
	verify(why, sizeof(why));
	ok(!why[0], "no crash: everything acknowledged is there (%s)",
	   why[0] ? why : "ok");
	ok(acks.parts[0] > 0 && acks.offset[0] >= 0,
	   "no crash: the workload was acknowledged");
	ok(total > 50, "the workload made %llu mutating calls",
	   (unsigned long long)total);

	step = want == 0 || want >= total ? 1 : total / want;
	for (uint64_t k = 1; k <= total; k += step) {
		fresh_root();
		crash_vfs_reset(root, k);
		workload();
		crashed += crash_vfs_crashed();
		crash_vfs_power_loss(k % 2);
		crash_vfs_reset(root, 0);
		verify(why, sizeof(why));
		tried++;
		if (why[0] && bad++ < 5)
			diag("crash point %llu%s: %s", (unsigned long long)k,
			     k % 2 ? " (torn)" : "", why);
	}
	is(bad, 0,
	   "%llu crash points of %llu: acknowledged metadata and "
	   "offsets survive power loss",
	   (unsigned long long)tried, (unsigned long long)total);
	is(crashed, tried, "every sampled point crashed the workload");
}

int main(void)
{
	const char *shm = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	sk_say_setup((enum sk_say_level)(SK_SAY_ERROR + 1), SK_SAY_TEXT);
	snprintf(root, sizeof(root), "%s/sk_test_meta_%d", shm, (int)getpid());
	crash_vfs_install();
	loop = ev_loop_new(EVFLAG_AUTO);
	ev_timer_init(&keepalive, on_keepalive, 3600, 3600);
	ev_timer_start(loop, &keepalive);

	plan(19);
	test_basics();
	test_kv_power_loss();
	test_walk();

	ev_timer_stop(loop, &keepalive);
	ev_loop_destroy(loop);
	crash_vfs_reset(NULL, 0);
	rm_root();
	return check_status();
}
