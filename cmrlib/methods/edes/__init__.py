"""ED/ES frame detection by temporal regression (TempReg-Net, Kong et al., MICCAI 2016).

A network regresses, frame by frame, a synthetic volume-like curve built from the labelled ED and ES (eq. 4:
1 at ED, 0 at ES); ED and ES are its arg-max and arg-min. Everything is cyclic: a cine holds one cardiac cycle
that may start at any phase. Verbs: `dataloaders` (of `seq_items`), `learner`, `fit`, `load`, `predict` (a cine
-> curve, ED, ES; `Predictor` carries the frame settings with the network), `evaluate` (frame differences
per cine and method). The segmentation baseline (`seg_detect`) uses notebook 01's segmenters through the
segmentation Predictor.

The package exports `Study` (notebook 02's experiment) and `Predictor` (the model with its preprocessing); the rest
lives in its modules (`curves`, `data`, `evaluate`, `figures`, `learner`, `predict`).
"""
from . import curves, data, evaluate, figures, learner, predict  # noqa: F401  (reached as edes.<module>.<name>)
from .predictor import Predictor
from .study import Study

__all__ = ["Predictor", "Study"]
