/* remote-stripe-shell: looks at a stripe server by hand. It connects as a
 * backend would (same address rules, same TLS-PSK), keeps the server's
 * stripe headers, and runs the commands of remote_shell.c: with line
 * editing, a "> " prompt and in-memory history (libedit) on a terminal, or
 * one command per line without a prompt when stdin is a pipe or a file, so
 * it can be scripted. See docs/remote.md. */
#include <errno.h>
#include <getopt.h>
#include <histedit.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "config/config.h"
#include "remote/remote.h"
#include "remote_shell.h"

#define EXIT_USAGE	  2
#define OPT_SERVER_CONFIG 256

#define USAGE                                                                                      \
	"Usage: remote-stripe-shell --server-config <YAML> [-k|--kek <KEK>] [-u|--unlink-kek]\n"

static void print_help(FILE *out)
{
	fprintf(out, USAGE
		"\n"
		"Connects to a remote-stripe-server, reads its stripe headers and runs\n"
		"commands on them (type 'help' in the shell for the list).\n"
		"\n"
		"Options:\n"
		"      --server-config <YAML>  the server's address and optional TLS-PSK, in the\n"
		"                              listen-config format (address, psk_identity,\n"
		"                              psk_secret); see docs/remote.md\n"
		"  -k, --kek <PATH>            key-encryption-key file unwrapping psk_secret\n"
		"  -u, --unlink-kek            delete the KEK file once read (nothing without -k)\n"
		"  -h, --help                  print this help\n"
		"  -V, --version               print the version\n"
		"\n"
		"On a terminal: line editing, history, prompt \"> \"; Ctrl-C abandons the line,\n"
		"Ctrl-D leaves. Otherwise commands are read one per line from stdin, no prompt.\n"
		"Start-up errors are logged and exit with status 1.\n");
}

static int usage_error(const char *why)
{
	if (why)
		fprintf(stderr, "remote-stripe-shell: %s\n", why);
	fputs(USAGE "Try 'remote-stripe-shell --help' for more information.\n", stderr);
	return EXIT_USAGE;
}

/* The connection behind fetch_stripe. One that broke (I/O error, timeout,
 * a reply of the wrong size) is closed and dialled again by the next fetch,
 * so one bad reply never misaligns the ones after it. */
struct connection {
	struct remote_address address;
	struct remote_tls *tls;
	struct remote_client *client;
	uint32_t shift;
};

static int redial(struct connection *conn, struct error *err)
{
	struct remote_client *client;
	int ret = remote_client_connect(&conn->address, conn->tls, NULL, &client, err);
	if (ret < 0)
		return ret;
	if (remote_client_metadata(client)->shift != conn->shift) {
		remote_client_close(client);
		return error_set(err, -EPROTO,
				 "the server's stripe size changed; restart the shell");
	}
	conn->client = client;
	return 0;
}

static int fetch(void *ctx, uint64_t index, uint8_t *buf, struct error *err)
{
	struct connection *conn = ctx;
	if (!conn->client) {
		int ret = redial(conn, err);
		if (ret < 0)
			return ret;
	}
	uint8_t status = REMOTE_STATUS_OK;
	int ret = remote_client_read_stripe(conn->client, index, buf, &status, err);
	if (ret == 0)
		return 0;
	if (remote_client_broken(conn->client) || status == REMOTE_STATUS_OK) {
		remote_client_close(conn->client);
		conn->client = NULL;
		error_default(err, ret);
		return ret;
	}
	switch (status) {
	case REMOTE_STATUS_INVALID_STRIPE:
		return error_set(err, ret, "Invalid parameter error: Invalid stripe index: %llu",
				 (unsigned long long)index);
	case REMOTE_STATUS_NO_DATA:
	case REMOTE_STATUS_NOT_FETCHED:
		return error_set(err, ret, "Stripe %llu is unavailable", (unsigned long long)index);
	default:
		return error_set(err, ret, "Remote server returned error status: %u", status);
	}
}

/* ---- where lines come from ---- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static const char *prompt(EditLine *el)
{
	(void)el;
	return "> ";
}

/* stdin is a pipe or a file: one command per line, no prompt, no history. */
static void run_script(struct remote_shell *sh)
{
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, stdin) >= 0) {
		bool go_on = remote_shell_line(sh, line, stdout);
		fflush(stdout);
		if (!go_on)
			break;
	}
	free(line);
}

/* stdin is a terminal: libedit with emacs keys and in-memory history.
 * SIGINT (installed without SA_RESTART) interrupts the read: the line is
 * abandoned with "^C" and a fresh prompt, as in most shells. */
