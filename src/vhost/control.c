#include "vhost/control.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/common.h"
#include "vhost/guest_memory.h"
#include "vhost/queue_worker.h"
#include "vhost/virtqueue.h"

/* Discard requests are aligned to 4 KiB: the file system frees whole blocks. */
#define DISCARD_SECTOR_ALIGNMENT 8u

#define VHOST_USER_CONFIG_FLAGS_KNOWN 0x3u /* WRITABLE | LIVE_MIGRATION */
#define VHOST_USER_CONFIG_SPACE_END   4096u

/* What the control plane knows about one vring besides its worker. */
struct vring_setup {
	struct queue_worker *worker;
	bool has_addr;
	bool has_kick;
	uint16_t base; /* next available index, reported by GET_VRING_BASE when stopped */
};

struct vhost_control {
	struct vhost_blk_options opts;
	struct bdev *dev;
	int abort_fd;
	struct virtio_blk_config_space config;
	bool owned;
	uint64_t acked_features;
	uint64_t acked_protocol_features;
	struct guest_memory *mem; /* NULL until the front end sends a table */
	/* Written by the SIGBUS guard when the front end shrank a memory file
	 * under a mapping; closed only after every table is gone. */
	int fault_fd;
	uint32_t num_queues;
	struct vring_setup vrings[];
};

void vhost_blk_config_space_fill(const struct vhost_blk_options *opts, uint64_t capacity,
				 struct virtio_blk_config_space *out)
{
	memset(out, 0, sizeof(*out));
	out->capacity = htole64(capacity);
	out->size_max = htole32(opts->seg_size_max);
	out->seg_max = htole32(opts->seg_count_max);
	out->blk_size = htole32(SECTOR_SIZE);
	out->min_io_size = htole16(1);
	out->opt_io_size = htole32(1);
	out->writeback = opts->write_through ? 0 : 1;
	out->num_queues = htole16((uint16_t)opts->num_queues);
	out->max_discard_sectors = htole32(VHOST_BLK_MAX_DISCARD_SECTORS);
	out->max_discard_seg = htole32(VHOST_BLK_MAX_DISCARD_SEG);
	out->discard_sector_alignment = htole32(DISCARD_SECTOR_ALIGNMENT);
	out->max_write_zeroes_sectors = htole32(VHOST_BLK_MAX_DISCARD_SECTORS);
	out->max_write_zeroes_seg = htole32(1);
	out->write_zeroes_may_unmap = 1;
}

static void destroy_workers(struct vhost_control *ctl)
{
	for (uint32_t i = 0; i < ctl->num_queues; i++) {
		if (ctl->vrings[i].worker)
			queue_worker_destroy(ctl->vrings[i].worker);
		ctl->vrings[i].worker = NULL;
	}
}

