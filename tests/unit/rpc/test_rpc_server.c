/* The RPC server over its real Unix socket: start-up on every kind of path,
 * framing (trimming, empty lines, pipelining, a final line without newline,
 * the line-length limit), several clients at once, clients that never read,
 * the client limit, and stop. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/common.h"
#include "rpc/rpc_internal.h"

#define VERSION_REPLY "{\"version\":\"0.4.0\"}\n"

/* How long the server may take to answer: 5 s, times
 * UBIBLK_TEST_TIMEOUT_MULTIPLIER when set. Slow builds set it (scripts/test.sh
 * for ThreadSanitizer, under which the 21 MiB reply of the huge-reply test
 * takes seconds to build); these waits are for work done, not a speed check. */
static int timeout_ms(void)
{
	static int ms;
	if (ms == 0) {
		const char *text = getenv("UBIBLK_TEST_TIMEOUT_MULTIPLIER");
		int factor = text ? atoi(text) : 1;
		ms = 5000 * (factor > 0 && factor <= 100 ? factor : 1);
	}
	return ms;
}
#define TIMEOUT_MS timeout_ms()

struct fixture {
	char dir[256];
	char path[300];
	struct rpc_server *server;
	struct io_tracker *trackers[2];
	struct rpc_context ctx;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *base = getenv("RPC_TEST_DIR");
	snprintf(f->dir, sizeof(f->dir), "%s/rpc-XXXXXX", base ? base : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/rpc.sock", f->dir);
	f->trackers[0] = io_tracker_create(8);
	f->trackers[1] = io_tracker_create(8);
	f->ctx = (struct rpc_context){.trackers = f->trackers, .num_queues = 2};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	rpc_server_stop(f->server);
	io_tracker_destroy(f->trackers[0]);
	io_tracker_destroy(f->trackers[1]);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void start(struct fixture *f)
{
	struct error err = {0};
	int rc = rpc_server_start(f->path, &f->ctx, &f->server, &err);
	if (rc < 0)
		fail_msg("rpc_server_start: %s", err.text);
}

static int connect_client(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	strcpy(addr.sun_path, path);
	assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

static void send_str(int fd, const char *s)
{
	send_all(fd, s, strlen(s));
}

/* Reads until `len` bytes arrived, EOF, or the timeout; returns the count. */
static size_t recv_bytes(int fd, char *buf, size_t len, int timeout_ms)
{
	size_t got = 0;
	while (got < len) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, timeout_ms) != 1)
			break;
		ssize_t n = recv(fd, buf + got, len - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

/* Reads exactly `expected` and checks it. */
static void expect_recv(int fd, const char *expected)
{
	size_t len = strlen(expected);
	char *buf = calloc(1, len + 1);
	size_t got = recv_bytes(fd, buf, len, TIMEOUT_MS);
	if (got != len || memcmp(buf, expected, len) != 0)
		fail_msg("received \"%.*s\", expected \"%s\"", (int)got, buf, expected);
	free(buf);
}

/* True when the server closed the connection (EOF or reset) in time. */
static bool closed_by_server(int fd)
{
	char buf[4096];
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, TIMEOUT_MS) != 1)
			return false;
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			return true;
	}
}

static void request(int fd, const char *line, const char *reply)
{
	send_str(fd, line);
	expect_recv(fd, reply);
}

/* ---- start-up ---- */

static void test_version_and_socket_mode(void **state)
{
	struct fixture *f = *state;
	start(f);
	struct stat st;
	assert_int_equal(lstat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0660);
	int fd = connect_client(f->path);
	request(fd, "{\"command\":\"version\"}\n", VERSION_REPLY);
	request(fd, "{\"command\":\"status\"}\n", "{\"status\":null}\n");
	close(fd);
}

static void test_stop_removes_socket(void **state)
{
	struct fixture *f = *state;
	start(f);
	int fd = connect_client(f->path);
	request(fd, "{\"command\":\"version\"}\n", VERSION_REPLY);
	rpc_server_stop(f->server);
	f->server = NULL;
	assert_true(closed_by_server(fd));
	close(fd);
	assert_int_equal(access(f->path, F_OK), -1);
	assert_int_equal(errno, ENOENT);
}

static void expect_start_error(struct fixture *f, const char *path, const char *needle)
{
	struct error err = {0};
	struct rpc_server *s = (struct rpc_server *)&err; /* must be overwritten */
	assert_true(rpc_server_start(path, &f->ctx, &s, &err) < 0);
	assert_null(s);
	if (!strstr(err.text, needle))
		fail_msg("error \"%s\" lacks \"%s\"", err.text, needle);
}

