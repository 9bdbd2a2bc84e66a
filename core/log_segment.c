/*
 * One segment of a partition log: the .log file of back-to-back batches,
 * its reference count, and everything that walks its batches (recovery
 * scans, Fetch reads, lookups by time).
 *
 * The file is written only with pwrite at seg->size, so bytes past size
 * (a failed append that could not be truncated away) are never served and
 * are overwritten by the next append.
 */
#include "log_internal.h"

#include "io.h"
#include "say.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read-ahead of the recovery scan, which reads every byte anyway. */
#define SK_SEG_SCAN_CHUNK (1u << 20)
/* Read-ahead of header walks: a few index intervals of small batches. */
#define SK_SEG_WALK_CHUNK 8192

int sk_segment_open(struct sk_segment **out, const char *dir, int64_t base,
		    bool create, int64_t *file_size, struct sk_err *err)
{
	struct sk_segment *seg = sk_xcalloc(1, sizeof(*seg));
	int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
	struct stat st;
	char *path;
	int rc;

	seg->stem = sk_xasprintf("%s/%020" PRId64, dir, base);
	path = sk_xasprintf("%s.log", seg->stem);
	seg->fd = sk_io_open(path, flags, 0644);
	if (seg->fd < 0) {
		rc = sk_err_setc(err, -errno, "cannot %s segment %s: %s",
				 create ? "create" : "open", path,
				 strerror(errno));
		goto fail;
	}
	if (fstat(seg->fd, &st) < 0) {
		rc = sk_err_setc(err, -errno, "cannot stat segment %s: %s",
				 path, strerror(errno));
		sk_io_close(seg->fd);
		goto fail;
	}
	free(path);
	atomic_init(&seg->refs, 1);
	atomic_init(&seg->sync_failed, false);
	seg->base_offset = base;
	seg->end_offset = base;
	seg->max_timestamp = SK_LOG_NO_TIMESTAMP;
	/*
	 * segment.ms counts from the first append; for a reopened file the
	 * best record of that left is its mtime (the last write, so a
	 * reopened segment may live up to one segment.ms longer).
	 */
	if (st.st_size > 0)
		seg->created_ms = (int64_t)st.st_mtim.tv_sec * 1000 +
				  st.st_mtim.tv_nsec / 1000000;
	sk_log_index_init(&seg->idx);
	*file_size = st.st_size;
	*out = seg;
	return 0;

fail:
	free(path);
	free(seg->stem);
	free(seg);
	return rc;
}

int sk_segment_fd(const struct sk_segment *seg)
{
	return seg->fd;
}

void sk_segment_ref(struct sk_segment *seg)
{
	atomic_fetch_add_explicit(&seg->refs, 1, memory_order_relaxed);
}

void sk_segment_unref(struct sk_segment *seg)
{
	if (!seg)
		return;
	/* acq_rel: the freeing thread must see every other holder's work. */
	if (atomic_fetch_sub_explicit(&seg->refs, 1, memory_order_acq_rel) != 1)
		return;
	sk_io_close(seg->fd);
	sk_log_index_free(&seg->idx);
	free(seg->stem);
	free(seg);
}

void sk_log_slice_release(struct sk_log_slice *s)
{
	sk_segment_unref(s->seg);
	s->seg = NULL;
	s->pos = 0;
	s->len = 0;
}

void sk_segment_note_batch(struct sk_segment *seg, const struct sk_batch_hdr *h,
			   size_t len, int64_t index_interval)
{
	uint32_t rel = (uint32_t)(h->base_offset - seg->base_offset);

	if (h->max_timestamp > seg->max_timestamp) {
		seg->max_timestamp = h->max_timestamp;
		seg->max_ts_rel = rel;
	}
	if (seg->size == 0 || seg->index_bytes >= index_interval) {
		int64_t last_ts = SK_LOG_NO_TIMESTAMP;
		uint32_t last_rel;

		sk_log_index_add_offset(&seg->idx, rel, (uint32_t)seg->size);
		if (seg->idx.time.n)
			sk_log_index_time_at(&seg->idx, seg->idx.time.n - 1,
					     &last_ts, &last_rel);
		if (seg->max_timestamp > last_ts)
			sk_log_index_add_time(&seg->idx, seg->max_timestamp,
					      seg->max_ts_rel);
		seg->index_bytes = 0;
	}
	seg->index_bytes += (int64_t)len;
	seg->size += (int64_t)len;
	seg->end_offset = h->base_offset + h->last_offset_delta + 1;
	seg->index_saved = false;
}

