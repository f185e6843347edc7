"""Durability: what the server acknowledged survives `kill -9` and restarts on the same --data_dir.

- test_kill9_keeps_every_acknowledged_state: 3000 tasks in every state, kill -9 right after the
  last acknowledged call, restart: states, lease tokens, idempotency and due times are as they
  were acknowledged; overdue tasks are delivered at once and none early.
- test_kill9_with_fsync_never: the same (smaller) with --fsync=never: a crash of the process
  only, so the operating system still has every write.
- test_crash_loop: 20 cycles of concurrent load + kill -9 at a random moment + restart, with
  small snapshots (bench/crash_loop.py; its standalone form runs longer).
- test_torn_tail_is_truncated: garbage or a cut fragment at the end of the last segment is cut
  off at start and counted; nothing acknowledged is lost.
- test_corruption_in_the_middle_refuses_to_start: a flipped bit in an early record of a segment
  that is not the last stops the start (naming file and offset); --skip_corrupt_log starts.
  test_skipped_corruption_is_reported_as_skipped, test_start_after_skipping_corruption_needs_no_
  flag: what such a start reports, and the start after it.
- test_idempotent_repeat_survives_kill9: a repeated Schedule is answered only once the original
  is durable.
- test_restarts_do_not_postpone_snapshots: runs shorter than --snapshot_bytes still compact.
"""

import os
import random
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

import support
from support import (
    BINARY,
    EARLY_TOLERANCE_NS,
    REPO_ROOT,
    State,
    StatusCode,
    duration,
    expect_error,
    metric_value,
    now_ns,
    ns,
    parse_metrics,
    scheduler_pb2,
    scrape,
    unique,
)

sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))
import crash_loop  # noqa: E402  (bench/crash_loop.py)

HOUR_S = 3600.0
PENDING = (State.TASK_STATE_SCHEDULED, State.TASK_STATE_READY)


def segments(data_dir):
    """The data directory's log segments, oldest first (log-<first LSN, 20 digits>.wal)."""
    names = sorted(
        name for name in os.listdir(data_dir) if name.startswith("log-") and name.endswith(".wal")
    )
    return [os.path.join(data_dir, name) for name in names]


def statuses(client, task_ids):
    return crash_loop.statuses(client, task_ids)


def parallel(function, items, workers=8):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items))


def comparable(task):
    """A Task as GetStatus shows it, with READY folded into SCHEDULED.

    READY is not logged: a pending task whose due time has passed is SCHEDULED again right after
    recovery, until its timer fires a moment later.
    """
    copy = type(task)()
    copy.CopyFrom(task)
    if copy.state == State.TASK_STATE_READY:
        copy.state = State.TASK_STATE_SCHEDULED
    return copy


def recovery_metrics(server):
    samples = parse_metrics(scrape(server))
    return (
        metric_value(samples, "hourglass_recovery_records"),
        metric_value(samples, "hourglass_log_torn_tails_truncated_total"),
    )


def lease_start(task, lease_s):
    """When the server handed out a LeasedTask: its lease ends lease_s after that (ns)."""
    return ns(task.lease_expire_time) - int(lease_s * 1e9)


def lease_all(client, queues, expected_ids, lease_s=60.0, within_s=10.0):
    """Leases from `queues` until every id of expected_ids came (or within_s passed).

    Returns {task_id: (LeasedTask, received ns)} of everything handed out, expected or not.
    """
    got = {}
    deadline = time.monotonic() + within_s
    while not expected_ids <= got.keys() and time.monotonic() < deadline:
        for queue in queues:
            for task in client.lease(queue, wait_s=0.2, max_tasks=1000, lease_duration_s=lease_s):
                assert task.task_id not in got, f"{task.task_id} handed out twice"
                got[task.task_id] = (task, now_ns())
    return got


