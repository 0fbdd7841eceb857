/* The back-end environment shared by vhost-backend and ublk-backend:
 * from a loaded device config, build the device stack the front end serves
 *
 *   front end -> lazy (when metadata_path is set) -> crypt (when
 *   encryption_key is set) -> disk file
 *
 * plus the shared stripe state, the background fetch worker, one I/O tracker
 * per queue, the RPC server and the HTTP metrics endpoint. Everything that
 * can fail does so here, at start-up, with one line explaining why: a fetch
 * worker that cannot start stops the back end rather than leave it serving
 * I/O that would fail. */
#ifndef UBIBLK_BACKEND_H
#define UBIBLK_BACKEND_H

#include <stddef.h>

#include "bdev/bdev.h"
#include "config/config.h"
#include "fetch/fetch.h"
#include "meta/meta.h"
#include "io_tracker/io_tracker.h"

struct rpc_server;
struct metrics_http;

struct backend_env {
	struct bdev *disk;	   /* the data disk: the file, or the crypt layer over it */
	struct bdev *metadata;	   /* NULL without metadata_path; crypt-wrapped like disk */
	struct bdev *image;	   /* raw image read path (copy_on_read false), or NULL */
	struct bdev *source_image; /* raw image the fetch worker reads, or NULL */
	struct bdev *lazy;	   /* NULL without metadata_path */
	struct bdev *frontend;	   /* what the front end serves: lazy or disk */
	/* The files under disk's and metadata's crypt layers; NULL without
	 * encryption_key. The raw image is never encrypted. */
	struct bdev *disk_file;
	struct bdev *metadata_file;
	struct stripe_state *stripes;
	struct fetch_worker *worker;
	struct io_tracker **trackers; /* num_queues */
	uint32_t num_queues;
	struct rpc_server *rpc;
	struct metrics_http *metrics; /* NULL without metrics_listen */
};

/* Builds everything; on failure returns -errno with nothing left open and
 * err saying why in one line (the caller prints it). */
int backend_env_open(const struct device_config *cfg, struct backend_env *env, struct error *err);
void backend_env_close(struct backend_env *env);

/* The disk or metadata file as the back ends open it: the config's
 * io_engine, O_DIRECT, `depth` entries, and the crypt layer over it when the
 * config has encryption_key. *out is what to read and write; *file is the
 * file under the crypt layer (left alone without keys), closed after *out.
 * For tools that serve a device the way the back ends see it. */
int backend_open_stored(const struct device_config *cfg, const char *what, const char *path,
			bool read_only, uint32_t depth, struct bdev **out, struct bdev **file,
			struct error *err);
/* What to add to a failed meta_load's message: a metadata file without the
 * magic may be encrypted with other keys, or not encrypted ("" otherwise). */
const char *backend_metadata_hint(const struct device_config *cfg, int ret);

/* The stripe source a device config names (raw image, remote server,
 * archive; or none), for a disk of disk_sectors with stripe_sectors per
 * stripe. A raw source borrows *image, which the caller closes after
 * the source is destroyed (NULL for the other kinds). A remote or archive
 * source whose size is whole stripes is cut to a disk that ends inside its
 * last stripe. Errors name the source: "cannot open the raw image <path>:
 * ...", "stripe_source: remote server <address>: ...", "stripe_source:
 * archive <where>: ...". */
int backend_stripe_source_open(const struct device_config *cfg, uint32_t stripe_sectors,
			       uint64_t disk_sectors, struct stripe_source **source,
			       struct bdev **image, struct error *err);

/* The bdev engine for a config's io_engine. */
enum bdev_engine backend_engine(enum io_engine engine);

#endif
