/*
 * Cleaning one partition: planning on the loop thread, the rewrite on a
 * worker thread, the swap back on the loop thread. The rules and the
 * steps of a swap are in compact.h.
 *
 * The job never looks at the partition outside the loop-thread steps:
 * run() works from a snapshot (segment references, sizes and offsets,
 * which do not change once a segment is closed) and reads through the
 * segments' own fds, so appends, rolls, retention and reads go on
 * meanwhile. Whatever the partition did in the meantime is checked at
 * install, segment object by segment object.
 */
#include "compact.h"

#include "codec.h"
#include "crc32c.h"
#include "io.h"
#include "log_ckpt.h"
#include "log_internal.h"
#include "say.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SK_CLEAN_CKPT	      "cleaner-offset-checkpoint"
#define SK_CLEAN_CKPT_MAGIC   0x534b4343u /* "SKCC" */
#define SK_CLEAN_CKPT_VERSION 1u
#define SK_CLEAN_CKPT_SIZE    28

#define SK_CLEAN_NO_HORIZON INT64_MAX
/* Read-ahead of the cleaner's sequential reads, and its write batching. */
#define SK_CLEAN_CHUNK ((size_t)1 << 20)
/*
 * Decompressed records of one batch: produce validation allowed at most
 * this much (see batch.c), so more is corruption.
 */
#define SK_CLEAN_INFLATE_MAX ((size_t)1 << 30)
/* Keep scratch buffers between batches up to this size. */
#define SK_CLEAN_SCRATCH_KEEP ((size_t)8 << 20)

#define SK_SEG_DIGITS 20

/* One closed segment as the job saw it when planned. */
struct clean_seg {
	struct sk_segment *seg; /* referenced */
	int64_t base;		/* base offset */
	int64_t end;		/* offset after its last batch */
	int64_t size;		/* bytes */
};

/* Consecutive old segments rewritten as one. */
struct clean_group {
	size_t first, n;	/* job->segs[first .. first + n) */
	struct sk_segment *seg; /* the rewrite (referenced), NULL: unchanged */
	int64_t bytes_before;
	bool installed;	      /* swapped into the partition */
	char *cleaned, *swap; /* its file's names, owned */
};

/* A record kept from the batch being cleaned. */
struct kept_rec {
	struct sk_record rec;
	const uint8_t *raw; /* the record's bytes, length varint included */
	size_t raw_len;
};

/* The output of the group being written. */
struct group_out {
	struct clean_group *grp;
	struct sk_segment *seg;	     /* NULL until started */
	int64_t written;	     /* bytes of buf already in the file */
	bool changed;		     /* differs from the old segments */
	bool pending;		     /* the last batch so far went entirely */
	struct sk_batch_hdr dropped; /* that batch's header */
};

struct sk_compact_job {
	char *dir;
	struct sk_compact_config cfg;
	int64_t now_ms;
	const char *why;
	double score;		/* see sk_compact_job_score */
	struct clean_seg *segs; /* closed segments [0, first uncleanable) */
	size_t n_segs;
	size_t dirty_first;  /* the segment holding first_dirty */
	int64_t first_dirty; /* the checkpoint, clamped */
	int64_t dirty_end;   /* first uncleanable offset */

	/* Results of run. */
	int64_t map_end; /* the map is authoritative below this */
	int64_t horizon; /* earliest horizon of a kept tombstone */
	struct clean_group *groups;
	size_t n_groups;
	struct sk_compact_stats stats;

	/* Install and commit. */
	int64_t new_first_dirty;
	int commit_rc;

	atomic_bool abort;
	/*
	 * Held by the worker around every path-based operation, and by
	 * cancel: once the partition is deleted (its directory renamed away
	 * and perhaps made anew by a topic of the same name), no name may
	 * be touched any more.
	 */
	pthread_mutex_t mu;
	atomic_bool cancelled;

	/* Worker scratch. */
	struct sk_compact_map map;
	struct sk_buf inflate; /* decompressed records */
	struct sk_buf records; /* re-encoded records */
	struct sk_buf packed;  /* records compressed again */
	struct sk_buf batch;   /* a rewritten batch */
	struct sk_buf out;     /* output not yet written */
	struct kept_rec *kept;
	size_t kept_cap;
};

/* ------------------------------------------------------------------ */
/* Checkpoint */

/* Write the checkpoint through a .tmp; the caller holds job->mu. */
static int state_save(const char *dir, int64_t first_dirty, int64_t horizon,
		      struct sk_err *err)
{
	uint8_t buf[SK_CLEAN_CKPT_SIZE];
	int rc;

	sk_put_be64(buf + 8, (uint64_t)first_dirty);
	sk_put_be64(buf + 16, (uint64_t)horizon);
	rc = sk_ckpt_write(dir, SK_CLEAN_CKPT, SK_CLEAN_CKPT_MAGIC,
			   SK_CLEAN_CKPT_VERSION, buf, sizeof(buf), true, NULL);
	if (rc < 0)
		sk_err_setc(err, rc, "cannot write %s/%s: %s", dir,
			    SK_CLEAN_CKPT, strerror(-rc));
	return rc;
}

void sk_compact_state_load(const char *dir, struct sk_compact_state *st)
{
	uint8_t buf[SK_CLEAN_CKPT_SIZE];
	const char *why;
	int rc;

	st->first_dirty = 0;
	st->horizon = SK_CLEAN_NO_HORIZON;
	rc = sk_ckpt_read(dir, SK_CLEAN_CKPT, SK_CLEAN_CKPT_MAGIC,
			  SK_CLEAN_CKPT_VERSION, buf, sizeof(buf), &why);
	if (rc == -ENOENT)
		return;
	if (rc < 0) {
		/* Whatever it said, a full pass finds out again. */
		sk_warn("partition %s: ignoring %s/%s: %s; cleaning from the "
			"log start",
			dir, dir, SK_CLEAN_CKPT, why);
		st->horizon = 0;
		return;
	}
	st->first_dirty = (int64_t)sk_be64(buf + 8);
	st->horizon = (int64_t)sk_be64(buf + 16);
}

/* ------------------------------------------------------------------ */
/* Plan (loop thread) */

/* Kafka's largestTimestamp, without the fstat: for min.compaction.lag. */
static int64_t seg_newest(const struct sk_segment *seg)
{
	return seg->max_timestamp >= 0 ? seg->max_timestamp : seg->created_ms;
}

/*
 * About the oldest record of a segment, for max.compaction.lag.ms: the
 * first time-index entry is the max timestamp of its first batches,
 * which is close enough for a limit counted in hours, and costs no I/O.
 */
