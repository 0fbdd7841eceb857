/* What the crypt layer's files and the tests share below crypto.h: one XTS
 * data unit with an explicit 16-byte tweak. xts_encrypt/xts_decrypt build
 * ubiblk's tweak (sector number in bytes 8..15) and run the same code; the
 * tests feed IEEE 1619's layout (sequence number in bytes 0..7) through this
 * so the standard vectors exercise every line of the sector path. */
#ifndef UBIBLK_CRYPTO_XTS_INTERNAL_H
#define UBIBLK_CRYPTO_XTS_INTERNAL_H

#include "crypto/crypto.h"

#include <stdbool.h>
#include <stdint.h>

#define XTS_TWEAK_BYTES 16u
#define XTS_UNIT_BYTES	512u

/* One 512-byte data unit with the initial tweak as given (before it is
 * encrypted with key2). in may equal out. 0 or -EIO. */

int xts_crypt_unit(struct xts_cipher *c, bool encrypt, const uint8_t tweak[XTS_TWEAK_BYTES],
		   const uint8_t *in, uint8_t *out);

/* Every engine of this build, in order of preference, whatever the choice:
 * the tests and the cipher benchmark run each one. unsupported_at is NULL
 * when this machine runs it, else why not. */
size_t xts_engine_count(void);
const char *xts_engine_name_at(size_t index);
const char *xts_engine_unsupported_at(size_t index);
/* xts_cipher_new with a named engine, whatever was chosen; -ENOTSUP when
 * this machine cannot run it. */
int xts_cipher_new_engine(const char *engine, const uint8_t key1[XTS_KEY_BYTES],
			  const uint8_t key2[XTS_KEY_BYTES], struct xts_cipher **out,
			  struct error *err);
const char *xts_cipher_engine(const struct xts_cipher *c);

#endif
