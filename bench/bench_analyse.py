"""`cmrlib analyse` speed: seconds per method and for the whole report on one patient with SAX + 2CH + 4CH cines,
with the run's Predictors on 2 CPU threads (target: the whole report in <= 15 s).

Usage: python bench/bench_analyse.py [run_dir]   (default runs/default; without its predictors/ the row says what to
run). The patient is a phantom subject of the default profile's size; the report goes to a temporary folder.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from cmrlib.analyse import run_all, write_report
from cmrlib.phantom import simulate_subject
from cmrlib.predictor import run_predictors

TARGET_S = 15.0


def timings(run_dir: Path, threads: int = 2) -> dict[str, float]:
    """Seconds per method and for the whole report, on a patient after another one (the first loads code and warms
    caches; a second patient, because the segmentation Predictor keeps the labels of the cines it has read)."""
    torch.set_num_threads(threads)
    predictors, missing, _ = run_predictors(run_dir)
    warm = list(simulate_subject(2, seed=1, views=("SAX", "2CH", "4CH")).values())
    cines = list(simulate_subject(1, seed=0, views=("SAX", "2CH", "4CH")).values())
    run_all(predictors, warm, log=lambda *_: None)
    t0 = time.perf_counter()
    results = run_all(predictors, cines, log=lambda *_: None)
    with tempfile.TemporaryDirectory() as tmp:
        write_report(results, cines, [], missing, Path(tmp))
    out = {r["method"]: r["seconds"] for r in results}
    out["whole report"] = time.perf_counter() - t0
    return out


def rows(run_dir: str | None = None) -> list[dict]:
    d = Path(run_dir or "runs/default")
    if not (d / "predictors").is_dir():
        return [dict(figure="cmrlib analyse s per patient", value=f"not measured: no predictors/ in {d} (run the "
                     "notebooks 01-06 there)", target=f"<= {TARGET_S}")]
    t = timings(d)
    return [dict(figure=f"cmrlib analyse: {k} s (SAX + 2CH + 4CH phantom patient, 2 threads)", value=round(v, 2),
                 target=f"<= {TARGET_S}" if k == "whole report" else "") for k, v in t.items()]


if __name__ == "__main__":
    for r in rows(sys.argv[1] if len(sys.argv) > 1 else None):
        print(f"{r['figure']} | {r['value']} | {r['target']}")
