/*
 * Topic administration: CreateTopics (19) v0-4, DeleteTopics (20) v0-3
 * and CreatePartitions (37) v0-1.
 *
 * Each handler decodes the whole request before changing anything, so a
 * request that turns out to be malformed halfway closes the connection
 * without having created or deleted half of its topics. Nested arrays are
 * not copied: the first pass checks they decode and keeps a reader
 * positioned at their first element, and the second pass reads them
 * again from there.
 *
 * This is a single-node broker: a replication factor is 1 (or -1, "the
 * default") and a manual replica assignment may only name this node.
 *
 * Changes take effect in memory at once, and each response goes out only
 * once they are stored durably in meta.db (sk_topics_answer_durable); if
 * the store fails they are undone and their results become
 * KAFKA_STORAGE_ERROR.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "kafka.h"

/* Flags set on request entries whose topic name occurs more than once. */
enum {
	NAME_DUP = 1,	 /* the name occurs more than once */
	NAME_REPEAT = 2, /* not its first occurrence: no result of its own */
};

struct name_ref {
	struct sk_str name;
	int32_t idx;
};

static int name_ref_cmp(const void *pa, const void *pb)
{
	const struct name_ref *a = pa, *b = pb;
	int32_t n = SK_MIN(a->name.len, b->name.len);
	int c = n > 0 ? memcmp(a->name.p, b->name.p, (size_t)n) : 0;

	if (c)
		return c;
	if (a->name.len != b->name.len)
		return a->name.len < b->name.len ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/*
 * Set NAME_DUP on every entry whose name occurs more than once in names
 * and NAME_REPEAT on all but the first of them. Kafka answers such
 * topics once, with INVALID_REQUEST, and acts on none of them. Sorting
 * keeps this O(n log n): n is bounded only by the request size.
 */
static void names_mark_dups(const struct sk_str *names, int32_t n,
			    uint8_t *flags)
{
	struct name_ref *refs;
	int32_t i, j;

	if (n < 2)
		return;
	refs = sk_xmalloc((size_t)n * sizeof(*refs));
	for (i = 0; i < n; i++)
		refs[i] = (struct name_ref){ names[i], i };
	qsort(refs, (size_t)n, sizeof(*refs), name_ref_cmp);
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n; j++)
			if (refs[j].name.len != refs[i].name.len ||
			    memcmp(refs[j].name.p, refs[i].name.p,
				   (size_t)refs[i].name.len) != 0)
				break;
		if (j - i < 2)
			continue;
		/* Sorted by index within equal names: refs[i] is first. */
		flags[refs[i].idx] |= NAME_DUP;
		for (int32_t k = i + 1; k < j; k++)
			flags[refs[k].idx] |= NAME_DUP | NAME_REPEAT;
	}
	free(refs);
}

/* A NUL inside a name would silently shorten it once copied. */
static bool str_has_nul(struct sk_str s)
{
	return s.len > 0 && memchr(s.p, 0, (size_t)s.len) != NULL;
}

/* Read a non-nullable string: null is malformed, as in Kafka. */
static struct sk_str rd_name(struct sk_rd *r, bool flex)
{
	struct sk_str s = sk_rd_str(r, flex);

	if (s.len < 0)
		sk_rd_fail(r);
	return s;
}

/* Skip an []int32 of broker ids (not nullable). */
static void rd_skip_broker_ids(struct sk_rd *r, bool flex)
{
	int32_t n = sk_rd_array(r, flex, 4);

	if (n < 0)
		sk_rd_fail(r);
	for (int32_t i = 0; i < n; i++)
		sk_rd_i32(r);
}

/*
 * Check one partition's replica list (the reader is at its []int32): it
 * must be exactly this node. Returns the error code and sets err.
 */
static enum sk_kerr check_replicas(struct sk_broker *b, struct sk_rd *r,
				   bool flex, int32_t partition,
				   struct sk_err *err)
{
	int32_t n = sk_rd_array(r, flex, 4);
	enum sk_kerr ec = SK_KERR_NONE;

	if (n != 1) {
		sk_err_set(err,
			   "partition %d has %d replicas in the assignment, "
			   "but this single-node broker can hold only one "
			   "(node %d)",
			   partition, n < 0 ? 0 : n, b->cfg.node_id);
		ec = SK_KERR_INVALID_REPLICA_ASSIGNMENT;
	}
	for (int32_t i = 0; i < n; i++) {
		int32_t id = sk_rd_i32(r);

		if (ec == SK_KERR_NONE && id != b->cfg.node_id) {
			sk_err_set(err,
				   "partition %d is assigned to broker %d, "
				   "but this single-node broker is node %d",
				   partition, id, b->cfg.node_id);
			ec = SK_KERR_INVALID_REPLICA_ASSIGNMENT;
		}
	}
	return ec;
}

