#include "broker.h"

#include "admin_http.h"
#include "compact.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "log_remote.h"
#include "plugin.h"
#include "retention.h"
#include "say.h"
#include "scrub.h"
#include "skald/version.h"

#include <unistd.h>

/*
 * After the partitions' clean close (log.h): make the index files and
 * recovery checkpoints it wrote durable with one syncfs of the data
 * directory's file system, rather than an fsync per file. A failure
 * only means the next start may scan more; it is logged.
 */
static void sync_log_dir(const struct sk_broker *b)
{
	int fd;

	if (!b->cfg.log_dir)
		return;
	fd = open(b->cfg.log_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (syncfs(fd) < 0)
		sk_warn("cannot sync the file system of %s: %s", b->cfg.log_dir,
			strerror(errno));
	close(fd);
}

/* How long a graceful stop waits for in-flight requests. */
#define SK_STOP_DRAIN_MS 10000

/* Split HOST:PORT (validated by the config) into the advertised pair. */
static void set_advertised(struct sk_broker *b)
{
	const char *hp = b->cfg.advertised_listeners[0]
				 ? b->cfg.advertised_listeners
				 : b->cfg.listeners;
	const char *colon = strrchr(hp, ':');
	const char *host = hp;
	size_t hlen = (size_t)(colon - hp);

	if (hp[0] == '[') { /* [v6]:port: clients want the bare address */
		host = hp + 1;
		hlen = (size_t)(colon - hp - 2);
	}
	snprintf(b->adv_host, sizeof(b->adv_host), "%.*s", (int)hlen, host);
	b->adv_port = atoi(colon + 1);
	/* A wildcard bind address is no place for a client to connect. */
	if (strcmp(b->adv_host, "0.0.0.0") == 0 ||
	    strcmp(b->adv_host, "::") == 0 || b->adv_host[0] == '\0') {
		snprintf(b->adv_host, sizeof(b->adv_host), "localhost");
		sk_warn("listeners binds a wildcard address; advertising "
			"'localhost': set advertised.listeners for remote "
			"clients");
	}
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct sk_broker *b = w->data;

	(void)loop;
	(void)revents;
	sk_info("received %s, shutting down", strsignal(w->signum));
	sk_broker_stop(b);
}

static void on_stop_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sk_broker *b = sk_container_of(w, struct sk_broker, stop_timer);
	size_t pending = sk_server_pending(&b->server);
	size_t busy;

	(void)revents;
	/* Requests first (they may read from the tier), then plugins. */
	if (pending == 0)
		sk_plugins_stop(b->plugins);
	busy = sk_plugins_busy(b->plugins);
	if ((pending == 0 && busy == 0) || sk_mono_ms() >= b->stop_deadline) {
		if (pending)
			sk_warn("shutdown: dropping %zu unanswered requests",
				pending);
		if (busy)
			sk_warn("shutdown: %zu plugin operations still in "
				"flight",
				busy);
		ev_timer_stop(loop, w);
		ev_break(loop, EVBREAK_ALL);
	}
}

void sk_broker_stop(struct sk_broker *b)
{
	if (b->stopping)
		return;
	b->stopping = true;
	/* First: nothing reads the registry once the broker winds down. */
	sk_admin_close(b->admin);
	b->admin = NULL;
	sk_server_quiesce(&b->server);
	sk_remote_stop(b->remote); /* no new copies to the tier */
	/* Long-poll fetches answer now with what they have. */
	sk_fetch_wake_all(b);
	/* Held JoinGroup/SyncGroup: NOT_COORDINATOR, so clients retry. */
	sk_groups_stop(b->groups);
	b->stop_deadline = sk_mono_ms() + SK_STOP_DRAIN_MS;
	ev_timer_init(&b->stop_timer, on_stop_timer, 0.0, 0.02);
	ev_timer_start(b->loop, &b->stop_timer);
}

/* A plugin's start() failed: the broker cannot run as configured. */
static void on_plugin_start_failed(void *arg, const char *msg)
{
	struct sk_broker *b = arg;

	sk_error("cannot start: %s", msg);
	b->exit_code = 1;
	sk_broker_stop(b);
}

/*
 * The broker's own series, so that /metrics always says what runs:
 * skald_build_info{version} 1 and the start time (uptime is now minus
 * it; nothing needs to update it).
 */
static void broker_metrics(struct sk_broker *b)
{
	const char *version[] = { "version", SKALD_VERSION };

	sk_metric_set(sk_metrics_get(b->metrics, SK_METRIC_GAUGE,
				     "skald_build_info",
				     "Always 1, labelled with the version",
				     version, 1, NULL, 0, NULL),
		      1);
	sk_metric_set(sk_metrics_get(b->metrics, SK_METRIC_GAUGE,
				     "skald_start_time_seconds",
				     "When the broker started, in seconds "
				     "since the Unix epoch",
				     NULL, 0, NULL, 0, NULL),
		      (double)sk_now_ms() / 1000.0);
}

/* Load and init the plugins, and find storage.tier among them. */
static int plugins_init(struct sk_broker *b, struct sk_err *err)
{
	char tiers[300];
	int rc;

	rc = sk_plugins_init(b->plugins, b->loop, b->meta, b->metrics, err);
	if (rc || !b->cfg.storage_tier)
		return rc;
	b->tier = sk_plugins_tier(b->plugins, b->cfg.storage_tier, tiers,
				  sizeof(tiers));
	if (!b->tier)
		return sk_err_set(err,
				  "%s: storage.tier: expected the name of "
				  "a loaded plugin that provides a storage "
				  "tier (%s), found '%s'",
				  b->cfg.storage_tier_where,
				  tiers[0] ? tiers : "none is loaded",
				  b->cfg.storage_tier);
	return 0;
}

