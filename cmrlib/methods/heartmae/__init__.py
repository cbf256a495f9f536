"""HeartMAE (Kim et al., 2025): a spatiotemporal masked autoencoder whose loss is weighted by optical-flow motion,
its three siblings (MAE-ViT-B, MAE-tube, MAE-95), evaluated frozen by multiview attention-MIL multitask probes.

Preprocessing (`data`): every view of a subject (SAX slices, 2CH, 4CH) as square 8-bit frames with its Farneback
motion map W, cached once per run. Pretraining (`learner`): the network of `cmrlib.models.mae_st`, MAE-ViT-B from
scratch and the others from its best checkpoint. Features (`features`): K x T views per cine through a frozen
encoder (or a Kinetics video network when its weights are on disk). Probes (`heads`): gated ABMIL + linear heads per
task group (`tasks`). Baseline of expert features (`baselines`). The pretext and features gates on validation
views (`gates`). Verbs: `dataloaders`, `learner`, `fit` (pretrain
one model), `load`, `Predictor` (one subject's cines -> every probed measure), `evaluate` (regression and classification tables with CIs).
"""
from ...learn import dataloaders
from .baselines import EXPERT, expert_features, logistic_probs
from .data import (VIEWS, CineInputError, CineSet, Clips, ClipView, flow_weight, inference_views, intensity_stats,
                   heart_box, preprocess_cine, preprocess_store, random_view, sax_slices, square_frames)
from .evaluate import (PAPER_FEATURES, PAPER_TABLE1, PAPER_TABLE2, beside_paper, classification_metrics_table,
                       condition_table, evaluate, regression_metrics, table1, table2, wilcoxon, wins, with_ci)
from ...models.weights import WeightsUnavailable
from .features import KINETICS, bags, cached_features, extract, kinetics_encoder, mae_encoder
from .gates import copy_rule, mean_rule
from .gates import pretext as pretext_gate
from .gates import ridge as ridge_gate
from .figures import (attention_by_view, attention_figure, condition_figure, flow_figure, pretraining_figure, reconstruct,
                      reconstruction_figure, scaled_mae_figure, view_kind)
from .heads import FittedProbe, GatedABMIL, Probe, ProbeConfig, fit_probe
from .learner import BASE, FAMILY, RANDOM, HeartMAEConfig, learner, load, network, pretrain, pretrain_family, save
from .learner import pretrain as fit
from .tasks import (CARDIAC, CONDITIONS, EF_COLUMNS, EXTRACARDIAC, GROUPS, TASK_UNITS, TargetsError,
                    phantom_targets, table_targets)
from .predictor import Predictor

__all__ = ["Predictor", "Study", "dataloaders", "EXPERT", "expert_features", "logistic_probs", "VIEWS", "CineInputError", "CineSet",
           "Clips", "ClipView", "flow_weight", "inference_views", "intensity_stats", "preprocess_cine",
           "preprocess_store", "random_view", "sax_slices", "square_frames", "heart_box", "PAPER_FEATURES", "PAPER_TABLE1",
           "PAPER_TABLE2", "beside_paper", "classification_metrics_table", "condition_table", "evaluate", "regression_metrics", "table1", "table2",
           "wilcoxon", "wins", "with_ci", "KINETICS", "WeightsUnavailable", "bags", "cached_features", "extract",
           "kinetics_encoder", "mae_encoder", "attention_by_view", "attention_figure", "condition_figure",
           "flow_figure", "pretraining_figure", "reconstruct", "reconstruction_figure", "scaled_mae_figure", "view_kind",
           "FittedProbe", "GatedABMIL", "Probe", "ProbeConfig", "fit_probe", "BASE", "FAMILY", "RANDOM",
           "HeartMAEConfig", "learner", "load", "network", "pretrain", "pretrain_family", "save", "fit",
           "CARDIAC", "CONDITIONS", "EF_COLUMNS", "EXTRACARDIAC", "GROUPS", "TASK_UNITS", "TargetsError",
           "phantom_targets", "table_targets", "copy_rule", "mean_rule", "pretext_gate", "ridge_gate"]
from .study import Study
