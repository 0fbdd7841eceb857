/* Base64 strictness: strict for config secrets, lenient padding for KEK
 * fields, and the decoder's messages as the config format words them. */
#include "config_test_util.h"

static void decode_ok(const char *text, bool strict, const char *expected, size_t expected_len)
{
	struct error err = {0};
	struct bytes out;
	int ret = base64_decode(text, strict, &out, &err);
	if (ret)
		fail_msg("\"%s\" (strict %d): %s", text, strict, err.text);
	assert_true(out.present);
	assert_int_equal(out.len, expected_len);
	if (expected_len)
		assert_memory_equal(out.data, expected, expected_len);
	bytes_free(&out);
	assert_null(out.data);
	assert_false(out.present);
}

static void decode_fails(const char *text, bool strict, const char *expected)
{
	struct error err = {0};
	struct bytes out;
	assert_int_equal(base64_decode(text, strict, &out, &err), -EINVAL);
	assert_string_equal(err.text, expected);
	assert_false(out.present);
	assert_null(out.data);
}

static void test_strict_valid(void **state)
{
	(void)state;
	decode_ok("", true, "", 0);
	decode_ok("AQIDBAU=", true, "\x01\x02\x03\x04\x05", 5);
	decode_ok("AQID", true, "\x01\x02\x03", 3);
	decode_ok("AQ==", true, "\x01", 1);
	decode_ok("+/+/", true, "\xfb\xff\xbf", 3);
	decode_ok("dm0zamdlejhfMA==", true, "vm3jgez8_0", 10);
}

static void test_invalid_symbol_message(void **state)
{
	(void)state;
	/* The exact text users of this config format know. */
	decode_fails("%%%", true, "Invalid symbol 37, offset 0.");
	decode_fails("%%%", false, "Invalid symbol 37, offset 0.");
	decode_fails("AQID%AU=", true, "Invalid symbol 37, offset 4.");
	/* URL-safe alphabet and whitespace are not base64 here. */
	decode_fails("AQ-D", true, "Invalid symbol 45, offset 2.");
	decode_fails("AQ_D", false, "Invalid symbol 95, offset 2.");
	decode_fails("AQID\n", true, "Invalid symbol 10, offset 4.");
	decode_fails(" AQID", false, "Invalid symbol 32, offset 0.");
	/* Data after padding: the '=' is what is out of place. */
	decode_fails("AQ==AQID", true, "Invalid symbol 61, offset 2.");
	decode_fails("AQ=D", false, "Invalid symbol 61, offset 2.");
}

static void test_strict_padding(void **state)
{
	(void)state;
	decode_fails("AQIDBAU", true, "Invalid padding");
	decode_fails("AQ", true, "Invalid padding");
	decode_fails("AQ=", true, "Invalid padding");
	decode_fails("AQID=", true, "Invalid padding");
	decode_fails("AQID====", true, "Invalid padding");
	decode_fails("=", true, "Invalid padding");
	decode_fails("A", true, "Invalid input length.");
	decode_fails("AQIDB===", true, "Invalid input length.");
}

static void test_nonzero_trailing_bits(void **state)
{
	(void)state;
	/* "AR==" would carry bits into a byte that does not exist. */
	decode_fails("AR==", true, "Invalid last symbol 82, offset 1.");
	decode_fails("AQJ=", true, "Invalid last symbol 74, offset 2.");
	decode_fails("AR", false, "Invalid last symbol 82, offset 1.");
}

static void test_lenient_padding(void **state)
{
	(void)state;
	decode_ok("AQIDBAU=", false, "\x01\x02\x03\x04\x05", 5);
	decode_ok("AQIDBAU", false, "\x01\x02\x03\x04\x05", 5);
	decode_ok("AQ==", false, "\x01", 1);
	decode_ok("AQ=", false, "\x01", 1);
	decode_ok("AQ", false, "\x01", 1);
	decode_ok("UEt+wI+Ldq1UgQ/P", false, "\x50\x4b\x7e\xc0\x8f\x8b\x76\xad\x54\x81\x0f\xcf",
		  12);
	decode_fails("AQID=", false, "Invalid padding");
	decode_fails("AQ===", false, "Invalid padding");
	decode_fails("A", false, "Invalid input length.");
}

static void test_encode(void **state)
{
	(void)state;
	static const struct {
		const char *plain;
		const char *b64;
	} cases[] = {{"", ""},
		     {"f", "Zg=="},
		     {"fo", "Zm8="},
		     {"foo", "Zm9v"},
		     {"foob", "Zm9vYg=="},
		     {"fooba", "Zm9vYmE="},
		     {"foobar", "Zm9vYmFy"},
		     {"\xfb\xff\xbf", "+/+/"}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = NULL;
		assert_int_equal(
		    base64_encode((const uint8_t *)cases[i].plain, strlen(cases[i].plain), &text),
		    0);
		assert_string_equal(text, cases[i].b64);
		decode_ok(text, true, cases[i].plain, strlen(cases[i].plain));
		free(text);
	}
}

static void test_round_trip_all_byte_values(void **state)
{
	(void)state;
	uint8_t data[256];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(255 - i);
	for (size_t len = 0; len <= sizeof(data); len += 37) {
		char *text = NULL;
		assert_int_equal(base64_encode(data, len, &text), 0);
		decode_ok(text, true, (const char *)data, len);
		free(text);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_strict_valid),
	    cmocka_unit_test(test_invalid_symbol_message),
	    cmocka_unit_test(test_strict_padding),
	    cmocka_unit_test(test_nonzero_trailing_bits),
	    cmocka_unit_test(test_lenient_padding),
	    cmocka_unit_test(test_encode),
	    cmocka_unit_test(test_round_trip_all_byte_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
