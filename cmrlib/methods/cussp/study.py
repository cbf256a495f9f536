"""CUSSP's experiment (Table 2 of arXiv 2310.04871) on the run's 4CH cines: labels and an unlabelled pool, the
valve patches, the Barlow Twins encoders and their gate against a random encoder, every row trained, thresholds
on validation, Table 2 on test with bootstrap CIs, the pool-size and label-budget curves, and the run's CUSSP
Predictor."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
import pandas as pd

from ...distributed import rank
from ...learn import Made, config_from
from ...study import Study as Base, StudyError, StudySkipped, by_reason, shows
from ...utils import seed_for
from .data import (Inputs, PatchAug, PatchSet, PatchSettings, cohort_counts, figure_subjects, keeping,
                   labelled, preprocess_store, store_counts, stores_labels, unlabelled)
from .curves import (Budget, Curve, Training, budget_gap, label_budget, pool_curve, pool_fractions,
                     random_siam25)
from .evaluate import (Forest, Scored, fit_forest, gate_rows, measures_reusable, per_bsa, phantom_checks,
                       recall_by_grade, score_rows, segmented_measures, shipped_row, table2, validation_table)
from .figures import CAPTIONS as FIGURE_CAPTIONS
from .figures import budget_figure, grade_figure, pool_figure, preprocessing_figure, roc_pr_figure
from .learner import SUPERVISED, CUSSPConfig, fit_row, fit_rows, pretrain, pretrain_inputs, pretrained_encoder, save
from .predictor import Predictor
from .real import real_checks, real_rows

@dataclass(frozen=True)
class Cohort:
    """The labelled stores by name, the unlabelled pool's store (None: none), the MR labels and the labelled
    stores' manifest."""

    stores: dict
    pool: object
    labels: pd.DataFrame
    manifest: pd.DataFrame


@dataclass(frozen=True)
class Patches:
    """The patch settings, the patch sets by store, the labelled ones joined, the labelled cines' anatomy (the
    forest's measures reuse it) and the failures."""

    prep: dict
    sets: dict
    labelled: PatchSet
    lax_cache: dict
    failures: pd.DataFrame


