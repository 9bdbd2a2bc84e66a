/*
 * Topics as the broker knows them: a name, effective configs, and
 * partitions each backed by a partition log. Owned by struct sk_broker;
 * loaded from the metadata store at start and changed by admin requests.
 *
 * Partition directories follow Kafka: <log.dir>/<topic>-<partition>.
 * Deleting a topic first renames its directories to
 * <topic>-<partition>.<unique>-delete, so a crash halfway never lets a new
 * topic of the same name see old data; leftovers are removed at start.
 */
#ifndef SK_TOPIC_H
#define SK_TOPIC_H

#include "config.h"
#include "hmap.h"
#include "kafka_errors.h"
#include "list.h"
#include "log.h"

struct sk_broker;
struct sk_topic;

/* One partition of a topic. Addresses stay stable for its lifetime. */
struct sk_tpart {
	struct sk_topic *topic;
	int32_t id;
	struct sk_partition *log;
	struct sk_remote_part *remote; /* tiered storage (log_remote.c) */
	struct sk_list waiters;	       /* long-poll fetches waiting for data */
	struct sk_list flush_link;     /* in the flusher's dirty list */
	struct sk_list lazy_link;      /* in its flush.messages/flush.ms list */
	int64_t unflushed;	 /* records appended since a round took it */
	int64_t unflushed_since; /* sk_mono_ms of the first of them */
};

struct sk_topic {
	char *name;
	struct sk_topic_config cfg;	/* effective configs */
	struct sk_config_kv *overrides; /* explicitly set, normalised */
	size_t n_overrides;
	int32_t n_parts;
	struct sk_tpart **parts;
	struct sk_hnode hnode; /* in sk_topics.map, keyed by name */
};

/* The registry, by name. */
struct sk_topics {
	struct sk_hmap map;
};

void sk_topics_init(struct sk_topics *t);
/* Close every partition and free all topics. */
void sk_topics_fini(struct sk_topics *t);
struct sk_topic *sk_topics_find(const struct sk_topics *t, const char *name,
				size_t len);
/* All topics sorted by name, in a new array the caller frees. */
struct sk_topic **sk_topics_list(const struct sk_topics *t, size_t *n);

/* Load stored topics and create the YAML-declared ones (at start). */
int sk_topics_load(struct sk_broker *b, struct sk_err *err);

/*
 * Create a topic: validates the name, partition count and configs, and
 * with validate_only stops there. Returns a Kafka error code, with err
 * describing it for the response's error_message. The topics: entry of
 * the name (exact, else the first matching glob) supplies the configs
 * the request does not give, and with partitions -1 the partitions
 * (else num.partitions).
 */
enum sk_kerr sk_topic_create(struct sk_broker *b, const char *name,
			     int32_t partitions,
			     const struct sk_config_kv *configs,
			     size_t n_configs, bool validate_only,
			     struct sk_err *err);
/* Delete a topic and its data. */
enum sk_kerr sk_topic_delete(struct sk_broker *b, struct sk_topic *t,
			     struct sk_err *err);
/* Grow to new_total partitions. */
enum sk_kerr sk_topic_add_partitions(struct sk_broker *b, struct sk_topic *t,
				     int32_t new_total, bool validate_only,
				     struct sk_err *err);
/* Replace the topic's overrides with configs (AlterConfigs semantics). */
enum sk_kerr sk_topic_set_configs(struct sk_broker *b, struct sk_topic *t,
				  const struct sk_config_kv *configs,
				  size_t n_configs, bool validate_only,
				  struct sk_err *err);

/*
 * The changes above are applied to memory at once and stored by the
 * metadata writer (meta.h). Finish resp once everything queued so far is
 * durable; if it could not be stored (the changes were undone), first
 * overwrite the int16 error codes at the n body offsets pos with fail.
 */
struct sk_resp;
void sk_topics_answer_durable(struct sk_broker *b, struct sk_resp *resp,
			      const size_t *pos, size_t n, int16_t fail);

/* Partition id of topic t, or NULL when out of range. */
static inline struct sk_tpart *sk_topic_part(const struct sk_topic *t,
					     int32_t id)
{
	return id >= 0 && id < t->n_parts ? t->parts[id] : NULL;
}

#endif
