/* top_render_text / top_render_json: see top_render.h. */
#include "top_render.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NAME_WIDTH 20

static void print_latency(FILE *out, bool known, double seconds)
{
	if (!known)
		fprintf(out, " %8s", "-");
	else if (seconds < 1e-3)
		fprintf(out, " %6.0fus", seconds * 1e6);
	else if (seconds < 1)
		fprintf(out, " %6.1fms", seconds * 1e3);
	else
		fprintf(out, " %7.2fs", seconds);
}

/* The name column: a long name (a socket path) keeps its end, which tells
 * disks apart better than a common directory. */
static void print_name(FILE *out, const char *name)
{
	size_t len = strlen(name);
	if (len <= NAME_WIDTH)
		fprintf(out, "%-*s", NAME_WIDTH, name);
	else
		fprintf(out, "...%s", name + len - (NAME_WIDTH - 3));
}

static void print_rates(FILE *out, const char *label, const struct top_rates *r)
{
	print_name(out, label);
	fprintf(out, " %9.0f %9.0f %8.2f %8.2f %5llu", r->iops[TOP_READ], r->iops[TOP_WRITE],
		r->bytes_per_second[TOP_READ] / 1e6, r->bytes_per_second[TOP_WRITE] / 1e6,
		(unsigned long long)r->in_flight);
	bool known = r->has_latency && r->latency_ops > 0;
	print_latency(out, known, r->p50);
	print_latency(out, known, r->p99);
	fputc('\n', out);
}

static void format_duration(char *buf, size_t size, double seconds)
{
	if (seconds < 0) {
		snprintf(buf, size, "-");
		return;
	}
	if (seconds == 0) {
		snprintf(buf, size, "done");
		return;
	}
	uint64_t s = (uint64_t)ceil(seconds);
	if (s >= 86400 * 365)
		snprintf(buf, size, ">1y");
	else if (s >= 86400)
		snprintf(buf, size, "%llud%02lluh", (unsigned long long)(s / 86400),
			 (unsigned long long)(s % 86400 / 3600));
	else if (s >= 3600)
		snprintf(buf, size, "%lluh%02llum", (unsigned long long)(s / 3600),
			 (unsigned long long)(s % 3600 / 60));
	else if (s >= 60)
		snprintf(buf, size, "%llum%02llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else
		snprintf(buf, size, "%llus", (unsigned long long)s);
}

static void print_hydration(FILE *out, const struct top_hydration *h)
{
	char eta[32];
	format_duration(eta, sizeof(eta), h->eta_seconds);
	fprintf(out,
		"  hydration %llu/%llu stripes (%.1f%%)  %.1f stripes/s  %.2f MB/s  left %s  "
		"failed %llu\n",
		(unsigned long long)h->fetched, (unsigned long long)h->source, h->percent,
		h->stripes_per_second, h->bytes_per_second / 1e6, eta,
		(unsigned long long)h->failed);
}

static void print_disk(FILE *out, const struct top_disk_state *d)
{
	if (!d->reachable) {
		print_name(out, d->name);
		fprintf(out, " unreachable: %s\n", d->error ? d->error : "");
		return;
	}
	if (!d->view) {
		print_name(out, d->name);
		fprintf(out, " %9s %9s %8s %8s %5s %8s %8s\n", "-", "-", "-", "-", "-", "-", "-");
		return;
	}
	print_rates(out, d->name, &d->view->total);
	for (uint32_t q = 0; q < d->view->num_queues; q++) {
		char label[32];
		snprintf(label, sizeof(label), "  queue %u", q);
		print_rates(out, label, &d->view->queues[q]);
	}
	if (d->view->has_hydration)
		print_hydration(out, &d->view->hydration);
	if (!d->from_metrics)
		fprintf(out, "  (no latency: this backend has no metrics command)\n");
}

void top_render_text(FILE *out, const struct top_disk_state *disks, size_t num_disks,
		     double interval_seconds, const char *header)
{
	fprintf(out, "ubiblk-top %s  %zu disk%s  every %gs  %s\n", UBIBLK_VERSION, num_disks,
		num_disks == 1 ? "" : "s", interval_seconds, header ? header : "");
	fprintf(out, "%-*s %9s %9s %8s %8s %5s %8s %8s\n", NAME_WIDTH, "DISK", "READ/s", "WRITE/s",
		"RD MB/s", "WR MB/s", "INFL", "P50", "P99");
	for (size_t i = 0; i < num_disks; i++)
		print_disk(out, &disks[i]);
}

/* Sets key to a real, or null for an unknown value. */
static void set_real(json_t *o, const char *key, bool known, double v)
{
	json_object_set_new(o, key, known && isfinite(v) ? json_real(v) : json_null());
}

static void set_u64(json_t *o, const char *key, uint64_t v)
{
	json_object_set_new(o, key, json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v));
}