static int create_control(const struct vhost_blk_options *opts, struct bdev *dev, int abort_fd,
			  bool threadless, struct vhost_control **out)
{
	if (opts->num_queues == 0)
		return -EINVAL;
	struct vhost_control *ctl =
	    calloc(1, sizeof(*ctl) + opts->num_queues * sizeof(struct vring_setup));
	if (!ctl)
		return -ENOMEM;
	ctl->opts = *opts;
	ctl->dev = dev;
	ctl->abort_fd = abort_fd;
	ctl->num_queues = opts->num_queues;
	ctl->fault_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ctl->fault_fd < 0) {
		int ret = -errno;
		log_error("cannot create the guest memory fault eventfd: %s", strerror(-ret));
		free(ctl);
		return ret;
	}
	vhost_blk_config_space_fill(opts, bdev_sector_count(dev), &ctl->config);

	for (uint32_t i = 0; i < ctl->num_queues; i++) {
		struct queue_worker_config qcfg = {
		    .index = i,
		    .max_queue_size = opts->queue_size,
		    .seg_size_max = opts->seg_size_max,
		    .seg_count_max = opts->seg_count_max,
		    .poll_timeout_us = opts->poll_queue_timeout_us,
		    .cpu = opts->cpus ? (int)opts->cpus[i] : -1,
		    .device_id = opts->device_id,
		    .write_through = opts->write_through,
		    .dev = dev,
		    .tracker = opts->trackers ? opts->trackers[i] : NULL,
		    .threadless = threadless,
		};
		int ret = queue_worker_create(&qcfg, &ctl->vrings[i].worker);
		if (ret < 0) {
			log_error("cannot create the worker of queue %u: %s", i, strerror(-ret));
			destroy_workers(ctl);
			close(ctl->fault_fd);
			free(ctl);
			return ret;
		}
		/* With VHOST_USER_F_PROTOCOL_FEATURES a ring starts disabled;
		 * SET_FEATURES enables every ring when that bit is not acked. */
		queue_worker_set_enabled(ctl->vrings[i].worker, false);
		/* A ring is queue_size long until SET_VRING_NUM: a front end
		 * that never sends it still gets the size the config set. */
		ret = queue_worker_set_num(ctl->vrings[i].worker, opts->queue_size);
		if (ret < 0) {
			log_error("queue_size %u is not usable: %s", opts->queue_size,
				  strerror(-ret));
			destroy_workers(ctl);
			close(ctl->fault_fd);
			free(ctl);
			return ret;
		}
	}
	*out = ctl;
	return 0;
}

int vhost_control_create(const struct vhost_blk_options *opts, struct bdev *dev, int abort_fd,
			 struct vhost_control **out)
{
	return create_control(opts, dev, abort_fd, false, out);
}

int vhost_control_create_threadless(const struct vhost_blk_options *opts, struct bdev *dev,
				    struct vhost_control **out)
{
	return create_control(opts, dev, -1, true, out);
}

void vhost_control_destroy(struct vhost_control *ctl)
{
	if (!ctl)
		return;
	destroy_workers(ctl);
	if (ctl->mem)
		guest_memory_unref(ctl->mem);
	/* The workers are joined and the last table is gone: no mapping
	 * names this fd any more. */
	close(ctl->fault_fd);
	free(ctl);
}

int vhost_control_fault_fd(const struct vhost_control *ctl)
{
	return ctl->fault_fd;
}

bool vhost_control_memory_broken(const struct vhost_control *ctl)
{
	return guest_memory_broken(ctl->mem);
}

/* ---- helpers ---- */

static bool protocol_feature_acked(const struct vhost_control *ctl, unsigned int bit)
{
	return ctl->acked_protocol_features & VHOST_FEATURE(bit);
}

static bool reply_ack_enabled(const struct vhost_control *ctl)
{
	return protocol_feature_acked(ctl, VHOST_USER_PROTOCOL_F_REPLY_ACK);
}

static int require_protocol_feature(const struct vhost_control *ctl, unsigned int bit,
				    const char *name, struct error *err)
{
	if (protocol_feature_acked(ctl, bit))
		return 0;
	return error_set(err, -EPROTO, "protocol feature %s was not negotiated", name);
}

static int check_vring_index(const struct vhost_control *ctl, uint32_t index, struct error *err)
{
	if (index < ctl->num_queues)
		return 0;
	return error_set(err, -EINVAL, "vring index %u out of range (%u queues)", index,
			 ctl->num_queues);
}

static int reply_u64(struct vhost_control *ctl, int sock, const struct vhost_user_message *msg,
		     uint64_t value, struct error *err)
{
	int ret = vhost_user_send_u64_reply(sock, ctl->abort_fd, msg->hdr.request, value);
	if (ret < 0)
		return error_set(err, ret, "cannot send the reply: %s", strerror(-ret));
	return 0;
}

/* Makes `mem` (whose reference the caller hands over) the current table and
 * gives every worker a reference to it. */
static void publish_memory(struct vhost_control *ctl, struct guest_memory *mem)
{
	for (uint32_t i = 0; i < ctl->num_queues; i++)
		queue_worker_set_memory(ctl->vrings[i].worker, mem);
	if (ctl->mem)
		guest_memory_unref(ctl->mem);
	ctl->mem = mem;
}

