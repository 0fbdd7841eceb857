/* Loading and saving the metadata file through a struct bdev, so that the
 * crypt layer can be stacked under it without this code knowing. Each
 * request is waited for with a deadline: a hung device makes the tool or the
 * backend fail with a message instead of hanging. */
#include "meta/meta.h"

#include "common/common.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_NS	 (30ull * 1000 * 1000 * 1000)
#define IDLE_WAIT_MS	 10
#define CHANNEL_DEPTH	 2 /* one transfer, one flush */
#define REQUEST_TRANSFER 0
#define REQUEST_FLUSH	 1
/* A scan of the headers reads this much at a time (1 MiB). */
#define SCAN_CHUNK_SECTORS 2048u
/* One request covers what is read and its sector count is a u32: 2 TiB of
 * headers, far more than any disk needs. */
#define MAX_SECTORS UINT32_MAX

/* Sleeps until the channel may have a completion, at most IDLE_WAIT_MS. The
 * short cap covers completions that do not signal the fd (bdev.h). */
static void wait_for_activity(struct bdev_channel *ch)
{
	int fd = bdev_completion_fd(ch);
	if (fd < 0) {
		if (!bdev_busy(ch)) {
			struct timespec ms = {0, 1000 * 1000};
			nanosleep(&ms, NULL);
		}
		return;
	}
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	if (poll(&pfd, 1, IDLE_WAIT_MS) > 0 && (pfd.revents & POLLIN)) {
		uint64_t drained;
		if (read(fd, &drained, sizeof(drained)) < 0 && errno != EAGAIN)
			log_debug("metadata channel: reading the completion fd: %s",
				  strerror(errno));
	}
}

/* The result of request `id`, or -ETIMEDOUT after IO_TIMEOUT_NS. */
static int wait_for_request(struct bdev_channel *ch, uint64_t id)
{
	uint64_t deadline = now_ns() + IO_TIMEOUT_NS;
	for (;;) {
		struct bdev_completion done[CHANNEL_DEPTH];
		int n = bdev_poll(ch, done, CHANNEL_DEPTH);
		for (int i = 0; i < n; i++)
			if (done[i].id == id)
				return done[i].result;
		if (n > 0)
			continue;
		if (now_ns() >= deadline)
			return -ETIMEDOUT;
		wait_for_activity(ch);
	}
}

static int run_request(struct bdev_channel *ch, uint64_t id, const char *what, struct error *err)
{
	int rc = bdev_submit(ch);
	if (rc == 0)
		rc = wait_for_request(ch, id);
	if (rc == -ETIMEDOUT)
		error_set(err, rc, "Timeout while waiting for the metadata %s (30 s)", what);
	else if (rc < 0)
		error_set(err, rc, "Metadata %s failed: %s", what, strerror(-rc));
	return rc;
}

static int open_channel(struct bdev *dev, struct bdev_channel **ch, struct error *err)
{
	int rc = bdev_channel_create(dev, CHANNEL_DEPTH, ch);
	if (rc < 0)
		error_set(err, rc, "Cannot create an I/O channel for the metadata: %s",
			  strerror(-rc));
	return rc;
}

/* Reads the file's first `sectors` sectors into a new buffer. */
static int read_sectors(struct bdev *dev, uint64_t sectors, uint8_t **out, struct error *err)
{
	size_t bytes = (size_t)sectors * SECTOR_SIZE;
	uint8_t *buf = buffer_alloc(bdev_buffer_alignment(dev), bytes);
	if (!buf)
		return error_set(err, -ENOMEM, "Out of memory for a %zu-byte metadata file", bytes);
	struct bdev_channel *ch;
	int rc = open_channel(dev, &ch, err);
	if (rc == 0) {
		struct iovec iov = {.iov_base = buf, .iov_len = bytes};
		bdev_add_readv(ch, 0, &iov, 1, REQUEST_TRANSFER);
		rc = run_request(ch, REQUEST_TRANSFER, "read", err);
		/* Destroying the channel first: no kernel access to buf after it. */
		bdev_channel_destroy(ch);
	}
	if (rc < 0) {
		buffer_free(buf);
		return rc;
	}
	*out = buf;
	return 0;
}

