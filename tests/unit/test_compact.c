/*
 * Log compaction (core/compact*.c) against an in-memory model of every
 * record appended: the latest record of each key stays, offsets keep
 * their gaps, rewritten batches keep their base offset and
 * lastOffsetDelta and have valid CRCs, compressed batches come back
 * recompressed with their codec, tombstones go exactly at their delete
 * horizon, the dirty ratio and the compaction lags decide when a pass
 * runs, the active segment is never touched, a reader holding an old
 * segment keeps reading it, a swap interrupted at any step is completed
 * at the next open, a job the partition moved away from is dropped, a
 * small map cleans in several passes, control batches stay, and produce
 * refuses records without a key.
 * Every partition lives in a fresh mkdtemp directory under /tmp.
 */
#include "codec.h"
#include "compact.h"
#include "crc32c.h"
#include "log.h"
#include "log_internal.h"
#include "tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_RECS 4096
#define T0	 1700000000000LL
#define DAY_MS	 (24 * 3600 * 1000LL)

/* One record as appended, or as read back. */
struct rec {
	int64_t off;
	int64_t ts;
	int klen, vlen; /* -1: null */
	char key[24];
	char val[40];
};

/* Everything appended, in offset order. */
struct model {
	struct rec r[MAX_RECS];
	int n;
};

/* What reading the log back found. */
struct readback {
	struct rec r[MAX_RECS];
	int n;
	int batches;
	bool ok;		 /* CRCs, framing and offsets all fine */
	int64_t bases[MAX_RECS]; /* per batch */
	int32_t lods[MAX_RECS];
	int32_t counts[MAX_RECS];
	int16_t attrs[MAX_RECS];
	int64_t base_ts[MAX_RECS];
};

static const struct sk_log_config log_cfg = {
	.segment_bytes = 700,
	.segment_ms = 7 * DAY_MS,
	.index_interval_bytes = 128,
};

static struct sk_compact_config ccfg(double ratio)
{
	return (struct sk_compact_config){
		.delete_retention_ms = 60000,
		.min_cleanable_ratio = ratio,
		.min_lag_ms = 0,
		.max_lag_ms = INT64_MAX,
		.segment_bytes = 1 << 20,
		.index_interval_bytes = 128,
		.map_bytes = 1 << 20,
	};
}

static char *new_dir(void)
{
	char tmpl[] = "/tmp/sk_test_compact_XXXXXX";

	if (!mkdtemp(tmpl))
		abort();
	return sk_xasprintf("%s/t-0", tmpl);
}

static void remove_dir(char *dir)
{
	char *parent = sk_xstrdup(dir);

	*strrchr(parent, '/') = '\0';
	sk_rmtree(parent);
	free(parent);
	free(dir);
}

static struct sk_partition *open_p(const char *dir)
{
	struct sk_partition *p = NULL;
	struct sk_err err;

	if (sk_partition_open(&p, dir, &log_cfg, &err) < 0) {
		diag("open: %s", err.msg);
		abort();
	}
	return p;
}

/*
 * Append one batch of n records: keys[i] NULL for no key, vals[i] NULL
 * for a tombstone; compressed with codec; timestamps ts + i.
 */
static void append(struct sk_partition *p, struct model *m, enum sk_codec codec,
		   int16_t attrs, const char **keys, const char **vals, int n,
		   int64_t ts)
{
	struct sk_record_in in[64];
	struct sk_buf b = { 0 }, z = { 0 }, fr = { 0 };
	struct sk_batch_hdr h;
	struct sk_err err;
	int64_t base;

	for (int i = 0; i < n; i++)
		in[i] = (struct sk_record_in){
			keys[i], keys[i] ? (int32_t)strlen(keys[i]) : -1,
			vals[i], vals[i] ? (int32_t)strlen(vals[i]) : -1,
			ts + i,	 NULL,
			0
		};
	sk_batch_build(&b, 0, in, (size_t)n, attrs, -1, -1, -1);
	if (codec != SK_CODEC_NONE) {
		sk_batch_parse_header(b.data, b.len, &h);
		if (sk_codec_compress(codec, b.data + SK_BATCH_HEADER_SIZE,
				      b.len - SK_BATCH_HEADER_SIZE, &z, 0,
				      &err) < 0)
			abort();
		h.attributes |= (int16_t)codec;
		sk_batch_frame(&fr, &h, z.data, z.len);
		sk_buf_free(&b);
		b = fr;
	}
	if (sk_partition_append(p, b.data, b.len, &base, &err) < 0) {
		diag("append: %s", err.msg);
		abort();
	}
	for (int i = 0; i < n; i++) {
		struct rec *r = &m->r[m->n++];

		memset(r, 0, sizeof(*r));
		r->off = base + i;
		r->ts = ts + i;
		r->klen = keys[i] ? (int)strlen(keys[i]) : -1;
		r->vlen = vals[i] ? (int)strlen(vals[i]) : -1;
		if (keys[i])
			memcpy(r->key, keys[i], (size_t)r->klen);
		if (vals[i])
			memcpy(r->val, vals[i], (size_t)r->vlen);
	}
	sk_buf_free(&b);
	sk_buf_free(&z);
}

