/*
 * skald-bench: a load generator for Kafka brokers, on librdkafka.
 *
 * Modes:
 *   produce   N records of S bytes to P partitions, K producer instances
 *             (one thread and one rd_kafka_t each); throughput, and the
 *             enqueue-to-delivery latency of every record.
 *   consume   read N records from the start of every partition.
 *   latency   one record in flight: produce, wait for its delivery
 *             report, repeat.
 *   e2e       a producer thread stamps each record with the wall clock,
 *             a consumer in the same process computes the latency.
 *   create    only create the topic (--create-partitions).
 *   fsync     the disk's floor: append S bytes and fdatasync, N times.
 *   loopback  the network's floor: pump N writes of S bytes over TCP on
 *             127.0.0.1 and read them back on another thread.
 *
 * Given --broker-pid, the broker's CPU time (utime+stime from
 * /proc/PID/stat, delta over the run) and its peak RSS (VmHWM from
 * /proc/PID/status) are reported too. --json prints one JSON object for
 * scripts (bench/run.py).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

enum mode {
	MODE_PRODUCE,
	MODE_CONSUME,
	MODE_LATENCY,
	MODE_E2E,
	MODE_CREATE,
	MODE_FSYNC,
	MODE_LOOPBACK,
};

static const char *const mode_names[] = {
	[MODE_PRODUCE] = "produce",   [MODE_CONSUME] = "consume",
	[MODE_LATENCY] = "latency",   [MODE_E2E] = "e2e",
	[MODE_CREATE] = "create",     [MODE_FSYNC] = "fsync",
	[MODE_LOOPBACK] = "loopback",
};

/* Command-line options; -1 means "librdkafka's default". */
struct opts {
	enum mode mode;
	const char *brokers;
	const char *topic;
	long long count;	 /* records (or writes) to measure */
	int size;		 /* bytes per record (or write) */
	int partitions;		 /* 0: as many as the topic has */
	int producers;		 /* producer instances (threads) */
	const char *acks;	 /* "0", "1" or "all" */
	const char *compression; /* compression.type */
	int linger_ms;
	int batch_size;
	int create_partitions; /* > 0: CreateTopics before the run */
	int broker_pid;	       /* 0: none */
	bool json;
	double rate;		/* e2e: records per second, 0 = unpaced */
	long long warmup;	/* latency/e2e: records not measured */
	int timeout_s;		/* give up after this long */
	const char *dir;	/* fsync: where the file goes */
	const char *stats_file; /* librdkafka statistics of producer 0 */
	const char **xconf;	/* -X key=value for librdkafka */
	int n_xconf;
};

/* What a run measured. */
struct result {
	long long msgs;
	long long bytes;
	long long errors;
	double secs;	 /* the measured span */
	double wall_s;	 /* the whole run, for CPU percentages */
	int64_t *lat_ns; /* latency samples, sorted before printing */
	size_t n_lat;
	double client_cpu_s; /* this process, user+system */
	double broker_cpu_s; /* -1 when not measured */
	long broker_hwm_kb;
	long broker_rss_kb;
	int partitions;
	char note[200];
};

static struct opts o = {
	.mode = MODE_PRODUCE,
	.brokers = "127.0.0.1:9092",
	.topic = "skald-bench",
	.count = 1000000,
	.size = 100,
	.partitions = 0,
	.producers = 1,
	.acks = "1",
	.compression = "none",
	.linger_ms = -1,
	.batch_size = -1,
	.rate = 0,
	.warmup = -1,
	.timeout_s = 300,
	.dir = ".",
};

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("skald-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		die("out of memory");
	return p;
}

static int64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t mono_ns(void)
{
	return now_ns(CLOCK_MONOTONIC);
}

static double cpu_self_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/*
 * utime+stime of a process in seconds, from /proc/PID/stat, or -1.
 * The command name (field 2) may hold spaces, so parsing starts after
 * its closing parenthesis; utime and stime are fields 14 and 15.
 */
static double proc_cpu_s(int pid)
{
	char path[64], buf[1024], *p;
	unsigned long long utime, stime;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p)
		return -1;
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt
	 * cmajflt utime stime */
	if (sscanf(p + 2,
		   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
		   &utime, &stime) != 2)
		return -1;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* A "Key:   123 kB" line of /proc/PID/status, in kB, or -1. */
static long proc_status_kb(int pid, const char *key)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			kb = strtol(line + klen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb;
}

/*
 * Payload source: random lowercase letters, so that compression has
 * something realistic to do. Records take windows of it at shifting
 * offsets, which is why it is larger than one record.
 */
#define PAYLOAD_POOL (1 << 20)

static char *payload_pool;

static void payload_init(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	size_t i;

	payload_pool = xcalloc(1, PAYLOAD_POOL + (size_t)o.size);
	for (i = 0; i < PAYLOAD_POOL + (size_t)o.size; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		payload_pool[i] = (char)('a' + (x % 26));
	}
}

