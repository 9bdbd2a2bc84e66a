/*
 * Diagnostic logging to stderr, as text lines or JSON objects.
 *
 * The format and level are process-wide and set once at start-up, before
 * any thread exists (the logger is the one owner of that state); after
 * that, sk_say is safe to call from any thread: each line is written with
 * a single write(2).
 */
#ifndef SK_SAY_H
#define SK_SAY_H

#include "util.h"

enum sk_say_level {
	SK_SAY_DEBUG,
	SK_SAY_INFO,
	SK_SAY_WARN,
	SK_SAY_ERROR,
};

enum sk_say_format {
	SK_SAY_TEXT,
	SK_SAY_JSON,
};

/* Configure the logger; call before starting threads. */
void sk_say_setup(enum sk_say_level level, enum sk_say_format format);
/* Parse "debug", "info", "warn", "error"; false if unknown. */
bool sk_say_level_parse(const char *s, enum sk_say_level *out);

void sk_say(enum sk_say_level level, const char *fmt, ...) SK_PRINTF(2, 3);

#define sk_debug(...) sk_say(SK_SAY_DEBUG, __VA_ARGS__)
#define sk_info(...)  sk_say(SK_SAY_INFO, __VA_ARGS__)
#define sk_warn(...)  sk_say(SK_SAY_WARN, __VA_ARGS__)
#define sk_error(...) sk_say(SK_SAY_ERROR, __VA_ARGS__)

#endif
