/*
 * The partition log: append/read round trips against an in-memory model
 * of the batches written, segment rolls, reopen with and without index
 * files, torn tails, corruption inside a closed segment, lookups by time,
 * a failed write (RLIMIT_FSIZE makes a real short write), removal, and
 * moving the log start: DeleteRecords (with its checkpoint) and time and
 * size retention.
 * Every partition lives in a fresh mkdtemp directory under /tmp.
 */
#include "batch.h"
#include "crc32c.h"
#include "log.h"
#include "tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_BATCHES 512

/* What was appended, in order: the bytes as stored (offsets assigned). */
struct model {
	int n;
	int64_t base[MAX_BATCHES];
	int32_t count[MAX_BATCHES];
	uint8_t *bytes[MAX_BATCHES];
	size_t len[MAX_BATCHES];
};

static const struct sk_log_config big_cfg = {
	.segment_bytes = 1 << 30,
	.segment_ms = 7 * 24 * 3600 * 1000LL,
	.index_interval_bytes = 4096,
};

static const struct sk_log_config small_cfg = {
	.segment_bytes = 4096,
	.segment_ms = 7 * 24 * 3600 * 1000LL,
	.index_interval_bytes = 256,
};

static char *new_dir(void)
{
	char tmpl[] = "/tmp/sk_test_log_XXXXXX";

	if (!mkdtemp(tmpl))
		abort();
	/* A level below, so open has to create it. */
	return sk_xasprintf("%s/topic-0", tmpl);
}

static void remove_dir(char *dir)
{
	char *parent = sk_xstrdup(dir);

	*strrchr(parent, '/') = '\0';
	sk_rmtree(parent);
	free(parent);
	free(dir);
}

static void model_free(struct model *m)
{
	for (int i = 0; i < m->n; i++)
		free(m->bytes[i]);
	m->n = 0;
}

/* Drop the model's last batch (recovery cut it off). */
static void model_pop(struct model *m)
{
	free(m->bytes[--m->n]);
}

static void refresh_crc(uint8_t *p, size_t len)
{
	sk_put_be32(p + SK_BATCH_CRC_OFFSET,
		    sk_crc32c(0, p + SK_BATCH_ATTR_OFFSET,
			      len - SK_BATCH_ATTR_OFFSET));
}

/*
 * Build a batch of nrec records with timestamps ts[0..nrec) (or ts0 + j
 * when ts is NULL) and values of vlen bytes. Kinds: 0 plain, 1
 * LogAppendTime stamped with lat, 2 marked gzip (records left plain: the
 * log never inflates, it only reads the codec bits).
 */
static void build(struct sk_buf *b, int nrec, int64_t ts0, const int64_t *ts,
		  size_t vlen, int kind, int64_t lat)
{
	struct sk_record_in recs[16];
	uint8_t *val = malloc(vlen + 1);
	char keys[16][16];

	for (size_t i = 0; i < vlen; i++)
		val[i] = (uint8_t)(i * 31 + (size_t)ts0);
	for (int j = 0; j < nrec; j++) {
		snprintf(keys[j], sizeof(keys[j]), "k%d", j);
		recs[j] = (struct sk_record_in){ keys[j],
						 (int32_t)strlen(keys[j]),
						 val,
						 (int32_t)vlen,
						 ts ? ts[j] : ts0 + j,
						 NULL,
						 0 };
	}
	b->len = 0;
	sk_batch_build(b, 0, recs, (size_t)nrec, 0, -1, -1, -1);
	if (kind == 1)
		sk_batch_set_log_append_time(b->data, b->len, lat);
	if (kind == 2) {
		b->data[SK_BATCH_ATTR_OFFSET + 1] |= SK_CODEC_GZIP;
		refresh_crc(b->data, b->len);
	}
	free(val);
}

/*
 * Append b to p and record it in m. Returns the append's result, or
 * -1000 if the assigned base offset was not the previous end offset.
 */
static int append_b(struct sk_partition *p, struct model *m, struct sk_buf *b)
{
	int64_t want = sk_partition_end_offset(p), base = -1;
	struct sk_batch_hdr h;
	struct sk_err err;
	int rc;

	rc = sk_partition_append(p, b->data, b->len, &base, &err);
	if (rc < 0) {
		diag("append: %s", err.msg);
		return rc;
	}
	if (base != want || (int64_t)sk_be64(b->data) != base)
		return -1000;
	sk_batch_parse_header(b->data, b->len, &h);
	m->base[m->n] = base;
	m->count[m->n] = h.last_offset_delta + 1;
	m->bytes[m->n] = malloc(b->len);
	memcpy(m->bytes[m->n], b->data, b->len);
	m->len[m->n] = b->len;
	m->n++;
	return 0;
}

/* Append nb batches of varied shape; timestamps rise with the batch. */
static bool append_many(struct sk_partition *p, struct model *m, int nb)
{
	struct sk_buf b = { 0 };
	bool good = true;

	for (int i = 0; i < nb && good; i++) {
		int k = m->n;

		build(&b, 1 + k % 4, 100000 + (int64_t)k * 10, NULL,
		      (size_t)(50 + (k * 37) % 150), 0, 0);
		good = append_b(p, m, &b) == 0;
	}
	sk_buf_free(&b);
	return good;
}

static uint8_t *slice_bytes(const struct sk_log_slice *s)
{
	uint8_t *buf = malloc(s->len ? s->len : 1);

	if (pread(sk_segment_fd(s->seg), buf, s->len, s->pos) !=
	    (ssize_t)s->len) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Index of the model batch holding offset, or -1. */
static int model_find(const struct model *m, int64_t offset)
{
	for (int i = 0; i < m->n; i++)
		if (offset >= m->base[i] && offset < m->base[i] + m->count[i])
			return i;
	return -1;
}

/*
 * Read like a consumer from model batch `from` to the end with max_bytes
 * per read; every batch must come back byte-exact, in order, once.
 */
static bool consume_all(struct sk_partition *p, const struct model *m, int from,
			size_t max_bytes)
{
	int64_t offset = m->base[from];
	int i = from;

	while (offset < sk_partition_end_offset(p)) {
		struct sk_log_slice s;
		uint8_t *buf;
		size_t at = 0, len;

		if (sk_partition_read(p, offset, max_bytes, true, &s) != 0 ||
		    s.len == 0)
			return false;
		buf = slice_bytes(&s);
		len = s.len;
		sk_log_slice_release(&s);
		if (!buf)
			return false;
		while (at < len) {
			if (i >= m->n || m->len[i] > len - at ||
			    memcmp(buf + at, m->bytes[i], m->len[i]) != 0) {
				free(buf);
				diag("batch %d differs", i);
				return false;
			}
			at += m->len[i];
			offset = m->base[i] + m->count[i];
			i++;
		}
		free(buf);
	}
	return i == m->n;
}

/* Every offset reads back as exactly its containing batch. */
static bool read_every_offset(struct sk_partition *p, const struct model *m)
{
	for (int i = 0; i < m->n; i++) {
		int64_t end = m->base[i] + m->count[i];

		for (int64_t o = m->base[i]; o < end; o++) {
			struct sk_log_slice s;
			uint8_t *buf;
			bool same;

			if (sk_partition_read(p, o, 1, true, &s) != 0 ||
			    s.len != m->len[i])
				return false;
			buf = slice_bytes(&s);
			same = buf && memcmp(buf, m->bytes[i], s.len) == 0;
			free(buf);
			sk_log_slice_release(&s);
			if (!same)
				return false;
		}
	}
	return true;
}

static char *seg_path(const char *dir, int64_t base, const char *ext)
{
	return sk_xasprintf("%s/%020lld.%s", dir, (long long)base, ext);
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 ? -1 : st.st_size;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* Base offsets of the *.log files in dir, sorted; returns the count. */
static int list_logs(const char *dir, int64_t *bases, int max)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL && n < max) {
		size_t l = strlen(de->d_name);

		if (l == 24 && strcmp(de->d_name + 20, ".log") == 0)
			bases[n++] = strtoll(de->d_name, NULL, 10);
	}
	closedir(d);
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && bases[j - 1] > bases[j]; j--) {
			int64_t t = bases[j];

			bases[j] = bases[j - 1];
			bases[j - 1] = t;
		}
	return n;
}

