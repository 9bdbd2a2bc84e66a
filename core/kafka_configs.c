/*
 * DescribeConfigs (32) v0-2 and AlterConfigs (33) v0-1.
 *
 * Topics are described from their effective configs: a key set on the
 * topic reports DYNAMIC_TOPIC_CONFIG, any other key DEFAULT_CONFIG, and
 * the synonyms show where the default comes from (the broker key, e.g.
 * log.retention.ms for retention.ms). The broker's own configuration
 * comes from the YAML file and cannot change at run time, so it is
 * described read-only and AlterConfigs refuses it.
 *
 * AlterConfigs answers once the new overrides are stored durably in
 * meta.db; if they could not be, they are undone and the resource gets
 * KAFKA_STORAGE_ERROR.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "kafka.h"

/* Kafka's ConfigResource.Type values we answer for. */
enum {
	SK_RESOURCE_TOPIC = 2,
	SK_RESOURCE_BROKER = 4,
};

/* Kafka's DescribeConfigsResponse.ConfigSource values we report. */
enum {
	SK_CONFIG_SOURCE_DYNAMIC_TOPIC = 1,
	SK_CONFIG_SOURCE_DEFAULT = 5,
};

/* Where a value is stored for formatting: topic values are small. */
#define DC_VALUE_MAX 64

/* One synonym of a described config. */
struct dc_synonym {
	const char *name;
	const char *value;
	int8_t source;
};

/* One config of a DescribeConfigs result, before it is written. */
struct dc_entry {
	const char *name;
	const char *value; /* NULL: a null value */
	bool read_only;
	bool is_default;
	int8_t source;
	int n_syn;
	struct dc_synonym syn[2]; /* most specific first */
	char buf[2][DC_VALUE_MAX];
};

/* The entries of one resource; at most cap. */
struct dc_list {
	struct dc_entry *e;
	size_t n, cap;
};

/* One resource of the request; its keys are read again when answering. */
struct dc_res {
	int8_t type;
	struct sk_str name;
	int32_t n_keys;	      /* -1: null, every key */
	struct sk_rd keys_rd; /* at the first configuration key */
};

/* Read a non-nullable string: null is malformed, as in Kafka. */
static struct sk_str rd_name(struct sk_rd *r, bool flex)
{
	struct sk_str s = sk_rd_str(r, flex);

	if (s.len < 0)
		sk_rd_fail(r);
	return s;
}

/* A NUL inside a name would silently shorten it once copied. */
static bool str_has_nul(struct sk_str s)
{
	return s.len > 0 && memchr(s.p, 0, (size_t)s.len) != NULL;
}

/* ---- DescribeConfigs ---- */

static void dc_topic_entries(const struct sk_broker *b,
			     const struct sk_topic *t, struct dc_list *l)
{
	for (size_t i = 0; i < sk_topic_config_count() && l->n < l->cap; i++) {
		struct dc_entry *e = &l->e[l->n++];
		const char *bkey = sk_topic_config_broker_key(i);
		bool set = sk_topic_config_is_set(&t->cfg, i);

		e->name = sk_topic_config_name(i);
		sk_topic_config_value(&t->cfg, i, e->buf[0], DC_VALUE_MAX);
		sk_topic_config_value(&b->cfg.topic_defaults, i, e->buf[1],
				      DC_VALUE_MAX);
		e->value = e->buf[0];
		e->read_only = false;
		e->is_default = !set;
		e->source = set ? SK_CONFIG_SOURCE_DYNAMIC_TOPIC
				: SK_CONFIG_SOURCE_DEFAULT;
		if (set)
			e->syn[e->n_syn++] = (struct dc_synonym){
				e->name, e->buf[0],
				SK_CONFIG_SOURCE_DYNAMIC_TOPIC
			};
		if (bkey)
			e->syn[e->n_syn++] =
				(struct dc_synonym){ bkey, e->buf[1],
						     SK_CONFIG_SOURCE_DEFAULT };
	}
}

