/* A descriptor that says it is smaller than ABI 1.0's: refused. */
#include <skald/plugin.h>

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_ABI_MAJOR, SKALD_ABI_MINOR, 16, SKALD_BUILD_SIG,
	"small_desc_size", "1.0.0", "Too small a descriptor",
	SKALD_PROVIDES_GENERIC, NULL,
	NULL, NULL, NULL, NULL,
};
