/* The life of one ublk device, driven by the main thread:
 *
 *   ADD_DEV -> open /dev/ublkcN -> queue threads (each fetches every tag)
 *   -> queue affinity -> SET_PARAMS -> START_DEV -> /dev/ublkbN is up
 *   -> wait for a stop request or for the queues to end (device deleted
 *   from outside, or a queue failed) -> STOP_DEV -> threads end -> DEL_DEV
 *
 * A queue thread that cannot start makes start-up stop there and delete the
 * device: START_DEV waits until every tag of every queue is fetched, so
 * without that check a failed queue would leave it waiting forever. */
#include "ublk/ublk_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/common.h"

#define CHAR_OPEN_ATTEMPTS    300 /* udev may take a moment to make the node */
#define CHAR_OPEN_INTERVAL_US 10000
/* Advertised DISCARD / WRITE_ZEROES limits: one range per request. */
#define DISCARD_GRANULARITY 4096u
#define MAX_DISCARD_SECTORS 0x3fffffu

static volatile sig_atomic_t stop_requested;
/* Created by the first ublk_serve and never closed: a signal handler on any
 * thread may be about to write to it, and a closed number could be reused. */
static volatile int stop_fd = -1;

void ublk_request_stop(void)
{
	stop_requested = 1;
	int fd = stop_fd;
	if (fd >= 0) {
		uint64_t one = 1;
		ssize_t unused = write(fd, &one, sizeof(one));
		(void)unused;
	}
}

int ublk_check_options(const struct ublk_options *opts, struct error *err)
{
	long page = sysconf(_SC_PAGESIZE);
	if (opts->num_queues == 0 || opts->num_queues > UBLK_WIRE_MAX_QUEUES)
		return error_set(err, -EINVAL, "num_queues: %u is outside ublk's 1..%u",
				 opts->num_queues, UBLK_WIRE_MAX_QUEUES);
	if (opts->queue_depth == 0 || opts->queue_depth > UBLK_WIRE_MAX_QUEUE_DEPTH)
		return error_set(err, -EINVAL, "queue_size: %u is outside ublk's 1..%u",
				 opts->queue_depth, UBLK_WIRE_MAX_QUEUE_DEPTH);
	if (page <= 0 || opts->max_io_buf_bytes == 0 ||
	    opts->max_io_buf_bytes % (uint32_t)page != 0 ||
	    opts->max_io_buf_bytes > UBLK_WIRE_MAX_IO_BUF_BYTES)
		return error_set(err, -EINVAL,
				 "seg_size_max: %u must be a multiple of the page size (%ld) for "
				 "ublk, at most %u",
				 opts->max_io_buf_bytes, page, UBLK_WIRE_MAX_IO_BUF_BYTES);
	return 0;
}

struct device {
	struct ublk_control *ctrl;
	const struct ublk_options *opts;
	struct bdev *dev;
	struct ublk_wire_dev_info info;
	bool added;
	int char_fd;
	int exit_fd; /* queue threads write when they end */
	int quit_fd; /* we write to end the queue threads */
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct ublk_queue_thread *queues;
	uint32_t queue_count;
	char block_path[32];
	bool symlink_made;
};

