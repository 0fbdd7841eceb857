/* Verify mode on the I/O path: stamping writes with the block's next
 * generation, recording acknowledgements, and checking what reads return.
 * A queue only ever touches the records of its own blocks, and never has two
 * requests for one block in flight, so the order of completions cannot make
 * the expected generation ambiguous. */
#include "bench/bench_queue.h"

#include "bench/block_pattern.h"
#include "common/common.h"

/* How many mismatch lines a run logs before it only counts them. */
#define MISMATCH_LINES_MAX 20u

bool queue_verify_prepare_write(struct bench_queue *q, struct bench_slot *slot, uint64_t wanted,
				void *data)
{
	const struct bench_job *job = q->job;
	/* Blocks in flight are fewer than iodepth <= part_count, so probing
	 * forward always finds a free one. */
	uint64_t rel = wanted - q->part_first;
	while (q->busy[rel])
		rel = rel + 1 == q->part_count ? 0 : rel + 1;
	uint64_t block = q->part_first + rel;
	struct verify_block *record = &job->verify->blocks[block];
	uint32_t issued = __atomic_load_n(&record->issued_gen, __ATOMIC_RELAXED);
	if (issued == UINT32_MAX) {
		log_error("verify: block %llu has used up its generation counter; start a new "
			  "state file",
			  (unsigned long long)block);
		return false;
	}
	uint32_t generation = issued + 1;
	/* Raise `issued` before the device can see the write: if anything dies
	 * from here on, the disk may hold this generation. */
	__atomic_store_n(&record->issued_gen, generation, __ATOMIC_RELAXED);
	q->busy[rel] = 1;
	slot->block = block;
	slot->generation = generation;
	block_pattern_fill(data, job->block_size, job->seed,
			   job->range_offset + block * job->block_size, generation);
	return true;
}

bool queue_verify_block_written(const struct bench_queue *q, uint64_t block)
{
	return __atomic_load_n(&q->job->verify->blocks[block].acked_gen, __ATOMIC_RELAXED) != 0;
}

void queue_verify_write_done(struct bench_queue *q, const struct bench_slot *slot, bool ok)
{
	q->busy[slot->block - q->part_first] = 0;
	if (!ok)
		return; /* not acknowledged: the block may hold either generation */
	__atomic_store_n(&q->job->verify->blocks[slot->block].acked_gen, slot->generation,
			 __ATOMIC_RELAXED);
	q->blocks_written++;
}

void queue_verify_read_done(struct bench_queue *q, struct bench_slot *slot, const void *data)
{
	struct bench_job *job = q->job;
	const struct verify_block *record = &job->verify->blocks[slot->block];
	uint32_t gen_min = __atomic_load_n(&record->acked_gen, __ATOMIC_RELAXED);
	uint32_t gen_max = __atomic_load_n(&record->issued_gen, __ATOMIC_RELAXED);
	uint64_t offset = job->range_offset + slot->block * job->block_size;
	uint64_t bad = 0;
	q->blocks_checked++;
	for (uint32_t pos = 0; pos < job->block_size; pos += PATTERN_SECTOR_SIZE) {
		struct sector_stamp found;
		uint64_t checksum;
		enum sector_verdict verdict =
		    block_pattern_check_sector((const char *)data + pos, job->seed, offset + pos,
					       gen_min, gen_max, &found, &checksum);
		if (verdict == SECTOR_OK)
			continue;
		/* One line per bad block (its first bad sector) keeps the log
		 * readable when a whole region is wrong. */
		if (bad++ == 0 && atomic_fetch_add(&job->mismatch_lines, 1) < MISMATCH_LINES_MAX) {
			char line[512];
			sector_mismatch_format(line, sizeof(line), verdict, job->seed, offset + pos,
					       gen_min, gen_max, &found, checksum);
			log_error("verify: block %llu: %s", (unsigned long long)slot->block, line);
		}
	}
	if (bad) {
		q->blocks_mismatched++;
		q->sectors_mismatched += bad;
	}
}
