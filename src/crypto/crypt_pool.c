/* The crypt channel's preallocated state: one record per operation the
 * channel depth admits, the write parts, and the bounce pages writes are
 * encrypted into. Everything is sized at channel creation, so the I/O path
 * never allocates. */
#include "crypto/crypt_internal.h"

#include "common/common.h"

#include <errno.h>
#include <stdlib.h>

static uint32_t clamp_u32(uint64_t v, uint32_t lo, uint32_t hi)
{
	return v < lo ? lo : v > hi ? hi : (uint32_t)v;
}

int crypt_pool_init(struct crypt_channel *ch, uint32_t depth, uint32_t alignment)
{
	ch->npages = clamp_u32((uint64_t)depth * CRYPT_PAGES_PER_DEPTH, CRYPT_POOL_MIN_PAGES,
			       CRYPT_POOL_MAX_PAGES);
	/* One part per request in flight, and enough for one large write to
	 * use the whole pool; never more than pages (a part has at least one). */
	uint32_t nparts =
	    depth > ch->npages / CRYPT_PART_MAX_PAGES ? depth : ch->npages / CRYPT_PART_MAX_PAGES;
	ch->nparts = nparts < ch->npages ? nparts : ch->npages;

	ch->requests = calloc(depth, sizeof(*ch->requests));
	ch->parts = calloc(ch->nparts, sizeof(*ch->parts));
	ch->free_pages = calloc(ch->npages, sizeof(*ch->free_pages));
	ch->pending = calloc(depth, sizeof(*ch->pending));
	ch->arena = buffer_alloc(alignment > CRYPT_PAGE_BYTES ? alignment : CRYPT_PAGE_BYTES,
				 (size_t)ch->npages * CRYPT_PAGE_BYTES);
	if (!ch->requests || !ch->parts || !ch->free_pages || !ch->pending || !ch->arena)
		return -ENOMEM;
	ch->pending_cap = depth;

	for (uint32_t i = 0; i < depth; i++)
		ch->requests[i].next_free = i + 1 < depth ? i + 1 : CRYPT_NONE;
	ch->free_request = 0;
	for (uint32_t i = 0; i < ch->nparts; i++)
		ch->parts[i].next_free = i + 1 < ch->nparts ? i + 1 : CRYPT_NONE;
	ch->free_part = 0;
	/* Popped from the top: page 0 first, so a fresh pool hands out
	 * neighbouring pages that a part's iovecs can merge. */
	for (uint32_t i = 0; i < ch->npages; i++)
		ch->free_pages[i] = ch->npages - 1 - i;
	ch->nfree_pages = ch->npages;
	return 0;
}

void crypt_pool_fini(struct crypt_channel *ch)
{
	free(ch->requests);
	free(ch->parts);
	free(ch->free_pages);
	free(ch->pending);
	buffer_free(ch->arena);
}

uint32_t crypt_request_get(struct crypt_channel *ch)
{
	uint32_t i = ch->free_request;
	if (i != CRYPT_NONE)
		ch->free_request = ch->requests[i].next_free;
	return i;
}

void crypt_request_put(struct crypt_channel *ch, uint32_t index)
{
	ch->requests[index].next_free = ch->free_request;
	ch->free_request = index;
}

uint32_t crypt_part_get(struct crypt_channel *ch)
{
	uint32_t i = ch->free_part;
	if (i != CRYPT_NONE)
		ch->free_part = ch->parts[i].next_free;
	return i;
}

void crypt_part_put(struct crypt_channel *ch, uint32_t index)
{
	ch->parts[index].next_free = ch->free_part;
	ch->free_part = index;
}

/* Pushed last page first, so the next part pops them in ascending order and
 * its iovecs merge again (one segment per part instead of one per page). */
void crypt_pages_put(struct crypt_channel *ch, const struct iovec *iov, int iovcnt)
{
	for (int i = iovcnt - 1; i >= 0; i--) {
		size_t first = (size_t)((uint8_t *)iov[i].iov_base - ch->arena) / CRYPT_PAGE_BYTES;
		size_t count = (iov[i].iov_len + CRYPT_PAGE_BYTES - 1) / CRYPT_PAGE_BYTES;
		for (size_t p = count; p > 0; p--)
			ch->free_pages[ch->nfree_pages++] = (uint32_t)(first + p - 1);
	}
}
