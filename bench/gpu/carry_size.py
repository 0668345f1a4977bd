"""What a device `run` call sends, in bytes, against its 64 MiB limit: the working tree plus the carried paths.

Usage:
    python bench/gpu/carry_size.py .gpu            # from the repository root; exits 1 when over the limit
    python bench/gpu/carry_size.py --json .gpu     # the same as JSON

The working tree that travels is every tracked file and every untracked file git does not ignore (`git ls-files
--cached --others --exclude-standard`), plus a `shared/` folder inside the checkout if there is one; each carried
path (an ignored folder named in the call's `carry`) travels whole. Sizes are apparent sizes (`lstat`), a symbolic
link counting as the link itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

LIMIT_BYTES = 64 * 2**20


def tree_files(root: str) -> list[str]:
    """Paths (relative to `root`) of the files that travel without being carried."""
    out = subprocess.run(
        ["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout
    files = {p for p in out.decode().split("\0") if p}
    files |= set(walk(root, "shared"))
    return sorted(p for p in files if os.path.lexists(os.path.join(root, p)))  # a deleted tracked file does not travel


def walk(root: str, path: str) -> list[str]:
    """Every file under `path` (relative to `root`), or `path` itself when it is a file or a link."""
    full = os.path.join(root, path)
    if not os.path.lexists(full):
        return []
    if os.path.islink(full) or not os.path.isdir(full):
        return [path]
    found = []
    for dirpath, _, filenames in os.walk(full):
        found += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames]
    return found


def size_of(root: str, paths) -> int:
    return sum(os.lstat(os.path.join(root, p)).st_size for p in paths)


def carried_size(root: str, carry: list[str]) -> dict:
    """Bytes of the working tree, of each carried path, their total and the limit."""
    tree = tree_files(root)
    seen = set(tree)
    parts = {"working tree": {"files": len(tree), "bytes": size_of(root, tree)}}
    for path in carry:
        files = [f for f in walk(root, path) if f not in seen]  # a tracked file under a carried folder counts once
        seen.update(files)
        parts[path] = {
            "files": len(files),
            "bytes": size_of(root, files),
            "missing": not os.path.lexists(os.path.join(root, path)),
        }
    total = sum(p["bytes"] for p in parts.values())
    return {"parts": parts, "total_bytes": total, "limit_bytes": LIMIT_BYTES, "fits": total <= LIMIT_BYTES}


def mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("carry", nargs="*", help="carried paths, relative to the repository root")
    parser.add_argument("--root", default=".", help="repository root")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = carried_size(args.root, args.carry)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, part in report["parts"].items():
            note = " (missing)" if part.get("missing") else ""
            print(f"{name:<24} {part['files']:>6} files {mib(part['bytes']):>12}{note}")
        verdict = "fits" if report["fits"] else "DOES NOT FIT"
        print(
            f"carried size: {mib(report['total_bytes'])} of {mib(LIMIT_BYTES)} "
            f"({report['total_bytes']} bytes): {verdict}, {mib(LIMIT_BYTES - report['total_bytes'])} to spare"
        )
    return 0 if report["fits"] else 1


if __name__ == "__main__":
    sys.exit(main())