static int run_terminal(struct remote_shell *sh)
{
	HistEvent ev;
	History *hist = history_init();
	EditLine *el = el_init("remote-stripe-shell", stdin, stdout, stderr);
	if (!hist || !el) {
		if (el)
			el_end(el);
		if (hist)
			history_end(hist);
		log_error("cannot start the line editor");
		return -1;
	}
	history(hist, &ev, H_SETSIZE, 1000);
	el_set(el, EL_PROMPT, prompt);
	el_set(el, EL_EDITOR, "emacs");
	el_set(el, EL_HIST, history, hist);
	el_set(el, EL_SIGNAL, 1);
	struct sigaction sa = {.sa_handler = on_sigint};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);

	for (;;) {
		int count = 0;
		interrupted = 0;
		const char *got = el_gets(el, &count);
		if (!got) {
			if (count < 0 && (interrupted || errno == EINTR)) {
				fputs("^C\n", stdout);
				fflush(stdout);
				continue;
			}
			fputc('\n', stdout); /* end of input: leave the terminal on a new line */
			break;
		}
		char *line = strdup(got);
		if (!line)
			break;
		char *start = line;
		while (*start == ' ' || *start == '\t')
			start++;
		size_t len = strlen(start);
		while (len && strchr(" \t\r\n", start[len - 1]))
			start[--len] = '\0';
		if (len && history(hist, &ev, H_ENTER, start) < 0)
			fprintf(stderr, "Failed to store command in history: %s\n",
				ev.str ? ev.str : "unknown error");
		bool go_on = remote_shell_line(sh, start, stdout);
		free(line);
		fflush(stdout);
		if (!go_on)
			break;
	}
	el_end(el);
	history_end(hist);
	return 0;
}

/* ---- start-up ---- */

static int load_config(const char *path, const char *kek_path, bool unlink_kek,
		       struct remote_source_config *cfg, struct error *err)
{
	struct kek kek;
	int ret = kek_load_for_tool(kek_path, unlink_kek, &kek, err);
	if (ret < 0)
		return ret;
	ret = remote_config_load(path, &kek, cfg, err);
	kek_free(&kek);
	return ret;
}

static int connect_server(const struct remote_source_config *cfg, struct connection *conn,
			  struct error *err)
{
	int ret = remote_address_parse(cfg->address, &conn->address, err);
	if (ret < 0)
		return ret;
	if (cfg->psk_identity) {
		ret = remote_tls_new(REMOTE_TLS_CLIENT, cfg->psk_identity, cfg->psk_secret.data,
				     cfg->psk_secret.len, &conn->tls, err);
		if (ret < 0)
			return ret;
	}
	ret = remote_client_connect(&conn->address, conn->tls, NULL, &conn->client, err);
	if (ret < 0)
		return ret;
	conn->shift = remote_client_metadata(conn->client)->shift;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"server-config", required_argument, NULL, OPT_SERVER_CONFIG},
	    {"kek", required_argument, NULL, 'k'},
	    {"unlink-kek", no_argument, NULL, 'u'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	const char *config_path = NULL, *kek_path = NULL;
	bool unlink_kek = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "k:uhV", options, NULL)) != -1) {
		switch (opt) {
		case OPT_SERVER_CONFIG:
			config_path = optarg;
			break;
		case 'k':
			kek_path = optarg;
			break;
		case 'u':
			unlink_kek = true; /* without --kek: nothing to delete */
			break;
		case 'h':
			print_help(stdout);
			return 0;
		case 'V':
			printf("remote-stripe-shell %s\n", UBIBLK_VERSION);
			return 0;
		default:
			return usage_error(NULL);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument");
	if (!config_path)
		return usage_error("the option --server-config <YAML> is required");

	log_init();
	forbid_core_dumps();
	struct error err = {0};
	struct remote_source_config cfg = {0};
	struct connection conn = {0};
	int status = 1;
	int ret = load_config(config_path, kek_path, unlink_kek, &cfg, &err);
	if (ret == 0)
		ret = connect_server(&cfg, &conn, &err);
	if (ret < 0) {
		error_default(&err, ret);
		log_error("%s", err.text);
		goto out;
	}
	const struct remote_metadata *md = remote_client_metadata(conn.client);
	/* The shell keeps its own copy: the client may be re-dialled. */
	uint64_t count = md->header_count;
	uint8_t *headers = malloc(count ? count : 1);
	if (!headers) {
		log_error("out of memory for %llu stripe headers", (unsigned long long)count);
		goto out;
	}
	memcpy(headers, md->headers, count);
	struct remote_shell sh;
	remote_shell_init(&sh, headers, count, (uint64_t)SECTOR_SIZE << conn.shift, fetch, &conn);
	if (isatty(STDIN_FILENO)) {
		status = run_terminal(&sh) < 0 ? 1 : 0;
	} else {
		run_script(&sh);
		status = 0;
	}
	remote_shell_free(&sh);
	free(headers);
out:
	remote_client_close(conn.client);
	remote_tls_free(conn.tls);
	remote_config_free(&cfg);
	return status;
}
