#!/usr/bin/python3
"""Hourglass side by side with its peers, in one run (issue 6, item 3).

    /usr/bin/python3 bench/compare.py            # full run: 3 runs of every figure, 10-15 minutes
    /usr/bin/python3 bench/compare.py --quick    # 1 run, 1 s per figure, 10^5 jobs for memory

Installs Debian's beanstalkd, redis-server and libhiredis-dev when missing (apt-get, as root or
through sudo), builds hourglass and the load tools in Release (--build-dir, default build-bench),
and runs the same workloads against:

  hourglass     --fsync=always, a fresh temporary data directory per figure, driven by
                hourglass_load (and peer_load --server=hourglass for the memory fill);
  grpc_ceiling  SchedulerService answered without storing: gRPC's own cost, the ceiling;
  Redis         appendonly yes, appendfsync everysec (RDB snapshots off), driven by peer_load
                through hiredis: a job is a sorted-set member (ZADD key <due> "<id>:<due>:<100 B>"),
                taken and deleted by one Lua script (ZRANGEBYSCORE + ZREM);
  beanstalkd    with its binlog (-b <dir>, its default fsync policy), driven by peer_load over its
                text protocol: put <delay>, reserve-with-timeout, delete.

Every server listens on 127.0.0.1 on a free port and is started fresh for each figure of each run.
Client and servers share the machine's cores. Each figure is measured --runs times (interleaved:
run 1 of everything, then run 2, ...); the table shows the median and [min-max], and each hourglass
figure divided by the peer's (a ratio of medians). The table goes to stdout and, with the raw samples,
to <build-dir>/compare-results.md and compare-results.json.
"""

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_PACKAGES = ["beanstalkd", "redis-server", "libhiredis-dev"]
TOOLS = ["hourglass", "hourglass_load", "grpc_ceiling", "peer_load"]
STARTUP_TIMEOUT_S = 30


def log(message):
    print(f"compare: {message}", file=sys.stderr, flush=True)


# ---- setup ------------------------------------------------------------------------------------


def install_peers():
    missing = []
    for package in PEER_PACKAGES:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ).stdout
        if "install ok installed" not in status:
            missing.append(package)
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    apt = sudo + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-o", "DPkg::Lock::Timeout=600"]
    log(f"installing {' '.join(missing)}")
    install = apt + ["install", "-y", "--no-install-recommends"] + missing
    if subprocess.run(install).returncode != 0:
        subprocess.run(apt + ["update"], check=True)
        subprocess.run(install, check=True)


