/*
 * Tiered storage (see log_remote.h).
 *
 * Lifetimes. A partition's remote state (struct sk_remote_part) is
 * reference counted: one reference while attached to its sk_tpart, one
 * per operation in flight (a copy, a manifest write, a download), so a
 * topic deleted under a running copy leaves the copy's completion with
 * valid memory and nothing to do. Remote segments (struct rseg) are
 * counted the same way: one reference while in the manifest, one per
 * download. The broker-wide state counts operations in flight, and
 * sk_remote_free keeps it allocated (with a warning) if some never came
 * back, rather than let a late completion touch freed memory.
 *
 * Why the manifest gates deletion: the local copy of a segment is the
 * only copy until the tier has it AND a manifest naming it survives a
 * crash; until then the segment stays. Likewise, objects are removed from
 * the tier only after a durable manifest no longer names them, so a crash
 * never leaves a manifest pointing at deleted objects.
 */
#include "log_remote.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "crc32c.h"
#include "kafka.h"
#include "log_internal.h"
#include "metrics.h"
#include "plugin.h"
#include "plugin_tier.h"
#include "pool.h"
#include "say.h"
#include "topic.h"

#define SK_REMOTE_MANIFEST "remote.manifest"
#define SK_REMOTE_MAGIC	   "skald-remote-manifest 1"
/* Copy retries back off from 1 s to 60 s. */
#define SK_REMOTE_BACKOFF_MIN_MS 1000
#define SK_REMOTE_BACKOFF_MAX_MS 60000
/* How long a failed download answers -EIO before it is tried again. */
#define SK_REMOTE_READ_RETRY_MS 1000
/* Bytes read at a time when computing a CRC. */
#define SK_REMOTE_CRC_CHUNK (1 << 20)

/* The files of a segment, in the order of rseg.size[] and crc[]. */
static const char *const suffixes[] = { ".log", ".index", ".timeindex" };
#define N_FILES 3

enum rseg_cache {
	RC_NONE,    /* not downloaded */
	RC_LOADING, /* download or check under way */
	RC_READY,   /* cached: served from cached */
	RC_FAILED,  /* the last download failed; retried after failed_until */
};

/* One segment in the tier. */
struct rseg {
	int refs;
	bool removed;	   /* no longer in the manifest */
	int64_t base, end; /* offsets [base, end) */
	int64_t max_ts;	   /* largest record timestamp, -1 if none */
	char *key;	   /* segment key in the tier */
	uint64_t size[N_FILES];
	uint32_t crc[N_FILES];
	uint64_t gen;	   /* first manifest generation naming it */
	uint64_t drop_gen; /* removed: first generation without it */
	/* the read cache */
	enum rseg_cache state;
	struct sk_segment *cached;
	int64_t failed_until;
	struct sk_list lru; /* in sk_remote.lru while READY */
	struct sk_remote_part *rp;
};

struct sk_remote_part {
	int refs;
	struct sk_remote *r;
	struct sk_tpart *tp; /* NULL once forgotten */
	char *topic;
	int32_t partition;
	char *dir; /* the partition's directory */
	char *cache_dir;
	struct rseg **segs; /* the manifest, by base offset */
	size_t n, cap;
	int64_t start;	     /* DeleteRecords: nothing below is readable */
	struct rseg **drops; /* removed, objects to delete once durable */
	size_t n_drops, cap_drops;
	uint64_t gen;	      /* of the in-memory manifest */
	uint64_t durable_gen; /* of the manifest on disk */
	bool writing, write_again;
	bool copying;	  /* a copy in flight */
	int64_t retry_at; /* monotonic ms: no copy before */
	int64_t backoff_ms;
	uint32_t failures; /* consecutive copy failures */
	bool warned_compact;
	const char *copy_key; /* of the copy in flight (the copy owns it) */
	uint64_t swept_gen;   /* sk_remote.sweep_gen when last swept */
	bool keep_orphans;    /* a damaged manifest was set aside */
	struct sk_list link;  /* in sk_remote.parts */
};

struct sk_remote {
	struct sk_broker *b;
	struct sk_tier *tier;
	struct sk_pool *pool; /* checksums, manifest writes, cache checks */
	ev_timer timer;
	char *cache_root;
	int64_t cache_bytes;
	struct sk_list lru;   /* READY rsegs, least recently used first */
	struct sk_list parts; /* every sk_remote_part alive */
	long inflight;	      /* jobs and tier operations */
	uint64_t seq;	      /* for unique segment keys */
	bool stopped;
	/* the orphan sweep: one partition at a time, each once a round */
	bool sweeping;
	uint64_t sweep_gen; /* the round */
	int64_t sweep_at;   /* monotonic ms: the next round */
	struct sk_metric *m_copied, *m_copy_bytes, *m_copy_failures, *m_deleted,
		*m_local_deleted, *m_reads, *m_read_failures, *m_cache_bytes,
		*m_lag, *m_orphans;
};

static void rp_put(struct sk_remote_part *rp);
static void manifest_save(struct sk_remote_part *rp);
static void local_retention(struct sk_remote_part *rp, int64_t now_ms);

/* ------------------------------------------------------------------ */
/* Helpers */

static struct sk_tpart *tp_of(struct sk_remote_part *rp)
{
	return rp->tp;
}

static struct sk_topic *topic_of(struct sk_remote_part *rp)
{
	return rp->tp ? rp->tp->topic : NULL;
}

static bool enabled(const struct sk_topic *t)
{
	return t->cfg.remote_storage_enable &&
	       !(t->cfg.cleanup_policy & SK_CLEANUP_COMPACT);
}

/* CRC-32C of the first len bytes of fd; -errno or -EIO if short. */
static int crc_of(int fd, uint64_t len, uint32_t *out)
{
	uint8_t *buf = sk_xmalloc(SK_REMOTE_CRC_CHUNK);
	uint32_t crc = 0;
	uint64_t pos = 0;
	int rc = 0;

	while (pos < len) {
		size_t want = (size_t)SK_MIN((uint64_t)SK_REMOTE_CRC_CHUNK,
					     len - pos);
		ssize_t n = pread(fd, buf, want, (off_t)pos);

		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0) {
			rc = -EIO;
			break;
		}
		crc = sk_crc32c(crc, buf, (size_t)n);
		pos += (uint64_t)n;
	}
	free(buf);
	*out = crc;
	return rc;
}

static void rseg_put(struct rseg *e)
{
	if (--e->refs > 0)
		return;
	if (e->cached)
		sk_segment_unref(e->cached);
	free(e->key);
	free(e);
}

/* Drop e's cached copy (file and reference); readers keep theirs. */
static void cache_drop(struct sk_remote *r, struct rseg *e)
{
	char *path;

	if (e->state != RC_READY)
		return;
	path = sk_xasprintf("%s.log", e->cached->stem);
	if (unlink(path) < 0 && errno != ENOENT)
		sk_warn("remote: cannot remove cached %s: %s", path,
			strerror(errno));
	free(path);
	r->cache_bytes -= (int64_t)e->size[0];
	sk_metric_set(r->m_cache_bytes, (double)r->cache_bytes);
	sk_list_del(&e->lru);
	sk_segment_unref(e->cached);
	e->cached = NULL;
	e->state = RC_NONE;
}

/* Index of the last entry with base <= offset, or -1. */
static ssize_t find_entry(const struct sk_remote_part *rp, int64_t offset)
{
	size_t lo = 0, hi = rp->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rp->segs[mid]->base <= offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (ssize_t)lo - 1;
}

/* The entry for base, or NULL. */
static struct rseg *entry_at(const struct sk_remote_part *rp, int64_t base)
{
	ssize_t i = find_entry(rp, base);

	return i >= 0 && rp->segs[i]->base == base ? rp->segs[i] : NULL;
}

