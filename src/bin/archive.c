/* archive: writes a disk's stripes into an archive - content-addressed
 * objects in a directory or an S3 bucket - from which a backend can later
 * fetch the disk lazily (stripe_source: {source: archive, ...}). The disk is
 * read as its guest sees it (decrypted when the config has encryption_key;
 * stripes never fetched come from the disk's stripe source); each stripe
 * becomes one object, optionally snappy-compressed and AES-XTS encrypted
 * under per-archive keys wrapped with the target's archive_kek.
 *
 * Order of writes: metadata.json first (only when the target has none),
 * then the objects, then stripe-hashes.json. A target that already holds
 * an archive keeps its metadata.json - the run reuses its keys, and refuses
 * when its stripe size, compression or encryption differ from this run's -
 * so at every instant a reader sees one metadata.json and a mapping whose
 * objects were all encoded under it, or no mapping at all. A killed run
 * repeated encodes every stripe exactly as before, and the objects already
 * stored are found by HEAD. See docs/archive.md. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "archive/archive.h"
#include "archive_input.h"
#include "archive_pipeline.h"
#include "archive_report.h"
#include "common/common.h"
#include "common_args.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "store/store.h"

#define OPT_TARGET_CONFIG	256
#define OPT_ALLOW_PLAINTEXT_KEY 257
#define OPT_NO_PROGRESS		258
#define JSON_TIMEOUT_MS		30000u
#define ARCHIVE_MIN_DISK_DEPTH	8u

#define USAGE_LINE "Usage: archive -f <CONFIG> --target-config <TARGET> [-k <KEK> [-u]] [-e] [-c]\n"

struct cli_args {
	struct common_args common;
	const char *target_path;
	bool encrypt;
	bool compress;
	bool allow_plaintext_key;
	bool quiet;
	bool no_progress;
};

static void print_help(FILE *out)
{
	fprintf(
	    out, USAGE_LINE
	    "\n"
	    "Writes the disk of a device config into an archive: one object per distinct\n"
	    "stripe (data/<sha256>), stripe-hashes.json (stripe -> object) and\n"
	    "metadata.json, in the directory or S3 bucket of the target config. A backend\n"
	    "whose config says stripe_source: {source: archive, ...} fetches the disk from\n"
	    "it. The disk is read as its guest sees it: decrypted with the config's\n"
	    "encryption_key, stripes never fetched read from its stripe source. Stripes\n"
	    "that hold no data are skipped (they read back as zeros). Objects the store\n"
	    "already holds are not uploaded again, so a run that was interrupted can\n"
	    "simply be repeated.\n"
	    "\n"
	    "metadata.json is written first, stripe-hashes.json last. Where an archive\n"
	    "already is, its metadata.json is kept and its keys are reused: the run must\n"
	    "ask for the same --compress and --encrypt, the disk must have the same stripe\n"
	    "size, and archive_kek must unwrap its keys; otherwise it is refused before\n"
	    "anything is written (archive to a fresh path or prefix, or remove the old\n"
	    "archive).\n"
	    "\n"
	    "Options:\n"
	    "  -f, --config <PATH>         device config (YAML, required; needs metadata_path)\n"
	    "      --target-config <PATH>  archive target config (YAML, required): type\n"
	    "                              filesystem (path) or s3 (bucket, prefix, ...)\n"
	    "  -k, --kek <PATH>            key-encryption-key file for both configs' secrets\n"
	    "  -u, --unlink-kek            delete the KEK file after reading it (needs --kek)\n"
	    "  -e, --encrypt               encrypt the objects (AES-256-XTS) with random keys,\n"
	    "                              stored wrapped with the target's archive_kek (an\n"
	    "                              existing archive's keys are reused)\n"
	    "      --allow-plaintext-key   with --encrypt and no archive_kek: store the keys in\n"
	    "                              clear next to the data (no confidentiality)\n"
	    "  -c, --compress              compress the objects (snappy)\n"
	    "  -q, --quiet                 no summary on stdout\n"
	    "      --no-progress           no progress bar (shown only on a terminal anyway)\n"
	    "  -h, --help                  print this help\n"
	    "  -V, --version               print the version\n"
	    "\n"
	    "Example:\n"
	    "  archive -f disk.yaml --target-config s3-target.yaml --compress --encrypt\n"
	    "\n"
	    "Prints a summary on stdout (stripes archived, deduplicated, skipped, objects\n"
	    "uploaded, bytes logical/physical, throughput) and a progress bar on stderr\n"
	    "when it is a terminal. Errors are one line on stderr and exit status 1 (2 for\n"
	    "command-line mistakes); after an error stripe-hashes.json is not written.\n"
	    "See docs/archive.md.\n");
}

static const struct tool_cli cli = {
    .name = "archive",
    .usage_line = USAGE_LINE,
    .print_help = print_help,
};

/* Returns -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, struct cli_args *args)
{
	static const struct option options[] = {
	    {"config", required_argument, NULL, 'f'},
	    {"target-config", required_argument, NULL, OPT_TARGET_CONFIG},
	    {"kek", required_argument, NULL, 'k'},
	    {"unlink-kek", no_argument, NULL, 'u'},
	    {"encrypt", no_argument, NULL, 'e'},
	    {"compress", no_argument, NULL, 'c'},
	    {"allow-plaintext-key", no_argument, NULL, OPT_ALLOW_PLAINTEXT_KEY},
	    {"quiet", no_argument, NULL, 'q'},
	    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	int opt, status;
	while ((opt = getopt_long(argc, argv, "f:k:uecqhV", options, NULL)) != -1) {
		switch (opt) {
		case OPT_TARGET_CONFIG:
			args->target_path = optarg;
			break;
		case 'e':
			args->encrypt = true;
			break;
		case 'c':
			args->compress = true;
			break;
		case OPT_ALLOW_PLAINTEXT_KEY:
			args->allow_plaintext_key = true;
			break;
		case 'q':
			args->quiet = true;
			break;
		case OPT_NO_PROGRESS:
			args->no_progress = true;
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
	if (!args->target_path)
		return tool_usage_error(&cli, "the option --target-config <PATH> is required");
	return -1;
}

/* Both configs with the same KEK, which is wiped before anything else
 * happens. */
