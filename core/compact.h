/*
 * Log compaction (cleanup.policy=compact, and compact,delete): the cleaner
 * keeps the latest record of every key in the closed segments of a
 * partition, with Kafka's rules:
 *
 *  - Only closed segments are cleaned; the active one never is. The dirty
 *    part starts at the cleaner checkpoint (offsets below it were cleaned
 *    before) and ends at the first uncleanable offset: the active segment,
 *    or the first segment holding a record younger than
 *    min.compaction.lag.ms.
 *  - A partition is cleaned when its dirty ratio, dirty bytes / (clean +
 *    dirty bytes), is above min.cleanable.dirty.ratio; when its oldest
 *    dirty record is older than max.compaction.lag.ms; or when a kept
 *    tombstone's delete horizon has passed.
 *  - A map of key -> latest offset is built over the dirty part (as much
 *    of it as log.cleaner.dedupe.buffer.size holds: the map's end). Then
 *    every closed segment from the log start to the map's end is
 *    rewritten, consecutive segments merged while they fit segment.bytes:
 *    a record is dropped when the map holds a later offset for its key,
 *    when it has no key (a compacted topic refuses those at produce, but
 *    the policy may have changed), or when it is a tombstone (null value)
 *    whose delete horizon has passed. Records from the map's end on are
 *    kept as they are.
 *  - Offsets never change: a rewritten batch keeps its base offset and
 *    lastOffsetDelta, its records their offset deltas, so offsets simply
 *    have gaps. A batch losing every record goes, except the last of a
 *    rewritten segment, which stays empty (its header alone) so that the
 *    segment ends where the old ones did: recovery takes a gap between
 *    segments for a lost tail. Reads skip such a trailing empty batch to
 *    the next segment, as librdkafka grows its fetch size, for good, on
 *    every answer holding no record. Batches are rewritten with a valid
 *    CRC and recompressed with their own codec; a batch losing nothing is
 *    copied byte for byte.
 *  - Tombstones (KIP-534): the first cleaning that keeps a tombstone
 *    stamps its batch with a delete horizon, now + delete.retention.ms
 *    (attribute bit 6, baseTimestamp = horizon, record timestamp deltas
 *    adjusted so record timestamps do not change); a cleaning at or after
 *    the horizon drops it.
 *  - Control batches, and transactional batches (no transactions yet),
 *    are kept untouched and not mapped, so nothing a transaction wrote can
 *    remove older data.
 *  - A consumer never sees a key go back to an older value: the latest
 *    record of a key is never dropped, except a tombstone past its
 *    horizon (the key is then gone, as Kafka does).
 *
 * Swapping segments in, crash-safely and without blocking the loop:
 *  1. run (a worker thread): reads the closed segments through the
 *     job's own references, writes <base>.log.cleaned for each rewritten
 *     group, builds its index in memory, fdatasyncs it.
 *  2. install (loop): checks the group's segments are still in the
 *     partition (retention or DeleteRecords may have removed some), then
 *     renames .cleaned to <base>.log.<end>.swap (end: the offset after
 *     the segments it replaces) and replaces the segment objects.
 *     Readers holding an old segment keep reading the old inode.
 *  3. commit (worker): fsyncs the directory (the swap is now durable),
 *     writes the cleaner checkpoint, unlinks the replaced segment files
 *     and their indexes, fsyncs the directory again.
 *  4. finish (loop): renames the swap to <base>.log, replacing the old
 *     first segment's file, and writes the new index files.
 * At open, sk_compact_recover removes *.log.cleaned and completes any
 * swap: the segments whose base offset lies in [base, end) are removed
 * and it becomes <base>.log. A swap is only ever named .swap once
 * complete and synced, and old files go only once it is durable.
 *
 * cleaner-offset-checkpoint (28 bytes, big-endian), in the partition
 * directory, written through a .tmp, fdatasync and rename:
 *   0 magic u32 ("SKCC"), 4 version u32 (1), 8 first dirty offset i64,
 *  16 earliest delete horizon of a kept tombstone i64 (INT64_MAX: none),
 *  24 crc u32: CRC-32C of bytes 0-23.
 * A checkpoint lost or behind only costs work (more is seen as dirty);
 * one that is bad is ignored with a warning.
 */
