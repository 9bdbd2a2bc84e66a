/*
 * The durable side of committed offsets: DIR/offsets.db and its single
 * writer thread. See offsets.h for the group-commit scheme.
 *
 * The sqlite connection is opened and read on the loop thread before the
 * writer starts; from then on only the writer thread touches it (one job
 * at a time, so SQLITE_OPEN_NOMUTEX is enough), until sk_offsets_close
 * has joined the thread.
 */
#include "offsets.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "proto.h"
#include "say.h"

/* One transaction's worth of records and the waiters it completes. */
struct batch {
	struct sk_job job;
	struct sk_offsets *o;
	struct sk_offset_rec *recs;
	size_t n, cap;
	struct {
		sk_offsets_done_fn fn;
		void *arg;
	} * waiters;
	size_t n_waiters, cap_waiters;
	int rc;		  /* set by the writer */
	char errmsg[256]; /* sqlite's words when rc != 0 */
};

struct sk_offsets {
	struct ev_loop *loop;
	sqlite3 *db;
	sqlite3_stmt *put, *del, *del_group;
	struct sk_pool *pool;
	struct batch *cur;	/* accumulating, not yet submitted */
	struct batch *inflight; /* with the writer (at most one) */
	ev_prepare kick;	/* submits cur before the loop sleeps */
	sk_offsets_apply_fn apply;
	void *arg;
	size_t pending; /* records in cur and inflight */
};

static const char schema_v1[] =
	"CREATE TABLE IF NOT EXISTS offsets ("
	"  group_id TEXT NOT NULL, topic TEXT NOT NULL,"
	"  part INTEGER NOT NULL, committed INTEGER NOT NULL,"
	"  leader_epoch INTEGER NOT NULL, metadata TEXT NOT NULL,"
	"  commit_ms INTEGER NOT NULL, expire_ms INTEGER NOT NULL,"
	"  PRIMARY KEY (group_id, topic, part)) WITHOUT ROWID;"
	"PRAGMA user_version = 1;";

size_t sk_offset_key(char *buf, size_t cap, const char *topic, size_t tlen,
		     int32_t partition)
{
	if (tlen + 5 > cap)
		tlen = cap - 5; /* callers size buf for the longest topic */
	if (tlen) /* a null topic name from the wire has no bytes at all */
		memcpy(buf, topic, tlen);
	buf[tlen] = '\0';
	sk_put_be32((uint8_t *)buf + tlen + 1, (uint32_t)partition);
	return tlen + 5;
}

void sk_offset_rec_free(struct sk_offset_rec *r)
{
	free(r->group);
	free(r->topic);
	free(r->metadata);
	r->group = r->topic = r->metadata = NULL;
}

static void batch_free(struct batch *bt)
{
	for (size_t i = 0; i < bt->n; i++)
		sk_offset_rec_free(&bt->recs[i]);
	free(bt->recs);
	free(bt->waiters);
	free(bt);
}

