/*
 * The partition log: a directory of segments holding RecordBatch v2 bytes
 * exactly as they go on the wire, with a sparse offset index and a time
 * index per segment.
 *
 * Files of a partition directory, named by the segment's base offset as a
 * 20-digit zero-padded decimal:
 *   00000000000000000000.log        batches, back to back
 *   00000000000000000000.index      offset index (closed segments only)
 *   00000000000000000000.timeindex  time index (closed segments only)
 *   log-start-offset.checkpoint     the log start offset, when DeleteRecords
 *                                   moved it (see sk_partition_delete_before)
 *   recovery.checkpoint             the recovery point (see below)
 * Index files carry a header with a magic, a version, the size of the log
 * file they describe and a CRC-32C of their entries; an index that fails
 * any check is rebuilt from the log.
 *
 * Recovery. The recovery checkpoint names a segment and a size: every
 * segment before it, and that segment up to that size, were synced when
 * the checkpoint was written, and that segment's index files describe
 * exactly that size. It is written after a sync (by the flusher's periodic
 * checkpoint round, sk_partition_checkpoint_begin) and by a clean close,
 * which syncs everything first; so it only ever vouches for bytes already
 * on stable storage. At open, what it vouches for is trusted: index files
 * are checked (header, CRC, and the batches from the last index entry on),
 * not the batches. Everything written after it (the rest of its segment,
 * the segments after it; everything when there is no checkpoint) is
 * scanned: every batch's framing and CRC is verified, the file is cut at
 * the first bad byte (a torn tail) and the segments after a cut are
 * deleted (nothing after a tear was acknowledged: acks=all syncs every
 * earlier segment first). A bad batch in the trusted part of a closed
 * segment is damage, not a tear (see sk_partition_damaged); so it is in
 * the active segment: bytes the checkpoint vouches for were synced and
 * may have been acknowledged, and cutting them would drop them silently.
 * After a clean close the checkpoint matches the active segment's size,
 * so nothing but the last index interval is read. Bit rot in the middle
 * of a trusted closed segment is therefore not seen at open: the scrub
 * (sk_partition_scrub_next, core/scrub.c) reads those back later.
 *
 * Threading: a partition is owned by the event-loop thread, which appends
 * and reads. Segments are reference counted so a reader (a queued
 * sendfile, later another thread) keeps a segment's fd valid after the
 * partition rolled past it or deleted it.
 *
 * The log start offset is the first offset readable. It is the base
 * offset of the first segment, or a later offset inside that segment
 * after DeleteRecords; retention and DeleteRecords only ever move it
 * forward, and they delete whole segments only.
 */
#ifndef SK_LOG_H
#define SK_LOG_H

#include <sys/types.h>

#include "batch.h"

/* What the last sk_partition_open had to do (logs, tests, benchmarks). */
struct sk_log_recovery {
	bool checkpoint;	  /* a valid recovery checkpoint was found */
	bool clean;		  /* ... written by a clean close */
	int64_t bytes_scanned;	  /* bytes whose batches' CRCs were verified */
	int64_t bytes_truncated;  /* cut from torn tails */
	int32_t segments_scanned; /* segments with bytes scanned */
	int32_t segments_dropped; /* deleted after a cut */
	int64_t ms;		  /* time the open took */
};

/* Per-partition settings, taken from the topic config. */
struct sk_log_config {
	int64_t segment_bytes;	      /* segment.bytes: roll past this size */
	int64_t segment_ms;	      /* segment.ms: roll when this old */
	int64_t index_interval_bytes; /* index.interval.bytes */
};

/* One segment file; reference counted (see above). */
struct sk_segment;

/* The fd of the segment's .log file, valid while a reference is held. */
int sk_segment_fd(const struct sk_segment *seg);
void sk_segment_ref(struct sk_segment *seg);
void sk_segment_unref(struct sk_segment *seg);

/* A byte range of whole batches in one segment, for Fetch. */
struct sk_log_slice {
	struct sk_segment *seg; /* referenced; NULL when len == 0 */
	off_t pos;		/* file position of the first batch */
	size_t len;		/* bytes: whole batches only */
};

/* Drop the slice's segment reference. */
void sk_log_slice_release(struct sk_log_slice *s);

struct sk_partition;

/*
 * Open (creating if needed) the partition in directory dir, recovering as
 * described above. Logs what recovery truncated or rebuilt.
 */
int sk_partition_open(struct sk_partition **out, const char *dir,
		      const struct sk_log_config *cfg, struct sk_err *err);

/*
 * Where a partition sends file work its loop-thread callers must not wait
 * for: writing the index files of the segment a roll closed, and deleting
 * the files of segments retention or DeleteRecords removed. fn runs the
 * job's run() on another thread and then its done() on the loop thread
 * (core/pool.h); jobs must run in the order given (one thread). Without
 * one (the default: tests, tools) that work runs inline. log_offload.c.
 */
