/*
 * core/config.c: defaults, YAML, --set, SKALD_* variables, topic keys, and
 * the exact text of every kind of error (FILE:LINE: KEY: what).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "tap.h"

/* Load yaml as "t.yaml"; the error message, or "" on success. */
static int load(struct sk_config *c, const char *yaml, struct sk_err *err)
{
	err->msg[0] = '\0';
	return sk_config_load_string(c, "t.yaml", yaml, strlen(yaml), err);
}

/*
 * yaml must be rejected with exactly want, and leave the configuration as
 * it was (a fresh default one here; num.partitions stands for the rest).
 */
static void load_fails(const char *yaml, const char *want, const char *desc)
{
	struct sk_config c;
	struct sk_err err;
	int rc;

	sk_config_init(&c);
	rc = load(&c, yaml, &err);
	if (rc >= 0)
		snprintf(err.msg, sizeof(err.msg), "(accepted)");
	is_str(err.msg, want, "%s", desc);
	if (c.num_partitions != 1 || c.n_topics != 0)
		ok(0, "%s: config changed by a rejected load", desc);
	sk_config_free(&c);
}

static void test_defaults(void)
{
	struct sk_config c;
	struct sk_topic_config tc;
	char buf[64];

	sk_config_init(&c);
	is_str(c.listeners, "127.0.0.1:9092", "default listeners");
	is_str(c.advertised_listeners, "", "default advertised.listeners");
	is_str(c.admin_listener, "127.0.0.1:9644", "default admin.listener");
	is_str(c.log_dir, "./data", "default log.dir");
	is(c.log_retention_check_interval_ms, 300000,
	   "default log.retention.check.interval.ms");
	is(c.node_id, 0, "default node.id");
	is(c.num_partitions, 1, "default num.partitions");
	ok(c.auto_create_topics, "default auto.create.topics.enable");
	ok(c.delete_topic_enable, "default delete.topic.enable");
	is(c.message_max_bytes, 1048588, "default message.max.bytes");
	is(c.socket_request_max_bytes, 104857600,
	   "default socket.request.max.bytes");
	is(c.connection_output_max_bytes, 16777216,
	   "default connection.output.max.bytes");
	is(c.connections_max_idle_ms, 600000,
	   "default connections.max.idle.ms");
	is(c.max_connections, 10000, "default max.connections");
	is(c.queued_max_requests, 100, "default queued.max.requests");
	is_str(c.log_format, "text", "default log.format");
	is_str(c.log_level, "info", "default log.level");
	is(c.n_topics, 0, "no topics declared");
	is(c.group_initial_rebalance_delay_ms, 3000,
	   "default group.initial.rebalance.delay.ms");
	is(c.group_min_session_timeout_ms, 6000,
	   "default group.min.session.timeout.ms");
	is(c.group_max_session_timeout_ms, 1800000,
	   "default group.max.session.timeout.ms");
	is(c.group_max_size, INT32_MAX, "default group.max.size");
	is(c.offsets_retention_minutes, 10080,
	   "default offsets.retention.minutes");
	is(c.offsets_retention_check_interval_ms, 600000,
	   "default offsets.retention.check.interval.ms");
	is(c.offset_metadata_max_bytes, 4096,
	   "default offset.metadata.max.bytes");
	ok(c.log_cleaner_enable, "default log.cleaner.enable");
	is(c.log_cleaner_backoff_ms, 15000, "default log.cleaner.backoff.ms");
	is(c.log_cleaner_dedupe_buffer_size, 134217728,
	   "default log.cleaner.dedupe.buffer.size");

	tc = c.topic_defaults;
	is(tc.retention_ms, 604800000, "default retention.ms");
	is(tc.retention_bytes, -1, "default retention.bytes");
	is(tc.segment_bytes, 1073741824, "default segment.bytes");
	is(tc.segment_ms, 604800000, "default segment.ms");
	is(tc.max_message_bytes, 1048588,
	   "default max.message.bytes = message.max.bytes");
	is(tc.index_interval_bytes, 4096, "default index.interval.bytes");
	ok(tc.flush_messages == INT64_MAX, "default flush.messages");
	ok(tc.flush_ms == INT64_MAX, "default flush.ms");
	is(tc.min_insync_replicas, 1, "default min.insync.replicas");
	is(tc.timestamp_type, SK_TS_CREATE_TIME,
	   "default message.timestamp.type");
	is(tc.cleanup_policy, SK_CLEANUP_DELETE, "default cleanup.policy");
	is(tc.delete_retention_ms, 86400000, "default delete.retention.ms");
	ok(tc.min_cleanable_ratio == 0.5, "default min.cleanable.dirty.ratio");
	is(tc.min_compaction_lag_ms, 0, "default min.compaction.lag.ms");
	ok(tc.max_compaction_lag_ms == INT64_MAX,
	   "default max.compaction.lag.ms");
	is(tc.set_mask, 0, "topic defaults flag nothing as set");

	sk_topic_config_defaults(&c, &tc);
	sk_topic_config_value(&tc, (size_t)sk_topic_config_find("flush.ms"),
			      buf, sizeof(buf));
	is_str(buf, "9223372036854775807", "flush.ms prints as Kafka does");
	sk_config_free(&c);
}