static int load_configs(const struct cli_args *args, struct device_config *cfg,
			struct archive_source_config *target)
{
	struct kek kek;
	struct error err = {0};
	int rc = kek_load_for_tool(args->common.kek_path, args->common.unlink_kek, &kek, &err);
	if (rc < 0) {
		log_error("%s", err.text);
		return rc;
	}
	rc = device_config_load(args->common.config_path, &kek, cfg, &err);
	if (rc == 0) {
		rc = archive_config_load(args->target_path, &kek, target, &err);
		if (rc < 0)
			device_config_free(cfg);
	}
	kek_free(&kek);
	if (rc < 0)
		log_error("%s", err.text);
	return rc;
}

/* Fresh random XTS keys (their halves must differ), the cipher over them,
 * and the keys wrapped with archive_kek into the metadata. */
static int make_keys(const struct archive_source_config *target, struct archive_metadata *m,
		     struct xts_cipher **xts, struct error *err)
{
	uint8_t keys[2][XTS_KEY_BYTES];
	int rc = 0;
	do {
		if (RAND_bytes(keys[0], XTS_KEY_BYTES) != 1 ||
		    RAND_bytes(keys[1], XTS_KEY_BYTES) != 1) {
			rc = error_set(err, -EIO, "cannot draw random archive keys");
			break;
		}
	} while (memcmp(keys[0], keys[1], XTS_KEY_BYTES) == 0);
	if (rc == 0)
		rc = xts_cipher_new(keys[0], keys[1], xts, err);
	if (rc == 0)
		rc = archive_keys_wrap(&target->archive_kek, keys[0], keys[1], m, err);
	secret_wipe(keys, sizeof(keys));
	return rc;
}

/* The cipher over the keys an existing archive's metadata holds. */
static int reuse_keys(const struct archive_source_config *target, const struct archive_metadata *m,
		      struct xts_cipher **xts, struct error *err)
{
	uint8_t keys[2][XTS_KEY_BYTES];
	int rc = archive_keys_unwrap(&target->archive_kek, m, keys[0], keys[1], err);
	if (rc == 0)
		rc = xts_cipher_new(keys[0], keys[1], xts, err);
	secret_wipe(keys, sizeof(keys));
	return rc;
}