static char *payload_at(long long i)
{
	return payload_pool + (size_t)((i * 7919) % PAYLOAD_POOL);
}

/* --- librdkafka plumbing --- */

static void conf_set(rd_kafka_conf_t *conf, const char *key, const char *val)
{
	char errstr[512];

	if (rd_kafka_conf_set(conf, key, val, errstr, sizeof(errstr)) !=
	    RD_KAFKA_CONF_OK)
		die("config %s=%s: %s", key, val, errstr);
}

static void conf_set_int(rd_kafka_conf_t *conf, const char *key, long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%ld", v);
	conf_set(conf, key, buf);
}

/* Log only errors: a benchmark's stderr is for the figures' problems. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
		   const char *buf)
{
	(void)rk;
	if (level <= 3)
		fprintf(stderr, "skald-bench: rdkafka %s: %s\n", fac, buf);
}

/* -X key=value pairs, applied last so that they win. */
static void conf_apply_x(rd_kafka_conf_t *conf)
{
	int i;

	for (i = 0; i < o.n_xconf; i++) {
		char *kv = strdup(o.xconf[i]), *eq = strchr(kv, '=');

		if (!eq)
			die("-X %s: expected key=value", o.xconf[i]);
		*eq = '\0';
		conf_set(conf, kv, eq + 1);
		free(kv);
	}
}

static rd_kafka_conf_t *conf_common(void)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	conf_set(conf, "bootstrap.servers", o.brokers);
	conf_set(conf, "client.id", "skald-bench");
	rd_kafka_conf_set_log_cb(conf, log_cb);
	return conf;
}

/* Admin and consumer settings: librdkafka's defaults, then -X. */
static rd_kafka_conf_t *base_conf(void)
{
	rd_kafka_conf_t *conf = conf_common();

	conf_apply_x(conf);
	return conf;
}

/*
 * Producer settings shared by every producing mode, then -X. Idempotence
 * stays off (librdkafka's default) so that no InitProducerId is needed.
 */
static rd_kafka_conf_t *producer_conf(int linger_default)
{
	rd_kafka_conf_t *conf = conf_common();

	conf_set(conf, "acks", o.acks);
	conf_set(conf, "compression.type", o.compression);
	conf_set(conf, "enable.idempotence", "false");
	conf_set(conf, "socket.nagle.disable", "true");
	if (o.linger_ms >= 0)
		conf_set_int(conf, "linger.ms", o.linger_ms);
	else if (linger_default >= 0)
		conf_set_int(conf, "linger.ms", linger_default);
	if (o.batch_size > 0)
		conf_set_int(conf, "batch.size", o.batch_size);
	conf_apply_x(conf);
	return conf;
}

static rd_kafka_t *new_client(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
	char errstr[512];
	rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));

	if (!rk)
		die("rd_kafka_new: %s", errstr);
	return rk;
}

/*
 * Partitions of the topic, from Metadata; retried until the topic shows
 * up or the timeout passes. Also brings the connection up, so a timed
 * run does not pay for it.
 */
static int topic_partitions(rd_kafka_t *rk, rd_kafka_topic_t *rkt)
{
	int64_t deadline = mono_ns() + (int64_t)o.timeout_s * 1000000000;
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t err;
	int n = 0;

	for (;;) {
		err = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
		if (!err) {
			if (md->topic_cnt == 1 && !md->topics[0].err)
				n = md->topics[0].partition_cnt;
			else if (md->topic_cnt == 1)
				err = md->topics[0].err;
			rd_kafka_metadata_destroy(md);
			if (n > 0)
				return n;
		}
		if (mono_ns() > deadline)
			die("topic %s: no metadata: %s", o.topic,
			    rd_kafka_err2str(err));
		usleep(100000);
	}
}

/* CreateTopics through the admin API; an existing topic is fine. */
static void create_topic(int partitions)
{
	rd_kafka_t *rk = new_client(RD_KAFKA_PRODUCER, base_conf());
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_AdminOptions_t *ao;
	rd_kafka_NewTopic_t *nt;
	const rd_kafka_CreateTopics_result_t *res;
	const rd_kafka_topic_result_t **tr;
	rd_kafka_event_t *ev;
	rd_kafka_resp_err_t err;
	char errstr[512];
	size_t n;

	nt = rd_kafka_NewTopic_new(o.topic, partitions, 1, errstr,
				   sizeof(errstr));
	if (!nt)
		die("NewTopic: %s", errstr);
	ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
	rd_kafka_AdminOptions_set_operation_timeout(ao, o.timeout_s * 1000,
						    errstr, sizeof(errstr));
	rd_kafka_AdminOptions_set_request_timeout(ao, o.timeout_s * 1000,
						  errstr, sizeof(errstr));
	rd_kafka_CreateTopics(rk, &nt, 1, ao, q);
	ev = rd_kafka_queue_poll(q, o.timeout_s * 1000 + 5000);
	if (!ev)
		die("CreateTopics %s: no answer", o.topic);
	if (rd_kafka_event_error(ev))
		die("CreateTopics %s: %s", o.topic,
		    rd_kafka_event_error_string(ev));
	res = rd_kafka_event_CreateTopics_result(ev);
	tr = rd_kafka_CreateTopics_result_topics(res, &n);
	err = n == 1 ? rd_kafka_topic_result_error(tr[0])
		     : RD_KAFKA_RESP_ERR__FAIL;
	if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
		die("CreateTopics %s: %s", o.topic,
		    n == 1 ? rd_kafka_topic_result_error_string(tr[0])
			   : "no topic result");
	if (err)
		fprintf(stderr, "skald-bench: topic %s already exists\n",
			o.topic);
	rd_kafka_event_destroy(ev);
	rd_kafka_AdminOptions_destroy(ao);
	rd_kafka_NewTopic_destroy(nt);
	rd_kafka_queue_destroy(q);
	rd_kafka_destroy(rk);
}

