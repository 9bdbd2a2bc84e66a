/*
 * Disk errors and flush settings, through a real in-process broker whose
 * log runs on the test I/O layer (io_shim.h): Produce requests go in over
 * a socketpair, the answers are parsed.
 *
 *   - ENOSPC on the segment write (a short write, then no space): acks=1
 *     and acks=all get KAFKA_STORAGE_ERROR, nothing of the batch stays,
 *     reads and other partitions keep working, the broker stays up, and
 *     once space returns appends continue at the next offset.
 *   - EIO on a write: the same, for that one append.
 *   - EIO on fdatasync under acks=all: KAFKA_STORAGE_ERROR, and the
 *     partition refuses appends from then on (the page cache can no
 *     longer be trusted), while reads keep working.
 *   - After a restart every acknowledged batch is there, byte for byte.
 *   - flush.messages and flush.ms sync acks=1 data (counted by the
 *     flusher); without them nothing is synced; a checkpoint round writes
 *     recovery checkpoints.
 */
#include "batch.h"
#include "broker.h"
#include "io_shim.h"
#include "kafka_errors.h"
#include "say.h"
#include "tap.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static struct ev_loop *loop;
static struct sk_broker b;
static char dir[256], data_dir[300];
static int cfd = -1; /* our end of the connection */
static int32_t corr;

/* A batch the broker acknowledged. */
struct acked {
	char topic[16];
	int64_t base;
	uint8_t *bytes;
	size_t len;
};
static struct acked acks[256];
static int n_acks;

static void on_guard(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
}

/* Run the loop for about ms (threads' completions included). */
static void spin(int ms)
{
	double end = ev_time() + ms / 1000.0;

	while (ev_time() < end) {
		ev_timer guard;

		ev_timer_init(&guard, on_guard, 0.005, 0.0);
		ev_timer_start(loop, &guard);
		ev_run(loop, EVRUN_ONCE);
		ev_timer_stop(loop, &guard);
	}
}

/* Run the loop until the flusher completed n syncs (or 5 s passed). */
static uint64_t wait_syncs(uint64_t n)
{
	for (int i = 0; i < 500 && b.flusher.syncs < n; i++)
		spin(10);
	return b.flusher.syncs;
}

static void connect_client(void)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
		       sv) < 0)
		abort();
	sk_conn_new(&b.server, sv[0]);
	cfd = sv[1];
}

static void broker_up(void)
{
	struct sk_err err = { "" };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	char hostport[32];
	int fd;

	memset(&b, 0, sizeof(b));
	sk_config_init(&b.cfg);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
		abort();
	close(fd);
	snprintf(hostport, sizeof(hostport), "127.0.0.1:%d",
		 ntohs(sa.sin_port));
	if (sk_config_set(&b.cfg, "log.dir", data_dir, "test", &err) ||
	    sk_config_set(&b.cfg, "listeners", hostport, "test", &err) ||
	    sk_broker_init(&b, loop, &err)) {
		diag("broker: %s", err.msg);
		abort();
	}
	ev_signal_stop(loop, &b.sig_term);
	ev_signal_stop(loop, &b.sig_int);
	connect_client();
}

static void broker_down(void)
{
	close(cfd);
	cfd = -1;
	spin(20);
	sk_broker_fini(&b);
	sk_config_free(&b.cfg);
}

static void create_topic(const char *name, const char *k1, const char *v1)
{
	struct sk_config_kv kv = { (char *)k1, (char *)v1 };
	struct sk_err err = { "" };

	if (sk_topic_create(&b, name, 1, &kv, k1 ? 1 : 0, false, &err)) {
		diag("create %s: %s", name, err.msg);
		abort();
	}
}

static void put16(struct sk_buf *o, int16_t v)
{
	uint8_t *p = sk_buf_extend(o, 2);

	sk_put_be16(p, (uint16_t)v);
}

static void put32(struct sk_buf *o, int32_t v)
{
	uint8_t *p = sk_buf_extend(o, 4);

	sk_put_be32(p, (uint32_t)v);
}

