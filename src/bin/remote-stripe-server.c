/* remote-stripe-server: serves a device's stripes over TCP, or TLS 1.2 with
 * a pre-shared key, to remote stripe sources (vhost-backend, ublk-backend,
 * init-metadata) and remote-stripe-shell. The device is opened the way the
 * back ends open it (io_engine, O_DIRECT, the crypt layer when the config
 * has encryption_key), so stripes travel as plaintext inside the session.
 * See docs/remote.md. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "backend/backend.h"
#include "common/common.h"
#include "common_args.h"
#include "config/config.h"
#include "daemon.h"
#include "meta/meta.h"
#include "remote/remote.h"
#include "service_status.h"

#define OPT_LISTEN_CONFIG   256
#define OPT_MAX_CONNECTIONS 257
#define OPT_CONNECT_TIMEOUT 258
#define OPT_IO_TIMEOUT	    259
#define OPT_IDLE_TIMEOUT    260

#define DEFAULT_MAX_CONNECTIONS 1024u
#define MAX_CONNECTIONS_LIMIT	65536u
#define TIMEOUT_MS_LIMIT	86400000u /* a day */
/* Descriptors the process needs besides connections: the listener, epoll,
 * the disk and its ring, logs, OpenSSL's random device. */
#define FD_RESERVE 32u
#define META_DEPTH 4u

struct cli_args {
	struct common_args common;
	const char *listen_config;
	uint32_t max_connections;
	struct remote_timeouts timeouts;
};

static void print_help(FILE *out)
{
	fprintf(
	    out,
	    "Usage: remote-stripe-server -f <CONFIG> --listen-config <LISTEN> [-k <KEK> [-u]]\n"
	    "\n"
	    "Serves the stripes of the device described by CONFIG to remote stripe\n"
	    "sources (stripe_source: {source: remote, ...}) and remote-stripe-shell. The\n"
	    "disk is read through the config's encryption_key when it has one, so\n"
	    "stripes are served as plaintext; with psk_identity and psk_secret in the\n"
	    "listen config every connection is TLS 1.2 (PSK-AES256-GCM-SHA384).\n"
	    "With metadata_path the served stripes are those the metadata file marks;\n"
	    "stripes with a source that are not fetched yet are answered NOT_FETCHED.\n"
	    "\n"
	    "Options:\n"
	    "  -f, --config <PATH>          device config (YAML, required)\n"
	    "      --listen-config <PATH>   listen config (YAML, required):\n"
	    "                                 address: \"127.0.0.1:4555\"   (host:port, "
	    "[IPv6]:port)\n"
	    "                                 psk_identity: \"client1\"    (optional, with "
	    "psk_secret)\n"
	    "                                 psk_secret: \"<base64>\"     (KEK-wrapped with "
	    "--kek)\n"
	    "  -k, --kek <PATH>             key-encryption-key file for both configs' secrets\n"
	    "  -u, --unlink-kek             delete the KEK file after reading it (needs --kek)\n"
	    "      --max-connections <N>    connections served at once, 1..%u (default %u);\n"
	    "                               more are accepted and closed at once\n"
	    "      --connect-timeout-ms <MS>  TLS handshake deadline (default %u)\n"
	    "      --io-timeout-ms <MS>     a reply that makes no progress for this long ends\n"
	    "                               its session (default %u)\n"
	    "      --idle-timeout-ms <MS>   a session with no request for this long ends\n"
	    "                               (default %u)\n"
	    "  -h, --help                   print this help\n"
	    "  -V, --version                print the version\n"
	    "\n"
	    "SIGINT or SIGTERM: stop accepting, finish the replies in flight, exit 0.\n"
	    "Errors at start-up are one line on stderr and exit status 1 (2 for\n"
	    "command-line mistakes).\n",
	    MAX_CONNECTIONS_LIMIT, DEFAULT_MAX_CONNECTIONS, REMOTE_CONNECT_TIMEOUT_MS,
	    REMOTE_IO_TIMEOUT_MS, REMOTE_IO_TIMEOUT_MS);
}

static const struct tool_cli cli = {
    .name = "remote-stripe-server",
    .usage_line =
	"Usage: remote-stripe-server -f <CONFIG> --listen-config <LISTEN> [-k <KEK> [-u]]\n",
    .print_help = print_help,
};

static bool parse_u32(const char *text, uint32_t min, uint32_t max, uint32_t *out)
{
	size_t len = strlen(text);
	if (len == 0 || len > 10 || strspn(text, "0123456789") != len)
		return false;
	unsigned long long v = strtoull(text, NULL, 10);
	if (v < min || v > max)
		return false;
	*out = (uint32_t)v;
	return true;
}

