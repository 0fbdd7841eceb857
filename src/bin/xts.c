/* xts: encrypts or decrypts sectors of a disk image with the AES-XTS keys of
 * a device config, exactly as vhost-backend stores them, with the command
 * line of ubiblk's `xts` tool. It also shows progress on a terminal, refuses
 * to write over its input, keeps core dumps off while the keys are in
 * memory, and wraps secrets under a KEK (--wrap). See docs/encryption.md. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "common_args.h"
#include "xts.h"

#define EXIT_USAGE 2
#define OPT_START  256
#define OPT_LEN	   257
#define OPT_ACTION 258
#define OPT_WRAP   259
#define OPT_BENCH  260
#define OPT_SECS   261

#define USAGE                                                                                      \
	"Usage: xts -f <CONFIG> [-k <KEK>] [--start <SECTOR>] [--len <SECTORS>]\n"                 \
	"           [--action encode|decode] <INPUT> <OUTPUT>\n"                                   \
	"       xts -k <KEK> --wrap < secrets\n"                                                   \
	"       xts --benchmark [--seconds <S>]\n"

struct cli_args {
	const char *config_path;
	const char *kek_path;
	bool start_given;
	bool action_given;
	bool wrap;
	bool benchmark;
	double seconds; /* --benchmark: per figure */
	struct xts_job job;
};

static void print_help(FILE *out)
{
	fprintf(out, USAGE
		"\n"
		"Decrypts (decode) or encrypts (encode) 512-byte sectors with the AES-256-XTS\n"
		"keys in CONFIG's encryption_key, the way vhost-backend stores an encrypted\n"
		"disk: each sector is its own XTS unit, its tweak the absolute sector number.\n"
		"All of CONFIG is loaded and validated; only encryption_key is used.\n"
		"\n"
		"Options:\n"
		"  -f, --config <PATH>      device config (YAML, required); see docs/config.md\n"
		"  -k, --kek <PATH>         key-encryption-key file unwrapping encryption_key\n"
		"                           (never deleted by xts; mode 0600 or a FIFO)\n"
		"      --start <SECTOR>     first sector of INPUT to convert (default 0)\n"
		"      --len <SECTORS>      how many sectors (default: up to INPUT's end)\n"
		"      --action <ACTION>    decode (default) or encode\n"
		"      --wrap               read plain base64 secrets from stdin, one per line,\n"
		"                           and print each wrapped under --kek (for a config's\n"
		"                           encryption_key); no CONFIG, INPUT or OUTPUT\n"
		"      --benchmark          measure each AES-XTS engine on this machine (MB/s\n"
		"                           per 512 B sector, 4 KiB and 1 MiB call, in place),\n"
		"                           name the one in use, and exit; no other options\n"
		"      --seconds <S>        --benchmark: time per figure (default 0.5)\n"
		"  -h, --help               print this help\n"
		"  -V, --version            print the version\n"
		"\n"
		"Output layouts (as ubiblk 0.4; they differ when --start is not 0):\n"
		"  decode  OUTPUT holds the --len decrypted sectors from offset 0.\n"
		"  encode  OUTPUT is (start+len)*512 bytes: zeros, then the encrypted sectors\n"
		"          at their own offsets, ready to serve as (part of) the disk.\n"
		"OUTPUT is created (0666 & ~umask) or truncated only after the range has been\n"
		"checked. A decoded image is plaintext: consider umask 077.\n"
		"\n"
		"Examples:\n"
		"  xts -f disk.yaml -k kek.yaml disk.raw plain.raw        # whole disk\n"
		"  xts -f disk.yaml --start 2048 --len 8 disk.raw part.raw\n"
		"  xts -f disk.yaml --action encode plain.raw disk.raw\n"
		"  { openssl rand -base64 32; openssl rand -base64 32; } | xts -k kek.yaml --wrap\n"
		"\n"
		"The AES-XTS engine (vaes-avx512, gcrypt or openssl: the fastest this CPU\n"
		"runs) can be forced with UBIBLK_XTS_ENGINE=<name>; --version names it.\n"
		"\n"
		"Errors are one line on stderr and exit status 1 (2 for command-line\n"
		"mistakes). Progress is shown on a terminal for jobs over 64 MiB.\n"
		"Details: docs/encryption.md.\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		fputs("xts: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
	fputs(USAGE "Try 'xts --help' for more information.\n", stderr);
	return EXIT_USAGE;
}

/* Decimal u64, as clap parses one: no sign, no spaces, no overflow. */
static bool parse_u64(const char *text, uint64_t *out)
{
	if (!isdigit((unsigned char)text[0]))
		return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static int parse_value(int opt, const char *value, struct cli_args *args)
{
	switch (opt) {
	case OPT_START:
		if (args->start_given)
			return usage_error("--start given twice");
		if (!parse_u64(value, &args->job.start))
			return usage_error(
			    "invalid value '%s' for --start: expected a sector number", value);
		args->start_given = true;
		return -1;
	case OPT_LEN:
		if (args->job.len_given)
			return usage_error("--len given twice");
		if (!parse_u64(value, &args->job.len))
			return usage_error("invalid value '%s' for --len: expected a sector count",
					   value);
		args->job.len_given = true;
		return -1;
	default: /* OPT_ACTION */
		if (args->action_given)
			return usage_error("--action given twice");
		if (strcmp(value, "decode") == 0)
			args->job.action = XTS_DECODE;
		else if (strcmp(value, "encode") == 0)
			args->job.action = XTS_ENCODE;
		else
			return usage_error("invalid value '%s' for --action: expected encode or "
					   "decode",
					   value);
		args->action_given = true;
		return -1;
	}
}

static int check_wrap_args(const struct cli_args *args, int positional)
{
	if (!args->kek_path)
		return usage_error("--wrap requires --kek");
	if (args->config_path || args->start_given || args->job.len_given || args->action_given ||
	    positional)
		return usage_error("--wrap takes only --kek (secrets come on stdin)");
	return -1;
}

/* Returns -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, struct cli_args *args)
{
	static const struct option options[] = {
	    {"config", required_argument, NULL, 'f'},
	    {"kek", required_argument, NULL, 'k'},
	    {"start", required_argument, NULL, OPT_START},
	    {"len", required_argument, NULL, OPT_LEN},
	    {"action", required_argument, NULL, OPT_ACTION},
	    {"wrap", no_argument, NULL, OPT_WRAP},
	    {"benchmark", no_argument, NULL, OPT_BENCH},
	    {"seconds", required_argument, NULL, OPT_SECS},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	int opt, status;
	while ((opt = getopt_long(argc, argv, "f:k:hV", options, NULL)) != -1) {
		switch (opt) {
		case 'f':
			if (args->config_path)
				return usage_error("--config given twice");
			args->config_path = optarg;
			break;
		case 'k':
			if (args->kek_path)
				return usage_error("--kek given twice");
			args->kek_path = optarg;
			break;
		case OPT_START:
		case OPT_LEN:
		case OPT_ACTION:
			status = parse_value(opt, optarg, args);
			if (status >= 0)
				return status;
			break;
		case OPT_WRAP:
			args->wrap = true;
			break;
		case OPT_BENCH:
			args->benchmark = true;
			break;
		case OPT_SECS: {
			char *end;
			args->seconds = strtod(optarg, &end);
			if (*end || !(args->seconds >= 0.01 && args->seconds <= 60))
				return usage_error("invalid value '%s' for --seconds: expected "
						   "0.01 to 60",
						   optarg);
			break;
		}
		case 'h':
			print_help(stdout);
			return 0;
		case 'V':
			tool_print_version("xts");
			return 0;
		default: /* getopt_long already named the bad option */
			return usage_error(NULL);
		}
	}
	int positional = argc - optind;
	if (args->benchmark) {
		if (args->wrap || args->config_path || args->kek_path || args->start_given ||
		    args->job.len_given || args->action_given || positional)
			return usage_error("--benchmark takes only --seconds");
		return -1;
	}
	if (args->seconds)
		return usage_error("--seconds goes with --benchmark");
	if (args->wrap)
		return check_wrap_args(args, positional);
	if (!args->config_path)
		return usage_error("the option --config <PATH> is required");
	if (positional < 2)
		return usage_error("the arguments <INPUT> and <OUTPUT> are required");
	if (positional > 2)
		return usage_error("unexpected argument '%s'", argv[optind + 2]);
	args->job.input = argv[optind];
	args->job.output = argv[optind + 1];
	return -1;
}

