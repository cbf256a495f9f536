"""SSLHF speed and memory: classifier inference per patient (all its patches) on 2 CPU threads, and the peak
memory of one training step (forward, backward, Adam) at the default and the paper's patch sizes, each step in a
fresh process so its peak is its own.

Usage: python bench/bench_sslhf.py [default|paper|all]   (default: all). The networks are untrained: their speed
and memory do not depend on the weights.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from child import child, main

PAPER_PATCHES = 8  # patches per patient where the profile keeps every LV slice (`max_slices: null`)


def size_of(profile: str) -> dict:
    """Notebook 05's network and batch in a profile: patch (T, H, W), encoder widths, head, patches per patient, the
    training batch (`bs`) and bf16, read from the profile as `cmrlib fit sslhf` reads them."""
    import yaml

    from cmrlib.methods.sslhf import Study
    prof = yaml.safe_load((Path(__file__).parents[1] / "cmrlib/profiles" / f"{profile}.yaml").read_text())
    p = Study.parameters(prof, profile)
    return dict(shape=(int(p["n_frames"]), int(p["size"]), int(p["size"])), widths=tuple(p["widths"]),
                hidden=tuple(p["hidden"]), patches=int(p["max_slices"] or PAPER_PATCHES), bs=int(p["bs"]),
                bf16=bool(p["bf16"]))


SIZES = {name: size_of(name) for name in ("default", "paper")}


def _bf16(size: dict) -> bool:
    """bf16 autocast where the size asks for it and the CPU computes it natively, as the notebooks decide."""
    from cmrlib.utils import trains_bf16_on_cpu
    return trains_bf16_on_cpu(size["bf16"])


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
    """Training patches per second of the default-size classifier (the default profile's batch, 2 threads), float32
    or bf16 autocast."""
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
        bs = SIZES["default"]["bs"]
        out.append(dict(figure=f"SSLHF training patches/s at the default size, float32 / bf16 autocast (batch {bs}, "
                               f"2 threads{native})",
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
