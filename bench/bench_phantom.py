"""Phantom speed and memory: seconds per UK-Biobank-like subject on one core; peak memory writing a cohort.

    .venv/bin/python bench/bench_phantom.py            # 20-subject cohort for the memory row
    PHANTOM_BENCH_N=200 .venv/bin/python bench/bench_phantom.py

Peak memory is the peak resident set size (`cmrlib.utils.peak_rss_mib`, Linux VmHWM) of a fresh child process
that imports cmrlib and writes the cohort with workers=1; the baseline row is the same child importing only.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHILD = """
import sys, time, cv2
cv2.setNumThreads(1)
from cmrlib.phantom import make_cohort
from cmrlib.utils import peak_rss_mib
n = int(sys.argv[1]); t = time.time()
if n:
    make_cohort(sys.argv[2], n=n, seed=0, workers=1, progress=False)
print(peak_rss_mib(), time.time() - t)
"""


def time_subject(repeats: int = 3) -> float:
    """Median seconds for simulate_subject (SAX + 2CH + 4CH, 50 frames, 208x208 at 1.8 mm, labels)."""
    import cv2

    cv2.setNumThreads(1)
    from cmrlib.phantom import simulate_subject

    simulate_subject(0, 0)  # JIT / cache warm-up
    ts = []
    for i in range(repeats):
        t = time.perf_counter()
        simulate_subject(i + 1, 0)
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def cohort_memory(n: int) -> tuple[float, float, float, float]:
    """(peak MiB, baseline MiB, seconds, MiB on disk) for writing an n-subject default cohort in a child process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    run = lambda *a: subprocess.run([sys.executable, "-c", CHILD, *a], capture_output=True, text=True, env=env,
                                    cwd=ROOT, check=True).stdout.split()
    base = float(run("0", "-")[0])
    with tempfile.TemporaryDirectory() as d:
        peak, secs = map(float, run(str(n), d))
        disk = sum(p.stat().st_size for p in Path(d).rglob("*") if p.is_file()) / 2**20
    return peak, base, secs, disk


def rows() -> list[dict]:
    n = int(os.environ.get("PHANTOM_BENCH_N", "20"))
    s = time_subject()
    peak, base, secs, disk = cohort_memory(n)
    return [
        dict(figure="phantom: s per UKBB-like subject (SAX+2CH+4CH, 50 fr, labels, 1 core)", value=f"{s:.2f}", target="<= 1.5"),
        dict(figure=f"phantom: peak RSS writing {n} subjects (workers=1)", value=f"{peak:.0f} MiB", target="flat in n"),
        dict(figure="phantom: RSS after imports only", value=f"{base:.0f} MiB", target=""),
        dict(figure=f"phantom: s per subject in make_cohort (n={n})", value=f"{secs / n:.2f}", target=""),
        dict(figure="phantom: disk per subject (3 views)", value=f"{disk / n:.1f} MiB", target="200 subj < 6 GB"),
    ]


if __name__ == "__main__":
    for r in rows():
        print(f"{r['figure']} | {r['value']} | {r['target']}")