static void free_kvs(struct sk_config_kv *kvs, int32_t n)
{
	for (int32_t i = 0; i < n; i++) {
		free(kvs[i].key);
		free(kvs[i].value);
	}
	free(kvs);
}

/* ---- CreateTopics ---- */

struct ct_topic {
	struct sk_str name;
	int32_t num_partitions;
	int16_t replication_factor;
	int32_t n_assign;
	struct sk_rd assign_rd; /* at the first CreatableReplicaAssignment */
	int32_t n_configs;
	struct sk_rd configs_rd; /* at the first CreatableTopicConfig */
};

static void ct_decode_topic(struct sk_rd *r, bool flex, struct ct_topic *t)
{
	t->name = rd_name(r, flex);
	t->num_partitions = sk_rd_i32(r);
	t->replication_factor = sk_rd_i16(r);

	/* Neither array is nullable in CreateTopics. */
	t->n_assign = sk_rd_array(r, flex, flex ? 6 : 8);
	if (t->n_assign < 0)
		sk_rd_fail(r);
	t->assign_rd = *r;
	for (int32_t i = 0; i < t->n_assign; i++) {
		sk_rd_i32(r); /* partition_index */
		rd_skip_broker_ids(r, flex);
		sk_rd_tags(r, flex);
	}

	t->n_configs = sk_rd_array(r, flex, flex ? 3 : 4);
	if (t->n_configs < 0)
		sk_rd_fail(r);
	t->configs_rd = *r;
	for (int32_t i = 0; i < t->n_configs; i++) {
		rd_name(r, flex);
		sk_rd_str(r, flex); /* value: nullable */
		sk_rd_tags(r, flex);
	}
	sk_rd_tags(r, flex);
}

/*
 * Work out the partition count from a manual assignment: indexes 0..n-1,
 * each once, each on this node only (Kafka's rules for one broker).
 */
static enum sk_kerr ct_check_assignment(struct sk_broker *b,
					const struct ct_topic *t, bool flex,
					int32_t *partitions, struct sk_err *err)
{
	struct sk_rd r = t->assign_rd;
	enum sk_kerr ec = SK_KERR_NONE;
	uint8_t *seen;

	if (t->num_partitions != -1) {
		sk_err_set(err,
			   "num_partitions must be -1 when a replica "
			   "assignment is given (got %d)",
			   t->num_partitions);
		return SK_KERR_INVALID_REPLICA_ASSIGNMENT;
	}
	seen = sk_xcalloc((size_t)t->n_assign, 1);
	for (int32_t i = 0; i < t->n_assign && ec == SK_KERR_NONE; i++) {
		int32_t p = sk_rd_i32(&r);

		if (p < 0 || p >= t->n_assign || seen[p]) {
			sk_err_set(err,
				   "partition %d %s: the assignment must "
				   "list partitions 0 to %d, each once",
				   p,
				   p >= 0 && p < t->n_assign
					   ? "is assigned twice"
					   : "is out of range",
				   t->n_assign - 1);
			ec = SK_KERR_INVALID_REPLICA_ASSIGNMENT;
			break;
		}
		seen[p] = 1;
		ec = check_replicas(b, &r, flex, p, err);
		sk_rd_tags(&r, flex);
	}
	free(seen);
	*partitions = t->n_assign;
	return ec;
}

/*
 * Copy the topic's configs into owned pairs. A null value means "unset"
 * elsewhere but makes no sense for a topic being created.
 */
static enum sk_kerr ct_configs(const struct ct_topic *t, bool flex,
			       struct sk_config_kv **out, struct sk_err *err)
{
	struct sk_rd r = t->configs_rd;
	struct sk_config_kv *kvs;
	int32_t i;

