"""Background load for fault tests: a fault must touch only the call it hits,
so these clients keep making calls through the sidecar meanwhile and every
one of their calls must succeed."""

import threading

from . import drpc

ECHO = "/test.Echo/"


class BackgroundLoad:
    """n clients, each on its own connection, making unary (i%3==2), server
    stream (i%3==0) or bidi (i%3==1) calls until stop()."""

    def __init__(self, addr, n=32):
        self.addr = addr
        self.stop_event = threading.Event()
        self.failures = []
        self.calls = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, i):
        try:
            with drpc.Conn(self.addr) as c:
                while not self.stop_event.is_set():
                    if i % 3 == 0:
                        assert len(c.server_stream(ECHO + "ServerStream", b"4 512")) == 4
                    elif i % 3 == 1:
                        assert c.bidi(ECHO + "Bidi", [b"a", b"b"]) == [b"a", b"b"]
                    else:
                        assert c.unary(ECHO + "Unary", b"bg%d" % i) == b"bg%d" % i
                    with self.lock:
                        self.calls += 1
        except Exception as e:  # noqa: BLE001 - every failure is a finding
            self.failures.append(repr(e))

    def stop(self):
        """Stops the clients and asserts none of their calls failed; idempotent."""
        self.stop_event.set()
        for t in self.threads:
            t.join(30)
        assert not self.failures, self.failures[:3]
        assert self.calls > 0
