/*
 * The small checksummed files of a partition directory: the log start
 * offset, the recovery point and the cleaner's progress. Each is one
 * fixed-size big-endian record:
 *   0 magic u32, 4 version u32, 8 the caller's fields,
 *   len - 4 crc u32: CRC-32C of every byte before it.
 *
 * Written durably through a .tmp file renamed into place, so a reader
 * finds the old record or the new one, never a mix; or, where the writer
 * syncs later anyway and a lost record only costs work (the clean close's
 * recovery checkpoint), overwritten in place, where a torn write fails the
 * CRC and reads as no record. Lives with the log (core/log_*) so that the
 * crash tests' I/O layer (core/io.h) covers it.
 */
#ifndef SK_LOG_CKPT_H
#define SK_LOG_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* magic, version and CRC: the smallest record. */
#define SK_CKPT_OVERHEAD 12

/*
 * Make path hold exactly the bytes of iov[0..n) (creating it if needed):
 * written from offset 0 over the old content, anything past cut, then
 * fdatasync'd when sync. The one way the log writes a small whole file.
 * An existing file keeps its inode: ext4 allocates no new one, which a
 * create-and-rename per write makes it do (and, with inodes freed in the
 * last seconds, slowly). A crash may leave any mix of old and new bytes,
 * so in place only for files whose reader detects that (a CRC) and can do
 * without them; otherwise write a .tmp this way and rename it over path.
 * Any thread. Returns 0 or -errno.
 */
int sk_file_overwrite(const char *path, const struct iovec *iov, int n,
		      bool sync);

/*
 * Write buf (len bytes; magic, version and the CRC are filled in here) to
 * dir/name. durable: to name.tmp, fdatasync, rename over name, fsync dir.
 * Without durable, in place (sk_file_overwrite, no sync): for a caller
 * that syncs the file system later and can lose the record (a torn one
 * reads as none). Any thread. Returns 0 or -errno. A durable write
 * failing before the rename leaves the old file and removes the .tmp;
 * *renamed (may be NULL) says the failure came after it: only the
 * directory sync failed, so the new record is in place and synced but its
 * entry may not be durable.
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
