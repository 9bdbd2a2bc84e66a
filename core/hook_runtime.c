/*
 * Lua states for hooks: creation with a counting allocator, the trusted
 * prelude and the sandbox, the CPU deadline, and one call of a hook over
 * a batch's records (on_batch or on_record) or a segment (retain).
 *
 * Why the interpreter: see core/hook.h (count hooks do not run inside
 * JIT-compiled traces on Debian's LuaJIT). Why our own allocator: it is
 * the only bound on a state's heap that holds at the moment of the
 * allocation; lua_gc(LUA_GCCOUNT) after a call would let one call take
 * all the memory first.
 *
 * A call's effects go to struct sk_hook_recs (C memory); a failed call is
 * rolled back from the records' states before their first change, so
 * nothing is ever half-applied. Record data reaches Lua as strings and
 * tables built here, never as pointers: user code cannot read memory it
 * was not given.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <luajit.h>

#include "hook.h"
#include "proto.h"
#include "say.h"

/* The trusted Lua sources, embedded by hook_prelude.c. */
extern const char sk_hook_prelude_lua[];
extern const char sk_hook_skald_lua[];

/* Largest script file read. */
#define HK_MAX_SCRIPT (4u << 20)
/* Extra setup budget on top of timeout.ms (prelude, top level). */
#define HK_SETUP_MS 1000
/* Log lines a state may write per second before they are counted. */
#define HK_LOG_PER_SEC 20

struct hk_call;

/*
 * Small blocks: a state's objects are mostly small and short-lived (a
 * string and a table per record), and the GC frees them by the thousand,
 * more than glibc's per-thread cache holds. Each state keeps its freed
 * blocks of up to HK_SMALL_MAX bytes on free lists by 16-byte class
 * (the state is only ever used by one thread at a time), up to
 * HK_CACHE_MAX bytes in all.
 */
#define HK_SMALL_MAX	 256
#define HK_CLASSES	 (HK_SMALL_MAX / 16)
#define HK_CACHE_MAX	 ((size_t)1 << 20)
#define HK_CLASS(n)	 (((n) + 15) / 16 - 1)
#define HK_CLASS_SIZE(c) (((size_t)(c) + 1) * 16)

struct hk_free {
	struct hk_free *next;
};

/* One lua_State and its accounting; the allocator's userdata. */
struct hk_state {
	lua_State *L;
	size_t used;  /* heap bytes */
	size_t limit; /* memory.mb */
	struct hk_free *free[HK_CLASSES];
	size_t cached; /* bytes on the free lists */
	bool oom;      /* an allocation was refused */
	bool timed_out;
	int64_t deadline_ns; /* monotonic */
	int check_insns;
	bool watchdog;	 /* armed with the thread's timer, not a count hook */
	int prelude_ref; /* registry: the prelude's table */
	int mod_ref;	 /* registry: the script's module table */
	int options_ref; /* registry: options JSON -> decoded */
	int rec_mt_ref;	 /* registry: metatable of on_record's rec */
	int rec_cur_ref; /* registry: each_record's {i, rec, touched} */
	int rec_fns_ref; /* registry: {fill, own, other} for each_record */
	struct hk_call *cur; /* the call running, for C functions */
	uint64_t gen;	     /* per call: stale batch objects fail */
	int64_t log_sec;     /* rate limit of skald.log */
	int log_lines;
	int64_t log_dropped;
	bool broken; /* recreate before the next use */
};

/* One call in progress. */
struct hk_call {
	struct hk_state *st;
	const struct sk_hook_script *s;
	const struct sk_hook_call *call;
	struct sk_hook_recs *rs;
	size_t *idx; /* batch index i (1-based) -> rs->r[idx[i-1]] */
	size_t n;
	const struct sk_hook_segment *seg;
	bool keep;
	size_t arena_limit; /* bytes the call may copy out of Lua */
	size_t arena_used;
	void *batch_ud; /* the on_batch call's batch object */
	/* on_record: lazy fields read or assigned (HK_T_*) of record i */
	size_t touched_i;
	unsigned touched;
	/* rs->r[j] as they were before their first change (rec_w) */
	uint64_t *saved; /* bit j: rs->r[j] is in undo */
	struct hk_undo *undo;
	size_t n_undo;
};

/* A record as it was before the call changed it. */
struct hk_undo {
	size_t at; /* index in rs->r */
	struct sk_hook_rec rec;
};

/* The lazily filled fields of on_record's rec, once read or assigned. */
#define HK_T_KEY     0x1u
#define HK_T_TS	     0x2u
#define HK_T_HEADERS 0x4u

/* A batch object as Lua sees it (userdata "skald.batch"). */
struct hk_batch {
	struct hk_state *st;
	uint64_t gen;
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct hk_state *state_of(lua_State *L)
{
	void *ud;

	lua_getallocf(L, &ud);
	return ud;
}

/*
 * The allocator: counts, and refuses growth past the limit (LuaJIT then
 * raises "not enough memory", which a protected call catches).
 */
static void small_free(struct hk_state *st, void *p, size_t size)
{
	struct hk_free *f = p;
	int c = HK_CLASS(size);

	if (st->cached + HK_CLASS_SIZE(c) > HK_CACHE_MAX) {
		free(p);
		return;
	}
	f->next = st->free[c];
	st->free[c] = f;
	st->cached += HK_CLASS_SIZE(c);
}

static void *small_alloc(struct hk_state *st, size_t size)
{
	int c = HK_CLASS(size);
	struct hk_free *f = st->free[c];

	if (!f)
		return malloc(HK_CLASS_SIZE(c));
	st->free[c] = f->next;
	st->cached -= HK_CLASS_SIZE(c);
	return f;
}

static void small_release(struct hk_state *st)
{
	for (int c = 0; c < HK_CLASSES; c++) {
		while (st->free[c]) {
			struct hk_free *f = st->free[c];

			st->free[c] = f->next;
			free(f);
		}
	}
	st->cached = 0;
}

/*
 * The allocator: counts, and refuses growth past the limit (LuaJIT then
 * raises "not enough memory", which a protected call catches). LuaJIT
 * always passes a block's true size as osize, so a block's size class is
 * known when it is freed or resized.
 */
static SK_NOINLINE void *hk_alloc_slow(struct hk_state *st, void *ptr,
				       size_t osize, size_t nsize)
{
	void *q;

	if (!ptr)
		osize = 0;
	if (nsize == 0) {
		if (!ptr)
			return NULL;
		if (osize <= HK_SMALL_MAX)
			small_free(st, ptr, osize);
		else
			free(ptr);
		st->used -= osize;
		return NULL;
	}
	if (nsize > osize && st->used + (nsize - osize) > st->limit) {
		st->oom = true;
		return NULL;
	}
	if (ptr && osize <= HK_SMALL_MAX && nsize <= HK_SMALL_MAX &&
	    HK_CLASS(osize) == HK_CLASS(nsize)) {
		q = ptr;
	} else if (nsize <= HK_SMALL_MAX || (ptr && osize <= HK_SMALL_MAX)) {
		/* Into or out of a size class: move. */
		q = nsize <= HK_SMALL_MAX ? small_alloc(st, nsize)
					  : malloc(nsize);
		if (!q)
			return NULL;
		if (ptr) {
			memcpy(q, ptr, SK_MIN(osize, nsize));
			if (osize <= HK_SMALL_MAX)
				small_free(st, ptr, osize);
			else
				free(ptr);
		}
	} else {
		q = realloc(ptr, nsize);
		if (!q)
			return NULL;
	}
	st->used = st->used - osize + nsize;
	return q;
}

/*
 * The common cases first, without the slow path's calls and their
 * register saves: a small block from its free list, a small block back
 * onto it (LuaJIT frees a record's string and table by the thousand).
 */
static void *hk_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct hk_state *st = ud;
	struct hk_free *f;
	int c;