/* Append one record per batch: key k<i % nkeys>, value "v<seq>". */
static void append_updates(struct sk_partition *p, struct model *m, int n,
			   int nkeys, enum sk_codec codec, int64_t ts)
{
	for (int i = 0; i < n; i++) {
		char key[16], val[16];
		const char *k = key, *v = val;

		snprintf(key, sizeof(key), "k%d", (m->n + i) % nkeys);
		snprintf(val, sizeof(val), "v%d", m->n);
		append(p, m, codec, 0, &k, &v, 1, ts + m->n);
	}
}

static void rec_copy_field(char *dst, size_t cap, int *len, struct sk_str s)
{
	*len = s.len;
	if (s.len > 0)
		memcpy(dst, s.p, SK_MIN((size_t)s.len, cap - 1));
}

/*
 * Read the whole log back like a consumer: every batch's CRC, its
 * records (inflated), offsets strictly rising, next = base + lod + 1.
 */
static void read_back(struct sk_partition *p, struct readback *rb)
{
	int64_t off = sk_partition_start_offset(p), last = -1;

	memset(rb, 0, sizeof(*rb));
	rb->ok = true;
	while (off < sk_partition_end_offset(p)) {
		struct sk_log_slice s;
		uint8_t *buf;
		size_t at = 0;

		if (sk_partition_read(p, off, 1 << 20, true, &s) < 0 ||
		    s.len == 0) {
			diag("read at %lld failed", (long long)off);
			rb->ok = false;
			return;
		}
		buf = malloc(s.len);
		if (pread(sk_segment_fd(s.seg), buf, s.len, s.pos) !=
		    (ssize_t)s.len)
			abort();
		while (at < s.len) {
			struct sk_batch_hdr h;
			struct sk_buf z = { 0 };
			struct sk_record rec;
			struct sk_err err;
			struct sk_rd rd;
			enum sk_codec codec;
			size_t size;

			if (sk_batch_parse_header(buf + at, s.len - at, &h) <
				    0 ||
			    (size = sk_batch_size(&h)) > s.len - at ||
			    !sk_batch_crc_ok(buf + at, size)) {
				diag("bad batch at %lld", (long long)off);
				rb->ok = false;
				break;
			}
			rb->bases[rb->batches] = h.base_offset;
			rb->lods[rb->batches] = h.last_offset_delta;
			rb->counts[rb->batches] = h.records_count;
			rb->attrs[rb->batches] = h.attributes;
			rb->base_ts[rb->batches] = h.base_timestamp;
			rb->batches++;
			codec = h.attributes & SK_BATCH_ATTR_CODEC_MASK;
			if (codec == SK_CODEC_NONE) {
				sk_rd_init(&rd, buf + at + SK_BATCH_HEADER_SIZE,
					   size - SK_BATCH_HEADER_SIZE);
			} else {
				if (sk_codec_decompress(
					    codec,
					    buf + at + SK_BATCH_HEADER_SIZE,
					    size - SK_BATCH_HEADER_SIZE, &z,
					    1 << 24, &err) < 0) {
					diag("inflate: %s", err.msg);
					rb->ok = false;
				}
				sk_rd_init(&rd, z.data ? z.data : (uint8_t *)"",
					   z.len);
			}
			while (sk_batch_record_next(&rd, &rec)) {
				struct rec *r = &rb->r[rb->n++];
				int64_t o = h.base_offset + rec.offset_delta;

				memset(r, 0, sizeof(*r));
				r->off = o;
				r->ts = h.base_timestamp + rec.timestamp_delta;
				rec_copy_field(r->key, sizeof(r->key), &r->klen,
					       rec.key);
				rec_copy_field(r->val, sizeof(r->val), &r->vlen,
					       rec.value);
				if (o <= last ||
				    o > h.base_offset + h.last_offset_delta)
					rb->ok = false;
				last = o;
			}
			if (!sk_rd_ok(&rd))
				rb->ok = false;
			sk_buf_free(&z);
			off = h.base_offset + h.last_offset_delta + 1;
			at += size;
		}
		free(buf);
		sk_log_slice_release(&s);
		if (!rb->ok)
			return;
	}
}

static bool rec_eq(const struct rec *a, const struct rec *b)
{
	return a->off == b->off && a->ts == b->ts && a->klen == b->klen &&
	       a->vlen == b->vlen &&
	       memcmp(a->key, b->key, sizeof(a->key)) == 0 &&
	       memcmp(a->val, b->val, sizeof(a->val)) == 0;
}

static bool same_key(const struct rec *a, const struct rec *b)
{
	return a->klen >= 0 && a->klen == b->klen &&
	       memcmp(a->key, b->key, (size_t)a->klen) == 0;
}

/*
 * What compaction up to end must leave: below end the latest record of
 * each key among those below end (a tombstone only while keep_tombs),
 * nothing without a key; from end on everything.
 */
static void expect(const struct model *m, int64_t end, bool keep_tombs,
		   struct model *out)
{
	out->n = 0;
	for (int i = 0; i < m->n; i++) {
		const struct rec *r = &m->r[i];
		bool keep = true;

		if (r->off < end) {
			keep = r->klen >= 0;
			for (int j = i + 1;
			     keep && j < m->n && m->r[j].off < end; j++)
				if (same_key(r, &m->r[j]))
					keep = false;
			if (keep && r->vlen < 0 && !keep_tombs)
				keep = false;
		}
		if (keep)
			out->r[out->n++] = *r;
	}
}

