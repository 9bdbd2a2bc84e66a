/*
 * Exercises the lifecycle and every host service, appending one line per
 * event to the file named by its `trace` key, so that a test can check
 * the order: init, start, post, run (on a pool thread), done, timer,
 * ready, stop, fini.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <skald/host.h>

static const struct skald_config_key schema[] = {
	{ "trace", SKALD_CONFIG_STRING, SKALD_CONFIG_REQUIRED, NULL, 1, 4096,
	  NULL, "File to append events to." },
	{ "level", SKALD_CONFIG_INT, 0, "5", 1, 10, NULL, "Any number." },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL },
};

struct lc {
	const struct skald_host *host;
	char trace[4096];
	pthread_t loop;
	struct skald_metric *events_start, *ready;
	struct skald_timer *timer;
	int ran_off_loop;
};

static void trace(struct lc *lc, const char *fmt, ...) SKALD_PRINTF(2, 3);

static void trace(struct lc *lc, const char *fmt, ...)
{
	FILE *f = fopen(lc->trace, "a");
	va_list ap;

	if (!f)
		return;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}

static void on_timer(void *arg)
{
	struct lc *lc = arg;
	const struct skald_host *h = lc->host;

	trace(lc, "timer");
	h->timer_del(h, lc->timer); /* allowed inside the callback */
	lc->timer = NULL;
	h->metric_set(lc->ready, 1);
	trace(lc, "ready");
	h->log(h, SKALD_LOG_INFO, "lifecycle is ready");
}

static void job_run(void *arg)
{
	struct lc *lc = arg;

	lc->ran_off_loop = !pthread_equal(pthread_self(), lc->loop);
	trace(lc, "run off_loop=%d", lc->ran_off_loop);
}

static void job_done(void *arg)
{
	struct lc *lc = arg;
	const struct skald_host *h = lc->host;

	trace(lc, "done on_loop=%d",
	      pthread_equal(pthread_self(), lc->loop) ? 1 : 0);
	lc->timer = h->timer_add(h, 5, 0, on_timer, lc);
}

static void on_post(void *arg)
{
	struct lc *lc = arg;
	const struct skald_host *h = lc->host;

	trace(lc, "post on_loop=%d",
	      pthread_equal(pthread_self(), lc->loop) ? 1 : 0);
	if (h->submit(h, job_run, job_done, lc))
		trace(lc, "submit failed");
}

static int lc_init(const struct skald_host *h,
		   const struct skald_config *config, void **state,
		   struct skald_error *err)
{
	struct skald_label kind = { "kind", "start" };
	struct lc *lc;
	char buf[32];
	size_t len = 0;
	long boots = 0;

	if (h->abi_major != SKALD_ABI_MAJOR || !SKALD_HOST_HAS(h, tier_list_add)) {
		snprintf(err->msg, sizeof(err->msg), "unexpected host table");
		return -EINVAL;
	}
	lc = h->mem_alloc(h, sizeof(*lc));
	if (!lc)
		return -ENOMEM;
	memset(lc, 0, sizeof(*lc));
	lc->host = h;
	lc->loop = pthread_self();
	snprintf(lc->trace, sizeof(lc->trace), "%s",
		 h->config_string(config, "trace"));
	lc->events_start = h->metric_counter(h, "lifecycle_events_total",
					     "Lifecycle events", &kind, 1);
	lc->ready = h->metric_gauge(h, "lifecycle_ready", "1 when ready",
				    NULL, 0);
	if (h->kv_get(h, "boots", buf, sizeof(buf) - 1, &len) == 0) {
		buf[len] = '\0';
		boots = strtol(buf, NULL, 10);
	}
	snprintf(buf, sizeof(buf), "%ld", boots + 1);
	h->kv_put(h, "boots", buf, strlen(buf));
	trace(lc, "init level=%lld boots=%ld name=%s",
	      (long long)h->config_int(config, "level"), boots + 1,
	      h->plugin_name);
	*state = lc;
	return 0;
}

static int lc_start(void *state, struct skald_error *err)
{
	struct lc *lc = state;
	const struct skald_host *h = lc->host;

	(void)err;
	trace(lc, "start");
	h->metric_add(lc->events_start, 1);
	return h->post(h, on_post, lc);
}

static void lc_stop(void *state)
{
	struct lc *lc = state;
	const struct skald_host *h = lc->host;

	trace(lc, "stop timer_add=%s",
	      h->timer_add(h, 1, 0, on_timer, lc) ? "set" : "null");
	if (lc->timer)
		h->timer_del(h, lc->timer);
	lc->timer = NULL;
}

static void lc_fini(void *state)
{
	struct lc *lc = state;
	const struct skald_host *h = lc->host;

	trace(lc, "fini");
	h->mem_free(h, lc);
}

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_PLUGIN_ABI,
	"lifecycle", "1.0.0", "Traces its lifecycle and host services",
	SKALD_PROVIDES_GENERIC, schema,
	lc_init, lc_start, lc_stop, lc_fini,
};