/* Path of the last (active) segment's log file. */
static char *active_log(const char *dir)
{
	int64_t bases[256];
	int n = list_logs(dir, bases, 256);

	return seg_path(dir, n > 0 ? bases[n - 1] : 0, "log");
}

static void flip_byte(const char *path, off_t pos)
{
	int fd = open(path, O_RDWR);
	uint8_t c;

	if (pread(fd, &c, 1, pos) != 1)
		abort();
	c ^= 0x5a;
	if (pwrite(fd, &c, 1, pos) != 1)
		abort();
	close(fd);
}

static void append_bytes(const char *path, uint8_t byte, size_t n)
{
	int fd = open(path, O_WRONLY | O_APPEND);
	uint8_t *buf = malloc(n);

	memset(buf, byte, n);
	if (write(fd, buf, n) != (ssize_t)n)
		abort();
	free(buf);
	close(fd);
}

static struct sk_partition *open_p(const char *dir,
				   const struct sk_log_config *cfg)
{
	struct sk_partition *p = NULL;
	struct sk_err err;

	if (sk_partition_open(&p, dir, cfg, &err) < 0) {
		diag("open %s: %s", dir, err.msg);
		return NULL;
	}
	return p;
}

static void test_fresh_and_basic(void)
{
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir, &big_cfg);
	struct sk_log_slice s;
	struct model m = { 0 };
	struct sk_buf b = { 0 };
	bool good = true;
	size_t two;
	char *path;
	int rc;

	ok(p && sk_partition_start_offset(p) == 0 &&
		   sk_partition_end_offset(p) == 0 &&
		   sk_partition_segment_count(p) == 1 &&
		   !sk_partition_damaged(p),
	   "an empty directory is a fresh partition at offset 0");
	rc = sk_partition_read(p, 0, 1000, true, &s);
	ok(rc == 0 && s.len == 0 && s.seg == NULL,
	   "reading the end of an empty log gives an empty slice");
	ok(sk_partition_read(p, 1, 1000, true, &s) == -ERANGE &&
		   sk_partition_read(p, -1, 1000, true, &s) == -ERANGE,
	   "offsets outside [start, end] are -ERANGE");

	for (int i = 0; i < 10 && good; i++) {
		build(&b, 1 + i % 5, 1000 + i * 100, NULL,
		      (size_t)(10 + i * 20), 0, 0);
		/* A non-zero base offset from the producer is overwritten. */
		sk_put_be64(b.data, 777);
		good = append_b(p, &m, &b) == 0;
	}
	ok(good, "appends assign contiguous base offsets");
	is(sk_partition_end_offset(p), m.base[9] + m.count[9],
	   "end offset is after the last record");
	path = active_log(dir);
	is(sk_partition_size_bytes(p), file_size(path),
	   "size is the bytes on disk");
	free(path);
	ok(consume_all(p, &m, 0, 1 << 20),
	   "one read returns every batch byte-exact");
	ok(read_every_offset(p, &m),
	   "a read from any offset starts with the batch holding it");

	rc = sk_partition_read(p, m.base[3] + 1, m.len[3] - 1, false, &s);
	ok(rc == 0 && s.len == 0 && s.seg == NULL,
	   "max_bytes below the first batch without min_one: empty slice");
	rc = sk_partition_read(p, m.base[3] + 1, 10, true, &s);
	ok(rc == 0 && s.len == m.len[3], "min_one returns one whole batch");
	sk_log_slice_release(&s);
	two = m.len[4] + m.len[5];
	rc = sk_partition_read(p, m.base[4], two + m.len[6] - 1, false, &s);
	ok(rc == 0 && s.len == two,
	   "max_bytes cuts at a batch boundary, never mid-batch");
	sk_log_slice_release(&s);
	rc = sk_partition_read(p, m.base[4], two, false, &s);
	ok(rc == 0 && s.len == two, "max_bytes exactly on a boundary");
	sk_log_slice_release(&s);
	rc = sk_partition_read(p, sk_partition_end_offset(p), 1000, true, &s);
	ok(rc == 0 && s.len == 0, "read at the end offset: empty slice");
	ok(sk_partition_read(p, sk_partition_end_offset(p) + 1, 1000, true,
			     &s) == -ERANGE,
	   "read past the end offset: -ERANGE");

	{
		struct sk_err err;
		int64_t base;
		uint8_t junk[100] = { 0 };

		ok(sk_partition_append(p, junk, sizeof(junk), &base, &err) ==
			   -EINVAL,
		   "an append of bytes that are not a batch is refused");
	}

	sk_buf_free(&b);
	model_free(&m);
	sk_partition_destroy(p);
	ok(!exists(dir), "destroy removes the directory");
	remove_dir(dir);
}

static void test_roll_and_reopen(void)
{
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir, &small_cfg);
	int64_t bases[256];
	struct model m = { 0 };
	struct sk_log_slice s;
	struct stat st0, st1;
	bool good = true;
	int n, rc;
	char *path;

	ok(append_many(p, &m, 150), "150 appends with segment.bytes 4096");
	n = list_logs(dir, bases, 256);
	ok(n >= 5 && (size_t)n == sk_partition_segment_count(p),
	   "the log rolled into %d segments", n);
	for (int i = 0; i < n; i++) {
		char *lp = seg_path(dir, bases[i], "log");
		char *ip = seg_path(dir, bases[i], "index");
		char *tp = seg_path(dir, bases[i], "timeindex");

		good = good && file_size(lp) <= 4096 &&
		       model_find(&m, bases[i]) >= 0 &&
		       m.base[model_find(&m, bases[i])] == bases[i];
		/* Closed segments got their index files at the roll. */
		if (i + 1 < n)
			good = good && exists(ip) && exists(tp);
		free(lp);
		free(ip);
		free(tp);
	}
	ok(good, "segments stay under segment.bytes, start on batch "
		 "boundaries, closed ones have index files");
	ok(consume_all(p, &m, 0, 1000) && consume_all(p, &m, 0, 1 << 20) &&
		   consume_all(p, &m, 77, 1),
	   "consuming across segments returns every batch");
	ok(read_every_offset(p, &m), "every offset found across segments");
	rc = sk_partition_read(p, 0, 1 << 20, false, &s);
	path = seg_path(dir, 0, "log");
	ok(rc == 0 && (off_t)s.len == file_size(path),
	   "a slice stops at the end of its segment");
	sk_log_slice_release(&s);
	free(path);

	/* Reopen: closed segments' index files are used, not rewritten. */
	path = seg_path(dir, bases[1], "index");
	stat(path, &st0);
	sk_partition_close(p);
	ok(exists(path), "close keeps the index files");
	{
		char *ap = seg_path(dir, bases[n - 1], "index");

		ok(exists(ap), "close writes the active segment's index");
		free(ap);
	}
	p = open_p(dir, &small_cfg);
	stat(path, &st1);
	ok(p && st0.st_ino == st1.st_ino && st0.st_mtime == st1.st_mtime,
	   "reopen loads the index files instead of rebuilding them");
	ok(sk_partition_start_offset(p) == 0 &&
		   sk_partition_end_offset(p) ==
			   m.base[m.n - 1] + m.count[m.n - 1] &&
		   (int)sk_partition_segment_count(p) == n,
	   "reopen keeps start, end and segments");
	ok(consume_all(p, &m, 0, 700) && read_every_offset(p, &m),
	   "everything reads back after reopen");
	free(path);
	ok(append_many(p, &m, 20), "appends continue after reopen");
	sk_partition_close(p);

	/* Reopen without any index file: everything is rebuilt. */
	n = list_logs(dir, bases, 256);
	for (int i = 0; i < n; i++) {
		char *ip = seg_path(dir, bases[i], "index");
		char *tp = seg_path(dir, bases[i], "timeindex");

		unlink(ip);
		unlink(tp);
		free(ip);
		free(tp);
	}
	p = open_p(dir, &small_cfg);
	ok(p && !sk_partition_damaged(p) &&
		   sk_partition_end_offset(p) ==
			   m.base[m.n - 1] + m.count[m.n - 1],
	   "reopen without index files rebuilds them");
	ok(consume_all(p, &m, 0, 1500) && read_every_offset(p, &m),
	   "reads are right with rebuilt indexes");
	path = seg_path(dir, bases[0], "index");
	ok(exists(path), "rebuilt index files are written back");
	free(path);

	/* An index file with a bad entry CRC is rebuilt, not trusted. */
	sk_partition_close(p);
	path = seg_path(dir, bases[2], "index");
	flip_byte(path, 24 + 8 + 5);
	p = open_p(dir, &small_cfg);
	ok(p && !sk_partition_damaged(p) && consume_all(p, &m, 0, 1 << 20) &&
		   read_every_offset(p, &m),
	   "an index file failing its CRC is rebuilt");
	free(path);

	/* A different index interval on reopen still reads right. */
	sk_partition_close(p);
	{
		struct sk_log_config c = small_cfg;

		c.index_interval_bytes = 0;
		p = open_p(dir, &c);
		ok(p && consume_all(p, &m, 0, 900) && append_many(p, &m, 5) &&
			   read_every_offset(p, &m),
		   "index.interval.bytes 0 indexes every batch");
	}
	model_free(&m);
	sk_partition_destroy(p);
	remove_dir(dir);
}

