"""--auth_tokens_file against the real binary: bearer tokens and per-queue permissions.

Runs as its own CTest test, e2e_auth (tests/service/CMakeLists.txt), which sets
HOURGLASS_E2E_AUTH=1; the serial `e2e` suite skips this file. By hand:
HOURGLASS_E2E_AUTH=1 /usr/bin/python3 -m pytest tests/e2e/test_auth.py

Tenants of the tests: a producer, a worker and an admin of queue "billing", a tenant of queue
"other" with every permission there, and an operator with every permission on every queue.
"""

import os
import secrets
import subprocess
import types

import pytest

import support
from support import (
    BINARY,
    RPC_TIMEOUT_S,
    State,
    StatusCode,
    consumer_grpc,
    consumer_pb2,
    duration,
    expect_error,
    health_pb2,
    reflection_pb2,
    scheduler_grpc,
    scheduler_pb2,
    unique,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    os.environ.get("HOURGLASS_E2E_AUTH") != "1",
    reason="runs as its own CTest test e2e_auth (set HOURGLASS_E2E_AUTH=1 to run it by hand)",
)

SERVING = health_pb2.HealthCheckResponse.SERVING
# Codes of batch items (ints).
OK = StatusCode.OK.value[0]
NOT_FOUND = StatusCode.NOT_FOUND.value[0]
PERMISSION_DENIED = StatusCode.PERMISSION_DENIED.value[0]


def _token(name):
    return f"{name}-{secrets.token_hex(16)}"


PRODUCER = _token("producer")
WORKER = _token("worker")
ADMIN = _token("admin")
OTHER = _token("other")
OPS = _token("ops")
TOKENS = {
    PRODUCER: "billing schedule",
    WORKER: "billing consume",
    ADMIN: "billing admin",
    OTHER: "other schedule,consume,admin",
    OPS: "* schedule,consume,admin",
}


def tokens_text(tokens):
    lines = ["# hourglass tokens: <token> <queues> <permissions>", ""]
    lines += [f"{token} {grant}" for token, grant in tokens.items()]
    return "\n".join(lines) + "\n"


def write_tokens(path, text):
    """Replaces the file atomically (write, rename), as an operator or Kubernetes should."""
    temporary = path + ".new"
    with open(temporary, "w") as f:
        f.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


