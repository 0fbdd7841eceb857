/* ubiblk's metadata file format 1.0 (byte for byte) and the shared
 * in-memory stripe state built from it. See docs/metadata.md.
 *
 * File layout: sector 0 = magic "BDEV_UBI\0", version 1.0 (u16 LE each),
 * stripe_sector_count_shift (u8), zeros; from byte 512 one header byte per
 * stripe (FETCHED 0x01, WRITTEN 0x02, HAS_SOURCE 0x04). Stripe i's header is
 * in file sector 1 + i / 512. Load and save go through a bdev, so the
 * crypt layer can be stacked under them: an encrypted disk's metadata file
 * is encrypted with the disk's keys. */
#ifndef UBIBLK_META_H
#define UBIBLK_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bdev/bdev.h"
#include "common/common.h"

#define META_HEADER_FETCHED    0x01u
#define META_HEADER_WRITTEN    0x02u
#define META_HEADER_HAS_SOURCE 0x04u

#define META_VERSION_MAJOR	1u
#define META_VERSION_MINOR	0u
#define META_DEFAULT_SHIFT	11u
#define META_MIN_SHIFT		6u
#define META_MAX_INIT_SHIFT	16u /* init-metadata accepts 6..16 */
#define META_MAX_LOAD_SHIFT	17u /* a loaded file may have up to 17 */
#define META_HEADERS_PER_SECTOR 512u

struct metadata {
	uint8_t shift;	       /* stripe = 1 << shift sectors */
	uint64_t header_count; /* file size - 512: may exceed the disk's stripes */
	uint8_t *headers;      /* header_count bytes */
};

/* Stripes needed for a disk: ceil(disk_sectors / 2^shift). */
uint64_t meta_stripe_count(uint64_t disk_sectors, uint8_t shift);
/* Smallest file for a disk: round_up(512 + stripes, 512) bytes. */
uint64_t meta_file_size(uint64_t disk_sectors, uint8_t shift);

/* init-metadata's constructor: `stripes` headers, HAS_SOURCE on the first
 * `source_stripes` of them, everything else 0. -EINVAL for a shift outside
 * 6..17, -ENOMEM. */
int meta_create(struct metadata *m, uint8_t shift, uint64_t stripes, uint64_t source_stripes);

/* Serialization of exactly 512 + header_count bytes (the remote server's blob).
 * Bytes 14..511 are written as zeros; bytes of buf past 512 + header_count are
 * left alone. -EINVAL when len is smaller. */
int meta_serialize(const struct metadata *m, uint8_t *buf, size_t len);
/* Validates magic, version, shift (6..17), size >= 512. Errors, each with a
 * one-line message in err: -EBADMSG when the bytes are no metadata at all
 * (shorter than 512, wrong magic: safe to initialise over), -EPROTONOSUPPORT
 * for another format version, -EINVAL for a shift out of range, -ENOMEM. */
int meta_deserialize(const uint8_t *buf, size_t len, struct metadata *m, struct error *err);
void meta_free(struct metadata *m);

/* Load and save through the device (O_DIRECT). Save writes every sector of
 * the device in one request, then flushes. Load reads sector 0, then only the
 * header sectors holding the stripes of a disk of disk_sectors (META_LOAD_ALL:
 * every header of the file), so header_count is those stripes rounded up to a
 * whole sector, or every header when the file is shorter (a file too small for
 * the disk still shows fewer headers than stripes). Each request is waited for
 * at most 30 s (-ETIMEDOUT). Load returns meta_deserialize's errors, or the
 * I/O error; both describe the failure in err without naming the file (the
 * caller knows the path). */
#define META_LOAD_ALL UINT64_MAX
int meta_load(struct bdev *dev, uint64_t disk_sectors, struct metadata *m, struct error *err);
int meta_save(struct bdev *dev, const struct metadata *m, struct error *err);

/* Calls visit(ctx, headers, count) for the headers of the file from index
 * `first` to the end, in order, a bounded piece (1 MiB) at a time, so a file
 * of any size is walked in little memory. Stops at the first I/O error. */
typedef void (*meta_header_visitor)(void *ctx, const uint8_t *headers, size_t count);
int meta_scan_headers(struct bdev *dev, uint64_t first, meta_header_visitor visit, void *ctx,
		      struct error *err);

/* init-metadata's write of a fresh file: m serialized, every other byte zero.
 * The file is created 0600 when missing (never through a symlink; regular
 * files only), extended to round_up(512 + header_count, 512) bytes when
 * shorter, never shrunk, flushed, and fsynced with its folder when created.
 * Refused with -EEXIST when it already holds metadata (or something with our
 * magic this version cannot read) and force is off, and with -EINVAL when it
 * is one of protected_paths. A file created here is removed on failure. One
 * line in err on failure. */
struct meta_init_options {
	const char *path;
	enum bdev_engine engine; /* io_uring or sync: the file must really be written */
	bool write_through;
	bool force;
	const char *const *protected_paths; /* NULL-terminated: the disk, the image */
	/* Optional: stacks a device over the file's before it is read or
	 * written (the crypt layer when the config has encryption_key). *out
	 * is closed before `file`; one line in err on failure. */
	int (*wrap)(void *wrap_ctx, struct bdev *file, struct bdev **out, struct error *err);
	void *wrap_ctx;
};
int meta_init_file(const struct meta_init_options *opts, const struct metadata *m,
		   struct error *err);

