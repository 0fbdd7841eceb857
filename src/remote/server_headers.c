/* What remote-stripe-server says about its disk: the headers it serves and
 * the status of a READ_STRIPE before the disk is read. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"

int remote_server_headers(const struct metadata *m, uint64_t disk_sectors, uint32_t *shift,
			  uint8_t **headers, uint64_t *count, struct error *err)
{
	uint32_t sh = m ? m->shift : META_DEFAULT_SHIFT;
	uint64_t n = meta_stripe_count(disk_sectors, (uint8_t)sh);
	if (m && m->header_count < n)
		return error_set(
		    err, -EINVAL,
		    "the metadata has %llu stripe headers but the disk has %llu stripes",
		    (unsigned long long)m->header_count, (unsigned long long)n);
	if (n > SIZE_MAX - REMOTE_METADATA_MIN_BYTES)
		return error_set(err, -EOVERFLOW, "the disk has too many stripes");
	uint8_t *h = malloc(n ? (size_t)n : 1);
	if (!h)
		return error_set(err, -ENOMEM, "cannot allocate %llu stripe headers",
				 (unsigned long long)n);
	const uint8_t all = META_HEADER_FETCHED | META_HEADER_WRITTEN | META_HEADER_HAS_SOURCE;
	for (uint64_t i = 0; i < n; i++) {
		uint8_t v = m ? m->headers[i] : all;
		/* A back end with track_written off never records writes, so a
		 * stripe without a source may hold written data whatever its
		 * header says; reading it gives the disk's bytes either way. */
		if (!(v & META_HEADER_HAS_SOURCE))
			v |= META_HEADER_WRITTEN;
		h[i] = v;
	}
	*shift = sh;
	*headers = h;
	*count = n;
	return 0;
}

uint8_t server_stripe_status(const uint8_t *headers, uint64_t count, uint64_t index)
{
	if (index >= count)
		return REMOTE_STATUS_INVALID_STRIPE;
	uint8_t h = headers[index];
	/* Not fetched wins over written: such a stripe's data is partly the
	 * source's, which this server does not have. */
	if ((h & META_HEADER_HAS_SOURCE) && !(h & META_HEADER_FETCHED))
		return REMOTE_STATUS_NOT_FETCHED;
	if (!((h & META_HEADER_WRITTEN) ||
	      ((h & META_HEADER_HAS_SOURCE) && (h & META_HEADER_FETCHED))))
		return REMOTE_STATUS_NO_DATA;
	return REMOTE_STATUS_OK;
}
