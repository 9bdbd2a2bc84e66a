/*
 * Lua hooks: the sandbox (each known escape fails), the CPU and memory
 * bounds, errors with the script's file:line, transactional effects,
 * on_batch and on_record, the chain's re-encoding (original bytes when
 * untouched, producer fields and offset deltas kept when records are
 * dropped, compressed batches re-compressed), every on_error policy, and
 * reload keeping the old version when a script fails to compile.
 */
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "codec.h"
#include "config.h"
#include "hook.h"
#include "tap.h"

static struct sk_hook_limits lim = { .timeout_ms = 100,
				     .memory_bytes = (size_t)16 << 20 };

/* Compile src; NULL (with err) when refused. */
static struct sk_hook_script *compile(const char *src, struct sk_err *err)
{
	struct sk_hook_script *s = NULL;

	err->msg[0] = '\0';
	if (sk_hook_script_new(&s, "t/test.lua", src, strlen(src), &lim, 1,
			       err))
		return NULL;
	return s;
}

/* Records for a record set, borrowed from string literals. */
static void recs_of(struct sk_hook_recs *rs, const char *const *values,
		    size_t n)
{
	memset(rs, 0, sizeof(*rs));
	rs->r = calloc(n ? n : 1, sizeof(*rs->r));
	rs->n = rs->cap = n;
	for (size_t i = 0; i < n; i++) {
		rs->r[i].offset_delta = (int32_t)i;
		rs->r[i].timestamp = 1000 + (int64_t)i;
		rs->r[i].key = (const uint8_t *)"k";
		rs->r[i].key_len = 1;
		rs->r[i].value = (const uint8_t *)values[i];
		rs->r[i].value_len = (int32_t)strlen(values[i]);
	}
}

/*
 * Run src's hook over one record "in"; the status, and the value it left
 * (or "(dropped)") in out.
 */
static enum sk_hook_status run1(const char *src, const char *in, char *out,
				size_t cap, struct sk_hook_res *res)
{
	struct sk_hook_call call = { .topic = "t",
				     .partition = 3,
				     .hook = "h",
				     .options_json = "{\"x\":[1,2]}" };
	struct sk_hook_recs rs;
	struct sk_hook_script *s;
	struct sk_err err;
	const char *vals[1] = { in };

	s = compile(src, &err);
	if (!s) {
		snprintf(out, cap, "compile: %s", err.msg);
		return SK_HOOK_ERROR;
	}
	recs_of(&rs, vals, 1);
	sk_hook_run_records(s, 0, &call, &rs, res);
	if (rs.r[0].dropped)
		snprintf(out, cap, "(dropped)");
	else
		snprintf(out, cap, "%.*s", (int)rs.r[0].value_len,
			 (const char *)rs.r[0].value);
	sk_hook_recs_free(&rs);
	sk_hook_script_unref(s);
	return res->status;
}

/* A script whose on_record evaluates expr and stores tostring() of it. */
static void expect_value(const char *expr, const char *want, const char *desc)
{
	char src[1024], out[600];
	struct sk_hook_res res;

	snprintf(src, sizeof(src),
		 "return { on_record = function(rec, ctx)\n"
		 "  local ok, v = pcall(function() return %s end)\n"
		 "  rec.value = ok and tostring(v) or 'error'\n"
		 "  return rec end }\n",
		 expr);
	run1(src, "v", out, sizeof(out), &res);
	is_str(out, want, "%s", desc);
}

static void test_sandbox(void)
{
	static const char *const absent[] = {
		"load",		  "loadstring",	 "dofile",     "loadfile",
		"getfenv",	  "setfenv",	 "rawset",     "newproxy",
		"collectgarbage", "require",	 "package",    "io",
		"debug",	  "ffi",	 "jit",	       "module",
		"print",	  "string.dump", "os.execute", "os.getenv",
		"os.exit",	  "os.remove",	 "coroutine",
	};
	char expr[100], out[600];
	struct sk_hook_res res;
	struct sk_err err;

	for (size_t i = 0; i < SK_ARRAY_SIZE(absent); i++) {
		snprintf(expr, sizeof(expr), "%s == nil", absent[i]);
		expect_value(expr, "true", absent[i]);
	}
	expect_value("('').dump == nil", "true",
		     "string.dump is gone from the strings' own table too");
	expect_value("getmetatable('')", "false",
		     "the string metatable is locked");
	expect_value("setmetatable(_G, nil)", "error",
		     "setmetatable(_G, nil) fails (redis#2854)");
	expect_value("setmetatable(string, nil)", "error",
		     "shared tables cannot lose their metatable");
	expect_value("rawget(_G, 'string')", "nil",
		     "rawget reads the empty proxy, not the real globals");
	expect_value("(function() string.upper = nil end)() or 1", "error",
		     "shared tables are read-only");
	expect_value("(function() x = 1 end)() or 1", "error",
		     "globals cannot be created");
	expect_value("#skald.json.encode({a = 1})", "7",
		     "the skald module is there");
	expect_value("skald.json.encode(skald.json.decode('[]'))", "[]",
		     "json keeps empty arrays");
	expect_value("skald.json.encode(1234567890123456)", "1234567890123456",
		     "json keeps 16-digit integers");
	expect_value("ctx.options.x[2]", "2", "ctx.options from JSON");
	expect_value("rec.topic .. '/' .. rec.partition .. ' ' .. ctx.topic .. "
		     "'/' .. ctx.partition .. ' ' .. ctx.hook",
		     "t/3 t/3 h",
		     "rec and ctx name the topic, partition, hook");
	expect_value("math.abs(skald.now() - os.time() * 1000) < 5000 and "
		     "skald.now() % 1 == 0",
		     "true", "skald.now() is the wall clock in whole ms");
	expect_value("os.time() > 0 and math.floor(1.5) == 1 and "
		     "bit.band(3, 1) == 1 and table.concat({'a'}) == 'a'",
		     "true", "the allowed libraries work");

	/* State persisting across calls through the shared tables. */
	run1("return { on_record = function(rec)\n"
	     "  pcall(function() skald.json.x = 1 end)\n"
	     "  pcall(function() ctx_leak = 1 end)\n"
	     "  rec.value = tostring(skald.json.x) .. tostring(rawget(_G, "
	     "'ctx_leak'))\n"
	     "  return rec end }\n",
	     "v", out, sizeof(out), &res);
	is_str(out, "nilnil", "nothing written persists across calls");

	/* Bytecode: refused, whatever it holds. */
	ok(!compile("\033LJ\002\000\000", &err) && strstr(err.msg, "mode"),
	   "a bytecode chunk is refused (%s)", err.msg);
	ok(!compile("return {}", &err) && strstr(err.msg, "no on_record"),
	   "a script without hooks is refused (%s)", err.msg);
	ok(!compile("return {\n on_record = function( end }", &err) &&
		   strstr(err.msg, "t/test.lua:2:"),
	   "a syntax error names file:line (%s)", err.msg);
	ok(!compile("x = 1 return {}", &err) &&
		   strstr(err.msg, "t/test.lua:1:"),
	   "top-level globals fail at compile time (%s)", err.msg);
}

static void test_errors_and_bounds(void)
{
	struct sk_hook_res res;
	char out[600];
	int64_t t0;

	is(run1("return { on_record = function(rec)\n"
		"  error('boom') end }\n",
		"v", out, sizeof(out), &res),
	   SK_HOOK_ERROR, "an error is an error");
	ok(strstr(res.msg, "t/test.lua:2: boom") != NULL,
	   "it names the script's file:line (%s)", res.msg);
	is_str(out, "v", "and the record is untouched");

	is(run1("return { on_record = function(rec)\n"
		"  return 42 end }\n",
		"v", out, sizeof(out), &res),
	   SK_HOOK_ERROR, "a bad return value is an error");

	t0 = sk_mono_ms();
	is(run1("return { on_record = function(rec)\n"
		"  while true do end end }\n",
		"v", out, sizeof(out), &res),
	   SK_HOOK_TIMEOUT, "while true do end is cut off");
	ok(sk_mono_ms() - t0 < 1000 + 100, "within its budget (%lld ms)",
	   (long long)(sk_mono_ms() - t0));
	is(run1("return { on_record = function(rec)\n"
		"  for i = 1, 10 do pcall(function() while true do end end) "
		"end\n"
		"  rec.value = 'escaped' return rec end }\n",
		"v", out, sizeof(out), &res),
	   SK_HOOK_TIMEOUT, "pcall cannot swallow the timeout");
	is_str(out, "v", "and nothing is applied");
	/* Memory first, whatever the machine's speed (sanitizers, load). */
	lim.timeout_ms = 20000;
	is(run1("return { on_record = function(rec)\n"
		"  local t = {} while true do t[#t + 1] = "
		"string.rep('x', 4096) .. #t end end }\n",
		"v", out, sizeof(out), &res),
	   SK_HOOK_MEMORY, "unbounded allocation is cut off");
	ok(res.memory <= lim.memory_bytes, "within memory.mb (%zu bytes)",
	   res.memory);
	is(run1("return { on_record = function(rec)\n"
		"  local ok = pcall(string.rep, 'x', 1e9)\n"
		"  rec.value = tostring(ok) return rec end }\n",
		"v", out, sizeof(out), &res),
	   SK_HOOK_OK, "one huge allocation fails inside the script");
	is_str(out, "false", "as an error pcall can catch");
	lim.timeout_ms = 100;
}

