/*
 * Hostile and valid requests against an in-process broker, through the
 * fuzz harness (tests/fuzz/harness.c): every seed of tests/fuzz/corpus
 * (each must be answered, not rejected), every crash reproducer of
 * tests/fuzz/regress, and handcrafted nasty frames (bad sizes, truncated
 * headers, unknown keys and versions, lengths and counts past the frame).
 * The broker must survive each one in this process, free the connection
 * when the peer closes it, and still answer a valid request afterwards.
 * Run from the repository root (make test does).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../fuzz/harness.h"
#include "proto.h"
#include "tap.h"

#define CORPUS_DIR  "tests/fuzz/corpus"
#define REGRESS_DIR "tests/fuzz/regress"

/* Sorted names of the regular, non-hidden files of dir (may be none). */
static char **list_dir(const char *dir, size_t *n)
{
	struct dirent **ents;
	char **names;
	int count = scandir(dir, &ents, NULL, alphasort);
	size_t k = 0;

	*n = 0;
	if (count < 0)
		return NULL;
	names = calloc((size_t)count + 1, sizeof(*names));
	for (int i = 0; i < count; i++) {
		if (ents[i]->d_name[0] != '.')
			names[k++] = strdup(ents[i]->d_name);
		free(ents[i]);
	}
	free(ents);
	*n = k;
	return names;
}

static void free_list(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p = NULL;
	size_t cap = 0, got;

	*len = 0;
	if (!f)
		return NULL;
	do {
		cap = cap ? cap * 2 : 4096;
		p = realloc(p, cap);
		got = fread(p + *len, 1, cap - *len, f);
		*len += got;
	} while (*len == cap);
	fclose(f);
	return p;
}

/* Start a request frame: size placeholder and header v1. */
static struct sk_wr frame_start(struct sk_buf *b, int16_t key, int16_t ver)
{
	struct sk_wr w = { b };

	b->len = 0;
	sk_wr_i32(&w, 0);
	sk_wr_i16(&w, key);
	sk_wr_i16(&w, ver);
	sk_wr_i32(&w, 42);
	sk_wr_str(&w, "nasty", false);
	return w;
}

/* Patch the size prefix to cover what was written. */
static void frame_end(struct sk_buf *b)
{
	sk_put_be32(b->data, (uint32_t)(b->len - 4));
}

/* Feed raw bytes; the broker must free the connection afterwards. */
static void feed(const void *p, size_t len, bool want_close, const char *what)
{
	const struct sk_fuzz_result *res;
	int rc = sk_fuzz_feed(p, len);

	res = sk_fuzz_last();
	ok(rc == 0 && res->released && (!want_close || res->closed_by_broker),
	   "%s: %s, connection released", what,
	   want_close ? "rejected" : "survived");
	if (want_close && !res->closed_by_broker)
		diag("  the broker did not close the connection "
		     "(%zu reply bytes)",
		     res->replied);
}

static void feed_buf(struct sk_buf *b, bool want_close, const char *what)
{
	feed(b->data, b->len, want_close, what);
}

/* A valid ApiVersions v0 still gets an answer. */
static void check_alive(const char *after)
{
	static const uint8_t req[] = {
		0, 0, 0, 14, 0, 18, 0, 0, 0, 0, 0, 7, 0, 4, 'p', 'i', 'n', 'g',
	};
	const struct sk_fuzz_result *res;
	int rc = sk_fuzz_feed(req, sizeof(req));

	res = sk_fuzz_last();
	ok(rc == 0 && res->replied > 0 && !res->closed_by_broker &&
		   res->released,
	   "broker answers ApiVersions after %s", after);
}

