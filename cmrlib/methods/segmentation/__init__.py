"""Segmentation, a TernausNet11 per view: whole cines segmented with a calibrated decision (`predict`), Dice per
view and structure (`evaluate`), the Table-1 measures from its labels (`cmrlib.measure.subject_measures`).

Other methods use it only through its `Predictor` (both segmenters, their `labels(cine)` and Table-1 measures).

The package exports `Study` (notebook 01's experiment: one step a cell, what the steps share named as cached
properties such as `phantom_models`, `acdc_model`, `real_lax_models`) and `Predictor` (the segmenters with their
frame geometry); the rest lives in its modules (`evaluate`, `figures`, `learner`, `predict`, `recipes`, `real`:
the long-axis models on the UK Biobank demo's pseudo-labels; `stored`: a run's label store).
"""
from . import evaluate, figures, learner, predict, real, recipes, stored  # noqa: F401  (segmentation.<module>.<name>)
from .predictor import Predictor
from .study import Study

__all__ = ["Predictor", "Study"]
