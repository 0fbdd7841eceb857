/*
 * stripe-hashes.json as a store returns it: any bytes. A parse that
 * succeeds yields a sorted map without duplicates whose every hash becomes
 * an object name the store accepts ("data/" and 64 lowercase hex digits,
 * exactly the text the file held), a map every entry of which is found
 * again, a sector count that is (last stripe + 1) * stripe size unless that
 * overflows, and JSON that parses back to the same map. A parse that fails
 * says why in one line starting "failed to parse stripe-hashes.json: ".
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "archive/archive.h"
#include "store/store.h"

#define PREFIX "failed to parse stripe-hashes.json: "
/* The archive source bounds the file by the disk's size; inputs beyond a
 * few stripes' worth only slow the fuzzer down. */
#define MAX_INPUT (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_one_line(const struct error *err)
{
	size_t n = strnlen(err->text, sizeof(err->text));
	if (n == sizeof(err->text) || strncmp(err->text, PREFIX, strlen(PREFIX)) != 0)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)err->text[i] < 0x20 || err->text[i] == 0x7f)
			abort();
}

/* Each entry's object name is what the file said, and a valid store name. */
static void check_names(const struct archive_stripe_map *m, const uint8_t *data, size_t size)
{
	json_t *root = json_loadb((const char *)data, size, 0, NULL);
	if (!root)
		abort();
	for (size_t i = 0; i < m->count; i++) {
		const struct archive_stripe_hash *e = &m->entries[i];
		if (i && e->stripe <= m->entries[i - 1].stripe)
			abort();
		if (archive_stripe_map_find(m, e->stripe) != e)
			abort();
		char name[ARCHIVE_OBJECT_NAME_SIZE];
		archive_object_name(e->hash, name);
		if (strlen(name) != ARCHIVE_OBJECT_NAME_SIZE - 1 ||
		    strncmp(name, "data/", 5) != 0 || !store_name_is_valid(name))
			abort();
		uint8_t again[ARCHIVE_HASH_BYTES];
		if (!archive_hash_parse(name + 5, ARCHIVE_HASH_HEX_LEN, again) ||
		    memcmp(again, e->hash, sizeof(again)) != 0)
			abort();
	}
	/* Every key of the file, in whatever spelling ("007"), names an entry
	 * whose hex is the file's text byte for byte. */
	const char *key;
	json_t *value;
	size_t keys = 0;
	json_object_foreach(root, key, value)
	{
		uint64_t stripe = strtoull(key, NULL, 10);
		const struct archive_stripe_hash *e = archive_stripe_map_find(m, stripe);
		char hex[ARCHIVE_HASH_HEX_LEN + 1];
		if (!e)
			abort();
		archive_hash_hex(e->hash, hex);
		if (json_string_length(value) != ARCHIVE_HASH_HEX_LEN ||
		    memcmp(json_string_value(value), hex, ARCHIVE_HASH_HEX_LEN) != 0)
			abort();
		keys++;
	}
	if (keys != m->count)
		abort();
	json_decref(root);
}

static void check_sector_count(const struct archive_stripe_map *m)
{
	static const uint64_t stripe_sizes[] = {1, 16, 2048, UINT64_C(1) << 40};
	for (size_t i = 0; i < sizeof(stripe_sizes) / sizeof(stripe_sizes[0]); i++) {
		uint64_t sectors = 1;
		int rc = archive_stripe_map_sector_count(m, stripe_sizes[i], &sectors, NULL);
		if (!m->count) {
			if (rc != 0 || sectors != 0)
				abort();
			continue;
		}
		uint64_t last = m->entries[m->count - 1].stripe;
		bool fits = last < UINT64_MAX && last + 1 <= UINT64_MAX / stripe_sizes[i];
		if (fits ? rc != 0 || sectors != (last + 1) * stripe_sizes[i] : rc != -ERANGE)
			abort();
	}
}

static void check_round_trip(struct archive_stripe_map *m)
{
	char *text = NULL;
	if (archive_stripe_map_write(m, &text, NULL) != 0)
		abort();
	struct archive_stripe_map again;
	if (archive_stripe_map_parse(text, strlen(text), &again, NULL) != 0 ||
	    again.count != m->count ||
	    (m->count && memcmp(again.entries, m->entries, m->count * sizeof(m->entries[0])) != 0))
		abort();
	archive_stripe_map_free(&again);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > MAX_INPUT)
		return 0;
	struct archive_stripe_map m;
	struct error err = {0};
	if (archive_stripe_map_parse((const char *)data, size, &m, &err) == 0) {
		check_names(&m, data, size);
		check_sector_count(&m);
		check_round_trip(&m);
	} else {
		check_one_line(&err);
	}
	archive_stripe_map_free(&m);
	return 0;
}