/* Starts a ring once it has addresses, memory and a kick fd, whatever the
 * order in which the front end sent them. */
static int start_vring_if_ready(struct vhost_control *ctl, uint32_t index, struct error *err)
{
	struct vring_setup *vr = &ctl->vrings[index];
	if (queue_worker_started(vr->worker) || !vr->has_addr || !vr->has_kick || !ctl->mem)
		return 0;
	int ret = queue_worker_start(vr->worker);
	if (ret < 0)
		return error_set(err, ret, "cannot start queue %u: %s", index, strerror(-ret));
	log_debug("queue %u started", index);
	return 0;
}

/* ---- features and ownership ---- */

static int handle_set_features(struct vhost_control *ctl, const struct vhost_user_message *msg,
			       struct error *err)
{
	uint64_t features = msg->payload.u64;
	if (features & ~VHOST_BLK_FEATURES)
		return error_set(err, -EINVAL,
				 "features 0x%" PRIx64 " include bits not offered (0x%" PRIx64 ")",
				 features, (uint64_t)(features & ~VHOST_BLK_FEATURES));
	ctl->acked_features = features;
	bool protocol_features = features & VHOST_FEATURE(VHOST_USER_F_PROTOCOL_FEATURES);
	bool event_idx = features & VHOST_FEATURE(VIRTIO_RING_F_EVENT_IDX);
	for (uint32_t i = 0; i < ctl->num_queues; i++) {
		/* Without protocol features there is no SET_VRING_ENABLE: rings
		 * are enabled from the start (vhost-user spec). */
		if (!protocol_features)
			queue_worker_set_enabled(ctl->vrings[i].worker, true);
		queue_worker_set_event_idx(ctl->vrings[i].worker, event_idx);
	}
	log_info("front end acked features 0x%" PRIx64, features);
	return 0;
}

static int handle_set_protocol_features(struct vhost_control *ctl,
					const struct vhost_user_message *msg, struct error *err)
{
	uint64_t features = msg->payload.u64;
	if (features & ~VHOST_BLK_PROTOCOL_FEATURES)
		return error_set(err, -EINVAL,
				 "protocol features 0x%" PRIx64
				 " include bits not offered (0x%" PRIx64 ")",
				 features, (uint64_t)(features & ~VHOST_BLK_PROTOCOL_FEATURES));
	ctl->acked_protocol_features = features;
	return 0;
}

static int handle_set_owner(struct vhost_control *ctl, struct error *err)
{
	if (ctl->owned)
		return error_set(err, -EBUSY, "the session already has an owner");
	ctl->owned = true;
	return 0;
}

static void handle_reset_owner(struct vhost_control *ctl)
{
	ctl->owned = false;
	ctl->acked_features = 0;
	ctl->acked_protocol_features = 0;
}

/* ---- memory ---- */

static int explain_region_error(int ret, unsigned int number, const struct vhost_user_mem_region *r,
				struct error *err)
{
	const char *why = ret == -EINVAL   ? "is empty, overflows or overlaps another region"
			  : ret == -ENOSPC ? "exceeds the number of memory slots"
			  : ret == -ENOENT ? "does not match any region"
			  : ret == -ERANGE ? "extends past the end of its file"
					   : strerror(-ret);
	return error_set(err, ret,
			 "region %u (guest 0x%" PRIx64 ", size 0x%" PRIx64 ", user 0x%" PRIx64
			 ", offset 0x%" PRIx64 ") %s",
			 number, r->guest_phys_addr, r->memory_size, r->userspace_addr,
			 r->mmap_offset, why);
}