/* The same state over several calls: bounds do not break it. */
static void test_state_reuse(void)
{
	struct sk_hook_call call = { .topic = "t", .hook = "h" };
	struct sk_hook_res res;
	struct sk_hook_recs rs;
	struct sk_err err;
	const char *loop[1] = { "loop" }, *grow[1] = { "grow" },
		   *fine[1] = { "fine" };
	struct sk_hook_script *s;

	lim.timeout_ms = 2000; /* the memory case must not time out */
	s = compile("local n = 0\n"
		    "return { on_record = function(rec)\n"
		    "  if rec.value == 'loop' then while true do end end\n"
		    "  if rec.value == 'grow' then local t = {} while true do "
		    "t[#t + 1] = {} end end\n"
		    "  n = n + 1 rec.value = 'ok' .. n return rec end }\n",
		    &err);

	ok(s != NULL, "compiled (%s)", err.msg);
	recs_of(&rs, loop, 1);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	is(res.status, SK_HOOK_TIMEOUT, "first call times out");
	sk_hook_recs_free(&rs);
	recs_of(&rs, fine, 1);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	is(res.status, SK_HOOK_OK, "the next call works");
	is(rs.r[0].value_len, 3, "module locals live on (ok1)");
	sk_hook_recs_free(&rs);
	recs_of(&rs, grow, 1);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	is(res.status, SK_HOOK_MEMORY, "a call runs out of memory");
	sk_hook_recs_free(&rs);
	recs_of(&rs, fine, 1);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	is(res.status, SK_HOOK_OK, "the next call works on a new state");
	sk_hook_recs_free(&rs);
	sk_hook_script_unref(s);
	lim.timeout_ms = 100;
}

static void test_batch_api(void)
{
	struct sk_hook_call call = { .topic = "t", .hook = "h" };
	const char *vals[3] = { "a", "b", "c" };
	struct sk_hook_res res;
	struct sk_hook_recs rs;
	struct sk_err err;
	struct sk_hook_script *s = compile(
		"local keep\n"
		"return { on_batch = function(b, ctx)\n"
		"  keep = b\n"
		"  assert(b:count() == 3 and b:value(2) == 'b' and "
		"b:key(1) == 'k' and b:timestamp(3) == 1002)\n"
		"  b:drop(2)\n"
		"  b:set_value(1, 'A')\n"
		"  b:set_header(3, 'h', 'x')\n"
		"  assert(b:header(3, 'h') == 'x' and b:dropped(2))\n"
		"  ctx.emit('copies', { key = 'e', value = b:value(3) })\n"
		"  if b:value(3) == 'c' and ctx.options.fail then "
		"error('late') end\n"
		"end }\n",
		&err);

	ok(s != NULL, "on_batch compiled (%s)", err.msg);
	recs_of(&rs, vals, 3);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	is(res.status, SK_HOOK_OK, "on_batch ran (%s)", res.msg);
	ok(rs.r[1].dropped && !rs.r[0].dropped, "drop(2)");
	ok(rs.r[0].changed && rs.r[0].value_len == 1 && rs.r[0].value[0] == 'A',
	   "set_value(1)");
	is(rs.r[2].n_hdrs, 1, "set_header(3)");
	is(rs.n_emits, 1, "emit staged");
	is(res.in, 3, "3 in");
	is(res.dropped, 1, "1 dropped");
	sk_hook_recs_free(&rs);

	/* A failing call leaves nothing behind. */
	call.options_json = "{\"fail\": true}";
	recs_of(&rs, vals, 3);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	is(res.status, SK_HOOK_ERROR, "a late error");
	ok(!rs.r[1].dropped && !rs.r[0].changed && rs.n_emits == 0,
	   "effects are transactional");
	sk_hook_recs_free(&rs);
	sk_hook_script_unref(s);

	/*
	 * A record is kept for the undo on its first change only: changed
	 * twice, it must come back as it was before the first.
	 */
	s = compile("return { on_batch = function(b)\n"
		    "  b:set_value(1, 'X') b:set_value(1, 'Y') b:drop(1)\n"
		    "  error('late') end }\n",
		    &err);
	ok(s != NULL, "on_batch compiled (%s)", err.msg);
	recs_of(&rs, vals, 3);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	ok(res.status == SK_HOOK_ERROR && rs.r[0].value[0] == 'a' &&
		   !rs.r[0].changed && !rs.r[0].dropped,
	   "a record changed three times is put back as it was");
	sk_hook_recs_free(&rs);
	sk_hook_script_unref(s);

	/*
	 * batch:json_get and batch:set_json. set_json reuses json_get's walk
	 * of the same record's text only: here a walk of another record, a
	 * changed value and a failed walk come in between.
	 */
	{
		const char *v4[4] = { "{\"a\":1}", "{ \"a\" : 2 }", "-",
				      "{\"a\":1" };

		s = compile(
			"return { on_batch = function(b)\n"
			"  local a = b:json_get(1, 'a')\n"
			"  assert(b:json_get(2, 'a') == 2)\n"
			"  b:set_json(1, 'a', a + 1)\n"
			"  b:set_json(2, 'a', b:json_get(2, 'a') * 10)\n"
			"  b:set_json(2, 'b', 'y')\n"
			"  assert(select('#', b:json_get(3, 'a', 'b')) == 2)\n"
			"  assert(b:json_get(3, 'a') == nil)\n"
			"  assert(not pcall(b.set_json, b, 3, 'a', 1))\n"
			"  assert(not pcall(b.json_get, b, 4, 'a'))\n"
			"  b:set_json(1, 'c', skald.json.null)\n"
			"end }\n",
			&err);
		ok(s != NULL, "json_get/set_json compiled (%s)", err.msg);
		recs_of(&rs, v4, 4);
		rs.r[2].value = NULL;
		rs.r[2].value_len = -1;
		sk_hook_run_records(s, 0, &call, &rs, &res);
		is(res.status, SK_HOOK_OK, "json_get/set_json ran (%s)",
		   res.msg);
		ok(rs.r[0].changed && rs.r[0].value_len == 16 &&
			   memcmp(rs.r[0].value, "{\"a\":2,\"c\":null}", 16) ==
				   0,
		   "set_json after a walk of another record (%.*s)",
		   (int)rs.r[0].value_len, (const char *)rs.r[0].value);
		ok(rs.r[1].value_len == 20 &&
			   memcmp(rs.r[1].value, "{ \"a\" : 20,\"b\":\"y\" }",
				  20) == 0,
		   "set_json after json_get of the same record, then again "
		   "(%.*s)",
		   (int)rs.r[1].value_len, (const char *)rs.r[1].value);
		sk_hook_recs_free(&rs);
		sk_hook_script_unref(s);
	}

	/*
	 * The same through on_record: a value and a header changed, a
	 * dropped record, and one an earlier hook of the chain had dropped.
	 */
	{
		const char *v5[5] = { "a", "b", "c", "d", "e" };

		s = compile("return { on_record = function(rec)\n"
			    "  if rec.value == 'a' then rec.value = 'A' "
			    "rec.headers = { h = 'x' } return rec end\n"
			    "  if rec.value == 'b' then return nil end\n"
			    "  if rec.value == 'e' then error('late') end\n"
			    "  rec.timestamp = 5 return rec end }\n",
			    &err);
		ok(s != NULL, "on_record compiled (%s)", err.msg);
		recs_of(&rs, v5, 5);
		rs.r[2].dropped = true; /* an earlier hook's drop */
		sk_hook_run_records(s, 0, &call, &rs, &res);
		is(res.status, SK_HOOK_ERROR, "a late error in on_record");
		ok(rs.r[0].value_len == 1 && rs.r[0].value[0] == 'a' &&
			   rs.r[0].n_hdrs == 0 && !rs.r[0].changed,
		   "value and headers changed: put back as they were");
		ok(!rs.r[1].dropped && rs.r[2].dropped,
		   "drops are undone, an earlier hook's drop stays");
		ok(rs.r[3].timestamp == 1003 && !rs.r[3].changed,
		   "a later change is undone too");
		sk_hook_recs_free(&rs);
		recs_of(&rs, v5, 4);
		sk_hook_run_records(s, 0, &call, &rs, &res);
		is(res.status, SK_HOOK_OK, "without the failing record (%s)",
		   res.msg);
		ok(rs.r[0].value[0] == 'A' && rs.r[0].n_hdrs == 1 &&
			   rs.r[1].dropped && rs.r[3].timestamp == 5,
		   "the same changes stay when the call succeeds");
		sk_hook_recs_free(&rs);
		sk_hook_script_unref(s);
	}

	s = compile("local saved\n"
		    "return { on_batch = function(b)\n"
		    "  if saved then saved:drop(1) end\n"
		    "  saved = b end }\n",
		    &err);
	recs_of(&rs, vals, 1);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	ok(res.status == SK_HOOK_ERROR && strstr(res.msg, "outside"),
	   "a batch kept past its call is dead (%s)", res.msg);
	sk_hook_recs_free(&rs);
	sk_hook_script_unref(s);
}

/* A chain of one hook from src with policy on_error. */
static struct sk_hook_chain *chain_of(const char *src, int on_error)
{
	struct sk_hook_chain *c = calloc(1, sizeof(*c));
	struct sk_hook *h = calloc(1, sizeof(*h));
	struct sk_err err;

	h->name = strdup("h");
	h->script = compile(src, &err);
	if (!h->script)
		diag("compile: %s", err.msg);
	h->on_error = on_error;
	h->dead_letter_topic = strdup("dlq");
	h->options_json = strdup("{}");
	c->refs = 1;
	c->topic = strdup("t");
	c->n = 1;
	c->hooks = calloc(1, sizeof(*c->hooks));
	c->hooks[0] = h;
	return c;
}