/* --- produce --- */

/* One producer instance and what its delivery reports counted. */
struct producer {
	pthread_t thread;
	int id;
	long long count; /* records this instance sends */
	long long delivered;
	long long errors;
	rd_kafka_resp_err_t first_err;
	int64_t *lat_ns; /* enqueue-to-delivery, one per record */
	size_t n_lat;
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	int partitions;
};

/* The producers start together once all are connected. */
static pthread_barrier_t start_barrier;

/* msg_opaque carries the enqueue time in ns (monotonic). */
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct producer *p = opaque;
	int64_t t = mono_ns();

	(void)rk;
	if (m->err) {
		if (!p->errors)
			p->first_err = m->err;
		p->errors++;
		return;
	}
	p->delivered++;
	if (p->lat_ns && p->n_lat < (size_t)p->count)
		p->lat_ns[p->n_lat++] = t - (int64_t)(intptr_t)m->_private;
}

/*
 * --stats FILE: librdkafka's statistics JSON (request round trips, queue
 * latencies per broker) of the first producer, the last one emitted
 * before the run ended, for "where does the time go" on the client side.
 */
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static char *stats_json;

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	(void)rk;
	(void)opaque;
	pthread_mutex_lock(&stats_lock);
	free(stats_json);
	stats_json = strndup(json, len);
	pthread_mutex_unlock(&stats_lock);
	return 0;
}

static void stats_write(void)
{
	FILE *f;

	if (!o.stats_file || !stats_json)
		return;
	f = fopen(o.stats_file, "w");
	if (!f)
		die("%s: %s", o.stats_file, strerror(errno));
	fputs(stats_json, f);
	fclose(f);
}

