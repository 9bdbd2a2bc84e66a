/*
 * Time and size retention, run on the event loop by a timer of the
 * broker every log.retention.check.interval.ms: each partition of a topic
 * whose cleanup.policy includes delete loses the closed segments that its
 * retention.ms and retention.bytes no longer keep (see
 * sk_partition_retention for the rules). What is deleted is logged.
 */
#ifndef SK_RETENTION_H
#define SK_RETENTION_H

#include <stdint.h>

struct sk_broker;

/* Start the broker's retention timer (b->retention_timer). */
void sk_retention_start(struct sk_broker *b);
/* Stop it; safe when it never started. */
void sk_retention_stop(struct sk_broker *b);
/*
 * One pass over every topic, as if at wall-clock time now_ms. Returns the
 * number of segments deleted. A pass with nothing to delete reads no file
 * and allocates nothing.
 */
int64_t sk_retention_run(struct sk_broker *b, int64_t now_ms);

#endif