class AuthClient:
    """The scheduler and consumer stubs of a channel, calling with one bearer token (or none)."""

    def __init__(self, channel, token):
        self.scheduler = scheduler_grpc.SchedulerServiceStub(channel)
        self.consumer = consumer_grpc.ConsumerServiceStub(channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def _kw(self, timeout=RPC_TIMEOUT_S):
        return {"metadata": self.metadata, "timeout": timeout}

    def schedule(self, queue, task_id=None, delay_s=0.0, max_attempts=0):
        request = scheduler_pb2.ScheduleRequest(
            queue=queue, task_id=task_id or unique("t"), payload=b"p"
        )
        request.delay.CopyFrom(duration(delay_s))
        if max_attempts:
            request.retry_policy.max_attempts = max_attempts
        return self.scheduler.Schedule(request, **self._kw())

    def schedule_batch(self, queues):
        request = scheduler_pb2.ScheduleBatchRequest(
            requests=[
                scheduler_pb2.ScheduleRequest(queue=q, payload=b"p", delay=duration(60))
                for q in queues
            ]
        )
        return self.scheduler.ScheduleBatch(request, **self._kw()).results

    def status(self, task_id):
        request = scheduler_pb2.GetStatusRequest(task_id=task_id)
        return self.scheduler.GetStatus(request, **self._kw()).task

    def cancel(self, task_id):
        return self.scheduler.Cancel(scheduler_pb2.CancelRequest(task_id=task_id), **self._kw())

    def reschedule(self, task_id, delay_s=60):
        request = scheduler_pb2.RescheduleRequest(task_id=task_id)
        request.delay.CopyFrom(duration(delay_s))
        return self.scheduler.Reschedule(request, **self._kw())

    def list(self, queue=""):
        request = scheduler_pb2.ListTasksRequest(queue=queue)
        return self.scheduler.ListTasks(request, **self._kw()).tasks

    def retry(self, task_id):
        request = scheduler_pb2.RetryTaskRequest(task_id=task_id)
        return self.scheduler.RetryTask(request, **self._kw()).task

    def lease(self, queue, wait_s=0.0):
        request = consumer_pb2.LeaseRequest(queue=queue, max_tasks=1)
        request.lease_duration.CopyFrom(duration(60))
        if wait_s:
            request.wait.CopyFrom(duration(wait_s))
        return self.consumer.Lease(request, **self._kw(RPC_TIMEOUT_S + wait_s)).tasks

    def ack(self, leased):
        request = consumer_pb2.AckRequest(task_id=leased.task_id, lease_token=leased.lease_token)
        return self.consumer.Ack(request, **self._kw())

    def ack_batch(self, leased):
        request = consumer_pb2.AckBatchRequest(
            acks=[consumer_pb2.AckRequest(task_id=leased.task_id, lease_token=leased.lease_token)]
        )
        return self.consumer.AckBatch(request, **self._kw()).results

    def nack(self, leased):
        request = consumer_pb2.NackRequest(
            task_id=leased.task_id, lease_token=leased.lease_token, error="boom"
        )
        return self.consumer.Nack(request, **self._kw()).task

    def extend(self, leased):
        request = consumer_pb2.ExtendLeaseRequest(
            task_id=leased.task_id, lease_token=leased.lease_token
        )
        request.lease_duration.CopyFrom(duration(60))
        return self.consumer.ExtendLease(request, **self._kw())


@pytest.fixture
def tokens_path(work_dir):
    path = os.path.join(work_dir, unique("tokens"))
    write_tokens(path, tokens_text(TOKENS))
    yield path
    for leftover in (path, path + ".new"):
        if os.path.exists(leftover):
            os.remove(leftover)


@pytest.fixture
def auth_server(start_server, tokens_path):
    # Debug logging: failed calls are logged (rpc_failed), so the tests can check that no token
    # ever reaches the log.
    return start_server(f"--auth_tokens_file={tokens_path}", "--log_level=debug")


def as_(server, token):
    return AuthClient(server.client().channel, token)


def leased_task(server, queue, max_attempts=0):
    """A task of `queue` scheduled, due and leased by the operator."""
    ops = as_(server, OPS)
    task_id = ops.schedule(queue, max_attempts=max_attempts).task_id
    leased = ops.lease(queue, wait_s=5)
    assert [t.task_id for t in leased] == [task_id]
    return leased[0]


def assert_no_token_logged(server):
    logs = "\n".join(server.logs())
    for token in list(TOKENS) + ["wrong-token-0123456789abcdef"]:
        assert token not in logs, "a token reached the server's log"


def test_start_logs_auth_enabled_and_health_reflection_need_no_token(auth_server, tokens_path):
    enabled = auth_server.event("auth_enabled")
    assert enabled is not None, auth_server.log_tail()
    assert enabled["auth_tokens_file"] == tokens_path
    assert enabled["tokens"] == len(TOKENS)
    assert auth_server.started_event["auth"] is True
    assert auth_server.event("auth_disabled") is None
    client = auth_server.client()
    assert client.health("") == SERVING
    assert client.health("hourglass.v1.SchedulerService") == SERVING
    responses = list(
        client.reflection_stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=20
        )
    )
    names = {s.name for s in responses[0].list_services_response.service}
    assert "hourglass.v1.SchedulerService" in names


def test_no_token_and_wrong_token_are_unauthenticated(auth_server):
    task_id = as_(auth_server, OPS).schedule("billing", delay_s=60).task_id
    for token, message in (
        (None, 'no credentials: send the metadata "authorization: Bearer <token>"'),
        ("wrong-token-0123456789abcdef", "the bearer token is not valid"),
    ):
        caller = as_(auth_server, token)
        calls = (
            lambda: caller.schedule("billing"),
            lambda: caller.schedule_batch(["billing"]),
            lambda: caller.status(task_id),
            lambda: caller.status("no-such-task"),
            lambda: caller.cancel(task_id),
            lambda: caller.reschedule(task_id),
            lambda: caller.list("billing"),
            lambda: caller.list(),
            lambda: caller.retry(task_id),
            lambda: caller.lease("billing"),
            lambda: caller.lease("billing", wait_s=1),
        )
        for call in calls:
            error = expect_error(StatusCode.UNAUTHENTICATED, call)
            assert error.details() == message
    # Another scheme than Bearer.
    channel = auth_server.client().channel
    stub = scheduler_grpc.SchedulerServiceStub(channel)
    error = expect_error(
        StatusCode.UNAUTHENTICATED,
        stub.GetStatus,
        scheduler_pb2.GetStatusRequest(task_id=task_id),
        metadata=(("authorization", f"Basic {OPS}"),),
        timeout=RPC_TIMEOUT_S,
    )
    assert "Bearer" in error.details()
    assert as_(auth_server, OPS).status(task_id).state == State.TASK_STATE_SCHEDULED
    assert_no_token_logged(auth_server)