static int64_t seg_oldest(const struct sk_segment *seg)
{
	int64_t ts;
	uint32_t rel;

	if (seg->idx.time.n) {
		sk_log_index_time_at(&seg->idx, 0, &ts, &rel);
		if (ts >= 0)
			return ts;
	}
	return seg_newest(seg);
}

void sk_compact_plan(struct sk_partition *p, const struct sk_compact_state *st,
		     const struct sk_compact_config *cfg, int64_t now_ms,
		     struct sk_compact_job **out)
{
	size_t n = sk_partition_segment_count(p), closed = n - 1, d = 0, u;
	int64_t start = sk_partition_start_offset(p), fd = st->first_dirty;
	int64_t clean = 0, dirty = 0;
	struct sk_compact_job *job;
	const char *why = NULL;
	double score = 0.0;

	*out = NULL;
	if (closed == 0 || sk_partition_damaged(p))
		return;
	/* A checkpoint from before a DeleteRecords, or from another life. */
	if (fd < start || fd > sk_partition_segment(p, closed)->base_offset)
		fd = start;
	while (d < closed && sk_partition_segment(p, d + 1)->base_offset <= fd)
		d++;
	u = closed;
	for (size_t i = d; cfg->min_lag_ms > 0 && i < closed; i++) {
		if (now_ms - seg_newest(sk_partition_segment(p, i)) <
		    cfg->min_lag_ms) {
			u = i;
			break;
		}
	}
	for (size_t i = 0; i < u; i++) {
		if (i < d)
			clean += sk_partition_segment(p, i)->size;
		else
			dirty += sk_partition_segment(p, i)->size;
	}
	if (dirty > 0) {
		double ratio = (double)dirty / (double)(clean + dirty);

		score = ratio;
		if (cfg->max_lag_ms < INT64_MAX &&
		    now_ms - seg_oldest(sk_partition_segment(p, d)) >
			    cfg->max_lag_ms) {
			why = "max.compaction.lag.ms";
			score += 1.0;
		} else if (ratio > cfg->min_cleanable_ratio) {
			why = "dirty ratio";
		}
	}
	/* Tombstones to drop lie below the checkpoint, the part cleaned. */
	if (!why && st->horizon <= now_ms &&
	    fd > sk_partition_segment(p, 0)->base_offset) {
		why = "delete horizon";
		score += 1.0;
	}
	if (!why || u == 0)
		return;

	job = sk_xcalloc(1, sizeof(*job));
	job->dir = sk_xstrdup(sk_partition_dir(p));
	job->cfg = *cfg;
	job->now_ms = now_ms;
	job->why = why;
	job->score = score;
	job->n_segs = u;
	job->segs = sk_xcalloc(u, sizeof(*job->segs));
	for (size_t i = 0; i < u; i++) {
		struct sk_segment *seg = sk_partition_segment(p, i);

		sk_segment_ref(seg);
		job->segs[i].seg = seg;
		job->segs[i].base = seg->base_offset;
		job->segs[i].end = seg->end_offset;
		job->segs[i].size = seg->size;
	}
	job->dirty_first = d;
	job->first_dirty = fd;
	job->dirty_end = d < u ? sk_partition_segment(p, u)->base_offset : fd;
	job->horizon = SK_CLEAN_NO_HORIZON;
	job->stats.why = why;
	job->stats.horizon = SK_CLEAN_NO_HORIZON;
	job->new_first_dirty = fd;
	atomic_init(&job->abort, false);
	atomic_init(&job->cancelled, false);
	pthread_mutex_init(&job->mu, NULL);
	*out = job;
}

void sk_compact_abort(struct sk_compact_job *job)
{
	atomic_store(&job->abort, true);
}

void sk_compact_cancel(struct sk_compact_job *job)
{
	atomic_store(&job->abort, true);
	pthread_mutex_lock(&job->mu);
	atomic_store(&job->cancelled, true);
	pthread_mutex_unlock(&job->mu);
}

static bool stopped(const struct sk_compact_job *job)
{
	return atomic_load_explicit(&job->abort, memory_order_relaxed);
}

/* ------------------------------------------------------------------ */
/* Reading batches */

static void reader_open(struct sk_seg_reader *r, const struct clean_seg *cs)
{
	sk_seg_reader_init(r, cs->seg->fd, cs->size, NULL, 0);
	r->buf = sk_xmalloc(SK_CLEAN_CHUNK);
	r->cap = SK_CLEAN_CHUNK;
	r->heap = true;
}

/*
 * The whole batch at pos of cs, checked: a v2 header, inside the
 * segment's offsets and file, and its CRC. Corrupt data must never be
 * copied into a segment that then looks whole.
 */
static int read_batch(struct sk_seg_reader *r, const struct clean_seg *cs,
		      int64_t pos, struct sk_batch_hdr *h, const uint8_t **p,
		      const char *dir, struct sk_err *err)
{
	const char *why = NULL;
	size_t size;
	int rc;

	rc = sk_seg_reader_get(r, pos, SK_BATCH_HEADER_SIZE, p);
	if (rc == 0 && sk_batch_parse_header(*p, SK_BATCH_HEADER_SIZE, h) < 0)
		why = "not a v2 batch";
	else if (rc == 0 &&
		 (h->last_offset_delta < 0 || h->base_offset < cs->base ||
		  h->base_offset + h->last_offset_delta >= cs->end))
		why = "offsets outside the segment";
	if (rc == 0 && !why) {
		size = sk_batch_size(h);
		rc = sk_seg_reader_get(r, pos, size, p);
		if (rc == 0 && !sk_batch_crc_ok(*p, size))
			why = "CRC mismatch";
	}
	if (rc == -ENODATA)
		why = "batch runs past the end of the segment";
	else if (rc < 0)
		return sk_err_setc(err, rc,
				   "partition %s: cannot read %s.log: "
				   "%s",
				   dir, cs->seg->stem, strerror(-rc));
	if (why)
		return sk_err_setc(err, -EBADMSG,
				   "partition %s: segment %" PRId64
				   " is corrupt at file position %" PRId64
				   ": %s; it is not compacted",
				   dir, cs->base, pos, why);
	return 0;
}

/*
 * A reader over the records of batch p: its own bytes, or its records
 * decompressed into job->inflate.
 */
