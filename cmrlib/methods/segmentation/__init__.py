"""Segmentation, a TernausNet11 per view: `dataloaders` (`cmrlib.data.seg_dls`), `learner`, `fit`, `load` (export
with `cmrlib.learn.export`), `predict` whole cines with a calibrated decision (`calibrate_prior`), `evaluate`
Dice / HD95 (Table-1 measures from its labels: `cmrlib.measure.subject_measures`).

Other methods use it only through its `Predictor` (both segmenters, their `labels(cine)` and Table-1 measures).

The package exports `Study` (notebook 01's experiment) and `Predictor` (the model with its preprocessing); the rest
lives in its modules (`evaluate`, `figures`, `learner`, `predict`, `recipes`).
"""
from . import evaluate, figures, learner, predict, recipes  # noqa: F401  (reached as segmentation.<module>.<name>)
from .predictor import Predictor
from .study import Study

__all__ = ["Predictor", "Study"]
