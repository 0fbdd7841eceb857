/* The commands of remote-stripe-shell, apart from where lines come from and
 * where stripes come from: one line in, its output out. Kept apart from the
 * terminal and the network so every command's output is the same whether a
 * person types it or a script pipes it in. */
#ifndef UBIBLK_BIN_REMOTE_SHELL_H
#define UBIBLK_BIN_REMOTE_SHELL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/common.h"

/* Fetches stripe `index` into buf (stripe_bytes long). 0, or a negative
 * errno with err set to the one line the shell prints. */
typedef int (*remote_shell_fetch_fn)(void *ctx, uint64_t index, uint8_t *buf, struct error *err);

struct remote_shell_cached;

struct remote_shell {
	const uint8_t *headers; /* the server's headers, borrowed */
	uint64_t header_count;
	uint64_t stripe_bytes;
	remote_shell_fetch_fn fetch;
	void *fetch_ctx;
	struct remote_shell_cached *cache; /* fetched stripes, owned */
};

void remote_shell_init(struct remote_shell *sh, const uint8_t *headers, uint64_t header_count,
		       uint64_t stripe_bytes, remote_shell_fetch_fn fetch, void *fetch_ctx);
void remote_shell_free(struct remote_shell *sh);

/* Runs one input line (modified in place: trimmed and split), writing its
 * output to out. False when the line was exit or quit. */
bool remote_shell_line(struct remote_shell *sh, char *line, FILE *out);

#endif
