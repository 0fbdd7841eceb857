/* The options the device tools share: -f/--config, -k/--kek,
 * -u/--unlink-kek, and the loading they imply, plus -h/--help and
 * -V/--version. Each tool keeps its own getopt loop (its options differ) and
 * hands everything else to common_args_option. */
#ifndef UBIBLK_BIN_COMMON_ARGS_H
#define UBIBLK_BIN_COMMON_ARGS_H

#include <stdbool.h>
#include <stdio.h>

/* The exit status of a bad command line; every other failure exits 1, as
 * scripts written for ubiblk's tools expect. */
#define EXIT_USAGE 2

#include "config/config.h"

struct common_args {
	const char *config_path;
	const char *kek_path;
	bool unlink_kek;
};

/* A tool as the shared command-line handling shows it. */
struct tool_cli {
	const char *name;	/* in messages and the --version line */
	const char *usage_line; /* "Usage: ...\n" */
	void (*print_help)(FILE *out);
};

/* The shared tail of every tool's getopt switch (its `default:` case):
 * records -f, -k and -u, answers -h (help on stdout) and -V (version), and
 * refuses anything else, which getopt_long has already named. Returns -1
 * when parsing goes on, else the exit status (0 after -h or -V, EXIT_USAGE). */
int common_args_option(const struct tool_cli *cli, struct common_args *a, int opt, const char *arg);
/* After the getopt loop: -1 when the shared options are complete and no
 * argument is left over, else EXIT_USAGE after saying what is wrong. */
int common_args_finish(const struct tool_cli *cli, const struct common_args *a, int argc,
		       int optind_now);
/* A bad command line: "<tool>: <why>" (why may be NULL when getopt already
 * said it), the usage line and the --help hint, all on stderr. Returns
 * EXIT_USAGE. */
int tool_usage_error(const struct tool_cli *cli, const char *why);

/* --version: "NAME VERSION" (as ubiblk 69dbc92 prints it), then the AES-XTS
 * engine this process uses ("xts engine: vaes-avx512"). */
void tool_print_version(const char *name);
/* KEK file, then the config (device_config_load_with_kek); logs the one-line
 * error and returns -1 on failure. */
int common_args_load_config(const struct common_args *a, struct device_config *cfg);

#endif
