/* A name outside [a-z][a-z0-9_-]{0,63}: refused. */
#include <skald/plugin.h>

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_PLUGIN_ABI,
	"Bad Name", "1.0.0", "Spaces and capitals",
	SKALD_PROVIDES_GENERIC, NULL,
	NULL, NULL, NULL, NULL,
};
