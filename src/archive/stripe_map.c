/* stripe-hashes.json: stripe index -> object hash, parse and write. */
#include "archive/archive.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define PARSE_ERR "failed to parse stripe-hashes.json: "

/* A key as serde reads a u64 map key: decimal digits only, no sign. */
static bool parse_stripe_key(const char *key, uint64_t *out)
{
	if (!*key)
		return false;
	uint64_t v = 0;
	for (const char *p = key; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

int archive_stripe_map_put(struct archive_stripe_map *m, uint64_t stripe,
			   const uint8_t hash[ARCHIVE_HASH_BYTES])
{
	if (m->count == m->capacity) {
		size_t cap = m->capacity ? m->capacity * 2 : 64;
		struct archive_stripe_hash *e = reallocarray(m->entries, cap, sizeof(*e));
		if (!e)
			return -ENOMEM;
		m->entries = e;
		m->capacity = cap;
	}
	m->entries[m->count].stripe = stripe;
	memcpy(m->entries[m->count].hash, hash, ARCHIVE_HASH_BYTES);
	m->count++;
	m->sorted = false;
	return 0;
}

static int by_stripe(const void *a, const void *b)
{
	uint64_t x = ((const struct archive_stripe_hash *)a)->stripe;
	uint64_t y = ((const struct archive_stripe_hash *)b)->stripe;
	return x < y ? -1 : x > y;
}

int archive_stripe_map_sort(struct archive_stripe_map *m, struct error *err)
{
	if (m->sorted)
		return 0;
	if (m->count > 1)
		qsort(m->entries, m->count, sizeof(m->entries[0]), by_stripe);
	for (size_t i = 1; i < m->count; i++)
		if (m->entries[i].stripe == m->entries[i - 1].stripe)
			return error_set(err, -EINVAL, "stripe %" PRIu64 " is listed twice",
					 m->entries[i].stripe);
	m->sorted = true;
	return 0;
}

const struct archive_stripe_hash *archive_stripe_map_find(const struct archive_stripe_map *m,
							  uint64_t stripe)
{
	struct archive_stripe_hash key = {.stripe = stripe};
	if (!m->count)
		return NULL;
	return bsearch(&key, m->entries, m->count, sizeof(key), by_stripe);
}

int archive_stripe_map_sector_count(const struct archive_stripe_map *m,
				    uint64_t stripe_sector_count, uint64_t *out, struct error *err)
{
	*out = 0;
	if (!m->count)
		return 0;
	uint64_t stripes = m->entries[m->count - 1].stripe + 1;
	if (stripes == 0 || (stripe_sector_count && stripes > UINT64_MAX / stripe_sector_count))
		return error_set(err, -ERANGE, "stripe %" PRIu64 " is beyond the sector range",
				 stripes - 1);
	*out = stripes * stripe_sector_count;
	return 0;
}

static int parse_object(json_t *root, struct archive_stripe_map *out, struct error *err)
{
	if (!json_is_object(root))
		return error_set(err, -EINVAL, PARSE_ERR "expected a JSON object");
	const char *key;
	json_t *value;
	json_object_foreach(root, key, value)
	{
		uint64_t stripe;
		uint8_t hash[ARCHIVE_HASH_BYTES];
		if (!parse_stripe_key(key, &stripe))
			return error_set(err, -EINVAL,
					 PARSE_ERR "key \"%.40s\" is not a stripe index", key);
		if (!json_is_string(value))
			return error_set(err, -EINVAL,
					 PARSE_ERR "stripe %" PRIu64 ": expected a string", stripe);
		/* Lowercase only: the reader compares the text with the hash it
		 * computes, and the text becomes an object name. */
		if (!archive_hash_parse(json_string_value(value), json_string_length(value), hash))
			return error_set(err, -EINVAL,
					 PARSE_ERR "stripe %" PRIu64
						   ": hash is not 64 lowercase hex digits",
					 stripe);
		if (archive_stripe_map_put(out, stripe, hash) < 0)
			return error_set(err, -ENOMEM, PARSE_ERR "out of memory");
	}
	int rc = archive_stripe_map_sort(out, err);
	if (rc < 0)
		error_prefix(err, PARSE_ERR);
	return rc;
}

int archive_stripe_map_parse(const char *json, size_t len, struct archive_stripe_map *out,
			     struct error *err)
{
	memset(out, 0, sizeof(*out));
	out->sorted = true;
	json_error_t jerr;
	json_t *root = json_loadb(json, len, 0, &jerr);
	if (!root) {
		error_set(err, -EINVAL, PARSE_ERR "%s at line %d column %d", jerr.text, jerr.line,
			  jerr.column);
		return -EINVAL;
	}
	int rc = parse_object(root, out, err);
	json_decref(root);
	return rc;
}

int archive_stripe_map_write(struct archive_stripe_map *m, char **out, struct error *err)
{
	*out = NULL;
	int rc = archive_stripe_map_sort(m, err);
	if (rc < 0)
		return rc;
	/* {"<20 digits>":"<64 hex>"} per entry at most */
	size_t per = 1 + 20 + 3 + ARCHIVE_HASH_HEX_LEN + 2;
	size_t cap = 3 + m->count * per;
	char *s = malloc(cap);
	if (!s)
		return error_set(err, -ENOMEM, "out of memory for stripe-hashes.json");
	size_t n = 0;
	s[n++] = '{';
	for (size_t i = 0; i < m->count; i++) {
		char hex[ARCHIVE_HASH_HEX_LEN + 1];
		archive_hash_hex(m->entries[i].hash, hex);
		n += (size_t)snprintf(s + n, cap - n, "%s\"%" PRIu64 "\":\"%s\"", i ? "," : "",
				      m->entries[i].stripe, hex);
	}
	s[n++] = '}';
	s[n] = '\0';
	*out = s;
	return 0;
}

void archive_stripe_map_free(struct archive_stripe_map *m)
{
	free(m->entries);
	memset(m, 0, sizeof(*m));
}
