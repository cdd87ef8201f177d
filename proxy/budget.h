/*
 * budget: the process-wide budget for buffered bytes (max_buffered_bytes).
 *
 * A connection *holds* bytes that wait for the rest of what they belong
 * to: a partial frame header, an Invoke or InvokeMetadata packet being
 * assembled, a call's frames kept until it has an upstream connection.
 * Frame data itself is passed on as it arrives (see wire.h), so these are
 * the only bytes a peer can make the sidecar keep by stalling. Each
 * connection reports what it holds (budget_hold); the budget keeps the sum.
 *
 *   sum > limit      a connection holding more than BUDGET_ALLOWANCE is
 *                    paused when it next reports: its owner stops reading
 *                    it. Smaller holders keep being read, so an ordinary
 *                    call is never starved by a few big ones, but each read
 *                    takes them no further than the allowance.
 *   sum <= 3/4 limit every paused connection is resumed (from the loop,
 *                    never inside another connection's callback).
 *
 * Bytes queued for writing are not counted here: per call they are bounded
 * by call_buffer_bytes back-pressure. The sum is bounded by the limit plus
 * BUDGET_ALLOWANCE + BUDGET_MIN_READ per connection (budget_read_size).
 *
 * Ownership: a struct budget_entry lives inside its connection's wire;
 * budget_forget() must run before the wire is freed.
 */
#ifndef SIDECAR_BUDGET_H
#define SIDECAR_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/list.h"

/* What a connection may hold and still be read while the budget is over. */
#define BUDGET_ALLOWANCE (64 * 1024)
/* The smallest read over the budget: room for frame headers and small calls. */
#define BUDGET_MIN_READ  4096

struct budget_entry {
    size_t held;           /* bytes this connection reported */
    bool paused;           /* on budget.paused: its owner must not read it */
    struct list_node node; /* budget.paused while paused */
};

struct budget {
    uint64_t used;     /* sum of every entry's held bytes */
    uint32_t n_paused; /* entries on paused */
    uint64_t pauses;   /* times an entry was paused, since start */
    struct list_node paused;
    uv_check_t resume_check; /* resumes paused entries from the loop */
    bool check_open;
};

void budget_init(struct budget *b, uv_loop_t *loop);

/* Closes the resume handle (the loop must still run to finish the close). */
void budget_close(struct budget *b);

void budget_entry_init(struct budget_entry *e);

/*
 * Records that e now holds `held` bytes and tells whether its owner must
 * stop reading it, with limit the current max_buffered_bytes (0 = none).
 * A paused entry stays paused until the sum drains to 3/4 of the limit or
 * its own holding drops to the allowance.
 */
bool budget_hold(struct budget *b, struct budget_entry *e, size_t held, uint64_t limit);

/* How many bytes e may read now, of room: while the sum is over the limit,
 * no more than takes it to the allowance (BUDGET_MIN_READ at least), so a
 * small holder stays small. */
size_t budget_read_size(const struct budget *b, const struct budget_entry *e, uint64_t limit,
                        size_t room);

/* The connection is going away: its bytes no longer count. */
void budget_forget(struct budget *b, struct budget_entry *e, uint64_t limit);

#endif
