"""A real Prometheus (Debian's /usr/bin/prometheus) scrapes a real hourglass every second with
deploy/prometheus/rules.yaml loaded; after known traffic its HTTP API returns the expected
counts, every rule evaluates without error, the dead-task alert goes pending, every dashboard
expression, variable query and annotation runs (and the panels return series, the task and push
panels the traffic's figures), the push alert goes pending for the failing target
(CTest: prometheus_scrape)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

import promql
import support
import traffic

PROMETHEUS = os.environ.get("HOURGLASS_PROMETHEUS") or shutil.which("prometheus") or "prometheus"
JOB = "hourglass"
START_TIMEOUT_S = 60
# Generous: a loaded 2-core CI machine may be slow, but each wait ends as soon as it is met.
WAIT_S = 60


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """One Prometheus server on 127.0.0.1 with its own storage and a generated configuration."""

    def __init__(self, work_dir, metrics_port):
        self.dir = os.path.join(work_dir, "prometheus")
        os.makedirs(self.dir)
        self.config = os.path.join(self.dir, "prometheus.yml")
        # JSON is YAML: no PyYAML needed to write the configuration.
        with open(self.config, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "global": {
                        "scrape_interval": "1s",
                        "scrape_timeout": "1s",
                        "evaluation_interval": "1s",
                    },
                    "rule_files": [promql.RULES],
                    "scrape_configs": [
                        {
                            "job_name": JOB,
                            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
                        }
                    ],
                },
                f,
                indent=2,
            )
        self.process = None
        self.log_path = os.path.join(self.dir, "prometheus.log")

    def start(self):
        for _ in range(3):  # Another process may take the port between free_port() and bind.
            self.port = free_port()
            with open(self.log_path, "w") as log:
                self.process = subprocess.Popen(
                    [
                        PROMETHEUS,
                        f"--config.file={self.config}",
                        f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--log.level=warn",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + START_TIMEOUT_S
            while self.process.poll() is None and time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(self.url("/-/ready"), timeout=5) as response:
                        if response.status == 200:
                            return self
                except (urllib.error.URLError, ConnectionError):
                    pass
                time.sleep(0.1)
            if self.process.poll() is None:
                self.stop()
                raise AssertionError(f"Prometheus not ready in {START_TIMEOUT_S} s\n" + self.log())
            if "address already in use" not in self.log():
                break
        raise AssertionError(f"Prometheus exited with {self.process.returncode}\n" + self.log())

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return "--- prometheus log ---\n" + f.read()[-4000:]

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def url(self, path, **params):
        query = urllib.parse.urlencode(params, doseq=True)
        return f"http://127.0.0.1:{self.port}{path}" + (f"?{query}" if query else "")

    def api(self, path, **params):
        """The `data` of a successful API answer; AssertionError with Prometheus's error else."""
        try:
            with urllib.request.urlopen(self.url(path, **params), timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr):
        """The result of an instant query: a list of {metric, value}."""
        data = self.api("/api/v1/query", query=expr)
        assert data["resultType"] in ("vector", "scalar"), data
        return (
            data["result"]
            if data["resultType"] == "vector"
            else [{"metric": {}, "value": data["result"]}]
        )

    def value(self, expr):
        """The single value of `expr`, or None when it has no series (yet)."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr}: {len(result)} series"
        return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def prometheus(work_dir, hourglass):
    server = Prometheus(work_dir, hourglass.metrics_port).start()
    try:
        support.wait_until(
            lambda: server.value(f'up{{job="{JOB}"}}') == 1,
            WAIT_S,
            interval_s=0.2,
            what="Prometheus to scrape hourglass",
        )
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def traffic_done(prometheus, hourglass, push_receiver):
    """Runs the traffic once; the first nacks' `dead` counter is scraped at 0 before tasks die,
    and the grpc push `dead` counter at 1 before the second grpc task dies."""
    dead = f'hourglass_task_deliveries_total{{job="{JOB}", queue="flaky", outcome="dead"}}'
    grpc_dead = f'hourglass_push_deliveries_total{{job="{JOB}", target="grpc", outcome="dead"}}'

    def dead_counter_scraped_at_zero():
        support.wait_until(
            lambda: prometheus.value(dead) == 0,
            WAIT_S,
            interval_s=0.2,
            what=f"{dead} == 0 in Prometheus",
        )

    def grpc_dead_scraped_at_one():
        support.wait_until(
            lambda: prometheus.value(grpc_dead) == 1,
            WAIT_S,
            interval_s=0.2,
            what=f"{grpc_dead} == 1 in Prometheus",
        )

    traffic.run(
        hourglass.client(),
        push_receiver,
        before_deaths=dead_counter_scraped_at_zero,
        before_push_failures=grpc_dead_scraped_at_one,
    )
    return prometheus


def wait_for_values(prometheus, expected):
    """Polls until every query in `expected` ({expr: value}) has its value; lists the misses."""
    deadline = time.monotonic() + WAIT_S
    while True:
        misses = {expr: prometheus.value(expr) for expr in expected}
        misses = {e: v for e, v in misses.items() if v != expected[e]}
        if not misses:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                "after %d s:\n  " % WAIT_S
                + "\n  ".join(f"{e} = {v}, expected {expected[e]}" for e, v in misses.items())
            )
        time.sleep(0.2)


def test_counts_reach_prometheus(traffic_done):
    e = traffic.EXPECTED
    sel = f'job="{JOB}"'
    outcomes = "|".join(sorted({o for _, o in e["push"]}))
    expected = {
        f"sum(hourglass_tasks_scheduled_total{{{sel}}})": e["scheduled"],
        f"sum(hourglass_task_leases_total{{{sel}}})": e["leased"],
        f"sum(hourglass_tasks_cancelled_total{{{sel}}})": e["cancelled"],
        f"count(hourglass_build_info{{{sel}}})": 1,
    }
    for outcome, count in e["deliveries"].items():
        expected[f'sum(hourglass_task_deliveries_total{{{sel}, outcome="{outcome}"}})'] = count
    for (queue, state), count in e["tasks"].items():
        expected[f'hourglass_tasks{{{sel}, queue="{queue}", state="{state}"}}'] = count
    for (target, outcome), count in e["push"].items():
        expected[
            f'sum(hourglass_push_deliveries_total{{{sel}, target="{target}", '
            f'outcome="{outcome}"}})'
        ] = count
    # No other outcome (no released attempt: nothing was shut down).
    expected[
        f'sum(hourglass_push_deliveries_total{{{sel}, outcome!~"{outcomes}"}}) or vector(0)'
    ] = 0
    for target in ("http", "grpc"):
        expected[
            f'sum(hourglass_push_delivery_duration_seconds_count{{{sel}, target="{target}"}})'
        ] = sum(n for (t, _), n in e["push"].items() if t == target)
    for queue, count in e["push_in_flight"].items():
        expected[f'sum(hourglass_push_in_flight{{{sel}, queue="{queue}"}})'] = count
    for (method, code), count in e["rpcs"].items():
        expected[
            f'sum(hourglass_grpc_server_handled_total{{{sel}, grpc_method="{method}", '
            f'grpc_code="{code}"}})'
        ] = count
    wait_for_values(traffic_done, expected)


def test_rules_load_and_evaluate_without_errors(traffic_done):
    rules = promql.load_rules()
    want = {
        g["name"]: [r.get("record") or r.get("alert") for r in g["rules"]] for g in rules["groups"]
    }

    def all_evaluated():
        groups = traffic_done.api("/api/v1/rules")["groups"]
        got = {g["name"]: [r["name"] for r in g["rules"]] for g in groups}
        assert got == want, f"loaded rules {got}, expected {want}"
        for group in groups:
            for rule in group["rules"]:
                assert not rule.get("lastError"), f"{rule['name']}: {rule['lastError']}"
                assert rule["health"] in ("ok", "unknown"), f"{rule['name']}: {rule['health']}"
        return all(r["health"] == "ok" for g in groups for r in g["rules"])

    support.wait_until(all_evaluated, WAIT_S, interval_s=0.5, what="every rule evaluated")
    for record in promql.recorded_series(rules):
        support.wait_until(
            lambda: traffic_done.query(f'{record}{{job="{JOB}"}}'),
            WAIT_S,
            interval_s=0.5,
            what=f"recording rule {record} to have a series",
        )


# Alerts that nothing in this test may trigger, however slow the machine. (A starved machine can
# miss a 1 s scrape, dispatch a task a second late or take 100 ms for an fsync, so InstanceDown,
# DispatchLatenessHigh and LogFsyncSlow may legitimately go pending here.)
NEVER_ACTIVE = {
    "HourglassRecoveryFailing",
    "HourglassSnapshotsFailing",
    "HourglassDispatchQueueSaturated",
}


def test_dead_tasks_alert_goes_pending(traffic_done):
    def dead_alert():
        alerts = traffic_done.api("/api/v1/alerts")["alerts"]
        names = {a["labels"]["alertname"] for a in alerts}
        assert not names & NEVER_ACTIVE, f"unexpected alerts {names}"
        return [a for a in alerts if a["labels"]["alertname"] == "HourglassDeadTasksIncreasing"]

    def flaky_alert():
        return [a for a in dead_alert() if a["labels"]["queue"] == traffic.FLAKY]

    (alert,) = support.wait_until(
        flaky_alert, WAIT_S, interval_s=0.5, what="HourglassDeadTasksIncreasing for flaky"
    )
    assert alert["state"] in ("pending", "firing")  # `for: 1m`: pending for the first minute.
    assert alert["labels"]["severity"] == "warning"
    assert float(alert["value"]) > 0
    # The push queues' tasks died too, but maybe before their queue's first scrape (which an
    # increase does not count); no other queue may have the alert.
    died = {queue for (queue, state) in traffic.EXPECTED["tasks"] if state == "dead"}
    assert {a["labels"]["queue"] for a in dead_alert()} <= died


def test_push_failing_alert_goes_pending_for_grpc(traffic_done):
    """Every grpc attempt failed (ratio 1); the http attempts mostly succeeded."""

    def push_alerts():
        alerts = traffic_done.api("/api/v1/alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "HourglassPushFailing"]

    (alert,) = support.wait_until(push_alerts, WAIT_S, interval_s=0.5, what="HourglassPushFailing")
    assert alert["labels"]["target"] == "grpc"
    assert alert["labels"]["job"] == JOB and alert["labels"]["severity"] == "warning"
    assert alert["state"] == "pending"  # `for: 10m`
    assert float(alert["value"]) == 1
    assert "grpc" in alert["annotations"]["summary"]


def selections(prometheus):
    """Variable values to try: Grafana's All (the dashboard's allValue) and one of each, regex-
    escaped as Grafana does for a multi-value variable; two queues, `(flaky|slow)` as Grafana
    writes a multi-value selection, so that the queue panels have a pull queue and a queue with
    push deliveries in flight."""
    (target,) = prometheus.api("/api/v1/targets")["activeTargets"]
    instance = target["labels"]["instance"]
    escape = lambda value: re.escape(value).replace("\\", "\\\\")  # noqa: E731 (PromQL string)
    return [
        {"job": ".*", "instance": ".*", "queue": ".*"},
        {
            "job": escape(JOB),
            "instance": escape(instance),
            "queue": "(%s)" % "|".join(escape(q) for q in (traffic.FLAKY, traffic.SLOW)),
        },
    ]


def test_every_dashboard_expression_runs_and_returns_series(traffic_done):
    dashboard = promql.load_dashboard()
    exprs = [
        (where, promql.substitute(expr, values))
        for values in selections(traffic_done)
        for where, expr in promql.dashboard_expressions(dashboard)
    ]
    # A syntax or type error fails at once (api() raises); an empty result is retried until the
    # rates have two samples.
    empty = exprs
    deadline = time.monotonic() + WAIT_S
    while empty:
        empty = [(where, expr) for where, expr in empty if not traffic_done.query(expr)]
        if empty and time.monotonic() > deadline:
            raise AssertionError(
                "no series after %d s:\n  " % WAIT_S
                + "\n  ".join(f"{where}: {expr}" for where, expr in empty)
            )
        time.sleep(0.5)


def test_dashboard_variables_find_the_server(traffic_done):
    (target,) = traffic_done.api("/api/v1/targets")["activeTargets"]
    expected = {
        "job": {JOB},
        "instance": {target["labels"]["instance"]},
        "queue": traffic.QUEUES,
    }
    dashboard = promql.load_dashboard()
    values = {"job": ".*", "instance": ".*", "queue": ".*"}
    for name, selector, label in promql.variable_queries(dashboard):
        series = traffic_done.api(
            "/api/v1/series", **{"match[]": promql.substitute(selector, values)}
        )
        assert {s[label] for s in series if label in s} == expected[name], name


def test_a_broken_expression_fails(traffic_done):
    """The checks above can fail: Prometheus answers bad PromQL with an error, not no series."""
    with pytest.raises(AssertionError, match="bad_data"):
        traffic_done.query("sum(rate(hourglass_task_leases_total[1m])")
    with pytest.raises(AssertionError, match="bad_data"):
        traffic_done.query('histogram_quantile(0.9, "x")')
    assert traffic_done.query("hourglass_no_such_metric") == []


def panel_expr(dashboard, title, ref_id, values):
    (panel,) = [p for p in promql.all_panels(dashboard) if p.get("title") == title]
    (target,) = [t for t in panel["targets"] if t["refId"] == ref_id]
    return promql.substitute(target["expr"], values)


def test_panels_show_the_traffic(traffic_done):
    """The gauges' panels add up what the traffic left behind, queue by queue."""
    dashboard = promql.load_dashboard()
    values = {"job": ".*", "instance": ".*", "queue": ".*"}

    def by(label, title, ref_id):
        result = traffic_done.query(panel_expr(dashboard, title, ref_id, values))
        return {
            tuple(r["metric"].get(part, "") for part in label.split(",")): float(r["value"][1])
            for r in result
        }

    def nonzero(series):
        return {k: v for k, v in series.items() if v}

    queues = "Pending and ready tasks by queue"
    expected = traffic.EXPECTED["tasks"]
    for ref_id, state in (("A", "scheduled"), ("B", "ready"), ("C", "leased")):
        want = {(q,): n for (q, s), n in expected.items() if s == state}
        assert nonzero(by("queue", queues, ref_id)) == want, state
    finished = nonzero(by("queue,state", "Finished tasks retained by queue", "A"))
    assert finished == {
        k: v for k, v in expected.items() if k[1] in ("succeeded", "cancelled", "dead")
    }
    dead = {(q,): n for (q, s), n in expected.items() if s == "dead"}
    assert nonzero(by("queue", "Dead tasks by queue", "A")) == dead
    assert by("", "Instances up", "A") == {("",): 1}
    ready = sum(n for (_, s), n in expected.items() if s == "ready")
    assert by("", "Ready tasks", "A") == {("",): ready}
    (build,) = traffic_done.query('hourglass_build_info{job="hourglass"}')
    assert by("version", "Version", "A") == {(build["metric"]["version"],): 1}
    # The Overload row: every unfinished task of the traffic against --max_pending's default
    # (the server starts without the flag), and no refusal (the counter exists at 0).
    unfinished = sum(n for (_, s), n in expected.items() if s in ("scheduled", "ready", "leased"))
    assert by("", "Pending tasks vs limit", "A") == {("",): unfinished}
    assert by("", "Pending tasks vs limit", "B") == {("",): 5_000_000}
    assert by("", "Refused new tasks (range)", "A") == {("",): 0}


