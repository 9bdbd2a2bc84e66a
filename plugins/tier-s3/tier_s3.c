/*
 * tier-s3: a storage tier in an S3-compatible object store (AWS S3,
 * MinIO, Ceph RGW, s3rver...). Objects are named prefix + key in the
 * bucket; a segment's files are uploaded .log last, so its presence
 * means the segment is whole. Objects below multipart_threshold go up
 * in one PUT (with S3's CRC-32C checksum, which the broker already has);
 * bigger ones as a multipart upload, aborted if any part fails. S3 makes
 * an object visible only once it is whole, so a reader never sees a
 * partial one.
 *
 * libcurl's easy interface blocks, so the tier registers with
 * SKALD_TIER_BLOCKING and the broker runs its operations on its pool
 * threads; max_requests caps the requests in flight.
 *
 *	plugins:
 *	  - path: build/plugins/tier-s3.so
 *	    config:
 *	      endpoint: https://s3.eu-west-1.amazonaws.com
 *	      bucket: my-archive
 *	      region: eu-west-1
 *	      access_key: AKIA...
 *	      secret_key: ...
 *	storage:
 *	  tier: tier-s3
 */
#define _GNU_SOURCE

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <skald/host.h>

#include "s3_http.h"

/* Error messages name long keys and are cut to fit, on purpose. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#define MIB	     (1024 * 1024)
#define S3_MIN_PART  (5 * MIB) /* S3's smallest part but the last */
#define S3_MAX_PARTS 10000

static const struct skald_config_key tier_s3_schema[] = {
	{ "endpoint", SKALD_CONFIG_STRING, SKALD_CONFIG_REQUIRED, NULL, 8, 250,
	  NULL,
	  "The service URL, http[s]://HOST[:PORT] (for AWS: "
	  "https://s3.REGION.amazonaws.com)." },
	{ "bucket", SKALD_CONFIG_STRING, SKALD_CONFIG_REQUIRED, NULL, 3, 63,
	  NULL, "The bucket holding the objects; it must exist." },
	{ "region", SKALD_CONFIG_STRING, 0, "us-east-1", 1, 63, NULL,
	  "The region requests are signed for (SigV4)." },
	{ "access_key", SKALD_CONFIG_STRING,
	  SKALD_CONFIG_REQUIRED | SKALD_CONFIG_SECRET, NULL, 1, 255, NULL,
	  "The access key ID." },
	{ "secret_key", SKALD_CONFIG_STRING,
	  SKALD_CONFIG_REQUIRED | SKALD_CONFIG_SECRET, NULL, 1, 255, NULL,
	  "The secret access key." },
	{ "path_style", SKALD_CONFIG_BOOL, 0, "false", 0, 0, NULL,
	  "Address the bucket as HOST/BUCKET/KEY instead of "
	  "BUCKET.HOST/KEY (virtual-host style)." },
	{ "prefix", SKALD_CONFIG_STRING, 0, NULL, 1, 500, NULL,
	  "Prepended to every object name as is (end it with / for a "
	  "folder)." },
	{ "multipart_threshold", SKALD_CONFIG_INT, 0, "8388608", 1,
	  5368709120LL, NULL,
	  "Objects of at least this many bytes go up as multipart "
	  "uploads." },
	{ "part_size", SKALD_CONFIG_INT, 0, "8388608", 1024, 5368709120LL, NULL,
	  "Bytes per part of a multipart upload (S3 wants at least 5 MiB; "
	  "smaller only for tests)." },
	{ "connect_timeout_ms", SKALD_CONFIG_INT, 0, "5000", 100, 600000, NULL,
	  "Give up connecting after this long." },
	{ "timeout_ms", SKALD_CONFIG_INT, 0, "300000", 1000, 86400000, NULL,
	  "Give up a request (one part, one object) after this long." },
	{ "max_requests", SKALD_CONFIG_INT, 0, "4", 1, 64, NULL,
	  "Requests in flight at most (each keeps a connection open)." },
	{ "list_page_size", SKALD_CONFIG_INT, 0, "1000", 1, 1000, NULL,
	  "Keys per ListObjectsV2 page." },
	{ "tls_verify", SKALD_CONFIG_BOOL, 0, "true", 0, 0, NULL,
	  "Check the server's certificate and name (https)." },
	{ "checksums", SKALD_CONFIG_BOOL, 0, "true", 0, 0, NULL,
	  "Send each single-PUT object's CRC-32C (x-amz-checksum-crc32c) "
	  "for the store to check; turn off for stores that refuse it." },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL },
};

