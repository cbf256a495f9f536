"""CUSSP's experiment (Table 2 of arXiv 2310.04871) on the run's 4CH cines: labels and an unlabelled pool, the
valve patches, the Barlow Twins encoders and their gate against a random encoder, every row trained, thresholds
on validation, Table 2 on test with bootstrap CIs, the pool-size and label-budget curves, and the run's CUSSP
Predictor."""
from __future__ import annotations

import contextlib
from dataclasses import asdict
from typing import ClassVar

import numpy as np
import pandas as pd
from fastprogress.fastprogress import progress_bar

from ... import modelfile
from ...distributed import rank
from ...learn import attempt, config_from, reusable, record_settings
from ...measure import TABLE1_VIEWS, subject_measures, table1_frames
from ...study import Study as Base, StudySkipped
from ...utils import rng, seed_for
from .data import PatchAug, PatchSet, PatchSettings, labelled, mr_labels, preprocess_store, unlabelled
from .evaluate import auc_gap, evaluate, recall_by_grade, table2, thresholds, validation_table
from .figures import budget_figure, grade_figure, pool_figure, preprocessing_figure, roc_pr_figure
from .learner import (INPUTS, JOINT_WEIGHTS, SUPERVISED, CUSSPConfig, fit, fit_siamese, fit_supervised,
                      pretrain, probe, random_forest, save, scores)
from .predictor import Predictor

TABLE1 = ["LAVmax", "LAVmin", "LASV", "LAEF", "RAVmax", "RAVmin", "RASV", "RAEF", "LVESV", "LVEDV", "LVSV", "LVEF",
          "LVCO", "LVM", "RVESV", "RVEDV", "RVSV", "RVEF"]  # the paper's Table 1: the forest's measures (per BSA)


