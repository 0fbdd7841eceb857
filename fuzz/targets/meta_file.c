/*
 * A metadata file (format 1.0: sector 0 with magic, version and shift, then
 * one header byte per stripe) as the backend, the fetch worker and
 * dump-metadata read it: through a bdev (the sync engine over a memfd holding
 * the input, zero-padded to whole sectors) with meta_load, then the stripe
 * state and dump-metadata's views built from it.
 *
 * Checked on every input that loads:
 * - meta_load of the whole file agrees with meta_deserialize of its bytes;
 * - a load for a disk reads exactly the headers that disk needs (rounded up
 *   to a sector, never past the file) and they match the file;
 * - the stripe state accepts the disk iff the file covers it, and its
 *   counts and per-stripe answers agree with the headers;
 * - the stripe lists (whole, and in pieces through meta_scan_headers as
 *   dump-metadata prints them) name exactly the headers with the flag;
 * - the map stays within its row limit; serialization gives back the file.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "meta/meta.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 64 header sectors: files with every kind of run, kept fast. */
#define INPUT_MAX (65u * SECTOR_SIZE)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("UBIBLK_LOG", "error", 0);
	log_init();
	return 0;
}

/* A read-only device over a memfd holding `len` bytes. */
static struct bdev *open_memfd(const uint8_t *bytes, size_t len, int *fd_out)
{
	int fd = memfd_create("fuzz-meta-file", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, bytes + done, len - done);
		if (n <= 0)
			abort();
		done += (size_t)n;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct bdev_file_options opts = {.path = path,
					 .engine = BDEV_ENGINE_SYNC,
					 .read_only = true,
					 .direct = false,
					 .queue_depth = 4};
	struct bdev *dev;
	struct error err = {{0}};
	if (bdev_open_file(&opts, &dev, &err) != 0) {
		fprintf(stderr, "bdev_open_file: %s\n", err.text);
		abort();
	}
	*fd_out = fd;
	return dev;
}

static char *print_list(const struct metadata *m, uint8_t flag, size_t *len)
{
	char *text = NULL;
	FILE *out = open_memstream(&text, len);
	if (!out)
		abort();
	meta_print_stripe_list(out, m, flag);
	fclose(out);
	return text;
}

/* The list names exactly the headers with the flag: "a", "a, b", "a-b". */
static void check_list(const struct metadata *m, uint8_t flag, const char *text)
{
	uint64_t next = 0; /* every header before it has been accounted for */
	const char *p = text;
	while (*p) {
		char *end;
		unsigned long long first = strtoull(p, &end, 10), last = first;
		if (end == p)
			abort();
		if (*end == '-') {
			p = end + 1;
			last = strtoull(p, &end, 10);
			if (end == p || last < first + 2)
				abort(); /* a run of two is written "a, b" */
		}
		if (first < next || last >= m->header_count)
			abort();
		for (uint64_t i = next; i < first; i++)
			if (m->headers[i] & flag)
				abort();
		for (uint64_t i = first; i <= last; i++)
			if (!(m->headers[i] & flag))
				abort();
		next = last + 1;
		p = end;
		if (*p) {
			if (strncmp(p, ", ", 2) != 0)
				abort();
			p += 2;
		}
	}
	for (uint64_t i = next; i < m->header_count; i++)
		if (m->headers[i] & flag)
			abort();
}

struct scan {
	const struct metadata *all;
	uint64_t next;
	struct meta_list_printer printer;
};

static void scan_visit(void *ctx, const uint8_t *headers, size_t count)
{
	struct scan *s = ctx;
	if (s->next + count > s->all->header_count ||
	    memcmp(headers, s->all->headers + s->next, count) != 0)
		abort();
	s->next += count;
	meta_list_add(&s->printer, headers, count);
}

/* dump-metadata's way: the loaded headers, then the rest of the file read in
 * pieces; the same text as the list of the whole file. */
