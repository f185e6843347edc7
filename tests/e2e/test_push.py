"""Push delivery against real receivers started by the tests, all on 127.0.0.1.

HTTP receivers are http.server.ThreadingHTTPServer instances in threads; the gRPC receiver is a
grpc.server serving billing.v1.Invoices (tests/e2e/protos/receiver.proto). Servers that deliver
run with --push_allowlist=127.0.0.0/8 (loopback is refused by default); the SSRF and validation
tests use the shared server, which has no allowlist. Retry policies use short backoffs (200 ms) so
that the file stays fast.
"""

import calendar
import collections
import concurrent.futures
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

import support
from support import (
    BINARY,
    EARLY_TOLERANCE_NS,
    REPO_ROOT,
    STUBS_DIR,
    State,
    StatusCode,
    duration,
    expect_error,
    expect_invalid_argument,
    metric_value,
    now_ns,
    ns,
    parse_metrics,
    scheduler_pb2,
    scrape,
    task_pb2,
    unique,
    wait_until,
)

SECOND_NS = 1_000_000_000
MS_NS = 1_000_000
ALLOW_LOOPBACK = "--push_allowlist=127.0.0.0/8"
MIN_BACKOFF_S = 0.2
# Slack for "no sooner than": the receiver's clock reads a little after the server's.
EARLY_TOLERANCE_S = EARLY_TOLERANCE_NS / 1e9
FINAL_STATES = (State.TASK_STATE_SUCCEEDED, State.TASK_STATE_DEAD, State.TASK_STATE_CANCELLED)


# --- the receiver's generated stubs -------------------------------------------------------


def _import_receiver_stubs():
    """billing.v1 stubs of tests/e2e/protos/receiver.proto, generated into HOURGLASS_PY_STUBS by
    tools/gen_python_stubs.sh."""
    import receiver_pb2
    import receiver_pb2_grpc

    return receiver_pb2, receiver_pb2_grpc


receiver_pb2, receiver_grpc = _import_receiver_stubs()


# --- helpers ------------------------------------------------------------------------------


def retry_policy(max_attempts=5, min_backoff_s=MIN_BACKOFF_S, max_backoff_s=1.0):
    return task_pb2.RetryPolicy(
        max_attempts=max_attempts,
        min_backoff=duration(min_backoff_s),
        max_backoff=duration(max_backoff_s),
    )


def http_target(url, headers=None):
    return task_pb2.HttpTarget(url=url, headers=headers or {})


def wait_final(client, task_id, timeout_s=15):
    """Polls GetStatus until the task is SUCCEEDED, DEAD or CANCELLED; returns it."""
    return wait_until(
        lambda: (lambda t: t if t.state in FINAL_STATES else None)(client.status(task_id)),
        timeout_s,
        interval_s=0.05,
        what=f"task {task_id} to finish",
    )


def wait_state(client, task_id, state, timeout_s=15):
    task = wait_final(client, task_id, timeout_s)
    assert task.state == state, (
        f"task {task_id} ended {State.Name(task.state)}, expected {State.Name(state)}; "
        f"attempts {task.attempts}, last_error {task.last_error!r}"
    )
    return task


def metrics(server):
    return parse_metrics(scrape(server))


def metric_delta(before, after, name, **labels):
    """How much a counter grew between two scrapes."""
    return metric_value(after, name, **labels) - metric_value(before, name, **labels)


def rfc3339_ns(text):
    """Nanoseconds since the epoch of an RFC 3339 UTC time such as 2026-11-28T14:30:00.123Z."""
    match = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z", text)
    assert match, f"not an RFC 3339 UTC time: {text!r}"
    *fields, fraction = match.groups()
    seconds = calendar.timegm(tuple(int(f) for f in fields))
    return seconds * SECOND_NS + int((fraction or "").ljust(9, "0"))


def stop_server(server):
    code, _ = server.terminate(close_clients_first=True)
    assert code == 0, f"hourglass exited with {code} after SIGTERM\n" + server.log_tail()


class Received:
    """One request an HttpReceiver got."""

    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers  # email.message.Message: case-insensitive get()
        self.body = body
        self.monotonic = time.monotonic()
        self.wall_ns = time.time_ns()
        self.task_id = headers.get("Hourglass-Task-Id")
        self.seen = 0  # 1 for the first request of this task id the receiver got, 2 ...

    def header(self, name):
        return self.headers.get(name)


class HttpReceiver:
    """An HTTP endpoint on 127.0.0.1 that records every request and answers with `respond`.

    respond(received) -> (status, {header: value}, body), or raises ConnectionAbortedError to
    close the connection without an answer. It runs on the request's own thread, so it may block
    (hang()); close() ends every hang.
    """

    def __init__(self, respond, host="127.0.0.1"):
        self.respond = respond
        self.host = host
        self.requests = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                received = Received(self.command, self.path, self.headers, body)
                with receiver._lock:
                    received.seen = 1 + sum(
                        1 for r in receiver.requests if r.task_id == received.task_id
                    )
                    receiver.requests.append(received)
                try:
                    status, headers, answer = receiver.respond(received)
                except ConnectionAbortedError:
                    self.close_connection = True  # close without a response
                    return
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # The server gave up on this request (its dispatch deadline).

            do_POST = do_GET = do_PUT = _handle

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer((host, 0), Handler)
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        self._thread = threading.Thread(
            target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path="/hook"):
        return f"http://{self.host}:{self.port}{path}"

    def of(self, task_id):
        with self._lock:
            return [r for r in self.requests if r.task_id == task_id]

    def count(self):
        with self._lock:
            return len(self.requests)

    def hang(self, seconds=60):
        self._released.wait(seconds)

    def close(self):
        self._released.set()
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def http_receiver():
    """make(respond, host="127.0.0.1") -> a started HttpReceiver, closed after the test."""
    receivers = []

    def make(respond, host="127.0.0.1"):
        receiver = HttpReceiver(respond, host)
        receivers.append(receiver)
        return receiver

    yield make
    for receiver in receivers:
        receiver.close()


def ok(_received):
    return 200, {}, b"ok"


@pytest.fixture(scope="module")
def push_server(work_dir):
    """A server that may deliver to loopback, shared by the tests of this file that wait for
    their own tasks to finish."""
    server = support.Server(os.path.join(work_dir, "push-data"), (ALLOW_LOOPBACK,))
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and not server.killed and server.started_event:
            stop_server(server)


@pytest.fixture
def push_client(push_server):
    return push_server.client()


# --- 1. HTTP delivery ---------------------------------------------------------------------


