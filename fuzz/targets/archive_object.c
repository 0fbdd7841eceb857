/*
 * A data object as a store returns it, through archive_object_decode (what
 * the archive source runs on every GET): the SHA-256 check, XTS decryption
 * with the golden test keys (tests/data/archive/README.md), the snappy body
 * framing (u32 LE length, raw block, padding to 512) and every length check.
 *
 * Input: 9 bytes of settings, then the object.
 *   byte 0   bit 0 snappy, bit 1 encrypted, bit 2 give a wrong hash,
 *            bits 3-4 stripe size: 16 (the golden archives'), 1, 8, 64 sectors
 *   1..8     stripe index, u64 LE (large ones reach the sector-number limit)
 * The hash passed is the object's own (a store cannot forge SHA-256, and
 * everything after the check is what needs fuzzing), or one bit off.
 *
 * Properties: a wrong hash fails before the object or the buffer is
 * touched; the text of any failure is one NUL-terminated line; a success
 * leaves the plaintext followed by zeros in the stripe buffer, and that
 * plaintext encodes back to an object that decodes to the same buffer
 * (uncompressed: to the very same bytes).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "archive/archive.h"
#include "crypto/crypto.h"

#define SETTINGS 9u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_line(const struct error *err)
{
	size_t n = strnlen(err->text, sizeof(err->text));
	if (n == 0 || n == sizeof(err->text))
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)err->text[i] < 0x20)
			abort();
}

/* The decoded stripe in buf encodes to an object that decodes back to buf;
 * uncompressed, that object is the one decoded (XTS is a permutation of
 * each sector, and the same sector numbers are used). */
static void check_round_trip(const struct archive_codec *c, uint64_t stripe, const uint8_t *buf,
			     size_t buf_len, const uint8_t *obj, size_t obj_len)
{
	size_t cap = archive_object_bound(c, buf_len);
	uint8_t *enc = malloc(cap), *back = malloc(buf_len);
	uint8_t hash[ARCHIVE_HASH_BYTES];
	size_t enc_len = 0;
	if (!enc || !back)
		abort();
	size_t plain_len = c->compression == ARCHIVE_COMPRESSION_NONE ? obj_len : buf_len;
	if (plain_len % ARCHIVE_SECTOR_BYTES == 0) {
		if (archive_object_encode(c, stripe, buf, plain_len, enc, cap, &enc_len, hash,
					  NULL) != 0)
			abort();
		if (c->compression == ARCHIVE_COMPRESSION_NONE &&
		    (enc_len != obj_len || memcmp(enc, obj, obj_len) != 0))
			abort();
		if (archive_object_decode(c, stripe, hash, enc, enc_len, back, buf_len, NULL) !=
			0 ||
		    memcmp(back, buf, buf_len) != 0)
			abort();
	}
	free(enc);
	free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t stripe_sectors[] = {16, 1, 8, 64};
	if (size < SETTINGS)
		return 0;
	uint8_t flags = data[0];
	uint64_t stripe = 0;
	for (unsigned i = 0; i < 8; i++)
		stripe |= (uint64_t)data[1 + i] << (8 * i);
	const uint8_t *obj_in = data + SETTINGS;
	size_t obj_len = size - SETTINGS;

	struct archive_codec codec = {
	    .stripe_sector_count = stripe_sectors[(flags >> 3) & 3],
	    .compression = flags & 1 ? ARCHIVE_COMPRESSION_SNAPPY : ARCHIVE_COMPRESSION_NONE,
	};
	if (flags & 2) {
		uint8_t key1[XTS_KEY_BYTES], key2[XTS_KEY_BYTES];
		archive_sha256((const uint8_t *)"archive golden key1", 19, key1);
		archive_sha256((const uint8_t *)"archive golden key2", 19, key2);
		if (xts_cipher_new(key1, key2, &codec.xts, NULL) != 0)
			abort();
	}
	size_t buf_len = (size_t)codec.stripe_sector_count * ARCHIVE_SECTOR_BYTES;
	uint8_t *obj = malloc(obj_len ? obj_len : 1), *buf = malloc(buf_len);
	if (!obj || !buf)
		abort();
	memcpy(obj, obj_in, obj_len);
	memset(buf, 0xa5, buf_len);

	uint8_t hash[ARCHIVE_HASH_BYTES];
	archive_sha256(obj, obj_len, hash);
	if (flags & 4)
		hash[obj_len % ARCHIVE_HASH_BYTES] ^= 1;

	struct error err = {0};
	int rc = archive_object_decode(&codec, stripe, hash, obj, obj_len, buf, buf_len, &err);
	if (rc != 0) {
		check_line(&err);
		if (rc > 0)
			abort();
		/* The hash is checked before anything else touches the bytes. */
		if (flags & 4) {
			if (memcmp(obj, obj_in, obj_len) != 0 || buf[0] != 0xa5 ||
			    buf[buf_len - 1] != 0xa5 ||
			    strstr(err.text, "sha256 hash mismatch") == NULL)
				abort();
		}
	} else {
		if (flags & 4)
			abort();
		/* obj now holds the decrypted body: the plaintext it declares is
		 * in buf, zeros after it. */
		size_t plain = obj_len;
		if (codec.compression == ARCHIVE_COMPRESSION_SNAPPY &&
		    archive_snappy_unframed_length(obj, obj_len, &plain, NULL) != 0)
			abort();
		if (plain > buf_len)
			abort();
		if (codec.compression == ARCHIVE_COMPRESSION_NONE && memcmp(buf, obj, plain) != 0)
			abort();
		for (size_t i = plain; i < buf_len; i++)
			if (buf[i] != 0)
				abort();
		memcpy(obj, obj_in, obj_len);
		check_round_trip(&codec, stripe, buf, buf_len, obj, obj_len);
	}
	xts_cipher_free(codec.xts);
	free(obj);
	free(buf);
	return 0;
}
