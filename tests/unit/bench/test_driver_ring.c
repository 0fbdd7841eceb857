/* Driver-side split ring: layout, publishing, notification suppression in
 * both directions, consuming used entries. The test plays the device. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "bench/driver_ring.h"
#include "common/common.h"

struct fixture {
	void *mem;
	int kick_fd;
	struct driver_ring ring;
};

#define RING_SIZE 8

static int setup_ring(void **state, bool event_idx)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->mem = buffer_alloc(4096, driver_ring_bytes(RING_SIZE));
	f->kick_fd = eventfd(0, EFD_NONBLOCK);
	if (!f || !f->mem || f->kick_fd < 0)
		return -1;
	driver_ring_init(&f->ring, f->mem, RING_SIZE, event_idx, f->kick_fd);
	*state = f;
	return 0;
}

static int setup_plain(void **state)
{
	return setup_ring(state, false);
}

static int setup_event_idx(void **state)
{
	return setup_ring(state, true);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	close(f->kick_fd);
	buffer_free(f->mem);
	free(f);
	return 0;
}

static uint64_t kicks_seen(struct fixture *f)
{
	uint64_t n = 0;
	if (read(f->kick_fd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

static void layout_respects_alignment(void **state)
{
	for (uint32_t size = 1; size <= 32768; size <<= 1) {
		size_t avail = driver_ring_avail_offset((uint16_t)size);
		size_t used = driver_ring_used_offset((uint16_t)size);
		assert_int_equal(avail, 16u * size);
		assert_true(used >= avail + 6u + 2u * size);
		assert_int_equal(used % 4096, 0);
		assert_true(driver_ring_bytes((uint16_t)size) >= used + 6u + 8u * size);
	}
}

static void publish_makes_pushed_heads_visible_with_one_kick(void **state)
{
	struct fixture *f = *state;
	struct driver_ring *r = &f->ring;
	driver_ring_push(r, 0);
	driver_ring_push(r, 3);
	assert_int_equal(r->avail->idx, 0); /* not yet visible */
	assert_int_equal(driver_ring_publish(r), 0);
	assert_int_equal(r->avail->idx, 2);
	assert_int_equal(r->avail->ring[0], 0);
	assert_int_equal(r->avail->ring[1], 3);
	assert_int_equal(kicks_seen(f), 1);
	/* Nothing new: no kick. */
	assert_int_equal(driver_ring_publish(r), 0);
	assert_int_equal(kicks_seen(f), 0);
}

static void no_notify_flag_suppresses_kicks(void **state)
{
	struct fixture *f = *state;
	struct driver_ring *r = &f->ring;
	r->used->flags = VRING_USED_F_NO_NOTIFY; /* the device is polling */
	driver_ring_push(r, 0);
	assert_int_equal(driver_ring_publish(r), 0);
	assert_int_equal(r->avail->idx, 1);
	assert_int_equal(kicks_seen(f), 0);
	r->used->flags = 0;
	driver_ring_push(r, 3);
	assert_int_equal(driver_ring_publish(r), 0);
	assert_int_equal(kicks_seen(f), 1);
	assert_int_equal(r->kicks, 1);
}

static void avail_event_decides_kicks(void **state)
{
	struct fixture *f = *state;
	struct driver_ring *r = &f->ring;
	uint16_t *avail_event = (uint16_t *)&r->used->ring[RING_SIZE];
	/* The device wants a kick once entry 0 is available. */
	*avail_event = 0;
	driver_ring_push(r, 0);
	assert_int_equal(driver_ring_publish(r), 0);
	assert_int_equal(kicks_seen(f), 1);
	/* It is still busy with entry 0 and did not re-arm: no kick for 1. */
	driver_ring_push(r, 3);
	assert_int_equal(driver_ring_publish(r), 0);
	assert_int_equal(kicks_seen(f), 0);
	/* It re-armed at 2: publishing 2 and 3 in one batch kicks once. */
	*avail_event = 2;
	driver_ring_push(r, 0);
	driver_ring_push(r, 3);
	assert_int_equal(driver_ring_publish(r), 0);
	assert_int_equal(kicks_seen(f), 1);
}

static void used_entries_are_consumed_in_order(void **state)
{
	struct fixture *f = *state;
	struct driver_ring *r = &f->ring;
	assert_int_equal(driver_ring_used_pending(r), 0);
	r->used->ring[0].id = 6;
	r->used->ring[1].id = 0;
	r->used->idx = 2;
	assert_int_equal(driver_ring_used_pending(r), 2);
	assert_int_equal(driver_ring_take_used(r).id, 6);
	assert_int_equal(driver_ring_take_used(r).id, 0);
	assert_int_equal(driver_ring_used_pending(r), 0);
}

static void used_index_wraps(void **state)
{
	struct fixture *f = *state;
	struct driver_ring *r = &f->ring;
	r->last_used = 65535;
	r->used->ring[65535 % RING_SIZE].id = 3;
	r->used->ring[0].id = 6;
	r->used->idx = 1; /* 65535 and 0 */
	assert_int_equal(driver_ring_used_pending(r), 2);
	assert_int_equal(driver_ring_take_used(r).id, 3);
	assert_int_equal(driver_ring_take_used(r).id, 6);
	assert_int_equal(r->last_used, 1);
}

static void interrupt_requests_without_event_idx(void **state)
{
	struct fixture *f = *state;
	driver_ring_request_interrupts(&f->ring, false);
	assert_int_equal(f->ring.avail->flags, VRING_AVAIL_F_NO_INTERRUPT);
	driver_ring_request_interrupts(&f->ring, true);
	assert_int_equal(f->ring.avail->flags, 0);
}

static void interrupt_requests_with_event_idx(void **state)
{
	struct fixture *f = *state;
	struct driver_ring *r = &f->ring;
	uint16_t *used_event = &r->avail->ring[RING_SIZE];
	r->last_used = 10;
	driver_ring_request_interrupts(r, true);
	assert_int_equal(*used_event, 10);
	assert_int_equal(r->avail->flags, 0);
	/* A device completing 10..17 in one batch must notify. */
	assert_true(vring_need_event(*used_event, 18, 10));
	driver_ring_request_interrupts(r, false);
	/* Polling: no batch of at most RING_SIZE entries crosses used_event. */
	for (uint16_t old = 2; old <= 10; old++)
		assert_false(vring_need_event(*used_event, (uint16_t)(old + RING_SIZE), old));
	r->last_used = 20;
	driver_ring_keep_interrupts_off(r);
	assert_false(vring_need_event(*used_event, 28, 20));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(layout_respects_alignment),
	    cmocka_unit_test_setup_teardown(publish_makes_pushed_heads_visible_with_one_kick,
					    setup_plain, teardown),
	    cmocka_unit_test_setup_teardown(no_notify_flag_suppresses_kicks, setup_plain, teardown),
	    cmocka_unit_test_setup_teardown(avail_event_decides_kicks, setup_event_idx, teardown),
	    cmocka_unit_test_setup_teardown(used_entries_are_consumed_in_order, setup_plain,
					    teardown),
	    cmocka_unit_test_setup_teardown(used_index_wraps, setup_plain, teardown),
	    cmocka_unit_test_setup_teardown(interrupt_requests_without_event_idx, setup_plain,
					    teardown),
	    cmocka_unit_test_setup_teardown(interrupt_requests_with_event_idx, setup_event_idx,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
