"""ED/ES detection speed: sequences per second for a 50-frame long-axis cine with the default-profile TempReg-Net.

Run: `.venv/bin/python bench/bench_edes.py [--threads 1 2] [--model runs/default/02/models/tempreg-net.pkl]`.
Weights do not change the speed, so an untrained model of the default profile's size is used unless --model is
given. End to end = `cmrlib.methods.edes.predict` from the cine record (slice, normalise, resample, network, decode);
network only = the forward pass on prepared frames. Timings on a shared CPU are pessimistic.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml
from timing import median_seconds

PROFILE = Path(__file__).resolve().parents[1] / "cmrlib" / "profiles" / "default.yaml"
KEYS = ("widths", "blocks", "hidden", "bidirectional", "cyclic", "motion")


def default_params() -> dict:
    """Notebook 02's model and frame parameters in the default profile (the notebook's defaults where absent)."""
    sec = (yaml.safe_load(PROFILE.read_text()) or {}).get("02") or {}
    return dict(size=sec.get("size", 64), zoom=sec.get("zoom", 1.6),
                model={k: sec[k] for k in KEYS if k in sec})


def _rate(fn, repeats: int) -> float:
    """Calls per second of fn (after one warm-up), median of `repeats` timed calls."""
    return 1.0 / median_seconds(fn, repeats)


def rows(threads: int | tuple[int, ...] = (1, 2), model: str | None = None, repeats: int = 10) -> list[dict]:
    """Benchmark rows per thread count: sequences per second, end to end and network only, for a 50-frame
    208 x 180 4CH cine (one and two threads by default: on a busy 2-core machine one is often faster)."""
    import torch

    from cmrlib.methods.edes.data import seq_frames
    from cmrlib.methods.edes.predict import predict, predict_curve
    from cmrlib.models.tempreg import tempreg_net
    from cmrlib.record import Cine

    p = default_params()
    if model:
        from fastai.learner import load_learner
        net = load_learner(model).model
    else:
        net = tempreg_net("tempreg", **p["model"])
    net.eval()
    g = np.random.default_rng(0)
    cine = Cine(subject="bench", view="4CH", pixels=g.gamma(2.0, 60.0, (50, 208, 180)).astype(np.float32),
                spacing=(1.8, 1.8), frame_times=np.arange(50) * 20.0)
    frames = seq_frames(cine, p["size"], zoom=p["zoom"])
    out = []
    for n in (threads,) if isinstance(threads, int) else threads:
        torch.set_num_threads(n)
        tag = f"{p['size']} px, {n} thread(s)"
        e2e = _rate(lambda: predict(net, cine, p["size"], zoom=p["zoom"]), repeats)
        net_only = _rate(lambda: predict_curve(net, frames), repeats)
        out += [dict(figure=f"TempReg-Net ED/ES, 50-frame 4CH cine, end to end (sequences/s; {tag})",
                     value=round(e2e, 1), target=">= 20"),
                dict(figure=f"TempReg-Net ED/ES, 50-frame 4CH cine, network only (sequences/s; {tag})",
                     value=round(net_only, 1), target="report")]
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--model", default=None, help="an exported ED/ES learner (default: untrained, default size)")
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args()
    for r in rows(tuple(a.threads), a.model, a.repeats):
        print(f"{r['figure']} | {r['value']} | {r['target']}")
