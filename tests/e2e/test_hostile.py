"""Malformed and hostile requests against the real binary (issue 7).

Bytes no client library would send (invalid UTF-8 in strings, nesting 10,000 deep, garbage,
truncated messages, known fields of the wrong wire type), huge maps and batches, messages beyond
the receive limit, absurd durations and timestamps, metadata abuse, unknown methods, and
connections left idle or half-sent: each case is answered with its exact code and a message that
says what to fix, quickly, while a well-behaved client schedules, leases and acknowledges tasks
throughout. At the end that client has been served (every task delivered and acknowledged, no
error, no slow call), the server is alive, its memory stayed bounded, nothing the hostile
requests sent was scheduled, and every refusal was counted in hourglass_grpc_server_handled_total
with its code.

Runs as its own CTest test, e2e_hostile (tests/e2e/CMakeLists.txt), which sets
HOURGLASS_E2E_HOSTILE=1; the serial `e2e` suite skips this file. By hand:
HOURGLASS_E2E_HOSTILE=1 /usr/bin/python3 -m pytest tests/e2e/test_hostile.py
"""

import os
import socket
import tempfile
import threading
import time
import urllib.parse

from google.protobuf import duration_pb2, timestamp_pb2

import h2.config
import h2.connection
import h2.events
import pytest

import support
from support import (
    StatusCode,
    consumer_pb2,
    duration,
    grpc,
    metric_value,
    parse_metrics,
    scheduler_pb2,
    scrape,
    task_pb2,
    unique,
)

pytestmark = pytest.mark.skipif(
    os.environ.get("HOURGLASS_E2E_HOSTILE") != "1",
    reason="runs as its own CTest test e2e_hostile (set HOURGLASS_E2E_HOSTILE=1 to run it by hand)",
)

SCHEDULER = "/hourglass.v1.SchedulerService/"
CONSUMER = "/hourglass.v1.ConsumerService/"
INT64_MAX = 2**63 - 1
MIB = 1024 * 1024
# The gRPC receive limit with the default --max_payload_bytes: max(4 MiB, payload + 1 MiB).
RECEIVE_LIMIT = 4 * MIB
# How long a refusal may take on a loaded machine ("quickly"): parsing is not the bottleneck.
QUICK_S = 3.0
# The slowest call the well-behaved client may see while all this goes on.
SERVED_WITHIN_S = 5.0
# How much the server's peak RSS may grow over the whole file. Before batches were counted
# before parsing, one 4 MiB ScheduleBatch of 2 million empty items alone took 400+ MB.
RSS_GROWTH_LIMIT_KIB = 150 * 1024

NOT_UTF8 = "is not valid UTF-8"
DOES_NOT_PARSE = "its bytes do not parse as that protobuf message"


# --- protobuf wire format by hand ----------------------------------------------------------


def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tag(number, wire_type):
    return varint(number << 3 | wire_type)


def ld(number, data):
    """A length-delimited field (string, bytes, message)."""
    return tag(number, 2) + varint(len(data)) + data


def vi(number, value):
    """A varint field."""
    return tag(number, 0) + varint(value)


def nested_groups(number, depth):
    """`depth` nested groups of field `number` (unknown to every hourglass message)."""
    return tag(number, 3) * depth + tag(number, 4) * depth


def nested_messages(number, depth):
    """`depth` nested length-delimited fields of `number`, innermost empty."""
    data = b""
    for _ in range(depth):
        data = ld(number, data)
    return data


# --- clients -------------------------------------------------------------------------------


class RawClient:
    """Sends bytes as they are to any method of a server (no serialization)."""

    def __init__(self, address, own_connection=False):
        # No client-side send limit: the server's limit is what is tested. gRPC shares one
        # connection among channels with the same target and options unless told otherwise.
        options = [("grpc.max_send_message_length", 64 * MIB)]
        if own_connection:
            options.append(("grpc.use_local_subchannel_pool", 1))
        self.channel = grpc.insecure_channel(address, options=options)

    def close(self):
        self.channel.close()

    def call(self, method, data, metadata=None, timeout=30):
        """(code, details, seconds) of a unary call of `method` with request bytes `data`."""
        stub = self.channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        start = time.monotonic()
        try:
            stub(data, timeout=timeout, metadata=metadata)
            code, details = StatusCode.OK, ""
        except grpc.RpcError as error:
            code, details = error.code(), error.details() or ""
        return code, details, time.monotonic() - start

    def expect(self, code, method, data, *substrings, metadata=None):
        """Asserts the call's code, that its message holds every substring, and that it was quick.
        Returns the message."""
        got, details, seconds = self.call(method, data, metadata=metadata)
        assert got == code, f"{method}: expected {code.name}, got {got.name}: {details!r}"
        for substring in substrings:
            assert substring in details, f"{method}: {substring!r} not in {details!r}"
        assert seconds < QUICK_S, f"{method}: {code.name} took {seconds:.2f} s"
        return details


