"""Reads the PromQL expressions of hourglass's dashboard and rules, and the metric names in them.

Standard library only (plus PyYAML for the rules file). `selectors(expr)` tokenizes PromQL well
enough to tell metric names from functions, aggregations, keywords, label names, strings, numbers
and durations; it is not a full parser, and Prometheus itself is the judge of syntax
(tests/monitoring/test_prometheus.py runs every expression through a real server).
"""

import json
import os
import re

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARD = os.path.join(REPO_ROOT, "deploy", "grafana", "hourglass-dashboard.json")
RULES = os.path.join(REPO_ROOT, "deploy", "prometheus", "rules.yaml")

# Series that Prometheus makes itself for every target or alert; a server never exports them.
PROMETHEUS_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "ALERTS",
        "ALERTS_FOR_STATE",
    }
)

# Grafana's built-in variables, with values that suit a test scraping every second.
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
}

AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)
# Keywords followed by a parenthesised list of label names.
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
BINARY_KEYWORDS = frozenset({"and", "or", "unless", "atan2", "bool"})
NUMBER_WORDS = frozenset({"inf", "nan"})

_DURATION = r"(?:\d+(?:ms|s|m|h|d|w|y))+"
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<duration>"""
    + _DURATION
    + r"""(?![\w.]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@:])
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    pass


def tokens(expr):
    """(kind, text) pairs of a PromQL expression, without spaces and comments."""
    out = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if not match:
            raise PromQLError(f"unexpected {expr[pos:pos + 20]!r} at offset {pos} in {expr!r}")
        kind = match.lastgroup
        if kind not in ("space", "comment"):
            out.append((kind, match.group()))
        pos = match.end()
    return out


def _unquote(text):
    if text[0] == "`":
        return text[1:-1]
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _check_brackets(toks, expr):
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for _, text in toks:
        if text in "([{":
            stack.append(text)
        elif text in pairs:
            if not stack or stack.pop() != pairs[text]:
                raise PromQLError(f"unbalanced {text!r} in {expr!r}")
    if stack:
        raise PromQLError(f"unclosed {stack[-1]!r} in {expr!r}")


def _skip_group(toks, i, open_, close):
    """Index just past the bracket group that opens at toks[i]."""
    assert toks[i][1] == open_
    depth = 0
    for j in range(i, len(toks)):
        if toks[j][1] == open_:
            depth += 1
        elif toks[j][1] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    raise PromQLError(f"unbalanced {open_!r}")


def _matchers(toks, i):
    """Parses `{label op "value", ...}` at toks[i]; returns (matchers, index past `}`)."""
    assert toks[i][1] == "{"
    i += 1
    found = []
    while toks[i][1] != "}":
        if toks[i][1] == ",":
            i += 1
            continue
        if i + 2 >= len(toks):
            raise PromQLError("unterminated label matchers")
        (kind, label), (_, op), (vkind, value) = toks[i], toks[i + 1], toks[i + 2]
        if kind != "ident" or op not in ("=", "!=", "=~", "!~") or vkind != "string":
            raise PromQLError(f"bad label matcher near {label!r} {op!r} {value!r}")
        found.append((label, op, _unquote(value)))
        i += 3
    return found, i + 1


def selectors(expr):
    """The vector selectors of `expr`: a list of (metric name, [(label, op, value), ...]).

    Skips function and aggregation names, keywords, the label lists of by/without/on/ignoring/
    group_left/group_right, strings, numbers, durations and range/subquery brackets.
    """
    toks = tokens(expr)
    _check_brackets(toks, expr)
    found = []
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if text == "[":
            i = _skip_group(toks, i, "[", "]")
        elif text == "{":
            matchers, i = _matchers(toks, i)
            names = [v for label, op, v in matchers if label == "__name__" and op == "="]
            if not names:
                raise PromQLError(f"selector without a metric name in {expr!r}")
            found.append((names[0], [m for m in matchers if m[0] != "__name__"]))
        elif kind != "ident":
            i += 1
        elif text in LABEL_LIST_KEYWORDS:
            i += 1
            if i < len(toks) and toks[i][1] == "(":
                i = _skip_group(toks, i, "(", ")")
        elif text == "offset":
            i += 2 if nxt == "-" else 1
            i += 1  # the duration
        elif nxt == "(" or text.lower() in NUMBER_WORDS or text in BINARY_KEYWORDS:
            i += 1  # A function or aggregation call, Inf/NaN, a binary keyword.
        elif text in AGGREGATIONS and nxt in ("by", "without"):
            i += 1
        else:
            matchers = []
            i += 1
            if nxt == "{":
                matchers, i = _matchers(toks, i)
            found.append((text, matchers))
    return found


def metric_names(expr):
    return sorted({name for name, _ in selectors(expr)})


def substitute(expr, variables):
    """Replaces Grafana variables ($name, ${name}, ${name:format}) with `variables` or the
    built-ins; an unknown variable is an error."""
    values = dict(GRAFANA_BUILTINS, **variables)

    def replace(match):
        name = match.group(1) or match.group(2)
        if name not in values:
            raise PromQLError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", replace, expr)


# --- the artefacts ---------------------------------------------------------------------------


def load_dashboard(path=DASHBOARD):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def all_panels(dashboard):
    """Every panel, those nested in collapsed rows included."""
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_expressions(dashboard):
    """(where, expr) for every panel target, with Grafana variables left in."""
    out = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            out.append(
                (
                    f"panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}",
                    target.get("expr", ""),
                )
            )
    return out


def annotation_expressions(dashboard):
    """(where, expr) of every Prometheus annotation query."""
    return [
        (f"annotation {a['name']!r}", a["expr"])
        for a in dashboard.get("annotations", {}).get("list", [])
        if a.get("expr")
    ]


def variable_queries(dashboard):
    """(variable name, metric selector, label) of every `label_values(selector, label)` variable."""
    out = []
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query, re.S)
        if not match:
            raise PromQLError(f"variable {variable['name']}: not label_values(...): {query!r}")
        out.append((variable["name"], match.group(1), match.group(2)))
    return out


def load_rules(path=RULES):
    import yaml  # Debian's python3-yaml.

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def rule_expressions(rules):
    """(where, expr) of every recording and alerting rule."""
    out = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("record") or rule.get("alert")
            out.append((f"rule {group['name']}/{name}", rule["expr"]))
    return out


def recorded_series(rules):
    return {
        rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule
    }
