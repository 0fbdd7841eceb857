/* Writing a fresh metadata file (init-metadata). The file is created or
 * extended as needed, and a file that already holds metadata (or is the
 * disk itself) is never reset by accident: a reset throws away every
 * FETCHED and WRITTEN bit, so it needs --force (see docs/differences.md). */
#include "meta/meta.h"

#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEVICE_DEPTH 4

/* Opens the path without following a symlink, creating it (0600) when
 * missing. Only a regular file is accepted. */
static int open_file(const char *path, int *fd_out, bool *created, struct error *err)
{
	/* O_NONBLOCK: opening a FIFO or device by mistake must not hang. */
	int flags = O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
	int fd = open(path, flags | O_CREAT | O_EXCL, 0600);
	*created = fd >= 0;
	if (fd < 0 && errno == EEXIST)
		fd = open(path, flags);
	if (fd < 0 && errno == ELOOP)
		return error_set(err, -ELOOP,
				 "%s is a symbolic link; metadata_path must name the file itself",
				 path);
	if (fd < 0)
		return error_set(err, -errno, "cannot open the metadata file %s: %s", path,
				 strerror(errno));
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		rc = error_set(err, -EINVAL, "%s is not a regular file", path);
	/* umask must not leave the new file looser or tighter than 0600. */
	else if (*created && fchmod(fd, 0600) < 0)
		rc = error_set(err, -errno, "cannot set the mode of %s: %s", path, strerror(errno));
	if (rc < 0) {
		close(fd);
		if (*created)
			unlink(path);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

static bool is_same_file(const struct stat *st, const char *other)
{
	struct stat o;
	return other && stat(other, &o) == 0 && o.st_dev == st->st_dev && o.st_ino == st->st_ino;
}

static struct bdev_file_options device_options(const struct meta_init_options *opts, bool read_only)
{
	return (struct bdev_file_options){
	    .path = opts->path,
	    .engine = opts->engine,
	    .read_only = read_only,
	    .direct = true,
	    .write_through = opts->write_through,
	    .queue_depth = DEVICE_DEPTH,
	};
}

/* The file's device, with opts->wrap's layer over it when given; close both
 * with close_device(). */
static int open_device(const struct meta_init_options *opts, bool read_only, struct bdev **file,
		       struct bdev **dev, struct error *err)
{
	struct bdev_file_options dev_opts = device_options(opts, read_only);
	int rc = bdev_open_file(&dev_opts, file, err);
	if (rc < 0 || !opts->wrap) {
		*dev = rc < 0 ? NULL : *file;
		return rc;
	}
	rc = opts->wrap(opts->wrap_ctx, *file, dev, err);
	if (rc < 0)
		bdev_close(*file);
	return rc;
}

static void close_device(struct bdev *file, struct bdev *dev)
{
	if (dev != file)
		bdev_close(dev);
	bdev_close(file);
}

/* A file holding metadata (or something with our magic that this version
 * cannot read) is only reset with force. Anything else is free to use. */
static int check_not_in_use(const struct meta_init_options *opts, struct error *err)
{
	struct bdev *file, *dev;
	int rc = open_device(opts, true, &file, &dev, err);
	if (rc < 0)
		return rc;
	struct metadata old;
	struct error why = {0};
	rc = meta_load(dev, META_LOAD_ALL, &old, &why);
	close_device(file, dev);
	if (rc == -EBADMSG)
		return 0; /* no metadata there */
	if (rc == 0) {
		struct meta_counts c;
		meta_count(&old, 0, old.header_count, &c);
		meta_free(&old);
		if (!opts->force)
			return error_set(
			    err, -EEXIST,
			    "%s is already initialised (%llu of %llu stripes fetched); use "
			    "--force to reset it",
			    opts->path, (unsigned long long)c.fetched,
			    (unsigned long long)(c.fetched + c.not_fetched));
		log_warn("%s: resetting metadata with %llu fetched and %llu written stripes",
			 opts->path, (unsigned long long)c.fetched, (unsigned long long)c.written);
		return 0;
	}
	if (rc == -EPROTONOSUPPORT || rc == -EINVAL)
		return opts->force
			   ? 0
			   : error_set(err, -EEXIST,
				       "%s holds metadata this tool cannot use (%s); use --force "
				       "to reset it",
				       opts->path, why.text);
	return error_set(err, rc, "cannot read the metadata file %s: %s", opts->path, why.text);
}

/* Checks the existing file and brings it to at least min_size bytes. */
static int prepare(const struct meta_init_options *opts, int fd, bool created, uint64_t min_size,
		   struct error *err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return error_set(err, -errno, "cannot stat %s: %s", opts->path, strerror(errno));
	/* A metadata_path naming the disk or the image (a copy-and-paste slip)
	 * would have that file overwritten with headers. */
	for (const char *const *p = opts->protected_paths; p && *p; p++)
		if (is_same_file(&st, *p))
			return error_set(err, -EINVAL,
					 "metadata_path %s is the same file as %s (the disk or "
					 "the image); refusing to overwrite it",
					 opts->path, *p);
	uint64_t size = (uint64_t)st.st_size;
	int rc = 0;
	if (!created && size >= SECTOR_SIZE && size % SECTOR_SIZE == 0)
		rc = check_not_in_use(opts, err);
	else if (size >= min_size && size % SECTOR_SIZE)
		rc = error_set(err, -EINVAL, "%s: size %llu is not a multiple of %u", opts->path,
			       (unsigned long long)size, SECTOR_SIZE);
	/* Extended, never shrunk: surplus headers are zero ("no source"). */
	if (rc == 0 && size < min_size && ftruncate(fd, (off_t)min_size) < 0)
		rc = error_set(err, -errno, "cannot extend %s to %llu bytes: %s", opts->path,
			       (unsigned long long)min_size, strerror(errno));
	return rc;
}

/* Makes a new file's directory entry durable too. */
static int sync_parent_dir(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static int save(const struct meta_init_options *opts, const struct metadata *m, struct error *err)
{
	struct bdev *file, *dev;
	int rc = open_device(opts, false, &file, &dev, err);
	if (rc < 0)
		return rc;
	rc = meta_save(dev, m, err);
	close_device(file, dev);
	if (rc < 0)
		error_prefix(err, "Failed to save metadata to %s: ", opts->path);
	return rc;
}

int meta_init_file(const struct meta_init_options *opts, const struct metadata *m,
		   struct error *err)
{
	if (m->header_count > UINT64_MAX - 2 * SECTOR_SIZE)
		return error_set(err, -EINVAL, "too many stripe headers");
	uint64_t min_size =
	    (SECTOR_SIZE + m->header_count + SECTOR_SIZE - 1) / SECTOR_SIZE * SECTOR_SIZE;
	int fd = -1;
	bool created = false;
	int rc = open_file(opts->path, &fd, &created, err);
	if (rc < 0)
		return rc;
	rc = prepare(opts, fd, created, min_size, err);
	if (rc == 0)
		rc = save(opts, m, err);
	if (rc == 0) {
		/* Covers the size change even when the writes went out O_SYNC. */
		rc = fsync(fd) < 0 ? -errno : created ? sync_parent_dir(opts->path) : 0;
		if (rc < 0)
			error_set(err, rc, "cannot sync %s: %s", opts->path, strerror(-rc));
	}
	close(fd);
	/* A half-made file must not be mistaken for one written by us. */
	if (rc < 0 && created)
		unlink(opts->path);
	return rc;
}