class RawHttp2:
    """One HTTP/2 connection speaking gRPC by hand (h2): what gRPC clients refuse to send."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())

    def close(self):
        self.sock.close()

    def start(self, method, metadata=()):
        """Sends the headers of a call; returns its stream id."""
        stream = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", method.encode()),
            (b":authority", b"127.0.0.1"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            *metadata,
        ]
        self.conn.send_headers(stream, headers)
        self.sock.sendall(self.conn.data_to_send())
        return stream

    def send(self, stream, data, end_stream):
        self.conn.send_data(stream, data, end_stream=end_stream)
        self.sock.sendall(self.conn.data_to_send())

    def call(self, method, message, metadata=()):
        """(grpc-status, grpc-message) of a unary call with request bytes `message`."""
        stream = self.start(method, metadata)
        self.send(stream, b"\x00" + len(message).to_bytes(4, "big") + message, end_stream=True)
        headers = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            for event in self.conn.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    if event.stream_id == stream:
                        headers.update(dict(event.headers))
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                    raise AssertionError(f"stream reset: {event.error_code}")
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    self.sock.sendall(self.conn.data_to_send())
                    message = headers.get(b"grpc-message", b"").decode()
                    return int(headers[b"grpc-status"]), urllib.parse.unquote(message)
            self.sock.sendall(self.conn.data_to_send())
        raise AssertionError("no answer within 10 s")


class WellBehavedClient:
    """Schedules tasks (due in 0 to 50 ms) and, on another thread, leases and acknowledges them,
    until stopped; records every error and the slowest call."""

    def __init__(self, server):
        self.queue = unique("well-behaved")
        self.producer = server.client()
        self.consumer = server.client()
        self.stop_event = threading.Event()  # stop scheduling
        self.produced = threading.Event()  # the producer has stopped: drain, then stop
        self.scheduled = set()
        self.acked = set()
        self.errors = []
        self.slowest_s = 0.0
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._produce, name="producer", daemon=True),
            threading.Thread(target=self._consume, name="consumer", daemon=True),
        ]

    def start(self):
        for thread in self.threads:
            thread.start()

    def _timed(self, call, *args, **kwargs):
        start = time.monotonic()
        try:
            return call(*args, **kwargs)
        finally:
            elapsed = time.monotonic() - start
            with self.lock:
                self.slowest_s = max(self.slowest_s, elapsed)

    def _produce(self):
        n = 0
        while not self.stop_event.is_set():
            task_id = f"{self.queue}-{n}"
            try:
                self._timed(
                    self.producer.schedule,
                    queue=self.queue,
                    task_id=task_id,
                    payload=b"p" * 100,
                    delay=duration((n % 6) * 0.01),
                )
                with self.lock:
                    self.scheduled.add(task_id)
            except grpc.RpcError as error:
                self.errors.append(f"Schedule {task_id}: {error.code().name}: {error.details()}")
            n += 1
            time.sleep(0.02)

    def _consume(self):
        # Keeps leasing until the producer stopped and everything scheduled is acknowledged.
        while True:
            with self.lock:
                done = self.produced.is_set() and self.scheduled <= self.acked
            if done:
                return
            try:
                leased = self._timed(
                    self.consumer.lease, self.queue, wait_s=0.5, max_tasks=10, lease_duration_s=60
                )
                for task in leased:
                    self._timed(self.consumer.ack, task.task_id, task.lease_token)
                    with self.lock:
                        self.acked.add(task.task_id)
            except grpc.RpcError as error:
                self.errors.append(f"Lease/Ack: {error.code().name}: {error.details()}")
                time.sleep(0.1)

    def stop(self, timeout_s=30):
        self.stop_event.set()
        producer, consumer = self.threads
        producer.join(timeout_s)
        assert not producer.is_alive(), "the well-behaved producer did not finish"
        self.produced.set()
        consumer.join(timeout_s)
        assert (
            not consumer.is_alive()
        ), f"the well-behaved consumer did not get all its tasks within {timeout_s} s"


def proc_status(pid):
    """VmRSS and VmHWM (KiB) of /proc/<pid>/status."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(value.split()[0])
    return values


# --- the server all tests share ---------------------------------------------------------------


class Hostile:
    """The shared server, its well-behaved client, a raw client, and what the tests expect."""

    def __init__(self, server):
        self.server = server
        self.raw = RawClient(server.grpc_address)
        self.well_behaved = WellBehavedClient(server)
        self.start_hwm_kib = proc_status(server.process.pid)["VmHWM"]
        self.start_samples = parse_metrics(scrape(server))

    def handled(self, method, code):
        """Calls of `method` answered `code` since the start."""
        service = (
            "hourglass.v1.ConsumerService"
            if method in _CONSUMER_METHODS
            else ("hourglass.v1.SchedulerService")
        )
        labels = {"grpc_service": service, "grpc_method": method, "grpc_code": code}
        now = metric_value(
            parse_metrics(scrape(self.server)), "hourglass_grpc_server_handled_total", **labels
        )
        before = metric_value(self.start_samples, "hourglass_grpc_server_handled_total", **labels)
        return now - before


