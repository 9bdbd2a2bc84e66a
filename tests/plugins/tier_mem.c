/*
 * An in-memory storage tier for tests: objects in a list under a mutex.
 * Without `blocking`, operations hand the copy to host->submit and finish
 * with tier_done from the pool thread; with it, the broker calls them on
 * its pool and they finish inline. `down: true` makes every operation
 * fail as an unreachable tier would.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <skald/host.h>

static const struct skald_config_key schema[] = {
	{ "blocking", SKALD_CONFIG_BOOL, 0, "false", 0, 0, NULL,
	  "Run operations on the broker's pool." },
	{ "down", SKALD_CONFIG_BOOL, 0, "false", 0, 0, NULL,
	  "Fail every operation with ECONNREFUSED." },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL },
};

struct obj {
	struct obj *next;
	char *key;
	unsigned char *data;
	size_t size;
};

struct mem {
	const struct skald_host *host;
	pthread_mutex_t mu;
	struct obj *objs;
	int blocking, down;
	struct skald_metric *uploads;
};

/* An operation handed to the pool (async mode). */
struct work {
	struct mem *m;
	struct skald_tier_op *op;
	int kind;
	const struct skald_tier_segment *seg;
	const struct skald_tier_get *get;
	const char *prefix;
};

static void obj_put(struct mem *m, const char *key, unsigned char *data,
		    size_t size)
{
	struct obj *o;

	pthread_mutex_lock(&m->mu);
	for (o = m->objs; o; o = o->next)
		if (strcmp(o->key, key) == 0)
			break;
	if (!o) {
		o = calloc(1, sizeof(*o));
		o->key = strdup(key);
		o->next = m->objs;
		m->objs = o;
	}
	free(o->data);
	o->data = data;
	o->size = size;
	pthread_mutex_unlock(&m->mu);
}

static int do_upload(struct mem *m, const struct skald_tier_segment *seg)
{
	for (uint32_t i = 0; i < seg->n_files; i++) {
		const struct skald_tier_file *f = seg->files[i];
		unsigned char *data = malloc(f->size ? f->size : 1);
		char key[1024];

		if (pread(f->fd, data, f->size, 0) != (ssize_t)f->size) {
			free(data);
			return -EIO;
		}
		snprintf(key, sizeof(key), "%s%s", seg->key, f->suffix);
		obj_put(m, key, data, f->size);
	}
	m->host->metric_add(m->uploads, 1);
	return 0;
}

