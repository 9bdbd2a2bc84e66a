/*
 * tier-s3: URLs, XML and status codes (see s3_proto.h). No allocation,
 * no I/O: everything writes into the caller's bounded buffers.
 */
#include "s3_proto.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int s3_parse_endpoint(struct s3_where *w, const char *endpoint, char *why,
		      size_t cap)
{
	const char *host;
	size_t n;

	if (strncmp(endpoint, "https://", 8) == 0) {
		w->https = true;
		host = endpoint + 8;
	} else if (strncmp(endpoint, "http://", 7) == 0) {
		w->https = false;
		host = endpoint + 7;
	} else {
		snprintf(why, cap,
			 "endpoint %s: expected http://HOST[:PORT] or "
			 "https://HOST[:PORT]",
			 endpoint);
		return -EINVAL;
	}
	n = strcspn(host, "/?#");
	if (n == 0 || n >= sizeof(w->host) ||
	    (host[n] && strcmp(host + n, "/"))) {
		snprintf(why, cap,
			 "endpoint %s: expected a host and port only, without "
			 "a path (the bucket is its own key)",
			 endpoint);
		return -EINVAL;
	}
	if (memchr(host, '@', n)) {
		snprintf(why, cap,
			 "endpoint: credentials go in access_key and "
			 "secret_key, not in the URL");
		return -EINVAL;
	}
	memcpy(w->host, host, n);
	w->host[n] = '\0';
	return 0;
}

bool s3_bucket_ok(const char *b)
{
	size_t n = strlen(b);

	if (n < 3 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = b[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-'))
			return false;
	}
	return b[0] != '.' && b[0] != '-' && b[n - 1] != '.' && b[n - 1] != '-';
}

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == '~';
}

int s3_uri_encode(const char *src, bool keep_slash, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
		if (unreserved(*p) || (keep_slash && *p == '/')) {
			if (o + 1 >= cap)
				return -ENAMETOOLONG;
			out[o++] = (char)*p;
		} else {
			if (o + 3 >= cap)
				return -ENAMETOOLONG;
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	if (o >= cap)
		return -ENAMETOOLONG;
	out[o] = '\0';
	return 0;
}

/* Append s to out[*o..cap); false when it does not fit. */
static bool put(char *out, size_t cap, size_t *o, const char *s)
{
	size_t n = strlen(s);

	if (*o + n >= cap)
		return false;
	memcpy(out + *o, s, n + 1);
	*o += n;
	return true;
}

static bool put_enc(char *out, size_t cap, size_t *o, const char *s,
		    bool keep_slash)
{
	if (*o >= cap || s3_uri_encode(s, keep_slash, out + *o, cap - *o))
		return false;
	*o += strlen(out + *o);
	return true;
}

int s3_url(const struct s3_where *w, const char *key, const char *const *query,
	   char *out, size_t cap)
{
	const char *order[16];
	size_t o = 0, nq = 0;

	if (!put(out, cap, &o, w->https ? "https://" : "http://"))
		return -ENAMETOOLONG;
	if (!w->path_style &&
	    (!put(out, cap, &o, w->bucket) || !put(out, cap, &o, ".")))
		return -ENAMETOOLONG;
	if (!put(out, cap, &o, w->host) || !put(out, cap, &o, "/"))
		return -ENAMETOOLONG;
	if (w->path_style &&
	    (!put(out, cap, &o, w->bucket) || !put(out, cap, &o, "/")))
		return -ENAMETOOLONG;
	if (key && *key &&
	    (!put_enc(out, cap, &o, w->prefix, true) ||
	     !put_enc(out, cap, &o, key, true)))
		return -ENAMETOOLONG;
	/* SigV4 signs the query sorted by name; libcurl 7.88 signs it as
	 * given, so it is built sorted (insertion sort: a handful). */
	for (size_t i = 0; query && query[2 * i]; i++) {
		size_t j = nq++;

		if (nq > 8)
			return -E2BIG;
		while (j > 0 && strcmp(order[2 * (j - 1)], query[2 * i]) > 0) {
			order[2 * j] = order[2 * (j - 1)];
			order[2 * j + 1] = order[2 * (j - 1) + 1];
			j--;
		}
		order[2 * j] = query[2 * i];
		order[2 * j + 1] = query[2 * i + 1];
	}
	for (size_t i = 0; i < nq; i++) {
		if (!put(out, cap, &o, i ? "&" : "?") ||
		    !put_enc(out, cap, &o, order[2 * i], false) ||
		    !put(out, cap, &o, "=") ||
		    (order[2 * i + 1] &&
		     !put_enc(out, cap, &o, order[2 * i + 1], false)))
			return -ENAMETOOLONG;
	}
	return 0;
}

/* Find "<tag>" (exactly: not "<tagX>") in doc[from, len). */
static const char *find_open(const char *doc, size_t len, size_t from,
			     const char *tag)
{
	size_t tl = strlen(tag);

	for (size_t i = from; i + tl + 2 <= len; i++) {
		if (doc[i] == '<' && memcmp(doc + i + 1, tag, tl) == 0 &&
		    doc[i + 1 + tl] == '>')
			return doc + i;
	}
	return NULL;
}

static const char *find_close(const char *doc, size_t len, size_t from,
			      const char *tag)
{
	size_t tl = strlen(tag);

	for (size_t i = from; i + tl + 3 <= len; i++) {
		if (doc[i] == '<' && doc[i + 1] == '/' &&
		    memcmp(doc + i + 2, tag, tl) == 0 && doc[i + 2 + tl] == '>')
			return doc + i;
	}
	return NULL;
}

int s3_xml_next(const char *doc, size_t len, size_t *pos, const char *tag,
		size_t *start, size_t *end)
{
	const char *o = find_open(doc, len, *pos, tag), *c;

	if (!o)
		return 0;
	*start = (size_t)(o - doc) + strlen(tag) + 2;
	c = find_close(doc, len, *start, tag);
	if (!c)
		return 0;
	*end = (size_t)(c - doc);
	*pos = *end + strlen(tag) + 3;
	return 1;
}

/* Append code point cp as UTF-8; false if it does not fit or is bad. */
static bool put_utf8(char *out, size_t cap, size_t *o, unsigned long cp)
{
	unsigned char b[4];
	size_t n;

	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return false;
	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | (cp >> 6));
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | (cp >> 12));
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | (cp >> 18));
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	if (*o + n >= cap)
		return false;
	memcpy(out + *o, b, n);
	*o += n;
	return true;
}

