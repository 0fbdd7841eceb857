#include "yaml_fields.h"

#include "common/common.h"
#include "config_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Values quoted in messages are cut here so one line stays short. */
#define QUOTED_VALUE_MAX 64
#define QUOTED_TEXT_SIZE (QUOTED_VALUE_MAX * 4 + 4)

int yaml_node_error(struct error *err, const struct yaml_map *map, const char *field,
		    const yaml_node_t *node, const char *fmt, ...)
{
	char message[ERROR_TEXT_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	if (node)
		return error_set(err, -EINVAL, "%s%s: %s at line %zu column %zu", map->prefix,
				 field, message, node->start_mark.line + 1,
				 node->start_mark.column + 1);
	return error_set(err, -EINVAL, "%s%s: %s", map->prefix, field, message);
}

/* serde's "unexpected" wording: `string "x"`, `integer `5``, `map`, ... */
static void describe_node(const yaml_node_t *node, bool secret, char *buf, size_t size)
{
	if (node->type == YAML_SEQUENCE_NODE) {
		snprintf(buf, size, "sequence");
		return;
	}
	if (node->type == YAML_MAPPING_NODE) {
		snprintf(buf, size, "map");
		return;
	}

	char text[QUOTED_TEXT_SIZE] = "";
	const char *kind = NULL;

	/* A secret's text is not even copied. */
	if (!secret)
		config_quote((const char *)node->data.scalar.value, node->data.scalar.length,
			     QUOTED_VALUE_MAX, text, sizeof(text));

	switch (yaml_scalar_type(node)) {
	case YAML_SCALAR_NULL:
		snprintf(buf, size, "unit value");
		return;
	case YAML_SCALAR_BOOL:
		kind = "boolean";
		break;
	case YAML_SCALAR_UINT:
	case YAML_SCALAR_NEGATIVE_INT:
		kind = "integer";
		break;
	case YAML_SCALAR_FLOAT:
		kind = "floating point";
		break;
	case YAML_SCALAR_STRING:
		if (secret)
			snprintf(buf, size, "string");
		else
			snprintf(buf, size, "string \"%s\"", text);
		return;
	}
	if (secret)
		snprintf(buf, size, "%s", kind);
	else
		snprintf(buf, size, "%s `%s`", kind, text);
}

int yaml_node_type_error(struct error *err, const struct yaml_map *map, const char *field,
			 const yaml_node_t *node, bool secret, const char *expected)
{
	char what[QUOTED_TEXT_SIZE + 32];

	describe_node(node, secret, what, sizeof(what));
	return yaml_node_error(err, map, field, node, "invalid type: %s, expected %s", what,
			       expected);
}

static bool key_matches(const yaml_node_t *key, const char *name)
{
	return key && key->type == YAML_SCALAR_NODE && key->data.scalar.length == strlen(name) &&
	       memcmp(key->data.scalar.value, name, key->data.scalar.length) == 0;
}

int yaml_map_find(const struct yaml_map *map, const char *key, yaml_node_t **value,
		  struct error *err)
{
	*value = NULL;
	if (!map->node)
		return 0;
	for (yaml_node_pair_t *pair = map->node->data.mapping.pairs.start;
	     pair < map->node->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_tree_node(map->tree, pair->key);
		if (!key_matches(k, key))
			continue;
		if (*value)
			return yaml_node_error(err, map, key, k, "duplicate field `%s`", key);
		*value = yaml_tree_node(map->tree, pair->value);
	}
	return 0;
}

int yaml_map_missing(const struct yaml_map *map, const char *key, struct error *err)
{
	if (map->prefix[0] == '\0')
		return error_set(err, -EINVAL, "missing field `%s`", key);
	/* "stripe_source.": name the map itself, without the trailing dot. */
	if (!map->node)
		return error_set(err, -EINVAL, "%.*s: missing field `%s`",
				 (int)strlen(map->prefix) - 1, map->prefix, key);
	return error_set(err, -EINVAL, "%.*s: missing field `%s` at line %zu column %zu",
			 (int)strlen(map->prefix) - 1, map->prefix, key,
			 map->node->start_mark.line + 1, map->node->start_mark.column + 1);
}

static bool is_null_node(const yaml_node_t *node)
{
	return node->type == YAML_SCALAR_NODE && yaml_scalar_type(node) == YAML_SCALAR_NULL;
}

int yaml_map_root(struct yaml_tree *tree, bool typed_strings, struct yaml_map *map,
		  struct error *err)
{
	yaml_node_t *root = yaml_tree_root(tree);

	memset(map, 0, sizeof(*map));
	map->tree = tree;
	map->typed_strings = typed_strings;
	if (!root || is_null_node(root))
		return 0;
	if (root->type != YAML_MAPPING_NODE) {
		char what[QUOTED_TEXT_SIZE + 32];
		describe_node(root, false, what, sizeof(what));
		return error_set(err, -EINVAL,
				 "invalid type: %s, expected a map at line %zu column %zu", what,
				 root->start_mark.line + 1, root->start_mark.column + 1);
	}
	map->node = root;
	return 0;
}

int yaml_map_child(const struct yaml_map *parent, const char *key, struct yaml_map *child,
		   bool *present, struct error *err)
{
	yaml_node_t *value;
	int ret = yaml_map_find(parent, key, &value, err);

	*present = false;
	if (ret || !value || is_null_node(value))
		return ret;
	if (value->type != YAML_MAPPING_NODE)
		return yaml_node_type_error(err, parent, key, value, false, "a map");
	memset(child, 0, sizeof(*child));
	child->tree = parent->tree;
	child->node = value;
	child->typed_strings = parent->typed_strings;
	int n = snprintf(child->prefix, sizeof(child->prefix), "%s%s.", parent->prefix, key);
	if (n < 0 || (size_t)n >= sizeof(child->prefix))
		return yaml_node_error(err, parent, key, value, "field path too long");
	*present = true;
	return 0;
}

int yaml_map_bool(const struct yaml_map *map, const char *key, bool *out, struct error *err)
{
	yaml_node_t *value;
	int ret = yaml_map_find(map, key, &value, err);

	if (ret || !value)
		return ret;
	if (value->type != YAML_SCALAR_NODE || yaml_scalar_type(value) != YAML_SCALAR_BOOL)
		return yaml_node_type_error(err, map, key, value, false, "a boolean");
	*out = value->data.scalar.value[0] == 't' || value->data.scalar.value[0] == 'T';
	return 0;
}

static int node_uint(const struct yaml_map *map, const char *field, const yaml_node_t *node,
		     uint64_t max, const char *type_name, uint64_t *out, struct error *err)
{
	uint64_t value;
	bool overflow;

	if (node->type != YAML_SCALAR_NODE)
		return yaml_node_type_error(err, map, field, node, false, type_name);
	switch (yaml_scalar_type(node)) {
	case YAML_SCALAR_UINT:
		yaml_parse_uint((const char *)node->data.scalar.value, node->data.scalar.length,
				&value, &overflow);
		if (overflow || value > max)
			return yaml_node_error(
			    err, map, field, node, "invalid value: integer `%.*s`, expected %s",
			    QUOTED_VALUE_MAX, (const char *)node->data.scalar.value, type_name);
		*out = value;
		return 0;
	case YAML_SCALAR_NEGATIVE_INT:
		return yaml_node_error(
		    err, map, field, node, "invalid value: integer `%.*s`, expected %s",
		    QUOTED_VALUE_MAX, (const char *)node->data.scalar.value, type_name);
	default:
		return yaml_node_type_error(err, map, field, node, false, type_name);
	}
}

int yaml_map_u32(const struct yaml_map *map, const char *key, uint32_t *out, struct error *err)
{
	yaml_node_t *value;
	uint64_t v;
	int ret = yaml_map_find(map, key, &value, err);

	if (ret || !value)
		return ret;
	ret = node_uint(map, key, value, UINT32_MAX, "u32", &v, err);
	if (ret == 0)
		*out = (uint32_t)v;
	return ret;
}

int yaml_map_u64(const struct yaml_map *map, const char *key, uint64_t *out, struct error *err)
{
	yaml_node_t *value;
	int ret = yaml_map_find(map, key, &value, err);

	if (ret || !value)
		return ret;
	return node_uint(map, key, value, UINT64_MAX, "u64", out, err);
}

int yaml_map_u32_list(const struct yaml_map *map, const char *key, uint32_t **out, size_t *len,
		      struct error *err)
{
	yaml_node_t *value;
	int ret = yaml_map_find(map, key, &value, err);

	if (ret || !value || is_null_node(value))
		return ret;
	if (value->type != YAML_SEQUENCE_NODE)
		return yaml_node_type_error(err, map, key, value, false, "a sequence");

	size_t count = (size_t)(value->data.sequence.items.top - value->data.sequence.items.start);
	uint32_t *items = calloc(count ? count : 1, sizeof(*items));
	if (!items)
		return -ENOMEM;
	for (size_t i = 0; i < count; i++) {
		yaml_node_t *item = yaml_tree_node(map->tree, value->data.sequence.items.start[i]);
		char field[YAML_FIELD_PATH_MAX];
		uint64_t v;

		snprintf(field, sizeof(field), "%s[%zu]", key, i);
		ret = node_uint(map, field, item, UINT32_MAX, "u32", &v, err);
		if (ret) {
			free(items);
			return ret;
		}
		items[i] = (uint32_t)v;
	}
	*out = items;
	*len = count;
	return 0;
}

int yaml_node_string(const struct yaml_map *map, const char *field, const yaml_node_t *node,
		     bool typed, bool secret, char **out, struct error *err)
{
	if (node->type != YAML_SCALAR_NODE ||
	    (typed && yaml_scalar_type(node) != YAML_SCALAR_STRING))
		return yaml_node_type_error(err, map, field, node, secret, "a string");
	/* A "\0" escape would silently cut a C string (and a path) short. */
	if (memchr(node->data.scalar.value, '\0', node->data.scalar.length))
		return yaml_node_error(err, map, field, node, "string contains a NUL character");
	*out = strndup((const char *)node->data.scalar.value, node->data.scalar.length);
	return *out ? 0 : -ENOMEM;
}

int yaml_map_string(const struct yaml_map *map, const char *key, char **out, struct error *err)
{
	yaml_node_t *value;
	int ret = yaml_map_find(map, key, &value, err);

	if (ret || !value)
		return ret;
	return yaml_node_string(map, key, value, map->typed_strings, false, out, err);
}

int yaml_map_optional_string(const struct yaml_map *map, const char *key, char **out,
			     struct error *err)
{
	yaml_node_t *value;
	int ret = yaml_map_find(map, key, &value, err);

	if (ret || !value || is_null_node(value))
		return ret;
	return yaml_node_string(map, key, value, map->typed_strings, false, out, err);
}

static void append_variants(char *buf, size_t size, const char *const *names, size_t count)
{
	size_t used = 0;

	if (count == 2) {
		snprintf(buf, size, "`%s` or `%s`", names[0], names[1]);
		return;
	}
	used += (size_t)snprintf(buf, size, "one of ");
	for (size_t i = 0; i < count && used < size; i++)
		used +=
		    (size_t)snprintf(buf + used, size - used, "%s`%s`", i ? ", " : "", names[i]);
}

int yaml_map_variant(const struct yaml_map *map, const char *key, const char *const *names,
		     size_t count, int *index, bool *present, struct error *err)
{
	yaml_node_t *value;
	char expected[256];
	int ret = yaml_map_find(map, key, &value, err);

	*present = false;
	if (ret || !value)
		return ret;
	append_variants(expected, sizeof(expected), names, count);
	if (value->type != YAML_SCALAR_NODE)
		return yaml_node_type_error(err, map, key, value, false, expected);
	/* Checked before null so that a variant literally named "null" (the
	 * io_engine) can be written without quotes. */
	for (size_t i = 0; i < count; i++) {
		if (key_matches(value, names[i])) {
			*index = (int)i;
			*present = true;
			return 0;
		}
	}
	if (is_null_node(value))
		return yaml_node_type_error(err, map, key, value, false, expected);
	char text[QUOTED_TEXT_SIZE];
	config_quote((const char *)value->data.scalar.value, value->data.scalar.length,
		     QUOTED_VALUE_MAX, text, sizeof(text));
	return yaml_node_error(err, map, key, value, "unknown variant `%s`, expected %s", text,
			       expected);
}

int yaml_map_base64(const struct yaml_map *map, const char *key, bool strict, struct bytes *out,
		    struct error *err)
{
	yaml_node_t *value;
	char *text = NULL;
	struct error b64_err = {0};
	int ret = yaml_map_find(map, key, &value, err);

	if (ret || !value || is_null_node(value))
		return ret;
	ret = yaml_node_string(map, key, value, map->typed_strings, true, &text, err);
	if (ret)
		return ret;
	ret = base64_decode(text, strict, out, &b64_err);
	secret_string_free(text);
	if (ret)
		return yaml_node_error(err, map, key, value, "%s", b64_err.text);
	return 0;
}