	if (!ptr) {
		if (nsize == 0)
			return NULL;
		c = HK_CLASS(nsize);
		f = nsize <= HK_SMALL_MAX ? st->free[c] : NULL;
		if (f && st->used + nsize <= st->limit) {
			st->free[c] = f->next;
			st->cached -= HK_CLASS_SIZE(c);
			st->used += nsize;
			return f;
		}
	} else if (nsize == 0 && osize <= HK_SMALL_MAX) {
		c = HK_CLASS(osize);
		if (st->cached + HK_CLASS_SIZE(c) <= HK_CACHE_MAX) {
			f = ptr;
			f->next = st->free[c];
			st->free[c] = f;
			st->cached += HK_CLASS_SIZE(c);
			st->used -= osize;
			return NULL;
		}
	}
	return hk_alloc_slow(st, ptr, osize, nsize);
}

/*
 * The count hook: past the deadline, raise, and re-arm on every
 * instruction so that a pcall in the script cannot carry on. Under the
 * watchdog it is only installed once the deadline has passed.
 */
static void hk_count_hook(lua_State *L, lua_Debug *ar)
{
	struct hk_state *st = state_of(L);

	(void)ar;
	if (st->timed_out || st->watchdog || mono_ns() > st->deadline_ns) {
		st->timed_out = true;
		lua_sethook(L, hk_count_hook, LUA_MASKCOUNT, 1);
		/* Where the script was cut off: in a hook, that is level 0. */
		luaL_where(L, 0);
		lua_pushliteral(L, "timeout: the hook ran past timeout.ms");
		lua_concat(L, 2);
		lua_error(L);
	}
}

/*
 * The watchdog. A count hook makes the interpreter go through a hook
 * check on every instruction (LuaJIT switches its whole dispatch table),
 * which cost ~5% of a filter and ~8% of the JSON mask. So, where the
 * system allows it, a call runs with no hook at all and a one-shot timer
 * of the calling thread (CLOCK_MONOTONIC, SIGEV_THREAD_ID) raises
 * HK_SIGNAL at the deadline; the handler installs the count hook on the
 * running state (lua_sethook is async-signal-safe: luajit.c's own SIGINT
 * handler does exactly this), which then raises the timeout at the next
 * instruction. A thread without a timer falls back to the count hook
 * every check_insns instructions. Nothing is shared between threads: the
 * timer, and the state it may touch, are the thread's own.
 */
#define HK_SIGNAL (SIGRTMIN + 7)
#ifndef sigev_notify_thread_id /* glibc before 2.35 */
#define sigev_notify_thread_id _sigev_un._tid
#endif

static _Thread_local struct {
	bool init, ok;
	pid_t pid; /* a forked child makes its own */
	timer_t timer;
} hk_wd;
static _Thread_local struct hk_state *volatile hk_running;
static pthread_once_t hk_sig_once = PTHREAD_ONCE_INIT;
static bool hk_sig_ok;
static pthread_key_t hk_wd_key;

static void hk_on_signal(int sig)
{
	struct hk_state *st = hk_running;
	int saved = errno;

	(void)sig;
	if (st)
		lua_sethook(st->L, hk_count_hook, LUA_MASKCOUNT, 1);
	errno = saved;
}

static void hk_wd_delete(void *timer)
{
	timer_delete((timer_t)timer);
}

static void hk_sig_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = hk_on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	hk_sig_ok = sigaction(HK_SIGNAL, &sa, NULL) == 0 &&
		    pthread_key_create(&hk_wd_key, hk_wd_delete) == 0;
}

/* The calling thread's timer, created on first use; false: none. */
static bool wd_ready(void)
{
	struct sigevent sev;
	sigset_t set;
	pid_t pid = getpid();

	if (hk_wd.init && hk_wd.pid == pid)
		return hk_wd.ok;
	pthread_once(&hk_sig_once, hk_sig_install);
	hk_wd.init = true;
	hk_wd.pid = pid;
	hk_wd.ok = false;
	if (!hk_sig_ok)
		return false;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = HK_SIGNAL;
	sev.sigev_notify_thread_id = gettid();
	if (timer_create(CLOCK_MONOTONIC, &sev, &hk_wd.timer))
		return false;
	sigemptyset(&set);
	sigaddset(&set, HK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	pthread_setspecific(hk_wd_key, (void *)hk_wd.timer);
	hk_wd.ok = true;
	return true;
}

static void arm(struct hk_state *st, int64_t budget_ms)
{
	struct itimerspec its;

	st->deadline_ns = mono_ns() + budget_ms * 1000000;
	st->timed_out = false;
	st->oom = false;
	st->watchdog = wd_ready();
	if (!st->watchdog) {
		lua_sethook(st->L, hk_count_hook, LUA_MASKCOUNT,
			    st->check_insns);
		return;
	}
	lua_sethook(st->L, NULL, 0, 0);
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = st->deadline_ns / 1000000000;
	its.it_value.tv_nsec = st->deadline_ns % 1000000000;
	hk_running = st;
	if (timer_settime(hk_wd.timer, TIMER_ABSTIME, &its, NULL)) {
		hk_running = NULL;
		st->watchdog = false;
		lua_sethook(st->L, hk_count_hook, LUA_MASKCOUNT,
			    st->check_insns);
	}
}

/* After a call: no timer running, no hook left on the state. */
static void disarm(struct hk_state *st)
{
	if (st->watchdog) {
		struct itimerspec its;

		memset(&its, 0, sizeof(its));
		timer_settime(hk_wd.timer, 0, &its, NULL);
		/* A signal delivered until here may set the hook: reset below. */
		hk_running = NULL;
		st->watchdog = false;
	}
	lua_sethook(st->L, NULL, 0, 0);
	st->timed_out = false;
}

/* Host functions check the deadline too (long C work, many calls). */
static void check_deadline(lua_State *L)
{
	struct hk_state *st = state_of(L);

	if (st->timed_out || mono_ns() > st->deadline_ns) {
		st->timed_out = true;
		lua_sethook(L, hk_count_hook, LUA_MASKCOUNT, 1);
		luaL_error(L, "timeout: the hook ran past timeout.ms");
	}
}

/* ------------------------------------------------------------------ */
/* Host functions for the skald module */

/*
 * A new second of skald.log for st: say how many lines the one before
 * dropped, if any (from the next line, or the end of a call; c NULL for
 * the top level).
 */
static void log_second(struct hk_state *st, const struct hk_call *c)
{
	int64_t sec = sk_mono_ms() / 1000;

	if (sec == st->log_sec)
		return;
	if (st->log_dropped)
		sk_warn("hook %s (topic %s): %lld log lines suppressed (at "
			"most %d a second)",
			c && c->call->hook ? c->call->hook : "?",
			c && c->call->topic ? c->call->topic : "?",
			(long long)st->log_dropped, HK_LOG_PER_SEC);
	st->log_sec = sec;
	st->log_lines = 0;
	st->log_dropped = 0;
}

static int hk_log(lua_State *L)
{
	struct hk_state *st = state_of(L);
	const char *level = luaL_checkstring(L, 1);
	const char *msg = luaL_checkstring(L, 2);
	const struct hk_call *c = st->cur; /* NULL: the top level */

	log_second(st, c);
	if (++st->log_lines > HK_LOG_PER_SEC) {
		st->log_dropped++;
		return 0;
	}
	sk_say(strcmp(level, "warn") == 0 ? SK_SAY_WARN : SK_SAY_INFO,
	       "hook %s (topic %s): %.400s",
	       c && c->call->hook ? c->call->hook : "?",
	       c && c->call->topic ? c->call->topic : "?", msg);
	return 0;
}

static int hk_now(lua_State *L)
{
	lua_pushnumber(L, (lua_Number)sk_now_ms());
	return 1;
}

/* ------------------------------------------------------------------ */
/* Records <-> Lua */

static void push_bytes(lua_State *L, const uint8_t *p, int32_t len)
{
	if (len < 0)
		lua_pushnil(L);
	else
		lua_pushlstring(L, (const char *)p, (size_t)len);
}

/* One header in wire form: varint key length, key, varint value length
 * (-1 null), value. Returns false when malformed. */
static bool hdr_next(struct sk_rd *r, struct sk_str *k, struct sk_str *v)
{
	int32_t kl = sk_rd_varint(r), vl;

	if (kl < 0 || (size_t)kl > sk_rd_left(r))
		return false;
	k->p = sk_rd_raw(r, (size_t)kl);
	k->len = kl;
	vl = sk_rd_varint(r);
	if (vl < -1 || (vl > 0 && (size_t)vl > sk_rd_left(r)))
		return false;
	v->p = vl > 0 ? sk_rd_raw(r, (size_t)vl) : (const uint8_t *)"";
	v->len = vl;
	return sk_rd_ok(r);
}

/* rec's headers as a new table name -> value (null: false). */
static void push_headers(lua_State *L, const struct sk_hook_rec *rec)
{
	struct sk_rd r;
	struct sk_str k, v;

	lua_createtable(L, 0, rec->n_hdrs);
	sk_rd_init(&r, rec->hdrs, rec->hdrs_len);
	for (int32_t i = 0; i < rec->n_hdrs; i++) {
		if (!hdr_next(&r, &k, &v))
			break;
		lua_pushlstring(L, (const char *)k.p, (size_t)k.len);
		if (v.len < 0)
			lua_pushboolean(L, 0);
		else
			lua_pushlstring(L, (const char *)v.p, (size_t)v.len);
		lua_rawset(L, -3);
	}
}

/* Arena copy, counted against the call's budget. */
static const uint8_t *call_keep(lua_State *L, struct hk_call *c, const void *p,
				size_t n)
{
	c->arena_used += n;
	if (c->arena_used > c->arena_limit) {
		c->st->oom = true;
		luaL_error(L, "not enough memory: the hook's changes exceed "
			      "memory.mb");
	}
	return sk_hook_recs_keep(c->rs, p, n);
}

/* A string or nil at idx as a (pointer, length -1 for nil), or error. */
static bool opt_bytes(lua_State *L, int idx, const char *what,
		      const uint8_t **p, int32_t *len)
{
	size_t n;
	const char *s;

	if (lua_isnil(L, idx)) {
		*p = NULL;
		*len = -1;
		return true;
	}
	if (lua_type(L, idx) != LUA_TSTRING)
		return luaL_error(L, "%s must be a string or nil, got %s", what,
				  luaL_typename(L, idx)),
		       false;
	s = lua_tolstring(L, idx, &n);
	if (n > INT32_MAX / 2)
		return luaL_error(L, "%s is too long", what), false;
	*p = (const uint8_t *)s;
	*len = (int32_t)n;
	return true;
}

static bool same_bytes(const uint8_t *a, int32_t alen, const uint8_t *b,
		       int32_t blen)
{
	return alen == blen && (alen <= 0 || memcmp(a, b, (size_t)alen) == 0);
}

static void wr_lua_str(struct sk_wr *w, lua_State *L, int idx)
{
	size_t n;
	const char *s = lua_tolstring(L, idx, &n);

	sk_wr_varint(w, (int32_t)n);
	sk_wr_raw(w, s, n);
}

/*
 * Encode the headers table at idx into wire form in out, with *count the
 * number of headers; errors on bad names or values.
 */
static void encode_headers(lua_State *L, int idx, struct sk_buf *out,
			   int32_t *count)
{
	struct sk_wr w = { out };

	*count = 0;
	if (lua_isnil(L, idx))
		return;
	if (!lua_istable(L, idx))
		luaL_error(L,
			   "headers must be a table of name to value, got %s",
			   luaL_typename(L, idx));
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "header names must be strings");
		if (lua_type(L, -1) == LUA_TSTRING) {
			wr_lua_str(&w, L, -2);
			wr_lua_str(&w, L, -1);
		} else if (lua_type(L, -1) == LUA_TBOOLEAN &&
			   !lua_toboolean(L, -1)) {
			wr_lua_str(&w, L, -2);
			sk_wr_varint(&w, -1);
		} else {
			luaL_error(L,
				   "header '%s' must be a string (or false "
				   "for null), got %s",
				   lua_tostring(L, -2), luaL_typename(L, -1));
		}
		(*count)++;
		lua_pop(L, 1);
	}
}