static void nasty(void)
{
	struct sk_buf b = { 0 };
	struct sk_wr w;

	/* Size prefixes the broker must refuse before allocating. */
	feed("\xff\xff\xff\xff\0\x12\0\0\0\0\0\0", 12, true, "size -1");
	feed("\0\0\0\0\0\x12\0\0", 8, true, "size 0");
	feed("\x7f\xff\xff\xff\0\x12\0\0\0\0\0\0", 12, true, "size 0x7fffffff");
	feed("\x80\0\0\0", 4, true, "size INT32_MIN");
	/* A size the broker accepts, followed by far fewer bytes. */
	feed("\0\x10\0\0\0\x12\0", 7, false, "size 1 MiB, 3 bytes sent");

	/* Headers. */
	feed("\0\0\0\x03\0\x12\0", 7, true, "truncated header (3 bytes)");
	feed("\0\0\0\x0a\0\x12\0\0\0\0\0\x01\0\x05", 14, true,
	     "client_id longer than the frame");
	w = frame_start(&b, 999, 0);
	frame_end(&b);
	feed_buf(&b, true, "unknown api key 999");
	w = frame_start(&b, -1, 0);
	frame_end(&b);
	feed_buf(&b, true, "api key -1");
	w = frame_start(&b, 0, 99);
	frame_end(&b);
	feed_buf(&b, true, "Produce v99");
	w = frame_start(&b, 1, -1);
	frame_end(&b);
	feed_buf(&b, true, "Fetch v-1");
	w = frame_start(&b, 18, 3); /* flexible: tags missing */
	frame_end(&b);
	feed_buf(&b, true, "ApiVersions v3 without tagged fields");

	/* Produce whose records length exceeds the frame. */
	w = frame_start(&b, 0, 7);
	sk_wr_str(&w, NULL, false);
	sk_wr_i16(&w, -1);
	sk_wr_i32(&w, 1000);
	sk_wr_array(&w, 1, false);
	sk_wr_str(&w, "t", false);
	sk_wr_array(&w, 1, false);
	sk_wr_i32(&w, 0);
	sk_wr_i32(&w, 1 << 20); /* records: 1 MiB claimed */
	sk_wr_raw(&w, "\0\0\0\0\0\0\0\0", 8);
	frame_end(&b);
	feed_buf(&b, true, "Produce records length past the frame");

	/* Produce with a batch whose own batchLength lies. */
	w = frame_start(&b, 0, 7);
	sk_wr_str(&w, NULL, false);
	sk_wr_i16(&w, 1);
	sk_wr_i32(&w, 1000);
	sk_wr_array(&w, 1, false);
	sk_wr_str(&w, "t", false);
	sk_wr_array(&w, 1, false);
	sk_wr_i32(&w, 0);
	sk_wr_i32(&w, 61);
	sk_wr_i64(&w, 0);
	sk_wr_i32(&w, 0x7fffffff); /* batchLength */
	sk_wr_i32(&w, -1);
	sk_wr_i8(&w, 2);
	for (int i = 0; i < 61 - 17; i++)
		sk_wr_i8(&w, 0);
	frame_end(&b);
	feed_buf(&b, false, "Produce batchLength 0x7fffffff");

	/* Counts of 2^31-1 at each nesting level. */
	w = frame_start(&b, 0, 7);
	sk_wr_str(&w, NULL, false);
	sk_wr_i16(&w, 1);
	sk_wr_i32(&w, 1000);
	sk_wr_array(&w, INT32_MAX, false);
	frame_end(&b);
	feed_buf(&b, true, "Produce topics count 2^31-1");

	w = frame_start(&b, 0, 7);
	sk_wr_str(&w, NULL, false);
	sk_wr_i16(&w, 1);
	sk_wr_i32(&w, 1000);
	sk_wr_array(&w, 1, false);
	sk_wr_str(&w, "t", false);
	sk_wr_array(&w, INT32_MAX, false);
	frame_end(&b);
	feed_buf(&b, true, "Produce partitions count 2^31-1");

	w = frame_start(&b, 1, 11);
	sk_wr_i32(&w, -1);
	sk_wr_i32(&w, 0);
	sk_wr_i32(&w, 1);
	sk_wr_i32(&w, 1 << 20);
	sk_wr_i8(&w, 0);
	sk_wr_i32(&w, 0);
	sk_wr_i32(&w, -1);
	sk_wr_array(&w, 1, false);
	sk_wr_str(&w, "t", false);
	sk_wr_array(&w, INT32_MAX, false);
	frame_end(&b);
	feed_buf(&b, true, "Fetch partitions count 2^31-1");

	w = frame_start(&b, 1, 11);
	sk_wr_i32(&w, -1);
	sk_wr_i32(&w, 0);
	sk_wr_i32(&w, 1);
	sk_wr_i32(&w, 1 << 20);
	sk_wr_i8(&w, 0);
	sk_wr_i32(&w, 0);
	sk_wr_i32(&w, -1);
	sk_wr_array(&w, 0, false);
	sk_wr_array(&w, 1, false); /* forgotten topics */
	sk_wr_str(&w, "t", false);
	sk_wr_array(&w, INT32_MAX, false);
	frame_end(&b);
	feed_buf(&b, true, "Fetch forgotten partitions count 2^31-1");

	w = frame_start(&b, 3, 6);
	sk_wr_array(&w, INT32_MAX, false);
	sk_wr_i8(&w, 1);
	frame_end(&b);
	feed_buf(&b, true, "Metadata topics count 2^31-1");

	w = frame_start(&b, 2, 3);
	sk_wr_i32(&w, -1);
	sk_wr_i8(&w, 0);
	sk_wr_array(&w, 1, false);
	sk_wr_str(&w, "t", false);
	sk_wr_array(&w, INT32_MAX, false);
	frame_end(&b);
	feed_buf(&b, true, "ListOffsets partitions count 2^31-1");

	w = frame_start(&b, 19, 4);
	sk_wr_array(&w, 1, false);
	sk_wr_str(&w, "nasty-ct", false);
	sk_wr_i32(&w, -1);
	sk_wr_i16(&w, 1);
	sk_wr_array(&w, 1, false); /* one assignment ... */
	sk_wr_i32(&w, 0);
	sk_wr_array(&w, INT32_MAX, false); /* ... with 2^31-1 brokers */
	frame_end(&b);
	feed_buf(&b, true, "CreateTopics broker ids count 2^31-1");

	w = frame_start(&b, 19, 4);
	sk_wr_array(&w, 1, false);
	sk_wr_str(&w, "nasty-ct", false);
	sk_wr_i32(&w, 1);
	sk_wr_i16(&w, 1);
	sk_wr_array(&w, 0, false);
	sk_wr_array(&w, INT32_MAX, false); /* configs */
	frame_end(&b);
	feed_buf(&b, true, "CreateTopics configs count 2^31-1");

	w = frame_start(&b, 20, 3);
	sk_wr_array(&w, INT32_MAX, false);
	frame_end(&b);
	feed_buf(&b, true, "DeleteTopics names count 2^31-1");

	w = frame_start(&b, 37, 1);
	sk_wr_array(&w, 1, false);
	sk_wr_str(&w, "t", false);
	sk_wr_i32(&w, 3);
	sk_wr_array(&w, INT32_MAX, false);
	frame_end(&b);
	feed_buf(&b, true, "CreatePartitions assignments count 2^31-1");

	w = frame_start(&b, 32, 2);
	sk_wr_array(&w, 1, false);
	sk_wr_i8(&w, 2);
	sk_wr_str(&w, "t", false);
	sk_wr_array(&w, INT32_MAX, false);
	frame_end(&b);
	feed_buf(&b, true, "DescribeConfigs keys count 2^31-1");

	w = frame_start(&b, 33, 1);
	sk_wr_array(&w, 1, false);
	sk_wr_i8(&w, 2);
	sk_wr_str(&w, "t", false);
	sk_wr_array(&w, INT32_MAX, false);
	frame_end(&b);
	feed_buf(&b, true, "AlterConfigs configs count 2^31-1");

	w = frame_start(&b, 11, 5); /* JoinGroup */
	sk_wr_str(&w, "nasty-g", false);
	sk_wr_i32(&w, 10000);
	sk_wr_i32(&w, 30000);
	sk_wr_str(&w, "", false);
	sk_wr_str(&w, NULL, false);
	sk_wr_str(&w, "consumer", false);
	sk_wr_array(&w, INT32_MAX, false);
	frame_end(&b);
	feed_buf(&b, true, "JoinGroup protocols count 2^31-1");

	w = frame_start(&b, 14, 3); /* SyncGroup */
	sk_wr_str(&w, "nasty-g", false);
	sk_wr_i32(&w, 1);
	sk_wr_str(&w, "m", false);
	sk_wr_str(&w, NULL, false);
	sk_wr_array(&w, INT32_MAX, false);
	frame_end(&b);
	feed_buf(&b, true, "SyncGroup assignments count 2^31-1");

	w = frame_start(&b, 8, 7); /* OffsetCommit */
	sk_wr_str(&w, "nasty-g", false);
	sk_wr_i32(&w, -1);
	sk_wr_str(&w, "", false);
	sk_wr_str(&w, NULL, false);
	sk_wr_array(&w, 1, false);
	sk_wr_str(&w, "t", false);
	sk_wr_array(&w, INT32_MAX, false);
	frame_end(&b);
	feed_buf(&b, true, "OffsetCommit partitions count 2^31-1");

	w = frame_start(&b, 9, 7); /* OffsetFetch, flexible */
	sk_wr_uvarint(&w, 0);	   /* header tags */
	sk_wr_str(&w, "nasty-g", true);
	sk_wr_uvarint(&w, UINT32_MAX); /* topics: 2^32-2 */
	frame_end(&b);
	feed_buf(&b, true, "OffsetFetch v7 compact topics count 2^32-2");

	w = frame_start(&b, 21, 1); /* DeleteRecords */
	sk_wr_array(&w, 1, false);
	sk_wr_str(&w, "t", false);
	sk_wr_array(&w, INT32_MAX, false);
	frame_end(&b);
	feed_buf(&b, true, "DeleteRecords partitions count 2^31-1");

	/* Flexible (ApiVersions v3) compact lengths of 2^32-1. */
	w = frame_start(&b, 18, 3);
	sk_wr_uvarint(&w, 0);	       /* header tags */
	sk_wr_uvarint(&w, UINT32_MAX); /* client_software_name */
	frame_end(&b);
	feed_buf(&b, true, "ApiVersions v3 compact string length 2^32-2");

	w = frame_start(&b, 18, 3);
	sk_wr_uvarint(&w, 0);
	sk_wr_uvarint(&w, 1);
	sk_wr_uvarint(&w, 1);
	sk_wr_uvarint(&w, 1);	       /* one tagged field ... */
	sk_wr_uvarint(&w, 0);	       /* tag 0 ... */
	sk_wr_uvarint(&w, UINT32_MAX); /* ... 4 GiB long */
	frame_end(&b);
	feed_buf(&b, true, "ApiVersions v3 tagged field length 2^32-1");

	/* A valid frame followed by garbage: answered, then closed. */
	w = frame_start(&b, 18, 0);
	frame_end(&b);
	sk_wr_i32(&w, -5);
	feed_buf(&b, true, "valid frame then size -5");

	sk_buf_free(&b);
	check_alive("the nasty frames");
}

