/* dump-metadata's stripe lists, in the exact text that scripts reading
 * ubiblk's dumps expect: ascending runs, "a" / "a, b" / "a-b", joined by
 * ", ". Written straight to the stream so a million-stripe file needs no
 * big string. */
#include "meta/meta.h"

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

void meta_print_stripe_list(FILE *out, const struct metadata *m, uint8_t flag)
{
	bool any = false;
	bool in_run = false;
	uint64_t first = 0;
	for (uint64_t i = 0; i < m->header_count; i++) {
		bool set = (m->headers[i] & flag) != 0;
		if (set && !in_run) {
			first = i;
			in_run = true;
		} else if (!set && in_run) {
			print_run(out, first, i - 1, &any);
			in_run = false;
		}
	}
	if (in_run)
		print_run(out, first, m->header_count - 1, &any);
}
