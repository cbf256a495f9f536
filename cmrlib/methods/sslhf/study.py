"""SSLHF's experiment (Zhong et al., EMBC 2021) on SAX cines: the heart-failure cohort and its labels, LV patches,
the restoration proxies, the encoder gate, every row of Tables I-III in patient-grouped cross-validation with the
learning rate chosen on each fold's validation patients, the fold-paired differences, figures and the run's SSLHF
Predictor."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import pandas as pd

from ...io.real import MANUAL
from ...learn import Made, config_from, precision
from ...predictor import load as load_predictor
from ...study import Lazy, Study as Base, StudyError
from ...study import StudySkipped, by_reason, shows
from ...utils import seed_for
from . import crossval
from .data import (CLASSES, HFREF_BELOW, HFCohort, HFPatches, PatchSettings, cohort_table, flipped_labels, hf_cohort,
                   patch_counts, patient_folds, preprocess_store)
from .evaluate import TABLES, detectability, differences, mean_roc, phantom_checks, summarised, table
from .figures import CAPTIONS as FIGURE_CAPTIONS
from .figures import ef_figure, learning_curve_figure, real_figure, restoration_figure, roc_figure
from .learner import NO_PROXY, PROXIES, SSLHFConfig, network, pool_proxies, restoration_cases, save_folds
from .predictor import Predictor
from .real import RealCV, gate_summary, predictor_rows, real_checks, real_run, segmented_lvef


@dataclass(frozen=True)
class HFSets:
    """The cohort's and the pool's patches, the labelled patients that gave a patch, and the failures."""

    patches: HFPatches
    pool: HFPatches
    labels: pd.DataFrame
    failures: pd.DataFrame


@dataclass(frozen=True)
class LearningCurve:
    """The learning curve's summary (patient AUC by fraction of the training patients) and its fits' log rows."""

    summary: pd.DataFrame
    logs: list


@dataclass(frozen=True)
class CrossValidated:
    """The cross-validation: test predictions, the fits' log rows, fold metrics, their summary, the Predictor's
    file (None: no SSLHF row trained)."""

    pred: pd.DataFrame
    fit_logs: list
    fm: pd.DataFrame
    summ: pd.DataFrame
    predictor_file: Path | None


class Study(Base):
    """Notebook 05: one step per cell, its named pieces shared as cached properties (`outline()` lists both)."""

    method = "sslhf"
    number = "05"
    CAPTIONS = FIGURE_CAPTIONS
    GLANCE = dict(method="SSLHF", headline="patient AUC / ACC", paper="0.85 / 0.82",
                  phantom=[["AUC", "SSLHF patient AUC"], ["ACC", "SSLHF patient ACC"]],
                  real=[["SSLHF minus no proxy, patient AUC", "real patients: SSLHF minus A: no proxy (patient AUC)"]])
    PATHS = ("labels_csv",)
    BATCHES = ("bs", "proxy_bs")
    PARAMS: ClassVar[dict] = {
        # study
        **Base.RUN,  # profile, seed, run_dir, figures_dir, budget_min
        "data_dir": None,            # real-data root (acdc/) for the real-cine table; None: $CMRLIB_DATA
        "labels_csv": None,          # subject + lvef (%) or hf_class (HFrEF / HFpEF): a real cohort's heart-failure patients
        "anatomy": "segmenter",      # where the LV is found: "segmenter" (the run's segmentation Predictor) or "labels"
                                     # (the store's own label maps)
        "threads": 2,
        "workers": 1,  # Dask worker processes on this machine for the data-parallel steps (1: run them in this process)
        "scheduler": None,  # a Dask scheduler instead: address (tcp://host:8786) or scheduler file; "local": a LocalCluster
        "fits_on_workers": True,  # the (row, fold) fits as Dask tasks when a cluster runs; False: one at a time
                                  # in this process (one GPU, or 3D networks past a worker's share of memory)
        # phantom heart-failure cohort (used when the store is a phantom and labels_csv is None)
        "hf_patients": 184,          # the paper's 184
        "hf_first_index": 100000,    # first subject index: numbers notebook 00 and 04 never use
        "hf_config": {"p_hfref": 0.3, "p_hfpef": 0.7, "p_hcm": 0.0, "hfref_ef": [36, 9, 15, 60],
                      "hfpef_ef": [58, 6, 42, 75], "ef_measurement_sd": 4.0},  # LVEF mean, SD, low, high of each
                                                                              # phenotype (truncated normal)
        # experiment
        "rows": ["SSLHF", "A: no proxy", "B: no frame covering", "C: no local shuffling", "D: no patch covering",
                 "3D ResNet-50", "3D DenseNet-121"],
        "n_folds": 5,
        "proxy_data": "pool",        # "pool": the store's SAX cines outside the HF cohort; "folds": per fold (the paper's way)
        "curve_fractions": [0.5, 0.25],  # shares of each fold's training patients for the learning curve (1.0 is the main run)
        "curve_rows": ["SSLHF", "A: no proxy"],
        "real_rows": ["SSLHF", "A: no proxy", "3D ResNet-50", "3D DenseNet-121"],  # rows on the real SAX patients
        "real_per_group": None,      # real SAX patients kept per diagnosis, the first by id (None: all)
        "real_proxy_steps": 100,     # the pool's SSLHF proxy trained on further, per fold, on the real training and
                                     # validation patients' patches (never the test fold's)
        # patches
        "size": 32,                  # px per side
        "patch_mm": 3.0,             # mm per patch pixel
        "n_frames": 32,              # frames per patch (one cycle from ED, resampled)
        "min_frames": 16,            # fewer frames in a cine: left out with its reason
        "max_slices": 3,             # LV slices per patient, spread base to apex (None: every LV slice)
        "min_lv_px": 20,             # LV pixels at ED for a slice to count as showing the LV
        "clip_pct": 99.5,            # intensity clip (percentile) before z-scoring
        # model
        "widths": [16, 32, 64, 128, 256],
        "hidden": [128, 32],
        "dropout": 0.3,
        "proxy_steps": 400,
        "proxy_bs": 8,
        "proxy_lr": 1e-3,
        "proxy_decay_every": 20,
        "proxy_skips": 4,            # the proxy decoder's joins with the encoder, deepest first (4: the paper's U-Net)
        "epochs": 30,                # most epochs per fit; each stops when its validation loss has not improved for `patience`
        "bs": 8,
        "lrs": [1e-5, 1e-4, 1e-3],   # learning rates tried for every row and fold, the best on validation kept (the paper: 1e-5)
        "lr_from_first_fold": False, # True: the rates tried in folds 0 and 1 only, fold 0's winner kept in the others
        "patience": 5,
        "min_epochs": 5,             # epochs every fit trains before one may be kept: a validation loss lowest in the first
                                     # epochs (the network still near its start) would keep a near-constant classifier
        "decay_every": 10,
        "resnet_widen": 1.0,
        "densenet_init": 64,
        "densenet_growth": 32,
        "groups": 8,
        "bf16": False,               # bfloat16 autocast on the CPU (faster 3D training where the CPU supports it)
    }

    def __init__(self, params: dict, out=None):
        super().__init__(params, out)
        self.segment = self.anatomy("SAX")  # cine -> canonical labels (the ED frame's, for the patches)
        self.cfg = config_from(SSLHFConfig, self.p)  # the parameters that name its fields
        self.fit_client = self.client if self.p["fits_on_workers"] else None
        print("training arithmetic:", precision(self.cfg.bf16))  # bf16 only where the CPU computes it natively
        self.prep = asdict(config_from(PatchSettings, self.p))
        if self.p["proxy_data"] not in ("pool", "folds"):
            raise StudyError(f"proxy_data is 'pool' or 'folds', got {self.p['proxy_data']!r}")

    @cached_property
    def hf_cohort(self) -> HFCohort:
        """The heart-failure patients and their classes (a phantom HF cohort made here, or `labels_csv`; written)
        and the unlabelled pool; `StudySkipped` when the store has real cines and no labels, or none is labelled."""
        p = self.p
        made = (self.phantom_more("hf_cohort", p["hf_patients"], ("SAX",), start=p["hf_first_index"],
                                  **p["hf_config"]) if p["labels_csv"] is None else None)
        cohort = hf_cohort(self.store, p["labels_csv"], made)
        self.nb.table(cohort.labels, "labels")
        return cohort

    def cohort(self) -> pd.DataFrame:
        """The heart-failure patients per class with their LVEF."""
        p, labels = self.p, self.hf_cohort.labels
        if labels.attrs["unknown"]:
            print(f"{len(labels.attrs['unknown'])} subjects in the labels table are not in the store; ignored")
        if p["labels_csv"] is not None and labels.attrs["unlabelled"]:
            print(f"{len(labels.attrs['unlabelled'])} subjects with a SAX cine have no label: unlabelled pool only")
        return cohort_table(labels)

    def lvef_figure(self) -> None:
        """Measured LVEF by phenotype, and against the truth (how many labels measurement error flips)."""
        c = self.hf_cohort
        labels = c.labels
        if not labels.lvef.notna().any():
            raise StudySkipped("the labels give classes without LVEF: no LVEF figure")
        self.figure(ef_figure(labels, c.phenotype), "05_lvef")
        if labels.lvef_true.notna().any():
            near, wrong = flipped_labels(labels)
            print(f"{near} patients have a true LVEF within 5 points of 50 %; {wrong} of {len(labels)} labels "
                  "disagree with the true LVEF (measurement error)")

    @cached_property
    def patches(self) -> HFSets:
        """LV patches of the cohort and the pool (cached per cohort, settings and anatomy), the failures (written),
        and the labelled patients that gave a patch."""
        c = self.hf_cohort
        sets = {}
        with self.nb.timer("patches"):
            for name, st, ids in (("cohort", c.hf_store, c.hf_store.select(view="SAX")),
                                  ("pool", c.pool_store, c.pool_ids)):
                ids = [i for i in ids if name == "pool" or i.rsplit("_", 1)[0] in set(c.labels.subject)]
                sets[name] = self.prepared(HFPatches, f"patches_{name}", st, ids, self.prep, lambda st=st, ids=ids:
                                           preprocess_store(st, self.segment, ids, **self.prep), anatomy=True)
        failures = pd.concat([s.failures.assign(store=n) for n, s in sets.items()], ignore_index=True)
        self.nb.table(failures, "preprocessing_failures")
        labels = c.labels[c.labels.subject.isin(set(sets["cohort"].subject))].reset_index(drop=True)
        return HFSets(sets["cohort"], sets["pool"], labels, failures)

    def prepare(self) -> tuple[pd.DataFrame, pd.DataFrame | str]:
        """Patients and patches per class, and the failures by reason."""
        ps = self.patches
        no_patch = sorted(set(self.hf_cohort.labels.subject) - set(ps.patches.subject))
        if no_patch:
            print(f"{len(no_patch)} labelled patients gave no patch and are left out (reasons in "
                  "preprocessing_failures)")
        print(f"unlabelled pool: {len(ps.pool)} patches from {len(set(ps.pool.subject))} subjects")
        return patch_counts(ps.labels, ps.patches.subject), by_reason(ps.failures, "every cine gave patches")

    @cached_property
    def fold_of(self) -> dict:
        """Each patient's fold: patient-grouped, stratified."""
        return patient_folds(self.patches.labels, int(self.p["n_folds"]), seed_for(self.p["seed"], "sslhf", "folds"))

    def folds(self) -> pd.DataFrame:
        """Patients per fold and class."""
        labels = self.patches.labels
        return labels.assign(fold=labels.subject.map(self.fold_of)).groupby(["fold", "hfref"]).size(
        ).unstack().rename(columns=CLASSES)

    @cached_property
    def proxy_rows(self) -> list[str]:
        """The rows that start from a restoration proxy."""
        return [r for r in self.p["rows"] if r in PROXIES]

    @cached_property
    def pool_proxies(self) -> Made:
        """The restoration proxies trained once on the unlabelled pool (`proxy_data='pool'`), with their log rows;
        `StudySkipped` when they train per fold instead."""
        p = self.p
        if p["proxy_data"] == "folds":
            raise StudySkipped("the proxies train on each fold's training patients when the fold first needs them "
                               "(proxy_data='folds')")
        with self.nb.timer("proxy"):
            return Made(*pool_proxies(self.patches.pool.x, self.proxy_rows, self.cfg, p["seed"]))

    def proxy(self) -> pd.DataFrame:
        """The pool's proxies' training log (`proxy_data='pool'`)."""
        if self.p["proxy_data"] == "folds":
            print("the proxies train on each fold's training patients when the fold first needs them "
                  "(proxy_data='folds'); their logs join the run's train_log")
            return None
        return pd.DataFrame(self.pool_proxies.logs)

    def restorers(self, fold: int) -> dict:
        """The proxies a fold's classifiers start from: the pool's, or the fold's own, trained on first use."""
        if self.p["proxy_data"] == "pool":
            return self.pool_proxies.nets
        return self.fold_proxies[fold][0]

    @cached_property
    def fold_proxies(self) -> Lazy:
        """proxy_data='folds': fold -> its proxies and log rows, trained on first use."""
        def train(fold):
            with self.nb.timer("proxy"):
                return crossval.fold_proxies(self.patches.patches, self.patches.labels, self.fold_of, fold, self.cfg,
                                             self.proxy_rows)
        return Lazy(train)

    def _proxy_logs(self) -> list[dict]:
        """The proxies' log rows: the pool's, or every fold's in fold order."""
        if self.p["proxy_data"] == "pool":
            return self.pool_proxies.logs
        return [row for fold in range(int(self.p["n_folds"])) for row in self.fold_proxies[fold][1]]

    @cached_property
    def gate_table(self) -> pd.DataFrame:
        """The encoder gate: a probe of the frozen proxy encoder against a random one on each fold's validation
        patients, at each encoder level (written)."""
        if "SSLHF" not in self.proxy_rows:
            raise StudySkipped("no SSLHF row in this profile's rows: no proxy to gate")
        random_encoder = network(NO_PROXY, self.cfg).encoder
        gate = crossval.probe(lambda fold: {"SSLHF proxy": self.restorers(fold)["SSLHF"].encoder,
                                            "random": random_encoder}, self.patches.patches, self.patches.labels,
                              self.fold_of)
        return self.nb.kept(gate, "gate_probe")

    def gate(self) -> pd.DataFrame:
        """The deepest level's probe AUC by encoder (printed by level)."""
        gate = self.gate_table
        levels = gate.pivot_table(index="level", columns="encoder", values="auc", aggfunc="mean").round(3)
        print("probe AUC by encoder level, mean over folds (level 5: the deepest, the one the classifier pools):")
        print(levels.to_string())
        return gate[gate.deepest].groupby("encoder").auc.agg(["mean", "std", "count"]).round(3)

    @cached_property
    def cv(self) -> CrossValidated:
        """Every (row, fold) at each rate of `lrs`, the rate and early stop chosen on the fold's validation
        patients (with `lr_from_first_fold`, fold 0's rate in folds 2-4; Dask tasks when a cluster runs);
        failures, predictions, fold metrics and models written, and the run's SSLHF Predictor (every fold's
        classifier, their probabilities averaged)."""
        p, ps = self.p, self.patches
        with self.nb.timer("classifiers"):
            pred, fit_logs, kept = crossval.cross_validate(ps.patches, ps.labels, self.fold_of, p["rows"], self.cfg,
                                                           self.restorers, client=self.fit_client)
        failed = crossval.failures(fit_logs)
        if len(failed):
            print(f"{len(failed)} (row, fold) runs failed and are left out of the tables:\n{failed.to_string()}")
        sslhf_folds = save_folds(kept, self.out / "models")
        provenance = self.nb.provenance(self.hf_cohort.hf_store, None, anatomy=p["anatomy"])
        predictor_file = (self.nb.predictor(Predictor.from_folds(sslhf_folds, "SSLHF", self.prep,
                                                                 provenance=provenance)) if sslhf_folds else None)
        fm, summ = summarised(pred, p["seed"])
        self.nb.tables({"failed_runs": failed, "predictions": pred, "fold_metrics": fm, "summary": summ})
        return CrossValidated(pred, fit_logs, fm, summ, predictor_file)

    def fit(self) -> pd.DataFrame:
        """The learning rate kept per row and fold."""
        rates = pd.DataFrame([r for r in self.cv.fit_logs if r.get("status") == "ok"])
        return rates.pivot(index="row", columns="fold", values="lr").reindex(self.p["rows"])

    def train(self, finish=None, rows: int | None = None) -> list[dict]:
        """What `cmrlib fit sslhf` runs: the cohort, patches, folds, proxies and every (row, fold) with its models
        and the run's Predictor; the training log. Each classifier is kept on its fold's validation patients inside
        the cross-validation and saved by it, so `finish` exports none."""
        try:
            self.hf_cohort
        except StudySkipped as e:
            raise ValueError(f"the SSLHF study needs heart-failure labels: {e}") from e
        return self._proxy_logs() + self.cv.fit_logs

    @cached_property
    def paper_tables(self) -> dict[str, pd.DataFrame]:
        """Tables I-III (pooled out of fold, patient-bootstrap CIs) for the rows run, by title (written)."""
        out = {}
        for name, table_rows in TABLES.items():
            present = [r for r in table_rows if r in self.p["rows"]]
            if present:
                out[f"Table {name}"] = table(self.cv.summ, present, n_folds=int(self.p["n_folds"]))
                self.nb.table(out[f"Table {name}"], f"table_{name}", index=True)
        return out

    @cached_property
    def row_differences(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """SSLHF minus each row, fold-paired, with CIs; and the cohort size that would detect each gap (written)."""
        diffs = self.nb.kept(differences(self.cv.fm), "differences")
        n = len(self.patches.labels)
        return diffs, self.nb.kept(pd.DataFrame([detectability(self.cv.fm, n, "SSLHF", r) for r in self.p["rows"]
                                                 if r != "SSLHF"]), "detectability")

    evaluate = shows("paper_tables", "Tables I-III, by title.")

    differences = shows("row_differences", "SSLHF minus each row with CIs, and the cohort size that would detect each "
                                           "gap.")

    def figures(self) -> None:
        """The paper's Fig. 4: mean test ROC curves at patch and patient level."""
        roc = pd.concat([mean_roc(self.cv.pred, level) for level in ("patch", "patient")], ignore_index=True)
        self.nb.table(roc, "mean_roc")
        self.figure(roc_figure(roc, self.cv.summ), "05_roc")

    def restoration_figure(self) -> None:
        """The paper's Fig. 3: a patch corrupted spatially and temporally, and the proxy's restorations."""
        if "SSLHF" not in self.p["rows"]:
            raise StudySkipped("no SSLHF row in this profile's rows: no proxy to show")
        ps = self.patches
        x = (ps.pool.x if len(ps.pool) else ps.patches.x)[0]
        cases = restoration_cases(self.restorers(0)["SSLHF"], x, seed_for(self.p["seed"], "sslhf", "figure"))
        self.figure(restoration_figure(cases), "05_restoration")

    @cached_property
    def curve(self) -> LearningCurve:
        """`curve_rows` again on fractions of each fold's training patients at the rates chosen above: the summary
        (written) and the fits' log rows; `StudySkipped` without a fraction or a curve row."""
        p, ps, cv = self.p, self.patches, self.cv
        if not (p["curve_fractions"] and all(r in p["rows"] for r in p["curve_rows"])):
            raise StudySkipped(f"no learning curve: curve_fractions {p['curve_fractions']} or a curve row of "
                               f"{p['curve_rows']} not run")
        with self.nb.timer("learning curve"):
            summ, logs = crossval.learning_curve(ps.patches, ps.labels, self.fold_of, p["curve_rows"], self.cfg,
                                                 self.restorers, p["curve_fractions"], cv.pred,
                                                 crossval.chosen_rates(cv.fit_logs), p["seed"], self.fit_client)
        self.nb.table(summ, "learning_curve")
        return LearningCurve(summ, logs)

    def learning_curve(self) -> pd.DataFrame:
        """Patient AUC by fraction of the training patients, with the figure."""
        summ, logs = self.curve.summary, pd.DataFrame(self.cv.fit_logs + self.curve.logs)
        n_train = logs[logs.row.isin(self.p["curve_rows"])].groupby("fraction").train_patients.mean()
        self.figure(learning_curve_figure(summ, n_train), "05_learning_curve")
        return summ.query("level == 'patient' and metric == 'auc'").pivot(index="fraction", columns="row",
                                                                          values="mean")

    @cached_property
    def real_results(self) -> RealCV:
        """Tables II-III's `real_rows` on the real SAX cohort (`Study.real_sax`; `real.real_labels`): the same
        patches, gate, rows, rate choice and tables as the phantom's; the SSLHF row from the proxy the gate ranks
        first on each fold's validation patients (`real.real_run`). Tables, differences, gate and figure
        written; `StudySkipped` without the real cohort or the pool's SSLHF proxy."""
        p = self.p
        proxies = self.optional("pool_proxies")
        if proxies is None or "SSLHF" not in proxies.nets:
            raise StudySkipped("the real patients' SSLHF row starts from the pool's proxy; this run trained none "
                               "(proxy_data='pool' and the SSLHF row)")
        store, subjects = self.real_sax(int(p["n_folds"]))
        with self.nb.timer("real patients: patches"):
            ids = subjects.cine_id.tolist()
            patches = self.prepared(HFPatches, "real_patches", store, ids, self.prep, lambda: preprocess_store(
                store, self.anatomy("SAX", real=True), ids, progress=False, **self.prep), anatomy=True, real=True)
        self.nb.table(patches.failures, "real_preprocessing_failures")
        r = real_run(patches, subjects, proxies.nets["SSLHF"], [x for x in p["real_rows"] if x in p["rows"]], self.cfg,
                     p["real_proxy_steps"], int(p["n_folds"]), p["seed"], self.nb.timer,
                     lambda labels: self._segmented_lvef(store, labels), self.fit_client)
        print(gate_summary(r.gate, r.chosen))
        shown = ("real_predictions", "real_summary", "real_table", "real_differences", "real_detectability")
        self.nb.tables({"real_gate_probe": r.gate, "real_train_log": pd.DataFrame(r.fit_logs),
                        **{name: r.tables[name] for name in shown}}, index=("real_table",))
        self.figure(real_figure(r.tables["real_summary"], self.cv.summ, r.rows), "05_real_patients", n=len(r.labels))
        return RealCV(r.tables["real_table"], r.tables["real_predictions"], r.tables["real_summary"], r.chosen.logs,
                      r.chosen.name, r.chosen.gate)

    def _segmented_lvef(self, store, labels: pd.DataFrame) -> pd.Series | None:
        """Each real patient's LVEF from the run's segmenter (the measurement a cardiologist already has), each patient
        read by the cross-fitted model that never saw it where the run has them; None without a segmenter."""
        if not self._segmentation_file.exists():
            print("no measurement row: this run has no segmentation Predictor (notebook 01)")
            return None
        with self.nb.timer("real patients: segmented LVEF"):
            meas = self.table1_measures(store, labels.subject, progress=False, real=True, overshoot=True)
        return segmented_lvef(meas, len(labels))

    real_patients = shows("real_results.table", "The real patients' table (Tables II-III's rows).")

    def real_cines(self) -> pd.DataFrame:
        """The run's SSLHF Predictor on the real SAX cines here: ACDC patient090's (ACDC's others and the UK Biobank
        demo's SAX hold ED and ES only, too few frames for a patch over the cycle); its HFrEF probability beside
        the LVEF of the cine's manual masks, or why it cannot read the cine (written)."""
        if self.cv.predictor_file is None:
            raise StudySkipped("no SSLHF Predictor in this run")
        named = self.real_named(("SAX",), "full ACDC SAX cine", MANUAL)
        return self.nb.kept(predictor_rows(load_predictor(self.cv.predictor_file), named, HFREF_BELOW), "real_cines")

    def headline_tables(self):
        """Tables I-III beside the paper's, and SSLHF's fold-paired differences from each row."""
        for name in ("I", "II", "III"):  # by name: computed (and written) here when no step has asked yet
            if f"Table {name}" in (self.optional("paper_tables") or {}):
                yield (f"table_{name}", f"SSLHF Table {name}: HFrEF vs HFpEF, pooled over five test folds "
                       "(patient-bootstrap 95 % CI), beside the paper's values", None)
        if (d := self.optional("row_differences")) is not None:
            yield "headline_differences", "SSLHF minus each row, patient-level AUC fold by fold (95 % CI)", d[0].round(3)
        if self.optional("real_results") is not None:
            yield ("real_table", "SSLHF on real ACDC SAX patients (reduced vs preserved LVEF, five folds by patient; "
                   "95 % CI), beside the paper's values", None)

    def train_log(self) -> pd.DataFrame:
        """Every training row of the notebook: the proxies', the classifiers', the learning curve's and the real
        patients' proxies' (written)."""
        curve, real = self.optional("curve"), self.optional("real_results")
        log = pd.DataFrame(self._proxy_logs() + self.cv.fit_logs + (curve.logs if curve is not None else [])
                           + (real.logs if real is not None else []))
        return self.nb.kept(log, "train_log")

    def checks(self) -> pd.DataFrame:
        """The paper's targets, no collapsed run, the gate and the notebook's time (written with the training log)."""
        self.train_log()
        gate = self.optional("gate_table")
        gate = (gate[gate.deepest].groupby("encoder").auc.mean().round(3) if gate is not None  # as the gate shows it
                else pd.Series(dtype=float))
        seed, real = seed_for(self.p["seed"], "sslhf", "paired"), self.optional("real_results")
        return self.targets([*phantom_checks(self.cv.pred, self.cv.summ, self.p["rows"], gate, seed),
                             *(real_checks(real, seed) if real is not None else []), *self.time_target()])
