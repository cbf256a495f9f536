"""What the `paper` profile's training costs, measured on the CPU and projected to one 80 GB GPU: for every network
a method trains, at the paper profile's input size and batch, its parameters, the forward + backward FLOPs per
sample (`torch.utils.flop_counter`), the activation memory per sample (the tensors autograd saves for the backward
pass, counted at batch 1 and 2, or 2 and 3 where a BatchNorm head needs two: the difference is one sample's,
the rest is fixed), a CPU training step's seconds and the step's peak memory (each network in a fresh process).
Networks, input sizes, batches and schedules are read from `cmrlib/profiles/paper.yaml` through each method's Study
parameters and settings classes, as `cmrlib fit --profile paper` trains them; the cohort's frames per cine and SAX
slices per subject from the paper profile's phantom recipes, by the renderer's own slice rule (`paper_sax_slices`).

Projected GPU hours = FLOPs per sample x samples the paper profile's schedule trains / (A100 peak x utilisation);
the memory at the paper's batch = weights, gradients and Adam's two moments (16 bytes per parameter) + fixed + batch
x per-sample activations, against 80 GB. Both are estimates from counts, not GPU measurements: data loading,
augmentation and evaluation come on top.

With `--gpu` (on a machine with a CUDA GPU) it measures instead: each network at the paper profile's batch, the
seconds of an Adam step in float32 (what `cmrlib fit` trains in on a GPU, under the run's deterministic settings)
and under bfloat16 autocast, the step's peak GPU memory, and the paper profile's schedule in GPU hours at those
step times (the network's steps alone: data loading and evaluation come on top).

Usage: python bench/paper_cost.py [--json OUT.json] [--gpu]   (about 10 min on 2 cores; prints one Markdown table)
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import A100  # noqa: E402  (the projection bench/bench_scale.py makes for HeartMAE, the same GPU)

GPU = dict(A100, name="A100 80 GB", memory_gb=80.0)

COHORT_DRAWS = 200  # subjects whose recipes give the paper cohort's mean SAX slice count


@functools.cache
def _paper_recipes() -> tuple[dict, ...]:
    """The first `COHORT_DRAWS` subjects' recipes of the paper profile's phantom cohort (drawn, not rendered)."""
    from cmrlib import runner
    from cmrlib.phantom.subjects import sample_recipe
    prof = runner.load_profile("paper")
    cfg = dict(prof["00"]["phantom_config"], n_frames=prof["00"]["n_frames"])
    return tuple(sample_recipe(i, prof["common"]["seed"], cfg) for i in range(COHORT_DRAWS))


def paper_frames() -> int:
    """Frames per cine of the paper cohort (the recipes' mean, rounded: a range may be drawn per subject)."""
    return round(float(np.mean([r["acquisition"]["n_frames"] for r in _paper_recipes()])))


def paper_sax_slices() -> float:
    """Mean SAX slices per subject of the paper cohort, by the renderer's own slice rule."""
    from cmrlib.phantom.anatomy import Heart, sax_slice_count
    return float(np.mean([r["acquisition"]["n_slices"] or sax_slice_count(Heart(r, np.zeros(1)).L_ed,
                                                                           r["acquisition"]["sax_spacing_mm"])
                          for r in _paper_recipes()]))


@dataclass(frozen=True)
class Net:
    """One network a method trains: how to build it and a batch, the paper profile's batch and its schedule."""

    method: str
    name: str
    batch: int               # the paper profile's batch (per process)
    samples: float           # samples one run of the paper profile trains this network on (all epochs, all fits)
    schedule: str            # how `samples` is counted
    reported: str = ""       # the paper's own training time, where it gives one


def paper(method: str) -> dict:
    """The method's Study parameters as the `paper` profile sets them (what `cmrlib fit --profile paper` trains)."""
    from cmrlib import runner
    from cmrlib.predictor import study_class
    return study_class(method).parameters(runner.load_profile("paper"), "paper")


def _config(method: str, cls_path: str):
    """The method's settings dataclass (`module:Class`) from its paper parameters, as its Study builds it."""
    import importlib

    from cmrlib.learn import config_from
    mod, cls = cls_path.split(":")
    return config_from(getattr(importlib.import_module(mod), cls), paper(method))


def _unet(bs):
    import torch

    from cmrlib.labels import NAMES
    from cmrlib.models.unet import unet11
    p = paper("segmentation")
    return unet11(n_classes=len(NAMES), width=p["width"]), (torch.randn(bs, 1, p["size"], p["size"]),)


def _tempreg(bs):
    import torch

    from cmrlib.methods.edes.study import MODEL_KEYS
    from cmrlib.models.tempreg import tempreg_net
    p = paper("edes")
    net = tempreg_net("tempreg", **{k: p[k] for k in MODEL_KEYS})
    return net, (torch.randn(bs, paper_frames(), 1, p["size"], p["size"]),)


def _mvnet(bs, stage):
    import torch

    from cmrlib.methods.mvnet.geometry import S1_SIZE, STD_SIZE
    cfg = _config("mvnet", "cmrlib.methods.mvnet.learner:MVConfig")
    return cfg.model(stage), (torch.randn(bs, 1, *(S1_SIZE if stage == 1 else STD_SIZE)),)


def _barlow(bs):
    import torch

    from cmrlib.methods.cussp.learner import network
    cfg, size = _config("cussp", "cmrlib.methods.cussp.learner:CUSSPConfig"), paper("cussp")["size"]
    frames = paper_frames()
    return network(frames, cfg), (torch.randn(bs, 2, frames, size, size),)


def _cnn_lstm(bs):
    import torch

    from cmrlib.models.cussp import CNNLSTM
    cfg, crop = _config("cussp", "cmrlib.methods.cussp.learner:CUSSPConfig"), paper("cussp")["crop_size"]
    return CNNLSTM(cfg.cnn_growth, cfg.cnn_blocks, cfg.cnn_init, cfg.lstm_hidden), (
        torch.randn(bs, paper_frames(), crop, crop),)


def _sslhf(bs, row):
    import torch

    from cmrlib.methods.sslhf.learner import BASELINES, network
    from cmrlib.models.sslhf import Restorer3D
    p, cfg = paper("sslhf"), _config("sslhf", "cmrlib.methods.sslhf.learner:SSLHFConfig")
    if row == "proxy":
        net = Restorer3D(cfg.widths, cfg.proxy_skips)
    else:  # SSLHF's classifier from a fresh proxy (a proxy's weights cost what a random one's do)
        net = network(row, cfg, None if row in BASELINES else {row: Restorer3D(cfg.widths, cfg.proxy_skips)})
    return net, (torch.randn(bs, 1, p["n_frames"], p["size"], p["size"]),)


def _mae(bs):
    import torch

    from cmrlib.methods.heartmae.learner import FAMILY
    from cmrlib.models.mae_st import VideoMAE
    cfg = _config("heartmae", "cmrlib.methods.heartmae.learner:HeartMAEConfig")
    ratio = FAMILY["HeartMAE"]["ratio"]

    class Masked(torch.nn.Module):  # the pretraining step: the paper's share of the tokens masked at random
        def __init__(self):
            super().__init__()
            self.mae = VideoMAE(cfg.shape)

        def forward(self, x):
            return self.mae(x, ratio, "random")[0]
    return Masked(), (torch.randn(bs, 1, cfg.frames, cfg.size, cfg.size),)


def nets() -> list[Net]:
    """Every network with the paper profile's batch and schedule (its section of `paper.yaml`)."""
    from cmrlib import runner
    from cmrlib.methods.heartmae.learner import FAMILY
    from cmrlib.methods.sslhf.learner import BASELINES, PROXIES
    from cmrlib.methods.mvnet.study import CONVENTIONS
    from cmrlib.store import SPLIT_FRACTIONS
    frames, sax_slices = paper_frames(), paper_sax_slices()
    train = round(SPLIT_FRACTIONS[0] * runner.load_profile("paper")["00"]["n_subjects"])
    seg, ed, mv, cu, hf, mae = (paper(m) for m in ("segmentation", "edes", "mvnet", "cussp", "sslhf", "heartmae"))
    sax = train * sax_slices * (frames // seg["frame_step"] + 2)  # every frame_step-th frame plus ED and ES
    lax = train * 2 * (frames // seg["frame_step"] + 2)
    conv = len(CONVENTIONS) if mv["variability"] else 1  # MVnet's trackers, one per annotation convention
    proxies = [r for r in hf["rows"] if r in PROXIES]
    learned = [r for r in hf["rows"] if r not in BASELINES]
    slices = round(0.6 * hf["hf_patients"]) * 10  # 3 of 5 folds train, about 10 LV slices each
    fits = len(hf["lrs"]) * hf["n_folds"] * hf["epochs"] * slices
    family = mae["epochs_base"] + (len(FAMILY) - 1) * mae["epochs"]  # MAE-ViT-B, then the rows it starts
    pretrainings = len(({float(f) for f in cu["pool_fractions"]} | {1.0}) - {0.0})  # 0: no pool, no pretraining
    clips = train * (mae["sax_slices"] + 2) * mae["repeats"]
    return [
        Net("segmentation", f"TernausNet11 (SAX, {seg['size']} px)", seg["bs"], sax * seg["epochs_sax"] + lax * seg["epochs_lax"],
            f"SAX {seg['epochs_sax']} epochs of {sax / 1e3:,.0f}k frames, long axis {seg['epochs_lax']} of "
            f"{lax / 1e3:,.0f}k (same cost per frame)"),
        Net("edes", f"ResNet-18 + LSTM ({frames} frames, {ed['size']} px)", ed["bs"],
            len(ed["methods"]) * ed["epochs"] * train * len(ed["views"]),
            f"{len(ed['methods'])} methods x {ed['epochs']} epochs x {train * len(ed['views']):,} cines "
            f"({len(ed['views'])} views) of {frames} frames"),
        Net("mvnet", "ResNet-50 stage 1 (160 px)", mv["bs"], conv * len(mv["views"]) * mv["epochs1"] * train * frames,
            f"{conv} conventions x {len(mv['views'])} views x {mv['epochs1']} epochs x {train * frames / 1e3:,.0f}k "
            "frames", "108-420 h per MVnet (Titan RTX; both stages, 3 views)"),
        Net("mvnet", "ResNet-50 stage 2 (118 x 162 px)", mv["bs"],
            conv * len(mv["views"]) * mv["epochs2"] * train * frames, "as stage 1"),
        Net("cussp", f"ResNet-18 + Barlow Twins (view pairs, {frames} x {cu['size']} px)", cu["pretrain_bs"],
            pretrainings * cu["pretrain_steps"] * cu["pretrain_bs"],
            f"{pretrainings} pretrainings (pool fractions) x {cu['pretrain_steps']:,} steps x "
            f"{cu['pretrain_bs']} pairs"),
        Net("cussp", f"DenseNet-121 + LSTM ({frames} x {cu['crop_size']} px)", cu["bs"], cu["cnn_epochs"] * train,
            f"{cu['cnn_epochs']} epochs x {train} 4CH cines"),
        Net("sslhf", f"3D U-Net proxy ({hf['n_frames']} x {hf['size']} x {hf['size']})", hf["proxy_bs"],
            len(proxies) * hf["proxy_steps"] * hf["proxy_bs"],
            f"{len(proxies)} proxies x {hf['proxy_steps']:,} steps x {hf['proxy_bs']}"),
        Net("sslhf", f"SSLHF classifier ({hf['n_frames']} x {hf['size']} x {hf['size']})", hf["bs"],
            len(learned) * fits, f"{len(learned)} rows x {len(hf['lrs'])} rates x {hf['n_folds']} folds x at most "
            f"{hf['epochs']} epochs x {slices:,} slices"),
        *[Net("sslhf", f"{b} ({hf['n_frames']} x {hf['size']} x {hf['size']})", hf["bs"], fits,
              f"{len(hf['lrs'])} rates x {hf['n_folds']} folds x {hf['epochs']} epochs x {slices:,}")
          for b in BASELINES if b in hf["rows"]],
        Net("heartmae", f"ViT-B MAE ({mae['frames']} x {mae['size']} x {mae['size']}, "
            f"{FAMILY['HeartMAE']['ratio'] * 100:.0f} % masked)", mae["bs"], family * clips,
            f"MAE-ViT-B {mae['epochs_base']} epochs + {len(FAMILY) - 1} rows x {mae['epochs']}, of "
            f"{clips / 1e3:,.1f}k clips ({mae['sax_slices'] + 2} views x {mae['repeats']} repeats)",
            "24 days on 4 A100s for MAE-ViT-B's 200 epochs on UK Biobank; each later row half that"),
    ]


def builder(name: str):
    """The function that builds `name`'s network and a batch of its input."""
    from cmrlib.methods.sslhf.learner import BASELINES
    kind = name.split(" (")[0]
    table = {"TernausNet11": _unet, "ResNet-18 + LSTM": _tempreg, "ResNet-50 stage 1": lambda bs: _mvnet(bs, 1),
             "ResNet-50 stage 2": lambda bs: _mvnet(bs, 2), "ResNet-18 + Barlow Twins": _barlow,
             "DenseNet-121 + LSTM": _cnn_lstm, "3D U-Net proxy": lambda bs: _sslhf(bs, "proxy"),
             "SSLHF classifier": lambda bs: _sslhf(bs, "SSLHF"), "ViT-B MAE": _mae,
             **{b: (lambda bs, b=b: _sslhf(bs, b)) for b in BASELINES}}
    return table[kind]


def _loss(out):
    """A scalar from whatever the network returns (the loss's own FLOPs are negligible beside the network's)."""
    import torch
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return sum(o.float().mean() for o in outs if isinstance(o, torch.Tensor))


def _saved_bytes(net, x) -> int:
    """Bytes of the tensors autograd saves for the backward pass (activations), each storage counted once."""
    import torch
    seen: dict[int, int] = {}

    def pack(t):
        if t.device.type == "cpu" and not isinstance(t, torch.nn.Parameter):
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = _loss(net(*x))
    loss.backward()
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    return sum(n for ptr, n in seen.items() if ptr not in params)


# the batches activations are counted at: 2 and 3 where a BatchNorm1d head needs two samples to train
PROBE = ("DenseNet-121 + LSTM", "SSLHF classifier")


def measure(name: str) -> dict:
    """One network in this process: parameters, FLOPs and activations per sample, seconds per step at batch 2."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    torch.set_num_threads(2)
    torch.manual_seed(0)
    b1, b2 = (2, 3) if name.split(" (")[0] in PROBE else (1, 2)
    build = builder(name)
    net, x1 = build(b1)
    net.train()
    _, x2 = build(b2)
    a1, a2 = _saved_bytes(net, x1), _saved_bytes(net, x2)
    per = (a2 - a1) / (b2 - b1)
    with FlopCounterMode(display=False) as fc:
        _loss(net(*x2)).backward()
    _, x2 = build(2)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    t0 = time.perf_counter()
    opt.zero_grad()
    _loss(net(*x2)).backward()
    opt.step()
    return dict(params=sum(p.numel() for p in net.parameters()), flops_per_sample=fc.get_total_flops() / b2,
                act_per_sample=per, act_fixed=max(a1 - b1 * per, 0), cpu_s_step_bs2=time.perf_counter() - t0,
                peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


def measure_gpu(net: Net, steps: int = 5) -> dict:
    """One network on the GPU at the paper profile's batch: seconds per Adam step and peak memory, in float32 and
    under bfloat16 autocast, after two warm-up steps; 'out of memory' where a step does not fit."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cmrlib.utils import seed_everything
    seed_everything(0)  # as `cmrlib fit`: deterministic algorithms, cuDNN's autotuner off
    model, x = builder(net.name)(net.batch)
    model, x = model.cuda().train(), tuple(t.cuda() for t in x)
    opt = torch.optim.Adam(model.parameters(), 1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        _loss(model(*x)).backward()
        opt.step()
    with FlopCounterMode(display=False) as fc:
        step()
    row = dict(params=sum(p.numel() for p in model.parameters()), flops_per_sample=fc.get_total_flops() / net.batch)
    for precision in ("float32", "bf16"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        autocast = torch.autocast("cuda", torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        try:
            with autocast:
                step(), step()
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                torch.cuda.synchronize()
        except torch.cuda.OutOfMemoryError:
            row[precision] = "out of memory"
            continue
        s_step = (time.perf_counter() - t0) / steps
        row[precision] = dict(s_step=s_step, peak_gb=torch.cuda.max_memory_allocated() / 1e9,
                              tflops=row["flops_per_sample"] * net.batch / s_step / 1e12,
                              gpu_hours=net.samples / (net.batch / s_step) / 3600)
    del model, x, opt
    torch.cuda.empty_cache()
    return row


def gpu_table(rows: list[dict], gpu: str) -> str:
    """The `--gpu` rows as Markdown: each precision's step seconds, TFLOP/s, peak GB and the schedule's hours."""
    def cells(m) -> str:
        if not isinstance(m, dict):  # "out of memory"
            return " | ".join([m] * 4)
        return f"{m['s_step']:.3f} | {m['tflops']:.0f} | {m['peak_gb']:.1f} | {m['gpu_hours']:,.1f}"
    head = (f"| method | network (input) | batch | parameters (M) | GFLOP per sample | {gpu}: s per step float32 | "
            "TFLOP/s | peak GB | schedule's GPU hours | s per step bf16 | TFLOP/s | peak GB | schedule's GPU hours |\n"
            + "|---" * 13 + "|\n")
    return head + "\n".join(
        f"| {r['method']} | {r['name']} | {r['batch']} | {r['params'] / 1e6:.1f} | {r['flops_per_sample'] / 1e9:,.0f} "
        f"| {cells(r['float32'])} | {cells(r['bf16'])} |" for r in rows)


def run_gpu(json_path: str | None) -> int:
    """`--gpu`: every network measured on this machine's GPU in this process, one after another."""
    import torch
    gpu = torch.cuda.get_device_name(0)
    rows = []
    for net in nets():
        print(f"measuring {net.name} at batch {net.batch} on {gpu} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            rows.append({**net.__dict__, **measure_gpu(net)})
        except Exception as e:  # a network that fails is a row of the table, not the end of the check
            rows.append({**net.__dict__, "error": f"{type(e).__name__}: {str(e)[:300]}"})
        print(f"  {time.perf_counter() - t0:.0f} s: {rows[-1].get('error') or rows[-1]['float32']}", file=sys.stderr,
              flush=True)
        if json_path:
            Path(json_path).write_text(json.dumps(dict(gpu=gpu, torch=torch.__version__, rows=rows), indent=1))
    print(gpu_table([r for r in rows if "error" not in r], gpu))
    return int(any("error" in r for r in rows))


def project(net: Net, m: dict) -> dict:
    """GPU hours of the paper profile's schedule and the memory of one step at its batch, from the counts."""
    gpu_s = m["flops_per_sample"] * net.samples / (GPU["tflops"] * 1e12 * GPU["utilisation"])
    mem = 16 * m["params"] + m["act_fixed"] + net.batch * m["act_per_sample"]
    return dict(gpu_hours=gpu_s / 3600, memory_gb=mem / 1e9, fits=mem / 1e9 <= GPU["memory_gb"])


def table(rows: list[dict]) -> str:
    head = ("| method | network (input) | parameters (M) | GFLOP per sample (fwd + bwd) | activations per sample (MB) "
            "| CPU s per step at batch 2 | peak RSS (GiB) | paper schedule | projected GPU hours | batch | memory at "
            "that batch (GB) | fits 80 GB | the paper's own time |\n" + "|---" * 13 + "|\n")
    return head + "\n".join(
        f"| {r['method']} | {r['name']} | {r['params'] / 1e6:.1f} | {r['flops_per_sample'] / 1e9:,.0f} | "
        f"{r['act_per_sample'] / 1e6:,.0f} | {r['cpu_s_step_bs2']:.1f} | {r['peak_rss_gib']:.1f} | {r['schedule']} | "
        f"{r['gpu_hours']:,.1f} | {r['batch']} | {r['memory_gb']:,.1f} | {'yes' if r['fits'] else 'no'} | "
        f"{r['reported']} |" for r in rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--step", help=argparse.SUPPRESS)  # the child: measure one network, print its JSON line
    ap.add_argument("--json", help="write the rows here too")
    ap.add_argument("--gpu", action="store_true", help="measure every network's step on this machine's GPU instead")
    a = ap.parse_args(argv)
    if a.gpu:
        return run_gpu(a.json)
    if a.step:
        print(json.dumps(measure(a.step)))
        return 0
    rows = []
    for net in nets():
        print(f"measuring {net.name} ...", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, __file__, "--step", net.name], capture_output=True, text=True)
        if done.returncode:
            print(done.stderr[-2000:], file=sys.stderr)
            continue
        m = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({**net.__dict__, **m, **project(net, m)})
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    print(f"GPU: {GPU['name']}, {GPU['tflops']:.0f} TFLOP/s (bf16 dense) at {GPU['utilisation']:.0%}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