def test_push_panels_show_the_traffic(traffic_done):
    """The push row: which series each panel has, and the stats' and the gauge's exact values."""
    dashboard = promql.load_dashboard()
    values = {"job": ".*", "instance": ".*", "queue": ".*"}
    push = traffic.EXPECTED["push"]

    def by(labels, title, ref_id="A"):
        result = traffic_done.query(panel_expr(dashboard, title, ref_id, values))
        return {tuple(r["metric"].get(k, "") for k in labels): float(r["value"][1]) for r in result}

    attempts = by(("target", "outcome"), "Push attempts by target and outcome")
    # A series for every (target, outcome) the traffic had; any other must be at 0 (a server may
    # export its series before the first attempt).
    totals = {
        (r["metric"]["target"], r["metric"]["outcome"]): float(r["value"][1])
        for r in traffic_done.query(f'hourglass_push_deliveries_total{{job="{JOB}"}}')
    }
    assert set(attempts) == set(totals)
    assert {k: v for k, v in totals.items() if v} == push
    ratio = by(("target",), "Push success ratio by target")
    assert set(ratio) == {("http",), ("grpc",)}
    # No grpc attempt succeeded: 0 while the last failure is within the rate window, then 0/0.
    assert not ratio[("grpc",)] > 0, ratio
    for ref_id in ("A", "B"):
        latency = by(("target",), "Push delivery latency p50 / p99 by target", ref_id)
        assert set(latency) == {("http",), ("grpc",)}, ref_id
    (target,) = traffic_done.api("/api/v1/targets")["activeTargets"]
    instance = target["labels"]["instance"]
    # The in-flight gauge settles a moment after the tasks' final states: polled.
    in_flight = {(q, instance): n for q, n in traffic.EXPECTED["push_in_flight"].items()}
    support.wait_until(
        lambda: by(("queue", "instance"), "Push deliveries in flight by queue") == in_flight,
        WAIT_S,
        interval_s=0.2,
        what=f"the in-flight panel to show {in_flight}",
    )
    assert by((), "Refused push attempts (SSRF guard)") == {(): traffic.REFUSED}
    dead = {}
    for (t, outcome), n in push.items():
        if outcome in ("dead", "refused"):
            dead[(t,)] = dead.get((t,), 0) + n
    assert by(("target",), "Dead push tasks by target") == dead
    if not traffic.REFUSED:
        pytest.skip(traffic.REFUSED_SKIP_REASON + " (the refused stat was checked at 0)")


def test_alert_annotation_finds_the_alerts(traffic_done):
    """The annotation query runs; with `pending` for `firing` it finds the dead-task alert (which
    fires only after its `for: 1m`)."""
    dashboard = promql.load_dashboard()
    ((_, expr),) = promql.annotation_expressions(dashboard)
    expr = promql.substitute(expr, {"job": ".*", "instance": ".*"})
    traffic_done.query(expr)
    pending = expr.replace('alertstate="firing"', 'alertstate="pending"')
    assert pending != expr
    alerts = support.wait_until(
        lambda: traffic_done.query(pending), WAIT_S, interval_s=0.5, what=f"{pending} to match"
    )
    assert {a["metric"]["alertname"] for a in alerts} >= {"HourglassDeadTasksIncreasing"}