int sk_segment_write(struct sk_segment *seg, const uint8_t *buf, size_t len,
		     struct sk_err *err)
{
	size_t done = 0;
	int rc;

	while (done < len) {
		ssize_t w = sk_io_pwrite(seg->fd, buf + done, len - done,
					 (off_t)(seg->size + (int64_t)done));

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			/* 0 bytes written for a non-empty write: no space. */
			rc = w < 0 ? -errno : -ENOSPC;
			goto undo;
		}
		done += (size_t)w;
	}
	seg->dirty = true;
	return 0;

undo:
	/*
	 * Take back the bytes a short write left, so a crash now does not
	 * make recovery find (and log) a torn batch that was never
	 * acknowledged. If even that fails, the bytes stay past seg->size,
	 * where nothing reads them and the next append overwrites them.
	 */
	if (done > 0 && sk_io_ftruncate(seg->fd, (off_t)seg->size) < 0)
		sk_error("cannot truncate %s.log back to %" PRId64
			 " bytes after a failed append: %s",
			 seg->stem, seg->size, strerror(errno));
	return sk_err_setc(err, rc,
			   "cannot append %zu bytes to %s.log at position "
			   "%" PRId64 ": %s",
			   len, seg->stem, seg->size, strerror(-rc));
}

void sk_segment_seal_index(struct sk_segment *seg)
{
	int64_t last_ts = SK_LOG_NO_TIMESTAMP;
	uint32_t rel;

	/*
	 * Close the time index with the segment's max timestamp, so a
	 * reopen learns the max from the last entry instead of a scan.
	 */
	if (seg->idx.time.n)
		sk_log_index_time_at(&seg->idx, seg->idx.time.n - 1, &last_ts,
				     &rel);
	if (seg->max_timestamp > last_ts)
		sk_log_index_add_time(&seg->idx, seg->max_timestamp,
				      seg->max_ts_rel);
}

int sk_segment_save_index(struct sk_segment *seg, bool keep_mapped,
			  struct sk_err *err)
{
	struct sk_log_index mapped;
	const char *why;
	int rc;

	sk_segment_seal_index(seg);
	rc = sk_log_index_save(&seg->idx, seg->stem, seg->size, !keep_mapped,
			       err);
	if (rc < 0)
		return rc;
	seg->index_saved = true;
	if (keep_mapped &&
	    sk_log_index_load(&mapped, seg->stem, seg->size, &why) == 0) {
		sk_log_index_free(&seg->idx);
		seg->idx = mapped;
	}
	return 0;
}

int sk_segment_sync(struct sk_segment *seg)
{
	if (!seg->dirty)
		return 0;
	if (sk_io_fdatasync(seg->fd) < 0)
		return -errno;
	seg->dirty = false;
	return 0;
}

void sk_seg_reader_init(struct sk_seg_reader *r, int fd, int64_t limit,
			void *buf, size_t cap)
{
	r->fd = fd;
	r->limit = limit;
	r->buf = buf;
	r->cap = cap;
	r->heap = false;
	r->at = 0;
	r->len = 0;
}

void sk_seg_reader_done(struct sk_seg_reader *r)
{
	if (r->heap)
		free(r->buf);
	r->buf = NULL;
	r->heap = false;
}

int sk_seg_reader_get(struct sk_seg_reader *r, int64_t pos, size_t n,
		      const uint8_t **p)
{
	size_t want, got = 0;

	if (pos < 0 || pos > r->limit ||
	    (uint64_t)n > (uint64_t)(r->limit - pos))
		return -ENODATA;
	if (pos >= r->at && (uint64_t)(pos - r->at) + n <= r->len) {
		*p = r->buf + (pos - r->at);
		return 0;
	}
	if (n > r->cap) {
		if (r->heap) {
			r->buf = sk_xrealloc(r->buf, n);
		} else {
			r->buf = sk_xmalloc(n);
			r->heap = true;
		}
		r->cap = n;
	}
	want = (uint64_t)(r->limit - pos) < r->cap ? (size_t)(r->limit - pos)
						   : r->cap;
	r->at = pos;
	r->len = 0;
	while (got < want) {
		ssize_t rd = pread(r->fd, r->buf + got, want - got,
				   (off_t)(pos + (int64_t)got));

		if (rd < 0 && errno == EINTR)
			continue;
		if (rd < 0)
			return -errno;
		if (rd == 0)
			break;
		got += (size_t)rd;
	}
	r->len = got;
	if (got < n)
		return -ENODATA;
	*p = r->buf;
	return 0;
}

