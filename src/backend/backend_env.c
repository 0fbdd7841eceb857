#include "backend/backend_internal.h"

#include "common/common.h"
#include "crypto/crypto.h"
#include "lazy/lazy.h"
#include "rpc/rpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

enum bdev_engine backend_engine(enum io_engine engine)
{
	switch (engine) {
	case IO_ENGINE_SYNC:
		return BDEV_ENGINE_SYNC;
	case IO_ENGINE_NULL:
		return BDEV_ENGINE_NULL;
	case IO_ENGINE_IO_URING:
	default:
		return BDEV_ENGINE_IO_URING;
	}
}

int backend_open_file(const struct device_config *cfg, const char *what, const char *path,
		      bool read_only, uint32_t depth, struct bdev **out, struct error *err)
{
	struct bdev_file_options opts = {
	    .path = path,
	    .engine = backend_engine(cfg->io_engine),
	    .read_only = read_only,
	    .direct = true,
	    .write_through = cfg->write_through,
	    .queue_depth = depth,
	};
	struct error why = {0};
	int ret = bdev_open_file(&opts, out, &why);
	if (ret < 0)
		error_set(err, ret, "cannot open the %s %s: %s", what, path,
			  why.text[0] ? why.text : strerror(-ret));
	return ret;
}

/* The disk or metadata file, crypt-wrapped when the config has keys: *out is
 * what the stack uses, *file the file under a crypt layer (NULL without). */
int backend_open_stored(const struct device_config *cfg, const char *what, const char *path,
			bool read_only, uint32_t depth, struct bdev **out, struct bdev **file,
			struct error *err)
{
	int ret = backend_open_file(cfg, what, path, read_only, depth, out, err);
	if (ret < 0 || !cfg->has_encryption_key)
		return ret;
	*file = *out;
	*out = NULL;
	return crypt_bdev_open(*file, cfg->encryption_key[0], cfg->encryption_key[1], out, err);
}

static int open_stored(const struct device_config *cfg, const char *what, const char *path,
		       uint32_t depth, struct bdev **out, struct bdev **file, struct error *err)
{
	return backend_open_stored(cfg, what, path, false, depth, out, file, err);
}

/* A metadata file that does not start with the magic may be encrypted with
 * other keys, or be plaintext read through keys (or the reverse). */
static const char *magic_hint(const struct device_config *cfg, int ret)
{
	if (ret != -EBADMSG)
		return "";
	return cfg->has_encryption_key ? " (wrong encryption_key, or a metadata file written "
					 "without encryption?)"
				       : " (an encrypted metadata file needs the config's "
					 "encryption_key)";
}

const char *backend_metadata_hint(const struct device_config *cfg, int ret)
{
	return magic_hint(cfg, ret);
}

/* The metadata file and the worker only exist when metadata_path is set.
 * The raw image is opened twice on purpose: the worker's source reads it to
 * fetch stripes, the lazy device reads it to serve unfetched stripes
 * directly (copy_on_read false). */
static int open_lazy_stack(const struct device_config *cfg, struct backend_env *env,
			   struct error *err)
{
	int ret = open_stored(cfg, "metadata file", cfg->metadata_path, cfg->queue_size,
			      &env->metadata, &env->metadata_file, err);
	if (ret < 0)
		return ret;

	struct metadata meta = {0};
	struct error why = {0};
	ret = meta_load(env->metadata, bdev_sector_count(env->disk), &meta, &why);
	if (ret == 0)
		ret = stripe_state_create(&meta, bdev_sector_count(env->disk), &env->stripes, &why);
	/* A disk with every source stripe fetched never dials its server. */
	bool all_fetched = ret == 0 && meta_all_fetched(&meta);
	meta_free(&meta);
	if (ret < 0)
		return error_set(err, ret, "metadata file %s: %s%s", cfg->metadata_path, why.text,
				 magic_hint(cfg, ret));

	uint32_t stripe_sectors = 1u << stripe_state_shift(env->stripes);
	struct stripe_source *source = NULL;
	/* A disk with every source stripe fetched never dials its server nor
	 * reads its archive; the raw image is cheap to open and closed by the
	 * worker at once. The source borrows source_image: it is closed after
	 * the worker stops. */
	if (all_fetched && cfg->source.kind != STRIPE_SOURCE_RAW) {
		ret = stripe_source_none(stripe_sectors, &source);
		if (ret < 0)
			return error_set(err, ret, "stripe source: %s", strerror(-ret));
	} else {
		ret = backend_stripe_source_open(cfg, stripe_sectors, bdev_sector_count(env->disk),
						 &source, &env->source_image, err);
		if (ret < 0)
			return ret;
	}
	if (cfg->source.kind == STRIPE_SOURCE_RAW && !cfg->copy_on_read) {
		ret = backend_open_file(cfg, "raw image", cfg->source.raw_path, true,
					cfg->queue_size, &env->image, err);
		if (ret < 0) {
			stripe_source_destroy(source);
			return ret;
		}
	}

