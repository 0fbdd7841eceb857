#include "common_args.h"

#include "common/common.h"
#include "crypto/crypto.h"

#include <stdio.h>

static bool take_common_option(struct common_args *a, int opt, const char *arg)
{
	switch (opt) {
	case 'f':
		a->config_path = arg;
		return true;
	case 'k':
		a->kek_path = arg;
		return true;
	case 'u':
		a->unlink_kek = true;
		return true;
	default:
		return false;
	}
}

static const char *command_line_problem(const struct common_args *a, int argc, int optind_now)
{
	if (optind_now < argc)
		return "unexpected argument";
	if (!a->config_path)
		return "the option --config <PATH> is required";
	if (a->unlink_kek && !a->kek_path)
		return "--unlink-kek requires --kek";
	return NULL;
}

int common_args_load_config(const struct common_args *a, struct device_config *cfg)
{
	struct error err = {0};
	if (device_config_load_with_kek(a->config_path, a->kek_path, a->unlink_kek, cfg, &err) <
	    0) {
		log_error("%s", err.text);
		return -1;
	}
	return 0;
}

void tool_print_version(const char *name)
{
	const char *problem = xts_engine_problem();
	printf("%s %s\nxts engine: %s%s%s%s\n", name, UBIBLK_VERSION, xts_engine_chosen(),
	       problem ? " (" : "", problem ? problem : "", problem ? ")" : "");
}

int tool_usage_error(const struct tool_cli *cli, const char *why)
{
	if (why)
		fprintf(stderr, "%s: %s\n", cli->name, why);
	fprintf(stderr, "%sTry '%s --help' for more information.\n", cli->usage_line, cli->name);
	return EXIT_USAGE;
}

int common_args_option(const struct tool_cli *cli, struct common_args *a, int opt, const char *arg)
{
	switch (opt) {
	case 'h':
		cli->print_help(stdout);
		return 0;
	case 'V':
		tool_print_version(cli->name);
		return 0;
	default:
		if (take_common_option(a, opt, arg))
			return -1;
		/* getopt_long already named the bad option */
		return tool_usage_error(cli, NULL);
	}
}

int common_args_finish(const struct tool_cli *cli, const struct common_args *a, int argc,
		       int optind_now)
{
	const char *problem = command_line_problem(a, argc, optind_now);
	return problem ? tool_usage_error(cli, problem) : -1;
}