class Study(Base):
    """Notebook 04: `cohort`, `prepare`, `forest_measures`, `pretrain`, `gate`, `fit`, `evaluate`, `figures`,
    `pool_curve`, `budget_curve`, `export`, `checks`."""

    method = "cussp"
    number = "04"
    PATHS = ("labels_csv",)
    BATCHES = ("bs", "pretrain_bs")
    PARAMS: ClassVar[dict] = {
        # study
        **Base.RUN,  # profile, seed, run_dir, figures_dir, budget_min
        "data_dir": None,            # real-data root (ukbb-demo/, mvnet-dicom-sample/) for the real-cine check; None: $CMRLIB_DATA
        "labels_csv": None,          # subject, mr (0/1) for a real cohort (the phantom's labels are its mr_grade)
        "anatomy": "segmenter",      # where the LA, LV and valve are found: "segmenter" (the run's segmentation
                                     # Predictor) or "labels" (the store's own label maps)
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
        self.models, self.failed, self.encoders, self.real = {}, [], {}, None

    # ------------------------------------------------------------ cohort and preprocessing

    def cohort(self) -> pd.DataFrame:
        """MR labels per subject (the cohort's and the labelled subjects made here) and the unlabelled pool (new
        phantom subjects, 4CH only); cines per split/class."""
        p = self.p
        n_labelled = int(p["mr_subjects"]) if p["labels_csv"] is None else 0
        extra = self.phantom_more("labelled", n_labelled, ("SAX", "2CH", "4CH"), **dict(p["mr_config"]))
        self.stores = {"cohort": self.store, **({"labelled": extra} if extra is not None else {})}
        self.pool = self.phantom_more("pool", p["pool_subjects"], ("4CH",),
                                      start=self._after_cohort() + (len(extra.manifest().subject.unique())
                                                                    if extra is not None else 0))
        parts = [mr_labels(st, p["labels_csv"] if name == "cohort" else None).assign(store=name)
                 for name, st in self.stores.items()]
        self.labels = pd.concat(parts, ignore_index=True)
        self.labels.attrs = parts[0].attrs
        if self.labels.attrs["unknown"]:
            print(f"{len(self.labels.attrs['unknown'])} subjects in the labels table are not in the store; ignored")
        if self.labels.attrs["unlabelled"]:
            print(f"{len(self.labels.attrs['unlabelled'])} subjects with a 4CH cine have no label: pretraining pool "
                  "only")
        self.manifest = pd.concat([st.manifest().assign(store=n) for n, st in self.stores.items()], ignore_index=True)
        counts = self.labels.groupby(["split", "mr"]).size().unstack(fill_value=0).reindex(columns=[0, 1],
                                                                                         fill_value=0)
        counts = counts.rename(columns={0: "non-MR", 1: "MR"})
        counts["MR %"] = (100 * counts["MR"] / counts.sum(axis=1)).round(1)
        counts.loc["unlabelled pool"] = [len(self.pool) if self.pool is not None else 0, 0, np.nan]
        return counts

    def _after_cohort(self) -> int:
        """The first phantom subject number after the cohort's (where the labelled subjects begin)."""
        import json
        made = json.loads((self.store.root / "phantom.json").read_text()) if (self.store.root /
                                                                                "phantom.json").exists() else {}
        return int(made.get("start", 0)) + int(made.get("n", 0))

    def _read(self, cine_id: str):
        """A cine of the labelled stores."""
        return self.stores[self.manifest.set_index("cine_id").store[cine_id]].read(cine_id)

    def _segment(self, cine):
        """The cine's anatomy, kept for the labelled cines (the forest's measures reuse it)."""
        labels_ = self.find(cine)
        if cine.subject in self._labelled_subjects:
            self.lax_cache[cine.cine_id] = labels_
        return labels_

    def prepare(self) -> tuple[pd.DataFrame, pd.DataFrame | str]:
        """Valve patches of every 4CH cine (cached per store, settings and anatomy); the cines per store and the
        failures by reason (the failures table written)."""
        p = self.p
        n_frames = int(p["frames"] or self.manifest.query("view == '4CH'").n_frames.median())
        self.prep = asdict(config_from(PatchSettings, p, frames=n_frames))
        self.lax_cache, self.patch_sets, self._budget_models = {}, {}, {}
        self._labelled_subjects = set(self.labels.subject)
        with self.nb.timer("preprocessing"):
            for name, st in (*self.stores.items(), ("pool", self.pool)):
                if st is None:
                    continue
                ids = st.select(view="4CH")
                key = dict(self.prep, ids=ids, cohort=st.fingerprint(), anatomy=p["anatomy"],
                           segmenter=self.anatomy_key())
                self.patch_sets[name] = self.cached(PatchSet, f"patches_{name}", key,
                                                    lambda st=st, ids=ids: preprocess_store(st, self._segment, ids,
                                                                                            **self.prep))
        self.labelled_set = PatchSet.join([self.patch_sets[n] for n in self.stores])
        failures = pd.concat([ps.failures.assign(store=n) for n, ps in self.patch_sets.items()], ignore_index=True)
        self.nb.table(failures, "preprocessing_failures")
        per_store = pd.DataFrame({n: dict(cines=len(ps) + ps.failures.cine_id.nunique() - int((~ps.has_window).sum()),
                                          patches=len(ps), windows=int(ps.has_window.sum()),
                                          left_out=len(set(ps.failures.cine_id) - set(ps.cine_ids)))
                                  for n, ps in self.patch_sets.items()}).T
        return per_store, (failures.groupby(["store", "reason"]).size().rename("cines").reset_index() if len(failures)
                           else "every cine preprocessed")

    def preprocessing_figure(self) -> None:
        """The paper's Fig. 8 for the most severe MR subject, a mild one and a non-MR one."""
        show, have = [], self.labels[self.labels.subject.isin(self.labelled_set.subjects)]
        for pick, title in ((have[have.mr == 1].sort_values("grade", ascending=False), "MR"),
                            (have[have.grade == 1], "MR"), (have[have.mr == 0], "no MR")):
            if len(pick) and not any(s == pick.subject.iloc[0] for s, _ in show):
                sub = pick.subject.iloc[0]
                cine = self._read(self.manifest.query("view == '4CH' and subject == @sub").cine_id.iloc[0])
                grade = pick.set_index("subject").grade.get(sub)
                show.append((sub, (f"{title}" + (f" (grade {int(grade)})" if pd.notna(grade) and grade > 0 else ""),
                                   cine, self.find(cine))))
        if show:
            self.nb.figure(preprocessing_figure([c for _, c in show]), "04_preprocessing",
                           "CUSSP preprocessing (the paper's Fig. 8): ED frame with the SVM valve line (red) and the "
                           "patch (yellow), the frame equalised over the LA's intensities, and the valve patch over the "
                           "cycle, for a severe and a mild MR subject and one without MR.")

    def forest_measures(self) -> pd.DataFrame:
        """The 18 Table-1 measures per BSA from the run's segmentations (cached per anatomy): the forest's input."""
        anatomy = self.p["anatomy"]
        path = self.out / "table1_measures.csv"
        with self.nb.timer("forest measures"):
            cached = pd.read_csv(path, dtype={"subject": str}) if path.exists() else None
            if (cached is not None and set(cached.subject) >= set(self.labels.subject)
                    and set(cached.get("anatomy", [])) == {anatomy}):
                measures = cached
            else:
                find = self.find if anatomy == "labels" else self._sax_and_lax()
                parts = []
                for name, st in self.stores.items():
                    m = self.manifest[self.manifest.store == name]
                    ids = m[m.view.isin(TABLE1_VIEWS) & m.subject.isin(self.labels.subject)].cine_id
                    segment = lambda cid: find(st.read(cid, table1_frames(st, cid)))  # a SAX stack: ED and ES only
                    preds = {cid: self.lax_cache[cid] if cid in self.lax_cache else segment(cid)
                             for cid in progress_bar(list(ids), leave=False)} if find is not None else {}
                    parts.append(subject_measures(st, preds))
                measures = pd.concat(parts, ignore_index=True).assign(anatomy=anatomy)
                self.nb.table(measures, "table1_measures")
        feats = measures.set_index("subject")
        bsa = self.manifest.drop_duplicates("subject").set_index("subject").bsa_m2
        self.X = pd.DataFrame({m: feats[f"{m}_auto"] / bsa.reindex(feats.index) for m in TABLE1
                               if f"{m}_auto" in feats})
        print(f"{self.X.shape[1]} measures; subjects with every measure: {int(self.X.notna().all(axis=1).sum())} of "
              f"{len(self.X)} (scikit-learn's forest splits on missing values, so a subject with an unmeasured chamber "
              "stays in)")
        return self.X

    def _sax_and_lax(self):
        """Labels by view from the run's segmenters when it has a SAX one too (the forest's ventricular measures);
        None when it has not."""
        seg = self.segmentation()
        return seg.labels if "SAX" in seg.nets else None

    def _xy(self, inp: str, split: str, subjects=None):
        """(x, y) of one input and split, optionally only some subjects' cines (a label budget)."""
        x, y, lab = self.data[inp][split]
        if subjects is None:
            return x, y
        keep = lab.subject.isin(set(subjects)).to_numpy()
        return x[keep], y[keep]

    # ------------------------------------------------------------ pretraining and its gate

    def pretrain(self) -> pd.DataFrame:
        """A Barlow Twins encoder per input (full cycle, systolic window) on the unlabelled pool, reused from
        `encoders/` when pretrained before with exactly these settings and cines; the pretraining rows."""
        p = self.p
        self.test_subjects = self.labels.subject[self.labels.split.isin(p["eval_splits"])].tolist()
        self.splits = {"train": "train", "valid": "valid", "eval": p["eval_splits"]}  # "eval": the scored splits
        self.data = {inp: {k: labelled(self.labelled_set, self.labels, s, inp) for k, s in self.splits.items()}
                     for inp in ("cycle", "window", "crops")}
        rows = []
        with self.nb.timer("pretraining"):
            for inp in ("cycle", "window"):
                pool_x = unlabelled(list(self.patch_sets.values()), inp, exclude=self.test_subjects)
                done, failure = attempt(dict(method="CUSSP", row=f"pretrain {inp}"), self._encoder, pool_x, inp, inp)
                if failure:
                    self.failed.append(failure)
                    continue
                self.encoders[inp], row = done
                rows.append(row)
        self.logs += rows
        return pd.DataFrame(rows)

    def _encoder(self, pool: np.ndarray, inp: str, tag: str):
        """`pretrain` on `pool`, or its saved result when this pool, validation set and these settings made it."""
        import hashlib

        path = self.out / "encoders" / f"{tag.replace(' ', '_')}.model"
        digest = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]
        settings = dict(config=self.cfg.__dict__, aug=self.pretrain_augment.__dict__, pool=digest(pool),
                        valid=digest(self._xy(inp, "valid")[0]), tag=tag)
        if reusable(path, settings):
            net, meta = modelfile.load(path)
            return net, dict(meta["row"], reused=True)
        net, row = pretrain(pool, self._xy(inp, "valid")[0], self.cfg, self.pretrain_augment, tag)
        if rank() == 0:  # data-parallel: every process holds the same encoder, process 0 writes it
            modelfile.save(path, net, row=row)
            record_settings(path, settings)
        return net, dict(row, reused=False)

    def _random_encoder(self, inp: str):
        """The pretrained encoder's random start (the same initialisation, no pretraining): its yardstick."""
        return pretrain(self._xy(inp, "train")[0][:0], self._xy(inp, "valid")[0], self.cfg, self.pretrain_augment,
                        "random")[0]

    def gate(self) -> pd.DataFrame:
        """Before any downstream row: a linear probe of MR on each frozen encoder's features (fit on training,
        scored on validation) for the Barlow Twins encoder, its random start and the supervised ResNet-18 (the
        row beyond the paper, trained here); the table (written) and the gap the checks hold to 0.05."""
        rows, seed = [], seed_for(self.p["seed"], "cussp", "probe")
        self._fit_row(SUPERVISED)
        with self.nb.timer("gate"):
            for inp in ("cycle", "window"):
                train, valid = self._xy(inp, "train"), self._xy(inp, "valid")
                nets = {"Barlow Twins": self.encoders.get(inp), "random": self._random_encoder(inp),
                        "supervised": (self.models[SUPERVISED].model.net if inp == "cycle" and SUPERVISED in
                                       self.models else None)}
                for name, net in nets.items():
                    if net is not None:
                        rows.append(dict(input=inp, encoder=name, valid_auc=probe(net, train, valid, seed),
                                         n_train=len(train[1]), n_valid=len(valid[1]), n_valid_mr=int(valid[1].sum())))
        self.gate_table = pd.DataFrame(rows, columns=["input", "encoder", "valid_auc", "n_train", "n_valid",
                                                      "n_valid_mr"])
        self.nb.table(self.gate_table, "gate")
        return self.gate_table.pivot(index="input", columns="encoder", values="valid_auc")

    def gate_gap(self, inp: str) -> float:
        """Validation probe AUC of the Barlow Twins encoder minus its random start's (NaN: not measured)."""
        g = self.gate_table.set_index(["input", "encoder"]).valid_auc
        return float(g.get((inp, "Barlow Twins"), np.nan) - g.get((inp, "random"), np.nan))

    # ------------------------------------------------------------ the rows of Table 2

    def _fit_row(self, r: str) -> None:
        """One deep row of Table 2 (not again when trained): its model kept, its log rows added, or its failure."""
        if r in self.models:
            return
        inp = INPUTS[r]
        if len(set(self._xy(inp, "train")[1].tolist())) < 2:
            self.failed.append(dict(method="CUSSP", row=r, status="not trained",
                                    reason=f"{len(self._xy(inp, 'train')[1])} training cines of one class or none"))
            return
        if r not in (SUPERVISED, "CNN-LSTM") and inp not in self.encoders:
            self.failed.append(dict(method="CUSSP", row=r, status="not trained", reason=f"no {inp} encoder"))
            return
        with self.nb.timer(r):
            done, failure = attempt(dict(method="CUSSP", row=r), fit, r, self.encoders, self._xy(inp, "train"),
                                    self._xy(inp, "valid"), self.cfg, self.augment)
        if failure:
            self.failed.append(failure)
            return
        self.models[r], rows = done
        self.logs += rows

    def fit(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Every network row from a copy of its pretrained encoder, and the forest; the training log and the rows
        that did not train (both written)."""
        for r in INPUTS:
            self._fit_row(r)
        self._fit_forest()
        train_log = pd.DataFrame(self.logs)
        self.nb.table(train_log, "train_log")
        failed = self.failures()
        if len(failed):
            print(f"{len(failed)} rows did not train and are left out of the tables")
        return train_log, failed

    def failures(self) -> pd.DataFrame:
        """The rows and fits that did not train or score, with the reason (written)."""
        failed = pd.DataFrame(self.failed, columns=["method", "row", "status", "reason"])
        self.nb.table(failed, "failed_rows")
        return failed

    def _fit_forest(self) -> None:
        """The random forest on Table-1 measures, its settings from a cross-validated search on training."""
        with self.nb.timer("random forest"):
            self.rf_data = {k: self.labels[self.labels.split.isin(np.atleast_1d(s))].set_index("subject")
                            for k, s in self.splits.items()}
            self.Xs = {s: self.X.reindex(d.index) for s, d in self.rf_data.items()}  # a missing measure stays NaN
            self.forest, rf_search = random_forest(
                self.Xs["train"], self.rf_data["train"].mr.reindex(self.Xs["train"].index).to_numpy(),
                n_iter=int(self.p["rf_iter"]), seed=seed_for(self.p["seed"], "cussp", "rf"))
            self.nb.table(rf_search.sort_values("rank_test_score").head(10), "rf_search")
            print("forest:", {k: v for k, v in self.forest.get_params().items()
                              if k in ("n_estimators", "max_depth", "max_features", "min_samples_leaf")})

    def evaluate(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Every row scored on validation (its threshold: best F1) and once on the evaluated splits; the validation
        table and Table 2 with bootstrap CIs (both written)."""
        rf, Xs = self.rf_data, self.Xs
        valid, test, grades = {}, {}, {}
        if len(Xs["valid"]):
            valid["RF"] = (rf["valid"].mr.reindex(Xs["valid"].index).to_numpy(),
                           self.forest.predict_proba(Xs["valid"])[:, 1])
        test["RF"] = (rf["eval"].mr.reindex(Xs["eval"].index).to_numpy(), self.forest.predict_proba(Xs["eval"])[:, 1])
        grades["RF"] = rf["eval"].grade.reindex(Xs["eval"].index).to_numpy()
        for r in [r for r in INPUTS if r in self.models]:
            inp = INPUTS[r]
            xe, ye, te = self.data[inp]["eval"]
            scored, failure = attempt(dict(method="CUSSP", row=r), lambda m=self.models[r].model, i=inp: (
                scores(m, self.data[i]["valid"][0]), scores(m, xe)))
            if failure:  # non-finite scores never reach a metric
                self.failed.append(failure)
                self.models.pop(r)
                continue
            valid[r], test[r], grades[r] = (self.data[inp]["valid"][1], scored[0]), (ye, scored[1]), te.grade.to_numpy()
        self.valid, self.test, self.grades = valid, test, grades
        self.thr = thresholds(valid)
        vt = validation_table(valid, self.thr)
        self.nb.table(vt, "validation")
        self.long = evaluate(test, self.thr, n_boot=int(self.p["n_boot"]), seed=seed_for(self.p["seed"], "cussp", "boot"))
        tab = table2(self.long)
        self.nb.table(self.long, "metrics")
        self.nb.table(tab, "table2", index=True)
        return vt, tab

    def figures(self) -> pd.DataFrame:
        """ROC and precision-recall curves (the paper's Fig. 5) and recall by MR grade (written); recall per row
        and grade."""
        self.nb.figure(roc_pr_figure(self.test, self.thr), "04_roc_pr",
                       "CUSSP Table 2 rows on the test split: ROC and precision-recall curves, dots at each row's "
                       "validation-chosen threshold; the last row's point is annotated (recall, precision, F1, "
                       "threshold) as in the paper's Fig. 5.")
        by_grade = pd.concat([recall_by_grade(self.grades[r], {r: self.test[r][1]}, self.thr) for r in self.test],
                             ignore_index=True)
        self.nb.table(by_grade, "recall_by_grade")
        if by_grade.n.sum():
            self.nb.figure(grade_figure(by_grade), "04_recall_by_grade",
                           "Recall on the test split by MR grade (1 mild, 2 moderate, 3 severe) for every Table 2 row.")
        return by_grade.pivot(index="row", columns="grade", values="recall")

    def pool_curve(self) -> pd.DataFrame:
        """CUSSP-SIAM-25 again from encoders pretrained on fractions of the pool, at equal steps (figure written);
        F1 and ROC-AUC by pool size."""
        p, test = self.p, self.test
        rows = []
        full_pool = unlabelled(list(self.patch_sets.values()), "window", exclude=self.test_subjects)
        fractions = sorted(set(float(f) for f in p["pool_fractions"]) | {1.0}) if "CUSSP-SIAM-25" in test else []
        if not fractions:
            print("CUSSP-SIAM-25 did not train (see failed_rows): no pool-size curve")
        for frac in fractions:
            n_pool = int(round(frac * len(full_pool)))
            if frac == 1.0:
                s, th = test["CUSSP-SIAM-25"][1], self.thr["CUSSP-SIAM-25"]
            elif frac == 0.0:  # no unlabelled cines: the random start, the budget curve's random row on every cine
                if (model := self._full_budget_random_siam25()) is None:
                    continue  # its failure is recorded
                s, th = self._scored(model, "window")
            else:
                pick = np.sort(rng(seed_for(p["seed"], "cussp", "pool", frac)).choice(len(full_pool), n_pool,
                                                                                     replace=False))
                with self.nb.timer("pool experiment"):
                    enc, row = self._encoder(full_pool[pick], "window", f"window {frac:.2f}")
                    learn, logs = fit_siamese(enc, self._xy("window", "train"), self._xy("window", "valid"), self.cfg,
                                              self.augment, f"CUSSP-SIAM-25 pool {frac:.2f}")
                self.logs += [row, *logs]
                s, th = self._scored(learn.model, "window")
            m = evaluate({"CUSSP-SIAM-25": (test["CUSSP-SIAM-25"][0], s)}, {"CUSSP-SIAM-25": th},
                         n_boot=int(p["n_boot"]), seed=seed_for(p["seed"], "cussp", "boot"))
            rows.append(m.assign(pool_fraction=frac, pool_cines=n_pool))
        curve = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
            columns=["row", "metric", "value", "ci_low", "ci_high", "pool_fraction", "pool_cines"])
        self.nb.table(curve, "pool_curve")
        if len(curve):
            self.nb.figure(pool_figure(curve), "04_pool_size",
                           "CUSSP-SIAM-25 test F1 and ROC-AUC (95 % CI) against the number of unlabelled cines its "
                           "Barlow Twins encoder was pretrained on (0: random encoder), at equal pretraining steps.")
        return curve[curve.metric.isin(["f1", "roc_auc"])].pivot(index="pool_cines", columns="metric", values="value")

    def _scored(self, model, inp: str) -> tuple[np.ndarray, float]:
        """A classifier's scores on the evaluated splits and its threshold from the validation split."""
        vx, vy = self._xy(inp, "valid")
        th = thresholds({"r": (vy, scores(model, vx))})["r"]
        return scores(model, self.data[inp]["eval"][0]), th

    # the label-budget curve's rows: name -> (Table 2 row it trains like, encoder: pretrained, random or none)
    BUDGET_ROWS = {"CUSSP-SIAM": ("CUSSP-SIAM", "pretrained"), "CUSSP-SIAM-25": ("CUSSP-SIAM-25", "pretrained"),
                   "CUSSP-SIAM (random encoder)": ("CUSSP-SIAM", "random"),
                   "CUSSP-SIAM-25 (random encoder)": ("CUSSP-SIAM-25", "random"), SUPERVISED: (SUPERVISED, None)}

    def budget_curve(self) -> pd.DataFrame:
        """The paper's claim where it can show: the Siamese rows from the Barlow Twins encoder against the same rows
        from a random encoder and the supervised ResNet-18, trained on `budgets` MR cines (with their share of
        non-MR cines; `budget_draws` draws each) and on every training cine; thresholds from validation, test once.
        The per-draw table and the figure written; mean test ROC-AUC by budget and row."""
        p = self.p
        seed = seed_for(p["seed"], "cussp", "budget")
        train_lab = self.data["window"]["train"][2]  # subjects with both inputs
        n_mr = int(train_lab.mr.sum())
        budgets = [int(b) for b in p["budgets"] if 0 < int(b) < n_mr]
        rows, self.budget_scores = [], {}
        random_enc = {inp: self._random_encoder(inp) for inp in ("cycle", "window")}
        with self.nb.timer("label budgets"):
            for budget in [*budgets, n_mr]:
                for draw in range(int(p["budget_draws"]) if budget < n_mr else 1):
                    pick = self._budget_subjects(train_lab, budget, seed_for(seed, budget, draw))
                    for name, (like, enc) in self.BUDGET_ROWS.items():
                        if budget == n_mr and enc != "random" and like in self.models:
                            model = self.models[like].model  # every training cine: Table 2's own row
                        else:
                            model = self._budget_fit(like, enc, random_enc, pick, f"{name} budget {budget}/{draw}")
                        if model is None:
                            continue
                        inp = INPUTS[like]
                        s, th = self._scored(model, inp)
                        y = self.data[inp]["eval"][1]
                        self.budget_scores[(budget, draw, name)] = (y, s)
                        m = evaluate({name: (y, s)}, {name: th}, n_boot=0).set_index("metric").value
                        rows.append(dict(budget=budget, draw=draw, row=name, n_train=len(pick),
                                         n_train_mr=budget, threshold=th, f1=m.get("f1"), roc_auc=m.get("roc_auc")))
        self.budget = pd.DataFrame(rows, columns=["budget", "draw", "row", "n_train", "n_train_mr", "threshold", "f1",
                                                  "roc_auc"])
        self.nb.table(self.budget, "budget_curve")
        if len(self.budget):
            self.nb.figure(budget_figure(self.budget), "04_label_budget",
                           "Test ROC-AUC and F1 against the number of MR training cines (each with its share of non-MR "
                           "cines; mean and range over draws; the last point: every training cine): the Siamese rows "
                           "from the Barlow Twins encoder and from a random one, and the supervised ResNet-18.")
        return self.budget.groupby(["budget", "row"]).roc_auc.mean().unstack("row")

    def _full_budget(self) -> tuple[int, list[str]]:
        """The budget of every training MR cine: its size and subjects (every training subject)."""
        train_lab = self.data["window"]["train"][2]
        n_mr = int(train_lab.mr.sum())
        return n_mr, self._budget_subjects(train_lab, n_mr, seed_for(seed_for(self.p["seed"], "cussp", "budget"),
                                                                     n_mr, 0))

    def _full_budget_random_siam25(self):
        """CUSSP-SIAM-25 from the random start on every training cine: the pool curve's first point and the
        budget curve's last random-encoder one, trained once."""
        n_mr, pick = self._full_budget()
        return self._budget_fit("CUSSP-SIAM-25", "random", {"window": self._random_encoder("window")}, pick,
                                f"CUSSP-SIAM-25 (random encoder) budget {n_mr}/0")

    @staticmethod
    def _budget_subjects(lab: pd.DataFrame, budget: int, seed: int) -> list[str]:
        """`budget` MR training subjects and non-MR ones in the training split's proportion, drawn with `seed`."""
        g = rng(seed)
        pos, neg = lab.subject[lab.mr == 1].to_numpy(), lab.subject[lab.mr == 0].to_numpy()
        n_neg = min(len(neg), int(round(budget * len(neg) / max(1, len(pos)))))
        return sorted([*g.choice(pos, budget, replace=False), *g.choice(neg, n_neg, replace=False)])

    def _budget_fit(self, like: str, enc: str | None, random_enc: dict, subjects: list[str], tag: str):
        """One label-budget model: `like`'s training on the budget's cines from the chosen encoder (once per
        row, encoder and cines); None when it failed (recorded)."""
        key = (like, enc, tuple(subjects))
        if key not in self._budget_models:
            self._budget_models[key] = self._train_budget_model(like, enc, random_enc, subjects, tag)
        return self._budget_models[key]

    def _train_budget_model(self, like: str, enc: str | None, random_enc: dict, subjects: list[str], tag: str):
        """`_budget_fit`'s training."""
        inp = INPUTS[like]
        train, valid = self._xy(inp, "train", subjects), self._xy(inp, "valid")
        if enc == "pretrained" and inp not in self.encoders:
            return None
        with self.nb.timer("label budgets fits"):
            if like == SUPERVISED:
                done, failure = attempt(dict(method="CUSSP", row=tag), fit_supervised, train, valid, self.cfg,
                                        self.augment, tag)
                logs = [done[1]] if done else []
            else:
                encoder = self.encoders[inp] if enc == "pretrained" else random_enc[inp]
                done, failure = attempt(dict(method="CUSSP", row=tag), fit_siamese, encoder, train, valid, self.cfg,
                                        self.augment, tag)
                logs = done[1] if done else []
        if failure:
            self.failed.append(failure)
            return None
        self.logs += logs
        return done[0].model

    def budget_gap(self, budget: int | None = None) -> dict:
        """CUSSP-SIAM-25 minus the supervised ResNet-18 in test ROC-AUC at a budget (the smallest by default), the
        draws' mean with a bootstrap CI over the test cines."""
        if not self.budget_scores:
            return dict(budget=np.nan, gap=np.nan, ci_low=np.nan, ci_high=np.nan)
        budget = min(b for b, _, _ in self.budget_scores) if budget is None else budget
        pair = [(self.budget_scores.get((budget, d, "CUSSP-SIAM-25")), self.budget_scores.get((budget, d, SUPERVISED)))
                for d in sorted({d for b, d, _ in self.budget_scores if b == budget})]
        pair = [(a, b) for a, b in pair if a is not None and b is not None]
        if not pair or not np.array_equal(pair[0][0][0], pair[0][1][0]):  # the two rows score different cines
            return dict(budget=budget, gap=np.nan, ci_low=np.nan, ci_high=np.nan)
        return dict(budget=budget, **auc_gap(pair[0][0][0], [a[1] for a, _ in pair], [b[1] for _, b in pair],
                                             n_boot=int(self.p["n_boot"]), seed=seed_for(self.p["seed"], "cussp",
                                                                                         "gap")))

    def _real_4ch(self) -> list:
        """(name, cine) of the real 4CH cines under the data root: the UK Biobank demo's (with pseudo-labels) and
        the DICOM sample's."""
        from ...io.real import real_cines

        found = real_cines(self.p["data_dir"], ("4CH",))
        if not found:
            raise StudySkipped("no real 4CH cines under the data root (set data_dir or $CMRLIB_DATA)")
        return found

    def real_cines(self) -> pd.DataFrame:
        """Every network row on the real 4CH cines, none of which was trained on: whether the valve was found (on
        the run's segmentation), how far the patch centre lies from the annulus midpoint of the cine's pseudo-labels
        (mm; the UK Biobank demo's), and each row's MR probability (no MR label: none to score against); a
        figure of each cine's valve line, patch and equalised patch (the paper's Fig. 8)."""
        from ...io.errors import IngestError
        from ...labels import NoLabels
        from ...measure import MeasureError, valve_hinges
        from .data import preprocess
        from .valve import ValveError

        rows, cases = [], []
        for name, c in self._real_4ch():
            row = dict(cine=name, frames=c.n_frames)
            try:
                labels = self.find(c)
                inputs = preprocess(c, labels, **self.prep)
                vp = inputs["valve"]
            except (ValveError, MeasureError, NoLabels, IngestError) as e:
                rows.append(dict(row, valve=f"not found: {e}"))
                continue
            row["valve"] = "found"
            if c.labels is not None and c.labelled[vp.frame]:
                with contextlib.suppress(MeasureError):  # no LV/LA border in the pseudo-labels: no distance
                    mid = valve_hinges(c.labels[vp.frame]).mean(0)
                    row["centre_from_pseudo_mm"] = float(np.linalg.norm((np.asarray(vp.valve.center) - mid)
                                                                        * np.asarray(c.spacing[-2:])[::-1]))
            for r, m in self.models.items():
                x = inputs[INPUTS[r]]
                row[f"P(MR) {r}"] = float(scores(m.model, np.asarray(x)[None])[0]) if x is not None else np.nan
            rows.append(row)
            cases.append((name, c, labels))
        self.real = pd.DataFrame(rows)
        self.nb.table(self.real, "real_cines")
        if cases:
            self.nb.figure(preprocessing_figure(cases), "04_real_patches",
                           "CUSSP's preprocessing on real 4CH cines (no MR label): the valve line on the run's "
                           "segmentation (red), the patch (yellow), the LA-equalised frame, the patch over the "
                           "cycle")
        return self.real

    def _real_checks(self) -> list[tuple]:
        """The real-cine targets (none without real cines): a valve on every real 4CH cine, and the patch centre
        within 8 mm of the pseudo-label annulus midpoint on every cine that has one."""
        real = self.real
        if real is None:
            return []
        out = [("real 4CH cines without a valve", int((real.valve != "found").sum()), "<=", 0)]
        if "centre_from_pseudo_mm" in real and real.centre_from_pseudo_mm.notna().any():
            out.append(("real 4CH: largest patch-centre distance from the pseudo-label annulus midpoint (mm)",
                        float(real.centre_from_pseudo_mm.max()), "<=", 8.0))
        return out

    def export(self) -> str:
        """Every row's model, and the row validation ranks first (ROC-AUC) as the run's CUSSP Predictor with its
        patch settings and threshold (CUSSP-SIAM-25 when validation ranks nothing); the Predictor's row."""
        for r, m in self.models.items():
            save(m, self.out / "models" / f"{r}.model")
        ranked = validation_table(self.valid, self.thr).query("row in @self.models").set_index("row").roc_auc.dropna()
        best, how = ((ranked.idxmax(), "validation ROC-AUC") if len(ranked) else
                     ("CUSSP-SIAM-25", "the paper's headline row (validation ranks no row)"))
        if best not in self.models:
            raise StudySkipped(f"no {best} model in this run (its fit failed: see the failures table)")
        self.nb.predictor(Predictor.from_model(self.models[best].model, best, self.prep, self.thr[best],
                                               provenance=self.nb.provenance(self.store, None,
                                                                             anatomy=self.p["anatomy"], chosen_by=how)))
        return best

    def train(self, finish=None, rows: int | None = None) -> list[dict]:
        """What `cmrlib fit cussp` runs: labels and pool, patches, the forest's measures, the encoders, every row,
        the validation thresholds (Table 2 scored too) and the models with the run's Predictor; the training log."""
        self.cohort()
        self.prepare()
        self.forest_measures()
        self.pretrain()
        train_log, _ = self.fit()
        self.evaluate()
        self.step(self.export)
        return train_log.to_dict("records")

    def headline_tables(self):
        """Table 2 beside the paper's, and the test scores as the unlabelled pool grows."""
        if self.written("table2") is not None:
            yield ("table2", "CUSSP: MR classification on the test split (95 % bootstrap CI; threshold chosen on "
                   "validation), beside the paper's Table 2", None)
        if (d := self.written("pool_curve")) is not None:
            d = d[d["metric"].isin(["f1", "roc_auc"])].pivot_table(index="pool_cines", columns="metric",
                                                                    values="value").round(3).reset_index()
            yield "headline_pool_curve", "CUSSP-SIAM-25 as the unlabelled pool grows (test F1, ROC-AUC)", d

    def checks(self) -> pd.DataFrame:
        """The gate, the phantom task's difficulty, the paper's targets, the label-budget comparison and the
        notebook's time (written, with the training log, the failures and timings)."""
        val = self.long.set_index(["row", "metric"]).value
        val = lambda r, metric, _v=val: _v.get((r, metric), np.nan)  # NaN: the row did not train or was not testable
        supervised = validation_table(self.valid, self.thr).set_index("row").roc_auc.get(SUPERVISED, np.nan)
        gap = self.budget_gap()
        targets = self.targets([
            ("gate: Barlow Twins minus random encoder, probe ROC-AUC (validation, systolic window)",
             self.gate_gap("window"), ">=", 0.05),
            ("gate: Barlow Twins minus random encoder, probe ROC-AUC (validation, full cycle)",
             self.gate_gap("cycle"), ">=", 0.05),
            ("phantom MR task: supervised ResNet-18 validation ROC-AUC (all labels), at least", supervised, ">=", 0.80),
            ("phantom MR task: supervised ResNet-18 validation ROC-AUC (all labels), at most", supervised, "<=", 0.92),
            ("CUSSP-SIAM-25 F1", val("CUSSP-SIAM-25", "f1"), ">=", 0.69),
            ("CUSSP-SIAM-25 ROC-AUC", val("CUSSP-SIAM-25", "roc_auc"), ">=", 0.88),
            ("Siamese F1 minus best CUSSP-1/2/3 F1", min(val(r, "f1") for r in ("CUSSP-SIAM", "CUSSP-SIAM-25"))
             - max(val(r, "f1") for r in JOINT_WEIGHTS), ">", 0.0),
            (f"CUSSP-SIAM-25 minus supervised test ROC-AUC at {gap['budget']} MR training cines (mean of draws)",
             gap["gap"], ">", 0.0),
            *self._real_checks(),
            *self.time_target(),
        ])
        self.nb.table(pd.DataFrame(self.logs), "train_log")
        self.failures()
        return targets
