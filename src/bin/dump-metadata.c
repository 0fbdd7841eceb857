/* dump-metadata: prints the metadata file of a device config in the seven
 * lines scripts reading ubiblk's dumps expect, and with --map a picture of
 * the disk showing what has been fetched and written. Read-only: it never
 * changes a file and never contacts a remote source. See docs/metadata.md. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bdev/bdev.h"
#include "common/common.h"
#include "common_args.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "meta/meta.h"

#define SOURCE_MAX  4096
#define IMAGE_DEPTH 64 /* the image is opened as the backend opens it, io_uring */
#define META_DEPTH  4
#define OPT_MAP	    256
#define OPT_WIDTH   257

struct cli_args {
	struct common_args common;
	bool map;
	uint32_t width;
	bool width_given;
};

static void print_help(FILE *out)
{
	fprintf(
	    out,
	    "Usage: dump-metadata -f <CONFIG> [-k <KEK> [-u]] [--map [--width <N>]]\n"
	    "\n"
	    "Prints the lazy-fetch metadata file named by the config's metadata_path:\n"
	    "the disk, the stripe source, the stripe size and the lists of fetched,\n"
	    "written and has-source stripes (as ubiblk 0.4 prints them). Changes nothing.\n"
	    "With the config's encryption_key the file is decrypted with the disk's keys.\n"
	    "\n"
	    "Options:\n"
	    "  -f, --config <PATH>  device config (YAML, required)\n"
	    "  -k, --kek <PATH>     key-encryption-key file for the config's secrets\n"
	    "  -u, --unlink-kek     delete the KEK file after reading it (needs --kek)\n"
	    "      --map            also draw the disk, one character per group of stripes:\n"
	    "                         '#' fetched   'w' written (nothing left to fetch)\n"
	    "                         '+' partly fetched   '.' not fetched yet   ' ' no source\n"
	    "                       followed by counts and percentages\n"
	    "      --width <N>      characters per map row, 1..%u (default %u)\n"
	    "  -h, --help           print this help\n"
	    "  -V, --version        print the version\n"
	    "\n"
	    "Example:\n"
	    "  dump-metadata -f disk.yaml --map --width 100\n"
	    "\n"
	    "Errors are one line on stderr and exit status 1 (2 for command-line\n"
	    "mistakes). Format and examples: docs/metadata.md.\n",
	    META_MAP_MAX_WIDTH, META_MAP_DEFAULT_WIDTH);
}

static const struct tool_cli cli = {
    .name = "dump-metadata",
    .usage_line = "Usage: dump-metadata -f <CONFIG> [-k <KEK> [-u]] [--map [--width <N>]]\n",
    .print_help = print_help,
};

static int usage_error(const char *why)
{
	return tool_usage_error(&cli, why);
}

static bool parse_width(const char *text, uint32_t *out)
{
	if (!text[0] || text[0] == '-' || text[0] == '+' || strlen(text) > 5)
		return false;
	char *end;
	unsigned long v = strtoul(text, &end, 10);
	if (*end || v < 1 || v > META_MAP_MAX_WIDTH)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* Returns -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, struct cli_args *args)
{
	static const struct option options[] = {
	    {"config", required_argument, NULL, 'f'},	   {"kek", required_argument, NULL, 'k'},
	    {"unlink-kek", no_argument, NULL, 'u'},	   {"map", no_argument, NULL, OPT_MAP},
	    {"width", required_argument, NULL, OPT_WIDTH}, {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},	   {NULL, 0, NULL, 0},
	};
	char why[160];
	int opt, status;
	while ((opt = getopt_long(argc, argv, "f:k:uhV", options, NULL)) != -1) {
		switch (opt) {
		case OPT_MAP:
			args->map = true;
			break;
		case OPT_WIDTH:
			if (!parse_width(optarg, &args->width)) {
				snprintf(why, sizeof(why),
					 "invalid value '%s' for --width: expected 1 to %u", optarg,
					 META_MAP_MAX_WIDTH);
				return usage_error(why);
			}
			args->width_given = true;
			break;
		default:
			status = common_args_option(&cli, &args->common, opt, optarg);
			if (status >= 0)
				return status;
			break;
		}
	}
	status = common_args_finish(&cli, &args->common, argc, optind);
	if (status >= 0)
		return status;
	if (args->width_given && !args->map)
		return usage_error("--width only applies to --map");
	return -1;
}

