/*
 * skald.json in C: decode and encode with exactly the rules (and error
 * messages) of the pure-Lua codec in scripts/skald/skald.lua, which the
 * SDK keeps running offline. scripts/skald/skald.lua swaps its decode and
 * encode for these when the host offers them (host.json), binding them to
 * its own null value and array metatable, so both codecs share one null
 * and one array mark. The rules, summed up:
 *  - decode accepts exactly RFC 8259 with blanks around one value; errors
 *    are "skald.json.decode: WHAT at byte N" (1-based), nesting past 200
 *    is an error, null is the null value, arrays carry the array mark;
 *  - encode writes integers up to 2^53 as integers, other numbers with
 *    the fewest of 14..17 digits that read back the same, object keys
 *    sorted bytewise, marked or 1..n-keyed tables as arrays;
 *  - get and set read and replace top-level fields of an object: they
 *    walk it as decode would (same errors, named get or set) but decode
 *    only the values asked for, and set copies every other byte.
 *
 * Scratch memory (the output, unescaped strings, the key stack of the
 * objects being encoded) lives in one userdata per state, allocated with
 * the state's allocator, so it counts against memory.mb and an error
 * half-way leaks nothing. Tables are read raw (as pairs and # do): no
 * metamethod runs inside the codec, so it never re-enters itself.
 * tests/unit/test_hook.c runs both codecs over the same inputs.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "hook.h"

#define JS_MAX_DEPTH 200
#define JS_ARRAY_TAG "skald.json.array"

/* Upvalues of decode and encode. */
#define UV_NULL	   lua_upvalueindex(1)
#define UV_ARRAYMT lua_upvalueindex(2)
#define UV_SCRATCH lua_upvalueindex(3)

struct js_key {
	const char *p;
	size_t n;
	int v; /* stack slot of the value, or 0: look it up */
};

/* Keys of an object whose values stay on the stack while it is encoded. */
#define JS_STACK_KEYS 32

/* A member of an object get or set walked: offsets in its text. */
struct js_member {
	size_t ks, ke; /* the key's opening quote, and after its closing one */
	size_t vs, ve; /* the value's start, and after its end */
	bool plain;    /* the key has no escapes */
	int pair;      /* set: the (name, value) pair naming it, or -1 */
};

/* The per-state scratch (userdata "skald.json.scratch"). */
struct js_scratch {
	char *buf;
	size_t len, cap;
	struct js_key *keys; /* stack of the objects being encoded */
	size_t n_keys, cap_keys;
	/*
	 * The members of the object walked last, and what identifies its
	 * text (see sk_hook_json_get_with): set reuses them after a get of
	 * the same text.
	 */
	struct js_member *mem;
	size_t n_mem, cap_mem;
	uint64_t walk_tag; /* 0: none */
	const void *walk_p;
	size_t walk_n, walk_close;
};

static void *js_grow(lua_State *L, void *p, size_t *cap, size_t need,
		     size_t elem)
{
	void *ud;
	lua_Alloc f = lua_getallocf(L, &ud);
	size_t ncap = *cap ? *cap : 256;
	void *q;

	if (need <= *cap)
		return p;
	while (ncap < need)
		ncap *= 2;
	q = f(ud, p, *cap * elem, ncap * elem);
	if (!q) {
		lua_pushliteral(L, "not enough memory");
		lua_error(L);
	}
	*cap = ncap;
	return q;
}

static int js_scratch_gc(lua_State *L)
{
	struct js_scratch *s = lua_touserdata(L, 1);
	void *ud;
	lua_Alloc f = lua_getallocf(L, &ud);

	if (s->buf)
		f(ud, s->buf, s->cap, 0);
	if (s->keys)
		f(ud, s->keys, s->cap_keys * sizeof(*s->keys), 0);
	if (s->mem)
		f(ud, s->mem, s->cap_mem * sizeof(*s->mem), 0);
	memset(s, 0, sizeof(*s));
	return 0;
}

static inline void js_need(lua_State *L, struct js_scratch *s, size_t more)
{
	if (s->len + more > s->cap)
		s->buf = js_grow(L, s->buf, &s->cap, s->len + more, 1);
}

