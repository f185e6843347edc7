"""The Dockerfile's runtime stage, carried out on a real minimal Debian 12 root filesystem
(CTest: docker_runtime_stage).

No Docker engine runs here, so this does what `docker build` would do for the runtime stage,
without one: mmdebstrap makes a minbase bookworm root filesystem (what debian:bookworm-slim is
built from) from Debian's archive; every RUN of the runtime stage runs in it verbatim
(chroot, /bin/sh -c, as root, as Docker runs them); the built binary is copied in, stripped as
the build stage strips it (hourglassctl too, which must run there); and the image's ENTRYPOINT then runs as the pod runs it: as the
image's USER with no capabilities and no_new_privs, the root read-only, a tmpfs on the VOLUME,
the ConfigMap's flag file at its mount point. The server must start, serve /metrics and exit 0
on SIGTERM. This proves that the runtime packages install and suffice without any -dev
package, and that the user and data directory the RUNs make work.

Needs root (mount namespaces, chroot) and Debian's archive (about 60 s for mmdebstrap).
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.request

import pytest

import dockerfile as df
from test_kubernetes_flags import FLAGFILE, STARTUP_TIMEOUT_S, Server

FLAGFILE_IN_POD = "/etc/hourglass/hourglass.flags"


@pytest.fixture(scope="module")
def rootfs():
    if os.geteuid() != 0:
        pytest.skip("needs root for mmdebstrap --mode=root and chroot (CI runs as root)")
    assert shutil.which("mmdebstrap"), "mmdebstrap missing: run tools/install_deps.sh"
    directory = tempfile.mkdtemp(prefix="hourglass-rootfs-")
    try:
        result = subprocess.run(
            ["mmdebstrap", "--variant=minbase", "--mode=root", "--quiet", "bookworm", directory],
            capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def in_chroot(root, command, timeout=600):
    """Runs `command` with /bin/sh -c in `root`, with /proc, /dev and DNS as Docker gives a RUN."""
    shutil.copy2("/etc/resolv.conf", os.path.join(root, "etc", "resolv.conf"))
    script = (
        "set -e\n"
        "mount --make-rprivate /\n"
        f"mount -t proc proc {root}/proc\n"
        f"mount --rbind /dev {root}/dev\n"
        f'exec chroot {root} /bin/sh -c "$1"\n'
    )
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", command],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def test_runtime_stage_builds_and_runs_the_server(rootfs):
    dockerfile = df.Dockerfile()
    runtime = dockerfile.stage("runtime")
    assert runtime.base == "debian:bookworm-slim"

    # RUN, in order, exactly as written.
    for run in runtime.all("RUN"):
        result = in_chroot(rootfs, run.arguments)
        assert result.returncode == 0, f"{run}\n{result.stdout}{result.stderr}"

    # COPY --from=build: the binaries as the build stage leaves them (debug info stripped).
    entrypoint = runtime.last("ENTRYPOINT").json_array()
    build_run = next(r.arguments for r in dockerfile.stage("build").all("RUN") if "strip" in r.arguments)
    binaries = df.built_binaries()
    copies = df.copied_from_build(runtime)
    assert entrypoint[0] in [destination for _, destination in copies]
    for source, destination in copies:
        assert f"strip --strip-debug -o {source} " in build_run, source
        target = os.path.join(rootfs, destination.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        subprocess.run(["strip", "--strip-debug", "-o", target, binaries[source]], check=True)
        # Every library resolves in the image, from its runtime packages alone.
        ldd = in_chroot(rootfs, f"ldd {destination}")
        assert ldd.returncode == 0 and "not found" not in ldd.stdout, ldd.stdout + ldd.stderr
        # And the binary runs there.
        help_run = in_chroot(rootfs, f"{destination} --help")
        assert help_run.returncode == 0 and "--" in help_run.stdout, help_run.stdout + help_run.stderr
    assert in_chroot(rootfs, "dpkg -l | grep -- '-dev '").stdout == "", "a -dev package got in"
    os.makedirs(os.path.join(rootfs, os.path.dirname(FLAGFILE_IN_POD).lstrip("/")), exist_ok=True)
    shutil.copy2(FLAGFILE, os.path.join(rootfs, FLAGFILE_IN_POD.lstrip("/")))

    # The CA bundle for https:// and TLS gRPC push targets (libcurl's and OpenSSL's default).
    assert os.path.getsize(os.path.join(rootfs, "etc/ssl/certs/ca-certificates.crt")) > 0

    # The USER exists, and owns the VOLUME.
    uid, _, gid = runtime.last("USER").arguments.partition(":")
    gid = gid or uid
    volume = runtime.last("VOLUME").json_array()[0]
    stat = os.stat(os.path.join(rootfs, volume.lstrip("/")))
    assert (stat.st_uid, stat.st_gid) == (int(uid), int(gid))

    # The ENTRYPOINT as the pod runs it (the StatefulSet's args follow it).
    confinement = [
        "unshare", "--mount", "sh", "-c",
        "set -e\n"
        "mount --make-rprivate /\n"
        f"mount --bind {rootfs} {rootfs}\n"
        f"mount -t proc proc {rootfs}/proc\n"
        f"mount -o remount,bind,ro {rootfs}\n"
        f"mount -t tmpfs -o size=64m,mode=0770,uid={uid},gid={gid} data {rootfs}{volume}\n"
        f"exec chroot {rootfs} setpriv --reuid={uid} --regid={gid} --clear-groups "
        '--inh-caps=-all --bounding-set=-all --no-new-privs "$@"\n',
        "sh",
    ]
    server = Server(
        [
            *entrypoint[1:],
            f"--flagfile={FLAGFILE_IN_POD}",
            f"--data_dir={volume}",
            "--grpc_address=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0",
        ],
        wrapper=confinement,
        binary=entrypoint[0],
    )
    try:
        started = server.wait_event("server_started", STARTUP_TIMEOUT_S)
        assert started["data_dir"] == volume
        with urllib.request.urlopen(f"http://{started['metrics_address']}/metrics", timeout=10) as r:
            assert re.search(r"^hourglass_build_info\{", r.read().decode(), re.M)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        assert not [e for e in server.events if e.get("level") == "error"], server.lines
    finally:
        server.stop()
