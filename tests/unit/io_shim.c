/*
 * The test I/O layer (see io_shim.h): core/io.h's functions for
 * -DSK_IO_TEST builds, with a model of what is durable.
 *
 * The model: an inode per regular file seen (its durable bytes and the
 * writes and truncations since its last sync), a directory object per
 * directory seen (its durable entries, its current entries and the
 * entry operations since its last sync), and which inode each open fd
 * writes. Reads never come here: the files on disk are the current state,
 * the model only says what a power loss keeps. Syncs of tracked files
 * are not passed to the system (the model makes them durable), which
 * keeps a test walking thousands of crash points fast.
 */
#include "io_shim.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"

#ifndef SK_IO_TEST
#error "io_shim.c implements core/io.h for -DSK_IO_TEST builds"
#endif

#define MAX_FD 4096

/* A write (data != NULL) or a truncation, since the last sync. */
struct pend {
	off_t off; /* write position, or the new size */
	size_t len;
	uint8_t *data;
};

struct inode {
	uint8_t *dur; /* durable content */
	size_t dlen;
	struct pend *p; /* since the last sync, in order */
	size_t np, cap;
};

/* A directory entry: a file (inode) or a subdirectory (dir). */
struct dent {
	char *name;
	bool is_dir;
	int id; /* index into ino[] or dirs[] */
};

enum dop_kind { DOP_ADD, DOP_DEL, DOP_MOVE };

/* An entry operation since the directory's last sync. */
struct dop {
	enum dop_kind kind;
	struct dent e; /* DOP_ADD: the entry; DEL, MOVE: e.name */
	char *to;      /* DOP_MOVE: the new name */
};

struct dir {
	char *path;
	struct dent *dur, *cur;
	size_t ndur, ncur, capdur, capcur;
	struct dop *ops;
	size_t nops, capops;
};

static struct {
	pthread_mutex_t mu;
	char *root;
	struct inode *ino;
	size_t nino, capino;
	struct dir *dirs;
	size_t ndirs, capdirs;
	int fd_ino[MAX_FD]; /* inode + 1 written through the fd, 0: none */
	uint64_t ops;
	uint64_t count[8];
	uint64_t crash_at;
	bool crashed;
	/* the failure rule */
	unsigned fail_mask;
	uint64_t fail_left; /* matching ops until the failing one */
	int fail_err;
	bool fail_sticky, fail_short, fail_fired, fail_on;
} io = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		abort();
	return p;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);

	if (!d)
		abort();
	return d;
}

#define PUSH(arr, n, cap)                                                  \
	(((n) == (cap) ? ((cap) = (cap) ? (cap)*2 : 8,                     \
			  (arr) = xrealloc((arr), (cap) * sizeof(*(arr)))) \
		       : 0),                                               \
	 &(arr)[(n)++])

/* ------------------------------------------------------------ model */

static int new_inode(const uint8_t *content, size_t len)
{
	struct inode *in = PUSH(io.ino, io.nino, io.capino);

	memset(in, 0, sizeof(*in));
	if (len) {
		in->dur = xrealloc(NULL, len);
		memcpy(in->dur, content, len);
	}
	in->dlen = len;
	return (int)(io.nino - 1);
}

static int new_dir(const char *path)
{
	struct dir *d = PUSH(io.dirs, io.ndirs, io.capdirs);

	memset(d, 0, sizeof(*d));
	d->path = xstrdup(path);
	return (int)(io.ndirs - 1);
}

static struct dir *find_dir(const char *path)
{
	for (size_t i = 0; i < io.ndirs; i++)
		if (strcmp(io.dirs[i].path, path) == 0)
			return &io.dirs[i];
	return NULL;
}

