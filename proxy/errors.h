/*
 * errors: why the sidecar itself fails a call. Each cause has a stable
 * DRPC error code (sent in the Error packet's 8-byte code) and a name used
 * in logs and metrics. The table is declared once here; proxy/README.md documents it.
 * Every Error text the sidecar sends starts with "drpc-sidecar: ".
 */
#ifndef SIDECAR_ERRORS_H
#define SIDECAR_ERRORS_H

#include <stdint.h>

/* X(enum suffix, code, metric name, default text) */
#define CALL_CAUSES(X)                                                                             \
    X(NO_ROUTE, 1001, "no_route", "no route for rpc")                                              \
    X(POOL_EXHAUSTED, 1002, "pool_exhausted", "pool exhausted: too many waiting calls")            \
    X(WAIT_TIMEOUT, 1003, "wait_timeout", "timed out waiting for an upstream connection")          \
    X(NO_HEALTHY_ENDPOINT, 1004, "no_healthy_endpoint", "no healthy upstream endpoint")            \
    X(DIAL_FAILED, 1005, "dial_failed", "could not connect to upstream")                           \
    X(UPSTREAM_LOST, 1006, "upstream_lost", "upstream connection lost mid-call")                   \
    X(DEADLINE, 1007, "deadline_exceeded", "call deadline exceeded")                               \
    X(TOO_LARGE, 1008, "message_too_large", "message larger than max_message_size")                \
    X(SHUTTING_DOWN, 1009, "shutting_down", "sidecar is shutting down")                            \
    X(CANCELLED, 1010, "cancelled", "call cancelled by an operator")                               \
    X(PROTOCOL, 1011, "protocol_error", "protocol error")                                          \
    X(UPSTREAM_PROTOCOL, 1012, "upstream_protocol_error", "upstream protocol error")               \
    X(NO_AGENT, 1013, "no_agent_connected", "no agent connected")                                  \
    X(AGENT_NOT_CONNECTED, 1014, "agent_not_connected", "agent not connected")                     \
    X(INTERNAL, 1015, "internal", "internal error (out of memory)")                                \
    X(NOT_STARTED, 1016, "request_not_started", "request not started")

enum call_cause {
#define X(name, code, metric, text) CALL_CAUSE_##name,
    CALL_CAUSES(X)
#undef X
        CALL_CAUSE_COUNT
};

uint64_t call_cause_code(enum call_cause c);
const char *call_cause_name(enum call_cause c);
const char *call_cause_text(enum call_cause c);

#endif