/* True if the headers table at idx says the same as rec's headers. */
static bool same_headers(lua_State *L, int idx, const struct sk_hook_rec *rec)
{
	int32_t n = 0;
	struct sk_rd r;
	struct sk_str k, v;

	if (lua_isnil(L, idx))
		return rec->n_hdrs == 0;
	if (!lua_istable(L, idx))
		return false;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		n++;
		lua_pop(L, 1);
	}
	if (n != rec->n_hdrs)
		return false;
	sk_rd_init(&r, rec->hdrs, rec->hdrs_len);
	for (int32_t i = 0; i < rec->n_hdrs; i++) {
		const char *s;
		size_t sl;
		bool same;

		if (!hdr_next(&r, &k, &v))
			return false;
		lua_pushlstring(L, (const char *)k.p, (size_t)k.len);
		lua_rawget(L, idx);
		if (v.len < 0) {
			same = lua_type(L, -1) == LUA_TBOOLEAN &&
			       !lua_toboolean(L, -1);
		} else {
			s = lua_type(L, -1) == LUA_TSTRING
				    ? lua_tolstring(L, -1, &sl)
				    : NULL;
			same = s && same_bytes((const uint8_t *)s, (int32_t)sl,
					       v.p, v.len);
		}
		lua_pop(L, 1);
		if (!same)
			return false; /* also duplicate names: rebuilt */
	}
	return true;
}

/* Replace rec's headers by the table at idx. */
static void set_headers_from(lua_State *L, struct hk_call *c, int idx,
			     struct sk_hook_rec *rec)
{
	struct sk_buf tmp = { 0 };
	int32_t count;

	/* tmp must not leak if encoding raises: keep it in the arena. */
	encode_headers(L, idx, &tmp, &count);
	rec->hdrs = tmp.len ? call_keep(L, c, tmp.data, tmp.len) : NULL;
	rec->hdrs_len = tmp.len;
	rec->n_hdrs = count;
	sk_buf_free(&tmp);
}

/*
 * on_record runs from the prelude's each_record loop (Lua calls Lua far
 * more cheaply than C does, and a record needs no call into C unless it
 * changed): it keeps the running record's batch index and table in the
 * cur table, cur[1] and cur[2], and cur[3] is set when a lazy field was
 * read or a field added. The C functions here find the record from there.
 */
#define CUR_I	    1
#define CUR_REC	    2
#define CUR_TOUCHED 3

/* Batch index (1-based) of the record whose rec table is at idx, or 0. */
static size_t rec_index_of(lua_State *L, struct hk_call *c, int idx)
{
	size_t i = 0;

	lua_rawgeti(L, LUA_REGISTRYINDEX, c->st->rec_cur_ref);
	lua_rawgeti(L, -1, CUR_REC);
	if (lua_rawequal(L, -1, idx)) {
		lua_rawgeti(L, -2, CUR_I);
		i = (size_t)lua_tointeger(L, -1);
		lua_pop(L, 1);
	}
	lua_pop(L, 2);
	return i <= c->n ? i : 0;
}

static const struct sk_hook_rec *rec_at(const struct hk_call *c, size_t i)
{
	return &c->rs->r[c->idx[i - 1]];
}

/*
 * Record i (1-based), to be changed: the first time, its state is kept
 * so that a failed call can put it back. Most calls change few records
 * or none, so this costs less than a copy of them all.
 */
static struct sk_hook_rec *rec_w(struct hk_call *c, size_t i)
{
	size_t j = c->idx[i - 1];

	if (!c->saved) {
		c->saved = sk_xcalloc((c->rs->n + 63) / 64, sizeof(*c->saved));
		c->undo = sk_xmalloc(c->n * sizeof(*c->undo));
	}
	if (!(c->saved[j / 64] >> (j % 64) & 1)) {
		c->saved[j / 64] |= UINT64_C(1) << (j % 64);
		c->undo[c->n_undo].at = j;
		c->undo[c->n_undo++].rec = c->rs->r[j];
	}
	return &c->rs->r[j];
}

/* Lazy fields of record i read or assigned. */
static unsigned touched(const struct hk_call *c, size_t i)
{
	return c->touched_i == i ? c->touched : 0;
}