struct sk_job;
typedef void (*sk_log_offload_fn)(void *arg, struct sk_job *job);
void sk_partition_set_offload(struct sk_partition *p, sk_log_offload_fn fn,
			      void *arg);

/* Apply new settings (after AlterConfigs); takes effect on the next roll. */
void sk_partition_set_config(struct sk_partition *p,
			     const struct sk_log_config *cfg);

/*
 * Close: sync every segment and the directory, write index files for the
 * active segment, then a recovery checkpoint marked clean, so the next
 * open scans nothing (skipped when a sync fails: the next open recovers);
 * close fds (segments stay alive while referenced), free. Safe with NULL.
 * The index files and the checkpoint are written, not synced: the caller
 * syncs the file system after closing all its partitions (one syncfs
 * rather than an fsync per file).
 */
void sk_partition_close(struct sk_partition *p);
/*
 * Release without saving: close fds and free, writing and syncing nothing
 * (a partition about to be removed, or a stop out of time). The next open
 * recovers from the last recovery checkpoint. Safe with NULL.
 */
void sk_partition_abandon(struct sk_partition *p);

/* Close and remove the partition directory with all its files. */
void sk_partition_destroy(struct sk_partition *p);

/*
 * Append one validated batch (len = its whole size). Assigns the next
 * offset as baseOffset in buf (the caller's buffer is modified), rolls the
 * segment first if needed, writes it to the page cache, updates the
 * indexes. On success stores the assigned base offset. On a write error
 * (ENOSPC, EIO) nothing is appended: the segment is truncated back and a
 * negative errno returned.
 */
int sk_partition_append(struct sk_partition *p, uint8_t *buf, size_t len,
			int64_t *base_offset, struct sk_err *err);

/* First offset still in the log (log start offset). */
int64_t sk_partition_start_offset(const struct sk_partition *p);

/*
 * DeleteRecords: advance the log start offset to offset (start <= offset
 * <= end offset; an offset at or below the start changes nothing, so the
 * start never goes back) and delete the closed segments entirely below
 * it. When offset is the end offset and the active segment holds data,
 * a new segment is rolled first so that the old one can go too: "delete
 * everything" then frees the disk, not only hides the records.
 *
 * The new start is made durable before any file is removed, in
 * log-start-offset.checkpoint (written to a .tmp, fdatasync'd, renamed,
 * directory fsync'd): a crash can then neither bring deleted records back
 * nor, if segment unlinks are lost with it, move the start backwards.
 * Retention (below) never writes the file.
 *
 * Returns 0; -ERANGE (offset < 0 or past the end offset); -EAGAIN while a
 * split DeleteRecords (below) is in flight on p; or a negative errno when
 * the checkpoint cannot be written, with nothing changed. A segment file
 * that cannot be removed is logged and left for the next retention run;
 * the start has moved regardless. Its two syncs run on the calling
 * thread: the loop thread uses the split form instead.
 */
int sk_partition_delete_before(struct sk_partition *p, int64_t offset,
			       struct sk_err *err);

/*
 * sk_partition_delete_before in three steps, so that the checkpoint's
 * syncs run off the loop thread (DeleteRecords answers once they are
 * done): begin on the loop thread checks the offset and rolls; run on any
 * thread writes the checkpoint; end on the loop thread moves the start
 * and deletes the segments below it. Runs of one partition must go in the
 * order begun (one worker thread): each records the highest start begun
 * so far. If the partition is closed in between, end changes nothing.
 */
struct sk_log_start_write {
	struct sk_partition *p; /* NULL once the partition was closed */
	struct sk_log_start_write *next; /* p's writes in flight */
	char *dir;			 /* owned until end */
	int64_t start;			 /* the log start offset to record */
	int rc;				 /* of run */
};

/*
 * Returns 1 when w must now be run and ended; 0 when there is nothing to
 * do (offset at or below the start); -ERANGE, or the -errno of a failed
 * roll, with err set.
 */
int sk_partition_delete_begin(struct sk_partition *p, int64_t offset,
			      struct sk_log_start_write *w, struct sk_err *err);
/* Any thread: write the checkpoint; sets w->rc. Touches no partition. */
void sk_log_start_write_run(struct sk_log_start_write *w);
/*
 * Loop thread: apply w. Returns 0, -ECANCELED if the partition was closed
 * meanwhile, or the -errno of the write (the start did not move); err
 * says what. Releases w's resources in every case.
 */
int sk_partition_delete_end(struct sk_log_start_write *w, struct sk_err *err);