static int add_device(struct device *d, struct error *err)
{
	uint64_t features = 0;
	int rc = ublk_control_command(d->ctrl, UBLK_WIRE_GET_FEATURES, 0, 0, &features,
				      sizeof(features));
	if (rc >= 0)
		log_debug("ublk driver features 0x%llx", (unsigned long long)features);

	d->info = (struct ublk_wire_dev_info){
	    .nr_hw_queues = (uint16_t)d->opts->num_queues,
	    .queue_depth = (uint16_t)d->opts->queue_depth,
	    .max_io_buf_bytes = d->opts->max_io_buf_bytes,
	    .dev_id = UBLK_WIRE_NEW_DEVICE,
	    .ublksrv_pid = getpid(),
	};
	rc = ublk_control_command(d->ctrl, UBLK_WIRE_ADD_DEV, UBLK_WIRE_NEW_DEVICE, 0, &d->info,
				  sizeof(d->info));
	if (rc < 0)
		return error_set(err, rc, "cannot add a ublk device: %s", strerror(-rc));
	d->added = true;
	/* The kernel's answer is what counts: it gives at most one queue
	 * per CPU and may round the buffer size. */
	if (d->info.nr_hw_queues != d->opts->num_queues)
		log_warn("ublk device %u: the kernel gave %u queues (num_queues is %u)",
			 d->info.dev_id, d->info.nr_hw_queues, d->opts->num_queues);
	/* Only ever less than we asked for, and still page-sized buffers: the
	 * stride and the O_DIRECT alignment of the tags' buffers. */
	long page = sysconf(_SC_PAGESIZE);
	if (d->info.nr_hw_queues == 0 || d->info.nr_hw_queues > d->opts->num_queues ||
	    d->info.queue_depth == 0 || d->info.queue_depth > d->opts->queue_depth ||
	    d->info.max_io_buf_bytes > d->opts->max_io_buf_bytes || d->info.max_io_buf_bytes == 0 ||
	    page <= 0 || d->info.max_io_buf_bytes % (uint32_t)page != 0)
		return error_set(
		    err, -EINVAL,
		    "ublk device %u: the kernel answered %u queues of %u tags, %u-byte "
		    "buffers: not usable",
		    d->info.dev_id, d->info.nr_hw_queues, d->info.queue_depth,
		    d->info.max_io_buf_bytes);
	snprintf(d->block_path, sizeof(d->block_path), "%s%u", UBLK_BLOCK_PREFIX, d->info.dev_id);
	log_info("ublk device %u added: %u queues of %u tags, requests up to %u bytes",
		 d->info.dev_id, d->info.nr_hw_queues, d->info.queue_depth,
		 d->info.max_io_buf_bytes);
	return 0;
}

static int open_char_device(struct device *d, struct error *err)
{
	char path[32];
	snprintf(path, sizeof(path), "%s%u", UBLK_CHAR_PREFIX, d->info.dev_id);
	int last_errno = 0;
	for (int attempt = 0; attempt < CHAR_OPEN_ATTEMPTS; attempt++) {
		int fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd >= 0) {
			d->char_fd = fd;
			return 0;
		}
		last_errno = errno;
		usleep(CHAR_OPEN_INTERVAL_US);
	}
	return error_set(err, -last_errno, "cannot open %s: %s", path, strerror(last_errno));
}

static int start_queues(struct device *d, struct error *err)
{
	uint32_t n = d->info.nr_hw_queues;
	d->queues = calloc(n, sizeof(*d->queues));
	if (!d->queues)
		return error_set(err, -ENOMEM, "ublk device %u: out of memory", d->info.dev_id);
	bool discard = bdev_supports_discard(d->dev) && !bdev_is_read_only(d->dev);
	for (uint32_t i = 0; i < n; i++) {
		struct ublk_queue_thread *qt = &d->queues[i];
		qt->cfg = (struct ublk_queue_config){
		    .q_id = (uint16_t)i,
		    .depth = d->info.queue_depth,
		    .limits = {.capacity = bdev_sector_count(d->dev),
			       .buf_bytes = d->info.max_io_buf_bytes,
			       .discard = discard},
		    .ioctl_encode = (d->info.flags & UBLK_WIRE_F_CMD_IOCTL_ENCODE) != 0,
		    .char_fd = d->char_fd,
		    .quit_fd = d->quit_fd,
		    .dev = d->dev,
		    .tracker = d->opts->trackers ? d->opts->trackers[i] : NULL,
		};
		qt->lock = &d->lock;
		qt->changed = &d->changed;
		qt->exit_fd = d->exit_fd;
		char name[16];
		snprintf(name, sizeof(name), "ublk-q%u", i);
		int rc = thread_start(&qt->thread, name, ublk_queue_thread_main, qt);
		if (rc < 0)
			return error_set(err, rc, "ublk queue %u: cannot start its thread: %s", i,
					 strerror(-rc));
		d->queue_count++;
	}
	/* START_DEV waits for every tag of every queue to be fetched: only
	 * go on once each thread is there, or has given up. */
	int result = 0;
	pthread_mutex_lock(&d->lock);
	for (uint32_t i = 0; i < n; i++) {
		while (d->queues[i].phase == UBLK_QUEUE_STARTING)
			pthread_cond_wait(&d->changed, &d->lock);
		if (d->queues[i].phase == UBLK_QUEUE_FAILED && result == 0) {
			result = d->queues[i].exit_result < 0 ? d->queues[i].exit_result : -EIO;
			error_set(err, result, "ublk device %u: a queue could not start",
				  d->info.dev_id);
		}
	}
	pthread_mutex_unlock(&d->lock);
	return result;
}

