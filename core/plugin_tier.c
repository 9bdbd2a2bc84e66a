/*
 * Storage tiers registered by plugins (see plugin_tier.h and
 * include/skald/storage.h).
 *
 * Why two events per operation: an operation is finished when the call
 * that started it has returned AND the plugin called tier_done (or the
 * call returned an error, which stands for both). The two can come in
 * either order and from different threads (tier_done from a plugin
 * thread while the loop is still inside the call; or, for blocking
 * tiers, while the pool job has not been reaped yet), so a small mutex
 * per operation decides which of them is last, and the completion is
 * always posted to the loop: the caller's callback never runs inside the
 * call that started the operation, and never before the pool is done
 * with the job embedded in the op.
 */
#include "plugin_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "say.h"

/* The size of the ops table of ABI 1.0. */
#define SK_TIER_OPS_V1_SIZE                              \
	(offsetof(struct skald_storage_tier_ops, list) + \
	 sizeof(((struct skald_storage_tier_ops *)0)->list))

enum sk_tier_kind {
	SK_TIER_UPLOAD,
	SK_TIER_DOWNLOAD,
	SK_TIER_REMOVE,
	SK_TIER_LIST,
};

static const char *const kind_names[] = { "upload", "download", "remove",
					  "list" };

struct skald_tier_op {
	struct sk_tier *t;
	enum sk_tier_kind kind;
	const struct skald_tier_segment *seg; /* upload, remove */
	const struct skald_tier_get *get;     /* download */
	char *prefix;			      /* list; owned */
	sk_tier_cb cb;
	void *arg;
	struct sk_job job;  /* blocking tiers: the call on a pool thread */
	int call_rc;	    /* what the call returned (pool thread) */
	pthread_mutex_t mu; /* the fields below */
	bool returned;	    /* the call returned */
	bool done_called;   /* tier_done was called */
	int rc;
	char msg[256];
	char **keys; /* list results; owned */
	uint64_t *sizes;
	size_t n, cap;
};

const char *sk_tier_name(const struct sk_tier *t)
{
	return t->pl->desc.name;
}

void sk_tier_use(struct sk_tier *t)
{
	atomic_fetch_add(&t->users, 1);
}

void sk_tier_unuse(struct sk_tier *t)
{
	atomic_fetch_sub(&t->users, 1);
}

bool sk_tier_retriable(int rc)
{
	switch (-rc) {
	case EAGAIN:
	case ETIMEDOUT:
	case ECONNREFUSED:
	case ECONNRESET:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EIO:
	case ESHUTDOWN:
		return true;
	default:
		return false;
	}
}

/* Loop thread, posted: the caller's callback, then free. */
static void op_finish(void *arg)
{
	struct skald_tier_op *op = arg;
	struct sk_plugin *pl = op->t->pl;
	struct sk_tier_result r = {
		.rc = op->rc,
		.msg = op->msg,
		.n = op->n,
		.keys = (const char *const *)op->keys,
		.sizes = op->sizes,
	};

	op->cb(op->arg, &r);
	for (size_t i = 0; i < op->n; i++)
		free(op->keys[i]);
	free(op->keys);
	free(op->sizes);
	free(op->prefix);
	pthread_mutex_destroy(&op->mu);
	free(op);
	atomic_fetch_sub(&pl->inflight, 1);
}

static void op_schedule(struct skald_tier_op *op)
{
	sk_plugins_post(op->t->pl->set, NULL, op_finish, op);
}

/* The call that started op returned rc (loop thread). */
static void op_returned(struct skald_tier_op *op, int rc)
{
	bool finish, twice = false;

	pthread_mutex_lock(&op->mu);
	op->returned = true;
	op->call_rc = rc;
	if (rc) {
		twice = op->done_called;
		op->rc = rc;
		if (twice)
			op->msg[0] = '\0';
	}
	finish = rc || op->done_called;
	pthread_mutex_unlock(&op->mu);
	if (twice)
		sk_plugin_say(op->t->pl, SKALD_LOG_ERROR,
			      "%s returned %d "
			      "after calling tier_done (it must do one or "
			      "the other)",
			      kind_names[op->kind], rc);
	if (finish)
		op_schedule(op);
}

void sk_plugin_tier_done(const struct skald_host *h, struct skald_tier_op *op,
			 int rc, const char *msg)
{
	struct sk_plugin *pl = sk_plugin_of(h);
	const char *bug = NULL;
	bool finish = false;

	if (!op)
		return;
	pthread_mutex_lock(&op->mu);
	if (op->done_called)
		bug = "tier_done called twice for one operation; ignored";
	else if (op->returned && op->call_rc)
		bug = "tier_done called for an operation that returned an "
		      "error; ignored";
	if (!bug) {
		op->done_called = true;
		op->rc = rc > 0 ? -EIO : rc;
		if (msg)
			snprintf(op->msg, sizeof(op->msg), "%s", msg);
		finish = op->returned;
	}
	pthread_mutex_unlock(&op->mu);
	if (bug)
		sk_plugin_say(pl, SKALD_LOG_ERROR, "%s", bug);
	if (finish)
		op_schedule(op);
}

int sk_plugin_tier_list_add(const struct skald_host *h,
			    struct skald_tier_op *op, const char *key,
			    uint64_t size)
{
	int rc = 0;

	(void)h;
	if (!op || !key)
		return -EINVAL;
	pthread_mutex_lock(&op->mu);
	if (op->kind != SK_TIER_LIST || op->done_called) {
		rc = -EINVAL;
	} else {
		if (op->n == op->cap) {
			op->cap = op->cap ? 2 * op->cap : 64;
			op->keys = sk_xrealloc(op->keys,
					       op->cap * sizeof(*op->keys));
			op->sizes = sk_xrealloc(op->sizes,
						op->cap * sizeof(*op->sizes));
		}
		op->keys[op->n] = sk_xstrdup(key);
		op->sizes[op->n++] = size;
	}
	pthread_mutex_unlock(&op->mu);
	return rc;
}

