"""ED/ES frame detection by temporal regression (TempReg-Net, Kong et al., MICCAI 2016).

A network regresses, frame by frame, a synthetic volume-like curve built from the labelled ED and ES (eq. 4:
1 at ED, 0 at ES); ED and ES are its arg-max and arg-min. Everything is cyclic: a cine holds one cardiac cycle
that may start at any phase. The segmentation baseline (`predict.seg_detect`) reads the LV volume curve of the
run's segmentation Predictor.

The package exports `Study` (notebook 02's experiment: one step a cell, what the steps share named as cached
properties such as `sequences`, `models`, `test_results`) and `Predictor` (the network with its frame settings:
`predict(cines)`); the rest lives in its modules (`curves`, `data`, `evaluate`, `figures`, `learner`, `predict`,
`real`: the detectors on real SAX patients, out of fold, and the choice of the shipped one).
"""
from . import curves, data, evaluate, figures, learner, predict, real  # noqa: F401  (reached as edes.<module>.<name>)
from .predictor import Predictor
from .study import Study

__all__ = ["Predictor", "Study"]
