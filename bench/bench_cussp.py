"""CUSSP speed: seconds per 4CH cine for the whole test-time pipeline of the run's CUSSP Predictor (LAX
segmentation, valve SVM, patch, LA equalisation, the classifier row chosen on validation) on 2 CPU threads, the
process's peak memory, and one Barlow Twins pretraining step (two augmented views of a batch, forward, backward, Adam)
at the default and paper profiles' sizes on random patches, untrained networks.

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
from cmrlib.utils import peak_rss_mib, trains_bf16_on_cpu

TARGET_S = 1.0


def seconds_per_cine(run_dir: Path, threads: int = 2, repeats: int = 5) -> float:
    """Median wall time of one 4CH cine through the CUSSP Predictor."""
    torch.set_num_threads(threads)
    p = predictor.load(run_dir / "predictors" / predictor.file_name("cussp"))
    cine = simulate_subject(1, seed=0, config=dict(n_frames=30, matrix=128, pixel_mm=1.8), views=("4CH",))["4CH"]

    def once():
        p.need("segmenter").forget()  # time the segmentation too, not the labels it kept from the last call
        t0 = time.perf_counter()
        p.predict(cine)
        return time.perf_counter() - t0

    once()
    return float(np.median([once() for _ in range(repeats)]))


def pretraining_step(profile: str, threads: int = 2, repeats: int = 4) -> float:
    """Median seconds of one Barlow Twins step with a profile's notebook-04 settings (data augmentation included)."""
    import yaml

    from cmrlib.learn import config_from
    from cmrlib.methods.cussp import Study
    from cmrlib.methods.cussp.data import PatchAug, TwinViews
    from cmrlib.methods.cussp.learner import CUSSPConfig, network
    from cmrlib.methods.cussp.learner import BarlowLoss

    torch.set_num_threads(threads)
    prof = yaml.safe_load((Path(__file__).parents[1] / "cmrlib/profiles" / f"{profile}.yaml").read_text())
    p = Study.parameters(prof, profile)
    cfg, aug = config_from(CUSSPConfig, p), PatchAug.make(p["pretrain_aug"])
    frames, size, bs = int(p["window"]), int(p["size"]), int(p["pretrain_bs"])
    views = TwinViews(np.random.default_rng(0).random((bs, frames, size, size)).astype(np.float16), aug, 0)
    net = network(frames, cfg)
    opt, loss = torch.optim.Adam(net.parameters(), cfg.pretrain_lr), BarlowLoss(cfg.lambd)
    bf16 = trains_bf16_on_cpu(cfg.bf16)

    def once():
        t0 = time.perf_counter()
        x = torch.as_tensor(np.stack([views[i][0] for i in range(bs)]))
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            out = net(x)
        opt.zero_grad()
        loss(out, None).backward()
        opt.step()
        return time.perf_counter() - t0

    once()
    return float(np.median([once() for _ in range(repeats)]))


def rows(run_dir: str | None = None) -> list[dict]:
    steps = [dict(figure=f"CUSSP Barlow Twins step, {prof} profile (width {w}, batch {b}, 2 threads; s)",
                  value=round(pretraining_step(prof), 3), target="report") for prof, w, b in
             (("default", 32, 32), ("paper", 64, 64))]
    return steps + _predictor_rows(run_dir)


def _predictor_rows(run_dir: str | None = None) -> list[dict]:
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
