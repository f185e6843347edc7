"""The documentation follows the dashboard and the rules: docs/monitoring.md describes every
panel and row, and every alert of deploy/prometheus/rules.yaml is complete and has its line in
docs/operations.md's table and a runbook section there (CTest: monitoring_docs)."""

import os
import re

import pytest

import promql

MONITORING_MD = os.path.join(promql.REPO_ROOT, "docs", "monitoring.md")
OPERATIONS_MD = os.path.join(promql.REPO_ROOT, "docs", "operations.md")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def alerts():
    return [r for g in promql.load_rules()["groups"] for r in g["rules"] if "alert" in r]


def test_monitoring_md_describes_every_panel_and_row():
    doc = read(MONITORING_MD)
    missing = []
    for panel in promql.all_panels(promql.load_dashboard()):
        title = panel["title"]
        # Rows are bold paragraph leads; panels are the first cell of a table line.
        wanted = f"**{title}**" if panel["type"] == "row" else f"\n| {title} |"
        if wanted not in doc:
            missing.append(f"{panel['type']} {title!r}")
    assert not missing, "docs/monitoring.md does not describe: " + ", ".join(missing)


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_alert_is_complete(rule):
    name = rule["alert"]
    assert re.fullmatch(r"Hourglass[A-Z][A-Za-z]+", name)
    assert rule.get("for"), f"{name}: no `for:` (one bad scrape would page)"
    assert rule["labels"]["severity"] in ("warning", "critical")
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}"


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_alert_has_a_runbook_and_a_table_line(rule):
    name = rule["alert"]
    doc = read(OPERATIONS_MD)
    sections = re.findall(r"^### (\S+)\n\n\*\*What it means\.\*\*", doc, re.M)
    assert name in sections, f"docs/operations.md has no runbook section '### {name}'"
    line = re.search(r"^\| \[%s\]\(#%s\) \| (\w+) \|" % (name, name.lower()), doc, re.M)
    assert line, f"docs/operations.md's alert table has no line for {name}"
    assert line.group(1) == rule["labels"]["severity"], f"{name}: severity in the table"
    runbook = doc.split(f"### {name}\n", 1)[1].split("\n### ", 1)[0]
    for part in ("**What it means.**", "**How to check.**", "**What to do.**"):
        assert part in runbook, f"{name}'s runbook has no {part}"
