/* Pieces of the xts tool (src/bin/xts*.c): the command line in xts.c, the
 * sector conversion in xts_convert.c, the secret-wrapping helper in
 * xts_wrap.c, the engine benchmark in xts_benchmark.c. Each function reports its own errors (one
 * log line) and returns 0 or -1. */
#ifndef UBIBLK_BIN_XTS_H
#define UBIBLK_BIN_XTS_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "crypto/crypto.h"

/* Sectors per read/encrypt/write round: 512 KiB, so system calls cost little
 * next to the cipher and the buffer stays small. */
#define XTS_CHUNK_SECTORS 1024u

enum xts_action { XTS_DECODE = 0, XTS_ENCODE };

struct xts_job {
	enum xts_action action;
	const char *input;
	const char *output;
	uint64_t start; /* first sector, absolute (it is also the tweak) */
	uint64_t len;	/* sectors; only meaningful when len_given */
	bool len_given; /* else: every sector from start to the end */
	bool progress;	/* allowed to draw progress on stderr (a terminal) */
};

/* decode: input sectors [start, start+len) decrypted, written packed from
 * offset 0 of output. encode: encrypted, written at their own offsets, so the
 * output is (start+len)*512 bytes with zeros before start. The output is
 * created or truncated only once the sizes have been checked. */
int xts_convert(const struct xts_job *job, struct xts_cipher *cipher);

/* Reads secrets from stdin, one base64 string per line, and prints each
 * wrapped under kek as base64, one per line (what a config's encryption_key
 * items hold). */
int xts_wrap_secrets(const struct kek *kek);

/* Prints each engine's throughput (MB/s) per 512 B, 4 KiB and 1 MiB call,
 * both directions, `seconds` per figure; engines this machine cannot run
 * are named with the reason. */
int xts_benchmark(double seconds);

#endif