static int batch_records(struct sk_compact_job *job,
			 const struct sk_batch_hdr *h, const uint8_t *p,
			 struct sk_rd *rd, struct sk_err *err)
{
	enum sk_codec codec = h->attributes & SK_BATCH_ATTR_CODEC_MASK;
	size_t len = sk_batch_size(h) - SK_BATCH_HEADER_SIZE;
	struct sk_err why = { "" };
	int rc;

	if (codec == SK_CODEC_NONE) {
		sk_rd_init(rd, p + SK_BATCH_HEADER_SIZE, len);
		return 0;
	}
	job->inflate.len = 0;
	rc = sk_codec_decompress(codec, p + SK_BATCH_HEADER_SIZE, len,
				 &job->inflate, SK_CLEAN_INFLATE_MAX, &why);
	if (rc < 0)
		return sk_err_setc(err, rc == -ENOMEM ? rc : -EBADMSG,
				   "partition %s: batch at offset %" PRId64
				   " does not decompress (%s): %s",
				   job->dir, h->base_offset,
				   sk_codec_name(codec), why.msg);
	sk_rd_init(rd, job->inflate.len ? job->inflate.data : (uint8_t *)"",
		   job->inflate.len);
	return 0;
}

/* Batches the cleaner neither maps nor filters. */
static bool untouchable(const struct sk_batch_hdr *h)
{
	return h->attributes &
	       (SK_BATCH_ATTR_CONTROL | SK_BATCH_ATTR_TRANSACTIONAL);
}

/* ------------------------------------------------------------------ */
/* The map */

static int map_batch(struct sk_compact_job *job, const struct sk_batch_hdr *h,
		     const uint8_t *p, struct sk_err *err)
{
	struct sk_record rec;
	struct sk_rd rd;
	int rc;

	rc = batch_records(job, h, p, &rd, err);
	if (rc < 0)
		return rc;
	while (sk_batch_record_next(&rd, &rec)) {
		int64_t off = h->base_offset + rec.offset_delta;

		if (off >= job->first_dirty && rec.key.len >= 0)
			sk_compact_map_put(&job->map,
					   rec.key.len ? rec.key.p
						       : (const uint8_t *)"",
					   (size_t)rec.key.len, off);
	}
	if (!sk_rd_ok(&rd))
		return sk_err_setc(err, -EBADMSG,
				   "partition %s: malformed record in the "
				   "batch at offset %" PRId64,
				   job->dir, h->base_offset);
	return 0;
}

/*
 * Map the dirty part, segment by segment, until the map is full: it then
 * ends before the batch that did not fit, and the rest stays dirty for
 * the next pass.
 */
