"""Training one stage and both stages of a view, with the profile's model size and schedule (`MVConfig`)."""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from torch import nn

from ...learn import callbacks, device, export, fit_or_reuse
from ...utils import atomic_write_text, seed_for, seeded
from .data import Aug, PointFrames, Track
from .geometry import S1_SIZE, MVnetError
from .predict import MVnet, load, model_path, predict_all


def point_error_px(pred: torch.Tensor, targ: torch.Tensor, size: tuple[int, int] = S1_SIZE) -> torch.Tensor:
    """Mean Euclidean point error in the stage's pixels (metric shown while training)."""
    h, w = size
    s = pred.new_tensor([w / 2, h / 2])
    return ((pred.view(-1, 2, 2) - targ.view(-1, 2, 2)) * s).norm(dim=-1).mean()


def stage_learner(train: PointFrames, valid: PointFrames, model: nn.Module, bs: int = 32, lr: float = 1e-4):
    """A fastai Learner for one stage: MSE loss, Adam, the point error (px) as metric."""
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from fastai.losses import MSELossFlat
    from fastai.optimizer import Adam

    dls = DataLoaders(DataLoader(train, bs=bs, shuffle=True, drop_last=len(train) > bs),
                      DataLoader(valid, bs=bs * 2), device=device())
    metric = partial(point_error_px, size=train.size)
    metric.__name__ = "err_px"
    return Learner(dls, model, loss_func=MSELossFlat(), opt_func=Adam, lr=lr, metrics=[metric],
                   cbs=callbacks("MVnet"))


def train_stage(train_tracks: Sequence[Track], valid_tracks: Sequence[Track], stage: int, model: nn.Module,
                epochs: int = 10, bs: int = 32, lr: float = 1e-4, schedule: str = "fit", perturb_mm: float = 6.0,
                aug: Aug | None = None, seed: int = 0, quiet: bool = False, frames_per_cine: int | None = None):
    """Train one stage and return its Learner (`schedule` 'fit' = constant lr as the paper, 'one_cycle').

    frames_per_cine: frames drawn per training cine and epoch (None: all; consecutive frames are near-duplicates,
    so fewer frames per epoch and more epochs see more augmentations for the same compute).
    """
    aug = Aug() if aug is None else aug
    pm = perturb_mm if stage == 2 else 0.0
    tr = PointFrames(train_tracks, stage, aug, pm, seed, frames_per_cine=frames_per_cine)
    va = PointFrames(valid_tracks, stage, None, pm, seed_for(seed, "valid"), fixed=True,
                     frames_per_cine=frames_per_cine)
    if schedule not in ("fit", "one_cycle"):
        raise MVnetError(f"unknown schedule {schedule!r}; expected 'fit' or 'one_cycle'")
    learn = stage_learner(tr, va, model, bs, lr)
    fit = learn.fit_one_cycle if schedule == "one_cycle" else learn.fit
    with (learn.no_bar() if quiet else contextlib.nullcontext()), (learn.no_logging() if quiet else contextlib.nullcontext()):
        fit(epochs, lr)
    return learn


@dataclass
class MVConfig:
    """What one MVnet training run uses (a profile's model size and schedule)."""

    arch: str = "tiny"
    widths: tuple[int, ...] = (16, 32, 64, 128)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    head: str = "pool"
    coords: bool = False
    pretrained: bool = False
    epochs1: int = 10
    epochs2: int = 10
    bs: int = 32
    lr: float = 1e-4
    schedule: str = "fit"
    perturb_mm: float = 6.0
    frames_per_cine: int | None = None
    n_refine: int = 2
    window2: int | None = 2  # stage-2 soft-argmax: inference over +-window2 cells around the peak (None: whole map)
    smooth: int | None = None  # Savitzky-Golay window (frames) over each pass's track (None: per-frame points as is)
    tta: float | None = None  # last stage-2 pass: average crops shifted by +-tta standardised px (None: one crop)
    seed: int = 0

    def model(self, stage: int = 1) -> nn.Module:
        """A fresh regressor for `stage` (stage 1 keeps the whole-map soft-argmax: its maps can be multi-modal)."""
        from ...models.regress import point_regressor

        m = point_regressor(self.arch, 4, 1, self.pretrained, tuple(self.widths), tuple(self.blocks), self.head,
                            self.coords, self.window2 if stage == 2 else None)
        return m.to(memory_format=torch.channels_last)  # ~25 % faster convolutions on CPU


