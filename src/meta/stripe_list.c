/* dump-metadata's stripe lists, in the exact text that scripts reading
 * ubiblk's dumps expect: ascending runs, "a" / "a, b" / "a-b", joined by
 * ", ". Written straight to the stream so a million-stripe file needs no
 * big string. */
#include "meta/meta.h"

#include <string.h>

static void print_run(FILE *out, uint64_t first, uint64_t last, bool *any)
{
	const char *sep = *any ? ", " : "";
	if (first == last)
		fprintf(out, "%s%llu", sep, (unsigned long long)first);
	else if (last == first + 1)
		fprintf(out, "%s%llu, %llu", sep, (unsigned long long)first,
			(unsigned long long)last);
	else
		fprintf(out, "%s%llu-%llu", sep, (unsigned long long)first,
			(unsigned long long)last);
	*any = true;
}

void meta_list_begin(struct meta_list_printer *p, FILE *out, uint8_t flag)
{
	*p = (struct meta_list_printer){.out = out, .flag = flag};
}

/* Outside a run, 8 headers without the flag are passed over at once: a large
 * file is mostly zero. */
static size_t skip_clear(const struct meta_list_printer *p, const uint8_t *headers, size_t i,
			 size_t count)
{
	uint64_t mask = 0x0101010101010101ull * p->flag;
	while (i + 8 <= count) {
		uint64_t word;
		memcpy(&word, headers + i, sizeof(word));
		if (word & mask)
			break;
		i += 8;
	}
	return i;
}

void meta_list_add(struct meta_list_printer *p, const uint8_t *headers, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		if (!p->in_run) {
			i = skip_clear(p, headers, i, count);
			if (i == count)
				break;
		}
		bool set = (headers[i] & p->flag) != 0;
		uint64_t index = p->next + i;
		if (set && !p->in_run) {
			p->run_first = index;
			p->in_run = true;
		} else if (!set && p->in_run) {
			print_run(p->out, p->run_first, index - 1, &p->any);
			p->in_run = false;
		}
	}
	p->next += count;
}

void meta_list_end(struct meta_list_printer *p)
{
	if (p->in_run)
		print_run(p->out, p->run_first, p->next - 1, &p->any);
	p->in_run = false;
}

void meta_print_stripe_list(FILE *out, const struct metadata *m, uint8_t flag)
{
	struct meta_list_printer p;
	meta_list_begin(&p, out, flag);
	meta_list_add(&p, m->headers, (size_t)m->header_count);
	meta_list_end(&p);
}