static void touch(lua_State *L, struct hk_call *c, size_t i, unsigned t)
{
	if (c->touched_i != i) {
		c->touched_i = i;
		c->touched = 0;
	}
	c->touched |= t;
	lua_rawgeti(L, LUA_REGISTRYINDEX, c->st->rec_cur_ref);
	lua_pushboolean(L, 1);
	lua_rawseti(L, -2, CUR_TOUCHED);
	lua_pop(L, 1);
}

/* The running on_record call and its record's index, or an error. */
static struct hk_call *rec_call(lua_State *L, size_t *i)
{
	struct hk_call *c = state_of(L)->cur;

	if (!c || !(*i = rec_index_of(L, c, 1)))
		luaL_error(L, "record used outside its on_record call");
	return c;
}

/* The HK_T_* bit of a lazy field name, or 0. */
static unsigned lazy_field(lua_State *L, int idx)
{
	const char *k;

	if (lua_type(L, idx) != LUA_TSTRING)
		return 0;
	k = lua_tostring(L, idx);
	if (strcmp(k, "key") == 0)
		return HK_T_KEY;
	if (strcmp(k, "timestamp") == 0)
		return HK_T_TS;
	if (strcmp(k, "headers") == 0)
		return HK_T_HEADERS;
	return 0;
}

/*
 * __index of rec: key, timestamp, headers, topic, partition on first use
 * (cached in the table).
 */
static int rec_index(lua_State *L)
{
	struct hk_call *c;
	const struct sk_hook_rec *rec;
	size_t i;
	unsigned t = lazy_field(L, 2);
	const char *k =
		lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;

	if (!k)
		return 0;
	if (t) {
		c = rec_call(L, &i);
		rec = rec_at(c, i);
		touch(L, c, i, t);
		if (t == HK_T_KEY)
			push_bytes(L, rec->key, rec->key_len);
		else if (t == HK_T_TS)
			lua_pushnumber(L, (lua_Number)rec->timestamp);
		else
			push_headers(L, rec);
	} else if (strcmp(k, "topic") == 0) {
		c = rec_call(L, &i);
		lua_pushstring(L, c->call->topic ? c->call->topic : "");
	} else if (strcmp(k, "partition") == 0) {
		c = rec_call(L, &i);
		lua_pushinteger(L, c->call->partition);
	} else {
		return 0;
	}
	lua_pushvalue(L, 2);
	lua_pushvalue(L, -2);
	lua_rawset(L, 1);
	return 1;
}

/*
 * pairs() of the sandbox: a record lists its lazy fields too (those the
 * script has not assigned), so that a script copying rec field by field
 * gets what it would in the SDK, where rec is a plain table. Upvalue 1
 * is next.
 */
static int hk_pairs(lua_State *L)
{
	static const char *const lazy[] = { "key", "timestamp", "headers",
					    "topic", "partition" };
	struct hk_call *c = state_of(L)->cur;
	size_t at;

	luaL_checkany(L, 1);
	if (c && lua_istable(L, 1) && (at = rec_index_of(L, c, 1))) {
		for (size_t i = 0; i < SK_ARRAY_SIZE(lazy); i++) {
			lua_pushstring(L, lazy[i]);
			if (!(touched(c, at) & lazy_field(L, -1))) {
				lua_gettable(L, 1); /* rec_index caches it */
			}
			lua_pop(L, 1);
		}
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_pushvalue(L, 1);
	lua_pushnil(L);
	return 3;
}

/*
 * __newindex of rec: note a field added (each_record then gives the next
 * record a fresh table) and which lazy field was assigned before read.
 */
static int rec_newindex(lua_State *L)
{
	struct hk_call *c = state_of(L)->cur;
	unsigned t = lazy_field(L, 2);
	size_t i;

	lua_settop(L, 3);
	if (c && (i = rec_index_of(L, c, 1)))
		touch(L, c, i, t); /* a new field: each_record must see it */
	lua_rawset(L, 1);
	return 0;
}

static int64_t check_ts(lua_State *L, int idx, const char *what)
{
	lua_Number t;

	if (lua_type(L, idx) != LUA_TNUMBER)
		luaL_error(L, "%s must be a number (ms), got %s", what,
			   luaL_typename(L, idx));
	t = lua_tonumber(L, idx);
	if (!(t >= -1 && t <= 9007199254740992.0))
		luaL_error(L, "%s out of range", what);
	return (int64_t)t;
}

/* Apply the table on_record returned (at idx) to rec. */
static void apply_rec(lua_State *L, struct hk_call *c, int idx,
		      struct sk_hook_rec *rec)
{
	const uint8_t *k, *v;
	int32_t kl, vl;
	int64_t ts;
	int top = lua_gettop(L);

	lua_getfield(L, idx, "key");
	opt_bytes(L, -1, "rec.key", &k, &kl);
	lua_getfield(L, idx, "value");
	opt_bytes(L, -1, "rec.value", &v, &vl);
	lua_getfield(L, idx, "timestamp");
	ts = lua_isnil(L, -1) ? rec->timestamp
			      : check_ts(L, -1, "rec.timestamp");
	lua_getfield(L, idx, "headers");
	if (!same_bytes(k, kl, rec->key, rec->key_len)) {
		rec->key = kl > 0 ? call_keep(L, c, k, (size_t)kl)
				  : (const uint8_t *)"";
		rec->key_len = kl;
		rec->changed = true;
	}
	if (!same_bytes(v, vl, rec->value, rec->value_len)) {
		rec->value = vl > 0 ? call_keep(L, c, v, (size_t)vl)
				    : (const uint8_t *)"";
		rec->value_len = vl;
		rec->changed = true;
	}
	if (ts != rec->timestamp) {
		rec->timestamp = ts;
		rec->changed = true;
	}
	if (!same_headers(L, top + 4, rec)) {
		set_headers_from(L, c, top + 4, rec);
		rec->changed = true;
	}
	lua_settop(L, top);
}

/*
 * each_record's own(i, rec, value): on_record returned the table it was
 * given for record i, whose value was given as value, and either the
 * value is another string now or a lazy field was read or assigned (those
 * never read nor assigned are unchanged).
 */
static int rec_own(lua_State *L)
{
	struct hk_call *c = state_of(L)->cur;
	size_t i = (size_t)luaL_checkinteger(L, 1);
	const int tab = 2;
	struct sk_hook_rec *rec;
	unsigned t;
	const uint8_t *p;
	int32_t n;
	int64_t ts;

	if (!c || i < 1 || i > c->n)
		return luaL_error(L, "own: no record %d", (int)i);
	rec = rec_w(c, i);
	t = touched(c, i);
	lua_settop(L, 3);
	lua_pushliteral(L, "value");
	lua_rawget(L, tab);
	if (!lua_rawequal(L, -1, 3)) {
		opt_bytes(L, -1, "rec.value", &p, &n);
		if (!same_bytes(p, n, rec->value, rec->value_len)) {
			rec->value = n > 0 ? call_keep(L, c, p, (size_t)n)
					   : (const uint8_t *)"";
			rec->value_len = n;
			rec->changed = true;
		}
	}
	if (t & HK_T_KEY) {
		lua_pushliteral(L, "key");
		lua_rawget(L, tab);
		opt_bytes(L, -1, "rec.key", &p, &n);
		if (!same_bytes(p, n, rec->key, rec->key_len)) {
			rec->key = n > 0 ? call_keep(L, c, p, (size_t)n)
					 : (const uint8_t *)"";
			rec->key_len = n;
			rec->changed = true;
		}
	}
	if (t & HK_T_TS) {
		lua_pushliteral(L, "timestamp");
		lua_rawget(L, tab);
		ts = lua_isnil(L, -1) ? rec->timestamp
				      : check_ts(L, -1, "rec.timestamp");
		if (ts != rec->timestamp) {
			rec->timestamp = ts;
			rec->changed = true;
		}
	}
	if (t & HK_T_HEADERS) {
		int h;

		lua_pushliteral(L, "headers");
		lua_rawget(L, tab);
		h = lua_gettop(L);
		if (!same_headers(L, h, rec)) {
			set_headers_from(L, c, h, rec);
			rec->changed = true;
		}
	}
	return 0;
}

/*
 * each_record's other(i, r): on_record returned r, not the table it was
 * given for record i, nor nil or false.
 */
static int rec_other(lua_State *L)
{
	struct hk_call *c = state_of(L)->cur;
	size_t i = (size_t)luaL_checkinteger(L, 1);

	if (!c || i < 1 || i > c->n)
		return luaL_error(L, "other: no record %d", (int)i);
	if (!lua_istable(L, 2))
		return luaL_error(L,
				  "on_record must return the record (a table) "
				  "or nil, got %s",
				  luaL_typename(L, 2));
	lua_settop(L, 2);
	apply_rec(L, c, 2, rec_w(c, i));
	return 0;
}

/*
 * each_record's fill(vals, i): the values of records i, i + 1, ... in
 * vals[1], vals[2], ... (false for a null value), at most HK_FILL of
 * them; returns how many. A chunk at a time bounds the memory a batch
 * takes in the state.
 */
#define HK_FILL 128

static int rec_fill(lua_State *L)
{
	struct hk_call *c = state_of(L)->cur;
	size_t i = (size_t)luaL_checkinteger(L, 2);
	size_t k;

	luaL_checktype(L, 1, LUA_TTABLE);
	if (!c || i < 1 || i > c->n)
		return luaL_error(L, "fill: no record %d", (int)i);
	check_deadline(L);
	for (k = 0; k < HK_FILL && i + k <= c->n; k++) {
		const struct sk_hook_rec *rec = rec_at(c, i + k);

		if (rec->value_len < 0)
			lua_pushboolean(L, 0);
		else
			push_bytes(L, rec->value, rec->value_len);
		lua_rawseti(L, 1, (int)k + 1);
	}
	lua_pushinteger(L, (lua_Integer)k);
	return 1;
}

/* ctx.emit(topic, rec): stage a copy of rec for another topic. */
static int hk_emit(lua_State *L)
{
	struct hk_state *st = state_of(L);
	struct hk_call *c = st->cur;
	struct sk_hook_recs *rs;
	struct sk_hook_emit *e;
	struct sk_err why;
	const char *topic;
	const uint8_t *k, *v;
	int32_t kl, vl;

	if (!c || !c->rs ||
	    (uint64_t)lua_tonumber(L, lua_upvalueindex(1)) != st->gen)
		return luaL_error(L, "ctx.emit used outside its call");
	topic = luaL_checkstring(L, 1);
	if (!sk_topic_name_valid(topic, &why))
		return luaL_error(L, "ctx.emit: %s", why.msg);
	luaL_checktype(L, 2, LUA_TTABLE);
	rs = c->rs;
	if (rs->n_emits >= 100000)
		return luaL_error(L, "ctx.emit: too many records");
	if (rs->n_emits == rs->cap_emits) {
		rs->cap_emits = rs->cap_emits ? rs->cap_emits * 2 : 8;
		rs->emits = sk_xrealloc(rs->emits,
					rs->cap_emits * sizeof(*rs->emits));
	}
	lua_getfield(L, 2, "key");
	opt_bytes(L, -1, "rec.key", &k, &kl);
	lua_getfield(L, 2, "value");
	opt_bytes(L, -1, "rec.value", &v, &vl);
	lua_getfield(L, 2, "timestamp");
	e = &rs->emits[rs->n_emits];
	memset(e, 0, sizeof(*e));
	e->rec.timestamp = lua_isnil(L, -1) ? sk_now_ms()
					    : check_ts(L, -1, "rec.timestamp");
	lua_getfield(L, 2, "headers");
	e->rec.key = kl > 0 ? call_keep(L, c, k, (size_t)kl) : NULL;
	e->rec.key_len = kl;
	e->rec.value = vl > 0 ? call_keep(L, c, v, (size_t)vl) : NULL;
	e->rec.value_len = vl;
	set_headers_from(L, c, lua_gettop(L), &e->rec);
	e->topic = (char *)call_keep(L, c, topic, strlen(topic) + 1);
	rs->n_emits++;
	return 0;
}

/* ------------------------------------------------------------------ */
/* The batch object */

/*
 * The call of the batch object in argument 1. The current call's object
 * is the only one accepted (an identity check: cheaper than
 * luaL_checkudata, and it refuses stale objects too).
 */
static struct hk_call *batch_call(lua_State *L)
{
	struct hk_state *st = state_of(L);
	void *b = lua_touserdata(L, 1);

	if (!b || !st->cur || b != st->cur->batch_ud) {
		if (!b || !lua_getmetatable(L, 1))
			luaL_typerror(L, 1, "skald.batch");
		luaL_error(L, "batch used outside its on_batch call");
	}
	return st->cur;
}

/* The batch index in argument 2, checked. */
static size_t batch_index(lua_State *L, struct hk_call *c)
{
	lua_Integer i = luaL_checkinteger(L, 2);

	if (i < 1 || (size_t)i > c->n)
		luaL_error(L, "record index %d out of range 1..%d", (int)i,
			   (int)c->n);
	return (size_t)i;
}

static const struct sk_hook_rec *batch_rec(lua_State *L)
{
	struct hk_call *c = batch_call(L);

	return rec_at(c, batch_index(L, c));
}

/* The record to change (see rec_w), and the call. */
static struct sk_hook_rec *batch_rec_w(lua_State *L, struct hk_call **cp)
{
	struct hk_call *c = batch_call(L);

	*cp = c;
	return rec_w(c, batch_index(L, c));
}

static int b_count(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)batch_call(L)->n);
	return 1;
}

