/* Test hooks of the fetch layer, built into the tests only (the fetch_testing
 * library): a source wrapper that fails on purpose and counts requests, and
 * views into the worker a test cannot get through fetch.h alone. */
#ifndef UBIBLK_FETCH_TESTING_H
#define UBIBLK_FETCH_TESTING_H

#include <stdbool.h>
#include <stdint.h>

#include "fetch/fetch.h"

#define FLAKY_NO_STRIPE UINT64_MAX

/* Wraps `inner` (owned from now on): the next `times` completions of stripe
 * `fail_stripe` are turned into -EIO failures; everything else delegates.
 * `request_counts`, when not NULL, is caller memory with one counter per
 * source stripe, incremented atomically for every read request the source
 * receives (so it survives the worker dropping the source). */
int stripe_source_flaky(struct stripe_source *inner, uint64_t fail_stripe, uint32_t times,
			uint32_t *request_counts, struct stripe_source **out);

/* CPU time the worker thread has used so far; -ESRCH when it is not
 * running. */
int fetch_worker_thread_cpu_ns(const struct fetch_worker *w, uint64_t *ns);
/* False once the worker has dropped (closed) its source: the stats'
 * source_connected. */
bool fetch_worker_has_source(const struct fetch_worker *w);

#endif
