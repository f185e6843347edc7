"""The Dockerfile's properties that dockerfilelint does not judge (CTest: dockerfile_properties).

Multi-stage from Debian 12 images, the build stage running the shared scripts (the commands
that the README and CI run), a runtime stage with a numeric non-root user owning the data
volume, exec-form ENTRYPOINT, the ports, and a .dockerignore that keeps build trees out of the
context but every source in.
"""

import os
import re
import subprocess
import tempfile

import pytest

import dockerfile as df

DATA_DIR = "/var/lib/hourglass"


@pytest.fixture(scope="module")
def dockerfile():
    return df.Dockerfile()


def test_two_stages_from_debian_12(dockerfile):
    # Builds on debian:bookworm, runs on debian:bookworm-slim, nothing else.
    assert [(s.base, s.name) for s in dockerfile.stages] == [
        ("debian:bookworm", "build"),
        ("debian:bookworm-slim", "runtime"),
    ]


def test_build_stage_runs_the_shared_scripts(dockerfile):
    # The build stage installs and builds only through tools/install_deps.sh and
    # tools/build.sh, the scripts that the README and CI (.ci/run -> tools/test.sh) use.
    runs = [r.arguments for r in dockerfile.stage("build").all("RUN")]
    install = [i for i, run in enumerate(runs) if re.search(r"\bbash tools/install_deps\.sh\b", run)]
    build = [i for i, run in enumerate(runs) if re.search(r"\bbash tools/build\.sh\b", run)]
    assert install and build and install[0] < build[0], runs
    for run in runs:
        assert not re.search(r"\b(apt-get|apt|cmake|ninja|make|npm)\b", run), (
            f"the build stage must go through the shared scripts, not run this itself: {run}"
        )
    # tools/build.sh would otherwise run install_deps.sh a second time.
    assert "HOURGLASS_SKIP_DEPS=1" in runs[build[0]]
    # The tests are not built into the image.
    assert "-DHOURGLASS_BUILD_TESTS=OFF" in runs[build[0]]
    # The scripts the README and CI run are the ones called here.
    with open(os.path.join(df.REPO_ROOT, "tools", "test.sh")) as f:
        assert "bash tools/build.sh" in f.read()
    with open(os.path.join(df.REPO_ROOT, "tools", "build.sh")) as f:
        build_sh = f.read()
    assert "bash tools/install_deps.sh" in build_sh
    assert "HOURGLASS_CMAKE_ARGS" in build_sh


def test_dependency_layer_has_what_install_deps_reads(dockerfile):
    # install_deps.sh runs before the full COPY: the files it reads are copied before it.
    build = dockerfile.stage("build")
    copied = []
    for instruction in build.instructions:
        if instruction.keyword == "COPY":
            copied += instruction.arguments.split()[:-1]
        if instruction.keyword == "RUN" and "tools/install_deps.sh" in instruction.arguments:
            break
    for needed in ("tools/install_deps.sh", "package.json", "package-lock.json"):
        assert needed in copied, f"{needed} is not copied before install_deps.sh runs"


def test_runtime_user_is_numeric_and_not_root(dockerfile):
    runtime = dockerfile.stage("runtime")
    user = runtime.last("USER").arguments
    assert re.fullmatch(r"[0-9]+(:[0-9]+)?", user), f"USER {user} is not numeric"
    uid, _, gid = user.partition(":")
    assert int(uid) != 0 and (not gid or int(gid) != 0)
    # USER comes after every RUN: nothing runs as root once it is set.
    last_user = runtime.instructions.index(runtime.last("USER"))
    assert all(i.keyword != "RUN" for i in runtime.instructions[last_user:])


def test_data_directory_is_a_volume_owned_by_the_user(dockerfile):
    runtime = dockerfile.stage("runtime")
    volumes = runtime.last("VOLUME").json_array()
    assert volumes == [DATA_DIR]
    uid = runtime.last("USER").arguments.split(":")[0]
    runs = " && ".join(r.arguments for r in runtime.all("RUN"))
    assert re.search(rf"chown {uid}(:[0-9]+)? {re.escape(DATA_DIR)}\b", runs), runs
    assert re.search(rf"mkdir -p {re.escape(DATA_DIR)}\b", runs)