def build(build_dir):
    subprocess.run(
        ["cmake", "-S", REPO_ROOT, "-B", build_dir, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
         "-DHOURGLASS_BUILD_BENCH=ON"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(["cmake", "--build", build_dir, "--target", *TOOLS], check=True)


def find_tool(build_dir, name):
    """The newest build of a tool: bench/ defines the load tools, or tests/bench when the tests
    are built too (whichever CMake reached first)."""
    found = []
    for sub in ("bench", "tests/bench", "service"):
        path = os.path.join(build_dir, sub, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            found.append((os.path.getmtime(path), path))
    if not found:
        raise SystemExit(f"compare: {name} not found in {build_dir} (build it, or drop --no-build)")
    return max(found)[1]


def build_type(build_dir):
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as cache:
            for line in cache:
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "loadavg": open("/proc/loadavg").read().split()[:3],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def fdatasync_ms(samples=300):
    """Median and p99 of one fdatasync after a 200-byte append, in the temporary directory the
    servers write to: what the disk adds to every durable answer."""
    directory = tempfile.mkdtemp(prefix="hourglass-compare-fsync-")
    try:
        fd = os.open(os.path.join(directory, "probe"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        times = []
        for _ in range(samples):
            os.write(fd, b"x" * 200)
            start = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - start) * 1e3)
        os.close(fd)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    times.sort()
    return round(statistics.median(times), 3), round(times[int(len(times) * 0.99)], 3)


# ---- servers ----------------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Server:
    """One server process on 127.0.0.1 with its own temporary directory, stopped by stop()."""

    def __init__(self, kind, tools, peers):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix=f"hourglass-compare-{kind}-")
        self.address = None
        self.metrics_address = None
        self.process = None
        self._stderr = []
        if kind in ("hourglass", "ceiling"):
            binary = tools["hourglass"] if kind == "hourglass" else tools["grpc_ceiling"]
            self.args = [binary, "--grpc_address=127.0.0.1:0"]
            if kind == "hourglass":
                self.args += ["--metrics_address=127.0.0.1:0", f"--data_dir={self.dir}/data",
                              "--fsync=always"]
        elif kind == "redis":
            port = free_port()
            self.address = f"127.0.0.1:{port}"
            self.args = peers["redis"] + [
                "--bind", "127.0.0.1", "--port", str(port), "--dir", self.dir,
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                "--daemonize", "no", "--logfile", "",
            ]
        elif kind == "beanstalkd":
            port = free_port()
            self.address = f"127.0.0.1:{port}"
            self.args = peers["beanstalkd"] + ["-l", "127.0.0.1", "-p", str(port), "-b", self.dir]
        else:
            raise ValueError(kind)

    def start(self):
        if self.kind in ("hourglass", "ceiling"):
            self.address = None  # from server_started
        self.process = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, errors="replace")
        started = threading.Event()

        def read():
            for line in self.process.stderr:
                self._stderr.append(line.rstrip("\n"))
                if self.address is None and '"server_started"' in line:
                    try:
                        event = json.loads(line)
                        self.metrics_address = event.get("metrics_address")
                        self.address = event["grpc_address"]
                        started.set()
                    except (ValueError, KeyError):
                        pass

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.process.returncode}: "
                                   + "\n".join(self._stderr[-10:]))
            if self.address is not None and self._connectable():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} did not start within {STARTUP_TIMEOUT_S} s")

    def _connectable(self):
        host, port = self.address.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return True
        except OSError:
            return False

    def rss(self):
        return rss_bytes(self.process.pid)

    def metric(self, name):
        """The sum of a metric's samples on the server's /metrics (hourglass only)."""
        with urllib.request.urlopen(f"http://{self.metrics_address}/metrics", timeout=10) as r:
            text = r.read().decode()
        values = [float(m.group(1)) for m in
                  re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
        if not values:
            raise RuntimeError(f"no {name} on {self.metrics_address}")
        return sum(values)

    def stop(self, keep_dir=False):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- running the load tools -------------------------------------------------------------------


def parse_lines(output):
    """hourglass_load / peer_load lines ("mode=... key=value ...") as dicts of floats/strings."""
    rows = []
    for line in output.splitlines():
        if not line.startswith("mode="):
            continue
        row = {}
        for field in line.split():
            key, _, value = field.partition("=")
            try:
                row[key] = float(value)
            except ValueError:
                row[key] = value
        rows.append(row)
    return rows


def run_tool(args, timeout_s):
    result = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=timeout_s)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {result.returncode}: {result.stderr}")
    rows = parse_lines(result.stdout)
    for row in rows:
        if row.get("errors", 0) != 0:
            log(f"warning: errors={row['errors']:.0f} in {' '.join(os.path.basename(a) for a in args[:1])} "
                f"{row}; {result.stderr.strip()[:300]}")
    return rows


