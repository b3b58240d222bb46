#!/usr/bin/env python3
"""Fail when a locked dependency declares a newer rust-version than Cargo.toml (python3 standard
library only; run by .ci/run).

Only one toolchain is installed where CI runs, so the declared minimum cannot be proved by
building with it. This checks the half that a newer toolchain hides: every package that
`cargo build` or `cargo test` compiles on this platform, as locked in Cargo.lock, must declare
a `rust-version` no newer than ours. The other half, the standard library APIs our own code
uses, is checked by clippy's `incompatible_msrv` lint, which `cargo clippy -- -D warnings`
already runs against the same `rust-version`.

    python3 scripts/check_msrv.py
"""

import json
import subprocess
import sys


def version(text):
    """'1.88' or '1.88.0' as a comparable tuple (missing parts are 0)."""
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def host_triple():
    out = subprocess.run(["rustc", "-vV"], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("host: "):
            return line.split(": ", 1)[1]
    sys.exit("check_msrv: no host triple in `rustc -vV`")


def main():
    metadata = json.loads(
        subprocess.run(
            [
                "cargo", "metadata", "--format-version", "1", "--locked",
                "--filter-platform", host_triple(),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in metadata["packages"]}
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
    root = metadata["resolve"]["root"]
    ours = packages[root].get("rust_version")
    if not ours:
        sys.exit("check_msrv: Cargo.toml declares no rust-version")

    # Everything `cargo test` compiles: the root's normal, build and dev dependencies, then
    # their normal and build dependencies (a dependency's dev-dependencies are never built).
    reached, todo = set(), [root]
    while todo:
        node = todo.pop()
        if node in reached:
            continue
        reached.add(node)
        for dep in nodes[node]["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if node == root or kinds & {None, "build"}:
                todo.append(dep["pkg"])

    newer = sorted(
        (version(p["rust_version"]), p["name"], p["version"], p["rust_version"])
        for p in (packages[i] for i in reached if i != root)
        if p.get("rust_version") and version(p["rust_version"]) > version(ours)
    )
    if newer:
        print(f"check_msrv: Cargo.toml says rust-version = {ours}, but locked dependencies need more:")
        for _, name, ver, needs in newer:
            print(f"  {name} {ver} needs {needs}")
        print("Raise rust-version (and README's minimum) or pin older versions in Cargo.lock.")
        sys.exit(1)
    declared = max(
        (version(packages[i]["rust_version"]), packages[i]["rust_version"])
        for i in reached
        if i != root and packages[i].get("rust_version")
    )
    print(f"check_msrv: rust-version {ours}; {len(reached) - 1} dependencies need at most {declared[1]}")


if __name__ == "__main__":
    main()
