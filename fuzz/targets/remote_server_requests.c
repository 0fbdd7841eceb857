/*
 * The request stream of remote-stripe-server: the bytes a client sends, as
 * the TLS layer would deliver them. They are written into one end of a
 * socketpair whose other end the server's connection state machine serves
 * (remote_server_serve_fd: server_conn.c, server_headers.c, the event loop)
 * over a small in-memory disk. A thread reads every reply and checks it,
 * byte for byte, against what the protocol (spec section 2.2) answers to
 * those bytes: the METADATA reply, each READ_STRIPE's status byte or its
 * stripe, FE for any other opcode (the next byte is a new opcode), nothing
 * for a request cut short, and nothing after the last reply.
 *
 * The disk: 7.5 stripes of 32 KiB (shift 6) of the golden pattern of
 * tests/data/remote; one header per stripe, chosen so every status occurs
 * (the table below); reads of stripe 6 fail on the device.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "remote/remote_internal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Up to 113 READ_STRIPE requests: each input stays within milliseconds. */
#define REQUESTS_MAX_BYTES 1024u
#define SHIFT		   6u
#define STRIPE_SECTORS	   (1u << SHIFT)
#define STRIPE_BYTES	   (STRIPE_SECTORS * 512u)
#define STRIPES		   8u
#define DISK_SECTORS	   (7u * STRIPE_SECTORS + STRIPE_SECTORS / 2)
#define DISK_BYTES	   ((size_t)DISK_SECTORS * 512u)
#define FAILING_STRIPE	   6u

/* FETCHED 01, WRITTEN 02, HAS_SOURCE 04. */
static const uint8_t headers[STRIPES] = {0x07, 0x02, 0x00, 0x04, 0x06, 0x01, 0x05, 0x03};
/* What spec 2.2 answers for each (INVALID_STRIPE past the end): HAS_SOURCE
 * without FETCHED is NOT_FETCHED (checked first), neither WRITTEN nor
 * HAS_SOURCE+FETCHED is NO_DATA, a failed read SERVER_ERROR. Stripe 7 is
 * half past the disk's end: its tail is zeros. */
static const uint8_t expected_status[STRIPES] = {
    REMOTE_STATUS_OK,		REMOTE_STATUS_OK,	   REMOTE_STATUS_NO_DATA,
    REMOTE_STATUS_NOT_FETCHED,	REMOTE_STATUS_NOT_FETCHED, REMOTE_STATUS_NO_DATA,
    REMOTE_STATUS_SERVER_ERROR, REMOTE_STATUS_OK,
};

static uint8_t *image;	    /* the disk, then zeros to the end of the last stripe */
static uint8_t *meta_reply; /* the METADATA reply, written down from spec 1.3 and 2.2 */
static size_t meta_reply_len;
static struct bdev *null_dev, *disk;

/* ---- the disk: reads copy from `image`, stripe 6 fails ---- */

static int disk_channel_create(void *layer, struct bdev_channel *ch, uint32_t depth, void **out)
{
	(void)layer;
	(void)depth;
	*out = ch;
	return 0;
}

static void disk_channel_destroy(void *lch)
{
	(void)lch;
}

static void disk_add_rw(void *lch, bool write, uint64_t sector, const struct iovec *iov, int iovcnt,
			uint64_t bytes, uint64_t id)
{
	if (write || sector / STRIPE_SECTORS == FAILING_STRIPE) {
		bdev_layer_complete(lch, id, write ? -EROFS : -EIO);
		return;
	}
	size_t off = (size_t)sector * 512u;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(iov[i].iov_base, image + off, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	(void)bytes;
	bdev_layer_complete(lch, id, 0);
}

static void disk_add_flush(void *lch, uint64_t id)
{
	bdev_layer_complete(lch, id, 0);
}

static void disk_add_fallocate(void *lch, bool punch, uint64_t sector, uint64_t count, uint64_t id)
{
	(void)punch;
	(void)sector;
	(void)count;
	bdev_layer_complete(lch, id, -EOPNOTSUPP);
}

static int disk_submit(void *lch)
{
	(void)lch;
	return 0;
}

static int disk_poll(void *lch, struct bdev_completion *out, int max)
{
	(void)lch;
	(void)out;
	(void)max;
	return 0;
}

static int disk_completion_fd(const void *lch)
{
	(void)lch;
	return -1;
}

static const struct bdev_layer_ops disk_ops = {
    .channel_create = disk_channel_create,
    .channel_destroy = disk_channel_destroy,
    .add_rw = disk_add_rw,
    .add_flush = disk_add_flush,
    .add_fallocate = disk_add_fallocate,
    .submit = disk_submit,
    .poll = disk_poll,
    .completion_fd = disk_completion_fd,
};

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* Every session logs its start and end at info level. */
	setenv("UBIBLK_LOG", "error", 1);
	log_init();
	image = calloc(1, (size_t)STRIPES * STRIPE_BYTES);
	/* The golden pattern (tests/data/remote/README.md). */
	for (size_t o = 0; image && o < DISK_BYTES; o++)
		image[o] = (uint8_t)(((uint32_t)o * 2654435761u) >> 24);
	/* 00, u64 512 + N, magic "BDEV_UBI\0", version 1.0 (u16, u16), shift,
	 * zeros to byte 512 of the blob, the headers. */
	meta_reply_len = 9 + 512 + STRIPES;
	meta_reply = calloc(1, meta_reply_len);
	if (!image || !meta_reply)
		abort();
	put_u64(meta_reply + 1, 512 + STRIPES);
	memcpy(meta_reply + 9, "BDEV_UBI", 9);
	meta_reply[9 + 9] = 1;
	meta_reply[9 + 13] = SHIFT;
	memcpy(meta_reply + 9 + 512, headers, STRIPES);
	if (bdev_open_null(DISK_SECTORS, &null_dev) != 0 ||
	    bdev_layer_open(&disk_ops, NULL, 0, null_dev, &disk) != 0)
		abort();
	return 0;
}