static void test_yaml_types(void)
{
	static const char yaml[] =
		"# every type\n"
		"listeners: PLAINTEXT://0.0.0.0:19092\n"
		"advertised.listeners: plaintext://[::1]:0019093\n"
		"log.dir: /var/lib/skald\n"
		"log.retention.check.interval.ms: 200\n"
		"node.id: 7\n"
		"num.partitions: \"3\"\n" /* quoted is fine */
		"auto.create.topics.enable: false\n"
		"delete.topic.enable: false\n"
		"socket.request.max.bytes: 2048\n"
		"connection.output.max.bytes: 65536\n"
		"connections.max.idle.ms: 100\n"
		"max.connections: 5\n"
		"queued.max.requests: 1\n"
		"log.format: json\n"
		"log.level: debug\n"
		"log.retention.ms: -1\n"
		"log.retention.bytes: 1000000\n"
		"log.segment.bytes: 1024\n"
		"log.roll.ms: 1\n"
		"log.index.interval.bytes: 0\n"
		"log.flush.interval.messages: 1\n"
		"log.flush.interval.ms: 0\n"
		"min.insync.replicas: 2\n"
		"log.message.timestamp.type: LogAppendTime\n"
		"log.cleanup.policy: delete,compact\n"
		"group.initial.rebalance.delay.ms: 0\n"
		"group.min.session.timeout.ms: 100\n"
		"group.max.session.timeout.ms: 60000\n"
		"group.max.size: 3\n"
		"offsets.retention.minutes: 1\n"
		"offsets.retention.check.interval.ms: 50\n"
		"offset.metadata.max.bytes: 0\n"
		"log.cleaner.enable: false\n"
		"log.cleaner.backoff.ms: 200\n"
		"log.cleaner.dedupe.buffer.size: 4096\n"
		"log.cleaner.delete.retention.ms: 0\n"
		"log.cleaner.min.cleanable.ratio: 0.25\n"
		"log.cleaner.min.compaction.lag.ms: 5\n"
		"log.cleaner.max.compaction.lag.ms: 1\n";
	struct sk_config c;
	struct sk_err err;
	int rc;

	sk_config_init(&c);
	rc = load(&c, yaml, &err);
	is(rc, 0, "every key loads");
	if (rc)
		diag("%s", err.msg);
	is_str(c.listeners, "0.0.0.0:19092", "PLAINTEXT:// stripped");
	is_str(c.advertised_listeners, "[::1]:19093",
	       "IPv6 listener, protocol in any case, port normalised");
	is_str(c.log_dir, "/var/lib/skald", "string");
	is(c.log_retention_check_interval_ms, 200,
	   "log.retention.check.interval.ms");
	is(c.node_id, 7, "int32");
	is(c.num_partitions, 3, "quoted integer");
	ok(!c.auto_create_topics && !c.delete_topic_enable, "booleans");
	is(c.socket_request_max_bytes, 2048, "int64");
	is(c.connection_output_max_bytes, 65536, "int64 at its minimum");
	is(c.connections_max_idle_ms, 100, "connections.max.idle.ms");
	is(c.max_connections, 5, "max.connections");
	is(c.queued_max_requests, 1, "queued.max.requests");
	is_str(c.log_format, "json", "log.format");
	is_str(c.log_level, "debug", "log.level");
	is(c.topic_defaults.retention_ms, -1, "log.retention.ms");
	is(c.topic_defaults.retention_bytes, 1000000, "log.retention.bytes");
	is(c.topic_defaults.segment_bytes, 1024, "log.segment.bytes");
	is(c.topic_defaults.segment_ms, 1, "log.roll.ms");
	is(c.topic_defaults.index_interval_bytes, 0,
	   "log.index.interval.bytes");
	is(c.topic_defaults.flush_messages, 1, "log.flush.interval.messages");
	is(c.topic_defaults.flush_ms, 0, "log.flush.interval.ms");
	is(c.topic_defaults.min_insync_replicas, 2, "min.insync.replicas");
	is(c.topic_defaults.timestamp_type, SK_TS_LOG_APPEND_TIME,
	   "log.message.timestamp.type");
	is(c.topic_defaults.cleanup_policy,
	   SK_CLEANUP_DELETE | SK_CLEANUP_COMPACT, "log.cleanup.policy");
	is(c.topic_defaults.set_mask, 0, "broker defaults are not 'set'");
	ok(!c.log_cleaner_enable && c.log_cleaner_backoff_ms == 200 &&
		   c.log_cleaner_dedupe_buffer_size == 4096,
	   "log.cleaner.* broker keys");
	ok(c.topic_defaults.delete_retention_ms == 0 &&
		   c.topic_defaults.min_cleanable_ratio == 0.25 &&
		   c.topic_defaults.min_compaction_lag_ms == 5 &&
		   c.topic_defaults.max_compaction_lag_ms == 1,
	   "log.cleaner.* topic defaults, the ratio a double");
	is(c.group_initial_rebalance_delay_ms, 0,
	   "group.initial.rebalance.delay.ms");
	is(c.group_min_session_timeout_ms, 100, "group.min.session.timeout.ms");
	is(c.group_max_session_timeout_ms, 60000,
	   "group.max.session.timeout.ms");
	is(c.group_max_size, 3, "group.max.size");
	is(c.offsets_retention_minutes, 1, "offsets.retention.minutes");
	is(c.offsets_retention_check_interval_ms, 50,
	   "offsets.retention.check.interval.ms");
	is(c.offset_metadata_max_bytes, 0, "offset.metadata.max.bytes");

	/* A second load goes on top of the first. */
	rc = load(&c, "---\nnum.partitions: 4\n...\n", &err);
	ok(rc == 0 && c.num_partitions == 4 && c.node_id == 7,
	   "second load on top of the first");
	rc = load(&c, "", &err);
	ok(rc == 0 && c.num_partitions == 4, "empty document: no change");
	rc = load(&c, "# only a comment\n\n", &err);
	ok(rc == 0, "comment-only document");
	rc = load(&c, "base: &n 9\n", &err);
	ok(rc < 0, "anchors do not make unknown keys known");
	rc = load(&c, "num.partitions: &n 9\nnode.id: *n\n", &err);
	ok(rc == 0 && c.num_partitions == 9 && c.node_id == 9,
	   "aliases resolve");
	sk_config_free(&c);
}