static struct dent *find_ent(struct dent *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

static void del_ent(struct dent *v, size_t *n, const char *name)
{
	struct dent *e = find_ent(v, *n, name);

	if (!e)
		return;
	free(e->name);
	*e = v[--*n];
}

static void add_ent(struct dent **v, size_t *n, size_t *cap,
		    const struct dent *e)
{
	struct dent *slot;

	del_ent(*v, n, e->name);
	slot = PUSH(*v, *n, *cap);
	*slot = *e;
	slot->name = xstrdup(e->name);
}

/* Apply an entry operation to an entry list. */
static void apply_dop(struct dent **v, size_t *n, size_t *cap,
		      const struct dop *op)
{
	struct dent *e, moved;

	switch (op->kind) {
	case DOP_ADD:
		add_ent(v, n, cap, &op->e);
		break;
	case DOP_DEL:
		del_ent(*v, n, op->e.name);
		break;
	case DOP_MOVE:
		e = find_ent(*v, *n, op->e.name);
		if (!e)
			break;
		moved = *e;
		moved.name = op->to;
		add_ent(v, n, cap, &moved);
		del_ent(*v, n, op->e.name);
		break;
	}
}

static void dir_op(struct dir *d, enum dop_kind kind, const char *name,
		   bool is_dir, int id, const char *to)
{
	struct dop *op = PUSH(d->ops, d->nops, d->capops);

	op->kind = kind;
	op->e.name = xstrdup(name);
	op->e.is_dir = is_dir;
	op->e.id = id;
	op->to = to ? xstrdup(to) : NULL;
	apply_dop(&d->cur, &d->ncur, &d->capcur, op);
}

/* Split path into its tracked directory and base name; NULL: untracked. */
static struct dir *locate(const char *path, const char **base)
{
	const char *slash = strrchr(path, '/');
	char *dpath;
	struct dir *d;

	if (!io.root || !slash)
		return NULL;
	dpath = strndup(path, (size_t)(slash - path));
	d = find_dir(dpath);
	free(dpath);
	*base = slash + 1;
	return d;
}

static uint8_t *read_all(int wfd, size_t *len)
{
	char path[64];
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd;

	/* The fd may be write-only: read the same inode through /proc. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", wfd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		abort();
	buf = xrealloc(NULL, (size_t)st.st_size);
	while (got < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got,
				  (off_t)got);

		if (n <= 0)
			abort();
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return buf;
}

/* Record a directory (and what is in it) as durable, recursively. */
static int scan_tree(const char *path)
{
	int id = new_dir(path);
	DIR *dh = opendir(path);
	struct dirent *de;

	if (!dh)
		abort();
	while ((de = readdir(dh)) != NULL) {
		char *sub;
		struct stat st;
		struct dent e = { de->d_name, false, 0 };

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (asprintf(&sub, "%s/%s", path, de->d_name) < 0)
			abort();
		if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) {
			e.is_dir = true;
			e.id = scan_tree(sub);
		} else {
			int fd = open(sub, O_RDONLY | O_CLOEXEC);
			size_t len = 0;
			uint8_t *c = fd >= 0 ? read_all(fd, &len) : NULL;

			if (fd >= 0)
				close(fd);
			e.id = new_inode(c, len);
			free(c);
		}
		/* io.dirs may have moved during the recursion. */
		add_ent(&io.dirs[id].dur, &io.dirs[id].ndur,
			&io.dirs[id].capdur, &e);
		add_ent(&io.dirs[id].cur, &io.dirs[id].ncur,
			&io.dirs[id].capcur, &e);
		free(sub);
	}
	closedir(dh);
	return id;
}

static void free_model(void)
{
	for (size_t i = 0; i < io.nino; i++) {
		for (size_t k = 0; k < io.ino[i].np; k++)
			free(io.ino[i].p[k].data);
		free(io.ino[i].p);
		free(io.ino[i].dur);
	}
	for (size_t i = 0; i < io.ndirs; i++) {
		struct dir *d = &io.dirs[i];

		for (size_t k = 0; k < d->ndur; k++)
			free(d->dur[k].name);
		for (size_t k = 0; k < d->ncur; k++)
			free(d->cur[k].name);
		for (size_t k = 0; k < d->nops; k++) {
			free(d->ops[k].e.name);
			free(d->ops[k].to);
		}
		free(d->dur);
		free(d->cur);
		free(d->ops);
		free(d->path);
	}
	free(io.ino);
	free(io.dirs);
	io.ino = NULL;
	io.dirs = NULL;
	io.nino = io.capino = io.ndirs = io.capdirs = 0;
	memset(io.fd_ino, 0, sizeof(io.fd_ino));
	free(io.root);
	io.root = NULL;
}

void io_shim_reset(const char *root)
{
	pthread_mutex_lock(&io.mu);
	free_model();
	io.crash_at = 0;
	io.crashed = false;
	io.fail_on = false;
	if (root) {
		io.root = xstrdup(root);
		scan_tree(root);
	}
	pthread_mutex_unlock(&io.mu);
}

uint64_t io_shim_ops(void)
{
	uint64_t n;

	pthread_mutex_lock(&io.mu);
	n = io.ops;
	pthread_mutex_unlock(&io.mu);
	return n;
}

uint64_t io_shim_count(unsigned mask)
{
	uint64_t n = 0;

	pthread_mutex_lock(&io.mu);
	for (int i = 0; i < 8; i++)
		if (mask & (1u << i))
			n += io.count[i];
	pthread_mutex_unlock(&io.mu);
	return n;
}

void io_shim_fail(unsigned mask, uint64_t nth, int err, bool sticky,
		  bool short_write)
{
	pthread_mutex_lock(&io.mu);
	io.fail_mask = mask;
	io.fail_left = nth;
	io.fail_err = err;
	io.fail_sticky = sticky;
	io.fail_short = short_write;
	io.fail_fired = false;
	io.fail_on = true;
	pthread_mutex_unlock(&io.mu);
}

void io_shim_fail_clear(void)
{
	pthread_mutex_lock(&io.mu);
	io.fail_on = false;
	pthread_mutex_unlock(&io.mu);
}

bool io_shim_failed(void)
{
	bool f;

	pthread_mutex_lock(&io.mu);
	f = io.fail_fired;
	pthread_mutex_unlock(&io.mu);
	return f;
}

void io_shim_crash_at(uint64_t n)
{
	pthread_mutex_lock(&io.mu);
	io.crash_at = n;
	io.crashed = false;
	pthread_mutex_unlock(&io.mu);
}

bool io_shim_crashed(void)
{
	bool c;

	pthread_mutex_lock(&io.mu);
	c = io.crashed;
	pthread_mutex_unlock(&io.mu);
	return c;
}

/*
 * Account for a mutating operation of kind k about to happen. Returns 0
 * to go ahead, 1 to go ahead with a short write, or -1 with errno set:
 * crashed, or the failure rule hit.
 */
static int gate(unsigned k)
{
	int bit = __builtin_ctz(k);

	if (io.crashed) {
		errno = EIO;
		return -1;
	}
	if (io.crash_at && io.ops + 1 >= io.crash_at) {
		io.crashed = true;
		errno = EIO;
		return -1;
	}
	io.ops++;
	io.count[bit]++;
	if (io.fail_on && (io.fail_mask & k)) {
		if (io.fail_fired && io.fail_sticky) {
			errno = io.fail_err;
			return -1;
		}
		if (!io.fail_fired && io.fail_left > 0 && --io.fail_left == 0) {
			io.fail_fired = true;
			if (io.fail_short && k == IO_WRITE)
				return 1;
			errno = io.fail_err;
			return -1;
		}
	}
	return 0;
}

static struct inode *fd_inode(int fd)
{
	if (fd < 0 || fd >= MAX_FD || io.fd_ino[fd] == 0)
		return NULL;
	return &io.ino[io.fd_ino[fd] - 1];
}

static void pend(struct inode *in, off_t off, const void *data, size_t len)
{
	struct pend *p = PUSH(in->p, in->np, in->cap);

	p->off = off;
	p->len = len;
	p->data = NULL;
	if (data) {
		p->data = xrealloc(NULL, len);
		memcpy(p->data, data, len);
	}
}

/* ------------------------------------------------------------ io.h */

int sk_io_open(const char *path, int flags, mode_t mode)
{
	const char *base;
	struct dir *d;
	struct dent *e;
	bool creates;
	int fd, g = 0;

	pthread_mutex_lock(&io.mu);
	d = locate(path, &base);
	e = d ? find_ent(d->cur, d->ncur, base) : NULL;
	creates = (flags & O_CREAT) && (d ? !e : access(path, F_OK) < 0);
	if (creates || ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY))
		g = gate(IO_CREATE);
	if (g < 0) {
		pthread_mutex_unlock(&io.mu);
		return -1;
	}
	fd = open(path, flags, mode);
	if (fd >= 0 && d && fd < MAX_FD) {
		int id;

		if (e && !e->is_dir) {
			id = e->id;
			if (flags & O_TRUNC)
				pend(&io.ino[id], 0, NULL, 0);
		} else {
			id = new_inode(NULL, 0);
			dir_op(d, DOP_ADD, base, false, id, NULL);
		}
		io.fd_ino[fd] = id + 1;
	}
	pthread_mutex_unlock(&io.mu);
	return fd;
}