/* A batch of n records "v0".."vN" with producer fields. */
static void make_batch(struct sk_buf *b, size_t n, int64_t pid,
		       int16_t attributes)
{
	struct sk_record_in in[8];
	char vals[8][4];

	for (size_t i = 0; i < n; i++) {
		snprintf(vals[i], sizeof(vals[i]), "v%d", (int)(i % 8));
		in[i] = (struct sk_record_in){ .key = "k",
					       .key_len = 1,
					       .value = vals[i],
					       .value_len = 2,
					       .timestamp = 5000 + (int64_t)i };
	}
	sk_batch_build(b, 0, in, n, attributes, pid, pid >= 0 ? 3 : -1,
		       pid >= 0 ? 100 : -1);
}

static void test_chain(void)
{
	const char *drop_v1 = "return { on_record = function(rec)\n"
			      "  if rec.value == 'v1' then return nil end\n"
			      "  return rec end }\n";
	struct sk_hook_batch_out out;
	struct sk_batch_hdr h;
	struct sk_buf b = { 0 }, gz = { 0 }, dec = { 0 };
	struct sk_hook_chain *c;
	struct sk_err err;

	/* Untouched: the original bytes. */
	c = chain_of("return { on_record = function(rec) return rec end }",
		     SK_HOOK_ON_ERROR_REJECT);
	make_batch(&b, 3, -1, 0);
	sk_hook_chain_process(c, 0, NULL, "t", 0, b.data, b.len, 1 << 20, &out);
	is(out.what, SK_HOOK_OUT_ORIGINAL,
	   "an untouched batch is written "
	   "as it came");
	sk_hook_batch_out_free(&out);
	sk_hook_chain_unref(c);

	/* Dropping keeps the producer's fields and the offset range. */
	c = chain_of(drop_v1, SK_HOOK_ON_ERROR_REJECT);
	b.len = 0;
	make_batch(&b, 3, 7, 0);
	sk_hook_chain_process(c, 0, NULL, "t", 0, b.data, b.len, 1 << 20, &out);
	is(out.what, SK_HOOK_OUT_REBUILT, "a drop rebuilds the batch");
	ok(sk_batch_parse_header(out.batch.data, out.batch.len, &h) == 0 &&
		   sk_batch_crc_ok(out.batch.data, out.batch.len),
	   "with a valid CRC");
	ok(h.records_count == 2 && h.last_offset_delta == 2 &&
		   h.producer_id == 7 && h.producer_epoch == 3 &&
		   h.base_sequence == 100,
	   "2 records, lastOffsetDelta 2, producer id/epoch/sequence kept");
	{
		struct sk_rd r;
		struct sk_record rec;
		int deltas[4], n = 0;

		sk_rd_init(&r, out.batch.data + SK_BATCH_HEADER_SIZE,
			   out.batch.len - SK_BATCH_HEADER_SIZE);
		while (n < 4 && sk_batch_record_next(&r, &rec))
			deltas[n++] = rec.offset_delta;
		ok(n == 2 && deltas[0] == 0 && deltas[1] == 2,
		   "kept records keep their offset deltas (a gap at 1)");
	}
	sk_hook_batch_out_free(&out);

	/* Compressed: re-encoded with the same codec. */
	b.len = 0;
	make_batch(&b, 3, -1, 0);
	sk_codec_compress(SK_CODEC_GZIP, b.data + SK_BATCH_HEADER_SIZE,
			  b.len - SK_BATCH_HEADER_SIZE, &gz, 0, &err);
	sk_batch_parse_header(b.data, b.len, &h);
	h.attributes = SK_CODEC_GZIP;
	b.len = 0;
	sk_batch_frame(&b, &h, gz.data, gz.len);
	sk_hook_chain_process(c, 0, NULL, "t", 0, b.data, b.len, 1 << 20, &out);
	ok(out.what == SK_HOOK_OUT_REBUILT &&
		   sk_batch_parse_header(out.batch.data, out.batch.len, &h) ==
			   0 &&
		   (h.attributes & SK_BATCH_ATTR_CODEC_MASK) == SK_CODEC_GZIP &&
		   h.records_count == 2 &&
		   sk_batch_crc_ok(out.batch.data, out.batch.len) &&
		   sk_codec_decompress(SK_CODEC_GZIP,
				       out.batch.data + SK_BATCH_HEADER_SIZE,
				       out.batch.len - SK_BATCH_HEADER_SIZE,
				       &dec, 1 << 20, &err) == 0,
	   "a gzip batch is re-encoded as gzip");
	sk_hook_batch_out_free(&out);
	sk_hook_chain_unref(c);

	/* Everything dropped. */
	c = chain_of("return { on_record = function() return nil end }",
		     SK_HOOK_ON_ERROR_REJECT);
	b.len = 0;
	make_batch(&b, 2, -1, 0);
	sk_hook_chain_process(c, 0, NULL, "t", 0, b.data, b.len, 1 << 20, &out);
	is(out.what, SK_HOOK_OUT_NOTHING, "all dropped: nothing written");
	sk_hook_batch_out_free(&out);
	b.len = 0;
	make_batch(&b, 2, 9, 0);
	sk_hook_chain_process(c, 0, NULL, "t", 0, b.data, b.len, 1 << 20, &out);
	ok(out.what == SK_HOOK_OUT_REBUILT &&
		   sk_batch_parse_header(out.batch.data, out.batch.len, &h) ==
			   0 &&
		   h.records_count == 0 && h.last_offset_delta == 1 &&
		   h.producer_id == 9,
	   "all dropped with a producer id: an empty batch keeps the "
	   "sequence range");
	sk_hook_batch_out_free(&out);
	sk_hook_chain_unref(c);

	/* The policies. */
	b.len = 0;
	make_batch(&b, 2, -1, 0);
	{
		static const struct {
			int policy;
			enum sk_hook_out what;
			const char *name;
		} p[] = {
			{ SK_HOOK_ON_ERROR_REJECT, SK_HOOK_OUT_REJECT,
			  "reject" },
			{ SK_HOOK_ON_ERROR_PASS, SK_HOOK_OUT_ORIGINAL, "pass" },
			{ SK_HOOK_ON_ERROR_DROP, SK_HOOK_OUT_NOTHING, "drop" },
			{ SK_HOOK_ON_ERROR_DEAD_LETTER, SK_HOOK_OUT_NOTHING,
			  "dead-letter" },
		};

		for (size_t i = 0; i < SK_ARRAY_SIZE(p); i++) {
			c = chain_of("return { on_record = function(rec)\n"
				     "  rec.value = 'x'\n"
				     "  error('bad record') end }\n",
				     p[i].policy);
			sk_hook_chain_process(c, 0, NULL, "t", 0, b.data, b.len,
					      1 << 20, &out);
			is(out.what, p[i].what, "on_error: %s", p[i].name);
			if (p[i].policy == SK_HOOK_ON_ERROR_REJECT)
				is(out.kerr, SK_KERR_POLICY_VIOLATION,
				   "reject answers POLICY_VIOLATION");
			if (p[i].policy == SK_HOOK_ON_ERROR_DEAD_LETTER) {
				ok(out.n_extra == 1 &&
					   strcmp(out.extra[0].topic, "dlq") ==
						   0 &&
					   memmem(out.extra[0].batch.data,
						  out.extra[0].batch.len,
						  "bad record", 10) &&
					   memmem(out.extra[0].batch.data,
						  out.extra[0].batch.len, "v1",
						  2),
				   "dead letters carry the originals and why");
			}
			sk_hook_batch_out_free(&out);
			sk_hook_chain_unref(c);
		}
	}
	sk_buf_free(&b);
	sk_buf_free(&gz);
	sk_buf_free(&dec);
}

/*
 * A re-encoded batch against one made by hand: records a hook left
 * alone are copied from the original batch, changed ones encoded from
 * their fields, dropped ones leave offset gaps; the result must be the
 * bytes of the same batch encoded field by field (header as the
 * original's, kept records with their offset deltas and timestamps), for
 * keys, null keys and values, and headers, uncompressed and gzip.
 */
