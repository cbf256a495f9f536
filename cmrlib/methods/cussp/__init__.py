"""Mitral regurgitation from 4CH cines (CUSSP, Zhang et al., arXiv 2310.04871) and its two baselines.

Preprocessing (`valve`): the valve line between the segmented LA and LV (a linear SVM), a 64 x 64 patch around
its centre with the valve horizontal (an `Affine2D`), histogram equalisation over the LA's intensities. Models:
a ResNet-18 taking the patch cine's frames as channels, pretrained with Barlow Twins on unlabelled cines, then
either trained jointly with cross-entropy (CUSSP-1/2/3) or fine-tuned as a Siamese network with only its last
block trainable (CUSSP-SIAM, and -SIAM-25 on the frames ending at ES); baselines are a CNN-LSTM on whole-frame
crops and a random forest on Table-1 measures. The gate (`learner.probe`) holds each pretrained encoder against its
random start with a linear probe of frozen features.

The package exports `Study` (notebook 04's experiment: one step a cell, what the steps share named as cached
properties such as `patches`, `pretrained`, `deep_rows`, `scored`) and `Predictor` (the row validation ranks first,
with its patch settings and threshold: a 4CH cine -> MR probability); the rest lives in its modules (`curves`: the
pool-size and label-budget curves; `data`, `evaluate`, `figures`, `learner`, `real`: the real 4CH cines; `valve`).
"""
from . import curves, data, evaluate, figures, learner, real, valve  # noqa: F401  (reached as cussp.<module>.<name>)
from .predictor import Predictor
from .study import Study

__all__ = ["Predictor", "Study"]