static int handle_set_mem_table(struct vhost_control *ctl, const struct vhost_user_message *msg,
				struct error *err)
{
	const struct vhost_user_mem_table *table = &msg->payload.mem_table;
	const uint32_t header = offsetof(struct vhost_user_mem_table, regions);
	if (msg->hdr.size < header)
		return error_set(err, -EBADMSG, "payload of %u bytes is too short", msg->hdr.size);
	uint32_t count = table->nregions;
	if (count == 0 || count > VHOST_USER_MAX_MEM_REGIONS)
		return error_set(err, -EBADMSG, "%u regions (1..%u allowed)", count,
				 VHOST_USER_MAX_MEM_REGIONS);
	if (table->padding != 0)
		return error_set(err, -EBADMSG, "non-zero padding");
	if (msg->hdr.size != header + count * sizeof(struct vhost_user_mem_region))
		return error_set(err, -EBADMSG, "payload of %u bytes for %u regions", msg->hdr.size,
				 count);
	if (msg->fd_count != count)
		return error_set(err, -EBADMSG, "%u file descriptors for %u regions", msg->fd_count,
				 count);

	struct guest_memory *mem = guest_memory_new(ctl->fault_fd);
	if (!mem)
		return error_set(err, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < count; i++) {
		struct guest_memory *next;
		int ret = guest_memory_add(mem, &table->regions[i], msg->fds[i], &next);
		guest_memory_unref(mem);
		if (ret < 0)
			return explain_region_error(ret, i, &table->regions[i], err);
		mem = next;
	}
	publish_memory(ctl, mem);
	log_debug("memory table with %u regions", count);
	return 0;
}

static int handle_add_mem_reg(struct vhost_control *ctl, const struct vhost_user_message *msg,
			      struct error *err)
{
	int ret = require_protocol_feature(ctl, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
					   "CONFIGURE_MEM_SLOTS", err);
	if (ret < 0)
		return ret;
	if (msg->fd_count != 1)
		return error_set(err, -EBADMSG, "%u file descriptors, expected 1", msg->fd_count);
	const struct vhost_user_mem_region *region = &msg->payload.mem_region.region;
	/* The first region starts from an empty table that carries the
	 * connection's fault fd. */
	struct guest_memory *base =
	    ctl->mem ? guest_memory_ref(ctl->mem) : guest_memory_new(ctl->fault_fd);
	if (!base)
		return error_set(err, -ENOMEM, "out of memory");
	struct guest_memory *next;
	ret = guest_memory_add(base, region, msg->fds[0], &next);
	guest_memory_unref(base);
	if (ret < 0)
		return explain_region_error(ret, 0, region, err);
	publish_memory(ctl, next);
	return 0;
}

static int handle_rem_mem_reg(struct vhost_control *ctl, const struct vhost_user_message *msg,
			      struct error *err)
{
	int ret = require_protocol_feature(ctl, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
					   "CONFIGURE_MEM_SLOTS", err);
	if (ret < 0)
		return ret;
	if (msg->fd_count > 1)
		return error_set(err, -EBADMSG, "%u file descriptors, expected at most 1",
				 msg->fd_count);
	const struct vhost_user_mem_region *region = &msg->payload.mem_region.region;
	if (!ctl->mem)
		return explain_region_error(-ENOENT, 0, region, err);
	struct guest_memory *next;
	ret = guest_memory_remove(ctl->mem, region->guest_phys_addr, region->memory_size, &next);
	if (ret < 0)
		return explain_region_error(ret, 0, region, err);
	publish_memory(ctl, next);
	return 0;
}

/* ---- vrings ---- */

