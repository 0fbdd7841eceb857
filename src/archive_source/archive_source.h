/* The archive stripe source: stripes read from an archive (see
 * archive/archive.h and docs/archive.md) in an object store (store/store.h),
 * for the fetch worker and for any tool that drives a stripe source.
 *
 * Construction (any thread) reads metadata.json and stripe-hashes.json with
 * the store's synchronous calls (30 s each) and checks them before anything
 * else happens: the format version, stripe_sector_count against the device's
 * stripe size (a different size would put every stripe at the wrong
 * offset), every hash exactly 64 lowercase hex digits (so no text from the
 * store ever becomes part of an object name), and, for an encrypted archive,
 * the per-archive keys unwrapped with the config's archive_kek. A wrong
 * archive therefore fails where a person sees it (a back end's start-up,
 * init-metadata) with one line, not as I/O errors later.
 *
 * Reading: request(i) starts a GET of stripe i's object and returns at once;
 * requests for stripes that share an object while its GET is in flight join
 * that GET (one GET, several stripes). The store runs at most `connections`
 * GETs at once and queues the rest, so the owner never waits on the network.
 * poll() checks each object's SHA-256 against the map before anything else
 * touches it, then decrypts, decompresses and fills the stripe buffer
 * (archive_object_decode). A stripe the archive does not hold reads as
 * zeros. A failed GET or a bad object (wrong hash, bad framing, too large)
 * fails that stripe only: its completion carries a negative errno and one
 * log line names the stripe and the reason. A stripe buffer never receives
 * wrong data as a success.
 *
 * Shared objects: an object that two or more stripes of the mapping name
 * (the all-zero stripes of an unencrypted archive, repeated content) is
 * kept after its GET, as stored (still encrypted and compressed) and only
 * once its bytes hash to its name, until every stripe naming it has been
 * asked for; a request for such a stripe meanwhile needs no GET: it is
 * decoded (from a copy when decrypting would clobber the object) inside
 * request() and completes through poll() like any other, the completion fd
 * made readable for it. A failed GET or an object with the wrong hash is
 * never kept. Memory: the kept objects take at most
 * ARCHIVE_SOURCE_CACHE_OBJECTS times the largest object a stripe can have
 * (about one stripe each) plus a small header each, least recently used
 * dropped first to make room; counting the names costs 48 bytes per shared
 * object for the source's life and 8 bytes per listed stripe while it is
 * built. close() drops every kept object.
 *
 * Threads: built on any thread; after that one owner thread at a time (the
 * fetch worker's) calls every source_* operation. The CPU work of a stripe
 * (hash, XTS, snappy) runs on the owner thread inside poll() (inside
 * request() for a kept object); the network and file I/O run on the store's
 * threads. The completion fd is the store's eventfd; a stripe that
 * completes without the store (absent from the archive, or decoded from a
 * kept object) also makes it readable, so an owner that waits on the fd
 * never misses a completion. Each accepted request completes exactly once,
 * unless the source is closed first (close drops what is owed). */
#ifndef UBIBLK_ARCHIVE_SOURCE_H
#define UBIBLK_ARCHIVE_SOURCE_H

#include <stdint.h>

#include "common/common.h"
#include "config/config.h"
#include "fetch/fetch.h"
#include "store/store.h"

/* How long construction waits for each of the two JSON objects. */
#define ARCHIVE_SOURCE_JSON_TIMEOUT_MS 30000u

/* How many of the largest objects a stripe can have the kept shared
 * objects may take together. */
#define ARCHIVE_SOURCE_CACHE_OBJECTS 8u

/* Opens the store cfg describes and builds the source on it, for a device
 * whose stripes are stripe_sectors sectors and whose disk is disk_sectors
 * long. The source's size is (last archived stripe + 1) * stripe_sectors,
 * cut to disk_sectors when the disk ends inside that last stripe (an archive
 * of a disk whose size is not a whole number of stripes still fits it); an
 * archive with more stripes than the disk keeps its size (the fetch worker
 * refuses it). Errors: the store's ("GetObject metadata.json failed: ..."),
 * the format's ("failed to parse stripe-hashes.json: ..."), "the archive's
 * stripe_sector_count 16 does not match the disk's stripe of 2048 sectors",
 * or the key unwrap's ("archive_kek cannot unwrap the archive's
 * encryption_key: archive key1: Failed to decrypt data: ..."). */
int stripe_source_archive(const struct archive_source_config *cfg, uint32_t stripe_sectors,
			  uint64_t disk_sectors, struct stripe_source **out, struct error *err);

/* The same on a store the caller opened (store options of its choice). The
 * source owns the store from now on, also when this fails. */
int stripe_source_archive_from_store(struct store *store, const struct kek *archive_kek,
				     uint32_t stripe_sectors, uint64_t disk_sectors,
				     struct stripe_source **out, struct error *err);

/* What the source did so far; read on the owner thread. */
struct archive_source_stats {
	uint64_t gets;	       /* object GETs started */
	uint64_t coalesced;    /* requests that joined a GET already in flight */
	uint64_t cache_hits;   /* requests served from a kept shared object */
	uint64_t cache_bytes;  /* what the kept objects take now, headers included */
	uint64_t zero_stripes; /* requests for stripes the archive does not hold */
	uint64_t failed;       /* stripes that completed with an error */
	uint64_t bytes;	       /* object bytes received */
};

/* src must be an archive source. */
void stripe_source_archive_stats(const struct stripe_source *src, struct archive_source_stats *out);

#endif
