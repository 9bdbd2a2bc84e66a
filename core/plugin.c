/*
 * The plugin loader and the host services (see plugin.h and the public
 * headers in include/skald/).
 *
 * Why the checks come in this order: the first eight bytes of the
 * descriptor (abi_major, abi_minor) are the only ones every ABI version
 * agrees on, so they are read first; desc_size then says how much of the
 * rest may be read at all; build_sig catches a plugin built for another
 * layout before any pointer in the descriptor is followed; only then are
 * the name, the provides bits and the config schema (plugin data, but no
 * plugin code) examined. Every refusal says expected versus found.
 *
 * Why each plugin gets its own copy of struct skald_host: the table's
 * address identifies the caller, so services need no extra handle
 * argument and cannot be called "as" another plugin by mistake.
 */
#include "plugin_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "say.h"
#include "skald/version.h"

/* Bounds on what a descriptor may declare. */
#define SK_PLUGIN_NAME_MAX     64
#define SK_PLUGIN_SCHEMA_MAX   256
#define SK_PLUGIN_KEY_NAME_MAX 64
/* Threads of the pool that runs submit() jobs and blocking tiers. */
#define SK_PLUGIN_POOL_THREADS 4
/* Key/value store limits. */
#define SK_PLUGIN_KV_KEY_MAX   1024
#define SK_PLUGIN_KV_VALUE_MAX (1024 * 1024)
/* Bytes before each mem_alloc block, holding its size. */
#define SK_PLUGIN_MEM_HDR 16
/* Labels a plugin may give a metric (the host adds one). */
#define SK_PLUGIN_METRIC_LABELS 15

#define SK_PROVIDES_KNOWN                                       \
	(SKALD_PROVIDES_GENERIC | SKALD_PROVIDES_STORAGE_TIER | \
	 SKALD_PROVIDES_SASL | SKALD_PROVIDES_AUTHORIZER |      \
	 SKALD_PROVIDES_INDEXER)

/* One value of a plugin's config, in schema order. */
struct sk_pvalue {
	const struct skald_config_key *key; /* in the plugin's schema */
	bool given;			    /* in the YAML file */
	bool has;			    /* given or defaulted */
	char *text;			    /* STRING: the value; owned */
	int64_t i;			    /* INT */
	int b;				    /* BOOL */
};

struct skald_config {
	struct sk_pvalue *v;
	size_t n;
};

/* A live timer of a plugin. */
struct sk_ptimer {
	ev_timer w;
	struct sk_list link; /* in sk_plugin.timers */
	struct sk_plugin *pl;
	skald_fn fn;
	void *arg;
};

/* A post() in the queue. */
struct sk_post {
	struct sk_list link;
	void (*fn)(void *arg);
	void *arg;
	struct sk_plugin *pl; /* counted in its inflight; may be NULL */
};

/* A submit() job. */
struct sk_pjob {
	struct sk_job job;
	struct sk_plugin *pl;
	skald_fn run, done;
	void *arg;
};

/* ------------------------------------------------------------------ */
/* Descriptor checks */

/* Fields of SKALD_BUILD_SIG, for saying which differ. */
static const struct {
	const char *what;
	unsigned shift;
} sig_fields[] = {
	{ "sizeof(void *)", 0 },  { "sizeof(size_t)", 4 },
	{ "sizeof(long)", 8 },	  { "alignof(int64_t)", 12 },
	{ "sizeof(time_t)", 16 }, { "byte order (1 little, 2 big)", 20 },
};

/* "sizeof(void *): expected 8, found 4; ..." for the fields that differ. */
static void sig_diff(uint32_t want, uint32_t got, char *buf, size_t cap)
{
	size_t n = 0;

	buf[0] = '\0';
	if ((want >> 24) != (got >> 24)) {
		snprintf(buf, cap, "tag: expected 0x%02x, found 0x%02x",
			 want >> 24, got >> 24);
		return;
	}
	for (size_t i = 0; i < SK_ARRAY_SIZE(sig_fields); i++) {
		unsigned w = (want >> sig_fields[i].shift) & 0xf;
		unsigned g = (got >> sig_fields[i].shift) & 0xf;

		if (w == g || n >= cap)
			continue;
		n += (size_t)snprintf(buf + n, cap - n,
				      "%s%s: expected %u, found %u",
				      n ? "; " : "", sig_fields[i].what, w, g);
	}
}

