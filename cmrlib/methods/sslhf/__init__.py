"""HFrEF vs HFpEF from SAX cines (SSLHF, Zhong et al., EMBC 2021), its four ablations and two 3D baselines.

Preprocessing (`data`): the LV found by notebook 01's segmenter on the ED frame, one patch per LV slice (a square
around the LV over the whole cycle, clipped and z-scored), labels by the paper's rule (LVEF < 50 %: HFrEF),
patient-grouped stratified 5-fold cross-validation. Models: a 3D U-Net-like restorer pretrained to undo local
pixel shuffling, patch covering and frame covering, whose encoder starts the classifier (max-pool and three fully
connected layers, weighted BCE); ablations A (no proxy), B-D (one corruption left out); MONAI's 3D ResNet-50 and
DenseNet-121 with GroupNorm. Verbs: `dataloaders`, `learner`, `pretrain` (the proxy), `fit` (one row), `load`,
`Predictor` (a SAX cine -> HFrEF probability, the folds averaged), `evaluate` (per-fold metrics, Tables I-III with CIs).
"""
from ...learn import dataloaders
from ...store import fold_roles
from .data import (CLASSES, HFREF_BELOW, CineFlip, HFLabelsError, HFPatches, Labelled, PatchError, Restoration,
                   ed_frame, hf_class, hf_labels, lv_patch, lv_slices, patient_folds, pick_slices,
                   preprocess, preprocess_store, random_flip, subsample_patients)
from .evaluate import (PAPER, TABLES, at_level, detectability, differences, fold_metrics, mean_roc, patient_scores,
                       summary, table)
from .evaluate import fold_metrics as evaluate
from .figures import ef_figure, learning_curve_figure, restoration_figure, roc_figure
from .learner import (BASELINES, CORRUPTIONS, NO_PROXY, PROXIES, ROWS, SSLHFConfig, features, fit, learner, load,
                      network, pretrain, restore, save, scores)
from .predictor import Predictor

__all__ = ["Predictor", "Study", "dataloaders", "CLASSES", "HFREF_BELOW", "CineFlip", "HFLabelsError", "HFPatches", "Labelled", "PatchError",
           "Restoration", "ed_frame", "fold_roles", "hf_class", "hf_labels", "lv_patch", "lv_slices", "patient_folds",
           "pick_slices", "preprocess", "preprocess_store", "random_flip", "subsample_patients", "PAPER", "TABLES",
           "at_level", "detectability", "differences", "evaluate", "fold_metrics", "mean_roc", "patient_scores",
           "summary", "table", "ef_figure", "learning_curve_figure", "restoration_figure", "roc_figure", "BASELINES",
           "CORRUPTIONS", "NO_PROXY", "PROXIES", "ROWS", "SSLHFConfig", "features", "fit", "learner", "load",
           "network", "pretrain", "restore", "save", "scores"]
from .study import Study