static void test_chain_copy(void)
{
	static const struct sk_record_header_in hd[] = {
		{ "h1", 2, "v1", 2 },
		{ "h2", 2, NULL, -1 },
	};
	static char big[200];
	struct sk_record_in in[6] = {
		{ "k0", 2, "v0", 2, 7000, hd, 2 },
		{ NULL, -1, NULL, -1, 7001, NULL, 0 },
		{ "k2", 2, big, (int32_t)sizeof(big), 6990, hd, 1 },
		{ "", 0, NULL, -1, 7500, hd, 2 },
		{ NULL, -1, "v4", 2, 9000, NULL, 0 },
		{ big, 150, "v5", 2, 7002, hd, 2 },
	};
	/* 0-based: 1 and 4 dropped, 3 given a value, the rest untouched. */
	static const int keep[] = { 0, 2, 3, 5 };
	struct sk_buf b = { 0 }, want = { 0 }, gz = { 0 }, dec = { 0 };
	struct sk_hook_batch_out out;
	struct sk_hook_chain *c;
	struct sk_batch_hdr h, nh;
	struct sk_err err;
	size_t start;
	bool all;

	memset(big, 'b', sizeof(big));
	c = chain_of("return { on_batch = function(b)\n"
		     "  b:drop(2) b:drop(5) b:set_value(4, 'new')\n"
		     "end }\n",
		     SK_HOOK_ON_ERROR_REJECT);
	sk_batch_build(&b, 0, in, 6, 0, 7, 1, 50);
	sk_batch_parse_header(b.data, b.len, &h);
	sk_hook_chain_process(c, 0, NULL, "t", 0, b.data, b.len, 1 << 20, &out);

	/* The same batch by hand, every record encoded from its fields. */
	nh = h;
	nh.records_count = 4;
	nh.max_timestamp = 7500;
	start = sk_batch_frame_begin(&want, &nh);
	for (size_t j = 0; j < SK_ARRAY_SIZE(keep); j++) {
		const struct sk_record_in *r = &in[keep[j]];
		struct sk_record rec = {
			.key = { r->key, r->key_len },
			.value = { r->value, r->value_len },
			.header_count = r->n_headers,
		};
		struct sk_buf hb = { 0 };
		struct sk_wr w = { &hb };

		if (keep[j] == 3)
			rec.value =
				(struct sk_str){ (const uint8_t *)"new", 3 };
		for (int32_t k = 0; k < r->n_headers; k++) {
			sk_wr_varint(&w, r->headers[k].key_len);
			sk_wr_raw(&w, r->headers[k].key,
				  (size_t)r->headers[k].key_len);
			sk_wr_varint(&w, r->headers[k].value_len);
			if (r->headers[k].value_len > 0)
				sk_wr_raw(&w, r->headers[k].value,
					  (size_t)r->headers[k].value_len);
		}
		rec.headers = hb.data;
		rec.headers_len = hb.len;
		sk_batch_record_write(&want, &rec, r->timestamp - 7000,
				      keep[j]);
		sk_buf_free(&hb);
	}
	sk_batch_frame_end(&want, start);
	ok(out.what == SK_HOOK_OUT_REBUILT && out.batch.len == want.len &&
		   memcmp(out.batch.data, want.data, want.len) == 0 &&
		   sk_batch_crc_ok(out.batch.data, out.batch.len),
	   "records kept, changed and dropped: the bytes of the batch "
	   "encoded by hand, with a valid CRC");
	{
		struct sk_rd r;
		struct sk_record rec;
		size_t n = 0;

		all = true;
		sk_rd_init(&r, out.batch.data + SK_BATCH_HEADER_SIZE,
			   out.batch.len - SK_BATCH_HEADER_SIZE);
		while (sk_batch_record_next(&r, &rec) && n < 4) {
			const struct sk_record_in *e = &in[keep[n]];

			all &= rec.offset_delta == keep[n] &&
			       rec.timestamp_delta == e->timestamp - 7000 &&
			       rec.key.len == e->key_len &&
			       rec.header_count == e->n_headers &&
			       (keep[n] == 3 ? rec.value.len == 3
					     : rec.value.len == e->value_len);
			n++;
		}
		ok(all && n == 4 && sk_rd_ok(&r) && sk_rd_left(&r) == 0,
		   "offset deltas 0 2 3 5, timestamps, keys, values and "
		   "headers as expected");
	}
	sk_hook_batch_out_free(&out);

	/* Gzip: the decompressed records are the same bytes. */
	sk_codec_compress(SK_CODEC_GZIP, b.data + SK_BATCH_HEADER_SIZE,
			  b.len - SK_BATCH_HEADER_SIZE, &gz, 0, &err);
	h.attributes = SK_CODEC_GZIP;
	b.len = 0;
	sk_batch_frame(&b, &h, gz.data, gz.len);
	sk_hook_chain_process(c, 0, NULL, "t", 0, b.data, b.len, 1 << 20, &out);
	ok(out.what == SK_HOOK_OUT_REBUILT &&
		   sk_batch_crc_ok(out.batch.data, out.batch.len) &&
		   sk_codec_decompress(SK_CODEC_GZIP,
				       out.batch.data + SK_BATCH_HEADER_SIZE,
				       out.batch.len - SK_BATCH_HEADER_SIZE,
				       &dec, 1 << 20, &err) == 0 &&
		   dec.len == want.len - SK_BATCH_HEADER_SIZE &&
		   memcmp(dec.data, want.data + SK_BATCH_HEADER_SIZE,
			  dec.len) == 0,
	   "gzip: the same records, compressed");
	sk_hook_batch_out_free(&out);
	sk_hook_chain_unref(c);

	/* Nothing dropped, one record changed: a batch clients could send. */
	c = chain_of("return { on_batch = function(b) b:set_key(2, 'kk') end }",
		     SK_HOOK_ON_ERROR_REJECT);
	b.len = 0;
	sk_batch_build(&b, 0, in, 6, 0, -1, -1, -1);
	sk_hook_chain_process(c, 0, NULL, "t", 0, b.data, b.len, 1 << 20, &out);
	ok(out.what == SK_HOOK_OUT_REBUILT &&
		   sk_batch_validate_produce(out.batch.data, out.batch.len,
					     1 << 20, NULL, &nh,
					     NULL) == SK_KERR_NONE &&
		   nh.records_count == 6 && out.batch.len == b.len + 2,
	   "one key set, none dropped: the batch validates");
	sk_hook_batch_out_free(&out);
	sk_hook_chain_unref(c);
	sk_buf_free(&b);
	sk_buf_free(&want);
	sk_buf_free(&gz);
	sk_buf_free(&dec);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
}

/* The first record's value as chain c writes a one-record batch. */
static void chain_value(const struct sk_hook_chain *c, char *buf, size_t cap)
{
	struct sk_hook_batch_out out;
	struct sk_buf b = { 0 };
	struct sk_record rec;
	struct sk_rd r;

	make_batch(&b, 1, -1, 0);
	sk_hook_chain_process(c, 0, NULL, "t.one", 0, b.data, b.len, 1 << 20,
			      &out);
	snprintf(buf, cap, "(out %d: %.60s)", (int)out.what, out.err);
	if (out.what == SK_HOOK_OUT_REBUILT) {
		sk_rd_init(&r, out.batch.data + SK_BATCH_HEADER_SIZE,
			   out.batch.len - SK_BATCH_HEADER_SIZE);
		if (sk_batch_record_next(&r, &rec))
			snprintf(buf, cap, "%.*s", (int)rec.value.len,
				 (const char *)rec.value.p);
	}
	sk_hook_batch_out_free(&out);
	sk_buf_free(&b);
}

static void test_reload(void)
{
	char dir[] = "/tmp/skald-hook-XXXXXX", path[100], yaml[400];
	struct sk_hooks hs;
	struct sk_config cfg;
	struct sk_err err = { { 0 } };
	struct sk_hook_chain *held;
	struct sk_hook *h;
	char buf[100];
	uint64_t v1;

	ok(mkdtemp(dir) != NULL, "temp dir");
	snprintf(path, sizeof(path), "%s/h.lua", dir);
	write_file(path, "return { on_record = function(r)\n"
			 "  r.value = 'v1:' .. r.value return r end }");
	snprintf(yaml, sizeof(yaml),
		 "topics:\n"
		 "  \"t.*\":\n"
		 "    hooks:\n"
		 "      - name: h\n"
		 "        script: %s\n",
		 path);
	sk_config_init(&cfg);
	ok(sk_config_load_string(&cfg, "t.yaml", yaml, strlen(yaml), &err) == 0,
	   "config (%s)", err.msg);
	ok(sk_hooks_init(&hs, NULL, &cfg, &err) == 0, "hooks init (%s)",
	   err.msg);
	h = sk_hooks_find(&hs, "t.one", "h");
	ok(h != NULL && sk_hooks_chain(&hs, "other") == NULL,
	   "a glob gives matching topics their hooks, and only them");
	v1 = h ? h->script->version : 0;

	write_file(path, "return { on_record = function(r) return r end");
	ok(sk_hooks_reload(&hs, &cfg, &err) != 0 &&
		   strstr(err.msg, "previous version keeps running"),
	   "a failed compile is reported (%s)", err.msg);
	h = sk_hooks_find(&hs, "t.one", "h");
	ok(h && h->script->version == v1, "and the old version stays");

	/* A batch under way holds its chain, as a job does from submit. */
	held = sk_hooks_chain(&hs, "t.one");
	if (held)
		sk_hook_chain_ref(held);
	write_file(path, "return { on_batch = function(b)\n"
			 "  b:set_value(1, 'v2:' .. b:value(1)) end }");
	ok(sk_hooks_reload(&hs, &cfg, &err) == 0, "a good reload (%s)",
	   err.msg);
	h = sk_hooks_find(&hs, "t.one", "h");
	ok(h && h->script->version != v1 &&
		   (h->script->has & SK_HOOK_HAS_BATCH),
	   "takes the new version");
	if (held) {
		chain_value(held, buf, sizeof(buf));
		is_str(buf, "v1:v0",
		       "a batch that started before the reload "
		       "finishes on the version it started with");
		sk_hook_chain_unref(held);
	} else {
		ok(0, "no chain for t.one");
	}
	held = sk_hooks_chain(&hs, "t.one");
	chain_value(held, buf, sizeof(buf));
	is_str(buf, "v2:v0", "the next one runs the new version");
	sk_hooks_fini(&hs);
	sk_config_free(&cfg);
	unlink(path);
	rmdir(dir);
}