/* [a-z][a-z0-9_-]{0,63} */
static bool plugin_name_valid(const char *s)
{
	size_t len;

	if (!s || !(*s >= 'a' && *s <= 'z'))
		return false;
	len = strnlen(s, SK_PLUGIN_NAME_MAX + 1);
	if (len > SK_PLUGIN_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* [a-z0-9._-]{1,64} */
static bool key_name_valid(const char *s)
{
	size_t len;

	if (!s)
		return false;
	len = strnlen(s, SK_PLUGIN_KEY_NAME_MAX + 1);
	if (len == 0 || len > SK_PLUGIN_KEY_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

/* A name as found, quoted and shown safely ("none" for NULL). */
static void shown_name(const char *s, char *buf, size_t cap)
{
	size_t n = 0;

	if (!s) {
		snprintf(buf, cap, "none");
		return;
	}
	buf[n++] = '\'';
	for (size_t i = 0; s[i] && i < 80 && n + 6 < cap; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f)
			buf[n++] = (char)c;
		else
			n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", c);
	}
	buf[n++] = '\'';
	buf[n] = '\0';
}

/* ------------------------------------------------------------------ */
/* Config values */

static const char *const type_names[] = { "?", "bool", "int", "string" };

/* The value as messages may show it: secret values are not. */
static void shown_value(const struct skald_config_key *k, const char *text,
			char *buf, size_t cap)
{
	if (k->flags & SKALD_CONFIG_SECRET)
		snprintf(buf, cap, "a secret of %zu characters", strlen(text));
	else
		snprintf(buf, cap, "'%.100s'", text);
}

/*
 * Parse text for key k into v (when v is non-NULL). On error why says
 * what was expected and what was found, in the words the core's config
 * uses.
 */
static int value_parse(const struct skald_config_key *k, const char *text,
		       struct sk_pvalue *v, struct sk_err *why)
{
	char shown[128], list[400];
	size_t len, n = 0;
	int64_t i;

	shown_value(k, text, shown, sizeof(shown));
	switch (k->type) {
	case SKALD_CONFIG_BOOL:
		if (strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
			return sk_err_set(why, "expected true or false, got %s",
					  shown);
		if (v)
			v->b = text[0] == 't';
		return 0;
	case SKALD_CONFIG_INT:
		if (!sk_parse_i64(text, &i) || i < k->min || i > k->max) {
			if (k->max == INT64_MAX)
				return sk_err_set(why,
						  "expected an integer >= "
						  "%lld, got %s",
						  (long long)k->min, shown);
			return sk_err_set(why,
					  "expected an integer in [%lld, "
					  "%lld], got %s",
					  (long long)k->min, (long long)k->max,
					  shown);
		}
		if (v)
			v->i = i;
		return 0;
	case SKALD_CONFIG_STRING:
		len = strlen(text);
		if (len == 0 && k->min > 0)
			return sk_err_set(why, "must not be empty");
		if ((int64_t)len < k->min)
			return sk_err_set(why,
					  "expected at least %lld "
					  "characters, got %zu",
					  (long long)k->min, len);
		if ((int64_t)len > k->max)
			return sk_err_set(why,
					  "expected at most %lld "
					  "characters, got %zu",
					  (long long)k->max, len);
		if (k->choices) {
			bool found = false;

			list[0] = '\0';
			for (const char *const *c = k->choices; *c; c++) {
				if (strcmp(*c, text) == 0)
					found = true;
				if (n < sizeof(list))
					n += (size_t)snprintf(
						list + n, sizeof(list) - n,
						"%s'%s'", n ? ", " : "", *c);
			}
			if (!found)
				return sk_err_set(why,
						  "expected one of %s, "
						  "got %s",
						  list, shown);
		}
		if (v) {
			free(v->text);
			v->text = sk_xstrdup(text);
		}
		return 0;
	}
	return sk_err_set(why, "unknown type %u", k->type);
}

static void config_free(struct skald_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i].text);
	free(c->v);
	free(c);
}

/*
 * Check the plugin's schema (its own data: a broken one is the plugin's
 * bug, reported against its file) and build the config from defaults.
 */
static int schema_check(struct sk_plugin *pl, struct sk_err *err)
{
	const struct skald_config_key *schema = pl->desc.config_schema;
	struct skald_config *c = sk_xcalloc(1, sizeof(*c));
	char shown[128];
	struct sk_err why;
	size_t n = 0;

	pl->config = c;
	if (!schema)
		return 0;
	while (schema[n].name) {
		if (++n > SK_PLUGIN_SCHEMA_MAX)
			return sk_err_set(err,
					  "%s: config schema: expected at "
					  "most %d keys ended by a NULL name, "
					  "found more",
					  pl->path, SK_PLUGIN_SCHEMA_MAX);
	}
	c->v = sk_xcalloc(n ? n : 1, sizeof(*c->v));
	c->n = n;
	for (size_t i = 0; i < n; i++) {
		const struct skald_config_key *k = &schema[i];
		struct sk_pvalue *v = &c->v[i];

		v->key = k;
		if (!key_name_valid(k->name)) {
			shown_name(k->name, shown, sizeof(shown));
			return sk_err_set(err,
					  "%s: config schema: key %zu: "
					  "name: expected [a-z0-9._-]{1,64}, "
					  "found %s",
					  pl->path, i, shown);
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(schema[j].name, k->name) == 0)
				return sk_err_set(err,
						  "%s: config schema: "
						  "key '%s' appears twice",
						  pl->path, k->name);
		if (k->type < SKALD_CONFIG_BOOL ||
		    k->type > SKALD_CONFIG_STRING)
			return sk_err_set(err,
					  "%s: config schema: key '%s': "
					  "type: expected 1 (bool), 2 (int) "
					  "or 3 (string), found %u",
					  pl->path, k->name, k->type);
		if (k->flags & ~(SKALD_CONFIG_REQUIRED | SKALD_CONFIG_SECRET))
			return sk_err_set(err,
					  "%s: config schema: key '%s': "
					  "flags: expected bits within 0x3, "
					  "found 0x%x",
					  pl->path, k->name, k->flags);
		if (k->type != SKALD_CONFIG_BOOL && k->min > k->max)
			return sk_err_set(err,
					  "%s: config schema: key '%s': "
					  "expected min <= max, found [%lld, "
					  "%lld]",
					  pl->path, k->name, (long long)k->min,
					  (long long)k->max);
		if (k->type == SKALD_CONFIG_STRING && k->min < 0)
			return sk_err_set(err,
					  "%s: config schema: key '%s': "
					  "expected a length min >= 0, found "
					  "%lld",
					  pl->path, k->name, (long long)k->min);
		if (k->choices && k->type != SKALD_CONFIG_STRING)
			return sk_err_set(err,
					  "%s: config schema: key '%s': "
					  "choices are for string keys, found "
					  "them on a %s key",
					  pl->path, k->name,
					  type_names[k->type]);
		if (!k->def || (k->flags & SKALD_CONFIG_REQUIRED))
			continue;
		if (value_parse(k, k->def, v, &why))
			return sk_err_set(err,
					  "%s: config schema: key '%s': "
					  "default: %s",
					  pl->path, k->name, why.msg);
		v->has = true;
	}
	return 0;
}

/* The names of the schema's keys, for "unknown key" messages. */
static void schema_keys(const struct skald_config *c, char *buf, size_t cap)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < c->n && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : "",
				      c->v[i].key->name);
	if (!c->n)
		snprintf(buf, cap, "none");
}

