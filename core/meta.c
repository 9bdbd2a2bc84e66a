/*
 * The metadata store. Two connections to DIR/meta.db:
 *   - wr, synchronous=FULL, owned by the writer thread (sqlite_writer.h)
 *     once sk_meta_start ran: topic changes, group-committed, with their
 *     WAL checkpoints (and so every fsync) on that thread;
 *   - db, on the loop thread: reads, and the plugins' key/value store,
 *     whose ABI is synchronous. It never checkpoints (autocheckpoint 0)
 *     and does not sync its commits (NORMAL); each plugin write queues a
 *     META_SYNC for the writer, whose FULL commit syncs the WAL they
 *     share, so the value is durable milliseconds later. Its busy
 *     timeout bounds how long a plugin write may wait for a topic
 *     commit in flight.
 */
#include "meta.h"

#include <assert.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "sqlite_writer.h"

struct sk_meta {
	sqlite3 *db; /* loop thread */
	sqlite3 *wr; /* writer thread once started */
	struct sk_sqlw *writer;
	char cluster_id[32];
};

enum meta_op {
	META_TOPIC_PUT,
	META_TOPIC_DEL,
	META_SYNC, /* commit something, syncing the loop's plugin writes */
};

/* A queued topic change; strings owned. */
struct meta_rec {
	enum meta_op op;
	char *name;
	int32_t partitions;
	struct sk_config_kv *configs;
	size_t n_configs;
	sk_meta_settle_fn settle; /* may be NULL */
	void *arg;
};

static const char schema_v1[] =
	"CREATE TABLE IF NOT EXISTS kv ("
	"  key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS topics ("
	"  name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS topic_configs ("
	"  topic TEXT NOT NULL REFERENCES topics(name) ON DELETE CASCADE,"
	"  key TEXT NOT NULL, value TEXT NOT NULL,"
	"  PRIMARY KEY (topic, key));"
	"CREATE TABLE IF NOT EXISTS plugin_kv ("
	"  plugin TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
	"  PRIMARY KEY (plugin, key));"
	"PRAGMA user_version = 1;";

static int db_fail(struct sk_meta *m, struct sk_err *err, const char *what)
{
	return sk_err_setc(err, -EIO, "metadata store: %s: %s", what,
			   sqlite3_errmsg(m->db));
}

static int exec_on(sqlite3 *db, const char *sql, struct sk_err *err)
{
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return sk_err_setc(err, -EIO, "metadata store: %s: %s", sql,
				   sqlite3_errmsg(db));
	return 0;
}

/* A Kafka-style cluster id: 16 random bytes as unpadded base64url. */
static void make_cluster_id(char *out)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
				  "rstuvwxyz0123456789-_";
	uint8_t r[16];
	size_t n = 0;

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		uint64_t t = (uint64_t)sk_now_ms() ^ (uint64_t)getpid();
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (uint8_t)(t >> (i % 8 * 8)) ^ (uint8_t)(i * 131);
	}
	for (size_t i = 0; i < 16; i += 3) {
		uint32_t v = (uint32_t)r[i] << 16;
		if (i + 1 < 16)
			v |= (uint32_t)r[i + 1] << 8;
		if (i + 2 < 16)
			v |= r[i + 2];
		out[n++] = b64[v >> 18 & 63];
		out[n++] = b64[v >> 12 & 63];
		if (i + 1 < 16)
			out[n++] = b64[v >> 6 & 63];
		if (i + 2 < 16)
			out[n++] = b64[v & 63];
	}
	out[n] = '\0';
}

