#include "archive_input.h"

#include <errno.h>
#include <string.h>

#include "backend/backend.h"
#include "remote/remote.h"

#define SOURCE_IMAGE_DEPTH 64u

enum archive_origin archive_stripe_origin(uint8_t header, bool track_written)
{
	if (header & META_HEADER_WRITTEN)
		return ARCHIVE_ORIGIN_DISK;
	if (header & META_HEADER_HAS_SOURCE)
		return header & META_HEADER_FETCHED ? ARCHIVE_ORIGIN_DISK : ARCHIVE_ORIGIN_SOURCE;
	return track_written ? ARCHIVE_ORIGIN_NONE : ARCHIVE_ORIGIN_DISK;
}

enum archive_origin archive_input_origin(const struct archive_input *in, uint64_t stripe)
{
	return archive_stripe_origin(in->meta.headers[stripe], in->track_written);
}

/* TEMPORARY: the raw, remote and none sources built here until
 * backend_stripe_source_open serves every tool. */
static int open_source(const struct device_config *cfg, struct archive_input *in, struct error *err)
{
	const struct stripe_source_config *sc = &cfg->source;
	struct error why = {0};
	int ret;

	switch (sc->kind) {
	case STRIPE_SOURCE_RAW: {
		struct bdev_file_options opts = {
		    .path = sc->raw_path,
		    .engine = BDEV_ENGINE_IO_URING,
		    .read_only = true,
		    .direct = true,
		    .queue_depth = SOURCE_IMAGE_DEPTH,
		};
		ret = bdev_open_file(&opts, &in->source_image, &why);
		if (ret < 0)
			return error_set(err, ret, "cannot open the raw image %s: %s", sc->raw_path,
					 why.text[0] ? why.text : strerror(-ret));
		ret = stripe_source_raw(in->source_image, in->stripe_sectors, &in->source);
		if (ret < 0)
			return error_set(err, ret, "raw image %s: %s", sc->raw_path,
					 strerror(-ret));
		return 0;
	}
	case STRIPE_SOURCE_REMOTE:
		ret =
		    stripe_source_remote(&sc->remote, in->stripe_sectors, NULL, &in->source, &why);
		if (ret < 0)
			return error_set(err, ret, "stripe_source: remote server %s: %s",
					 sc->remote.address, why.text);
		stripe_source_remote_fit(in->source, in->disk_sectors);
		return 0;
	case STRIPE_SOURCE_ARCHIVE:
		return error_set(err, -ENOTSUP,
				 "stripe_source: the archive source is not supported yet");
	case STRIPE_SOURCE_NONE:
	default:
		/* Stripes marked HAS_SOURCE with no source configured: they
		 * cannot be read, and each fails as an I/O error. */
		ret = stripe_source_none(in->stripe_sectors, &in->source);
		if (ret < 0)
			return error_set(err, ret, "stripe source: %s", strerror(-ret));
		return 0;
	}
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
	if (ret == 0 && needs_source(in))
		ret = open_source(cfg, in, err);
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