static void test_yaml_errors(void)
{
	load_fails("listeners: 127.0.0.1:9092\n"
		   "log.dir: ./data\n"
		   "\n"
		   "# comment\n"
		   "num.partitions: lots\n",
		   "t.yaml:5: num.partitions: expected an integer in "
		   "[1, 10000], got 'lots'",
		   "not an integer, line counted past blanks and comments");
	load_fails("group.max.size: 0\n",
		   "t.yaml:1: group.max.size: expected an integer in "
		   "[1, 2147483647], got '0'",
		   "group.max.size below its minimum");
	load_fails("log.retention.check.interval.ms: 0\n",
		   "t.yaml:1: log.retention.check.interval.ms: expected an "
		   "integer >= 1, got '0'",
		   "log.retention.check.interval.ms below its minimum");
	load_fails("num.partitions: 0\n",
		   "t.yaml:1: num.partitions: expected an integer in "
		   "[1, 10000], got '0'",
		   "below the minimum");
	load_fails("num.partitions: 10001\n",
		   "t.yaml:1: num.partitions: expected an integer in "
		   "[1, 10000], got '10001'",
		   "above the maximum");
	load_fails("num.partitions: 12abc\n",
		   "t.yaml:1: num.partitions: expected an integer in "
		   "[1, 10000], got '12abc'",
		   "trailing garbage");
	load_fails("num.partitions: \" 12\"\n",
		   "t.yaml:1: num.partitions: expected an integer in "
		   "[1, 10000], got ' 12'",
		   "leading blank");
	load_fails("num.partitions: +3\n",
		   "t.yaml:1: num.partitions: expected an integer in "
		   "[1, 10000], got '+3'",
		   "plus sign");
	load_fails("num.partitions: 1e3\n",
		   "t.yaml:1: num.partitions: expected an integer in "
		   "[1, 10000], got '1e3'",
		   "exponent");
	load_fails("num.partitions:\n",
		   "t.yaml:1: num.partitions: expected an integer in "
		   "[1, 10000], got ''",
		   "empty value");
	load_fails("log.retention.ms: 99999999999999999999\n",
		   "t.yaml:1: log.retention.ms: expected an integer >= -1, "
		   "got '99999999999999999999'",
		   "int64 overflow");
	load_fails("log.retention.ms: -2\n",
		   "t.yaml:1: log.retention.ms: expected an integer >= -1, "
		   "got '-2'",
		   "retention below -1");
	load_fails("node.id: 2147483648\n",
		   "t.yaml:1: node.id: expected an integer in "
		   "[0, 2147483647], got '2147483648'",
		   "int32 overflow");
	load_fails("log.segment.bytes: 1023\n",
		   "t.yaml:1: log.segment.bytes: expected an integer in "
		   "[1024, 2147483647], got '1023'",
		   "segment too small");
	load_fails("num.partitions: 2\nauto.create.topics.enable: yes\n",
		   "t.yaml:2: auto.create.topics.enable: expected true or "
		   "false, got 'yes'",
		   "booleans are strict");
	load_fails("delete.topic.enable: True\n",
		   "t.yaml:1: delete.topic.enable: expected true or false, "
		   "got 'True'",
		   "booleans are case-sensitive");
	load_fails("log.format: xml\n",
		   "t.yaml:1: log.format: expected one of 'text', 'json', "
		   "got 'xml'",
		   "string outside its choices");
	load_fails("log.level: verbose\n",
		   "t.yaml:1: log.level: expected one of 'debug', 'info', "
		   "'warn', 'error', got 'verbose'",
		   "log.level choices");
	load_fails("log.cleanup.policy: compact, delete\n",
		   "t.yaml:1: log.cleanup.policy: expected one of 'delete', "
		   "'compact', 'compact,delete', 'delete,compact', got "
		   "'compact, delete'",
		   "enum outside its choices");
	load_fails("log.message.timestamp.type: createtime\n",
		   "t.yaml:1: log.message.timestamp.type: expected one of "
		   "'CreateTime', 'LogAppendTime', got 'createtime'",
		   "enum is case-sensitive");
	load_fails("log.dir: \"\"\n", "t.yaml:1: log.dir: must not be empty",
		   "empty string where one is required");
	load_fails("log.dir: \"a\\0b\"\n",
		   "t.yaml:1: log.dir: value contains a NUL byte",
		   "NUL byte in a value");
	load_fails("num.partitions: 2\n"
		   "node.id: 1\n"
		   "\n"
		   "frobnicate: 1\n",
		   "t.yaml:4: frobnicate: unknown key", "unknown key");
	load_fails("retention.ms: 1000\n",
		   "t.yaml:1: retention.ms: unknown key (a topic key; its "
		   "broker default is log.retention.ms)",
		   "topic key at the top level");
	load_fails("topics:\n  \"archive.*\":\n    config: {retention.ms: 1}\n",
		   "t.yaml:3: topics.archive.*.config: unknown key: topic "
		   "configs go under 'configs:'",
		   "config: under a topic points to configs:");
	load_fails("topics:\n  t:\n    retention.ms: 1\n",
		   "t.yaml:3: topics.t.retention.ms: unknown key: topic "
		   "configs go under 'configs:'",
		   "a topic key directly under a topic points to configs:");
	load_fails("num.partitions: 2\n"
		   "node.id: 1\n"
		   "num.partitions: 3\n",
		   "t.yaml:3: num.partitions: duplicate key (first at line 1)",
		   "duplicate key");
	load_fails("num.partitions:\n  - 1\n  - 2\n",
		   "t.yaml:1: num.partitions: expected a single value, got a "
		   "list",
		   "list where a value is expected");
	load_fails("node.id: 1\nlog.dir: {a: b}\n",
		   "t.yaml:2: log.dir: expected a single value, got a mapping",
		   "mapping where a value is expected");
	load_fails("frobnicate: {a: b}\n", "t.yaml:1: frobnicate: unknown key",
		   "unknown key wins over the shape of its value");
	load_fails("- num.partitions: 1\n",
		   "t.yaml:1: expected a mapping of keys to values, got a list",
		   "top level not a mapping");
	load_fails("? [a, b]\n: 1\n", "t.yaml:1: expected a key, got a list",
		   "non-scalar key");
	load_fails("num.partitions: 2\n---\nnode.id: 1\n",
		   "t.yaml:3: expected one YAML document, found a second one",
		   "two documents");
	load_fails("num.partitions: 2\nnode.id: [1\n",
		   "t.yaml:3:1: YAML syntax error: did not find expected ',' "
		   "or ']' (while parsing a flow sequence started at line 2)",
		   "syntax error names line, column and libyaml's problem");
	load_fails("num.partitions: 2\n  node.id: 1\n",
		   "t.yaml:2:10: YAML syntax error: mapping values are not "
		   "allowed in this context",
		   "syntax error without context");
	load_fails("num.partitions: *nowhere\n",
		   "t.yaml:1:17: YAML syntax error: found undefined alias",
		   "undefined alias");
	load_fails("num.partitions: 5\nbogus: 1\n",
		   "t.yaml:2: bogus: unknown key",
		   "an error after a good key leaves the config unchanged");
}

