/* The write-then-flush slots shared by the fetcher and the metadata
 * flusher. */
#include "fetch/io_slot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

int io_slots_init(struct io_slots *s, struct bdev *dev, unsigned count, size_t alignment,
		  size_t buf_bytes, const char *name, const char *target)
{
	memset(s, 0, sizeof(*s));
	s->dev = dev;
	s->name = name;
	s->target = target;
	s->slots = calloc(count, sizeof(*s->slots));
	if (!s->slots)
		return -ENOMEM;
	s->count = count;
	for (unsigned i = 0; i < count; i++) {
		s->slots[i].buf = buffer_alloc(alignment, buf_bytes);
		if (!s->slots[i].buf)
			return -ENOMEM;
	}
	return 0;
}

void io_slots_fini(struct io_slots *s)
{
	for (unsigned i = 0; i < s->count; i++)
		buffer_free(s->slots[i].buf);
	free(s->slots);
	s->slots = NULL;
	s->count = 0;
}

int io_slots_open(struct io_slots *s, uint32_t depth)
{
	return bdev_channel_create(s->dev, depth, &s->ch);
}

void io_slots_close(struct io_slots *s)
{
	bdev_channel_destroy(s->ch);
	s->ch = NULL;
}

struct io_slot *io_slots_acquire(struct io_slots *s)
{
	for (unsigned i = 0; i < s->count; i++) {
		if (s->slots[i].stage == IO_SLOT_FREE) {
			s->slots[i].stage = IO_SLOT_HELD;
			return &s->slots[i];
		}
	}
	return NULL;
}

void io_slot_release(struct io_slot *slot)
{
	slot->stage = IO_SLOT_FREE;
}

struct io_slot *io_slots_find_held(struct io_slots *s, uint64_t key)
{
	for (unsigned i = 0; i < s->count; i++)
		if (s->slots[i].stage == IO_SLOT_HELD && s->slots[i].key == key)
			return &s->slots[i];
	return NULL;
}

unsigned io_slot_index(const struct io_slots *s, const struct io_slot *slot)
{
	return (unsigned)(slot - s->slots);
}

bool io_slots_all_free(const struct io_slots *s)
{
	for (unsigned i = 0; i < s->count; i++)
		if (s->slots[i].stage != IO_SLOT_FREE)
			return false;
	return true;
}

void io_slots_write(struct io_slots *s, struct io_slot *slot, uint64_t sector, size_t bytes)
{
	slot->iov.iov_base = slot->buf;
	slot->iov.iov_len = bytes;
	bdev_add_writev(s->ch, sector, &slot->iov, 1, io_slot_index(s, slot));
	slot->stage = IO_SLOT_WRITING;
	s->added = true;
}

int io_slots_poll(struct io_slots *s, struct io_slot_done *out, int max, bool *progress)
{
	struct bdev_completion done[IO_SLOTS_POLL_BATCH];
	int finished = 0;
	int n;
	while (finished < max) {
		int batch = max - finished;
		if (batch > IO_SLOTS_POLL_BATCH)
			batch = IO_SLOTS_POLL_BATCH;
		n = bdev_poll(s->ch, done, batch);
		if (n <= 0)
			break;
		*progress = true;
		for (int i = 0; i < n; i++) {
			struct io_slot *slot = done[i].id < s->count ? &s->slots[done[i].id] : NULL;
			if (!slot ||
			    (slot->stage != IO_SLOT_WRITING && slot->stage != IO_SLOT_FLUSHING)) {
				log_error("fetch: unexpected %s completion %llu", s->name,
					  (unsigned long long)done[i].id);
				continue;
			}
			if (done[i].result == 0 && slot->stage == IO_SLOT_WRITING) {
				/* The data before whatever the owner does
				 * next: flush first (free under
				 * write_through). */
				bdev_add_flush(s->ch, done[i].id);
				slot->stage = IO_SLOT_FLUSHING;
				s->added = true;
				continue;
			}
			slot->stage = IO_SLOT_HELD;
			out[finished++] =
			    (struct io_slot_done){.slot = slot, .result = done[i].result};
		}
	}
	return finished;
}

void io_slots_submit(struct io_slots *s)
{
	if (!s->added && !s->submit_failed)
		return;
	s->added = false;
	int rc = bdev_submit(s->ch);
	if (rc < 0 && !s->submit_failed)
		log_warn("fetch: submitting to %s failed: %s; retrying", s->target, strerror(-rc));
	s->submit_failed = rc < 0;
}

int io_slots_completion_fd(const struct io_slots *s)
{
	return s->ch ? bdev_completion_fd(s->ch) : -1;
}

bool io_slots_in_flight(const struct io_slots *s)
{
	return s->ch && bdev_busy(s->ch);
}

bool io_slots_submit_pending(const struct io_slots *s)
{
	return s->submit_failed;
}
