/*
 * handle: one embedded libuv stream handle that is a TCP socket or a unix
 * socket, seen through whichever libuv type a call needs.
 */
#ifndef SIDECAR_HANDLE_H
#define SIDECAR_HANDLE_H

#include <uv.h>

union stream_handle {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
};

#endif