static bool matches(const struct readback *rb, const struct model *want)
{
	if (!rb->ok)
		return false;
	if (rb->n != want->n) {
		diag("%d records read, %d expected", rb->n, want->n);
		return false;
	}
	for (int i = 0; i < rb->n; i++) {
		if (!rec_eq(&rb->r[i], &want->r[i])) {
			diag("record %d: offset %lld key %.*s, expected "
			     "offset %lld key %.*s",
			     i, (long long)rb->r[i].off, rb->r[i].klen,
			     rb->r[i].key, (long long)want->r[i].off,
			     want->r[i].klen, want->r[i].key);
			return false;
		}
	}
	return true;
}

static int64_t active_base(const struct sk_partition *p)
{
	return sk_partition_segment(p, sk_partition_segment_count(p) - 1)
		->base_offset;
}

/* The bytes of a file, for before/after comparisons. */
static uint8_t *file_bytes(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *buf;

	if (fd < 0 || fstat(fd, &st) < 0)
		return NULL;
	buf = malloc((size_t)st.st_size + 1);
	*len = (size_t)st.st_size;
	if (pread(fd, buf, *len, 0) != (ssize_t)*len) {
		free(buf);
		buf = NULL;
	}
	close(fd);
	return buf;
}

/* Whether a file named with suffix exists in dir. */
static bool has_file(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool found = false;
	size_t sl = strlen(suffix);

	while (d && (e = readdir(d))) {
		size_t n = strlen(e->d_name);

		if (n >= sl && strcmp(e->d_name + n - sl, suffix) == 0)
			found = true;
	}
	if (d)
		closedir(d);
	return found;
}

/* ------------------------------------------------------------------ */

static void test_map(void)
{
	struct sk_compact_map m;
	bool all = true;
	char key[16];

	sk_compact_map_init(&m, 1 << 20);
	ok(sk_compact_map_get(&m, "a", 1) == -1, "empty map: no key");
	ok(sk_compact_map_reserve(&m, 10000), "room for 10000 keys");
	for (int i = 0; i < 10000; i++) {
		snprintf(key, sizeof(key), "key-%d", i % 5000);
		sk_compact_map_put(&m, key, strlen(key), i);
	}
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "key-%d", i);
		all &= sk_compact_map_get(&m, key, strlen(key)) == 5000 + i;
	}
	ok(all && sk_compact_map_count(&m) == 5000 && m.latest == 9999,
	   "5000 keys, each at its latest offset");
	sk_compact_map_put(&m, "", 0, 3);
	ok(sk_compact_map_get(&m, "", 0) == 3 &&
		   sk_compact_map_get(&m, "key-5000", 8) == -1,
	   "an empty key is a key; an absent one is -1");
	sk_compact_map_free(&m);

	sk_compact_map_init(&m, 4096);
	ok(sk_compact_map_reserve(&m, 96) && !sk_compact_map_reserve(&m, 97),
	   "4096 bytes: 128 slots, 96 keys at 3/4 load");
	sk_compact_map_free(&m);
}

/* Many updates of a few keys over many segments; one pass. */
static void test_basic(void)
{
	static struct model m, want;
	static struct readback rb;
	struct sk_compact_config cfg = ccfg(0.5);
	struct sk_compact_state st = { 0, INT64_MAX };
	struct sk_compact_stats stats;
	char *dir = new_dir(), *active_path;
	struct sk_partition *p = open_p(dir);
	struct sk_compact_state loaded;
	struct sk_log_slice held;
	uint8_t *held_before, *held_after, *act_before, *act_after;
	size_t nsegs, abl, aal;
	struct sk_err err;
	int64_t end, act;

	m.n = 0;
	append_updates(p, &m, 200, 5, SK_CODEC_NONE, T0);
	nsegs = sk_partition_segment_count(p);
	act = active_base(p);
	end = sk_partition_end_offset(p);
	ok(nsegs > 10, "200 updates of 5 keys make %zu segments", nsegs);

	/* A reader in the middle of an old segment, and the active file. */
	if (sk_partition_read(p, 37, 4096, true, &held) < 0)
		abort();
	held_before = malloc(held.len);
	pread(sk_segment_fd(held.seg), held_before, held.len, held.pos);
	active_path = sk_xasprintf("%s/%020lld.log", dir, (long long)act);
	act_before = file_bytes(active_path, &abl);

	is(sk_compact_partition(p, &st, &cfg, T0 + DAY_MS, &stats, &err), 0,
	   "compaction runs");
	ok(stats.cleaned && strcmp(stats.why, "dirty ratio") == 0,
	   "a first pass sees a dirty ratio of 1");
	is(stats.map_end, act, "the map covers every closed segment");
	is(st.first_dirty, act, "the checkpoint moves to the active segment");
	is(stats.keys, 5, "five keys mapped");
	ok(sk_partition_segment_count(p) == 2,
	   "the closed segments merged into one (%zu)",
	   sk_partition_segment_count(p));
	read_back(p, &rb);
	expect(&m, act, true, &want);
	ok(matches(&rb, &want),
	   "the latest of each key below the active "
	   "segment, everything in it; offsets and timestamps unchanged");
	is(sk_partition_end_offset(p), end, "the end offset did not move");
	is(sk_partition_start_offset(p), 0, "nor the start offset");
	is(stats.records_removed, act - 5, "every older record removed");

	act_after = file_bytes(active_path, &aal);
	ok(act_before && act_after && abl == aal &&
		   memcmp(act_before, act_after, abl) == 0,
	   "the active segment is untouched");
	held_after = malloc(held.len);
	ok(pread(sk_segment_fd(held.seg), held_after, held.len, held.pos) ==
			   (ssize_t)held.len &&
		   memcmp(held_before, held_after, held.len) == 0,
	   "a reader holding an old segment still reads its bytes");
	sk_log_slice_release(&held);

	sk_compact_state_load(dir, &loaded);
	ok(loaded.first_dirty == act && loaded.horizon == INT64_MAX,
	   "the checkpoint file holds the state");
	ok(!has_file(dir, ".cleaned") && !has_file(dir, ".swap"),
	   "no temporary file left");

	/* Nothing dirty: the next look plans nothing. */
	is(sk_compact_partition(p, &st, &cfg, T0 + DAY_MS, &stats, &err), 0,
	   "a second look");
	ok(!stats.cleaned, "finds nothing to clean");

	/* Reopen: gaps are fine in a closed segment; same records. */
	sk_partition_close(p);
	p = open_p(dir);
	ok(!sk_partition_damaged(p), "reopens undamaged");
	read_back(p, &rb);
	ok(matches(&rb, &want), "same records after a reopen");
	sk_partition_close(p);
	/* And without index files: a full scan with gaps. */
	{
		char *stem = sk_xasprintf("%s/%020d", dir, 0);

		sk_log_index_unlink(stem);
		free(stem);
	}
	p = open_p(dir);
	read_back(p, &rb);
	ok(!sk_partition_damaged(p) && matches(&rb, &want),
	   "same records after rebuilding the index");
	sk_partition_close(p);
	free(held_before);
	free(held_after);
	free(act_before);
	free(act_after);
	free(active_path);
	remove_dir(dir);
}