static int b_key(lua_State *L)
{
	const struct sk_hook_rec *r = batch_rec(L);

	push_bytes(L, r->key, r->key_len);
	return 1;
}

static int b_value(lua_State *L)
{
	const struct sk_hook_rec *r = batch_rec(L);

	push_bytes(L, r->value, r->value_len);
	return 1;
}

static int b_timestamp(lua_State *L)
{
	lua_pushnumber(L, (lua_Number)batch_rec(L)->timestamp);
	return 1;
}

static int b_headers(lua_State *L)
{
	push_headers(L, batch_rec(L));
	return 1;
}

static int b_header(lua_State *L)
{
	const struct sk_hook_rec *r = batch_rec(L);

	luaL_checkstring(L, 3);
	push_headers(L, r);
	lua_pushvalue(L, 3);
	lua_rawget(L, -2);
	return 1;
}

static int b_drop(lua_State *L)
{
	struct hk_call *c;

	batch_rec_w(L, &c)->dropped = true;
	return 0;
}

static int b_dropped(lua_State *L)
{
	lua_pushboolean(L, batch_rec(L)->dropped);
	return 1;
}

static int b_set_key(lua_State *L)
{
	struct hk_call *c;
	struct sk_hook_rec *r = batch_rec_w(L, &c);
	const uint8_t *p;
	int32_t n;

	lua_settop(L, 3);
	opt_bytes(L, 3, "key", &p, &n);
	r->key = n > 0 ? call_keep(L, c, p, (size_t)n) : (const uint8_t *)"";
	r->key_len = n;
	r->changed = true;
	return 0;
}

static int b_set_value(lua_State *L)
{
	struct hk_call *c;
	struct sk_hook_rec *r = batch_rec_w(L, &c);
	const uint8_t *p;
	int32_t n;

	lua_settop(L, 3);
	opt_bytes(L, 3, "value", &p, &n);
	r->value = n > 0 ? call_keep(L, c, p, (size_t)n) : (const uint8_t *)"";
	r->value_len = n;
	r->changed = true;
	return 0;
}

static int b_set_timestamp(lua_State *L)
{
	struct hk_call *c;
	struct sk_hook_rec *r = batch_rec_w(L, &c);

	r->timestamp = check_ts(L, 3, "timestamp");
	r->changed = true;
	return 0;
}