static int load_cluster_id(struct sk_meta *m, struct sk_err *err)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(m->db,
			       "SELECT value FROM kv WHERE key = 'cluster.id'",
			       -1, &st, NULL) != SQLITE_OK)
		return db_fail(m, err, "read cluster id");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		snprintf(m->cluster_id, sizeof(m->cluster_id), "%s",
			 (const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
		return 0;
	}
	sqlite3_finalize(st);
	make_cluster_id(m->cluster_id);
	/* On the synchronous=FULL connection: durable before we go on. */
	if (sqlite3_prepare_v2(m->wr, "INSERT INTO kv VALUES ('cluster.id', ?)",
			       -1, &st, NULL) != SQLITE_OK)
		return sk_err_setc(err, -EIO,
				   "metadata store: store cluster id: %s",
				   sqlite3_errmsg(m->wr));
	sqlite3_bind_text(st, 1, m->cluster_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE
		       ? 0
		       : sk_err_setc(err, -EIO,
				     "metadata store: store cluster id: %s",
				     sqlite3_errmsg(m->wr));
}

static int open_conn(sqlite3 **db, const char *path, const char *pragmas,
		     struct sk_err *err)
{
	if (sqlite3_open_v2(path, db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				    SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK)
		return sk_err_setc(err, -EIO, "cannot open %s: %s", path,
				   *db ? sqlite3_errmsg(*db) : "no memory");
	sqlite3_busy_timeout(*db, 1000);
	return exec_on(*db, pragmas, err);
}

int sk_meta_open(struct sk_meta **out, const char *dir, struct sk_err *err)
{
	struct sk_meta *m = sk_xcalloc(1, sizeof(*m));
	char *path = sk_xasprintf("%s/meta.db", dir);
	int rc;

	/*
	 * The writer's connection first: it creates the file in WAL mode
	 * and the schema, durably (FULL syncs the WAL on every commit).
	 */
	rc = open_conn(&m->wr, path,
		       "PRAGMA journal_mode = WAL;"
		       "PRAGMA synchronous = FULL;"
		       "PRAGMA foreign_keys = ON;",
		       err);
	if (rc == 0)
		rc = exec_on(m->wr, schema_v1, err);
	if (rc == 0)
		rc = open_conn(&m->db, path,
			       "PRAGMA synchronous = NORMAL;"
			       "PRAGMA wal_autocheckpoint = 0;"
			       "PRAGMA foreign_keys = ON;",
			       err);
	if (rc == 0)
		rc = load_cluster_id(m, err);
	if (rc)
		goto fail;
	free(path);
	*out = m;
	return 0;
fail:
	free(path);
	sk_meta_close(m);
	return rc;
}

static void rec_free(struct meta_rec *r)
{
	free(r->name);
	for (size_t i = 0; i < r->n_configs; i++) {
		free(r->configs[i].key);
		free(r->configs[i].value);
	}
	free(r->configs);
}

void sk_meta_close(struct sk_meta *m)
{
	if (!m)
		return;
	/* Writes what is queued and settles it; the broker flushed while
	 * its topics were alive, so nothing is left by now. */
	sk_sqlw_free(m->writer);
	sqlite3_close(m->db);
	sqlite3_close(m->wr);
	free(m);
}

const char *sk_meta_cluster_id(const struct sk_meta *m)
{
	return m->cluster_id;
}

static int step_done(struct sk_meta *m, sqlite3_stmt *st, struct sk_err *err,
		     const char *what)
{
	int rc = sqlite3_step(st);

	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_fail(m, err, what);
}

/* Writer thread: run a prepared statement once; 0 or -EIO. */
static int step_once(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* Writer thread: prepare sql and bind the topic name as ?1. */
static sqlite3_stmt *prep(sqlite3 *db, const char *sql, const char *name)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	return st;
}

/* Writer thread: one topic change, inside the batch's transaction. */
static int write_rec(void *ctx, sqlite3 *db, const void *rec)
{
	const struct meta_rec *r = rec;
	sqlite3_stmt *st;

	(void)ctx;
	if (r->op == META_SYNC) {
		/* A change, so that the commit writes and syncs the WAL. */
		st = prep(db,
			  "INSERT INTO kv VALUES (?1, 1) ON CONFLICT(key) "
			  "DO UPDATE SET value = value + 1",
			  "plugin_kv_syncs");
		return st ? step_once(st) : -EIO;
	}
	if (r->op == META_TOPIC_DEL) {
		/* Its configs go too: ON DELETE CASCADE. */
		st = prep(db, "DELETE FROM topics WHERE name = ?1", r->name);
		return st ? step_once(st) : -EIO;
	}
	st = prep(db,
		  "INSERT INTO topics VALUES (?1, ?2) ON CONFLICT(name) "
		  "DO UPDATE SET partitions = ?2",
		  r->name);
	if (!st)
		return -EIO;
	sqlite3_bind_int(st, 2, r->partitions);
	if (step_once(st))
		return -EIO;
	st = prep(db, "DELETE FROM topic_configs WHERE topic = ?1", r->name);
	if (!st || step_once(st))
		return -EIO;
	for (size_t i = 0; i < r->n_configs; i++) {
		st = prep(db, "INSERT INTO topic_configs VALUES (?1, ?2, ?3)",
			  r->name);
		if (!st)
			return -EIO;
		sqlite3_bind_text(st, 2, r->configs[i].key, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, r->configs[i].value, -1,
				  SQLITE_STATIC);
		if (step_once(st))
			return -EIO;
	}
	return 0;
}

static void settle_rec(void *ctx, void *rec, int rc)
{
	struct meta_rec *r = rec;

	(void)ctx;
	if (r->settle)
		r->settle(r->arg, rc);
	rec_free(r);
}

static const struct sk_sqlw_ops writer_ops = {
	.rec_size = sizeof(struct meta_rec),
	.write = write_rec,
	.settle = settle_rec,
};

void sk_meta_start(struct sk_meta *m, struct ev_loop *loop)
{
	m->writer = sk_sqlw_new(loop, m->wr, "meta", &writer_ops, m);
}

void sk_meta_topic_put(struct sk_meta *m, const char *name, int32_t partitions,
		       const struct sk_config_kv *configs, size_t n_configs,
		       sk_meta_settle_fn settle, void *arg)
{
	struct meta_rec r = {
		.op = META_TOPIC_PUT,
		.name = sk_xstrdup(name),
		.partitions = partitions,
		.n_configs = n_configs,
		.settle = settle,
		.arg = arg,
	};

	assert(m->writer); /* sk_meta_start first */
	if (n_configs) {
		r.configs = sk_xcalloc(n_configs, sizeof(*r.configs));
		for (size_t i = 0; i < n_configs; i++) {
			r.configs[i].key = sk_xstrdup(configs[i].key);
			r.configs[i].value = sk_xstrdup(configs[i].value);
		}
	}
	sk_sqlw_queue(m->writer, &r);
}

void sk_meta_topic_delete(struct sk_meta *m, const char *name,
			  sk_meta_settle_fn settle, void *arg)
{
	struct meta_rec r = {
		.op = META_TOPIC_DEL,
		.name = sk_xstrdup(name),
		.settle = settle,
		.arg = arg,
	};

	assert(m->writer);
	sk_sqlw_queue(m->writer, &r);
}

void sk_meta_wait(struct sk_meta *m, sk_meta_settle_fn done, void *arg)
{
	if (!m->writer) {
		done(arg, 0);
		return;
	}
	sk_sqlw_wait(m->writer, done, arg);
}

size_t sk_meta_pending(const struct sk_meta *m)
{
	return m->writer ? sk_sqlw_pending(m->writer) : 0;
}

void sk_meta_flush(struct sk_meta *m)
{
	if (m && m->writer)
		sk_sqlw_flush(m->writer);
}

/* Read the config overrides of one topic into a new array. */
static int load_configs(struct sk_meta *m, const char *name,
			struct sk_config_kv **out, size_t *n,
			struct sk_err *err)
{
	sqlite3_stmt *st;
	size_t cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (sqlite3_prepare_v2(m->db,
			       "SELECT key, value FROM topic_configs "
			       "WHERE topic = ? ORDER BY key",
			       -1, &st, NULL) != SQLITE_OK)
		return db_fail(m, err, "load topic configs");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 8;
			*out = sk_xrealloc(*out, cap * sizeof(**out));
		}
		(*out)[*n].key =
			sk_xstrdup((const char *)sqlite3_column_text(st, 0));
		(*out)[*n].value =
			sk_xstrdup((const char *)sqlite3_column_text(st, 1));
		(*n)++;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_fail(m, err, "load topic configs");
}

static void free_configs(struct sk_config_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

int sk_meta_topics_load(struct sk_meta *m, sk_meta_topic_fn fn, void *arg,
			struct sk_err *err)
{
	sqlite3_stmt *st;
	int rc = 0, step = SQLITE_DONE;

	if (sqlite3_prepare_v2(m->db,
			       "SELECT name, partitions FROM topics ORDER BY "
			       "name",
			       -1, &st, NULL) != SQLITE_OK)
		return db_fail(m, err, "load topics");
	while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		int32_t parts = sqlite3_column_int(st, 1);
		struct sk_config_kv *kv;
		size_t n;

		rc = load_configs(m, name, &kv, &n, err);
		if (rc == 0)
			rc = fn(arg, name, parts, kv, n, err);
		free_configs(kv, n);
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = db_fail(m, err, "load topics");
	sqlite3_finalize(st);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Plugin key/value store */

/* After a plugin write on the loop connection: have the writer sync it. */
static int kv_synced(struct sk_meta *m, int rc)
{
	struct meta_rec r = { .op = META_SYNC, .name = NULL };

	if (rc == 0 && m->writer)
		sk_sqlw_queue(m->writer, &r);
	return rc;
}

int sk_meta_kv_put(struct sk_meta *m, const char *ns, const char *key,
		   const void *value, size_t len, struct sk_err *err)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(m->db,
			       "INSERT OR REPLACE INTO plugin_kv VALUES "
			       "(?, ?, ?)",
			       -1, &st, NULL) != SQLITE_OK)
		return db_fail(m, err, "store plugin value");
	sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	/* A zero-length blob must not be bound as NULL (NOT NULL column). */
	sqlite3_bind_blob(st, 3, len ? value : "", (int)len, SQLITE_STATIC);
	return kv_synced(m, step_done(m, st, err, "store plugin value"));
}

int sk_meta_kv_get(struct sk_meta *m, const char *ns, const char *key,
		   void *buf, size_t cap, size_t *len, struct sk_err *err)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(m->db,
			       "SELECT value FROM plugin_kv WHERE plugin = ? "
			       "AND key = ?",
			       -1, &st, NULL) != SQLITE_OK)
		return db_fail(m, err, "read plugin value");
	sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		size_t n = (size_t)sqlite3_column_bytes(st, 0);

		*len = n;
		if (n > cap) {
			rc = -ENOBUFS;
		} else {
			if (n)
				memcpy(buf, sqlite3_column_blob(st, 0), n);
			rc = 0;
		}
	} else {
		rc = rc == SQLITE_DONE ? -ENOENT
				       : db_fail(m, err, "read plugin value");
	}
	sqlite3_finalize(st);
	return rc;
}

