/*
 * Skald plugin ABI: storage tiers (tiered storage, Kafka's KIP-405 idea).
 *
 * A storage tier is an object store the broker copies closed log segments
 * to, so that old data can leave the local disk while consumers can still
 * read it. A plugin provides one by calling host->register_storage_tier
 * from init() with a static ops table; `storage: {tier: NAME}` in the YAML
 * file picks the tier by plugin name.
 *
 * Objects. The broker names each segment with a key made of
 * [A-Za-z0-9._/-] (today "TOPIC/PARTITION/BASEOFFSET-ID", but treat it as
 * opaque) and stores one object per file of the segment under key +
 * suffix (".log", ".index", ".timeindex"). The tier maps keys to its own
 * naming (a directory, a bucket and prefix) however it likes, but
 * list() must give back the same key + suffix strings.
 *
 * Operations never block the event loop. Each takes an op handle and is
 * finished by exactly one call to host->tier_done(host, op, rc, msg):
 *   - without SKALD_TIER_BLOCKING in ops->flags, the broker calls the
 *     operation on the loop thread and it must return at once: do the
 *     work on the plugin's own threads or through host->submit, and call
 *     tier_done from any thread when it is finished;
 *   - with SKALD_TIER_BLOCKING, the broker calls the operation on one of
 *     its pool threads, where it may block (plain read/write, a
 *     synchronous HTTP client); it calls tier_done before returning.
 * An operation that returns non-zero has failed at once and must NOT call
 * tier_done; the broker treats the return value as its result. tier_done
 * may be called before the operation returns 0 (even from inside it):
 * the broker defers its completion to the loop thread.
 *
 * Results: 0, or a negative errno. -EAGAIN, -ETIMEDOUT, -ECONNREFUSED,
 * -ECONNRESET, -EHOSTUNREACH and -EIO mean "the tier is unavailable, try
 * later": uploads are retried with backoff and reads fail with a retriable
 * Kafka error. -ENOENT from download means the object does not exist.
 * msg (may be NULL) is logged with the plugin's name.
 *
 * Ownership: every struct and string the broker passes, and the fds in
 * them, stay valid until tier_done is called for that op (or the
 * operation returned non-zero). The plugin never closes the broker's fds.
 *
 * Shutdown: after the plugin's stop() the broker starts no new operation
 * and waits for those in flight before fini().
 *
 * Compiles alone as C99 or later and as C++11 or later.
 */
#ifndef SKALD_STORAGE_H
#define SKALD_STORAGE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One operation in flight, finished with host->tier_done. Opaque. */
struct skald_tier_op;

/* One file of a segment. Layout frozen for ABI major 1. */
struct skald_tier_file {
	const char *suffix; /* ".log", ".index", ".timeindex" */
	const char *path;   /* the local file, for plugins that want a path */
	int fd;             /* open read-only; read it with pread from 0 */
	uint32_t crc32c;    /* CRC-32C (Castagnoli) of its first size bytes */
	uint64_t size;      /* bytes to copy; the file may be longer */
};

/*
 * A closed segment, for upload and remove. For remove, the files' fd is
 * -1 and path NULL: the suffixes say which objects to delete.
 */
struct skald_tier_segment {
	uint32_t size;      /* sizeof(struct skald_tier_segment), host's */
	uint32_t n_files;
	const char *key;    /* the segment key (see above) */
	const char *topic;
	int32_t partition;
	int32_t reserved;   /* 0 */
	int64_t base_offset;   /* first offset in the segment */
	int64_t end_offset;    /* one past the last offset */
	int64_t max_timestamp; /* largest record timestamp, -1 if none */
	const struct skald_tier_file *const *files; /* n_files pointers */
};

/* A read of one object (or a byte range of it) into a local file. */
struct skald_tier_get {
	uint32_t size;      /* sizeof(struct skald_tier_get), host's */
	int fd;             /* write the bytes here with pwrite, from 0 */
	const char *key;    /* segment key + suffix */
	uint64_t offset;    /* first byte of the object wanted */
	uint64_t length;    /* bytes wanted; 0: up to the end */
};

/* skald_storage_tier_ops.flags */
#define SKALD_TIER_BLOCKING 0x1u /* call the operations on pool threads */

/*
 * The operations of a tier; tier is the pointer given to
 * register_storage_tier. Put the table in static storage: the broker
 * keeps the pointer until after fini. Members are only ever appended.
 */
struct skald_storage_tier_ops {
	uint32_t size;  /* sizeof(struct skald_storage_tier_ops), plugin's */
	uint32_t flags; /* SKALD_TIER_* */
	/*
	 * Copy every file of seg to the tier. Report success only once the
	 * objects are durable there and whole: a reader must never see a
	 * partial object. Uploading a key that exists replaces it.
	 */
	int (*upload)(void *tier, struct skald_tier_op *op,
		      const struct skald_tier_segment *seg);
	/* Write the requested bytes of one object to get->fd. */
	int (*download)(void *tier, struct skald_tier_op *op,
			const struct skald_tier_get *get);
	/* Delete every object of seg; objects already gone are success. */
	int (*remove)(void *tier, struct skald_tier_op *op,
		      const struct skald_tier_segment *seg);
	/*
	 * Report every object whose key starts with prefix, each with one
	 * call to host->tier_list_add, then call tier_done.
	 */
	int (*list)(void *tier, struct skald_tier_op *op, const char *prefix);
};

/*
 * Whether key can be joined to a directory or a bucket prefix safely: not
 * empty, relative, and without empty, "." or ".." components. The keys
 * the broker passes always are; a tier checks each before it makes a
 * path or an object name of it. Header only (ABI 1.1): nothing is
 * asked of the broker.
 */
static inline int skald_tier_key_ok(const char *key)
{
	const char *c = key; /* the component being read */
	const char *p;

	for (p = key;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		/* Empty: the whole key, or a leading, doubled or final '/'. */
		if (p == c || (p - c == 1 && c[0] == '.') ||
		    (p - c == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		if (*p == '\0')
			return 1;
		c = p + 1;
	}
}

#ifdef __cplusplus
}
#endif

#endif