/* batch:value_json and batch:set_value_json: decode and encode in place. */
static void test_batch_json(void)
{
	struct sk_hook_call call = { .topic = "t", .hook = "h" };
	const char *vals[3] = { "{\"b\":1,\"a\":[true,null]}", "nope", "x" };
	char buf[100];
	struct sk_hook_res res;
	struct sk_hook_recs rs;
	struct sk_err err;
	struct sk_hook_script *s = compile(
		"local json = skald.json\n"
		"return { on_batch = function(b)\n"
		"  local d = b:value_json(1)\n"
		"  assert(d.b == 1 and d.a[2] == json.null and "
		"json.is_array(d.a))\n"
		"  d.c = 'q\"'\n"
		"  b:set_value_json(1, d)\n"
		"  local ok, e = pcall(b.value_json, b, 2)\n"
		"  local ok2, e2 = pcall(json.decode, b:value(2))\n"
		"  b:set_value(3, tostring(not ok and not ok2 and e == e2) .. "
		"' ' .. e)\n"
		"  b:set_value(2, nil)\n"
		"  assert(b:value_json(2) == nil)\n"
		"  local ok3, e3 = pcall(b.set_value_json, b, 2, {f = error})\n"
		"  assert(not ok3 and e3:find('cannot encode', 1, true))\n"
		"end }\n",
		&err);

	ok(s != NULL, "value_json script compiled (%s)", err.msg);
	recs_of(&rs, vals, 3);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	is(res.status, SK_HOOK_OK, "value_json ran (%s)", res.msg);
	snprintf(buf, sizeof(buf), "%.*s",
		 rs.r[0].changed ? (int)rs.r[0].value_len : 0,
		 (const char *)rs.r[0].value);
	is_str(buf, "{\"a\":[true,null],\"b\":1,\"c\":\"q\\\"\"}",
	       "set_value_json writes json.encode of the value");
	ok(rs.r[2].value_len > 0 && strncmp((const char *)rs.r[2].value,
					    "true skald.json.decode:", 23) == 0,
	   "value_json fails as json.decode does (%.*s)",
	   (int)rs.r[2].value_len, (const char *)rs.r[2].value);
	ok(rs.r[1].value_len == -1, "a null value decodes to nil");
	sk_hook_recs_free(&rs);
	sk_hook_script_unref(s);
}

/*
 * on_record runs from a loop in Lua that fetches values a chunk at a time
 * and calls into C only for records that changed: over several chunks,
 * every outcome must land on its own record, and a field read on one
 * record must not make the next one look changed.
 */
static void test_each_record(void)
{
	static const char *const cycle[] = { "a", "b", "c", "d", "e" };
	struct sk_hook_call call = { .topic = "t", .hook = "h" };
	const char *vals[301];
	struct sk_hook_res res;
	struct sk_hook_recs rs;
	struct sk_err err;
	struct sk_hook_script *s = compile(
		"return { on_record = function(rec)\n"
		"  local v = rec.value\n"
		"  if v == 'a' then local _ = rec.key; return nil end\n"
		"  if v == 'b' then return rec end\n"
		"  if v == 'c' then rec.value = nil; return rec end\n"
		"  if v == 'd' then return { value = 'D', key = rec.key } end\n"
		"  return false end }\n",
		&err);
	size_t bad = 0, n = SK_ARRAY_SIZE(vals);

	ok(s != NULL, "each_record script compiled (%s)", err.msg);
	for (size_t i = 0; i < n; i++)
		vals[i] = cycle[i % 5];
	recs_of(&rs, vals, n);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	is(res.status, SK_HOOK_OK, "each_record ran (%s)", res.msg);
	for (size_t i = 0; i < n; i++) {
		const struct sk_hook_rec *r = &rs.r[i];
		bool want;

		switch (i % 5) {
		case 0: /* read a lazy field, then dropped */
		case 4: /* false drops too */
			want = r->dropped;
			break;
		case 1: /* returned as given */
			want = !r->dropped && !r->changed;
			break;
		case 2: /* value assigned nil */
			want = !r->dropped && r->changed && r->value_len == -1;
			break;
		default: /* another table */
			want = !r->dropped && r->changed && r->value_len == 1 &&
			       r->value[0] == 'D' && r->key_len == 1 &&
			       r->key[0] == 'k';
		}
		bad += !want;
	}
	is(bad, 0, "each of %zu records has its own outcome", n);
	is(res.dropped, 121, "121 records dropped");
	sk_hook_recs_free(&rs);
	sk_hook_script_unref(s);
}

/* Run src over n records with values vals[i % nv]; the status. */
static enum sk_hook_status run_many(const char *src, const char *const *vals,
				    size_t nv, size_t n,
				    struct sk_hook_recs *rs,
				    struct sk_hook_res *res)
{
	struct sk_hook_call call = { .topic = "t", .hook = "h" };
	const char **v = calloc(n, sizeof(*v));
	struct sk_hook_script *s;
	struct sk_err err;

	s = compile(src, &err);
	if (!s) {
		diag("compile: %s", err.msg);
		free(v);
		memset(rs, 0, sizeof(*rs));
		return SK_HOOK_ERROR;
	}
	for (size_t i = 0; i < n; i++)
		v[i] = vals[i % nv];
	recs_of(rs, v, n);
	sk_hook_run_records(s, 0, &call, rs, res);
	sk_hook_script_unref(s);
	free(v);
	return res->status;
}

/*
 * each_record hands the same rec table to the next record when the
 * script cannot keep it (read from its bytecode) and added no field to
 * it. Scripts that keep rec, by any route, must see a fresh table every
 * time; scripts that do not must never see the last record's fields.
 */
static void test_rec_reuse(void)
{
	static const char *const keepers[] = {
		"local prev\n"
		"return { on_record = function(rec)\n"
		"  if prev == rec then error('same table') end\n"
		"  prev = rec; return rec end }\n",
		"local seen = {}\n"
		"return { on_record = function(rec)\n"
		"  for _, s in ipairs(seen) do\n"
		"    if s == rec then error('same table') end end\n"
		"  seen[#seen + 1] = rec; return rec end }\n",
		"local seen = {}\n"
		"local function keep(r) seen[r] = true end\n"
		"return { on_record = function(rec)\n"
		"  if seen[rec] then error('same table') end\n"
		"  local r = rec or seen; keep(r); return rec end }\n",
		"local last\n"
		"return { on_record = function(rec)\n"
		"  if last and last() == rec then error('same table') end\n"
		"  last = function() return rec end; return rec end }\n",
	};
	static const char *const ab[] = { "a", "b" };
	struct sk_hook_res res;
	struct sk_hook_recs rs;
	size_t bad;

	for (size_t k = 0; k < SK_ARRAY_SIZE(keepers); k++) {
		is(run_many(keepers[k], ab, 2, 300, &rs, &res), SK_HOOK_OK,
		   "a script keeping rec (way %zu) gets a fresh table each "
		   "time (%s)",
		   k + 1, res.msg);
		sk_hook_recs_free(&rs);
	}

	is(run_many("return { on_record = function(rec)\n"
		    "  if rec.extra ~= nil then error('leak') end\n"
		    "  rec.extra = 1; return rec end }\n",
		    ab, 2, 300, &rs, &res),
	   SK_HOOK_OK,
	   "a field added to rec never reaches the next record (%s)", res.msg);
	sk_hook_recs_free(&rs);

	/* Lazy fields read on one record are the next one's own. */
	{
		const char *vals[300];
		char keys[300][8];
		struct sk_hook_call call = { .topic = "t", .hook = "h" };
		struct sk_err err;
		struct sk_hook_script *s = compile(
			"return { on_record = function(rec)\n"
			"  if rec.value == 'a' then rec.value = rec.key end\n"
			"  return rec end }\n",
			&err);

		for (size_t i = 0; i < 300; i++)
			vals[i] = ab[i % 2];
		recs_of(&rs, vals, 300);
		for (size_t i = 0; i < 300; i++) {
			snprintf(keys[i], sizeof(keys[i]), "k%zu", i);
			rs.r[i].key = (const uint8_t *)keys[i];
			rs.r[i].key_len = (int32_t)strlen(keys[i]);
		}
		sk_hook_run_records(s, 0, &call, &rs, &res);
		bad = res.status != SK_HOOK_OK;
		for (size_t i = 0; i < 300; i++) {
			const struct sk_hook_rec *r = &rs.r[i];

			if (i % 2 == 0)
				bad += !r->changed ||
				       r->value_len !=
					       (int32_t)strlen(keys[i]) ||
				       memcmp(r->value, keys[i],
					      strlen(keys[i]));
			else
				bad += r->changed;
		}
		is(bad, 0, "each record's key is its own (%s)", res.msg);
		sk_hook_recs_free(&rs);
		sk_hook_script_unref(s);
	}

	/* A value set to nil on one record is back on the next. */
	is(run_many("return { on_record = function(rec)\n"
		    "  if rec.value == nil then error('no value') end\n"
		    "  if rec.value == 'a' then rec.value = nil end\n"
		    "  return rec end }\n",
		    ab, 2, 300, &rs, &res),
	   SK_HOOK_OK, "a value removed from rec is not missing next time (%s)",
	   res.msg);
	bad = 0;
	for (size_t i = 0; i < rs.n; i++)
		bad += i % 2 == 0
			       ? !(rs.r[i].changed && rs.r[i].value_len == -1)
			       : rs.r[i].changed;
	is(bad, 0, "and the records it was removed from are null");
	sk_hook_recs_free(&rs);
}

