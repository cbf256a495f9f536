"""CUSSP's training stages as fastai Learners: Barlow Twins pretraining on unlabelled patch cines, the joint
Barlow + cross-entropy rows (CUSSP-1/2/3), the Siamese fine-tuning of the last block then the MLP (CUSSP-SIAM),
the CNN-LSTM baseline, and the random-forest baseline on Table-1 measures (scikit-learn)."""
from __future__ import annotations

import math
import time
import copy
from dataclasses import dataclass
from pathlib import Path

import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.learner import Learner
from torch import nn

from ...learn import (ValidateLast, WeightedBCE, attempt, callbacks, check_finite, export, fit_or_reuse, history,
                      pos_weight)
from ...learn import dataloaders as shared_loaders
from ...learn import load as load_exported
from ...models.cussp import CNNLSTM, CUSSPNet, barlow_twins_loss, contrastive_loss
from ...utils import seed_for, seeded
from .data import Labelled, PatchAug, SiamesePairs, TwinViews
from ...modelfile import architecture

# rows of the paper's Table 2 -> (Barlow weight, cross-entropy weight) of the joint objective
JOINT_WEIGHTS = {"CUSSP-1": (0.9, 0.1), "CUSSP-2": (0.5, 0.5), "CUSSP-3": (0.1, 0.9)}
SUPERVISED = "ResNet-18-supervised"  # a row beyond the paper's table: no pretraining, labelled cines only


@dataclass(frozen=True)
class CUSSPConfig:
    """Every training setting of notebook 04 (the profiles set them)."""

    width: int = 64                       # ResNet-18 first-stage width (64: the paper's 512-d output)
    stem: str = "authors"                 # "authors": 3x3 stride-1 first convolution, no max-pool; "torchvision"
    input_px: int | None = 32             # the encoder sees the patch's central pixels (authors' code: 32 of 64)
    proj_dims: tuple = (2048, 2048)       # Barlow Twins projector
    hidden: int = 256                     # MLP head
    lambd: float = 5e-3                   # Barlow Twins off-diagonal weight
    pretrain_steps: int = 200             # optimiser steps of Barlow Twins pretraining (whatever the pool size)
    pretrain_bs: int = 32
    pretrain_lr: float = 1e-4             # Adam, the authors' rate, reached after a linear warm-up
    pretrain_warmup: float = 0.3          # share of the pretraining steps spent warming up, then cosine annealing
    epochs: int = 15                      # CUSSP-1/2/3 and every classifier stage
    siam_epochs: int = 15
    bs: int = 16
    lr: float = 1e-3
    margin: float = 1.0                   # contrastive margin (unit-norm embeddings)
    cnn_growth: int = 12                  # CNN-LSTM DenseNet (32, (6, 12, 24, 16), 64 = DenseNet-121)
    cnn_blocks: tuple = (2, 2, 2)
    cnn_init: int = 16
    lstm_hidden: int = 64
    cnn_epochs: int = 20
    pretrained: bool = False              # ImageNet weights (local cache only) for the ResNet-18 / DenseNet-121
    bf16: bool = False                    # CPU bfloat16 autocast where the CPU computes it natively
    seed: int = 0


def dataloaders(train, valid, bs: int):
    """fastai DataLoaders over CUSSP's map-style datasets (`TwinViews`, `Labelled`, `SiamesePairs`: each draws
    its own augmentation from its seeded generator)."""
    return shared_loaders(train, valid, bs)