static int handle_set_vring_num(struct vhost_control *ctl, const struct vhost_user_message *msg,
				struct error *err)
{
	const struct vhost_user_vring_state *s = &msg->payload.state;
	int ret = check_vring_index(ctl, s->index, err);
	if (ret < 0)
		return ret;
	if (!is_power_of_two(s->num))
		return error_set(err, -EINVAL, "queue %u: size %u is not a power of two", s->index,
				 s->num);
	/* The usual cause is a VMM configured for longer rings than the
	 * device: say which of the two settings to change. */
	if (s->num > ctl->opts.queue_size)
		return error_set(err, -EINVAL,
				 "queue %u: size %u exceeds the config's queue_size (%u): set "
				 "queue_size to %u or more in the config, or pass queue-size=%u "
				 "(or less) to QEMU's vhost-user-blk-pci",
				 s->index, s->num, ctl->opts.queue_size, s->num,
				 ctl->opts.queue_size);
	ret = queue_worker_set_num(ctl->vrings[s->index].worker, s->num);
	if (ret < 0)
		return error_set(err, ret, "queue %u: %s", s->index,
				 ret == -EBUSY ? "the queue is running" : strerror(-ret));
	return 0;
}

static int translate(const struct vhost_control *ctl, const struct vhost_user_message *msg,
		     const char *what, uint64_t va, uint64_t *gpa, struct error *err)
{
	if (guest_memory_va_to_gpa(ctl->mem, va, gpa) == 0)
		return 0;
	return error_set(err, -EFAULT, "queue %u: %s address 0x%" PRIx64 " is not mapped",
			 msg->payload.addr.index, what, va);
}

static int handle_set_vring_addr(struct vhost_control *ctl, const struct vhost_user_message *msg,
				 struct error *err)
{
	const struct vhost_user_vring_addr *a = &msg->payload.addr;
	int ret = check_vring_index(ctl, a->index, err);
	if (ret < 0)
		return ret;
	/* Bit 0 (LOG) is the only flag; logging is never negotiated, so the
	 * log address is ignored. */
	if (a->flags & ~1u)
		return error_set(err, -EBADMSG, "unknown flags 0x%x", a->flags);
	if (!virtqueue_rings_aligned(a->desc_user_addr, a->avail_user_addr, a->used_user_addr))
		return error_set(err, -EBADMSG, "queue %u: misaligned ring address", a->index);
	if (!ctl->mem)
		return error_set(err, -EPROTO, "queue %u: no memory table yet", a->index);
	uint64_t desc, avail, used;
	ret = translate(ctl, msg, "descriptor table", a->desc_user_addr, &desc, err);
	if (ret < 0)
		return ret;
	ret = translate(ctl, msg, "avail ring", a->avail_user_addr, &avail, err);
	if (ret < 0)
		return ret;
	ret = translate(ctl, msg, "used ring", a->used_user_addr, &used, err);
	if (ret < 0)
		return ret;
	struct vring_setup *vr = &ctl->vrings[a->index];
	ret = queue_worker_set_addr(vr->worker, desc, avail, used);
	if (ret < 0)
		return error_set(err, ret, "queue %u: %s", a->index,
				 ret == -EBUSY ? "the queue is running" : strerror(-ret));
	vr->has_addr = true;
	return start_vring_if_ready(ctl, a->index, err);
}

static int handle_set_vring_base(struct vhost_control *ctl, const struct vhost_user_message *msg,
				 struct error *err)
{
	const struct vhost_user_vring_state *s = &msg->payload.state;
	int ret = check_vring_index(ctl, s->index, err);
	if (ret < 0)
		return ret;
	if (s->num > UINT16_MAX)
		return error_set(err, -EINVAL, "queue %u: base %u exceeds 16 bits", s->index,
				 s->num);
	struct vring_setup *vr = &ctl->vrings[s->index];
	ret = queue_worker_set_base(vr->worker, (uint16_t)s->num);
	if (ret < 0)
		return error_set(err, ret, "queue %u: %s", s->index,
				 ret == -EBUSY ? "the queue is running" : strerror(-ret));
	vr->base = (uint16_t)s->num;
	return 0;
}