struct tier_s3 {
	const struct skald_host *host;
	struct s3_client client;
	uint64_t threshold, part_size;
	long page_size;
	bool checksums;
	struct skald_metric *written, *read, *failed;
};

/* A prefix is a key, or a key and a trailing '/'. */
static int prefix_ok(const char *prefix)
{
	char tmp[512];
	size_t n = strlen(prefix);

	if (n >= sizeof(tmp))
		return 0;
	memcpy(tmp, prefix, n + 1);
	if (n > 1 && tmp[n - 1] == '/')
		tmp[n - 1] = '\0';
	return skald_tier_key_ok(tmp);
}

/* Base64 of the CRC-32C, big-endian, as x-amz-checksum-crc32c wants. */
static void crc_base64(uint32_t crc, char out[9])
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		"0123456789+/";
	unsigned char b[4] = { (unsigned char)(crc >> 24),
			       (unsigned char)(crc >> 16),
			       (unsigned char)(crc >> 8), (unsigned char)crc };

	out[0] = b64[b[0] >> 2];
	out[1] = b64[((b[0] & 3) << 4) | (b[1] >> 4)];
	out[2] = b64[((b[1] & 15) << 2) | (b[2] >> 6)];
	out[3] = b64[b[2] & 63];
	out[4] = b64[b[3] >> 2];
	out[5] = b64[(b[3] & 3) << 4];
	out[6] = '=';
	out[7] = '=';
	out[8] = '\0';
}

/* Multipart upload of len bytes of fd as object key. */
static int put_multipart(struct tier_s3 *t, void *conn, const char *key, int fd,
			 uint64_t len, char *msg, size_t cap)
{
	const struct skald_host *h = t->host;
	struct s3_client *c = &t->client;
	struct s3_resp resp = { .out_fd = -1 };
	uint64_t part = t->part_size;
	char upload_id[512], num[16];
	const char *q_create[] = { "uploads", NULL, NULL };
	size_t n_parts, xml_cap, xl = 0;
	char(*etags)[128] = NULL;
	char *xml = NULL;
	int rc;

	if ((len + part - 1) / part > S3_MAX_PARTS)
		part = (len + S3_MAX_PARTS - 1) / S3_MAX_PARTS;
	n_parts = (size_t)((len + part - 1) / part);
	rc = s3_request(c, conn, "POST", key, q_create, NULL, &resp, msg, cap);
	if (!rc && s3_xml_text(resp.body, resp.len, "UploadId", upload_id,
			       sizeof(upload_id)) != 1) {
		rc = -EPROTO;
		snprintf(msg, cap,
			 "CreateMultipartUpload of %s: no UploadId in the "
			 "answer",
			 key);
	}
	s3_resp_free(c, &resp);
	if (rc)
		return rc;
	etags = h->mem_alloc(h, n_parts * sizeof(*etags));
	xml_cap = 128 + n_parts * (sizeof(*etags) + 64);
	xml = h->mem_alloc(h, xml_cap);
	if (!etags || !xml) {
		rc = -ENOMEM;
		snprintf(msg, cap, "multipart upload of %s: out of memory",
			 key);
		goto abort;
	}
	for (size_t i = 0; i < n_parts && !rc; i++) {
		const char *q_part[] = { "partNumber", num,  "uploadId",
					 upload_id,    NULL, NULL };
		struct s3_body body = { fd, i * part, 0, NULL, NULL, NULL };

		body.len = len - body.offset < part ? len - body.offset : part;
		snprintf(num, sizeof(num), "%zu", i + 1);
		rc = s3_request(c, conn, "PUT", key, q_part, &body, &resp, msg,
				cap);
		if (!rc && !resp.etag[0]) {
			rc = -EPROTO;
			snprintf(msg, cap,
				 "UploadPart %zu of %s: no ETag in the answer",
				 i + 1, key);
		}
		if (!rc) {
			memcpy(etags[i], resp.etag, sizeof(etags[i]));
			h->metric_add(t->written, (double)body.len);
		}
		s3_resp_free(c, &resp);
	}
	if (rc)
		goto abort;
	xl = (size_t)snprintf(xml, xml_cap, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < n_parts; i++)
		xl += (size_t)snprintf(xml + xl, xml_cap - xl,
				       "<Part><PartNumber>%zu</PartNumber>"
				       "<ETag>%s</ETag></Part>",
				       i + 1, etags[i]);
	xl += (size_t)snprintf(xml + xl, xml_cap - xl,
			       "</CompleteMultipartUpload>");
	{
		const char *q_done[] = { "uploadId", upload_id, NULL, NULL };
		struct s3_body body = {
			-1, 0, xl, xml, "application/xml", NULL
		};
		char code[64];

		rc = s3_request(c, conn, "POST", key, q_done, &body, &resp, msg,
				cap);
		/* S3 may answer 200 and report the failure in the body. */
		if (!rc && resp.body &&
		    s3_xml_text(resp.body, resp.len, "Code", code,
				sizeof(code)) == 1) {
			rc = s3_status_errno(500, code);
			snprintf(msg, cap,
				 "CompleteMultipartUpload of %s: %s "
				 "(retriable)",
				 key, code);
		}
		s3_resp_free(c, &resp);
	}
	if (!rc)
		goto out;
abort : {
	/* Best effort: a leftover upload costs storage, not correctness. */
	const char *q_abort[] = { "uploadId", upload_id, NULL, NULL };
	char ignored[256];

	s3_request(c, conn, "DELETE", key, q_abort, NULL, &resp, ignored,
		   sizeof(ignored));
	s3_resp_free(c, &resp);
}
out:
	h->mem_free(h, etags);
	h->mem_free(h, xml);
	return rc;
}

