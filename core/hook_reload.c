/*
 * Loading and reloading the hooks: the hooks: section and the topics'
 * hook entries of the configuration, and the scripts they name.
 *
 * A load has two steps. The plan reads each script file and compiles
 * the ones whose text changed (or all of them when the limits changed)
 * against a snapshot of the versions in force; it touches nothing of the
 * broker, so a reload runs it on the hook pool, where a script's top
 * level may take up to timeout.ms + 1 s without stalling the loop. The
 * commit, on the loop, swaps the new versions in and empties the chain
 * cache. Nothing else changes the scripts, and one reload runs at a
 * time, so the snapshot is still the state in force when the plan comes
 * back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "hook.h"
#include "hook_internal.h"
#include "say.h"

void hk_decls_free(struct sk_topic_decl *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sk_topic_decl_free(&d[i]);
	free(d);
}

/* cfg's topic entries that have hooks or a retention script. */
static struct sk_topic_decl *decls_copy(const struct sk_config *cfg,
					size_t *n_out)
{
	struct sk_topic_decl *v = sk_xcalloc(cfg->n_topics + 1, sizeof(*v));
	size_t n = 0;

	for (size_t i = 0; i < cfg->n_topics; i++)
		if (cfg->topics[i].n_hooks || cfg->topics[i].retention_script)
			sk_topic_decl_clone(&v[n++], &cfg->topics[i]);
	*n_out = n;
	return v;
}

static void limits_of(const struct sk_hook_settings *set,
		      struct sk_hook_limits *lim)
{
	memset(lim, 0, sizeof(*lim));
	lim->timeout_ms = set->timeout_ms;
	lim->memory_bytes = (size_t)set->memory_mb << 20;
}

/* ------------------------------------------------------------------ */
/* The plan: compile what changed (any thread) */

/* A script in force when the plan was made (referenced). */
struct hk_have {
	char *path;
	struct sk_hook_script *cur;
};

/* A script compiled for a reload, before it replaces the current one. */
struct hk_new {
	char *path;
	struct sk_hook_script *s; /* NULL: unchanged */
};

struct hk_plan {
	/* in: what is in force */
	struct hk_have *have;
	size_t n_have;
	struct sk_hook_limits old_lim;
	int n_slots;
	/* out */
	struct sk_hook_limits lim;
	struct hk_new *nv;
	size_t n_new;
	bool fatal; /* a script with no version to fall back on failed */
	char errs[sizeof(((struct sk_err *)0)->msg)];
};

/* Snapshot the scripts in force (loop thread). */
static void plan_init(struct hk_plan *p, struct sk_hooks *hs)
{
	struct sk_hnode *n;

	memset(p, 0, sizeof(*p));
	p->have = sk_xcalloc(hs->scripts.count + 1, sizeof(*p->have));
	for (n = sk_hmap_first(&hs->scripts); n;
	     n = sk_hmap_next(&hs->scripts, n)) {
		struct hk_script_ent *se =
			sk_container_of(n, struct hk_script_ent, node);

		if (!se->cur)
			continue;
		sk_hook_script_ref(se->cur);
		p->have[p->n_have].path = sk_xstrdup(se->path);
		p->have[p->n_have++].cur = se->cur;
	}
	p->old_lim = hs->lim;
	p->n_slots = hs->set.workers;
}

/* Let go of what the plan holds (loop thread: script references). */
static void plan_free(struct hk_plan *p)
{
	for (size_t i = 0; i < p->n_have; i++) {
		sk_hook_script_unref(p->have[i].cur);
		free(p->have[i].path);
	}
	free(p->have);
	for (size_t i = 0; i < p->n_new; i++) {
		sk_hook_script_unref(p->nv[i].s);
		free(p->nv[i].path);
	}
	free(p->nv);
	memset(p, 0, sizeof(*p));
}

static struct sk_hook_script *plan_have(const struct hk_plan *p,
					const char *path)
{
	for (size_t i = 0; i < p->n_have; i++)
		if (strcmp(p->have[i].path, path) == 0)
			return p->have[i].cur;
	return NULL;
}

/*
 * Compile the script at path if its text differs from the version in
 * force (or the limits changed). needs: what the script must define.
 * Failures are appended to p->errs, naming where (the YAML entry).
 */
