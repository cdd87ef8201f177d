/*
 * drpc-sidecar: command line, config load, and the event loop.
 *
 * The config is read and fully validated before anything listens; a bad
 * file exits with status 2 and a "file:line:col: path: reason" message.
 *
 * Two parts run beside each other on the loop: the data plane (sidecar.h,
 * with its loop context) and the admin server (admin/admin.h), which asks
 * the data plane through proxy/inspect.h. This file starts both, and stops
 * the admin server once the data plane has stopped (run_loop returns).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin/admin.h"
#include "config/config.h"
#include "proxy/fdlimit.h"
#include "proxy/log.h"
#include "proxy/run.h"
#include "proxy/sidecar.h"

#ifndef SIDECAR_VERSION
#define SIDECAR_VERSION "dev"
#endif

static void usage(FILE *out)
{
    fprintf(out,
            "usage: drpc-sidecar -c FILE [-v] [--check-config]\n"
            "\n"
            "Accepts single-stream DRPC connections and runs each RPC over a pooled\n"
            "upstream connection, as configured in FILE (JSON).\n"
            "\n"
            "  -c, --config FILE   configuration file (required)\n"
            "      --check-config  validate FILE, print the result and exit (0 ok, 2 invalid)\n"
            "  -v, --verbose       log at debug level (overrides log_level)\n"
            "  -h, --help          this help\n"
            "  -V, --version       print the version\n");
}

static char *absolute_path(const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    char cwd[4096];
    if (!getcwd(cwd, sizeof(cwd)))
        return NULL;
    size_t n = strlen(cwd) + 1 + strlen(path) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s/%s", cwd, path);
    return out;
}

/* --check-config says what start would log as a warning. */
static void check_warning(const char *text, void *arg)
{
    (void)arg;
    fprintf(stderr, "drpc-sidecar: warning: %s\n", text);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'k'},
        {"verbose", no_argument, NULL, 'v'},      {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    bool check_only = false, verbose = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:vhV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'k':
            check_only = true;
            break;
        case 'v':
            verbose = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("drpc-sidecar %s\n", SIDECAR_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!path || optind != argc) {
        usage(stderr);
        return 2;
    }

    struct config *cfg = NULL;
    struct config_error cerr;
    memset(&cerr, 0, sizeof(cerr));
    if (config_load(path, &cfg, &cerr) != 0) {
        char msg[1024];
        config_error_format(&cerr, msg, sizeof(msg));
        fprintf(stderr, "drpc-sidecar: invalid config: %s\n", msg);
        return 2;
    }
    if (check_only) {
        config_tls_warnings(cfg, check_warning, NULL);
        printf("%s: ok (%zu listeners, %zu pools, %zu routes)\n", path, cfg->n_listeners,
               cfg->n_pools, cfg->n_routes);
        config_unref(cfg);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    struct sidecar *sc = calloc(1, sizeof(*sc));
    if (!sc) {
        config_unref(cfg);
        return 1;
    }
    sc->verbose = verbose;
    int fd_rc = fdlimit_raise(&sc->fds);
    if (verbose)
        cfg->log_level = CONFIG_LOG_DEBUG;
    /* Absolute but not resolved: a reload must follow a symlink that was
     * swapped since the start (a Kubernetes ConfigMap's ..data). */
    sc->config_path = absolute_path(path);
    char err[512] = "";
    struct admin *admin = NULL;
    int rc = sidecar_start(sc, loop, cfg, err, sizeof(err));
    if (rc == 0 && sc->cfg->admin.enabled)
        rc = admin_start(sc, loop, &admin, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "drpc-sidecar: cannot start: %s\n", err[0] ? err : uv_strerror(rc));
        if (admin)
            admin_stop(admin);
        sidecar_abort_start(sc);
        admin_free(admin);
        sidecar_free(sc);
        free(sc->config_path);
        free(sc);
        uv_loop_close(loop);
        return 1;
    }
    admin_steer_here(admin);
    sidecar_ready(sc);
    log_info("drpc-sidecar %s started (pid %d)", SIDECAR_VERSION, (int)uv_os_getpid());
    config_tls_warnings(sc->cfg, log_warn_text, NULL);
    if (fd_rc != 0)
        log_warn("cannot raise the file descriptor limit from %llu to %llu: %s",
                 (unsigned long long)sc->fds.soft_at_start, (unsigned long long)sc->fds.hard,
                 uv_strerror(fd_rc));
    run_loop(sc->lc);
    /* The data plane has stopped: the admin server goes too, then the
     * loop runs until the last handle is closed. */
    if (admin)
        admin_stop(admin);
    uv_run(loop, UV_RUN_DEFAULT);
    int code = sc->exit_code;
    admin_free(admin);
    sidecar_free(sc);
    free(sc->config_path);
    free(sc);
    if (uv_loop_close(loop) != 0) {
        log_error("event loop closed with handles still open");
        code = code ? code : 1;
    }
    log_info("drpc-sidecar stopped");
    return code;
}