/* Batches of several records: offsets and lastOffsetDelta are kept. */
static void test_multi_record_batches(enum sk_codec codec)
{
	static struct model m, want;
	static struct readback rb;
	struct sk_compact_config cfg = ccfg(0.5);
	struct sk_compact_state st = { 0, INT64_MAX };
	struct sk_compact_stats stats;
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir);
	bool lod_kept = true, codec_kept = true, rewritten = false;
	struct sk_err err;
	int64_t act;

	m.n = 0;
	for (int b = 0; b < 30; b++) {
		const char *keys[8], *vals[8];
		char kb[8][16], vb[8][32];

		for (int i = 0; i < 8; i++) {
			snprintf(kb[i], sizeof(kb[i]), "k%d", (b * 8 + i) % 11);
			snprintf(vb[i], sizeof(vb[i]), "v%d-%d", b, i);
			keys[i] = kb[i];
			vals[i] = vb[i];
		}
		append(p, &m, codec, 0, keys, vals, 8, T0 + b * 100);
	}
	act = active_base(p);
	sk_compact_partition(p, &st, &cfg, T0 + DAY_MS, &stats, &err);
	read_back(p, &rb);
	expect(&m, act, true, &want);
	ok(stats.cleaned && matches(&rb, &want),
	   "%s: the latest of each key remains, offsets kept",
	   sk_codec_name(codec));
	for (int i = 0; i < rb.batches; i++) {
		/* Every batch appended covered 8 offsets from a multiple of 8. */
		lod_kept &= rb.bases[i] % 8 == 0 && rb.lods[i] == 7;
		if (rb.counts[i] > 0)
			codec_kept &= (rb.attrs[i] &
				       SK_BATCH_ATTR_CODEC_MASK) == codec;
		rewritten |= rb.counts[i] > 0 && rb.counts[i] < 8;
	}
	ok(rewritten, "%s: some batches lost records", sk_codec_name(codec));
	ok(lod_kept,
	   "%s: every batch keeps its base offset and "
	   "lastOffsetDelta 7, whatever its record count",
	   sk_codec_name(codec));
	ok(codec_kept, "%s: rewritten batches are recompressed with it",
	   sk_codec_name(codec));
	sk_partition_close(p);
	remove_dir(dir);
}

/*
 * A segment whose records all go keeps its last batch, empty, so that it
 * still ends where it ended (recovery takes a gap for a lost tail); a
 * read landing on such a batch goes on to the next segment, so that no
 * fetch is answered with an empty batch alone.
 */
