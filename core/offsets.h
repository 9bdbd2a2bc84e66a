/*
 * Committed consumer offsets: the in-memory entry type and its durable
 * store.
 *
 * Memory: each group (core/group.h) keeps a map of struct sk_offset by
 * topic and partition. That map is only ever changed by applying records
 * that the store has made durable, in the order they were queued, so what
 * OffsetFetch sees is always on disk and a delete can never be overtaken
 * by an older commit.
 *
 * Disk: DIR/offsets.db, a sqlite3 file of its own (WAL, synchronous=FULL),
 * owned by a single writer thread (core/sqlite_writer.h, shared with the
 * metadata store). It is kept apart from meta.db so that the two writers
 * never contend for sqlite's write lock, and so the schemas migrate
 * independently (PRAGMA user_version of this file).
 *
 * Group commit: records and waiters queue up on the loop thread; before
 * the loop next sleeps the queue becomes a batch, and the writer stores a
 * whole batch in one transaction. While one batch is being written the
 * next one accumulates, so the number of fsyncs per second stays bounded
 * whatever the commit rate. A waiter (an OffsetCommit response) runs only
 * after its batch committed and was applied; when a write fails, that
 * batch and the one queued behind it are dropped and their waiters get
 * -EIO.
 */
#ifndef SK_OFFSETS_H
#define SK_OFFSETS_H

#include <ev.h>

#include "hmap.h"
#include "list.h"

/* One committed offset, in its group's map. */
struct sk_offset {
	struct sk_hnode node; /* key: topic, NUL, partition (4 bytes BE) */
	char *key;	      /* owned; starts with the topic name */
	int32_t partition;
	int64_t offset;
	int32_t leader_epoch; /* -1 if the client sent none */
	char *metadata;	      /* owned, never NULL ("" for none) */
	int64_t commit_ms;    /* wall clock of the commit */
	int64_t expire_ms;    /* explicit expiry (OffsetCommit v2-4), or -1 */
};

static inline const char *sk_offset_topic(const struct sk_offset *o)
{
	return o->key;
}

/* Build the map key of (topic, partition) into buf; returns its length. */
size_t sk_offset_key(char *buf, size_t cap, const char *topic, size_t tlen,
		     int32_t partition);

enum sk_offset_op {
	SK_OFFSET_PUT,	     /* insert or replace one offset */
	SK_OFFSET_DEL,	     /* delete one offset (if commit_ms matches) */
	SK_OFFSET_DEL_GROUP, /* delete every offset of the group */
};

/* One mutation, queued for the writer; strings owned by the record. */
struct sk_offset_rec {
	enum sk_offset_op op;
	char *group;
	char *topic; /* PUT, DEL */
	int32_t partition;
	int64_t offset;
	int32_t leader_epoch;
	char *metadata;	   /* PUT; never NULL */
	int64_t commit_ms; /* PUT: the commit time; DEL: only delete the
			    * entry committed at this time (-1: any) */
	int64_t expire_ms;
};

/* Runs on the loop thread for each record of a batch once it is durable. */
typedef void (*sk_offsets_apply_fn)(void *arg, const struct sk_offset_rec *r);
/* Runs once a waiter's batch is done: rc 0, or -EIO if it was not stored. */
typedef void (*sk_offsets_done_fn)(void *arg, int rc);
/* Called for every stored offset by sk_offsets_open (as a PUT record). */
typedef void (*sk_offsets_load_fn)(void *arg, struct sk_offset_rec *r);

struct sk_offsets;

/*
 * Open or create DIR/offsets.db, call load for every stored offset, then
 * start the writer thread. apply runs for every durable record.
 */
int sk_offsets_open(struct sk_offsets **out, struct ev_loop *loop,
		    const char *dir, sk_offsets_load_fn load,
		    sk_offsets_apply_fn apply, void *arg, struct sk_err *err);
/* Queue a record; takes over its strings (r itself is copied). */
void sk_offsets_queue(struct sk_offsets *o, struct sk_offset_rec *r);
/* Call done(arg, rc) once every record queued so far is durable. */
void sk_offsets_wait(struct sk_offsets *o, sk_offsets_done_fn done, void *arg);
/* Records queued or being written (for tests and shutdown). */
size_t sk_offsets_pending(const struct sk_offsets *o);
/* Write what is queued, run every waiter, stop the writer, close. */
void sk_offsets_close(struct sk_offsets *o);

/* Free the strings of a record. */
void sk_offset_rec_free(struct sk_offset_rec *r);

#endif
