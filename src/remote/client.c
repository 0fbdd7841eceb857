/* One connection to a stripe server. Blocking from the caller's point of
 * view, but the socket is non-blocking and every step waits in poll() with a
 * deadline, so a dead or silent server costs at most the configured timeout:
 * connect plus the TLS handshake share connect_ms; an exchange (a request and
 * its whole reply) gets io_ms for each started MiB of its payload. A total
 * per exchange, not a bound on each read: a server that trickles one byte at
 * a time would otherwise hold a fetch for days while always "making
 * progress". A failure breaks the connection for good (the stream may be
 * mid-message); only status replies leave it usable. */
#include "remote/remote_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "meta/meta.h"

struct remote_client {
	int fd;
	SSL *ssl; /* NULL: plain TCP */
	int stop_fd;
	bool broken;
	struct remote_timeouts timeouts;
	uint64_t exchange_start_ns; /* when the current request was sent */
	uint64_t exchange_ms;	    /* what the current exchange may take */
	char address[sizeof(((struct remote_address *)0)->text)];
	struct remote_metadata meta;
	uint64_t stripe_bytes;
};

static void timeouts_fill(struct remote_timeouts *t, const struct remote_timeouts *given)
{
	t->connect_ms = given && given->connect_ms ? given->connect_ms : REMOTE_CONNECT_TIMEOUT_MS;
	t->io_ms = given && given->io_ms ? given->io_ms : REMOTE_IO_TIMEOUT_MS;
	t->idle_ms = given ? given->idle_ms : 0;
}

static uint64_t deadline_after(uint32_t ms)
{
	return now_ns() + (uint64_t)ms * 1000000u;
}

/* The deadline of an exchange starting now, before its payload size is
 * known: io_ms. */
static uint64_t exchange_begin(struct remote_client *c)
{
	c->exchange_start_ns = now_ns();
	c->exchange_ms = c->timeouts.io_ms;
	return c->exchange_start_ns + c->exchange_ms * 1000000u;
}

/* Once the reply announced `payload` bytes (at most 64 MiB, checked by the
 * caller): io_ms per started MiB, from the request on. */
static uint64_t exchange_payload(struct remote_client *c, uint64_t payload)
{
	uint64_t mibs = (payload + (1u << 20) - 1) >> 20;
	c->exchange_ms = (uint64_t)c->timeouts.io_ms * (mibs ? mibs : 1);
	return c->exchange_start_ns + c->exchange_ms * 1000000u;
}

/* Waits until fd has `events`, the deadline passes (-ETIMEDOUT) or the
 * stop fd fires (-ECANCELED). */
static int wait_for(struct remote_client *c, short events, uint64_t deadline)
{
	for (;;) {
		uint64_t now = now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		uint64_t left_ms = (deadline - now + 999999u) / 1000000u;
		struct pollfd fds[2] = {{.fd = c->fd, .events = events},
					{.fd = c->stop_fd, .events = POLLIN}};
		int n = poll(fds, c->stop_fd >= 0 ? 2 : 1, left_ms > 60000 ? 60000 : (int)left_ms);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n <= 0)
			continue;
		if (c->stop_fd >= 0 && (fds[1].revents & POLLIN))
			return -ECANCELED;
		if (fds[0].revents)
			return 0; /* errors and hang-ups show in the next call */
	}
}

/* One TLS call's outcome: 1 done, 0 wait (events set), negative errno. */
static int tls_step(struct remote_client *c, int rc, short *events)
{
	if (rc > 0)
		return 1;
	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		*events = POLLIN;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		*events = POLLOUT;
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		return -ECONNRESET; /* close_notify: the server ended the session */
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		return errno && errno != EAGAIN ? -errno : -ECONNRESET;
	default:
		/* A peer that just closes (no close_notify) is a closed
		 * connection, not a TLS failure worth OpenSSL's words. */
		if (ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			ERR_clear_error();
			return -ECONNRESET;
		}
		return -EPROTO;
	}
}

static int fail_io(struct remote_client *c, int code, const char *what, struct error *err)
{
	c->broken = true;
	if (code == -EPROTO && c->ssl)
		return remote_tls_error(err, code, what);
	ERR_clear_error();
	if (code == -ETIMEDOUT)
		return error_set(err, code, "%s: %s timed out after %llu ms", c->address, what,
				 (unsigned long long)c->exchange_ms);
	if (code == -ECANCELED)
		return error_set(err, code, "%s: %s cancelled", c->address, what);
	if (code == -ECONNRESET)
		return error_set(err, code, "%s: %s: connection closed by the server", c->address,
				 what);
	return error_set(err, code, "%s: %s: %s", c->address, what, strerror(-code));
}

