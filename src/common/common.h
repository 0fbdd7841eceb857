/* Base utilities shared by every layer: logging, aligned buffers, checked
 * arithmetic. Nothing here knows about disks, guests or configs. */
#ifndef UBIBLK_COMMON_H
#define UBIBLK_COMMON_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define SECTOR_SIZE	 512u
#define SECTOR_SHIFT	 9u
#define BUFFER_ALIGNMENT 4096u

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- logging ----
 * One line per message on stderr: "[LEVEL] message". The level comes from the
 * UBIBLK_LOG environment variable (error, warn, info, debug); default is info
 * so operators see what the daemons are doing. Secrets never go to a log. */
enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_init(void);
bool log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_enabled(LOG_DEBUG))                                                        \
			log_msg(LOG_DEBUG, __VA_ARGS__);                                           \
	} while (0)

/* ---- errors ----
 * The one error convention of the project. A function that can fail returns
 * 0 or a negative errno. When a person may need to know why, it also takes
 * `struct error *err` as its last parameter (NULL allowed: the caller does not
 * care) and fills it with one line that names what failed and why, without a
 * trailing period or newline. error_set() and error_prefix() keep it one line:
 * a control character in what they quote (a config value, a key from a file)
 * becomes '?'. Callers add context with error_prefix() on the
 * way up; the caller that can show it to a person (a tool's main, a daemon's
 * start-up, an RPC reply) prints err->text once. Nothing logs and returns the
 * same failure: one or the other. */
#define ERROR_TEXT_MAX 512

struct error {
	char text[ERROR_TEXT_MAX];
};

/* Formats the message into err (truncating; NULL err is fine) and returns
 * `code`, so a failure reads `return error_set(err, -EINVAL, "...", ...)`. */