static inline void js_put(lua_State *L, struct js_scratch *s, const void *p,
			  size_t n)
{
	js_need(L, s, n);
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

static inline void js_putc(lua_State *L, struct js_scratch *s, char c)
{
	js_need(L, s, 1);
	s->buf[s->len++] = c;
}

/* Bytes that end a plain run inside a string: '"', '\\', controls. */
static const unsigned char js_special[256] = {
	[0 ... 0x1f] = 1,
	['"'] = 1,
	['\\'] = 1,
};

/*
 * Length of the plain run at the start of p[0..n): bytes before the first
 * '"', '\\' or control character. Sixteen at a time with SSE2 (x86-64's
 * baseline), then eight at a time: each word test ("a byte is zero", "a
 * byte is below 0x20") flags its lowest hit exactly (a borrow only spoils
 * the bytes above it), so on a little-endian machine the lowest flag of
 * the three is the first special byte; then byte by byte.
 */
static inline size_t js_plain_run(const unsigned char *p, size_t n)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t high = 0x8080808080808080ULL;
	size_t i = 0;

#ifdef __SSE2__
	const __m128i quote = _mm_set1_epi8('"');
	const __m128i bslash = _mm_set1_epi8('\\');
	const __m128i ctl = _mm_set1_epi8(0x1f);

	for (; i + 16 <= n; i += 16) {
		__m128i x = _mm_loadu_si128((const __m128i *)(p + i));
		/* x <= 0x1f (unsigned) exactly when min(x, 0x1f) == x. */
		__m128i hit =
			_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote),
						  _mm_cmpeq_epi8(x, bslash)),
				     _mm_cmpeq_epi8(_mm_min_epu8(x, ctl), x));
		unsigned bits = (unsigned)_mm_movemask_epi8(hit);

		if (bits)
			return i + (size_t)__builtin_ctz(bits);
	}
#endif
	for (; i + 8 <= n; i += 8) {
		uint64_t x, q, b, hit;

		memcpy(&x, p + i, 8);
		q = x ^ (ones * '"');
		b = x ^ (ones * '\\');
		hit = (((q - ones) & ~q) | ((b - ones) & ~b) |
		       ((x - ones * 0x20) & ~x)) &
		      high;
		if (hit) {
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			return i + (size_t)__builtin_ctzll(hit) / 8;
#else
			break;
#endif
		}
	}
	while (i < n && !js_special[p[i]])
		i++;
	return i;
}

/* ------------------------------------------------------------------ */
/* Decoding */

struct js_dec {
	lua_State *L;
	struct js_scratch *s;
	const unsigned char *p; /* the text */
	size_t n;
	const char *who; /* "skald.json.decode", for errors */
	bool skip;	 /* check the syntax, push nothing */
};

static int js_fail(struct js_dec *d, size_t at, const char *what)
{
	lua_pushfstring(d->L, "%s: %s at byte %d", d->who, what, (int)(at + 1));
	return lua_error(d->L);
}

static inline int js_byte(const struct js_dec *d, size_t i)
{
	return i < d->n ? d->p[i] : -1;
}

static inline size_t js_skip(const struct js_dec *d, size_t i)
{
	while (i < d->n && (d->p[i] == ' ' || d->p[i] == '\t' ||
			    d->p[i] == '\r' || d->p[i] == '\n'))
		i++;
	return i;
}

