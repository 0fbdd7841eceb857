/* What vhost-backend and ublk-backend share after their command lines are
 * parsed: process set-up (core dumps off, SIGPIPE ignored, SIGINT/SIGTERM
 * asking the front end to stop), the KEK and the config, the device stack
 * (backend_env: disk, encryption, lazy fetch, fetch worker, trackers, RPC),
 * the service manager's notifications (service_status.h: the front end's
 * serve hook calls service_status_ready once it serves) and the exit status.
 * Only the front end differs. */
#ifndef UBIBLK_BIN_DAEMON_H
#define UBIBLK_BIN_DAEMON_H

#include "backend/backend.h"
#include "common_args.h"
#include "config/config.h"

struct daemon_frontend {
	/* "vhost-user-blk" or "ublk": the "Starting <name> backend" line. */
	const char *name;
	/* Async-signal-safe; called on SIGINT and SIGTERM. */
	void (*request_stop)(void);
	/* Front-end checks and set-up before the device stack is built (so
	 * that a bad value or a missing driver fails before any file is
	 * opened). Returns 0 or -1 after logging why. May be NULL. */
	int (*prepare)(const struct device_config *cfg, void *ctx);
	/* Serves the stack until stopped; 0 for a clean stop, else < 0. */
	int (*serve)(const struct device_config *cfg, struct backend_env *env, void *ctx);
	/* Undoes a successful prepare (also when serve never ran). May be NULL. */
	void (*finish)(void *ctx);
};

/* The daemons' signals: SIGPIPE ignored, SIGINT and SIGTERM call
 * request_stop (async-signal-safe) and service_status_stop_requested.
 * 0 or -errno. */
int daemon_install_signals(void (*request_stop)(void));

/* Runs the daemon; returns the process exit status (0, or 1 on failure). */
int daemon_run(const struct daemon_frontend *fe, const struct common_args *args, void *ctx);

#endif
