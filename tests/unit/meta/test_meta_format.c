/* Metadata format 1.0 in memory: golden bytes written by hand from the
 * format's layout (meta.h), round trips, every rejection, geometry. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "meta/meta.h"

/* Sector 0 for shift 11, from the spec's example. */
static const uint8_t golden_prefix_shift11[14] = {0x42, 0x44, 0x45, 0x56, 0x5F, 0x55, 0x42,
						  0x49, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0B};

static void golden_bytes_shift_11(void **state)
{
	uint8_t headers[3] = {0x04, 0x05, 0x07};
	struct metadata m = {.shift = 11, .header_count = 3, .headers = headers};
	uint8_t buf[512 + 3 + 1];
	memset(buf, 0xAA, sizeof(buf));
	assert_int_equal(meta_serialize(&m, buf, sizeof(buf)), 0);
	assert_memory_equal(buf, golden_prefix_shift11, 14);
	for (size_t i = 14; i < 512; i++)
		assert_int_equal(buf[i], 0); /* reserved */
	assert_int_equal(buf[512], 0x04);
	assert_int_equal(buf[513], 0x05);
	assert_int_equal(buf[514], 0x07);
	assert_int_equal(buf[515], 0xAA); /* past 512 + header_count: untouched */
}

static void golden_shift_byte_is_offset_13(void **state)
{
	struct metadata m = {.shift = 6, .header_count = 0, .headers = NULL};
	uint8_t buf[512];
	assert_int_equal(meta_serialize(&m, buf, sizeof(buf)), 0);
	assert_memory_equal(buf, golden_prefix_shift11, 13);
	assert_int_equal(buf[13], 0x06);
}

static void serialize_needs_room_for_every_header(void **state)
{
	uint8_t headers[2] = {0};
	struct metadata m = {.shift = 11, .header_count = 2, .headers = headers};
	uint8_t buf[513];
	assert_int_equal(meta_serialize(&m, buf, sizeof(buf)), -EINVAL);
}

static void round_trip_keeps_shift_and_every_header(void **state)
{
	uint8_t shifts[] = {6, 11, 17};
	for (size_t s = 0; s < sizeof(shifts); s++) {
		uint8_t headers[256];
		for (int i = 0; i < 256; i++)
			headers[i] = (uint8_t)i; /* reserved bits too: kept as loaded */
		struct metadata m = {.shift = shifts[s], .header_count = 256, .headers = headers};
		uint8_t buf[512 + 256];
		assert_int_equal(meta_serialize(&m, buf, sizeof(buf)), 0);
		struct metadata back;
		struct error err = {0};
		assert_int_equal(meta_deserialize(buf, sizeof(buf), &back, &err), 0);
		assert_int_equal(back.shift, shifts[s]);
		assert_int_equal(back.header_count, 256);
		assert_memory_equal(back.headers, headers, 256);
		meta_free(&back);
		assert_null(back.headers);
	}
}

static void exactly_one_sector_has_no_headers(void **state)
{
	uint8_t buf[512] = {0};
	memcpy(buf, golden_prefix_shift11, 14);
	struct metadata m;
	struct error err = {0};
	assert_int_equal(meta_deserialize(buf, sizeof(buf), &m, &err), 0);
	assert_int_equal(m.header_count, 0);
	meta_free(&m);
}

static void short_buffers_are_rejected(void **state)
{
	uint8_t buf[511];
	memcpy(buf, golden_prefix_shift11, 14);
	struct metadata m;
	struct error err = {0};
	assert_int_equal(meta_deserialize(buf, sizeof(buf), &m, &err), -EBADMSG);
	assert_non_null(strstr(err.text, "too short: 511 bytes"));
	assert_int_equal(meta_deserialize(NULL, 0, &m, &err), -EBADMSG);
	assert_non_null(strstr(err.text, "too short: 0 bytes"));
	assert_null(m.headers);
}

