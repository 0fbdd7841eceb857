/* The options the device tools share: -f/--config, -k/--kek,
 * -u/--unlink-kek, and the loading they imply. Each tool keeps its own
 * getopt loop (its options differ) and hands these three over. */
#ifndef UBIBLK_BIN_COMMON_ARGS_H
#define UBIBLK_BIN_COMMON_ARGS_H

#include <stdbool.h>

/* The exit status of a bad command line; every other failure exits 1, as
 * scripts written for ubiblk's tools expect. */
#define EXIT_USAGE 2

#include "config/config.h"

struct common_args {
	const char *config_path;
	const char *kek_path;
	bool unlink_kek;
};

/* True when opt is -f, -k or -u (and records it). */
bool common_args_take(struct common_args *a, int opt, const char *arg);
/* After the getopt loop: NULL, or what is wrong with the command line. */
const char *common_args_problem(const struct common_args *a, int argc, int optind_now);
/* A bad command line: "<tool>: <why>" (why may be NULL when getopt already
 * said it), the usage line (ending in a newline) and the --help hint, all on
 * stderr. Returns EXIT_USAGE. */
int tool_usage_error(const char *tool, const char *usage_line, const char *why);
/* KEK file, then the config (device_config_load_with_kek); logs the one-line
 * error and returns -1 on failure. */
int common_args_load_config(const struct common_args *a, struct device_config *cfg);

#endif
