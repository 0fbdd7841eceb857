/* init-metadata: writes a fresh metadata file (format 1.0) for the disk and
 * stripe source of a device config, so vhost-backend can fetch the disk
 * lazily. It creates the file when missing, extends it when too small, and
 * refuses to reset a file that is already in use unless --force is given:
 * a reset throws away every FETCHED and WRITTEN flag, and a disk whose
 * stripes were written would then be fetched over. See docs/metadata.md. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "bdev/bdev.h"
#include "common/common.h"
#include "common_args.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "fetch/fetch.h"
#include "meta/meta.h"

#define OPT_FORCE 256

struct cli_args {
	struct common_args common;
	unsigned shift;
	bool force;
	bool verbose;
};

static void print_help(FILE *out)
{
	fprintf(out,
		"Usage: init-metadata -f <CONFIG> [-k <KEK> [-u]] [-s <SHIFT>] [--force] [-v]\n"
		"\n"
		"Writes a fresh lazy-fetch metadata file at the config's metadata_path: one\n"
		"header byte per stripe of the disk at `path`, marked HAS_SOURCE where the\n"
		"stripe source (stripe_source raw, or image_path) has data. The file is\n"
		"created (mode 0600) when missing and extended when too small; a file that\n"
		"already holds metadata is only reset with --force, because resetting it\n"
		"forgets which stripes were fetched and written. With the config's\n"
		"encryption_key the file is written encrypted with the disk's keys.\n"
		"\n"
		"Options:\n"
		"  -f, --config <PATH>                  device config (YAML, required)\n"
		"  -k, --kek <PATH>                     key-encryption-key file for the config's "
		"secrets\n"
		"  -u, --unlink-kek                     delete the KEK file after reading it "
		"(needs --kek)\n"
		"  -s, --stripe-sector-count-shift <N>  stripes of 2^N sectors, 6..16 (default 11: "
		"1 MiB)\n"
		"      --force                          reset a file that already holds metadata\n"
		"  -v, --verbose                        print a one-line summary on stdout\n"
		"  -h, --help                           print this help\n"
		"  -V, --version                        print the version\n"
		"\n"
		"Example:\n"
		"  init-metadata -f disk.yaml -s 11\n"
		"  dump-metadata -f disk.yaml --map\n"
		"\n"
		"Prints nothing on success unless -v is given; errors are one line on stderr\n"
		"and exit status 1 (2 for command-line mistakes). Format: docs/metadata.md.\n");
}

static const struct tool_cli cli = {
    .name = "init-metadata",
    .usage_line = "Usage: init-metadata -f <CONFIG> [-k <KEK> [-u]] [-s <SHIFT>] [--force] [-v]\n",
    .print_help = print_help,
};

static int usage_error(const char *why)
{
	return tool_usage_error(&cli, why);
}

/* Any u8 parses here (anything else is a usage error, exit 2); the 6..16 rule
 * is checked after the config is loaded and is an ordinary error (exit 1). */
static bool parse_u8(const char *text, unsigned *out)
{
	if (!text[0] || text[0] == '-' || strlen(text) > 3)
		return false;
	char *end;
	unsigned long v = strtoul(text, &end, 10);
	if (*end || v > 255)
		return false;
	*out = (unsigned)v;
	return true;
}

/* Returns -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, struct cli_args *args)
{
	static const struct option options[] = {
	    {"config", required_argument, NULL, 'f'},
	    {"kek", required_argument, NULL, 'k'},
	    {"unlink-kek", no_argument, NULL, 'u'},
	    {"stripe-sector-count-shift", required_argument, NULL, 's'},
	    {"force", no_argument, NULL, OPT_FORCE},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	char why[160];
	int opt, status;
	while ((opt = getopt_long(argc, argv, "f:k:us:vhV", options, NULL)) != -1) {
		switch (opt) {
		case 's':
			if (!parse_u8(optarg, &args->shift)) {
				snprintf(why, sizeof(why),
					 "invalid value '%s' for --stripe-sector-count-shift: "
					 "expected a number from 0 to 255",
					 optarg);
				return usage_error(why);
			}
			break;
		case OPT_FORCE:
			args->force = true;
			break;
		case 'v':
			args->verbose = true;
			break;
		default:
			status = common_args_option(&cli, &args->common, opt, optarg);
			if (status >= 0)
				return status;
			break;
		}
	}
	return common_args_finish(&cli, &args->common, argc, optind);
}

/* Checks in a fixed order, so a config with several problems always reports
 * the same one. */
