"""The segmentation Predictor: notebook 01's SAX and long-axis segmenters (each carries its frame geometry and
calibrated decision), and the Table-1 measures from their labels."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from ...labels import LV, RV
from ...learn import load
from ...models import UNet11
from ...measure import (UNITS, MeasureError, ed_es_from_curve, es_overshoot, la_measures, ra_measures, sax_measures,
                       volume_curve)
from ...predictor import NotApplicable, Prediction
from ...predictor import Predictor as Base
from ...record import Cine
from ...plausible import MIN_CYCLE
from ...plots import curve_plot, overlay, shown_frame
from .learner import as_model
from .predict import encoder_features, mean_entropy
from .stored import cine_key, reading, segmented

KINDS = {"SAX": "SAX", "2CH": "LAX", "3CH": "LAX", "4CH": "LAX"}  # which segmenter reads a view
MEMO_CINES = 4  # cines whose labels a Predictor keeps (one patient's views)
PHANTOM_SAX = "01/models/seg_sax.model"  # notebook 01's phantom-only SAX model in a run folder: it never saw a patient


class Predictor(Base):
    """nets: 'SAX' and/or 'LAX' segmenters. `labels(cine)` is what other methods use to find the heart."""

    method = "segmentation"
    views = ("SAX", "2CH", "4CH")
    short_name = "segmentation, notebook 01"
    title = f"Volumes, function and mass ({short_name})"
    remark = ("ED and ES here are the frames of the largest and smallest LV volume in this segmentation; "
              "notebook 02's ED/ES detector names its own, checked on real cines of its own.")
    roles = {"SAX|LAX": (UNet11,)}
    labels_folder: Path | None = None  # where every cine's labels are kept (`keep_labels_in`); None: in memory only

    def wanted(self) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
        """A SAX or a long-axis segmenter, or both."""
        return ("SAX|LAX",), (), {}

    @classmethod
    def from_models(cls, segmenters: dict, provenance: dict | None = None,
                    uncertainty_p95: dict[str, dict[str, float]] | None = None) -> "Predictor":
        """From notebook 01's segmenters by kind (Learners or modules); `uncertainty_p95`: per kind, each structure's
        95th-percentile entropy on validation cines (`uncertainty_reference`), the yardstick of a new cine's."""
        prep = {"uncertainty_p95": uncertainty_p95} if uncertainty_p95 else {}
        return cls({k: as_model(m).eval() for k, m in segmenters.items()}, prep, provenance=provenance,
                   model=" + ".join(f"{k} segmenter" for k in segmenters))

    @classmethod
    def phantom_only(cls, run_dir) -> "Predictor | None":
        """Notebook 01's phantom-only SAX segmenter of a run folder (`PHANTOM_SAX`), or None when it has none."""
        path = Path(run_dir) / PHANTOM_SAX
        if not path.exists():
            return None
        return cls({"SAX": load(path, "SAX segmenter", "notebook 01")}, model="phantom-only SAX segmenter")

    def cross_fitted(self, run_dir):
        """This Predictor with notebook 01's cross-fitted SAX segmenters of a run folder in turn, each patient read by
        the fold model that never saw it (`crossfit.CrossFitted`); None when the run has none."""
        from .crossfit import load as load_crossfit

        return load_crossfit(run_dir, self)

    def fine_tuned(self, cines: list[Cine], epochs: int, lr: float, seed: int = 0, bf16: bool = False) -> "Predictor":
        """A copy whose SAX segmenter is fine-tuned on these labelled SAX cines (a site's own contours,
        `learner.fine_tune`); this Predictor stays as it is."""
        from .learner import fine_tune

        net = fine_tune(self.nets["SAX"], cines, epochs, lr, seed, bf16=bf16)
        return type(self)({**self.nets, "SAX": net}, self.prep, self.needs, self.provenance, self.model)

    def plain(self) -> "Predictor":
        """A copy whose SAX segmenter reads each frame once, unmirrored and round the frame's centre: a third of the
        shipped reading's time on a two-frame stack, for a method that measures many stacks (CUSSP's forest)."""
        if "SAX" not in self.nets:
            return self
        net = copy.copy(self.nets["SAX"])  # its weights shared, its reading its own
        net.tta, net.centred = False, False
        return type(self)({**self.nets, "SAX": net}, self.prep, self.needs, self.provenance, self.model)

    def reads(self, view: str) -> bool:
        """Whether it holds the segmenter of this view (SAX, or LAX for the long-axis views)."""
        return KINDS.get(view) in self.nets

    def encoder_features(self, cine: Cine, slices: list[int]) -> np.ndarray:
        """(T, slices, C) the SAX segmenter's frozen encoder features of these slices (`predict.encoder_features`)."""
        if "SAX" not in self.nets or not cine.is_stack:
            raise NotApplicable("encoder features need a SAX segmenter and a SAX stack")
        return encoder_features(self.nets["SAX"], cine, slices)

    def forget(self) -> None:
        """Drop the labels kept from earlier cines (a benchmark that times segmenting the same cine again)."""
        self.__dict__.pop("_labelled", None)

    def __getstate__(self) -> dict:
        """Pickled (to a worker process) without the labels it keeps."""
        return {k: v for k, v in self.__dict__.items() if k != "_labelled"}

    def labels(self, cine: Cine, entropy: dict | None = None) -> np.ndarray:
        """Canonical labels at every frame of a cine, by the segmenter of its view (`entropy`: see `predict`). The
        last few cines' labels are kept by content, so a method that reads the segmentation after another (ED/ES's
        volume curve after the measures) does not segment the same cine again; with `keep_labels_in`, every cine's
        labels are kept in a folder, so the notebooks of one run segment a cine once."""
        if not self.reads(cine.view):
            raise NotApplicable(f"no {KINDS.get(cine.view, cine.view)} segmenter in this predictor (has "
                                f"{', '.join(self.nets)})")
        net = self.nets[KINDS[cine.view]]
        pixels = cine_key(cine)  # hashed once: the memo's key and the stored file's name
        key = (*pixels, id(net), *reading(net))  # the network by object: the memo of this Predictor's last cines
        memo = self.__dict__.setdefault("_labelled", {})
        if key not in memo:
            lab, acc = segmented(net, cine, self.labels_folder, key=pixels)
            lab.flags.writeable = False
            memo[key] = (lab, acc)
            while len(memo) > MEMO_CINES:
                memo.pop(next(iter(memo)))
        lab, acc = memo[key]
        if entropy is not None:
            for k, (total, count) in acc.items():
                a = entropy.setdefault(k, [0.0, 0])
                a[0] += total
                a[1] += count
        return lab.copy()

    def keep_labels_in(self, folder: str | Path) -> "Predictor":
        """Keep the labels of every cine this Predictor segments in `folder` (a run's `labels/`), each file named by
        what the labels depend on (`stored.stored_name`), and read them from there again: this Predictor, changed."""
        self.labels_folder = Path(folder)
        return self

    def _predict(self, cines: list[Cine]) -> Prediction:
        out = Prediction(self.method, self.model)
        labelled, sums = {}, {}
        for c in cines:
            if KINDS[c.view] in self.nets:
                sums[c.view] = {}
                labelled[c.view] = (c, self.labels(c, sums[c.view]))
        if not labelled:
            raise NotApplicable(f"no segmenter for {', '.join(c.view for c in cines)} (has {', '.join(self.nets)})")
        out.detail["labels"] = {c.cine_id: lab for c, lab in labelled.values()}
        out.detail["ed_es"] = {c.cine_id: ed_es_from_curve(volume_curve(lab, c.spacing, LV))  # max/min LV curve
                               for c, lab in labelled.values()}
        # mean softmax entropy (0-1) inside each structure, per view: over every frame (the report's check) and at
        # the ED and ES frames measured (what an interval in the 'entropy' scale is a multiple of)
        out.detail["uncertainty"] = {v: mean_entropy(acc) for v, acc in sums.items()}
        out.detail["uncertainty_ed_es"] = {v: mean_entropy(acc, out.detail["ed_es"][labelled[v][0].cine_id])
                                           for v, acc in sums.items()}
        ref = self.prep.get("uncertainty_p95", {})
        out.detail["uncertainty_p95"] = {v: ref[KINDS[v]] for v in sums if KINDS[v] in ref}
        for c, _ in labelled.values():
            for name, t in zip(("ED", "ES"), out.detail["ed_es"][c.cine_id]):
                out.add(f"{name} ({c.view})", t, "frame", c.cine_id)  # the LV volume curve's largest and smallest
        if "SAX" in labelled:
            c, lab = labelled["SAX"]
            try:
                m = sax_measures(lab, c.spacing, *out.detail["ed_es"][c.cine_id])
            except MeasureError as e:
                out.note = f"no SAX measures: {e}"
            else:
                for k, v in m.items():
                    if k not in ("ED", "ES"):
                        out.add(k, v, UNITS.get(k, ""), c.cine_id)
                out.detail["es_overshoot"] = es_overshoot(lab[m["ED"]], lab[m["ES"]], c.spacing)  # mL (`plausible`)
        if "4CH" in labelled:
            c4, l4 = labelled["4CH"]
            c2, l2 = labelled.get("2CH", (None, None))
            atria = {**la_measures(l2, None if c2 is None else c2.spacing, l4, c4.spacing),
                     **ra_measures(l4, c4.spacing)}
            for k, v in atria.items():
                out.add(k, v, UNITS.get(k, ""), c4.cine_id if c2 is None or k.startswith("RA")
                        else f"{c2.cine_id}+{c4.cine_id}")
        return out

    def figure(self, prediction: Prediction, cines: dict[str, Cine]):
        """Each cine's ED and ES frames with the segmentation's contours, and a SAX cycle's LV and RV volume curves
        with the ED and ES read from them: a curve that turns against its phase is a reading to check by eye."""
        import matplotlib.pyplot as plt

        labs, frames = prediction.detail.get("labels", {}), prediction.detail.get("ed_es", {})
        panels = [(cid, kind) for cid, lab in labs.items() for kind in ("ED", "ES", "curve")
                  if kind != "curve" or (cines[cid].view == "SAX" and len(lab) >= MIN_CYCLE)]
        widths = [4 if kind == "curve" else 3 for _, kind in panels]
        fig, axes = plt.subplots(1, len(panels), figsize=(sum(widths), 3), squeeze=False, width_ratios=widths,
                                 layout="constrained")
        for ax, (cid, kind) in zip(axes[0], panels):
            c, lab, (ed, es) = cines[cid], labs[cid], frames[cid]
            if kind == "curve":
                clock = c.frame_times  # drawn against time where it runs forward, else against the frame's number
                times = clock if np.isfinite(clock).all() and (np.diff(clock) > 0).all() else None
                curve_plot(ax, {name: volume_curve(lab, c.spacing, label) for name, label in (("LV", LV), ("RV", RV))},
                           times, marks={"ED": ed, "ES": es}, ylabel="volume (mL)", title=f"{c.view} volumes")
            else:
                t = ed if kind == "ED" else es
                overlay(ax, *shown_frame(c, t, lab), mode="contour", title=f"{c.view} {kind} (frame {t})")
        return fig
