/* start fails: the broker logs the reason and stops with status 1. */
#include <errno.h>
#include <stdio.h>

#include <skald/host.h>

static int failing_start(void *state, struct skald_error *err)
{
	(void)state;
	snprintf(err->msg, sizeof(err->msg), "the moon is not up yet");
	return -EAGAIN;
}

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_PLUGIN_ABI,
	"failing_start", "1.0.0", "Always fails to start",
	SKALD_PROVIDES_GENERIC, NULL,
	NULL, failing_start, NULL, NULL,
};
