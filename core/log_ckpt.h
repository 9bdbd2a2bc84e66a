/*
 * The small checksummed files of a partition directory: the log start
 * offset, the recovery point and the cleaner's progress. Each is one
 * fixed-size big-endian record:
 *   0 magic u32, 4 version u32, 8 the caller's fields,
 *   len - 4 crc u32: CRC-32C of every byte before it.
 *
 * Written through a .tmp file renamed into place, so a reader finds the
 * old record or the new one, never a mix. Lives with the log (core/log_*)
 * so that the crash tests' I/O layer (core/io.h) covers it.
 */
#ifndef SK_LOG_CKPT_H
#define SK_LOG_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* magic, version and CRC: the smallest record. */
#define SK_CKPT_OVERHEAD 12

/*
 * Write buf (len bytes; magic, version and the CRC are filled in here) to
 * dir/name: to name.tmp, fdatasync, rename over name, fsync dir. Without
 * durable, only the write and the rename (a caller that syncs the file
 * system later). Any thread. Returns 0 or -errno. A failure before the
 * rename leaves the old file and removes the .tmp; *renamed (may be NULL)
 * says the failure came after it: only the directory sync failed, so the
 * new record is in place and synced but its entry may not be durable.
 */
int sk_ckpt_write(const char *dir, const char *name, uint32_t magic,
		  uint32_t version, uint8_t *buf, size_t len, bool durable,
		  bool *renamed);

/*
 * Read dir/name into buf (exactly len bytes) and check magic, version and
 * CRC. Returns 0; -ENOENT when there is no such file; otherwise a
 * negative errno with *why saying what is wrong with it.
 */
int sk_ckpt_read(const char *dir, const char *name, uint32_t magic,
		 uint32_t version, uint8_t *buf, size_t len, const char **why);

#endif
