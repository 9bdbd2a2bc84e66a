/*
 * tier-s3: the parts of the S3 protocol that need no network, kept apart
 * (libc only) so that tests/unit/test_tier_s3.c can check them: request
 * URLs (path-style and virtual-host addressing, in the canonical form
 * SigV4 signs, since libcurl signs the query string as given), the few
 * XML answers S3 sends, and how a failure maps to an errno.
 */
#ifndef TIER_S3_PROTO_H
#define TIER_S3_PROTO_H

#include <stdbool.h>
#include <stddef.h>

/* Where the bucket is: parsed from the endpoint URL and the config. */
struct s3_where {
	bool https;
	bool path_style;
	char host[256]; /* host[:port] of the endpoint */
	char bucket[64];
	char prefix[512]; /* prepended to every key as is */
};

/*
 * Parse endpoint ("http[s]://host[:port]", an optional trailing "/")
 * into w->https and w->host. 0, or -EINVAL with why filled in.
 */
int s3_parse_endpoint(struct s3_where *w, const char *endpoint, char *why,
		      size_t cap);

/* True for a bucket name S3 accepts (3-63 of [a-z0-9.-], ends alnum). */
bool s3_bucket_ok(const char *bucket);

/*
 * The URL of object key (prefix prepended; NULL or "" for the bucket
 * itself) with query, a list of name/value pairs (NULL-terminated, value
 * NULL for a bare "name="), encoded and sorted as SigV4's canonical
 * query string wants. 0, or -ENAMETOOLONG.
 */
int s3_url(const struct s3_where *w, const char *key, const char *const *query,
	   char *out, size_t cap);

/*
 * Percent-encode src into out as SigV4 wants (unreserved characters
 * kept; '/' kept when keep_slash). 0, or -ENAMETOOLONG.
 */
int s3_uri_encode(const char *src, bool keep_slash, char *out, size_t cap);

/*
 * XML, just enough for S3's answers: the text of the first element
 * <tag>...</tag> in doc[0..len), entities decoded, into out. 1 found, 0
 * not found, -ENOBUFS if it does not fit, -EBADMSG if malformed.
 */
int s3_xml_text(const char *doc, size_t len, const char *tag, char *out,
		size_t cap);

/*
 * The next element <tag>...</tag> at or after *pos: its content is
 * doc[*start, *end) and *pos moves past it. 1 found, 0 no more.
 */
int s3_xml_next(const char *doc, size_t len, size_t *pos, const char *tag,
		size_t *start, size_t *end);

/*
 * A negative errno for an HTTP status (with S3's error code, may be ""):
 * storage.h's "try later" errnos for what is worth retrying.
 */
int s3_status_errno(long status, const char *code);

#endif