static int handle_get_vring_base(struct vhost_control *ctl, int sock,
				 const struct vhost_user_message *msg, struct error *err)
{
	const struct vhost_user_vring_state *s = &msg->payload.state;
	int ret = check_vring_index(ctl, s->index, err);
	if (ret < 0)
		return ret;
	struct vring_setup *vr = &ctl->vrings[s->index];
	if (queue_worker_started(vr->worker)) {
		/* Returns once nothing of this queue is in flight any more. */
		vr->base = queue_worker_stop(vr->worker);
		log_debug("queue %u stopped at %u", s->index, vr->base);
	} else {
		queue_worker_set_kick_fd(vr->worker, -1);
		queue_worker_set_call_fd(vr->worker, -1);
	}
	vr->has_kick = false;
	struct vhost_user_vring_state reply = {.index = s->index, .num = vr->base};
	ret = vhost_user_send_reply(sock, ctl->abort_fd, msg->hdr.request, &reply, sizeof(reply));
	if (ret < 0)
		return error_set(err, ret, "cannot send the reply: %s", strerror(-ret));
	return 0;
}

/* KICK / CALL / ERR: bits 0-7 index, bit 8 "no fd"; the fd must be there
 * exactly when bit 8 is clear. On success *fd is the descriptor (or -1), now
 * owned by the caller. */
static int take_vring_fd(struct vhost_control *ctl, struct vhost_user_message *msg, uint32_t *index,
			 int *fd, struct error *err)
{
	uint64_t value = msg->payload.u64;
	if (value & ~(uint64_t)(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD_MASK))
		return error_set(err, -EBADMSG, "unknown bits in 0x%" PRIx64, value);
	*index = (uint32_t)(value & VHOST_USER_VRING_IDX_MASK);
	int ret = check_vring_index(ctl, *index, err);
	if (ret < 0)
		return ret;
	bool no_fd = value & VHOST_USER_VRING_NOFD_MASK;
	if (msg->fd_count != (no_fd ? 0u : 1u))
		return error_set(err, -EBADMSG, "%u file descriptors with the no-fd bit %s",
				 msg->fd_count, no_fd ? "set" : "clear");
	*fd = -1;
	if (!no_fd) {
		*fd = msg->fds[0];
		msg->fds[0] = -1;
	}
	return 0;
}

/* SET_VRING_KICK, SET_VRING_CALL and SET_VRING_ERR. */
static int handle_set_vring_fd(struct vhost_control *ctl, struct vhost_user_message *msg,
			       struct error *err)
{
	uint32_t index = 0;
	int fd = -1;
	int ret = take_vring_fd(ctl, msg, &index, &fd, err);
	if (ret < 0)
		return ret;
	struct vring_setup *vr = &ctl->vrings[index];
	switch (msg->hdr.request) {
	case VHOST_USER_SET_VRING_KICK:
		queue_worker_set_kick_fd(vr->worker, fd);
		vr->has_kick = fd >= 0;
		break;
	case VHOST_USER_SET_VRING_CALL:
		queue_worker_set_call_fd(vr->worker, fd);
		break;
	default:
		/* ERR: a block device has no ring errors to report. */
		if (fd >= 0)
			close(fd);
		return 0;
	}
	return start_vring_if_ready(ctl, index, err);
}

static int handle_set_vring_enable(struct vhost_control *ctl, const struct vhost_user_message *msg,
				   struct error *err)
{
	const struct vhost_user_vring_state *s = &msg->payload.state;
	if (!(ctl->acked_features & VHOST_FEATURE(VHOST_USER_F_PROTOCOL_FEATURES)))
		return error_set(err, -EPROTO, "VHOST_USER_F_PROTOCOL_FEATURES was not acked");
	int ret = check_vring_index(ctl, s->index, err);
	if (ret < 0)
		return ret;
	if (s->num > 1)
		return error_set(err, -EINVAL, "queue %u: enable value %u is not 0 or 1", s->index,
				 s->num);
	queue_worker_set_enabled(ctl->vrings[s->index].worker, s->num == 1);
	return 0;
}

/* ---- config space ---- */

