"""HeartMAE speed and memory: frozen-feature extraction in cines per second (K x T = 6 views per cine, 2 CPU
threads, the default model; the paper: 8 cines/s on an A100), pretraining seconds per 100 clips at the default
size, and the peak memory of one pretraining step (forward, backward, AdamW) at the default and the paper's ViT-B
size, each step in a fresh process so its peak is its own. No GPU here: the ViT-B step is a CPU estimate.

Usage: python bench/bench_heartmae.py [default|paper|all]   (default: all). The networks are untrained: their speed
and memory do not depend on the weights.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from child import child, main

# the network (MAESize fields), the batch of the pretraining step, the stored frame side, frames per cycle and
# the clip feature's pooling (each profile's notebook-06 setting)
SIZES = {"default": dict(net=dict(size=64, frames=16, patch=8, tubelet=4, dim=192, depth=6, heads=3, dec_dim=128,
                                  dec_depth=2, dec_heads=4, pred_frames=8), bs=16, load=72, cycle=30,
                    pool="mean+motion"),
         "paper": dict(net=dict(size=224, frames=24, patch=16, tubelet=4, dim=768, depth=12, heads=12, dec_dim=512,
                                dec_depth=4, dec_heads=16, pred_frames=12), bs=4, load=256, cycle=50, pool="mean")}


def _model(name: str):
    from cmrlib.models.mae_st import MAESize, VideoMAE
    torch.manual_seed(0)
    return VideoMAE(MAESize(**SIZES[name]["net"]))


def cines_per_second(name: str = "default", n: int = 16, threads: int = 2) -> float:
    """Cines through `extract` (3 crops x 2 clips each) per second, preprocessing excluded (cached per run)."""
    import pandas as pd

    from cmrlib.methods.heartmae.data import CineSet
    from cmrlib.methods.heartmae.features import extract, mae_encoder
    torch.set_num_threads(threads)
    s = SIZES[name]
    rng = np.random.default_rng(0)
    cines = CineSet(rng.integers(0, 255, (n, s["cycle"], s["load"], s["load"]), dtype=np.uint8),
                    np.zeros((n, s["load"], s["load"]), np.float32), pd.DataFrame(dict(view_id=range(n))))
    enc = mae_encoder(_model(name), 0.3, 0.2, s["pool"])
    extract(enc, cines.take(range(2)), s["net"]["size"], s["net"]["frames"], progress=False)
    t0 = time.perf_counter()
    extract(enc, cines, s["net"]["size"], s["net"]["frames"], bs=8, progress=False)
    return n / (time.perf_counter() - t0)


def _step(model, x, w, opt, size):
    from cmrlib.models.mae_st import mae_loss
    pred, mask = model(x, 0.9, "random")
    loss = mae_loss(pred, x, mask, size, w)
    opt.zero_grad()
    loss.backward()
    opt.step()


def step_inputs(name: str):
    """The network, its AdamW and one batch of clips and motion maps at this size: what a pretraining step takes."""
    s, net = SIZES[name], SIZES[name]["net"]
    model = _model(name)
    opt = torch.optim.AdamW(model.parameters(), 1e-3, betas=(0.9, 0.95), weight_decay=0.05)
    x = torch.randn(s["bs"], 1, net["frames"], net["size"], net["size"])
    return model, opt, x, torch.rand(s["bs"], net["size"], net["size"])


def seconds_per_100_clips(name: str = "default", steps: int = 5, threads: int = 2) -> float:
    """Pretraining wall time per 100 clips (HeartMAE's weighted loss, 90 % random masking, batch of the size)."""
    torch.set_num_threads(threads)
    s = SIZES[name]
    model, opt, x, w = step_inputs(name)
    _step(model, x, w, opt, model.size)
    t0 = time.perf_counter()
    for _ in range(steps):
        _step(model, x, w, opt, model.size)
    return (time.perf_counter() - t0) / (steps * s["bs"]) * 100


def train_step(name: str) -> dict:
    """One pretraining step at this size (run in a child process): seconds and the process's peak memory."""
    from cmrlib.utils import peak_rss_mib
    torch.set_num_threads(2)
    model, opt, x, w = step_inputs(name)
    t0 = time.perf_counter()
    _step(model, x, w, opt, model.size)
    return dict(seconds=time.perf_counter() - t0, peak_mib=peak_rss_mib(),
                params_m=sum(p.numel() for p in model.parameters()) / 1e6)


def rows(which: str = "all") -> list[dict]:
    out = []
    if which in ("all", "default"):
        out.append(dict(figure="HeartMAE feature extraction, cines/s (default ViT, 3 crops x 2 clips, 2 threads)",
                        value=round(cines_per_second(), 1), target="paper: 8 cines/s on an A100"))
        out.append(dict(figure="HeartMAE pretraining s per 100 clips (default ViT, batch 16, 2 threads)",
                        value=round(seconds_per_100_clips(), 2), target=""))
    for name in (SIZES if which == "all" else [which]):
        step = child(__file__, name)
        s = SIZES[name]
        out.append(dict(figure=f"HeartMAE peak memory of one pretraining step ({name}: {step['params_m']:.1f} M "
                               f"parameters, batch {s['bs']}, CPU; MiB)", value=round(step["peak_mib"], 0),
                        target=""))
        out.append(dict(figure=f"HeartMAE seconds of that step ({name}, 2 threads)", value=round(step["seconds"], 2),
                        target=""))
    return out


if __name__ == "__main__":
    main(rows, train_step)