int sk_io_close(int fd)
{
	pthread_mutex_lock(&io.mu);
	if (fd >= 0 && fd < MAX_FD)
		io.fd_ino[fd] = 0;
	pthread_mutex_unlock(&io.mu);
	return close(fd);
}

static ssize_t do_write(int fd, const void *buf, size_t n, off_t off,
			bool positional)
{
	struct inode *in;
	ssize_t w;
	int g;

	pthread_mutex_lock(&io.mu);
	g = gate(IO_WRITE);
	if (g < 0) {
		pthread_mutex_unlock(&io.mu);
		return -1;
	}
	if (g == 1)
		n = n / 2 ? n / 2 : 0;
	if (g == 1 && n == 0) {
		errno = io.fail_err;
		pthread_mutex_unlock(&io.mu);
		return -1;
	}
	if (!positional)
		off = lseek(fd, 0, SEEK_CUR);
	w = positional ? pwrite(fd, buf, n, off) : write(fd, buf, n);
	in = fd_inode(fd);
	if (w > 0 && in)
		pend(in, off, buf, (size_t)w);
	pthread_mutex_unlock(&io.mu);
	return w;
}

ssize_t sk_io_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	return do_write(fd, buf, n, off, true);
}

ssize_t sk_io_write(int fd, const void *buf, size_t n)
{
	return do_write(fd, buf, n, 0, false);
}

