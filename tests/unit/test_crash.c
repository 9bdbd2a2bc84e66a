/*
 * Power loss, simulated (issue 4): the partition log runs on the test I/O
 * layer (io_shim.h), which at a chosen operation "crashes" the machine and
 * then rewrites the files to what a strict POSIX file system keeps: each
 * file as of its last fsync, each directory as of its last directory
 * fsync, or a random prefix of what came after, torn.
 *
 * A deterministic workload drives three partitions (small segments, so
 * they roll often) the way the broker does: interleaved appends from
 * "concurrent producers", group-commit rounds (sk_partition_sync_begin,
 * more appends while the sync "runs", sk_log_sync_run, sk_log_sync_end),
 * recovery checkpoint rounds, DeleteRecords, size retention, and clean
 * close/reopen. A dry run counts its I/O operations; then for every crash
 * point (or an even sample, CRASH_POINTS=n, 0 for all) the workload runs
 * again from an empty directory up to that point, power is lost, and the
 * partitions are reopened (sometimes crashing again during recovery) and
 * checked:
 *   - every batch acknowledged as durable (a sync covering it returned 0,
 *     or a clean close finished) is present, byte for byte;
 *   - offsets are contiguous from the log start to the end, every batch
 *     served passes its CRC and is one the workload wrote;
 *   - the log start did not move back past what was made durable
 *     (DeleteRecords, checkpoints), nor past anything ever deleted;
 *   - nothing is damaged, and appends work after recovery.
 * Then the recovery checkpoint's two paths on their own: a clean close
 * is reopened without a scan, a crash after a checkpoint scans only what
 * was written after it, and without a checkpoint everything is scanned.
 */
#include "batch.h"
#include "crc32c.h"
#include "io_shim.h"
#include "log.h"
#include "say.h"
#include "tap.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPART	    3
#define MAX_BATCHES 4096

/* A batch the workload appended, as stored (offsets assigned). */
struct bat {
	int64_t base;
	int64_t end; /* offset after its last record */
	uint8_t *bytes;
	size_t len;
};

/* One partition and what is known about it. */
struct part {
	char *dir;
	struct sk_log_config cfg;
	struct sk_partition *p;
	struct bat b[MAX_BATCHES]; /* appended, in offset order */
	int nb;
	int64_t acked_end;     /* every offset below is durable */
	int64_t durable_start; /* recovery may not start below this */
	int64_t max_start;     /* nor above the highest start seen */
};

static struct part parts[NPART];
static char root[256];
static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}

/* clang-format off */
static const struct sk_log_config cfgs[NPART] = {
	{ .segment_bytes = 1536,
	  .segment_ms = 1ll << 40,
	  .index_interval_bytes = 200 },
	{ .segment_bytes = 4096,
	  .segment_ms = 1ll << 40,
	  .index_interval_bytes = 512 },
	{ .segment_bytes = 1 << 20,
	  .segment_ms = 1ll << 40,
	  .index_interval_bytes = 4096 },
};
/* clang-format on */

static void model_reset(struct part *pt)
{
	for (int i = 0; i < pt->nb; i++)
		free(pt->b[i].bytes);
	pt->nb = 0;
	pt->acked_end = 0;
	pt->durable_start = 0;
	pt->max_start = 0;
}

/* Forget the batches at or past end (recovery did not keep them). */
static void model_cut(struct part *pt, int64_t end)
{
	while (pt->nb > 0 && pt->b[pt->nb - 1].base >= end)
		free(pt->b[--pt->nb].bytes);
}

static void note_start(struct part *pt)
{
	int64_t s = sk_partition_start_offset(pt->p);

	if (s > pt->max_start)
		pt->max_start = s;
}

