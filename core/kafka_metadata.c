/*
 * Metadata (key 3), v0-6: this broker as the only broker and controller,
 * every partition led by it, and topic auto-creation when allowed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "kafka.h"
#include "say.h"

static void write_partitions(struct sk_wr *w, const struct sk_req *req,
			     const struct sk_topic *tp)
{
	int16_t v = req->api_version;
	int32_t node = req->b->cfg.node_id;

	sk_wr_array(w, tp->n_parts, req->flexible);
	for (int32_t i = 0; i < tp->n_parts; i++) {
		bool damaged = sk_partition_damaged(tp->parts[i]->log);

		sk_wr_i16(w,
			  damaged ? SK_KERR_KAFKA_STORAGE_ERROR : SK_KERR_NONE);
		sk_wr_i32(w, i);
		sk_wr_i32(w, node);		  /* leader */
		sk_wr_array(w, 1, req->flexible); /* replicas */
		sk_wr_i32(w, node);
		sk_wr_array(w, 1, req->flexible); /* isr */
		sk_wr_i32(w, node);
		if (v >= 5)
			sk_wr_array(w, 0, req->flexible); /* offline */
	}
}

static void write_topic(struct sk_wr *w, const struct sk_req *req,
			const char *name, size_t len, int16_t err,
			const struct sk_topic *tp)
{
	sk_wr_i16(w, err);
	sk_wr_strn(w, name, (int32_t)len, req->flexible);
	if (req->api_version >= 1)
		sk_wr_i8(w, 0); /* is_internal */
	if (tp)
		write_partitions(w, req, tp);
	else
		sk_wr_array(w, 0, req->flexible);
}

/* Resolve one requested topic, creating it if allowed. */
static struct sk_topic *lookup_or_create(struct sk_req *req, const char *name,
					 bool auto_create, int16_t *kerr)
{
	struct sk_broker *b = req->b;
	struct sk_topic *tp = sk_topics_find(&b->topics, name, strlen(name));
	struct sk_err err = { "" };

	*kerr = SK_KERR_NONE;
	if (tp)
		return tp;
	if (!auto_create || !b->cfg.auto_create_topics) {
		*kerr = SK_KERR_UNKNOWN_TOPIC_OR_PARTITION;
		return NULL;
	}
	*kerr = (int16_t)sk_topic_create(b, name, -1, NULL, 0, false, &err);
	if (*kerr) {
		sk_debug("auto-create of '%s' refused: %s", name, err.msg);
		return NULL;
	}
	return sk_topics_find(&b->topics, name, strlen(name));
}

int sk_kafka_metadata(struct sk_req *req)
{
	struct sk_broker *b = req->b;
	struct sk_rd *r = &req->rd;
	struct sk_wr w = sk_resp_writer(req->resp);
	int16_t v = req->api_version;
	bool flex = req->flexible, auto_create = true;
	struct sk_str *names = NULL;
	int32_t n;

	n = sk_rd_array(r, flex, 2);
	if (n > 0) {
		names = sk_xcalloc((size_t)n, sizeof(*names));
		for (int32_t i = 0; i < n; i++) {
			names[i] = sk_rd_str(r, flex);
			sk_rd_tags(r, flex);
		}
	}
	if (v >= 4)
		auto_create = sk_rd_i8(r) != 0;
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r) || (n < 0 && v == 0)) {
		free(names);
		return -EPROTO;
	}
	/* v0: an empty list means all topics; v1+: null means all. */
	if (v == 0 && n == 0)
		n = -1;

	if (v >= 3)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_array(&w, 1, flex);
	sk_wr_i32(&w, b->cfg.node_id);
	sk_wr_str(&w, b->adv_host, flex);
	sk_wr_i32(&w, b->adv_port);
	if (v >= 1)
		sk_wr_str(&w, NULL, flex); /* rack */
	if (v >= 2)
		sk_wr_str(&w, sk_meta_cluster_id(b->meta), flex);
	if (v >= 1)
		sk_wr_i32(&w, b->cfg.node_id); /* controller */

	if (n < 0) {
		size_t count;
		struct sk_topic **all = sk_topics_list(&b->topics, &count);

		sk_wr_array(&w, (int32_t)count, flex);
		for (size_t i = 0; i < count; i++)
			write_topic(&w, req, all[i]->name, strlen(all[i]->name),
				    SK_KERR_NONE, all[i]);
		free(all);
	} else {
		sk_wr_array(&w, n, flex);
		for (int32_t i = 0; i < n; i++) {
			char *name = sk_str_dup(names[i]);
			int16_t kerr;
			struct sk_topic *tp =
				lookup_or_create(req, name, auto_create, &kerr);

			write_topic(&w, req, name, strlen(name), kerr, tp);
			free(name);
		}
	}
	free(names);
	sk_resp_finish(req->resp);
	return 0;
}