static int b_set_header(lua_State *L)
{
	struct hk_call *c;
	struct sk_hook_rec *r = batch_rec_w(L, &c);

	luaL_checkstring(L, 3);
	lua_settop(L, 4);
	if (!lua_isnil(L, 4) && lua_type(L, 4) != LUA_TSTRING &&
	    !(lua_type(L, 4) == LUA_TBOOLEAN && !lua_toboolean(L, 4)))
		return luaL_error(L, "header value must be a string, false "
				     "(null) or nil (remove)");
	push_headers(L, r); /* 5 */
	lua_pushvalue(L, 3);
	lua_pushvalue(L, 4);
	lua_rawset(L, 5);
	set_headers_from(L, c, 5, r);
	r->changed = true;
	return 0;
}

/*
 * batch:value_json(i) and batch:set_value_json(i, v): json.decode of the
 * value and set_value of json.encode(v), without the value's text ever
 * becoming a Lua string (closures over the codec's upvalues).
 */
static int b_value_json(lua_State *L)
{
	const struct sk_hook_rec *r = batch_rec(L);

	if (r->value_len < 0) {
		lua_pushnil(L);
		return 1;
	}
	lua_settop(L, 2);
	sk_hook_json_decode_with(L, (const char *)r->value,
				 (size_t)r->value_len);
	return 1;
}

struct hk_json_sink {
	struct hk_call *c;
	struct sk_hook_rec *r;
};

static void json_to_value(lua_State *L, void *arg, const char *p, size_t n)
{
	struct hk_json_sink *k = arg;

	if (n > INT32_MAX / 2)
		luaL_error(L, "value is too long");
	k->r->value = n > 0 ? call_keep(L, k->c, p, n) : (const uint8_t *)"";
	k->r->value_len = (int32_t)n;
	k->r->changed = true;
}

static int b_set_value_json(lua_State *L)
{
	struct hk_json_sink k;

	k.r = batch_rec_w(L, &k.c);
	lua_settop(L, 3);
	sk_hook_json_encode_with(L, 3, json_to_value, &k);
	return 0;
}

/*
 * batch:json_get(i, name, ...) and batch:set_json(i, name, value, ...):
 * skald.json.get and set_value of skald.json.set on the value, without
 * the value's text becoming a Lua string. A null value has no fields;
 * setting one is an error.
 */
static int b_json_get(lua_State *L)
{
	const struct sk_hook_rec *r = batch_rec(L);
	int names = lua_gettop(L) - 2;

	if (r->value_len < 0) {
		luaL_checkstack(L, names, "json_get");
		for (int j = 0; j < names; j++)
			lua_pushnil(L);
		return names;
	}
	sk_hook_json_get_with(L, (const char *)r->value, (size_t)r->value_len,
			      3, names, batch_call(L)->st->gen);
	return names;
}

static int b_set_json(lua_State *L)
{
	struct hk_json_sink k;

	k.r = batch_rec_w(L, &k.c);
	if (k.r->value_len < 0)
		return luaL_error(L, "set_json: the value of record %d is null",
				  (int)lua_tointeger(L, 2));
	sk_hook_json_set_with(L, (const char *)k.r->value,
			      (size_t)k.r->value_len, 3, lua_gettop(L) - 2,
			      k.c->st->gen, json_to_value, &k);
	return 0;
}

/* clang-format off */
static const luaL_Reg batch_methods[] = {
	{ "count", b_count },
	{ "key", b_key },
	{ "value", b_value },
	{ "timestamp", b_timestamp },
	{ "headers", b_headers },
	{ "header", b_header },
	{ "drop", b_drop },
	{ "dropped", b_dropped },
	{ "set_key", b_set_key },
	{ "set_value", b_set_value },
	{ "set_timestamp", b_set_timestamp },
	{ "set_header", b_set_header },
	{ NULL, NULL },
};
/* clang-format on */

/* ------------------------------------------------------------------ */
/* State setup */

/* Runs protected: prelude, sandbox, the user's chunk (text only). */
static int setup_c(lua_State *L)
{
	struct hk_state *st = state_of(L);
	const struct sk_hook_script *s = lua_touserdata(L, 1);
	char chunkname[300];

	luaL_openlibs(L);
	/*
	 * After openlibs: opening the jit library switches the engine on.
	 * Off, the interpreter runs count hooks, so the CPU bound holds.
	 */
	if (!s->lim.jit)
		luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
	/* Nothing from the environment or the working directory. */
	lua_getglobal(L, "package");
	lua_pushliteral(L, "");
	lua_setfield(L, -2, "path");
	lua_pushliteral(L, "");
	lua_setfield(L, -2, "cpath");
	lua_pop(L, 1);

	if (luaL_loadbuffer(L, sk_hook_prelude_lua, strlen(sk_hook_prelude_lua),
			    "@scripts/skald/prelude.lua"))
		return lua_error(L);
	if (luaL_loadbuffer(L, sk_hook_skald_lua, strlen(sk_hook_skald_lua),
			    "@scripts/skald/skald.lua"))
		return lua_error(L);
	lua_createtable(L, 0, 3);
	lua_pushcfunction(L, hk_log);
	lua_setfield(L, -2, "log");
	lua_pushcfunction(L, hk_now);
	lua_setfield(L, -2, "now");
	lua_pushcfunction(L, sk_hook_json_open);
	lua_setfield(L, -2, "json");
	lua_getglobal(L, "next");
	lua_pushcclosure(L, hk_pairs, 1);
	lua_setfield(L, -2, "pairs");
	lua_call(L, 2, 1);
	st->prelude_ref = luaL_ref(L, LUA_REGISTRYINDEX);

	luaL_newmetatable(L, "skald.batch");
	lua_newtable(L);
	luaL_register(L, NULL, batch_methods);
	lua_getfield(L, LUA_REGISTRYINDEX, SK_HOOK_JSON_REG);
	if (lua_isfunction(L, -1)) {
		static const struct {
			const char *name;
			lua_CFunction fn;
		} json_methods[] = {
			{ "value_json", b_value_json },
			{ "set_value_json", b_set_value_json },
			{ "json_get", b_json_get },
			{ "set_json", b_set_json },
		};
		int f = lua_gettop(L);

		for (int i = 1; i <= 3; i++)
			lua_getupvalue(L, f, i);
		for (size_t m = 0; m < SK_ARRAY_SIZE(json_methods); m++) {
			for (int i = 1; i <= 3; i++)
				lua_pushvalue(L, f + i);
			lua_pushcclosure(L, json_methods[m].fn, 3);
			lua_setfield(L, f - 1, json_methods[m].name);
		}
		lua_pop(L, 3);
	}
	lua_pop(L, 1);
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);

	lua_newtable(L);
	st->options_ref = luaL_ref(L, LUA_REGISTRYINDEX);

	lua_createtable(L, 0, 3);
	lua_pushcfunction(L, rec_index);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, rec_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	st->rec_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_createtable(L, 3, 0);
	st->rec_cur_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_createtable(L, 0, 3);
	lua_pushcfunction(L, rec_fill);
	lua_setfield(L, -2, "fill");
	lua_pushcfunction(L, rec_own);
	lua_setfield(L, -2, "own");
	lua_pushcfunction(L, rec_other);
	lua_setfield(L, -2, "other");
	st->rec_fns_ref = luaL_ref(L, LUA_REGISTRYINDEX);

	/* User code: text only ("t"): LuaJIT does not verify bytecode. */
	snprintf(chunkname, sizeof(chunkname), "@%s", s->path);
	lua_rawgeti(L, LUA_REGISTRYINDEX, st->prelude_ref);
	lua_getfield(L, -1, "instantiate");
	if (luaL_loadbufferx(L, s->source, s->len, chunkname, "t"))
		return lua_error(L);
	lua_call(L, 1, 1);
	st->mod_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

/* Message handler: the error with a traceback. */
static int traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);

	luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
	return 1;
}

/*
 * Copy a Lua error (message and traceback) into buf as one line: the
 * message, and when it does not name the script itself, the innermost
 * frame of the script ("(at scripts/x.lua:12)").
 */