static int check_config(const struct cli_args *args, const struct device_config *cfg)
{
	if (args->shift < META_MIN_SHIFT || args->shift > META_MAX_INIT_SHIFT) {
		log_error("stripe-sector-count-shift must be between %u and %u.", META_MIN_SHIFT,
			  META_MAX_INIT_SHIFT);
		return -1;
	}
	if (!cfg->metadata_path) {
		log_error("metadata_path is none");
		return -1;
	}
	return 0;
}

/* meta_init_options.wrap: the metadata file of an encrypted disk is
 * encrypted with the disk's keys. */
static int wrap_crypt(void *ctx, struct bdev *file, struct bdev **out, struct error *err)
{
	const struct device_config *cfg = ctx;
	return crypt_bdev_open(file, cfg->encryption_key[0], cfg->encryption_key[1], out, err);
}

/* Size in sectors of a file, checked the way the backend will open it: with
 * keys, through the crypt layer, so bad keys fail before anything is
 * written. */
static int file_sectors(const struct bdev_file_options *opts, const struct device_config *keys,
			const char *what, uint64_t *sectors)
{
	struct error err = {0};
	struct bdev *file, *dev;
	int rc = bdev_open_file(opts, &file, &err);
	if (rc < 0) {
		log_error("cannot open the %s: %s", what, err.text[0] ? err.text : strerror(-rc));
		return rc;
	}
	dev = file;
	if (keys && (rc = wrap_crypt((void *)keys, file, &dev, &err)) < 0) {
		log_error("%s", err.text);
		bdev_close(file);
		return rc;
	}
	*sectors = bdev_sector_count(dev);
	if (dev != file)
		bdev_close(dev);
	bdev_close(file);
	return 0;
}

/* With keys, an existing file that reads as plaintext metadata would look
 * like garbage through the crypt layer and be reset without --force: an
 * unencrypted file in use is refused the same way an encrypted one is. */
static int check_plaintext_metadata(const struct cli_args *args, const struct device_config *cfg)
{
	if (!cfg->has_encryption_key || args->force || access(cfg->metadata_path, F_OK) != 0)
		return 0;
	struct bdev_file_options opts = {
	    .path = cfg->metadata_path,
	    .engine = BDEV_ENGINE_SYNC,
	    .read_only = true,
	    .direct = true,
	};
	struct bdev *dev;
	if (bdev_open_file(&opts, &dev, NULL) < 0)
		return 0; /* meta_init_file reports what is wrong with it */
	struct metadata old;
	int rc = meta_load(dev, 0, &old, NULL); /* sector 0 says it all */
	bdev_close(dev);
	if (rc < 0)
		return 0;
	meta_free(&old);
	log_error("%s holds unencrypted metadata but the config sets encryption_key; use --force "
		  "to reset it (encrypted)",
		  cfg->metadata_path);
	return -1;
}

/* What the source is called in a warning. */
static const char *source_noun(enum stripe_source_kind kind)
{
	switch (kind) {
	case STRIPE_SOURCE_REMOTE:
		return "the server's disk";
	case STRIPE_SOURCE_ARCHIVE:
		return "the archive";
	default:
		return "the image";
	}
}

/* The source says which stripes it has: header i gets HAS_SOURCE iff
 * has_stripe(i). Returns how many do (UINT64_MAX on failure). One
 * connection is enough to read a remote server's metadata. */