static int put_object(struct tier_s3 *t, void *conn, const char *key,
		      const struct skald_tier_file *f, char *msg, size_t cap)
{
	struct s3_resp resp = { .out_fd = -1 };
	struct s3_body body = { f->fd, 0, f->size, NULL, NULL, NULL };
	char crc[9];
	int rc;

	if (f->size >= t->threshold && f->size > 0)
		return put_multipart(t, conn, key, f->fd, f->size, msg, cap);
	if (t->checksums) {
		crc_base64(f->crc32c, crc);
		body.checksum = crc;
	}
	rc = s3_request(&t->client, conn, "PUT", key, NULL, &body, &resp, msg,
			cap);
	s3_resp_free(&t->client, &resp);
	if (!rc)
		t->host->metric_add(t->written, (double)f->size);
	return rc;
}

static void *conn_or_fail(struct tier_s3 *t, struct skald_tier_op *op)
{
	void *conn = s3_conn_get(&t->client);

	if (!conn)
		t->host->tier_done(t->host, op, -ENOMEM,
				   "cannot create a curl handle");
	return conn;
}

static void finish(struct tier_s3 *t, struct skald_tier_op *op, void *conn,
		   int rc, const char *msg)
{
	s3_conn_put(&t->client, conn);
	if (rc)
		t->host->metric_add(t->failed, 1);
	t->host->tier_done(t->host, op, rc, rc && msg[0] ? msg : NULL);
}

static int s3_upload(void *tier, struct skald_tier_op *op,
		     const struct skald_tier_segment *seg)
{
	struct tier_s3 *t = tier;
	char key[1024], msg[256] = "";
	void *conn;
	int rc = 0;

	if (!skald_tier_key_ok(seg->key))
		return -EINVAL;
	if (!(conn = conn_or_fail(t, op)))
		return 0;
	/* The .log last: its presence means the segment is whole. */
	for (uint32_t k = seg->n_files; k-- > 0 && !rc;) {
		snprintf(key, sizeof(key), "%s%s", seg->key,
			 seg->files[k]->suffix);
		rc = put_object(t, conn, key, seg->files[k], msg, sizeof(msg));
	}
	finish(t, op, conn, rc, msg);
	return 0;
}

static int s3_download(void *tier, struct skald_tier_op *op,
		       const struct skald_tier_get *get)
{
	struct tier_s3 *t = tier;
	struct s3_resp resp = { .out_fd = get->fd };
	char msg[256] = "";
	void *conn;
	int rc;

	if (!skald_tier_key_ok(get->key))
		return -EINVAL;
	if (!(conn = conn_or_fail(t, op)))
		return 0;
	resp.ranged = get->offset || get->length;
	resp.range_off = get->offset;
	resp.range_len = get->length;
	rc = s3_request(&t->client, conn, "GET", get->key, NULL, NULL, &resp,
			msg, sizeof(msg));
	if (!rc)
		t->host->metric_add(t->read, (double)resp.written);
	s3_resp_free(&t->client, &resp);
	finish(t, op, conn, rc, msg);
	return 0;
}

