/* top_sample_take: see top_sample.h. */
#include "top_sample.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"
#include "top_prom.h"

void top_sample_free(struct top_sample *s)
{
	free(s->queues);
	*s = (struct top_sample){0};
}

static int alloc_queues(struct top_sample *s, uint32_t n, struct error *err)
{
	s->num_queues = n;
	if (n == 0)
		return 0;
	s->queues = calloc(n, sizeof(*s->queues));
	return s->queues ? 0 : error_set(err, -ENOMEM, "out of memory");
}

/* A counter or gauge as an integer: negative, NaN and infinite read as 0. */
static uint64_t as_count(double v)
{
	if (!(v >= 0) || isinf(v))
		return 0;
	if (v >= 18446744073709551615.0)
		return UINT64_MAX;
	return (uint64_t)v;
}

/* The queue label as an index, -1 when absent or out of range. */
static int queue_index(const struct prom_sample *s)
{
	const char *q = prom_sample_label(s, "queue");
	if (!q || !*q)
		return -1;
	char *end;
	errno = 0;
	unsigned long v = strtoul(q, &end, 10);
	if (*end || errno || v >= TOP_MAX_QUEUES || *q == '-' || *q == '+')
		return -1;
	return (int)v;
}

static int op_index(const struct prom_sample *s)
{
	const char *op = prom_sample_label(s, "op");
	static const char *const names[TOP_NUM_OPS] = {"read", "write", "flush"};
	for (int i = 0; op && i < TOP_NUM_OPS; i++)
		if (strcmp(op, names[i]) == 0)
			return i;
	return -1;
}

#define DURATION_BUCKET "ubiblk_queue_request_duration_seconds_bucket"

/* The le label as a bound (+Inf included); false when unreadable. */
static bool bucket_bound(const struct prom_sample *s, double *out)
{
	const char *le = prom_sample_label(s, "le");
	if (!le)
		return false;
	char *end;
	double v = strtod(le, &end);
	if (*end || isnan(v))
		return false;
	*out = v;
	return true;
}

static int bound_index(const struct top_sample *s, double bound)
{
	for (uint32_t i = 0; i < s->num_bounds; i++)
		if (s->bounds[i] == bound)
			return (int)i;
	return -1;
}

/* Adds a bound, keeping them sorted. */
static int add_bound(struct top_sample *s, double bound, struct error *err)
{
	if (bound_index(s, bound) >= 0)
		return 0;
	if (s->num_bounds == TOP_MAX_BUCKETS)
		return error_set(err, -EINVAL, "metrics: more than %d latency buckets",
				 TOP_MAX_BUCKETS);
	uint32_t i = s->num_bounds;
	while (i > 0 && s->bounds[i - 1] > bound) {
		s->bounds[i] = s->bounds[i - 1];
		i--;
	}
	s->bounds[i] = bound;
	s->num_bounds++;
	return 0;
}

static void take_stripes(struct top_sample *out, const struct prom_sample *s)
{
	const char *state = prom_sample_label(s, "state");
	uint64_t v = as_count(s->value);
	if (!state)
		return;
	out->has_stripes = true;
	if (strcmp(state, "total") == 0)
		out->stripes_total = v;
	else if (strcmp(state, "source") == 0)
		out->stripes_source = v;
	else if (strcmp(state, "fetched") == 0)
		out->stripes_fetched = v;
	else if (strcmp(state, "failed") == 0)
		out->stripes_failed = v;
}

static void take_queue_sample(struct top_sample *out, const struct prom_sample *s)
{
	int q = queue_index(s);
	if (q < 0 || (uint32_t)q >= out->num_queues)
		return;
	struct top_queue_sample *qs = &out->queues[q];
	int op = op_index(s);
	uint64_t v = as_count(s->value);
	if (strcmp(s->name, "ubiblk_queue_in_flight") == 0)
		qs->in_flight = v;
	else if (op < 0)
		return;
	else if (strcmp(s->name, "ubiblk_queue_ops_total") == 0)
		qs->ops[op] = v;
	else if (strcmp(s->name, "ubiblk_queue_bytes_total") == 0 && op != TOP_FLUSH)
		qs->bytes[op] = v;
	else if (strcmp(s->name, DURATION_BUCKET) == 0) {
		double bound;
		int i = bucket_bound(s, &bound) ? bound_index(out, bound) : -1;
		if (i >= 0)
			qs->buckets[op][i] = v;
	}
}

