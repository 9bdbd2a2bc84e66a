/*
 * Broker and topic configuration.
 *
 * Every key is described once, in a table (name, type, default, bounds,
 * doc) in config.c; YAML files, SKALD_<KEY> environment overrides,
 * --set key=value, CreateTopics and AlterConfigs all go through that table.
 * Keys follow Kafka's names. Errors say where and what:
 *   "etc/skald.yaml:12: num.partitions: expected an integer in [1, 10000], got 'lots'"
 *
 * YAML shape (flat dotted keys, as in Kafka's server.properties):
 *   listeners: 127.0.0.1:9092
 *   log.dir: ./data
 *   num.partitions: 3
 *   log.retention.ms: 86400000
 *   topics:
 *     orders:
 *       partitions: 3
 *       configs:
 *         retention.ms: 3600000
 *         cleanup.policy: delete
 *   plugins:
 *     - path: build/plugins/tier-fs.so
 *       config: { root: /var/lib/skald-tier }
 *   storage:
 *     tier: tier-fs
 */
#ifndef SK_CONFIG_H
#define SK_CONFIG_H

#include <stdio.h>

#include "util.h"

enum sk_timestamp_type {
	SK_TS_CREATE_TIME = 0,
	SK_TS_LOG_APPEND_TIME = 1,
};

enum sk_cleanup_policy {
	SK_CLEANUP_DELETE = 1,
	SK_CLEANUP_COMPACT = 2, /* both bits: "compact,delete" */
};

/*
 * Effective settings of one topic. A topic starts from the broker's
 * defaults (the log.* keys); explicitly set keys are flagged in set_mask,
 * bit i for entry i of the topic-config table, which DescribeConfigs
 * reports as non-default.
 */
struct sk_topic_config {
	int64_t retention_ms;	       /* retention.ms; -1 = unlimited */
	int64_t retention_bytes;       /* retention.bytes; -1 = unlimited */
	int64_t segment_bytes;	       /* segment.bytes */
	int64_t segment_ms;	       /* segment.ms */
	int64_t max_message_bytes;     /* max.message.bytes */
	int64_t index_interval_bytes;  /* index.interval.bytes */
	int64_t flush_messages;	       /* flush.messages */
	int64_t flush_ms;	       /* flush.ms */
	int64_t min_insync_replicas;   /* min.insync.replicas */
	int timestamp_type;	       /* message.timestamp.type */
	int cleanup_policy;	       /* cleanup.policy, SK_CLEANUP_* bits */
	int64_t delete_retention_ms;   /* delete.retention.ms: tombstones */
	double min_cleanable_ratio;    /* min.cleanable.dirty.ratio, [0, 1] */
	int64_t min_compaction_lag_ms; /* min.compaction.lag.ms */
	int64_t max_compaction_lag_ms; /* max.compaction.lag.ms */
	bool remote_storage_enable;    /* remote.storage.enable: tiering */
	int64_t local_retention_ms; /* local.retention.ms; -2 = retention.ms */
	int64_t local_retention_bytes; /* local.retention.bytes; -2 = retention.bytes */
	uint64_t set_mask;	       /* explicitly set keys */
};

/* One key = value pair, owned strings. */
struct sk_config_kv {
	char *key;
	char *value;
};

/* The broker-wide `hooks:` section (Lua topic hooks, core/hook.h). */
struct sk_hook_settings {
	int64_t timeout_ms;	  /* timeout.ms: CPU budget per batch */
	int64_t memory_mb;	  /* memory.mb: heap of one hook state */
	int32_t workers;	  /* workers: hook threads */
	int32_t breaker_failures; /* breaker.failures: consecutive, to trip */
	int64_t breaker_reset_ms; /* breaker.reset.ms: open before a retry */
};

/* hooks[].on_error */
enum sk_hook_on_error {
	SK_HOOK_ON_ERROR_REJECT = 0,
	SK_HOOK_ON_ERROR_PASS,
	SK_HOOK_ON_ERROR_DROP,
	SK_HOOK_ON_ERROR_DEAD_LETTER,
};