/* A batch of n records of vlen bytes each (offset 0, valid CRC). */
static void make_batch(struct sk_buf *out, int n, size_t vlen, int tag)
{
	struct sk_record_in recs[8];
	uint8_t val[512];

	for (size_t i = 0; i < vlen; i++)
		val[i] = (uint8_t)(i + (size_t)tag * 7);
	for (int j = 0; j < n; j++)
		recs[j] = (struct sk_record_in){
			NULL, -1, val, (int32_t)vlen, 1700000000000ll + tag,
			NULL, 0
		};
	out->len = 0;
	sk_batch_build(out, 0, recs, (size_t)n, 0, -1, -1, -1);
}

/* Read one response frame (waiting up to ms); its length, or -1. */
static ssize_t read_frame(uint8_t *buf, size_t cap, int ms)
{
	size_t got = 0, want = 4;
	double end = ev_time() + ms / 1000.0;

	while (got < want && ev_time() < end) {
		ssize_t n = recv(cfd, buf + got, want - got, 0);

		if (n > 0) {
			got += (size_t)n;
			if (got == 4 && want == 4) {
				want = 4 + sk_be32(buf);
				if (want > cap)
					return -1;
			}
			continue;
		}
		if (n == 0)
			return -1;
		spin(2);
	}
	return got == want && want > 4 ? (ssize_t)got : -1;
}

/*
 * Produce one batch (v3) to partition 0 of topic; returns the error code
 * (-1 for no answer) and stores the base offset. An acknowledged batch
 * (acks != 0, no error) is remembered with its stored bytes.
 */
static int produce(const char *topic, int16_t ack, const struct sk_buf *bat,
		   int64_t *base)
{
	struct sk_buf req = { 0 };
	uint8_t resp[4096];
	struct sk_rd r;
	ssize_t n;
	int16_t ec;

	put32(&req, 0); /* size, patched below */
	put16(&req, 0); /* Produce */
	put16(&req, 3);
	put32(&req, ++corr);
	put16(&req, 1);
	sk_buf_put(&req, "t", 1);
	put16(&req, -1); /* transactional_id */
	put16(&req, ack);
	put32(&req, 10000);
	put32(&req, 1);
	put16(&req, (int16_t)strlen(topic));
	sk_buf_put(&req, topic, strlen(topic));
	put32(&req, 1);
	put32(&req, 0);
	put32(&req, (int32_t)bat->len);
	sk_buf_put(&req, bat->data, bat->len);
	sk_put_be32(req.data, (uint32_t)(req.len - 4));
	if (send(cfd, req.data, req.len, MSG_NOSIGNAL) != (ssize_t)req.len)
		abort();
	sk_buf_free(&req);
	*base = -1;
	n = read_frame(resp, sizeof(resp), 5000);
	if (n < 0)
		return -1;
	/* corr, [topic [partition error base_offset log_append_time]] */
	sk_rd_init(&r, resp + 4, (size_t)n - 4);
	sk_rd_i32(&r);
	sk_rd_i32(&r);
	sk_rd_string(&r);
	sk_rd_i32(&r);
	sk_rd_i32(&r);
	ec = sk_rd_i16(&r);
	*base = sk_rd_i64(&r);
	if (!sk_rd_ok(&r))
		return -1;
	if (ec == 0 && n_acks < (int)SK_ARRAY_SIZE(acks)) {
		struct acked *a = &acks[n_acks++];

		snprintf(a->topic, sizeof(a->topic), "%s", topic);
		a->base = *base;
		a->len = bat->len;
		a->bytes = malloc(bat->len);
		memcpy(a->bytes, bat->data, bat->len);
		sk_put_be64(a->bytes, (uint64_t)*base);
	}
	return ec;
}

static struct sk_partition *log_of(const char *topic)
{
	struct sk_topic *t = sk_topics_find(&b.topics, topic, strlen(topic));

	return t ? t->parts[0]->log : NULL;
}

static struct sk_tpart *part_of(const char *topic)
{
	struct sk_topic *t = sk_topics_find(&b.topics, topic, strlen(topic));

	return t ? t->parts[0] : NULL;
}

