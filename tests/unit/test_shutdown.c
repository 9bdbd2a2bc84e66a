/*
 * Disk work off the loop thread: the worker pool with a spinning worker
 * (the flusher's), closing many partitions at once on a clean stop
 * (core/shutdown.c), and a partition's offloaded file work: the index
 * files of a rolled segment and the files of removed segments
 * (core/log_offload.c).
 * Every partition lives in a fresh mkdtemp directory under /tmp.
 */
#include "batch.h"
#include "log.h"
#include "pool.h"
#include "shutdown.h"
#include "tap.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct sk_log_config big_cfg = {
	.segment_bytes = 1 << 30,
	.segment_ms = 7 * 24 * 3600 * 1000LL,
	.index_interval_bytes = 4096,
};

static const struct sk_log_config small_cfg = {
	.segment_bytes = 2048,
	.segment_ms = 7 * 24 * 3600 * 1000LL,
	.index_interval_bytes = 256,
};

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* Append one batch of nrec records of 100 B; true on success. */
static bool append1(struct sk_partition *p, int nrec)
{
	struct sk_record_in recs[8];
	uint8_t val[100];
	struct sk_buf b = { 0 };
	struct sk_err err;
	int64_t base;
	int rc;

	memset(val, 'v', sizeof(val));
	for (int j = 0; j < nrec; j++)
		recs[j] =
			(struct sk_record_in){ "k",	 1,    val, sizeof(val),
					       1000 + j, NULL, 0 };
	sk_batch_build(&b, 0, recs, (size_t)nrec, 0, -1, -1, -1);
	rc = sk_partition_append(p, b.data, b.len, &base, &err);
	if (rc < 0)
		diag("append: %s", err.msg);
	sk_buf_free(&b);
	return rc == 0;
}

static struct sk_partition *open_p(const char *dir,
				   const struct sk_log_config *cfg)
{
	struct sk_partition *p = NULL;
	struct sk_err err;

	if (sk_partition_open(&p, dir, cfg, &err) < 0)
		diag("open %s: %s", dir, err.msg);
	return p;
}

/* ---------------------------------------------------------------- pool */

struct tjob {
	struct sk_job job;
	int id;
	int *ran;    /* order of run() calls */
	int *n_ran;  /* worker thread only, then read after done */
	int *n_done; /* loop thread */
};

static void tjob_run(struct sk_job *job)
{
	struct tjob *t = sk_container_of(job, struct tjob, job);

	t->ran[(*t->n_ran)++] = t->id;
}

static void tjob_done(struct sk_job *job)
{
	struct tjob *t = sk_container_of(job, struct tjob, job);

	(*t->n_done)++;
}

/* Run the loop until *n_done reaches want (or 20,000 iterations). */
static void run_until(struct ev_loop *loop, int *n_done, int want)
{
	for (int i = 0; i < 20000 && *n_done < want; i++)
		ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
}

static void test_pool_spin(void)
{
	struct ev_loop *loop = ev_loop_new(0);
	struct sk_pool *p = sk_pool_new(loop, 1, "test");
	static struct tjob jobs[300];
	int ran[300], n_ran = 0, n_done = 0;
	bool order = true;

	sk_pool_set_spin(p, 5000);
	for (int i = 0; i < 300; i++)
		jobs[i] =
			(struct tjob){ { { NULL, NULL }, tjob_run, tjob_done },
				       i,
				       ran,
				       &n_ran,
				       &n_done };
	/* A burst: queued while the worker runs or spins. */
	for (int i = 0; i < 100; i++)
		sk_pool_submit(p, &jobs[i].job);
	run_until(loop, &n_done, 100);
	is(n_done, 100, "spinning worker: a burst of 100 jobs all completed");
	/* One in flight: each submitted once the one before completed. */
	for (int i = 100; i < 200; i++) {
		sk_pool_submit(p, &jobs[i].job);
		run_until(loop, &n_done, i + 1);
	}
	is(n_done, 200, "and 100 jobs one at a time, each found by the worker");
	/* Parked again (no spin): the condition variable still wakes it. */
	sk_pool_set_spin(p, 0);
	for (int i = 200; i < 250; i++) {
		sk_pool_submit(p, &jobs[i].job);
		run_until(loop, &n_done, i + 1);
	}
	is(n_done, 250, "without spinning, 50 more one at a time");
	sk_pool_set_spin(p, 5000);
	for (int i = 250; i < 300; i++)
		sk_pool_submit(p, &jobs[i].job);
	sk_pool_free(p);
	is(n_done, 300, "freeing the pool finishes the jobs still queued");
	for (int i = 0; i < 300; i++)
		order &= ran[i] == i;
	ok(order, "one worker runs jobs in submission order");
	ev_loop_destroy(loop);
}

