/* metadata.json: parse, validate and write; the per-archive keys wrapped
 * with the archive KEK. */
#include "archive/archive.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define PARSE_ERR "failed to parse archive metadata: "

static int parse_key(json_t *v, int i, struct bytes *out, struct error *err)
{
	if (!json_is_string(v))
		return error_set(err, -EINVAL, PARSE_ERR "encryption_key[%d] is not a string", i);
	int rc = base64_decode(json_string_value(v), true, out, err);
	if (rc < 0)
		error_prefix(err, PARSE_ERR "encryption_key[%d]: ", i);
	return rc;
}

static int parse_encryption_key(json_t *v, struct archive_metadata *out, struct error *err)
{
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v) || json_array_size(v) != 2)
		return error_set(err, -EINVAL,
				 PARSE_ERR "encryption_key must be null or an array of 2 strings");
	for (int i = 0; i < 2; i++) {
		int rc = parse_key(json_array_get(v, (size_t)i), i, &out->wrapped_key[i], err);
		if (rc < 0)
			return rc;
		out->wrapped_key[i].present = true;
	}
	return 0;
}

static int parse_compression(json_t *v, struct archive_metadata *out, struct error *err)
{
	out->compression = ARCHIVE_COMPRESSION_NONE;
	if (!v)
		return 0;
	if (!json_is_string(v))
		return error_set(err, -EINVAL, PARSE_ERR "compression is not a string");
	const char *s = json_string_value(v);
	if (strcmp(s, "none") == 0)
		return 0;
	if (strcmp(s, "snappy") == 0) {
		out->compression = ARCHIVE_COMPRESSION_SNAPPY;
		return 0;
	}
	return error_set(err, -EINVAL,
			 PARSE_ERR "unknown variant `%s`, expected `none` or `snappy`", s);
}

