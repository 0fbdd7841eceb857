#include "bench/block_pattern.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(struct sector_stamp) == 40, "stamp is 40 bytes");

#define PAYLOAD_WORDS ((PATTERN_SECTOR_SIZE - sizeof(struct sector_stamp)) / sizeof(uint64_t))
#define SECTOR_WORDS  (PATTERN_SECTOR_SIZE / sizeof(uint64_t))
/* Word index of the checksum inside a sector. */
#define CHECKSUM_WORD (offsetof(struct sector_stamp, checksum) / sizeof(uint64_t))

static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* splitmix64: a fast generator with a 64-bit state that any key seeds. */
static inline uint64_t next_word(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ull;
	return mix64(*state);
}

static uint64_t payload_key(uint64_t seed, uint64_t offset, uint32_t generation)
{
	return mix64(mix64(seed ^ offset) ^ generation);
}

/* Checksum of a sector's 64 words, the checksum word counted as zero. */
static uint64_t sector_checksum(const uint64_t *words)
{
	uint64_t h = 0x27d4eb2f165667c5ull;
	for (size_t i = 0; i < SECTOR_WORDS; i++) {
		uint64_t w = i == CHECKSUM_WORD ? 0 : words[i];
		h ^= mix64(w + i);
		h = (h << 27 | h >> 37) * 0x9e3779b97f4a7c15ull;
	}
	return h;
}

void block_pattern_fill(void *buf, size_t len, uint64_t seed, uint64_t offset, uint32_t generation)
{
	for (size_t pos = 0; pos + PATTERN_SECTOR_SIZE <= len; pos += PATTERN_SECTOR_SIZE) {
		uint64_t words[SECTOR_WORDS];
		struct sector_stamp stamp = {
		    .magic = PATTERN_MAGIC,
		    .offset = offset + pos,
		    .seed = seed,
		    .generation = generation,
		};
		memcpy(words, &stamp, sizeof(stamp));
		uint64_t state = payload_key(seed, offset + pos, generation);
		for (size_t i = 0; i < PAYLOAD_WORDS; i++)
			words[SECTOR_WORDS - PAYLOAD_WORDS + i] = next_word(&state);
		words[CHECKSUM_WORD] = sector_checksum(words);
		memcpy((char *)buf + pos, words, sizeof(words));
	}
}

static bool payload_matches(const uint64_t *words, uint64_t seed, uint64_t offset,
			    uint32_t generation)
{
	uint64_t state = payload_key(seed, offset, generation);
	for (size_t i = 0; i < PAYLOAD_WORDS; i++) {
		if (words[SECTOR_WORDS - PAYLOAD_WORDS + i] != next_word(&state))
			return false;
	}
	return true;
}

enum sector_verdict block_pattern_check_sector(const void *sector, uint64_t seed, uint64_t offset,
					       uint32_t gen_min, uint32_t gen_max,
					       struct sector_stamp *found, uint64_t *checksum)
{
	uint64_t words[SECTOR_WORDS];
	memcpy(words, sector, sizeof(words));
	memcpy(found, words, sizeof(*found));
	*checksum = sector_checksum(words);
	if (gen_min == 0)
		return SECTOR_OK;
	if (found->magic != PATTERN_MAGIC)
		return SECTOR_NO_STAMP;
	if (found->checksum != *checksum)
		return SECTOR_CORRUPT;
	if (found->offset != offset)
		return SECTOR_MISPLACED;
	if (found->seed != seed)
		return SECTOR_OTHER_SEED;
	if (found->generation < gen_min)
		return SECTOR_STALE;
	if (found->generation > gen_max)
		return SECTOR_FUTURE;
	if (!payload_matches(words, seed, offset, found->generation))
		return SECTOR_PAYLOAD;
	return SECTOR_OK;
}

const char *sector_verdict_name(enum sector_verdict verdict)
{
	switch (verdict) {
	case SECTOR_OK:
		return "ok";
	case SECTOR_NO_STAMP:
		return "no stamp (unwritten or foreign data)";
	case SECTOR_CORRUPT:
		return "corrupt (checksum mismatch)";
	case SECTOR_MISPLACED:
		return "misplaced (data written for another offset)";
	case SECTOR_OTHER_SEED:
		return "data of another run (seed differs)";
	case SECTOR_STALE:
		return "stale (an acknowledged write is missing)";
	case SECTOR_FUTURE:
		return "newer generation than any write issued";
	case SECTOR_PAYLOAD:
		return "payload differs from its stamp";
	}
	return "unknown";
}

void sector_mismatch_format(char *out, size_t len, enum sector_verdict verdict, uint64_t seed,
			    uint64_t offset, uint32_t gen_min, uint32_t gen_max,
			    const struct sector_stamp *found, uint64_t checksum)
{
	char generations[48];
	if (gen_min == gen_max)
		snprintf(generations, sizeof(generations), "%u", gen_min);
	else
		snprintf(generations, sizeof(generations), "%u..%u", gen_min, gen_max);
	snprintf(out, len,
		 "mismatch at offset %llu: %s; expected offset=%llu seed=%#llx generation=%s; "
		 "found magic=%#llx offset=%llu seed=%#llx generation=%u checksum=%#llx "
		 "(contents hash to %#llx)",
		 (unsigned long long)offset, sector_verdict_name(verdict),
		 (unsigned long long)offset, (unsigned long long)seed, generations,
		 (unsigned long long)found->magic, (unsigned long long)found->offset,
		 (unsigned long long)found->seed, found->generation,
		 (unsigned long long)found->checksum, (unsigned long long)checksum);
}
