/* Block patterns: what a verify read-back accepts and how it names what is
 * wrong: corrupt, misplaced, stale, from another run, torn. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bench/block_pattern.h"

#define BLOCK 4096u
#define SEED  0x1234abcdull

static enum sector_verdict check(const uint8_t *block, unsigned sector, uint64_t offset,
				 uint32_t gen_min, uint32_t gen_max, struct sector_stamp *found)
{
	uint64_t checksum;
	return block_pattern_check_sector(block + sector * PATTERN_SECTOR_SIZE, SEED,
					  offset + sector * PATTERN_SECTOR_SIZE, gen_min, gen_max,
					  found, &checksum);
}

static void fresh_block_checks_ok(void **state)
{
	uint8_t block[BLOCK];
	block_pattern_fill(block, sizeof(block), SEED, 1 << 20, 7);
	for (unsigned s = 0; s < BLOCK / PATTERN_SECTOR_SIZE; s++) {
		struct sector_stamp found;
		assert_int_equal(check(block, s, 1 << 20, 7, 7, &found), SECTOR_OK);
		assert_int_equal(found.offset, (1 << 20) + s * PATTERN_SECTOR_SIZE);
		assert_int_equal(found.generation, 7);
		assert_int_equal(found.seed, SEED);
		assert_int_equal(found.magic, PATTERN_MAGIC);
	}
}

static void contents_depend_on_offset_generation_and_seed(void **state)
{
	uint8_t a[BLOCK], b[BLOCK];
	block_pattern_fill(a, BLOCK, SEED, 0, 1);
	block_pattern_fill(b, BLOCK, SEED, 0, 1);
	assert_memory_equal(a, b, BLOCK); /* deterministic */
	block_pattern_fill(b, BLOCK, SEED, 0, 2);
	assert_memory_not_equal(a + 40, b + 40, PATTERN_SECTOR_SIZE - 40);
	block_pattern_fill(b, BLOCK, SEED, BLOCK, 1);
	assert_memory_not_equal(a + 40, b + 40, PATTERN_SECTOR_SIZE - 40);
	block_pattern_fill(b, BLOCK, SEED + 1, 0, 1);
	assert_memory_not_equal(a + 40, b + 40, PATTERN_SECTOR_SIZE - 40);
	/* Sectors of one block differ from each other too. */
	assert_memory_not_equal(a + 40, a + PATTERN_SECTOR_SIZE + 40, PATTERN_SECTOR_SIZE - 40);
}

static void flipped_bit_is_corrupt(void **state)
{
	uint8_t block[BLOCK];
	struct sector_stamp found;
	block_pattern_fill(block, BLOCK, SEED, 0, 3);
	block[3 * PATTERN_SECTOR_SIZE + 300] ^= 0x10;
	assert_int_equal(check(block, 2, 0, 3, 3, &found), SECTOR_OK);
	assert_int_equal(check(block, 3, 0, 3, 3, &found), SECTOR_CORRUPT);
	/* A damaged stamp is caught by the checksum as well. */
	block_pattern_fill(block, BLOCK, SEED, 0, 3);
	block[12] ^= 1; /* inside the offset field */
	assert_int_equal(check(block, 0, 0, 3, 3, &found), SECTOR_CORRUPT);
}

static void block_from_another_offset_is_misplaced(void **state)
{
	uint8_t block[BLOCK];
	struct sector_stamp found;
	/* The device returned the data of block 9 when block 10 was read. */
	block_pattern_fill(block, BLOCK, SEED, 9 * BLOCK, 4);
	assert_int_equal(check(block, 0, 10 * BLOCK, 4, 4, &found), SECTOR_MISPLACED);
	assert_int_equal(found.offset, 9 * BLOCK);
}

static void older_generation_is_stale(void **state)
{
	uint8_t block[BLOCK];
	struct sector_stamp found;
	/* An acknowledged write of generation 5 was lost: 4 is still there. */
	block_pattern_fill(block, BLOCK, SEED, 0, 4);
	assert_int_equal(check(block, 0, 0, 5, 5, &found), SECTOR_STALE);
	assert_int_equal(found.generation, 4);
}

static void newer_generation_than_issued_is_flagged(void **state)
{
	uint8_t block[BLOCK];
	struct sector_stamp found;
	block_pattern_fill(block, BLOCK, SEED, 0, 9);
	assert_int_equal(check(block, 0, 0, 5, 6, &found), SECTOR_FUTURE);
}

static void other_seed_is_another_run(void **state)
{
	uint8_t block[BLOCK];
	struct sector_stamp found;
	block_pattern_fill(block, BLOCK, SEED + 1, 0, 1);
	assert_int_equal(check(block, 0, 0, 1, 1, &found), SECTOR_OTHER_SEED);
}