/* One read or write of up to len bytes: 0 with *done bytes moved (0 when
 * the socket or TLS must wait for *events), or a negative errno. */
static int io_step(struct remote_client *c, bool sending, char *p, size_t len, size_t *done,
		   short *events)
{
	*done = 0;
	*events = sending ? POLLOUT : POLLIN;
	if (c->ssl) {
		errno = 0;
		int rc = sending ? SSL_write_ex(c->ssl, p, len, done)
				 : SSL_read_ex(c->ssl, p, len, done);
		rc = tls_step(c, rc, events);
		if (rc == 0)
			*done = 0;
		return rc < 0 ? rc : 0;
	}
	ssize_t n = sending ? send(c->fd, p, len, MSG_NOSIGNAL) : recv(c->fd, p, len, 0);
	if (n == 0 && !sending)
		return -ECONNRESET;
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	*done = (size_t)n;
	return 0;
}

/* Moves all len bytes before the deadline; any failure breaks c. */
static int transfer(struct remote_client *c, bool sending, void *buf, size_t len, uint64_t deadline,
		    const char *what, struct error *err)
{
	char *p = buf;
	while (len > 0) {
		size_t done;
		short events;
		int rc = io_step(c, sending, p, len, &done, &events);
		if (rc == 0 && done == 0)
			rc = wait_for(c, events, deadline);
		if (rc < 0)
			return fail_io(c, rc, what, err);
		p += done;
		len -= done;
	}
	return 0;
}

static int send_all(struct remote_client *c, const void *buf, size_t len, uint64_t deadline,
		    struct error *err)
{
	return transfer(c, true, (void *)buf, len, deadline, "sending a request", err);
}

static int recv_all(struct remote_client *c, void *buf, size_t len, uint64_t deadline,
		    const char *what, struct error *err)
{
	return transfer(c, false, buf, len, deadline, what, err);
}

static int tcp_connect(struct remote_client *c, const struct remote_address *a, uint64_t deadline,
		       struct error *err)
{
	c->fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return error_set(err, -errno, "failed to connect to %s: %s", a->text,
				 strerror(errno));
	/* Requests are 1 or 9 bytes, each waited for: never hold them back. */
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (const struct sockaddr *)&a->addr, a->len) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return error_set(err, -errno, "failed to connect to %s: %s", a->text,
				 strerror(errno));
	int rc = wait_for(c, POLLOUT, deadline);
	if (rc == -ETIMEDOUT)
		return error_set(err, rc, "failed to connect to %s: timed out after %u ms", a->text,
				 c->timeouts.connect_ms);
	if (rc < 0)
		return error_set(err, rc, "failed to connect to %s: %s", a->text,
				 rc == -ECANCELED ? "cancelled" : strerror(-rc));
	int so_error = 0;
	socklen_t len = sizeof(so_error);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0)
		so_error = errno;
	if (so_error)
		return error_set(err, -so_error, "failed to connect to %s: %s", a->text,
				 strerror(so_error));
	return 0;
}

static int tls_handshake(struct remote_client *c, const struct remote_tls *tls, uint64_t deadline,
			 struct error *err)
{
	c->ssl = remote_ssl_new(tls, c->fd, err);
	if (!c->ssl)
		return -ENOMEM;
	for (;;) {
		short events = POLLIN;
		errno = 0;
		int rc = tls_step(c, SSL_connect(c->ssl), &events);
		if (rc > 0)
			return 0;
		if (rc == 0)
			rc = wait_for(c, events, deadline);
		if (rc == 0)
			continue;
		c->broken = true;
		if (rc == -ETIMEDOUT)
			return error_set(err, rc, "TLS handshake with %s timed out after %u ms",
					 c->address, c->timeouts.connect_ms);
		if (rc == -EPROTO)
			return remote_tls_error(err, rc, "TLS handshake failed");
		ERR_clear_error();
		if (rc == -ECONNRESET)
			return error_set(err, rc,
					 "TLS handshake with %s failed: connection closed by the "
					 "server (does it use the same PSK?)",
					 c->address);
		return error_set(err, rc, "TLS handshake with %s failed: %s", c->address,
				 rc == -ECANCELED ? "cancelled" : strerror(-rc));
	}
}

static int remote_status_error(uint8_t status, struct error *err)
{
	return error_set(err, status == REMOTE_STATUS_SERVER_ERROR ? -EIO : -EPROTO,
			 "Remote server returned error status: %u", status);
}

