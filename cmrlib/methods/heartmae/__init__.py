"""HeartMAE (Kim et al., 2025): a spatiotemporal masked autoencoder whose loss is weighted by optical-flow motion,
its three siblings (MAE-ViT-B, MAE-tube, MAE-95), evaluated frozen by multiview attention-MIL multitask probes.

Preprocessing (`data`): every view of a subject (SAX slices, 2CH, 4CH) as square 8-bit frames with its Farneback
motion map W, cached once per run. Pretraining (`learner`): the network of `cmrlib.models.mae_st`, MAE-ViT-B from
scratch and the others from its best checkpoint. Features (`features`): K x T views per cine through a frozen
encoder (or a Kinetics video network when its weights are on disk). Probes (`heads`): gated ABMIL + linear heads per
task group (`tasks`). Baseline of expert features (`baselines`). The pretext and features gates on validation
views (`gates`).

The package exports `Study` (notebook 06's experiment: one step a cell, what the steps share named as cached
properties such as `views`, `family`, `probes`, `real_results`) and `Predictor` (the encoder with every group's
probe: one subject's cines -> every probed measure); the rest lives in its modules (`baselines`, `data`,
`evaluate`, `features`, `figures`, `gates`, `heads`, `learner`, `real`, `tasks`).
"""
from . import (baselines, data, evaluate, features, figures, gates, heads, learner, real, tasks)  # noqa: F401
from .predictor import Predictor
from .study import Study

__all__ = ["Predictor", "Study"]
