/* vhost-backend: serves a disk file to a VMM (QEMU, cloud-hypervisor) as a
 * vhost-user-blk device. Start-up order: arguments, KEK, config, then the
 * device and the socket, so --unlink-kek has removed the KEK before a config
 * error can stop start-up, and nothing is created before the config is
 * known to be good. SIGINT/SIGTERM finish in-flight requests, remove the
 * socket and exit 0. */
#include <getopt.h>
#include <stdio.h>

#include "backend/backend.h"
#include "bdev/bdev.h"
#include "common/common.h"
#include "common_args.h"
#include "daemon.h"
#include "service_status.h"
#include "config/config.h"
#include "vhost/vhost.h"

struct cli_args {
	struct common_args common;
};

static void print_help(FILE *out)
{
	fprintf(out,
		"Usage: vhost-backend -f <CONFIG> [-k <KEK> [-u]]\n"
		"\n"
		"Serves the disk file named in CONFIG to one VMM at a time (QEMU,\n"
		"cloud-hypervisor) as a vhost-user-blk device over the Unix socket named by\n"
		"the config's `socket` field. After the VMM disconnects it listens again.\n"
		"SIGINT or SIGTERM finish in-flight requests, remove the socket and exit 0.\n"
		"\n"
		"Options:\n"
		"  -f, --config <PATH>  device config (YAML, required); see docs/config.md\n"
		"  -k, --kek <PATH>     key-encryption-key file that unwraps the config's secrets\n"
		"  -u, --unlink-kek     delete the KEK file right after reading it (needs --kek)\n"
		"  -h, --help           print this help\n"
		"  -V, --version        print the version\n"
		"\n"
		"Logging goes to stderr; set UBIBLK_LOG=error|warn|info|debug (default info).\n"
		"Protocol details: docs/vhost-user.md.\n"
		"\n"
		"Example config (disk.yaml):\n"
		"  path: /var/lib/vm/disk.raw\n"
		"  socket: /run/vm/vhost.sock\n"
		"  num_queues: 4\n"
		"  queue_size: 256\n"
		"\n"
		"  vhost-backend -f disk.yaml\n"
		"  qemu-system-x86_64 ... -chardev socket,id=c0,path=/run/vm/vhost.sock \\\n"
		"      -device vhost-user-blk-pci,chardev=c0,num-queues=4\n");
}

static const struct tool_cli cli = {
    .name = "vhost-backend",
    .usage_line = "Usage: vhost-backend -f <CONFIG> [-k <KEK> [-u]]\n",
    .print_help = print_help,
};

/* Returns -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, struct cli_args *args)
{
	static const struct option options[] = {
	    {"config", required_argument, NULL, 'f'}, {"kek", required_argument, NULL, 'k'},
	    {"unlink-kek", no_argument, NULL, 'u'},   {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "f:k:uhV", options, NULL)) != -1) {
		int status = common_args_option(&cli, &args->common, opt, optarg);
		if (status >= 0)
			return status;
	}
	return common_args_finish(&cli, &args->common, argc, optind);
}

/* Checks of the config that only this front end needs. */
static int check_vhost_config(const struct device_config *cfg, void *ctx)
{
	(void)ctx;
	if (!cfg->socket) {
		log_error("socket must be specified for the vhost backend");
		return -1;
	}
	if (cfg->cpus && cfg->cpus_len != cfg->num_queues) {
		log_error("cpus length must equal num_queues");
		return -1;
	}
	return 0;
}

/* The socket accepts front ends (and the RPC socket, when configured, was
 * started before it). */
static void vhost_ready(void *arg)
{
	char serving[300];
	snprintf(serving, sizeof(serving), "serving %s", (const char *)arg);
	service_status_ready(serving);
}

static int serve_vhost(const struct device_config *cfg, struct backend_env *env, void *ctx)
{
	(void)ctx;
	struct vhost_blk_options opts = {
	    .socket_path = cfg->socket,
	    .num_queues = cfg->num_queues,
	    .queue_size = cfg->queue_size,
	    .seg_size_max = cfg->seg_size_max,
	    .seg_count_max = cfg->seg_count_max,
	    .poll_queue_timeout_us = cfg->poll_queue_timeout_us,
	    .write_through = cfg->write_through,
	    .cpus = cfg->cpus,
	    .trackers = env->trackers,
	    .ready = vhost_ready,
	    .ready_arg = cfg->socket,
	};
	snprintf(opts.device_id, sizeof(opts.device_id), "%s", cfg->device_id);
	return vhost_blk_serve(&opts, env->frontend);
}

int main(int argc, char **argv)
{
	log_init();
	struct cli_args args = {0};
	int status = parse_args(argc, argv, &args);
	if (status >= 0)
		return status;
	static const struct daemon_frontend vhost = {
	    .name = "vhost-user-blk",
	    .request_stop = vhost_blk_request_stop,
	    .prepare = check_vhost_config,
	    .serve = serve_vhost,
	};
	return daemon_run(&vhost, &args.common, NULL);
}
