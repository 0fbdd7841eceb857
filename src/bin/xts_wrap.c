/* xts --wrap: turns plain secrets into what a config holds under a KEK, so an
 * operator can write an encrypted disk's config without a third-party tool
 * (`openssl enc` cannot do GCM).
 *
 * A KEK with an init_vector wraps in the fixed-nonce form (ciphertext || tag
 * under that nonce): the form every reader of this config format accepts,
 * but every secret shares the nonce. A KEK without one gets a fresh random
 * nonce per secret (nonce || ciphertext || tag), which config_secrets
 * accepts and older readers do not. */
#include "xts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "common/common.h"

#define INPUT_MAX (64u << 10) /* many secrets; a config line each */
#define NONCE_LEN 12u

/* Reads stdin to EOF into buf (unbuffered: no stdio copy of the secrets). */
static int read_stdin(char *buf, size_t cap, size_t *len)
{
	size_t used = 0;
	for (;;) {
		if (used == cap) {
			log_error("more than %zu bytes on stdin", cap - 1);
			return -1;
		}
		ssize_t n = read(STDIN_FILENO, buf + used, cap - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("cannot read stdin: %s", strerror(errno));
			return -1;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	if (used == cap) {
		log_error("more than %zu bytes on stdin", cap - 1);
		return -1;
	}
	buf[used] = '\0';
	*len = used;
	return 0;
}

/* nonce || wrap(secret) with the KEK's key and AAD and a random nonce. */
static int wrap_fresh_nonce(const struct kek *kek, const struct bytes *plain, struct bytes *out,
			    struct error *err)
{
	uint8_t nonce[NONCE_LEN];
	struct bytes wrapped;
	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return error_set(err, -EIO, "Failed to generate random bytes");
	struct kek with_nonce = *kek; /* shallow: only the nonce differs */
	with_nonce.init_vector = (struct bytes){.data = nonce, .len = NONCE_LEN, .present = true};
	int ret = kek_wrap(&with_nonce, plain->data, plain->len, &wrapped, err);
	if (ret)
		return ret;
	out->data = malloc(NONCE_LEN + wrapped.len);
	if (!out->data) {
		bytes_free(&wrapped);
		return -ENOMEM;
	}
	memcpy(out->data, nonce, NONCE_LEN);
	memcpy(out->data + NONCE_LEN, wrapped.data, wrapped.len);
	out->len = NONCE_LEN + wrapped.len;
	out->present = true;
	bytes_free(&wrapped);
	return 0;
}

/* One secret (one line of base64) to stdout. */
static int wrap_line(const struct kek *kek, bool fresh_nonce, char *line, unsigned lineno)
{
	struct error err = {0};
	struct bytes plain, wrapped = {0};
	char *text = NULL;

	if (base64_decode(line, true, &plain, &err)) {
		log_error("stdin line %u: %s", lineno, err.text);
		return -1;
	}
	int ret = fresh_nonce ? wrap_fresh_nonce(kek, &plain, &wrapped, &err)
			      : kek_wrap(kek, plain.data, plain.len, &wrapped, &err);
	bytes_free(&plain);
	if (ret) {
		error_default(&err, ret);
		log_error("stdin line %u: %s", lineno, err.text);
		return -1;
	}
	ret = base64_encode(wrapped.data, wrapped.len, &text);
	bytes_free(&wrapped);
	if (ret) {
		log_error("%s", strerror(-ret));
		return -1;
	}
	printf("%s\n", text);
	secret_string_free(text); /* plain under method none */
	return 0;
}

int xts_wrap_secrets(const struct kek *kek)
{
	bool gcm = kek->method == KEK_METHOD_AES256_GCM;
	bool fresh_nonce = gcm && !kek->init_vector.present;
	static char input[INPUT_MAX];
	size_t len = 0;
	unsigned count = 0;
	int ret = 0;

	if (!gcm)
		log_warn("the KEK's method is none: secrets stay plain base64");
	else if (!fresh_nonce)
		log_warn("the KEK has an init_vector: every secret is wrapped under that one "
			 "nonce (ubiblk 0.4 format); without init_vector each gets a random nonce");
	if (read_stdin(input, sizeof(input), &len))
		return -1;
	unsigned lineno = 0;
	for (char *p = input; ret == 0 && p < input + len; lineno++) {
		char *end = strchr(p, '\n');
		char *next = end ? end + 1 : input + len;
		if (end)
			*end = '\0';
		size_t n = strlen(p);
		if (n && p[n - 1] == '\r')
			p[--n] = '\0';
		if (n) {
			ret = wrap_line(kek, fresh_nonce, p, lineno + 1);
			count++;
		}
		p = next;
	}
	secret_wipe(input, sizeof(input));
	if (ret == 0 && count == 0) {
		log_error("no secrets on stdin (one base64 string per line)");
		ret = -1;
	}
	if (ret == 0 && fflush(stdout) != 0) {
		log_error("cannot write stdout: %s", strerror(errno));
		ret = -1;
	}
	return ret;
}