int sk_meta_kv_del(struct sk_meta *m, const char *ns, const char *key,
		   struct sk_err *err)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(m->db,
			       "DELETE FROM plugin_kv WHERE plugin = ? AND "
			       "key = ?",
			       -1, &st, NULL) != SQLITE_OK)
		return db_fail(m, err, "delete plugin value");
	sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	return kv_synced(m, step_done(m, st, err, "delete plugin value"));
}

int sk_meta_kv_list(struct sk_meta *m, const char *ns, const char *prefix,
		    sk_meta_kv_fn fn, void *arg, struct sk_err *err)
{
	sqlite3_stmt *st;
	int rc = 0, step = SQLITE_DONE;

	if (sqlite3_prepare_v2(m->db,
			       "SELECT key, value FROM plugin_kv WHERE "
			       "plugin = ?1 AND substr(key, 1, length(?2)) = "
			       "?2 ORDER BY key",
			       -1, &st, NULL) != SQLITE_OK)
		return db_fail(m, err, "list plugin values");
	sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, prefix, -1, SQLITE_STATIC);
	while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
		rc = fn(arg, (const char *)sqlite3_column_text(st, 0),
			sqlite3_column_blob(st, 1),
			(size_t)sqlite3_column_bytes(st, 1));
	if (rc == 0 && step != SQLITE_DONE)
		rc = db_fail(m, err, "list plugin values");
	sqlite3_finalize(st);
	return rc;
}