int main(void)
{
	size_t n_corpus, n_regress;
	char **corpus = list_dir(CORPUS_DIR, &n_corpus);
	char **regress = list_dir(REGRESS_DIR, &n_regress);
	char path[4096];

	/* The broker's data is throw-away: keep it in memory if we can. */
	if (!getenv("TMPDIR") && access("/dev/shm", W_OK) == 0)
		setenv("TMPDIR", "/dev/shm", 0);
	/*
	 * Long enough for an fdatasync on a slow disk; the long-poll seeds
	 * wait longer than this and are cancelled by the close.
	 */
	sk_fuzz_set_wait_ms(1000);
	ok(n_corpus > 0, "%s has seeds (run from the repository root)",
	   CORPUS_DIR);

	for (size_t i = 0; i < n_corpus; i++) {
		const struct sk_fuzz_result *res;
		size_t len;
		uint8_t *p;
		int rc;

		snprintf(path, sizeof(path), "%s/%s", CORPUS_DIR, corpus[i]);
		p = read_file(path, &len);
		rc = sk_fuzz_run(p, len);
		res = sk_fuzz_last();
		/*
		 * Seeds named *noreply* get no answer (Produce acks=0, a
		 * long-poll cancelled by the close); the others get one.
		 */
		/* A harness mode byte (crcfix, raw) is not sent. */
		if (!ok(p && rc == 0 && res->released &&
				!res->closed_by_broker &&
				res->sent + (len > 0 &&
					     p[0] >= SK_FUZZ_FIX_CRC) ==
					len &&
				(res->replied > 0 ||
				 strstr(corpus[i], "noreply")),
			"seed %s answered", corpus[i]))
			diag("  released %d, closed by broker %d, sent %zu of "
			     "%zu, replied %zu",
			     res->released, res->closed_by_broker, res->sent,
			     len, res->replied);
		free(p);
	}
	check_alive("the corpus");

	for (size_t i = 0; i < n_regress; i++) {
		size_t len;
		uint8_t *p;
		int rc;

		snprintf(path, sizeof(path), "%s/%s", REGRESS_DIR, regress[i]);
		p = read_file(path, &len);
		rc = sk_fuzz_run(p, len);
		ok(p && rc == 0 && sk_fuzz_last()->released,
		   "regression %s survived", regress[i]);
		free(p);
	}
	check_alive("the regressions");

	nasty();

	free_list(corpus, n_corpus);
	free_list(regress, n_regress);
	sk_fuzz_teardown();
	/* The plan goes last (valid TAP): a crash midway leaves none. */
	plan(tap_n);
	return check_status();
}
