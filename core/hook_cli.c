/*
 * skald hook-test SCRIPT [options] < records.jsonl
 *
 * Runs the broker's own embedding (sandbox, limits, on_record/on_batch,
 * re-encoding) over records given one JSON object per line,
 *   {"key": "k", "value": "v", "headers": {"h": "x"}, "timestamp": 1700000000000}
 * (every field optional; key and value may be null), as one batch, and
 * prints one JSON line per record: what would be written
 * ({"offset_delta": 0, "key": ..., "value": ..., "headers": {...},
 * "timestamp": ...}), {"offset_delta": N, "dropped": true}, and for
 * ctx.emit copies {"emit": TOPIC, ...}. A failing hook prints
 * {"error": "..."} and exits 1.
 *
 * Options: --options JSON (ctx.options), --topic NAME, --partition N,
 * --timeout-ms N, --memory-mb N, and for benchmarks --repeat N (run the
 * batch N times and print the mean time of the last three quarters on
 * stderr) and --jit (JIT on: faster, but the CPU bound no longer holds).
 *
 * JSON lines are read and written with the skald module itself, in a
 * separate trusted state.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "hook.h"
#include "say.h"

extern const char sk_hook_skald_lua[];

/* Input records, owning their bytes. */
struct cli_rec {
	char *key, *value;
	int32_t key_len, value_len;
	int64_t timestamp;
	struct sk_record_header_in *hdrs;
	int32_t n_hdrs;
};

static void usage(FILE *out)
{
	fprintf(out, "usage: skald hook-test SCRIPT [--options JSON] "
		     "[--topic NAME] [--partition N]\n"
		     "                        [--timeout-ms N] [--memory-mb N] "
		     "[--repeat N] [--jit] < records.jsonl\n");
}

/* Copy the string at idx (or nil: NULL, -1). */
static char *take_str(lua_State *L, int idx, int32_t *len)
{
	size_t n;
	const char *s;
	char *c;

	if (lua_type(L, idx) != LUA_TSTRING) {
		*len = -1;
		return NULL;
	}
	s = lua_tolstring(L, idx, &n);
	c = sk_xmalloc(n + 1);
	memcpy(c, s, n);
	*len = (int32_t)n;
	return c;
}

/* Decode one JSON line with the trusted module into r. */
static int parse_line(lua_State *L, const char *line, size_t len,
		      struct cli_rec *r, char *why, size_t cap)
{
	int top = lua_gettop(L);

	memset(r, 0, sizeof(*r));
	lua_getfield(L, 1, "json");
	lua_getfield(L, -1, "decode");
	lua_pushlstring(L, line, len);
	if (lua_pcall(L, 1, 1, 0)) {
		snprintf(why, cap, "%s", lua_tostring(L, -1));
		lua_settop(L, top);
		return -1;
	}
	if (!lua_istable(L, -1)) {
		snprintf(why, cap, "expected a JSON object");
		lua_settop(L, top);
		return -1;
	}
	lua_getfield(L, -1, "key");
	r->key = take_str(L, -1, &r->key_len);
	lua_getfield(L, -2, "value");
	r->value = take_str(L, -1, &r->value_len);
	lua_getfield(L, -3, "timestamp");
	r->timestamp = lua_isnumber(L, -1) ? (int64_t)lua_tonumber(L, -1)
					   : sk_now_ms();
	lua_getfield(L, -4, "headers");
	if (lua_istable(L, -1)) {
		int h = lua_gettop(L), n = 0;

		lua_pushnil(L);
		while (lua_next(L, h)) {
			n++;
			lua_pop(L, 1);
		}
		r->hdrs = sk_xcalloc((size_t)n + 1, sizeof(*r->hdrs));
		lua_pushnil(L);
		while (lua_next(L, h)) {
			struct sk_record_header_in *o = &r->hdrs[r->n_hdrs];
			int32_t kl, vl;

			if (lua_type(L, -2) == LUA_TSTRING) {
				o->key = take_str(L, -2, &kl);
				o->key_len = kl;
				o->value = take_str(L, -1, &vl);
				o->value_len = vl;
				r->n_hdrs++;
			}
			lua_pop(L, 1);
		}
	}
	lua_settop(L, top);
	return 0;
}

