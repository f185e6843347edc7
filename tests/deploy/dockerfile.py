"""Reads the repository's Dockerfile and .dockerignore for the deploy tests (no Docker needed).

`Dockerfile()` parses the instructions into stages; `context_files()` lists the files that
`docker build .` would send, applying .dockerignore the way Docker does (Go filepath.Match
patterns, `**` for any number of directories, `!` to re-include, the last match deciding).
"""

import json
import os
import re

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class Instruction:
    def __init__(self, keyword, arguments, line):
        self.keyword = keyword  # upper case: FROM, RUN, COPY, ...
        self.arguments = arguments  # the rest of the instruction, continuation lines joined
        self.line = line  # 1-based line of the instruction in the Dockerfile

    def json_array(self):
        """The exec (JSON array) form of the arguments, or None for the shell form."""
        try:
            value = json.loads(self.arguments)
        except ValueError:
            return None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        return None

    def __repr__(self):
        return f"line {self.line}: {self.keyword} {self.arguments}"


class Stage:
    def __init__(self, base, name):
        self.base = base
        self.name = name
        self.instructions = []

    def all(self, keyword):
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword):
        found = self.all(keyword)
        return found[-1] if found else None


class Dockerfile:
    def __init__(self, path=os.path.join(REPO_ROOT, "Dockerfile")):
        with open(path, encoding="utf-8") as f:
            self.text = f.read()
        self.stages = []
        for instruction in self._instructions():
            if instruction.keyword == "FROM":
                match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", instruction.arguments, re.I)
                if not match:
                    raise ValueError(f"cannot parse {instruction}")
                self.stages.append(Stage(match.group(1), match.group(2)))
            elif not self.stages:
                if instruction.keyword != "ARG":
                    raise ValueError(f"{instruction} before the first FROM")
            else:
                self.stages[-1].instructions.append(instruction)

    def _instructions(self):
        pending, start = [], None
        for number, raw in enumerate(self.text.splitlines(), start=1):
            stripped = raw.strip()
            if not pending and (not stripped or stripped.startswith("#")):
                continue
            if pending and stripped.startswith("#"):
                continue  # a comment inside a continued instruction
            if not pending:
                start = number
            if stripped.endswith("\\"):
                pending.append(stripped[:-1].strip())
                continue
            pending.append(stripped)
            text = " ".join(part for part in pending if part)
            pending = []
            keyword, _, arguments = text.partition(" ")
            yield Instruction(keyword.upper(), arguments.strip(), start)
        if pending:
            raise ValueError("the Dockerfile ends inside a continued instruction")

    def stage(self, name):
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)


def _pattern_regex(pattern):
    """A regex for one .dockerignore pattern (Go filepath.Match plus `**`)."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            if body.startswith("^"):
                body = "^" + body[1:]
            out += f"[{body}]"
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)


def dockerignore_rules(path=os.path.join(REPO_ROOT, ".dockerignore")):
    """[(regex, excluded)] in file order; `excluded` is False for `!` patterns."""
    rules = []
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            excluded = not line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            rules.append((_pattern_regex(pattern), excluded))
    return rules


def is_ignored(relative_path, rules):
    """Whether `relative_path` (a/b/c) is left out of the context. A path is also left out
    when one of its parent directories matches a pattern, as in Docker."""
    parts = relative_path.split("/")
    ignored = False
    for regex, excluded in rules:
        for depth in range(1, len(parts) + 1):
            if regex.fullmatch("/".join(parts[:depth])):
                ignored = excluded
                break
    return ignored


def context_files(root=REPO_ROOT, rules=None):
    """Relative paths of the files `docker build` would send from `root`."""
    rules = dockerignore_rules() if rules is None else rules
    # Patterns with `!` may re-include something below an ignored directory, so prune only
    # when there are none.
    can_prune = all(excluded for _, excluded in rules)
    files = []
    for directory, subdirectories, names in os.walk(root):
        relative_dir = os.path.relpath(directory, root)
        relative_dir = "" if relative_dir == "." else relative_dir + "/"
        if can_prune:
            subdirectories[:] = [
                d for d in subdirectories if not is_ignored(relative_dir + d, rules)
            ]
        for name in names:
            relative = relative_dir + name
            if not is_ignored(relative, rules):
                files.append(relative)
    return sorted(files)


def project_version():
    with open(os.path.join(REPO_ROOT, "CMakeLists.txt"), encoding="utf-8") as f:
        match = re.search(r"project\(hourglass\s+VERSION\s+([0-9.]+)", f.read())
    if not match:
        raise ValueError("no project(hourglass VERSION ...) in CMakeLists.txt")
    return match.group(1)


def runtime_packages(stage):
    """The packages that `apt-get install` installs in `stage`'s RUN instructions."""
    packages = []
    for run in stage.all("RUN"):
        for command in re.split(r"&&|;", run.arguments):
            words = command.split()
            if "apt-get" not in words or "install" not in words:
                continue
            after_install = words[words.index("install") + 1 :]
            packages += [w for w in after_install if not w.startswith("-")]
    return packages


def built_binaries():
    """{path in the build stage: the binary this build made} for the runtime stage's
    `COPY --from=build` sources: HOURGLASS_BINARY (the server) and HOURGLASS_CTL_BINARY
    (hourglassctl), as CTest sets them."""
    build_dir = os.path.join(REPO_ROOT, "build")
    return {
        "/hourglass": os.environ.get("HOURGLASS_BINARY")
        or os.path.join(build_dir, "service", "hourglass"),
        "/hourglassctl": os.environ.get("HOURGLASS_CTL_BINARY")
        or os.path.join(build_dir, "tools", "hourglassctl", "hourglassctl"),
    }


def copied_from_build(stage):
    """[(source, destination)] of the `COPY --from=build` instructions of `stage`."""
    copies = []
    for instruction in stage.all("COPY"):
        words = instruction.arguments.split()
        if words and words[0] == "--from=build":
            assert len(words) == 3, f"one source per COPY --from=build, please: {instruction}"
            copies.append((words[1], words[2]))
    return copies
