#include "archive_report.h"

#include "common/common.h"

#define PROGRESS_INTERVAL_NS 200000000ull
#define BAR_WIDTH	     30u

void archive_progress_start(struct archive_progress *p, bool on)
{
	p->on = on;
	p->drawn = false;
	p->started_ns = now_ns();
	p->drawn_ns = 0;
}

static double mib_per_s(uint64_t bytes, uint64_t ns)
{
	return ns ? (double)bytes / (1024.0 * 1024.0) / ((double)ns / 1e9) : 0.0;
}

static void draw(struct archive_progress *p, const struct archive_counts *c, bool final)
{
	if (!p->on)
		return;
	uint64_t now = now_ns();
	if (!final && p->drawn && now - p->drawn_ns < PROGRESS_INTERVAL_NS)
		return;
	p->drawn_ns = now;
	uint64_t total = c->stripes_total ? c->stripes_total : 1;
	unsigned filled = (unsigned)(c->stripes_done * BAR_WIDTH / total);
	char bar[BAR_WIDTH + 1];
	for (unsigned i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[BAR_WIDTH] = '\0';
	fprintf(stderr, "\rarchive: [%s] %3u%% %llu/%llu stripes, %.1f MiB/s\x1b[K", bar,
		(unsigned)(c->stripes_done * 100 / total), (unsigned long long)c->stripes_done,
		(unsigned long long)c->stripes_total,
		mib_per_s(c->bytes_logical, now - p->started_ns));
	fflush(stderr);
	p->drawn = true;
}

void archive_progress_update(struct archive_progress *p, const struct archive_counts *c)
{
	draw(p, c, false);
}

void archive_progress_end(struct archive_progress *p, const struct archive_counts *c)
{
	draw(p, c, true);
	if (p->drawn) {
		fputc('\n', stderr);
		fflush(stderr);
	}
	p->drawn = false;
}

void archive_summary_print(FILE *out, const struct archive_counts *c, uint64_t elapsed_ns)
{
	fprintf(out, "stripes archived: %llu\n", (unsigned long long)c->archived);
	fprintf(out, "stripes deduplicated: %llu\n", (unsigned long long)c->deduplicated);
	fprintf(out, "stripes skipped: %llu\n", (unsigned long long)c->skipped);
	fprintf(out, "stripes from source: %llu\n", (unsigned long long)c->from_source);
	fprintf(out, "objects uploaded: %llu\n", (unsigned long long)c->objects_uploaded);
	fprintf(out, "objects already stored: %llu\n",
		(unsigned long long)c->objects_already_stored);
	fprintf(out, "bytes logical: %llu\n", (unsigned long long)c->bytes_logical);
	fprintf(out, "bytes physical: %llu\n", (unsigned long long)c->bytes_physical);
	fprintf(out, "bytes uploaded: %llu\n", (unsigned long long)c->bytes_uploaded);
	fprintf(out, "elapsed: %.3f s\n", (double)elapsed_ns / 1e9);
	fprintf(out, "throughput: %.1f MiB/s\n", mib_per_s(c->bytes_logical, elapsed_ns));
}
