/*
 * The metrics registry: counters, gauges and histograms with labels, kept
 * for the /metrics endpoint to publish in Prometheus' text format.
 *
 * Registration takes a mutex and may happen on any thread (plugins
 * register from init or later); updates are lock-free atomics, so any
 * thread may count. A series lives as long as the registry, which the
 * broker owns: handles never dangle, even after a plugin is unloaded.
 */
#ifndef SK_METRICS_H
#define SK_METRICS_H

#include "buf.h"
#include "util.h"

enum sk_metric_type {
	SK_METRIC_COUNTER,
	SK_METRIC_GAUGE,
	SK_METRIC_HISTOGRAM,
};

struct sk_metrics;
struct sk_metric;

struct sk_metrics *sk_metrics_new(void);
/* Free the registry and every series. Safe with NULL. */
void sk_metrics_free(struct sk_metrics *r);

/*
 * The series of family name with the given labels (n_labels name/value
 * pairs: labels[2i] is a name, labels[2i + 1] its value), created on
 * first use. A family has one type and help text: registering it again
 * with another gives -EINVAL and NULL, as does an invalid metric or label
 * name. bounds: a histogram's increasing bucket bounds (n_bounds <= 64),
 * which must match the family's. err says what is wrong.
 */
struct sk_metric *sk_metrics_get(struct sk_metrics *r, enum sk_metric_type type,
				 const char *name, const char *help,
				 const char *const *labels, size_t n_labels,
				 const double *bounds, size_t n_bounds,
				 struct sk_err *err);

/* Counter: add v >= 0 (negative or NaN ignored). Gauge: add v. */
void sk_metric_add(struct sk_metric *m, double v);
/* Gauge: set. */
void sk_metric_set(struct sk_metric *m, double v);
/* Histogram: count v in its bucket, sum and count. */
void sk_metric_observe(struct sk_metric *m, double v);
/* Counter or gauge value; a histogram's count (tests). */
double sk_metric_value(const struct sk_metric *m);

/* Append the whole registry in Prometheus text format 0.0.4. */
void sk_metrics_render(struct sk_metrics *r, struct sk_buf *out);

/* [a-zA-Z_:][a-zA-Z0-9_:]* */
bool sk_metric_name_valid(const char *name);
/* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" */
bool sk_metric_label_valid(const char *name);

#endif