/* Apply the YAML settings of decl to the config, then check required. */
static int config_apply(struct sk_plugin *pl, const struct sk_plugin_decl *d,
			struct sk_err *err)
{
	struct skald_config *c = pl->config;
	struct sk_err why;
	char keys[400];

	for (size_t i = 0; i < d->n_settings; i++) {
		const struct sk_plugin_setting *s = &d->settings[i];
		struct sk_pvalue *v = NULL;

		for (size_t j = 0; j < c->n; j++)
			if (strcmp(c->v[j].key->name, s->key) == 0)
				v = &c->v[j];
		if (!v) {
			schema_keys(c, keys, sizeof(keys));
			return sk_err_set(err,
					  "%s: %s.config.%s: unknown key "
					  "(plugin %s has: %s)",
					  s->where, pl->label, s->key, pl->path,
					  keys);
		}
		if (value_parse(v->key, s->value, v, &why))
			return sk_err_set(err,
					  "%s: %s.config.%s: %s (plugin "
					  "%s)",
					  s->where, pl->label, s->key, why.msg,
					  pl->path);
		v->given = v->has = true;
	}
	for (size_t j = 0; j < c->n; j++)
		if ((c->v[j].key->flags & SKALD_CONFIG_REQUIRED) &&
		    !c->v[j].given)
			return sk_err_set(err,
					  "%s: %s.config: missing "
					  "required key '%s' (plugin %s)",
					  d->where, pl->label,
					  c->v[j].key->name, pl->path);
	return 0;
}

static const struct sk_pvalue *config_find(const struct skald_config *c,
					   const char *key, uint32_t type)
{
	if (!c || !key)
		return NULL;
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->v[i].key->name, key) == 0)
			return c->v[i].key->type == type || type == 0 ? &c->v[i]
								      : NULL;
	return NULL;
}

static const char *host_config_string(const struct skald_config *c,
				      const char *key)
{
	const struct sk_pvalue *v = config_find(c, key, SKALD_CONFIG_STRING);

	return v && v->has ? v->text : NULL;
}

static int64_t host_config_int(const struct skald_config *c, const char *key)
{
	const struct sk_pvalue *v = config_find(c, key, SKALD_CONFIG_INT);

	return v && v->has ? v->i : 0;
}

static int host_config_bool(const struct skald_config *c, const char *key)
{
	const struct sk_pvalue *v = config_find(c, key, SKALD_CONFIG_BOOL);

	return v && v->has ? v->b : 0;
}

static int host_config_given(const struct skald_config *c, const char *key)
{
	const struct sk_pvalue *v = config_find(c, key, 0);

	return v ? v->given : -ENOENT;
}

/* ------------------------------------------------------------------ */
/* Host services: log, memory, metrics, clocks */

/* clang-format off */
static const enum sk_say_level say_levels[] = {
	SK_SAY_DEBUG,
	SK_SAY_INFO,
	SK_SAY_WARN,
	SK_SAY_ERROR,
};
/* clang-format on */

static void host_vlog(const struct skald_host *h, int level, const char *fmt,
		      va_list ap) SK_PRINTF(3, 0);

static void host_vlog(const struct skald_host *h, int level, const char *fmt,
		      va_list ap)
{
	char msg[2000];

	if (level < SKALD_LOG_DEBUG)
		level = SKALD_LOG_DEBUG;
	if (level > SKALD_LOG_ERROR)
		level = SKALD_LOG_ERROR;
	vsnprintf(msg, sizeof(msg), fmt ? fmt : "(null)", ap);
	sk_say(say_levels[level], "[%s] %s", h->plugin_name, msg);
}

static void host_log(const struct skald_host *h, int level, const char *fmt,
		     ...) SK_PRINTF(3, 4);

static void host_log(const struct skald_host *h, int level, const char *fmt,
		     ...)
{
	va_list ap;

	va_start(ap, fmt);
	host_vlog(h, level, fmt, ap);
	va_end(ap);
}

void sk_plugin_say(struct sk_plugin *pl, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	host_vlog(&pl->host, level, fmt, ap);
	va_end(ap);
}

static void mem_account(struct sk_plugin *pl, int64_t bytes, int64_t blocks)
{
	atomic_fetch_add_explicit(&pl->mem_bytes, bytes, memory_order_relaxed);
	atomic_fetch_add_explicit(&pl->mem_blocks, blocks,
				  memory_order_relaxed);
	sk_metric_add(pl->m_mem, (double)bytes);
}

static void *host_mem_alloc(const struct skald_host *h, size_t size)
{
	uint8_t *p;

	if (size > SIZE_MAX - SK_PLUGIN_MEM_HDR)
		return NULL;
	p = malloc(size + SK_PLUGIN_MEM_HDR);
	if (!p)
		return NULL;
	memcpy(p, &size, sizeof(size));
	mem_account(sk_plugin_of(h), (int64_t)size, 1);
	return p + SK_PLUGIN_MEM_HDR;
}

static void host_mem_free(const struct skald_host *h, void *ptr)
{
	uint8_t *p = ptr;
	size_t size;

	if (!p)
		return;
	p -= SK_PLUGIN_MEM_HDR;
	memcpy(&size, p, sizeof(size));
	mem_account(sk_plugin_of(h), -(int64_t)size, -1);
	free(p);
}

static void *host_mem_realloc(const struct skald_host *h, void *ptr,
			      size_t size)
{
	uint8_t *p = ptr, *q;
	size_t old;

	if (!p)
		return host_mem_alloc(h, size);
	if (size == 0) {
		host_mem_free(h, ptr);
		return NULL;
	}
	if (size > SIZE_MAX - SK_PLUGIN_MEM_HDR)
		return NULL;
	p -= SK_PLUGIN_MEM_HDR;
	memcpy(&old, p, sizeof(old));
	q = realloc(p, size + SK_PLUGIN_MEM_HDR);
	if (!q)
		return NULL;
	memcpy(q, &size, sizeof(size));
	mem_account(sk_plugin_of(h), (int64_t)size - (int64_t)old, 0);
	return q + SK_PLUGIN_MEM_HDR;
}

