/* One virtqueue's worker thread: pops virtio-blk requests from its split
 * ring, checks them, runs them on its own bdev channel (zero copy into guest
 * memory where O_DIRECT alignment allows, bounce buffers otherwise), returns
 * them on the used ring and signals the guest once per batch (EVENT_IDX
 * aware). It busy-polls for poll_queue_timeout_us after the last activity,
 * then sleeps in poll(2) on the kick eventfd, the channel's completion fd and
 * its control eventfd.
 *
 * The control thread configures the ring with the setters below while the
 * queue is stopped, then calls queue_worker_start(). queue_worker_stop()
 * (GET_VRING_BASE) returns only once no request of the queue is in flight,
 * so the front end may then reuse the ring memory. Every function here but
 * queue_worker_get_bounce_stats() is called from the control thread only. */
#ifndef UBIBLK_VHOST_QUEUE_WORKER_H
#define UBIBLK_VHOST_QUEUE_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bdev/bdev.h"
#include "vhost/guest_memory.h"

struct queue_worker_config {
	uint32_t index;
	uint32_t max_queue_size; /* config queue_size */
	uint32_t seg_size_max;
	uint32_t seg_count_max;
	uint64_t poll_timeout_us;
	/* What a sleep and a wake-up cost, the longest busy-poll window while
	 * requests are at the device or the CPU is contended; 0 means
	 * POLL_WAKE_COST_NS (poll_window.h). Tests that must see a window
	 * open for long set more. */
	uint64_t poll_wake_cost_ns;
	int cpu;	       /* pin to this CPU at start, or -1 */
	const char *device_id; /* up to VIRTIO_BLK_ID_BYTES */
	bool write_through;
	struct bdev *dev;
	/* Reads, writes and flushes are recorded here by slot index (NULL:
	 * not tracked); it must outlive the worker. */
	struct io_tracker *tracker;
	/* No thread: every setter applies its settings on the calling thread
	 * before it returns, and a started queue is mapped but never
	 * processed (no request is ever popped, so a stop completes at once).
	 * This drives the control plane alone, deterministically, as the
	 * vhost-user fuzz target does (vhost_control_create_threadless()). */
	bool threadless;
};

struct queue_worker;
struct io_tracker;

/* Creates the thread and the bdev channel; the queue starts stopped. */
int queue_worker_create(const struct queue_worker_config *cfg, struct queue_worker **out);
/* Stops the queue (finishing in-flight requests) and joins the thread. */
void queue_worker_destroy(struct queue_worker *qw);

/* A new worker's queue is stopped and disabled, without EVENT_IDX, fds or
 * memory. Setters that take effect while the queue runs (fds, enabled,
 * event_idx, memory) return once the worker has applied them.
 *
 * Ring setup; -EBUSY while the queue is started, -EINVAL for bad values
 * (num 0 or above max_queue_size; rings not aligned as
 * virtqueue_rings_aligned() requires). */
int queue_worker_set_num(struct queue_worker *qw, uint32_t num);
int queue_worker_set_addr(struct queue_worker *qw, uint64_t desc_gpa, uint64_t avail_gpa,
			  uint64_t used_gpa);
int queue_worker_set_base(struct queue_worker *qw, uint16_t next_avail);
/* Takes ownership of the fds (-1 = none); may be called at any time. */
void queue_worker_set_kick_fd(struct queue_worker *qw, int fd);
void queue_worker_set_call_fd(struct queue_worker *qw, int fd);
void queue_worker_set_enabled(struct queue_worker *qw, bool enabled);
void queue_worker_set_event_idx(struct queue_worker *qw, bool event_idx);
/* Publishes a new memory table (takes a reference); in-flight requests keep
 * the table they were started with. */
void queue_worker_set_memory(struct queue_worker *qw, struct guest_memory *mem);

/* Start processing (num, ring addresses, memory and kick fd must be set,
 * else -EINVAL; -EFAULT when a ring is not inside one mapped region). Reads
 * the used index from guest memory as the next used index. Kicks are only
 * processed while the queue is also enabled. A kick fd set to -1 while the
 * queue runs means the ring is polled (vhost-user "no fd" kick). */
int queue_worker_start(struct queue_worker *qw);
bool queue_worker_started(const struct queue_worker *qw);
/* Quiesce: wait until nothing is in flight, stop, close the kick and call
 * fds, and return the next available index (GET_VRING_BASE). */
uint16_t queue_worker_stop(struct queue_worker *qw);

/* Bounce-buffer use of the queue. Requests that miss O_DIRECT alignment (or
 * whose data is transformed) hold bounce buffers; the queue lets them hold
 * at most `budget` bytes at once (one larger request runs alone) and pauses
 * popping until enough is released. `peak` is the most they have held at
 * once, `waits` how often popping paused: waits that keep rising mean the
 * guest's misaligned I/O is throttled by the budget. The one function here
 * that any thread may call, also while the queue runs. */
struct queue_worker_bounce_stats {
	size_t budget;
	size_t peak;
	uint64_t waits;
};
void queue_worker_get_bounce_stats(const struct queue_worker *qw,
				   struct queue_worker_bounce_stats *out);

#endif
