#include "bench/value_parse.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

/* Leading decimal digits of `text` into *out; *end points past them. */
static int parse_digits(const char *text, uint64_t *out, const char **end)
{
	uint64_t value = 0;
	const char *p = text;
	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (__builtin_mul_overflow(value, 10, &value) ||
		    __builtin_add_overflow(value, (uint64_t)(*p - '0'), &value))
			return -ERANGE;
	}
	*out = value;
	*end = p;
	return 0;
}

int parse_count(const char *text, uint64_t *out)
{
	const char *end;
	uint64_t value;
	int rc = parse_digits(text, &value, &end);
	if (rc < 0)
		return rc;
	if (*end != '\0')
		return -EINVAL;
	*out = value;
	return 0;
}

int parse_size(const char *text, uint64_t *out)
{
	const char *end;
	uint64_t value;
	int rc = parse_digits(text, &value, &end);
	if (rc < 0)
		return rc;
	unsigned shift = 0;
	switch (tolower((unsigned char)*end)) {
	case '\0':
		break;
	case 'k':
		shift = 10;
		break;
	case 'm':
		shift = 20;
		break;
	case 'g':
		shift = 30;
		break;
	case 't':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (shift) {
		end++;
		if (strcmp(end, "") != 0 && strcmp(end, "iB") != 0 && strcasecmp(end, "b") != 0)
			return -EINVAL;
	} else if (*end != '\0') {
		return -EINVAL;
	}
	if (shift && value > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = value << shift;
	return 0;
}

int parse_duration_ns(const char *text, uint64_t *out)
{
	const char *p;
	uint64_t whole;
	int rc = parse_digits(text, &whole, &p);
	if (rc < 0)
		return rc;
	/* Up to nine fraction digits, as nanoseconds of the unit. */
	uint64_t frac_ns = 0;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		uint64_t scale = 100000000;
		for (; isdigit((unsigned char)*p); p++) {
			frac_ns += (uint64_t)(*p - '0') * scale;
			scale /= 10;
		}
	}
	uint64_t unit_ns;
	if (strcmp(p, "") == 0 || strcmp(p, "s") == 0)
		unit_ns = 1000000000ull;
	else if (strcmp(p, "ms") == 0)
		unit_ns = 1000000ull;
	else if (strcmp(p, "m") == 0)
		unit_ns = 60ull * 1000000000ull;
	else if (strcmp(p, "h") == 0)
		unit_ns = 3600ull * 1000000000ull;
	else
		return -EINVAL;
	uint64_t ns;
	/* frac_ns is in [0, 1e9): scale it to the unit before adding. */
	uint64_t frac_part = (uint64_t)((unsigned __int128)frac_ns * unit_ns / 1000000000ull);
	if (__builtin_mul_overflow(whole, unit_ns, &ns) ||
	    __builtin_add_overflow(ns, frac_part, &ns))
		return -ERANGE;
	*out = ns;
	return 0;
}

int parse_cpu_list(const char *text, int *cpus, size_t max, size_t *count)
{
	size_t n = 0;
	const char *p = text;
	for (;;) {
		uint64_t first, last;
		int rc = parse_digits(p, &first, &p);
		if (rc < 0)
			return -EINVAL;
		last = first;
		if (*p == '-') {
			p++;
			if (parse_digits(p, &last, &p) < 0)
				return -EINVAL;
		}
		if (last < first || last > 65535)
			return -EINVAL;
		for (uint64_t cpu = first; cpu <= last; cpu++) {
			if (n == max)
				return -E2BIG;
			cpus[n++] = (int)cpu;
		}
		if (*p == '\0')
			break;
		if (*p != ',')
			return -EINVAL;
		p++;
	}
	*count = n;
	return 0;
}
