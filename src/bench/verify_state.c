#include "bench/verify_state.h"

#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(sizeof(struct verify_block) == 8, "records are 8 bytes");
_Static_assert(sizeof(struct verify_state_header) <= VERIFY_STATE_HEADER_SIZE, "header fits");

static int records_bytes(uint64_t block_count, size_t *total)
{
	uint64_t bytes;
	if (__builtin_mul_overflow(block_count, sizeof(struct verify_block), &bytes) ||
	    u64_add_overflows(bytes, VERIFY_STATE_HEADER_SIZE, &bytes) || bytes > SIZE_MAX)
		return -EOVERFLOW;
	*total = (size_t)bytes;
	return 0;
}

static int map_state(struct verify_state *st, int fd, size_t len, bool writable)
{
	int prot = PROT_READ | (writable ? PROT_WRITE : 0);
	void *map =
	    mmap(NULL, len, prot, fd >= 0 ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS, fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	st->map = map;
	st->map_len = len;
	st->fd = fd;
	st->blocks = (struct verify_block *)((char *)map + VERIFY_STATE_HEADER_SIZE);
	return 0;
}

static void write_header(void *map, const struct verify_state_params *params)
{
	struct verify_state_header hdr = {
	    .version = VERIFY_STATE_VERSION,
	    .header_size = VERIFY_STATE_HEADER_SIZE,
	    .block_size = params->block_size,
	    .record_size = sizeof(struct verify_block),
	    .range_offset = params->range_offset,
	    .block_count = params->block_count,
	    .seed = params->seed,
	};
	memcpy(hdr.magic, VERIFY_STATE_MAGIC, sizeof(hdr.magic));
	memcpy(map, &hdr, sizeof(hdr));
}

/* Checks a header read from `path` against the file size; logs what is wrong. */
static int load_header(const char *path, const struct verify_state_header *hdr, off_t file_size,
		       struct verify_state_params *params)
{
	size_t expected = 0;
	if (memcmp(hdr->magic, VERIFY_STATE_MAGIC, sizeof(hdr->magic)) != 0) {
		log_error("verify state %s: not a ubiblk-bench state file (bad magic)", path);
		return -EINVAL;
	}
	if (hdr->version != VERIFY_STATE_VERSION || hdr->header_size != VERIFY_STATE_HEADER_SIZE ||
	    hdr->record_size != sizeof(struct verify_block)) {
		log_error("verify state %s: unsupported version %u (header %u, record %u bytes)",
			  path, hdr->version, hdr->header_size, hdr->record_size);
		return -EINVAL;
	}
	if (hdr->block_size == 0 || hdr->block_size % SECTOR_SIZE != 0 || hdr->block_count == 0 ||
	    hdr->range_offset % SECTOR_SIZE != 0) {
		log_error("verify state %s: invalid geometry (block size %u, %llu blocks at %llu)",
			  path, hdr->block_size, (unsigned long long)hdr->block_count,
			  (unsigned long long)hdr->range_offset);
		return -EINVAL;
	}
	if (records_bytes(hdr->block_count, &expected) < 0 || (off_t)expected != file_size) {
		log_error("verify state %s: %lld bytes, expected %llu for %llu blocks (truncated?)",
			  path, (long long)file_size, (unsigned long long)expected,
			  (unsigned long long)hdr->block_count);
		return -EINVAL;
	}
	params->block_size = hdr->block_size;
	params->range_offset = hdr->range_offset;
	params->block_count = hdr->block_count;
	params->seed = hdr->seed;
	return 0;
}

static int open_existing(struct verify_state *st, const char *path, int fd, off_t size,
			 bool writable)
{
	struct verify_state_header hdr;
	if ((size_t)size < sizeof(hdr)) {
		log_error("verify state %s: %lld bytes is too short for a header", path,
			  (long long)size);
		return -EINVAL;
	}
	ssize_t got = pread(fd, &hdr, sizeof(hdr), 0);
	if (got != (ssize_t)sizeof(hdr)) {
		int rc = got < 0 ? -errno : -EIO;
		log_error("verify state %s: cannot read header: %s", path, strerror(-rc));
		return rc;
	}
	int rc = load_header(path, &hdr, size, &st->params);
	if (rc < 0)
		return rc;
	rc = map_state(st, fd, (size_t)size, writable);
	if (rc < 0)
		log_error("verify state %s: mmap: %s", path, strerror(-rc));
	return rc;
}

static int create_new(struct verify_state *st, const char *path, int fd,
		      const struct verify_state_params *fresh)
{
	size_t len;
	int rc = records_bytes(fresh->block_count, &len);
	if (rc == 0 && ftruncate(fd, (off_t)len) < 0)
		rc = -errno;
	if (rc == 0)
		rc = map_state(st, fd, len, true);
	if (rc < 0) {
		log_error("verify state %s: cannot create: %s", path, strerror(-rc));
		return rc;
	}
	st->params = *fresh;
	write_header(st->map, fresh);
	return 0;
}

int verify_state_open_file(struct verify_state *st, const char *path, bool writable,
			   const struct verify_state_params *fresh, bool *created)
{
	memset(st, 0, sizeof(*st));
	st->fd = -1;
	int fd = open(path, writable ? O_RDWR | O_CREAT | O_CLOEXEC : O_RDONLY | O_CLOEXEC, 0644);
	if (fd < 0) {
		int rc = -errno;
		if (rc == -ENOENT)
			log_error("verify state %s does not exist: run a write phase first", path);
		else
			log_error("verify state %s: %s", path, strerror(-rc));
		return rc;
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		int rc = -errno;
		close(fd);
		log_error("verify state %s: %s", path, strerror(-rc));
		return rc;
	}
	int rc;
	*created = sb.st_size == 0;
	if (!*created) {
		rc = open_existing(st, path, fd, sb.st_size, writable);
	} else if (writable && fresh) {
		rc = create_new(st, path, fd, fresh);
	} else {
		log_error("verify state %s is empty: run a write phase first", path);
		rc = -ENOENT;
	}
	if (rc < 0) {
		close(fd);
		st->fd = -1;
	}
	return rc;
}

int verify_state_open_memory(struct verify_state *st, const struct verify_state_params *params)
{
	memset(st, 0, sizeof(*st));
	size_t len;
	int rc = records_bytes(params->block_count, &len);
	if (rc == 0)
		rc = map_state(st, -1, len, true);
	if (rc < 0)
		return rc;
	st->params = *params;
	write_header(st->map, params);
	return 0;
}

int verify_state_sync(struct verify_state *st)
{
	if (st->fd < 0 || !st->map)
		return 0;
	if (msync(st->map, st->map_len, MS_SYNC) < 0)
		return -errno;
	return 0;
}

void verify_state_close(struct verify_state *st)
{
	if (st->map)
		munmap(st->map, st->map_len);
	if (st->fd >= 0)
		close(st->fd);
	st->map = NULL;
	st->blocks = NULL;
	st->fd = -1;
}
