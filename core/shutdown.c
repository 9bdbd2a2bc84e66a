#include "shutdown.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "say.h"
#include "util.h"

/* Below this many partitions, threads cost more than they save. */
#define SK_CLOSE_INLINE_MAX 8

struct close_all {
	struct sk_partition **parts;
	size_t n;
	atomic_size_t next;    /* the next partition to take */
	atomic_size_t skipped; /* released unsaved: budget spent */
	int64_t deadline;      /* sk_mono_ms */
};

static void *close_worker(void *arg)
{
	struct close_all *c = arg;

	for (;;) {
		size_t i = atomic_fetch_add(&c->next, 1);

		if (i >= c->n)
			break;
		if (!c->parts[i])
			continue;
		if (sk_mono_ms() >= c->deadline) {
			sk_partition_abandon(c->parts[i]);
			atomic_fetch_add(&c->skipped, 1);
		} else {
			sk_partition_close(c->parts[i]);
		}
		c->parts[i] = NULL;
	}
	return NULL;
}

size_t sk_partitions_close_all(struct sk_partition **parts, size_t n,
			       int threads, int64_t budget_ms)
{
	struct close_all c = { .parts = parts, .n = n };
	pthread_t *tids;
	int started = 0;

	atomic_init(&c.next, 0);
	atomic_init(&c.skipped, 0);
	c.deadline = sk_mono_ms() + budget_ms;
	if (n <= SK_CLOSE_INLINE_MAX)
		threads = 0;
	if ((size_t)threads > n)
		threads = (int)n;
	tids = sk_xcalloc(threads > 0 ? (size_t)threads : 1, sizeof(*tids));
	for (int i = 0; i < threads; i++) {
		int rc = pthread_create(&tids[started], NULL, close_worker, &c);

		if (rc) {
			sk_warn("shutdown: cannot start a closing thread: %s",
				strerror(rc));
			break;
		}
		started++;
	}
	/* This thread takes its share too (all of it, with no threads). */
	close_worker(&c);
	for (int i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	free(tids);
	return atomic_load(&c.skipped);
}
