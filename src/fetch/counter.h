/* Statistics counters: written by the worker thread only, read by any
 * thread. One writer, so a relaxed load and store suffice and readers see
 * whole values. */
#ifndef UBIBLK_FETCH_COUNTER_H
#define UBIBLK_FETCH_COUNTER_H

#include <stdint.h>

static inline void counter_add(uint64_t *counter, uint64_t value)
{
	__atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + value,
			 __ATOMIC_RELAXED);
}

static inline void counter_max(uint64_t *counter, uint64_t value)
{
	if (value > __atomic_load_n(counter, __ATOMIC_RELAXED))
		__atomic_store_n(counter, value, __ATOMIC_RELAXED);
}

static inline uint64_t counter_read(const uint64_t *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

#endif
