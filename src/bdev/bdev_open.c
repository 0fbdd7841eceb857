/* Device construction: checking the file once, up front, so that a bad path
 * or option fails at start-up with one clear line instead of at the first
 * channel.
 *
 * The device keeps the descriptor it opened the file with, and each channel
 * reopens that descriptor (bdev_open_channel_fd), never the path: a front end
 * that reconnects an hour later must reach the same file even if the path
 * has been renamed or replaced meanwhile, or it would be told one file's
 * size while reading and growing another. */
#include "bdev/bdev_internal.h"

#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

/* Bounce buffers are never aligned beyond this, whatever statfs says. */
#define MAX_BUFFER_ALIGNMENT (1u << 30)

static const struct bdev_engine_ops *engine_ops(enum bdev_engine engine)
{
	switch (engine) {
	case BDEV_ENGINE_IO_URING:
		return &bdev_uring_ops;
	case BDEV_ENGINE_SYNC:
		return &bdev_sync_ops;
	case BDEV_ENGINE_NULL:
		return &bdev_null_ops;
	}
	return NULL;
}

static int channel_open_flags(const struct bdev *dev)
{
	int flags = (dev->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	if (dev->direct)
		flags |= O_DIRECT;
	if (dev->write_through)
		flags |= O_SYNC;
	return flags;
}

int bdev_open_channel_fd(const struct bdev *dev)
{
	/* A fresh open file description of the same inode (its own file
	 * reference, so channels on different threads share no refcount),
	 * whatever has become of the path since. */
	char self[32];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", dev->file_fd);
	int fd = open(self, channel_open_flags(dev));
	if (fd >= 0)
		return fd;
	if (errno != ENOENT)
		return -errno;
	/* No /proc: share the device's own description (same flags). */
	fd = fcntl(dev->file_fd, F_DUPFD_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
}

/* Size in bytes of a regular file or block device. */
static int device_size(const char *path, uint64_t *size, struct stat *out_st, struct error *err)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return error_set(err, -errno, "%s: %s", path, strerror(errno));
	*out_st = st;
	if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return 0;
	}
	if (!S_ISBLK(st.st_mode))
		return error_set(err, -EINVAL, "%s: not a regular file or block device", path);
	/* st_size is 0 for device nodes; only the device knows its size. */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return error_set(err, -errno, "%s: %s", path, strerror(errno));
	int rc = 0;
	if (ioctl(fd, BLKGETSIZE64, size) < 0)
		rc = error_set(err, -errno, "%s: cannot read block device size: %s", path,
			       strerror(errno));
	close(fd);
	return rc;
}

static int buffer_alignment_for(const char *path, uint32_t *alignment, struct error *err)
{
	struct statfs sfs;
	if (statfs(path, &sfs) < 0)
		return error_set(err, -errno, "%s: statfs failed: %s", path, strerror(errno));
	uint64_t bsize = sfs.f_bsize > 0 ? (uint64_t)sfs.f_bsize : 0;
	if (bsize > MAX_BUFFER_ALIGNMENT)
		return error_set(err, -EINVAL, "%s: filesystem block size %llu is too large", path,
				 (unsigned long long)bsize);
	uint32_t align = BUFFER_ALIGNMENT;
	while (align < bsize)
		align <<= 1; /* buffer_alloc needs a power of two */
	*alignment = align;
	return 0;
}

/* Whether hole punching (discard) and range zeroing can work on the file.
 * A regular file is asked directly: punching a hole past its end changes
 * nothing, but a filesystem without the operation refuses it. A block device
 * zeroes ranges when its queue says it can write zeroes. */
static bool probe_discard(const struct bdev *dev)
{
	if (dev->read_only)
		return false;
	struct stat st;
	if (fstat(dev->file_fd, &st) < 0)
		return false;
	if (S_ISBLK(st.st_mode)) {
		char sysfs[96];
		snprintf(sysfs, sizeof(sysfs), "/sys/dev/block/%u:%u/queue/write_zeroes_max_bytes",
			 major(st.st_rdev), minor(st.st_rdev));
		FILE *f = fopen(sysfs, "re");
		unsigned long long max_bytes = 0;
		if (f) {
			if (fscanf(f, "%llu", &max_bytes) != 1)
				max_bytes = 0;
			fclose(f);
		}
		return max_bytes > 0;
	}
	off_t past_end = (off_t)(dev->sectors * SECTOR_SIZE) + BUFFER_ALIGNMENT;
	return fallocate(dev->file_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, past_end,
			 BUFFER_ALIGNMENT) == 0;
}

