"""deploy/grafana/: the dashboard is well-formed for Grafana 9/10, and its ConfigMap is generated
from the one JSON file. No server needed (CTest: grafana_dashboard_lint)."""

import json
import os
import re
import shutil
import subprocess

import pytest

import promql

GRAFANA_DIR = os.path.join(promql.REPO_ROOT, "deploy", "grafana")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
VARIABLES = {"job": ".*", "instance": ".*", "queue": ".*"}
# Metrics that carry a `queue` label: a panel on them follows the queue variable.
QUEUE_METRICS = {
    "hourglass_tasks_scheduled_total",
    "hourglass_tasks_cancelled_total",
    "hourglass_task_leases_total",
    "hourglass_task_deliveries_total",
    "hourglass_tasks",
    "hourglass_push_in_flight",
}
# What the dashboard must show (issue 5): at least one panel reads each of these.
REQUIRED_METRICS = {
    "hourglass_tasks_scheduled_total",
    "hourglass_task_leases_total",
    "hourglass_task_deliveries_total",
    "hourglass_tasks",
    "hourglass_dispatch_lateness_seconds_bucket",
    "hourglass_grpc_server_handled_total",
    "hourglass_grpc_server_handling_seconds_bucket",
    "hourglass_log_fsync_seconds_bucket",
    "hourglass_log_written_bytes_total",
    "hourglass_snapshots_total",
    "hourglass_snapshot_duration_seconds",
    "hourglass_recovery_duration_seconds",
    "hourglass_recovery_records",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "hourglass_dispatch_queue_depth",
    "hourglass_dispatch_queue_capacity",
    "hourglass_ticker_wakeups_total",
    "hourglass_push_deliveries_total",
    "hourglass_push_delivery_duration_seconds_bucket",
    "hourglass_push_in_flight",
}
# Unit ids of Grafana's value formats (packages/grafana-data/src/valueFormats/categories.ts)
# that suit hourglass's metrics; a misspelt id would show raw numbers.
GRAFANA_UNITS = {
    "none", "short", "percent", "percentunit",
    "s", "ms", "µs", "ns", "dtdurations",
    "bytes", "decbytes", "Bps",
    "ops", "reqps", "rps", "wps", "hertz",
}  # fmt: skip
# `kubectl apply` keeps the whole object in an annotation limited to 256 KiB.
MAX_DASHBOARD_BYTES = 256 * 1024 - 4096


@pytest.fixture(scope="module")
def dashboard():
    return promql.load_dashboard()


def panels_with_targets(dashboard):
    return [p for p in promql.all_panels(dashboard) if p.get("type") != "row"]


def test_json_is_a_grafana_dashboard(dashboard):
    assert os.path.getsize(promql.DASHBOARD) < MAX_DASHBOARD_BYTES
    assert dashboard["title"] and re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    # 37 is Grafana 9.4's schema; Grafana 10 migrates it on load.
    assert 36 <= dashboard["schemaVersion"] <= 39
    assert "__inputs" not in dashboard, "use the ${datasource} variable, not import inputs"
    assert isinstance(dashboard["panels"], list) and dashboard["panels"]