static void copy_error(lua_State *L, const char *path, char *buf, size_t cap)
{
	const char *m = lua_tostring(L, -1), *nl, *at = NULL;
	size_t plen = strlen(path), first;

	if (!m)
		m = "unknown error";
	nl = strchr(m, '\n');
	first = nl ? (size_t)(nl - m) : strlen(m);
	if (!memmem(m, first, path, plen)) {
		for (const char *p = nl; p && !at; p = strchr(p + 1, '\n')) {
			const char *q = p + 1;

			while (*q == '\t' || *q == ' ')
				q++;
			if (strncmp(q, path, plen) == 0 && q[plen] == ':')
				at = q;
		}
	}
	if (at)
		snprintf(buf, cap, "%.*s (at %.*s)", (int)first, m,
			 (int)strcspn(at, ": \n") + 1 +
				 (int)strspn(at + strcspn(at, ":") + 1,
					     "0123456789"),
			 at);
	else
		snprintf(buf, cap, "%.*s", (int)first, m);
}

static void state_close(struct hk_state *st)
{
	if (!st)
		return;
	if (st->L)
		lua_close(st->L);
	small_release(st);
	free(st);
}

/* A new state running s's module, or NULL with err set. */
static struct hk_state *state_new(const struct sk_hook_script *s,
				  struct sk_err *err)
{
	struct hk_state *st = sk_xcalloc(1, sizeof(*st));
	lua_State *L;
	bool timed_out;
	int rc;

	st->limit = s->lim.memory_bytes;
	st->check_insns = SK_HOOK_CHECK_INSNS;
	st->prelude_ref = st->mod_ref = st->options_ref = LUA_NOREF;
	st->rec_mt_ref = st->rec_cur_ref = st->rec_fns_ref = LUA_NOREF;
	L = lua_newstate(hk_alloc, st);
	if (!L) {
		sk_err_set(err,
			   "%s: cannot create a Lua state (memory.mb "
			   "too small?)",
			   s->path);
		free(st);
		return NULL;
	}
	st->L = L;
	arm(st, s->lim.timeout_ms + HK_SETUP_MS);
	lua_pushcfunction(L, traceback);
	lua_pushcfunction(L, setup_c);
	lua_pushlightuserdata(L, (void *)s);
	rc = lua_pcall(L, 1, 0, 1);
	timed_out = st->timed_out;
	disarm(st);
	if (rc) {
		char m[sizeof(err->msg) - 16];

		copy_error(L, s->path, m, sizeof(m));
		sk_err_set(err, "%s%s",
			   timed_out || !st->oom ? "" : "memory: ", m);
		state_close(st);
		return NULL;
	}
	lua_settop(L, 0);
	lua_gc(L, LUA_GCCOLLECT, 0);
	return st;
}

/* The state of slot for s, created on first use. */
static struct hk_state *slot_state(struct sk_hook_script *s, int slot,
				   struct sk_hook_res *res)
{
	struct hk_state *st = s->states[slot];
	struct sk_err err;

	if (st && st->broken) {
		state_close(st);
		st = s->states[slot] = NULL;
	}
	if (!st) {
		st = state_new(s, &err);
		if (!st) {
			res->status = SK_HOOK_ERROR;
			snprintf(res->msg, sizeof(res->msg), "%s", err.msg);
			return NULL;
		}
		s->states[slot] = st;
	}
	return st;
}

/* ------------------------------------------------------------------ */
/* Scripts */

int sk_hook_read_file(const char *path, char **src, size_t *len,
		      struct sk_err *err)
{
	struct stat sb;
	ssize_t got;
	size_t at = 0;
	char *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return sk_err_setc(err, -errno, "%s: cannot open: %s", path,
				   strerror(errno));
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) ||
	    (uint64_t)sb.st_size > HK_MAX_SCRIPT) {
		close(fd);
		return sk_err_setc(err, -EINVAL,
				   "%s: not a regular file of "
				   "at most %u bytes",
				   path, HK_MAX_SCRIPT);
	}
	buf = sk_xmalloc((size_t)sb.st_size + 1);
	while (at < (size_t)sb.st_size &&
	       (got = read(fd, buf + at, (size_t)sb.st_size - at)) > 0)
		at += (size_t)got;
	close(fd);
	buf[at] = '\0';
	*src = buf;
	*len = at;
	return 0;
}

int sk_hook_script_new(struct sk_hook_script **out, const char *path,
		       const char *src, size_t len,
		       const struct sk_hook_limits *lim, int n_slots,
		       struct sk_err *err)
{
	static atomic_uint_fast64_t versions;
	struct sk_hook_script *s = sk_xcalloc(1, sizeof(*s));
	struct hk_state *st;

	s->path = sk_xstrdup(path);
	s->source = sk_xmalloc(len + 1);
	memcpy(s->source, src, len);
	s->source[len] = '\0';
	s->len = len;
	s->lim = *lim;
	s->n_slots = SK_MAX(1, SK_MIN(n_slots, SK_HOOK_MAX_WORKERS));
	s->refs = 1;
	s->version = ++versions;
	/* Compile and run the top level once now, so errors show at load. */
	st = state_new(s, err);
	if (!st) {
		free(s->source);
		free(s->path);
		free(s);
		return -EINVAL;
	}
	lua_rawgeti(st->L, LUA_REGISTRYINDEX, st->mod_ref);
	lua_getfield(st->L, -1, "on_record");
	s->has |= lua_isfunction(st->L, -1) ? SK_HOOK_HAS_RECORD : 0;
	lua_getfield(st->L, -2, "on_batch");
	s->has |= lua_isfunction(st->L, -1) ? SK_HOOK_HAS_BATCH : 0;
	lua_getfield(st->L, -3, "retain");
	s->has |= lua_isfunction(st->L, -1) ? SK_HOOK_HAS_RETAIN : 0;
	lua_settop(st->L, 0);
	/* Keep it as slot 0's state rather than building it twice. */
	s->states[0] = st;
	*out = s;
	return 0;
}

int sk_hook_script_load(struct sk_hook_script **out, const char *path,
			const struct sk_hook_limits *lim, int n_slots,
			struct sk_err *err)
{
	char *src;
	size_t len;
	int rc = sk_hook_read_file(path, &src, &len, err);

	if (rc)
		return rc;
	rc = sk_hook_script_new(out, path, src, len, lim, n_slots, err);
	free(src);
	return rc;
}

void sk_hook_script_ref(struct sk_hook_script *s)
{
	s->refs++;
}

void sk_hook_script_unref(struct sk_hook_script *s)
{
	if (!s || --s->refs > 0)
		return;
	for (int i = 0; i < SK_HOOK_MAX_WORKERS; i++)
		state_close(s->states[i]);
	free(s->source);
	free(s->path);
	free(s);
}

size_t sk_hook_script_memory(const struct sk_hook_script *s)
{
	size_t n = 0;

	for (int i = 0; i < SK_HOOK_MAX_WORKERS; i++)
		if (s->states[i])
			n += s->states[i]->used;
	return n;
}

/* ------------------------------------------------------------------ */
/* Record sets */

/* Blocks that small copies share (one malloc per record was a cost). */
#define HK_ARENA_BLOCK (64u << 10)
#define HK_ARENA_SMALL 4096u

static void *arena_block(struct sk_hook_recs *rs, size_t n)
{
	void *m = sk_xmalloc(n ? n : 1);

	if (rs->n_arena == rs->cap_arena) {
		rs->cap_arena = rs->cap_arena ? rs->cap_arena * 2 : 16;
		rs->arena = sk_xrealloc(rs->arena,
					rs->cap_arena * sizeof(*rs->arena));
	}
	rs->arena[rs->n_arena++] = m;
	return m;
}

const uint8_t *sk_hook_recs_keep(struct sk_hook_recs *rs, const void *p,
				 size_t n)
{
	size_t need = (n + 7) & ~(size_t)7;
	uint8_t *m;

	if (n > HK_ARENA_SMALL) {
		m = arena_block(rs, n);
	} else {
		if (need > rs->bump_left || !rs->bump) {
			rs->bump = arena_block(rs, HK_ARENA_BLOCK);
			rs->bump_left = HK_ARENA_BLOCK;
		}
		m = rs->bump;
		rs->bump += need;
		rs->bump_left -= need;
	}
	if (n)
		memcpy(m, p, n);
	return m;
}