int meta_load(struct bdev *dev, uint64_t disk_sectors, struct metadata *m, struct error *err)
{
	memset(m, 0, sizeof(*m));
	uint64_t sectors = bdev_sector_count(dev);
	if (sectors > MAX_SECTORS)
		return error_set(err, -EFBIG, "Metadata file too large: %llu sectors (at most %u)",
				 (unsigned long long)sectors, MAX_SECTORS);
	if (sectors == 0) /* nothing to read: report it like a short buffer */
		return meta_deserialize(NULL, 0, m, err);

	/* Sector 0 first: its shift says how many header sectors the disk
	 * needs. A file far larger than the disk (it is never shrunk) is not
	 * read past them, so its size costs neither time nor memory. */
	uint64_t wanted = sectors;
	if (disk_sectors != META_LOAD_ALL && sectors > 1) {
		uint8_t *first = NULL;
		int rc = read_sectors(dev, 1, &first, err);
		if (rc < 0)
			return rc;
		struct metadata probe;
		rc = meta_deserialize(first, SECTOR_SIZE, &probe, err);
		buffer_free(first);
		if (rc < 0)
			return rc;
		uint64_t stripes = meta_stripe_count(disk_sectors, probe.shift);
		meta_free(&probe);
		uint64_t header_sectors =
		    stripes / META_HEADERS_PER_SECTOR + (stripes % META_HEADERS_PER_SECTOR != 0);
		if (header_sectors < sectors - 1)
			wanted = 1 + header_sectors;
	}
	uint8_t *buf = NULL;
	int rc = read_sectors(dev, wanted, &buf, err);
	if (rc == 0) {
		rc = meta_deserialize(buf, (size_t)wanted * SECTOR_SIZE, m, err);
		buffer_free(buf);
	}
	return rc;
}

int meta_scan_headers(struct bdev *dev, uint64_t first, meta_header_visitor visit, void *ctx,
		      struct error *err)
{
	uint64_t sectors = bdev_sector_count(dev);
	uint64_t sector = 1 + first / META_HEADERS_PER_SECTOR;
	size_t skip = (size_t)(first % META_HEADERS_PER_SECTOR);
	if (sector >= sectors)
		return 0;
	uint64_t chunk =
	    sectors - sector < SCAN_CHUNK_SECTORS ? sectors - sector : SCAN_CHUNK_SECTORS;
	uint8_t *buf = buffer_alloc(bdev_buffer_alignment(dev), (size_t)chunk * SECTOR_SIZE);
	if (!buf)
		return error_set(err, -ENOMEM, "Out of memory for a %llu-byte read buffer",
				 (unsigned long long)chunk * SECTOR_SIZE);
	struct bdev_channel *ch;
	int rc = open_channel(dev, &ch, err);
	bool opened = rc == 0;
	while (rc == 0 && sector < sectors) {
		uint64_t n = sectors - sector < chunk ? sectors - sector : chunk;
		struct iovec iov = {.iov_base = buf, .iov_len = (size_t)n * SECTOR_SIZE};
		bdev_add_readv(ch, sector, &iov, 1, REQUEST_TRANSFER);
		rc = run_request(ch, REQUEST_TRANSFER, "read", err);
		if (rc == 0)
			visit(ctx, buf + skip, (size_t)n * SECTOR_SIZE - skip);
		sector += n;
		skip = 0;
	}
	if (opened) /* no kernel access to buf after this */
		bdev_channel_destroy(ch);
	buffer_free(buf);
	return rc;
}

int meta_save(struct bdev *dev, const struct metadata *m, struct error *err)
{
	uint64_t sectors = bdev_sector_count(dev);
	if (sectors > MAX_SECTORS)
		return error_set(err, -EFBIG, "Device sector count exceeds u32 (%llu sectors)",
				 (unsigned long long)sectors);
	size_t total = (size_t)sectors * SECTOR_SIZE;
	if (m->header_count > SIZE_MAX - SECTOR_SIZE || SECTOR_SIZE + m->header_count > total)
		return error_set(err, -ENOSPC, "Metadata size %llu exceeds device capacity %zu",
				 (unsigned long long)(SECTOR_SIZE + m->header_count), total);
	/* Zeroed: reserved bytes and the headers past the disk stay 0. */
	uint8_t *buf = buffer_alloc(bdev_buffer_alignment(dev), total);
	if (!buf)
		return error_set(err, -ENOMEM, "Out of memory for a %zu-byte metadata file", total);
	int rc = meta_serialize(m, buf, total);
	if (rc < 0)
		error_set(err, rc, "Cannot serialize %llu stripe headers",
			  (unsigned long long)m->header_count);
	struct bdev_channel *ch = NULL;
	if (rc == 0)
		rc = open_channel(dev, &ch, err);
	if (rc == 0) {
		struct iovec iov = {.iov_base = buf, .iov_len = total};
		bdev_add_writev(ch, 0, &iov, 1, REQUEST_TRANSFER);
		rc = run_request(ch, REQUEST_TRANSFER, "write", err);
		if (rc == 0) {
			bdev_add_flush(ch, REQUEST_FLUSH);
			rc = run_request(ch, REQUEST_FLUSH, "flush", err);
		}
		bdev_channel_destroy(ch);
	}
	buffer_free(buf);
	return rc;
}