/* Add a read-only broker entry unless a key of that name is listed. */
static struct dc_entry *dc_broker_add(struct dc_list *l, const char *name,
				      const char *value)
{
	struct dc_entry *e;

	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->e[i].name, name) == 0)
			return NULL;
	if (l->n == l->cap)
		return NULL;
	e = &l->e[l->n++];
	e->name = name;
	e->value = value;
	e->read_only = true;
	e->is_default = true;
	e->source = SK_CONFIG_SOURCE_DEFAULT;
	e->syn[e->n_syn++] =
		(struct dc_synonym){ name, value, SK_CONFIG_SOURCE_DEFAULT };
	return e;
}

/* Every broker key, read-only, with the value it has now. */
static void dc_broker_entries(const struct sk_broker *b, struct dc_list *l)
{
	const char *name, *value;
	char buf[DC_VALUE_MAX];
	size_t i = 0;

	while (sk_config_broker_next(&b->cfg, &i, &name, &value, buf,
				     sizeof(buf))) {
		struct dc_entry *e = dc_broker_add(l, name, value);

		if (e && value == buf) {
			memcpy(e->buf[0], buf, sizeof(buf));
			e->value = e->syn[0].value = e->buf[0];
		}
	}
}

/*
 * Fill l with the entries of resource res, or return an error with err
 * set. An empty BROKER name is Kafka's cluster-wide dynamic default,
 * which is always empty here.
 */
static enum sk_kerr dc_entries(const struct sk_broker *b,
			       const struct dc_res *res, struct dc_list *l,
			       struct sk_err *err)
{
	const struct sk_topic *t;
	char id[16];

	switch (res->type) {
	case SK_RESOURCE_TOPIC:
		t = sk_topics_find(&b->topics, (const char *)res->name.p,
				   (size_t)res->name.len);
		if (!t) {
			sk_err_set(err, "topic '%.*s' does not exist",
				   (int)res->name.len,
				   (const char *)res->name.p);
			return SK_KERR_UNKNOWN_TOPIC_OR_PARTITION;
		}
		dc_topic_entries(b, t, l);
		return SK_KERR_NONE;
	case SK_RESOURCE_BROKER:
		snprintf(id, sizeof(id), "%" PRId32, b->cfg.node_id);
		if (res->name.len == 0)
			return SK_KERR_NONE;
		if (!sk_str_eq(res->name, id)) {
			sk_err_set(err,
				   "unexpected broker id '%.*s': this is "
				   "node %s",
				   (int)res->name.len,
				   (const char *)res->name.p, id);
			return SK_KERR_INVALID_REQUEST;
		}
		dc_broker_entries(b, l);
		return SK_KERR_NONE;
	default:
		sk_err_set(err,
			   "resource type %d is not supported (only TOPIC "
			   "(2) and BROKER (4))",
			   res->type);
		return SK_KERR_INVALID_REQUEST;
	}
}

/*
 * Keep only the requested keys. Unknown keys are skipped, as Kafka
 * does; null or an empty list asks for everything.
 */
static void dc_filter(const struct dc_res *res, bool flex, bool *want,
		      const struct dc_list *l)
{
	struct sk_rd r = res->keys_rd;

	if (res->n_keys <= 0) {
		for (size_t j = 0; j < l->n; j++)
			want[j] = true;
		return;
	}
	for (int32_t i = 0; i < res->n_keys; i++) {
		struct sk_str key = sk_rd_str(&r, flex);

		for (size_t j = 0; j < l->n; j++)
			if (sk_str_eq(key, l->e[j].name))
				want[j] = true;
	}
}

static void dc_write_entry(struct sk_wr *w, int16_t v, bool flex,
			   bool include_synonyms, const struct dc_entry *e)
{
	sk_wr_str(w, e->name, flex);
	sk_wr_str(w, e->value, flex);
	sk_wr_i8(w, e->read_only);
	if (v == 0)
		sk_wr_i8(w, e->is_default);
	else
		sk_wr_i8(w, e->source);
	sk_wr_i8(w, 0); /* is_sensitive: nothing secret in these keys */
	if (v >= 1) {
		int n = include_synonyms ? e->n_syn : 0;

		sk_wr_array(w, n, flex);
		for (int i = 0; i < n; i++) {
			sk_wr_str(w, e->syn[i].name, flex);
			sk_wr_str(w, e->syn[i].value, flex);
			sk_wr_i8(w, e->syn[i].source);
			sk_wr_tags(w, flex);
		}
	}
	sk_wr_tags(w, flex);
}

