#include "bench/run_plan.h"

#include "bench/bench_queue.h"
#include "common/common.h"

#include <errno.h>
#include <linux/virtio_blk.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#define MAX_BLOCK_SIZE (64u << 20)

uint32_t run_plan_default_ring_size(uint32_t iodepth, bool indirect)
{
	uint32_t need = iodepth * (indirect ? 1 : DESCRIPTORS_PER_REQUEST);
	uint32_t size = 1;
	while (size < need)
		size <<= 1;
	return size;
}

static int check_shape(const struct bench_options *o, const struct bench_frontend *fe,
		       struct run_plan *plan)
{
	if (o->queues == 0 || o->queues > BENCH_MAX_QUEUES) {
		log_error("--queues must be 1 to %u", BENCH_MAX_QUEUES);
		return -EINVAL;
	}
	if (o->queues > fe->device_queues) {
		log_error("--queues %u: the backend serves only %u queue%s", o->queues,
			  fe->device_queues, fe->device_queues == 1 ? "" : "s");
		return -EINVAL;
	}
	if (o->ncpus != 0 && o->ncpus != o->queues) {
		log_error("--cpus lists %zu CPUs for %u queues: give one per queue", o->ncpus,
			  o->queues);
		return -EINVAL;
	}
	if (o->indirect && !frontend_has_feature(fe, VIRTIO_RING_F_INDIRECT_DESC)) {
		log_error("--indirect: the backend does not offer VIRTIO_RING_F_INDIRECT_DESC");
		return -EINVAL;
	}
	uint32_t per_request = o->indirect ? 1 : DESCRIPTORS_PER_REQUEST;
	uint32_t max_depth = BENCH_MAX_QUEUE_SIZE / per_request;
	if (o->iodepth == 0 || o->iodepth > max_depth) {
		log_error("--iodepth must be 1 to %u", max_depth);
		return -EINVAL;
	}
	uint32_t ring =
	    o->queue_size ? o->queue_size : run_plan_default_ring_size(o->iodepth, o->indirect);
	if (!is_power_of_two(ring) || ring > BENCH_MAX_QUEUE_SIZE ||
	    ring < o->iodepth * per_request) {
		log_error("--queue-size %u: must be a power of two, at most %u, and hold %u "
			  "descriptors (%u per request at --iodepth %u)",
			  ring, BENCH_MAX_QUEUE_SIZE, o->iodepth * per_request, per_request,
			  o->iodepth);
		return -EINVAL;
	}
	plan->ring_size = (uint16_t)ring;
	if (o->mode == BENCH_VERIFY && !frontend_has_feature(fe, VIRTIO_BLK_F_FLUSH))
		log_warn("the backend offers no FLUSH: verify cannot ask it to persist writes");
	return 0;
}

/* The range the options ask for, on a device of `capacity` bytes (0 when
 * the backend does not say). */
static int range_from_options(const struct bench_options *o, uint64_t capacity,
			      struct verify_state_params *p)
{
	if (o->block_size == 0 || o->block_size % SECTOR_SIZE != 0 ||
	    o->block_size > MAX_BLOCK_SIZE) {
		log_error("--bs %u: must be a multiple of 512, at most %u", o->block_size,
			  MAX_BLOCK_SIZE);
		return -EINVAL;
	}
	if (o->range_offset % SECTOR_SIZE != 0) {
		log_error("--offset %llu: must be a multiple of 512",
			  (unsigned long long)o->range_offset);
		return -EINVAL;
	}
	uint64_t size = o->range_size;
	if (size == 0) {
		if (capacity == 0) {
			log_error("the backend does not report its capacity (no CONFIG protocol "
				  "feature): give --size");
			return -EINVAL;
		}
		if (o->range_offset >= capacity) {
			log_error("--offset %llu is beyond the device's %llu bytes",
				  (unsigned long long)o->range_offset,
				  (unsigned long long)capacity);
			return -EINVAL;
		}
		/* The rest of the device, in whole blocks. */
		size = (capacity - o->range_offset) / o->block_size * o->block_size;
	} else if (size % o->block_size != 0) {
		log_error("--size %llu is not a multiple of --bs %u", (unsigned long long)size,
			  o->block_size);
		return -EINVAL;
	}
	p->block_size = o->block_size;
	p->range_offset = o->range_offset;
	p->block_count = size / o->block_size;
	p->seed = o->seed;
	if (p->block_count == 0) {
		log_error("the range holds no block of %u bytes", o->block_size);
		return -EINVAL;
	}
	return 0;
}