int top_sample_from_metrics(const char *text, struct top_sample *out, struct error *err)
{
	*out = (struct top_sample){.from_metrics = true};
	struct prom_text t;
	int rc = prom_text_parse(text, &t, err);
	/* First pass: how many queues, which buckets. */
	uint32_t num_queues = 0;
	for (size_t i = 0; rc == 0 && i < t.count; i++) {
		const struct prom_sample *s = &t.samples[i];
		if (strncmp(s->name, "ubiblk_queue_", 13) != 0)
			continue;
		int q = queue_index(s);
		if (q >= 0 && (uint32_t)q + 1 > num_queues)
			num_queues = (uint32_t)q + 1;
		double bound;
		if (strcmp(s->name, DURATION_BUCKET) == 0 && bucket_bound(s, &bound))
			rc = add_bound(out, bound, err);
	}
	if (rc == 0 && out->num_bounds > 0 && !isinf(out->bounds[out->num_bounds - 1]))
		rc = error_set(err, -EINVAL, "metrics: latency histogram without a +Inf bucket");
	if (rc == 0)
		rc = alloc_queues(out, num_queues, err);
	for (size_t i = 0; rc == 0 && i < t.count; i++) {
		const struct prom_sample *s = &t.samples[i];
		if (strncmp(s->name, "ubiblk_queue_", 13) == 0)
			take_queue_sample(out, s);
		else if (strcmp(s->name, "ubiblk_stripes") == 0)
			take_stripes(out, s);
		else if (strcmp(s->name, "ubiblk_fetch_bytes_total") == 0) {
			out->has_fetch = true;
			out->fetch_bytes = as_count(s->value);
		}
	}
	prom_text_free(&t);
	return rc;
}

/* The member `key` of a reply object; an {"error":...} reply fails. */
static int reply_member(const char *line, const char *key, json_t **root, json_t **member,
			struct error *err)
{
	json_error_t jerr;
	*root = json_loads(line, 0, &jerr);
	if (!*root || !json_is_object(*root)) {
		json_decref(*root);
		*root = NULL;
		return error_set(err, -EPROTO, "bad RPC reply to %s", key);
	}
	json_t *e = json_object_get(*root, "error");
	if (json_is_string(e)) {
		int rc = error_set(err, -EPROTO, "%s: %s", key, json_string_value(e));
		json_decref(*root);
		*root = NULL;
		return rc;
	}
	*member = json_object_get(*root, key);
	if (!*member) {
		json_decref(*root);
		*root = NULL;
		return error_set(err, -EPROTO, "RPC reply to %s without \"%s\"", key, key);
	}
	return 0;
}

/* One command's reply member; the caller decrefs *root. */
static int call(const char *path, const char *command, unsigned timeout_ms, json_t **root,
		json_t **member, struct error *err)
{
	char *line;
	int rc = rpc_call(path, command, timeout_ms, &line, err);
	if (rc < 0)
		return rc;
	rc = reply_member(line, command, root, member, err);
	free(line);
	return rc;
}

static uint64_t member_u64(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v)
							       : 0;
}

