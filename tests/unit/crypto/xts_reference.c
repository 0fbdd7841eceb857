/* See xts_reference.h. Deliberately the plainest use of OpenSSL: a fresh
 * context per sector, the 64-byte key assembled as key1 || key2. */
#include "xts_reference.h"

#include <string.h>

#include <openssl/evp.h>

int ref_xts(const uint8_t key1[32], const uint8_t key2[32], bool encrypt,
	    enum ref_tweak_layout layout, uint64_t first, const uint8_t *in, uint8_t *out,
	    size_t nsectors)
{
	uint8_t key[64];
	memcpy(key, key1, 32);
	memcpy(key + 32, key2, 32);
	int rc = 0;
	for (size_t s = 0; s < nsectors && rc == 0; s++) {
		uint64_t sector = first + s;
		uint8_t iv[16] = {0};
		unsigned base = layout == REF_TWEAK_UBIBLK ? 8 : 0;
		for (unsigned i = 0; i < 8; i++)
			iv[base + i] = (uint8_t)(sector >> (8 * i));
		EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
		int len = 0, fin = 0;
		if (!ctx ||
		    EVP_CipherInit_ex(ctx, EVP_aes_256_xts(), NULL, key, iv, encrypt) != 1 ||
		    EVP_CipherUpdate(ctx, out + s * 512, &len, in + s * 512, 512) != 1 ||
		    EVP_CipherFinal_ex(ctx, out + s * 512 + len, &fin) != 1 || len + fin != 512)
			rc = -1;
		EVP_CIPHER_CTX_free(ctx);
	}
	return rc;
}
