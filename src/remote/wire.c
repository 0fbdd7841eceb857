/* The protocol's bytes: status names and the METADATA blob. The blob is the
 * metadata file format's header sector plus headers, so its (de)serialization
 * is the meta layer's; this file adds the bounds a network peer needs and the
 * source size the client derives. */
#include "remote/remote.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "meta/meta.h"

const char *remote_status_name(uint8_t status)
{
	switch (status) {
	case REMOTE_STATUS_OK:
		return "OK";
	case REMOTE_STATUS_INVALID_STRIPE:
		return "INVALID_STRIPE";
	case REMOTE_STATUS_NO_DATA:
		return "NO_DATA";
	case REMOTE_STATUS_NOT_FETCHED:
		return "NOT_FETCHED";
	case REMOTE_STATUS_INVALID_COMMAND:
		return "INVALID_COMMAND";
	case REMOTE_STATUS_SERVER_ERROR:
		return "SERVER_ERROR";
	default:
		return "UNKNOWN";
	}
}

static bool serves(uint8_t header)
{
	return (header & (META_HEADER_WRITTEN | META_HEADER_HAS_SOURCE)) != 0;
}

int remote_metadata_parse(const uint8_t *blob, size_t len, struct remote_metadata *out,
			  struct error *err)
{
	memset(out, 0, sizeof(*out));
	/* The size comes from the peer: checked before anything trusts it. */
	if (len < REMOTE_METADATA_MIN_BYTES || len > REMOTE_METADATA_MAX_BYTES)
		return error_set(err, -EPROTO,
				 "Remote metadata size %zu is out of range (%u..%u bytes)", len,
				 REMOTE_METADATA_MIN_BYTES, REMOTE_METADATA_MAX_BYTES);
	struct metadata m;
	int ret = meta_deserialize(blob, len, &m, err);
	if (ret < 0) {
		error_prefix(err, "Remote metadata: ");
		return ret == -ENOMEM ? ret : -EPROTO;
	}
	/* Servers pad the headers with zeros (a pre-sized metadata file); the
	 * disk really served ends with the last stripe it serves. */
	uint64_t source_stripes = m.header_count;
	while (source_stripes > 0 && !serves(m.headers[source_stripes - 1]))
		source_stripes--;
	out->shift = m.shift;
	out->header_count = m.header_count;
	out->headers = m.headers;
	out->source_stripes = source_stripes;
	return 0;
}

int remote_metadata_encode(uint32_t shift, const uint8_t *headers, uint64_t header_count,
			   uint8_t **blob, size_t *len)
{
	*blob = NULL;
	*len = 0;
	if (shift < META_MIN_SHIFT || shift > META_MAX_LOAD_SHIFT ||
	    header_count > REMOTE_METADATA_MAX_BYTES - SECTOR_SIZE)
		return -EINVAL;
	size_t size = SECTOR_SIZE + (size_t)header_count;
	uint8_t *buf = malloc(size);
	if (!buf)
		return -ENOMEM;
	struct metadata m = {
	    .shift = (uint8_t)shift, .header_count = header_count, .headers = (uint8_t *)headers};
	int ret = meta_serialize(&m, buf, size);
	if (ret < 0) {
		free(buf);
		return ret;
	}
	*blob = buf;
	*len = size;
	return 0;
}

void remote_metadata_free(struct remote_metadata *m)
{
	if (!m)
		return;
	free(m->headers);
	memset(m, 0, sizeof(*m));
}

bool remote_metadata_has_stripe(const struct remote_metadata *m, uint64_t stripe)
{
	return stripe < m->header_count && serves(m->headers[stripe]);
}
