/*
 * File work a partition hands off the loop thread (see
 * sk_partition_set_offload in log.h): the index files of a segment a roll
 * closed, and the files of segments removed by retention or DeleteRecords.
 * Each job holds what it needs (a segment reference, paths), so it stays
 * valid when the partition rolls on, is closed or deleted meanwhile.
 */
#include "log_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "pool.h"
#include "say.h"

struct sk_log_token *sk_log_token_new(void)
{
	struct sk_log_token *t = sk_xcalloc(1, sizeof(*t));

	atomic_init(&t->refs, 1);
	atomic_init(&t->gone, false);
	return t;
}

struct sk_log_token *sk_log_token_ref(struct sk_log_token *t)
{
	atomic_fetch_add(&t->refs, 1);
	return t;
}

void sk_log_token_unref(struct sk_log_token *t)
{
	if (t && atomic_fetch_sub(&t->refs, 1) == 1)
		free(t);
}

struct index_job {
	struct sk_job job;
	struct sk_log_token *tok;
	struct sk_segment *seg; /* referenced */
	char *dir;		/* for messages */
	struct sk_log_index mapped;
	bool loaded;
	int rc;
	struct sk_err err;
};

static void index_run(struct sk_job *job)
{
	struct index_job *j = sk_container_of(job, struct index_job, job);
	const char *why;

	if (atomic_load(&j->tok->gone)) {
		j->rc = -ECANCELED; /* the next open rebuilds it if needed */
		return;
	}
	/* A closed segment's entries no longer change: reading is safe. */
	j->rc = sk_log_index_save(&j->seg->idx, j->seg->stem, j->seg->size,
				  false, &j->err);
	if (j->rc == 0)
		j->loaded = sk_log_index_load(&j->mapped, j->seg->stem,
					      j->seg->size, &why) == 0;
}

static void index_done(struct sk_job *job)
{
	struct index_job *j = sk_container_of(job, struct index_job, job);
	struct sk_segment *seg = j->seg;

	if (j->rc == -ECANCELED) {
		/* The partition went away first. */
	} else if (j->rc < 0) {
		sk_warn("partition %s: %s (rebuilt at the next open)", j->dir,
			j->err.msg);
	} else if (!seg->index_saved) {
		seg->index_saved = true;
		/* Mapped, a closed segment's index costs no heap. */
		if (j->loaded) {
			sk_log_index_free(&seg->idx);
			seg->idx = j->mapped;
			j->loaded = false;
		}
	}
	if (j->loaded)
		sk_log_index_free(&j->mapped);
	sk_segment_unref(seg);
	sk_log_token_unref(j->tok);
	free(j->dir);
	free(j);
}

void sk_log_offload_index(sk_log_offload_fn fn, void *arg,
			  struct sk_log_token *tok, const char *dir,
			  struct sk_segment *seg)
{
	struct index_job *j;
	struct sk_err e;

	if (!fn) {
		if (sk_segment_save_index(seg, true, &e) < 0)
			sk_warn("partition %s: %s (rebuilt at the next open)",
				dir, e.msg);
		return;
	}
	sk_segment_seal_index(seg);
	j = sk_xcalloc(1, sizeof(*j));
	sk_segment_ref(seg);
	j->seg = seg;
	j->tok = sk_log_token_ref(tok);
	j->dir = sk_xstrdup(dir);
	j->job.run = index_run;
	j->job.done = index_done;
	fn(arg, &j->job);
}

struct remove_job {
	struct sk_job job;
	struct sk_log_token *tok;
	char *dir;  /* for messages */
	char *stem; /* "<dir>/<base>" */
	int rc;
};

static void remove_run(struct sk_job *job)
{
	struct remove_job *j = sk_container_of(job, struct remove_job, job);
	char *path;

	if (atomic_load(&j->tok->gone))
		return; /* a file left behind is deleted again at open */
	path = sk_xasprintf("%s.log", j->stem);
	/* The .log first: index files without a log are removed at open. */
	if (sk_io_unlink(path) < 0 && errno != ENOENT)
		j->rc = -errno;
	else
		sk_log_index_unlink(j->stem);
	free(path);
}

static void remove_done(struct sk_job *job)
{
	struct remove_job *j = sk_container_of(job, struct remove_job, job);

	if (j->rc < 0)
		sk_error("partition %s: cannot delete segment %s.log: %s "
			 "(deleted again after the next start)",
			 j->dir, j->stem, strerror(-j->rc));
	sk_log_token_unref(j->tok);
	free(j->dir);
	free(j->stem);
	free(j);
}

void sk_log_offload_remove(sk_log_offload_fn fn, void *arg,
			   struct sk_log_token *tok, const char *dir,
			   const char *stem)
{
	struct remove_job *j = sk_xcalloc(1, sizeof(*j));

	j->tok = sk_log_token_ref(tok);
	j->dir = sk_xstrdup(dir);
	j->stem = sk_xstrdup(stem);
	j->job.run = remove_run;
	j->job.done = remove_done;
	if (fn) {
		fn(arg, &j->job);
	} else {
		remove_run(&j->job);
		remove_done(&j->job);
	}
}
