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

#include "proto.h"
#include "say.h"
#include "sqlite_writer.h"

struct sk_offsets {
	struct ev_loop *loop;
	sqlite3 *db;
	sqlite3_stmt *put, *del, *del_group;
	struct sk_sqlw *writer; /* owns db once started */
	sk_offsets_apply_fn apply;
	void *arg;
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

/* Bind and run one prepared statement; SQLITE_DONE expected. */
static int step(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* Writer thread: store one record. */
static int write_rec(void *ctx, sqlite3 *db, const void *rec)
{
	struct sk_offsets *o = ctx;
	const struct sk_offset_rec *r = rec;
	sqlite3_stmt *st;

	(void)db;
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

/* Loop thread: a durable record goes to memory; either way, free it. */
static void settle_rec(void *ctx, void *rec, int rc)
{
	struct sk_offsets *o = ctx;

	if (rc == 0)
		o->apply(o->arg, rec);
	sk_offset_rec_free(rec);
}

static const struct sk_sqlw_ops writer_ops = {
	.rec_size = sizeof(struct sk_offset_rec),
	.write = write_rec,
	.settle = settle_rec,
};

void sk_offsets_queue(struct sk_offsets *o, struct sk_offset_rec *r)
{
	sk_sqlw_queue(o->writer, r);
	memset(r, 0, sizeof(*r));
}

void sk_offsets_wait(struct sk_offsets *o, sk_offsets_done_fn done, void *arg)
{
	sk_sqlw_wait(o->writer, done, arg);
}

size_t sk_offsets_pending(const struct sk_offsets *o)
{
	return sk_sqlw_pending(o->writer);
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
	o->writer = sk_sqlw_new(loop, o->db, "offsets", &writer_ops, o);
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
	/* Writes what is queued and runs every completion here. */
	sk_sqlw_free(o->writer);
	sqlite3_finalize(o->put);
	sqlite3_finalize(o->del);
	sqlite3_finalize(o->del_group);
	sqlite3_close(o->db);
	free(o);
}