def workloads(opts, tools):
    """The figures, as (group, server kind, function(server) -> {figure name: value})."""
    s = str(opts.seconds)
    hg_load = [tools["hourglass_load"]]
    peer = [tools["peer_load"]]
    timeout = opts.seconds * 6 + 60

    def load(mode, *extra):
        return lambda srv: run_tool(hg_load + [f"--address={srv.address}", f"--mode={mode}",
                                               f"--seconds={s}", *extra], timeout)

    def peer_load(server, mode, *extra):
        return lambda srv: run_tool(peer + [f"--server={server}", f"--address={srv.address}",
                                            f"--mode={mode}", f"--seconds={s}", *extra], timeout)

    def batch(kind):
        def f(srv):
            (row,) = load("batch", "--batch_size=100", "--inflight=8")(srv)
            return {f"insert_pipelined/{kind}": row["tasks_per_s"]}
        return f

    def unary(kind):
        def f(srv):
            rows = load("schedule", "--inflight=1,8,64")(srv)
            return {f"roundtrip_{int(r['inflight'])}/{kind}": r["calls_per_s"] for r in rows}
        return f

    def peer_inserts(server):
        def f(srv):
            out = {}
            rows = peer_load(server, "insert", "--connections=1,4")(srv)
            for r in rows:
                out[f"insert_pipelined{'' if r['connections'] == 1 else '_4'}/{server}"] = r["jobs_per_s"]
            return out
        return f

    def peer_roundtrip(server):
        def f(srv):
            rows = peer_load(server, "roundtrip", "--connections=1,8")(srv)
            return {f"roundtrip_{int(r['connections'])}/{server}": r["jobs_per_s"] for r in rows}
        return f

    def cycle(server):
        def f(srv):
            if server == "hourglass":
                (row,) = load("cycle", "--producers=4", "--consumers=4")(srv)
                out = {"cycle/hourglass": row["cycles_per_s"]}
                # The producers' rate above is one durable Schedule per sync each; with ten
                # tasks per call they share each sync ten ways (hourglass only).
                (row,) = load("cycle", "--producers=4", "--consumers=4", "--producer_batch=10")(srv)
                out["cycle_batch/hourglass"] = row["cycles_per_s"]
                return out
            (row,) = peer_load(server, "cycle", "--producers=4", "--consumers=4")(srv)
            return {f"cycle/{server}": row["cycles_per_s"]}
        return f

    def lateness(server):
        def f(srv):
            extra = [f"--rate={opts.rate}", "--consumers=4"]
            if server == "hourglass":
                (row,) = load("lateness", *extra)(srv)
            else:
                (row,) = peer_load(server, "lateness", *extra)(srv)
            if row.get("early", 0):
                log(f"warning: {server} handed out {row['early']:.0f} jobs early")
            if row["count"] < row["scheduled"]:
                log(f"warning: {server} delivered {row['count']:.0f} of {row['scheduled']:.0f}")
            out = {f"lateness_{p}/{server}": row[f"{p}_ms"] for p in ("p50", "p99", "p999", "max")}
            out[f"lateness_rate/{server}"] = row["scheduled"] / opts.seconds
            out[f"lateness_missing/{server}"] = row["scheduled"] - row["count"]
            return out
        return f

    def memory(server):
        def f(srv):
            time.sleep(0.5)
            before = srv.rss()
            run_tool(peer + [f"--server={server}", f"--address={srv.address}", "--mode=fill",
                             f"--jobs={opts.memory_jobs}"], opts.memory_jobs / 5000 + 120)
            time.sleep(1.0)
            out = {f"memory/{server}": (srv.rss() - before) / opts.memory_jobs}
            if server == "hourglass":
                # With every task an hour away: the tick thread's wake-ups over 3 s, then a
                # restart that replays the log (time from exec to the port answering).
                wakeups = srv.metric("hourglass_ticker_wakeups_total")
                time.sleep(3.0)
                wakeups = srv.metric("hourglass_ticker_wakeups_total") - wakeups
                out["idle_wakeups/hourglass"] = wakeups / 3.0
                srv.stop(keep_dir=True)
                start = time.monotonic()
                srv.start()
                out["restart/hourglass"] = time.monotonic() - start
            return out
        return f

    return [
        ("inserts", "hourglass", batch("hourglass")),
        ("inserts", "ceiling", batch("ceiling")),
        ("inserts", "redis", peer_inserts("redis")),
        ("inserts", "beanstalkd", peer_inserts("beanstalkd")),
        ("roundtrip", "hourglass", unary("hourglass")),
        ("roundtrip", "ceiling", unary("ceiling")),
        ("roundtrip", "redis", peer_roundtrip("redis")),
        ("roundtrip", "beanstalkd", peer_roundtrip("beanstalkd")),
        ("cycle", "hourglass", cycle("hourglass")),
        ("cycle", "redis", cycle("redis")),
        ("cycle", "beanstalkd", cycle("beanstalkd")),
        ("lateness", "hourglass", lateness("hourglass")),
        ("lateness", "redis", lateness("redis")),
        ("lateness", "beanstalkd", lateness("beanstalkd")),
        ("memory", "hourglass", memory("hourglass")),
        ("memory", "redis", memory("redis")),
        ("memory", "beanstalkd", memory("beanstalkd")),
    ]