/* Open, check the end offset and that appends continue there. */
static bool reopen_continues(char *dir, struct model *m, const char *what,
			     off_t want_size)
{
	struct sk_partition *p = open_p(dir, &big_cfg);
	char *path = active_log(dir);
	bool good;

	good = p && !sk_partition_damaged(p) &&
	       sk_partition_end_offset(p) ==
		       m->base[m->n - 1] + m->count[m->n - 1] &&
	       file_size(path) == want_size && consume_all(p, m, 0, 1 << 20) &&
	       append_many(p, m, 3) && consume_all(p, m, 0, 333);
	if (!good)
		diag("%s: end %lld, size %lld want %lld", what,
		     p ? (long long)sk_partition_end_offset(p) : -1LL,
		     (long long)file_size(path), (long long)want_size);
	free(path);
	sk_partition_close(p);
	return good;
}

static void test_torn_tail(void)
{
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir, &big_cfg);
	struct model m = { 0 };
	char *path = active_log(dir);
	off_t size;

	append_many(p, &m, 30);
	sk_partition_close(p);
	size = file_size(path);

	append_bytes(path, 0xab, 37);
	ok(reopen_continues(dir, &m, "garbage", size),
	   "garbage after the last batch is cut off");

	size = file_size(path);
	append_bytes(path, 0, 8192);
	ok(reopen_continues(dir, &m, "zeros", size),
	   "a zero-filled tail (lost pages) is cut off");

	size = file_size(path);
	if (truncate(path, size - 10) < 0)
		abort();
	size -= (off_t)m.len[m.n - 1];
	model_pop(&m);
	ok(reopen_continues(dir, &m, "truncated", size),
	   "a batch cut short is dropped, appends reuse its offset");

	/* A whole batch past the checkpoint, next in line, bad CRC. */
	size = file_size(path);
	{
		uint8_t *copy = malloc(m.len[0]);
		int fd = open(path, O_WRONLY | O_APPEND);

		memcpy(copy, m.bytes[0], m.len[0]);
		sk_batch_set_base_offset(copy,
					 m.base[m.n - 1] + m.count[m.n - 1]);
		copy[70] ^= 0x5a;
		if (write(fd, copy, m.len[0]) != (ssize_t)m.len[0])
			abort();
		close(fd);
		free(copy);
	}
	ok(reopen_continues(dir, &m, "flipped", size),
	   "a batch with a bad CRC past the checkpoint is dropped");

	/* A wrong base offset (a stale batch from before a cut). */
	size = file_size(path);
	{
		uint8_t *copy = malloc(m.len[0]);
		int fd = open(path, O_WRONLY | O_APPEND);

		memcpy(copy, m.bytes[0], m.len[0]);
		if (write(fd, copy, m.len[0]) != (ssize_t)m.len[0])
			abort();
		close(fd);
		free(copy);
	}
	ok(reopen_continues(dir, &m, "stale", size),
	   "a valid batch with a non-contiguous base offset is dropped");

	free(path);
	model_free(&m);
	remove_dir(dir);
}

/*
 * A bad batch in the part of the active segment the recovery checkpoint
 * vouches for was synced, maybe acknowledged: damage, never a cut.
 */
static void test_synced_active_corruption(void)
{
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir, &big_cfg);
	struct model m = { 0 };
	struct sk_log_slice s;
	char *path = active_log(dir), *idx;
	off_t size, pos = 0;
	int k = 10;

	append_many(p, &m, 30);
	sk_partition_close(p); /* a clean checkpoint: all of it synced */
	size = file_size(path);
	for (int i = 0; i < k; i++)
		pos += (off_t)m.len[i];
	flip_byte(path, pos + 70);
	/* Without index files every batch is checked at open. */
	idx = seg_path(dir, 0, "index");
	unlink(idx);
	free(idx);
	p = open_p(dir, &big_cfg);
	ok(p && sk_partition_damaged(p) && file_size(path) == size &&
		   sk_partition_end_offset(p) == m.base[k],
	   "a bad batch in the synced part of the active segment is "
	   "damage; nothing is cut (%lld of %lld bytes)",
	   (long long)file_size(path), (long long)size);
	ok(p && sk_partition_read(p, m.base[k - 1], 1 << 20, true, &s) == 0 &&
		   s.len == m.len[k - 1],
	   "the batch before it is served");
	sk_log_slice_release(&s);
	ok(p && sk_partition_read(p, m.base[k], 1 << 20, true, &s) == -EIO,
	   "reading from the bad batch is -EIO");
	sk_partition_close(p);
	p = open_p(dir, &big_cfg);
	ok(p && sk_partition_damaged(p) && file_size(path) == size,
	   "and still damaged, still whole, on the next open");
	sk_partition_close(p);
	free(path);
	model_free(&m);
	remove_dir(dir);
}

