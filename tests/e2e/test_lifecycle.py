"""A task's life over the public API: schedule, lease, ack, nack, cancel, reschedule."""

import time

from support import (
    EARLY_TOLERANCE_NS,
    State,
    StatusCode,
    duration,
    expect_error,
    expect_invalid_argument,
    now_ns,
    ns,
    task_pb2,
    timestamp_ns,
    unique,
    wait_until,
)

SECOND_NS = 1_000_000_000
MS_NS = 1_000_000


def lease_one(client, queue, wait_s=5.0, **kwargs):
    """Leases exactly one task of `queue` (waiting up to wait_s) and returns it."""
    tasks = client.lease(queue, wait_s=wait_s, **kwargs)
    assert len(tasks) == 1, f"expected one task from {queue}, got {len(tasks)}"
    return tasks[0]


def test_schedule_lease_ack_succeeds(client):
    # The basic round trip: what was scheduled is handed out once, acked, and SUCCEEDED.
    queue = unique("basic")
    task_id = unique("task")
    before = now_ns()
    scheduled = client.schedule(
        queue=queue, task_id=task_id, payload=b"hello", headers={"trace": "t-1", "kind": "demo"}
    )
    after = now_ns()
    assert scheduled.task_id == task_id
    # No delay: due at once, i.e. at the server's "now" when it received the request.
    assert before - EARLY_TOLERANCE_NS <= ns(scheduled.due_time) <= after + EARLY_TOLERANCE_NS

    leased = lease_one(client, queue)
    assert leased.task_id == task_id
    assert leased.queue == queue
    assert leased.payload == b"hello"
    assert dict(leased.headers) == {"trace": "t-1", "kind": "demo"}
    assert leased.attempt == 1
    assert leased.lease_token
    assert ns(leased.due_time) == ns(scheduled.due_time)

    status = client.status(task_id)
    assert status.state == State.TASK_STATE_LEASED
    assert status.attempts == 1
    assert status.queue == queue
    assert status.payload_size_bytes == len(b"hello")
    assert ns(status.lease_expire_time) == ns(leased.lease_expire_time)

    client.ack(task_id, leased.lease_token)
    status = client.status(task_id)
    assert status.state == State.TASK_STATE_SUCCEEDED
    assert status.attempts == 1
    assert status.last_error == ""
    assert status.HasField("finish_time")
    assert status.HasField("create_time")

    # Acked means never delivered again, and a second ack is refused.
    assert list(client.lease(queue, wait_s=0.5)) == []
    expect_error(StatusCode.FAILED_PRECONDITION, client.ack, task_id, leased.lease_token)


def test_retry_policy_defaults(client):
    # An unset retry policy reads back with the documented defaults: 5 attempts, 1 s .. 300 s.
    queue = unique("defaults")
    scheduled = client.schedule(queue=queue, delay=duration(3600))
    status = client.status(scheduled.task_id)
    assert status.state == State.TASK_STATE_SCHEDULED
    assert status.attempts == 0
    assert status.retry_policy.max_attempts == 5
    assert status.retry_policy.min_backoff.ToNanoseconds() == 1 * SECOND_NS
    assert status.retry_policy.max_backoff.ToNanoseconds() == 300 * SECOND_NS
    client.cancel(scheduled.task_id)


def test_delay_is_respected(client):
    # A delayed task is not handed out before its due time, and a long poll returns soon after.
    queue = unique("delay")
    before = now_ns()
    scheduled = client.schedule(queue=queue, payload=b"later", delay=duration(1.5))
    after = now_ns()
    due = ns(scheduled.due_time)
    assert (
        before + 1500 * MS_NS - EARLY_TOLERANCE_NS
        <= due
        <= after + 1500 * MS_NS + EARLY_TOLERANCE_NS
    )
    assert client.status(scheduled.task_id).state == State.TASK_STATE_SCHEDULED

    # Not yet due: an immediate lease finds nothing.
    assert list(client.lease(queue)) == []

    leased = lease_one(client, queue, wait_s=5.0)
    received = now_ns()
    assert leased.task_id == scheduled.task_id
    assert ns(leased.due_time) == due
    assert received >= due - EARLY_TOLERANCE_NS, f"handed out {(due - received) / 1e6:.3f} ms early"
    # The server hands it out when due (lease expiry - lease duration = hand-out time).
    handed_out = ns(leased.lease_expire_time) - 30 * SECOND_NS
    assert (
        handed_out >= due - EARLY_TOLERANCE_NS
    ), f"lease started {(due - handed_out) / 1e6:.3f} ms early"
    assert received - due < 1 * SECOND_NS, f"long poll answered {(received - due) / 1e9:.3f} s late"
    client.ack(leased.task_id, leased.lease_token)


