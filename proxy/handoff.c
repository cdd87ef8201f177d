/*
 * handoff: passing client connections to a newer process (see handoff.h
 * for the protocol and its sketch, handoff_msg.h for the messages).
 *
 * Objects: one struct handoff per process, holding the rendezvous name and,
 * as the head, its listening socket; one struct peer per unix connection to
 * another process (a candidate that has not said HELLO yet, the registered
 * successor, or, in a new process, the head it joined). A peer owns its
 * socket, the bytes and descriptors received and not yet used, and the
 * bytes and descriptors queued for sending; each queued descriptor is a
 * dup that goes with the first byte of its CONN message.
 */
#include "proxy/handoff.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "config/config.h"
#include "proxy/buf.h"
#include "proxy/client.h"
#include "proxy/frame.h"
#include "proxy/handoff_msg.h"
#include "proxy/list.h"
#include "proxy/listener.h"
#include "proxy/log.h"
#include "proxy/sidecar.h"

#define RETRY_MS         1000 /* a refused or failed join tries again */
#define STOP_FLUSH_MS    5000 /* an exiting process waits this long for a slow successor */
#define MAX_CANDIDATES   4
#define MAX_FDS_PER_READ 16
#define READ_CHUNK       (64 * 1024)
#define JOIN_WAIT_MS     2000 /* a start waits this long for the old process's answer */

enum peer_role {
    PEER_CANDIDATE,   /* connected to our name; no HELLO yet */
    PEER_SUCCESSOR,   /* welcomed: our connections go to it */
    PEER_JOINING,     /* we sent HELLO to the head; no answer yet */
    PEER_PREDECESSOR, /* the head welcomed us: its connections come here */
};

struct out_fd {
    size_t at; /* offset in peer.out of the byte it travels with */
    int fd;
};

struct peer {
    struct handoff *ho;
    enum peer_role role;
    int fd;
    uv_poll_t poll;
    int events;
    bool closing;
    bool close_when_flushed;
    uint32_t pid;
    uint64_t passed;          /* connections sent to it */
    uint16_t listen_expected; /* LISTEN messages announced by WELCOME, not yet seen */
    bool sent_listeners;      /* it shares our unix listening sockets */
    struct list_node node;
    struct buf in;
    int *in_fds; /* received, not yet used; in arrival order */
    size_t n_in_fds;
    struct buf out;
    struct out_fd *out_fds;
    size_t n_out_fds;
};

struct handoff {
    struct sidecar *sc;
    struct sockaddr_un addr;
    socklen_t addr_len;
    const char *name; /* printable name, for logs (in addr) */
    int listen_fd;
    uv_poll_t listen_poll;
    bool listening;
    bool stopped;
    uv_timer_t timer; /* join retries; after stop, the flush deadline */
    struct counted_list peers;
    struct peer *succ;
    struct peer *pred;
    bool ready;             /* started: listeners are open, connections can be adopted */
    uv_timer_t ready_timer; /* fires on the first loop iteration */
    struct taken {          /* listening unix sockets received from pred */
        char *name, *path;
        int fd; /* -1 once a listener took it */
    } * taken;
    size_t n_taken;
};

static void try_join(struct handoff *ho);
static void retry_cb(uv_timer_t *t);
static void peer_close(struct peer *p, const char *why);

/* ---- peers ---------------------------------------------------------- */

static void peer_closed_cb(uv_handle_t *h)
{
    struct peer *p = h->data;
    close(p->fd);
    for (size_t i = 0; i < p->n_in_fds; i++)
        close(p->in_fds[i]);
    for (size_t i = 0; i < p->n_out_fds; i++)
        close(p->out_fds[i].fd);
    free(p->in_fds);
    free(p->out_fds);
    buf_free(&p->in);
    buf_free(&p->out);
    free(p);
}

