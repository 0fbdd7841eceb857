/* remote_server_run over a device whose reads can fail: every status byte
 * on one connection (NO_DATA needs headers only a caller can give, a
 * failed read answers SERVER_ERROR and the session goes on), and stopping
 * from another thread or before the loop starts. remote_server_serve_fd and
 * remote_client_attach (the fuzz targets' seams) on a socketpair. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "remote/remote_internal.h"

#define SHIFT	       6u
#define STRIPE_SECTORS (1u << SHIFT)
#define STRIPE_BYTES   (STRIPE_SECTORS * 512u)
#define STRIPES	       5u
#define BAD_STRIPE     4u

/* ---- a device whose sectors read as their own number, one stripe failing ---- */

static int pattern_channel_create(void *layer, struct bdev_channel *ch, uint32_t depth, void **out)
{
	*out = ch;
	return 0;
}

static void pattern_channel_destroy(void *lch)
{
}

static void pattern_add_rw(void *lch, bool write, uint64_t sector, const struct iovec *iov,
			   int iovcnt, uint64_t bytes, uint64_t id)
{
	assert_int_equal(iovcnt, 1);
	if (sector / STRIPE_SECTORS == BAD_STRIPE) {
		bdev_layer_complete(lch, id, -EIO);
		return;
	}
	uint8_t *p = iov[0].iov_base;
	for (uint64_t i = 0; i < bytes / 512; i++)
		memset(p + i * 512, (int)(sector + i) & 0xff, 512);
	bdev_layer_complete(lch, id, 0);
}

static void pattern_add_flush(void *lch, uint64_t id)
{
	bdev_layer_complete(lch, id, 0);
}

static void pattern_add_fallocate(void *lch, bool punch, uint64_t sector, uint64_t count,
				  uint64_t id)
{
	bdev_layer_complete(lch, id, -EOPNOTSUPP);
}

static int pattern_submit(void *lch)
{
	return 0;
}

static int pattern_poll(void *lch, struct bdev_completion *out, int max)
{
	return 0;
}

static int pattern_completion_fd(const void *lch)
{
	return -1;
}

static const struct bdev_layer_ops pattern_ops = {
    .channel_create = pattern_channel_create,
    .channel_destroy = pattern_channel_destroy,
    .add_rw = pattern_add_rw,
    .add_flush = pattern_add_flush,
    .add_fallocate = pattern_add_fallocate,
    .submit = pattern_submit,
    .poll = pattern_poll,
    .completion_fd = pattern_completion_fd,
};

/* ---- the server on a thread ---- */

struct running {
	struct remote_server_options opts;
	char address[32];
	pthread_t thread;
	int result;
	struct error err;
	struct bdev *below, *dev;
};

static void *server_main(void *arg)
{
	struct running *r = arg;
	r->result = remote_server_run(&r->opts, &r->err);
	return NULL;
}

/* A port nobody uses right now (the server binds it with SO_REUSEADDR). */
static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static const uint8_t headers[STRIPES] = {
    0,						  /* NO_DATA */
    META_HEADER_WRITTEN,			  /* OK */
    META_HEADER_HAS_SOURCE,			  /* NOT_FETCHED */
    META_HEADER_HAS_SOURCE | META_HEADER_FETCHED, /* OK */
    META_HEADER_HAS_SOURCE | META_HEADER_FETCHED, /* the read fails */
};

static uint16_t start(struct running *r)
{
	memset(r, 0, sizeof(*r));
	assert_int_equal(bdev_open_null(STRIPES * STRIPE_SECTORS, &r->below), 0);
	assert_int_equal(bdev_layer_open(&pattern_ops, NULL, 0, r->below, &r->dev), 0);
	uint16_t port = free_port();
	snprintf(r->address, sizeof(r->address), "127.0.0.1:%u", port);
	r->opts = (struct remote_server_options){
	    .address = r->address,
	    .device = r->dev,
	    .shift = SHIFT,
	    .headers = headers,
	    .header_count = STRIPES,
	    .max_connections = 8,
	    .timeouts = {.connect_ms = 2000, .io_ms = 2000, .idle_ms = 2000},
	};
	assert_int_equal(thread_start(&r->thread, "test-server", server_main, r), 0);
	return port;
}