def test_schedule_at_a_time(client):
    # `at` sets the due time itself; a time in the past means now.
    queue = unique("at")
    at = now_ns() + 800 * MS_NS
    scheduled = client.schedule(queue=queue, at=timestamp_ns(at))
    assert abs(ns(scheduled.due_time) - at) <= EARLY_TOLERANCE_NS
    leased = lease_one(client, queue, wait_s=5.0)
    assert now_ns() >= ns(scheduled.due_time) - EARLY_TOLERANCE_NS
    client.ack(leased.task_id, leased.lease_token)

    past = client.schedule(queue=queue, at=timestamp_ns(now_ns() - 3600 * SECOND_NS))
    start = time.monotonic()
    leased = lease_one(client, queue, wait_s=5.0)
    assert leased.task_id == past.task_id
    assert time.monotonic() - start < 1.0
    client.ack(leased.task_id, leased.lease_token)


def test_empty_queue_means_default(client):
    # Schedule and Lease with queue "" both use the queue named "default".
    scheduled = client.schedule(payload=b"to default", delay=duration(0.2))
    assert client.status(scheduled.task_id).queue == "default"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        tasks = client.lease("", wait_s=2.0, max_tasks=10)
        for task in tasks:
            client.ack(task.task_id, task.lease_token)
        if any(task.task_id == scheduled.task_id for task in tasks):
            assert all(task.queue == "default" for task in tasks)
            return
    raise AssertionError("the task scheduled to queue '' was not leased from queue ''")


def test_generated_task_ids_are_time_ordered(client):
    # Without task_id the server makes a 26-character id; later ids sort after earlier ones.
    queue = unique("ids")
    first = client.schedule(queue=queue, delay=duration(3600)).task_id
    time.sleep(0.01)
    second = client.schedule(queue=queue, delay=duration(3600)).task_id
    assert len(first) == 26 and len(second) == 26, (first, second)
    assert first < second, (first, second)
    for task_id in (first, second):
        client.cancel(task_id)


def test_schedule_is_idempotent(client):
    # Same id and content: the original response; same id, other content: ALREADY_EXISTS.
    queue = unique("idem")
    task_id = unique("idem-task")
    first = client.schedule(queue=queue, task_id=task_id, payload=b"a", delay=duration(60))
    time.sleep(0.05)
    again = client.schedule(queue=queue, task_id=task_id, payload=b"a", delay=duration(60))
    assert again == first, "a repeated Schedule must return the original response (same due_time)"

    expect_error(
        StatusCode.ALREADY_EXISTS,
        client.schedule,
        queue=queue,
        task_id=task_id,
        payload=b"b",
        delay=duration(60),
    )
    expect_error(
        StatusCode.ALREADY_EXISTS,
        client.schedule,
        queue=unique("other"),
        task_id=task_id,
        payload=b"a",
        delay=duration(60),
    )
    # Still one task, untouched.
    status = client.status(task_id)
    assert status.state == State.TASK_STATE_SCHEDULED
    assert ns(status.due_time) == ns(first.due_time)
    client.cancel(task_id)


def test_cancel(client):
    # A cancelled task is CANCELLED and never handed out.
    queue = unique("cancel")
    scheduled = client.schedule(queue=queue, payload=b"x", delay=duration(0.5))
    cancelled = client.cancel(scheduled.task_id).task
    assert cancelled.state == State.TASK_STATE_CANCELLED
    assert client.status(scheduled.task_id).state == State.TASK_STATE_CANCELLED
    # Wait past its due time: nothing comes.
    assert list(client.lease(queue, wait_s=1.5)) == []
    status = client.status(scheduled.task_id)
    assert status.state == State.TASK_STATE_CANCELLED
    assert status.attempts == 0
    # Cancelling a finished task is refused.
    expect_error(StatusCode.FAILED_PRECONDITION, client.cancel, scheduled.task_id)