static void peer_close(struct peer *p, const char *why)
{
    if (p->closing)
        return;
    struct handoff *ho = p->ho;
    p->closing = true;
    counted_list_remove(&ho->peers, &p->node);
    if (ho->succ == p) {
        ho->succ = NULL;
        if (ho->sc->state != SIDECAR_RUNNING || p->passed)
            log_info("handoff: successor pid %u gone (%s) after %llu connections", p->pid, why,
                     (unsigned long long)p->passed);
        else
            log_info("handoff: successor pid %u gone (%s)", p->pid, why);
    } else if (p->role == PEER_PREDECESSOR || p->role == PEER_JOINING) {
        log_info("handoff: previous process pid %u gone (%s)", p->pid, why);
    } else {
        log_debug("handoff: peer closed (%s)", why);
    }
    if (p->n_out_fds) {
        ho->sc->stats.handoff_failures += p->n_out_fds;
        log_warn("handoff: %zu connections not passed (%s); they are closed", p->n_out_fds, why);
    }
    uv_poll_stop(&p->poll);
    uv_close((uv_handle_t *)&p->poll, peer_closed_cb);
    if (ho->stopped && ho->peers.n == 0 && !uv_is_closing((uv_handle_t *)&ho->timer))
        uv_close((uv_handle_t *)&ho->timer, NULL); /* the last one sent all it had */
    if (ho->pred == p) {
        ho->pred = NULL;
        /* The old process is gone: take the name for the next upgrade. */
        if (!ho->stopped)
            try_join(ho);
    }
}

static void peer_poll_cb(uv_poll_t *h, int status, int events);

static void peer_watch(struct peer *p)
{
    int ev = UV_READABLE | (p->out.len ? UV_WRITABLE : 0);
    if (ev != p->events) {
        p->events = ev;
        uv_poll_start(&p->poll, ev, peer_poll_cb);
    }
}

/* Sends what is queued; returns false when p was closed. */
static bool peer_flush(struct peer *p)
{
    while (p->out.len) {
        size_t n = p->out.len;
        int fd = -1;
        if (p->n_out_fds) {
            if (p->out_fds[0].at == 0) {
                fd = p->out_fds[0].fd;
                if (p->n_out_fds > 1)
                    n = p->out_fds[1].at;
            } else {
                n = p->out_fds[0].at;
            }
        }
        struct iovec iov = {p->out.data, n};
        struct msghdr mh;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } ctl;
        if (fd >= 0) {
            memset(&ctl, 0, sizeof(ctl));
            mh.msg_control = ctl.buf;
            mh.msg_controllen = sizeof(ctl.buf);
            struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &fd, sizeof(fd));
        }
        ssize_t w = sendmsg(p->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            peer_close(p, strerror(errno));
            return false;
        }
        if (fd >= 0) {
            /* The descriptor went with the first byte: ours can go. */
            close(fd);
            memmove(p->out_fds, p->out_fds + 1, (p->n_out_fds - 1) * sizeof(*p->out_fds));
            p->n_out_fds--;
        }
        buf_consume(&p->out, (size_t)w);
        for (size_t i = 0; i < p->n_out_fds; i++)
            p->out_fds[i].at -= (size_t)w;
    }
    if (p->out.len == 0 && p->close_when_flushed) {
        peer_close(p, "all sent");
        return false;
    }
    peer_watch(p);
    return true;
}

/* Queues m, with fd (or -1) travelling alongside; fd is owned from here
 * on, even on failure. Returns 0 or a UV error. */
static int peer_send(struct peer *p, const struct handoff_msg *m, int fd)
{
    if (fd >= 0) {
        struct out_fd *n = realloc(p->out_fds, (p->n_out_fds + 1) * sizeof(*n));
        if (!n) {
            close(fd);
            return UV_ENOMEM;
        }
        p->out_fds = n;
    }
    size_t at = p->out.len;
    int rc = handoff_msg_encode(&p->out, m);
    if (rc) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    if (fd >= 0)
        p->out_fds[p->n_out_fds++] = (struct out_fd){at, fd};
    return 0;
}

static void send_refuse(struct peer *p, const char *why)
{
    struct handoff_msg m = {.type = HANDOFF_REFUSE, .text = why, .text_len = strlen(why)};
    log_info("handoff: refused a newer process (pid %u): %s", p->pid, why);
    if (peer_send(p, &m, -1) != 0) {
        peer_close(p, "out of memory");
        return;
    }
    p->close_when_flushed = true;
    peer_flush(p);
}