static void finish(struct running *r)
{
	remote_server_request_stop();
	pthread_join(r->thread, NULL);
	assert_int_equal(r->result, 0);
	bdev_close(r->dev);
	bdev_close(r->below);
}

static int dial(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	for (int i = 0; i < 500; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			struct timeval tv = {.tv_sec = 5};
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			return fd;
		}
		close(fd);
		usleep(10000);
	}
	fail_msg("the server does not listen");
	return -1;
}

static void recv_all(int fd, uint8_t *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(fd, buf + got, len - got, 0);
		assert_true(n > 0);
		got += (size_t)n;
	}
}

static uint8_t read_stripe(int fd, uint64_t index, uint8_t *data)
{
	uint8_t req[9] = {REMOTE_OP_READ_STRIPE};
	for (int i = 0; i < 8; i++)
		req[1 + i] = (uint8_t)(index >> (8 * i));
	assert_int_equal(send(fd, req, sizeof(req), 0), 9);
	uint8_t status;
	recv_all(fd, &status, 1);
	if (status != REMOTE_STATUS_OK)
		return status;
	uint8_t size[8];
	recv_all(fd, size, 8);
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = (n << 8) | size[i];
	assert_int_equal(n, STRIPE_BYTES);
	recv_all(fd, data, STRIPE_BYTES);
	return status;
}

static void every_status_on_one_session(void **state)
{
	struct running r;
	int fd = dial(start(&r));
	static uint8_t data[STRIPE_BYTES];

	assert_int_equal(read_stripe(fd, 0, data), REMOTE_STATUS_NO_DATA);
	assert_int_equal(read_stripe(fd, 1, data), REMOTE_STATUS_OK);
	for (uint32_t i = 0; i < STRIPE_SECTORS; i++)
		assert_int_equal(data[i * 512 + 7], (STRIPE_SECTORS + i) & 0xff);
	assert_int_equal(read_stripe(fd, 2, data), REMOTE_STATUS_NOT_FETCHED);
	assert_int_equal(read_stripe(fd, BAD_STRIPE, data), REMOTE_STATUS_SERVER_ERROR);
	/* The session goes on after a failed read. */
	assert_int_equal(read_stripe(fd, 3, data), REMOTE_STATUS_OK);
	assert_int_equal(data[0], (3 * STRIPE_SECTORS) & 0xff);
	assert_int_equal(read_stripe(fd, STRIPES, data), REMOTE_STATUS_INVALID_STRIPE);
	uint8_t op = 0x7f, status = 0;
	assert_int_equal(send(fd, &op, 1, 0), 1);
	recv_all(fd, &status, 1);
	assert_int_equal(status, REMOTE_STATUS_INVALID_COMMAND);

	/* METADATA: 00, u64 512 + 5, the header sector, the headers as given. */
	op = REMOTE_OP_METADATA;
	assert_int_equal(send(fd, &op, 1, 0), 1);
	uint8_t reply[9 + 512 + STRIPES];
	recv_all(fd, reply, sizeof(reply));
	assert_int_equal(reply[0], 0);
	assert_int_equal(reply[1] | reply[2] << 8, 512 + STRIPES);
	assert_memory_equal(reply + 9, "BDEV_UBI", 9);
	assert_int_equal(reply[9 + 13], SHIFT);
	assert_memory_equal(reply + 9 + 512, headers, STRIPES);

	close(fd);
	finish(&r);
}

static void stop_before_the_loop_runs(void **state)
{
	remote_server_request_stop();
	struct running r;
	start(&r);
	pthread_join(r.thread, NULL);
	assert_int_equal(r.result, 0);
	bdev_close(r.dev);
	bdev_close(r.below);
	/* The request was consumed: the next server runs until stopped. */
	int fd = dial(start(&r));
	uint8_t data[1];
	assert_int_equal(read_stripe(fd, 0, data), REMOTE_STATUS_NO_DATA);
	close(fd);
	finish(&r);
}

struct served {
	struct remote_server_options opts;
	int fd;
	int result;
	struct error err;
};

static void *serve_main(void *arg)
{
	struct served *s = arg;
	s->result = remote_server_serve_fd(&s->opts, s->fd, &s->err);
	return NULL;
}

