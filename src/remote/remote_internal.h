/* What the parts of the remote layer share with each other and nothing else
 * needs: little-endian field access, the OpenSSL context behind a
 * remote_tls, and the way an OpenSSL failure becomes one line of text. */
#ifndef UBIBLK_REMOTE_INTERNAL_H
#define UBIBLK_REMOTE_INTERNAL_H

#include <openssl/ssl.h>
#include <stdint.h>

#include "remote/remote.h"

static inline void remote_put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t remote_get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* The context every SSL of the role is created from (SSL_new). */
SSL_CTX *remote_tls_ctx(const struct remote_tls *tls);

/* A new SSL of tls's role on the connected socket fd (which stays the
 * caller's to close). Its records go through send(MSG_NOSIGNAL) and recv, so
 * a peer that vanishes never raises SIGPIPE, and a non-blocking fd makes
 * SSL_read/SSL_write/SSL_do_handshake return WANT_READ/WANT_WRITE. NULL with
 * err set on failure. */
SSL *remote_ssl_new(const struct remote_tls *tls, int fd, struct error *err);

/* Sets err to "<what>: <OpenSSL's reasons>" (or "<what>" when OpenSSL queued
 * none), empties this thread's OpenSSL error queue, and returns code. */
int remote_tls_error(struct error *err, int code, const char *what);

/* remote_client_connect whose every wait also watches stop_fd (-1: none):
 * once stop_fd is readable, connecting and every later read or write of the
 * client fail with -ECANCELED, so a pool's threads stop promptly. */
int remote_client_connect_stoppable(const struct remote_address *address,
				    const struct remote_tls *tls,
				    const struct remote_timeouts *timeouts, int stop_fd,
				    struct remote_client **out, struct error *err);

/* A plain (no TLS) client on a stream socket that is already connected:
 * fetches the metadata like remote_client_connect and is then used the same
 * way. The client takes fd over (made non-blocking, closed by
 * remote_client_close, or here when it fails); `name` stands for the
 * server's address in messages. The seam where the reply stream's bytes
 * become messages, for the fuzz target that feeds it through a socketpair. */
int remote_client_attach(int fd, const char *name, const struct remote_timeouts *timeouts,
			 struct remote_client **out, struct error *err);

/* remote_server_run without listening: serves the one connected stream
 * socket fd (taken over: made non-blocking, closed when its session ends)
 * with opts' device, headers and timeouts, and returns 0 once that session
 * ended (opts->address and max_connections are not used). The seam where
 * the request stream's bytes become messages, for the fuzz target that
 * feeds it through a socketpair. remote_server_request_stop() ends it like
 * remote_server_run. */
int remote_server_serve_fd(const struct remote_server_options *opts, int fd, struct error *err);

/* Whether the server ended the connection (EOF, reset, a TLS alert such
 * as close_notify) while no exchange was running, as a server's idle
 * timeout does: then the client is broken, to be closed and dialled again.
 * Reply bytes that arrived early do not count. Never waits. */
bool remote_client_closed_while_idle(struct remote_client *c);

/* How a remote source re-dials a lost connection: wait first_ms, doubling
 * up to max_ms, at most `attempts` dials in a row before the server counts
 * as gone. */
struct remote_backoff {
	uint32_t first_ms;
	uint32_t max_ms;
	uint32_t attempts;
};

#define REMOTE_BACKOFF_FIRST_MS 500u
#define REMOTE_BACKOFF_MAX_MS	30000u
#define REMOTE_BACKOFF_ATTEMPTS 10u

/* stripe_source_remote with another backoff (NULL: the defaults above). */
int stripe_source_remote_with_backoff(const struct remote_source_config *cfg,
				      uint32_t stripe_sectors,
				      const struct remote_timeouts *timeouts,
				      const struct remote_backoff *backoff,
				      struct stripe_source **out, struct error *err);

#endif