static void dc_answer(const struct sk_broker *b, struct sk_wr *w, int16_t v,
		      bool flex, bool include_synonyms,
		      const struct dc_res *res)
{
	size_t cap = SK_MAX(sk_topic_config_count(), sk_config_broker_count());
	struct dc_list l = { sk_xcalloc(cap, sizeof(*l.e)), 0, cap };
	bool *want = sk_xcalloc(cap, sizeof(*want));
	struct sk_err err = { { 0 } };
	enum sk_kerr ec;
	int32_t n = 0;

	ec = dc_entries(b, res, &l, &err);
	dc_filter(res, flex, want, &l);
	for (size_t j = 0; j < l.n; j++)
		n += want[j];

	sk_wr_i16(w, (int16_t)ec);
	sk_wr_str(w, ec ? err.msg : NULL, flex);
	sk_wr_i8(w, res->type);
	sk_wr_strn(w, (const char *)res->name.p, res->name.len, flex);
	sk_wr_array(w, n, flex);
	for (size_t j = 0; j < l.n; j++)
		if (want[j])
			dc_write_entry(w, v, flex, include_synonyms, &l.e[j]);
	sk_wr_tags(w, flex);
	free(want);
	free(l.e);
}

int sk_kafka_describe_configs(struct sk_req *req)
{
	struct sk_rd *r = &req->rd;
	struct sk_wr w = sk_resp_writer(req->resp);
	int16_t v = req->api_version;
	bool flex = req->flexible;
	bool include_synonyms = false;
	struct dc_res *res;
	int32_t n;

	/* include_synonyms follows the resources: decode them all first. */
	n = sk_rd_array(r, flex, flex ? 4 : 7);
	if (n < 0)
		sk_rd_fail(r);
	res = sk_xcalloc((size_t)SK_MAX(n, 1), sizeof(*res));
	for (int32_t i = 0; i < n && sk_rd_ok(r); i++) {
		res[i].type = sk_rd_i8(r);
		res[i].name = rd_name(r, flex);
		res[i].n_keys = sk_rd_array(r, flex, flex ? 1 : 2);
		res[i].keys_rd = *r;
		for (int32_t k = 0; k < res[i].n_keys; k++)
			rd_name(r, flex);
		sk_rd_tags(r, flex);
	}
	if (v >= 1)
		include_synonyms = sk_rd_i8(r) != 0;
	if (v >= 3)
		sk_rd_i8(r); /* include_documentation */
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r)) {
		free(res);
		return -EPROTO;
	}

	sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_array(&w, n, flex);
	for (int32_t i = 0; i < n; i++)
		dc_answer(req->b, &w, v, flex, include_synonyms, &res[i]);
	sk_wr_tags(&w, flex);
	free(res);
	sk_resp_finish(req->resp);
	return 0;
}

/* ---- AlterConfigs ---- */

struct ac_res {
	int8_t type;
	struct sk_str name;
	int32_t n_configs;
	struct sk_rd configs_rd; /* at the first AlterableConfig */
};

static void free_kvs(struct sk_config_kv *kvs, int32_t n)
{
	for (int32_t i = 0; i < n; i++) {
		free(kvs[i].key);
		free(kvs[i].value);
	}
	free(kvs);
}

/*
 * AlterConfigs replaces every override of the topic with the given set,
 * so "unset" is expressed by leaving a key out; a null value has no
 * meaning and is refused rather than guessed at.
 */