static void wrong_magic_is_reported_like_the_reference(void **state)
{
	uint8_t buf[1024] = {0};
	struct metadata m;
	struct error err = {0};
	assert_int_equal(meta_deserialize(buf, sizeof(buf), &m, &err), -EBADMSG);
	assert_string_equal(err.text,
			    "Metadata magic mismatch! Expected: [66, 68, 69, 86, 95, 85, 66, "
			    "73, 0], Found: [0, 0, 0, 0, 0, 0, 0, 0, 0]");
	memcpy(buf, golden_prefix_shift11, 14);
	buf[8] = '!'; /* the NUL is part of the magic */
	assert_int_equal(meta_deserialize(buf, sizeof(buf), &m, &err), -EBADMSG);
	assert_non_null(strstr(err.text, "Found: [66, 68, 69, 86, 95, 85, 66, 73, 33]"));
}

static void other_versions_are_rejected(void **state)
{
	uint8_t buf[1024] = {0};
	memcpy(buf, golden_prefix_shift11, 14);
	struct metadata m;
	struct error err = {0};
	buf[11] = 1; /* 1.1 */
	assert_int_equal(meta_deserialize(buf, sizeof(buf), &m, &err), -EPROTONOSUPPORT);
	assert_string_equal(err.text, "Metadata version mismatch! Expected: 1.0, Found: 1.1");
	buf[11] = 0;
	buf[9] = 2; /* 2.0, the later CRC format */
	assert_int_equal(meta_deserialize(buf, sizeof(buf), &m, &err), -EPROTONOSUPPORT);
	assert_string_equal(err.text, "Metadata version mismatch! Expected: 1.0, Found: 2.0");
	buf[9] = 1;
	buf[10] = 1; /* major is a u16: 257.0 */
	assert_int_equal(meta_deserialize(buf, sizeof(buf), &m, &err), -EPROTONOSUPPORT);
	assert_non_null(strstr(err.text, "Found: 257.0"));
}

static void shift_outside_6_to_17_is_rejected(void **state)
{
	uint8_t buf[1024] = {0};
	memcpy(buf, golden_prefix_shift11, 14);
	struct metadata m;
	struct error err = {0};
	uint8_t bad[] = {0, 5, 18, 64, 255};
	for (size_t i = 0; i < sizeof(bad); i++) {
		buf[13] = bad[i];
		assert_int_equal(meta_deserialize(buf, sizeof(buf), &m, &err), -EINVAL);
		assert_non_null(strstr(err.text, "out of range (6..17)"));
		assert_null(m.headers);
	}
	uint8_t good[] = {6, 17};
	for (size_t i = 0; i < sizeof(good); i++) {
		buf[13] = good[i];
		assert_int_equal(meta_deserialize(buf, sizeof(buf), &m, &err), 0);
		assert_int_equal(m.shift, good[i]);
		meta_free(&m);
	}
}

static void stripe_count_rounds_up(void **state)
{
	assert_int_equal(meta_stripe_count(0, 11), 0);
	assert_int_equal(meta_stripe_count(1, 11), 1);
	assert_int_equal(meta_stripe_count(2048, 11), 1);
	assert_int_equal(meta_stripe_count(2049, 11), 2);
	assert_int_equal(meta_stripe_count(8192, 11), 4);		     /* 4 MiB disk */
	assert_int_equal(meta_stripe_count(UINT64_C(1) << 31, 11), 1048576); /* 1 TiB */
	assert_int_equal(meta_stripe_count(UINT64_MAX, 6), (UINT64_MAX >> 6) + 1);
	assert_int_equal(meta_stripe_count(UINT64_MAX, 64), 1);
}

static void file_size_is_sector_rounded(void **state)
{
	assert_int_equal(meta_file_size(0, 11), 512);
	assert_int_equal(meta_file_size(1, 11), 1024);
	assert_int_equal(meta_file_size(8192, 11), 1024);		  /* 516 -> 1024 */
	assert_int_equal(meta_file_size(512 * 2048, 11), 1024);		  /* 1024 exactly */
	assert_int_equal(meta_file_size(513 * 2048, 11), 1536);		  /* 1025 -> 1536 */
	assert_int_equal(meta_file_size(UINT64_C(1) << 31, 11), 1049088); /* 1 TiB */
	assert_int_equal(meta_file_size(UINT64_MAX, 0), 0);		  /* does not fit */
}

