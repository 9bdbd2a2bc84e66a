/*
 * A plugin with a schema of every type and constraint; tests give it bad
 * values. Its init logs what it got.
 */
#include <skald/host.h>

static const char *const modes[] = { "fast", "safe", NULL };

static const struct skald_config_key schema[] = {
	{ "port", SKALD_CONFIG_INT, 0, "9000", 1, 65535, NULL,
	  "A TCP port." },
	{ "endpoint", SKALD_CONFIG_STRING, SKALD_CONFIG_REQUIRED, NULL, 1,
	  100, NULL, "Where to connect." },
	{ "mode", SKALD_CONFIG_STRING, 0, "safe", 1, 10, modes,
	  "How to run." },
	{ "verbose", SKALD_CONFIG_BOOL, 0, "false", 0, 0, NULL,
	  "Log more." },
	{ "secret_key", SKALD_CONFIG_STRING, SKALD_CONFIG_SECRET, NULL, 8, 64,
	  NULL, "A secret, never printed." },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL },
};

static int bad_config_init(const struct skald_host *host,
			   const struct skald_config *config, void **state,
			   struct skald_error *err)
{
	(void)state;
	(void)err;
	host->log(host, SKALD_LOG_INFO,
		  "port=%lld endpoint=%s mode=%s verbose=%d secret given=%d",
		  (long long)host->config_int(config, "port"),
		  host->config_string(config, "endpoint"),
		  host->config_string(config, "mode"),
		  host->config_bool(config, "verbose"),
		  host->config_given(config, "secret_key"));
	return 0;
}

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_PLUGIN_ABI,
	"bad_config", "1.0.0", "A schema of every kind of key",
	SKALD_PROVIDES_GENERIC, schema,
	bad_config_init, NULL, NULL, NULL,
};
