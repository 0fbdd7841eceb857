/* Building an archive source: the two JSON objects read and checked, the
 * keys unwrapped, the size fitted to the disk. */
#include "archive_source/archive_source_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"

/* stripe-hashes.json holds at most one entry per stripe of the disk; an
 * entry is under 100 bytes even written with spaces ("123": "<64 hex>", ),
 * so this bound only refuses a file no writer made for this disk, before
 * it is read into memory. */
#define HASHES_BYTES_PER_STRIPE 128u
#define HASHES_SLACK_BYTES	(1024u * 1024u)
#define HASHES_MAX_UNKNOWN_DISK (1024u * 1024u * 1024u)

static size_t hashes_max_bytes(uint32_t stripe_sectors, uint64_t disk_sectors)
{
	if (disk_sectors == 0)
		return HASHES_MAX_UNKNOWN_DISK;
	uint64_t stripes = disk_sectors / stripe_sectors + 1;
	if (stripes > (SIZE_MAX - HASHES_SLACK_BYTES) / HASHES_BYTES_PER_STRIPE)
		return SIZE_MAX;
	return (size_t)stripes * HASHES_BYTES_PER_STRIPE + HASHES_SLACK_BYTES;
}

static int load_metadata(struct store *store, uint32_t stripe_sectors, struct archive_metadata *m,
			 struct error *err)
{
	uint8_t *body = NULL;
	size_t len = 0;
	int rc = store_get_sync(store, ARCHIVE_METADATA_NAME, ARCHIVE_METADATA_MAX_BYTES,
				ARCHIVE_SOURCE_JSON_TIMEOUT_MS, &body, &len, err);
	if (rc < 0)
		return rc;
	rc = archive_metadata_parse((const char *)body, len, m, err);
	free(body);
	if (rc < 0)
		return rc;
	if (m->stripe_sector_count != stripe_sectors)
		return error_set(err, -EINVAL,
				 "the archive's stripe_sector_count %" PRIu64
				 " does not match the disk's stripe of %u sectors",
				 m->stripe_sector_count, stripe_sectors);
	return 0;
}

static int load_map(struct store *store, uint32_t stripe_sectors, uint64_t disk_sectors,
		    struct archive_stripe_map *map, struct error *err)
{
	uint8_t *body = NULL;
	size_t len = 0;
	int rc = store_get_sync(store, ARCHIVE_STRIPE_HASHES_NAME,
				hashes_max_bytes(stripe_sectors, disk_sectors),
				ARCHIVE_SOURCE_JSON_TIMEOUT_MS, &body, &len, err);
	if (rc < 0)
		return rc;
	rc = archive_stripe_map_parse((const char *)body, len, map, err);
	free(body);
	return rc;
}

/* The cipher is built here so that bad keys (the two halves equal) fail
 * construction; it is used by one owner thread at a time afterwards. */
static int load_keys(const struct kek *kek, const struct archive_metadata *m,
		     struct xts_cipher **xts, struct error *err)
{
	if (!m->wrapped_key[0].present)
		return 0;
	uint8_t key1[XTS_KEY_BYTES], key2[XTS_KEY_BYTES];
	int rc = archive_keys_unwrap(kek, m, key1, key2, err);
	if (rc < 0) {
		error_prefix(err, "archive_kek cannot unwrap the archive's encryption_key: ");
		return rc;
	}
	rc = xts_cipher_new(key1, key2, xts, err);
	secret_wipe(key1, sizeof(key1));
	secret_wipe(key2, sizeof(key2));
	if (rc < 0)
		error_prefix(err, "the archive's encryption_key: ");
	return rc;
}

/* The archive's size is whole stripes; a disk whose last stripe is cut
 * short holds the same number of stripes, and then the source ends where
 * the disk does (the stripe's object has zeros past the disk's end). */
static uint64_t fit_to_disk(uint64_t sectors, uint32_t stripe_sectors, uint64_t disk_sectors)
{
	if (disk_sectors == 0 || sectors <= disk_sectors)
		return sectors;
	uint64_t disk_stripes =
	    disk_sectors / stripe_sectors + (disk_sectors % stripe_sectors != 0);
	if (sectors / stripe_sectors <= disk_stripes)
		return disk_sectors;
	return sectors;
}

void archive_source_release(struct archive_source *s)
{
	store_close(s->store);
	object_cache_free(&s->cache);
	archive_stripe_map_free(&s->map);
	xts_cipher_free(s->codec.xts);
	free(s);
}

int stripe_source_archive_from_store(struct store *store, const struct kek *archive_kek,
				     uint32_t stripe_sectors, uint64_t disk_sectors,
				     struct stripe_source **out, struct error *err)
{
	if (!is_power_of_two(stripe_sectors)) {
		store_close(store);
		return error_set(err, -EINVAL, "stripe of %u sectors is not a power of two",
				 stripe_sectors);
	}
	struct archive_source *s = calloc(1, sizeof(*s));
	if (!s) {
		store_close(store);
		return error_set(err, -ENOMEM, "out of memory for the archive source");
	}
	s->store = store;
	struct archive_metadata m = {0};
	uint64_t sectors = 0;
	int rc = load_metadata(store, stripe_sectors, &m, err);
	if (rc == 0)
		rc = load_map(store, stripe_sectors, disk_sectors, &s->map, err);
	if (rc == 0)
		rc = archive_stripe_map_sector_count(&s->map, stripe_sectors, &sectors, err);
	if (rc == 0)
		rc = load_keys(archive_kek, &m, &s->codec.xts, err);
	if (rc < 0) {
		archive_metadata_free(&m);
		archive_source_release(s);
		return rc;
	}
	s->codec.stripe_sector_count = stripe_sectors;
	s->codec.compression = m.compression;
	archive_metadata_free(&m);
	s->object_max = archive_object_bound(&s->codec, (size_t)stripe_sectors * SECTOR_SIZE);
	rc =
	    object_cache_init(&s->cache, &s->map,
			      ARCHIVE_SOURCE_CACHE_OBJECTS * object_cache_cost(s->object_max), err);
	if (rc < 0) {
		archive_source_release(s);
		return rc;
	}
	source_init(&s->base, &archive_source_ops, stripe_sectors,
		    fit_to_disk(sectors, stripe_sectors, disk_sectors));
	*out = &s->base;
	return 0;
}

int stripe_source_archive(const struct archive_source_config *cfg, uint32_t stripe_sectors,
			  uint64_t disk_sectors, struct stripe_source **out, struct error *err)
{
	struct store *store = NULL;
	int rc = store_open(cfg, NULL, &store, err);
	if (rc < 0)
		return rc;
	return stripe_source_archive_from_store(store, &cfg->archive_kek, stripe_sectors,
						disk_sectors, out, err);
}

void stripe_source_archive_stats(const struct stripe_source *src, struct archive_source_stats *out)
{
	const struct archive_source *s = (const struct archive_source *)src;
	*out = s->stats;
	out->cache_bytes = s->cache.bytes;
}
