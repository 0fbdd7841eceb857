/* What one queue does next: which block, read or write, and when to stop.
 * Pure and allocation-free so it can be tested alone and called per I/O. */
#ifndef UBIBLK_BENCH_IO_WORKLOAD_H
#define UBIBLK_BENCH_IO_WORKLOAD_H

#include <stdbool.h>
#include <stdint.h>

#define IO_WORKLOAD_UNLIMITED UINT64_MAX

struct io_workload {
	bool random;
	uint32_t read_percent; /* 100: reads only, 0: writes only */
	uint64_t first_block;  /* the blocks this queue may touch */
	uint64_t block_count;
	uint64_t cursor;    /* next block, relative to first_block, in sequential order */
	uint64_t remaining; /* I/Os left; IO_WORKLOAD_UNLIMITED when time based */
	uint64_t rng;
};

void io_workload_init(struct io_workload *w, bool random, uint32_t read_percent,
		      uint64_t first_block, uint64_t block_count, uint64_t io_count, uint64_t seed);

/* The next I/O, or false when the quota is used up. Sequential order wraps
 * around when more I/Os than blocks are asked for. */
bool io_workload_next(struct io_workload *w, uint64_t *block, bool *is_read);

/* A fast generator for per-I/O choices (splitmix64). */
static inline uint64_t io_workload_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, bound) without modulo bias worth measuring (Lemire). */
static inline uint64_t io_workload_below(uint64_t *state, uint64_t bound)
{
	return (uint64_t)(((unsigned __int128)io_workload_random(state) * bound) >> 64);
}

#endif