static void test_emptied_segments(void)
{
	static struct model m, want;
	static struct readback rb;
	struct sk_compact_config cfg = ccfg(0.5);
	struct sk_compact_state st = { 0, INT64_MAX };
	struct sk_compact_stats stats;
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir);
	const char *k = "same", *v = "value-of-the-key";
	int64_t ends[64], act;
	size_t emptied = 0, n;
	bool same_ends = true;
	struct sk_log_slice s;
	struct sk_err err;

	m.n = 0;
	/* One key over and over: the closed segments keep one record. */
	for (int i = 0; i < 40; i++)
		append(p, &m, SK_CODEC_NONE, 0, &k, &v, 1, T0 + i);
	act = active_base(p);
	n = sk_partition_segment_count(p);
	for (size_t i = 0; i < n; i++)
		ends[i] = sk_partition_segment(p, i)->end_offset;
	/* Merging is off: each segment is cleaned on its own. */
	cfg.segment_bytes = 1;
	sk_compact_partition(p, &st, &cfg, T0 + DAY_MS, &stats, &err);
	is(sk_partition_segment_count(p), n, "no segment merged");
	for (size_t i = 0; i < n; i++) {
		struct sk_segment *seg = sk_partition_segment(p, i);

		same_ends &= seg->end_offset == ends[i];
		emptied += seg->size == SK_BATCH_HEADER_SIZE;
	}
	ok(same_ends, "every segment still ends where it ended");
	ok(emptied == n - 2,
	   "all closed segments but the one holding the "
	   "latest record are down to an empty batch (%zu of %zu)",
	   emptied, n - 1);
	ok(sk_partition_read(p, 0, 1 << 20, true, &s) == 0 && s.seg &&
		   s.seg == sk_partition_segment(p, n - 2),
	   "a read at offset 0 skips them to the segment with a record");
	sk_log_slice_release(&s);
	read_back(p, &rb);
	expect(&m, act, true, &want);
	ok(matches(&rb, &want) && want.n == m.n - act + 1 &&
		   rb.batches == want.n,
	   "reading from the start: one record of the key below the active "
	   "segment, and never a batch without records");
	sk_partition_close(p);
	p = open_p(dir);
	read_back(p, &rb);
	ok(!sk_partition_damaged(p) && matches(&rb, &want) &&
		   sk_partition_segment_count(p) == n,
	   "they reopen as they were");
	sk_partition_close(p);

	/* With merging, emptied segments fold into the next group. */
	p = open_p(dir);
	st.first_dirty = 0;
	cfg = ccfg(0.0);
	sk_compact_partition(p, &st, &cfg, T0 + DAY_MS, &stats, &err);
	is(sk_partition_segment_count(p), 2,
	   "merged: one closed segment, and the active one");
	read_back(p, &rb);
	ok(matches(&rb, &want) && rb.batches == want.n, "same records");
	sk_partition_close(p);
	remove_dir(dir);
}

/* Tombstones: kept with a horizon, dropped exactly at it. */
static void test_tombstones(void)
{
	static struct model m, want;
	static struct readback rb;
	struct sk_compact_config cfg = ccfg(0.0);
	struct sk_compact_state st = { 0, INT64_MAX };
	struct sk_compact_stats stats;
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir);
	const char *k = "gone", *nul = NULL;
	int64_t now = T0 + DAY_MS, horizon = now + cfg.delete_retention_ms;
	bool stamped = false;
	struct sk_err err;
	int64_t act;

	m.n = 0;
	append_updates(p, &m, 30, 3, SK_CODEC_NONE, T0);
	append(p, &m, SK_CODEC_NONE, 0, &k, &nul, 1, T0 + 500);
	append_updates(p, &m, 30, 3, SK_CODEC_NONE, T0 + 1000);
	act = active_base(p);
	ok(m.r[30].off < act, "the tombstone is in a closed segment");

	sk_compact_partition(p, &st, &cfg, now, &stats, &err);
	read_back(p, &rb);
	expect(&m, act, true, &want);
	ok(matches(&rb, &want), "first pass: the tombstone stays");
	for (int i = 0; i < rb.batches; i++)
		if (rb.bases[i] == m.r[30].off)
			stamped =
				(rb.attrs[i] & SK_BATCH_ATTR_DELETE_HORIZON) &&
				rb.base_ts[i] == horizon;
	ok(stamped, "its batch carries the delete horizon now + "
		    "delete.retention.ms, record timestamps unchanged");
	is(st.horizon, horizon, "the state remembers the horizon");

	sk_compact_partition(p, &st, &cfg, horizon - 1, &stats, &err);
	ok(!stats.cleaned, "1 ms before the horizon nothing is due");
	read_back(p, &rb);
	ok(matches(&rb, &want), "and the tombstone is still there");

	sk_compact_partition(p, &st, &cfg, horizon, &stats, &err);
	ok(stats.cleaned && strcmp(stats.why, "delete horizon") == 0 &&
		   stats.tombstones_removed == 1,
	   "at the horizon a pass runs and removes it");
	read_back(p, &rb);
	expect(&m, act, false, &want);
	ok(matches(&rb, &want), "no record of the key is left");
	is(st.horizon, INT64_MAX, "no horizon pending any more");
	sk_partition_close(p);
	remove_dir(dir);
}

