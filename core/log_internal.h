/*
 * Internals of the partition log shared by log_segment.c, log_index.c and
 * log_partition.c, and with the log cleaner (compact*.c), which rewrites
 * closed segments. Nothing else includes this.
 *
 * Index files (<base>.index, <base>.timeindex), version 2, big-endian:
 *   0 magic u32 ("SKOI" offset index, "SKTI" time index)
 *   4 version u32 (2; 1 is still read)
 *   8 log_size u64: size of the .log file the entries describe
 *  16 count u32: number of entries
 *  20 crc u32: CRC-32C of bytes 0-19 and of the count entries that
 *     follow (version 1: of the entries only)
 *  24 entries: offset index (rel u32, pos u32), 8 bytes each;
 *              time index (ts i64, rel u32), 12 bytes each.
 * rel is an offset relative to the segment's base offset and pos a byte
 * position in the .log file; both fit in 32 bits because a segment is
 * rolled before either would overflow. In memory the entries keep exactly
 * this layout, so a closed segment's index is simply the mapped file and
 * saving the active one needs no conversion.
 */
#ifndef SK_LOG_INTERNAL_H
#define SK_LOG_INTERNAL_H

#include <stdatomic.h>

#include "log.h"

#define SK_LOG_INDEX_HEADER_SIZE 24
#define SK_LOG_OFFSET_ENTRY_SIZE 8
#define SK_LOG_TIME_ENTRY_SIZE	 12
#define SK_LOG_INDEX_VERSION	 2u
#define SK_LOG_OFFSET_MAGIC	 0x534b4f49u /* "SKOI" */
#define SK_LOG_TIME_MAGIC	 0x534b5449u /* "SKTI" */

/* No batch yet: below every timestamp a batch can carry (including -1). */
#define SK_LOG_NO_TIMESTAMP INT64_MIN

/* One kind of index: fixed-size entries, heap-owned or mapped. */
struct sk_log_index_buf {
	uint8_t *data;	/* entries in on-disk layout; NULL when empty */
	size_t n;	/* entries */
	size_t cap;	/* heap capacity in entries; 0 while mapped */
	void *map;	/* mapped index file (header included), or NULL */
	size_t map_len; /* bytes mapped */
};

/*
 * A segment's sparse offset index and its time index.
 *
 * Offset entry (rel, pos): the batch with base offset base + rel starts
 * at pos. The first batch of a segment always has one, then one per
 * index.interval.bytes of log.
 * Time entry (ts, rel): ts is the segment's max timestamp so far and rel
 * the relative base offset of the batch that raised it to ts, so every
 * batch before that one has a max timestamp below ts. A lookup for time t
 * may therefore start at the last entry with ts <= t.
 */
struct sk_log_index {
	struct sk_log_index_buf off;  /* offset index */
	struct sk_log_index_buf time; /* time index */
};

void sk_log_index_init(struct sk_log_index *idx);
/* Free heap entries or unmap files; the index is then empty, reusable. */
void sk_log_index_free(struct sk_log_index *idx);
/* Copy mapped entries to the heap so entries can be appended. */
void sk_log_index_own(struct sk_log_index *idx);

/* Append entries; callers keep rel, pos and ts increasing. */
void sk_log_index_add_offset(struct sk_log_index *idx, uint32_t rel,
			     uint32_t pos);
void sk_log_index_add_time(struct sk_log_index *idx, int64_t ts, uint32_t rel);

/* Entry i of each kind (i < n). */
void sk_log_index_offset_at(const struct sk_log_index *idx, size_t i,
			    uint32_t *rel, uint32_t *pos);
void sk_log_index_time_at(const struct sk_log_index *idx, size_t i, int64_t *ts,
			  uint32_t *rel);

/* Position of the last offset entry with rel <= rel (0 if none). */
uint32_t sk_log_index_pos_for_rel(const struct sk_log_index *idx, uint32_t rel);
/* Largest indexed batch position <= pos, or 0 if none. */
uint32_t sk_log_index_floor_pos(const struct sk_log_index *idx, uint32_t pos);
/* rel of the last time entry with ts <= ts (0 if none). */
uint32_t sk_log_index_rel_for_time(const struct sk_log_index *idx, int64_t ts);

/*
 * Write <stem>.index and <stem>.timeindex describing a log of log_size
 * bytes (no fsync: an index lost in a crash is rebuilt). in_place
 * overwrites existing files (sk_file_overwrite: no new inodes; a torn
 * write fails the CRC and the index is rebuilt) and must only be used on
 * files nobody has mapped, as a mapping would see the new bytes; without
 * it each goes through a .tmp file renamed into place, and mappings of
 * the old file keep the old entries.
 */
int sk_log_index_save(const struct sk_log_index *idx, const char *stem,
		      int64_t log_size, bool in_place, struct sk_err *err);
