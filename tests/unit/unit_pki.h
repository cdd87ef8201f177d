/*
 * unit_pki: a throw-away PKI for the TLS unit tests (test_config_tls.c,
 * test_tls_ctx.c), made with the OpenSSL API in a fresh temporary
 * directory: EC P-256 keys, so the whole set takes milliseconds. The
 * integration tests' equivalent is tests/integration/pki.py.
 *
 *   ca.pem           CA, CN=drpc-test-ca
 *   other_ca.pem     an unrelated CA, CN=other-test-ca
 *   server.pem/.key  CN=server, SANs IP:127.0.0.1 DNS:localhost (ca)
 *   server2.pem/.key the same names, another key (ca)
 *   client.pem/.key  CN=agent-1, SAN DNS:agent-1 (ca)
 *   nocn.pem/.key    no CN, SAN DNS:agent-2 (ca)
 *   expired.pem/.key the server's names, expired yesterday (ca)
 *   other.pem/.key   the server's names, signed by other_ca
 *   chain.pem        server.pem followed by ca.pem
 *   garbage.pem      text that is no PEM at all
 *
 * Shared scaffolding, not a test: the Makefile links the tests/unit sources
 * not named test_* into every unit test binary.
 */
#ifndef SIDECAR_TESTS_UNIT_PKI_H
#define SIDECAR_TESTS_UNIT_PKI_H

#include <stddef.h>

struct unit_pki {
    char dir[64];
};

/* Makes the set; returns 0 or -1 (with a message on stderr). */
int unit_pki_make(struct unit_pki *pki);

/* dir/name into buf (static storage cycled over 8 calls, so a few can be
 * used in one expression). */
const char *unit_pki_path(const struct unit_pki *pki, const char *name);

/* printf into static storage cycled over 4 calls (8 KiB each): config
 * texts that name the PKI's files. */
const char *unit_pki_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Removes the directory and everything in it. */
void unit_pki_remove(struct unit_pki *pki);

#endif