int sk_broker_init(struct sk_broker *b, struct ev_loop *loop,
		   struct sk_err *err)
{
	int rc;

	b->loop = loop;
	sk_topics_init(&b->topics);
	sk_list_init(&b->fetches);
	sk_list_init(&b->ready_fetches);
	sk_list_init(&b->offset_waits);
	b->server.b = b;
	b->server.fd = -1;
	sk_list_init(&b->server.conns);
	set_advertised(b);

	sk_flusher_init(&b->flusher, b);
	b->metrics = sk_metrics_new();
	broker_metrics(b);
	/* Before anything is created: a refused plugin changes nothing. */
	rc = sk_plugins_load(&b->plugins, b->cfg.plugins, b->cfg.n_plugins,
			     err);
	if (rc)
		goto fail;
	rc = sk_mkdirs(b->cfg.log_dir, err);
	if (rc)
		goto fail;
	rc = sk_meta_open(&b->meta, b->cfg.log_dir, err);
	if (rc)
		goto fail;
	sk_meta_start(b->meta, loop);
	rc = plugins_init(b, err);
	if (rc)
		goto fail;
	rc = sk_topics_load(b, err);
	if (rc)
		goto fail;
	if (b->tier) {
		rc = sk_remote_new(&b->remote, b, b->tier, err);
		if (rc)
			goto fail;
	} else {
		sk_remote_check_untiered(b);
	}
	rc = sk_hooks_init(&b->hooks, b, &b->cfg, err);
	if (rc)
		goto fail;
	rc = sk_groups_open(&b->groups, b, err);
	if (rc)
		goto fail;
	/*
	 * Before the listeners: a client can connect as soon as one listens,
	 * and a SIGTERM sent then must stop the broker cleanly, not kill it.
	 */
	ev_signal_init(&b->sig_term, on_signal, SIGTERM);
	ev_signal_init(&b->sig_int, on_signal, SIGINT);
	b->sig_term.data = b->sig_int.data = b;
	ev_signal_start(loop, &b->sig_term);
	ev_signal_start(loop, &b->sig_int);
	ev_signal_init(&b->sig_hup, sk_hooks_on_sighup, SIGHUP);
	b->sig_hup.data = b;
	ev_signal_start(loop, &b->sig_hup);
	signal(SIGPIPE, SIG_IGN);
	rc = sk_server_open(&b->server, b, b->cfg.listeners, err);
	if (rc)
		goto fail;
	rc = sk_admin_open(&b->admin, b, b->cfg.admin_listener, err);
	if (rc)
		goto fail;

	sk_server_start(&b->server);
	sk_retention_start(b);
	sk_plugins_start_soon(b->plugins, on_plugin_start_failed, b);
	b->cleaner = sk_cleaner_new(b);
	b->scrub = sk_scrub_new(b);
	sk_info("skald %s listening on %s (advertised as %s:%d), data in %s, "
		"cluster id %s, %zu topics",
		SKALD_VERSION, b->cfg.listeners, b->adv_host, b->adv_port,
		b->cfg.log_dir, sk_meta_cluster_id(b->meta),
		b->topics.map.count);
	return 0;
fail:
	sk_broker_fini(b);
	return rc;
}

void sk_broker_fini(struct sk_broker *b)
{
	/* First, and before the registry it serves is freed. */
	sk_admin_close(b->admin);
	b->admin = NULL;
	if (b->loop) {
		ev_signal_stop(b->loop, &b->sig_term);
		ev_signal_stop(b->loop, &b->sig_int);
		ev_signal_stop(b->loop, &b->sig_hup);
		ev_timer_stop(b->loop, &b->fetch_timer);
	}
	sk_retention_stop(b);
	/* Topic changes in flight settle (or are undone) on live topics. */
	sk_meta_flush(b->meta);
	/* Before the topics: a swap under way completes on them. */
	sk_cleaner_free(b->cleaner);
	b->cleaner = NULL;
	sk_scrub_free(b->scrub);
	b->scrub = NULL;
	/* Closing the connections cancels every waiting request. */
	sk_server_close(&b->server);
	/* Hook jobs in flight append when they finish: before the topics. */
	if (b->hooks.b)
		sk_hooks_fini(&b->hooks);
	/* Plugin work in flight may call back into topics: finish it. */
	sk_plugins_stop(b->plugins);
	sk_plugins_drain(b->plugins, SK_STOP_DRAIN_MS);
	/* Its state points into the topics and uses the tier. */
	sk_remote_free(b->remote);
	b->remote = NULL;
	/* After the connections: queued offset commits are written first. */
	sk_groups_free(b->groups);
	b->groups = NULL;
	sk_flusher_fini(&b->flusher);
	sk_topics_fini(&b->topics);
	sync_log_dir(b);
	/* After the topics (no tier in use), before meta (kv in fini). */
	sk_plugins_free(b->plugins, SK_STOP_DRAIN_MS);
	b->plugins = NULL;
	b->tier = NULL;
	sk_meta_close(b->meta);
	b->meta = NULL;
	sk_buf_free(&b->scratch);
	sk_metrics_free(b->metrics);
	b->metrics = NULL;
}
