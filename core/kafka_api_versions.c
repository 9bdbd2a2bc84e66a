/*
 * ApiVersions (key 18), answered from the dispatch table.
 *
 * A request newer than we support gets a v0-format body with
 * UNSUPPORTED_VERSION and our ApiVersions range only (KIP-511), so the
 * client can retry with a version we speak.
 */
#include <errno.h>
#include "broker.h"
#include "kafka.h"

int sk_kafka_api_versions(struct sk_req *req)
{
	const struct sk_kafka_api *self =
		sk_kafka_api_find(SK_API_API_VERSIONS);
	struct sk_wr w = sk_resp_writer(req->resp);
	bool flex = req->flexible;

	if (req->api_version > self->max_version) {
		sk_wr_i16(&w, SK_KERR_UNSUPPORTED_VERSION);
		sk_wr_array(&w, 1, false);
		sk_wr_i16(&w, self->key);
		sk_wr_i16(&w, self->min_version);
		sk_wr_i16(&w, self->max_version);
		sk_resp_finish(req->resp);
		return 0;
	}
	if (req->api_version >= 3) {
		/* client_software_name and _version: informational only. */
		sk_rd_compact_string(&req->rd);
		sk_rd_compact_string(&req->rd);
		sk_rd_tags(&req->rd, true);
		if (!sk_rd_ok(&req->rd))
			return -EPROTO;
	}
	sk_wr_i16(&w, SK_KERR_NONE);
	sk_wr_array(&w, (int32_t)sk_kafka_n_apis, flex);
	for (size_t i = 0; i < sk_kafka_n_apis; i++) {
		sk_wr_i16(&w, sk_kafka_apis[i].key);
		sk_wr_i16(&w, sk_kafka_apis[i].min_version);
		sk_wr_i16(&w, sk_kafka_apis[i].max_version);
		sk_wr_tags(&w, flex);
	}
	if (req->api_version >= 1)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_tags(&w, flex);
	sk_resp_finish(req->resp);
	return 0;
}