static void test_closed_corruption(void)
{
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir, &small_cfg);
	struct model m = { 0 };
	struct sk_log_slice s;
	int64_t bases[256], off, ts;
	struct sk_err err;
	struct sk_buf b = { 0 };
	off_t pos = 0;
	char *path;
	int k = 4, n, rc;

	append_many(p, &m, 60);
	sk_partition_close(p);
	n = list_logs(dir, bases, 256);
	for (int i = 0; i < k; i++)
		pos += (off_t)m.len[i];
	path = seg_path(dir, 0, "log");
	flip_byte(path, pos + 70);
	free(path);
	path = seg_path(dir, 0, "index");
	unlink(path);
	free(path);

	p = open_p(dir, &small_cfg);
	ok(p && n >= 3 && sk_partition_damaged(p),
	   "a bad batch in a closed segment marks the partition damaged");
	rc = sk_partition_read(p, m.base[k - 1], 1 << 20, true, &s);
	ok(rc == 0 && s.len == m.len[k - 1] &&
		   s.pos == pos - (off_t)m.len[k - 1],
	   "batches before the damage are served, up to it");
	sk_log_slice_release(&s);
	ok(sk_partition_read(p, m.base[k], 1 << 20, true, &s) == -EIO &&
		   sk_partition_read(p, m.base[m.n - 1], 1, true, &s) == -EIO,
	   "reads at or after the damage are -EIO");
	build(&b, 1, 1, NULL, 10, 0, 0);
	ok(sk_partition_append(p, b.data, b.len, &off, &err) == -EIO,
	   "appends to a damaged partition are -EIO");
	ok(sk_partition_offset_for_time(p, 0, &off, &ts) == 0 && off == 0 &&
		   sk_partition_offset_for_time(p, 999999999, &off, &ts) ==
			   -EIO,
	   "offset_for_time answers before the damage, -EIO past it");
	sk_partition_close(p);
	p = open_p(dir, &small_cfg);
	ok(p && sk_partition_damaged(p), "the damage is found again on reopen");
	sk_partition_close(p);

	/* A closed segment shorter than its index says. */
	path = seg_path(dir, bases[1], "log");
	if (truncate(path, file_size(path) - 5) < 0)
		abort();
	free(path);
	p = open_p(dir, &small_cfg);
	ok(p && sk_partition_damaged(p),
	   "a closed segment that lost its tail is damage, not a torn tail");
	sk_partition_destroy(p);
	sk_buf_free(&b);
	model_free(&m);
	remove_dir(dir);
}

/* A whole scrub pass over p in chunks of max bytes; bytes verified. */
static int64_t scrub_pass(struct sk_partition *p, size_t max, int *damage)
{
	struct sk_scrub_chunk c = { 0 };
	int64_t bytes = 0;

	*damage = 0;
	while (sk_partition_scrub_next(p, max, &c)) {
		sk_scrub_chunk_run(&c);
		bytes += c.done_pos - c.pos;
		*damage += sk_partition_scrub_end(p, &c);
	}
	return bytes;
}

/*
 * Bit rot inside a closed segment whose index files are valid: recovery
 * trusts it, the scrub finds it.
 */
static void test_scrub(void)
{
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir, &small_cfg);
	struct sk_scrub_chunk c = { 0 };
	struct model m = { 0 };
	struct sk_log_slice s;
	int64_t bases[256], closed, off;
	struct sk_buf b = { 0 };
	struct sk_err err;
	int n, k, first, last, damage;
	off_t pos = 0;
	char *path;

	append_many(p, &m, 80);
	sk_partition_close(p);
	n = list_logs(dir, bases, 256);
	p = open_p(dir, &small_cfg);
	path = active_log(dir);
	closed = sk_partition_size_bytes(p) - file_size(path);
	free(path);
	ok(p && n >= 4 && scrub_pass(p, 1000, &damage) == closed &&
		   damage == 0 && !sk_partition_damaged(p),
	   "a scrub pass verifies every closed byte (%lld) and finds nothing",
	   (long long)closed);
	sk_partition_close(p);

	/* A batch in the middle of the third segment, index files intact. */
	for (first = 0; m.base[first] < bases[2]; first++)
		;
	for (last = first; last < m.n && m.base[last] < bases[3]; last++)
		;
	k = first + (last - first) / 2;
	for (int i = first; i < k; i++)
		pos += (off_t)m.len[i];
	path = seg_path(dir, bases[2], "log");
	flip_byte(path, pos + 70);
	p = open_p(dir, &small_cfg);
	ok(p && !sk_partition_damaged(p),
	   "recovery trusts the closed segment (its index checks out)");
	ok(scrub_pass(p, 1000, &damage) > 0 && damage == 1 &&
		   sk_partition_damaged(p),
	   "the scrub finds the bad batch and marks the partition damaged");
	ok(sk_partition_read(p, m.base[k], 1 << 20, true, &s) == -EIO &&
		   sk_partition_read(p, m.base[m.n - 1], 1, true, &s) == -EIO,
	   "reading from the bad batch on is refused");
	ok(k > first &&
		   sk_partition_read(p, m.base[first], 1 << 20, true, &s) ==
			   0 &&
		   s.pos == 0 && (off_t)s.len == pos,
	   "batches before it are served, up to it (%zu bytes)", s.len);
	sk_log_slice_release(&s);
	build(&b, 1, 1, NULL, 10, 0, 0);
	ok(sk_partition_append(p, b.data, b.len, &off, &err) == -EIO,
	   "appends are refused");
	ok(!sk_partition_scrub_next(p, 1000, &c) && c.seg == NULL,
	   "a damaged partition is not scrubbed again");
	sk_partition_close(p);
	flip_byte(path, pos + 70); /* healed */
	free(path);

	/* A segment deleted under the cursor: the walk goes on after it. */
	p = open_p(dir, &small_cfg);
	ok(sk_partition_scrub_next(p, 100, &c) && c.base == bases[0] && !c.last,
	   "a chunk of the first segment");
	sk_scrub_chunk_run(&c);
	ok(sk_partition_delete_before(p, bases[1], &err) == 0 &&
		   !sk_partition_scrub_end(p, &c) &&
		   sk_partition_scrub_next(p, 1 << 20, &c) &&
		   c.base == bases[1] && c.pos == 0,
	   "after DeleteRecords removed it, the next chunk starts the next "
	   "segment");
	sk_scrub_chunk_release(&c);
	sk_partition_destroy(p);
	sk_buf_free(&b);
	model_free(&m);
	remove_dir(dir);
}

struct time_case {
	int64_t ts, offset, timestamp;
};

static bool check_times(struct sk_partition *p, const struct time_case *c,
			size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int64_t off = -1, t = -1;
		int rc = sk_partition_offset_for_time(p, c[i].ts, &off, &t);

		if (c[i].offset < 0 ? rc != -ENOENT
				    : rc != 0 || off != c[i].offset ||
					      t != c[i].timestamp) {
			diag("ts %lld: rc %d offset %lld ts %lld",
			     (long long)c[i].ts, rc, (long long)off,
			     (long long)t);
			return false;
		}
	}
	return true;
}

