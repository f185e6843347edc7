#!/usr/bin/python3
"""Runs one quickstart example (examples/<language>/) against a live hourglass server.

    run_example.py --language NAME [--env NAME=VALUE ...] [--require FILE --hint TEXT]
                   -- COMMAND [ARG...]

Starts the real `hourglass` binary on 127.0.0.1 with kernel-picked ports and a temporary data
directory (tests/e2e/support.py's Server), then checks what a user of the example relies on:
  1. With the address in $HOURGLASS_ADDRESS and a queue from --queue, the example exits 0 and
     prints the four lines of the walk-through: scheduled, leased (the same id, attempt 1, with
     the payload), acked, status TASK_STATE_SUCCEEDED.
  2. The server agrees (GetStatus, asked here): the task is SUCCEEDED after 1 hand-out, in the
     given queue, and was due 1 s after it was created.
  3. Against an address where nothing listens (given with --address), the example exits 1 with
     a one-line message on stderr naming the call, the address and UNAVAILABLE, and no stack
     trace.
Finally the server must exit 0 on SIGTERM. Exit status 0 when every check passes.
Environment: HOURGLASS_BINARY (the server), HOURGLASS_PY_STUBS (Python stubs, see
tools/gen_python_stubs.sh).
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import support  # noqa: E402

EXAMPLE_TIMEOUT_S = 60
DELAY_S = 1.0
PAYLOAD = "hello, hourglass"


def run(command, env, what):
    start = time.monotonic()
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=EXAMPLE_TIMEOUT_S,
            env=env,
        )
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"{what}: no exit within {EXAMPLE_TIMEOUT_S} s: {error}")
    elapsed = time.monotonic() - start
    print(f"--- {what}: exit {result.returncode} after {elapsed:.1f} s")
    print(f"stdout:\n{result.stdout}stderr:\n{result.stderr}", end="", flush=True)
    return result


def free_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_walkthrough(server, command, env):
    queue = f"examples-{uuid.uuid4().hex[:8]}"
    result = run(
        [*command, f"--queue={queue}"],
        dict(env, HOURGLASS_ADDRESS=server.grpc_address),
        "walk-through",
    )
    assert result.returncode == 0, f"the example exited {result.returncode}"
    lines = result.stdout.splitlines()
    assert len(lines) == 4, f"expected 4 lines on stdout, got {len(lines)}"
    scheduled = re.fullmatch(r"scheduled (\S+), due (\S+)", lines[0])
    assert scheduled, f"line 1 is not 'scheduled ID, due TIME': {lines[0]!r}"
    task_id = scheduled.group(1)
    leased = re.fullmatch(r"leased (\S+) \(attempt (\d+)\) after (\d+\.\d) s: (.*)", lines[1])
    assert leased, f"line 2 is not 'leased ID (attempt N) after S s: PAYLOAD': {lines[1]!r}"
    assert leased.group(1) == task_id, f"leased {leased.group(1)}, scheduled {task_id}"
    assert leased.group(2) == "1", f"attempt {leased.group(2)}, expected 1"
    waited_s = float(leased.group(3))
    # A long poll (Lease with a wait) ends when the task is due, about 1 s after Schedule; how
    # much sooner than 1 s depends on how long Schedule took, so only the upper bound is checked.
    assert waited_s <= 10.5, f"Lease returned after {waited_s} s, beyond its 10 s wait"
    assert leased.group(4) == PAYLOAD, f"payload {leased.group(4)!r}, expected {PAYLOAD!r}"
    assert lines[2] == "acked", f"line 3 is not 'acked': {lines[2]!r}"
    assert (
        lines[3] == "status: TASK_STATE_SUCCEEDED, attempts 1"
    ), f"line 4 is not 'status: TASK_STATE_SUCCEEDED, attempts 1': {lines[3]!r}"

    # Ask the server ourselves: the example's own output is not the proof.
    task = server.client().status(task_id)
    assert task.state == support.State.TASK_STATE_SUCCEEDED, support.State.Name(task.state)
    assert task.attempts == 1, f"attempts {task.attempts}"
    assert task.queue == queue, f"queue {task.queue!r}, expected {queue!r} (--queue)"
    delay_ns = support.ns(task.due_time) - support.ns(task.create_time)
    assert (
        abs(delay_ns - DELAY_S * 1e9) < 0.05e9
    ), f"due {delay_ns / 1e9:.3f} s after creation, expected {DELAY_S} s"
    print(f"server: {task_id} is TASK_STATE_SUCCEEDED, attempts 1, queue {queue}")


def check_unreachable(command, env):
    address = f"127.0.0.1:{free_port()}"
    result = run(
        [*command, f"--address={address}"],
        {k: v for k, v in env.items() if k != "HOURGLASS_ADDRESS"},
        "unreachable server",
    )
    assert result.returncode == 1, f"exit {result.returncode}, expected 1"
    assert "scheduled" not in result.stdout, "printed 'scheduled' without a server"
    message = result.stderr.strip()
    assert message, "no message on stderr"
    first = message.splitlines()[0]
    for word in ("Schedule", address):
        assert word in first, f"the error message does not name {word!r}: {first!r}"
    assert "unavailable" in first.lower(), f"the error message does not say UNAVAILABLE: {first!r}"
    for trace in ("Traceback", "    at ", "goroutine ", "panic:"):
        assert trace not in result.stderr, f"a stack trace instead of a message: {trace!r}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", required=True, help="for the messages only")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the example")
    parser.add_argument("--require", help="a file the example needs, e.g. its node_modules")
    parser.add_argument("--hint", default="", help="how to get the --require file")
    parser.add_argument("command", nargs="+", help="the example's command line")
    args = parser.parse_args()
    if args.require and not os.path.exists(args.require):
        print(f"FAILED: the {args.language} example needs {args.require}: {args.hint}")
        return 1

    env = dict(os.environ)
    for item in args.env:
        name, _, value = item.partition("=")
        env[name] = value
    env.pop("HOURGLASS_ADDRESS", None)

    work_dir = tempfile.mkdtemp(prefix=f"hourglass-example-{args.language}-")
    server = support.Server(os.path.join(work_dir, "data"))
    try:
        server.start()
        check_walkthrough(server, args.command, env)
        check_unreachable(args.command, env)
        code, _ = server.terminate(close_clients_first=True)
        assert code == 0, f"hourglass exited {code} after SIGTERM\n{server.log_tail()}"
    except AssertionError as error:
        print(f"FAILED: the {args.language} example: {error}", file=sys.stderr)
        return 1
    except support.grpc.RpcError as error:
        print(
            f"FAILED: the {args.language} example: the test's own call failed: "
            f"{error.code().name}: {error.details()}",
            file=sys.stderr,
        )
        return 1
    finally:
        if server.running():  # Failed before SIGTERM: no server outlives the test.
            server.kill()
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f"passed: the {args.language} example against a live server")
    return 0


if __name__ == "__main__":
    sys.exit(main())
