/*
 * Configuration tables and the YAML loader.
 *
 * Every key is one row of a table. Defaults, YAML, --set, SKALD_* variables,
 * CreateTopics/AlterConfigs validation and --help all walk the tables, so a
 * new key is one new row and nothing else.
 *
 * broker_keys[] describes struct sk_config; topic_keys[] describes struct
 * sk_topic_config and names, per row, the broker key holding its default.
 * Such a broker key either has a row of its own (message.max.bytes, which
 * is also a broker setting) or, like log.retention.ms, is the topic row
 * itself applied to sk_config.topic_defaults under the broker's name. That
 * way a topic key's type, bounds and doc are written once.
 *
 * Loading works on a copy of the configuration that replaces the original
 * only when the whole document was accepted: a rejected file changes
 * nothing.
 */
#include "config.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <yaml.h>

#include "buf.h"

enum cfg_type {
	CFG_BOOL,   /* bool: "true" or "false", nothing else */
	CFG_INT,    /* int32_t or int64_t (by size): decimal in [min, max] */
	CFG_STRING, /* char *, owned: length in [min, max] */
	CFG_ENUM,   /* int: the value of one of choices[] */
	CFG_RATIO,  /* double in [0, 1], written as Kafka writes it: "0.5" */
};

/* A value allowed for a CFG_ENUM (stored as value) or CFG_STRING key. */
struct cfg_choice {
	const char *name;
	int value;
};

/* One key of a table. */
struct cfg_key {
	const char *name;
	enum cfg_type type;
	size_t offset;	  /* of the member in the table's struct */
	size_t size;	  /* of the member (CFG_INT: 4 or 8) */
	const char *def;  /* default, parsed like any other value */
	int64_t min, max; /* CFG_INT: bounds; CFG_STRING: length bounds */
	/* CFG_ENUM, CFG_STRING: the allowed values, ended by a NULL name */
	const struct cfg_choice *choices;
	/*
	 * CFG_STRING: validate in and return 0 with *out the allocated
	 * normalised value, or -EINVAL with why telling what is wrong.
	 */
	int (*check)(const char *in, char **out, struct sk_err *why);
	const char *broker_key; /* topic keys: the broker key of the default */
	const char *doc;
};

#define FIELD(type, m) \
	.offset = offsetof(type, m), .size = sizeof(((type *)0)->m)
#define BROKER(m)     FIELD(struct sk_config, m)
#define TOPIC(m)      FIELD(struct sk_topic_config, m)
#define INT64_MAX_STR "9223372036854775807"

static int check_listener(const char *in, char **out, struct sk_err *why);
static int check_advertised(const char *in, char **out, struct sk_err *why);
static int check_admin_listener(const char *in, char **out, struct sk_err *why);

/* clang-format off */
static const struct cfg_choice timestamp_choices[] = {
	{ "CreateTime", SK_TS_CREATE_TIME },
	{ "LogAppendTime", SK_TS_LOG_APPEND_TIME },
	{ NULL, 0 },
};
/* clang-format on */

/* A value prints as its first name: Kafka spells both "compact,delete". */
/* clang-format off */
static const struct cfg_choice cleanup_choices[] = {
	{ "delete", SK_CLEANUP_DELETE },
	{ "compact", SK_CLEANUP_COMPACT },
	{ "compact,delete", SK_CLEANUP_COMPACT | SK_CLEANUP_DELETE },
	{ "delete,compact", SK_CLEANUP_COMPACT | SK_CLEANUP_DELETE },
	{ NULL, 0 },
};
/* clang-format on */

/* clang-format off */
static const struct cfg_choice log_format_choices[] = {
	{ "text", 0 },
	{ "json", 0 },
	{ NULL, 0 },
};
/* clang-format on */

/* clang-format off */
static const struct cfg_choice log_level_choices[] = {
	{ "debug", 0 },
	{ "info", 0 },
	{ "warn", 0 },
	{ "error", 0 },
	{ NULL, 0 },
};
/* clang-format on */

/* Topic-level keys, Kafka's names and defaults. */
/* clang-format off */
static const struct cfg_key topic_keys[] = {
	{ .name = "retention.ms", .type = CFG_INT, TOPIC(retention_ms),
	  .def = "604800000", .min = -1, .max = INT64_MAX,
	  .broker_key = "log.retention.ms",
	  .doc = "Age in ms after which closed segments are deleted; "
		 "-1 keeps them forever." },
	{ .name = "retention.bytes", .type = CFG_INT, TOPIC(retention_bytes),
	  .def = "-1", .min = -1, .max = INT64_MAX,
	  .broker_key = "log.retention.bytes",
	  .doc = "Size of a partition above which the oldest segments are "
		 "deleted; -1 = unlimited." },
	{ .name = "segment.bytes", .type = CFG_INT, TOPIC(segment_bytes),
	  .def = "1073741824", .min = 1024, .max = INT32_MAX,
	  .broker_key = "log.segment.bytes",
	  .doc = "Size at which a new segment file is started." },
	{ .name = "segment.ms", .type = CFG_INT, TOPIC(segment_ms),
	  .def = "604800000", .min = 1, .max = INT64_MAX,
	  .broker_key = "log.roll.ms",
	  .doc = "Age in ms at which a new segment file is started, so that "
		 "retention can delete old data." },
	{ .name = "max.message.bytes", .type = CFG_INT,
	  TOPIC(max_message_bytes), .def = "1048588", .min = 0,
	  .max = INT32_MAX, .broker_key = "message.max.bytes",
	  .doc = "Largest record batch accepted by Produce." },
	{ .name = "index.interval.bytes", .type = CFG_INT,
	  TOPIC(index_interval_bytes), .def = "4096", .min = 0,
	  .max = INT32_MAX, .broker_key = "log.index.interval.bytes",
	  .doc = "Bytes of log between two offset index entries." },
	{ .name = "flush.messages", .type = CFG_INT, TOPIC(flush_messages),
	  .def = INT64_MAX_STR, .min = 1, .max = INT64_MAX,
	  .broker_key = "log.flush.interval.messages",
	  .doc = "Records appended between two fsyncs of the log." },
	{ .name = "flush.ms", .type = CFG_INT, TOPIC(flush_ms),
	  .def = INT64_MAX_STR, .min = 0, .max = INT64_MAX,
	  .broker_key = "log.flush.interval.ms",
	  .doc = "Time in ms between two fsyncs of the log." },
	{ .name = "min.insync.replicas", .type = CFG_INT,
	  TOPIC(min_insync_replicas), .def = "1", .min = 1, .max = INT32_MAX,
	  .broker_key = "min.insync.replicas",
	  .doc = "Replicas that must have a write for acks=all to succeed." },
	{ .name = "message.timestamp.type", .type = CFG_ENUM,
	  TOPIC(timestamp_type), .def = "CreateTime",
	  .choices = timestamp_choices,
	  .broker_key = "log.message.timestamp.type",
	  .doc = "Record timestamps as sent by the producer (CreateTime) or "
		 "set by the broker on append (LogAppendTime)." },
	{ .name = "cleanup.policy", .type = CFG_ENUM, TOPIC(cleanup_policy),
	  .def = "delete", .choices = cleanup_choices,
	  .broker_key = "log.cleanup.policy",
	  .doc = "What retention does with old segments: delete them, compact "
		 "them to the last record per key, or both." },
	{ .name = "delete.retention.ms", .type = CFG_INT,
	  TOPIC(delete_retention_ms), .def = "86400000", .min = 0,
	  .max = INT64_MAX, .broker_key = "log.cleaner.delete.retention.ms",
	  .doc = "How long a tombstone (a record with a null value) stays in "
		 "a compacted topic after the cleaner first saw it, so that "
		 "consumers reading behind still see the delete." },
	{ .name = "min.cleanable.dirty.ratio", .type = CFG_RATIO,
	  TOPIC(min_cleanable_ratio), .def = "0.5",
	  .broker_key = "log.cleaner.min.cleanable.ratio",
	  .doc = "Share of a compacted log not yet cleaned above which the "
		 "cleaner cleans it." },
	{ .name = "min.compaction.lag.ms", .type = CFG_INT,
	  TOPIC(min_compaction_lag_ms), .def = "0", .min = 0,
	  .max = INT64_MAX, .broker_key = "log.cleaner.min.compaction.lag.ms",
	  .doc = "Least age in ms of a record before compaction may remove "
		 "it." },
	{ .name = "max.compaction.lag.ms", .type = CFG_INT,
	  TOPIC(max_compaction_lag_ms), .def = INT64_MAX_STR, .min = 1,
	  .max = INT64_MAX, .broker_key = "log.cleaner.max.compaction.lag.ms",
	  .doc = "Greatest age in ms of a record before it is eligible for "
		 "compaction whatever the dirty ratio; also caps segment.ms of "
		 "a compacted topic." },
	{ .name = "remote.storage.enable", .type = CFG_BOOL,
	  TOPIC(remote_storage_enable), .def = "false",
	  .broker_key = "log.remote.storage.enable",
	  .doc = "Copy closed segments to the storage tier (storage.tier) "
		 "and read old data back from it (tiered storage)." },
	{ .name = "local.retention.ms", .type = CFG_INT,
	  TOPIC(local_retention_ms), .def = "-2", .min = -2,
	  .max = INT64_MAX, .broker_key = "log.local.retention.ms",
	  .doc = "With remote storage: age in ms after which a segment copied "
		 "to the tier is removed from the local disk; -2 = "
		 "retention.ms, -1 = never." },
	{ .name = "local.retention.bytes", .type = CFG_INT,
	  TOPIC(local_retention_bytes), .def = "-2", .min = -2,
	  .max = INT64_MAX, .broker_key = "log.local.retention.bytes",
	  .doc = "With remote storage: local size of a partition above which "
		 "its oldest segments copied to the tier are removed from the "
		 "local disk; -2 = retention.bytes, -1 = unlimited." },
};
/* clang-format on */

_Static_assert(SK_ARRAY_SIZE(topic_keys) <= 64,
	       "set_mask has one bit per topic key");

