/* AES-256-XTS at rest, in ubiblk's on-disk format (docs/encryption.md):
 * every 512-byte sector is its own XTS data unit; the 64-byte XTS key is
 * key1 (data) || key2 (tweak); the initial tweak is 8 zero bytes followed by
 * the sector number as u64 little-endian (bytes 8..15).
 *
 * Engines (docs/encryption.md): the cipher runs on one of several
 * implementations, chosen once per process by what the CPU offers, fastest
 * first: "vaes-avx512" (ours, x86-64 with VAES+VPCLMULQDQ+AVX-512),
 * "gcrypt" (libgcrypt's XTS) and "openssl" (OpenSSL's AES, runs
 * everywhere). All give the same bytes. UBIBLK_XTS_ENGINE=<name> forces
 * one; if this machine cannot run it, xts_cipher_new fails and says why.
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

#define XTS_KEY_BYTES  32u
#define XTS_ENGINE_ENV "UBIBLK_XTS_ENGINE"

struct xts_cipher;

/* The engine every xts_cipher_new of this process uses, chosen (and logged
 * at debug level) on the first call of either; "none" when
 * UBIBLK_XTS_ENGINE names one this machine cannot run. Thread-safe. */
const char *xts_engine_chosen(void);
/* When xts_engine_chosen() is "none": why (one line), else NULL. */
const char *xts_engine_problem(void);

/* Fails with -EINVAL (message in err) when the two halves are equal: OpenSSL
 * refuses them and they weaken XTS; or when UBIBLK_XTS_ENGINE cannot be
 * honoured. The keys are copied into the engine's locked memory (OpenSSL
 * keeps its schedule in its own heap); wipe yours. A cipher is used by one
 * thread at a time. */
int xts_cipher_new(const uint8_t key1[XTS_KEY_BYTES], const uint8_t key2[XTS_KEY_BYTES],
		   struct xts_cipher **out, struct error *err);
/* Wipes every copy of the keys the cipher made. NULL is fine. */
void xts_cipher_free(struct xts_cipher *c);
/* nsectors sectors starting at absolute sector `first`; in may equal out
 * (in place), any alignment. 0 or -EIO. */
int xts_encrypt(struct xts_cipher *c, uint64_t first, const uint8_t *in, uint8_t *out,
		size_t nsectors);
int xts_decrypt(struct xts_cipher *c, uint64_t first, const uint8_t *in, uint8_t *out,
		size_t nsectors);
/* xts_encrypt for output that a device or another thread reads next, in
 * many calls: out of place it may leave streaming (weakly ordered) stores
 * pending, so xts_fence() must run once after the last call and before any
 * of the output is handed over. Saves a fence per call (the crypt layer
 * encrypts a write page by page). */
int xts_encrypt_unfenced(struct xts_cipher *c, uint64_t first, const uint8_t *in, uint8_t *out,
			 size_t nsectors);
void xts_fence(void);

/* A device that stores `lower`'s sectors encrypted. `lower` is borrowed and
 * must outlive it; free with bdev_close() (which wipes the keys). */
int crypt_bdev_open(struct bdev *lower, const uint8_t key1[XTS_KEY_BYTES],
		    const uint8_t key2[XTS_KEY_BYTES], struct bdev **out, struct error *err);

#endif
