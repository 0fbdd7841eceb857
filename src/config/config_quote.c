/* Quoting config text inside one-line messages. */
#include "config_internal.h"

#include <stdio.h>
#include <string.h>

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