/* Broker keys; the log.* topic defaults come from topic_keys[]. */
/* clang-format off */
static const struct cfg_key broker_keys[] = {
	{ .name = "listeners", .type = CFG_STRING, BROKER(listeners),
	  .def = "127.0.0.1:9092", .min = 1, .max = 300,
	  .check = check_listener,
	  .doc = "Address to accept clients on: HOST:PORT or "
		 "PLAINTEXT://HOST:PORT, IPv6 as [::1]:9092." },
	{ .name = "advertised.listeners", .type = CFG_STRING,
	  BROKER(advertised_listeners), .def = "", .min = 0, .max = 300,
	  .check = check_advertised,
	  .doc = "Address given to clients in Metadata, HOST:PORT; empty = "
		 "listeners." },
	{ .name = "admin.listener", .type = CFG_STRING, BROKER(admin_listener),
	  .def = "127.0.0.1:9644", .min = 0, .max = 300,
	  .check = check_admin_listener,
	  .doc = "Address of the admin HTTP listener (/metrics, "
		 "/v1/hooks/reload): "
		 "HOST:PORT, IPv6 as [::1]:9644, port 0 = any free port; "
		 "empty = no admin listener." },
	{ .name = "log.dir", .type = CFG_STRING, BROKER(log_dir),
	  .def = "./data", .min = 1, .max = 4096,
	  .doc = "Directory holding the logs and the metadata database." },
	{ .name = "log.retention.check.interval.ms", .type = CFG_INT,
	  BROKER(log_retention_check_interval_ms), .def = "300000", .min = 1,
	  .max = INT64_MAX,
	  .doc = "How often retention.ms and retention.bytes are applied: "
		 "closed segments past them are deleted." },
	{ .name = "log.flush.offset.checkpoint.interval.ms", .type = CFG_INT,
	  BROKER(log_flush_checkpoint_ms), .def = "60000", .min = 1,
	  .max = INT64_MAX,
	  .doc = "How often every partition's recovery point is recorded: "
		 "what was appended is synced (off the event loop) and a "
		 "checkpoint written, so that recovery after a crash scans "
		 "only what came after it." },
	{ .name = "log.scrub.interval.ms", .type = CFG_INT,
	  BROKER(log_scrub_interval_ms), .def = "86400000", .min = 0,
	  .max = INT64_MAX,
	  .doc = "How often a scrub pass starts: every batch of every closed "
		 "segment is read back off the event loop and its CRC-32C "
		 "checked, and a partition with a bad one is marked damaged "
		 "(never served past it). The first pass starts this long "
		 "after startup, at most a minute. 0 disables scrubbing." },
	{ .name = "log.scrub.bytes.per.sec", .type = CFG_INT,
	  BROKER(log_scrub_bytes_per_sec), .def = "10485760", .min = 0,
	  .max = INT64_MAX,
	  .doc = "How fast the scrub reads segments, in bytes per second, "
		 "so that it never competes much with clients for the disk. "
		 "0 disables scrubbing." },
	{ .name = "node.id", .type = CFG_INT, BROKER(node_id), .def = "0",
	  .min = 0, .max = INT32_MAX,
	  .doc = "This broker's id, as reported in Metadata." },
	{ .name = "num.partitions", .type = CFG_INT, BROKER(num_partitions),
	  .def = "1", .min = 1, .max = 10000,
	  .doc = "Partitions of an auto-created topic, and of a declared "
		 "topic that does not say." },
	{ .name = "auto.create.topics.enable", .type = CFG_BOOL,
	  BROKER(auto_create_topics), .def = "true",
	  .doc = "Create a topic when a client asks for an unknown one." },
	{ .name = "delete.topic.enable", .type = CFG_BOOL,
	  BROKER(delete_topic_enable), .def = "true",
	  .doc = "Allow DeleteTopics." },
	{ .name = "message.max.bytes", .type = CFG_INT,
	  BROKER(message_max_bytes), .def = "1048588", .min = 0,
	  .max = INT32_MAX,
	  .doc = "Largest record batch accepted; the default of the topic key "
		 "max.message.bytes." },
	{ .name = "socket.request.max.bytes", .type = CFG_INT,
	  BROKER(socket_request_max_bytes), .def = "104857600", .min = 1024,
	  .max = INT32_MAX,
	  .doc = "Largest request accepted; a larger one closes the "
		 "connection." },
	{ .name = "fetch.max.bytes", .type = CFG_INT,
	  BROKER(fetch_max_bytes), .def = "4194304", .min = 1024,
	  .max = INT32_MAX,
	  .doc = "Most record bytes one Fetch response carries, whatever the "
		 "client asks (at least one batch is always sent). Smaller "
		 "responses let a consumer parse one while the next is on "
		 "the way." },
	{ .name = "connection.output.max.bytes", .type = CFG_INT,
	  BROKER(connection_output_max_bytes), .def = "16777216",
	  .min = 65536, .max = INT64_MAX,
	  .doc = "Unsent response bytes at which a connection stops reading "
		 "requests until the client catches up." },
	{ .name = "connections.max.idle.ms", .type = CFG_INT,
	  BROKER(connections_max_idle_ms), .def = "600000", .min = 100,
	  .max = INT64_MAX,
	  .doc = "Idle time in ms after which a connection is closed." },
	{ .name = "max.connections", .type = CFG_INT, BROKER(max_connections),
	  .def = "10000", .min = 1, .max = INT32_MAX,
	  .doc = "Client connections accepted at once; more are refused." },
	{ .name = "queued.max.requests", .type = CFG_INT,
	  BROKER(queued_max_requests), .def = "100", .min = 1,
	  .max = INT32_MAX,
	  .doc = "Pipelined requests read from one connection before it "
		 "waits for responses." },
	{ .name = "log.format", .type = CFG_STRING, BROKER(log_format),
	  .def = "text", .min = 1, .max = 16, .choices = log_format_choices,
	  .doc = "Format of the broker's own log on stderr." },
	{ .name = "log.level", .type = CFG_STRING, BROKER(log_level),
	  .def = "info", .min = 1, .max = 16, .choices = log_level_choices,
	  .doc = "Least severe message written to the broker's own log." },
	{ .name = "group.initial.rebalance.delay.ms", .type = CFG_INT,
	  BROKER(group_initial_rebalance_delay_ms), .def = "3000", .min = 0,
	  .max = INT32_MAX,
	  .doc = "How long the first rebalance of an empty group waits for "
		 "more members to join (extended while new ones arrive, up "
		 "to the rebalance timeout)." },
	{ .name = "group.min.session.timeout.ms", .type = CFG_INT,
	  BROKER(group_min_session_timeout_ms), .def = "6000", .min = 1,
	  .max = INT32_MAX,
	  .doc = "Smallest session timeout a group member may ask for; "
		 "less is INVALID_SESSION_TIMEOUT." },
	{ .name = "group.max.session.timeout.ms", .type = CFG_INT,
	  BROKER(group_max_session_timeout_ms), .def = "1800000", .min = 1,
	  .max = INT32_MAX,
	  .doc = "Largest session timeout a group member may ask for; "
		 "more is INVALID_SESSION_TIMEOUT." },
	{ .name = "group.max.size", .type = CFG_INT, BROKER(group_max_size),
	  .def = "2147483647", .min = 1, .max = INT32_MAX,
	  .doc = "Members one consumer group may have; a member beyond it "
		 "gets GROUP_MAX_SIZE_REACHED." },
	{ .name = "offsets.retention.minutes", .type = CFG_INT,
	  BROKER(offsets_retention_minutes), .def = "10080", .min = 1,
	  .max = INT32_MAX,
	  .doc = "How long committed offsets are kept: from the time a group "
		 "became empty, or from the commit for standalone "
		 "consumers (KIP-211)." },
	{ .name = "offsets.retention.check.interval.ms", .type = CFG_INT,
	  BROKER(offsets_retention_check_interval_ms), .def = "600000",
	  .min = 1, .max = INT64_MAX,
	  .doc = "How often expired offsets and empty groups are removed." },
	{ .name = "offset.metadata.max.bytes", .type = CFG_INT,
	  BROKER(offset_metadata_max_bytes), .def = "4096", .min = 0,
	  .max = INT32_MAX,
	  .doc = "Longest metadata string an offset commit may carry; more "
		 "is OFFSET_METADATA_TOO_LARGE." },
	{ .name = "log.cleaner.enable", .type = CFG_BOOL,
	  BROKER(log_cleaner_enable), .def = "true",
	  .doc = "Run the log cleaner, which compacts topics whose "
		 "cleanup.policy includes compact." },
	{ .name = "log.cleaner.backoff.ms", .type = CFG_INT,
	  BROKER(log_cleaner_backoff_ms), .def = "15000", .min = 1,
	  .max = INT64_MAX,
	  .doc = "How long the cleaner waits before looking again when no log "
		 "needed cleaning." },
	{ .name = "log.cleaner.dedupe.buffer.size", .type = CFG_INT,
	  BROKER(log_cleaner_dedupe_buffer_size), .def = "134217728",
	  .min = 4096, .max = INT64_MAX,
	  .doc = "Memory for the cleaner's map of keys to their latest "
		 "offset, 24 bytes a key; a dirty log with more keys is "
		 "cleaned in several passes." },
	{ .name = "remote.log.manager.task.interval.ms", .type = CFG_INT,
	  BROKER(remote_task_interval_ms), .def = "30000", .min = 10,
	  .max = INT64_MAX,
	  .doc = "How often closed segments of topics with "
		 "remote.storage.enable are copied to the storage tier and "
		 "local copies past local.retention.* removed." },
	{ .name = "remote.log.cache.bytes", .type = CFG_INT,
	  BROKER(remote_cache_bytes), .def = "1073741824", .min = 1048576,
	  .max = INT64_MAX,
	  .doc = "Disk space for segments read back from the storage tier "
		 "(in log.dir/remote-cache), least recently used first out." },
	{ .name = "remote.log.orphan.sweep.interval.ms", .type = CFG_INT,
	  BROKER(remote_sweep_interval_ms), .def = "3600000", .min = 0,
	  .max = INT64_MAX,
	  .doc = "How often the storage tier is swept for objects no "
		 "manifest names (interrupted copies, failed deletes), one "
		 "partition per remote.log.manager.task.interval.ms; 0: "
		 "never." },
	{ .name = "remote.log.orphan.grace.ms", .type = CFG_INT,
	  BROKER(remote_orphan_grace_ms), .def = "3600000", .min = 0,
	  .max = INT64_MAX,
	  .doc = "Objects younger than this (by the time in their key) are "
		 "never swept, whatever the manifest says." },
};
/* clang-format on */

/* Keys of one entry of the topics: section ("configs" is a sub-mapping). */
/* clang-format off */
static const struct cfg_key topic_decl_keys[] = {
	{ .name = "partitions", .type = CFG_INT,
	  FIELD(struct sk_topic_decl, partitions), .def = "-1", .min = 1,
	  .max = 10000, .doc = "Partitions; default num.partitions." },
};
/* clang-format on */

