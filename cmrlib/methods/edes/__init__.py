"""ED/ES frame detection by temporal regression (TempReg-Net, Kong et al., MICCAI 2016).

A network regresses, frame by frame, a synthetic volume-like curve built from the labelled ED and ES (eq. 4:
1 at ED, 0 at ES); ED and ES are its arg-max and arg-min. Everything is cyclic: a cine holds one cardiac cycle
that may start at any phase. Verbs: `dataloaders` (of `seq_items`), `learner`, `fit`, `load`, `predict` (a cine
-> curve, ED, ES; `Predictor` carries the frame settings with the network), `evaluate` (frame differences
per cine and method). The segmentation baseline (`seg_detect`) uses notebook 01's segmenters through the
segmentation Predictor.
"""
from .curves import decode, frame_diff, label_curve
from .data import RollCycle, SeqItem, dataloaders, label_of, mid_slice, pad_seqs, seq_frames, seq_items
from .evaluate import afd_table, evaluate, label_plateaus, plateau
from .figures import afd_figure, curves_figure
from .learner import METHODS, TempRegLoss, afd_ed, afd_es, fit, learner, load, model_file, tsc_loss
from .predict import predict, predict_store, predict_curve, seg_detect
from .predictor import Predictor

__all__ = ["Predictor", "Study", "dataloaders", "learner", "fit", "load", "predict", "evaluate", "METHODS", "label_curve", "frame_diff",
           "decode", "tsc_loss", "model_file", "TempRegLoss", "afd_ed", "afd_es", "mid_slice", "seq_frames", "SeqItem",
           "seq_items",
           "RollCycle", "pad_seqs", "predict_curve",
           "predict_store", "afd_table", "label_of", "seg_detect", "curves_figure",
           "afd_figure", "plateau", "label_plateaus"]
from .study import Study
