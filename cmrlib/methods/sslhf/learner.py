"""SSLHF's training stages as fastai Learners: the restoration proxy (MSE, Adam, lr halved every 20 epochs), the
classifier on its encoder or from scratch (weighted BCE, lr halved every 10 epochs), and the MONAI 3D
baselines of Table III, all with the paper's flips and rotations. Every classifier row is trained at each
learning rate of `SSLHFConfig.lrs` with early stopping on the fold's validation patches, and the rate with the
lowest validation loss is kept: one search, the same for every row."""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fastai.callback.schedule import ParamScheduler
from fastai.learner import Learner
from torch import nn

from ...learn import (BestWeights, WeightedBCE, callbacks, check_finite, dataloaders, export, history, pos_weight,
                     step_decay)
from ...learn import load as load_exported
from ...models.sslhf import Classifier3D, Restorer3D, densenet121_3d, pad16, resnet50_3d
from ...utils import rng, seed_for, seeded
from ...transforms.corrupt import corrupt, random_frame_cover, random_local_shuffle, random_patch_cover
from .data import Labelled, Restoration

# the proxy's corruptions per row: SSLHF uses all three, ablations B-D drop one each
CORRUPTIONS = ("shuffle", "patch", "frame")
PROXIES = {"SSLHF": CORRUPTIONS, "B: no frame covering": ("shuffle", "patch"),
           "C: no local shuffling": ("patch", "frame"), "D: no patch covering": ("shuffle", "frame")}
NO_PROXY = "A: no proxy"
BASELINES = ("3D ResNet-50", "3D DenseNet-121")
ROWS = ("SSLHF", NO_PROXY, *list(PROXIES)[1:], *BASELINES)


@dataclass(frozen=True)
class SSLHFConfig:
    """Every training setting of notebook 05 (the profiles set them)."""

    widths: tuple = (16, 32, 64, 128, 256)   # the encoder's five levels (two 3D convolutions each)
    hidden: tuple = (128, 32)                # the classifier's first two fully connected layers (the third gives 1)
    dropout: float = 0.3
    proxy_steps: int = 400                   # optimiser steps of the restoration proxy (whatever the pool size)
    proxy_bs: int = 8
    proxy_lr: float = 1e-3
    proxy_decay_every: int = 20              # epochs between halvings of the proxy's lr
    proxy_skips: int = 4                     # the proxy decoder's joins with the encoder, deepest first (4: U-Net)
    epochs: int = 30                         # most epochs of every classifier row (early stopping may end it sooner)
    bs: int = 8
    lrs: tuple = (1e-5, 1e-4, 1e-3)          # learning rates tried for every row (the paper's 1e-5 among them)
    lr_from_first_fold: bool = False         # each row's rate chosen on fold 0's validation, kept where no test patient chose it
    patience: int = 5                        # epochs without a better validation loss before a fit stops
    min_epochs: int = 5                      # epochs every classifier fit trains before one may be kept
    decay_every: int = 10                    # epochs between halvings of the classifier's lr
    resnet_widen: float = 1.0                # 3D ResNet-50 width factor (1: the standard network)
    densenet_init: int = 64                  # 3D DenseNet-121 stem width and growth rate (64 / 32: the standard)
    densenet_growth: int = 32
    groups: int = 8                          # GroupNorm groups of both baselines
    bf16: bool = False                       # bfloat16 autocast on the CPU (about 3x the float32 rate: bench_sslhf)
    seed: int = 0


def _fit(learn: Learner, epochs: int, lr: float, every: int, what: str, patience: int | None = None,
         quiet: bool = False, min_epochs: int = 1) -> dict:
    """Adam with the step schedule (and early stopping on the validation loss, the best epoch's weights kept, when
    `patience` is given; none of the first `min_epochs` but the last may be kept); a summary row (seconds, epochs
    run, best epoch, losses). `quiet`: no per-epoch table (the classifiers' hundreds of fits are summarised by
    their log instead)."""
    t0 = time.perf_counter()
    stop = [BestWeights(patience, min_epochs=min(min_epochs, epochs))] if patience else []
    with contextlib.ExitStack() as silent:
        if quiet:
            silent.enter_context(learn.no_bar())
            silent.enter_context(learn.no_logging())
        learn.fit(epochs, lr, cbs=[ParamScheduler({"lr": step_decay(lr, epochs, every)}), *stop])
    h = history(learn)
    best = int(stop[0].best_epoch) if stop else len(h) - 1
    return dict(stage=what, epochs=len(h), best_epoch=best, lr=lr, train_s=round(time.perf_counter() - t0, 1),
                train_loss=float(h["train_loss"].iloc[best]), valid_loss=float(h["valid_loss"].iloc[best]))