#define N_BROKER SK_ARRAY_SIZE(broker_keys)
#define N_TOPIC	 SK_ARRAY_SIZE(topic_keys)

static int key_err(struct sk_err *err, const char *where, const char *key,
		   const char *fmt, ...) SK_PRINTF(4, 5);

/*
 * "WHERE: KEY: what" into err, or "KEY: what" when there is no where
 * (CreateTopics and AlterConfigs report the message as is).
 */
static int key_err(struct sk_err *err, const char *where, const char *key,
		   const char *fmt, ...)
{
	char what[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (where)
		return sk_err_set(err, "%s: %s: %s", where, key, what);
	return sk_err_set(err, "%s: %s", key, what);
}

/* Append to a bounded buffer, truncating quietly. */
static void buf_add(char *buf, size_t cap, size_t *n, const char *s)
{
	size_t len = strlen(s);

	if (*n + 1 >= cap)
		return;
	if (len > cap - *n - 1)
		len = cap - *n - 1;
	memcpy(buf + *n, s, len);
	*n += len;
	buf[*n] = '\0';
}

/* The allowed values, 'a', 'b' (sep ", ") or a | b (sep " | "). */
static void choices_text(const struct cfg_choice *c, const char *sep,
			 bool quote, char *buf, size_t cap)
{
	size_t n = 0;

	buf[0] = '\0';
	for (; c->name; c++) {
		if (n)
			buf_add(buf, cap, &n, sep);
		if (quote)
			buf_add(buf, cap, &n, "'");
		buf_add(buf, cap, &n, c->name);
		if (quote)
			buf_add(buf, cap, &n, "'");
	}
}

static const struct cfg_choice *choice_find(const struct cfg_choice *c,
					    const char *name)
{
	for (; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static void int_range_text(const struct cfg_key *k, char *buf, size_t cap)
{
	if (k->max == INT64_MAX)
		snprintf(buf, cap, "an integer >= %lld", (long long)k->min);
	else
		snprintf(buf, cap, "an integer in [%lld, %lld]",
			 (long long)k->min, (long long)k->max);
}

/*
 * A ratio: a plain decimal in [0, 1] ("0.5", "1", ".25", "5e-1": what
 * Java's Double.parseDouble takes for such values), parsed with strtod
 * but refusing what strtod forgives: blanks, a sign, hex, inf and nan,
 * and anything after the number.
 */
static bool parse_ratio(const char *s, double *out)
{
	char *end;
	double v;

	if (!((*s >= '0' && *s <= '9') || *s == '.'))
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' ||
		      *p == 'E' || *p == '-' || *p == '+'))
			return false;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < 0.0 || v > 1.0)
		return false;
	*out = v;
	return true;
}

/*
 * Parse value for key k (called name in messages) into its member of base.
 * Nothing is stored on error, so the previous value stays.
 */
static int key_apply(const struct cfg_key *k, const char *name, void *base,
		     const char *value, const char *where, struct sk_err *err)
{
	void *p = (char *)base + k->offset;
	const struct cfg_choice *c;
	struct sk_err why;
	char text[400];
	size_t len;
	int64_t v;
	double d;
	char *s;

	switch (k->type) {
	case CFG_BOOL:
		if (strcmp(value, "true") == 0)
			*(bool *)p = true;
		else if (strcmp(value, "false") == 0)
			*(bool *)p = false;
		else
			return key_err(err, where, name,
				       "expected true or false, got '%.100s'",
				       value);
		return 0;
	case CFG_INT:
		if (!sk_parse_i64(value, &v) || v < k->min || v > k->max) {
			int_range_text(k, text, sizeof(text));
			return key_err(err, where, name,
				       "expected %s, got '%.100s'", text,
				       value);
		}
		if (k->size == sizeof(int32_t))
			*(int32_t *)p = (int32_t)v;
		else
			*(int64_t *)p = v;
		return 0;
	case CFG_ENUM:
		c = choice_find(k->choices, value);
		if (!c)
			goto bad_choice;
		*(int *)p = c->value;
		return 0;
	case CFG_RATIO:
		if (!parse_ratio(value, &d))
			return key_err(err, where, name,
				       "expected a number in [0, 1], got "
				       "'%.100s'",
				       value);
		*(double *)p = d;
		return 0;
	case CFG_STRING:
		len = strlen(value);
		if (len == 0 && k->min > 0)
			return key_err(err, where, name, "must not be empty");
		if ((int64_t)len > k->max)
			return key_err(err, where, name,
				       "expected at most %lld characters, "
				       "got %zu",
				       (long long)k->max, len);
		if (k->choices && !choice_find(k->choices, value))
			goto bad_choice;
		if (k->check) {
			if (k->check(value, &s, &why))
				return key_err(err, where, name, "%s", why.msg);
		} else {
			s = sk_xstrdup(value);
		}
		free(*(char **)p);
		*(char **)p = s;
		return 0;
	}
	return key_err(err, where, name, "bad table entry");

bad_choice:
	choices_text(k->choices, ", ", true, text, sizeof(text));
	return key_err(err, where, name, "expected one of %s, got '%.100s'",
		       text, value);
}

/* The value of key k in base, as it would be written in a config file. */
static void key_format(const struct cfg_key *k, const void *base, char *buf,
		       size_t cap)
{
	const void *p = (const char *)base + k->offset;
	const struct cfg_choice *c;

	switch (k->type) {
	case CFG_BOOL:
		snprintf(buf, cap, "%s", *(const bool *)p ? "true" : "false");
		return;
	case CFG_INT:
		if (k->size == sizeof(int32_t))
			snprintf(buf, cap, "%d", (int)*(const int32_t *)p);
		else
			snprintf(buf, cap, "%lld",
				 (long long)*(const int64_t *)p);
		return;
	case CFG_ENUM:
		for (c = k->choices; c->name; c++) {
			if (c->value == *(const int *)p) {
				snprintf(buf, cap, "%s", c->name);
				return;
			}
		}
		snprintf(buf, cap, "%d", *(const int *)p);
		return;
	case CFG_RATIO:
		snprintf(buf, cap, "%g", *(const double *)p);
		return;
	case CFG_STRING:
		snprintf(buf, cap, "%s",
			 *(char *const *)p ? *(char *const *)p : "");
		return;
	}
	snprintf(buf, cap, "?");
}

/* The constraint on a value, for --help. */
static void key_constraint(const struct cfg_key *k, char *buf, size_t cap)
{
	size_t n = 0;

	switch (k->type) {
	case CFG_BOOL:
		snprintf(buf, cap, "true or false");
		return;
	case CFG_INT:
		int_range_text(k, buf, cap);
		return;
	case CFG_RATIO:
		snprintf(buf, cap, "a number in [0, 1]");
		return;
	case CFG_ENUM:
	case CFG_STRING:
		if (k->choices) {
			buf_add(buf, cap, &n, "one of ");
			choices_text(k->choices, " | ", false, buf + n,
				     cap - n);
		} else {
			snprintf(buf, cap, "%s",
				 k->min ? "string" : "string, may be empty");
		}
		return;
	}
	buf[0] = '\0';
}

/* ------------------------------------------------------------------ */
/* Listeners */

static bool host_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
}