def test_http_delivery_headers_body_retry_and_due_time(push_server, push_client, http_receiver):
    # Tasks are POSTed no sooner than due, with their payload and every header; a 503 on the
    # first attempt is retried no sooner than min_backoff later and succeeds on attempt 2.
    fail_first = set()

    def respond(received):
        if received.task_id in fail_first and received.seen == 1:
            return 503, {}, b"warming up"
        return 200, {}, b"done"

    receiver = http_receiver(respond)
    before = metrics(push_server)
    queue = unique("hooks")
    target_headers = {"Content-Type": "application/json", "Authorization": "Bearer t0ken"}
    tasks = {}  # task_id -> (index, payload, headers, delay, monotonic before Schedule, response)
    for i in range(6):
        task_id = unique(f"push{i}")
        if i % 2 == 0:
            fail_first.add(task_id)
        payload = b'{"order": %d, "bytes": "\x00\xff"}' % i
        task_headers = {"X-Trace": f"trace-{i}", "X-Tenant": "acme"}
        delay_s = 0.3 + 0.15 * i
        sent = time.monotonic()
        response = push_client.schedule(
            queue=queue,
            task_id=task_id,
            payload=payload,
            headers=task_headers,
            delay=duration(delay_s),
            retry_policy=retry_policy(),
            http_target=http_target(receiver.url(f"/orders/{i}?x=1"), target_headers),
        )
        tasks[task_id] = (i, payload, task_headers, delay_s, sent, response)

    for task_id, (index, payload, task_headers, delay_s, sent, response) in tasks.items():
        expected_attempts = 2 if task_id in fail_first else 1
        task = wait_state(push_client, task_id, State.TASK_STATE_SUCCEEDED)
        assert task.attempts == expected_attempts, f"{task_id}: attempts {task.attempts}"
        requests = receiver.of(task_id)
        assert len(requests) == expected_attempts, f"{task_id}: {len(requests)} requests"
        due = ns(response.due_time)
        for attempt, received in enumerate(requests, start=1):
            assert received.method == "POST"
            assert received.path == f"/orders/{index}?x=1"
            assert received.body == payload
            assert received.header("Content-Type") == "application/json"
            assert received.header("Authorization") == "Bearer t0ken"
            for key, value in task_headers.items():
                assert received.header(key) == value, f"{task_id}: header {key}"
            assert received.header("Hourglass-Task-Id") == task_id
            assert received.header("Hourglass-Queue") == queue
            assert received.header("Hourglass-Attempt") == str(attempt)
            # Never early: not before the schedule call plus the delay, nor before due_time.
            early_s = sent + delay_s - received.monotonic
            assert early_s <= EARLY_TOLERANCE_S, f"{task_id} delivered {early_s * 1e3:.1f} ms early"
            assert received.wall_ns >= due - EARLY_TOLERANCE_NS - 5 * MS_NS
        first_due = rfc3339_ns(requests[0].header("Hourglass-Due-Time"))
        assert abs(first_due - due) < MS_NS, (
            f"Hourglass-Due-Time {requests[0].header('Hourglass-Due-Time')} "
            f"is not the task's due time {due}"
        )
        if expected_attempts == 2:
            gap_s = requests[1].monotonic - requests[0].monotonic
            assert gap_s >= MIN_BACKOFF_S - EARLY_TOLERANCE_S, f"retried after {gap_s:.3f} s"
            # The retry's due time is the backoff's end, so it is later than the first one.
            retry_due = rfc3339_ns(requests[1].header("Hourglass-Due-Time"))
            assert retry_due >= first_due + int(MIN_BACKOFF_S * SECOND_NS) - MS_NS
            assert task.last_error.startswith("HTTP 503"), task.last_error

    after = metrics(push_server)
    deliveries = "hourglass_push_deliveries_total"
    assert metric_delta(before, after, deliveries, target="http", outcome="succeeded") == 6
    assert metric_delta(before, after, deliveries, target="http", outcome="retried") == 3
    durations = "hourglass_push_delivery_duration_seconds_count"
    assert metric_delta(before, after, durations, target="http") == 9
    # Settles at 0 (it also counts workers looking for more work, for a few ms after the end).
    wait_until(
        lambda: metric_value(metrics(push_server), "hourglass_push_in_flight", queue=queue) == 0,
        5,
        what=f"hourglass_push_in_flight{{queue={queue!r}}} to return to 0",
    )


def test_http_default_content_type_and_large_payload(push_client, http_receiver):
    # Without a Content-Type of its own, a push is application/octet-stream; a payload of
    # nearly 1 MiB of arbitrary bytes arrives intact.
    receiver = http_receiver(ok)
    payload = os.urandom(1024 * 1024 - 1)
    task_id = unique("ctype")
    push_client.schedule(
        queue=unique("ctype"),
        task_id=task_id,
        payload=payload,
        http_target=http_target(receiver.url()),
    )
    wait_state(push_client, task_id, State.TASK_STATE_SUCCEEDED)
    (received,) = receiver.of(task_id)
    assert received.header("Content-Type") == "application/octet-stream"
    assert received.body == payload


def test_http_empty_header_value_is_sent(push_client, http_receiver):
    # Regression (fixed in a9e81b9): a header with an empty value, which
    # Schedule accepts, is silently left out of the request (libcurl reads "Name: " with
    # nothing after the colon as "remove this header"; an empty "Accept" even removes curl's
    # own). gRPC pushes do send empty values. Expected: the header arrives with value "".
    receiver = http_receiver(ok)
    task_id = unique("empty")
    push_client.schedule(
        queue=unique("empty"),
        task_id=task_id,
        headers={"X-Empty-Task": ""},
        http_target=http_target(receiver.url(), {"X-Empty-Target": ""}),
    )
    wait_state(push_client, task_id, State.TASK_STATE_SUCCEEDED)
    (received,) = receiver.of(task_id)
    assert received.header("X-Empty-Target") == "", received.headers.items()
    assert received.header("X-Empty-Task") == "", received.headers.items()


def test_http_header_set_by_target_and_task_is_sent_once(push_client, http_receiver):
    # Regression (fixed in a9e81b9): a header named in both
    # http_target.headers and the task's headers (any case) is sent twice, e.g. two
    # Content-Type fields, which RFC 9110 forbids for a singleton field; receivers may reject
    # the request or pick either. Expected: INVALID_ARGUMENT naming "headers" at Schedule, or
    # one Content-Type field on the wire.
    receiver = http_receiver(ok)
    task_id = unique("twice")
    try:
        push_client.schedule(
            queue=unique("twice"),
            task_id=task_id,
            headers={"content-type": "text/plain"},
            http_target=http_target(receiver.url(), {"Content-Type": "application/json"}),
        )
    except grpc.RpcError as error:
        assert error.code() == StatusCode.INVALID_ARGUMENT, error
        assert "headers" in error.details(), error.details()
        return
    wait_state(push_client, task_id, State.TASK_STATE_SUCCEEDED)
    (received,) = receiver.of(task_id)
    content_types = received.headers.get_all("Content-Type")
    assert len(content_types) == 1, f"Content-Type sent {len(content_types)} times: {content_types}"


def test_push_tasks_are_never_leased(push_client, http_receiver):
    # In a queue with pull and push tasks, Lease hands out only the pull task, even while the
    # push task is due (its delivery takes a second).
    def respond(received):
        receiver.hang(1.0)
        return 200, {}, b"ok"

    receiver = http_receiver(respond)
    queue = unique("mixed")
    push = push_client.schedule(
        queue=queue, payload=b"push", http_target=http_target(receiver.url())
    )
    pull = push_client.schedule(queue=queue, payload=b"pull")
    wait_until(lambda: receiver.of(push.task_id), 5, what="the push delivery")
    leased = push_client.lease(queue, wait_s=0.5, max_tasks=10)
    assert [t.task_id for t in leased] == [pull.task_id]
    push_client.ack(pull.task_id, leased[0].lease_token)
    assert list(push_client.lease(queue, wait_s=0.5, max_tasks=10)) == []
    task = wait_state(push_client, push.task_id, State.TASK_STATE_SUCCEEDED)
    assert task.attempts == 1


# --- 2. failures, DEAD, ListTasks, RetryTask ----------------------------------------------


