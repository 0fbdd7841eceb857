/* Data objects: one stripe <-> snappy framing, XTS, SHA-256 name. */
#include "archive/archive.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <snappy-c.h>

#define FRAME_HEADER 4u

void archive_sha256(const uint8_t *data, size_t len, uint8_t hash[ARCHIVE_HASH_BYTES])
{
	unsigned int n = 0;
	/* Cannot fail for SHA-256 short of an allocation failure inside
	 * OpenSSL; a zero hash then never matches a real object. */
	if (!EVP_Digest(data, len, hash, &n, EVP_sha256(), NULL))
		memset(hash, 0, ARCHIVE_HASH_BYTES);
}

void archive_hash_hex(const uint8_t hash[ARCHIVE_HASH_BYTES], char hex[ARCHIVE_HASH_HEX_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	for (unsigned i = 0; i < ARCHIVE_HASH_BYTES; i++) {
		hex[2 * i] = digits[hash[i] >> 4];
		hex[2 * i + 1] = digits[hash[i] & 15];
	}
	hex[ARCHIVE_HASH_HEX_LEN] = '\0';
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool archive_hash_parse(const char *hex, size_t len, uint8_t hash[ARCHIVE_HASH_BYTES])
{
	if (len != ARCHIVE_HASH_HEX_LEN)
		return false;
	for (unsigned i = 0; i < ARCHIVE_HASH_BYTES; i++) {
		int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		hash[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

void archive_object_name(const uint8_t hash[ARCHIVE_HASH_BYTES],
			 char name[ARCHIVE_OBJECT_NAME_SIZE])
{
	memcpy(name, "data/", 5);
	archive_hash_hex(hash, name + 5);
}

static size_t round_up_sector(size_t n)
{
	return (n + ARCHIVE_SECTOR_BYTES - 1) / ARCHIVE_SECTOR_BYTES * ARCHIVE_SECTOR_BYTES;
}

size_t archive_snappy_frame_bound(size_t len)
{
	return round_up_sector(FRAME_HEADER + snappy_max_compressed_length(len));
}

int archive_snappy_frame(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *out_len,
			 struct error *err)
{
	if (len % ARCHIVE_SECTOR_BYTES || len > UINT32_MAX)
		return error_set(err, -EINVAL, "Data length must be a multiple of sector size");
	if (cap < archive_snappy_frame_bound(len))
		return error_set(err, -EINVAL, "snappy output buffer too small");
	size_t clen = cap - FRAME_HEADER;
	if (snappy_compress((const char *)in, len, (char *)out + FRAME_HEADER, &clen) !=
		SNAPPY_OK ||
	    clen > UINT32_MAX)
		return error_set(err, -EIO, "snappy compression failed");
	for (unsigned i = 0; i < FRAME_HEADER; i++)
		out[i] = (uint8_t)(clen >> (8 * i));
	size_t total = round_up_sector(FRAME_HEADER + clen);
	memset(out + FRAME_HEADER + clen, 0, total - FRAME_HEADER - clen);
	*out_len = total;
	return 0;
}

/* The raw block inside a framed body: the header's length, checked. */
static int frame_payload(const uint8_t *body, size_t len, size_t *clen, struct error *err)
{
	if (len < FRAME_HEADER)
		return error_set(err, -EIO, "Data too short to contain size header");
	size_t n =
	    (size_t)body[0] | (size_t)body[1] << 8 | (size_t)body[2] << 16 | (size_t)body[3] << 24;
	if (n > len - FRAME_HEADER)
		return error_set(err, -EIO, "Compressed size %zu exceeds available data %zu", n,
				 len - FRAME_HEADER);
	*clen = n;
	return 0;
}

/* The raw block's length and the plaintext length its varint declares. */
static int frame_block(const uint8_t *body, size_t len, size_t *clen, size_t *plain_len,
		       struct error *err)
{
	int rc = frame_payload(body, len, clen, err);
	if (rc < 0)
		return rc;
	if (snappy_uncompressed_length((const char *)body + FRAME_HEADER, *clen, plain_len) !=
	    SNAPPY_OK)
		return error_set(err, -EIO, "snappy: corrupt input (bad length header)");
	return 0;
}

int archive_snappy_unframed_length(const uint8_t *body, size_t len, size_t *plain_len,
				   struct error *err)
{
	size_t clen = 0;
	return frame_block(body, len, &clen, plain_len, err);
}

int archive_snappy_unframe(const uint8_t *body, size_t len, uint8_t *out, size_t cap,
			   size_t *out_len, struct error *err)
{
	size_t clen = 0, plain = 0;
	int rc = frame_block(body, len, &clen, &plain, err);
	if (rc < 0)
		return rc;
	if (plain > cap)
		return error_set(err, -EIO, "snappy: decompressed size %zu exceeds buffer size %zu",
				 plain, cap);
	size_t n = cap;
	if (snappy_uncompress((const char *)body + FRAME_HEADER, clen, (char *)out, &n) !=
	    SNAPPY_OK)
		return error_set(err, -EIO, "snappy: corrupt input");
	*out_len = n;
	return 0;
}

size_t archive_object_bound(const struct archive_codec *c, size_t len)
{
	return c->compression == ARCHIVE_COMPRESSION_SNAPPY ? archive_snappy_frame_bound(len) : len;
}

/* The first XTS sector number of a stripe's object. */
static int first_sector(const struct archive_codec *c, uint64_t stripe, uint64_t *out,
			struct error *err)
{
	if (c->stripe_sector_count && stripe > UINT64_MAX / c->stripe_sector_count)
		return error_set(err, -EINVAL, "Stripe %" PRIu64 " is beyond the sector range",
				 stripe);
	*out = stripe * c->stripe_sector_count;
	return 0;
}

int archive_object_encode(const struct archive_codec *c, uint64_t stripe, const uint8_t *plain,
			  size_t len, uint8_t *out, size_t cap, size_t *out_len,
			  uint8_t hash[ARCHIVE_HASH_BYTES], struct error *err)
{
	if (len % ARCHIVE_SECTOR_BYTES)
		return error_set(err, -EINVAL, "Data length must be a multiple of sector size");
	size_t n = len;
	if (c->compression == ARCHIVE_COMPRESSION_SNAPPY) {
		int rc = archive_snappy_frame(plain, len, out, cap, &n, err);
		if (rc < 0)
			return rc;
	} else {
		if (cap < len)
			return error_set(err, -EINVAL, "object buffer too small");
		memcpy(out, plain, len);
	}
	if (c->xts) {
		uint64_t first = 0;
		int rc = first_sector(c, stripe, &first, err);
		if (rc == 0 && xts_encrypt(c->xts, first, out, out, n / ARCHIVE_SECTOR_BYTES) < 0)
			rc = error_set(err, -EIO, "encrypting stripe %" PRIu64 " failed", stripe);
		if (rc < 0)
			return rc;
	}
	archive_sha256(out, n, hash);
	*out_len = n;
	return 0;
}

int archive_object_decode(const struct archive_codec *c, uint64_t stripe,
			  const uint8_t hash[ARCHIVE_HASH_BYTES], uint8_t *obj, size_t obj_len,
			  uint8_t *buf, size_t buf_len, struct error *err)
{
	uint8_t got[ARCHIVE_HASH_BYTES];
	archive_sha256(obj, obj_len, got);
	if (memcmp(got, hash, ARCHIVE_HASH_BYTES) != 0)
		return error_set(err, -EIO, "sha256 hash mismatch for stripe %" PRIu64, stripe);
	if (c->xts) {
		if (obj_len % ARCHIVE_SECTOR_BYTES)
			return error_set(err, -EIO,
					 "Stripe %" PRIu64
					 " data size %zu is not a multiple of sector size 512",
					 stripe, obj_len);
		uint64_t first = 0;
		int rc = first_sector(c, stripe, &first, err);
		if (rc == 0 &&
		    xts_decrypt(c->xts, first, obj, obj, obj_len / ARCHIVE_SECTOR_BYTES) < 0)
			rc = error_set(err, -EIO, "decrypting stripe %" PRIu64 " failed", stripe);
		if (rc < 0)
			return rc;
	}
	size_t n;
	if (c->compression == ARCHIVE_COMPRESSION_SNAPPY) {
		int rc = archive_snappy_unframed_length(obj, obj_len, &n, err);
		if (rc == 0 && n > buf_len)
			rc = error_set(err, -EIO,
				       "Stripe %" PRIu64 " data size %zu exceeds buffer size %zu",
				       stripe, n, buf_len);
		if (rc == 0)
			rc = archive_snappy_unframe(obj, obj_len, buf, buf_len, &n, err);
		if (rc < 0)
			return rc;
	} else {
		n = obj_len;
		if (n > buf_len)
			return error_set(err, -EIO,
					 "Stripe %" PRIu64 " data size %zu exceeds buffer size %zu",
					 stripe, n, buf_len);
		memcpy(buf, obj, n);
	}
	memset(buf + n, 0, buf_len - n);
	return 0;
}