def test_cancel_unknown_is_not_found(client):
    expect_error(StatusCode.NOT_FOUND, client.cancel, unique("never-scheduled"))
    expect_error(StatusCode.NOT_FOUND, client.status, unique("never-scheduled"))


def test_cancel_ready_task(client):
    # A due task that no consumer has taken (READY) can still be cancelled.
    queue = unique("cancel-ready")
    scheduled = client.schedule(queue=queue)
    wait_until(
        lambda: client.status(scheduled.task_id).state == State.TASK_STATE_READY,
        5,
        what="the task to be READY",
    )
    assert client.cancel(scheduled.task_id).task.state == State.TASK_STATE_CANCELLED
    assert list(client.lease(queue, wait_s=0.5)) == []


def test_cancel_leased_is_refused(client):
    queue = unique("cancel-leased")
    scheduled = client.schedule(queue=queue)
    leased = lease_one(client, queue)
    expect_error(StatusCode.FAILED_PRECONDITION, client.cancel, scheduled.task_id)
    assert client.status(scheduled.task_id).state == State.TASK_STATE_LEASED
    client.ack(leased.task_id, leased.lease_token)


def test_nack_retries_then_dead(client):
    # Nack with retry_delay redelivers after that delay with attempt 2; at max_attempts, DEAD.
    queue = unique("nack")
    policy = task_pb2.RetryPolicy(
        max_attempts=2, min_backoff=duration(0.2), max_backoff=duration(1)
    )
    scheduled = client.schedule(queue=queue, payload=b"flaky", retry_policy=policy)
    first = lease_one(client, queue)
    assert first.attempt == 1

    nack_sent = now_ns()
    after_nack = client.nack(first.task_id, first.lease_token, retry_delay_s=0.5, error="boom 1")
    nack_done = now_ns()
    assert after_nack.state == State.TASK_STATE_SCHEDULED
    assert after_nack.attempts == 1
    assert after_nack.last_error == "boom 1"
    retry_due = ns(after_nack.due_time)
    assert (
        nack_sent + 500 * MS_NS - EARLY_TOLERANCE_NS
        <= retry_due
        <= nack_done + 500 * MS_NS + EARLY_TOLERANCE_NS
    )
    status = client.status(scheduled.task_id)
    assert status.state == State.TASK_STATE_SCHEDULED
    assert status.last_error == "boom 1"
    assert list(client.lease(queue)) == []

    second = lease_one(client, queue, wait_s=5.0)
    received = now_ns()
    assert second.task_id == scheduled.task_id
    assert second.attempt == 2
    assert second.payload == b"flaky"
    assert second.lease_token != first.lease_token
    assert ns(second.due_time) == retry_due
    assert received >= retry_due - EARLY_TOLERANCE_NS

    dead = client.nack(second.task_id, second.lease_token, error="boom 2")
    assert dead.state == State.TASK_STATE_DEAD
    assert dead.attempts == 2
    assert dead.last_error == "boom 2"
    status = client.status(scheduled.task_id)
    assert status.state == State.TASK_STATE_DEAD
    assert status.last_error == "boom 2"
    assert status.HasField("finish_time")
    assert list(client.lease(queue, wait_s=1.0)) == []
    expect_error(StatusCode.FAILED_PRECONDITION, client.ack, second.task_id, second.lease_token)


