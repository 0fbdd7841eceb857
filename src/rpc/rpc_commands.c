/* The RPC commands: one request line in, one compact JSON reply out.
 *
 * Handlers only read atomics (tracker slots and counters, the shared stripe
 * state, the fetch worker's statistics), so a request never waits for the
 * I/O path and the I/O path never waits for a request. */
#include "rpc/rpc_internal.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

/* An unknown command is echoed up to this many bytes. */
#define ECHO_MAX_BYTES 128

/* JSON integers are signed 64-bit here; no counter comes near the limit, but
 * a wrapped negative number would be worse than a saturated one. */
static json_t *json_u64(uint64_t v)
{
	return json_integer(v > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)v);
}

/* One reply: {"<key>": value}; takes the reference to value. */
static json_t *reply_object(const char *key, json_t *value)
{
	json_t *root = json_object();
	if (!root || !value || json_object_set_new(root, key, value) < 0) {
		json_decref(root);
		return NULL;
	}
	return root;
}

/* Printable ASCII only: parser messages quote the input, which may not be
 * UTF-8, and a JSON string must be. */
static void make_printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

static json_t *invalid_request_reply(const char *detail)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "invalid request: %s", detail);
	make_printable(msg);
	return reply_object("error", json_string(msg));
}

static json_t *unknown_command_reply(const char *command)
{
	char echo[ECHO_MAX_BYTES + 4];
	size_t len = strlen(command);
	if (len > ECHO_MAX_BYTES) {
		len = ECHO_MAX_BYTES;
		/* Cut at a character boundary, not inside a UTF-8 sequence. */
		while (len > 0 && ((unsigned char)command[len] & 0xc0) == 0x80)
			len--;
	}
	memcpy(echo, command, len);
	strcpy(echo + len, strlen(command) > len ? "..." : "");
	char msg[sizeof(echo) + 32];
	snprintf(msg, sizeof(msg), "unknown command: %s", echo);
	/* The command came from a parsed JSON string: it is valid UTF-8. */
	return reply_object("error", json_string(msg));
}

static json_t *version_reply(void)
{
	return reply_object("version", json_string(UBIBLK_VERSION));
}

static json_t *status_reply(const struct rpc_context *ctx)
{
	if (!ctx->stripes)
		return reply_object("status", json_null());
	uint64_t total = 0, source = 0, fetched = 0;
	stripe_state_counts(ctx->stripes, &total, &source, &fetched);
	json_t *stripes = json_object();
	if (!stripes)
		return NULL;
	json_object_set_new(stripes, "fetched", json_u64(fetched));
	json_object_set_new(stripes, "source", json_u64(source));
	json_object_set_new(stripes, "total", json_u64(total));
	return reply_object("status", reply_object("stripes", stripes));
}

/* The queues reply is written as text rather than built as a JSON tree: it
 * holds only fixed words and numbers, and with many requests in flight a
 * tree would cost hundreds of bytes per entry in the backend's memory. */

/* The occupied slots of one queue, in slot order. */
static void queue_text(struct text *out, const struct io_tracker *t)
{
	uint32_t nslots = io_tracker_slot_count(t);
	struct io_tracker_entry *entries = nslots ? calloc(nslots, sizeof(*entries)) : NULL;
	if (nslots && !entries) {
		out->failed = true;
		return;
	}
	size_t n = io_tracker_snapshot(t, entries, nslots);
	text_printf(out, "[");
	for (size_t i = 0; i < n; i++) {
		const struct io_tracker_entry *e = &entries[i];
		const char *sep = i ? "," : "";
		if (e->kind == IO_KIND_FLUSH)
			text_printf(out, "%s[\"flush\"]", sep);
		else
			text_printf(out, "%s[\"%s\",%llu,%u]", sep,
				    e->kind == IO_KIND_READ ? "read" : "write",
				    (unsigned long long)e->sector, e->count);
	}
	text_printf(out, "]");
	free(entries);
}

static char *queues_reply(const struct rpc_context *ctx)
{
	struct text out = {.cap = 256};
	out.buf = malloc(out.cap);
	if (!out.buf)
		return NULL;
	text_printf(&out, "{\"queues\":[");
	for (uint32_t q = 0; q < ctx->num_queues; q++) {
		if (q > 0)
			text_printf(&out, ",");
		queue_text(&out, ctx->trackers[q]);
	}
	text_printf(&out, "]}");
	if (out.failed) {
		free(out.buf);
		return NULL;
	}
	return out.buf;
}