_CONSUMER_METHODS = {"Lease", "Ack", "Nack", "ExtendLease", "AckBatch"}


@pytest.fixture(scope="module")
def hostile():
    data_dir = tempfile.mkdtemp(prefix="hourglass-hostile-")
    server = support.Server(data_dir, ["--log_level=debug"])
    server.start()
    state = Hostile(server)
    state.well_behaved.start()
    try:
        yield state
    finally:
        state.well_behaved.stop_event.set()
        state.well_behaved.produced.set()
        state.raw.close()
        code, _ = server.terminate(close_clients_first=True)
        assert code == 0, f"hourglass exited with {code} after SIGTERM\n" + server.log_tail()


# --- invalid UTF-8 ---------------------------------------------------------------------------

URL = b"http://push.example/hook"

UTF8_CASES = [
    ("Schedule", ld(1, b"\xff\xfe"), "hourglass.v1.ScheduleRequest.queue"),
    ("Schedule", ld(2, b"task-\xc3"), "hourglass.v1.ScheduleRequest.task_id"),
    (
        "Schedule",
        ld(4, ld(1, b"\xff") + ld(2, b"v")),
        "hourglass.v1.ScheduleRequest.HeadersEntry.key",
    ),
    (
        "Schedule",
        ld(4, ld(1, b"k") + ld(2, b"\xed\xa0\x80")),  # a UTF-16 surrogate: not UTF-8
        "hourglass.v1.ScheduleRequest.HeadersEntry.value",
    ),
    ("Schedule", ld(8, ld(1, b"http://\xe2\x82")), "hourglass.v1.HttpTarget.url"),
    (
        "Schedule",
        ld(8, ld(1, URL) + ld(2, ld(1, b"X-Key") + ld(2, b"\xc0\xaf"))),  # an overlong '/'
        "hourglass.v1.HttpTarget.HeadersEntry.value",
    ),
    ("Schedule", ld(9, ld(1, b"host\xff:443")), "hourglass.v1.GrpcTarget.address"),
    ("Schedule", ld(9, ld(2, b"/pkg.Svc/M\xff")), "hourglass.v1.GrpcTarget.method"),
    ("GetStatus", ld(1, b"\xff"), "hourglass.v1.GetStatusRequest.task_id"),
    ("Cancel", ld(1, b"\xff"), "hourglass.v1.CancelRequest.task_id"),
    ("Reschedule", ld(1, b"\xff"), "hourglass.v1.RescheduleRequest.task_id"),
    ("RetryTask", ld(1, b"\xff"), "hourglass.v1.RetryTaskRequest.task_id"),
    ("ListTasks", ld(1, b"\xff"), "hourglass.v1.ListTasksRequest.queue"),
    ("ListTasks", ld(4, b"\xff"), "hourglass.v1.ListTasksRequest.page_token"),
    ("ScheduleBatch", ld(1, ld(1, b"\xff")), "hourglass.v1.ScheduleRequest.queue"),
    ("Lease", ld(1, b"\xff"), "hourglass.v1.LeaseRequest.queue"),
    ("Ack", ld(1, b"t") + ld(2, b"\xff"), "hourglass.v1.AckRequest.lease_token"),
    ("Nack", ld(1, b"t") + ld(4, b"\xff"), "hourglass.v1.NackRequest.error"),
    ("ExtendLease", ld(1, b"\xff"), "hourglass.v1.ExtendLeaseRequest.task_id"),
    ("AckBatch", ld(1, ld(1, b"\xff")), "hourglass.v1.AckRequest.task_id"),
]


def _path(method):
    return (CONSUMER if method in _CONSUMER_METHODS else SCHEDULER) + method


def _request_type(method):
    return f"hourglass.v1.{method}Request"


def test_invalid_utf8_in_every_kind_of_string_field(hostile):
    # Every string field of every request: INVALID_ARGUMENT naming the request and the field
    # (gRPC alone answers UNIMPLEMENTED with an empty message), counted under its method.
    counts = {}
    for method, data, field in UTF8_CASES:
        hostile.raw.expect(
            StatusCode.INVALID_ARGUMENT,
            _path(method),
            data,
            f"request is not a valid {_request_type(method)}: string field {field} {NOT_UTF8}",
        )
        counts[method] = counts.get(method, 0) + 1
    for method, count in counts.items():
        assert hostile.handled(method, "INVALID_ARGUMENT") >= count, method
        assert hostile.handled(method, "UNIMPLEMENTED") == 0, method
    # Protobuf's own report goes to the call, not to stderr as a line that is not JSON.
    assert not [line for line in hostile.server.logs() if "libprotobuf" in line]
    failed = [e for e in hostile.server.log_events() if e.get("event") == "rpc_failed"]
    assert any(NOT_UTF8 in e.get("message", "") for e in failed), "no rpc_failed debug line"


