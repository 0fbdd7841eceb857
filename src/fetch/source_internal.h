/* What a stripe source implements. Each kind of source (raw image, none,
 * remote, archive, and the tests' flaky wrapper) fills in an ops table; the
 * driving thread only calls the source_* functions of fetch/fetch.h, which
 * dispatch into it. */
#ifndef UBIBLK_FETCH_SOURCE_INTERNAL_H
#define UBIBLK_FETCH_SOURCE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "fetch/fetch.h"

struct stripe_source_ops {
	/* The driving thread: create what reading needs. NULL: nothing to create. */
	int (*open)(struct stripe_source *src);
	/* The driving thread: wait until no buffer is in use by the source, release
	 * what open() created. Completions still owed are dropped. */
	void (*close)(struct stripe_source *src);
	/* Start reading stripe `stripe` into `buf` (stripe_sectors * 512
	 * bytes, aligned for O_DIRECT). 0: exactly one completion for the
	 * stripe will come from poll(); negative errno: none will. */
	int (*request)(struct stripe_source *src, uint64_t stripe, void *buf);
	int (*poll)(struct stripe_source *src, struct source_completion *out, int max);
	/* True while requests are outstanding or completions unpolled. */
	bool (*busy)(const struct stripe_source *src);
	/* Readable when completions may be waiting; -1 when completions only
	 * ever appear synchronously (then busy() says whether to poll). */
	int (*completion_fd)(const struct stripe_source *src);
	/* NULL: stripe * stripe_sectors < sectors. */
	bool (*has_stripe)(const struct stripe_source *src, uint64_t stripe);
	void (*destroy)(struct stripe_source *src);
};

/* The first member of every source. */
struct stripe_source {
	const struct stripe_source_ops *ops;
	uint32_t stripe_sectors;
	uint64_t sectors;
};

void source_init(struct stripe_source *src, const struct stripe_source_ops *ops,
		 uint32_t stripe_sectors, uint64_t sectors);
/* ceil(sectors / stripe_sectors). */
uint64_t source_stripe_count(const struct stripe_source *src);
/* Sectors of data stripe i has in the source (0 beyond the end). */
uint32_t source_stripe_data_sectors(const struct stripe_source *src, uint64_t stripe);

#endif