/* Runs each queue thread on the CPUs the kernel maps that queue to. */
static void apply_queue_affinity(struct device *d)
{
	for (uint32_t i = 0; i < d->queue_count; i++) {
		cpu_set_t cpus;
		CPU_ZERO(&cpus);
		int rc = ublk_control_command(d->ctrl, UBLK_WIRE_GET_QUEUE_AFFINITY, d->info.dev_id,
					      i, &cpus, sizeof(cpus));
		if (rc < 0) {
			log_warn("ublk queue %u: cannot read its CPU affinity: %s", i,
				 strerror(-rc));
			continue;
		}
		if (sched_setaffinity(d->queues[i].tid, sizeof(cpus), &cpus) < 0)
			log_warn("ublk queue %u: cannot set its CPU affinity: %s", i,
				 strerror(errno));
	}
}

static int set_params(struct device *d, struct error *err)
{
	/* GET_DEV_INFO, not GET_DEV_INFO2: the latter also wants the char
	 * device's path (for unprivileged devices) and refuses us without it. */
	struct ublk_wire_dev_info now;
	int rc = ublk_control_command(d->ctrl, UBLK_WIRE_GET_DEV_INFO, d->info.dev_id, 0, &now,
				      sizeof(now));
	if (rc >= 0 && now.state == UBLK_WIRE_STATE_LIVE)
		return 0;

	struct ublk_wire_params p = {
	    .len = sizeof(p),
	    .types = UBLK_WIRE_PARAM_TYPE_BASIC,
	    .basic =
		{
		    /* Always: the kernel then sends FLUSH, which the device
		     * needs whether or not the file is opened O_SYNC. */
		    .attrs = UBLK_WIRE_ATTR_VOLATILE_CACHE,
		    .logical_bs_shift = 9,
		    .physical_bs_shift = 12,
		    .io_opt_shift = 12,
		    .io_min_shift = 12,
		    .max_sectors = d->info.max_io_buf_bytes >> 9,
		    .dev_sectors = bdev_sector_count(d->dev),
		},
	};
	if (d->queues[0].cfg.limits.discard) {
		p.types |= UBLK_WIRE_PARAM_TYPE_DISCARD;
		p.discard = (struct ublk_wire_param_discard){
		    .discard_granularity = DISCARD_GRANULARITY,
		    .max_discard_sectors = MAX_DISCARD_SECTORS,
		    .max_write_zeroes_sectors = MAX_DISCARD_SECTORS,
		    .max_discard_segments = 1,
		};
	}
	rc = ublk_control_command(d->ctrl, UBLK_WIRE_SET_PARAMS, d->info.dev_id, 0, &p, sizeof(p));
	if (rc < 0)
		return error_set(err, rc, "ublk device %u: SET_PARAMS failed: %s", d->info.dev_id,
				 strerror(-rc));
	return 0;
}

/* Sleeps until a stop request or the end of a queue thread. */
static void wait_for_end(struct device *d)
{
	struct pollfd fds[2] = {
	    {.fd = stop_fd, .events = POLLIN},
	    {.fd = d->exit_fd, .events = POLLIN},
	};
	while (!stop_requested) {
		if (poll(fds, 2, -1) < 0 && errno != EINTR) {
			log_error("waiting for the device to end: %s", strerror(errno));
			return;
		}
		if (fds[1].revents & POLLIN)
			return;
	}
}

