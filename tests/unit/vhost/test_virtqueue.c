/* Split virtqueue mechanics: mapping, popping (with corrupt indices), chain
 * walks over hostile tables, used ring updates and notification decisions. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include "fake_guest.h"
#include "vhost/virtqueue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NUM 8

struct fixture {
	struct fake_guest g;
	struct virtqueue vq;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	fake_guest_init(&f->g, NUM);
	assert_int_equal(virtqueue_map(&f->vq, f->g.mem, NUM, FG_DESC, FG_AVAIL, FG_USED), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	fake_guest_fini(&f->g);
	free(f);
	return 0;
}

static void test_map_checks(void **state)
{
	struct fixture *f = *state;
	struct virtqueue vq = {0};
	assert_int_equal(virtqueue_map(&vq, f->g.mem, 0, FG_DESC, FG_AVAIL, FG_USED), -EINVAL);
	assert_int_equal(
	    virtqueue_map(&vq, f->g.mem, VIRTQUEUE_MAX_SIZE + 1, FG_DESC, FG_AVAIL, FG_USED),
	    -EINVAL);
	assert_int_equal(virtqueue_map(&vq, f->g.mem, NUM, FG_DESC + 8, FG_AVAIL, FG_USED),
			 -EINVAL);
	assert_int_equal(virtqueue_map(&vq, f->g.mem, NUM, FG_DESC, FG_AVAIL + 1, FG_USED),
			 -EINVAL);
	assert_int_equal(virtqueue_map(&vq, f->g.mem, NUM, FG_DESC, FG_AVAIL, FG_USED + 2),
			 -EINVAL);
	assert_int_equal(virtqueue_map(&vq, f->g.mem, NUM, FG_UNMAPPED, FG_AVAIL, FG_USED),
			 -EFAULT);
	/* The used ring (with avail_event) must fit: 4 + 8 * NUM + 2 bytes. */
	assert_int_equal(
	    virtqueue_map(&vq, f->g.mem, NUM, FG_DESC, FG_AVAIL, FG_MEM_SIZE - (4 + 8 * NUM)),
	    -EFAULT);
	/* A ring may not straddle two regions (one mapping per ring). */
	assert_int_equal(virtqueue_map(&vq, f->g.mem, NUM, FG_SPLIT - 64, FG_AVAIL, FG_USED),
			 -EFAULT);
	assert_int_equal(virtqueue_map(&vq, f->g.mem, NUM, FG_SPLIT, FG_AVAIL, FG_USED), 0);
}

static void test_pop_in_order(void **state)
{
	struct fixture *f = *state;
	uint16_t head = 0xffff;
	assert_int_equal(virtqueue_pop(&f->vq, &head), 0);
	fg_put(&f->g, 5);
	fg_put(&f->g, 2);
	assert_int_equal(virtqueue_pop(&f->vq, &head), 0); /* not published yet */
	assert_false(virtqueue_has_avail(&f->vq));
	fg_publish(&f->g);
	assert_true(virtqueue_has_avail(&f->vq));
	assert_int_equal(virtqueue_pop(&f->vq, &head), 1);
	assert_int_equal(head, 5);
	assert_int_equal(virtqueue_pop(&f->vq, &head), 1);
	assert_int_equal(head, 2);
	assert_int_equal(virtqueue_pop(&f->vq, &head), 0);
	assert_int_equal(f->vq.next_avail, 2);
}

static void test_pop_across_index_wrap(void **state)
{
	struct fixture *f = *state;
	uint16_t head;
	f->vq.next_avail = 65534;
	fg_set_avail_idx(&f->g, 65534);
	for (int i = 0; i < 4; i++)
		fg_put(&f->g, (uint16_t)i);
	fg_publish(&f->g);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(virtqueue_pop(&f->vq, &head), 1);
		assert_int_equal(head, i);
	}
	assert_int_equal(f->vq.next_avail, 2);
	assert_int_equal(virtqueue_pop(&f->vq, &head), 0);
}

static void test_avail_index_jump_breaks_queue(void **state)
{
	struct fixture *f = *state;
	uint16_t head;
	fg_set_avail_idx(&f->g, NUM + 1);
	assert_int_equal(virtqueue_pop(&f->vq, &head), -EIO);
	assert_true(f->vq.broken);
	/* Even once the index looks sane again, the queue stays stopped. */
	fg_set_avail_idx(&f->g, 1);
	assert_int_equal(virtqueue_pop(&f->vq, &head), -EIO);
	assert_int_equal(f->vq.next_avail, 0);
}