#ifndef SK_COMPACT_H
#define SK_COMPACT_H

#include "batch.h"
#include "buf.h"
#include "log.h"

/* ------------------------------------------------------------------ */
/* The offset map (compact_map.c) */

/*
 * Key -> latest offset, as Kafka's SkimpyOffsetMap: open addressing over
 * 24-byte slots holding a 128-bit SipHash of the key and the offset, so
 * the memory is bounded whatever the keys' size. Two keys sharing a
 * 128-bit hash would be taken for one: not a practical concern.
 */
struct sk_compact_map {
	struct sk_compact_slot *slots; /* n_slots, NULL until first reserve */
	size_t n_slots;		       /* a power of two */
	size_t used;		       /* slots holding a key */
	size_t max_slots;	       /* n_slots may not grow past this */
	int64_t latest;		       /* largest offset put, -1 if none */
};

/* An empty map that may use up to max_bytes. */
void sk_compact_map_init(struct sk_compact_map *m, size_t max_bytes);
void sk_compact_map_free(struct sk_compact_map *m);
/*
 * Make room for n more keys (growing within the budget); false when even
 * the largest table allowed cannot take them at its load factor.
 */
bool sk_compact_map_reserve(struct sk_compact_map *m, size_t n);
/* Record offset for key (after a successful reserve). */
void sk_compact_map_put(struct sk_compact_map *m, const void *key, size_t len,
			int64_t offset);
/* The offset recorded for key, or -1. */
int64_t sk_compact_map_get(const struct sk_compact_map *m, const void *key,
			   size_t len);
/* Keys held. */
static inline size_t sk_compact_map_count(const struct sk_compact_map *m)
{
	return m->used;
}

/* ------------------------------------------------------------------ */
/* Cleaning one partition (compact.c) */

/* The settings of one cleaning, from the topic and broker configs. */
struct sk_compact_config {
	int64_t delete_retention_ms;  /* delete.retention.ms */
	double min_cleanable_ratio;   /* min.cleanable.dirty.ratio */
	int64_t min_lag_ms;	      /* min.compaction.lag.ms */
	int64_t max_lag_ms;	      /* max.compaction.lag.ms */
	int64_t segment_bytes;	      /* segment.bytes: merged groups */
	int64_t index_interval_bytes; /* index.interval.bytes */
	int64_t map_bytes;	      /* log.cleaner.dedupe.buffer.size */
};

/* The cleaner's durable state of one partition (the checkpoint file). */
struct sk_compact_state {
	int64_t first_dirty; /* offsets below were cleaned */
	int64_t horizon;     /* earliest horizon of a kept tombstone */
};

/* What one cleaning did, for the log and tests. */
struct sk_compact_stats {
	bool cleaned;		 /* a pass ran to the end */
	const char *why;	 /* what made it run (static) */
	int64_t first_dirty;	 /* the dirty part cleaned: [first_dirty, */
	int64_t map_end;	 /*  map_end) */
	int64_t keys;		 /* keys in the map */
	int64_t segments_before; /* closed segments rewritten or checked */
	int64_t segments_after;
	int64_t bytes_before;
	int64_t bytes_after;
	int64_t records_removed; /* records dropped (tombstones included) */
	int64_t tombstones_removed;
	int64_t batches_rewritten; /* rewritten batches, emptied included */
	int64_t batches_removed;   /* batches dropped entirely */
	int64_t groups_skipped;	   /* left alone: the partition moved */
	int64_t horizon;	   /* next delete horizon, INT64_MAX none */
};

/* A cleaning in progress: see the steps above. */
struct sk_compact_job;

/* Read dir's cleaner checkpoint; no file gives {0, INT64_MAX}. */
void sk_compact_state_load(const char *dir, struct sk_compact_state *st);

/*
 * Loop thread. Decide whether p needs cleaning now (see above) and if so
 * take what the job needs: references to the closed segments concerned
 * and their sizes. Stores NULL when there is nothing to do. A damaged
 * partition is never cleaned.
 */
