/*
 * tier-s3: S3 requests with libcurl (see s3_http.h).
 */
#define _GNU_SOURCE

#include "s3_http.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Error answers and listings are small; a bigger body is a bad server. */
#define S3_BODY_MAX (8u << 20)

int s3_client_init(struct s3_client *c, const struct skald_host *host,
		   size_t max_conns)
{
	c->host = host;
	c->max_conns = max_conns;
	c->idle = host->mem_alloc(host, max_conns * sizeof(*c->idle));
	if (!c->idle)
		return -ENOMEM;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	return 0;
}

void s3_client_fini(struct s3_client *c)
{
	for (size_t i = 0; i < c->n_idle; i++)
		curl_easy_cleanup(c->idle[i]);
	c->host->mem_free(c->host, c->idle);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
}

void *s3_conn_get(struct s3_client *c)
{
	void *h = NULL;
	bool make = false;

	pthread_mutex_lock(&c->mu);
	while (!c->n_idle && c->n_made >= c->max_conns)
		pthread_cond_wait(&c->cv, &c->mu);
	if (c->n_idle) {
		h = c->idle[--c->n_idle];
	} else {
		c->n_made++;
		make = true;
	}
	pthread_mutex_unlock(&c->mu);
	if (make && !(h = curl_easy_init())) {
		pthread_mutex_lock(&c->mu);
		c->n_made--;
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
	}
	return h;
}

void s3_conn_put(struct s3_client *c, void *conn)
{
	pthread_mutex_lock(&c->mu);
	c->idle[c->n_idle++] = conn;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void s3_resp_free(struct s3_client *c, struct s3_resp *resp)
{
	c->host->mem_free(c->host, resp->body);
	resp->body = NULL;
	resp->len = 0;
}

/* One transfer in progress. */
struct xfer {
	struct s3_client *c;
	CURL *h;
	const struct s3_body *body;
	uint64_t sent;
	struct s3_resp *resp;
	size_t cap;
	uint64_t seen; /* bytes of a 2xx body seen (for a 200 to a range) */
	int err;       /* why a callback stopped the transfer */
};

static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	const struct s3_body *b = x->body;
	size_t want = size * n;
	ssize_t got;

	if (want > b->len - x->sent)
		want = (size_t)(b->len - x->sent);
	if (!want)
		return 0;
	if (b->fd < 0) {
		memcpy(buf, b->mem + x->sent, want);
		x->sent += want;
		return want;
	}
	got = pread(b->fd, buf, want, (off_t)(b->offset + x->sent));
	if (got <= 0) {
		/* The file is shorter than the broker said: never send less. */
		x->err = got < 0 ? -errno : -EIO;
		return CURL_READFUNC_ABORT;
	}
	x->sent += (uint64_t)got;
	return (size_t)got;
}

static bool keep_body(struct xfer *x, const char *p, size_t n)
{
	const struct skald_host *host = x->c->host;
	struct s3_resp *r = x->resp;

	if (r->len + n + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;
		char *nb;

		while (cap < r->len + n + 1)
			cap *= 2;
		if (cap > S3_BODY_MAX) {
			x->err = -EFBIG;
			return false;
		}
		nb = host->mem_realloc(host, r->body, cap);
		if (!nb) {
			x->err = -ENOMEM;
			return false;
		}
		r->body = nb;
		x->cap = cap;
	}
	memcpy(r->body + r->len, p, n);
	r->len += n;
	r->body[r->len] = '\0';
	return true;
}

static size_t on_write(char *p, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	struct s3_resp *r = x->resp;
	size_t len = size * n, skip = 0;
	long status = 0;

	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
	if (r->out_fd < 0 || status / 100 != 2)
		return keep_body(x, p, len) ? len : 0;
	/* A server that ignored Range sent the whole object: cut it. */
	if (r->ranged && status == 200) {
		uint64_t lo = r->range_off, hi = r->range_off + r->range_len;
		uint64_t a = x->seen, b = x->seen + len;

		x->seen = b;
		if (b <= lo || (r->range_len && a >= hi))
			return len;
		skip = a < lo ? (size_t)(lo - a) : 0;
		if (r->range_len && b > hi)
			len -= (size_t)(b - hi);
	}
	for (size_t done = skip; done < len;) {
		ssize_t w = pwrite(r->out_fd, p + done, len - done,
				   (off_t)r->written);

		if (w <= 0) {
			x->err = w < 0 ? -errno : -EIO;
			return 0;
		}
		done += (size_t)w;
		r->written += (uint64_t)w;
	}
	return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;

	if (len > 5 && strncasecmp(p, "ETag:", 5) == 0) {
		const char *v = p + 5;
		size_t vl = len - 5;

		while (vl && (*v == ' ' || *v == '\t'))
			v++, vl--;
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' ||
			      v[vl - 1] == ' '))
			vl--;
		if (vl < sizeof(x->resp->etag)) {
			memcpy(x->resp->etag, v, vl);
			x->resp->etag[vl] = '\0';
		}
	}
	return len;
}

