/*
 * A partition log: the directory of segments, recovery at open, append
 * with segment rolls, reads for Fetch and ListOffsets, sync and removal.
 *
 * Recovery trusts a closed segment whose index files check out (their
 * header names the log's exact size), verifying only the framing of the
 * batches after the last index entry; anything else is rebuilt from a
 * full CRC scan. A bad batch inside a closed segment is not a torn write
 * but lost or rotten data in the middle of the log: nothing from there on
 * is served, and appends are refused, until an operator intervenes.
 *
 * log-start-offset.checkpoint (20 bytes, big-endian):
 *   0 magic u32 ("SKLS"), 4 version u32 (1), 8 start offset i64,
 *  16 crc u32: CRC-32C of bytes 0-15.
 * Written only by DeleteRecords; retention deletes whole segments, whose
 * first base offset says the start by itself. A checkpoint below the
 * first segment is therefore normal (retention went past it) and simply
 * no longer matters.
 *
 * recovery.checkpoint (48 bytes, big-endian; see log.h for its meaning):
 *   0 magic u32 ("SKRC"), 4 version u32 (1), 8 flags u32 (1: written by
 *   a clean close), 12 segment base offset i64, 20 size i64 (bytes of
 *   that segment synced), 28 end offset i64 (after the batch ending at
 *   size), 36 log start offset i64, 44 crc u32: CRC-32C of bytes 0-43.
 * Written by log_ckpt.c, as every checkpoint file. The periodic one (the
 * flusher's) to a .tmp, fdatasync'd, renamed, directory fsync'd: a torn
 * checkpoint is never durable, and a lost rename leaves the previous one,
 * which is still true (a recovery point only moves forward). The clean
 * close's overwrites it in place, unsynced (the broker syncs the file
 * system after closing every partition), and not at all when the file
 * already says the same: no new inode per close. Torn by a power loss
 * before that sync, it fails its CRC and the next start scans as without
 * one; nothing it claimed can be lost, as the segments and directory were
 * synced before it was written. Recovery deletes it (durably) when it
 * finds the log contradicting it.
 */
#include "log_internal.h"

#include "compact.h"
#include "crc32c.h"
#include "io.h"
#include "log_ckpt.h"
#include "say.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SK_SEG_NAME_DIGITS 20

#define SK_START_CKPT	      "log-start-offset.checkpoint"
#define SK_START_CKPT_MAGIC   0x534b4c53u /* "SKLS" */
#define SK_START_CKPT_VERSION 1u
#define SK_START_CKPT_SIZE    20

#define SK_RECOVERY_CKPT	 "recovery.checkpoint"
#define SK_RECOVERY_CKPT_MAGIC	 0x534b5243u /* "SKRC" */
#define SK_RECOVERY_CKPT_VERSION 1u
#define SK_RECOVERY_CKPT_CLEAN	 0x1u
_Static_assert(SK_LOG_CKPT_SIZE == 48, "recovery.checkpoint layout");

/* A segment's bytes all vouched for by the recovery checkpoint. */
#define SK_TRUST_ALL INT64_MAX

/* Recoveries that scan more than this log a summary line. */
#define SK_RECOVERY_LOG_BYTES (64ll << 20)

/* A decoded recovery.checkpoint. */
struct recovery_ckpt {
	bool valid;    /* read and checked */
	bool clean;    /* written by a clean close */
	int64_t base;  /* segment */
	int64_t size;  /* synced bytes of it */
	int64_t end;   /* offset after the batch ending at size */
	int64_t start; /* log start offset then */
};

struct sk_partition {
	char *dir;		  /* owned path of the directory */
	struct sk_log_config cfg; /* settings for the next roll/append */
	struct sk_segment **segs; /* one reference each, by base offset */
	size_t nsegs;		  /* >= 1 once open; the last is active */
	size_t cap;		  /* slots in segs */
	size_t first_dirty;	  /* segs before this one are synced */
	bool dir_dirty;		  /* a segment file was created since sync */
	bool parent_dirty;	  /* the directory itself was created */
	bool damaged;		  /* see sk_partition_damaged */
	bool sync_failed;	  /* a sync failed: appends refused */
	int64_t damage_offset;	  /* first offset not served when damaged */
	/* DeleteRecords: checkpoint writes in flight, the highest start */
	struct sk_log_start_write *start_writes;
	int64_t pending_start;
	/* log start offset: segs[0]->base_offset <= start <= end offset */
	int64_t start_offset;
	/* What the last checkpoint begun recorded (-1 base: none yet). */
	int64_t ckpt_base, ckpt_size, ckpt_start;
	bool ckpt_clean; /* that is the clean one open read, still on disk */
	struct sk_log_recovery rec; /* what open did */
	sk_log_offload_fn offload;  /* file work off the loop, or NULL */
	void *offload_arg;
	struct sk_log_token *token; /* shared with those jobs */
};

static struct sk_segment *active(const struct sk_partition *p)
{
	return p->segs[p->nsegs - 1];
}

static void push_segment(struct sk_partition *p, struct sk_segment *seg)
{
	if (p->nsegs == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 8;
		p->segs = sk_xrealloc(p->segs, p->cap * sizeof(*p->segs));
	}
	p->segs[p->nsegs++] = seg;
}

/* fsync a directory; 0 or -errno. */
static int fsync_dir(const char *path)
{
	return sk_io_fsync_dir(path) < 0 ? -errno : 0;
}

/* The directory holding path (a new string). */
static char *parent_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return sk_xstrdup(".");
	if (slash == path)
		return sk_xstrdup("/");
	return sk_xstrndup(path, (size_t)(slash - path));
}

static void mark_damaged(struct sk_partition *p, int64_t offset)
{
	if (!p->damaged || offset < p->damage_offset)
		p->damage_offset = offset;
	p->damaged = true;
}