/* A connection from the head: served on the listener of the same name. */
static void adopt(struct peer *p, const struct handoff_msg *m)
{
    struct sidecar *sc = p->ho->sc;
    if (p->n_in_fds == 0) {
        peer_close(p, "a connection message without its descriptor");
        return;
    }
    int fd = p->in_fds[0];
    memmove(p->in_fds, p->in_fds + 1, (p->n_in_fds - 1) * sizeof(int));
    p->n_in_fds--;
    struct listener *l = NULL;
    for (size_t i = 0; i < sc->n_listeners; i++)
        if (strlen(sc->listeners[i]->lc->name) == m->text_len &&
            memcmp(sc->listeners[i]->lc->name, m->text, m->text_len) == 0)
            l = sc->listeners[i];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int type = 0;
    socklen_t tl = sizeof(type);
    const char *bad = NULL;
    if (!l)
        bad = sc->state == SIDECAR_RUNNING ? "no listener of that name" : "shutting down";
    else if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 ||
             getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM ||
             (ss.ss_family == AF_UNIX) != (l->lc->addr.kind == CONFIG_ADDR_UNIX))
        bad = "not a socket of the listener's kind";
    if (bad) {
        sc->stats.handoff_failures++;
        log_warn("handoff: client#%llu of pid %u on listener %.*s closed: %s",
                 (unsigned long long)m->client_id, p->pid, (int)m->text_len, m->text, bad);
        close(fd);
        return;
    }
    log_debug(
        "handoff: adopting client#%llu of pid %u on listener %s (stream %llu, %zu bytes read)",
        (unsigned long long)m->client_id, p->pid, l->lc->name, (unsigned long long)m->last_sid,
        m->pending_len);
    sc->stats.clients_adopted++;
    client_adopt(l, fd, (m->flags & HANDOFF_CONN_PREFIX) != 0, m->last_sid, m->read_sid, m->pending,
                 m->pending_len);
}

static void welcome(struct peer *p, const struct handoff_msg *m)
{
    struct handoff *ho = p->ho;
    p->pid = m->pid;
    const char *path = ho->sc->config_path;
    if (strlen(path) != m->text_len || memcmp(path, m->text, m->text_len) != 0) {
        send_refuse(p, "another config file");
        return;
    }
    if (ho->stopped) {
        send_refuse(p, "this process is exiting");
        return;
    }
    if (ho->succ) {
        char why[96];
        snprintf(why, sizeof(why), "pid %u is the successor already", ho->succ->pid);
        send_refuse(p, why);
        return;
    }
    /* Our listening unix sockets go along: the new process cannot bind
     * their paths while we listen there. */
    struct sidecar *sc = ho->sc;
    struct handoff_msg w = {.type = HANDOFF_WELCOME, .pid = (uint32_t)uv_os_getpid()};
    for (size_t i = 0; i < sc->n_listeners; i++)
        if (sc->listeners[i]->open && sc->listeners[i]->lc->addr.kind == CONFIG_ADDR_UNIX)
            w.n_listen++;
    if (peer_send(p, &w, -1) != 0) {
        peer_close(p, "out of memory");
        return;
    }
    for (size_t i = 0; i < sc->n_listeners; i++) {
        struct listener *l = sc->listeners[i];
        uv_os_fd_t lfd;
        if (!l->open || l->lc->addr.kind != CONFIG_ADDR_UNIX)
            continue;
        int dup_fd = uv_fileno(&l->h.handle, &lfd) == 0 ? fcntl(lfd, F_DUPFD_CLOEXEC, 0) : -1;
        struct handoff_msg lm = {.type = HANDOFF_LISTEN,
                                 .text = l->lc->name,
                                 .text_len = strlen(l->lc->name),
                                 .path = l->lc->addr.path,
                                 .path_len = strlen(l->lc->addr.path)};
        if (dup_fd < 0 || peer_send(p, &lm, dup_fd) != 0) {
            peer_close(p, "cannot pass a listening socket");
            return;
        }
        p->sent_listeners = true;
    }
    p->role = PEER_SUCCESSOR;
    ho->succ = p;
    log_info("handoff: pid %u registered; on SIGTERM connections go to it between calls", p->pid);
    if (!peer_flush(p))
        return;
    if (ho->sc->state == SIDECAR_DRAINING)
        handoff_pass_idle_clients(ho->sc);
}