def run_kill9_scenario(start_server, work_dir, flags, tasks, cancel, ack, keep_leased, nack, soon):
    """Schedules `tasks` tasks over 3 queues and brings them into every state, then kill -9.

    The first (ack + keep_leased + nack) * 4 / 3 tasks are due at once; `cancel` of the others
    (due in an hour) are cancelled; `ack` due tasks are leased and acked, `keep_leased` leased
    for 60 s and kept, `nack` nacked with retry_delay 1 h; every 20th task has a client-chosen
    id. `soon` more tasks due 3 to 5 s out are scheduled last, with the acks and nacks; the server
    is killed right after the last of those calls is answered. Then the restarted server must
    show every task as it was acknowledged.
    """
    rng = random.Random(20261128 + tasks)
    data_dir = os.path.join(work_dir, unique("kill9-data"))
    server = start_server(*flags, data_dir=data_dir)
    client = server.client()
    queues = [unique(f"dur{i}") for i in range(3)]
    due_now = (ack + keep_leased + nack) * 4 // 3

    # --- Schedule ---------------------------------------------------------------------------
    def schedule_request(i, delay_s):
        request = scheduler_pb2.ScheduleRequest(
            queue=queues[i % 3],
            payload=f"payload {i}".encode(),
            headers={"i": str(i)},
            delay=duration(delay_s),
        )
        if i % 20 == 0:
            request.task_id = f"idem-{i:05d}-{queues[0]}"
        return request

    plan = [(i, 0.0 if i < due_now else HOUR_S + rng.uniform(0, 60)) for i in range(tasks)]
    requests = {i: schedule_request(i, delay_s) for i, delay_s in plan}
    responses = dict(
        zip(
            requests,
            parallel(lambda i: client.scheduler.Schedule(requests[i]), list(requests)),
        )
    )
    ids = {i: response.task_id for i, response in responses.items()}
    assert len(set(ids.values())) == tasks

    # --- Cancel some of the tasks due in an hour -------------------------------------------
    cancelled = rng.sample(range(due_now, tasks), cancel)
    cancel_answers = dict(zip(cancelled, parallel(lambda i: client.cancel(ids[i]).task, cancelled)))
    assert all(t.state == State.TASK_STATE_CANCELLED for t in cancel_answers.values())

    # --- Lease what the acks, the kept leases and the nacks need ----------------------------
    leased = []  # LeasedTask
    want = ack + keep_leased + nack
    deadline = time.monotonic() + 15
    while len(leased) < want and time.monotonic() < deadline:
        for queue in queues:
            room = min(want - len(leased), (want + 2) // 3)
            if room > 0:
                leased.extend(client.lease(queue, wait_s=0.5, max_tasks=room, lease_duration_s=60))
    assert len(leased) == want, f"leased {len(leased)} of the {want} due tasks"
    by_id = {task_id: i for i, task_id in ids.items()}
    assert all(by_id[t.task_id] < due_now and t.attempt == 1 for t in leased)
    rng.shuffle(leased)
    to_ack = leased[:ack]
    kept = leased[ack : ack + keep_leased]
    to_nack = leased[ack + keep_leased :]
    overdue = {ids[i] for i in range(due_now)} - {t.task_id for t in leased}

    # --- What GetStatus shows before the last changes ---------------------------------------
    before = statuses(client, ids.values())
    assert all(t is not None for t in before.values())
    for task in kept:
        assert before[task.task_id].state == State.TASK_STATE_LEASED
        assert ns(before[task.task_id].lease_expire_time) == ns(task.lease_expire_time)

    # --- The last changes, concurrently; kill -9 as soon as the last is answered ------------
    soon_requests = [
        scheduler_pb2.ScheduleRequest(
            queue=queues[k % 3],
            task_id=f"soon-{k:03d}-{queues[0]}",
            payload=b"soon",
            delay=duration(rng.uniform(3.0, 5.0)),
        )
        for k in range(soon)
    ]
    nack_errors = {t.task_id: f"nack {k}: ünïcode ✓ error" for k, t in enumerate(to_nack)}

    def last_change(item):
        kind, value = item
        if kind == "ack":
            return client.ack(value.task_id, value.lease_token)
        if kind == "nack":
            return client.nack(
                value.task_id,
                value.lease_token,
                retry_delay_s=HOUR_S,
                error=nack_errors[value.task_id],
            )
        return client.scheduler.Schedule(value)

    changes = (
        [("ack", t) for t in to_ack]
        + [("nack", t) for t in to_nack]
        + [("soon", r) for r in soon_requests]
    )
    rng.shuffle(changes)
    answers = parallel(last_change, changes)
    code = server.kill()  # right after the last acknowledged call: no sleep
    assert code == -9, f"exit code {code} after kill -9"
    nack_answers = {
        value.task_id: answer for (kind, value), answer in zip(changes, answers) if kind == "nack"
    }
    soon_answers = {
        answer.task_id: answer for (kind, _), answer in zip(changes, answers) if kind == "soon"
    }
    assert len(soon_answers) == soon

    # --- Restart on the same data directory ------------------------------------------------
    restarted_at = now_ns()
    server = start_server(*flags, data_dir=data_dir)
    client = server.client()
    recovered = server.event("recovered")
    assert recovered is not None, server.log_tail()
    records_metric, torn_metric = recovery_metrics(server)
    # One record at least per acknowledged change (leases not counted: one record per task or
    # per Lease call).
    changes_made = tasks + cancel + ack + nack + soon
    assert recovered["records"] >= changes_made, recovered
    assert records_metric == recovered["records"] > 0, (records_metric, recovered)
    assert recovered["tasks"] == tasks + soon, recovered
    assert torn_metric == recovered["torn_tails_truncated"], (torn_metric, recovered)

    # Overdue tasks are handed out at once, and only they (attempt 1, never early).
    delivered = lease_all(client, queues, overdue, within_s=5.0)
    assert delivered.keys() == overdue, (
        f"expected the {len(overdue)} overdue tasks at once; missing "
        f"{sorted(overdue - delivered.keys())[:5]}, unexpected "
        f"{sorted(delivered.keys() - overdue)[:5]}"
    )
    first_s = (min(received for _, received in delivered.values()) - restarted_at) / 1e9
    for task, received in delivered.values():
        assert task.attempt == 1, task
        assert ns(task.due_time) == ns(before[task.task_id].due_time), task
        assert received >= ns(task.due_time) - EARLY_TOLERANCE_NS
        assert lease_start(task, 60.0) >= ns(task.due_time) - EARLY_TOLERANCE_NS
    assert first_s < 5, f"the first overdue task came {first_s:.1f} s after the restart"

    # Every task as it was acknowledged.
    after = statuses(client, list(ids.values()) + list(soon_answers))
    mismatches = []

    def check(task_id, condition, what):
        if not condition:
            mismatches.append(f"{task_id}: {what}; now {after[task_id]}")

    acked_ids = {t.task_id for t in to_ack}
    for task_id, task in after.items():
        check(task_id, task is not None, "NOT_FOUND after restart")
    assert not mismatches, f"{len(mismatches)} tasks lost:\n" + "\n".join(mismatches[:10])
    for i, task_id in ids.items():
        task, old = after[task_id], before[task_id]
        if task_id in acked_ids:
            check(task_id, task.state == State.TASK_STATE_SUCCEEDED, "acked, not SUCCEEDED")
            check(task_id, task.attempts == 1, "acked at attempt 1")
            check(task_id, ns(task.due_time) == ns(old.due_time), "due_time changed")
            check(task_id, task.last_error == "", "last_error set")
            check(task_id, task.HasField("finish_time"), "no finish_time")
        elif task_id in nack_answers:
            check(
                task_id,
                task == nack_answers[task_id],
                f"not as Nack answered: {nack_answers[task_id]}",
            )
            check(task_id, task.state == State.TASK_STATE_SCHEDULED, "nacked, not SCHEDULED")
            check(task_id, task.last_error == nack_errors[task_id], "last_error lost")
            check(task_id, task.attempts == 1, "attempts")
        elif task_id in delivered:
            # Was READY; now leased by this test: the same task otherwise.
            check(task_id, task.state == State.TASK_STATE_LEASED and task.attempts == 1, "state")
            check(task_id, ns(task.due_time) == ns(old.due_time), "due_time changed")
        else:
            check(task_id, comparable(task) == comparable(old), f"changed; before {old}")
        if i in cancel_answers:
            check(task_id, task == cancel_answers[i], "not as Cancel answered")
        if i >= due_now and i not in cancel_answers:
            check(task_id, task.state == State.TASK_STATE_SCHEDULED, "not SCHEDULED")
            check(task_id, ns(task.due_time) == ns(responses[i].due_time), "due_time")
    for task_id, answer in soon_answers.items():
        task = after[task_id]
        check(task_id, task.state in PENDING, "soon task not pending")
        check(task_id, ns(task.due_time) == ns(answer.due_time), "due_time")
    assert not mismatches, f"{len(mismatches)} tasks not as acknowledged:\n" + "\n".join(
        mismatches[:10]
    )

    # Idempotent repeats answer the original response; another payload is refused.
    idempotent = [i for i in ids if i % 20 == 0]
    repeats = parallel(lambda i: client.scheduler.Schedule(requests[i]), idempotent)
    for i, repeat in zip(idempotent, repeats):
        assert repeat == responses[i], (i, repeat, responses[i])
    for request in soon_requests:
        assert client.scheduler.Schedule(request) == soon_answers[request.task_id]
    other = scheduler_pb2.ScheduleRequest()
    other.CopyFrom(requests[idempotent[0]])
    other.payload = b"another payload"
    expect_error(StatusCode.ALREADY_EXISTS, client.scheduler.Schedule, other)

    # The kept leases are still LEASED with the same token: Ack with the old token works.
    for task in kept:
        assert after[task.task_id].state == State.TASK_STATE_LEASED
        assert ns(after[task.task_id].lease_expire_time) == ns(task.lease_expire_time)
    parallel(lambda t: client.ack(t.task_id, t.lease_token), kept)
    kept_after = statuses(client, [t.task_id for t in kept])
    assert all(t.state == State.TASK_STATE_SUCCEEDED for t in kept_after.values())
    parallel(lambda d: client.ack(d[0].task_id, d[0].lease_token), delivered.values())

    # The tasks due a few seconds after the kill: delivered, none early, nothing else.
    soon_delivered = lease_all(client, queues, set(soon_answers), within_s=15.0)
    assert soon_delivered.keys() == set(soon_answers), sorted(soon_delivered)[:5]
    # Received, and handed out by the server (its lease began lease_duration before it ends),
    # at or after the due time.
    early = [
        (task.task_id, (ns(task.due_time) - min(received, lease_start(task, 60.0))) / 1e6)
        for task, received in soon_delivered.values()
        if min(received, lease_start(task, 60.0)) < ns(task.due_time) - EARLY_TOLERANCE_NS
    ]
    assert not early, f"handed out before due (ms early): {early[:5]}"
    assert all(
        ns(t.due_time) == ns(soon_answers[t.task_id].due_time) for t, _ in soon_delivered.values()
    )
    for queue in queues:
        assert list(client.lease(queue)) == [], "a task not yet due was handed out"
    print(
        f"\nkill -9 {' '.join(flags) or '(default flags)'}: {tasks + soon} tasks, "
        f"{recovered['records']} records recovered in {recovered['seconds'] * 1000:.1f} ms; "
        f"first overdue task {first_s * 1000:.0f} ms after the restart began"
    )


def test_kill9_keeps_every_acknowledged_state(start_server, work_dir):
    run_kill9_scenario(
        start_server,
        work_dir,
        (),
        tasks=3000,
        cancel=200,
        ack=300,
        keep_leased=100,
        nack=50,
        soon=60,
    )


def test_kill9_with_fsync_never(start_server, work_dir):
    # --fsync=never: the writes are in the operating system's cache only; a process crash keeps
    # them (a machine crash would not).
    run_kill9_scenario(
        start_server,
        work_dir,
        ("--fsync=never",),
        tasks=600,
        cancel=50,
        ack=60,
        keep_leased=20,
        nack=10,
        soon=10,
    )


def test_crash_loop(work_dir):
    loop = crash_loop.CrashLoop(
        BINARY,
        os.path.join(work_dir, unique("crash-loop-data")),
        cycles=20,
        seconds_per_cycle=1.0,
        # Small snapshots: several per cycle, so that kills also land during snapshots and
        # compactions, and restarts load snapshots.
        server_args=("--snapshot_bytes=65536",),
        log=None,
    )
    summary = loop.run()
    print("\n" + crash_loop.summary_line(summary))
    if summary["redelivered_examples"]:
        print(f"redelivered (allowed), e.g.: {', '.join(summary['redelivered_examples'])}")
    violations = "\n".join(f"{kind}: {message}" for kind, message in summary["violations"][:20])
    assert not summary["violations"], f"{len(summary['violations'])} violations:\n{violations}"
    assert not summary["errors"], f"unexpected RPC errors: {summary['errors'][:10]}"
    assert summary["drained"]
    assert summary["final_exit_code"] == 0
    assert summary["cycles"] >= 20
    assert summary["scheduled"] > 0 and summary["acked"] > 0


# --- the log's end ------------------------------------------------------------------------


def schedule_batch(client, prefix, count, delay_s=HOUR_S, in_order=False):
    """Schedules `count` tasks `prefix`-0000...; in_order: one at a time, so that the log holds
    their records in that order. Returns (ids, responses)."""
    requests = [
        scheduler_pb2.ScheduleRequest(
            queue="logend", task_id=f"{prefix}-{k:04d}", payload=b"x" * 40, delay=duration(delay_s)
        )
        for k in range(count)
    ]
    if in_order:
        return [r.task_id for r in requests], [client.scheduler.Schedule(r) for r in requests]
    return [r.task_id for r in requests], parallel(client.scheduler.Schedule, requests)


def test_torn_tail_is_truncated(start_server, work_dir):
    data_dir = os.path.join(work_dir, unique("torn-data"))
    server = start_server(data_dir=data_dir)
    client = server.client()
    ids, _ = schedule_batch(client, "torn-a", 100)
    ids += schedule_batch(client, "torn-b", 20, delay_s=0)[0]
    for task in client.lease("logend", wait_s=2.0, max_tasks=10):
        client.ack(task.task_id, task.lease_token)
    before = statuses(client, ids)
    code, _ = server.terminate()
    assert code == 0, server.log_tail()

    # A few garbage bytes (less than a fragment header), then a fragment cut short: what a
    # crash in the middle of a write leaves at the end of the last segment.
    tails = [b"\x17\x42\x99\x01\x05", b"\x00\x00\x00\x00\xc8\x00\x01" + b"\x5a" * 50]
    for round_, tail in enumerate(tails):
        last = segments(data_dir)[-1]
        size = os.path.getsize(last)
        with open(last, "ab") as f:
            f.write(tail)
        server = start_server(data_dir=data_dir)
        client = server.client()
        recovered = server.event("recovered")
        assert recovered["torn_tails_truncated"] == 1, recovered
        assert recovered["torn_bytes"] == len(tail), recovered
        assert recovery_metrics(server)[1] == 1
        assert os.path.getsize(last) == size or not os.path.exists(last), "not truncated"
        after = statuses(client, ids)
        changed = [
            t for t in ids if after[t] is None or comparable(after[t]) != comparable(before[t])
        ]
        assert not changed, f"round {round_}: changed after the truncation: {changed[:5]}"
        # The log goes on after the cut: a change made now survives the next start.
        ids += schedule_batch(client, f"torn-r{round_}", 5)[0]
        before = statuses(client, ids)
        code, _ = server.terminate()
        assert code == 0, server.log_tail()

    server = start_server(data_dir=data_dir)
    assert server.event("recovered")["torn_tails_truncated"] == 0
    after = statuses(server.client(), ids)
    assert all(after[t] is not None for t in ids)


def record_offsets(path):
    """Header offsets of the kFull/kFirst fragments of a segment (LevelDB log format)."""
    data = open(path, "rb").read()
    offsets, pos = [], 0
    while pos + 7 <= len(data):
        block_left = 32768 - pos % 32768
        if block_left < 7:
            pos += block_left
            continue
        length = data[pos + 4] | (data[pos + 5] << 8)
        kind = data[pos + 6]
        if kind == 0:
            break
        if kind in (1, 2):
            offsets.append((pos, length))
        pos += 7 + length
    return offsets


def start_failure(data_dir, *flags):
    """Starts the server expecting it to refuse: (exit code, start_failed event or None, log).

    Fails the test if it starts.
    """
    server = support.Server(data_dir, flags)
    try:
        server.start()
    except AssertionError:
        server.wait_exit()
        return server.process.returncode, server.event("start_failed"), "\n".join(server.logs())
    server.terminate()
    pytest.fail(f"the server started on {data_dir}\n" + server.log_tail())


def corrupt_first_segment(start_server, work_dir):
    """Two runs of 50 Schedules (so two segments), then a bit flipped in the data of the second
    record of the first segment. Returns (data_dir, segment path, record offset, ids per run)."""
    data_dir = os.path.join(work_dir, unique("corrupt-data"))
    ids = []
    for run in ("a", "b"):
        server = start_server(data_dir=data_dir)
        ids.append(schedule_batch(server.client(), f"corrupt-{run}", 50, in_order=True)[0])
        code, _ = server.terminate()
        assert code == 0, server.log_tail()
    files = [f for f in segments(data_dir) if os.path.getsize(f) > 0]
    assert len(files) >= 2, files
    first = files[0]
    offsets = record_offsets(first)
    assert len(offsets) >= 50, offsets[:3]
    offset, length = offsets[1]  # an early record: the second
    damaged = bytearray(open(first, "rb").read())
    damaged[offset + 7 + length // 2] ^= 0x40  # a bit of its data: the checksum fails
    open(first, "wb").write(bytes(damaged))
    return data_dir, first, offset, ids


def test_corruption_in_the_middle_refuses_to_start(start_server, work_dir):
    data_dir, first, offset, (ids_a, ids_b) = corrupt_first_segment(start_server, work_dir)
    damaged = open(first, "rb").read()

    code, event, log = start_failure(data_dir)
    assert code != 0, f"started on a corrupt log:\n{log}"
    assert event is not None, f"no start_failed event:\n{log}"
    assert "server_started" not in log
    message = event.get("message") or event.get("error") or str(event)
    assert first in message, f"start_failed does not name {first}: {event}"
    assert f"offset {offset}" in message, f"start_failed does not name offset {offset}: {event}"
    assert open(first, "rb").read() == damaged, "the refused start changed the log"

    # An operator who accepts the loss: --skip_corrupt_log starts, without the damaged record
    # (LevelDB-style, the rest of its 32 KiB block goes with it) and with everything after.
    server = start_server("--skip_corrupt_log", data_dir=data_dir)
    found = statuses(server.client(), ids_a + ids_b)
    assert found[ids_a[0]] is not None, "the record before the damage was lost"
    assert found[ids_a[1]] is None, "the damaged record was replayed"
    assert all(found[t] is not None for t in ids_b), "a record of the next segment was lost"


def test_skipped_corruption_is_reported_as_skipped(start_server, work_dir):
    # The records that --skip_corrupt_log drops in the middle of the log are corruption, not a
    # torn tail (which only a crash leaves, at the end of the last segment): the recovered line
    # must count them as skipped_bytes, and hourglass_log_torn_tails_truncated_total must not
    # count them.
    data_dir, first, offset, _ = corrupt_first_segment(start_server, work_dir)
    size = os.path.getsize(first)
    server = start_server("--skip_corrupt_log", data_dir=data_dir)
    recovered = server.event("recovered")
    dropped = size - os.path.getsize(first) if os.path.exists(first) else size
    assert recovered["skipped_bytes"] > 0 and recovered["torn_tails_truncated"] == 0, (
        f"corruption at offset {offset} of {os.path.basename(first)} (not the last segment) "
        f"was skipped with --skip_corrupt_log ({dropped} bytes cut from the file), but the "
        f"recovered event reports skipped_bytes={recovered['skipped_bytes']}, "
        f"torn_tails_truncated={recovered['torn_tails_truncated']}, "
        f"torn_bytes={recovered['torn_bytes']}"
    )
    assert recovery_metrics(server)[1] == 0


def test_start_after_skipping_corruption_needs_no_flag(start_server, work_dir):
    # Once an operator has accepted the loss with --skip_corrupt_log (and the server has cut the
    # damaged part off the file), the next ordinary start, e.g. a restart after a crash, must not
    # refuse the directory again: what was dropped stays dropped, the rest is kept.
    data_dir, first, _, (ids_a, ids_b) = corrupt_first_segment(start_server, work_dir)
    server = start_server("--skip_corrupt_log", data_dir=data_dir)
    found = statuses(server.client(), ids_a + ids_b)
    code, _ = server.terminate()
    assert code == 0, server.log_tail()
    server = start_server(data_dir=data_dir)  # fails the test if it does not start
    assert statuses(server.client(), ids_a + ids_b) == found


# --- idempotent repeats ---------------------------------------------------------------------


def test_idempotent_repeat_survives_kill9(start_server, work_dir):
    """A repeated Schedule (same id, queue and payload) is acknowledged only once the original is.

    Other clients keep the log writer busy with large payloads, so that the original's record
    waits for a later group commit; the repeat, sent 1 ms after it, must not be answered before
    the original is durable. Whenever the repeat's answer comes while the original's has not
    yet, the server is killed at once: after the restart the task must be there. A few rounds,
    as the race is not always won.
    """
    ballast = b"b" * ((1 << 20) - 1024)  # just under --max_payload_bytes
    races = 0
    for round_ in range(3):
        data_dir = os.path.join(work_dir, unique("idem-data"))
        server = start_server(data_dir=data_dir)
        stop = threading.Event()

        def flood(address):
            flooder = support.Client(address)
            try:
                while not stop.is_set():
                    try:
                        flooder.schedule(queue="ballast", payload=ballast, delay=duration(HOUR_S))
                    except grpc.RpcError:
                        return
            finally:
                flooder.close()

        floods = [
            threading.Thread(target=flood, args=(server.grpc_address,), daemon=True)
            for _ in range(3)
        ]
        for thread in floods:
            thread.start()
        client = server.client()
        early_repeat = None
        try:
            time.sleep(0.3)
            for k in range(100):
                request = scheduler_pb2.ScheduleRequest(
                    queue="idem",
                    task_id=f"idem-race-{k:03d}",
                    payload=b"p",
                    delay=duration(HOUR_S),
                )
                original = client.scheduler.Schedule.future(request)
                time.sleep(0.001)
                repeat = client.scheduler.Schedule(request)
                if not original.done():
                    server.kill()  # the repeat is answered, the original not yet: crash now
                    early_repeat = (request.task_id, repeat)
                    break
                assert original.result() == repeat
        finally:
            stop.set()
            for thread in floods:
                thread.join(30)
        if early_repeat is None:
            continue
        races += 1
        task_id, repeat = early_repeat
        server = start_server(data_dir=data_dir)
        try:
            task = server.client().status(task_id)
        except grpc.RpcError as error:
            if error.code() != StatusCode.NOT_FOUND:
                raise
            pytest.fail(
                f"lost an acknowledged Schedule (round {round_}): a repeat of "
                f"Schedule({task_id}) sent while the original was in flight was answered OK "
                f"(due {repeat.due_time.ToJsonString()}) before the original was; kill -9 right "
                f"after that answer, and after the restart GetStatus says NOT_FOUND"
            )
        assert task.state == State.TASK_STATE_SCHEDULED
        assert ns(task.due_time) == ns(repeat.due_time)
        server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)  # the ballast: hundreds of MB
    print(f"\nidempotent repeat answered before the original: {races} of 3 rounds, none lost")


# --- compaction across restarts ---------------------------------------------------------------


def test_restarts_do_not_postpone_snapshots(start_server, work_dir):
    # A server restarted before it has written --snapshot_bytes of records in one run (deploys,
    # crashes) must still snapshot and compact: the log it replayed counts. Otherwise the data
    # directory grows without bound.
    data_dir = os.path.join(work_dir, unique("restarts-data"))
    snapshot_bytes = 65536
    runs, per_run = 8, 200
    written = []
    for run in range(runs):
        server = start_server(f"--snapshot_bytes={snapshot_bytes}", data_dir=data_dir)
        client = server.client()
        parallel(
            lambda k: client.schedule(
                queue="restarts",
                task_id=f"r{run}-{k:04d}",
                payload=b"x" * 150,
                delay=duration(HOUR_S),
            ),
            range(per_run),
        )
        samples = parse_metrics(scrape(server))
        written.append(metric_value(samples, "hourglass_log_written_bytes_total"))
        server.kill()
    assert max(written) < snapshot_bytes, written  # each run alone stays below the threshold
    server = start_server(f"--snapshot_bytes={snapshot_bytes}", data_dir=data_dir)
    every = [f"r{run}-{k:04d}" for run in range(runs) for k in range(per_run)]
    assert all(task is not None for task in statuses(server.client(), every).values())
    log_bytes = sum(os.path.getsize(path) for path in segments(data_dir))
    assert log_bytes < 3 * snapshot_bytes, (
        f"{runs} runs of about {written[0]:.0f} bytes of records each (less than "
        f"--snapshot_bytes={snapshot_bytes}), {sum(written):.0f} in all: the log holds "
        f"{log_bytes} bytes and no run took a snapshot: {sorted(os.listdir(data_dir))}"
    )
