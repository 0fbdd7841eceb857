/* The metadata format 1.0 in memory: geometry, construction, and the
 * byte-exact (de)serialization shared by the file and the remote server's
 * metadata blob. Nothing here does I/O. */
#include "meta/meta.h"

#include "common/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX_MAGIC_OFFSET 0
#define PREFIX_MAJOR_OFFSET 9
#define PREFIX_MINOR_OFFSET 11
#define PREFIX_SHIFT_OFFSET 13
#define PREFIX_SIZE	    14
#define MAGIC_SIZE	    9

static const uint8_t magic[MAGIC_SIZE] = {'B', 'D', 'E', 'V', '_', 'U', 'B', 'I', 0};

uint64_t meta_stripe_count(uint64_t disk_sectors, uint8_t shift)
{
	if (shift >= 64)
		return disk_sectors ? 1 : 0;
	uint64_t mask = (UINT64_C(1) << shift) - 1;
	return (disk_sectors >> shift) + ((disk_sectors & mask) != 0);
}

uint64_t meta_file_size(uint64_t disk_sectors, uint8_t shift)
{
	uint64_t payload;
	if (u64_add_overflows(SECTOR_SIZE, meta_stripe_count(disk_sectors, shift), &payload) ||
	    payload > UINT64_MAX - (SECTOR_SIZE - 1))
		return 0; /* only reachable with shifts far below META_MIN_SHIFT */
	return (payload + SECTOR_SIZE - 1) / SECTOR_SIZE * SECTOR_SIZE;
}

static bool shift_is_valid(uint8_t shift)
{
	return shift >= META_MIN_SHIFT && shift <= META_MAX_LOAD_SHIFT;
}

int meta_create(struct metadata *m, uint8_t shift, uint64_t stripes, uint64_t source_stripes)
{
	memset(m, 0, sizeof(*m));
	if (!shift_is_valid(shift) || stripes > SIZE_MAX)
		return -EINVAL;
	/* calloc(0) may return NULL; one spare byte keeps "NULL = failure". */
	uint8_t *headers = calloc((size_t)stripes + 1, 1);
	if (!headers)
		return -ENOMEM;
	uint64_t with_source = source_stripes < stripes ? source_stripes : stripes;
	memset(headers, META_HEADER_HAS_SOURCE, (size_t)with_source);
	m->shift = shift;
	m->header_count = stripes;
	m->headers = headers;
	return 0;
}

int meta_serialize(const struct metadata *m, uint8_t *buf, size_t len)
{
	if (m->header_count > SIZE_MAX - SECTOR_SIZE || len < SECTOR_SIZE + m->header_count)
		return -EINVAL;
	memset(buf, 0, SECTOR_SIZE);
	memcpy(buf + PREFIX_MAGIC_OFFSET, magic, MAGIC_SIZE);
	buf[PREFIX_MAJOR_OFFSET] = META_VERSION_MAJOR & 0xff;
	buf[PREFIX_MAJOR_OFFSET + 1] = META_VERSION_MAJOR >> 8;
	buf[PREFIX_MINOR_OFFSET] = META_VERSION_MINOR & 0xff;
	buf[PREFIX_MINOR_OFFSET + 1] = META_VERSION_MINOR >> 8;
	buf[PREFIX_SHIFT_OFFSET] = m->shift;
	if (m->header_count)
		memcpy(buf + SECTOR_SIZE, m->headers, (size_t)m->header_count);
	return 0;
}

/* "[66, 68, 69, ...]": the magic mismatch message of this format has always
 * shown the bytes this way, and operators' scripts may match it. */
static void format_bytes(char *out, size_t out_len, const uint8_t *bytes, size_t n)
{
	size_t used = 0;
	used += (size_t)snprintf(out, out_len, "[");
	for (size_t i = 0; i < n && used < out_len; i++)
		used +=
		    (size_t)snprintf(out + used, out_len - used, "%s%u", i ? ", " : "", bytes[i]);
	if (used < out_len)
		snprintf(out + used, out_len - used, "]");
}

static uint16_t read_u16_le(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

int meta_deserialize(const uint8_t *buf, size_t len, struct metadata *m, struct error *err)
{
	memset(m, 0, sizeof(*m));
	if (len < SECTOR_SIZE)
		return error_set(err, -EBADMSG,
				 "Metadata too short: %zu bytes, a metadata file has at least %u",
				 len, SECTOR_SIZE);
	if (memcmp(buf + PREFIX_MAGIC_OFFSET, magic, MAGIC_SIZE) != 0) {
		char expected[64], found[64];
		format_bytes(expected, sizeof(expected), magic, MAGIC_SIZE);
		format_bytes(found, sizeof(found), buf + PREFIX_MAGIC_OFFSET, MAGIC_SIZE);
		return error_set(err, -EBADMSG, "Metadata magic mismatch! Expected: %s, Found: %s",
				 expected, found);
	}
	uint16_t major = read_u16_le(buf + PREFIX_MAJOR_OFFSET);
	uint16_t minor = read_u16_le(buf + PREFIX_MINOR_OFFSET);
	if (major != META_VERSION_MAJOR || minor != META_VERSION_MINOR)
		return error_set(err, -EPROTONOSUPPORT,
				 "Metadata version mismatch! Expected: %u.%u, Found: %u.%u",
				 META_VERSION_MAJOR, META_VERSION_MINOR, major, minor);
	/* A corrupt shift byte would give absurd stripe sizes (64 or more
	 * even overflows), so only META_MIN_SHIFT..META_MAX_LOAD_SHIFT load. */
	uint8_t shift = buf[PREFIX_SHIFT_OFFSET];
	if (!shift_is_valid(shift))
		return error_set(err, -EINVAL,
				 "Metadata stripe sector count shift %u is out of range (%u..%u)",
				 shift, META_MIN_SHIFT, META_MAX_LOAD_SHIFT);
	size_t count = len - SECTOR_SIZE;
	uint8_t *headers = malloc(count + 1);
	if (!headers)
		return error_set(err, -ENOMEM, "Out of memory for %zu stripe headers", count);
	memcpy(headers, buf + SECTOR_SIZE, count);
	m->shift = shift;
	m->header_count = count;
	m->headers = headers;
	return 0;
}

void meta_free(struct metadata *m)
{
	free(m->headers);
	m->headers = NULL;
	m->header_count = 0;
}

bool meta_all_fetched(const struct metadata *m)
{
	for (uint64_t i = 0; i < m->header_count; i++) {
		uint8_t h = m->headers[i];
		if ((h & META_HEADER_HAS_SOURCE) && !(h & META_HEADER_FETCHED))
			return false;
	}
	return true;
}

void meta_count(const struct metadata *m, uint64_t first, uint64_t count, struct meta_counts *out)
{
	memset(out, 0, sizeof(*out));
	if (first >= m->header_count)
		return;
	uint64_t end = count < m->header_count - first ? first + count : m->header_count;
	for (uint64_t i = first; i < end; i++) {
		uint8_t h = m->headers[i];
		if (!(h & META_HEADER_HAS_SOURCE))
			out->no_source++;
		else if (h & META_HEADER_FETCHED)
			out->fetched++;
		else
			out->not_fetched++;
		if (h & META_HEADER_WRITTEN)
			out->written++;
	}
	out->total = end - first;
}
