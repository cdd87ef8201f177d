/*
 * peer_reader: packets from frames, with the rules of drpcwire.Reader (the
 * upstream Go reader), so the test peer is exactly as strict as Go:
 *
 *   - frames with the control bit are handed over alone, as they come; they
 *     take no part in packet assembly or in the id checks;
 *   - a packet is the frames sharing one (stream id, message id), up to the
 *     one with done set; a frame with a newer id discards an unfinished
 *     packet ("frames of different packets are never interleaved");
 *   - ids never go backwards: a frame below the last id, or repeating the id
 *     of a finished packet, is "id monotonicity violation"; the first frame
 *     must be at least (1, 1);
 *   - a kind change inside a packet is "packet kind change";
 *   - a packet above max_packet bytes (4 MiB in Go) is "data overflow".
 *
 * Any protocol error is final: the connection must be closed.
 *
 * No I/O: the caller owns the input bytes and feeds them in; the reader owns
 * only the data of a packet spread over several frames.
 */
#ifndef SIDECAR_PEER_READER_H
#define SIDECAR_PEER_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/buf.h"

#define PEER_READER_MAX_PACKET (4u << 20)

struct peer_packet {
    uint8_t kind; /* enum frame_kind, or any kind for control packets */
    bool control; /* a control frame (e.g. soft Cancel) */
    uint64_t stream_id;
    uint64_t message_id;
    const uint8_t *data; /* see peer_reader_next() for how long it lives */
    size_t len;
};

enum peer_reader_state {
    PEER_READER_BETWEEN,    /* no packet in progress */
    PEER_READER_ASSEMBLING, /* frames without done arrived; data so far in pkt */
    PEER_READER_FAILED,     /* a protocol error was found; error says which */
};

struct peer_reader {
    enum peer_reader_state state;
    uint64_t sid, mid; /* lowest id the next frame may carry (Go's r.id) */
    uint8_t kind;      /* kind of the packet being assembled */
    struct buf pkt;    /* data of the packet being assembled (owned) */
    size_t max_packet; /* data overflow above this */
    size_t want;       /* after PEER_READ_MORE: size of the partial frame, 0 if unknown */
    const char *error; /* static text of the protocol error once FAILED */
};

enum peer_read_result {
    PEER_READ_PACKET, /* *out holds a packet (or a control frame) */
    PEER_READ_MORE,   /* the input ends inside a frame: feed more */
    PEER_READ_ERROR,  /* protocol error (r->error); close the connection */
};

void peer_reader_init(struct peer_reader *r, size_t max_packet);

/*
 * Consumes frames from in[0..len) until one completes a packet, the input
 * ends, or a protocol error. *used is set to the bytes consumed (also on
 * PEER_READ_MORE: complete frames of an unfinished packet are taken in).
 * out->data points into `in` (a packet of one frame) or into the reader; it
 * stays valid until the next call or until the caller changes `in`.
 */
enum peer_read_result peer_reader_next(struct peer_reader *r, const uint8_t *in, size_t len,
                                       size_t *used, struct peer_packet *out);

/* Releases the reader's memory. */
void peer_reader_free(struct peer_reader *r);

#endif
