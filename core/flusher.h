/*
 * Group commit for acks=all: partitions with appends that someone waits
 * to see durable are synced by one flusher thread, and every waiter whose
 * data the sync covered is completed together. While one sync runs, new
 * appends and waiters gather for the next, so many producers share each
 * fdatasync and the event loop never calls it.
 *
 * The same thread also honours Kafka's flush.messages and flush.ms for
 * data nobody waits for (acks=0 and 1): a partition that has taken that
 * many records, or held unsynced records that long, is synced by the next
 * round. Both default to never, as in Kafka.
 *
 * And every log.flush.offset.checkpoint.interval.ms a checkpoint round
 * syncs every partition holding unsynced data and writes its recovery
 * checkpoint (sk_partition_checkpoint_begin), which bounds what recovery
 * after a crash has to scan.
 */
#ifndef SK_FLUSHER_H
#define SK_FLUSHER_H

#include <ev.h>
#include <stdint.h>

#include "list.h"
#include "pool.h"

struct sk_broker;
struct sk_tpart;
struct sk_flush_wait;

/* Loop thread: rc is 0, or a negative errno if the sync failed. */
typedef void (*sk_flush_done_fn)(struct sk_flush_wait *w, int rc);

/* A waiter, embedded in the waiting operation. */
struct sk_flush_wait {
	struct sk_list link;
	uint64_t need; /* completes when this flush round is done */
	sk_flush_done_fn done;
};

struct sk_flusher {
	struct sk_broker *b;
	struct sk_pool *pool; /* one thread: rounds run in order */
	/* one thread: file removals, index files of rolled segments */
	struct sk_pool *bg;
	struct sk_list dirty;	/* struct sk_tpart, via flush_link */
	struct sk_list waiters; /* struct sk_flush_wait */
	/* struct sk_tpart with records for flush.messages/flush.ms */
	struct sk_list lazy;   /* via lazy_link */
	ev_timer lazy_timer;   /* the earliest flush.ms deadline */
	int64_t lazy_deadline; /* its time (sk_mono_ms), if active */
	ev_timer ckpt_timer;   /* recovery checkpoint rounds */
	uint64_t started;      /* rounds started */
	uint64_t syncs;	       /* partition syncs completed */
	uint64_t checkpoints;  /* checkpoint rounds completed */
	bool running;	       /* a round is in the pool */
	bool ckpt_due;	       /* the next round is a checkpoint round */
};

void sk_flusher_init(struct sk_flusher *f, struct sk_broker *b);
/* Finish the round in flight and every waiter, stop the thread. */
void sk_flusher_fini(struct sk_flusher *f);
/* The partition has appends that the next round must sync. */
void sk_flusher_mark(struct sk_flusher *f, struct sk_tpart *tp);
/*
 * records were appended to tp (any acks): count them toward the topic's
 * flush.messages and start its flush.ms clock; a partition due is synced
 * by a round started now or after the one in flight.
 */
void sk_flusher_appended(struct sk_flusher *f, struct sk_tpart *tp,
			 int64_t records);
/* Start a checkpoint round now, or after the one in flight. */
void sk_flusher_checkpoint(struct sk_flusher *f);
/* Forget a partition about to be closed (topic deletion). */
void sk_flusher_forget(struct sk_flusher *f, struct sk_tpart *tp);
/* Call w->done once everything marked so far is durable. */
void sk_flusher_wait(struct sk_flusher *f, struct sk_flush_wait *w,
		     sk_flush_done_fn done);
/* Withdraw a waiter (its operation was cancelled). */
void sk_flusher_cancel(struct sk_flush_wait *w);

/*
 * Disk work that must not run on the loop thread but that nobody waits
 * for, on a second thread of its own (a slow removal never delays a
 * sync round): remove the tree at path (owned, freed after), logging a
 * failure. sk_flusher_fini finishes whatever is queued.
 */
void sk_flusher_rmtree(struct sk_flusher *f, char *path);
/*
 * Run job on that thread, its done() back on the loop thread: the
 * partitions' sk_log_offload_fn (log.h), with the flusher as arg.
 */
void sk_flusher_offload(void *flusher, struct sk_job *job);

#endif
