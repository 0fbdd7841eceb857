/* RFC 4648 base64, standard alphabet, at two strictness levels: config
 * secrets need canonical padding (length a multiple of 4), KEK fields accept
 * padded, unpadded and partly padded text; both refuse whitespace and
 * non-zero unused trailing bits. The messages ("Invalid symbol 37, offset
 * 0.") are the ones users of this config format already see. */
#include "config/config.h"

#include "common/common.h"
#include "config_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int symbol_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

void bytes_free(struct bytes *b)
{
	if (b->data) {
		secret_wipe(b->data, b->len);
		free(b->data);
	}
	memset(b, 0, sizeof(*b));
}

/* Checks the shape (symbols, padding, length, trailing bits) before any byte
 * is produced, so a failure leaves nothing behind to wipe. */
static int check_shape(const char *text, size_t len, bool strict, size_t *data_len,
		       struct error *err)
{
	size_t first_pad = len;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c == '=') {
			if (first_pad == len)
				first_pad = i;
			continue;
		}
		if (symbol_value(c) < 0)
			return error_set(err, -EINVAL, "Invalid symbol %u, offset %zu.", c, i);
		/* Data after padding: the '=' is the misplaced symbol. */
		if (first_pad != len)
			return error_set(err, -EINVAL, "Invalid symbol %u, offset %zu.",
					 (unsigned)'=', first_pad);
	}

	size_t symbols = first_pad;
	size_t pads = len - first_pad;
	size_t canonical_pads = (4 - symbols % 4) % 4;

	if (symbols % 4 == 1)
		return error_set(err, -EINVAL, "Invalid input length.");
	if (strict ? pads != canonical_pads : pads > canonical_pads)
		return error_set(err, -EINVAL, "Invalid padding");
	if (symbols % 4 != 0) {
		/* The last symbol carries 4 (xx==) or 2 (xxx=) unused bits. */
		unsigned char last = (unsigned char)text[symbols - 1];
		unsigned unused_mask = symbols % 4 == 2 ? 0x0f : 0x03;
		if ((unsigned)symbol_value(last) & unused_mask)
			return error_set(err, -EINVAL, "Invalid last symbol %u, offset %zu.", last,
					 symbols - 1);
	}
	*data_len = symbols / 4 * 3 + (symbols % 4 == 0 ? 0 : symbols % 4 - 1);
	return 0;
}

int base64_decode(const char *text, bool strict, struct bytes *out, struct error *err)
{
	size_t len = strlen(text);
	size_t data_len = 0;
	int ret = check_shape(text, len, strict, &data_len, err);

	memset(out, 0, sizeof(*out));
	if (ret)
		return ret;
	out->data = malloc(data_len ? data_len : 1);
	if (!out->data)
		return -ENOMEM;

	uint32_t acc = 0;
	unsigned bits = 0;
	size_t n = 0;
	for (size_t i = 0; i < len && text[i] != '='; i++) {
		acc = (acc << 6) | (uint32_t)symbol_value((unsigned char)text[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out->data[n++] = (uint8_t)(acc >> bits);
		}
	}
	secret_wipe(&acc, sizeof(acc));
	out->len = n;
	out->present = true;
	return 0;
}

int base64_encode(const uint8_t *data, size_t len, char **out)
{
	size_t groups = len / 3 + (len % 3 != 0);
	size_t n = 0;

	if (groups > (SIZE_MAX - 1) / 4)
		return -ENOMEM;
	char *text = malloc(groups * 4 + 1);
	if (!text)
		return -ENOMEM;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)data[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)data[i + 1] << 8;
		if (i + 2 < len)
			v |= data[i + 2];
		text[n++] = alphabet[(v >> 18) & 63];
		text[n++] = alphabet[(v >> 12) & 63];
		text[n++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
		text[n++] = i + 2 < len ? alphabet[v & 63] : '=';
	}
	text[n] = '\0';
	*out = text;
	return 0;
}