/*
 * Map both index files of stem and check them against a log of log_size
 * bytes. Returns 0 (idx then holds mapped entries), -ENOENT when a file
 * is missing, or another negative errno with *why saying what was wrong.
 * idx is left empty on failure.
 */
int sk_log_index_load(struct sk_log_index *idx, const char *stem,
		      int64_t log_size, const char **why);
/* Remove stem's index files (and leftover .tmp files); ENOENT is fine. */
void sk_log_index_unlink(const char *stem);

/*
 * One segment. The partition holds a reference to each of its segments
 * and a slice handed to Fetch holds another; the fd closes with the last
 * reference. Only the owner of the partition (the loop thread) touches
 * anything but refs and fd.
 */
struct sk_segment {
	atomic_int refs;
	int fd;		       /* the .log file, O_RDWR */
	char *stem;	       /* "<dir>/<20-digit base offset>", owned */
	int64_t base_offset;   /* from the file name */
	int64_t end_offset;    /* offset after the last batch */
	int64_t size;	       /* bytes of whole, checked batches */
	int64_t max_timestamp; /* largest batch maxTimestamp, or NO_TIMESTAMP */
	uint32_t max_ts_rel;   /* relative offset of the batch holding it */
	int64_t created_ms;    /* first append, or mtime at reopen; 0 if none */
	int64_t index_bytes;   /* log bytes since the last offset entry */
	bool dirty;	       /* written since the last fdatasync */
	atomic_bool sync_failed; /* an fdatasync of it failed: untrusted */
	bool index_saved;	 /* index files on disk match size */
	bool corrupt;		 /* a bad batch at size: never index or serve */
	struct sk_log_index idx;
};

/*
 * Open the segment file of base offset base in dir, creating it when
 * create (it must not exist then). The segment starts empty (size 0);
 * *file_size receives the file's size and the creation time is taken
 * from its mtime when the file is not empty. One reference.
 */
int sk_segment_open(struct sk_segment **out, const char *dir, int64_t base,
		    bool create, int64_t *file_size, struct sk_err *err);

/*
 * Account for a batch of len bytes just placed at seg->size: index it if
 * due, and advance size, end offset and max timestamp.
 */
void sk_segment_note_batch(struct sk_segment *seg, const struct sk_batch_hdr *h,
			   size_t len, int64_t index_interval);

/*
 * Write len bytes at seg->size, whole or not at all: on failure the file
 * is truncated back. Does not account for the batch (note_batch does).
 */
int sk_segment_write(struct sk_segment *seg, const uint8_t *buf, size_t len,
		     struct sk_err *err);

/*
 * Write the index files for the segment's current contents (adding the
 * final time entry first) and, when keep_mapped, switch the in-memory
 * index to the mapped files so a closed segment costs no heap. With
 * keep_mapped the files are replaced by a rename (another segment object
 * of the same base, one compaction replaced, may have the old ones
 * mapped); without, overwritten in place: for the active segment, whose
 * files nobody maps, and at a clean close, when no reader is left.
 */
int sk_segment_save_index(struct sk_segment *seg, bool keep_mapped,
			  struct sk_err *err);

/*
 * The loop-thread half of sk_segment_save_index: close the time index
 * with the segment's max timestamp (idempotent). The other half,
 * sk_log_index_save, then only reads the entries.
 */
void sk_segment_seal_index(struct sk_segment *seg);

/*
 * log_offload.c, loop thread. With fn: write seg's index files (then map
 * them and mark it index_saved) on fn's thread, and delete the files of
 * the removed segment stem there; without: inline, as before. A failure
 * is logged: a missing index is rebuilt at the next open; files left
 * behind by a failed delete are found at the next open and retention
 * deletes them again.
 */
struct sk_log_token;
void sk_log_offload_index(sk_log_offload_fn fn, void *arg,
			  struct sk_log_token *tok, const char *dir,
			  struct sk_segment *seg);
void sk_log_offload_remove(sk_log_offload_fn fn, void *arg,
			   struct sk_log_token *tok, const char *dir,
			   const char *stem);

/*
 * Shared by a partition and the jobs it hands off. Jobs hold paths; once
 * the partition is released its directory may be renamed for deletion
 * and a new partition of the same name created there, so a job that has
 * not started by then must not touch the path: it checks gone first.
 */
struct sk_log_token {
	atomic_int refs;
	atomic_bool gone;
};
struct sk_log_token *sk_log_token_new(void);
struct sk_log_token *sk_log_token_ref(struct sk_log_token *t);
void sk_log_token_unref(struct sk_log_token *t);

/* fdatasync the segment file if it was written since the last sync. */
int sk_segment_sync(struct sk_segment *seg);

/*
 * A buffered reader over a segment file: borrowed views of byte ranges
 * without a syscall per batch header. Starts on a caller buffer and moves
 * to the heap only for a range larger than that.
 */