	*out = NULL;
	if (t->n_configs <= 0)
		return SK_KERR_NONE;
	kvs = sk_xcalloc((size_t)t->n_configs, sizeof(*kvs));
	for (i = 0; i < t->n_configs; i++) {
		struct sk_str k = sk_rd_str(&r, flex);
		struct sk_str v = sk_rd_str(&r, flex);

		sk_rd_tags(&r, flex);
		if (v.len < 0 || str_has_nul(k) || str_has_nul(v)) {
			sk_err_set(err, "config '%.*s': %s", (int)k.len,
				   (const char *)k.p,
				   v.len < 0 ? "a null value is not allowed "
					       "when creating a topic"
					     : "contains a NUL byte");
			free_kvs(kvs, i);
			return SK_KERR_INVALID_CONFIG;
		}
		kvs[i].key = sk_str_dup(k);
		kvs[i].value = sk_str_dup(v);
	}
	*out = kvs;
	return SK_KERR_NONE;
}

static enum sk_kerr ct_create(struct sk_broker *b, const struct ct_topic *t,
			      bool flex, bool validate_only, struct sk_err *err)
{
	int32_t partitions = t->num_partitions;
	struct sk_config_kv *kvs;
	enum sk_kerr ec;
	char *name;

	if (str_has_nul(t->name)) {
		sk_err_set(err, "topic name contains a NUL byte");
		return SK_KERR_INVALID_TOPIC_EXCEPTION;
	}
	if (t->replication_factor != 1 && t->replication_factor != -1) {
		sk_err_set(err,
			   "replication factor %d is not possible: this is a "
			   "single-node broker (use 1 or -1)",
			   t->replication_factor);
		return SK_KERR_INVALID_REPLICATION_FACTOR;
	}
	if (t->n_assign > 0) {
		ec = ct_check_assignment(b, t, flex, &partitions, err);
		if (ec)
			return ec;
	} else if (partitions == -1) {
		/*
		 * Clients send -1 only from v4 (KIP-464); Kafka's broker
		 * applies the default whatever the version, and so do we
		 * (sk_topic_create: the matching topics: entry's, else
		 * num.partitions).
		 */
		partitions = -1;
	}
	ec = ct_configs(t, flex, &kvs, err);
	if (ec)
		return ec;
	name = sk_str_dup(t->name);
	ec = sk_topic_create(b, name, partitions, kvs,
			     (size_t)SK_MAX(t->n_configs, 0), validate_only,
			     err);
	free(name);
	free_kvs(kvs, kvs ? t->n_configs : 0);
	return ec;
}

int sk_kafka_create_topics(struct sk_req *req)
{
	struct sk_rd *r = &req->rd;
	struct sk_wr w = sk_resp_writer(req->resp);
	int16_t v = req->api_version;
	bool flex = req->flexible;
	bool validate_only = false;
	struct ct_topic *topics;
	struct sk_str *names;
	uint8_t *flags;
	size_t *pos, n_pos = 0;
	int32_t n, n_results = 0;

	n = sk_rd_array(r, flex, flex ? 10 : 16);
	if (n < 0)
		sk_rd_fail(r); /* Topics is not nullable */
	topics = sk_xcalloc((size_t)SK_MAX(n, 1), sizeof(*topics));
	names = sk_xcalloc((size_t)SK_MAX(n, 1), sizeof(*names));
	flags = sk_xcalloc((size_t)SK_MAX(n, 1), 1);
	for (int32_t i = 0; i < n && sk_rd_ok(r); i++) {
		ct_decode_topic(r, flex, &topics[i]);
		names[i] = topics[i].name;
	}
	sk_rd_i32(r); /* timeout_ms: answered once durable */
	if (v >= 1)
		validate_only = sk_rd_i8(r) != 0;
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r)) {
		free(topics);
		free(names);
		free(flags);
		return -EPROTO;
	}

	names_mark_dups(names, n, flags);
	for (int32_t i = 0; i < n; i++)
		n_results += !(flags[i] & NAME_REPEAT);
	pos = sk_xmalloc((size_t)SK_MAX(n, 1) * sizeof(*pos));

	if (v >= 2)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_array(&w, n_results, flex);
	for (int32_t i = 0; i < n; i++) {
		const struct ct_topic *t = &topics[i];
		struct sk_err err = { { 0 } };
		enum sk_kerr ec;

		if (flags[i] & NAME_REPEAT)
			continue;
		if (flags[i] & NAME_DUP) {
			sk_err_set(&err, "topic appears more than once in "
					 "the request");
			ec = SK_KERR_INVALID_REQUEST;
		} else {
			ec = ct_create(req->b, t, flex, validate_only, &err);
		}
		sk_wr_strn(&w, (const char *)t->name.p, t->name.len, flex);
		if (ec == SK_KERR_NONE && !validate_only)
			pos[n_pos++] = req->resp->buf.len;
		sk_wr_i16(&w, (int16_t)ec);
		if (v >= 1)
			sk_wr_str(&w, ec && err.msg[0] ? err.msg : NULL, flex);
		sk_wr_tags(&w, flex);
	}
	sk_wr_tags(&w, flex);
	free(topics);
	free(names);
	free(flags);
	sk_topics_answer_durable(req->b, req->resp, pos, n_pos,
				 SK_KERR_KAFKA_STORAGE_ERROR);
	free(pos);
	return 0;
}

