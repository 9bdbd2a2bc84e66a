/*
 * The plugin loader and host (core/plugin*.c) with real shared objects
 * built from tests/plugins/ (the Makefile's `plugins` target): every
 * refusal message word for word, the lifecycle order, each host service,
 * the storage-tier glue in both calling modes, the ABI 1.0 compatibility
 * plugin, unloading, and the YAML plugins:/storage: sections.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "codec.h"
#include "config.h"
#include "crc32c.h"
#include "meta.h"
#include "metrics.h"
#include "plugin.h"
#include "plugin_internal.h"
#include "plugin_tier.h"
#include "record_view.h"
#include "say.h"
#include "skald/host.h"
#include "skald/storage.h"
#include "tap.h"

#ifndef SK_TEST_BUILD
#define SK_TEST_BUILD "build"
#endif

static char tmpdir[256];
static struct ev_loop *loop;
static struct sk_meta *meta;
static struct sk_metrics *metrics;

/* The path of test plugin name in this build (static buffer ring). */
static const char *so(const char *name)
{
	static char bufs[8][512];
	static int i;
	char *b = bufs[i++ % 8];

	snprintf(b, 512, "%s/tests/plugins/%s.so", SK_TEST_BUILD, name);
	return b;
}

/* Is the shared object still mapped in this process? */
static bool mapped(const char *path)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);

	if (h)
		dlclose(h);
	return h != NULL;
}

/* A decl with up to 4 settings (key, value pairs; NULL-ended). */
struct decl_buf {
	struct sk_plugin_decl d;
	struct sk_plugin_setting s[4];
};

static struct sk_plugin_decl *decl(struct decl_buf *b, const char *path,
				   const char *const *kv)
{
	memset(b, 0, sizeof(*b));
	b->d.path = (char *)path;
	b->d.where = (char *)"t.yaml:3";
	b->d.settings = b->s;
	for (size_t i = 0; kv && kv[2 * i]; i++) {
		b->s[i].key = (char *)kv[2 * i];
		b->s[i].value = (char *)kv[2 * i + 1];
		b->s[i].where = (char *)"t.yaml:5";
		b->d.n_settings++;
	}
	return &b->d;
}

/* Load one plugin that must be refused with exactly want. */
static void refused(const char *what, const char *path, const char *const *kv,
		    const char *want)
{
	struct sk_plugins *ps = (struct sk_plugins *)1;
	struct sk_err err = { "" };
	struct decl_buf b;
	int rc = sk_plugins_load(&ps, decl(&b, path, kv), 1, &err);

	ok(rc < 0 && ps == NULL, "%s: refused", what);
	is_str(err.msg, want, "%s: message", what);
	ok(!mapped(path), "%s: nothing stays loaded", what);
}

/* Run the loop until *flag or ms passed. */
static bool run_until(const bool *flag, int ms)
{
	int64_t end = sk_mono_ms() + ms;

	while (!*flag && sk_mono_ms() < end) {
		ev_run(loop, EVRUN_NOWAIT);
		if (!*flag)
			usleep(500);
	}
	return *flag;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 65536);
	size_t n;

	if (!f)
		return buf;
	n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static char *render(void)
{
	struct sk_buf out = { 0 };
	char *s;

	sk_metrics_render(metrics, &out);
	s = sk_xstrndup((const char *)out.data, out.len);
	sk_buf_free(&out);
	return s;
}

/* ------------------------------------------------------------------ */