void sk_compact_plan(struct sk_partition *p, const struct sk_compact_state *st,
		     const struct sk_compact_config *cfg, int64_t now_ms,
		     struct sk_compact_job **out);
/*
 * Any thread: build the map and write the rewritten segments. Returns 0;
 * -ECANCELED when stopped by sk_compact_abort or sk_compact_cancel;
 * -EBADMSG for a batch that fails its CRC or framing (the partition is
 * then not cleaned: corrupt data is never copied on); -E2BIG when the
 * map cannot hold one batch's keys; another -errno on I/O errors. err
 * says what.
 */
int sk_compact_run(struct sk_compact_job *job, struct sk_err *err);
/* Loop thread: swap the rewritten segments into p (step 2). */
void sk_compact_install(struct sk_partition *p, struct sk_compact_job *job);
/* Any thread: make the swap durable, write the checkpoint (step 3). */
int sk_compact_commit(struct sk_compact_job *job, struct sk_err *err);
/*
 * Loop thread: final renames and indexes (step 4); stores the new state
 * in st and the job's figures in stats (either may be NULL).
 */
void sk_compact_finish(struct sk_partition *p, struct sk_compact_job *job,
		       struct sk_compact_state *st,
		       struct sk_compact_stats *stats);
/*
 * Stop a running job early (shutdown): run returns -ECANCELED soon; the
 * other steps still complete.
 */
void sk_compact_abort(struct sk_compact_job *job);
/*
 * Loop thread: the partition is going away (topic deletion). Waits for a
 * file operation of the job in progress; after this returns the job
 * touches no path any more, and install and finish do nothing.
 */
void sk_compact_cancel(struct sk_compact_job *job);
/*
 * How urgent a planned job is: the dirty ratio, plus one when a deadline
 * (max.compaction.lag.ms, a tombstone's delete horizon) has passed.
 */
double sk_compact_job_score(const struct sk_compact_job *job);
/* Release the job and its segment references; safe with NULL. */
void sk_compact_job_free(struct sk_compact_job *job);

/*
 * All the steps in turn on the calling thread (tests, tools). Stores
 * whether anything ran in stats->cleaned. Returns 0 or run's error.
 */
int sk_compact_partition(struct sk_partition *p, struct sk_compact_state *st,
			 const struct sk_compact_config *cfg, int64_t now_ms,
			 struct sk_compact_stats *stats, struct sk_err *err);

/*
 * At partition open, before the segments are listed: remove leftover
 * *.log.cleaned and cleaner-offset-checkpoint.tmp files and complete
 * every swap. Logs what it did. Returns 0 or -errno (err set).
 */
int sk_compact_recover(const char *dir, struct sk_err *err);

/*
 * Produce to a compacted topic: Kafka refuses a batch holding a record
 * without a key (INVALID_RECORD, "Compacted topic cannot accept message
 * without key"). batch is a validated batch with header h; scratch as
 * for sk_batch_validate_produce. Returns SK_KERR_NONE or the error.
 */
enum sk_kerr sk_compact_check_keys(const uint8_t *batch, size_t len,
				   const struct sk_batch_hdr *h,
				   struct sk_buf *scratch, struct sk_err *err);

/* ------------------------------------------------------------------ */
/* The broker's cleaner (compact_cleaner.c) */

struct sk_broker;
struct sk_tpart;
struct sk_cleaner;

/*
 * Start the cleaner of b unless log.cleaner.enable is false (NULL then):
 * one worker thread, and a timer on the loop that every
 * log.cleaner.backoff.ms picks the partition of a compacted topic most in
 * need of cleaning (at once again after a cleaning) and runs one job.
 */
struct sk_cleaner *sk_cleaner_new(struct sk_broker *b);
/* Finish the job in flight (aborting its long step), stop; NULL-safe. */
void sk_cleaner_free(struct sk_cleaner *c);
/* A partition is being deleted: forget its state, cancel its job. */
void sk_cleaner_forget(struct sk_cleaner *c, struct sk_tpart *tp);

#endif
