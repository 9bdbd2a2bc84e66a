/*
 * Built against the frozen ABI 1.0 headers (tests/abi/v1.0) and nothing
 * else: every later broker of major 1 must keep loading and running it.
 * It uses a service of each group so that a moved member would show.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <skald/host.h>

static const struct skald_config_key schema[] = {
	{ "greeting", SKALD_CONFIG_STRING, 0, "hello", 1, 64, NULL,
	  "What to log." },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL },
};

struct compat {
	const struct skald_host *host;
	struct skald_timer *timer;
};

static void on_timer(void *arg)
{
	(void)arg;
}

static int compat_init(const struct skald_host *h,
		       const struct skald_config *config, void **state,
		       struct skald_error *err)
{
	struct compat *c;
	char buf[8];
	size_t len = 0;

	if (h->abi_major != 1 || h->size < SKALD_HOST_V1_SIZE ||
	    !SKALD_HOST_HAS(h, tier_list_add)) {
		snprintf(err->msg, sizeof(err->msg),
			 "host ABI %u.%u with a %u-byte table", h->abi_major,
			 h->abi_minor, h->size);
		return -EINVAL;
	}
	c = h->mem_alloc(h, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->host = h;
	if (h->kv_put(h, "compat", "1.0", 3) ||
	    h->kv_get(h, "compat", buf, sizeof(buf), &len) || len != 3 ||
	    memcmp(buf, "1.0", 3) != 0) {
		snprintf(err->msg, sizeof(err->msg), "kv round trip failed");
		h->mem_free(h, c);
		return -EIO;
	}
	c->timer = h->timer_add(h, 60000, 0, on_timer, c);
	h->metric_add(h->metric_counter(h, "abi_compat_inits_total",
					"Inits of the ABI 1.0 plugin", NULL,
					0),
		      1);
	h->log(h, SKALD_LOG_INFO, "%s from a plugin built for ABI 1.0 "
	       "(broker ABI %u.%u)",
	       h->config_string(config, "greeting"), h->abi_major,
	       h->abi_minor);
	*state = c;
	return 0;
}

static void compat_stop(void *state)
{
	struct compat *c = state;

	c->host->timer_del(c->host, c->timer);
	c->timer = NULL;
}

static void compat_fini(void *state)
{
	struct compat *c = state;

	c->host->mem_free(c->host, c);
}

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_PLUGIN_ABI,
	"abi_compat", "1.0.0", "Built against the frozen ABI 1.0 headers",
	SKALD_PROVIDES_GENERIC, schema,
	compat_init, NULL, compat_stop, compat_fini,
};
