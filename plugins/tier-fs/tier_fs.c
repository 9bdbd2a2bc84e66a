/*
 * tier-fs: a storage tier in a local directory (or any mounted file
 * system: NFS, a FUSE bucket mount). Objects are files under `root`,
 * named by their keys ("orders/0/00000000000000001234-18c2f.log"); each
 * is written to a temporary name, fsync'd, renamed into place and its
 * directory fsync'd, so a reader never sees a partial object and a
 * reported upload survives a crash.
 *
 * The operations block (plain file I/O), so the tier registers with
 * SKALD_TIER_BLOCKING and the broker runs them on its pool threads.
 *
 *	plugins:
 *	  - path: build/plugins/tier-fs.so
 *	    config: { root: /var/lib/skald-tier }
 *	storage:
 *	  tier: tier-fs
 */
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <skald/host.h>

#define COPY_CHUNK (1 << 20)

/* Error messages name long paths and are cut to fit, on purpose. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

static const struct skald_config_key tier_fs_schema[] = {
	{ "root", SKALD_CONFIG_STRING, SKALD_CONFIG_REQUIRED, NULL, 1, 4000,
	  NULL, "Directory holding the objects; created if missing." },
	{ "fsync", SKALD_CONFIG_BOOL, 0, "true", 0, 0, NULL,
	  "fsync objects and directories before reporting an upload (turn "
	  "off only for tests)." },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL },
};

struct tier_fs {
	const struct skald_host *host;
	char root[4096];
	int fsync;
	struct skald_metric *written, *read;
};

/* mkdir -p of the directory part of path. */
static int make_parents(char *path)
{
	for (char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST) {
			int e = errno;

			*s = '/';
			return -e;
		}
		*s = '/';
	}
	return 0;
}

static int fsync_parent(const char *path)
{
	char dir[4200];
	char *slash;
	int fd, rc = 0;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		return 0;
	*slash = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* Copy len bytes of fd (from 0) into the object path, atomically. */
static int put_file(struct tier_fs *t, const char *path, int fd, uint64_t len,
		    char *buf, char *msg, size_t cap)
{
	char tmp[4200];
	uint64_t pos = 0;
	int out, rc = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		rc = -errno;
		snprintf(msg, cap, "cannot create %s: %s", tmp, strerror(-rc));
		return rc;
	}
	while (pos < len && !rc) {
		size_t want = len - pos < COPY_CHUNK ? (size_t)(len - pos)
						     : COPY_CHUNK;
		ssize_t n = pread(fd, buf, want, (off_t)pos);

		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			snprintf(msg, cap, "cannot read the segment: %s",
				 n < 0 ? strerror(errno) : "short file");
			break;
		}
		if (write(out, buf, (size_t)n) != n) {
			rc = -errno ? -errno : -EIO;
			snprintf(msg, cap, "cannot write %s: %s", tmp,
				 strerror(-rc));
			break;
		}
		pos += (uint64_t)n;
	}
	if (!rc && t->fsync && fsync(out) < 0) {
		rc = -errno;
		snprintf(msg, cap, "cannot fsync %s: %s", tmp, strerror(-rc));
	}
	if (close(out) < 0 && !rc) {
		rc = -errno;
		snprintf(msg, cap, "cannot close %s: %s", tmp, strerror(-rc));
	}
	if (!rc && rename(tmp, path) < 0) {
		rc = -errno;
		snprintf(msg, cap, "cannot rename %s: %s", tmp, strerror(-rc));
	}
	if (!rc && t->fsync)
		rc = fsync_parent(path);
	if (rc)
		unlink(tmp);
	else
		t->host->metric_add(t->written, (double)len);
	return rc;
}

static int fs_upload(void *tier, struct skald_tier_op *op,
		     const struct skald_tier_segment *seg)
{
	struct tier_fs *t = tier;
	const struct skald_host *h = t->host;
	char path[4200], msg[512] = "";
	char *buf;
	int rc = 0;

	if (!skald_tier_key_ok(seg->key))
		return -EINVAL;
	buf = h->mem_alloc(h, COPY_CHUNK);
	if (!buf)
		return -ENOMEM;
	/* The .log last: its presence means the segment is whole. */
	for (uint32_t k = seg->n_files; k-- > 0 && !rc;) {
		const struct skald_tier_file *f = seg->files[k];

		snprintf(path, sizeof(path), "%s/%s%s", t->root, seg->key,
			 f->suffix);
		rc = make_parents(path);
		if (rc) {
			snprintf(msg, sizeof(msg),
				 "cannot create directories "
				 "for %s: %s",
				 path, strerror(-rc));
			break;
		}
		rc = put_file(t, path, f->fd, f->size, buf, msg, sizeof(msg));
	}
	h->mem_free(h, buf);
	h->tier_done(h, op, rc, msg[0] ? msg : NULL);
	return 0;
}

