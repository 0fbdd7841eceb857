/*
 * What a client writes to the RPC socket: newline-separated request lines,
 * each trimmed (rpc_trim_line) and answered (rpc_reply) as the server's
 * client loop does, against a small fixed state: two queues with requests
 * in flight, a 64-stripe disk with a source, no fetch worker. No socket:
 * the framing is one memchr; the parser and the dispatch are what is
 * fuzzed.
 *
 * Every reply must be one line of ASCII (docs/rpc.md; a newline inside it
 * would split it on the wire; DEL is ASCII and JSON leaves it unescaped, so
 * an unknown command's echo may hold one), parse as a JSON object with one
 * key, and that key must be the command asked for when the request is an
 * object whose "command" is a known command's name, else "error".
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc_internal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("UBIBLK_LOG", "error", 0);
	log_init();
	return 0;
}

/* The reply's key the request asks for; decided with jansson alone. */
static const char *expected_key(const char *line, size_t len)
{
	static const char *const commands[] = {"version", "status", "queues", "stats", "metrics"};
	json_t *request = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	const char *key = "error";
	const char *name = json_string_value(json_object_get(request, "command"));
	for (size_t i = 0; name && i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(name, commands[i]) == 0)
			key = commands[i];
	json_decref(request);
	return key;
}

static void check_reply(const char *reply, const char *key)
{
	if (!reply)
		abort();
	for (const char *p = reply; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7f)
			abort();
	json_t *parsed = json_loads(reply, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(parsed) || json_object_size(parsed) != 1 ||
	    !json_object_get(parsed, key))
		abort();
	json_t *error = json_object_get(parsed, "error");
	if (error && !json_is_string(error))
		abort();
	json_decref(parsed);
}

struct fixture {
	struct io_tracker *trackers[2];
	uint8_t headers[64];
	struct stripe_state *stripes;
	struct rpc_context ctx;
};

static void fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->trackers[0] = io_tracker_create(4);
	f->trackers[1] = io_tracker_create(2);
	if (!f->trackers[0] || !f->trackers[1])
		abort();
	io_tracker_begin(f->trackers[0], 0, IO_KIND_READ, 2, 8, 0);
	io_tracker_begin(f->trackers[0], 3, IO_KIND_FLUSH, 0, 0, 0);
	io_tracker_begin(f->trackers[1], 1, IO_KIND_WRITE, UINT64_C(1) << 40, 256, 0);
	for (int i = 0; i < 16; i++)
		f->headers[i] = META_HEADER_HAS_SOURCE | (i % 3 ? 0 : META_HEADER_FETCHED);
	struct metadata m = {.shift = 11, .header_count = 64, .headers = f->headers};
	if (stripe_state_create(&m, UINT64_C(64) << 11, &f->stripes, NULL) != 0)
		abort();
	f->ctx = (struct rpc_context){
	    .trackers = f->trackers, .num_queues = 2, .stripes = f->stripes, .worker = NULL};
}

static void fixture_fini(struct fixture *f)
{
	stripe_state_destroy(f->stripes);
	io_tracker_destroy(f->trackers[0]);
	io_tracker_destroy(f->trackers[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fixture f;
	fixture_init(&f);
	const char *text = (const char *)data;
	size_t start = 0;
	while (start < size) {
		const char *nl = memchr(text + start, '\n', size - start);
		size_t end = nl ? (size_t)(nl - text) : size;
		size_t len = end - start;
		/* The server drops a client whose line is longer. */
		if (len > RPC_MAX_LINE)
			break;
		const char *line = rpc_trim_line(text + start, &len);
		if (len > 0) {
			char *reply = rpc_reply(&f.ctx, line, len);
			check_reply(reply, expected_key(line, len));
			free(reply);
		}
		start = end + 1;
	}
	fixture_fini(&f);
	return 0;
}
