/* init fails with a reason: the start stops, fini is not called. */
#include <errno.h>
#include <stdio.h>

#include <skald/host.h>

static int failing_init(const struct skald_host *host,
			const struct skald_config *config, void **state,
			struct skald_error *err)
{
	(void)host;
	(void)config;
	(void)state;
	snprintf(err->msg, sizeof(err->msg), "cannot reach the moon");
	return -EHOSTUNREACH;
}

static void failing_fini(void *state)
{
	(void)state;
	/* Never called: a test would see this line in the log. */
	fprintf(stderr, "failing_init: fini called\n");
}

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_PLUGIN_ABI,
	"failing_init", "1.0.0", "Always fails to initialise",
	SKALD_PROVIDES_GENERIC, NULL,
	failing_init, NULL, NULL, failing_fini,
};
