/* xts --benchmark: each XTS engine's speed on this machine, the way
 * `cryptsetup benchmark` answers "which cipher path is fast here": in place
 * over a 1 MiB buffer with random keys, in one call per 512-byte sector, per
 * 4 KiB request (8 sectors) and per 1 MiB (2048 sectors), both directions.
 * scripts/bench.sh --crypt reads this table (docs/benchmarks.md). */
#include "xts.h"

#include "common/common.h"
#include "crypto/xts_internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#define BUFFER_SECTORS 2048u /* 1 MiB */

static const struct {
	const char *label;
	size_t sectors; /* per call */
} units[] = {{"512B", 1}, {"4KiB", 8}, {"1MiB", BUFFER_SECTORS}};

/* MB/s (10^6 bytes) of one direction over `seconds`. */
static double measure(struct xts_cipher *c, bool encrypt, size_t per_call, uint8_t *buf,
		      double seconds)
{
	uint64_t start = now_ns(), deadline = start + (uint64_t)(seconds * 1e9), end, bytes = 0;
	uint64_t sector = 0;
	do {
		for (size_t off = 0; off < BUFFER_SECTORS; off += per_call, sector += per_call) {
			uint8_t *p = buf + off * XTS_UNIT_BYTES;
			if (encrypt)
				(void)xts_encrypt(c, sector, p, p, per_call);
			else
				(void)xts_decrypt(c, sector, p, p, per_call);
		}
		bytes += (uint64_t)BUFFER_SECTORS * XTS_UNIT_BYTES;
		end = now_ns();
	} while (end < deadline);
	return (double)bytes / ((double)(end - start) / 1e9) / 1e6;
}

int xts_benchmark(double seconds)
{
	uint8_t *buf = buffer_alloc(64, (size_t)BUFFER_SECTORS * XTS_UNIT_BYTES);
	uint8_t *keys = secret_alloc(2 * XTS_KEY_BYTES);
	if (!buf || !keys ||
	    getrandom(keys, 2 * XTS_KEY_BYTES, 0) != (ssize_t)(2 * XTS_KEY_BYTES)) {
		log_error("xts --benchmark: cannot set up buffers or random keys");
		buffer_free(buf);
		secret_free(keys, 2 * XTS_KEY_BYTES);
		return -1;
	}
	printf("%-12s %-5s %14s %14s\n", "engine", "unit", "encrypt MB/s", "decrypt MB/s");
	int ret = 0;
	for (size_t e = 0; e < xts_engine_count(); e++) {
		const char *name = xts_engine_name_at(e);
		const char *why = xts_engine_unsupported_at(e);
		if (why) {
			printf("%-12s not on this machine: %s\n", name, why);
			continue;
		}
		struct xts_cipher *c = NULL;
		struct error err = {0};
		if (xts_cipher_new_engine(name, keys, keys + XTS_KEY_BYTES, &c, &err) < 0) {
			log_error("%s", err.text);
			ret = -1;
			continue;
		}
		for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
			double enc = measure(c, true, units[u].sectors, buf, seconds);
			double dec = measure(c, false, units[u].sectors, buf, seconds);
			printf("%-12s %-5s %14.0f %14.0f\n", name, units[u].label, enc, dec);
			fflush(stdout);
		}
		xts_cipher_free(c);
	}
	printf("chosen: %s\n", xts_engine_chosen());
	buffer_free(buf);
	secret_free(keys, 2 * XTS_KEY_BYTES);
	return ret;
}