# ---- the table --------------------------------------------------------------------------------

SERVERS = ["hourglass", "ceiling", "redis", "beanstalkd"]
PEER_TITLES = {"ceiling": "gRPC ceiling", "redis": "Redis", "beanstalkd": "beanstalkd"}

# (figure, what, unit, higher is better)
ROWS = [
    ("insert_pipelined", "pipelined inserts, 1 connection (hourglass: ScheduleBatch(100), 8 in flight; "
     "peers: windows of 100 commands, 8 unanswered)", "jobs/s", True),
    ("insert_pipelined_4", "pipelined inserts, peers on 4 connections (hourglass: 1 connection, as above)",
     "jobs/s", True),
    ("roundtrip_1", "one round trip per job, 1 in flight", "jobs/s", True),
    ("roundtrip_8", "one round trip per job, 8 in flight (peers: 8 connections)", "jobs/s", True),
    ("roundtrip_64", "one round trip per job, 64 in flight (hourglass and ceiling only)", "jobs/s", True),
    ("cycle", "put -> take -> delete cycles, 4 producers + 4 consumers", "cycles/s", True),
    ("cycle_batch", "cycles as above, producers sending ScheduleBatch(10) (hourglass only)",
     "cycles/s", True),
    ("lateness_p50", "lateness p50 at {rate} due/s, 4 consumers", "ms", False),
    ("lateness_p99", "lateness p99", "ms", False),
    ("lateness_p999", "lateness p99.9", "ms", False),
    ("lateness_max", "lateness max", "ms", False),
    ("lateness_rate", "lateness: jobs scheduled per second, achieved (of {rate})", "jobs/s", True),
    ("lateness_missing", "lateness: jobs not received by 3 s after the last due time (not in the "
     "percentiles)", "jobs", False),
    ("memory", "resident memory per pending job, 100-byte payload, {jobs} jobs", "bytes", False),
    ("idle_wakeups", "tick-thread wake-ups per second with {jobs} tasks pending, none due", "1/s",
     False),
    ("restart", "restart with {jobs} tasks pending (exec to port open, log replayed)", "s", False),
]

# The hourglass figure of the insert row with Redis on 4 connections is the 1-connection one.
SAME_AS = {("insert_pipelined_4", "hourglass"): "insert_pipelined",
           ("insert_pipelined_4", "ceiling"): "insert_pipelined"}


def samples_of(samples, figure, server):
    figure = SAME_AS.get((figure, server), figure)
    return samples.get(f"{figure}/{server}", [])


def fmt_value(v, unit):
    if unit == "ms":
        return f"{v:.2f}" if v < 100 else f"{v:.0f}"
    if unit == "bytes":
        return f"{v:.0f}"
    if unit == "jobs":
        return f"{v:.0f}"
    if unit in ("s", "1/s"):
        return f"{v:.2f}"
    if v >= 10000:
        return f"{v / 1000:.0f}k"
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    return f"{v:.0f}"


def cell(values, unit):
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt_value(med, unit)
    return f"{fmt_value(med, unit)} [{fmt_value(min(values), unit)}-{fmt_value(max(values), unit)}]"


