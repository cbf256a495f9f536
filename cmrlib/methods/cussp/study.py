"""CUSSP's experiment (Table 2 of arXiv 2310.04871) on the run's 4CH cines: labels and an unlabelled pool, the
valve patches, every row trained, thresholds on validation, Table 2 on test with bootstrap CIs, the pool-size
curve, and the run's CUSSP Predictor."""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from ...learn import attempt
from ...measure import subject_measures
from ...study import Study as Base
from ...utils import rng, seed_for
from .data import PatchAug, PatchSet, labelled, mr_labels, preprocess_store, unlabelled
from .evaluate import evaluate, recall_by_grade, table2, thresholds, validation_table
from .figures import grade_figure, pool_figure, preprocessing_figure, roc_pr_figure
from .learner import INPUTS, JOINT_WEIGHTS, CUSSPConfig, fit, fit_siamese, pretrain, random_forest, save, scores
from .predictor import Predictor

TABLE1 = ["LAVmax", "LAVmin", "LASV", "LAEF", "RAVmax", "RAVmin", "RASV", "RAEF", "LVESV", "LVEDV", "LVSV", "LVEF",
          "LVCO", "LVM", "RVESV", "RVEDV", "RVSV", "RVEF"]  # the paper's Table 1: the forest's measures (per BSA)


