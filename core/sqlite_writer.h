/*
 * A durable sqlite writer: one thread that owns a sqlite connection and
 * stores queued records with group commit, completions back on the loop.
 * Shared by the offsets store (offsets.c) and the metadata store (meta.c).
 *
 * Records are fixed-size structs of the user's, copied into the queue.
 * On the loop thread they accumulate in a batch; before the loop next
 * sleeps (ev_prepare) the batch goes to the writer thread (an sk_pool of
 * one), which stores it in one transaction (BEGIN IMMEDIATE ... COMMIT).
 * While a batch is being written the next one accumulates, so the number
 * of commits (fsyncs with synchronous=FULL) per second stays bounded
 * whatever the rate of records.
 *
 * Once a batch is done, back on the loop: settle(rec, 0) for each record
 * in order, then the waiters. When the write failed, that batch and the
 * one queued behind it (written against state that now never existed)
 * both fail: settle(rec, -EIO) runs for each of their records newest
 * first, so a user that applied records ahead of the disk can undo them
 * in reverse, then every waiter of both gets -EIO.
 */
#ifndef SK_SQLITE_WRITER_H
#define SK_SQLITE_WRITER_H

#include <ev.h>
#include <sqlite3.h>
#include <stddef.h>

struct sk_sqlw;

struct sk_sqlw_ops {
	size_t rec_size; /* bytes of one record */
	/* Writer thread: store one record in the open transaction; 0, or
	 * non-zero to fail the batch (sqlite3_errmsg says why). */
	int (*write)(void *ctx, sqlite3 *db, const void *rec);
	/* Loop thread: the record is durable (rc 0) or was not stored
	 * (-EIO); release what it owns. */
	void (*settle)(void *ctx, void *rec, int rc);
};

/* Runs once every record queued before the wait is settled: rc 0, or
 * -EIO when any of them could not be stored. */
typedef void (*sk_sqlw_done_fn)(void *arg, int rc);

/*
 * Start a writer thread "skald-<name>" owning db (which the caller opened
 * and closes after sk_sqlw_free). name also prefixes error log lines.
 */
struct sk_sqlw *sk_sqlw_new(struct ev_loop *loop, sqlite3 *db, const char *name,
			    const struct sk_sqlw_ops *ops, void *ctx);
/* Queue a copy of rec (loop thread). */
void sk_sqlw_queue(struct sk_sqlw *w, const void *rec);
/* Call done(arg, rc) once everything queued so far is settled. */
void sk_sqlw_wait(struct sk_sqlw *w, sk_sqlw_done_fn done, void *arg);
/* Records queued or being written. */
size_t sk_sqlw_pending(const struct sk_sqlw *w);
/*
 * Write everything queued and run its completions now, blocking the
 * caller (shutdown, start-up, tests); the writer stays usable.
 */
void sk_sqlw_flush(struct sk_sqlw *w);
/* Flush, stop the thread and free. NULL-safe. */
void sk_sqlw_free(struct sk_sqlw *w);

#endif
