/* TLS-PSK contexts. Both roles use the same settings: TLS 1.2 and nothing
 * else (1.3 would bypass the PSK callbacks below, older versions are
 * broken), the one cipher PSK-AES256-GCM-SHA384, no session tickets, no
 * certificates, no identity hint. The PSK lives in memory this context
 * owns and is wiped when the context is freed; it is never logged. */
#include "remote/remote_internal.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct remote_tls {
	SSL_CTX *ctx;
	enum remote_tls_role role;
	char *identity;
	size_t identity_len;
	uint8_t *secret;
	size_t secret_len;
};

int remote_psk_check(const char *identity, const uint8_t *secret, size_t secret_len,
		     struct error *err)
{
	if (!identity || identity[0] == '\0')
		return error_set(err, -EINVAL, "PSK identity must not be empty");
	if (strlen(identity) > REMOTE_PSK_IDENTITY_MAX)
		return error_set(err, -EINVAL, "PSK identity must be at most %u bytes long",
				 REMOTE_PSK_IDENTITY_MAX);
	if (!secret || secret_len < REMOTE_PSK_SECRET_MIN)
		return error_set(err, -EINVAL, "PSK secret must be at least %u bytes long",
				 REMOTE_PSK_SECRET_MIN);
	if (secret_len > REMOTE_PSK_SECRET_MAX)
		return error_set(err, -EINVAL, "PSK secret must be at most %u bytes long",
				 REMOTE_PSK_SECRET_MAX);
	return 0;
}

int remote_tls_error(struct error *err, int code, const char *what)
{
	char reasons[ERROR_TEXT_MAX] = "";
	size_t used = 0;
	unsigned long e;
	while ((e = ERR_get_error()) != 0) {
		const char *reason = ERR_reason_error_string(e);
		char unknown[32];
		if (!reason) {
			snprintf(unknown, sizeof(unknown), "error %lx", e);
			reason = unknown;
		}
		if (used < sizeof(reasons))
			used += (size_t)snprintf(reasons + used, sizeof(reasons) - used, "%s%s",
						 used ? ", " : "", reason);
	}
	if (reasons[0])
		return error_set(err, code, "%s: %s", what, reasons);
	return error_set(err, code, "%s", what);
}

static const struct remote_tls *tls_of(SSL *ssl)
{
	return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

/* The client presents its identity and ignores any hint. OpenSSL's identity
 * buffer has room for max_identity_len bytes plus the terminating NUL. */
static unsigned int client_psk(SSL *ssl, const char *hint, char *identity,
			       unsigned int max_identity_len, unsigned char *psk,
			       unsigned int max_psk_len)
{
	(void)hint;
	const struct remote_tls *tls = tls_of(ssl);
	if (!tls || tls->identity_len > max_identity_len || tls->secret_len > max_psk_len)
		return 0;
	memcpy(identity, tls->identity, tls->identity_len);
	identity[tls->identity_len] = '\0';
	memcpy(psk, tls->secret, tls->secret_len);
	return (unsigned int)tls->secret_len;
}

/* Only the configured identity gets the secret. Lengths first: comparing
 * bytes of strings of different lengths would read past one of them. The
 * bytes are compared in constant time, so timing tells nothing about how
 * much of a guess was right. 0 fails the handshake (unknown_psk_identity). */
static unsigned int server_psk(SSL *ssl, const char *identity, unsigned char *psk,
			       unsigned int max_psk_len)
{
	const struct remote_tls *tls = tls_of(ssl);
	if (!tls || !identity || tls->secret_len > max_psk_len)
		return 0;
	size_t got = strnlen(identity, REMOTE_PSK_IDENTITY_MAX + 1);
	if (got == 0 || got != tls->identity_len)
		return 0;
	if (CRYPTO_memcmp(identity, tls->identity, tls->identity_len) != 0)
		return 0;
	memcpy(psk, tls->secret, tls->secret_len);
	return (unsigned int)tls->secret_len;
}

static int configure(SSL_CTX *ctx, struct error *err)
{
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) != 1)
		return remote_tls_error(err, -EINVAL, "TLS setup failed: cannot limit to TLS 1.2");
	if (SSL_CTX_set_cipher_list(ctx, REMOTE_TLS_CIPHER) != 1)
		return remote_tls_error(err, -EINVAL,
					"TLS setup failed: cipher " REMOTE_TLS_CIPHER
					" is not available");
	/* No tickets: every connection proves the PSK. No renegotiation: a
	 * peer cannot restart the handshake mid-session. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	/* A read or write finishes what the handshake's records need instead
	 * of returning WANT_* for records that carry no data. */
	SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY);
	return 0;
}

