/*
 * The key-encryption-key file (-k) as kek_parse reads it. A KEK that parses
 * must wrap and unwrap a secret back to itself whenever it can wrap at all
 * (its values are checked lazily, at the first secret), and a failure says
 * why in one line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config_fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	config_fuzz_quiet_logs();
	return 0;
}

/* wrap then unwrap gives the secret back, under any KEK that wraps. */
static void check_round_trip(const struct kek *kek)
{
	static const uint8_t secret[32] = "0123456789abcdef0123456789ABCDEF";
	struct bytes wrapped, plain;
	struct error err = {{0}};
	if (kek_wrap(kek, secret, sizeof(secret), &wrapped, &err) != 0) {
		/* Only a KEK with unusable values refuses, and says why. */
		if (kek->method == KEK_METHOD_NONE)
			abort();
		config_fuzz_check_error(&err);
		return;
	}
	if (kek_unwrap(kek, wrapped.data, wrapped.len, &plain, &err) != 0 ||
	    plain.len != sizeof(secret) || memcmp(plain.data, secret, sizeof(secret)) != 0)
		abort();
	bytes_free(&plain);
	/* A flipped bit never unwraps to anything under GCM. */
	if (kek->method == KEK_METHOD_AES256_GCM) {
		wrapped.data[wrapped.len - 1] ^= 1;
		if (kek_unwrap(kek, wrapped.data, wrapped.len, &plain, &err) == 0)
			abort();
	}
	bytes_free(&wrapped);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kek kek;
	struct error err = {{0}};
	if (kek_parse((const char *)data, size, &kek, &err) == 0) {
		config_fuzz_check_kek(&kek);
		check_round_trip(&kek);
	} else {
		config_fuzz_check_error(&err);
		if (kek.method != KEK_METHOD_NONE || kek.key.present)
			abort();
	}
	kek_free(&kek);
	return 0;
}
