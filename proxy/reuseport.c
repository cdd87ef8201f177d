/* reuseport: SO_REUSEPORT groups and their steering (see reuseport.h). */
#include "proxy/reuseport.h"

#include <errno.h>
#include <linux/filter.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy/log.h"

int reuseport_enable(uv_tcp_t *tcp)
{
    uv_os_fd_t fd;
    int one = 1;
    int rc = uv_fileno((uv_handle_t *)tcp, &fd);
    if (rc)
        return rc;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        return uv_translate_sys_error(errno);
    return 0;
}

void reuseport_steer_here(uv_tcp_t *tcp, const char *what)
{
    struct sock_filter pick_second = BPF_STMT(BPF_RET | BPF_K, 1);
    struct sock_fprog prog;
    memset(&prog, 0, sizeof(prog)); /* the padding after len goes to the kernel too */
    prog.len = 1;
    prog.filter = &pick_second;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)tcp, &fd) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) != 0)
        log_warn("%s: cannot steer new connections to this process: %s", what, strerror(errno));
}
