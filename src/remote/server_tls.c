/* The TLS side of a server connection: non-blocking SSL calls mapped to
 * the loop's progress / want-read / want-write / end / error, over a socket
 * BIO that sends with MSG_NOSIGNAL, so writing to a peer that left fails
 * that session instead of raising SIGPIPE in the whole process. */
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "remote/remote_internal.h"
#include "server_internal.h"

struct nosig_socket {
	int fd;
	bool eof; /* the peer closed its side: OpenSSL asks through BIO_eof */
};

static int nosig_write(BIO *b, const char *buf, int len)
{
	struct nosig_socket *sock = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	ssize_t n;
	do
		n = send(sock->fd, buf, (size_t)len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		BIO_set_retry_write(b);
	return (int)n;
}

static int nosig_read(BIO *b, char *buf, int len)
{
	struct nosig_socket *sock = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	ssize_t n;
	do
		n = recv(sock->fd, buf, (size_t)len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		BIO_set_retry_read(b);
	else if (n == 0)
		sock->eof = true;
	return (int)n;
}

static int nosig_puts(BIO *b, const char *str)
{
	return nosig_write(b, str, (int)strlen(str));
}

static long nosig_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)num;
	(void)ptr;
	struct nosig_socket *sock = BIO_get_data(b);
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* nothing is buffered here */
	case BIO_CTRL_EOF:
		return sock && sock->eof;
	default:
		return 0;
	}
}

static int nosig_create(BIO *b)
{
	BIO_set_data(b, NULL);
	return 1;
}

static int nosig_destroy(BIO *b)
{
	free(BIO_get_data(b));
	BIO_set_data(b, NULL);
	BIO_set_init(b, 0);
	return 1;
}

static BIO_METHOD *nosig_method;
static pthread_once_t nosig_once = PTHREAD_ONCE_INIT;

/* Made once and kept for the life of the process, like OpenSSL's own. */
static void make_nosig_method(void)
{
	BIO_METHOD *m =
	    BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
			 "socket without SIGPIPE");
	if (!m)
		return;
	if (!BIO_meth_set_write(m, nosig_write) || !BIO_meth_set_read(m, nosig_read) ||
	    !BIO_meth_set_puts(m, nosig_puts) || !BIO_meth_set_ctrl(m, nosig_ctrl) ||
	    !BIO_meth_set_create(m, nosig_create) || !BIO_meth_set_destroy(m, nosig_destroy)) {
		BIO_meth_free(m);
		return;
	}
	nosig_method = m;
}

static BIO *nosig_bio(int fd)
{
	pthread_once(&nosig_once, make_nosig_method);
	if (!nosig_method)
		return NULL;
	struct nosig_socket *sock = calloc(1, sizeof(*sock));
	BIO *b = sock ? BIO_new(nosig_method) : NULL;
	if (!b) {
		free(sock);
		return NULL;
	}
	sock->fd = fd;
	BIO_set_data(b, sock);
	BIO_set_init(b, 1);
	return b;
}

int server_tls_attach(const struct remote_tls *tls, int fd, SSL **out, struct error *err)
{
	ERR_clear_error();
	SSL *ssl = SSL_new(remote_tls_ctx(tls));
	if (!ssl)
		return remote_tls_error(err, -ENOMEM, "TLS setup failed");
	BIO *b = nosig_bio(fd);
	if (!b) {
		SSL_free(ssl);
		return remote_tls_error(err, -ENOMEM, "TLS setup failed: no socket BIO");
	}
	SSL_set_bio(ssl, b, b);
	/* Replies are written piecewise from a buffer that stays put; an idle
	 * session keeps no record buffers (hundreds of idle sessions cost
	 * little); a peer that leaves without close_notify (ubiblk 0.4's
	 * client does) ends its session like a TCP close. */
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

void server_tls_close(SSL *ssl)
{
	ERR_clear_error();
	/* Only after a finished handshake: close_notify ends a session, and a
	 * failed handshake has already sent its alert. */
	if (SSL_is_init_finished(ssl))
		SSL_shutdown(ssl);
	ERR_clear_error();
	SSL_free(ssl);
}
