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
 */
#include "log_internal.h"

#include "crc32c.h"
#include "say.h"

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

#define SK_START_CKPT "log-start-offset.checkpoint"
#define SK_START_CKPT_MAGIC 0x534b4c53u /* "SKLS" */
#define SK_START_CKPT_VERSION 1u
#define SK_START_CKPT_SIZE 20

struct sk_partition {
	char *dir;                /* owned path of the directory */
	struct sk_log_config cfg; /* settings for the next roll/append */
	struct sk_segment **segs; /* one reference each, by base offset */
	size_t nsegs;             /* >= 1 once open; the last is active */
	size_t cap;               /* slots in segs */
	size_t first_dirty;       /* segs before this one are synced */
	bool dir_dirty;           /* a segment file was created since sync */
	bool damaged;             /* see sk_partition_damaged */
	bool sync_failed;         /* a sync failed: appends refused */
	int64_t damage_offset;    /* first offset not served when damaged */
	/* log start offset: segs[0]->base_offset <= start <= end offset */
	int64_t start_offset;
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
			if (unlink(path) < 0 && errno != ENOENT)
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

static int recover_closed(struct sk_partition *p, struct sk_segment *seg,
			  int64_t file_size, struct sk_err *err)
{
	struct sk_seg_scan res;
	const char *why = NULL;
	uint32_t rel, pos;
	struct sk_err e;
	int rc;

	if (sk_log_index_load(&seg->idx, seg->stem, file_size, &why) == 0) {
		last_offset_entry(seg, &rel, &pos);
		rc = sk_segment_scan(seg, pos, seg->base_offset + rel,
				     file_size, 0, 0, &res);
		if (rc < 0)
			goto io_error;
		if (!res.bad) {
			adopt_loaded(seg, file_size, pos, &res);
			seg->index_saved = true;
			return 0;
		}
		why = "does not match the log";
	}
	reset_segment(seg);
	sk_info("partition %s: rebuilding the index of segment %" PRId64
		": index %s",
		p->dir, seg->base_offset, why);
	rc = sk_segment_scan(seg, 0, seg->base_offset, file_size,
			     SK_SCAN_CRC | SK_SCAN_INDEX,
			     p->cfg.index_interval_bytes, &res);
	if (rc < 0)
		goto io_error;
	if (res.bad) {
		sk_error("partition %s: closed segment %" PRId64
			 " is corrupt at offset %" PRId64
			 " (file position %" PRId64 " of %" PRId64
			 "): %s; offsets from %" PRId64
			 " on will not be served and appends are refused",
			 p->dir, seg->base_offset, res.end_offset, res.pos,
			 file_size, res.why, res.end_offset);
		mark_damaged(p, res.end_offset);
		seg->corrupt = true;
		return 0;
	}
	if (sk_segment_save_index(seg, true, &e) < 0)
		sk_warn("partition %s: %s", p->dir, e.msg);
	return 0;

io_error:
	return sk_err_setc(err, rc,
			   "partition %s: cannot read segment %s.log: %s",
			   p->dir, seg->stem, strerror(-rc));
}

/*
 * The active segment may end in a torn write. Index files exist for it
 * only after a clean close, which synced the log before writing them;
 * then only the batches from the last index entry on need their CRC
 * checked. Otherwise every batch is, and the file is cut at the first
 * bad byte.
 */
static int recover_active(struct sk_partition *p, struct sk_segment *seg,
			  int64_t file_size, bool *clean, struct sk_err *err)
{
	struct sk_seg_scan res;
	const char *why;
	uint32_t rel, pos;
	int rc;

	if (sk_log_index_load(&seg->idx, seg->stem, file_size, &why) == 0) {
		last_offset_entry(seg, &rel, &pos);
		rc = sk_segment_scan(seg, pos, seg->base_offset + rel,
				     file_size, SK_SCAN_CRC, 0, &res);
		if (rc < 0)
			goto io_error;
		if (!res.bad) {
			sk_log_index_own(&seg->idx);
			adopt_loaded(seg, file_size, pos, &res);
			*clean = true;
			goto done;
		}
	}
	reset_segment(seg);
	rc = sk_segment_scan(seg, 0, seg->base_offset, file_size,
			     SK_SCAN_CRC | SK_SCAN_INDEX,
			     p->cfg.index_interval_bytes, &res);
	if (rc < 0)
		goto io_error;
	if (res.bad) {
		sk_warn("partition %s: torn tail in segment %" PRId64
			" at offset %" PRId64 " (file position %" PRId64
			"): %s; dropping %" PRId64 " bytes",
			p->dir, seg->base_offset, res.end_offset, res.pos,
			res.why, file_size - res.pos);
		if (ftruncate(seg->fd, (off_t)res.pos) < 0) {
			rc = -errno;
			return sk_err_setc(err, rc,
					   "partition %s: cannot truncate "
					   "%s.log to %" PRId64 " bytes: %s",
					   p->dir, seg->stem, res.pos,
					   strerror(-rc));
		}
		/*
		 * New appends land where the cut was; make the cut durable
		 * first so a crash cannot glue stale bytes behind them.
		 */
		if (fdatasync(seg->fd) < 0)
			sk_warn("partition %s: cannot sync %s.log: %s", p->dir,
				seg->stem, strerror(errno));
		if (res.pos == 0)
			seg->created_ms = 0;
	}
done:
	/*
	 * The segment will grow: stale index files could later match its
	 * size by chance, so they go now and are rewritten at roll or close.
	 */
	sk_log_index_unlink(seg->stem);
	seg->index_saved = false;
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

		if (unlink(path) < 0 && errno != ENOENT) {
			rc = -errno;
			sk_error("partition %s: cannot delete segment %s: %s",
				 p->dir, path, strerror(-rc));
			free(path);
			break;
		}
		free(path);
		sk_log_index_unlink(seg->stem);
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
 * Make start the durable log start offset: the checkpoint is written to
 * a .tmp, synced and renamed over the old one, then the directory is
 * synced. Fails (nothing changed) before the rename; a failed directory
 * sync after it only leaves the rename's durability in doubt, as the file
 * holding the new value is synced, so it is logged and the new start
 * stands (the old value, should it come back, is a valid earlier start).
 */
static int write_start_checkpoint(struct sk_partition *p, int64_t start,
				  struct sk_err *err)
{
	char *path = sk_xasprintf("%s/%s", p->dir, SK_START_CKPT);
	char *tmp = sk_xasprintf("%s.tmp", path);
	uint8_t buf[SK_START_CKPT_SIZE];
	ssize_t w;
	int fd, rc = 0;

	sk_put_be32(buf, SK_START_CKPT_MAGIC);
	sk_put_be32(buf + 4, SK_START_CKPT_VERSION);
	sk_put_be64(buf + 8, (uint64_t)start);
	sk_put_be32(buf + 16, sk_crc32c(0, buf, 16));

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	do
		w = pwrite(fd, buf, sizeof(buf), 0);
	while (w < 0 && errno == EINTR);
	if (w != (ssize_t)sizeof(buf))
		rc = w < 0 ? -errno : -ENOSPC;
	else if (fdatasync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		goto fail;
	}
	rc = sk_fsync_dir(p->dir);
	if (rc < 0)
		sk_warn("partition %s: cannot sync the directory after "
			"writing %s: %s",
			p->dir, SK_START_CKPT, strerror(-rc));
	free(tmp);
	free(path);
	return 0;

fail:
	sk_err_setc(err, rc,
		    "partition %s: cannot write the log start offset to %s: "
		    "%s",
		    p->dir, tmp, strerror(-rc));
	free(tmp);
	free(path);
	return rc;
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
	char *path = sk_xasprintf("%s/%s", p->dir, SK_START_CKPT);
	char *tmp = sk_xasprintf("%s.tmp", path);
	int64_t first = p->segs[0]->base_offset, start = -1;
	int64_t end = active(p)->end_offset;
	uint8_t buf[SK_START_CKPT_SIZE + 1];
	const char *why = NULL;
	ssize_t n;
	int fd;

	/* A .tmp never renamed was never acknowledged. */
	if (unlink(tmp) < 0 && errno != ENOENT)
		sk_warn("partition %s: cannot remove %s: %s", p->dir, tmp,
			strerror(errno));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			sk_warn("partition %s: cannot open %s, ignoring it: %s",
				p->dir, path, strerror(errno));
		goto out;
	}
	n = pread(fd, buf, sizeof(buf), 0);
	close(fd);
	if (n != SK_START_CKPT_SIZE)
		why = n < 0 ? strerror(errno) : "wrong size";
	else if (sk_be32(buf) != SK_START_CKPT_MAGIC ||
		 sk_be32(buf + 4) != SK_START_CKPT_VERSION)
		why = "bad magic or version";
	else if (sk_be32(buf + 16) != sk_crc32c(0, buf, 16))
		why = "CRC mismatch";
	if (why) {
		sk_warn("partition %s: ignoring %s: %s; the log starts at "
			"offset %" PRId64,
			p->dir, path, why, first);
		goto out;
	}
	start = (int64_t)sk_be64(buf + 8);
	if (start > end) {
		sk_warn("partition %s: ignoring %s: log start offset %" PRId64
			" is past the end offset %" PRId64
			"; the log starts at offset %" PRId64,
			p->dir, path, start, end, first);
		start = -1;
	} else if (start <= first) {
		/* Retention has deleted past it: nothing to apply. */
		start = -1;
	}
out:
	free(tmp);
	free(path);
	return start;
}

/* Drop the partition's references, saving indexes first when save. */
static void release(struct sk_partition *p, bool save)
{
	struct sk_err e;

	for (size_t i = 0; i < p->nsegs; i++) {
		struct sk_segment *seg = p->segs[i];
		int rc = 0;

		/*
		 * A clean close leaves every segment synced (the next open
		 * relies on that, see sk_partition_open), and syncs before
		 * writing an index: an index file is a promise that the log
		 * bytes it describes are whole (see recover_active).
		 */
		if (save) {
			rc = sk_segment_sync(seg);
			if (rc < 0)
				sk_warn("partition %s: cannot sync %s.log: %s",
					p->dir, seg->stem, strerror(-rc));
		}
		if (save && rc == 0 && !seg->index_saved && !seg->corrupt &&
		    sk_segment_save_index(seg, false, &e) < 0)
			sk_warn("partition %s: %s", p->dir, e.msg);
		sk_segment_unref(seg);
	}
	free(p->segs);
	free(p->dir);
	free(p);
}

int sk_partition_open(struct sk_partition **out, const char *dir,
		      const struct sk_log_config *cfg, struct sk_err *err)
{
	struct sk_partition *p = sk_xcalloc(1, sizeof(*p));
	struct sk_segment *seg;
	int64_t *bases = NULL, file_size, start;
	bool clean = false;
	size_t n = 0;
	int rc;

	p->dir = sk_xstrdup(dir);
	p->cfg = *cfg;
	rc = sk_mkdirs(dir, err);
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
	for (size_t i = 0; i < n; i++) {
		rc = sk_segment_open(&seg, dir, bases[i], false, &file_size,
				     err);
		if (rc < 0)
			goto fail;
		push_segment(p, seg);
		if (i + 1 < n)
			rc = recover_closed(p, seg, file_size, err);
		else
			rc = recover_active(p, seg, file_size, &clean, err);
		if (rc < 0)
			goto fail;
		if (i > 0 && seg->base_offset < p->segs[i - 1]->end_offset) {
			sk_error("partition %s: segment %" PRId64
				 " overlaps the previous one, which ends at "
				 "offset %" PRId64
				 "; offsets from %" PRId64 " on will not be "
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
	/*
	 * After a crash of the process (not of the machine) segments may
	 * still hold bytes that only the page cache has; the first sync
	 * flushes them all. A clean close synced everything, and left the
	 * index files that the active segment's recovery found.
	 */
	p->first_dirty = 0;
	for (size_t i = 0; i < p->nsegs && !clean; i++)
		p->segs[i]->dirty = true;
	*out = p;
	return 0;

fail:
	free(bases);
	release(p, false);
	return rc;
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
 * goes to disk now (a page-cache write and a rename; their durability is
 * lazy, as a lost index is rebuilt).
 */
static int roll(struct sk_partition *p, const char *reason,
		struct sk_err *err)
{
	struct sk_segment *old = active(p), *seg;
	int64_t file_size;
	struct sk_err e;
	int rc;

	rc = sk_segment_open(&seg, p->dir, old->end_offset, true, &file_size,
			     err);
	if (rc < 0)
		return rc;
	if (sk_segment_save_index(old, true, &e) < 0)
		sk_warn("partition %s: %s (rebuilt at the next open)", p->dir,
			e.msg);
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

int sk_partition_delete_before(struct sk_partition *p, int64_t offset,
			       struct sk_err *err)
{
	int64_t end = sk_partition_end_offset(p);
	size_t removed;
	int rc;

	if (offset < 0 || offset > end)
		return sk_err_setc(err, -ERANGE,
				   "partition %s: offset %" PRId64
				   " is outside the log [%" PRId64
				   ", %" PRId64 "]",
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
	rc = write_start_checkpoint(p, offset, err);
	if (rc < 0)
		return rc;
	p->start_offset = offset;
	/* Errors are logged; the next retention run retries. */
	remove_oldest(p, count_below_start(p), &removed);
	return 0;
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

int sk_partition_read(struct sk_partition *p, int64_t offset,
		      size_t max_bytes, bool min_one,
		      struct sk_log_slice *out)
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
			sk_error("partition %s: cannot sync %s.log: %s",
				 p->dir, p->segs[i]->stem, strerror(-r));
			return r;
		}
		p->first_dirty = i;
	}
	if (p->dir_dirty) {
		rc = sk_fsync_dir(p->dir);
		if (rc < 0) {
			sk_error("partition %s: cannot sync the directory: %s",
				 p->dir, strerror(-rc));
			return rc;
		}
		p->dir_dirty = false;
	}
	return 0;
}

bool sk_partition_sync_begin(struct sk_partition *p, struct sk_log_sync *s)
{
	size_t n = 0;

	memset(s, 0, sizeof(*s));
	for (size_t i = p->first_dirty; i < p->nsegs; i++)
		n += p->segs[i]->dirty;
	if (n == 0 && !p->dir_dirty)
		return false;
	s->segs = sk_xcalloc(n ? n : 1, sizeof(*s->segs));
	for (size_t i = p->first_dirty; i < p->nsegs; i++) {
		struct sk_segment *seg = p->segs[i];

		if (!seg->dirty)
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
	return true;
}

int sk_log_sync_run(struct sk_log_sync *s)
{
	s->rc = 0;
	for (size_t i = 0; i < s->n; i++) {
		if (fdatasync(s->segs[i]->fd) < 0) {
			s->rc = -errno;
			atomic_store(&s->segs[i]->sync_failed, true);
		}
	}
	if (s->dir && s->rc == 0)
		s->rc = sk_fsync_dir(s->dir);
	return s->rc;
}

void sk_log_sync_end(struct sk_log_sync *s)
{
	for (size_t i = 0; i < s->n; i++)
		sk_segment_unref(s->segs[i]);
	free(s->segs);
	free(s->dir);
	memset(s, 0, sizeof(*s));
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
