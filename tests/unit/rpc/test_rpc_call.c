/* rpc_call, the client side of the RPC socket: against the real server
 * (a reply, an error reply), and against peers of our own: a reply in
 * pieces and longer than the first buffer, a peer that closes without
 * replying, one that never accepts, a missing socket, a path too long. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/common.h"
#include "rpc/rpc.h"

struct fixture {
	char dir[256];
	char path[300];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *base = getenv("RPC_TEST_DIR");
	snprintf(f->dir, sizeof(f->dir), "%s/rpc-call-XXXXXX", base ? base : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/rpc.sock", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static int listen_at(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

static void test_real_server(void **state)
{
	struct fixture *f = *state;
	struct rpc_context ctx = {0};
	struct rpc_server *server;
	struct error err = {0};
	assert_int_equal(rpc_server_start(f->path, &ctx, &server, &err), 0);
	char *reply;
	assert_int_equal(rpc_call(f->path, "version", 10000, &reply, &err), 0);
	assert_string_equal(reply, "{\"version\":\"0.4.0\"}");
	free(reply);
	/* An error reply is a reply: reading it is the caller's business. */
	assert_int_equal(rpc_call(f->path, "nosuch", 10000, &reply, &err), 0);
	assert_string_equal(reply, "{\"error\":\"unknown command: nosuch\"}");
	free(reply);
	rpc_server_stop(server);
	/* The server gone, its socket is too. */
	assert_int_equal(rpc_call(f->path, "version", 10000, &reply, &err), -ENOENT);
	assert_null(reply);
	assert_non_null(strstr(err.text, f->path));
}

/* A peer that accepts one connection, reads the request line, writes
 * `reply` in pieces of `piece` bytes (all of it when 0) and closes. */
struct peer {
	int listener;
	const char *reply;
	size_t reply_len;
	size_t piece;
	char request[256];
};

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	int fd = accept(p->listener, NULL, NULL);
	if (fd < 0)
		return NULL;
	size_t got = 0;
	while (got < sizeof(p->request) - 1 && !memchr(p->request, '\n', got)) {
		ssize_t n = read(fd, p->request + got, sizeof(p->request) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	for (size_t sent = 0; sent < p->reply_len;) {
		size_t n =
		    p->piece && p->piece < p->reply_len - sent ? p->piece : p->reply_len - sent;
		ssize_t w = write(fd, p->reply + sent, n);
		if (w <= 0)
			break;
		sent += (size_t)w;
		usleep(1000);
	}
	close(fd);
	return NULL;
}

static int call_peer(struct fixture *f, struct peer *p, char **reply, struct error *err)
{
	p->listener = listen_at(f->path);
	pthread_t thread;
	assert_int_equal(pthread_create(&thread, NULL, peer_main, p), 0);
	int rc = rpc_call(f->path, "metrics", 10000, reply, err);
	pthread_join(thread, NULL);
	close(p->listener);
	unlink(f->path);
	return rc;
}

static void test_long_reply_in_pieces(void **state)
{
	struct fixture *f = *state;
	size_t len = 100000;
	char *line = malloc(len + 2);
	for (size_t i = 0; i < len; i++)
		line[i] = (char)('a' + i % 26);
	memcpy(line + len, "\nX", 2); /* what follows the first line is not taken */
	struct peer p = {.reply = line, .reply_len = len + 2, .piece = 7777};
	char *reply;
	struct error err = {0};
	assert_int_equal(call_peer(f, &p, &reply, &err), 0);
	assert_string_equal(p.request, "{\"command\":\"metrics\"}\n");
	assert_int_equal(strlen(reply), len);
	assert_memory_equal(reply, line, len);
	free(reply);
	free(line);
}

static void test_peer_closes_without_reply(void **state)
{
	struct fixture *f = *state;
	struct peer p = {.reply = "{\"half\":", .reply_len = 8};
	char *reply;
	struct error err = {0};
	assert_int_equal(call_peer(f, &p, &reply, &err), -ECONNRESET);
	assert_null(reply);
	assert_non_null(strstr(err.text, "closed"));
}

static void test_peer_never_answers(void **state)
{
	struct fixture *f = *state;
	int listener = listen_at(f->path); /* connections queue, none is accepted */
	char *reply;
	struct error err = {0};
	uint64_t start = now_ns();
	assert_int_equal(rpc_call(f->path, "stats", 200, &reply, &err), -ETIMEDOUT);
	/* It waited for its deadline, not less. */
	assert_true(now_ns() - start >= 200u * 1000000u);
	assert_null(reply);
	assert_non_null(strstr(err.text, "no reply"));
	close(listener);
}

static void test_bad_paths(void **state)
{
	char long_path[200];
	memset(long_path, 'x', sizeof(long_path) - 1);
	long_path[sizeof(long_path) - 1] = '\0';
	char *reply;
	struct error err = {0};
	assert_int_equal(rpc_call(long_path, "version", 1000, &reply, &err), -ENAMETOOLONG);
	assert_int_equal(rpc_call("", "version", 1000, &reply, &err), -ENAMETOOLONG);
	assert_null(reply);
}

int main(void)
{
	log_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_real_server, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_long_reply_in_pieces, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_peer_closes_without_reply, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_peer_never_answers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
