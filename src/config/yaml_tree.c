#include "yaml_tree.h"

#include "common/common.h"
#include "config_internal.h"

#include <errno.h>
#include <string.h>

static int syntax_error(const yaml_parser_t *parser, struct error *err)
{
	const char *problem = parser->problem ? parser->problem : "invalid YAML";

	if (parser->error == YAML_MEMORY_ERROR)
		return error_set(err, -ENOMEM, "out of memory while parsing YAML");
	if (parser->context)
		return error_set(
		    err, -EINVAL, "%s at line %zu column %zu, %s at line %zu column %zu", problem,
		    parser->problem_mark.line + 1, parser->problem_mark.column + 1, parser->context,
		    parser->context_mark.line + 1, parser->context_mark.column + 1);
	return error_set(err, -EINVAL, "%s at line %zu column %zu", problem,
			 parser->problem_mark.line + 1, parser->problem_mark.column + 1);
}

/* Configs and KEK files hold secrets; libyaml frees its buffers unwiped. */
static void wipe_parser_buffers(yaml_parser_t *parser)
{
	if (parser->raw_buffer.start)
		secret_wipe(parser->raw_buffer.start,
			    (size_t)(parser->raw_buffer.end - parser->raw_buffer.start));
	if (parser->buffer.start)
		secret_wipe(parser->buffer.start,
			    (size_t)(parser->buffer.end - parser->buffer.start));
}

int yaml_tree_load(struct yaml_tree *tree, const char *text, size_t len, struct error *err)
{
	yaml_parser_t parser;
	yaml_document_t extra;
	int ret = 0;

	memset(tree, 0, sizeof(*tree));
	if (!yaml_parser_initialize(&parser))
		return error_set(err, -ENOMEM, "out of memory while parsing YAML");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &tree->doc)) {
		ret = syntax_error(&parser, err);
		goto out;
	}
	tree->loaded = true;

	/* A second document is refused rather than silently ignored. */
	if (!yaml_parser_load(&parser, &extra)) {
		ret = syntax_error(&parser, err);
		goto out;
	}
	if (yaml_document_get_root_node(&extra)) {
		yaml_mark_t mark = yaml_document_get_root_node(&extra)->start_mark;
		ret = error_set(err, -EINVAL,
				"deserializing from YAML containing more than one document is "
				"not supported at line %zu column %zu",
				mark.line + 1, mark.column + 1);
	}
	yaml_document_delete(&extra);
out:
	wipe_parser_buffers(&parser);
	yaml_parser_delete(&parser);
	if (ret)
		yaml_tree_free(tree);
	return ret;
}

void yaml_tree_free(struct yaml_tree *tree)
{
	if (!tree->loaded)
		return;
	for (yaml_node_t *node = tree->doc.nodes.start; node < tree->doc.nodes.top; node++)
		if (node->type == YAML_SCALAR_NODE)
			secret_wipe(node->data.scalar.value, node->data.scalar.length);
	yaml_document_delete(&tree->doc);
	tree->loaded = false;
}

yaml_node_t *yaml_tree_root(struct yaml_tree *tree)
{
	return tree->loaded ? yaml_document_get_root_node(&tree->doc) : NULL;
}

yaml_node_t *yaml_tree_node(struct yaml_tree *tree, int id)
{
	return yaml_document_get_node(&tree->doc, id);
}
