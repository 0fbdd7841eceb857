/* The lazy channel's building blocks on their own: the set of messages
 * already sent, the request FIFO, and the completion-fd wake-up. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "lazy/channel_wakeup.h"
#include "lazy/lazy_queue.h"
#include "lazy/sent_set.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void test_sent_set_insert_contains_remove(void **state)
{
	struct sent_set set;
	assert_int_equal(sent_set_init(&set, 16), 0);
	for (uint64_t k = 0; k < 20; k++)
		assert_true(sent_set_insert(&set, k * 2));
	assert_int_equal(set.count, 20);
	assert_true(sent_set_insert(&set, 4)); /* already there */
	assert_int_equal(set.count, 20);
	for (uint64_t k = 0; k < 40; k++)
		assert_int_equal(sent_set_contains(&set, k), k % 2 == 0);
	for (uint64_t k = 0; k < 20; k += 3)
		sent_set_remove(&set, k * 2);
	sent_set_remove(&set, 1); /* absent: nothing happens */
	for (uint64_t k = 0; k < 20; k++)
		assert_int_equal(sent_set_contains(&set, k * 2), k % 3 != 0);
	sent_set_clear(&set);
	assert_int_equal(set.count, 0);
	assert_false(sent_set_contains(&set, 2));
	sent_set_fini(&set);
}

/* Keys colliding on their home slot stay findable whatever is removed. */
static void test_sent_set_collisions_survive_removal(void **state)
{
	struct sent_set set;
	assert_int_equal(sent_set_init(&set, 1), 0);
	uint32_t capacity = set.mask + 1;
	uint64_t keys[24];
	int n = 0;
	/* Keys k + capacity * 2^32 * i share the low hash bits only by
	 * chance; brute-force a group with the same home slot instead. */
	uint64_t home = UINT64_MAX;
	for (uint64_t k = 0; n < (int)(capacity / 2) && n < 24; k++) {
		uint32_t slot = (uint32_t)((k * 0x9e3779b97f4a7c15ull) >> 32) & set.mask;
		if (home == UINT64_MAX)
			home = slot;
		if (slot == home || slot == ((home + 1) & set.mask))
			keys[n++] = k;
	}
	for (int i = 0; i < n; i++)
		assert_true(sent_set_insert(&set, keys[i]));
	for (int i = 0; i < n; i += 2)
		sent_set_remove(&set, keys[i]);
	for (int i = 0; i < n; i++)
		assert_int_equal(sent_set_contains(&set, keys[i]), i % 2 == 1);
	sent_set_fini(&set);
}

/* Full means "stop remembering", never an error or an overwrite. */
static void test_sent_set_full(void **state)
{
	struct sent_set set;
	assert_int_equal(sent_set_init(&set, 1), 0);
	uint32_t room = (set.mask + 1) / 2;
	for (uint64_t k = 0; k < room; k++)
		assert_true(sent_set_insert(&set, k));
	assert_false(sent_set_insert(&set, room));
	assert_false(sent_set_contains(&set, room));
	for (uint64_t k = 0; k < room; k++)
		assert_true(sent_set_contains(&set, k));
	sent_set_remove(&set, 0);
	assert_true(sent_set_insert(&set, room));
	sent_set_fini(&set);
}

static void test_lazy_queue_fifo_wraps(void **state)
{
	struct lazy_queue q;
	assert_int_equal(lazy_queue_init(&q, 3), 0);
	assert_true(lazy_queue_empty(&q));
	assert_null(lazy_queue_head(&q));
	uint64_t next_in = 0, next_out = 0;
	for (int round = 0; round < 5; round++) {
		while (!lazy_queue_full(&q)) {
			struct lazy_request r = {.op = LAZY_OP_WRITE, .id = next_in++};
			lazy_queue_push(&q, &r);
		}
		assert_int_equal(q.count, 3);
		for (int i = 0; i < 2; i++) {
			const struct lazy_request *h = lazy_queue_head(&q);
			assert_non_null(h);
			assert_int_equal(h->id, next_out++);
			lazy_queue_pop(&q);
		}
	}
	while (!lazy_queue_empty(&q)) {
		assert_int_equal(lazy_queue_head(&q)->id, next_out++);
		lazy_queue_pop(&q);
	}
	assert_int_equal(next_out, next_in);
	lazy_queue_pop(&q); /* empty: nothing happens */
	assert_true(lazy_queue_empty(&q));
	lazy_queue_fini(&q);
}

static bool readable(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	return poll(&pfd, 1, 0) == 1;
}

static void signal_fd(int fd)
{
	uint64_t one = 1;
	assert_int_equal(write(fd, &one, sizeof(one)), (ssize_t)sizeof(one));
}

static void test_wakeup_reuses_the_disk_fd(void **state)
{
	int disk = eventfd(0, EFD_NONBLOCK);
	struct lazy_wakeup w;
	assert_int_equal(lazy_wakeup_init(&w, disk, -1), 0);
	assert_int_equal(lazy_wakeup_fd(&w), disk);
	assert_int_equal(w.notify_fd, disk);
	assert_false(lazy_wakeup_gathers(&w));
	lazy_wakeup_fini(&w);
	/* Not closed: it belongs to the disk channel. */
	signal_fd(disk);
	close(disk);
}

static void test_wakeup_own_eventfd_without_disk_fd(void **state)
{
	struct lazy_wakeup w;
	assert_int_equal(lazy_wakeup_init(&w, -1, -1), 0);
	int fd = lazy_wakeup_fd(&w);
	assert_true(fd >= 0);
	assert_int_equal(w.notify_fd, fd);
	assert_false(readable(fd));
	signal_fd(w.notify_fd);
	assert_true(readable(fd));
	lazy_wakeup_fini(&w);
}

/* Disk and image fds gathered: either wakes the channel's fd; draining
 * quiets it. */
static void test_wakeup_gathers_disk_and_image(void **state)
{
	int disk = eventfd(0, EFD_NONBLOCK), image = eventfd(0, EFD_NONBLOCK);
	struct lazy_wakeup w;
	assert_int_equal(lazy_wakeup_init(&w, disk, image), 0);
	assert_true(lazy_wakeup_gathers(&w));
	int fd = lazy_wakeup_fd(&w);
	assert_true(fd != disk && fd != image);
	assert_int_equal(w.notify_fd, disk);
	assert_false(readable(fd));
	signal_fd(image);
	assert_true(readable(fd));
	lazy_wakeup_drain(&w);
	assert_false(readable(fd));
	signal_fd(disk);
	signal_fd(disk);
	assert_true(readable(fd));
	lazy_wakeup_drain(&w);
	assert_false(readable(fd));
	lazy_wakeup_drain(&w); /* empty: EAGAIN, nothing else */
	lazy_wakeup_fini(&w);
	close(disk);
	close(image);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sent_set_insert_contains_remove),
	    cmocka_unit_test(test_sent_set_collisions_survive_removal),
	    cmocka_unit_test(test_sent_set_full),
	    cmocka_unit_test(test_lazy_queue_fifo_wraps),
	    cmocka_unit_test(test_wakeup_reuses_the_disk_fd),
	    cmocka_unit_test(test_wakeup_own_eventfd_without_disk_fd),
	    cmocka_unit_test(test_wakeup_gathers_disk_and_image),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
