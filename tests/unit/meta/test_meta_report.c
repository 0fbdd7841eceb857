/* dump-metadata's views: the run-compressed stripe lists ("a, b", "a-b") and the
 * --map picture with its legend. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta/meta.h"

#define F META_HEADER_FETCHED
#define W META_HEADER_WRITTEN
#define S META_HEADER_HAS_SOURCE

static const char legend[] =
    "legend: '#' fetched, 'w' written, '+' partly fetched, '.' not fetched, ' ' no source\n";

/* What meta_print_stripe_list writes, as a string (free()). */
static char *list_of(uint8_t *headers, uint64_t n, uint8_t flag)
{
	struct metadata m = {.shift = 11, .header_count = n, .headers = headers};
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	assert_non_null(out);
	meta_print_stripe_list(out, &m, flag);
	assert_int_equal(fclose(out), 0);
	return text;
}

static void assert_list(uint8_t *headers, uint64_t n, uint8_t flag, const char *expected)
{
	char *text = list_of(headers, n, flag);
	assert_string_equal(text, expected);
	free(text);
}

static void lists_are_compressed_into_runs(void **state)
{
	/* The spec's example: {0,1,2,3,7,9,10} -> "0-3, 7, 9, 10". */
	uint8_t h[12] = {F, F, F, F, 0, 0, 0, F, 0, F, F, 0};
	assert_list(h, 12, F, "0-3, 7, 9, 10");
	/* Runs touching the last header are closed too. */
	uint8_t tail[6] = {0, S, 0, S, S, S};
	assert_list(tail, 6, S, "1, 3-5");
	uint8_t pair_at_end[4] = {W, 0, W, W};
	assert_list(pair_at_end, 4, W, "0, 2, 3");
	uint8_t single[3] = {0, S, 0};
	assert_list(single, 3, S, "1");
	uint8_t all[1000];
	memset(all, S | F, sizeof(all));
	assert_list(all, 1000, S, "0-999");
	assert_list(all, 1000, W, "");
	assert_list(all, 0, S, "");
}

static void lists_select_one_bit(void **state)
{
	uint8_t h[6] = {S | F, S | F | W, S, W, 0xF8 /* reserved bits only */, S | W};
	assert_list(h, 6, F, "0, 1");
	assert_list(h, 6, W, "1, 3, 5");
	assert_list(h, 6, S, "0-2, 5");
}

/* What meta_print_map writes (free()), and its return value. */
static char *map_of(uint8_t *headers, uint64_t n, uint8_t shift, uint64_t stripes, uint32_t width,
		    int *rc)
{
	struct metadata m = {.shift = shift, .header_count = n, .headers = headers};
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	assert_non_null(out);
	*rc = meta_print_map(out, &m, stripes, width);
	assert_int_equal(fclose(out), 0);
	return text;
}

static void map_draws_one_character_per_stripe_when_small(void **state)
{
	uint8_t h[10] = {S | F, S | F, S, S, S | F | W, 0, 0, W, S, S};
	int rc;
	char *text = map_of(h, 10, 11, 10, 4, &rc);
	assert_int_equal(rc, 0);
	char expected[1024];
	snprintf(expected, sizeof(expected),
		 "stripe map: 10 stripes of 1 MiB, 1 stripe per character\n"
		 "0 |##..|\n"
		 "4 |w  w|\n"
		 "8 |..|\n"
		 "%s"
		 "fetched: 3 (30.0%%)  written: 2 (20.0%%)  not fetched: 4 (40.0%%)  "
		 "no source: 3 (30.0%%)  of 10 stripes\n",
		 legend);
	assert_string_equal(text, expected);
	free(text);
}

