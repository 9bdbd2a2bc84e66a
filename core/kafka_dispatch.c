/*
 * Request framing and dispatch by ApiKey. The table below is the single
 * source of the supported version ranges: dispatch checks against it and
 * ApiVersions answers from it. Ranges follow KAFKA-CLIENTS.md section 10:
 * the minimum versions include those that librdkafka's feature checks
 * look for, and Produce v7 is there for kafka-python.
 */
#include <errno.h>
#include <stdint.h>

#include "broker.h"
#include "kafka.h"
#include "say.h"

#define NO_FLEX INT16_MAX

/* clang-format off */
const struct sk_kafka_api sk_kafka_apis[] = {
	{ SK_API_PRODUCE, "Produce", 3, 7, 9, sk_kafka_produce },
	{ SK_API_FETCH, "Fetch", 4, 11, 12, sk_kafka_fetch },
	{ SK_API_LIST_OFFSETS, "ListOffsets", 1, 3, 6, sk_kafka_list_offsets },
	{ SK_API_METADATA, "Metadata", 0, 6, 9, sk_kafka_metadata },
	{ SK_API_OFFSET_COMMIT, "OffsetCommit", 0, 7, 8,
	  sk_kafka_offset_commit },
	{ SK_API_OFFSET_FETCH, "OffsetFetch", 0, 7, 6, sk_kafka_offset_fetch },
	{ SK_API_FIND_COORDINATOR, "FindCoordinator", 0, 2, 3,
	  sk_kafka_find_coordinator },
	{ SK_API_JOIN_GROUP, "JoinGroup", 0, 5, 6, sk_kafka_join_group },
	{ SK_API_HEARTBEAT, "Heartbeat", 0, 3, 4, sk_kafka_heartbeat },
	{ SK_API_LEAVE_GROUP, "LeaveGroup", 0, 3, 4, sk_kafka_leave_group },
	{ SK_API_SYNC_GROUP, "SyncGroup", 0, 3, 4, sk_kafka_sync_group },
	{ SK_API_DESCRIBE_GROUPS, "DescribeGroups", 0, 4, 5,
	  sk_kafka_describe_groups },
	{ SK_API_LIST_GROUPS, "ListGroups", 0, 2, 3, sk_kafka_list_groups },
	{ SK_API_API_VERSIONS, "ApiVersions", 0, 3, 3,
	  sk_kafka_api_versions },
	{ SK_API_CREATE_TOPICS, "CreateTopics", 0, 4, 5,
	  sk_kafka_create_topics },
	{ SK_API_DELETE_TOPICS, "DeleteTopics", 0, 3, 4,
	  sk_kafka_delete_topics },
	{ SK_API_DELETE_RECORDS, "DeleteRecords", 0, 1, 2,
	  sk_kafka_delete_records },
	{ SK_API_DESCRIBE_CONFIGS, "DescribeConfigs", 0, 2, 4,
	  sk_kafka_describe_configs },
	{ SK_API_ALTER_CONFIGS, "AlterConfigs", 0, 1, 2,
	  sk_kafka_alter_configs },
	{ SK_API_CREATE_PARTITIONS, "CreatePartitions", 0, 1, 2,
	  sk_kafka_create_partitions },
	{ SK_API_DELETE_GROUPS, "DeleteGroups", 0, 1, 2,
	  sk_kafka_delete_groups },
	{ SK_API_OFFSET_DELETE, "OffsetDelete", 0, 0, NO_FLEX,
	  sk_kafka_offset_delete },
};
/* clang-format on */

const size_t sk_kafka_n_apis = SK_ARRAY_SIZE(sk_kafka_apis);

const struct sk_kafka_api *sk_kafka_api_find(int16_t key)
{
	for (size_t i = 0; i < sk_kafka_n_apis; i++)
		if (sk_kafka_apis[i].key == key)
			return &sk_kafka_apis[i];
	return NULL;
}

int sk_kafka_dispatch(struct sk_broker *b, struct sk_conn *conn,
		      const uint8_t *frame, size_t len, struct sk_err *err)
{
	const struct sk_kafka_api *api;
	struct sk_req req = { .b = b, .conn = conn };
	struct sk_wr w;
	int rc;

	sk_rd_init(&req.rd, frame, len);
	req.api_key = sk_rd_i16(&req.rd);
	req.api_version = sk_rd_i16(&req.rd);
	req.correlation_id = sk_rd_i32(&req.rd);
	req.client_id = sk_rd_string(&req.rd);
	if (!sk_rd_ok(&req.rd))
		return sk_err_setc(err, -EPROTO,
				   "truncated request header (%zu bytes)", len);
	api = sk_kafka_api_find(req.api_key);
	if (!api)
		return sk_err_setc(err, -EPROTO, "unsupported api key %d",
				   req.api_key);
	/*
	 * A too-new ApiVersions is answered (KIP-511) so the client can
	 * retry with a version we know; anything else out of range is a
	 * request we cannot parse.
	 */
	if (req.api_version < api->min_version ||
	    (req.api_version > api->max_version &&
	     req.api_key != SK_API_API_VERSIONS))
		return sk_err_setc(err, -EPROTO,
				   "%s v%d is not supported (versions %d-%d)",
				   api->name, req.api_version, api->min_version,
				   api->max_version);
	req.flexible = req.api_version >= api->first_flexible;
	if (req.api_version <= api->max_version)
		sk_rd_tags(&req.rd, req.flexible);
	if (!sk_rd_ok(&req.rd))
		return sk_err_setc(err, -EPROTO,
				   "malformed %s v%d request header", api->name,
				   req.api_version);

	req.resp = sk_resp_new(conn);
	w = sk_resp_writer(req.resp);
	sk_wr_i32(&w, 0); /* frame size, patched by sk_resp_finish */
	sk_wr_i32(&w, req.correlation_id);
	/* ApiVersions always answers with response header v0. */
	if (req.api_key != SK_API_API_VERSIONS)
		sk_wr_tags(&w, req.flexible);

	rc = api->handler(&req);
	if (rc == -ECONNABORTED) {
		sk_resp_drop(req.resp);
		return sk_err_setc(err, rc,
				   "%s v%d failed with no response "
				   "to carry the error",
				   api->name, req.api_version);
	}
	if (rc < 0) {
		sk_resp_drop(req.resp);
		return sk_err_setc(err, rc, "malformed %s v%d request",
				   api->name, req.api_version);
	}
	return 0;
}