/* Opens a file read-only the way the backend would; returns a device or NULL
 * after logging why. */
static struct bdev *open_read_only(const char *path, enum bdev_engine engine, uint32_t depth,
				   const char *what)
{
	struct bdev_file_options opts = {.path = path,
					 .engine = engine,
					 .read_only = true,
					 .direct = true,
					 .queue_depth = depth};
	struct error err = {0};
	struct bdev *dev;
	int rc = bdev_open_file(&opts, &dev, &err);
	if (rc < 0) {
		log_error("cannot open the %s: %s", what, err.text[0] ? err.text : strerror(-rc));
		return NULL;
	}
	return dev;
}

static const char *or_none(const char *s)
{
	return s ? s : "None";
}

/* The dump's "source" line: the raw image's path and size, or the remote or
 * archive settings from the config (such a source is not contacted). */
static int describe_source(const struct stripe_source_config *src, char *out, size_t len)
{
	const struct archive_source_config *a = &src->archive;
	switch (src->kind) {
	case STRIPE_SOURCE_RAW: {
		struct bdev *image = open_read_only(src->raw_path, BDEV_ENGINE_IO_URING,
						    IMAGE_DEPTH, "stripe source image");
		if (!image)
			return -1;
		snprintf(out, len, "raw (path: %s, size: %llu bytes)", src->raw_path,
			 (unsigned long long)bdev_sector_count(image) * SECTOR_SIZE);
		bdev_close(image);
		return 0;
	}
	case STRIPE_SOURCE_REMOTE:
		snprintf(out, len, "remote (address: %s, psk_identity: %s)", src->remote.address,
			 or_none(src->remote.psk_identity));
		return 0;
	case STRIPE_SOURCE_ARCHIVE:
		if (a->store == ARCHIVE_STORE_FILESYSTEM)
			snprintf(out, len, "archive filesystem (path: %s)", a->path);
		else
			snprintf(out, len,
				 "archive s3 (bucket: %s, prefix: %s, endpoint: %s, region: %s, "
				 "profile: %s, connections: %u)",
				 a->bucket, or_none(a->prefix), or_none(a->endpoint),
				 or_none(a->region), or_none(a->profile), a->connections);
		return 0;
	case STRIPE_SOURCE_NONE:
	default:
		snprintf(out, len, "None");
		return 0;
	}
}

/* Without the magic the file may be encrypted and read without the keys, or
 * the reverse, or encrypted with other keys. */
static const char *magic_hint(const struct device_config *cfg, int rc)
{
	if (rc != -EBADMSG)
		return "";
	return cfg->has_encryption_key ? " (wrong encryption_key, or a metadata file written "
					 "without encryption?)"
				       : " (an encrypted metadata file needs the config's "
					 "encryption_key)";
}

/* The metadata file, open (crypt layer over it with keys): the headers of the
 * disk's stripes in m; the rest of the file is read by print_dump in pieces,
 * so a file far larger than the disk costs no memory. */
struct metadata_file {
	struct bdev *file;
	struct bdev *dev; /* file, or the crypt layer over it */
	struct metadata m;
};

static void metadata_file_close(struct metadata_file *mf)
{
	if (mf->dev != mf->file)
		bdev_close(mf->dev);
	bdev_close(mf->file);
	meta_free(&mf->m);
}

static int load_metadata(const struct device_config *cfg, uint64_t disk_sectors,
			 struct metadata_file *mf)
{
	if (!cfg->metadata_path) {
		log_error("metadata_path is none");
		return -1;
	}
	enum bdev_engine engine =
	    cfg->io_engine == IO_ENGINE_SYNC ? BDEV_ENGINE_SYNC : BDEV_ENGINE_IO_URING;
	struct bdev *file = open_read_only(cfg->metadata_path, engine, META_DEPTH, "metadata file");
	if (!file)
		return -1;
	/* The metadata file of an encrypted disk is encrypted with the disk's
	 * keys, every sector tweaked with its own sector number. */
	struct bdev *dev = file;
	if (cfg->has_encryption_key) {
		struct error why = {0};
		if (crypt_bdev_open(file, cfg->encryption_key[0], cfg->encryption_key[1], &dev,
				    &why) < 0) {
			log_error("%s", why.text);
			bdev_close(file);
			return -1;
		}
	}
	struct error err = {0};
	*mf = (struct metadata_file){.file = file, .dev = dev};
	int rc = meta_load(dev, disk_sectors, &mf->m, &err);
	if (rc < 0) {
		metadata_file_close(mf);
		log_error("Failed to load metadata from %s: %s%s", cfg->metadata_path, err.text,
			  magic_hint(cfg, rc));
		return -1;
	}
	return 0;
}