static void test_offset_for_time(void)
{
	static const int64_t b2[] = { 3000, 2500, 3500 };
	static const struct time_case cases[] = {
		{ 0, 0, 1000 },	    { 1000, 0, 1000 },	{ 1001, 1, 1001 },
		{ 1003, 3, 2000 },  { 2003, 6, 2003 },	{ 2600, 8, 3000 },
		{ 3200, 10, 3500 }, { 3600, 11, 5000 }, { 4000, 11, 5000 },
		{ 5001, 13, 6001 }, { 6001, 13, 6001 }, { 6002, -1, -1 },
	};
	struct sk_log_config cfg = big_cfg;
	struct model m = { 0 };
	struct sk_buf b = { 0 };
	struct sk_partition *p;
	char *dir = new_dir();
	bool good;

	cfg.index_interval_bytes = 1;
	p = open_p(dir, &cfg);
	build(&b, 3, 1000, NULL, 5, 0, 0); /* 0..2: 1000..1002 */
	good = append_b(p, &m, &b) == 0;
	build(&b, 5, 2000, NULL, 5, 0, 0); /* 3..7: 2000..2004 */
	good = good && append_b(p, &m, &b) == 0;
	build(&b, 3, 0, b2, 5, 0, 0); /* 8..10: 3000 2500 3500 */
	good = good && append_b(p, &m, &b) == 0;
	build(&b, 2, 100, NULL, 5, 1, 5000); /* 11..12: LogAppendTime */
	good = good && append_b(p, &m, &b) == 0;
	build(&b, 2, 6000, NULL, 5, 2, 0); /* 13..14: "gzip", max 6001 */
	good = good && append_b(p, &m, &b) == 0;
	build(&b, 2, 4000, NULL, 5, 0, 0); /* 15..16: older again */
	good = good && append_b(p, &m, &b) == 0;
	ok(good, "batches with mixed timestamps appended");
	ok(check_times(p, cases, SK_ARRAY_SIZE(cases)),
	   "offset_for_time: exact record, LogAppendTime, compressed, none");
	sk_partition_close(p);
	p = open_p(dir, &cfg);
	ok(check_times(p, cases, SK_ARRAY_SIZE(cases)),
	   "offset_for_time after reopen");
	sk_partition_destroy(p);
	sk_buf_free(&b);
	model_free(&m);
	remove_dir(dir);

	/* Many segments: every record's timestamp finds that record. */
	dir = new_dir();
	p = open_p(dir, &small_cfg);
	append_many(p, &m, 120);
	for (int pass = 0; pass < 2; pass++) {
		good = true;
		for (int i = 0; i < m.n && good; i++) {
			int64_t ts0 = 100000 + (int64_t)i * 10;
			/* Past the batch's last record: the next batch. */
			struct time_case gap = { ts0 + m.count[i], -1, -1 };

			if (i + 1 < m.n) {
				gap.offset = m.base[i + 1];
				gap.timestamp = ts0 + 10;
			}
			good = check_times(p, &gap, 1);
			for (int j = 0; j < m.count[i] && good; j++) {
				struct time_case c = { ts0 + j, m.base[i] + j,
						       ts0 + j };

				good = check_times(p, &c, 1);
			}
		}
		ok(good, "offset_for_time over %zu segments (%s)",
		   sk_partition_segment_count(p), pass ? "reopened" : "live");
		sk_partition_close(p);
		p = open_p(dir, &small_cfg);
	}
	sk_partition_destroy(p);
	model_free(&m);
	remove_dir(dir);
}

static void test_segment_ms(void)
{
	struct sk_log_config cfg = big_cfg;
	struct model m = { 0 };
	struct sk_partition *p;
	char *dir = new_dir();

	cfg.segment_ms = 20;
	p = open_p(dir, &cfg);
	append_many(p, &m, 2);
	ok(sk_partition_segment_count(p) == 1, "no roll within segment.ms");
	usleep(40 * 1000);
	append_many(p, &m, 2);
	ok(sk_partition_segment_count(p) == 2 && consume_all(p, &m, 0, 1 << 20),
	   "the first append after segment.ms rolls");
	cfg.segment_ms = 0;
	sk_partition_set_config(p, &cfg);
	usleep(30 * 1000);
	append_many(p, &m, 1);
	ok(sk_partition_segment_count(p) == 2,
	   "segment.ms 0 never rolls by time (new config applied)");
	sk_partition_destroy(p);
	model_free(&m);
	remove_dir(dir);
}

static void test_write_failure(void)
{
	struct rlimit old, lim;
	struct model m = { 0 };
	struct sk_buf b = { 0 };
	struct sk_partition *p;
	char *dir = new_dir();
	struct sk_err err;
	int64_t end, base;
	off_t size;
	char *path;
	int rc;

	p = open_p(dir, &big_cfg);
	append_many(p, &m, 5);
	path = active_log(dir);
	size = file_size(path);
	end = sk_partition_end_offset(p);
	build(&b, 3, 1, NULL, 1000, 0, 0);

	/* Past RLIMIT_FSIZE a write is short, then fails with EFBIG. */
	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	lim.rlim_cur = (rlim_t)size + 100;
	setrlimit(RLIMIT_FSIZE, &lim);
	rc = sk_partition_append(p, b.data, b.len, &base, &err);
	setrlimit(RLIMIT_FSIZE, &old);
	ok(rc == -EFBIG && strstr(err.msg, "cannot append"),
	   "a failed write returns -errno with a message (%s)", err.msg);
	ok(file_size(path) == size && sk_partition_end_offset(p) == end,
	   "a half-written batch is truncated away");
	ok(append_b(p, &m, &b) == 0 && m.base[m.n - 1] == end &&
		   consume_all(p, &m, 0, 1 << 20),
	   "appends continue at the same offset");
	ok(sk_partition_sync(p) == 0, "sync");
	free(path);
	sk_partition_destroy(p);
	sk_buf_free(&b);
	model_free(&m);
	remove_dir(dir);
}

/*
 * Relative offsets are 32-bit in the index: a batch that would overflow
 * them starts a new segment. Batches claiming 2^31 - 1 offsets each get
 * there without writing 4 GiB.
 */
static void test_offset_range_roll(void)
{
	struct model m = { 0 };
	struct sk_buf b = { 0 };
	struct sk_partition *p;
	char *dir = new_dir();
	struct sk_log_slice s;
	bool good = true;
	int rc;

	p = open_p(dir, &big_cfg);
	for (int i = 0; i < 3 && good; i++) {
		build(&b, 1, 1000 + i, NULL, 10, 0, 0);
		sk_put_be32(b.data + 23, INT32_MAX - 1); /* lastOffsetDelta */
		refresh_crc(b.data, b.len);
		good = append_b(p, &m, &b) == 0;
	}
	ok(good && sk_partition_segment_count(p) == 2 &&
		   sk_partition_end_offset(p) == 3 * (int64_t)INT32_MAX,
	   "a batch past the 32-bit relative offset range rolls");
	rc = sk_partition_read(p, 2 * (int64_t)INT32_MAX + 5, 1 << 20, true,
			       &s);
	ok(rc == 0 && s.len == m.len[2] && s.pos == 0,
	   "offsets far into a batch find it");
	sk_log_slice_release(&s);
	sk_partition_close(p);
	p = open_p(dir, &big_cfg);
	ok(p && !sk_partition_damaged(p) && consume_all(p, &m, 0, 1 << 20),
	   "such a log reopens");
	sk_partition_destroy(p);
	sk_buf_free(&b);
	model_free(&m);
	remove_dir(dir);
}

static void test_refs_and_strays(void)
{
	struct model m = { 0 };
	struct sk_partition *p;
	char *dir = new_dir();
	struct sk_log_slice s;
	uint8_t *buf;
	char *stray[3];
	char *other;
	int fd;

	p = open_p(dir, &big_cfg);
	append_many(p, &m, 3);
	sk_partition_close(p);
	stray[0] = seg_path(dir, 99999, "index");
	stray[1] = seg_path(dir, 99999, "timeindex");
	stray[2] = seg_path(dir, 0, "index.tmp");
	other = sk_xasprintf("%s/notes.txt", dir);
	for (int i = 0; i < 3; i++)
		close(open(stray[i], O_CREAT | O_WRONLY, 0644));
	fd = open(other, O_CREAT | O_WRONLY, 0644);
	close(fd);
	p = open_p(dir, &big_cfg);
	ok(p && !exists(stray[0]) && !exists(stray[1]) && !exists(stray[2]) &&
		   exists(other),
	   "stray index and .tmp files are removed, other files kept");
	for (int i = 0; i < 3; i++)
		free(stray[i]);
	free(other);

	sk_partition_read(p, 0, 1 << 20, true, &s);
	sk_partition_destroy(p);
	ok(!exists(dir), "destroy removes the directory with a reader open");
	buf = slice_bytes(&s);
	ok(buf && s.len == m.len[0] + m.len[1] + m.len[2] &&
		   memcmp(buf, m.bytes[0], m.len[0]) == 0,
	   "the reader's segment stays readable after destroy");
	free(buf);
	sk_log_slice_release(&s);
	ok(s.seg == NULL && s.len == 0, "releasing the slice clears it");
	model_free(&m);
	remove_dir(dir);
}

#define CKPT_NAME "log-start-offset.checkpoint"

/*
 * Write a log start checkpoint as DeleteRecords would (format in
 * log_partition.c), so open can be shown one it did not write.
 */