/* Call the plugin's operation (loop or pool thread). */
static int op_call(struct skald_tier_op *op)
{
	const struct skald_storage_tier_ops *o = &op->t->ops;
	void *state = op->t->state;

	switch (op->kind) {
	case SK_TIER_UPLOAD:
		return o->upload(state, op, op->seg);
	case SK_TIER_DOWNLOAD:
		return o->download(state, op, op->get);
	case SK_TIER_REMOVE:
		return o->remove(state, op, op->seg);
	case SK_TIER_LIST:
		return o->list(state, op, op->prefix);
	}
	return -EINVAL;
}

static void op_job_run(struct sk_job *job)
{
	struct skald_tier_op *op =
		sk_container_of(job, struct skald_tier_op, job);

	op->call_rc = op_call(op);
}

static void op_job_done(struct sk_job *job)
{
	struct skald_tier_op *op =
		sk_container_of(job, struct skald_tier_op, job);

	op_returned(op, op->call_rc);
}

static void op_start(struct sk_tier *t, struct skald_tier_op *op, sk_tier_cb cb,
		     void *arg)
{
	struct sk_plugin *pl = t->pl;

	op->t = t;
	op->cb = cb;
	op->arg = arg;
	pthread_mutex_init(&op->mu, NULL);
	atomic_fetch_add(&pl->inflight, 1);
	if (pl->phase != SK_PLUGIN_STARTED && pl->phase != SK_PLUGIN_READY) {
		op->rc = -ESHUTDOWN;
		snprintf(op->msg, sizeof(op->msg), "plugin %s is stopped",
			 pl->desc.name);
		op->returned = op->done_called = true;
		op_schedule(op);
		return;
	}
	if (t->ops.flags & SKALD_TIER_BLOCKING) {
		op->job.run = op_job_run;
		op->job.done = op_job_done;
		sk_pool_submit(sk_plugins_pool(pl->set), &op->job);
		return;
	}
	op_returned(op, op_call(op));
}

static struct skald_tier_op *op_new(enum sk_tier_kind kind)
{
	struct skald_tier_op *op = sk_xcalloc(1, sizeof(*op));

	op->kind = kind;
	return op;
}

void sk_tier_upload(struct sk_tier *t, const struct skald_tier_segment *seg,
		    sk_tier_cb cb, void *arg)
{
	struct skald_tier_op *op = op_new(SK_TIER_UPLOAD);

	op->seg = seg;
	op_start(t, op, cb, arg);
}

void sk_tier_download(struct sk_tier *t, const struct skald_tier_get *get,
		      sk_tier_cb cb, void *arg)
{
	struct skald_tier_op *op = op_new(SK_TIER_DOWNLOAD);

	op->get = get;
	op_start(t, op, cb, arg);
}

void sk_tier_remove(struct sk_tier *t, const struct skald_tier_segment *seg,
		    sk_tier_cb cb, void *arg)
{
	struct skald_tier_op *op = op_new(SK_TIER_REMOVE);

	op->seg = seg;
	op_start(t, op, cb, arg);
}

void sk_tier_list(struct sk_tier *t, const char *prefix, sk_tier_cb cb,
		  void *arg)
{
	struct skald_tier_op *op = op_new(SK_TIER_LIST);

	op->prefix = sk_xstrdup(prefix ? prefix : "");
	op_start(t, op, cb, arg);
}

int sk_plugin_register_tier(const struct skald_host *h,
			    const struct skald_storage_tier_ops *ops,
			    void *tier)
{
	struct sk_plugin *pl = sk_plugin_of(h);
	struct sk_tier *t;

	if (pl->phase != SK_PLUGIN_INIT) {
		sk_plugin_say(pl, SKALD_LOG_ERROR,
			      "register_storage_tier: "
			      "only from init()");
		return pl->phase >= SK_PLUGIN_STOPPED ? -ESHUTDOWN : -EBUSY;
	}
	if (!(pl->desc.provides & SKALD_PROVIDES_STORAGE_TIER)) {
		sk_plugin_say(pl, SKALD_LOG_ERROR,
			      "register_storage_tier: "
			      "the descriptor's provides lacks "
			      "SKALD_PROVIDES_STORAGE_TIER");
		return -EPERM;
	}
	if (pl->tier)
		return -EEXIST;
	if (!ops || ops->size < SK_TIER_OPS_V1_SIZE) {
		sk_plugin_say(pl, SKALD_LOG_ERROR,
			      "register_storage_tier: "
			      "ops size: expected at least %zu, found %u",
			      SK_TIER_OPS_V1_SIZE, ops ? ops->size : 0);
		return -EINVAL;
	}
	if (ops->flags & ~SKALD_TIER_BLOCKING) {
		sk_plugin_say(pl, SKALD_LOG_ERROR,
			      "register_storage_tier: "
			      "flags: expected bits within 0x%x, found 0x%x",
			      SKALD_TIER_BLOCKING, ops->flags);
		return -EINVAL;
	}
	if (!ops->upload || !ops->download || !ops->remove || !ops->list) {
		sk_plugin_say(pl, SKALD_LOG_ERROR,
			      "register_storage_tier: "
			      "upload, download, remove and list are all "
			      "required");
		return -EINVAL;
	}
	t = sk_xcalloc(1, sizeof(*t));
	memcpy(&t->ops, ops, SK_MIN((size_t)ops->size, sizeof(t->ops)));
	t->pl = pl;
	t->state = tier;
	pl->tier = t;
	return 0;
}
