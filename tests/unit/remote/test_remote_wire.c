/* The protocol's bytes (remote.h, wire): golden exchanges decoded and
 * encoded both ways, the metadata size bounds a network peer is held to,
 * padded headers and the source size derived from them, status names. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "meta/meta.h"
#include "remote/remote.h"
#include "remote/remote_internal.h"

#define GOLDEN_BLOB	  (golden_metadata_reply + 9)
#define GOLDEN_BLOB_BYTES (GOLDEN_METADATA_REPLY_BYTES - 9)

static void golden_metadata_reply_parses(void **state)
{
	assert_int_equal(golden_metadata_reply[0], REMOTE_STATUS_OK);
	assert_int_equal(remote_get_u64(golden_metadata_reply + 1), GOLDEN_BLOB_BYTES);

	struct remote_metadata m;
	struct error err = {0};
	assert_int_equal(remote_metadata_parse(GOLDEN_BLOB, GOLDEN_BLOB_BYTES, &m, &err), 0);
	assert_int_equal(m.shift, 11);
	assert_int_equal(m.header_count, 4);
	assert_int_equal(m.source_stripes, 4);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(m.headers[i], 0x07);
		assert_true(remote_metadata_has_stripe(&m, (uint64_t)i));
	}
	assert_false(remote_metadata_has_stripe(&m, 4));
	assert_false(remote_metadata_has_stripe(&m, UINT64_MAX));
	remote_metadata_free(&m);
	assert_null(m.headers);
}

static void golden_metadata_reply_encodes(void **state)
{
	const uint8_t headers[4] = {7, 7, 7, 7};
	uint8_t *blob;
	size_t len;
	assert_int_equal(remote_metadata_encode(11, headers, 4, &blob, &len), 0);
	assert_int_equal(len, GOLDEN_BLOB_BYTES);
	assert_memory_equal(blob, GOLDEN_BLOB, len);

	uint8_t reply_header[REMOTE_REPLY_HEADER_BYTES];
	reply_header[0] = REMOTE_STATUS_OK;
	remote_put_u64(reply_header + 1, len);
	assert_memory_equal(reply_header, golden_metadata_reply, sizeof(reply_header));
	free(blob);
}

static void golden_read_stripe_bytes(void **state)
{
	uint8_t req[REMOTE_READ_STRIPE_REQUEST_BYTES];
	req[0] = REMOTE_OP_READ_STRIPE;
	remote_put_u64(req + 1, 0);
	assert_memory_equal(req, golden_read_stripe_0_request, sizeof(req));
	remote_put_u64(req + 1, UINT64_C(0x0123456789abcdef));
	assert_memory_equal(req, golden_read_stripe_big_request, sizeof(req));
	assert_int_equal(remote_get_u64(golden_read_stripe_big_request + 1),
			 UINT64_C(0x0123456789abcdef));
	assert_int_equal(golden_metadata_request[0], REMOTE_OP_METADATA);

	uint8_t reply[REMOTE_REPLY_HEADER_BYTES];
	reply[0] = REMOTE_STATUS_OK;
	remote_put_u64(reply + 1, (uint64_t)SECTOR_SIZE << 11);
	assert_memory_equal(reply, golden_read_stripe_reply_header, sizeof(reply));
	assert_int_equal(remote_get_u64(golden_read_stripe_reply_header + 1), 1048576);
}

static void metadata_round_trips(void **state)
{
	uint8_t headers[1000];
	for (size_t i = 0; i < sizeof(headers); i++)
		headers[i] = (uint8_t)(i % 8);
	for (uint32_t shift = META_MIN_SHIFT; shift <= META_MAX_LOAD_SHIFT; shift++) {
		uint8_t *blob;
		size_t len;
		assert_int_equal(
		    remote_metadata_encode(shift, headers, sizeof(headers), &blob, &len), 0);
		assert_int_equal(len, 512 + sizeof(headers));
		struct remote_metadata m;
		assert_int_equal(remote_metadata_parse(blob, len, &m, NULL), 0);
		assert_int_equal(m.shift, shift);
		assert_int_equal(m.header_count, sizeof(headers));
		assert_memory_equal(m.headers, headers, sizeof(headers));
		remote_metadata_free(&m);
		free(blob);
	}
}

static void encode_refuses_what_no_peer_could_parse(void **state)
{
	uint8_t h = 7, *blob = (uint8_t *)&h;
	size_t len = 1;
	assert_int_equal(remote_metadata_encode(5, &h, 1, &blob, &len), -EINVAL);
	assert_null(blob);
	assert_int_equal(len, 0);
	assert_int_equal(remote_metadata_encode(18, &h, 1, &blob, &len), -EINVAL);
	assert_int_equal(
	    remote_metadata_encode(11, &h, REMOTE_METADATA_MAX_BYTES - 512 + 1, &blob, &len),
	    -EINVAL);
}

static void size_bounds(void **state)
{
	size_t big = REMOTE_METADATA_MAX_BYTES + 1;
	uint8_t *blob = calloc(1, big);
	assert_non_null(blob);
	memcpy(blob, GOLDEN_BLOB, 512);
	struct remote_metadata m;
	struct error err = {0};

	assert_int_equal(remote_metadata_parse(blob, 511, &m, &err), -EPROTO);
	assert_string_equal(err.text,
			    "Remote metadata size 511 is out of range (512..67108864 bytes)");
	assert_int_equal(remote_metadata_parse(blob, big, &m, &err), -EPROTO);
	assert_string_equal(err.text,
			    "Remote metadata size 67108865 is out of range (512..67108864 bytes)");

	/* Both limits themselves are fine: no stripe at all, and 64 MiB. */
	assert_int_equal(remote_metadata_parse(blob, 512, &m, &err), 0);
	assert_int_equal(m.header_count, 0);
	assert_int_equal(m.source_stripes, 0);
	assert_false(remote_metadata_has_stripe(&m, 0));
	remote_metadata_free(&m);
	blob[big - 2] = META_HEADER_HAS_SOURCE;
	assert_int_equal(remote_metadata_parse(blob, big - 1, &m, &err), 0);
	assert_int_equal(m.header_count, REMOTE_METADATA_MAX_BYTES - 512);
	assert_int_equal(m.source_stripes, REMOTE_METADATA_MAX_BYTES - 512);
	remote_metadata_free(&m);
	free(blob);
}

