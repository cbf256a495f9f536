"""Segmentation learner (TernausNet11, Dice + cross-entropy, per-class Dice metrics), training, export and reload."""
from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import fastai.callback.progress  # noqa: F401  (progress bars)
from fastai.callback.schedule import ParamScheduler  # also patches in Learner.fit_one_cycle
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat, DiceLoss
from fastai.metrics import DiceMulti

from ...data import FrameGeometry, cine_dls
from ...data import seg_dls as dataloaders  # noqa: F401  (the method's feed: cmrlib.data's segmentation DataBlock)
from ...labels import NAMES
from ...learn import callbacks, poly_decay
from ...learn import load as load_exported
from ...models import unet11
from ...utils import seeded
from .recipes import recipe


class DiceCE(torch.nn.Module):
    """Soft Dice + cross-entropy over the class axis (robust to small structures and to class imbalance)."""

    def __init__(self, dice_weight: float = 1.0, axis: int = 1, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.ce = CrossEntropyLossFlat(axis=axis, weight=class_weights)
        self.dice = DiceLoss(axis=axis, smooth=1.0, reduction="mean")
        self.dice_weight = dice_weight

    def forward(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        return self.ce(pred, targ) + self.dice_weight * self.dice(pred, targ)

    def to(self, device):
        """The class weights to `device` too: fastai moves a module loss to the model's device before each fit."""
        self.ce.to(device)
        return super().to(device)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(x, dim=1)

    def decodes(self, x: torch.Tensor) -> torch.Tensor:
        return x.argmax(dim=1)


class ClassDice(DiceMulti):
    """Dice of one canonical label accumulated over the validation set (fastai metric named dice_<label>)."""

    def __init__(self, label: int, axis: int = 1):
        super().__init__(axis)
        self.label = label

    @property
    def name(self) -> str:
        return f"dice_{NAMES[self.label]}"

    @property
    def value(self):
        u = self.union.get(self.label, 0)
        return 2.0 * self.inter.get(self.label, 0) / u if u > 0 else float("nan")


def learner(dls, width: float = 0.25, pretrained: bool = False, bn: bool = True, dice_weight: float = 1.0,
                labels: Sequence[int] | None = None, path: str | Path = ".", bf16: bool = False, balance: bool = False,
                model: torch.nn.Module | None = None, **kwargs) -> Learner:
    """A fastai Learner for a TernausNet11 on `seg_dls` DataLoaders; the data geometry travels on the model.

    bf16: train with CPU bfloat16 autocast (`CPUBFloat16`). balance: weight the cross-entropy by inverse square-root
    class frequency (`class_weights`), so small structures (RA, RV in long axis) are learned early. model: train this
    network (its geometry kept) instead of a new one."""
    if model is None:
        model = unet11(n_classes=len(NAMES), width=width, pretrained=pretrained, bn=bn)
        model.geometry, model.views = getattr(dls, "geometry", FrameGeometry()), getattr(dls, "views", ())
    counts = _label_counts(dls)
    labels = [k for k in sorted(NAMES) if k and counts[k]] if labels is None else labels  # default: those present
    cbs = list(kwargs.pop("cbs", [])) + callbacks("segmentation", bf16)
    loss = DiceCE(dice_weight, class_weights=class_weights(counts) if balance else None)
    return Learner(dls, model, loss_func=loss, metrics=[ClassDice(l) for l in labels],
                   path=Path(path), model_dir=".", cbs=cbs, **kwargs)


def _label_counts(dls) -> np.ndarray:
    """Pixel count per canonical label over the training masks."""
    return sum(np.bincount(y.ravel(), minlength=len(NAMES)) for _, y, _ in dls.train.items)


def class_weights(counts: np.ndarray, cap: float = 10.0) -> torch.Tensor:
    """Inverse square-root frequency weights (mean 1 over the labels present, at most `cap`; absent labels 1)."""
    c = np.asarray(counts, dtype=float)
    w = np.ones_like(c)
    ok = c > 0
    w[ok] = 1.0 / np.sqrt(c[ok] / c[ok].sum())
    w[ok] = np.minimum(w[ok] / w[ok].mean(), cap)
    return torch.tensor(w, dtype=torch.float32)


def load(path: str | Path) -> torch.nn.Module:
    """A segmenter exported with `cmrlib.learn.export` (network, geometry, decision log-prior) on the CPU."""
    return load_exported(path, "segmenter", "notebook 01")


def fine_tune(model, cines: Sequence, epochs: int, lr: float, seed: int = 0, bs: int = 8, bf16: bool = False,
              recipe_name: str = "real") -> torch.nn.Module:
    """A copy of a trained segmenter fine-tuned on the labelled frames of real cines (a site's own contours) at its
    own geometry, its decision prior and test-time mirroring kept: the original is never changed."""
    net = copy.deepcopy(as_model(model)).train()
    geom = getattr(net, "geometry", None) or FrameGeometry()
    dls = cine_dls(cines, geom, bs=bs, seed=seed, **recipe(recipe_name))
    with seeded(seed):
        learn = learner(dls, model=net, bf16=bf16)
        with learn.no_bar(), learn.no_logging():  # the caller shows progress over its folds
            learn.fit_one_cycle(epochs, lr)
    return learn.model.eval()


MODEL_FILES = {"SAX": "seg_sax.model", "LAX": "seg_lax.model"}  # exported segmenters by kind, in a models folder


def model_file(folder: str | Path, kind: str) -> Path:
    """Where the exported segmenter of a kind ('SAX' or 'LAX': 2CH and 4CH) lives in a models folder."""
    return Path(folder) / MODEL_FILES[kind]


def as_model(model) -> torch.nn.Module:
    """The torch module inside a Learner (or the module itself)."""
    return model.model if isinstance(model, Learner) else model


SCHEDULES = ("one_cycle", "poly")  # fastai's one-cycle; nnU-Net's polynomial decay (`cmrlib.learn.poly_decay`)


def fit(dls, epochs: int, lr: float, width: float = 0.25, init=None, seed: int = 0, schedule: str = "one_cycle",
        quiet: bool = False, **kwargs) -> Learner:
    """`learner` + training from `seed` under a learning-rate `schedule` (`SCHEDULES`), optionally starting from
    another segmenter's weights (a network or its state dict: phantom pre-training); `quiet`: no progress bar or
    epoch table (a Dask worker's would land in the run's log)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    with seeded(seed):
        learn = learner(dls, width=width, **kwargs)
        if init is not None:
            learn.model.load_state_dict(init if isinstance(init, dict) else as_model(init).state_dict())
        with (learn.no_bar() if quiet else contextlib.nullcontext()), \
                (learn.no_logging() if quiet else contextlib.nullcontext()):
            if epochs > 0 and schedule == "poly":
                learn.fit(epochs, lr, cbs=ParamScheduler({"lr": poly_decay(lr)}))
            elif epochs > 0:
                learn.fit_one_cycle(epochs, lr)
    return learn


def made(name: str, st, views, epochs: int, lr: float, data: dict, fit_kw: dict, weights=None) -> Learner:
    """Segmenter `name` trained on `st`'s `views` (`data`: the `dataloaders` arguments), or made from the weights
    `weights()` gives (trained elsewhere, side by side)."""
    dls = dataloaders(st, views, **data)
    print(f"{name}: {len(dls.train_ds)} training / {len(dls.valid_ds)} validation frames")
    if weights is not None:
        return fit(dls, 0, lr, **{**fit_kw, "init": weights()})
    return fit(dls, epochs, lr, **fit_kw)


def summary_row(name: str, reused: bool, train_s: float, finished: tuple | None) -> dict:
    """A model's row in notebook 01's training summary: reused, or its training time (and, under `cmrlib fit`, the
    validation loss and file its export reports)."""
    if reused:
        return dict(model=name, reused=True)
    if finished is not None:
        valid_loss, file = finished
        return dict(model=name, train_s=train_s, valid_loss=valid_loss, file=file)
    return dict(model=name, train_s=train_s, reused=False)


def fit_weights(job: tuple[str, dict], store, extra_store, lr: float) -> dict:
    """One network of a batch trained where its task runs (a Dask worker, or this process) on one thread: `job` is
    (name, spec), spec's `views`, `data` (`dataloaders` arguments), `extra` (cine ids of `extra_store` joining the
    training frames), `epochs`, `init` (a state dict or None) and `fit` (`fit` arguments); its weights. Networks
    then train `workers` at a time where there are cores for them (on two vCPUs about as fast as one after the
    other on two threads: docs/notebooks/01)."""
    _, spec = job
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        extra = [extra_store.read(i) for i in spec.get("extra", ())]
        dls = dataloaders(store, spec["views"], **{**spec["data"], "progress": False},
                          **({"extra": extra} if extra else {}))
        learn = fit(dls, spec["epochs"], lr, init=spec.get("init"), quiet=True, **spec["fit"])
        return {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
    finally:
        torch.set_num_threads(threads)


def phantom_specs(p: dict, data_kw: dict, model_kw: dict, crop_kw: dict, cohort: str, models_dir: Path
                  ) -> dict[str, tuple]:
    """The phantom SAX and long-axis networks of a profile: name -> (file, settings (its reuse key), `fit_weights`
    spec); SAX trains on `crop_kw`'s windows where the profile sets them."""
    specs = {}
    for name, views, epochs, balance in (("sax", ["SAX"], p["epochs_sax"], False),
                                         ("lax", ["2CH", "4CH"], p["epochs_lax"], p["balance_lax"])):
        aug_kw, crop = recipe(p["augmentation"][name]), crop_kw if name == "sax" else {}
        settings = dict({**data_kw, **aug_kw}, views=views, epochs=epochs, lr=p["lr"], balance=balance,
                        frame_step=p["frame_step"], calibrate_cines=p["calibrate_cines"], cohort=cohort, **model_kw,
                        **crop)
        specs[name] = (model_file(models_dir, name.upper()), settings,
                       dict(views=views, epochs=epochs, fit=dict(model_kw, balance=balance),
                            data={**data_kw, **aug_kw, "frame_step": p["frame_step"], **crop}))
    return specs


def sax_real_settings(p: dict, real_kw: dict, model_kw: dict, crop_kw: dict, train: list[str],
                      calibrate: list[str] | None, cohort: str, acdc: str) -> dict:
    """What a network of the phantom + ACDC SAX recipe is trained with (its file's reuse key): its ACDC training
    and calibration cines, the cohorts' fingerprints and the profile's settings."""
    return dict({**real_kw, **recipe(p["augmentation"]["sax_real"])}, views=["SAX"],
                epochs=p["epochs_sax_real"], lr=p["lr"], frame_step=p["frame_step"],
                extra=train, real_share=p["sax_real_share"], phantom_frames=p["sax_real_frames"], init="sax",
                calibrate_cines=p["calibrate_cines"],
                calibrate_on="ACDC validation" if calibrate is None else calibrate,
                cohort=cohort, acdc=acdc, **model_kw, **crop_kw,
                **({"schedule": p["sax_real_schedule"]} if p["sax_real_schedule"] != "one_cycle" else {}))  # one-cycle: no key


def sax_real_data(p: dict, real_kw: dict, crop_kw: dict) -> dict:
    """The phantom + ACDC SAX recipe's data arguments besides its ACDC cines (`dataloaders`)."""
    return dict(real_kw, **recipe(p["augmentation"]["sax_real"]), **crop_kw, frame_step=p["frame_step"],
                max_frames=p["sax_real_frames"] or p["max_frames"], extra_share=p["sax_real_share"])


def lax_real_settings(p: dict, data_kw: dict, model_kw: dict, train: list[str], cohort: str) -> dict:
    """What the long-axis model fine-tuned on a demo subject's 4CH cines `train` is trained with (its file's reuse
    key): those cines, the cohort's fingerprint and the profile's settings."""
    return dict({**data_kw, **recipe(p["augmentation"]["lax_real"])}, views=["2CH", "4CH"],
                epochs=p["epochs_lax_real"], lr=p["lr"], balance=p["balance_lax"], frame_step=p["frame_step"],
                extra=list(train), real_share=p["real_share"], init="lax", calibrate_cines=p["calibrate_cines"],
                cohort=cohort, **model_kw)


def weights_side_by_side(jobs: list[tuple[str, dict]], client, store, extra_store, lr: float, what: str
                         ) -> dict[str, dict]:
    """The networks of `jobs` ((name, `fit_weights` spec)) trained side by side, one per Dask worker on one thread
    (one after the other in this process without workers): name -> weights."""
    from ...dask_tasks import map_tasks

    out = {}
    for (name, _), weights, err in map_tasks(fit_weights, jobs, client, args=(store, extra_store, lr), desc=what,
                                             unit="network"):
        if err is not None:
            raise err
        out[name] = weights
    return out


def read_as_shipped(model, views, centred: bool, tta: bool, learned_mirrored: bool) -> bool:
    """A SAX model reads round the heart where `centred` says so, and mirrors (`tta`) only if it learned from
    mirrored frames (a phantom model's RV is always on one side); whether that changed how it reads (a reused
    model's decision then needs calibrating again). Other views read as they are."""
    if list(views) != ["SAX"]:
        return False
    net = as_model(model)
    before = (bool(getattr(net, "centred", False)), bool(getattr(net, "tta", False)))
    net.centred, net.tta = bool(centred), bool(tta) and learned_mirrored
    return (net.centred, net.tta) != before