static int curl_errno(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	case CURLE_PEER_FAILED_VERIFICATION:
		return -EACCES;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/* A reused connection the server closed meanwhile: worth one retry. */
static bool stale(CURLcode cc)
{
	return cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR ||
	       cc == CURLE_GOT_NOTHING;
}

static const char *retry_word(int rc)
{
	switch (-rc) {
	case EAGAIN:
	case ETIMEDOUT:
	case ECONNREFUSED:
	case ECONNRESET:
	case EHOSTUNREACH:
	case EIO:
		return "retriable";
	default:
		return "not retriable";
	}
}

static int setup(struct s3_client *c, CURL *h, const char *method,
		 const char *url, const struct s3_body *body,
		 struct curl_slist **hdrs, struct xfer *x)
{
	char sigv4[128], line[160];
	struct curl_slist *l = NULL;

	curl_easy_reset(h);
	snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", c->region);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4);
	curl_easy_setopt(h, CURLOPT_USERNAME, c->access_key);
	curl_easy_setopt(h, CURLOPT_PASSWORD, c->secret_key);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->tls_verify ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->tls_verify ? 2L : 0L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "skald-tier-s3/1.0");
	/*
	 * libcurl 7.88 neither sends nor hashes the payload for S3: say it
	 * is unsigned (signed along with the x-amz-* headers). Never add a
	 * header with an empty value: 7.88 signs it though it is not sent.
	 */
	l = curl_slist_append(l, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	if (body && body->content_type) {
		snprintf(line, sizeof(line), "Content-Type: %s",
			 body->content_type);
		l = curl_slist_append(l, line);
	}
	if (body && body->checksum) {
		snprintf(line, sizeof(line), "x-amz-checksum-crc32c: %s",
			 body->checksum);
		l = curl_slist_append(l, line);
	}
	if (x->resp->ranged) {
		const struct s3_resp *r = x->resp;

		if (r->range_len)
			snprintf(line, sizeof(line), "Range: bytes=%llu-%llu",
				 (unsigned long long)r->range_off,
				 (unsigned long long)(r->range_off +
						      r->range_len - 1));
		else
			snprintf(line, sizeof(line), "Range: bytes=%llu-",
				 (unsigned long long)r->range_off);
		l = curl_slist_append(l, line);
	}
	if (!l)
		return -ENOMEM;
	*hdrs = l;
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
	if (strcmp(method, "PUT") == 0) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
				 (curl_off_t)(body ? body->len : 0));
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, x);
	} else if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(body ? body->len : 0));
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, x);
	} else if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	}
	return 0;
}

int s3_request(struct s3_client *c, void *conn, const char *method,
	       const char *key, const char *const *query,
	       const struct s3_body *body, struct s3_resp *resp, char *msg,
	       size_t cap)
{
	static const struct s3_body none = { -1, 0, 0, NULL, NULL, NULL };
	const struct s3_where *w = &c->where;
	char url[4096], code[64] = "", text[160] = "";
	struct curl_slist *hdrs = NULL;
	CURLcode cc = CURLE_OK;
	struct xfer x;
	int rc;

	if (!body)
		body = &none;
	rc = s3_url(w, key, query, url, sizeof(url));
	if (rc) {
		snprintf(msg, cap, "%s %s%s: the URL is too long", method,
			 w->prefix, key ? key : "");
		return rc;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		memset(&x, 0, sizeof(x));
		x.c = c;
		x.h = conn;
		x.body = body;
		x.resp = resp;
		s3_resp_free(c, resp);
		resp->status = 0;
		resp->written = 0;
		resp->etag[0] = '\0';
		curl_slist_free_all(hdrs);
		hdrs = NULL;
		rc = setup(c, conn, method, url, body, &hdrs, &x);
		if (rc) {
			snprintf(msg, cap, "%s %s: out of memory", method, url);
			return rc;
		}
		cc = curl_easy_perform(conn);
		if (cc == CURLE_OK || !stale(cc) || x.err)
			break;
	}
	curl_slist_free_all(hdrs);
	curl_easy_getinfo((CURL *)conn, CURLINFO_RESPONSE_CODE, &resp->status);
	if (cc != CURLE_OK) {
		rc = x.err ? x.err : curl_errno(cc);
		snprintf(msg, cap, "%s %s/%s%s: %s (%s)", method, w->bucket,
			 key ? w->prefix : "", key ? key : "",
			 x.err ? strerror(-x.err) : curl_easy_strerror(cc),
			 retry_word(rc));
		return rc;
	}
	if (resp->status / 100 == 2)
		return 0;
	if (resp->body) {
		s3_xml_text(resp->body, resp->len, "Code", code, sizeof(code));
		s3_xml_text(resp->body, resp->len, "Message", text,
			    sizeof(text));
	}
	rc = s3_status_errno(resp->status, code);
	snprintf(msg, cap, "%s %s/%s%s: HTTP %ld%s%s%s%s (%s)", method,
		 w->bucket, key ? w->prefix : "", key ? key : "", resp->status,
		 code[0] ? " " : "", code, text[0] ? ": " : "", text,
		 retry_word(rc));
	return rc;
}