def test_each_permission(auth_server):
    producer = as_(auth_server, PRODUCER)
    worker = as_(auth_server, WORKER)
    admin = as_(auth_server, ADMIN)

    # schedule: Schedule, ScheduleBatch (per item), Cancel, Reschedule in its queues only.
    task_id = producer.schedule("billing", delay_s=0).task_id
    error = expect_error(StatusCode.PERMISSION_DENIED, producer.schedule, "other")
    assert error.details() == 'the token may not schedule in queue "other"'
    expect_error(StatusCode.PERMISSION_DENIED, worker.schedule, "billing")
    expect_error(StatusCode.PERMISSION_DENIED, admin.schedule, "billing")
    results = producer.schedule_batch(["billing", "other", "default"])
    assert [r.code for r in results] == [OK, PERMISSION_DENIED, PERMISSION_DENIED]
    assert producer.status(results[0].response.task_id).queue == "billing"
    expect_error(StatusCode.PERMISSION_DENIED, producer.lease, "billing")
    expect_error(StatusCode.PERMISSION_DENIED, producer.list, "billing")
    later = producer.schedule("billing", delay_s=60).task_id
    assert producer.reschedule(later, delay_s=120).task.task_id == later
    expect_error(StatusCode.PERMISSION_DENIED, worker.cancel, later)
    expect_error(StatusCode.PERMISSION_DENIED, worker.reschedule, later)
    assert producer.cancel(later).task.state == State.TASK_STATE_CANCELLED

    # consume: Lease, Ack, Nack, ExtendLease, AckBatch; any permission reads the status.
    leased = worker.lease("billing", wait_s=5)
    assert [t.task_id for t in leased] == [task_id]
    expect_error(StatusCode.PERMISSION_DENIED, producer.ack, leased[0])
    expect_error(StatusCode.PERMISSION_DENIED, admin.extend, leased[0])
    worker.extend(leased[0])
    worker.ack(leased[0])
    for caller in (producer, worker, admin):
        assert caller.status(task_id).state == State.TASK_STATE_SUCCEEDED
    second = leased_task(auth_server, "billing")
    assert [r.code for r in producer.ack_batch(second)] == [PERMISSION_DENIED]
    assert [r.code for r in worker.ack_batch(second)] == [OK]

    # admin: ListTasks of its queue (not of every queue), RetryTask.
    dead = leased_task(auth_server, "billing", max_attempts=1)
    assert worker.nack(dead).state == State.TASK_STATE_DEAD
    expect_error(StatusCode.PERMISSION_DENIED, worker.retry, dead.task_id)
    expect_error(StatusCode.PERMISSION_DENIED, producer.retry, dead.task_id)
    assert admin.retry(dead.task_id).task_id == dead.task_id
    listed = {t.task_id for t in admin.list("billing")}
    assert {task_id, later, dead.task_id} <= listed
    error = expect_error(StatusCode.PERMISSION_DENIED, admin.list)
    assert "every queue (*)" in error.details()
    expect_error(StatusCode.PERMISSION_DENIED, admin.list, "other")
    assert {task_id, later} <= {t.task_id for t in as_(auth_server, OPS).list()}
    expect_error(StatusCode.PERMISSION_DENIED, admin.lease, "billing")
    assert_no_token_logged(auth_server)


