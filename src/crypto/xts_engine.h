/* The XTS engines behind xts_cipher (crypto.h), and what each must do.
 *
 * An engine implements AES-256-XTS on 512-byte data units (IEEE 1619; the
 * initial tweak given or built as ubiblk's sector tweak, see crypto.h) in
 * its own state: one state per xts_cipher, used by one thread at a time.
 *
 * Contract, for every engine:
 * - open() copies the keys into memory it owns (secret_alloc() where it
 *   can; where a library keeps the schedule, that library's secure memory)
 *   and touches no other copy; close() wipes every copy it made.
 * - crypt_sectors() and crypt_unit() accept in == out (in place) and any
 *   alignment. Out-of-place output may use streaming stores: crypt_unit()
 *   fences them before it returns, crypt_sectors() leaves that to its
 *   caller (xts_cipher.c: xts_encrypt/xts_decrypt fence at once,
 *   xts_encrypt_unfenced leaves it to xts_fence()). 0 or -EIO (a library
 *   call failed).
 * - The result is byte for byte that of OpenSSL's EVP_aes_256_xts: the
 *   tests run every engine the machine supports against it and the IEEE
 *   1619 vectors (tests/unit/crypto).
 *
 * xts_cipher.c picks one at start-up (xts_engine_choose) and every cipher
 * of the process uses it. */
#ifndef UBIBLK_CRYPTO_XTS_ENGINE_H
#define UBIBLK_CRYPTO_XTS_ENGINE_H

#include "crypto/xts_internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xts_engine {
	const char *name; /* what UBIBLK_XTS_ENGINE and --version say */
	/* NULL when this machine can run it; else why not (static text). */
	const char *(*unsupported)(void);
	/* 0, -ENOMEM or -EIO; *state is then the engine's. */
	int (*open)(const uint8_t key1[XTS_KEY_BYTES], const uint8_t key2[XTS_KEY_BYTES],
		    void **state);
	void (*close)(void *state);
	/* nsectors units from sector `first` (ubiblk's tweak layout). */
	int (*crypt_sectors)(void *state, bool encrypt, uint64_t first, const uint8_t *in,
			     uint8_t *out, size_t nsectors);
	/* One unit with the initial tweak as given (IEEE 1619's vectors). */
	int (*crypt_unit)(void *state, bool encrypt, const uint8_t tweak[XTS_TWEAK_BYTES],
			  const uint8_t *in, uint8_t *out);
};

/* The portable reference: OpenSSL's AES-256-ECB (xts_openssl.c). */
extern const struct xts_engine xts_engine_openssl;
/* libgcrypt's XTS mode, one call per sector (xts_gcrypt.c). */
extern const struct xts_engine xts_engine_gcrypt;
/* Our own VAES/VPCLMULQDQ/AVX-512 code, many blocks per instruction
 * (xts_vaes.c; x86-64 builds only). */
extern const struct xts_engine xts_engine_vaes;

#endif
