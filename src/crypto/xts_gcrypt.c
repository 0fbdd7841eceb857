/* The "gcrypt" XTS engine: libgcrypt's XTS mode, one call per 512-byte
 * sector (each its own data unit with its own tweak, as the disk format
 * needs). libgcrypt 1.10 has bulk XTS with VAES/AVX2 and AES-NI, which
 * OpenSSL 3.0 does not use for XTS: on CPUs with VAES but no AVX-512 this is
 * the fastest engine we have.
 *
 * The handle is opened with GCRY_CIPHER_SECURE: libgcrypt keeps the key
 * schedule in its locked secure memory and wipes it on close. */
#include "crypto/xts_engine.h"

#include "common/common.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <gcrypt.h>

/* Enough secure memory for the handles of many channels; libgcrypt grows
 * the pool (unlocked) past it rather than fail. */
#define SECURE_POOL_BYTES (256u * 1024u)

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static bool library_ready;

/* libgcrypt must be initialised once per process before any other call. A
 * library that shares the process (none today) may have done it already. */
static void library_init(void)
{
	if (gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P)) {
		library_ready = true;
		return;
	}
	if (!gcry_check_version(GCRYPT_VERSION))
		return;
	gcry_control(GCRYCTL_DISABLE_SECMEM_WARN);
	gcry_control(GCRYCTL_AUTO_EXPAND_SECMEM, SECURE_POOL_BYTES);
	gcry_control(GCRYCTL_INIT_SECMEM, SECURE_POOL_BYTES, 0);
	gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
	library_ready = true;
}

static const char *gcrypt_unsupported(void)
{
	pthread_once(&library_once, library_init);
	return library_ready ? NULL : "libgcrypt is older than the one this was built with";
}

static int gcrypt_open(const uint8_t key1[XTS_KEY_BYTES], const uint8_t key2[XTS_KEY_BYTES],
		       void **state)
{
	if (gcrypt_unsupported())
		return -EIO;
	gcry_cipher_hd_t hd;
	if (gcry_cipher_open(&hd, GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_XTS, GCRY_CIPHER_SECURE))
		return -ENOMEM;
	/* libgcrypt takes the XTS key as one buffer, key1 || key2: built in
	 * locked memory and wiped at once. */
	uint8_t *both = secret_alloc(2 * XTS_KEY_BYTES);
	if (!both) {
		gcry_cipher_close(hd);
		return -ENOMEM;
	}
	memcpy(both, key1, XTS_KEY_BYTES);
	memcpy(both + XTS_KEY_BYTES, key2, XTS_KEY_BYTES);
	gcry_error_t e = gcry_cipher_setkey(hd, both, 2 * XTS_KEY_BYTES);
	secret_free(both, 2 * XTS_KEY_BYTES);
	if (e) {
		gcry_cipher_close(hd);
		return -EIO;
	}
	*state = hd;
	return 0;
}

static void gcrypt_close(void *state)
{
	if (state)
		gcry_cipher_close(state); /* wipes the schedule */
}

static int gcrypt_crypt_unit(void *state, bool encrypt, const uint8_t tweak[XTS_TWEAK_BYTES],
			     const uint8_t *in, uint8_t *out)
{
	gcry_cipher_hd_t hd = state;
	if (gcry_cipher_setiv(hd, tweak, XTS_TWEAK_BYTES))
		return -EIO;
	/* libgcrypt's in-place form takes NULL input. */
	gcry_error_t e = encrypt
			     ? gcry_cipher_encrypt(hd, out, XTS_UNIT_BYTES, in == out ? NULL : in,
						   in == out ? 0 : XTS_UNIT_BYTES)
			     : gcry_cipher_decrypt(hd, out, XTS_UNIT_BYTES, in == out ? NULL : in,
						   in == out ? 0 : XTS_UNIT_BYTES);
	return e ? -EIO : 0;
}

static int gcrypt_crypt_sectors(void *state, bool encrypt, uint64_t first, const uint8_t *in,
				uint8_t *out, size_t nsectors)
{
	uint8_t tweak[XTS_TWEAK_BYTES] = {0};
	for (size_t s = 0; s < nsectors; s++) {
		uint64_t le = htole64(first + s);
		memcpy(tweak + 8, &le, sizeof(le));
		int rc = gcrypt_crypt_unit(state, encrypt, tweak, in + s * XTS_UNIT_BYTES,
					   out + s * XTS_UNIT_BYTES);
		if (rc < 0)
			return rc;
	}
	return 0;
}

const struct xts_engine xts_engine_gcrypt = {
    .name = "gcrypt",
    .unsupported = gcrypt_unsupported,
    .open = gcrypt_open,
    .close = gcrypt_close,
    .crypt_sectors = gcrypt_crypt_sectors,
    .crypt_unit = gcrypt_crypt_unit,
};