static void test_refusals(void)
{
	char want[1024];
	const char *p;

	p = so("abi_major_plus1");
	snprintf(want, sizeof(want),
		 "%s: plugin ABI major version: expected %u, found %u "
		 "(rebuild the plugin against the headers of this Skald)",
		 p, SKALD_ABI_MAJOR, SKALD_ABI_MAJOR + 1);
	refused("abi major + 1", p, NULL, want);

	p = so("abi_minor_plus1");
	snprintf(want, sizeof(want),
		 "%s: plugin ABI minor version: expected at most %u (ABI "
		 "%u.%u), found %u (the plugin needs a newer Skald)",
		 p, SKALD_ABI_MINOR, SKALD_ABI_MAJOR, SKALD_ABI_MINOR,
		 SKALD_ABI_MINOR + 1);
	refused("abi minor + 1", p, NULL, want);

	p = so("small_desc_size");
	snprintf(want, sizeof(want),
		 "%s: plugin descriptor size: expected at least %zu, found 16",
		 p, SKALD_PLUGIN_DESC_V1_SIZE);
	refused("small desc_size", p, NULL, want);

	p = so("bad_sig");
	if (sizeof(void *) == 8 && sizeof(long) == 8) {
		snprintf(want, sizeof(want),
			 "%s: plugin build signature: expected 0x%08x, found "
			 "0x%08x (sizeof(void *): expected 8, found 4; "
			 "sizeof(long): expected 8, found 4)",
			 p, SKALD_BUILD_SIG,
			 (SKALD_BUILD_SIG & ~0xf0fu) | 0x404u);
		refused("bad build signature", p, NULL, want);
	} else {
		for (int i = 0; i < 3; i++)
			ok(1, "# SKIP bad_sig assumes an LP64 host");
	}

	p = so("missing_symbol");
	snprintf(want, sizeof(want),
		 "%s: cannot load: undefined symbol: sk_plugin_no_such_symbol",
		 p);
	refused("missing symbol (RTLD_NOW)", p, NULL, want);

	p = so("no_desc");
	snprintf(want, sizeof(want),
		 "%s: not a Skald plugin: no symbol skald_plugin_desc", p);
	refused("no descriptor", p, NULL, want);

	p = so("bad_name");
	snprintf(want, sizeof(want),
		 "%s: plugin name: expected [a-z][a-z0-9_-]{0,63}, found "
		 "'Bad Name'",
		 p);
	refused("bad name", p, NULL, want);

	p = so("no_such_plugin");
	snprintf(want, sizeof(want),
		 "%s: cannot load: cannot open shared object file: No such "
		 "file or directory",
		 p);
	refused("missing file", p, NULL, want);

	/* A bare name is relative to the working directory, not searched. */
	refused("bare name", "ok_min.so", NULL,
		"ok_min.so: cannot load: cannot open shared object file: No "
		"such file or directory");

	p = so("bad_schema");
	snprintf(want, sizeof(want),
		 "%s: config schema: key 'workers': default: expected an "
		 "integer in [1, 64], got '0'",
		 p);
	refused("schema default out of its bounds", p, NULL, want);
}

static void test_bad_config(void)
{
	const char *p = so("bad_config");
	char want[1024];

	snprintf(want, sizeof(want),
		 "t.yaml:5: plugins[0].config.port: expected an integer in "
		 "[1, 65535], got 'eighty' (plugin %s)",
		 p);
	refused("config: int", p,
		(const char *const[]){ "endpoint", "e", "port", "eighty",
				       NULL },
		want);
	snprintf(want, sizeof(want),
		 "t.yaml:5: plugins[0].config.nope: unknown key (plugin %s "
		 "has: port, endpoint, mode, verbose, secret_key)",
		 p);
	refused("config: unknown key", p,
		(const char *const[]){ "nope", "1", NULL }, want);
	snprintf(want, sizeof(want),
		 "t.yaml:3: plugins[0].config: missing required key "
		 "'endpoint' (plugin %s)",
		 p);
	refused("config: required key", p,
		(const char *const[]){ "port", "80", NULL }, want);
	snprintf(want, sizeof(want),
		 "t.yaml:5: plugins[0].config.verbose: expected true or "
		 "false, got 'yes' (plugin %s)",
		 p);
	refused("config: bool", p,
		(const char *const[]){ "endpoint", "e", "verbose", "yes",
				       NULL },
		want);
	snprintf(want, sizeof(want),
		 "t.yaml:5: plugins[0].config.mode: expected one of 'fast', "
		 "'safe', got 'slow' (plugin %s)",
		 p);
	refused("config: choices", p,
		(const char *const[]){ "endpoint", "e", "mode", "slow", NULL },
		want);
	snprintf(want, sizeof(want),
		 "t.yaml:5: plugins[0].config.secret_key: expected at least "
		 "8 characters, got 6 (plugin %s)",
		 p);
	refused("config: secret too short, value not shown", p,
		(const char *const[]){ "endpoint", "e", "secret_key", "hunter",
				       NULL },
		want);
	snprintf(want, sizeof(want),
		 "t.yaml:5: plugins[0].config.endpoint: must not be empty "
		 "(plugin %s)",
		 p);
	refused("config: empty string", p,
		(const char *const[]){ "endpoint", "", NULL }, want);
}

/* Loading two plugins with one name. */
static void test_duplicate(void)
{
	struct sk_plugin_decl d[2];
	struct sk_plugins *ps;
	struct sk_err err = { "" };
	struct decl_buf b0, b1;
	char want[1024];

	d[0] = *decl(&b0, so("ok_min"), NULL);
	d[1] = *decl(&b1, so("dup_name"), NULL);
	ok(sk_plugins_load(&ps, d, 2, &err) < 0, "duplicate name: refused");
	snprintf(want, sizeof(want),
		 "%s: plugin name: expected a name not in use, found "
		 "'ok_min' (already loaded from %s, plugins[0])",
		 so("dup_name"), so("ok_min"));
	is_str(err.msg, want, "duplicate name: message");
	ok(!mapped(so("ok_min")) && !mapped(so("dup_name")),
	   "duplicate name: neither stays loaded");
}

