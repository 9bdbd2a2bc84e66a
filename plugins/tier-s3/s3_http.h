/*
 * tier-s3: one S3 request over HTTP with libcurl, blocking (the tier is
 * SKALD_TIER_BLOCKING: requests run on the broker's pool threads).
 * libcurl signs every request with AWS SigV4 (CURLOPT_AWS_SIGV4); this
 * file adds what libcurl 7.88 leaves to the caller: the
 * x-amz-content-sha256 header (UNSIGNED-PAYLOAD: the broker checks every
 * segment's CRC-32C when it reads it back, and single PUTs carry S3's
 * own x-amz-checksum-crc32c) and a canonical query string (s3_url).
 *
 * Connections are reused: a client keeps up to max_conns curl handles,
 * which also caps the requests in flight (a caller waits for a free one).
 */
#ifndef TIER_S3_HTTP_H
#define TIER_S3_HTTP_H

#include <pthread.h>
#include <stdint.h>

#include <skald/host.h>

#include "s3_proto.h"

struct s3_client {
	const struct skald_host *host;
	struct s3_where where;
	char region[64];
	char access_key[256];
	char secret_key[256];
	long connect_timeout_ms, timeout_ms;
	bool tls_verify;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	void **idle; /* CURL * handles not in use */
	size_t n_idle, n_made, max_conns;
};

/* What a request sends: nothing, a byte range of a file, or memory. */
struct s3_body {
	int fd;		 /* -1: none or mem */
	uint64_t offset; /* of the file */
	uint64_t len;
	const char *mem;	  /* when fd < 0 and len > 0 */
	const char *content_type; /* NULL: none */
	const char *checksum;	  /* x-amz-checksum-crc32c value, or NULL */
};

/* What a request receives. */
struct s3_resp {
	/* in */
	int out_fd; /* >= 0: a 2xx body goes here with pwrite from 0 */
	uint64_t range_off, range_len; /* out_fd: the bytes asked for */
	bool ranged;
	/* out */
	long status;
	char *body; /* other bodies (XML), NUL-terminated; mem_free it */
	size_t len;
	uint64_t written; /* bytes written to out_fd */
	char etag[128];
};

int s3_client_init(struct s3_client *c, const struct skald_host *host,
		   size_t max_conns);
void s3_client_fini(struct s3_client *c);

/*
 * Take a connection (waits while max_conns are busy) and give it back.
 * One connection serves the requests of one operation in turn.
 */
void *s3_conn_get(struct s3_client *c);
void s3_conn_put(struct s3_client *c, void *conn);

/*
 * METHOD the object key (NULL: the bucket) with query (see s3_url).
 * 0 for a 2xx answer; else a negative errno (s3_status_errno, or the
 * transport's: -ECONNREFUSED, -ETIMEDOUT, ...) and msg says what
 * happened, with the HTTP status, S3's error code and message, and
 * whether it is worth retrying. resp->body is set either way (free it
 * with s3_resp_free).
 */
int s3_request(struct s3_client *c, void *conn, const char *method,
	       const char *key, const char *const *query,
	       const struct s3_body *body, struct s3_resp *resp, char *msg,
	       size_t cap);

void s3_resp_free(struct s3_client *c, struct s3_resp *resp);

#endif