static void write_ckpt(const char *dir, int64_t start)
{
	char *path = sk_xasprintf("%s/" CKPT_NAME, dir);
	uint8_t buf[20];
	int fd;

	sk_put_be32(buf, 0x534b4c53u);
	sk_put_be32(buf + 4, 1);
	sk_put_be64(buf + 8, (uint64_t)start);
	sk_put_be32(buf + 16, sk_crc32c(0, buf, 16));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		abort();
	close(fd);
	free(path);
}

/* No file of the segment at base is left. */
static bool segment_gone(const char *dir, int64_t base)
{
	char *lp = seg_path(dir, base, "log");
	char *ip = seg_path(dir, base, "index");
	char *tp = seg_path(dir, base, "timeindex");
	bool gone = !exists(lp) && !exists(ip) && !exists(tp);

	free(lp);
	free(ip);
	free(tp);
	return gone;
}

/* A read at offset returns model batch i, byte-exact. */
static bool reads_batch(struct sk_partition *p, const struct model *m,
			int64_t offset, int i)
{
	struct sk_log_slice s;
	uint8_t *buf;
	bool same;

	if (sk_partition_read(p, offset, 1, true, &s) != 0 ||
	    s.len != m->len[i])
		return false;
	buf = slice_bytes(&s);
	same = buf && memcmp(buf, m->bytes[i], s.len) == 0;
	free(buf);
	sk_log_slice_release(&s);
	return same;
}

/* The start offset log-start-offset.checkpoint holds, or -1. */
static int64_t ckpt_start(const char *path)
{
	uint8_t buf[20];
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : pread(fd, buf, sizeof(buf), 0);

	if (fd >= 0)
		close(fd);
	return n == (ssize_t)sizeof(buf) ? (int64_t)sk_be64(buf + 8) : -1;
}

/*
 * DeleteRecords in its split form: the checkpoint is written by run (off
 * the loop thread in the broker), the start moves only at end.
 */
static void test_delete_split(void)
{
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir, &small_cfg);
	char *ckpt = sk_xasprintf("%s/" CKPT_NAME, dir);
	struct sk_log_start_write w1, w2;
	int64_t bases[256];
	struct model m = { 0 };
	struct sk_err err;
	size_t nseg;
	int n;

	append_many(p, &m, 100);
	n = list_logs(dir, bases, 256);
	nseg = sk_partition_segment_count(p);
	ok(n >= 5 && sk_partition_delete_begin(p, bases[2], &w1, &err) == 1 &&
		   sk_partition_start_offset(p) == 0 && ckpt_start(ckpt) < 0,
	   "begin: nothing written, the start has not moved");
	ok(sk_partition_delete_begin(p, bases[1], &w2, &err) == 1 &&
		   w2.start == bases[2],
	   "a lower one begun meanwhile records the higher start");
	ok(sk_partition_delete_before(p, bases[3], &err) == -EAGAIN,
	   "the one-step form refuses while writes are in flight");
	sk_log_start_write_run(&w1);
	ok(w1.rc == 0 && ckpt_start(ckpt) == bases[2] &&
		   sk_partition_start_offset(p) == 0,
	   "run: the checkpoint holds the new start, the log still the old");
	ok(sk_partition_delete_end(&w1, &err) == 0 &&
		   sk_partition_start_offset(p) == bases[2] &&
		   sk_partition_segment_count(p) == nseg - 2,
	   "end: the start moved, the segments below it are gone");
	sk_log_start_write_run(&w2);
	sk_partition_close(p);
	ok(sk_partition_delete_end(&w2, &err) == -ECANCELED,
	   "a write whose partition was closed meanwhile changes nothing");
	p = open_p(dir, &small_cfg);
	ok(p && sk_partition_start_offset(p) == bases[2] &&
		   consume_all(p, &m, model_find(&m, bases[2]), 1 << 20),
	   "reopened at the new start, every record from there served");
	ok(sk_partition_delete_begin(p, bases[1], &w1, &err) == 0,
	   "an offset below the start needs no write");
	sk_partition_destroy(p);
	free(ckpt);
	model_free(&m);
	remove_dir(dir);
}

static void test_delete_before(void)
{
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir, &small_cfg);
	char *ckpt = sk_xasprintf("%s/" CKPT_NAME, dir), *rckpt;
	int64_t bases[256], start, end, off, ts;
	struct sk_log_slice s, held;
	struct model m = { 0 };
	struct sk_err err;
	uint8_t *buf;
	int n, k, rc;

	append_many(p, &m, 150);
	n = list_logs(dir, bases, 256);
	end = sk_partition_end_offset(p);
	/* A batch of several records in the third segment. */
	k = model_find(&m, bases[2]);
	while (m.count[k] < 2)
		k++;
	start = m.base[k] + 1;
	ok(n >= 5 && start < bases[3],
	   "%d segments; start %lld is inside "
	   "the third",
	   n, (long long)start);

	/* A reader of the first segment, which is about to go. */
	ok(sk_partition_read(p, 0, 1 << 20, true, &held) == 0 && held.len > 0,
	   "a reader holds the first segment");
	rc = sk_partition_delete_before(p, start, &err);
	ok(rc == 0 && sk_partition_start_offset(p) == start &&
		   sk_partition_end_offset(p) == end,
	   "delete_before inside a segment moves the start there");
	ok((int)sk_partition_segment_count(p) == n - 2 &&
		   segment_gone(dir, bases[0]) && segment_gone(dir, bases[1]) &&
		   !segment_gone(dir, bases[2]) && exists(ckpt),
	   "the two segments below it are deleted, files and all; the "
	   "checkpoint is written");
	buf = slice_bytes(&held);
	ok(buf && memcmp(buf, m.bytes[0], m.len[0]) == 0,
	   "the held reader still reads the deleted segment");
	free(buf);
	sk_log_slice_release(&held);
	ok(sk_partition_read(p, start - 1, 1 << 20, true, &s) == -ERANGE &&
		   sk_partition_read(p, 0, 1 << 20, true, &s) == -ERANGE,
	   "reads below the start are -ERANGE");
	ok(reads_batch(p, &m, start, k),
	   "a read at the start returns the whole batch holding it");
	ok(sk_partition_offset_for_time(p, 0, &off, &ts) == 0 && off == start &&
		   ts == 100000 + (int64_t)k * 10 + 1,
	   "offset_for_time skips the records below the start");

	ok(sk_partition_delete_before(p, start - 1, &err) == 0 &&
		   sk_partition_delete_before(p, bases[0], &err) == 0 &&
		   sk_partition_start_offset(p) == start,
	   "the start never goes back");
	ok(sk_partition_delete_before(p, end + 1, &err) == -ERANGE &&
		   sk_partition_delete_before(p, -5, &err) == -ERANGE &&
		   sk_partition_start_offset(p) == start,
	   "an offset outside the log is -ERANGE and changes nothing");

	sk_partition_close(p);
	p = open_p(dir, &small_cfg);
	ok(p && sk_partition_start_offset(p) == start &&
		   (int)sk_partition_segment_count(p) == n - 2 &&
		   sk_partition_read(p, start - 1, 1, true, &s) == -ERANGE &&
		   reads_batch(p, &m, start, k) &&
		   consume_all(p, &m, k + 1, 1000),
	   "the start survives a reopen");

	/*
	 * A damaged checkpoint falls back to the first segment, unless the
	 * recovery checkpoint (written by the close) recorded the start.
	 */
	sk_partition_close(p);
	flip_byte(ckpt, 10);
	p = open_p(dir, &small_cfg);
	ok(p && sk_partition_start_offset(p) == start,
	   "a checkpoint failing its CRC: the recovery checkpoint's start");
	sk_partition_close(p);
	rckpt = sk_xasprintf("%s/recovery.checkpoint", dir);
	unlink(rckpt);
	free(rckpt);
	p = open_p(dir, &small_cfg);
	ok(p && sk_partition_start_offset(p) == bases[2] &&
		   reads_batch(p, &m, bases[2], model_find(&m, bases[2])),
	   "a checkpoint failing its CRC is ignored");
	sk_partition_close(p);
	write_ckpt(dir, end + 1);
	p = open_p(dir, &small_cfg);
	ok(p && sk_partition_start_offset(p) == bases[2],
	   "a checkpoint past the end offset is ignored");
	sk_partition_close(p);
	write_ckpt(dir, bases[1]);
	p = open_p(dir, &small_cfg);
	ok(p && sk_partition_start_offset(p) == bases[2],
	   "a checkpoint below the first segment (stale) is ignored");
	sk_partition_close(p);

	/* As after a crash that lost unlinks: segments below the start. */
	write_ckpt(dir, bases[4] + 1);
	p = open_p(dir, &small_cfg);
	ok(p && sk_partition_start_offset(p) == bases[4] + 1 &&
		   (int)sk_partition_segment_count(p) == n - 4 &&
		   segment_gone(dir, bases[3]),
	   "open deletes segments entirely below the checkpointed start");

	/* Exactly at a segment's base. */
	ok(sk_partition_delete_before(p, bases[5], &err) == 0 &&
		   sk_partition_start_offset(p) == bases[5] &&
		   (int)sk_partition_segment_count(p) == n - 5 &&
		   reads_batch(p, &m, bases[5], model_find(&m, bases[5])),
	   "a start on a segment boundary deletes the segment before it");

	/* Everything: the active segment is rolled away too. */
	ok(sk_partition_delete_before(p, end, &err) == 0 &&
		   sk_partition_start_offset(p) == end &&
		   sk_partition_end_offset(p) == end &&
		   sk_partition_segment_count(p) == 1 &&
		   sk_partition_size_bytes(p) == 0 &&
		   segment_gone(dir, bases[n - 1]),
	   "delete_before(end) rolls and deletes every old segment");
	rc = sk_partition_read(p, end, 1 << 20, true, &s);
	ok(rc == 0 && s.len == 0 &&
		   sk_partition_read(p, end - 1, 1, true, &s) == -ERANGE,
	   "then the log is empty at the old end offset");
	model_free(&m);
	ok(append_many(p, &m, 3) && m.base[0] == end &&
		   consume_all(p, &m, 0, 1 << 20),
	   "appends continue at the end offset");
	sk_partition_close(p);
	p = open_p(dir, &small_cfg);
	ok(p && sk_partition_start_offset(p) == end &&
		   consume_all(p, &m, 0, 1 << 20),
	   "and the emptied log reopens");
	sk_partition_destroy(p);
	model_free(&m);
	free(ckpt);
	remove_dir(dir);
}