def _epochs_for(steps: int, n: int, bs: int) -> int:
    return max(1, math.ceil(steps / max(1, n // bs)))


class BarlowLoss:
    """The Barlow Twins loss on a model's (z1, z2, ...) output, in float32 whatever the autocast (its sums of
    squares over a 2048 x 2048 correlation matrix lose too much in bfloat16); the target is ignored."""

    def __init__(self, lambd: float = 5e-3):
        self.lambd = lambd

    def __call__(self, pred, _y):
        with torch.autocast(pred[0].device.type, enabled=False):
            return barlow_twins_loss(pred[0].float(), pred[1].float(), self.lambd)


class JointLoss:
    """w_bt * Barlow Twins + w_ce * weighted binary cross-entropy of both views (CUSSP-1/2/3)."""

    def __init__(self, w_bt: float, w_ce: float, lambd: float = 5e-3, pos_weight: float = 1.0):
        self.w_bt, self.w_ce, self.lambd, self.pos_weight = w_bt, w_ce, lambd, pos_weight

    def __call__(self, pred, y):
        z1, z2, l1, l2 = pred
        pw = torch.tensor(self.pos_weight, device=y.device)
        ce = (F.binary_cross_entropy_with_logits(l1, y, pos_weight=pw)
              + F.binary_cross_entropy_with_logits(l2, y, pos_weight=pw)) / 2
        return self.w_bt * BarlowLoss(self.lambd)(pred, y) + self.w_ce * ce


class ContrastiveLoss:
    """The Siamese stage's loss on a model's (e1, e2) output; the target is 1 for an unlike (non-MR, MR) pair."""

    def __init__(self, margin: float = 1.0):
        self.margin = margin

    def __call__(self, pred, different):
        return contrastive_loss(pred[0], pred[1], different, self.margin)


@architecture
class Classifier(nn.Module):
    """A network's `classify` as its forward (what the classifier Learner trains and exports)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.classify(x)


@architecture
class Siamese(nn.Module):
    """Both cines of a pair through the same encoder: (B, 2, F, S, S) -> (e1, e2)."""

    def __init__(self, net: CUSSPNet):
        super().__init__()
        self.net = net

    def forward(self, x):
        e = self.net.embed(x.flatten(0, 1)).view(x.shape[0], 2, -1)
        return e[:, 0], e[:, 1]


def _fit(learn: Learner, epochs: int, lr: float, what: str, warmup: float = 0.25) -> dict:
    """fit_one_cycle (a `warmup` share of linear warm-up, then cosine annealing; validated after the last epoch: no
    stage stops early or picks an epoch) and a summary row (seconds, last train/valid loss)."""
    t0 = time.perf_counter()
    learn.fit_one_cycle(epochs, lr, pct_start=warmup, cbs=[ValidateLast()])
    h = history(learn).iloc[-1]
    return dict(stage=what, epochs=epochs, train_s=round(time.perf_counter() - t0, 1),
                train_loss=float(h["train_loss"]), valid_loss=float(h["valid_loss"]))


def network(frames: int, cfg: CUSSPConfig) -> CUSSPNet:
    """A freshly initialised CUSSP network with the config's encoder, projector and head (seeded by the caller)."""
    return CUSSPNet(frames, cfg.width, cfg.proj_dims, cfg.hidden, cfg.pretrained, cfg.input_px, cfg.stem)


def pretrain(pool: np.ndarray, valid: np.ndarray, cfg: CUSSPConfig, aug: PatchAug, tag: str) -> tuple[CUSSPNet, dict]:
    """A Barlow Twins encoder trained for `cfg.pretrain_steps` steps on the unlabelled `pool` (N, F, S, S) with Adam
    at `cfg.pretrain_lr` after a linear warm-up; an empty pool returns the randomly initialised network (the 'no
    unlabelled data' point). The initialisation depends on the seed and the frame count only, so a pretrained
    encoder and its random yardstick start from the same weights."""
    with seeded(seed_for(cfg.seed, "cussp", "init", pool.shape[1])):
        net = network(pool.shape[1], cfg)
        if len(pool) < 2:
            return net, dict(stage=f"pretrain {tag}", epochs=0, train_s=0.0, n_cines=len(pool))
        dls = dataloaders(TwinViews(pool, aug, seed_for(cfg.seed, "cussp", "bt", tag)),
                          TwinViews(valid, aug, seed_for(cfg.seed, "cussp", "bt-valid", tag)), cfg.pretrain_bs)
        learn = Learner(dls, net, loss_func=BarlowLoss(cfg.lambd), wd=1e-4, cbs=callbacks("CUSSP", cfg.bf16))
        epochs = _epochs_for(cfg.pretrain_steps, len(pool), cfg.pretrain_bs)
        row = _fit(learn, epochs, cfg.pretrain_lr, f"pretrain {tag}", cfg.pretrain_warmup)
    return net, dict(row, n_cines=len(pool), steps=epochs * max(1, len(pool) // cfg.pretrain_bs))


@torch.inference_mode()
def features(net: CUSSPNet, x: np.ndarray, bs: int = 64) -> np.ndarray:
    """The encoder's pooled features (N, D) of cines as they are (no augmentation; BatchNorm in eval)."""
    was = net.training
    net.eval()
    dev = next(net.parameters()).device
    out = [net.embed(torch.as_tensor(np.asarray(x[i:i + bs], np.float32), device=dev)).float().cpu()
           for i in range(0, len(x), bs)]
    net.train(was)
    return check_finite(torch.cat(out).numpy() if out else np.zeros((0, net.encoder.out_features), np.float32),
                        "encoder features")


def probe(net: CUSSPNet, train: tuple, valid: tuple, seed: int = 0) -> float:
    """The gate before any downstream row: validation ROC-AUC of a logistic regression (standardised features, its
    L2 strength chosen by 5-fold cross-validation on training) on the frozen encoder's features; NaN when a split
    holds one class."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (xt, yt), (xv, yv) = train, valid
    yt, yv = np.asarray(yt, int), np.asarray(yv, int)
    if len(set(yt.tolist())) < 2 or len(set(yv.tolist())) < 2:
        return float("nan")
    folds = int(min(5, np.bincount(yt).min()))
    clf = LogisticRegressionCV(Cs=np.logspace(-3, 1, 5), cv=StratifiedKFold(max(2, folds), shuffle=True,
                                                                              random_state=seed),
                               scoring="roc_auc", class_weight="balanced", max_iter=2000, l1_ratios=(0.0,),
                               use_legacy_attributes=False)
    model = make_pipeline(StandardScaler(), clf).fit(features(net, xt), yt)
    return float(roc_auc_score(yv, model.predict_proba(features(net, xv))[:, 1]))


def _clone(net: CUSSPNet) -> CUSSPNet:
    """An independent copy, so every row starts from the same pretrained weights."""
    return copy.deepcopy(net)


def fit_joint(encoder: CUSSPNet, train: tuple, valid: tuple, cfg: CUSSPConfig, aug: PatchAug, row: str
              ) -> tuple[Learner, dict]:
    """CUSSP-1/2/3: the pretrained network trained on labelled cines with w_bt * Barlow + w_ce * cross-entropy
    (`JOINT_WEIGHTS[row]`), every layer trainable; returns the exported-ready classifier Learner."""
    w_bt, w_ce = JOINT_WEIGHTS[row]
    with seeded(seed_for(cfg.seed, "cussp", row)):
        net = _clone(encoder)
        (xt, yt), (xv, yv) = train, valid
        dls = dataloaders(Labelled(xt, yt, aug, twin=True, seed=seed_for(cfg.seed, row, "train")),
                          Labelled(xv, yv, aug, twin=True, seed=seed_for(cfg.seed, row, "valid")), cfg.bs)
        learn = Learner(dls, net, loss_func=JointLoss(w_bt, w_ce, cfg.lambd, pos_weight(yt)), wd=1e-4,
                        cbs=callbacks("CUSSP", cfg.bf16))
        log = _fit(learn, cfg.epochs, cfg.lr, row)
        return learner(net, train, valid, cfg, None), log


def learner(net: nn.Module, train: tuple, valid: tuple, cfg: CUSSPConfig, aug: PatchAug | None,
            row: str = "classifier") -> Learner:
    """A Learner whose model is `net.classify` with weighted BCE on labelled cines."""
    (xt, yt), (xv, yv) = train, valid
    dls = dataloaders(Labelled(xt, yt, aug, seed=seed_for(cfg.seed, row, "train")), Labelled(xv, yv), cfg.bs)
    return Learner(dls, Classifier(net), loss_func=WeightedBCE(pos_weight(yt)), wd=1e-4, cbs=callbacks("CUSSP", cfg.bf16))


def fit_siamese(encoder: CUSSPNet, train: tuple, valid: tuple, cfg: CUSSPConfig, aug: PatchAug, row: str
                ) -> tuple[Learner, list[dict]]:
    """CUSSP-SIAM: only the encoder's last block trainable; contrastive Siamese training on (non-MR, MR or
    non-MR) pairs, then the MLP (and that block) on the labelled cines with weighted cross-entropy."""
    with seeded(seed_for(cfg.seed, "cussp", row)):
        net = _clone(encoder).freeze_all_but_last_block()
        (xt, yt), (xv, yv) = train, valid
        if len(set(np.asarray(yv).tolist())) < 2:  # a tiny cohort's validation split may hold one class only
            xv, yv = xt, yt
        dls = dataloaders(SiamesePairs(xt, yt, aug, seed=seed_for(cfg.seed, row, "pairs")),
                          SiamesePairs(xv, yv, None, n_pairs=max(8, len(yv)),
                                       seed=seed_for(cfg.seed, row, "valid-pairs")), cfg.bs)
        siam = Learner(dls, Siamese(net), loss_func=ContrastiveLoss(cfg.margin), wd=1e-4,
                       cbs=callbacks("CUSSP", cfg.bf16))
        logs = [_fit(siam, cfg.siam_epochs, cfg.lr, f"{row} siamese")]
        learn = learner(net, train, valid, cfg, aug, row)
        logs.append(_fit(learn, cfg.epochs, cfg.lr, f"{row} classifier"))
    return learn, logs


def fit_supervised(train: tuple, valid: tuple, cfg: CUSSPConfig, aug: PatchAug, row: str = SUPERVISED
                   ) -> tuple[Learner, dict]:
    """Beyond the paper: the same ResNet-18 and head trained on the labelled cines alone, from a random start
    with every layer trainable (what the self-supervised rows must beat to earn their pretraining)."""
    with seeded(seed_for(cfg.seed, "cussp", row)):
        learn = learner(network(train[0].shape[1], cfg), train, valid, cfg, aug, row)
        return learn, _fit(learn, cfg.epochs, cfg.lr, row)


def fit_cnn_lstm(train: tuple, valid: tuple, cfg: CUSSPConfig, aug: PatchAug) -> tuple[Learner, dict]:
    """The CNN-LSTM baseline on centre-of-mass crops, trained end to end with weighted cross-entropy."""
    with seeded(seed_for(cfg.seed, "cussp", "CNN-LSTM")):
        net = CNNLSTM(cfg.cnn_growth, cfg.cnn_blocks, cfg.cnn_init, cfg.lstm_hidden, cfg.pretrained)
        learn = learner(net, train, valid, cfg, aug, "CNN-LSTM")
        return learn, _fit(learn, cfg.cnn_epochs, cfg.lr, "CNN-LSTM")


def fit(row: str, encoders: dict[str, CUSSPNet], train: tuple, valid: tuple, cfg: CUSSPConfig, aug: PatchAug
        ) -> tuple[Learner, list[dict]]:
    """Train one deep row of Table 2 from the pretrained `encoders` ("cycle", "window"): CUSSP-1/2/3 (joint
    objective), CUSSP-SIAM / -SIAM-25 (Siamese, then classifier), CNN-LSTM (no encoder; `train` holds crops) or
    the supervised ResNet-18 beyond the paper (no encoder used)."""
    if row in JOINT_WEIGHTS:
        learn, log = fit_joint(encoders["cycle"], train, valid, cfg, aug, row)
        return learn, [log]
    if row in ("CUSSP-SIAM", "CUSSP-SIAM-25"):
        return fit_siamese(encoders["window" if row.endswith("-25") else "cycle"], train, valid, cfg, aug, row)
    if row == "CNN-LSTM":
        learn, log = fit_cnn_lstm(train, valid, cfg, aug)
        return learn, [log]
    if row == SUPERVISED:
        learn, log = fit_supervised(train, valid, cfg, aug)
        return learn, [log]
    raise ValueError(f"unknown CUSSP row {row!r}; expected one of {list(INPUTS)}")


def fit_row(row: str, encoders: dict[str, CUSSPNet], inputs, cfg: CUSSPConfig, aug: PatchAug, timer
            ) -> tuple[Learner | None, list[dict], dict | None]:
    """One deep row of Table 2 on its input's training and validation cines (`inputs`, a `data.Inputs`), timed by
    `timer(row)`: its Learner and log rows, or the record of why it did not train (one class, no encoder, a loss
    that is not finite)."""
    inp = INPUTS[row]
    train = inputs.xy(inp, "train")
    if len(set(train[1].tolist())) < 2:
        return None, [], dict(method="CUSSP", row=row, status="not trained",
                              reason=f"{len(train[1])} training cines of one class or none")
    if row not in (SUPERVISED, "CNN-LSTM") and inp not in encoders:
        return None, [], dict(method="CUSSP", row=row, status="not trained", reason=f"no {inp} encoder")
    with timer(row):
        done, failure = attempt(dict(method="CUSSP", row=row), fit, row, encoders, train, inputs.xy(inp, "valid"),
                                cfg, aug)
    return (None, [], failure) if failure else (*done, None)


def fit_rows(fit_one) -> tuple[dict, list[dict], list[dict]]:
    """Every deep row of Table 2 (`fit_one(row)`: its Learner, log rows and failure or None), the supervised
    ResNet-18 first (the gate reads it); the Learners by row, their log rows and the rows that did not train."""
    nets, logs, failed = {}, [], []
    for r in [SUPERVISED, *(r for r in INPUTS if r != SUPERVISED)]:
        learn, rows, failure = fit_one(r)
        if failure:
            failed.append(failure)
            continue
        nets[r] = learn
        logs += rows
    return nets, logs, failed


def pretrain_inputs(pools, encoder) -> tuple[dict, list[dict], list[dict]]:
    """A Barlow Twins encoder per input from its unlabelled pool (`pools`: (input, pool) pairs, made one at a time;
    `encoder(pool, input, tag)`: pretrained, or its saved result); the encoders, their log rows and the inputs whose
    loss was not finite."""
    encoders, rows, failed = {}, [], []
    for inp, pool in pools:
        done, failure = attempt(dict(method="CUSSP", row=f"pretrain {inp}"), encoder, pool, inp, inp)
        if failure:
            failed.append(failure)
            continue
        encoders[inp], row = done
        rows.append(row)
    return encoders, rows, failed


# the input each deep row reads from a PatchSet
INPUTS = {"CNN-LSTM": "crops", **{r: "cycle" for r in JOINT_WEIGHTS}, "CUSSP-SIAM": "cycle", "CUSSP-SIAM-25": "window",
          SUPERVISED: "cycle"}


@torch.inference_mode()
def scores(model: nn.Module, x: np.ndarray, bs: int = 32) -> np.ndarray:
    """MR probabilities of (N, F, S, S) cines from a classifier (a `Classifier` or anything with `classify`)."""
    model = model.eval()
    f = model if isinstance(model, Classifier) else Classifier(model)
    dev = next(model.parameters()).device
    out = [torch.sigmoid(f(torch.as_tensor(np.asarray(x[i:i + bs], np.float32), device=dev))).float().cpu()
           for i in range(0, len(x), bs)]
    return check_finite(torch.cat(out).numpy() if out else np.zeros(0, np.float32), "MR probabilities")


def random_forest(X: pd.DataFrame, y: np.ndarray, n_iter: int = 30, folds: int = 10, seed: int = 0):
    """The RF baseline: 10-fold CV random search (ROC-AUC) over the paper's grid; the refitted best forest and
    the search's table."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold

    grid = dict(n_estimators=list(range(10, 101, 10)), max_depth=list(range(2, 17)),
                max_features=["sqrt", "log2"], min_samples_leaf=list(range(2, 9)))
    folds = int(min(folds, np.bincount(np.asarray(y, int)).min()))
    if folds < 2:
        raise ValueError(f"the random forest's cross-validation needs 2 cines of each class; got {np.bincount(y)}")
    search = RandomizedSearchCV(RandomForestClassifier(random_state=seed), grid, n_iter=n_iter, scoring="roc_auc",
                                cv=StratifiedKFold(folds, shuffle=True, random_state=seed), random_state=seed,
                                n_jobs=1)
    search.fit(X, y)
    return search.best_estimator_, pd.DataFrame(search.cv_results_)


def save(learn: Learner, path: str | Path) -> Path:
    """Export a trained classifier (no data) for `load` / `predict`."""
    return export(learn, path)


def load(path: str | Path) -> nn.Module:
    """A CUSSP or CNN-LSTM classifier exported by notebook 04, ready for `predict`."""
    return load_exported(path, "CUSSP classifier", "notebook 04")


def pretrained_encoder(pool: np.ndarray, valid: np.ndarray, cfg: CUSSPConfig, aug: PatchAug, tag: str, path: Path,
                       retrain: bool = False) -> tuple[CUSSPNet, dict]:
    """`pretrain` on `pool`, or its saved result when this pool, validation set and these settings made it; the
    encoder and its log row (`reused` marked)."""
    import hashlib

    from ...distributed import rank
    from ... import modelfile

    digest = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]
    settings = dict(config=cfg.__dict__, aug=aug.__dict__, pool=digest(pool), valid=digest(valid), tag=tag)
    made: dict = {}

    def fit():
        net, made["row"] = pretrain(pool, valid, cfg, aug, tag)
        return net

    def save(net, path):
        if rank() == 0:  # data-parallel: every process holds the same encoder, process 0 writes it
            modelfile.save(path, net, row=made["row"])

    net, reused, _ = fit_or_reuse(path, settings, fit, load=modelfile.load, save=save, retrain=retrain)
    if reused:
        net, meta = net
        return net, dict(meta["row"], reused=True)
    return net, dict(made["row"], reused=False)