void sk_hook_recs_free(struct sk_hook_recs *rs)
{
	for (size_t i = 0; i < rs->n_arena; i++)
		free(rs->arena[i]);
	free(rs->arena);
	free(rs->r);
	free(rs->emits);
	memset(rs, 0, sizeof(*rs));
}

/* ------------------------------------------------------------------ */
/* Calls */

/* ctx for this call: topic, partition, hook, options (a fresh copy). */
static void push_ctx(lua_State *L, struct hk_state *st,
		     const struct sk_hook_call *call)
{
	const char *opts = call->options_json ? call->options_json : "{}";

	lua_createtable(L, 0, 5);
	lua_pushstring(L, call->topic ? call->topic : "");
	lua_setfield(L, -2, "topic");
	lua_pushinteger(L, call->partition);
	lua_setfield(L, -2, "partition");
	lua_pushstring(L, call->hook ? call->hook : "");
	lua_setfield(L, -2, "hook");
	lua_pushnumber(L, (lua_Number)st->gen);
	lua_pushcclosure(L, hk_emit, 1);
	lua_setfield(L, -2, "emit");

	/* Decoded once per state and options text, copied per call. */
	lua_rawgeti(L, LUA_REGISTRYINDEX, st->prelude_ref);
	lua_getfield(L, -1, "deepcopy");
	lua_rawgeti(L, LUA_REGISTRYINDEX, st->options_ref);
	lua_getfield(L, -1, opts);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_getfield(L, -3, "decode_options");
		lua_pushstring(L, opts);
		lua_call(L, 1, 1);
		lua_pushvalue(L, -1);
		lua_setfield(L, -3, opts);
	}
	lua_remove(L, -2);
	lua_call(L, 1, 1);
	lua_setfield(L, -3, "options");
	lua_pop(L, 1);
}

/* Protected body of a records call. */
static int run_records_c(lua_State *L)
{
	struct hk_call *c = lua_touserdata(L, 1);
	struct hk_state *st = c->st;
	int ctx;
	size_t n;

	lua_settop(L, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, st->mod_ref);
	lua_getfield(L, 1, "on_batch");
	push_ctx(L, st, c->call);
	ctx = 3;
	if (lua_isfunction(L, 2)) {
		struct hk_batch *b = lua_newuserdata(L, sizeof(*b));

		b->st = st;
		b->gen = st->gen;
		c->batch_ud = b;
		luaL_getmetatable(L, "skald.batch");
		lua_setmetatable(L, -2);
		lua_pushvalue(L, 2);
		lua_pushvalue(L, -2);
		lua_pushvalue(L, ctx);
		lua_call(L, 2, 0);
		return 0;
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, st->prelude_ref);
	lua_getfield(L, -1, "each_record");
	lua_getfield(L, 1, "on_record");
	lua_pushvalue(L, ctx);
	lua_pushinteger(L, (lua_Integer)c->n);
	lua_rawgeti(L, LUA_REGISTRYINDEX, st->rec_mt_ref);
	lua_rawgeti(L, LUA_REGISTRYINDEX, st->rec_cur_ref);
	lua_rawgeti(L, LUA_REGISTRYINDEX, st->rec_fns_ref);
	lua_call(L, 6, 2);
	n = (size_t)lua_tointeger(L, -1);
	for (size_t k = 1; k <= n; k++) {
		size_t i;

		lua_rawgeti(L, -2, (int)k);
		i = (size_t)lua_tointeger(L, -1);
		lua_pop(L, 1);
		if (i >= 1 && i <= c->n)
			rec_w(c, i)->dropped = true;
	}
	return 0;
}

/* Run body(c) protected with the deadline armed; fill res. */
static void call_protected(struct hk_call *c, lua_CFunction body,
			   struct sk_hook_res *res)
{
	struct hk_state *st = c->st;
	lua_State *L = st->L;
	int64_t t0 = mono_ns();
	int rc;

	st->gen++;
	st->cur = c;
	arm(st, c->s->lim.timeout_ms);
	lua_settop(L, 0);
	lua_pushcfunction(L, traceback);
	lua_pushcfunction(L, body);
	lua_pushlightuserdata(L, c);
	rc = lua_pcall(L, 1, 0, 1);
	res->ns = mono_ns() - t0;
	if (st->log_dropped)
		log_second(st, c);
	st->cur = NULL;
	st->gen++;
	if (rc) {
		if (st->timed_out) {
			res->status = SK_HOOK_TIMEOUT;
		} else if (st->oom || rc == LUA_ERRMEM) {
			res->status = SK_HOOK_MEMORY;
			st->broken = true; /* recreate: it may be fragmented */
		} else {
			res->status = SK_HOOK_ERROR;
		}
		copy_error(L, c->s->path, res->msg, sizeof(res->msg));
		if (res->status == SK_HOOK_MEMORY &&
		    !strstr(res->msg, "memory"))
			snprintf(res->msg, sizeof(res->msg),
				 "%s: not enough memory (memory.mb)",
				 c->s->path);
	}
	lua_settop(L, 0);
	disarm(st);
	res->memory = st->used;
}

void sk_hook_run_records(struct sk_hook_script *s, int slot,
			 const struct sk_hook_call *call,
			 struct sk_hook_recs *rs, struct sk_hook_res *res)
{
	struct hk_call c = { .s = s, .call = call, .rs = rs };
	size_t n_emits = rs->n_emits;
	struct hk_state *st;

	memset(res, 0, sizeof(*res));
	st = slot_state(s, slot, res);
	if (!st)
		return;
	c.st = st;
	c.arena_limit = s->lim.memory_bytes;
	c.idx = sk_xmalloc((rs->n ? rs->n : 1) * sizeof(*c.idx));
	for (size_t i = 0; i < rs->n; i++)
		if (!rs->r[i].dropped)
			c.idx[c.n++] = i;
	res->in = (uint32_t)c.n;
	call_protected(&c, run_records_c, res);
	if (res->status != SK_HOOK_OK) {
		/* Transactional: put everything back. */
		for (size_t i = 0; i < c.n_undo; i++)
			rs->r[c.undo[i].at] = c.undo[i].rec;
		rs->n_emits = n_emits;
	} else {
		for (size_t i = 0; i < c.n; i++)
			if (rs->r[c.idx[i]].dropped)
				res->dropped++;
		res->out = res->in - res->dropped;
	}
	free(c.saved);
	free(c.undo);
	free(c.idx);
}

static void set_int(lua_State *L, const char *k, int64_t v)
{
	lua_pushnumber(L, (lua_Number)v);
	lua_setfield(L, -2, k);
}

/* Protected body of a retain call. */
static int run_retain_c(lua_State *L)
{
	struct hk_call *c = lua_touserdata(L, 1);
	const struct sk_hook_segment *seg = c->seg;

	lua_settop(L, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, c->st->mod_ref);
	lua_getfield(L, 1, "retain");
	if (!lua_isfunction(L, 2))
		return luaL_error(L, "%s has no retain function", c->s->path);
	lua_createtable(L, 0, 5);
	set_int(L, "base_offset", seg->base_offset);
	set_int(L, "last_offset", seg->last_offset);
	set_int(L, "first_timestamp", seg->first_timestamp);
	set_int(L, "max_timestamp", seg->max_timestamp);
	set_int(L, "size", seg->size);
	push_ctx(L, c->st, c->call);
	lua_call(L, 2, 1);
	if (lua_type(L, -1) == LUA_TBOOLEAN)
		c->keep = lua_toboolean(L, -1);
	else if (!lua_isnil(L, -1))
		return luaL_error(L,
				  "retain must return true (keep) or false "
				  "(delete), got %s",
				  luaL_typename(L, -1));
	return 0;
}

void sk_hook_run_retain(struct sk_hook_script *s, int slot,
			const struct sk_hook_call *call,
			const struct sk_hook_segment *seg, bool *keep,
			struct sk_hook_res *res)
{
	struct hk_call c = { .s = s, .call = call, .seg = seg, .keep = true };

	memset(res, 0, sizeof(*res));
	*keep = true;
	c.st = slot_state(s, slot, res);
	if (!c.st)
		return;
	call_protected(&c, run_retain_c, res);
	if (res->status == SK_HOOK_OK)
		*keep = c.keep;
}
