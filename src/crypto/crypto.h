/* AES-256-XTS at rest, in ubiblk's on-disk format (docs/encryption.md):
 * every 512-byte sector is its own XTS data unit; the 64-byte XTS key is
 * key1 (data) || key2 (tweak); the initial tweak is 8 zero bytes followed by
 * the sector number as u64 little-endian (bytes 8..15). Implemented over
 * OpenSSL's EVP interface.
 *
 * Two layers of API: an xts_cipher encrypts/decrypts runs of sectors (one per
 * thread: EVP contexts are not shared), and crypt_bdev_open stacks a
 * struct bdev that encrypts writes into its own bounce buffers (never into
 * the caller's memory) and decrypts reads in place on completion. */
#ifndef UBIBLK_CRYPTO_H
#define UBIBLK_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "bdev/bdev.h"
#include "common/common.h"

#define XTS_KEY_BYTES 32u

struct xts_cipher;

/* Fails with -EINVAL (message in err) when the two halves are equal: OpenSSL
 * refuses them and they weaken XTS. The keys are copied; wipe yours. */
int xts_cipher_new(const uint8_t key1[XTS_KEY_BYTES], const uint8_t key2[XTS_KEY_BYTES],
		   struct xts_cipher **out, struct error *err);
/* Wipes the key schedule. */
void xts_cipher_free(struct xts_cipher *c);
/* nsectors sectors starting at absolute sector `first`; in may equal out. */
int xts_encrypt(struct xts_cipher *c, uint64_t first, const uint8_t *in, uint8_t *out,
		size_t nsectors);
int xts_decrypt(struct xts_cipher *c, uint64_t first, const uint8_t *in, uint8_t *out,
		size_t nsectors);

/* A device that stores `lower`'s sectors encrypted. `lower` is borrowed and
 * must outlive it; free with bdev_close() (which wipes the keys). */
int crypt_bdev_open(struct bdev *lower, const uint8_t key1[XTS_KEY_BYTES],
		    const uint8_t key2[XTS_KEY_BYTES], struct bdev **out, struct error *err);

#endif
