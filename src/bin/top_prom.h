/* The part of the Prometheus text exposition format (0.0.4) ubiblk-top
 * reads from the `metrics` RPC: sample lines with labels and values.
 * Comments (# HELP, # TYPE) and timestamps are skipped; histogram series are
 * plain samples (name_bucket{le="..."}, name_sum, name_count). */
#ifndef UBIBLK_BIN_TOP_PROM_H
#define UBIBLK_BIN_TOP_PROM_H

#include <stddef.h>

#include "common/common.h"

struct prom_label {
	char *name;
	char *value; /* escapes (\\ \" \n) resolved */
};

struct prom_sample {
	char *name;
	struct prom_label *labels;
	size_t num_labels;
	double value; /* +Inf, -Inf and NaN as strtod reads them */
};

/* Owns every string and array it points to. */
struct prom_text {
	struct prom_sample *samples;
	size_t count;
};

/* Parses the whole text into *out (freed with prom_text_free, also after a
 * failure). Returns 0, or -EINVAL / -ENOMEM with err naming the line. */
int prom_text_parse(const char *text, struct prom_text *out, struct error *err);
void prom_text_free(struct prom_text *t);
/* The value of label `name`, NULL when the sample has none. */
const char *prom_sample_label(const struct prom_sample *s, const char *name);

#endif