/* One batch per segment: segment.bytes below two batches. */
static const struct sk_log_config one_batch_cfg = {
	.segment_bytes = 1024,
	.segment_ms = 7 * 24 * 3600 * 1000LL,
	.index_interval_bytes = 4096,
};

/* Append one 1-record batch of 600 value bytes stamped ts. */
static bool append_at(struct sk_partition *p, struct model *m, int64_t ts)
{
	struct sk_buf b = { 0 };
	bool good;

	build(&b, 1, ts, NULL, 600, 0, 0);
	good = append_b(p, m, &b) == 0;
	sk_buf_free(&b);
	return good;
}

static void test_retention(void)
{
	const int64_t old = 1000000, young = 9000000, now = 9000100;
	int64_t ts[5] = { old, old + 1, young, old + 2, young + 1 };
	struct sk_log_config cfg = one_batch_cfg;
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir, &cfg);
	struct model m = { 0 };
	struct sk_log_slice s;
	struct sk_err err;
	int64_t del = -1, seg, total;
	bool good = true;
	char *path;
	int rc;

	for (int i = 0; i < 5; i++)
		good = good && append_at(p, &m, ts[i]);
	ok(good && sk_partition_segment_count(p) == 5,
	   "five batches in five segments");
	rc = sk_partition_retention(p, now, -1, -1, &del);
	ok(rc == 0 && del == 0 && sk_partition_start_offset(p) == 0,
	   "retention.ms -1 and retention.bytes -1 delete nothing");
	rc = sk_partition_retention(p, now, now - old, -1, &del);
	ok(rc == 0 && del == 0, "nothing older than retention.ms");
	rc = sk_partition_retention(p, now, young - old, -1, &del);
	ok(rc == 0 && del == 2 && sk_partition_start_offset(p) == m.base[2] &&
		   sk_partition_segment_count(p) == 3 &&
		   segment_gone(dir, m.base[0]) && segment_gone(dir, m.base[1]),
	   "time: the expired oldest segments go, up to the first young one");
	ok(sk_partition_read(p, m.base[1], 1, true, &s) == -ERANGE &&
		   consume_all(p, &m, 2, 1 << 20),
	   "reads below the new start are -ERANGE, the rest reads back");
	rc = sk_partition_retention(p, now, young - old, -1, &del);
	ok(rc == 0 && del == 0 && sk_partition_segment_count(p) == 3,
	   "an expired segment behind a young one stays (Kafka stops too)");
	rc = sk_partition_retention(p, INT64_MAX / 2, 0, -1, &del);
	ok(rc == 0 && del == 2 && sk_partition_segment_count(p) == 1 &&
		   sk_partition_start_offset(p) == m.base[4],
	   "everything expired: all closed segments go, never the active one");
	sk_partition_destroy(p);
	model_free(&m);
	remove_dir(dir);

	/* Size. Equal batches make equal segments. */
	dir = new_dir();
	p = open_p(dir, &cfg);
	for (int i = 0; i < 6; i++)
		append_at(p, &m, young);
	seg = (int64_t)m.len[0];
	total = sk_partition_size_bytes(p);
	ok(total == 6 * seg && sk_partition_segment_count(p) == 6,
	   "six segments of %lld bytes", (long long)seg);
	rc = sk_partition_retention(p, now, -1, total, &del);
	ok(rc == 0 && del == 0, "size: nothing over retention.bytes");
	rc = sk_partition_retention(p, now, -1, total - seg + 1, &del);
	ok(rc == 0 && del == 0,
	   "size: over by less than a segment deletes nothing");
	rc = sk_partition_retention(p, now, -1, total - 2 * seg - 1, &del);
	ok(rc == 0 && del == 2 && sk_partition_start_offset(p) == m.base[2] &&
		   sk_partition_size_bytes(p) == 4 * seg,
	   "size: the oldest go while the rest stays >= retention.bytes");
	rc = sk_partition_retention(p, now, -1, 0, &del);
	ok(rc == 0 && del == 3 && sk_partition_segment_count(p) == 1 &&
		   sk_partition_start_offset(p) == m.base[5] &&
		   consume_all(p, &m, 5, 1 << 20),
	   "size 0: every closed segment goes, the active one stays");
	sk_partition_close(p);
	p = open_p(dir, &cfg);
	ok(p && sk_partition_start_offset(p) == m.base[5] &&
		   sk_partition_segment_count(p) == 1,
	   "the start after retention needs no checkpoint to reopen");
	sk_partition_destroy(p);
	model_free(&m);
	remove_dir(dir);

	/* A DeleteRecords checkpoint that retention then went past. */
	dir = new_dir();
	p = open_p(dir, &cfg);
	for (int i = 0; i < 4; i++)
		append_at(p, &m, i < 2 ? old : young);
	ok(sk_partition_delete_before(p, m.base[1], &err) == 0 &&
		   sk_partition_retention(p, now, young - old, -1, &del) == 0 &&
		   del == 1 && sk_partition_start_offset(p) == m.base[2],
	   "retention after DeleteRecords");
	sk_partition_close(p);
	p = open_p(dir, &cfg);
	ok(p && sk_partition_start_offset(p) == m.base[2],
	   "reopen starts at the first segment, past the old checkpoint");
	sk_partition_destroy(p);
	model_free(&m);
	remove_dir(dir);

	/* No record timestamps (-1): the file's mtime decides. */
	dir = new_dir();
	p = open_p(dir, &cfg);
	{
		int64_t none[1] = { -1 };
		struct sk_buf b = { 0 };
		struct timespec times[2] = { { 1000, 0 }, { 1000, 0 } };

		for (int i = 0; i < 3; i++) {
			build(&b, 1, 0, none, 600, 0, 0);
			append_b(p, &m, &b);
		}
		sk_buf_free(&b);
		rc = sk_partition_retention(p, sk_now_ms(), 3600000, -1, &del);
		ok(rc == 0 && del == 0 && sk_partition_segment_count(p) == 3,
		   "a segment without timestamps and a fresh mtime stays");
		path = seg_path(dir, m.base[0], "log");
		utimensat(AT_FDCWD, path, times, 0);
		free(path);
		rc = sk_partition_retention(p, sk_now_ms(), 3600000, -1, &del);
		ok(rc == 0 && del == 1 &&
			   sk_partition_start_offset(p) == m.base[1],
		   "one whose mtime is old goes");
	}
	sk_partition_destroy(p);
	model_free(&m);
	remove_dir(dir);
}