void remote_tls_free(struct remote_tls *tls)
{
	if (!tls)
		return;
	SSL_CTX_free(tls->ctx);
	if (tls->identity) {
		OPENSSL_cleanse(tls->identity, tls->identity_len);
		free(tls->identity);
	}
	if (tls->secret) {
		OPENSSL_cleanse(tls->secret, tls->secret_len);
		free(tls->secret);
	}
	free(tls);
}

int remote_tls_new(enum remote_tls_role role, const char *identity, const uint8_t *secret,
		   size_t secret_len, struct remote_tls **out, struct error *err)
{
	*out = NULL;
	int ret = remote_psk_check(identity, secret, secret_len, err);
	if (ret < 0)
		return ret;
	struct remote_tls *tls = calloc(1, sizeof(*tls));
	if (!tls)
		return error_set(err, -ENOMEM, "TLS setup failed: out of memory");
	tls->role = role;
	tls->identity_len = strlen(identity);
	tls->identity = malloc(tls->identity_len + 1);
	tls->secret = malloc(secret_len);
	if (!tls->identity || !tls->secret) {
		remote_tls_free(tls);
		return error_set(err, -ENOMEM, "TLS setup failed: out of memory");
	}
	memcpy(tls->identity, identity, tls->identity_len + 1);
	memcpy(tls->secret, secret, secret_len);
	tls->secret_len = secret_len;

	tls->ctx = SSL_CTX_new(TLS_method());
	if (!tls->ctx) {
		ret = remote_tls_error(err, -ENOMEM, "TLS setup failed: no SSL context");
		remote_tls_free(tls);
		return ret;
	}
	ret = configure(tls->ctx, err);
	if (ret < 0) {
		remote_tls_free(tls);
		return ret;
	}
	SSL_CTX_set_app_data(tls->ctx, tls);
	if (role == REMOTE_TLS_CLIENT)
		SSL_CTX_set_psk_client_callback(tls->ctx, client_psk);
	else
		SSL_CTX_set_psk_server_callback(tls->ctx, server_psk);
	*out = tls;
	return 0;
}

SSL_CTX *remote_tls_ctx(const struct remote_tls *tls)
{
	return tls->ctx;
}

/* ---- a socket BIO that never raises SIGPIPE ----
 * OpenSSL's own socket BIO writes with write(), which raises SIGPIPE when
 * the peer has gone; a process that did not ignore it would die. */

static int nosig_write(BIO *b, const char *buf, int len)
{
	BIO_clear_retry_flags(b);
	ssize_t n = send(BIO_get_fd(b, NULL), buf, (size_t)len, MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_write(b);
	return (int)n;
}

static int nosig_read(BIO *b, char *buf, int len)
{
	BIO_clear_retry_flags(b);
	ssize_t n = recv(BIO_get_fd(b, NULL), buf, (size_t)len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_read(b);
	return (int)n;
}

static int nosig_puts(BIO *b, const char *s)
{
	return nosig_write(b, s, (int)strlen(s));
}

static BIO_METHOD *nosig_method;

static void nosig_method_create(void)
{
	/* Everything but reading and writing (fd get/set, flush, EOF) stays
	 * the socket BIO's: its ctrl and create/destroy are reused. */
	const BIO_METHOD *sock = BIO_s_socket();
	BIO_METHOD *m =
	    BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
			 "socket without SIGPIPE");
	if (!m)
		return;
	if (BIO_meth_set_write(m, nosig_write) != 1 || BIO_meth_set_read(m, nosig_read) != 1 ||
	    BIO_meth_set_puts(m, nosig_puts) != 1 ||
	    BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(sock)) != 1 ||
	    BIO_meth_set_create(m, BIO_meth_get_create(sock)) != 1 ||
	    BIO_meth_set_destroy(m, BIO_meth_get_destroy(sock)) != 1) {
		BIO_meth_free(m);
		return;
	}
	nosig_method = m;
}

SSL *remote_ssl_new(const struct remote_tls *tls, int fd, struct error *err)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, nosig_method_create);
	if (!nosig_method) {
		remote_tls_error(err, -ENOMEM, "TLS setup failed: no socket BIO");
		return NULL;
	}
	SSL *ssl = SSL_new(tls->ctx);
	BIO *bio = ssl ? BIO_new(nosig_method) : NULL;
	if (!bio) {
		SSL_free(ssl);
		remote_tls_error(err, -ENOMEM, "TLS setup failed: out of memory");
		return NULL;
	}
	BIO_set_fd(bio, fd, BIO_NOCLOSE);
	SSL_set_bio(ssl, bio, bio);
	return ssl;
}