/* Opens the file the way channels will, so that permissions, a read-only
 * mount or a filesystem without O_DIRECT show up now, and keeps the
 * descriptor for the channels to reopen. The file must still be the one
 * device_size() looked at (the path may
 * have been replaced in between). */
static int open_file_fd(struct bdev *dev, const struct stat *checked, struct error *err)
{
	int fd = open(dev->path, channel_open_flags(dev));
	if (fd < 0) {
		int rc = -errno;
		if (rc == -EINVAL && dev->direct)
			return error_set(err, rc, "%s: cannot open with O_DIRECT (%s)", dev->path,
					 strerror(-rc));
		return error_set(err, rc, "%s: cannot open %s: %s", dev->path,
				 dev->read_only ? "read-only" : "read-write", strerror(-rc));
	}
	dev->file_fd = fd;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return error_set(err, -errno, "%s: %s", dev->path, strerror(errno));
	if (st.st_dev != checked->st_dev || st.st_ino != checked->st_ino)
		return error_set(err, -EAGAIN, "%s: the file changed while it was being opened",
				 dev->path);
	return 0;
}

int bdev_open_file(const struct bdev_file_options *opts, struct bdev **out, struct error *err)
{
	if (!opts->path || !opts->path[0])
		return error_set(err, -EINVAL, "no file path given");
	const char *path = opts->path;
	const struct bdev_engine_ops *ops = engine_ops(opts->engine);
	if (!ops)
		return error_set(err, -EINVAL, "%s: unknown I/O engine %d", path,
				 (int)opts->engine);
	if (opts->engine == BDEV_ENGINE_IO_URING &&
	    (!is_power_of_two(opts->queue_depth) || opts->queue_depth > BDEV_MAX_DEPTH))
		return error_set(
		    err, -EINVAL,
		    "%s: io_uring queue depth %u is not a power of two between 1 and %u", path,
		    opts->queue_depth, BDEV_MAX_DEPTH);

	uint64_t size = 0;
	struct stat checked = {0};
	int rc = device_size(path, &size, &checked, err);
	if (rc < 0)
		return rc;
	if (size % SECTOR_SIZE)
		return error_set(err, -EINVAL, "%s: size %llu is not a multiple of %u", path,
				 (unsigned long long)size, SECTOR_SIZE);
	uint32_t alignment = BUFFER_ALIGNMENT;
	rc = buffer_alignment_for(path, &alignment, err);
	if (rc < 0)
		return rc;

	struct bdev *dev = calloc(1, sizeof(*dev));
	if (!dev)
		return error_set(err, -ENOMEM, "%s: out of memory", path);
	dev->path = strdup(path);
	if (!dev->path) {
		free(dev);
		return error_set(err, -ENOMEM, "%s: out of memory", path);
	}
	dev->file_fd = -1;
	dev->ops = ops;
	dev->engine = opts->engine;
	dev->read_only = opts->read_only;
	dev->direct = opts->direct;
	dev->write_through = opts->write_through;
	dev->queue_depth = opts->queue_depth;
	dev->alignment = alignment;
	dev->sectors = size / SECTOR_SIZE;

	/* The null engine never opens the file: it measures the front end alone. */
	if (dev->engine != BDEV_ENGINE_NULL) {
		rc = open_file_fd(dev, &checked, err);
		if (rc < 0) {
			bdev_close(dev);
			return rc;
		}
		dev->supports_discard = probe_discard(dev);
	} else {
		dev->supports_discard = true;
	}
	*out = dev;
	return 0;
}

int bdev_open_null(uint64_t sectors, struct bdev **out)
{
	struct bdev *dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	dev->file_fd = -1;
	dev->ops = &bdev_null_ops;
	dev->engine = BDEV_ENGINE_NULL;
	dev->alignment = BUFFER_ALIGNMENT;
	dev->sectors = sectors;
	dev->supports_discard = true;
	*out = dev;
	return 0;
}

void bdev_close(struct bdev *dev)
{
	if (!dev)
		return;
	if (dev->ops->device_close)
		dev->ops->device_close(dev);
	if (dev->file_fd >= 0)
		close(dev->file_fd);
	free(dev->path);
	free(dev);
}

uint64_t bdev_sector_count(const struct bdev *dev)
{
	return dev->sectors;
}

uint32_t bdev_buffer_alignment(const struct bdev *dev)
{
	return dev->alignment;
}

bool bdev_is_read_only(const struct bdev *dev)
{
	return dev->read_only;
}

bool bdev_supports_discard(const struct bdev *dev)
{
	return dev->supports_discard;
}

uint32_t bdev_queue_depth(const struct bdev *dev)
{
	return dev->queue_depth;
}