static void entry_insert(struct sk_remote_part *rp, struct rseg *e)
{
	ssize_t i = find_entry(rp, e->base);

	if (rp->n == rp->cap) {
		rp->cap = rp->cap ? 2 * rp->cap : 16;
		rp->segs = sk_xrealloc(rp->segs, rp->cap * sizeof(*rp->segs));
	}
	memmove(rp->segs + i + 2, rp->segs + i + 1,
		(rp->n - (size_t)(i + 1)) * sizeof(*rp->segs));
	rp->segs[i + 1] = e;
	rp->n++;
}

/*
 * Take the first k entries out of the manifest; their objects are
 * deleted once a manifest without them is durable.
 */
static void entries_drop(struct sk_remote_part *rp, size_t k)
{
	if (k == 0)
		return;
	rp->gen++;
	for (size_t i = 0; i < k; i++) {
		struct rseg *e = rp->segs[i];

		e->removed = true;
		e->drop_gen = rp->gen;
		cache_drop(rp->r, e);
		if (rp->n_drops == rp->cap_drops) {
			rp->cap_drops = rp->cap_drops ? 2 * rp->cap_drops : 16;
			rp->drops = sk_xrealloc(
				rp->drops, rp->cap_drops * sizeof(*rp->drops));
		}
		rp->drops[rp->n_drops++] = e; /* takes the manifest's ref */
	}
	memmove(rp->segs, rp->segs + k, (rp->n - k) * sizeof(*rp->segs));
	rp->n -= k;
	manifest_save(rp);
}

/* First local segment base: below it, data is remote only. */
static int64_t local_base(struct sk_tpart *tp)
{
	return sk_partition_segment(tp->log, 0)->base_offset;
}

