/*
 * What ubiblk-top reads from a backend's `metrics` reply: the Prometheus
 * text (top_prom.c) made into a sample (top_sample_from_metrics), the view
 * between two samples (top_view.c) and both outputs (top_render.c). The
 * input is one text, or two separated by a NUL byte (older, then newer).
 *
 * Checked: a parsed sample has at most TOP_MAX_BUCKETS ascending bounds
 * ending with +Inf; every percentile shown is one of the finite bounds; the
 * JSON document parses.
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "top_render.h"
#include "top_sample.h"
#include "top_view.h"

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

static void check_sample(const struct top_sample *s)
{
	if (s->num_bounds == 0)
		return;
	if (s->num_bounds > TOP_MAX_BUCKETS || !isinf(s->bounds[s->num_bounds - 1]))
		abort();
	for (uint32_t i = 1; i < s->num_bounds; i++)
		if (!(s->bounds[i - 1] < s->bounds[i]))
			abort();
}

static bool is_bound(const struct top_sample *s, double v)
{
	for (uint32_t i = 0; i < s->num_bounds; i++)
		if (s->bounds[i] == v && !isinf(v))
			return true;
	/* Only a histogram whose one bucket is +Inf has no finite bound. */
	return s->num_bounds == 1 && isinf(v);
}

static void check_rates(const struct top_sample *s, const struct top_rates *r)
{
	if (r->has_latency && r->latency_ops > 0 && (!is_bound(s, r->p50) || !is_bound(s, r->p99)))
		abort();
}

static void render(const struct top_sample *newer, const struct top_view *view)
{
	struct top_disk_state d = {
	    .name = "fuzz", .path = "/fuzz", .reachable = true, .from_metrics = true, .view = view};
	char *text = NULL;
	size_t size = 0;
	FILE *mem = open_memstream(&text, &size);
	if (!mem)
		return;
	top_render_text(mem, &d, 1, 1.0, "");
	fclose(mem);
	free(text);
	text = NULL;
	mem = open_memstream(&text, &size);
	if (!mem)
		return;
	int rc = top_render_json(mem, &d, 1, 1.0);
	fclose(mem);
	if (rc == 0) {
		json_t *doc = json_loads(text, 0, NULL);
		if (!doc)
			abort();
		json_decref(doc);
	}
	free(text);
	check_rates(newer, &view->total);
	for (uint32_t q = 0; q < view->num_queues; q++)
		check_rates(newer, &view->queues[q]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	const char *first = copy;
	size_t first_len = strlen(copy);
	const char *second = first_len < size ? copy + first_len + 1 : copy;
	struct top_sample older, newer;
	struct error err;
	bool ok = top_sample_from_metrics(first, &older, &err) == 0;
	ok = top_sample_from_metrics(second, &newer, &err) == 0 && ok;
	if (ok) {
		check_sample(&older);
		check_sample(&newer);
		newer.taken_ns = older.taken_ns + 1000000000u;
		struct top_view view;
		if (top_view_compute(&older, &newer, &view) == 0)
			render(&newer, &view);
		top_view_free(&view);
	}
	top_sample_free(&older);
	top_sample_free(&newer);
	free(copy);
	return 0;
}
