/* A command-line front end to the object stores for integration tests:
 *
 *   store-tool [options] TARGET_YAML put NAME FILE
 *   store-tool [options] TARGET_YAML get NAME FILE [MAX_BYTES]
 *   store-tool [options] TARGET_YAML head NAME
 *   store-tool [options] TARGET_YAML many COUNT SIZE
 *
 * `many` starts COUNT PUTs of SIZE random bytes at once (names many/<i>),
 * then COUNT HEADs, then COUNT GETs, all asynchronously, and checks every
 * body. Options set struct store_options: --connect-timeout-ms,
 * --attempt-timeout-ms, --max-attempts, --backoff-ms (base and cap).
 * A failure prints "error <errno>: <text>" on stderr and exits 2 for
 * -ENOENT, 1 otherwise. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

static int fail(int code, const char *text)
{
	fprintf(stderr, "error %d: %s\n", -code, text);
	return code == -ENOENT ? 2 : 1;
}

static int read_file(const char *path, uint8_t **data, size_t *len)
{
	FILE *f = fopen(path, "rb");
	long n;

	if (!f)
		return -errno;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	*data = malloc(n > 0 ? (size_t)n : 1);
	*len = fread(*data, 1, (size_t)n, f);
	fclose(f);
	return 0;
}

/* Waits for one completion. */
static void wait_one(struct store *s, struct store_completion *c)
{
	while (store_poll(s, c, 1) == 0) {
		struct pollfd p = {.fd = store_completion_fd(s), .events = POLLIN};
		poll(&p, 1, 1000);
	}
}

static int run_many(struct store *s, unsigned count, size_t size)
{
	uint8_t **data = calloc(count, sizeof(*data));
	char name[64];
	unsigned done;
	struct store_completion c;

	for (unsigned i = 0; i < count; i++) {
		data[i] = malloc(size);
		for (size_t k = 0; k < size; k++)
			data[i][k] = (uint8_t)(rand() >> 7);
		snprintf(name, sizeof(name), "many/%u", i);
		if (store_put(s, name, data[i], size, i))
			return fail(-EIO, "store_put refused");
	}
	for (done = 0; done < count; done++) {
		wait_one(s, &c);
		if (c.result)
			return fail(c.result, c.error.text);
	}
	for (unsigned i = 0; i < count; i++) {
		snprintf(name, sizeof(name), "many/%u", i);
		store_head(s, name, i);
	}
	for (done = 0; done < count; done++) {
		wait_one(s, &c);
		if (c.result)
			return fail(c.result, c.error.text);
	}
	for (unsigned i = 0; i < count; i++) {
		snprintf(name, sizeof(name), "many/%u", i);
		store_get(s, name, size, i);
	}
	for (done = 0; done < count; done++) {
		wait_one(s, &c);
		if (c.result)
			return fail(c.result, c.error.text);
		if (c.body_len != size || memcmp(c.body, data[c.tag], size) != 0)
			return fail(-EIO, "a body came back different");
		free(c.body);
	}
	for (unsigned i = 0; i < count; i++)
		free(data[i]);
	free(data);
	printf("many ok %u\n", count);
	return 0;
}

int main(int argc, char **argv)
{
	struct store_options opts = {0};
	struct archive_source_config cfg;
	struct store *s;
	struct error err = {0};
	struct store_completion c;
	int i = 1, rc = 0;

	for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		uint32_t v = (uint32_t)strtoul(argv[i + 1], NULL, 10);
		if (strcmp(argv[i], "--connect-timeout-ms") == 0)
			opts.connect_timeout_ms = v;
		else if (strcmp(argv[i], "--attempt-timeout-ms") == 0)
			opts.attempt_timeout_ms = v;
		else if (strcmp(argv[i], "--max-attempts") == 0)
			opts.max_attempts = v;
		else if (strcmp(argv[i], "--backoff-ms") == 0)
			opts.backoff_base_ms = opts.backoff_cap_ms = v;
		else
			return fail(-EINVAL, "unknown option");
	}
	if (argc - i < 3)
		return fail(-EINVAL,
			    "usage: store-tool [options] TARGET_YAML put|get|head|many ...");
	if (archive_config_load(argv[i], NULL, &cfg, &err))
		return fail(-EINVAL, err.text);
	if (store_open(&cfg, &opts, &s, &err)) {
		archive_config_free(&cfg);
		return fail(-EINVAL, err.text);
	}
	archive_config_free(&cfg);

	const char *cmd = argv[i + 1], *name = argv[i + 2];
	if (strcmp(cmd, "put") == 0 && argc - i >= 4) {
		uint8_t *data = NULL;
		size_t len = 0;
		if (read_file(argv[i + 3], &data, &len))
			rc = fail(-errno, "cannot read the input file");
		else if (store_put(s, name, data, len, 1))
			rc = fail(-EINVAL, "store_put refused");
		else {
			wait_one(s, &c);
			rc = c.result ? fail(c.result, c.error.text) : 0;
		}
		free(data);
	} else if (strcmp(cmd, "get") == 0 && argc - i >= 4) {
		size_t max = argc - i >= 5 ? strtoull(argv[i + 4], NULL, 10) : 64u << 20;
		if (store_get(s, name, max, 1))
			rc = fail(-EINVAL, "store_get refused");
		else {
			wait_one(s, &c);
			if (c.result) {
				rc = fail(c.result, c.error.text);
			} else {
				FILE *f = fopen(argv[i + 3], "wb");
				if (c.body_len)
					fwrite(c.body, 1, c.body_len, f);
				fclose(f);
				free(c.body);
			}
		}
	} else if (strcmp(cmd, "head") == 0) {
		if (store_head(s, name, 1))
			rc = fail(-EINVAL, "store_head refused");
		else {
			wait_one(s, &c);
			rc = c.result ? fail(c.result, c.error.text) : 0;
		}
	} else if (strcmp(cmd, "many") == 0 && argc - i >= 4) {
		rc = run_many(s, (unsigned)strtoul(name, NULL, 10),
			      (size_t)strtoull(argv[i + 3], NULL, 10));
	} else {
		rc = fail(-EINVAL, "unknown command");
	}
	store_close(s);
	return rc;
}
