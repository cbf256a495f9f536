"""Notebook 01's phantom training step beside another CPU-bound process: the profile's two threads with OpenMP's
default (spinning) wait, against what a run does (`runner.free_cores` threads, `OMP_WAIT_POLICY=PASSIVE`).

Run: `.venv/bin/python bench/bench_busy_core.py` with nothing else running (it starts its own busy process).
Each case times the same training steps (the default profile's SAX segmenter: width, grid and batch size of
notebook 01) in a fresh process, since OpenMP reads its wait policy once, when torch starts.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PROFILE = HERE.parent / "cmrlib" / "profiles" / "default.yaml"
STEPS = 12  # training steps timed after two of warm-up: about half a minute alone


def _burn(stop) -> None:
    """A CPU-bound process (another user's job) until `stop` is set."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def _steps(threads: int) -> float:
    """Seconds per training step of notebook 01's SAX segmenter at its default-profile size (this process)."""
    import torch

    from cmrlib.models import unet11

    sec = (yaml.safe_load(PROFILE.read_text()) or {}).get("01") or {}
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = unet11(n_classes=6, width=sec.get("width", 0.25))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    bs, size = int(sec.get("bs", 16)), int(sec.get("size", 128))
    x, y = torch.randn(bs, 1, size, size), torch.randint(0, 6, (bs, size, size))
    for i in range(STEPS + 2):
        if i == 2:
            t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return (time.perf_counter() - t0) / STEPS


def _child(threads: int, policy: str | None) -> float:
    """`_steps(threads)` in a fresh process with this OpenMP wait policy (None: OpenMP's default)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env |= {"OMP_WAIT_POLICY": policy} if policy else {}
    out = subprocess.run([sys.executable, __file__, "--step", str(threads)], capture_output=True, text=True,
                         check=True, env=env, cwd=HERE.parent)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def rows(which: str = "all") -> list[dict]:
    from cmrlib.runner import free_cores

    profile_threads = int(((yaml.safe_load(PROFILE.read_text()) or {}).get("01") or {}).get("threads", 2))
    alone = _child(profile_threads, None)
    stop = mp.Event()
    busy = mp.Process(target=_burn, args=(stop,), daemon=True)
    busy.start()
    try:
        time.sleep(1.0)
        spinning = _child(profile_threads, None)
        free = free_cores()
        fitted = _child(min(profile_threads, free), "PASSIVE")
    finally:
        stop.set()
        busy.join(10)
    return [dict(figure=f"notebook 01 training step alone ({profile_threads} threads), s", value=round(alone, 3),
                 target=""),
            dict(figure=f"beside a busy process: {profile_threads} threads, spinning wait / alone",
                 value=round(spinning / alone, 2), target=""),
            dict(figure=f"beside a busy process: {min(profile_threads, free)} thread(s) of {free} free core(s), "
                        "passive wait / alone", value=round(fitted / alone, 2), target="<= 2")]


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--step":
        print(json.dumps(dict(seconds=_steps(int(sys.argv[2])))))
    else:
        for r in rows():
            print(f"{r['figure']} | {r['value']} | {r['target']}")
