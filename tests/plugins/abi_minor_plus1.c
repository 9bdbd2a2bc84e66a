/* Built against newer headers than the broker's: refused. */
#include <skald/plugin.h>

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_ABI_MAJOR, SKALD_ABI_MINOR + 1,
	(uint32_t)sizeof(struct skald_plugin_desc), SKALD_BUILD_SIG,
	"abi_minor_plus1", "1.0.0", "Needs a newer minor ABI",
	SKALD_PROVIDES_GENERIC, NULL,
	NULL, NULL, NULL, NULL,
};