static void bad_header_sector_refused(void **state)
{
	uint8_t blob[GOLDEN_BLOB_BYTES];
	struct remote_metadata m;
	struct error err = {0};

	memcpy(blob, GOLDEN_BLOB, sizeof(blob));
	blob[0] = 'X';
	assert_int_equal(remote_metadata_parse(blob, sizeof(blob), &m, &err), -EPROTO);
	assert_non_null(strstr(err.text, "Remote metadata: Metadata magic mismatch"));
	assert_null(m.headers);

	memcpy(blob, GOLDEN_BLOB, sizeof(blob));
	blob[9] = 2; /* a later format's blob */
	assert_int_equal(remote_metadata_parse(blob, sizeof(blob), &m, &err), -EPROTO);
	assert_string_equal(
	    err.text, "Remote metadata: Metadata version mismatch! Expected: 1.0, Found: 2.0");

	memcpy(blob, GOLDEN_BLOB, sizeof(blob));
	blob[13] = 40;
	assert_int_equal(remote_metadata_parse(blob, sizeof(blob), &m, &err), -EPROTO);
	assert_string_equal(
	    err.text,
	    "Remote metadata: Metadata stripe sector count shift 40 is out of range (6..17)");
}

/* A server sends its whole pre-sized metadata file: zero headers past the
 * disk. The disk it serves ends at the last WRITTEN or HAS_SOURCE header;
 * FETCHED alone does not count. */
static void padded_headers_and_source_stripes(void **state)
{
	uint8_t headers[1536] = {0};
	headers[0] = META_HEADER_HAS_SOURCE;
	headers[5] = META_HEADER_WRITTEN;
	headers[9] = META_HEADER_HAS_SOURCE | META_HEADER_FETCHED;
	headers[10] = META_HEADER_FETCHED;
	uint8_t *blob;
	size_t len;
	assert_int_equal(remote_metadata_encode(11, headers, sizeof(headers), &blob, &len), 0);
	struct remote_metadata m;
	assert_int_equal(remote_metadata_parse(blob, len, &m, NULL), 0);
	assert_int_equal(m.header_count, 1536);
	assert_int_equal(m.source_stripes, 10);
	assert_true(remote_metadata_has_stripe(&m, 0));
	assert_false(remote_metadata_has_stripe(&m, 1));
	assert_true(remote_metadata_has_stripe(&m, 5));
	assert_true(remote_metadata_has_stripe(&m, 9));
	assert_false(remote_metadata_has_stripe(&m, 10));
	assert_false(remote_metadata_has_stripe(&m, 1535));
	assert_false(remote_metadata_has_stripe(&m, 1536));
	remote_metadata_free(&m);

	memset(headers, 0, sizeof(headers));
	headers[1535] = META_HEADER_WRITTEN;
	free(blob);
	assert_int_equal(remote_metadata_encode(11, headers, sizeof(headers), &blob, &len), 0);
	assert_int_equal(remote_metadata_parse(blob, len, &m, NULL), 0);
	assert_int_equal(m.source_stripes, 1536);
	remote_metadata_free(&m);
	free(blob);
}

static void every_status_byte_has_a_name(void **state)
{
	assert_string_equal(remote_status_name(0x00), "OK");
	assert_string_equal(remote_status_name(0x01), "INVALID_STRIPE");
	assert_string_equal(remote_status_name(0x02), "NO_DATA");
	assert_string_equal(remote_status_name(0x03), "NOT_FETCHED");
	assert_string_equal(remote_status_name(0xFE), "INVALID_COMMAND");
	assert_string_equal(remote_status_name(0xFF), "SERVER_ERROR");
	for (unsigned b = 0x04; b < 0xFE; b++)
		assert_string_equal(remote_status_name((uint8_t)b), "UNKNOWN");
	assert_int_equal(REMOTE_STATUS_INVALID_STRIPE, 1);
	assert_int_equal(REMOTE_STATUS_NO_DATA, 2);
	assert_int_equal(REMOTE_STATUS_NOT_FETCHED, 3);
	assert_int_equal(REMOTE_STATUS_INVALID_COMMAND, 0xFE);
	assert_int_equal(REMOTE_STATUS_SERVER_ERROR, 0xFF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(golden_metadata_reply_parses),
	    cmocka_unit_test(golden_metadata_reply_encodes),
	    cmocka_unit_test(golden_read_stripe_bytes),
	    cmocka_unit_test(metadata_round_trips),
	    cmocka_unit_test(encode_refuses_what_no_peer_could_parse),
	    cmocka_unit_test(size_bounds),
	    cmocka_unit_test(bad_header_sector_refused),
	    cmocka_unit_test(padded_headers_and_source_stripes),
	    cmocka_unit_test(every_status_byte_has_a_name),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