def test_http_500_dead_list_and_retry(push_server, push_client, http_receiver):
    # Always 500: DEAD after exactly max_attempts requests; ListTasks pages through the DEAD
    # tasks; RetryTask sends one back and it succeeds once the receiver does.
    answer = {"status": 500}

    def respond(received):
        return answer["status"], {}, b"boom" if answer["status"] == 500 else b"ok"

    receiver = http_receiver(respond)
    queue = unique("dead")
    ids = []
    for i in range(3):
        task_id = unique(f"dead{i}")
        ids.append(task_id)
        push_client.schedule(
            queue=queue,
            task_id=task_id,
            payload=f"payload {i}".encode(),
            retry_policy=retry_policy(max_attempts=3, max_backoff_s=0.4),
            http_target=http_target(receiver.url()),
            dispatch_deadline=duration(5),
        )
    for task_id in ids:
        task = wait_state(push_client, task_id, State.TASK_STATE_DEAD)
        assert task.attempts == 3
        assert task.last_error == "HTTP 500: boom", task.last_error
        assert len(receiver.of(task_id)) == 3
    time.sleep(0.5)  # No fourth request comes.
    assert [len(receiver.of(task_id)) for task_id in ids] == [3, 3, 3]

    # One page of up to 100 has them all, with their last_error and target.
    listed = push_client.scheduler.ListTasks(
        scheduler_pb2.ListTasksRequest(queue=queue, state=State.TASK_STATE_DEAD)
    )
    assert sorted(t.task_id for t in listed.tasks) == sorted(ids)
    assert listed.next_page_token == ""
    for task in listed.tasks:
        assert task.state == State.TASK_STATE_DEAD
        assert task.attempts == 3
        assert "HTTP 500" in task.last_error
        assert task.http_target.url == receiver.url()
        assert task.dispatch_deadline.ToNanoseconds() == 5 * SECOND_NS

    # page_size 1: every task exactly once, then an empty token.
    seen, token, pages, first_token = [], "", 0, None
    while True:
        page = push_client.scheduler.ListTasks(
            scheduler_pb2.ListTasksRequest(
                queue=queue, state=State.TASK_STATE_DEAD, page_size=1, page_token=token
            )
        )
        pages += 1
        assert len(page.tasks) <= 1
        seen.extend(t.task_id for t in page.tasks)
        token = page.next_page_token
        if not token:
            break
        assert pages < 10, "ListTasks keeps returning a next_page_token"
        first_token = first_token or token
    assert sorted(seen) == sorted(ids), seen
    assert pages >= 3
    assert first_token

    # A token only works with the filter it was made for.
    for other in (
        scheduler_pb2.ListTasksRequest(queue=queue, state=State.TASK_STATE_SUCCEEDED),
        scheduler_pb2.ListTasksRequest(queue=unique("other"), state=State.TASK_STATE_DEAD),
        scheduler_pb2.ListTasksRequest(state=State.TASK_STATE_DEAD),
    ):
        other.page_size = 1
        other.page_token = first_token
        expect_invalid_argument("page_token", push_client.scheduler.ListTasks, other)
    expect_invalid_argument(
        "page_token",
        push_client.scheduler.ListTasks,
        scheduler_pb2.ListTasksRequest(queue=queue, page_token="not a token"),
    )
    expect_invalid_argument(
        "page_size",
        push_client.scheduler.ListTasks,
        scheduler_pb2.ListTasksRequest(queue=queue, page_size=1001),
    )

    # RetryTask: back to SCHEDULED, due now, attempts reset; then delivered and SUCCEEDED.
    answer["status"] = 200
    retried = push_client.scheduler.RetryTask(scheduler_pb2.RetryTaskRequest(task_id=ids[0])).task
    assert retried.task_id == ids[0]
    assert retried.state in (
        State.TASK_STATE_SCHEDULED,
        State.TASK_STATE_READY,
        State.TASK_STATE_LEASED,
    )
    assert retried.attempts == 0
    assert abs(ns(retried.due_time) - now_ns()) < 5 * SECOND_NS
    task = wait_state(push_client, ids[0], State.TASK_STATE_SUCCEEDED)
    assert task.attempts == 1
    requests = receiver.of(ids[0])
    assert len(requests) == 4
    assert requests[-1].body == b"payload 0"  # DEAD kept the payload.
    assert requests[-1].header("Hourglass-Attempt") == "1"

    # Not DEAD: FAILED_PRECONDITION (SUCCEEDED, and a SCHEDULED one); unknown: NOT_FOUND.
    expect_error(
        StatusCode.FAILED_PRECONDITION,
        push_client.scheduler.RetryTask,
        scheduler_pb2.RetryTaskRequest(task_id=ids[0]),
    )
    later = push_client.schedule(
        queue=queue, delay=duration(3600), http_target=http_target(receiver.url())
    )
    expect_error(
        StatusCode.FAILED_PRECONDITION,
        push_client.scheduler.RetryTask,
        scheduler_pb2.RetryTaskRequest(task_id=later.task_id),
    )
    push_client.cancel(later.task_id)
    expect_error(
        StatusCode.NOT_FOUND,
        push_client.scheduler.RetryTask,
        scheduler_pb2.RetryTaskRequest(task_id=unique("no-such-task")),
    )
    # The others are still DEAD and listed.
    listed = push_client.scheduler.ListTasks(
        scheduler_pb2.ListTasksRequest(queue=queue, state=State.TASK_STATE_DEAD)
    )
    assert sorted(t.task_id for t in listed.tasks) == sorted(ids[1:])


def test_http_404_is_dead_at_once(push_server, push_client, http_receiver):
    # A 4xx other than 408/429 is not retried: DEAD after one request.
    receiver = http_receiver(lambda received: (404, {}, b"no such hook " + b"x" * 1000))
    before = metrics(push_server)
    task_id = unique("gone")
    push_client.schedule(
        queue=unique("gone"),
        task_id=task_id,
        retry_policy=retry_policy(max_attempts=5),
        http_target=http_target(receiver.url("/missing")),
    )
    task = wait_state(push_client, task_id, State.TASK_STATE_DEAD)
    assert task.attempts == 1
    # The status and the first 200 bytes of the body.
    assert task.last_error.startswith("HTTP 404: no such hook xxx"), task.last_error
    assert len(task.last_error) <= len("HTTP 404: ") + 200 + 20, task.last_error
    time.sleep(MIN_BACKOFF_S * 2)
    assert len(receiver.of(task_id)) == 1
    after = metrics(push_server)
    deliveries = "hourglass_push_deliveries_total"
    assert metric_delta(before, after, deliveries, target="http", outcome="dead") == 1


def test_http_429_retry_after_is_honoured(push_client, http_receiver):
    # 429 with Retry-After: 1 is retried no sooner than 1 s later, though min_backoff is 200 ms.
    def respond(received):
        if received.seen == 1:
            return 429, {"Retry-After": "1"}, b"slow down"
        return 200, {}, b"ok"

    receiver = http_receiver(respond)
    task_id = unique("throttled")
    push_client.schedule(
        queue=unique("throttled"),
        task_id=task_id,
        retry_policy=retry_policy(),
        http_target=http_target(receiver.url()),
    )
    task = wait_state(push_client, task_id, State.TASK_STATE_SUCCEEDED)
    assert task.attempts == 2
    first, second = receiver.of(task_id)
    gap_s = second.monotonic - first.monotonic
    assert gap_s >= 1.0 - EARLY_TOLERANCE_S, f"retried {gap_s:.3f} s after a Retry-After of 1 s"
    assert gap_s < 5.0, f"retried only after {gap_s:.3f} s"


