/*
 * config_tls: the "tls" objects of pools and listeners. Part of
 * config_load(); see config.c and config/README.md, "TLS".
 *
 * Two forms:
 *   client (dialled pools)   {ca_file, cert_file, key_file, server_name,
 *                             verify, min_version}, or true for all defaults
 *   server (listeners and    {cert_file, key_file, client_ca_file,
 *           reverse pools)    min_version}
 * false (or no key) is off. Every file is read here, at load (off the
 * event loop: reload runs the load in the thread pool), parsed as PEM and
 * checked: a private key must match its certificate, an own certificate
 * must not have expired, a CA file must hold at least one certificate. The
 * bytes are kept in the snapshot (struct config_tls_file), so building
 * contexts from it (proxy/tls_ctx.h) needs no file system.
 */
#ifndef SIDECAR_CONFIG_TLS_H
#define SIDECAR_CONFIG_TLS_H

#include <jansson.h>

#include "config/config.h"
#include "config/config_read.h"

/* Largest file a tls key may name; a CA bundle is a few hundred KiB. */
#define CONFIG_TLS_FILE_MAX (4u << 20)

/* Reads obj["tls"] (obj at path) in the client form into out. Returns 0,
 * UV_EINVAL (rd->err filled in) or UV_ENOMEM; out is freed by
 * config_tls_client_free either way. */
int config_tls_parse_client(struct config_reader *rd, const json_t *obj, const char *path,
                            struct config_tls_client *out);

/* Reads obj["tls"] (obj at path) in the server form into out. */
int config_tls_parse_server(struct config_reader *rd, const json_t *obj, const char *path,
                            struct config_tls_server *out);

/* After the pools: reads the system CA store into cfg->system_ca when a
 * dialled pool verifies without a ca_file. */
int config_tls_read_system_store(struct config_reader *rd, struct config *cfg);

/* Frees OpenSSL's per-thread state (its error queue) of the calling
 * thread. A reload loads the config on a libuv worker thread, which lives
 * until exit; without this its OpenSSL state would too. */
void config_tls_thread_done(void);

void config_tls_client_free(struct config_tls_client *t);
void config_tls_server_free(struct config_tls_server *t);
void config_tls_file_free(struct config_tls_file *f);

/* The effective tls object as in the file: paths, never file contents.
 * NULL when out of memory. */
json_t *config_tls_client_json(const struct config_tls_client *t);
json_t *config_tls_server_json(const struct config_tls_server *t);

#endif