static const char *compression_name(enum archive_compression c)
{
	return c == ARCHIVE_COMPRESSION_SNAPPY ? "snappy" : "none";
}

/* The metadata.json the target already holds: *found false when there is
 * none (*m untouched). Errors: the store's text for a failed GET. */
static int get_metadata(struct store *store, struct archive_metadata *m, bool *found,
			struct error *err)
{
	uint8_t *body = NULL;
	size_t len = 0;
	*found = false;
	int rc = store_get_sync(store, ARCHIVE_METADATA_NAME, ARCHIVE_METADATA_MAX_BYTES,
				JSON_TIMEOUT_MS, &body, &len, err);
	if (rc == -ENOENT) {
		error_clear(err);
		return 0;
	}
	if (rc < 0)
		return rc;
	*found = true;
	struct error why = {0};
	rc = archive_metadata_parse((const char *)body, len, m, &why);
	free(body);
	if (rc < 0)
		return error_set(err, rc, "holds a metadata.json that cannot be used: %s",
				 why.text);
	return 0;
}

/* An archive already at the target is added to only when this run would
 * have written the same metadata.json: same stripe size, compression and
 * encryption, and keys the target's archive_kek unwraps (into *xts). Then
 * its objects and the new ones are encoded alike, and metadata.json stays
 * as it is. Errors name the difference, after "<target> ". */
static int check_existing(const struct cli_args *args, const struct archive_source_config *target,
			  const struct archive_metadata *want, const struct archive_metadata *have,
			  struct xts_cipher **xts, struct error *err)
{
	if (have->stripe_sector_count != want->stripe_sector_count)
		return error_set(err, -EINVAL,
				 "holds an archive with stripe_sector_count %" PRIu64
				 ", but the disk's stripes have %" PRIu64 " sectors",
				 have->stripe_sector_count, want->stripe_sector_count);
	if (have->compression != want->compression)
		return error_set(err, -EINVAL,
				 "holds an archive with compression %s, but this run asks for %s "
				 "(--compress)",
				 compression_name(have->compression),
				 compression_name(want->compression));
	bool encrypted = have->wrapped_key[0].present;
	if (encrypted != args->encrypt)
		return error_set(err, -EINVAL,
				 encrypted
				     ? "holds an encrypted archive, but this run does not ask "
				       "for --encrypt"
				     : "holds an unencrypted archive, but this run asks for "
				       "--encrypt");
	if (!encrypted)
		return 0;
	struct error why = {0};
	int rc = reuse_keys(target, have, xts, &why);
	if (rc < 0)
		return error_set(err, rc,
				 "holds an archive whose keys the target's archive_kek cannot "
				 "unwrap: %s",
				 why.text);
	return 0;
}

/* What the archive's objects are encoded with. A target without
 * metadata.json gets fresh keys (when encrypting) and its metadata.json
 * before any object, so that a run killed later leaves metadata the next
 * run reuses, and no mapping until every object is in. A target with one
 * must match (check_existing) and keeps it. *refused: the target holds an
 * archive this run must not add to (err says why, after "<target> ").
 * *existed: the target held metadata.json, so it may hold objects too. */
static int prepare_metadata(const struct cli_args *args, const struct archive_source_config *target,
			    struct store *store, struct archive_metadata *m,
			    struct xts_cipher **xts, bool *refused, bool *existed,
			    struct error *err)
{
	struct archive_metadata have = {0};
	bool found;
	*refused = false;
	int rc = get_metadata(store, &have, &found, err);
	*existed = found;
	if (found) {
		if (rc == 0)
			rc = check_existing(args, target, m, &have, xts, err);
		*refused = rc < 0;
		archive_metadata_free(&have);
		return rc;
	}
	if (rc < 0) {
		error_prefix(err, "cannot tell whether the target holds an archive: ");
		return rc;
	}
	if (args->encrypt)
		rc = make_keys(target, m, xts, err);
	char *text = NULL;
	if (rc == 0)
		rc = archive_metadata_write(m, &text, err);
	if (rc == 0)
		rc = store_put_sync(store, ARCHIVE_METADATA_NAME, (const uint8_t *)text,
				    strlen(text), JSON_TIMEOUT_MS, err);
	free(text);
	return rc;
}

