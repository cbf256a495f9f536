"""ED/ES frame detection by temporal regression (TempReg-Net, Kong et al., MICCAI 2016).

A network regresses, frame by frame, a synthetic volume-like curve built from the labelled ED and ES (eq. 4:
1 at ED, 0 at ES); ED and ES are its arg-max and arg-min. Everything is cyclic: a cine holds one cardiac cycle
that may start at any phase. The segmentation baseline uses `cmrlib.methods.segmentation` through its `predict`.
"""
from .curves import decode, frame_diff, label_curve
from .data import RollCycle, SeqItem, edes_dls, label_of, mid_slice, pad_seqs, seq_frames, seq_items
from .evaluate import afd_table, evaluate, label_plateaus, plateau
from .figures import afd_figure, curves_figure
from .learner import METHODS, TempRegLoss, afd_ed, afd_es, edes_learner, tsc_loss
from .predict import detect, predict_curve, seg_detect

__all__ = ["label_curve", "frame_diff", "decode", "tsc_loss", "TempRegLoss", "afd_ed", "afd_es", "mid_slice",
           "seq_frames", "SeqItem", "seq_items", "RollCycle", "pad_seqs", "edes_dls", "edes_learner", "METHODS",
           "predict_curve", "detect", "evaluate", "afd_table", "label_of", "seg_detect", "curves_figure",
           "afd_figure", "plateau", "label_plateaus"]