class Study(Base):
    """Notebook 04: `cohort`, `prepare`, `forest_measures`, `fit`, `evaluate`, `figures`, `pool_curve`, `checks`."""

    method = "cussp"
    number = "04"
    PATHS = ("labels_csv",)
    PARAMS: ClassVar[dict] = {
        # study
        **Base.RUN,  # profile, seed, run_dir, figures_dir
        "data_dir": None,            # unused: the cohort is the run's store (notebook 00: the phantom or real data)
        "labels_csv": None,          # subject, mr (0/1) for a real cohort (the phantom's labels are its mr_grade)
        "anatomy": "segmenter",      # where the LA, LV and valve are found: "segmenter" (the run's segmentation
                                     # Predictor) or "labels" (the store's own label maps)
        "pool_subjects": 480,        # extra unlabelled phantom subjects (4CH only) for pretraining; 0: the cohort's cines only
        "pool_fractions": [0.0, 0.25],  # SIAM-25 again with these fractions of the unlabelled pool (1.0 is the main row)
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
        "input_px": 32,              # the encoder sees the patch's central pixels (the authors' code: 32 of 64); None: all
        "aug": {},                   # PatchAug settings over its defaults (the authors' mild affine, no intensity change)
        "proj_dims": [2048, 2048],
        "hidden": 256,
        "pretrain_steps": 200,
        "pretrain_bs": 32,
        "pretrain_lr": 1e-3,
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
    }

    def __init__(self, params: dict, out=None):
        super().__init__(params, out)
        p = self.p
        self.cfg = CUSSPConfig(
            width=int(p["width"]), input_px=p["input_px"], proj_dims=tuple(p["proj_dims"]), hidden=int(p["hidden"]),
            pretrain_steps=int(p["pretrain_steps"]), pretrain_bs=int(p["pretrain_bs"]),
            pretrain_lr=float(p["pretrain_lr"]), epochs=int(p["epochs"]), siam_epochs=int(p["siam_epochs"]),
            bs=int(p["bs"]), lr=float(p["lr"]), cnn_growth=int(p["cnn_growth"]), cnn_blocks=tuple(p["cnn_blocks"]),
            cnn_init=int(p["cnn_init"]), lstm_hidden=int(p["lstm_hidden"]), cnn_epochs=int(p["cnn_epochs"]),
            pretrained=bool(p["pretrained"]), seed=int(p["seed"]))
        self.find = self.anatomy("LAX")  # cine -> canonical labels at every frame
        self.models, self.failed = {}, []

    def cohort(self) -> pd.DataFrame:
        """MR labels per subject and the unlabelled pool (new phantom subjects, 4CH only); cines per split/class."""
        self.labels = mr_labels(self.store, self.p["labels_csv"])
        self.manifest = self.store.manifest()
        if self.labels.attrs["unknown"]:
            print(f"{len(self.labels.attrs['unknown'])} subjects in the labels table are not in the store; ignored")
        if self.labels.attrs["unlabelled"]:
            print(f"{len(self.labels.attrs['unlabelled'])} subjects with a 4CH cine have no label: pretraining pool "
                  "only")
        self.pool = self.phantom_more("pool", self.p["pool_subjects"], ("4CH",))
        counts = self.labels.groupby(["split", "mr"]).size().unstack(fill_value=0).rename(
            columns={0: "non-MR", 1: "MR"})
        counts["MR %"] = (100 * counts["MR"] / counts.sum(axis=1)).round(1)
        counts.loc["unlabelled pool"] = [len(self.pool) if self.pool is not None else 0, 0, np.nan]
        return counts

    def _segment(self, cine):
        """The cine's anatomy, kept for the cohort's cines (the forest's measures reuse it)."""
        labels_ = self.find(cine)
        if cine.subject in set(self.labels.subject):
            self.lax_cache[cine.cine_id] = labels_
        return labels_

    def prepare(self) -> tuple[pd.DataFrame, pd.DataFrame | str]:
        """Valve patches of every 4CH cine (cached per cohort, settings and anatomy); the cines per store and the
        failures by reason (the failures table written)."""
        p = self.p
        n_frames = int(p["frames"] or self.manifest.query("view == '4CH'").n_frames.median())
        self.prep = dict(size=int(p["size"]), patch_mm=float(p["patch_mm"]), frames=n_frames, window=int(p["window"]),
                         crop_size=int(p["crop_size"]), crop_mm=float(p["crop_mm"]))
        self.lax_cache, self.patch_sets = {}, {}
        with self.nb.timer("preprocessing"):
            for name, st in (("cohort", self.store), ("pool", self.pool)):
                if st is None:
                    continue
                ids = st.select(view="4CH")
                key = dict(self.prep, ids=ids, cohort=st.fingerprint(), anatomy=p["anatomy"],
                           segmenter=self.anatomy_key())
                self.patch_sets[name] = self.cached(PatchSet, f"patches_{name}", key,
                                                    lambda st=st, ids=ids: preprocess_store(st, self._segment, ids,
                                                                                            **self.prep))
        failures = pd.concat([ps.failures.assign(store=n) for n, ps in self.patch_sets.items()], ignore_index=True)
        self.nb.table(failures, "preprocessing_failures")
        per_store = pd.DataFrame({n: dict(cines=len(ps) + ps.failures.cine_id.nunique() - int((~ps.has_window).sum()),
                                          patches=len(ps), windows=int(ps.has_window.sum()),
                                          left_out=len(set(ps.failures.cine_id) - set(ps.cine_ids)))
                                  for n, ps in self.patch_sets.items()}).T
        return per_store, (failures.groupby(["store", "reason"]).size().rename("cines").reset_index() if len(failures)
                           else "every cine preprocessed")

    def preprocessing_figure(self) -> None:
        """The paper's Fig. 8 for the most severe MR subject and a non-MR one."""
        show = []
        for mr_flag, title in ((1, "MR"), (0, "no MR")):
            cand = self.labels[(self.labels.mr == mr_flag) & self.labels.subject.isin(self.patch_sets["cohort"].subjects)]
            if len(cand):
                sub = cand.sort_values("grade", ascending=False).subject.iloc[0]
                cine = self.store.read(self.manifest.query("view == '4CH' and subject == @sub").cine_id.iloc[0])
                grade = cand.set_index("subject").grade.get(sub)
                show.append((f"{title}" + (f" (grade {int(grade)})" if pd.notna(grade) else ""), cine, self.find(cine)))
        if show:
            self.nb.figure(preprocessing_figure(show), "04_preprocessing",
                           "CUSSP preprocessing (the paper's Fig. 8): ED frame with the SVM valve line (red) and the "
                           "patch (yellow), the frame equalised over the LA's intensities, and the valve patch over the "
                           "cycle, for an MR and a non-MR subject.")

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
                m = self.manifest
                ids = m[m.view.isin(["SAX", "2CH", "4CH"]) & m.subject.isin(self.labels.subject)].cine_id
                find = self.find if anatomy == "labels" else self._sax_and_lax()
                preds = {cid: self.lax_cache[cid] if cid in self.lax_cache else find(self.store.read(cid))
                         for cid in ids} if find is not None else {}
                measures = subject_measures(self.store, preds).assign(anatomy=anatomy)
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

    def _xy(self, inp: str, split: str):
        return self.data[inp][split][:2]

    def fit(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Both Barlow Twins encoders, every network row from a copy of its encoder, and the forest; the training
        log and the rows that did not train (both written)."""
        p, cfg = self.p, self.cfg
        self.augment = PatchAug(**{k: tuple(v) if isinstance(v, list) else v for k, v in p["aug"].items()})
        self.test_subjects = self.labels.subject[self.labels.split.isin(p["eval_splits"])].tolist()
        self.splits = {"train": "train", "valid": "valid", "eval": p["eval_splits"]}  # "eval": the scored splits
        self.data = {inp: {k: labelled(self.patch_sets["cohort"], self.labels, s, inp) for k, s in self.splits.items()}
                     for inp in ("cycle", "window", "crops")}
        failed, encoders = [], {}
        with self.nb.timer("pretraining"):
            for inp in ("cycle", "window"):
                pool_x = unlabelled(list(self.patch_sets.values()), inp, exclude=self.test_subjects)
                done, failure = attempt(dict(method="CUSSP", row=f"pretrain {inp}"), pretrain, pool_x,
                                        self._xy(inp, "valid")[0], cfg, self.augment, inp)
                if failure:
                    failed.append(failure)
                    continue
                encoders[inp], row = done
                self.logs.append(row)
        for r, inp in INPUTS.items():
            if len(set(self._xy(inp, "train")[1].tolist())) < 2:
                failed.append(dict(method="CUSSP", row=r, status="not trained",
                                   reason=f"{len(self._xy(inp, 'train')[1])} training cines of one class or none"))
                continue
            with self.nb.timer(r):
                done, failure = attempt(dict(method="CUSSP", row=r), fit, r, encoders, self._xy(inp, "train"),
                                        self._xy(inp, "valid"), cfg, self.augment)
            if failure:
                failed.append(failure)
                continue
            self.models[r], rows = done
            self.logs += rows
        self._fit_forest()
        train_log = pd.DataFrame(self.logs)
        self.nb.table(train_log, "train_log")
        self.failed = pd.DataFrame(failed, columns=["method", "row", "status", "reason"])
        self.nb.table(self.failed, "failed_rows")
        if len(self.failed):
            print(f"{len(self.failed)} rows did not train and are left out of the tables")
        return train_log, self.failed

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
        for r in list(self.models):
            inp = INPUTS[r]
            xe, ye, te = self.data[inp]["eval"]
            scored, failure = attempt(dict(method="CUSSP", row=r), lambda m=self.models[r].model, i=inp: (
                scores(m, self.data[i]["valid"][0]), scores(m, xe)))
            if failure:  # non-finite scores never reach a metric
                self.failed = pd.concat([self.failed, pd.DataFrame([failure])], ignore_index=True)
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
            else:
                pick = np.sort(rng(seed_for(p["seed"], "cussp", "pool", frac)).choice(len(full_pool), n_pool,
                                                                                     replace=False))
                with self.nb.timer("pool experiment"):
                    enc, row = pretrain(full_pool[pick], self._xy("window", "valid")[0], self.cfg, self.augment,
                                        f"window {frac:.2f}")
                    learn, logs = fit_siamese(enc, self._xy("window", "train"), self._xy("window", "valid"), self.cfg,
                                              self.augment, f"CUSSP-SIAM-25 pool {frac:.2f}")
                self.logs += [row, *logs]
                vx, vy = self._xy("window", "valid")
                th = thresholds({"r": (vy, scores(learn.model, vx))})["r"]
                s = scores(learn.model, self.data["window"]["eval"][0])
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

    def export(self) -> str | None:
        """Every row's model, and the row validation ranks first (ROC-AUC) as the run's CUSSP Predictor with its
        patch settings and threshold (CUSSP-SIAM-25 when validation ranks nothing); the Predictor's row."""
        for r, m in self.models.items():
            save(m, self.out / "models" / f"{r}.pkl")
        ranked = validation_table(self.valid, self.thr).query("row in @self.models").set_index("row").roc_auc.dropna()
        best, how = ((ranked.idxmax(), "validation ROC-AUC") if len(ranked) else
                     ("CUSSP-SIAM-25", "the paper's headline row (validation ranks no row)"))
        if best not in self.models:
            return None
        self.nb.predictor(Predictor.from_model(self.models[best].model, best, self.prep, self.thr[best],
                                               provenance=self.nb.provenance(self.store, None,
                                                                             anatomy=self.p["anatomy"], chosen_by=how)))
        return best

    def train(self, finish=None, rows: int | None = None) -> list[dict]:
        """What `cmrlib fit cussp` runs: labels and pool, patches, the forest's measures, every row, the
        validation thresholds (Table 2 scored too) and the models with the run's Predictor; the training log."""
        self.cohort()
        self.prepare()
        self.forest_measures()
        train_log, _ = self.fit()
        self.evaluate()
        self.export()
        return train_log.to_dict("records")

    def checks(self) -> pd.DataFrame:
        """The paper's targets and the notebook's time (written, with the training log and timings)."""
        val = self.long.set_index(["row", "metric"]).value
        val = lambda r, metric, _v=val: _v.get((r, metric), np.nan)  # NaN: the row did not train or was not testable
        targets = self.targets([
            ("CUSSP-SIAM-25 F1", val("CUSSP-SIAM-25", "f1"), ">=", 0.69),
            ("CUSSP-SIAM-25 ROC-AUC", val("CUSSP-SIAM-25", "roc_auc"), ">=", 0.88),
            ("Siamese F1 minus best CUSSP-1/2/3 F1", min(val(r, "f1") for r in ("CUSSP-SIAM", "CUSSP-SIAM-25"))
             - max(val(r, "f1") for r in JOINT_WEIGHTS), ">", 0.0),
            ("notebook 04 wall time (min)", self.minutes(), "<=", 25.0),
        ])
        self.nb.table(pd.DataFrame(self.logs), "train_log")
        return targets