static int take_stats(json_t *stats, struct top_sample *out, struct error *err)
{
	json_t *queues = json_object_get(stats, "queues");
	if (!json_is_array(queues) || json_array_size(queues) > TOP_MAX_QUEUES)
		return error_set(err, -EPROTO, "stats reply without a queue list");
	int rc = alloc_queues(out, (uint32_t)json_array_size(queues), err);
	for (uint32_t i = 0; rc == 0 && i < out->num_queues; i++) {
		json_t *q = json_array_get(queues, i);
		struct top_queue_sample *qs = &out->queues[i];
		qs->ops[TOP_READ] = member_u64(q, "read_ops");
		qs->ops[TOP_WRITE] = member_u64(q, "write_ops");
		qs->ops[TOP_FLUSH] = member_u64(q, "flush_ops");
		qs->bytes[TOP_READ] = member_u64(q, "bytes_read");
		qs->bytes[TOP_WRITE] = member_u64(q, "bytes_written");
	}
	json_t *fetch = json_object_get(stats, "fetch");
	if (json_is_object(fetch)) {
		out->has_fetch = true;
		out->fetch_bytes = member_u64(fetch, "bytes_fetched");
		out->stripes_failed = member_u64(fetch, "stripes_failed");
	}
	return rc;
}

static void take_status(json_t *status, struct top_sample *out)
{
	json_t *stripes = json_object_get(status, "stripes");
	if (!json_is_object(stripes))
		return;
	out->has_stripes = true;
	out->stripes_total = member_u64(stripes, "total");
	out->stripes_source = member_u64(stripes, "source");
	out->stripes_fetched = member_u64(stripes, "fetched");
}

/* In flight: the length of each queue's list in the `queues` reply. */
static void take_in_flight(json_t *queues, struct top_sample *out)
{
	for (uint32_t i = 0; i < out->num_queues && i < json_array_size(queues); i++) {
		json_t *q = json_array_get(queues, i);
		out->queues[i].in_flight = json_is_array(q) ? json_array_size(q) : 0;
	}
}

static int sample_from_stats(const char *path, unsigned timeout_ms, struct top_sample *out,
			     struct error *err)
{
	*out = (struct top_sample){0};
	json_t *root, *member;
	int rc = call(path, "stats", timeout_ms, &root, &member, err);
	if (rc < 0)
		return rc;
	rc = take_stats(member, out, err);
	json_decref(root);
	if (rc == 0)
		rc = call(path, "status", timeout_ms, &root, &member, err);
	if (rc < 0)
		return rc;
	take_status(member, out);
	json_decref(root);
	rc = call(path, "queues", timeout_ms, &root, &member, err);
	if (rc < 0)
		return rc;
	if (json_is_array(member))
		take_in_flight(member, out);
	json_decref(root);
	return 0;
}

/* 1: the backend does not know `metrics`; 0: *out read from it. */
static int sample_from_metrics(const char *path, unsigned timeout_ms, struct top_sample *out,
			       struct error *err)
{
	char *line;
	int rc = rpc_call(path, "metrics", timeout_ms, &line, err);
	if (rc < 0)
		return rc;
	json_error_t jerr;
	json_t *root = json_loads(line, 0, &jerr);
	free(line);
	json_t *text = json_object_get(root, "metrics");
	json_t *e = json_object_get(root, "error");
	if (json_is_string(text))
		rc = top_sample_from_metrics(json_string_value(text), out, err);
	else if (json_is_string(e) &&
		 strncmp(json_string_value(e), "unknown command", strlen("unknown command")) == 0)
		rc = 1;
	else if (json_is_string(e))
		rc = error_set(err, -EPROTO, "metrics: %s", json_string_value(e));
	else
		rc = error_set(err, -EPROTO, "bad RPC reply to metrics");
	json_decref(root);
	return rc;
}

int top_sample_take(const char *path, enum top_protocol *protocol, unsigned timeout_ms,
		    struct top_sample *out, struct error *err)
{
	*out = (struct top_sample){0};
	int rc = 1;
	if (*protocol != TOP_PROTOCOL_STATS) {
		rc = sample_from_metrics(path, timeout_ms, out, err);
		if (rc == 0)
			*protocol = TOP_PROTOCOL_METRICS;
		else if (rc == 1)
			*protocol = TOP_PROTOCOL_STATS;
	}
	if (rc == 1)
		rc = sample_from_stats(path, timeout_ms, out, err);
	if (rc == 0)
		out->taken_ns = now_ns();
	return rc;
}
