"""Pretraining the four MAE models as fastai Learners: AdamW (betas 0.9 / 0.95, weight decay 0.05), the learning rate
scaled by batch size (blr x bs / 256), a linear warm-up then a half-cosine, the best validation checkpoint kept.
MAE-ViT-B starts from scratch; MAE-tube, MAE-95 and HeartMAE start from its best checkpoint, as in the paper."""
from __future__ import annotations

import contextlib
import io
import time
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

import pandas as pd
from fastai.callback.schedule import ParamScheduler, SchedCos, SchedLin, combine_scheds
from fastai.callback.tracker import SaveModelCallback
from fastai.learner import Learner
from fastai.optimizer import Adam
from fastai.torch_core import distrib_barrier, rank_distrib
from torch import nn

from ...learn import callbacks, dataloaders, fit_or_reuse, history
from ...models.mae_st import MAESize, VideoMAE, check_target, mae_loss
from ... import modelfile
from ...utils import seed_for, seeded
from .data import CineSet, Clips

BASE = "MAE-ViT-B"
# the paper's four models: masking, ratio, the optical-flow weighted loss (eq. 2), and where the weights start
FAMILY = {BASE: dict(masking="random", ratio=0.90, weighted=False, init=None),
          "MAE-tube": dict(masking="tube", ratio=0.90, weighted=False, init=BASE),
          "MAE-95": dict(masking="random", ratio=0.95, weighted=False, init=BASE),
          "HeartMAE": dict(masking="random", ratio=0.90, weighted=True, init=BASE)}
RANDOM = "random encoder"   # the floor: the same network, never trained


@dataclass(frozen=True)
class HeartMAEConfig:
    """Every pretraining setting of notebook 06 (the profiles set them); the network's shape is `MAESize`."""

    size: int = 64
    frames: int = 16
    patch: int = 8
    tubelet: int = 4
    dim: int = 192
    depth: int = 6
    heads: int = 3
    dec_dim: int = 128
    dec_depth: int = 2
    dec_heads: int = 4
    pred_frames: int = 8
    load: int = 72                 # frames are stored at load x load; training crops min_side..load px
    min_side: int = 64
    epochs_base: int = 16          # MAE-ViT-B (the paper: 200)
    epochs: int = 8                # MAE-tube, MAE-95, HeartMAE from MAE-ViT-B (the paper: 100)
    warmup_epochs: int = 2         # linear warm-up of every row (the paper: 30, of 200 and of 100 epochs)
    bs: int = 16
    repeats: int = 4               # clips drawn from each cine per epoch (the paper: 4)
    blr: float = 1.5e-4            # base learning rate; lr = blr x bs / 256
    wd: float = 0.05
    target: str = "dataset"        # pixels as normalised by the training set (the paper) or per token ("token")
    bf16: bool = False
    seed: int = 0

    def __post_init__(self):
        check_target(self.target)  # at configuration, not at the first loss after preprocessing

    @property
    def shape(self) -> MAESize:
        """The network's shape."""
        return MAESize(**{f.name: getattr(self, f.name) for f in fields(MAESize)})

    @property
    def lr(self) -> float:
        """The paper's scaling rule."""
        return self.blr * self.bs / 256


class MAETask(nn.Module):
    """The MAE with one row's masking, so a Learner can call it on clips (the motion maps are the loss's data)."""

    def __init__(self, mae: VideoMAE, masking: str, ratio: float):
        super().__init__()
        self.mae, self.masking, self.ratio = mae, masking, ratio

    def forward(self, x):
        pred, mask = self.mae(x, self.ratio, self.masking)
        return pred.float(), mask, x


def mae_objective(weighted: bool, size: MAESize, target: str):
    """The loss of a row: eq. 1 (plain MSE on masked normalised pixels) or eq. 2 (weighted by 1 + W)."""
    def loss(out, w):
        pred, mask, x = out
        return mae_loss(pred, x, mask, size, w if weighted else None, target)
    return loss


def network(cfg: HeartMAEConfig, seed: int | None = None) -> VideoMAE:
    """A freshly initialised MAE of the configured shape, from `seed` (default: the config's)."""
    with seeded(cfg.seed if seed is None else seed):
        return VideoMAE(cfg.shape)


def row_seed(cfg: HeartMAEConfig, row: str) -> int:
    """One family row's seed: its initial weights, batch order and clip draws, whatever ran before it."""
    return seed_for(cfg.seed, "06", row)


def learner(row: str, cines: CineSet, cfg: HeartMAEConfig, mean: float, std: float, path: str | Path,
            init: VideoMAE | None = None) -> Learner:
    """The Learner of one family row on the training and validation views of `cines` (its initial weights and
    batch order from the caller's random state: `pretrain` seeds it by row)."""
    spec = FAMILY[row]
    seed = row_seed(cfg, row)
    mae = VideoMAE(cfg.shape)
    if init is not None:
        mae.load_state_dict(init.state_dict())
    kw = dict(size=cfg.size, frames=cfg.frames, mean=mean, std=std, min_side=cfg.min_side)
    train_rows = cines.rows("train")
    valid_rows = cines.rows("valid")
    if not len(train_rows):
        raise ValueError("no views of training subjects to pretrain on (the store's splits name none)")
    train = Clips(cines.take(train_rows), train=True, repeats=cfg.repeats, seed=seed, **kw)
    # a cohort without validation subjects checkpoints on its training views
    valid = Clips(cines.take(valid_rows if len(valid_rows) else train_rows), train=False, **kw)
    opt = partial(Adam, mom=0.9, sqr_mom=0.95, eps=1e-8, wd=cfg.wd, decouple_wd=True)
    return Learner(dataloaders(train, valid, cfg.bs), MAETask(mae, spec["masking"], spec["ratio"]),
                   loss_func=mae_objective(spec["weighted"], cfg.shape, cfg.target), opt_func=opt, path=Path(path),
                   model_dir=".", cbs=callbacks("HeartMAE", cfg.bf16))