static int run_wrap(const struct cli_args *args)
{
	struct error err = {0};
	struct kek kek;
	if (kek_load(args->kek_path, &kek, &err) < 0) {
		log_error("%s", err.text);
		return 1;
	}
	int ret = xts_wrap_secrets(&kek);
	kek_free(&kek);
	return ret ? 1 : 0;
}

/* The config's keys, unwrapped; the config itself is dropped (and its copy
 * of the keys wiped) before any file is touched. */
static int open_cipher(const struct cli_args *args, struct xts_cipher **cipher)
{
	struct error err = {0};
	struct device_config cfg;

	/* xts takes no --unlink-kek: it never deletes the KEK file. */
	if (device_config_load_with_kek(args->config_path, args->kek_path, false, &cfg, &err) < 0) {
		log_error("%s", err.text);
		return -1;
	}
	int ret = -1;
	if (!cfg.has_encryption_key)
		log_error("Configuration does not contain encryption keys");
	else if (xts_cipher_new(cfg.encryption_key[0], cfg.encryption_key[1], cipher, &err) < 0)
		log_error("%s", err.text);
	else
		ret = 0;
	device_config_free(&cfg); /* wipes encryption_key */
	return ret;
}

int main(int argc, char **argv)
{
	log_init();
	struct cli_args args = {0};
	int status = parse_args(argc, argv, &args);
	if (status >= 0)
		return status;

	forbid_core_dumps();
	if (args.benchmark)
		return xts_benchmark(args.seconds ? args.seconds : 0.5) < 0 ? 1 : 0;
	if (args.wrap)
		return run_wrap(&args);
	struct xts_cipher *cipher = NULL;
	if (open_cipher(&args, &cipher) < 0)
		return 1;
	args.job.progress = true;
	status = xts_convert(&args.job, cipher) < 0 ? 1 : 0;
	xts_cipher_free(cipher); /* wipes the key schedule */
	return status;
}