/* Kafka's largest timestamp of a segment, its mtime if it has none. */
static int64_t seg_largest_ts(const struct sk_segment *seg)
{
	struct stat st;

	if (seg->max_timestamp >= 0)
		return seg->max_timestamp;
	if (fstat(seg->fd, &st) < 0)
		return INT64_MAX;
	return (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */
/* The manifest */

struct mwrite {
	struct sk_job job;
	struct sk_remote_part *rp;
	char *dir;
	char *text;
	size_t len;
	uint64_t gen;
	int rc;
};

static void mwrite_run(struct sk_job *job)
{
	struct mwrite *w = sk_container_of(job, struct mwrite, job);
	char *tmp = sk_xasprintf("%s/%s.tmp", w->dir, SK_REMOTE_MANIFEST);
	char *path = sk_xasprintf("%s/%s", w->dir, SK_REMOTE_MANIFEST);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	w->rc = 0;
	if (fd < 0 || write(fd, w->text, w->len) != (ssize_t)w->len ||
	    fdatasync(fd) < 0)
		w->rc = -errno ? -errno : -EIO;
	if (fd >= 0 && close(fd) < 0 && !w->rc)
		w->rc = -errno;
	if (!w->rc && rename(tmp, path) < 0)
		w->rc = -errno;
	if (!w->rc)
		w->rc = sk_fsync_dir(w->dir);
	free(tmp);
	free(path);
}

static void tier_removed(void *arg, const struct sk_tier_result *res);

/* Delete the objects of dropped entries a durable manifest no longer names. */
static void drops_flush(struct sk_remote_part *rp)
{
	struct sk_remote *r = rp->r;
	size_t kept = 0;

	for (size_t i = 0; i < rp->n_drops; i++) {
		struct rseg *e = rp->drops[i];
		struct skald_tier_segment *ts;
		struct skald_tier_file *files;
		const struct skald_tier_file **fp;

		if (e->drop_gen > rp->durable_gen || r->stopped) {
			rp->drops[kept++] = e;
			continue;
		}
		/* One allocation: segment, files, pointers (see tier_removed). */
		ts = sk_xcalloc(1, sizeof(*ts) + N_FILES * sizeof(*files) +
					   N_FILES * sizeof(*fp) + sizeof(e));
		files = (struct skald_tier_file *)(ts + 1);
		fp = (const struct skald_tier_file **)(files + N_FILES);
		for (int f = 0; f < N_FILES; f++) {
			files[f].suffix = suffixes[f];
			files[f].fd = -1;
			fp[f] = &files[f];
		}
		ts->size = sizeof(*ts);
		ts->n_files = N_FILES;
		ts->key = e->key;
		ts->topic = rp->topic;
		ts->partition = rp->partition;
		ts->base_offset = e->base;
		ts->end_offset = e->end;
		ts->max_timestamp = e->max_ts;
		ts->files = fp;
		memcpy(fp + N_FILES, &e, sizeof(e));
		rp->refs++;
		r->inflight++;
		sk_tier_remove(r->tier, ts, tier_removed, ts);
	}
	rp->n_drops = kept;
}

static void tier_removed(void *arg, const struct sk_tier_result *res)
{
	struct skald_tier_segment *ts = arg;
	const struct skald_tier_file **fp =
		(const struct skald_tier_file **)ts->files;
	struct rseg *e;
	struct sk_remote *r;

	memcpy(&e, fp + N_FILES, sizeof(e));
	r = e->rp->r;
	r->inflight--;
	if (res->rc)
		sk_warn("remote: topic %s partition %d: cannot delete segment "
			"%" PRId64 " (%s) from %s: %s%s%s; its objects are "
			"left behind",
			e->rp->topic, e->rp->partition, e->base, e->key,
			sk_tier_name(r->tier), strerror(-res->rc),
			res->msg[0] ? ": " : "", res->msg);
	else
		sk_metric_add(r->m_deleted, 1);
	rp_put(e->rp);
	rseg_put(e);
	free(ts);
}

static void mwrite_done(struct sk_job *job)
{
	struct mwrite *w = sk_container_of(job, struct mwrite, job);
	struct sk_remote_part *rp = w->rp;

	rp->r->inflight--;
	rp->writing = false;
	if (w->rc) {
		/* Written again by the next periodic run. */
		sk_error("remote: topic %s partition %d: cannot write %s/%s: "
			 "%s (local copies stay until it is written)",
			 rp->topic, rp->partition, w->dir, SK_REMOTE_MANIFEST,
			 strerror(-w->rc));
		rp->write_again = true;
	} else {
		if (w->gen > rp->durable_gen)
			rp->durable_gen = w->gen;
		/* Also when stopping: the segment may be gone locally soon. */
		if (rp->write_again && rp->tp) {
			rp->write_again = false;
			manifest_save(rp);
		}
	}
	if (rp->tp && !rp->r->stopped) {
		drops_flush(rp);
		local_retention(rp, sk_now_ms());
	}
	free(w->dir);
	free(w->text);
	free(w);
	rp_put(rp);
}

/* Write the manifest as it is now (one write at a time per partition). */
static void manifest_save(struct sk_remote_part *rp)
{
	struct sk_remote *r = rp->r;
	struct sk_buf b = { 0 };
	struct mwrite *w;
	char line[1400];
	uint32_t crc;
	int n;

	if (rp->writing) {
		rp->write_again = true;
		return;
	}
	n = snprintf(line, sizeof(line), "%s\nstart %" PRId64 "\n",
		     SK_REMOTE_MAGIC, rp->start);
	sk_buf_put(&b, line, (size_t)n);
	for (size_t i = 0; i < rp->n; i++) {
		const struct rseg *e = rp->segs[i];

		n = snprintf(line, sizeof(line),
			     "seg %" PRId64 " %" PRId64 " %" PRId64 " %s"
			     " %" PRIu64 " %08x %" PRIu64 " %08x %" PRIu64
			     " %08x\n",
			     e->base, e->end, e->max_ts, e->key, e->size[0],
			     e->crc[0], e->size[1], e->crc[1], e->size[2],
			     e->crc[2]);
		sk_buf_put(&b, line, (size_t)SK_MIN(n, (int)sizeof(line) - 1));
	}
	crc = sk_crc32c(0, b.data, b.len);
	n = snprintf(line, sizeof(line), "crc %08x\n", crc);
	sk_buf_put(&b, line, (size_t)n);

	w = sk_xcalloc(1, sizeof(*w));
	w->rp = rp;
	w->dir = sk_xstrdup(rp->dir);
	w->text = (char *)b.data;
	w->len = b.len;
	w->gen = rp->gen;
	w->job.run = mwrite_run;
	w->job.done = mwrite_done;
	rp->writing = true;
	rp->refs++;
	r->inflight++;
	sk_pool_submit(r->pool, &w->job);
}

/*
 * Read dir's manifest into rp. A missing file is an empty manifest; a
 * damaged one is set aside (.bad) with an error: its segments are then
 * unreachable, never the local ones.
 */
static void manifest_load(struct sk_remote_part *rp)
{
	char *path = sk_xasprintf("%s/%s", rp->dir, SK_REMOTE_MANIFEST);
	FILE *f = fopen(path, "r");
	struct sk_buf b = { 0 };
	char line[1400];
	const char *why = NULL;
	bool ended = false;

	{
		/* Its objects may be needed to recover: never swept. */
		char *bad = sk_xasprintf("%s.bad", path);

		rp->keep_orphans = access(bad, F_OK) == 0;
		free(bad);
	}
	if (!f) {
		if (errno != ENOENT)
			sk_error("remote: cannot read %s: %s", path,
				 strerror(errno));
		free(path);
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		unsigned crc, c0, c1, c2;
		long long base, end, ts;
		unsigned long long s0, s1, s2;
		char key[1024];

		if (ended) {
			why = "data after the checksum";
			break;
		}
		if (b.len == 0) {
			if (strcmp(line, SK_REMOTE_MAGIC "\n") != 0) {
				why = "not a manifest";
				break;
			}
		} else if (sscanf(line, "start %lld", &base) == 1 &&
			   base >= 0) {
			rp->start = base;
		} else if (sscanf(line, "crc %x", &crc) == 1) {
			if (crc != sk_crc32c(0, b.data, b.len)) {
				why = "checksum mismatch";
				break;
			}
			ended = true;
			continue;
		} else if (sscanf(line,
				  "seg %lld %lld %lld %1023s %llu %x %llu "
				  "%x %llu %x",
				  &base, &end, &ts, key, &s0, &c0, &s1, &c1,
				  &s2, &c2) == 10 &&
			   base >= 0 && end > base) {
			struct rseg *e = sk_xcalloc(1, sizeof(*e));

			e->refs = 1;
			e->rp = rp;
			e->base = base;
			e->end = end;
			e->max_ts = ts;
			e->key = sk_xstrdup(key);
			e->size[0] = s0;
			e->size[1] = s1;
			e->size[2] = s2;
			e->crc[0] = c0;
			e->crc[1] = c1;
			e->crc[2] = c2;
			sk_list_init(&e->lru);
			entry_insert(rp, e);
		} else {
			why = "a malformed line";
			break;
		}
		sk_buf_put(&b, line, strlen(line));
	}
	fclose(f);
	if (!why && !ended)
		why = "no checksum (truncated)";
	if (why) {
		char *bad = sk_xasprintf("%s.bad", path);

		sk_error("remote: %s: %s; set aside as %s, the segments it "
			 "named are no longer readable",
			 path, why, bad);
		if (rename(path, bad) < 0)
			sk_warn("remote: cannot rename %s: %s", path,
				strerror(errno));
		free(bad);
		rp->keep_orphans = true;
		while (rp->n)
			rseg_put(rp->segs[--rp->n]);
	}
	sk_buf_free(&b);
	free(path);
}

/* ------------------------------------------------------------------ */
/* Partition state */

static void rp_put(struct sk_remote_part *rp)
{
	if (--rp->refs > 0)
		return;
	for (size_t i = 0; i < rp->n; i++) {
		cache_drop(rp->r, rp->segs[i]);
		rseg_put(rp->segs[i]);
	}
	for (size_t i = 0; i < rp->n_drops; i++)
		rseg_put(rp->drops[i]);
	sk_list_del(&rp->link);
	free(rp->segs);
	free(rp->drops);
	free(rp->topic);
	free(rp->dir);
	free(rp->cache_dir);
	free(rp);
}

static struct sk_remote_part *attach(struct sk_remote *r, struct sk_tpart *tp)
{
	struct sk_remote_part *rp;

	if (tp->remote)
		return tp->remote;
	rp = sk_xcalloc(1, sizeof(*rp));
	rp->refs = 1;
	rp->r = r;
	rp->tp = tp;
	rp->topic = sk_xstrdup(tp->topic->name);
	rp->partition = tp->id;
	rp->dir = sk_xstrdup(sk_partition_dir(tp->log));
	rp->cache_dir = sk_xasprintf("%s/%s-%d", r->cache_root, rp->topic,
				     rp->partition);
	rp->backoff_ms = SK_REMOTE_BACKOFF_MIN_MS;
	sk_list_add_tail(&r->parts, &rp->link);
	manifest_load(rp);
	if (rp->n)
		sk_info("remote: topic %s partition %d: %zu segments in %s, "
			"offsets %" PRId64 "-%" PRId64,
			rp->topic, rp->partition, rp->n, sk_tier_name(r->tier),
			rp->segs[0]->base, rp->segs[rp->n - 1]->end - 1);
	tp->remote = rp;
	return rp;
}

void sk_remote_forget(struct sk_remote *r, struct sk_tpart *tp,
		      bool delete_data)
{
	struct sk_remote_part *rp = tp->remote;

	if (!r || !rp)
		return;
	tp->remote = NULL;
	rp->tp = NULL;
	if (delete_data && !r->stopped) {
		/* The manifest goes with the directory: delete at once. */
		size_t n = rp->n;

		entries_drop(rp, n);
		rp->durable_gen = rp->gen;
		drops_flush(rp);
	}
	rp_put(rp);
}

/* ------------------------------------------------------------------ */
/* Copying segments to the tier */

struct copy {
	struct sk_job job;
	struct sk_remote_part *rp;
	struct sk_segment *seg; /* referenced */
	int64_t base, end, max_ts;
	char *key;
	char *paths[N_FILES];
	int fds[N_FILES]; /* [0] is seg->fd, not ours */
	struct skald_tier_file files[N_FILES];
	const struct skald_tier_file *fp[N_FILES];
	struct skald_tier_segment ts;
	int rc;
	char why[200];
};

static void copy_free(struct copy *c)
{
	for (int f = 1; f < N_FILES; f++)
		if (c->fds[f] >= 0)
			close(c->fds[f]);
	for (int f = 0; f < N_FILES; f++)
		free(c->paths[f]);
	sk_segment_unref(c->seg);
	free(c->key);
	free(c);
}

/* Worker: open the files and take their checksums. */
static void copy_run(struct sk_job *job)
{
	struct copy *c = sk_container_of(job, struct copy, job);

	for (int f = 0; f < N_FILES && !c->rc; f++) {
		struct skald_tier_file *tf = &c->files[f];
		struct stat st;

		tf->suffix = suffixes[f];
		tf->path = c->paths[f];
		if (f == 0) {
			tf->fd = c->fds[0];
			tf->size = (uint64_t)c->seg->size;
		} else {
			c->fds[f] = open(c->paths[f], O_RDONLY | O_CLOEXEC);
			/* An index lost in a crash is rebuilt, never needed. */
			if (c->fds[f] < 0 || fstat(c->fds[f], &st) < 0) {
				if (c->fds[f] >= 0)
					close(c->fds[f]);
				c->fds[f] = -1;
				continue;
			}
			tf->fd = c->fds[f];
			tf->size = (uint64_t)st.st_size;
		}
		c->rc = crc_of(tf->fd, tf->size, &tf->crc32c);
		if (c->rc)
			snprintf(c->why, sizeof(c->why), "cannot read %s: %s",
				 c->paths[f], strerror(-c->rc));
	}
}

static void copy_uploaded(void *arg, const struct sk_tier_result *res);
static size_t copy_next(struct sk_remote_part *rp);

/* Loop: hand the segment to the tier. */
static void copy_ready(struct sk_job *job)
{
	struct copy *c = sk_container_of(job, struct copy, job);
	struct sk_remote_part *rp = c->rp;
	struct sk_remote *r = rp->r;
	uint32_t n = 0;

	r->inflight--;
	if (c->rc || r->stopped || !rp->tp) {
		struct sk_tier_result res = { .rc = c->rc ? c->rc : -ESHUTDOWN,
					      .msg = c->why };

		r->inflight++;
		copy_uploaded(c, &res);
		return;
	}
	for (int f = 0; f < N_FILES; f++)
		if (f == 0 || c->fds[f] >= 0)
			c->fp[n++] = &c->files[f];
	c->ts.size = sizeof(c->ts);
	c->ts.n_files = n;
	c->ts.key = c->key;
	c->ts.topic = rp->topic;
	c->ts.partition = rp->partition;
	c->ts.base_offset = c->base;
	c->ts.end_offset = c->end;
	c->ts.max_timestamp = c->max_ts;
	c->ts.files = c->fp;
	r->inflight++;
	sk_tier_upload(r->tier, &c->ts, copy_uploaded, c);
}

static void copy_uploaded(void *arg, const struct sk_tier_result *res)
{
	struct copy *c = arg;
	struct sk_remote_part *rp = c->rp;
	struct sk_remote *r = rp->r;

	r->inflight--;
	rp->copying = false;
	rp->copy_key = NULL;
	if (res->rc == 0 && rp->tp) {
		struct rseg *e = sk_xcalloc(1, sizeof(*e));
		uint64_t bytes = 0;

		e->refs = 1;
		e->rp = rp;
		e->base = c->base;
		e->end = c->end;
		e->max_ts = c->max_ts;
		e->key = sk_xstrdup(c->key);
		for (int f = 0; f < N_FILES; f++) {
			bool sent = f == 0 || c->fds[f] >= 0;

			e->size[f] = sent ? c->files[f].size : 0;
			e->crc[f] = sent ? c->files[f].crc32c : 0;
			bytes += e->size[f];
		}
		sk_list_init(&e->lru);
		e->gen = ++rp->gen;
		entry_insert(rp, e);
		if (rp->failures)
			sk_info("remote: topic %s partition %d: copies to %s "
				"work again after %u failures",
				rp->topic, rp->partition, sk_tier_name(r->tier),
				rp->failures);
		rp->failures = 0;
		rp->backoff_ms = SK_REMOTE_BACKOFF_MIN_MS;
		sk_metric_add(r->m_copied, 1);
		/*
		 * One segment fewer waits. sk_remote_run recounts the gauge,
		 * but a backlog drains back to back between its runs (30 s
		 * apart by default): until the next run the gauge is its
		 * count minus the copies since, never below 0.
		 */
		if (sk_metric_value(r->m_lag) >= 1)
			sk_metric_add(r->m_lag, -1);
		sk_metric_add(r->m_copy_bytes, (double)bytes);
		sk_info("remote: topic %s partition %d: copied segment %" PRId64
			" (offsets %" PRId64 "-%" PRId64 ", %" PRIu64
			" bytes) to %s as %s",
			rp->topic, rp->partition, c->base, c->base, c->end - 1,
			bytes, sk_tier_name(r->tier), c->key);
		manifest_save(rp);
	} else if (res->rc && res->rc != -ESHUTDOWN && rp->tp) {
		sk_metric_add(r->m_copy_failures, 1);
		rp->failures++;
		rp->retry_at = sk_mono_ms() + rp->backoff_ms;
		if (rp->failures == 1 || rp->failures % 10 == 0)
			sk_warn("remote: topic %s partition %d: copy of segment "
				"%" PRId64
				" to %s failed (%u in a row): %s%s%s; "
				"the local copy stays, retrying in %" PRId64
				" ms",
				rp->topic, rp->partition, c->base,
				sk_tier_name(r->tier), rp->failures,
				strerror(-res->rc), res->msg[0] ? ": " : "",
				res->msg, rp->backoff_ms);
		rp->backoff_ms =
			SK_MIN(rp->backoff_ms * 2, SK_REMOTE_BACKOFF_MAX_MS);
	}
	copy_free(c);
	/* A backlog is copied back to back, not one per periodic run. */
	if (res->rc == 0 && rp->tp && !r->stopped && enabled(topic_of(rp)))
		copy_next(rp);
	rp_put(rp);
}

/* Start copying the oldest closed segment not in the tier, if any. */
static size_t copy_next(struct sk_remote_part *rp)
{
	struct sk_remote *r = rp->r;
	struct sk_partition *p = rp->tp->log;
	size_t closed = sk_partition_segment_count(p) - 1, lag = 0;
	struct sk_segment *next = NULL;
	struct copy *c;

	for (size_t i = 0; i < closed; i++) {
		struct sk_segment *seg = sk_partition_segment(p, i);

		if (seg->size == 0 || entry_at(rp, seg->base_offset))
			continue;
		if (!next)
			next = seg;
		lag++;
	}
	if (!next || rp->copying || sk_mono_ms() < rp->retry_at || r->stopped)
		return lag;
	c = sk_xcalloc(1, sizeof(*c));
	c->rp = rp;
	c->seg = next;
	sk_segment_ref(next);
	c->base = next->base_offset;
	c->end = next->end_offset;
	c->max_ts = next->max_timestamp >= 0 ? next->max_timestamp : -1;
	c->key = sk_xasprintf("%s/%d/%020" PRId64 "-%" PRIx64 "%04" PRIx64,
			      rp->topic, rp->partition, c->base,
			      (uint64_t)sk_now_ms(), r->seq++ & 0xffff);
	for (int f = 0; f < N_FILES; f++) {
		c->paths[f] = sk_xasprintf("%s%s", next->stem, suffixes[f]);
		c->fds[f] = -1;
	}
	c->fds[0] = next->fd;
	c->job.run = copy_run;
	c->job.done = copy_ready;
	rp->copying = true;
	rp->copy_key = c->key;
	rp->refs++;
	r->inflight++;
	sk_pool_submit(r->pool, &c->job);
	return lag;
}

/* ------------------------------------------------------------------ */
/* Retention */

/* Whether local segment seg is in the tier under a durable manifest. */
static bool safe_in_tier(const struct sk_remote_part *rp,
			 const struct sk_segment *seg)
{
	const struct rseg *e = entry_at(rp, seg->base_offset);

	return e && e->gen <= rp->durable_gen && e->end == seg->end_offset;
}

/* local.retention.*: drop local copies of segments safe in the tier. */
static void local_retention(struct sk_remote_part *rp, int64_t now_ms)
{
	struct sk_tpart *tp = tp_of(rp);
	struct sk_topic *t = topic_of(rp);
	struct sk_partition *p;
	int64_t ms, bytes;
	size_t closed, k = 0, removed = 0;

	if (!tp || !enabled(t))
		return;
	p = tp->log;
	closed = sk_partition_segment_count(p) - 1;
	ms = t->cfg.local_retention_ms == -2 ? t->cfg.retention_ms
					     : t->cfg.local_retention_ms;
	bytes = t->cfg.local_retention_bytes == -2
			? t->cfg.retention_bytes
			: t->cfg.local_retention_bytes;
	if (ms >= 0)
		while (k < closed &&
		       safe_in_tier(rp, sk_partition_segment(p, k)) &&
		       now_ms - seg_largest_ts(sk_partition_segment(p, k)) > ms)
			k++;
	if (bytes >= 0) {
		int64_t excess = sk_partition_size_bytes(p) - bytes;

		for (size_t i = 0; i < k; i++)
			excess -= sk_partition_segment(p, i)->size;
		while (k < closed &&
		       safe_in_tier(rp, sk_partition_segment(p, k)) &&
		       excess - sk_partition_segment(p, k)->size >= 0) {
			excess -= sk_partition_segment(p, k)->size;
			k++;
		}
	}
	if (!k)
		return;
	if (sk_partition_drop_oldest(p, k, &removed) < 0)
		sk_warn("remote: topic %s partition %d: a local segment could "
			"not be removed (retried next run)",
			rp->topic, rp->partition);
	if (removed) {
		sk_metric_add(rp->r->m_local_deleted, (double)removed);
		sk_info("remote: topic %s partition %d: removed %zu local "
			"segments kept in %s, local log now starts at %" PRId64,
			rp->topic, rp->partition, removed,
			sk_tier_name(rp->r->tier),
			sk_partition_start_offset(p));
	}
}

bool sk_remote_retention(struct sk_remote *r, struct sk_topic *t,
			 struct sk_tpart *tp, int64_t now_ms, int64_t *deleted)
{
	struct sk_remote_part *rp;
	struct sk_partition *p = tp->log;
	size_t only = 0, closed, k = 0, removed = 0;
	int64_t lbase, total = 0;

	*deleted = 0;
	if (!r || (!tp->remote && !enabled(t)))
		return false;
	rp = attach(r, tp);
	lbase = local_base(tp);
	/* Remote-only segments: before the first local one. */
	while (only < rp->n && rp->segs[only]->base < lbase)
		only++;
	closed = sk_partition_segment_count(p) - 1;
	/* The logical log: remote-only segments, then the local ones. */
	if (t->cfg.retention_ms >= 0) {
		while (k < only &&
		       (rp->segs[k]->max_ts < 0 ? false
						: now_ms - rp->segs[k]->max_ts >
							  t->cfg.retention_ms))
			k++;
		if (k == only)
			while (k < only + closed &&
			       now_ms - seg_largest_ts(sk_partition_segment(
						p, k - only)) >
				       t->cfg.retention_ms)
				k++;
	}
	if (t->cfg.retention_bytes >= 0) {
		int64_t excess;

		for (size_t i = 0; i < only; i++)
			total += (int64_t)rp->segs[i]->size[0];
		total += sk_partition_size_bytes(p);
		excess = total - t->cfg.retention_bytes;
		for (size_t i = 0; i < k; i++)
			excess -= i < only ? (int64_t)rp->segs[i]->size[0]
					   : sk_partition_segment(p, i - only)
						     ->size;
		while (k < only + closed) {
			int64_t sz = k < only
					     ? (int64_t)rp->segs[k]->size[0]
					     : sk_partition_segment(p, k - only)
						       ->size;

			if (excess - sz < 0)
				break;
			excess -= sz;
			k++;
		}
	}
	if (k > only) {
		/* Expired everywhere: local copies and their remote ones. */
		size_t local = k - only, drop = only;

		sk_partition_drop_oldest(p, local, &removed);
		/* Remote copies of the local segments now gone. */
		while (drop < rp->n && rp->segs[drop]->base < local_base(tp))
			drop++;
		entries_drop(rp, drop);
		*deleted = (int64_t)(only + removed);
	} else if (k) {
		entries_drop(rp, k);
		*deleted = (int64_t)k;
	}
	if (*deleted)
		sk_info("retention: topic %s partition %d: deleted %" PRId64
			" segments across both tiers, log start offset now "
			"%" PRId64 " (retention.ms %" PRId64
			", retention.bytes %" PRId64 ")",
			t->name, tp->id, *deleted,
			sk_remote_start_offset(r->b, tp), t->cfg.retention_ms,
			t->cfg.retention_bytes);
	local_retention(rp, now_ms);
	return true;
}

/* ------------------------------------------------------------------ */
/* Reading from the tier */

struct load {
	struct sk_job job;
	struct rseg *e;		   /* referenced */
	struct sk_remote_part *rp; /* referenced */
	char *part;		   /* the download's file */
	int fd;
	struct skald_tier_get get;
	char *get_key;
	int64_t index_interval;
	struct sk_segment *seg; /* checked copy */
	int rc;
	char why[300];
};

static void load_finish(struct load *l);

/* Worker: check the download and index it. */
static void load_run(struct sk_job *job)
{
	struct load *l = sk_container_of(job, struct load, job);
	struct rseg *e = l->e;
	char *dir = l->rp->cache_dir;
	char *final = sk_xasprintf("%s/%020" PRId64 ".log", dir, e->base);
	struct sk_seg_scan scan;
	struct sk_err err;
	struct stat st;
	int64_t size;
	uint32_t crc;

	if (fstat(l->fd, &st) < 0 || (uint64_t)st.st_size != e->size[0]) {
		l->rc = -EBADMSG;
		snprintf(l->why, sizeof(l->why),
			 "downloaded %lld bytes, the "
			 "manifest says %" PRIu64,
			 (long long)st.st_size, e->size[0]);
		goto out;
	}
	l->rc = crc_of(l->fd, e->size[0], &crc);
	if (!l->rc && crc != e->crc[0]) {
		l->rc = -EBADMSG;
		snprintf(l->why, sizeof(l->why),
			 "CRC-32C %08x, the manifest "
			 "says %08x",
			 crc, e->crc[0]);
	}
	if (l->rc)
		goto out;
	if (rename(l->part, final) < 0) {
		l->rc = -errno;
		snprintf(l->why, sizeof(l->why), "cannot rename %s: %s",
			 l->part, strerror(errno));
		goto out;
	}
	l->rc = sk_segment_open(&l->seg, dir, e->base, false, &size, &err);
	if (l->rc) {
		snprintf(l->why, sizeof(l->why), "%.290s", err.msg);
		goto out;
	}
	/* Every batch's framing and CRC, and the index for reads. */
	l->rc = sk_segment_scan(l->seg, 0, e->base, size,
				SK_SCAN_CRC | SK_SCAN_INDEX | SK_SCAN_GAPS,
				l->index_interval, &scan);
	if (!l->rc && (scan.bad || l->seg->end_offset != e->end)) {
		l->rc = -EBADMSG;
		snprintf(l->why, sizeof(l->why), "%s",
			 scan.bad ? scan.why
				  : "offsets differ from the "
				    "manifest's");
	}
out:
	free(final);
}

static void load_checked(struct sk_job *job)
{
	load_finish(sk_container_of(job, struct load, job));
}

/* Evict least recently used cached segments over the budget. */
static void cache_evict(struct sk_remote *r, const struct rseg *keep)
{
	while (r->cache_bytes > r->b->cfg.remote_cache_bytes &&
	       !sk_list_empty(&r->lru)) {
		struct rseg *e = sk_list_first(&r->lru, struct rseg, lru);

		if (e == keep)
			break;
		cache_drop(r, e);
	}
}

/* Loop: the download (and check) is over, one way or the other. */
static void load_finish(struct load *l)
{
	struct rseg *e = l->e;
	struct sk_remote_part *rp = l->rp;
	struct sk_remote *r = rp->r;

	r->inflight--;
	if (l->rc == 0 && !e->removed && !r->stopped) {
		e->state = RC_READY;
		e->cached = l->seg;
		l->seg = NULL;
		r->cache_bytes += (int64_t)e->size[0];
		sk_list_add_tail(&r->lru, &e->lru);
		cache_evict(r, e);
		sk_metric_set(r->m_cache_bytes, (double)r->cache_bytes);
		sk_metric_add(r->m_reads, 1);
	} else {
		if (l->rc && l->rc != -ESHUTDOWN) {
			sk_metric_add(r->m_read_failures, 1);
			sk_warn("remote: topic %s partition %d: reading segment "
				"%" PRId64 " (%s) from %s failed: %s%s%s",
				rp->topic, rp->partition, e->base, e->key,
				sk_tier_name(r->tier), strerror(-l->rc),
				l->why[0] ? ": " : "", l->why);
		}
		e->state = RC_FAILED;
		e->failed_until = sk_mono_ms() + SK_REMOTE_READ_RETRY_MS;
		if (l->seg) {
			char *path = sk_xasprintf("%s.log", l->seg->stem);

			unlink(path);
			free(path);
			sk_segment_unref(l->seg);
		}
		unlink(l->part);
	}
	if (l->fd >= 0)
		close(l->fd);
	/* Waiting reads evaluate again: data or an error now. */
	if (rp->tp && !r->stopped) {
		sk_fetch_wake(r->b, rp->tp);
		sk_list_offsets_wake(r->b);
	}
	free(l->part);
	free(l->get_key);
	free(l);
	rseg_put(e);
	rp_put(rp);
}

static void load_downloaded(void *arg, const struct sk_tier_result *res)
{
	struct load *l = arg;

	if (res->rc || l->rp->r->stopped) {
		l->rc = res->rc ? res->rc : -ESHUTDOWN;
		snprintf(l->why, sizeof(l->why), "%s", res->msg);
		load_finish(l);
		return;
	}
	l->job.run = load_run;
	l->job.done = load_checked;
	sk_pool_submit(l->rp->r->pool, &l->job);
}

/* Start downloading e into the cache. */
static void load_start(struct sk_remote_part *rp, struct rseg *e)
{
	struct sk_remote *r = rp->r;
	struct load *l;
	struct sk_err err;

	if (sk_mkdirs(rp->cache_dir, &err)) {
		sk_warn("remote: %s", err.msg);
		e->state = RC_FAILED;
		e->failed_until = sk_mono_ms() + SK_REMOTE_READ_RETRY_MS;
		return;
	}
	l = sk_xcalloc(1, sizeof(*l));
	l->e = e;
	l->rp = rp;
	l->part = sk_xasprintf("%s/%020" PRId64 ".log.part", rp->cache_dir,
			       e->base);
	l->fd = open(l->part, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (l->fd < 0) {
		sk_warn("remote: cannot create %s: %s", l->part,
			strerror(errno));
		e->state = RC_FAILED;
		e->failed_until = sk_mono_ms() + SK_REMOTE_READ_RETRY_MS;
		free(l->part);
		free(l);
		return;
	}
	l->index_interval = rp->tp->topic->cfg.index_interval_bytes;
	l->get_key = sk_xasprintf("%s.log", e->key);
	l->get.size = sizeof(l->get);
	l->get.fd = l->fd;
	l->get.key = l->get_key;
	e->state = RC_LOADING;
	e->refs++;
	rp->refs++;
	r->inflight++;
	sk_tier_download(r->tier, &l->get, load_downloaded, l);
}

int sk_remote_read(struct sk_broker *b, struct sk_tpart *tp, int64_t offset,
		   size_t max_bytes, bool min_one, struct sk_log_slice *out)
{
	int rc = sk_partition_read(tp->log, offset, max_bytes, min_one, out);
	struct sk_remote_part *rp = tp->remote;
	ssize_t i;

	/*
	 * Remote only below the first local segment, above the remote start,
	 * and not when DeleteRecords moved the local start past it all.
	 */
	if (rc != -ERANGE || !b->remote || !rp || offset < rp->start ||
	    offset >= local_base(tp) ||
	    sk_partition_start_offset(tp->log) > local_base(tp))
		return rc;
	i = find_entry(rp, offset);
	while (i >= 0 && (size_t)i < rp->n) {
		struct rseg *e = rp->segs[i];

		if (offset >= e->end || offset < e->base)
			return -ERANGE;
		switch (e->state) {
		case RC_READY:
			/* Most recently used: to the tail. */
			sk_list_del(&e->lru);
			sk_list_add_tail(&b->remote->lru, &e->lru);
			rc = sk_segment_read(e->cached, offset, max_bytes,
					     min_one, out);
			if (rc != -ENOENT && rc != -ENODATA)
				return rc;
			/* Nothing left in this one: the next segment. */
			offset = e->end;
			if (offset >= local_base(tp))
				return sk_partition_read(tp->log, offset,
							 max_bytes, min_one,
							 out);
			i++;
			continue;
		case RC_LOADING:
			return -EAGAIN;
		case RC_FAILED:
		case RC_NONE:
			/* Not cached, or failed long enough ago: (re)load. */
			if (b->remote->stopped ||
			    (e->state == RC_FAILED &&
			     sk_mono_ms() < e->failed_until))
				return -EIO;
			load_start(rp, e);
			return e->state == RC_LOADING ? -EAGAIN : -EIO;
		}
	}
	return -ERANGE;
}

int64_t sk_remote_start_offset(struct sk_broker *b, struct sk_tpart *tp)
{
	int64_t local = sk_partition_start_offset(tp->log);
	struct sk_remote_part *rp = tp->remote;

	if (!b->remote || !rp || rp->n == 0 ||
	    rp->segs[0]->base >= local_base(tp) || local > local_base(tp))
		return local;
	return SK_MAX(rp->start, rp->segs[0]->base);
}

void sk_remote_delete_before(struct sk_broker *b, struct sk_tpart *tp,
			     int64_t offset)
{
	struct sk_remote_part *rp = tp->remote;
	size_t k = 0;

	if (!b->remote || !rp || offset <= rp->start)
		return;
	rp->start = offset;
	while (k < rp->n && rp->segs[k]->end <= offset)
		k++;
	if (k)
		entries_drop(rp, k); /* writes the manifest, start with it */
	else
		manifest_save(rp);
}

int sk_remote_offset_for_time(struct sk_broker *b, struct sk_tpart *tp,
			      int64_t ts, int64_t *offset, int64_t *timestamp)
{
	struct sk_remote_part *rp = tp->remote;
	int64_t lbase;

	if (!b->remote || !rp)
		return sk_partition_offset_for_time(tp->log, ts, offset,
						    timestamp);
	lbase = local_base(tp);
	if (sk_partition_start_offset(tp->log) > lbase)
		lbase = 0; /* DeleteRecords went past the remote data */
	for (size_t i = 0; i < rp->n && rp->segs[i]->base < lbase; i++) {
		struct rseg *e = rp->segs[i];

		if (e->max_ts < ts || e->end <= rp->start)
			continue;
		if (e->state == RC_READY) {
			if (sk_segment_find_time(e->cached, ts,
						 SK_MAX(e->base, rp->start),
						 offset, timestamp) == 0)
				return 0;
			continue;
		}
		if (e->state == RC_NONE ||
		    (e->state == RC_FAILED && sk_mono_ms() >= e->failed_until))
			load_start(rp, e);
		/*
		 * The answer is in the segment's records, which are not here
		 * yet: a retriable error (KAFKA_STORAGE_ERROR) while they
		 * download, and the client's retry finds them cached.
		 */
		return e->state == RC_FAILED ? -EIO : -EAGAIN;
	}
	return sk_partition_offset_for_time(tp->log, ts, offset, timestamp);
}

/* ------------------------------------------------------------------ */
/* Sweeping orphaned objects */

/*
 * An object nobody references: left by a copy interrupted between its
 * upload and the manifest write (a crash, a failed manifest write whose
 * copy is redone under a new key), or by a delete that failed. Every
 * remote.log.orphan.sweep.interval.ms each partition's objects are listed
 * (one partition per periodic run, one list or delete in flight at a
 * time), and those of segments that neither the manifest, nor the deletes
 * waiting for it, nor the copy in flight name, and whose key says they
 * were created more than remote.log.orphan.grace.ms ago, are deleted.
 */
struct sweep {
	struct sk_remote_part *rp;
	char **keys;	/* segment keys of orphans, owned */
	uint8_t *masks; /* bit f: the object key + suffixes[f] exists */
	int64_t *ages;	/* ms */
	size_t n, cap, next;
	struct skald_tier_segment ts;
	struct skald_tier_file files[N_FILES];
	const struct skald_tier_file *fp[N_FILES];
};

static void sweep_next(struct sweep *sw);

/*
 * Split an object key "TOPIC/P/BASE-TIMESEQ.suffix" of rp into its
 * segment key (into seg), base offset, creation time and suffix index.
 * false for anything else, which the sweep leaves alone.
 */
static bool orphan_parse(const struct sk_remote_part *rp, const char *key,
			 char *seg, size_t cap, int64_t *base, int64_t *ms,
			 int *suffix)
{
	const char *name = strrchr(key, '/'), *dot, *dash;
	size_t dir = name ? (size_t)(name - key) + 1 : 0, hex;
	char prefix[300], digits[32];
	char *end;

	snprintf(prefix, sizeof(prefix), "%s/%d/", rp->topic, rp->partition);
	if (!name || dir != strlen(prefix) || strncmp(key, prefix, dir) != 0)
		return false;
	name++;
	dot = strchr(name, '.');
	dash = strchr(name, '-');
	if (!dot || !dash || dash - name != 20 || dash > dot)
		return false;
	*suffix = -1;
	for (int f = 0; f < N_FILES; f++)
		if (strcmp(dot, suffixes[f]) == 0)
			*suffix = f;
	hex = (size_t)(dot - dash - 1);
	if (*suffix < 0 || hex < 5 || hex - 4 >= sizeof(digits) ||
	    (size_t)(dot - key) >= cap)
		return false;
	for (const char *p = name; p < dash; p++)
		if (*p < '0' || *p > '9')
			return false;
	for (const char *p = dash + 1; p < dot; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	*base = strtoll(name, NULL, 10);
	memcpy(digits, dash + 1, hex - 4);
	digits[hex - 4] = '\0';
	*ms = (int64_t)strtoull(digits, &end, 16);
	memcpy(seg, key, (size_t)(dot - key));
	seg[dot - key] = '\0';
	return true;
}

/* Whether segment key seg (at base) is named by rp or being copied. */
static bool referenced(const struct sk_remote_part *rp, const char *seg,
		       int64_t base)
{
	const struct rseg *e = entry_at(rp, base);

	if ((e && strcmp(e->key, seg) == 0) ||
	    (rp->copy_key && strcmp(rp->copy_key, seg) == 0))
		return true;
	for (size_t i = 0; i < rp->n_drops; i++)
		if (strcmp(rp->drops[i]->key, seg) == 0)
			return true;
	return false;
}

static void sweep_finish(struct sweep *sw)
{
	struct sk_remote_part *rp = sw->rp;

	rp->r->sweeping = false;
	rp->swept_gen = rp->r->sweep_gen;
	for (size_t i = 0; i < sw->n; i++)
		free(sw->keys[i]);
	free(sw->keys);
	free(sw->masks);
	free(sw->ages);
	free(sw);
	rp_put(rp);
}

static void sweep_listed(void *arg, const struct sk_tier_result *res)
{
	struct sweep *sw = arg;
	struct sk_remote_part *rp = sw->rp;
	struct sk_remote *r = rp->r;
	int64_t now = sk_now_ms();
	char seg[1100];

	r->inflight--;
	if (res->rc) {
		if (res->rc != -ESHUTDOWN)
			sk_warn("remote: topic %s partition %d: cannot list "
				"its objects in %s for the orphan sweep: %s%s%s",
				rp->topic, rp->partition, sk_tier_name(r->tier),
				strerror(-res->rc), res->msg[0] ? ": " : "",
				res->msg);
		sweep_finish(sw);
		return;
	}
	for (size_t i = 0; i < res->n && rp->tp; i++) {
		int64_t base, ms;
		int f;
		size_t k = 0;

		if (!orphan_parse(rp, res->keys[i], seg, sizeof(seg), &base,
				  &ms, &f) ||
		    now - ms < r->b->cfg.remote_orphan_grace_ms ||
		    referenced(rp, seg, base))
			continue;
		while (k < sw->n && strcmp(sw->keys[k], seg) != 0)
			k++;
		if (k == sw->n) {
			if (sw->n == sw->cap) {
				sw->cap = sw->cap ? 2 * sw->cap : 8;
				sw->keys = sk_xrealloc(
					sw->keys, sw->cap * sizeof(*sw->keys));
				sw->masks = sk_xrealloc(
					sw->masks,
					sw->cap * sizeof(*sw->masks));
				sw->ages = sk_xrealloc(
					sw->ages, sw->cap * sizeof(*sw->ages));
			}
			sw->keys[k] = sk_xstrdup(seg);
			sw->masks[k] = 0;
			sw->ages[k] = now - ms;
			sw->n++;
		}
		sw->masks[k] |= (uint8_t)(1u << f);
	}
	sweep_next(sw);
}

static void sweep_removed(void *arg, const struct sk_tier_result *res)
{
	struct sweep *sw = arg;
	struct sk_remote_part *rp = sw->rp;
	struct sk_remote *r = rp->r;
	size_t i = sw->next++;

	r->inflight--;
	if (res->rc) {
		if (res->rc != -ESHUTDOWN)
			sk_warn("remote: topic %s partition %d: cannot delete "
				"orphaned objects of %s from %s: %s%s%s; tried "
				"again next sweep",
				rp->topic, rp->partition, sw->keys[i],
				sk_tier_name(r->tier), strerror(-res->rc),
				res->msg[0] ? ": " : "", res->msg);
	} else {
		sk_metric_add(r->m_orphans, 1);
		sk_info("remote: topic %s partition %d: deleted orphaned "
			"objects of %s from %s (no manifest names them; "
			"created %" PRId64 " s ago)",
			rp->topic, rp->partition, sw->keys[i],
			sk_tier_name(r->tier), sw->ages[i] / 1000);
	}
	sweep_next(sw);
}

/* Delete the next orphan, or finish. */
static void sweep_next(struct sweep *sw)
{
	struct sk_remote_part *rp = sw->rp;
	struct sk_remote *r = rp->r;
	uint32_t n = 0;

	/* Checked again: the manifest may name it by now. */
	while (sw->next < sw->n && rp->tp && !r->stopped) {
		const char *key = sw->keys[sw->next];
		int64_t base = strtoll(strrchr(key, '/') + 1, NULL, 10);

		if (!referenced(rp, key, base))
			break;
		sw->next++;
	}
	if (sw->next >= sw->n || !rp->tp || r->stopped) {
		sweep_finish(sw);
		return;
	}
	for (int f = 0; f < N_FILES; f++) {
		if (!(sw->masks[sw->next] & (1u << f)))
			continue;
		sw->files[f].suffix = suffixes[f];
		sw->files[f].fd = -1;
		sw->fp[n++] = &sw->files[f];
	}
	sw->ts.size = sizeof(sw->ts);
	sw->ts.n_files = n;
	sw->ts.key = sw->keys[sw->next];
	sw->ts.topic = rp->topic;
	sw->ts.partition = rp->partition;
	sw->ts.base_offset = strtoll(strrchr(sw->ts.key, '/') + 1, NULL, 10);
	sw->ts.end_offset = sw->ts.base_offset;
	sw->ts.max_timestamp = -1;
	sw->ts.files = sw->fp;
	r->inflight++;
	sk_tier_remove(r->tier, &sw->ts, sweep_removed, sw);
}

/* From the periodic task: sweep the next partition of the round. */
static void sweep_tick(struct sk_remote *r)
{
	int64_t every = r->b->cfg.remote_sweep_interval_ms, now = sk_mono_ms();
	struct sk_remote_part *pick = NULL;
	struct sweep *sw;
	char prefix[300];

	if (every <= 0 || r->sweeping || r->stopped)
		return;
	if (!r->sweep_at)
		r->sweep_at = now + every;
	if (now < r->sweep_at)
		return;
	for (struct sk_list *l = r->parts.next; l != &r->parts; l = l->next) {
		struct sk_remote_part *rp =
			sk_container_of(l, struct sk_remote_part, link);

		if (rp->swept_gen == r->sweep_gen || !rp->tp)
			continue;
		if (rp->keep_orphans) {
			if (rp->swept_gen == 0)
				sk_warn("remote: topic %s partition %d: not "
					"swept for orphaned objects while %s/"
					"%s.bad exists (the segments it names "
					"may be needed)",
					rp->topic, rp->partition, rp->dir,
					SK_REMOTE_MANIFEST);
			rp->swept_gen = r->sweep_gen;
			continue;
		}
		pick = rp;
		break;
	}
	if (!pick) {
		r->sweep_gen++;
		r->sweep_at = now + every;
		return;
	}
	sw = sk_xcalloc(1, sizeof(*sw));
	sw->rp = pick;
	pick->refs++;
	r->sweeping = true;
	r->inflight++;
	snprintf(prefix, sizeof(prefix), "%s/%d/", pick->topic,
		 pick->partition);
	sk_tier_list(r->tier, prefix, sweep_listed, sw);
}

/* ------------------------------------------------------------------ */
/* The periodic task */

void sk_remote_run(struct sk_remote *r)
{
	const struct sk_topics *ts = &r->b->topics;
	int64_t now = sk_now_ms();
	size_t lag = 0;

	if (r->stopped)
		return;
	for (struct sk_hnode *h = sk_hmap_first(&ts->map); h;
	     h = sk_hmap_next(&ts->map, h)) {
		struct sk_topic *t = sk_container_of(h, struct sk_topic, hnode);

		if (t->cfg.remote_storage_enable && !enabled(t) &&
		    t->n_parts > 0) {
			/* As Kafka: no tiering of compacted topics. */
			struct sk_remote_part *rp = attach(r, t->parts[0]);

			if (!rp->warned_compact)
				sk_warn("remote: topic %s is compacted; "
					"remote.storage.enable is ignored for "
					"it",
					t->name);
			rp->warned_compact = true;
		}
		for (int32_t p = 0; p < t->n_parts; p++) {
			struct sk_remote_part *rp = t->parts[p]->remote;

			if (enabled(t))
				rp = attach(r, t->parts[p]);
			if (!rp)
				continue;
			if (rp->write_again && !rp->writing) {
				rp->write_again = false;
				manifest_save(rp);
			}
			if (!enabled(t))
				continue;
			lag += copy_next(rp);
			local_retention(rp, now);
		}
	}
	sk_metric_set(r->m_lag, (double)lag);
	sweep_tick(r);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	sk_remote_run(sk_container_of(w, struct sk_remote, timer));
}

static struct sk_metric *metric(struct sk_broker *b, enum sk_metric_type type,
				const char *name, const char *help)
{
	return sk_metrics_get(b->metrics, type, name, help, NULL, 0, NULL, 0,
			      NULL);
}

int sk_remote_new(struct sk_remote **out, struct sk_broker *b,
		  struct sk_tier *tier, struct sk_err *err)
{
	struct sk_remote *r = sk_xcalloc(1, sizeof(*r));
	const struct sk_topics *ts = &b->topics;
	double every;
	int rc;

	r->b = b;
	r->tier = tier;
	sk_list_init(&r->lru);
	sk_list_init(&r->parts);
	r->cache_root = sk_xasprintf("%s/remote-cache", b->cfg.log_dir);
	/* Left by the last run: nothing in it is known to be whole. */
	sk_rmtree(r->cache_root);
	rc = sk_mkdirs(r->cache_root, err);
	if (rc) {
		free(r->cache_root);
		free(r);
		return rc;
	}
	r->pool = sk_pool_new(b->loop, 2, "remote");
	r->m_copied = metric(b, SK_METRIC_COUNTER,
			     "skald_remote_segments_copied_total",
			     "Segments copied to the storage tier");
	r->m_copy_bytes =
		metric(b, SK_METRIC_COUNTER, "skald_remote_bytes_copied_total",
		       "Bytes copied to the storage tier");
	r->m_copy_failures =
		metric(b, SK_METRIC_COUNTER, "skald_remote_copy_failures_total",
		       "Failed copies to the storage tier");
	r->m_deleted = metric(b, SK_METRIC_COUNTER,
			      "skald_remote_segments_deleted_total",
			      "Segments deleted from the storage tier");
	r->m_local_deleted = metric(b, SK_METRIC_COUNTER,
				    "skald_remote_local_segments_removed_total",
				    "Local copies removed once in the tier");
	r->m_reads =
		metric(b, SK_METRIC_COUNTER, "skald_remote_segments_read_total",
		       "Segments downloaded from the storage tier");
	r->m_read_failures =
		metric(b, SK_METRIC_COUNTER, "skald_remote_read_failures_total",
		       "Failed downloads from the storage tier");
	r->m_cache_bytes =
		metric(b, SK_METRIC_GAUGE, "skald_remote_cache_bytes",
		       "Bytes of downloaded segments cached");
	r->m_lag = metric(b, SK_METRIC_GAUGE, "skald_remote_copy_lag_segments",
			  "Closed segments not yet copied to the tier");
	r->m_orphans = metric(b, SK_METRIC_COUNTER,
			      "skald_remote_orphans_deleted_total",
			      "Orphaned segments deleted from the tier");
	r->sweep_gen = 1;
	/* Partitions with data in the tier, whatever their config now. */
	for (struct sk_hnode *h = sk_hmap_first(&ts->map); h;
	     h = sk_hmap_next(&ts->map, h)) {
		struct sk_topic *t = sk_container_of(h, struct sk_topic, hnode);

		for (int32_t p = 0; p < t->n_parts; p++) {
			char *path = sk_xasprintf(
				"%s/%s", sk_partition_dir(t->parts[p]->log),
				SK_REMOTE_MANIFEST);

			if (enabled(t) || access(path, F_OK) == 0)
				attach(r, t->parts[p]);
			free(path);
		}
	}
	every = (double)b->cfg.remote_task_interval_ms / 1000.0;
	ev_timer_init(&r->timer, on_timer, every, every);
	ev_timer_start(b->loop, &r->timer);
	sk_info("remote: tiered storage on %s, checked every %" PRId64 " ms, "
		"cache of %" PRId64 " bytes in %s",
		sk_tier_name(tier), b->cfg.remote_task_interval_ms,
		b->cfg.remote_cache_bytes, r->cache_root);
	*out = r;
	return 0;
}

int sk_remote_check_untiered(struct sk_broker *b)
{
	const struct sk_topics *ts = &b->topics;
	int warned = 0;

	for (struct sk_hnode *h = sk_hmap_first(&ts->map); h;
	     h = sk_hmap_next(&ts->map, h)) {
		struct sk_topic *t = sk_container_of(h, struct sk_topic, hnode);
		int32_t with = 0, first = -1;

		for (int32_t p = 0; p < t->n_parts; p++) {
			char *path = sk_xasprintf(
				"%s/%s", sk_partition_dir(t->parts[p]->log),
				SK_REMOTE_MANIFEST);

			if (access(path, F_OK) == 0 && with++ == 0)
				first = p;
			free(path);
		}
		if (with)
			sk_warn("remote: topic %s has data in a storage tier "
				"(%d of its %d partitions have a %s, the "
				"first partition %d) but storage.tier is not "
				"set: reads below the local start fail and "
				"retention does not delete that data; set "
				"storage.tier to the plugin that holds it",
				t->name, with, t->n_parts, SK_REMOTE_MANIFEST,
				first);
		else if (t->cfg.remote_storage_enable)
			sk_warn("remote: topic %s has remote.storage.enable "
				"but storage.tier is not set: its segments "
				"stay local",
				t->name);
		warned += with || t->cfg.remote_storage_enable;
	}
	return warned;
}

void sk_remote_stop(struct sk_remote *r)
{
	if (!r)
		return;
	/* No new copy or download; those under way finish. */
	r->stopped = true;
	ev_timer_stop(r->b->loop, &r->timer);
}

void sk_remote_free(struct sk_remote *r)
{
	if (!r)
		return;
	sk_remote_stop(r);
	/* Jobs finish here; their completions see stopped and tidy up. */
	sk_pool_free(r->pool);
	r->pool = NULL;
	/* Tier operations they may still have had: their callbacks run. */
	sk_plugins_drain(r->b->plugins, 10000);
	if (r->inflight) {
		sk_warn("remote: %ld operations never completed; their state "
			"is kept",
			r->inflight);
		return;
	}
	while (!sk_list_empty(&r->parts)) {
		struct sk_remote_part *rp =
			sk_list_first(&r->parts, struct sk_remote_part, link);

		if (rp->tp) {
			rp->tp->remote = NULL;
			rp->tp = NULL;
		}
		/* Dropped entries waiting for a manifest write: never now. */
		rp->refs = 1;
		rp_put(rp);
	}
	free(r->cache_root);
	free(r);
}