def ratio(hg, peer):
    if not hg or not peer:
        return None
    p = statistics.median(peer)
    if p == 0:
        return None
    return statistics.median(hg) / p


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def targets(samples):
    """The issue's targets: (target, measured, met or None when not measured)."""
    out = []

    def med(figure, server):
        v = samples_of(samples, figure, server)
        return statistics.median(v) if v else None

    def add_ratio(text, figure, peer, goal):
        r = ratio(samples_of(samples, figure, "hourglass"), samples_of(samples, figure, peer))
        out.append((text, "-" if r is None else f"{r:.2f}", None if r is None else r >= goal))

    add_ratio("unary Schedule >= 0.7 x gRPC ceiling, 8 in flight", "roundtrip_8", "ceiling", 0.7)
    add_ratio("unary Schedule >= 0.7 x gRPC ceiling, 64 in flight", "roundtrip_64", "ceiling", 0.7)
    add_ratio("ScheduleBatch(100) >= 3 x Redis pipelined, 1 connection", "insert_pipelined", "redis", 3)
    add_ratio("ScheduleBatch(100) >= 3 x Redis pipelined, 4 connections", "insert_pipelined_4", "redis", 3)
    add_ratio("ScheduleBatch(100) >= 4 x beanstalkd pipelined", "insert_pipelined", "beanstalkd", 4)
    add_ratio("ScheduleBatch(100) >= 0.6 x gRPC ceiling (same batches)", "insert_pipelined", "ceiling", 0.6)
    add_ratio("cycles >= 1 x Redis take-and-delete", "cycle", "redis", 1)
    add_ratio("cycles >= 3 x beanstalkd", "cycle", "beanstalkd", 3)
    # Lateness counts only if every job arrived in time to be measured.
    missing = samples_of(samples, "lateness_missing", "hourglass")
    for figure, limit, text in (("lateness_p99", 2.0, "lateness p99 <= 2 ms, every job received"),
                                ("lateness_p999", 5.0, "lateness p99.9 <= 5 ms, every job received")):
        v = med(figure, "hourglass")
        ok = None if v is None else v <= limit and not any(missing)
        out.append((text, "-" if v is None else f"{v:.2f} ms" + (
            f" ({max(missing):.0f} jobs not received)" if any(missing) else ""), ok))
    v = med("memory", "hourglass")
    out.append(("<= 200 bytes per pending task", "-" if v is None else f"{v:.0f} B",
                None if v is None else v <= 200))
    v = med("idle_wakeups", "hourglass")
    out.append(("no wake-ups while nothing is due", "-" if v is None else f"{v:.2f}/s",
                None if v is None else v == 0))
    v = med("restart", "hourglass")
    out.append(("restart with the pending tasks <= 3 s", "-" if v is None else f"{v:.2f} s",
                None if v is None else v <= 3))
    return out


