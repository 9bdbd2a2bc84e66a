/*
 * tier-s3's protocol helpers (plugins/tier-s3/s3_proto.c, libc only):
 * endpoints, URLs in both addressing styles with SigV4's canonical query
 * string, the XML of S3's answers, and status codes to errnos.
 */
#include <errno.h>
#include <string.h>

#include "tap.h"

#include "../../plugins/tier-s3/s3_proto.c"

static void test_endpoint(void)
{
	struct s3_where w = { 0 };
	char why[256];

	is(s3_parse_endpoint(&w, "http://127.0.0.1:9000", why, sizeof(why)), 0,
	   "http endpoint");
	ok(!w.https, "... plain http");
	is_str(w.host, "127.0.0.1:9000", "... host and port");
	is(s3_parse_endpoint(&w, "https://s3.eu-west-1.amazonaws.com/", why,
			     sizeof(why)),
	   0, "https endpoint with a trailing /");
	ok(w.https, "... https");
	is_str(w.host, "s3.eu-west-1.amazonaws.com", "... the host");
	is(s3_parse_endpoint(&w, "s3.amazonaws.com", why, sizeof(why)), -EINVAL,
	   "no scheme: refused");
	ok(strstr(why, "expected http://HOST[:PORT]") != NULL,
	   "... saying what is expected: %s", why);
	is(s3_parse_endpoint(&w, "http://host/bucket", why, sizeof(why)),
	   -EINVAL, "a path: refused");
	is(s3_parse_endpoint(&w, "http://user:pw@host", why, sizeof(why)),
	   -EINVAL, "credentials in the URL: refused");
	ok(strstr(why, "pw") == NULL, "... without echoing them");
	ok(s3_bucket_ok("my-archive.2024"), "a good bucket name");
	ok(!s3_bucket_ok("My_Bucket"), "upper case and _ refused");
	ok(!s3_bucket_ok("ab"), "too short refused");
	ok(!s3_bucket_ok("-abc"), "a leading - refused");
}

static void test_url(void)
{
	struct s3_where w = { .https = false, .path_style = true };
	const char *q_list[] = { "list-type",
				 "2",
				 "prefix",
				 "skald/orders/0/",
				 "max-keys",
				 "1000",
				 "continuation-token",
				 "a+b/c=",
				 NULL,
				 NULL };
	const char *q_create[] = { "uploads", NULL, NULL };
	const char *q_part[] = { "uploadId", "x~y", "partNumber",
				 "3",	     NULL,  NULL };
	char url[1024];

	strcpy(w.host, "127.0.0.1:9000");
	strcpy(w.bucket, "tier");
	strcpy(w.prefix, "skald/");
	is(s3_url(&w, "orders/0/00000000000000000012-1a.log", NULL, url,
		  sizeof(url)),
	   0, "path-style object URL");
	is_str(url,
	       "http://127.0.0.1:9000/tier/skald/orders/0/"
	       "00000000000000000012-1a.log",
	       "... bucket in the path, prefix before the key");
	w.path_style = false;
	w.https = true;
	strcpy(w.host, "s3.eu-west-1.amazonaws.com");
	is(s3_url(&w, "orders/0/x.index", NULL, url, sizeof(url)), 0,
	   "virtual-host object URL");
	is_str(url,
	       "https://tier.s3.eu-west-1.amazonaws.com/skald/orders/0/"
	       "x.index",
	       "... bucket in the host name");
	is(s3_url(&w, NULL, q_list, url, sizeof(url)), 0, "a listing URL");
	is_str(url,
	       "https://tier.s3.eu-west-1.amazonaws.com/"
	       "?continuation-token=a%2Bb%2Fc%3D&list-type=2&max-keys=1000"
	       "&prefix=skald%2Forders%2F0%2F",
	       "... query sorted by name and encoded as SigV4 signs it");
	is(s3_url(&w, "k", q_create, url, sizeof(url)), 0, "?uploads");
	is_str(url, "https://tier.s3.eu-west-1.amazonaws.com/skald/k?uploads=",
	       "... a bare name gets its =");
	is(s3_url(&w, "k", q_part, url, sizeof(url)), 0, "an UploadPart URL");
	is_str(url,
	       "https://tier.s3.eu-west-1.amazonaws.com/skald/k"
	       "?partNumber=3&uploadId=x~y",
	       "... partNumber before uploadId, ~ unencoded");
	w.prefix[0] = '\0';
	is(s3_url(&w, "a b/c+d", NULL, url, sizeof(url)), 0,
	   "reserved characters in a key");
	is_str(url, "https://tier.s3.eu-west-1.amazonaws.com/a%20b/c%2Bd",
	       "... percent-encoded, / kept");
	is(s3_url(&w, "k", q_create, url, 40), -ENAMETOOLONG,
	   "a URL that does not fit: -ENAMETOOLONG");
}

