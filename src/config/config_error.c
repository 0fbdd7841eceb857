#include "config_error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int config_error(char err[CONFIG_ERROR_MAX], const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, CONFIG_ERROR_MAX, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

void config_error_prefix(char err[CONFIG_ERROR_MAX], const char *fmt, ...)
{
	char prefix[CONFIG_ERROR_MAX];
	char original[CONFIG_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(original, err, CONFIG_ERROR_MAX);
	original[CONFIG_ERROR_MAX - 1] = '\0';

	/* Truncation keeps the start of the line, which names the field. */
	size_t prefix_len = strnlen(prefix, CONFIG_ERROR_MAX - 1);
	size_t original_len = strnlen(original, CONFIG_ERROR_MAX - 1 - prefix_len);
	memcpy(err, prefix, prefix_len);
	memcpy(err + prefix_len, original, original_len);
	err[prefix_len + original_len] = '\0';
}

void config_error_default(char err[CONFIG_ERROR_MAX], int ret)
{
	if (ret && err[0] == '\0')
		snprintf(err, CONFIG_ERROR_MAX, "%s", strerror(-ret));
}

void config_quote(const char *text, size_t len, size_t max, char *buf, size_t size)
{
	size_t used = 0;

	if (size == 0)
		return;
	for (size_t i = 0; i < len && i < max; i++) {
		unsigned char c = (unsigned char)text[i];
		char piece[5];

		if (c == '\n')
			snprintf(piece, sizeof(piece), "\\n");
		else if (c == '\t')
			snprintf(piece, sizeof(piece), "\\t");
		else if (c < 0x20 || c == 0x7f)
			snprintf(piece, sizeof(piece), "\\x%02x", c);
		else
			snprintf(piece, sizeof(piece), "%c", c);
		size_t n = strlen(piece);
		if (used + n + 1 > size)
			break;
		memcpy(buf + used, piece, n);
		used += n;
	}
	if (len > max && used + 4 <= size) {
		memcpy(buf + used, "...", 3);
		used += 3;
	}
	buf[used] = '\0';
}