static void plan_one(struct hk_plan *p, const char *path, const char *where,
		     unsigned needs, bool relimit)
{
	struct sk_hook_script *cur = plan_have(p, path);
	struct sk_hook_script *s = NULL;
	struct sk_err err = { "" };
	char *src = NULL;
	size_t len = 0;
	int rc;

	for (size_t i = 0; i < p->n_new; i++)
		if (strcmp(p->nv[i].path, path) == 0)
			return;
	rc = sk_hook_read_file(path, &src, &len, &err);
	if (rc == 0 && cur && !relimit && cur->len == len &&
	    memcmp(cur->source, src, len) == 0) {
		free(src);
	} else if (rc == 0) {
		rc = sk_hook_script_new(&s, path, src, len, &p->lim, p->n_slots,
					&err);
		free(src);
		if (rc == 0 && !(s->has & needs)) {
			sk_err_set(
				&err, "%s: %s", path,
				needs == SK_HOOK_HAS_RETAIN
					? "a retention script must define retain"
					: "a hook script must define on_record or "
					  "on_batch");
			sk_hook_script_unref(s);
			s = NULL;
			rc = -EINVAL;
		}
	}
	if (rc) {
		size_t at = strlen(p->errs);

		snprintf(p->errs + at, sizeof(p->errs) - at, "%s%s: %s%s",
			 at ? "; " : "", where ? where : path, err.msg,
			 cur ? " (the previous version keeps running)" : "");
		if (!cur)
			p->fatal = true;
		return;
	}
	p->nv = sk_xrealloc(p->nv, (p->n_new + 1) * sizeof(*p->nv));
	p->nv[p->n_new].path = sk_xstrdup(path);
	p->nv[p->n_new++].s = s;
}

/* Compile what cfg names and has changed. Touches only p and cfg. */
static void plan_run(struct hk_plan *p, const struct sk_config *cfg)
{
	bool relimit;

	limits_of(&cfg->hooks, &p->lim);
	relimit = p->lim.timeout_ms != p->old_lim.timeout_ms ||
		  p->lim.memory_bytes != p->old_lim.memory_bytes;
	for (size_t i = 0; i < cfg->n_topics; i++) {
		const struct sk_topic_decl *d = &cfg->topics[i];

		for (size_t j = 0; j < d->n_hooks; j++)
			plan_one(p, d->hooks[j].script, d->hooks[j].where,
				 SK_HOOK_HAS_RECORD | SK_HOOK_HAS_BATCH,
				 relimit);
		if (d->retention_script)
			plan_one(p, d->retention_script, d->retention_where,
				 SK_HOOK_HAS_RETAIN, relimit);
	}
}

/* ------------------------------------------------------------------ */
/* The commit (loop thread) */

/*
 * Swap in what p compiled and take cfg's settings and entries; nothing
 * changes when a script without a previous version failed.
 */
static int plan_commit(struct sk_hooks *hs, const struct sk_config *cfg,
		       struct hk_plan *p, struct sk_err *err)
{
	struct sk_hnode *n;
	size_t n_decls;
	struct sk_topic_decl *decls;

	if (p->fatal)
		return sk_err_set(err, "%s", p->errs);
	hs->lim = p->lim;
	hs->set.timeout_ms = cfg->hooks.timeout_ms;
	hs->set.memory_mb = cfg->hooks.memory_mb;
	hs->set.breaker_failures = cfg->hooks.breaker_failures;
	hs->set.breaker_reset_ms = cfg->hooks.breaker_reset_ms;
	for (n = sk_hmap_first(&hs->scripts); n;
	     n = sk_hmap_next(&hs->scripts, n))
		sk_container_of(n, struct hk_script_ent, node)->used = false;
	for (size_t i = 0; i < p->n_new; i++) {
		struct hk_script_ent *se = hk_script_find(hs, p->nv[i].path);

		if (!se) {
			se = sk_xcalloc(1, sizeof(*se));
			se->path = sk_xstrdup(p->nv[i].path);
			sk_hmap_insert(&hs->scripts, &se->node, se->path,
				       strlen(se->path));
		}
		if (p->nv[i].s) {
			if (se->cur)
				sk_info("hooks: %s reloaded", se->path);
			sk_hook_script_unref(se->cur);
			se->cur = p->nv[i].s;
			p->nv[i].s = NULL;
		}
		se->used = true;
	}
	/* Scripts that failed but have a version keep it, and stay. */
	for (size_t i = 0; i < cfg->n_topics; i++) {
		const struct sk_topic_decl *d = &cfg->topics[i];
		struct hk_script_ent *se;

		for (size_t j = 0; j < d->n_hooks; j++)
			if ((se = hk_script_find(hs, d->hooks[j].script)))
				se->used = true;
		if (d->retention_script &&
		    (se = hk_script_find(hs, d->retention_script)))
			se->used = true;
	}
	n = sk_hmap_first(&hs->scripts);
	while (n) {
		struct sk_hnode *next = sk_hmap_next(&hs->scripts, n);
		struct hk_script_ent *se =
			sk_container_of(n, struct hk_script_ent, node);

		if (!se->used) {
			sk_hmap_remove(&hs->scripts, n);
			sk_hook_script_unref(se->cur);
			free(se->path);
			free(se);
		}
		n = next;
	}
	decls = decls_copy(cfg, &n_decls);
	hk_decls_free(hs->decls, hs->n_decls);
	hs->decls = decls;
	hs->n_decls = n_decls;
	hk_topics_clear(hs);
	if (p->errs[0])
		return sk_err_set(err, "%s", p->errs);
	return 0;
}

int hk_hooks_load(struct sk_hooks *hs, const struct sk_config *cfg,
		  struct sk_err *err)
{
	struct hk_plan p;
	int rc;