static void list_add(void *ctx, const uint8_t *headers, size_t count)
{
	meta_list_add(ctx, headers, count);
}

/* Every header of the file, the loaded ones and then the rest. */
static int print_stripe_list(const struct metadata_file *mf, uint8_t flag)
{
	struct meta_list_printer p;
	meta_list_begin(&p, stdout, flag);
	meta_list_add(&p, mf->m.headers, (size_t)mf->m.header_count);
	struct error err = {0};
	int rc = meta_scan_headers(mf->dev, mf->m.header_count, list_add, &p, &err);
	meta_list_end(&p);
	putchar('\n');
	if (rc < 0)
		log_error("Failed to read metadata: %s", err.text);
	return rc;
}

static int print_dump(const struct device_config *cfg, uint64_t disk_sectors, const char *source,
		      const struct metadata_file *mf)
{
	const struct metadata *m = &mf->m;
	printf("data file: %s (%llu bytes)\n", cfg->path,
	       (unsigned long long)disk_sectors * SECTOR_SIZE);
	printf("source: %s\n", source);
	printf("metadata version: %u.%u\n", META_VERSION_MAJOR, META_VERSION_MINOR);
	printf("stripe size: %u bytes\n", SECTOR_SIZE << m->shift);
	static const struct {
		const char *label;
		uint8_t flag;
	} lists[] = {
	    {"fetched", META_HEADER_FETCHED},
	    {"written", META_HEADER_WRITTEN},
	    {"has-source", META_HEADER_HAS_SOURCE},
	};
	for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
		printf("%s stripes: ", lists[i].label);
		if (print_stripe_list(mf, lists[i].flag) < 0)
			return -1;
	}
	return 0;
}

static int run(const struct cli_args *args, const struct device_config *cfg)
{
	struct bdev *disk = open_read_only(cfg->path, BDEV_ENGINE_SYNC, 0, "disk");
	if (!disk)
		return 1;
	uint64_t disk_sectors = bdev_sector_count(disk);
	/* The disk is opened as the backend would (crypt iff keys): bad keys
	 * are reported before anything else is read. */
	struct bdev *crypt = NULL;
	struct error why = {0};
	int rc = cfg->has_encryption_key ? crypt_bdev_open(disk, cfg->encryption_key[0],
							   cfg->encryption_key[1], &crypt, &why)
					 : 0;
	bdev_close(crypt);
	bdev_close(disk);
	if (rc < 0) {
		log_error("%s", why.text);
		return 1;
	}

	char source[SOURCE_MAX];
	struct metadata_file mf;
	if (describe_source(&cfg->source, source, sizeof(source)) < 0 ||
	    load_metadata(cfg, disk_sectors, &mf) < 0)
		return 1;
	uint64_t stripes = meta_stripe_count(disk_sectors, mf.m.shift);
	if (mf.m.header_count < stripes)
		log_warn("%s has %llu stripe headers but the disk has %llu stripes; vhost-backend "
			 "will refuse it",
			 cfg->metadata_path, (unsigned long long)mf.m.header_count,
			 (unsigned long long)stripes);

	rc = print_dump(cfg, disk_sectors, source, &mf);
	if (rc == 0 && args->map) {
		putchar('\n');
		meta_print_map(stdout, &mf.m, stripes, args->width);
	}
	metadata_file_close(&mf);
	return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	log_init();
	struct cli_args args = {.width = META_MAP_DEFAULT_WIDTH};
	int status = parse_args(argc, argv, &args);
	if (status >= 0)
		return status;
	forbid_core_dumps(); /* the config may hold encryption keys */
	struct device_config cfg;
	if (common_args_load_config(&args.common, &cfg) < 0)
		return 1;
	status = run(&args, &cfg);
	device_config_free(&cfg);
	/* A full disk or a closed pipe must not look like a complete dump. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		log_error("cannot write to stdout: %s", strerror(errno));
		status = 1;
	}
	return status;
}