/* init fails: the earlier plugin is stopped and finished, not started. */
static void test_failing_init(void)
{
	char trace[300], want[1024], *t;
	const char *kv[] = { "trace", trace, NULL };
	struct sk_plugin_decl d[2];
	struct sk_plugins *ps;
	struct sk_err err = { "" };
	struct decl_buf b0, b1;
	int rc;

	snprintf(trace, sizeof(trace), "%s/trace-fail.txt", tmpdir);
	d[0] = *decl(&b0, so("lifecycle"), kv);
	d[1] = *decl(&b1, so("failing_init"), NULL);
	ok(sk_plugins_load(&ps, d, 2, &err) == 0, "failing_init loads");
	rc = sk_plugins_init(ps, loop, meta, metrics, &err);
	is(rc, -EHOSTUNREACH, "init's error is returned");
	snprintf(want, sizeof(want),
		 "%s: plugin failing_init: init failed: cannot reach the moon "
		 "(No route to host)",
		 so("failing_init"));
	is_str(err.msg, want, "failing init: message");
	sk_plugins_free(ps, 1000);
	t = slurp(trace);
	is_str(t,
	       "init level=5 boots=3 name=lifecycle\n"
	       "stop timer_add=null\nfini\n",
	       "the plugin before it: init, stop, fini (never started)");
	free(t);
	ok(!mapped(so("failing_init")) && !mapped(so("lifecycle")),
	   "both unloaded");
}

/* The whole lifecycle, twice (the key/value store persists). */
static void test_lifecycle(void)
{
	char trace[300], want[2048], *t, *m;
	const char *kv[] = { "trace", trace, "level", "7", NULL };
	struct sk_plugin_decl d[2];
	struct sk_plugins *ps;
	struct sk_err err = { "" };
	struct decl_buf b0, b1;
	char buf[16];
	size_t len = 0;

	snprintf(trace, sizeof(trace), "%s/trace.txt", tmpdir);
	for (int round = 1; round <= 2; round++) {
		bool ready = false;

		unlink(trace);
		d[0] = *decl(&b0, so("lifecycle"), kv);
		d[1] = *decl(&b1, so("abi_compat"), NULL);
		if (!ok(sk_plugins_load(&ps, d, 2, &err) == 0, "round %d: load",
			round))
			diag("%s", err.msg);
		if (!ok(sk_plugins_init(ps, loop, meta, metrics, &err) == 0,
			"round %d: init", round))
			diag("%s", err.msg);
		is(sk_plugins_count(ps), 2, "two plugins");
		is_str(sk_plugins_name(ps, 1), "abi_compat",
		       "the ABI 1.0 plugin loaded and initialised");
		sk_plugins_start_soon(ps, NULL, NULL);
		for (int i = 0; i < 2000 && !ready; i++) {
			ev_run(loop, EVRUN_NOWAIT);
			t = slurp(trace);
			ready = strstr(t, "ready\n") != NULL;
			free(t);
			usleep(1000);
		}
		ok(ready, "round %d: started and ran its chain", round);
		m = render();
		ok(strstr(m, "lifecycle_events_total{plugin=\"lifecycle\","
			     "kind=\"start\"} ") != NULL,
		   "counter registered with the plugin label");
		ok(strstr(m, "lifecycle_ready{plugin=\"lifecycle\"} 1\n") !=
			   NULL,
		   "gauge set");
		snprintf(want, sizeof(want),
			 "skald_plugin_memory_bytes{plugin=\"lifecycle\"} 0\n");
		ok(strstr(m, "skald_plugin_memory_bytes{plugin=\"lifecycle\"}"
			     " ") != NULL &&
			   !strstr(m, want),
		   "memory gauge counts its allocation");
		ok(strstr(m,
			  "abi_compat_inits_total{plugin=\"abi_compat\"} ") !=
			   NULL,
		   "the ABI 1.0 plugin used metrics");
		free(m);
		sk_plugins_stop(ps);
		is(sk_plugins_busy(ps), 0, "nothing in flight after stop");
		sk_plugins_free(ps, 1000);
		t = slurp(trace);
		snprintf(want, sizeof(want),
			 "init level=7 boots=%d name=lifecycle\n"
			 "start\n"
			 "post on_loop=1\n"
			 "run off_loop=1\n"
			 "done on_loop=1\n"
			 "timer\n"
			 "ready\n"
			 "stop timer_add=null\n"
			 "fini\n",
			 round);
		is_str(t, want, "round %d: events in order", round);
		free(t);
		ok(!mapped(so("lifecycle")) && !mapped(so("abi_compat")),
		   "round %d: unloaded after fini", round);
		m = render();
		ok(strstr(m, "skald_plugin_memory_bytes{plugin=\"lifecycle\"} "
			     "0\n") != NULL,
		   "round %d: memory back to 0", round);
		free(m);
	}
	ok(sk_meta_kv_get(meta, "lifecycle", "boots", buf, sizeof(buf), &len,
			  &err) == 0 &&
		   len == 1 && buf[0] == '2',
	   "kv: boots=2 under the plugin's namespace");
	ok(sk_meta_kv_get(meta, "abi_compat", "boots", buf, sizeof(buf), &len,
			  &err) == -ENOENT,
	   "kv: other plugins do not see it");
}

