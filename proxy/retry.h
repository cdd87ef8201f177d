/*
 * retry: the per-pool budget that keeps opt-in retries from piling onto an
 * overloaded upstream. Which calls are retried is decided in call.c:
 *
 * Safe by construction, for every call (call_retry; the upstream cannot
 * have read the request, so it cannot have acted on it), up to max_conns
 * + 1 times per call:
 *   - the idle connection a call was about to get was found closed by its
 *     peer (peeked at checkout, pool.c): the call takes another one or a
 *     dial, and the closed one is closed; not counted as a retry;
 *   - the connection was lost after the call was attached but before the
 *     peer can have read it: an EOF before any of the call's bytes were
 *     written, or a reset (the peer closed with them unread).
 * Dials that fail (refused, timed out) never fail a call on their own:
 * the call waits for another dial within its wait_timeout_ms (pool.c).
 *
 * Opt-in per route ("retry": {"unanswered": true, "max_attempts": N}),
 * for idempotent RPCs: a call whose connection was lost after its request
 * went out but before the first reply byte, while the sidecar still holds
 * every client frame sent so far (CALL_RETRY_LOG_MAX, 64 KiB), is retried
 * on another connection, up to max_attempts tries in all, and only within
 * the pool's budget: retries of unanswered calls may be at most
 * retry_budget_percent of the pool's calls over the last second, but
 * RETRY_BUDGET_MIN per second are always allowed (Envoy's retry budget).
 */
#ifndef SIDECAR_RETRY_H
#define SIDECAR_RETRY_H

#include <stdbool.h>
#include <stdint.h>

/* Retries per second the budget always allows, whatever the share. */
#define RETRY_BUDGET_MIN 3

/* Calls and retries of the current second and the one before it. */
struct retry_budget {
    uint64_t second; /* uv_now / 1000 of the current bucket */
    uint32_t calls, retries;
    uint32_t prev_calls, prev_retries;
};

/* Counts a call routed to the pool at now_ms. */
void retry_budget_note_call(struct retry_budget *b, uint64_t now_ms);

/* Whether one more retry fits in the budget at now_ms; counts it if so.
 * The last second is the current bucket plus the previous one weighed by
 * the part of it still inside the window. */
bool retry_budget_take(struct retry_budget *b, uint64_t now_ms, uint32_t percent);

#endif