static struct skald_metric *host_metric(const struct skald_host *h,
					enum sk_metric_type type,
					const char *name, const char *help,
					const struct skald_label *labels,
					size_t n_labels, const double *bounds,
					size_t n_bounds)
{
	struct sk_plugin *pl = sk_plugin_of(h);
	const char *pairs[2 * (SK_PLUGIN_METRIC_LABELS + 1)];
	struct sk_metric *m;
	struct sk_err err;

	if (n_labels > SK_PLUGIN_METRIC_LABELS || (n_labels && !labels)) {
		sk_plugin_say(pl, SKALD_LOG_WARN,
			      "metric %s: at most %d "
			      "labels, got %zu",
			      name ? name : "(null)", SK_PLUGIN_METRIC_LABELS,
			      n_labels);
		return NULL;
	}
	pairs[0] = "plugin";
	pairs[1] = h->plugin_name;
	for (size_t i = 0; i < n_labels; i++) {
		if (labels[i].name && strcmp(labels[i].name, "plugin") == 0) {
			sk_plugin_say(pl, SKALD_LOG_WARN,
				      "metric %s: the "
				      "label 'plugin' is the host's",
				      name ? name : "(null)");
			return NULL;
		}
		pairs[2 + 2 * i] = labels[i].name;
		pairs[3 + 2 * i] = labels[i].value;
	}
	m = sk_metrics_get(pl->set->metrics, type, name, help ? help : "",
			   pairs, n_labels + 1, bounds, n_bounds, &err);
	if (!m)
		sk_plugin_say(pl, SKALD_LOG_WARN, "%s", err.msg);
	return (struct skald_metric *)m;
}

static struct skald_metric *
host_metric_counter(const struct skald_host *h, const char *name,
		    const char *help, const struct skald_label *l, size_t n)
{
	return host_metric(h, SK_METRIC_COUNTER, name, help, l, n, NULL, 0);
}

static struct skald_metric *
host_metric_gauge(const struct skald_host *h, const char *name,
		  const char *help, const struct skald_label *l, size_t n)
{
	return host_metric(h, SK_METRIC_GAUGE, name, help, l, n, NULL, 0);
}

static struct skald_metric *
host_metric_histogram(const struct skald_host *h, const char *name,
		      const char *help, const struct skald_label *l, size_t n,
		      const double *bounds, size_t n_bounds)
{
	return host_metric(h, SK_METRIC_HISTOGRAM, name, help, l, n, bounds,
			   n_bounds);
}

static void host_metric_add(struct skald_metric *m, double v)
{
	sk_metric_add((struct sk_metric *)m, v);
}

static void host_metric_set(struct skald_metric *m, double v)
{
	sk_metric_set((struct sk_metric *)m, v);
}

static void host_metric_observe(struct skald_metric *m, double v)
{
	sk_metric_observe((struct sk_metric *)m, v);
}

static int64_t host_now_ms(const struct skald_host *h)
{
	(void)h;
	return sk_now_ms();
}

static int64_t host_monotonic_ms(const struct skald_host *h)
{
	(void)h;
	return sk_mono_ms();
}

/* ------------------------------------------------------------------ */
/* Host services: execution */

bool sk_plugins_on_loop(const struct sk_plugins *ps)
{
	return pthread_equal(pthread_self(), ps->loop_thread);
}

/* Log and refuse a loop-thread service called from elsewhere. */
static bool on_loop_or_complain(struct sk_plugin *pl, const char *what)
{
	if (sk_plugins_on_loop(pl->set))
		return true;
	sk_plugin_say(pl, SKALD_LOG_ERROR,
		      "%s called off the loop thread; "
		      "refused (see host.h)",
		      what);
	return false;
}

static void on_ptimer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sk_ptimer *t = sk_container_of(w, struct sk_ptimer, w);

	(void)loop;
	(void)revents;
	/* t may be freed by fn (timer_del): not touched afterwards. */
	t->fn(t->arg);
}

static struct skald_timer *host_timer_add(const struct skald_host *h,
					  uint64_t after_ms, uint64_t repeat_ms,
					  skald_fn fn, void *arg)
{
	struct sk_plugin *pl = sk_plugin_of(h);
	struct sk_ptimer *t;

	if (!fn || !on_loop_or_complain(pl, "timer_add") ||
	    pl->phase >= SK_PLUGIN_STOPPED)
		return NULL;
	t = sk_xcalloc(1, sizeof(*t));
	t->pl = pl;
	t->fn = fn;
	t->arg = arg;
	ev_timer_init(&t->w, on_ptimer, (double)after_ms / 1000.0,
		      (double)repeat_ms / 1000.0);
	ev_timer_start(pl->set->loop, &t->w);
	sk_list_add_tail(&pl->timers, &t->link);
	return (struct skald_timer *)t;
}

static void ptimer_free(struct sk_ptimer *t)
{
	ev_timer_stop(t->pl->set->loop, &t->w);
	sk_list_del(&t->link);
	free(t);
}

static void host_timer_del(const struct skald_host *h, struct skald_timer *tm)
{
	struct sk_plugin *pl = sk_plugin_of(h);
	struct sk_ptimer *t = (struct sk_ptimer *)tm;

	if (!t || !on_loop_or_complain(pl, "timer_del"))
		return;
	if (t->pl != pl) {
		sk_plugin_say(pl, SKALD_LOG_ERROR,
			      "timer_del: not this "
			      "plugin's timer; ignored");
		return;
	}
	ptimer_free(t);
}

/* Run every queued post, in order. */
static void posts_run(struct sk_plugins *ps)
{
	struct sk_list todo;

	sk_list_init(&todo);
	pthread_mutex_lock(&ps->post_mu);
	sk_list_splice(&todo, &ps->posts);
	pthread_mutex_unlock(&ps->post_mu);
	while (!sk_list_empty(&todo)) {
		struct sk_post *p = sk_list_first(&todo, struct sk_post, link);

		sk_list_del(&p->link);
		p->fn(p->arg);
		if (p->pl)
			atomic_fetch_sub(&p->pl->inflight, 1);
		free(p);
	}
}

