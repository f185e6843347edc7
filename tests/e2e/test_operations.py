"""Running the server: flags, logs, health, reflection, metrics, SIGTERM, restart, quickstart."""

import json
import os
import re
import signal
import subprocess
import threading
import time

import grpc
from google.protobuf import descriptor_pb2

from support import (
    BINARY,
    PROMTOOL,
    PYTHON,
    REPO_ROOT,
    STUBS_DIR,
    State,
    StatusCode,
    duration,
    expect_error,
    has_metric,
    health_pb2,
    metric_value,
    now_ns,
    ns,
    parse_metrics,
    reflection_pb2,
    scrape,
    task_pb2,
    unique,
    wait_until,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = ("hourglass.v1.SchedulerService", "hourglass.v1.ConsumerService")
FLAGS = (
    "grpc_address",
    "metrics_address",
    "data_dir",
    "workers",
    "queue_capacity",
    "log_level",
    "retention",
    "max_payload_bytes",
    "max_delay",
    "shutdown_grace",
)


def test_help_mentions_every_flag():
    # --help exits 0 and documents every flag.
    result = subprocess.run(
        [BINARY, "--help"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"--help exited {result.returncode}\n{output[-2000:]}"
    missing = [flag for flag in FLAGS if flag not in output]
    assert not missing, f"--help does not mention {missing}\n{output[-3000:]}"


def test_bad_flags_fail_fast(work_dir):
    # A bad flag value or an unknown flag stops the server at once with a non-zero code.
    for bad, name in (("--log_level=verbose", "log_level"), ("--no_such_flag=1", "no_such_flag")):
        result = subprocess.run(
            [
                BINARY,
                "--grpc_address=127.0.0.1:0",
                "--metrics_address=127.0.0.1:0",
                f"--data_dir={os.path.join(work_dir, 'bad-flags')}",
                bad,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.returncode != 0, f"{bad} was accepted"
        assert name in result.stdout + result.stderr, f"the error for {bad} does not name the flag"


def test_logs_are_json_lines(server):
    # Every stderr line is one JSON object with ts (UTC, milliseconds), level and event.
    lines = server.logs()
    assert lines, "the server logged nothing"
    for line in lines:
        event = json.loads(line)
        assert isinstance(event, dict), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event.get("ts", "")), line
        assert event.get("level") in ("debug", "info", "warning", "error"), line
        assert event.get("event"), line
    started = server.started_event
    assert started["level"] == "info"
    assert started["grpc_address"].endswith(f":{server.grpc_port}")
    assert started["metrics_address"].endswith(f":{server.metrics_port}")


def test_health_is_serving(client):
    assert client.health("") == SERVING
    for service in SERVICES:
        assert client.health(service) == SERVING, service
    expect_error(StatusCode.NOT_FOUND, client.health, "no.such.Service")


def test_reflection_lists_the_services(client):
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="hourglass.v1.SchedulerService"
        ),
    ]
    responses = list(client.reflection_stub.ServerReflectionInfo(iter(requests), timeout=20))
    assert len(responses) == 2
    names = {service.name for service in responses[0].list_services_response.service}
    for service in SERVICES + ("grpc.health.v1.Health",):
        assert service in names, f"{service} not listed by reflection: {sorted(names)}"
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in responses[1].file_descriptor_response.file_descriptor_proto
    ]
    assert "hourglass/v1/scheduler_service.proto" in {f.name for f in files}


def test_metrics(start_server):
    # /metrics passes promtool and counts exactly what this test did.
    server = start_server()
    client = server.client()
    queue = unique("metrics")
    far = [client.schedule(queue=queue, delay=duration(3600)).task_id for _ in range(5)]
    one_shot = task_pb2.RetryPolicy(max_attempts=1)
    two_shots = task_pb2.RetryPolicy(max_attempts=2)
    due_ids = {
        client.schedule(queue=queue, task_id=unique("ack")).task_id: "ack",
        client.schedule(queue=queue, task_id=unique("dead"), retry_policy=one_shot).task_id: "dead",
        client.schedule(
            queue=queue, task_id=unique("retry"), retry_policy=two_shots
        ).task_id: "retry",
    }
    client.cancel(far[0])
    expect_error(StatusCode.INVALID_ARGUMENT, client.schedule, queue="bad queue!")

    leased = []
    deadline = time.monotonic() + 10
    while len(leased) < 3 and time.monotonic() < deadline:
        leased += client.lease(queue, wait_s=2.0, max_tasks=3)
    assert sorted(t.task_id for t in leased) == sorted(due_ids)
    for task in leased:
        kind = due_ids[task.task_id]
        if kind == "ack":
            client.ack(task.task_id, task.lease_token)
        elif kind == "dead":
            assert (
                client.nack(task.task_id, task.lease_token, error="no").state
                == State.TASK_STATE_DEAD
            )
        else:
            task_after = client.nack(
                task.task_id, task.lease_token, retry_delay_s=3600, error="later"
            )
            assert task_after.state == State.TASK_STATE_SCHEDULED

    expected_states = {
        "scheduled": 5,  # four far ones and the retry
        "ready": 0,
        "leased": 0,
        "succeeded": 1,
        "cancelled": 1,
        "dead": 1,
    }

    def states_match():
        samples = parse_metrics(scrape(server))
        got = {
            s: metric_value(samples, "hourglass_tasks", queue=queue, state=s)
            for s in expected_states
        }
        return samples if got == expected_states else None

    try:
        samples = wait_until(states_match, 5, interval_s=0.1, what="hourglass_tasks gauges")
    except AssertionError:
        samples = parse_metrics(scrape(server))
        got = {
            s: metric_value(samples, "hourglass_tasks", queue=queue, state=s)
            for s in expected_states
        }
        raise AssertionError(
            f"hourglass_tasks{{queue={queue}}}: expected {expected_states}, got {got}"
        )

    text = scrape(server)
    samples = parse_metrics(text)
    lint = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert lint.returncode == 0, f"promtool check metrics failed:\n{lint.stdout}{lint.stderr}"

    assert metric_value(samples, "hourglass_tasks_scheduled_total", queue=queue) == 8
    assert metric_value(samples, "hourglass_tasks_cancelled_total", queue=queue) == 1
    for outcome in ("succeeded", "retried", "dead"):
        assert (
            metric_value(samples, "hourglass_task_deliveries_total", queue=queue, outcome=outcome)
            == 1
        ), outcome
    handled_ok = metric_value(
        samples,
        "hourglass_grpc_server_handled_total",
        grpc_service="hourglass.v1.SchedulerService",
        grpc_method="Schedule",
        grpc_code="OK",
    )
    assert handled_ok == 8, handled_ok
    handled_schedule = metric_value(
        samples,
        "hourglass_grpc_server_handled_total",
        grpc_service="hourglass.v1.SchedulerService",
        grpc_method="Schedule",
    )
    assert handled_schedule == 9, "the INVALID_ARGUMENT Schedule is counted too"
    assert metric_value(samples, "hourglass_grpc_server_handling_seconds_count") >= 9
    assert has_metric(samples, "hourglass_dispatch_queue_depth")
    assert metric_value(samples, "hourglass_dispatch_lateness_seconds_count") >= 3
    assert metric_value(samples, "hourglass_build_info") == 1
    assert any(name.startswith("process_") for name, _, _ in samples), "no process_* metrics"
    # Task ids never appear as label values.
    all_ids = set(far) | set(due_ids)
    assert not [labels for _, labels, _ in samples if all_ids & set(labels.values())]


def test_sigterm_drains_and_exits_zero(start_server):
    # SIGTERM with clients connected: health turns NOT_SERVING, a parked Lease is answered,
    # new calls get UNAVAILABLE, and the process exits 0 within --shutdown_grace.
    grace_s = 2
    server = start_server(f"--shutdown_grace={grace_s}s")
    client = server.client()
    queue = unique("drain")
    client.schedule(queue=queue, delay=duration(3600))  # Pending tasks do not hold shutdown up.

    statuses = []
    watch = client.health_stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)

    def follow_health():
        try:
            for response in watch:
                statuses.append(response.status)
        except Exception:  # The stream ends with the server; any ending is fine.
            pass

    lease_outcome = {}

    def park_lease():
        try:
            lease_outcome["tasks"] = list(client.lease(queue + "-empty", wait_s=20.0))
        except grpc.RpcError as error:
            lease_outcome["code"] = error.code()

    watcher = threading.Thread(target=follow_health, daemon=True)
    watcher.start()
    wait_until(lambda: SERVING in statuses, 5, what="health Watch to say SERVING")
    leaser = threading.Thread(target=park_lease, daemon=True)
    leaser.start()
    time.sleep(0.3)  # Let the Lease park on the server.

    start = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    leaser.join(grace_s + 1)
    lease_answered_s = time.monotonic() - start
    wait_until(lambda: NOT_SERVING in statuses, grace_s, what="health Watch to say NOT_SERVING")
    late_call = {}
    if server.running():
        try:
            client.schedule(queue=queue)
            late_call["code"] = StatusCode.OK
        except grpc.RpcError as error:
            late_call["code"] = error.code()
    code = server.wait_exit()
    elapsed = time.monotonic() - start
    watcher.join(5)
    watch.cancel()

    assert code == 0, f"exit code {code} after SIGTERM\n" + server.log_tail()
    assert not leaser.is_alive(), "a parked Lease was not answered during shutdown"
    assert lease_outcome in ({"tasks": []}, {"code": StatusCode.UNAVAILABLE}), lease_outcome
    assert (
        lease_answered_s < grace_s
    ), f"the parked Lease was answered after {lease_answered_s:.1f} s"
    assert statuses.index(NOT_SERVING) > statuses.index(SERVING), statuses
    assert late_call.get("code", StatusCode.UNAVAILABLE) == StatusCode.UNAVAILABLE, late_call
    # The grace bounds the whole shutdown; 1 s is allowed for the process to end.
    assert elapsed <= grace_s + 1, f"took {elapsed:.1f} s to exit with --shutdown_grace={grace_s}s"