/* A listening unix socket from the head, for listener_start. */
static void take_listener(struct peer *p, const struct handoff_msg *m)
{
    struct handoff *ho = p->ho;
    int fd = p->in_fds[0];
    memmove(p->in_fds, p->in_fds + 1, (p->n_in_fds - 1) * sizeof(int));
    p->n_in_fds--;
    p->listen_expected--;
    struct taken *t = realloc(ho->taken, (ho->n_taken + 1) * sizeof(*t));
    char *name = strndup(m->text, m->text_len);
    char *path = strndup(m->path, m->path_len);
    if (!t || !name || !path) {
        if (t)
            ho->taken = t;
        free(name);
        free(path);
        close(fd);
        return;
    }
    ho->taken = t;
    t[ho->n_taken++] = (struct taken){name, path, fd};
}

enum msg_outcome {
    MSG_CLOSED = -1, /* p was closed */
    MSG_LATER = 0,   /* not before this process is started: keep it */
    MSG_DONE = 1,
};

static enum msg_outcome on_message(struct peer *p, const struct handoff_msg *m)
{
    struct handoff *ho = p->ho;
    switch (p->role) {
    case PEER_CANDIDATE:
        if (m->type != HANDOFF_HELLO)
            break;
        welcome(p, m);
        return p->closing ? MSG_CLOSED : MSG_DONE;
    case PEER_JOINING:
        if (m->type == HANDOFF_WELCOME) {
            p->role = PEER_PREDECESSOR;
            p->pid = m->pid;
            p->listen_expected = m->n_listen;
            log_info("handoff: registered with pid %u; its connections come here when it drains",
                     p->pid);
            return MSG_DONE;
        }
        if (m->type != HANDOFF_REFUSE)
            break;
        log_info("handoff: pid %u refused us (%.*s); trying again in %d ms", p->pid,
                 (int)m->text_len, m->text ? m->text : "", RETRY_MS);
        ho->pred = NULL; /* no immediate rejoin from peer_close */
        peer_close(p, "refused");
        uv_timer_start(&ho->timer, retry_cb, RETRY_MS, 0);
        return MSG_CLOSED;
    case PEER_PREDECESSOR:
        if (m->type == HANDOFF_LISTEN && p->listen_expected && !ho->ready && p->n_in_fds) {
            take_listener(p, m);
            return MSG_DONE;
        }
        if (m->type != HANDOFF_CONN)
            break;
        if (!ho->ready)
            return MSG_LATER;
        adopt(p, m);
        return p->closing ? MSG_CLOSED : MSG_DONE;
    case PEER_SUCCESSOR:
        break;
    }
    char why[64];
    snprintf(why, sizeof(why), "unexpected %s message", handoff_msg_type_name(m->type));
    peer_close(p, why);
    return MSG_CLOSED;
}

/* Parses and acts on every complete message; false when p was closed. */
static bool process_input(struct peer *p)
{
    size_t off = 0;
    for (;;) {
        struct handoff_msg m;
        size_t used = 0;
        int rc =
            handoff_msg_parse(p->in.data ? p->in.data + off : NULL, p->in.len - off, &m, &used);
        if (rc == HANDOFF_MSG_NEED_MORE)
            break;
        if (rc < 0) {
            peer_close(p, "malformed message");
            return false;
        }
        enum msg_outcome o = on_message(p, &m);
        if (o == MSG_CLOSED)
            return false;
        if (o == MSG_LATER)
            break;
        off += used;
    }
    buf_consume(&p->in, off);
    /* Only a head we joined may send descriptors, one per CONN. */
    if (p->n_in_fds && p->role != PEER_PREDECESSOR) {
        peer_close(p, "unexpected descriptors");
        return false;
    }
    return true;
}

static bool keep_fds(struct peer *p, struct msghdr *mh)
{
    bool ok = true;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *fds = (int *)CMSG_DATA(c);
        int *grown = ok ? realloc(p->in_fds, (p->n_in_fds + n) * sizeof(int)) : NULL;
        if (!grown) {
            ok = false;
            for (size_t i = 0; i < n; i++) {
                int fd;
                memcpy(&fd, fds + i, sizeof(fd));
                close(fd);
            }
            continue;
        }
        p->in_fds = grown;
        for (size_t i = 0; i < n; i++)
            memcpy(&p->in_fds[p->n_in_fds++], fds + i, sizeof(int));
    }
    return ok;
}

