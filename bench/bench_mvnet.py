"""MVnet speed: seconds per patient (a 2CH and a 4CH cine, full 1+2+2 pipeline with the profile's test-time crops in
the last pass, batched over frames) on 1 and 2 CPU threads.

Usage: python bench/bench_mvnet.py [run_dir]   (uses run_dir/03/models when present, else untrained models of the
default profile's size: the timing does not depend on the weights). The CPU may be shared: numbers are pessimistic.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from cmrlib.methods import mvnet as mv
from cmrlib.runner import load_profile

TARGET_S = 1.0


def _trackers(run_dir: str | None, profile: str = "default") -> dict[str, mv.predict.MVnet]:
    """Trained trackers from a run folder, else freshly initialised ones with the profile's architecture."""
    models = Path(run_dir) / "03" / "models" if run_dir else None
    p = load_profile(profile).get("03", {})
    if models is not None and all(mv.predict.model_path(models, v, s).exists()
                                  for v in mv.geometry.VIEWS for s in (1, 2)):
        return {v: mv.predict.load(models, v, tta=p.get("tta")) for v in mv.geometry.VIEWS}
    keys = ("arch", "widths", "blocks", "head", "coords", "n_refine", "window2", "tta")
    cfg = mv.learner.MVConfig(**{k: (tuple(p[k]) if isinstance(p[k], list) else p[k]) for k in keys if k in p})
    torch.manual_seed(0)
    return {v: mv.predict.MVnet(cfg.model(1), cfg.model(2), v, cfg.n_refine, tta=cfg.tta) for v in mv.geometry.VIEWS}


def _patient(n_frames: int = 40, shape=(208, 208), seed: int = 0) -> dict[str, np.ndarray]:
    """A 2CH and a 4CH cine of UK-Biobank-like size (content does not change the run time)."""
    g = np.random.default_rng(seed)
    return {v: g.gamma(2.0, 50.0, (n_frames, *shape)).astype(np.float32) for v in mv.geometry.VIEWS}


def seconds_per_patient(run_dir: str | None = None, threads: int = 2, n_frames: int = 40, repeats: int = 5) -> float:
    """Median wall time of tracking both views of one patient (stage 1, then two stage-2 passes)."""
    torch.set_num_threads(threads)
    trackers, pat = _trackers(run_dir), _patient(n_frames)

    def once():
        t0 = time.perf_counter()
        for v, px in pat.items():
            trackers[v].track(px, (1.8, 1.8))
        return time.perf_counter() - t0

    once()  # warm-up
    return float(np.median([once() for _ in range(repeats)]))


def rows(run_dir: str | None = None) -> list[dict]:
    """One row per thread count (on a shared 2-core CPU, 2 threads can be far slower than 1)."""
    return [dict(figure=f"MVnet s per patient (2CH+4CH, 40 frames, 1+2+2 with test-time crops, {n} thread{'s' * (n > 1)})",
                 value=round(seconds_per_patient(run_dir, threads=n), 3), target=f"<= {TARGET_S}") for n in (1, 2)]


if __name__ == "__main__":
    for r in rows(sys.argv[1] if len(sys.argv) > 1 else None):
        print(f"{r['figure']} | {r['value']} | {r['target']}")
