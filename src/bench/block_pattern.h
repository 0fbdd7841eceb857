/* Self-describing data for integrity checks. Every 512-byte sector written
 * in verify mode starts with a stamp naming the device offset it was written
 * to, the run's seed and the block's write generation, and carries a checksum
 * over the whole sector; the rest of the sector is pseudo-random data derived
 * from (seed, offset, generation). A read-back can therefore tell apart
 * corrupted data (checksum), data written to the wrong place (offset), data
 * of another run (seed) and an older or newer write (generation).
 *
 * Sectors rather than blocks carry stamps because a device only promises
 * sector-sized atomicity: after a crash an unacknowledged multi-sector write
 * may be torn, and each sector must still be judged on its own. */
#ifndef UBIBLK_BENCH_BLOCK_PATTERN_H
#define UBIBLK_BENCH_BLOCK_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#define PATTERN_SECTOR_SIZE 512u
/* "UBIBENCH" read as a little-endian integer. */
#define PATTERN_MAGIC 0x48434e4542494255ull

struct sector_stamp {
	uint64_t magic;
	uint64_t offset;
	uint64_t seed;
	uint32_t generation;
	uint32_t reserved;
	uint64_t checksum;
} __attribute__((packed));

enum sector_verdict {
	SECTOR_OK = 0,
	SECTOR_NO_STAMP,   /* never written by a verify run, or overwritten by something else */
	SECTOR_CORRUPT,	   /* a stamp, but the checksum does not match the contents */
	SECTOR_MISPLACED,  /* intact data that was written for another offset */
	SECTOR_OTHER_SEED, /* intact data of another verify run */
	SECTOR_STALE,	   /* an older generation than the last acknowledged write */
	SECTOR_FUTURE,	   /* a newer generation than any write this state issued */
	SECTOR_PAYLOAD,	   /* stamp and checksum agree, payload differs from the generator */
};

/* Fill `len` bytes (a multiple of 512) written at device offset `offset`. */
void block_pattern_fill(void *buf, size_t len, uint64_t seed, uint64_t offset, uint32_t generation);

/* Judge one sector read from device offset `offset`. Generations in
 * [gen_min, gen_max] are accepted: gen_min is the last acknowledged write,
 * later ones up to gen_max were issued but never acknowledged, so either may
 * have reached the disk. gen_min 0 (no acknowledged write) accepts anything.
 * *found receives the stamp as read, *checksum the checksum of the contents. */
enum sector_verdict block_pattern_check_sector(const void *sector, uint64_t seed, uint64_t offset,
					       uint32_t gen_min, uint32_t gen_max,
					       struct sector_stamp *found, uint64_t *checksum);

/* One line describing a failed check: what was expected, what was found. */
void sector_mismatch_format(char *out, size_t len, enum sector_verdict verdict, uint64_t seed,
			    uint64_t offset, uint32_t gen_min, uint32_t gen_max,
			    const struct sector_stamp *found, uint64_t checksum);

const char *sector_verdict_name(enum sector_verdict verdict);

#endif
