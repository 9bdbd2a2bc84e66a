/*
 * The request fuzz harness (see harness.h).
 *
 * Why static state: libFuzzer calls one function per input with no
 * context argument, and starting a broker (data directory, metadata
 * store, listener) for every input would cost far more than the input
 * itself. So one broker lives in this file's static struct for the
 * process, restarted now and then to keep its data bounded. This is the
 * only place in Skald where such a global is acceptable: it is test
 * scaffolding around the broker, not part of it.
 */
#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "batch.h"
#include "broker.h"
#include "crc32c.h"
#include "say.h"

/* Topic every broker starts with, so Produce and Fetch find partitions. */
#define SK_FUZZ_TOPIC	    "t"
#define SK_FUZZ_TOPIC_PARTS 2

/* Restart the broker after this many inputs or topics (bounded data). */
#define SK_FUZZ_RESTART_RUNS 20000
#define SK_FUZZ_MAX_TOPICS   64

/*
 * Soft limit on open descriptors: a CreateTopics of a few thousand
 * partitions then runs out in milliseconds, not seconds, and the same
 * input fails at the same partition on every machine.
 */
#define SK_FUZZ_NOFILE 256

/* SO_SNDBUF of the broker's end of each connection. */
#define SK_FUZZ_SNDBUF 4096

/* Loop iterations without progress after which the broker is "quiet". */
#define SK_FUZZ_QUIET_ITERS 4
/* ... and while input is still unsent (the broker stopped reading). */
#define SK_FUZZ_STALL_ITERS 200
/* Hard bound on iterations for one input. */
#define SK_FUZZ_MAX_ITERS 100000
/* Iterations after our close for the broker to free its side. */
#define SK_FUZZ_CLOSE_ITERS 100
/*
 * How long to wait, by default, for answers still pending once the broker
 * is otherwise quiet: acks=all and offset commits complete from the
 * flusher thread after an fdatasync, a long-poll Fetch after max_wait_ms.
 * Short, so long-polls cost the fuzzer little and are cancelled by our
 * close; see sk_fuzz_set_wait_ms.
 */
#define SK_FUZZ_WAIT_MS 5

static struct {
	struct ev_loop *loop; /* owned; outlives broker restarts */
	struct sk_broker b;
	bool up;		     /* b is initialised */
	char dir[PATH_MAX];	     /* from mkdtemp; "" until created */
	char data_dir[PATH_MAX + 8]; /* dir/data: the broker's log.dir */
	unsigned long runs;	     /* inputs since the broker started */
	int wait_ms;		     /* see sk_fuzz_set_wait_ms; 0: default */
	struct sk_fuzz_result last;  /* of the last input */
} fz;

/* Give up the fuzz run: the harness itself cannot work. */
static void die(const char *what, const char *detail)
{
	fprintf(stderr, "skald fuzz harness: %s: %s\n", what, detail);
	abort();
}

static void ensure_topic(void)
{
	struct sk_err err = { "" };
	enum sk_kerr ec;

	if (sk_topics_find(&fz.b.topics, SK_FUZZ_TOPIC, strlen(SK_FUZZ_TOPIC)))
		return;
	ec = sk_topic_create(&fz.b, SK_FUZZ_TOPIC, SK_FUZZ_TOPIC_PARTS, NULL, 0,
			     false, &err);
	if (ec)
		die("cannot create topic " SK_FUZZ_TOPIC, err.msg);
}

/*
 * The listener is never used (connections come from socketpairs), but
 * the broker opens one. Port 0 (an ephemeral port) is what we want; while
 * the config refuses it, ask the kernel for a free port and use that.
 */
static int set_listener(struct sk_config *cfg, struct sk_err *err)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	char hostport[32];
	int fd;

	if (sk_config_set(cfg, "listeners", "127.0.0.1:0", "fuzz", err) == 0)
		return 0;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
		die("picking a listener port", strerror(errno));
	close(fd);
	snprintf(hostport, sizeof(hostport), "127.0.0.1:%d",
		 ntohs(sa.sin_port));
	return sk_config_set(cfg, "listeners", hostport, "fuzz", err);
}

