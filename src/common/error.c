/* The project's one error type: see "errors" in common.h. */
#include "common/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Every text is one line (common.h), whatever it quotes: a config value, a
 * key from a JSON file, a parser's "near '...'". Control characters, the line
 * breaks among them, become '?'; UTF-8 stays. */
static void keep_one_line(char *text)
{
	for (char *p = text; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

int error_set(struct error *err, int code, const char *fmt, ...)
{
	if (!err)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
	keep_one_line(err->text);
	return code;
}

void error_prefix(struct error *err, const char *fmt, ...)
{
	if (!err)
		return;
	char prefix[ERROR_TEXT_MAX];
	char original[ERROR_TEXT_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(original, err->text, sizeof(original));
	original[sizeof(original) - 1] = '\0';
	size_t prefix_len = strnlen(prefix, sizeof(err->text) - 1);
	size_t original_len = strnlen(original, sizeof(err->text) - 1 - prefix_len);
	memcpy(err->text, prefix, prefix_len);
	memcpy(err->text + prefix_len, original, original_len);
	err->text[prefix_len + original_len] = '\0';
	keep_one_line(err->text);
}

void error_default(struct error *err, int code)
{
	if (err && code != 0 && err->text[0] == '\0')
		snprintf(err->text, sizeof(err->text), "%s", strerror(code < 0 ? -code : code));
}

void error_clear(struct error *err)
{
	if (err)
		err->text[0] = '\0';
}
