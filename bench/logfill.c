/*
 * Partition logs for the durability benchmark (bench/durability.py),
 * written and opened through the log library itself:
 *
 *   skald-logfill fill DIR MB [SEGMENT_MB]
 *       append MB of 16 KB batches to the partition in DIR, close it
 *       cleanly (sync, index files, clean recovery checkpoint)
 *   skald-logfill crash DIR MB
 *       checkpoint the partition (recovery point = its end), append MB
 *       more and exit without closing: a process crash with an
 *       unflushed tail of MB (the page cache still holds it)
 *   skald-logfill evict DIR...
 *       sync each file under the DIRs and drop it from the page cache
 *       (posix_fadvise DONTNEED), so the next read comes from the disk
 *   skald-logfill open DIR
 *       open the partition (recovery) and print what it did, as JSON
 */
#include "batch.h"
#include "log.h"
#include "say.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BATCH_RECORDS 16
#define RECORD_BYTES  1000

static struct sk_log_config cfg = {
	.segment_bytes = 1ll << 30,
	.segment_ms = 1ll << 50,
	.index_interval_bytes = 4096,
};

static struct sk_partition *open_or_die(const char *dir)
{
	struct sk_partition *p;
	struct sk_err err;

	if (sk_partition_open(&p, dir, &cfg, &err) < 0) {
		fprintf(stderr, "open %s: %s\n", dir, err.msg);
		exit(1);
	}
	return p;
}

static void append_mb(struct sk_partition *p, int64_t mb)
{
	struct sk_record_in recs[BATCH_RECORDS];
	uint8_t val[RECORD_BYTES];
	struct sk_buf b = { 0 };
	int64_t want = mb << 20, done = 0, base;
	struct sk_err err;

	for (size_t i = 0; i < sizeof(val); i++)
		val[i] = (uint8_t)(i * 131 + 7);
	for (int i = 0; i < BATCH_RECORDS; i++)
		recs[i] = (struct sk_record_in){
			NULL, -1, val, RECORD_BYTES, sk_now_ms(), NULL, 0
		};
	sk_batch_build(&b, 0, recs, BATCH_RECORDS, 0, -1, -1, -1);
	while (done < want) {
		/* The append stamps the base offset, outside the CRC. */
		if (sk_partition_append(p, b.data, b.len, &base, &err) < 0) {
			fprintf(stderr, "append: %s\n", err.msg);
			exit(1);
		}
		done += (int64_t)b.len;
	}
	sk_buf_free(&b);
}

static void evict(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *e;

		while (d && (e = readdir(d))) {
			char *sub;

			if (e->d_name[0] == '.')
				continue;
			sub = sk_xasprintf("%s/%s", path, e->d_name);
			evict(sub);
			free(sub);
		}
		if (d)
			closedir(d);
	} else if (S_ISREG(st.st_mode)) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);

		if (fd >= 0) {
			fdatasync(fd);
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
			close(fd);
		}
	}
}

int main(int argc, char **argv)
{
	sk_say_setup(SK_SAY_WARN, SK_SAY_TEXT);
	if (argc >= 4 && strcmp(argv[1], "fill") == 0) {
		struct sk_partition *p;

		if (argc >= 5)
			cfg.segment_bytes = atoll(argv[4]) << 20;
		p = open_or_die(argv[2]);
		append_mb(p, atoll(argv[3]));
		sk_partition_close(p);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "crash") == 0) {
		struct sk_partition *p = open_or_die(argv[2]);
		struct sk_log_sync s;

		if (sk_partition_checkpoint_begin(p, &s)) {
			sk_log_sync_run(&s);
			sk_log_sync_end(&s);
		}
		append_mb(p, atoll(argv[3]));
		_exit(0); /* no close: the tail is neither synced nor indexed */
	}
	if (argc >= 3 && strcmp(argv[1], "evict") == 0) {
		for (int i = 2; i < argc; i++)
			evict(argv[i]);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "open") == 0) {
		int64_t t0 = sk_mono_ms();
		struct sk_partition *p = open_or_die(argv[2]);
		int64_t ms = sk_mono_ms() - t0;
		const struct sk_log_recovery *r = sk_partition_recovery(p);

		printf("{\"ms\": %lld, \"bytes\": %lld, \"segments\": %zu, "
		       "\"scanned\": %lld, \"checkpoint\": %s, \"clean\": %s, "
		       "\"truncated\": %lld}\n",
		       (long long)ms, (long long)sk_partition_size_bytes(p),
		       sk_partition_segment_count(p),
		       (long long)r->bytes_scanned,
		       r->checkpoint ? "true" : "false",
		       r->clean ? "true" : "false",
		       (long long)r->bytes_truncated);
		/* Leave it as found: no clean close (which would sync). */
		fflush(stdout);
		_exit(0);
	}
	fprintf(stderr, "usage: skald-logfill fill DIR MB [SEGMENT_MB] | "
			"crash DIR MB | evict DIR... | open DIR\n");
	return 2;
}
