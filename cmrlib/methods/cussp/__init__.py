"""Mitral regurgitation from 4CH cines (CUSSP, Zhang et al., arXiv 2310.04871) and its two baselines.

Preprocessing (`valve`): the valve line between the segmented LA and LV (a linear SVM), a 64 x 64 patch around
its centre with the valve horizontal (an `Affine2D`), histogram equalisation over the LA's intensities. Models:
a ResNet-18 taking the patch cine's frames as channels, pretrained with Barlow Twins on unlabelled cines, then
either trained jointly with cross-entropy (CUSSP-1/2/3) or fine-tuned as a Siamese network with only its last
block trainable (CUSSP-SIAM, and -SIAM-25 on the frames ending at ES); baselines are a CNN-LSTM on whole-frame
crops and a random forest on Table-1 measures. Verbs: `dataloaders` (fastai loaders over the seeded
datasets), `learner` (a classifier Learner), `pretrain` (Barlow Twins), `probe` (the gate: a linear probe of frozen
features), `fit` (one Table-2 row: `fit_joint`,
`fit_siamese`, `fit_cnn_lstm`), `random_forest`, `load`, `Predictor` (a 4CH cine -> MR probability), `evaluate`
(Table 2 with bootstrap CIs).
"""
from .data import (LabelsError, Labelled, PatchAug, PatchSet, SiamesePairs, TwinViews, com_crop,
                   labelled, unlabelled,
                   ed_es, jitter, mr_labels, preprocess, preprocess_store, systolic_window)
from .evaluate import (PAPER_TABLE2, ROWS, TABLE2_METRICS, auc_gap, evaluate, recall_by_grade, table2, thresholds,
                       validation_table)
from .figures import budget_figure, grade_figure, pool_figure, preprocessing_figure, roc_pr_figure
from .learner import (INPUTS, JOINT_WEIGHTS, SUPERVISED, CUSSPConfig, dataloaders, fit, fit_cnn_lstm, fit_joint,
                      fit_siamese, fit_supervised, features, learner, load, network, pretrain, probe, random_forest,
                      save, scores)
from .valve import Valve, ValveError, ValvePatch, equalise_la, inside_fraction, patch_map, valve_line, valve_patch
from .predictor import Predictor

__all__ = ["Predictor", "Study", "LabelsError", "Labelled", "labelled", "unlabelled", "PatchAug", "PatchSet", "SiamesePairs", "TwinViews", "com_crop",
           "ed_es", "jitter", "mr_labels", "preprocess", "preprocess_store", "systolic_window",
           "PAPER_TABLE2", "ROWS", "TABLE2_METRICS", "auc_gap", "evaluate", "recall_by_grade", "table2", "thresholds", "validation_table",
           "budget_figure", "grade_figure", "pool_figure", "preprocessing_figure", "roc_pr_figure", "INPUTS", "JOINT_WEIGHTS", "SUPERVISED", "fit_supervised", "CUSSPConfig",
           "dataloaders", "fit", "learner",
           "fit_cnn_lstm", "fit_joint", "fit_siamese", "features", "load", "network", "pretrain", "probe", "random_forest", "save", "scores",
           "Valve", "ValveError", "ValvePatch", "equalise_la", "inside_fraction", "patch_map",
           "valve_line", "valve_patch"]
from .study import Study
