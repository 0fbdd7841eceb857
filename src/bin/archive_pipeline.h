/* The archive tool's pipeline: every archived stripe of a disk read,
 * encoded into its object and stored, with the disk (or stripe source) and
 * the store busy at once.
 *
 * Memory is bounded by `buffers`: each buffer carries one stripe from its
 * read through encoding to its stored object, and is reused only when the
 * store has completed that object's PUT (or found it already there). There
 * is no queue between reading and uploading, so a slow store slows the
 * reads down instead of piling objects up.
 *
 * Stripes are started in index order. An object is stored once: a hash
 * already named in this run is not stored again, and (check_existing)
 * before a PUT a HEAD asks the store whether an earlier run (killed, or
 * archiving another disk to the same place) already stored it. Any failed read or PUT ends the run
 * with an error; the objects stored so far stay (a later run finds them).
 *
 * One thread runs everything: the disk channel, the stripe source (opened
 * and closed here) and the store's completions. */
#ifndef UBIBLK_BIN_ARCHIVE_PIPELINE_H
#define UBIBLK_BIN_ARCHIVE_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "archive/archive.h"
#include "archive_input.h"
#include "archive_report.h"
#include "store/store.h"

struct archive_pipeline_options {
	struct archive_input *input;	   /* its source is opened and closed here */
	struct store *store;		   /* nothing else pending on it */
	const struct archive_codec *codec; /* borrowed, this thread's */
	uint32_t buffers;		   /* stripes in flight, >= 1 */
	/* HEAD before each PUT: the target held an archive already, so an
	 * earlier run may have stored some objects. A target without
	 * metadata.json holds none of this run's objects (the tool writes
	 * metadata.json before any object), and a HEAD per object would only
	 * double the requests. */
	bool check_existing;
	struct archive_progress *progress;
};

/* Archives every stripe the input says holds data, adding index -> hash to
 * map (zero-initialised by the caller, freed by it). counts: filled in,
 * also after a failure. Errors: "I/O error while fetching stripe 7: ...",
 * or the store's text for a failed PUT; the run waits for what is in flight
 * before it returns, so no buffer is in use afterwards. */
int archive_pipeline_run(const struct archive_pipeline_options *o, struct archive_stripe_map *map,
			 struct archive_counts *counts, struct error *err);

#endif
