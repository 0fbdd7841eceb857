/* The archive format: a disk's stripes as content-addressed objects in a
 * flat store (a directory or an S3 prefix), see docs/archive.md.
 *
 *   metadata.json        format version, stripe size, compression and the
 *                        KEK-wrapped per-archive XTS keys
 *   stripe-hashes.json   stripe index -> SHA-256 of that stripe's object
 *   data/<sha256 hex>    one object per distinct stored payload
 *
 * An object is built from one stripe's plaintext in three steps: optional
 * snappy compression (u32 LE length || raw snappy block || zeros up to a
 * multiple of 512), optional AES-256-XTS over the whole body with sector
 * numbers starting at stripe * stripe_sector_count, then SHA-256 of the final
 * bytes names it. Reading undoes this in the opposite order, and checks the
 * hash before anything else touches the bytes.
 *
 * This layer only converts between bytes and values: no I/O, no threads, no
 * global state. Every function may be called from any thread; the structs
 * are owned by the caller and are not synchronised. A struct xts_cipher is
 * per thread (see crypto.h), so an archive_codec that carries one is too.
 * Errors: 0 or -errno, with one line in err (NULL allowed). */
#ifndef UBIBLK_ARCHIVE_H
#define UBIBLK_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "config/config.h"
#include "crypto/crypto.h"

#define ARCHIVE_FORMAT_VERSION	   1u
#define ARCHIVE_METADATA_NAME	   "metadata.json"
#define ARCHIVE_STRIPE_HASHES_NAME "stripe-hashes.json"
#define ARCHIVE_HASH_BYTES	   32u
#define ARCHIVE_HASH_HEX_LEN	   64u
/* "data/" + 64 hex digits + NUL */
#define ARCHIVE_OBJECT_NAME_SIZE (5u + ARCHIVE_HASH_HEX_LEN + 1u)
#define ARCHIVE_SECTOR_BYTES	 512u
/* A metadata.json is a few hundred bytes; a reader refuses one beyond this
 * rather than buffer whatever a store sends. */
#define ARCHIVE_METADATA_MAX_BYTES (64u * 1024u)

enum archive_compression { ARCHIVE_COMPRESSION_NONE = 0, ARCHIVE_COMPRESSION_SNAPPY };

/* ---- metadata.json ---- */

struct archive_metadata {
	uint32_t format_version;      /* always ARCHIVE_FORMAT_VERSION after a parse */
	uint64_t stripe_sector_count; /* sectors per stripe, not the shift */
	enum archive_compression compression;
	/* present: the archive is encrypted; the wrapped key1 (data) and key2
	 * (tweak), as stored (after base64 decoding, still KEK-wrapped) */
	struct bytes wrapped_key[2];
};

/* Parses and validates the text. Errors read "failed to parse archive
 * metadata: missing field `format_version`" or "unsupported archive format
 * version 99 (supported 1..=1)". Unknown keys are ignored; a missing
 * compression is none, a missing or null encryption_key is no encryption.
 * Free *out with archive_metadata_free, also after a failure. */
int archive_metadata_parse(const char *json, size_t len, struct archive_metadata *out,
			   struct error *err);
/* Compact JSON with the keys in the format's order, e.g.
 * {"format_version":1,"stripe_sector_count":2048,"encryption_key":null,"compression":"none"}
 * into a new NUL-terminated string (free()). */
int archive_metadata_write(const struct archive_metadata *m, char **out, struct error *err);
void archive_metadata_free(struct archive_metadata *m);

/* Wraps key1 and key2 separately with kek (fixed-nonce form; method none
 * stores them in clear) into m->wrapped_key, replacing what was there. */
int archive_keys_wrap(const struct kek *kek, const uint8_t key1[XTS_KEY_BYTES],
		      const uint8_t key2[XTS_KEY_BYTES], struct archive_metadata *m,
		      struct error *err);
/* The inverse; each must unwrap to exactly 32 bytes. -ENOENT when m is not
 * encrypted. Wipe the keys after use. */
int archive_keys_unwrap(const struct kek *kek, const struct archive_metadata *m,
			uint8_t key1[XTS_KEY_BYTES], uint8_t key2[XTS_KEY_BYTES],
			struct error *err);

/* ---- stripe-hashes.json ---- */

struct archive_stripe_hash {
	uint64_t stripe;
	uint8_t hash[ARCHIVE_HASH_BYTES];
};

/* Stripe index -> object hash. Zero-initialise; free with
 * archive_stripe_map_free. Lookups need a sorted map: parse leaves it sorted,
 * after puts call archive_stripe_map_sort. */
struct archive_stripe_map {
	struct archive_stripe_hash *entries;
	size_t count, capacity;
	bool sorted;
};

