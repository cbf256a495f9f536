"""What the `paper` profile's training costs, measured on the CPU and projected to one 80 GB GPU: for every network
a method trains, at the paper profile's input size and batch, its parameters, the forward + backward FLOPs per
sample (`torch.utils.flop_counter`), the activation memory per sample (the tensors autograd saves for the backward
pass, counted at batch 1 and 2, or 2 and 3 where a BatchNorm head needs two: the difference is one sample's,
the rest is fixed), a CPU training step's seconds and the step's peak memory (each network in a fresh process).

Projected GPU hours = FLOPs per sample x samples the paper profile's schedule trains / (A100 peak x utilisation);
the memory at the paper's batch = weights, gradients and Adam's two moments (16 bytes per parameter) + fixed + batch
x per-sample activations, against 80 GB. Both are estimates from counts, not GPU measurements: data loading,
augmentation and evaluation come on top.

Usage: python bench/paper_cost.py [--json OUT.json]   (about 10 min on 2 cores; prints one Markdown table)
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import A100  # noqa: E402  (the projection bench/bench_scale.py makes for HeartMAE, the same GPU)

GPU = dict(A100, name="A100 80 GB", memory_gb=80.0)
TRAIN = 560  # training subjects of the paper profile's 800-subject cohort (70 / 15 / 15 split)


@dataclass(frozen=True)
class Net:
    """One network a method trains: how to build it and a batch, the paper profile's batch and its schedule."""

    method: str
    name: str
    batch: int               # the paper profile's batch (per process)
    samples: float           # samples one run of the paper profile trains this network on (all epochs, all fits)
    schedule: str            # how `samples` is counted
    reported: str = ""       # the paper's own training time, where it gives one


def _unet(bs):
    import torch

    from cmrlib.labels import NAMES
    from cmrlib.models.unet import unet11
    return unet11(n_classes=len(NAMES), width=1.0), (torch.randn(bs, 1, 224, 224),)


def _tempreg(bs):
    import torch

    from cmrlib.models.tempreg import tempreg_net
    net = tempreg_net("tempreg", widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), hidden=512, bidirectional=False,
                      dropout=0.2)
    return net, (torch.randn(bs, 50, 1, 224, 224),)


def _resnet50(bs, size):
    import torch

    from cmrlib.models.regress import point_regressor
    return point_regressor("resnet50", 4, 1), (torch.randn(bs, 1, *size),)


def _barlow(bs):
    import torch

    from cmrlib.models.cussp import CUSSPNet
    net = CUSSPNet(50, width=64, proj_dims=(2048, 2048), hidden=256, input_px=32, stem="authors")
    return net, (torch.randn(bs, 2, 50, 64, 64),)


def _cnn_lstm(bs):
    import torch

    from cmrlib.models.cussp import CNNLSTM
    return CNNLSTM(32, (6, 12, 24, 16), 64, 128), (torch.randn(bs, 50, 64, 64),)


def _restorer(bs):
    import torch

    from cmrlib.models.sslhf import Restorer3D
    return Restorer3D((16, 32, 64, 128, 256), 4), (torch.randn(bs, 1, 40, 288, 288),)


def _sslhf_classifier(bs, row="SSLHF"):
    import torch

    from cmrlib.models.sslhf import Classifier3D, densenet121_3d, resnet50_3d
    net = {"SSLHF": lambda: Classifier3D((16, 32, 64, 128, 256), (128, 32), 0.3),
           "3D ResNet-50": lambda: resnet50_3d(1.0, 8),
           "3D DenseNet-121": lambda: densenet121_3d(64, 32, 8)}[row]()
    return net, (torch.randn(bs, 1, 40, 288, 288),)


def _mae(bs):
    import torch

    from cmrlib.models.mae_st import MAESize, VideoMAE

    class Masked(torch.nn.Module):  # the pretraining step: 90 % of the tokens masked at random
        def __init__(self):
            super().__init__()
            self.mae = VideoMAE(MAESize(size=224, frames=24, patch=16, tubelet=4, dim=768, depth=12, heads=12,
                                        dec_dim=512, dec_depth=4, dec_heads=16, pred_frames=12))

        def forward(self, x):
            return self.mae(x, 0.9, "random")[0]
    return Masked(), (torch.randn(bs, 1, 24, 224, 224),)