static void limit_descriptors(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur > SK_FUZZ_NOFILE) {
		rl.rlim_cur = SK_FUZZ_NOFILE;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void broker_start(void)
{
	struct sk_err err = { "" };
	const char *tmp = getenv("TMPDIR");

	if (!fz.dir[0]) {
		const char *verbose = getenv("SKALD_FUZZ_VERBOSE");

		sk_say_setup(verbose && verbose[0] ? SK_SAY_DEBUG
						   : SK_SAY_ERROR,
			     SK_SAY_TEXT);
		snprintf(fz.dir, sizeof(fz.dir), "%s/skald-fuzz-XXXXXX",
			 tmp && tmp[0] ? tmp : "/tmp");
		if (!mkdtemp(fz.dir))
			die(fz.dir, strerror(errno));
		snprintf(fz.data_dir, sizeof(fz.data_dir), "%s/data", fz.dir);
		atexit(sk_fuzz_teardown);
		limit_descriptors();
	}
	if (!fz.loop) {
		fz.loop = ev_loop_new(EVFLAG_AUTO);
		if (!fz.loop)
			die("ev_loop_new", "no event loop backend");
	}
	memset(&fz.b, 0, sizeof(fz.b));
	sk_config_init(&fz.b.cfg);
	/*
	 * Small backpressure limits, so that a few pipelined requests or
	 * one large Fetch answer already make the connection stop reading.
	 */
	if (sk_config_set(&fz.b.cfg, "log.dir", fz.data_dir, "fuzz", &err) ||
	    set_listener(&fz.b.cfg, &err) ||
	    sk_config_set(&fz.b.cfg, "queued.max.requests", "4", "fuzz",
			  &err) ||
	    sk_config_set(&fz.b.cfg, "connection.output.max.bytes", "65536",
			  "fuzz", &err) ||
	    /* No admin HTTP listener (nor its thread) per restart. */
	    sk_config_set(&fz.b.cfg, "admin.listener", "", "fuzz", &err))
		die("config", err.msg);
	/*
	 * A JoinGroup completes at once instead of after the initial
	 * rebalance delay (3 s), so the rest of the group protocol is
	 * reached within one input.
	 */
	sk_config_set(&fz.b.cfg, "group.initial.rebalance.delay.ms", "0",
		      "fuzz", &err);
	if (sk_broker_init(&fz.b, fz.loop, &err))
		die("broker init", err.msg);
	/*
	 * SIGINT and SIGTERM belong to the fuzzer (or the test runner), not
	 * to a broker that would start a graceful stop on them.
	 */
	ev_signal_stop(fz.loop, &fz.b.sig_term);
	ev_signal_stop(fz.loop, &fz.b.sig_int);
	fz.up = true;
	fz.runs = 0;
	ensure_topic();
}

static void broker_stop(void)
{
	if (!fz.up)
		return;
	sk_broker_fini(&fz.b);
	sk_config_free(&fz.b.cfg);
	fz.up = false;
	sk_rmtree(fz.data_dir);
}

void sk_fuzz_teardown(void)
{
	broker_stop();
	if (fz.loop) {
		ev_loop_destroy(fz.loop);
		fz.loop = NULL;
	}
	if (fz.dir[0]) {
		sk_rmtree(fz.dir);
		fz.dir[0] = '\0';
	}
}

/* Start the broker, or restart it once its data has grown enough. */
static void broker_ready(void)
{
	if (fz.up && (fz.runs >= SK_FUZZ_RESTART_RUNS ||
		      fz.b.topics.map.count > SK_FUZZ_MAX_TOPICS))
		broker_stop();
	if (!fz.up)
		broker_start();
	ensure_topic();
	fz.runs++;
}

/* Read and discard what the broker sent; true if anything happened. */
static bool drain(int fd, struct sk_fuzz_result *res)
{
	static uint8_t sink[65536];
	bool progress = false;

	for (;;) {
		ssize_t n = recv(fd, sink, sizeof(sink), 0);

		if (n > 0) {
			res->replied += (size_t)n;
			progress = true;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return progress;
		/* EOF or a reset: the broker closed its end. */
		if (!res->closed_by_broker)
			progress = true;
		res->closed_by_broker = true;
		return progress;
	}
}

static void on_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

/*
 * Block in the loop until something happens (a thread's completion, a
 * timer, a socket) or until the deadline (ev_time() based) has passed.
 * Returns false once it has.
 */
static bool wait_until(double deadline)
{
	double left = deadline - ev_time();
	ev_timer guard;

	if (left <= 0)
		return false;
	ev_timer_init(&guard, on_guard, left, 0.0);
	ev_timer_start(fz.loop, &guard);
	ev_run(fz.loop, EVRUN_ONCE);
	ev_timer_stop(fz.loop, &guard);
	return true;
}

void sk_fuzz_set_wait_ms(int ms)
{
	fz.wait_ms = ms;
}

/* One connection: send p, let the broker answer, close, check cleanup. */
static int exchange(const uint8_t *p, size_t len)
{
	struct sk_fuzz_result *res = &fz.last;
	struct sk_server *srv = &fz.b.server;
	double wait = (fz.wait_ms > 0 ? fz.wait_ms : SK_FUZZ_WAIT_MS) / 1000.0;
	double deadline = 0;
	int sv[2], quiet = 0;
	size_t off = 0;

	memset(res, 0, sizeof(*res));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
		       sv) < 0) {
		/* Out of descriptors? Topics hold open segment files. */
		broker_stop();
		broker_start();
		if (socketpair(AF_UNIX,
			       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
			       sv) < 0)
			die("socketpair", strerror(errno));
	}
	/*
	 * A small send buffer on the broker's end makes larger answers
	 * (Fetch data, DescribeConfigs) go out in several writes, so the
	 * EAGAIN and write-watcher paths are fuzzed too.
	 */
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &(int){ SK_FUZZ_SNDBUF },
		   sizeof(int));
	sk_conn_new(srv, sv[0]);

	for (int i = 0; i < SK_FUZZ_MAX_ITERS; i++) {
		bool progress = false;
		bool unsent = off < len && !res->closed_by_broker;

		if (unsent) {
			ssize_t n =
				send(sv[1], p + off, len - off, MSG_NOSIGNAL);

			if (n > 0) {
				off += (size_t)n;
				progress = true;
			} else if (n < 0 && errno != EAGAIN &&
				   errno != EWOULDBLOCK && errno != EINTR) {
				res->closed_by_broker = true; /* EPIPE */
			}
		}
		ev_run(fz.loop, EVRUN_NOWAIT);
		if (drain(sv[1], res))
			progress = true;
		if (progress) {
			quiet = 0;
			continue;
		}
		quiet++;
		if (quiet <
		    (unsent ? SK_FUZZ_STALL_ITERS : SK_FUZZ_QUIET_ITERS))
			continue;
		if (!res->closed_by_broker && sk_server_pending(srv) > 0) {
			if (deadline == 0)
				deadline = ev_time() + wait;
			if (wait_until(deadline)) {
				quiet = 0;
				continue;
			}
		}
		break;
	}
	res->sent = off;

	/* Our close must free the broker's side, pending fetches and all. */
	close(sv[1]);
	for (int i = 0; i < SK_FUZZ_CLOSE_ITERS && srv->n_conns > 0; i++)
		ev_run(fz.loop, EVRUN_NOWAIT);
	/* A completion from a thread may be needed to notice the close. */
	deadline = ev_time() + wait;
	while (srv->n_conns > 0 && wait_until(deadline))
		;
	res->released = srv->n_conns == 0;
	if (!res->released) {
		/* Start the next input from a clean broker. */
		broker_stop();
		return -1;
	}
	return 0;
}

