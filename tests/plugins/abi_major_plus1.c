/* Built for the next ABI major: refused before anything else is read. */
#include <skald/plugin.h>

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_ABI_MAJOR + 1, SKALD_ABI_MINOR,
	(uint32_t)sizeof(struct skald_plugin_desc), SKALD_BUILD_SIG,
	"abi_major_plus1", "1.0.0", "Needs a future major ABI",
	SKALD_PROVIDES_GENERIC, NULL,
	NULL, NULL, NULL, NULL,
};
