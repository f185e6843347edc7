"""The runtime image installs exactly the Debian packages that hold the shared libraries the
built binary loads (CTest: dockerfile_runtime_libraries).

`ldd` lists every library the dynamic loader loads for the binary (its dependencies'
dependencies too); `dpkg -S` names the package each comes from. Every such package must be in
the runtime stage's `apt-get install`, so the image cannot miss one, and nothing else may be,
so it stays minimal. When the server starts linking a new library (libcurl for HTTP push, say),
this test names the package to add.
"""

import os
import re
import subprocess

import dockerfile as df

BINARY = df.built_binaries()["/hourglass"]

# Runtime packages that hold no library the binaries load, each with the reason for it.
NON_LIBRARY_PACKAGES = {
    # The system CAs: push delivery verifies https:// and TLS gRPC endpoints against them.
    "ca-certificates",
}


def loaded_libraries(binary):
    """{soname: resolved path} of everything `ldd` says the loader loads."""
    output = subprocess.run(
        ["ldd", binary], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    libraries = {}
    for line in output.splitlines():
        line = line.strip()
        if "not found" in line:
            raise AssertionError(f"ldd cannot resolve a library of {binary}: {line}")
        match = re.match(r"(\S+) => (/\S+) \(0x[0-9a-f]+\)$", line)
        if match:
            libraries[match.group(1)] = match.group(2)
            continue
        match = re.match(r"(/\S+) \(0x[0-9a-f]+\)$", line)  # the loader itself
        if match:
            libraries[os.path.basename(match.group(1))] = match.group(1)
            continue
        assert re.match(r"linux-vdso\.so\.1 \(0x[0-9a-f]+\)$", line), f"unexpected ldd line {line}"
    return libraries


def _path_spellings(path):
    """`path` and its /usr-merged spellings (dpkg knows a file under the name its package used)."""
    spellings = [path]
    real = os.path.realpath(path)
    for candidate in (real, re.sub(r"^/usr/lib/", "/lib/", real), re.sub(r"^/lib/", "/usr/lib/", path)):
        if candidate not in spellings:
            spellings.append(candidate)
    return spellings


def owning_packages(paths):
    """{path: the Debian package that ships it}, from one `dpkg -S` over every spelling."""
    spellings = {path: _path_spellings(path) for path in paths}
    queried = sorted({s for all_spellings in spellings.values() for s in all_spellings})
    # Exit status 1 only says that some spelling is unknown; the others are printed.
    output = subprocess.run(["dpkg", "-S", *queried], capture_output=True, text=True).stdout
    shipped_by = {}
    for line in output.splitlines():
        # "libgrpc29:amd64: /usr/lib/x86_64-linux-gnu/libgrpc.so.29"
        packages, _, file = line.partition(": ")
        shipped_by[file.strip()] = packages.split(",")[0].split(":")[0].strip()
    owners = {}
    for path, all_spellings in spellings.items():
        found = [shipped_by[s] for s in all_spellings if s in shipped_by]
        assert found, f"no Debian package ships {path} (tried {all_spellings})"
        owners[path] = found[0]
    return owners


def test_runtime_stage_installs_exactly_the_packages_of_the_linked_libraries():
    # Every binary the runtime stage copies from the build stage (the server, hourglassctl).
    binaries = df.built_binaries()
    needed = {}
    for source, _ in df.copied_from_build(df.Dockerfile().stage("runtime")):
        assert source in binaries, f"the test does not know which built file {source} is"
        binary = binaries[source]
        assert os.path.exists(binary), f"build it first: {binary}"
        libraries = loaded_libraries(binary)
        owners = owning_packages(libraries.values())
        for soname, path in libraries.items():
            needed.setdefault(owners[path], set()).add(soname)
    listed = set(df.runtime_packages(df.Dockerfile().stage("runtime")))
    missing = {package: libs for package, libs in needed.items() if package not in listed}
    assert not missing, f"the runtime stage lacks the packages of these libraries: {missing}"
    extra = listed - set(needed) - NON_LIBRARY_PACKAGES
    assert not extra, f"the runtime stage installs packages the binaries do not load: {extra}"
    assert NON_LIBRARY_PACKAGES <= listed, NON_LIBRARY_PACKAGES - listed
    assert not [p for p in needed if p.endswith("-dev")], needed


def test_the_check_knows_the_loader_and_libc():
    # A sanity check of the parsing above: the C library is among the loaded ones.
    libraries = loaded_libraries(BINARY)
    assert "libc.so.6" in libraries
    path = libraries["libc.so.6"]
    assert owning_packages([path]) == {path: "libc6"}
    assert owning_packages([libraries["libprotobuf.so.32"]]) == {
        libraries["libprotobuf.so.32"]: "libprotobuf32"
    }