/* Append one batch of 1-4 records with random values. */
static bool append_one(struct part *pt)
{
	struct sk_record_in recs[4];
	uint8_t vals[4][200];
	struct sk_buf buf = { 0 };
	int n = 1 + (int)(rnd() % 4);
	struct sk_err err;
	int64_t base;
	int rc;

	if (pt->nb == MAX_BATCHES)
		return false;
	for (int j = 0; j < n; j++) {
		size_t len = rnd() % sizeof(vals[j]);

		for (size_t i = 0; i < len; i++)
			vals[j][i] = (uint8_t)rnd();
		recs[j] = (struct sk_record_in){ NULL,
						 -1,
						 vals[j],
						 (int32_t)len,
						 1700000000000ll + pt->nb,
						 NULL,
						 0 };
	}
	sk_batch_build(&buf, 0, recs, (size_t)n, 0, -1, -1, -1);
	rc = sk_partition_append(pt->p, buf.data, buf.len, &base, &err);
	if (rc == 0) {
		struct bat *b = &pt->b[pt->nb++];

		b->base = base;
		b->end = base + n;
		b->len = buf.len;
		b->bytes = malloc(buf.len);
		memcpy(b->bytes, buf.data, buf.len);
	}
	sk_buf_free(&buf);
	return rc == 0;
}

static struct part *pick(void)
{
	return &parts[rnd() % NPART];
}

/*
 * A group-commit round: begin on every partition, appends while the
 * sync "runs", run, end. With ckpt, the recovery checkpoint round.
 */
static void round_(bool ckpt)
{
	struct sk_log_sync s[NPART];
	bool have[NPART];
	int64_t end[NPART], start[NPART];

	for (int i = 0; i < NPART; i++) {
		end[i] = sk_partition_end_offset(parts[i].p);
		start[i] = sk_partition_start_offset(parts[i].p);
		have[i] =
			ckpt ? sk_partition_checkpoint_begin(parts[i].p, &s[i])
			     : sk_partition_sync_begin(parts[i].p, &s[i]);
	}
	for (int k = (int)(rnd() % 4); k > 0; k--)
		append_one(pick());
	for (int i = 0; i < NPART; i++) {
		if (!have[i])
			continue;
		if (sk_log_sync_run(&s[i]) == 0) {
			if (end[i] > parts[i].acked_end)
				parts[i].acked_end = end[i];
			if (s[i].ckpt_dir && s[i].ckpt_rc == 0 &&
			    start[i] > parts[i].durable_start)
				parts[i].durable_start = start[i];
		}
		sk_log_sync_end(&s[i]);
	}
	for (int i = 0; i < NPART; i++)
		sk_partition_check_sync(parts[i].p);
}

static bool open_part(struct part *pt)
{
	struct sk_err err;

	pt->p = NULL;
	if (sk_partition_open(&pt->p, pt->dir, &pt->cfg, &err) < 0) {
		pt->p = NULL;
		return false;
	}
	return true;
}

/*
 * A clean close and reopen. A finished close makes every batch durable;
 * not its checkpoint (the broker syncs the file system after closing all
 * partitions), so the start it records is not counted on.
 */
static bool close_reopen(struct part *pt)
{
	int64_t end = sk_partition_end_offset(pt->p);

	sk_partition_close(pt->p);
	pt->p = NULL;
	if (io_shim_crashed())
		return false;
	pt->acked_end = end;
	return open_part(pt);
}

/* The workload; stops at the crash. Returns false if it crashed. */
static bool workload(uint64_t seed, int steps)
{
	rng = seed;
	for (int i = 0; i < NPART; i++) {
		parts[i].cfg = cfgs[i];
		if (!open_part(&parts[i]))
			return false;
	}
	for (int step = 0; step < steps; step++) {
		struct part *pt = pick();
		unsigned r = (unsigned)(rnd() % 100);

		if (io_shim_crashed())
			return false;
		if (r < 50) {
			append_one(pt);
		} else if (r < 62) {
			for (int k = 2 + (int)(rnd() % 8); k > 0; k--)
				append_one(pt);
		} else if (r < 80) {
			round_(false);
		} else if (r < 88) {
			round_(true);
		} else if (r < 91) {
			int64_t s = sk_partition_start_offset(pt->p);
			int64_t to =
				pt->acked_end > s
					? s + 1 +
						  (int64_t)(rnd() %
							    (uint64_t)(pt->acked_end -
								       s))
					: s;
			struct sk_err err;

			/* Answered only if the machine is still up. */
			if (to > s &&
			    sk_partition_delete_before(pt->p, to, &err) == 0 &&
			    !io_shim_crashed() && to > pt->durable_start)
				pt->durable_start = to;
		} else if (r < 94) {
			int64_t del;

			sk_partition_retention(pt->p, sk_now_ms(), -1,
					       pt->cfg.segment_bytes * 3, &del);
		} else if (r < 97) {
			if (!close_reopen(pt))
				return false;
		}
		for (int i = 0; i < NPART; i++)
			if (parts[i].p)
				note_start(&parts[i]);
	}
	return !io_shim_crashed();
}

