#include "lazy_test_util.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/common.h"
#include "fetch_testing.h"
#include "lazy/lazy.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAKEUP_TIMEOUT_MS 5000

static struct bdev *open_file(const char *path, enum bdev_engine engine, bool read_only)
{
	struct bdev_file_options o = {.path = path,
				      .engine = engine,
				      .read_only = read_only,
				      .direct = true,
				      .queue_depth = 64};
	struct bdev *dev;
	struct error err = {0};
	int rc = bdev_open_file(&o, &dev, &err);
	if (rc < 0)
		fail_msg("%s", err.text);
	return dev;
}

static void write_image(struct lazy_env *env)
{
	size_t bytes = env->image_sectors * SECTOR_SIZE;
	env->image_data = malloc(bytes ? bytes : 1);
	assert_non_null(env->image_data);
	fill_random(env->image_data, bytes, 0x1a2b);
	make_test_file(env->image_path, bytes, 0);
	int fd = open(env->image_path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, env->image_data, bytes, 0), (ssize_t)bytes);
	close(fd);
}

/* The metadata init-metadata would write, plus the setup's preset bits. */
static void save_metadata(struct lazy_env *env, const struct lazy_setup *setup)
{
	uint64_t source_stripes = meta_stripe_count(env->image_sectors, TEST_SHIFT);
	make_test_file(env->meta_path, meta_file_size(TEST_DISK_SECTORS, TEST_SHIFT), 0);
	env->meta = open_file(env->meta_path, BDEV_ENGINE_IO_URING, false);
	struct metadata m;
	assert_int_equal(meta_create(&m, TEST_SHIFT, TEST_STRIPES, source_stripes), 0);
	for (unsigned i = 0; i < TEST_STRIPES; i++)
		m.headers[i] |= setup->preset[i];
	struct error err = {0};
	int rc = meta_save(env->meta, &m, &err);
	meta_free(&m);
	if (rc < 0)
		fail_msg("%s", &err);
}

static void build_state(struct lazy_env *env, const struct lazy_setup *setup)
{
	struct metadata m;
	struct error err = {0};
	int rc = meta_load(env->meta, META_LOAD_ALL, &m, &err);
	if (rc < 0)
		fail_msg("%s", &err);
	uint64_t sectors = setup->state_sectors ? setup->state_sectors : TEST_DISK_SECTORS;
	rc = stripe_state_create(&m, sectors, &env->state, &err);
	meta_free(&m);
	if (rc < 0)
		fail_msg("%s", &err);
}

static void start_worker(struct lazy_env *env, const struct lazy_setup *setup)
{
	struct stripe_source *raw, *flaky;
	assert_int_equal(stripe_source_raw(env->image, STRIPE_SECTORS, &raw), 0);
	uint64_t fail = setup->fail_stripe ? setup->fail_stripe - 1 : FLAKY_NO_STRIPE;
	assert_int_equal(
	    stripe_source_flaky(raw, fail, setup->fail_times, env->source_reads, &flaky), 0);
	struct fetch_worker_options o = {
	    .disk = env->disk,
	    .metadata = env->meta,
	    .source = flaky,
	    .state = env->state,
	    .autofetch = setup->autofetch,
	};
	struct error err = {0};
	int rc = fetch_worker_start(&o, &env->worker, &err);
	if (rc < 0)
		fail_msg("%s", err.text);
}

void lazy_env_open(struct lazy_env *env, const struct lazy_setup *setup)
{
	memset(env, 0, sizeof(*env));
	enum bdev_engine engine = setup->engine;
	env->image_sectors = setup->image_sectors ? setup->image_sectors : TEST_DISK_SECTORS;
	make_test_file(env->disk_path, TEST_DISK_SECTORS * SECTOR_SIZE, DISK_FILL);
	write_image(env);
	env->disk = open_file(env->disk_path, engine, false);
	env->image = open_file(env->image_path, engine, true);
	save_metadata(env, setup);
	build_state(env, setup);
	if (!setup->no_worker)
		start_worker(env, setup);
	struct lazy_options o = {
	    .base = env->disk,
	    .image = setup->copy_on_read ? NULL : env->image,
	    .state = env->state,
	    .worker = env->worker,
	    .track_written = setup->track_written,
	};
	assert_int_equal(lazy_bdev_open(&o, &env->lazy), 0);
	env->buf = buffer_alloc(BUFFER_ALIGNMENT, 4 * STRIPE_BYTES);
	assert_non_null(env->buf);
}

