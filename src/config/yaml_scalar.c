/* Classification of plain YAML scalars, matching serde_yaml 0.9, which
 * existing configs of this format were written for: true/True/TRUE,
 * false/False/FALSE, null/Null/NULL/~ or nothing, integers in decimal, 0x,
 * 0o and 0b. */
#include "yaml_fields.h"

#include "common/common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool text_is(const char *text, size_t len, const char *word)
{
	return len == strlen(word) && memcmp(text, word, len) == 0;
}

static bool is_null_text(const char *text, size_t len)
{
	return len == 0 || text_is(text, len, "~") || text_is(text, len, "null") ||
	       text_is(text, len, "Null") || text_is(text, len, "NULL");
}

static bool is_bool_text(const char *text, size_t len)
{
	static const char *const words[] = {"true", "True", "TRUE", "false", "False", "FALSE"};
	for (size_t i = 0; i < ARRAY_SIZE(words); i++)
		if (text_is(text, len, words[i]))
			return true;
	return false;
}

static bool all_digits(const char *text, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (text[i] < '0' || text[i] > '9')
			return false;
	return true;
}

/* YAML 1.2: a leading zero followed by more digits ("012") is a string. */
static bool digits_but_not_number(const char *text, size_t len)
{
	if (len > 0 && (text[0] == '-' || text[0] == '+')) {
		text++;
		len--;
	}
	return len > 1 && text[0] == '0' && all_digits(text + 1, len - 1);
}

static int digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return 99;
}

static bool parse_radix(const char *text, size_t len, unsigned radix, uint64_t *value,
			bool *overflow)
{
	uint64_t v = 0;
	bool over = false;

	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		int d = digit_value(text[i]);
		if (d >= (int)radix)
			return false;
		if (__builtin_mul_overflow(v, radix, &v) || __builtin_add_overflow(v, d, &v))
			over = true;
	}
	*value = over ? UINT64_MAX : v;
	*overflow = over;
	return true;
}

bool yaml_parse_uint(const char *text, size_t len, uint64_t *value, bool *overflow)
{
	const char *digits = text;
	size_t n = len;

	if (n > 0 && digits[0] == '+') {
		digits++;
		n--;
	}
	if (n > 2 && digits[0] == '0') {
		unsigned radix = digits[1] == 'x'   ? 16
				 : digits[1] == 'o' ? 8
				 : digits[1] == 'b' ? 2
						    : 0;
		if (radix && parse_radix(digits + 2, n - 2, radix, value, overflow))
			return true;
	}
	if (digits_but_not_number(text, len))
		return false;
	return parse_radix(digits, n, 10, value, overflow);
}

static bool is_negative_int(const char *text, size_t len)
{
	uint64_t value;
	bool overflow;

	if (len < 2 || text[0] != '-' || text[1] == '+')
		return false;
	return yaml_parse_uint(text + 1, len - 1, &value, &overflow);
}

/* Finite floats as Rust's f64 parser reads them, plus YAML's .inf/.nan. */
static bool is_float_text(const char *text, size_t len)
{
	static const char *const specials[] = {".inf",	".Inf",	 ".INF",  "+.inf", "+.Inf", "+.INF",
					       "-.inf", "-.Inf", "-.INF", ".nan",  ".NaN",  ".NAN"};
	size_t i = 0, mantissa_digits = 0;

	for (size_t s = 0; s < ARRAY_SIZE(specials); s++)
		if (text_is(text, len, specials[s]))
			return true;
	if (i < len && (text[i] == '+' || text[i] == '-'))
		i++;
	while (i < len && text[i] >= '0' && text[i] <= '9') {
		i++;
		mantissa_digits++;
	}
	if (i < len && text[i] == '.') {
		i++;
		while (i < len && text[i] >= '0' && text[i] <= '9') {
			i++;
			mantissa_digits++;
		}
	}
	if (mantissa_digits == 0)
		return false;
	if (i < len && (text[i] == 'e' || text[i] == 'E')) {
		i++;
		if (i < len && (text[i] == '+' || text[i] == '-'))
			i++;
		if (!all_digits(text + i, len - i))
			return false;
		i = len;
	}
	if (i != len)
		return false;

	/* "1e999" has float syntax but is infinite: serde_yaml keeps it a string. */
	char *copy = strndup(text, len);
	if (!copy)
		return true;
	bool finite = isfinite(strtod(copy, NULL));
	free(copy);
	return finite;
}

enum yaml_scalar_type yaml_scalar_type(const yaml_node_t *node)
{
	const char *text = (const char *)node->data.scalar.value;
	size_t len = node->data.scalar.length;

	if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE &&
	    node->data.scalar.style != YAML_ANY_SCALAR_STYLE)
		return YAML_SCALAR_STRING;
	if (is_null_text(text, len))
		return YAML_SCALAR_NULL;
	if (is_bool_text(text, len))
		return YAML_SCALAR_BOOL;

	uint64_t value;
	bool overflow;
	if (yaml_parse_uint(text, len, &value, &overflow))
		return YAML_SCALAR_UINT;
	if (is_negative_int(text, len))
		return YAML_SCALAR_NEGATIVE_INT;
	if (digits_but_not_number(text, len))
		return YAML_SCALAR_STRING;
	if (is_float_text(text, len))
		return YAML_SCALAR_FLOAT;
	return YAML_SCALAR_STRING;
}