/* Whether the batch acknowledged at a reads back byte for byte. */
static bool reads_back(const struct acked *a)
{
	struct sk_partition *p = log_of(a->topic);
	struct sk_log_slice s;
	uint8_t *buf;
	bool good;

	if (!p || sk_partition_read(p, a->base, a->len, true, &s) < 0 ||
	    s.len < a->len)
		return false;
	buf = malloc(a->len);
	good = pread(sk_segment_fd(s.seg), buf, a->len, s.pos) ==
		       (ssize_t)a->len &&
	       memcmp(buf, a->bytes, a->len) == 0;
	free(buf);
	sk_log_slice_release(&s);
	return good;
}

static bool all_read_back(void)
{
	for (int i = 0; i < n_acks; i++)
		if (!reads_back(&acks[i])) {
			diag("  %s offset %lld does not read back",
			     acks[i].topic, (long long)acks[i].base);
			return false;
		}
	return true;
}

static void test_enospc(void)
{
	struct sk_buf bat = { 0 };
	int64_t base, end;
	int ec;

	create_topic("d", NULL, NULL);
	create_topic("other", NULL, NULL);
	make_batch(&bat, 3, 100, 1);
	is(produce("d", -1, &bat, &base), 0, "acks=all produce works");
	is(produce("d", 1, &bat, &base), 0, "acks=1 produce works");
	end = sk_partition_end_offset(log_of("d"));

	/* Out of space: a short write, then nothing. */
	io_shim_fail(IO_WRITE, 1, ENOSPC, true, true);
	make_batch(&bat, 4, 300, 2);
	ec = produce("d", 1, &bat, &base);
	is(ec, SK_KERR_KAFKA_STORAGE_ERROR,
	   "ENOSPC: acks=1 gets "
	   "KAFKA_STORAGE_ERROR");
	ok(io_shim_failed(), "the failure was injected (a short write)");
	is(produce("d", -1, &bat, &base), SK_KERR_KAFKA_STORAGE_ERROR,
	   "ENOSPC: acks=all gets KAFKA_STORAGE_ERROR");
	is(produce("other", 1, &bat, &base), SK_KERR_KAFKA_STORAGE_ERROR,
	   "so does another partition on the full disk");
	is(sk_partition_end_offset(log_of("d")), end, "nothing was appended");
	ok(all_read_back(), "reads keep working: every acknowledged batch");

	/* Space returns. */
	io_shim_fail_clear();
	is(produce("d", 1, &bat, &base), 0, "space back: appends work again");
	is(base, end, "at the next offset (no gap, nothing half-written)");
	is(produce("d", -1, &bat, &base), 0, "and acks=all too");

	/* One I/O error on a write: that append fails, the next works. */
	io_shim_fail(IO_WRITE, 1, EIO, false, false);
	is(produce("d", -1, &bat, &base), SK_KERR_KAFKA_STORAGE_ERROR,
	   "EIO on the write: KAFKA_STORAGE_ERROR");
	io_shim_fail_clear();
	end = sk_partition_end_offset(log_of("d"));
	is(produce("d", 1, &bat, &base), 0, "the next append works");
	is(base, end, "at the next offset");
	ok(all_read_back(), "every acknowledged batch reads back");
	sk_buf_free(&bat);
}

static void test_sync_eio(void)
{
	struct sk_buf bat = { 0 };
	int64_t base, end;

	create_topic("e", NULL, NULL);
	make_batch(&bat, 2, 50, 3);
	is(produce("e", -1, &bat, &base), 0, "acks=all to e");
	io_shim_fail(IO_SYNC, 1, EIO, false, false);
	is(produce("e", -1, &bat, &base), SK_KERR_KAFKA_STORAGE_ERROR,
	   "EIO on fdatasync: acks=all gets KAFKA_STORAGE_ERROR");
	io_shim_fail_clear();
	end = sk_partition_end_offset(log_of("e"));
	is(produce("e", 1, &bat, &base), SK_KERR_KAFKA_STORAGE_ERROR,
	   "after a failed fdatasync the partition refuses appends");
	is(produce("e", -1, &bat, &base), SK_KERR_KAFKA_STORAGE_ERROR,
	   "acks=all too");
	is(sk_partition_end_offset(log_of("e")), end, "nothing appended");
	ok(all_read_back(), "reads keep working");
	is(produce("other", -1, &bat, &base), 0,
	   "other partitions are not affected");
	sk_buf_free(&bat);
}