@pytest.mark.parametrize(
    "status, state, attempts",
    [
        (201, State.TASK_STATE_SUCCEEDED, 1),
        (204, State.TASK_STATE_SUCCEEDED, 1),
        (400, State.TASK_STATE_DEAD, 1),
        (403, State.TASK_STATE_DEAD, 1),
        (408, State.TASK_STATE_DEAD, 2),
        (502, State.TASK_STATE_DEAD, 2),
        (504, State.TASK_STATE_DEAD, 2),
    ],
)
def test_http_status_outcomes(push_client, http_receiver, status, state, attempts):
    # 2xx succeeds; 408 and 5xx are retried (here up to max_attempts 2); other 4xx are final.
    receiver = http_receiver(lambda received: (status, {}, b""))
    task_id = unique(f"status{status}")
    push_client.schedule(
        queue=unique("status"),
        task_id=task_id,
        retry_policy=retry_policy(max_attempts=2),
        http_target=http_target(receiver.url()),
    )
    task = wait_state(push_client, task_id, state)
    assert task.attempts == attempts
    assert len(receiver.of(task_id)) == attempts
    if state == State.TASK_STATE_DEAD:
        assert task.last_error.startswith(f"HTTP {status}"), task.last_error


def test_http_redirect_is_not_followed(push_client, http_receiver):
    # A 3xx is final (DEAD at once) and its Location is never requested.
    elsewhere = http_receiver(ok)
    receiver = http_receiver(lambda received: (302, {"Location": elsewhere.url("/moved")}, b""))
    task_id = unique("redirect")
    push_client.schedule(
        queue=unique("redirect"),
        task_id=task_id,
        retry_policy=retry_policy(),
        http_target=http_target(receiver.url()),
    )
    task = wait_state(push_client, task_id, State.TASK_STATE_DEAD)
    assert task.attempts == 1
    assert task.last_error.startswith("HTTP 302"), task.last_error
    assert "redirect" in task.last_error, task.last_error
    time.sleep(0.3)
    assert len(receiver.of(task_id)) == 1
    assert elsewhere.count() == 0


def test_http_connection_closed_without_answer_is_retried(push_client, http_receiver):
    # A receiver that drops the connection before answering: a connection error, retried.
    def respond(received):
        if received.seen == 1:
            raise ConnectionAbortedError("drop it")  # ends the handler without a response
        return 200, {}, b"ok"

    receiver = http_receiver(respond)
    task_id = unique("dropped")
    push_client.schedule(
        queue=unique("dropped"),
        task_id=task_id,
        retry_policy=retry_policy(),
        http_target=http_target(receiver.url()),
    )
    task = wait_state(push_client, task_id, State.TASK_STATE_SUCCEEDED)
    assert task.attempts == 2
    assert len(receiver.of(task_id)) == 2


def test_many_tasks_each_delivered_until_success(push_client, http_receiver):
    # 400 push tasks over 4 queues, due within a second, a tenth of the answers 503: every
    # task ends SUCCEEDED, and its attempts are exactly the requests the receiver got for it
    # (none lost, none sent twice by the dispatcher).
    rng = random.Random(20261128)
    lock = threading.Lock()

    def respond(received):
        with lock:
            fail = rng.random() < 0.1
        return (503, {}, b"busy") if fail else (200, {}, b"ok")

    receiver = http_receiver(respond)
    queues = [unique(f"many{i}") for i in range(4)]
    requests = [
        scheduler_pb2.ScheduleRequest(
            queue=queues[i % 4],
            payload=str(i).encode(),
            delay=duration((i % 10) / 10),
            retry_policy=retry_policy(max_attempts=20, min_backoff_s=0.05, max_backoff_s=0.2),
            http_target=http_target(receiver.url()),
        )
        for i in range(400)
    ]
    results = push_client.scheduler.ScheduleBatch(
        scheduler_pb2.ScheduleBatchRequest(requests=requests)
    ).results
    assert all(r.code == 0 for r in results)
    ids = [r.response.task_id for r in results]

    def all_succeeded():
        listed = []
        for queue in queues:
            page = push_client.scheduler.ListTasks(
                scheduler_pb2.ListTasksRequest(
                    queue=queue, state=State.TASK_STATE_SUCCEEDED, page_size=1000
                )
            )
            listed.extend(page.tasks)
        return listed if len(listed) == len(ids) else None

    tasks = wait_until(all_succeeded, 20, interval_s=0.2, what="400 push tasks to succeed")
    sent = collections.Counter(r.task_id for r in receiver.requests)
    assert sorted(t.task_id for t in tasks) == sorted(ids)
    mismatched = [
        (t.task_id, t.attempts, sent[t.task_id]) for t in tasks if t.attempts != sent[t.task_id]
    ]
    assert not mismatched, f"attempts vs requests received: {mismatched[:5]}"


# --- 3. a hanging queue does not hold up the others ---------------------------------------


def test_hanging_queue_is_isolated(start_server, http_receiver):
    # Tasks of queue "slow" hang beyond their 1 s dispatch deadline; at most 2 of them are in
    # flight at once, and the 30 tasks of queue "fast" are all delivered meanwhile.
    server = start_server(ALLOW_LOOPBACK, "--push_workers=4", "--queue_concurrency=2")
    client = server.client()

    def hang(received):
        slow_receiver.hang()
        return 200, {}, b"late"

    slow_receiver = http_receiver(hang)
    fast_receiver = http_receiver(ok)

    in_flight = {"slow": [], "fast": []}
    scraping = threading.Event()

    def scrape_loop():
        while not scraping.is_set():
            samples = metrics(server)
            for queue in in_flight:
                in_flight[queue].append(
                    metric_value(samples, "hourglass_push_in_flight", queue=queue)
                )
            time.sleep(0.03)

    scraper = threading.Thread(target=scrape_loop, daemon=True)
    scraper.start()
    try:
        slow_ids = []
        for i in range(4):
            response = client.schedule(
                queue="slow",
                task_id=unique(f"slow{i}"),
                retry_policy=retry_policy(max_attempts=1),
                http_target=http_target(slow_receiver.url("/slow")),
                dispatch_deadline=duration(1),
            )
            slow_ids.append(response.task_id)
        wait_until(lambda: slow_receiver.count() >= 2, 5, what="the slow receiver to hang")

        start = time.monotonic()
        fast_ids = [
            client.schedule(
                queue="fast",
                payload=f"fast {i}".encode(),
                retry_policy=retry_policy(),
                http_target=http_target(fast_receiver.url("/fast")),
                dispatch_deadline=duration(1),
            ).task_id
            for i in range(30)
        ]
        for task_id in fast_ids:
            task = wait_state(client, task_id, State.TASK_STATE_SUCCEEDED, timeout_s=10)
            assert task.attempts == 1
        fast_s = time.monotonic() - start
        slow_states = [client.status(task_id).state for task_id in slow_ids]
        assert fast_s < 5, f"the fast queue took {fast_s:.1f} s behind a hanging one"
        assert any(s not in FINAL_STATES for s in slow_states), "slow tasks were not stuck"
        assert fast_receiver.count() == 30

        # Every slow attempt runs out its deadline (4 tasks, 2 at a time); one attempt each.
        for task_id in slow_ids:
            task = wait_state(client, task_id, State.TASK_STATE_DEAD, timeout_s=30)
            assert task.attempts == 1
            assert "dispatch deadline" in task.last_error, task.last_error
            assert len(slow_receiver.of(task_id)) == 1
    finally:
        scraping.set()
        scraper.join(10)

    assert max(in_flight["slow"]) == 2, f"in flight in 'slow': {sorted(set(in_flight['slow']))}"
    assert max(in_flight["fast"]) <= 2, f"in flight in 'fast': {sorted(set(in_flight['fast']))}"
    # The receiver's view: each attempt holds a slot for ~1 s, so no 0.8 s window saw 3 arrive.
    arrivals = sorted(r.monotonic for r in slow_receiver.requests)
    for i in range(len(arrivals) - 2):
        assert arrivals[i + 2] - arrivals[i] > 0.8, f"3 slow requests within 0.8 s: {arrivals}"
    wait_until(
        lambda: metric_value(metrics(server), "hourglass_push_in_flight", queue="slow") == 0,
        5,
        what="hourglass_push_in_flight{queue='slow'} to return to 0",
    )