	/* From here on the worker owns the source, even when it fails to start. */
	struct fetch_worker_options wopts = {
	    .disk = env->disk,
	    .metadata = env->metadata,
	    .source = source,
	    .state = env->stripes,
	    .autofetch = cfg->autofetch,
	    .alignment = bdev_buffer_alignment(env->disk),
	};
	struct error werr = {0};
	ret = fetch_worker_start(&wopts, &env->worker, &werr);
	if (ret < 0)
		return error_set(err, ret, "cannot start the fetch worker: %s", werr.text);

	struct lazy_options lopts = {
	    .base = env->disk,
	    .image = env->image,
	    .state = env->stripes,
	    .worker = env->worker,
	    .track_written = cfg->track_written,
	};
	ret = lazy_bdev_open(&lopts, &env->lazy);
	if (ret < 0)
		return error_set(err, ret, "cannot build the lazy device: %s", strerror(-ret));
	env->frontend = env->lazy;
	return 0;
}

static int open_trackers(const struct device_config *cfg, struct backend_env *env)
{
	env->trackers = calloc(cfg->num_queues, sizeof(*env->trackers));
	if (!env->trackers)
		return -ENOMEM;
	env->num_queues = cfg->num_queues;
	/* Eight slots more than a ring has: vhost slots and ublk tags stay below
	 * queue_size, so this is a margin; a slot beyond the tracker would only
	 * be counted, not shown in `queues`. */
	for (uint32_t i = 0; i < cfg->num_queues; i++) {
		env->trackers[i] = io_tracker_create(cfg->queue_size + 8);
		if (!env->trackers[i])
			return -ENOMEM;
	}
	return 0;
}

/* The HTTP metrics endpoint; the config's validation already checked the
 * address is loopback. */
static int start_metrics(const char *listen, const struct rpc_context *ctx, struct backend_env *env,
			 struct error *err)
{
	struct sockaddr_storage addr;
	uint32_t addrlen;
	struct error why = {0};
	int ret = metrics_listen_parse(listen, &addr, &addrlen, &why);
	if (ret == 0)
		ret = metrics_http_start((const struct sockaddr *)&addr, addrlen, ctx,
					 &env->metrics, &why);
	if (ret < 0)
		return error_set(err, ret, "metrics_listen %s: %s", listen,
				 why.text[0] ? why.text : strerror(-ret));
	return 0;
}

int backend_env_open(const struct device_config *cfg, struct backend_env *env, struct error *err)
{
	memset(env, 0, sizeof(*env));
	int ret =
	    open_stored(cfg, "disk", cfg->path, cfg->queue_size, &env->disk, &env->disk_file, err);
	if (ret == 0) {
		env->frontend = env->disk;
		if (cfg->metadata_path)
			ret = open_lazy_stack(cfg, env, err);
	}
	if (ret == 0) {
		ret = open_trackers(cfg, env);
		if (ret < 0)
			error_set(err, ret, "cannot allocate I/O trackers");
	}
	struct rpc_context ctx = {
	    .trackers = env->trackers,
	    .num_queues = env->num_queues,
	    .stripes = env->stripes,
	    .worker = env->worker,
	    .xts_engine = xts_engine_chosen(),
	};
	if (ret == 0 && cfg->rpc_socket_path) {
		struct error why = {0};
		ret = rpc_server_start(cfg->rpc_socket_path, &ctx, &env->rpc, &why);
		if (ret < 0)
			error_set(err, ret, "rpc_socket_path %s: %s", cfg->rpc_socket_path,
				  why.text[0] ? why.text : strerror(-ret));
	}
	if (ret == 0 && cfg->metrics_listen)
		ret = start_metrics(cfg->metrics_listen, &ctx, env, err);
	if (ret < 0)
		backend_env_close(env);
	return ret;
}

void backend_env_close(struct backend_env *env)
{
	/* Reverse order of construction: nothing may outlive what it uses. */
	if (env->metrics)
		metrics_http_stop(env->metrics);
	if (env->rpc)
		rpc_server_stop(env->rpc);
	if (env->lazy)
		bdev_close(env->lazy);
	if (env->worker)
		fetch_worker_stop(env->worker);
	if (env->image)
		bdev_close(env->image);
	if (env->source_image)
		bdev_close(env->source_image);
	if (env->stripes)
		stripe_state_destroy(env->stripes);
	/* A crypt layer before the file under it (bdev_close wipes its keys). */
	if (env->metadata)
		bdev_close(env->metadata);
	if (env->metadata_file)
		bdev_close(env->metadata_file);
	if (env->disk)
		bdev_close(env->disk);
	if (env->disk_file)
		bdev_close(env->disk_file);
	if (env->trackers) {
		for (uint32_t i = 0; i < env->num_queues; i++)
			io_tracker_destroy(env->trackers[i]);
		free(env->trackers);
	}
	memset(env, 0, sizeof(*env));
}
