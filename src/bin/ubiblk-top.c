/* ubiblk-top: a live view of one or more ubiblk disks through their RPC
 * sockets (docs/top.md): per-disk and per-queue IOPS, throughput, in-flight
 * requests, latency percentiles and hydration progress, refreshed every
 * interval on a plain ANSI terminal, or printed once (--once, --json). */
#include "common/common.h"
#include "common_args.h"
#include "top_render.h"
#include "top_sample.h"
#include "top_view.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* Each RPC call gives up after this long, so a hung backend costs the view
 * at most a few of these per refresh. */
#define RPC_TIMEOUT_MS	     1000u
#define MAX_INTERVAL_SECONDS 3600.0

static const char usage_line[] = "Usage: ubiblk-top [OPTIONS] [NAME=]SOCKET...\n";

static void print_help(FILE *out)
{
	fprintf(out,
		"%s"
		"\n"
		"Shows ubiblk disks live through their RPC sockets (rpc_socket_path in the\n"
		"device config): per disk and per queue the read and write IOPS and MB/s,\n"
		"requests in flight, latency p50/p99, and the lazy-fetch (hydration) progress\n"
		"with the fetch rate and an estimate of the time left. Each SOCKET is one\n"
		"disk, shown by its path or as NAME. A disk that cannot be reached is shown\n"
		"as unreachable and tried again at every refresh.\n"
		"\n"
		"Options:\n"
		"      --interval SECONDS  time between refreshes (default 1)\n"
		"      --once              take two samples one interval apart, print the\n"
		"                          view once and exit (1 if a disk was unreachable)\n"
		"      --json              with --once: print one JSON document instead\n"
		"                          (schema in docs/top.md)\n"
		"  -h, --help              this help\n"
		"  -V, --version           the version\n"
		"\n"
		"Keys: q quits (so does Ctrl-C).\n"
		"\n"
		"Exit status: 0 after q or Ctrl-C, or --once with every disk read; 1 --once\n"
		"with a disk unreachable, or output not written; 2 a bad command line;\n"
		"128+N after signal N (SIGTERM, SIGHUP).\n"
		"\n"
		"Examples:\n"
		"  ubiblk-top /run/ubiblk/vm1.rpc vm2=/run/ubiblk/vm2.rpc\n"
		"  ubiblk-top --once --json --interval 5 /run/ubiblk/vm1.rpc\n",
		usage_line);
}

static const struct tool_cli cli = {
    .name = "ubiblk-top", .usage_line = usage_line, .print_help = print_help};

struct disk {
	const char *name;
	const char *path;
	enum top_protocol protocol;
	bool reachable;
	char error[ERROR_TEXT_MAX];
	bool have_older, have_newer, have_view;
	struct top_sample older, newer;
	struct top_view view;
};

struct options {
	double interval;
	bool once;
	bool json;
};

enum { OPT_INTERVAL = 256, OPT_ONCE, OPT_JSON };

static const struct option long_options[] = {
    {"interval", required_argument, NULL, OPT_INTERVAL},
    {"once", no_argument, NULL, OPT_ONCE},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, struct options *o)
{
	*o = (struct options){.interval = 1.0};
	int opt;
	while ((opt = getopt_long(argc, argv, "hV", long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_INTERVAL: {
			char *end;
			errno = 0;
			o->interval = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(o->interval >= 0.01) ||
			    o->interval > MAX_INTERVAL_SECONDS)
				return tool_usage_error(
				    &cli, "--interval: expected seconds from 0.01 to 3600");
			break;
		}
		case OPT_ONCE:
			o->once = true;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case 'h':
			print_help(stdout);
			return 0;
		case 'V':
			tool_print_version(cli.name);
			return 0;
		default:
			return tool_usage_error(&cli, NULL);
		}
	}
	if (o->json && !o->once)
		return tool_usage_error(&cli, "--json needs --once");
	if (optind >= argc)
		return tool_usage_error(&cli, "no RPC socket given");
	return -1;
}

/* NAME=PATH when the part before the first '=' is a name (no '/'), else a
 * path that happens to hold '='. */
static void name_disk(struct disk *d, char *arg)
{
	char *eq = strchr(arg, '=');
	d->name = d->path = arg;
	if (eq && eq != arg && eq[1] && !memchr(arg, '/', (size_t)(eq - arg))) {
		*eq = '\0';
		d->path = eq + 1;
	}
}

static void forget_samples(struct disk *d)
{
	top_sample_free(&d->older);
	top_sample_free(&d->newer);
	top_view_free(&d->view);
	d->have_older = d->have_newer = d->have_view = false;
}