static void test_xml(void)
{
	static const char list[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/"
		"2006-03-01/\"><Name>tier</Name><KeyCount>2</KeyCount>"
		"<IsTruncated>true</IsTruncated>"
		"<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/"
		"wm36Hy4vbOwM=</NextContinuationToken>"
		"<Contents><Key>a/0/1.log</Key><Size>4096</Size></Contents>"
		"<Contents><Key>a/0/&lt;odd&amp;&#233;&#x41;&quot;.log</Key>"
		"<ETag>&quot;abc&quot;</ETag><Size>12</Size></Contents>"
		"</ListBucketResult>";
	static const char err[] =
		"<Error><Code>NoSuchKey</Code><Message>The resource you "
		"requested does not exist</Message></Error>";
	char out[128], small[4];
	size_t pos = 0, s, e, n = 0;

	is(s3_xml_text(list, strlen(list), "IsTruncated", out, sizeof(out)), 1,
	   "IsTruncated found");
	is_str(out, "true", "... its text");
	is(s3_xml_text(list, strlen(list), "Key", out, sizeof(out)), 1,
	   "<Key> is not confused with <KeyCount>");
	is_str(out, "a/0/1.log", "... the first key");
	while (s3_xml_next(list, strlen(list), &pos, "Contents", &s, &e)) {
		n++;
		if (n == 2) {
			is(s3_xml_text(list + s, e - s, "Key", out,
				       sizeof(out)),
			   1, "second entry's key");
			is_str(out,
			       "a/0/<odd&\xc3\xa9"
			       "A\".log",
			       "... entities decoded (named, decimal, hex)");
			is(s3_xml_text(list + s, e - s, "Size", out,
				       sizeof(out)),
			   1, "... and its size");
			is_str(out, "12", "... 12");
		}
	}
	is(n, 2, "two <Contents> entries");
	is(s3_xml_text(list, strlen(list), "Missing", out, sizeof(out)), 0,
	   "an absent element: 0");
	is(s3_xml_text(list, strlen(list), "Name", small, sizeof(small)),
	   -ENOBUFS, "text that does not fit: -ENOBUFS");
	is(s3_xml_text("<Code>a&bogus;</Code>", 21, "Code", out, sizeof(out)),
	   -EBADMSG, "an unknown entity: -EBADMSG");
	is(s3_xml_text("<Code>&#0;</Code>", 17, "Code", out, sizeof(out)),
	   -EBADMSG, "a NUL character reference: -EBADMSG");
	is(s3_xml_text("<Code>abc", 9, "Code", out, sizeof(out)), 0,
	   "an unclosed element: not found");
	is(s3_xml_text(err, strlen(err), "Code", out, sizeof(out)), 1,
	   "an error's code");
	is(s3_status_errno(404, out), -ENOENT, "NoSuchKey: -ENOENT");
	is(s3_status_errno(404, "NoSuchBucket"), -ENXIO,
	   "NoSuchBucket: -ENXIO (not 'the object is gone')");
	is(s3_status_errno(503, "SlowDown"), -EAGAIN, "503: -EAGAIN");
	is(s3_status_errno(500, ""), -EAGAIN, "500: -EAGAIN");
	is(s3_status_errno(403, "AccessDenied"), -EACCES, "403: -EACCES");
	is(s3_status_errno(400, "RequestTimeout"), -EAGAIN,
	   "400 RequestTimeout: -EAGAIN");
	is(s3_status_errno(400, "InvalidArgument"), -EPROTO,
	   "400 otherwise: -EPROTO");
}

int main(void)
{
	test_endpoint();
	test_url();
	test_xml();
	plan(tap_n);
	return check_status();
}