static void test_path_is_directory(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(mkdir(f->path, 0700), 0);
	expect_start_error(f, f->path, "failed to remove existing RPC socket");
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
}

/* A typo must not delete a disk image: a regular file is left alone. */
static void test_path_is_regular_file(void **state)
{
	struct fixture *f = *state;
	int fd = open(f->path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "disk", 4), 4);
	close(fd);
	expect_start_error(f, f->path, "failed to remove existing RPC socket");
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 4);
}

static void test_path_in_missing_directory(void **state)
{
	struct fixture *f = *state;
	char path[400];
	snprintf(path, sizeof(path), "%s/no/such/dir/rpc.sock", f->dir);
	expect_start_error(f, path, "failed to bind RPC socket");
}

static void test_path_too_long(void **state)
{
	struct fixture *f = *state;
	char path[300];
	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	expect_start_error(f, path, "failed to bind RPC socket");
}

/* A socket left behind by a process that died is replaced. */
static void test_stale_socket_is_replaced(void **state)
{
	struct fixture *f = *state;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	strcpy(addr.sun_path, f->path);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(fd); /* bound, never listened: nobody answers */
	start(f);
	fd = connect_client(f->path);
	request(fd, "{\"command\":\"version\"}\n", VERSION_REPLY);
	close(fd);
}

/* A second server on the same path does not steal the first one's socket. */
static void test_live_socket_is_kept(void **state)
{
	struct fixture *f = *state;
	start(f);
	expect_start_error(f, f->path, "another server is listening");
	int fd = connect_client(f->path);
	request(fd, "{\"command\":\"version\"}\n", VERSION_REPLY);
	close(fd);
}

/* ---- framing ---- */

static void test_empty_lines_and_whitespace(void **state)
{
	struct fixture *f = *state;
	start(f);
	int fd = connect_client(f->path);
	/* Empty and blank lines get no reply; the next request does. */
	request(fd, "\n\n  \t \r\n{\"command\":\"version\"}\n", VERSION_REPLY);
	request(fd, "   {\"command\":\"version\"}  \r\n", VERSION_REPLY);
	close(fd);
}

static void test_pipelined_requests(void **state)
{
	struct fixture *f = *state;
	start(f);
	int fd = connect_client(f->path);
	send_str(fd, "{\"command\":\"version\"}\n{\"command\":\"status\"}\n{\"command\":\"nope\"}\n"
		     "{\"command\":\"queues\"}\n");
	expect_recv(fd, VERSION_REPLY "{\"status\":null}\n"
				      "{\"error\":\"unknown command: nope\"}\n"
				      "{\"queues\":[[],[]]}\n");
	close(fd);
}

/* A request split over many writes is put together. */
static void test_request_in_pieces(void **state)
{
	struct fixture *f = *state;
	start(f);
	int fd = connect_client(f->path);
	const char *line = "{\"command\":\"version\"}\n";
	for (const char *p = line; *p; p++) {
		send_all(fd, p, 1);
		usleep(1000);
	}
	expect_recv(fd, VERSION_REPLY);
	close(fd);
}

/* A last line without newline is answered when the client stops writing. */
static void test_final_line_without_newline(void **state)
{
	struct fixture *f = *state;
	start(f);
	int fd = connect_client(f->path);
	send_str(fd, "{\"command\":\"version\"}\n{\"command\":\"status\"}");
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	expect_recv(fd, VERSION_REPLY "{\"status\":null}\n");
	assert_true(closed_by_server(fd));
	close(fd);
}

/* After an error reply the connection stays usable. */
static void test_errors_keep_connection(void **state)
{
	struct fixture *f = *state;
	start(f);
	int fd = connect_client(f->path);
	send_str(fd, "{ not valid json }\n");
	char buf[256] = "";
	size_t n = recv_bytes(fd, buf, sizeof(buf) - 1, 1000);
	assert_true(n > 0);
	assert_non_null(strstr(buf, "{\"error\":\"invalid request"));
	assert_int_equal(buf[n - 1], '\n');
	/* Not UTF-8, control bytes, a NUL: answered, not fatal. */
	static const char garbage[] = "\xff\xfe\x00\x01garbage\x80\n";
	send_all(fd, garbage, sizeof(garbage) - 1);
	memset(buf, 0, sizeof(buf));
	n = recv_bytes(fd, buf, sizeof(buf) - 1, 1000);
	assert_true(n > 0);
	assert_non_null(strstr(buf, "{\"error\":\"invalid request"));
	request(fd, "{\"command\":\"version\"}\n", VERSION_REPLY);
	close(fd);
}

