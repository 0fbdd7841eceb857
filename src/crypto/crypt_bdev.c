/* The crypt layer as a stacked bdev: opening it, the channel life cycle, and
 * the operations. Reads pass the caller's iovecs down and are decrypted in
 * place once the lower read succeeded (a failed read is returned as it is);
 * writes are encrypted into bounce pages (crypt_write.c); flushes pass
 * through.
 *
 * DISCARD and WRITE_ZEROES both become encrypted writes of zero sectors: a
 * hole in the file would decrypt to garbage, and bdev.h promises zeroes
 * after either. The layer cannot tell a discard from a write-zeroes with
 * unmap (both arrive as punch_hole), and the front end advertises discard,
 * so refusing it would break discard for guests; the cost is that a
 * discard writes the range. */
#include "crypto/crypt_internal.h"

#include "common/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void channel_free(struct crypt_channel *ch)
{
	/* The lower channel first: no page is touched after it is gone. */
	bdev_channel_destroy(ch->lower);
	crypt_pool_fini(ch);
	xts_cipher_free(ch->cipher);
	secret_wipe(ch->scratch, sizeof(ch->scratch));
	free(ch);
}

static int crypt_channel_create(void *layer, struct bdev_channel *self, uint32_t depth, void **out)
{
	const struct crypt_device *dev = layer;
	struct crypt_channel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->self = self;
	int rc = xts_cipher_new(dev->keys->key1, dev->keys->key2, &ch->cipher, NULL);
	if (rc == 0)
		rc = crypt_pool_init(ch, depth, bdev_buffer_alignment(dev->lower));
	if (rc == 0) {
		/* Reads and flushes take one lower operation each, writes one
		 * per part: room for every part the pool allows. */
		uint64_t lower_depth = (uint64_t)depth + ch->nparts;
		if (lower_depth > BDEV_MAX_DEPTH)
			lower_depth = BDEV_MAX_DEPTH;
		ch->extra_parts = (uint32_t)lower_depth - depth;
		rc = bdev_channel_create(dev->lower, (uint32_t)lower_depth, &ch->lower);
	}
	if (rc < 0) {
		channel_free(ch);
		return rc;
	}
	*out = ch;
	return 0;
}

static void crypt_channel_destroy(void *lch)
{
	/* Writes still waiting were never issued: dropping them touches no
	 * buffer of the caller's. */
	channel_free(lch);
}

static uint32_t new_request(struct crypt_channel *ch, enum crypt_op op, uint64_t id,
			    uint64_t sector)
{
	uint32_t r = crypt_request_get(ch);
	if (r == CRYPT_NONE) {
		/* Cannot happen: bdev.c admits at most depth operations. */
		bdev_layer_complete(ch->self, id, -EAGAIN);
		return r;
	}
	struct crypt_request *req = &ch->requests[r];
	uint32_t next_free = req->next_free;
	*req = (struct crypt_request){.id = id, .op = op, .sector = sector};
	req->next_free = next_free;
	return r;
}

static void crypt_add_rw(void *lch, bool write, uint64_t sector, const struct iovec *iov,
			 int iovcnt, uint64_t bytes, uint64_t id)
{
	struct crypt_channel *ch = lch;
	if (bytes % SECTOR_SIZE) {
		/* XTS works on whole sectors. */
		bdev_layer_complete(ch->self, id, -EINVAL);
		return;
	}
	uint32_t r = new_request(ch, write ? CRYPT_OP_WRITE : CRYPT_OP_READ, id, sector);
	if (r == CRYPT_NONE)
		return;
	struct crypt_request *req = &ch->requests[r];
	req->iov = iov;
	req->iovcnt = iovcnt;
	if (!write) {
		bdev_add_readv(ch->lower, sector, iov, iovcnt, crypt_request_lower_id(r));
		return;
	}
	req->remaining = bytes;
	crypt_write_queue(ch, r);
	crypt_write_pump(ch);
}

static void crypt_add_flush(void *lch, uint64_t id)
{
	struct crypt_channel *ch = lch;
	uint32_t r = new_request(ch, CRYPT_OP_FLUSH, id, 0);
	if (r != CRYPT_NONE)
		bdev_add_flush(ch->lower, crypt_request_lower_id(r));
}

static void crypt_add_fallocate(void *lch, bool punch_hole, uint64_t sector, uint64_t count,
				uint64_t id)
{
	struct crypt_channel *ch = lch;
	uint32_t r = new_request(ch, CRYPT_OP_ZEROES, id, sector);
	if (r == CRYPT_NONE)
		return;
	/* bdev.c checked that the byte range fits. */
	ch->requests[r].remaining = count << SECTOR_SHIFT;
	crypt_write_queue(ch, r);
	crypt_write_pump(ch);
}

