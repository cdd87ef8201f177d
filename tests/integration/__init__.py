"""Integration tests: real drpc-testd / drpc-sidecar processes driven by an
independent Python DRPC client (drpc.py). A package, so its module names
(integration.drpc, integration.test_testd, ...) never collide with the
same-named files of tests/proxy/."""
