/* An independent AES-256-XTS for the tests, written apart from src/crypto
 * and sharing no code with it: OpenSSL's EVP_aes_256_xts, one data unit per
 * call, the tweak laid out as ubiblk's disk format has it (8 zero bytes,
 * then the sector number as u64 little-endian).
 * The crypt layer's output is checked against this byte for byte. */
#ifndef UBIBLK_TEST_XTS_REFERENCE_H
#define UBIBLK_TEST_XTS_REFERENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ref_tweak_layout {
	REF_TWEAK_UBIBLK,  /* 8 zero bytes, then the sector as LE64 */
	REF_TWEAK_PLAIN64, /* dm-crypt plain64: LE64 sector, then 8 zero bytes */
};

/* nsectors 512-byte sectors numbered from `first`; 0 or -1. */
int ref_xts(const uint8_t key1[32], const uint8_t key2[32], bool encrypt,
	    enum ref_tweak_layout layout, uint64_t first, const uint8_t *in, uint8_t *out,
	    size_t nsectors);

#endif
