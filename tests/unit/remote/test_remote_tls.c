/* TLS-PSK (remote.h, tls): the credential rules, and real handshakes between
 * the two roles over a socket pair, including clients that present another
 * identity (shorter, longer, empty) or another secret: the handshake fails,
 * nothing crashes. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "remote/remote.h"
#include "remote/remote_internal.h"

static const uint8_t secret16[16] = "0123456789abcdef";
static const uint8_t other16[16] = "0123456789abcdeX";

static void psk_rules(void **state)
{
	struct error err = {0};
	uint8_t big[REMOTE_PSK_SECRET_MAX + 1] = {0};
	char id256[257], id257[258];
	memset(id256, 'i', 256);
	id256[256] = '\0';
	memset(id257, 'i', 257);
	id257[257] = '\0';

	assert_int_equal(remote_psk_check("client1", secret16, 16, &err), 0);
	assert_int_equal(remote_psk_check("", secret16, 16, &err), -EINVAL);
	assert_string_equal(err.text, "PSK identity must not be empty");
	assert_int_equal(remote_psk_check(NULL, secret16, 16, &err), -EINVAL);
	assert_string_equal(err.text, "PSK identity must not be empty");
	assert_int_equal(remote_psk_check("client1", secret16, 8, &err), -EINVAL);
	assert_string_equal(err.text, "PSK secret must be at least 16 bytes long");
	assert_int_equal(remote_psk_check("client1", secret16, 15, &err), -EINVAL);
	assert_string_equal(err.text, "PSK secret must be at least 16 bytes long");
	assert_int_equal(remote_psk_check("client1", big, REMOTE_PSK_SECRET_MAX, &err), 0);
	assert_int_equal(remote_psk_check("client1", big, REMOTE_PSK_SECRET_MAX + 1, &err),
			 -EINVAL);
	assert_string_equal(err.text, "PSK secret must be at most 512 bytes long");
	assert_int_equal(remote_psk_check(id256, secret16, 16, &err), 0);
	assert_int_equal(remote_psk_check(id257, secret16, 16, &err), -EINVAL);
	assert_string_equal(err.text, "PSK identity must be at most 256 bytes long");

	/* remote_tls_new applies the same rules. */
	struct remote_tls *tls = (struct remote_tls *)&err;
	assert_int_equal(remote_tls_new(REMOTE_TLS_CLIENT, "", secret16, 16, &tls, &err), -EINVAL);
	assert_null(tls);
	assert_string_equal(err.text, "PSK identity must not be empty");
	assert_int_equal(remote_tls_new(REMOTE_TLS_SERVER, "id", secret16, 8, &tls, &err), -EINVAL);
	assert_string_equal(err.text, "PSK secret must be at least 16 bytes long");
}

/* A client that presents any identity and secret, bypassing the rules, as
 * a hostile or misconfigured peer would. */
static char raw_identity[300];
static size_t raw_identity_len;
static const uint8_t *raw_secret;
static size_t raw_secret_len;

static unsigned int raw_client_psk(SSL *ssl, const char *hint, char *identity,
				   unsigned int max_identity_len, unsigned char *psk,
				   unsigned int max_psk_len)
{
	if (raw_identity_len > max_identity_len || raw_secret_len > max_psk_len)
		return 0;
	memcpy(identity, raw_identity, raw_identity_len);
	identity[raw_identity_len] = '\0';
	memcpy(psk, raw_secret, raw_secret_len);
	return (unsigned int)raw_secret_len;
}

static SSL_CTX *raw_client_ctx(const char *identity, const uint8_t *secret, size_t secret_len)
{
	snprintf(raw_identity, sizeof(raw_identity), "%s", identity);
	raw_identity_len = strlen(raw_identity);
	raw_secret = secret;
	raw_secret_len = secret_len;
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	assert_non_null(ctx);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_set_cipher_list(ctx, REMOTE_TLS_CIPHER), 1);
	SSL_CTX_set_psk_client_callback(ctx, raw_client_psk);
	return ctx;
}

struct server_side {
	SSL_CTX *ctx;
	int fd;
	int accepted; /* SSL_accept's result */
	char got;     /* the byte read after a handshake */
	char cipher[64];
	int version;
};

static void *serve_one(void *arg)
{
	struct server_side *s = arg;
	SSL *ssl = SSL_new(s->ctx);
	SSL_set_fd(ssl, s->fd);
	s->accepted = SSL_accept(ssl);
	if (s->accepted == 1) {
		snprintf(s->cipher, sizeof(s->cipher), "%s", SSL_get_cipher_name(ssl));
		s->version = SSL_version(ssl);
		if (SSL_read(ssl, &s->got, 1) == 1)
			SSL_write(ssl, &s->got, 1);
		SSL_shutdown(ssl);
	}
	ERR_clear_error();
	SSL_free(ssl);
	shutdown(s->fd, SHUT_RDWR);
	return NULL;
}

/* Handshakes a client context with the server context over a socket pair;
 * true when both sides agree and a byte makes the round trip. */
static bool handshake(SSL_CTX *client_ctx, SSL_CTX *server_ctx, struct server_side *s)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	memset(s, 0, sizeof(*s));
	s->ctx = server_ctx;
	s->fd = sv[1];
	pthread_t t;
	assert_int_equal(thread_start(&t, "tls-server", serve_one, s), 0);

	SSL *ssl = SSL_new(client_ctx);
	SSL_set_fd(ssl, sv[0]);
	bool ok = SSL_connect(ssl) == 1;
	char echo = 0;
	if (ok)
		ok = SSL_write(ssl, "x", 1) == 1 && SSL_read(ssl, &echo, 1) == 1 && echo == 'x';
	ERR_clear_error();
	SSL_free(ssl);
	shutdown(sv[0], SHUT_RDWR);
	pthread_join(t, NULL);
	close(sv[0]);
	close(sv[1]);
	return ok && s->accepted == 1;
}