/* The segment that would hold offset: the last with base <= offset. */
static size_t find_segment(const struct sk_partition *p, int64_t offset)
{
	size_t lo = 0, hi = p->nsegs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (p->segs[mid]->base_offset <= offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? lo - 1 : 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/*
 * Split "<20 digits>.<ext>" into base and ext. Anything else is not a
 * file of ours and is left alone.
 */
static bool parse_seg_name(const char *name, int64_t *base, const char **ext)
{
	char digits[SK_SEG_NAME_DIGITS + 1];

	for (int i = 0; i < SK_SEG_NAME_DIGITS; i++)
		if (name[i] < '0' || name[i] > '9')
			return false;
	if (name[SK_SEG_NAME_DIGITS] != '.')
		return false;
	memcpy(digits, name, SK_SEG_NAME_DIGITS);
	digits[SK_SEG_NAME_DIGITS] = '\0';
	if (!sk_parse_i64(digits, base))
		return false;
	*ext = name + SK_SEG_NAME_DIGITS + 1;
	return true;
}

/* Whether ext names a file the index code writes. */
static bool is_index_ext(const char *ext, bool *tmp)
{
	*tmp = strcmp(ext, "index.tmp") == 0 ||
	       strcmp(ext, "timeindex.tmp") == 0;
	return *tmp || strcmp(ext, "index") == 0 ||
	       strcmp(ext, "timeindex") == 0;
}

/* Double an array's capacity (starting at 16). */
static void *grow(void *arr, size_t *cap, size_t esize)
{
	*cap = *cap ? *cap * 2 : 16;
	return sk_xrealloc(arr, *cap * esize);
}

/*
 * Collect the sorted base offsets of the *.log files in p->dir, and
 * delete index files that describe no segment (left by a crash between
 * removing a segment and its indexes) or are half-written .tmp files.
 */
static int list_segments(struct sk_partition *p, int64_t **bases_out,
			 size_t *n_out, struct sk_err *err)
{
	int64_t *bases = NULL, base;
	size_t n = 0, cap = 0, nidx = 0, idx_cap = 0;
	char **idx_names = NULL;
	struct dirent *de;
	const char *ext;
	DIR *d;
	bool tmp;

	d = opendir(p->dir);
	if (!d)
		return sk_err_setc(err, -errno, "cannot read directory %s: %s",
				   p->dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (!parse_seg_name(de->d_name, &base, &ext))
			continue;
		if (strcmp(ext, "log") == 0) {
			if (n == cap)
				bases = grow(bases, &cap, sizeof(*bases));
			bases[n++] = base;
		} else if (is_index_ext(ext, &tmp)) {
			if (nidx == idx_cap)
				idx_names = grow(idx_names, &idx_cap,
						 sizeof(*idx_names));
			idx_names[nidx++] = sk_xstrdup(de->d_name);
		}
	}
	closedir(d);
	if (n)
		qsort(bases, n, sizeof(*bases), cmp_i64);

	for (size_t i = 0; i < nidx; i++) {
		char *path = sk_xasprintf("%s/%s", p->dir, idx_names[i]);

		parse_seg_name(idx_names[i], &base, &ext);
		is_index_ext(ext, &tmp);
		if (tmp || !bsearch(&base, bases, n, sizeof(*bases), cmp_i64)) {
			if (!tmp)
				sk_warn("partition %s: removing %s, which has "
					"no segment file",
					p->dir, idx_names[i]);
			if (sk_io_unlink(path) < 0 && errno != ENOENT)
				sk_warn("partition %s: cannot remove %s: %s",
					p->dir, path, strerror(errno));
		}
		free(path);
		free(idx_names[i]);
	}
	free(idx_names);
	*bases_out = bases;
	*n_out = n;
	return 0;
}

/* Last offset index entry, or (0, 0) for an empty index. */
static void last_offset_entry(const struct sk_segment *seg, uint32_t *rel,
			      uint32_t *pos)
{
	*rel = 0;
	*pos = 0;
	if (seg->idx.off.n)
		sk_log_index_offset_at(&seg->idx, seg->idx.off.n - 1, rel, pos);
}

/*
 * Take the state of a segment whose index was loaded from its files and
 * whose batches from the last offset entry on were scanned (res): the
 * last time entry carries the max timestamp of everything before.
 */
static void adopt_loaded(struct sk_segment *seg, int64_t file_size,
			 uint32_t last_pos, const struct sk_seg_scan *res)
{
	seg->size = file_size;
	seg->end_offset = res->end_offset;
	seg->index_bytes = file_size - last_pos;
	if (seg->idx.time.n)
		sk_log_index_time_at(&seg->idx, seg->idx.time.n - 1,
				     &seg->max_timestamp, &seg->max_ts_rel);
	if (res->max_timestamp > seg->max_timestamp) {
		seg->max_timestamp = res->max_timestamp;
		seg->max_ts_rel = res->max_ts_rel;
	}
}

/* Reset a segment to empty before a full rebuild scan. */
static void reset_segment(struct sk_segment *seg)
{
	sk_log_index_free(&seg->idx);
	seg->size = 0;
	seg->end_offset = seg->base_offset;
	seg->max_timestamp = SK_LOG_NO_TIMESTAMP;
	seg->max_ts_rel = 0;
	seg->index_bytes = 0;
}

/* The last offset entry at or below position pos: (rel, entry pos). */
static void floor_entry(const struct sk_segment *seg, int64_t pos,
			uint32_t *rel, uint32_t *epos)
{
	size_t lo = 0, hi = seg->idx.off.n;

	/* Entries are sorted by position; entry 0 is at position 0. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint32_t r, at;

		sk_log_index_offset_at(&seg->idx, mid, &r, &at);
		if ((int64_t)at <= pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	*rel = 0;
	*epos = 0;
	if (lo)
		sk_log_index_offset_at(&seg->idx, lo - 1, rel, epos);
}

/* State of one sk_partition_open, shared by the segment recoveries. */
struct recovery {
	struct recovery_ckpt ck; /* the checkpoint read */
	bool contradicted;	 /* the log disagrees with it: delete it */
	int64_t next_report;	 /* bytes_scanned at which to log progress */
};

/* sk_segment_scan, counting what recovery read and logging progress. */
static int scan(struct sk_partition *p, struct recovery *r,
		struct sk_segment *seg, int64_t pos, int64_t next,
		int64_t file_size, unsigned flags, struct sk_seg_scan *res)
{
	int rc = sk_segment_scan(seg, pos, next, file_size, flags,
				 p->cfg.index_interval_bytes, res);

	if ((flags & SK_SCAN_CRC) && res->pos > pos) {
		p->rec.bytes_scanned += res->pos - pos;
		p->rec.segments_scanned++;
		if (p->rec.bytes_scanned >= r->next_report) {
			sk_info("partition %s: recovery has scanned %" PRId64
				" MB (%d segments), now at segment %" PRId64,
				p->dir, p->rec.bytes_scanned >> 20,
				p->rec.segments_scanned, seg->base_offset);
			r->next_report = p->rec.bytes_scanned +
					 SK_RECOVERY_LOG_BYTES * 4;
		}
	}
	return rc;
}

/*
 * Cut a torn tail at res->pos. The cut is synced at once: new appends
 * land where it was, and a crash must not glue stale bytes behind them.
 */
static int cut_tail(struct sk_partition *p, struct sk_segment *seg,
		    int64_t file_size, const struct sk_seg_scan *res,
		    struct sk_err *err)
{
	int rc;

	sk_warn("partition %s: torn tail in segment %" PRId64
		" at offset %" PRId64 " (file position %" PRId64
		"): %s; dropping %" PRId64 " bytes",
		p->dir, seg->base_offset, res->end_offset, res->pos, res->why,
		file_size - res->pos);
	if (sk_io_ftruncate(seg->fd, (off_t)res->pos) < 0) {
		rc = -errno;
		return sk_err_setc(err, rc,
				   "partition %s: cannot truncate %s.log to "
				   "%" PRId64 " bytes: %s",
				   p->dir, seg->stem, res->pos, strerror(-rc));
	}
	if (sk_io_fdatasync(seg->fd) < 0)
		sk_warn("partition %s: cannot sync %s.log: %s", p->dir,
			seg->stem, strerror(errno));
	p->rec.bytes_truncated += file_size - res->pos;
	if (res->pos == 0)
		seg->created_ms = 0;
	return 0;
}

/*
 * Recover one segment of file_size bytes, the first trusted of which the
 * recovery checkpoint vouches for (SK_TRUST_ALL: all; see log.h). Index
 * files are used when they check out, describe the file or (for what
 * will be appended to) the trusted part, and the batches from their
 * entry at or below the trusted end to their end verify. Past the trusted
 * end every batch is verified; a bad one there is a torn tail: the file is
 * cut, and for a closed segment *cut is set (the caller deletes the
 * segments after it). A bad batch in the trusted part is damage, in the
 * active segment too: those bytes were synced, perhaps acknowledged.
 */
static int recover_segment(struct sk_partition *p, struct recovery *r,
			   struct sk_segment *seg, int64_t file_size,
			   int64_t trusted, bool last, bool *cut,
			   struct sk_err *err)
{
	int64_t idx_size = file_size;
	uint32_t rel, pos, last_rel, last_pos;
	/* Compaction leaves offset gaps in closed segments (compact.h). */
	unsigned gaps = last ? 0 : SK_SCAN_GAPS;
	struct sk_seg_scan res;
	const char *why = NULL;
	struct sk_err e;
	int rc;

	*cut = false;
	if (trusted == SK_TRUST_ALL)
		trusted = file_size;

	rc = sk_log_index_load(&seg->idx, seg->stem, file_size, &why);
	if (rc < 0 && trusted > 0 && trusted < file_size) {
		idx_size = trusted;
		rc = sk_log_index_load(&seg->idx, seg->stem, trusted, &why);
	}
	if (rc == 0) {
		floor_entry(seg, SK_MIN(trusted, idx_size), &rel, &pos);
		last_offset_entry(seg, &last_rel, &last_pos);
		rc = scan(p, r, seg, pos, seg->base_offset + rel, idx_size,
			  SK_SCAN_CRC | gaps, &res);
		if (rc < 0)
			goto io_error;
		if (!res.bad) {
			if (last || idx_size < file_size)
				sk_log_index_own(&seg->idx);
			adopt_loaded(seg, idx_size, last_pos, &res);
			seg->index_saved = idx_size == file_size;
			if (idx_size == file_size)
				return 0;
			/* Written after the checkpoint: verify and index. */
			rc = scan(p, r, seg, idx_size, seg->end_offset,
				  file_size, SK_SCAN_CRC | SK_SCAN_INDEX | gaps,
				  &res);
			if (rc < 0)
				goto io_error;
			if (!res.bad)
				return 0;
			*cut = !last;
			return cut_tail(p, seg, file_size, &res, err);
		}
		why = "does not match the log";
	}

	reset_segment(seg);
	if (trusted > 0 && why)
		sk_info("partition %s: rebuilding the index of segment %" PRId64
			": index %s",
			p->dir, seg->base_offset, why);
	rc = scan(p, r, seg, 0, seg->base_offset, file_size,
		  SK_SCAN_CRC | SK_SCAN_INDEX | gaps, &res);
	if (rc < 0)
		goto io_error;
	/*
	 * Synced bytes, possibly acknowledged: cutting them would drop
	 * records silently, in the active segment as in a closed one.
	 */
	if (res.bad && res.pos < trusted) {
		sk_error("partition %s: %s segment %" PRId64
			 " is corrupt at offset %" PRId64
			 " (file %s.log, position %" PRId64 " of %" PRId64
			 ", in its synced part): %s; offsets from %" PRId64
			 " on will not be served and appends are refused",
			 p->dir, last ? "active" : "closed", seg->base_offset,
			 res.end_offset, seg->stem, res.pos, file_size, res.why,
			 res.end_offset);
		mark_damaged(p, res.end_offset);
		seg->corrupt = true;
		return 0;
	}
	if (res.bad) {
		rc = cut_tail(p, seg, file_size, &res, err);
		if (rc < 0)
			return rc;
		*cut = !last;
	}
	/* Index files that did not fit are stale: gone now, or replaced. */
	if (last || *cut)
		sk_log_index_unlink(seg->stem);
	else if (sk_segment_save_index(seg, true, &e) < 0)
		sk_warn("partition %s: %s", p->dir, e.msg);
	return 0;

io_error:
	return sk_err_setc(err, rc,
			   "partition %s: cannot read segment %s.log: %s",
			   p->dir, seg->stem, strerror(-rc));
}

/*
 * Delete the k oldest segments (k < nsegs: never the active one). The .log
 * goes first: a crash right after leaves index files without a log, which
 * the next open removes, rather than a log without its index, which it
 * would rebuild by a full scan only for retention to delete it. Stops at
 * the first file that cannot be removed, keeping that segment and the
 * ones after it. Stores how many went; returns 0 or that -errno.
 */
static int remove_oldest(struct sk_partition *p, size_t k, size_t *removed)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < k; i++) {
		struct sk_segment *seg = p->segs[i];
		char *path = sk_xasprintf("%s.log", seg->stem);

		if (p->offload) {
			/* Off the loop: log_offload.c logs a failure. */
			sk_log_offload_remove(p->offload, p->offload_arg,
					      p->token, p->dir, seg->stem);
		} else if (sk_io_unlink(path) < 0 && errno != ENOENT) {
			rc = -errno;
			sk_error("partition %s: cannot delete segment %s: %s",
				 p->dir, path, strerror(-rc));
			free(path);
			break;
		} else {
			sk_log_index_unlink(seg->stem);
		}
		free(path);
		sk_debug("partition %s: deleted segment %" PRId64
			 " (offsets %" PRId64 "-%" PRId64 ", %" PRId64
			 " bytes)",
			 p->dir, seg->base_offset, seg->base_offset,
			 seg->end_offset - 1, seg->size);
		/* A reader's reference keeps the unlinked file readable. */
		sk_segment_unref(seg);
	}
	if (i > 0) {
		memmove(p->segs, p->segs + i,
			(p->nsegs - i) * sizeof(*p->segs));
		p->nsegs -= i;
		p->first_dirty = p->first_dirty > i ? p->first_dirty - i : 0;
		/* The next sync makes the removal durable too. */
		p->dir_dirty = true;
		if (p->start_offset < p->segs[0]->base_offset)
			p->start_offset = p->segs[0]->base_offset;
	}
	*removed = i;
	return rc;
}

/* How many of the oldest segments lie entirely below the start offset. */
static size_t count_below_start(const struct sk_partition *p)
{
	size_t k = 0;

	while (k + 1 < p->nsegs &&
	       p->segs[k + 1]->base_offset <= p->start_offset)
		k++;
	return k;
}

/*
 * The start offset DeleteRecords recorded, when it is inside the log
 * (above the first segment's base, at most the end offset); -1 otherwise.
 * A damaged or misplaced checkpoint is ignored with a warning: the start
 * then falls back to the first segment's base, which shows records that
 * had been deleted rather than losing any that had not.
 */
static int64_t read_start_checkpoint(struct sk_partition *p)
{
	char *tmp = sk_xasprintf("%s/%s.tmp", p->dir, SK_START_CKPT);
	int64_t first = p->segs[0]->base_offset, start = -1;
	int64_t end = active(p)->end_offset;
	uint8_t buf[SK_START_CKPT_SIZE];
	const char *why;
	int rc;

	/* A .tmp never renamed was never acknowledged. */
	if (sk_io_unlink(tmp) < 0 && errno != ENOENT)
		sk_warn("partition %s: cannot remove %s: %s", p->dir, tmp,
			strerror(errno));
	free(tmp);
	rc = sk_ckpt_read(p->dir, SK_START_CKPT, SK_START_CKPT_MAGIC,
			  SK_START_CKPT_VERSION, buf, sizeof(buf), &why);
	if (rc == -ENOENT)
		return -1;
	if (rc < 0) {
		sk_warn("partition %s: ignoring %s/%s: %s; the log starts at "
			"offset %" PRId64,
			p->dir, p->dir, SK_START_CKPT, why, first);
		return -1;
	}
	start = (int64_t)sk_be64(buf + 8);
	if (start > end) {
		sk_warn("partition %s: ignoring %s/%s: log start offset "
			"%" PRId64 " is past the end offset %" PRId64
			"; the log starts at offset %" PRId64,
			p->dir, p->dir, SK_START_CKPT, start, end, first);
		return -1;
	}
	/* At or below the first base: retention has deleted past it. */
	return start > first ? start : -1;
}

/*
 * The start offset log-start-offset.checkpoint holds if it checks out,
 * else -1; quietly (read_start_checkpoint reports, after recovery).
 */
static int64_t peek_start_checkpoint(const char *dir)
{
	uint8_t buf[SK_START_CKPT_SIZE];
	const char *why;

	if (sk_ckpt_read(dir, SK_START_CKPT, SK_START_CKPT_MAGIC,
			 SK_START_CKPT_VERSION, buf, sizeof(buf), &why) < 0)
		return -1;
	return (int64_t)sk_be64(buf + 8);
}

/*
 * Delete, before any recovery, the segments entirely below the log start
 * the checkpoints recorded: deleted data is not worth scanning, and a
 * crash may have brought back some of a run of deleted segments but not
 * others. Only while that start is at most the last segment's base,
 * which is surely inside the log (anything beyond is judged later).
 * Removes them from bases.
 */
static void drop_below_start(struct sk_partition *p,
			     const struct recovery_ckpt *ck, int64_t *bases,
			     size_t *n)
{
	int64_t start = peek_start_checkpoint(p->dir);
	size_t k = 0;

	if (ck->valid && ck->start > start)
		start = ck->start;
	if (*n == 0 || start > bases[*n - 1])
		return;
	while (k + 1 < *n && bases[k + 1] <= start)
		k++;
	if (k == 0)
		return;
	for (size_t i = 0; i < k; i++) {
		char *stem = sk_xasprintf("%s/%020" PRId64, p->dir, bases[i]);
		char *path = sk_xasprintf("%s.log", stem);

		if (sk_io_unlink(path) < 0 && errno != ENOENT)
			sk_warn("partition %s: cannot delete %s: %s", p->dir,
				path, strerror(errno));
		sk_log_index_unlink(stem);
		free(path);
		free(stem);
	}
	sk_info("partition %s: deleted %zu segments below the log start "
		"offset %" PRId64,
		p->dir, k, start);
	memmove(bases, bases + k, (*n - k) * sizeof(*bases));
	*n -= k;
	p->dir_dirty = true;
}

/*
 * Encode the recovery checkpoint for p as it is now (magic, version and
 * CRC are added when it is written).
 */
static void ckpt_encode(const struct sk_partition *p, bool clean, uint8_t *buf)
{
	const struct sk_segment *seg = active(p);

	memset(buf, 0, SK_LOG_CKPT_SIZE);
	sk_put_be32(buf + 8, clean ? SK_RECOVERY_CKPT_CLEAN : 0);
	sk_put_be64(buf + 12, (uint64_t)seg->base_offset);
	sk_put_be64(buf + 20, (uint64_t)seg->size);
	sk_put_be64(buf + 28, (uint64_t)seg->end_offset);
	sk_put_be64(buf + 36, (uint64_t)p->start_offset);
}

/*
 * Write recovery.checkpoint into dir; without durable, in place and
 * unsynced (a clean close: the broker syncs the file system once at the
 * end, see broker.c; a checkpoint lost or torn meanwhile costs a scan,
 * nothing else). Any thread (it touches no partition). 0 or -errno.
 */
static int ckpt_write(const char *dir, uint8_t *buf, bool durable)
{
	return sk_ckpt_write(dir, SK_RECOVERY_CKPT, SK_RECOVERY_CKPT_MAGIC,
			     SK_RECOVERY_CKPT_VERSION, buf, SK_LOG_CKPT_SIZE,
			     durable, NULL);
}

/*
 * Read recovery.checkpoint into *ck (ck->valid false when there is none
 * or it fails a check, which is logged).
 */
static void ckpt_read(struct sk_partition *p, struct recovery_ckpt *ck)
{
	char *tmp = sk_xasprintf("%s/%s.tmp", p->dir, SK_RECOVERY_CKPT);
	uint8_t buf[SK_LOG_CKPT_SIZE];
	const char *why = NULL;
	int rc;

	memset(ck, 0, sizeof(*ck));
	/* Never renamed into place, so never relied on. */
	if (sk_io_unlink(tmp) < 0 && errno != ENOENT)
		sk_warn("partition %s: cannot remove %s: %s", p->dir, tmp,
			strerror(errno));
	free(tmp);
	rc = sk_ckpt_read(p->dir, SK_RECOVERY_CKPT, SK_RECOVERY_CKPT_MAGIC,
			  SK_RECOVERY_CKPT_VERSION, buf, sizeof(buf), &why);
	if (rc == -ENOENT)
		return;
	if (rc == 0) {
		ck->clean = sk_be32(buf + 8) & SK_RECOVERY_CKPT_CLEAN;
		ck->base = (int64_t)sk_be64(buf + 12);
		ck->size = (int64_t)sk_be64(buf + 20);
		ck->end = (int64_t)sk_be64(buf + 28);
		ck->start = (int64_t)sk_be64(buf + 36);
		if (ck->base < 0 || ck->size < 0 || ck->end < ck->base ||
		    ck->start < 0)
			why = "values out of range";
		else
			ck->valid = true;
	}
	if (why)
		sk_warn("partition %s: ignoring %s/%s: %s; every segment will "
			"be scanned",
			p->dir, p->dir, SK_RECOVERY_CKPT, why);
}

/* How much of the segment at base the checkpoint vouches for. */
static int64_t ckpt_trust(const struct recovery_ckpt *ck, int64_t base)
{
	if (!ck->valid || base > ck->base)
		return 0;
	return base < ck->base ? SK_TRUST_ALL : ck->size;
}

/*
 * fdatasync the index files of stem, so that a recovery after a power
 * loss finds them. Files that are gone (replaced meanwhile) are skipped.
 * Returns 0 or -errno.
 */
static int sync_index_files(const char *stem)
{
	static const char *const exts[] = { "index", "timeindex" };
	int rc = 0;

	for (size_t i = 0; i < SK_ARRAY_SIZE(exts) && rc == 0; i++) {
		char *path = sk_xasprintf("%s.%s", stem, exts[i]);
		int fd = sk_io_open(path, O_RDONLY | O_CLOEXEC, 0);

		if (fd < 0) {
			if (errno != ENOENT)
				rc = -errno;
		} else {
			if (sk_io_fdatasync(fd) < 0)
				rc = -errno;
			sk_io_close(fd);
		}
		free(path);
	}
	return rc;
}

/* fsync the directories a sync must cover; 0 or -errno. */
static int sync_dirs(const char *dir, const char *parent)
{
	int rc = dir ? fsync_dir(dir) : 0;

	if (rc == 0 && parent)
		rc = fsync_dir(parent);
	return rc;
}

/*
 * Drop the partition's references. With save (a clean close): sync the
 * segments and the directory first, write the index files, and then the
 * clean recovery checkpoint, which the next open trusts; an index file is
 * written after the bytes it describes were synced. Index files and
 * checkpoint are overwritten in place (no inode allocated per close) and
 * not synced one by one: the broker syncs the file system once after
 * closing every partition (a power cut before that leaves an older
 * checkpoint, or a torn one that reads as none, which costs a scan at the
 * next start; a torn index file is rebuilt).
 */
static void release(struct sk_partition *p, bool save)
{
	bool ckpt = save && !p->damaged && !p->sync_failed, synced = save;
	/*
	 * Never written to: nothing to index nor to vouch for, and its next
	 * open finds the same empty segment without them. Writing them
	 * would create three files per partition, most of the first stop
	 * after creating thousands of partitions.
	 */
	bool blank = p->nsegs == 1 && active(p)->size == 0 &&
		     active(p)->base_offset == 0 && p->start_offset == 0;
	uint8_t buf[SK_LOG_CKPT_SIZE];
	struct sk_err e;
	int rc;

	/* Jobs not started yet leave the files alone from now on. */
	atomic_store(&p->token->gone, true);
	for (size_t i = 0; save && i < p->nsegs; i++) {
		struct sk_segment *seg = p->segs[i];

		rc = sk_segment_sync(seg);
		if (rc < 0 || atomic_load(&seg->sync_failed)) {
			if (rc < 0)
				sk_warn("partition %s: cannot sync %s.log: %s",
					p->dir, seg->stem, strerror(-rc));
			ckpt = synced = false;
			continue;
		}
		if (seg->index_saved || seg->corrupt || blank)
			continue;
		if (sk_segment_save_index(seg, false, &e) < 0) {
			sk_warn("partition %s: %s", p->dir, e.msg);
			if (i + 1 == p->nsegs)
				ckpt = false;
		}
	}
	if (synced && (p->dir_dirty || p->parent_dirty)) {
		char *parent = p->parent_dirty ? parent_of(p->dir) : NULL;

		rc = sync_dirs(p->dir, parent);
		free(parent);
		if (rc < 0) {
			sk_warn("partition %s: cannot sync the directory: %s",
				p->dir, strerror(-rc));
			ckpt = false;
		}
	}
	/* The clean checkpoint open read says it all: idle since. */
	if (ckpt && p->ckpt_clean && active(p)->base_offset == p->ckpt_base &&
	    active(p)->size == p->ckpt_size && p->start_offset == p->ckpt_start)
		ckpt = false;
	if (blank)
		ckpt = false;
	if (ckpt) {
		ckpt_encode(p, true, buf);
		rc = ckpt_write(p->dir, buf, false);
		if (rc < 0)
			sk_warn("partition %s: cannot write %s: %s; the next "
				"start will scan what the last one did not "
				"cover",
				p->dir, SK_RECOVERY_CKPT, strerror(-rc));
	}
	/* Their end finds the partition gone. */
	for (struct sk_log_start_write *w = p->start_writes; w; w = w->next)
		w->p = NULL;
	for (size_t i = 0; i < p->nsegs; i++)
		sk_segment_unref(p->segs[i]);
	free(p->segs);
	free(p->dir);
	sk_log_token_unref(p->token);
	free(p);
}

/*
 * Create the partition's directory if needed. A new directory entry is
 * durable only once its parent is synced, which the first sync does.
 */
static int make_dir(struct sk_partition *p, struct sk_err *err)
{
	int rc;

	if (sk_io_mkdir(p->dir, 0755) == 0) {
		p->parent_dirty = true;
		return 0;
	}
	if (errno == EEXIST)
		return 0;
	if (errno != ENOENT)
		return sk_err_setc(err, -errno,
				   "cannot create directory %s: %s", p->dir,
				   strerror(errno));
	/* A parent is missing too (log.dir itself is made at start). */
	rc = sk_mkdirs(p->dir, err);
	if (rc == 0)
		p->parent_dirty = true;
	return rc;
}

/*
 * Delete the segments bases[from, n), not opened, after a cut: they were
 * written after a torn write, so nothing in them was acknowledged (see
 * log.h), and keeping them would leave a hole in the offsets.
 */
static void drop_segments(struct sk_partition *p, const int64_t *bases,
			  size_t from, size_t n)
{
	for (size_t i = from; i < n; i++) {
		char *stem = sk_xasprintf("%s/%020" PRId64, p->dir, bases[i]);
		char *path = sk_xasprintf("%s.log", stem);
		struct stat st;

		sk_warn("partition %s: deleting segment %" PRId64 " (%lld "
			"bytes), written after the torn tail",
			p->dir, bases[i],
			stat(path, &st) == 0 ? (long long)st.st_size : -1ll);
		if (sk_io_unlink(path) < 0 && errno != ENOENT)
			sk_error("partition %s: cannot delete %s: %s", p->dir,
				 path, strerror(errno));
		sk_log_index_unlink(stem);
		p->rec.segments_dropped++;
		free(path);
		free(stem);
	}
	p->dir_dirty = true;
}

int sk_partition_open(struct sk_partition **out, const char *dir,
		      const struct sk_log_config *cfg, struct sk_err *err)
{
	struct sk_partition *p = sk_xcalloc(1, sizeof(*p));
	struct recovery r = { .next_report = SK_RECOVERY_LOG_BYTES * 4 };
	int64_t *bases = NULL, file_size, start, t0 = sk_mono_ms();
	struct sk_segment *seg;
	size_t n = 0;
	int rc;

	p->dir = sk_xstrdup(dir);
	p->token = sk_log_token_new();
	p->cfg = *cfg;
	p->ckpt_base = -1;
	rc = make_dir(p, err);
	if (rc < 0)
		goto fail;
	/* Finish or undo a segment swap a crash interrupted (compact.h). */
	rc = sk_compact_recover(dir, err);
	if (rc < 0)
		goto fail;
	rc = list_segments(p, &bases, &n, err);
	if (rc < 0)
		goto fail;

	if (n == 0) {
		rc = sk_segment_open(&seg, dir, 0, true, &file_size, err);
		if (rc < 0)
			goto fail;
		push_segment(p, seg);
		p->dir_dirty = true;
	}
	ckpt_read(p, &r.ck);
	if (r.ck.valid && n > 0 && r.ck.base > bases[n - 1]) {
		sk_warn("partition %s: the recovery checkpoint names segment "
			"%" PRId64 ", past the last one; every segment will "
			"be scanned",
			dir, r.ck.base);
		r.ck.valid = false;
		r.contradicted = true;
	}
	drop_below_start(p, &r.ck, bases, &n);
	p->rec.checkpoint = r.ck.valid;
	p->rec.clean = r.ck.valid && r.ck.clean;
	for (size_t i = 0; i < n; i++) {
		int64_t trusted = ckpt_trust(&r.ck, bases[i]);
		bool cut;

		rc = sk_segment_open(&seg, dir, bases[i], false, &file_size,
				     err);
		if (rc < 0)
			goto fail;
		push_segment(p, seg);
		if (trusted != SK_TRUST_ALL && trusted > file_size) {
			/*
			 * Synced bytes are gone: damage in a closed segment;
			 * the active one is checked and cut as ever.
			 */
			sk_warn("partition %s: segment %" PRId64 " has %" PRId64
				" bytes where the recovery checkpoint recorded "
				"%" PRId64,
				dir, seg->base_offset, file_size, trusted);
			r.contradicted = true;
			trusted = i + 1 == n ? 0 : SK_TRUST_ALL;
		}
		rc = recover_segment(p, &r, seg, file_size, trusted, i + 1 == n,
				     &cut, err);
		if (rc < 0)
			goto fail;
		/*
		 * Bytes past what the checkpoint vouches for may be only in
		 * the page cache (a crash of the process, not the machine):
		 * the first sync flushes them.
		 */
		seg->dirty = trusted != SK_TRUST_ALL && seg->size > trusted;
		/*
		 * A closed segment ending cleanly before the next one starts
		 * lost its tail: a cut too, where nothing was vouched for.
		 */
		if (!cut && !seg->corrupt && i + 1 < n &&
		    seg->end_offset < bases[i + 1]) {
			if (trusted == SK_TRUST_ALL) {
				sk_error("partition %s: segment %" PRId64
					 " ends at offset %" PRId64 " but the "
					 "next one starts at %" PRId64
					 "; offsets from %" PRId64
					 " on will not be served",
					 dir, seg->base_offset, seg->end_offset,
					 bases[i + 1], seg->end_offset);
				mark_damaged(p, seg->end_offset);
			} else {
				sk_warn("partition %s: segment %" PRId64
					" lost its tail: it ends at offset "
					"%" PRId64 ", the next one starts at "
					"%" PRId64,
					dir, seg->base_offset, seg->end_offset,
					bases[i + 1]);
				sk_log_index_unlink(seg->stem);
				seg->index_saved = false;
				cut = true;
			}
		}
		if (cut) {
			drop_segments(p, bases, i + 1, n);
			seg->dirty = true;
			break;
		}
		if (i > 0 && seg->base_offset < p->segs[i - 1]->end_offset) {
			sk_error("partition %s: segment %" PRId64
				 " overlaps the previous one, which ends at "
				 "offset %" PRId64 "; offsets from %" PRId64
				 " on will not be "
				 "served",
				 dir, seg->base_offset,
				 p->segs[i - 1]->end_offset, seg->base_offset);
			mark_damaged(p, seg->base_offset);
		}
	}
	free(bases);

	p->start_offset = p->segs[0]->base_offset;
	start = read_start_checkpoint(p);
	if (start > p->start_offset) {
		size_t k, removed = 0;

		p->start_offset = start;
		/* Left by a crash or failed unlink during DeleteRecords. */
		k = count_below_start(p);
		if (k && remove_oldest(p, k, &removed) == 0)
			sk_info("partition %s: deleted %zu segments below the "
				"log start offset %" PRId64,
				dir, removed, start);
	}
	/* Retention moves the start too; the checkpoint records it. */
	if (r.ck.valid && !r.contradicted && r.ck.start > p->start_offset &&
	    r.ck.start <= active(p)->end_offset) {
		size_t k, removed = 0;

		p->start_offset = r.ck.start;
		k = count_below_start(p);
		if (k)
			remove_oldest(p, k, &removed);
	}
	if (r.contradicted) {
		/* Gone before anything new is acknowledged (dir_dirty). */
		char *path = sk_xasprintf("%s/%s", dir, SK_RECOVERY_CKPT);

		if (sk_io_unlink(path) < 0 && errno != ENOENT)
			sk_warn("partition %s: cannot remove %s: %s", dir, path,
				strerror(errno));
		free(path);
		p->dir_dirty = true;
	} else if (r.ck.valid) {
		p->ckpt_base = r.ck.base;
		p->ckpt_size = r.ck.size;
		p->ckpt_start = r.ck.start;
		p->ckpt_clean = r.ck.clean;
	}
	p->first_dirty = 0;
	p->rec.ms = sk_mono_ms() - t0;
	if (p->rec.bytes_scanned >= SK_RECOVERY_LOG_BYTES ||
	    p->rec.bytes_truncated || p->rec.segments_dropped ||
	    p->rec.ms >= 1000)
		sk_info("partition %s: recovered in %" PRId64 " ms from %s: "
			"scanned %" PRId64 " bytes in %d segments, cut %" PRId64
			" bytes, deleted %d segments",
			dir, p->rec.ms,
			!r.ck.valid  ? "no checkpoint"
			: r.ck.clean ? "a clean shutdown"
				     : "the recovery checkpoint",
			p->rec.bytes_scanned, p->rec.segments_scanned,
			p->rec.bytes_truncated, p->rec.segments_dropped);
	*out = p;
	return 0;

fail:
	free(bases);
	release(p, false);
	return rc;
}

void sk_partition_set_offload(struct sk_partition *p, sk_log_offload_fn fn,
			      void *arg)
{
	p->offload = fn;
	p->offload_arg = arg;
}

void sk_partition_set_config(struct sk_partition *p,
			     const struct sk_log_config *cfg)
{
	p->cfg = *cfg;
}

void sk_partition_close(struct sk_partition *p)
{
	if (p)
		release(p, true);
}

void sk_partition_abandon(struct sk_partition *p)
{
	if (p)
		release(p, false);
}

void sk_partition_destroy(struct sk_partition *p)
{
	int rc;

	if (!p)
		return;
	/* Readers' fds stay valid: an unlinked inode lives while open. */
	rc = sk_rmtree(p->dir);
	if (rc < 0)
		sk_error("partition %s: cannot remove the directory: %s",
			 p->dir, strerror(-rc));
	release(p, false);
}

bool sk_partition_damaged(const struct sk_partition *p)
{
	return p->damaged;
}

/* Position of the first offset entry past pos, or the segment's size. */
static int64_t entry_after(const struct sk_segment *seg, int64_t pos)
{
	size_t lo = 0, hi = seg->idx.off.n;
	uint32_t rel, at;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		sk_log_index_offset_at(&seg->idx, mid, &rel, &at);
		if ((int64_t)at <= pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == seg->idx.off.n)
		return seg->size;
	sk_log_index_offset_at(&seg->idx, lo, &rel, &at);
	return at;
}

bool sk_partition_scrub_next(struct sk_partition *p, size_t max_bytes,
			     struct sk_scrub_chunk *c)
{
	struct sk_segment *prev = c->seg, *seg;
	size_t i = 0, closed = p->nsegs - 1;
	int64_t pos = 0, next, limit;

	if (prev) {
		/* Bases rise: find where prev is, or would be. */
		while (i < closed &&
		       p->segs[i]->base_offset < prev->base_offset)
			i++;
		if (i < closed && p->segs[i] == prev) {
			if (c->done_pos < prev->size && !prev->corrupt)
				pos = c->done_pos;
			else
				i++;
		}
		/* Else prev was replaced (compaction): the new file anew. */
	}
	while (i < closed && p->segs[i]->corrupt)
		i++;
	if (p->damaged || i >= closed) {
		sk_scrub_chunk_release(c);
		return false;
	}
	seg = p->segs[i];
	next = pos ? c->done_next : seg->base_offset;
	if (seg != prev) {
		sk_segment_ref(seg);
		sk_segment_unref(prev);
	}
	memset(c, 0, sizeof(*c));
	c->seg = seg;
	c->base = seg->base_offset;
	c->pos = pos;
	c->next = next;
	c->end_offset = seg->end_offset;
	/* End on a batch boundary the index knows, or at the end. */
	limit = (uint64_t)max_bytes >= (uint64_t)(seg->size - pos)
			? seg->size
			: sk_log_index_floor_pos(
				  &seg->idx,
				  (uint32_t)(pos + (int64_t)max_bytes));
	if (limit <= pos)
		limit = entry_after(seg, pos);
	c->limit = limit;
	c->last = limit == seg->size;
	c->done_pos = pos;
	c->done_next = next;
	return true;
}

void sk_scrub_chunk_release(struct sk_scrub_chunk *c)
{
	sk_segment_unref(c->seg);
	memset(c, 0, sizeof(*c));
}

bool sk_partition_scrub_end(struct sk_partition *p, struct sk_scrub_chunk *c)
{
	struct sk_segment *seg = c->seg;
	bool mine = false;

	if (!p || (!c->bad && c->rc == 0))
		return false;
	for (size_t i = 0; i + 1 < p->nsegs && !mine; i++)
		mine = p->segs[i] == seg;
	if (!mine || seg->corrupt)
		return false;
	if (c->rc < 0) {
		/* A disk that cannot read it back has lost it as surely. */
		c->bad_pos = c->pos;
		c->bad_offset = c->next;
		snprintf(c->why, sizeof(c->why), "read error: %s",
			 strerror(-c->rc));
	}
	sk_error("partition %s: scrub found bit rot in closed segment %s.log "
		 "at file position %" PRId64 " (offset %" PRId64 "): %s; "
		 "offsets from %" PRId64
		 " on will not be served and appends are refused",
		 p->dir, seg->stem, c->bad_pos, c->bad_offset, c->why,
		 c->bad_offset);
	mark_damaged(p, c->bad_offset);
	/*
	 * As if recovery had found it: the segment ends before the bad
	 * batch, so that no read of the batches before it runs into it.
	 */
	seg->corrupt = true;
	seg->size = c->bad_pos;
	seg->end_offset = c->bad_offset;
	seg->index_saved = false;
	/* The walk of this partition is over. */
	c->done_pos = seg->size;
	return true;
}

size_t sk_partition_segment_count(const struct sk_partition *p)
{
	return p->nsegs;
}

/* Why the active segment must give way to a new one before this batch. */
static const char *roll_reason(const struct sk_partition *p,
			       const struct sk_segment *seg,
			       const struct sk_batch_hdr *h, size_t len,
			       int64_t now)
{
	if (seg->size == 0)
		return NULL;
	if (seg->size + (int64_t)len > p->cfg.segment_bytes)
		return "segment.bytes";
	if (p->cfg.segment_ms > 0 && now - seg->created_ms >= p->cfg.segment_ms)
		return "segment.ms";
	if (seg->size + (int64_t)len > (int64_t)UINT32_MAX ||
	    seg->end_offset + h->last_offset_delta - seg->base_offset >
		    (int64_t)UINT32_MAX)
		return "32-bit index range";
	return NULL;
}

/*
 * Start a new segment at the end offset. The new file is created first,
 * so a failure leaves the partition as it was. The old segment's index
 * goes to disk off the loop (sk_partition_set_offload; a page-cache write
 * and a rename, their durability lazy, as a lost index is rebuilt).
 */
static int roll(struct sk_partition *p, const char *reason, struct sk_err *err)
{
	struct sk_segment *old = active(p), *seg;
	int64_t file_size;
	int rc;

	rc = sk_segment_open(&seg, p->dir, old->end_offset, true, &file_size,
			     err);
	if (rc < 0)
		return rc;
	sk_log_offload_index(p->offload, p->offload_arg, p->token, p->dir, old);
	push_segment(p, seg);
	p->dir_dirty = true;
	sk_debug("partition %s: rolled to segment %" PRId64 " (%s)", p->dir,
		 seg->base_offset, reason);
	return 0;
}

int sk_partition_append(struct sk_partition *p, uint8_t *buf, size_t len,
			int64_t *base_offset, struct sk_err *err)
{
	struct sk_segment *seg;
	struct sk_batch_hdr h;
	const char *reason;
	int64_t now;
	int rc;

	if (p->sync_failed)
		return sk_err_setc(err, -EIO,
				   "partition %s: an earlier fdatasync failed; "
				   "appends are refused until restart",
				   p->dir);
	if (p->damaged)
		return sk_err_setc(err, -EIO,
				   "partition %s is damaged at offset %" PRId64
				   "; appends are refused",
				   p->dir, p->damage_offset);
	if (sk_batch_parse_header(buf, len, &h) < 0 ||
	    sk_batch_size(&h) != len || h.last_offset_delta < 0)
		return sk_err_setc(err, -EINVAL,
				   "partition %s: append of %zu bytes that are "
				   "not one whole v2 batch",
				   p->dir, len);
	now = sk_now_ms();
	seg = active(p);
	reason = roll_reason(p, seg, &h, len, now);
	if (reason) {
		rc = roll(p, reason, err);
		if (rc < 0)
			return rc;
		seg = active(p);
	}
	h.base_offset = seg->end_offset;
	sk_batch_set_base_offset(buf, h.base_offset);
	rc = sk_segment_write(seg, buf, len, err);
	if (rc < 0)
		return rc;
	if (seg->size == 0)
		seg->created_ms = now;
	sk_segment_note_batch(seg, &h, len, p->cfg.index_interval_bytes);
	*base_offset = h.base_offset;
	return 0;
}

int64_t sk_partition_start_offset(const struct sk_partition *p)
{
	return p->start_offset;
}

int sk_partition_delete_begin(struct sk_partition *p, int64_t offset,
			      struct sk_log_start_write *w, struct sk_err *err)
{
	int64_t end = sk_partition_end_offset(p);
	int rc;

	memset(w, 0, sizeof(*w));
	if (offset < 0 || offset > end)
		return sk_err_setc(err, -ERANGE,
				   "partition %s: offset %" PRId64
				   " is outside the log [%" PRId64 ", %" PRId64
				   "]",
				   p->dir, offset, p->start_offset, end);
	if (offset <= p->start_offset)
		return 0;
	/*
	 * Everything goes: roll so that the active segment becomes a closed
	 * one below the start (not for a partition refusing appends, whose
	 * active segment is kept as evidence).
	 */
	if (offset == end && active(p)->size > 0 && !p->damaged &&
	    !p->sync_failed) {
		rc = roll(p, "DeleteRecords up to the end offset", err);
		if (rc < 0)
			return rc;
	}
	/*
	 * Writes run in the order begun (one thread): each records the
	 * highest start asked for so far, so the last to land is the
	 * highest and the durable start never goes back. The price: when
	 * an earlier write fails and a later one lands, the earlier
	 * request's start takes effect although it was answered with an
	 * error (a retry of it then finds it done).
	 */
	if (offset > p->pending_start)
		p->pending_start = offset;
	w->start = p->pending_start;
	w->dir = sk_xstrdup(p->dir);
	w->p = p;
	w->next = p->start_writes;
	p->start_writes = w;
	return 1;
}

void sk_log_start_write_run(struct sk_log_start_write *w)
{
	uint8_t buf[SK_START_CKPT_SIZE];
	bool renamed;
	int rc;

	sk_put_be64(buf + 8, (uint64_t)w->start);
	rc = sk_ckpt_write(w->dir, SK_START_CKPT, SK_START_CKPT_MAGIC,
			   SK_START_CKPT_VERSION, buf, sizeof(buf), true,
			   &renamed);
	/*
	 * Only the directory sync failed: the file holding the new value
	 * is synced, so the rename's durability alone is in doubt, and the
	 * old value, should it come back, is a valid earlier start.
	 */
	if (rc < 0 && renamed) {
		sk_warn("partition %s: cannot sync the directory after "
			"writing %s: %s",
			w->dir, SK_START_CKPT, strerror(-rc));
		rc = 0;
	}
	w->rc = rc;
}

int sk_partition_delete_end(struct sk_log_start_write *w, struct sk_err *err)
{
	struct sk_partition *p = w->p;
	size_t removed;
	int rc = w->rc;

	if (p) {
		struct sk_log_start_write **pp = &p->start_writes;

		while (*pp && *pp != w)
			pp = &(*pp)->next;
		assert(*pp == w); /* begun on p, so linked into it */
		if (*pp)
			*pp = w->next;
	}
	if (rc < 0 && p) {
		/* What failed was never asked for by the writes still due. */
		p->pending_start = p->start_offset;
		for (struct sk_log_start_write *o = p->start_writes; o;
		     o = o->next)
			p->pending_start = SK_MAX(p->pending_start, o->start);
	}
	if (rc < 0)
		sk_err_setc(err, rc,
			    "partition %s: cannot write the log start offset "
			    "to %s/%s: %s",
			    w->dir, w->dir, SK_START_CKPT, strerror(-rc));
	else if (!p)
		rc = sk_err_setc(err, -ECANCELED,
				 "partition %s was closed during DeleteRecords",
				 w->dir);
	free(w->dir);
	w->dir = NULL;
	w->p = NULL;
	if (rc < 0)
		return rc;
	if (w->start > p->start_offset)
		p->start_offset = w->start;
	/* Errors are logged; the next retention run retries. */
	remove_oldest(p, count_below_start(p), &removed);
	return 0;
}

int sk_partition_delete_before(struct sk_partition *p, int64_t offset,
			       struct sk_err *err)
{
	struct sk_log_start_write w;
	int rc;

	/* A write in flight elsewhere could land after this one. */
	if (p->start_writes)
		return sk_err_setc(err, -EAGAIN,
				   "partition %s: a DeleteRecords is in "
				   "progress; try again",
				   p->dir);
	rc = sk_partition_delete_begin(p, offset, &w, err);
	if (rc <= 0)
		return rc;
	sk_log_start_write_run(&w);
	return sk_partition_delete_end(&w, err);
}

/*
 * Kafka's LogSegment.largestTimestamp: the largest record timestamp, or
 * the file's mtime for a segment without one (empty, or records sent with
 * timestamp -1). INT64_MAX, which never expires, if even that is unknown.
 */
static int64_t largest_timestamp(const struct sk_segment *seg)
{
	struct stat st;

	if (seg->max_timestamp >= 0)
		return seg->max_timestamp;
	if (fstat(seg->fd, &st) < 0)
		return INT64_MAX;
	return (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
}

int sk_partition_retention(struct sk_partition *p, int64_t now_ms,
			   int64_t retention_ms, int64_t retention_bytes,
			   int64_t *deleted_segments)
{
	size_t closed = p->nsegs - 1, k = 0, removed = 0;
	int rc = 0;

	/* Each rule picks up where the one before stopped, as in Kafka. */
	if (retention_ms >= 0)
		while (k < closed &&
		       now_ms - largest_timestamp(p->segs[k]) > retention_ms)
			k++;
	if (retention_bytes >= 0) {
		int64_t excess = -retention_bytes;

		for (size_t i = k; i < p->nsegs; i++)
			excess += p->segs[i]->size;
		while (k < closed && excess - p->segs[k]->size >= 0) {
			excess -= p->segs[k]->size;
			k++;
		}
	}
	/* Bases rise, so the segments below the start are a prefix too. */
	k = SK_MAX(k, count_below_start(p));
	if (k)
		rc = remove_oldest(p, k, &removed);
	*deleted_segments = (int64_t)removed;
	return rc;
}

int64_t sk_partition_end_offset(const struct sk_partition *p)
{
	return active(p)->end_offset;
}

int64_t sk_partition_size_bytes(const struct sk_partition *p)
{
	int64_t size = 0;

	for (size_t i = 0; i < p->nsegs; i++)
		size += p->segs[i]->size;
	return size;
}

int sk_partition_read(struct sk_partition *p, int64_t offset, size_t max_bytes,
		      bool min_one, struct sk_log_slice *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (offset < sk_partition_start_offset(p) ||
	    offset > sk_partition_end_offset(p))
		return -ERANGE;
	for (size_t i = find_segment(p, offset); i < p->nsegs; i++) {
		struct sk_segment *seg = p->segs[i];

		/* Offsets missing between segments: serve what follows. */
		if (offset < seg->base_offset)
			offset = seg->base_offset;
		if (p->damaged && offset >= p->damage_offset)
			return -EIO;
		if (offset >= seg->end_offset)
			continue;
		rc = sk_segment_read(seg, offset, max_bytes, min_one, out);
		if (rc == -ENODATA)
			continue; /* only an empty batch left in it */
		/* The segment's own end offset says the batch is there. */
		return rc == -ENOENT ? -EIO : rc;
	}
	return 0;
}

int sk_partition_offset_for_time(struct sk_partition *p, int64_t ts,
				 int64_t *offset, int64_t *timestamp)
{
	/*
	 * Segments' max timestamps are not ordered (producers choose
	 * CreateTime), so each is asked in turn; a segment's max rules it
	 * out without I/O.
	 */
	for (size_t i = 0; i < p->nsegs; i++) {
		struct sk_segment *seg = p->segs[i];
		int rc;

		if (p->damaged && seg->base_offset >= p->damage_offset)
			break;
		rc = sk_segment_find_time(seg, ts, p->start_offset, offset,
					  timestamp);
		if (rc != -ENOENT)
			return rc;
	}
	return p->damaged ? -EIO : -ENOENT;
}

int sk_partition_sync(struct sk_partition *p)
{
	int rc = 0;

	/* Segments rolled since the last sync hold unsynced bytes too. */
	for (size_t i = p->first_dirty; i < p->nsegs; i++) {
		int r = sk_segment_sync(p->segs[i]);

		if (r < 0) {
			sk_error("partition %s: cannot sync %s.log: %s", p->dir,
				 p->segs[i]->stem, strerror(-r));
			return r;
		}
		p->first_dirty = i;
	}
	if (p->dir_dirty || p->parent_dirty) {
		char *parent = p->parent_dirty ? parent_of(p->dir) : NULL;

		rc = sync_dirs(p->dir, parent);
		free(parent);
		if (rc < 0) {
			sk_error("partition %s: cannot sync the directory: %s",
				 p->dir, strerror(-rc));
			return rc;
		}
		p->dir_dirty = false;
		p->parent_dirty = false;
	}
	return 0;
}

bool sk_partition_sync_begin(struct sk_partition *p, struct sk_log_sync *s)
{
	size_t n = 0;

	memset(s, 0, sizeof(*s));
	for (size_t i = p->first_dirty; i < p->nsegs; i++)
		n += p->segs[i]->dirty;
	if (n == 0 && !p->dir_dirty && !p->parent_dirty)
		return false;
	s->segs = sk_xcalloc(n + 1, sizeof(*s->segs));
	for (size_t i = p->first_dirty; i < p->nsegs; i++) {
		struct sk_segment *seg = p->segs[i];

		/*
		 * With a directory to sync, the active segment comes along
		 * even if clean: a failed directory sync flags what it holds
		 * (see sk_log_sync_run).
		 */
		if (!seg->dirty &&
		    !(i + 1 == p->nsegs && (p->dir_dirty || p->parent_dirty)))
			continue;
		sk_segment_ref(seg);
		seg->dirty = false;
		s->segs[s->n++] = seg;
	}
	p->first_dirty = p->nsegs - 1;
	if (p->dir_dirty) {
		s->dir = sk_xstrdup(p->dir);
		p->dir_dirty = false;
	}
	if (p->parent_dirty) {
		s->parent = parent_of(p->dir);
		p->parent_dirty = false;
	}
	return true;
}

bool sk_partition_checkpoint_begin(struct sk_partition *p,
				   struct sk_log_sync *s)
{
	struct sk_segment *seg = active(p);
	bool any = sk_partition_sync_begin(p, s);
	struct sk_err e;

	if (sk_partition_check_sync(p) || p->damaged)
		return any;
	if (seg->base_offset == p->ckpt_base && seg->size == p->ckpt_size &&
	    p->start_offset == p->ckpt_start)
		return any;
	/*
	 * The index files first (page cache, overwritten in place): the
	 * checkpoint names them, and is only written once this sync, which
	 * covers every byte they describe, has succeeded.
	 */
	if (!seg->index_saved && sk_segment_save_index(seg, false, &e) < 0) {
		sk_warn("partition %s: %s; no recovery checkpoint this time",
			p->dir, e.msg);
		return any;
	}
	if (!any)
		memset(s, 0, sizeof(*s));
	ckpt_encode(p, false, s->ckpt);
	s->ckpt_dir = sk_xstrdup(p->dir);
	/*
	 * Index files written since the last checkpoint (rolls, and the
	 * active segment's now) are synced before it, so that a recovery
	 * after a power loss has them and does not rebuild by a scan.
	 */
	s->idx_stems = sk_xcalloc(p->nsegs, sizeof(*s->idx_stems));
	for (size_t i = 0; i < p->nsegs; i++)
		if (p->segs[i]->base_offset >= p->ckpt_base &&
		    p->segs[i]->index_saved)
			s->idx_stems[s->n_idx++] = sk_xstrdup(p->segs[i]->stem);
	p->ckpt_base = seg->base_offset;
	p->ckpt_size = seg->size;
	p->ckpt_start = p->start_offset;
	p->ckpt_clean = false;
	return true;
}

int sk_log_sync_run(struct sk_log_sync *s)
{
	s->rc = 0;
	for (size_t i = 0; i < s->n; i++) {
		if (sk_io_fdatasync(s->segs[i]->fd) < 0) {
			s->rc = -errno;
			atomic_store(&s->segs[i]->sync_failed, true);
		}
	}
	if (s->rc == 0 && (s->dir || s->parent)) {
		/*
		 * A segment whose directory entry may not be durable is no
		 * better than one whose data may not be: stop appends too.
		 */
		s->rc = sync_dirs(s->dir, s->parent);
		for (size_t i = 0; s->rc < 0 && i < s->n; i++)
			atomic_store(&s->segs[i]->sync_failed, true);
	}
	s->ckpt_rc = 0;
	for (size_t i = 0;
	     s->rc == 0 && s->ckpt_dir && i < s->n_idx && s->ckpt_rc == 0; i++)
		s->ckpt_rc = sync_index_files(s->idx_stems[i]);
	if (s->rc == 0 && s->ckpt_dir && s->ckpt_rc == 0)
		s->ckpt_rc = ckpt_write(s->ckpt_dir, s->ckpt, true);
	if (s->ckpt_rc < 0)
		sk_warn("partition %s: cannot write %s: %s", s->ckpt_dir,
			SK_RECOVERY_CKPT, strerror(-s->ckpt_rc));
	return s->rc;
}

void sk_log_sync_end(struct sk_log_sync *s)
{
	for (size_t i = 0; i < s->n; i++)
		sk_segment_unref(s->segs[i]);
	free(s->segs);
	free(s->dir);
	free(s->parent);
	free(s->ckpt_dir);
	for (size_t i = 0; i < s->n_idx; i++)
		free(s->idx_stems[i]);
	free(s->idx_stems);
	memset(s, 0, sizeof(*s));
}

const struct sk_log_recovery *
sk_partition_recovery(const struct sk_partition *p)
{
	return &p->rec;
}

bool sk_partition_check_sync(struct sk_partition *p)
{
	for (size_t i = 0; i < p->nsegs; i++) {
		struct sk_segment *seg = p->segs[i];

		if (atomic_load(&seg->sync_failed)) {
			if (!p->sync_failed)
				sk_error("partition %s: fdatasync of %s.log "
					 "failed; refusing further appends "
					 "until restart",
					 p->dir, seg->stem);
			p->sync_failed = true;
			return true;
		}
	}
	return false;
}

const char *sk_partition_dir(const struct sk_partition *p)
{
	return p->dir;
}

struct sk_segment *sk_partition_segment(const struct sk_partition *p, size_t i)
{
	return i < p->nsegs ? p->segs[i] : NULL;
}

int sk_partition_replace(struct sk_partition *p, size_t i, size_t n,
			 struct sk_segment *seg)
{
	if (n == 0 || i + n >= p->nsegs)
		return -EINVAL;
	for (size_t k = i; k < i + n; k++)
		sk_segment_unref(p->segs[k]);
	p->segs[i] = seg;
	memmove(p->segs + i + 1, p->segs + i + n,
		(p->nsegs - i - n) * sizeof(*p->segs));
	p->nsegs -= n - 1;
	/* The new segment is synced; a lower mark only costs a look. */
	if (p->first_dirty > i)
		p->first_dirty =
			p->first_dirty >= i + n ? p->first_dirty - (n - 1) : i;
	return 0;
}

void sk_partition_dir_changed(struct sk_partition *p)
{
	p->dir_dirty = true;
}

int sk_partition_drop_oldest(struct sk_partition *p, size_t n, size_t *removed)
{
	*removed = 0;
	if (n == 0)
		return 0;
	if (n >= p->nsegs)
		return -EINVAL;
	return remove_oldest(p, n, removed);
}

size_t sk_partition_closed_segments(struct sk_partition *p,
				    struct sk_segment_info *out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i + 1 < p->nsegs && n < max; i++) {
		struct sk_segment *s = p->segs[i];

		sk_segment_ref(s);
		out[n++] = (struct sk_segment_info){
			.seg = s,
			.base_offset = s->base_offset,
			.end_offset = s->end_offset,
			.max_timestamp = s->max_timestamp == SK_LOG_NO_TIMESTAMP
						 ? -1
						 : s->max_timestamp,
			.size = s->size,
		};
	}
	return n;
}