int sk_seg_reader_header(struct sk_seg_reader *r, int64_t pos,
			 struct sk_batch_hdr *h)
{
	const uint8_t *p;
	int rc = sk_seg_reader_get(r, pos, SK_BATCH_HEADER_SIZE, &p);

	if (rc < 0)
		return rc;
	if (sk_batch_parse_header(p, SK_BATCH_HEADER_SIZE, h) < 0)
		return -EBADMSG;
	return 0;
}

static void SK_PRINTF(2, 3)
	scan_bad(struct sk_seg_scan *res, const char *fmt, ...)
{
	va_list ap;

	res->bad = true;
	va_start(ap, fmt);
	vsnprintf(res->why, sizeof(res->why), fmt, ap);
	va_end(ap);
}

/*
 * Why each check: a torn write leaves a short header or a batch running
 * past the end; a write that reached the disk out of order leaves zeros
 * (magic 0) or stale bytes, which the base-offset chain and the CRC catch
 * even when they happen to look like a batch.
 */
int sk_segment_scan(struct sk_segment *seg, int64_t pos, int64_t next,
		    int64_t file_size, unsigned flags, int64_t index_interval,
		    struct sk_seg_scan *res)
{
	uint8_t stack[SK_SEG_WALK_CHUNK];
	struct sk_seg_reader r;
	struct sk_batch_hdr h;
	const uint8_t *p;
	int rc = 0;

	memset(res, 0, sizeof(*res));
	res->max_timestamp = SK_LOG_NO_TIMESTAMP;
	sk_seg_reader_init(&r, seg->fd, file_size, stack, sizeof(stack));
	if (flags & SK_SCAN_CRC) {
		r.buf = sk_xmalloc(SK_SEG_SCAN_CHUNK);
		r.cap = SK_SEG_SCAN_CHUNK;
		r.heap = true;
	}
	while (pos < file_size) {
		size_t size;

		rc = sk_seg_reader_get(&r, pos, SK_BATCH_HEADER_SIZE, &p);
		if (rc == -ENODATA) {
			scan_bad(res,
				 "incomplete batch header (%" PRId64 " bytes)",
				 file_size - pos);
			break;
		}
		if (rc < 0)
			goto out;
		if (sk_batch_parse_header(p, SK_BATCH_HEADER_SIZE, &h) < 0) {
			scan_bad(res, "not a v2 batch (magic %d, length %d)",
				 h.magic, h.batch_length);
			break;
		}
		size = sk_batch_size(&h);
		if ((int64_t)size > file_size - pos) {
			scan_bad(res,
				 "batch of %zu bytes runs past the end of "
				 "the file by %" PRId64 " bytes",
				 size, (int64_t)size - (file_size - pos));
			break;
		}
		if (h.base_offset != next &&
		    !((flags & SK_SCAN_GAPS) && h.base_offset > next)) {
			scan_bad(res,
				 "batch has base offset %" PRId64
				 " where %" PRId64 " was expected",
				 h.base_offset, next);
			break;
		}
		next = h.base_offset;
		if (h.last_offset_delta < 0) {
			scan_bad(res, "negative lastOffsetDelta %d",
				 h.last_offset_delta);
			break;
		}
		if (pos + (int64_t)size > (int64_t)UINT32_MAX ||
		    next + h.last_offset_delta - seg->base_offset >
			    (int64_t)UINT32_MAX) {
			scan_bad(res, "segment exceeds the 32-bit range of its "
				      "index");
			break;
		}
		if (flags & SK_SCAN_CRC) {
			rc = sk_seg_reader_get(&r, pos, size, &p);
			if (rc == -ENODATA) {
				scan_bad(res, "file shrank during the scan");
				break;
			}
			if (rc < 0)
				goto out;
			if (!sk_batch_crc_ok(p, size)) {
				scan_bad(res, "CRC mismatch");
				break;
			}
		}
		if (flags & SK_SCAN_INDEX)
			sk_segment_note_batch(seg, &h, size, index_interval);
		if (h.max_timestamp > res->max_timestamp) {
			res->max_timestamp = h.max_timestamp;
			res->max_ts_rel = (uint32_t)(next - seg->base_offset);
		}
		next += (int64_t)h.last_offset_delta + 1;
		pos += (int64_t)size;
	}
	rc = 0;
out:
	res->pos = pos;
	res->end_offset = next;
	sk_seg_reader_done(&r);
	return rc;
}

