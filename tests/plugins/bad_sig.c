/*
 * Claims 4-byte pointers and longs: what a 32-bit build would say.
 * Refused with the differing fields named.
 */
#include <skald/plugin.h>

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_ABI_MAJOR, SKALD_ABI_MINOR,
	(uint32_t)sizeof(struct skald_plugin_desc),
	(SKALD_BUILD_SIG & ~0xf0fu) | 0x404u,
	"bad_sig", "1.0.0", "Built for another layout",
	SKALD_PROVIDES_GENERIC, NULL,
	NULL, NULL, NULL, NULL,
};
