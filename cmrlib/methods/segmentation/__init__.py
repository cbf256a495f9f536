"""Segmentation, a TernausNet11 per view: `dataloaders` (`cmrlib.data.seg_dls`), `learner`, `fit`, `load` (export
with `cmrlib.learn.export`), `predict` whole cines with a calibrated decision (`calibrate_prior`), `evaluate`
Dice / HD95 (Table-1 measures from its labels: `cmrlib.measure.subject_measures`).

Other methods use it only through its `Predictor` (both segmenters, their `labels(cine)` and Table-1 measures).
"""
from .evaluate import dice, evaluate, frame_scores, hd95, summarise
from .figures import case_panels
from .learner import (MODEL_FILES, ClassDice, DiceCE, as_model, class_weights, dataloaders, fit, learner, load,
                      model_file)
from .predict import (NoLabels, calibrate_prior, decide, frame_probs, keep_largest, log_prior, mean_dice, predict,
                      predict_store)
from .recipes import RECIPES, recipe
from .predictor import Predictor
from .study import Study

__all__ = ["Predictor", "Study", "dataloaders", "learner", "fit", "load", "predict", "evaluate", "DiceCE", "ClassDice", "class_weights",
           "RECIPES", "recipe", "MODEL_FILES", "model_file", "as_model",
           "frame_probs", "log_prior", "decide", "calibrate_prior", "NoLabels",
           "mean_dice", "predict_store", "keep_largest", "dice", "hd95", "summarise", "frame_scores", "case_panels"]