static bool ipv6_char(char ch)
{
	return (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') ||
	       (ch >= '0' && ch <= '9') || ch == ':' || ch == '.';
}

/*
 * One listener, "HOST:PORT", stored as HOST:PORT; a Kafka listener
 * (kafka) may also be written "PLAINTEXT://HOST:PORT", the admin one
 * (plain HTTP) has no scheme and may use port 0 (any free port). An IPv6
 * host must be in brackets so that the last ':' is always the one before
 * the port; bare "::1:9092" is ambiguous.
 */
static int parse_listener(const char *in, bool kafka, char **out,
			  struct sk_err *why)
{
	const char *s = in, *host, *colon, *port, *sep;
	const char *form =
		kafka ? "HOST:PORT or PLAINTEXT://HOST:PORT" : "HOST:PORT";
	int example = kafka ? 9092 : 9644;
	int64_t min_port = kafka ? 1 : 0;
	size_t host_len;
	bool v6 = false;
	int64_t p;

	if (kafka && strncasecmp(s, "PLAINTEXT://", 12) == 0) {
		s += 12;
	} else if ((sep = strstr(s, "://"))) {
		if (!kafka)
			return sk_err_set(why,
					  "expected HOST:PORT (no scheme), "
					  "got '%.100s'",
					  in);
		return sk_err_set(why,
				  "security protocol '%.*s' is not "
				  "supported, only PLAINTEXT",
				  (int)SK_MIN(sep - s, 40), s);
	}
	if (strchr(s, ','))
		return sk_err_set(why, "expected one listener, got '%.100s'",
				  in);
	if (*s == '[') {
		host = s + 1;
		colon = strchr(host, ']');
		if (!colon)
			return sk_err_set(why, "missing ']' in '%.100s'", in);
		host_len = (size_t)(colon - host);
		colon++;
		if (*colon != ':')
			goto bad_form;
		v6 = true;
		for (size_t i = 0; i < host_len; i++)
			if (!ipv6_char(host[i]))
				goto bad_host;
		if (host_len == 0 || !memchr(host, ':', host_len))
			goto bad_host;
	} else {
		host = s;
		colon = strrchr(s, ':');
		if (!colon)
			goto bad_form;
		host_len = (size_t)(colon - host);
		if (memchr(host, ':', host_len))
			return sk_err_set(why,
					  "an IPv6 address goes in brackets, "
					  "as in [::1]:%d, got '%.100s'",
					  example, in);
		if (host_len == 0)
			return sk_err_set(why,
					  "missing host in '%.100s' (use "
					  "0.0.0.0 for every address)",
					  in);
		for (size_t i = 0; i < host_len; i++)
			if (!host_char(host[i]))
				goto bad_host;
	}
	if (host_len > 253)
		goto bad_host;
	port = colon + 1;
	if (*port == '-' || !sk_parse_i64(port, &p) || p < min_port ||
	    p > 65535)
		return sk_err_set(why,
				  "port must be in [%d, 65535], got "
				  "'%.100s'",
				  (int)min_port, port);
	*out = sk_xasprintf(v6 ? "[%.*s]:%d" : "%.*s:%d", (int)host_len, host,
			    (int)p);
	return 0;

bad_form:
	return sk_err_set(why, "expected %s, got '%.100s'", form, in);
bad_host:
	return sk_err_set(why, "invalid host '%.*s' in '%.100s'",
			  (int)SK_MIN(host_len, 100), host, in);
}

static int check_listener(const char *in, char **out, struct sk_err *why)
{
	return parse_listener(in, true, out, why);
}

/* As a listener, or empty; and an address clients can actually reach. */
static int check_advertised(const char *in, char **out, struct sk_err *why)
{
	int rc;

	if (!*in) {
		*out = sk_xstrdup("");
		return 0;
	}
	rc = parse_listener(in, true, out, why);
	if (rc)
		return rc;
	if (strncmp(*out, "0.0.0.0:", 8) == 0 ||
	    strncmp(*out, "[::]:", 5) == 0) {
		free(*out);
		return sk_err_set(why,
				  "'%.100s' cannot be advertised: give an "
				  "address clients can connect to",
				  in);
	}
	return 0;
}

/* The admin listener, or empty: none. */
static int check_admin_listener(const char *in, char **out, struct sk_err *why)
{
	if (!*in) {
		*out = sk_xstrdup("");
		return 0;
	}
	return parse_listener(in, false, out, why);
}

/* ------------------------------------------------------------------ */
/* Broker keys */

/* A broker key: its row, and where its value lives. */
struct broker_ref {
	const char *name;
	const struct cfg_key *k;
	/* k is a topic row stored in sk_config.topic_defaults */
	bool topic_default;
};

static const struct cfg_key *broker_row(const char *name)
{
	for (size_t i = 0; i < N_BROKER; i++)
		if (strcmp(broker_keys[i].name, name) == 0)
			return &broker_keys[i];
	return NULL;
}

/*
 * Iterate over every broker key: the rows of broker_keys[], then the topic
 * rows whose broker key has no row of its own. Start with *i = 0.
 */
static bool broker_key_next(size_t *i, struct broker_ref *r)
{
	while (*i < N_BROKER + N_TOPIC) {
		size_t j = (*i)++;
		const struct cfg_key *k;

		if (j < N_BROKER) {
			r->k = &broker_keys[j];
			r->name = r->k->name;
			r->topic_default = false;
			return true;
		}
		k = &topic_keys[j - N_BROKER];
		if (broker_row(k->broker_key))
			continue;
		r->k = k;
		r->name = k->broker_key;
		r->topic_default = true;
		return true;
	}
	return false;
}

static bool broker_find(const char *name, struct broker_ref *r)
{
	size_t i = 0;

	while (broker_key_next(&i, r))
		if (strcmp(r->name, name) == 0)
			return true;
	return false;
}

static void *broker_base(struct sk_config *c, const struct broker_ref *r)
{
	return r->topic_default ? (void *)&c->topic_defaults : (void *)c;
}

static int broker_apply(struct sk_config *c, const struct broker_ref *r,
			const char *value, const char *where,
			struct sk_err *err)
{
	int rc = key_apply(r->k, r->name, broker_base(c, r), value, where, err);

	if (rc || r->topic_default)
		return rc;
	/*
	 * A broker row that is also a topic default (message.max.bytes)
	 * keeps topic_defaults in step; both rows have the same bounds.
	 */
	for (size_t i = 0; i < N_TOPIC; i++)
		if (strcmp(topic_keys[i].broker_key, r->name) == 0)
			return key_apply(&topic_keys[i], r->name,
					 &c->topic_defaults, value, where, err);
	return 0;
}

size_t sk_config_broker_count(void)
{
	struct broker_ref r;
	size_t i = 0, n = 0;

	while (broker_key_next(&i, &r))
		n++;
	return n;
}

bool sk_config_broker_next(const struct sk_config *c, size_t *i,
			   const char **name, const char **value, char *buf,
			   size_t cap)
{
	struct broker_ref r;
	const void *base;

	if (!broker_key_next(i, &r))
		return false;
	base = r.topic_default ? (const void *)&c->topic_defaults
			       : (const void *)c;
	*name = r.name;
	if (r.k->type == CFG_STRING) {
		const char *s =
			*(char *const *)((const char *)base + r.k->offset);
		*value = s && s[0] ? s : NULL;
	} else {
		key_format(r.k, base, buf, cap);
		*value = buf;
	}
	return true;
}

/* Unknown key; a topic key given as a broker key gets a pointer. */
static int unknown_key(struct sk_err *err, const char *where, const char *key)
{
	int i = sk_topic_config_find(key);

	if (i >= 0 && strcmp(key, topic_keys[i].broker_key) != 0)
		return key_err(err, where, key,
			       "unknown key (a topic key; its broker default "
			       "is %s)",
			       topic_keys[i].broker_key);
	return key_err(err, where, key, "unknown key");
}

/* ------------------------------------------------------------------ */
/* Topic declarations */

static void hook_decls_free(struct sk_topic_decl *d);
static void hook_decls_clone(struct sk_topic_decl *dst,
			     const struct sk_topic_decl *src);

void sk_topic_decl_free(struct sk_topic_decl *d)
{
	for (size_t i = 0; i < d->n_configs; i++) {
		free(d->configs[i].key);
		free(d->configs[i].value);
	}
	free(d->configs);
	free(d->name);
	free(d->where);
	hook_decls_free(d);
	memset(d, 0, sizeof(*d));
}

void sk_topic_decl_clone(struct sk_topic_decl *dst,
			 const struct sk_topic_decl *src)
{
	*dst = *src;
	dst->name = sk_xstrdup(src->name);
	dst->where = sk_xstrdup(src->where);
	dst->configs = src->n_configs ? sk_xcalloc(src->n_configs,
						   sizeof(*dst->configs))
				      : NULL;
	for (size_t i = 0; i < src->n_configs; i++) {
		dst->configs[i].key = sk_xstrdup(src->configs[i].key);
		dst->configs[i].value = sk_xstrdup(src->configs[i].value);
	}
	hook_decls_clone(dst, src);
}

/* Add d to c, taking it; a later declaration of a name replaces the first. */
static void decl_take(struct sk_config *c, struct sk_topic_decl *d)
{
	for (size_t i = 0; i < c->n_topics; i++) {
		if (strcmp(c->topics[i].name, d->name) == 0) {
			sk_topic_decl_free(&c->topics[i]);
			c->topics[i] = *d;
			return;
		}
	}
	c->topics =
		sk_xrealloc(c->topics, (c->n_topics + 1) * sizeof(*c->topics));
	c->topics[c->n_topics++] = *d;
}

static void plugin_decl_free(struct sk_plugin_decl *p)
{
	for (size_t i = 0; i < p->n_settings; i++) {
		free(p->settings[i].key);
		free(p->settings[i].value);
		free(p->settings[i].where);
	}
	free(p->settings);
	free(p->path);
	free(p->where);
	memset(p, 0, sizeof(*p));
}

static void plugins_free(struct sk_config *c)
{
	for (size_t i = 0; i < c->n_plugins; i++)
		plugin_decl_free(&c->plugins[i]);
	free(c->plugins);
	c->plugins = NULL;
	c->n_plugins = 0;
}

static void plugins_clone(struct sk_config *dst, const struct sk_config *src)
{
	dst->plugins = src->n_plugins ? sk_xcalloc(src->n_plugins,
						   sizeof(*dst->plugins))
				      : NULL;
	for (size_t i = 0; i < src->n_plugins; i++) {
		const struct sk_plugin_decl *s = &src->plugins[i];
		struct sk_plugin_decl *d = &dst->plugins[i];

		d->path = sk_xstrdup(s->path);
		d->where = sk_xstrdup(s->where);
		d->n_settings = s->n_settings;
		d->settings = s->n_settings ? sk_xcalloc(s->n_settings,
							 sizeof(*d->settings))
					    : NULL;
		for (size_t j = 0; j < s->n_settings; j++) {
			d->settings[j].key = sk_xstrdup(s->settings[j].key);
			d->settings[j].value = sk_xstrdup(s->settings[j].value);
			d->settings[j].where = sk_xstrdup(s->settings[j].where);
		}
	}
	dst->storage_tier =
		src->storage_tier ? sk_xstrdup(src->storage_tier) : NULL;
	dst->storage_tier_where = src->storage_tier_where
					  ? sk_xstrdup(src->storage_tier_where)
					  : NULL;
}

static void config_clone(struct sk_config *dst, const struct sk_config *src)
{
	*dst = *src;
	for (size_t i = 0; i < N_BROKER; i++) {
		const struct cfg_key *k = &broker_keys[i];
		char *const *s = (char *const *)((const char *)src + k->offset);

		if (k->type == CFG_STRING)
			*(char **)((char *)dst + k->offset) =
				*s ? sk_xstrdup(*s) : NULL;
	}
	dst->topics = src->n_topics
			      ? sk_xcalloc(src->n_topics, sizeof(*dst->topics))
			      : NULL;
	for (size_t i = 0; i < src->n_topics; i++)
		sk_topic_decl_clone(&dst->topics[i], &src->topics[i]);
	plugins_clone(dst, src);
}

/* ------------------------------------------------------------------ */
/* YAML */

/* The document being applied, and the name of its source for messages. */
struct cfg_doc {
	yaml_document_t doc;
	const char *name;
};

/* A section: a top-level key whose value is a structure, not a scalar. */
struct cfg_section {
	const char *name;
	int (*load)(struct sk_config *c, struct cfg_doc *d, yaml_node_t *key,
		    yaml_node_t *value, struct sk_err *err);
};

static int load_topics(struct sk_config *c, struct cfg_doc *d, yaml_node_t *key,
		       yaml_node_t *value, struct sk_err *err);

static int load_plugins(struct sk_config *c, struct cfg_doc *d,
			yaml_node_t *key, yaml_node_t *value,
			struct sk_err *err);
static int load_storage(struct sk_config *c, struct cfg_doc *d,
			yaml_node_t *key, yaml_node_t *value,
			struct sk_err *err);
static int load_hooks(struct sk_config *c, struct cfg_doc *d, yaml_node_t *key,
		      yaml_node_t *value, struct sk_err *err);

/* clang-format off */
static const struct cfg_section sections[] = {
	{ "topics", load_topics },
	{ "hooks", load_hooks },
	{ "plugins", load_plugins },
	{ "storage", load_storage },
};
/* clang-format on */

static const struct cfg_section *section_find(const char *name)
{
	for (size_t i = 0; i < SK_ARRAY_SIZE(sections); i++)
		if (strcmp(sections[i].name, name) == 0)
			return &sections[i];
	return NULL;
}

/* yaml marks count from 0; people count lines from 1. */
static unsigned long node_line(const yaml_node_t *n)
{
	return (unsigned long)n->start_mark.line + 1;
}

static const char *node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a value";
	}
}