void sk_scrub_chunk_run(struct sk_scrub_chunk *c)
{
	struct sk_seg_scan res;

	/* Compaction may have left offset gaps in a closed segment. */
	c->rc = sk_segment_scan(c->seg, c->pos, c->next, c->limit,
				SK_SCAN_CRC | SK_SCAN_GAPS, 0, &res);
	c->done_pos = res.pos;
	c->done_next = res.end_offset;
	if (c->rc < 0)
		return;
	if (res.bad) {
		c->bad = true;
		c->bad_pos = res.pos;
		c->bad_offset = res.end_offset;
		snprintf(c->why, sizeof(c->why), "%s", res.why);
	} else if (c->last && res.end_offset != c->end_offset) {
		c->bad = true;
		c->bad_pos = res.pos;
		c->bad_offset = SK_MIN(res.end_offset, c->end_offset);
		snprintf(c->why, sizeof(c->why),
			 "its batches end at offset %" PRId64
			 " where its index says %" PRId64,
			 res.end_offset, c->end_offset);
	}
}

/* Walk headers from pos to the batch containing offset. */
static int walk_to(struct sk_segment *seg, struct sk_seg_reader *r, int64_t pos,
		   int64_t offset, int64_t *found, struct sk_batch_hdr *h)
{
	while (pos < seg->size) {
		if (sk_seg_reader_header(r, pos, h) < 0)
			return -EIO;
		if (h->base_offset + h->last_offset_delta >= offset) {
			*found = pos;
			return 0;
		}
		pos += (int64_t)sk_batch_size(h);
	}
	return -ENOENT;
}

int sk_segment_locate(struct sk_segment *seg, int64_t offset, int64_t *pos,
		      struct sk_batch_hdr *h)
{
	uint8_t stack[SK_SEG_WALK_CHUNK];
	struct sk_seg_reader r;
	int64_t start;
	int rc;

	if (offset < seg->base_offset || offset >= seg->end_offset)
		return -ENOENT;
	start = sk_log_index_pos_for_rel(&seg->idx,
					 (uint32_t)(offset - seg->base_offset));
	sk_seg_reader_init(&r, seg->fd, seg->size, stack, sizeof(stack));
	rc = walk_to(seg, &r, start, offset, pos, h);
	sk_seg_reader_done(&r);
	return rc;
}

int sk_segment_read(struct sk_segment *seg, int64_t offset, size_t max_bytes,
		    bool min_one, struct sk_log_slice *out)
{
	uint8_t stack[SK_SEG_WALK_CHUNK];
	struct sk_seg_reader r;
	struct sk_batch_hdr h;
	int64_t pos, end, limit;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = sk_segment_locate(seg, offset, &pos, &h);
	if (rc < 0)
		return rc;
	end = pos + (int64_t)sk_batch_size(&h);
	/*
	 * A compacted segment may end in an empty batch that only keeps
	 * its last offset (compact.h). Served alone it would make
	 * librdkafka grow its fetch size for nothing (for good, and fail
	 * after ten): the caller moves on, as Kafka's read does.
	 */
	if (h.records_count == 0 && end == seg->size)
		return -ENODATA;
	if (sk_batch_size(&h) > max_bytes && !min_one)
		return 0;
	if ((uint64_t)max_bytes >= (uint64_t)(seg->size - pos))
		limit = seg->size;
	else
		limit = pos + (int64_t)max_bytes;

	/*
	 * Index entries sit on batch boundaries, so everything before the
	 * last entry at or below the limit is whole batches: jump there and
	 * walk only the last stretch instead of every header in between.
	 */
	if (limit > end) {
		int64_t jump =
			sk_log_index_floor_pos(&seg->idx, (uint32_t)limit);

		if (jump > end)
			end = jump;
	}
	sk_seg_reader_init(&r, seg->fd, seg->size, stack, sizeof(stack));
	while (end < limit) {
		if (sk_seg_reader_header(&r, end, &h) < 0) {
			rc = -EIO;
			goto out;
		}
		if ((int64_t)sk_batch_size(&h) > limit - end)
			break;
		end += (int64_t)sk_batch_size(&h);
	}
	sk_segment_ref(seg);
	out->seg = seg;
	out->pos = (off_t)pos;
	out->len = (size_t)(end - pos);
out:
	sk_seg_reader_done(&r);
	return rc;
}

