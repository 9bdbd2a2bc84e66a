/* A valid plugin that takes ok_min's name: refused when both load. */
#include <skald/plugin.h>

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_PLUGIN_ABI,
	"ok_min", "2.0.0", "Another plugin called ok_min",
	SKALD_PROVIDES_GENERIC, NULL,
	NULL, NULL, NULL, NULL,
};
