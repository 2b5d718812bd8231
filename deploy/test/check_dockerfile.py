#!/usr/bin/env python3
"""Checks deploy/Dockerfile against the project, without a Docker engine.

Static checks (fast, part of `make deploy-check`):
  * the builder stage runs exactly one `cargo build`, and it is exactly the Makefile's
    DOCKER_CARGO_BUILD command (so the image and `make docker-build-stage` build alike);
  * the builder image's Rust (rust:X.Y-...) is at least Cargo.toml's rust-version;
  * the build context the root .dockerignore admits (an allow list) holds every COPY
    source and every Cargo target the build needs (lib, bins, benches, examples:
    `cargo build` parses them all, so a missing bench file fails the image build);
  * the runtime stage copies every [[bin]] from /src/target/release, runs as a non-root
    numeric user, declares the data VOLUME, a HEALTHCHECK and the ENTRYPOINT.

With --build (`make docker-build-stage`): stage that context in target/docker-context
and run the builder's command there verbatim (its target dir shared with the
worktree's target/, so dependencies are reused), then run both binaries.

Exit 0 when everything holds; 1 with one line per problem otherwise.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# Overridable so the checker's own tests can feed it broken copies.
DOCKERFILE = os.environ.get("CHECK_DOCKERFILE", os.path.join(ROOT, "deploy", "Dockerfile"))
DOCKERIGNORE = os.environ.get("CHECK_DOCKERIGNORE", os.path.join(ROOT, ".dockerignore"))
MAKEFILE = os.path.join(ROOT, "Makefile")
STAGE_DIR = os.path.join(ROOT, "target", "docker-context")


def logical_lines(text):
    """Dockerfile instructions: comments dropped, backslash continuations joined."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        out.append(cur.strip())
        cur = ""
    if cur:
        out.append(cur.strip())
    return out


def stages(instructions):
    """[(from_line, [instructions])] per FROM."""
    result = []
    for ins in instructions:
        if ins.upper().startswith("FROM "):
            result.append((ins, []))
        elif result:
            result[-1][1].append(ins)
    return result


def makefile_var(name):
    with open(MAKEFILE) as f:
        for line in f:
            m = re.match(r"^%s\s*[:?]?=\s*(.*?)\s*$" % re.escape(name), line)
            if m:
                return m.group(1)
    return None


def allowed_paths():
    """The .dockerignore allow list: `*` first, then `!path` entries."""
    entries = []
    with open(DOCKERIGNORE) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append(line)
    if not entries or entries[0] != "*":
        return None, ".dockerignore must start with `*` (an allow list)"
    paths = []
    for e in entries[1:]:
        if not e.startswith("!"):
            return None, ".dockerignore: only `!path` entries may follow `*`, got %r" % e
        paths.append(e[1:].strip("/"))
    return paths, None