def test_nack_uses_exponential_backoff(client):
    # Without retry_delay the retry waits min_backoff * 2^(n-1): 0.2 s, then 0.4 s.
    queue = unique("backoff")
    policy = task_pb2.RetryPolicy(
        max_attempts=3, min_backoff=duration(0.2), max_backoff=duration(10)
    )
    scheduled = client.schedule(queue=queue, retry_policy=policy)
    for attempt, backoff_ms in ((1, 200), (2, 400)):
        leased = lease_one(client, queue, wait_s=5.0)
        assert leased.attempt == attempt
        sent = now_ns()
        task = client.nack(leased.task_id, leased.lease_token, error=f"fail {attempt}")
        done = now_ns()
        assert task.state == State.TASK_STATE_SCHEDULED
        due = ns(task.due_time)
        assert (
            sent + backoff_ms * MS_NS - EARLY_TOLERANCE_NS
            <= due
            <= done + backoff_ms * MS_NS + EARLY_TOLERANCE_NS
        ), f"attempt {attempt}: retry due {(due - sent) / 1e6:.1f} ms after nack, not {backoff_ms}"
    last = lease_one(client, queue, wait_s=5.0)
    assert last.attempt == 3
    assert (
        client.nack(last.task_id, last.lease_token, error="fail 3").state == State.TASK_STATE_DEAD
    )
    assert client.status(scheduled.task_id).attempts == 3


def test_expired_lease_is_redelivered_and_stale_token_refused(client):
    # At least once: an expired lease makes the task ready again with attempt + 1, and the
    # old lease_token no longer works for Ack, Nack or ExtendLease.
    queue = unique("stale")
    policy = task_pb2.RetryPolicy(max_attempts=5, max_backoff=duration(1))
    policy.min_backoff.SetInParent()  # 0 s: retry at once.
    scheduled = client.schedule(queue=queue, payload=b"slow", retry_policy=policy)
    first = lease_one(client, queue, lease_duration_s=1.0)
    assert first.attempt == 1
    first_expiry = ns(first.lease_expire_time)

    second = lease_one(client, queue, wait_s=10.0)
    received = now_ns()
    assert second.task_id == scheduled.task_id
    assert second.attempt == 2
    assert second.lease_token != first.lease_token
    assert (
        received >= first_expiry - EARLY_TOLERANCE_NS
    ), "redelivered before the first lease expired"
    status = client.status(scheduled.task_id)
    assert status.state == State.TASK_STATE_LEASED
    assert status.attempts == 2
    assert "expired" in status.last_error, status.last_error

    expect_error(StatusCode.FAILED_PRECONDITION, client.ack, first.task_id, first.lease_token)
    expect_error(StatusCode.FAILED_PRECONDITION, client.nack, first.task_id, first.lease_token)
    expect_error(StatusCode.FAILED_PRECONDITION, client.extend, first.task_id, first.lease_token, 5)
    expect_error(StatusCode.FAILED_PRECONDITION, client.ack, first.task_id, "not-a-token")
    expect_error(StatusCode.NOT_FOUND, client.ack, unique("unknown"), second.lease_token)
    expect_error(StatusCode.NOT_FOUND, client.nack, unique("unknown"), second.lease_token)
    expect_error(StatusCode.NOT_FOUND, client.extend, unique("unknown"), second.lease_token, 5)

    client.ack(second.task_id, second.lease_token)
    status = client.status(scheduled.task_id)
    assert status.state == State.TASK_STATE_SUCCEEDED
    assert status.attempts == 2


def test_extend_lease(client):
    # ExtendLease moves the lease's end; the task is not redelivered while extended.
    queue = unique("extend")
    scheduled = client.schedule(queue=queue)
    leased = lease_one(client, queue, lease_duration_s=1.0)
    sent = now_ns()
    extended = client.extend(leased.task_id, leased.lease_token, lease_duration_s=5.0)
    done = now_ns()
    expiry = ns(extended.lease_expire_time)
    assert (
        sent + 5 * SECOND_NS - EARLY_TOLERANCE_NS
        <= expiry
        <= done + 5 * SECOND_NS + EARLY_TOLERANCE_NS
    )
    assert ns(client.status(scheduled.task_id).lease_expire_time) == expiry

    # Well past the original 1 s lease: still leased, nothing to hand out.
    assert list(client.lease(queue, wait_s=1.5)) == []
    status = client.status(scheduled.task_id)
    assert status.state == State.TASK_STATE_LEASED
    assert status.attempts == 1
    client.ack(leased.task_id, leased.lease_token)
    assert client.status(scheduled.task_id).state == State.TASK_STATE_SUCCEEDED


