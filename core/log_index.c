/*
 * Segment indexes: the sparse offset index and the time index, kept in
 * their on-disk layout (see log_internal.h) whether they live on the heap
 * (the active segment, appended to) or in a mapped file (closed segments,
 * read only, paged by the kernel rather than pinned on the heap).
 */
#include "log_internal.h"

#include "crc32c.h"
#include "io.h"
#include "log_ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void ibuf_free(struct sk_log_index_buf *b)
{
	if (b->map)
		munmap(b->map, b->map_len);
	else
		free(b->data);
	memset(b, 0, sizeof(*b));
}

/* Copy a mapped buffer's entries to the heap. */
static void ibuf_own(struct sk_log_index_buf *b, size_t esize)
{
	uint8_t *data;
	size_t n = b->n;

	if (!b->map)
		return;
	data = sk_xmalloc(n * esize);
	if (n)
		memcpy(data, b->data, n * esize);
	munmap(b->map, b->map_len);
	b->map = NULL;
	b->map_len = 0;
	b->data = data;
	b->cap = n;
}

static uint8_t *ibuf_push(struct sk_log_index_buf *b, size_t esize)
{
	ibuf_own(b, esize);
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 64;
		b->data = sk_xrealloc(b->data, b->cap * esize);
	}
	return b->data + b->n++ * esize;
}

void sk_log_index_init(struct sk_log_index *idx)
{
	memset(idx, 0, sizeof(*idx));
}

void sk_log_index_free(struct sk_log_index *idx)
{
	ibuf_free(&idx->off);
	ibuf_free(&idx->time);
}

void sk_log_index_own(struct sk_log_index *idx)
{
	ibuf_own(&idx->off, SK_LOG_OFFSET_ENTRY_SIZE);
	ibuf_own(&idx->time, SK_LOG_TIME_ENTRY_SIZE);
}

void sk_log_index_add_offset(struct sk_log_index *idx, uint32_t rel,
			     uint32_t pos)
{
	uint8_t *e = ibuf_push(&idx->off, SK_LOG_OFFSET_ENTRY_SIZE);

	sk_put_be32(e, rel);
	sk_put_be32(e + 4, pos);
}

void sk_log_index_add_time(struct sk_log_index *idx, int64_t ts, uint32_t rel)
{
	uint8_t *e = ibuf_push(&idx->time, SK_LOG_TIME_ENTRY_SIZE);

	sk_put_be64(e, (uint64_t)ts);
	sk_put_be32(e + 8, rel);
}

void sk_log_index_offset_at(const struct sk_log_index *idx, size_t i,
			    uint32_t *rel, uint32_t *pos)
{
	const uint8_t *e = idx->off.data + i * SK_LOG_OFFSET_ENTRY_SIZE;

	*rel = sk_be32(e);
	*pos = sk_be32(e + 4);
}

void sk_log_index_time_at(const struct sk_log_index *idx, size_t i, int64_t *ts,
			  uint32_t *rel)
{
	const uint8_t *e = idx->time.data + i * SK_LOG_TIME_ENTRY_SIZE;

	*ts = (int64_t)sk_be64(e);
	*rel = sk_be32(e + 8);
}

/*
 * Number of leading entries of b whose big-endian key at key_off (a u32,
 * or a signed i64 when key64) is <= key. Entries are sorted by that key,
 * so this is a binary search and the answer minus one is the floor entry.
 */
