"""The image's dependency layer works with only the files copied into it
(CTest: docker_dependency_layer).

The build stage runs tools/install_deps.sh before `COPY . .`, with only the files that the
COPY instructions before it bring in, so that the layer is rebuilt only when those change. This
runs the script the same way: in a directory holding just those files, as `bash
tools/install_deps.sh`. A script that starts reading another file (a second lock file, say)
fails here instead of in `docker build`. The repository's node_modules is linked in, so the npm
step finds its lock file installed and nothing is downloaded; every Debian package is already
installed where the tests run (install_deps.sh ran first), so apt is not called either.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile

import dockerfile as df


def dependency_layer():
    """(files copied before install_deps.sh runs, that RUN's command)."""
    copied = []
    for instruction in df.Dockerfile().stage("build").instructions:
        if instruction.keyword == "COPY":
            *sources, _destination = instruction.arguments.split()
            assert not any(s.startswith("--") for s in sources), instruction
            copied += sources
        elif instruction.keyword == "RUN" and "tools/install_deps.sh" in instruction.arguments:
            return copied, instruction.arguments
    raise AssertionError("the build stage never runs tools/install_deps.sh")


def test_install_deps_runs_with_only_the_layers_files():
    copied, command = dependency_layer()
    assert command == "bash tools/install_deps.sh", command
    node_modules = os.path.join(df.REPO_ROOT, "node_modules")
    # Only with node_modules installed from the current lock file: otherwise the script would
    # run `npm ci` through the link, under the feet of the other tests.
    with open(os.path.join(df.REPO_ROOT, "package-lock.json"), "rb") as f:
        lock_hash = hashlib.sha256(f.read()).hexdigest()
    stamp = os.path.join(node_modules, ".hourglass-package-lock.sha256")
    assert os.path.exists(stamp), "run tools/install_deps.sh first"
    with open(stamp) as f:
        assert f.read().strip() == lock_hash, "node_modules is stale: run tools/install_deps.sh"
    with tempfile.TemporaryDirectory(prefix="hourglass-docker-deps-") as layer:
        for source in copied:
            target = os.path.join(layer, source)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.join(df.REPO_ROOT, source), target)
        os.symlink(node_modules, os.path.join(layer, "node_modules"))
        result = subprocess.run(
            ["bash", "-c", command], cwd=layer, capture_output=True, text=True, timeout=600,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "node_modules matches package-lock.json" in result.stderr, result.stderr
