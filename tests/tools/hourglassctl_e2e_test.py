"""End-to-end tests of hourglassctl: the real binary against a real hourglass server.

Every command is run as an operator or a script would run it, and its stdout, stderr and exit
code are checked: the text output for people, the JSON output for scripts, and the documented
exit codes (0 ok, 2 usage, 3 NOT_FOUND, 4 INVALID_ARGUMENT, 5 ALREADY_EXISTS /
FAILED_PRECONDITION, 6 UNAVAILABLE, 7 UNIMPLEMENTED, 8 UNAUTHENTICATED, 9 PERMISSION_DENIED,
against a second server started with --auth_tokens_file). Only hourglassctl talks to the server:
the tests need no Python gRPC stubs.

The CTest test `hourglassctl_e2e` sets HOURGLASS_BINARY and HOURGLASSCTL_BINARY; by hand:
  HOURGLASS_BINARY=build/service/hourglass \\
  HOURGLASSCTL_BINARY=build/tools/hourglassctl/hourglassctl \\
  /usr/bin/python3 -m pytest -q tests/tools/hourglassctl_e2e_test.py
"""

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVER = os.environ.get("HOURGLASS_BINARY") or os.path.join(
    REPO_ROOT, "build", "service", "hourglass"
)
CTL = os.environ.get("HOURGLASSCTL_BINARY") or os.path.join(
    REPO_ROOT, "build", "tools", "hourglassctl", "hourglassctl"
)
COMMANDS = [
    "schedule", "cancel", "status", "reschedule", "lease", "ack", "nack", "extend", "list",
    "retry", "health",
]
# Any hourglassctl run that takes longer than this is a hang.
RUN_TIMEOUT_S = 30