/* When a pass runs: the dirty ratio, max.compaction.lag, min lag. */
static void test_when(void)
{
	static struct model m, want;
	static struct readback rb;
	struct sk_compact_config cfg = ccfg(0.5);
	struct sk_compact_state st = { 0, INT64_MAX };
	struct sk_compact_stats stats;
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir);
	struct sk_err err;
	int64_t act, clean_bytes = 0, dirty_bytes = 0;
	double ratio;

	m.n = 0;
	append_updates(p, &m, 120, 3, SK_CODEC_NONE, T0);
	cfg.min_cleanable_ratio = 1.0;
	sk_compact_partition(p, &st, &cfg, T0 + DAY_MS, &stats, &err);
	ok(!stats.cleaned, "ratio 1.0: never above it, nothing runs");
	cfg.max_lag_ms = DAY_MS;
	sk_compact_partition(p, &st, &cfg, T0 + DAY_MS, &stats, &err);
	ok(!stats.cleaned, "max.compaction.lag.ms not yet passed");
	sk_compact_partition(p, &st, &cfg, T0 + DAY_MS + 200, &stats, &err);
	ok(stats.cleaned && strcmp(stats.why, "max.compaction.lag.ms") == 0,
	   "max.compaction.lag.ms passed: cleaned whatever the ratio");

	/* A little more: the dirty ratio is what the segments say. */
	append_updates(p, &m, 40, 3, SK_CODEC_NONE, T0 + 10000);
	act = active_base(p);
	for (size_t i = 0; i + 1 < sk_partition_segment_count(p); i++) {
		struct sk_segment *seg = sk_partition_segment(p, i);

		if (seg->base_offset < st.first_dirty)
			clean_bytes += seg->size;
		else
			dirty_bytes += seg->size;
	}
	ratio = (double)dirty_bytes / (double)(clean_bytes + dirty_bytes);
	cfg = ccfg(ratio);
	sk_compact_partition(p, &st, &cfg, T0 + DAY_MS, &stats, &err);
	ok(!stats.cleaned,
	   "min.cleanable.dirty.ratio = the ratio (%.3f): "
	   "not above it, nothing runs",
	   ratio);
	cfg.min_cleanable_ratio = ratio - 0.001;
	cfg.min_lag_ms = DAY_MS;
	sk_compact_partition(p, &st, &cfg, T0 + DAY_MS, &stats, &err);
	ok(!stats.cleaned, "just below it, but every dirty segment is younger "
			   "than min.compaction.lag.ms: nothing runs");
	cfg.min_lag_ms = 0;
	sk_compact_partition(p, &st, &cfg, T0 + DAY_MS, &stats, &err);
	ok(stats.cleaned && strcmp(stats.why, "dirty ratio") == 0,
	   "just below it: cleaned");
	read_back(p, &rb);
	expect(&m, act, true, &want);
	ok(matches(&rb, &want), "the latest of each key remains");
	sk_partition_close(p);
	remove_dir(dir);
}

/* A map smaller than the keys: several passes, each a correct step. */
static void test_small_map(void)
{
	static struct model m, want;
	static struct readback rb;
	struct sk_compact_config cfg = ccfg(0.0);
	struct sk_compact_state st = { 0, INT64_MAX };
	struct sk_compact_stats stats;
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir);
	bool each_ok = true;
	struct sk_err err;
	int passes = 0;
	int64_t act;

	m.n = 0;
	/* 400 distinct keys, each written twice; 96 fit the map. */
	append_updates(p, &m, 400, 400, SK_CODEC_NONE, T0);
	append_updates(p, &m, 400, 400, SK_CODEC_NONE, T0 + 1000);
	act = active_base(p);
	cfg.map_bytes = 4096;
	cfg.segment_bytes = 4096;
	while (passes < 50) {
		int64_t before = st.first_dirty;

		if (sk_compact_partition(p, &st, &cfg, T0 + DAY_MS, &stats,
					 &err) < 0) {
			diag("%s", err.msg);
			break;
		}
		if (!stats.cleaned)
			break;
		passes++;
		/* Between passes: cleaned up to the map's end only. */
		read_back(p, &rb);
		{
			static struct model step;

			step.n = 0;
			for (int i = 0; i < m.n; i++) {
				const struct rec *r = &m.r[i];
				bool keep = true;

				for (int j = i + 1; j < m.n; j++)
					if (same_key(r, &m.r[j]) &&
					    m.r[j].off < stats.map_end &&
					    m.r[j].off >= stats.first_dirty &&
					    r->off < stats.map_end)
						keep = false;
				/* Earlier passes removed theirs too. */
				for (int j = i + 1; j < m.n; j++)
					if (same_key(r, &m.r[j]) &&
					    m.r[j].off < before)
						keep = false;
				if (keep)
					step.r[step.n++] = *r;
			}
			each_ok &= matches(&rb, &step);
		}
		each_ok &= st.first_dirty > before || st.first_dirty == act;
	}
	ok(passes > 3, "%d passes for 400 keys in a 96-key map", passes);
	ok(each_ok, "each pass removes exactly what its map covered, and "
		    "the checkpoint moves on");
	read_back(p, &rb);
	expect(&m, act, true, &want);
	ok(matches(&rb, &want) && st.first_dirty == act,
	   "in the end the log is fully compacted");
	sk_partition_close(p);
	remove_dir(dir);
}

