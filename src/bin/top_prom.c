/* prom_text_parse: see top_prom.h. A line-by-line reader, strict about the
 * sample syntax (a line it cannot read fails the whole text, so a changed
 * format shows up as an error instead of silently wrong numbers). */
#include "top_prom.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool name_start(char c)
{
	return isalpha((unsigned char)c) || c == '_' || c == ':';
}

static bool name_char(char c)
{
	return name_start(c) || isdigit((unsigned char)c);
}

static const char *skip_blanks(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

/* A name at *p: malloc'd copy, *p moved past it; NULL if none (or no memory,
 * told apart by *nomem). */
static char *take_name(const char **p, const char *end, bool *nomem)
{
	const char *start = *p;
	if (start >= end || !name_start(*start))
		return NULL;
	const char *q = start + 1;
	while (q < end && name_char(*q))
		q++;
	*p = q;
	char *s = strndup(start, (size_t)(q - start));
	if (!s)
		*nomem = true;
	return s;
}

/* A quoted label value at *p (the opening quote included). */
static char *take_quoted(const char **p, const char *end, bool *nomem)
{
	const char *q = *p;
	if (q >= end || *q != '"')
		return NULL;
	q++;
	char *out = malloc((size_t)(end - q) + 1);
	if (!out) {
		*nomem = true;
		return NULL;
	}
	size_t n = 0;
	while (q < end && *q != '"') {
		char c = *q++;
		if (c == '\\') {
			if (q >= end)
				break;
			c = *q++;
			if (c == 'n')
				c = '\n';
			else if (c != '\\' && c != '"') {
				free(out);
				return NULL;
			}
		}
		out[n++] = c;
	}
	if (q >= end) {
		free(out);
		return NULL;
	}
	out[n] = '\0';
	*p = q + 1;
	return out;
}

static void sample_free(struct prom_sample *s)
{
	for (size_t i = 0; i < s->num_labels; i++) {
		free(s->labels[i].name);
		free(s->labels[i].value);
	}
	free(s->labels);
	free(s->name);
	*s = (struct prom_sample){0};
}

/* {name="value",...}; a trailing comma is allowed, as the format says. */
static int parse_labels(const char **p, const char *end, struct prom_sample *s, bool *nomem)
{
	const char *q = *p + 1;
	for (;;) {
		q = skip_blanks(q, end);
		if (q < end && *q == '}') {
			*p = q + 1;
			return 0;
		}
		char *name = take_name(&q, end, nomem);
		if (!name)
			return -EINVAL;
		q = skip_blanks(q, end);
		char *value = NULL;
		if (q < end && *q == '=') {
			q = skip_blanks(q + 1, end);
			value = take_quoted(&q, end, nomem);
		}
		struct prom_label *grown =
		    value ? realloc(s->labels, (s->num_labels + 1) * sizeof(*grown)) : NULL;
		if (!grown) {
			if (value)
				*nomem = true;
			free(name);
			free(value);
			return -EINVAL;
		}
		s->labels = grown;
		s->labels[s->num_labels++] = (struct prom_label){.name = name, .value = value};
		q = skip_blanks(q, end);
		if (q < end && *q == ',')
			q++;
		else if (q >= end || *q != '}')
			return -EINVAL;
	}
}

static int parse_value(const char *p, const char *end, double *out)
{
	p = skip_blanks(p, end);
	char buf[64];
	size_t len = 0;
	while (p + len < end && p[len] != ' ' && p[len] != '\t')
		len++;
	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, p, len);
	buf[len] = '\0';
	char *stop;
	errno = 0;
	double v = strtod(buf, &stop);
	if (*stop != '\0' || errno == ERANGE)
		return -EINVAL;
	/* An optional timestamp may follow; ubiblk-top does not use it. */
	*out = v;
	return 0;
}

static int parse_line(const char *p, const char *end, struct prom_sample *s, bool *nomem)
{
	s->name = take_name(&p, end, nomem);
	if (!s->name)
		return -EINVAL;
	p = skip_blanks(p, end);
	if (p < end && *p == '{' && parse_labels(&p, end, s, nomem) < 0)
		return -EINVAL;
	return parse_value(p, end, &s->value);
}

int prom_text_parse(const char *text, struct prom_text *out, struct error *err)
{
	*out = (struct prom_text){0};
	size_t cap = 0;
	unsigned line_no = 0;
	for (const char *line = text; *line;) {
		const char *nl = strchr(line, '\n');
		const char *end = nl ? nl : line + strlen(line);
		line_no++;
		const char *p = skip_blanks(line, end);
		if (p < end && end[-1] == '\r')
			end--;
		if (p < end && *p != '#') {
			if (out->count == cap) {
				size_t new_cap = cap ? cap * 2 : 64;
				struct prom_sample *grown =
				    realloc(out->samples, new_cap * sizeof(*grown));
				if (!grown)
					return error_set(err, -ENOMEM, "out of memory");
				out->samples = grown;
				cap = new_cap;
			}
			struct prom_sample *s = &out->samples[out->count];
			*s = (struct prom_sample){0};
			bool nomem = false;
			int rc = parse_line(p, end, s, &nomem);
			if (rc < 0 || nomem) {
				sample_free(s);
				if (nomem)
					return error_set(err, -ENOMEM, "out of memory");
				return error_set(err, -EINVAL,
						 "metrics line %u: cannot read \"%.*s\"", line_no,
						 (int)(end - p > 80 ? 80 : end - p), p);
			}
			out->count++;
		}
		line = nl ? nl + 1 : end;
		if (!nl)
			break;
	}
	return 0;
}

void prom_text_free(struct prom_text *t)
{
	for (size_t i = 0; i < t->count; i++)
		sample_free(&t->samples[i]);
	free(t->samples);
	*t = (struct prom_text){0};
}

const char *prom_sample_label(const struct prom_sample *s, const char *name)
{
	for (size_t i = 0; i < s->num_labels; i++)
		if (strcmp(s->labels[i].name, name) == 0)
			return s->labels[i].value;
	return NULL;
}
