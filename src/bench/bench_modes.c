#include "bench/bench.h"

#include <errno.h>
#include <string.h>

static const char *const mode_names[] = {
    [BENCH_RANDREAD] = "randread",
    [BENCH_RANDWRITE] = "randwrite",
    [BENCH_READ] = "read",
    [BENCH_WRITE] = "write",
    [BENCH_RW] = "rw",
    [BENCH_RANDRW] = "randrw",
    [BENCH_VERIFY] = "verify",
};

static const char *const phase_names[] = {
    [BENCH_VERIFY_BOTH] = "both",
    [BENCH_VERIFY_WRITE] = "write",
    [BENCH_VERIFY_READ] = "read",
};

int bench_mode_parse(const char *name, enum bench_mode *mode)
{
	for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++) {
		if (strcmp(name, mode_names[i]) == 0) {
			*mode = (enum bench_mode)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *bench_mode_name(enum bench_mode mode)
{
	return mode_names[mode];
}

int bench_verify_phase_parse(const char *name, enum bench_verify_phase *phase)
{
	for (size_t i = 0; i < sizeof(phase_names) / sizeof(phase_names[0]); i++) {
		if (strcmp(name, phase_names[i]) == 0) {
			*phase = (enum bench_verify_phase)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *bench_verify_phase_name(enum bench_verify_phase phase)
{
	return phase_names[phase];
}