def render(samples, info, opts):
    lines = []
    lines.append(f"Machine: {info['nproc']} cores ({info['cpu']}), Linux {info['kernel']}; "
                 f"load average {' '.join(info['loadavg'])} at the start, "
                 f"{' '.join(info.get('loadavg_end', ['?']))} at the end; {info['date']}. "
                 f"Client and servers share these cores.")
    if "fdatasync_ms" in info:
        p50, p99 = info["fdatasync_ms"]
        lines.append(f"One fdatasync of a 200-byte append in the servers' temporary directory: "
                     f"p50 {p50} ms, p99 {p99} ms.")
    lines.append(f"Runs: {opts.runs} per figure, {opts.seconds:g} s each; median [min-max]; "
                 "ratios are hourglass / peer (of the medians); for lateness and memory, lower is better.")
    lines.append("")
    header = ["figure", "unit", "hourglass", "gRPC ceiling", "Redis", "beanstalkd",
              "hg / ceiling", "hg / Redis", "hg / beanstalkd"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for figure, what, unit, _ in ROWS:
        what = what.format(rate=opts.rate, jobs=f"{opts.memory_jobs:,}")
        values = [samples_of(samples, figure, s) for s in SERVERS]
        if not any(values):
            continue
        hg = values[0]
        cells = [cell(v, unit) for v in values]
        ratios = [fmt_ratio(ratio(hg, v)) for v in values[1:]]
        lines.append("| " + " | ".join([what, unit] + cells + ratios) + " |")
    lines.append("")
    lines.append("| target of issue 6 | measured | |")
    lines.append("|---|---|---|")
    for text, measured, met in targets(samples):
        lines.append(f"| {text} | {measured} | {'-' if met is None else ('met' if met else 'missed')} |")
    return "\n".join(lines) + "\n"


# ---- main -------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--quick", action="store_true",
                        help="1 run, 1 s per figure, 10^5 jobs for memory (about a minute)")
    parser.add_argument("--runs", type=int, help="runs of each figure (default 3; --quick: 1)")
    parser.add_argument("--seconds", type=float, help="load per figure, s (default 5; --quick: 1)")
    parser.add_argument("--memory-jobs", type=int,
                        help="jobs for the memory figure (default 10^6; --quick: 10^5)")
    parser.add_argument("--rate", type=int, default=20000, help="lateness: jobs due per second")
    parser.add_argument("--build-dir", default=os.path.join(REPO_ROOT, "build-bench"),
                        help="Release build directory (default: build-bench in the checkout)")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get the peers")
    parser.add_argument("--no-build", action="store_true", help="use the tools already built")
    parser.add_argument("--only", default=",".join(SERVERS),
                        help="comma list of servers to run (hourglass, ceiling, redis, beanstalkd)")
    parser.add_argument("--groups", default="inserts,roundtrip,cycle,lateness,memory",
                        help="comma list of workload groups to run")
    parser.add_argument("--redis-server", default="redis-server", help="command of redis-server")
    parser.add_argument("--beanstalkd", default="beanstalkd", help="command of beanstalkd")
    parser.add_argument("--results", help="results file (default <build-dir>/compare-results.md)")
    opts = parser.parse_args(argv)
    opts.runs = opts.runs or (1 if opts.quick else 3)
    opts.seconds = opts.seconds or (1.0 if opts.quick else 5.0)
    opts.memory_jobs = opts.memory_jobs or (100_000 if opts.quick else 1_000_000)
    only = set(opts.only.split(","))
    groups = set(opts.groups.split(","))
    unknown = (only - set(SERVERS)) | (groups - {"inserts", "roundtrip", "cycle", "lateness", "memory"})
    if unknown or opts.runs < 1 or opts.seconds <= 0 or opts.memory_jobs < 1:
        parser.error(f"bad --only/--groups/--runs/--seconds/--memory-jobs ({', '.join(sorted(unknown))})")
    build_dir = os.path.abspath(opts.build_dir)

    if not opts.no_install and only & {"redis", "beanstalkd"}:
        install_peers()
    if not opts.no_build:
        build(build_dir)
    if build_type(build_dir) != "Release":
        log(f"warning: {build_dir} is a {build_type(build_dir)} build, not Release")
    tools = {name: find_tool(build_dir, name) for name in TOOLS}
    peers = {"redis": shlex.split(opts.redis_server), "beanstalkd": shlex.split(opts.beanstalkd)}

    info = machine()
    info["fdatasync_ms"] = fdatasync_ms()
    log(f"{info['nproc']} cores, {info['cpu']}, load average {' '.join(info['loadavg'])}")
    samples = {}
    plan = [w for w in workloads(opts, tools) if w[0] in groups and w[1] in only]
    started = time.monotonic()
    failures = []
    for run in range(1, opts.runs + 1):
        for group, kind, measure in plan:
            log(f"run {run}/{opts.runs}: {group} / {kind}")
            # A figure that fails is reported and left out; the others still run.
            try:
                server = Server(kind, tools, peers).start()
                try:
                    figures = measure(server)
                finally:
                    server.stop()
            except (RuntimeError, OSError, ValueError, KeyError,
                    subprocess.TimeoutExpired) as error:
                log(f"error: run {run} of {group} / {kind} failed: {error}")
                failures.append(f"{group}/{kind}")
                continue
            for name, value in figures.items():
                samples.setdefault(name, []).append(value)
    info["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    info["duration_s"] = round(time.monotonic() - started)
    table = render(samples, info, opts)
    print(table, end="")
    results = opts.results or os.path.join(build_dir, "compare-results.md")
    os.makedirs(os.path.dirname(os.path.abspath(results)), exist_ok=True)
    with open(results, "w") as f:
        f.write(table)
    with open(os.path.splitext(results)[0] + ".json", "w") as f:
        json.dump({"machine": info, "runs": opts.runs, "seconds": opts.seconds,
                   "memory_jobs": opts.memory_jobs, "rate": opts.rate, "samples": samples}, f,
                  indent=1)
    log(f"{info['duration_s']} s; results in {results}")
    if failures:
        log(f"error: {len(failures)} figure runs failed: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