/* key and timestamp are filled in on first use; changes still count. */
static void test_lazy_fields(void)
{
	struct sk_hook_call call = { .topic = "t", .hook = "h" };
	const char *vals[2] = { "a", "b" };
	struct sk_hook_res res;
	struct sk_hook_recs rs;
	struct sk_err err;
	struct sk_hook_script *s = compile(
		"local kept\n"
		"return { on_record = function(rec)\n"
		"  if kept then local _ = kept.key end\n"
		"  if rec.value == 'a' then rec.key = 'K'; rec.timestamp = 7\n"
		"  else assert(rec.key == 'k' and rec.timestamp == 1001)\n"
		"    rec.timestamp = rec.timestamp + 1 end\n"
		"  return rec end,\n"
		"  keep = function(r) kept = r end }\n",
		&err);

	ok(s != NULL, "lazy fields script compiled (%s)", err.msg);
	recs_of(&rs, vals, 2);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	is(res.status, SK_HOOK_OK, "lazy fields ran (%s)", res.msg);
	ok(rs.r[0].changed && rs.r[0].key_len == 1 && rs.r[0].key[0] == 'K' &&
		   rs.r[0].timestamp == 7,
	   "key and timestamp assigned without being read");
	ok(rs.r[1].changed && rs.r[1].timestamp == 1002 &&
		   rs.r[1].key[0] == 'k',
	   "read, then changed");
	sk_hook_recs_free(&rs);
	sk_hook_script_unref(s);

	s = compile("local kept\n"
		    "return { on_record = function(rec)\n"
		    "  if kept then return kept.key and rec end\n"
		    "  kept = rec; return rec end }\n",
		    &err);
	recs_of(&rs, vals, 2);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	ok(res.status == SK_HOOK_ERROR && strstr(res.msg, "outside"),
	   "a lazy field of a rec kept past its call is an error (%s)",
	   res.msg);
	sk_hook_recs_free(&rs);
	sk_hook_script_unref(s);
}

/*
 * A script that copies rec with pairs keeps every field, as in the SDK
 * where rec is a plain table; a field it assigned is not filled in.
 */
static void test_pairs_copy(void)
{
	struct sk_hook_call call = { .topic = "t", .hook = "h" };
	const char *vals[2] = { "a", "b" };
	struct sk_hook_res res;
	struct sk_hook_recs rs;
	struct sk_err err;
	struct sk_hook_script *s =
		compile("return { on_record = function(rec)\n"
			"  if rec.value == 'b' then rec.key = nil end\n"
			"  local out = {}\n"
			"  for k, v in pairs(rec) do out[k] = v end\n"
			"  assert(out.topic == 't' and out.partition == 0)\n"
			"  out.value = out.value .. '!'\n"
			"  return out end }\n",
			&err);

	ok(s != NULL, "pairs copy script compiled (%s)", err.msg);
	recs_of(&rs, vals, 2);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	is(res.status, SK_HOOK_OK, "pairs copy ran (%s)", res.msg);
	ok(rs.r[0].key_len == 1 && rs.r[0].key[0] == 'k' &&
		   rs.r[0].timestamp == 1000 && rs.r[0].value_len == 2,
	   "a copy made with pairs keeps key and timestamp");
	ok(rs.r[1].key_len == -1 && rs.r[1].timestamp == 1001,
	   "a key the script set to nil stays nil in the copy");
	sk_hook_recs_free(&rs);
	sk_hook_script_unref(s);
}

/* Every per-hook counter reaches the /metrics registry. */
static void test_hook_metrics(void)
{
	static const char *const names[] = {
		"skald_hook_calls_total",
		"skald_hook_records_in_total",
		"skald_hook_records_out_total",
		"skald_hook_records_dropped_total",
		"skald_hook_errors_total",
		"skald_hook_timeouts_total",
		"skald_hook_seconds_total",
		"skald_hook_lua_memory_bytes",
		"skald_hook_breaker_trips_total",
		"skald_hook_skipped_total",
		"skald_hook_acks0_closes_total",
	};
	char dir[] = "/tmp/skald-hook-metrics.XXXXXX", path[300], yaml[600];
	struct sk_hook_batch_out out;
	struct sk_config cfg;
	struct sk_hooks hs;
	struct sk_buf b = { 0 }, text = { 0 };
	struct sk_hook_chain *c;
	struct sk_hook *h;
	struct sk_err err = { { 0 } };
	char *m, line[200];

	ok(mkdtemp(dir) != NULL, "temp dir");
	snprintf(path, sizeof(path), "%s/m.lua", dir);
	write_file(path, "return { on_record = function(r)\n"
			 "  if r.value == 'v1' then return nil end\n"
			 "  return r end }");
	snprintf(yaml, sizeof(yaml),
		 "topics:\n"
		 "  t.one:\n"
		 "    hooks:\n"
		 "      - name: h\n"
		 "        script: %s\n",
		 path);
	sk_config_init(&cfg);
	ok(sk_config_load_string(&cfg, "t.yaml", yaml, strlen(yaml), &err) == 0,
	   "config (%s)", err.msg);
	ok(sk_hooks_init(&hs, NULL, &cfg, &err) == 0, "hooks init (%s)",
	   err.msg);
	hs.metrics = sk_metrics_new();
	c = sk_hooks_chain(&hs, "t.one");
	h = sk_hooks_find(&hs, "t.one", "h");
	make_batch(&b, 3, -1, 0);
	for (int i = 0; i < 2; i++) {
		sk_hook_chain_process(c, 0, NULL, "t.one", 0, b.data, b.len,
				      1 << 20, &out);
		if (i == 1 && h)
			h->m.acks0_closes++; /* as a refused acks=0 does */
		sk_hook_chain_account(&hs, c, out.d);
		sk_hook_batch_out_free(&out);
	}
	sk_metrics_render(hs.metrics, &text);
	m = strndup((const char *)text.data, text.len);
	for (size_t i = 0; i < SK_ARRAY_SIZE(names); i++) {
		snprintf(line, sizeof(line),
			 "\n%s{topic=\"t.one\",hook=\"h\"} ", names[i]);
		ok(strstr(m, line) != NULL, "/metrics has %s", names[i]);
	}
	ok(strstr(m,
		  "skald_hook_calls_total{topic=\"t.one\",hook=\"h\"} 2\n") &&
		   strstr(m, "skald_hook_records_in_total{topic=\"t.one\","
			     "hook=\"h\"} 6\n") &&
		   strstr(m, "skald_hook_records_dropped_total{topic=\"t.one\","
			     "hook=\"h\"} 2\n") &&
		   strstr(m, "skald_hook_acks0_closes_total{topic=\"t.one\","
			     "hook=\"h\"} 1\n"),
	   "with the counts of the batches");
	free(m);
	sk_buf_free(&text);
	sk_buf_free(&b);
	sk_hooks_fini(&hs);
	sk_metrics_free(hs.metrics);
	sk_config_free(&cfg);
	unlink(path);
	rmdir(dir);
}

/*
 * The CPU bound's watchdog (a per-thread timer that installs the count
 * hook at the deadline): it works on any thread, at a script's top level
 * too, and leaves nothing behind for the calls after a timeout.
 */
static void *watchdog_thread(void *arg)
{
	struct sk_hook_call call = { .topic = "t", .hook = "h" };
	const char *v[1] = { "loop" };
	struct sk_hook_script *s = arg;
	struct sk_hook_recs rs;
	struct sk_hook_res res;
	int *bad = calloc(1, sizeof(int));

	recs_of(&rs, v, 1);
	sk_hook_run_records(s, 0, &call, &rs, &res);
	if (res.status != SK_HOOK_TIMEOUT)
		*bad = 1000;
	sk_hook_recs_free(&rs);
	v[0] = "quick";
	for (int i = 0; i < 200; i++) {
		recs_of(&rs, v, 1);
		sk_hook_run_records(s, 0, &call, &rs, &res);
		if (res.status != SK_HOOK_OK)
			(*bad)++;
		sk_hook_recs_free(&rs);
	}
	return bad;
}

static void test_watchdog(void)
{
	struct sk_hook_script *s;
	struct sk_err err;
	pthread_t th;
	void *bad = NULL;

	s = compile("while true do end", &err);
	ok(s == NULL && strstr(err.msg, "timeout"),
	   "a top level that loops is cut off at compile (%s)", err.msg);
	s = compile("return { on_record = function(rec)\n"
		    "  if rec.value == 'loop' then while true do end end\n"
		    "  return rec end }\n",
		    &err);
	ok(s != NULL, "compiled (%s)", err.msg);
	if (s && pthread_create(&th, NULL, watchdog_thread, s) == 0)
		pthread_join(th, &bad);
	ok(bad && *(int *)bad == 0,
	   "on another thread: the loop is cut off, and the 200 calls "
	   "after it all run (%d)",
	   bad ? *(int *)bad : -1);
	free(bad);
	sk_hook_script_unref(s);
}
/*
 * The probe behind the design: with the JIT on, a count hook does not
 * interrupt a compiled loop on Debian's LuaJIT. Run in a child that is
 * killed after a second; either outcome passes, and is reported.
 */
