/* The remote stripe source (a pool of connection threads) against a
 * scripted multi-connection server on loopback, driven the way the fetch
 * worker drives it: request, wait on the completion fd, poll. Exactly one
 * completion per accepted request while the server drops connections;
 * connections the server closed while they sat idle are dialled again
 * without failing the stripe that finds them closed; closing the source
 * while its threads wait in backoff returns at once. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fetch/source_internal.h"
#include "golden.h"
#include "remote/remote.h"
#include "remote/remote_internal.h"

#define STRIPE_SECTORS 2048u
#define STRIPE_BYTES   (512u * STRIPE_SECTORS)
#define MAX_SESSIONS   256

struct server {
	int listen_fd;
	pthread_t accept_thread;
	pthread_mutex_t lock;
	int fds[MAX_SESSIONS];
	pthread_t threads[MAX_SESSIONS];
	unsigned sessions;
	unsigned replies; /* stripe replies sent */
	/* Every drop_every-th stripe reply is cut in half and the connection
	 * reset (0: never). */
	unsigned drop_every;
	bool stopping;
	char address[64];
};

struct session {
	struct server *srv;
	int fd;
};

static bool read_exact(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = recv(fd, p, len, 0);
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static bool write_exact(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static void *session_main(void *arg)
{
	struct session *ss = arg;
	struct server *srv = ss->srv;
	int fd = ss->fd;
	free(ss);
	uint8_t *reply = malloc(9 + STRIPE_BYTES);
	memcpy(reply, golden_read_stripe_reply_header, 9);
	uint8_t op;
	while (read_exact(fd, &op, 1)) {
		if (op == REMOTE_OP_METADATA) {
			if (!write_exact(fd, golden_metadata_reply, sizeof(golden_metadata_reply)))
				break;
			continue;
		}
		uint8_t index[8];
		if (op != REMOTE_OP_READ_STRIPE || !read_exact(fd, index, 8))
			break;
		uint64_t i = remote_get_u64(index);
		if (i >= 4) {
			uint8_t status = REMOTE_STATUS_INVALID_STRIPE;
			write_exact(fd, &status, 1);
			continue;
		}
		pthread_mutex_lock(&srv->lock);
		unsigned n = ++srv->replies;
		bool drop = srv->drop_every && n % srv->drop_every == 0;
		pthread_mutex_unlock(&srv->lock);
		memset(reply + 9, (int)(0xA0 + i), STRIPE_BYTES);
		if (drop) {
			write_exact(fd, reply, 9 + STRIPE_BYTES / 2);
			break;
		}
		if (!write_exact(fd, reply, 9 + STRIPE_BYTES))
			break;
	}
	free(reply);
	shutdown(fd, SHUT_RDWR);
	return NULL;
}

static void *accept_main(void *arg)
{
	struct server *srv = arg;
	for (;;) {
		int fd = accept(srv->listen_fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		pthread_mutex_lock(&srv->lock);
		if (srv->stopping || srv->sessions == MAX_SESSIONS) {
			pthread_mutex_unlock(&srv->lock);
			close(fd);
			continue;
		}
		struct session *ss = malloc(sizeof(*ss));
		ss->srv = srv;
		ss->fd = fd;
		srv->fds[srv->sessions] = fd;
		assert_int_equal(
		    thread_start(&srv->threads[srv->sessions], "session", session_main, ss), 0);
		srv->sessions++;
		pthread_mutex_unlock(&srv->lock);
	}
}

static void server_start(struct server *srv)
{
	memset(srv, 0, sizeof(*srv));
	pthread_mutex_init(&srv->lock, NULL);
	srv->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(srv->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(srv->listen_fd, 64), 0);
	socklen_t len = sizeof(sa);
	getsockname(srv->listen_fd, (struct sockaddr *)&sa, &len);
	snprintf(srv->address, sizeof(srv->address), "127.0.0.1:%u", ntohs(sa.sin_port));
	assert_int_equal(thread_start(&srv->accept_thread, "accept", accept_main, srv), 0);
}

/* Ends every session, as a server's idle timeout does: the client's
 * sockets see EOF while nothing is asked. */
static void server_close_sessions(struct server *srv)
{
	pthread_mutex_lock(&srv->lock);
	for (unsigned i = 0; i < srv->sessions; i++)
		shutdown(srv->fds[i], SHUT_RDWR);
	pthread_mutex_unlock(&srv->lock);
}

static void server_stop(struct server *srv)
{
	pthread_mutex_lock(&srv->lock);
	srv->stopping = true;
	pthread_mutex_unlock(&srv->lock);
	shutdown(srv->listen_fd, SHUT_RDWR);
	pthread_join(srv->accept_thread, NULL);
	close(srv->listen_fd);
	server_close_sessions(srv);
	for (unsigned i = 0; i < srv->sessions; i++) {
		pthread_join(srv->threads[i], NULL);
		close(srv->fds[i]);
	}
	pthread_mutex_destroy(&srv->lock);
}

static const struct remote_timeouts quick = {.connect_ms = 1000, .io_ms = 1000};

static struct stripe_source *source_new(struct server *srv, unsigned connections,
					const struct remote_backoff *backoff)
{
	struct remote_source_config cfg = {.address = srv->address, .connections = connections};
	struct stripe_source *src = NULL;
	struct error err = {0};
	int rc =
	    stripe_source_remote_with_backoff(&cfg, STRIPE_SECTORS, &quick, backoff, &src, &err);
	if (rc < 0)
		fail_msg("%s", err.text);
	assert_int_equal(stripe_source_sector_count(src), 4 * STRIPE_SECTORS);
	assert_int_equal(source_open(src), 0);
	return src;
}

/* Polls until `want` completions arrived or timeout_ms passed; returns how
 * many arrived. */
static int collect(struct stripe_source *src, struct source_completion *out, int want,
		   int timeout_ms)
{
	int got = 0;
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000u;
	while (got < want && now_ns() < end) {
		struct pollfd p = {.fd = source_completion_fd(src), .events = POLLIN};
		poll(&p, 1, 50);
		got += source_poll(src, out + got, want - got);
	}
	return got;
}

static void idle_closed_connections_are_dialled_again(void **state)
{
	struct server srv;
	server_start(&srv);
	struct remote_backoff backoff = {.first_ms = 300, .max_ms = 1000, .attempts = 10};
	struct stripe_source *src = source_new(&srv, 4, &backoff);
	uint8_t *buf = malloc(STRIPE_BYTES);
	struct source_completion done[2];

	assert_int_equal(source_request(src, 0, buf), 0);
	assert_int_equal(collect(src, done, 1, 5000), 1);
	assert_int_equal(done[0].result, 0);
	assert_int_equal(buf[0], 0xA0);

	/* The server ends every session while the source has nothing to ask
	 * (an idle timeout): the next stripe must not pay for it. */
	server_close_sessions(&srv);
	usleep(200 * 1000);
	for (uint64_t i = 1; i < 4; i++) {
		assert_int_equal(source_request(src, i, buf), 0);
		assert_int_equal(collect(src, done, 1, 5000), 1);
		assert_int_equal(done[0].stripe, i);
		assert_int_equal(done[0].result, 0);
		assert_int_equal(buf[STRIPE_BYTES - 1], 0xA0 + i);
	}
	assert_false(source_busy(src));
	source_close(src);
	stripe_source_destroy(src);
	free(buf);
	server_stop(&srv);
}

/* Many requests while the server cuts every third reply: every request
 * completes exactly once, the buffers are never written after their
 * completion. */
static void one_completion_per_request_while_connections_drop(void **state)
{
	struct server srv;
	server_start(&srv);
	srv.drop_every = 3;
	struct remote_backoff backoff = {.first_ms = 10, .max_ms = 50, .attempts = 100};
	struct stripe_source *src = source_new(&srv, 4, &backoff);
	enum { ROUNDS = 64 };
	uint8_t *bufs[4];
	for (int k = 0; k < 4; k++)
		bufs[k] = malloc(STRIPE_BYTES);
	int ok = 0, failed = 0;
	for (int round = 0; round < ROUNDS; round++) {
		for (int k = 0; k < 4; k++)
			assert_int_equal(source_request(src, (uint64_t)k, bufs[k]), 0);
		struct source_completion done[4];
		int got = collect(src, done, 4, 10000);
		assert_int_equal(got, 4);
		bool seen[4] = {false};
		for (int i = 0; i < got; i++) {
			assert_true(done[i].stripe < 4);
			assert_false(seen[done[i].stripe]);
			seen[done[i].stripe] = true;
			if (done[i].result == 0) {
				ok++;
				assert_int_equal(bufs[done[i].stripe][0], 0xA0 + done[i].stripe);
			} else {
				failed++;
			}
		}
		assert_false(source_busy(src));
		/* Nothing more comes for this round. */
		assert_int_equal(source_poll(src, done, 4), 0);
	}
	/* A dropped reply is read again on another connection: most stripes
	 * arrive despite every third reply being cut. */
	assert_true(ok > failed);
	source_close(src);
	stripe_source_destroy(src);
	for (int k = 0; k < 4; k++)
		free(bufs[k]);
	server_stop(&srv);
}

/* The server goes away: the threads sit in backoff (a long one) and
 * closing the source does not wait for it. */
static void close_during_backoff_is_prompt(void **state)
{
	struct server srv;
	server_start(&srv);
	struct remote_backoff backoff = {.first_ms = 30000, .max_ms = 30000, .attempts = 10};
	struct stripe_source *src = source_new(&srv, 4, &backoff);
	uint8_t *buf = malloc(STRIPE_BYTES);
	server_stop(&srv);
	usleep(100 * 1000);
	assert_int_equal(source_request(src, 2, buf), 0);
	usleep(100 * 1000);
	uint64_t start = now_ns();
	source_close(src);
	assert_true(now_ns() - start < 1000000000u);
	stripe_source_destroy(src);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(idle_closed_connections_are_dialled_again),
	    cmocka_unit_test(one_completion_per_request_while_connections_drop),
	    cmocka_unit_test(close_during_backoff_is_prompt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