def test_datasource_is_a_variable_never_a_uid(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"

    def walk(node, where):
        if isinstance(node, dict):
            if "datasource" in node:
                value = node["datasource"]
                builtin = {"type": "grafana", "uid": "-- Grafana --"}
                assert value in (DATASOURCE, builtin), f"{where}: datasource {value!r}"
            for key, child in node.items():
                walk(child, f"{where}.{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{where}[{i}]")

    walk(dashboard, "dashboard")
    assert "${DS_" not in json.dumps(dashboard)


def test_query_variables(dashboard):
    queries = {
        name: (selector, label) for name, selector, label in promql.variable_queries(dashboard)
    }
    assert set(queries) == {"job", "instance", "queue"}
    for name, (selector, label) in queries.items():
        assert label == name
        assert promql.metric_names(promql.substitute(selector, VARIABLES))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE
            assert variable["includeAll"] and variable["multi"] and variable["allValue"] == ".*"
    # Each variable filters by the ones before it.
    assert "$job" in queries["instance"][0]
    assert "$job" in queries["queue"][0] and "$instance" in queries["queue"][0]


def test_alert_annotations(dashboard):
    ((where, expr),) = promql.annotation_expressions(dashboard)
    ((name, matchers),) = promql.selectors(promql.substitute(expr, VARIABLES))
    assert name == "ALERTS", where
    assert ("alertname", "=~", "Hourglass.*") in matchers and (
        "alertstate",
        "=",
        "firing",
    ) in matchers
    assert ("job", "=~", ".*") in matchers and ("instance", "=~", ".*") in matchers


def test_panel_ids_are_unique_and_grid_positions_do_not_overlap(dashboard):
    panels = promql.all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    boxes = []
    for p in panels:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in ("h", "w", "x", "y")), p["title"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, f"{p['title']}: wider than the 24-column grid"
        boxes.append((p["title"], g))
    for i, (title_a, a) in enumerate(boxes):
        for title_b, b in boxes[i + 1 :]:
            overlap = (
                a["x"] < b["x"] + b["w"]
                and b["x"] < a["x"] + a["w"]
                and a["y"] < b["y"] + b["h"]
                and b["y"] < a["y"] + a["h"]
            )
            assert not overlap, f"panels {title_a!r} and {title_b!r} overlap"


def test_every_panel_has_datasource_unit_and_targets(dashboard):
    panels = panels_with_targets(dashboard)
    assert len(panels) >= 20
    for p in panels:
        where = f"panel {p['id']} {p.get('title')!r}"
        assert p.get("title") and p.get("description"), f"{where}: title and description"
        assert p["type"] in ("timeseries", "stat", "heatmap", "gauge", "bargauge", "table"), where
        assert p["datasource"] == DATASOURCE, where
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert isinstance(unit, str) and unit, f"{where}: no unit"
        assert unit in GRAFANA_UNITS, f"{where}: {unit!r} is not a Grafana unit id"
        if p["type"] == "heatmap":
            assert p["options"]["calculate"] is False, f"{where}: buckets come from Prometheus"
            assert p["options"]["yAxis"]["unit"] in GRAFANA_UNITS, f"{where}: y axis unit"
        targets = p.get("targets")
        assert targets, f"{where}: no targets"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{where}: duplicate refIds"
        for t in targets:
            assert t["datasource"] == DATASOURCE, where
            assert t.get("expr", "").strip(), f"{where} {t['refId']}: empty expression"
            if p["type"] == "heatmap":
                assert t.get("format") == "heatmap", f"{where}: heatmap needs format=heatmap"


def test_every_expression_parses_and_follows_the_variables(dashboard):
    used = set()
    for where, expr in promql.dashboard_expressions(dashboard):
        found = promql.selectors(promql.substitute(expr, VARIABLES))
        assert found, f"{where}: no metric in {expr!r}"
        for name, _ in promql.selectors(
            expr.replace("$__rate_interval", "1m").replace("$__range", "1h").replace("$", "")
        ):
            used.add(name)
        # Matchers before substitution: the variables must be applied to every selector.
        raw = promql.selectors(
            re.sub(r"\$(__\w+)", lambda m: promql.GRAFANA_BUILTINS[m.group(1)], expr)
        )
        for name, matchers in raw:
            assert ("job", "=~", "$job") in matchers, f"{where}: {name} ignores $job"
            assert ("instance", "=~", "$instance") in matchers, f"{where}: {name} ignores $instance"
            if name in QUEUE_METRICS and name != "hourglass_grpc_server_handled_total":
                assert ("queue", "=~", "$queue") in matchers, f"{where}: {name} ignores $queue"
    missing = REQUIRED_METRICS - used
    assert not missing, f"no panel shows {sorted(missing)}"


def test_rows_group_the_panels(dashboard):
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    assert len(rows) >= 5
    for row in rows:
        assert row["gridPos"]["w"] == 24 and row["gridPos"]["x"] == 0 and row["title"]
        if not row.get("collapsed"):
            assert not row.get("panels"), f"row {row['title']!r}: open rows list no panels"


def readme_flag_default(flag):
    """The default of `flag` in README.md's flags table (| `--flag` | `default` | ...)."""
    with open(os.path.join(promql.REPO_ROOT, "README.md"), encoding="utf-8") as f:
        match = re.search(r"^\| `--%s` \| `([^`]*)` \|" % re.escape(flag), f.read(), re.M)
    assert match, f"README.md lists no default of --{flag}"
    return match.group(1)


def test_push_delivery_row(dashboard):
    """The push row (issue 5's follow-up): open, last, and its panels show what they say."""
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    assert rows[-1]["title"] == "Push delivery" and not rows[-1]["collapsed"]
    index = dashboard["panels"].index(rows[-1])
    push = {p["title"]: p for p in dashboard["panels"][index + 1 :]}
    assert set(push) == {
        "Push attempts by target and outcome",
        "Push success ratio by target",
        "Push delivery latency p50 / p99 by target",
        "Push deliveries in flight by queue",
        "Refused push attempts (SSRF guard)",
        "Dead push tasks by target",
    }
    for title, panel in push.items():
        assert panel["gridPos"]["y"] > rows[-1]["gridPos"]["y"], title
        for t in panel["targets"]:
            assert "hourglass_push_" in t["expr"], f"{title}: {t['expr']}"
            # A graph's series say which target or queue they are.
            legend = t["legendFormat"]
            assert panel["type"] == "stat" or "{{target}}" in legend or "{{queue}}" in legend, title

    def unit(title):
        return push[title]["fieldConfig"]["defaults"]["unit"]

    assert unit("Push attempts by target and outcome") == "ops"
    assert unit("Push success ratio by target") == "percentunit"
    assert unit("Push delivery latency p50 / p99 by target") == "s"
    latency = [t["expr"] for t in push["Push delivery latency p50 / p99 by target"]["targets"]]
    assert [e.split(",")[0] for e in latency] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.99",
    ]
    assert all("by (target, le)" in e for e in latency)

    def steps(title):
        defaults = push[title]["fieldConfig"]["defaults"]
        return [(s["color"], s["value"]) for s in defaults["thresholds"]["steps"]]

    # The in-flight panel's dashed line is the default per-queue cap, from the README's flags.
    workers = int(readme_flag_default("push_workers"))
    assert readme_flag_default("queue_concurrency") == "0"  # 0: a quarter of --push_workers
    in_flight = push["Push deliveries in flight by queue"]
    assert steps(in_flight["title"]) == [("green", None), ("red", max(1, workers // 4))]
    assert in_flight["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"
    assert f"{workers} / 4 = {max(1, workers // 4)}" in in_flight["description"]
    # The success ratio's line is HourglassPushFailing's threshold (50 % retried or dead).
    assert steps("Push success ratio by target") == [("red", None), ("green", 0.5)]
    assert "HourglassPushFailing" in push["Push success ratio by target"]["description"]
    # Any refusal turns the stat red.
    refused = push["Refused push attempts (SSRF guard)"]
    assert steps(refused["title"]) == [("green", None), ("red", 1)]
    assert 'outcome="refused"' in refused["targets"][0]["expr"]
    assert 'outcome=~"dead|refused"' in push["Dead push tasks by target"]["targets"][0]["expr"]


# --- the ConfigMap -------------------------------------------------------------------------


def test_kustomization_generates_the_configmap_from_the_json():
    import yaml

    with open(os.path.join(GRAFANA_DIR, "kustomization.yaml"), encoding="utf-8") as f:
        kustomization = yaml.safe_load(f)
    assert kustomization["kind"] == "Kustomization"
    options = kustomization["generatorOptions"]
    assert options["labels"]["grafana_dashboard"] == "1"  # A string: the sidecar compares text.
    assert options["disableNameSuffixHash"] is True
    (generator,) = kustomization["configMapGenerator"]
    assert generator["files"] == ["hourglass-dashboard.json"]
    # Nothing else in the folder duplicates the dashboard.
    for name in os.listdir(GRAFANA_DIR):
        assert name in ("hourglass-dashboard.json", "kustomization.yaml"), name


def test_kubectl_kustomize_renders_the_configmap():
    # tools/install_deps.sh installs kubectl (Debian's kubernetes-client) when none is present.
    kubectl = os.environ.get("HOURGLASS_KUBECTL", "")  # CMake's find_program: *-NOTFOUND.
    if not kubectl or kubectl.endswith("NOTFOUND"):
        kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl missing: run tools/install_deps.sh"
    import yaml

    rendered = subprocess.run(
        [kubectl, "kustomize", GRAFANA_DIR],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    (configmap,) = list(yaml.safe_load_all(rendered))
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["name"] == "hourglass-grafana-dashboard"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    with open(promql.DASHBOARD, encoding="utf-8") as f:
        assert configmap["data"] == {"hourglass-dashboard.json": f.read()}


# --- the PromQL reader itself --------------------------------------------------------------


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("up", [("up", [])]),
        (
            'sum by (le, job) (rate(a_bucket{job="x", le!="+Inf"}[5m]))',
            [("a_bucket", [("job", "=", "x"), ("le", "!=", "+Inf")])],
        ),
        (
            "histogram_quantile(0.99, sum without (instance) (rate(b_bucket[1h30m] offset 5m)))",
            [("b_bucket", [])],
        ),
        (
            "a / on (job, instance) group_left(version) b > bool 0.8 and c unless d or e",
            [(n, []) for n in "abcde"],
        ),
        (
            'label_replace(x{q=~"a|b"}, "dst", "$1", "src", "(.*)") * Inf',
            [("x", [("q", "=~", "a|b")])],
        ),
        (
            '{__name__="n", k="v"} + max_over_time(job:rec:rate5m[10m:1m]) # a comment',
            [("n", [("k", "=", "v")]), ("job:rec:rate5m", [])],
        ),
        (
            "count(sum by (queue) (m)) - 1e-3 + topk(3, sum(m2) by (grpc_method))",
            [("m", []), ("m2", [])],
        ),
    ],
)
def test_promql_selectors(expr, expected):
    assert promql.selectors(expr) == expected


@pytest.mark.parametrize("expr", ["sum(rate(x[5m])", 'x{a="b"', "x{a b}", "x $y"])
def test_promql_selectors_reject_broken_expressions(expr):
    with pytest.raises(promql.PromQLError):
        promql.selectors(expr)


def test_substitute_rejects_unknown_variables():
    assert (
        promql.substitute('a{i=~"$instance"}[$__rate_interval]', {"instance": ".*"})
        == 'a{i=~".*"}[1m]'
    )
    assert promql.substitute('a{i=~"${instance:regex}"}', {"instance": "x"}) == 'a{i=~"x"}'
    with pytest.raises(promql.PromQLError):
        promql.substitute("rate(a[$interval])", {})