static int s3_remove(void *tier, struct skald_tier_op *op,
		     const struct skald_tier_segment *seg)
{
	struct tier_s3 *t = tier;
	struct s3_resp resp = { .out_fd = -1 };
	char key[1024], msg[256] = "";
	void *conn;
	int rc = 0;

	if (!skald_tier_key_ok(seg->key))
		return -EINVAL;
	if (!(conn = conn_or_fail(t, op)))
		return 0;
	for (uint32_t k = 0; k < seg->n_files; k++) {
		char one[256];
		int r;

		snprintf(key, sizeof(key), "%s%s", seg->key,
			 seg->files[k]->suffix);
		r = s3_request(&t->client, conn, "DELETE", key, NULL, NULL,
			       &resp, one, sizeof(one));
		s3_resp_free(&t->client, &resp);
		if (r && r != -ENOENT && !rc) {
			rc = r;
			snprintf(msg, sizeof(msg), "%s", one);
		}
	}
	finish(t, op, conn, rc, msg);
	return 0;
}

/* Report the <Contents> of one ListObjectsV2 page. */
static int list_page(struct tier_s3 *t, struct skald_tier_op *op,
		     const struct s3_resp *resp, char *msg, size_t cap)
{
	const char *pre = t->client.where.prefix;
	size_t pos = 0, s, e, pl = strlen(pre);
	char key[1100], size[32];

	while (s3_xml_next(resp->body, resp->len, &pos, "Contents", &s, &e)) {
		const char *item = resp->body + s;
		int rc;

		if (s3_xml_text(item, e - s, "Key", key, sizeof(key)) != 1 ||
		    s3_xml_text(item, e - s, "Size", size, sizeof(size)) != 1) {
			snprintf(msg, cap,
				 "ListObjectsV2: an entry without a Key or "
				 "Size");
			return -EPROTO;
		}
		if (strncmp(key, pre, pl) != 0)
			continue;
		rc = t->host->tier_list_add(t->host, op, key + pl,
					    strtoull(size, NULL, 10));
		if (rc)
			return rc;
	}
	return 0;
}

static int s3_list(void *tier, struct skald_tier_op *op, const char *prefix)
{
	struct tier_s3 *t = tier;
	struct s3_resp resp = { .out_fd = -1 };
	char full[1100], token[1024] = "", more[8], page[16], msg[256] = "";
	void *conn;
	int rc = 0;

	if (!(conn = conn_or_fail(t, op)))
		return 0;
	snprintf(full, sizeof(full), "%s%s", t->client.where.prefix, prefix);
	snprintf(page, sizeof(page), "%ld", t->page_size);
	do {
		const char *q[] = { "list-type",
				    "2",
				    "prefix",
				    full,
				    "max-keys",
				    page,
				    token[0] ? "continuation-token" : NULL,
				    token,
				    NULL,
				    NULL };

		rc = s3_request(&t->client, conn, "GET", NULL, q, NULL, &resp,
				msg, sizeof(msg));
		if (!rc)
			rc = list_page(t, op, &resp, msg, sizeof(msg));
		if (!rc &&
		    s3_xml_text(resp.body, resp.len, "IsTruncated", more,
				sizeof(more)) == 1 &&
		    strcmp(more, "true") == 0) {
			if (s3_xml_text(resp.body, resp.len,
					"NextContinuationToken", token,
					sizeof(token)) != 1) {
				rc = -EPROTO;
				snprintf(msg, sizeof(msg),
					 "ListObjectsV2: truncated without a "
					 "NextContinuationToken");
			}
		} else {
			token[0] = '\0';
		}
		s3_resp_free(&t->client, &resp);
	} while (!rc && token[0]);
	finish(t, op, conn, rc, msg);
	return 0;
}

static const struct skald_storage_tier_ops tier_s3_ops = {
	sizeof(struct skald_storage_tier_ops),
	SKALD_TIER_BLOCKING,
	s3_upload,
	s3_download,
	s3_remove,
	s3_list,
};

static int configure(struct tier_s3 *t, const struct skald_config *config,
		     struct skald_error *err)
{
	const struct skald_host *h = t->host;
	struct s3_client *c = &t->client;
	struct s3_where *w = &c->where;
	const char *prefix = h->config_string(config, "prefix");
	int rc;