	/* Until the pool runs, the section says how many worker slots. */
	if (!hs->pool)
		hs->set.workers = cfg->hooks.workers;
	plan_init(&p, hs);
	plan_run(&p, cfg);
	rc = plan_commit(hs, cfg, &p, err);
	plan_free(&p);
	return rc;
}

int sk_hooks_reload(struct sk_hooks *hs, const struct sk_config *cfg,
		    struct sk_err *err)
{
	int rc = hk_hooks_load(hs, cfg, err);

	if (rc == 0)
		hs->reloads++;
	return rc;
}

/* ------------------------------------------------------------------ */
/* Reloads off the loop (SIGHUP, the admin call) */

struct hk_reload {
	struct sk_job job;
	struct sk_hooks *hs;
	struct sk_list waits; /* answered when done */
	char *path;	      /* the YAML file, or NULL: the one in force */
	const struct sk_config *use; /* what the plan ran on */
	struct sk_config cfg;	     /* read from path */
	struct sk_err err;	     /* reading it failed */
	int rc;
	struct hk_plan plan;
};

static void answer_all(struct sk_list *waits, int rc, const char *msg)
{
	while (!sk_list_empty(waits)) {
		struct sk_hook_reload_wait *w =
			sk_list_first(waits, struct sk_hook_reload_wait, link);

		sk_list_del(&w->link);
		w->done(w, rc, msg);
	}
}

/* Pool thread: read the file, compile. */
static void reload_run(struct sk_job *j)
{
	struct hk_reload *r = sk_container_of(j, struct hk_reload, job);

	if (r->path) {
		r->rc = sk_config_load_file(&r->cfg, r->path, &r->err);
		if (r->rc)
			return;
		r->use = &r->cfg;
	}
	plan_run(&r->plan, r->use);
}

static void reload_launch(struct sk_hooks *hs);

/* Loop thread: commit, answer, and run the next one if asked for. */
static void reload_done(struct sk_job *j)
{
	struct hk_reload *r = sk_container_of(j, struct hk_reload, job);
	struct sk_hooks *hs = r->hs;
	struct sk_err err = { "" };
	int rc = r->rc;

	hs->reload = NULL;
	if (hs->closing || hs->b->stopping) {
		rc = sk_err_setc(&err, -ESHUTDOWN, "the broker is stopping");
	} else if (rc) {
		sk_error("reload: %s (nothing changed)", r->err.msg);
		err = r->err;
	} else {
		rc = plan_commit(hs, r->use, &r->plan, &err);
		if (rc) {
			sk_error("reload: %s", err.msg);
		} else {
			hs->reloads++;
			sk_info("reload: hooks reloaded (%zu scripts)",
				hs->scripts.count);
		}
	}
	answer_all(&r->waits, rc, err.msg);
	plan_free(&r->plan);
	sk_config_free(&r->cfg);
	free(r->path);
	free(r);
	if (hs->reload_again && !hs->closing && !hs->b->stopping) {
		hs->reload_again = false;
		reload_launch(hs);
	}
}

static void reload_launch(struct sk_hooks *hs)
{
	struct hk_reload *r = sk_xcalloc(1, sizeof(*r));
	struct sk_broker *b = hs->b;

	r->hs = hs;
	sk_list_init(&r->waits);
	sk_list_splice(&r->waits, &hs->reload_waits);
	sk_config_init(&r->cfg);
	/* The config in force is never changed once the broker runs. */
	r->use = &b->cfg;
	r->path = b->config_path ? sk_xstrdup(b->config_path) : NULL;
	plan_init(&r->plan, hs);
	r->job.run = reload_run;
	r->job.done = reload_done;
	hs->reload = r;
	sk_pool_submit(sk_hooks_pool(hs), &r->job);
}

void sk_hooks_reload_start(struct sk_broker *b, const char *why,
			   struct sk_hook_reload_wait *w)
{
	struct sk_hooks *hs = &b->hooks;

	if (!hs->b || hs->closing || b->stopping) {
		if (w)
			w->done(w, -ESHUTDOWN, "the broker is stopping");
		return;
	}
	sk_info("%s: reloading hooks%s%s%s", why,
		b->config_path ? " from " : "",
		b->config_path ? b->config_path : "",
		hs->reload ? " (after the reload under way)" : "");
	if (w)
		sk_list_add_tail(&hs->reload_waits, &w->link);
	if (hs->reload)
		hs->reload_again = true;
	else
		reload_launch(hs);
}

void sk_hooks_reload_cancel(struct sk_hook_reload_wait *w)
{
	sk_list_del(&w->link);
}

void hk_reload_close(struct sk_hooks *hs)
{
	hs->closing = true;
	hs->reload_again = false;
	answer_all(&hs->reload_waits, -ESHUTDOWN, "the broker is stopping");
}

void sk_hooks_on_sighup(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	sk_hooks_reload_start(w->data, "received SIGHUP", NULL);
}