static void test_flush_settings(void)
{
	struct sk_buf one = { 0 }, three = { 0 };
	uint64_t s0;
	int64_t base;

	create_topic("fm", "flush.messages", "3");
	create_topic("fms", "flush.ms", "150");
	create_topic("plain", NULL, NULL);
	make_batch(&one, 1, 20, 4);
	make_batch(&three, 3, 20, 5);
	spin(50);

	s0 = b.flusher.syncs;
	is(produce("plain", 1, &one, &base), 0, "acks=1 without flush.*");
	spin(300);
	is(b.flusher.syncs, s0, "is not synced");

	s0 = b.flusher.syncs;
	produce("fm", 1, &one, &base);
	produce("fm", 1, &one, &base);
	spin(100);
	is(b.flusher.syncs, s0, "flush.messages=3: 2 records, no sync");
	produce("fm", 1, &one, &base);
	is(wait_syncs(s0 + 1), s0 + 1, "the 3rd record: one sync");
	ok(part_of("fm")->unflushed == 0, "and the count starts over");
	produce("fm", 1, &three, &base);
	is(wait_syncs(s0 + 2), s0 + 2, "a batch of 3 records: synced at once");

	s0 = b.flusher.syncs;
	produce("fms", 1, &one, &base);
	spin(40);
	is(b.flusher.syncs, s0, "flush.ms=150: not synced after 40 ms");
	is(wait_syncs(s0 + 1), s0 + 1, "synced once the 150 ms passed");
	spin(300);
	is(b.flusher.syncs, s0 + 1, "and not again without new records");

	/* The checkpoint round: what acks=1 left is synced, checkpointed. */
	s0 = b.flusher.syncs;
	sk_flusher_checkpoint(&b.flusher);
	for (int i = 0; i < 500 && b.flusher.checkpoints == 0; i++)
		spin(10);
	ok(b.flusher.checkpoints >= 1 && b.flusher.syncs > s0,
	   "a checkpoint round syncs what was left (%llu partitions)",
	   (unsigned long long)(b.flusher.syncs - s0));
	{
		char *ck = sk_xasprintf("%s/plain-0/recovery.checkpoint",
					data_dir);
		struct stat st;

		ok(stat(ck, &st) == 0 && st.st_size == 48,
		   "and wrote the recovery checkpoint");
		free(ck);
	}
	sk_buf_free(&one);
	sk_buf_free(&three);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	int64_t base;
	struct sk_buf bat = { 0 };

	plan(36);
	sk_say_setup(getenv("SKALD_TEST_VERBOSE")
			     ? SK_SAY_DEBUG
			     : (enum sk_say_level)(SK_SAY_ERROR + 1),
		     SK_SAY_TEXT);
	snprintf(dir, sizeof(dir), "%s/sk_test_diskerr_XXXXXX",
		 tmp && tmp[0] ? tmp : "/tmp");
	if (!mkdtemp(dir))
		abort();
	snprintf(data_dir, sizeof(data_dir), "%s/data", dir);
	loop = ev_loop_new(EVFLAG_AUTO);
	io_shim_reset(NULL);
	broker_up();

	test_enospc();
	test_sync_eio();
	test_flush_settings();

	/* A restart: every acknowledged batch is still there. */
	broker_down();
	broker_up();
	ok(all_read_back(),
	   "after a restart all %d acknowledged batches are "
	   "there",
	   n_acks);
	ok(!sk_partition_damaged(log_of("d")), "nothing damaged");
	make_batch(&bat, 1, 10, 9);
	is(produce("e", 1, &bat, &base), 0,
	   "the restart lets the partition whose sync failed append again");
	sk_buf_free(&bat);
	broker_down();

	ev_loop_destroy(loop);
	sk_rmtree(dir);
	for (int i = 0; i < n_acks; i++)
		free(acks[i].bytes);
	return check_status();
}