static uint64_t source_headers(const struct device_config *cfg, uint8_t shift,
			       uint64_t disk_sectors, struct metadata *m)
{
	struct device_config one = *cfg;
	one.source.remote.connections = 1;
	struct stripe_source *src = NULL;
	struct bdev *image = NULL;
	struct error err = {0};
	if (backend_stripe_source_open(&one, 1u << shift, disk_sectors, &src, &image, &err) < 0) {
		log_error("%s", err.text);
		return UINT64_MAX;
	}
	uint64_t served = 0;
	for (uint64_t i = 0; i < m->header_count; i++) {
		bool has = stripe_source_has_stripe(src, i);
		m->headers[i] = has ? META_HEADER_HAS_SOURCE : 0;
		served += has;
	}
	uint64_t source_sectors = stripe_source_sector_count(src);
	if (source_sectors > disk_sectors)
		log_warn("%s (%llu bytes) is larger than the disk (%llu bytes): vhost-backend will "
			 "refuse to fetch from it",
			 source_noun(cfg->source.kind),
			 (unsigned long long)source_sectors * SECTOR_SIZE,
			 (unsigned long long)disk_sectors * SECTOR_SIZE);
	stripe_source_destroy(src);
	if (image)
		bdev_close(image);
	return served;
}

static int run(const struct cli_args *args, const struct device_config *cfg)
{
	if (check_config(args, cfg) < 0)
		return 1;
	uint8_t shift = (uint8_t)args->shift;
	struct bdev_file_options disk = {
	    .path = cfg->path,
	    .engine = backend_engine(cfg->io_engine),
	    .direct = true,
	    .write_through = cfg->write_through,
	    .queue_depth = cfg->queue_size,
	};
	uint64_t disk_sectors;
	if (file_sectors(&disk, cfg->has_encryption_key ? cfg : NULL, "disk", &disk_sectors) < 0)
		return 1;
	if (check_plaintext_metadata(args, cfg) < 0)
		return 1;
	struct metadata m;
	uint64_t stripes = meta_stripe_count(disk_sectors, shift);
	if (meta_create(&m, shift, stripes, 0) < 0) {
		log_error("out of memory for %llu stripe headers", (unsigned long long)stripes);
		return 1;
	}
	uint64_t source_stripes = 0;
	if (cfg->source.kind != STRIPE_SOURCE_NONE &&
	    (source_stripes = source_headers(cfg, shift, disk_sectors, &m)) == UINT64_MAX) {
		meta_free(&m);
		return 1;
	}
	const char *protected_paths[] = {cfg->path, cfg->source.raw_path, NULL};
	struct meta_init_options opts = {
	    .path = cfg->metadata_path,
	    /* The metadata must really reach the file, whatever the disk's engine. */
	    .engine = cfg->io_engine == IO_ENGINE_SYNC ? BDEV_ENGINE_SYNC : BDEV_ENGINE_IO_URING,
	    .write_through = cfg->write_through,
	    .force = args->force,
	    .protected_paths = protected_paths,
	    .wrap = cfg->has_encryption_key ? wrap_crypt : NULL,
	    .wrap_ctx = (void *)cfg,
	};
	struct error err = {0};
	int rc = meta_init_file(&opts, &m, &err);
	meta_free(&m);
	if (rc < 0) {
		log_error("%s", err.text);
		return 1;
	}
	if (args->verbose)
		printf("%s: %llu stripes of %u bytes, %llu with a source\n", cfg->metadata_path,
		       (unsigned long long)stripes, SECTOR_SIZE << shift,
		       (unsigned long long)source_stripes);
	return 0;
}

int main(int argc, char **argv)
{
	log_init();
	struct cli_args args = {.shift = META_DEFAULT_SHIFT};
	int status = parse_args(argc, argv, &args);
	if (status >= 0)
		return status;
	forbid_core_dumps(); /* the config may hold encryption keys */
	struct device_config cfg;
	if (common_args_load_config(&args.common, &cfg) < 0)
		return 1;
	status = run(&args, &cfg);
	device_config_free(&cfg);
	if (status == 0 && fflush(stdout) != 0) {
		log_error("cannot write to stdout: %s", strerror(errno));
		status = 1;
	}
	return status;
}