static void peer_read(struct peer *p)
{
    for (;;) {
        if (buf_reserve(&p->in, READ_CHUNK) != 0) {
            peer_close(p, "out of memory");
            return;
        }
        struct iovec iov = {p->in.data + p->in.len, p->in.cap - p->in.len};
        union {
            char buf[CMSG_SPACE(sizeof(int) * MAX_FDS_PER_READ)];
            struct cmsghdr align;
        } ctl;
        struct msghdr mh;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof(ctl.buf);
        ssize_t r = recvmsg(p->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                peer_close(p, strerror(errno));
            return;
        }
        if (!keep_fds(p, &mh)) {
            peer_close(p, "out of memory");
            return;
        }
        if (mh.msg_flags & MSG_CTRUNC) {
            peer_close(p, "descriptors cut off");
            return;
        }
        if (r == 0) {
            peer_close(p, "closed");
            return;
        }
        p->in.len += (size_t)r;
        if (!process_input(p))
            return;
    }
}

static void peer_poll_cb(uv_poll_t *h, int status, int events)
{
    struct peer *p = h->data;
    if (p->closing)
        return;
    if (status < 0) {
        peer_close(p, uv_strerror(status));
        return;
    }
    if ((events & UV_WRITABLE) && !peer_flush(p))
        return;
    if (events & (UV_READABLE | UV_DISCONNECT))
        peer_read(p);
}

static struct peer *peer_new(struct handoff *ho, int fd, enum peer_role role)
{
    struct peer *p = calloc(1, sizeof(*p));
    if (!p || uv_poll_init(ho->sc->lc->loop, &p->poll, fd) != 0) {
        free(p);
        close(fd);
        return NULL;
    }
    p->ho = ho;
    p->fd = fd;
    p->role = role;
    p->poll.data = p;
    counted_list_push_back(&ho->peers, &p->node);
    peer_watch(p);
    return p;
}

/* ---- the rendezvous ----------------------------------------------------- */

static bool same_user(int fd)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 && cr.uid == getuid();
}

static void listen_poll_cb(uv_poll_t *h, int status, int events)
{
    struct handoff *ho = h->data;
    (void)events;
    if (status < 0 || ho->stopped)
        return;
    for (;;) {
        int fd = accept4(ho->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (!same_user(fd) || ho->peers.n >= MAX_CANDIDATES + 2) {
            close(fd);
            continue;
        }
        peer_new(ho, fd, PEER_CANDIDATE);
    }
}

static void listen_closed_cb(uv_handle_t *h)
{
    struct handoff *ho = h->data;
    close(ho->listen_fd);
    ho->listen_fd = -1;
}

/* Becomes the head (binds the name) or joins the process that holds it. */
static void try_join(struct handoff *ho)
{
    if (ho->stopped || ho->listening || ho->pred)
        return;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_warn("handoff: socket: %s; upgrades will close connections", strerror(errno));
        return;
    }
    if (bind(fd, (struct sockaddr *)&ho->addr, ho->addr_len) == 0) {
        if (listen(fd, MAX_CANDIDATES) != 0 ||
            uv_poll_init(ho->sc->lc->loop, &ho->listen_poll, fd)) {
            log_warn("handoff: listen on %s: %s", ho->name, strerror(errno));
            close(fd);
            return;
        }
        ho->listen_fd = fd;
        ho->listening = true;
        ho->listen_poll.data = ho;
        uv_poll_start(&ho->listen_poll, UV_READABLE, listen_poll_cb);
        log_info("handoff: %s is ours; a newer process on this config takes our connections",
                 ho->name);
        return;
    }
    if (errno != EADDRINUSE) {
        log_warn("handoff: bind %s: %s; upgrades will close connections", ho->name,
                 strerror(errno));
        close(fd);
        return;
    }
    close(fd);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (connect(fd, (struct sockaddr *)&ho->addr, ho->addr_len) != 0 || !same_user(fd)) {
        /* The holder is starting, exiting, or busy: try again later. */
        log_debug("handoff: cannot join %s: %s", ho->name, strerror(errno));
        close(fd);
        uv_timer_start(&ho->timer, retry_cb, RETRY_MS, 0);
        return;
    }
    struct peer *p = peer_new(ho, fd, PEER_JOINING);
    if (!p)
        return;
    ho->pred = p;
    const char *path = ho->sc->config_path;
    struct handoff_msg m = {.type = HANDOFF_HELLO,
                            .pid = (uint32_t)uv_os_getpid(),
                            .text = path,
                            .text_len = strlen(path)};
    if (peer_send(p, &m, -1) != 0) {
        ho->pred = NULL;
        peer_close(p, "cannot send hello");
        return;
    }
    peer_flush(p);
}