int s3_xml_text(const char *doc, size_t len, const char *tag, char *out,
		size_t cap)
{
	static const struct {
		const char *name;
		char c;
	} ents[] = { { "amp;", '&' },
		     { "lt;", '<' },
		     { "gt;", '>' },
		     { "quot;", '"' },
		     { "apos;", '\'' } };
	size_t pos = 0, s, e, o = 0;

	if (cap == 0)
		return -ENOBUFS;
	if (!s3_xml_next(doc, len, &pos, tag, &s, &e))
		return 0;
	for (size_t i = s; i < e;) {
		if (doc[i] == '<')
			return -EBADMSG; /* a nested element: not text */
		if (doc[i] != '&') {
			if (o + 1 >= cap)
				return -ENOBUFS;
			out[o++] = doc[i++];
			continue;
		}
		i++;
		if (i < e && doc[i] == '#') {
			bool hexa = i + 1 < e && doc[i + 1] == 'x';
			char num[12];
			size_t n = 0;
			char *endp;
			unsigned long cp;

			i += hexa ? 2 : 1;
			while (i < e && doc[i] != ';' && n < sizeof(num) - 1)
				num[n++] = doc[i++];
			num[n] = '\0';
			if (i >= e || doc[i] != ';' || n == 0)
				return -EBADMSG;
			i++;
			cp = strtoul(num, &endp, hexa ? 16 : 10);
			if (*endp)
				return -EBADMSG;
			if (!put_utf8(out, cap, &o, cp))
				return o + 4 >= cap ? -ENOBUFS : -EBADMSG;
			continue;
		}
		size_t k = 0;

		for (; k < sizeof(ents) / sizeof(ents[0]); k++) {
			size_t n = strlen(ents[k].name);

			if (e - i >= n &&
			    memcmp(doc + i, ents[k].name, n) == 0) {
				i += n;
				break;
			}
		}
		if (k == sizeof(ents) / sizeof(ents[0]))
			return -EBADMSG;
		if (o + 1 >= cap)
			return -ENOBUFS;
		out[o++] = ents[k].c;
	}
	out[o] = '\0';
	return 1;
}

int s3_status_errno(long status, const char *code)
{
	if (status == 404)
		/* A missing bucket is a configuration error, not "gone". */
		return strcmp(code, "NoSuchBucket") == 0 ? -ENXIO : -ENOENT;
	if (status == 408 || status == 429 || status == 500 || status == 502 ||
	    status == 503 || status == 504)
		return -EAGAIN;
	if (status >= 500)
		return -EIO;
	if (status == 401 || status == 403)
		return -EACCES;
	if (status == 400 && strcmp(code, "RequestTimeout") == 0)
		return -EAGAIN;
	if (status == 416)
		return -ERANGE;
	return -EPROTO;
}
