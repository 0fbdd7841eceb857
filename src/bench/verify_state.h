/* Which generation of every block the device must hold: the verify state.
 *
 * For each block of the verified range it keeps the generation of the last
 * acknowledged write and the highest generation ever issued. A write first
 * raises `issued`, and `acked` only when the device acknowledges it, so after
 * any interruption (backend killed, bench killed) each sector on disk must
 * carry a generation in [acked, issued]: anything older means an
 * acknowledged write was lost.
 *
 * With a file (--verify-state) the records live in a shared mapping of it, so
 * every update is in the page cache the moment it is made and survives the
 * bench being killed; verify_state_sync() makes it durable. Layout, host byte
 * order: a 4096-byte header (struct verify_state_header), then one
 * struct verify_block per block. */
#ifndef UBIBLK_BENCH_VERIFY_STATE_H
#define UBIBLK_BENCH_VERIFY_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VERIFY_STATE_MAGIC	 "UBIBVST1"
#define VERIFY_STATE_VERSION	 1u
#define VERIFY_STATE_HEADER_SIZE 4096u

struct verify_state_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;
	uint32_t block_size;
	uint32_t record_size;
	uint64_t range_offset;
	uint64_t block_count;
	uint64_t seed;
} __attribute__((packed));

struct verify_block {
	uint32_t acked_gen;
	uint32_t issued_gen;
};

struct verify_state_params {
	uint32_t block_size;
	uint64_t range_offset;
	uint64_t block_count;
	uint64_t seed;
};

struct verify_state {
	struct verify_state_params params;
	struct verify_block *blocks;
	void *map;
	size_t map_len;
	int fd; /* -1 when the state lives in memory only */
};

/* Map the state file at `path`. An existing, non-empty file is validated and
 * its parameters loaded into st->params (the caller checks them against its
 * options). A missing or empty file is created from *fresh when `writable`,
 * and is an error (-ENOENT) otherwise; *created tells which happened.
 * Problems with the file are logged with its name. */
int verify_state_open_file(struct verify_state *st, const char *path, bool writable,
			   const struct verify_state_params *fresh, bool *created);

/* A state that lives only as long as this process. */
int verify_state_open_memory(struct verify_state *st, const struct verify_state_params *params);

/* Write the records to stable storage (no-op in memory). */
int verify_state_sync(struct verify_state *st);

void verify_state_close(struct verify_state *st);

#endif
