/*
 * A test sqlite VFS for power-loss tests of the sqlite stores (meta.db,
 * offsets.db): what tests/unit/io_shim.c is to the log, for sqlite.
 *
 * It wraps the default "unix" VFS and becomes the default itself, so the
 * real meta.c and offsets.c go through it unchanged. For every file under
 * the root given to crash_vfs_reset it keeps a durable image: the file's
 * content as of its last xSync (the real fsync is skipped: the image is
 * what survives). Mutating calls (xWrite, xTruncate, xSync) are counted;
 * from the chosen crash point on, each of them fails with an I/O error and
 * does nothing, as if the machine had stopped there. crash_vfs_power_loss
 * then rewrites every tracked file to its durable image (a file never
 * synced disappears, and so does the volatile -shm index), optionally
 * with the first half of the last unsynced write torn onto it.
 *
 * Global state, as io_shim's: sqlite's VFS registry is process-wide, and
 * this file exists only in the test binary. A mutex makes it safe for the
 * stores' writer threads.
 */
#ifndef SK_SQLITE_CRASH_VFS_H
#define SK_SQLITE_CRASH_VFS_H

#include <stdbool.h>
#include <stdint.h>

/* Register the VFS as sqlite's default (once per process). */
void crash_vfs_install(void);
/*
 * Count from zero: every file under root counts as durable as it is now.
 * crash_at: the number of the mutating call that fails first (1-based),
 * 0 for never. A NULL root frees everything (no file may be open).
 */
void crash_vfs_reset(const char *root, uint64_t crash_at);
/* Mutating calls on tracked files so far. */
uint64_t crash_vfs_ops(void);
/* The crash point was reached. */
bool crash_vfs_crashed(void);
/*
 * Lose power: every tracked file back to its durable image; with tear,
 * the first half of the last write before the crash, if it was not
 * synced, lands on top. Call with no connection open.
 */
void crash_vfs_power_loss(bool tear);

#endif