# --- nesting ---------------------------------------------------------------------------------


def test_nesting_10000_deep(hostile):
    # Groups are parsed recursively: 10,000 deep is beyond protobuf's limit of 100, at the top of
    # a request, inside a message field, and inside a batch item.
    for method, data in [
        ("Schedule", nested_groups(100, 10_000)),
        ("Schedule", ld(8, nested_groups(100, 10_000))),
        ("Ack", ld(1, b"t") + nested_groups(15, 10_000)),
        ("ScheduleBatch", ld(1, nested_groups(100, 10_000))),
        ("AckBatch", nested_groups(100, 10_000)),
    ]:
        hostile.raw.expect(
            StatusCode.INVALID_ARGUMENT,
            _path(method),
            data,
            f"request is not a valid {_request_type(method)}: {DOES_NOT_PARSE}",
            "nesting deeper than 100 levels",
        )
    # An unknown length-delimited field is kept as bytes, never parsed: 10,000 levels of it are
    # ignored like any field of a newer client, and the request is answered on its merits.
    hostile.raw.expect(
        StatusCode.NOT_FOUND,
        _path("GetStatus"),
        ld(1, b"no-such-task") + nested_messages(100, 10_000),
        'no task with task_id "no-such-task"',
    )


# --- huge maps and batches -------------------------------------------------------------------


def _headers(n, field=4):
    return b"".join(ld(field, ld(1, b"k%d" % i) + ld(2, b"v")) for i in range(n))


def test_huge_maps_and_batches_are_refused_quickly(hostile):
    pid = hostile.server.process.pid
    # 100,000 headers (1.2 MB): parsed (it fits the receive limit), refused by count.
    hostile.raw.expect(
        StatusCode.INVALID_ARGUMENT,
        _path("Schedule"),
        _headers(100_000),
        "headers must have at most 64 entries, got 100000",
    )
    hostile.raw.expect(
        StatusCode.INVALID_ARGUMENT,
        _path("Schedule"),
        ld(8, ld(1, URL) + _headers(100_000, field=2)),
        "http_target.headers must have at most 64 entries, got 100000",
    )
    # A million and two million empty batch items (2 and 4 MB): refused by counting, before any
    # item is parsed.
    for n in (1_000_000, 2_000_000):
        hostile.raw.expect(
            StatusCode.INVALID_ARGUMENT,
            _path("ScheduleBatch"),
            ld(1, b"") * n,
            f"requests must have 1 to 1000 entries, got {n}",
        )
        hostile.raw.expect(
            StatusCode.INVALID_ARGUMENT,
            _path("AckBatch"),
            ld(1, b"") * n,
            f"acks must have 1 to 1000 entries, got {n}",
        )
    # Just above the limit, as a client library builds it.
    client = hostile.server.client()
    batch = scheduler_pb2.ScheduleBatchRequest(
        requests=[scheduler_pb2.ScheduleRequest(queue="x") for _ in range(1001)]
    )
    error = support.expect_error(StatusCode.INVALID_ARGUMENT, client.scheduler.ScheduleBatch, batch)
    assert error.details() == "requests must have 1 to 1000 entries, got 1001"
    acks = consumer_pb2.AckBatchRequest(
        acks=[consumer_pb2.AckRequest(task_id="t", lease_token="l") for _ in range(1001)]
    )
    error = support.expect_error(StatusCode.INVALID_ARGUMENT, client.consumer.AckBatch, acks)
    assert error.details() == "acks must have 1 to 1000 entries, got 1001"
    # Absurd counts in scalar fields.
    support.expect_invalid_argument(
        "max_tasks",
        client.consumer.Lease,
        consumer_pb2.LeaseRequest(queue="x", max_tasks=2**31 - 1),
    )
    support.expect_invalid_argument(
        "page_size",
        client.scheduler.ListTasks,
        scheduler_pb2.ListTasksRequest(page_size=-(2**31)),
    )
    hwm = proc_status(pid)["VmHWM"]
    assert (
        hwm - hostile.start_hwm_kib < RSS_GROWTH_LIMIT_KIB
    ), f"peak RSS grew by {(hwm - hostile.start_hwm_kib) // 1024} MiB"


# --- the receive limit -----------------------------------------------------------------------