/* A line over RPC_MAX_LINE closes that connection and no other. */
static void test_line_limit(void **state)
{
	struct fixture *f = *state;
	start(f);
	int other = connect_client(f->path);
	int fd = connect_client(f->path);
	/* Exactly RPC_MAX_LINE bytes is still fine. */
	char *line = malloc(RPC_MAX_LINE + 2);
	const char *req = "{\"command\":\"version\"}";
	memset(line, ' ', RPC_MAX_LINE);
	memcpy(line + RPC_MAX_LINE - strlen(req), req, strlen(req));
	line[RPC_MAX_LINE] = '\n';
	send_all(fd, line, RPC_MAX_LINE + 1);
	expect_recv(fd, VERSION_REPLY);
	/* One byte more is not. */
	memset(line, 'x', RPC_MAX_LINE + 1);
	line[RPC_MAX_LINE + 1] = '\n';
	send_all(fd, line, RPC_MAX_LINE + 2);
	assert_true(closed_by_server(fd));
	close(fd);
	free(line);
	request(other, "{\"command\":\"version\"}\n", VERSION_REPLY);
	close(other);
}

/* ---- concurrency ---- */

static void test_several_clients(void **state)
{
	struct fixture *f = *state;
	io_tracker_begin(f->trackers[1], 3, IO_KIND_WRITE, 10, 20, 0);
	start(f);
	int fds[8];
	for (int i = 0; i < 8; i++)
		fds[i] = connect_client(f->path);
	/* All requests are sent before any reply is read. */
	for (int i = 0; i < 8; i++)
		send_str(fds[i],
			 i % 2 ? "{\"command\":\"queues\"}\n" : "{\"command\":\"version\"}\n");
	for (int i = 7; i >= 0; i--)
		expect_recv(fds[i],
			    i % 2 ? "{\"queues\":[[],[[\"write\",10,20]]]}\n" : VERSION_REPLY);
	for (int i = 0; i < 8; i++)
		close(fds[i]);
}

/* A client that sends much more than its replies' worth without reading
 * stalls only itself. */
static void test_client_that_never_reads(void **state)
{
	struct fixture *f = *state;
	start(f);
	int lazy = connect_client(f->path);
	int flags = fcntl(lazy, F_GETFL);
	fcntl(lazy, F_SETFL, flags | O_NONBLOCK);
	const char *req = "{\"command\":\"version\"}\n";
	size_t sent = 0;
	/* Keep writing until its socket is full: the server stopped reading
	 * it once the replies piled up. */
	for (int stalls = 0; stalls < 50;) {
		ssize_t n = send(lazy, req, strlen(req), MSG_NOSIGNAL);
		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			stalls++;
			usleep(2000);
			continue;
		}
		sent += (size_t)n;
		assert_true(sent < (64u << 20));
	}
	print_message("a client that never reads was stalled after %zu bytes\n", sent);
	for (int i = 0; i < 3; i++) {
		int fd = connect_client(f->path);
		request(fd, "{\"command\":\"version\"}\n", VERSION_REPLY);
		close(fd);
	}
	close(lazy);
}

/* A client whose one reply is beyond RPC_MAX_PENDING_OUTPUT and who does not
 * read it is dropped; the others go on. */
static void test_huge_unread_reply_drops_client(void **state)
{
	struct fixture *f = *state;
	uint32_t slots = 700000;
	struct io_tracker *big = io_tracker_create(slots);
	for (uint32_t i = 0; i < slots; i++)
		io_tracker_begin(big, i, IO_KIND_WRITE, 1000000000000ull + i, 65536, 0);
	struct io_tracker *trackers[1] = {big};
	f->ctx = (struct rpc_context){.trackers = trackers, .num_queues = 1};
	start(f);
	int fd = connect_client(f->path);
	int other = connect_client(f->path);
	send_str(fd, "{\"command\":\"queues\"}\n");
	/* Without reading, the connection ends: the reply (about 21 MiB)
	 * cannot be buffered. */
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	assert_int_equal(poll(&p, 1, TIMEOUT_MS), 1);
	request(other, "{\"command\":\"version\"}\n", VERSION_REPLY);
	close(other);
	close(fd);
	rpc_server_stop(f->server);
	f->server = NULL;
	io_tracker_destroy(big);
}

/* With RPC_MAX_CLIENTS connected, one more takes the place of the client
 * idle longest (the first, which asked before all the others): the
 * newcomer is answered, that one is closed, the others are still served. */