/* A JSON integer in [0, max] (jansson's integers are signed 64-bit). */
static int parse_unsigned(json_t *root, const char *key, uint64_t max, uint64_t *out,
			  struct error *err)
{
	json_t *v = json_object_get(root, key);
	if (!v)
		return error_set(err, -EINVAL, PARSE_ERR "missing field `%s`", key);
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return error_set(err, -EINVAL, PARSE_ERR "`%s` is not an integer in 0..=%" PRIu64,
				 key, max);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int parse_root(json_t *root, struct archive_metadata *out, struct error *err)
{
	if (!json_is_object(root))
		return error_set(err, -EINVAL, PARSE_ERR "expected a JSON object");
	uint64_t version = 0, ssc = 0;
	int rc = parse_unsigned(root, "format_version", UINT32_MAX, &version, err);
	if (rc < 0)
		return rc;
	rc = parse_unsigned(root, "stripe_sector_count", INT64_MAX, &ssc, err);
	if (rc < 0)
		return rc;
	rc = parse_encryption_key(json_object_get(root, "encryption_key"), out, err);
	if (rc < 0)
		return rc;
	rc = parse_compression(json_object_get(root, "compression"), out, err);
	if (rc < 0)
		return rc;
	if (version != ARCHIVE_FORMAT_VERSION)
		return error_set(err, -EINVAL,
				 "unsupported archive format version %" PRIu64
				 " (supported %u..=%u)",
				 version, ARCHIVE_FORMAT_VERSION, ARCHIVE_FORMAT_VERSION);
	/* Zero would make every stripe start at sector 0 and size nothing. */
	if (ssc == 0)
		return error_set(err, -EINVAL, PARSE_ERR "stripe_sector_count must not be 0");
	out->format_version = (uint32_t)version;
	out->stripe_sector_count = ssc;
	return 0;
}

int archive_metadata_parse(const char *json, size_t len, struct archive_metadata *out,
			   struct error *err)
{
	memset(out, 0, sizeof(*out));
	json_error_t jerr;
	json_t *root = json_loadb(json, len, 0, &jerr);
	if (!root) {
		error_set(err, -EINVAL, PARSE_ERR "%s at line %d column %d", jerr.text, jerr.line,
			  jerr.column);
		return -EINVAL;
	}
	int rc = parse_root(root, out, err);
	json_decref(root);
	return rc;
}

int archive_metadata_write(const struct archive_metadata *m, char **out, struct error *err)
{
	*out = NULL;
	char *keys[2] = {NULL, NULL};
	int rc = 0;
	bool encrypted = m->wrapped_key[0].present && m->wrapped_key[1].present;
	if (m->wrapped_key[0].present != m->wrapped_key[1].present) {
		rc = error_set(err, -EINVAL, "archive metadata: only one of the two keys is set");
		goto out;
	}
	for (int i = 0; encrypted && i < 2; i++) {
		rc = base64_encode(m->wrapped_key[i].data, m->wrapped_key[i].len, &keys[i]);
		if (rc < 0)
			goto out;
	}
	const char *comp = m->compression == ARCHIVE_COMPRESSION_SNAPPY ? "snappy" : "none";
	int n;
	if (encrypted)
		n = asprintf(out,
			     "{\"format_version\":%u,\"stripe_sector_count\":%" PRIu64
			     ",\"encryption_key\":[\"%s\",\"%s\"],\"compression\":\"%s\"}",
			     m->format_version, m->stripe_sector_count, keys[0], keys[1], comp);
	else
		n = asprintf(out,
			     "{\"format_version\":%u,\"stripe_sector_count\":%" PRIu64
			     ",\"encryption_key\":null,\"compression\":\"%s\"}",
			     m->format_version, m->stripe_sector_count, comp);
	if (n < 0) {
		*out = NULL;
		rc = -ENOMEM;
	}
out:
	free(keys[0]);
	free(keys[1]);
	error_default(err, rc);
	return rc;
}

void archive_metadata_free(struct archive_metadata *m)
{
	bytes_free(&m->wrapped_key[0]);
	bytes_free(&m->wrapped_key[1]);
}

int archive_keys_wrap(const struct kek *kek, const uint8_t key1[XTS_KEY_BYTES],
		      const uint8_t key2[XTS_KEY_BYTES], struct archive_metadata *m,
		      struct error *err)
{
	const uint8_t *keys[2] = {key1, key2};
	struct bytes wrapped[2] = {{0}, {0}};
	for (int i = 0; i < 2; i++) {
		int rc = kek_wrap(kek, keys[i], XTS_KEY_BYTES, &wrapped[i], err);
		if (rc < 0) {
			bytes_free(&wrapped[0]);
			error_prefix(err, "wrapping archive key%d: ", i + 1);
			return rc;
		}
		wrapped[i].present = true;
	}
	archive_metadata_free(m);
	m->wrapped_key[0] = wrapped[0];
	m->wrapped_key[1] = wrapped[1];
	return 0;
}

int archive_keys_unwrap(const struct kek *kek, const struct archive_metadata *m,
			uint8_t key1[XTS_KEY_BYTES], uint8_t key2[XTS_KEY_BYTES], struct error *err)
{
	if (!m->wrapped_key[0].present || !m->wrapped_key[1].present)
		return error_set(err, -ENOENT, "archive is not encrypted");
	uint8_t *keys[2] = {key1, key2};
	for (int i = 0; i < 2; i++) {
		struct bytes plain = {0};
		int rc =
		    kek_unwrap(kek, m->wrapped_key[i].data, m->wrapped_key[i].len, &plain, err);
		if (rc == 0 && plain.len != XTS_KEY_BYTES)
			rc = error_set(err, -EINVAL, "Key length must be exactly 32 bytes");
		if (rc == 0)
			memcpy(keys[i], plain.data, XTS_KEY_BYTES);
		bytes_free(&plain);
		if (rc < 0) {
			explicit_bzero(key1, XTS_KEY_BYTES);
			error_prefix(err, "archive key%d: ", i + 1);
			return rc;
		}
	}
	return 0;
}
