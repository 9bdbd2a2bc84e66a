/*
 * Kafka protocol dispatch: the table of supported APIs (which also drives
 * the ApiVersions answer), the request context handed to handlers, and
 * the handlers themselves (one file per API or small family).
 */
#ifndef SK_KAFKA_H
#define SK_KAFKA_H

#include "kafka_errors.h"
#include "net.h"

/* API keys this broker knows (Kafka's numbering). */
enum sk_api_key {
	SK_API_PRODUCE = 0,
	SK_API_FETCH = 1,
	SK_API_LIST_OFFSETS = 2,
	SK_API_METADATA = 3,
	SK_API_OFFSET_COMMIT = 8,
	SK_API_OFFSET_FETCH = 9,
	SK_API_FIND_COORDINATOR = 10,
	SK_API_JOIN_GROUP = 11,
	SK_API_HEARTBEAT = 12,
	SK_API_LEAVE_GROUP = 13,
	SK_API_SYNC_GROUP = 14,
	SK_API_DESCRIBE_GROUPS = 15,
	SK_API_LIST_GROUPS = 16,
	SK_API_API_VERSIONS = 18,
	SK_API_CREATE_TOPICS = 19,
	SK_API_DELETE_TOPICS = 20,
	SK_API_DELETE_RECORDS = 21,
	SK_API_DESCRIBE_CONFIGS = 32,
	SK_API_ALTER_CONFIGS = 33,
	SK_API_CREATE_PARTITIONS = 37,
	SK_API_DELETE_GROUPS = 42,
	SK_API_OFFSET_DELETE = 47,
};

/* One request being handled. Valid until the handler returns. */
struct sk_req {
	struct sk_broker *b;
	struct sk_conn *conn;
	struct sk_resp *resp; /* the slot the answer goes into */
	int16_t api_key;
	int16_t api_version;
	int32_t correlation_id;
	struct sk_str client_id;
	bool flexible;	 /* this version uses compact/tagged encoding */
	struct sk_rd rd; /* the request body */
};

/*
 * A handler decodes req->rd and writes the body into req->resp, then
 * calls sk_resp_finish (now, or later for a pending response). It returns
 * 0, or -EPROTO when the request cannot be decoded: the connection is
 * then closed, as Kafka does. -ECONNABORTED also closes it, for a request
 * that failed but has no response to say so (Produce with acks=0).
 */
typedef int (*sk_kafka_handler)(struct sk_req *req);

struct sk_kafka_api {
	int16_t key;
	const char *name;
	int16_t min_version;
	int16_t max_version;
	int16_t first_flexible; /* first flexible version; INT16_MAX if none */
	sk_kafka_handler handler;
};

/* The supported APIs, in key order, and their count. */
extern const struct sk_kafka_api sk_kafka_apis[];
extern const size_t sk_kafka_n_apis;
const struct sk_kafka_api *sk_kafka_api_find(int16_t key);

/*
 * Handle one request frame (without its size prefix). Returns 0, or a
 * negative errno after which the caller closes the connection; err says
 * why, for the log.
 */
int sk_kafka_dispatch(struct sk_broker *b, struct sk_conn *conn,
		      const uint8_t *frame, size_t len, struct sk_err *err);

int sk_kafka_api_versions(struct sk_req *req);
int sk_kafka_metadata(struct sk_req *req);
int sk_kafka_produce(struct sk_req *req);
int sk_kafka_fetch(struct sk_req *req);
int sk_kafka_list_offsets(struct sk_req *req);
int sk_kafka_find_coordinator(struct sk_req *req);
int sk_kafka_create_topics(struct sk_req *req);
int sk_kafka_delete_topics(struct sk_req *req);
int sk_kafka_delete_records(struct sk_req *req);
int sk_kafka_create_partitions(struct sk_req *req);
int sk_kafka_describe_configs(struct sk_req *req);
int sk_kafka_alter_configs(struct sk_req *req);
/* Groups and committed offsets: kafka_group.c, kafka_offsets.c. */
int sk_kafka_join_group(struct sk_req *req);
int sk_kafka_sync_group(struct sk_req *req);
int sk_kafka_heartbeat(struct sk_req *req);
int sk_kafka_leave_group(struct sk_req *req);
int sk_kafka_describe_groups(struct sk_req *req);
int sk_kafka_list_groups(struct sk_req *req);
int sk_kafka_delete_groups(struct sk_req *req);
int sk_kafka_offset_commit(struct sk_req *req);
int sk_kafka_offset_fetch(struct sk_req *req);
int sk_kafka_offset_delete(struct sk_req *req);

/* Wake long-poll fetches waiting on partition data (after an append). */
struct sk_tpart;
void sk_fetch_wake(struct sk_broker *b, struct sk_tpart *tp);
/* Answer every waiting fetch now (shutdown, topic deletion). */
void sk_fetch_wake_all(struct sk_broker *b);
/*
 * A remote segment's download ended: ListOffsets answers waiting for
 * downloads are looked at again (on the next loop iteration).
 */
void sk_list_offsets_wake(struct sk_broker *b);

#endif