static void test_listeners(void)
{
	static const struct {
		const char *key, *in, *want;
	} cases[] = {
		{ "listeners", "localhost:9092", NULL },
		{ "listeners", "PLAINTEXT://my-host.example:1", NULL },
		{ "listeners", "[fe80::1%eth0]:9092",
		  "--set: listeners: invalid host 'fe80::1%eth0' in "
		  "'[fe80::1%eth0]:9092'" },
		{ "listeners", "127.0.0.1",
		  "--set: listeners: expected HOST:PORT or "
		  "PLAINTEXT://HOST:PORT, got '127.0.0.1'" },
		{ "listeners", "127.0.0.1:0",
		  "--set: listeners: port must be in [1, 65535], got '0'" },
		{ "listeners", "127.0.0.1:65536",
		  "--set: listeners: port must be in [1, 65535], got "
		  "'65536'" },
		{ "listeners", "127.0.0.1:http",
		  "--set: listeners: port must be in [1, 65535], got "
		  "'http'" },
		{ "listeners", "::1:9092",
		  "--set: listeners: an IPv6 address goes in brackets, as in "
		  "[::1]:9092, got '::1:9092'" },
		{ "listeners", "PLAINTEXT://:9092",
		  "--set: listeners: missing host in 'PLAINTEXT://:9092' "
		  "(use 0.0.0.0 for every address)" },
		{ "listeners", "SSL://host:9093",
		  "--set: listeners: security protocol 'SSL' is not "
		  "supported, only PLAINTEXT" },
		{ "listeners", "a:1,b:2",
		  "--set: listeners: expected one listener, got 'a:1,b:2'" },
		{ "listeners", "[::1:9092",
		  "--set: listeners: missing ']' in '[::1:9092'" },
		{ "listeners", "", "--set: listeners: must not be empty" },
		{ "advertised.listeners", "", NULL },
		{ "advertised.listeners", "broker1:9092", NULL },
		{ "advertised.listeners", "0.0.0.0:9092",
		  "--set: advertised.listeners: '0.0.0.0:9092' cannot be "
		  "advertised: give an address clients can connect to" },
		{ "admin.listener", "", NULL },
		{ "admin.listener", "127.0.0.1:0", NULL },
		{ "admin.listener", "[::1]:9644", NULL },
		{ "admin.listener", "127.0.0.1:65536",
		  "--set: admin.listener: port must be in [0, 65535], got "
		  "'65536'" },
		{ "admin.listener", "http://127.0.0.1:9644",
		  "--set: admin.listener: expected HOST:PORT (no scheme), got "
		  "'http://127.0.0.1:9644'" },
		{ "admin.listener", "PLAINTEXT://127.0.0.1:9644",
		  "--set: admin.listener: expected HOST:PORT (no scheme), got "
		  "'PLAINTEXT://127.0.0.1:9644'" },
		/* The admin listener's errors speak of its own form. */
		{ "admin.listener", "localhost",
		  "--set: admin.listener: expected HOST:PORT, got "
		  "'localhost'" },
		{ "admin.listener", "::1:9644",
		  "--set: admin.listener: an IPv6 address goes in brackets, "
		  "as in [::1]:9644, got '::1:9644'" },
		{ "listeners", "localhost",
		  "--set: listeners: expected HOST:PORT or "
		  "PLAINTEXT://HOST:PORT, got 'localhost'" },
	};
	struct sk_config c;
	struct sk_err err;

	sk_config_init(&c);
	for (size_t i = 0; i < SK_ARRAY_SIZE(cases); i++) {
		int rc = sk_config_set(&c, cases[i].key, cases[i].in, "--set",
				       &err);

		if (!cases[i].want)
			ok(rc == 0, "%s '%s' accepted", cases[i].key,
			   cases[i].in);
		else if (rc == 0)
			ok(0, "%s '%s' rejected", cases[i].key, cases[i].in);
		else
			is_str(err.msg, cases[i].want, "%s '%s' rejected",
			       cases[i].key, cases[i].in);
	}
	is_str(c.advertised_listeners, "broker1:9092",
	       "a rejected value keeps the last good one");
	is_str(c.listeners, "my-host.example:1", "listener stored normalised");
	is_str(c.admin_listener, "[::1]:9644", "admin.listener stored");
	sk_config_free(&c);
}

static void test_topics(void)
{
	static const char yaml[] = "num.partitions: 2\n"
				   "topics:\n"
				   "  orders:\n"
				   "    partitions: 3\n"
				   "    configs:\n"
				   "      retention.ms: 0036\n"
				   "      cleanup.policy: delete,compact\n"
				   "  _internal.log-1:\n"
				   "  empty: {}\n";
	struct sk_config c;
	struct sk_err err;
	const struct sk_topic_decl *t;
	int rc;

	sk_config_init(&c);
	rc = load(&c, yaml, &err);
	is(rc, 0, "topics section loads");
	if (rc)
		diag("%s", err.msg);
	is(c.n_topics, 3, "three topics");
	if (c.n_topics != 3) {
		sk_config_free(&c);
		return;
	}
	t = &c.topics[0];
	is_str(t->name, "orders", "topic name");
	is(t->partitions, 3, "partitions");
	is_str(t->where, "t.yaml:3", "where is the line of the name");
	is(t->n_configs, 2, "two configs");
	is_str(t->configs[0].key, "retention.ms", "config key kept");
	is_str(t->configs[0].value, "36", "integer normalised");
	is_str(t->configs[1].value, "compact,delete",
	       "cleanup.policy normalised as Kafka prints it");
	t = &c.topics[1];
	ok(strcmp(t->name, "_internal.log-1") == 0 && t->partitions == -1 &&
		   t->n_configs == 0 && strcmp(t->where, "t.yaml:8") == 0,
	   "empty entry: all defaults, partitions -1");
	ok(c.topics[2].partitions == -1 && c.topics[2].n_configs == 0,
	   "{} entry");

	rc = load(&c, "topics:\n  orders:\n    partitions: 5\n  new: {}\n",
		  &err);
	ok(rc == 0 && c.n_topics == 4 && c.topics[0].partitions == 5 &&
		   c.topics[0].n_configs == 0 &&
		   strcmp(c.topics[3].name, "new") == 0,
	   "a later load replaces a topic of the same name, adds others");
	sk_config_free(&c);

	load_fails("topics:\n  bad name:\n    partitions: 1\n",
		   "t.yaml:2: topics: topic name 'bad name' contains ' '; "
		   "only ASCII letters, digits, '.', '_' and '-' are allowed",
		   "bad topic name");
	load_fails("topics:\n  ..:\n",
		   "t.yaml:2: topics: topic name '..' is not allowed",
		   "topic name ..");
	load_fails("topics:\n  \"\":\n",
		   "t.yaml:2: topics: topic name must not be empty",
		   "empty topic name");
	load_fails("topics:\n  orders:\n    partitions: 0\n",
		   "t.yaml:3: topics.orders.partitions: expected an integer "
		   "in [1, 10000], got '0'",
		   "bad partitions");
	load_fails("topics:\n  orders:\n    partitions: many\n",
		   "t.yaml:3: topics.orders.partitions: expected an integer "
		   "in [1, 10000], got 'many'",
		   "partitions not an integer");
	load_fails("topics:\n  orders:\n    partitions: [1]\n",
		   "t.yaml:3: topics.orders.partitions: expected a single "
		   "value, got a list",
		   "partitions not a scalar");
	load_fails("topics:\n  orders:\n    partitions: 1\n"
		   "    replication.factor: 3\n",
		   "t.yaml:4: topics.orders.replication.factor: unknown key",
		   "unknown key in a topic entry");
	load_fails("topics:\n  orders:\n    configs:\n"
		   "      retention.ms: 1\n"
		   "      retention.minutes: 1\n",
		   "t.yaml:5: topics.orders.configs.retention.minutes: "
		   "unknown key",
		   "unknown topic config key");
	load_fails("topics:\n  orders:\n    configs:\n"
		   "      segment.bytes: 1048576\n"
		   "      retention.ms: soon\n",
		   "t.yaml:5: topics.orders.configs.retention.ms: expected an "
		   "integer >= -1, got 'soon'",
		   "bad topic config value");
	load_fails("topics:\n  orders:\n    configs:\n"
		   "      cleanup.policy: none\n",
		   "t.yaml:4: topics.orders.configs.cleanup.policy: expected "
		   "one of 'delete', 'compact', 'compact,delete', "
		   "'delete,compact', got 'none'",
		   "bad cleanup.policy");
	load_fails("topics:\n  orders:\n    configs:\n"
		   "      retention.ms: 1\n"
		   "      retention.ms: 2\n",
		   "t.yaml:5: topics.orders.configs.retention.ms: duplicate "
		   "key (first at line 4)",
		   "duplicate topic config key");
	load_fails("topics:\n  a: {}\n  b: {}\n  a: {}\n",
		   "t.yaml:4: topics.a: duplicate key (first at line 2)",
		   "duplicate topic");
	load_fails("topics: [a, b]\n",
		   "t.yaml:1: topics: expected a mapping of topic names to "
		   "settings, got a list",
		   "topics not a mapping");
	load_fails("topics:\n  orders: 3\n",
		   "t.yaml:2: topics.orders: expected a mapping with "
		   "partitions and configs, got a value",
		   "topic entry not a mapping");
	load_fails("topics:\n  orders:\n    configs: [retention.ms]\n",
		   "t.yaml:3: topics.orders.configs: expected a mapping of "
		   "topic keys to values, got a list",
		   "configs not a mapping");
	load_fails("topics:\n  orders:\n    configs:\n"
		   "      retention.ms: {a: 1}\n",
		   "t.yaml:4: topics.orders.configs.retention.ms: expected a "
		   "single value, got a mapping",
		   "topic config value not a scalar");

	sk_config_init(&c);
	ok(load(&c, "topics:\n", &err) == 0 && c.n_topics == 0,
	   "empty topics section");
	rc = sk_config_set(&c, "topics", "x", "--set", &err);
	ok(rc < 0, "topics cannot be --set");
	is_str(err.msg, "--set: topics: can only be given in a YAML file",
	       "topics --set message");
	sk_config_free(&c);
}

