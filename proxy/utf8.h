/*
 * utf8: validation of byte strings that come from clients (RPC names,
 * metadata) before they are shown as JSON or written to a log line.
 */
#ifndef SIDECAR_UTF8_H
#define SIDECAR_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* The replacement character U+FFFD, UTF-8 encoded (3 bytes). */
#define UTF8_REPLACEMENT "\xEF\xBF\xBD"

/* Length (1-4) of the valid UTF-8 sequence at s (n > 0 bytes left); 0 if it
 * is not one (overlong forms, surrogates and code points above U+10FFFF are
 * invalid). */
size_t utf8_sequence(const unsigned char *s, size_t n);

/* Whether all n bytes of s are well-formed UTF-8. */
bool utf8_valid(const unsigned char *s, size_t n);

#endif
