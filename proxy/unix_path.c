/* unix_path: claiming a path for a listening unix socket (see unix_path.h). */
#include "proxy/unix_path.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

/* Whether a process listens on path. Non-blocking: a listener whose backlog
 * is full (stuck, or just busy) answers EAGAIN at once, where a blocking
 * connect would wait for it, and it is alive all the same. Only "refused"
 * (nobody listens) or a missing file make the path stale. */
static bool something_accepts_on(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return false;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    bool live = rc == 0 || errno == EAGAIN || errno == EINPROGRESS;
    close(fd);
    return live;
}

int unix_path_claim(const char *path, char *err, size_t err_size)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, err_size, "%s exists and is not a socket", path);
        return UV_EEXIST;
    }
    if (something_accepts_on(path)) {
        snprintf(err, err_size, "another process is listening on %s", path);
        return UV_EADDRINUSE;
    }
    unlink(path);
    return 0;
}

int unix_path_bind(uv_pipe_t *pipe, const char *path)
{
    int rc = uv_pipe_bind(pipe, path);
    if (rc != UV_EACCES)
        return rc;
    /* libuv reports a missing directory as "permission denied": say which. */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return rc;
    if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    struct stat st;
    if (stat(dir, &st) != 0 && errno == ENOENT)
        return UV_ENOENT;
    return rc;
}