/* Close whatever is open (after a crash: nothing reaches the disk). */
static void close_all(void)
{
	for (int i = 0; i < NPART; i++) {
		sk_partition_close(parts[i].p);
		parts[i].p = NULL;
	}
}

static void fresh_root(void)
{
	sk_rmtree(root);
	if (mkdir(root, 0755) < 0)
		abort();
	for (int i = 0; i < NPART; i++) {
		free(parts[i].dir);
		parts[i].dir = sk_xasprintf("%s/t-%d", root, i);
		model_reset(&parts[i]);
	}
	io_shim_reset(root);
}

static const struct bat *find_bat(const struct part *pt, int64_t base)
{
	int lo = 0, hi = pt->nb;

	while (lo < hi) {
		int mid = (lo + hi) / 2;

		if (pt->b[mid].base < base)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < pt->nb && pt->b[lo].base == base ? &pt->b[lo] : NULL;
}

/*
 * Check a reopened partition against its model (see the top). Returns
 * NULL, or what is wrong.
 */
static const char *check_part(struct part *pt, char *why, size_t cap)
{
	struct sk_partition *p = pt->p;
	int64_t start = sk_partition_start_offset(p);
	int64_t end = sk_partition_end_offset(p), off = start;
	bool first = true;

	why[0] = '\0';
	if (sk_partition_damaged(p))
		return "damaged";
	if (end < pt->acked_end) {
		snprintf(why, cap, "end %lld below the acknowledged %lld",
			 (long long)end, (long long)pt->acked_end);
		return why;
	}
	if (start < pt->durable_start || start > SK_MAX(pt->max_start, 0)) {
		snprintf(why, cap, "start %lld outside [%lld, %lld]",
			 (long long)start, (long long)pt->durable_start,
			 (long long)pt->max_start);
		return why;
	}
	while (off < end) {
		struct sk_log_slice s;
		uint8_t *data;
		size_t at = 0, len_all;
		int rc = sk_partition_read(p, off, 1 << 20, true, &s);

		if (rc < 0 || s.len == 0) {
			snprintf(why, cap, "read at %lld: %d", (long long)off,
				 rc);
			return why;
		}
		len_all = s.len;
		data = malloc(len_all);
		if (pread(sk_segment_fd(s.seg), data, len_all, s.pos) !=
		    (ssize_t)len_all)
			abort();
		sk_log_slice_release(&s);
		while (at < len_all) {
			struct sk_batch_hdr h;
			const struct bat *b;
			size_t len;

			if (sk_batch_parse_header(data + at, len_all - at, &h) <
				    0 ||
			    (len = sk_batch_size(&h)) > len_all - at) {
				snprintf(why, cap, "unparsable batch at %lld",
					 (long long)off);
				break;
			}
			b = find_bat(pt, h.base_offset);
			if (!sk_batch_crc_ok(data + at, len))
				snprintf(why, cap, "CRC fails at %lld",
					 (long long)h.base_offset);
			else if (first ? h.base_offset > off
				       : h.base_offset != off)
				snprintf(why, cap,
					 "batch at %lld where %lld "
					 "was next",
					 (long long)h.base_offset,
					 (long long)off);
			else if (!b || b->len != len ||
				 memcmp(b->bytes, data + at, len) != 0)
				snprintf(why, cap,
					 "batch at %lld is not the "
					 "one written",
					 (long long)h.base_offset);
			else
				why[0] = '\0';
			if (why[0])
				break;
			first = false;
			off = h.base_offset + h.last_offset_delta + 1;
			at += len;
		}
		free(data);
		if (why[0])
			return why;
	}
	if (off != end) {
		snprintf(why, cap, "read ended at %lld, end is %lld",
			 (long long)off, (long long)end);
		return why;
	}
	return NULL;
}

/* Reopen every partition; crash again at op crash2 if not 0. */
static bool recover_all(uint64_t crash2)
{
	if (crash2)
		io_shim_crash_at(io_shim_ops() + crash2);
	for (int i = 0; i < NPART; i++) {
		if (!open_part(&parts[i]) || io_shim_crashed()) {
			close_all();
			return false;
		}
	}
	io_shim_crash_at(0);
	return true;
}

/*
 * One trial: the workload up to crash point k, power loss, recovery
 * (crashing during it when crash2), checks. Returns NULL or the failure.
 */
static const char *trial(uint64_t seed, int steps, uint64_t k,
			 enum io_loss mode, uint64_t crash2, char *why,
			 size_t cap)
{
	const char *bad = NULL;

	fresh_root();
	io_shim_crash_at(io_shim_ops() + k);
	workload(seed, steps);
	close_all();
	io_shim_power_loss(mode, seed ^ k);
	if (crash2 && !recover_all(crash2))
		io_shim_power_loss(mode, seed ^ k ^ crash2);
	else if (crash2)
		close_all(); /* recovered before the second crash point */
	if (!recover_all(0))
		return "reopen failed";
	for (int i = 0; i < NPART && !bad; i++) {
		bad = check_part(&parts[i], why, cap);
		if (bad) {
			char tmp[256];

			snprintf(tmp, sizeof(tmp), "%s (partition %d)", bad, i);
			snprintf(why, cap, "%s", tmp);
			bad = why;
		}
	}
	/* Appends work after recovery, and survive a clean reopen. */
	for (int i = 0; i < NPART && !bad; i++) {
		struct part *pt = &parts[i];

		model_cut(pt, sk_partition_end_offset(pt->p));
		if (!append_one(pt))
			bad = "append after recovery failed";
		else if (!close_reopen(pt))
			bad = "clean reopen after recovery failed";
		else
			bad = check_part(pt, why, cap);
	}
	close_all();
	return bad;
}

static void walk_crash_points(uint64_t seed, int steps, uint64_t want)
{
	uint64_t total, step, failures = 0, runs = 0;
	char why[256];
	const char *first = NULL;
	uint64_t first_k = 0;

	/* The dry run: how many operations to crash at. */
	fresh_root();
	total = io_shim_ops();
	workload(seed, steps);
	close_all();
	total = io_shim_ops() - total;
	step = want && total > want ? total / want : 1;
	diag("seed %llu: %llu I/O operations, every %llu-th a crash point",
	     (unsigned long long)seed, (unsigned long long)total,
	     (unsigned long long)step);
	for (uint64_t k = 1; k <= total; k += step) {
		enum io_loss mode = (enum io_loss)(k % 3);
		uint64_t crash2 = k % 7 == 0 ? 1 + (k / 7) % 40 : 0;
		const char *bad;

		why[0] = '\0';
		bad = trial(seed, steps, k, mode, crash2, why, sizeof(why));
		runs++;
		if (bad) {
			failures++;
			if (!first) {
				first = bad == why ? strdup(why) : bad;
				first_k = k;
			}
		}
	}
	ok(failures == 0,
	   "seed %llu: %llu crash points, all recover with every "
	   "acknowledged batch",
	   (unsigned long long)seed, (unsigned long long)runs);
	if (first)
		diag("  %llu failures; first at crash point %llu: %s",
		     (unsigned long long)failures, (unsigned long long)first_k,
		     first);
}

/* ------------------------------------------------------------ paths */

static struct part *one_part(const struct sk_log_config *cfg)
{
	struct part *pt = &parts[0];

	fresh_root();
	pt->cfg = *cfg;
	if (!open_part(pt))
		abort();
	return pt;
}

static int64_t seg_bytes(const struct part *pt)
{
	return sk_partition_size_bytes(pt->p);
}

static void test_checkpoint_paths(void)
{
	const struct sk_log_config cfg = { .segment_bytes = 1 << 20,
					   .segment_ms = 1ll << 40,
					   .index_interval_bytes = 1024 };
	const struct sk_log_recovery *rec;
	struct sk_log_sync s;
	struct part *pt = one_part(&cfg);
	char why[256];
	int64_t tail, size;

	rng = 42;
	for (int i = 0; i < 400; i++)
		append_one(pt);
	size = seg_bytes(pt);
	ok(close_reopen(pt), "clean close and reopen");
	rec = sk_partition_recovery(pt->p);
	ok(rec->checkpoint && rec->clean,
	   "the clean close left a clean checkpoint");
	ok(rec->bytes_scanned <= cfg.index_interval_bytes + 1024 &&
		   rec->bytes_truncated == 0,
	   "reopen scanned %lld of %lld bytes (the last index interval)",
	   (long long)rec->bytes_scanned, (long long)size);
	ok(!check_part(pt, why, sizeof(why)), "everything is there");

	/* A checkpoint round, more appends, then the process dies. */
	ok(!sk_partition_checkpoint_begin(pt->p, &s),
	   "after a clean open the checkpoint is current");
	for (int i = 0; i < 50; i++)
		append_one(pt);
	size = seg_bytes(pt);
	ok(sk_partition_checkpoint_begin(pt->p, &s) &&
		   sk_log_sync_run(&s) == 0 && s.ckpt_rc == 0,
	   "a checkpoint round");
	sk_log_sync_end(&s);
	ok(!sk_partition_checkpoint_begin(pt->p, &s),
	   "a second round with nothing new does nothing");
	for (int i = 0; i < 300; i++)
		append_one(pt);
	tail = seg_bytes(pt) - size;
	io_shim_crash_at(io_shim_ops() + 1); /* nothing more is written */
	close_all();
	io_shim_reset(root); /* the page cache survives a process crash */
	ok(open_part(pt), "reopen after the process crash");
	rec = sk_partition_recovery(pt->p);
	ok(rec->checkpoint && !rec->clean && rec->bytes_scanned >= tail &&
		   rec->bytes_scanned <= tail + cfg.index_interval_bytes + 1024,
	   "recovery scanned %lld bytes for a tail of %lld",
	   (long long)rec->bytes_scanned, (long long)tail);
	pt->acked_end = 0;
	ok(sk_partition_end_offset(pt->p) == pt->b[pt->nb - 1].end &&
		   !check_part(pt, why, sizeof(why)),
	   "and kept every batch of the tail");

	/* The same after a power loss: the tail was never synced. */
	ok(sk_partition_checkpoint_begin(pt->p, &s) && sk_log_sync_run(&s) == 0,
	   "checkpoint");
	sk_log_sync_end(&s);
	size = seg_bytes(pt);
	pt->acked_end = sk_partition_end_offset(pt->p);
	for (int i = 0; i < 300; i++)
		append_one(pt);
	io_shim_crash_at(io_shim_ops() + 1);
	close_all();
	io_shim_power_loss(IO_LOSE_UNSYNCED, 1);
	ok(open_part(pt), "reopen after a power loss");
	rec = sk_partition_recovery(pt->p);
	ok(rec->checkpoint &&
		   rec->bytes_scanned <= cfg.index_interval_bytes + 1024,
	   "nothing past the checkpoint survived, nothing much to scan "
	   "(%lld bytes)",
	   (long long)rec->bytes_scanned);
	model_cut(pt, sk_partition_end_offset(pt->p));
	ok(sk_partition_end_offset(pt->p) == pt->acked_end &&
		   !check_part(pt, why, sizeof(why)),
	   "the log ends at the checkpoint");

	/* Without a checkpoint, every byte is checked. */
	close_all();
	{
		char *ck = sk_xasprintf("%s/recovery.checkpoint", pt->dir);

		ok(unlink(ck) == 0, "checkpoint removed");
		free(ck);
	}
	io_shim_reset(root);
	ok(open_part(pt), "reopen without a checkpoint");
	rec = sk_partition_recovery(pt->p);
	ok(!rec->checkpoint && rec->bytes_scanned == seg_bytes(pt),
	   "scanned all %lld bytes", (long long)rec->bytes_scanned);
	close_all();
}

/* Torn segments after the checkpoint are cut, later ones deleted. */
static void test_cut_closed(void)
{
	const struct sk_log_config cfg = { .segment_bytes = 2048,
					   .segment_ms = 1ll << 40,
					   .index_interval_bytes = 256 };
	const struct sk_log_recovery *rec;
	struct part *pt = one_part(&cfg);
	struct sk_log_sync s;
	char why[256];
	size_t nseg;

	rng = 7;
	for (int i = 0; i < 40; i++)
		append_one(pt);
	ok(sk_partition_checkpoint_begin(pt->p, &s) && sk_log_sync_run(&s) == 0,
	   "checkpoint");
	sk_log_sync_end(&s);
	pt->acked_end = sk_partition_end_offset(pt->p);
	nseg = sk_partition_segment_count(pt->p);
	/* Rolls with nothing synced: the closed segments are unsynced. */
	for (int i = 0; i < 60; i++)
		append_one(pt);
	ok(sk_partition_segment_count(pt->p) > nseg + 2, "rolled since");
	io_shim_crash_at(io_shim_ops() + 1);
	close_all();
	/* Directory entries kept, file contents torn. */
	io_shim_power_loss(IO_KEEP_PREFIX, 3);
	ok(open_part(pt), "reopen");
	rec = sk_partition_recovery(pt->p);
	model_cut(pt, sk_partition_end_offset(pt->p));
	ok(!sk_partition_damaged(pt->p) &&
		   sk_partition_end_offset(pt->p) >= pt->acked_end &&
		   !check_part(pt, why, sizeof(why)),
	   "not damaged, acknowledged data there, contiguous (cut %lld "
	   "bytes, deleted %d segments)",
	   (long long)rec->bytes_truncated, rec->segments_dropped);
	ok(append_one(pt) && close_reopen(pt) &&
		   !check_part(pt, why, sizeof(why)),
	   "appends continue");
	close_all();
}

int main(void)
{
	const char *env = getenv("CRASH_POINTS");
	const char *shm = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	uint64_t want = env ? strtoull(env, NULL, 10) : 400;

	sk_say_setup((enum sk_say_level)(SK_SAY_ERROR + 1), SK_SAY_TEXT);
	snprintf(root, sizeof(root), "%s/sk_test_crash_%d", shm, (int)getpid());
	if (getenv("CRASH_ONE")) {
		/* CRASH_ONE=seed,steps,k,mode,crash2: one trial, logged. */
		unsigned long long a[5] = { 0 };
		char why[256] = "";
		const char *bad;

		sscanf(getenv("CRASH_ONE"), "%llu,%llu,%llu,%llu,%llu", &a[0],
		       &a[1], &a[2], &a[3], &a[4]);
		sk_say_setup(SK_SAY_DEBUG, SK_SAY_TEXT);
		bad = trial(a[0], (int)a[1], a[2], (enum io_loss)a[3], a[4],
			    why, sizeof(why));
		printf("%s\n", bad ? bad : "ok");
		if (!getenv("CRASH_KEEP"))
			sk_rmtree(root);
		return bad != NULL;
	}
	plan(24);

	test_checkpoint_paths();
	test_cut_closed();
	walk_crash_points(1, 120, want);
	walk_crash_points(2, 200, want / 2);
	/* CRASH_SEEDS=n: n more workloads (soak runs; not counted in plan) */
	for (int i = 0;
	     getenv("CRASH_SEEDS") && i < atoi(getenv("CRASH_SEEDS")); i++)
		walk_crash_points(100 + (uint64_t)i, 150 + i % 100, want);

	close_all();
	sk_rmtree(root);
	for (int i = 0; i < NPART; i++) {
		model_reset(&parts[i]);
		free(parts[i].dir);
	}
	io_shim_reset(NULL);
	return check_status();
}