static size_t ibuf_upper(const struct sk_log_index_buf *b, size_t esize,
			 size_t key_off, bool key64, int64_t key)
{
	size_t lo = 0, hi = b->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const uint8_t *e = b->data + mid * esize + key_off;
		int64_t v = key64 ? (int64_t)sk_be64(e) : (int64_t)sk_be32(e);

		if (v <= key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint32_t sk_log_index_pos_for_rel(const struct sk_log_index *idx, uint32_t rel)
{
	size_t k =
		ibuf_upper(&idx->off, SK_LOG_OFFSET_ENTRY_SIZE, 0, false, rel);
	uint32_t r, pos;

	if (k == 0)
		return 0;
	sk_log_index_offset_at(idx, k - 1, &r, &pos);
	return pos;
}

uint32_t sk_log_index_floor_pos(const struct sk_log_index *idx, uint32_t pos)
{
	size_t k =
		ibuf_upper(&idx->off, SK_LOG_OFFSET_ENTRY_SIZE, 4, false, pos);
	uint32_t r, p;

	if (k == 0)
		return 0;
	sk_log_index_offset_at(idx, k - 1, &r, &p);
	return p;
}

uint32_t sk_log_index_rel_for_time(const struct sk_log_index *idx, int64_t ts)
{
	size_t k = ibuf_upper(&idx->time, SK_LOG_TIME_ENTRY_SIZE, 0, true, ts);
	int64_t t;
	uint32_t rel;

	if (k == 0)
		return 0;
	sk_log_index_time_at(idx, k - 1, &t, &rel);
	return rel;
}

/*
 * The header's CRC field: version 2 covers the header before it and the
 * entries, so that an in-place rewrite torn between header fields (a new
 * log size over the old entries) fails it too; version 1 files (written
 * whole and renamed into place) cover the entries only.
 */
static uint32_t index_crc(const uint8_t *hdr, uint32_t version,
			  const uint8_t *entries, size_t bytes)
{
	uint32_t crc = version >= 2 ? sk_crc32c(0, hdr, 20) : 0;

	/* entries is NULL when empty: hash zero bytes of hdr instead. */
	return sk_crc32c(crc, bytes ? entries : hdr, bytes);
}

static int save_one(const struct sk_log_index_buf *b, size_t esize,
		    uint32_t magic, const char *stem, const char *ext,
		    int64_t log_size, bool in_place, struct sk_err *err)
{
	char *path = sk_xasprintf("%s.%s", stem, ext);
	char *tmp = in_place ? NULL : sk_xasprintf("%s.%s.tmp", stem, ext);
	uint8_t hdr[SK_LOG_INDEX_HEADER_SIZE];
	size_t bytes = b->n * esize;
	struct iovec iov[2] = { { .iov_base = hdr, .iov_len = sizeof(hdr) },
				{ .iov_base = b->data, .iov_len = bytes } };
	int rc;

	sk_put_be32(hdr, magic);
	sk_put_be32(hdr + 4, SK_LOG_INDEX_VERSION);
	sk_put_be64(hdr + 8, (uint64_t)log_size);
	sk_put_be32(hdr + 16, (uint32_t)b->n);
	sk_put_be32(hdr + 20,
		    index_crc(hdr, SK_LOG_INDEX_VERSION, b->data, bytes));

	rc = sk_file_overwrite(tmp ? tmp : path, iov, bytes ? 2 : 1, false);
	if (rc < 0) {
		sk_err_setc(err, rc, "cannot write %s: %s", tmp ? tmp : path,
			    strerror(-rc));
		if (tmp)
			sk_io_unlink(tmp);
	} else if (tmp && sk_io_rename(tmp, path) < 0) {
		rc = sk_err_setc(err, -errno, "cannot rename %s to %s: %s", tmp,
				 path, strerror(errno));
		sk_io_unlink(tmp);
	}
	free(tmp);
	free(path);
	return rc;
}

int sk_log_index_save(const struct sk_log_index *idx, const char *stem,
		      int64_t log_size, bool in_place, struct sk_err *err)
{
	int rc;

	rc = save_one(&idx->off, SK_LOG_OFFSET_ENTRY_SIZE, SK_LOG_OFFSET_MAGIC,
		      stem, "index", log_size, in_place, err);
	if (rc == 0)
		rc = save_one(&idx->time, SK_LOG_TIME_ENTRY_SIZE,
			      SK_LOG_TIME_MAGIC, stem, "timeindex", log_size,
			      in_place, err);
	return rc;
}

/* Map one index file and check its header and CRC. */
static int load_one(struct sk_log_index_buf *b, size_t esize, uint32_t magic,
		    const char *stem, const char *ext, int64_t log_size,
		    const char **why)
{
	char *path = sk_xasprintf("%s.%s", stem, ext);
	const uint8_t *m;
	struct stat st;
	uint32_t count, version;
	void *map;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0) {
		*why = errno == ENOENT ? "missing" : "cannot be opened";
		return -errno;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		*why = "cannot be read";
		goto close_fd;
	}
	if (st.st_size < SK_LOG_INDEX_HEADER_SIZE) {
		rc = -EINVAL;
		*why = "shorter than its header";
		goto close_fd;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		rc = -errno;
		*why = "cannot be mapped";
		goto close_fd;
	}
	m = map;
	count = sk_be32(m + 16);
	version = sk_be32(m + 4);
	rc = -EINVAL;
	if (sk_be32(m) != magic || version < 1 ||
	    version > SK_LOG_INDEX_VERSION)
		*why = "bad magic or version";
	else if ((int64_t)sk_be64(m + 8) != log_size)
		*why = "written for a log of another size";
	else if ((uint64_t)st.st_size !=
		 SK_LOG_INDEX_HEADER_SIZE + (uint64_t)count * esize)
		*why = "entry count does not match the file size";
	else if (index_crc(m, version, m + SK_LOG_INDEX_HEADER_SIZE,
			   (size_t)count * esize) != sk_be32(m + 20))
		*why = "CRC mismatch";
	else
		rc = 0;
	if (rc < 0) {
		munmap(map, (size_t)st.st_size);
		goto close_fd;
	}
	b->map = map;
	b->map_len = (size_t)st.st_size;
	b->data = (uint8_t *)map + SK_LOG_INDEX_HEADER_SIZE;
	b->n = count;
	b->cap = 0;
close_fd:
	close(fd);
	return rc;
}

/*
 * Entries that passed the CRC were still written by some version of this
 * code; check the invariants the lookups rely on, so a logic error there
 * costs a rebuild rather than reads from wrong positions.
 */
static bool entries_sane(const struct sk_log_index *idx, int64_t log_size)
{
	uint32_t rel, pos, prel = 0, ppos = 0;
	int64_t ts, pts = SK_LOG_NO_TIMESTAMP;

	if (log_size > 0 && idx->off.n == 0)
		return false;
	for (size_t i = 0; i < idx->off.n; i++) {
		sk_log_index_offset_at(idx, i, &rel, &pos);
		/* Compaction may leave a segment's first offsets out. */
		if (i == 0 ? pos != 0 : rel <= prel || pos <= ppos)
			return false;
		if ((int64_t)pos >= log_size)
			return false;
		prel = rel;
		ppos = pos;
	}
	prel = 0;
	for (size_t i = 0; i < idx->time.n; i++) {
		sk_log_index_time_at(idx, i, &ts, &rel);
		if (ts <= pts || rel < prel)
			return false;
		pts = ts;
		prel = rel;
	}
	return true;
}

int sk_log_index_load(struct sk_log_index *idx, const char *stem,
		      int64_t log_size, const char **why)
{
	int rc;

	sk_log_index_init(idx);
	rc = load_one(&idx->off, SK_LOG_OFFSET_ENTRY_SIZE, SK_LOG_OFFSET_MAGIC,
		      stem, "index", log_size, why);
	if (rc == 0)
		rc = load_one(&idx->time, SK_LOG_TIME_ENTRY_SIZE,
			      SK_LOG_TIME_MAGIC, stem, "timeindex", log_size,
			      why);
	if (rc == 0 && !entries_sane(idx, log_size)) {
		*why = "entries out of order";
		rc = -EINVAL;
	}
	if (rc < 0)
		sk_log_index_free(idx);
	return rc;
}

void sk_log_index_unlink(const char *stem)
{
	static const char *const exts[] = { "index", "timeindex", "index.tmp",
					    "timeindex.tmp" };

	for (size_t i = 0; i < SK_ARRAY_SIZE(exts); i++) {
		char *path = sk_xasprintf("%s.%s", stem, exts[i]);

		sk_io_unlink(path);
		free(path);
	}
}