static yaml_node_t *doc_node(struct cfg_doc *d, int i)
{
	return yaml_document_get_node(&d->doc, i);
}

/* An empty value (`key:`), "~" or null: treated as "nothing here". */
static bool node_is_null(const yaml_node_t *n)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	s = (const char *)n->data.scalar.value;
	return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	       strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* The scalar's text, or NULL if it holds a NUL byte C cannot carry. */
static const char *scalar_text(const yaml_node_t *n)
{
	const char *s = (const char *)n->data.scalar.value;

	return strlen(s) == n->data.scalar.length ? s : NULL;
}

static int node_err(struct sk_err *err, struct cfg_doc *d, const yaml_node_t *n,
		    const char *key, const char *fmt, ...) SK_PRINTF(5, 6);

/* "FILE:LINE: KEY: what" (or "FILE:LINE: what"), LINE being n's. */
static int node_err(struct sk_err *err, struct cfg_doc *d, const yaml_node_t *n,
		    const char *key, const char *fmt, ...)
{
	char what[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (key)
		return sk_err_set(err, "%s:%lu: %s: %s", d->name, node_line(n),
				  key, what);
	return sk_err_set(err, "%s:%lu: %s", d->name, node_line(n), what);
}

/* "path.key", or key at the top level. */
static void key_path(char *buf, size_t cap, const char *path, const char *key)
{
	if (path)
		snprintf(buf, cap, "%s.%s", path, key);
	else
		snprintf(buf, cap, "%s", key);
}

/* "FILE:LINE" of n, allocated. */
static char *node_where(struct cfg_doc *d, const yaml_node_t *n)
{
	return sk_xasprintf("%s:%lu", d->name, node_line(n));
}

/*
 * Keys of map must be scalars without NUL bytes, and unique: YAML says a
 * duplicate is an error, and libyaml leaves that check to us. Quadratic,
 * which is fine for a config file.
 */
static int check_mapping(struct cfg_doc *d, yaml_node_t *map, const char *path,
			 struct sk_err *err)
{
	yaml_node_pair_t *start = map->data.mapping.pairs.start;
	yaml_node_pair_t *top = map->data.mapping.pairs.top;
	char kp[600];

	for (yaml_node_pair_t *pi = start; pi < top; pi++) {
		yaml_node_t *k = doc_node(d, pi->key);

		if (k->type != YAML_SCALAR_NODE)
			return node_err(err, d, k, path,
					"expected a key, got %s", node_kind(k));
		if (!scalar_text(k))
			return node_err(err, d, k, path,
					"key contains a NUL byte");
		for (yaml_node_pair_t *pj = start; pj < pi; pj++) {
			yaml_node_t *kj = doc_node(d, pj->key);

			if (kj->data.scalar.length != k->data.scalar.length ||
			    memcmp(kj->data.scalar.value, k->data.scalar.value,
				   k->data.scalar.length) != 0)
				continue;
			key_path(kp, sizeof(kp), path,
				 (const char *)k->data.scalar.value);
			return node_err(err, d, k, kp,
					"duplicate key (first at line %lu)",
					node_line(kj));
		}
	}
	return 0;
}

/* A walk over the pairs of a mapping whose keys check_mapping accepted. */
struct cfg_walk {
	struct cfg_doc *d;
	yaml_node_pair_t *pr, *top;
	yaml_node_t *k, *v; /* the current pair */
	const char *name;   /* k's text */
};

/*
 * Start walking value, found at path on the line of node at. A null value
 * is an empty mapping; anything else but a mapping is "expected <what>".
 */
static int walk_begin(struct cfg_walk *w, struct cfg_doc *d, yaml_node_t *at,
		      yaml_node_t *value, const char *path, const char *what,
		      struct sk_err *err)
{
	int rc;

	*w = (struct cfg_walk){ .d = d };
	if (node_is_null(value))
		return 0;
	if (value->type != YAML_MAPPING_NODE)
		return node_err(err, d, at, path, "expected %s, got %s", what,
				node_kind(value));
	rc = check_mapping(d, value, path, err);
	if (rc)
		return rc;
	w->pr = value->data.mapping.pairs.start;
	w->top = value->data.mapping.pairs.top;
	return 0;
}

/* Pairs not yet walked. */
static size_t walk_left(const struct cfg_walk *w)
{
	return (size_t)(w->top - w->pr);
}

static bool walk_next(struct cfg_walk *w)
{
	if (w->pr == w->top)
		return false;
	w->k = doc_node(w->d, w->pr->key);
	w->v = doc_node(w->d, w->pr->value);
	w->name = (const char *)w->k->data.scalar.value;
	w->pr++;
	return true;
}

/*
 * The text of a value that must be a single scalar, or NULL with err set.
 * Messages name the line of the key, which is where the eye goes.
 */
static const char *value_text(struct cfg_doc *d, yaml_node_t *key,
			      yaml_node_t *value, const char *kp,
			      struct sk_err *err)
{
	const char *s;

	if (value->type != YAML_SCALAR_NODE) {
		node_err(err, d, key, kp, "expected a single value, got %s",
			 node_kind(value));
		return NULL;
	}
	s = scalar_text(value);
	if (!s)
		node_err(err, d, key, kp, "value contains a NUL byte");
	return s;
}

/* ------------------------------------------------------------------ */
/* Lua hooks: the hooks: section and the topics' hooks: lists */

#define HOOKS(m) FIELD(struct sk_hook_settings, m)

/* clang-format off */
static const struct cfg_key hook_keys[] = {
	{ .name = "timeout.ms", .type = CFG_INT, HOOKS(timeout_ms),
	  .def = "50", .min = 1, .max = 60000,
	  .doc = "CPU budget of one hook on one batch; past it the batch gets "
		 "the hook's on_error policy." },
	{ .name = "memory.mb", .type = CFG_INT, HOOKS(memory_mb), .def = "32",
	  .min = 1, .max = 65536,
	  .doc = "Heap of one hook's Lua state (per worker and script); past "
		 "it the batch gets the hook's on_error policy." },
	{ .name = "workers", .type = CFG_INT, HOOKS(workers), .def = "2",
	  .min = 1, .max = 64,
	  .doc = "Hook worker threads; a partition's batches stay in order." },
	{ .name = "breaker.failures", .type = CFG_INT,
	  HOOKS(breaker_failures), .def = "5", .min = 1, .max = INT32_MAX,
	  .doc = "Consecutive failed batches after which a hook is disabled "
		 "(its on_error policy answers without running it)." },
	{ .name = "breaker.reset.ms", .type = CFG_INT, HOOKS(breaker_reset_ms),
	  .def = "30000", .min = 1, .max = INT64_MAX,
	  .doc = "How long a disabled hook stays off before one batch tries "
		 "it again; a reload (SIGHUP) re-enables it at once." },
};
/* clang-format on */

/* clang-format off */
static const struct cfg_choice on_error_choices[] = {
	{ "reject", SK_HOOK_ON_ERROR_REJECT },
	{ "pass", SK_HOOK_ON_ERROR_PASS },
	{ "drop", SK_HOOK_ON_ERROR_DROP },
	{ "dead-letter", SK_HOOK_ON_ERROR_DEAD_LETTER },
	{ NULL, 0 },
};
/* clang-format on */

static void hook_settings_defaults(struct sk_hook_settings *h)
{
	for (size_t i = 0; i < SK_ARRAY_SIZE(hook_keys); i++)
		if (key_apply(&hook_keys[i], hook_keys[i].name, h,
			      hook_keys[i].def, "default", NULL))
			abort();
}

/* hooks: {timeout.ms: N, memory.mb: N, workers: N, ...} */
static int load_hooks(struct sk_config *c, struct cfg_doc *d, yaml_node_t *key,
		      yaml_node_t *value, struct sk_err *err)
{
	struct cfg_walk w;
	char kp[400];
	int rc;

	rc = walk_begin(&w, d, key, value, "hooks",
			"a mapping of hook settings", err);
	if (rc)
		return rc;
	while (walk_next(&w)) {
		yaml_node_t *k = w.k, *v = w.v;
		const char *name = w.name;
		const struct cfg_key *row = NULL;
		const char *text;
		char *where;

		key_path(kp, sizeof(kp), "hooks", name);
		for (size_t i = 0; i < SK_ARRAY_SIZE(hook_keys); i++)
			if (strcmp(hook_keys[i].name, name) == 0)
				row = &hook_keys[i];
		if (!row)
			return node_err(err, d, k, kp, "unknown key");
		text = value_text(d, k, v, kp, err);
		if (!text)
			return -EINVAL;
		where = node_where(d, k);
		rc = key_apply(row, kp, &c->hooks, text, where, err);
		free(where);
		if (rc)
			return rc;
	}
	return 0;
}

static void hook_decl_free(struct sk_hook_decl *h)
{
	free(h->name);
	free(h->script);
	free(h->dead_letter_topic);
	free(h->options_json);
	free(h->where);
}

static void hook_decls_free(struct sk_topic_decl *d)
{
	for (size_t i = 0; i < d->n_hooks; i++)
		hook_decl_free(&d->hooks[i]);
	free(d->hooks);
	free(d->retention_script);
	free(d->retention_where);
	free(d->retention_options_json);
}

static char *dup_or_null(const char *s)
{
	return s ? sk_xstrdup(s) : NULL;
}

static void hook_decls_clone(struct sk_topic_decl *dst,
			     const struct sk_topic_decl *src)
{
	dst->hooks = src->n_hooks
			     ? sk_xcalloc(src->n_hooks, sizeof(*dst->hooks))
			     : NULL;
	for (size_t i = 0; i < src->n_hooks; i++) {
		const struct sk_hook_decl *h = &src->hooks[i];

		dst->hooks[i] = (struct sk_hook_decl){
			.name = dup_or_null(h->name),
			.script = dup_or_null(h->script),
			.on_error = h->on_error,
			.dead_letter_topic = dup_or_null(h->dead_letter_topic),
			.options_json = dup_or_null(h->options_json),
			.where = dup_or_null(h->where),
		};
	}
	dst->retention_script = dup_or_null(src->retention_script);
	dst->retention_where = dup_or_null(src->retention_where);
	dst->retention_options_json = dup_or_null(src->retention_options_json);
}

/* A JSON string literal of s[0..n). */
static void json_string(struct sk_buf *o, const char *s, size_t n)
{
	char esc[8];

	sk_buf_put(o, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\') {
			esc[0] = '\\';
			esc[1] = (char)ch;
			sk_buf_put(o, esc, 2);
		} else if (ch < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", ch);
			sk_buf_put(o, esc, 6);
		} else {
			sk_buf_put(o, &s[i], 1);
		}
	}
	sk_buf_put(o, "\"", 1);
}

