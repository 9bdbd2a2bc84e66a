/*
 * skald-mock: librdkafka's in-memory mock cluster as a standalone broker,
 * the peer Skald is measured against (bench/run.py).
 *
 * The mock is a C Kafka broker that does no disk I/O and no validation,
 * so it is both an upper bound for a broker on this machine and the point
 * where the client saturates. It listens on 127.0.0.1 on ports of its
 * choosing; the first line on stdout is the bootstrap address. It runs
 * until SIGTERM or SIGINT.
 *
 *   skald-mock [--brokers N] [--topic NAME:PARTITIONS]...
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static void die(const char *msg, const char *detail)
{
	fprintf(stderr, "skald-mock: %s%s%s\n", msg, detail ? ": " : "",
		detail ? detail : "");
	exit(1);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: skald-mock [--brokers N] [--topic NAME:PARTITIONS]...\n"
		"Prints the bootstrap address, then serves until SIGTERM.\n");
}

/* NAME:PARTITIONS, created with replication factor 1. */
static void create_topic(rd_kafka_mock_cluster_t *mc, const char *spec)
{
	const char *colon = strrchr(spec, ':');
	char *name, *end;
	long parts = 1;
	rd_kafka_resp_err_t err;

	if (colon) {
		parts = strtol(colon + 1, &end, 10);
		if (*end || parts < 1 || parts > 100000)
			die("bad partition count in --topic", spec);
		name = strndup(spec, (size_t)(colon - spec));
	} else {
		name = strdup(spec);
	}
	err = rd_kafka_mock_topic_create(mc, name, (int)parts, 1);
	if (err)
		die("cannot create topic", rd_kafka_err2str(err));
	free(name);
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "brokers", required_argument, NULL, 'b' },
		{ "topic", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char **topics = calloc((size_t)argc + 1, sizeof(*topics));
	int n_topics = 0, n_brokers = 1, c, sig, i;
	rd_kafka_mock_cluster_t *mc;
	rd_kafka_conf_t *conf;
	char errstr[512];
	rd_kafka_t *rk;
	sigset_t set;

	while ((c = getopt_long(argc, argv, "b:t:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			n_brokers = atoi(optarg);
			if (n_brokers < 1)
				die("bad --brokers", optarg);
			break;
		case 't':
			topics[n_topics++] = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}

	/*
	 * Block the signals before librdkafka starts its threads, which
	 * inherit the mask, so that sigwait() below is the one to get them.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	/* The handle only hosts the cluster; it never talks to it. */
	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) !=
	    RD_KAFKA_CONF_OK)
		die("config", errstr);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk)
		die("rd_kafka_new", errstr);
	mc = rd_kafka_mock_cluster_new(rk, n_brokers);
	if (!mc)
		die("cannot create the mock cluster", NULL);
	for (i = 0; i < n_topics; i++)
		create_topic(mc, topics[i]);

	printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);

	sigwait(&set, &sig);
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	free(topics);
	return 0;
}
