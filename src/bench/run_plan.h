/* Turning options and what the backend reported into the concrete shape of
 * a run: the byte range and block size, the seed, the ring size, and in
 * verify mode the state that says what every block must hold. Every
 * rejected combination is logged with the option to change. */
#ifndef UBIBLK_BENCH_RUN_PLAN_H
#define UBIBLK_BENCH_RUN_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "bench/bench.h"
#include "bench/frontend.h"
#include "bench/verify_state.h"

struct run_plan {
	uint32_t block_size;
	uint64_t range_offset;
	uint64_t range_blocks;
	uint64_t seed;
	uint16_t ring_size;
	bool has_state;
	struct verify_state state;
};

int run_plan_make(struct run_plan *plan, const struct bench_options *opts,
		  const struct bench_frontend *fe);
void run_plan_release(struct run_plan *plan);

/* The ring size a queue needs for `iodepth` requests: the smallest power of
 * two holding iodepth three-descriptor chains, or iodepth indirect ones. */
uint32_t run_plan_default_ring_size(uint32_t iodepth, bool indirect);

#endif