static void test_client_limit(void **state)
{
	struct fixture *f = *state;
	start(f);
	int fds[RPC_MAX_CLIENTS];
	for (uint32_t i = 0; i < RPC_MAX_CLIENTS; i++) {
		fds[i] = connect_client(f->path);
		request(fds[i], "{\"command\":\"version\"}\n", VERSION_REPLY);
	}
	int extra = connect_client(f->path);
	request(extra, "{\"command\":\"version\"}\n", VERSION_REPLY);
	assert_true(closed_by_server(fds[0]));
	close(fds[0]);
	for (uint32_t i = 1; i < RPC_MAX_CLIENTS; i++) {
		request(fds[i], "{\"command\":\"version\"}\n", VERSION_REPLY);
		close(fds[i]);
	}
	request(extra, "{\"command\":\"version\"}\n", VERSION_REPLY);
	close(extra);
}

/* Clients that send nothing, or only part of a line, are closed once idle
 * for the timeout, even when nobody else connects; a client that keeps
 * asking is never cut off. And while they are connected, a newcomer that
 * asks is answered at once (it replaces one of them). */
static void test_idle_clients_time_out(void **state)
{
	struct fixture *f = *state;
	const uint32_t idle_ms = 600;
	f->ctx.idle_timeout_ms = idle_ms;
	start(f);
	int active = connect_client(f->path);
	request(active, "{\"command\":\"version\"}\n", VERSION_REPLY);
	int idle[RPC_MAX_CLIENTS - 1];
	for (uint32_t i = 0; i < RPC_MAX_CLIENTS - 1; i++) {
		idle[i] = connect_client(f->path);
		if (i % 2)
			send_str(idle[i], "{\"command\":\"vers"); /* never finished */
	}
	uint64_t full_since = now_ns();
	/* The active client asks every 100 ms: it is never the idle one. */
	request(active, "{\"command\":\"version\"}\n", VERSION_REPLY);
	int extra = connect_client(f->path);
	request(extra, "{\"command\":\"version\"}\n", VERSION_REPLY);
	close(extra);
	uint32_t closed = 0;
	bool seen[RPC_MAX_CLIENTS - 1] = {false};
	uint64_t deadline = now_ns() + 10ull * 1000000000ull;
	while (closed < RPC_MAX_CLIENTS - 1) {
		assert_true(now_ns() < deadline);
		request(active, "{\"command\":\"version\"}\n", VERSION_REPLY);
		usleep(100000);
		for (uint32_t i = 0; i < RPC_MAX_CLIENTS - 1; i++) {
			struct pollfd p = {.fd = idle[i], .events = POLLRDHUP};
			if (!seen[i] && poll(&p, 1, 0) == 1) {
				seen[i] = true;
				closed++;
			}
		}
	}
	/* One was closed for the newcomer; the rest only at the timeout. */
	assert_true(now_ns() - full_since >= (uint64_t)idle_ms * 1000000u);
	for (uint32_t i = 0; i < RPC_MAX_CLIENTS - 1; i++) {
		assert_true(closed_by_server(idle[i]));
		close(idle[i]);
	}
	request(active, "{\"command\":\"version\"}\n", VERSION_REPLY);
	close(active);
}

/* In-flight entries and counters as the RPC thread sees them while another
 * thread records I/O. */
static void test_queues_and_stats_live(void **state)
{
	struct fixture *f = *state;
	start(f);
	int fd = connect_client(f->path);
	io_tracker_begin(f->trackers[0], 0, IO_KIND_READ, 8, 8, 0);
	io_tracker_begin(f->trackers[0], 5, IO_KIND_FLUSH, 0, 0, 0);
	request(fd, "{\"command\":\"queues\"}\n",
		"{\"queues\":[[[\"read\",8,8],[\"flush\"]],[]]}\n");
	io_tracker_end(f->trackers[0], 0, 0);
	io_tracker_end(f->trackers[0], 5, 0);
	request(fd, "{\"command\":\"queues\"}\n", "{\"queues\":[[],[]]}\n");
	request(fd, "{\"command\":\"stats\"}\n",
		"{\"stats\":{\"queues\":[{\"bytes_read\":4096,\"bytes_written\":0,"
		"\"read_ops\":1,\"write_ops\":0,\"flush_ops\":1},{\"bytes_read\":0,"
		"\"bytes_written\":0,\"read_ops\":0,\"write_ops\":0,\"flush_ops\":0}],"
		"\"fetch\":null}}\n");
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_version_and_socket_mode, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_removes_socket, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_path_is_directory, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_path_is_regular_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_path_in_missing_directory, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_path_too_long, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stale_socket_is_replaced, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_live_socket_is_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_lines_and_whitespace, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pipelined_requests, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_request_in_pieces, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_final_line_without_newline, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_errors_keep_connection, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_line_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_several_clients, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_client_that_never_reads, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_huge_unread_reply_drops_client, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_client_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_queues_and_stats_live, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_idle_clients_time_out, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