/* True if s is a JSON number (RFC 8259 grammar). */
static bool json_number(const char *s)
{
	const char *p = s + (*s == '-');

	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return false;
	if (*p == '.') {
		if (!(*++p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	return *p == '\0';
}

/*
 * A YAML node as JSON, for a hook's ctx.options: mappings become objects
 * (keys as strings), lists arrays; a plain scalar that reads as a JSON
 * number, true, false or null is that, anything else (and every quoted
 * scalar) a string.
 */
static int node_json(struct cfg_doc *d, yaml_node_t *n, struct sk_buf *o,
		     int depth, const char *kp, struct sk_err *err)
{
	struct cfg_walk w;
	const char *s;
	int rc;

	if (depth > 32)
		return node_err(err, d, n, kp, "options nest too deep");
	switch (n->type) {
	case YAML_MAPPING_NODE:
		rc = walk_begin(&w, d, n, n, kp, "a mapping", err);
		if (rc)
			return rc;
		sk_buf_put(o, "{", 1);
		for (bool first = true; walk_next(&w); first = false) {
			if (!first)
				sk_buf_put(o, ",", 1);
			json_string(o, w.name, w.k->data.scalar.length);
			sk_buf_put(o, ":", 1);
			rc = node_json(d, w.v, o, depth + 1, kp, err);
			if (rc)
				return rc;
		}
		sk_buf_put(o, "}", 1);
		return 0;
	case YAML_SEQUENCE_NODE:
		sk_buf_put(o, "[", 1);
		for (yaml_node_item_t *it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top; it++) {
			if (it != n->data.sequence.items.start)
				sk_buf_put(o, ",", 1);
			rc = node_json(d, doc_node(d, *it), o, depth + 1, kp,
				       err);
			if (rc)
				return rc;
		}
		sk_buf_put(o, "]", 1);
		return 0;
	case YAML_SCALAR_NODE:
		s = scalar_text(n);
		if (!s)
			return node_err(err, d, n, kp,
					"value contains a NUL byte");
		if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
			if (node_is_null(n)) {
				sk_buf_put(o, "null", 4);
				return 0;
			}
			if (json_number(s) || strcmp(s, "true") == 0 ||
			    strcmp(s, "false") == 0) {
				sk_buf_put(o, s, strlen(s));
				return 0;
			}
		}
		json_string(o, s, strlen(s));
		return 0;
	default:
		return node_err(err, d, n, kp, "unsupported YAML node");
	}
}

/* Hook names: what metrics and logs can carry without quoting. */
/* options: any YAML value, kept as the JSON text scripts receive. */
static int load_options(struct cfg_doc *d, yaml_node_t *v, const char *kp,
			char **json, struct sk_err *err)
{
	struct sk_buf o = { 0 };
	int rc = node_json(d, v, &o, 0, kp, err);

	if (rc) {
		sk_buf_free(&o);
		return rc;
	}
	sk_buf_put(&o, "", 1);
	free(*json);
	*json = (char *)o.data;
	return 0;
}

static bool hook_name_valid(const char *s)
{
	if (!*s || strlen(s) > 100)
		return false;
	for (; *s; s++)
		if (!host_char(*s))
			return false;
	return true;
}

/* One entry of topics.NAME.hooks. */
static int load_hook_entry(struct cfg_doc *d, struct sk_hook_decl *h,
			   const char *path, yaml_node_t *item,
			   struct sk_err *err)
{
	struct cfg_walk w;
	struct sk_err why;
	char kp[800];
	int rc;

	*h = (struct sk_hook_decl){ .on_error = SK_HOOK_ON_ERROR_REJECT };
	h->where = node_where(d, item);
	if (item->type != YAML_MAPPING_NODE)
		return node_err(err, d, item, path,
				"expected a mapping with name, script, "
				"on_error, dead_letter_topic and options, "
				"got %s",
				node_kind(item));
	rc = walk_begin(&w, d, item, item, path, "a mapping", err);
	if (rc)
		return rc;
	while (walk_next(&w)) {
		yaml_node_t *k = w.k, *v = w.v;
		const char *kname = w.name;
		const struct cfg_choice *ch;
		const char *text;

		key_path(kp, sizeof(kp), path, kname);
		if (strcmp(kname, "options") == 0) {
			rc = load_options(d, v, kp, &h->options_json, err);
			if (rc)
				return rc;
			continue;
		}
		if (strcmp(kname, "name") && strcmp(kname, "script") &&
		    strcmp(kname, "on_error") &&
		    strcmp(kname, "dead_letter_topic"))
			return node_err(err, d, k, kp, "unknown key");
		text = value_text(d, k, v, kp, err);
		if (!text)
			return -EINVAL;
		if (strcmp(kname, "name") == 0) {
			if (!hook_name_valid(text))
				return node_err(err, d, k, kp,
						"expected 1..100 characters "
						"from [a-zA-Z0-9._-], got "
						"'%.100s'",
						text);
			h->name = sk_xstrdup(text);
		} else if (strcmp(kname, "script") == 0) {
			if (!*text || strlen(text) > 4096)
				return node_err(err, d, k, kp,
						"expected a file path");
			h->script = sk_xstrdup(text);
		} else if (strcmp(kname, "on_error") == 0) {
			ch = choice_find(on_error_choices, text);
			if (!ch)
				return node_err(err, d, k, kp,
						"expected one of reject, "
						"pass, drop, dead-letter, "
						"got '%.100s'",
						text);
			h->on_error = ch->value;
		} else {
			if (!sk_topic_name_valid(text, &why))
				return node_err(err, d, k, kp, "%s", why.msg);
			h->dead_letter_topic = sk_xstrdup(text);
		}
	}
	if (!h->name)
		return node_err(err, d, item, path, "a hook needs a name");
	if (!h->script)
		return node_err(err, d, item, path, "hook '%s' needs a script",
				h->name);
	if (h->on_error == SK_HOOK_ON_ERROR_DEAD_LETTER &&
	    !h->dead_letter_topic)
		return node_err(err, d, item, path,
				"hook '%s': on_error: dead-letter needs "
				"dead_letter_topic",
				h->name);
	if (h->on_error != SK_HOOK_ON_ERROR_DEAD_LETTER && h->dead_letter_topic)
		return node_err(err, d, item, path,
				"hook '%s': dead_letter_topic is only used "
				"with on_error: dead-letter",
				h->name);
	if (!h->options_json)
		h->options_json = sk_xstrdup("{}");
	return 0;
}

/* topics.NAME.hooks: [{name, script, on_error, ...}, ...] */
static int load_topic_hooks(struct cfg_doc *d, struct sk_topic_decl *decl,
			    const char *path, yaml_node_t *key,
			    yaml_node_t *value, struct sk_err *err)
{
	size_t n;
	int rc;

	if (node_is_null(value))
		return 0;
	if (value->type != YAML_SEQUENCE_NODE)
		return node_err(err, d, key, path,
				"expected a list of hooks, got %s",
				node_kind(value));
	n = (size_t)(value->data.sequence.items.top -
		     value->data.sequence.items.start);
	decl->hooks = n ? sk_xcalloc(n, sizeof(*decl->hooks)) : NULL;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item =
			doc_node(d, value->data.sequence.items.start[i]);

		rc = load_hook_entry(d, &decl->hooks[i], path, item, err);
		decl->n_hooks = i + 1;
		if (rc)
			return rc;
		for (size_t j = 0; j < i; j++)
			if (strcmp(decl->hooks[j].name, decl->hooks[i].name) ==
			    0)
				return node_err(err, d, item, path,
						"hook name '%s' used twice",
						decl->hooks[i].name);
	}
	return 0;
}

/* topics.NAME.retention: {script: PATH} */
static int load_topic_retention(struct cfg_doc *d, struct sk_topic_decl *decl,
				const char *path, yaml_node_t *key,
				yaml_node_t *value, struct sk_err *err)
{
	struct cfg_walk w;
	char kp[800];
	int rc;

	rc = walk_begin(&w, d, key, value, path, "a mapping with script", err);
	if (rc)
		return rc;
	while (walk_next(&w)) {
		yaml_node_t *k = w.k, *v = w.v;
		const char *kname = w.name;
		const char *text;

		key_path(kp, sizeof(kp), path, kname);
		if (strcmp(kname, "options") == 0) {
			rc = load_options(d, v, kp,
					  &decl->retention_options_json, err);
			if (rc)
				return rc;
			continue;
		}
		if (strcmp(kname, "script") != 0)
			return node_err(err, d, k, kp, "unknown key");
		text = value_text(d, k, v, kp, err);
		if (!text)
			return -EINVAL;
		if (!*text || strlen(text) > 4096)
			return node_err(err, d, k, kp, "expected a file path");
		free(decl->retention_script);
		free(decl->retention_where);
		decl->retention_script = sk_xstrdup(text);
		decl->retention_where = node_where(d, k);
	}
	return 0;
}

/*
 * A topic entry whose name holds '*', '?' or '[' is a glob. Besides those,
 * it may use only topic-name characters.
 */
static bool topic_glob(const char *name)
{
	return strpbrk(name, "*?[") != NULL;
}

static bool topic_glob_valid(const char *name, struct sk_err *why)
{
	if (strlen(name) > 249)
		return sk_err_set(why, "topic glob is longer than 249 "
				       "characters"),
		       false;
	for (const char *p = name; *p; p++)
		if (!host_char(*p) && !strchr("*?[]!", *p))
			return sk_err_set(why,
					  "topic glob '%s' contains "
					  "'%c'",
					  name, *p),
			       false;
	return true;
}

/* The first glob entry of cfg matching topic, or NULL. */
const struct sk_topic_decl *sk_config_topic_glob(const struct sk_config *c,
						 const char *topic)
{
	for (size_t i = 0; i < c->n_topics; i++)
		if (c->topics[i].glob &&
		    fnmatch(c->topics[i].name, topic, 0) == 0)
			return &c->topics[i];
	return NULL;
}

/* topics.NAME.configs: topic keys, validated and stored normalised. */
static int load_topic_configs(struct cfg_doc *d, struct sk_topic_decl *decl,
			      const char *path, yaml_node_t *key,
			      yaml_node_t *value, struct sk_err *err)
{
	struct cfg_walk w;
	struct sk_topic_config scratch;
	char kp[700], buf[64];
	int rc;

	rc = walk_begin(&w, d, key, value, path,
			"a mapping of topic keys to values", err);
	if (rc)
		return rc;
	memset(&scratch, 0, sizeof(scratch));
	if (!walk_left(&w))
		return 0;
	decl->configs = sk_xcalloc(walk_left(&w), sizeof(*decl->configs));
	while (walk_next(&w)) {
		yaml_node_t *k = w.k, *v = w.v;
		const char *name = w.name;
		const char *text;
		char *where;
		int i;

		key_path(kp, sizeof(kp), path, name);
		i = sk_topic_config_find(name);
		if (i < 0)
			return node_err(err, d, k, kp, "unknown key");
		text = value_text(d, k, v, kp, err);
		if (!text)
			return -EINVAL;
		where = node_where(d, k);
		rc = key_apply(&topic_keys[i], kp, &scratch, text, where, err);
		free(where);
		if (rc)
			return rc;
		sk_topic_config_value(&scratch, (size_t)i, buf, sizeof(buf));
		decl->configs[decl->n_configs].key = sk_xstrdup(name);
		decl->configs[decl->n_configs].value = sk_xstrdup(buf);
		decl->n_configs++;
	}
	return 0;
}

/* One entry of topics:, NAME: {partitions: N, configs: {...}}. */
static int load_topic(struct sk_config *c, struct cfg_doc *d, const char *name,
		      yaml_node_t *key, yaml_node_t *value, struct sk_err *err)
{
	struct cfg_walk w;
	struct sk_topic_decl decl = { .partitions = -1 };
	char path[300], kp[400];
	int rc = 0;

	snprintf(path, sizeof(path), "topics.%s", name);
	rc = walk_begin(&w, d, key, value, path,
			"a mapping with partitions and configs", err);
	if (rc)
		return rc;
	while (walk_next(&w)) {
		yaml_node_t *k = w.k, *v = w.v;
		const char *kname = w.name;
		const struct cfg_key *row = NULL;
		const char *text;
		char *where;

		key_path(kp, sizeof(kp), path, kname);
		if (strcmp(kname, "hooks") == 0 ||
		    strcmp(kname, "retention") == 0) {
			rc = kname[0] == 'h'
				     ? load_topic_hooks(d, &decl, kp, k, v, err)
				     : load_topic_retention(d, &decl, kp, k, v,
							    err);
			if (rc)
				goto out_free;
			continue;
		}
		if (strcmp(kname, "configs") == 0) {
			rc = load_topic_configs(d, &decl, kp, k, v, err);
			if (rc)
				goto out_free;
			continue;
		}
		for (size_t i = 0; i < SK_ARRAY_SIZE(topic_decl_keys); i++)
			if (strcmp(topic_decl_keys[i].name, kname) == 0)
				row = &topic_decl_keys[i];
		if (!row && (strcmp(kname, "config") == 0 ||
			     sk_topic_config_find(kname) >= 0)) {
			rc = node_err(err, d, k, kp,
				      "unknown key: topic configs go under "
				      "'configs:'");
			goto out_free;
		}
		if (!row) {
			rc = node_err(err, d, k, kp, "unknown key");
			goto out_free;
		}
		text = value_text(d, k, v, kp, err);
		if (!text) {
			rc = -EINVAL;
			goto out_free;
		}
		where = node_where(d, k);
		rc = key_apply(row, kp, &decl, text, where, err);
		free(where);
		if (rc)
			goto out_free;
	}
	decl.name = sk_xstrdup(name);
	decl.glob = topic_glob(name);
	decl.where = node_where(d, key);
	decl_take(c, &decl);
	return 0;

out_free:
	sk_topic_decl_free(&decl);
	return rc;
}

/* topics: NAME: {...}, ... */
static int load_topics(struct sk_config *c, struct cfg_doc *d, yaml_node_t *key,
		       yaml_node_t *value, struct sk_err *err)
{
	struct cfg_walk w;
	struct sk_err why;
	int rc;

	rc = walk_begin(&w, d, key, value, "topics",
			"a mapping of topic names to settings", err);
	if (rc)
		return rc;
	while (walk_next(&w)) {
		yaml_node_t *k = w.k, *v = w.v;
		const char *name = w.name;

		if (topic_glob(name) ? !topic_glob_valid(name, &why)
				     : !sk_topic_name_valid(name, &why))
			return node_err(err, d, k, "topics", "%s", why.msg);
		rc = load_topic(c, d, name, k, v, err);
		if (rc)
			return rc;
	}
	return 0;
}

/* plugins[i].config: a flat mapping of keys to single values. */
static int load_plugin_config(struct cfg_doc *d, struct sk_plugin_decl *p,
			      const char *path, yaml_node_t *key,
			      yaml_node_t *value, struct sk_err *err)
{
	struct cfg_walk w;
	char kp[400];
	int rc;

	rc = walk_begin(&w, d, key, value, path,
			"a mapping of the plugin's keys to values", err);
	if (rc)
		return rc;
	if (!walk_left(&w))
		return 0;
	p->settings = sk_xcalloc(walk_left(&w), sizeof(*p->settings));
	while (walk_next(&w)) {
		yaml_node_t *k = w.k, *v = w.v;
		const char *name = w.name;
		struct sk_plugin_setting *s = &p->settings[p->n_settings];
		const char *text;

		key_path(kp, sizeof(kp), path, name);
		/* An empty value is "", not "absent": say it explicitly. */
		text = node_is_null(v) ? "" : value_text(d, k, v, kp, err);
		if (!text)
			return -EINVAL;
		s->key = sk_xstrdup(name);
		s->value = sk_xstrdup(text);
		s->where = node_where(d, k);
		p->n_settings++;
	}
	return 0;
}

/* plugins: [{path: FILE, config: {...}}, ...] */
static int load_plugins(struct sk_config *c, struct cfg_doc *d,
			yaml_node_t *key, yaml_node_t *value,
			struct sk_err *err)
{
	struct cfg_walk w;
	struct sk_plugin_decl *list = NULL;
	size_t n = 0, cap;
	char path[64], kp[128];
	int rc = 0;

	if (!node_is_null(value) && value->type != YAML_SEQUENCE_NODE)
		return node_err(err, d, key, "plugins",
				"expected a list of {path, config} entries, "
				"got %s",
				node_kind(value));
	cap = node_is_null(value) ? 0
				  : (size_t)(value->data.sequence.items.top -
					     value->data.sequence.items.start);
	list = cap ? sk_xcalloc(cap, sizeof(*list)) : NULL;
	for (size_t i = 0; i < cap; i++) {
		yaml_node_t *e =
			doc_node(d, value->data.sequence.items.start[i]);
		struct sk_plugin_decl *p = &list[n++];

		snprintf(path, sizeof(path), "plugins[%zu]", i);
		p->where = node_where(d, e);
		if (e->type != YAML_MAPPING_NODE) {
			rc = node_err(err, d, e, path,
				      "expected a mapping with path and "
				      "config, got %s",
				      node_kind(e));
			goto fail;
		}
		rc = walk_begin(&w, d, e, e, path, "a mapping", err);
		if (rc)
			goto fail;
		while (walk_next(&w)) {
			yaml_node_t *k = w.k, *v = w.v;
			const char *kname = w.name;
			const char *text;

			key_path(kp, sizeof(kp), path, kname);
			if (strcmp(kname, "config") == 0) {
				rc = load_plugin_config(d, p, kp, k, v, err);
				if (rc)
					goto fail;
				continue;
			}
			if (strcmp(kname, "path") != 0) {
				rc = node_err(err, d, k, kp,
					      "unknown key (expected path or "
					      "config)");
				goto fail;
			}
			text = value_text(d, k, v, kp, err);
			if (!text) {
				rc = -EINVAL;
				goto fail;
			}
			if (!*text || strlen(text) > 4096) {
				rc = node_err(err, d, k, kp,
					      "expected the path of a shared "
					      "object, got '%.100s'",
					      text);
				goto fail;
			}
			free(p->path);
			p->path = sk_xstrdup(text);
		}
		if (!p->path) {
			rc = node_err(err, d, e, path, "missing key 'path'");
			goto fail;
		}
	}
	plugins_free(c);
	c->plugins = list;
	c->n_plugins = n;
	return 0;

fail:
	for (size_t i = 0; i < n; i++)
		plugin_decl_free(&list[i]);
	free(list);
	return rc;
}

/* storage: {tier: NAME} */
static int load_storage(struct sk_config *c, struct cfg_doc *d,
			yaml_node_t *key, yaml_node_t *value,
			struct sk_err *err)
{
	struct cfg_walk w;
	char *tier = NULL, *where = NULL;
	int rc;

	rc = walk_begin(&w, d, key, value, "storage", "a mapping with tier",
			err);
	if (rc)
		return rc;
	while (walk_next(&w)) {
		yaml_node_t *k = w.k, *v = w.v;
		const char *kname = w.name;
		char kp[128];
		const char *text;

		key_path(kp, sizeof(kp), "storage", kname);
		if (strcmp(kname, "tier") != 0) {
			rc = node_err(err, d, k, kp, "unknown key");
			goto fail;
		}
		text = node_is_null(v) ? "" : value_text(d, k, v, kp, err);
		if (!text) {
			rc = -EINVAL;
			goto fail;
		}
		if (strlen(text) > 64) {
			rc = node_err(err, d, k, kp,
				      "expected a plugin name, got '%.100s'",
				      text);
			goto fail;
		}
		free(tier);
		free(where);
		tier = *text ? sk_xstrdup(text) : NULL;
		where = node_where(d, k);
	}
	free(c->storage_tier);
	free(c->storage_tier_where);
	c->storage_tier = tier;
	c->storage_tier_where = tier ? where : NULL;
	if (!tier)
		free(where);
	return 0;

fail:
	free(tier);
	free(where);
	return rc;
}

/* The top level: broker keys and sections. */
static int load_document(struct sk_config *c, struct cfg_doc *d,
			 struct sk_err *err)
{
	struct cfg_walk w;
	yaml_node_t *root = yaml_document_get_root_node(&d->doc);
	int rc;

	rc = walk_begin(&w, d, root, root, NULL, "a mapping of keys to values",
			err);
	if (rc)
		return rc;
	while (walk_next(&w)) {
		yaml_node_t *k = w.k, *v = w.v;
		const char *name = w.name;
		const struct cfg_section *sec = section_find(name);
		struct broker_ref r;
		const char *text;
		char *where;

		if (sec) {
			rc = sec->load(c, d, k, v, err);
			if (rc)
				return rc;
			continue;
		}
		where = node_where(d, k);
		if (!broker_find(name, &r)) {
			rc = unknown_key(err, where, name);
		} else {
			text = value_text(d, k, v, name, err);
			rc = text ? broker_apply(c, &r, text, where, err)
				  : -EINVAL;
		}
		free(where);
		if (rc)
			return rc;
	}
	return 0;
}

static int yaml_err(const yaml_parser_t *p, const char *name,
		    struct sk_err *err)
{
	const char *problem = p->problem ? p->problem : "unknown error";

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		return sk_err_setc(err, -ENOMEM,
				   "%s: out of memory reading "
				   "YAML",
				   name);
	case YAML_READER_ERROR:
		return sk_err_set(err, "%s: invalid YAML input: %s at byte %zu",
				  name, problem, p->problem_offset);
	default:
		break;
	}
	if (p->context)
		return sk_err_set(err,
				  "%s:%zu:%zu: YAML syntax error: %s (%s "
				  "started at line %zu)",
				  name, p->problem_mark.line + 1,
				  p->problem_mark.column + 1, problem,
				  p->context, p->context_mark.line + 1);
	return sk_err_set(err, "%s:%zu:%zu: YAML syntax error: %s", name,
			  p->problem_mark.line + 1, p->problem_mark.column + 1,
			  problem);
}