# --- 4. gRPC delivery ---------------------------------------------------------------------


class InvoicesReceiver(receiver_grpc.InvoicesServicer):
    """billing.v1.Invoices: records every call; invoice ids choose the answer."""

    def __init__(self):
        self.calls = []  # (CloseInvoiceRequest, {metadata key: value}, monotonic)
        self.time_remaining = {}  # invoice id -> seconds left of the caller's deadline
        self.released = threading.Event()  # ends the "slow" calls
        self._lock = threading.Lock()

    def Close(self, request, context):
        metadata = {}
        for key, value in context.invocation_metadata():
            metadata[key] = value
        with self._lock:
            self.calls.append((request, metadata, time.monotonic()))
            seen = sum(1 for r, _, _ in self.calls if r.invoice_id == request.invoice_id)
            self.time_remaining[request.invoice_id] = context.time_remaining()
        if request.invoice_id.startswith("slow"):
            self.released.wait(10)
        if request.invoice_id.startswith("flaky") and seen == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "not ready yet")
        if request.invoice_id.startswith("bad"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no such invoice")
        return receiver_pb2.CloseInvoiceResponse(invoice_id=request.invoice_id, closed=True)

    def of(self, invoice_id):
        with self._lock:
            return [c for c in self.calls if c[0].invoice_id == invoice_id]


@pytest.fixture
def invoices():
    servicer = InvoicesReceiver()
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=8))
    receiver_grpc.add_InvoicesServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.address = f"127.0.0.1:{port}"
    yield servicer
    servicer.released.set()
    server.stop(0)


def schedule_invoice(client, servicer, invoice_id, method="/billing.v1.Invoices/Close", **fields):
    request = receiver_pb2.CloseInvoiceRequest(
        invoice_id=invoice_id, amount_cents=12345, note="due today"
    )
    return client.schedule(
        queue=fields.pop("queue", unique("billing")),
        task_id=unique(invoice_id),
        payload=request.SerializeToString(),
        retry_policy=fields.pop("retry_policy", retry_policy()),
        grpc_target=task_pb2.GrpcTarget(address=servicer.address, method=method),
        **fields,
    )


def test_grpc_delivery(push_server, push_client, invoices):
    # The receiver gets the decoded message with the hourglass-* metadata and the task's
    # headers; UNAVAILABLE once is retried; INVALID_ARGUMENT and UNIMPLEMENTED are DEAD at once.
    before = metrics(push_server)
    queue = unique("billing")
    sent = time.monotonic()
    good = schedule_invoice(
        push_client,
        invoices,
        "inv-1",
        queue=queue,
        delay=duration(0.3),
        headers={"x-tenant": "acme", "x-request-id": "r-1"},
    )
    task = wait_state(push_client, good.task_id, State.TASK_STATE_SUCCEEDED)
    assert task.attempts == 1
    ((request, metadata, received),) = invoices.of("inv-1")
    assert request == receiver_pb2.CloseInvoiceRequest(
        invoice_id="inv-1", amount_cents=12345, note="due today"
    )
    assert received >= sent + 0.3 - EARLY_TOLERANCE_S
    assert metadata.get("hourglass-task-id") == good.task_id
    assert metadata.get("hourglass-queue") == queue
    assert metadata.get("hourglass-attempt") == "1"
    assert abs(rfc3339_ns(metadata.get("hourglass-due-time", "")) - ns(good.due_time)) < MS_NS
    assert metadata.get("x-tenant") == "acme"
    assert metadata.get("x-request-id") == "r-1"
    status = push_client.status(good.task_id)
    assert status.grpc_target.address == invoices.address
    assert status.grpc_target.method == "/billing.v1.Invoices/Close"
    assert status.grpc_target.tls is False

    flaky = schedule_invoice(push_client, invoices, "flaky-1")
    task = wait_state(push_client, flaky.task_id, State.TASK_STATE_SUCCEEDED)
    assert task.attempts == 2
    calls = invoices.of("flaky-1")
    assert [c[1].get("hourglass-attempt") for c in calls] == ["1", "2"]
    assert calls[1][2] - calls[0][2] >= MIN_BACKOFF_S - EARLY_TOLERANCE_S

    bad = schedule_invoice(push_client, invoices, "bad-1")
    task = wait_state(push_client, bad.task_id, State.TASK_STATE_DEAD)
    assert task.attempts == 1
    assert "INVALID_ARGUMENT" in task.last_error, task.last_error

    unimplemented = schedule_invoice(
        push_client, invoices, "inv-2", method="/billing.v1.Invoices/Reopen"
    )
    task = wait_state(push_client, unimplemented.task_id, State.TASK_STATE_DEAD)
    assert task.attempts == 1
    assert "UNIMPLEMENTED" in task.last_error, task.last_error
    time.sleep(MIN_BACKOFF_S * 2)
    assert len(invoices.of("bad-1")) == 1

    # The call's deadline is the dispatch deadline; running out of it is DEADLINE_EXCEEDED.
    slow = schedule_invoice(
        push_client,
        invoices,
        "slow-1",
        retry_policy=retry_policy(max_attempts=1),
        dispatch_deadline=duration(1),
    )
    task = wait_state(push_client, slow.task_id, State.TASK_STATE_DEAD)
    assert task.attempts == 1
    assert "DEADLINE_EXCEEDED" in task.last_error, task.last_error
    assert "dispatch deadline" in task.last_error, task.last_error
    assert invoices.time_remaining["slow-1"] is not None
    assert 0 < invoices.time_remaining["slow-1"] <= 1.05  # grpc-timeout rounds up

    after = metrics(push_server)
    deliveries = "hourglass_push_deliveries_total"
    assert metric_delta(before, after, deliveries, target="grpc", outcome="succeeded") == 2
    assert metric_delta(before, after, deliveries, target="grpc", outcome="retried") == 1
    assert metric_delta(before, after, deliveries, target="grpc", outcome="dead") == 3
    durations = "hourglass_push_delivery_duration_seconds_count"
    assert metric_delta(before, after, durations, target="grpc") == 6


def test_grpc_connection_refused_is_retried(push_client):
    # Nobody listening: UNAVAILABLE, retried until max_attempts, then DEAD.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task_id = unique("nobody")
    push_client.schedule(
        queue=unique("nobody"),
        task_id=task_id,
        payload=receiver_pb2.CloseInvoiceRequest(invoice_id="x").SerializeToString(),
        retry_policy=retry_policy(max_attempts=2),
        grpc_target=task_pb2.GrpcTarget(
            address=f"127.0.0.1:{port}", method="/billing.v1.Invoices/Close"
        ),
        dispatch_deadline=duration(2),
    )
    task = wait_state(push_client, task_id, State.TASK_STATE_DEAD)
    assert task.attempts == 2
    assert "UNAVAILABLE" in task.last_error, task.last_error


