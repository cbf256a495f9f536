"""HeartMAE's experiment (optical-flow-guided spatiotemporal MAE) on the run's cines: the views preprocessed with
their motion maps, the four masked autoencoders pretrained, the pretext and feature gates, attention-MIL probes of
every task group for each encoder, the paper's Tables 1-2 and condition metrics with CIs, figures, the subjects'
features for notebook 08 and the run's HeartMAE Predictor."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import pandas as pd

from ...distributed import rank
from ...learn import config_from
from ...models.mae_st import VideoMAE
from ...study import Study as Base
from ...study import StudySkipped, shows
from ...utils import seed_for
from .baselines import EXPERT, expert_features
from .data import CineSet, Clips, ViewSettings, intensity_stats, preprocess_store
from .evaluate import (EF_COLUMNS, PAPER_FEATURES, PAPER_TABLE1, PAPER_TABLE2, Cardiac, Probes, beside_paper,
                       cardiac_wins, condition_table, expert_rows, fit_probes, measures_long, phantom_checks,
                       subject_feature_tables, table1, table2)
from .features import KINETICS, bags, cached_features, extract, family_encoders
from .figures import CAPTIONS as FIGURE_CAPTIONS
from .figures import (attention_by_view, attention_figure, condition_figure, flow_figure, pretraining_figure,
                      readout_figure, real_lvef_figure, reconstruct, reconstruction_figure, scaled_mae_figure)
from .gates import family_pretext
from .gates import ridge as ridge_gate
from .heads import ProbeConfig
from . import real
from .learner import FAMILY, RANDOM, HeartMAEConfig, network, pretrain_family
from .predictor import Predictor
from .tasks import Targets, subject_targets


@dataclass(frozen=True)
class Views:
    """Every view resampled with its motion map, and the training views' intensity mean and SD."""

    cines: CineSet
    mean: float
    std: float


@dataclass(frozen=True)
class Family:
    """The masked autoencoders by row and their summaries."""

    models: dict
    summary: pd.DataFrame