/* ------------------------------------------------------- close_all */

#define NPARTS 24

static void test_close_all(void)
{
	char tmpl[] = "/tmp/sk_test_shutdown_XXXXXX";
	struct sk_partition *parts[NPARTS + 1];
	char *dirs[NPARTS];
	int64_t ends[NPARTS];
	bool good = true, clean = true, same = true, scanned = true;
	size_t late;

	if (!mkdtemp(tmpl))
		abort();
	for (int i = 0; i < NPARTS; i++) {
		dirs[i] = sk_xasprintf("%s/t-%d", tmpl, i);
		parts[i] = open_p(dirs[i], &big_cfg);
		good &= parts[i] && append1(parts[i], 1 + i % 5) &&
			append1(parts[i], 2);
		ends[i] = parts[i] ? sk_partition_end_offset(parts[i]) : -1;
	}
	parts[NPARTS] = NULL; /* skipped */
	ok(good, "%d partitions opened and written", NPARTS);
	late = sk_partitions_close_all(parts, NPARTS + 1, 4, 60000);
	is((int)late, 0, "closed on 4 threads, none out of time");
	for (int i = 0; i < NPARTS; i++)
		good &= parts[i] == NULL;
	ok(good, "every entry is released");

	for (int i = 0; i < NPARTS; i++) {
		const struct sk_log_recovery *r;

		parts[i] = open_p(dirs[i], &big_cfg);
		if (!parts[i]) {
			clean = same = false;
			continue;
		}
		r = sk_partition_recovery(parts[i]);
		clean &= r->checkpoint && r->clean;
		same &= sk_partition_end_offset(parts[i]) == ends[i];
		/* More, for the stop out of time below. */
		good &= append1(parts[i], 3);
		ends[i] = sk_partition_end_offset(parts[i]);
	}
	ok(clean, "each reopens from a clean recovery checkpoint");
	ok(same, "with every record");

	/* No budget: all released unsaved, nothing written. */
	late = sk_partitions_close_all(parts, NPARTS, 4, 0);
	is((int)late, NPARTS, "out of time: all %d released without saving",
	   NPARTS);
	good = true;
	for (int i = 0; i < NPARTS; i++) {
		struct sk_partition *p = open_p(dirs[i], &big_cfg);

		good &= p && sk_partition_end_offset(p) == ends[i];
		scanned &= p && sk_partition_recovery(p)->bytes_scanned > 0;
		parts[i] = p;
	}
	ok(good, "they reopen with every record");
	ok(scanned, "found by scanning what their checkpoint does not cover");
	/* Fewer than the threads' worth: closed inline. */
	late = sk_partitions_close_all(parts, 3, 16, 60000);
	is((int)late, 0, "a few closed inline");
	sk_partitions_close_all(parts + 3, NPARTS - 3, 2, 60000);
	for (int i = 0; i < NPARTS; i++)
		free(dirs[i]);
	sk_rmtree(tmpl);
}

/* ------------------------------------------------------ offload */

struct queue {
	struct sk_job *jobs[256];
	int n;
};

static void enqueue(void *arg, struct sk_job *job)
{
	struct queue *q = arg;

	if (q->n == 256)
		abort();
	q->jobs[q->n++] = job;
}

/* Run the queued jobs in order, as the flusher's thread would. */
static int drain(struct queue *q)
{
	int n = q->n;

	for (int i = 0; i < n; i++) {
		q->jobs[i]->run(q->jobs[i]);
		q->jobs[i]->done(q->jobs[i]);
	}
	q->n = 0;
	return n;
}

