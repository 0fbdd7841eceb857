/* The SIGBUS guard over guest mappings. See guest_fault.h.
 *
 * Only async-signal-safe work happens in the handler: atomics on a static
 * array, mmap(2) (a plain system call on Linux, though POSIX does not list
 * it), write(2) and sigaction(2). */
#include "vhost/guest_fault.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum slot_state {
	SLOT_FREE,
	SLOT_FILLING, /* claimed by register, fields being written */
	SLOT_ACTIVE,
	SLOT_RETIRING, /* unregister waits for handlers to leave */
};

struct fault_slot {
	int state; /* enum slot_state, atomic */
	int users; /* handlers inside this slot, atomic */
	uintptr_t addr;
	size_t len;
	int *broken;
	int notify_fd;
};

static struct fault_slot slots[GUEST_FAULT_SLOTS];
static unsigned long faults; /* atomic */
static struct sigaction previous;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

/* Hands a fault that is not ours to whoever had SIGBUS before us. */
static void chain(int sig, siginfo_t *info, void *ucontext)
{
	if (previous.sa_flags & SA_SIGINFO) {
		previous.sa_sigaction(sig, info, ucontext);
		return;
	}
	if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
		previous.sa_handler(sig);
		return;
	}
	/* The default action (kill, core): restore it and let the signal
	 * come again, by the retried access or, if it was sent, by raise(). */
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGBUS, &dfl, NULL);
	if (info->si_code <= 0)
		raise(SIGBUS);
}

/* Absorbs a fault at `addr` if a registered range holds it. */
static int absorb(uintptr_t addr)
{
	for (size_t i = 0; i < GUEST_FAULT_SLOTS; i++) {
		struct fault_slot *s = &slots[i];
		if (__atomic_load_n(&s->state, __ATOMIC_SEQ_CST) != SLOT_ACTIVE)
			continue;
		/* Announce ourselves, then look again: unregister sets
		 * RETIRING before it waits for users to reach 0. */
		__atomic_add_fetch(&s->users, 1, __ATOMIC_SEQ_CST);
		int mine = __atomic_load_n(&s->state, __ATOMIC_SEQ_CST) == SLOT_ACTIVE &&
			   addr - s->addr < s->len;
		if (mine) {
			void *r =
			    mmap((void *)s->addr, s->len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
			if (r == MAP_FAILED)
				mine = 0; /* cannot repair: die as before */
			if (mine) {
				__atomic_store_n(s->broken, 1, __ATOMIC_SEQ_CST);
				__atomic_add_fetch(&faults, 1, __ATOMIC_SEQ_CST);
				if (s->notify_fd >= 0) {
					uint64_t one = 1;
					ssize_t w = write(s->notify_fd, &one, sizeof(one));
					(void)w; /* a full counter is still readable */
				}
			}
		}
		__atomic_sub_fetch(&s->users, 1, __ATOMIC_SEQ_CST);
		if (mine)
			return 1;
	}
	return 0;
}

static void on_sigbus(int sig, siginfo_t *info, void *ucontext)
{
	int saved = errno;
	/* Only a fault (si_code > 0) has a meaningful address. */
	if (info->si_code > 0 && absorb((uintptr_t)info->si_addr)) {
		errno = saved;
		return;
	}
	chain(sig, info, ucontext);
	errno = saved;
}

/* Installs the handler unless it is in place. Checked at every
 * registration, not once: code that saves and restores SIGBUS around its own
 * work (a test framework, a library) may have put another handler back. */
static int install(void)
{
	pthread_mutex_lock(&install_lock);
	struct sigaction cur;
	int ret = 0;
	if (sigaction(SIGBUS, NULL, &cur) < 0) {
		ret = -errno;
	} else if (!(cur.sa_flags & SA_SIGINFO) || cur.sa_sigaction != on_sigbus) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_sigbus;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		previous = cur;
		if (sigaction(SIGBUS, &sa, NULL) < 0)
			ret = -errno;
	}
	pthread_mutex_unlock(&install_lock);
	return ret;
}

int guest_fault_register(void *addr, size_t len, int *broken, int notify_fd)
{
	int ret = install();
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < GUEST_FAULT_SLOTS; i++) {
		struct fault_slot *s = &slots[i];
		int expected = SLOT_FREE;
		if (!__atomic_compare_exchange_n(&s->state, &expected, SLOT_FILLING, false,
						 __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
			continue;
		s->addr = (uintptr_t)addr;
		s->len = len;
		s->broken = broken;
		s->notify_fd = notify_fd;
		__atomic_store_n(&s->state, SLOT_ACTIVE, __ATOMIC_SEQ_CST);
		return (int)i;
	}
	return -ENOSPC;
}

void guest_fault_unregister(int slot)
{
	if (slot < 0 || (size_t)slot >= GUEST_FAULT_SLOTS)
		return;
	struct fault_slot *s = &slots[slot];
	__atomic_store_n(&s->state, SLOT_RETIRING, __ATOMIC_SEQ_CST);
	/* A handler that saw ACTIVE is mapping or writing right now: the
	 * range and the fd must outlive it. It is a few system calls. */
	while (__atomic_load_n(&s->users, __ATOMIC_SEQ_CST) != 0)
		sched_yield();
	__atomic_store_n(&s->state, SLOT_FREE, __ATOMIC_RELEASE);
}

unsigned long guest_fault_count(void)
{
	return __atomic_load_n(&faults, __ATOMIC_ACQUIRE);
}