/* Control and transactional batches are neither mapped nor filtered. */
static void test_control(void)
{
	static struct model m, want;
	static struct readback rb;
	struct sk_compact_config cfg = ccfg(0.0);
	struct sk_compact_state st = { 0, INT64_MAX };
	struct sk_compact_stats stats;
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir);
	const char *k = "k0", *v = "txn", *nk = NULL, *ck = "\0\0\0\1";
	struct sk_err err;
	int64_t act, ctrl_off, txn_off;

	m.n = 0;
	append_updates(p, &m, 10, 2, SK_CODEC_NONE, T0);
	txn_off = sk_partition_end_offset(p);
	append(p, &m, SK_CODEC_NONE, SK_BATCH_ATTR_TRANSACTIONAL, &k, &v, 1,
	       T0 + 50);
	ctrl_off = sk_partition_end_offset(p);
	(void)nk;
	append(p, &m, SK_CODEC_NONE,
	       SK_BATCH_ATTR_TRANSACTIONAL | SK_BATCH_ATTR_CONTROL, &ck, &v, 1,
	       T0 + 60);
	append_updates(p, &m, 40, 2, SK_CODEC_NONE, T0 + 100);
	act = active_base(p);
	sk_compact_partition(p, &st, &cfg, T0 + DAY_MS, &stats, &err);
	read_back(p, &rb);
	/* The model: the two special records always stay, unmapped. */
	expect(&m, act, true, &want);
	{
		static struct model fixed;
		int j = 0;

		fixed.n = 0;
		for (int i = 0; i < m.n; i++) {
			const struct rec *r = &m.r[i];

			if (r->off == txn_off || r->off == ctrl_off ||
			    (j < want.n && want.r[j].off == r->off))
				fixed.r[fixed.n++] = *r;
			if (j < want.n && want.r[j].off == r->off)
				j++;
		}
		ok(stats.cleaned && matches(&rb, &fixed),
		   "transactional and control batches stay as they were");
	}
	sk_partition_close(p);
	remove_dir(dir);
}

/* The partition moves on while a job runs: retention wins. */
static void test_concurrent_retention(void)
{
	static struct model m, want;
	static struct readback rb;
	struct sk_compact_config cfg = ccfg(0.0);
	struct sk_compact_state st = { 0, INT64_MAX };
	struct sk_compact_stats stats;
	struct sk_compact_job *job;
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir);
	struct sk_err err;
	int64_t deleted = 0, start, act;

	m.n = 0;
	append_updates(p, &m, 100, 4, SK_CODEC_NONE, T0);
	cfg.segment_bytes = 2000; /* several groups */
	act = active_base(p);
	sk_compact_plan(p, &st, &cfg, T0 + DAY_MS, &job);
	ok(job != NULL, "a job is planned");
	is(sk_compact_run(job, &err), 0, "and run");
	/* Meanwhile retention by size takes the oldest segments. */
	sk_partition_retention(p, T0 + DAY_MS, -1,
			       sk_partition_size_bytes(p) * 2 / 3, &deleted);
	start = sk_partition_start_offset(p);
	ok(deleted > 0 && start > 0, "retention deleted %lld segments",
	   (long long)deleted);
	sk_compact_install(p, job);
	is(sk_compact_commit(job, &err), 0, "the job commits");
	sk_compact_finish(p, job, &st, &stats);
	sk_compact_job_free(job);
	ok(stats.groups_skipped > 0,
	   "the group retention touched was "
	   "dropped (%lld)",
	   (long long)stats.groups_skipped);
	is(sk_partition_start_offset(p), start,
	   "the start offset is retention's");
	read_back(p, &rb);
	ok(rb.ok && rb.n > 0 && rb.r[0].off >= start,
	   "nothing deleted came back");
	ok(!has_file(dir, ".cleaned") && !has_file(dir, ".swap"),
	   "no temporary file left");
	sk_partition_close(p);
	p = open_p(dir);
	is(sk_partition_start_offset(p), start, "nor after a reopen");
	/* What is left still compacts to the right records. */
	st.horizon = INT64_MAX;
	sk_compact_partition(p, &st, &cfg, T0 + DAY_MS, &stats, &err);
	read_back(p, &rb);
	{
		static struct model rest;

		rest.n = 0;
		for (int i = 0; i < m.n; i++)
			if (m.r[i].off >= start)
				rest.r[rest.n++] = m.r[i];
		expect(&rest, act, true, &want);
		ok(matches(&rb, &want), "a later pass compacts the rest");
	}
	sk_partition_close(p);
	remove_dir(dir);
}

/*
 * A crash at each step of the swap: the files as that step left them
 * (the partition closed without the later steps), then an open.
 */
static void test_crash_steps(void)
{
	static struct model m, want;
	static struct readback rb;
	for (int step = 0; step < 3; step++) {
		struct sk_compact_config cfg = ccfg(0.0);
		struct sk_compact_state st = { 0, INT64_MAX };
		struct sk_compact_job *job;
		char *dir = new_dir();
		struct sk_partition *p = open_p(dir);
		static const char *names[] = {
			"after the rewrite (.cleaned)",
			"after install (.swap, old files)",
			"after commit (.swap, old files gone)",
		};
		struct sk_err err;
		int64_t act;

		m.n = 0;
		append_updates(p, &m, 80, 4, SK_CODEC_GZIP, T0);
		act = active_base(p);
		sk_compact_plan(p, &st, &cfg, T0 + DAY_MS, &job);
		sk_compact_run(job, &err);
		if (step >= 1)
			sk_compact_install(p, job);
		if (step >= 2)
			sk_compact_commit(job, &err);
		sk_compact_job_free(job);
		sk_partition_close(p);
		ok(has_file(dir, step ? ".swap" : ".cleaned"),
		   "crash %s: the file is there", names[step]);
		p = open_p(dir);
		read_back(p, &rb);
		expect(&m, step ? act : 0, true, &want);
		ok(!sk_partition_damaged(p) && matches(&rb, &want),
		   "crash %s: the open finds %s", names[step],
		   step ? "the compacted log" : "the log as it was");
		ok(!has_file(dir, ".cleaned") && !has_file(dir, ".swap"),
		   "crash %s: no temporary file left", names[step]);
		sk_partition_close(p);
		remove_dir(dir);
	}
}