static void on_post_wake(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)loop;
	(void)revents;
	posts_run(sk_container_of(w, struct sk_plugins, post_wake));
}

static int post_node(struct sk_plugins *ps, struct sk_post *p)
{
	pthread_mutex_lock(&ps->post_mu);
	sk_list_add_tail(&ps->posts, &p->link);
	pthread_mutex_unlock(&ps->post_mu);
	ev_async_send(ps->loop, &ps->post_wake);
	return 0;
}

void sk_plugins_post(struct sk_plugins *ps, struct sk_plugin *pl,
		     void (*fn)(void *arg), void *arg)
{
	struct sk_post *p = sk_xcalloc(1, sizeof(*p));

	p->fn = fn;
	p->arg = arg;
	p->pl = pl;
	if (pl)
		atomic_fetch_add(&pl->inflight, 1);
	post_node(ps, p);
}

static int host_post(const struct skald_host *h, skald_fn fn, void *arg)
{
	struct sk_plugin *pl = sk_plugin_of(h);
	struct sk_post *p;

	if (!fn)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->fn = fn;
	p->arg = arg;
	p->pl = pl;
	atomic_fetch_add(&pl->inflight, 1);
	return post_node(pl->set, p);
}

struct sk_pool *sk_plugins_pool(struct sk_plugins *ps)
{
	if (!ps->pool)
		ps->pool =
			sk_pool_new(ps->loop, SK_PLUGIN_POOL_THREADS, "plugin");
	return ps->pool;
}

static void pjob_run(struct sk_job *job)
{
	struct sk_pjob *j = sk_container_of(job, struct sk_pjob, job);

	j->run(j->arg);
}

static void pjob_done(struct sk_job *job)
{
	struct sk_pjob *j = sk_container_of(job, struct sk_pjob, job);

	if (j->done)
		j->done(j->arg);
	atomic_fetch_sub(&j->pl->inflight, 1);
	free(j);
}

