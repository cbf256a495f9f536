"""Mitral regurgitation from 4CH cines (CUSSP, Zhang et al., arXiv 2310.04871) and its two baselines.

Preprocessing (`valve`): the valve line between the segmented LA and LV (a linear SVM), a 64 x 64 patch around
its centre with the valve horizontal (an `Affine2D`), histogram equalisation over the LA's intensities. Models:
a ResNet-18 taking the patch cine's frames as channels, pretrained with Barlow Twins on unlabelled cines, then
either trained jointly with cross-entropy (CUSSP-1/2/3) or fine-tuned as a Siamese network with only its last
block trainable (CUSSP-SIAM, and -SIAM-25 on the frames ending at ES); baselines are a CNN-LSTM on whole-frame
crops and a random forest on Table-1 measures. Verbs: `dataloaders` (fastai loaders over the seeded
datasets), `learner` (a classifier Learner), `pretrain` (Barlow Twins), `probe` (the gate: a linear probe of frozen
features), `fit` (one Table-2 row: `fit_joint`, `fit_siamese`, `fit_cnn_lstm`), `random_forest`, `load`,
`Predictor` (a 4CH cine -> MR probability), `evaluate` (Table 2 with bootstrap CIs).

The package exports `Study` (notebook 04's experiment) and `Predictor` (the model with its preprocessing); the rest
lives in its modules (`data`, `evaluate`, `figures`, `learner`, `valve`).
"""
from . import data, evaluate, figures, learner, valve  # noqa: F401  (reached as cussp.<module>.<name>)
from .predictor import Predictor
from .study import Study

__all__ = ["Predictor", "Study"]
