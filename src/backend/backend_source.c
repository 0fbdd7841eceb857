/* The stripe source a device config names, built the same way for the back
 * ends, init-metadata and the archive tool. */
#include "backend/backend_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "archive_source/archive_source.h"
#include "remote/remote.h"
#include "store/store.h"

static int open_raw(const struct device_config *cfg, uint32_t stripe_sectors,
		    struct stripe_source **source, struct bdev **image, struct error *err)
{
	int ret = backend_open_file(cfg, "raw image", cfg->source.raw_path, true, IMAGE_QUEUE_DEPTH,
				    image, err);
	if (ret < 0)
		return ret;
	ret = stripe_source_raw(*image, stripe_sectors, source);
	if (ret < 0) {
		bdev_close(*image);
		*image = NULL;
		return error_set(err, ret, "raw image %s: %s", cfg->source.raw_path,
				 strerror(-ret));
	}
	return 0;
}

static int open_remote(const struct device_config *cfg, uint32_t stripe_sectors,
		       uint64_t disk_sectors, struct stripe_source **source, struct error *err)
{
	struct error why = {0};
	int ret = stripe_source_remote(&cfg->source.remote, stripe_sectors, NULL, source, &why);
	if (ret < 0)
		return error_set(err, ret, "stripe_source: remote server %s: %s",
				 cfg->source.remote.address, why.text);
	stripe_source_remote_fit(*source, disk_sectors);
	return 0;
}

static int open_archive(const struct device_config *cfg, uint32_t stripe_sectors,
			uint64_t disk_sectors, struct stripe_source **source, struct error *err)
{
	struct error why = {0};
	int ret =
	    stripe_source_archive(&cfg->source.archive, stripe_sectors, disk_sectors, source, &why);
	if (ret < 0) {
		char where[256];
		store_describe(&cfg->source.archive, where, sizeof(where));
		error_default(&why, ret);
		return error_set(err, ret, "stripe_source: archive %s: %s", where, why.text);
	}
	return 0;
}

int backend_stripe_source_open(const struct device_config *cfg, uint32_t stripe_sectors,
			       uint64_t disk_sectors, struct stripe_source **source,
			       struct bdev **image, struct error *err)
{
	*source = NULL;
	*image = NULL;
	int ret;
	switch (cfg->source.kind) {
	case STRIPE_SOURCE_RAW:
		return open_raw(cfg, stripe_sectors, source, image, err);
	case STRIPE_SOURCE_REMOTE:
		return open_remote(cfg, stripe_sectors, disk_sectors, source, err);
	case STRIPE_SOURCE_ARCHIVE:
		return open_archive(cfg, stripe_sectors, disk_sectors, source, err);
	case STRIPE_SOURCE_NONE:
	default:
		ret = stripe_source_none(stripe_sectors, source);
		if (ret < 0)
			return error_set(err, ret, "stripe source: %s", strerror(-ret));
		return 0;
	}
}