static int build_map(struct sk_compact_job *job, struct sk_err *err)
{
	int rc = 0;

	sk_compact_map_init(&job->map, (size_t)job->cfg.map_bytes);
	job->map_end = job->dirty_end;
	for (size_t i = job->dirty_first;
	     i < job->n_segs && job->segs[i].base < job->dirty_end; i++) {
		const struct clean_seg *cs = &job->segs[i];
		struct sk_seg_reader r;
		int64_t pos = 0;

		reader_open(&r, cs);
		while (pos < cs->size) {
			struct sk_batch_hdr h;
			const uint8_t *p;

			if (stopped(job)) {
				rc = -ECANCELED;
				break;
			}
			rc = read_batch(&r, cs, pos, &h, &p, job->dir, err);
			if (rc < 0)
				break;
			pos += (int64_t)sk_batch_size(&h);
			if (h.base_offset + h.last_offset_delta <
				    job->first_dirty ||
			    untouchable(&h))
				continue;
			if (!sk_compact_map_reserve(
				    &job->map,
				    (size_t)SK_MAX(h.records_count, 0))) {
				if (sk_compact_map_count(&job->map) == 0) {
					rc = sk_err_setc(
						err, -E2BIG,
						"partition %s: "
						"log.cleaner.dedupe.buffer."
						"size %" PRId64
						" cannot hold the %d keys of "
						"the batch at offset %" PRId64,
						job->dir, job->cfg.map_bytes,
						h.records_count, h.base_offset);
					break;
				}
				job->map_end =
					SK_MAX(h.base_offset, job->first_dirty);
				sk_seg_reader_done(&r);
				return 0;
			}
			rc = map_batch(job, &h, p, err);
			if (rc < 0)
				break;
		}
		sk_seg_reader_done(&r);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Writing a group */

/* Run a path operation unless the partition is gone. */
#define WITH_PATHS(job, cancelled_rc, stmt)         \
	do {                                        \
		pthread_mutex_lock(&(job)->mu);     \
		if (atomic_load(&(job)->cancelled)) \
			rc = (cancelled_rc);        \
		else                                \
			stmt;                       \
		pthread_mutex_unlock(&(job)->mu);   \
	} while (0)

static int out_flush(struct sk_compact_job *job, struct group_out *o,
		     struct sk_err *err)
{
	size_t done = 0;

	while (done < job->out.len) {
		ssize_t w = sk_io_pwrite(o->seg->fd, job->out.data + done,
					 job->out.len - done,
					 (off_t)(o->written + (int64_t)done));

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int rc = w < 0 ? -errno : -ENOSPC;

			return sk_err_setc(err, rc, "cannot write %s: %s",
					   o->grp->cleaned, strerror(-rc));
		}
		done += (size_t)w;
	}
	o->written += (int64_t)done;
	job->out.len = 0;
	return 0;
}

/* Append one batch to the output and index it. */
static int out_batch(struct sk_compact_job *job, struct group_out *o,
		     const struct sk_batch_hdr *h, const uint8_t *p, size_t len,
		     struct sk_err *err)
{
	sk_buf_put(&job->out, p, len);
	sk_segment_note_batch(o->seg, h, len, job->cfg.index_interval_bytes);
	if (job->out.len >= SK_CLEAN_CHUNK)
		return out_flush(job, o, err);
	return 0;
}

/*
 * Create the group's .cleaned file. A group of one segment starts only
 * at its first change, so an unchanged segment costs a read and no
 * write: the batches before the change (up to prefix) are copied then.
 */
static int out_start(struct sk_compact_job *job, struct group_out *o,
		     int64_t prefix, struct sk_err *err)
{
	const struct clean_seg *cs = &job->segs[o->grp->first];
	struct sk_seg_reader r;
	int64_t pos = 0;
	int fd = -1, rc = 0;

	WITH_PATHS(job, -ECANCELED,
		   fd = sk_io_open(o->grp->cleaned,
				   O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
				   0644));
	if (rc < 0)
		return rc;
	if (fd < 0)
		return sk_err_setc(err, -errno, "cannot create %s: %s",
				   o->grp->cleaned, strerror(errno));
	o->seg = sk_segment_adopt(fd, job->dir, cs->base);
	o->written = 0;
	job->out.len = 0;
	if (prefix == 0)
		return 0;
	reader_open(&r, cs);
	while (pos < prefix && rc == 0) {
		struct sk_batch_hdr h;
		const uint8_t *p;

		rc = read_batch(&r, cs, pos, &h, &p, job->dir, err);
		if (rc == 0)
			rc = out_batch(job, o, &h, p, sk_batch_size(&h), err);
		pos += (int64_t)sk_batch_size(&h);
	}
	sk_seg_reader_done(&r);
	return rc;
}

/* What becomes of a batch. */
enum batch_fate {
	FATE_KEEP,    /* copied as it is */
	FATE_DROP,    /* every record goes */
	FATE_REWRITE, /* job->batch holds the new batch */
};

/* a + b for a horizon, kept below the "no horizon" mark. */
static int64_t horizon_of(int64_t now, int64_t retention)
{
	if (retention > SK_CLEAN_NO_HORIZON - 1 - now)
		return SK_CLEAN_NO_HORIZON - 1;
	return now + retention;
}

/* Whether the cleaner keeps a record of the batch h at offset off. */
static bool keep_record(struct sk_compact_job *job,
			const struct sk_batch_hdr *h,
			const struct sk_record *rec, int64_t off)
{
	int64_t latest;

	if (off >= job->map_end)
		return true;
	if (rec->key.len < 0)
		return false;
	latest = sk_compact_map_get(
		&job->map, rec->key.len ? rec->key.p : (const uint8_t *)"",
		(size_t)rec->key.len);
	if (latest > off)
		return false;
	if (rec->value.len >= 0)
		return true;
	/* The latest record of its key, a tombstone: its horizon rules. */
	return !(h->attributes & SK_BATCH_ATTR_DELETE_HORIZON) ||
	       job->now_ms < h->base_timestamp;
}

/*
 * Build the rewritten batch in job->batch from the n > 0 records kept:
 * same base offset, lastOffsetDelta, leader epoch, producer fields and
 * codec; a delete horizon when a kept tombstone needs one.
 */
static int rewrite_batch(struct sk_compact_job *job,
			 const struct sk_batch_hdr *h, size_t n,
			 bool set_horizon, int64_t horizon, struct sk_err *err)
{
	enum sk_codec codec = h->attributes & SK_BATCH_ATTR_CODEC_MASK;
	struct sk_batch_hdr nh = *h;
	struct sk_err why = { "" };
	const uint8_t *body;
	size_t body_len;
	int rc;

	job->batch.len = 0;
	nh.records_count = (int32_t)n;
	if (set_horizon) {
		nh.attributes |= SK_BATCH_ATTR_DELETE_HORIZON;
		nh.base_timestamp = horizon;
	}
	if (!(h->attributes & SK_BATCH_ATTR_LOG_APPEND_TIME))
		nh.max_timestamp = INT64_MIN;
	job->records.len = 0;
	for (size_t i = 0; i < n; i++) {
		const struct kept_rec *k = &job->kept[i];
		/* Wrapping, as the producer's delta was computed. */
		int64_t ts = (int64_t)((uint64_t)h->base_timestamp +
				       (uint64_t)k->rec.timestamp_delta);

		if (!(h->attributes & SK_BATCH_ATTR_LOG_APPEND_TIME))
			nh.max_timestamp = SK_MAX(nh.max_timestamp, ts);
		if (nh.base_timestamp == h->base_timestamp)
			sk_buf_put(&job->records, k->raw, k->raw_len);
		else
			sk_batch_record_write(
				&job->records, &k->rec,
				(int64_t)((uint64_t)ts -
					  (uint64_t)nh.base_timestamp),
				k->rec.offset_delta);
	}
	body = job->records.data;
	body_len = job->records.len;
	if (codec != SK_CODEC_NONE) {
		job->packed.len = 0;
		rc = sk_codec_compress(codec, body, body_len, &job->packed, 0,
				       &why);
		if (rc < 0)
			return sk_err_setc(err, rc,
					   "partition %s: cannot recompress "
					   "the batch at offset %" PRId64
					   " (%s): %s",
					   job->dir, h->base_offset,
					   sk_codec_name(codec), why.msg);
		body = job->packed.data;
		body_len = job->packed.len;
	}
	if (body_len > (size_t)INT32_MAX - SK_BATCH_HEADER_SIZE)
		return sk_err_setc(err, -E2BIG,
				   "partition %s: batch at offset %" PRId64
				   " grew too large to rewrite",
				   job->dir, h->base_offset);
	sk_batch_frame(&job->batch, &nh, body, body_len);
	return 0;
}

/* Decide the fate of one batch, building its rewrite if any. */
static int clean_batch(struct sk_compact_job *job, const struct sk_batch_hdr *h,
		       const uint8_t *p, enum batch_fate *fate,
		       struct sk_err *err)
{
	bool has_horizon = h->attributes & SK_BATCH_ATTR_DELETE_HORIZON;
	bool tombstone_kept = false;
	int64_t horizon, removed = 0, tomb_removed = 0;
	struct sk_record rec;
	struct sk_rd rd;
	size_t n = 0;
	int32_t total = 0;
	int rc;

	*fate = FATE_KEEP;
	if (untouchable(h) || h->base_offset >= job->map_end)
		return 0;
	rc = batch_records(job, h, p, &rd, err);
	if (rc < 0)
		return rc;
	for (;;) {
		const uint8_t *at = rd.p;
		int64_t off;

		if (!sk_batch_record_next(&rd, &rec))
			break;
		total++;
		off = h->base_offset + rec.offset_delta;
		if (!keep_record(job, h, &rec, off)) {
			removed++;
			tomb_removed += rec.value.len < 0;
			continue;
		}
		if (rec.value.len < 0 && off < job->map_end)
			tombstone_kept = true;
		if (n == job->kept_cap) {
			job->kept_cap = job->kept_cap ? job->kept_cap * 2 : 64;
			job->kept = sk_xrealloc(
				job->kept, job->kept_cap * sizeof(*job->kept));
		}
		job->kept[n].rec = rec;
		job->kept[n].raw = at;
		job->kept[n].raw_len = (size_t)(rd.p - at);
		n++;
	}
	if (!sk_rd_ok(&rd) || total != h->records_count)
		return sk_err_setc(err, -EBADMSG,
				   "partition %s: malformed records in the "
				   "batch at offset %" PRId64,
				   job->dir, h->base_offset);
	horizon = has_horizon ? h->base_timestamp
			      : horizon_of(job->now_ms,
					   job->cfg.delete_retention_ms);
	if (tombstone_kept)
		job->horizon = SK_MIN(job->horizon, horizon);
	job->stats.records_removed += removed;
	job->stats.tombstones_removed += tomb_removed;
	if (removed == 0 && total > 0 && (!tombstone_kept || has_horizon))
		return 0;
	/* If it was the group's last, clean_group puts an empty one back. */
	if (n == 0) {
		*fate = FATE_DROP;
		job->stats.batches_removed++;
		return 0;
	}
	rc = rewrite_batch(job, h, n, tombstone_kept && !has_horizon, horizon,
			   err);
	if (rc < 0)
		return rc;
	*fate = FATE_REWRITE;
	job->stats.batches_rewritten++;
	return 0;
}

/* Throw away a group's output (unchanged, or a failure). */
static void out_discard(struct sk_compact_job *job, struct group_out *o)
{
	int rc = 0;

	if (!o->seg)
		return;
	WITH_PATHS(job, 0, sk_io_unlink(o->grp->cleaned));
	(void)rc;
	sk_segment_unref(o->seg);
	o->seg = NULL;
}

/* Finish a changed group's file: written, synced, dated. */
static int out_finish(struct sk_compact_job *job, struct group_out *o,
		      const struct clean_seg *last, struct sk_err *err)
{
	struct timespec times[2];
	struct stat st;
	int rc;

	rc = out_flush(job, o, err);
	if (rc < 0)
		return rc;
	/* Recovery takes a gap before the next segment for a lost tail. */
	if (o->seg->end_offset != last->end)
		return sk_err_setc(err, -EIO,
				   "partition %s: rewritten segment %" PRId64
				   " ends at offset %" PRId64
				   " instead of %" PRId64,
				   job->dir, o->seg->base_offset,
				   o->seg->end_offset, last->end);
	if (sk_io_fdatasync(o->seg->fd) < 0)
		return sk_err_setc(err, -errno, "cannot sync %s: %s",
				   o->grp->cleaned, strerror(errno));
	/*
	 * Retention falls back on the file's mtime for a segment without
	 * timestamps: keep the age of the data, not of the rewrite.
	 */
	if (fstat(last->seg->fd, &st) == 0) {
		times[0] = st.st_atim;
		times[1] = st.st_mtim;
		futimens(o->seg->fd, times);
		o->seg->created_ms = (int64_t)st.st_mtim.tv_sec * 1000 +
				     st.st_mtim.tv_nsec / 1000000;
	}
	/*
	 * The index is written at finish, once the file has its name; until
	 * then nothing may write one for the old file's name.
	 */
	o->seg->index_saved = true;
	o->seg->dirty = false;
	return 0;
}

/* Clean the batches of segment cs into the group's output. */
static int clean_segment(struct sk_compact_job *job, struct group_out *o,
			 const struct clean_seg *cs, struct sk_err *err)
{
	struct sk_seg_reader r;
	int64_t pos = 0;
	int rc = 0;

	o->grp->bytes_before += cs->size;
	reader_open(&r, cs);
	while (pos < cs->size) {
		enum batch_fate fate;
		struct sk_batch_hdr h;
		const uint8_t *p;
		size_t size;

		if (stopped(job)) {
			rc = -ECANCELED;
			break;
		}
		rc = read_batch(&r, cs, pos, &h, &p, job->dir, err);
		if (rc < 0)
			break;
		size = sk_batch_size(&h);
		rc = clean_batch(job, &h, p, &fate, err);
		if (rc < 0)
			break;
		if (fate != FATE_KEEP && !o->seg) {
			rc = out_start(job, o, pos, err);
			if (rc < 0)
				break;
		}
		if (fate != FATE_KEEP)
			o->changed = true;
		o->pending = fate == FATE_DROP;
		if (fate == FATE_DROP)
			o->dropped = h;
		else if (fate == FATE_KEEP && o->seg)
			rc = out_batch(job, o, &h, p, size, err);
		else if (fate == FATE_REWRITE)
			rc = out_batch(job, o, &h, job->batch.data,
				       job->batch.len, err);
		if (rc < 0)
			break;
		pos += (int64_t)size;
	}
	sk_seg_reader_done(&r);
	return rc;
}

/*
 * Clean the segments from job->segs[first] on, before limit, into one:
 * the next segment joins while what was written so far plus its size
 * (before cleaning, so the result cannot pass it) fits segment.bytes,
 * and while the offsets fit the index's 32 bits. Kafka sizes its groups
 * from the old sizes alone, so a first cleaning of full segments merges
 * nothing; this merges what the cleaning shrank at once. A group of one
 * segment losing nothing is left alone, unwritten.
 */
static int clean_group(struct sk_compact_job *job, struct clean_group *grp,
		       size_t first, size_t limit, struct sk_err *err)
{
	const struct clean_seg *segs = job->segs;
	struct group_out o = { .grp = grp };
	size_t k = first;
	int rc;

	grp->first = first;
	grp->cleaned = sk_xasprintf("%s/%020" PRId64 ".log.cleaned", job->dir,
				    segs[first].base);
	for (;;) {
		int64_t so_far;

		rc = clean_segment(job, &o, &segs[k], err);
		if (rc < 0)
			goto fail;
		k++;
		/*
		 * Buffered bytes included: note_batch counted them. An
		 * empty last batch put back at the end (below) is not.
		 */
		so_far = o.seg ? o.seg->size : segs[first].size;
		if (k >= limit ||
		    so_far + segs[k].size > job->cfg.segment_bytes ||
		    segs[k].end - segs[first].base > INT32_MAX)
			break;
		/* Merging is a change: the first segment is copied now. */
		if (!o.seg) {
			rc = out_start(job, &o, segs[first].size, err);
			if (rc < 0)
				goto fail;
		}
		o.changed = true;
	}
	grp->n = k - first;
	/*
	 * The end of what it replaces, for recovery (see compact.h): past
	 * the last segment's base even when that one is empty.
	 */
	grp->swap = sk_xasprintf("%s/%020" PRId64 ".log.%020" PRId64 ".swap",
				 job->dir, segs[first].base,
				 SK_MAX(segs[k - 1].end, segs[k - 1].base + 1));
	if (!o.changed) {
		out_discard(job, &o);
		return 0;
	}
	/*
	 * The segment must end where the old ones did: recovery takes a
	 * gap before the next segment for a lost tail. So the last batch,
	 * if it went, comes back empty: its header alone, which keeps its
	 * offsets (reads skip it, see sk_segment_read). Only the group's
	 * last: the merge decision above ignored it, so emptied segments
	 * merge into the next instead of being left as such batches.
	 */
	if (o.pending) {
		struct sk_batch_hdr nh = o.dropped;

		nh.records_count = 0;
		nh.attributes &= ~(SK_BATCH_ATTR_CODEC_MASK |
				   SK_BATCH_ATTR_DELETE_HORIZON);
		job->batch.len = 0;
		sk_batch_frame(&job->batch, &nh, NULL, 0);
		rc = out_batch(job, &o, &nh, job->batch.data, job->batch.len,
			       err);
		if (rc < 0)
			goto fail;
		job->stats.batches_removed--;
		job->stats.batches_rewritten++;
	}
	rc = out_finish(job, &o, &segs[k - 1], err);
	if (rc < 0)
		goto fail;
	grp->seg = o.seg;
	return 0;

fail:
	grp->n = k - first;
	out_discard(job, &o);
	return rc;
}

static void shrink(struct sk_buf *b)
{
	if (b->cap > SK_CLEAN_SCRATCH_KEEP)
		sk_buf_free(b);
	b->len = 0;
}

int sk_compact_run(struct sk_compact_job *job, struct sk_err *err)
{
	struct sk_compact_stats *s = &job->stats;
	size_t g = 0;
	int rc;

	rc = build_map(job, err);
	if (rc < 0)
		goto out;
	/* Every segment below the map's end, from the log start. */
	while (g < job->n_segs && job->segs[g].base < job->map_end)
		g++;
	job->groups = sk_xcalloc(g ? g : 1, sizeof(*job->groups));
	for (size_t i = 0; i < g; i += job->groups[job->n_groups++].n) {
		struct clean_group *grp = &job->groups[job->n_groups];

		rc = clean_group(job, grp, i, g, err);
		if (rc < 0) {
			job->n_groups++;
			break;
		}
		shrink(&job->inflate);
		shrink(&job->records);
		shrink(&job->packed);
		shrink(&job->batch);
		if (!grp->seg)
			continue;
		s->segments_before += (int64_t)grp->n;
		s->segments_after++;
		s->bytes_before += grp->bytes_before;
		s->bytes_after += grp->seg->size;
	}
	if (rc < 0) {
		/* Nothing was installed: remove what was written. */
		for (size_t i = 0; i < job->n_groups; i++) {
			struct clean_group *grp = &job->groups[i];
			struct group_out o = { .grp = grp, .seg = grp->seg };

			out_discard(job, &o);
			grp->seg = NULL;
		}
		goto out;
	}
	s->first_dirty = job->first_dirty;
	s->map_end = job->map_end;
	s->keys = (int64_t)sk_compact_map_count(&job->map);
	job->new_first_dirty = job->map_end;
out:
	sk_compact_map_free(&job->map);
	sk_buf_free(&job->inflate);
	sk_buf_free(&job->records);
	sk_buf_free(&job->packed);
	sk_buf_free(&job->batch);
	sk_buf_free(&job->out);
	free(job->kept);
	job->kept = NULL;
	job->kept_cap = 0;
	return rc;
}

/* ------------------------------------------------------------------ */
/* Swapping in */

/* Where the group's old segments sit in p, or -1 if they moved away. */
static ssize_t find_group(struct sk_partition *p,
			  const struct sk_compact_job *job,
			  const struct clean_group *grp)
{
	size_t n = sk_partition_segment_count(p);

	for (size_t i = 0; i + grp->n < n; i++) {
		if (sk_partition_segment(p, i) != job->segs[grp->first].seg)
			continue;
		for (size_t k = 1; k < grp->n; k++)
			if (sk_partition_segment(p, i + k) !=
			    job->segs[grp->first + k].seg)
				return -1;
		return (ssize_t)i;
	}
	return -1;
}

static bool holds_segment(struct sk_partition *p, const struct sk_segment *seg)
{
	for (size_t i = 0; i < sk_partition_segment_count(p); i++)
		if (sk_partition_segment(p, i) == seg)
			return true;
	return false;
}

void sk_compact_install(struct sk_partition *p, struct sk_compact_job *job)
{
	int64_t first_skipped = INT64_MAX;
	bool any = false;

	if (atomic_load(&job->cancelled))
		return;
	for (size_t g = 0; g < job->n_groups; g++) {
		struct clean_group *grp = &job->groups[g];
		ssize_t i;

		if (!grp->seg)
			continue;
		i = find_group(p, job, grp);
		if (i < 0 || sk_io_rename(grp->cleaned, grp->swap) < 0) {
			if (i >= 0)
				sk_warn("partition %s: cannot rename %s: %s; "
					"not compacted",
					job->dir, grp->cleaned,
					strerror(errno));
			sk_io_unlink(grp->cleaned);
			sk_segment_unref(grp->seg);
			grp->seg = NULL;
			job->stats.groups_skipped++;
			first_skipped = SK_MIN(first_skipped,
					       job->segs[grp->first].base);
			continue;
		}
		/* One reference for the partition, ours stays for finish. */
		sk_segment_ref(grp->seg);
		sk_partition_replace(p, (size_t)i, grp->n, grp->seg);
		grp->installed = true;
		any = true;
	}
	/*
	 * A group the partition moved away from (retention or DeleteRecords
	 * took some of its segments) was not cleaned: what remains of it
	 * stays dirty.
	 */
	if (first_skipped < job->map_end)
		job->new_first_dirty = SK_MAX(job->first_dirty, first_skipped);
	if (any)
		sk_partition_dir_changed(p);
}

int sk_compact_commit(struct sk_compact_job *job, struct sk_err *err)
{
	bool any = false;
	int rc = 0;

	pthread_mutex_lock(&job->mu);
	if (atomic_load(&job->cancelled)) {
		rc = -ECANCELED;
		goto out;
	}
	for (size_t g = 0; g < job->n_groups; g++)
		any |= job->groups[g].installed;
	/* The .swap names become durable: from here recovery completes. */
	if (any && sk_io_fsync_dir(job->dir) < 0) {
		rc = sk_err_setc(err, -errno,
				 "partition %s: cannot sync the directory: %s",
				 job->dir, strerror(errno));
		goto out;
	}
	if (state_save(job->dir, job->new_first_dirty, job->horizon, err) < 0)
		sk_warn("partition %s: %s (compaction goes on; the next pass "
			"redoes some work)",
			job->dir, err->msg);
	for (size_t g = 0; g < job->n_groups; g++) {
		const struct clean_group *grp = &job->groups[g];

		if (!grp->installed)
			continue;
		for (size_t k = 0; k < grp->n; k++) {
			const struct sk_segment *old =
				job->segs[grp->first + k].seg;
			char *path = sk_xasprintf("%s.log", old->stem);

			/* The first one's name goes to the swap, at finish. */
			if (k > 0 && sk_io_unlink(path) < 0 && errno != ENOENT)
				sk_warn("partition %s: cannot remove %s: %s",
					job->dir, path, strerror(errno));
			sk_log_index_unlink(old->stem);
			free(path);
		}
	}
	if (any && sk_io_fsync_dir(job->dir) < 0)
		sk_warn("partition %s: cannot sync the directory: %s", job->dir,
			strerror(errno));
out:
	job->commit_rc = rc;
	pthread_mutex_unlock(&job->mu);
	return rc;
}

void sk_compact_finish(struct sk_partition *p, struct sk_compact_job *job,
		       struct sk_compact_state *st,
		       struct sk_compact_stats *stats)
{
	struct sk_err e;

	if (stats)
		*stats = job->stats;
	if (atomic_load(&job->cancelled))
		return;
	for (size_t g = 0; g < job->n_groups; g++) {
		struct clean_group *grp = &job->groups[g];
		char *path;

		/*
		 * A failed commit leaves the .swap to recovery, which
		 * removes the old files before taking its name.
		 */
		if (!grp->installed || job->commit_rc < 0)
			continue;
		if (!holds_segment(p, grp->seg)) {
			/* Retention deleted it meanwhile. */
			sk_io_unlink(grp->swap);
			continue;
		}
		path = sk_xasprintf("%s.log", grp->seg->stem);
		if (sk_io_rename(grp->swap, path) < 0) {
			sk_warn("partition %s: cannot rename %s to %s: %s (done "
				"at the next start)",
				job->dir, grp->swap, path, strerror(errno));
		} else if (sk_segment_save_index(grp->seg, true, &e) < 0) {
			sk_warn("partition %s: %s (rebuilt at the next open)",
				job->dir, e.msg);
		}
		free(path);
		sk_partition_dir_changed(p);
	}
	if (job->commit_rc == 0) {
		job->stats.cleaned = true;
		job->stats.horizon = job->horizon;
		if (stats)
			*stats = job->stats;
		if (st) {
			st->first_dirty = job->new_first_dirty;
			st->horizon = job->horizon;
		}
	}
}

double sk_compact_job_score(const struct sk_compact_job *job)
{
	return job->score;
}

void sk_compact_job_free(struct sk_compact_job *job)
{
	if (!job)
		return;
	for (size_t i = 0; i < job->n_segs; i++)
		sk_segment_unref(job->segs[i].seg);
	for (size_t g = 0; g < job->n_groups; g++) {
		sk_segment_unref(job->groups[g].seg);
		free(job->groups[g].cleaned);
		free(job->groups[g].swap);
	}
	free(job->groups);
	free(job->segs);
	free(job->dir);
	sk_compact_map_free(&job->map);
	sk_buf_free(&job->inflate);
	sk_buf_free(&job->records);
	sk_buf_free(&job->packed);
	sk_buf_free(&job->batch);
	sk_buf_free(&job->out);
	free(job->kept);
	pthread_mutex_destroy(&job->mu);
	free(job);
}

int sk_compact_partition(struct sk_partition *p, struct sk_compact_state *st,
			 const struct sk_compact_config *cfg, int64_t now_ms,
			 struct sk_compact_stats *stats, struct sk_err *err)
{
	struct sk_compact_job *job;
	struct sk_err e;
	int rc;

	memset(stats, 0, sizeof(*stats));
	stats->horizon = SK_CLEAN_NO_HORIZON;
	sk_compact_plan(p, st, cfg, now_ms, &job);
	if (!job)
		return 0;
	rc = sk_compact_run(job, err);
	if (rc == 0) {
		sk_compact_install(p, job);
		if (sk_compact_commit(job, &e) < 0)
			sk_warn("%s", e.msg);
		sk_compact_finish(p, job, st, stats);
	}
	sk_compact_job_free(job);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Recovery */

/* "<20 digits>.<ext>": the base offset and ext, else false. */
static bool seg_name(const char *name, int64_t *base, const char **ext)
{
	char digits[SK_SEG_DIGITS + 1];

	for (int i = 0; i < SK_SEG_DIGITS; i++)
		if (name[i] < '0' || name[i] > '9')
			return false;
	if (name[SK_SEG_DIGITS] != '.')
		return false;
	memcpy(digits, name, SK_SEG_DIGITS);
	digits[SK_SEG_DIGITS] = '\0';
	if (!sk_parse_i64(digits, base))
		return false;
	*ext = name + SK_SEG_DIGITS + 1;
	return true;
}

/* A swap's ext, "log.<20 digits: end>.swap": the end offset, or -1. */
static int64_t swap_ext_end(const char *ext)
{
	int64_t end;

	if (strncmp(ext, "log.", 4) != 0 ||
	    strlen(ext) != 4 + SK_SEG_DIGITS + 5 ||
	    strcmp(ext + 4 + SK_SEG_DIGITS, ".swap") != 0 ||
	    !seg_name(ext + 4, &end, &ext))
		return -1;
	return end;
}

/*
 * Whether a swap file is whole segment material for [base, end): its
 * batch headers chain to its end inside the range. It was synced before
 * it got its name, so anything else is a disk gone bad.
 */
static bool swap_sane(const char *path, int64_t base, int64_t end)
{
	uint8_t stack[8192];
	struct sk_seg_reader r;
	struct sk_batch_hdr h;
	int64_t pos = 0, next = base;
	struct stat st;
	bool good = true;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return false;
	}
	sk_seg_reader_init(&r, fd, st.st_size, stack, sizeof(stack));
	while (pos < st.st_size && good) {
		good = sk_seg_reader_header(&r, pos, &h) == 0 &&
		       h.last_offset_delta >= 0 && h.base_offset >= next &&
		       h.base_offset + h.last_offset_delta < end &&
		       (int64_t)sk_batch_size(&h) <= st.st_size - pos;
		next = h.base_offset + h.last_offset_delta + 1;
		pos += (int64_t)sk_batch_size(&h);
	}
	sk_seg_reader_done(&r);
	close(fd);
	return good;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/*
 * Complete the swap of [base, end): the segments whose base offset lies
 * in that range go (base's own file is replaced by the rename), then the
 * swap takes base's name.
 */
static int complete_swap(const char *dir, const char *name, int64_t base,
			 int64_t end, const int64_t *logs, size_t n_logs,
			 struct sk_err *err)
{
	char *swap = sk_xasprintf("%s/%s", dir, name);
	char *path = sk_xasprintf("%s/%020" PRId64 ".log", dir, base);
	size_t removed = 0;
	int rc = 0;

	if (!swap_sane(swap, base, end)) {
		sk_error("partition %s: %s is not a whole segment; removing "
			 "it, the segments it was to replace stay",
			 dir, swap);
		sk_io_unlink(swap);
		goto out;
	}
	for (size_t i = 0; i < n_logs && rc == 0; i++) {
		char *stem;

		if (logs[i] < base || logs[i] >= end)
			continue;
		stem = sk_xasprintf("%s/%020" PRId64, dir, logs[i]);
		if (logs[i] != base) {
			char *log = sk_xasprintf("%s.log", stem);

			if (sk_io_unlink(log) < 0 && errno != ENOENT)
				rc = sk_err_setc(err, -errno,
						 "partition %s: cannot remove "
						 "%s: %s",
						 dir, log, strerror(errno));
			free(log);
			removed++;
		}
		/* base's too: they describe the file being replaced. */
		sk_log_index_unlink(stem);
		free(stem);
	}
	if (rc == 0 && sk_io_rename(swap, path) < 0)
		rc = sk_err_setc(err, -errno,
				 "partition %s: cannot rename %s to %s: %s",
				 dir, swap, path, strerror(errno));
	if (rc == 0)
		sk_info("partition %s: completed an interrupted compaction: "
			"segment %" PRId64 " replaces offsets %" PRId64
			"-%" PRId64 ", %zu older segment files removed",
			dir, base, base, end - 1, removed);
out:
	free(swap);
	free(path);
	return rc;
}

/* A swap found in the directory. */
struct found_swap {
	int64_t base, end;
	char *name;
};

static int cmp_swap(const void *a, const void *b)
{
	return cmp_i64(&((const struct found_swap *)a)->base,
		       &((const struct found_swap *)b)->base);
}

int sk_compact_recover(const char *dir, struct sk_err *err)
{
	struct found_swap *swaps = NULL;
	size_t n_logs = 0, n_swaps = 0, cap_l = 0, cap_s = 0;
	int64_t *logs = NULL, base, end;
	bool changed = false;
	struct dirent *de;
	const char *ext;
	int rc = 0;
	DIR *d;

	d = opendir(dir);
	if (!d)
		return sk_err_setc(err, -errno, "cannot read directory %s: %s",
				   dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		char *path;

		if (strcmp(de->d_name, SK_CLEAN_CKPT ".tmp") == 0) {
			/* A checkpoint never renamed: unlink below. */
		} else if (!seg_name(de->d_name, &base, &ext)) {
			continue;
		} else if (strcmp(ext, "log") == 0) {
			if (n_logs == cap_l) {
				cap_l = cap_l ? cap_l * 2 : 16;
				logs = sk_xrealloc(logs, cap_l * sizeof(*logs));
			}
			logs[n_logs++] = base;
			continue;
		} else if ((end = swap_ext_end(ext)) >= 0) {
			if (n_swaps == cap_s) {
				cap_s = cap_s ? cap_s * 2 : 4;
				swaps = sk_xrealloc(swaps,
						    cap_s * sizeof(*swaps));
			}
			swaps[n_swaps].base = base;
			swaps[n_swaps].end = end;
			swaps[n_swaps].name = sk_xstrdup(de->d_name);
			n_swaps++;
			continue;
		} else if (strcmp(ext, "log.cleaned") != 0) {
			continue;
		}
		/* A rewrite never swapped in. */
		path = sk_xasprintf("%s/%s", dir, de->d_name);
		if (sk_io_unlink(path) < 0 && errno != ENOENT)
			sk_warn("partition %s: cannot remove %s: %s", dir, path,
				strerror(errno));
		else
			changed = true;
		free(path);
	}
	closedir(d);
	if (n_logs)
		qsort(logs, n_logs, sizeof(*logs), cmp_i64);
	if (n_swaps)
		qsort(swaps, n_swaps, sizeof(*swaps), cmp_swap);
	for (size_t i = 0; i < n_swaps; i++) {
		if (rc == 0)
			rc = complete_swap(dir, swaps[i].name, swaps[i].base,
					   swaps[i].end, logs, n_logs, err);
		changed = true;
		free(swaps[i].name);
	}
	if (changed && rc == 0 && sk_io_fsync_dir(dir) < 0)
		sk_warn("partition %s: cannot sync the directory: %s", dir,
			strerror(errno));
	free(logs);
	free(swaps);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Produce */

enum sk_kerr sk_compact_check_keys(const uint8_t *batch, size_t len,
				   const struct sk_batch_hdr *h,
				   struct sk_buf *scratch, struct sk_err *err)
{
	enum sk_codec codec = h->attributes & SK_BATCH_ATTR_CODEC_MASK;
	enum sk_kerr kerr = SK_KERR_NONE;
	struct sk_buf own = { 0 };
	struct sk_buf *buf = scratch ? scratch : &own;
	struct sk_record rec;
	struct sk_rd rd;

	if (codec == SK_CODEC_NONE) {
		sk_rd_init(&rd, batch + SK_BATCH_HEADER_SIZE,
			   len - SK_BATCH_HEADER_SIZE);
	} else {
		buf->len = 0;
		if (sk_codec_decompress(codec, batch + SK_BATCH_HEADER_SIZE,
					len - SK_BATCH_HEADER_SIZE, buf,
					SK_CLEAN_INFLATE_MAX, err) < 0) {
			kerr = SK_KERR_CORRUPT_MESSAGE;
			goto out;
		}
		sk_rd_init(&rd, buf->len ? buf->data : (uint8_t *)"", buf->len);
	}
	while (sk_batch_record_next(&rd, &rec)) {
		if (rec.key.len < 0) {
			sk_err_set(err, "Compacted topic cannot accept "
					"message without key");
			kerr = SK_KERR_INVALID_RECORD;
			break;
		}
	}
out:
	buf->len = 0;
	if (buf == &own || buf->cap > SK_CLEAN_SCRATCH_KEEP)
		sk_buf_free(buf);
	return kerr;
}
