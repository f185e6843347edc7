#!/usr/bin/python3
"""Crash loop: load + `kill -9` + restart of the real hourglass binary, over and over.

Each cycle starts the server on the same data directory, checks that what the previous cycles
were told is still there, runs a concurrent load (producers Schedule tasks with unique ids, due
0 to 2 s out, some of them sent twice at once like a hedged client retry; consumers Lease with
2 s leases and Ack), and kills the server with SIGKILL at a random moment of that load. A ledger
keeps every acknowledged Schedule and every acknowledged Ack. After the last cycle the server is
started once more and drained: every task is leased and acked until none of the ids ever sent is
SCHEDULED, READY or LEASED (leases held by killed consumers come back after 2 s). Then:

  - every acknowledged Schedule exists and ends SUCCEEDED (lost = 0);
  - every acknowledged Ack stays SUCCEEDED after every restart (undone acks = 0), and such a task
    is never handed out again (acked-then-redelivered = 0);
  - no task is handed out before its due time, and a task's attempt number never goes back (it
    may repeat after a kill: a Lease answered just before the kill may not have been synced);
  - tasks handed out more than once because the earlier lease or ack was never acknowledged
    (the consumer was killed with it) are allowed: they are counted as redeliveries.

A one-line summary is printed at the end; the exit code is 0 when nothing was violated.

The CI runs a short version of this loop (tests/e2e/test_durability.py, 20 cycles); this script
is the long run, not run in CI. Usage, from the repository root, with Debian's python3 and
python3-grpcio (the API stubs are generated into a temporary directory with
tools/gen_python_stubs.sh unless HOURGLASS_PY_STUBS names a directory that has them):

  /usr/bin/python3 bench/crash_loop.py          # 200 cycles of build/service/hourglass
  /usr/bin/python3 bench/crash_loop.py --binary=build/service/hourglass --cycles=1000 \\
      --seconds-per-cycle=2 --producers=4 --consumers=4
  /usr/bin/python3 bench/crash_loop.py --server-arg=--fsync=never --seed=7 --keep-data
  /usr/bin/python3 bench/crash_loop.py --server-arg=--snapshot_bytes=65536    # kills in snapshots

Arguments:
  --binary             the hourglass server (default: build/service/hourglass, or $HOURGLASS_BINARY)
  --cycles             load + kill -9 + restart cycles (default 200)
  --seconds-per-cycle  the load of a cycle lasts a random time between half of this and this, then
                       the server is killed (default 1.0)
  --producers, --consumers, --queues   load threads and queues (default 2, 2, 3)
  --seed               for the random choices (default: random; printed)
  --server-arg         an extra flag for the server, repeatable (e.g. --server-arg=--fsync=never)
  --data-dir           the data directory (default: a temporary one, removed at the end unless
                       --keep-data or a violation)
  --drain-timeout      seconds the final drain may take (default 60)
  --quiet              only the summary (and violations)

The servers listen on 127.0.0.1 with ports picked by the kernel.
"""

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_E2E = os.path.join(_HERE, "..", "tests", "e2e")
if _E2E not in sys.path:
    sys.path.insert(0, _E2E)

import support  # noqa: E402  (tests/e2e/support.py: the Server and Client of the e2e suite)
from support import (  # noqa: E402
    EARLY_TOLERANCE_NS,
    State,
    StatusCode,
    duration,
    grpc,
    now_ns,
    ns,
    scheduler_pb2,
    task_pb2,
)

LEASE_S = 2.0  # short, so that leases held by killed consumers come back quickly
MAX_DUE_S = 2.0  # tasks are due 0 to this many seconds after their Schedule
HEDGE_PROBABILITY = 0.05  # Schedules sent twice at once, like a client's hedged retry
RPC_TIMEOUT_S = 10.0
# Tasks never go DEAD because of the crashes: plenty of attempts, short backoff.
RETRY_POLICY = task_pb2.RetryPolicy(
    max_attempts=1000, min_backoff=duration(0.1), max_backoff=duration(1.0)
)
VERIFY_SAMPLE = 200  # older acks re-checked after each restart (the last cycle's: all)
UNFINISHED = (State.TASK_STATE_SCHEDULED, State.TASK_STATE_READY, State.TASK_STATE_LEASED)