/* A topic deleted under a job: cancel, then nothing touches a name. */
static void test_cancel(void)
{
	struct sk_compact_config cfg = ccfg(0.0);
	struct sk_compact_state st = { 0, INT64_MAX };
	static struct model m;
	struct sk_compact_job *job;
	char *dir = new_dir();
	struct sk_partition *p = open_p(dir);
	struct sk_err err;

	m.n = 0;
	append_updates(p, &m, 60, 4, SK_CODEC_NONE, T0);
	sk_compact_plan(p, &st, &cfg, T0 + DAY_MS, &job);
	sk_compact_cancel(job);
	is(sk_compact_run(job, &err), -ECANCELED, "a cancelled job stops");
	ok(!has_file(dir, ".cleaned"), "having written nothing");
	sk_compact_job_free(job);

	sk_compact_plan(p, &st, &cfg, T0 + DAY_MS, &job);
	sk_compact_run(job, &err);
	sk_compact_cancel(job);
	sk_compact_install(p, job);
	is(sk_compact_commit(job, &err), -ECANCELED,
	   "cancelled after the rewrite: no commit");
	sk_compact_finish(p, job, &st, NULL);
	sk_compact_job_free(job);
	is(st.first_dirty, 0, "and no new state");
	sk_partition_close(p);
	remove_dir(dir);
}

/* A corrupt batch in a closed segment: the partition is not compacted. */
static void test_corrupt(void)
{
	struct sk_compact_config cfg = ccfg(0.0);
	struct sk_compact_state st = { 0, INT64_MAX };
	struct sk_compact_stats stats;
	static struct model m;
	char *dir = new_dir(), *path;
	struct sk_partition *p = open_p(dir);
	struct sk_err err;
	int fd;

	m.n = 0;
	append_updates(p, &m, 60, 4, SK_CODEC_NONE, T0);
	/* Rot a byte of a record in the first segment, after the open. */
	path = sk_xasprintf("%s/%020d.log", dir, 0);
	fd = open(path, O_WRONLY);
	pwrite(fd, "X", 1, SK_BATCH_HEADER_SIZE + 5);
	close(fd);
	is(sk_compact_partition(p, &st, &cfg, T0 + DAY_MS, &stats, &err),
	   -EBADMSG, "a CRC failure stops the pass");
	ok(strstr(err.msg, "CRC mismatch") != NULL, "and says why: %s",
	   err.msg);
	ok(!has_file(dir, ".cleaned") && st.first_dirty == 0,
	   "nothing written, nothing moved");
	free(path);
	sk_partition_close(p);
	remove_dir(dir);
}

static void test_produce_keys(void)
{
	struct sk_record_in in[2] = {
		{ "k", 1, "v", 1, T0, NULL, 0 },
		{ NULL, -1, "v", 1, T0, NULL, 0 },
	};
	struct sk_buf b = { 0 }, z = { 0 }, fr = { 0 }, scratch = { 0 };
	struct sk_batch_hdr h;
	struct sk_err err;

	sk_batch_build(&b, 0, in, 1, 0, -1, -1, -1);
	sk_batch_parse_header(b.data, b.len, &h);
	is(sk_compact_check_keys(b.data, b.len, &h, &scratch, &err),
	   SK_KERR_NONE, "a keyed record is fine");
	b.len = 0;
	sk_batch_build(&b, 0, in, 2, 0, -1, -1, -1);
	sk_batch_parse_header(b.data, b.len, &h);
	is(sk_compact_check_keys(b.data, b.len, &h, &scratch, &err),
	   SK_KERR_INVALID_RECORD, "a record without a key is refused");
	is_str(err.msg, "Compacted topic cannot accept message without key",
	       "with Kafka's message");
	sk_codec_compress(SK_CODEC_LZ4, b.data + SK_BATCH_HEADER_SIZE,
			  b.len - SK_BATCH_HEADER_SIZE, &z, 0, &err);
	h.attributes |= SK_CODEC_LZ4;
	sk_batch_frame(&fr, &h, z.data, z.len);
	is(sk_compact_check_keys(fr.data, fr.len, &h, &scratch, &err),
	   SK_KERR_INVALID_RECORD, "inside a compressed batch too");
	sk_buf_free(&b);
	sk_buf_free(&z);
	sk_buf_free(&fr);
	sk_buf_free(&scratch);
}

int main(void)
{
	plan(103);
	test_map();
	test_basic();
	test_multi_record_batches(SK_CODEC_NONE);
	test_multi_record_batches(SK_CODEC_GZIP);
	test_multi_record_batches(SK_CODEC_SNAPPY);
	test_multi_record_batches(SK_CODEC_LZ4);
	test_multi_record_batches(SK_CODEC_ZSTD);
	test_emptied_segments();
	test_tombstones();
	test_when();
	test_small_map();
	test_control();
	test_concurrent_retention();
	test_crash_steps();
	test_cancel();
	test_corrupt();
	test_produce_keys();
	return check_status();
}