static int do_sync(int fd, bool data_only)
{
	struct inode *in;
	int rc = 0;

	pthread_mutex_lock(&io.mu);
	if (gate(IO_SYNC) < 0) {
		pthread_mutex_unlock(&io.mu);
		return -1;
	}
	in = fd_inode(fd);
	if (in) {
		free(in->dur);
		in->dur = read_all(fd, &in->dlen);
		for (size_t k = 0; k < in->np; k++)
			free(in->p[k].data);
		in->np = 0;
	} else {
		rc = data_only ? fdatasync(fd) : fsync(fd);
	}
	pthread_mutex_unlock(&io.mu);
	return rc;
}

int sk_io_fdatasync(int fd)
{
	return do_sync(fd, true);
}

int sk_io_fsync(int fd)
{
	return do_sync(fd, false);
}

int sk_io_ftruncate(int fd, off_t len)
{
	struct inode *in;
	int rc;

	pthread_mutex_lock(&io.mu);
	if (gate(IO_TRUNC) < 0) {
		pthread_mutex_unlock(&io.mu);
		return -1;
	}
	rc = ftruncate(fd, len);
	in = fd_inode(fd);
	if (rc == 0 && in)
		pend(in, len, NULL, 0);
	pthread_mutex_unlock(&io.mu);
	return rc;
}

int sk_io_rename(const char *from, const char *to)
{
	const char *b1, *b2;
	struct dir *d1, *d2;
	int rc;

	pthread_mutex_lock(&io.mu);
	if (gate(IO_RENAME) < 0) {
		pthread_mutex_unlock(&io.mu);
		return -1;
	}
	rc = rename(from, to);
	d1 = locate(from, &b1);
	d2 = locate(to, &b2);
	if (rc == 0 && d1 && d1 == d2)
		dir_op(d1, DOP_MOVE, b1, false, 0, b2);
	else if (rc == 0 && (d1 || d2))
		abort(); /* across directories: not modelled */
	pthread_mutex_unlock(&io.mu);
	return rc;
}

int sk_io_unlink(const char *path)
{
	const char *base;
	struct dir *d;
	int rc;

	pthread_mutex_lock(&io.mu);
	if (gate(IO_UNLINK) < 0) {
		pthread_mutex_unlock(&io.mu);
		return -1;
	}
	rc = unlink(path);
	d = locate(path, &base);
	if (rc == 0 && d)
		dir_op(d, DOP_DEL, base, false, 0, NULL);
	pthread_mutex_unlock(&io.mu);
	return rc;
}

int sk_io_mkdir(const char *path, mode_t mode)
{
	const char *base;
	struct dir *d;
	int rc;

	pthread_mutex_lock(&io.mu);
	if (gate(IO_MKDIR) < 0) {
		pthread_mutex_unlock(&io.mu);
		return -1;
	}
	rc = mkdir(path, mode);
	d = locate(path, &base);
	if (rc == 0 && d) {
		ptrdiff_t di = d - io.dirs;
		int id = new_dir(path);

		dir_op(&io.dirs[di], DOP_ADD, base, true, id, NULL);
	}
	pthread_mutex_unlock(&io.mu);
	return rc;
}

int sk_io_fsync_dir(const char *path)
{
	struct dir *d;
	int rc = 0;

	pthread_mutex_lock(&io.mu);
	if (gate(IO_DIRSYNC) < 0) {
		pthread_mutex_unlock(&io.mu);
		return -1;
	}
	d = io.root ? find_dir(path) : NULL;
	if (d) {
		for (size_t k = 0; k < d->ndur; k++)
			free(d->dur[k].name);
		d->ndur = 0;
		for (size_t k = 0; k < d->ncur; k++)
			add_ent(&d->dur, &d->ndur, &d->capdur, &d->cur[k]);
		for (size_t k = 0; k < d->nops; k++) {
			free(d->ops[k].e.name);
			free(d->ops[k].to);
		}
		d->nops = 0;
	} else {
		int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		rc = fd < 0 ? -1 : fsync(fd);
		if (fd >= 0)
			close(fd);
	}
	pthread_mutex_unlock(&io.mu);
	return rc;
}

