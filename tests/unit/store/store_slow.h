/* A test-only store backend whose one thread takes each request, sleeps a
 * configurable time, then completes it: GET returns the object's name as its
 * body, PUT and HEAD succeed. It lets tests reach the shared machinery's
 * timing cases (sync timeouts, closing with requests in progress) that the
 * filesystem store finishes too fast to show. */
#ifndef UBIBLK_TEST_STORE_SLOW_H
#define UBIBLK_TEST_STORE_SLOW_H

#include <stdint.h>

#include "store/store.h"

int store_slow_open(uint32_t delay_ms, struct store **out);
/* The delay for requests taken from now on. */
void store_slow_set_delay(struct store *s, uint32_t delay_ms);
/* Requests the thread has taken (and so will complete). */
unsigned store_slow_taken(struct store *s);

#endif