static void producer_setup(struct producer *p, int linger_default,
			   bool keep_lat)
{
	rd_kafka_conf_t *conf = producer_conf(linger_default);

	if (o.stats_file && p->id == 0) {
		conf_set(conf, "statistics.interval.ms", "100");
		rd_kafka_conf_set_stats_cb(conf, stats_cb);
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	rd_kafka_conf_set_opaque(conf, p);
	p->rk = new_client(RD_KAFKA_PRODUCER, conf);
	p->rkt = rd_kafka_topic_new(p->rk, o.topic, NULL);
	p->partitions = topic_partitions(p->rk, p->rkt);
	if (o.partitions > 0 && o.partitions < p->partitions)
		p->partitions = o.partitions;
	if (keep_lat)
		p->lat_ns = xcalloc((size_t)p->count + 1, sizeof(int64_t));
}

static void producer_teardown(struct producer *p)
{
	rd_kafka_topic_destroy(p->rkt);
	rd_kafka_destroy(p->rk);
}

/* Enqueue one record, waiting while librdkafka's queue is full. */
static void produce_one(struct producer *p, int32_t part, void *val, size_t len,
			int flags)
{
	void *ts = (void *)(intptr_t)mono_ns();

	while (rd_kafka_produce(p->rkt, part, flags, val, len, NULL, 0, ts) <
	       0) {
		rd_kafka_resp_err_t err = rd_kafka_last_error();

		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			die("produce: %s", rd_kafka_err2str(err));
		rd_kafka_poll(p->rk, 1);
	}
}

static void *produce_thread(void *arg)
{
	struct producer *p = arg;
	int64_t deadline;
	long long i;

	producer_setup(p, -1, true);
	pthread_barrier_wait(&start_barrier);
	deadline = mono_ns() + (int64_t)o.timeout_s * 1000000000;
	for (i = 0; i < p->count; i++) {
		int32_t part = (int32_t)((i + p->id) % p->partitions);

		produce_one(p, part, payload_at(i), (size_t)o.size, 0);
		if ((i & 1023) == 0)
			rd_kafka_poll(p->rk, 0);
	}
	while (p->delivered + p->errors < p->count && mono_ns() < deadline)
		rd_kafka_poll(p->rk, 100);
	return NULL;
}

static void run_produce(struct result *r)
{
	struct producer *ps = xcalloc((size_t)o.producers, sizeof(*ps));
	int64_t t0, t1;
	int i;

	pthread_barrier_init(&start_barrier, NULL, (unsigned)o.producers + 1);
	for (i = 0; i < o.producers; i++) {
		ps[i].id = i;
		ps[i].count = o.count / o.producers +
			      (i < o.count % o.producers ? 1 : 0);
		if (pthread_create(&ps[i].thread, NULL, produce_thread, &ps[i]))
			die("pthread_create failed");
	}
	pthread_barrier_wait(&start_barrier);
	t0 = mono_ns();
	for (i = 0; i < o.producers; i++)
		pthread_join(ps[i].thread, NULL);
	t1 = mono_ns();

	r->secs = (double)(t1 - t0) / 1e9;
	r->lat_ns = xcalloc((size_t)o.count + 1, sizeof(int64_t));
	for (i = 0; i < o.producers; i++) {
		struct producer *p = &ps[i];

		r->msgs += p->delivered;
		r->errors += p->errors + (p->count - p->delivered - p->errors);
		if (p->errors && !r->note[0])
			snprintf(r->note, sizeof(r->note), "first error: %s",
				 rd_kafka_err2str(p->first_err));
		memcpy(r->lat_ns + r->n_lat, p->lat_ns,
		       p->n_lat * sizeof(int64_t));
		r->n_lat += p->n_lat;
		r->partitions = p->partitions;
		free(p->lat_ns);
		producer_teardown(p);
	}
	r->bytes = r->msgs * o.size;
	stats_write();
	free(ps);
}

/* --- latency: one record in flight --- */

static void run_latency(struct result *r)
{
	struct producer p = { .count = o.count };
	long long warmup = o.warmup >= 0 ? o.warmup : 100;
	long long i, total = o.count + warmup;
	int64_t t0;

	/* linger 0: the record leaves as soon as it is produced. */
	producer_setup(&p, 0, false);
	r->partitions = p.partitions;
	r->lat_ns = xcalloc((size_t)o.count + 1, sizeof(int64_t));
	t0 = 0;
	for (i = 0; i < total; i++) {
		long long before = p.delivered + p.errors;
		int64_t start;

		if (i == warmup)
			t0 = mono_ns();
		start = mono_ns();
		produce_one(&p, (int32_t)(i % p.partitions), payload_at(i),
			    (size_t)o.size, 0);
		while (p.delivered + p.errors == before) {
			rd_kafka_poll(p.rk, 1000);
			if (mono_ns() - start >
			    (int64_t)o.timeout_s * 1000000000)
				die("latency: no delivery report in %d s",
				    o.timeout_s);
		}
		if (i >= warmup && p.delivered > before)
			r->lat_ns[r->n_lat++] = mono_ns() - start;
	}
	r->secs = (double)(mono_ns() - t0) / 1e9;
	r->msgs = (long long)r->n_lat;
	r->errors = p.errors;
	if (p.errors)
		snprintf(r->note, sizeof(r->note), "first error: %s",
			 rd_kafka_err2str(p.first_err));
	r->bytes = r->msgs * o.size;
	stats_write();
	producer_teardown(&p);
}

/* --- consume and e2e --- */

/*
 * A legacy (simple) consumer: every partition started on one queue. It
 * needs no group.id, so it works on a broker without consumer groups.
 */
struct consumer {
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	rd_kafka_queue_t *q;
	int partitions;
};

static void consumer_open(struct consumer *c, bool from_end)
{
	rd_kafka_conf_t *conf = base_conf();
	int i;

	if (o.stats_file) {
		conf_set(conf, "statistics.interval.ms", "100");
		rd_kafka_conf_set_stats_cb(conf, stats_cb);
	}
	c->rk = new_client(RD_KAFKA_CONSUMER, conf);
	c->rkt = rd_kafka_topic_new(c->rk, o.topic, NULL);
	c->partitions = topic_partitions(c->rk, c->rkt);
	c->q = rd_kafka_queue_new(c->rk);
	for (i = 0; i < c->partitions; i++) {
		int64_t off = RD_KAFKA_OFFSET_BEGINNING;

		if (from_end) {
			int64_t lo, hi;
			rd_kafka_resp_err_t err;

			err = rd_kafka_query_watermark_offsets(
				c->rk, o.topic, i, &lo, &hi, 10000);
			if (err)
				die("watermarks of %s/%d: %s", o.topic, i,
				    rd_kafka_err2str(err));
			off = hi;
		}
		if (rd_kafka_consume_start_queue(c->rkt, i, off, c->q) < 0)
			die("consume_start %s/%d: %s", o.topic, i,
			    rd_kafka_err2str(rd_kafka_last_error()));
	}
}

static void consumer_close(struct consumer *c)
{
	int i;

	for (i = 0; i < c->partitions; i++)
		rd_kafka_consume_stop(c->rkt, i);
	rd_kafka_queue_destroy(c->q);
	rd_kafka_topic_destroy(c->rkt);
	rd_kafka_destroy(c->rk);
}

#define BATCH 1024

static void run_consume(struct result *r)
{
	rd_kafka_message_t *msgs[BATCH];
	struct consumer c;
	int64_t deadline, first = 0, last = 0;

	consumer_open(&c, false);
	r->partitions = c.partitions;
	deadline = mono_ns() + (int64_t)o.timeout_s * 1000000000;
	while (r->msgs < o.count && mono_ns() < deadline) {
		/*
		 * The call waits until it has as many records as asked for
		 * or the timeout passes: never ask for more than remain, so
		 * the last call returns with the last record.
		 */
		long long left = o.count - r->msgs;
		ssize_t n = rd_kafka_consume_batch_queue(
			c.q, 100, msgs, left < BATCH ? (size_t)left : BATCH);
		ssize_t i;

		/* Five idle seconds after data flowed: nothing more comes. */
		if (n <= 0 && first && mono_ns() - last > 5000000000LL)
			break;

		for (i = 0; i < n; i++) {
			rd_kafka_message_t *m = msgs[i];

			if (!m->err) {
				r->msgs++;
				r->bytes += (long long)m->len;
			} else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
				if (!r->errors++)
					snprintf(r->note, sizeof(r->note),
						 "first error: %s",
						 rd_kafka_message_errstr(m));
			}
			rd_kafka_message_destroy(m);
		}
		if (n > 0) {
			last = mono_ns();
			if (!first)
				first = last;
		}
	}
	/* From the first record to the last: startup is not throughput. */
	r->secs = first ? (double)(last - first) / 1e9 : 0;
	if (r->msgs < o.count)
		snprintf(r->note, sizeof(r->note),
			 "stopped after %lld of %lld records", r->msgs,
			 o.count);
	rd_kafka_poll(c.rk, 150);
	stats_write();
	consumer_close(&c);
}

