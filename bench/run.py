"""`make bench`: run every bench/bench_*.py and print one table (figure, value, target).

Each module exposes `rows() -> list[dict(figure=..., value=..., target=...)]`. Benchmarks report
speed and memory; they never fail a build. Results are also written to runs/bench.json with the
machine, versions and commit so numbers can be quoted with their provenance.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))  # spawned benchmark children import their module by name

from cmrlib.utils import atomic_write_json, git_commit, package_versions  # noqa: E402


def load(path: Path):
    """Import a benchmark file as a module under its own name, so spawned child processes can unpickle its functions."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    return mod


def collect(only: list[str] | None = None) -> list[dict]:
    """Rows from every benchmark module (an error becomes a row, not a crash)."""
    out = []
    for path in sorted(HERE.glob("bench_*.py")):
        if only and not any(o in path.stem for o in only):
            continue
        t0 = time.time()
        try:
            rows = load(path).rows()
        except Exception as e:  # a broken benchmark is reported, the others still run
            traceback.print_exc()
            rows = [dict(figure=f"{path.stem}: error", value=f"{type(e).__name__}: {e}", target="")]
        for r in rows:
            out.append({"bench": path.stem, **r})
        print(f"# {path.stem}: {len(rows)} row(s) in {time.time() - t0:.1f} s", file=sys.stderr)
    return out


def table(rows: list[dict]) -> str:
    cols = ("figure", "value", "target")
    w = [max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in cols]
    line = lambda vals: "| " + " | ".join(str(v).ljust(n) for v, n in zip(vals, w)) + " |"
    return "\n".join([line(cols), line("-" * n for n in w)] + [line(r.get(c, "") for c in cols) for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("only", nargs="*", help="substrings of benchmark names to run")
    a = ap.parse_args(argv)
    rows = collect(a.only)
    print(table(rows))
    root = HERE.parent / "runs"
    atomic_write_json(root / "bench.json", dict(rows=rows, machine=platform.platform(), cpus=os.cpu_count(),
                                                commit=git_commit(HERE.parent), versions=package_versions()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
