"""The harness judges processes as promised: these run throwaway shell
processes through procs.Procs (no DRPC binaries needed)."""


import pytest

from . import drpc, procs as procs_mod


def run(tmp, script, expect_exit=0, stop_timeout=None, sleep_first=0.0):
    mgr = procs_mod.Procs(tmp)
    p = mgr.start("fake", ["/bin/sh", "-c", script], expect_exit=expect_exit)
    if stop_timeout is not None:
        p.stop_timeout = stop_timeout
    if "echo ready" in script:  # its trap is set: SIGTERM now meets it
        p.wait_for_output("ready", timeout=5)
    if sleep_first:
        import time

        time.sleep(sleep_first)
    return mgr.stop_all(), p


def test_clean_exit_on_sigterm_has_no_problems(short_tmp):
    problems, p = run(short_tmp, "trap 'exit 0' TERM; echo ready; while :; do sleep 0.01; done")
    assert problems == []


@pytest.mark.parametrize("report", [
    "==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1",
    "proxy/x.c:10:5: runtime error: signed integer overflow",
    "==1==ERROR: LeakSanitizer: detected memory leaks",
], ids=["asan", "ubsan", "lsan"])
def test_sanitizer_report_is_a_problem(short_tmp, report):
    problems, _ = run(short_tmp, "echo '%s' >&2; trap 'exit 0' TERM; echo ready; while :; do sleep 0.01; done"
                      % report)
    assert len(problems) == 1 and report in problems[0], problems


def test_nonzero_exit_is_a_problem(short_tmp):
    problems, _ = run(short_tmp, "trap 'exit 3' TERM; echo ready; while :; do sleep 0.01; done")
    assert problems == ["fake exited with status 3, expected 0"]


def test_ignoring_sigterm_is_a_problem(short_tmp):
    problems, p = run(short_tmp, "trap '' TERM; echo ready; while :; do sleep 0.01; done", stop_timeout=0.3)
    assert p.timed_out and "did not exit within 0.3s" in problems[0], problems


def test_dying_before_teardown_is_a_problem(short_tmp):
    problems, _ = run(short_tmp, "exit 0", sleep_first=0.2)
    assert problems and "exited on its own" in problems[0]


def test_expected_exit_status(short_tmp):
    problems, _ = run(short_tmp, "exit 2", expect_exit=2, sleep_first=0.2)
    assert problems == []


def test_wait_connectable_notices_a_dead_process(short_tmp, free_addr):
    mgr = procs_mod.Procs(short_tmp)
    p = mgr.start("fake", ["/bin/sh", "-c", "echo bye >&2; exit 1"], expect_exit=1)
    with pytest.raises(procs_mod.ProcessError) as e:
        procs_mod.wait_connectable(free_addr(), timeout=5, proc=p)
    assert "bye" in str(e.value)
    assert mgr.stop_all() == []


def test_reads_time_out_instead_of_hanging(short_tmp):
    import socket

    a, b = socket.socketpair()
    with drpc.Conn(sock=a, timeout=0.2) as c:
        with pytest.raises(TimeoutError):
            c.unary("/test.Echo/Unary", b"nobody answers")
    b.close()


def test_an_exit_the_test_caused_is_judged_by_its_status(short_tmp):
    import signal

    mgr = procs_mod.Procs(short_tmp)
    ok = mgr.start("ok", ["/bin/sh", "-c", "trap 'exit 0' TERM; echo ready; while :; do sleep 0.01; done"])
    bad = mgr.start("bad", ["/bin/sh", "-c", "trap 'exit 3' TERM; echo ready; while :; do sleep 0.01; done"])
    for p in (ok, bad):
        p.wait_for_output("ready", timeout=5)
        p.send_signal(signal.SIGTERM)
        p.wait(5)
    assert mgr.stop_all() == ["bad exited with status 3, expected 0"]


def test_peers_are_closed_after_the_processes_stop(short_tmp):
    mgr = procs_mod.Procs(short_tmp)
    p = mgr.start("fake", ["/bin/sh", "-c", "trap 'exit 0' TERM; echo ready; while :; do sleep 0.01; done"])
    p.wait_for_output("ready", timeout=5)

    class Peer:
        running_at_close = None

        def close(self):
            Peer.running_at_close = p.running()

    mgr.peer(Peer())
    assert mgr.stop_all() == []
    assert Peer.running_at_close is False
