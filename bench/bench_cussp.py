"""CUSSP speed: seconds per 4CH cine for the whole test-time pipeline of the run's CUSSP Predictor (LAX
segmentation, valve SVM, patch, LA equalisation, the classifier row chosen on validation) on 2 CPU threads, and the
process's peak memory.

Usage: python bench/bench_cussp.py [run_dir]   (default runs/default: `predictors/cussp.predictor`, written by
notebook 04 with notebook 01's segmenter beside it; an untrained segmenter finds no valve, so without them the row
says what to run). The input is a phantom 4CH cine of the default profile (30 frames, 128 px at 1.8 mm).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from cmrlib import predictor
from cmrlib.phantom import simulate_subject
from cmrlib.utils import peak_rss_mib

TARGET_S = 1.0


def seconds_per_cine(run_dir: Path, threads: int = 2, repeats: int = 5) -> float:
    """Median wall time of one 4CH cine through the CUSSP Predictor."""
    torch.set_num_threads(threads)
    p = predictor.load(run_dir / "predictors" / predictor.file_name("cussp"))
    cine = simulate_subject(1, seed=0, config=dict(n_frames=30, matrix=128, pixel_mm=1.8), views=("4CH",))["4CH"]

    def once():
        t0 = time.perf_counter()
        p.predict(cine)
        return time.perf_counter() - t0

    once()
    return float(np.median([once() for _ in range(repeats)]))


def rows(run_dir: str | None = None) -> list[dict]:
    d = Path(run_dir or "runs/default")
    if not (d / "predictors" / predictor.file_name("cussp")).exists():
        return [dict(figure="CUSSP s per 4CH cine", value=f"not measured: no CUSSP predictor in {d} (run notebooks "
                     "01 and 04 there)", target=f"<= {TARGET_S}")]
    s = seconds_per_cine(d)
    return [dict(figure="CUSSP s per 4CH cine (the run's CUSSP Predictor: segmentation + valve + patch + classifier, "
                        "30 frames, 2 threads)", value=round(s, 3), target=f"<= {TARGET_S}"),
            dict(figure="CUSSP peak memory of the process (MiB)", value=round(peak_rss_mib(), 0), target="")]


if __name__ == "__main__":
    for r in rows(sys.argv[1] if len(sys.argv) > 1 else None):
        print(f"{r['figure']} | {r['value']} | {r['target']}")
