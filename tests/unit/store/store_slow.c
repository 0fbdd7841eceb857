/* See store_slow.h. */
#include "store_slow.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_internal.h"

struct slow_store {
	pthread_t thread;
	atomic_uint delay_ms;
	atomic_uint taken;
};

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void *slow_main(void *arg)
{
	struct store *s = arg;
	struct slow_store *slow = store_backend(s);
	struct store_request *req;
	while ((req = store_request_next(s, true))) {
		atomic_fetch_add(&slow->taken, 1);
		sleep_ms(atomic_load(&slow->delay_ms));
		req->result = 0;
		if (req->op == STORE_GET) {
			req->body_len = strlen(req->name);
			req->body = (uint8_t *)strdup(req->name);
			if (!req->body)
				store_request_fail(req, -ENOMEM, "out of memory");
		}
		store_request_complete(s, req);
	}
	return NULL;
}

static void slow_stop(struct store *s)
{
	struct slow_store *slow = store_backend(s);
	pthread_join(slow->thread, NULL);
	free(slow);
}

static const struct store_backend_ops slow_ops = {.stop = slow_stop};

int store_slow_open(uint32_t delay_ms, struct store **out)
{
	struct slow_store *slow = calloc(1, sizeof(*slow));
	if (!slow)
		return -ENOMEM;
	atomic_store(&slow->delay_ms, delay_ms);
	struct store *s;
	int rc = store_alloc(&slow_ops, 1, &s, NULL);
	if (rc) {
		free(slow);
		return rc;
	}
	store_set_backend(s, slow);
	rc = thread_start(&slow->thread, "store-slow", slow_main, s);
	if (rc) {
		store_free(s);
		free(slow);
		return rc;
	}
	*out = s;
	return 0;
}

void store_slow_set_delay(struct store *s, uint32_t delay_ms)
{
	struct slow_store *slow = store_backend(s);
	atomic_store(&slow->delay_ms, delay_ms);
}

unsigned store_slow_taken(struct store *s)
{
	struct slow_store *slow = store_backend(s);
	return atomic_load(&slow->taken);
}
