/* Parsing of command-line values: sizes with binary suffixes, durations,
 * plain counts and CPU lists. Pure functions, no logging: the caller names
 * the option in its error message. */
#ifndef UBIBLK_BENCH_VALUE_PARSE_H
#define UBIBLK_BENCH_VALUE_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* A decimal count without suffix ("128"). -EINVAL on junk, -ERANGE on overflow. */
int parse_count(const char *text, uint64_t *out);

/* A byte size: decimal digits and an optional binary suffix k, m, g or t
 * (either case, optionally followed by "iB" or "B"): "4k" = 4096,
 * "1MiB" = 1048576. -EINVAL on junk, -ERANGE on overflow. */
int parse_size(const char *text, uint64_t *out);

/* A duration in nanoseconds: a decimal number of seconds, fractions allowed,
 * with an optional unit ms, s, m or h ("10", "1.5s", "2m", "250ms"). */
int parse_duration_ns(const char *text, uint64_t *out);

/* A CPU list such as "0,2-4": stores up to `max` CPU numbers in order.
 * -EINVAL on junk or a descending range, -E2BIG if there are more than max. */
int parse_cpu_list(const char *text, int *cpus, size_t max, size_t *count);

#endif
