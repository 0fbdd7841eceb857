#include "archive_input.h"

#include <errno.h>
#include <string.h>

#include "backend/backend.h"

enum archive_origin archive_stripe_origin(uint8_t header, bool track_written)
{
	/* Not fetched wins over written: WRITTEN and FETCHED are stored
	 * independently, WRITTEN first, so a backend killed between the two
	 * leaves WRITTEN on a stripe that is not in the disk yet. No guest
	 * write reached it (writes wait for FETCHED too): the guest sees the
	 * source's bytes, not the disk's. */
	if (header & META_HEADER_HAS_SOURCE)
		return header & META_HEADER_FETCHED ? ARCHIVE_ORIGIN_DISK : ARCHIVE_ORIGIN_SOURCE;
	if (header & META_HEADER_WRITTEN)
		return ARCHIVE_ORIGIN_DISK;
	return track_written ? ARCHIVE_ORIGIN_NONE : ARCHIVE_ORIGIN_DISK;
}

enum archive_origin archive_input_origin(const struct archive_input *in, uint64_t stripe)
{
	return archive_stripe_origin(in->meta.headers[stripe], in->track_written);
}

static bool needs_source(const struct archive_input *in)
{
	for (uint64_t i = 0; i < in->stripe_count; i++)
		if (archive_input_origin(in, i) == ARCHIVE_ORIGIN_SOURCE)
			return true;
	return false;
}

static int load_metadata(const struct device_config *cfg, struct archive_input *in,
			 struct error *err)
{
	struct bdev *dev = NULL, *file = NULL;
	int ret = backend_open_stored(cfg, "metadata file", cfg->metadata_path, true, 8, &dev,
				      &file, err);
	if (ret == 0) {
		struct error why = {0};
		ret = meta_load(dev, in->disk_sectors, &in->meta, &why);
		if (ret < 0)
			error_set(err, ret, "metadata file %s: %s%s", cfg->metadata_path, why.text,
				  backend_metadata_hint(cfg, ret));
	}
	if (dev)
		bdev_close(dev);
	if (file)
		bdev_close(file);
	if (ret < 0)
		return ret;
	in->stripe_sectors = 1u << in->meta.shift;
	in->stripe_count = meta_stripe_count(in->disk_sectors, in->meta.shift);
	if (in->meta.header_count < in->stripe_count)
		return error_set(err, -EINVAL,
				 "metadata file %s: %llu stripe headers for a disk of %llu stripes",
				 cfg->metadata_path, (unsigned long long)in->meta.header_count,
				 (unsigned long long)in->stripe_count);
	return 0;
}

int archive_input_open(const struct device_config *cfg, uint32_t depth, struct archive_input *in,
		       struct error *err)
{
	memset(in, 0, sizeof(*in));
	in->track_written = cfg->track_written;
	if (!cfg->metadata_path)
		return error_set(err, -EINVAL, "Metadata path is missing");
	int ret = backend_open_stored(cfg, "disk", cfg->path, true, depth, &in->disk,
				      &in->disk_file, err);
	if (ret == 0) {
		in->disk_sectors = bdev_sector_count(in->disk);
		ret = load_metadata(cfg, in, err);
	}
	/* A source with no stripe left to read is never opened: a finished
	 * disk archives without it. */
	if (ret == 0 && needs_source(in))
		ret = backend_stripe_source_open(cfg, in->stripe_sectors, in->disk_sectors,
						 &in->source, &in->source_image, err);
	if (ret < 0)
		archive_input_close(in);
	return ret;
}

void archive_input_close(struct archive_input *in)
{
	stripe_source_destroy(in->source);
	if (in->source_image)
		bdev_close(in->source_image);
	/* The crypt layer before the file under it. */
	if (in->disk)
		bdev_close(in->disk);
	if (in->disk_file)
		bdev_close(in->disk_file);
	meta_free(&in->meta);
	memset(in, 0, sizeof(*in));
}