/* ---- the client's side: the replies ---- */

struct replies {
	int fd;
	const uint8_t *requests;
	size_t len;
	uint8_t *buf; /* STRIPE_BYTES */
	const char *failure;
	size_t at; /* reply bytes read before the failure */
};

/* Reads exactly len bytes and compares them with `want`. */
static bool expect(struct replies *r, const uint8_t *want, size_t len)
{
	while (len > 0) {
		size_t chunk = len < STRIPE_BYTES ? len : STRIPE_BYTES;
		size_t got = 0;
		while (got < chunk) {
			ssize_t n = recv(r->fd, r->buf + got, chunk - got, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				r->failure = n == 0 ? "the server closed before its whole reply"
						    : "reading a reply failed (timed out?)";
				return false;
			}
			got += (size_t)n;
		}
		if (memcmp(r->buf, want, chunk) != 0) {
			r->failure = "a reply differs from the protocol's";
			return false;
		}
		r->at += chunk;
		want += chunk;
		len -= chunk;
	}
	return true;
}

/* Walks the requests the way spec 2.2 reads them, reading each reply. */
static void check_replies(struct replies *r)
{
	size_t pos = 0;
	while (pos < r->len) {
		uint8_t op = r->requests[pos];
		if (op == REMOTE_OP_METADATA) {
			pos++;
			if (!expect(r, meta_reply, meta_reply_len))
				return;
		} else if (op == REMOTE_OP_READ_STRIPE) {
			if (r->len - pos < REMOTE_READ_STRIPE_REQUEST_BYTES)
				break; /* cut short: the session ends unanswered */
			uint64_t index = get_u64(r->requests + pos + 1);
			pos += REMOTE_READ_STRIPE_REQUEST_BYTES;
			uint8_t status =
			    index < STRIPES ? expected_status[index] : REMOTE_STATUS_INVALID_STRIPE;
			if (status != REMOTE_STATUS_OK) {
				if (!expect(r, &status, 1))
					return;
				continue;
			}
			uint8_t head[REMOTE_REPLY_HEADER_BYTES] = {REMOTE_STATUS_OK};
			put_u64(head + 1, STRIPE_BYTES);
			if (!expect(r, head, sizeof(head)) ||
			    !expect(r, image + index * STRIPE_BYTES, STRIPE_BYTES))
				return;
		} else {
			uint8_t invalid = REMOTE_STATUS_INVALID_COMMAND;
			pos++;
			if (!expect(r, &invalid, 1))
				return;
		}
	}
	uint8_t extra;
	ssize_t n;
	while ((n = recv(r->fd, &extra, 1, 0)) < 0 && errno == EINTR)
		;
	if (n != 0)
		r->failure = n > 0 ? "bytes after the last reply" : "no end after the last reply";
}

static void *replies_main(void *arg)
{
	check_replies(arg);
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > REQUESTS_MAX_BYTES)
		return 0;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	/* The whole request stream fits the socket buffer; then end it, as a
	 * client that sent everything and waits for the replies. */
	if (size && write(sv[1], data, size) != (ssize_t)size)
		abort();
	shutdown(sv[1], SHUT_WR);
	/* A server that stops answering fails the input instead of hanging. */
	struct timeval tv = {.tv_sec = 20};
	setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

	struct replies r = {
	    .fd = sv[1], .requests = data, .len = size, .buf = malloc(STRIPE_BYTES)};
	pthread_t reader;
	if (!r.buf || pthread_create(&reader, NULL, replies_main, &r) != 0)
		abort();
	struct remote_server_options opts = {
	    .device = disk,
	    .shift = SHIFT,
	    .headers = headers,
	    .header_count = STRIPES,
	    .timeouts = {.connect_ms = 10000, .io_ms = 10000, .idle_ms = 10000},
	};
	struct error err = {0};
	int rc = remote_server_serve_fd(&opts, sv[0], &err);
	pthread_join(reader, NULL);
	close(sv[1]);
	free(r.buf);
	if (rc != 0) {
		fprintf(stderr, "remote_server_serve_fd: %s\n", err.text);
		abort();
	}
	if (r.failure) {
		fprintf(stderr, "after %zu reply bytes: %s\n", r.at, r.failure);
		abort();
	}
	return 0;
}