static int do_download(struct mem *m, const struct skald_tier_get *g)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&m->mu);
	for (struct obj *o = m->objs; o; o = o->next) {
		size_t n;

		if (strcmp(o->key, g->key) != 0)
			continue;
		rc = 0;
		if (g->offset > o->size) {
			rc = -EINVAL;
			break;
		}
		n = g->length ? g->length : o->size - g->offset;
		if (g->offset + n > o->size)
			n = o->size - g->offset;
		if (pwrite(g->fd, o->data + g->offset, n, 0) != (ssize_t)n)
			rc = -EIO;
		break;
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

static int do_remove(struct mem *m, const struct skald_tier_segment *seg)
{
	pthread_mutex_lock(&m->mu);
	for (uint32_t i = 0; i < seg->n_files; i++) {
		char key[1024];

		snprintf(key, sizeof(key), "%s%s", seg->key,
			 seg->files[i]->suffix);
		for (struct obj **p = &m->objs; *p; p = &(*p)->next) {
			struct obj *o = *p;

			if (strcmp(o->key, key) != 0)
				continue;
			*p = o->next;
			free(o->key);
			free(o->data);
			free(o);
			break;
		}
	}
	pthread_mutex_unlock(&m->mu);
	return 0;
}

static int do_list(struct mem *m, struct skald_tier_op *op,
		   const char *prefix)
{
	pthread_mutex_lock(&m->mu);
	for (struct obj *o = m->objs; o; o = o->next)
		if (strncmp(o->key, prefix, strlen(prefix)) == 0)
			m->host->tier_list_add(m->host, op, o->key, o->size);
	pthread_mutex_unlock(&m->mu);
	return 0;
}

static int do_op(struct work *w)
{
	switch (w->kind) {
	case 0:
		return do_upload(w->m, w->seg);
	case 1:
		return do_download(w->m, w->get);
	case 2:
		return do_remove(w->m, w->seg);
	default:
		return do_list(w->m, w->op, w->prefix);
	}
}

static void work_run(void *arg)
{
	struct work *w = arg;

	/* tier_done from the pool thread: any thread may finish an op. */
	w->m->host->tier_done(w->m->host, w->op, do_op(w),
			      w->kind == 1 ? "downloaded" : NULL);
}

static void work_done(void *arg)
{
	struct work *w = arg;

	w->m->host->mem_free(w->m->host, w);
}

static int start_op(struct mem *m, struct skald_tier_op *op, int kind,
		    const struct skald_tier_segment *seg,
		    const struct skald_tier_get *get, const char *prefix)
{
	struct work local = { m, op, kind, seg, get, prefix }, *w;

	if (m->down)
		return -ECONNREFUSED;
	if (m->blocking) {
		m->host->tier_done(m->host, op, do_op(&local), NULL);
		return 0;
	}
	w = m->host->mem_alloc(m->host, sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = local;
	return m->host->submit(m->host, work_run, work_done, w);
}

static int mem_upload(void *tier, struct skald_tier_op *op,
		      const struct skald_tier_segment *seg)
{
	return start_op(tier, op, 0, seg, NULL, NULL);
}

static int mem_download(void *tier, struct skald_tier_op *op,
			const struct skald_tier_get *get)
{
	return start_op(tier, op, 1, NULL, get, NULL);
}

static int mem_remove(void *tier, struct skald_tier_op *op,
		      const struct skald_tier_segment *seg)
{
	return start_op(tier, op, 2, seg, NULL, NULL);
}

static int mem_list(void *tier, struct skald_tier_op *op, const char *prefix)
{
	return start_op(tier, op, 3, NULL, NULL, prefix);
}

static const struct skald_storage_tier_ops async_ops = {
	sizeof(struct skald_storage_tier_ops), 0,
	mem_upload, mem_download, mem_remove, mem_list,
};

static const struct skald_storage_tier_ops blocking_ops = {
	sizeof(struct skald_storage_tier_ops), SKALD_TIER_BLOCKING,
	mem_upload, mem_download, mem_remove, mem_list,
};

static int mem_init(const struct skald_host *h,
		    const struct skald_config *config, void **state,
		    struct skald_error *err)
{
	struct mem *m = calloc(1, sizeof(*m));
	int rc;

	m->host = h;
	pthread_mutex_init(&m->mu, NULL);
	m->blocking = h->config_bool(config, "blocking");
	m->down = h->config_bool(config, "down");
	m->uploads = h->metric_counter(h, "tier_mem_uploads_total",
				       "Segments uploaded", NULL, 0);
	rc = h->register_storage_tier(h, m->blocking ? &blocking_ops :
						       &async_ops, m);
	if (rc) {
		snprintf(err->msg, sizeof(err->msg), "register: %d", rc);
		free(m);
		return rc;
	}
	*state = m;
	return 0;
}

static void mem_fini(void *state)
{
	struct mem *m = state;

	while (m->objs) {
		struct obj *o = m->objs;

		m->objs = o->next;
		free(o->key);
		free(o->data);
		free(o);
	}
	pthread_mutex_destroy(&m->mu);
	free(m);
}

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_PLUGIN_ABI,
	"tier_mem", "1.0.0", "An in-memory storage tier for tests",
	SKALD_PROVIDES_STORAGE_TIER, schema,
	mem_init, NULL, NULL, mem_fini,
};
