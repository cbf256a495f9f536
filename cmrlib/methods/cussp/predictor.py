"""The CUSSP Predictor: a trained CUSSP (or CNN-LSTM) classifier with its patch settings and validation
threshold; on a 4CH cine it segments (through the segmentation Predictor), places the valve, cuts and equalises
the patch, and scores."""
from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np
from torch import nn

from ...learn import config_from
from ...measure import MeasureError
from ...models.cussp import CNNLSTM, CUSSPNet
from ...predictor import SEGMENTER, NotApplicable, Prediction
from ...predictor import Predictor as Base
from ...record import Cine
from ...plots import overlay
from .data import PatchSettings, preprocess
from .learner import INPUTS, Classifier, scores
from .valve import ValveError

PATCH_FIELDS = tuple(f.name for f in fields(PatchSettings))


class Predictor(Base):
    """nets: {'classifier'}; prep: the patch settings, `input` (cycle, window or crops) and the validation
    `threshold`; needs: {'segmenter': 'segmentation'}."""

    method = "cussp"
    views = ("4CH",)
    short_name = "CUSSP, notebook 04"
    title = f"Mitral regurgitation ({short_name})"
    roles = {"classifier": (CUSSPNet, Classifier, CNNLSTM)}

    def wanted(self) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
        """The classifier, its patch settings, input and threshold, and the run's segmenter (to find the valve)."""
        return ("classifier",), (*PATCH_FIELDS, "input", "threshold"), {"segmenter": SEGMENTER}

    @classmethod
    def from_model(cls, model: nn.Module, row: str, prep: dict, threshold: float,
                   segmenter: str = "segmentation", provenance: dict | None = None) -> "Predictor":
        """Row: a Table-2 row name (its input follows from it)."""
        settings = asdict(config_from(PatchSettings, prep)) | dict(input=INPUTS[row], threshold=float(threshold))
        return cls({"classifier": model.eval()}, settings, dict(segmenter=segmenter), provenance, row)

    def probability(self, cine: Cine) -> tuple[float, dict]:
        """The MR probability of one 4CH cine, and its preprocessed inputs."""
        labels = self.need("segmenter").labels(cine)
        try:
            p = preprocess(cine, labels, **asdict(config_from(PatchSettings, self.prep)))
        except (ValveError, MeasureError) as e:
            raise NotApplicable(f"no valve patch: {e}") from None
        if p[self.prep["input"]] is None:
            raise NotApplicable(f"{self.prep['input']} input unavailable: {p['window_error']}")
        return float(scores(self.nets["classifier"], np.asarray(p[self.prep["input"]])[None])[0]), p

    def _predict(self, cines: list[Cine]) -> Prediction:
        c = cines[0]
        prob, p = self.probability(c)
        out = Prediction(self.method, self.model, detail=dict(patch=p["cycle"]))
        out.add("MR probability", prob, "", c.cine_id)
        out.add("MR (at the validation threshold)", float(prob >= self.prep["threshold"]), "yes=1", c.cine_id)
        return out

    def figure(self, prediction: Prediction, cines: dict[str, Cine]):
        """Six frames of the valve patch the classifier read."""
        import matplotlib.pyplot as plt

        patch = np.asarray(prediction.detail["patch"])
        fig, axes = plt.subplots(1, 6, figsize=(12, 2.2))
        for ax, t in zip(axes, np.linspace(0, len(patch) - 1, 6).astype(int)):
            overlay(ax, patch[t], title=f"frame {t}")
        fig.suptitle("valve patch (LA above, LV below), equalised over the LA", fontsize=9)
        return fig