static void map_groups_stripes_to_stay_within_32_rows(void **state)
{
	uint8_t *h = calloc(3000, 1);
	memset(h, S | F, 10);	  /* cell 0: all fetched */
	memset(h + 10, S | F, 5); /* cell 1: half fetched */
	memset(h + 15, S, 5);
	memset(h + 20, S, 10); /* cell 2: nothing fetched yet */
	h[2999] = S | F | W;   /* last cell: written */
	int rc;
	/* 10 columns x 32 rows = 320 cells: 10 stripes per character. */
	char *text = map_of(h, 3000, 11, 3000, 10, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(text, "stripe map: 3000 stripes of 1 MiB, 10 stripes per character\n"
				     "   0 |#+.       |\n"
				     " 100 |          |\n"));
	assert_non_null(strstr(text, "\n2900 |         w|\n"));
	int rows = 0;
	for (char *p = text; (p = strstr(p, "|\n")); p++)
		rows++;
	assert_int_equal(rows, 30);
	assert_non_null(strstr(text, "fetched: 16 (0.5%)  written: 1 (0.0%)  not fetched: 15 "
				     "(0.5%)  no source: 2969 (98.9%)  of 3000 stripes\n"));
	free(text);
	free(h);
}

static void map_last_cell_may_hold_fewer_stripes(void **state)
{
	/* 7 stripes, width 1 -> 32 cells allowed, 1 stripe each; with width 1
	 * and 70 stripes: 3 per cell, the last cell holding one. */
	uint8_t h[70] = {0};
	h[69] = S;
	int rc;
	char *text = map_of(h, 70, 11, 70, 1, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(text, "3 stripes per character\n"));
	assert_non_null(strstr(text, "\n69 |.|\n"));
	free(text);
}

static void percentages_round_down(void **state)
{
	uint8_t h[3] = {S | F, S | F, S};
	int rc;
	char *text = map_of(h, 3, 6, 3, 64, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(text, "stripe map: 3 stripes of 32 KiB, 1 stripe per character\n"
				     "0 |##.|\n"));
	assert_non_null(strstr(text, "fetched: 2 (66.6%)  written: 0 (0.0%)  not fetched: 1 "
				     "(33.3%)  no source: 0 (0.0%)  of 3 stripes\n"));
	free(text);
}

static void map_covers_only_existing_headers(void **state)
{
	uint8_t h[2] = {S, S};
	int rc;
	char *text = map_of(h, 2, 11, 50, 64, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(text, "stripe map: 2 stripes"));
	assert_non_null(strstr(text, "0 |..|\n"));
	free(text);
}

static void empty_map_has_only_the_legend(void **state)
{
	int rc;
	char *text = map_of(NULL, 0, 11, 0, 64, &rc);
	assert_int_equal(rc, 0);
	char expected[1024];
	snprintf(expected, sizeof(expected),
		 "stripe map: 0 stripes of 1 MiB, 1 stripe per character\n"
		 "%s"
		 "fetched: 0 (0.0%%)  written: 0 (0.0%%)  not fetched: 0 (0.0%%)  "
		 "no source: 0 (0.0%%)  of 0 stripes\n",
		 legend);
	assert_string_equal(text, expected);
	free(text);
}

static void map_width_is_bounded(void **state)
{
	uint8_t h[1] = {S};
	int rc;
	char *text = map_of(h, 1, 11, 1, 0, &rc);
	assert_int_equal(rc, -EINVAL);
	free(text);
	text = map_of(h, 1, 11, 1, META_MAP_MAX_WIDTH + 1, &rc);
	assert_int_equal(rc, -EINVAL);
	free(text);
	text = map_of(h, 1, 11, 1, META_MAP_MAX_WIDTH, &rc);
	assert_int_equal(rc, 0);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(lists_are_compressed_into_runs),
	    cmocka_unit_test(lists_select_one_bit),
	    cmocka_unit_test(map_draws_one_character_per_stripe_when_small),
	    cmocka_unit_test(map_groups_stripes_to_stay_within_32_rows),
	    cmocka_unit_test(map_last_cell_may_hold_fewer_stripes),
	    cmocka_unit_test(percentages_round_down),
	    cmocka_unit_test(map_covers_only_existing_headers),
	    cmocka_unit_test(empty_map_has_only_the_legend),
	    cmocka_unit_test(map_width_is_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