def test_entrypoint_is_exec_form_with_the_data_dir(dockerfile):
    runtime = dockerfile.stage("runtime")
    entrypoint = runtime.last("ENTRYPOINT").json_array()
    assert entrypoint is not None, "ENTRYPOINT must be a JSON array (exec form)"
    assert entrypoint[0] == "/usr/local/bin/hourglass"
    assert f"--data_dir={DATA_DIR}" in entrypoint[1:]
    assert runtime.last("CMD") is None or runtime.last("CMD").json_array() is not None
    # The binary comes from the build stage, to where the entrypoint runs it.
    copies = [c.arguments.split() for c in runtime.all("COPY")]
    assert any(c[0] == "--from=build" and c[-1] == entrypoint[0] for c in copies), copies


def test_ports_and_labels(dockerfile):
    runtime = dockerfile.stage("runtime")
    exposed = sorted(p for e in runtime.all("EXPOSE") for p in e.arguments.split())
    assert exposed == ["7070", "9464"]
    labels = " ".join(label.arguments for label in runtime.all("LABEL"))
    for key in ("title", "description", "version"):
        assert f"org.opencontainers.image.{key}=" in labels
    # The version label is the project's version (CMake), through ARG VERSION.
    arg = runtime.last("ARG").arguments
    assert arg == f"VERSION={df.project_version()}"
    assert 'org.opencontainers.image.version="${VERSION}"' in labels


def test_runtime_installs_runtime_packages_only(dockerfile):
    runtime = dockerfile.stage("runtime")
    packages = df.runtime_packages(runtime)
    assert packages, "the runtime stage installs no packages"
    assert not [p for p in packages if p.endswith("-dev") or p.endswith("-dbg")]
    run = next(r.arguments for r in runtime.all("RUN") if "apt-get install" in r.arguments)
    assert "--no-install-recommends" in run and "-y" in run.split()
    assert "rm -rf /var/lib/apt/lists/*" in run
    assert packages == sorted(packages), "keep the package list sorted"


def test_no_add_no_latest(dockerfile):
    for stage in dockerfile.stages:
        assert ":" in stage.base and not stage.base.endswith(":latest")
        assert not stage.all("ADD"), "use COPY"


def test_dockerignore_keeps_sources_and_drops_local_trees():
    # Every tracked file is sent (the Dockerfile and ignore files aside); build trees,
    # node_modules, data and .git are not.
    rules = df.dockerignore_rules()
    try:
        tracked = subprocess.run(
            ["git", "ls-files"], cwd=df.REPO_ROOT, check=True, capture_output=True, text=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        tracked = []
    if not tracked:
        pytest.skip("not a git checkout (or no git): no tracked files to check")
    left_out = [
        path
        for path in tracked
        if df.is_ignored(path, rules) and path not in ("Dockerfile", ".dockerignore", ".gitignore")
    ]
    assert not left_out, f".dockerignore leaves out tracked files: {left_out[:10]}"
    for local in (
        "build/CMakeCache.txt",
        "build-image/service/hourglass",
        "build-someone/x",
        "node_modules/.bin/buf",
        "examples/node/node_modules/@grpc/grpc-js/package.json",
        "data/log-000001.wal",
        ".git/HEAD",
        "tests/e2e/__pycache__/support.cpython-311.pyc",
    ):
        assert df.is_ignored(local, rules), local


def test_dockerignore_matcher():
    # The matcher follows Docker's rules: a match on a parent directory, `**`, and `!`.
    with tempfile.NamedTemporaryFile("w", suffix=".dockerignore", delete=False) as f:
        f.write("# comment\nbuild*\n**/*.pyc\ndocs\n!docs/keep.md\n/data/\n")
    try:
        rules = df.dockerignore_rules(f.name)
    finally:
        os.unlink(f.name)
    assert df.is_ignored("build-x/a/b.o", rules)
    assert df.is_ignored("a/b/c.pyc", rules)
    assert df.is_ignored("c.pyc", rules)
    assert df.is_ignored("docs/a.md", rules)
    assert not df.is_ignored("docs/keep.md", rules)
    assert df.is_ignored("data/x", rules)
    assert not df.is_ignored("tools/build.sh", rules)
    assert not df.is_ignored("src/build", rules)