static int js_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Four hex digits at i as a number, or -1. */
static long js_hex4(const struct js_dec *d, size_t i)
{
	long v = 0;

	if (i + 4 > d->n)
		return -1;
	for (size_t k = 0; k < 4; k++) {
		int h = js_hex(d->p[i + k]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

static void js_utf8(lua_State *L, struct js_scratch *s, unsigned long cp)
{
	char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xC0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xE0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		b[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		b[0] = (char)(0xF0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		b[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	js_put(L, s, b, n);
}

/*
 * The string whose opening quote is at i, unescaped: *out points into
 * the text when it has no escapes, else into the scratch buffer (valid
 * until the scratch is next used). Returns the index after it.
 */
static size_t js_string_bytes(struct js_dec *d, size_t i, const char **out,
			      size_t *out_n)
{
	size_t pos = i + 1, j;
	bool parts = false;

	for (;;) {
		int c;

		j = pos + js_plain_run(d->p + pos, d->n - pos);
		if (j >= d->n)
			js_fail(d, i, "unterminated string");
		c = d->p[j];
		if (c == '"') {
			if (!parts) {
				*out = (const char *)d->p + pos;
				*out_n = j - pos;
			} else {
				js_put(d->L, d->s, d->p + pos, j - pos);
				*out = d->s->buf;
				*out_n = d->s->len;
			}
			return j + 1;
		}
		if (c != '\\')
			js_fail(d, j, "control character in string");
		if (!parts) {
			parts = true;
			d->s->len = 0;
		}
		js_put(d->L, d->s, d->p + pos, j - pos);
		c = js_byte(d, j + 1);
		if (c == 'u') {
			long cp = js_hex4(d, j + 2);

			if (cp < 0)
				js_fail(d, j, "bad \\u escape");
			pos = j + 6;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				long lo = -1;

				if (pos + 6 <= d->n && d->p[pos] == '\\' &&
				    d->p[pos + 1] == 'u' &&
				    (d->p[pos + 2] | 0x20) == 'd' &&
				    strchr("cdefCDEF", d->p[pos + 3]) &&
				    d->p[pos + 3])
					lo = js_hex4(d, pos + 2);
				if (lo >= 0) {
					cp = 0x10000 + (cp - 0xD800) * 0x400 +
					     (lo - 0xDC00);
					pos += 6;
				} else {
					cp = 0xFFFD;
				}
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				cp = 0xFFFD;
			}
			js_utf8(d->L, d->s, (unsigned long)cp);
			continue;
		}
		switch (c) {
		case '"':
		case '\\':
		case '/':
			js_putc(d->L, d->s, (char)c);
			break;
		case 'b':
			js_putc(d->L, d->s, '\b');
			break;
		case 'f':
			js_putc(d->L, d->s, '\f');
			break;
		case 'n':
			js_putc(d->L, d->s, '\n');
			break;
		case 'r':
			js_putc(d->L, d->s, '\r');
			break;
		case 't':
			js_putc(d->L, d->s, '\t');
			break;
		default:
			js_fail(d, j, "bad escape");
		}
		pos = j + 2;
	}
}

/* The string whose opening quote is at i: pushed; returns the next. */
static size_t js_string(struct js_dec *d, size_t i)
{
	const char *p;
	size_t n;

	i = js_string_bytes(d, i, &p, &n);
	if (!d->skip)
		lua_pushlstring(d->L, p, n);
	return i;
}

static size_t js_value(struct js_dec *d, size_t i, int depth);

static size_t js_array(struct js_dec *d, size_t i, int depth)
{
	lua_State *L = d->L;
	int n = 0;

	if (!d->skip) {
		lua_createtable(L, 0, 0);
		lua_pushvalue(L, UV_ARRAYMT);
		lua_setmetatable(L, -2);
	}
	i = js_skip(d, i + 1);
	if (js_byte(d, i) == ']')
		return i + 1;
	for (;;) {
		int c;

		i = js_value(d, i, depth);
		if (!d->skip)
			lua_rawseti(L, -2, ++n);
		i = js_skip(d, i);
		c = js_byte(d, i);
		if (c == ']')
			return i + 1;
		if (c != ',')
			js_fail(d, i, "expected ',' or ']'");
		i = js_skip(d, i + 1);
	}
}

/*
 * Called per member of an object: the key's opening quote (ks) and the
 * index after its closing one (ke), the key unescaped in k (valid until
 * the value is parsed), and the start of the value (vs); parses the
 * value (at depth) and returns the index after it.
 */
typedef size_t (*js_member_fn)(struct js_dec *d, size_t ks, size_t ke,
			       const char *k, size_t kn, size_t vs, int depth,
			       void *arg);

/*
 * The members of the object whose '{' is at i, each handed to fn: the
 * object grammar, for decode and for get and set. *close: the index of
 * the '}'. Returns the index after it. Inlined into its callers (as are
 * js_walk and js_walk_member), so that fn is a known function the
 * compiler can inline too, not an indirect call per member.
 */
static SK_ALWAYS_INLINE size_t js_members(struct js_dec *d, size_t i, int depth,
					  js_member_fn fn, void *arg,
					  size_t *close)
{
	i = js_skip(d, i + 1);
	if (js_byte(d, i) != '}') {
		for (;;) {
			const char *k;
			size_t kn, ks = i, ke;
			int c;

			if (js_byte(d, i) != '"')
				js_fail(d, i, "expected a string key");
			ke = js_string_bytes(d, i, &k, &kn);
			i = js_skip(d, ke);
			if (js_byte(d, i) != ':')
				js_fail(d, i, "expected ':'");
			i = fn(d, ks, ke, k, kn, js_skip(d, i + 1), depth, arg);
			i = js_skip(d, i);
			c = js_byte(d, i);
			if (c == '}')
				break;
			if (c != ',')
				js_fail(d, i, "expected ',' or '}'");
			i = js_skip(d, i + 1);
		}
	}
	*close = i;
	return i + 1;
}

/* A member of an object being decoded: key and value into its table. */
static size_t js_object_member(struct js_dec *d, size_t ks, size_t ke,
			       const char *k, size_t kn, size_t vs, int depth,
			       void *arg)
{
	size_t e;

	(void)ks;
	(void)ke;
	(void)arg;
	if (!d->skip)
		lua_pushlstring(d->L, k, kn);
	e = js_value(d, vs, depth);
	if (!d->skip)
		lua_rawset(d->L, -3);
	return e;
}

static size_t js_object(struct js_dec *d, size_t i, int depth)
{
	size_t close;

	if (!d->skip)
		lua_createtable(d->L, 0, 4);
	return js_members(d, i, depth, js_object_member, NULL, &close);
}

static bool js_word(const struct js_dec *d, size_t i, const char *w, size_t n)
{
	return i + n <= d->n && memcmp(d->p + i, w, n) == 0;
}

static size_t js_digits(const struct js_dec *d, size_t i)
{
	while (i < d->n && d->p[i] >= '0' && d->p[i] <= '9')
		i++;
	return i;
}

/* The value at i, pushed; returns the index after it. */
static size_t js_value(struct js_dec *d, size_t i, int depth)
{
	int c = js_byte(d, i);
	size_t start, e, k;
	char tmp[64], *num;
	double v;

	if (c == '"')
		return js_string(d, i);
	if (c == '{' || c == '[') {
		if (depth >= JS_MAX_DEPTH)
			js_fail(d, i, "nesting too deep");
		if (!d->skip)
			luaL_checkstack(d->L, 4, d->who);
		return c == '{' ? js_object(d, i, depth + 1)
				: js_array(d, i, depth + 1);
	}
	if (c == 't' && js_word(d, i, "true", 4)) {
		if (!d->skip)
			lua_pushboolean(d->L, 1);
		return i + 4;
	}
	if (c == 'f' && js_word(d, i, "false", 5)) {
		if (!d->skip)
			lua_pushboolean(d->L, 0);
		return i + 5;
	}
	if (c == 'n' && js_word(d, i, "null", 4)) {
		if (!d->skip)
			lua_pushvalue(d->L, UV_NULL);
		return i + 4;
	}
	start = i + (c == '-');
	e = js_digits(d, start);
	if (e == start || (d->p[start] == '0' && e > start + 1)) {
		if (c < 0)
			js_fail(d, i, "unexpected end of input");
		js_fail(d, i, "unexpected character");
	}
	if (js_byte(d, e) == '.' && (k = js_digits(d, e + 1)) > e + 1)
		e = k;
	if (js_byte(d, e) == 'e' || js_byte(d, e) == 'E') {
		k = e + 1;
		if (js_byte(d, k) == '+' || js_byte(d, k) == '-')
			k++;
		if ((k = js_digits(d, k)) > e + 1 && d->p[k - 1] >= '0' &&
		    d->p[k - 1] <= '9')
			e = k;
	}
	if (d->skip)
		return e;
	if (e - start <= 15 && memchr(d->p + start, '.', e - start) == NULL &&
	    memchr(d->p + start, 'e', e - start) == NULL &&
	    memchr(d->p + start, 'E', e - start) == NULL) {
		/* A plain integer below 2^53: exact without strtod. */
		int64_t iv = 0;

		for (k = start; k < e; k++)
			iv = iv * 10 + (d->p[k] - '0');
		lua_pushnumber(d->L, c == '-' ? -(double)iv : (double)iv);
		return e;
	}
	if (e - i < sizeof(tmp)) {
		num = tmp;
	} else {
		d->s->len = 0;
		js_need(d->L, d->s, e - i + 1);
		num = d->s->buf;
	}
	memcpy(num, d->p + i, e - i);
	num[e - i] = '\0';
	v = strtod(num, NULL);
	lua_pushnumber(d->L, v);
	return e;
}

/* Decode p[0..n) and push the value; p must stay put meanwhile. */
static void js_decode_buf(lua_State *L, const char *p, size_t n)
{
	struct js_dec d;
	size_t i;

	d.L = L;
	d.s = lua_touserdata(L, UV_SCRATCH);
	d.p = (const unsigned char *)p;
	d.n = n;
	d.who = "skald.json.decode";
	d.skip = false;
	i = js_value(&d, js_skip(&d, 0), 0);
	i = js_skip(&d, i);
	if (i < d.n)
		js_fail(&d, i, "trailing characters");
}

/* Argument 1, the JSON text of decode, get or set (who). */
static const char *js_text_arg(lua_State *L, const char *who, size_t *n)
{
	if (lua_type(L, 1) != LUA_TSTRING)
		luaL_error(L, "%s: expected a string, got %s", who,
			   luaL_typename(L, 1));
	return lua_tolstring(L, 1, n);
}

static int js_decode(lua_State *L)
{
	size_t n;
	const char *p = js_text_arg(L, "skald.json.decode", &n);

	lua_settop(L, 1);
	js_decode_buf(L, p, n);
	return 1;
}

void sk_hook_json_decode_with(lua_State *L, const char *p, size_t n)
{
	js_decode_buf(L, p, n);
}

/* ------------------------------------------------------------------ */
/* Encoding */

static void js_enc_string(lua_State *L, struct js_scratch *s, const char *p,
			  size_t n)
{
	size_t i = 0;

	js_need(L, s, n + 2);
	s->buf[s->len++] = '"';
	for (;;) {
		size_t run = js_plain_run((const unsigned char *)p + i, n - i);
		unsigned char c;
		char esc[8];
		const char *e = NULL;

		js_put(L, s, p + i, run);
		i += run;
		if (i >= n)
			break;
		c = (unsigned char)p[i++];
		switch (c) {
		case '"':
			e = "\\\"";
			break;
		case '\\':
			e = "\\\\";
			break;
		case '\b':
			e = "\\b";
			break;
		case '\f':
			e = "\\f";
			break;
		case '\n':
			e = "\\n";
			break;
		case '\r':
			e = "\\r";
			break;
		case '\t':
			e = "\\t";
			break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			e = esc;
		}
		js_put(L, s, e, strlen(e));
	}
	js_putc(L, s, '"');
}

static void js_enc_number(lua_State *L, struct js_scratch *s, int idx)
{
	double x = lua_tonumber(L, idx);
	char b[40];
	int n = 0;

	if (isnan(x) || isinf(x)) {
		lua_pushvalue(L, idx);
		lua_pushfstring(L, "skald.json.encode: cannot encode %s",
				lua_tostring(L, -1));
		lua_error(L);
	}
	if (floor(x) == x && x >= -9007199254740992.0 &&
	    x <= 9007199254740992.0) {
		/* Digits by hand: snprintf is the slow part of small ints. */
		long long v = (long long)x;
		unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v
					     : (unsigned long long)v;
		char *q = b + sizeof(b);

		do {
			*--q = (char)('0' + u % 10);
			u /= 10;
		} while (u);
		if (v < 0)
			*--q = '-';
		n = (int)(b + sizeof(b) - q);
		memmove(b, q, (size_t)n);
	} else {
		for (int digits = 14; digits <= 17; digits++) {
			n = snprintf(b, sizeof(b), "%.*g", digits, x);
			if (strtod(b, NULL) == x)
				break;
		}
	}
	js_put(L, s, b, (size_t)n);
}

/* Is the table at idx marked as an array (the mark's __metatable)? */
static bool js_marked(lua_State *L, int idx)
{
	bool marked = false;

	if (!lua_getmetatable(L, idx))
		return false;
	if (lua_rawequal(L, -1, UV_ARRAYMT)) {
		marked = true;
	} else {
		size_t n;
		const char *tag;

		lua_pushliteral(L, "__metatable");
		lua_rawget(L, -2);
		tag = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n)
						     : NULL;
		marked = tag && n == sizeof(JS_ARRAY_TAG) - 1 &&
			 memcmp(tag, JS_ARRAY_TAG, n) == 0;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return marked;
}

/* error(msg, 0): no position, as the Lua codec raises its errors. */
static void js_raise(lua_State *L, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	lua_error(L);
}

static int js_key_cmp(const void *a, const void *b)
{
	const struct js_key *x = a, *y = b;
	int c = memcmp(x->p, y->p, x->n < y->n ? x->n : y->n);

	if (c)
		return c;
	return x->n < y->n ? -1 : x->n > y->n;
}

static void js_enc_value(lua_State *L, struct js_scratch *s, int idx,
			 int depth);

static void js_enc_table(lua_State *L, struct js_scratch *s, int idx, int depth)
{
	size_t len, count = 0, base, nk;
	bool is_array;
	int top;

	if (depth >= JS_MAX_DEPTH)
		js_raise(L, "skald.json.encode: nesting too deep (a cycle?)");
	if (lua_rawequal(L, idx, UV_NULL)) {
		js_put(L, s, "null", 4);
		return;
	}
	luaL_checkstack(L, 4, "skald.json.encode");
	len = lua_objlen(L, idx);
	is_array = js_marked(L, idx);
	if (!is_array && len > 0) {
		lua_pushnil(L);
		while (lua_next(L, idx)) {
			count++;
			lua_pop(L, 1);
		}
		is_array = count == len;
	}
	if (is_array) {
		js_putc(L, s, '[');
		for (size_t i = 1; i <= len; i++) {
			if (i > 1)
				js_putc(L, s, ',');
			lua_rawgeti(L, idx, (int)i);
			js_enc_value(L, s, lua_gettop(L), depth + 1);
			lua_pop(L, 1);
		}
		js_putc(L, s, ']');
		return;
	}
	/*
	 * Keys on the scratch key stack: Lua strings the table anchors. The
	 * first JS_STACK_KEYS keep their key and value on the Lua stack, so
	 * that writing them needs no second lookup (nor interning the key).
	 */
	base = s->n_keys;
	top = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		struct js_key *k;

		if (lua_type(L, -2) != LUA_TSTRING)
			js_raise(L,
				 "skald.json.encode: object keys must be "
				 "strings, got %s",
				 luaL_typename(L, -2));
		if (s->n_keys == s->cap_keys)
			s->keys = js_grow(L, s->keys, &s->cap_keys,
					  s->n_keys + 1, sizeof(*s->keys));
		k = &s->keys[s->n_keys++];
		k->p = lua_tolstring(L, -2, &k->n);
		if (s->n_keys - base <= JS_STACK_KEYS) {
			k->v = lua_gettop(L);
			luaL_checkstack(L, 4, "skald.json.encode");
			lua_pushvalue(L, -2); /* next from a copy of the key */
		} else {
			k->v = 0;
			lua_pop(L, 1);
		}
	}
	nk = s->n_keys - base;
	if (nk <= 16) {
		for (size_t i = 1; i < nk; i++) {
			struct js_key t = s->keys[base + i];
			size_t j = i;

			for (; j > 0 &&
			       js_key_cmp(&s->keys[base + j - 1], &t) > 0;
			     j--)
				s->keys[base + j] = s->keys[base + j - 1];
			s->keys[base + j] = t;
		}
	} else {
		qsort(s->keys + base, nk, sizeof(*s->keys), js_key_cmp);
	}
	js_putc(L, s, '{');
	for (size_t i = 0; i < nk; i++) {
		const struct js_key *k = &s->keys[base + i];

		if (i > 0)
			js_putc(L, s, ',');
		js_enc_string(L, s, k->p, k->n);
		js_putc(L, s, ':');
		if (k->v) {
			js_enc_value(L, s, k->v, depth + 1);
		} else {
			lua_pushlstring(L, k->p, k->n);
			lua_rawget(L, idx);
			js_enc_value(L, s, lua_gettop(L), depth + 1);
			lua_pop(L, 1);
		}
	}
	lua_settop(L, top);
	s->n_keys = base;
	js_putc(L, s, '}');
}

static void js_enc_value(lua_State *L, struct js_scratch *s, int idx, int depth)
{
	size_t n;
	const char *p;

	switch (lua_type(L, idx)) {
	case LUA_TSTRING:
		p = lua_tolstring(L, idx, &n);
		js_enc_string(L, s, p, n);
		break;
	case LUA_TNUMBER:
		js_enc_number(L, s, idx);
		break;
	case LUA_TBOOLEAN:
		if (lua_toboolean(L, idx))
			js_put(L, s, "true", 4);
		else
			js_put(L, s, "false", 5);
		break;
	case LUA_TNIL:
		js_put(L, s, "null", 4);
		break;
	case LUA_TTABLE:
		js_enc_table(L, s, idx, depth);
		break;
	default:
		lua_pushfstring(L, "skald.json.encode: cannot encode a %s",
				luaL_typename(L, idx));
		lua_error(L);
	}
}

/* Do not keep a huge buffer around after one big document. */
static void js_trim(lua_State *L, struct js_scratch *s)
{
	if (s->cap > (1u << 20)) {
		void *ud;
		lua_Alloc f = lua_getallocf(L, &ud);

		f(ud, s->buf, s->cap, 0);
		s->buf = NULL;
		s->cap = 0;
	}
}

static int js_encode(lua_State *L)
{
	struct js_scratch *s = lua_touserdata(L, UV_SCRATCH);

	lua_settop(L, 1);
	s->len = 0;
	s->n_keys = 0;
	js_enc_value(L, s, 1, 0);
	lua_pushlstring(L, s->buf ? s->buf : "", s->len);
	js_trim(L, s);
	return 1;
}

void sk_hook_json_encode_with(lua_State *L, int idx,
			      void (*sink)(lua_State *L, void *arg,
					   const char *p, size_t n),
			      void *arg)
{
	struct js_scratch *s = lua_touserdata(L, UV_SCRATCH);

	s->len = 0;
	s->n_keys = 0;
	js_enc_value(L, s, idx, 0);
	sink(L, arg, s->buf ? s->buf : "", s->len);
	js_trim(L, s);
}

/* ------------------------------------------------------------------ */
/* Fields of an object: get and set */

/* Field names per call of get or set. */
#define JS_MAX_FIELDS 64

/* The names of a get or set call, checked: strings, not too many. */
struct js_names {
	int n;
	const char *p[JS_MAX_FIELDS];
	size_t len[JS_MAX_FIELDS];
};

/* The count names at first, first + step, ... */
static void js_names_of(lua_State *L, const char *who, int first, int step,
			int count, struct js_names *nm)
{
	if (count > JS_MAX_FIELDS)
		js_raise(L, "%s: at most %d fields at once", who,
			 JS_MAX_FIELDS);
	for (int j = 0; j < count; j++) {
		int idx = first + j * step;

		if (lua_type(L, idx) != LUA_TSTRING)
			js_raise(L, "%s: field names must be strings, got %s",
				 who, luaL_typename(L, idx));
		nm->p[j] = lua_tolstring(L, idx, &nm->len[j]);
	}
	nm->n = count;
}

static bool js_name_is(const struct js_names *nm, int j, const char *k,
		       size_t kn)
{
	return nm->len[j] == kn && memcmp(nm->p[j], k, kn) == 0;
}

/* Parse the member value at vs (decoding it or not); returns its end. */
typedef size_t (*js_value_fn)(struct js_dec *d, const char *k, size_t kn,
			      size_t vs, int depth, void *arg);

struct js_walk {
	js_value_fn value; /* or NULL: check it, push nothing */
	void *arg;
};

/* A member of the object walked: parsed, and kept in the scratch. */
static SK_ALWAYS_INLINE size_t js_walk_member(struct js_dec *d, size_t ks,
					      size_t ke, const char *k,
					      size_t kn, size_t vs, int depth,
					      void *arg)
{
	struct js_walk *w = arg;
	struct js_scratch *s = d->s;
	struct js_member *m;
	size_t ve = w->value ? w->value(d, k, kn, vs, depth, w->arg)
			     : js_value(d, vs, depth);

	if (s->n_mem == s->cap_mem)
		s->mem = js_grow(d->L, s->mem, &s->cap_mem, s->n_mem + 1,
				 sizeof(*s->mem));
	m = &s->mem[s->n_mem++];
	m->ks = ks;
	m->ke = ke;
	m->vs = vs;
	m->ve = ve;
	m->plain =
		kn == ke - ks - 2 && (const unsigned char *)k == d->p + ks + 1;
	m->pair = -1;
	return ve;
}

/*
 * Walk the object that is the whole text, checking all of it as decode
 * would, into the scratch's members; value (or NULL: skip) parses each
 * member's value, its key unescaped in k (valid until the value is
 * parsed). tag (0: none) marks the walk for set to reuse.
 */
static SK_ALWAYS_INLINE void js_walk(struct js_dec *d, js_value_fn value,
				     void *arg, uint64_t tag)
{
	struct js_scratch *s = d->s;
	struct js_walk w = { value, arg };
	size_t i = js_skip(d, 0);

	s->walk_tag = 0;
	s->n_mem = 0;
	if (js_byte(d, i) != '{')
		js_raise(d->L, "%s: not a JSON object", d->who);
	i = js_skip(d, js_members(d, i, 1, js_walk_member, &w, &s->walk_close));
	if (i < d->n)
		js_fail(d, i, "trailing characters");
	s->walk_tag = tag;
	s->walk_p = d->p;
	s->walk_n = d->n;
}

static void js_dec_init(struct js_dec *d, lua_State *L, const char *who,
			const char *p, size_t n)
{
	d->L = L;
	d->s = lua_touserdata(L, UV_SCRATCH);
	d->p = (const unsigned char *)p;
	d->n = n;
	d->who = who;
	d->skip = true;
}

struct js_get {
	const struct js_names *nm;
	int base; /* result j is at base + 1 + j */
};

static size_t js_get_value(struct js_dec *d, const char *k, size_t kn,
			   size_t vs, int depth, void *arg)
{
	struct js_get *g = arg;
	uint64_t want = 0;
	size_t e;

	for (int j = 0; j < g->nm->n; j++)
		if (js_name_is(g->nm, j, k, kn))
			want |= UINT64_C(1) << j;
	if (!want)
		return js_value(d, vs, depth);
	d->skip = false;
	e = js_value(d, vs, depth);
	d->skip = true;
	/*
	 * Into the result of every name asking for it (the value is moved
	 * into the last one); a key given twice: the last one wins, as in
	 * decode.
	 */
	for (int j = 0; want; j++, want >>= 1) {
		if (!(want & 1))
			continue;
		if (want != 1)
			lua_pushvalue(d->L, -1);
		lua_replace(d->L, g->base + 1 + j);
	}
	return e;
}

void sk_hook_json_get_with(lua_State *L, const char *p, size_t n, int first,
			   int n_names, uint64_t tag)
{
	struct js_names nm;
	struct js_get g = { &nm, 0 };
	struct js_dec d;

	js_names_of(L, "skald.json.get", first, 1, n_names, &nm);
	luaL_checkstack(L, n_names + 8, "skald.json.get");
	g.base = lua_gettop(L);
	for (int j = 0; j < n_names; j++)
		lua_pushnil(L);
	js_dec_init(&d, L, "skald.json.get", p, n);
	js_walk(&d, js_get_value, &g, tag);
}

/* The pair (name, value) that decides member m: a name's last pair. */
static int js_pair_of(struct js_dec *d, const struct js_names *nm,
		      const struct js_member *m)
{
	const char *k = (const char *)d->p + m->ks + 1;
	size_t kn = m->ke - m->ks - 2;

	if (!m->plain)
		js_string_bytes(d, m->ks, &k, &kn);
	for (int j = nm->n - 1; j >= 0; j--)
		if (js_name_is(nm, j, k, kn))
			return j;
	return -1;
}

void sk_hook_json_set_with(lua_State *L, const char *p, size_t n, int first,
			   int n_args, uint64_t tag,
			   void (*sink)(lua_State *L, void *arg, const char *p,
					size_t n),
			   void *arg)
{
	struct js_names nm;
	struct js_scratch *s;
	struct js_dec d;
	uint64_t named = 0;
	size_t from, kept = 0, close;

	js_names_of(L, "skald.json.set", first, 2, (n_args + 1) / 2, &nm);
	luaL_checkstack(L, 8, "skald.json.set");
	if (n_args % 2)
		lua_pushnil(L); /* the last name's value */
	js_dec_init(&d, L, "skald.json.set", p, n);
	s = d.s;
	if (!tag || s->walk_tag != tag || s->walk_p != (const void *)p ||
	    s->walk_n != n)
		js_walk(&d, NULL, NULL, 0);
	close = s->walk_close;
	for (size_t m = 0; m < s->n_mem; m++) {
		s->mem[m].pair = js_pair_of(&d, &nm, &s->mem[m]);
		if (s->mem[m].pair >= 0)
			named |= UINT64_C(1) << s->mem[m].pair;
	}
	/*
	 * The text as it was, but for the named members: a value replaced,
	 * or with a nil value the member and one comma removed; names not
	 * found are added at the end. Blanks are kept where members are.
	 */
	s->walk_tag = 0; /* the output may overwrite what it points to */
	s->len = 0;
	s->n_keys = 0;
	js_put(L, s, p, s->n_mem ? s->mem[0].ks : close);
	for (size_t m = 0; m < s->n_mem; m++) {
		struct js_member mm = s->mem[m];
		int vi = mm.pair >= 0 ? first + 2 * mm.pair + 1 : 0;

		if (vi && lua_isnil(L, vi))
			continue;
		if (kept++)
			js_put(L, s, p + s->mem[m - 1].ve,
			       mm.ks - s->mem[m - 1].ve);
		if (vi) {
			js_put(L, s, p + mm.ks, mm.vs - mm.ks);
			js_enc_value(L, s, vi, 1);
		} else {
			js_put(L, s, p + mm.ks, mm.ve - mm.ks);
		}
	}
	for (int j = 0; j < nm.n; j++) {
		bool last = true;

		for (int l = j + 1; l < nm.n && last; l++)
			last = !js_name_is(&nm, l, nm.p[j], nm.len[j]);
		if ((named >> j & 1) || lua_isnil(L, first + 2 * j + 1) ||
		    !last)
			continue;
		if (kept++)
			js_putc(L, s, ',');
		js_enc_string(L, s, nm.p[j], nm.len[j]);
		js_putc(L, s, ':');
		js_enc_value(L, s, first + 2 * j + 1, 1);
	}
	from = s->n_mem ? s->mem[s->n_mem - 1].ve : close;
	js_put(L, s, p + from, n - from);
	sink(L, arg, s->buf, s->len);
	js_trim(L, s);
}

/* json.get(text, name, ...) -> the named fields' values */
static int js_get(lua_State *L)
{
	int names = lua_gettop(L) - 1;
	size_t n;
	const char *p = js_text_arg(L, "skald.json.get", &n);

	sk_hook_json_get_with(L, p, n, 2, names, 0);
	return names;
}

static void js_push_text(lua_State *L, void *arg, const char *p, size_t n)
{
	(void)arg;
	lua_pushlstring(L, p, n);
}

/* json.set(text, name, value, ...) -> the text with those fields set */
static int js_set(lua_State *L)
{
	size_t n;
	const char *p = js_text_arg(L, "skald.json.set", &n);

	sk_hook_json_set_with(L, p, n, 2, lua_gettop(L) - 1, 0, js_push_text,
			      NULL);
	return 1;
}

/*
 * host.json(null, array_mt) -> decode, encode, get, set: the codec bound
 * to the skald module's null value and array metatable.
 */
int sk_hook_json_open(lua_State *L)
{
	struct js_scratch *s;

	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_settop(L, 2);
	s = lua_newuserdata(L, sizeof(*s));
	memset(s, 0, sizeof(*s));
	lua_createtable(L, 0, 2);
	lua_pushcfunction(L, js_scratch_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2); /* 3: the scratch */
	lua_pushvalue(L, 1);
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 3);
	lua_pushcclosure(L, js_decode, 3);
	lua_pushvalue(L, -1);
	lua_setfield(L, LUA_REGISTRYINDEX, SK_HOOK_JSON_REG);
	lua_pushvalue(L, 1);
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 3);
	lua_pushcclosure(L, js_encode, 3);
	lua_pushvalue(L, 1);
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 3);
	lua_pushcclosure(L, js_get, 3);
	lua_pushvalue(L, 1);
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 3);
	lua_pushcclosure(L, js_set, 3);
	return 4;
}
