/*
 * handoff_msg: the messages two drpc-sidecar processes exchange during an
 * upgrade (see handoff.h for the protocol). Pure encoding and parsing, no
 * I/O, so it can be fuzzed and unit-tested alone.
 *
 * Every message is a 12-byte header and a body:
 *
 *   0        4     5      6        8              12
 *   +--------+-----+------+--------+--------------+----------------+
 *   | "DSHO" | ver | type | 0  0   | body length  | body ...       |
 *   +--------+-----+------+--------+--------------+----------------+
 *                                    u32, big-endian
 *
 * Bodies (integers big-endian, strings length-prefixed, no NUL):
 *   HELLO   successor -> old:  u32 pid, u16 n, config path[n]
 *   WELCOME old -> successor:  u32 pid, u16 number of LISTEN messages
 *           that follow at once
 *   REFUSE  old -> successor:  u16 n, reason[n]
 *   CONN    old -> successor:  u8 flags (bit 0: the DRPC!!!1 prefix may
 *           still come), u8 n, listener name[n], u64 last_sid,
 *           u64 read_sid, u64 client id in the old process,
 *           u32 n, bytes already read and not yet acted on[n].
 *           Exactly one file descriptor (the connection) travels with
 *           the first byte of a CONN message (SCM_RIGHTS).
 *   LISTEN  old -> successor:  u8 n, listener name[n], u16 n, path[n]:
 *           a listening unix socket, whose descriptor travels with the
 *           first byte (a unix path cannot be bound twice).
 * The body length must match the fields exactly; anything else is
 * malformed, and a malformed message ends the exchange.
 */
#ifndef SIDECAR_HANDOFF_MSG_H
#define SIDECAR_HANDOFF_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/buf.h"

#define HANDOFF_MSG_VERSION   1
#define HANDOFF_MSG_HEADER    12
#define HANDOFF_MAX_PATH      4096
#define HANDOFF_MAX_REASON    256
#define HANDOFF_MAX_PENDING   (8u << 20) /* bytes of a call passed along */
#define HANDOFF_MSG_MAX_BODY  (HANDOFF_MAX_PENDING + 512)
#define HANDOFF_CONN_PREFIX   0x01u /* CONN flags: prefix not seen yet */
#define HANDOFF_MSG_NEED_MORE 1

enum handoff_msg_type {
    HANDOFF_HELLO = 1,
    HANDOFF_WELCOME = 2,
    HANDOFF_REFUSE = 3,
    HANDOFF_CONN = 4,
    HANDOFF_LISTEN = 5,
};

/* A parsed message. Strings and bytes point into the parsed input (not
 * NUL-terminated); they live as long as that input. */
struct handoff_msg {
    enum handoff_msg_type type;
    uint32_t pid;     /* HELLO, WELCOME */
    const char *text; /* HELLO: config path; REFUSE: reason; CONN, LISTEN: listener */
    size_t text_len;
    const char *path; /* LISTEN: the socket's path */
    size_t path_len;
    uint16_t n_listen;      /* WELCOME: LISTEN messages that follow */
    uint8_t flags;          /* CONN */
    uint64_t last_sid;      /* CONN */
    uint64_t read_sid;      /* CONN */
    uint64_t client_id;     /* CONN */
    const uint8_t *pending; /* CONN */
    size_t pending_len;
};

/*
 * Parses the message at the start of p[0..len). Returns 0 with *used set
 * to its size, HANDOFF_MSG_NEED_MORE when p holds only part of a valid
 * message so far, or UV_EPROTO when it is malformed (bad magic, version,
 * type, reserved bits, size, or fields that do not fill the body exactly).
 */
int handoff_msg_parse(const uint8_t *p, size_t len, struct handoff_msg *m, size_t *used);

/* Appends m encoded to out. 0, UV_ENOMEM, or UV_EINVAL when a field is
 * over its limit (nothing appended then). */
__attribute__((warn_unused_result)) int handoff_msg_encode(struct buf *out,
                                                           const struct handoff_msg *m);

const char *handoff_msg_type_name(enum handoff_msg_type t);

#endif