def main():
    build = "--build" in sys.argv[1:]
    problems = []
    with open(DOCKERFILE) as f:
        st = stages(logical_lines(f.read()))
    if len(st) != 2:
        print("check_dockerfile: FAIL: expected 2 stages (builder, runtime), found %d" % len(st))
        return 1
    (builder_from, builder), (runtime_from, runtime) = st

    # 1. The build command.
    expected = makefile_var("DOCKER_CARGO_BUILD")
    runs = [i[4:].strip() for i in builder if i.upper().startswith("RUN ")]
    cargo_runs = [r for r in runs if "cargo" in r]
    if expected is None:
        problems.append("Makefile has no DOCKER_CARGO_BUILD variable")
    elif len(cargo_runs) != 1:
        problems.append("builder stage must have exactly one RUN with cargo, has %d" % len(cargo_runs))
    elif shlex.split(cargo_runs[0]) != shlex.split(expected):
        problems.append(
            "builder runs `%s` but the Makefile's DOCKER_CARGO_BUILD is `%s`" % (cargo_runs[0], expected)
        )
    else:
        print("check_dockerfile: builder runs `%s` == Makefile DOCKER_CARGO_BUILD" % expected)

    # 2. The toolchain.
    m = re.match(r"FROM\s+rust:(\d+)\.(\d+)[-.\w]*\s+AS\s+builder$", builder_from, re.I)
    with open(os.path.join(ROOT, "Cargo.toml")) as f:
        rv = re.search(r'^rust-version\s*=\s*"(\d+)\.(\d+)', f.read(), re.M)
    if not m:
        problems.append("builder must be `FROM rust:X.Y-<debian> AS builder`, is %r" % builder_from)
    elif rv and (int(m.group(1)), int(m.group(2))) < (int(rv.group(1)), int(rv.group(2))):
        problems.append("builder Rust %s.%s is older than rust-version %s.%s" % (m.groups() + rv.groups()))
    else:
        local = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.split()
        note = ""
        if len(local) > 1 and not local[1].startswith("%s.%s." % m.groups()):
            note = " (note: local rustc is %s)" % local[1]
        print("check_dockerfile: builder Rust %s.%s >= rust-version%s" % (m.group(1), m.group(2), note))

    # 3. The build context.
    allowed, err = allowed_paths()
    if err:
        problems.append(err)
        allowed = []
    for p in allowed:
        if not os.path.exists(os.path.join(ROOT, p)):
            problems.append(".dockerignore admits %s, which does not exist" % p)

    def in_context(path):
        rel = os.path.relpath(path, ROOT)
        return any(rel == a or rel.startswith(a + "/") for a in allowed)

    for ins in builder:
        if ins.upper().startswith("COPY ") and "--from" not in ins:
            for src in shlex.split(ins)[1:-1]:
                if not in_context(os.path.join(ROOT, src)):
                    problems.append("`%s`: %s is not in the build context (.dockerignore)" % (ins, src))
                elif not os.path.exists(os.path.join(ROOT, src)):
                    problems.append("`%s`: %s does not exist" % (ins, src))
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout
    )
    pkg = meta["packages"][0]
    bins, needed = [], 0
    for t in pkg["targets"]:
        kinds = set(t["kind"])
        if kinds & {"bin"}:
            bins.append(t["name"])
        if kinds & {"lib", "rlib", "bin", "bench", "example", "custom-build"}:
            needed += 1
            if not in_context(t["src_path"]):
                problems.append(
                    "target %s (%s) is outside the build context: add it to .dockerignore and COPY it"
                    % (t["name"], os.path.relpath(t["src_path"], ROOT))
                )
    print("check_dockerfile: build context %s holds all %d lib/bin/bench targets" % (allowed, needed))

    # 4. The runtime stage.
    copied = set()
    for ins in runtime:
        if ins.upper().startswith("COPY ") and "--from=builder" in ins:
            copied.update(shlex.split(ins)[2:-1])
    for b in bins:
        if "/src/target/release/%s" % b not in copied:
            problems.append("runtime stage does not copy /src/target/release/%s" % b)
    keys = {i.split()[0].upper(): i for i in runtime}
    user = keys.get("USER", "USER root").split()[1]
    if not re.match(r"^[1-9]\d*(:\d+)?$", user):
        problems.append("runtime must run as a numeric non-root USER (Kubernetes runAsNonRoot), is %s" % user)
    for k in ("VOLUME", "HEALTHCHECK", "ENTRYPOINT", "EXPOSE"):
        if k not in keys:
            problems.append("runtime stage has no %s" % k)
    if "VOLUME" in keys and "/var/lib/commitlog" not in keys["VOLUME"]:
        problems.append("VOLUME must be /var/lib/commitlog")
    if not problems:
        print("check_dockerfile: runtime copies %s, runs as %s, VOLUME/HEALTHCHECK/ENTRYPOINT present" % (bins, user))

    if problems:
        for p in problems:
            print("check_dockerfile: FAIL: " + p)
        return 1
    if build:
        return reproduce(expected, allowed, bins)
    return 0


def reproduce(command, allowed, bins):
    """Run the builder stage's command in a copy of exactly the build context."""
    shutil.rmtree(STAGE_DIR, ignore_errors=True)
    os.makedirs(STAGE_DIR)
    for p in allowed:
        src = os.path.join(ROOT, p)
        dst = os.path.join(STAGE_DIR, p)
        if os.path.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target"))
    print("check_dockerfile: in %s: %s" % (os.path.relpath(STAGE_DIR, ROOT), command), flush=True)
    if subprocess.run(shlex.split(command), cwd=STAGE_DIR, env=env).returncode != 0:
        print("check_dockerfile: FAIL: the builder stage's command failed on the build context")
        return 1
    for b in bins:
        exe = os.path.join(ROOT, "target", "release", b)
        r = subprocess.run([exe, "--version"], capture_output=True, text=True)
        if r.returncode != 0:
            print("check_dockerfile: FAIL: %s --version exited %d" % (exe, r.returncode))
            return 1
        print("check_dockerfile: built %s: %s" % (b, r.stdout.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