static json_t *queue_stats_json(const struct io_tracker *t)
{
	struct io_tracker_counters c;
	io_tracker_read_counters(t, &c);
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "bytes_read", json_u64(c.bytes_read));
	json_object_set_new(o, "bytes_written", json_u64(c.bytes_written));
	json_object_set_new(o, "read_ops", json_u64(c.read_ops));
	json_object_set_new(o, "write_ops", json_u64(c.write_ops));
	json_object_set_new(o, "flush_ops", json_u64(c.flush_ops));
	return o;
}

static json_t *fetch_stats_json(struct fetch_worker *worker)
{
	if (!worker)
		return json_null();
	struct fetch_stats s;
	fetch_worker_stats(worker, &s);
	/* The latency total covers the fetches whose data reached the disk. */
	uint64_t avg_ns = s.stripes_fetched ? s.fetch_latency_ns_total / s.stripes_fetched : 0;
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "stripes_fetched", json_u64(s.stripes_fetched));
	json_object_set_new(o, "bytes_fetched", json_u64(s.bytes_fetched));
	json_object_set_new(o, "fetch_failures", json_u64(s.fetch_failures));
	json_object_set_new(o, "stripes_failed", json_u64(s.stripes_failed));
	json_object_set_new(o, "fetch_latency_us_avg", json_u64(avg_ns / 1000));
	json_object_set_new(o, "fetch_latency_us_max", json_u64(s.fetch_latency_ns_max / 1000));
	return o;
}

static json_t *stats_reply(const struct rpc_context *ctx)
{
	json_t *stats = json_object();
	json_t *queues = json_array();
	if (!stats || !queues || json_object_set_new(stats, "queues", queues) < 0) {
		json_decref(stats);
		return NULL;
	}
	for (uint32_t q = 0; q < ctx->num_queues; q++) {
		if (json_array_append_new(queues, queue_stats_json(ctx->trackers[q])) < 0) {
			json_decref(stats);
			return NULL;
		}
	}
	if (json_object_set_new(stats, "fetch", fetch_stats_json(ctx->worker)) < 0) {
		json_decref(stats);
		return NULL;
	}
	return reply_object("stats", stats);
}

/* {"metrics":"<the Prometheus text>"}: the text is ASCII, so the JSON
 * string only escapes its newlines and quotes. */
static json_t *metrics_reply(const struct rpc_context *ctx)
{
	char *text = rpc_metrics_text(ctx);
	if (!text)
		return NULL;
	json_t *reply = reply_object("metrics", json_string(text));
	free(text);
	return reply;
}

/* The reply as text (compact JSON, ASCII only, so it is safe to print on any
 * terminal or log); NULL when out of memory. */
static char *dump(json_t *reply)
{
	if (!reply)
		return NULL;
	char *text = json_dumps(reply, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(reply);
	return text;
}

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

const char *rpc_trim_line(const char *line, size_t *len)
{
	size_t n = *len;
	while (n > 0 && is_space(line[0])) {
		line++;
		n--;
	}
	while (n > 0 && is_space(line[n - 1]))
		n--;
	*len = n;
	return line;
}

char *rpc_reply(const struct rpc_context *ctx, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *request = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!request)
		return dump(invalid_request_reply(jerr.text));
	char *reply;
	json_t *command = json_object_get(request, "command");
	const char *name = json_string_value(command);
	if (!json_is_object(request))
		reply = dump(invalid_request_reply("expected a JSON object"));
	else if (!command)
		reply = dump(invalid_request_reply("missing \"command\""));
	else if (!name)
		reply = dump(invalid_request_reply("\"command\" must be a string"));
	else if (strcmp(name, "version") == 0)
		reply = dump(version_reply());
	else if (strcmp(name, "status") == 0)
		reply = dump(status_reply(ctx));
	else if (strcmp(name, "queues") == 0)
		reply = queues_reply(ctx);
	else if (strcmp(name, "stats") == 0)
		reply = dump(stats_reply(ctx));
	else if (strcmp(name, "metrics") == 0)
		reply = dump(metrics_reply(ctx));
	else
		reply = dump(unknown_command_reply(name));
	json_decref(request);
	return reply;
}