/* e2e producer: paced at o.rate, stamping CLOCK_REALTIME into the value. */
struct e2e_prod {
	struct producer p;
	long long total;
};

static void *e2e_produce_thread(void *arg)
{
	struct e2e_prod *e = arg;
	char *buf = xcalloc(1, (size_t)o.size + 16);
	int64_t t0 = mono_ns();
	long long i;

	for (i = 0; i < e->total; i++) {
		int64_t ts;

		if (o.rate > 0) {
			int64_t due = t0 + (int64_t)((double)i * 1e9 / o.rate);

			while (mono_ns() < due) {
				rd_kafka_poll(e->p.rk, 0);
				if (due - mono_ns() > 200000)
					usleep(100);
			}
		}
		ts = now_ns(CLOCK_REALTIME);
		memcpy(buf, payload_at(i), (size_t)o.size);
		memcpy(buf, &ts, sizeof(ts));
		produce_one(&e->p, (int32_t)(i % e->p.partitions), buf,
			    (size_t)o.size, RD_KAFKA_MSG_F_COPY);
		rd_kafka_poll(e->p.rk, 0);
	}
	rd_kafka_flush(e->p.rk, o.timeout_s * 1000);
	free(buf);
	return NULL;
}

static void run_e2e(struct result *r)
{
	long long warmup = o.warmup >= 0 ? o.warmup : 100, seen = 0;
	struct e2e_prod e = { .total = o.count + warmup };
	struct consumer c;
	int64_t deadline, t0;
	pthread_t th;

	if (o.size < 8)
		die("e2e needs --size of at least 8 (the timestamp)");
	e.p.count = e.total;
	producer_setup(&e.p, -1, false);
	consumer_open(&c, true);
	r->partitions = c.partitions;
	r->lat_ns = xcalloc((size_t)o.count + 1, sizeof(int64_t));
	t0 = mono_ns();
	if (pthread_create(&th, NULL, e2e_produce_thread, &e))
		die("pthread_create failed");
	deadline = t0 + (int64_t)o.timeout_s * 1000000000;
	while (seen < e.total && mono_ns() < deadline) {
		/* One at a time: a batch call would hold records back. */
		rd_kafka_message_t *m = rd_kafka_consume_queue(c.q, 100);
		int64_t now = now_ns(CLOCK_REALTIME);

		if (m) {
			int64_t ts;

			if (!m->err && m->len >= sizeof(ts)) {
				memcpy(&ts, m->payload, sizeof(ts));
				if (seen++ >= warmup &&
				    r->n_lat < (size_t)o.count)
					r->lat_ns[r->n_lat++] = now - ts;
				r->bytes += (long long)m->len;
			} else if (m->err &&
				   m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
				if (!r->errors++)
					snprintf(r->note, sizeof(r->note),
						 "first error: %s",
						 rd_kafka_message_errstr(m));
			}
			rd_kafka_message_destroy(m);
		}
	}
	r->secs = (double)(mono_ns() - t0) / 1e9;
	r->msgs = (long long)r->n_lat;
	if (seen < e.total)
		snprintf(r->note, sizeof(r->note),
			 "timed out after %lld of %lld records", seen, e.total);
	pthread_join(th, NULL);
	producer_teardown(&e.p);
	consumer_close(&c);
}

