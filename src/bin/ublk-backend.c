/* ublk-backend: serves the same disks as vhost-backend (same config, keys,
 * encryption, lazy fetching and RPC) through the kernel's ublk driver, as
 * /dev/ublkbN on this host. SIGINT/SIGTERM stop and delete the device,
 * remove the --device-symlink and exit 0. */
#include <getopt.h>
#include <stdio.h>

#include "backend/backend.h"
#include "common/common.h"
#include "common_args.h"
#include "config/config.h"
#include "daemon.h"
#include "service_status.h"
#include "ublk/ublk.h"

#define OPT_DEVICE_SYMLINK 256 /* --device-symlink has no short form */

struct cli_args {
	struct common_args common;
	const char *device_symlink;
};

static const char usage_line[] =
    "Usage: ublk-backend -f <CONFIG> [-k <KEK> [-u]] [--device-symlink <PATH>]\n";

static void print_help(FILE *out)
{
	fprintf(out,
		"%s"
		"\n"
		"Serves the disk file named in CONFIG as a block device of this host,\n"
		"/dev/ublkbN, through the kernel's ublk driver (N is chosen by the kernel).\n"
		"Same config as vhost-backend (its `socket` is not used): encryption, lazy\n"
		"fetching and the RPC socket work the same way. SIGINT or SIGTERM stop and\n"
		"delete the device, remove the symlink and exit 0.\n"
		"\n"
		"Options:\n"
		"  -f, --config <PATH>      device config (YAML, required); see docs/config.md\n"
		"  -k, --kek <PATH>         key-encryption-key file that unwraps the config's "
		"secrets\n"
		"  -u, --unlink-kek         delete the KEK file right after reading it (needs "
		"--kek)\n"
		"      --device-symlink <PATH>\n"
		"                           once the device is up, make PATH a symlink to\n"
		"                           /dev/ublkbN (folders are created, anything at PATH\n"
		"                           replaced); removed again at exit\n"
		"  -h, --help               print this help\n"
		"  -V, --version            print the version\n"
		"\n"
		"Needs the ublk driver (modprobe ublk_drv; CONFIG_BLK_DEV_UBLK) and access to\n"
		"/dev/ublk-control (root). queue_size is at most 4096 and seg_size_max a\n"
		"multiple of the page size; num_queues is capped by the kernel at the number\n"
		"of CPUs. Logging goes to stderr; set UBIBLK_LOG=error|warn|info|debug.\n"
		"Details: docs/ublk.md.\n"
		"\n"
		"Example:\n"
		"  ublk-backend -f disk.yaml --device-symlink /dev/disk/ubiblk/vm1\n"
		"  mkfs.ext4 /dev/disk/ubiblk/vm1\n",
		usage_line);
}

static const struct tool_cli cli = {
    .name = "ublk-backend",
    .usage_line = usage_line,
    .print_help = print_help,
};

static int usage_error(const char *why)
{
	return tool_usage_error(&cli, why);
}

/* Returns -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, struct cli_args *args)
{
	static const struct option options[] = {
	    {"config", required_argument, NULL, 'f'},
	    {"kek", required_argument, NULL, 'k'},
	    {"unlink-kek", no_argument, NULL, 'u'},
	    {"device-symlink", required_argument, NULL, OPT_DEVICE_SYMLINK},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	int opt, status;
	while ((opt = getopt_long(argc, argv, "f:k:uhV", options, NULL)) != -1) {
		switch (opt) {
		case OPT_DEVICE_SYMLINK:
			if (!optarg[0])
				return usage_error("--device-symlink needs a path");
			args->device_symlink = optarg;
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

struct ublk_daemon {
	const struct cli_args *args;
	struct ublk_options opts;
	struct ublk_control *control;
};

static int prepare_ublk(const struct device_config *cfg, void *ctx)
{
	struct ublk_daemon *d = ctx;
	d->opts = (struct ublk_options){
	    .num_queues = cfg->num_queues,
	    .queue_depth = cfg->queue_size,
	    .max_io_buf_bytes = cfg->seg_size_max,
	    .device_symlink = d->args->device_symlink,
	};
	struct error err = {0};
	if (ublk_check_options(&d->opts, &err) < 0 || ublk_control_open(&d->control, &err) < 0) {
		log_error("%s", err.text);
		return -1;
	}
	return 0;
}

static void ublk_ready(void *arg, const char *block_path)
{
	(void)arg;
	char serving[64];
	snprintf(serving, sizeof(serving), "serving %s", block_path);
	service_status_ready(serving);
}

static int serve_ublk(const struct device_config *cfg, struct backend_env *env, void *ctx)
{
	(void)cfg;
	struct ublk_daemon *d = ctx;
	d->opts.trackers = env->trackers;
	d->opts.ready = ublk_ready;
	struct error err = {0};
	int rc = ublk_serve(d->control, &d->opts, env->frontend, &err);
	if (rc < 0 && err.text[0])
		log_error("%s", err.text);
	return rc;
}

static void finish_ublk(void *ctx)
{
	struct ublk_daemon *d = ctx;
	ublk_control_close(d->control);
	d->control = NULL;
}

int main(int argc, char **argv)
{
	log_init();
	struct cli_args args = {0};
	int status = parse_args(argc, argv, &args);
	if (status >= 0)
		return status;
	static const struct daemon_frontend ublk = {
	    .name = "ublk",
	    .request_stop = ublk_request_stop,
	    .prepare = prepare_ublk,
	    .serve = serve_ublk,
	    .finish = finish_ublk,
	};
	struct ublk_daemon daemon = {.args = &args};
	return daemon_run(&ublk, &args.common, &daemon);
}
