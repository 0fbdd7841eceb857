#include "common_args.h"

#include "common/common.h"

#include <stdio.h>

bool common_args_take(struct common_args *a, int opt, const char *arg)
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

const char *common_args_problem(const struct common_args *a, int argc, int optind_now)
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

int tool_usage_error(const char *tool, const char *usage_line, const char *why)
{
	if (why)
		fprintf(stderr, "%s: %s\n", tool, why);
	fprintf(stderr, "%sTry '%s --help' for more information.\n", usage_line, tool);
	return EXIT_USAGE;
}
