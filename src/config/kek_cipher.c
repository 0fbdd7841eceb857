/* Wrapping and unwrapping secrets with a KEK: AES-256-GCM through OpenSSL EVP,
 * with the KEK's auth_data as AAD. Two stored forms: ct||tag under the KEK's
 * fixed init_vector (the form every existing config uses) and
 * nonce||ct||tag with a fresh 12-byte nonce per secret, tried when the KEK
 * has no init_vector or the first form does not authenticate (GCM's tag
 * makes that second try safe). */
#include "config/config.h"

#include "common/common.h"
#include "config_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define GCM_KEY_LEN   32
#define GCM_NONCE_LEN 12
#define GCM_TAG_LEN   16
/* Secrets are short; the cap keeps every length inside OpenSSL's int. */
#define SECRET_MAX (1u << 20)

static int copy_bytes(const uint8_t *in, size_t len, struct bytes *out)
{
	out->data = malloc(len ? len : 1);
	if (!out->data)
		return -ENOMEM;
	if (len)
		memcpy(out->data, in, len);
	out->len = len;
	out->present = true;
	return 0;
}

/* 0 when the tag verifies; -EBADMSG otherwise. plain gets ct_len bytes. */
static int gcm_decrypt(const uint8_t *key, const uint8_t *nonce, const struct bytes *aad,
		       const uint8_t *ct, size_t ct_len, const uint8_t *tag, uint8_t *plain)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int outl, ok;

	if (!ctx)
		return -ENOMEM;
	ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, GCM_NONCE_LEN, NULL) == 1 &&
	     EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce) == 1;
	if (ok && aad->len)
		ok = EVP_DecryptUpdate(ctx, NULL, &outl, aad->data, (int)aad->len) == 1;
	if (ok && ct_len)
		ok = EVP_DecryptUpdate(ctx, plain, &outl, ct, (int)ct_len) == 1;
	if (ok)
		ok =
		    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, GCM_TAG_LEN, (void *)tag) == 1 &&
		    EVP_DecryptFinal_ex(ctx, plain + ct_len, &outl) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return ok ? 0 : -EBADMSG;
}

static int gcm_encrypt(const uint8_t *key, const uint8_t *nonce, const struct bytes *aad,
		       const uint8_t *plain, size_t len, uint8_t *ct, uint8_t *tag)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int outl, ok;

	if (!ctx)
		return -ENOMEM;
	ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, GCM_NONCE_LEN, NULL) == 1 &&
	     EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) == 1;
	if (ok && aad->len)
		ok = EVP_EncryptUpdate(ctx, NULL, &outl, aad->data, (int)aad->len) == 1;
	if (ok && len)
		ok = EVP_EncryptUpdate(ctx, ct, &outl, plain, (int)len) == 1;
	if (ok)
		ok = EVP_EncryptFinal_ex(ctx, ct + len, &outl) == 1 &&
		     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG_LEN, tag) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return ok ? 0 : -EIO;
}

/* The KEK's values, checked in a fixed order with the format's messages, so
 * a KEK with several problems always reports the same one. Without an
 * init_vector the fresh-nonce form nonce||ct||tag is still possible if the
 * secret is long enough. */
static int check_gcm_kek(const struct kek *kek, bool nonce_form_possible, struct error *err)
{
	if (!kek->key.present)
		return error_set(err, -EINVAL, "Key is required");
	if (!kek->init_vector.present && !nonce_form_possible)
		return error_set(err, -EINVAL, "Initialization vector is required");
	if (!kek->auth_data.present)
		return error_set(err, -EINVAL, "Authentication data is required");
	if (kek->key.len != GCM_KEY_LEN)
		return error_set(err, -EINVAL, "Failed to initialize cipher: Invalid Length");
	if (kek->init_vector.present && kek->init_vector.len != GCM_NONCE_LEN)
		return error_set(err, -EINVAL, "Initialization vector must be exactly 12 bytes");
	return 0;
}

static int try_decrypt(const struct kek *kek, const uint8_t *nonce, const uint8_t *ct,
		       size_t ct_len, struct bytes *out)
{
	int ret;

	out->data = malloc(ct_len ? ct_len : 1);
	if (!out->data)
		return -ENOMEM;
	out->len = ct_len;
	ret =
	    gcm_decrypt(kek->key.data, nonce, &kek->auth_data, ct, ct_len, ct + ct_len, out->data);
	if (ret) {
		bytes_free(out);
		return ret;
	}
	out->present = true;
	return 0;
}

int kek_unwrap(const struct kek *kek, const uint8_t *in, size_t len, struct bytes *out,
	       struct error *err)
{
	bool nonce_form_possible = len >= GCM_NONCE_LEN + GCM_TAG_LEN;
	int ret = -EBADMSG;

	memset(out, 0, sizeof(*out));
	if (!kek || kek->method == KEK_METHOD_NONE)
		return copy_bytes(in, len, out);
	ret = check_gcm_kek(kek, nonce_form_possible, err);
	if (ret)
		return ret;
	if (len > SECRET_MAX)
		return error_set(err, -EINVAL, "Failed to decrypt data: aead::Error");

	ret = -EBADMSG;
	if (kek->init_vector.present && len >= GCM_TAG_LEN)
		ret = try_decrypt(kek, kek->init_vector.data, in, len - GCM_TAG_LEN, out);
	/* GCM authenticates, so trying the second form cannot accept garbage. */
	if (ret == -EBADMSG && nonce_form_possible)
		ret = try_decrypt(kek, in, in + GCM_NONCE_LEN, len - GCM_NONCE_LEN - GCM_TAG_LEN,
				  out);
	if (ret == -EBADMSG)
		return error_set(err, -EINVAL, "Failed to decrypt data: aead::Error");
	return ret;
}

int kek_wrap(const struct kek *kek, const uint8_t *in, size_t len, struct bytes *out,
	     struct error *err)
{
	int ret;

	memset(out, 0, sizeof(*out));
	if (!kek || kek->method == KEK_METHOD_NONE)
		return copy_bytes(in, len, out);
	ret = check_gcm_kek(kek, false, err);
	if (ret)
		return ret;
	if (len > SECRET_MAX)
		return error_set(err, -EINVAL, "Secret is too long to wrap (%zu bytes)", len);
	out->data = malloc(len + GCM_TAG_LEN);
	if (!out->data)
		return -ENOMEM;
	out->len = len + GCM_TAG_LEN;
	ret = gcm_encrypt(kek->key.data, kek->init_vector.data, &kek->auth_data, in, len, out->data,
			  out->data + len);
	if (ret) {
		bytes_free(out);
		return error_set(err, -EINVAL, "Failed to encrypt data");
	}
	out->present = true;
	return 0;
}
