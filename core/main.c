/*
 * skald: command line, configuration layering and the event loop.
 *
 * Precedence, lowest first: built-in defaults, the YAML file, SKALD_<KEY>
 * environment variables, --set key=value, then the --data-dir and
 * --listen shortcuts.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "broker.h"
#include "plugin.h"
#include "say.h"
#include "skald/version.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: skald [options]\n"
		"       skald hook-test SCRIPT [--options JSON] < records.jsonl\n"
		"\n"
		"A Kafka-compatible event-streaming broker. With no options it "
		"serves on\n127.0.0.1:9092 with data in ./data.\n"
		"\n"
		"options:\n"
		"  -c, --config FILE     load configuration from a YAML file\n"
		"  -d, --data-dir DIR    data directory (log.dir)\n"
		"  -l, --listen H:P      address to listen on (listeners)\n"
		"  -s, --set KEY=VALUE   set a configuration key (repeatable)\n"
		"      --check-config    validate the configuration and exit\n"
		"  -V, --version         print the version and exit\n"
		"  -h, --help            print this help and the configuration "
		"keys\n"
		"\n"
		"Every key can also be set with an environment variable "
		"SKALD_<KEY>,\nupper-cased with dots as underscores "
		"(SKALD_NUM_PARTITIONS=3).\n\n");
}

/*
 * Each partition keeps a few files open and each client a socket: take
 * the whole open-file allowance the administrator granted, not the
 * small default soft limit.
 */
static void raise_nofile_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			sk_warn("cannot raise the open-file limit to %llu",
				(unsigned long long)rl.rlim_max);
	}
}

/* Apply one --set argument. */
static int apply_set(struct sk_config *cfg, const char *arg, struct sk_err *err)
{
	const char *eq = strchr(arg, '=');
	char *key;
	int rc;

	if (!eq || eq == arg)
		return sk_err_set(err, "--set: expected KEY=VALUE, got '%s'",
				  arg);
	key = sk_xstrndup(arg, (size_t)(eq - arg));
	rc = sk_config_set(cfg, key, eq + 1, "--set", err);
	free(key);
	return rc;
}

int main(int argc, char **argv)
{
	enum { OPT_CHECK = 1000 };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "data-dir", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "set", required_argument, NULL, 's' },
		{ "check-config", no_argument, NULL, OPT_CHECK },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_file = NULL, *data_dir = NULL, *listen = NULL;
	const char **sets = sk_xcalloc((size_t)argc, sizeof(*sets));
	size_t n_sets = 0;
	bool check_only = false;
	struct sk_broker b = { 0 };
	struct sk_err err = { "" };
	enum sk_say_level level;
	struct ev_loop *loop;
	int opt, rc = 1;

	if (argc > 1 && strcmp(argv[1], "hook-test") == 0) {
		free(sets);
		return sk_hook_cli_main(argc - 1, argv + 1);
	}
	while ((opt = getopt_long(argc, argv, "c:d:l:s:Vh", opts, NULL)) !=
	       -1) {
		switch (opt) {
		case 'c':
			config_file = optarg;
			break;
		case 'd':
			data_dir = optarg;
			break;
		case 'l':
			listen = optarg;
			break;
		case 's':
			sets[n_sets++] = optarg;
			break;
		case OPT_CHECK:
			check_only = true;
			break;
		case 'V':
			printf("skald %s\n", SKALD_VERSION);
			free(sets);
			return 0;
		case 'h':
			usage(stdout);
			sk_config_print_keys(stdout);
			free(sets);
			return 0;
		default:
			usage(stderr);
			free(sets);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "skald: unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		free(sets);
		return 2;
	}

	sk_config_init(&b.cfg);
	if (config_file && sk_config_load_file(&b.cfg, config_file, &err))
		goto config_error;
	if (sk_config_apply_env(&b.cfg, &err))
		goto config_error;
	for (size_t i = 0; i < n_sets; i++)
		if (apply_set(&b.cfg, sets[i], &err))
			goto config_error;
	if (data_dir &&
	    sk_config_set(&b.cfg, "log.dir", data_dir, "--data-dir", &err))
		goto config_error;
	if (listen &&
	    sk_config_set(&b.cfg, "listeners", listen, "--listen", &err))
		goto config_error;
	if (check_only) {
		/* Plugins are checked as at start, but never initialised. */
		struct sk_plugins *ps;

		if (sk_plugins_load(&ps, b.cfg.plugins, b.cfg.n_plugins, &err))
			goto config_error;
		sk_plugins_free(ps, 0);
		printf("%s: configuration OK\n",
		       config_file ? config_file : "built-in defaults");
		rc = 0;
		goto out;
	}

	if (!sk_say_level_parse(b.cfg.log_level, &level))
		level = SK_SAY_INFO;
	sk_say_setup(level, strcmp(b.cfg.log_format, "json") == 0
				    ? SK_SAY_JSON
				    : SK_SAY_TEXT);

	raise_nofile_limit();
	loop = ev_default_loop(EVFLAG_AUTO);
	b.config_path = config_file;
	if (sk_broker_init(&b, loop, &err)) {
		sk_error("cannot start: %s", err.msg);
		goto out;
	}
	ev_run(loop, 0);
	sk_broker_fini(&b);
	sk_info("stopped");
	rc = b.exit_code;
	goto out;

config_error:
	fprintf(stderr, "skald: %s\n", err.msg);
out:
	sk_config_free(&b.cfg);
	free(sets);
	return rc;
}
