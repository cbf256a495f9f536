"""The HeartMAE Predictor: a pretrained encoder, its intensity normalisation and view preprocessing, and the
multiview probes trained on its frozen features; on one subject's cines it gives every probed measure (with its
unit) and the probe's attention over the views."""
from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np
import pandas as pd

from ...learn import config_from
from ...models.mae_st import VideoMAE
from ...predictor import NotApplicable, Prediction
from ...predictor import Predictor as Base
from ...record import Cine
from .data import CineInputError, CineSet, ViewSettings, preprocess_cine
from .features import bags, extract, mae_encoder
from .heads import FittedProbe
from .learner import HeartMAEConfig
from .tasks import TASK_UNITS


class Predictor(Base):
    """nets: {'encoder'} and 'probe <group>' -> `FittedProbe`; prep: the view settings, the clip sampling
    (crops, clips), the pretraining's config and intensity mean/SD."""

    method = "heartmae"
    views = ("SAX", "2CH", "4CH")
    short_name = "HeartMAE, notebook 06"
    title = f"Measures from the foundation model ({short_name})"
    roles = {"encoder": (VideoMAE,), "probe .+": (FittedProbe,)}

    def wanted(self) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
        """The encoder with its view settings, clip sampling, config and intensity scaling, and a probe."""
        view = tuple(f.name for f in fields(ViewSettings))
        return ("encoder", "probe .+"), (*view, "crops", "clips", "config", "mean", "std"), {}

    @classmethod
    def from_model(cls, model: VideoMAE, cfg: HeartMAEConfig, mean: float, std: float, probes: dict[str, FittedProbe],
                   prep: dict, crops: int, clips: int, row: str, provenance: dict | None = None,
                   pool: str = "mean") -> "Predictor":
        settings = asdict(config_from(ViewSettings, prep)) | dict(
            crops=int(crops), clips=int(clips), config=asdict(cfg), mean=float(mean), std=float(std), pool=pool)
        return cls({"encoder": model.eval(), **{f"probe {g}": p for g, p in probes.items()}}, settings,
                   provenance=provenance, model=row)

    def features(self, cines: list[Cine]) -> tuple[np.ndarray, pd.DataFrame]:
        """(views, crops * clips, D) frozen features of a subject's cines, and the views' table."""
        p, cfg = self.prep, HeartMAEConfig(**self.prep["config"])
        views, why = [], []
        for c in cines:
            try:
                views += preprocess_cine(c, **asdict(config_from(ViewSettings, p)))
            except CineInputError as e:
                why.append(f"{c.view}: {e}")
        if not views:
            raise NotApplicable("; ".join(why) or "no view to read")
        table = pd.DataFrame(dict(view_id=[v[0] for v in views], subject="patient"))
        cs = CineSet(np.stack([v[1] for v in views]), np.stack([v[2] for v in views]), table)
        enc = mae_encoder(self.nets["encoder"], p["mean"], p["std"], p.get("pool", "mean"))
        return extract(enc, cs, cfg.size, cfg.frames, p["crops"], p["clips"], progress=False), table

    def _predict(self, cines: list[Cine]) -> Prediction:
        feats, table = self.features(cines)
        out = Prediction(self.method, self.model)
        h, mask, names = bags(feats, table, ["patient"])
        used = "+".join(sorted({c.view for c in cines}))
        for name, probe in self.nets.items():
            if not name.startswith("probe "):
                continue
            row = probe.predict(h, mask, ["patient"]).iloc[0]
            for task, v in row.items():
                out.add(task, v, "probability" if probe.kinds[task] == "cls" else TASK_UNITS.get(task, ""), used)
            out.detail[f"attention {name[6:]}"] = dict(zip(names[0], probe.pooled(h, mask)[1][0].tolist()))
        return out

    def figure(self, prediction: Prediction, cines: dict[str, Cine]):
        """How much attention the probes give each view (None when they keep none)."""
        import matplotlib.pyplot as plt

        from .figures import view_kind

        att = next((v for k, v in prediction.detail.items() if k.startswith("attention")), None)
        if not att:
            return None
        fig, ax = plt.subplots(figsize=(4.5, 2.4))
        pd.Series(att).groupby(view_kind).sum().plot.bar(ax=ax, color="tab:blue")
        ax.set(ylabel="attention", title="how much each view weighs")
        return fig