static void test_full_ring_is_not_a_jump(void **state)
{
	struct fixture *f = *state;
	uint16_t head;
	for (int i = 0; i < NUM; i++)
		fg_put(&f->g, (uint16_t)i);
	fg_publish(&f->g);
	for (int i = 0; i < NUM; i++)
		assert_int_equal(virtqueue_pop(&f->vq, &head), 1);
	assert_false(f->vq.broken);
}

static void test_head_out_of_range_breaks_queue(void **state)
{
	struct fixture *f = *state;
	uint16_t head;
	fg_make_available(&f->g, NUM);
	assert_int_equal(virtqueue_pop(&f->vq, &head), -EIO);
	assert_true(f->vq.broken);
}

/* Walks the chain at head; returns the number of descriptors or the error. */
static int walk(struct fixture *f, uint16_t head, struct virtqueue_desc *out, int max)
{
	struct virtqueue_chain chain;
	struct virtqueue_desc d;
	int n = 0;
	int rc;
	virtqueue_chain_start(&f->vq, head, &chain);
	while ((rc = virtqueue_chain_next(&chain, f->g.mem, &d)) == 1) {
		if (n < max)
			out[n] = d;
		n++;
	}
	return rc < 0 ? rc : n;
}

static void test_walk_direct_chain(void **state)
{
	struct fixture *f = *state;
	struct fake_buf bufs[3] = {
	    {0x1000, 16, 0}, {0x2000, 512, VRING_DESC_F_WRITE}, {0x3000, 1, VRING_DESC_F_WRITE}};
	f->g.next_desc = 6; /* wraps around the end of the table */
	uint16_t head = fg_chain(&f->g, bufs, 3);
	struct virtqueue_desc d[3];
	assert_int_equal(walk(f, head, d, 3), 3);
	assert_int_equal(d[0].addr, 0x1000);
	assert_int_equal(d[0].len, 16);
	assert_false(d[0].writable);
	assert_int_equal(d[1].len, 512);
	assert_true(d[1].writable);
	assert_int_equal(d[2].addr, 0x3000);
}

static void test_walk_chain_as_long_as_the_table(void **state)
{
	struct fixture *f = *state;
	struct fake_buf bufs[NUM];
	for (int i = 0; i < NUM; i++)
		bufs[i] = (struct fake_buf){0x1000u * (uint32_t)(i + 1), 8, 0};
	uint16_t head = fg_chain(&f->g, bufs, NUM);
	struct virtqueue_desc d[NUM];
	assert_int_equal(walk(f, head, d, NUM), NUM);
}

static void test_walk_rejects_loops(void **state)
{
	struct fixture *f = *state;
	struct virtqueue_desc d[4];
	fg_write_desc(&f->g, FG_DESC, 0, 0x1000, 16, VRING_DESC_F_NEXT, 1);
	fg_write_desc(&f->g, FG_DESC, 1, 0x2000, 16, VRING_DESC_F_NEXT, 0);
	assert_int_equal(walk(f, 0, d, 4), -EINVAL);
	/* A descriptor pointing at itself. */
	fg_write_desc(&f->g, FG_DESC, 3, 0x1000, 16, VRING_DESC_F_NEXT, 3);
	assert_int_equal(walk(f, 3, d, 4), -EINVAL);
}

static void test_walk_rejects_next_out_of_range(void **state)
{
	struct fixture *f = *state;
	struct virtqueue_desc d[4];
	fg_write_desc(&f->g, FG_DESC, 0, 0x1000, 16, VRING_DESC_F_NEXT, NUM);
	assert_int_equal(walk(f, 0, d, 4), -EINVAL);
}

