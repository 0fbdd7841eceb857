/* The write path: writes and write-zeroes wait in a FIFO and go out in parts
 * encrypted into the channel's bounce pages, never into the caller's
 * memory. Bounded on purpose: a part takes at most CRYPT_PART_MAX_PAGES
 * pages, the pool never grows, and a request waits (in order) until pages
 * and a part are free; completions free them, and bdev_poll() issues what
 * was waiting. */
#include "crypto/crypt_internal.h"

#include "common/common.h"

#include <assert.h>

void crypt_write_queue(struct crypt_channel *ch, uint32_t request)
{
	assert(ch->pending_count < ch->pending_cap);
	ch->pending[(ch->pending_head + ch->pending_count) % ch->pending_cap] = request;
	ch->pending_count++;
}

static void pending_pop(struct crypt_channel *ch)
{
	ch->pending_head = (ch->pending_head + 1) % ch->pending_cap;
	ch->pending_count--;
}

static uint32_t part_pages(const struct crypt_request *req)
{
	uint64_t pages = (req->remaining + CRYPT_PAGE_BYTES - 1) / CRYPT_PAGE_BYTES;
	return pages < CRYPT_PART_MAX_PAGES ? (uint32_t)pages : CRYPT_PART_MAX_PAGES;
}

/* A part needs its pages, a part record and room in the lower channel:
 * the first part of each request fits in the depth the caller was given,
 * further ones only within extra_parts. */
static bool can_issue(const struct crypt_channel *ch, const struct crypt_request *req,
		      uint32_t pages)
{
	if (ch->free_part == CRYPT_NONE || ch->nfree_pages < pages)
		return false;
	return req->parts == 0 || ch->parts_in_flight - ch->writers_in_flight < ch->extra_parts;
}

/* Encrypts the request's next `pages` pages worth of data and queues their
 * write. 0, or the cipher's error with nothing queued. */
static int issue_part(struct crypt_channel *ch, uint32_t r, uint32_t pages)
{
	struct crypt_request *req = &ch->requests[r];
	uint32_t p = crypt_part_get(ch);
	struct crypt_part *part = &ch->parts[p];
	part->request = r;
	part->iovcnt = 0;
	uint64_t bytes = (uint64_t)pages * CRYPT_PAGE_BYTES;
	if (bytes > req->remaining)
		bytes = req->remaining;
	/* Take the pages first: they usually come off the free stack in
	 * ascending order, so a part is one or a few segments, and each
	 * segment is encrypted in one call. Short calls (one page, 8 sectors)
	 * left the cipher's tweak batches and pipelines half empty. */
	for (uint64_t taken = 0; taken < bytes; taken += CRYPT_PAGE_BYTES) {
		uint8_t *dst = crypt_page(ch, crypt_page_get(ch));
		size_t n =
		    bytes - taken < CRYPT_PAGE_BYTES ? (size_t)(bytes - taken) : CRYPT_PAGE_BYTES;
		struct iovec *last = part->iovcnt ? &part->iov[part->iovcnt - 1] : NULL;
		if (last && (uint8_t *)last->iov_base + last->iov_len == dst)
			last->iov_len += n; /* neighbouring pages: one segment */
		else
			part->iov[part->iovcnt++] = (struct iovec){.iov_base = dst, .iov_len = n};
	}
	uint64_t sector = req->sector;
	for (int i = 0; i < part->iovcnt; i++) {
		size_t nsectors = part->iov[i].iov_len / SECTOR_SIZE;
		int rc = crypt_iov_encrypt(ch, req, sector, part->iov[i].iov_base, nsectors);
		if (rc < 0) {
			crypt_pages_put(ch, part->iov, part->iovcnt);
			crypt_part_put(ch, p);
			return rc;
		}
		sector += nsectors;
	}
	/* Once per part: the device may read the pages as soon as it is queued. */
	xts_fence();
	bdev_add_writev(ch->lower, req->sector, part->iov, part->iovcnt, crypt_part_lower_id(p));
	req->sector += bytes / SECTOR_SIZE;
	req->remaining -= bytes;
	if (req->parts++ == 0)
		ch->writers_in_flight++;
	ch->parts_in_flight++;
	return 0;
}

bool crypt_write_pump(struct crypt_channel *ch)
{
	bool added = false;
	while (ch->pending_count) {
		uint32_t r = ch->pending[ch->pending_head];
		struct crypt_request *req = &ch->requests[r];
		uint32_t pages = part_pages(req);
		if (!can_issue(ch, req, pages))
			break;
		int rc = issue_part(ch, r, pages);
		if (rc < 0) {
			log_error("crypt: encrypting a write failed");
			req->result = rc;
			req->remaining = 0;
		} else {
			added = true;
		}
		if (req->remaining)
			continue;
		pending_pop(ch);
		/* Failed before any part went out: nobody else completes it. */
		if (req->parts == 0) {
			bdev_layer_complete(ch->self, req->id, req->result);
			crypt_request_put(ch, r);
		}
	}
	return added;
}

bool crypt_write_part_done(struct crypt_channel *ch, uint32_t p, int result,
			   struct bdev_completion *out)
{
	struct crypt_part *part = &ch->parts[p];
	uint32_t r = part->request;
	struct crypt_request *req = &ch->requests[r];
	crypt_pages_put(ch, part->iov, part->iovcnt);
	crypt_part_put(ch, p);
	ch->parts_in_flight--;
	if (--req->parts == 0)
		ch->writers_in_flight--;
	if (result < 0 && req->result == 0)
		req->result = result;
	if (req->result < 0 && req->remaining) {
		/* Parts are only issued from the FIFO's head, so a request with
		 * data left and parts in flight is the head: stop it there. */
		assert(ch->pending_count && ch->pending[ch->pending_head] == r);
		req->remaining = 0;
		pending_pop(ch);
	}
	if (req->parts || req->remaining)
		return false;
	out->id = req->id;
	out->result = req->result;
	crypt_request_put(ch, r);
	return true;
}
