#include "fetch_test_util.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct fixture_options fixture_defaults(void)
{
	return (struct fixture_options){
	    .disk_sectors = 4096,
	    .image_sectors = 2048,
	    .shift = 6,
	    .engine = BDEV_ENGINE_IO_URING,
	    .fail_stripe = FLAKY_NO_STRIPE,
	};
}

static struct bdev *open_file(const char *path, enum bdev_engine engine, bool read_only)
{
	struct bdev_file_options o = {
	    .path = path,
	    .engine = engine,
	    .read_only = read_only,
	    .direct = true,
	    .queue_depth = 64,
	};
	struct bdev *dev = NULL;
	struct error err = {0};
	int rc = bdev_open_file(&o, &dev, &err);
	if (rc < 0)
		fail_msg("opening %s: %s", path, err.text);
	return dev;
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, len, 0), (ssize_t)len);
	close(fd);
}

static void save_metadata(struct fixture *fx)
{
	const struct fixture_options *o = &fx->opts;
	uint64_t size = meta_file_size(o->disk_sectors, o->shift);
	make_test_file(fx->meta_path, size, 0);
	struct bdev *dev = open_file(fx->meta_path, o->engine, false);
	struct metadata m = {.shift = o->shift, .header_count = size - SECTOR_SIZE};
	m.headers = calloc(m.header_count, 1);
	assert_non_null(m.headers);
	for (uint64_t i = 0; i < fx->disk_stripes; i++) {
		if (i < fx->image_stripes)
			m.headers[i] = META_HEADER_HAS_SOURCE;
		m.headers[i] |= o->extra_header_bits;
	}
	struct error err = {0};
	if (meta_save(dev, &m, &err) < 0)
		fail_msg("meta_save: %s", err.text);
	meta_free(&m);
	bdev_close(dev);
}

static void build_state(struct fixture *fx)
{
	struct metadata m;
	struct error err = {0};
	if (meta_load(fx->metadata, META_LOAD_ALL, &m, &err) < 0)
		fail_msg("meta_load: %s", err.text);
	if (stripe_state_create(&m, fx->opts.disk_sectors, &fx->state, &err) < 0)
		fail_msg("stripe_state_create: %s", err.text);
	meta_free(&m);
}

void fixture_files(struct fixture *fx, const struct fixture_options *opts)
{
	memset(fx, 0, sizeof(*fx));
	fx->notify_fd = -1;
	fx->opts = *opts;
	uint32_t stripe = 1u << opts->shift;
	fx->disk_stripes = meta_stripe_count(opts->disk_sectors, opts->shift);
	fx->image_stripes = meta_stripe_count(opts->image_sectors, opts->shift);
	fx->image_bytes = opts->image_sectors * SECTOR_SIZE;

	make_test_file(fx->disk_path, opts->disk_sectors * SECTOR_SIZE, opts->disk_fill);
	make_test_file(fx->image_path, fx->image_bytes, 0);
	fx->image_data = malloc(fx->image_bytes ? fx->image_bytes : 1);
	assert_non_null(fx->image_data);
	fill_random(fx->image_data, fx->image_bytes, opts->image_sectors * 31 + stripe);
	write_file(fx->image_path, fx->image_data, fx->image_bytes);
	fx->request_counts = calloc(fx->image_stripes + 1, sizeof(uint32_t));
	assert_non_null(fx->request_counts);
	save_metadata(fx);

	fx->disk = open_file(fx->disk_path, opts->engine, opts->disk_read_only);
	fx->image = open_file(fx->image_path, opts->engine, true);
	fx->metadata = open_file(fx->meta_path, opts->engine, opts->metadata_read_only);
	build_state(fx);
}

struct stripe_source *fixture_source(struct fixture *fx)
{
	struct stripe_source *raw, *flaky;
	assert_int_equal(stripe_source_raw(fx->image, 1u << fx->opts.shift, &raw), 0);
	assert_int_equal(stripe_source_flaky(raw, fx->opts.fail_stripe, fx->opts.fail_times,
					     fx->request_counts, &flaky),
			 0);
	return flaky;
}

