/* Typed reading of YAML mapping fields with serde_yaml 0.9's typing rules,
 * which existing configs of this format were written against (booleans,
 * integers and nulls as docs/config.md lists them). Internal to src/config.
 *
 * Every reader returns 0 when the field is absent (output untouched) or was
 * read, and a negative errno with one line in err otherwise, of the form
 * "<path>: <problem> at line L column C". Unknown keys are never looked at. */
#ifndef UBIBLK_YAML_FIELDS_H
#define UBIBLK_YAML_FIELDS_H

#include "yaml_tree.h"

#include <stdarg.h>

#define YAML_FIELD_PATH_MAX 128

struct yaml_map {
	struct yaml_tree *tree;
	yaml_node_t *node;		  /* a mapping node, or NULL for an empty/null one */
	char prefix[YAML_FIELD_PATH_MAX]; /* "" at top level, else "stripe_source." etc. */
	/* Inside internally tagged maps (stripe_source, archive target config)
	 * serde types plain scalars before it sees the field, so `12345` or `true`
	 * is not a string there. Elsewhere string fields take any scalar's text. */
	bool typed_strings;
};

enum yaml_scalar_type {
	YAML_SCALAR_NULL,
	YAML_SCALAR_BOOL,
	YAML_SCALAR_UINT,
	YAML_SCALAR_NEGATIVE_INT,
	YAML_SCALAR_FLOAT,
	YAML_SCALAR_STRING,
};

/* How serde_yaml reads a scalar without a declared type: quoted scalars are
 * strings; plain ones may be null, bool, integer or float. */
enum yaml_scalar_type yaml_scalar_type(const yaml_node_t *node);
/* Plain unsigned integer: decimal, optional '+', 0x/0o/0b. */
bool yaml_parse_uint(const char *text, size_t len, uint64_t *value, bool *overflow);

/* The document root as a map; a null or empty document is an empty map. */
int yaml_map_root(struct yaml_tree *tree, bool typed_strings, struct yaml_map *map,
		  struct error *err);
/* A nested map; absent or null leaves *present false. */
int yaml_map_child(const struct yaml_map *parent, const char *key, struct yaml_map *child,
		   bool *present, struct error *err);
/* The value node of key, or NULL when absent; a repeated key is an error. */
int yaml_map_find(const struct yaml_map *map, const char *key, yaml_node_t **value,
		  struct error *err);
/* "missing field `key`", for required fields the caller found absent. */
int yaml_map_missing(const struct yaml_map *map, const char *key, struct error *err);

int yaml_map_bool(const struct yaml_map *map, const char *key, bool *out, struct error *err);
int yaml_map_u32(const struct yaml_map *map, const char *key, uint32_t *out, struct error *err);
int yaml_map_u64(const struct yaml_map *map, const char *key, uint64_t *out, struct error *err);
/* A sequence of u32; null leaves *out NULL. An empty sequence gives a
 * non-NULL array of length 0. */
int yaml_map_u32_list(const struct yaml_map *map, const char *key, uint32_t **out, size_t *len,
		      struct error *err);
/* A string field that has no "absent" value: scalars are read per
 * typed_strings. *out stays NULL when the key is absent. */
int yaml_map_string(const struct yaml_map *map, const char *key, char **out, struct error *err);
/* An optional string: null, ~ or an empty value are absent (*out NULL). */
int yaml_map_optional_string(const struct yaml_map *map, const char *key, char **out,
			     struct error *err);
/* One of names[]; *index is set when present. null is a type error. */
int yaml_map_variant(const struct yaml_map *map, const char *key, const char *const *names,
		     size_t count, int *index, bool *present, struct error *err);
/* An optional base64 secret (null = absent). The value never appears in a
 * message. */
int yaml_map_base64(const struct yaml_map *map, const char *key, bool strict, struct bytes *out,
		    struct error *err);

/* A scalar node read as a string for `field` (e.g. "encryption_key[0]"). */
int yaml_node_string(const struct yaml_map *map, const char *field, const yaml_node_t *node,
		     bool typed, bool secret, char **out, struct error *err);
/* "<prefix><field>: <message> at line L column C" */
int yaml_node_error(struct error *err, const struct yaml_map *map, const char *field,
		    const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* "invalid type: <what the node is>, expected <expected>" at the node. */
int yaml_node_type_error(struct error *err, const struct yaml_map *map, const char *field,
			 const yaml_node_t *node, bool secret, const char *expected);

#endif