static int bad_value(const char *option, const char *value, uint32_t min, uint32_t max)
{
	char why[200];
	snprintf(why, sizeof(why), "invalid value '%s' for %s: expected %u to %u", value, option,
		 min, max);
	return tool_usage_error(&cli, why);
}

/* Returns -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, struct cli_args *a)
{
	static const struct option options[] = {
	    {"config", required_argument, NULL, 'f'},
	    {"listen-config", required_argument, NULL, OPT_LISTEN_CONFIG},
	    {"kek", required_argument, NULL, 'k'},
	    {"unlink-kek", no_argument, NULL, 'u'},
	    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
	    {"connect-timeout-ms", required_argument, NULL, OPT_CONNECT_TIMEOUT},
	    {"io-timeout-ms", required_argument, NULL, OPT_IO_TIMEOUT},
	    {"idle-timeout-ms", required_argument, NULL, OPT_IDLE_TIMEOUT},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	int opt, status;
	while ((opt = getopt_long(argc, argv, "f:k:uhV", options, NULL)) != -1) {
		switch (opt) {
		case OPT_LISTEN_CONFIG:
			a->listen_config = optarg;
			break;
		case OPT_MAX_CONNECTIONS:
			if (!parse_u32(optarg, 1, MAX_CONNECTIONS_LIMIT, &a->max_connections))
				return bad_value("--max-connections", optarg, 1,
						 MAX_CONNECTIONS_LIMIT);
			break;
		case OPT_CONNECT_TIMEOUT:
			if (!parse_u32(optarg, 1, TIMEOUT_MS_LIMIT, &a->timeouts.connect_ms))
				return bad_value("--connect-timeout-ms", optarg, 1,
						 TIMEOUT_MS_LIMIT);
			break;
		case OPT_IO_TIMEOUT:
			if (!parse_u32(optarg, 1, TIMEOUT_MS_LIMIT, &a->timeouts.io_ms))
				return bad_value("--io-timeout-ms", optarg, 1, TIMEOUT_MS_LIMIT);
			break;
		case OPT_IDLE_TIMEOUT:
			if (!parse_u32(optarg, 1, TIMEOUT_MS_LIMIT, &a->timeouts.idle_ms))
				return bad_value("--idle-timeout-ms", optarg, 1, TIMEOUT_MS_LIMIT);
			break;
		default:
			status = common_args_option(&cli, &a->common, opt, optarg);
			if (status >= 0)
				return status;
			break;
		}
	}
	status = common_args_finish(&cli, &a->common, argc, optind);
	if (status >= 0)
		return status;
	if (!a->listen_config)
		return tool_usage_error(&cli, "the option --listen-config <PATH> is required");
	return -1;
}

/* The KEK (unlinked right after reading when asked), then both configs with
 * it; the KEK is not kept. */
static int load_configs(const struct cli_args *a, struct device_config *cfg,
			struct remote_source_config *listen, struct error *err)
{
	struct kek kek;
	device_config_init(cfg);
	int ret = kek_load_for_tool(a->common.kek_path, a->common.unlink_kek, &kek, err);
	if (ret < 0)
		return ret;
	ret = device_config_load(a->common.config_path, &kek, cfg, err);
	if (ret == 0) {
		ret = remote_config_load(a->listen_config, &kek, listen, err);
		if (ret < 0)
			device_config_free(cfg);
	}
	kek_free(&kek);
	return ret;
}

/* Every connection is a descriptor: raise the soft limit as far as the hard
 * one allows and serve no more connections than fit. */
static uint32_t fit_connections(uint32_t wanted)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return wanted;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit raised = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl = raised;
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)wanted + FD_RESERVE)
		return wanted;
	uint32_t fit = rl.rlim_cur > FD_RESERVE + 1 ? (uint32_t)(rl.rlim_cur - FD_RESERVE) : 1;
	log_warn("the descriptor limit (%llu) allows %u connections, not %u: serving at most %u",
		 (unsigned long long)rl.rlim_cur, fit, wanted, fit);
	return fit;
}

/* The headers to serve: from the metadata file when the config names one
 * (read through the disk's keys), else the whole disk. */
static int served_headers(const struct device_config *cfg, uint64_t disk_sectors, uint32_t *shift,
			  uint8_t **headers, uint64_t *count, struct error *err)
{
	if (!cfg->metadata_path)
		return remote_server_headers(NULL, disk_sectors, shift, headers, count, err);
	struct bdev *dev = NULL, *file = NULL;
	int ret = backend_open_stored(cfg, "metadata file", cfg->metadata_path, true, META_DEPTH,
				      &dev, &file, err);
	struct metadata m = {0};
	struct error why = {0};
	if (ret == 0) {
		ret = meta_load(dev, disk_sectors, &m, &why);
		if (ret < 0)
			error_set(err, ret, "metadata file %s: %s%s", cfg->metadata_path, why.text,
				  backend_metadata_hint(cfg, ret));
	}
	if (ret == 0) {
		ret = remote_server_headers(&m, disk_sectors, shift, headers, count, &why);
		if (ret < 0)
			error_set(err, ret, "metadata file %s: %s", cfg->metadata_path, why.text);
	}
	meta_free(&m);
	bdev_close(dev);
	bdev_close(file);
	return ret;
}