static struct remote_tls *new_tls(enum remote_tls_role role, const char *id, const uint8_t *secret)
{
	struct remote_tls *tls;
	struct error err = {0};
	assert_int_equal(remote_tls_new(role, id, secret, 16, &tls, &err), 0);
	return tls;
}

static void matching_psk_handshakes_with_tls12_and_the_one_cipher(void **state)
{
	struct remote_tls *server = new_tls(REMOTE_TLS_SERVER, "client1", secret16);
	struct remote_tls *client = new_tls(REMOTE_TLS_CLIENT, "client1", secret16);
	struct server_side s;
	assert_true(handshake(remote_tls_ctx(client), remote_tls_ctx(server), &s));
	assert_int_equal(s.version, TLS1_2_VERSION);
	assert_string_equal(s.cipher, "PSK-AES256-GCM-SHA384");
	assert_int_equal(s.got, 'x');
	remote_tls_free(client);
	remote_tls_free(server);
}

static void longest_identity_and_secret_handshake(void **state)
{
	char id[REMOTE_PSK_IDENTITY_MAX + 1];
	memset(id, 'a', REMOTE_PSK_IDENTITY_MAX);
	id[REMOTE_PSK_IDENTITY_MAX] = '\0';
	uint8_t secret[REMOTE_PSK_SECRET_MAX];
	memset(secret, 0x5a, sizeof(secret));
	struct remote_tls *server, *client;
	assert_int_equal(
	    remote_tls_new(REMOTE_TLS_SERVER, id, secret, sizeof(secret), &server, NULL), 0);
	assert_int_equal(
	    remote_tls_new(REMOTE_TLS_CLIENT, id, secret, sizeof(secret), &client, NULL), 0);
	struct server_side s;
	assert_true(handshake(remote_tls_ctx(client), remote_tls_ctx(server), &s));
	remote_tls_free(client);
	remote_tls_free(server);
}

static void other_identities_fail_the_handshake_only(void **state)
{
	struct remote_tls *server = new_tls(REMOTE_TLS_SERVER, "client1", secret16);
	const char *identities[] = {"client", "client12", "", "clientX", "Client1"};
	struct server_side s;
	for (size_t i = 0; i < sizeof(identities) / sizeof(identities[0]); i++) {
		SSL_CTX *ctx = raw_client_ctx(identities[i], secret16, 16);
		assert_false(handshake(ctx, remote_tls_ctx(server), &s));
		assert_int_not_equal(s.accepted, 1);
		SSL_CTX_free(ctx);
	}
	/* The server context still works for the right client. */
	SSL_CTX *ctx = raw_client_ctx("client1", secret16, 16);
	assert_true(handshake(ctx, remote_tls_ctx(server), &s));
	SSL_CTX_free(ctx);
	remote_tls_free(server);
}

static void other_secret_fails_the_handshake(void **state)
{
	struct remote_tls *server = new_tls(REMOTE_TLS_SERVER, "client1", secret16);
	struct remote_tls *client = new_tls(REMOTE_TLS_CLIENT, "client1", other16);
	struct server_side s;
	assert_false(handshake(remote_tls_ctx(client), remote_tls_ctx(server), &s));
	assert_int_not_equal(s.accepted, 1);
	remote_tls_free(client);
	remote_tls_free(server);
}

static void tls13_and_tls11_clients_are_refused(void **state)
{
	struct remote_tls *server = new_tls(REMOTE_TLS_SERVER, "client1", secret16);
	struct server_side s;
	SSL_CTX *ctx = raw_client_ctx("client1", secret16, 16);
	SSL_CTX_set_min_proto_version(ctx, TLS1_1_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
	SSL_CTX_set_security_level(ctx, 0);
	assert_false(handshake(ctx, remote_tls_ctx(server), &s));
	SSL_CTX_free(ctx);
	ctx = raw_client_ctx("client1", secret16, 16);
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	assert_false(handshake(ctx, remote_tls_ctx(server), &s));
	SSL_CTX_free(ctx);
	remote_tls_free(server);
}

static void error_text_names_openssl_reasons(void **state)
{
	struct error err = {0};
	ERR_clear_error();
	assert_int_equal(remote_tls_error(&err, -EPROTO, "TLS handshake failed"), -EPROTO);
	assert_string_equal(err.text, "TLS handshake failed");
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	assert_int_equal(SSL_CTX_set_cipher_list(ctx, "NO-SUCH-CIPHER"), 0);
	assert_int_equal(remote_tls_error(&err, -EINVAL, "cipher"), -EINVAL);
	assert_non_null(strstr(err.text, "cipher: no cipher match"));
	assert_int_equal(ERR_peek_error(), 0);
	SSL_CTX_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(psk_rules),
	    cmocka_unit_test(matching_psk_handshakes_with_tls12_and_the_one_cipher),
	    cmocka_unit_test(longest_identity_and_secret_handshake),
	    cmocka_unit_test(other_identities_fail_the_handshake_only),
	    cmocka_unit_test(other_secret_fails_the_handshake),
	    cmocka_unit_test(tls13_and_tls11_clients_are_refused),
	    cmocka_unit_test(error_text_names_openssl_reasons),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