static void create_marks_the_source_stripes(void **state)
{
	struct metadata m;
	assert_int_equal(meta_create(&m, 11, 10, 6), 0);
	assert_int_equal(m.shift, 11);
	assert_int_equal(m.header_count, 10);
	for (int i = 0; i < 10; i++)
		assert_int_equal(m.headers[i], i < 6 ? META_HEADER_HAS_SOURCE : 0);
	meta_free(&m);

	/* A source larger than the disk: stripes past the disk are not represented. */
	assert_int_equal(meta_create(&m, 11, 4, 100), 0);
	assert_int_equal(m.header_count, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(m.headers[i], META_HEADER_HAS_SOURCE);
	meta_free(&m);

	assert_int_equal(meta_create(&m, 16, 0, 0), 0);
	assert_int_equal(m.header_count, 0);
	meta_free(&m);

	assert_int_equal(meta_create(&m, 5, 1, 0), -EINVAL);
	assert_int_equal(meta_create(&m, 18, 1, 0), -EINVAL);
}

static void all_fetched_ignores_stripes_without_source(void **state)
{
	uint8_t headers[5] = {META_HEADER_HAS_SOURCE, 0, META_HEADER_HAS_SOURCE,
			      META_HEADER_WRITTEN, 0};
	struct metadata m = {.shift = 11, .header_count = 5, .headers = headers};
	assert_false(meta_all_fetched(&m));
	headers[0] |= META_HEADER_FETCHED;
	assert_false(meta_all_fetched(&m));
	headers[2] |= META_HEADER_FETCHED;
	assert_true(meta_all_fetched(&m));
	m.header_count = 0;
	assert_true(meta_all_fetched(&m));
}

static void counts_partition_the_range(void **state)
{
	const uint8_t F = META_HEADER_FETCHED, W = META_HEADER_WRITTEN, S = META_HEADER_HAS_SOURCE;
	uint8_t headers[8] = {S | F, S, S | F | W, S, 0, W, F /* no source */, S | W};
	struct metadata m = {.shift = 11, .header_count = 8, .headers = headers};
	struct meta_counts c;
	meta_count(&m, 0, 8, &c);
	assert_int_equal(c.total, 8);
	assert_int_equal(c.fetched, 2);
	assert_int_equal(c.not_fetched, 3);
	assert_int_equal(c.no_source, 3);
	assert_int_equal(c.written, 3);

	meta_count(&m, 6, 100, &c); /* clipped to the headers */
	assert_int_equal(c.total, 2);
	assert_int_equal(c.no_source, 1);
	assert_int_equal(c.not_fetched, 1);
	meta_count(&m, 8, 1, &c);
	assert_int_equal(c.total, 0);
	meta_count(&m, UINT64_MAX, UINT64_MAX, &c);
	assert_int_equal(c.total, 0);
	meta_count(&m, 1, UINT64_MAX, &c);
	assert_int_equal(c.total, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(golden_bytes_shift_11),
	    cmocka_unit_test(golden_shift_byte_is_offset_13),
	    cmocka_unit_test(serialize_needs_room_for_every_header),
	    cmocka_unit_test(round_trip_keeps_shift_and_every_header),
	    cmocka_unit_test(exactly_one_sector_has_no_headers),
	    cmocka_unit_test(short_buffers_are_rejected),
	    cmocka_unit_test(wrong_magic_is_reported_like_the_reference),
	    cmocka_unit_test(other_versions_are_rejected),
	    cmocka_unit_test(shift_outside_6_to_17_is_rejected),
	    cmocka_unit_test(stripe_count_rounds_up),
	    cmocka_unit_test(file_size_is_sector_rounded),
	    cmocka_unit_test(create_marks_the_source_stripes),
	    cmocka_unit_test(all_fetched_ignores_stripes_without_source),
	    cmocka_unit_test(counts_partition_the_range),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
