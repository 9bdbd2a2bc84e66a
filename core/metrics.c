/*
 * The metrics registry (see metrics.h).
 *
 * Families and their series are lists under one mutex, taken only to
 * register and to render; values are doubles stored as their bit
 * patterns in atomics, updated with compare-and-swap so that any thread
 * can count without a lock.
 */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SK_METRIC_MAX_BOUNDS 64

/* A double in an atomic, as its bits. */
struct sk_adouble {
	_Atomic uint64_t bits;
};

struct sk_metric {
	struct sk_metric *next; /* in its family, registration order */
	struct sk_metric_family *fam;
	char **labels; /* n_labels name/value pairs, owned */
	size_t n_labels;
	struct sk_adouble value;   /* counter, gauge; histogram: sum */
	_Atomic uint64_t count;	   /* histogram: observations */
	_Atomic uint64_t *buckets; /* histogram: per bound, not cumulative */
};

struct sk_metric_family {
	struct sk_metric_family *next;
	enum sk_metric_type type;
	char *name;
	char *help;
	double *bounds; /* histogram */
	size_t n_bounds;
	struct sk_metric *series, **tail;
};

struct sk_metrics {
	pthread_mutex_t mu;
	struct sk_metric_family *families, **tail;
};

static double adouble_load(const struct sk_adouble *a)
{
	uint64_t b = atomic_load_explicit(&((struct sk_adouble *)a)->bits,
					  memory_order_relaxed);
	double d;

	memcpy(&d, &b, sizeof(d));
	return d;
}

static void adouble_store(struct sk_adouble *a, double d)
{
	uint64_t b;

	memcpy(&b, &d, sizeof(b));
	atomic_store_explicit(&a->bits, b, memory_order_relaxed);
}

static void adouble_add(struct sk_adouble *a, double v)
{
	uint64_t old = atomic_load_explicit(&a->bits, memory_order_relaxed);
	uint64_t new;
	double d;

	do {
		memcpy(&d, &old, sizeof(d));
		d += v;
		memcpy(&new, &d, sizeof(new));
	} while (!atomic_compare_exchange_weak_explicit(&a->bits, &old, new,
							memory_order_relaxed,
							memory_order_relaxed));
}

struct sk_metrics *sk_metrics_new(void)
{
	struct sk_metrics *r = sk_xcalloc(1, sizeof(*r));

	pthread_mutex_init(&r->mu, NULL);
	r->tail = &r->families;
	return r;
}

static void metric_free(struct sk_metric *m)
{
	for (size_t i = 0; i < 2 * m->n_labels; i++)
		free(m->labels[i]);
	free(m->labels);
	free(m->buckets);
	free(m);
}

void sk_metrics_free(struct sk_metrics *r)
{
	if (!r)
		return;
	while (r->families) {
		struct sk_metric_family *f = r->families;

		r->families = f->next;
		while (f->series) {
			struct sk_metric *m = f->series;

			f->series = m->next;
			metric_free(m);
		}
		free(f->name);
		free(f->help);
		free(f->bounds);
		free(f);
	}
	pthread_mutex_destroy(&r->mu);
	free(r);
}

static bool name_char(char c, bool first, bool colon)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
		return true;
	if (colon && c == ':')
		return true;
	return !first && c >= '0' && c <= '9';
}

bool sk_metric_name_valid(const char *name)
{
	if (!name || !*name || strlen(name) > 200)
		return false;
	for (const char *p = name; *p; p++)
		if (!name_char(*p, p == name, true))
			return false;
	return true;
}

bool sk_metric_label_valid(const char *name)
{
	if (!name || !*name || strlen(name) > 100 ||
	    strncmp(name, "__", 2) == 0)
		return false;
	for (const char *p = name; *p; p++)
		if (!name_char(*p, p == name, false))
			return false;
	return true;
}

static const char *const type_names[] = { "counter", "gauge", "histogram" };