/* True when every header with HAS_SOURCE also has FETCHED, surplus headers
 * included: the source is no longer needed. */
bool meta_all_fetched(const struct metadata *m);

/* Header statistics over [first, first + count), clipped to header_count.
 * fetched + not_fetched + no_source == total; written is independent of them
 * (a written stripe was normally fetched first). */
struct meta_counts {
	uint64_t total;
	uint64_t fetched;     /* HAS_SOURCE and FETCHED */
	uint64_t not_fetched; /* HAS_SOURCE without FETCHED */
	uint64_t no_source;   /* no HAS_SOURCE */
	uint64_t written;     /* WRITTEN */
};
void meta_count(const struct metadata *m, uint64_t first, uint64_t count, struct meta_counts *out);

/* ---- dump-metadata's views (docs/metadata.md) ---- */

/* The indices of all headers having `flag`, ascending, as runs: "a" for one,
 * "a, b" for two, "a-b" for three or more, joined by ", ". Nothing for none. */
void meta_print_stripe_list(FILE *out, const struct metadata *m, uint8_t flag);
/* The same list fed in pieces (headers 0, 1, 2, ... in order), for headers
 * that are not all in memory: begin, add as often as needed, end. */
struct meta_list_printer {
	FILE *out;
	uint8_t flag;
	bool any;    /* something printed: the next run needs ", " */
	bool in_run; /* run_first.. the previous header have the flag */
	uint64_t run_first;
	uint64_t next; /* index of the next header added */
};
void meta_list_begin(struct meta_list_printer *p, FILE *out, uint8_t flag);
void meta_list_add(struct meta_list_printer *p, const uint8_t *headers, size_t count);
void meta_list_end(struct meta_list_printer *p);

#define META_MAP_DEFAULT_WIDTH 64u
#define META_MAP_MAX_WIDTH     4096u
#define META_MAP_MAX_ROWS      32u
/* A picture of the first `stripes` headers, `width` characters per row, one
 * character per group of stripes (as few stripes per character as keep the
 * picture within META_MAP_MAX_ROWS rows), then a legend with counts:
 *   '#' every stripe with a source is fetched, none written
 *   'w' nothing left to fetch, some stripe written
 *   '+' partly fetched      '.' none fetched yet     ' ' no source
 * -EINVAL for a width outside 1..META_MAP_MAX_WIDTH. */
int meta_print_map(FILE *out, const struct metadata *m, uint64_t stripes, uint32_t width);

/* ---- shared stripe state: read by I/O threads, written by the fetch worker ---- */

enum stripe_fetch_state {
	STRIPE_NOT_FETCHED = 0,
	STRIPE_FETCHED = 1,
	STRIPE_FAILED = 2,
	STRIPE_NO_SOURCE = 3,
};

struct stripe_state;

/* From a loaded metadata file, for a disk of disk_sectors. Fails with
 * -EINVAL (message in err) when the file has fewer headers than the disk has
 * stripes. */
int stripe_state_create(const struct metadata *m, uint64_t disk_sectors, struct stripe_state **out,
			struct error *err);
void stripe_state_destroy(struct stripe_state *s);

uint8_t stripe_state_shift(const struct stripe_state *s);
uint64_t stripe_state_count(const struct stripe_state *s); /* stripes covering the disk */
uint64_t stripe_state_disk_sectors(const struct stripe_state *s);
/* Readers (acquire). A stripe >= stripe_state_count() is Failed, not written
 * and not ready, so a request past the disk fails instead of crashing. */
enum stripe_fetch_state stripe_state_fetch(const struct stripe_state *s, uint64_t stripe);
bool stripe_state_written(const struct stripe_state *s, uint64_t stripe);
/* Fetched or no source: the disk holds the stripe's data. */
bool stripe_state_ready(const struct stripe_state *s, uint64_t stripe);
/* Called by the worker once a header change is durable (release). Stripes
 * past the disk are ignored (set_fetched/set_written log a warning).
 * set_fetched leaves a stripe without a source as it is (NoSource, or Failed
 * after set_failed) and never counts it, and counts a stripe at most once,
 * whatever happened in between. set_failed applies to any state, so
 * requests waiting on a WRITTEN update that could not be made durable stop
 * waiting too; a stripe already counted as fetched stays counted. Failed is
 * never persisted: after a restart the stripe is tried again. */
void stripe_state_set_fetched(struct stripe_state *s, uint64_t stripe);
void stripe_state_set_written(struct stripe_state *s, uint64_t stripe);
void stripe_state_set_failed(struct stripe_state *s, uint64_t stripe);
/* status RPC: total = stripes covering the disk; source = those with
 * HAS_SOURCE; fetched = those with HAS_SOURCE that are durably fetched (so
 * fetched == source means the source is no longer needed). */
void stripe_state_counts(const struct stripe_state *s, uint64_t *total, uint64_t *source,
			 uint64_t *fetched);
/* Stripes in state Failed right now (given up on, not fetched since), for
 * the metrics; any thread. */
uint64_t stripe_state_failed_count(const struct stripe_state *s);

#endif