static int host_submit(const struct skald_host *h, skald_fn run, skald_fn done,
		       void *arg)
{
	struct sk_plugin *pl = sk_plugin_of(h);
	struct sk_pjob *j;

	if (!run)
		return -EINVAL;
	if (!on_loop_or_complain(pl, "submit"))
		return -EPERM;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->job.run = pjob_run;
	j->job.done = pjob_done;
	j->pl = pl;
	j->run = run;
	j->done = done;
	j->arg = arg;
	atomic_fetch_add(&pl->inflight, 1);
	sk_pool_submit(sk_plugins_pool(pl->set), &j->job);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Host services: key/value store */

static int kv_key_check(struct sk_plugin *pl, const char *what, const char *key)
{
	size_t len;

	if (!on_loop_or_complain(pl, what))
		return -EPERM;
	if (!key)
		return -EINVAL;
	len = strnlen(key, SK_PLUGIN_KV_KEY_MAX + 1);
	if (len > SK_PLUGIN_KV_KEY_MAX) {
		sk_plugin_say(pl, SKALD_LOG_WARN,
			      "%s: key longer than %d "
			      "bytes",
			      what, SK_PLUGIN_KV_KEY_MAX);
		return -ENAMETOOLONG;
	}
	return 0;
}

static int kv_result(struct sk_plugin *pl, int rc, const struct sk_err *err)
{
	if (rc == -EIO)
		sk_plugin_say(pl, SKALD_LOG_ERROR, "key/value store: %s",
			      err->msg);
	return rc;
}

static int host_kv_put(const struct skald_host *h, const char *key,
		       const void *value, size_t len)
{
	struct sk_plugin *pl = sk_plugin_of(h);
	struct sk_err err;
	int rc = kv_key_check(pl, "kv_put", key);

	if (rc)
		return rc;
	if (len > SK_PLUGIN_KV_VALUE_MAX)
		return -EFBIG;
	if (len && !value)
		return -EINVAL;
	rc = sk_meta_kv_put(pl->set->meta, h->plugin_name, key, value, len,
			    &err);
	return kv_result(pl, rc, &err);
}

static int host_kv_get(const struct skald_host *h, const char *key, void *buf,
		       size_t cap, size_t *len)
{
	struct sk_plugin *pl = sk_plugin_of(h);
	struct sk_err err;
	size_t dummy;
	int rc = kv_key_check(pl, "kv_get", key);

	if (rc)
		return rc;
	if (cap && !buf)
		return -EINVAL;
	rc = sk_meta_kv_get(pl->set->meta, h->plugin_name, key, buf, cap,
			    len ? len : &dummy, &err);
	return kv_result(pl, rc, &err);
}

static int host_kv_del(const struct skald_host *h, const char *key)
{
	struct sk_plugin *pl = sk_plugin_of(h);
	struct sk_err err;
	int rc = kv_key_check(pl, "kv_del", key);

	if (rc)
		return rc;
	rc = sk_meta_kv_del(pl->set->meta, h->plugin_name, key, &err);
	return kv_result(pl, rc, &err);
}

static int host_kv_list(const struct skald_host *h, const char *prefix,
			skald_kv_fn fn, void *arg)
{
	struct sk_plugin *pl = sk_plugin_of(h);
	struct sk_err err;
	int rc = kv_key_check(pl, "kv_list", prefix ? prefix : "");

	if (rc)
		return rc;
	if (!fn)
		return -EINVAL;
	rc = sk_meta_kv_list(pl->set->meta, h->plugin_name,
			     prefix ? prefix : "", fn, arg, &err);
	return kv_result(pl, rc, &err);
}

/* ------------------------------------------------------------------ */
/* Loading */

static void host_fill(struct sk_plugin *pl)
{
	struct skald_host *h = &pl->host;

	h->abi_major = SKALD_ABI_MAJOR;
	h->abi_minor = SKALD_ABI_MINOR;
	h->size = (uint32_t)sizeof(*h);
	h->build_sig = SKALD_BUILD_SIG;
	h->plugin_name = pl->desc.name;
	h->broker_version = SKALD_VERSION;
	h->log = host_log;
	h->vlog = host_vlog;
	h->mem_alloc = host_mem_alloc;
	h->mem_realloc = host_mem_realloc;
	h->mem_free = host_mem_free;
	h->metric_counter = host_metric_counter;
	h->metric_gauge = host_metric_gauge;
	h->metric_histogram = host_metric_histogram;
	h->metric_add = host_metric_add;
	h->metric_set = host_metric_set;
	h->metric_observe = host_metric_observe;
	h->now_ms = host_now_ms;
	h->monotonic_ms = host_monotonic_ms;
	h->timer_add = host_timer_add;
	h->timer_del = host_timer_del;
	h->post = host_post;
	h->submit = host_submit;
	h->config_string = host_config_string;
	h->config_int = host_config_int;
	h->config_bool = host_config_bool;
	h->config_given = host_config_given;
	h->kv_put = host_kv_put;
	h->kv_get = host_kv_get;
	h->kv_del = host_kv_del;
	h->kv_list = host_kv_list;
	h->records_foreach = sk_plugin_records_foreach;
	h->register_storage_tier = sk_plugin_register_tier;
	h->tier_done = sk_plugin_tier_done;
	h->tier_list_add = sk_plugin_tier_list_add;
}

/*
 * Plugins that could not be unloaded safely (work in flight, a tier still
 * in use). Their code stays mapped for the life of the process, so their
 * bookkeeping must too: this list is the one process-wide state here, by
 * design, like the dynamic loader's own list of objects.
 */
static pthread_mutex_t kept_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sk_plugin *kept[64];
static size_t n_kept;

/* Release one plugin: config, tier, handle (if safe), memory. */
static void plugin_unload(struct sk_plugin *pl)
{
	long inflight = atomic_load(&pl->inflight);
	long users = pl->tier ? atomic_load(&pl->tier->users) : 0;

	config_free(pl->config);
	pl->config = NULL;
	if (inflight || users) {
		/*
		 * Something may still call into the object: keep it mapped
		 * (and this struct, which its host pointer leads to).
		 */
		sk_warn("plugin %s (%s) stays loaded: %ld operations in "
			"flight, tier in use %ld times",
			pl->desc.name, pl->path, inflight, users);
		pthread_mutex_lock(&kept_mu);
		if (n_kept < SK_ARRAY_SIZE(kept))
			kept[n_kept++] = pl;
		pthread_mutex_unlock(&kept_mu);
		return;
	}
	free(pl->tier);
	pl->tier = NULL;
	if (pl->dl)
		dlclose(pl->dl);
	free(pl->path);
	free(pl->where);
	free(pl->label);
	free(pl);
}

/* dlerror() text without a leading "PATH: " that repeats ours. */
static const char *dl_reason(const char *path, const char *dlpath)
{
	const char *e = dlerror();
	size_t n;

	if (!e)
		return "unknown error";
	n = strlen(dlpath);
	if (strncmp(e, dlpath, n) == 0 && strncmp(e + n, ": ", 2) == 0)
		return e + n + 2;
	n = strlen(path);
	if (strncmp(e, path, n) == 0 && strncmp(e + n, ": ", 2) == 0)
		return e + n + 2;
	return e;
}

/* The descriptor checks of the top of this file, then the config. */
static int check_desc(struct sk_plugins *ps, struct sk_plugin *pl,
		      const struct skald_plugin_desc *raw,
		      const struct sk_plugin_decl *d, struct sk_err *err)
{
	char shown[200], diff[300];
	uint32_t size;

	if (raw->abi_major != SKALD_ABI_MAJOR)
		return sk_err_set(err,
				  "%s: plugin ABI major version: expected "
				  "%u, found %u (rebuild the plugin against "
				  "the headers of this Skald)",
				  pl->path, SKALD_ABI_MAJOR, raw->abi_major);
	if (raw->abi_minor > SKALD_ABI_MINOR)
		return sk_err_set(
			err,
			"%s: plugin ABI minor version: expected "
			"at most %u (ABI %u.%u), found %u (the plugin "
			"needs a newer Skald)",
			pl->path, SKALD_ABI_MINOR, SKALD_ABI_MAJOR,
			SKALD_ABI_MINOR, raw->abi_minor);
	size = raw->desc_size;
	if (size < SKALD_PLUGIN_DESC_V1_SIZE)
		return sk_err_set(err,
				  "%s: plugin descriptor size: expected at "
				  "least %zu, found %u",
				  pl->path, SKALD_PLUGIN_DESC_V1_SIZE, size);
	if (size > sizeof(struct skald_plugin_desc))
		return sk_err_set(err,
				  "%s: plugin descriptor size: expected at "
				  "most %zu for ABI %u.%u, found %u",
				  pl->path, sizeof(struct skald_plugin_desc),
				  raw->abi_major, raw->abi_minor, size);
	if (raw->build_sig != SKALD_BUILD_SIG) {
		sig_diff(SKALD_BUILD_SIG, raw->build_sig, diff, sizeof(diff));
		return sk_err_set(err,
				  "%s: plugin build signature: expected "
				  "0x%08x, found 0x%08x (%s)",
				  pl->path, SKALD_BUILD_SIG, raw->build_sig,
				  diff);
	}
	memcpy(&pl->desc, raw, size);
	if (!plugin_name_valid(pl->desc.name)) {
		shown_name(pl->desc.name, shown, sizeof(shown));
		return sk_err_set(err,
				  "%s: plugin name: expected "
				  "[a-z][a-z0-9_-]{0,63}, found %s",
				  pl->path, shown);
	}
	for (size_t i = 0; i < ps->n; i++)
		if (strcmp(ps->v[i]->desc.name, pl->desc.name) == 0)
			return sk_err_set(err,
					  "%s: plugin name: expected a "
					  "name not in use, found '%s' "
					  "(already loaded from %s, %s)",
					  pl->path, pl->desc.name,
					  ps->v[i]->path, ps->v[i]->label);
	if (pl->desc.provides & ~(uint64_t)SK_PROVIDES_KNOWN)
		return sk_err_set(err,
				  "%s: plugin provides: expected bits "
				  "within 0x%x, found 0x%llx",
				  pl->path, SK_PROVIDES_KNOWN,
				  (unsigned long long)pl->desc.provides);
	if (schema_check(pl, err))
		return -EINVAL;
	return config_apply(pl, d, err);
}

static int load_one(struct sk_plugins *ps, const struct sk_plugin_decl *d,
		    size_t idx, struct sk_err *err)
{
	struct sk_plugin *pl = sk_xcalloc(1, sizeof(*pl));
	const struct skald_plugin_desc *raw;
	char *dlpath;
	int rc;

	pl->set = ps;
	pl->path = sk_xstrdup(d->path);
	pl->where = sk_xstrdup(d->where ? d->where : "");
	pl->label = sk_xasprintf("plugins[%zu]", idx);
	sk_list_init(&pl->timers);
	/* A bare name would make dlopen search the library path. */
	dlpath = strchr(d->path, '/') ? sk_xstrdup(d->path)
				      : sk_xasprintf("./%s", d->path);
	dlerror();
	pl->dl = dlopen(dlpath, RTLD_NOW | RTLD_LOCAL);
	if (!pl->dl) {
		rc = sk_err_set(err, "%s: cannot load: %s", pl->path,
				dl_reason(pl->path, dlpath));
		goto fail;
	}
	dlerror();
	raw = dlsym(pl->dl, SKALD_PLUGIN_SYMBOL);
	if (!raw) {
		rc = sk_err_set(err, "%s: not a Skald plugin: no symbol %s",
				pl->path, SKALD_PLUGIN_SYMBOL);
		goto fail;
	}
	rc = check_desc(ps, pl, raw, d, err);
	if (rc)
		goto fail;
	host_fill(pl);
	free(dlpath);
	ps->v = sk_xrealloc(ps->v, (ps->n + 1) * sizeof(*ps->v));
	ps->v[ps->n++] = pl;
	return 0;

fail:
	free(dlpath);
	plugin_unload(pl);
	return rc;
}

int sk_plugins_load(struct sk_plugins **out, const struct sk_plugin_decl *decls,
		    size_t n, struct sk_err *err)
{
	struct sk_plugins *ps = sk_xcalloc(1, sizeof(*ps));
	int rc;

	pthread_mutex_init(&ps->post_mu, NULL);
	sk_list_init(&ps->posts);
	for (size_t i = 0; i < n; i++) {
		rc = load_one(ps, &decls[i], i, err);
		if (rc) {
			sk_plugins_free(ps, 0);
			*out = NULL;
			return rc;
		}
	}
	*out = ps;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Lifecycle */

static void plugin_stop(struct sk_plugin *pl)
{
	if (pl->phase != SK_PLUGIN_READY && pl->phase != SK_PLUGIN_STARTED)
		return;
	pl->phase = SK_PLUGIN_STOPPED;
	if (pl->desc.stop)
		pl->desc.stop(pl->state);
}

static void plugin_fini(struct sk_plugin *pl)
{
	size_t n = 0;

	if (pl->phase != SK_PLUGIN_STOPPED)
		return;
	/* Timers the plugin forgot: fini must not find them firing. */
	while (!sk_list_empty(&pl->timers)) {
		ptimer_free(sk_list_first(&pl->timers, struct sk_ptimer, link));
		n++;
	}
	if (n)
		sk_warn("plugin %s: %zu timers still set after stop; deleted",
			pl->desc.name, n);
	pl->phase = SK_PLUGIN_DONE;
	if (pl->desc.fini)
		pl->desc.fini(pl->state);
	pl->state = NULL;
	if (atomic_load(&pl->mem_blocks))
		sk_warn("plugin %s: %lld bytes in %lld blocks from mem_alloc "
			"not freed by fini",
			pl->desc.name, (long long)atomic_load(&pl->mem_bytes),
			(long long)atomic_load(&pl->mem_blocks));
}

int sk_plugins_init(struct sk_plugins *ps, struct ev_loop *loop,
		    struct sk_meta *meta, struct sk_metrics *metrics,
		    struct sk_err *err)
{
	ps->loop = loop;
	ps->meta = meta;
	ps->metrics = metrics;
	ps->loop_thread = pthread_self();
	ev_async_init(&ps->post_wake, on_post_wake);
	ev_async_start(loop, &ps->post_wake);
	ev_unref(loop); /* must not keep ev_run alive on its own */
	ps->post_started = true;

	for (size_t i = 0; i < ps->n; i++) {
		struct sk_plugin *pl = ps->v[i];
		const char *pairs[] = { "plugin", pl->desc.name };
		struct skald_error perr = { "" };
		int rc = 0;

		pl->m_mem = sk_metrics_get(
			metrics, SK_METRIC_GAUGE, "skald_plugin_memory_bytes",
			"Bytes a plugin allocated with mem_alloc and has not "
			"freed",
			pairs, 1, NULL, 0, NULL);
		pl->phase = SK_PLUGIN_INIT;
		if (pl->desc.init)
			rc = pl->desc.init(&pl->host, pl->config, &pl->state,
					   &perr);
		if (rc) {
			perr.msg[sizeof(perr.msg) - 1] = '\0';
			/* init failed: no fini; drop what it registered. */
			pl->phase = SK_PLUGIN_DONE;
			sk_err_set(err, "%s: plugin %s: init failed: %s%s%s%s",
				   pl->path, pl->desc.name,
				   perr.msg[0] ? perr.msg : "no reason given",
				   rc < 0 ? " (" : "",
				   rc < 0 ? strerror(-rc) : "",
				   rc < 0 ? ")" : "");
			while (!sk_list_empty(&pl->timers))
				ptimer_free(sk_list_first(
					&pl->timers, struct sk_ptimer, link));
			for (size_t j = i; j-- > 0;)
				plugin_stop(ps->v[j]);
			return rc < 0 ? rc : -EINVAL;
		}
		pl->phase = SK_PLUGIN_READY;
		if ((pl->desc.provides & SKALD_PROVIDES_STORAGE_TIER) &&
		    !pl->tier)
			sk_warn("plugin %s (%s) says it provides a storage "
				"tier but registered none",
				pl->desc.name, pl->path);
		sk_info("plugin %s %s loaded from %s", pl->desc.name,
			pl->desc.version ? pl->desc.version : "", pl->path);
	}
	ps->inited = true;
	return 0;
}

static void on_start_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sk_plugins *ps =
		sk_container_of(w, struct sk_plugins, start_timer);

	(void)loop;
	(void)revents;
	for (size_t i = 0; i < ps->n; i++) {
		struct sk_plugin *pl = ps->v[i];
		struct skald_error perr = { "" };
		char msg[600];
		int rc;

		if (pl->phase != SK_PLUGIN_READY)
			continue;
		rc = pl->desc.start ? pl->desc.start(pl->state, &perr) : 0;
		if (rc == 0) {
			pl->phase = SK_PLUGIN_STARTED;
			continue;
		}
		perr.msg[sizeof(perr.msg) - 1] = '\0';
		snprintf(msg, sizeof(msg),
			 "%s: plugin %s: start failed: %s%s%s%s", pl->path,
			 pl->desc.name,
			 perr.msg[0] ? perr.msg : "no reason given",
			 rc < 0 ? " (" : "", rc < 0 ? strerror(-rc) : "",
			 rc < 0 ? ")" : "");
		if (ps->start_failed)
			ps->start_failed(ps->start_arg, msg);
		return;
	}
}

void sk_plugins_start_soon(struct sk_plugins *ps,
			   void (*failed)(void *arg, const char *msg),
			   void *arg)
{
	if (!ps || !ps->inited)
		return;
	ps->start_failed = failed;
	ps->start_arg = arg;
	ev_timer_init(&ps->start_timer, on_start_timer, 0.0, 0.0);
	ev_timer_start(ps->loop, &ps->start_timer);
}

void sk_plugins_stop(struct sk_plugins *ps)
{
	if (!ps || ps->stopped)
		return;
	ps->stopped = true;
	if (ps->loop)
		ev_timer_stop(ps->loop, &ps->start_timer);
	for (size_t i = ps->n; i-- > 0;)
		plugin_stop(ps->v[i]);
}

size_t sk_plugins_busy(const struct sk_plugins *ps)
{
	size_t n = 0;

	if (!ps)
		return 0;
	for (size_t i = 0; i < ps->n; i++)
		n += (size_t)atomic_load(&ps->v[i]->inflight);
	return n;
}

static void on_drain_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

void sk_plugins_drain(struct sk_plugins *ps, int64_t drain_ms)
{
	int64_t deadline = sk_mono_ms() + drain_ms;
	ev_timer guard;

	if (!ps || !ps->loop)
		return;
	/* Wakes the loop now and then, so that the deadline is seen. */
	ev_timer_init(&guard, on_drain_guard, 0.05, 0.05);
	ev_timer_start(ps->loop, &guard);
	while (sk_plugins_busy(ps) && sk_mono_ms() < deadline) {
		posts_run(ps);
		if (sk_plugins_busy(ps))
			ev_run(ps->loop, EVRUN_ONCE);
	}
	ev_timer_stop(ps->loop, &guard);
	posts_run(ps);
}

void sk_plugins_free(struct sk_plugins *ps, int64_t drain_ms)
{
	struct sk_list left;
	size_t n_left = 0;

	if (!ps)
		return;
	sk_plugins_stop(ps);
	sk_plugins_drain(ps, drain_ms);
	/* Finishes every queued job, blocking until they are done. */
	sk_pool_free(ps->pool);
	ps->pool = NULL;
	if (ps->loop)
		posts_run(ps);
	for (size_t i = ps->n; i-- > 0;)
		plugin_fini(ps->v[i]);
	/* fini may have submitted or posted clean-up work. */
	sk_pool_free(ps->pool);
	ps->pool = NULL;
	sk_list_init(&left);
	pthread_mutex_lock(&ps->post_mu);
	sk_list_splice(&left, &ps->posts);
	pthread_mutex_unlock(&ps->post_mu);
	while (!sk_list_empty(&left)) {
		struct sk_post *p = sk_list_first(&left, struct sk_post, link);

		sk_list_del(&p->link);
		if (p->pl)
			atomic_fetch_sub(&p->pl->inflight, 1);
		free(p);
		n_left++;
	}
	if (n_left)
		sk_warn("plugins: %zu posts arrived after fini; dropped",
			n_left);
	for (size_t i = ps->n; i-- > 0;)
		plugin_unload(ps->v[i]);
	if (ps->post_started) {
		ev_ref(ps->loop);
		ev_async_stop(ps->loop, &ps->post_wake);
	}
	pthread_mutex_destroy(&ps->post_mu);
	free(ps->v);
	free(ps);
}

size_t sk_plugins_count(const struct sk_plugins *ps)
{
	return ps ? ps->n : 0;
}

const char *sk_plugins_name(const struct sk_plugins *ps, size_t i)
{
	return ps && i < ps->n ? ps->v[i]->desc.name : NULL;
}

struct sk_tier *sk_plugins_tier(struct sk_plugins *ps, const char *name,
				char *list, size_t cap)
{
	struct sk_tier *found = NULL;
	size_t n = 0;

	if (cap)
		list[0] = '\0';
	for (size_t i = 0; ps && i < ps->n; i++) {
		struct sk_plugin *pl = ps->v[i];

		if (!pl->tier)
			continue;
		if (name && strcmp(pl->desc.name, name) == 0)
			found = pl->tier;
		if (n < cap)
			n += (size_t)snprintf(list + n, cap - n, "%s%s",
					      n ? ", " : "", pl->desc.name);
	}
	return found;
}