static void test_walk_indirect(void **state)
{
	struct fixture *f = *state;
	struct fake_buf bufs[3] = {
	    {0x1000, 16, 0}, {0x2000, 4096, VRING_DESC_F_WRITE}, {0x3000, 1, VRING_DESC_F_WRITE}};
	uint16_t head = fg_indirect_chain(&f->g, FG_INDIRECT, bufs, 3);
	struct virtqueue_desc d[3];
	assert_int_equal(walk(f, head, d, 3), 3);
	assert_int_equal(d[1].addr, 0x2000);
	assert_int_equal(d[1].len, 4096);
	assert_true(d[2].writable);

	/* Direct descriptors before the indirect one are yielded first. */
	fg_write_desc(&f->g, FG_DESC, 4, 0x9000, 16, VRING_DESC_F_NEXT, 5);
	fg_write_desc(&f->g, FG_DESC, 5, FG_INDIRECT, 48, VRING_DESC_F_INDIRECT, 0);
	struct virtqueue_desc d4[4];
	assert_int_equal(walk(f, 4, d4, 4), 4);
	assert_int_equal(d4[0].addr, 0x9000);
	assert_int_equal(d4[3].addr, 0x3000);
}

static void test_walk_rejects_bad_indirect_tables(void **state)
{
	struct fixture *f = *state;
	struct virtqueue_desc d[4];
	/* len not a multiple of 16, zero, or beyond 65535 entries */
	fg_write_desc(&f->g, FG_DESC, 0, FG_INDIRECT, 40, VRING_DESC_F_INDIRECT, 0);
	assert_int_equal(walk(f, 0, d, 4), -EINVAL);
	fg_write_desc(&f->g, FG_DESC, 0, FG_INDIRECT, 0, VRING_DESC_F_INDIRECT, 0);
	assert_int_equal(walk(f, 0, d, 4), -EINVAL);
	fg_write_desc(&f->g, FG_DESC, 0, 0, 16u * 65536u, VRING_DESC_F_INDIRECT, 0);
	assert_int_equal(walk(f, 0, d, 4), -EINVAL);
	/* outside guest memory, or across the region split */
	fg_write_desc(&f->g, FG_DESC, 0, FG_UNMAPPED, 32, VRING_DESC_F_INDIRECT, 0);
	assert_int_equal(walk(f, 0, d, 4), -EINVAL);
	fg_write_desc(&f->g, FG_DESC, 0, FG_SPLIT - 16, 32, VRING_DESC_F_INDIRECT, 0);
	assert_int_equal(walk(f, 0, d, 4), -EINVAL);
	/* an indirect descriptor inside an indirect table */
	fg_write_desc(&f->g, FG_INDIRECT, 0, 0x1000, 16, VRING_DESC_F_NEXT, 1);
	fg_write_desc(&f->g, FG_INDIRECT, 1, FG_INDIRECT + 0x100, 16, VRING_DESC_F_INDIRECT, 0);
	fg_write_desc(&f->g, FG_DESC, 0, FG_INDIRECT, 32, VRING_DESC_F_INDIRECT, 0);
	assert_int_equal(walk(f, 0, d, 4), -EINVAL);
	/* a loop inside an indirect table, and next beyond its end */
	fg_write_desc(&f->g, FG_INDIRECT, 1, 0x2000, 16, VRING_DESC_F_NEXT, 0);
	assert_int_equal(walk(f, 0, d, 4), -EINVAL);
	fg_write_desc(&f->g, FG_INDIRECT, 1, 0x2000, 16, VRING_DESC_F_NEXT, 2);
	assert_int_equal(walk(f, 0, d, 4), -EINVAL);
	/* The indirect descriptor's own NEXT is ignored: the table's end is
	 * the chain's end. */
	fg_write_desc(&f->g, FG_INDIRECT, 1, 0x2000, 16, 0, 0);
	fg_write_desc(&f->g, FG_DESC, 0, FG_INDIRECT, 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT,
		      1);
	fg_write_desc(&f->g, FG_DESC, 1, 0x5000, 16, 0, 0);
	assert_int_equal(walk(f, 0, d, 4), 2);
	assert_int_equal(d[1].addr, 0x2000);
}

static void test_push_and_publish(void **state)
{
	struct fixture *f = *state;
	f->vq.next_used = 7;
	virtqueue_push(&f->vq, 3, 4097);
	virtqueue_push(&f->vq, 5, 1);
	assert_int_equal(fg_used_idx(&f->g), 0); /* not published */
	virtqueue_publish_used(&f->vq);
	assert_int_equal(fg_used_idx(&f->g), 9);
	struct vring_used_elem e = fg_used_elem(&f->g, 7);
	assert_int_equal(e.id, 3);
	assert_int_equal(e.len, 4097);
	e = fg_used_elem(&f->g, 8); /* wraps to slot 0 */
	assert_int_equal(e.id, 5);
	assert_int_equal(e.len, 1);
}

