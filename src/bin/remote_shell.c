/* remote-stripe-shell's commands. Output texts are the operator's (and
 * scripts') interface and match ubiblk's shell exactly; errors read
 * "<kind>: <detail>" with no source location. See docs/remote.md. */
#include "remote_shell.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "meta/meta.h"

#define MAX_TOKENS 4 /* a command and at most three arguments matter */

/* A fetched stripe, kept until the shell exits (a later fetch replaces it). */
struct remote_shell_cached {
	struct remote_shell_cached *next;
	uint64_t index;
	uint64_t len;
	uint8_t *data;
};

static const char HELP[] = "Available commands:\n"
			   "  help\n"
			   "      Show this message.\n"
			   "  exit | quit\n"
			   "      Exit the shell.\n"
			   "  stripe_header <stripe_index>\n"
			   "      Print the raw header byte and status for the given stripe.\n"
			   "  fetch_stripe <stripe_index>\n"
			   "      Fetch the stripe from the remote server and cache it locally.\n"
			   "  dump_stripe <stripe_index> <offset> <length>\n"
			   "      Dump hexadecimal data from a previously fetched stripe.\n";

void remote_shell_init(struct remote_shell *sh, const uint8_t *headers, uint64_t header_count,
		       uint64_t stripe_bytes, remote_shell_fetch_fn fetch, void *fetch_ctx)
{
	*sh = (struct remote_shell){.headers = headers,
				    .header_count = header_count,
				    .stripe_bytes = stripe_bytes,
				    .fetch = fetch,
				    .fetch_ctx = fetch_ctx};
}

void remote_shell_free(struct remote_shell *sh)
{
	while (sh->cache) {
		struct remote_shell_cached *next = sh->cache->next;
		free(sh->cache->data);
		free(sh->cache);
		sh->cache = next;
	}
}

static struct remote_shell_cached *cached(const struct remote_shell *sh, uint64_t index)
{
	for (struct remote_shell_cached *c = sh->cache; c; c = c->next)
		if (c->index == index)
			return c;
	return NULL;
}

/* Unsigned decimal as the shell has always read it: an optional '+', then
 * one or more digits, no overflow. */
static bool parse_number(const char *text, uint64_t *out)
{
	const char *p = text[0] == '+' ? text + 1 : text;
	if (!*p)
		return false;
	uint64_t v = 0;
	for (; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		unsigned digit = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - digit) / 10)
			return false;
		v = v * 10 + digit;
	}
	*out = v;
	return true;
}

/* Parses arguments 1..count into values; prints the first failure. */
static bool parse_args(char **tokens, int ntokens, int count, uint64_t *values, FILE *out)
{
	for (int i = 1; i <= count; i++) {
		if (i >= ntokens) {
			fprintf(out, "Invalid parameter error: MISSING_ARGUMENT\n");
			return false;
		}
		if (!parse_number(tokens[i], &values[i - 1])) {
			fprintf(out, "Invalid parameter error: INVALID_NUMBER: %s\n", tokens[i]);
			return false;
		}
	}
	return true;
}

static void print_hex(const uint8_t *data, uint64_t len, FILE *out)
{
	static const char digits[] = "0123456789abcdef";
	char chunk[8192];
	size_t used = 0;
	for (uint64_t i = 0; i < len; i++) {
		uint8_t b = data ? data[i] : 0;
		chunk[used++] = digits[b >> 4];
		chunk[used++] = digits[b & 15];
		if (used == sizeof(chunk)) {
			fwrite(chunk, 1, used, out);
			used = 0;
		}
	}
	chunk[used++] = '\n';
	fwrite(chunk, 1, used, out);
}

static void stripe_header(const struct remote_shell *sh, uint64_t index, FILE *out)
{
	if (index >= sh->header_count) {
		fprintf(out, "INVALID_STRIPE\n");
		return;
	}
	uint8_t h = sh->headers[index];
	fprintf(out, "0x%02x %s\n", h, (h & META_HEADER_WRITTEN) ? "WRITTEN" : "NOT_WRITTEN");
}

