"""The SSLHF Predictor: a row's classifiers of every cross-validation fold with their patch settings; on a SAX
cine it finds the LV on the ED frame (through the segmentation Predictor), cuts a patch per LV slice, and
averages the patches' HFrEF probabilities (eq. 3) and then the folds' patient probabilities."""
from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np
from torch import nn

from ...learn import config_from
from ...models.sslhf import Classifier3D
from ...predictor import SEGMENTER, NotApplicable, Prediction
from ...predictor import Predictor as Base
from ...record import Cine
from .data import PatchError, PatchSettings, ed_frame, preprocess
from .learner import scores


class Predictor(Base):
    """nets: 'fold<k>' -> classifier; prep: the patch settings; needs: {'segmenter':
    'segmentation'}."""

    method = "sslhf"
    views = ("SAX",)
    short_name = "SSLHF, notebook 05"
    title = f"HFrEF vs HFpEF ({short_name})"
    roles = {r"fold\d+": (Classifier3D,)}

    def wanted(self) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
        """A classifier per fold, its patch settings, and the run's segmenter (to find the LV)."""
        return (r"fold\d+",), tuple(f.name for f in fields(PatchSettings)), {"segmenter": SEGMENTER}

    @classmethod
    def from_folds(cls, models: dict[int, nn.Module], row: str, prep: dict,
                   segmenter: str = "segmentation", provenance: dict | None = None) -> "Predictor":
        return cls({f"fold{k}": m.eval() for k, m in sorted(models.items())}, asdict(config_from(PatchSettings, prep)),
                   dict(segmenter=segmenter), provenance, row)

    def patches(self, cine: Cine) -> tuple[np.ndarray, list[int]]:
        """The classifier inputs of one SAX cine and their slice indices."""
        ed_labels = self.need("segmenter").labels(ed_frame(cine))[0]
        try:
            return preprocess(cine, ed_labels, **asdict(config_from(PatchSettings, self.prep)))
        except PatchError as e:
            raise NotApplicable(str(e)) from None

    def _predict(self, cines: list[Cine]) -> Prediction:
        c = cines[0]
        x, slices = self.patches(c)
        per_fold = np.stack([scores(net, x) for net in self.nets.values()])  # (folds, patches)
        out = Prediction(self.method, self.model, detail=dict(patches=per_fold.mean(0).tolist(), slices=slices,
                                                              folds=per_fold.mean(1).tolist()))
        out.add("HFrEF probability", float(per_fold.mean()), "", c.cine_id)
        return out

    def figure(self, prediction: Prediction, cines: dict[str, Cine]):
        """The HFrEF probability of each LV patch (the patient's is their mean)."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.5, 2.4))
        ax.bar([f"slice {s}" for s in prediction.detail["slices"]], prediction.detail["patches"], color="tab:red")
        ax.set(ylim=(0, 1), ylabel="HFrEF probability", title="per LV patch (mean of the folds)")
        return fig