void fixture_start(struct fixture *fx, const struct fixture_options *opts)
{
	fixture_files(fx, opts);
	struct fetch_worker_options wo = {
	    .disk = fx->disk,
	    .metadata = fx->metadata,
	    .source = fixture_source(fx),
	    .state = fx->state,
	    .autofetch = opts->autofetch,
	};
	struct error err = {0};
	if (fetch_worker_start(&wo, &fx->worker, &err) < 0)
		fail_msg("fetch_worker_start: %s", err.text);
	fx->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(fx->notify_fd >= 0);
	assert_int_equal(fetch_worker_subscribe(fx->worker, fx->notify_fd), 0);
}

void fixture_teardown(struct fixture *fx)
{
	if (fx->worker) {
		if (fx->notify_fd >= 0)
			fetch_worker_unsubscribe(fx->worker, fx->notify_fd);
		fetch_worker_stop(fx->worker);
	}
	if (fx->notify_fd >= 0)
		close(fx->notify_fd);
	stripe_state_destroy(fx->state);
	bdev_close(fx->disk);
	bdev_close(fx->image);
	bdev_close(fx->metadata);
	unlink(fx->disk_path);
	unlink(fx->image_path);
	unlink(fx->meta_path);
	free(fx->image_data);
	free(fx->request_counts);
	memset(fx, 0, sizeof(*fx));
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void wait_until(struct fixture *fx, bool (*pred)(struct fixture *fx, uint64_t arg), uint64_t arg)
{
	int64_t deadline = now_ms() + TEST_WAIT_MS;
	while (!pred(fx, arg)) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			fail_msg("condition not reached within %d ms", TEST_WAIT_MS);
		/* Notifications wake us; the short cap also covers conditions
		 * no notification announces (the source being dropped). */
		struct pollfd pfd = {.fd = fx->notify_fd, .events = POLLIN};
		if (poll(&pfd, 1, left < 10 ? (int)left : 10) == 1) {
			uint64_t v;
			assert_int_equal(read(fx->notify_fd, &v, sizeof(v)), (ssize_t)sizeof(v));
		}
	}
}

bool stripe_is_fetched(struct fixture *fx, uint64_t stripe)
{
	return stripe_state_fetch(fx->state, stripe) == STRIPE_FETCHED;
}

bool stripe_is_failed(struct fixture *fx, uint64_t stripe)
{
	return stripe_state_fetch(fx->state, stripe) == STRIPE_FAILED;
}

bool stripe_is_written(struct fixture *fx, uint64_t stripe)
{
	return stripe_state_written(fx->state, stripe);
}

bool all_source_stripes_fetched(struct fixture *fx, uint64_t unused)
{
	uint64_t total, source, fetched;
	stripe_state_counts(fx->state, &total, &source, &fetched);
	return fetched == source;
}

bool source_dropped(struct fixture *fx, uint64_t unused)
{
	return !fetch_worker_has_source(fx->worker);
}

uint8_t file_header(const struct fixture *fx, uint64_t stripe)
{
	int fd = open(fx->meta_path, O_RDONLY);
	assert_true(fd >= 0);
	uint8_t header = 0xff;
	assert_int_equal(pread(fd, &header, 1, (off_t)(SECTOR_SIZE + stripe)), 1);
	close(fd);
	return header;
}

void read_disk(const struct fixture *fx, uint64_t offset, void *buf, size_t len)
{
	int fd = open(fx->disk_path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)offset), (ssize_t)len);
	close(fd);
}

void assert_stripe_copied(const struct fixture *fx, uint64_t stripe)
{
	uint64_t stripe_bytes = (uint64_t)SECTOR_SIZE << fx->opts.shift;
	uint64_t start = stripe * stripe_bytes;
	uint64_t disk_bytes = fx->opts.disk_sectors * SECTOR_SIZE;
	uint64_t len = disk_bytes - start < stripe_bytes ? disk_bytes - start : stripe_bytes;
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	read_disk(fx, start, buf, len);
	uint64_t data = 0;
	if (start < fx->image_bytes)
		data = fx->image_bytes - start < len ? fx->image_bytes - start : len;
	if (data > 0)
		assert_memory_equal(buf, fx->image_data + start, data);
	for (uint64_t i = data; i < len; i++)
		if (buf[i] != 0)
			fail_msg("stripe %llu byte %llu beyond the image end is %#x, not 0",
				 (unsigned long long)stripe, (unsigned long long)i, buf[i]);
	free(buf);
}

uint32_t total_requests(const struct fixture *fx)
{
	uint32_t total = 0;
	for (uint64_t i = 0; i < fx->image_stripes; i++)
		total += __atomic_load_n(&fx->request_counts[i], __ATOMIC_RELAXED);
	return total;
}
