"""The image's build command works on the build context that .dockerignore leaves
(CTest: docker_context_configures).

No Docker engine runs here, so this does the part of `docker build` that can go wrong without
one: it copies the files Docker would send into a temporary directory and runs the build
stage's build command there exactly as the Dockerfile writes it (tools/build.sh with the same
environment), with `cmake --build` replaced by a no-op so that only the configure step runs.
CMake's configure fails on a missing CMakeLists.txt, source file or script, so a .dockerignore
(or a COPY) that drops something the build needs fails here.
"""

import os
import shutil
import stat
import subprocess
import tempfile

import dockerfile as df


def build_command():
    """The shell command of the build stage's RUN that calls tools/build.sh, up to its `&&`."""
    for run in df.Dockerfile().stage("build").all("RUN"):
        if "tools/build.sh" in run.arguments:
            command = run.arguments.split("&&")[0].strip()
            assert command.endswith("bash tools/build.sh"), command
            return command
    raise AssertionError("the build stage never runs tools/build.sh")


def test_build_command_configures_in_the_docker_context():
    cmake = shutil.which("cmake")
    assert cmake, "cmake missing: run tools/install_deps.sh"
    with tempfile.TemporaryDirectory(prefix="hourglass-docker-context-") as scratch:
        context = os.path.join(scratch, "src")  # WORKDIR /src of the build stage
        for relative in df.context_files():
            target = os.path.join(context, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.join(df.REPO_ROOT, relative), target, follow_symlinks=False)
        assert not os.path.exists(os.path.join(context, "node_modules"))
        assert not any(name.startswith("build") for name in os.listdir(context))

        # `cmake --build` becomes a no-op; every other cmake call runs for real.
        shim = os.path.join(scratch, "bin")
        os.makedirs(shim)
        with open(os.path.join(shim, "cmake"), "w") as f:
            f.write(
                "#!/bin/sh\n"
                'if [ "$1" = "--build" ]; then echo "(skipped: cmake $*)"; exit 0; fi\n'
                f'exec {cmake} "$@"\n'
            )
        os.chmod(os.path.join(shim, "cmake"), stat.S_IRWXU)
        env = dict(os.environ, PATH=shim + os.pathsep + os.environ["PATH"])
        for name in ("HOURGLASS_SKIP_DEPS", "HOURGLASS_BUILD_DIR", "HOURGLASS_CMAKE_ARGS"):
            env.pop(name, None)
        result = subprocess.run(
            ["bash", "-c", build_command()], cwd=context, env=env,
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "(skipped: cmake --build build-image)" in result.stdout

        with open(os.path.join(context, "build-image", "CMakeCache.txt")) as f:
            cache = f.read()
        assert "HOURGLASS_BUILD_TESTS:BOOL=OFF" in cache
        assert "CMAKE_BUILD_TYPE:STRING=RelWithDebInfo" in cache
        with open(os.path.join(context, "build-image", "build.ninja")) as f:
            assert "build service/hourglass:" in f.read()
