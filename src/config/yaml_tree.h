/* A YAML text loaded into a libyaml document (internal to src/config).
 * Aliases are shared nodes, not copies, so an alias bomb costs nothing. */
#ifndef UBIBLK_YAML_TREE_H
#define UBIBLK_YAML_TREE_H

#include "config/config.h"

#include <yaml.h>

struct yaml_tree {
	yaml_document_t doc;
	bool loaded;
};

/* Loads exactly one document. Syntax errors are written as libyaml's problem
 * with 1-based "at line L column C". */
int yaml_tree_load(struct yaml_tree *tree, const char *text, size_t len, struct error *err);
void yaml_tree_free(struct yaml_tree *tree);
/* The document's root node; NULL for an empty document. */
yaml_node_t *yaml_tree_root(struct yaml_tree *tree);
yaml_node_t *yaml_tree_node(struct yaml_tree *tree, int id);

#endif
