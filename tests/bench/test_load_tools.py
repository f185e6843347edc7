"""The load tools of bench/ (issue 6): peer_load against fake beanstalkd and Redis servers (the
real ones are only the benchmark's business), peer_load's hourglass fill against the real server,
and hourglass_load against grpc_ceiling.

Run by CTest (tests/bench/CMakeLists.txt) with the tools' paths in the environment:
PEER_LOAD, HOURGLASS_LOAD, GRPC_CEILING, HOURGLASS_BINARY, and PEER_LOAD_HAS_REDIS (1 when
peer_load was built with hiredis; the Redis tests are skipped otherwise).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_peers import FakeBeanstalkd, FakeRedis  # noqa: E402

PEER_LOAD = os.environ.get("PEER_LOAD", "peer_load")
HOURGLASS_LOAD = os.environ.get("HOURGLASS_LOAD", "hourglass_load")
GRPC_CEILING = os.environ.get("GRPC_CEILING", "grpc_ceiling")
HOURGLASS = os.environ.get("HOURGLASS_BINARY", "hourglass")
HAS_REDIS = os.environ.get("PEER_LOAD_HAS_REDIS") == "1"

PAYLOAD = 100
BODY = re.compile(rb"^[0-9a-f]{16}:(\d+):(x{%d})$" % PAYLOAD)


def run(args, timeout=60, expect_rc=0):
    result = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=timeout)
    assert result.returncode == expect_rc, f"{args}: rc {result.returncode}\n{result.stderr}"
    return result


def lines(stdout):
    """key=value lines as dicts (numbers as floats)."""
    out = []
    for line in stdout.splitlines():
        row = {}
        for field in line.split():
            key, _, value = field.partition("=")
            try:
                row[key] = float(value)
            except ValueError:
                row[key] = value
        out.append(row)
    return out


def peer_load(fake, server, *args, timeout=60):
    return lines(run([PEER_LOAD, f"--server={server}", f"--address={fake.address}", *args],
                     timeout=timeout).stdout)


SERVERS = [pytest.param("beanstalkd", id="beanstalkd"),
           pytest.param("redis", id="redis",
                        marks=pytest.mark.skipif(not HAS_REDIS, reason="peer_load without hiredis"))]


def fake_of(server):
    return FakeBeanstalkd() if server == "beanstalkd" else FakeRedis()


def inserted(fake):
    """(delay or score, body) of every insert the fake received."""
    if isinstance(fake, FakeBeanstalkd):
        return [(delay, body) for _, delay, body in fake.puts]
    return [(score, member) for _, score, member in fake.zadds]


@pytest.mark.parametrize("server", SERVERS)
def test_pipelined_inserts_reach_the_server_as_reported(server):
    # One line per --connections value; every reported insert arrived, with a well-formed body
    # due an hour ahead (beanstalkd: delay 3600 s; Redis: the score is the due time in us).
    with fake_of(server) as fake:
        start_us = time.time() * 1e6
        rows = peer_load(fake, server, "--mode=insert", "--connections=1,2", "--seconds=0.5")
        got = inserted(fake)
    assert [r["connections"] for r in rows] == [1, 2]
    for r in rows:
        assert r["mode"] == "insert" and r["server"] == server and r["errors"] == 0
        assert r["window"] == 100 and r["in_flight"] == 800 and r["jobs_per_s"] > 0
    assert len(got) >= sum(r["jobs_per_s"] * 0.5 for r in rows)
    assert len({body for _, body in got}) == len(got), "job ids must be unique"
    for when, body in got:
        m = BODY.match(body)
        assert m, body
        if server == "beanstalkd":
            assert when == 3600
        else:
            assert when == int(m.group(1)) // 1000
            assert start_us + 3599e6 < when < start_us + 3700e6


@pytest.mark.parametrize("server", SERVERS)
def test_roundtrip_waits_for_each_reply(server):
    with fake_of(server) as fake:
        (row,) = peer_load(fake, server, "--mode=roundtrip", "--connections=3", "--seconds=0.5")
        count = len(inserted(fake))
    assert row["mode"] == "roundtrip" and row["connections"] == 3 and row["errors"] == 0
    assert row["jobs_per_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    # One in flight per connection: at most 3 inserts beyond those counted within the time.
    assert row["jobs_per_s"] * 0.5 <= count <= row["jobs_per_s"] * 0.5 + 3


@pytest.mark.parametrize("server", SERVERS)
def test_cycle_takes_and_deletes_what_producers_put(server):
    with fake_of(server) as fake:
        (row,) = peer_load(fake, server, "--mode=cycle", "--producers=2", "--consumers=2",
                           "--seconds=1")
        put = len(inserted(fake))
        done = fake.deleted if server == "beanstalkd" else fake.taken
    assert row["mode"] == "cycle" and row["errors"] == 0
    assert row["cycles_per_s"] > 0 and row["scheduled_per_s"] > 0
    # Cycles count the jobs taken within the time; the consumers may take a few more after it.
    assert row["cycles_per_s"] <= done <= put


@pytest.mark.parametrize("server", SERVERS)
def test_lateness_counts_every_job_and_none_early(server):
    # 400 jobs due 1-2 s ahead: all arrive, none before its due time (the fakes honour delays
    # with the real clock), and the percentiles are ordered.
    with fake_of(server) as fake:
        (row,) = peer_load(fake, server, "--mode=lateness", "--rate=400", "--consumers=2",
                           "--seconds=1", timeout=30)
    assert row["mode"] == "lateness" and row["errors"] == 0
    assert 300 <= row["scheduled"] <= 400  # the producer stops at 1 s, a little less on a busy machine
    assert row["count"] == row["scheduled"] and row["early"] == 0
    assert 0 <= row["p50_ms"] <= row["p99_ms"] <= row["p999_ms"] <= row["max_ms"] < 2000


@pytest.mark.parametrize("server", SERVERS)
def test_fill_inserts_exactly_the_jobs_asked(server):
    with fake_of(server) as fake:
        (row,) = peer_load(fake, server, "--mode=fill", "--jobs=2345")
        got = inserted(fake)
    assert row["mode"] == "fill" and row["jobs"] == 2345 and row["errors"] == 0
    assert len(got) == 2345 and len({body for _, body in got}) == 2345


def test_a_dead_server_is_an_error():
    with FakeBeanstalkd() as fake:
        address = fake.address
    result = run([PEER_LOAD, "--server=beanstalkd", f"--address={address}", "--mode=insert",
                  "--seconds=0.2"], expect_rc=1)
    assert "cannot connect" in result.stderr


def test_bad_arguments_are_refused():
    for args in (["--server=memcached"], ["--server=hourglass", "--mode=insert"],
                 ["--server=beanstalkd", "--mode=bogus", "--address=127.0.0.1:1"],
                 ["--connections=0", "--server=beanstalkd", "--mode=insert"]):
        result = subprocess.run([PEER_LOAD, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, timeout=30)
        assert result.returncode != 0, args
        assert result.stderr.startswith("peer_load: "), result.stderr


class Process:
    """A server printing {"event":"server_started","grpc_address":...} on stderr."""

    def __init__(self, args):
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        self.event = None
        self.lines = []
        started = threading.Event()

        def read():
            for line in self.process.stderr:
                self.lines.append(line)
                if self.event is None and '"server_started"' in line:
                    self.event = json.loads(line)
                    started.set()

        threading.Thread(target=read, daemon=True).start()
        if not started.wait(30):
            self.process.kill()
            raise AssertionError("no server_started:\n" + "".join(self.lines))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        assert self.process.wait(15) == 0, "".join(self.lines[-5:])


def test_ceiling_serves_hourglass_load_unchanged():
    # hourglass_load's schedule and batch modes run against the ceiling without an error, one
    # line per --inflight value, and every task of every batch is answered OK.
    with Process([GRPC_CEILING, "--grpc_address=127.0.0.1:0"]) as ceiling:
        address = ceiling.event["grpc_address"]
        assert re.fullmatch(r"127\.0\.0\.1:\d+", address) and not address.endswith(":0")
        rows = lines(run([HOURGLASS_LOAD, f"--address={address}", "--mode=schedule",
                          "--inflight=1,8", "--seconds=0.5"]).stdout)
        assert [r["inflight"] for r in rows] == [1, 8]
        for r in rows:
            assert r["errors"] == 0 and r["calls_per_s"] > 0
        (batch,) = lines(run([HOURGLASS_LOAD, f"--address={address}", "--mode=batch",
                              "--batch_size=50", "--inflight=2", "--seconds=0.5"]).stdout)
        assert batch["errors"] == 0 and batch["calls_per_s"] > 0
        assert batch["tasks_per_s"] == pytest.approx(batch["calls_per_s"] * 50, rel=0.01)


def test_ceiling_answers_like_hourglass():
    # Ids echoed when given, 26 characters otherwise; due time = now + delay; other methods
    # UNIMPLEMENTED. Checked with the Python stubs of the e2e suite.
    stubs = os.environ.get("HOURGLASS_PY_STUBS")
    if not stubs or not os.path.isdir(stubs):
        pytest.skip("no Python stubs (tests/e2e builds them)")
    sys.path.insert(0, stubs)
    import grpc
    from hourglass.v1 import scheduler_service_pb2 as pb
    from hourglass.v1 import scheduler_service_pb2_grpc as pb_grpc

    with Process([GRPC_CEILING, "--grpc_address=127.0.0.1:0"]) as ceiling:
        with grpc.insecure_channel(ceiling.event["grpc_address"]) as channel:
            stub = pb_grpc.SchedulerServiceStub(channel)
            req = pb.ScheduleRequest(queue="q", task_id="mine", payload=b"x")
            req.delay.seconds = 60
            before = time.time()
            resp = stub.Schedule(req, timeout=10)
            assert resp.task_id == "mine"
            assert before + 59 < resp.due_time.seconds + resp.due_time.nanos / 1e9 < time.time() + 61
            batch = pb.ScheduleBatchRequest(requests=[pb.ScheduleRequest(queue="q")] * 3)
            results = stub.ScheduleBatch(batch, timeout=10).results
            assert [r.code for r in results] == [0, 0, 0]
            ids = [r.response.task_id for r in results]
            assert len(set(ids)) == 3 and all(len(i) == 26 for i in ids)
            with pytest.raises(grpc.RpcError) as err:
                stub.Cancel(pb.CancelRequest(task_id="mine"), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_fill_of_hourglass_schedules_exactly_the_tasks_asked():
    # peer_load --server=hourglass --mode=fill against the real server: the server's own gauge
    # of scheduled tasks says the same.
    with tempfile.TemporaryDirectory() as data_dir:
        with Process([HOURGLASS, "--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
                      f"--data_dir={data_dir}", "--fsync=never"]) as server:
            address = server.event["grpc_address"]
            out = lines(run([PEER_LOAD, "--server=hourglass", f"--address={address}",
                             "--mode=fill", "--jobs=1234", "--name=fill"]).stdout)
            assert out == [{"mode": "fill", "server": "hourglass", "jobs": 1234,
                            "seconds": out[0]["seconds"], "errors": 0}]
            metrics_port = server.event["metrics_address"].rsplit(":", 1)[1]
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                          timeout=10).read().decode()
            m = re.search(r'^hourglass_tasks\{[^}]*queue="fill"[^}]*state="scheduled"[^}]*\} (\S+)$',
                          text, re.M) or re.search(
                r'^hourglass_tasks\{[^}]*state="scheduled"[^}]*queue="fill"[^}]*\} (\S+)$', text, re.M)
            assert m, text[:2000]
            assert float(m.group(1)) == 1234
