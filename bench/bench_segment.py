"""Segmentation speed: one 50-frame 4CH cine and one 10-slice x 50-frame SAX stack with the default-profile model.

Run: `.venv/bin/python bench/bench_segment.py [--threads 2] [--model runs/default/01/models/seg_sax.pkl]`.
Each case runs in a fresh process (spawn) so its peak resident memory is its own; weights do not change the
speed, so an untrained model of the default profile's width and grid is used unless --model is given.
Timings on a shared CPU are pessimistic.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import yaml

PROFILE = Path(__file__).resolve().parents[1] / "cmrlib" / "profiles" / "default.yaml"
CASES = {"4CH": dict(shape=(50, 208, 208), spacing=(1.8, 1.8), target=0.5),
         "SAX": dict(shape=(50, 10, 208, 208), spacing=(10.0, 1.8, 1.8), target=5.0)}


def default_params() -> dict:
    """The notebook-01 model/grid parameters of the default profile (notebook defaults where absent)."""
    sec = (yaml.safe_load(PROFILE.read_text()) or {}).get("01") or {}
    return dict(width=sec.get("width", 0.25), size=sec.get("size", 128), spacing_mm=sec.get("spacing_mm", 1.8))


def _case(view: str, threads: int, model_path: str | None, repeats: int, q) -> None:
    """Time `predict` on one synthetic cine (best of `repeats`) and report peak RSS, in a fresh process."""
    import torch

    from cmrlib.data import FrameGeometry
    from cmrlib.models import unet11
    from cmrlib.record import Cine
    from cmrlib.methods.segmentation.learner import load
    from cmrlib.methods.segmentation.predict import predict
    from cmrlib.utils import peak_rss_mib

    torch.set_num_threads(threads)
    p = default_params()
    if model_path:
        model = load(model_path)
    else:
        model = unet11(n_classes=6, width=p["width"])
        model.geometry = FrameGeometry(size=p["size"], spacing=p["spacing_mm"])
    c = CASES[view]
    g = np.random.default_rng(0)
    cine = Cine(subject="bench", view=view, pixels=g.gamma(2.0, 60.0, c["shape"]).astype(np.float32),
                spacing=c["spacing"], frame_times=np.arange(c["shape"][0]) * 20.0)
    rss0 = peak_rss_mib()
    predict(model, cine)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        predict(model, cine)
        best = min(best, time.perf_counter() - t)
    rss1 = peak_rss_mib()
    q.put(dict(seconds=best, peak_mib=rss1, extra_mib=rss1 - rss0))


def calibration_seconds(threads: int, pixels: int = 20_000_000, frames: int = 112, priors: int = 5) -> float:
    """Seconds to score one candidate log-prior in `calibrate_prior` (127 per SAX model in the default profile) on
    `pixels` calibration pixels of random class scores over `frames` time frames (the default run's 16 SAX
    validation cines give 112 frames, 20 M pixels)."""
    import torch

    from cmrlib.labels import NAMES
    from cmrlib.methods.segmentation.predict import _Frames

    torch.set_num_threads(threads)
    g = np.random.default_rng(0)
    per = pixels // frames
    probs = [g.dirichlet(np.ones(len(NAMES)), per).astype(np.float16) for _ in range(frames)]
    truths = [g.integers(0, 4, per, dtype=np.uint8) for _ in range(frames)]
    scored = _Frames(probs, truths)
    t0 = time.perf_counter()
    for k in range(priors):
        scored.mean_dice(np.full(len(NAMES), 0.1 * k, np.float32), [1, 2, 3])
    return (time.perf_counter() - t0) / priors


def rows(threads: int = 2, model: str | None = None, repeats: int = 3) -> list[dict]:
    """Benchmark rows: seconds per cine and peak memory for the 4CH and SAX cases, and one calibration step."""
    ctx = mp.get_context("spawn")
    out, p = [], default_params()
    tag = f"width {p['width']}, {p['size']}px @ {p['spacing_mm']} mm, {threads} thread(s)"
    for view, c in CASES.items():
        q = ctx.Queue()
        proc = ctx.Process(target=_case, args=(view, threads, model, repeats, q))
        proc.start()
        r = q.get()
        proc.join()
        what = "50-frame 4CH cine" if view == "4CH" else "10-slice x 50-frame SAX stack"
        out.append(dict(figure=f"segment one {what} (s; {tag})", value=round(r["seconds"], 3),
                        target=f"<= {c['target']}"))
        out.append(dict(figure=f"peak RSS segmenting the {what} (MiB; +{r['extra_mib']:.0f} MiB over the loaded model)",
                        value=round(r["peak_mib"], 1), target="report"))
    out.append(dict(figure=f"score one candidate log-prior on 20 M calibration pixels (s; {threads} thread(s))",
                    value=round(calibration_seconds(threads), 3), target="report"))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None, help="an exported segmenter (default: untrained, default-profile size)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    for r in rows(a.threads, a.model, a.repeats):
        print(f"{r['figure']} | {r['value']} | {r['target']}")