# --- 5. SSRF guard ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, kind",
    [
        (http_target("http://169.254.169.254/latest/meta-data"), "metadata"),
        (http_target("http://10.0.0.1/"), "private"),
        (http_target("http://[::1]:1/"), "loopback"),
        (http_target("http://localhost:8080/"), "loopback"),
        (http_target("http://LOCALHOST./"), "loopback"),
        (http_target("http://100.64.0.1/"), "shared"),
        (http_target("http://[fd00::1]/"), "unique-local"),
        (http_target("http://[::ffff:127.0.0.1]/"), "loopback"),
        (
            task_pb2.GrpcTarget(address="192.168.1.1:443", method="/billing.v1.Invoices/Close"),
            "private",
        ),
        (
            task_pb2.GrpcTarget(address="[fe80::1]:443", method="/billing.v1.Invoices/Close"),
            "link-local",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else str(value).replace("\n", " ")[:60],
)
def test_refused_literal_addresses(client, target, kind):
    # Without --push_allowlist, a target whose host is an internal IP literal or localhost is
    # INVALID_ARGUMENT at Schedule, and the message says what kind of address it is.
    field = "http_target.url" if isinstance(target, task_pb2.HttpTarget) else "grpc_target.address"
    fields = {"http_target" if field.startswith("http") else "grpc_target": target}
    error = expect_invalid_argument(field, client.schedule, queue=unique("ssrf"), **fields)
    assert kind in error.details(), error.details()


def loopback_only_host_name():
    """A host name (not localhost, not an IP literal) that resolves only to loopback."""
    candidates = [socket.gethostname(), socket.getfqdn()]
    try:
        with open("/etc/hosts") as hosts:
            for line in hosts:
                fields = line.split("#", 1)[0].split()
                candidates.extend(fields[1:])
    except OSError:
        pass
    candidates += ["ip6-localhost", "ip6-loopback", "localhost6", "localhost.localdomain"]
    tried = []
    for name in dict.fromkeys(candidates):
        lower = name.lower().rstrip(".")
        if not name or lower == "localhost" or lower.endswith(".localhost"):
            continue
        try:
            socket.inet_pton(socket.AF_INET, name)
            continue  # an IP literal
        except OSError:
            pass
        try:
            infos = socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)
        except OSError:
            tried.append(name)
            continue
        addresses = {(info[0], info[4][0]) for info in infos}
        if addresses and all(
            (family == socket.AF_INET and address.startswith("127."))
            or (family == socket.AF_INET6 and address == "::1")
            for family, address in addresses
        ):
            return name, sorted(addresses)
        tried.append(f"{name} -> {sorted(a for _, a in addresses)}")
    pytest.fail(
        "no host name resolves only to loopback (needed to test the SSRF guard at connect "
        f"time); tried {tried}"
    )


class CountingListener:
    """Raw listening sockets on the same port of every given address; counts accepted
    connections and closes them at once."""

    def __init__(self, addresses):
        self.accepted = 0
        self._sockets = []
        self.port = 0
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, self.port))
            except OSError:
                sock.close()
                continue
            sock.listen(16)
            sock.settimeout(0.1)
            self.port = sock.getsockname()[1]
            self._sockets.append(sock)
        assert self._sockets, f"could not listen on any of {addresses}"
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._accept, args=(s,), daemon=True) for s in self._sockets
        ]
        for thread in self._threads:
            thread.start()

    def _accept(self, sock):
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        for sock in self._sockets:
            sock.close()


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_host_name_resolving_to_loopback_is_refused(server, client, kind):
    # A host name is judged when it is resolved: one that resolves to loopback ends DEAD with
    # "refused to connect", and the listener at that address sees no connection at all.
    name, addresses = loopback_only_host_name()
    listener = CountingListener(addresses)
    try:
        before = metrics(server)
        task_id = unique("rebind")
        if kind == "http":
            target = {"http_target": http_target(f"http://{name}:{listener.port}/hook")}
        else:
            target = {
                "grpc_target": task_pb2.GrpcTarget(
                    address=f"{name}:{listener.port}", method="/billing.v1.Invoices/Close"
                )
            }
        client.schedule(
            queue=unique("rebind"), task_id=task_id, retry_policy=retry_policy(), **target
        )
        task = wait_state(client, task_id, State.TASK_STATE_DEAD)
        assert task.attempts == 1
        assert task.last_error.startswith("refused to connect"), task.last_error
        assert "loopback" in task.last_error, task.last_error
        time.sleep(0.3)
        assert listener.accepted == 0, f"{listener.accepted} connection(s) reached {name}"
        after = metrics(server)
        deliveries = "hourglass_push_deliveries_total"
        assert metric_delta(before, after, deliveries, target=kind, outcome="refused") == 1
    finally:
        listener.close()


def test_allowlist_admits_only_its_ranges(start_server, http_receiver):
    # --push_allowlist=127.0.0.1/32 admits that address and nothing else of loopback, both at
    # Schedule (IP literals) and when a host name is resolved.
    receiver = http_receiver(ok)
    server = start_server("--push_allowlist=127.0.0.1/32")
    client = server.client()
    queue = unique("allow")
    expect_invalid_argument(
        "http_target.url",
        client.schedule,
        queue=queue,
        http_target=http_target(f"http://127.0.0.2:{receiver.port}/"),
    )
    allowed = client.schedule(queue=queue, http_target=http_target(receiver.url()))
    wait_state(client, allowed.task_id, State.TASK_STATE_SUCCEEDED)

    name, addresses = loopback_only_host_name()
    by_name = client.schedule(
        queue=queue,
        retry_policy=retry_policy(max_attempts=1),
        http_target=http_target(f"http://{name}:{receiver.port}/by-name"),
    )
    if all(address == "127.0.0.1" for _, address in addresses):
        wait_state(client, by_name.task_id, State.TASK_STATE_SUCCEEDED)
        assert [r.path for r in receiver.of(by_name.task_id)] == ["/by-name"]
    elif all(address != "127.0.0.1" for _, address in addresses):
        task = wait_state(client, by_name.task_id, State.TASK_STATE_DEAD)
        assert task.last_error.startswith("refused to connect"), task.last_error
        assert receiver.of(by_name.task_id) == []


def test_schedule_batch_judges_each_push_target(push_client, http_receiver):
    # In a batch, a refused or malformed target fails only its own item.
    receiver = http_receiver(ok)
    queue = unique("batch")
    results = push_client.scheduler.ScheduleBatch(
        scheduler_pb2.ScheduleBatchRequest(
            requests=[
                scheduler_pb2.ScheduleRequest(queue=queue, http_target=http_target(receiver.url())),
                scheduler_pb2.ScheduleRequest(
                    queue=queue, http_target=http_target("http://169.254.169.254/")
                ),
                scheduler_pb2.ScheduleRequest(
                    queue=queue,
                    grpc_target=task_pb2.GrpcTarget(address="billing.example.com:443", method="x"),
                ),
            ]
        )
    ).results
    invalid = StatusCode.INVALID_ARGUMENT.value[0]
    assert [r.code for r in results] == [0, invalid, invalid]
    assert "http_target.url" in results[1].message
    assert "grpc_target.method" in results[2].message
    wait_state(push_client, results[0].response.task_id, State.TASK_STATE_SUCCEEDED)


