/* What the crypt layer's files share: the device context, the per-channel
 * state and the helpers between them.
 *
 * Requests: every operation the layer receives gets a record (the channel
 * depth bounds them). Reads and flushes go to the lower channel as they
 * are, under the record's index. Writes and write-zeroes wait in a FIFO and
 * are cut into parts of at most CRYPT_PART_MAX_PAGES bounce pages: each part
 * is encrypted into pages of the channel's pool and written with its own
 * lower id. A request completes when its last part has. */
#ifndef UBIBLK_CRYPTO_CRYPT_INTERNAL_H
#define UBIBLK_CRYPTO_CRYPT_INTERNAL_H

#include "crypto/crypto.h"

#include "bdev/bdev.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define CRYPT_PAGE_BYTES      4096u
#define CRYPT_PAGE_SECTORS    (CRYPT_PAGE_BYTES / 512u)
#define CRYPT_PART_MAX_PAGES  64u   /* 256 KiB per lower write */
#define CRYPT_PAGES_PER_DEPTH 16u   /* 64 KiB of bounce memory per unit of depth */
#define CRYPT_POOL_MIN_PAGES  256u  /* 1 MiB: a fetched stripe in one go */
#define CRYPT_POOL_MAX_PAGES  2048u /* 8 MiB per channel at most */
#define CRYPT_NONE	      UINT32_MAX

struct crypt_keys {
	uint8_t key1[XTS_KEY_BYTES];
	uint8_t key2[XTS_KEY_BYTES];
};

/* The layer context (copied by bdev_layer_open). The keys live in their own
 * locked allocation (secret_alloc) so the destroy hook can wipe them. */
struct crypt_device {
	struct bdev *lower;
	struct crypt_keys *keys;
};

enum crypt_op { CRYPT_OP_READ, CRYPT_OP_FLUSH, CRYPT_OP_WRITE, CRYPT_OP_ZEROES };

struct crypt_request {
	uint64_t id; /* the caller's */
	enum crypt_op op;
	int result; /* first failure */
	/* Read: the first sector. Write: the next sector to encrypt. */
	uint64_t sector;
	/* The caller's iovecs (valid until its completion); for a write, a
	 * cursor at the next byte to encrypt. */
	const struct iovec *iov;
	int iovcnt;
	int iov_index;
	size_t iov_offset;
	uint64_t remaining; /* write/zeroes: bytes not yet in a part */
	uint32_t parts;	    /* parts in flight */
	uint32_t next_free;
};

struct crypt_part {
	uint32_t request;
	int iovcnt;
	uint32_t next_free;
	struct iovec iov[CRYPT_PART_MAX_PAGES];
};

struct crypt_channel {
	struct bdev_channel *self; /* the caller's channel */
	struct bdev_channel *lower;
	struct xts_cipher *cipher;

	struct crypt_request *requests; /* depth of them */
	uint32_t free_request;

	struct crypt_part *parts;
	uint32_t nparts;
	uint32_t free_part;
	uint32_t parts_in_flight;
	uint32_t writers_in_flight; /* requests with parts in flight */
	/* Lower depth beyond one operation per request: how many parts past
	 * the first of each request may be in flight. */
	uint32_t extra_parts;

	/* Bounce pool: npages pages of CRYPT_PAGE_BYTES; a stack of free ones
	 * (LIFO keeps recently used, cached pages in use). */
	uint8_t *arena;
	uint32_t npages;
	uint32_t *free_pages;
	uint32_t nfree_pages;

	/* Writes waiting for pages or a part (ring of request indices). Only
	 * the head is ever partly issued. */
	uint32_t *pending;
	uint32_t pending_cap;
	uint32_t pending_head;
	uint32_t pending_count;

	uint8_t scratch[512]; /* a sector split across iovecs; wiped at the end */
};

/* Lower ids: bit 0 tells a part (1) from a request (0). */
static inline uint64_t crypt_request_lower_id(uint32_t index)
{
	return (uint64_t)index << 1;
}

static inline uint64_t crypt_part_lower_id(uint32_t index)
{
	return (uint64_t)index << 1 | 1u;
}

/* crypt_iov.c: the cipher over caller iovecs. A sector may straddle iovecs
 * (lengths need only add up to whole sectors); it is gathered into
 * ch->scratch. */
/* Decrypts `bytes` of iov in place, sectors numbered from `sector`. */
int crypt_iov_decrypt(struct crypt_channel *ch, uint64_t sector, const struct iovec *iov,
		      int iovcnt);
/* Encrypts `nsectors` from the request's cursor (advancing it) into dst,
 * numbered from `sector`; a zeroes request encrypts zero sectors. Unfenced
 * (xts_encrypt_unfenced): xts_fence() before dst goes to the device. */
int crypt_iov_encrypt(struct crypt_channel *ch, struct crypt_request *req, uint64_t sector,
		      uint8_t *dst, size_t nsectors);

/* crypt_write.c: the write path. */
void crypt_write_queue(struct crypt_channel *ch, uint32_t request);
/* Issues parts of queued writes while pages and parts allow; true when it
 * added anything to the lower channel. */
bool crypt_write_pump(struct crypt_channel *ch);
/* A part's lower completion; true when it completed its request (the
 * caller's completion is then in *out). */
bool crypt_write_part_done(struct crypt_channel *ch, uint32_t part, int result,
			   struct bdev_completion *out);

/* crypt_pool.c: records, parts and bounce pages. */
int crypt_pool_init(struct crypt_channel *ch, uint32_t depth, uint32_t alignment);
void crypt_pool_fini(struct crypt_channel *ch);
uint32_t crypt_request_get(struct crypt_channel *ch);
void crypt_request_put(struct crypt_channel *ch, uint32_t index);
uint32_t crypt_part_get(struct crypt_channel *ch);
void crypt_part_put(struct crypt_channel *ch, uint32_t index);
static inline uint8_t *crypt_page(const struct crypt_channel *ch, uint32_t page)
{
	return ch->arena + (size_t)page * CRYPT_PAGE_BYTES;
}
/* Pops a free page (the caller checked nfree_pages). */
static inline uint32_t crypt_page_get(struct crypt_channel *ch)
{
	return ch->free_pages[--ch->nfree_pages];
}
/* Returns every page an iovec array of the pool covers. */
void crypt_pages_put(struct crypt_channel *ch, const struct iovec *iov, int iovcnt);

#endif