/* ---- DeleteTopics ---- */

static enum sk_kerr dt_delete(struct sk_broker *b, struct sk_str name,
			      int16_t v, struct sk_err *err)
{
	struct sk_topic *t;

	if (!b->cfg.delete_topic_enable) {
		sk_err_set(err, "topic deletion is disabled "
				"(delete.topic.enable is false)");
		/* Code 73 exists from v3; older clients would not know it. */
		return v >= 3 ? SK_KERR_TOPIC_DELETION_DISABLED
			      : SK_KERR_INVALID_REQUEST;
	}
	t = sk_topics_find(&b->topics, (const char *)name.p, (size_t)name.len);
	if (!t) {
		sk_err_set(err, "topic does not exist");
		return SK_KERR_UNKNOWN_TOPIC_OR_PARTITION;
	}
	/* No error message before v5: sk_topic_delete logs its failures. */
	return sk_topic_delete(b, t, err);
}

int sk_kafka_delete_topics(struct sk_req *req)
{
	struct sk_rd *r = &req->rd;
	struct sk_wr w = sk_resp_writer(req->resp);
	int16_t v = req->api_version;
	bool flex = req->flexible;
	struct sk_str *names;
	uint8_t *flags;
	size_t *pos, n_pos = 0;
	int32_t n, n_results = 0;

	n = sk_rd_array(r, flex, flex ? 1 : 2);
	if (n < 0)
		sk_rd_fail(r);
	names = sk_xcalloc((size_t)SK_MAX(n, 1), sizeof(*names));
	flags = sk_xcalloc((size_t)SK_MAX(n, 1), 1);
	for (int32_t i = 0; i < n && sk_rd_ok(r); i++)
		names[i] = rd_name(r, flex);
	sk_rd_i32(r); /* timeout_ms: answered once durable */
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r)) {
		free(names);
		free(flags);
		return -EPROTO;
	}

	names_mark_dups(names, n, flags);
	for (int32_t i = 0; i < n; i++)
		n_results += !(flags[i] & NAME_REPEAT);
	pos = sk_xmalloc((size_t)SK_MAX(n, 1) * sizeof(*pos));

	if (v >= 1)
		sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_array(&w, n_results, flex);
	for (int32_t i = 0; i < n; i++) {
		struct sk_err err = { { 0 } };
		enum sk_kerr ec;

		if (flags[i] & NAME_REPEAT)
			continue;
		if (flags[i] & NAME_DUP)
			ec = SK_KERR_INVALID_REQUEST;
		else
			ec = dt_delete(req->b, names[i], v, &err);
		sk_wr_strn(&w, (const char *)names[i].p, names[i].len, flex);
		if (ec == SK_KERR_NONE)
			pos[n_pos++] = req->resp->buf.len;
		sk_wr_i16(&w, (int16_t)ec);
		sk_wr_tags(&w, flex);
	}
	sk_wr_tags(&w, flex);
	free(names);
	free(flags);
	sk_topics_answer_durable(req->b, req->resp, pos, n_pos,
				 SK_KERR_KAFKA_STORAGE_ERROR);
	free(pos);
	return 0;
}

/* ---- CreatePartitions ---- */

struct cp_topic {
	struct sk_str name;
	int32_t count;
	int32_t n_assign;	/* -1: null, the broker chooses */
	struct sk_rd assign_rd; /* at the first CreatePartitionsAssignment */
};

static void cp_decode_topic(struct sk_rd *r, bool flex, struct cp_topic *t)
{
	t->name = rd_name(r, flex);
	t->count = sk_rd_i32(r);
	t->n_assign = sk_rd_array(r, flex, flex ? 2 : 4);
	t->assign_rd = *r;
	for (int32_t i = 0; i < t->n_assign; i++) {
		rd_skip_broker_ids(r, flex);
		sk_rd_tags(r, flex);
	}
	sk_rd_tags(r, flex);
}