def statuses(client, task_ids, batch=256):
    """GetStatus of many ids, `batch` calls in flight at a time: {id: Task or None (NOT_FOUND)}."""
    out = {}
    task_ids = list(task_ids)
    for start in range(0, len(task_ids), batch):
        calls = [
            (
                task_id,
                client.scheduler.GetStatus.future(
                    scheduler_pb2.GetStatusRequest(task_id=task_id), timeout=RPC_TIMEOUT_S
                ),
            )
            for task_id in task_ids[start : start + batch]
        ]
        for task_id, call in calls:
            try:
                out[task_id] = call.result().task
            except grpc.RpcError as error:
                if error.code() != StatusCode.NOT_FOUND:
                    raise
                out[task_id] = None
    return out


def state_name(task):
    return "NOT_FOUND" if task is None else State.Name(task.state)


class Ledger:
    """What the clients were told, across all cycles. Guarded by `lock`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = {}  # task_id -> queue: every Schedule sent, answered or not
        self.scheduled = {}  # task_id -> (cycle, due ns): acknowledged Schedules
        self.hedged = set()  # task_ids sent twice at once
        self.acked = {}  # task_id -> cycle: acknowledged Acks
        self.deliveries = {}  # task_id -> [(cycle, attempt, received ns, due ns)]
        self.ack_refused = 0  # Acks answered FAILED_PRECONDITION (the lease had expired)
        self.violations = []  # (kind, message)
        self.errors = []  # unexpected RPC errors while the server was up

    def violation(self, kind, message):
        with self.lock:
            self.violations.append((kind, message))


class CrashLoop:
    """The crash loop; run() returns a summary dict. See the module docstring."""

    def __init__(
        self,
        binary,
        data_dir,
        cycles=20,
        seconds_per_cycle=1.0,
        producers=2,
        consumers=2,
        queues=3,
        server_args=(),
        seed=None,
        drain_timeout_s=60.0,
        log=print,
    ):
        self.binary = binary
        self.data_dir = data_dir
        self.cycles = cycles
        self.seconds_per_cycle = seconds_per_cycle
        self.producers = producers
        self.consumers = consumers
        self.queues = [f"crash{i}" for i in range(queues)]
        self.server_args = tuple(server_args)
        self.seed = random.randrange(1 << 32) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.drain_timeout_s = drain_timeout_s
        self.log = log
        self.ledger = Ledger()
        self.recoveries = []  # "recovered" events, one per start
        self.final_exit_code = None
        self.drained = False
        self._dying = threading.Event()
        self._reported_lost = set()

    # --- servers ------------------------------------------------------------------------

    def _start(self):
        server = support.Server(self.data_dir, self.server_args, binary=self.binary)
        server.start()
        event = server.event("recovered")
        if event is None:
            raise AssertionError("no recovered event before server_started\n" + server.log_tail())
        self.recoveries.append(event)
        return server

    # --- the load of one cycle ----------------------------------------------------------

    def _produce(self, cycle, index, address, stop, rng):
        ledger = self.ledger
        client = support.Client(address)
        try:
            n = 0
            while not stop.is_set():
                task_id = f"c{cycle:04d}-p{index}-{n:06d}"
                n += 1
                queue = rng.choice(self.queues)
                request = scheduler_pb2.ScheduleRequest(
                    queue=queue,
                    task_id=task_id,
                    payload=task_id.encode(),
                    delay=duration(rng.uniform(0, MAX_DUE_S)),
                    retry_policy=RETRY_POLICY,
                )
                hedge = rng.random() < HEDGE_PROBABILITY
                with ledger.lock:
                    ledger.sent[task_id] = queue
                    if hedge:
                        ledger.hedged.add(task_id)
                calls = [client.scheduler.Schedule.future(request, timeout=RPC_TIMEOUT_S)]
                if hedge:
                    calls.append(client.scheduler.Schedule.future(request, timeout=RPC_TIMEOUT_S))
                answers = []
                for call in calls:
                    try:
                        answers.append(call.result())
                    except grpc.RpcError as error:
                        self._rpc_error(stop, f"Schedule({task_id})", error)
                if not answers:
                    continue
                if any(a != answers[0] for a in answers):
                    ledger.violation(
                        "idempotency",
                        f"{task_id}: two identical Schedules answered differently: {answers}",
                    )
                with ledger.lock:
                    ledger.scheduled[task_id] = (cycle, ns(answers[0].due_time))
        finally:
            client.close()

    def _consume(self, cycle, index, address, stop, rng):
        ledger = self.ledger
        client = support.Client(address)
        try:
            turn = index
            while not stop.is_set():
                queue = self.queues[turn % len(self.queues)]
                turn += 1
                try:
                    tasks = client.lease(queue, wait_s=0.2, max_tasks=10, lease_duration_s=LEASE_S)
                except grpc.RpcError as error:
                    self._rpc_error(stop, f"Lease({queue})", error)
                    continue
                received = now_ns()
                for task in tasks:
                    self._delivered(cycle, task, received)
                for task in tasks:
                    try:
                        client.ack(task.task_id, task.lease_token)
                    except grpc.RpcError as error:
                        if error.code() == StatusCode.FAILED_PRECONDITION:
                            with ledger.lock:
                                ledger.ack_refused += 1
                        else:
                            self._rpc_error(stop, f"Ack({task.task_id})", error)
                        continue
                    with ledger.lock:
                        ledger.acked.setdefault(task.task_id, cycle)
        finally:
            client.close()

    def _delivered(self, cycle, task, received):
        ledger = self.ledger
        due = ns(task.due_time)
        with ledger.lock:
            earlier = ledger.deliveries.setdefault(task.task_id, [])
            acked_in = ledger.acked.get(task.task_id)
            known = task.task_id in ledger.sent
            earlier.append((cycle, task.attempt, received, due))
        if not known:
            ledger.violation("unknown", f"{task.task_id} was handed out but never scheduled")
        if acked_in is not None:
            ledger.violation(
                "acked_then_redelivered",
                f"{task.task_id} handed out again in cycle {cycle} (attempt {task.attempt}) "
                f"although its Ack was acknowledged in cycle {acked_in}",
            )
        # Handed out (the lease began LEASE_S before it ends) and received at or after due.
        handed_out = min(received, ns(task.lease_expire_time) - int(LEASE_S * 1e9))
        if handed_out < due - EARLY_TOLERANCE_NS:
            ledger.violation(
                "early", f"{task.task_id} handed out {(due - handed_out) / 1e6:.1f} ms before due"
            )
        # A Lease is answered before its record is synced (docs/durability.md), so a kill can
        # forget the last lease of a task: it is then handed out again with the same attempt
        # number, but only in a later cycle. Within a cycle, and ever going back, is a violation.
        if len(earlier) > 1:
            previous_cycle, previous_attempt = earlier[-2][0], earlier[-2][1]
            if task.attempt < previous_attempt or (
                task.attempt == previous_attempt and previous_cycle == cycle
            ):
                ledger.violation(
                    "attempt_regression",
                    f"{task.task_id}: attempt {task.attempt} after attempt {previous_attempt}",
                )

    def _rpc_error(self, stop, what, error):
        # Around the kill every call fails (UNAVAILABLE, or CANCELLED as channels close).
        if self._dying.is_set() or stop.is_set():
            return
        with self.ledger.lock:
            self.ledger.errors.append(f"{what}: {error.code().name} {error.details()}")
        time.sleep(0.05)

    def _load(self, cycle, server):
        stop = threading.Event()
        self._dying = threading.Event()
        threads = []
        for kind, count, target in (
            ("producer", self.producers, self._produce),
            ("consumer", self.consumers, self._consume),
        ):
            for i in range(count):
                rng = random.Random(self.rng.getrandbits(64))
                threads.append(
                    threading.Thread(
                        target=target,
                        args=(cycle, i, server.grpc_address, stop, rng),
                        name=f"{kind}{i}",
                        daemon=True,
                    )
                )
        load_s = self.rng.uniform(self.seconds_per_cycle / 2, self.seconds_per_cycle)
        for thread in threads:
            thread.start()
        time.sleep(load_s)
        self._dying.set()  # from here on, failed calls are expected
        server.kill()  # kill -9, in the middle of the load
        stop.set()
        for thread in threads:
            thread.join(RPC_TIMEOUT_S + 5)
        if any(thread.is_alive() for thread in threads):
            raise AssertionError(f"cycle {cycle}: a load thread hung after the kill")

    # --- checks ---------------------------------------------------------------------------

    def _verify_after_restart(self, cycle, client):
        """Acks and Schedules of the last cycle (and a sample of older acks) survived."""
        ledger = self.ledger
        with ledger.lock:
            recent_acks = [t for t, c in ledger.acked.items() if c == cycle - 1]
            older_acks = [t for t, c in ledger.acked.items() if c < cycle - 1]
            recent_scheduled = [t for t, (c, _) in ledger.scheduled.items() if c == cycle - 1]
        sample = self.rng.sample(older_acks, min(VERIFY_SAMPLE, len(older_acks)))
        found = statuses(client, set(recent_acks) | set(sample) | set(recent_scheduled))
        for task_id in set(recent_acks) | set(sample):
            task = found[task_id]
            if task is None or task.state != State.TASK_STATE_SUCCEEDED:
                ledger.violation(
                    "undone_ack",
                    f"{task_id}: acked in cycle {ledger.acked[task_id]}, "
                    f"{state_name(task)} after restart {cycle}",
                )
        for task_id in recent_scheduled:
            if found[task_id] is None:
                self._lost(task_id, f"after restart {cycle}")

    def _lost(self, task_id, when):
        """Reports an acknowledged Schedule found NOT_FOUND (once per task)."""
        if task_id in self._reported_lost:
            return
        self._reported_lost.add(task_id)
        self.ledger.violation("lost", self._lost_message(task_id, when))

    def _lost_message(self, task_id, when):
        hedged = " (sent twice at once: a hedged retry)" if task_id in self.ledger.hedged else ""
        cycle = self.ledger.scheduled[task_id][0]
        return f"{task_id}: Schedule acknowledged in cycle {cycle}{hedged}, NOT_FOUND {when}"

    def _drain(self, client):
        """Leases and acks until no id ever sent is SCHEDULED, READY or LEASED."""
        ledger = self.ledger
        with ledger.lock:
            outstanding = set(ledger.sent) - set(ledger.acked)
        deadline = time.monotonic() + self.drain_timeout_s
        last = {}
        while outstanding and time.monotonic() < deadline:
            handed_out = 0
            for queue in self.queues:
                tasks = client.lease(queue, wait_s=0.3, max_tasks=200, lease_duration_s=LEASE_S)
                received = now_ns()
                handed_out += len(tasks)
                for task in tasks:
                    self._delivered(self.cycles, task, received)
                acks = [
                    (
                        task.task_id,
                        client.consumer.Ack.future(
                            support.consumer_pb2.AckRequest(
                                task_id=task.task_id, lease_token=task.lease_token
                            ),
                            timeout=RPC_TIMEOUT_S,
                        ),
                    )
                    for task in tasks
                ]
                for task_id, call in acks:
                    try:
                        call.result()
                    except grpc.RpcError as error:
                        if error.code() != StatusCode.FAILED_PRECONDITION:
                            raise
                        with ledger.lock:
                            ledger.ack_refused += 1
                        continue
                    with ledger.lock:
                        ledger.acked.setdefault(task_id, self.cycles)
            if handed_out:
                continue
            last = statuses(client, outstanding)
            with ledger.lock:
                scheduled = set(ledger.scheduled)
            for task_id, task in last.items():
                if task is None:
                    if task_id in scheduled:
                        self._lost(task_id, "at the drain")
                    outstanding.discard(task_id)  # never acknowledged, never created: fine
                elif task.state not in UNFINISHED:
                    outstanding.discard(task_id)
        if outstanding:
            states = {}
            for task_id in outstanding:
                states[state_name(last.get(task_id))] = (
                    states.get(state_name(last.get(task_id)), 0) + 1
                )
            self.ledger.violation(
                "stuck",
                f"{len(outstanding)} tasks still unfinished after a {self.drain_timeout_s:.0f} s "
                f"drain: {states}, e.g. {sorted(outstanding)[:5]}",
            )
        else:
            self.drained = True

    def _verify_final(self, client):
        ledger = self.ledger
        with ledger.lock:
            scheduled = set(ledger.scheduled)
            acked = set(ledger.acked)
        final = statuses(client, scheduled | acked)
        for task_id in scheduled:
            task = final[task_id]
            if task is None:
                self._lost(task_id, "at the end")
            elif task.state != State.TASK_STATE_SUCCEEDED:
                ledger.violation(
                    "not_succeeded", f"{task_id}: {state_name(task)} at the end, not SUCCEEDED"
                )
        for task_id in acked - scheduled:
            task = final[task_id]
            if task is None or task.state != State.TASK_STATE_SUCCEEDED:
                ledger.violation("undone_ack", f"{task_id}: acked, {state_name(task)} at the end")

    # --- the run ----------------------------------------------------------------------------

    def run(self):
        start = time.monotonic()
        server = None
        try:
            for cycle in range(self.cycles):
                server = self._start()
                if cycle > 0:
                    client = support.Client(server.grpc_address)
                    try:
                        self._verify_after_restart(cycle, client)
                    finally:
                        client.close()
                self._load(cycle, server)
                server = None
                if self.log is not None:
                    with self.ledger.lock:
                        self.log(
                            f"cycle {cycle + 1}/{self.cycles}: scheduled "
                            f"{len(self.ledger.scheduled)}, acked {len(self.ledger.acked)}, "
                            f"recovered {self.recoveries[-1].get('records')} records"
                        )
            server = self._start()
            client = support.Client(server.grpc_address)
            try:
                self._verify_after_restart(self.cycles, client)
                self._drain(client)
                self._verify_final(client)
            finally:
                client.close()
            self.final_exit_code, _ = server.terminate()
            server = None
        finally:
            if server is not None:
                server.kill()
        return self.summary(time.monotonic() - start)

    def summary(self, elapsed_s):
        ledger = self.ledger
        with ledger.lock:
            redelivered = {t: d for t, d in ledger.deliveries.items() if len(d) > 1}
            kinds = {}
            for kind, _ in ledger.violations:
                kinds[kind] = kinds.get(kind, 0) + 1
            return {
                "seed": self.seed,
                "cycles": self.cycles,
                "sent": len(ledger.sent),
                "scheduled": len(ledger.scheduled),
                "hedged": len(ledger.hedged),
                "acked": len(ledger.acked),
                "delivered": len(ledger.deliveries),
                "deliveries": sum(len(d) for d in ledger.deliveries.values()),
                "redelivered_tasks": len(redelivered),
                "redeliveries": sum(len(d) - 1 for d in redelivered.values()),
                "redelivered_examples": sorted(redelivered)[:5],
                "ack_refused": ledger.ack_refused,
                "torn_tails": sum(int(e.get("torn_tails_truncated", 0)) for e in self.recoveries),
                "max_recovery_s": max(float(e.get("seconds", 0)) for e in self.recoveries),
                "last_recovery_records": self.recoveries[-1].get("records"),
                "snapshot_starts": sum(
                    1 for e in self.recoveries if int(e.get("snapshot_lsn", 0) or 0) > 0
                ),
                "drained": self.drained,
                "final_exit_code": self.final_exit_code,
                "violations": list(ledger.violations),
                "violation_kinds": kinds,
                "errors": list(ledger.errors),
                "elapsed_s": elapsed_s,
            }


def summary_line(s):
    violations = sum(s["violation_kinds"].values())
    kinds = f" {s['violation_kinds']}" if violations else ""
    return (
        f"crash loop: cycles {s['cycles']}, tasks {s['scheduled']} acknowledged of {s['sent']} "
        f"sent ({s['hedged']} hedged), acked {s['acked']}, deliveries {s['deliveries']}, "
        f"redeliveries {s['redeliveries']} ({s['redelivered_tasks']} tasks, ack not "
        f"acknowledged), acks refused {s['ack_refused']}, torn tails {s['torn_tails']}, "
        f"max recovery {s['max_recovery_s'] * 1000:.1f} ms ({s['last_recovery_records']} records "
        f"last; {s['snapshot_starts']} starts from a snapshot), violations {violations}{kinds} "
        f"in {s['elapsed_s']:.1f} s (seed {s['seed']})"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--binary", default=support.BINARY)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--seconds-per-cycle", type=float, default=1.0)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--queues", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--server-arg", action="append", default=[])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.seconds_per_cycle <= 0:
        parser.error("--cycles must be >= 1 and --seconds-per-cycle > 0")

    temporary = args.data_dir is None
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="hourglass-crash-loop-")
    loop = CrashLoop(
        args.binary,
        data_dir,
        cycles=args.cycles,
        seconds_per_cycle=args.seconds_per_cycle,
        producers=args.producers,
        consumers=args.consumers,
        queues=args.queues,
        server_args=args.server_arg,
        seed=args.seed,
        drain_timeout_s=args.drain_timeout,
        log=None if args.quiet else lambda line: print(line, flush=True),
    )
    summary = loop.run()
    failed = bool(summary["violations"]) or summary["final_exit_code"] != 0
    for kind, message in summary["violations"][:50]:
        print(f"VIOLATION {kind}: {message}")
    for error in summary["errors"][:10]:
        print(f"unexpected RPC error: {error}")
    if summary["redelivered_examples"]:
        print(f"redelivered (allowed), e.g.: {', '.join(summary['redelivered_examples'])}")
    if summary["final_exit_code"] != 0:
        print(f"the final server exited with {summary['final_exit_code']} after SIGTERM")
    print(summary_line(summary), flush=True)
    if temporary and not args.keep_data and not failed:
        shutil.rmtree(data_dir, ignore_errors=True)
    elif not temporary or args.keep_data or failed:
        print(f"data directory kept: {data_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
