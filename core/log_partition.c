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
 */
#include "log_internal.h"

#include "say.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SK_SEG_NAME_DIGITS 20

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
	int64_t *bases = NULL, file_size;
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
	return p->segs[0]->base_offset;
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
		rc = sk_segment_find_time(seg, ts, offset, timestamp);
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