def schedule(lr: float, warmup: float):
    """Linear warm-up to `lr` over the first `warmup` (a fraction) of training, then a half-cosine to zero."""
    warmup = min(max(warmup, 1e-3), 0.999)
    return combine_scheds([warmup, 1 - warmup], [SchedLin(lr * 1e-3, lr), SchedCos(lr, 0.0)])


def pretrain(row: str, cines: CineSet, cfg: HeartMAEConfig, mean: float, std: float, out: str | Path,
             init: VideoMAE | None = None) -> tuple[VideoMAE, dict]:
    """Train one family row; the checkpoint of best validation loss is kept (the paper keeps MAE-ViT-B's best)."""
    epochs = cfg.epochs_base if FAMILY[row]["init"] is None else cfg.epochs
    name = f"mae_{row}".replace(" ", "_")
    with seeded(row_seed(cfg, row)):
        learn = learner(row, cines, cfg, mean, std, out, init)
        t0 = time.perf_counter()
        with learn.no_bar(), learn.no_logging(), contextlib.redirect_stdout(io.StringIO()):  # "Better model found"
            learn.fit(epochs, cfg.lr, cbs=[ParamScheduler({"lr": schedule(cfg.lr, cfg.warmup_epochs / epochs)}),
                                           SaveModelCallback(fname=name, with_opt=False)])
    distrib_barrier()  # data-parallel: every process has loaded the best epoch before process 0 removes it
    if not rank_distrib():
        (Path(out) / f"{name}.pth").unlink(missing_ok=True)  # the callback's copy of the best epoch, now loaded
    h = history(learn)
    summary = dict(model=row, epochs=epochs, clips_per_epoch=len(learn.dls.train.dataset),
                   train_s=round(time.perf_counter() - t0, 1), best_epoch=int(h["valid_loss"].idxmin()),
                   train_loss=float(h["train_loss"].iloc[-1]), valid_loss=float(h["valid_loss"].min()))
    return learn.model.mae.eval(), dict(summary, history=h)


def pretrain_family(cines: CineSet, cfg: HeartMAEConfig, mean: float, std: float, out: str | Path,
                    rows=tuple(FAMILY), reuse: bool = True
                    ) -> tuple[dict[str, VideoMAE], pd.DataFrame, dict[str, pd.DataFrame]]:
    """MAE-ViT-B first, the others from its best checkpoint, each saved as `out/<row>.model` by process 0; a row
    saved earlier with the same settings and intensity statistics is loaded instead (`learn.fit_or_reuse`, the one
    reuse rule; `reuse=False` trains every row). (models, summary per row, new loss histories)."""
    models, summaries, histories = {}, [], {}
    Path(out).mkdir(parents=True, exist_ok=True)
    for row in rows:
        init = FAMILY[row]["init"]
        if init and init not in models:
            raise ValueError(f"{row} starts from {init}: pretrain {init} first (rows={rows})")
        made: dict = {}

        def fit(row=row, init=init):
            model, made["summary"] = pretrain(row, cines, cfg, mean, std, out, models[init] if init else None)
            made["history"] = made["summary"].pop("history")
            return model

        def keep(model, path):
            if not rank_distrib():
                save(model, cfg, path, mean=mean, std=std, summary=made["summary"])

        model, reused, _ = fit_or_reuse(Path(out) / f"{row}.model", dict(row=row, config=asdict(cfg), mean=mean,
                                                                        std=std), fit, reuse=reuse, load=load,
                                        save=keep)
        if reused:
            model, _, meta = model
            summaries.append(dict(meta.get("summary", {}), model=row, reused=True))
        else:
            histories[row] = made["history"]
            summaries.append(dict(made["summary"], reused=False))
        models[row] = model
    return models, pd.DataFrame(summaries), histories


def save(model: VideoMAE, cfg: HeartMAEConfig, path: str | Path, **meta) -> Path:
    """The network with its config and what else made it (intensity `mean`, `std`; a training `summary`) as a model
    folder, written atomically."""
    return modelfile.save(path, model, config=asdict(cfg), **meta)


def load(path: str | Path) -> tuple[VideoMAE, HeartMAEConfig, dict]:
    """(model in eval mode, its config, what `save` kept with it: mean, std, summary) from `save`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no HeartMAE-family encoder here (notebook 06 saves them in 06/models)")
    model, meta = modelfile.load(path)
    if not isinstance(model, VideoMAE) or not isinstance(meta.get("config"), dict):
        raise modelfile.ModelFileError(f"{path.name}: not a HeartMAE-family encoder")
    try:
        cfg = HeartMAEConfig(**meta.pop("config"))
    except TypeError as e:
        raise modelfile.ModelFileError(f"{path.name}: its config does not fit HeartMAEConfig ({e})") from None
    return model.eval(), cfg, meta
