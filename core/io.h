/*
 * The file operations that decide what survives a crash: every write,
 * sync, truncation, creation, rename and removal of the partition log
 * (core/log_*.c) goes through these, and nothing else does.
 *
 * In the broker they are the plain system calls, inlined: same arguments,
 * same results (-1 with errno on failure), no cost. A test binary compiles
 * the log with -DSK_IO_TEST instead (see the Makefile's iotest objects),
 * and then they are functions of a test shim (tests/unit/io_shim.c) that
 * records writes and syncs per file, can fail the Nth operation with an
 * errno (ENOSPC, EIO), and at a chosen crash point can "lose power":
 * bring the files back to their content at their last fsync and the
 * directories to their entries at their last directory fsync, optionally
 * keeping a torn prefix of what was written since (in the spirit of
 * SQLite's crash-test VFS). Reads (pread, mmap, readdir) are not routed:
 * they see the files as they are.
 */
#ifndef SK_IO_H
#define SK_IO_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef SK_IO_TEST

int sk_io_open(const char *path, int flags, mode_t mode);
int sk_io_close(int fd);
ssize_t sk_io_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t sk_io_write(int fd, const void *buf, size_t n);
int sk_io_fdatasync(int fd);
int sk_io_fsync(int fd);
int sk_io_ftruncate(int fd, off_t len);
int sk_io_rename(const char *from, const char *to);
int sk_io_unlink(const char *path);
int sk_io_mkdir(const char *path, mode_t mode);
/* fsync a directory by path (its entries become durable); 0 or -1. */
int sk_io_fsync_dir(const char *path);

#else

static inline int sk_io_open(const char *path, int flags, mode_t mode)
{
	return open(path, flags, mode);
}

static inline int sk_io_close(int fd)
{
	return close(fd);
}

static inline ssize_t sk_io_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	return pwrite(fd, buf, n, off);
}

static inline ssize_t sk_io_write(int fd, const void *buf, size_t n)
{
	return write(fd, buf, n);
}

static inline int sk_io_fdatasync(int fd)
{
	return fdatasync(fd);
}

static inline int sk_io_fsync(int fd)
{
	return fsync(fd);
}

static inline int sk_io_ftruncate(int fd, off_t len)
{
	return ftruncate(fd, len);
}

static inline int sk_io_rename(const char *from, const char *to)
{
	return rename(from, to);
}

static inline int sk_io_unlink(const char *path)
{
	return unlink(path);
}

static inline int sk_io_mkdir(const char *path, mode_t mode)
{
	return mkdir(path, mode);
}

static inline int sk_io_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	if (rc < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	close(fd);
	return 0;
}

#endif

#endif