/* Bind and run one prepared statement; SQLITE_DONE expected. */
static int step(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

static int write_rec(struct sk_offsets *o, const struct sk_offset_rec *r)
{
	sqlite3_stmt *st;

	switch (r->op) {
	case SK_OFFSET_PUT:
		st = o->put;
		sqlite3_bind_text(st, 1, r->group, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, r->topic, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 3, r->partition);
		sqlite3_bind_int64(st, 4, r->offset);
		sqlite3_bind_int(st, 5, r->leader_epoch);
		sqlite3_bind_text(st, 6, r->metadata, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 7, r->commit_ms);
		sqlite3_bind_int64(st, 8, r->expire_ms);
		return step(st);
	case SK_OFFSET_DEL:
		st = o->del;
		sqlite3_bind_text(st, 1, r->group, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, r->topic, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 3, r->partition);
		sqlite3_bind_int64(st, 4, r->commit_ms);
		return step(st);
	case SK_OFFSET_DEL_GROUP:
		st = o->del_group;
		sqlite3_bind_text(st, 1, r->group, -1, SQLITE_STATIC);
		return step(st);
	}
	return -EINVAL;
}

/* Writer thread: the whole batch in one transaction. */
static void batch_run(struct sk_job *job)
{
	struct batch *bt = sk_container_of(job, struct batch, job);
	struct sk_offsets *o = bt->o;
	int rc = 0;

	if (bt->n == 0)
		return;
	if (sqlite3_exec(o->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK)
		rc = -EIO;
	for (size_t i = 0; rc == 0 && i < bt->n; i++)
		rc = write_rec(o, &bt->recs[i]);
	if (rc == 0 &&
	    sqlite3_exec(o->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = -EIO;
	if (rc) {
		snprintf(bt->errmsg, sizeof(bt->errmsg), "%s",
			 sqlite3_errmsg(o->db));
		sqlite3_exec(o->db, "ROLLBACK", NULL, NULL, NULL);
	}
	bt->rc = rc;
}

static void submit(struct sk_offsets *o)
{
	o->inflight = o->cur;
	o->cur = NULL;
	o->inflight->job.run = batch_run;
	sk_pool_submit(o->pool, &o->inflight->job);
}

/* Loop thread, after the writer: apply, answer, and start the next. */
static void batch_done(struct sk_job *job)
{
	struct batch *bt = sk_container_of(job, struct batch, job);
	struct sk_offsets *o = bt->o;

	if (bt->rc)
		sk_error("offsets store: cannot write %zu records: %s", bt->n,
			 bt->errmsg);
	else
		for (size_t i = 0; i < bt->n; i++)
			o->apply(o->arg, &bt->recs[i]);
	o->pending -= bt->n;
	o->inflight = NULL;
	for (size_t i = 0; i < bt->n_waiters; i++)
		bt->waiters[i].fn(bt->waiters[i].arg, bt->rc);
	batch_free(bt);
	/* What queued up during this write goes now, as one batch. */
	if (o->cur)
		submit(o);
}

static void on_kick(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct sk_offsets *o = sk_container_of(w, struct sk_offsets, kick);

	(void)revents;
	ev_prepare_stop(loop, w);
	if (o->cur && !o->inflight)
		submit(o);
}

static struct batch *cur_batch(struct sk_offsets *o)
{
	if (!o->cur) {
		o->cur = sk_xcalloc(1, sizeof(*o->cur));
		o->cur->o = o;
		o->cur->job.done = batch_done;
	}
	if (!o->inflight && !ev_is_active(&o->kick))
		ev_prepare_start(o->loop, &o->kick);
	return o->cur;
}

void sk_offsets_queue(struct sk_offsets *o, struct sk_offset_rec *r)
{
	struct batch *bt = cur_batch(o);

	if (bt->n == bt->cap) {
		bt->cap = bt->cap ? bt->cap * 2 : 64;
		bt->recs = sk_xrealloc(bt->recs, bt->cap * sizeof(*bt->recs));
	}
	bt->recs[bt->n++] = *r;
	o->pending++;
	memset(r, 0, sizeof(*r));
}

void sk_offsets_wait(struct sk_offsets *o, sk_offsets_done_fn done, void *arg)
{
	struct batch *bt;

	if (!o->cur && !o->inflight) {
		done(arg, 0); /* nothing outstanding: already durable */
		return;
	}
	bt = o->cur ? o->cur : o->inflight;
	if (bt->n_waiters == bt->cap_waiters) {
		bt->cap_waiters = bt->cap_waiters ? bt->cap_waiters * 2 : 16;
		bt->waiters = sk_xrealloc(
			bt->waiters, bt->cap_waiters * sizeof(*bt->waiters));
	}
	bt->waiters[bt->n_waiters].fn = done;
	bt->waiters[bt->n_waiters].arg = arg;
	bt->n_waiters++;
}

size_t sk_offsets_pending(const struct sk_offsets *o)
{
	return o->pending;
}

static int db_fail(sqlite3 *db, struct sk_err *err, const char *path,
		   const char *what)
{
	return sk_err_setc(err, -EIO, "offsets store %s: %s: %s", path, what,
			   db ? sqlite3_errmsg(db) : "out of memory");
}

static int load(struct sk_offsets *o, const char *path, sk_offsets_load_fn fn,
		void *arg, struct sk_err *err)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(o->db,
			       "SELECT group_id, topic, part, committed, "
			       "leader_epoch, metadata, commit_ms, expire_ms "
			       "FROM offsets",
			       -1, &st, NULL) != SQLITE_OK)
		return db_fail(o->db, err, path, "load");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct sk_offset_rec r = {
			.op = SK_OFFSET_PUT,
			.group = sk_xstrdup(
				(const char *)sqlite3_column_text(st, 0)),
			.topic = sk_xstrdup(
				(const char *)sqlite3_column_text(st, 1)),
			.partition = sqlite3_column_int(st, 2),
			.offset = sqlite3_column_int64(st, 3),
			.leader_epoch = sqlite3_column_int(st, 4),
			.metadata = sk_xstrdup(
				(const char *)sqlite3_column_text(st, 5)),
			.commit_ms = sqlite3_column_int64(st, 6),
			.expire_ms = sqlite3_column_int64(st, 7),
		};
		fn(arg, &r);
		sk_offset_rec_free(&r);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_fail(o->db, err, path, "load");
}

int sk_offsets_open(struct sk_offsets **out, struct ev_loop *loop,
		    const char *dir, sk_offsets_load_fn loadfn,
		    sk_offsets_apply_fn apply, void *arg, struct sk_err *err)
{
	struct sk_offsets *o = sk_xcalloc(1, sizeof(*o));
	char *path = sk_xasprintf("%s/offsets.db", dir);
	int rc;

	o->loop = loop;
	o->apply = apply;
	o->arg = arg;
	ev_prepare_init(&o->kick, on_kick);
	if (sqlite3_open_v2(path, &o->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				    SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		rc = db_fail(o->db, err, path, "open");
		goto fail;
	}
	sqlite3_busy_timeout(o->db, 5000);
	/*
	 * synchronous=FULL: in WAL mode every COMMIT fsyncs the WAL, so an
	 * acknowledged commit survives a crash or power loss.
	 */
	if (sqlite3_exec(o->db,
			 "PRAGMA journal_mode = WAL;"
			 "PRAGMA synchronous = FULL;",
			 NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(o->db, schema_v1, NULL, NULL, NULL) != SQLITE_OK) {
		rc = db_fail(o->db, err, path, "schema");
		goto fail;
	}
	if (sqlite3_prepare_v2(o->db,
			       "INSERT OR REPLACE INTO offsets VALUES "
			       "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
			       -1, &o->put, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(o->db,
			       "DELETE FROM offsets WHERE group_id = ?1 AND "
			       "topic = ?2 AND part = ?3 AND "
			       "(?4 < 0 OR commit_ms = ?4)",
			       -1, &o->del, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(o->db, "DELETE FROM offsets WHERE group_id = ?1",
			       -1, &o->del_group, NULL) != SQLITE_OK) {
		rc = db_fail(o->db, err, path, "prepare");
		goto fail;
	}
	rc = load(o, path, loadfn, arg, err);
	if (rc)
		goto fail;
	o->pool = sk_pool_new(loop, 1, "offsets");
	free(path);
	*out = o;
	return 0;
fail:
	free(path);
	sk_offsets_close(o);
	return rc;
}

void sk_offsets_close(struct sk_offsets *o)
{
	if (!o)
		return;
	ev_prepare_stop(o->loop, &o->kick);
	if (o->pool) {
		if (o->cur && !o->inflight)
			submit(o);
		/* Runs every queued batch and its done() here. */
		sk_pool_free(o->pool);
	}
	if (o->cur) /* only without a pool: a failed open */
		batch_free(o->cur);
	sqlite3_finalize(o->put);
	sqlite3_finalize(o->del);
	sqlite3_finalize(o->del_group);
	sqlite3_close(o->db);
	free(o);
}