static void retry_cb(uv_timer_t *t)
{
    try_join(t->data);
}

/*
 * At start, before any listener binds: waits (blocking, the loop does not
 * run yet) for the head's WELCOME and the listening unix sockets it
 * announces, at most JOIN_WAIT_MS. Connections it sends meanwhile are
 * kept until the process is started (MSG_LATER).
 */
static void join_wait(struct handoff *ho, struct peer *p)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)JOIN_WAIT_MS * 1000000;
    while (ho->pred == p && !p->closing && (p->role == PEER_JOINING || p->listen_expected)) {
        uint64_t now = uv_hrtime();
        if (now >= deadline) {
            log_warn("handoff: no answer from the process on %s in %d ms; starting without it",
                     ho->name, JOIN_WAIT_MS);
            return;
        }
        struct pollfd pfd = {.fd = p->fd, .events = POLLIN | (p->out.len ? POLLOUT : 0)};
        int n = poll(&pfd, 1, (int)((deadline - now) / 1000000) + 1);
        if (n < 0 && errno != EINTR)
            return;
        if (n <= 0)
            continue;
        if ((pfd.revents & POLLOUT) && !peer_flush(p))
            return;
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
            peer_read(p);
    }
}

static void close_taken(struct handoff *ho)
{
    for (size_t i = 0; i < ho->n_taken; i++)
        if (ho->taken[i].fd >= 0) {
            close(ho->taken[i].fd); /* a listener this process no longer has */
            ho->taken[i].fd = -1;
        }
}

/* The process is started: connections kept so far can be adopted. */
static void ready_cb(uv_timer_t *t)
{
    struct handoff *ho = t->data;
    uv_close((uv_handle_t *)&ho->ready_timer, NULL);
    ho->ready = true;
    close_taken(ho);
    if (ho->pred && !ho->pred->closing)
        process_input(ho->pred);
}