static void zeroes_have_no_stamp(void **state)
{
	uint8_t block[BLOCK];
	struct sector_stamp found;
	memset(block, 0, sizeof(block));
	assert_int_equal(check(block, 0, 0, 1, 1, &found), SECTOR_NO_STAMP);
}

static void unacknowledged_generations_are_accepted(void **state)
{
	uint8_t block[BLOCK];
	struct sector_stamp found;
	/* Acked 5, issued up to 7: 5, 6 and 7 may all be on disk after a crash. */
	for (uint32_t gen = 5; gen <= 7; gen++) {
		block_pattern_fill(block, BLOCK, SEED, 0, gen);
		assert_int_equal(check(block, 0, 0, 5, 7, &found), SECTOR_OK);
	}
	/* Never acknowledged: anything may be there. */
	memset(block, 0xee, sizeof(block));
	assert_int_equal(check(block, 0, 0, 0, 3, &found), SECTOR_OK);
}

static void torn_write_is_judged_per_sector(void **state)
{
	/* An interrupted write left sectors 0-3 new and 4-7 old: each sector is
	 * fine on its own while both generations are possible, but once the
	 * new one was acknowledged the old half is stale. */
	uint8_t block[BLOCK], newer[BLOCK];
	struct sector_stamp found;
	block_pattern_fill(block, BLOCK, SEED, 0, 1);
	block_pattern_fill(newer, BLOCK, SEED, 0, 2);
	memcpy(block, newer, BLOCK / 2);
	for (unsigned s = 0; s < BLOCK / PATTERN_SECTOR_SIZE; s++)
		assert_int_equal(check(block, s, 0, 1, 2, &found), SECTOR_OK);
	assert_int_equal(check(block, 0, 0, 2, 2, &found), SECTOR_OK);
	assert_int_equal(check(block, 4, 0, 2, 2, &found), SECTOR_STALE);
}

static void stamp_on_foreign_payload_is_corrupt(void **state)
{
	/* A genuine generation-6 stamp on generation-5 payload: the checksum
	 * covers the whole sector, so the mix is caught. */
	uint8_t block[BLOCK], other[BLOCK];
	struct sector_stamp found;
	block_pattern_fill(block, BLOCK, SEED, 0, 5);
	block_pattern_fill(other, BLOCK, SEED, 0, 6);
	memcpy(block, other, sizeof(struct sector_stamp));
	assert_int_equal(check(block, 0, 0, 6, 6, &found), SECTOR_CORRUPT);
}

static void mismatch_message_names_offset_expected_and_found(void **state)
{
	uint8_t block[BLOCK];
	struct sector_stamp found;
	uint64_t checksum;
	block_pattern_fill(block, BLOCK, SEED, 8192, 2);
	enum sector_verdict v =
	    block_pattern_check_sector(block, SEED, 4096, 3, 3, &found, &checksum);
	assert_int_equal(v, SECTOR_MISPLACED);
	char line[512];
	sector_mismatch_format(line, sizeof(line), v, SEED, 4096, 3, 3, &found, checksum);
	assert_non_null(strstr(line, "offset 4096"));
	assert_non_null(strstr(line, "misplaced"));
	assert_non_null(strstr(line, "expected offset=4096"));
	assert_non_null(strstr(line, "generation=3"));
	assert_non_null(strstr(line, "found"));
	assert_non_null(strstr(line, "offset=8192"));
	assert_non_null(strstr(line, "generation=2"));
	sector_mismatch_format(line, sizeof(line), SECTOR_STALE, SEED, 0, 3, 5, &found, checksum);
	assert_non_null(strstr(line, "generation=3..5"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(fresh_block_checks_ok),
	    cmocka_unit_test(contents_depend_on_offset_generation_and_seed),
	    cmocka_unit_test(flipped_bit_is_corrupt),
	    cmocka_unit_test(block_from_another_offset_is_misplaced),
	    cmocka_unit_test(older_generation_is_stale),
	    cmocka_unit_test(newer_generation_than_issued_is_flagged),
	    cmocka_unit_test(other_seed_is_another_run),
	    cmocka_unit_test(zeroes_have_no_stamp),
	    cmocka_unit_test(unacknowledged_generations_are_accepted),
	    cmocka_unit_test(torn_write_is_judged_per_sector),
	    cmocka_unit_test(stamp_on_foreign_payload_is_corrupt),
	    cmocka_unit_test(mismatch_message_names_offset_expected_and_found),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