/* ------------------------------------------------------------------ */
/* Host services called directly through a plugin's table */

static int count_rec(void *arg, const struct skald_record_view *r)
{
	int *n = arg;

	(void)r;
	(*n)++;
	return 0;
}

struct recs {
	int n;
	int64_t offsets[8];
	char keys[8][16];
	char hdr[8][32];
};

static int collect(void *arg, const struct skald_record_view *r)
{
	struct recs *c = arg;

	if (c->n >= 8)
		return 1;
	c->offsets[c->n] = r->offset;
	snprintf(c->keys[c->n], 16, "%.*s", r->key_len < 0 ? 4 : r->key_len,
		 r->key_len < 0 ? "null" : (const char *)r->key);
	if (r->n_headers)
		snprintf(c->hdr[c->n], 32, "%.*s=%.*s", r->headers[0].key_len,
			 r->headers[0].key, r->headers[0].value_len,
			 (const char *)r->headers[0].value);
	ok(r->size == sizeof(*r), "view size is the host's");
	c->n++;
	return 0;
}

static void *kv_thread(void *arg)
{
	const struct skald_host *h = arg;

	return (void *)(intptr_t)h->kv_put(h, "x", "y", 1);
}

static void on_posted(void *arg)
{
	*(bool *)arg = true;
}

static void *post_thread(void *arg)
{
	struct sk_plugin *pl = arg;

	pl->host.post(&pl->host, on_posted, pl->state);
	return NULL;
}

static int list_fn(void *arg, const char *key, const void *v, size_t len)
{
	char *out = arg;

	strcat(out, key);
	strcat(out, "=");
	strncat(out, v, len);
	strcat(out, ";");
	return 0;
}