/* --- the floors: fdatasync and loopback --- */

static void run_fsync(struct result *r)
{
	char path[4096];
	long long i, warmup = o.warmup >= 0 ? o.warmup : 10;
	int64_t t0 = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/skald-bench-fsync.%d", o.dir,
		 (int)getpid());
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_APPEND, 0600);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	payload_init();
	r->lat_ns = xcalloc((size_t)o.count + 1, sizeof(int64_t));
	for (i = 0; i < o.count + warmup; i++) {
		int64_t start;

		if (i == warmup)
			t0 = mono_ns();
		start = mono_ns();
		if (write(fd, payload_at(i), (size_t)o.size) != o.size)
			die("write %s: %s", path, strerror(errno));
		if (fdatasync(fd) < 0)
			die("fdatasync %s: %s", path, strerror(errno));
		if (i >= warmup)
			r->lat_ns[r->n_lat++] = mono_ns() - start;
	}
	r->secs = (double)(mono_ns() - t0) / 1e9;
	r->msgs = (long long)r->n_lat;
	r->bytes = r->msgs * o.size;
	close(fd);
	unlink(path);
}

struct pump {
	int fd;
	long long bytes;
};

static void *pump_reader(void *arg)
{
	struct pump *pu = arg;
	size_t cap = 1 << 20;
	char *buf = xcalloc(1, cap);
	ssize_t n;

	while ((n = read(pu->fd, buf, cap)) > 0)
		pu->bytes += n;
	free(buf);
	return NULL;
}

/* TCP over 127.0.0.1, writes of --size bytes, one reader thread. */
static void run_loopback(struct result *r)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sa);
	struct pump pu = { 0 };
	int lfd, cfd, one = 1;
	long long i;
	pthread_t th;
	int64_t t0;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &slen) < 0)
		die("loopback listen: %s", strerror(errno));
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("loopback connect: %s", strerror(errno));
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pu.fd = accept(lfd, NULL, NULL);
	if (pu.fd < 0)
		die("loopback accept: %s", strerror(errno));
	payload_init();
	if (pthread_create(&th, NULL, pump_reader, &pu))
		die("pthread_create failed");
	t0 = mono_ns();
	for (i = 0; i < o.count; i++) {
		const char *p = payload_at(i);
		size_t left = (size_t)o.size;

		while (left) {
			ssize_t n = write(cfd, p, left);

			if (n < 0 && errno != EINTR)
				die("loopback write: %s", strerror(errno));
			if (n > 0) {
				p += n;
				left -= (size_t)n;
			}
		}
	}
	shutdown(cfd, SHUT_WR);
	pthread_join(th, NULL);
	r->secs = (double)(mono_ns() - t0) / 1e9;
	r->msgs = o.count;
	r->bytes = pu.bytes;
	close(cfd);
	close(pu.fd);
	close(lfd);
}

/* --- report --- */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples, in microseconds. */
static double pct_us(const struct result *r, double q)
{
	size_t k;

	if (!r->n_lat)
		return 0;
	k = (size_t)ceil(q * (double)r->n_lat);
	if (k > 0)
		k--;
	if (k >= r->n_lat)
		k = r->n_lat - 1;
	return (double)r->lat_ns[k] / 1e3;
}

static double mean_us(const struct result *r)
{
	double s = 0;
	size_t i;

	for (i = 0; i < r->n_lat; i++)
		s += (double)r->lat_ns[i];
	return r->n_lat ? s / (double)r->n_lat / 1e3 : 0;
}

static void json_str(const char *key, const char *v, bool comma)
{
	const char *p;

	printf("\"%s\":\"", key);
	for (p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			putchar('\\');
		if ((unsigned char)*p >= 0x20)
			putchar(*p);
	}
	printf("\"%s", comma ? "," : "");
}