struct sk_seg_reader {
	int fd;
	int64_t limit; /* never read at or past this position */
	uint8_t *buf;  /* caller's buffer or heap */
	size_t cap;    /* bytes of buf */
	bool heap;     /* buf was allocated here */
	int64_t at;    /* file position of buf[0] */
	size_t len;    /* valid bytes in buf */
};

void sk_seg_reader_init(struct sk_seg_reader *r, int fd, int64_t limit,
			void *buf, size_t cap);
void sk_seg_reader_done(struct sk_seg_reader *r);
/*
 * Point *p at n bytes at pos. Returns 0, -ENODATA if the range passes the
 * limit or the end of the file, or -errno from pread.
 */
int sk_seg_reader_get(struct sk_seg_reader *r, int64_t pos, size_t n,
		      const uint8_t **p);
/* Read and decode the batch header at pos; -EBADMSG if it is not one. */
int sk_seg_reader_header(struct sk_seg_reader *r, int64_t pos,
			 struct sk_batch_hdr *h);

/* What a segment scan found. */
struct sk_seg_scan {
	int64_t pos;	       /* where the scan stopped */
	int64_t end_offset;    /* offset after the last good batch */
	int64_t max_timestamp; /* of the good batches scanned */
	uint32_t max_ts_rel;   /* relative base offset of the batch with it */
	bool bad;	       /* stopped before the end: why says why */
	char why[160];
};

/* Scan flags. */
#define SK_SCAN_CRC   0x1 /* verify every batch's CRC (reads whole file) */
#define SK_SCAN_INDEX 0x2 /* note_batch each good batch (pos == size) */
/*
 * Base offsets may jump forward between batches: compaction removed whole
 * batches from a closed segment. Never for the active segment, whose torn
 * tail the strict chain helps to find.
 */
#define SK_SCAN_GAPS 0x4

/*
 * Walk the batches of seg from pos (where offset next is expected) to
 * file_size, checking framing (a v2 header, the batch inside the file,
 * base offset == previous end, lastOffsetDelta >= 0, positions and
 * relative offsets within 32 bits) and, with SK_SCAN_CRC, the CRC.
 * Returns 0 with the result in *res, or -errno on a read error.
 */
int sk_segment_scan(struct sk_segment *seg, int64_t pos, int64_t next,
		    int64_t file_size, unsigned flags, int64_t index_interval,
		    struct sk_seg_scan *res);

/*
 * Find the batch containing offset (seg->base_offset <= offset <
 * seg->end_offset): index lookup, then a forward header scan. Returns 0
 * with its position and header, -ENOENT if no batch holds it, -EIO on a
 * read error or a batch that no longer parses.
 */
int sk_segment_locate(struct sk_segment *seg, int64_t offset, int64_t *pos,
		      struct sk_batch_hdr *h);

/*
 * sk_partition_read within one segment: the batch containing offset and
 * the whole batches after it up to max_bytes (see log.h). Returns 0 (an
 * empty slice when the first batch alone is over max_bytes and !min_one),
 * -ENOENT if no batch holds offset, -ENODATA if that batch is the
 * segment's last and holds no record (left by compaction: read on in the
 * next segment), -EIO on a read error.
 */
int sk_segment_read(struct sk_segment *seg, int64_t offset, size_t max_bytes,
		    bool min_one, struct sk_log_slice *out);

/*
 * The first record of the segment at or after offset from (the log start
 * offset) with a timestamp >= ts: its offset and timestamp (the batch's
 * for LogAppendTime and compressed batches, whose offset is then the
 * batch's base or from, whichever is later). Returns 0, -ENOENT if there
 * is none, -EIO on a read error.
 */
int sk_segment_find_time(struct sk_segment *seg, int64_t ts, int64_t from,
			 int64_t *offset, int64_t *timestamp);

/*
 * A segment object for a .log file the caller opened under another name
 * (the cleaner's rewritten segment, "<base>.log.cleaned"): takes fd; the
 * stem is the one of base in dir, which the file is renamed to later.
 * Empty, one reference.
 */
struct sk_segment *sk_segment_adopt(int fd, const char *dir, int64_t base);

/*
 * For the cleaner, loop thread only. The directory, and segment i
 * (borrowed; i < sk_partition_segment_count, the last is active).
 */
const char *sk_partition_dir(const struct sk_partition *p);
struct sk_segment *sk_partition_segment(const struct sk_partition *p, size_t i);
/*
 * Replace the closed segments i..i+n-1 by seg, taking the caller's
 * reference to seg and dropping the partition's to the old ones (readers
 * holding them keep reading the old files). seg must hold no offset
 * outside theirs, and be synced. Directory changes are left to the caller, which
 * then calls sk_partition_dir_changed. Returns -EINVAL if the range is
 * not closed segments of p.
 */
int sk_partition_replace(struct sk_partition *p, size_t i, size_t n,
			 struct sk_segment *seg);
/* An entry of the directory changed: the next sync fsyncs it. */
void sk_partition_dir_changed(struct sk_partition *p);

#endif