static void test_host_services(void)
{
	struct sk_plugins *ps;
	struct sk_err err = { "" };
	struct decl_buf b;
	const struct skald_host *h;
	struct skald_host small;
	struct skald_label lab = { "plugin", "x" };
	struct skald_metric *m1, *m2;
	struct sk_record_in recs[3];
	struct sk_record_header_in hdr = { "h", 1, "v", 1 };
	struct sk_buf batch = { 0 }, packed = { 0 };
	struct sk_batch_hdr bh;
	struct recs c = { 0 };
	char list[256] = "", buf[4];
	size_t len = 0;
	bool posted = false;
	pthread_t th;
	void *ret;
	void *p;
	int n = 0;

	ok(sk_plugins_load(&ps, decl(&b, so("ok_min"), NULL), 1, &err) == 0 &&
		   sk_plugins_init(ps, loop, meta, metrics, &err) == 0,
	   "ok_min: loaded and initialised");
	h = &ps->v[0]->host;
	is(h->abi_major, SKALD_ABI_MAJOR, "host table: abi major");
	is(h->size, sizeof(struct skald_host), "host table: size");
	is_str(h->plugin_name, "ok_min", "host table: plugin name");
	ok(SKALD_HOST_HAS(h, tier_list_add), "HAS: the last 1.0 member");
	small = *h;
	small.size = (uint32_t)offsetof(struct skald_host, kv_put);
	ok(SKALD_HOST_HAS(&small, config_given) &&
		   !SKALD_HOST_HAS(&small, kv_put),
	   "HAS: false past a smaller table");

	/* memory */
	p = h->mem_alloc(h, 100);
	is(atomic_load(&ps->v[0]->mem_bytes), 100, "mem: 100 bytes counted");
	p = h->mem_realloc(h, p, 300);
	is(atomic_load(&ps->v[0]->mem_bytes), 300, "mem: realloc counted");
	h->mem_free(h, p);
	is(atomic_load(&ps->v[0]->mem_bytes), 0, "mem: freed");
	is(atomic_load(&ps->v[0]->mem_blocks), 0, "mem: no block left");

	/* metrics */
	m1 = h->metric_counter(h, "ok_total", "Help", NULL, 0);
	m2 = h->metric_counter(h, "ok_total", "Help", NULL, 0);
	ok(m1 && m1 == m2, "metric: same name and labels, same series");
	ok(!h->metric_gauge(h, "ok_total", "Help", NULL, 0),
	   "metric: another type is refused");
	ok(!h->metric_counter(h, "bad name", "Help", NULL, 0),
	   "metric: a bad name is refused");
	ok(!h->metric_counter(h, "ok2_total", "Help", &lab, 1),
	   "metric: the plugin label is the host's");
	h->metric_add(m1, 2.5);
	h->metric_add(m1, -1);
	ok(sk_metric_value((struct sk_metric *)m1) == 2.5,
	   "metric: counters only go up");
	m1 = h->metric_histogram(h, "ok_seconds", "Latency", NULL, 0,
				 (const double[]){ 0.1, 1 }, 2);
	h->metric_observe(m1, 0.05);
	h->metric_observe(m1, 5);
	{
		char *r = render();

		ok(strstr(r, "ok_seconds_bucket{plugin=\"ok_min\",le=\"0.1\"} "
			     "1\n") &&
			   strstr(r, "ok_seconds_bucket{plugin=\"ok_min\","
				     "le=\"+Inf\"} 2\n") &&
			   strstr(r, "# TYPE ok_seconds histogram\n"),
		   "metric: histogram rendered for Prometheus");
		free(r);
	}

	/* key/value store */
	ok(h->kv_put(h, "a/1", "one", 3) == 0 &&
		   h->kv_put(h, "a/2", "two", 3) == 0 &&
		   h->kv_put(h, "b/1", "", 0) == 0,
	   "kv: put");
	is(h->kv_get(h, "a/1", buf, 2, &len), -ENOBUFS,
	   "kv: a small buffer gets -ENOBUFS");
	is(len, 3, "kv: ... and the length needed");
	is(h->kv_get(h, "b/1", buf, sizeof(buf), &len), 0, "kv: empty value");
	is(len, 0, "kv: ... of length 0");
	is(h->kv_list(h, "a/", list_fn, list), 0, "kv: list a prefix");
	is_str(list, "a/1=one;a/2=two;", "kv: ... in key order");
	is(h->kv_del(h, "a/1"), 0, "kv: del");
	is(h->kv_get(h, "a/1", buf, sizeof(buf), &len), -ENOENT,
	   "kv: deleted is absent");
	is(h->kv_del(h, "a/1"), 0, "kv: del of an absent key is 0");
	pthread_create(&th, NULL, kv_thread, (void *)h);
	pthread_join(th, &ret);
	is((intptr_t)ret, -EPERM, "kv: refused off the loop thread");

	/* post from another thread */
	ps->v[0]->state = &posted;
	pthread_create(&th, NULL, post_thread, ps->v[0]);
	pthread_join(th, NULL);
	ok(!posted, "post: not run on the posting thread");
	ok(run_until(&posted, 2000), "post: run on the loop");
	ps->v[0]->state = NULL;

	/* records: three records, one with a header, a null key */
	memset(recs, 0, sizeof(recs));
	for (int i = 0; i < 3; i++) {
		recs[i].key = i == 1 ? NULL : "k";
		recs[i].key_len = i == 1 ? -1 : 1;
		recs[i].value = "val";
		recs[i].value_len = 3;
		recs[i].timestamp = 1000 + i;
	}
	recs[2].headers = &hdr;
	recs[2].n_headers = 1;
	sk_batch_build(&batch, 40, recs, 3, 0, -1, -1, -1);
	sk_batch_build(&batch, 43, recs, 1, 0, -1, -1, -1);
	is(h->records_foreach(h, batch.data, batch.len,
			      SKALD_RECORDS_VERIFY_CRC, collect, &c),
	   0, "records: two batches walked");
	is(c.n, 4, "records: four records");
	ok(c.offsets[0] == 40 && c.offsets[2] == 42 && c.offsets[3] == 43,
	   "records: absolute offsets");
	ok(strcmp(c.keys[1], "null") == 0 && strcmp(c.keys[0], "k") == 0,
	   "records: keys, null kept null");
	is_str(c.hdr[2], "h=v", "records: headers");
	is(h->records_foreach(h, batch.data, batch.len - 5, 0, count_rec, &n),
	   0, "records: a partial batch at the end is ignored");
	is(n, 3, "records: ... after the whole ones");
	batch.data[SK_BATCH_HEADER_SIZE + 4] ^= 0x55;
	is(h->records_foreach(h, batch.data, batch.len,
			      SKALD_RECORDS_VERIFY_CRC, count_rec, &n),
	   -EBADMSG, "records: a bad CRC is -EBADMSG when verifying");
	batch.data[SK_BATCH_HEADER_SIZE + 4] ^= 0x55;
	/* the same records, gzip-compressed */
	sk_batch_parse_header(batch.data, batch.len, &bh);
	{
		struct sk_buf z = { 0 };
		struct sk_batch_hdr zh = bh;

		ok(sk_codec_compress(SK_CODEC_GZIP,
				     batch.data + SK_BATCH_HEADER_SIZE,
				     sk_batch_size(&bh) - SK_BATCH_HEADER_SIZE,
				     &z, 0, NULL) == 0,
		   "records: gzip the records");
		zh.attributes = SK_CODEC_GZIP;
		sk_batch_frame(&packed, &zh, z.data, z.len);
		sk_buf_free(&z);
	}
	memset(&c, 0, sizeof(c));
	is(h->records_foreach(h, packed.data, packed.len,
			      SKALD_RECORDS_VERIFY_CRC, collect, &c),
	   0, "records: a compressed batch");
	ok(c.n == 3 && strcmp(c.hdr[2], "h=v") == 0,
	   "records: ... decompressed");
	sk_buf_free(&batch);
	sk_buf_free(&packed);

	/* registration is for init only, and needs the provides bit */
	ps->v[0]->phase = SK_PLUGIN_INIT;
	is(h->register_storage_tier(h, NULL, NULL), -EPERM,
	   "register_storage_tier: refused without the provides bit");
	ps->v[0]->phase = SK_PLUGIN_READY;
	sk_plugins_free(ps, 1000);
}