static void test_offload(void)
{
	char tmpl[] = "/tmp/sk_test_shutdown_XXXXXX";
	struct queue q = { .n = 0 };
	struct sk_partition *p;
	char *dir, *idx0, *tidx0, *log0;
	int64_t deleted = -1, end;
	bool good = true;
	int n;

	if (!mkdtemp(tmpl))
		abort();
	dir = sk_xasprintf("%s/t-0", tmpl);
	idx0 = sk_xasprintf("%s/%020d.index", dir, 0);
	tidx0 = sk_xasprintf("%s/%020d.timeindex", dir, 0);
	log0 = sk_xasprintf("%s/%020d.log", dir, 0);
	p = open_p(dir, &small_cfg);
	sk_partition_set_offload(p, enqueue, &q);
	for (int i = 0; i < 40 && good; i++)
		good = append1(p, 4);
	ok(good && sk_partition_segment_count(p) > 3,
	   "appends rolled into %zu segments", sk_partition_segment_count(p));
	ok(q.n == (int)sk_partition_segment_count(p) - 1 && !exists(idx0),
	   "each roll queued its index files, none written on this thread");
	n = drain(&q);
	ok(n > 0 && exists(idx0) && exists(tidx0),
	   "run off the loop, they are written");

	/* Size retention: keep about two segments' worth. */
	is(sk_partition_retention(p, 0, -1, 4096, &deleted), 0,
	   "retention runs");
	ok(deleted > 0 && sk_partition_start_offset(p) > 0,
	   "and removed %lld segments from the log", (long long)deleted);
	ok(q.n == deleted && exists(log0),
	   "their files are left for the offload thread");
	drain(&q);
	ok(!exists(log0) && !exists(idx0), "which deletes them");

	end = sk_partition_end_offset(p);
	sk_partition_close(p);
	p = open_p(dir, &small_cfg);
	ok(p && sk_partition_end_offset(p) == end &&
		   sk_partition_recovery(p)->clean &&
		   sk_partition_segment_count(p) == 3,
	   "reopens clean with its 3 segments and every record");
	/* Without an offload function the work is inline. */
	for (int i = 0; i < 20 && p; i++)
		append1(p, 4);
	ok(q.n == 0, "no offload set: nothing queued");
	sk_partition_close(p);
	free(idx0);
	free(tidx0);
	free(log0);
	free(dir);
	sk_rmtree(tmpl);
}

/*
 * A job queued by a partition that is then deleted (its directory renamed
 * aside) and created again under the same name must leave the new
 * partition's files alone: jobs hold paths.
 */
static void test_offload_after_delete(void)
{
	char tmpl[] = "/tmp/sk_test_shutdown_XXXXXX";
	struct queue q = { .n = 0 };
	struct sk_partition *p;
	char *dir, *trash, *log0;
	int64_t deleted = -1;
	bool good = true;

	if (!mkdtemp(tmpl))
		abort();
	dir = sk_xasprintf("%s/t-0", tmpl);
	trash = sk_xasprintf("%s/t-0.1-delete", tmpl);
	log0 = sk_xasprintf("%s/%020d.log", dir, 0);
	p = open_p(dir, &small_cfg);
	sk_partition_set_offload(p, enqueue, &q);
	for (int i = 0; i < 40 && good; i++)
		good = append1(p, 4);
	drain(&q);
	sk_partition_retention(p, 0, -1, 4096, &deleted);
	ok(deleted > 0 && q.n == deleted, "retention queued %lld removals",
	   (long long)deleted);
	/* The topic is deleted and created again before the jobs run. */
	sk_partition_abandon(p);
	if (rename(dir, trash) < 0)
		abort();
	p = open_p(dir, &small_cfg);
	good = p != NULL;
	for (int i = 0; i < 3 && good; i++)
		good = append1(p, 4);
	ok(good && exists(log0), "a new partition of the same name has %s",
	   log0);
	drain(&q);
	ok(exists(log0) && sk_partition_end_offset(p) == 12,
	   "the old partition's queued removals leave it alone");
	sk_partition_close(p);
	free(log0);
	free(trash);
	free(dir);
	sk_rmtree(tmpl);
}

int main(void)
{
	plan(26);
	test_pool_spin();
	test_close_all();
	test_offload();
	test_offload_after_delete();
	return check_status();
}
