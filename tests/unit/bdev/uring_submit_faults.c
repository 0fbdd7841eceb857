/* See uring_submit_faults.h. */
#include "uring_submit_faults.h"

#include <errno.h>
#include <liburing.h>
#include <stdbool.h>

#include "bdev/bdev_internal.h"

unsigned bdev_uring_fail_submits;

int bdev_uring_enter(struct io_uring *ring)
{
	unsigned fail = __atomic_load_n(&bdev_uring_fail_submits, __ATOMIC_RELAXED);
	while (fail > 0 && !__atomic_compare_exchange_n(&bdev_uring_fail_submits, &fail, fail - 1,
							false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	return fail > 0 ? -EAGAIN : io_uring_submit(ring);
}
