/*
 * The smallest valid plugin: a descriptor and nothing else. Every
 * callback may be NULL.
 */
#include <skald/plugin.h>

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_PLUGIN_ABI,
	"ok_min", "1.0.0", "The smallest valid plugin",
	SKALD_PROVIDES_GENERIC, NULL,
	NULL, NULL, NULL, NULL,
};
