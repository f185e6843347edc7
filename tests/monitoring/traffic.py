"""Known traffic against a hourglass server, so that every series the dashboard and the rules
use exists and has a value the tests can predict.

Pull delivery:
  queue `work`:  35 tasks due now; 30 leased and acked (SUCCEEDED), 5 left READY
  queue `later`: 10 tasks due in an hour; 1 cancelled, 9 SCHEDULED
  queue `flaky`: 5 tasks with max_attempts 2; each leased and nacked twice: 5 retried, 5 DEAD
  one GetStatus of an unknown id (NOT_FOUND), for the RPC error panels

Push delivery, to the PushReceiver below (HTTP on 127.0.0.2; the server starts with SERVER_ARGS,
which admit only that address):
  queue `hooks` (http): 2 tasks answered 200, 1 answered 503 and then 200 (retried once after a
                  50 ms backoff), 1 answered 404 (DEAD at once), and 1 whose URL names a host that
                  resolves to another loopback address: refused by the SSRF guard (DEAD, nothing
                  sent). The last needs such a host name (REFUSED_HOST); without one the traffic
                  has no `refused` attempt and the tests skip what needs it.
  queue `rpcs` (grpc): 2 tasks to a closed port of 127.0.0.2 with max_attempts 1 (connection
                  refused: UNAVAILABLE, DEAD); the second after `before_push_failures`, so that a
                  scraper sees the grpc `dead` counter at 1 first (an increase needs two samples,
                  and the server creates a target's outcome series at its first attempt).
  queue `slow` (http): 3 tasks whose requests the receiver holds until release_hangs(): with
                  --queue_concurrency=2, 2 are in flight (LEASED) and 1 waits READY.

`before_deaths` runs after the pull tasks are scheduled and before the last nacks, so that a
scraper can see the `dead` counter at 0 first.
"""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import support

WORK, LATER, FLAKY = "work", "later", "flaky"
HOOKS, RPCS, SLOW = "hooks", "rpcs", "slow"

# The receiver's address, and the only one the server may push to: other loopback addresses stay
# refused, which is what produces the `refused` outcome with a host name resolving to 127.0.0.1.
RECEIVER_HOST = "127.0.0.2"
QUEUE_CONCURRENCY = 2
SERVER_ARGS = (f"--push_allowlist={RECEIVER_HOST}/32", f"--queue_concurrency={QUEUE_CONCURRENCY}")
SLOW_TASKS = 3
# Long enough that the held requests outlast any test; release_hangs() ends them.
SLOW_DISPATCH_DEADLINE_S = 600
PUSH_WAIT_S = 30


def refused_host_name():
    """A host name (not localhost, not an IP literal) that resolves only to IPv4 loopback
    addresses other than RECEIVER_HOST, so that the server refuses it at connect time; None if
    there is none on this machine. Candidates: the machine's name and the names of /etc/hosts
    (no DNS guesses); names of ::1 are left out, as a resolver without IPv6 would fail them (a
    retried attempt, not a refused one)."""
    candidates = [socket.gethostname()]
    try:
        with open("/etc/hosts") as hosts:
            for line in hosts:
                candidates.extend(line.split("#", 1)[0].split()[1:])
    except OSError:
        pass
    for name in dict.fromkeys(candidates):
        lower = name.lower().rstrip(".")
        if not name or lower == "localhost" or lower.endswith(".localhost"):
            continue
        try:
            socket.inet_pton(socket.AF_INET, name)
            continue
        except OSError:
            pass
        if ":" in name:
            continue
        try:
            infos = socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)
        except OSError:
            continue
        addresses = {info[4][0] for info in infos}
        if addresses and all(a.startswith("127.") and a != RECEIVER_HOST for a in addresses):
            return name
    return None


REFUSED_HOST = refused_host_name()
REFUSED = 1 if REFUSED_HOST else 0
REFUSED_SKIP_REASON = (
    "no host name resolves only to loopback addresses other than "
    f"{RECEIVER_HOST}: the traffic has no refused push attempt"
)

