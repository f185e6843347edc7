"""Acceptance: 3000 delayed tasks over 4 queues, 100 cancelled, 8 long-polling consumers.

Every task that was not cancelled is handed out exactly once and never before its due time;
no cancelled task is ever handed out; all of it within 30 s.
"""

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from support import (
    EARLY_TOLERANCE_NS,
    State,
    duration,
    metric_value,
    now_ns,
    ns,
    parse_metrics,
    scrape,
    unique,
    wait_until,
)

TASKS = 3000
CANCELLED = 100
QUEUES = 4
CONSUMERS = 8
MAX_DELAY_S = 3.0
LEASE_DURATION_S = 30.0
FINISH_WITHIN_S = 30.0
# After the last ack, consumers keep leasing this long to catch any duplicate.
QUIET_S = 2.0


def test_acceptance_3000_tasks(start_server):
    server = start_server()
    client = server.client()
    rng = random.Random(20261128)
    queues = [unique(f"accept{i}") for i in range(QUEUES)]
    plan = [
        (
            f"acc-{i:05d}-{rng.getrandbits(32):08x}",
            queues[i % QUEUES],
            rng.uniform(0, MAX_DELAY_S),
        )
        for i in range(TASKS)
    ]
    # Cancel only tasks at least 1 s out, so that "right after scheduling" is surely before due.
    to_cancel = set(
        rng.sample([task_id for task_id, _, delay in plan if delay >= 1.0], CANCELLED)
    )
    expected = {task_id for task_id, _, _ in plan} - to_cancel

    lock = threading.Lock()
    due_by_id = {}  # task_id -> due_time (ns) from ScheduleResponse
    # task_id -> monotonic ns before the Schedule call + the delay: a lower bound of the due time
    # on the client's monotonic clock, which no wall-clock step can move.
    earliest_due_mono = {}
    deliveries = (
        {}
    )  # task_id -> [(attempt, due ns, received ns, lease start ns, queue)]
    acked = set()
    errors = []
    stop = threading.Event()

    def consume(queue):
        while not stop.is_set():
            try:
                tasks = client.lease(
                    queue, wait_s=1.0, max_tasks=10, lease_duration_s=LEASE_DURATION_S
                )
            except grpc.RpcError as error:
                errors.append(f"Lease({queue}): {error.code().name} {error.details()}")
                time.sleep(0.1)
                continue
            received = now_ns()
            received_mono = time.monotonic_ns()
            for task in tasks:
                lease_start = ns(task.lease_expire_time) - int(LEASE_DURATION_S * 1e9)
                with lock:
                    deliveries.setdefault(task.task_id, []).append(
                        (
                            task.attempt,
                            ns(task.due_time),
                            received,
                            lease_start,
                            task.queue,
                            received_mono,
                        )
                    )
                try:
                    client.ack(task.task_id, task.lease_token)
                except grpc.RpcError as error:
                    errors.append(
                        f"Ack({task.task_id}): {error.code().name} {error.details()}"
                    )
                    continue
                with lock:
                    acked.add(task.task_id)

    def schedule(item):
        task_id, queue, delay_s = item
        sent_mono = time.monotonic_ns()
        try:
            response = client.schedule(
                queue=queue,
                task_id=task_id,
                payload=task_id.encode(),
                delay=duration(delay_s),
            )
        except grpc.RpcError as error:
            errors.append(f"Schedule({task_id}): {error.code().name} {error.details()}")
            return
        with lock:
            due_by_id[task_id] = ns(response.due_time)
            earliest_due_mono[task_id] = sent_mono + int(delay_s * 1e9)
        if task_id in to_cancel:
            try:
                state = client.cancel(task_id).task.state
                assert state == State.TASK_STATE_CANCELLED, state
            except grpc.RpcError as error:
                errors.append(
                    f"Cancel({task_id}): {error.code().name} {error.details()}"
                )

    consumers = [
        threading.Thread(target=consume, args=(queues[i % QUEUES],), daemon=True)
        for i in range(CONSUMERS)
    ]
    start = time.monotonic()
    for thread in consumers:
        thread.start()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(schedule, plan))
    scheduled_in_s = time.monotonic() - start

    def all_acked():
        with lock:
            return expected <= acked

    try:
        wait_until(
            all_acked,
            FINISH_WITHIN_S - (time.monotonic() - start),
            interval_s=0.05,
            what="every task to be acked",
        )
    except AssertionError:
        pass  # Reported below with the details.
    finished_in_s = time.monotonic() - start
    time.sleep(QUIET_S)
    stop.set()
    for thread in consumers:
        thread.join(10)
    assert not any(thread.is_alive() for thread in consumers), "a consumer thread hung"

    # Lateness, for the record (client-side receive time - due time).
    lateness_ms = sorted(
        (d[0][2] - due_by_id[task_id]) / 1e6
        for task_id, d in deliveries.items()
        if task_id in due_by_id
    )
    if lateness_ms:
        pick = lambda q: lateness_ms[
            min(len(lateness_ms) - 1, int(q * len(lateness_ms)))
        ]  # noqa: E731
        print(
            f"\nacceptance: scheduled {TASKS} in {scheduled_in_s:.2f} s, all acked after "
            f"{finished_in_s:.2f} s; lateness ms p50 {pick(0.5):.1f} p99 {pick(0.99):.1f} "
            f"max {lateness_ms[-1]:.1f} min {lateness_ms[0]:.1f}"
        )

    assert not errors, f"{len(errors)} RPC errors, first: {errors[:5]}"
    assert len(due_by_id) == TASKS
    leased_cancelled = sorted(to_cancel & deliveries.keys())
    assert (
        not leased_cancelled
    ), f"{len(leased_cancelled)} cancelled tasks were leased: {leased_cancelled[:5]}"
    missing = sorted(expected - deliveries.keys())
    assert (
        not missing
    ), f"{len(missing)} tasks never delivered within {FINISH_WITHIN_S} s: {missing[:5]}"
    duplicates = {task_id: d for task_id, d in deliveries.items() if len(d) != 1}
    assert (
        not duplicates
    ), f"{len(duplicates)} tasks delivered more than once: {list(duplicates.items())[:3]}"
    assert acked == expected
    assert finished_in_s <= FINISH_WITHIN_S

    by_queue = {task_id: queue for task_id, queue, _ in plan}
    # Never early, judged on the client's monotonic clock: the task must not arrive before the
    # Schedule call was sent plus its delay (the server's due time is at least that). The wall
    # clock is only reported: on a virtual machine it can step back by milliseconds (seen here: a
    # task "received" before the server's own lease start), which no server can defend against.
    early = []
    wall_early = []
    for task_id, deliveries_of_task in deliveries.items():
        (
            (attempt, leased_due, received, lease_start, queue, received_mono),
        ) = deliveries_of_task
        assert attempt == 1, (task_id, attempt)
        assert queue == by_queue[task_id], (task_id, queue)
        due = due_by_id[task_id]
        assert (
            leased_due == due
        ), f"{task_id}: leased due_time differs from the scheduled one"
        if received_mono < earliest_due_mono[task_id] - EARLY_TOLERANCE_NS:
            early.append((task_id, (earliest_due_mono[task_id] - received_mono) / 1e6))
        if (
            received < due - EARLY_TOLERANCE_NS
            or lease_start < due - EARLY_TOLERANCE_NS
        ):
            wall_early.append(
                (task_id, (due - received) / 1e6, (due - lease_start) / 1e6)
            )
    # Each entry: (task id, ms early on the client's monotonic clock).
    assert not early, f"{len(early)} tasks handed out early: {early[:5]}"
    if wall_early:
        print(
            f"wall clock: {len(wall_early)} deliveries look early by wall time: {wall_early[:5]}"
        )
    assert lateness_ms[-1] < 10_000, f"a task was {lateness_ms[-1]:.0f} ms late"

    # The server agrees.
    for task_id in sorted(to_cancel):
        status = client.status(task_id)
        assert status.state == State.TASK_STATE_CANCELLED and status.attempts == 0, (
            task_id,
            status,
        )
    for task_id in rng.sample(sorted(expected), 200):
        status = client.status(task_id)
        assert status.state == State.TASK_STATE_SUCCEEDED and status.attempts == 1, (
            task_id,
            status,
        )
    for queue in queues:
        assert list(client.lease(queue)) == []

    samples = parse_metrics(scrape(server))
    total = lambda name, **labels: sum(  # noqa: E731
        metric_value(samples, name, queue=queue, **labels) for queue in queues
    )
    assert total("hourglass_tasks_scheduled_total") == TASKS
    assert total("hourglass_tasks_cancelled_total") == CANCELLED
    assert (
        total("hourglass_task_deliveries_total", outcome="succeeded")
        == TASKS - CANCELLED
    )
    assert total("hourglass_task_deliveries_total", outcome="retried") == 0
