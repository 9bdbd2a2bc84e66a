/*
 * The metrics registry (core/metrics.c): registration rules, updates from
 * several threads, and the Prometheus text format.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "tap.h"

static char *render(struct sk_metrics *r)
{
	struct sk_buf out = { 0 };
	char *s;

	sk_metrics_render(r, &out);
	s = sk_xstrndup((const char *)out.data, out.len);
	sk_buf_free(&out);
	return s;
}

static void *adder(void *arg)
{
	for (int i = 0; i < 100000; i++)
		sk_metric_add(arg, 1);
	return NULL;
}

int main(void)
{
	struct sk_metrics *r = sk_metrics_new();
	const char *l1[] = { "topic", "a\"b\\c\nd" };
	const char *l2[] = { "topic", "x" };
	const char *dup[] = { "a", "1", "a", "2" };
	const double b[] = { 1, 2.5 };
	struct sk_metric *c, *g, *h;
	struct sk_err err;
	pthread_t th[4];
	char *s;

	plan(20);
	c = sk_metrics_get(r, SK_METRIC_COUNTER, "skald_x_total", "Xs \\ ok",
			   l1, 1, NULL, 0, &err);
	ok(c != NULL, "counter registered");
	ok(sk_metrics_get(r, SK_METRIC_COUNTER, "skald_x_total", "Xs \\ ok", l1,
			  1, NULL, 0, &err) == c,
	   "same name and labels: same series");
	ok(sk_metrics_get(r, SK_METRIC_COUNTER, "skald_x_total", "Xs \\ ok", l2,
			  1, NULL, 0, &err) != c,
	   "other labels: another series");
	ok(!sk_metrics_get(r, SK_METRIC_GAUGE, "skald_x_total", "Xs \\ ok",
			   NULL, 0, NULL, 0, &err),
	   "another type: refused");
	is_str(err.msg, "metric skald_x_total is a counter, not a gauge",
	       "... with a message");
	ok(!sk_metrics_get(r, SK_METRIC_COUNTER, "skald_x_total", "Other", NULL,
			   0, NULL, 0, &err),
	   "another help: refused");
	ok(!sk_metrics_get(r, SK_METRIC_COUNTER, "9x", "h", NULL, 0, NULL, 0,
			   &err),
	   "a bad name: refused");
	ok(!sk_metrics_get(r, SK_METRIC_COUNTER, "y", "h", dup, 2, NULL, 0,
			   &err),
	   "a label twice: refused");
	ok(!sk_metrics_get(r, SK_METRIC_COUNTER, "y", "h",
			   (const char *[]){ "__x", "1" }, 1, NULL, 0, &err),
	   "a reserved label name: refused");
	ok(!sk_metrics_get(r, SK_METRIC_HISTOGRAM, "z", "h", NULL, 0,
			   (const double[]){ 2, 1 }, 2, &err),
	   "decreasing buckets: refused");
	g = sk_metrics_get(r, SK_METRIC_GAUGE, "skald_g", "G", NULL, 0, NULL, 0,
			   &err);
	h = sk_metrics_get(r, SK_METRIC_HISTOGRAM, "skald_h_seconds", "H", NULL,
			   0, b, 2, &err);
	ok(g && h, "gauge and histogram registered");

	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, adder, c);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	is(sk_metric_value(c), 400000, "400000 adds from 4 threads, none lost");
	sk_metric_add(c, -5);
	is(sk_metric_value(c), 400000, "a counter does not go down");
	sk_metric_set(g, 7.5);
	sk_metric_add(g, -10);
	ok(sk_metric_value(g) == -2.5, "gauge set and add");
	sk_metric_observe(h, 0.5);
	sk_metric_observe(h, 2);
	sk_metric_observe(h, 100);
	is(sk_metric_value(h), 3, "histogram count");

	s = render(r);
	ok(strstr(s, "# HELP skald_x_total Xs \\\\ ok\n"
		     "# TYPE skald_x_total counter\n") != NULL,
	   "HELP (backslash escaped) and TYPE");
	ok(strstr(s, "skald_x_total{topic=\"a\\\"b\\\\c\\nd\"} 400000\n") !=
		   NULL,
	   "label values escaped");
	ok(strstr(s, "skald_g -2.5\n") != NULL, "a series without labels");
	ok(strstr(s, "skald_h_seconds_bucket{le=\"1\"} 1\n"
		     "skald_h_seconds_bucket{le=\"2.5\"} 2\n"
		     "skald_h_seconds_bucket{le=\"+Inf\"} 3\n"
		     "skald_h_seconds_sum 102.5\n"
		     "skald_h_seconds_count 3\n") != NULL,
	   "histogram: cumulative buckets, sum, count");
	if (!ok(strstr(s, "skald_x_total{topic=\"x\"} 0\n") != NULL,
		"an untouched series shows 0"))
		diag("%s", s);
	free(s);
	sk_metrics_free(r);
	return check_status();
}
