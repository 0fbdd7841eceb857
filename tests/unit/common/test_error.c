/* The one error type (common.h): what every layer relies on when it fills,
 * extends and prints a struct error. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "common/common.h"

static void set_returns_the_code_and_formats(void **state)
{
	struct error err = {0};
	assert_int_equal(error_set(&err, -EINVAL, "field %s: %d is out of range", "x", 7), -EINVAL);
	assert_string_equal(err.text, "field x: 7 is out of range");
	assert_int_equal(error_set(&err, 0, "replaced"), 0);
	assert_string_equal(err.text, "replaced");
}

static void set_truncates_at_the_text_size(void **state)
{
	struct error err;
	char long_text[2 * ERROR_TEXT_MAX];
	memset(long_text, 'a', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	memset(&err, 0x55, sizeof(err));
	assert_int_equal(error_set(&err, -E2BIG, "%s", long_text), -E2BIG);
	assert_int_equal(strlen(err.text), ERROR_TEXT_MAX - 1);
	assert_memory_equal(err.text, long_text, ERROR_TEXT_MAX - 1);
}

static void null_error_is_allowed_everywhere(void **state)
{
	assert_int_equal(error_set(NULL, -ENOENT, "no %s", "file"), -ENOENT);
	error_prefix(NULL, "context: ");
	error_default(NULL, -ENOMEM);
	error_clear(NULL);
}

static void prefix_adds_context_in_front(void **state)
{
	struct error err = {0};
	error_set(&err, -EINVAL, "bad value");
	error_prefix(&err, "config %s: ", "disk.yaml");
	assert_string_equal(err.text, "config disk.yaml: bad value");
}

static void prefix_keeps_the_start_when_cut(void **state)
{
	struct error err = {0};
	char tail[ERROR_TEXT_MAX];
	memset(tail, 't', sizeof(tail) - 1);
	tail[sizeof(tail) - 1] = '\0';
	error_set(&err, -EINVAL, "%s", tail); /* a full text */
	error_prefix(&err, "head: ");
	assert_int_equal(strlen(err.text), ERROR_TEXT_MAX - 1);
	assert_memory_equal(err.text, "head: ttt", 9);

	/* A prefix longer than the text size is itself cut; nothing overflows. */
	char head[2 * ERROR_TEXT_MAX];
	memset(head, 'h', sizeof(head) - 1);
	head[sizeof(head) - 1] = '\0';
	error_set(&err, -EINVAL, "original");
	error_prefix(&err, "%s", head);
	assert_int_equal(strlen(err.text), ERROR_TEXT_MAX - 1);
	assert_memory_equal(err.text, head, ERROR_TEXT_MAX - 1);
}

static void default_fills_only_an_empty_text(void **state)
{
	struct error err = {0};
	error_default(&err, -ENOMEM);
	assert_string_equal(err.text, strerror(ENOMEM));

	error_set(&err, -ENOMEM, "out of memory for 12 stripes");
	error_default(&err, -ENOMEM);
	assert_string_equal(err.text, "out of memory for 12 stripes");

	error_clear(&err);
	assert_string_equal(err.text, "");
	error_default(&err, 0); /* no failure: nothing to explain */
	assert_string_equal(err.text, "");
}

/* A quoted value with a line break in it (a YAML string may span lines)
 * still gives one line. */
static void set_and_prefix_keep_one_line(void **state)
{
	struct error err = {0};
	error_set(&err, -EINVAL, "key \"%s\" is not a stripe index", "a\nb\r\x1b[31m\x7f\xc3\xa9");
	/* Control characters only: UTF-8 from a JSON string stays. */
	assert_string_equal(err.text, "key \"a?b??[31m?\xc3\xa9\" is not a stripe index");

	error_set(&err, -EINVAL, "the port must be a number");
	error_prefix(&err, "metrics_listen: %s: ", "[::1]:920\npath: d\t");
	assert_string_equal(err.text,
			    "metrics_listen: [::1]:920?path: d?: the port must be a number");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(set_returns_the_code_and_formats),
	    cmocka_unit_test(set_truncates_at_the_text_size),
	    cmocka_unit_test(null_error_is_allowed_everywhere),
	    cmocka_unit_test(prefix_adds_context_in_front),
	    cmocka_unit_test(prefix_keeps_the_start_when_cut),
	    cmocka_unit_test(default_fills_only_an_empty_text),
	    cmocka_unit_test(set_and_prefix_keep_one_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