static void fetch_stripe(struct remote_shell *sh, uint64_t index, FILE *out)
{
	if (index >= sh->header_count) {
		fprintf(out, "INVALID_STRIPE\n");
		return;
	}
	uint8_t *buf = malloc(sh->stripe_bytes);
	if (!buf) {
		fprintf(out, "I/O error: %s\n", strerror(ENOMEM));
		return;
	}
	struct error err = {0};
	int ret = sh->fetch(sh->fetch_ctx, index, buf, &err);
	if (ret < 0) {
		error_default(&err, ret);
		fprintf(out, "%s\n", err.text);
		free(buf);
		return;
	}
	struct remote_shell_cached *c = cached(sh, index);
	if (c) {
		free(c->data);
	} else {
		c = calloc(1, sizeof(*c));
		if (!c) {
			free(buf);
			fprintf(out, "I/O error: %s\n", strerror(ENOMEM));
			return;
		}
		c->index = index;
		c->next = sh->cache;
		sh->cache = c;
	}
	c->data = buf;
	c->len = sh->stripe_bytes;
	fprintf(out, "FETCHED\n");
}

/* off + len beyond `limit` (overflow included). */
static bool out_of_range(uint64_t off, uint64_t len, uint64_t limit)
{
	return off > limit || len > limit - off;
}

/* Only the WRITTEN bit decides between the cache and zeros: a fetched
 * source stripe that was never written dumps as zeros, as ubiblk's shell
 * does (docs/remote.md). */
static void dump_stripe(const struct remote_shell *sh, const uint64_t *v, FILE *out)
{
	uint64_t index = v[0], off = v[1], len = v[2];
	if (index >= sh->header_count) {
		fprintf(out, "INVALID_STRIPE\n");
		return;
	}
	if (!(sh->headers[index] & META_HEADER_WRITTEN)) {
		if (out_of_range(off, len, sh->stripe_bytes))
			fprintf(out, "INVALID_RANGE\n");
		else
			print_hex(NULL, len, out);
		return;
	}
	const struct remote_shell_cached *c = cached(sh, index);
	if (!c)
		fprintf(out, "NOT_FETCHED_FROM_REMOTE\n");
	else if (out_of_range(off, len, c->len))
		fprintf(out, "INVALID_RANGE\n");
	else
		print_hex(c->data + off, len, out);
}

bool remote_shell_line(struct remote_shell *sh, char *line, FILE *out)
{
	char *tokens[MAX_TOKENS];
	int ntokens = 0;
	char *save = NULL;
	for (char *t = strtok_r(line, " \t\r\n\v\f", &save); t && ntokens < MAX_TOKENS;
	     t = strtok_r(NULL, " \t\r\n\v\f", &save))
		tokens[ntokens++] = t;
	if (ntokens == 0)
		return true;
	const char *cmd = tokens[0];
	uint64_t v[3];
	if (strcmp(cmd, "exit") == 0 || strcmp(cmd, "quit") == 0)
		return false;
	if (strcmp(cmd, "help") == 0) {
		fputs(HELP, out);
	} else if (strcmp(cmd, "stripe_header") == 0) {
		if (parse_args(tokens, ntokens, 1, v, out))
			stripe_header(sh, v[0], out);
	} else if (strcmp(cmd, "fetch_stripe") == 0) {
		if (parse_args(tokens, ntokens, 1, v, out))
			fetch_stripe(sh, v[0], out);
	} else if (strcmp(cmd, "dump_stripe") == 0) {
		if (parse_args(tokens, ntokens, 3, v, out))
			dump_stripe(sh, v, out);
	} else {
		fprintf(out,
			"UNKNOWN_COMMAND: %s\n"
			"Type 'help' to see the list of available commands.\n",
			cmd);
	}
	return true;
}
