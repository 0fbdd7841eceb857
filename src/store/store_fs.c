/* The filesystem store: object <name> is the file <base>/<name>. A few
 * worker threads carry out requests with blocking system calls, so the
 * owner never waits on the disk.
 *
 * A PUT writes a temporary file beside the object (a name starting with '.',
 * unique per process and request, created exclusively), fsyncs it, renames
 * it over the object and fsyncs the directory: a reader sees the old object
 * or the new one, never part of one, and a PUT that completed survives a
 * crash. Directories the store creates (the base, data/, any parent of a
 * name) are made durable the same way, by fsyncing their parent. */
#include "store/store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Blocking workers beyond this gain nothing on one file system; the owner's
 * `connections` asks for fewer. */
#define FS_STORE_MAX_THREADS 16

struct fs_store {
	char *base; /* as configured, for messages */
	int base_fd;
	uint32_t nthreads;
	pthread_t *threads;
	atomic_ulong tmp_counter;
};

static int fsync_dir_at(int dirfd, const char *path)
{
	int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* mkdir that tolerates an existing directory; when it created one, makes
 * the new entry durable by fsyncing the parent (parent_path relative to
 * dirfd). */
static int mkdir_durable_at(int dirfd, const char *path, const char *parent_path)
{
	if (mkdirat(dirfd, path, 0777) == 0)
		return fsync_dir_at(dirfd, parent_path);
	if (errno != EEXIST)
		return -errno;
	struct stat st;
	if (fstatat(dirfd, path, &st, 0) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Creates every missing directory of path (relative to dirfd, or absolute)
 * up to and including path itself (through its last component when
 * include_last, else only its parents). */
static int mkdir_parents_at(int dirfd, const char *path, bool include_last, char *failed,
			    size_t failed_size)
{
	size_t n = strlen(path);
	char *buf = malloc(n + 1);
	char *parent = malloc(n + 2);
	if (!buf || !parent) {
		free(buf);
		free(parent);
		return -ENOMEM;
	}
	memcpy(buf, path, n + 1);
	int rc = 0;
	for (size_t i = 1; i <= n && rc == 0; i++) {
		bool end = i == n;
		if (!(buf[i] == '/' || (end && include_last)))
			continue;
		if (!end && buf[i - 1] == '/')
			continue; /* "a//b" */
		char saved = buf[i];
		buf[i] = '\0';
		/* The parent of buf: up to its last '/', or "." */
		char *slash = strrchr(buf, '/');
		if (!slash)
			strcpy(parent, ".");
		else if (slash == buf)
			strcpy(parent, "/");
		else {
			memcpy(parent, buf, (size_t)(slash - buf));
			parent[slash - buf] = '\0';
		}
		rc = mkdir_durable_at(dirfd, buf, parent);
		if (rc && failed)
			snprintf(failed, failed_size, "%s", buf);
		buf[i] = saved;
	}
	free(buf);
	free(parent);
	return rc;
}

static void fs_get(struct fs_store *fs, struct store_request *req)
{
	int fd = openat(fs->base_fd, req->name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		/* A file where a directory of the name should be: no such object. */
		if (e == ENOENT || e == ENOTDIR)
			store_request_fail(req, -ENOENT, "no such object (%s/%s)", fs->base,
					   req->name);
		else
			store_request_fail(req, -e, "cannot open %s/%s: %s", fs->base, req->name,
					   strerror(e));
		return;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		store_request_fail(req, -errno, "cannot stat %s/%s: %s", fs->base, req->name,
				   strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		store_request_fail(req, -EISDIR, "%s/%s is not a regular file", fs->base,
				   req->name);
		goto out;
	}
	size_t size = (size_t)st.st_size;
	if ((uint64_t)st.st_size > req->max_bytes) {
		store_request_fail(req, -EFBIG, "object is %llu bytes, more than the %zu allowed",
				   (unsigned long long)st.st_size, req->max_bytes);
		goto out;
	}
	uint8_t *body = malloc(size ? size : 1);
	if (!body) {
		store_request_fail(req, -ENOMEM, "out of memory for %zu bytes", size);
		goto out;
	}
	size_t done = 0;
	while (done < size) {
		ssize_t r = pread(fd, body + done, size - done, (off_t)done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r < 0)
				store_request_fail(req, -errno, "cannot read %s/%s: %s", fs->base,
						   req->name, strerror(errno));
			else
				store_request_fail(req, -EIO, "%s/%s shrank while being read",
						   fs->base, req->name);
			free(body);
			goto out;
		}
		done += (size_t)r;
	}
	req->result = 0;
	req->body = body;
	req->body_len = size;
out:
	close(fd);
}

static void fs_head(struct fs_store *fs, struct store_request *req)
{
	struct stat st;
	if (fstatat(fs->base_fd, req->name, &st, 0) < 0) {
		int e = errno;
		if (e == ENOENT || e == ENOTDIR)
			store_request_fail(req, -ENOENT, "no such object (%s/%s)", fs->base,
					   req->name);
		else
			store_request_fail(req, -e, "cannot stat %s/%s: %s", fs->base, req->name,
					   strerror(e));
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		store_request_fail(req, -EISDIR, "%s/%s is not a regular file", fs->base,
				   req->name);
		return;
	}
	req->result = 0;
}

static int write_all(int fd, const uint8_t *data, size_t len)
{
	while (len) {
		ssize_t w = write(fd, data, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		data += w;
		len -= (size_t)w;
	}
	return 0;
}

static void fs_put(struct fs_store *fs, struct store_request *req)
{
	const char *name = req->name;
	const char *slash = strrchr(name, '/');
	char *dir = slash ? strndup(name, (size_t)(slash - name)) : strdup(".");
	const char *leaf = slash ? slash + 1 : name;
	char *tmp = NULL;
	int fd = -1;
	if (!dir) {
		store_request_fail(req, -ENOMEM, "out of memory");
		return;
	}
	if (slash) {
		char failed[PATH_MAX];
		int rc = mkdir_parents_at(fs->base_fd, dir, true, failed, sizeof(failed));
		if (rc) {
			store_request_fail(req, rc, "Failed to create dir %s/%s: %s", fs->base,
					   failed, strerror(-rc));
			goto out;
		}
	}
	for (int attempt = 0; fd < 0; attempt++) {
		free(tmp);
		tmp = NULL;
		unsigned long n = atomic_fetch_add(&fs->tmp_counter, 1);
		if (asprintf(&tmp, "%s%s.%s.tmp-%ld-%lu", slash ? dir : "", slash ? "/" : "", leaf,
			     (long)getpid(), n) < 0) {
			tmp = NULL;
			store_request_fail(req, -ENOMEM, "out of memory");
			goto out;
		}
		fd = openat(fs->base_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		/* Left by a crashed process with the same pid: try the next name. */
		if (fd < 0 && (errno != EEXIST || attempt > 100)) {
			store_request_fail(req, -errno, "cannot create %s/%s: %s", fs->base, tmp,
					   strerror(errno));
			free(tmp);
			tmp = NULL;
			goto out;
		}
	}
	int rc = write_all(fd, req->data, req->len);
	if (rc) {
		store_request_fail(req, rc, "Failed to write %s/%s: %s", fs->base, tmp,
				   strerror(-rc));
		goto out;
	}
	if (fsync(fd) < 0) {
		store_request_fail(req, -errno, "Failed to fsync %s/%s: %s", fs->base, tmp,
				   strerror(errno));
		goto out;
	}
	rc = close(fd) < 0 ? -errno : 0;
	fd = -1;
	if (rc) {
		store_request_fail(req, rc, "Failed to write %s/%s: %s", fs->base, tmp,
				   strerror(-rc));
		goto out;
	}
	if (renameat(fs->base_fd, tmp, fs->base_fd, name) < 0) {
		store_request_fail(req, -errno, "cannot rename %s/%s to %s: %s", fs->base, tmp,
				   name, strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL; /* renamed: nothing to clean up */
	rc = fsync_dir_at(fs->base_fd, dir);
	if (rc) {
		store_request_fail(req, rc, "Failed to fsync dir %s/%s: %s", fs->base, dir,
				   strerror(-rc));
		goto out;
	}
	req->result = 0;
out:
	if (fd >= 0)
		close(fd);
	if (tmp) {
		unlinkat(fs->base_fd, tmp, 0);
		free(tmp);
	}
	free(dir);
}

static void *fs_worker(void *arg)
{
	struct store *s = arg;
	struct fs_store *fs = store_backend(s);
	struct store_request *req;
	while ((req = store_request_next(s, true))) {
		switch (req->op) {
		case STORE_GET:
			fs_get(fs, req);
			break;
		case STORE_PUT:
			fs_put(fs, req);
			break;
		case STORE_HEAD:
			fs_head(fs, req);
			break;
		}
		store_request_complete(s, req);
	}
	return NULL;
}

static void fs_state_free(struct fs_store *fs)
{
	if (fs->base_fd >= 0)
		close(fs->base_fd);
	free(fs->threads);
	free(fs->base);
	free(fs);
}

static void fs_stop(struct store *s)
{
	struct fs_store *fs = store_backend(s);
	for (uint32_t i = 0; i < fs->nthreads; i++)
		pthread_join(fs->threads[i], NULL);
	fs_state_free(fs);
}

static const struct store_backend_ops fs_ops = {
    .wake = NULL, /* the workers wait in store_request_next */
    .stop = fs_stop,
};

int store_fs_open(const struct archive_source_config *cfg, const struct store_options *opts,
		  struct store **out, struct error *err)
{
	(void)opts;
	*out = NULL;
	if (!cfg->path || !*cfg->path)
		return error_set(err, -EINVAL, "filesystem store: no path");
	struct fs_store *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return error_set(err, -ENOMEM, "out of memory");
	fs->base_fd = -1;
	uint32_t n = cfg->connections ? cfg->connections : FS_STORE_MAX_THREADS;
	fs->nthreads = n > FS_STORE_MAX_THREADS ? FS_STORE_MAX_THREADS : n;
	fs->base = strdup(cfg->path);
	fs->threads = calloc(fs->nthreads, sizeof(*fs->threads));
	if (!fs->base || !fs->threads) {
		fs_state_free(fs);
		return error_set(err, -ENOMEM, "out of memory");
	}

	char failed[PATH_MAX];
	int rc = mkdir_parents_at(AT_FDCWD, fs->base, true, failed, sizeof(failed));
	if (rc) {
		error_set(err, rc, "Failed to create dir %s: %s", failed, strerror(-rc));
		fs_state_free(fs);
		return rc;
	}
	fs->base_fd = open(fs->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->base_fd < 0) {
		rc = -errno;
		error_set(err, rc, "cannot open store directory %s: %s", fs->base, strerror(-rc));
		fs_state_free(fs);
		return rc;
	}
	rc = mkdir_durable_at(fs->base_fd, "data", ".");
	if (rc) {
		error_set(err, rc, "Failed to create dir %s/data: %s", fs->base, strerror(-rc));
		fs_state_free(fs);
		return rc;
	}

	struct store *s;
	rc = store_alloc(&fs_ops, fs->nthreads, &s, err);
	if (rc) {
		fs_state_free(fs);
		return rc;
	}
	store_set_backend(s, fs);
	for (uint32_t i = 0; i < fs->nthreads; i++) {
		rc = thread_start(&fs->threads[i], "store-fs", fs_worker, s);
		if (rc) {
			error_set(err, rc, "cannot start a filesystem store thread: %s",
				  strerror(-rc));
			/* Those started exit once the store closes. */
			fs->nthreads = i;
			store_close(s);
			return rc;
		}
	}
	*out = s;
	return 0;
}