static void describe(const struct device_config *cfg, const uint8_t *headers, uint64_t count,
		     uint32_t shift)
{
	uint64_t source = 0, unfetched = 0;
	for (uint64_t i = 0; i < count; i++) {
		if (headers[i] & META_HEADER_HAS_SOURCE) {
			source++;
			if (!(headers[i] & META_HEADER_FETCHED))
				unfetched++;
		}
	}
	log_info("serving %s: %llu stripes of %u bytes%s", cfg->path, (unsigned long long)count,
		 SECTOR_SIZE << shift, cfg->has_encryption_key ? ", decrypted" : "");
	if (unfetched)
		log_warn("%llu of the disk's %llu stripes with a source are not fetched yet: they "
			 "are answered NOT_FETCHED (this server never reads a stripe source)",
			 (unsigned long long)unfetched, (unsigned long long)source);
}

static void server_ready(void *arg, const char *address)
{
	char serving[400];
	snprintf(serving, sizeof(serving), "serving %s on %s", (const char *)arg, address);
	service_status_ready(serving);
}

static int serve(const struct cli_args *a, const struct device_config *cfg,
		 const struct remote_source_config *listen)
{
	struct error err = {0};
	struct remote_tls *tls = NULL;
	if (listen->psk_identity) {
		if (remote_tls_new(REMOTE_TLS_SERVER, listen->psk_identity, listen->psk_secret.data,
				   listen->psk_secret.len, &tls, &err) < 0) {
			log_error("%s", err.text);
			return 1;
		}
	} else {
		log_warn("NO PSK CONFIGURED: serving over plain TCP, without encryption or "
			 "authentication; anyone who can reach %s can read the whole disk. Set "
			 "psk_identity and psk_secret in the listen config.",
			 listen->address);
	}

	struct bdev *disk = NULL, *disk_file = NULL;
	uint8_t *headers = NULL;
	uint64_t count = 0;
	uint32_t shift = 0;
	int status = 1;
	if (backend_open_stored(cfg, "disk", cfg->path, true, cfg->queue_size, &disk, &disk_file,
				&err) < 0 ||
	    served_headers(cfg, bdev_sector_count(disk), &shift, &headers, &count, &err) < 0) {
		log_error("%s", err.text);
		goto out;
	}
	describe(cfg, headers, count, shift);
	struct remote_server_options opts = {
	    .address = listen->address,
	    .tls = tls,
	    .device = disk,
	    .shift = shift,
	    .headers = headers,
	    .header_count = count,
	    .max_connections = fit_connections(a->max_connections),
	    .timeouts = a->timeouts,
	    .ready = server_ready,
	    .ready_arg = cfg->path,
	};
	if (remote_server_run(&opts, &err) < 0) {
		log_error("%s", err.text);
		goto out;
	}
	status = 0;
out:
	free(headers);
	bdev_close(disk);
	bdev_close(disk_file);
	remote_tls_free(tls);
	return status;
}

int main(int argc, char **argv)
{
	log_init();
	struct cli_args a = {
	    .max_connections = DEFAULT_MAX_CONNECTIONS,
	    .timeouts =
		{
		    .connect_ms = REMOTE_CONNECT_TIMEOUT_MS,
		    .io_ms = REMOTE_IO_TIMEOUT_MS,
		    .idle_ms = REMOTE_IO_TIMEOUT_MS,
		},
	};
	int status = parse_args(argc, argv, &a);
	if (status >= 0)
		return status;
	forbid_core_dumps(); /* the configs may hold keys and the PSK */
	if (daemon_install_signals(remote_server_request_stop) < 0) {
		log_error("cannot install signal handlers: %s", strerror(errno));
		return 1;
	}
	struct device_config cfg;
	struct remote_source_config listen = {0};
	struct error err = {0};
	if (load_configs(&a, &cfg, &listen, &err) < 0) {
		log_error("%s", err.text);
		return 1;
	}
	log_info("Starting remote-stripe-server. Process ID: %d", (int)getpid());
	/* No stripes to report: the reporter only sends STOPPING=1 on a stop. */
	service_status_start(NULL, NULL);
	status = serve(&a, &cfg, &listen);
	service_status_end();
	remote_config_free(&listen);
	device_config_free(&cfg);
	return status;
}
