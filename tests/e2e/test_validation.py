"""Bad input is INVALID_ARGUMENT with a message naming the field, and the server keeps serving."""

import pytest

from support import (
    State,
    StatusCode,
    consumer_pb2,
    duration,
    expect_error,
    expect_invalid_argument,
    health_pb2,
    now_ns,
    ns,
    task_pb2,
    timestamp_ns,
    unique,
)

MAX_DELAY_S = 17520 * 3600  # The default --max_delay, 730 days.
MIB = 1024 * 1024


@pytest.mark.parametrize(
    "field, request_fields",
    [
        ("queue", {"queue": "bad queue!"}),
        ("queue", {"queue": "q/with/slashes"}),
        ("queue", {"queue": "q" * 201}),
        ("task_id", {"task_id": "t" * 201}),
        ("task_id", {"task_id": "tab\there"}),
        ("delay", {"delay": duration(-5)}),
        ("delay", {"delay": duration(MAX_DELAY_S + 1)}),
        ("payload", {"payload": b"x" * (MIB + 1)}),
        ("header", {"headers": {f"k{i}": "v" for i in range(65)}}),
        ("header", {"headers": {"k" * 257: "v"}}),
        ("header", {"headers": {"": "v"}}),
        ("header", {"headers": {"k": "v" * 4097}}),
        ("max_attempts", {"retry_policy": task_pb2.RetryPolicy(max_attempts=1001)}),
        ("max_attempts", {"retry_policy": task_pb2.RetryPolicy(max_attempts=-1)}),
        ("min_backoff", {"retry_policy": task_pb2.RetryPolicy(min_backoff=duration(-1))}),
        (
            "backoff",
            {
                "retry_policy": task_pb2.RetryPolicy(
                    min_backoff=duration(10), max_backoff=duration(5)
                )
            },
        ),
        ("max_backoff", {"retry_policy": task_pb2.RetryPolicy(max_backoff=duration(31 * 86400))}),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_schedule_is_invalid_argument(client, field, request_fields):
    # Each bad field is refused with a message naming it; a valid request still works after.
    fields = {"queue": unique("valid")}
    fields.update(request_fields)
    expect_invalid_argument(field, client.schedule, **fields)
    assert client.schedule(queue=unique("after-bad"), delay=duration(3600)).task_id


def test_schedule_at_beyond_max_delay_is_invalid(client):
    far = now_ns() + (MAX_DELAY_S + 3600) * 1_000_000_000
    expect_error(
        StatusCode.INVALID_ARGUMENT, client.schedule, queue=unique("far"), at=timestamp_ns(far)
    )


def test_limits_are_inclusive(client):
    # The limits themselves are allowed: 200-byte queue and id, a 1 MiB payload, 64 headers.
    queue = "q" * 200
    task_id = "t" * 190 + unique("")[:10]
    scheduled = client.schedule(
        queue=queue,
        task_id=task_id,
        payload=b"x" * MIB,
        headers={f"k{i}": "v" for i in range(64)},
        delay=duration(3600),
    )
    assert scheduled.task_id == task_id
    status = client.status(task_id)
    assert status.payload_size_bytes == MIB
    client.cancel(task_id)


@pytest.mark.parametrize(
    "field, request_fields",
    [
        ("queue", {"queue": "bad queue!"}),
        ("max_tasks", {"max_tasks": 1001}),
        ("max_tasks", {"max_tasks": -1}),
        ("lease_duration", {"lease_duration": duration(0.5)}),
        ("lease_duration", {"lease_duration": duration(12 * 3600 + 1)}),
        ("wait", {"wait": duration(61)}),
        ("wait", {"wait": duration(-1)}),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_lease_is_invalid_argument(client, field, request_fields):
    fields = {"queue": unique("lease-bad")}
    fields.update(request_fields)
    expect_invalid_argument(field, client.consumer.Lease, consumer_pb2.LeaseRequest(**fields))


def test_bad_nack_and_extend_are_invalid_argument(client):
    queue = unique("nack-bad")
    client.schedule(queue=queue)
    (leased,) = client.lease(queue, wait_s=5.0)
    expect_invalid_argument(
        "retry_delay", client.nack, leased.task_id, leased.lease_token, retry_delay_s=-1
    )
    expect_invalid_argument(
        "lease_duration", client.extend, leased.task_id, leased.lease_token, lease_duration_s=0.5
    )
    # Still leased with the same token: the bad calls changed nothing.
    assert client.status(leased.task_id).state == State.TASK_STATE_LEASED
    client.ack(leased.task_id, leased.lease_token)


def test_payload_limit_flag(start_server):
    # --max_payload_bytes sets the limit: at it is fine, one byte more is INVALID_ARGUMENT.
    server = start_server("--max_payload_bytes=1024")
    client = server.client()
    queue = unique("payload")
    assert client.schedule(queue=queue, payload=b"x" * 1024, delay=duration(60)).task_id
    error = expect_invalid_argument("payload", client.schedule, queue=queue, payload=b"x" * 1025)
    assert "1024" in error.details(), f"the message should name the limit: {error.details()!r}"
    assert client.health() == health_pb2.HealthCheckResponse.SERVING
    assert client.schedule(queue=queue, payload=b"ok").task_id


def test_max_delay_flag(start_server):
    # --max_delay sets the horizon: beyond it is INVALID_ARGUMENT, never clamped.
    server = start_server("--max_delay=1h")
    client = server.client()
    queue = unique("horizon")
    assert client.schedule(queue=queue, delay=duration(1800)).task_id
    expect_invalid_argument("delay", client.schedule, queue=queue, delay=duration(7200))
    assert client.health() == health_pb2.HealthCheckResponse.SERVING


def test_delay_of_exactly_max_delay_is_accepted(client):
    # The horizon itself is allowed (not clamped, not an error), and the server keeps serving.
    queue = unique("horizon-edge")
    scheduled = client.schedule(queue=queue, delay=duration(MAX_DELAY_S))
    status = client.status(scheduled.task_id)
    assert status.state == State.TASK_STATE_SCHEDULED
    assert abs(ns(status.due_time) - (now_ns() + MAX_DELAY_S * 1_000_000_000)) < 60 * 1_000_000_000
    client.cancel(scheduled.task_id)
    assert client.health() == health_pb2.HealthCheckResponse.SERVING