def test_restart_keeps_tasks(start_server, work_dir):
    # What was acknowledged survives a SIGTERM and a restart on the same --data_dir.
    data_dir = os.path.join(work_dir, "restart-data")
    first = start_server(data_dir=data_dir)
    client = first.client()
    queue = unique("restart")
    pending = client.schedule(
        queue=queue, task_id=unique("pending"), payload=b"p", delay=duration(2)
    )
    done = client.schedule(queue=queue, task_id=unique("done"), payload=b"d")
    cancelled = client.schedule(queue=queue, task_id=unique("cancelled"), delay=duration(60))
    client.cancel(cancelled.task_id)
    (leased,) = client.lease(queue, wait_s=5.0)
    assert leased.task_id == done.task_id
    client.ack(done.task_id, leased.lease_token)
    code, _ = first.terminate()
    assert code == 0, first.log_tail()

    second = start_server(data_dir=data_dir)
    client = second.client()
    assert client.status(done.task_id).state == State.TASK_STATE_SUCCEEDED
    assert client.status(cancelled.task_id).state == State.TASK_STATE_CANCELLED
    status = client.status(pending.task_id)
    assert status.state in (State.TASK_STATE_SCHEDULED, State.TASK_STATE_READY)
    assert ns(status.due_time) == ns(pending.due_time)
    # Idempotency survives too.
    again = client.schedule(queue=queue, task_id=pending.task_id, payload=b"p", delay=duration(2))
    assert again == pending

    (leased,) = client.lease(queue, wait_s=10.0)
    assert leased.task_id == pending.task_id
    assert leased.attempt == 1
    assert now_ns() >= ns(pending.due_time) - 1_000_000
    client.ack(leased.task_id, leased.lease_token)


def test_quickstart_example_runs(start_server):
    # The README's walk-through: examples/python/quickstart.py against a live server.
    server = start_server()
    env = dict(os.environ, PYTHONPATH=STUBS_DIR)
    result = subprocess.run(
        [
            PYTHON,
            os.path.join(REPO_ROOT, "examples", "python", "quickstart.py"),
            f"--address={server.grpc_address}",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, f"quickstart failed:\n{result.stdout}{result.stderr}"
    assert "TASK_STATE_SUCCEEDED" in result.stdout, result.stdout
    assert "attempt 1" in result.stdout, result.stdout