/* ------------------------------------------------------------ power loss */

/* xorshift64*, seeded per run */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* What an inode holds after the loss. */
static uint8_t *survivor(const struct inode *in, enum io_loss mode,
			 uint64_t *seed, size_t *len)
{
	size_t n = in->dlen, keep = 0;
	uint8_t *c = xrealloc(NULL, n);

	if (n)
		memcpy(c, in->dur, n);
	if (mode == IO_KEEP_PREFIX && in->np)
		keep = (size_t)(rnd(seed) % (in->np + 1));
	if (mode == IO_KEEP_SOME)
		keep = in->np;
	for (size_t k = 0; k < keep && k < in->np; k++) {
		const struct pend *p = &in->p[k];
		size_t w = p->len, end;

		if (mode == IO_KEEP_SOME && rnd(seed) % 2)
			continue;
		if (!p->data) {
			if ((size_t)p->off > n) {
				c = xrealloc(c, (size_t)p->off);
				memset(c + n, 0, (size_t)p->off - n);
			}
			n = (size_t)p->off;
			continue;
		}
		/* The last write kept may be torn; with reordering, any. */
		if ((k + 1 == keep || mode == IO_KEEP_SOME) && rnd(seed) % 2)
			w = (size_t)(rnd(seed) % (p->len + 1));
		end = (size_t)p->off + w;
		if (end > n) {
			c = xrealloc(c, end);
			if ((size_t)p->off > n)
				memset(c + n, 0, (size_t)p->off - n);
			n = end;
		}
		memcpy(c + p->off, p->data, w);
	}
	*len = n;
	return c;
}

static void rm_rf(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		DIR *dh = opendir(path);
		struct dirent *de;

		while (dh && (de = readdir(dh)) != NULL) {
			char *sub;

			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			if (asprintf(&sub, "%s/%s", path, de->d_name) < 0)
				abort();
			rm_rf(sub);
			free(sub);
		}
		if (dh)
			closedir(dh);
		rmdir(path);
	} else {
		unlink(path);
	}
}

/* Make directory d on disk hold what survives, recursively. */
static void materialize(int di, enum io_loss mode, uint64_t *seed)
{
	struct dent *fin = NULL;
	size_t nfin = 0, capfin = 0, keep = 0;
	struct dir *d = &io.dirs[di];
	DIR *dh = opendir(d->path);
	struct dirent *de;

	for (size_t k = 0; k < d->ndur; k++)
		add_ent(&fin, &nfin, &capfin, &d->dur[k]);
	/*
	 * Directory operations persist in order in both modes, as the
	 * metadata journal of ext4 or XFS keeps them: a prefix.
	 */
	if (mode != IO_LOSE_UNSYNCED && d->nops)
		keep = (size_t)(rnd(seed) % (d->nops + 1));
	for (size_t k = 0; k < keep; k++)
		apply_dop(&fin, &nfin, &capfin, &d->ops[k]);

	while (dh && (de = readdir(dh)) != NULL) {
		char *sub;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (asprintf(&sub, "%s/%s", d->path, de->d_name) < 0)
			abort();
		rm_rf(sub);
		free(sub);
	}
	if (dh)
		closedir(dh);
	for (size_t k = 0; k < nfin; k++) {
		char *sub;

		if (asprintf(&sub, "%s/%s", io.dirs[di].path, fin[k].name) < 0)
			abort();
		if (fin[k].is_dir) {
			if (mkdir(sub, 0755) < 0)
				abort();
			materialize(fin[k].id, mode, seed);
		} else {
			size_t len;
			uint8_t *c =
				survivor(&io.ino[fin[k].id], mode, seed, &len);
			int fd = open(sub,
				      O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
				      0644);

			if (fd < 0 ||
			    (len && write(fd, c, len) != (ssize_t)len))
				abort();
			close(fd);
			free(c);
		}
		free(sub);
		free(fin[k].name);
	}
	free(fin);
}

void io_shim_power_loss(enum io_loss mode, uint64_t seed)
{
	char *root;
	uint64_t s = seed * 2 + 1;

	pthread_mutex_lock(&io.mu);
	root = io.root ? xstrdup(io.root) : NULL;
	if (root)
		materialize(0, mode, &s);
	pthread_mutex_unlock(&io.mu);
	io_shim_reset(root);
	free(root);
}
