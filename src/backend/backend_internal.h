/* What the back-end environment's files share. */
#ifndef UBIBLK_BACKEND_INTERNAL_H
#define UBIBLK_BACKEND_INTERNAL_H

#include "backend/backend.h"

/* Depth of the raw image device the fetch worker's source reads: the worker
 * has at most 16 stripes in flight, so 64 is ample. (The lazy device's
 * direct reads of the image, with copy_on_read false, open their own device
 * at queue_size.) */
#define IMAGE_QUEUE_DEPTH 64u

/* A file opened as the back ends open it (the config's io_engine, O_DIRECT);
 * errors read "cannot open the <what> <path>: ...". */
int backend_open_file(const struct device_config *cfg, const char *what, const char *path,
		      bool read_only, uint32_t depth, struct bdev **out, struct error *err);

#endif
