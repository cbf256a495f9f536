"""HFrEF vs HFpEF from SAX cines (SSLHF, Zhong et al., EMBC 2021), its four ablations and two 3D baselines.

Preprocessing (`data`): the LV found by notebook 01's segmenter on the ED frame, one patch per LV slice (a square
around the LV over the whole cycle, clipped and z-scored), labels by the paper's rule (LVEF < 50 %: HFrEF),
patient-grouped stratified 5-fold cross-validation. Models: a 3D U-Net-like restorer pretrained to undo local
pixel shuffling, patch covering and frame covering, whose encoder starts the classifier (max-pool and three fully
connected layers, weighted BCE); ablations A (no proxy), B-D (one corruption left out); MONAI's 3D ResNet-50 and
DenseNet-121 with GroupNorm.

The package exports `Study` (notebook 05's experiment: one step a cell, what the steps share named as cached
properties such as `hf_cohort`, `patches`, `cv`, `real_results`) and `Predictor` (every fold's classifier, their
HFrEF probabilities averaged); the rest lives in its modules (`crossval`, `data`, `evaluate`, `figures`,
`learner`, `real`: the real SAX patients' proxies, gate and tables).
"""
from . import crossval, data, evaluate, figures, learner, real  # noqa: F401  (reached as sslhf.<module>.<name>)
from .predictor import Predictor
from .study import Study

__all__ = ["Predictor", "Study"]
