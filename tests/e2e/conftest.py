"""Fixtures of the end-to-end tests: real hourglass servers on 127.0.0.1, port 0."""

import os
import shutil
import tempfile

import pytest

import support


def _stop_and_check(server):
    """SIGTERM; the server must exit 0 (it is killed, and the test fails, after 30 s).

    Servers that a test crashed on purpose with Server.kill() are left alone.

    The test's channels are closed first: SIGTERM with connected clients is
    test_sigterm_drains_and_exits_zero's subject.
    """
    if server.process is None or server.killed or server.started_event is None:
        return  # Never started (start() failed the test), or crashed on purpose with kill().
    code, _ = server.terminate(close_clients_first=True)
    assert code == 0, f"hourglass exited with {code} after SIGTERM\n" + server.log_tail()


@pytest.fixture(scope="session")
def work_dir():
    path = tempfile.mkdtemp(prefix="hourglass-e2e-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def server(work_dir):
    """A server with default flags shared by the tests that use their own queues."""
    server = support.Server(os.path.join(work_dir, "shared-data"))
    server.start()
    try:
        yield server
    finally:
        _stop_and_check(server)


@pytest.fixture
def client(server):
    return server.client()


@pytest.fixture
def start_server(work_dir):
    """Starts dedicated servers: start_server(*flags, data_dir=None) -> started Server.

    Each is stopped with SIGTERM at the end of the test and must exit 0.
    """
    servers = []

    def start(*extra_args, data_dir=None):
        if data_dir is None:
            data_dir = tempfile.mkdtemp(prefix="data-", dir=work_dir)
        server = support.Server(data_dir, extra_args)
        servers.append(server)
        return server.start()

    yield start
    failures = []
    for server in servers:
        try:
            _stop_and_check(server)
        except AssertionError as error:  # Stop the others before failing.
            failures.append(str(error))
    assert not failures, "\n".join(failures)