static void rates_json(json_t *o, const struct top_rates *r)
{
	set_real(o, "read_iops", true, r->iops[TOP_READ]);
	set_real(o, "write_iops", true, r->iops[TOP_WRITE]);
	set_real(o, "flush_iops", true, r->iops[TOP_FLUSH]);
	set_real(o, "read_bytes_per_second", true, r->bytes_per_second[TOP_READ]);
	set_real(o, "write_bytes_per_second", true, r->bytes_per_second[TOP_WRITE]);
	set_u64(o, "in_flight", r->in_flight);
	json_object_set_new(o, "latency_ops",
			    r->has_latency ? json_integer((json_int_t)r->latency_ops)
					   : json_null());
	bool known = r->has_latency && r->latency_ops > 0;
	set_real(o, "latency_p50_seconds", known, r->p50);
	set_real(o, "latency_p99_seconds", known, r->p99);
}

/* A string for the document; a socket path that is not UTF-8 (and an error
 * message quoting it) keeps its ASCII, other bytes become '?', so the key
 * is never missing. */
static json_t *text_json(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	char *copy = strdup(s);
	if (!copy)
		return NULL;
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

static json_t *hydration_json(const struct top_hydration *h)
{
	json_t *o = json_object();
	set_u64(o, "total", h->total);
	set_u64(o, "source", h->source);
	set_u64(o, "fetched", h->fetched);
	set_u64(o, "failed", h->failed);
	set_real(o, "percent", true, h->percent);
	set_real(o, "fetch_stripes_per_second", true, h->stripes_per_second);
	set_real(o, "fetch_bytes_per_second", true, h->bytes_per_second);
	set_real(o, "eta_seconds", h->eta_seconds >= 0, h->eta_seconds);
	return o;
}

static json_t *disk_json(const struct top_disk_state *d)
{
	json_t *o = json_object();
	json_object_set_new(o, "name", text_json(d->name));
	json_object_set_new(o, "socket", text_json(d->path));
	json_object_set_new(o, "reachable", json_boolean(d->reachable && d->view));
	if (!d->reachable || !d->view) {
		json_object_set_new(o, "error", text_json(d->error ? d->error : "no sample"));
		return o;
	}
	json_object_set_new(o, "error", json_null());
	json_object_set_new(o, "source", json_string(d->from_metrics ? "metrics" : "stats"));
	set_real(o, "interval_seconds", true, d->view->interval_seconds);
	rates_json(o, &d->view->total);
	json_object_set_new(o, "hydration",
			    d->view->has_hydration ? hydration_json(&d->view->hydration)
						   : json_null());
	json_t *queues = json_array();
	for (uint32_t q = 0; q < d->view->num_queues; q++) {
		json_t *qo = json_object();
		json_object_set_new(qo, "queue", json_integer(q));
		rates_json(qo, &d->view->queues[q]);
		json_array_append_new(queues, qo);
	}
	json_object_set_new(o, "queues", queues);
	return o;
}

int top_render_json(FILE *out, const struct top_disk_state *disks, size_t num_disks,
		    double interval_seconds)
{
	json_t *root = json_object();
	json_t *list = json_array();
	if (!root || !list) {
		json_decref(root);
		json_decref(list);
		return -ENOMEM;
	}
	json_object_set_new(root, "version", json_string(UBIBLK_VERSION));
	json_object_set_new(root, "interval_seconds", json_real(interval_seconds));
	for (size_t i = 0; i < num_disks; i++)
		json_array_append_new(list, disk_json(&disks[i]));
	json_object_set_new(root, "disks", list);
	int rc = json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0 ? -EIO : 0;
	fputc('\n', out);
	json_decref(root);
	return rc;
}