def test_push_flags_fail_fast(work_dir):
    # A bad --push_allowlist, --push_workers or --queue_concurrency stops the server at once,
    # naming the flag.
    for flags, name in (
        (["--push_allowlist=10.0.0.0/33"], "push_allowlist"),
        (["--push_allowlist=metadata.internal"], "push_allowlist"),
        (["--push_workers=0"], "push_workers"),
        (["--push_workers=2", "--queue_concurrency=3"], "queue_concurrency"),
    ):
        result = subprocess.run(
            [
                support.BINARY,
                "--grpc_address=127.0.0.1:0",
                "--metrics_address=127.0.0.1:0",
                f"--data_dir={os.path.join(work_dir, 'bad-push-flags')}",
                *flags,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.returncode != 0, f"{flags} started"
        assert name in result.stderr, f"{flags}: {result.stderr[-500:]}"


MIXED_NAME = "mixed.hourglass.test"


def server_seeing_hosts(work_dir, hosts_text, *flags):
    """A started Server whose resolver reads `hosts_text` as its hosts file (a private mount
    namespace: unshare -m, then a bind mount), or None where that is not possible (not root,
    no unshare). The caller stops it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    scratch = tempfile.mkdtemp(prefix="hosts-", dir=work_dir)
    hosts = os.path.join(scratch, "hosts")
    with open(hosts, "w") as f:
        f.write(hosts_text)
    # sh -c SCRIPT HOSTS BINARY FLAGS...: $0 is the hosts file, "$@" the command.
    mount_and_run = 'mount --bind "$0" /etc/hosts && exec "$@"'
    probe = subprocess.run(
        [unshare, "-m", "sh", "-c", mount_and_run, hosts, "true"], capture_output=True, timeout=10
    )
    if probe.returncode != 0:
        return None
    wrapper = os.path.join(scratch, "hourglass-with-hosts")
    command = " ".join(
        shlex.quote(word) for word in (unshare, "-m", "sh", "-c", mount_and_run, hosts, BINARY)
    )
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec {command} "$@"\n')
    os.chmod(wrapper, 0o755)
    server = support.Server(os.path.join(scratch, "data"), flags, binary=wrapper)
    return server.start()


def test_host_name_with_a_refused_and_an_allowed_address(work_dir, http_receiver):
    # Regression (fixed in a9e81b9): a host name that resolves to a
    # refused address (127.0.0.1, tried first) and an admitted one (127.0.0.2, the allowlist):
    # libcurl skips the refused address and POSTs to the admitted one, the receiver answers
    # 200, and yet the attempt counts as "refused" (HttpPusher reports kRefused whenever any
    # socket was refused): the task is DEAD with "refused to connect" although it was
    # delivered, contrary to "nothing was sent". gRPC pushes use the first admitted address.
    # Expected: SUCCEEDED after one request, or DEAD "refused" with no request at all.
    receiver = http_receiver(ok, host="127.0.0.2")
    server = server_seeing_hosts(
        work_dir,
        f"127.0.0.1 localhost\n127.0.0.1 {MIXED_NAME}\n127.0.0.2 {MIXED_NAME}\n",
        "--push_allowlist=127.0.0.2/32",
    )
    if server is None:
        pytest.skip("needs a private mount namespace (root and unshare) to fake a host name")
    try:
        client = server.client()
        task_id = unique("mixed")
        client.schedule(
            queue=unique("mixed"),
            task_id=task_id,
            retry_policy=retry_policy(),
            http_target=http_target(f"http://{MIXED_NAME}:{receiver.port}/hook"),
        )
        task = wait_final(client, task_id)
        received = len(receiver.of(task_id))
        if task.state == State.TASK_STATE_DEAD:
            assert task.last_error.startswith("refused to connect"), task.last_error
            assert (
                received == 0
            ), f"DEAD ({task.last_error!r}) although the receiver got {received} request(s)"
        else:
            assert task.state == State.TASK_STATE_SUCCEEDED, State.Name(task.state)
            assert (task.attempts, received) == (1, 1)
    finally:
        stop_server(server)


# --- 6. validation ------------------------------------------------------------------------

GOOD_URL = "https://hooks.example.com/orders"
GOOD_GRPC = {"address": "billing.example.com:443", "method": "/billing.v1.Invoices/Close"}


@pytest.mark.parametrize(
    "field, fields",
    [
        ("http_target.url", {"http_target": http_target("ftp://hooks.example.com/x")}),
        ("http_target.url", {"http_target": http_target("http:///")}),
        ("http_target.url", {"http_target": http_target("http://:80/path")}),
        ("http_target.url", {"http_target": http_target("hooks.example.com/orders")}),
        ("http_target.url", {"http_target": http_target("")}),
        (
            "http_target.url",
            {"http_target": http_target("https://hooks.example.com/" + "a" * 2980)},
        ),
        (
            "grpc_target.method",
            {"grpc_target": task_pb2.GrpcTarget(address=GOOD_GRPC["address"], method="Close")},
        ),
        (
            "grpc_target.method",
            {"grpc_target": task_pb2.GrpcTarget(address=GOOD_GRPC["address"], method="/x")},
        ),
        (
            "grpc_target.address",
            {
                "grpc_target": task_pb2.GrpcTarget(
                    address="billing.example.com", method=GOOD_GRPC["method"]
                )
            },
        ),
        (
            "dispatch_deadline",
            {"http_target": http_target(GOOD_URL), "dispatch_deadline": duration(0)},
        ),
        (
            "dispatch_deadline",
            {"http_target": http_target(GOOD_URL), "dispatch_deadline": duration(31 * 60)},
        ),
        ("dispatch_deadline", {"dispatch_deadline": duration(10)}),
        ("http_target.headers", {"http_target": http_target(GOOD_URL, {"Host": "evil.example"})}),
        ("http_target.headers", {"http_target": http_target(GOOD_URL, {"hourglass-x": "1"})}),
        (
            "http_target.headers",
            {"http_target": http_target(GOOD_URL, {"X-Ok": "a\r\nX-Injected: 1"})},
        ),
        (
            "headers",
            {"http_target": http_target(GOOD_URL), "headers": {"X-Ok": "a\r\nX-Injected: 1"}},
        ),
        (
            "headers",
            {"grpc_target": task_pb2.GrpcTarget(**GOOD_GRPC), "headers": {"X-Upper": "metadata"}},
        ),
        (
            "headers",
            {"grpc_target": task_pb2.GrpcTarget(**GOOD_GRPC), "headers": {"grpc-timeout": "1S"}},
        ),
        (
            "http_target.headers",
            {"http_target": http_target(GOOD_URL, {"Content-Length": "0"})},
        ),
        (
            "http_target.headers",
            {"http_target": http_target(GOOD_URL, {"Bad Name": "x"})},
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_push_validation(client, field, fields):
    # Every malformed push field is INVALID_ARGUMENT, and the message names the field.
    expect_invalid_argument(
        field, client.schedule, queue=unique("invalid"), delay=duration(3600), **fields
    )


def test_get_status_shows_target_but_not_its_headers(client):
    # GetStatus returns http_target.url (without the headers, which hold credentials),
    # grpc_target and dispatch_deadline; the default deadline is 30 s.
    http = client.schedule(
        queue=unique("shown"),
        delay=duration(3600),
        http_target=http_target(GOOD_URL, {"Authorization": "Bearer secret"}),
        dispatch_deadline=duration(7.5),
    )
    task = client.status(http.task_id)
    assert task.WhichOneof("target") == "http_target"
    assert task.http_target.url == GOOD_URL
    assert dict(task.http_target.headers) == {}
    assert task.dispatch_deadline.ToNanoseconds() == 7_500_000_000
    client.cancel(http.task_id)

    rpc = client.schedule(
        queue=unique("shown"),
        delay=duration(3600),
        grpc_target=task_pb2.GrpcTarget(tls=True, **GOOD_GRPC),
    )
    task = client.status(rpc.task_id)
    assert task.WhichOneof("target") == "grpc_target"
    assert task.grpc_target == task_pb2.GrpcTarget(tls=True, **GOOD_GRPC)
    assert task.dispatch_deadline.ToNanoseconds() == 30 * SECOND_NS
    client.cancel(rpc.task_id)

    pull = client.schedule(queue=unique("shown"), delay=duration(3600))
    task = client.status(pull.task_id)
    assert task.WhichOneof("target") is None
    assert not task.HasField("dispatch_deadline")
    client.cancel(pull.task_id)


# --- 7. kill -9 during a delivery ---------------------------------------------------------


def test_kill9_during_delivery_redelivers_after_the_claim(start_server, work_dir, http_receiver):
    # A server killed while a delivery hangs recovers the task as LEASED; when the claim
    # (dispatch_deadline + 10 s) runs out it is delivered again and succeeds. Another task,
    # due while the server was down, is delivered right after the restart.
    mode = {"hang": True}

    def respond(received):
        if mode["hang"]:
            receiver.hang(60)
        return 200, {}, b"ok"

    receiver = http_receiver(respond)
    data_dir = tempfile.mkdtemp(prefix="push-kill9-", dir=work_dir)
    server = start_server(ALLOW_LOOPBACK, data_dir=data_dir)
    client = server.client()
    task_id = unique("crash")
    client.schedule(
        queue=unique("crash"),
        task_id=task_id,
        payload=b"survives",
        retry_policy=retry_policy(),
        http_target=http_target(receiver.url()),
        dispatch_deadline=duration(3),
    )
    wait_until(lambda: receiver.of(task_id), 10, what="the first delivery attempt")
    first = receiver.of(task_id)[0]
    assert client.status(task_id).state == State.TASK_STATE_LEASED
    while_down = client.schedule(
        queue=unique("down"),
        delay=duration(1),
        retry_policy=retry_policy(),
        http_target=http_target(receiver.url("/while-down")),
    )
    server.kill()
    mode["hang"] = False
    assert receiver.of(while_down.task_id) == [], "delivered before it was due"
    time.sleep(max(0.0, (ns(while_down.due_time) - now_ns()) / 1e9) + 0.2)

    restarted = time.monotonic()
    server = start_server(ALLOW_LOOPBACK, data_dir=data_dir)
    client = server.client()
    task = client.status(task_id)
    assert task.state == State.TASK_STATE_LEASED, State.Name(task.state)
    assert task.attempts == 1
    wait_state(client, while_down.task_id, State.TASK_STATE_SUCCEEDED, timeout_s=10)
    (received,) = receiver.of(while_down.task_id)
    assert received.monotonic - restarted < 5, "the task due while down waited"
    assert client.status(task_id).state == State.TASK_STATE_LEASED  # still claimed
    task = wait_state(client, task_id, State.TASK_STATE_SUCCEEDED, timeout_s=40)
    requests = receiver.of(task_id)
    assert len(requests) == 2, f"{len(requests)} requests"
    second = requests[1]
    assert second.body == b"survives"
    assert second.header("Hourglass-Task-Id") == task_id
    assert second.header("Hourglass-Attempt") == "2"
    assert task.attempts == 2
    # Not before the claim ran out: 3 s + 10 s after the attempt started.
    gap_s = second.monotonic - first.monotonic
    assert gap_s >= 12.5, f"delivered again {gap_s:.1f} s after the first attempt"


def test_sigterm_during_delivery_releases_the_task(start_server, work_dir, http_receiver):
    # A clean shutdown during a delivery gives the task back at once, and the attempt does not
    # count: after a restart it is delivered again promptly as attempt 1, without waiting for
    # a claim to run out.
    mode = {"hang": True}

    def respond(received):
        if mode["hang"]:
            receiver.hang(60)
        return 200, {}, b"ok"

    receiver = http_receiver(respond)
    data_dir = tempfile.mkdtemp(prefix="push-sigterm-", dir=work_dir)
    server = start_server(ALLOW_LOOPBACK, "--shutdown_grace=3s", data_dir=data_dir)
    client = server.client()
    task_id = unique("release")
    client.schedule(
        queue=unique("release"),
        task_id=task_id,
        payload=b"again",
        retry_policy=retry_policy(),
        http_target=http_target(receiver.url()),
        dispatch_deadline=duration(20),
    )
    wait_until(lambda: receiver.of(task_id), 10, what="the first delivery attempt")
    mode["hang"] = False
    code, took_s = server.terminate(close_clients_first=True)
    assert code == 0, f"hourglass exited with {code} after SIGTERM\n" + server.log_tail()
    assert took_s < 3 + 2, f"shutdown took {took_s:.1f} s with a delivery in progress"

    restarted = time.monotonic()
    server = start_server(ALLOW_LOOPBACK, data_dir=data_dir)
    client = server.client()
    task = wait_state(client, task_id, State.TASK_STATE_SUCCEEDED, timeout_s=10)
    first, second = receiver.of(task_id)
    assert second.monotonic - restarted < 5, "the released task waited for its claim"
    assert second.body == b"again"
    assert first.header("Hourglass-Attempt") == "1"
    assert second.header("Hourglass-Attempt") == "1"
    assert task.attempts == 1


# --- 8. what a receiver or a header must never do: crash the server -----------------------
# Both crashed the first push build (abort()); after a restart the task was delivered again when
# its claim ran out and the server crashed again: a crash loop that one push target could cause.

MAX_DELAY_NS = 730 * 24 * 3600 * SECOND_NS  # the default --max_delay


def test_huge_retry_after_does_not_crash_the_server(push_server, push_client, http_receiver):
    # A Retry-After beyond the timing wheel's horizon (~795 days; here 3.2 years, and an HTTP
    # date in the year 9999) once made FinishPush arm a timer the wheel refused: abort(). The
    # server must stay up and the retry be due within --max_delay.
    server, client = push_server, push_client
    queue = unique("retry-after")
    tasks = {}
    for retry_after in ("100000000", "Fri, 31 Dec 9999 23:59:59 GMT"):
        receiver = http_receiver(
            lambda received, value=retry_after: (503, {"Retry-After": value}, b"later")
        )
        task_id = unique("retry-after")
        client.schedule(
            queue=queue,
            task_id=task_id,
            delay=duration(0.3),
            retry_policy=retry_policy(),
            http_target=http_target(receiver.url()),
        )
        tasks[task_id] = (retry_after, receiver)
    for task_id, (retry_after, receiver) in tasks.items():
        wait_until(lambda: receiver.of(task_id), 10, what="the delivery attempt")
    # The outcome is recorded right after the answer (a crash would come then, too).
    wait_until(
        lambda: not server.running()
        or all(client.status(t).state != State.TASK_STATE_LEASED for t in tasks),
        10,
        what="the attempts to be recorded",
    )
    time.sleep(0.2)
    assert (
        server.running()
    ), "the server died after a 503 with a huge Retry-After\n" + server.log_tail(5)
    for task_id, (retry_after, _) in tasks.items():
        task = client.status(task_id)
        assert task.state == State.TASK_STATE_SCHEDULED, (retry_after, State.Name(task.state))
        assert task.attempts == 1
        assert task.last_error.startswith("HTTP 503"), task.last_error
        assert now_ns() < ns(task.due_time) <= now_ns() + MAX_DELAY_NS, retry_after


def test_grpc_metadata_value_does_not_crash_the_server(push_server, push_client, invoices):
    # A task header value that is valid for HTTP but not as gRPC metadata (a byte >= 0x80, a
    # tab) once passed Schedule for a grpc_target, and gRPC aborted the server ("API misuse").
    # Expected: INVALID_ARGUMENT naming "headers" at Schedule (gRPC metadata values are
    # printable ASCII unless the key ends in -bin), or at least no crash.
    server, client = push_server, push_client
    accepted = []
    for value in ("caf\u00e9", "a\tb"):
        try:
            schedule_invoice(
                client,
                invoices,
                "inv-metadata",
                delay=duration(0.3),
                headers={"x-note": value},
                retry_policy=retry_policy(max_attempts=2),
            )
            accepted.append(value)
        except grpc.RpcError as error:
            assert error.code() == StatusCode.INVALID_ARGUMENT, (value, error)
            assert "headers" in error.details(), error.details()
    if accepted:
        time.sleep(1.5)
    assert server.running(), (
        f"the server died delivering gRPC tasks with header values {accepted!r}\n"
        + server.log_tail(5)
    )