/* One session without listening: the server ends when its client closes.
 * The READ_STRIPE already waiting when the server starts is read from the
 * disk at once; it once waited for the next deadline (here the idle timeout
 * of ten minutes: the test's own timeout fails it) because the device
 * completes without signalling an fd. */
static void one_session_on_a_socketpair(void **state)
{
	struct bdev *below, *dev;
	assert_int_equal(bdev_open_null(STRIPES * STRIPE_SECTORS, &below), 0);
	assert_int_equal(bdev_layer_open(&pattern_ops, NULL, 0, below, &dev), 0);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	uint8_t req[REMOTE_READ_STRIPE_REQUEST_BYTES] = {REMOTE_OP_READ_STRIPE, 1};
	assert_int_equal(send(sv[1], req, sizeof(req), 0), sizeof(req));

	/* No address and no connection limit: neither is used. */
	struct served s = {
	    .opts = {.device = dev,
		     .shift = SHIFT,
		     .headers = headers,
		     .header_count = STRIPES,
		     .timeouts = {.connect_ms = 600000, .io_ms = 600000, .idle_ms = 600000}},
	    .fd = sv[0]};
	pthread_t thread;
	assert_int_equal(pthread_create(&thread, NULL, serve_main, &s), 0);

	static uint8_t data[STRIPE_BYTES];
	uint8_t head[REMOTE_REPLY_HEADER_BYTES];
	recv_all(sv[1], head, sizeof(head));
	assert_int_equal(head[0], REMOTE_STATUS_OK);
	assert_int_equal(head[1] | head[2] << 8 | head[3] << 16, STRIPE_BYTES);
	recv_all(sv[1], data, STRIPE_BYTES);
	assert_int_equal(data[0], STRIPE_SECTORS & 0xff);

	struct remote_client *c;
	struct error err = {0};
	assert_int_equal(remote_client_attach(sv[1], "socketpair", NULL, &c, &err), 0);
	const struct remote_metadata *m = remote_client_metadata(c);
	assert_int_equal(m->shift, SHIFT);
	assert_int_equal(m->header_count, STRIPES);
	assert_memory_equal(m->headers, headers, STRIPES);
	uint8_t status;
	assert_int_equal(remote_client_read_stripe(c, 3, data, &status, &err), 0);
	assert_int_equal(data[512], (3 * STRIPE_SECTORS + 1) & 0xff);
	assert_int_equal(remote_client_read_stripe(c, 0, data, &status, &err), -ENODATA);
	assert_int_equal(status, REMOTE_STATUS_NO_DATA);
	assert_int_equal(remote_client_read_stripe(c, BAD_STRIPE, data, &status, &err), -EIO);
	assert_int_equal(status, REMOTE_STATUS_SERVER_ERROR);
	assert_false(remote_client_broken(c));
	remote_client_close(c); /* closes sv[1]: the session ends */

	pthread_join(thread, NULL);
	assert_int_equal(s.result, 0);
	bdev_close(dev);
	bdev_close(below);
}

static void bad_options_are_refused(void **state)
{
	struct bdev *dev;
	assert_int_equal(bdev_open_null(STRIPES * STRIPE_SECTORS, &dev), 0);
	struct remote_server_options o = {.address = "127.0.0.1:0",
					  .device = dev,
					  .shift = SHIFT,
					  .headers = headers,
					  .header_count = STRIPES + 1,
					  .max_connections = 1,
					  .timeouts = {.connect_ms = 1, .io_ms = 1}};
	struct error err = {0};
	assert_int_equal(remote_server_run(&o, &err), -EINVAL);
	o.header_count = STRIPES;
	o.address = "127.0.0.1";
	assert_int_equal(remote_server_run(&o, &err), -EINVAL);
	assert_string_equal(err.text, "invalid listen address 127.0.0.1: expected host:port");
	o.address = "::1:4555";
	assert_int_equal(remote_server_run(&o, &err), -EINVAL);
	bdev_close(dev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(every_status_on_one_session),
	    cmocka_unit_test(stop_before_the_loop_runs),
	    cmocka_unit_test(bad_options_are_refused),
	    cmocka_unit_test(one_session_on_a_socketpair),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
