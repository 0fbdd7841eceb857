/*
 * What the config fuzz targets share: the KEK an input is parsed with (its
 * first byte picks one, so seeds with secrets wrapped under the README's
 * example KEK unwrap, and the paths without a KEK stay covered), the checks
 * a successful parse must pass, and quiet logs.
 *
 * Input layout of config-device, config-listen and config-archive-target:
 * byte 0 picks the KEK (its value modulo 4; seeds use the digits '0'..'3'),
 * the rest is the YAML text.
 *   0  no KEK (NULL: secrets are taken as written)
 *   1  the README's example KEK (aes256-gcm, fixed init_vector)
 *   2  aes256-gcm without init_vector (only the nonce||ct||tag form unwraps)
 *   3  aes256-gcm without a key (every secret fails: "Key is required")
 */
#ifndef UBIBLK_FUZZ_CONFIG_FUZZ_H
#define UBIBLK_FUZZ_CONFIG_FUZZ_H

#include <stdlib.h>
#include <string.h>

#include "config/config.h"

/* The example KEK of ubiblk's README, as tests/unit/config uses it. */
#define FUZZ_TEST_KEK_YAML                                                                         \
	"method: aes256-gcm\n"                                                                     \
	"key: \"wHKSFBsRXW/VPLsJKl/mnsMs7X3Pt8NWjzZkch8Ku60=\"\n"                                  \
	"init_vector: \"UEt+wI+Ldq1UgQ/P\"\n"                                                      \
	"auth_data: \"dm0zamdlejhfMA==\"\n"
#define FUZZ_NONCE_KEK_YAML                                                                        \
	"method: aes256-gcm\n"                                                                     \
	"key: \"wHKSFBsRXW/VPLsJKl/mnsMs7X3Pt8NWjzZkch8Ku60=\"\n"                                  \
	"auth_data: \"dm0zamdlejhfMA==\"\n"
#define FUZZ_KEYLESS_KEK_YAML "method: aes256-gcm\n"

/* Log warnings (plaintext secrets) would flood a fuzzing run; UBIBLK_LOG
 * still wins when set. */
static inline void config_fuzz_quiet_logs(void)
{
	setenv("UBIBLK_LOG", "error", 0);
	log_init();
}

/* Parses the KEK byte 0 picks into *kek; returns the KEK to parse with
 * (NULL for selector 0). Every KEK text is fixed, so a failure is a bug. */
static inline const struct kek *config_fuzz_kek(uint8_t selector, struct kek *kek)
{
	static const char *const texts[] = {NULL, FUZZ_TEST_KEK_YAML, FUZZ_NONCE_KEK_YAML,
					    FUZZ_KEYLESS_KEK_YAML};
	const char *text = texts[selector % 4];
	kek_init_none(kek);
	if (!text)
		return NULL;
	if (kek_parse(text, strlen(text), kek, NULL) != 0)
		abort();
	return kek;
}

/* A failure's message is one non-empty line (it is printed as one). */
static inline void config_fuzz_check_error(const struct error *err)
{
	if (err->text[0] == '\0' || strchr(err->text, '\n'))
		abort();
}

static inline void config_fuzz_check_kek(const struct kek *kek)
{
	if (kek->method != KEK_METHOD_NONE && kek->method != KEK_METHOD_AES256_GCM)
		abort();
	const struct bytes *values[] = {&kek->key, &kek->init_vector, &kek->auth_data};
	for (size_t i = 0; i < 3; i++)
		if (values[i]->present != (values[i]->data != NULL))
			abort();
}

/* A loaded remote source honours remote_source_validate's promises. */
static inline void config_fuzz_check_remote(const struct remote_source_config *r)
{
	if (!r->address || r->connections < 1 || r->connections > 64 ||
	    (r->psk_identity != NULL) != r->psk_secret.present)
		abort();
	if (r->psk_identity &&
	    (r->psk_identity[0] == '\0' || r->psk_secret.len < 16 || !r->psk_secret.data))
		abort();
}

/* A loaded archive source: the store's required fields, bounded tuning,
 * credentials unwrapped into C strings. */
static inline void config_fuzz_check_archive(const struct archive_source_config *a)
{
	if (a->store == ARCHIVE_STORE_FILESYSTEM) {
		if (!a->path)
			abort();
	} else if (a->store == ARCHIVE_STORE_S3) {
		if (!a->bucket || a->connections < 1 || a->connections > 256 ||
		    a->max_attempts < 1 || a->max_attempts > 10 ||
		    (a->prefix && !s3_prefix_is_safe(a->prefix)) ||
		    (unsigned)a->addressing > S3_ADDRESSING_VIRTUAL)
			abort();
	} else {
		abort();
	}
	if (a->has_credentials && (!a->access_key_id || !a->secret_access_key))
		abort();
	if (!a->has_credentials && (a->access_key_id || a->secret_access_key || a->session_token))
		abort();
	config_fuzz_check_kek(&a->archive_kek);
}

#endif
