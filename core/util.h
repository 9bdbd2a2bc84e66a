/*
 * Small shared helpers: aborting allocators, error detail, clocks.
 *
 * Allocation failure of internal memory is not recoverable in a broker that
 * already checked every size coming from the outside, so sk_x* abort instead
 * of returning NULL (see STYLE.md, "Allocation").
 */
#ifndef SK_UTIL_H
#define SK_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SK_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define SK_MIN(a, b)	 ((a) < (b) ? (a) : (b))
#define SK_MAX(a, b)	 ((a) > (b) ? (a) : (b))

/* Recover the owning struct from a pointer to one of its members. */
#define sk_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#if defined(__GNUC__)
#define SK_PRINTF(f, a)	 __attribute__((format(printf, f, a)))
#define SK_UNUSED	 __attribute__((unused))
#define SK_NOINLINE	 __attribute__((noinline))
#define SK_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define SK_PRINTF(f, a)
#define SK_UNUSED
#define SK_NOINLINE
#define SK_ALWAYS_INLINE inline
#endif

void *sk_xmalloc(size_t n);
void *sk_xcalloc(size_t nmemb, size_t size);
void *sk_xrealloc(void *p, size_t n);
char *sk_xstrdup(const char *s);
char *sk_xstrndup(const char *s, size_t n);
/* Allocate and format; never returns NULL. */
char *sk_xasprintf(const char *fmt, ...) SK_PRINTF(1, 2);

/*
 * Caller-provided error detail. Functions that can fail return 0 or a
 * negative errno and, when given a non-NULL err, describe what went wrong
 * in words a user can act on.
 */
struct sk_err {
	char msg[512];
};

/* Format into err (if non-NULL); always returns -EINVAL for convenience. */
int sk_err_set(struct sk_err *err, const char *fmt, ...) SK_PRINTF(2, 3);
/* Like sk_err_set but returns the given negative code. */
int sk_err_setc(struct sk_err *err, int code, const char *fmt, ...)
	SK_PRINTF(3, 4);

/* Wall clock in milliseconds since the epoch (record timestamps). */
int64_t sk_now_ms(void);
/* Monotonic clock in milliseconds (deadlines, timeouts). */
int64_t sk_mono_ms(void);

/* Recursively create a directory path (like mkdir -p). */
int sk_mkdirs(const char *path, struct sk_err *err);
/* Recursively remove a directory tree. */
int sk_rmtree(const char *path);
/* fsync a directory so a created/renamed/removed entry is durable. */
int sk_fsync_dir(const char *path);

/* A whole string as a signed 64-bit decimal: an optional '-' and digits. */
bool sk_parse_i64(const char *s, int64_t *out);

#endif