static int crypt_submit(void *lch)
{
	struct crypt_channel *ch = lch;
	return bdev_submit(ch->lower);
}

/* A read or flush came back: decrypt a successful read in place. */
static void request_done(struct crypt_channel *ch, uint32_t r, int result,
			 struct bdev_completion *out)
{
	struct crypt_request *req = &ch->requests[r];
	if (result == 0 && req->op == CRYPT_OP_READ &&
	    crypt_iov_decrypt(ch, req->sector, req->iov, req->iovcnt) < 0) {
		log_error("crypt: decrypting a read failed");
		result = -EIO;
	}
	out->id = req->id;
	out->result = result;
	crypt_request_put(ch, r);
}

/* Turns lower completions into the caller's, in place; returns how many. */
static int translate(struct crypt_channel *ch, struct bdev_completion *c, int count)
{
	int kept = 0;
	for (int i = 0; i < count; i++) {
		uint64_t lower_id = c[i].id;
		int result = c[i].result;
		uint32_t index = (uint32_t)(lower_id >> 1);
		if (lower_id & 1u) {
			if (crypt_write_part_done(ch, index, result, &c[kept]))
				kept++;
		} else {
			request_done(ch, index, result, &c[kept++]);
		}
	}
	return kept;
}

static int crypt_poll(void *lch, struct bdev_completion *out, int max)
{
	struct crypt_channel *ch = lch;
	int n = 0;
	/* Write parts that do not finish a request take room in `out` without
	 * producing anything: keep reaping until the lower channel is empty,
	 * so a caller that gets fewer than max may sleep. */
	while (n < max) {
		int want = max - n;
		int got = bdev_poll(ch->lower, out + n, want);
		n += translate(ch, out + n, got);
		if (got < want)
			break;
	}
	if (ch->pending_count && crypt_write_pump(ch)) {
		/* What the kernel does not take now stays queued below and
		 * shows in needs_submit. */
		int rc = bdev_submit(ch->lower);
		if (rc < 0)
			log_debug("crypt: submit: %s (retried)", strerror(-rc));
	}
	return n;
}

static int crypt_completion_fd(const void *lch)
{
	const struct crypt_channel *ch = lch;
	return bdev_completion_fd(ch->lower);
}

static bool crypt_needs_submit(const void *lch)
{
	const struct crypt_channel *ch = lch;
	return bdev_needs_submit(ch->lower);
}

static void crypt_destroy(void *layer)
{
	struct crypt_device *dev = layer;
	secret_free(dev->keys, sizeof(*dev->keys)); /* wipes */
	dev->keys = NULL;
}

static const struct bdev_layer_ops crypt_layer_ops = {
    .channel_create = crypt_channel_create,
    .channel_destroy = crypt_channel_destroy,
    .add_rw = crypt_add_rw,
    .add_flush = crypt_add_flush,
    .add_fallocate = crypt_add_fallocate,
    .submit = crypt_submit,
    .poll = crypt_poll,
    .completion_fd = crypt_completion_fd,
    .needs_submit = crypt_needs_submit,
    .destroy = crypt_destroy,
};

int crypt_bdev_open(struct bdev *lower, const uint8_t key1[XTS_KEY_BYTES],
		    const uint8_t key2[XTS_KEY_BYTES], struct bdev **out, struct error *err)
{
	*out = NULL;
	if (!lower)
		return error_set(err, -EINVAL, "no device to encrypt");
	/* Channels build their own ciphers; building one now reports bad keys
	 * (or an OpenSSL without AES) at open instead of at the first I/O. */
	struct xts_cipher *probe;
	int rc = xts_cipher_new(key1, key2, &probe, err);
	if (rc < 0)
		return rc;
	xts_cipher_free(probe);
	/* Locked memory: the keys stay for the device's life. */
	struct crypt_device dev = {.lower = lower, .keys = secret_alloc(sizeof(struct crypt_keys))};
	if (!dev.keys)
		return error_set(err, -ENOMEM, "out of memory for the encryption keys");
	memcpy(dev.keys->key1, key1, XTS_KEY_BYTES);
	memcpy(dev.keys->key2, key2, XTS_KEY_BYTES);
	rc = bdev_layer_open(&crypt_layer_ops, &dev, sizeof(dev), lower, out);
	if (rc < 0) {
		crypt_destroy(&dev);
		error_set(err, rc, "cannot build the crypt layer: %s", strerror(-rc));
	}
	return rc;
}
