/*
 * FindCoordinator (ApiKey 10), versions 0-2.
 *
 * A single node coordinates every group and every transactional id, so
 * the answer is always this broker, as Metadata advertises it. Only the
 * key itself is checked: an unknown key type or an empty key is the
 * client's mistake and gets an error instead of an address.
 */
#include <errno.h>

#include "broker.h"
#include "kafka.h"

/* Kafka's CoordinatorType values (FindCoordinatorRequest KeyType). */
enum {
	SK_COORD_GROUP = 0,
	SK_COORD_TRANSACTION = 1,
};

/*
 * Check the key; returns the error code and, for an error, sets err.
 * Kafka rejects empty group ids as INVALID_GROUP_ID where groups are
 * joined; answering that already here saves the client a round trip to a
 * coordinator that would refuse the group anyway.
 */
static enum sk_kerr coord_check(int8_t key_type, struct sk_str key,
				struct sk_err *err)
{
	switch (key_type) {
	case SK_COORD_GROUP:
		if (key.len <= 0) {
			sk_err_set(err, "the group id must not be empty");
			return SK_KERR_INVALID_GROUP_ID;
		}
		return SK_KERR_NONE;
	case SK_COORD_TRANSACTION:
		if (key.len <= 0) {
			sk_err_set(err,
				   "the transactional id must not be empty");
			return SK_KERR_INVALID_REQUEST;
		}
		return SK_KERR_NONE;
	default:
		sk_err_set(err, "unknown coordinator key type %d", key_type);
		return SK_KERR_INVALID_REQUEST;
	}
}

int sk_kafka_find_coordinator(struct sk_req *req)
{
	struct sk_broker *b = req->b;
	struct sk_rd *r = &req->rd;
	struct sk_wr w = sk_resp_writer(req->resp);
	int16_t v = req->api_version;
	bool flex = req->flexible;
	struct sk_err err = { { 0 } };
	enum sk_kerr ec;
	struct sk_str key;
	int8_t key_type = SK_COORD_GROUP;

	key = sk_rd_str(r, flex);
	if (v >= 1)
		key_type = sk_rd_i8(r);
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r))
		return -EPROTO;

	ec = coord_check(key_type, key, &err);

	if (v >= 1)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_i16(&w, (int16_t)ec);
	if (v >= 1)
		sk_wr_str(&w, ec ? err.msg : NULL, flex);
	if (ec) {
		/* Kafka's "no node": id -1, empty host, port -1. */
		sk_wr_i32(&w, -1);
		sk_wr_str(&w, "", flex);
		sk_wr_i32(&w, -1);
	} else {
		sk_wr_i32(&w, b->cfg.node_id);
		sk_wr_str(&w, b->adv_host, flex);
		sk_wr_i32(&w, b->adv_port);
	}
	sk_wr_tags(&w, flex);
	sk_resp_finish(req->resp);
	return 0;
}