static void check_scan(struct bdev *dev, const struct metadata *all, const struct metadata *part)
{
	static const uint8_t flags[] = {META_HEADER_FETCHED, META_HEADER_WRITTEN,
					META_HEADER_HAS_SOURCE};
	for (size_t f = 0; f < sizeof(flags); f++) {
		char *pieces = NULL;
		size_t pieces_len;
		struct scan s = {.all = all, .next = part->header_count};
		FILE *out = open_memstream(&pieces, &pieces_len);
		if (!out)
			abort();
		meta_list_begin(&s.printer, out, flags[f]);
		meta_list_add(&s.printer, part->headers, (size_t)part->header_count);
		struct error err = {{0}};
		if (meta_scan_headers(dev, part->header_count, scan_visit, &s, &err) != 0)
			abort();
		meta_list_end(&s.printer);
		fclose(out);
		if (s.next != all->header_count)
			abort();
		size_t whole_len;
		char *whole = print_list(all, flags[f], &whole_len);
		if (whole_len != pieces_len || memcmp(whole, pieces, whole_len) != 0)
			abort();
		free(whole);
		free(pieces);
	}
}

/* The stripe state for a disk of disk_sectors built from `part`. */
static void check_stripe_state(const struct metadata *part, uint64_t disk_sectors)
{
	uint64_t stripes = meta_stripe_count(disk_sectors, part->shift);
	struct stripe_state *s;
	struct error err = {{0}};
	int rc = stripe_state_create(part, disk_sectors, &s, &err);
	if ((rc == 0) != (part->header_count >= stripes))
		abort();
	if (rc != 0) {
		if (rc != -EINVAL || err.text[0] == '\0')
			abort();
		return;
	}
	uint64_t total, source, fetched;
	stripe_state_counts(s, &total, &source, &fetched);
	struct meta_counts c;
	meta_count(part, 0, stripes, &c);
	if (total != stripes || stripe_state_count(s) != stripes ||
	    source != c.total - c.no_source || fetched != c.fetched ||
	    stripe_state_shift(s) != part->shift)
		abort();
	for (uint64_t i = 0; i < stripes; i++) {
		uint8_t h = part->headers[i];
		enum stripe_fetch_state want = !(h & META_HEADER_HAS_SOURCE) ? STRIPE_NO_SOURCE
					       : (h & META_HEADER_FETCHED)   ? STRIPE_FETCHED
									     : STRIPE_NOT_FETCHED;
		if (stripe_state_fetch(s, i) != want ||
		    stripe_state_written(s, i) != !!(h & META_HEADER_WRITTEN) ||
		    stripe_state_ready(s, i) != (want != STRIPE_NOT_FETCHED))
			abort();
	}
	/* Past the disk: failed, never ready. */
	if (stripe_state_fetch(s, stripes) != STRIPE_FAILED || stripe_state_ready(s, stripes))
		abort();
	stripe_state_destroy(s);
}

/* A load for a disk of disk_sectors: that disk's headers, rounded up to a
 * whole sector, at most the file's. */
static void check_disk(struct bdev *dev, const struct metadata *all, uint64_t disk_sectors)
{
	struct metadata part;
	struct error err = {{0}};
	if (meta_load(dev, disk_sectors, &part, &err) != 0)
		abort();
	uint64_t stripes = meta_stripe_count(disk_sectors, all->shift);
	uint64_t wanted = (stripes + META_HEADERS_PER_SECTOR - 1) / META_HEADERS_PER_SECTOR *
			  META_HEADERS_PER_SECTOR;
	uint64_t expected = wanted < all->header_count ? wanted : all->header_count;
	if (part.shift != all->shift || part.header_count != expected ||
	    (expected && memcmp(part.headers, all->headers, (size_t)expected) != 0))
		abort();
	check_stripe_state(&part, disk_sectors);
	check_scan(dev, all, &part);
	meta_free(&part);
}