# --- helpers --------------------------------------------------------------------------------


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def parse_rfc3339(text):
    """An RFC 3339 UTC time ("...Z", up to nanoseconds) as nanoseconds since the epoch."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z", text)
    assert match, f"not an RFC 3339 UTC time: {text!r}"
    whole = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    fraction = (match.group(2) or "").ljust(9, "0")
    return int(whole.timestamp()) * 1_000_000_000 + int(fraction)


def fields(text):
    """The "key  value" lines of a text block as a dict (repeated keys: the last one)."""
    result = {}
    for line in text.splitlines():
        if line.strip():
            key, _, value = line.partition("  ")
            result[key] = value.strip()
    return result


class Result:
    def __init__(self, completed):
        self.code = completed.returncode
        self.out = completed.stdout
        self.err = completed.stderr

    def json(self):
        assert self.code == 0, self.describe()
        assert self.out.endswith("\n") and self.out.count("\n") == 1, self.describe()
        return json.loads(self.out)

    def describe(self):
        return f"exit {self.code}\n--- stdout ---\n{self.out}--- stderr ---\n{self.err}"


def run_ctl(*args, stdin=b"", env=None):
    completed = subprocess.run(
        [CTL, *args],
        input=stdin,
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
        env=env,
    )
    completed.stdout = completed.stdout.decode("utf-8", errors="replace")
    completed.stderr = completed.stderr.decode("utf-8", errors="replace")
    return Result(completed)


def expect(result, code, stderr_prefix=None):
    assert result.code == code, result.describe()
    if code == 0:
        assert result.err == "", result.describe()
    else:
        assert result.out == "", result.describe()
    if stderr_prefix is not None:
        assert result.err.startswith(stderr_prefix), result.describe()
    return result


class Server:
    """One hourglass process on 127.0.0.1, port 0, with a temporary data directory."""

    def __init__(self, *flags):
        self.data_dir = tempfile.mkdtemp(prefix="hourglassctl-e2e-")
        self.process = subprocess.Popen(
            [
                SERVER,
                "--grpc_address=127.0.0.1:0",
                "--metrics_address=",
                f"--data_dir={self.data_dir}",
                "--fsync=never",
                *flags,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.lines = []
        self._started = threading.Event()
        self.address = None
        threading.Thread(target=self._read, daemon=True).start()
        if not self._started.wait(20):
            self.stop()
            raise AssertionError("hourglass did not start:\n" + "\n".join(self.lines[-20:]))

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            if not self._started.is_set():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("event") == "server_started":
                    self.address = event["grpc_address"]
                    self._started.set()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return self.process.returncode


@pytest.fixture(scope="module")
def server():
    server = Server()
    yield server
    code = server.stop()
    assert code == 0, f"hourglass exited with {code}:\n" + "\n".join(server.lines[-20:])


@pytest.fixture
def ctl(server):
    """ctl(*args, stdin=b"") runs hourglassctl against the test server."""

    def run(*args, stdin=b"", env=None):
        return run_ctl(f"--address={server.address}", *args, stdin=stdin, env=env)

    return run


def lease_one(ctl, queue, *extra):
    """Leases one task of `queue` (waiting up to 5 s) and returns it as a dict (JSON output)."""
    result = ctl("--output=json", "lease", "--queue", queue, "--wait", "5s", *extra)
    tasks = result.json()["tasks"]
    assert len(tasks) == 1, result.describe()
    return tasks[0]


# --- help and usage -------------------------------------------------------------------------


def test_help_lists_every_command_and_exit_code():
    result = expect(run_ctl("--help"), 0)
    for command in COMMANDS:
        assert re.search(rf"^  {command} +\S", result.out, re.M), command
    for code in range(10):
        assert re.search(rf"^  {code}  \S", result.out, re.M), code
    assert run_ctl("help").out == result.out
    assert run_ctl("-h").out == result.out


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command):
    result = expect(run_ctl(command, "--help"), 0)
    assert result.out.startswith(f"hourglassctl {command}: "), result.out
    assert f"Usage: hourglassctl [global flags] {command}" in result.out
    assert re.search(rf"^Examples:\n  hourglassctl .*{command}", result.out, re.M), result.out
    assert run_ctl("help", command).out == result.out


def test_usage_errors_exit_2_without_calling_the_server():
    # A closed port: had anything been sent, the exit code would be 6 (UNAVAILABLE).
    address = f"--address=127.0.0.1:{closed_port()}"
    # Command-line mistakes end with a pointer to --help; an unreadable payload file does not.
    cases = [
        ([], "hourglassctl: no command given\n"),
        (["frobnicate"], 'hourglassctl: unknown command "frobnicate"\n'),
        (["status"], "hourglassctl: status takes 1 argument (ID), got 0\n"),
        (["status", "t", "--max=2"], "hourglassctl: --max does not apply to status\n"),
        (["schedule", "--delay", "90"], 'hourglassctl: --delay: "90" is not a duration'),
        (["schedule", "--delay=1s", "--at=2030-01-01T00:00:00Z"],
         "hourglassctl: schedule needs exactly one of --delay and --at"),
        (["schedule", "--delay=1s", "--payload_file=/nonexistent/payload"],
         'hourglassctl: --payload_file: cannot open "/nonexistent/payload"'),
        (["list", "--state=zombie"], 'hourglassctl: --state: "zombie" is not a task state'),
        (["--output=yaml", "status", "t"], 'hourglassctl: --output: "yaml" is not'),
    ]
    for args, prefix in cases:
        result = run_ctl(address, *args)
        expect(result, 2, prefix)
        hint = 'Run "hourglassctl --help" or "hourglassctl <command> --help" for usage.\n'
        assert result.err.endswith(hint) != ("--payload_file=" in " ".join(args)), result.err


def closed_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def test_unreachable_server_exits_6():
    result = run_ctl(f"--address=127.0.0.1:{closed_port()}", "--timeout=5s", "status", "t")
    expect(result, 6, "hourglassctl: UNAVAILABLE: ")


def test_health(ctl):
    assert expect(ctl("health"), 0).out == "SERVING\n"
    assert expect(ctl("health", "--service", "hourglass.v1.SchedulerService"), 0).out == "SERVING\n"
    expect(ctl("health", "--service", "no.such.Service"), 3, "hourglassctl: NOT_FOUND: ")
    result = run_ctl(f"--address=127.0.0.1:{closed_port()}", "--timeout=5s", "health")
    expect(result, 6, "hourglassctl: UNAVAILABLE: ")


# --- the scheduler commands -----------------------------------------------------------------


def test_schedule_status_cancel_in_text(ctl):
    queue, task_id = unique("q"), unique("t")
    before = time.time_ns()
    result = expect(ctl("schedule", "--queue", queue, "--id", task_id, "--delay", "1h",
                        "--payload", "hello", "--header", "a=1"), 0)
    after = time.time_ns()
    lines = result.out.splitlines()
    assert lines[0] == f"task_id   {task_id}", result.out
    match = re.fullmatch(r"due_time  (\S+) \(in (59m5\ds|1h)\)", lines[1])
    assert match, result.out
    due = parse_rfc3339(match.group(1))
    # Printed with milliseconds, truncated.
    assert before + 3600 * 10**9 - 10**6 <= due <= after + 3600 * 10**9, result.out

    status = fields(expect(ctl("status", task_id), 0).out)
    assert status["task_id"] == task_id
    assert status["queue"] == queue
    assert status["state"] == "SCHEDULED"
    assert status["attempts"] == "0 of 5"
    assert status["payload_size"] == "5 bytes"
    assert status["retry_policy"] == "max_attempts 5, backoff 1s doubling to 5m"
    assert status["due_time"].startswith(match.group(1))

    cancelled = fields(expect(ctl("cancel", task_id), 0).out)
    assert cancelled["state"] == "CANCELLED"
    assert "finish_time" in cancelled
    expect(ctl("cancel", task_id), 5, "hourglassctl: FAILED_PRECONDITION: ")
    expect(ctl("status", unique("missing")), 3, "hourglassctl: NOT_FOUND: ")
    expect(ctl("cancel", unique("missing")), 3, "hourglassctl: NOT_FOUND: ")


def test_schedule_json_idempotency_and_server_ids(ctl):
    queue, task_id = unique("q"), unique("t")
    args = ["--output=json", "schedule", "--queue", queue, "--id", task_id, "--delay", "10m",
            "--payload", "same"]
    first = ctl(*args).json()
    assert first["task_id"] == task_id
    assert ctl(*args).json() == first  # Idempotent: the original response.
    changed = ctl("schedule", "--queue", queue, "--id", task_id, "--delay", "10m",
                  "--payload", "different")
    expect(changed, 5, "hourglassctl: ALREADY_EXISTS: ")

    made = ctl("--output=json", "schedule", "--queue", queue, "--delay", "10m").json()
    assert re.fullmatch(r"[0-9A-Z]{26}", made["task_id"]), made
    status = ctl("--output=json", "status", made["task_id"]).json()["task"]
    assert status["state"] == "TASK_STATE_SCHEDULED"
    assert status["attempts"] == 0
    assert status["last_error"] == ""
    assert status["payload_size_bytes"] == "0"
    assert status["due_time"] == made["due_time"]


def test_schedule_at_a_time_with_an_offset(ctl):
    due = datetime.now(timezone.utc).replace(microsecond=250000) + timedelta(hours=2)
    local = due.astimezone(timezone(timedelta(hours=5, minutes=30)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S.25+05:30")
    made = ctl("--output=json", "schedule", "--queue", unique("q"), "--at", text).json()
    assert parse_rfc3339(made["due_time"]) == int(due.timestamp()) * 10**9 + 250_000_000


def test_server_refusal_exits_4(ctl):
    result = ctl("schedule", "--queue", "bad queue!", "--delay", "1s")
    expect(result, 4, "hourglassctl: INVALID_ARGUMENT: ")
    assert "queue" in result.err
    expect(ctl("lease", "--queue", unique("q"), "--max", "100000", "--wait", "0s"), 4,
           "hourglassctl: INVALID_ARGUMENT: ")


def test_reschedule(ctl):
    queue, task_id = unique("q"), unique("t")
    expect(ctl("schedule", "--queue", queue, "--id", task_id, "--delay", "1h"), 0)
    later = (datetime.now(timezone.utc) + timedelta(days=3)).replace(microsecond=0)
    moved = ctl("--output=json", "reschedule", task_id, "--at",
                later.strftime("%Y-%m-%dT%H:%M:%SZ")).json()["task"]
    assert parse_rfc3339(moved["due_time"]) == int(later.timestamp()) * 10**9
    text = fields(expect(ctl("reschedule", task_id, "--delay", "0s"), 0).out)
    assert text["state"] in ("SCHEDULED", "READY")
    assert lease_one(ctl, queue)["task_id"] == task_id
    expect(ctl("reschedule", task_id, "--delay", "1h"), 5, "hourglassctl: FAILED_PRECONDITION: ")
    expect(ctl("reschedule", unique("missing"), "--delay", "1h"), 3, "hourglassctl: NOT_FOUND: ")


# --- the consumer commands ------------------------------------------------------------------


def test_lease_ack_in_text(ctl):
    queue, task_id = unique("q"), unique("t")
    expect(ctl("schedule", "--queue", queue, "--id", task_id, "--delay", "0s", "--payload",
               "hello, hourglass", "--header", "b=2", "--header", "a=1"), 0)
    result = expect(ctl("lease", "--queue", queue, "--wait", "5s"), 0)
    leased = fields(result.out)
    assert leased["task_id"] == task_id
    assert leased["queue"] == queue
    assert leased["attempt"] == "1"
    assert leased["payload"] == "hello, hourglass"
    assert leased["payload_size"] == "16 bytes"
    assert re.search(r"^header +a=1\nheader +b=2$", result.out, re.M), result.out
    assert re.fullmatch(r"\S+ \(in (2\d|30)s\)", leased["lease_expire_time"]), result.out
    token = leased["lease_token"]
    assert fields(expect(ctl("status", task_id), 0).out)["state"] == "LEASED"

    assert expect(ctl("ack", task_id, token), 0).out == f"acked {task_id}\n"
    assert fields(ctl("status", task_id).out)["state"] == "SUCCEEDED"
    expect(ctl("ack", task_id, token), 5, "hourglassctl: FAILED_PRECONDITION: ")
    expect(ctl("ack", unique("missing"), token), 3, "hourglassctl: NOT_FOUND: ")


def test_lease_with_nothing_ready(ctl):
    queue = unique("empty")
    assert expect(ctl("lease", "--queue", queue, "--wait", "0s"), 0).out == "no task ready\n"
    assert ctl("--output=json", "lease", "--queue", queue, "--wait=0s").json() == {"tasks": []}
    # The wait is honoured and the RPC deadline covers it (--timeout 1s < --wait 2s).
    start = time.monotonic()
    result = ctl("--timeout=1s", "lease", "--queue", queue, "--wait", "2s")
    elapsed = time.monotonic() - start
    assert expect(result, 0).out == "no task ready\n"
    assert 1.9 <= elapsed < 10, elapsed


def test_binary_payload_from_stdin_and_file(ctl, tmp_path):
    queue = unique("q")
    payload = bytes(range(256)) * 3
    expect(ctl("schedule", "--queue", queue, "--delay", "0s", "--payload_file", "-",
               stdin=payload), 0)
    task = lease_one(ctl, queue)
    assert base64.b64decode(task["payload"]) == payload
    # Text output escapes what a terminal should not interpret.
    expect(ctl("ack", task["task_id"], task["lease_token"]), 0)
    expect(ctl("schedule", "--queue", queue, "--delay", "0s", "--payload_file", "-",
               stdin=b"\x00\x1b[31mred\n"), 0)
    text = fields(expect(ctl("lease", "--queue", queue, "--wait", "5s"), 0).out)
    assert text["payload"] == "\\x00\\x1b[31mred\\n"

    path = tmp_path / "payload.json"
    path.write_bytes(b'{"user": 42}')
    expect(ctl("schedule", "--queue", queue, "--delay", "0s", "--payload_file", str(path)), 0)
    assert base64.b64decode(lease_one(ctl, queue)["payload"]) == b'{"user": 42}'


def test_extend_and_nack(ctl):
    queue, task_id = unique("q"), unique("t")
    expect(ctl("schedule", "--queue", queue, "--id", task_id, "--delay", "0s"), 0)
    task = lease_one(ctl, queue, "--lease", "5s")
    token = task["lease_token"]

    before = time.time_ns()
    extended = ctl("--output=json", "extend", task_id, token, "--lease", "10m").json()
    expiry = parse_rfc3339(extended["lease_expire_time"])
    assert before + 599 * 10**9 <= expiry <= time.time_ns() + 600 * 10**9, extended
    text = expect(ctl("extend", task_id, token, "--lease", "20m"), 0).out
    assert re.fullmatch(rf"task_id            {task_id}\n"
                        r"lease_expire_time  \S+ \(in (19m5\ds|20m)\)\n", text), text
    expect(ctl("extend", task_id, "stale-token", "--lease", "1m"), 5,
           "hourglassctl: FAILED_PRECONDITION: ")

    nacked = fields(expect(ctl("nack", task_id, token, "--error", "SMTP 451\ntry later",
                               "--retry_delay", "1h"), 0).out)
    assert nacked["state"] == "SCHEDULED"
    assert nacked["attempts"] == "1 of 5"
    assert nacked["last_error"] == "SMTP 451\\ntry later"
    assert re.fullmatch(r"\S+ \(in (59m5\ds|1h)\)", nacked["due_time"]), nacked
    status = ctl("--output=json", "status", task_id).json()["task"]
    assert status["last_error"] == "SMTP 451\ntry later"
    expect(ctl("nack", task_id, token), 5, "hourglassctl: FAILED_PRECONDITION: ")


# --- dead tasks: list and retry -------------------------------------------------------------


def make_dead_task(ctl, queue, error):
    task_id = unique("dead")
    expect(ctl("schedule", "--queue", queue, "--id", task_id, "--delay", "0s",
               "--max_attempts", "1", "--payload", "x"), 0)
    task = lease_one(ctl, queue)
    assert task["task_id"] == task_id
    nacked = fields(expect(ctl("nack", task_id, task["lease_token"], "--error", error), 0).out)
    assert nacked["state"] == "DEAD", nacked
    return task_id


def test_list_dead_tasks_and_retry_them(ctl):
    queue = unique("q")
    dead = make_dead_task(ctl, queue, "fatal: no such user")
    expect(ctl("schedule", "--queue", queue, "--id", unique("alive"), "--delay", "1h"), 0)

    table = expect(ctl("list", "--queue", queue, "--state", "dead"), 0).out.splitlines()
    assert re.fullmatch(r"TASK_ID +QUEUE +STATE +ATTEMPTS +DUE_TIME +LAST_ERROR", table[0])
    assert len(table) == 2, table
    assert re.fullmatch(rf"{dead} +{queue} +DEAD +1/1 +\S+Z +fatal: no such user", table[1])
    listed = ctl("--output=json", "list", "--queue", queue, "--state", "dead", "--all").json()
    assert [t["task_id"] for t in listed["tasks"]] == [dead]
    assert listed["tasks"][0]["last_error"] == "fatal: no such user"
    assert listed["next_page_token"] == ""

    retried = fields(expect(ctl("retry", dead), 0).out)
    assert retried["state"] in ("SCHEDULED", "READY")
    assert retried["attempts"] == "0 of 1"
    again = lease_one(ctl, queue)
    assert again["task_id"] == dead and again["attempt"] == 1
    expect(ctl("retry", dead), 5, "hourglassctl: FAILED_PRECONDITION: ")
    expect(ctl("retry", unique("missing")), 3, "hourglassctl: NOT_FOUND: ")
    assert expect(ctl("list", "--queue", queue, "--state", "dead"), 0).out == "no tasks\n"


def test_list_pages(ctl):
    queue = unique("q")
    ids = sorted(unique("t") for _ in range(5))
    for task_id in ids:
        expect(ctl("schedule", "--queue", queue, "--id", task_id, "--delay", "1h"), 0)

    # Page by page, as an operator would: follow the token that stderr prints.
    seen, token, pages = [], None, 0
    hint = re.compile(r"more tasks follow: add --page_token=(\S+) for the next page, "
                      r"or --all for every page\n")
    while True:
        page = ctl("list", "--queue", queue, "--page_size", "2",
                   *(["--page_token", token] if token else []))
        assert page.code == 0, page.describe()
        pages += 1
        assert pages <= 10, "the listing does not end"
        rows = [] if page.out == "no tasks\n" else page.out.splitlines()[1:]
        assert len(rows) <= 2, page.out
        seen += [row.split()[0] for row in rows]
        if not page.err:
            break
        match = hint.fullmatch(page.err)
        assert match, page.describe()
        token = match.group(1)
    assert pages >= 3  # 5 tasks, at most 2 a page.
    assert sorted(seen) == ids

    every = expect(ctl("list", "--queue", queue, "--page_size", "2", "--all"), 0).out
    assert sorted(row.split()[0] for row in every.splitlines()[1:]) == ids
    listed = ctl("--output=json", "list", "--queue", queue, "--page_size", "2", "--all").json()
    assert sorted(t["task_id"] for t in listed["tasks"]) == ids
    assert all(t["state"] == "TASK_STATE_SCHEDULED" for t in listed["tasks"])
    expect(ctl("list", "--page_token", "not-a-token"), 4, "hourglassctl: INVALID_ARGUMENT: ")


# --- push targets ---------------------------------------------------------------------------


def test_push_targets_reach_the_server(ctl):
    queue = unique("q")
    # A public address literal, never contacted: the tasks are due in an hour and cancelled.
    http = ctl("--output=json", "schedule", "--queue", queue, "--delay", "1h", "--payload", "{}",
               "--http_url", "https://8.8.8.8/hourglassctl-test", "--http_header",
               "Authorization=Bearer secret", "--dispatch_deadline", "10s").json()
    grpc = ctl("--output=json", "schedule", "--queue", queue, "--delay", "1h",
               "--grpc_address", "8.8.8.8:443", "--grpc_method", "/pkg.v1.Svc/Method",
               "--grpc_tls").json()
    http_task = ctl("--output=json", "status", http["task_id"]).json()["task"]
    grpc_task = ctl("--output=json", "status", grpc["task_id"]).json()["task"]
    assert http_task["http_target"]["url"] == "https://8.8.8.8/hourglassctl-test"
    assert http_task["dispatch_deadline"] == "10s"
    assert grpc_task["grpc_target"] == {
        "address": "8.8.8.8:443", "method": "/pkg.v1.Svc/Method", "tls": True}
    text = fields(expect(ctl("status", http["task_id"]), 0).out)
    assert text["target"] == "http POST https://8.8.8.8/hourglassctl-test"
    assert text["dispatch_deadline"] == "10s"
    text = fields(expect(ctl("status", grpc["task_id"]), 0).out)
    assert text["target"] == "grpc /pkg.v1.Svc/Method at 8.8.8.8:443 (TLS)"
    for task_id in (http["task_id"], grpc["task_id"]):
        expect(ctl("reschedule", task_id, "--delay", "1h"), 0)
        expect(ctl("cancel", task_id), 0)
    # The server's SSRF guard refuses a loopback literal at once (no --push_allowlist here).
    refused = ctl("schedule", "--queue", queue, "--delay", "1h", "--http_url",
                  "http://127.0.0.1:9/hook")
    expect(refused, 4, "hourglassctl: INVALID_ARGUMENT: ")


# --- the environment and the docs -----------------------------------------------------------


def test_address_from_the_environment(server):
    env = dict(os.environ, HOURGLASS_ADDRESS=server.address)
    expect(run_ctl("status", unique("missing"), env=env), 3, "hourglassctl: NOT_FOUND: ")
    env["HOURGLASS_ADDRESS"] = f"127.0.0.1:{closed_port()}"
    expect(run_ctl("status", "x", env=env), 6, "hourglassctl: UNAVAILABLE: ")
    # --address wins over the environment.
    expect(run_ctl(f"--address={server.address}", "status", unique("missing"), env=env), 3)


def test_docs_cover_every_command_flag_and_exit_code():
    with open(os.path.join(REPO_ROOT, "docs", "hourglassctl.md"), encoding="utf-8") as doc:
        text = doc.read()
    for command in COMMANDS:
        assert re.search(rf"^### `{command}\b", text, re.M), f"docs: no section for {command}"
        assert re.search(rf"^hourglassctl .*\b{command}\b", text, re.M), f"no example: {command}"
        help_text = run_ctl(command, "--help").out
        for flag in re.findall(r"^  --([a-z_]+)", help_text, re.M):
            assert f"--{flag}" in text, f"docs/hourglassctl.md does not mention --{flag}"
    for code in range(10):
        assert re.search(rf"^\| {code} \|", text, re.M), f"docs: exit code {code} missing"
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as readme:
        assert "docs/hourglassctl.md" in readme.read()


# --- authentication -------------------------------------------------------------------------

# Long random-looking tokens: a leak into any output would be found by a substring search.
TOKEN_ADMIN = "ctl-e2e-admin-" + uuid.uuid4().hex
TOKEN_CONSUME = "ctl-e2e-consume-" + uuid.uuid4().hex
TOKEN_UNKNOWN = "ctl-e2e-unknown-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def auth_server():
    """A second server with --auth_tokens_file: an admin of every queue and a billing consumer."""
    tokens_dir = tempfile.mkdtemp(prefix="hourglassctl-e2e-tokens-")
    tokens_file = os.path.join(tokens_dir, "tokens")
    with open(tokens_file, "w", encoding="utf-8") as out:
        out.write(f"{TOKEN_ADMIN} * schedule,consume,admin\n")
        out.write(f"{TOKEN_CONSUME} billing consume\n")
    os.chmod(tokens_file, 0o600)
    server = Server(f"--auth_tokens_file={tokens_file}")
    yield server
    code = server.stop()
    shutil.rmtree(tokens_dir, ignore_errors=True)
    assert code == 0, f"hourglass exited with {code}:\n" + "\n".join(server.lines[-20:])


def test_token_from_flag_and_environment(auth_server):
    address = f"--address={auth_server.address}"
    env = {k: v for k, v in os.environ.items() if k != "HOURGLASS_TOKEN"}
    results = []

    # No token: UNAUTHENTICATED, exit 8, before the server even looks the task up.
    results.append(expect(run_ctl(address, "status", "t-1", env=env), 8,
                          "hourglassctl: UNAUTHENTICATED: "))
    # An unknown token, from the flag and from the environment: exit 8 as well.
    results.append(expect(run_ctl(address, f"--token={TOKEN_UNKNOWN}", "status", "t-1", env=env),
                          8, "hourglassctl: UNAUTHENTICATED: "))
    results.append(expect(run_ctl(address, "status", "t-1",
                                  env=dict(env, HOURGLASS_TOKEN=TOKEN_UNKNOWN)),
                          8, "hourglassctl: UNAUTHENTICATED: "))

    # The admin token from the environment schedules; from the flag it reads the task back.
    queue = "billing"
    scheduled = run_ctl(address, "--output=json", "schedule", "--queue", queue, "--delay", "0s",
                        "--payload", "invoice-42", env=dict(env, HOURGLASS_TOKEN=TOKEN_ADMIN))
    results.append(scheduled)
    task_id = scheduled.json()["task_id"]
    status = expect(run_ctl(address, "--output=json", "--token", TOKEN_ADMIN, "status", task_id,
                            env=env), 0)
    results.append(status)
    assert status.json()["task"]["queue"] == queue

    # The flag wins over the environment: a valid environment token does not rescue a bad flag,
    # and a good flag wins over an unknown environment token.
    results.append(expect(run_ctl(address, f"--token={TOKEN_UNKNOWN}", "status", task_id,
                                  env=dict(env, HOURGLASS_TOKEN=TOKEN_ADMIN)), 8))
    results.append(expect(run_ctl(address, f"--token={TOKEN_ADMIN}", "status", task_id,
                                  env=dict(env, HOURGLASS_TOKEN=TOKEN_UNKNOWN)), 0))

    # The billing consumer may lease in billing but not schedule there (exit 9) nor list
    # every queue (exit 9); the lease and ack work.
    consumer_env = dict(env, HOURGLASS_TOKEN=TOKEN_CONSUME)
    results.append(expect(run_ctl(address, "schedule", "--queue", queue, "--delay", "0s",
                                  env=consumer_env), 9, "hourglassctl: PERMISSION_DENIED: "))
    results.append(expect(run_ctl(address, "list", env=consumer_env), 9,
                          "hourglassctl: PERMISSION_DENIED: "))
    leased = run_ctl(address, "--output=json", "lease", "--queue", queue, "--wait", "5s",
                     env=consumer_env)
    results.append(leased)
    tasks = leased.json()["tasks"]
    assert [t["task_id"] for t in tasks] == [task_id], leased.describe()
    results.append(expect(run_ctl(address, "ack", task_id, tasks[0]["lease_token"],
                                  env=consumer_env), 0))
    results.append(expect(run_ctl(address, "--token", TOKEN_ADMIN, "status", task_id, env=env), 0))
    assert fields(results[-1].out)["state"] == "SUCCEEDED", results[-1].describe()

    # A token with a newline (a file read with its line end) is refused before any call,
    # without showing it.
    bad = expect(run_ctl(address, "status", task_id,
                         env=dict(env, HOURGLASS_TOKEN=TOKEN_ADMIN + "\n")), 2,
                 "hourglassctl: $HOURGLASS_TOKEN: character ")
    results.append(bad)
    results.append(expect(run_ctl(f"--token={TOKEN_ADMIN}", "--help"), 0))

    # No output of hourglassctl, and no line of the server's log, carries a token.
    for result in results:
        for token in (TOKEN_ADMIN, TOKEN_CONSUME, TOKEN_UNKNOWN):
            assert token not in result.out and token not in result.err, result.describe()
    log = "\n".join(auth_server.lines)
    for token in (TOKEN_ADMIN, TOKEN_CONSUME, TOKEN_UNKNOWN):
        assert token not in log


# --- TLS ------------------------------------------------------------------------------------


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki():
    """Two CAs ("ca", "other"), a server certificate for hourglass.test and client certificates
    of each CA, made with the openssl command: {name: (cert, key)}."""
    directory = tempfile.mkdtemp(prefix="hourglassctl-e2e-tls-")
    files = {}
    for ca in ("ca", "other"):
        key, cert = (os.path.join(directory, f"{ca}.{ext}") for ext in ("key", "crt"))
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={ca}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        files[ca] = (cert, key)
    for serial, (name, ca, usage) in enumerate(
            [("server", "ca", "serverAuth"), ("client", "ca", "clientAuth"),
             ("other-client", "other", "clientAuth")], start=10):
        key, csr, cert, ext = (os.path.join(directory, f"{name}.{e}")
                               for e in ("key", "csr", "crt", "ext"))
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        with open(ext, "w", encoding="utf-8") as out:
            out.write(f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n")
            if usage == "serverAuth":
                out.write("subjectAltName=DNS:hourglass.test\n")
        openssl("x509", "-req", "-in", csr, "-CA", files[ca][0], "-CAkey", files[ca][1],
                "-set_serial", str(serial), "-days", "1", "-extfile", ext, "-out", cert)
        files[name] = (cert, key)
    yield files
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def mtls_server(pki):
    """A server that requires client certificates of "ca"; its certificate names hourglass.test."""
    cert, key = pki["server"]
    server = Server(f"--tls_cert={cert}", f"--tls_key={key}", f"--tls_client_ca={pki['ca'][0]}")
    yield server
    code = server.stop()
    assert code == 0, f"hourglass exited with {code}:\n" + "\n".join(server.lines[-20:])


def test_tls_flags_against_an_mtls_server(mtls_server, pki):
    address = f"--address={mtls_server.address}"
    ca = f"--tls_ca={pki['ca'][0]}"
    name = "--tls_server_name=hourglass.test"
    client = [f"--tls_cert={pki['client'][0]}", f"--tls_key={pki['client'][1]}"]

    # The CA, the server's name and a client certificate: the commands work.
    scheduled = run_ctl(address, ca, name, *client, "--output=json", "schedule", "--delay", "1h",
                        "--payload", "over TLS")
    task_id = scheduled.json()["task_id"]
    status = expect(run_ctl(address, ca, name, *client, "status", task_id), 0)
    assert fields(status.out)["state"] == "SCHEDULED", status.describe()

    # health over mTLS (what the Kubernetes probes run), in text and JSON.
    assert expect(run_ctl(address, ca, name, *client, "health"), 0).out == "SERVING\n"
    result = expect(run_ctl(address, ca, name, *client, "--output=json", "health",
                            "--service=hourglass.v1.ConsumerService"), 0)
    assert result.json() == {"status": "SERVING"}

    # Refused handshakes are UNAVAILABLE, exit 6: plaintext, no client certificate, a client
    # certificate of another CA, a server name the certificate does not carry (the address is
    # 127.0.0.1), a CA that did not sign the server's certificate.
    other_client = [f"--tls_cert={pki['other-client'][0]}", f"--tls_key={pki['other-client'][1]}"]
    for flags in ([], [ca, name], [ca, name, *other_client], [ca, *client],
                  [f"--tls_ca={pki['other'][0]}", name, *client]):
        expect(run_ctl(address, "--timeout=5s", *flags, "status", task_id), 6,
               "hourglassctl: UNAVAILABLE: ")

    # Bad TLS flags are usage errors (exit 2) that name the flag and the file, before any call.
    missing = os.path.join(os.path.dirname(pki["ca"][0]), "missing.crt")
    result = expect(run_ctl(address, f"--tls_ca={missing}", "status", task_id), 2,
                    "hourglassctl: --tls_ca: cannot open ")
    assert missing in result.err
    expect(run_ctl(address, ca, f"--tls_cert={pki['client'][0]}", "status", task_id), 2,
           "hourglassctl: a client certificate needs both --tls_cert and --tls_key")
    expect(run_ctl(address, "--tls_server_name=", "status", task_id), 2,
           "hourglassctl: --tls_server_name must not be empty")
    not_pem = os.path.join(os.path.dirname(pki["ca"][0]), "server.ext")
    expect(run_ctl(address, f"--tls_ca={not_pem}", "status", task_id), 2,
           f"hourglassctl: --tls_ca: \"{not_pem}\" is not a PEM file")