def pretrain(pool: np.ndarray, valid: np.ndarray, cfg: SSLHFConfig, kinds=CORRUPTIONS, tag: str = "SSLHF",
             start: Restorer3D | None = None) -> tuple[Restorer3D, dict]:
    """The restoration proxy trained for about `cfg.proxy_steps` steps to undo `kinds` of corruption on the
    unlabelled patches `pool` (N, T, S, S), from `start`'s weights (a copy) or the shared initialisation; `valid`
    patches give its validation loss."""
    with seeded(seed_for(cfg.seed, "sslhf", "proxy-init")):  # every proxy starts from the same weights
        net = Restorer3D(cfg.widths, cfg.proxy_skips)
        if start is not None:
            net.load_state_dict(start.state_dict())
        dls = dataloaders(Restoration(pool, kinds, seed_for(cfg.seed, "sslhf", "proxy", tag)),
                          Restoration(valid, kinds, seed_for(cfg.seed, "sslhf", "proxy-valid", tag), augment=False),
                          cfg.proxy_bs, order_seed=seed_for(cfg.seed, "sslhf", "proxy-order", tag))
        learn = Learner(dls, net, loss_func=nn.MSELoss(), wd=0.0, cbs=callbacks("SSLHF proxy", cfg.bf16))
        epochs = max(1, math.ceil(cfg.proxy_steps / max(1, len(pool) // cfg.proxy_bs)))
        log = _fit(learn, epochs, cfg.proxy_lr, cfg.proxy_decay_every, f"proxy {tag}")
    return net, dict(log, n_patches=len(pool))


def network(row: str, cfg: SSLHFConfig, restorers: dict[str, Restorer3D] | None = None) -> nn.Module:
    """The untrained classifier of one row: the encoder from that row's proxy (SSLHF, B-D), a random encoder (A),
    or a MONAI baseline; every row with the same name starts from the same weights."""
    with seeded(_init_seed(row, cfg)):
        return _classifier(row, cfg, restorers)


def _init_seed(row: str, cfg: SSLHFConfig) -> int:
    """The seed a row's network starts from: every learning rate tried, and `network`, start from the same weights."""
    return seed_for(cfg.seed, "sslhf", "init", row)


def _classifier(row: str, cfg: SSLHFConfig, restorers: dict[str, Restorer3D] | None) -> nn.Module:
    """`network` drawing its initial weights from the caller's random state."""
    if row in BASELINES:
        return (resnet50_3d(cfg.resnet_widen, cfg.groups) if row == BASELINES[0]
                else densenet121_3d(cfg.densenet_init, cfg.densenet_growth, cfg.groups))
    net = Classifier3D(cfg.widths, cfg.hidden, cfg.dropout)
    if row in PROXIES:
        if not restorers or row not in restorers:
            raise ValueError(f"row {row!r} starts from its restoration proxy; pretrain it first")
        net.load_restorer(restorers[row])
    elif row != NO_PROXY:
        raise ValueError(f"unknown SSLHF row {row!r}; expected one of {list(ROWS)}")
    return net


def learner(net: nn.Module, train: tuple, valid: tuple, cfg: SSLHFConfig, seed: int = 0) -> Learner:
    """A classifier Learner: flipped and rotated training patches, weighted BCE for the class imbalance."""
    (xt, yt), (xv, yv) = train, valid
    dls = dataloaders(Labelled(xt, yt, augment=True, seed=seed), Labelled(xv, yv), cfg.bs,
                      order_seed=seed_for(seed, "order"))  # on a Dask worker: nothing from the global `random`
    return Learner(dls, net, loss_func=WeightedBCE(pos_weight(yt)), wd=1e-4, cbs=callbacks("SSLHF", cfg.bf16))


def fit(row: str, train: tuple, valid: tuple, cfg: SSLHFConfig, restorers: dict[str, Restorer3D] | None = None,
        tag: str = "", lrs: tuple | None = None) -> tuple[Learner, dict]:
    """Train one row of Tables II-III on labelled patches (x (N, T, S, S), y 0/1) with the paper's schedule at each
    learning rate of `lrs` (default `cfg.lrs`), each from the same start and stopped early on the validation
    patches (after at least `cfg.min_epochs`); the rate whose best validation loss is lowest is kept. The log says which, and what each gave."""
    best, tried = None, {}
    for lr in lrs or cfg.lrs:
        with seeded(_init_seed(row, cfg)):
            learn = learner(_classifier(row, cfg, restorers), train, valid, cfg, seed_for(cfg.seed, "sslhf", row, tag))
            log = _fit(learn, cfg.epochs, float(lr), cfg.decay_every, f"{row} {tag}".strip(), cfg.patience,
                       quiet=True, min_epochs=cfg.min_epochs)
        tried[f"{lr:g}"] = round(log["valid_loss"], 4)
        if best is None or log["valid_loss"] < best[1]["valid_loss"]:
            best = (learn, log)
    learn, log = best
    return learn, dict(log, row=row, lr_search=json.dumps(tried))


def features(model: nn.Module, x: np.ndarray, bs: int = 16) -> list[np.ndarray]:
    """What each encoder level holds, per patch: its features max-pooled over the patch, (N, channels) for each of
    the five levels (the last is what a classifier's head sees), for the probe that checks an encoder against a
    random one level by level."""
    enc = model.encoder if isinstance(model, Classifier3D) else model
    enc = enc.eval()
    with torch.inference_mode():
        out = [[torch.amax(f, dim=(2, 3, 4)) for f in enc(pad16(torch.as_tensor(np.asarray(x[i:i + bs, None],
                                                                                           np.float32))))]
               for i in range(0, len(x), bs)]
    if not out:
        return [np.zeros((0, w), np.float32) for w in enc.widths]
    return [torch.cat([batch[level] for batch in out]).numpy() for level in range(len(enc.widths))]


@torch.inference_mode()
def scores(model: nn.Module, x: np.ndarray, bs: int = 16) -> np.ndarray:
    """HFrEF probabilities of (N, T, S, S) patches."""
    model = model.eval()
    dev = next(model.parameters()).device
    out = [torch.sigmoid(model(torch.as_tensor(np.asarray(x[i:i + bs, None], np.float32), device=dev))).float().cpu()
           for i in range(0, len(x), bs)]
    return check_finite(torch.cat(out).numpy() if out else np.zeros(0, np.float32), "HFrEF probabilities")


@torch.inference_mode()
def restore(restorer: Restorer3D, x: np.ndarray) -> np.ndarray:
    """The proxy's restoration of corrupted patches (N, T, S, S)."""
    restorer = restorer.eval()
    return restorer(torch.as_tensor(np.asarray(x, np.float32)[:, None])).numpy()[:, 0]


def restoration_cases(restorer: Restorer3D, x: np.ndarray, seed: int) -> list[tuple]:
    """One patch (T, S, S) corrupted spatially (local shuffling and a covered patch) and temporally (a frame of
    noise), with the proxy's restorations: (title, original, corrupted, restored) frames for the paper's Fig. 3."""
    g = rng(seed)
    spatial = corrupt(x, [random_local_shuffle(x, g), random_patch_cover(x, g)])
    cover = random_frame_cover(x, g)
    temporal = corrupt(x, [cover])
    restored = restore(restorer, np.stack([spatial, temporal]))
    t = cover.boxes[0][0]
    return [("spatial", x[0], spatial[0], restored[0][0]),
            (f"temporal (frame {t})", x[t], temporal[t], restored[1][t])]


def save(trained: Learner | nn.Module, path: str | Path) -> Path:
    """Export a trained classifier (its network, no data) for `load` / `predict`."""
    return export(trained, path)


def save_folds(kept: dict, folder: Path) -> dict:
    """Every (row, fold) classifier exported to `folder` as `<row>_fold<k>.model`; SSLHF's by fold (the Predictor's)."""
    for (r, f), model in kept.items():
        save(model, folder / f"{r}_fold{f}.model")
    return {f: m for (r, f), m in kept.items() if r == "SSLHF"}


def load(path: str | Path) -> nn.Module:
    """An SSLHF (or ablation / baseline) classifier exported by notebook 05, ready for `predict`."""
    return load_exported(path, "SSLHF classifier", "notebook 05")


def pool_proxies(pool: np.ndarray, rows: list[str], cfg: SSLHFConfig, seed: int) -> tuple[dict, list[dict]]:
    """The restoration proxy of each row in `rows`, trained once on the unlabelled pool's patches, each judged on
    the same 32 pool patches held out by seed; the proxies by row and their log rows."""
    if len(pool) < 2 * cfg.proxy_bs:
        raise ValueError(f"the unlabelled pool has {len(pool)} patches; use proxy_data='folds' to train the proxy on "
                         "each fold's training patients")
    held = pool[rng(seed_for(seed, "sslhf", "proxy-held")).choice(len(pool), min(len(pool), 32), replace=False)]
    nets, logs = {}, []
    for r in rows:
        nets[r], log = pretrain(pool, held, cfg, PROXIES[r], r)
        logs.append(log)
    return nets, logs
