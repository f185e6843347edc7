"""deploy/kubernetes/hourglass.flags is a flag file the real server accepts and applies
(CTest: kubernetes_flags_accepted).

The server is started the way the StatefulSet starts it (--flagfile=..., then --data_dir), with
only the listening addresses moved to free loopback ports and the data directory to a
temporary one; it must come up with the file's values, serve /metrics, and stop within the
pod's termination grace period on SIGTERM.
"""

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FLAGFILE = os.path.join(REPO_ROOT, "deploy", "kubernetes", "hourglass.flags")
STATEFULSET = os.path.join(REPO_ROOT, "deploy", "kubernetes", "statefulset.yaml")
BINARY = os.environ.get("HOURGLASS_BINARY") or os.path.join(
    REPO_ROOT, "build", "service", "hourglass"
)
STARTUP_TIMEOUT_S = 20


def read_flags(path=FLAGFILE):
    flags = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, value = line[2:].partition("=")
            flags[name] = value
    return flags


def duration_seconds(text):
    units = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    assert "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * units[u] for n, u in parts)


def statefulset_number(field):
    """An integer field of statefulset.yaml (`field: N`), read without a YAML parser."""
    with open(STATEFULSET, encoding="utf-8") as f:
        match = re.search(rf"^\s*{field}: (\d+)\s*$", f.read(), re.M)
    assert match, field
    return int(match.group(1))


def prestop_seconds():
    with open(STATEFULSET, encoding="utf-8") as f:
        match = re.search(r'command: \["/bin/sleep", "(\d+)"\]', f.read())
    assert match
    return int(match.group(1))


class Server:
    """The hourglass binary (`binary`) started with `args`, behind `wrapper` (a command that
    execs its arguments) if given; its stderr JSON lines are collected."""

    def __init__(self, args, wrapper=(), binary=BINARY):
        self.events = []
        self.lines = []
        self._cond = threading.Condition()
        self.process = subprocess.Popen(
            [*wrapper, binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stderr:
            with self._cond:
                self.lines.append(line)
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    pass
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_event(self, name, timeout):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if event.get("event") == name:
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise AssertionError(f"no {name} event; stderr: {''.join(self.lines)}")
                self._cond.wait(min(remaining, 0.5))

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def data_dir():
    with tempfile.TemporaryDirectory(prefix="hourglass-k8s-flags-") as directory:
        yield directory


def test_every_flag_is_one_the_binary_documents():
    # --help lists each flag of the file (the binary reads flags only, no environment).
    help_text = subprocess.run(
        [BINARY, "--help"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    for name in read_flags():
        assert f"--{name} " in help_text, f"--{name} is not in hourglass --help"


def test_server_starts_with_the_flag_file_and_applies_it(data_dir):
    flags = read_flags()
    server = Server(
        [
            f"--flagfile={FLAGFILE}",
            f"--data_dir={data_dir}",
            "--grpc_address=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0",
        ]
    )
    try:
        started = server.wait_event("server_started", STARTUP_TIMEOUT_S)
        # The file's values are the ones in force.
        assert started["data_dir"] == data_dir
        assert started["fsync"] == flags["fsync"]
        assert started["workers"] == int(flags["workers"])
        assert started["queue_capacity"] == int(flags["queue_capacity"])
        assert started["retention_seconds"] == duration_seconds(flags["retention"])
        with urllib.request.urlopen(f"http://{started['metrics_address']}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert re.search(
            rf"^hourglass_dispatch_queue_capacity {flags['queue_capacity']}(\.0+)?$", metrics, re.M
        ), "the metrics endpoint does not report the file's --queue_capacity"
        assert re.search(
            rf"^hourglass_pending_limit {flags['max_pending']}(\.0+)?$", metrics, re.M
        ), "the metrics endpoint does not report the file's --max_pending"

        # SIGTERM, as the kubelet sends after the preStop pause: the server stops cleanly
        # well within what terminationGracePeriodSeconds leaves after that pause.
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        shutdown = server.wait_event("shutdown_started", 10)
        assert shutdown["grace_seconds"] == duration_seconds(flags["shutdown_grace"])
        budget = statefulset_number("terminationGracePeriodSeconds") - prestop_seconds()
        assert server.process.wait(timeout=budget) == 0
        assert time.monotonic() - signalled < budget
    finally:
        server.stop()


def test_a_flag_the_binary_does_not_know_is_refused(data_dir):
    # The check above would catch a bad file: an unknown flag in a flag file stops the server.
    bad = os.path.join(data_dir, "bad.flags")
    with open(bad, "w", encoding="utf-8") as f:
        f.write("# a typo\n--shutdown_grase=10s\n")
    result = subprocess.run(
        [BINARY, f"--flagfile={bad}", f"--data_dir={data_dir}", "--grpc_address=127.0.0.1:0",
         "--metrics_address=127.0.0.1:0"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0
    assert "shutdown_grase" in result.stderr


def auth_args():
    """The arguments of statefulset.yaml's optional token auth (its "#auth: - --..." lines)."""
    with open(STATEFULSET, encoding="utf-8") as f:
        return re.findall(r"^\s*#auth: - (--\S+)\s*$", f.read(), re.M)


def write_secret_version(mount, name, text):
    """Lays out `mount` as the kubelet does for a Secret volume: the visible file is a symlink
    through `..data`, which is swapped atomically to a new timestamped directory on update."""
    version = os.path.join(mount, f"..{name}")
    os.mkdir(version)
    with open(os.path.join(version, "tokens"), "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(os.path.join(version, "tokens"), 0o440)
    os.symlink(f"..{name}", os.path.join(mount, "..data_tmp"))
    os.rename(os.path.join(mount, "..data_tmp"), os.path.join(mount, "..data"))
    if not os.path.lexists(os.path.join(mount, "tokens")):
        os.symlink("..data/tokens", os.path.join(mount, "tokens"))


def test_server_starts_with_the_auth_lines_and_follows_a_secret_update(data_dir):
    # The commented auth lines of the StatefulSet, uncommented, with the Secret's mount point
    # moved to a temporary directory laid out like a Secret volume.
    (arg,) = auth_args()
    name, _, path = arg[2:].partition("=")
    assert name == "auth_tokens_file" and path.endswith("/tokens"), arg
    mount = os.path.join(data_dir, "auth")
    os.mkdir(mount)
    tokens = ["k8s-admin-" + os.urandom(16).hex(), "k8s-worker-" + os.urandom(16).hex()]
    write_secret_version(mount, "2026_01_01_00_00_00.1", f"{tokens[0]} * schedule,consume,admin\n")
    server = Server(
        [
            f"--flagfile={FLAGFILE}",
            f"--data_dir={os.path.join(data_dir, 'data')}",
            f"--{name}={os.path.join(mount, 'tokens')}",
            "--grpc_address=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0",
        ]
    )
    try:
        enabled = server.wait_event("auth_enabled", STARTUP_TIMEOUT_S)
        assert enabled["tokens"] == 1
        assert server.wait_event("server_started", STARTUP_TIMEOUT_S)["auth"] is True
        # A Secret update: the kubelet swaps ..data; the server re-reads within about a second.
        write_secret_version(
            mount,
            "2026_01_01_00_05_00.2",
            f"{tokens[0]} * schedule,consume,admin\n{tokens[1]} jobs consume\n",
        )
        reloaded = server.wait_event("auth_tokens_reloaded", 10)
        assert reloaded["tokens"] == 2
        assert not any(token in "".join(server.lines) for token in tokens), "a token was logged"
    finally:
        server.stop()
