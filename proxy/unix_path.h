/*
 * unix_path: claiming a filesystem path for a listening unix socket, shared
 * by client listeners and the admin server.
 */
#ifndef SIDECAR_UNIX_PATH_H
#define SIDECAR_UNIX_PATH_H

#include <stddef.h>
#include <uv.h>

/* Makes path free to bind: a stale socket file (nothing accepts on it, its
 * process is gone) is removed; anything else there is an error. Startup
 * and reload only: it makes one non-blocking connect to the path. Returns
 * 0 or a UV error with "PATH exists and is not a socket" or "another
 * process is listening on PATH" in err. */
int unix_path_claim(const char *path, char *err, size_t err_size);

/* uv_pipe_bind, except that a missing directory is UV_ENOENT (libuv says
 * UV_EACCES, which sends an operator looking at permissions). */
int unix_path_bind(uv_pipe_t *pipe, const char *path);

#endif
