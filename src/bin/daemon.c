#include "daemon.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "service_status.h"

static void (*stop_frontend)(void);

static void on_stop_signal(int sig)
{
	(void)sig;
	service_status_stop_requested(); /* STOPPING=1 while the front end drains */
	if (stop_frontend)
		stop_frontend();
}

int daemon_install_signals(void (*request_stop)(void))
{
	stop_frontend = request_stop;
	struct sigaction ignore = {.sa_handler = SIG_IGN};
	struct sigaction stop = {.sa_handler = on_stop_signal};
	sigemptyset(&ignore.sa_mask);
	sigemptyset(&stop.sa_mask);
	/* Peers that went away must not kill us while we write to them. */
	if (sigaction(SIGPIPE, &ignore, NULL) < 0 || sigaction(SIGINT, &stop, NULL) < 0 ||
	    sigaction(SIGTERM, &stop, NULL) < 0)
		return -errno;
	return 0;
}

static int serve_stack(const struct daemon_frontend *fe, const struct device_config *cfg, void *ctx)
{
	log_info("Starting %s backend. Process ID: %d", fe->name, (int)getpid());
	struct backend_env env;
	struct error err = {0};
	if (backend_env_open(cfg, &env, &err) < 0) {
		log_error("%s", err.text);
		return 1;
	}
	service_status_start(env.stripes, env.worker);
	int rc = fe->serve(cfg, &env, ctx);
	service_status_end();
	backend_env_close(&env);
	return rc < 0 ? 1 : 0;
}

int daemon_run(const struct daemon_frontend *fe, const struct common_args *args, void *ctx)
{
	forbid_core_dumps();
	if (daemon_install_signals(fe->request_stop) < 0) {
		log_error("cannot install signal handlers: %s", strerror(errno));
		return 1;
	}
	struct device_config cfg;
	if (common_args_load_config(args, &cfg) < 0)
		return 1;
	int status = 1;
	if (!fe->prepare || fe->prepare(&cfg, ctx) == 0) {
		status = serve_stack(fe, &cfg, ctx);
		if (fe->finish)
			fe->finish(ctx);
	}
	device_config_free(&cfg);
	return status;
}
