"""The server runs under the pod's security context (CTest: kubernetes_pod_security).

statefulset.yaml promises that hourglass needs nothing the pod does not give it: a numeric
non-root user, no capabilities, no privilege escalation (no_new_privs), a read-only root
filesystem, and one writable volume for its data. This starts the real binary that way, with
the flag file of the ConfigMap, on this machine: in a private mount namespace whose root is
remounted read-only, a tmpfs owned by the pod's user as the data directory, and setpriv
dropping to that user with every capability gone. The server must start, write its log, serve
/metrics, and exit 0 on SIGTERM with no error logged.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import pytest

from test_kubernetes_flags import FLAGFILE, STATEFULSET, STARTUP_TIMEOUT_S, Server


def pod_user():
    """runAsUser and fsGroup of the pod's securityContext in statefulset.yaml."""
    with open(STATEFULSET, encoding="utf-8") as f:
        text = f.read()
    users = set(re.findall(r"^\s*runAsUser: (\d+)\s*$", text, re.M))
    groups = set(re.findall(r"^\s*fsGroup: (\d+)\s*$", text, re.M))
    assert len(users) == 1 and len(groups) == 1, (users, groups)
    return int(users.pop()), int(groups.pop())


def confinement(uid, gid, data_dir):
    """A command that runs its arguments as the pod would: a private mount namespace with the
    root read-only and a tmpfs owned by uid:gid on `data_dir`, then uid:gid with no
    capabilities and no_new_privs (exec all the way, so the server keeps the wrapper's pid)."""
    script = (
        "set -e\n"
        "mount --make-rprivate /\n"
        "mount -o remount,bind,ro /\n"
        f"mount -t tmpfs -o size=64m,mode=0770,uid={uid},gid={gid} hourglass-data {data_dir}\n"
        f"exec setpriv --reuid={uid} --regid={gid} --clear-groups --inh-caps=-all "
        '--bounding-set=-all --no-new-privs "$@"\n'
    )
    return ["unshare", "--mount", "sh", "-c", script, "sh"]


@pytest.fixture
def data_dir():
    # Only a mount point: the data itself lives on the tmpfs mounted over it, in the namespace.
    with tempfile.TemporaryDirectory(prefix="hourglass-pod-") as directory:
        yield directory


def test_server_runs_as_the_pod_does(data_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a mount namespace (CI runs as root)")
    for tool in ("unshare", "setpriv", "mount"):
        assert shutil.which(tool), f"{tool} missing (util-linux, mount)"
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount --make-rprivate / && mount -o remount,bind,ro /"],
        capture_output=True, text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"no mount namespaces here: {probe.stderr.strip()}")

    uid, gid = pod_user()
    server = Server(
        [
            f"--flagfile={FLAGFILE}",
            f"--data_dir={data_dir}",
            "--grpc_address=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0",
        ],
        wrapper=confinement(uid, gid, data_dir),
    )
    try:
        started = server.wait_event("server_started", STARTUP_TIMEOUT_S)
        with urllib.request.urlopen(f"http://{started['metrics_address']}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert re.search(r"^hourglass_build_info\{", metrics, re.M), "no metrics"
        # Its lock and log are on the data volume, as seen from inside its mount namespace.
        files = os.listdir(f"/proc/{server.process.pid}/root{data_dir}")
        assert "LOCK" in files and any(f.endswith(".wal") for f in files), files
        assert os.listdir(data_dir) == [], "the tmpfs leaked out of the mount namespace"
        with open(f"/proc/{server.process.pid}/status") as f:
            status = f.read()
        assert re.search(rf"^Uid:\s+{uid}\s+{uid}\s+{uid}\s+{uid}$", status, re.M), status
        assert re.search(r"^CapEff:\s+0+$", status, re.M)
        assert re.search(r"^CapBnd:\s+0+$", status, re.M)
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        time.sleep(0.1)
        errors = [e for e in server.events if e.get("level") in ("error", "fatal")]
        assert not errors, errors
    finally:
        server.stop()