/* The map: a title, at most META_MAP_MAX_ROWS rows, a legend, the counts. */
static void check_map(const struct metadata *m, uint32_t width)
{
	char *text = NULL;
	size_t len;
	FILE *out = open_memstream(&text, &len);
	if (!out)
		abort();
	if (meta_print_map(out, m, m->header_count, width) != 0)
		abort();
	fclose(out);
	size_t lines = 0;
	for (size_t i = 0; i < len; i++)
		lines += text[i] == '\n';
	if (lines < 3 || lines > 3 + META_MAP_MAX_ROWS)
		abort();
	free(text);
}

/* Serialization gives back the file, reserved bytes 14..511 as zeros. */
static void check_serialize(const struct metadata *m, const uint8_t *file, size_t len)
{
	uint8_t *buf = malloc(len);
	if (!buf || meta_serialize(m, buf, len) != 0)
		abort();
	if (memcmp(buf, file, 14) != 0 ||
	    memcmp(buf + SECTOR_SIZE, file + SECTOR_SIZE, len - SECTOR_SIZE) != 0)
		abort();
	for (size_t i = 14; i < SECTOR_SIZE; i++)
		if (buf[i])
			abort();
	free(buf);
}

static void check_loaded(struct bdev *dev, const struct metadata *all, const uint8_t *file,
			 size_t len)
{
	for (uint8_t flag = 1; flag <= 4; flag <<= 1) {
		size_t text_len;
		char *text = print_list(all, flag, &text_len);
		check_list(all, flag, text);
		free(text);
	}
	struct meta_counts c;
	meta_count(all, 0, all->header_count, &c);
	if (c.total != all->header_count || c.fetched + c.not_fetched + c.no_source != c.total ||
	    meta_all_fetched(all) != (c.not_fetched == 0))
		abort();
	check_serialize(all, file, len);
	check_map(all, META_MAP_DEFAULT_WIDTH);
	check_map(all, 1 + file[SECTOR_SIZE - 1] % 16); /* a reserved byte picks */

	/* Disks of one sector, of every header's stripe, of one stripe more
	 * than the file covers, and as big as the last stripe in use (the way
	 * the remote client sizes a disk). */
	uint64_t stripe = UINT64_C(1) << all->shift, last_used = 0;
	for (uint64_t i = 0; i < all->header_count; i++)
		if (all->headers[i] & (META_HEADER_WRITTEN | META_HEADER_HAS_SOURCE))
			last_used = i + 1;
	check_disk(dev, all, 1);
	check_disk(dev, all, all->header_count * stripe);
	check_disk(dev, all, (all->header_count + 1) * stripe);
	if (last_used)
		check_disk(dev, all, last_used * stripe - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > INPUT_MAX)
		return 0;
	size_t len = (size + SECTOR_SIZE - 1) / SECTOR_SIZE * SECTOR_SIZE;
	uint8_t *file = calloc(len ? len : 1, 1);
	if (!file)
		abort();
	memcpy(file, data, size);
	int fd;
	struct bdev *dev = open_memfd(file, len, &fd);

	struct metadata all, parsed;
	struct error load_err = {{0}}, parse_err = {{0}};
	int rc = meta_load(dev, META_LOAD_ALL, &all, &load_err);
	int parse_rc = meta_deserialize(file, len, &parsed, &parse_err);
	if (rc != parse_rc || strcmp(load_err.text, parse_err.text) != 0)
		abort();
	if (rc == 0) {
		if (all.shift != parsed.shift || all.header_count != len - SECTOR_SIZE ||
		    parsed.header_count != all.header_count ||
		    memcmp(all.headers, parsed.headers, (size_t)all.header_count) != 0)
			abort();
		check_loaded(dev, &all, file, len);
	} else if ((rc != -EBADMSG && rc != -EPROTONOSUPPORT && rc != -EINVAL) ||
		   load_err.text[0] == '\0' || strchr(load_err.text, '\n')) {
		abort();
	}
	meta_free(&all);
	meta_free(&parsed);
	bdev_close(dev);
	close(fd);
	free(file);
	return 0;
}
