"""SSLHF speed and memory: classifier inference per patient (all its patches) on 2 CPU threads, and the peak
memory of one training step (forward, backward, Adam) at the default and the paper's patch sizes, each step in a
fresh process so its peak is its own.

Usage: python bench/bench_sslhf.py [default|paper|all]   (default: all). The networks are untrained: their speed
and memory do not depend on the weights.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from child import child, main

# patch (T, H, W), encoder widths, patches per patient, batch of the training step (each profile's `bs`; the head's
# BatchNorm needs at least 2), bf16 on the CPU
SIZES = {"default": dict(shape=(32, 32, 32), widths=(4, 8, 16, 32, 64), hidden=(32, 16), patches=2, bs=8, bf16=True),
         "paper": dict(shape=(40, 288, 288), widths=(16, 32, 64, 128, 256), hidden=(128, 32), patches=8, bs=4,
                       bf16=False)}


def _bf16(size: dict) -> bool:
    """bf16 autocast where the size asks for it and the CPU computes it natively, as the notebooks decide."""
    from cmrlib.utils import cpu_bf16
    return size["bf16"] and cpu_bf16()


def _net(size: dict):
    from cmrlib.models.sslhf import Classifier3D
    torch.manual_seed(0)
    return Classifier3D(size["widths"], size["hidden"])


def seconds_per_patient(name: str, threads: int = 2, repeats: int = 3) -> float:
    """Median wall time to score one patient's patches (the mean of their probabilities is eq. 3)."""
    from cmrlib.methods.sslhf.learner import scores
    torch.set_num_threads(threads)
    size = SIZES[name]
    net, x = _net(size), np.random.default_rng(0).normal(0, 1, (size["patches"], *size["shape"])).astype(np.float32)

    def once():
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=_bf16(size)):
            scores(net, x, bs=size["patches"]).mean()
        return time.perf_counter() - t0

    once()
    return float(np.median([once() for _ in range(repeats)]))


def train_step(name: str) -> dict:
    """One optimiser step at this size (run in a child process): seconds and the process's peak memory."""
    from cmrlib.utils import peak_rss_mib
    torch.set_num_threads(2)
    size = SIZES[name]
    net = _net(size)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.randn(size["bs"], 1, *size["shape"])
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=_bf16(size)):
        loss = net(x).float().mean()
    loss.backward()
    opt.step()
    return dict(seconds=time.perf_counter() - t0, peak_mib=peak_rss_mib())


def training_rate(bf16: bool, steps: int = 6) -> float:
    """Training patches per second of the default-size classifier (batch 8, 2 threads), float32 or bf16 autocast."""
    torch.set_num_threads(2)
    size = SIZES["default"]
    net = _net(size)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.randn(size["bs"], 1, *size["shape"])
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = net(x).float().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return size["bs"] * steps / (time.perf_counter() - t0)


def rows(which: str = "all") -> list[dict]:
    out = []
    if which in ("all", "default"):
        native = "" if _bf16(SIZES["default"]) else "; this CPU has no native bf16"
        out.append(dict(figure=f"SSLHF training patches/s at the default size, float32 / bf16 autocast (batch 8, 2 threads{native})",
                        value=f"{training_rate(False):.0f} / {training_rate(True):.0f}", target=""))
    for name in (SIZES if which == "all" else [which]):
        s = SIZES[name]
        shape = " x ".join(map(str, s["shape"][::-1]))
        out.append(dict(figure=f"SSLHF s per patient ({name}: {s['patches']} patches of {shape}, 2 threads)",
                        value=round(seconds_per_patient(name), 3), target=""))
        step = child(__file__, name)
        out.append(dict(figure=f"SSLHF peak memory of one training step ({name}, batch {s['bs']}; MiB)",
                        value=round(step["peak_mib"], 0), target=""))
        out.append(dict(figure=f"SSLHF seconds of that step ({name})", value=round(step["seconds"], 2), target=""))
    return out


if __name__ == "__main__":
    main(rows, train_step)