int error_set(struct error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Replaces the text with "<prefix><text>": context from the caller. A cut
 * keeps the start of the line, which names the thing. Call error_default()
 * first where the callee may have left the text empty. */
void error_prefix(struct error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* After a failure that may not have explained itself (an allocation's
 * -ENOMEM): an empty text becomes strerror(-code). Nothing when code is 0. */
void error_default(struct error *err, int code);
void error_clear(struct error *err);

/* ---- buffers ----
 * Zero-filled memory aligned to `alignment` (a power of two); NULL on failure.
 * Free with buffer_free(). */
void *buffer_alloc(size_t alignment, size_t size);
void buffer_free(void *buf);
/* Overwrite memory that held a secret so the compiler cannot elide it. */
void secret_wipe(void *buf, size_t len);
/* Wipe and free() a NUL-terminated string that held a secret; NULL is fine. */
void secret_string_free(char *s);
/* Zero-filled, page-aligned memory for key schedules: locked in RAM where
 * the memory lock limit allows (so it is never swapped out) and left out of
 * core dumps. NULL on failure. Free with secret_free(), which wipes it. */
void *secret_alloc(size_t size);
void secret_free(void *buf, size_t size);

/* ---- waiting ---- */

#define EVENTFDS_WAIT_MAX 8
/* Sleeps until one of the eventfds (negative entries are skipped, at most
 * EVENTFDS_WAIT_MAX used) is readable or timeout_ms passes (-1: no limit),
 * then resets the readable ones. Returns poll()'s count, 0 on timeout or a
 * signal, or -errno; a failed reset is logged with `who`. */
int eventfds_wait(const int *fds, size_t count, int timeout_ms, const char *who);

/* ---- checked arithmetic ---- */
static inline bool u64_add_overflows(uint64_t a, uint64_t b, uint64_t *sum)
{
	return __builtin_add_overflow(a, b, sum);
}

static inline bool is_power_of_two(uint64_t v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

/* ---- duration histograms ----
 * The latency histograms of the metrics (docs/metrics.md) share one bucket
 * layout: bucket k holds durations in (8 us << (k-1), 8 us << k], bucket 0
 * everything up to 8 us; a histogram with n finite buckets keeps one more
 * for what is longer. Powers of two keep the index a division by a
 * constant and a bit scan, cheap enough for every completion. */
#define DURATION_BUCKET_BASE_NS 8000u

static inline unsigned duration_bucket(uint64_t ns, unsigned finite_buckets)
{
	if (ns <= DURATION_BUCKET_BASE_NS)
		return 0;
	uint64_t q = (ns - 1) / DURATION_BUCKET_BASE_NS; /* >= 1 */
	unsigned k = 64u - (unsigned)__builtin_clzll(q);
	return k < finite_buckets ? k : finite_buckets;
}

/* Key material must never end up in a core file: every tool that may hold
 * keys calls this first (PR_SET_DUMPABLE 0, RLIMIT_CORE 0; failures are
 * warned, not fatal). */
void forbid_core_dumps(void);

/* ---- descriptors ----
 * Sets O_NONBLOCK on fd, keeping its other status flags. Returns 0 or a
 * negative errno (-EBADF for a closed fd). */
int fd_set_nonblocking(int fd);

/* ---- threads ----
 * The one way to start a thread: every signal is blocked in the new thread
 * (set before it runs, so no signal can land in it in between), so SIGINT,
 * SIGTERM and friends always reach the main thread, which owns shutdown.
 * Except the faults (SIGBUS, SIGSEGV, SIGFPE, SIGILL): a blocked fault
 * still kills the process, only without its handler.
 * `name` (at most 15 characters, shown by ps/top) may be NULL. Returns 0 or
 * a negative errno. */
int thread_start(pthread_t *thread, const char *name, void *(*main)(void *), void *arg);

/* ---- Unix-socket listeners ----
 * The one way to listen on a Unix socket path (vhost-user, RPC). Opens a
 * listening, non-blocking, close-on-exec stream socket at `path` whose file
 * has `mode`. Only a stale socket at the path is replaced: a socket some
 * server still accepts on, a directory or any other file is refused with a
 * message, so a typo in a config can never delete a disk image. The path
 * appears only once the socket listens, so a client that sees the file can
 * connect. `what` names the socket in messages ("failed to bind <what>
 * <path>: ..."). Returns 0 or a negative errno. */
struct unix_listener {
	int fd;
	dev_t dev; /* the socket file bound, so close removes only it */
	ino_t ino;
};

int unix_listener_open(const char *path, mode_t mode, const char *what, struct unix_listener *out,
		       struct error *err);
/* Closes the socket and removes its file if the path still names the
 * socket this listener created (not one a newer process put there). */
void unix_listener_close(struct unix_listener *l, const char *path);

/* ---- literal socket addresses ----
 * Parses "IPv4:port" (e.g. "192.0.2.10:4555") or "[IPv6]:port" (e.g.
 * "[::1]:9101") into a TCP socket address. Only numeric addresses: no name
 * resolution, so a config never waits on DNS and a check on the address
 * (the metrics endpoint's loopback rule) holds for the address used.
 * `text` must not be NULL. The port is 1..65535, or 0..65535 when
 * `port_zero_ok` (a listener where 0 asks the kernel for any free port).
 * Returns 0 with *addr (zero-filled, then family, port, address) and
 * *addrlen set, or -EINVAL with neither touched and *why (unless why is
 * NULL) pointing at a static, lower-case reason to print after the
 * caller's own prefix ("<what> <text>: <reason>"). Refused: no ':' before
 * a port ("expected IPv4:port or [IPv6]:port"), a '[' without "]:"
 * ("expected [IPv6]:port"), a port that is empty, not all digits (a sign,
 * a space), too big or 0 when not allowed, a host that is not a literal
 * address of its form (host names, "localhost" included; an empty or
 * overlong host; dotted quads with parts missing) and an IPv6 address
 * without brackets. No length limit on `text` beyond that: a caller that
 * keeps a copy checks its own. Thread-safe: no state. */
int socket_address_parse(const char *text, bool port_zero_ok, struct sockaddr_storage *addr,
			 socklen_t *addrlen, const char **why);

/* ---- service manager notification ----
 * systemd's notify protocol (sd_notify(3)) without libsystemd: `text`, one or
 * more "KEY=value" lines ("READY=1", "STATUS=...", "STOPPING=1"), goes in one
 * datagram to the AF_UNIX socket $NOTIFY_SOCKET names: a path, or "@name" in
 * the abstract namespace. Without NOTIFY_SOCKET (or with it empty) nothing
 * is sent: running without a service manager is normal. Returns 1 when sent,
 * 0 when there is no socket, or a negative errno; the first failure of the
 * process is logged at debug level and later ones not at all, and no
 * failure should stop a caller (the disk matters more than the manager).
 * From any thread; not async-signal-safe (getenv, logging). */
int service_notify(const char *text);
/* Whether NOTIFY_SOCKET is set (and not empty). */
bool service_notify_enabled(void);
/* NOTIFY_SOCKET's value as a socket address: 0, -EINVAL ("@" alone or too
 * long), -ENAMETOOLONG (a path that does not fit) or -EAFNOSUPPORT (not an
 * absolute path nor "@name", e.g. "vsock:..."). */
struct sockaddr_un;
int service_notify_address(const char *value, struct sockaddr_un *addr, socklen_t *len);

/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);

#endif