static void test_notify_without_event_idx(void **state)
{
	struct fixture *f = *state;
	virtqueue_push(&f->vq, 0, 1);
	virtqueue_publish_used(&f->vq);
	assert_true(virtqueue_should_notify(&f->vq));
	fg_set_avail_flags(&f->g, VRING_AVAIL_F_NO_INTERRUPT);
	virtqueue_push(&f->vq, 1, 1);
	virtqueue_publish_used(&f->vq);
	assert_false(virtqueue_should_notify(&f->vq));
}

static void test_notify_with_event_idx(void **state)
{
	struct fixture *f = *state;
	f->vq.event_idx = true;
	/* The driver wants an interrupt once entry 0 is used. */
	fg_set_used_event(&f->g, 0);
	virtqueue_push(&f->vq, 0, 1);
	virtqueue_publish_used(&f->vq);
	assert_true(virtqueue_should_notify(&f->vq));
	/* Flags are ignored with EVENT_IDX. */
	fg_set_avail_flags(&f->g, VRING_AVAIL_F_NO_INTERRUPT);
	/* Nothing new since the last decision: no interrupt. */
	assert_false(virtqueue_should_notify(&f->vq));
	/* used_event 3: entries 1 and 2 do not cross it... */
	fg_set_used_event(&f->g, 3);
	virtqueue_push(&f->vq, 1, 1);
	virtqueue_push(&f->vq, 2, 1);
	virtqueue_publish_used(&f->vq);
	assert_false(virtqueue_should_notify(&f->vq));
	/* ...entries 3 and 4 do, in one batch: one interrupt. */
	virtqueue_push(&f->vq, 3, 1);
	virtqueue_push(&f->vq, 4, 1);
	virtqueue_publish_used(&f->vq);
	assert_true(virtqueue_should_notify(&f->vq));
	/* An event index the batch jumps past entirely counts too. */
	fg_set_used_event(&f->g, 6);
	for (int i = 0; i < 3; i++)
		virtqueue_push(&f->vq, 0, 1);
	virtqueue_publish_used(&f->vq);
	assert_true(virtqueue_should_notify(&f->vq));
	/* A stale event index behind the window: the driver is not waiting. */
	fg_set_used_event(&f->g, 2);
	virtqueue_push(&f->vq, 0, 1);
	virtqueue_publish_used(&f->vq);
	assert_false(virtqueue_should_notify(&f->vq));
}

static void test_notification_suppression_towards_device(void **state)
{
	struct fixture *f = *state;
	/* Without EVENT_IDX: the NO_NOTIFY flag while polling. */
	virtqueue_disable_notify(&f->vq);
	assert_int_equal(fg_used_flags(&f->g), VRING_USED_F_NO_NOTIFY);
	assert_false(virtqueue_enable_notify(&f->vq));
	assert_int_equal(fg_used_flags(&f->g), 0);
	/* A head published meanwhile is reported so the caller does not sleep. */
	virtqueue_disable_notify(&f->vq);
	fg_make_available(&f->g, 0);
	assert_true(virtqueue_enable_notify(&f->vq));

	/* With EVENT_IDX: avail_event stays stale while polling and is set to
	 * next_avail on re-arm; flags are left alone. */
	uint16_t head;
	f->vq.event_idx = true;
	assert_int_equal(virtqueue_pop(&f->vq, &head), 1);
	virtqueue_disable_notify(&f->vq);
	assert_int_equal(fg_avail_event(&f->g), 0);
	assert_false(virtqueue_enable_notify(&f->vq));
	assert_int_equal(fg_avail_event(&f->g), 1);
	assert_int_equal(fg_used_flags(&f->g), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_map_checks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pop_in_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pop_across_index_wrap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_avail_index_jump_breaks_queue, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_full_ring_is_not_a_jump, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_head_out_of_range_breaks_queue, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_walk_direct_chain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_walk_chain_as_long_as_the_table, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_walk_rejects_loops, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_walk_rejects_next_out_of_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_walk_indirect, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_walk_rejects_bad_indirect_tables, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_push_and_publish, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_notify_without_event_idx, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_notify_with_event_idx, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_notification_suppression_towards_device, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