static int fetch_metadata(struct remote_client *c, struct error *err)
{
	uint8_t op = REMOTE_OP_METADATA;
	uint64_t deadline = exchange_begin(c);
	int rc = send_all(c, &op, 1, deadline, err);
	uint8_t status;
	if (rc == 0)
		rc = recv_all(c, &status, 1, deadline, "reading the metadata reply", err);
	/* A TLS server waits for a ClientHello and never answers a plain
	 * request (ours closes the connection, others wait): say so, it is the
	 * likely cause. */
	if (rc == -ETIMEDOUT && !c->ssl)
		error_set(err, rc,
			  "%s: no reply to METADATA within %u ms (a server with TLS-PSK answers "
			  "nothing to a client without psk_identity and psk_secret)",
			  c->address, c->timeouts.io_ms);
	if (rc == -ECONNRESET && !c->ssl)
		error_set(err, rc,
			  "%s: the server closed the connection without answering METADATA (a "
			  "server with TLS-PSK does so to a client without psk_identity and "
			  "psk_secret)",
			  c->address);
	if (rc < 0)
		return rc;
	if (status != REMOTE_STATUS_OK) {
		c->broken = true;
		return remote_status_error(status, err);
	}
	uint8_t size_bytes[8];
	rc =
	    recv_all(c, size_bytes, sizeof(size_bytes), deadline, "reading the metadata size", err);
	if (rc < 0)
		return rc;
	uint64_t size = remote_get_u64(size_bytes);
	/* Bounded before allocating: the size is the server's word. */
	if (size < REMOTE_METADATA_MIN_BYTES || size > REMOTE_METADATA_MAX_BYTES) {
		c->broken = true;
		return error_set(
		    err, -EPROTO, "Remote metadata size %llu is out of range (%u..%u bytes)",
		    (unsigned long long)size, REMOTE_METADATA_MIN_BYTES, REMOTE_METADATA_MAX_BYTES);
	}
	deadline = exchange_payload(c, size);
	uint8_t *blob = malloc((size_t)size);
	if (!blob)
		return error_set(err, -ENOMEM, "out of memory for %llu bytes of metadata",
				 (unsigned long long)size);
	rc = recv_all(c, blob, (size_t)size, deadline, "reading the metadata", err);
	if (rc == 0) {
		rc = remote_metadata_parse(blob, (size_t)size, &c->meta, err);
		if (rc < 0)
			c->broken = true;
	}
	free(blob);
	if (rc == 0)
		c->stripe_bytes = (uint64_t)SECTOR_SIZE << c->meta.shift;
	return rc;
}

