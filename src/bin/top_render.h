/* ubiblk-top's two outputs: the text screen (one line per disk, per queue
 * and for hydration) and the --json document (schema in docs/top.md). */
#ifndef UBIBLK_BIN_TOP_RENDER_H
#define UBIBLK_BIN_TOP_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "top_view.h"

/* A disk as the outputs show it. */
struct top_disk_state {
	const char *name;
	const char *path;
	bool reachable;
	const char *error;	     /* why not reachable */
	bool from_metrics;	     /* the backend answers `metrics` */
	const struct top_view *view; /* NULL until two samples are in */
};

/* The screen, every line ending in '\n' (the caller cuts lines to the
 * terminal width). header: the end of the first line (keys, a clock). */
void top_render_text(FILE *out, const struct top_disk_state *disks, size_t num_disks,
		     double interval_seconds, const char *header);
/* One JSON document and a newline; 0, or -ENOMEM / -EIO. */
int top_render_json(FILE *out, const struct top_disk_state *disks, size_t num_disks,
		    double interval_seconds);

#endif