static void set_bytes(lua_State *L, const char *k, const void *p, int32_t len)
{
	if (len < 0)
		lua_getfield(L, 1, "null");
	else
		lua_pushlstring(L, (const char *)p, (size_t)len);
	lua_setfield(L, -2, k);
}

/* Print the table on top as one JSON line, and pop it. */
static void print_json(lua_State *L)
{
	lua_getfield(L, 1, "json");
	lua_getfield(L, -1, "encode");
	lua_pushvalue(L, -3);
	if (lua_pcall(L, 1, 1, 0))
		printf("{\"error\": \"cannot encode output\"}\n");
	else
		printf("%s\n", lua_tostring(L, -1));
	lua_pop(L, 3);
}

/* Push a table for one output record read from a batch. */
static void push_record(lua_State *L, const struct sk_record *rec,
			int64_t base_ts)
{
	struct sk_rd r;

	lua_newtable(L);
	lua_pushinteger(L, rec->offset_delta);
	lua_setfield(L, -2, "offset_delta");
	set_bytes(L, "key", rec->key.p, rec->key.len);
	set_bytes(L, "value", rec->value.p, rec->value.len);
	lua_pushnumber(L, (lua_Number)(base_ts + rec->timestamp_delta));
	lua_setfield(L, -2, "timestamp");
	lua_newtable(L);
	sk_rd_init(&r, rec->headers, rec->headers_len);
	for (int32_t i = 0; i < rec->header_count; i++) {
		int32_t kl = sk_rd_varint(&r), vl;
		const uint8_t *k = sk_rd_raw(&r, (size_t)SK_MAX(kl, 0)), *v;

		vl = sk_rd_varint(&r);
		v = vl > 0 ? sk_rd_raw(&r, (size_t)vl) : (const uint8_t *)"";
		if (!sk_rd_ok(&r))
			break;
		lua_pushlstring(L, (const char *)k, (size_t)kl);
		if (vl < 0)
			lua_pushboolean(L, 0);
		else
			lua_pushlstring(L, (const char *)v, (size_t)vl);
		lua_rawset(L, -3);
	}
	lua_setfield(L, -2, "headers");
}

/* Print every record of an uncompressed batch; emit: the topic or NULL. */
static void print_batch(lua_State *L, const uint8_t *b, size_t len,
			const char *emit, int32_t n_in)
{
	struct sk_batch_hdr h;
	struct sk_record rec;
	struct sk_rd r;
	int32_t next = 0;

	if (sk_batch_parse_header(b, len, &h))
		return;
	sk_rd_init(&r, b + SK_BATCH_HEADER_SIZE, len - SK_BATCH_HEADER_SIZE);
	while (sk_batch_record_next(&r, &rec)) {
		for (; !emit && next < rec.offset_delta; next++) {
			lua_newtable(L);
			lua_pushinteger(L, next);
			lua_setfield(L, -2, "offset_delta");
			lua_pushboolean(L, 1);
			lua_setfield(L, -2, "dropped");
			print_json(L);
		}
		next = rec.offset_delta + 1;
		push_record(L, &rec, h.base_timestamp);
		if (emit) {
			lua_pushstring(L, emit);
			lua_setfield(L, -2, "emit");
			lua_pushnil(L);
			lua_setfield(L, -2, "offset_delta");
		}
		print_json(L);
	}
	for (; !emit && next < n_in; next++) {
		lua_newtable(L);
		lua_pushinteger(L, next);
		lua_setfield(L, -2, "offset_delta");
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "dropped");
		print_json(L);
	}
}

