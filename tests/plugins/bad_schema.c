/* A schema whose default breaks its own bounds: the plugin's bug. */
#include <skald/plugin.h>

static const struct skald_config_key schema[] = {
	{ "workers", SKALD_CONFIG_INT, 0, "0", 1, 64, NULL, "Threads." },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL },
};

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_PLUGIN_ABI,
	"bad_schema", "1.0.0", "A default out of its own range",
	SKALD_PROVIDES_GENERIC, schema,
	NULL, NULL, NULL, NULL,
};
