/*
 * handoff: an upgrade passes client connections to the new process.
 *
 * The documented upgrade starts a new process on the same config file and
 * then sends SIGTERM to the old one. Without help, the old process would
 * close each client connection after its last reply, and a DRPC client
 * that reuses its connection would fail the call it writes next (DRPC has
 * no "go away"). Instead the old process hands each connection to the new
 * one between two calls: the reply is fully written, and nothing of the
 * next call has been acted on. The descriptor travels by SCM_RIGHTS with
 * the state the new process needs to go on (handoff_msg.h); a call the
 * client wrote meanwhile waits in the socket for the new process.
 *
 * Finding each other. Each process derives one abstract unix socket name
 * from its user id and its absolute config path (-c, made absolute, not
 * resolved): "\0drpc-sidecar.handoff.<uid>.<fnv1a-64 of the path>".
 *
 *   old (A)                                   new (B), same -c path
 *   bind(name) ok: A is the head
 *   listen                                    bind(name): EADDRINUSE
 *        <------------------ connect ------   (at start, before its listeners)
 *   SO_PEERCRED: same uid?                    SO_PEERCRED: same uid?
 *        <------------------ HELLO pid,path
 *   same path, no successor yet?
 *        ----- WELCOME pid,n ------------->   B is A's successor
 *        ----- LISTEN + fd (x n) --------->   B listens on A's unix sockets
 *                                               (TCP ports: SO_REUSEPORT)
 *   ... SIGTERM ...
 *   each client between calls:
 *     stop reading, wait for its reply
 *     to be written
 *        ----- CONN + fd (SCM_RIGHTS) ---->   client_adopt() on the listener
 *     close A's copy                            of the same name; pending
 *                                               bytes are processed as read
 *   calls in flight end, then theirs too
 *   A exits: the name is free
 *        ----- EOF ----------------------->   bind(name): B is the head for
 *                                               the next upgrade
 *
 * A unix path cannot be bound twice, so the head passes its listening unix
 * sockets along with WELCOME and both accept from them until it closes its
 * copy; the path is unlinked only by the last process listening on it.
 * The new process waits for that answer at start, at most JOIN_WAIT_MS
 * (2 s), before its listeners bind; connections it is sent meanwhile are
 * adopted once it is started.
 *
 * Only one successor registers at a time; a third process is refused and
 * retries every second, so it registers with the head's successor once
 * the head is gone (A -> B -> C). A successor that goes away is forgotten
 * and the next one may register. Anything that goes wrong (no successor,
 * an error passing the descriptor, a malformed message, a listener the new
 * process does not have) falls back to the behaviour without handoff: the
 * connection is closed after its reply. Unrelated sidecars (other config
 * path, other user, other network namespace) never see each other's name;
 * a hash collision is caught by the path in HELLO.
 *
 * Everything runs on the loop: the sockets are non-blocking, watched with
 * uv_poll, and use sendmsg/recvmsg directly so that a received descriptor
 * goes straight into client_adopt() and the old process can close its
 * copy at once (a descriptor queued for sending is a dup it owns).
 */
#ifndef SIDECAR_HANDOFF_H
#define SIDECAR_HANDOFF_H

#include <stdbool.h>
#include <stdint.h>

struct sidecar;
struct client_conn;

/* Joins the upgrade rendezvous for sc->config_path: becomes the head, or
 * registers as the successor of the running process, receiving its
 * listening unix sockets (this waits, see above). Called at start before
 * the listeners. Failures are logged, never fatal: an upgrade then closes
 * connections after their reply as before. */
void handoff_start(struct sidecar *sc);

/* At start: the listening socket for unix listener name on path that the
 * previous process passed, owned by the caller from here on; or -1. */
int handoff_take_unix_listener(struct sidecar *sc, const char *name, const char *path);

/* Whether another process still listens on this unix path (one we passed
 * the socket to, or the one we took it from): then it is not unlinked. */
bool handoff_unix_path_shared(struct sidecar *sc, const char *path);

/* The process drains: hands every client that is between calls to the
 * successor, if one is registered (the others follow at their call's end,
 * see client_hand_off). */
void handoff_pass_idle_clients(struct sidecar *sc);

/* Whether cl can be handed off now: a successor is registered and what cl
 * has read of its next call fits in a message. */
bool handoff_possible(struct sidecar *sc, const struct client_conn *cl);

/*
 * Passes cl (between calls, nothing left to write) to the successor and
 * closes this process's copy. Returns 0 (cl is closed and must not be
 * touched) or a UV error with cl untouched: the caller falls back.
 */
int handoff_client(struct client_conn *cl);

/* The process stops: gives up the name, finishes sending what is queued
 * to the successor, closes the rest. */
void handoff_stop(struct sidecar *sc);

/* After the loop ended: frees what handoff_start allocated. */
void handoff_free(struct sidecar *sc);

#endif