void handoff_start(struct sidecar *sc)
{
    const char *path = sc->config_path;
    if (!path || strlen(path) > HANDOFF_MAX_PATH)
        return;
    struct handoff *ho = calloc(1, sizeof(*ho));
    if (!ho)
        return;
    ho->sc = sc;
    ho->listen_fd = -1;
    counted_list_init(&ho->peers);
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
    for (const char *c = path; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ull;
    ho->addr.sun_family = AF_UNIX;
    int n = snprintf(ho->addr.sun_path + 1, sizeof(ho->addr.sun_path) - 1,
                     "drpc-sidecar.handoff.%u.%016llx", (unsigned)getuid(), (unsigned long long)h);
    ho->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    ho->name = ho->addr.sun_path + 1;
    uv_timer_init(sc->lc->loop, &ho->timer);
    ho->timer.data = ho;
    uv_timer_init(sc->lc->loop, &ho->ready_timer);
    ho->ready_timer.data = ho;
    uv_timer_start(&ho->ready_timer, ready_cb, 0, 0);
    sc->handoff = ho;
    try_join(ho);
    if (ho->pred)
        join_wait(ho, ho->pred);
}

int handoff_take_unix_listener(struct sidecar *sc, const char *name, const char *path)
{
    struct handoff *ho = sc->handoff;
    for (size_t i = 0; ho && !ho->ready && i < ho->n_taken; i++) {
        struct taken *t = &ho->taken[i];
        if (t->fd >= 0 && strcmp(t->name, name) == 0 && strcmp(t->path, path) == 0) {
            int fd = t->fd;
            t->fd = -1;
            log_info("handoff: listener %s: sharing %s with pid %u", name, path,
                     ho->pred ? ho->pred->pid : 0);
            return fd;
        }
    }
    return -1;
}

bool handoff_unix_path_shared(struct sidecar *sc, const char *path)
{
    struct handoff *ho = sc->handoff;
    if (!ho)
        return false;
    if (ho->succ && ho->succ->sent_listeners)
        return true; /* the successor listens on it now */
    for (size_t i = 0; ho->pred && i < ho->n_taken; i++)
        if (ho->taken[i].fd < 0 && strcmp(ho->taken[i].path, path) == 0)
            return true; /* the process we took it from still listens on it */
    return false;
}

/* ---- passing connections ------------------------------------------------ */

/* The frame cl's wire is passing on in pieces is the Invoke or
 * InvokeMetadata frame being assembled for the next stream. */
static bool cut_is_assembled(const struct client_conn *cl)
{
    const struct frame *f = &cl->wire.cut;
    if (f->control || f->stream_id <= cl->last_sid || f->stream_id != cl->read_sid)
        return false;
    if (f->kind == FRAME_KIND_INVOKE)
        return f->stream_id == cl->invoke_sid && f->message_id == cl->invoke_msg;
    return f->kind == FRAME_KIND_INVOKE_METADATA && f->stream_id == cl->meta_sid &&
           f->message_id == cl->meta_msg;
}

/* Appends a frame header and len bytes of data. */
static int put_frame(struct buf *out, uint8_t kind, bool done, uint64_t sid, uint64_t msg,
                     size_t frame_len, const uint8_t *data, size_t len)
{
    if (buf_reserve(out, FRAME_HEADER_MAX + len) != 0)
        return UV_ENOMEM;
    out->len += frame_header_encode(out->data + out->len, kind, done, false, sid, msg, frame_len);
    return len ? buf_append(out, data, len) : 0;
}

/* What cl has read and not acted on, as bytes the new process can read
 * again: the Invoke and InvokeMetadata packets being assembled for the
 * next stream (as one frame each; a frame still arriving as its header
 * and the data so far, the rest follows from the socket) and the unparsed
 * rest. */
static int pending_bytes(const struct client_conn *cl, struct buf *out)
{
    const struct {
        uint64_t sid, msg;
        const struct buf *b;
        uint8_t kind;
        bool done;
    } parts[] = {
        {cl->meta_sid, cl->meta_msg, &cl->meta, FRAME_KIND_INVOKE_METADATA, cl->meta_done},
        {cl->invoke_sid, cl->invoke_msg, &cl->invoke, FRAME_KIND_INVOKE, false},
    };
    const struct frame *cut = cl->wire.cutting && cut_is_assembled(cl) ? &cl->wire.cut : NULL;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        /* Only parts of the stream read last; older ones are dead. */
        if (!parts[i].sid || parts[i].sid <= cl->last_sid || parts[i].sid != cl->read_sid)
            continue;
        const uint8_t *d = parts[i].b->data;
        size_t n = parts[i].b->len;
        int rc;
        if (cut && cut->kind == parts[i].kind) {
            size_t whole = n - cl->wire.cut_off; /* of the frames before the cut one */
            rc = whole ? put_frame(out, parts[i].kind, false, parts[i].sid, parts[i].msg, whole, d,
                                   whole)
                       : 0;
            if (rc == 0)
                rc = put_frame(out, parts[i].kind, cut->done, parts[i].sid, parts[i].msg,
                               cut->frame_len, d + whole, n - whole);
        } else {
            rc = put_frame(out, parts[i].kind, parts[i].done, parts[i].sid, parts[i].msg, n, d, n);
        }
        if (rc)
            return rc;
    }
    return cl->wire.in.len ? buf_append(out, cl->wire.in.data, cl->wire.in.len) : 0;
}

bool handoff_possible(struct sidecar *sc, const struct client_conn *cl)
{
    struct handoff *ho = sc->handoff;
    if (!ho || !ho->succ || ho->succ->close_when_flushed)
        return false;
    /* Mid-frame (its data passed on piece by piece, see wire.h) only an
     * Invoke or InvokeMetadata frame can be rebuilt for the successor:
     * otherwise wait for the frame's end. */
    if (cl->wire.cutting && !cut_is_assembled(cl))
        return false;
    size_t n = cl->wire.in.len + cl->meta.len + cl->invoke.len + 2 * FRAME_HEADER_MAX;
    return n <= HANDOFF_MAX_PENDING;
}

