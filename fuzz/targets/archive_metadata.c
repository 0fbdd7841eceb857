/*
 * metadata.json as a store returns it: any bytes up to the reader's limit.
 * A parse that succeeds must write back to JSON that parses to the same
 * values (the writer and reader agree on everything the reader accepts); a
 * parse that fails says why in one line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "archive/archive.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > ARCHIVE_METADATA_MAX_BYTES)
		return 0;
	struct archive_metadata m;
	struct error err = {0};
	int rc = archive_metadata_parse((const char *)data, size, &m, &err);
	/* A failure says why in one line, even when it quotes the input. */
	for (const char *p = err.text; rc != 0 && *p; p++)
		if ((unsigned char)*p < 0x20)
			abort();
	if (rc == 0) {
		char *text = NULL;
		if (archive_metadata_write(&m, &text, NULL) != 0)
			abort();
		struct archive_metadata again;
		if (archive_metadata_parse(text, strlen(text), &again, NULL) != 0 ||
		    again.format_version != m.format_version ||
		    again.stripe_sector_count != m.stripe_sector_count ||
		    again.compression != m.compression)
			abort();
		for (int i = 0; i < 2; i++)
			if (again.wrapped_key[i].len != m.wrapped_key[i].len ||
			    (m.wrapped_key[i].len &&
			     memcmp(again.wrapped_key[i].data, m.wrapped_key[i].data,
				    m.wrapped_key[i].len) != 0))
				abort();
		archive_metadata_free(&again);
		free(text);
	}
	archive_metadata_free(&m);
	return 0;
}