/* One entry of a topic's `hooks:` list. */
struct sk_hook_decl {
	char *name;
	char *script;		 /* path, relative to the working directory */
	int on_error;		 /* enum sk_hook_on_error */
	char *dead_letter_topic; /* required for dead-letter, else NULL */
	char *options_json;	 /* `options`, converted to JSON ("{}") */
	char *where;		 /* "FILE:LINE" of the entry */
};

/* A topic declared in the YAML `topics:` section. */
struct sk_topic_decl {
	char *name;
	int32_t partitions;	      /* -1 = num.partitions */
	struct sk_config_kv *configs; /* topic-level keys as given */
	size_t n_configs;
	char *where; /* "FILE:LINE" of the declaration */
	/*
	 * A glob ("logs.*", fnmatch rules): applies its hooks and retention
	 * script to every matching topic, existing or created later, gives
	 * topics created later (auto-creation, CreateTopics) its partitions
	 * and configs unless the request says otherwise, and creates none.
	 * An exact name's entry beats any glob.
	 */
	bool glob;
	struct sk_hook_decl *hooks; /* hooks: the produce chain, in order */
	size_t n_hooks;
	char *retention_script;	      /* retention: {script: PATH}, or NULL */
	char *retention_where;	      /* "FILE:LINE" of that script */
	char *retention_options_json; /* retention: options, as JSON */
};

/* A deep copy of src into dst; and its release (dst zeroed). */
void sk_topic_decl_clone(struct sk_topic_decl *dst,
			 const struct sk_topic_decl *src);
void sk_topic_decl_free(struct sk_topic_decl *d);

/* One key of a plugin's `config:` mapping, as given (validated later). */
struct sk_plugin_setting {
	char *key;
	char *value;
	char *where; /* "FILE:LINE" of the key */
};

/*
 * An entry of the YAML `plugins:` list: {path: FILE, config: {...}}. The
 * config is checked against the plugin's own schema when it is loaded
 * (core/plugin.c), with these FILE:LINE marks.
 */
struct sk_plugin_decl {
	char *path;
	char *where; /* "FILE:LINE" of the entry */
	struct sk_plugin_setting *settings;
	size_t n_settings;
};

/* The broker's configuration; owned by struct sk_broker. */
struct sk_config {
	char *listeners;	    /* listeners: HOST:PORT to bind */
	char *advertised_listeners; /* advertised.listeners: HOST:PORT; "" = listeners */
	char *admin_listener; /* admin.listener: HTTP HOST:PORT; "" = none */
	char *log_dir;	      /* log.dir: data directory */
	int64_t log_retention_check_interval_ms; /* log.retention.check.interval.ms */
	int64_t log_flush_checkpoint_ms; /* log.flush.offset.checkpoint.interval.ms */
	int64_t log_scrub_interval_ms;	 /* log.scrub.interval.ms; 0 = off */
	int64_t log_scrub_bytes_per_sec; /* log.scrub.bytes.per.sec; 0 = off */
	int32_t node_id;		 /* node.id */
	int32_t num_partitions;		 /* num.partitions */
	bool auto_create_topics;	 /* auto.create.topics.enable */
	bool delete_topic_enable;	 /* delete.topic.enable */
	int64_t message_max_bytes; /* message.max.bytes (default max.message.bytes) */
	int64_t socket_request_max_bytes; /* socket.request.max.bytes */
	int64_t fetch_max_bytes; /* fetch.max.bytes: cap per response */
	int64_t connection_output_max_bytes; /* connection.output.max.bytes: backpressure */
	int64_t connections_max_idle_ms; /* connections.max.idle.ms */
	int32_t max_connections;	 /* max.connections */
	int32_t queued_max_requests; /* queued.max.requests: per connection */
	char *log_format;	     /* log.format: text | json */
	char *log_level; /* log.level: debug | info | warn | error */
	int32_t group_initial_rebalance_delay_ms; /* group.initial.rebalance.delay.ms */
	int32_t group_min_session_timeout_ms; /* group.min.session.timeout.ms */
	int32_t group_max_session_timeout_ms; /* group.max.session.timeout.ms */
	int32_t group_max_size; /* group.max.size: members per group */
	int32_t offsets_retention_minutes; /* offsets.retention.minutes */
	int64_t offsets_retention_check_interval_ms; /* offsets.retention.check.interval.ms */
	int32_t offset_metadata_max_bytes; /* offset.metadata.max.bytes */
	bool log_cleaner_enable;	/* log.cleaner.enable: run compaction */
	int64_t log_cleaner_backoff_ms; /* log.cleaner.backoff.ms */
	int64_t log_cleaner_dedupe_buffer_size; /* log.cleaner.dedupe.buffer.size */
	int64_t remote_task_interval_ms; /* remote.log.manager.task.interval.ms */
	int64_t remote_cache_bytes;	 /* remote.log.cache.bytes */
	int64_t remote_sweep_interval_ms; /* remote.log.orphan.sweep.interval.ms */
	int64_t remote_orphan_grace_ms;	       /* remote.log.orphan.grace.ms */
	struct sk_topic_config topic_defaults; /* from the log.* keys */
	struct sk_topic_decl *topics;	       /* the topics: section */
	size_t n_topics;
	struct sk_hook_settings hooks;	/* the hooks: section */
	struct sk_plugin_decl *plugins; /* the plugins: section, in order */
	size_t n_plugins;
	char *storage_tier;	  /* storage: {tier: NAME}; NULL: none */
	char *storage_tier_where; /* "FILE:LINE" of tier */
};

