/* A front end that shrinks a shared memory file after handing it to us
 * makes every access past the new end raise SIGBUS, which would kill the
 * whole process (every device, every queue). Sealing the file against
 * shrinking prevents that where the file allows seals (guest_memory.c tries
 * it); this guard covers the rest.
 *
 * Each guest mapping is registered here. A SIGBUS whose address lies inside
 * a registered range is absorbed: the handler maps anonymous zero pages over
 * the whole range (mmap MAP_FIXED: the same address, no more file behind
 * it), sets the range's `broken` flag and writes 1 to its notify eventfd, and
 * returns, so the faulting access is retried on the zero pages. The thread
 * that faulted (a queue worker or the control thread) goes on with garbage
 * it can survive; the owner of the notify fd (server.c) sees the fault and
 * ends the connection, and no further request is served from that memory
 * (guest_memory_broken()). A SIGBUS anywhere else goes to the handler that
 * was installed before ours, or kills the process as it would have.
 *
 * Threads: register and unregister from any thread; the handler runs on the
 * faulting thread. The registry is a fixed array read lock-free by the
 * handler; unregister waits until no handler uses the slot, so the range may
 * be unmapped as soon as it returns. */
#ifndef UBIBLK_VHOST_GUEST_FAULT_H
#define UBIBLK_VHOST_GUEST_FAULT_H

#include <stddef.h>

/* Ranges watched at once, over every connection of the process. */
#define GUEST_FAULT_SLOTS 2048u

/* Installs the SIGBUS handler unless it is in place, and registers
 * [addr, addr+len). `broken` (atomic, owned by the caller) is set to 1 on a
 * fault; notify_fd (may be -1) must stay open until unregistered. Returns
 * the slot (>= 0) for guest_fault_unregister(), -ENOSPC when every slot is
 * taken, or sigaction's -errno. */
int guest_fault_register(void *addr, size_t len, int *broken, int notify_fd);
/* Stops watching; returns once no handler uses the slot. */
void guest_fault_unregister(int slot);
/* Faults absorbed since the process started (a cheap first test before
 * looking at each mapping's flag). */
unsigned long guest_fault_count(void);

#endif