static void test_topic_names(void)
{
	char name[300];
	struct sk_err err;

	ok(sk_topic_name_valid("a", &err), "one character");
	ok(sk_topic_name_valid("Orders.v2_x-y", &err), "all allowed chars");
	ok(sk_topic_name_valid("...", &err), "... is allowed");
	memset(name, 'x', 249);
	name[249] = '\0';
	ok(sk_topic_name_valid(name, &err), "249 characters");
	name[249] = 'x';
	name[250] = '\0';
	ok(!sk_topic_name_valid(name, &err), "250 characters rejected");
	is_str(err.msg,
	       "topic name is 250 characters long, at most 249 are "
	       "allowed",
	       "too long message");
	ok(!sk_topic_name_valid(".", &err), ". rejected");
	ok(!sk_topic_name_valid("a/b", &err), "slash rejected");
	is_str(err.msg,
	       "topic name 'a/b' contains '/'; only ASCII letters, "
	       "digits, '.', '_' and '-' are allowed",
	       "slash message");
	ok(!sk_topic_name_valid("caf\xc3\xa9", &err), "non-ASCII rejected");
	is_str(err.msg,
	       "topic name contains byte 0xc3; only ASCII letters, "
	       "digits, '.', '_' and '-' are allowed",
	       "non-ASCII message");
	ok(!sk_topic_name_valid("", NULL), "NULL err is fine");
}

static void test_set_and_env(void)
{
	struct sk_config c;
	struct sk_err err;
	int rc;

	sk_config_init(&c);
	ok(sk_config_set(&c, "num.partitions", "6", "--set", &err) == 0 &&
		   c.num_partitions == 6,
	   "--set num.partitions");
	rc = sk_config_set(&c, "num.partitions", "lots", "--set", &err);
	ok(rc == -EINVAL && c.num_partitions == 6, "--set bad value rejected");
	is_str(err.msg,
	       "--set: num.partitions: expected an integer in "
	       "[1, 10000], got 'lots'",
	       "--set message");
	rc = sk_config_set(&c, "frobnicate", "1", "--set", &err);
	is_str(err.msg, "--set: frobnicate: unknown key", "--set unknown key");
	rc = sk_config_set(&c, "num.partitions", "x", NULL, &err);
	is_str(err.msg,
	       "num.partitions: expected an integer in [1, 10000], "
	       "got 'x'",
	       "no origin: KEY: what");
	ok(sk_config_set(&c, "log.retention.ms", "1000", "--set", &err) == 0 &&
		   c.topic_defaults.retention_ms == 1000,
	   "--set a topic default");

	setenv("SKALD_NUM_PARTITIONS", "7", 1);
	setenv("SKALD_LOG_RETENTION_MS", "2000", 1);
	setenv("SKALD_AUTO_CREATE_TOPICS_ENABLE", "false", 1);
	setenv("SKALD_LOG_MESSAGE_TIMESTAMP_TYPE", "LogAppendTime", 1);
	setenv("SKALD_MIN_INSYNC_REPLICAS", "2", 1);
	rc = sk_config_apply_env(&c, &err);
	is(rc, 0, "environment applies");
	ok(c.num_partitions == 7 && c.topic_defaults.retention_ms == 2000 &&
		   !c.auto_create_topics &&
		   c.topic_defaults.timestamp_type == SK_TS_LOG_APPEND_TIME &&
		   c.topic_defaults.min_insync_replicas == 2,
	   "SKALD_* values applied");

	setenv("SKALD_NUM_PARTITIONS", "8", 1);
	setenv("SKALD_LOG_LEVEL", "loud", 1);
	rc = sk_config_apply_env(&c, &err);
	ok(rc < 0, "bad SKALD_LOG_LEVEL rejected");
	is_str(err.msg,
	       "SKALD_LOG_LEVEL: log.level: expected one of 'debug', "
	       "'info', 'warn', 'error', got 'loud'",
	       "environment message names the variable");
	is(c.num_partitions, 7, "a rejected environment changes nothing");
	unsetenv("SKALD_LOG_LEVEL");
	unsetenv("SKALD_NUM_PARTITIONS");
	unsetenv("SKALD_LOG_RETENTION_MS");
	unsetenv("SKALD_AUTO_CREATE_TOPICS_ENABLE");
	unsetenv("SKALD_LOG_MESSAGE_TIMESTAMP_TYPE");
	unsetenv("SKALD_MIN_INSYNC_REPLICAS");
	sk_config_free(&c);
}

