/*
 * Tiered storage (Kafka's KIP-405 idea) on top of the partition log and a
 * storage tier registered by a plugin (plugin_tier.h).
 *
 * For topics with remote.storage.enable, every remote.log.manager.task.
 * interval.ms the closed segments of each partition are copied to the
 * tier, oldest first, one at a time per partition: the segment's CRC-32C
 * and its index files' are computed on a worker thread, the tier's upload
 * runs off the loop, and on success the segment is added to the
 * partition's remote manifest (<partition dir>/remote.manifest, written
 * to a .tmp, fdatasync'd, renamed, directory fsync'd, on a worker). Only
 * once the manifest naming a segment is durable may its local copy go,
 * when local.retention.ms / local.retention.bytes say so. retention.ms and
 * retention.bytes then apply to the whole log, local and remote: the
 * oldest segments are deleted from the tier as well.
 *
 * Reads below the local start offset (Fetch, ListOffsets) find the remote
 * segment in the manifest; a segment is downloaded whole into a bounded
 * cache (log.dir/remote-cache, remote.log.cache.bytes, least recently
 * used out), its CRC-32C and every batch's CRC checked on a worker, and
 * then served with sendfile like a local one. While it downloads a read
 * answers -EAGAIN and the fetch waits (the download wakes it); a failed
 * download answers -EIO (KAFKA_STORAGE_ERROR, retriable) for a second.
 *
 * A tier that is down delays copies (retried with backoff, logged and
 * counted), never loses data: nothing leaves the local disk before it is
 * in the tier and in a durable manifest, and producers never wait for it.
 *
 * ListOffsets by time inside a remote segment not in the cache starts
 * its download and answers -EAGAIN (a retriable KAFKA_STORAGE_ERROR), so
 * the client's retry gets the exact answer from the cached segment.
 *
 * Objects no manifest names (a copy interrupted before its manifest
 * write, a failed delete) are swept: every remote.log.orphan.sweep.
 * interval.ms each partition's objects are listed, one partition per
 * periodic run, and those older than remote.log.orphan.grace.ms (by the
 * time in their key) that neither the manifest, the deletes waiting for
 * it nor the copy in flight name are deleted.
 *
 * All on the loop thread.
 */
#ifndef SK_LOG_REMOTE_H
#define SK_LOG_REMOTE_H

#include "log.h"
#include "util.h"

struct sk_broker;
struct sk_tier;
struct sk_topic;
struct sk_tpart;
struct sk_remote;

/*
 * Start tiered storage on tier for broker b (after its topics are
 * loaded): clear the download cache, read the manifests of every
 * partition that has one, start the periodic task.
 */
int sk_remote_new(struct sk_remote **out, struct sk_broker *b,
		  struct sk_tier *tier, struct sk_err *err);
/*
 * At start-up without a storage tier: warn about every topic whose
 * partitions have a remote manifest (data in a tier that cannot be read
 * now) or that asks for remote.storage.enable. Returns how many topics
 * it warned about.
 */
int sk_remote_check_untiered(struct sk_broker *b);
/* Stop the periodic task: no new copies (broker stopping). NULL-safe. */
void sk_remote_stop(struct sk_remote *r);
/*
 * Free everything, after the plugins drained (no tier operation in
 * flight). NULL-safe.
 */
void sk_remote_free(struct sk_remote *r);

/* One pass of the periodic task now (tests). */
void sk_remote_run(struct sk_remote *r);

/*
 * Partition tp goes away (topic deleted): drop its state, and with
 * delete_data remove its objects from the tier. NULL-safe.
 */
void sk_remote_forget(struct sk_remote *r, struct sk_tpart *tp,
		      bool delete_data);

/*
 * sk_partition_read across both tiers: below the local start, from the
 * remote segment holding offset. Returns what sk_partition_read does,
 * or -EAGAIN while that segment is being downloaded (the partition's
 * waiting fetches are woken when it is ready), or -EIO when the download
 * failed. b->remote may be NULL.
 */
int sk_remote_read(struct sk_broker *b, struct sk_tpart *tp, int64_t offset,
		   size_t max_bytes, bool min_one, struct sk_log_slice *out);

/*
 * DeleteRecords up to offset (after sk_partition_delete_before): remote
 * data below it is no longer readable, and remote segments entirely
 * below it are deleted from the tier.
 */
void sk_remote_delete_before(struct sk_broker *b, struct sk_tpart *tp,
			     int64_t offset);

/* The log start offset across both tiers. */
int64_t sk_remote_start_offset(struct sk_broker *b, struct sk_tpart *tp);

/*
 * sk_partition_offset_for_time across both tiers: -EAGAIN while the
 * remote segment holding the answer downloads, -EIO if that failed.
 */
int sk_remote_offset_for_time(struct sk_broker *b, struct sk_tpart *tp,
			      int64_t ts, int64_t *offset, int64_t *timestamp);

/*
 * Retention of a partition with remote segments or remote storage
 * enabled: retention.* over the whole log, then local.retention.* over
 * the local copies of segments in the tier. Returns the number of
 * segments deleted. false when tp is not such a partition (plain
 * sk_partition_retention applies).
 */
bool sk_remote_retention(struct sk_remote *r, struct sk_topic *t,
			 struct sk_tpart *tp, int64_t now_ms, int64_t *deleted);

#endif
