"""Helpers for the end-to-end tests: start the real hourglass binary, talk to it.

The CTest test `e2e` sets HOURGLASS_BINARY (the server) and HOURGLASS_PY_STUBS (the
generated Python stubs). Run by hand, the defaults are build/service/hourglass and stubs
generated into a temporary directory with tools/gen_python_stubs.sh.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _stubs_dir():
    stubs = os.environ.get("HOURGLASS_PY_STUBS")
    if stubs:
        return stubs
    stubs = tempfile.mkdtemp(prefix="hourglass-e2e-stubs-")
    subprocess.run(
        ["bash", os.path.join(REPO_ROOT, "tools", "gen_python_stubs.sh"), stubs], check=True
    )
    return stubs


STUBS_DIR = _stubs_dir()
if STUBS_DIR not in sys.path:
    sys.path.insert(0, STUBS_DIR)

import grpc  # noqa: E402
from google.protobuf import duration_pb2, timestamp_pb2  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # noqa: E402,F401
from hourglass.v1 import consumer_service_pb2 as consumer_pb2  # noqa: E402
from hourglass.v1 import consumer_service_pb2_grpc as consumer_grpc  # noqa: E402
from hourglass.v1 import scheduler_service_pb2 as scheduler_pb2  # noqa: E402
from hourglass.v1 import scheduler_service_pb2_grpc as scheduler_grpc  # noqa: E402
from hourglass.v1 import task_pb2  # noqa: E402

BINARY = os.environ.get("HOURGLASS_BINARY") or os.path.join(
    REPO_ROOT, "build", "service", "hourglass"
)
PROMTOOL = os.environ.get("HOURGLASS_PROMTOOL") or shutil.which("promtool") or "promtool"
PYTHON = "/usr/bin/python3"

STARTUP_TIMEOUT_S = 20
STOP_TIMEOUT_S = 30
# Default deadline of every unary call; Lease calls wait at most a few seconds.
RPC_TIMEOUT_S = 30

# Clock granularity allowed when checking "never early" (1 ms).
EARLY_TOLERANCE_NS = 1_000_000

State = task_pb2.TaskState
StatusCode = grpc.StatusCode


# --- time ---------------------------------------------------------------------------------


def duration(seconds):
    """A google.protobuf.Duration of `seconds` (float, may be negative)."""
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(round(seconds * 1e9)))
    return d


def timestamp_ns(ns):
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(ns)
    return t


def ns(ts):
    """Nanoseconds since the epoch of a google.protobuf.Timestamp."""
    return ts.seconds * 1_000_000_000 + ts.nanos


def now_ns():
    return time.time_ns()


def unique(prefix):
    """A fresh queue name or task id, [A-Za-z0-9._-] only."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_until(predicate, timeout_s, interval_s=0.02, what="condition"):
    """Polls `predicate` until it returns a truthy value; fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


# --- errors -------------------------------------------------------------------------------


def expect_error(code, call, *args, **kwargs):
    """Calls `call` and asserts that it fails with gRPC status `code`; returns the error."""
    try:
        result = call(*args, **kwargs)
    except grpc.RpcError as error:
        assert (
            error.code() == code
        ), f"expected {code.name}, got {error.code().name}: {error.details()!r}"
        return error
    raise AssertionError(f"expected {code.name}, but the call succeeded: {result}")


def expect_invalid_argument(field, call, *args, **kwargs):
    """Asserts INVALID_ARGUMENT whose message names `field`."""
    error = expect_error(StatusCode.INVALID_ARGUMENT, call, *args, **kwargs)
    details = error.details() or ""
    assert field in details, f"INVALID_ARGUMENT message does not name {field!r}: {details!r}"
    return error


# --- client -------------------------------------------------------------------------------


class _WithTimeout:
    """Wraps a generated stub so that every unary call has a deadline."""

    def __init__(self, stub, timeout_s):
        self._stub = stub
        self._timeout_s = timeout_s

    def __getattr__(self, name):
        method = getattr(self._stub, name)

        def call(request, **kwargs):
            kwargs.setdefault("timeout", self._timeout_s)
            return method(request, **kwargs)

        call.future = method.future
        return call


class Client:
    """Stubs of one channel to a server: scheduler, consumer, health, reflection."""

    def __init__(self, address):
        self.address = address
        self.channel = grpc.insecure_channel(address)
        self.scheduler = _WithTimeout(
            scheduler_grpc.SchedulerServiceStub(self.channel), RPC_TIMEOUT_S
        )
        self.consumer = _WithTimeout(consumer_grpc.ConsumerServiceStub(self.channel), RPC_TIMEOUT_S)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.reflection_stub = reflection_pb2_grpc.ServerReflectionStub(self.channel)

    def close(self):
        self.channel.close()

    # Shorthands for the common calls; keyword arguments go into the request.
    def schedule(self, **fields):
        return self.scheduler.Schedule(scheduler_pb2.ScheduleRequest(**fields))

    def cancel(self, task_id):
        return self.scheduler.Cancel(scheduler_pb2.CancelRequest(task_id=task_id))

    def status(self, task_id):
        return self.scheduler.GetStatus(scheduler_pb2.GetStatusRequest(task_id=task_id)).task

    def reschedule(self, **fields):
        return self.scheduler.Reschedule(scheduler_pb2.RescheduleRequest(**fields))

    def lease(self, queue, wait_s=0.0, max_tasks=1, lease_duration_s=None, **kwargs):
        request = consumer_pb2.LeaseRequest(queue=queue, max_tasks=max_tasks)
        if wait_s:
            request.wait.CopyFrom(duration(wait_s))
        if lease_duration_s is not None:
            request.lease_duration.CopyFrom(duration(lease_duration_s))
        timeout = max(RPC_TIMEOUT_S, wait_s + 10)
        return self.consumer.Lease(request, timeout=timeout, **kwargs).tasks

    def ack(self, task_id, lease_token):
        return self.consumer.Ack(consumer_pb2.AckRequest(task_id=task_id, lease_token=lease_token))

    def nack(self, task_id, lease_token, retry_delay_s=None, error=""):
        request = consumer_pb2.NackRequest(task_id=task_id, lease_token=lease_token, error=error)
        if retry_delay_s is not None:
            request.retry_delay.CopyFrom(duration(retry_delay_s))
        return self.consumer.Nack(request).task

    def extend(self, task_id, lease_token, lease_duration_s=None):
        request = consumer_pb2.ExtendLeaseRequest(task_id=task_id, lease_token=lease_token)
        if lease_duration_s is not None:
            request.lease_duration.CopyFrom(duration(lease_duration_s))
        return self.consumer.ExtendLease(request)

    def health(self, service=""):
        request = health_pb2.HealthCheckRequest(service=service)
        return self.health_stub.Check(request, timeout=RPC_TIMEOUT_S).status


# --- the server process -------------------------------------------------------------------


class Server:
    """One hourglass process on 127.0.0.1 with ports picked by the kernel.

    stderr (one JSON object per line) is read by a thread and kept in `log_lines`; the ports
    come from the `server_started` event.
    """

    def __init__(self, data_dir, extra_args=(), binary=BINARY):
        self.data_dir = data_dir
        self.args = [
            binary,
            "--grpc_address=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0",
            f"--data_dir={data_dir}",
            *extra_args,
        ]
        self.process = None
        self.killed = False
        self.log_lines = []
        self.started_event = None
        self._started = threading.Event()
        self._lock = threading.Lock()
        self._reader = None
        self._clients = []
        self.grpc_port = None
        self.metrics_port = None

    def start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        self.process = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._started.wait(0.05):
            if self.process.poll() is not None:
                self._reader.join(2)
                raise AssertionError(
                    f"hourglass exited with {self.process.returncode} before server_started\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"no server_started event within {STARTUP_TIMEOUT_S} s\n" + self.log_tail()
                )
        self.grpc_port = _port_of(self.started_event["grpc_address"])
        self.metrics_port = _port_of(self.started_event["metrics_address"])
        return self

    def _read_stderr(self):
        for line in self.process.stderr:
            line = line.rstrip("\n")
            with self._lock:
                self.log_lines.append(line)
            if not self._started.is_set():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("event") == "server_started":
                    self.started_event = event
                    self._started.set()

    @property
    def grpc_address(self):
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self):
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def client(self):
        client = Client(self.grpc_address)
        self._clients.append(client)
        return client

    def log_events(self):
        """The stderr lines parsed as JSON (lines that are not JSON objects are skipped)."""
        events = []
        for line in self.logs():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    def logs(self):
        with self._lock:
            return list(self.log_lines)

    def log_tail(self, lines=40):
        return "--- hourglass stderr (tail) ---\n" + "\n".join(self.logs()[-lines:])

    def running(self):
        return self.process is not None and self.process.poll() is None

    def terminate(self, timeout_s=STOP_TIMEOUT_S, close_clients_first=False):
        """Sends SIGTERM and waits; kills the process (and fails) if it does not exit in time.

        With close_clients_first the channels of client() are closed before the signal (no
        connected clients); otherwise after the exit, so that their calls see the shutdown.
        Returns (exit code, seconds it took to exit).
        """
        if close_clients_first and self._clients:
            self._close_clients()
            time.sleep(0.2)  # Let the server see the connections go.
        try:
            return self._terminate(timeout_s)
        finally:
            self._close_clients()

    def _close_clients(self):
        for client in self._clients:
            client.close()
        self._clients.clear()

    def _terminate(self, timeout_s):
        if self.process.poll() is not None:
            return self.process.returncode, 0.0
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.wait_exit(timeout_s)
        return code, time.monotonic() - start

    def wait_exit(self, timeout_s=STOP_TIMEOUT_S):
        """Waits for the process to end; kills it (and fails) after timeout_s. Returns its code."""
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self._reader.join(5)
            raise AssertionError(
                f"hourglass did not exit within {timeout_s} s of SIGTERM; killed\n"
                + self.log_tail()
            )
        self._reader.join(5)
        return code

    def kill(self):
        """SIGKILL (`kill -9`): a crash, not a shutdown. Returns the exit code.

        The channels of client() are closed; a killed server is not stopped again by the
        fixtures (its exit code is not 0).
        """
        self.killed = True
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        code = self.process.wait()
        if self._reader is not None:
            self._reader.join(5)
        self._close_clients()
        return code

    def event(self, name):
        """The first logged JSON event called `name` (e.g. "recovered"), or None."""
        for event in self.log_events():
            if event.get("event") == name:
                return event
        return None


def _port_of(address):
    host, sep, port = str(address).rpartition(":")
    assert sep and port.isdigit(), f"unexpected address in server_started: {address!r}"
    assert int(port) != 0, f"server_started reports port 0: {address!r}"
    return int(port)


# --- metrics ------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(server):
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        assert response.status == 200
        return response.read().decode("utf-8")


def parse_metrics(text):
    """Samples of a Prometheus text exposition: a list of (name, {label: value}, float)."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"unparsable metrics line: {line!r}"
        name, labels, value = match.groups()
        samples.append((name, dict(_LABEL.findall(labels or "")), float(value)))
    return samples


def metric_value(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


def has_metric(samples, name):
    return any(sample_name == name for sample_name, _, _ in samples)
