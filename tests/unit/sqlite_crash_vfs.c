/*
 * The power-loss sqlite VFS (see sqlite_crash_vfs.h). Written from the
 * sqlite VFS documentation (sqlite3_vfs, sqlite3_io_methods): each of our
 * files is a header followed by the real unix file, and every method
 * forwards to the real one, with the bookkeeping around writes and syncs.
 */
#include "sqlite_crash_vfs.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The durable image of one tracked file, by path. */
struct img {
	struct img *next;
	char *path;
	bool exists; /* survives a power loss (synced at least once) */
	unsigned char *data;
	size_t len;
};

/* One open file: our header, then the real unix file. */
struct cfile {
	sqlite3_file base;
	struct img *img; /* NULL: not tracked (temp files, outside root) */
	sqlite3_file *real;
};

static struct {
	pthread_mutex_t mu;
	sqlite3_vfs vfs;
	sqlite3_vfs *unix_vfs;
	char root[512];
	struct img *imgs;
	uint64_t ops, crash_at;
	bool crashed;
	/* The last write before the crash, for tearing. */
	struct img *last_img;
	unsigned char *last_data;
	size_t last_len;
	sqlite3_int64 last_off;
} S = { .mu = PTHREAD_MUTEX_INITIALIZER };

static struct img *img_find(const char *path)
{
	for (struct img *i = S.imgs; i; i = i->next)
		if (strcmp(i->path, path) == 0)
			return i;
	return NULL;
}

/* Read the whole file as it is now into the image. */
static int snapshot(struct img *im, sqlite3_file *real)
{
	sqlite3_int64 size;

	if (real->pMethods->xFileSize(real, &size) != SQLITE_OK)
		return SQLITE_IOERR_FSYNC;
	free(im->data);
	im->data = malloc(size ? (size_t)size : 1);
	im->len = (size_t)size;
	if (size &&
	    real->pMethods->xRead(real, im->data, (int)size, 0) != SQLITE_OK)
		return SQLITE_IOERR_FSYNC;
	im->exists = true;
	return SQLITE_OK;
}

/* What is on disk now counts as durable. */
static void img_seed(struct img *im)
{
	FILE *f = fopen(im->path, "rb");

	free(im->data);
	im->data = NULL;
	im->len = 0;
	im->exists = f != NULL;
	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	im->len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	im->data = malloc(im->len ? im->len : 1);
	if (fread(im->data, 1, im->len, f) != im->len)
		im->len = 0;
	fclose(f);
}

/* The image of path, seeded from disk when first seen. */
static struct img *img_get(const char *path)
{
	struct img *im = img_find(path);

	if (im)
		return im;
	im = calloc(1, sizeof(*im));
	im->path = strdup(path);
	im->next = S.imgs;
	S.imgs = im;
	img_seed(im);
	return im;
}

/* Count a mutating call; false once the crash point is reached. */
static bool op_allowed(void)
{
	if (S.crashed)
		return false;
	S.ops++;
	if (S.crash_at && S.ops >= S.crash_at) {
		S.crashed = true;
		return false;
	}
	return true;
}

static int c_close(sqlite3_file *f)
{
	struct cfile *cf = (struct cfile *)f;

	return cf->real->pMethods->xClose(cf->real);
}

static int c_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
	struct cfile *cf = (struct cfile *)f;

	return cf->real->pMethods->xRead(cf->real, buf, n, off);
}

static int c_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
	struct cfile *cf = (struct cfile *)f;
	int rc;

	if (!cf->img)
		return cf->real->pMethods->xWrite(cf->real, buf, n, off);
	pthread_mutex_lock(&S.mu);
	if (!op_allowed()) {
		pthread_mutex_unlock(&S.mu);
		return SQLITE_IOERR_WRITE;
	}
	rc = cf->real->pMethods->xWrite(cf->real, buf, n, off);
	if (rc == SQLITE_OK) {
		free(S.last_data);
		S.last_data = malloc((size_t)n);
		memcpy(S.last_data, buf, (size_t)n);
		S.last_len = (size_t)n;
		S.last_off = off;
		S.last_img = cf->img;
	}
	pthread_mutex_unlock(&S.mu);
	return rc;
}

static int c_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	struct cfile *cf = (struct cfile *)f;
	int rc;

	if (!cf->img)
		return cf->real->pMethods->xTruncate(cf->real, size);
	pthread_mutex_lock(&S.mu);
	rc = op_allowed() ? cf->real->pMethods->xTruncate(cf->real, size)
			  : SQLITE_IOERR_TRUNCATE;
	pthread_mutex_unlock(&S.mu);
	return rc;
}

/* The image takes the file's content; no real fsync (the image is what
 * survives, and tests stay fast). */
