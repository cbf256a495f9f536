"""MVnet: mitral-valve insertion-point tracking in 2CH/4CH cines (Gonzales et al., JCMR 2021).

stage 1 regresses the two points on the whole frame fitted into 160 x 160; the standardisation (resample to
0.75 mm, valve horizontal, apex down, crop 118 x 162) is one invertible `Affine2D` per cine; stage 2 regresses
on the standardised frames and repeating it gives 1+2+2. Test-time crops and temporal smoothing are chosen on
validation cines (`choose_inference`); the `Predictor` keeps them with each view's tracker and gives MAPSE, s', e'
and a'. Points are (x, y) pixels in `cmrlib.record.LANDMARKS` order.

The package exports `Study` (notebook 03's experiment: one step a cell, what the steps share named as cached
properties such as `data`, `trackers`, `test_results`) and `Predictor` (the trackers with their inference
settings); the rest lives in its modules (`data`, `evaluate`, `figures`, `geometry`, `learner`, `predict`,
`real`: the real cines and the 4CH tracker fine-tuned on one demo subject).
"""
from . import data, evaluate, figures, geometry, learner, predict, real  # noqa: F401  (mvnet.<module>.<name>)
from .predictor import Predictor
from .study import Study

__all__ = ["Predictor", "Study"]
