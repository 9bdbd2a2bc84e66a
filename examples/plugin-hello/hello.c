/*
 * hello: the example Skald plugin of docs/plugins.md, built out of tree
 * with nothing but the installed headers:
 *
 *	cc -std=c11 -fPIC -shared -fvisibility=hidden \
 *		$(pkg-config --cflags skald-plugin) -o hello.so hello.c
 *
 * It logs a greeting when the broker starts, counts timer ticks in a
 * metric, remembers how many times it started in the key/value store,
 * and says goodbye when the broker stops.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <skald/host.h>

/* The keys `config:` may set, checked by the broker before init. */
static const struct skald_config_key hello_schema[] = {
	{ "greeting", SKALD_CONFIG_STRING, 0, "hello", 1, 100, NULL,
	  "What to say when the broker starts." },
	{ "tick_ms", SKALD_CONFIG_INT, 0, "0", 0, 3600000, NULL,
	  "Count a tick this often (ms); 0: never." },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL },
};

/* Everything the plugin owns, allocated in init, freed in fini. */
struct hello {
	const struct skald_host *host;
	const char *greeting; /* the broker's copy, valid until fini */
	int64_t tick_ms;
	long starts;
	struct skald_timer *timer;
	struct skald_metric *ticks;
};

/* On the loop thread, every tick_ms. */
static void hello_tick(void *arg)
{
	struct hello *h = arg;

	h->host->metric_add(h->ticks, 1);
}

static int hello_init(const struct skald_host *host,
		      const struct skald_config *config, void **state,
		      struct skald_error *err)
{
	struct hello *h = host->mem_alloc(host, sizeof(*h));
	char buf[24];
	size_t len = 0;

	if (!h) {
		snprintf(err->msg, sizeof(err->msg), "out of memory");
		return -ENOMEM;
	}
	h->host = host;
	h->greeting = host->config_string(config, "greeting");
	h->tick_ms = host->config_int(config, "tick_ms");
	h->timer = NULL;
	h->ticks = host->metric_counter(host, "hello_ticks_total",
					"Timer ticks counted by hello", NULL,
					0);
	h->starts = 0;
	if (host->kv_get(host, "starts", buf, sizeof(buf) - 1, &len) == 0) {
		buf[len] = '\0';
		h->starts = strtol(buf, NULL, 10);
	}
	*state = h;
	return 0;
}

static int hello_start(void *state, struct skald_error *err)
{
	struct hello *h = state;
	const struct skald_host *host = h->host;
	char buf[24];

	(void)err;
	h->starts++;
	snprintf(buf, sizeof(buf), "%ld", h->starts);
	host->kv_put(host, "starts", buf, strlen(buf));
	if (h->tick_ms > 0)
		h->timer = host->timer_add(host, (uint64_t)h->tick_ms,
					   (uint64_t)h->tick_ms, hello_tick, h);
	host->log(host, SKALD_LOG_INFO,
		  "%s, world, from an out-of-tree plugin (start number %ld, "
		  "broker %s, ABI %u.%u)",
		  h->greeting, h->starts, host->broker_version,
		  host->abi_major, host->abi_minor);
	return 0;
}

static void hello_stop(void *state)
{
	struct hello *h = state;

	if (h->timer)
		h->host->timer_del(h->host, h->timer);
	h->timer = NULL;
}

static void hello_fini(void *state)
{
	struct hello *h = state;
	const struct skald_host *host = h->host;

	host->log(host, SKALD_LOG_INFO, "goodbye");
	host->mem_free(host, h);
}

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_PLUGIN_ABI,
	"hello", "1.0.0", "Says hello: the example plugin",
	SKALD_PROVIDES_GENERIC, hello_schema,
	hello_init, hello_start, hello_stop, hello_fini,
};
