/* Unwrapping every secret of a parsed config with the command-line KEK, in
 * one fixed order: encryption_key[0], [1], then the source's psk_secret, or
 * archive_kek.key, .init_vector, .auth_data, credentials.access_key_id,
 * .secret_access_key, .session_token. A config with several bad secrets thus always names
 * the same one first. */
#include "config_internal.h"

#include "common/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XTS_KEY_LEN 32

/* Replaces a wrapped secret by its plaintext. */
static int unwrap_in_place(const struct kek *kek, struct bytes *secret, const char *prefix,
			   const char *field, struct error *err)
{
	struct bytes plain;
	int ret;

	if (!secret->present)
		return 0;
	ret = kek_unwrap(kek, secret->data, secret->len, &plain, err);
	if (ret) {
		error_prefix(err, "%s%s: ", prefix, field);
		return ret;
	}
	bytes_free(secret);
	*secret = plain;
	return 0;
}

/* Offset of the first byte that does not start a valid UTF-8 sequence
 * (overlong forms, surrogates and values above U+10FFFF are invalid), or
 * len when all is valid. */
static size_t utf8_invalid_offset(const uint8_t *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = s[i];
		size_t need;	  /* continuation bytes */
		uint32_t cp, min; /* code point, smallest one that needs this length */

		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			need = 1;
			cp = c & 0x1f;
			min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			need = 2;
			cp = c & 0x0f;
			min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			need = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return i;
		}
		if (len - i <= need)
			return i;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += need + 1;
	}
	return len;
}

static int unwrap_credential(const struct kek *kek, struct bytes *wrapped, const char *prefix,
			     const char *field, char **out, struct error *err)
{
	int ret = unwrap_in_place(kek, wrapped, prefix, field, err);
	size_t bad;

	if (ret)
		return ret;
	bad = utf8_invalid_offset(wrapped->data, wrapped->len);
	if (bad != wrapped->len)
		return error_set(err, -EINVAL,
				 "%s%s: Decrypted AWS credential is not valid UTF-8: invalid "
				 "utf-8 sequence from index %zu",
				 prefix, field, bad);
	/* U+0000 is valid UTF-8 but would cut the C string short. */
	if (memchr(wrapped->data, '\0', wrapped->len))
		return error_set(err, -EINVAL, "%s%s: Decrypted AWS credential contains a NUL byte",
				 prefix, field);
	*out = strndup((const char *)wrapped->data, wrapped->len);
	return *out ? 0 : -ENOMEM;
}

int remote_source_unwrap(struct remote_source_config *remote, const struct kek *kek,
			 const char *prefix, struct error *err)
{
	return unwrap_in_place(kek, &remote->psk_secret, prefix, "psk_secret", err);
}

int archive_source_unwrap(struct archive_source_config *archive, struct wrapped_credentials *creds,
			  const struct kek *kek, const char *prefix, struct error *err)
{
	struct kek *inner = &archive->archive_kek;
	int ret = unwrap_in_place(kek, &inner->key, prefix, "archive_kek.key", err);

	if (!ret)
		ret = unwrap_in_place(kek, &inner->init_vector, prefix, "archive_kek.init_vector",
				      err);
	if (!ret)
		ret = unwrap_in_place(kek, &inner->auth_data, prefix, "archive_kek.auth_data", err);
	if (!ret && archive->has_credentials)
		ret = unwrap_credential(kek, &creds->access_key_id, prefix,
					"credentials.access_key_id", &archive->access_key_id, err);
	if (!ret && archive->has_credentials)
		ret = unwrap_credential(kek, &creds->secret_access_key, prefix,
					"credentials.secret_access_key",
					&archive->secret_access_key, err);
	if (!ret && archive->has_credentials && creds->session_token.present)
		ret = unwrap_credential(kek, &creds->session_token, prefix,
					"credentials.session_token", &archive->session_token, err);
	return ret;
}

int device_config_unwrap(struct device_config *cfg, struct bytes wrapped_keys[2],
			 struct wrapped_credentials *creds, const struct kek *kek,
			 struct error *err)
{
	int ret;

	for (int i = 0; i < 2 && wrapped_keys[0].present; i++) {
		char field[32];

		snprintf(field, sizeof(field), "encryption_key[%d]", i);
		ret = unwrap_in_place(kek, &wrapped_keys[i], "", field, err);
		if (ret)
			return ret;
		if (wrapped_keys[i].len != XTS_KEY_LEN)
			return error_set(err, -EINVAL, "%s: Key length must be exactly 32 bytes",
					 field);
		memcpy(cfg->encryption_key[i], wrapped_keys[i].data, XTS_KEY_LEN);
	}
	cfg->has_encryption_key = wrapped_keys[0].present;

	if (cfg->source.kind == STRIPE_SOURCE_REMOTE)
		return remote_source_unwrap(&cfg->source.remote, kek, "stripe_source.", err);
	if (cfg->source.kind == STRIPE_SOURCE_ARCHIVE)
		return archive_source_unwrap(&cfg->source.archive, creds, kek, "stripe_source.",
					     err);
	return 0;
}