static void report(struct result *r)
{
	double mps = r->secs > 0 ? (double)r->msgs / r->secs : 0;
	double mbps = r->secs > 0 ? (double)r->bytes / r->secs / 1e6 : 0;

	qsort(r->lat_ns, r->n_lat, sizeof(int64_t), cmp_i64);
	if (o.json) {
		putchar('{');
		json_str("mode", mode_names[o.mode], true);
		json_str("topic", o.topic, true);
		json_str("acks", o.acks, true);
		json_str("compression", o.compression, true);
		printf("\"size\":%d,\"partitions\":%d,\"producers\":%d,",
		       o.size, r->partitions, o.producers);
		printf("\"linger_ms\":%d,\"batch_size\":%d,", o.linger_ms,
		       o.batch_size);
		printf("\"msgs\":%lld,\"bytes\":%lld,\"errors\":%lld,", r->msgs,
		       r->bytes, r->errors);
		printf("\"secs\":%.6f,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,",
		       r->secs, mps, mbps);
		printf("\"lat_us\":{\"n\":%zu,\"min\":%.1f,\"p50\":%.1f,"
		       "\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,"
		       "\"mean\":%.1f},",
		       r->n_lat, pct_us(r, 0), pct_us(r, 0.5), pct_us(r, 0.99),
		       pct_us(r, 0.999), pct_us(r, 1), mean_us(r));
		printf("\"wall_s\":%.3f,\"client_cpu_s\":%.3f,", r->wall_s,
		       r->client_cpu_s);
		printf("\"broker\":{\"pid\":%d,\"cpu_s\":%.3f,"
		       "\"vmhwm_kb\":%ld,\"vmrss_kb\":%ld},",
		       o.broker_pid, r->broker_cpu_s, r->broker_hwm_kb,
		       r->broker_rss_kb);
		json_str("note", r->note, false);
		printf("}\n");
		return;
	}
	printf("%s: %lld records of %d B", mode_names[o.mode], r->msgs, o.size);
	if (o.mode != MODE_FSYNC && o.mode != MODE_LOOPBACK)
		printf(", topic %s, %d partitions, acks=%s", o.topic,
		       r->partitions, o.acks);
	printf("\n  %.3f s: %.0f msgs/s, %.2f MB/s", r->secs, mps, mbps);
	if (r->errors)
		printf(", %lld errors", r->errors);
	printf("\n");
	if (r->n_lat)
		printf("  latency us: min %.1f p50 %.1f p99 %.1f p99.9 %.1f "
		       "max %.1f mean %.1f (%zu samples)\n",
		       pct_us(r, 0), pct_us(r, 0.5), pct_us(r, 0.99),
		       pct_us(r, 0.999), pct_us(r, 1), mean_us(r), r->n_lat);
	printf("  client cpu %.2f s\n", r->client_cpu_s);
	if (o.broker_pid)
		printf("  broker pid %d: cpu %.2f s (%.0f%% of a core), "
		       "peak RSS %.1f MB, RSS %.1f MB\n",
		       o.broker_pid, r->broker_cpu_s,
		       r->wall_s > 0 ? 100 * r->broker_cpu_s / r->wall_s : 0,
		       (double)r->broker_hwm_kb / 1024,
		       (double)r->broker_rss_kb / 1024);
	if (r->note[0])
		printf("  note: %s\n", r->note);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: skald-bench [options]\n"
		"  -m, --mode M            produce|consume|latency|e2e|create|"
		"fsync|loopback\n"
		"  -b, --brokers H:P       bootstrap servers (127.0.0.1:9092)\n"
		"  -t, --topic T           topic (skald-bench)\n"
		"  -n, --count N           records to measure (1000000)\n"
		"  -s, --size S            bytes per record (100)\n"
		"  -p, --partitions P      use the first P partitions (all)\n"
		"  -k, --producers K       producer instances/threads (1)\n"
		"  -a, --acks A            0, 1 or all (1)\n"
		"  -z, --compression C     none|gzip|snappy|lz4|zstd (none)\n"
		"  -l, --linger-ms MS      linger.ms (librdkafka's default; "
		"latency: 0)\n"
		"  -B, --batch-size B      batch.size in bytes\n"
		"  -X KEY=VALUE            any librdkafka property\n"
		"      --create-partitions P  create the topic first\n"
		"      --broker-pid PID    report the broker's CPU and RSS\n"
		"      --rate R            e2e: records per second (unpaced)\n"
		"      --warmup W          latency/e2e/fsync: unmeasured first "
		"records\n"
		"      --timeout SEC       give up after SEC seconds (300)\n"
		"      --dir DIR           fsync: directory of the test file\n"
		"      --json              one JSON object on stdout\n"
		"      --stats FILE        librdkafka statistics (first producer, "
		"or consumer)\n");
}

static long long parse_ll(const char *s, const char *what, long long min)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < min)
		die("bad %s: '%s'", what, s);
	return v;
}

