#include "common.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

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

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