EXPECTED = {
    "scheduled": 50 + 4 + REFUSED + 2 + SLOW_TASKS,
    "leased": 40,  # 30 of `work` + 2 x 5 of `flaky`; push attempts are not Lease hand-outs
    "cancelled": 1,
    # Pull and push: `refused` push attempts count as `dead` here.
    "deliveries": {"succeeded": 30 + 3, "retried": 5 + 1, "dead": 5 + 1 + REFUSED + 2},
    "push": {  # (target, outcome) -> attempts
        ("http", "succeeded"): 3,
        ("http", "retried"): 1,
        ("http", "dead"): 1,
        ("grpc", "dead"): 2,
        **({("http", "refused"): 1} if REFUSED else {}),
    },
    "push_in_flight": {SLOW: QUEUE_CONCURRENCY},
    "tasks": {
        (WORK, "ready"): 5,
        (WORK, "succeeded"): 30,
        (LATER, "scheduled"): 9,
        (LATER, "cancelled"): 1,
        (FLAKY, "dead"): 5,
        (HOOKS, "succeeded"): 3,
        (HOOKS, "dead"): 1 + REFUSED,
        (RPCS, "dead"): 2,
        (SLOW, "leased"): QUEUE_CONCURRENCY,
        (SLOW, "ready"): SLOW_TASKS - QUEUE_CONCURRENCY,
    },
    "rpcs": {  # (method, code) -> calls
        ("Schedule", "OK"): 50 + 4 + REFUSED + 2 + SLOW_TASKS,
        ("Ack", "OK"): 30,
        ("Nack", "OK"): 10,
        ("Cancel", "OK"): 1,
        ("GetStatus", "NOT_FOUND"): 1,
    },
}
QUEUES = {WORK, LATER, FLAKY, HOOKS, RPCS, SLOW}


class PushReceiver:
    """An HTTP endpoint on RECEIVER_HOST for the push tasks; the path picks the answer:
    /ok 200, /flaky 503 on a task's first request and 200 after, /gone 404, /slow held until
    release_hangs() and then 200. Records (path, task id) of every request."""

    def __init__(self):
        self.requests = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                task_id = self.headers.get("Hourglass-Task-Id")
                with receiver._lock:
                    seen = sum(1 for _, t in receiver.requests if t == task_id)
                    receiver.requests.append((self.path, task_id))
                if self.path == "/slow":
                    receiver._released.wait(SLOW_DISPATCH_DEADLINE_S)
                status = {"/ok": 200, "/gone": 404, "/slow": 200}.get(self.path, 500)
                if self.path == "/flaky":
                    status = 503 if seen == 0 else 200
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # The server gave up on the request (shutdown).

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer((RECEIVER_HOST, 0), Handler)
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path, host=RECEIVER_HOST):
        return f"http://{host}:{self.port}{path}"

    def of(self, path):
        with self._lock:
            return [task_id for p, task_id in self.requests if p == path]

    def release_hangs(self):
        self._released.set()

    def close(self):
        self.release_hangs()
        self.http.shutdown()
        self.http.server_close()


