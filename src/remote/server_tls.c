/* The TLS side of a server connection: non-blocking SSL calls mapped to
 * the loop's progress / want-read / want-write / end / error, over the
 * layer's socket BIO (remote_ssl_new) that sends with MSG_NOSIGNAL, so
 * writing to a peer that left fails that session instead of raising SIGPIPE
 * in the whole process. */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <string.h>

#include "remote/remote_internal.h"
#include "server_internal.h"

int server_tls_attach(const struct remote_tls *tls, int fd, SSL **out, struct error *err)
{
	ERR_clear_error();
	SSL *ssl = remote_ssl_new(tls, fd, err);
	if (!ssl)
		return -ENOMEM;
	/* Replies are written piecewise from a buffer that stays put; an idle
	 * session keeps no record buffers (hundreds of idle sessions cost
	 * little); a peer that leaves without close_notify (ubiblk 0.4's
	 * client does) ends its session like a TCP close (outcome() below). */
	SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			      SSL_MODE_RELEASE_BUFFERS);
	SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_set_accept_state(ssl);
	*out = ssl;
	return 0;
}

/* What an SSL call's result means to the loop. */
static int outcome(SSL *ssl, int r, const char *what, struct error *why)
{
	if (r > 0)
		return r;
	int e = SSL_get_error(ssl, r);
	switch (e) {
	case SSL_ERROR_WANT_READ:
		return SERVER_IO_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return SERVER_IO_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		ERR_clear_error();
		return 0;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0) {
			if (errno == 0 || errno == ECONNRESET || errno == EPIPE) {
				ERR_clear_error();
				return 0;
			}
			error_set(why, -errno, "%s: %s", what, strerror(errno));
			return SERVER_IO_ERROR;
		}
		/* fall through */
	default:
		remote_tls_error(why, -EPROTO, what);
		return SERVER_IO_ERROR;
	}
}

int server_tls_handshake(SSL *ssl, struct error *why)
{
	ERR_clear_error();
	errno = 0;
	int r = SSL_do_handshake(ssl);
	return outcome(ssl, r == 1 ? 1 : r, "TLS handshake failed", why);
}

int server_tls_read(SSL *ssl, void *buf, size_t len, struct error *why)
{
	ERR_clear_error();
	errno = 0;
	return outcome(ssl, SSL_read(ssl, buf, (int)len), "TLS read failed", why);
}

int server_tls_write(SSL *ssl, const void *buf, size_t len, struct error *why)
{
	ERR_clear_error();
	errno = 0;
	int n = len > INT32_MAX ? INT32_MAX : (int)len;
	return outcome(ssl, SSL_write(ssl, buf, n), "TLS write failed", why);
}

const char *server_tls_identity(SSL *ssl)
{
	const char *id = SSL_get_psk_identity(ssl);
	return id ? id : "";
}

void server_tls_close_notify(SSL *ssl)
{
	ERR_clear_error();
	/* Only after a finished handshake: close_notify ends a session, and a
	 * failed handshake has already sent its alert. Sent once. */
	if (SSL_is_init_finished(ssl) && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
		SSL_shutdown(ssl);
	ERR_clear_error();
}

void server_tls_close(SSL *ssl)
{
	server_tls_close_notify(ssl);
	SSL_free(ssl);
}
