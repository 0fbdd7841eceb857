/* One client connection (remote.h, client) against scripted servers on
 * loopback, plain and TLS: METADATA on connect, every status byte of
 * READ_STRIPE mapped to its error, a wrong stripe size, a server that goes
 * silent or away mid-reply (timeouts, no hang, no SIGPIPE), cancellation
 * through the stop fd, close_notify on close. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "golden.h"
#include "remote/remote.h"
#include "remote/remote_internal.h"

#define STRIPE_BYTES (512u << 11)

static const uint8_t secret16[16] = "0123456789abcdef";

struct fake {
	int listen_fd;
	int fd;
	SSL *ssl;
	struct remote_tls *tls; /* NULL: plain */
	void (*script)(struct fake *f);
	struct remote_address address;
	pthread_t thread;
	bool saw_close_notify;
	bool stop_waiting;
};

static bool fake_read(struct fake *f, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		int n = f->ssl ? SSL_read(f->ssl, p, (int)len) : (int)recv(f->fd, p, len, 0);
		if (n <= 0) {
			if (f->ssl && SSL_get_error(f->ssl, n) == SSL_ERROR_ZERO_RETURN)
				f->saw_close_notify = true;
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static void fake_write(struct fake *f, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		int n = f->ssl ? SSL_write(f->ssl, p, (int)len)
			       : (int)send(f->fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

static void expect_metadata_request(struct fake *f)
{
	uint8_t op = 0xAA;
	assert_true(fake_read(f, &op, 1));
	assert_int_equal(op, REMOTE_OP_METADATA);
}

static void send_golden_metadata(struct fake *f)
{
	expect_metadata_request(f);
	fake_write(f, golden_metadata_reply, sizeof(golden_metadata_reply));
}

static uint64_t expect_read_stripe(struct fake *f)
{
	uint8_t req[REMOTE_READ_STRIPE_REQUEST_BYTES];
	if (!fake_read(f, req, sizeof(req)))
		return UINT64_MAX;
	assert_int_equal(req[0], REMOTE_OP_READ_STRIPE);
	return remote_get_u64(req + 1);
}

/* After the script: the client's close shows up as close_notify (TLS) or
 * EOF. */
static void wait_for_close(struct fake *f)
{
	char c;
	while (fake_read(f, &c, 1))
		;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	f->fd = accept(f->listen_fd, NULL, NULL);
	if (f->fd < 0)
		return NULL;
	if (f->tls) {
		f->ssl = remote_ssl_new(f->tls, f->fd, NULL);
		if (SSL_accept(f->ssl) != 1) {
			ERR_clear_error();
			SSL_free(f->ssl);
			f->ssl = NULL;
			close(f->fd);
			return NULL;
		}
	}
	f->script(f);
	if (f->ssl) {
		ERR_clear_error();
		SSL_free(f->ssl);
	}
	close(f->fd);
	return NULL;
}

static void fake_start(struct fake *f, struct remote_tls *tls, void (*script)(struct fake *))
{
	memset(f, 0, sizeof(*f));
	f->tls = tls;
	f->script = script;
	f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->listen_fd, 4), 0);
	socklen_t len = sizeof(sa);
	getsockname(f->listen_fd, (struct sockaddr *)&sa, &len);
	char text[64];
	snprintf(text, sizeof(text), "127.0.0.1:%u", ntohs(sa.sin_port));
	assert_int_equal(remote_address_parse(text, &f->address, NULL), 0);
	assert_int_equal(thread_start(&f->thread, "fake-server", fake_main, f), 0);
}

static void fake_join(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
}

static const struct remote_timeouts quick = {.connect_ms = 2000, .io_ms = 300};

/* ---- scripts ---- */

static void script_statuses(struct fake *f)
{
	send_golden_metadata(f);
	uint64_t i;
	while ((i = expect_read_stripe(f)) != UINT64_MAX) {
		if (i < 4) {
			uint8_t *reply = malloc(9 + STRIPE_BYTES);
			memcpy(reply, golden_read_stripe_reply_header, 9);
			memset(reply + 9, (int)(0xA0 + i), STRIPE_BYTES);
			fake_write(f, reply, 9 + STRIPE_BYTES);
			free(reply);
			continue;
		}
		/* index 10 + status byte answers that status alone */
		uint8_t status = (uint8_t)(i - 10);
		if (i >= 10 + 256) {
			wait_for_close(f);
			return;
		}
		fake_write(f, &status, 1);
	}
}

static void check_statuses(struct remote_tls *server_tls, struct remote_tls *client_tls)
{
	struct fake f;
	fake_start(&f, server_tls, script_statuses);
	struct remote_client *c;
	struct error err = {0};
	assert_int_equal(remote_client_connect(&f.address, client_tls, &quick, &c, &err), 0);
	const struct remote_metadata *m = remote_client_metadata(c);
	assert_int_equal(m->shift, 11);
	assert_int_equal(m->header_count, 4);
	assert_int_equal(m->source_stripes, 4);

	uint8_t *buf = malloc(STRIPE_BYTES);
	uint8_t status = 0xAA;
	for (uint64_t i = 0; i < 4; i++) {
		assert_int_equal(remote_client_read_stripe(c, i, buf, &status, &err), 0);
		assert_int_equal(status, REMOTE_STATUS_OK);
		assert_int_equal(buf[0], 0xA0 + i);
		assert_int_equal(buf[STRIPE_BYTES - 1], 0xA0 + i);
	}
	struct {
		uint8_t status;
		int code;
		const char *text;
	} cases[] = {
	    {0x01, -EINVAL, "Invalid stripe index: 11"},
	    {0x02, -ENODATA, "Stripe 12 is unavailable"},
	    {0x03, -ENODATA, "Stripe 13 is unavailable"},
	    {0xFF, -EIO, "Remote server returned error status: 255"},
	};
	for (size_t k = 0; k < ARRAY_SIZE(cases); k++) {
		uint64_t index = 10u + cases[k].status;
		assert_int_equal(remote_client_read_stripe(c, index, buf, &status, &err),
				 cases[k].code);
		assert_int_equal(status, cases[k].status);
		assert_string_equal(err.text, cases[k].text);
		assert_false(remote_client_broken(c)); /* a status reply keeps the stream */
	}
	/* Still in step: a stripe after the statuses. */
	assert_int_equal(remote_client_read_stripe(c, 2, buf, &status, &err), 0);
	assert_int_equal(buf[7], 0xA2);
	/* FE means the server did not understand the request: the stream is
	 * no longer trusted. */
	assert_int_equal(remote_client_read_stripe(c, 10 + 0xFE, buf, &status, &err), -EPROTO);
	assert_int_equal(status, 0xFE);
	assert_string_equal(err.text, "Remote server returned error status: 254");
	assert_true(remote_client_broken(c));
	assert_int_equal(remote_client_read_stripe(c, 0, buf, &status, &err), -ENOTCONN);
	free(buf);
	remote_client_close(c);
	fake_join(&f);
}

static void statuses_plain(void **state)
{
	check_statuses(NULL, NULL);
}

static void statuses_tls_and_close_notify(void **state)
{
	struct remote_tls *server, *client;
	assert_int_equal(remote_tls_new(REMOTE_TLS_SERVER, "client1", secret16, 16, &server, NULL),
			 0);
	assert_int_equal(remote_tls_new(REMOTE_TLS_CLIENT, "client1", secret16, 16, &client, NULL),
			 0);
	/* The FE case breaks the connection, so no close_notify then; a clean
	 * session ends with one. */
	check_statuses(server, client);

	struct fake f;
	fake_start(&f, server, script_statuses);
	struct remote_client *c;
	assert_int_equal(remote_client_connect(&f.address, client, &quick, &c, NULL), 0);
	remote_client_close(c);
	fake_join(&f);
	assert_true(f.saw_close_notify);
	remote_tls_free(client);
	remote_tls_free(server);
}

static void other_status_bytes_break_the_connection(void **state)
{
	struct fake f;
	fake_start(&f, NULL, script_statuses);
	struct remote_client *c;
	struct error err = {0};
	assert_int_equal(remote_client_connect(&f.address, NULL, &quick, &c, &err), 0);
	uint8_t buf[1], status;
	assert_int_equal(remote_client_read_stripe(c, 10 + 0x42, buf, &status, &err), -EPROTO);
	assert_int_equal(status, 0x42);
	assert_string_equal(err.text, "Remote server returned error status: 66");
	assert_true(remote_client_broken(c));
	remote_client_close(c);
	fake_join(&f);
}

static void script_wrong_size(struct fake *f)
{
	send_golden_metadata(f);
	expect_read_stripe(f);
	uint8_t reply[9] = {0};
	remote_put_u64(reply + 1, 4096);
	fake_write(f, reply, sizeof(reply));
	wait_for_close(f);
}

static void stripe_size_mismatch(void **state)
{
	struct fake f;
	fake_start(&f, NULL, script_wrong_size);
	struct remote_client *c;
	struct error err = {0};
	assert_int_equal(remote_client_connect(&f.address, NULL, &quick, &c, &err), 0);
	uint8_t *buf = malloc(STRIPE_BYTES), status = 0xAA;
	assert_int_equal(remote_client_read_stripe(c, 3, buf, &status, &err), -EPROTO);
	assert_int_equal(status, REMOTE_STATUS_OK);
	assert_string_equal(err.text,
			    "Stripe 3 size mismatch: expected 1048576 bytes, got 4096 bytes");
	assert_true(remote_client_broken(c));
	free(buf);
	remote_client_close(c);
	fake_join(&f);
}

static void script_half_stripe_then_close(struct fake *f)
{
	send_golden_metadata(f);
	expect_read_stripe(f);
	uint8_t *reply = calloc(1, 9 + STRIPE_BYTES / 2);
	memcpy(reply, golden_read_stripe_reply_header, 9);
	fake_write(f, reply, 9 + STRIPE_BYTES / 2);
	free(reply);
}

static void server_gone_mid_reply(void **state)
{
	struct fake f;
	fake_start(&f, NULL, script_half_stripe_then_close);
	struct remote_client *c;
	struct error err = {0};
	assert_int_equal(remote_client_connect(&f.address, NULL, &quick, &c, &err), 0);
	uint8_t *buf = malloc(STRIPE_BYTES), status;
	assert_int_equal(remote_client_read_stripe(c, 0, buf, &status, &err), -ECONNRESET);
	assert_non_null(strstr(err.text, "connection closed by the server"));
	fake_join(&f);
	/* Writing to the closed socket must not raise SIGPIPE. */
	assert_int_not_equal(remote_client_read_stripe(c, 0, buf, &status, &err), 0);
	free(buf);
	remote_client_close(c);
}

static void script_silent_after_metadata(struct fake *f)
{
	send_golden_metadata(f);
	expect_read_stripe(f);
	wait_for_close(f); /* never answers */
}

/* A stripe read against `script` fails with -ETIMEDOUT after the 300 ms io
 * timeout, in total for the exchange, and breaks the connection. */
static void check_read_times_out(void (*script)(struct fake *), const char *text)
{
	struct fake f;
	fake_start(&f, NULL, script);
	struct remote_client *c;
	struct error err = {0};
	assert_int_equal(remote_client_connect(&f.address, NULL, &quick, &c, &err), 0);
	uint8_t *buf = malloc(STRIPE_BYTES), status;
	uint64_t start = now_ns();
	assert_int_equal(remote_client_read_stripe(c, 0, buf, &status, &err), -ETIMEDOUT);
	uint64_t took_ms = (now_ns() - start) / 1000000u;
	assert_true(took_ms >= 250 && took_ms < 1500);
	assert_non_null(strstr(err.text, text));
	assert_true(remote_client_broken(c));
	free(buf);
	remote_client_close(c);
	fake_join(&f);
}

static void silent_server_times_out(void **state)
{
	check_read_times_out(script_silent_after_metadata,
			     "reading a stripe reply timed out after 300 ms");
}

/* A reply that always makes progress, one byte every 100 ms, each gap well
 * within the 300 ms io timeout. */
static void script_trickle(struct fake *f)
{
	send_golden_metadata(f);
	expect_read_stripe(f);
	uint8_t *reply = calloc(1, 9 + STRIPE_BYTES);
	memcpy(reply, golden_read_stripe_reply_header, 9);
	for (size_t i = 0; i < 9 + STRIPE_BYTES; i++) {
		if (send(f->fd, reply + i, 1, MSG_NOSIGNAL) != 1)
			break;
		usleep(100 * 1000);
	}
	free(reply);
}

/* io_ms bounds the exchange (1 MiB: one started MiB), not each byte. */
static void trickling_server_times_out(void **state)
{
	check_read_times_out(script_trickle, "timed out after 300 ms");
}

static void script_silent(struct fake *f)
{
	wait_for_close(f); /* accepts, never answers METADATA */
}

static void silent_metadata_times_out_and_stop_fd_cancels(void **state)
{
	struct fake f;
	fake_start(&f, NULL, script_silent);
	struct remote_client *c = (struct remote_client *)&f;
	struct error err = {0};
	assert_int_equal(remote_client_connect(&f.address, NULL, &quick, &c, &err), -ETIMEDOUT);
	assert_null(c);
	fake_join(&f);

	fake_start(&f, NULL, script_silent);
	int stop = eventfd(1, EFD_CLOEXEC); /* already fired */
	struct remote_timeouts slow = {.connect_ms = 60000, .io_ms = 60000};
	uint64_t start = now_ns();
	assert_int_equal(remote_client_connect_stoppable(&f.address, NULL, &slow, stop, &c, &err),
			 -ECANCELED);
	assert_true(now_ns() - start < 2000000000u);
	close(stop);
	fake_join(&f);
}

static void script_bad_metadata_size(struct fake *f)
{
	expect_metadata_request(f);
	uint8_t reply[9] = {0};
	remote_put_u64(reply + 1, f->stop_waiting ? UINT64_MAX : 511);
	fake_write(f, reply, sizeof(reply));
	wait_for_close(f);
}

static void script_metadata_error_status(struct fake *f)
{
	expect_metadata_request(f);
	uint8_t reply = 0xFF;
	fake_write(f, &reply, 1);
	wait_for_close(f);
}

static void metadata_reply_checked(void **state)
{
	struct fake f;
	struct remote_client *c;
	struct error err = {0};
	fake_start(&f, NULL, script_bad_metadata_size);
	assert_int_equal(remote_client_connect(&f.address, NULL, &quick, &c, &err), -EPROTO);
	assert_string_equal(err.text,
			    "Remote metadata size 511 is out of range (512..67108864 bytes)");
	fake_join(&f);

	fake_start(&f, NULL, script_bad_metadata_size);
	f.stop_waiting = true; /* a u64 size no one could allocate */
	assert_int_equal(remote_client_connect(&f.address, NULL, &quick, &c, &err), -EPROTO);
	assert_string_equal(err.text, "Remote metadata size 18446744073709551615 is out of range "
				      "(512..67108864 bytes)");
	fake_join(&f);

	fake_start(&f, NULL, script_metadata_error_status);
	assert_int_equal(remote_client_connect(&f.address, NULL, &quick, &c, &err), -EIO);
	assert_string_equal(err.text, "Remote server returned error status: 255");
	fake_join(&f);
}

static void closed_port_fails(void **state)
{
	/* A port bound but not listening refuses connections. */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t len = sizeof(sa);
	getsockname(fd, (struct sockaddr *)&sa, &len);
	char text[64];
	snprintf(text, sizeof(text), "127.0.0.1:%u", ntohs(sa.sin_port));
	struct remote_address a;
	assert_int_equal(remote_address_parse(text, &a, NULL), 0);
	struct remote_client *c;
	struct error err = {0};
	assert_int_equal(remote_client_connect(&a, NULL, &quick, &c, &err), -ECONNREFUSED);
	char expected[128];
	snprintf(expected, sizeof(expected), "failed to connect to %s: Connection refused", a.text);
	assert_string_equal(err.text, expected);
	close(fd);
}

static void tls_client_against_plain_server_and_back(void **state)
{
	struct remote_tls *server, *client;
	assert_int_equal(remote_tls_new(REMOTE_TLS_SERVER, "client1", secret16, 16, &server, NULL),
			 0);
	assert_int_equal(remote_tls_new(REMOTE_TLS_CLIENT, "client1", secret16, 16, &client, NULL),
			 0);
	struct fake f;
	struct remote_client *c;
	struct error err = {0};

	/* PSK on the client only: the plain server reads the ClientHello as
	 * an opcode and answers garbage or nothing; the handshake fails. */
	fake_start(&f, NULL, script_silent);
	assert_int_not_equal(remote_client_connect(&f.address, client, &quick, &c, &err), 0);
	assert_non_null(strstr(err.text, "TLS handshake"));
	fake_join(&f);

	/* PSK on the server only: the TLS server gets a METADATA byte where a
	 * ClientHello belongs and fails the handshake; the client sees the
	 * connection end. */
	fake_start(&f, server, script_silent);
	assert_int_not_equal(remote_client_connect(&f.address, NULL, &quick, &c, &err), 0);
	fake_join(&f);

	/* Another identity: the server refuses it. */
	struct remote_tls *stranger;
	assert_int_equal(
	    remote_tls_new(REMOTE_TLS_CLIENT, "client12", secret16, 16, &stranger, NULL), 0);
	fake_start(&f, server, script_silent);
	assert_int_equal(remote_client_connect(&f.address, stranger, &quick, &c, &err), -EPROTO);
	assert_non_null(strstr(err.text, "TLS handshake failed: "));
	assert_non_null(strstr(err.text, "unknown psk identity"));
	fake_join(&f);
	remote_tls_free(stranger);
	remote_tls_free(client);
	remote_tls_free(server);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(statuses_plain),
	    cmocka_unit_test(statuses_tls_and_close_notify),
	    cmocka_unit_test(other_status_bytes_break_the_connection),
	    cmocka_unit_test(stripe_size_mismatch),
	    cmocka_unit_test(server_gone_mid_reply),
	    cmocka_unit_test(silent_server_times_out),
	    cmocka_unit_test(trickling_server_times_out),
	    cmocka_unit_test(silent_metadata_times_out_and_stop_fd_cancels),
	    cmocka_unit_test(metadata_reply_checked),
	    cmocka_unit_test(closed_port_fails),
	    cmocka_unit_test(tls_client_against_plain_server_and_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
