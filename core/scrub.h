/*
 * The scrubber: a background walk over every closed segment of every
 * partition that reads each batch back and checks its framing and
 * CRC-32C, so that bit rot in data nobody reads lately (and that
 * recovery, trusting a closed segment whose index checks out, skips) is
 * found, logged with file, position and offset, counted in
 * skald_log_scrub_damaged_total, and the partition marked damaged: it is
 * then never served past the bad batch (KAFKA_STORAGE_ERROR) rather than
 * silently.
 *
 * The reading runs on a thread of its own, one chunk at a time, paced to
 * log.scrub.bytes.per.sec between chunks; a pass starts every
 * log.scrub.interval.ms (the first one soon after startup, so a closed
 * segment is verified once lazily after each start). Either set to 0
 * turns it off.
 */
#ifndef SK_SCRUB_H
#define SK_SCRUB_H

#include <stdint.h>

struct sk_broker;
struct sk_scrub;

/* Start the scrubber of b (NULL when it is turned off). */
struct sk_scrub *sk_scrub_new(struct sk_broker *b);
/*
 * Stop: the chunk being read is finished, nothing new starts. Before the
 * topics are closed. Safe with NULL.
 */
void sk_scrub_free(struct sk_scrub *s);

#endif