static void parse_args(int argc, char **argv)
{
	enum {
		OPT_CREATE = 1000,
		OPT_PID,
		OPT_RATE,
		OPT_WARMUP,
		OPT_TIMEOUT,
		OPT_DIR,
		OPT_JSON,
		OPT_STATS,
	};
	static const struct option lopts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "brokers", required_argument, NULL, 'b' },
		{ "topic", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' },
		{ "partitions", required_argument, NULL, 'p' },
		{ "producers", required_argument, NULL, 'k' },
		{ "acks", required_argument, NULL, 'a' },
		{ "compression", required_argument, NULL, 'z' },
		{ "linger-ms", required_argument, NULL, 'l' },
		{ "batch-size", required_argument, NULL, 'B' },
		{ "create-partitions", required_argument, NULL, OPT_CREATE },
		{ "broker-pid", required_argument, NULL, OPT_PID },
		{ "rate", required_argument, NULL, OPT_RATE },
		{ "warmup", required_argument, NULL, OPT_WARMUP },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "dir", required_argument, NULL, OPT_DIR },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "stats", required_argument, NULL, OPT_STATS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, i;

	o.xconf = xcalloc((size_t)argc, sizeof(*o.xconf));
	while ((c = getopt_long(argc, argv, "m:b:t:n:s:p:k:a:z:l:B:X:h", lopts,
				NULL)) != -1) {
		switch (c) {
		case 'm':
			for (i = 0; i <= MODE_LOOPBACK; i++)
				if (strcmp(optarg, mode_names[i]) == 0)
					break;
			if (i > MODE_LOOPBACK)
				die("unknown mode '%s'", optarg);
			o.mode = (enum mode)i;
			break;
		case 'b':
			o.brokers = optarg;
			break;
		case 't':
			o.topic = optarg;
			break;
		case 'n':
			o.count = parse_ll(optarg, "--count", 1);
			break;
		case 's':
			o.size = (int)parse_ll(optarg, "--size", 1);
			break;
		case 'p':
			o.partitions = (int)parse_ll(optarg, "--partitions", 1);
			break;
		case 'k':
			o.producers = (int)parse_ll(optarg, "--producers", 1);
			break;
		case 'a':
			if (strcmp(optarg, "0") && strcmp(optarg, "1") &&
			    strcmp(optarg, "all") && strcmp(optarg, "-1"))
				die("--acks: 0, 1 or all");
			o.acks = optarg;
			break;
		case 'z':
			o.compression = optarg;
			break;
		case 'l':
			o.linger_ms = (int)parse_ll(optarg, "--linger-ms", 0);
			break;
		case 'B':
			o.batch_size = (int)parse_ll(optarg, "--batch-size", 1);
			break;
		case 'X':
			o.xconf[o.n_xconf++] = optarg;
			break;
		case OPT_CREATE:
			o.create_partitions =
				(int)parse_ll(optarg, "--create-partitions", 1);
			break;
		case OPT_PID:
			o.broker_pid = (int)parse_ll(optarg, "--broker-pid", 1);
			break;
		case OPT_RATE:
			o.rate = strtod(optarg, NULL);
			break;
		case OPT_WARMUP:
			o.warmup = parse_ll(optarg, "--warmup", 0);
			break;
		case OPT_TIMEOUT:
			o.timeout_s = (int)parse_ll(optarg, "--timeout", 1);
			break;
		case OPT_DIR:
			o.dir = optarg;
			break;
		case OPT_JSON:
			o.json = true;
			break;
		case OPT_STATS:
			o.stats_file = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s'", argv[optind]);
	if (o.mode == MODE_CREATE && !o.create_partitions)
		die("create mode needs --create-partitions P");
}

int main(int argc, char **argv)
{
	struct result r = { .broker_cpu_s = -1,
			    .broker_hwm_kb = -1,
			    .broker_rss_kb = -1 };
	double cpu0, bcpu0 = -1;
	int64_t t0;

	parse_args(argc, argv);
	if (o.mode == MODE_FSYNC || o.mode == MODE_LOOPBACK) {
		o.partitions = 0;
		o.producers = 1;
	} else {
		payload_init();
		if (o.create_partitions)
			create_topic(o.create_partitions);
		if (o.mode == MODE_CREATE) {
			r.partitions = o.create_partitions;
			report(&r);
			return 0;
		}
	}
	cpu0 = cpu_self_s();
	t0 = mono_ns();
	if (o.broker_pid)
		bcpu0 = proc_cpu_s(o.broker_pid);

	switch (o.mode) {
	case MODE_PRODUCE:
		run_produce(&r);
		break;
	case MODE_CONSUME:
		run_consume(&r);
		break;
	case MODE_LATENCY:
		run_latency(&r);
		break;
	case MODE_E2E:
		run_e2e(&r);
		break;
	case MODE_FSYNC:
		run_fsync(&r);
		break;
	case MODE_LOOPBACK:
		run_loopback(&r);
		break;
	case MODE_CREATE:
		break;
	}

	r.client_cpu_s = cpu_self_s() - cpu0;
	r.wall_s = (double)(mono_ns() - t0) / 1e9;
	if (o.broker_pid) {
		double bcpu1 = proc_cpu_s(o.broker_pid);

		r.broker_cpu_s = bcpu0 >= 0 && bcpu1 >= 0 ? bcpu1 - bcpu0 : -1;
		r.broker_hwm_kb = proc_status_kb(o.broker_pid, "VmHWM");
		r.broker_rss_kb = proc_status_kb(o.broker_pid, "VmRSS");
	}
	report(&r);
	free(r.lat_ns);
	return r.errors || r.msgs < (o.mode == MODE_CREATE ? 0 : o.count) ? 1
									  : 0;
}
