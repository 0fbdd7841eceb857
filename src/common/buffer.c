#include "common.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

void *buffer_alloc(size_t alignment, size_t size)
{
	if (!is_power_of_two(alignment) || alignment < sizeof(void *))
		return NULL;
	size_t rounded = (size + alignment - 1) & ~(alignment - 1);
	if (rounded < size)
		return NULL;
	void *buf = aligned_alloc(alignment, rounded ? rounded : alignment);
	if (buf)
		memset(buf, 0, rounded ? rounded : alignment);
	return buf;
}

void buffer_free(void *buf)
{
	free(buf);
}

void secret_wipe(void *buf, size_t len)
{
	explicit_bzero(buf, len);
}

void secret_string_free(char *s)
{
	if (s) {
		secret_wipe(s, strlen(s));
		free(s);
	}
}

static size_t page_rounded(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	return (size + page - 1) / page * page;
}

void *secret_alloc(size_t size)
{
	size_t bytes = page_rounded(size);
	void *buf = buffer_alloc((size_t)sysconf(_SC_PAGESIZE), bytes);
	if (!buf)
		return NULL;
	/* Best effort: an unprivileged process may be over RLIMIT_MEMLOCK, and
	 * a key schedule that can be swapped is still better than no disk. */
	(void)mlock(buf, bytes);
	(void)madvise(buf, bytes, MADV_DONTDUMP);
	return buf;
}

void secret_free(void *buf, size_t size)
{
	if (!buf)
		return;
	size_t bytes = page_rounded(size);
	secret_wipe(buf, bytes);
	(void)munlock(buf, bytes);
	/* The pages go back to malloc: let later contents be dumped again. */
	(void)madvise(buf, bytes, MADV_DODUMP);
	buffer_free(buf);
}

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
