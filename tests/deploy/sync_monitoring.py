#!/usr/bin/python3
"""Keeps deploy/kubernetes/monitoring/ in step with deploy/prometheus/.

kustomize refuses to load files from outside a kustomization's directory, so the monitoring
kustomization carries copies of deploy/prometheus/servicemonitor.yaml and prometheusrule.yaml
(the source of truth, with its own tests), each behind a header saying so.

  sync_monitoring.py --check   exit 1 and name the stale copies (the CTest test
                               kubernetes_monitoring_in_sync)
  sync_monitoring.py --write   refresh the copies
"""

import argparse
import os
import sys

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SOURCE_DIR = os.path.join(REPO_ROOT, "deploy", "prometheus")
COPY_DIR = os.path.join(REPO_ROOT, "deploy", "kubernetes", "monitoring")
FILES = ("servicemonitor.yaml", "prometheusrule.yaml")
HEADER = (
    "# A copy of deploy/prometheus/{name}, made by tests/deploy/sync_monitoring.py --write:\n"
    "# edit the original, then run that (kustomize loads no file from outside this directory).\n"
)


def expected(name):
    with open(os.path.join(SOURCE_DIR, name), encoding="utf-8") as source:
        return HEADER.format(name=name) + source.read()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--write", action="store_true")
    args = parser.parse_args()

    stale = []
    for name in FILES:
        want = expected(name)
        path = os.path.join(COPY_DIR, name)
        have = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as copy:
                have = copy.read()
        if have == want:
            continue
        if args.write:
            with open(path, "w", encoding="utf-8") as copy:
                copy.write(want)
            print(f"wrote deploy/kubernetes/monitoring/{name}")
        else:
            stale.append(name)
    for name in stale:
        print(
            f"deploy/kubernetes/monitoring/{name} differs from deploy/prometheus/{name}: "
            "run tests/deploy/sync_monitoring.py --write",
            file=sys.stderr,
        )
    if not stale:
        print(f"1 passed, 0 failed: {', '.join(FILES)} in sync" if args.check else "in sync")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
