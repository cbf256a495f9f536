"""The one way notebook 01 makes a segmenter: reused when its file holds it with these settings, else trained (or
made from weights trained side by side), set to read as the profile ships it, its decision calibrated on validation
cines, and exported."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from ...labels import NAMES
from ...learn import reusable
from .learner import as_model, load, made, read_as_shipped, summary_row, weights_side_by_side
from .predict import calibrate_prior, log_prior
from .recipes import recipe


def prior(model) -> pd.Series:
    """A model's decision log-prior by structure (what calibration set)."""
    return pd.Series(log_prior(model).astype(float), index=[NAMES[k] for k in sorted(NAMES)]).round(2)


@dataclass(frozen=True)
class Maker:
    """A profile's way of making models: its parameters and data, model and crop arguments; `reuse` is the Study's
    `fit_or_reuse`, `write` the notebook's table writer (calibration traces), `timer` its timer."""

    p: dict
    data_kw: dict
    model_kw: dict
    crop_kw: dict
    reuse: Callable
    write: Callable
    timer: Callable

    def reads_as_shipped(self, model, views, recipe_name: str) -> bool:
        """The profile's reading (`centred`, `tta`; `learner.read_as_shipped`) set on a model, in every comparison
        and in the Predictor alike; whether that changed how it reads."""
        flips = recipe(self.p["augmentation"][recipe_name])["aug"].get("flip_p", 0) > 0
        return read_as_shipped(model, views, self.p["centred"], self.p["tta"], flips)

    def calibrate(self, name: str, model, st, views, ids: list[str] | None = None) -> None:
        """Fit a model's decision log-prior on validation cines (never on test; `ids`: these, at most
        `calibrate_cines` of them) and keep it in the model (the trace written)."""
        n = self.p["calibrate_cines"]
        ids = (st.select(views, "valid", n) if ids is None else list(ids)[:n]) if n else []
        if not ids:
            return
        log_prior_, trace = calibrate_prior(model, st, ids, progress=False)
        as_model(model).log_prior = log_prior_
        self.write(trace, f"calibration_{name}.csv")
        none, best = trace["mean_dice"].iloc[0], trace["mean_dice"].max()
        print(f"{name}: decision log-prior {prior(model).to_dict()} (validation mean Dice {none:.4f} -> {best:.4f})")

    def __call__(self, name: str, st, views, epochs: int, recipe_name: str, path, settings: dict, finish=None,
                 data_kw=None, calibrate_on=None, calibrate_ids: list[str] | None = None, weights=None,
                 **fit_kw) -> tuple[object, dict]:
        """Model `name` reused (calibrated again when the profile reads it another way), or trained, calibrated and
        exported (by `finish` under `cmrlib fit`); the model and its summary row. data_kw: more `dataloaders`
        arguments, or a function giving them (called only when the model is trained). calibrate_on: the store whose
        validation cines (or `calibrate_ids`) calibrate its decision (default `st`). weights: a function giving the
        trained network's weights (called only when the model is made), instead of training. SAX models train on
        `crop_sax` windows where the profile sets it."""
        t0 = time.perf_counter()
        crop = self.crop_kw if list(views) == ["SAX"] else {}

        def train():
            data = {**self.data_kw, **recipe(self.p["augmentation"][recipe_name]),
                    **((data_kw() if callable(data_kw) else data_kw) or {}), **crop}
            model = made(name, st, views, epochs, self.p["lr"], data, {**fit_kw, **self.model_kw}, weights)
            self.reads_as_shipped(model, views, recipe_name)
            self.calibrate(name, model, calibrate_on or st, views, calibrate_ids)
            return model

        model, reused, finished = self.reuse(path, {**settings, **crop}, train, finish, load=load)
        if reused:
            print(f"{name}: reusing {path.name}, trained with these settings (retrain=True trains again)")
            if self.reads_as_shipped(model, views, recipe_name):  # its decision was fitted under another reading
                self.calibrate(name, model, calibrate_on or st, views, calibrate_ids)
        return model, summary_row(name, reused, time.perf_counter() - t0, finished)

    def side_by_side(self, specs: dict[str, tuple], client, store, extra_store=None, what: str = "networks"
                     ) -> dict[str, dict]:
        """The networks of `specs` (name -> (file, settings, `fit_weights` spec)) that no file holds with their
        settings yet, trained side by side (`learner.weights_side_by_side`): name -> weights."""
        todo = [(name, spec) for name, (path, settings, spec) in specs.items()
                if self.p.get("retrain") or not reusable(path, settings)]
        if not todo:
            return {}
        with self.timer(f"{what}, side by side (s)"):
            return weights_side_by_side(todo, client, store, extra_store, self.p["lr"], what)