static int check_fits(const struct run_plan *plan, uint64_t capacity)
{
	uint64_t end;
	if (__builtin_mul_overflow(plan->range_blocks, (uint64_t)plan->block_size, &end) ||
	    u64_add_overflows(end, plan->range_offset, &end) || (capacity && end > capacity)) {
		log_error("range %llu..%llu+%llux%u exceeds the device's %llu bytes",
			  (unsigned long long)plan->range_offset,
			  (unsigned long long)plan->range_offset,
			  (unsigned long long)plan->range_blocks, plan->block_size,
			  (unsigned long long)capacity);
		return -EINVAL;
	}
	return 0;
}

/* An existing state file fixes the geometry; options given explicitly must
 * agree with it rather than silently win or lose. */
static int check_against_state(const struct bench_options *o, const char *path,
			       const struct verify_state_params *s)
{
	const char *option = NULL;
	if (o->block_size_set && o->block_size != s->block_size)
		option = "--bs";
	else if (o->range_offset_set && o->range_offset != s->range_offset)
		option = "--offset";
	else if (o->range_size_set && o->range_size != s->block_count * s->block_size)
		option = "--size";
	else if (o->seed_set && o->seed != s->seed)
		option = "--seed";
	if (!option)
		return 0;
	log_error("%s differs from verify state %s (bs %u, offset %llu, size %llu, seed %llu); "
		  "leave it out or use a new state file",
		  option, path, s->block_size, (unsigned long long)s->range_offset,
		  (unsigned long long)(s->block_count * s->block_size),
		  (unsigned long long)s->seed);
	return -EINVAL;
}

static bool file_has_content(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && sb.st_size > 0;
}

static int open_state(struct run_plan *plan, const struct bench_options *o, uint64_t capacity,
		      struct verify_state_params *params)
{
	const char *path = o->verify_state_path;
	bool writes = o->verify_phase != BENCH_VERIFY_READ;
	if (!path) {
		if (o->verify_phase != BENCH_VERIFY_BOTH) {
			log_error("--verify-phase %s needs --verify-state FILE to carry the "
				  "expected contents between runs",
				  bench_verify_phase_name(o->verify_phase));
			return -EINVAL;
		}
		int rc = range_from_options(o, capacity, params);
		if (rc == 0)
			rc = verify_state_open_memory(&plan->state, params);
		return rc;
	}
	bool existing = file_has_content(path);
	if (!existing && writes) {
		int rc = range_from_options(o, capacity, params);
		if (rc < 0)
			return rc;
	}
	bool created;
	int rc =
	    verify_state_open_file(&plan->state, path, writes, existing ? NULL : params, &created);
	if (rc < 0)
		return rc;
	*params = plan->state.params;
	return existing ? check_against_state(o, path, params) : 0;
}

int run_plan_make(struct run_plan *plan, const struct bench_options *o,
		  const struct bench_frontend *fe)
{
	memset(plan, 0, sizeof(*plan));
	plan->state.fd = -1;
	int rc = check_shape(o, fe, plan);
	if (rc < 0)
		return rc;
	struct bench_options opts = *o;
	if (!opts.seed_set && getrandom(&opts.seed, sizeof(opts.seed), 0) != sizeof(opts.seed))
		opts.seed = now_ns();
	struct verify_state_params params;
	if (o->mode == BENCH_VERIFY) {
		rc = open_state(plan, &opts, fe->capacity_bytes, &params);
		plan->has_state = plan->state.map != NULL;
	} else {
		rc = range_from_options(&opts, fe->capacity_bytes, &params);
	}
	if (rc < 0) {
		run_plan_release(plan);
		return rc;
	}
	plan->block_size = params.block_size;
	plan->range_offset = params.range_offset;
	plan->range_blocks = params.block_count;
	plan->seed = params.seed;
	rc = check_fits(plan, fe->capacity_bytes);
	if (rc == 0 && o->mode == BENCH_VERIFY && plan->range_blocks / o->queues < o->iodepth) {
		log_error("verify needs at least --iodepth (%u) blocks per queue, the range has "
			  "%llu blocks for %u queues",
			  o->iodepth, (unsigned long long)plan->range_blocks, o->queues);
		rc = -EINVAL;
	}
	if (rc == 0 && plan->range_blocks < o->queues) {
		log_error("the range has %llu blocks, fewer than --queues %u",
			  (unsigned long long)plan->range_blocks, o->queues);
		rc = -EINVAL;
	}
	if (rc < 0)
		run_plan_release(plan);
	return rc;
}

void run_plan_release(struct run_plan *plan)
{
	if (plan->has_state)
		verify_state_close(&plan->state);
	plan->has_state = false;
}