/* ------------------------------------------------------------------ */
/* Storage tiers */

struct tres {
	bool done;
	int rc;
	char msg[256];
	char keys[512];
};

static void tier_cb(void *arg, const struct sk_tier_result *r)
{
	struct tres *t = arg;

	t->done = true;
	t->rc = r->rc;
	snprintf(t->msg, sizeof(t->msg), "%s", r->msg);
	t->keys[0] = '\0';
	for (size_t i = 0; i < r->n; i++) {
		char one[128];

		snprintf(one, sizeof(one), "%s:%llu;", r->keys[i],
			 (unsigned long long)r->sizes[i]);
		strcat(t->keys, one);
	}
}

static int make_file(const char *name, const char *data, char *path)
{
	int fd;

	sprintf(path, "%s/%s", tmpdir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (write(fd, data, strlen(data)) != (ssize_t)strlen(data))
		abort();
	return fd;
}

static void test_tier(const char *mode)
{
	const char *kv[] = { "blocking", mode, NULL };
	struct sk_plugins *ps;
	struct sk_tier *t;
	struct sk_err err = { "" };
	struct decl_buf b;
	char lpath[300], ipath[300], opath[300], list[100], got[32];
	struct skald_tier_file flog, fidx;
	const struct skald_tier_file *files[2] = { &flog, &fidx };
	struct skald_tier_segment seg;
	struct skald_tier_get get;
	struct tres r;
	int lfd, ifd, ofd;
	ssize_t n;

	ok(sk_plugins_load(&ps, decl(&b, so("tier_mem"), kv), 1, &err) == 0 &&
		   sk_plugins_init(ps, loop, meta, metrics, &err) == 0,
	   "tier_mem (blocking %s): loaded", mode);
	t = sk_plugins_tier(ps, "tier_mem", list, sizeof(list));
	ok(t != NULL, "the tier is registered under the plugin's name");
	is_str(list, "tier_mem", "and listed");
	ok(!sk_plugins_tier(ps, "tier-fs", list, sizeof(list)),
	   "no other tier");
	sk_plugins_start_soon(ps, NULL, NULL);

	lfd = make_file("seg.log", "0123456789abcdef", lpath);
	ifd = make_file("seg.index", "IDX", ipath);
	flog = (struct skald_tier_file){ ".log", lpath, lfd,
					 sk_crc32c(0, "0123456789abcdef", 16),
					 16 };
	fidx = (struct skald_tier_file){ ".index", ipath, ifd,
					 sk_crc32c(0, "IDX", 3), 3 };
	memset(&seg, 0, sizeof(seg));
	seg.size = sizeof(seg);
	seg.n_files = 2;
	seg.key = "t/0/00000000000000000000-1";
	seg.topic = "t";
	seg.base_offset = 0;
	seg.end_offset = 10;
	seg.files = files;

	memset(&r, 0, sizeof(r));
	sk_tier_upload(t, &seg, tier_cb, &r);
	ok(!r.done, "upload: the callback never runs inside the call");
	ok(run_until(&r.done, 5000) && r.rc == 0, "upload: done, rc 0");

	memset(&r, 0, sizeof(r));
	sk_tier_list(t, "t/0/", tier_cb, &r);
	ok(run_until(&r.done, 5000) && r.rc == 0, "list: done");
	ok(strstr(r.keys, "t/0/00000000000000000000-1.log:16;") &&
		   strstr(r.keys, "t/0/00000000000000000000-1.index:3;"),
	   "list: both objects with their sizes (%s)", r.keys);

	ofd = make_file("out", "", opath);
	get = (struct skald_tier_get){ sizeof(get), ofd,
				       "t/0/00000000000000000000-1.log", 0, 0 };
	memset(&r, 0, sizeof(r));
	sk_tier_download(t, &get, tier_cb, &r);
	ok(run_until(&r.done, 5000) && r.rc == 0, "download: done");
	n = pread(ofd, got, sizeof(got), 0);
	ok(n == 16 && memcmp(got, "0123456789abcdef", 16) == 0,
	   "download: the bytes");
	if (strcmp(mode, "false") == 0)
		is_str(r.msg, "downloaded", "download: the plugin's message");
	else
		ok(1, "download: (no message in blocking mode)");
	close(ofd);
	ofd = make_file("out2", "", opath);
	get.fd = ofd;
	get.offset = 3;
	get.length = 4;
	memset(&r, 0, sizeof(r));
	sk_tier_download(t, &get, tier_cb, &r);
	ok(run_until(&r.done, 5000) && r.rc == 0, "download: a range");
	n = pread(ofd, got, sizeof(got), 0);
	ok(n == 4 && memcmp(got, "3456", 4) == 0, "download: ... its bytes");
	close(ofd);

	get.key = "t/0/nope.log";
	memset(&r, 0, sizeof(r));
	sk_tier_download(t, &get, tier_cb, &r);
	ok(run_until(&r.done, 5000) && r.rc == -ENOENT,
	   "download: a missing object is -ENOENT");

	memset(&r, 0, sizeof(r));
	sk_tier_remove(t, &seg, tier_cb, &r);
	ok(run_until(&r.done, 5000) && r.rc == 0, "remove: done");
	memset(&r, 0, sizeof(r));
	sk_tier_list(t, "t/", tier_cb, &r);
	ok(run_until(&r.done, 5000) && r.keys[0] == '\0',
	   "remove: nothing left");

	/* a tier in use keeps the plugin loaded */
	sk_tier_use(t);
	sk_plugins_stop(ps);
	memset(&r, 0, sizeof(r));
	sk_tier_upload(t, &seg, tier_cb, &r);
	ok(run_until(&r.done, 5000) && r.rc == -ESHUTDOWN,
	   "after stop: -ESHUTDOWN");
	ok(sk_tier_retriable(r.rc), "... which is retriable");
	sk_plugins_free(ps, 1000);
	ok(mapped(so("tier_mem")), "a tier in use keeps the plugin mapped");
	close(lfd);
	close(ifd);
}

static void test_tier_down(void)
{
	const char *kv[] = { "down", "true", NULL };
	struct sk_plugins *ps;
	struct sk_tier *t;
	struct sk_err err = { "" };
	struct decl_buf b;
	struct skald_tier_segment seg = { .size = sizeof(seg), .key = "k" };
	struct tres r = { 0 };

	ok(sk_plugins_load(&ps, decl(&b, so("tier_mem"), kv), 1, &err) == 0 &&
		   sk_plugins_init(ps, loop, meta, metrics, &err) == 0,
	   "tier_mem (down): loaded");
	t = sk_plugins_tier(ps, "tier_mem", NULL, 0);
	sk_tier_upload(t, &seg, tier_cb, &r);
	ok(!r.done, "a failing call completes later too");
	ok(run_until(&r.done, 5000) && r.rc == -ECONNREFUSED,
	   "a tier that is down: -ECONNREFUSED");
	ok(sk_tier_retriable(r.rc), "... retriable");
	sk_plugins_free(ps, 1000);
}

/* ------------------------------------------------------------------ */
/* YAML */

static int yaml(struct sk_config *c, const char *text, struct sk_err *err)
{
	return sk_config_load_string(c, "t.yaml", text, strlen(text), err);
}

static void test_yaml(void)
{
	struct sk_config c, c2;
	struct sk_err err = { "" };

	sk_config_init(&c);
	is(yaml(&c,
		"plugins:\n"
		"  - path: a.so\n"
		"    config: { x: 1, y: \"two\", z: }\n"
		"  - path: b.so\n"
		"storage:\n"
		"  tier: b\n",
		&err),
	   0, "yaml: plugins and storage");
	ok(c.n_plugins == 2 && strcmp(c.plugins[0].path, "a.so") == 0 &&
		   strcmp(c.plugins[1].path, "b.so") == 0,
	   "yaml: both entries in order");
	ok(c.plugins[0].n_settings == 3 &&
		   strcmp(c.plugins[0].settings[1].value, "two") == 0 &&
		   strcmp(c.plugins[0].settings[2].value, "") == 0,
	   "yaml: config values as text, empty as \"\"");
	is_str(c.plugins[0].settings[0].where, "t.yaml:3", "yaml: where");
	is_str(c.plugins[1].where, "t.yaml:4", "yaml: where of an entry");
	is_str(c.storage_tier, "b", "yaml: storage.tier");
	is_str(c.storage_tier_where, "t.yaml:6", "yaml: its where");
	/* a rejected document changes nothing */
	ok(yaml(&c, "plugins: 3\n", &err) < 0, "yaml: plugins not a list");
	is_str(err.msg,
	       "t.yaml:1: plugins: expected a list of {path, config} "
	       "entries, got a value",
	       "yaml: ... message");
	is(c.n_plugins, 2, "yaml: a rejected file changes nothing");
	ok(yaml(&c, "plugins:\n  - config: {}\n", &err) < 0,
	   "yaml: missing path");
	is_str(err.msg, "t.yaml:2: plugins[0]: missing key 'path'",
	       "yaml: ... message");
	ok(yaml(&c, "plugins:\n  - path: a.so\n    conf: {}\n", &err) < 0,
	   "yaml: unknown key");
	is_str(err.msg,
	       "t.yaml:3: plugins[0].conf: unknown key (expected "
	       "path or config)",
	       "yaml: ... message");
	ok(yaml(&c, "plugins:\n  - path: a.so\n    config: [1]\n", &err) < 0,
	   "yaml: config not a mapping");
	is_str(err.msg,
	       "t.yaml:3: plugins[0].config: expected a mapping of "
	       "the plugin's keys to values, got a list",
	       "yaml: ... message");
	ok(yaml(&c, "plugins:\n  - path: a.so\n    config: {a: [1]}\n", &err) <
		   0,
	   "yaml: a config value that is not a scalar");
	is_str(err.msg,
	       "t.yaml:3: plugins[0].config.a: expected a single "
	       "value, got a list",
	       "yaml: ... message");
	ok(yaml(&c, "storage:\n  tiers: x\n", &err) < 0,
	   "yaml: storage unknown key");
	is_str(err.msg, "t.yaml:2: storage.tiers: unknown key",
	       "yaml: ... message");
	ok(sk_config_set(&c, "plugins", "x", "--set", &err) < 0,
	   "--set plugins is refused");
	/* clone (config_load works on a copy) keeps everything */
	sk_config_init(&c2);
	is(yaml(&c2, "log.dir: /x\n", &err), 0, "yaml: another load");
	sk_config_free(&c2);
	is(yaml(&c, "num.partitions: 2\n", &err), 0,
	   "yaml: a later document without plugins");
	ok(c.n_plugins == 2 && strcmp(c.storage_tier, "b") == 0,
	   "yaml: plugins and storage survive it");
	is(yaml(&c, "plugins: []\nstorage:\n", &err), 0, "yaml: cleared");
	ok(c.n_plugins == 0 && c.storage_tier == NULL, "yaml: ... to nothing");
	sk_config_free(&c);
}

/* skald_tier_key_ok: what a tier may join to its directory or prefix. */
static void test_tier_keys(void)
{
	static const char *const good[] = {
		"t/0/00000000000000000000-1a2b",
		"a",
		"a/b",
		"a.b/..c/c..",
		".x",
	};
	static const char *const bad[] = {
		"",	  "/",	  "/a",	  "a//b", ".",	"..", "a/./b",
		"a/../b", "../a", "a/..", "a/.",  "//", "a/",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ok(skald_tier_key_ok(good[i]), "tier key '%s' is safe",
		   good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ok(!skald_tier_key_ok(bad[i]), "tier key '%s' is refused",
		   bad[i]);
}

int main(void)
{
	struct sk_err err = { "" };
	char *d;

	/* Quiet: the loader's info lines would interleave with TAP. */
	sk_say_setup(SK_SAY_ERROR, SK_SAY_TEXT);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/skald-test-plugin-XXXXXX");
	d = mkdtemp(tmpdir);
	if (!d || sk_meta_open(&meta, tmpdir, &err)) {
		printf("Bail out! cannot set up %s: %s\n", tmpdir, err.msg);
		return 1;
	}
	loop = ev_loop_new(EVFLAG_AUTO);
	metrics = sk_metrics_new();

	test_refusals();
	test_bad_config();
	test_duplicate();
	test_lifecycle();
	test_failing_init();
	test_host_services();
	test_tier("false");
	test_tier("true");
	test_tier_down();
	test_tier_keys();
	test_yaml();

	sk_metrics_free(metrics);
	sk_meta_close(meta);
	ev_loop_destroy(loop);
	sk_rmtree(tmpdir);
	plan(tap_n);
	return check_status();
}