class Study(Base):
    """Notebook 06: one step per cell, its named pieces shared as cached properties (`outline()` lists both)."""

    method = "heartmae"
    number = "06"
    CAPTIONS = FIGURE_CAPTIONS
    GLANCE = dict(method="HeartMAE", headline="LVEF MAE (points)", paper="3.09",
                  phantom=[["LVEF MAE", "HeartMAE LVEF MAE (EF points)"]],
                  real=[["LVEF MAE", "real patients: HeartMAE LVEF MAE (EF points)"],
                        ["minus the random encoder's", "real patients: HeartMAE LVEF MAE minus the random encoder's*"]])
    PATHS = ("targets_csv", "kinetics_weights")
    BATCHES = ("bs", "probe_bs")
    PARAMS: ClassVar[dict] = {
        # study
        **Base.RUN,  # profile, seed, run_dir, figures_dir, budget_min
        "data_dir": None,            # real-data root (ukbb-demo/, acdc/) for the real-cine table; None: $CMRLIB_DATA
        "targets_csv": None,         # subject + numeric or 0/1 columns: the heads for a real cohort (the phantom: its truths)
        "kinetics_weights": None,    # torchvision's r3d_18-b3b3357e.pth; None: torch's hub cache (row left out when absent)
        "expert_baseline": True,     # segment every subject (the run's segmentation Predictor) for the expert-features
                                     # baseline of the conditions
        "threads": 2,
        "workers": 1,  # Dask worker processes on this machine for the data-parallel steps (1: run them in this process)
        "scheduler": None,  # a Dask scheduler instead: address (tcp://host:8786) or scheduler file; "local": a LocalCluster
        # views and preprocessing
        "sax_slices": 3,             # SAX slices per subject, spread over the middle of the stack (the paper kept half)
        "cycle": 30,                 # frames per cardiac cycle after resampling (UK Biobank: 50)
        "load": 72,                  # px of the stored square frames (the paper: 256 before 224 crops)
        "sigma_mm": 18.0,            # smoothing of the motion map: the paper's 10 px at UK Biobank's 1.8 mm
        "heart_mm": None,            # a square of this many mm round the moving heart (ours); None: the whole field
        # network (the paper: size 224, frames 24, patch 16, tubelet 4, dim 768, depth 12, heads 12, decoder 512 x 4)
        "size": 64,
        "frames": 16,
        "pred_frames": 8,
        "patch": 8,
        "tubelet": 4,
        "dim": 192,
        "depth": 6,
        "heads": 3,
        "dec_dim": 128,
        "dec_depth": 2,
        "dec_heads": 4,
        # pretraining (the paper: 200 epochs for MAE-ViT-B, 100 for the others, 30 warm-up, blr 1.5e-4, bs 224)
        "min_side": 64,
        "epochs_base": 16,
        "epochs": 8,
        "warmup_epochs": 2,
        "bs": 16,
        "repeats": 4,
        "blr": 1.5e-4,
        "wd": 0.05,
        "target": "dataset",         # the loss's pixels: normalised by the training set (the paper) or per token
        "bf16": False,
        # inference and probes
        "pool": "mean",              # clip feature: the tokens' mean (the paper's) or "mean+motion" (with their SD over time; ours)
        "crops": 3,                  # K spatial crops per clip
        "clips": 2,                  # T temporal clips per cine
        "probe_hidden": 64,
        "probe_dropout": 0.0,
        "probe_epochs": 60,
        "probe_bs": 16,
        "probe_lr": 1e-3,
        "probe_wd": 1e-4,
        "n_boot": 1000,
        "n_show": 3,                 # subjects shown in the attention and reconstruction figures
        "real_per_group": None,      # real SAX patients kept per diagnosis, the first by id (None: all)
        "real_epochs": 4,            # real SAX patients: epochs of HeartMAE's pretraining continued per fold on the
                                     # training patients, kept on a fold where its cross-validated MAE on the fold's
                                     # non-test patients beats the phantom model's (0: the phantom model only)
    }

    def __init__(self, params: dict, out=None):
        super().__init__(params, out)
        p = self.p
        self.cfg = config_from(HeartMAEConfig, p)  # the parameters that name its fields
        self.probe_cfg = ProbeConfig(hidden=int(p["probe_hidden"]), dropout=float(p["probe_dropout"]),
                                     epochs=int(p["probe_epochs"]), bs=int(p["probe_bs"]), lr=float(p["probe_lr"]),
                                     wd=float(p["probe_wd"]), seed=seed_for(p["seed"], "06", "probe"))
        self.prep = asdict(config_from(ViewSettings, p, sax_k=p["sax_slices"]))

    @cached_property
    def views(self) -> Views:
        """Every view resampled to one cycle with its optical-flow weight map (cached per cohort and settings; the
        failures written), and the training views' intensity mean and SD."""
        ids = self.store.select(view=["SAX", "2CH", "3CH", "4CH"])
        with self.nb.timer("preprocessing"):
            cines = self.prepared(CineSet, "cines", self.store, ids, self.prep, lambda: preprocess_store(
                self.store, ids, scheduler=self.client, **self.prep))
        self.nb.table(cines.failures, "preprocessing_failures")
        mean, std = intensity_stats(cines.take(cines.rows("train")))
        return Views(cines, mean, std)

    def prepare(self) -> pd.DataFrame:
        """Views per split and view."""
        v, cines = self.views, self.views.cines
        print(f"{len(cines)} views of {cines.table['subject'].nunique()} subjects ({len(cines.failures)} cines left "
              f"out); training intensity mean {v.mean:.3f}, SD {v.std:.3f}")
        return cines.table.groupby(["split", "view"]).size().unstack(fill_value=0)

    def flow_figures(self) -> None:
        """A 4CH and a SAX cine with their motion weight maps."""
        cines = self.views.cines
        t = cines.table
        for i in t.index[t["view"] == "4CH"].tolist()[:1] + t.index[t["view"] == "SAX"].tolist()[:1]:
            fig = flow_figure(cines.frames[i], cines.weight[i], f"{t.at[i, 'view']} cine, subject "
                              f"{t.at[i, 'subject']}")
            self.figure(fig, f"06_flow_{t.at[i, 'view']}", "06_flow")

    def make_family(self, rows=tuple(FAMILY), reuse: bool = True) -> Family:
        """The masked autoencoders of `rows` (`pretrain_family`: each reused when the run folder holds it with these
        settings, unless `reuse` is off); their summaries and new loss histories written."""
        v = self.views
        with self.nb.timer("pretraining"):
            models, summary, histories = pretrain_family(v.cines, self.cfg, v.mean, v.std, self.out / "models", rows,
                                                         reuse)
        for row, h in histories.items():
            self.nb.table(h, f"pretraining_history_{row}")
        self.nb.table(summary, "pretraining")
        return Family(models, summary)

    @cached_property
    def family(self) -> Family:
        """The four masked autoencoders (trained, or reused) and their summaries."""
        return self.make_family()

    pretrain = shows("family.summary", "The four masked autoencoders' summaries.")

    def pretraining_figure(self) -> None:
        """Each model's masked-token loss per epoch, from the histories in the notebook's folder."""
        out = self.out
        histories = {r: pd.read_csv(out / f"pretraining_history_{r}.csv") for r in FAMILY
                     if (out / f"pretraining_history_{r}.csv").exists()}
        if histories:
            self.figure(pretraining_figure(histories), "06_pretraining")

    @cached_property
    def random_network(self) -> VideoMAE:
        """The untrained MAE every gate and read-out sets the pretrained ones beside, at the run's own seed."""
        return network(self.cfg, seed_for(self.p["seed"], "06", "random"))

    def _valid_rows(self):
        rows = self.views.cines.rows("valid")
        return rows if len(rows) else self.views.cines.rows("train")

    @cached_property
    def pretext(self) -> pd.DataFrame:
        """Each model's masked loss on validation clips beside a random network's and the copy and mean rules'
        (written)."""
        v = self.views
        gate_clips = Clips(v.cines.take(self._valid_rows()), self.cfg.size, self.cfg.frames, v.mean, v.std, train=False)
        with self.nb.timer("pretext gate"):
            table = family_pretext(self.family.models, FAMILY, self.random_network, gate_clips,
                                   seed_for(self.p["seed"], "06", "pretext"), self.cfg.target)
        return self.nb.kept(table, "pretext_gate")

    def pretext_gate(self) -> pd.DataFrame:
        """Masked loss by row and model on the validation clips."""
        return self.pretext.pivot(index="row", columns="model", values="masked_loss")

    def reconstruction_figure(self) -> None:
        """A validation clip as each model reconstructs it from its visible patches."""
        v = self.views
        clipset = Clips(v.cines.take(self._valid_rows()[:1]), self.cfg.size, self.cfg.frames, v.mean, v.std,
                        train=False)
        clip = clipset[0][0]
        examples = {row: reconstruct(self.family.models[row], clip, FAMILY[row]["ratio"], FAMILY[row]["masking"],
                                     seed_for(self.p["seed"], "06", "show"), self.cfg.target) for row in FAMILY}
        self.figure(reconstruction_figure(examples), "06_reconstructions")

    @cached_property
    def encoder_features(self) -> dict:
        """Every encoder's features of every view (K crops x T clips; cached per encoder and settings): the four
        MAEs, a random encoder and, when its weights are here, Kinetics-400's."""
        p, cfg, v = self.p, self.cfg, self.views
        encoders = family_encoders(self.family.models, self.random_network, v.mean, v.std, p["pool"], p["kinetics_weights"])
        feats = {}
        with self.nb.timer("feature extraction"):
            for name, enc in encoders.items():
                feats[name] = cached_features(self.features_file(name), self.features_key(name),
                                              lambda enc=enc: extract(enc, v.cines, cfg.size, cfg.frames,
                                                                      int(p["crops"]), int(p["clips"])))
        return feats

    def features(self) -> dict[str, tuple]:
        """The features' shapes by encoder."""
        return {k: v.shape for k, v in self.encoder_features.items()}

    def features_key(self, name: str) -> dict:
        """The settings encoder `name`'s cached features were extracted with (a change recomputes them)."""
        p, own = self.p, name != KINETICS
        return dict(model=name, config=self.cfg.__dict__ if own else None, crops=p["crops"], clips=p["clips"],
                    views=len(self.views.cines), prep=self.prep, pool=p["pool"] if own else None)

    def features_file(self, name: str) -> Path:
        """Where encoder `name`'s features of the run's views are cached."""
        return self.out / f"features_{name.split(' ')[0]}.npz"

    @cached_property
    def task_targets(self) -> Targets:
        """The heads' targets (`targets_csv`, or the phantom's truths), the subjects with targets and their roles,
        and whether there are enough for the probes and the paper's three task groups."""
        return subject_targets(self.store, self.p["targets_csv"], self.views.cines.table)

    def targets_table(self) -> dict[str, int]:
        """Subjects with targets per split (whether the probes can run)."""
        t = self.task_targets
        if t.y is None:
            print("no targets: a real cohort needs targets_csv for the probes; pretraining and features are done")
        if not t.ready:
            print("too few subjects with targets: the probes are skipped")
        return {r: len(v) for r, v in t.role.items()}

    @cached_property
    def probe_targets(self) -> Targets:
        """The targets when there are enough subjects for the probes; `StudySkipped` otherwise."""
        if not self.task_targets.ready:
            raise StudySkipped("too few subjects with targets for the probes (a real cohort needs targets_csv)")
        return self.task_targets

    @cached_property
    def paper_targets(self) -> Targets:
        """The targets when they hold the paper's three task groups; `StudySkipped` otherwise."""
        if not self.task_targets.paper_tasks:
            raise StudySkipped("the paper's tables need its three task groups (cardiac measures, conditions, "
                               "demographics): the phantom's targets have them")
        return self.task_targets

    @cached_property
    def bagged(self) -> dict:
        """Each encoder's features as bags of views per subject with targets."""
        return {name: bags(f, self.views.cines.table, self.task_targets.subjects)
                for name, f in self.encoder_features.items()}

    @cached_property
    def probes(self) -> Probes:
        """An attention-MIL probe per encoder and task group on the training subjects (early stop on validation),
        scored once on test with bootstrap CIs (written)."""
        with self.nb.timer("probes"):
            made = fit_probes(self.bagged, self.probe_targets, self.probe_cfg, self.out, int(self.p["n_boot"]),
                              seed_for(self.p["seed"], "06", "boot"))
        self.nb.tables({"regression": made.reg, "test_predictions": pd.concat(made.preds, names=["model"])},
                       index=("test_predictions",))
        return made

    def fit(self) -> pd.DataFrame:
        """Scaled MAE per task and model on the test subjects."""
        return self.probes.reg.pivot(index="task", columns="model", values="scaled_MAE")

    @cached_property
    def ridge(self) -> pd.DataFrame:
        """A ridge of each encoder's mean features on validation beside the training-mean rule (written)."""
        t = self.probe_targets
        s = t.subjects
        table = ridge_gate(self.encoder_features, self.views.cines.table, t.y.loc[s], t.kinds,
                           [s[i] for i in t.role["train"]], [s[i] for i in t.role["valid"]])
        return self.nb.kept(table, "features_gate")

    def features_gate(self) -> pd.DataFrame:
        """The EF columns' validation MAE by encoder, beside the training-mean rule."""
        r = self.ridge
        return (r[r["task"].isin(EF_COLUMNS)].pivot(index="task", columns="encoder", values="valid_MAE")
                .assign(**{"training mean": r.groupby("task")["mean_rule_MAE"].first()}))

    @cached_property
    def table1_result(self) -> pd.DataFrame:
        """The paper's Table 1 (cardiac measures) beside its numbers (written)."""
        _ = self.paper_targets  # StudySkipped without the paper's task groups
        return self.nb.kept(beside_paper(table1(self.probes.reg).reindex(self.probes.order), PAPER_TABLE1), "table1")

    table1 = shows("table1_result", "The paper's Table 1 (cardiac measures) beside its numbers.")

    @cached_property
    def cardiac_result(self) -> Cardiac:
        """Tasks won per model and HeartMAE against MAE-ViT-B (Wilcoxon) over the cardiac measures (written)."""
        c = cardiac_wins(self.probes.reg, self.paper_targets.groups)
        self.nb.tables({"wins": c.won, "wilcoxon": pd.DataFrame([c.wilcoxon])})
        return c

    def cardiac(self) -> pd.DataFrame:
        """Tasks won per model, the Wilcoxon comparison and the scaled-MAE figure."""
        c = self.cardiac_result
        wil = c.wilcoxon
        print(f"HeartMAE vs MAE-ViT-B over {wil['tasks']} cardiac measures: lower scaled MAE on {wil['a_better']}, "
              f"median difference {wil['median_difference']:+.3f}, Wilcoxon W = {wil['W']:.0f}, p = {wil['p']:.3g} "
              f"(the paper: HeartMAE best on {PAPER_FEATURES['heartmae_wins']} of {PAPER_FEATURES['tasks']}, "
              "p < 0.001)")
        self.figure(scaled_mae_figure(c.reg, [RANDOM, *FAMILY]), "06_scaled_mae")
        return c.won

    def conditions(self) -> dict[str, pd.DataFrame]:
        """AP and AUROC per condition and model, with the expert-features baseline when `expert_baseline` is on,
        and the figure."""
        cls, cls_tasks, out = self.condition_result
        shown = [m for m in [*self.probes.order, EXPERT] if m in set(cls["model"])]
        self.figure(condition_figure(cls[cls["task"].isin(cls_tasks)], shown), "06_conditions")
        return out

    @cached_property
    def condition_result(self) -> tuple[pd.DataFrame, list[str], dict[str, pd.DataFrame]]:
        """(scores, condition tasks, AP and AUROC tables) per condition and model, with the expert-features baseline
        (a logistic regression on the segmentation Predictor's measures) when `expert_baseline` is on (written)."""
        t = self.task_targets
        cls_tasks = [k for k in (t.y.columns if t.ready else []) if t.groups[k] == "conditions"]
        if not cls_tasks:
            raise StudySkipped("no condition among the targets")
        cls = self.probes.cls
        if self.p["expert_baseline"]:
            with self.nb.timer("expert features"):
                rows, expert, bad, chosen = expert_rows(self.table1_measures(self.store, t.subjects), t, cls_tasks,
                                                        int(self.p["n_boot"]), seed_for(self.p["seed"], "06", "boot"))
            self.nb.tables({"expert_failures": bad, "expert_measures": expert}, index=("expert_measures",))
            cls = pd.concat([cls, rows], ignore_index=True)
            print(f"expert features: {expert.shape[1]} measures of {len(expert)} subjects; C per condition {chosen}")
        else:
            print("expert-features row left out: expert_baseline is off")
        out = {metric: condition_table(cls[cls["task"].isin(cls_tasks)], metric) for metric in ("AP", "AUROC")}
        self.nb.tables({"conditions": cls, **{f"conditions_{m}": t for m, t in out.items()}},
                       index=("conditions_AP", "conditions_AUROC"))
        return cls, cls_tasks, out

    @cached_property
    def table2_result(self) -> pd.DataFrame:
        """The paper's Table 2 (demographics) beside its numbers (written)."""
        _ = self.paper_targets  # StudySkipped without the paper's task groups
        return self.nb.kept(beside_paper(table2(self.probes.reg).reindex(self.probes.order), PAPER_TABLE2), "table2")

    def table2(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The paper's Table 2 (demographics) beside its numbers, and sex AUROC per model."""
        cls = self.probes.cls
        return self.table2_result, cls[cls["task"] == "sex (male)"][["model", "AUROC", "AUROC_low", "AUROC_high"]]

    def attention(self) -> pd.DataFrame:
        """HeartMAE's cardiac-probe attention over each test subject's views (figure) and by view (written)."""
        t = self.paper_targets
        h, mask, names = self.bagged["HeartMAE"]
        att = self.probes.probes["HeartMAE", "cardiac"].pooled(h, mask)[1]
        test = t.role["test"]
        pick = test[: int(self.p["n_show"])]
        self.figure(attention_figure(att[pick], [names[i] for i in pick], [t.subjects[i] for i in pick]),
                    "06_attention")
        return self.nb.kept(attention_by_view(att[test], [names[i] for i in test]), "attention_by_view")

    @cached_property
    def predictor(self) -> Predictor | None:
        """Each encoder's pooled subject features (notebook 08), HeartMAE's test measures in the long shape
        (notebook 07) and the run's HeartMAE Predictor (the encoder with every group's probe; None without
        HeartMAE), all written."""
        t, pr = self.probe_targets, self.probes
        features = subject_feature_tables(self.bagged, pr, t)
        self.nb.tables(features, index=tuple(features))
        if t.paper_tasks and t.phantom:
            long = self.nb.kept(measures_long(pr, t, self.store.conditions()), "measures_long")
            print(f"{len(long)} rows for notebook 07")
        if "HeartMAE" not in self.family.models:
            return None
        p, v = self.p, self.views
        made = Predictor.from_model(self.family.models["HeartMAE"], self.cfg, v.mean, v.std, {
            g: pr.probes["HeartMAE", g] for g in dict.fromkeys(t.groups.values())}, self.prep, p["crops"], p["clips"],
            "HeartMAE", self.nb.provenance(self.store, None), pool=p["pool"])
        self.nb.predictor(made)
        return made

    def export(self) -> None:
        """The subjects' features, HeartMAE's measures for notebook 07 and the run's HeartMAE Predictor."""
        if self.predictor is None:
            print("no HeartMAE model in this run: no Predictor")

    @cached_property
    def real_results(self) -> real.RealLVEF:
        """LVEF of the real SAX cohort's patients (`Study.real_sax`; the full manual labels' LVEF) from frozen features,
        pooled and frame-resolved, out of fold (`real.read_outs`); gates, tables and figures written; `StudySkipped`
        without the real cohort or a trained HeartMAE."""
        models = self.family.models
        if "HeartMAE" not in models:
            raise StudySkipped("no trained HeartMAE in this run: pretrain first")
        p, cfg, v = self.p, self.cfg, self.views
        store, subjects = self.real_sax(5)
        ids = subjects.cine_id.tolist()
        with self.nb.timer("real patients: views"):
            cines = self.prepared(CineSet, "real_views", store, ids, self.prep, lambda: preprocess_store(
                store, ids, progress=False, scheduler=self.client, **self.prep))
        self.nb.table(cines.failures, "real_preprocessing_failures")
        subjects, expert = subjects[subjects.subject.isin(set(cines.table["subject"]))], None
        if p["expert_baseline"]:
            with self.nb.timer("real patients: features"):
                expert, bad = expert_features(self.table1_measures(store, subjects.subject, progress=False, real=True))
            self.nb.table(bad, "real_expert_failures")
        seg = self.real_segmenter() if self._segmentation_file.exists() else None
        r = real.read_outs(cines, subjects, models, self.random_network, v.mean, v.std, cfg, p, seg, store, self.out,
                           self.nb.timer, expert)
        features = real.feature_tables(r.pooled)  # for notebook 08, with the patients' diagnosis and BSA
        self.nb.tables({"real_subjects": subjects[["subject", "group", "bsa_m2", "LVEF"]], **features},
                       index=tuple(features))
        return self._real_tables(r.pred, r.gate, r.pretext, len(subjects))

    def _real_tables(self, pred: pd.DataFrame, gate: pd.DataFrame, pretext: pd.DataFrame, n: int) -> real.RealLVEF:
        """The real section's tables (out-of-fold LVEF per read-out, frame-resolved minus pooled) and figure."""
        r = real.real_tables(pred, gate, pretext, int(self.p["n_boot"]), seed_for(self.p["seed"], "06", "real"))
        pooled, frames = r.table, r.frames
        self.nb.tables({"real_predictions": r.pred, "real_features_gate": r.gate, "real_pretext_gate": r.pretext,
                        "real_lvef": pooled, "real_lvef_frames": frames, "real_frames_minus_pooled": r.gain,
                        "real_epochs_per_fold": r.choice})
        self.figure(real_lvef_figure(r.pred[r.pred.readout == real.POOLED], pooled), "06_real_patients", n=n)
        self.figure(readout_figure(pooled, frames), "06_real_frames", n=n)
        return r

    def real_patients(self) -> dict[str, pd.DataFrame]:
        """The real patients' LVEF from each representation, pooled and frame-resolved, out of fold."""
        r = self.real_results
        print("cross-validated LVEF MAE of the pooled ridge on the non-test patients (mean over folds):")
        print(r.gate[r.gate.readout == real.POOLED].groupby("encoder").cv_MAE.mean().round(2).to_string())
        shown = {"pooled read-out": r.table, "frame-resolved read-out": r.frames, "frame-resolved minus pooled": r.gain}
        return shown | ({"HeartMAE's real epochs, chosen per fold": r.choice} if len(r.choice) else {})

    def real_cines(self) -> pd.DataFrame:
        """The run's HeartMAE Predictor on every real subject, none of which it trained on: predicted LVEF and LAEF
        (and the other EF columns) beside those measured from the subject's segmentations (written)."""
        predictor = self.optional("predictor")
        if predictor is None:
            raise StudySkipped("no HeartMAE Predictor in this run (it needs the probes' targets)")
        subjects = [(s.name, s.cines, s.reference, s.reference_is)  # the demo's long axes, ACDC's full cines
                    for s in self.real_found(("SAX", "2CH", "4CH"), "real subject with a reference", "any")]
        return self.nb.kept(real.predictor_rows(predictor, subjects, EF_COLUMNS), "real_cines")

    def train(self, finish=None, rows: int | None = None) -> list[dict]:
        """What `cmrlib fit heartmae` runs: the views, then the first `rows` of the four masked autoencoders (all by
        default), trained (`make_family`, the notebook's one path; each saved by process 0 in its own format, so
        `finish`, which exports a whole Learner, is not used); with all four and the subjects' targets, process 0
        goes on as notebook 06 does: features, probes and the run's HeartMAE Predictor. One summary per row."""
        family = self.make_family(tuple(FAMILY)[:rows], reuse=False)
        if rank() == 0 and set(FAMILY) <= set(family.models) and self.task_targets.ready:
            _ = self.predictor  # the `family` it reads reuses the models just saved
        return [{k: v for k, v in r.items() if k != "reused"} for r in family.summary.to_dict("records")]

    def headline_tables(self):
        """Tables 1 and 2 beside the paper's, the measures each model predicts best, the conditions' scores: asked
        for by name, so each is computed (and written) here when no step has asked for it yet."""
        if self.optional("table1_result") is not None:
            yield "table1", "HeartMAE Table 1: EF mean absolute error (EF points, 95 % CI), beside the paper's", None
        if (c := self.optional("cardiac_result")) is not None:
            w = c.wilcoxon
            yield ("wins", "cardiac measures each MAE model predicts best (Fig. S1); HeartMAE vs MAE-ViT-B: lower "
                   f"scaled MAE on {int(w['a_better'])} of {int(w['tasks'])}, Wilcoxon p = {w['p']:.3g}", None)
        if (cond := self.optional("condition_result")) is not None:
            for metric in cond[2]:
                yield (f"conditions_{metric}", f"conditions: {metric} per model on the test subjects (95 % CI; "
                       "Fig. 2)", None)
        if self.optional("table2_result") is not None:
            yield ("table2", "HeartMAE Table 2: extracardiac MAE (95 % CI) and Pearson r, beside the paper's", None)

    def checks(self) -> pd.DataFrame:
        """The paper's targets, both gates and the notebook's time (written with the timings)."""
        minutes = self.minutes()
        print(f"notebook 06 ran in {minutes * 60:.0f} s (profile {self.p['profile']})")
        if not self.task_targets.paper_tasks:
            self.nb.save_timings()
            raise StudySkipped("the paper's targets need its three task groups: only the timings written")
        r = self.optional("real_results")
        return self.targets([*phantom_checks(self.probes.reg, self.cardiac_result, self.pretext, self.ridge),
                             *(real.real_checks(r) if r is not None else []), *self.time_target()])