/*
 * Apply the stream of p to a copy of c, and replace c by the copy only if
 * the whole stream was accepted.
 */
static int config_load(struct sk_config *c, const char *name, yaml_parser_t *p,
		       struct sk_err *err)
{
	struct cfg_doc d = { .name = name };
	struct sk_config tmp;
	int rc, ndocs = 0;

	config_clone(&tmp, c);
	for (;;) {
		yaml_node_t *root;

		if (!yaml_parser_load(p, &d.doc)) {
			rc = yaml_err(p, name, err);
			goto out_free;
		}
		root = yaml_document_get_root_node(&d.doc);
		if (!root) { /* end of the stream */
			yaml_document_delete(&d.doc);
			break;
		}
		if (ndocs++)
			rc = node_err(err, &d, root, NULL,
				      "expected one YAML document, found a "
				      "second one");
		else
			rc = load_document(&tmp, &d, err);
		yaml_document_delete(&d.doc);
		if (rc)
			goto out_free;
	}
	sk_config_free(c);
	*c = tmp;
	return 0;

out_free:
	sk_config_free(&tmp);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Public */

void sk_config_init(struct sk_config *c)
{
	struct broker_ref r;
	size_t i = 0;

	memset(c, 0, sizeof(*c));
	/* The defaults are tested; a bad one is a bug in the tables. */
	while (broker_key_next(&i, &r))
		if (broker_apply(c, &r, r.k->def, "default", NULL))
			abort();
	hook_settings_defaults(&c->hooks);
}

void sk_config_free(struct sk_config *c)
{
	for (size_t i = 0; i < N_BROKER; i++)
		if (broker_keys[i].type == CFG_STRING)
			free(*(char **)((char *)c + broker_keys[i].offset));
	for (size_t i = 0; i < c->n_topics; i++)
		sk_topic_decl_free(&c->topics[i]);
	free(c->topics);
	plugins_free(c);
	free(c->storage_tier);
	free(c->storage_tier_where);
	memset(c, 0, sizeof(*c));
}

int sk_config_load_file(struct sk_config *c, const char *path,
			struct sk_err *err)
{
	yaml_parser_t p;
	struct stat st;
	FILE *f;
	int rc;