static void test_message_max_bytes(void)
{
	struct sk_config c;
	struct sk_topic_config tc;
	struct sk_err err;

	sk_config_init(&c);
	ok(load(&c, "message.max.bytes: 2000000\n", &err) == 0 &&
		   c.message_max_bytes == 2000000 &&
		   c.topic_defaults.max_message_bytes == 2000000,
	   "YAML message.max.bytes sets the max.message.bytes default");
	sk_config_set(&c, "message.max.bytes", "0", "--set", &err);
	ok(c.message_max_bytes == 0 && c.topic_defaults.max_message_bytes == 0,
	   "--set at the minimum propagates");
	sk_config_set(&c, "message.max.bytes", "2147483647", "--set", &err);
	ok(c.message_max_bytes == INT32_MAX &&
		   c.topic_defaults.max_message_bytes == INT32_MAX,
	   "--set at the maximum propagates");
	ok(sk_config_set(&c, "message.max.bytes", "-1", "--set", &err) < 0 &&
		   c.topic_defaults.max_message_bytes == INT32_MAX,
	   "a rejected value propagates nothing");
	setenv("SKALD_MESSAGE_MAX_BYTES", "4096", 1);
	sk_config_apply_env(&c, &err);
	unsetenv("SKALD_MESSAGE_MAX_BYTES");
	ok(c.message_max_bytes == 4096 &&
		   c.topic_defaults.max_message_bytes == 4096,
	   "SKALD_MESSAGE_MAX_BYTES propagates");
	sk_topic_config_defaults(&c, &tc);
	is(tc.max_message_bytes, 4096, "new topics inherit it");
	is_str(sk_topic_config_broker_key(
		       (size_t)sk_topic_config_find("max.message.bytes")),
	       "message.max.bytes", "its broker key");
	sk_config_free(&c);
}