int handoff_client(struct client_conn *cl)
{
    struct sidecar *sc = cl->wire.lc->sc;
    if (!handoff_possible(sc, cl))
        return UV_ENOTCONN;
    struct peer *p = sc->handoff->succ;
    if (wire_queued(&cl->wire) || cl->call)
        return UV_EBUSY;
    uv_os_fd_t fd;
    int rc = uv_fileno((uv_handle_t *)&cl->wire.h.handle, &fd);
    if (rc)
        return rc;
    struct buf pending = {0};
    rc = pending_bytes(cl, &pending);
    int dup_fd = rc ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (!rc && dup_fd < 0)
        rc = uv_translate_sys_error(errno);
    if (!rc) {
        const char *name = cl->listener->lc->name;
        struct handoff_msg m = {
            .type = HANDOFF_CONN,
            .flags = cl->state == CLIENT_PREFIX ? HANDOFF_CONN_PREFIX : 0,
            .text = name,
            .text_len = strlen(name),
            .last_sid = cl->last_sid,
            .read_sid = cl->read_sid,
            .client_id = cl->id,
            .pending = pending.data,
            .pending_len = pending.len,
        };
        rc = peer_send(p, &m, dup_fd);
    }
    buf_free(&pending);
    if (rc) {
        sc->stats.handoff_failures++;
        log_warn("client#%llu %s: cannot hand off: %s", (unsigned long long)cl->id, cl->peer,
                 uv_strerror(rc));
        return rc;
    }
    p->passed++;
    sc->stats.clients_handed_off++;
    char why[48];
    snprintf(why, sizeof(why), "handed off to pid %u", p->pid);
    /* The dup (then the message in flight) keeps the socket open: this
     * close sends nothing to the client. */
    client_close(cl, why);
    peer_flush(p);
    return 0;
}

static void pass_idle(struct sidecar *sc)
{
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &sc->lc->clients)
    {
        struct client_conn *cl = list_entry(n, struct client_conn, sc_node);
        client_hand_off(cl);
    }
}

static void pass_again_cb(uv_timer_t *t)
{
    struct handoff *ho = t->data;
    if (ho->succ && !ho->stopped)
        pass_idle(ho->sc);
}

void handoff_pass_idle_clients(struct sidecar *sc)
{
    struct handoff *ho = sc->handoff;
    if (!ho || !ho->succ || ho->stopped)
        return;
    pass_idle(sc);
    /* Once more on the next loop iteration, for the connections the
     * listeners take from their backlog as they close (listener_stop). */
    uv_timer_start(&ho->timer, pass_again_cb, 0, 0);
}

/* ---- stopping ------------------------------------------------------------ */

static void stop_deadline_cb(uv_timer_t *t)
{
    struct handoff *ho = t->data;
    while (ho->peers.n)
        peer_close(list_entry(counted_list_first(&ho->peers), struct peer, node), "exiting");
}

void handoff_stop(struct sidecar *sc)
{
    struct handoff *ho = sc->handoff;
    if (!ho || ho->stopped)
        return;
    ho->stopped = true;
    uv_timer_stop(&ho->timer);
    if (!uv_is_closing((uv_handle_t *)&ho->ready_timer))
        uv_close((uv_handle_t *)&ho->ready_timer, NULL);
    close_taken(ho);
    if (ho->listening) {
        ho->listening = false;
        uv_poll_stop(&ho->listen_poll);
        uv_close((uv_handle_t *)&ho->listen_poll, listen_closed_cb);
    }
    struct list_node *n, *tmp;
    list_for_each_safe(n, tmp, &ho->peers.head)
    {
        struct peer *p = list_entry(n, struct peer, node);
        if (p->out.len) {
            p->close_when_flushed = true;
        } else {
            if (p == ho->pred)
                ho->pred = NULL;
            peer_close(p, "exiting");
        }
    }
    if (ho->peers.n == 0) {
        if (!uv_is_closing((uv_handle_t *)&ho->timer))
            uv_close((uv_handle_t *)&ho->timer, NULL);
    } else {
        uv_timer_start(&ho->timer, stop_deadline_cb, STOP_FLUSH_MS, 0);
    }
}

void handoff_free(struct sidecar *sc)
{
    struct handoff *ho = sc->handoff;
    if (!ho)
        return;
    for (size_t i = 0; i < ho->n_taken; i++) {
        free(ho->taken[i].name);
        free(ho->taken[i].path);
    }
    free(ho->taken);
    free(sc->handoff);
    sc->handoff = NULL;
}