/* A client not connected yet: no descriptor, the given timeouts. */
static struct remote_client *client_new(const char *name, const struct remote_timeouts *timeouts,
					int stop_fd, struct error *err)
{
	struct remote_client *c = calloc(1, sizeof(*c));
	if (!c) {
		error_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	c->fd = -1;
	c->stop_fd = stop_fd;
	timeouts_fill(&c->timeouts, timeouts);
	snprintf(c->address, sizeof(c->address), "%s", name);
	return c;
}

/* The end of every way in: a client whose set-up failed (rc < 0) is closed,
 * one that succeeded is the caller's. */
static int client_ready(struct remote_client *c, int rc, struct remote_client **out)
{
	if (rc < 0) {
		c->broken = true;
		remote_client_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

int remote_client_connect_stoppable(const struct remote_address *address,
				    const struct remote_tls *tls,
				    const struct remote_timeouts *timeouts, int stop_fd,
				    struct remote_client **out, struct error *err)
{
	*out = NULL;
	struct remote_client *c = client_new(address->text, timeouts, stop_fd, err);
	if (!c)
		return -ENOMEM;
	uint64_t deadline = deadline_after(c->timeouts.connect_ms);
	int rc = tcp_connect(c, address, deadline, err);
	if (rc == 0 && tls)
		rc = tls_handshake(c, tls, deadline, err);
	if (rc == 0)
		rc = fetch_metadata(c, err);
	return client_ready(c, rc, out);
}

int remote_client_attach(int fd, const char *name, const struct remote_timeouts *timeouts,
			 struct remote_client **out, struct error *err)
{
	*out = NULL;
	struct remote_client *c = client_new(name, timeouts, -1, err);
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	/* Every wait is a poll() with a deadline, so reads must not block. */
	int rc = fd_set_nonblocking(fd);
	if (rc < 0)
		error_set(err, rc, "%s: cannot make the socket non-blocking: %s", name,
			  strerror(-rc));
	if (rc == 0)
		rc = fetch_metadata(c, err);
	return client_ready(c, rc, out);
}

int remote_client_connect(const struct remote_address *address, const struct remote_tls *tls,
			  const struct remote_timeouts *timeouts, struct remote_client **out,
			  struct error *err)
{
	return remote_client_connect_stoppable(address, tls, timeouts, -1, out, err);
}

const struct remote_metadata *remote_client_metadata(const struct remote_client *c)
{
	return &c->meta;
}

bool remote_client_broken(const struct remote_client *c)
{
	return c->broken;
}

/* The first byte of a TLS record that carries an alert (close_notify or a
 * fatal one); application data records start with 23. */
#define TLS_RECORD_ALERT 21

bool remote_client_closed_while_idle(struct remote_client *c)
{
	if (c->broken)
		return true;
	if (c->ssl && SSL_has_pending(c->ssl))
		return false;
	/* Peeked, never taken: bytes ahead of the next request are that
	 * request's reply sent early (requests are answered in order, and a
	 * canned peer writes every reply at once); an EOF, a reset or a TLS
	 * alert is the server ending the session. */
	uint8_t first;
	ssize_t n = recv(c->fd, &first, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return false;
	if (n == 1 && !(c->ssl && first == TLS_RECORD_ALERT))
		return false;
	c->broken = true;
	return true;
}

int remote_client_read_stripe(struct remote_client *c, uint64_t index, void *buf, uint8_t *status,
			      struct error *err)
{
	*status = REMOTE_STATUS_OK;
	if (c->broken)
		return error_set(err, -ENOTCONN, "%s: the connection failed earlier", c->address);
	uint8_t req[REMOTE_READ_STRIPE_REQUEST_BYTES];
	req[0] = REMOTE_OP_READ_STRIPE;
	remote_put_u64(req + 1, index);
	uint64_t deadline = exchange_begin(c);
	int rc = send_all(c, req, sizeof(req), deadline, err);
	uint8_t reply;
	if (rc == 0)
		rc = recv_all(c, &reply, 1, deadline, "reading a stripe reply", err);
	if (rc < 0)
		return rc;
	switch (reply) {
	case REMOTE_STATUS_OK:
		break;
	case REMOTE_STATUS_INVALID_STRIPE:
		*status = reply;
		return error_set(err, -EINVAL, "Invalid stripe index: %llu",
				 (unsigned long long)index);
	case REMOTE_STATUS_NO_DATA:
	case REMOTE_STATUS_NOT_FETCHED:
		*status = reply;
		return error_set(err, -ENODATA, "Stripe %llu is unavailable",
				 (unsigned long long)index);
	case REMOTE_STATUS_SERVER_ERROR:
		*status = reply;
		return remote_status_error(reply, err);
	default:
		/* INVALID_COMMAND or a byte no server sends: the server read our
		 * request differently, so what follows cannot be trusted. */
		*status = reply;
		c->broken = true;
		return remote_status_error(reply, err);
	}
	uint8_t size_bytes[8];
	rc = recv_all(c, size_bytes, sizeof(size_bytes), deadline, "reading a stripe size", err);
	if (rc < 0)
		return rc;
	uint64_t size = remote_get_u64(size_bytes);
	if (size != c->stripe_bytes) {
		c->broken = true;
		return error_set(err, -EPROTO,
				 "Stripe %llu size mismatch: expected %llu bytes, got %llu bytes",
				 (unsigned long long)index, (unsigned long long)c->stripe_bytes,
				 (unsigned long long)size);
	}
	deadline = exchange_payload(c, size);
	return recv_all(c, buf, (size_t)size, deadline, "reading a stripe", err);
}

void remote_client_close(struct remote_client *c)
{
	if (!c)
		return;
	if (c->ssl) {
		/* close_notify tells the server the session ended on purpose.
		 * Not after a failure: OpenSSL forbids it, and nothing waits
		 * for the server's own close_notify. */
		if (!c->broken && SSL_shutdown(c->ssl) < 0) {
			short events = POLLOUT;
			if (tls_step(c, -1, &events) == 0 &&
			    wait_for(c, events, deadline_after(c->timeouts.io_ms)) == 0)
				SSL_shutdown(c->ssl);
		}
		ERR_clear_error();
		SSL_free(c->ssl);
	}
	if (c->fd >= 0)
		close(c->fd);
	remote_metadata_free(&c->meta);
	free(c);
}
