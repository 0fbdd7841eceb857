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

#endif
