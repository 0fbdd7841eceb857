/* A minimal vhost-user front end for the control-plane tests: it writes raw
 * messages (with or without descriptors) into one end of a socketpair and
 * reads replies from it, with timeouts so a broken server fails a test
 * instead of hanging it. */
#ifndef UBIBLK_TEST_FRONT_END_H
#define UBIBLK_TEST_FRONT_END_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhost/vhost_user_wire.h"

/* Sends header {request, flags, size} followed by `size` payload bytes, and
 * the descriptors as SCM_RIGHTS. Fails the test on a socket error. */
void fe_send(int sock, uint32_t request, uint32_t flags, const void *payload, uint32_t size,
	     const int *fds, unsigned int fd_count);
/* A request with version 1 and no other flag. */
void fe_request(int sock, uint32_t request, const void *payload, uint32_t size);
void fe_request_u64(int sock, uint32_t request, uint64_t value);
void fe_request_state(int sock, uint32_t request, uint32_t index, uint32_t num);

/* Reads one reply (waiting at most 2 s); returns its payload size and checks
 * the reply's request code and flags. */
uint32_t fe_reply(int sock, uint32_t request, void *payload, uint32_t max);
uint64_t fe_reply_u64(int sock, uint32_t request);
/* True when nothing is waiting to be read. */
bool fe_nothing_pending(int sock);

/* Descriptors currently open in this process (to catch leaks). */
int fe_open_fd_count(void);

/* A memfd of `size` bytes, mapped into the test at *map. */
int fe_memfd(size_t size, void **map);

#endif
