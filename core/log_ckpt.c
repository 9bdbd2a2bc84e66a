/*
 * One writer and one reader for the checkpoint files (log_ckpt.h).
 */
#include "log_ckpt.h"

#include "crc32c.h"
#include "io.h"
#include "proto.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int sk_file_overwrite(const char *path, const struct iovec *iov, int n,
		      bool sync)
{
	struct stat st;
	off_t off = 0;
	int fd, rc = 0;

	fd = sk_io_open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	for (int i = 0; i < n && rc == 0; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t left = iov[i].iov_len;

		while (left > 0) {
			ssize_t w = sk_io_pwrite(fd, p, left, off);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				rc = w < 0 ? -errno : -ENOSPC;
				break;
			}
			p += w;
			left -= (size_t)w;
			off += w;
		}
	}
	/* A longer old content: cut its tail (the reader checks sizes). */
	if (rc == 0 && fstat(fd, &st) == 0 && st.st_size > off &&
	    sk_io_ftruncate(fd, off) < 0)
		rc = -errno;
	if (rc == 0 && sync && sk_io_fdatasync(fd) < 0)
		rc = -errno;
	if (sk_io_close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

int sk_ckpt_write(const char *dir, const char *name, uint32_t magic,
		  uint32_t version, uint8_t *buf, size_t len, bool durable,
		  bool *renamed)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	char *path = sk_xasprintf("%s/%s", dir, name);
	char *tmp = NULL;
	int rc;

	if (renamed)
		*renamed = false;
	sk_put_be32(buf, magic);
	sk_put_be32(buf + 4, version);
	sk_put_be32(buf + len - 4, sk_crc32c(0, buf, len - 4));

	if (!durable) {
		rc = sk_file_overwrite(path, &iov, 1, false);
		goto out;
	}
	tmp = sk_xasprintf("%s.tmp", path);
	rc = sk_file_overwrite(tmp, &iov, 1, true);
	if (rc == 0 && sk_io_rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		sk_io_unlink(tmp);
		goto out;
	}
	if (renamed)
		*renamed = true;
	if (sk_io_fsync_dir(dir) < 0)
		rc = -errno;
out:
	free(tmp);
	free(path);
	return rc;
}

int sk_ckpt_read(const char *dir, const char *name, uint32_t magic,
		 uint32_t version, uint8_t *buf, size_t len, const char **why)
{
	char *path = sk_xasprintf("%s/%s", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t extra;
	ssize_t n;
	int rc;

	free(path);
	*why = NULL;
	if (fd < 0) {
		rc = -errno;
		if (rc != -ENOENT)
			*why = strerror(-rc);
		return rc;
	}
	do
		n = pread(fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	rc = n < 0 ? -errno : 0;
	/* A longer file is not one of ours either. */
	if (n == (ssize_t)len && pread(fd, &extra, 1, (off_t)len) > 0)
		n = -1;
	close(fd);
	if (rc < 0)
		*why = strerror(-rc);
	else if (n != (ssize_t)len)
		*why = "wrong size";
	else if (sk_be32(buf) != magic || sk_be32(buf + 4) != version)
		*why = "bad magic or version";
	else if (sk_be32(buf + len - 4) != sk_crc32c(0, buf, len - 4))
		*why = "CRC mismatch";
	if (*why && rc == 0)
		rc = -EBADMSG;
	return rc;
}
