"""Notebook 01's SAX training step (the default profile's width, batch and 96-px training windows, bf16 where the
CPU computes it natively) on one and on two threads: why notebook 01 trains its networks side by side, one per Dask
worker on one thread (`learner.fit_weights`), what computing in channels-last on plain tensors buys
(`UNet11.forward`) against fastai's tensor types on contiguous weights, and what OpenMP's passive wait costs two
threads on an idle CPU (why a run sets it only when cores are taken: `runner.execute`).

Run: `.venv/bin/python bench/bench_seg_train.py` with nothing else running. Each case times the same steps (two of
warm-up, then `STEPS`) in a fresh process (OpenMP reads its wait policy once); the data pipeline is not timed (a
batch of 16 windows: about 0.07 s more).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

PROFILE = Path(__file__).resolve().parents[1] / "cmrlib" / "profiles" / "default.yaml"
STEPS = 15


def _seconds_per_step(threads: int, as_shipped: bool) -> float:
    """Seconds per training step of the quarter-width U-Net; `as_shipped` False: fastai's tensor type on the input
    and contiguous weights, as a plain `nn.Module` would train."""
    import torch
    from fastai.torch_core import TensorImage

    from cmrlib.learn import cpu_bf16
    from cmrlib.models import unet11

    sec = (yaml.safe_load(PROFILE.read_text()) or {}).get("01") or {}
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = unet11(n_classes=4, width=sec.get("width", 0.25))
    if not as_shipped:
        net = net.to(memory_format=torch.contiguous_format)
    opt = torch.optim.Adam(net.parameters())
    side = int(sec.get("crop_sax") or sec.get("size", 128))
    x, y = torch.randn(int(sec.get("bs", 16)), 1, side, side), torch.randint(0, 4, (int(sec.get("bs", 16)), side, side))
    x = x if as_shipped else TensorImage(x)
    for i in range(STEPS + 2):
        if i == 2:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(sec.get("bf16")) and cpu_bf16()):
            out = net(x)
        torch.nn.functional.cross_entropy(out.float(), y).backward()
        opt.step()
        opt.zero_grad()
    return (time.perf_counter() - t0) / STEPS


def _child(threads: int, as_shipped: bool, policy: str | None) -> float:
    """`_seconds_per_step` in a fresh process with this OpenMP wait policy (None: OpenMP's own)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env |= {"OMP_WAIT_POLICY": policy} if policy else {}
    out = subprocess.run([sys.executable, __file__, "--step", str(threads), str(int(as_shipped))], capture_output=True,
                         text=True, check=True, env=env, cwd=Path(__file__).resolve().parents[1])
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


CASES = ((1, True, None), (2, True, None), (2, True, "PASSIVE"), (1, False, None), (2, False, None))


def rows() -> list[dict]:
    out = []
    for threads, shipped, policy in CASES:
        how = "channels-last, plain tensor" if shipped else "contiguous weights, fastai tensor"
        out.append(dict(figure=f"notebook 01 SAX training step, {threads} thread(s), {how}, "
                               f"{'passive' if policy else 'OpenMP own'} wait, s",
                        value=round(_child(threads, shipped, policy), 3), target=""))
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--step"]:
        print(json.dumps(dict(seconds=_seconds_per_step(int(sys.argv[2]), bool(int(sys.argv[3]))))))
    else:
        for r in rows():
            print(f"{r['figure']}: {r['value']}")