static int check_config_payload(const struct vhost_user_message *msg, struct error *err)
{
	const struct vhost_user_config_header *h = &msg->payload.config.hdr;
	if (msg->hdr.size < sizeof(*h))
		return error_set(err, -EBADMSG, "payload of %u bytes is too short", msg->hdr.size);
	uint64_t end = (uint64_t)h->offset + h->size;
	if (h->flags & ~VHOST_USER_CONFIG_FLAGS_KNOWN)
		return error_set(err, -EBADMSG, "unknown flags 0x%x", h->flags);
	if (h->size == 0 || end > VHOST_USER_CONFIG_SPACE_END)
		return error_set(err, -EBADMSG, "bad range: offset %u size %u", h->offset, h->size);
	if (msg->hdr.size - sizeof(*h) != h->size)
		return error_set(err, -EBADMSG, "%zu data bytes for size %u",
				 msg->hdr.size - sizeof(*h), h->size);
	return 0;
}

static int handle_get_config(struct vhost_control *ctl, int sock,
			     const struct vhost_user_message *msg, struct error *err)
{
	int ret = require_protocol_feature(ctl, VHOST_USER_PROTOCOL_F_CONFIG, "CONFIG", err);
	if (ret < 0)
		return ret;
	ret = check_config_payload(msg, err);
	if (ret < 0)
		return ret;
	/* The offset is ignored: QEMU sends 0, cloud-hypervisor 0x100, both
	 * mean the start of the device config. Exactly `size` bytes go back,
	 * zero padded past the 60 bytes of the virtio-blk config. */
	struct vhost_user_config_payload reply;
	memset(&reply, 0, sizeof(reply));
	reply.hdr = msg->payload.config.hdr;
	size_t copy = reply.hdr.size < sizeof(ctl->config) ? reply.hdr.size : sizeof(ctl->config);
	memcpy(reply.data, &ctl->config, copy);
	ret = vhost_user_send_reply(sock, ctl->abort_fd, msg->hdr.request, &reply,
				    (uint32_t)sizeof(reply.hdr) + reply.hdr.size);
	if (ret < 0)
		return error_set(err, ret, "cannot send the reply: %s", strerror(-ret));
	return 0;
}

static int handle_set_config(struct vhost_control *ctl, const struct vhost_user_message *msg,
			     struct error *err)
{
	int ret = require_protocol_feature(ctl, VHOST_USER_PROTOCOL_F_CONFIG, "CONFIG", err);
	if (ret < 0)
		return ret;
	/* The config never changes; a guest's writeback toggle is ignored. */
	return check_config_payload(msg, err);
}

/* ---- dispatch ---- */

static bool has_own_reply(uint32_t request)
{
	switch (request) {
	case VHOST_USER_GET_FEATURES:
	case VHOST_USER_GET_PROTOCOL_FEATURES:
	case VHOST_USER_GET_VRING_BASE:
	case VHOST_USER_GET_QUEUE_NUM:
	case VHOST_USER_GET_CONFIG:
	case VHOST_USER_GET_MAX_MEM_SLOTS:
	case VHOST_USER_SET_DEVICE_STATE_FD:
	case VHOST_USER_CHECK_DEVICE_STATE:
		return true;
	default:
		return false;
	}
}