/* The first record of the batch at pos from offset from with ts >= ts. */
static int batch_find_time(struct sk_seg_reader *r, int64_t pos,
			   const struct sk_batch_hdr *h, int64_t ts,
			   int64_t from, int64_t *offset, int64_t *timestamp)
{
	size_t size = sk_batch_size(h);
	struct sk_record rec;
	const uint8_t *p;
	struct sk_rd rd;

	/*
	 * Under LogAppendTime every record carries the batch's max
	 * timestamp; a compressed batch is not worth inflating for this, so
	 * Kafka's answer for it is the batch too.
	 */
	if ((h->attributes & SK_BATCH_ATTR_LOG_APPEND_TIME) ||
	    (h->attributes & SK_BATCH_ATTR_CODEC_MASK) != SK_CODEC_NONE) {
		*offset = SK_MAX(h->base_offset, from);
		*timestamp = h->max_timestamp;
		return 0;
	}
	if (sk_seg_reader_get(r, pos, size, &p) < 0)
		return -EIO;
	sk_rd_init(&rd, p + SK_BATCH_HEADER_SIZE, size - SK_BATCH_HEADER_SIZE);
	while (sk_batch_record_next(&rd, &rec)) {
		int64_t t = h->base_timestamp + rec.timestamp_delta;

		if (t >= ts && h->base_offset + rec.offset_delta >= from) {
			*offset = h->base_offset + rec.offset_delta;
			*timestamp = t;
			return 0;
		}
	}
	return -ENOENT;
}

int sk_segment_find_time(struct sk_segment *seg, int64_t ts, int64_t from,
			 int64_t *offset, int64_t *timestamp)
{
	uint8_t stack[SK_SEG_WALK_CHUNK];
	struct sk_seg_reader r;
	struct sk_batch_hdr h;
	int64_t pos;
	uint32_t rel;
	int rc = -ENOENT;

	if (seg->max_timestamp < ts || from >= seg->end_offset)
		return -ENOENT;
	rel = sk_log_index_rel_for_time(&seg->idx, ts);
	/* Nothing below from counts: start at the later of both. */
	if (from > seg->base_offset + (int64_t)rel)
		rel = (uint32_t)(from - seg->base_offset);
	pos = sk_log_index_pos_for_rel(&seg->idx, rel);
	sk_seg_reader_init(&r, seg->fd, seg->size, stack, sizeof(stack));
	while (pos < seg->size) {
		if (sk_seg_reader_header(&r, pos, &h) < 0) {
			rc = -EIO;
			break;
		}
		/*
		 * A batch whose max timestamp qualifies but none of whose
		 * records do is inconsistent; like Kafka, go on to the next.
		 */
		if (h.max_timestamp >= ts &&
		    h.base_offset + h.last_offset_delta >= from) {
			rc = batch_find_time(&r, pos, &h, ts, from, offset,
					     timestamp);
			if (rc != -ENOENT)
				break;
		}
		pos += (int64_t)sk_batch_size(&h);
	}
	sk_seg_reader_done(&r);
	return rc;
}

struct sk_segment *sk_segment_adopt(int fd, const char *dir, int64_t base)
{
	struct sk_segment *seg = sk_xcalloc(1, sizeof(*seg));

	atomic_init(&seg->refs, 1);
	atomic_init(&seg->sync_failed, false);
	seg->fd = fd;
	seg->stem = sk_xasprintf("%s/%020" PRId64, dir, base);
	seg->base_offset = base;
	seg->end_offset = base;
	seg->max_timestamp = SK_LOG_NO_TIMESTAMP;
	sk_log_index_init(&seg->idx);
	return seg;
}