int sk_fuzz_feed(const uint8_t *bytes, size_t len)
{
	broker_ready();
	return exchange(bytes, len);
}

/*
 * Give every plausible RecordBatch v2 in p (magic 2 at offset 16, a
 * batchLength that fits) the CRC-32C it should have, so that mutated
 * records get past the CRC check to the record parser.
 */
static void fix_batch_crcs(uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i + SK_BATCH_HEADER_SIZE <= len) {
		uint8_t *b = p + i;
		int32_t blen = (int32_t)sk_be32(b + 8);
		size_t size;

		if (b[SK_BATCH_MAGIC_OFFSET] != 2 ||
		    blen < SK_BATCH_HEADER_SIZE - SK_BATCH_LOG_OVERHEAD ||
		    (size_t)blen > len - i - SK_BATCH_LOG_OVERHEAD) {
			i++;
			continue;
		}
		size = (size_t)blen + SK_BATCH_LOG_OVERHEAD;
		sk_put_be32(b + SK_BATCH_CRC_OFFSET,
			    sk_crc32c(0, b + SK_BATCH_ATTR_OFFSET,
				      size - SK_BATCH_ATTR_OFFSET));
		i += size;
	}
}

int sk_fuzz_run(const uint8_t *data, size_t len)
{
	struct sk_buf framed = { 0 };
	bool fix_crcs = false;
	size_t pos = 0;
	int rc;

	if (len > 0 && data[0] == SK_FUZZ_RAW)
		return sk_fuzz_feed(data + 1, len - 1);
	if (len > 0 && data[0] == SK_FUZZ_FIX_CRC) {
		fix_crcs = true;
		pos = 1;
	}
	while (pos < len) {
		size_t left = len - pos;
		uint8_t size[4];

		if (left >= 4) {
			uint32_t n = sk_be32(data + pos);

			if (n >= 1 && n <= left - 4) {
				sk_buf_put(&framed, data + pos, 4 + (size_t)n);
				pos += 4 + (size_t)n;
				continue;
			}
		}
		sk_put_be32(size, (uint32_t)left);
		sk_buf_put(&framed, size, sizeof(size));
		sk_buf_put(&framed, data + pos, left);
		break;
	}
	if (fix_crcs)
		fix_batch_crcs(framed.data, framed.len);
	rc = sk_fuzz_feed(framed.data, framed.len);
	sk_buf_free(&framed);
	return rc;
}

const struct sk_fuzz_result *sk_fuzz_last(void)
{
	return &fz.last;
}