static int c_sync(sqlite3_file *f, int flags)
{
	struct cfile *cf = (struct cfile *)f;
	int rc;

	if (!cf->img)
		return cf->real->pMethods->xSync(cf->real, flags);
	pthread_mutex_lock(&S.mu);
	if (op_allowed()) {
		rc = snapshot(cf->img, cf->real);
		if (S.last_img == cf->img)
			S.last_img = NULL; /* durable now: nothing to tear */
	} else {
		rc = SQLITE_IOERR_FSYNC;
	}
	pthread_mutex_unlock(&S.mu);
	return rc;
}

static int c_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	struct cfile *cf = (struct cfile *)f;

	return cf->real->pMethods->xFileSize(cf->real, size);
}

static int c_lock(sqlite3_file *f, int lock)
{
	struct cfile *cf = (struct cfile *)f;

	return cf->real->pMethods->xLock(cf->real, lock);
}

static int c_unlock(sqlite3_file *f, int lock)
{
	struct cfile *cf = (struct cfile *)f;

	return cf->real->pMethods->xUnlock(cf->real, lock);
}

static int c_check_reserved(sqlite3_file *f, int *out)
{
	struct cfile *cf = (struct cfile *)f;

	return cf->real->pMethods->xCheckReservedLock(cf->real, out);
}

static int c_file_control(sqlite3_file *f, int op, void *arg)
{
	struct cfile *cf = (struct cfile *)f;

	return cf->real->pMethods->xFileControl(cf->real, op, arg);
}

static int c_sector_size(sqlite3_file *f)
{
	struct cfile *cf = (struct cfile *)f;

	return cf->real->pMethods->xSectorSize(cf->real);
}

static int c_device_chars(sqlite3_file *f)
{
	struct cfile *cf = (struct cfile *)f;

	return cf->real->pMethods->xDeviceCharacteristics(cf->real);
}

/* The -shm wal-index is volatile by design: straight through. */
static int c_shm_map(sqlite3_file *f, int pg, int pgsz, int extend,
		     void volatile **pp)
{
	struct cfile *cf = (struct cfile *)f;

	return cf->real->pMethods->xShmMap(cf->real, pg, pgsz, extend, pp);
}

static int c_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
	struct cfile *cf = (struct cfile *)f;

	return cf->real->pMethods->xShmLock(cf->real, off, n, flags);
}

static void c_shm_barrier(sqlite3_file *f)
{
	struct cfile *cf = (struct cfile *)f;

	cf->real->pMethods->xShmBarrier(cf->real);
}

static int c_shm_unmap(sqlite3_file *f, int del)
{
	struct cfile *cf = (struct cfile *)f;

	return cf->real->pMethods->xShmUnmap(cf->real, del);
}

static int c_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
	struct cfile *cf = (struct cfile *)f;

	return cf->real->pMethods->xFetch(cf->real, off, n, pp);
}

static int c_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	struct cfile *cf = (struct cfile *)f;

	return cf->real->pMethods->xUnfetch(cf->real, off, p);
}

static const sqlite3_io_methods c_methods = {
	.iVersion = 3,
	.xClose = c_close,
	.xRead = c_read,
	.xWrite = c_write,
	.xTruncate = c_truncate,
	.xSync = c_sync,
	.xFileSize = c_file_size,
	.xLock = c_lock,
	.xUnlock = c_unlock,
	.xCheckReservedLock = c_check_reserved,
	.xFileControl = c_file_control,
	.xSectorSize = c_sector_size,
	.xDeviceCharacteristics = c_device_chars,
	.xShmMap = c_shm_map,
	.xShmLock = c_shm_lock,
	.xShmBarrier = c_shm_barrier,
	.xShmUnmap = c_shm_unmap,
	.xFetch = c_fetch,
	.xUnfetch = c_unfetch,
};

static bool tracked(const char *path)
{
	size_t n = strlen(S.root);

	return path && n && strncmp(path, S.root, n) == 0;
}

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f,
		  int flags, int *out_flags)
{
	struct cfile *cf = (struct cfile *)f;
	int rc;

	(void)vfs;
	cf->real = (sqlite3_file *)(cf + 1);
	cf->img = NULL;
	rc = S.unix_vfs->xOpen(S.unix_vfs, name, cf->real, flags, out_flags);
	if (rc != SQLITE_OK) {
		cf->base.pMethods = NULL;
		return rc;
	}
	cf->base.pMethods = &c_methods;
	pthread_mutex_lock(&S.mu);
	if (tracked(name))
		cf->img = img_get(name);
	pthread_mutex_unlock(&S.mu);
	return SQLITE_OK;
}

static int v_delete(sqlite3_vfs *vfs, const char *name, int dirsync)
{
	int rc;

	(void)vfs;
	pthread_mutex_lock(&S.mu);
	if (tracked(name)) {
		if (S.crashed) {
			pthread_mutex_unlock(&S.mu);
			return SQLITE_IOERR_DELETE;
		}
		/* Taken as durable at once (a simplification). */
		img_get(name)->exists = false;
	}
	pthread_mutex_unlock(&S.mu);
	rc = S.unix_vfs->xDelete(S.unix_vfs, name, dirsync);
	return rc;
}