/* Every value must be 64 lowercase hex digits and every key a decimal stripe
 * index given once, so no text from the file ever becomes part of an object
 * name. Errors start "failed to parse stripe-hashes.json: ". */
int archive_stripe_map_parse(const char *json, size_t len, struct archive_stripe_map *out,
			     struct error *err);
/* Appends (any order); -ENOMEM. */
int archive_stripe_map_put(struct archive_stripe_map *m, uint64_t stripe,
			   const uint8_t hash[ARCHIVE_HASH_BYTES]);
/* Sorts by stripe; -EINVAL when a stripe appears twice. */
int archive_stripe_map_sort(struct archive_stripe_map *m, struct error *err);
/* NULL when the stripe is not archived (it reads as zeros). m sorted. */
const struct archive_stripe_hash *archive_stripe_map_find(const struct archive_stripe_map *m,
							  uint64_t stripe);
/* The sectors the archive covers: 0 when empty, else (last stripe + 1) *
 * stripe_sector_count; -ERANGE when that does not fit. m sorted. */
int archive_stripe_map_sector_count(const struct archive_stripe_map *m,
				    uint64_t stripe_sector_count, uint64_t *out, struct error *err);
/* Compact JSON object in ascending stripe order, e.g. {"0":"30e1…","5":"30e1…"},
 * into a new NUL-terminated string (free()). Sorts m first. */
int archive_stripe_map_write(struct archive_stripe_map *m, char **out, struct error *err);
void archive_stripe_map_free(struct archive_stripe_map *m);

/* ---- hashes and object names ---- */

void archive_sha256(const uint8_t *data, size_t len, uint8_t hash[ARCHIVE_HASH_BYTES]);
/* 64 lowercase hex digits and a NUL. */
void archive_hash_hex(const uint8_t hash[ARCHIVE_HASH_BYTES], char hex[ARCHIVE_HASH_HEX_LEN + 1]);
/* Exactly 64 lowercase hex digits (then NUL or len end) into hash. */
bool archive_hash_parse(const char *hex, size_t len, uint8_t hash[ARCHIVE_HASH_BYTES]);
/* "data/<hex>" */
void archive_object_name(const uint8_t hash[ARCHIVE_HASH_BYTES],
			 char name[ARCHIVE_OBJECT_NAME_SIZE]);

/* ---- snappy body framing ---- */

/* The largest framed body for len plaintext bytes: what out must hold. */
size_t archive_snappy_frame_bound(size_t len);
/* u32 LE compressed length || raw snappy block || zeros to a multiple of
 * 512. len must be a multiple of 512 (-EINVAL otherwise). */
int archive_snappy_frame(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *out_len,
			 struct error *err);
/* The plaintext length the framed body declares (it is checked against
 * the data); the framing errors of archive_snappy_unframe. */
int archive_snappy_unframed_length(const uint8_t *body, size_t len, size_t *plain_len,
				   struct error *err);
/* Decodes into out (cap bytes, at least the unframed length). Trailing
 * padding is ignored. Errors: "Data too short to contain size header",
 * "Compressed size 16 exceeds available data 4", "snappy: corrupt input". */
int archive_snappy_unframe(const uint8_t *body, size_t len, uint8_t *out, size_t cap,
			   size_t *out_len, struct error *err);

/* ---- objects ---- */

/* How one archive's objects are encoded: from its metadata, plus the XTS
 * cipher from the unwrapped keys when encrypted (borrowed, per thread). */
struct archive_codec {
	uint64_t stripe_sector_count;
	enum archive_compression compression;
	struct xts_cipher *xts; /* NULL: not encrypted */
};

/* What archive_object_encode's out must hold for len plaintext bytes. */
size_t archive_object_bound(const struct archive_codec *c, size_t len);
/* One stripe's plaintext (len a multiple of 512) -> the object's bytes in
 * out, and the hash that names it. */
int archive_object_encode(const struct archive_codec *c, uint64_t stripe, const uint8_t *plain,
			  size_t len, uint8_t *out, size_t cap, size_t *out_len,
			  uint8_t hash[ARCHIVE_HASH_BYTES], struct error *err);
/* The inverse into one stripe buffer: checks the object's SHA-256 against
 * hash ("sha256 hash mismatch for stripe 3"), decrypts obj IN PLACE (so obj
 * is clobbered), decompresses, copies into buf and zero-fills its tail.
 * -EIO with the format's text for a bad object; nothing but zeros or the
 * decoded stripe ever reaches buf on success, and on failure buf holds no
 * meaning. */
int archive_object_decode(const struct archive_codec *c, uint64_t stripe,
			  const uint8_t hash[ARCHIVE_HASH_BYTES], uint8_t *obj, size_t obj_len,
			  uint8_t *buf, size_t buf_len, struct error *err);

#endif