static void test_jit_probe(void)
{
	struct sk_hook_limits jit = lim;
	pid_t pid;
	int status = 0;

	jit.jit = true;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct sk_hook_call call = { .topic = "t", .hook = "h" };
		struct sk_hook_script *s = NULL;
		struct sk_hook_recs rs;
		struct sk_hook_res res;
		struct sk_err err;
		const char *v[1] = { "x" };
		const char *src = "return { on_record = function(rec)\n"
				  "  while true do end end }\n";

		if (sk_hook_script_new(&s, "probe.lua", src, strlen(src), &jit,
				       1, &err))
			_exit(3);
		recs_of(&rs, v, 1);
		sk_hook_run_records(s, 0, &call, &rs, &res);
		_exit(res.status == SK_HOOK_TIMEOUT ? 0 : 4);
	}
	for (int i = 0; i < 100; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		usleep(10000);
	}
	if (waitpid(pid, &status, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		ok(1, "probe: with the JIT on, while true do end is NOT "
		      "interrupted by the count hook (hence the interpreter)");
	} else {
		ok(1,
		   "probe: with the JIT on the loop was interrupted "
		   "(exit %d): this LuaJIT has CHECKHOOK",
		   WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	}
}

/* ------------------------------------------------------------------ */
/* skald.json: the C codec against the Lua one, input for input */

extern const char sk_hook_skald_lua[];

static const char json_helpers[] =
	"function try_decode(s)\n"
	"  local ok, v = pcall(skald.json.decode, s)\n"
	"  if not ok then return 'E:' .. tostring(v) end\n"
	"  local ok2, e = pcall(skald.json.encode, v)\n"
	"  return (ok2 and 'V:' or 'EE:') .. tostring(e)\n"
	"end\n"
	"function try_encode(expr)\n"
	"  local f = assert(loadstring('return ' .. expr))\n"
	"  local ok, v = pcall(skald.json.encode, f())\n"
	"  return (ok and 'V:' or 'E:') .. tostring(v)\n"
	"end\n"
	"local function show(n, ok, ...)\n"
	"  if not ok then return 'E:' .. tostring((...)) end\n"
	"  local out = {}\n"
	"  for i = 1, n - 1 do\n"
	"    local v = select(i, ...)\n"
	"    out[i] = v == nil and 'nil' or skald.json.encode(v)\n"
	"  end\n"
	"  return 'V:' .. table.concat(out, '|')\n"
	"end\n"
	"local function call(fn, expr)\n"
	"  local f = assert(loadstring('return ' .. expr))\n"
	"  local function n(...) return select('#', ...), ... end\n"
	"  return show(n(pcall(fn, f())))\n"
	"end\n"
	"function try_get(expr) return call(skald.json.get, expr) end\n"
	"function try_set(expr) return call(skald.json.set, expr) end\n"
	/*
	 * A random object text (blanks, escaped and repeated keys, nested
	 * values, now and then a broken byte) and a random get or set on
	 * it: the same seed gives both states the same call.
	 */
	"local R = math.random\n"
	"local KEYS = { 'a', 'b', 'c', 'a\\\\u0062', 'ab', '' }\n"
	"local VALS = { '1', '-0.5e3', '\"x\"', '\"\\\\n\"', 'true', "
	"'null', '[]', '{}', '[1,{\"a\":[2]}]', '{\"a\":1,\"a\":2}' }\n"
	"local function ws() return ({ '', ' ', '\\n\\t', '  ' })[R(4)] "
	"end\n"
	"local function doc()\n"
	"  local out = { ws(), '{' }\n"
	"  for m = 1, R(0, 5) do\n"
	"    if m > 1 then out[#out + 1] = ws() .. ',' end\n"
	"    out[#out + 1] = ws() .. '\"' .. KEYS[R(#KEYS)] .. '\"' .. ws() "
	".. ':' .. ws() .. VALS[R(#VALS)] .. ws()\n"
	"  end\n"
	"  out[#out + 1] = '}' .. ws()\n"
	"  local s = table.concat(out)\n"
	"  if R(10) == 1 then\n"
	"    local at = R(#s)\n"
	"    s = s:sub(1, at - 1) .. ('x,:}\"'):sub(R(5), R(5)) .. "
	"s:sub(at + 1)\n"
	"  end\n"
	"  return s\n"
	"end\n"
	"local NEW = { 1, 'y', false, skald.json.null, {1, 2}, {k = 'v'} }\n"
	"function try_random(seed)\n"
	"  math.randomseed(tonumber(seed))\n"
	"  local s, names = doc(), {}\n"
	"  local names_only = { 'a', 'b', 'c', 'ab', 'zz', '' }\n"
	"  if R(2) == 1 then\n"
	"    for j = 1, R(0, 3) do names[j] = names_only[R(#names_only)] end\n"
	"    return s .. ' => ' .. show_call(skald.json.get, s, names)\n"
	"  end\n"
	"  for j = 1, R(0, 3) do\n"
	"    names[2 * j - 1] = names_only[R(#names_only)]\n"
	"    names[2 * j] = R(4) == 1 and nil or NEW[R(#NEW)]\n"
	"  end\n"
	"  return s .. ' => ' .. show_call(skald.json.set, s, names)\n"
	"end\n"
	"function show_call(fn, s, args)\n"
	"  local n = table.maxn(args)\n"
	"  local function c(...) return select('#', ...), ... end\n"
	"  return show(c(pcall(fn, s, unpack(args, 1, n))))\n"
	"end\n";

/* A trusted state with the skald module: the C codec or the Lua one. */
static lua_State *json_state(bool c_codec)
{
	lua_State *L = luaL_newstate();

	luaL_openlibs(L);
	if (luaL_loadbuffer(L, sk_hook_skald_lua, strlen(sk_hook_skald_lua),
			    "@scripts/skald/skald.lua"))
		return NULL;
	lua_createtable(L, 0, 1);
	if (c_codec) {
		lua_pushcfunction(L, sk_hook_json_open);
		lua_setfield(L, -2, "json");
	}
	if (lua_pcall(L, 1, 1, 0))
		return NULL;
	lua_setglobal(L, "skald");
	if (luaL_dostring(L, json_helpers))
		return NULL;
	return L;
}

/* fn(arg) in L, as a string copied into out. */
static void json_call(lua_State *L, const char *fn, const char *arg, size_t len,
		      char *out, size_t cap)
{
	size_t n;
	const char *r;

	lua_getglobal(L, fn);
	lua_pushlstring(L, arg, len);
	if (lua_pcall(L, 1, 1, 0)) {
		snprintf(out, cap, "pcall: %s", lua_tostring(L, -1));
	} else {
		r = lua_tolstring(L, -1, &n);
		snprintf(out, cap, "%.*s", (int)n, r ? r : "(nil)");
	}
	lua_pop(L, 1);
}

/*
 * The string scanner takes 16, then 8 bytes at a time: a special byte
 * (quote, backslash, control) at every position of a word, and bytes it
 * must let through (blank, DEL, UTF-8), in encode and decode.
 */
static void test_json_string_scan(void)
{
	expect_value(
		"(function() local j, rep = skald.json, string.rep\n"
		"for n = 0, 40 do for _, c in ipairs({ '\"', '\\\\', '\\n', "
		"'\\1', '\\31', ' ', '\\127', '\\195\\169' }) do\n"
		"  local s = rep('a', n) .. c .. rep('x', 40 - n)\n"
		"  local t = j.encode(s)\n"
		"  if j.decode(t) ~= s then return 'round trip ' .. n end\n"
		"  if c == '\"' or c == '\\\\' or c:byte() < 32 then\n"
		"    if not t:find('\\\\', 1, true) then return 'raw ' .. n end\n"
		"    if pcall(j.decode, '\"' .. s .. '\"') then\n"
		"      return 'accepted ' .. n end\n"
		"  elseif t ~= '\"' .. s .. '\"' then return 'escaped ' .. n end\n"
		"end end return true end)()",
		"true",
		"json: special bytes found at every position of a word");
}

static void test_json_codecs(void)
{
	static const char *const decode_in[] = {
		"",
		" ",
		"{}",
		"[]",
		"null",
		"true",
		"false",
		"tru",
		"nul",
		"1",
		"-0",
		"01",
		"-01",
		"-",
		"1.",
		"1.5",
		"1e5",
		"1E+5",
		"1e",
		"1e+",
		"-1.25e-3",
		"123456789012345678901234567890",
		"1e400",
		"-1e400",
		"1e-400",
		"0.1",
		"3.14159265358979",
		"9007199254740993",
		"[1,2,]",
		"[1 2]",
		"{\"a\":1,}",
		"{\"a\" 1}",
		"{a:1}",
		"{\"a\":1",
		"[",
		"\"abc",
		"\"a\\qb\"",
		"\"a\\u00e9b\"",
		"\"\\ud83d\\ude00\"",
		"\"\\ud83d x\"",
		"\"\\ude00\"",
		"\"\\uD83D\\uDE00\"",
		"\"\\ud83d\\u0041\"",
		"\"\\u12\"",
		"\"\\u12G4\"",
		"\"tab\there\"",
		"\"nl\nthere\"",
		"\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
		"[1,[2,[3,{\"x\":null}]]]",
		"{\"b\":1,\"a\":[],\"c\":{},\"\":0}",
		"  {\"x\" : [ true , false , null ] }  ",
		"{} x",
		"\"\\",
		"\"\\u",
		"{\"a\":1,\"a\":2}",
		"[null,null]",
		"\"\x01\"",
		"\"caf\xc3\xa9 \xe2\x82\xac\"",
		"\"\x7f\"",
		"[-0.0,1E-2,2e+2]",
		"{\"k\":\"v\",\"n\":{\"m\":[1.5,\"x\",{}]}}",
		"\t\r\n[]\t",
		"[1]]",
		"\"x\"\"y\"",
		"+1",
		".5",
		"1.e3",
		"0x10",
		"NaN",
		"Infinity",
		"[\"\\u0000\"]",
		"{\"a\":[1,{\"b\":[]}]}",
	};
	static const char *const encode_in[] = {
		"{1,2,3}",
		"{a=1,b='x'}",
		"{[1]=1,[3]=3}",
		"{1,2,x=3}",
		"skald.json.array()",
		"skald.json.array({})",
		"{}",
		"0/0",
		"1/0",
		"-1/0",
		"0.1",
		"1/3",
		"2^53",
		"2^53+2",
		"-2^53",
		"-2^53-2",
		"1e300",
		"123.456",
		"-0.0",
		"5e-324",
		"1e21",
		"{f=function() end}",
		"{[true]=1}",
		"{[1.5]=1}",
		"'a\\0b\\1c\"\\\\/\\127\\200'",
		"skald.json.null",
		"{skald.json.null, nil, 3}",
		"nil",
		"true",
		"false",
		"(function() local t = {} t.x = t return t end)()",
		"function() end",
		"{b={d=1,c=2},a={3,{}}}",
		"{['z']=1,['a']=2,['m']=3,['ab']=4,['a\\0']=5}",
		"setmetatable({}, {__metatable = 'skald.json.array'})",
		"{[1]='a',[2]='b',[4]='d'}",
		"'\\8\\12\\n\\r\\t\\31'",
		"{ {{{{}}}} }",
		"coroutine.create(function() end)",
	};
	/* g: or s: then json.get's or json.set's arguments, as Lua. */
	static const char *const fields_in[] = {
		"g:'{\"a\":1,\"b\":\"x\"}', 'a', 'b', 'c'",
		"g:'  {\"a\" : [1, {\"x\":null}] , \"a\":2 }  ', 'a'",
		"g:'{\"a\":[1, {\"x\":null}]}', 'a', 'a'",
		"g:'{\"a\\u0062\":1}', 'ab'",
		"g:'[1,2]', 'a'",
		"g:'  ', 'a'",
		"g:'', 'a'",
		"g:'{\"a\":1', 'a'",
		"g:'{\"a\":1} x', 'a'",
		"g:'{\"a\":1,}', 'a'",
		"g:'{\"a\" 1}', 'a'",
		"g:'{a:1}', 'a'",
		"g:'{\"a\":tru}', 'b'",
		"g:'{\"a\":1}', 1",
		"g:'{\"a\":1}', 'a', nil",
		"g:5, 'a'",
		"g:'{}', 'a'",
		"g:'{\"a\":1}'",
		"g:'{\"x\":1,\"a\":\"\\ud83d\\ude00\"}', 'a'",
		"g:'{\"a\":[[[[1]]]],\"b\":{\"c\":{}}}', 'b', 'a'",
		"g:'{}', unpack((function() local t = {} for i = 1, 65 do "
		"t[i] = 'n' .. i end return t end)())",
		"s:'{\"a\":1,\"b\":2}', 'a', 5",
		"s:' { \"a\" : 1 , \"b\":[1,2], \"c\":\"x\" } ', 'a', 5, "
		"'c', nil, 'd', 'new'",
		"s:'{\"a\":1}', 'a', nil",
		"s:'{}', 'x', {1,2}",
		"s:'{ }', 'x', skald.json.null",
		"s:'{\"a\":1,\"b\":2,\"c\":3}', 'b', nil",
		"s:'{\"a\":1,\"b\":2,\"c\":3}', 'a', nil, 'c', nil",
		"s:'{\"a\":1 , \"b\":2 ,\"c\":3}', 'a', nil, 'b', nil, 'x', 0",
		"s:'{\"a\":1,\"a\":2}', 'a', 'z'",
		"s:'{\"a\":1}', 'a', 2, 'a', 3",
		"s:'{\"a\":1}', 'b', 2, 'b', nil",
		"s:'{\"a\":1}', 'b'",
		"s:'{\"a\\u0062\":1}', 'ab', true",
		"s:'{\"a\":1}', 'f', function() end",
		"s:'[1]', 'a', 1",
		"s:'{\"a\":1,}', 'a', 1",
		"s:'{\"a\":1}', 'b', {y=1, x={}}",
		"s:'{\"a\":1}', 'new\"key', 'v\\n'",
		"s:'{\"a\":1}'",
		"s:'{\"a\":1}', 2, 3",
		"s:nil, 'a', 1",
		"s:'{\"n\":1.50,\"m\":-0}', 'x', 1.5",
	};
	lua_State *A = json_state(false), *B = json_state(true);
	char a[4096], b[4096], deep[1024];
	int same = 0, total = 0;

	ok(A && B, "a Lua-codec state and a C-codec state");
	if (!A || !B)
		return;
	for (size_t i = 0; i < SK_ARRAY_SIZE(decode_in); i++) {
		json_call(A, "try_decode", decode_in[i], strlen(decode_in[i]),
			  a, sizeof(a));
		json_call(B, "try_decode", decode_in[i], strlen(decode_in[i]),
			  b, sizeof(b));
		total++;
		if (strcmp(a, b) == 0)
			same++;
		else
			diag("decode '%s': Lua '%s', C '%s'", decode_in[i], a,
			     b);
	}
	/* A NUL byte inside a string and after a value. */
	json_call(A, "try_decode", "\"a\0b\"", 5, a, sizeof(a));
	json_call(B, "try_decode", "\"a\0b\"", 5, b, sizeof(b));
	total++;
	same += strcmp(a, b) == 0;
	json_call(A, "try_decode", "1\0", 2, a, sizeof(a));
	json_call(B, "try_decode", "1\0", 2, b, sizeof(b));
	total++;
	same += strcmp(a, b) == 0;
	/* Nesting: 200 levels decode, 201 do not. */
	for (int levels = 199; levels <= 201; levels++) {
		memset(deep, '[', (size_t)levels);
		memset(deep + levels, ']', (size_t)levels);
		json_call(A, "try_decode", deep, (size_t)levels * 2, a,
			  sizeof(a));
		json_call(B, "try_decode", deep, (size_t)levels * 2, b,
			  sizeof(b));
		total++;
		if (strcmp(a, b) == 0)
			same++;
		else
			diag("%d levels: Lua '%.60s', C '%.60s'", levels, a, b);
	}
	/*
	 * Strings scanned eight bytes at a time: a special character at
	 * every position of strings of 0..20 bytes, escaped (decoded, then
	 * encoded back) or raw (an error, or the end of the string).
	 */
	for (size_t len = 1; len <= 20; len++) {
		static const char *const specials[] = { "\\\"", "\\\\",
							"\\n",	"\\u0001",
							"\x01", "\"",
							"\x7f", "\xc3\xa9" };

		for (size_t pos = 0; pos < len; pos++) {
			for (size_t k = 0; k < SK_ARRAY_SIZE(specials); k++) {
				char in[64];
				int n = snprintf(
					in, sizeof(in), "\"%.*s%s%.*s\"",
					(int)pos, "abcdefghijklmnopqrst",
					specials[k], (int)(len - pos - 1),
					"ABCDEFGHIJKLMNOPQRST");

				json_call(A, "try_decode", in, (size_t)n, a,
					  sizeof(a));
				json_call(B, "try_decode", in, (size_t)n, b,
					  sizeof(b));
				total++;
				if (strcmp(a, b) == 0)
					same++;
				else
					diag("decode '%s': Lua '%s', C '%s'",
					     in, a, b);
			}
		}
	}
	for (size_t i = 0; i < SK_ARRAY_SIZE(encode_in); i++) {
		json_call(A, "try_encode", encode_in[i], strlen(encode_in[i]),
			  a, sizeof(a));
		json_call(B, "try_encode", encode_in[i], strlen(encode_in[i]),
			  b, sizeof(b));
		total++;
		if (strcmp(a, b) == 0)
			same++;
		else
			diag("encode %s: Lua '%s', C '%s'", encode_in[i], a, b);
	}
	for (size_t i = 0; i < SK_ARRAY_SIZE(fields_in); i++) {
		const char *fn = fields_in[i][0] == 'g' ? "try_get" : "try_set";
		const char *in = fields_in[i] + 2;

		json_call(A, fn, in, strlen(in), a, sizeof(a));
		json_call(B, fn, in, strlen(in), b, sizeof(b));
		total++;
		if (strcmp(a, b) == 0)
			same++;
		else
			diag("%s %s: Lua '%s', C '%s'", fn, in, a, b);
	}
	for (int seed = 1; seed <= 2000; seed++) {
		char in[16];

		snprintf(in, sizeof(in), "%d", seed);
		json_call(A, "try_random", in, strlen(in), a, sizeof(a));
		json_call(B, "try_random", in, strlen(in), b, sizeof(b));
		total++;
		if (strcmp(a, b) == 0)
			same++;
		else
			diag("random %d: Lua '%s', C '%s'", seed, a, b);
	}
	is(same, total, "the C codec answers as the Lua codec (%d inputs)",
	   total);
	{
		static const char in[] =
			"' { \"a\" : 1 , \"b\":[1,2], \"c\":\"x\" } ', "
			"'a', 5, 'c', nil, 'd', {y=1,x=2}";

		json_call(B, "try_set", in, strlen(in), b, sizeof(b));
	}
	is_str(b,
	       "V:\" { \\\"a\\\" : 5 , \\\"b\\\":[1,2],"
	       "\\\"d\\\":{\\\"x\\\":2,\\\"y\\\":1} } \"",
	       "json.set: one value replaced, one removed, one added; every "
	       "other byte kept");
	json_call(B, "try_decode", "{\"b\":[],\"a\":null}", 17, b, sizeof(b));
	is_str(b, "V:{\"a\":null,\"b\":[]}", "[] stays [], null stays null");
	json_call(B, "try_decode", "[1,", 3, b, sizeof(b));
	is_str(b, "E:skald.json.decode: unexpected end of input at byte 4",
	       "errors say what and where");
	lua_close(A);
	lua_close(B);
}

int main(void)
{
	plan(110 + 5 + 5 + 3 + 11 + 1 + 3 + 4 + 4 + 4 + 8 + 1 + 2 + 2);
	test_json_string_scan();
	test_json_codecs();
	test_jit_probe();
	test_sandbox();
	test_errors_and_bounds();
	test_state_reuse();
	test_batch_api();
	test_chain();
	test_chain_copy();
	test_reload();
	test_batch_json();
	test_lazy_fields();
	test_each_record();
	test_rec_reuse();
	test_pairs_copy();
	test_hook_metrics();
	test_watchdog();
	return check_status();
}
