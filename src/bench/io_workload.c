#include "bench/io_workload.h"

void io_workload_init(struct io_workload *w, bool random, uint32_t read_percent,
		      uint64_t first_block, uint64_t block_count, uint64_t io_count, uint64_t seed)
{
	w->random = random;
	w->read_percent = read_percent > 100 ? 100 : read_percent;
	w->first_block = first_block;
	w->block_count = block_count;
	w->cursor = 0;
	w->remaining = io_count;
	w->rng = seed;
}

bool io_workload_next(struct io_workload *w, uint64_t *block, bool *is_read)
{
	if (w->remaining == 0 || w->block_count == 0)
		return false;
	if (w->remaining != IO_WORKLOAD_UNLIMITED)
		w->remaining--;
	uint64_t rel;
	if (w->random) {
		rel = io_workload_below(&w->rng, w->block_count);
	} else {
		rel = w->cursor;
		w->cursor = w->cursor + 1 == w->block_count ? 0 : w->cursor + 1;
	}
	*block = w->first_block + rel;
	if (w->read_percent == 100)
		*is_read = true;
	else if (w->read_percent == 0)
		*is_read = false;
	else
		*is_read = io_workload_below(&w->rng, 100) < w->read_percent;
	return true;
}