/* Last, once every object it names is stored: a reader sees the previous
 * mapping (whose objects are all still there) or this one. */
static int write_mapping(struct store *store, struct archive_stripe_map *map, struct error *err)
{
	char *hashes = NULL;
	int rc = archive_stripe_map_write(map, &hashes, err);
	if (rc == 0)
		rc = store_put_sync(store, ARCHIVE_STRIPE_HASHES_NAME, (const uint8_t *)hashes,
				    strlen(hashes), JSON_TIMEOUT_MS, err);
	free(hashes);
	return rc;
}

static uint32_t disk_depth(uint32_t buffers)
{
	uint32_t depth = ARCHIVE_MIN_DISK_DEPTH;
	while (depth < buffers)
		depth *= 2;
	return depth;
}

static int run(const struct cli_args *args, const struct device_config *cfg,
	       const struct archive_source_config *target)
{
	if (args->encrypt && target->archive_kek.method == KEK_METHOD_NONE &&
	    !args->allow_plaintext_key) {
		log_error("--encrypt without an archive_kek in %s would store the archive's keys "
			  "in clear next to the data; add archive_kek to the target config, or "
			  "pass --allow-plaintext-key",
			  args->target_path);
		return 1;
	}
	struct error err = {0};
	struct archive_input in;
	uint32_t buffers = target->connections ? target->connections : 1;
	if (archive_input_open(cfg, disk_depth(buffers), &in, &err) < 0) {
		log_error("%s", err.text);
		return 1;
	}
	struct archive_metadata meta = {
	    .format_version = ARCHIVE_FORMAT_VERSION,
	    .stripe_sector_count = in.stripe_sectors,
	    .compression = args->compress ? ARCHIVE_COMPRESSION_SNAPPY : ARCHIVE_COMPRESSION_NONE,
	};
	struct archive_codec codec = {
	    .stripe_sector_count = in.stripe_sectors,
	    .compression = meta.compression,
	};
	struct store *store = NULL;
	struct archive_stripe_map map = {0};
	struct archive_counts counts = {0};
	struct archive_progress progress = {0};
	uint64_t started = now_ns();
	char where[512];
	store_describe(target, where, sizeof(where));
	bool refused = false;
	bool existed = false;
	int rc = store_open(target, NULL, &store, &err);
	if (rc == 0)
		rc = prepare_metadata(args, target, store, &meta, &codec.xts, &refused, &existed,
				      &err);
	if (rc == 0) {
		archive_progress_start(&progress, !args->no_progress && isatty(STDERR_FILENO));
		struct archive_pipeline_options opts = {
		    .input = &in,
		    .store = store,
		    .codec = &codec,
		    .buffers = buffers,
		    .progress = &progress,
		    .check_existing = existed,
		};
		rc = archive_pipeline_run(&opts, &map, &counts, &err);
		archive_progress_end(&progress, &counts);
	}
	if (rc == 0)
		rc = write_mapping(store, &map, &err);
	uint64_t elapsed = now_ns() - started;
	if (refused)
		log_error("%s %s; archive to a fresh path or prefix, or remove the old archive",
			  where, err.text);
	else if (rc < 0)
		log_error("%s", err.text);
	else if (!args->quiet) {
		printf("archive: %s -> %s\n", cfg->path, where);
		archive_summary_print(stdout, &counts, elapsed ? elapsed : 1);
	}
	store_close(store);
	archive_stripe_map_free(&map);
	archive_metadata_free(&meta);
	xts_cipher_free(codec.xts);
	archive_input_close(&in);
	return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	log_init();
	struct cli_args args = {0};
	int status = parse_args(argc, argv, &args);
	if (status >= 0)
		return status;
	forbid_core_dumps(); /* the configs may hold keys and credentials */
	struct device_config cfg;
	struct archive_source_config target;
	if (load_configs(&args, &cfg, &target) < 0)
		return 1;
	status = run(&args, &cfg, &target);
	archive_config_free(&target);
	device_config_free(&cfg);
	if (status == 0 && fflush(stdout) != 0) {
		log_error("cannot write to stdout: %s", strerror(errno));
		status = 1;
	}
	return status;
}