def test_message_beyond_the_receive_limit_is_resource_exhausted(hostile):
    # One byte over the limit (a payload field filling it): RESOURCE_EXHAUSTED from gRPC, naming
    # both sizes; the connection stays usable.
    payload = b"x" * (RECEIVE_LIMIT - 4)
    message = ld(3, payload)
    assert len(message) == RECEIVE_LIMIT + 1
    hostile.raw.expect(
        StatusCode.RESOURCE_EXHAUSTED,
        _path("Schedule"),
        message,
        f"Received message larger than max ({RECEIVE_LIMIT + 1} vs. {RECEIVE_LIMIT})",
    )
    hostile.raw.expect(
        StatusCode.RESOURCE_EXHAUSTED,
        _path("ScheduleBatch"),
        ld(1, b"") * (RECEIVE_LIMIT // 2 + 1),
        "Received message larger than max",
    )
    hostile.raw.expect(StatusCode.NOT_FOUND, _path("GetStatus"), ld(1, b"after-the-big-one"))


def test_receive_limit_follows_max_payload_bytes(start_server):
    # --max_payload_bytes=5 MiB: the receive limit is 6 MiB; a 5 MiB + 1 payload fits the limit
    # and is INVALID_ARGUMENT naming the flag; a message over 6 MiB is RESOURCE_EXHAUSTED.
    server = start_server(f"--max_payload_bytes={5 * MIB}")
    raw = RawClient(server.grpc_address)
    try:
        raw.expect(
            StatusCode.INVALID_ARGUMENT,
            _path("Schedule"),
            ld(3, b"x" * (5 * MIB + 1)),
            f"payload must be at most {5 * MIB} bytes (--max_payload_bytes), got {5 * MIB + 1}",
        )
        raw.expect(
            StatusCode.RESOURCE_EXHAUSTED,
            _path("Schedule"),
            ld(3, b"x" * (6 * MIB)),
            f"vs. {6 * MIB})",
        )
        raw.expect(StatusCode.OK, _path("Schedule"), ld(3, b"x" * (5 * MIB)) + ld(1, b"big"))
    finally:
        raw.close()


# --- absurd durations and timestamps ---------------------------------------------------------


def _d(seconds, nanos=0):
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


def _t(seconds, nanos=0):
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


SCHEDULE_TIME_CASES = [
    (
        "delay is not a valid google.protobuf.Duration (seconds 9223372036854775807",
        {"delay": _d(INT64_MAX)},
    ),
    (
        "delay is not a valid google.protobuf.Duration (seconds -9223372036854775807",
        {"delay": _d(-INT64_MAX)},
    ),
    (
        "delay is not a valid google.protobuf.Duration (seconds 1, nanos 2000000000)",
        {"delay": _d(1, 2_000_000_000)},
    ),
    ("delay is not a valid google.protobuf.Duration (seconds 1, nanos -1)", {"delay": _d(1, -1)}),
    ("delay must be >= 0, got -1s", {"delay": _d(-1)}),
    ("delay must be >= 0, got -1ns", {"delay": _d(0, -1)}),
    ("delay must be <= ", {"delay": _d(315_576_000_000, 999_999_999)}),
    (
        "at must be at most 17520h (--max_delay) from now, got 9999-12-31T23:59:59",
        {"at": _t(253_402_300_799)},
    ),
    (
        "at is not a valid google.protobuf.Timestamp (seconds 9223372036854775807",
        {"at": _t(INT64_MAX)},
    ),
    (
        "at is not a valid google.protobuf.Timestamp (seconds -9223372036854775807",
        {"at": _t(-INT64_MAX)},
    ),
    ("at is not a valid google.protobuf.Timestamp (seconds 0, nanos -1)", {"at": _t(0, -1)}),
    (
        "at is not a valid google.protobuf.Timestamp (seconds 0, nanos 1000000000)",
        {"at": _t(0, 10**9)},
    ),
    (
        "retry_policy.min_backoff is not a valid google.protobuf.Duration",
        {"retry_policy": task_pb2.RetryPolicy(min_backoff=_d(INT64_MAX))},
    ),
    (
        "retry_policy.max_backoff must be >= 0, got -1s",
        {"retry_policy": task_pb2.RetryPolicy(max_backoff=_d(-1))},
    ),
    (
        "dispatch_deadline is not a valid google.protobuf.Duration",
        {"http_target": task_pb2.HttpTarget(url=URL.decode()), "dispatch_deadline": _d(INT64_MAX)},
    ),
    (
        "dispatch_deadline must be <= 30m, got 30m0.000000001s",
        {"http_target": task_pb2.HttpTarget(url=URL.decode()), "dispatch_deadline": _d(1800, 1)},
    ),
    (
        "dispatch_deadline must be >= 100ms, got -30m",
        {"http_target": task_pb2.HttpTarget(url=URL.decode()), "dispatch_deadline": _d(-1800)},
    ),
    ("dispatch_deadline applies to push tasks only", {"dispatch_deadline": _d(5)}),
]


@pytest.mark.parametrize(
    "message, fields", SCHEDULE_TIME_CASES, ids=[m.split(" ")[0] for m, _ in SCHEDULE_TIME_CASES]
)
def test_absurd_schedule_times_name_the_field(hostile, message, fields):
    client = hostile.server.client()
    error = support.expect_error(
        StatusCode.INVALID_ARGUMENT, client.schedule, queue=unique("absurd"), **fields
    )
    assert message in error.details(), error.details()


def test_absurd_consumer_and_reschedule_durations_name_the_field(hostile):
    client = hostile.server.client()
    for field, value in [
        ("lease_duration", _d(INT64_MAX)),
        ("lease_duration", _d(-1)),
        ("lease_duration", _d(12 * 3600, 1)),
        ("wait", _d(-INT64_MAX)),
        ("wait", _d(0, -5)),
        ("wait", _d(61)),
    ]:
        request = consumer_pb2.LeaseRequest(queue=unique("absurd"), **{field: value})
        support.expect_invalid_argument(field, client.consumer.Lease, request)
    # Validated before the task is looked up: the id need not exist.
    support.expect_invalid_argument(
        "lease_duration",
        client.consumer.ExtendLease,
        consumer_pb2.ExtendLeaseRequest(task_id="t", lease_token="l", lease_duration=_d(INT64_MAX)),
    )
    for value in (_d(INT64_MAX), _d(-1), _d(0, 10**9)):
        support.expect_invalid_argument(
            "retry_delay",
            client.consumer.Nack,
            consumer_pb2.NackRequest(task_id="t", lease_token="l", retry_delay=value),
        )
    for fields in ({"delay": _d(INT64_MAX)}, {"delay": _d(-5)}, {"at": _t(-INT64_MAX)}):
        support.expect_invalid_argument(
            next(iter(fields)), client.reschedule, task_id="no-such-task", **fields
        )


def test_due_time_before_1970_means_now(hostile):
    # A time in the past means now (documented), 1960 included; before year 1 is not a time.
    client = hostile.server.client()
    queue = unique("past")
    scheduled = client.schedule(queue=queue, at=_t(-315_619_200))  # 1960-01-01
    due_ns = support.ns(scheduled.due_time)
    assert abs(due_ns - time.time_ns()) < 60 * 10**9
    client.cancel(scheduled.task_id)
    support.expect_invalid_argument(
        "at is not a valid google.protobuf.Timestamp",
        client.schedule,
        queue=queue,
        at=_t(-62_135_596_801),
    )


# --- garbage, truncation, empty bodies, wrong wire types -------------------------------------


def test_garbage_and_truncated_bytes(hostile):
    valid = scheduler_pb2.ScheduleRequest(
        queue="q", task_id="t", payload=b"x" * 50, headers={"k": "v"}, delay=duration(5)
    ).SerializeToString()
    for method, data in [
        ("Schedule", b"\xff" * 16),  # a varint that never ends
        ("Schedule", b"\x07"),  # wire type 7 does not exist
        ("Schedule", b"\x00"),  # field number 0
        ("Schedule", valid[: len(valid) // 2]),  # cut inside the payload
        ("Schedule", valid[:-1]),
        ("Schedule", ld(8, b"\x0a\x7f")),  # a length past the end, inside a message field
        ("GetStatus", b"\x0a\x05abc"),
        ("Lease", b"\x10"),  # a tag without its value
        ("ScheduleBatch", ld(1, valid)[:-3]),
        ("AckBatch", b"\x0a\x80\x80\x80\x80\x10"),  # a length varint that is too long
    ]:
        hostile.raw.expect(
            StatusCode.INVALID_ARGUMENT,
            _path(method),
            data,
            f"request is not a valid {_request_type(method)}: {DOES_NOT_PARSE}",
        )


def test_empty_bodies_are_empty_requests(hostile):
    # An empty body is the message with every field unset: judged like any request.
    hostile.raw.expect(
        StatusCode.INVALID_ARGUMENT, _path("GetStatus"), b"", "task_id must not be empty"
    )
    hostile.raw.expect(StatusCode.INVALID_ARGUMENT, _path("Ack"), b"", "task_id must not be empty")
    hostile.raw.expect(
        StatusCode.INVALID_ARGUMENT,
        _path("ScheduleBatch"),
        b"",
        "requests must have 1 to 1000 entries, got 0",
    )
    hostile.raw.expect(
        StatusCode.INVALID_ARGUMENT,
        _path("AckBatch"),
        b"",
        "acks must have 1 to 1000 entries, got 0",
    )
    hostile.raw.expect(StatusCode.OK, _path("ListTasks"), b"")


def test_known_fields_of_the_wrong_wire_type(hostile):
    # protobuf would keep these as unknown fields and leave the field unset (a queue sent as a
    # varint would schedule into "default"): INVALID_ARGUMENT naming the field and the types.
    for method, data, message in [
        (
            "Schedule",
            vi(1, 5),
            "queue (field 1 of hourglass.v1.ScheduleRequest) was sent as a varint, but its type is "
            "string; encode it as its .proto type",
        ),
        (
            "Schedule",
            ld(1, b"q") + vi(5, 10),
            "delay (field 5 of hourglass.v1.ScheduleRequest) was sent as a varint, but its type is "
            "google.protobuf.Duration",
        ),
        (
            "Schedule",
            ld(5, ld(1, b"10")),
            "delay.seconds (field 1 of google.protobuf.Duration) was sent as length-delimited "
            "bytes",
        ),
        (
            "Lease",
            ld(2, b"\x05"),
            "max_tasks (field 2 of hourglass.v1.LeaseRequest) was sent as length-delimited bytes",
        ),
        (
            "ListTasks",
            tag(2, 1) + b"\x06" + b"\x00" * 7,
            "state (field 2 of hourglass.v1.ListTasksRequest) was sent as a fixed64",
        ),
        (
            "ScheduleBatch",
            ld(1, b"") + ld(1, ld(7, tag(1, 5) + b"\x05\x00\x00\x00")),
            "requests[1].retry_policy.max_attempts (field 1 of hourglass.v1.RetryPolicy) was sent "
            "as a fixed32",
        ),
        (
            "AckBatch",
            vi(1, 1),
            "acks (field 1 of hourglass.v1.AckBatchRequest) was sent as a varint, but its type is "
            "repeated hourglass.v1.AckRequest",
        ),
    ]:
        hostile.raw.expect(StatusCode.INVALID_ARGUMENT, _path(method), data, message)
    # Unknown field numbers (a newer client's fields) are ignored, as protobuf intends.
    hostile.raw.expect(
        StatusCode.NOT_FOUND, _path("GetStatus"), ld(1, b"nope") + vi(99, 1) + ld(100, b"x"), "nope"
    )


# --- metadata --------------------------------------------------------------------------------


METADATA_TOO_LARGE = "received initial metadata size exceeds limit"


def expect_metadata_refused(raw, method, data, metadata):
    """Metadata beyond gRPC's 8 KiB: RESOURCE_EXHAUSTED naming the limit, or, when gRPC 1.51
    closes the connection while the client still sends the headers (it does, depending on timing,
    for about half of such calls on a fresh connection), UNAVAILABLE from the client's side of the
    closed socket. Never another code, never slow."""
    code, details, seconds = raw.call(method, data, metadata=metadata)
    if code == StatusCode.RESOURCE_EXHAUSTED:
        assert METADATA_TOO_LARGE in details, details
    else:
        assert code == StatusCode.UNAVAILABLE, (code, details)
        assert details in ("Broken pipe", "Socket closed", "Connection reset by peer"), details
    assert seconds < QUICK_S, f"{seconds:.2f} s"


def test_metadata_abuse(hostile):
    # A 1 MB authorization header, a thousand entries and 50,000 entries: beyond gRPC's metadata
    # limit (8 KiB), each from a client of its own (whose connection gRPC may close); the server
    # serves the other clients on (this test's, and the well-behaved one throughout).
    get_status = _path("GetStatus")
    request = ld(1, b"no-such-task")
    for metadata in (
        [("authorization", "Bearer " + "a" * MIB)],
        [(f"x-entry-{i}", "v") for i in range(1000)],
        [(f"x-entry-{i}", "v") for i in range(50_000)],
    ):
        abuser = RawClient(hostile.server.grpc_address, own_connection=True)
        try:
            expect_metadata_refused(abuser, get_status, request, metadata)
        finally:
            abuser.close()
        hostile.raw.expect(StatusCode.NOT_FOUND, get_status, request)


def test_tokens_that_are_no_tokens(start_server, tmp_path):
    # With --auth_tokens_file: a non-ASCII token (which gRPC clients refuse to send, so it goes
    # out over raw HTTP/2), a binary one, a huge one: UNAUTHENTICATED or RESOURCE_EXHAUSTED, and a
    # valid token still works on the same connection.
    token = "hostile-test-token-0123456789abcdef"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{token} * schedule,consume,admin\n")
    tokens.chmod(0o600)
    server = start_server(f"--auth_tokens_file={tokens}")
    raw = RawHttp2(server.grpc_port)
    try:
        get_status = _path("GetStatus")
        request = ld(1, b"no-such-task")
        for value in (
            "Bearer tökén-0123456789abcdef".encode(),
            b"Bearer \xff\xfe\x00abc",
            b"Bearer",
        ):
            status, message = raw.call(get_status, request, [(b"authorization", value)])
            assert status == StatusCode.UNAUTHENTICATED.value[0], (value, status, message)
            assert "bearer token" in message or "Bearer" in message, message
        # An unparsable request without a valid token learns nothing of the request.
        status, message = raw.call(
            get_status, b"\xff" * 8, [(b"authorization", b"Bearer nope-nope-nope-nope")]
        )
        assert status == StatusCode.UNAUTHENTICATED.value[0], (status, message)
        status, message = raw.call(
            get_status, request, [(b"authorization", f"Bearer {token}".encode())]
        )
        assert status == StatusCode.NOT_FOUND.value[0], (status, message)
        status, message = raw.call(
            get_status, b"\xff" * 8, [(b"authorization", f"Bearer {token}".encode())]
        )
        assert status == StatusCode.INVALID_ARGUMENT.value[0], (status, message)
        assert DOES_NOT_PARSE in message
    finally:
        raw.close()
    client = RawClient(server.grpc_address, own_connection=True)
    try:
        # A 20 KB token: beyond the metadata limit before it is looked at.
        expect_metadata_refused(
            client,
            _path("GetStatus"),
            ld(1, b"no-such-task"),
            [("authorization", "Bearer " + "a" * 20_000)],
        )
    finally:
        client.close()
    log = "\n".join(server.logs())
    assert token not in log


# --- unknown methods -------------------------------------------------------------------------


def test_unknown_methods_are_unimplemented(hostile):
    for method in (
        SCHEDULER + "NoSuchMethod",
        CONSUMER + "schedule",  # names are case-sensitive
        "/hourglass.v2.SchedulerService/Schedule",
        "/x/" + "y" * 5000,
    ):
        hostile.raw.expect(StatusCode.UNIMPLEMENTED, method, ld(1, b"x"))
    # Never a metric label: the series hold the API's methods only.
    methods = {
        labels.get("grpc_method")
        for name, labels, _ in parse_metrics(scrape(hostile.server))
        if name == "hourglass_grpc_server_handled_total"
    }
    assert methods <= {
        "Schedule",
        "Cancel",
        "GetStatus",
        "Reschedule",
        "ScheduleBatch",
        "ListTasks",
        "RetryTask",
        "Lease",
        "Ack",
        "Nack",
        "ExtendLease",
        "AckBatch",
    }, methods


# --- idle and half-sent connections ----------------------------------------------------------


def test_idle_and_half_sent_connections_do_not_block_others(hostile):
    # 300 connections: 100 silent, 100 stopped in the middle of the HTTP/2 preface, 100 with a
    # call whose 1 MB message stops after 10 bytes. Meanwhile a new client connects and is
    # served at once, as is the well-behaved client; after they are closed the server is fine.
    port = hostile.server.grpc_port
    held = []
    try:
        for _ in range(100):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        for _ in range(100):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"PRI * HTTP/2.0\r\n")
            held.append(sock)
        for _ in range(100):
            conn = RawHttp2(port)
            stream = conn.start(_path("Schedule"))
            conn.send(stream, b"\x00" + MIB.to_bytes(4, "big") + b"x" * 10, end_stream=False)
            held.append(conn.sock)
        fresh = support.Client(hostile.server.grpc_address)
        try:
            start = time.monotonic()
            task_id = fresh.schedule(queue=unique("fresh"), delay=duration(3600)).task_id
            fresh.cancel(task_id)
            assert time.monotonic() - start < QUICK_S
        finally:
            fresh.close()
        time.sleep(1.0)  # The well-behaved client keeps going meanwhile (checked at the end).
    finally:
        for sock in held:
            sock.close()
    assert hostile.server.running()
    hostile.raw.expect(StatusCode.NOT_FOUND, _path("GetStatus"), ld(1, b"after-the-sockets"))


# --- last: the well-behaved client was served, and nothing hostile got in --------------------


def test_zz_well_behaved_client_was_served_and_nothing_hostile_got_in(hostile):
    client = hostile.well_behaved
    client.stop()
    assert not client.errors, client.errors[:10]
    assert len(client.scheduled) >= 50, f"only {len(client.scheduled)} tasks in the whole run"
    assert (
        client.scheduled == client.acked
    ), f"{len(client.scheduled - client.acked)} scheduled tasks were never delivered"
    assert client.slowest_s < SERVED_WITHIN_S, f"slowest call {client.slowest_s:.2f} s"
    server = hostile.server
    assert server.running()
    samples = parse_metrics(scrape(server))
    pending = sum(
        metric_value(samples, "hourglass_tasks", state=state)
        for state in ("scheduled", "ready", "leased")
    )
    assert pending == 0, f"{pending} tasks pending: a hostile request was scheduled"
    assert metric_value(samples, "hourglass_tasks", queue="default") == 0
    acked = metric_value(samples, "hourglass_task_deliveries_total", queue=client.queue)
    assert acked == len(client.acked)
    hwm = proc_status(server.process.pid)["VmHWM"]
    assert hwm - hostile.start_hwm_kib < RSS_GROWTH_LIMIT_KIB
    assert not [
        line for line in server.logs() if line and not line.startswith("{")
    ], "the server wrote lines that are not JSON"
