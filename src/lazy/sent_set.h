/* A small set of stripe keys with a fixed capacity, allocated once per
 * channel. The lazy channel remembers in it which fetch / set-written
 * messages it already sent, so a burst of requests to one unfetched stripe
 * costs the worker one message, not one per request.
 *
 * It only saves messages: when the set is full a key is simply not
 * remembered and the caller sends again (the worker ignores duplicates), so
 * correctness never depends on its capacity. */
#ifndef UBIBLK_LAZY_SENT_SET_H
#define UBIBLK_LAZY_SENT_SET_H

#include <stdbool.h>
#include <stdint.h>

struct sent_set {
	uint64_t *slots; /* SENT_SET_EMPTY or a key */
	uint32_t mask;	 /* capacity - 1 */
	uint32_t count;
};

#define SENT_SET_EMPTY UINT64_MAX

/* Room for about `expected` keys (rounded up, at least 32, at most 8192). */
int sent_set_init(struct sent_set *set, uint32_t expected);
void sent_set_fini(struct sent_set *set);
bool sent_set_contains(const struct sent_set *set, uint64_t key);
/* Returns false (and remembers nothing) when the set is full. */
bool sent_set_insert(struct sent_set *set, uint64_t key);
void sent_set_remove(struct sent_set *set, uint64_t key);
void sent_set_clear(struct sent_set *set);

#endif