/* One reading; the view is recomputed from the last two. */
static void sample_disk(struct disk *d)
{
	struct top_sample s;
	struct error err = {0};
	if (top_sample_take(d->path, &d->protocol, RPC_TIMEOUT_MS, &s, &err) < 0) {
		top_sample_free(&s);
		forget_samples(d);
		d->reachable = false;
		snprintf(d->error, sizeof(d->error), "%s", err.text);
		/* A backend that comes back may be another version. */
		d->protocol = TOP_PROTOCOL_UNKNOWN;
		return;
	}
	d->reachable = true;
	top_sample_free(&d->older);
	d->older = d->newer;
	d->have_older = d->have_newer;
	d->newer = s;
	d->have_newer = true;
	top_view_free(&d->view);
	d->have_view = d->have_older && top_view_compute(&d->older, &d->newer, &d->view) == 0;
}

/* What the outputs show of the disks, malloc'd; NULL when out of memory. */
static struct top_disk_state *disk_states(const struct disk *disks, size_t n)
{
	struct top_disk_state *out = calloc(n, sizeof(*out));
	for (size_t i = 0; out && i < n; i++)
		out[i] = (struct top_disk_state){
		    .name = disks[i].name,
		    .path = disks[i].path,
		    .reachable = disks[i].reachable,
		    .error = disks[i].error,
		    .from_metrics = disks[i].protocol == TOP_PROTOCOL_METRICS,
		    .view = disks[i].have_view ? &disks[i].view : NULL,
		};
	return out;
}

static void sleep_seconds(double seconds)
{
	struct timespec ts = {.tv_sec = (time_t)seconds,
			      .tv_nsec = (long)((seconds - floor(seconds)) * 1e9)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int run_once(struct disk *disks, size_t n, const struct options *o)
{
	for (size_t i = 0; i < n; i++)
		sample_disk(&disks[i]);
	sleep_seconds(o->interval);
	for (size_t i = 0; i < n; i++)
		if (disks[i].reachable)
			sample_disk(&disks[i]);
	struct top_disk_state *states = disk_states(disks, n);
	if (!states)
		return 1;
	bool all = true;
	for (size_t i = 0; i < n; i++)
		all = all && states[i].reachable && states[i].view;
	if (o->json) {
		if (top_render_json(stdout, states, n, o->interval) < 0)
			all = false;
	} else {
		top_render_text(stdout, states, n, o->interval, "");
	}
	free(states);
	return fflush(stdout) == 0 && all ? 0 : 1;
}

/* The interactive view: the terminal as it was, and the signals seen. */
static volatile sig_atomic_t quit_signal, resized;
static struct termios saved_termios;
static bool termios_changed;

static void on_quit(int sig)
{
	quit_signal = sig;
}

static void on_winch(int sig)
{
	(void)sig;
	resized = 1;
}

static void write_all(const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDOUT_FILENO, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

static void write_text(const char *s)
{
	write_all(s, strlen(s));
}

/* Alternate screen, cursor hidden, keys read one by one without echo. */
static void terminal_enter(void)
{
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_termios) == 0) {
		struct termios raw = saved_termios;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 1;
		raw.c_cc[VTIME] = 0;
		termios_changed = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
	}
	write_text("\033[?1049h\033[?25l\033[H\033[2J");
}

static void terminal_leave(void)
{
	write_text("\033[?25h\033[?1049l");
	if (termios_changed)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
	termios_changed = false;
}

static void terminal_size(unsigned *rows, unsigned *cols)
{
	struct winsize ws;
	*rows = 24;
	*cols = 80;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	}
}

/* The screen from the top, each line cut to the width, no more lines than
 * rows (and no newline after the last, so the screen never scrolls). */
static void draw(const struct disk *disks, size_t n, const struct options *o)
{
	struct top_disk_state *states = disk_states(disks, n);
	if (!states)
		return;
	char header[32] = "q: quit";
	time_t now = time(NULL);
	struct tm tm;
	if (localtime_r(&now, &tm))
		strftime(header, sizeof(header), "q: quit  %H:%M:%S", &tm);
	char *text = NULL;
	size_t size = 0;
	FILE *mem = open_memstream(&text, &size);
	if (!mem) {
		free(states);
		return;
	}
	top_render_text(mem, states, n, o->interval, header);
	free(states);
	if (fclose(mem) != 0) {
		free(text);
		return;
	}
	unsigned rows, cols;
	terminal_size(&rows, &cols);
	char *screen = malloc(size + (size_t)rows * 8 + 16);
	if (!screen) {
		free(text);
		return;
	}
	size_t len = 0;
	len += (size_t)sprintf(screen, "\033[H");
	const char *line = text;
	for (unsigned row = 0; row < rows && *line; row++) {
		const char *nl = strchr(line, '\n');
		size_t line_len = nl ? (size_t)(nl - line) : strlen(line);
		size_t shown = line_len < cols ? line_len : cols;
		if (row > 0)
			screen[len++] = '\n';
		memcpy(screen + len, line, shown);
		len += shown;
		len += (size_t)sprintf(screen + len, "\033[K");
		line = nl ? nl + 1 : line + line_len;
	}
	len += (size_t)sprintf(screen + len, "\033[J");
	write_all(screen, len);
	free(screen);
	free(text);
}

