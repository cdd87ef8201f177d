/*
 * retry: the budget arithmetic (see retry.h; call.c decides when a call is
 * retried).
 */
#include "proxy/retry.h"

/* Moves the buckets on to the second of now_ms. */
static void roll(struct retry_budget *b, uint64_t now_ms)
{
    uint64_t s = now_ms / 1000;
    if (s == b->second)
        return;
    if (s == b->second + 1) {
        b->prev_calls = b->calls;
        b->prev_retries = b->retries;
    } else {
        b->prev_calls = b->prev_retries = 0;
    }
    b->calls = b->retries = 0;
    b->second = s;
}

void retry_budget_note_call(struct retry_budget *b, uint64_t now_ms)
{
    roll(b, now_ms);
    b->calls++;
}

bool retry_budget_take(struct retry_budget *b, uint64_t now_ms, uint32_t percent)
{
    roll(b, now_ms);
    uint64_t left = 1000 - now_ms % 1000; /* ms of the previous second still in the window */
    uint64_t calls = b->calls + (uint64_t)b->prev_calls * left / 1000;
    uint64_t retries = b->retries + (uint64_t)b->prev_retries * left / 1000;
    uint64_t allowed = calls * percent / 100;
    if (allowed < RETRY_BUDGET_MIN)
        allowed = RETRY_BUDGET_MIN;
    if (retries >= allowed)
        return false;
    b->retries++;
    return true;
}