static int dispatch(struct vhost_control *ctl, int sock, struct vhost_user_message *msg,
		    struct error *err)
{
	int ret;
	switch (msg->hdr.request) {
	case VHOST_USER_GET_FEATURES:
		return reply_u64(ctl, sock, msg, VHOST_BLK_FEATURES, err);
	case VHOST_USER_SET_FEATURES:
		return handle_set_features(ctl, msg, err);
	case VHOST_USER_SET_OWNER:
		return handle_set_owner(ctl, err);
	case VHOST_USER_RESET_OWNER:
		handle_reset_owner(ctl);
		return 0;
	case VHOST_USER_SET_MEM_TABLE:
		return handle_set_mem_table(ctl, msg, err);
	case VHOST_USER_SET_VRING_NUM:
		return handle_set_vring_num(ctl, msg, err);
	case VHOST_USER_SET_VRING_ADDR:
		return handle_set_vring_addr(ctl, msg, err);
	case VHOST_USER_SET_VRING_BASE:
		return handle_set_vring_base(ctl, msg, err);
	case VHOST_USER_GET_VRING_BASE:
		return handle_get_vring_base(ctl, sock, msg, err);
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
		return handle_set_vring_fd(ctl, msg, err);
	case VHOST_USER_GET_PROTOCOL_FEATURES:
		return reply_u64(ctl, sock, msg, VHOST_BLK_PROTOCOL_FEATURES, err);
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		return handle_set_protocol_features(ctl, msg, err);
	case VHOST_USER_GET_QUEUE_NUM:
		ret = require_protocol_feature(ctl, VHOST_USER_PROTOCOL_F_MQ, "MQ", err);
		return ret < 0 ? ret : reply_u64(ctl, sock, msg, ctl->num_queues, err);
	case VHOST_USER_SET_VRING_ENABLE:
		return handle_set_vring_enable(ctl, msg, err);
	case VHOST_USER_GET_CONFIG:
		return handle_get_config(ctl, sock, msg, err);
	case VHOST_USER_SET_CONFIG:
		return handle_set_config(ctl, msg, err);
	case VHOST_USER_GET_MAX_MEM_SLOTS:
		ret = require_protocol_feature(ctl, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
					       "CONFIGURE_MEM_SLOTS", err);
		return ret < 0 ? ret : reply_u64(ctl, sock, msg, VHOST_USER_MAX_MEM_SLOTS, err);
	case VHOST_USER_ADD_MEM_REG:
		return handle_add_mem_reg(ctl, msg, err);
	case VHOST_USER_REM_MEM_REG:
		return handle_rem_mem_reg(ctl, msg, err);
	case VHOST_USER_SET_DEVICE_STATE_FD:
		if (msg->fd_count != 1)
			return error_set(err, -EBADMSG, "%u file descriptors, expected 1",
					 msg->fd_count);
		/* Migration of the device state is not supported: the
		 * reply says "error, no fd" (bit 8 = no fd, low bits = 1). */
		return reply_u64(ctl, sock, msg, 0x101, err);
	case VHOST_USER_CHECK_DEVICE_STATE:
		return reply_u64(ctl, sock, msg, 1, err);
	case VHOST_USER_SET_LOG_BASE:
	case VHOST_USER_SET_LOG_FD:
		return error_set(err, -EOPNOTSUPP,
				 "dirty logging is not supported (LOG_SHMFD not offered)");
	default:
		return error_set(err, -EOPNOTSUPP, "request %u is not supported", msg->hdr.request);
	}
}

int vhost_control_process_message(struct vhost_control *ctl, int sock, struct error *err)
{
	struct vhost_user_message msg;
	int ret = vhost_user_receive(sock, ctl->abort_fd, &msg, err);
	if (ret < 0)
		return ret;
	log_debug("vhost-user request %s (%u), %u bytes, %u fds",
		  vhost_user_request_name(msg.hdr.request), msg.hdr.request, msg.hdr.size,
		  msg.fd_count);
	ret = dispatch(ctl, sock, &msg, err);
	/* Descriptors a handler did not keep (mapped regions, ERR fds, ...) are
	 * closed here, whatever the outcome. */
	vhost_user_message_close_fds(&msg);

	if (!has_own_reply(msg.hdr.request) && (msg.hdr.flags & VHOST_USER_NEED_REPLY_FLAG) &&
	    reply_ack_enabled(ctl)) {
		int sent = vhost_user_send_u64_reply(sock, ctl->abort_fd, msg.hdr.request,
						     ret == 0 ? 0 : 1);
		if (sent < 0 && ret == 0)
			ret = error_set(err, sent, "cannot send the acknowledgement: %s",
					strerror(-sent));
	}
	/* Every reason a request failed names the request first. */
	if (ret < 0) {
		error_default(err, ret);
		error_prefix(err, "%s: ", vhost_user_request_name(msg.hdr.request));
	}
	return ret;
}