/* The first glob entry of topics: that matches topic, or NULL. */
const struct sk_topic_decl *sk_config_topic_glob(const struct sk_config *c,
						 const char *topic);

/* Fill c with the built-in defaults. */
void sk_config_init(struct sk_config *c);
void sk_config_free(struct sk_config *c);

/* Load a YAML file on top of the current values. */
int sk_config_load_file(struct sk_config *c, const char *path,
			struct sk_err *err);
/* Load YAML text; name is used in messages in place of a file name. */
int sk_config_load_string(struct sk_config *c, const char *name,
			  const char *yaml, size_t len, struct sk_err *err);
/*
 * Set one broker key from a string. origin names where the value came
 * from for messages ("--set", "SKALD_NUM_PARTITIONS").
 */
int sk_config_set(struct sk_config *c, const char *key, const char *value,
		  const char *origin, struct sk_err *err);
/* Apply SKALD_<KEY> variables (key upper-cased, '.' -> '_'). */
int sk_config_apply_env(struct sk_config *c, struct sk_err *err);

/* Print every broker and topic key with its default and doc (--help). */
void sk_config_print_keys(FILE *out);

/* A topic config holding the broker's defaults, nothing set. */
void sk_topic_config_defaults(const struct sk_config *c,
			      struct sk_topic_config *out);
/* Set a topic-level key, validating it (INVALID_CONFIG material). */
int sk_topic_config_set(struct sk_topic_config *tc, const char *key,
			const char *value, struct sk_err *err);
/* Reset one key to the broker default; -ENOENT for an unknown key. */
int sk_topic_config_unset(struct sk_topic_config *tc, const struct sk_config *c,
			  const char *key);

/* Iteration over the topic-level keys, for DescribeConfigs. */
size_t sk_topic_config_count(void);
const char *sk_topic_config_name(size_t i);
const char *sk_topic_config_doc(size_t i);
/* Index of key, or -1 if it is not a topic-level key. */
int sk_topic_config_find(const char *key);
/* The value of entry i as Kafka prints it ("604800000", "delete"). */
void sk_topic_config_value(const struct sk_topic_config *tc, size_t i,
			   char *buf, size_t cap);
static inline bool sk_topic_config_is_set(const struct sk_topic_config *tc,
					  size_t i)
{
	return (tc->set_mask >> i) & 1;
}

/* The broker key whose value is entry i's default ("log.retention.ms"). */
const char *sk_topic_config_broker_key(size_t i);

/*
 * Every broker key, topic defaults included (start with *i = 0): its name
 * and current value as text, either a string key's own storage or buf.
 * An empty string is NULL, as Kafka shows an unset key.
 */
size_t sk_config_broker_count(void);
bool sk_config_broker_next(const struct sk_config *c, size_t *i,
			   const char **name, const char **value, char *buf,
			   size_t cap);

/*
 * Kafka's topic name rules: 1..249 characters from [a-zA-Z0-9._-], and not
 * "." or "..". On false, err says which rule the name breaks.
 */
bool sk_topic_name_valid(const char *name, struct sk_err *err);

#endif