static void test_topic_config(void)
{
	static const struct {
		const char *key, *in, *out;
	} cases[] = {
		{ "retention.ms", "3600000", "3600000" },
		{ "retention.ms", "-1", "-1" },
		{ "retention.bytes", "1073741824", "1073741824" },
		{ "segment.bytes", "1024", "1024" },
		{ "segment.ms", "60000", "60000" },
		{ "max.message.bytes", "0100", "100" },
		{ "index.interval.bytes", "0", "0" },
		{ "flush.messages", "1", "1" },
		{ "flush.ms", "1000", "1000" },
		{ "min.insync.replicas", "2", "2" },
		{ "message.timestamp.type", "LogAppendTime", "LogAppendTime" },
		{ "message.timestamp.type", "CreateTime", "CreateTime" },
		{ "cleanup.policy", "compact", "compact" },
		{ "cleanup.policy", "delete", "delete" },
		{ "cleanup.policy", "compact,delete", "compact,delete" },
		{ "cleanup.policy", "delete,compact", "compact,delete" },
		{ "delete.retention.ms", "0", "0" },
		{ "min.cleanable.dirty.ratio", "0.5", "0.5" },
		{ "min.cleanable.dirty.ratio", ".25", "0.25" },
		{ "min.cleanable.dirty.ratio", "0.10", "0.1" },
		{ "min.cleanable.dirty.ratio", "5e-1", "0.5" },
		{ "min.cleanable.dirty.ratio", "0", "0" },
		{ "min.cleanable.dirty.ratio", "1", "1" },
		{ "min.compaction.lag.ms", "1000", "1000" },
		{ "max.compaction.lag.ms", "60000", "60000" },
	};
	static const struct {
		const char *key, *in, *msg;
	} bad[] = {
		{ "retention.ms", "x",
		  "retention.ms: expected an integer >= -1, got 'x'" },
		{ "retention.bytes", "-2",
		  "retention.bytes: expected an integer >= -1, got '-2'" },
		{ "segment.bytes", "100",
		  "segment.bytes: expected an integer in [1024, 2147483647], "
		  "got '100'" },
		{ "segment.ms", "0",
		  "segment.ms: expected an integer >= 1, got '0'" },
		{ "max.message.bytes", "2147483648",
		  "max.message.bytes: expected an integer in [0, 2147483647], "
		  "got '2147483648'" },
		{ "index.interval.bytes", "-1",
		  "index.interval.bytes: expected an integer in "
		  "[0, 2147483647], got '-1'" },
		{ "flush.messages", "0",
		  "flush.messages: expected an integer >= 1, got '0'" },
		{ "flush.ms", "",
		  "flush.ms: expected an integer >= 0, got ''" },
		{ "min.insync.replicas", "0",
		  "min.insync.replicas: expected an integer in "
		  "[1, 2147483647], got '0'" },
		{ "message.timestamp.type", "Now",
		  "message.timestamp.type: expected one of 'CreateTime', "
		  "'LogAppendTime', got 'Now'" },
		{ "cleanup.policy", "compact,compact",
		  "cleanup.policy: expected one of 'delete', 'compact', "
		  "'compact,delete', 'delete,compact', got 'compact,compact'" },
		{ "min.cleanable.dirty.ratio", "1.5",
		  "min.cleanable.dirty.ratio: expected a number in [0, 1], got '1.5'" },
		{ "min.cleanable.dirty.ratio", "-0.1",
		  "min.cleanable.dirty.ratio: expected a number in [0, 1], got '-0.1'" },
		{ "min.cleanable.dirty.ratio", "abc",
		  "min.cleanable.dirty.ratio: expected a number in [0, 1], got 'abc'" },
		{ "min.cleanable.dirty.ratio", "",
		  "min.cleanable.dirty.ratio: expected a number in [0, 1], got ''" },
		{ "min.cleanable.dirty.ratio", " 0.5",
		  "min.cleanable.dirty.ratio: expected a number in [0, 1], got ' 0.5'" },
		{ "min.cleanable.dirty.ratio", "0x1",
		  "min.cleanable.dirty.ratio: expected a number in [0, 1], got '0x1'" },
		{ "min.cleanable.dirty.ratio", "nan",
		  "min.cleanable.dirty.ratio: expected a number in [0, 1], got 'nan'" },
		{ "min.cleanable.dirty.ratio", "inf",
		  "min.cleanable.dirty.ratio: expected a number in [0, 1], got 'inf'" },
		{ "min.cleanable.dirty.ratio", "0.5x",
		  "min.cleanable.dirty.ratio: expected a number in [0, 1], got '0.5x'" },
		{ "min.cleanable.dirty.ratio", "+0.5",
		  "min.cleanable.dirty.ratio: expected a number in [0, 1], got '+0.5'" },
		{ "delete.retention.ms", "-1",
		  "delete.retention.ms: expected an integer >= 0, got '-1'" },
		{ "max.compaction.lag.ms", "0",
		  "max.compaction.lag.ms: expected an integer >= 1, got '0'" },
	};
	struct sk_config c;
	struct sk_topic_config tc, before;
	struct sk_err err;
	char buf[64], want[64];
	bool all = true;
	int i;

	sk_config_init(&c);
	/* 15, and tiered storage's remote.storage.enable, local.retention.* */
	is(sk_topic_config_count(), 18, "eighteen topic keys");
	for (size_t k = 0; k < sk_topic_config_count(); k++) {
		const char *name = sk_topic_config_name(k);

		if (sk_topic_config_find(name) != (int)k ||
		    !sk_topic_config_doc(k) || !*sk_topic_config_doc(k) ||
		    !sk_topic_config_broker_key(k)) {
			all = false;
			diag("entry %zu (%s) inconsistent", k, name);
		}
	}
	ok(all, "find(name(i)) == i, every key has a doc and a broker key");
	ok(sk_topic_config_find("nope") == -1 &&
		   sk_topic_config_name(sk_topic_config_count()) == NULL,
	   "unknown key and out-of-range index");
	is_str(sk_topic_config_broker_key(
		       (size_t)sk_topic_config_find("segment.ms")),
	       "log.roll.ms", "segment.ms defaults from log.roll.ms");

	for (size_t k = 0; k < SK_ARRAY_SIZE(cases); k++) {
		int rc;

		sk_topic_config_defaults(&c, &tc);
		i = sk_topic_config_find(cases[k].key);
		rc = sk_topic_config_set(&tc, cases[k].key, cases[k].in, &err);
		sk_topic_config_value(&tc, (size_t)i, buf, sizeof(buf));
		ok(rc == 0 && strcmp(buf, cases[k].out) == 0 &&
			   tc.set_mask == UINT64_C(1) << i &&
			   sk_topic_config_is_set(&tc, (size_t)i),
		   "%s=%s reads back as %s, flagged set", cases[k].key,
		   cases[k].in, cases[k].out);
		if (rc)
			diag("%s", err.msg);
		sk_topic_config_value(&c.topic_defaults, (size_t)i, want,
				      sizeof(want));
		sk_topic_config_unset(&tc, &c, cases[k].key);
		sk_topic_config_value(&tc, (size_t)i, buf, sizeof(buf));
		ok(strcmp(buf, want) == 0 && tc.set_mask == 0,
		   "unset %s restores %s", cases[k].key, want);
	}

	sk_topic_config_defaults(&c, &tc);
	for (size_t k = 0; k < SK_ARRAY_SIZE(bad); k++) {
		int rc;

		before = tc;
		rc = sk_topic_config_set(&tc, bad[k].key, bad[k].in, &err);
		if (rc != -EINVAL)
			ok(0, "%s=%s rejected", bad[k].key, bad[k].in);
		else
			is_str(err.msg, bad[k].msg, "%s=%s rejected",
			       bad[k].key, bad[k].in);
		if (memcmp(&before, &tc, sizeof(tc)) != 0)
			ok(0, "%s: rejected value changed the config",
			   bad[k].key);
	}
	is(sk_topic_config_set(&tc, "retention.minutes", "1", &err), -ENOENT,
	   "unknown topic key is -ENOENT");
	is_str(err.msg, "retention.minutes: unknown topic config key",
	       "unknown topic key message");
	is(sk_topic_config_unset(&tc, &c, "retention.minutes"), -ENOENT,
	   "unset of an unknown key is -ENOENT");

	/* Broker defaults flow into new topics; unset goes back to them. */
	sk_config_set(&c, "log.cleanup.policy", "delete,compact", NULL, &err);
	sk_topic_config_defaults(&c, &tc);
	i = sk_topic_config_find("cleanup.policy");
	sk_topic_config_value(&tc, (size_t)i, buf, sizeof(buf));
	is_str(buf, "compact,delete", "log.cleanup.policy flows to topics");
	sk_topic_config_set(&tc, "cleanup.policy", "delete", &err);
	sk_topic_config_set(&tc, "retention.ms", "5", &err);
	sk_topic_config_unset(&tc, &c, "cleanup.policy");
	ok(tc.cleanup_policy == (SK_CLEANUP_COMPACT | SK_CLEANUP_DELETE) &&
		   tc.retention_ms == 5 &&
		   tc.set_mask ==
			   UINT64_C(1) << sk_topic_config_find("retention.ms"),
	   "unset touches only its own key");
	sk_topic_config_value(&tc, (size_t)i, buf, 4);
	is_str(buf, "com", "value truncates to the buffer");
	sk_config_free(&c);
}

static void test_print_keys(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	struct sk_config c;
	char line[64];

	sk_config_print_keys(f);
	fclose(f);
	ok(strstr(text, "num.partitions") && strstr(text, "log.retention.ms") &&
		   strstr(text, "log.roll.ms") &&
		   strstr(text, "connection.output.max.bytes"),
	   "--help lists broker keys, log.* defaults included");
	ok(strstr(text, "\n  retention.ms ") &&
		   strstr(text, "\n  cleanup.policy "),
	   "--help lists topic keys");
	ok(strstr(text, "an integer in [1, 10000]") &&
		   strstr(text, "one of delete | compact"),
	   "--help shows bounds and choices");
	ok(strstr(text, "\n  log.cleaner.min.cleanable.ratio ") &&
		   strstr(text, "a number in [0, 1]"),
	   "--help shows the ratio key and its bounds");
	/* Every broker key has a row. */
	sk_config_init(&c);
	snprintf(line, sizeof(line), "\n  %-40s %s", "listeners", c.listeners);
	ok(strstr(text, line) != NULL, "a row is KEY DEFAULT DOC");
	sk_config_free(&c);
	free(text);
}

