/* What the archive tool tells its operator: a progress bar while it runs
 * (only on a terminal) and a summary when it is done. */
#ifndef UBIBLK_BIN_ARCHIVE_REPORT_H
#define UBIBLK_BIN_ARCHIVE_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* The counts of one run, kept by the pipeline. A stripe is archived when it
 * gets an entry in stripe-hashes.json, skipped when it holds no data (it
 * reads back as zeros). Every archived stripe names one object; the objects
 * named are distinct = uploaded + already_stored, and the other
 * archived - distinct stripes are deduplicated (their object was already
 * named by an earlier stripe of this run). */
struct archive_counts {
	uint64_t stripes_total; /* stripes of the disk */
	uint64_t stripes_done;	/* archived or skipped, object stored */
	uint64_t archived;
	uint64_t skipped;
	uint64_t deduplicated;
	uint64_t from_source; /* archived stripes read from the stripe source */
	uint64_t objects_uploaded;
	uint64_t objects_already_stored; /* found by HEAD: left as they were */
	uint64_t bytes_logical;		 /* plaintext of the archived stripes */
	uint64_t bytes_physical;	 /* the distinct objects' sizes */
	uint64_t bytes_uploaded;
};

/* A one-line bar on stderr, redrawn in place at most 5 times a second:
 *   archive: [#########.........]  48% 123/256 stripes, 812.3 MiB/s */
struct archive_progress {
	bool on;
	bool drawn;
	uint64_t started_ns;
	uint64_t drawn_ns;
};

/* on: stderr is a terminal and the operator did not turn the bar off. */
void archive_progress_start(struct archive_progress *p, bool on);
void archive_progress_update(struct archive_progress *p, const struct archive_counts *c);
/* Draws the bar as c says it ended and ends its line (so messages after it
 * start on a fresh one). */
void archive_progress_end(struct archive_progress *p, const struct archive_counts *c);

/* The summary, one "name: value" per line, e.g.
 *   stripes archived: 200
 *   stripes deduplicated: 150
 *   ...
 *   throughput: 812.3 MiB/s
 * (docs/archive.md lists every line). elapsed_ns > 0. */
void archive_summary_print(FILE *out, const struct archive_counts *c, uint64_t elapsed_ns);

#endif