	f = fopen(path, "rb");
	if (!f)
		return sk_err_setc(err, -errno, "%s: cannot open: %s", path,
				   strerror(errno));
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(f);
		return sk_err_setc(err, -EISDIR, "%s: is a directory", path);
	}
	if (!yaml_parser_initialize(&p)) {
		fclose(f);
		return sk_err_setc(err, -ENOMEM, "%s: out of memory", path);
	}
	yaml_parser_set_input_file(&p, f);
	rc = config_load(c, path, &p, err);
	yaml_parser_delete(&p);
	fclose(f);
	return rc;
}

int sk_config_load_string(struct sk_config *c, const char *name,
			  const char *yaml, size_t len, struct sk_err *err)
{
	yaml_parser_t p;
	int rc;

	if (!name)
		name = "<string>";
	if (!yaml_parser_initialize(&p))
		return sk_err_setc(err, -ENOMEM, "%s: out of memory", name);
	yaml_parser_set_input_string(&p, (const unsigned char *)yaml, len);
	rc = config_load(c, name, &p, err);
	yaml_parser_delete(&p);
	return rc;
}

int sk_config_set(struct sk_config *c, const char *key, const char *value,
		  const char *origin, struct sk_err *err)
{
	struct broker_ref r;

	if (section_find(key))
		return key_err(err, origin, key,
			       "can only be given in a YAML file");
	if (!broker_find(key, &r))
		return unknown_key(err, origin, key);
	return broker_apply(c, &r, value, origin, err);
}

/* SKALD_ + the key upper-cased with '.' as '_': SKALD_LOG_RETENTION_MS. */
static void env_name(const char *key, char *buf, size_t cap)
{
	size_t n = 0;

	buf_add(buf, cap, &n, "SKALD_");
	for (; *key && n + 1 < cap; key++)
		buf[n++] = *key == '.'			  ? '_'
			   : (*key >= 'a' && *key <= 'z') ? *key - 'a' + 'A'
							  : *key;
	buf[n] = '\0';
}

int sk_config_apply_env(struct sk_config *c, struct sk_err *err)
{
	struct sk_config tmp;
	struct broker_ref r;
	char var[128];
	size_t i = 0;
	int rc;

	config_clone(&tmp, c);
	while (broker_key_next(&i, &r)) {
		const char *v;

		env_name(r.name, var, sizeof(var));
		v = getenv(var);
		if (!v)
			continue;
		rc = broker_apply(&tmp, &r, v, var, err);
		if (rc) {
			sk_config_free(&tmp);
			return rc;
		}
	}
	sk_config_free(c);
	*c = tmp;
	return 0;
}

static void print_row(FILE *out, const char *key, const char *def,
		      const struct cfg_key *k)
{
	char constraint[300];

	key_constraint(k, constraint, sizeof(constraint));
	fprintf(out, "  %-40s %-20s %s (%s)\n", key, def, k->doc, constraint);
}

void sk_config_print_keys(FILE *out)
{
	struct broker_ref r;
	size_t i = 0;

	fprintf(out, "Broker keys: in the YAML file, as --set KEY=VALUE, or "
		     "as SKALD_KEY (upper case, '_' for '.')\n");
	fprintf(out, "  %-40s %-20s %s\n", "KEY", "DEFAULT", "DESCRIPTION");
	while (broker_key_next(&i, &r))
		print_row(out, r.name, *r.k->def ? r.k->def : "\"\"", r.k);
	fprintf(out, "\nTopic keys: under topics: NAME: configs:, or with "
		     "CreateTopics and AlterConfigs\n");
	fprintf(out, "  %-40s %-20s %s\n", "KEY", "DEFAULT FROM",
		"DESCRIPTION");
	for (i = 0; i < N_TOPIC; i++)
		print_row(out, topic_keys[i].name, topic_keys[i].broker_key,
			  &topic_keys[i]);
}

void sk_topic_config_defaults(const struct sk_config *c,
			      struct sk_topic_config *out)
{
	*out = c->topic_defaults;
	out->set_mask = 0;
}

int sk_topic_config_set(struct sk_topic_config *tc, const char *key,
			const char *value, struct sk_err *err)
{
	int i = sk_topic_config_find(key);
	int rc;

	if (i < 0)
		return sk_err_setc(err, -ENOENT, "%s: unknown topic config key",
				   key);
	rc = key_apply(&topic_keys[i], key, tc, value, NULL, err);
	if (rc == 0)
		tc->set_mask |= UINT64_C(1) << i;
	return rc;
}

int sk_topic_config_unset(struct sk_topic_config *tc, const struct sk_config *c,
			  const char *key)
{
	int i = sk_topic_config_find(key);
	const struct cfg_key *k;

	if (i < 0)
		return -ENOENT;
	k = &topic_keys[i];
	memcpy((char *)tc + k->offset,
	       (const char *)&c->topic_defaults + k->offset, k->size);
	tc->set_mask &= ~(UINT64_C(1) << i);
	return 0;
}

size_t sk_topic_config_count(void)
{
	return N_TOPIC;
}

const char *sk_topic_config_name(size_t i)
{
	return i < N_TOPIC ? topic_keys[i].name : NULL;
}

const char *sk_topic_config_doc(size_t i)
{
	return i < N_TOPIC ? topic_keys[i].doc : NULL;
}

const char *sk_topic_config_broker_key(size_t i)
{
	return i < N_TOPIC ? topic_keys[i].broker_key : NULL;
}

int sk_topic_config_find(const char *key)
{
	for (size_t i = 0; i < N_TOPIC; i++)
		if (strcmp(topic_keys[i].name, key) == 0)
			return (int)i;
	return -1;
}

void sk_topic_config_value(const struct sk_topic_config *tc, size_t i,
			   char *buf, size_t cap)
{
	if (cap == 0)
		return;
	if (i >= N_TOPIC) {
		buf[0] = '\0';
		return;
	}
	key_format(&topic_keys[i], tc, buf, cap);
}

bool sk_topic_name_valid(const char *name, struct sk_err *err)
{
	size_t len = strlen(name);

	if (len == 0) {
		sk_err_set(err, "topic name must not be empty");
		return false;
	}
	if (len > 249) {
		sk_err_set(err,
			   "topic name is %zu characters long, at most "
			   "249 are allowed",
			   len);
		return false;
	}
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		sk_err_set(err, "topic name '%s' is not allowed", name);
		return false;
	}
	for (const char *p = name; *p; p++) {
		unsigned char ch = (unsigned char)*p;

		if (host_char((char)ch))
			continue;
		if (ch >= 0x20 && ch < 0x7f)
			sk_err_set(err,
				   "topic name '%s' contains '%c'; only "
				   "ASCII letters, digits, '.', '_' and '-' "
				   "are allowed",
				   name, ch);
		else
			sk_err_set(err,
				   "topic name contains byte 0x%02x; "
				   "only ASCII letters, digits, '.', '_' and "
				   "'-' are allowed",
				   ch);
		return false;
	}
	return true;
}