void lazy_env_close(struct lazy_env *env)
{
	bdev_close(env->lazy);
	fetch_worker_stop(env->worker);
	stripe_state_destroy(env->state);
	bdev_close(env->meta);
	bdev_close(env->image);
	bdev_close(env->disk);
	unlink(env->disk_path);
	unlink(env->image_path);
	unlink(env->meta_path);
	free(env->image_data);
	buffer_free(env->buf);
}

void expected_fetched(const struct lazy_env *env, uint64_t sector, uint64_t count,
		      unsigned char *out)
{
	for (uint64_t s = sector; s < sector + count; s++, out += SECTOR_SIZE) {
		if (s < env->image_sectors)
			memcpy(out, env->image_data + s * SECTOR_SIZE, SECTOR_SIZE);
		else
			memset(out, 0, SECTOR_SIZE);
	}
}

static void read_file(const char *path, uint64_t offset, size_t len, unsigned char *out)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, out, len, (off_t)offset), (ssize_t)len);
	close(fd);
}

void read_disk_file(const struct lazy_env *env, uint64_t sector, uint64_t count, unsigned char *out)
{
	read_file(env->disk_path, sector * SECTOR_SIZE, count * SECTOR_SIZE, out);
}

uint8_t metadata_header(const struct lazy_env *env, uint64_t stripe)
{
	unsigned char byte;
	read_file(env->meta_path, SECTOR_SIZE + stripe, 1, &byte);
	return byte;
}

bool disk_untouched(const struct lazy_env *env, uint64_t sector, uint64_t count)
{
	unsigned char *data = malloc(count * SECTOR_SIZE);
	assert_non_null(data);
	read_disk_file(env, sector, count, data);
	bool untouched = true;
	for (uint64_t i = 0; i < count * SECTOR_SIZE; i++)
		untouched &= data[i] == DISK_FILL;
	free(data);
	return untouched;
}

int wait_by_completion_fd(struct bdev_channel *ch, struct bdev_completion *out, int count)
{
	int fd = bdev_completion_fd(ch);
	assert_true(fd >= 0);
	int got = 0, sleeps = 0;
	for (;;) {
		got += bdev_poll(ch, out + got, count - got);
		if (got == count)
			return sleeps;
		assert_true(bdev_busy(ch));
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int ready = poll(&pfd, 1, WAKEUP_TIMEOUT_MS);
		if (ready != 1)
			fail_msg("no wake-up on the completion fd within %d ms", WAKEUP_TIMEOUT_MS);
		uint64_t value;
		/* An epoll fd cannot be read: the channel drains what it gathers. */
		if (read(fd, &value, sizeof(value)) < 0)
			assert_true(errno == EAGAIN || errno == EINVAL);
		sleeps++;
	}
}

static int one_request(struct bdev_channel *ch, uint64_t id)
{
	assert_int_equal(bdev_submit(ch), 0);
	struct bdev_completion c;
	wait_by_completion_fd(ch, &c, 1);
	assert_int_equal(c.id, id);
	return c.result;
}

int lazy_read(struct bdev_channel *ch, uint64_t sector, void *buf, uint64_t bytes, uint64_t id)
{
	struct iovec iov = {buf, bytes};
	bdev_add_readv(ch, sector, &iov, 1, id);
	return one_request(ch, id);
}

int lazy_write(struct bdev_channel *ch, uint64_t sector, const void *buf, uint64_t bytes,
	       uint64_t id)
{
	struct iovec iov = {(void *)buf, bytes};
	bdev_add_writev(ch, sector, &iov, 1, id);
	return one_request(ch, id);
}

int lazy_flush(struct bdev_channel *ch, uint64_t id)
{
	bdev_add_flush(ch, id);
	return one_request(ch, id);
}

int lazy_fixture_open(void **state, const struct lazy_setup *setup)
{
	struct lazy_fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	lazy_env_open(&f->env, setup);
	assert_int_equal(bdev_channel_create(f->env.lazy, 16, &f->ch), 0);
	f->expect = malloc(4 * STRIPE_BYTES);
	assert_non_null(f->expect);
	*state = f;
	return 0;
}

int lazy_fixture_close(void **state)
{
	struct lazy_fixture *f = *state;
	bdev_channel_destroy(f->ch);
	lazy_env_close(&f->env);
	free(f->expect);
	free(f);
	return 0;
}
