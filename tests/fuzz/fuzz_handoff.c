/*
 * fuzz_handoff: handoff_msg_parse on arbitrary bytes, read as a stream of
 * messages (as a peer's input buffer is). abort() when:
 *   - a parsed message claims more bytes than it had, or fewer than a header;
 *   - encoding the parsed message does not give back exactly its bytes
 *     (the format has one encoding per message);
 *   - a strict prefix of a parsed message is not "need more";
 *   - fields break their limits (CONN:
 *     last_sid above read_sid, pending over HANDOFF_MAX_PENDING, a NUL in
 *     a string).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/buf.h"
#include "proxy/handoff_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_handoff: check failed at line %d: %s\n", __LINE__, #cond);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        struct handoff_msg m;
        size_t used = 0;
        int rc = handoff_msg_parse(data + off, size - off, &m, &used);
        if (rc != 0)
            break; /* need more, or malformed: the peer is closed */
        CHECK(used >= HANDOFF_MSG_HEADER && used <= size - off);
        CHECK(m.type >= HANDOFF_HELLO && m.type <= HANDOFF_LISTEN);
        if (m.text)
            CHECK(memchr(m.text, 0, m.text_len) == NULL);
        if (m.path)
            CHECK(m.path_len > 0 && memchr(m.path, 0, m.path_len) == NULL);
        if (m.type == HANDOFF_CONN) {
            CHECK(m.last_sid <= m.read_sid);
            CHECK(m.pending_len <= HANDOFF_MAX_PENDING);
            CHECK(m.text_len > 0 && m.text_len <= 255);
        }
        struct buf out = {0};
        CHECK(handoff_msg_encode(&out, &m) == 0);
        CHECK(out.len == used && memcmp(out.data, data + off, used) == 0);
        buf_free(&out);
        struct handoff_msg m2;
        size_t used2 = 0;
        CHECK(handoff_msg_parse(data + off, used - 1, &m2, &used2) == HANDOFF_MSG_NEED_MORE);
        CHECK(handoff_msg_parse(data + off, used / 2, &m2, &used2) == HANDOFF_MSG_NEED_MORE);
        off += used;
    }
    return 0;
}