def fit(train: Sequence[Track], valid: Sequence[Track], cfg: MVConfig, view: str = "",
        models_dir: str | Path | None = None, prefix: str = "A", quiet: bool = False,
        epochs: tuple[int, int] | None = None, finish=None) -> tuple["MVnet", pd.DataFrame]:
    """Train stage 1 then stage 2 for one view, export both Learners into `models_dir` (or hand each to
    `finish(learn, path)`, `cmrlib fit`'s export, whose validation loss the log keeps), and return the tracker and a
    log table."""
    e1, e2 = epochs or (cfg.epochs1, cfg.epochs2)
    models, log = [], []
    for stage, ep in ((1, e1), (2, e2)):
        # by view and stage, not by convention: the A / B / mixed models start alike, so only their labels differ
        t0 = time.perf_counter()
        with seeded(seed_for(cfg.seed, "mvnet", view, "stage", stage, "init")):
            learn = train_stage(train, valid, stage, cfg.model(stage), ep, cfg.bs, cfg.lr, cfg.schedule,
                                cfg.perturb_mm, seed=seed_for(cfg.seed, "mvnet", view, "stage", stage, "data"),
                                quiet=quiet, frames_per_cine=cfg.frames_per_cine)
        loss, err = learn.validate() if len(valid) else (float("nan"), float("nan"))
        if finish is not None:
            loss = finish(learn, model_path(models_dir or ".", view, stage, prefix))[0]
        elif models_dir is not None:
            export(learn, model_path(models_dir, view, stage, prefix))
        log.append(dict(prefix=prefix, view=view, stage=stage, epochs=ep, n_train_frames=len(learn.dls.train.dataset),
                        valid_loss=float(loss), valid_err_px=float(err), seconds=time.perf_counter() - t0))
        models.append(learn.model)
    return MVnet(models[0], models[1], view, cfg.n_refine, cfg.smooth, cfg.tta), pd.DataFrame(log)


INFERENCE_ONLY = ("n_refine", "smooth", "tta")  # MVConfig fields that do not change a trained model


def fit_or_load(train: Sequence[Track], valid: Sequence[Track], cfg: MVConfig, view: str, models_dir: str | Path,
                prefix: str = "A", quiet: bool = False, epochs: tuple[int, int] | None = None,
                retrain: bool = False, cohort: str = "", finish=None) -> tuple[MVnet, pd.DataFrame]:
    """`fit`, or the tracker `models_dir` already holds when it was trained with the same settings and cines of the
    same cohort (`CohortStore.fingerprint`; each stage seeds itself, so a loaded tracker is the one training would
    give again): `learn.fit_or_reuse` on the stage-1 model, the log beside it."""
    settings = dict({k: v for k, v in dataclasses.asdict(cfg).items() if k not in INFERENCE_ONLY}, view=view,
                    prefix=prefix, epochs=list(epochs or (cfg.epochs1, cfg.epochs2)), cohort=cohort,
                    train=[t.subject for t in train], valid=[t.subject for t in valid])
    if finish is not None:  # `cmrlib fit`: trained, each stage handed to `finish`
        return fit(train, valid, cfg, view, models_dir, prefix, quiet, epochs, finish)
    first, log_file = model_path(models_dir, view, 1, prefix), Path(models_dir) / f"{prefix}_{view}_log.csv"
    (tracker, log), _, _ = fit_or_reuse(
        first, settings, lambda: fit(train, valid, cfg, view, models_dir, prefix, quiet, epochs),
        retrain=retrain, reuse=log_file.exists() and model_path(models_dir, view, 2, prefix).exists(),
        load=lambda _: (load(models_dir, view, prefix, cfg.n_refine, cfg.smooth, cfg.tta), pd.read_csv(log_file)),
        save=lambda made, _: atomic_write_text(log_file, made[1].to_csv(index=False)))
    return tracker, log


def convention_predictions(views: Sequence[str], names: Sequence[str], make, tests: dict, timer
                           ) -> tuple[dict, list]:
    """Each annotation convention's trackers (`make(view, name)`: trained or reused, with its log) on the test cines
    (`tests`: view -> tracks), timed per convention: the predictions by convention and view, and the logs."""
    preds, logs = {}, []
    for name in names:
        with timer(f"trackers, convention {name}"):
            made = {v: make(v, name) for v in views}
            logs += [log for _, log in made.values()]
            preds[name] = predict_all({v: tr for v, (tr, _) in made.items()}, tests)
    return preds, logs