/* The whole content of a small file (NULL if unreadable); *len its size. */
static uint8_t *slurp(const char *path, size_t *len)
{
	off_t n = file_size(path);
	uint8_t *buf;
	int fd;

	if (n < 0)
		return NULL;
	buf = malloc((size_t)n + 1);
	fd = open(path, O_RDONLY);
	if (fd < 0 || pread(fd, buf, (size_t)n, 0) != n)
		abort();
	close(fd);
	*len = (size_t)n;
	return buf;
}

static void spill(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_TRUNC);

	if (fd < 0 || write(fd, buf, len) != (ssize_t)len)
		abort();
	close(fd);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev;
}

/*
 * A clean close overwrites the active segment's index files and the
 * recovery checkpoint in place (no file created or replaced per close,
 * which costs ext4 an inode allocation each), and after an idle open
 * writes neither. An index file whose header fields no longer go with
 * its entries (an in-place write torn between them) is rebuilt; one of
 * version 1 (whose CRC covers only the entries) is still used.
 */
/* A partition never written to closes without writing a file. */
static void test_close_blank(void)
{
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir, &big_cfg);
	char *ip = seg_path(dir, 0, "index"),
	     *tp = seg_path(dir, 0, "timeindex");
	char *ck = sk_xasprintf("%s/recovery.checkpoint", dir);
	const struct sk_log_recovery *rec;
	struct model m = { 0 };

	sk_partition_close(p);
	ok(!exists(ip) && !exists(tp) && !exists(ck),
	   "a blank partition's clean close writes no index nor checkpoint");
	p = open_p(dir, &big_cfg);
	rec = p ? sk_partition_recovery(p) : NULL;
	ok(rec && rec->bytes_scanned == 0 && !sk_partition_damaged(p) &&
		   sk_partition_end_offset(p) == 0 && append_many(p, &m, 5) &&
		   read_every_offset(p, &m),
	   "it reopens empty and takes appends");
	sk_partition_close(p);
	ok(exists(ip) && exists(tp) && exists(ck),
	   "once written, its close writes them");
	model_free(&m);
	free(ip);
	free(tp);
	free(ck);
	remove_dir(dir);
}

static void test_close_in_place(void)
{
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir, &big_cfg);
	char *ip = seg_path(dir, 0, "index"),
	     *tp = seg_path(dir, 0, "timeindex");
	char *lp = seg_path(dir, 0, "log");
	char *ck = sk_xasprintf("%s/recovery.checkpoint", dir);
	struct stat i0, t0, c0, i1, t1, c1, c2;
	uint8_t *old_idx, *idx = NULL;
	const struct sk_log_recovery *rec;
	struct model m = { 0 };
	size_t old_len, len;

	ok(p && append_many(p, &m, 30), "30 appends");
	sk_partition_close(p);
	old_idx = slurp(ip, &old_len);
	ok(old_idx && stat(ip, &i0) == 0 && stat(tp, &t0) == 0 &&
		   stat(ck, &c0) == 0,
	   "a clean close writes the index files and the checkpoint");

	p = open_p(dir, &big_cfg);
	ok(p && append_many(p, &m, 30), "30 more appends after a reopen");
	sk_partition_close(p);
	ok(stat(ip, &i1) == 0 && stat(tp, &t1) == 0 && stat(ck, &c1) == 0 &&
		   same_file(&i0, &i1) && same_file(&t0, &t1) &&
		   same_file(&c0, &c1) && i1.st_size > i0.st_size,
	   "the next close overwrote all three in place, longer");

	p = open_p(dir, &big_cfg);
	rec = p ? sk_partition_recovery(p) : NULL;
	ok(rec && rec->clean &&
		   rec->bytes_scanned < big_cfg.index_interval_bytes + 1024 &&
		   read_every_offset(p, &m),
	   "reopen trusts them (%lld bytes scanned)",
	   rec ? (long long)rec->bytes_scanned : -1ll);
	/* Not even rewritten: a byte changed behind its back stays. */
	flip_byte(ck, 40);
	sk_partition_close(p);
	ok(stat(ck, &c2) == 0 && same_file(&c1, &c2) &&
		   (idx = slurp(ck, &len)) && len == 48 &&
		   sk_be32(idx + 44) != sk_crc32c(0, idx, 44),
	   "an idle open and close leaves the checkpoint alone");
	free(idx);
	flip_byte(ck, 40);

	/* The old entries under the new header's log size: rebuilt. */
	idx = slurp(ip, &len);
	memcpy(old_idx + 8, idx + 8, 8);
	spill(ip, old_idx, old_len);
	p = open_p(dir, &big_cfg);
	rec = p ? sk_partition_recovery(p) : NULL;
	ok(rec && !sk_partition_damaged(p) &&
		   rec->bytes_scanned == file_size(lp) &&
		   read_every_offset(p, &m) && consume_all(p, &m, 0, 1 << 20),
	   "a header torn from its entries fails the CRC: rebuilt");
	ok(append_many(p, &m, 5), "appends continue");
	sk_partition_close(p);

	/* Version 1: the same file with the entries-only CRC. */
	free(idx);
	idx = slurp(ip, &len);
	sk_put_be32(idx + 4, 1);
	sk_put_be32(idx + 20, sk_crc32c(0, idx + 24, len - 24));
	spill(ip, idx, len);
	p = open_p(dir, &big_cfg);
	rec = p ? sk_partition_recovery(p) : NULL;
	ok(rec && rec->bytes_scanned < big_cfg.index_interval_bytes + 1024 &&
		   read_every_offset(p, &m),
	   "an index file of version 1 is still used (%lld bytes scanned)",
	   rec ? (long long)rec->bytes_scanned : -1ll);
	free(idx);
	free(old_idx);
	free(ip);
	free(tp);
	free(lp);
	free(ck);
	model_free(&m);
	sk_partition_destroy(p);
	remove_dir(dir);
}

int main(void)
{
	plan(135);
	test_fresh_and_basic();
	test_roll_and_reopen();
	test_close_blank();
	test_close_in_place();
	test_torn_tail();
	test_synced_active_corruption();
	test_closed_corruption();
	test_scrub();
	test_offset_for_time();
	test_segment_ms();
	test_write_failure();
	test_offset_range_roll();
	test_refs_and_strays();
	test_delete_before();
	test_delete_split();
	test_retention();
	return check_status();
}
