/* The server's view of its disk: which headers it serves and what a
 * READ_STRIPE is answered before the disk is read. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "remote/server_internal.h"

#define F META_HEADER_FETCHED
#define W META_HEADER_WRITTEN
#define S META_HEADER_HAS_SOURCE

static void status_checks_in_order(void **state)
{
	const uint8_t h[] = {0, W, S, S | F, S | W, S | F | W, F};
	assert_int_equal(server_stripe_status(h, 7, 0), REMOTE_STATUS_NO_DATA);
	assert_int_equal(server_stripe_status(h, 7, 1), REMOTE_STATUS_OK);
	assert_int_equal(server_stripe_status(h, 7, 2), REMOTE_STATUS_NOT_FETCHED);
	assert_int_equal(server_stripe_status(h, 7, 3), REMOTE_STATUS_OK);
	/* Not fetched is checked before written. */
	assert_int_equal(server_stripe_status(h, 7, 4), REMOTE_STATUS_NOT_FETCHED);
	assert_int_equal(server_stripe_status(h, 7, 5), REMOTE_STATUS_OK);
	/* FETCHED without a source is no data. */
	assert_int_equal(server_stripe_status(h, 7, 6), REMOTE_STATUS_NO_DATA);
	assert_int_equal(server_stripe_status(h, 7, 7), REMOTE_STATUS_INVALID_STRIPE);
	assert_int_equal(server_stripe_status(h, 7, UINT64_MAX), REMOTE_STATUS_INVALID_STRIPE);
	assert_int_equal(server_stripe_status(NULL, 0, 0), REMOTE_STATUS_INVALID_STRIPE);
}

static void without_metadata_every_stripe_is_served(void **state)
{
	uint32_t shift = 0;
	uint8_t *h = NULL;
	uint64_t n = 0;
	/* 4 MiB: four stripes of 1 MiB; one sector more: a fifth. */
	assert_int_equal(remote_server_headers(NULL, 8192, &shift, &h, &n, NULL), 0);
	assert_int_equal(shift, 11);
	assert_int_equal(n, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(h[i], 0x07);
	free(h);
	assert_int_equal(remote_server_headers(NULL, 8193, &shift, &h, &n, NULL), 0);
	assert_int_equal(n, 5);
	free(h);
}

static void metadata_is_cut_to_the_disk_and_no_source_is_written(void **state)
{
	uint8_t file[1024] = {0}; /* a padded file: 1024 headers */
	file[0] = S | F;
	file[1] = 0;	 /* written with track_written off: served */
	file[2] = S;	 /* not fetched */
	file[3] = S | W; /* written, not fetched */
	struct metadata m = {.shift = 6, .header_count = sizeof(file), .headers = file};
	uint32_t shift = 0;
	uint8_t *h = NULL;
	uint64_t n = 0;
	/* 4 stripes of 64 sectors, the last one short. */
	assert_int_equal(remote_server_headers(&m, 200, &shift, &h, &n, NULL), 0);
	assert_int_equal(shift, 6);
	assert_int_equal(n, 4);
	const uint8_t want[] = {S | F, W, S, S | W};
	assert_memory_equal(h, want, 4);
	assert_int_equal(server_stripe_status(h, n, 1), REMOTE_STATUS_OK);
	free(h);

	struct error err = {0};
	m.header_count = 3;
	assert_int_equal(remote_server_headers(&m, 256, &shift, &h, &n, &err), -EINVAL);
	assert_string_equal(err.text,
			    "the metadata has 3 stripe headers but the disk has 4 stripes");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(status_checks_in_order),
	    cmocka_unit_test(without_metadata_every_stripe_is_served),
	    cmocka_unit_test(metadata_is_cut_to_the_disk_and_no_source_is_written),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