/*
 * Retention, applying Kafka's rules in Kafka's order to the oldest
 * segments, stopping at the first one a rule keeps:
 *   - time: a segment whose largest record timestamp (its file's mtime if
 *     it has none) is more than retention_ms before now_ms (-1: never);
 *   - size: while the partition is larger than retention_bytes (-1:
 *     unlimited), the oldest segment if what remains is still at least
 *     retention_bytes;
 *   - log start: a segment entirely below the log start offset (left by
 *     an unlink that failed or a crash during DeleteRecords).
 * Only closed segments are deleted: the active one stays until a roll
 * (segment.bytes, segment.ms) closes it, even when it is expired (Kafka
 * would roll it). The start moves to the first remaining segment's base.
 * Whole segments need no checkpoint: the first segment's base offset is
 * the start. The removal is made durable by the partition's next sync
 * (a crash before it brings segments back, which the next run deletes
 * again). Files are unlinked on the calling (loop) thread: a metadata
 * operation, but one that can take a while for a large file on some
 * filesystems. Readers holding a segment keep reading it.
 *
 * Stores the number of segments deleted; returns 0, or the negative errno
 * of the first unlink that failed (those before it are deleted).
 */
int sk_partition_retention(struct sk_partition *p, int64_t now_ms,
			   int64_t retention_ms, int64_t retention_bytes,
			   int64_t *deleted_segments);
/*
 * Tiered storage (log_remote.c): delete the n oldest segments' local files
 * once their copies are safely in the storage tier. Closed segments only
 * (n < segment count); the local start offset moves to the first
 * remaining segment's base, as for retention. Stores how many went;
 * returns 0, -EINVAL for n too large, or the -errno of the first unlink
 * that failed.
 */
int sk_partition_drop_oldest(struct sk_partition *p, size_t n, size_t *removed);
/* Next offset to be assigned (the high watermark on a single node). */
int64_t sk_partition_end_offset(const struct sk_partition *p);
/* Bytes of all segments. */
int64_t sk_partition_size_bytes(const struct sk_partition *p);

/*
 * Find whole batches starting with the batch that contains offset, up to
 * max_bytes; if min_one, the first batch is returned even when it is
 * larger than max_bytes. Batches never span segments in one slice: a read
 * stops at the end of the segment holding the first batch. offset ==
 * end offset gives an empty slice. Returns 0, or -ERANGE when offset is
 * below the start or above the end offset.
 */
int sk_partition_read(struct sk_partition *p, int64_t offset, size_t max_bytes,
		      bool min_one, struct sk_log_slice *out);

/*
 * ListOffsets by time: the offset of the first record at or after the log
 * start offset whose timestamp is >= ts, and that record's timestamp.
 * Returns 0 when found, -ENOENT when every record is older (Kafka then
 * answers offset -1).
 */
int sk_partition_offset_for_time(struct sk_partition *p, int64_t ts,
				 int64_t *offset, int64_t *timestamp);

/*
 * fdatasync every segment written since the last sync, and the directory
 * if a segment was created, on the calling thread. For the loop thread,
 * use the split form below instead.
 */
int sk_partition_sync(struct sk_partition *p);

/*
 * A sync handed to another thread: prepared on the loop thread, run
 * anywhere, finished on the loop thread. It holds segment references, so
 * it stays valid if the partition rolls or is deleted meanwhile.
 */
#define SK_LOG_CKPT_SIZE 48 /* bytes of recovery.checkpoint */
struct sk_log_sync {
	struct sk_segment **segs; /* referenced */
	size_t n;
	char *dir; /* directory to fsync, or NULL; owned */
	/* its parent, when the partition's directory was created; owned */
	char *parent;
	/*
	 * With sk_partition_checkpoint_begin: the directory to write
	 * recovery.checkpoint to once everything above is synced (NULL: no
	 * checkpoint), and its contents. Owned.
	 */
	char *ckpt_dir;
	uint8_t ckpt[SK_LOG_CKPT_SIZE];
	/* segments (stems) whose index files are synced before it; owned */
	char **idx_stems;
	size_t n_idx;
	int rc;	     /* result of sk_log_sync_run */
	int ckpt_rc; /* of writing the checkpoint (logged; never in rc) */
};

/*
 * Loop thread: take what the next sync must cover (segments written since
 * the last sync; the directory if a segment was created) and mark it
 * clean, so appends from now on are left for the sync after this one.
 * Returns false when there is nothing to sync.
 */
bool sk_partition_sync_begin(struct sk_partition *p, struct sk_log_sync *s);
/*
 * Loop thread: sk_partition_sync_begin, and have the sync also write the
 * recovery checkpoint (see the top of this file) when the recovery point
 * moved since the last one: the active segment's index files are written
 * now for its current size, which is what the checkpoint will name.
 * Nothing for a damaged partition or one whose sync failed. Returns false
 * when there is nothing to sync and the checkpoint is current.
 */