static void free_recs(struct cli_rec *recs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (int32_t j = 0; j < recs[i].n_hdrs; j++) {
			free((void *)recs[i].hdrs[j].key);
			free((void *)recs[i].hdrs[j].value);
		}
		free(recs[i].hdrs);
		free(recs[i].key);
		free(recs[i].value);
	}
	free(recs);
}

int sk_hook_cli_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "options", required_argument, NULL, 'o' },
		{ "topic", required_argument, NULL, 't' },
		{ "partition", required_argument, NULL, 'p' },
		{ "timeout-ms", required_argument, NULL, 'T' },
		{ "memory-mb", required_argument, NULL, 'M' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "jit", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sk_hook_limits lim = { .timeout_ms = 50,
				      .memory_bytes = (size_t)32 << 20 };
	const char *options = "{}", *topic = "hook-test";
	struct sk_hook hook = { .name = "hook-test" };
	struct sk_hook *hooks[1] = { &hook };
	struct sk_hook_chain chain = { .refs = 1, .n = 1, .hooks = hooks };
	struct sk_hook_batch_out out;
	struct sk_record_in *in = NULL;
	struct cli_rec *recs = NULL;
	size_t n = 0, cap = 0, linecap = 0;
	struct sk_buf batch = { 0 };
	struct sk_err err = { "" };
	int64_t partition = 0, repeat = 1, v;
	char *line = NULL, why[600];
	ssize_t got;
	lua_State *L;
	int opt, rc = 1;

	/* Info: what the hook logs with skald.log.info shows on stderr. */
	sk_say_setup(SK_SAY_INFO, SK_SAY_TEXT);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'o':
			options = optarg;
			break;
		case 't':
			topic = optarg;
			break;
		case 'p':
		case 'T':
		case 'M':
		case 'r':
			if (!sk_parse_i64(optarg, &v) || v < 0 ||
			    v > INT32_MAX) {
				fprintf(stderr,
					"skald hook-test: bad number "
					"'%s'\n",
					optarg);
				return 2;
			}
			if (opt == 'p')
				partition = v;
			else if (opt == 'T')
				lim.timeout_ms = SK_MAX(v, 1);
			else if (opt == 'M')
				lim.memory_bytes = (size_t)SK_MAX(v, 1) << 20;
			else
				repeat = SK_MAX(v, 1);
			break;
		case 'j':
			lim.jit = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	if (sk_hook_script_load(&hook.script, argv[optind], &lim, 1, &err)) {
		fprintf(stderr, "skald hook-test: %s\n", err.msg);
		return 1;
	}
	if (!(hook.script->has & (SK_HOOK_HAS_RECORD | SK_HOOK_HAS_BATCH))) {
		fprintf(stderr,
			"skald hook-test: %s defines neither "
			"on_record nor on_batch\n",
			argv[optind]);
		sk_hook_script_unref(hook.script);
		return 1;
	}
	hook.options_json = (char *)options;

	/* A trusted state with the skald module, for JSON in and out. */
	L = luaL_newstate();
	luaL_openlibs(L);
	if (luaL_loadbuffer(L, sk_hook_skald_lua, strlen(sk_hook_skald_lua),
			    "@scripts/skald/skald.lua")) {
		fprintf(stderr, "skald hook-test: %s\n", lua_tostring(L, -1));
		goto out;
	}
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, sk_hook_json_open);
	lua_setfield(L, -2, "json");
	if (lua_pcall(L, 1, 1, 0)) {
		fprintf(stderr, "skald hook-test: %s\n", lua_tostring(L, -1));
		goto out;
	}
	lua_getfield(L, 1, "json");
	lua_getfield(L, -1, "null");
	lua_setfield(L, 1, "null");
	/* --options is what the YAML's options map would be: an object. */
	lua_getfield(L, -1, "decode");
	lua_pushstring(L, options);
	if (lua_pcall(L, 1, 1, 0)) {
		fprintf(stderr, "skald hook-test: --options: %s\n",
			lua_tostring(L, -1));
		goto out;
	}
	if (!lua_istable(L, -1)) {
		fprintf(stderr,
			"skald hook-test: --options: expected a JSON "
			"object, got %s\n",
			luaL_typename(L, -1));
		goto out;
	}
	lua_pop(L, 2);

	while ((got = getline(&line, &linecap, stdin)) > 0) {
		size_t len = (size_t)got;

		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		if (!len)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			recs = sk_xrealloc(recs, cap * sizeof(*recs));
		}
		if (parse_line(L, line, len, &recs[n], why, sizeof(why))) {
			fprintf(stderr, "skald hook-test: line %zu: %s\n",
				n + 1, why);
			goto out;
		}
		n++;
	}
	in = sk_xcalloc(n ? n : 1, sizeof(*in));
	for (size_t i = 0; i < n; i++)
		in[i] = (struct sk_record_in){ .key = recs[i].key,
					       .key_len = recs[i].key_len,
					       .value = recs[i].value,
					       .value_len = recs[i].value_len,
					       .timestamp = recs[i].timestamp,
					       .headers = recs[i].hdrs,
					       .n_headers = recs[i].n_hdrs };
	sk_batch_build(&batch, 0, in, n, 0, -1, -1, -1);

	/*
	 * Warm up on a quarter of the runs, time the rest: one run alone
	 * says little, since the GC's cycles span several.
	 */
	{
		int64_t warm = repeat > 1 ? SK_MAX(repeat / 4, 1) : 0;
		struct timespec t0, t1;
		double secs;

		for (int64_t i = 0; i < repeat; i++) {
			if (i == warm)
				clock_gettime(CLOCK_MONOTONIC, &t0);
			if (i > 0)
				sk_hook_batch_out_free(&out);
			sk_hook_chain_process(&chain, 0, NULL, topic,
					      (int32_t)partition, batch.data,
					      batch.len, INT32_MAX, &out);
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		secs = (double)(t1.tv_sec - t0.tv_sec) +
		       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (repeat > 1)
			fprintf(stderr,
				"%zu records in %.6f s (mean of the last %lld "
				"of %lld runs)\n",
				n, secs / (double)(repeat - warm),
				(long long)(repeat - warm), (long long)repeat);
	}
	switch (out.what) {
	case SK_HOOK_OUT_REJECT:
		lua_newtable(L);
		lua_pushstring(L, out.err);
		lua_setfield(L, -2, "error");
		print_json(L);
		sk_hook_batch_out_free(&out);
		goto out;
	case SK_HOOK_OUT_ORIGINAL:
		print_batch(L, batch.data, batch.len, NULL, (int32_t)n);
		break;
	case SK_HOOK_OUT_REBUILT:
		print_batch(L, out.batch.data, out.batch.len, NULL, (int32_t)n);
		break;
	case SK_HOOK_OUT_NOTHING:
		print_batch(L, NULL, 0, NULL, (int32_t)n);
		for (int32_t i = 0; i < (int32_t)n; i++) {
			lua_newtable(L);
			lua_pushinteger(L, i);
			lua_setfield(L, -2, "offset_delta");
			lua_pushboolean(L, 1);
			lua_setfield(L, -2, "dropped");
			print_json(L);
		}
		break;
	}
	for (size_t i = 0; i < out.n_extra; i++)
		print_batch(L, out.extra[i].batch.data, out.extra[i].batch.len,
			    out.extra[i].topic, 0);
	sk_hook_batch_out_free(&out);
	rc = 0;
out:
	fflush(stdout);
	lua_close(L);
	free(line);
	free(in);
	free_recs(recs, n);
	sk_buf_free(&batch);
	sk_hook_script_unref(hook.script);
	return rc;
}
