/*
 * A tiny TAP producer for C unit tests, run by prove.
 *
 *	plan(3);
 *	ok(x == 1, "x is one");
 *	is(a, b, "sizes match");        integers, prints both on failure
 *	is_str(s, "abc", "name kept");
 *	return check_status();
 */
#ifndef SK_TAP_H
#define SK_TAP_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed, tap_planned;

static inline void plan(int n)
{
	tap_planned = n;
	printf("1..%d\n", n);
}

static inline void diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static inline int tap_ok(int cond, const char *file, int line,
			 const char *fmt, ...)
{
	va_list ap;

	tap_n++;
	printf("%sok %d - ", cond ? "" : "not ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond) {
		tap_failed++;
		printf("#   failed at %s:%d\n", file, line);
	}
	fflush(stdout);
	return cond;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

#define is(got, want, ...)                                                   \
	do {                                                                 \
		long long got_ = (long long)(got), want_ = (long long)(want); \
		if (!ok(got_ == want_, __VA_ARGS__))                         \
			diag("  got %lld, want %lld", got_, want_);          \
	} while (0)

#define is_str(got, want, ...)                                           \
	do {                                                             \
		const char *got_ = (got), *want_ = (want);               \
		if (!ok(got_ && want_ && strcmp(got_, want_) == 0,       \
			__VA_ARGS__))                                    \
			diag("  got \"%s\", want \"%s\"",                \
			     got_ ? got_ : "(null)",                     \
			     want_ ? want_ : "(null)");                  \
	} while (0)

/* Exit status for main: non-zero if a test failed or the count is off. */
static inline int check_status(void)
{
	if (tap_planned && tap_n != tap_planned)
		diag("planned %d tests but ran %d", tap_planned, tap_n);
	return tap_failed || (tap_planned && tap_n != tap_planned);
}

#endif