class Study(Base):
    """Notebook 04: one step per cell, its named pieces shared as cached properties (`outline()` lists both)."""

    method = "cussp"
    number = "04"
    CAPTIONS = FIGURE_CAPTIONS
    GLANCE = dict(method="CUSSP", headline="CUSSP-SIAM-25 F1 / ROC-AUC", paper="0.69 / 0.88",
                  phantom=[["F1", "CUSSP-SIAM-25 F1"], ["ROC-AUC", "CUSSP-SIAM-25 ROC-AUC"]],
                  real=[["largest patch-centre distance (mm; no MR labels)", "real 4CH: largest patch-centre*"]])
    PATHS = ("labels_csv",)
    BATCHES = ("bs", "pretrain_bs")
    PARAMS: ClassVar[dict] = {
        # study
        **Base.RUN,  # profile, seed, run_dir, figures_dir, budget_min
        "data_dir": None,            # real-data root (ukbb-demo/, mvnet-dicom-sample/) for the real-cine check; None: $CMRLIB_DATA
        "labels_csv": None,          # subject, mr (0/1) for a real cohort (the phantom's labels are its mr_grade)
        "anatomy": "segmenter",      # where the LA, LV and valve are found: "segmenter" (the run's segmentation
                                     # Predictor) or "labels" (the store's own label maps)
        "forest_reading": "plain",   # how the segmenter reads the forest's SAX stacks: "plain" (each frame once,
                                     # unmirrored, round the frame's centre) or "shipped" (as its Predictor reads them)
        "mr_subjects": 340,          # more labelled phantom subjects (every view) made here beside the cohort's; 0: none
        "mr_config": {},             # phantom settings of those subjects over the cohort's (e.g. p_mr)
        "pool_subjects": 480,        # extra unlabelled phantom subjects (4CH only) for pretraining; 0: the cohort's cines only
        "pool_fractions": [0.0],     # SIAM-25 again with these fractions of the unlabelled pool (1.0 is the main row)
        "budgets": [8, 16],          # label-budget curve: MR training cines (with their share of non-MR) per point
        "budget_draws": 3,           # random draws of the training cines per budget
        "eval_splits": ["test"],     # splits scored (smoke adds "valid": a tiny cohort has too few test cines)
        "n_boot": 1000,              # bootstrap resamples for the CIs
        "rf_iter": 30,               # random-search draws for the forest (10-fold CV on the training split)
        "threads": 2,
        "workers": 1,  # Dask worker processes on this machine for the data-parallel steps (1: run them in this process)
        "scheduler": None,  # a Dask scheduler instead: address (tcp://host:8786) or scheduler file; "local": a LocalCluster
        # preprocessing
        "size": 64,                  # patch side (px): 32 into the LA, 32 into the LV
        "patch_mm": 1.8,             # mm per patch pixel (the UK Biobank's 1.8 mm: the authors' 64 px)
        "frames": None,              # frames per cycle input (None: the cohort's median frame count)
        "window": 25,                # frames ending at ES for CUSSP-SIAM-25
        "crop_size": 64,             # CNN-LSTM crop (px) around the frames' centre of mass
        "crop_mm": 2.5,
        # model
        "width": 64,                 # ResNet-18 first-stage width (64: the paper's 512-d features)
        "stem": "authors",           # "authors": 3x3 stride-1 first convolution, no max-pool; "torchvision": 7x7, pool
        "input_px": 32,              # the encoder sees the patch's central pixels (the authors' code: 32 of 64); None: all
        "aug": {},                   # PatchAug settings of the classifier stages over its defaults (the authors' mild affine)
        "pretrain_aug": {},          # PatchAug settings of the Barlow Twins views over its defaults
        "proj_dims": [2048, 2048],
        "hidden": 256,
        "pretrain_steps": 200,
        "pretrain_bs": 32,
        "pretrain_lr": 1e-4,         # Adam, the authors' rate, after a linear warm-up
        "pretrain_warmup": 0.3,      # share of the pretraining steps spent warming up
        "epochs": 15,
        "siam_epochs": 15,
        "bs": 16,
        "lr": 1e-3,
        "cnn_growth": 12,            # DenseNet-121: growth 32, blocks [6, 12, 24, 16], init 64
        "cnn_blocks": [2, 2, 2],
        "cnn_init": 16,
        "lstm_hidden": 64,
        "cnn_epochs": 20,
        "pretrained": False,         # ImageNet weights from the local torch cache (ResNet-18 width 64, DenseNet-121)
        "bf16": False,               # CPU bfloat16 autocast for training where the CPU computes it natively
    }

    def __init__(self, params: dict, out=None):
        super().__init__(params, out)
        self.cfg = config_from(CUSSPConfig, self.p)
        self.augment, self.pretrain_augment = PatchAug.make(self.p["aug"]), PatchAug.make(self.p["pretrain_aug"])
        self.find = self.anatomy("LAX")  # cine -> canonical labels at every frame
        if self.p["forest_reading"] not in ("plain", "shipped"):
            raise StudyError(f"forest_reading is 'plain' or 'shipped', got {self.p['forest_reading']!r}")

    # ------------------------------------------------------------ cohort and preprocessing

    @cached_property
    def labelled_cohort(self) -> Cohort:
        """MR labels per subject (the cohort's and the labelled subjects made here) and the unlabelled pool (new
        phantom subjects, 4CH only)."""
        p = self.p
        n_labelled = int(p["mr_subjects"]) if p["labels_csv"] is None else 0
        extra = self.phantom_more("labelled", n_labelled, ("SAX", "2CH", "4CH"), **dict(p["mr_config"]))
        stores = {"cohort": self.store, **({"labelled": extra} if extra is not None else {})}
        pool = self.phantom_more("pool", p["pool_subjects"], ("4CH",),
                                 start=self.phantom_after() + (len(extra.manifest().subject.unique())
                                                               if extra is not None else 0))
        return Cohort(stores, pool, *stores_labels(stores, p["labels_csv"]))

    def cohort(self) -> pd.DataFrame:
        """Cines per split and class, and the unlabelled pool."""
        c = self.labelled_cohort
        labels = c.labels
        if labels.attrs["unknown"]:
            print(f"{len(labels.attrs['unknown'])} subjects in the labels table are not in the store; ignored")
        if labels.attrs["unlabelled"]:
            print(f"{len(labels.attrs['unlabelled'])} subjects with a 4CH cine have no label: pretraining pool only")
        return cohort_counts(labels, len(c.pool) if c.pool is not None else 0)

    def _read(self, cine_id: str):
        """A cine of the labelled stores."""
        c = self.labelled_cohort
        return c.stores[c.manifest.set_index("cine_id").store[cine_id]].read(cine_id)

    @cached_property
    def patches(self) -> Patches:
        """Valve patches of every 4CH cine (cached per store, settings and anatomy), the labelled cines' anatomy
        kept for the forest's measures, and the failures (written)."""
        p, c = self.p, self.labelled_cohort
        n_frames = int(p["frames"] or c.manifest.query("view == '4CH'").n_frames.median())
        prep = asdict(config_from(PatchSettings, p, frames=n_frames))
        segment, lax_cache = keeping(self.find, c.labels.subject)
        sets = {}
        with self.nb.timer("preprocessing"):
            for name, st in (*c.stores.items(), ("pool", c.pool)):
                if st is None:
                    continue
                ids = st.select(view="4CH")
                sets[name] = self.prepared(PatchSet, f"patches_{name}", st, ids, prep, lambda st=st, ids=ids:
                                           preprocess_store(st, segment, ids, **prep), anatomy=True)
        failures = pd.concat([ps.failures.assign(store=n) for n, ps in sets.items()], ignore_index=True)
        self.nb.table(failures, "preprocessing_failures")
        return Patches(prep, sets, PatchSet.join([sets[n] for n in c.stores]), lax_cache, failures)

    def prepare(self) -> tuple[pd.DataFrame, pd.DataFrame | str]:
        """The cines per store and the failures by reason."""
        return store_counts(self.patches.sets), by_reason(self.patches.failures, "every cine preprocessed")

    def preprocessing_figure(self) -> None:
        """The paper's Fig. 8 for the most severe MR subject, a mild one and a non-MR one."""
        c, show = self.labelled_cohort, []
        for sub, title in figure_subjects(c.labels, list(self.patches.labelled.subjects)):
            cine = self._read(c.manifest.query("view == '4CH' and subject == @sub").cine_id.iloc[0])
            show.append((title, cine, self.find(cine)))
        if show:
            self.figure(preprocessing_figure(show), "04_preprocessing")

    @cached_property
    def measures(self) -> pd.DataFrame:
        """The 18 Table-1 measures per BSA from the run's segmentations (cached per anatomy and the segmenter's
        content key: a retrained segmenter measures again): the forest's input."""
        anatomy, c, reading = self.p["anatomy"], self.labelled_cohort, self.p["forest_reading"]
        made_by = self.anatomy_key() + (f", SAX read {reading}" if anatomy == "segmenter" else "")
        path = self.out / "table1_measures.csv"
        with self.nb.timer("forest measures"):
            cached = pd.read_csv(path, dtype={"subject": str, "made_by": str}) if path.exists() else None
            if measures_reusable(cached, c.labels.subject, anatomy, made_by):
                return per_bsa(cached, c.manifest)
            find = self.find if anatomy == "labels" else self._sax_and_lax()
            measures = segmented_measures(c.stores, c.manifest, c.labels.subject, find, self.patches.lax_cache)
        self.nb.table(measures.assign(anatomy=anatomy, made_by=made_by), "table1_measures")
        return per_bsa(measures, c.manifest)

    def forest_measures(self) -> pd.DataFrame:
        """The forest's input: the Table-1 measures per BSA."""
        X = self.measures
        print(f"{X.shape[1]} measures; subjects with every measure: {int(X.notna().all(axis=1).sum())} of "
              f"{len(X)} (scikit-learn's forest splits on missing values, so a subject with an unmeasured chamber "
              "stays in)")
        return X

    def _sax_and_lax(self):
        """Labels by view from the run's segmenters when it has a SAX one too (the forest's ventricular measures),
        its SAX stacks read as `forest_reading` says; None when it has not."""
        seg = self.segmentation()
        return (seg.plain() if self.p["forest_reading"] == "plain" else seg).labels if "SAX" in seg.nets else None

    @cached_property
    def inputs(self) -> Inputs:
        """Each model input of each split ("eval": the scored splits) and the scored subjects (no stage sees them)."""
        p, labels = self.p, self.labelled_cohort.labels
        splits = {"train": "train", "valid": "valid", "eval": p["eval_splits"]}
        data = {inp: {k: labelled(self.patches.labelled, labels, s, inp) for k, s in splits.items()}
                for inp in ("cycle", "window", "crops")}
        return Inputs(splits, data, labels.subject[labels.split.isin(p["eval_splits"])].tolist())

    # ------------------------------------------------------------ pretraining and its gate

    @cached_property
    def pretrained(self) -> Made:
        """A Barlow Twins encoder per input (full cycle, systolic window) on the unlabelled pool, reused from
        `encoders/` when pretrained before with exactly these settings and cines."""
        with self.nb.timer("pretraining"):
            pools = ((inp, unlabelled(list(self.patches.sets.values()), inp, exclude=self.inputs.test_subjects))
                     for inp in ("cycle", "window"))
            return Made(*pretrain_inputs(pools, self._encoder))

    def pretrain(self) -> pd.DataFrame:
        """The pretraining rows."""
        return pd.DataFrame(self.pretrained.logs)

    def _encoder(self, pool: np.ndarray, inp: str, tag: str):
        """`pretrain` on `pool`, or its saved result when this pool, validation set and these settings made it."""
        return pretrained_encoder(pool, self.inputs.xy(inp, "valid")[0], self.cfg, self.pretrain_augment, tag,
                                  self.out / "encoders" / f"{tag.replace(' ', '_')}.model", bool(self.p.get("retrain")))

    def _random_encoder(self, inp: str):
        """The pretrained encoder's random start (the same initialisation, no pretraining): its yardstick."""
        return pretrain(self.inputs.xy(inp, "train")[0][:0], self.inputs.xy(inp, "valid")[0], self.cfg,
                        self.pretrain_augment, "random")[0]

    @cached_property
    def gate_table(self) -> pd.DataFrame:
        """Before any downstream row: a linear probe of MR on each frozen encoder's features (fit on training,
        scored on validation) for the Barlow Twins encoder, its random start and the supervised ResNet-18 (the
        row beyond the paper; written)."""
        models, encoders = self.deep_rows.nets, self.pretrained.nets
        supervised = models[SUPERVISED].model.net if SUPERVISED in models else None
        with self.nb.timer("gate"):
            nets = {inp: {"Barlow Twins": encoders.get(inp), "random": self._random_encoder(inp),
                          "supervised": supervised if inp == "cycle" else None} for inp in ("cycle", "window")}
            table = gate_rows(self.inputs, nets, seed_for(self.p["seed"], "cussp", "probe"))
        return self.nb.kept(table, "gate")

    def gate(self) -> pd.DataFrame:
        """The gate's probe AUC by input and encoder; the checks hold Barlow Twins minus random to 0.05."""
        return self.gate_table.pivot(index="input", columns="encoder", values="valid_auc")

    def gate_gap(self, inp: str) -> float:
        """Validation probe AUC of the Barlow Twins encoder minus its random start's (NaN: not measured)."""
        g = self.gate_table.set_index(["input", "encoder"]).valid_auc
        return float(g.get((inp, "Barlow Twins"), np.nan) - g.get((inp, "random"), np.nan))

    # ------------------------------------------------------------ the rows of Table 2

    def _fit_row(self, r: str, finish=None) -> tuple[object, list, dict | None]:
        """One deep row of Table 2: its Learner (handed to `finish` under `cmrlib fit`), log rows and failure."""
        learn, rows, failure = fit_row(r, self.pretrained.nets, self.inputs, self.cfg, self.augment, self.nb.timer)
        if finish is not None and learn is not None:  # its whole validation set's loss, as `cmrlib fit` reports it
            rows = [*rows[:-1], dict(rows[-1], valid_loss=finish(learn, self.out / "models" / f"{r}.model")[0])]
        return learn, rows, failure

    def make_rows(self, finish=None) -> Made:
        """Every deep row of Table 2 from a copy of its pretrained encoder, the supervised ResNet-18 first (the gate
        reads it); the Learners, their log rows and the rows that did not train."""
        return Made(*fit_rows(lambda r: self._fit_row(r, finish)))

    @cached_property
    def deep_rows(self) -> Made:
        """Every deep row of Table 2 trained, with the log rows and the rows that did not train."""
        return self.make_rows()

    @cached_property
    def forest(self) -> Forest:
        """The random forest on Table-1 measures, its settings from a cross-validated search on training (the
        search written)."""
        with self.nb.timer("random forest"):
            forest, search = fit_forest(self.labelled_cohort.labels, self.measures, self.inputs.splits,
                                        int(self.p["rf_iter"]), seed_for(self.p["seed"], "cussp", "rf"))
            self.nb.table(search.sort_values("rank_test_score").head(10), "rf_search")
        return forest

    def fit(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The encoders' and rows' training log and the rows that did not train; the forest's settings."""
        print("forest:", {k: v for k, v in self.forest.model.get_params().items()
                          if k in ("n_estimators", "max_depth", "max_features", "min_samples_leaf")})
        failed = pd.DataFrame(self.pretrained.failed + self.deep_rows.failed,
                              columns=["method", "row", "status", "reason"])
        if len(failed):
            print(f"{len(failed)} rows did not train and are left out of the tables")
        return pd.DataFrame(self.pretrained.logs + self.deep_rows.logs), failed

    def train_log(self) -> pd.DataFrame:
        """Every training row of the notebook, in the order the steps make them (written)."""
        return self.nb.kept(pd.DataFrame(self.pretrained.logs + self.deep_rows.logs + self._curve_logs()), "train_log")

    def failures(self) -> pd.DataFrame:
        """The rows and fits that did not train or score, with the reason (written)."""
        failed = pd.DataFrame(self.pretrained.failed + self.deep_rows.failed + self.scored.failed
                              + self._curve_failures(), columns=["method", "row", "status", "reason"])
        return self.nb.kept(failed, "failed_rows")

    def score(self, rows: Made) -> Scored:
        """Every row and the forest scored on validation and once on the evaluated splits (`evaluate.score_rows`):
        the validation table and Table 2 with bootstrap CIs (written)."""
        sc = score_rows(rows.nets, self.forest, self.inputs, int(self.p["n_boot"]), int(self.p["seed"]))
        self.nb.tables({"validation": validation_table(sc.valid, sc.thr), "metrics": sc.long,
                        "table2": table2(sc.long)}, index=("table2",))
        return sc

    @cached_property
    def scored(self) -> Scored:
        """The trained rows and the forest scored (`score`)."""
        return self.score(self.deep_rows)

    def evaluate(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The validation table and Table 2."""
        sc = self.scored
        return validation_table(sc.valid, sc.thr), table2(sc.long)

    def figures(self) -> pd.DataFrame:
        """ROC and precision-recall curves (the paper's Fig. 5) and recall by MR grade (written); recall per row
        and grade."""
        sc = self.scored
        self.figure(roc_pr_figure(sc.test, sc.thr), "04_roc_pr")
        by_grade = pd.concat([recall_by_grade(sc.grades[r], {r: sc.test[r][1]}, sc.thr) for r in sc.test],
                             ignore_index=True)
        self.nb.table(by_grade, "recall_by_grade")
        if by_grade.n.sum():
            self.figure(grade_figure(by_grade), "04_recall_by_grade")
        return by_grade.pivot(index="row", columns="grade", values="recall")

    # ------------------------------------------------------------ pool size and label budget

    @cached_property
    def training(self) -> Training:
        """How the curves train and score a row: config, augmentation, seed, bootstrap."""
        return Training(self.cfg, self.augment, int(self.p["seed"]), int(self.p["n_boot"]))

    def _pool_fractions(self) -> list[float]:
        return pool_fractions(self.p["pool_fractions"], "CUSSP-SIAM-25" in self.scored.test)

    @cached_property
    def pool_result(self) -> Curve:
        """CUSSP-SIAM-25 again from encoders pretrained on fractions of the pool, at equal steps (`curves.pool_curve`;
        written): F1 and ROC-AUC by pool size, with the fits' log rows."""
        sc, fractions = self.scored, self._pool_fractions()
        if not fractions:
            print("CUSSP-SIAM-25 did not train (see failed_rows): no pool-size curve")
        full_pool = unlabelled(list(self.patches.sets.values()), "window", exclude=self.inputs.test_subjects)
        own = (sc.test["CUSSP-SIAM-25"], sc.thr["CUSSP-SIAM-25"]) if fractions else None
        with self.nb.timer("pool experiment"):
            curve = pool_curve(self.inputs, full_pool, fractions, own, lambda: self.random_siam25,
                               lambda pool, tag: self._encoder(pool, "window", tag), self.training)
        self.nb.table(curve.table, "pool_curve")
        return curve

    def pool_curve(self) -> pd.DataFrame:
        """Test F1 and ROC-AUC by the number of unlabelled cines pretrained on, with the figure."""
        curve = self.pool_result.table
        if len(curve):
            self.figure(pool_figure(curve), "04_pool_size")
        return curve[curve.metric.isin(["f1", "roc_auc"])].pivot(index="pool_cines", columns="metric", values="value")

    @cached_property
    def random_siam25(self) -> Made:
        """CUSSP-SIAM-25 from the random start on every training cine, trained once (`curves.random_siam25`; timed
        by the curve that asks first)."""
        return random_siam25(self.inputs, self._random_encoder("window"), self.training)

    @cached_property
    def budget_result(self) -> Budget:
        """The Siamese rows from the Barlow Twins encoder against the same rows from a random encoder and the
        supervised ResNet-18 on `budgets` MR training cines (`curves.label_budget`; the per-draw table written)."""
        random_enc = {inp: self._random_encoder(inp) for inp in ("cycle", "window")}
        with self.nb.timer("label budgets"):
            budget = label_budget(self.inputs, self.p["budgets"], self.p["budget_draws"], self.pretrained.nets,
                                  random_enc, self.scored.models, lambda: self.random_siam25,
                                  0.0 in self._pool_fractions(), self.training)
        self.nb.table(budget.table, "budget_curve")
        return budget

    def budget_curve(self) -> pd.DataFrame:
        """Mean test ROC-AUC by label budget and row, with the figure."""
        table = self.budget_result.table
        if len(table):
            self.figure(budget_figure(table), "04_label_budget")
        return table.groupby(["budget", "row"]).roc_auc.mean().unstack("row")

    def _curve_logs(self) -> list[dict]:
        """The pool and budget curves' log rows, in the order the notebook makes them."""
        return self.pool_result.logs + self.budget_result.logs

    def _curve_failures(self) -> list[dict]:
        return self.pool_result.failed + self.budget_result.failed

    def budget_gap(self, budget: int | None = None) -> dict:
        """CUSSP-SIAM-25 minus the supervised ResNet-18 in test ROC-AUC at a budget (`curves.budget_gap`)."""
        return budget_gap(self.budget_result.scores, budget, int(self.p["n_boot"]), int(self.p["seed"]))

    # ------------------------------------------------------------ real cines and the run's Predictor

    def _real_4ch(self) -> list:
        """(name, cine) of the real 4CH cines under the data root: the UK Biobank demo's (with pseudo-labels) and
        the DICOM sample's."""
        return self.real_named(("4CH",), "real 4CH cines")

    @cached_property
    def real_results(self) -> pd.DataFrame:
        """Every network row on the real 4CH cines, none of which was trained on (`real.real_rows`; no MR label:
        none to score against), and a figure of each cine's valve line, patch and equalised patch (the paper's
        Fig. 8; both written)."""
        real, cases = real_rows(self._real_4ch(), self.find, self.patches.prep, self.scored.models)
        self.nb.table(real, "real_cines")
        if cases:
            self.figure(preprocessing_figure(cases), "04_real_patches")
        return real

    real_cines = shows("real_results", "Every network row on the real 4CH cines: the valve, the patch centre's "
                                       "distance, the MR probabilities.")

    def write_predictor(self, models: dict, sc: Scored) -> str:
        """The row validation ranks first (ROC-AUC) as the run's CUSSP Predictor with its patch settings and
        threshold (CUSSP-SIAM-25 when validation ranks nothing); the Predictor's row."""
        best, how = shipped_row(sc, models)
        if best not in models:
            raise StudySkipped(f"no {best} model in this run (its fit failed: see the failures table)")
        self.nb.predictor(Predictor.from_model(models[best].model, best, self.patches.prep, sc.thr[best],
                                               provenance=self.nb.provenance(self.store, None,
                                                                             anatomy=self.p["anatomy"], chosen_by=how)))
        return best

    def export(self) -> str:
        """Every row's model, and the row validation ranks first as the run's CUSSP Predictor; that row."""
        models = self.scored.models
        for r, m in models.items():
            save(m, self.out / "models" / f"{r}.model")
        return self.write_predictor(models, self.scored)

    def train(self, finish=None, rows: int | None = None) -> list[dict]:
        """What `cmrlib fit cussp` runs: the encoders and every row, each row handed to `finish`, then the forest,
        the validation thresholds (Table 2 scored too) and, in process 0, the run's Predictor; the training log."""
        made = self.make_rows(finish)
        sc = self.score(made)
        if rank() == 0:
            self.step(self.write_predictor, sc.models, sc)
        return pd.DataFrame(self.pretrained.logs + made.logs).to_dict("records")

    def headline_tables(self):
        """Table 2 beside the paper's, and the test scores as the unlabelled pool grows: asked for by name, so each
        is computed (and written) here when no step has asked for it yet."""
        if self.optional("scored") is not None:
            yield ("table2", "CUSSP: MR classification on the test split (95 % bootstrap CI; threshold chosen on "
                   "validation), beside the paper's Table 2", None)
        if (c := self.optional("pool_result")) is not None:
            d = c.table[c.table["metric"].isin(["f1", "roc_auc"])].pivot_table(
                index="pool_cines", columns="metric", values="value").round(3).reset_index()
            yield "headline_pool_curve", "CUSSP-SIAM-25 as the unlabelled pool grows (test F1, ROC-AUC)", d

    def checks(self) -> pd.DataFrame:
        """The gate, the phantom task's difficulty, the paper's targets, the label-budget comparison and the
        notebook's time (written, with the training log, the failures and timings)."""
        targets = self.targets([*phantom_checks(self.scored, self.gate_gap, self.budget_gap()),
                                *real_checks(self.optional("real_results")), *self.time_target()])
        self.train_log()
        self.failures()
        return targets
