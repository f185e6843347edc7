"""Every metric name (and label matcher) in the dashboard and in deploy/prometheus/rules.yaml is
exported by the real server after a little traffic (CTest: monitoring_metric_names)."""

import re

import pytest

import promql
import support
import traffic

# Labels that Prometheus attaches to every scraped series (the target's), not the server.
TARGET_LABELS = {"job", "instance"}


@pytest.fixture(scope="module")
def scrape(hourglass, push_receiver):
    client = hourglass.client()
    traffic.run(client, push_receiver)
    # A push task's final state shows in GetStatus a moment before its dispatcher slot and its
    # counters are updated: wait (bounded) for the push series to settle; the tests below then
    # check them exactly.
    expected = (traffic.EXPECTED["push"], traffic.EXPECTED["push_in_flight"])

    def settled():
        return push_series(support.parse_metrics(support.scrape(hourglass))) == expected

    try:
        support.wait_until(settled, 10, interval_s=0.05, what="the push series to settle")
    except AssertionError:
        pass  # test_push_traffic_shows_in_the_scrape reports the difference.
    text = support.scrape(hourglass)
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    return support.parse_metrics(text), types


def push_series(samples):
    """({(target, outcome): attempts}, {queue: in flight}) without the zero-valued series."""
    attempts = {
        (labels["target"], labels["outcome"]): value
        for name, labels, value in samples
        if name == "hourglass_push_deliveries_total" and value
    }
    in_flight = {
        labels["queue"]: value
        for name, labels, value in samples
        if name == "hourglass_push_in_flight" and value
    }
    return attempts, in_flight


def expressions():
    dashboard = promql.load_dashboard()
    variables = {"job": ".*", "instance": ".*", "queue": ".*"}
    out = [
        (where, promql.substitute(expr, variables))
        for where, expr in promql.dashboard_expressions(dashboard)
    ]
    out += [
        (f"variable {name}", promql.substitute(selector, variables))
        for name, selector, _ in promql.variable_queries(dashboard)
    ]
    out += [
        (where, promql.substitute(expr, variables))
        for where, expr in promql.annotation_expressions(dashboard)
    ]
    out += promql.rule_expressions(promql.load_rules())
    return out


def check_selector(name, matchers, samples, types, recorded):
    """Problems with one selector against the scrape (an empty list when it is fine)."""
    if name in promql.PROMETHEUS_SERIES or name in recorded:
        return []
    of_name = [labels for sample_name, labels, _ in samples if sample_name == name]
    if not of_name:
        return [f"{name} is not exported"]
    problems = []
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    if name != base and types.get(base) not in ("histogram", "summary"):
        problems.append(f"{name}: {base} is a {types.get(base)}, not a histogram")
    for label, op, value in matchers:
        if label in TARGET_LABELS:
            continue
        values = {labels[label] for labels in of_name if label in labels}
        if not values:
            problems.append(f"{name} has no label {label!r}")
        elif op == "=" and value not in values:
            problems.append(f"{name}{{{label}={value!r}}} matches none of {sorted(values)}")
        elif op == "=~" and not any(re.fullmatch(value, v) for v in values):
            problems.append(f"{name}{{{label}=~{value!r}}} matches none of {sorted(values)}")
    return problems


def test_traffic_shows_in_the_scrape(scrape):
    samples, _ = scrape
    expected = traffic.EXPECTED
    assert support.metric_value(samples, "hourglass_tasks_scheduled_total") == expected["scheduled"]
    assert support.metric_value(samples, "hourglass_task_leases_total") == expected["leased"]
    for outcome, count in expected["deliveries"].items():
        assert (
            support.metric_value(samples, "hourglass_task_deliveries_total", outcome=outcome)
            == count
        ), outcome
    for (queue, state), count in expected["tasks"].items():
        assert support.metric_value(samples, "hourglass_tasks", queue=queue, state=state) == count


def test_push_traffic_shows_in_the_scrape(scrape):
    """Every push attempt of the traffic, by target and outcome, exactly; the in-flight gauge at
    the per-queue cap; one duration observation per attempt."""
    samples, types = scrape
    expected = traffic.EXPECTED["push"]
    attempts, in_flight = push_series(samples)
    assert attempts == expected
    for target in ("http", "grpc"):
        attempts = sum(n for (t, _), n in expected.items() if t == target)
        assert (
            support.metric_value(
                samples, "hourglass_push_delivery_duration_seconds_count", target=target
            )
            == attempts
        ), target
    assert types["hourglass_push_delivery_duration_seconds"] == "histogram"
    assert in_flight == traffic.EXPECTED["push_in_flight"]


@pytest.mark.parametrize("where, expr", expressions(), ids=lambda x: str(x)[:60])
def test_expression_uses_exported_metrics(scrape, where, expr):
    samples, types = scrape
    if not traffic.REFUSED and 'outcome="refused"' in expr:
        pytest.skip(traffic.REFUSED_SKIP_REASON)
    recorded = promql.recorded_series(promql.load_rules())
    found = promql.selectors(expr)
    assert found, f"{where}: no metric name in {expr!r}"
    problems = []
    for name, matchers in found:
        problems += check_selector(name, matchers, samples, types, recorded)
    assert not problems, f"{where}: {expr}\n  " + "\n  ".join(problems)


def test_checker_catches_unknown_names_and_labels(scrape):
    """The check above can fail: misspelt names, labels and values are reported."""
    samples, types = scrape
    check = lambda expr: [
        p
        for name, m in promql.selectors(expr)  # noqa: E731
        for p in check_selector(name, m, samples, types, set())
    ]
    assert check('sum(rate(hourglass_task_deliveries_total{outcome="dead"}[1m]))') == []
    assert check("rate(hourglass_task_lease_total[1m])") == [
        "hourglass_task_lease_total is not exported"
    ]
    assert check('hourglass_tasks{state="pending"}')[0].startswith(
        "hourglass_tasks{state='pending'} matches none of"
    )
    assert check('hourglass_tasks{status="ready"}') == ["hourglass_tasks has no label 'status'"]
    assert check("hourglass_timers_bucket") == ["hourglass_timers_bucket is not exported"]


def test_report_exported_families_without_a_panel(scrape):
    """Not a failure: lists what the server exports that no panel shows (for the lead)."""
    samples, types = scrape
    dashboard = promql.load_dashboard()
    shown = set()
    for _, expr in promql.dashboard_expressions(dashboard):
        expr = promql.substitute(expr, {"job": ".*", "instance": ".*", "queue": ".*"})
        shown |= {re.sub(r"_(bucket|sum|count)$", "", n) for n in promql.metric_names(expr)}
    families = {
        re.sub(r"_(bucket|sum|count)$", "", n)
        if types.get(re.sub(r"_(bucket|sum|count)$", "", n)) in ("histogram", "summary")
        else n
        for n, _, _ in samples
    }
    unshown = sorted(f for f in families if f.startswith("hourglass_") and f not in shown)
    print("exported hourglass_* families on no panel:", unshown or "none")
