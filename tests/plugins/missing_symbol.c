/*
 * Calls a function nobody defines (and the broker exports no internals):
 * dlopen with RTLD_NOW fails before any of this code can run.
 */
#include <skald/plugin.h>

void sk_plugin_no_such_symbol(void);

static int missing_init(const struct skald_host *host,
			const struct skald_config *config, void **state,
			struct skald_error *err)
{
	(void)host;
	(void)config;
	(void)state;
	(void)err;
	sk_plugin_no_such_symbol();
	return 0;
}

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_PLUGIN_ABI,
	"missing_symbol", "1.0.0", "Needs a symbol nobody has",
	SKALD_PROVIDES_GENERIC, NULL,
	missing_init, NULL, NULL, NULL,
};