static int v_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	return S.unix_vfs->xAccess(S.unix_vfs, name, flags, out);
}

static int v_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	(void)vfs;
	return S.unix_vfs->xFullPathname(S.unix_vfs, name, n, out);
}

static void *v_dlopen(sqlite3_vfs *vfs, const char *name)
{
	(void)vfs;
	return S.unix_vfs->xDlOpen(S.unix_vfs, name);
}

static void v_dlerror(sqlite3_vfs *vfs, int n, char *msg)
{
	(void)vfs;
	S.unix_vfs->xDlError(S.unix_vfs, n, msg);
}

static void (*v_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
	(void)vfs;
	return S.unix_vfs->xDlSym(S.unix_vfs, h, sym);
}

static void v_dlclose(sqlite3_vfs *vfs, void *h)
{
	(void)vfs;
	S.unix_vfs->xDlClose(S.unix_vfs, h);
}

static int v_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return S.unix_vfs->xRandomness(S.unix_vfs, n, out);
}

static int v_sleep(sqlite3_vfs *vfs, int us)
{
	(void)vfs;
	return S.unix_vfs->xSleep(S.unix_vfs, us);
}

static int v_current_time(sqlite3_vfs *vfs, double *out)
{
	(void)vfs;
	return S.unix_vfs->xCurrentTime(S.unix_vfs, out);
}

static int v_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return S.unix_vfs->xGetLastError(S.unix_vfs, n, out);
}

static int v_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	(void)vfs;
	return S.unix_vfs->xCurrentTimeInt64(S.unix_vfs, out);
}

void crash_vfs_install(void)
{
	S.unix_vfs = sqlite3_vfs_find("unix");
	if (!S.unix_vfs) {
		fprintf(stderr, "crash_vfs: no unix VFS\n");
		abort();
	}
	S.vfs = (sqlite3_vfs){
		.iVersion = 2,
		.szOsFile = (int)sizeof(struct cfile) + S.unix_vfs->szOsFile,
		.mxPathname = S.unix_vfs->mxPathname,
		.zName = "crash",
		.xOpen = v_open,
		.xDelete = v_delete,
		.xAccess = v_access,
		.xFullPathname = v_full_pathname,
		.xDlOpen = v_dlopen,
		.xDlError = v_dlerror,
		.xDlSym = v_dlsym,
		.xDlClose = v_dlclose,
		.xRandomness = v_randomness,
		.xSleep = v_sleep,
		.xCurrentTime = v_current_time,
		.xGetLastError = v_last_error,
		.xCurrentTimeInt64 = v_current_time64,
	};
	sqlite3_vfs_register(&S.vfs, 1);
}

void crash_vfs_reset(const char *root, uint64_t crash_at)
{
	pthread_mutex_lock(&S.mu);
	/* Open files point at their images: reseed them, free only at the
	 * end (root NULL, nothing open). */
	while (!root && S.imgs) {
		struct img *im = S.imgs;

		S.imgs = im->next;
		free(im->path);
		free(im->data);
		free(im);
	}
	for (struct img *im = S.imgs; im; im = im->next)
		img_seed(im);
	snprintf(S.root, sizeof(S.root), "%s", root ? root : "");
	S.ops = 0;
	S.crash_at = crash_at;
	S.crashed = false;
	S.last_img = NULL;
	free(S.last_data);
	S.last_data = NULL;
	pthread_mutex_unlock(&S.mu);
}

uint64_t crash_vfs_ops(void)
{
	uint64_t n;

	pthread_mutex_lock(&S.mu);
	n = S.ops;
	pthread_mutex_unlock(&S.mu);
	return n;
}

bool crash_vfs_crashed(void)
{
	bool c;

	pthread_mutex_lock(&S.mu);
	c = S.crashed;
	pthread_mutex_unlock(&S.mu);
	return c;
}

static void write_file(const char *path, const unsigned char *data, size_t len,
		       sqlite3_int64 off, bool trunc)
{
	int fd = open(path, O_WRONLY | O_CREAT | (trunc ? O_TRUNC : 0), 0644);

	if (fd < 0 || pwrite(fd, data, len, off) != (ssize_t)len) {
		perror(path);
		abort();
	}
	close(fd);
}

void crash_vfs_power_loss(bool tear)
{
	pthread_mutex_lock(&S.mu);
	for (struct img *im = S.imgs; im; im = im->next) {
		char *shm = malloc(strlen(im->path) + 5);

		sprintf(shm, "%s-shm", im->path);
		unlink(shm);
		free(shm);
		if (im->exists)
			write_file(im->path, im->data, im->len, 0, true);
		else
			unlink(im->path);
	}
	if (tear && S.last_img && S.last_img->exists && S.last_len > 1)
		write_file(S.last_img->path, S.last_data, S.last_len / 2,
			   S.last_off, false);
	pthread_mutex_unlock(&S.mu);
}
