/* thread_start: see "threads" in common.h. */
#include "common/common.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

int thread_start(pthread_t *thread, const char *name, void *(*main)(void *), void *arg)
{
	sigset_t all, old;
	sigfillset(&all);
	/* Faults stay deliverable: blocking them does not stop them, the
	 * kernel then kills the process without running the handler that
	 * would have dealt with them (the vhost guest memory SIGBUS guard). */
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	/* The new thread inherits the mask in force at pthread_create. */
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(thread, NULL, main, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return -rc;
	if (name) {
		char short_name[16];
		snprintf(short_name, sizeof(short_name), "%s", name);
		pthread_setname_np(*thread, short_name);
	}
	return 0;
}
