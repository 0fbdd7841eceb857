/* dump-metadata --map: the disk as a picture, one character per group of
 * stripes, so an operator sees at a glance how far a lazy disk has come and
 * where the guest has been writing. The characters are explained in meta.h
 * and docs/metadata.md. */
#include "meta/meta.h"

#include "common/common.h"

#include <errno.h>
#include <inttypes.h>

static char cell_char(const struct meta_counts *c)
{
	if (c->not_fetched)
		return c->fetched ? '+' : '.';
	if (c->written)
		return 'w';
	if (c->fetched)
		return '#';
	return ' ';
}

/* Tenths of a percent, rounded down, so 100.0% only ever means "all". */
static void print_share(FILE *out, const char *label, uint64_t count, uint64_t total)
{
	uint64_t tenths = total ? (uint64_t)((unsigned __int128)count * 1000 / total) : 0;
	fprintf(out, "%s: %" PRIu64 " (%" PRIu64 ".%" PRIu64 "%%)", label, count, tenths / 10,
		tenths % 10);
}

static int decimal_digits(uint64_t v)
{
	int digits = 1;
	while (v >= 10) {
		v /= 10;
		digits++;
	}
	return digits;
}

static void print_rows(FILE *out, const struct metadata *m, uint64_t stripes, uint64_t group,
		       uint32_t width)
{
	uint64_t row_stripes = group * width;
	uint64_t last_row_start = (stripes - 1) / row_stripes * row_stripes;
	int index_width = decimal_digits(last_row_start);
	for (uint64_t row = 0; row < stripes; row += row_stripes) {
		fprintf(out, "%*" PRIu64 " |", index_width, row);
		uint64_t row_end = stripes - row < row_stripes ? stripes : row + row_stripes;
		for (uint64_t first = row; first < row_end; first += group) {
			struct meta_counts c;
			meta_count(m, first, row_end - first < group ? row_end - first : group, &c);
			fputc(cell_char(&c), out);
		}
		fputs("|\n", out);
	}
}

int meta_print_map(FILE *out, const struct metadata *m, uint64_t stripes, uint32_t width)
{
	if (width < 1 || width > META_MAP_MAX_WIDTH)
		return -EINVAL;
	if (stripes > m->header_count)
		stripes = m->header_count;
	uint64_t cells_max = (uint64_t)width * META_MAP_MAX_ROWS;
	uint64_t group = stripes > cells_max ? (stripes + cells_max - 1) / cells_max : 1;

	uint32_t stripe_kib = (SECTOR_SIZE << m->shift) / 1024;
	bool in_mib = stripe_kib % 1024 == 0;
	fprintf(out,
		"stripe map: %" PRIu64 " stripes of %u %s, %" PRIu64 " stripe%s per character\n",
		stripes, in_mib ? stripe_kib / 1024 : stripe_kib, in_mib ? "MiB" : "KiB", group,
		group == 1 ? "" : "s");
	if (stripes)
		print_rows(out, m, stripes, group, width);
	fputs("legend: '#' fetched, 'w' written, '+' partly fetched, '.' not fetched, "
	      "' ' no source\n",
	      out);
	struct meta_counts c;
	meta_count(m, 0, stripes, &c);
	print_share(out, "fetched", c.fetched, c.total);
	fputs("  ", out);
	print_share(out, "written", c.written, c.total);
	fputs("  ", out);
	print_share(out, "not fetched", c.not_fetched, c.total);
	fputs("  ", out);
	print_share(out, "no source", c.no_source, c.total);
	fprintf(out, "  of %" PRIu64 " stripes\n", c.total);
	return 0;
}
