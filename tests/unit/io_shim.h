/*
 * The test I/O layer behind core/io.h in -DSK_IO_TEST builds (see io.h):
 * every write, sync, truncation, creation, rename, removal and directory
 * sync of the log comes here. It can
 *   - count them (crash points, fsyncs for flush.messages tests);
 *   - fail chosen ones with an errno (ENOSPC, EIO), once or until cleared;
 *   - crash: from a chosen operation on, every mutating call fails with
 *     EIO and does nothing, as if the machine had stopped there;
 *   - lose power: rewrite the tracked directory tree to what a strict
 *     POSIX file system guarantees after a power cut: each file as of its
 *     last fsync/fdatasync, each directory's entries as of its last
 *     directory fsync, and optionally a random prefix of what came after
 *     (in order), the last write of that prefix torn at a random byte,
 *     or a random subset of the writes (reordered), each possibly torn.
 *     As SQLite's crash-test VFS, in spirit.
 *
 * Tracking covers the files and directories under the root given to
 * io_shim_reset: at that point everything there counts as durable. Without
 * a root the calls go to the system (real fsyncs included), with counting
 * and failures only.
 *
 * Why global state: core/io.h's functions take no context, by design (the
 * broker build inlines the plain system calls). This file and its state
 * exist only in test binaries; a mutex makes it safe for the broker's
 * flusher thread.
 */
#ifndef SK_IO_SHIM_H
#define SK_IO_SHIM_H

#include <stdbool.h>
#include <stdint.h>

/* Kinds of mutating operations, as bits for the masks below. */
enum io_op {
	IO_CREATE = 1 << 0,  /* open that creates or truncates a file */
	IO_WRITE = 1 << 1,   /* pwrite, write */
	IO_SYNC = 1 << 2,    /* fdatasync, fsync of a file */
	IO_TRUNC = 1 << 3,   /* ftruncate */
	IO_RENAME = 1 << 4,  /* rename */
	IO_UNLINK = 1 << 5,  /* unlink */
	IO_MKDIR = 1 << 6,   /* mkdir */
	IO_DIRSYNC = 1 << 7, /* fsync of a directory */
	IO_ANY = (1 << 8) - 1,
};

/* What survives a power loss beyond the synced state. */
enum io_loss {
	IO_LOSE_UNSYNCED, /* nothing: the synced state exactly */
	IO_KEEP_PREFIX,	  /* per file and directory, a random prefix of the
			     operations since its last sync, the last write
			     kept torn */
	IO_KEEP_SOME,	  /* per file, a random subset of them, in order,
			     each write possibly torn (the disk reordered
			     them); per directory, a prefix (ordered
			     metadata, as journaled file systems keep it) */
};

/* Forget everything; track the tree under root (NULL: track nothing). */
void io_shim_reset(const char *root);
/* Mutating operations so far (the next one is number ops + 1). */
uint64_t io_shim_ops(void);
/* Operations of the kinds in mask so far. */
uint64_t io_shim_count(unsigned mask);
/*
 * Fail the nth (1-based, counted from now) operation of a kind in mask
 * with errno err; with sticky, and every one after it until cleared. A
 * failing write first writes half of its bytes (a short write) when
 * short_write, and fails on the next attempt. One rule at a time.
 */
void io_shim_fail(unsigned mask, uint64_t nth, int err, bool sticky,
		  bool short_write);
void io_shim_fail_clear(void);
/* Whether the failure rule fired. */
bool io_shim_failed(void);
/* Crash at operation number n (io_shim_ops() + 1 is the next); 0: never. */
void io_shim_crash_at(uint64_t n);
bool io_shim_crashed(void);
/*
 * Lose power: rewrite the tracked tree as described above (seed picks the
 * prefixes), then io_shim_reset on the same root. Call with no file of
 * the tree open for writing by the code under test.
 */
void io_shim_power_loss(enum io_loss mode, uint64_t seed);

#endif