SAX_FRAMES = TRAIN * 10.6 * 27  # 10.6 SAX slices per phantom subject, every 2nd of 50 frames plus ED and ES
BUILD = {
    "TernausNet11 (SAX, 224 px)": _unet,
    "ResNet-18 + LSTM (50 frames, 224 px)": _tempreg,
    "ResNet-50 stage 1 (160 px)": lambda bs: _resnet50(bs, (160, 160)),
    "ResNet-50 stage 2 (118 x 162 px)": lambda bs: _resnet50(bs, (118, 162)),
    "ResNet-18 + Barlow Twins (view pairs, 50 x 64 px)": _barlow,
    "DenseNet-121 + LSTM (50 x 64 px)": _cnn_lstm,
    "3D U-Net proxy (40 x 288 x 288)": _restorer,
    "SSLHF classifier (40 x 288 x 288)": _sslhf_classifier,
    "3D ResNet-50 (40 x 288 x 288)": lambda bs: _sslhf_classifier(bs, "3D ResNet-50"),
    "3D DenseNet-121 (40 x 288 x 288)": lambda bs: _sslhf_classifier(bs, "3D DenseNet-121"),
    "ViT-B MAE (24 x 224 x 224, 90 % masked)": _mae,
}
NETS = [
    Net("segmentation", "TernausNet11 (SAX, 224 px)", 16, SAX_FRAMES * 40 + TRAIN * 2 * 27 * 40,
        "SAX 40 epochs of 160k frames, long axis 40 of 30k (same cost per frame)"),
    Net("edes", "ResNet-18 + LSTM (50 frames, 224 px)", 8, 3 * 60 * TRAIN * 3,
        "3 methods x 60 epochs x 1,680 cines (3 views) of 50 frames"),
    Net("mvnet", "ResNet-50 stage 1 (160 px)", 32, 3 * 2 * 60 * TRAIN * 50,
        "3 conventions x 2 views x 60 epochs x 28k frames", "108-420 h per MVnet (Titan RTX; both stages, 3 views)"),
    Net("mvnet", "ResNet-50 stage 2 (118 x 162 px)", 32, 3 * 2 * 60 * TRAIN * 50, "as stage 1"),
    Net("cussp", "ResNet-18 + Barlow Twins (view pairs, 50 x 64 px)", 64, 4 * 10_000 * 64,
        "4 pretrainings (pool fractions) x 10,000 steps x 64 pairs"),
    Net("cussp", "DenseNet-121 + LSTM (50 x 64 px)", 32, 30 * TRAIN, "30 epochs x 560 4CH cines"),
    Net("sslhf", "3D U-Net proxy (40 x 288 x 288)", 4, 4 * 20_000 * 4, "4 proxies (SSLHF, B-D) x 20,000 steps x 4"),
    Net("sslhf", "SSLHF classifier (40 x 288 x 288)", 4, 5 * 3 * 5 * 60 * 110 * 10,
        "5 rows x 3 rates x 5 folds x at most 60 epochs x 1,100 slices (110 patients)"),
    Net("sslhf", "3D ResNet-50 (40 x 288 x 288)", 4, 3 * 5 * 60 * 110 * 10, "3 rates x 5 folds x 60 epochs x 1,100"),
    Net("sslhf", "3D DenseNet-121 (40 x 288 x 288)", 4, 3 * 5 * 60 * 110 * 10, "as 3D ResNet-50"),
    Net("heartmae", "ViT-B MAE (24 x 224 x 224, 90 % masked)", 224, (200 + 3 * 100) * TRAIN * 7 * 4,
        "MAE-ViT-B 200 epochs + 3 rows x 100, of 15.7k clips (7 views x 4 repeats)",
        "24 days on 4 A100s for MAE-ViT-B's 200 epochs on UK Biobank; each later row half that"),
]


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
PROBE = {"DenseNet-121 + LSTM (50 x 64 px)": (2, 3), "SSLHF classifier (40 x 288 x 288)": (2, 3)}


def measure(name: str) -> dict:
    """One network in this process: parameters, FLOPs and activations per sample, seconds per step at batch 2."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    torch.set_num_threads(2)
    torch.manual_seed(0)
    b1, b2 = PROBE.get(name, (1, 2))
    net, x1 = BUILD[name](b1)
    net.train()
    _, x2 = BUILD[name](b2)
    a1, a2 = _saved_bytes(net, x1), _saved_bytes(net, x2)
    per = (a2 - a1) / (b2 - b1)
    with FlopCounterMode(display=False) as fc:
        _loss(net(*x2)).backward()
    _, x2 = BUILD[name](2)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    t0 = time.perf_counter()
    opt.zero_grad()
    _loss(net(*x2)).backward()
    opt.step()
    return dict(params=sum(p.numel() for p in net.parameters()), flops_per_sample=fc.get_total_flops() / b2,
                act_per_sample=per, act_fixed=max(a1 - b1 * per, 0), cpu_s_step_bs2=time.perf_counter() - t0,
                peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


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
    a = ap.parse_args(argv)
    if a.step:
        print(json.dumps(measure(a.step)))
        return 0
    rows = []
    for net in NETS:
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