static void test_files(void)
{
	struct sk_config c;
	struct sk_err err;
	int rc;

	sk_config_init(&c);
	rc = sk_config_load_file(&c, "etc/skald.yaml", &err);
	is(rc, 0, "etc/skald.yaml loads");
	if (rc)
		diag("%s", err.msg);
	ok(c.n_topics == 2 && strcmp(c.topics[0].name, "orders") == 0 &&
		   c.topics[0].partitions == 3 &&
		   strncmp(c.topics[0].where, "etc/skald.yaml:", 15) == 0,
	   "etc/skald.yaml declares orders");
	ok(c.n_topics == 2 && strcmp(c.topics[1].name, "customers") == 0 &&
		   c.topics[1].n_configs == 2 &&
		   strcmp(c.topics[1].configs[0].value, "compact") == 0,
	   "etc/skald.yaml declares compacted customers");
	is_str(c.listeners, "127.0.0.1:9092", "etc/skald.yaml listeners");

	rc = sk_config_load_file(&c, "/nonexistent/skald.yaml", &err);
	ok(rc == -ENOENT, "missing file is -ENOENT");
	is_str(err.msg,
	       "/nonexistent/skald.yaml: cannot open: No such file "
	       "or directory",
	       "missing file message");
	rc = sk_config_load_file(&c, "etc", &err);
	ok(rc == -EISDIR, "directory rejected");
	is_str(err.msg, "etc: is a directory", "directory message");
	sk_config_free(&c);
}

/* The hooks: section and the topics' hooks and retention (Lua hooks). */
static void test_hooks(void)
{
	struct sk_config c;
	struct sk_err err;
	const struct sk_topic_decl *d;

	sk_config_init(&c);
	is(c.hooks.timeout_ms, 50, "default hooks timeout.ms");
	is(c.hooks.memory_mb, 32, "default hooks memory.mb");
	is(c.hooks.workers, 2, "default hooks workers");
	ok(load(&c,
		"hooks:\n"
		"  timeout.ms: 20\n"
		"  memory.mb: 8\n"
		"  workers: 4\n"
		"topics:\n"
		"  \"payments\":\n"
		"    partitions: 3\n"
		"    hooks:\n"
		"      - name: mask-card\n"
		"        script: scripts/examples/mask_pii.lua\n"
		"        on_error: dead-letter\n"
		"        dead_letter_topic: payments.dlq\n"
		"        options: { fields: [card, email], n: 3, q: \"3\" }\n"
		"      - name: stamp\n"
		"        script: s.lua\n"
		"    retention:\n"
		"      script: keep.lua\n"
		"      options: { flagged: [1, 2] }\n"
		"  \"logs.*\":\n"
		"    hooks:\n"
		"      - name: f\n"
		"        script: f.lua\n",
		&err) == 0,
	   "hooks load (%s)", err.msg);
	is(c.hooks.timeout_ms, 20, "timeout.ms");
	is(c.hooks.memory_mb, 8, "memory.mb");
	is(c.hooks.workers, 4, "workers");
	is(c.n_topics, 2, "two entries");
	d = &c.topics[0];
	ok(!d->glob && d->n_hooks == 2 && d->partitions == 3,
	   "payments: two hooks");
	is_str(d->hooks[0].name, "mask-card", "hook name");
	is(d->hooks[0].on_error, SK_HOOK_ON_ERROR_DEAD_LETTER, "on_error");
	is_str(d->hooks[0].dead_letter_topic, "payments.dlq",
	       "dead_letter_topic");
	is_str(d->hooks[0].options_json,
	       "{\"fields\":[\"card\",\"email\"],\"n\":3,\"q\":\"3\"}",
	       "options as JSON; quoted scalars stay strings");
	is(d->hooks[1].on_error, SK_HOOK_ON_ERROR_REJECT,
	   "on_error defaults to reject");
	is_str(d->hooks[1].options_json, "{}", "no options: {}");
	is_str(d->retention_script, "keep.lua", "retention script");
	is_str(d->retention_options_json, "{\"flagged\":[1,2]}",
	       "retention options");
	ok(c.topics[1].glob && c.topics[1].n_hooks == 1, "a glob entry");
	ok(sk_config_topic_glob(&c, "logs.app") == &c.topics[1] &&
		   !sk_config_topic_glob(&c, "payments"),
	   "globs match with fnmatch");
	sk_config_free(&c);

	load_fails("hooks:\n  timeout: 5\n",
		   "t.yaml:2: hooks.timeout: unknown key", "unknown hooks key");
	load_fails("hooks:\n  timeout.ms: 0\n",
		   "t.yaml:2: hooks.timeout.ms: expected an integer in "
		   "[1, 60000], got '0'",
		   "timeout.ms bounds");
	load_fails("topics:\n  t:\n    hooks:\n      - name: a\n"
		   "        script: a.lua\n        on_error: explode\n",
		   "t.yaml:6: topics.t.hooks.on_error: expected one of reject, "
		   "pass, drop, dead-letter, got 'explode'",
		   "bad on_error");
	load_fails("topics:\n  t:\n    hooks:\n      - name: a\n"
		   "        script: a.lua\n        on_error: dead-letter\n",
		   "t.yaml:4: topics.t.hooks: hook 'a': on_error: dead-letter "
		   "needs dead_letter_topic",
		   "dead-letter needs a topic");
	load_fails("topics:\n  t:\n    hooks:\n      - name: a\n"
		   "        scrpt: a.lua\n",
		   "t.yaml:5: topics.t.hooks.scrpt: unknown key",
		   "unknown hook key");
	load_fails("topics:\n  t:\n    hooks:\n      - script: a.lua\n",
		   "t.yaml:4: topics.t.hooks: a hook needs a name",
		   "a hook needs a name");
	load_fails("topics:\n  t:\n    hooks:\n      - name: a\n"
		   "        script: a.lua\n      - name: a\n"
		   "        script: b.lua\n",
		   "t.yaml:6: topics.t.hooks: hook name 'a' used twice",
		   "hook names are unique per topic");
	ok(load(&c,
		"topics:\n  \"logs.*\":\n    partitions: 3\n"
		"    configs:\n      retention.ms: 5000\n",
		&err) == 0 &&
		   c.topics[0].glob && c.topics[0].partitions == 3 &&
		   c.topics[0].n_configs == 1,
	   "a glob entry takes partitions and configs for the topics it "
	   "will create (%s)",
	   err.msg);
	sk_config_free(&c);
	load_fails("topics:\n  t:\n    retention:\n      scrip: x.lua\n",
		   "t.yaml:4: topics.t.retention.scrip: unknown key",
		   "unknown retention key");
}

int main(void)
{
	plan(335);
	test_defaults();
	test_yaml_types();
	test_yaml_errors();
	test_listeners();
	test_topics();
	test_topic_names();
	test_set_and_env();
	test_message_max_bytes();
	test_topic_config();
	test_print_keys();
	test_files();
	test_hooks();
	return check_status();
}