	rc = s3_parse_endpoint(w, h->config_string(config, "endpoint"),
			       err->msg, sizeof(err->msg));
	if (rc)
		return rc;
	snprintf(w->bucket, sizeof(w->bucket), "%s",
		 h->config_string(config, "bucket"));
	if (!s3_bucket_ok(w->bucket)) {
		snprintf(err->msg, sizeof(err->msg),
			 "bucket %s: expected 3 to 63 of [a-z0-9.-], "
			 "starting and ending with a letter or digit",
			 w->bucket);
		return -EINVAL;
	}
	w->path_style = h->config_bool(config, "path_style");
	snprintf(w->prefix, sizeof(w->prefix), "%s", prefix ? prefix : "");
	if (prefix && !prefix_ok(prefix)) {
		snprintf(err->msg, sizeof(err->msg),
			 "prefix %s: expected a relative name without empty, "
			 ". or .. parts",
			 prefix);
		return -EINVAL;
	}
	snprintf(c->region, sizeof(c->region), "%s",
		 h->config_string(config, "region"));
	snprintf(c->access_key, sizeof(c->access_key), "%s",
		 h->config_string(config, "access_key"));
	snprintf(c->secret_key, sizeof(c->secret_key), "%s",
		 h->config_string(config, "secret_key"));
	c->connect_timeout_ms =
		(long)h->config_int(config, "connect_timeout_ms");
	c->timeout_ms = (long)h->config_int(config, "timeout_ms");
	c->tls_verify = h->config_bool(config, "tls_verify");
	t->threshold = (uint64_t)h->config_int(config, "multipart_threshold");
	t->part_size = (uint64_t)h->config_int(config, "part_size");
	t->page_size = (long)h->config_int(config, "list_page_size");
	t->checksums = h->config_bool(config, "checksums");
	return 0;
}

static int tier_s3_init(const struct skald_host *h,
			const struct skald_config *config, void **state,
			struct skald_error *err)
{
	const curl_version_info_data *cv;
	struct tier_s3 *t;
	int rc;

	/* CURLOPT_AWS_SIGV4 came with libcurl 7.75.0. */
	cv = curl_version_info(CURLVERSION_NOW);
	if (cv->version_num < 0x074b00) {
		snprintf(err->msg, sizeof(err->msg),
			 "libcurl %s is too old: AWS SigV4 needs 7.75.0",
			 cv->version);
		return -ENOTSUP;
	}
	t = h->mem_alloc(h, sizeof(*t));
	if (!t)
		return -ENOMEM;
	memset(t, 0, sizeof(*t));
	t->host = h;
	rc = configure(t, config, err);
	if (rc) {
		h->mem_free(h, t);
		return rc;
	}
	/* init runs on the loop thread before any other: the one place
	 * curl_global_init may run (it is not thread-safe in 7.88). */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err->msg, sizeof(err->msg), "curl_global_init failed");
		h->mem_free(h, t);
		return -EIO;
	}
	rc = s3_client_init(&t->client, h,
			    (size_t)h->config_int(config, "max_requests"));
	if (rc) {
		curl_global_cleanup();
		h->mem_free(h, t);
		return rc;
	}
	t->written = h->metric_counter(h, "tier_s3_bytes_written_total",
				       "Bytes uploaded to the bucket", NULL, 0);
	t->read =
		h->metric_counter(h, "tier_s3_bytes_read_total",
				  "Bytes downloaded from the bucket", NULL, 0);
	t->failed = h->metric_counter(h, "tier_s3_failures_total",
				      "Tier operations that failed", NULL, 0);
	rc = h->register_storage_tier(h, &tier_s3_ops, t);
	if (rc) {
		snprintf(err->msg, sizeof(err->msg),
			 "register_storage_tier: %s", strerror(-rc));
		s3_client_fini(&t->client);
		curl_global_cleanup();
		h->mem_free(h, t);
		return rc;
	}
	if (t->part_size < S3_MIN_PART)
		h->log(h, SKALD_LOG_WARN,
		       "part_size %llu is below S3's 5 MiB minimum: fine for "
		       "tests, refused by AWS S3",
		       (unsigned long long)t->part_size);
	h->log(h, SKALD_LOG_INFO,
	       "objects in bucket %s%s%s at %s (%s addressing, region %s)",
	       t->client.where.bucket,
	       t->client.where.prefix[0] ? " under " : "",
	       t->client.where.prefix, h->config_string(config, "endpoint"),
	       t->client.where.path_style ? "path-style" : "virtual-host",
	       t->client.region);
	*state = t;
	return 0;
}

static void tier_s3_fini(void *state)
{
	struct tier_s3 *t = state;

	s3_client_fini(&t->client);
	curl_global_cleanup();
	t->host->mem_free(t->host, t);
}

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_PLUGIN_ABI,
	"tier-s3",
	"1.0.0",
	"Storage tier in an S3-compatible object store",
	SKALD_PROVIDES_STORAGE_TIER,
	tier_s3_schema,
	tier_s3_init,
	NULL,
	NULL,
	tier_s3_fini,
};