static enum sk_kerr cp_create(struct sk_broker *b, const struct cp_topic *cp,
			      bool flex, bool validate_only, struct sk_err *err)
{
	struct sk_rd r = cp->assign_rd;
	struct sk_topic *t;
	enum sk_kerr ec;

	t = sk_topics_find(&b->topics, (const char *)cp->name.p,
			   (size_t)cp->name.len);
	if (!t) {
		sk_err_set(err, "topic '%.*s' does not exist",
			   (int)cp->name.len, (const char *)cp->name.p);
		return SK_KERR_UNKNOWN_TOPIC_OR_PARTITION;
	}
	if (cp->count <= t->n_parts) {
		if (cp->count == t->n_parts)
			sk_err_set(err, "topic already has %d partitions",
				   t->n_parts);
		else
			sk_err_set(err,
				   "topic has %d partitions, more than the "
				   "requested %d: partitions cannot be removed",
				   t->n_parts, cp->count);
		return SK_KERR_INVALID_PARTITIONS;
	}
	if (cp->n_assign >= 0) {
		int32_t adding = cp->count - t->n_parts;

		if (cp->n_assign != adding) {
			sk_err_set(err,
				   "increasing the number of partitions by %d "
				   "but %d assignments were given",
				   adding, cp->n_assign);
			return SK_KERR_INVALID_REPLICA_ASSIGNMENT;
		}
		for (int32_t i = 0; i < cp->n_assign; i++) {
			ec = check_replicas(b, &r, flex, t->n_parts + i, err);
			if (ec)
				return ec;
			sk_rd_tags(&r, flex);
		}
	}
	return sk_topic_add_partitions(b, t, cp->count, validate_only, err);
}

int sk_kafka_create_partitions(struct sk_req *req)
{
	struct sk_rd *r = &req->rd;
	struct sk_wr w = sk_resp_writer(req->resp);
	bool flex = req->flexible;
	bool validate_only;
	struct cp_topic *topics;
	struct sk_str *names;
	uint8_t *flags;
	size_t *pos, n_pos = 0;
	int32_t n, n_results = 0;

	n = sk_rd_array(r, flex, flex ? 7 : 10);
	if (n < 0)
		sk_rd_fail(r);
	topics = sk_xcalloc((size_t)SK_MAX(n, 1), sizeof(*topics));
	names = sk_xcalloc((size_t)SK_MAX(n, 1), sizeof(*names));
	flags = sk_xcalloc((size_t)SK_MAX(n, 1), 1);
	for (int32_t i = 0; i < n && sk_rd_ok(r); i++) {
		cp_decode_topic(r, flex, &topics[i]);
		names[i] = topics[i].name;
	}
	sk_rd_i32(r); /* timeout_ms: answered once durable */
	validate_only = sk_rd_i8(r) != 0;
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r)) {
		free(topics);
		free(names);
		free(flags);
		return -EPROTO;
	}

	names_mark_dups(names, n, flags);
	for (int32_t i = 0; i < n; i++)
		n_results += !(flags[i] & NAME_REPEAT);
	pos = sk_xmalloc((size_t)SK_MAX(n, 1) * sizeof(*pos));

	sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_array(&w, n_results, flex);
	for (int32_t i = 0; i < n; i++) {
		const struct cp_topic *t = &topics[i];
		struct sk_err err = { { 0 } };
		enum sk_kerr ec;

		if (flags[i] & NAME_REPEAT)
			continue;
		if (flags[i] & NAME_DUP) {
			sk_err_set(&err, "topic appears more than once in "
					 "the request");
			ec = SK_KERR_INVALID_REQUEST;
		} else {
			ec = cp_create(req->b, t, flex, validate_only, &err);
		}
		sk_wr_strn(&w, (const char *)t->name.p, t->name.len, flex);
		if (ec == SK_KERR_NONE && !validate_only)
			pos[n_pos++] = req->resp->buf.len;
		sk_wr_i16(&w, (int16_t)ec);
		sk_wr_str(&w, ec && err.msg[0] ? err.msg : NULL, flex);
		sk_wr_tags(&w, flex);
	}
	sk_wr_tags(&w, flex);
	free(topics);
	free(names);
	free(flags);
	sk_topics_answer_durable(req->b, req->resp, pos, n_pos,
				 SK_KERR_KAFKA_STORAGE_ERROR);
	free(pos);
	return 0;
}