bool sk_partition_checkpoint_begin(struct sk_partition *p,
				   struct sk_log_sync *s);
/*
 * Any thread: fdatasync the segments, fsync the directory (and its
 * parent); sets s->rc. Then, if all that worked, sync the index files the
 * checkpoint relies on and write it (to a .tmp, fdatasync'd, renamed,
 * directory fsync'd); a failure there is logged and kept in s->ckpt_rc:
 * the previous checkpoint stays valid.
 */
int sk_log_sync_run(struct sk_log_sync *s);
/*
 * Loop thread: release the sync. A failed fdatasync may have dropped the
 * dirty pages (Linux reports the error once), so the data cannot be
 * trusted: the segment is flagged and sk_partition_check_sync refuses
 * further appends to its partition.
 */
void sk_log_sync_end(struct sk_log_sync *s);
/* Refuse appends to p if one of its syncs failed; true if so. */
bool sk_partition_check_sync(struct sk_partition *p);

/*
 * True when recovery found a bad batch inside a closed segment or the
 * synced part of the active one (or overlapping segments), or a scrub
 * found one in a closed segment: reads at or after that offset and all appends
 * then fail with -EIO, and offset_for_time answers -EIO when no record
 * before the damage qualifies. The error log names the segment and offset.
 */
bool sk_partition_damaged(const struct sk_partition *p);

/*
 * Scrubbing (core/scrub.c): reading closed segments back to find bit rot
 * that recovery, which trusts a closed segment whose index files check
 * out, and sendfile, which never looks at the bytes, would both miss.
 * One chunk at a time: picked on the loop thread, verified (framing and
 * CRC-32C of every batch) on any thread, judged on the loop thread.
 */
struct sk_scrub_chunk {
	struct sk_segment *seg; /* referenced until end */
	int64_t base;		/* its base offset */
	int64_t pos;		/* first byte to verify: a batch boundary */
	int64_t next;		/* offset expected there (gaps allowed) */
	int64_t limit;		/* stop here: a batch boundary */
	int64_t end_offset;	/* the segment's, checked at its end */
	bool last;		/* limit is the end of the segment */
	/* Set by run. */
	int rc;		    /* 0, or -errno of a read */
	bool bad;	    /* a bad batch at bad_pos */
	int64_t bad_pos;    /* its file position */
	int64_t bad_offset; /* the offset expected there */
	int64_t done_pos;   /* where the next chunk starts */
	int64_t done_next;  /* and the offset expected there */
	char why[160];
};

/*
 * Loop thread: turn c into the next chunk of p to verify, of at most
 * about max_bytes. c is zeroed for the first chunk of p; afterwards it
 * is the chunk before, a cursor: the walk goes on in its segment if that
 * is still p's (its reference makes the comparison safe), else from the
 * start of the next closed segment. Returns false when p has nothing
 * left to verify (or is damaged already); c then holds no reference.
 */
bool sk_partition_scrub_next(struct sk_partition *p, size_t max_bytes,
			     struct sk_scrub_chunk *c);
/* Any thread: verify the chunk. Touches no partition. */
void sk_scrub_chunk_run(struct sk_scrub_chunk *c);
/*
 * Loop thread, with p the partition the chunk came from or NULL if it
 * was closed meanwhile: if the chunk was bad (or could not be read) and
 * its segment is still p's, log file, position and offset and mark p
 * damaged from there. Returns true when it did. c stays the cursor.
 */
bool sk_partition_scrub_end(struct sk_partition *p, struct sk_scrub_chunk *c);
/* Drop the cursor's segment reference (the walk is over); c zeroed. */
void sk_scrub_chunk_release(struct sk_scrub_chunk *c);

/* Number of segment files (metrics and tests). */
size_t sk_partition_segment_count(const struct sk_partition *p);

/* A closed segment, for retention scripts (core/hook.h). */
struct sk_segment_info {
	struct sk_segment *seg; /* referenced: sk_segment_unref when done */
	int64_t base_offset;
	int64_t end_offset;    /* offset after its last batch */
	int64_t max_timestamp; /* largest record timestamp, -1 if none */
	int64_t size;	       /* bytes */
};

/*
 * The closed segments (never the active one), oldest first, at most max
 * of them, each with a reference. Returns how many. Loop thread.
 */
size_t sk_partition_closed_segments(struct sk_partition *p,
				    struct sk_segment_info *out, size_t max);

/* What recovery did at open. */
const struct sk_log_recovery *
sk_partition_recovery(const struct sk_partition *p);

#endif
