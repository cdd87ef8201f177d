"""Integration tests: real drpc-testd / drpc-sidecar processes (procs.py)
and in-process Python peers (pyserver.py), driven by an independent Python
DRPC client (drpc.py). A package, so the test modules import their helpers
relatively and never collide with other directories' module names."""
