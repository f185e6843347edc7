"""Fixtures of the monitoring tests: a real hourglass server with known traffic, a real Prometheus.

The servers' helpers come from tests/e2e/support.py (HOURGLASS_BINARY, HOURGLASS_PY_STUBS).
"""

import os
import shutil
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(HERE, "..", "e2e"))


@pytest.fixture(scope="module")
def work_dir():
    path = tempfile.mkdtemp(prefix="hourglass-monitoring-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def push_receiver():
    """The HTTP endpoint of the traffic's push tasks (traffic.PushReceiver)."""
    import traffic

    receiver = traffic.PushReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture(scope="module")
def hourglass(work_dir, push_receiver):
    """A server with a small --snapshot_bytes, so that the snapshot metrics move too, and the
    push flags of the traffic (only the receiver's address allowed, 2 deliveries per queue)."""
    import support
    import traffic

    server = support.Server(
        os.path.join(work_dir, "data"), ["--snapshot_bytes=4096", *traffic.SERVER_ARGS]
    )
    server.start()
    try:
        yield server
    finally:
        # The held push requests end first (answered 200), so that the stop does not wait on them.
        push_receiver.release_hangs()
        if server.running():
            code, _ = server.terminate(close_clients_first=True)
            assert code == 0, f"hourglass exited with {code} after SIGTERM\n" + server.log_tail()