static enum sk_kerr ac_topic(struct sk_broker *b, const struct ac_res *res,
			     bool flex, bool validate_only, struct sk_err *err)
{
	struct sk_rd r = res->configs_rd;
	struct sk_config_kv *kvs;
	struct sk_topic *t;
	enum sk_kerr ec;
	int32_t i;

	t = sk_topics_find(&b->topics, (const char *)res->name.p,
			   (size_t)res->name.len);
	if (!t) {
		sk_err_set(err, "topic '%.*s' does not exist",
			   (int)res->name.len, (const char *)res->name.p);
		return SK_KERR_UNKNOWN_TOPIC_OR_PARTITION;
	}
	kvs = sk_xcalloc((size_t)SK_MAX(res->n_configs, 1), sizeof(*kvs));
	for (i = 0; i < res->n_configs; i++) {
		struct sk_str k = sk_rd_str(&r, flex);
		struct sk_str val = sk_rd_str(&r, flex);

		sk_rd_tags(&r, flex);
		if (val.len < 0 || str_has_nul(k) || str_has_nul(val)) {
			sk_err_set(err, "config '%.*s': %s", (int)k.len,
				   (const char *)k.p,
				   val.len < 0
					   ? "a null value is not allowed "
					     "(leave the key out to reset it "
					     "to the default)"
					   : "contains a NUL byte");
			free_kvs(kvs, i);
			return SK_KERR_INVALID_CONFIG;
		}
		kvs[i].key = sk_str_dup(k);
		kvs[i].value = sk_str_dup(val);
	}
	ec = sk_topic_set_configs(b, t, kvs, (size_t)res->n_configs,
				  validate_only, err);
	free_kvs(kvs, res->n_configs);
	return ec;
}

static enum sk_kerr ac_apply(struct sk_broker *b, const struct ac_res *res,
			     bool flex, bool validate_only, struct sk_err *err)
{
	switch (res->type) {
	case SK_RESOURCE_TOPIC:
		return ac_topic(b, res, flex, validate_only, err);
	case SK_RESOURCE_BROKER:
		sk_err_set(err, "broker configuration is static: edit the "
				"YAML file and restart");
		return SK_KERR_INVALID_REQUEST;
	default:
		sk_err_set(err,
			   "resource type %d is not supported (only TOPIC "
			   "(2))",
			   res->type);
		return SK_KERR_INVALID_REQUEST;
	}
}

int sk_kafka_alter_configs(struct sk_req *req)
{
	struct sk_rd *r = &req->rd;
	struct sk_wr w = sk_resp_writer(req->resp);
	bool flex = req->flexible;
	bool validate_only;
	struct ac_res *res;
	size_t *pos, n_pos = 0;
	int32_t n;

	n = sk_rd_array(r, flex, flex ? 4 : 7);
	if (n < 0)
		sk_rd_fail(r);
	res = sk_xcalloc((size_t)SK_MAX(n, 1), sizeof(*res));
	for (int32_t i = 0; i < n && sk_rd_ok(r); i++) {
		res[i].type = sk_rd_i8(r);
		res[i].name = rd_name(r, flex);
		res[i].n_configs = sk_rd_array(r, flex, flex ? 3 : 4);
		if (res[i].n_configs < 0)
			sk_rd_fail(r);
		res[i].configs_rd = *r;
		for (int32_t k = 0; k < res[i].n_configs; k++) {
			rd_name(r, flex);
			sk_rd_str(r, flex); /* value: nullable */
			sk_rd_tags(r, flex);
		}
		sk_rd_tags(r, flex);
	}
	validate_only = sk_rd_i8(r) != 0;
	sk_rd_tags(r, flex);
	if (!sk_rd_ok(r)) {
		free(res);
		return -EPROTO;
	}

	pos = sk_xmalloc((size_t)SK_MAX(n, 1) * sizeof(*pos));
	sk_wr_i32(&w, 0); /* throttle_time_ms */
	sk_wr_array(&w, n, flex);
	for (int32_t i = 0; i < n; i++) {
		struct sk_err err = { { 0 } };
		enum sk_kerr ec;

		ec = ac_apply(req->b, &res[i], flex, validate_only, &err);
		if (ec == SK_KERR_NONE && !validate_only)
			pos[n_pos++] = req->resp->buf.len;
		sk_wr_i16(&w, (int16_t)ec);
		sk_wr_str(&w, ec ? err.msg : NULL, flex);
		sk_wr_i8(&w, res[i].type);
		sk_wr_strn(&w, (const char *)res[i].name.p, res[i].name.len,
			   flex);
		sk_wr_tags(&w, flex);
	}
	sk_wr_tags(&w, flex);
	free(res);
	sk_topics_answer_durable(req->b, req->resp, pos, n_pos,
				 SK_KERR_KAFKA_STORAGE_ERROR);
	free(pos);
	return 0;
}