/* Waits until deadline_ns for keys; false when it is time to quit. Redraws
 * at once on SIGWINCH. Signals are blocked outside ppoll, so none is lost
 * between a check and the wait. */
static bool wait_for_keys(uint64_t deadline_ns, const sigset_t *unblocked, bool *stdin_open,
			  const struct disk *disks, size_t n, const struct options *o)
{
	for (;;) {
		if (quit_signal)
			return false;
		if (resized) {
			resized = 0;
			draw(disks, n, o);
		}
		uint64_t now = now_ns();
		if (now >= deadline_ns)
			return true;
		uint64_t left = deadline_ns - now;
		struct timespec ts = {.tv_sec = (time_t)(left / 1000000000u),
				      .tv_nsec = (long)(left % 1000000000u)};
		struct pollfd p = {.fd = *stdin_open ? STDIN_FILENO : -1, .events = POLLIN};
		int rc = ppoll(&p, 1, &ts, unblocked);
		if (rc <= 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		char keys[64];
		ssize_t got = read(STDIN_FILENO, keys, sizeof(keys));
		if (got <= 0 && !(got < 0 && (errno == EINTR || errno == EAGAIN))) {
			*stdin_open = false; /* no keys to read (stdin closed) */
			continue;
		}
		for (ssize_t i = 0; i < got; i++)
			if (keys[i] == 'q' || keys[i] == 'Q')
				return false;
	}
}

static int run_live(struct disk *disks, size_t n, const struct options *o)
{
	sigset_t blocked, unblocked;
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGTERM);
	sigaddset(&blocked, SIGHUP);
	sigaddset(&blocked, SIGWINCH);
	sigprocmask(SIG_BLOCK, &blocked, &unblocked);
	sigdelset(&unblocked, SIGINT);
	sigdelset(&unblocked, SIGTERM);
	sigdelset(&unblocked, SIGHUP);
	sigdelset(&unblocked, SIGWINCH);
	struct sigaction quit = {.sa_handler = on_quit}, winch = {.sa_handler = on_winch};
	sigaction(SIGINT, &quit, NULL);
	sigaction(SIGTERM, &quit, NULL);
	sigaction(SIGHUP, &quit, NULL);
	sigaction(SIGWINCH, &winch, NULL);
	/* A terminal that went away must not kill the view before it restores
	 * the terminal settings. */
	signal(SIGPIPE, SIG_IGN);

	terminal_enter();
	bool stdin_open = true;
	uint64_t interval_ns = (uint64_t)(o->interval * 1e9);
	uint64_t next = now_ns();
	for (;;) {
		for (size_t i = 0; i < n; i++)
			sample_disk(&disks[i]);
		draw(disks, n, o);
		next += interval_ns;
		if (next < now_ns())
			next = now_ns() + interval_ns; /* sampling took longer: no catching up */
		if (!wait_for_keys(next, &unblocked, &stdin_open, disks, n, o))
			break;
	}
	terminal_leave();
	/* Ctrl-C is a way to quit like q; SIGTERM and SIGHUP come from
	 * elsewhere and say so in the status, as shells report them. */
	return quit_signal == SIGTERM || quit_signal == SIGHUP ? 128 + quit_signal : 0;
}

int main(int argc, char **argv)
{
	struct options o;
	int status = parse_options(argc, argv, &o);
	if (status >= 0)
		return status;
	size_t n = (size_t)(argc - optind);
	struct disk *disks = calloc(n, sizeof(*disks));
	if (!disks) {
		fprintf(stderr, "ubiblk-top: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		name_disk(&disks[i], argv[optind + (int)i]);
	status = o.once ? run_once(disks, n, &o) : run_live(disks, n, &o);
	for (size_t i = 0; i < n; i++)
		forget_samples(&disks[i]);
	free(disks);
	return status;
}
