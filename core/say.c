#include "say.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Written once by sk_say_setup before threads start; read-only after. */
static struct {
	enum sk_say_level level;
	enum sk_say_format format;
} say_conf = { SK_SAY_INFO, SK_SAY_TEXT };

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void sk_say_setup(enum sk_say_level level, enum sk_say_format format)
{
	say_conf.level = level;
	say_conf.format = format;
}

bool sk_say_level_parse(const char *s, enum sk_say_level *out)
{
	for (size_t i = 0; i < SK_ARRAY_SIZE(level_names); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum sk_say_level)i;
			return true;
		}
	}
	return false;
}

/* Append msg to out as the body of a JSON string. */
static size_t json_escape(char *out, size_t cap, const char *msg)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)msg;
	     *p && n + 7 < cap; p++) {
		if (*p == '"' || *p == '\\') {
			out[n++] = '\\';
			out[n++] = (char)*p;
		} else if (*p < 0x20) {
			n += (size_t)snprintf(out + n, cap - n, "\\u%04x", *p);
		} else {
			out[n++] = (char)*p;
		}
	}
	out[n] = '\0';
	return n;
}

void sk_say(enum sk_say_level level, const char *fmt, ...)
{
	char msg[2048], line[4608], ts[40];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	int n;

	if (level < say_conf.level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = (int)strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof(ts) - (size_t)n, ".%03dZ",
		 (int)(tv.tv_usec / 1000));

	if (say_conf.format == SK_SAY_JSON) {
		char esc[4200];

		json_escape(esc, sizeof(esc), msg);
		n = snprintf(
			line, sizeof(line),
			"{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n", ts,
			level_names[level], esc);
	} else {
		n = snprintf(line, sizeof(line), "%s %-5s %s\n", ts,
			     level_names[level], msg);
	}
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* Nowhere left to report a failing stderr. */
	}
}
