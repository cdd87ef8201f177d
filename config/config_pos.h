/*
 * config_pos: where a value of a JSON text starts (line and column), found
 * by its JSON path ("pools[1].max_conns"). jansson keeps no positions for
 * values, so a validation error looks its value up here, once, by scanning
 * the raw text again. Nothing is indexed ahead: a valid config costs no scan.
 *
 * Paths are built as config.c builds them: object members as "parent.key"
 * (the key as jansson decodes it, escapes resolved, "" parent gives "key"),
 * array elements as "parent[i]", the whole document as "". Both sides cut
 * paths at CONFIG_POS_PATH_MAX - 1 bytes the same way, so long paths still
 * compare equal. Columns count characters (UTF-8 code points), as jansson
 * does for syntax errors, so both kinds of error agree with an editor.
 *
 * The scanner only reads text jansson has accepted; on anything else it
 * stops early but never reads past len.
 */
#ifndef SIDECAR_CONFIG_POS_H
#define SIDECAR_CONFIG_POS_H

#include <stdbool.h>
#include <stddef.h>

/* Longest path, with its NUL; the size of config_error.path. */
#define CONFIG_POS_PATH_MAX 256

/*
 * Finds path in text. key = false: the position of its value's first
 * character; key = true: of the key that names it (for "unknown key"; an
 * array element has no key, so its value is used). When path is absent,
 * gives the position of its nearest ancestor that is present.
 * Returns 0 when path itself was found, 1 when only an ancestor was, and
 * -1 when nothing was (text is not JSON); *line and *column are 1-based.
 */
int config_pos_find(const char *text, size_t len, const char *path, bool key, int *line,
                    int *column);

/* Appends s to the path in buf (strlen *n), cutting at CONFIG_POS_PATH_MAX - 1. */
void config_pos_append(char *buf, size_t *n, const char *s, size_t len);

#endif