/* Stops and deletes the device, whatever state start-up reached. Returns
 * the first failure a queue thread reported. */
static int tear_down(struct device *d)
{
	if (d->added) {
		/* Drains the disk, then aborts every FETCH: the threads end. */
		int rc =
		    ublk_control_command(d->ctrl, UBLK_WIRE_STOP_DEV, d->info.dev_id, 0, NULL, 0);
		if (rc < 0)
			log_debug("ublk device %u: STOP_DEV: %s", d->info.dev_id, strerror(-rc));
	}
	/* A device that never started has nothing to abort its FETCHes. */
	eventfd_write(d->quit_fd, 1);
	int result = 0;
	for (uint32_t i = 0; i < d->queue_count; i++) {
		pthread_join(d->queues[i].thread, NULL);
		if (d->queues[i].exit_result < 0 && result == 0)
			result = d->queues[i].exit_result;
	}
	if (d->symlink_made)
		ublk_symlink_remove(d->opts->device_symlink);
	/* DEL_DEV waits until nobody holds /dev/ublkcN open. */
	if (d->char_fd >= 0)
		close(d->char_fd);
	if (d->added) {
		int rc =
		    ublk_control_command(d->ctrl, UBLK_WIRE_DEL_DEV, d->info.dev_id, 0, NULL, 0);
		if (rc < 0 && rc != -ENODEV && rc != -ENOENT)
			log_warn("ublk device %u: DEL_DEV: %s", d->info.dev_id, strerror(-rc));
		else
			log_info("ublk device %u removed", d->info.dev_id);
	}
	free(d->queues);
	return result;
}

static int bring_up(struct device *d, struct error *err)
{
	int rc = add_device(d, err);
	if (rc < 0)
		return rc;
	rc = open_char_device(d, err);
	if (rc < 0)
		return rc;
	rc = start_queues(d, err);
	if (rc < 0)
		return rc;
	apply_queue_affinity(d);
	rc = set_params(d, err);
	if (rc < 0)
		return rc;
	if (stop_requested)
		return 0;
	/* Returns once the kernel has the disk (it reads the partition table
	 * through the queues, so they are serving already). */
	rc = ublk_control_command(d->ctrl, UBLK_WIRE_START_DEV, d->info.dev_id, (uint64_t)getpid(),
				  NULL, 0);
	if (rc < 0)
		return error_set(err, rc, "ublk device %u: START_DEV failed: %s", d->info.dev_id,
				 strerror(-rc));
	log_info("ublk device is available at %s", d->block_path);
	if (d->opts->device_symlink) {
		ublk_symlink_create(d->opts->device_symlink, d->block_path);
		d->symlink_made = true;
	}
	if (d->opts->ready)
		d->opts->ready(d->opts->ready_arg, d->block_path);
	return 0;
}

int ublk_serve(struct ublk_control *ctrl, const struct ublk_options *opts, struct bdev *dev,
	       struct error *err)
{
	int rc = ublk_check_options(opts, err);
	if (rc < 0)
		return rc;
	struct device d = {.ctrl = ctrl, .opts = opts, .dev = dev, .char_fd = -1};
	if (stop_fd < 0)
		stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	d.exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	d.quit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d.exit_fd < 0 || d.quit_fd < 0 || stop_fd < 0) {
		rc = error_set(err, -errno, "cannot create eventfds: %s", strerror(errno));
		goto out;
	}
	pthread_mutex_init(&d.lock, NULL);
	pthread_cond_init(&d.changed, NULL);

	rc = bring_up(&d, err);
	if (rc == 0)
		wait_for_end(&d);
	int queue_rc = tear_down(&d);
	if (rc == 0)
		rc = queue_rc;
	pthread_cond_destroy(&d.changed);
	pthread_mutex_destroy(&d.lock);
out:
	if (d.exit_fd >= 0)
		close(d.exit_fd);
	if (d.quit_fd >= 0)
		close(d.quit_fd);
	return rc;
}