def test_another_tenants_task_is_not_found(auth_server):
    other = as_(auth_server, OTHER)
    ops = as_(auth_server, OPS)
    scheduled = ops.schedule("billing", delay_s=60).task_id
    leased = leased_task(auth_server, "billing", max_attempts=1)
    dead = leased_task(auth_server, "billing", max_attempts=1)
    ops.nack(dead)

    unknown = unique("unknown")

    def lease_of(task_id):
        return types.SimpleNamespace(task_id=task_id, lease_token=leased.lease_token)

    calls = {
        "GetStatus": (other.status, scheduled),
        "Cancel": (other.cancel, scheduled),
        "Reschedule": (other.reschedule, scheduled),
        "RetryTask": (other.retry, dead.task_id),
        "Ack": (lambda t: other.ack(lease_of(t)), leased.task_id),
        "Nack": (lambda t: other.nack(lease_of(t)), leased.task_id),
        "ExtendLease": (lambda t: other.extend(lease_of(t)), leased.task_id),
    }
    for name, (call, task_id) in calls.items():
        hidden = expect_error(StatusCode.NOT_FOUND, call, task_id)
        missing = expect_error(StatusCode.NOT_FOUND, call, unknown)
        # Word for word the answer for an id that does not exist, but for the id itself.
        assert hidden.details() == missing.details().replace(unknown, task_id), name
    results = other.ack_batch(leased)
    assert [r.code for r in results] == [NOT_FOUND]
    # Nothing was touched.
    assert ops.status(scheduled).state == State.TASK_STATE_SCHEDULED
    assert ops.status(leased.task_id).state == State.TASK_STATE_LEASED
    assert ops.status(dead.task_id).state == State.TASK_STATE_DEAD
    # Its own queue works, and its tasks are hidden from billing's tokens in turn.
    own = other.schedule("other", delay_s=60).task_id
    assert other.status(own).queue == "other"
    expect_error(StatusCode.NOT_FOUND, as_(auth_server, PRODUCER).status, own)
    expect_error(StatusCode.NOT_FOUND, as_(auth_server, ADMIN).retry, own)


def test_token_file_change_is_picked_up(auth_server, tokens_path):
    fresh = _token("fresh")
    write_tokens(tokens_path, tokens_text({fresh: "billing schedule", OPS: "* admin"}))
    # The file is polled every second.
    wait_until(lambda: _schedules(auth_server, fresh), 10, 0.1, "the new token to be accepted")
    expect_error(StatusCode.UNAUTHENTICATED, as_(auth_server, PRODUCER).schedule, "billing")
    expect_error(StatusCode.PERMISSION_DENIED, as_(auth_server, OPS).schedule, "billing")
    # The log line follows the swap of the tokens: wait for it too.
    reloaded = wait_until(
        lambda: [e for e in auth_server.log_events() if e.get("event") == "auth_tokens_reloaded"],
        10,
        0.05,
        "auth_tokens_reloaded",
    )
    assert reloaded[-1]["tokens"] == 2 and reloaded[-1]["file"] == tokens_path

    # A malformed new version is logged with its file and line, and the old tokens stay.
    write_tokens(tokens_path, f"{PRODUCER} billing schedule\n{fresh} billing,* schedule\n")
    failed = wait_until(
        lambda: auth_server.event("auth_tokens_reload_failed"), 10, 0.1, "the reload error"
    )
    assert failed["level"] == "error"
    assert failed["error"].startswith(f"{tokens_path}:2: queues must be either * alone"), failed
    assert _schedules(auth_server, fresh)
    expect_error(StatusCode.UNAUTHENTICATED, as_(auth_server, PRODUCER).schedule, "billing")

    # Fixed: picked up again.
    write_tokens(tokens_path, tokens_text({PRODUCER: "billing schedule"}))
    wait_until(lambda: _schedules(auth_server, PRODUCER), 10, 0.1, "the fixed file")
    expect_error(StatusCode.UNAUTHENTICATED, as_(auth_server, fresh).schedule, "billing")
    logs = "\n".join(auth_server.logs())
    assert fresh not in logs and PRODUCER not in logs


def _schedules(server, token):
    try:
        as_(server, token).schedule("billing", delay_s=60)
        return True
    except support.grpc.RpcError as error:
        if error.code() not in (StatusCode.UNAUTHENTICATED, StatusCode.PERMISSION_DENIED):
            raise
        return False


def test_malformed_tokens_file_stops_the_start(work_dir, tokens_path):
    write_tokens(tokens_path, f"# ok so far\n{OPS} * admin\n\n{PRODUCER} billing publish\n")
    result = subprocess.run(
        [
            BINARY,
            "--grpc_address=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0",
            f"--data_dir={os.path.join(work_dir, unique('bad-tokens'))}",
            f"--auth_tokens_file={tokens_path}",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2, result.stderr
    assert f'{tokens_path}:4: unknown permission \\"publish\\"' in result.stderr, result.stderr
    assert PRODUCER not in result.stderr and OPS not in result.stderr


def test_without_the_flag_the_api_is_open_and_a_warning_says_so(start_server):
    server = start_server()
    warning = server.event("auth_disabled")
    assert warning is not None and warning["level"] == "warning", server.log_tail()
    assert "--auth_tokens_file" in warning["reason"]
    assert server.started_event["auth"] is False
    client = server.client()
    task_id = client.schedule(queue=unique("q")).task_id
    assert client.status(task_id).task_id == task_id