def test_extend_lease_default_duration(client):
    # ExtendLease without lease_duration extends by the default 30 s.
    queue = unique("extend-default")
    client.schedule(queue=queue)
    leased = lease_one(client, queue, lease_duration_s=1.0)
    sent = now_ns()
    extended = client.extend(leased.task_id, leased.lease_token)
    assert ns(extended.lease_expire_time) >= sent + 30 * SECOND_NS - EARLY_TOLERANCE_NS
    client.ack(leased.task_id, leased.lease_token)


def test_reschedule(client):
    # Reschedule moves a SCHEDULED task's due time; the task keeps its id and payload.
    queue = unique("resched")
    scheduled = client.schedule(queue=queue, payload=b"moved", delay=duration(3600))
    sent = now_ns()
    moved = client.reschedule(task_id=scheduled.task_id, delay=duration(0.5)).task
    done = now_ns()
    assert moved.task_id == scheduled.task_id
    assert moved.state == State.TASK_STATE_SCHEDULED
    due = ns(moved.due_time)
    assert sent + 500 * MS_NS - EARLY_TOLERANCE_NS <= due <= done + 500 * MS_NS + EARLY_TOLERANCE_NS
    assert ns(client.status(scheduled.task_id).due_time) == due

    leased = lease_one(client, queue, wait_s=5.0)
    assert now_ns() >= due - EARLY_TOLERANCE_NS
    assert leased.task_id == scheduled.task_id
    assert leased.payload == b"moved"
    assert leased.attempt == 1
    assert ns(leased.due_time) == due

    # A leased task cannot be moved.
    expect_error(
        StatusCode.FAILED_PRECONDITION,
        client.reschedule,
        task_id=scheduled.task_id,
        delay=duration(10),
    )
    client.ack(leased.task_id, leased.lease_token)
    # Nor a finished one.
    expect_error(
        StatusCode.FAILED_PRECONDITION,
        client.reschedule,
        task_id=scheduled.task_id,
        delay=duration(10),
    )


def test_reschedule_at_and_ready_back_to_scheduled(client):
    # A READY task moved into the future is SCHEDULED again and not handed out.
    queue = unique("resched-ready")
    scheduled = client.schedule(queue=queue)
    wait_until(
        lambda: client.status(scheduled.task_id).state == State.TASK_STATE_READY,
        5,
        what="the task to be READY",
    )
    at = now_ns() + 3600 * SECOND_NS
    moved = client.reschedule(task_id=scheduled.task_id, at=timestamp_ns(at)).task
    assert moved.state == State.TASK_STATE_SCHEDULED
    assert abs(ns(moved.due_time) - at) <= EARLY_TOLERANCE_NS
    assert list(client.lease(queue, wait_s=0.5)) == []
    client.cancel(scheduled.task_id)


def test_reschedule_errors(client):
    expect_error(
        StatusCode.NOT_FOUND, client.reschedule, task_id=unique("unknown"), delay=duration(1)
    )
    queue = unique("resched-bad")
    scheduled = client.schedule(queue=queue, delay=duration(3600))
    expect_invalid_argument(
        "delay", client.reschedule, task_id=scheduled.task_id, delay=duration(-1)
    )
    expect_invalid_argument(
        "delay", client.reschedule, task_id=scheduled.task_id, delay=duration(17521 * 3600)
    )
    client.cancel(scheduled.task_id)
    expect_error(
        StatusCode.FAILED_PRECONDITION,
        client.reschedule,
        task_id=scheduled.task_id,
        delay=duration(1),
    )


def test_lease_returns_up_to_max_tasks_oldest_due_first(client):
    # One Lease hands out several ready tasks, oldest due first, at most max_tasks.
    queue = unique("batch")
    base = now_ns() + 300 * MS_NS
    ids = [
        client.schedule(queue=queue, at=timestamp_ns(base + i * 10 * MS_NS)).task_id
        for i in range(5)
    ]
    # Let all five become ready before leasing.
    wait_until(
        lambda: all(client.status(i).state == State.TASK_STATE_READY for i in ids),
        5,
        what="five READY tasks",
    )
    tasks = client.lease(queue, max_tasks=3)
    assert [t.task_id for t in tasks] == ids[:3]
    rest = client.lease(queue, max_tasks=10)
    assert [t.task_id for t in rest] == ids[3:]
    for task in list(tasks) + list(rest):
        client.ack(task.task_id, task.lease_token)