static int fs_download(void *tier, struct skald_tier_op *op,
		       const struct skald_tier_get *get)
{
	struct tier_fs *t = tier;
	const struct skald_host *h = t->host;
	char path[4200], msg[512] = "";
	uint64_t pos = get->offset, end, done = 0;
	struct stat st;
	char *buf;
	int fd, rc = 0;

	if (!skald_tier_key_ok(get->key))
		return -EINVAL;
	snprintf(path, sizeof(path), "%s/%s", t->root, get->key);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(msg, sizeof(msg), "cannot open %s: %s", path,
			 strerror(errno));
		h->tier_done(h, op, rc, msg);
		return 0;
	}
	buf = h->mem_alloc(h, COPY_CHUNK);
	if (!buf || fstat(fd, &st) < 0) {
		rc = buf ? -errno : -ENOMEM;
		goto out;
	}
	end = get->length ? get->offset + get->length : (uint64_t)st.st_size;
	if (end > (uint64_t)st.st_size)
		end = (uint64_t)st.st_size;
	while (pos < end) {
		size_t want = end - pos < COPY_CHUNK ? (size_t)(end - pos)
						     : COPY_CHUNK;
		ssize_t n = pread(fd, buf, want, (off_t)pos);

		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			snprintf(msg, sizeof(msg), "cannot read %s", path);
			break;
		}
		if (pwrite(get->fd, buf, (size_t)n, (off_t)done) != n) {
			rc = -errno ? -errno : -EIO;
			snprintf(msg, sizeof(msg),
				 "cannot write the download: "
				 "%s",
				 strerror(-rc));
			break;
		}
		pos += (uint64_t)n;
		done += (uint64_t)n;
	}
	if (!rc)
		h->metric_add(t->read, (double)done);
out:
	h->mem_free(h, buf);
	close(fd);
	h->tier_done(h, op, rc, msg[0] ? msg : NULL);
	return 0;
}

static int fs_remove(void *tier, struct skald_tier_op *op,
		     const struct skald_tier_segment *seg)
{
	struct tier_fs *t = tier;
	char path[4200], msg[512] = "";
	int rc = 0;

	if (!skald_tier_key_ok(seg->key))
		return -EINVAL;
	for (uint32_t k = 0; k < seg->n_files; k++) {
		snprintf(path, sizeof(path), "%s/%s%s", t->root, seg->key,
			 seg->files[k]->suffix);
		if (unlink(path) < 0 && errno != ENOENT && !rc) {
			rc = -errno;
			snprintf(msg, sizeof(msg), "cannot remove %s: %s", path,
				 strerror(errno));
		}
	}
	t->host->tier_done(t->host, op, rc, msg[0] ? msg : NULL);
	return 0;
}

/* Report every object below dir (key so far: rel) starting with prefix. */
static int walk(struct tier_fs *t, struct skald_tier_op *op, const char *dir,
		const char *rel, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while (!rc && (de = readdir(d)) != NULL) {
		char path[4200], key[4200];
		size_t plen = strlen(prefix), klen;
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		snprintf(key, sizeof(key), "%s%s%s", rel, *rel ? "/" : "",
			 de->d_name);
		if (stat(path, &st) < 0)
			continue;
		klen = strlen(key);
		if (strncmp(key, prefix, klen < plen ? klen : plen) != 0)
			continue; /* neither a prefix of it nor under it */
		if (S_ISDIR(st.st_mode)) {
			rc = walk(t, op, path, key, prefix);
		} else if (S_ISREG(st.st_mode) && klen >= plen &&
			   !strstr(de->d_name, ".tmp.")) {
			rc = t->host->tier_list_add(t->host, op, key,
						    (uint64_t)st.st_size);
		}
	}
	closedir(d);
	return rc;
}

static int fs_list(void *tier, struct skald_tier_op *op, const char *prefix)
{
	struct tier_fs *t = tier;
	int rc = walk(t, op, t->root, "", prefix);

	t->host->tier_done(t->host, op, rc, NULL);
	return 0;
}

static const struct skald_storage_tier_ops tier_fs_ops = {
	sizeof(struct skald_storage_tier_ops),
	SKALD_TIER_BLOCKING,
	fs_upload,
	fs_download,
	fs_remove,
	fs_list,
};

static int tier_fs_init(const struct skald_host *h,
			const struct skald_config *config, void **state,
			struct skald_error *err)
{
	struct tier_fs *t = h->mem_alloc(h, sizeof(*t));
	char probe[4200];
	int rc;

	if (!t)
		return -ENOMEM;
	memset(t, 0, sizeof(*t));
	t->host = h;
	snprintf(t->root, sizeof(t->root), "%s",
		 h->config_string(config, "root"));
	t->fsync = h->config_bool(config, "fsync");
	/* Created if missing (init runs before the loop: blocking is fine). */
	snprintf(probe, sizeof(probe), "%s/x", t->root);
	rc = make_parents(probe);
	if (rc) {
		snprintf(err->msg, sizeof(err->msg), "cannot create %s: %s",
			 t->root, strerror(-rc));
		h->mem_free(h, t);
		return rc;
	}
	t->written = h->metric_counter(h, "tier_fs_bytes_written_total",
				       "Bytes written to the tier directory",
				       NULL, 0);
	t->read = h->metric_counter(h, "tier_fs_bytes_read_total",
				    "Bytes read from the tier directory", NULL,
				    0);
	rc = h->register_storage_tier(h, &tier_fs_ops, t);
	if (rc) {
		snprintf(err->msg, sizeof(err->msg),
			 "register_storage_tier: %s", strerror(-rc));
		h->mem_free(h, t);
		return rc;
	}
	h->log(h, SKALD_LOG_INFO, "objects in %s%s", t->root,
	       t->fsync ? "" : " (fsync off)");
	*state = t;
	return 0;
}

static void tier_fs_fini(void *state)
{
	struct tier_fs *t = state;

	t->host->mem_free(t->host, t);
}

SKALD_EXPORT const struct skald_plugin_desc skald_plugin_desc = {
	SKALD_PLUGIN_ABI,
	"tier-fs",
	"1.0.0",
	"Storage tier in a local directory",
	SKALD_PROVIDES_STORAGE_TIER,
	tier_fs_schema,
	tier_fs_init,
	NULL,
	NULL,
	tier_fs_fini,
};