def closed_port():
    """A port of RECEIVER_HOST that nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind((RECEIVER_HOST, 0))
        return s.getsockname()[1]


def _lease_exactly(client, queue, count):
    """Leases `count` tasks of `queue` (polling with a bounded wait); fails on more or fewer."""
    leased = []
    for _ in range(50):
        if len(leased) == count:
            break
        leased += client.lease(
            queue, wait_s=1.0, max_tasks=count - len(leased), lease_duration_s=60
        )
    assert len(leased) == count, f"leased {len(leased)} tasks of {queue}, expected {count}"
    return leased


def _wait_state(client, task_id, state):
    def done():
        task = client.status(task_id)
        return task if task.state == state else None

    return support.wait_until(
        done, PUSH_WAIT_S, interval_s=0.05, what=f"{task_id} {support.State.Name(state)}"
    )


def _policy(max_attempts, backoff_s):
    return support.task_pb2.RetryPolicy(
        max_attempts=max_attempts,
        min_backoff=support.duration(backoff_s),
        max_backoff=support.duration(backoff_s),
    )


def run_pull(client, before_deaths):
    for i in range(35):
        client.schedule(queue=WORK, task_id=f"work-{i}", payload=b"w", delay=support.duration(0))
    later = [
        client.schedule(
            queue=LATER, task_id=f"later-{i}", payload=b"l", delay=support.duration(3600)
        ).task_id
        for i in range(10)
    ]
    for i in range(5):
        client.schedule(
            queue=FLAKY,
            task_id=f"flaky-{i}",
            payload=b"f",
            delay=support.duration(0),
            retry_policy=_policy(2, 0),
        )

    for task in _lease_exactly(client, WORK, 30):
        client.ack(task.task_id, task.lease_token)
    client.cancel(later[0])
    support.expect_error(support.StatusCode.NOT_FOUND, client.status, "no-such-task")

    for task in _lease_exactly(client, FLAKY, 5):
        client.nack(task.task_id, task.lease_token, retry_delay_s=0, error="first try fails")
    before_deaths()
    for task in _lease_exactly(client, FLAKY, 5):
        assert task.attempt == 2, task
        client.nack(task.task_id, task.lease_token, retry_delay_s=0, error="second try fails")
    for i in range(5):
        assert client.status(f"flaky-{i}").state == support.State.TASK_STATE_DEAD


def run_push(client, receiver, before_push_failures):
    State = support.State
    http = support.task_pb2.HttpTarget
    hooks = {  # task id -> (url, final state, attempts)
        "hook-ok-0": (receiver.url("/ok"), State.TASK_STATE_SUCCEEDED, 1),
        "hook-ok-1": (receiver.url("/ok"), State.TASK_STATE_SUCCEEDED, 1),
        "hook-flaky": (receiver.url("/flaky"), State.TASK_STATE_SUCCEEDED, 2),
        "hook-gone": (receiver.url("/gone"), State.TASK_STATE_DEAD, 1),
    }
    if REFUSED_HOST:
        hooks["hook-refused"] = (receiver.url("/ok", REFUSED_HOST), State.TASK_STATE_DEAD, 1)
    for task_id, (url, _, _) in hooks.items():
        client.schedule(
            queue=HOOKS,
            task_id=task_id,
            payload=b'{"hook": 1}',
            delay=support.duration(0),
            retry_policy=_policy(3, 0.05),
            http_target=http(url=url),
        )
    for i in range(SLOW_TASKS):
        client.schedule(
            queue=SLOW,
            task_id=f"slow-{i}",
            payload=b"s",
            delay=support.duration(0),
            retry_policy=_policy(1, 0),
            http_target=http(url=receiver.url("/slow")),
            dispatch_deadline=support.duration(SLOW_DISPATCH_DEADLINE_S),
        )
    port = closed_port()

    def schedule_closed(task_id):
        client.schedule(
            queue=RPCS,
            task_id=task_id,
            payload=b"",
            delay=support.duration(0),
            retry_policy=_policy(1, 0),
            grpc_target=support.task_pb2.GrpcTarget(
                address=f"{RECEIVER_HOST}:{port}", method="/billing.v1.Invoices/Close"
            ),
        )
        task = _wait_state(client, task_id, State.TASK_STATE_DEAD)
        assert task.attempts == 1 and "UNAVAILABLE" in task.last_error, task

    schedule_closed("rpc-closed-0")
    for task_id, (_, state, attempts) in hooks.items():
        task = _wait_state(client, task_id, state)
        assert task.attempts == attempts, task
        if task_id == "hook-refused":
            assert task.last_error.startswith("refused to connect"), task.last_error
    assert sorted(receiver.of("/ok")) == ["hook-ok-0", "hook-ok-1"]  # nothing from hook-refused
    assert receiver.of("/flaky") == ["hook-flaky", "hook-flaky"]
    support.wait_until(
        lambda: len(receiver.of("/slow")) >= QUEUE_CONCURRENCY,
        PUSH_WAIT_S,
        what="the slow tasks to reach the receiver",
    )
    before_push_failures()
    schedule_closed("rpc-closed-1")
    # The per-queue cap: the third slow task is still waiting.
    assert len(receiver.of("/slow")) == QUEUE_CONCURRENCY, receiver.of("/slow")
    states = sorted(client.status(f"slow-{i}").state for i in range(SLOW_TASKS))
    assert states == sorted(
        [State.TASK_STATE_LEASED] * QUEUE_CONCURRENCY
        + [State.TASK_STATE_READY] * (SLOW_TASKS - QUEUE_CONCURRENCY)
    ), states


def run(client, receiver, before_deaths=lambda: None, before_push_failures=lambda: None):
    run_pull(client, before_deaths)
    run_push(client, receiver, before_push_failures)
