/*
 * The clean stop's disk work: closing every partition (sk_partition_close:
 * sync what is unsynced, write index files and the clean recovery
 * checkpoint) is file-system latency, not CPU, so it runs on several
 * threads at once rather than one partition after another on the loop
 * thread. Partitions are independent; each is closed by one thread.
 */
#ifndef SK_SHUTDOWN_H
#define SK_SHUTDOWN_H

#include <stddef.h>
#include <stdint.h>

struct sk_partition;

/* For the broker's stop: file-system waits overlap well past 2 cores. */
#define SK_STOP_CLOSE_THREADS 16
/* Past this, the rest are released unsaved (see below). */
#define SK_STOP_CLOSE_BUDGET_MS 10000

/*
 * Close the n partitions (NULL entries are skipped) on up to threads
 * threads, and free them. Bounded: a partition not yet started when
 * budget_ms have passed is released without saving (its fds closed,
 * nothing written), which only costs the next start a scan of what its
 * last recovery checkpoint does not cover. Returns how many were
 * released that way. Call with nothing else using the partitions.
 */
size_t sk_partitions_close_all(struct sk_partition **parts, size_t n,
			       int threads, int64_t budget_ms);

#endif