static struct sk_metric_family *family_find(struct sk_metrics *r,
					    const char *name)
{
	for (struct sk_metric_family *f = r->families; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static bool labels_equal(const struct sk_metric *m, const char *const *labels,
			 size_t n)
{
	if (m->n_labels != n)
		return false;
	for (size_t i = 0; i < 2 * n; i++)
		if (strcmp(m->labels[i], labels[i]) != 0)
			return false;
	return true;
}

/* Check a family's definition against an existing one, or a new one's. */
static int family_check(const struct sk_metric_family *f,
			enum sk_metric_type type, const char *name,
			const char *help, const double *bounds, size_t n_bounds,
			struct sk_err *err)
{
	if (f->type != type)
		return sk_err_set(err, "metric %s is a %s, not a %s", name,
				  type_names[f->type], type_names[type]);
	if (strcmp(f->help, help) != 0)
		return sk_err_set(err,
				  "metric %s was registered with another "
				  "help text",
				  name);
	if (type == SK_METRIC_HISTOGRAM &&
	    (f->n_bounds != n_bounds ||
	     memcmp(f->bounds, bounds, n_bounds * sizeof(*bounds)) != 0))
		return sk_err_set(err,
				  "histogram %s was registered with "
				  "other buckets",
				  name);
	return 0;
}

static int args_check(enum sk_metric_type type, const char *name,
		      const char *help, const char *const *labels,
		      size_t n_labels, const double *bounds, size_t n_bounds,
		      struct sk_err *err)
{
	if (!sk_metric_name_valid(name))
		return sk_err_set(err,
				  "metric name '%.100s' must match "
				  "[a-zA-Z_:][a-zA-Z0-9_:]*",
				  name ? name : "(null)");
	if (!help || strchr(help, '\n'))
		return sk_err_set(err, "metric %s: help must be one line",
				  name);
	if (n_labels > 16)
		return sk_err_set(err, "metric %s: more than 16 labels", name);
	for (size_t i = 0; i < n_labels; i++) {
		if (!sk_metric_label_valid(labels[2 * i]))
			return sk_err_set(
				err,
				"metric %s: label name '%.100s' "
				"must match [a-zA-Z_][a-zA-Z0-9_]* "
				"and not start with __",
				name, labels[2 * i] ? labels[2 * i] : "(null)");
		if (!labels[2 * i + 1])
			return sk_err_set(err,
					  "metric %s: label %s has no "
					  "value",
					  name, labels[2 * i]);
		for (size_t j = 0; j < i; j++)
			if (strcmp(labels[2 * j], labels[2 * i]) == 0)
				return sk_err_set(err,
						  "metric %s: label %s "
						  "given twice",
						  name, labels[2 * i]);
	}
	if (type != SK_METRIC_HISTOGRAM)
		return 0;
	if (n_bounds == 0 || n_bounds > SK_METRIC_MAX_BOUNDS || !bounds)
		return sk_err_set(err,
				  "histogram %s: expected 1 to %d bucket "
				  "bounds, got %zu",
				  name, SK_METRIC_MAX_BOUNDS, n_bounds);
	for (size_t i = 0; i < n_bounds; i++)
		if (!isfinite(bounds[i]) || (i && bounds[i] <= bounds[i - 1]))
			return sk_err_set(err,
					  "histogram %s: bucket bounds "
					  "must be finite and increasing",
					  name);
	return 0;
}

struct sk_metric *sk_metrics_get(struct sk_metrics *r, enum sk_metric_type type,
				 const char *name, const char *help,
				 const char *const *labels, size_t n_labels,
				 const double *bounds, size_t n_bounds,
				 struct sk_err *err)
{
	struct sk_metric_family *f;
	struct sk_metric *m = NULL;

	if (args_check(type, name, help, labels, n_labels, bounds, n_bounds,
		       err))
		return NULL;
	pthread_mutex_lock(&r->mu);
	f = family_find(r, name);
	if (f) {
		if (family_check(f, type, name, help, bounds, n_bounds, err))
			goto out;
		for (m = f->series; m; m = m->next)
			if (labels_equal(m, labels, n_labels))
				goto out;
	} else {
		f = sk_xcalloc(1, sizeof(*f));
		f->type = type;
		f->name = sk_xstrdup(name);
		f->help = sk_xstrdup(help);
		if (type == SK_METRIC_HISTOGRAM) {
			f->bounds = sk_xcalloc(n_bounds, sizeof(*bounds));
			memcpy(f->bounds, bounds, n_bounds * sizeof(*bounds));
			f->n_bounds = n_bounds;
		}
		f->tail = &f->series;
		*r->tail = f;
		r->tail = &f->next;
	}
	m = sk_xcalloc(1, sizeof(*m));
	m->fam = f;
	m->n_labels = n_labels;
	m->labels = sk_xcalloc(2 * n_labels + 1, sizeof(*m->labels));
	for (size_t i = 0; i < 2 * n_labels; i++)
		m->labels[i] = sk_xstrdup(labels[i]);
	if (type == SK_METRIC_HISTOGRAM)
		m->buckets = sk_xcalloc(f->n_bounds, sizeof(*m->buckets));
	*f->tail = m;
	f->tail = &m->next;
out:
	pthread_mutex_unlock(&r->mu);
	return m;
}

void sk_metric_add(struct sk_metric *m, double v)
{
	if (!m || isnan(v))
		return;
	if (m->fam->type == SK_METRIC_COUNTER && v < 0)
		return;
	if (m->fam->type != SK_METRIC_HISTOGRAM)
		adouble_add(&m->value, v);
}

void sk_metric_set(struct sk_metric *m, double v)
{
	if (m && m->fam->type == SK_METRIC_GAUGE)
		adouble_store(&m->value, v);
}

void sk_metric_observe(struct sk_metric *m, double v)
{
	const struct sk_metric_family *f;

	if (!m || m->fam->type != SK_METRIC_HISTOGRAM || isnan(v))
		return;
	f = m->fam;
	for (size_t i = 0; i < f->n_bounds; i++) {
		if (v <= f->bounds[i]) {
			atomic_fetch_add_explicit(&m->buckets[i], 1,
						  memory_order_relaxed);
			break;
		}
	}
	adouble_add(&m->value, v);
	atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
}

double sk_metric_value(const struct sk_metric *m)
{
	if (m->fam->type == SK_METRIC_HISTOGRAM)
		return (double)atomic_load_explicit(
			&((struct sk_metric *)m)->count, memory_order_relaxed);
	return adouble_load(&m->value);
}

/* ------------------------------------------------------------------ */
/* Text format */

static void put_str(struct sk_buf *out, const char *s)
{
	sk_buf_put(out, s, strlen(s));
}

static void put_fmt(struct sk_buf *out, const char *fmt, ...) SK_PRINTF(2, 3);

static void put_fmt(struct sk_buf *out, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	sk_buf_put(out, tmp, (size_t)SK_MIN(n, (int)sizeof(tmp) - 1));
}

/* The shortest of %.15g..%.17g that reads back as v ("0.1", not 0.1000...1). */
static void fmt_double(double v, char *buf, size_t cap)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, cap, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

/* A value as Prometheus writes it: +Inf, -Inf, NaN, or a number. */
static void put_value(struct sk_buf *out, double v)
{
	char num[40];

	if (isnan(v)) {
		put_str(out, "NaN");
	} else if (isinf(v)) {
		put_str(out, v > 0 ? "+Inf" : "-Inf");
	} else {
		fmt_double(v, num, sizeof(num));
		put_str(out, num);
	}
}

/* A label value with \\, \" and \n escaped. */
static void put_label_value(struct sk_buf *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			put_str(out, "\\\\");
		else if (*s == '"')
			put_str(out, "\\\"");
		else if (*s == '\n')
			put_str(out, "\\n");
		else
			sk_buf_put(out, s, 1);
	}
}

/* {a="x",b="y"} plus an optional le label; nothing when there are none. */
static void put_labels(struct sk_buf *out, const struct sk_metric *m,
		       const char *le)
{
	if (!m->n_labels && !le)
		return;
	put_str(out, "{");
	for (size_t i = 0; i < m->n_labels; i++) {
		if (i)
			put_str(out, ",");
		put_str(out, m->labels[2 * i]);
		put_str(out, "=\"");
		put_label_value(out, m->labels[2 * i + 1]);
		put_str(out, "\"");
	}
	if (le) {
		if (m->n_labels)
			put_str(out, ",");
		put_str(out, "le=\"");
		put_str(out, le);
		put_str(out, "\"");
	}
	put_str(out, "}");
}

static void render_histogram(struct sk_buf *out, struct sk_metric *m)
{
	const struct sk_metric_family *f = m->fam;
	uint64_t cum = 0;
	char le[40];

	for (size_t i = 0; i < f->n_bounds; i++) {
		cum += atomic_load_explicit(&m->buckets[i],
					    memory_order_relaxed);
		fmt_double(f->bounds[i], le, sizeof(le));
		put_str(out, f->name);
		put_str(out, "_bucket");
		put_labels(out, m, le);
		put_fmt(out, " %llu\n", (unsigned long long)cum);
	}
	put_str(out, f->name);
	put_str(out, "_bucket");
	put_labels(out, m, "+Inf");
	put_fmt(out, " %llu\n",
		(unsigned long long)atomic_load_explicit(&m->count,
							 memory_order_relaxed));
	put_str(out, f->name);
	put_str(out, "_sum");
	put_labels(out, m, NULL);
	put_str(out, " ");
	put_value(out, adouble_load(&m->value));
	put_str(out, "\n");
	put_str(out, f->name);
	put_str(out, "_count");
	put_labels(out, m, NULL);
	put_fmt(out, " %llu\n",
		(unsigned long long)atomic_load_explicit(&m->count,
							 memory_order_relaxed));
}

void sk_metrics_render(struct sk_metrics *r, struct sk_buf *out)
{
	pthread_mutex_lock(&r->mu);
	for (struct sk_metric_family *f = r->families; f; f = f->next) {
		put_str(out, "# HELP ");
		put_str(out, f->name);
		put_str(out, " ");
		for (const char *p = f->help; *p; p++) {
			if (*p == '\\')
				put_str(out, "\\\\");
			else
				sk_buf_put(out, p, 1);
		}
		put_str(out, "\n# TYPE ");
		put_str(out, f->name);
		put_str(out, " ");
		put_str(out, type_names[f->type]);
		put_str(out, "\n");
		for (struct sk_metric *m = f->series; m; m = m->next) {
			if (f->type == SK_METRIC_HISTOGRAM) {
				render_histogram(out, m);
				continue;
			}
			put_str(out, f->name);
			put_labels(out, m, NULL);
			put_str(out, " ");
			put_value(out, adouble_load(&m->value));
			put_str(out, "\n");
		}
	}
	pthread_mutex_unlock(&r->mu);
}
