"""TempReg-Net's experiment (Kong et al., MICCAI 2016: Table 1, ED/ES frame detection) on the run's cines: the
sequences, every method trained (or reused), the average absolute frame difference per view on test, the
segmentation baseline through the run's segmentation Predictor, real cines, figures and the run's ED/ES
Predictor."""
from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from typing import ClassVar

import numpy as np
import pandas as pd

from ...learn import BestWeights, export, record_settings, reusable
from ...longform import implied_volumes
from ...store import fold_roles
from ...study import PHANTOM_SAX_SEGMENTER, StudySkipped
from ...study import Study as Base
from ...utils import rng, seed_for, seeded
from .data import SeqItem, dataloaders, seq_frames, seq_items
from .evaluate import PAPER_AFD, afd_table, evaluate, label_plateaus, pseudo_reference, real_afd_table
from .figures import afd_figure, curves_figure, real_figure
from .learner import METHODS, fit, learner, load, model_file
from .predict import predict, seg_detect
from .predictor import Predictor

MODEL_KEYS = ("widths", "blocks", "hidden", "bidirectional", "cyclic", "motion", "dropout")


class Study(Base):
    """Notebook 02: `prepare`, `fit`, `evaluate`, `ordering`, `sharp_ed`, `figures`, `real_patients`, `real_acdc`,
    `real_ukbb`, `checks`."""

    method = "edes"
    number = "02"
    BATCHES = ("bs",)
    PARAMS: ClassVar[dict] = {
        # study
        **Base.RUN,  # profile, seed, run_dir, figures_dir, budget_min
        "data_dir": None,  # real-data root; None: $CMRLIB_DATA (real-data sections are skipped when absent)
        "views": ["SAX", "2CH", "4CH"],  # one model is trained over all of them; the table reports each and all together
        "max_cines": None,  # at most this many cines per split and view (None: all)
        "methods": ["CNN+Reg", "TempReg-Net w/o TSC", "TempReg-Net"],
        "n_show": 4,  # test cines drawn in the curve figure
        "real_folds": 5,  # real SAX patients: folds by patient (test fold, the next for validation, the rest train)
        "real_per_group": None,  # real SAX patients kept per diagnosis, the first by id (None: all)
        "real_epochs": 8,  # real SAX patients: fine-tuning epochs from each method's phantom model (best on validation)
        "real_lr": 1e-3,  # real SAX patients: fine-tuning learning rate (one-cycle)
        "short_frames": 20,  # real SAX patients: acquisitions with fewer frames are reported apart (ES is harder)
        "sharp_plateau": 2,  # the breakdown keeps test cines whose ED volume plateau is at most this many frames wide
        "retrain": False,  # True: train again even where {run_dir}/02/models holds a model trained with these settings
        # model
        "threads": 2,  # torch CPU threads
        "size": 32,  # frames are fitted into size x size
        "zoom": 1.6,  # magnification about the frame centre after fitting (the heart sits near the middle)
        "widths": [8, 16, 32],  # CNN trunk channels per stage (ResNet-18: [64, 128, 256, 512])
        "blocks": [1, 1, 1],  # residual blocks per stage (ResNet-18: [2, 2, 2, 2])
        "hidden": 16,  # LSTM hidden units
        "bidirectional": True,  # False: the unidirectional LSTM of the paper
        "cyclic": True,  # the LSTM reads the cycle three times and keeps the middle pass (context on both sides of every frame)
        "motion": True,  # second input channel: frame minus the sequence's mean frame
        "dropout": 0.0,  # on the per-frame features
        "epochs": 2,
        "lr": 3e-3,
        "bs": 8,  # sequences per batch (NaN-padded to the longest)
        "alpha": 1e-4,  # L2 weight, applied as coupled weight decay (the gradient of alpha/2 * sum of squared weights)
        "beta": 5.0,  # weight of the temporal structured loss
        "delta": 3.0,  # eq. 4 exponent in systole
        "upsilon": 0.3333333333,  # eq. 4 exponent in diastole
    }

    def __init__(self, params: dict, out=None):
        super().__init__(params, out)
        unknown = [m for m in self.p["methods"] if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {list(METHODS)}")
        self.model_kw = {k: self.p[k] for k in MODEL_KEYS}
        (self.out / "models").mkdir(exist_ok=True)
        self.models, self.real_check, self.real_pseudo, self.real_table = {}, None, None, None

    def prepare(self) -> None:
        """The training and validation sequences (frames fitted and zoomed) and the test cines."""
        p, store = self.p, self.store
        t0 = time.perf_counter()
        self.items = [it for split in ("train", "valid")
                      for it in seq_items(store, store.select(p["views"], split, p["max_cines"], interleave=True),
                                          p["size"], split, zoom=p["zoom"])]
        self.dls = dataloaders(self.items, bs=p["bs"], delta=p["delta"], upsilon=p["upsilon"], seed=p["seed"])
        self.test_ids = store.select(p["views"], "test", p["max_cines"], interleave=True)
        items = self.items
        print(f"{sum(i.split == 'train' for i in items)} train, {sum(i.split == 'valid' for i in items)} valid, "
              f"{len(self.test_ids)} test sequences; {min(i.n_frames for i in items)}-"
              f"{max(i.n_frames for i in items)} frames; prepared in {time.perf_counter() - t0:.1f} s")

    def fit(self, finish=None) -> pd.DataFrame:
        """Every method on the same sequences, seed and schedule; a model the run folder holds with exactly these
        settings is reused unless `retrain`; `finish(learn, path)` (`cmrlib fit`) exports instead and gives the
        validation loss. The training table (written)."""
        p, out = self.p, self.out
        trained = pd.read_csv(out / "training.csv").set_index("method") if (out / "training.csv").exists() else None
        history = []
        for m in p["methods"]:
            fname = f"models/{model_file(m)}"
            settings = dict(method=m, views=p["views"], size=p["size"], zoom=p["zoom"], epochs=p["epochs"], lr=p["lr"],
                            bs=p["bs"], alpha=p["alpha"], beta=p["beta"], delta=p["delta"], upsilon=p["upsilon"],
                            max_cines=p["max_cines"], seed=p["seed"], cohort=self.store.fingerprint(), **self.model_kw)
            if (finish is None and not p["retrain"] and trained is not None and m in trained.index
                    and reusable(out / fname, settings)):
                self.models[m] = load(out / fname)
                history.append(dict(method=m, **trained.loc[m].drop("reused").to_dict(), reused=True))
                continue
            learn, row = fit(self.dls, m, p["epochs"], p["lr"], p["seed"], beta=p["beta"], alpha=p["alpha"], path=out,
                             **self.model_kw)
            if finish is None:
                export(learn, out / fname)
                record_settings(out / fname, settings)
            else:
                row["valid_loss"] = finish(learn, out / fname)[0]
            self.models[m] = learn.model.eval()
            history.append(dict(row, model=fname, reused=False))
        history = pd.DataFrame(history)
        self.nb.table(history, "training")
        return history

    def train(self, finish=None, rows: int | None = None) -> list[dict]:
        """What `cmrlib fit edes` runs: the sequences, then every method trained and exported by `finish`, and the
        run's ED/ES Predictor (process 0; no real-data check: notebook 02 adds it)."""
        from ...distributed import rank

        self.prepare()
        log = self.fit(finish).to_dict("records")
        if rank() == 0:
            self.write_predictor()
        return log

    def write_predictor(self, real_check: str | None = None):
        """TempReg-Net (or the last method trained) as the run's ED/ES Predictor, with its frame settings and the
        real-data check behind it."""
        exported = "TempReg-Net" if "TempReg-Net" in self.models else self.p["methods"][-1]
        return self.nb.predictor(Predictor.from_model(self.models[exported], exported, self.p["size"], self.p["zoom"],
                                                      provenance=self.nb.provenance(self.store, real_check)))

    def detectors(self) -> dict:
        """Each method's ED/ES detector, after the segmentation baseline (the LV volume curve of the run's
        segmentation Predictor) when the run has one."""
        p = self.p
        found = {m: partial(predict, self.models[m], size=p["size"], zoom=p["zoom"]) for m in p["methods"]}
        try:
            seg = self.segmentation()
        except FileNotFoundError as e:
            print(f"segmentation baseline skipped: {e}")
            return found
        return {"Segmentation (LV curve)": partial(seg_detect, seg), **found}

    def evaluate(self) -> pd.DataFrame:
        """Every detector on the test cines: the paper's Table 1 (aFD per method and view; written with the
        predictions and, on the phantom, the volumes the frames imply for notebook 07)."""
        store = self.store
        self.found = self.detectors()
        res = evaluate(self.found, (store.read(i) for i in self.test_ids), total=len(self.test_ids),
                       keep_curves=self.p["n_show"])
        self.res = res.merge(label_plateaus(store, self.test_ids), on="cine_id", how="left")
        self.table = afd_table(self.res, order=list(self.found))
        self.nb.table(self.res.drop(columns="curve", errors="ignore"), "test_predictions")
        manifest = store.manifest()
        if "lv_volume_curve_ml" in manifest:  # what each method's frames cost in mL on the true volume curve
            self.nb.table(implied_volumes(self.res, manifest), "measures_long")
        self.nb.table(self.table, "afd_table")
        self.allv = self.table[self.table["view"] == "all"].set_index("method")
        self.order = [m for m in ("TempReg-Net", "TempReg-Net w/o TSC", "CNN+Reg") if m in self.allv.index]
        self.mean_fd = (self.allv["aFD_ED"] + self.allv["aFD_ES"]) / 2
        return self.table

    def ordering(self) -> None:
        """TempReg-Net against the paper's aFD, and whether the paper's ordering of the three methods holds."""
        allv, order, mean_fd = self.allv, self.order, self.mean_fd
        if "TempReg-Net" in allv.index:
            t = allv.loc["TempReg-Net"]
            print(f"TempReg-Net, all views: aFD ED {t.aFD_ED:.3f} (target <= 0.38), ES {t.aFD_ES:.3f} "
                  "(target <= 0.44)")
        print("paper's ordering (mean of ED and ES aFD):", " < ".join(f"{m} {mean_fd[m]:.3f}" for m in order),
              "-> holds" if list(mean_fd[order]) == sorted(mean_fd[order]) else "-> does not hold")

    def sharp_ed(self) -> pd.DataFrame:
        """The table again on test cines whose true ED plateau is at most `sharp_plateau` frames (written);
        `StudySkipped` without true volume curves."""
        res, k = self.res, self.p["sharp_plateau"]
        if not res["ed_plateau"].notna().any():
            raise StudySkipped("no true volume curves in this cohort: the plateau breakdown needs the phantom's "
                               "lv_volume_curve_ml")
        sharp = res[res["ed_plateau"] <= k]
        print(f"{sharp['cine_id'].nunique()} of {res['cine_id'].nunique()} test cines have an ED plateau of at most "
              f"{k} frames (within 0.5 % of the maximum volume)")
        table_sharp = afd_table(sharp, order=list(self.found))
        self.nb.table(table_sharp, "afd_table_sharp_ed")
        return table_sharp[table_sharp["view"] == "all"]

    def figures(self) -> None:
        """Predicted curves on test cines with the true ED and ES, and the aFD per method and view."""
        p = self.p
        self.nb.figure(curves_figure(self.res, p["n_show"], p["delta"], p["upsilon"], mark_method="TempReg-Net"),
                       "02_curves", "ED/ES methods' frame curves on test cines, with the true ED and ES marked")
        self.nb.figure(afd_figure(self.table), "02_afd",
                       "average absolute frame difference of each ED/ES method per view (whiskers: SD)")

    def real_patients(self) -> pd.DataFrame:
        """Table 1 on real patients: the real SAX cohort (`Study.real_sax`; ED is frame 0 in ACDC, so each cine is
        rolled by an offset drawn from the seed), folds by patient. Each method starts from its phantom model and
        is fine-tuned on the training folds (best epoch on the validation fold), then scored on the test fold; the
        phantom models alone and the segmentation baseline (notebook 01's phantom-only SAX segmenter: it never saw
        an ACDC patient) are scored on every patient. Per-cine predictions and the table with 95 % CIs (written);
        `StudySkipped` without the real cohort."""
        p = self.p
        store, subjects = self.real_sax(p["real_folds"])
        shifts = rng(seed_for(p["seed"], "edes", "real shift"))
        cines = {r.subject: store.read(r.cine_id).rolled(shifts.integers(int(r.n_frames)))
                 for r in subjects.itertuples()}
        folds = subjects.set_index("subject")["fold"]
        found = {f"{m} (phantom only)": partial(predict, self.models[m], size=p["size"], zoom=p["zoom"])
                 for m in p["methods"]}
        seg = self._phantom_sax_segmenter()
        if seg is not None:
            found = {"Segmentation (LV curve)": partial(seg_detect, seg), **found}
        with self.nb.timer("real patients: phantom models"):
            parts = [evaluate(found, cines.values(), total=len(cines)).assign(fold=lambda d: d.cine_id.map(
                {c.cine_id: folds[s] for s, c in cines.items()}))]
        items = {s: SeqItem(seq_frames(c, p["size"], zoom=p["zoom"]), int(c.ed), int(c.es), c.cine_id, c.view)
                 for s, c in cines.items()}
        logs = []
        with self.nb.timer("real patients: fine-tuning"):
            for k in range(p["real_folds"]):
                roles = fold_roles(k, p["real_folds"])
                tuned, log = self._fine_tune(items, folds, roles, k)
                logs += log
                test = [c for s, c in cines.items() if folds[s] in roles["test"]]
                parts.append(evaluate(tuned, test, total=len(test)).assign(fold=k))
        res = pd.concat(parts, ignore_index=True)
        res["short"] = res["n_frames"] < p["short_frames"]
        self.nb.table(res, "real_predictions")
        self.nb.table(pd.DataFrame(logs), "real_training")
        self.real_table = real_afd_table(res, p["short_frames"])
        self.nb.table(self.real_table, "real_afd_table")
        n = len(cines)
        self.nb.figure(real_figure(self.real_table, getattr(self, "allv", None)), "02_real_afd",
                       f"ED/ES detectors on {n} real ACDC SAX cines (cyclically shifted; fine-tuned rows scored on "
                       "held-out folds) with 95 % CIs, beside the paper's and the phantom test split's aFD")
        t = self.real_table.set_index("method")
        if "TempReg-Net (fine-tuned)" in t.index:
            r = t.loc["TempReg-Net (fine-tuned)"]
            self.real_check = (f"{n} real ACDC SAX cines, cyclically shifted, 5-fold by patient: fine-tuned "
                               f"TempReg-Net aFD ED {r.aFD_ED:.2f}, ES {r.aFD_ES:.2f} frames")
        return self.real_table

    def _phantom_sax_segmenter(self):
        """Notebook 01's phantom-only SAX segmenter as a segmentation Predictor (None when the run has none)."""
        from ...learn import load as load_model
        from ...predictor import predictor_class

        path = self.nb.run_dir / PHANTOM_SAX_SEGMENTER
        if not path.exists():
            print(f"segmentation baseline skipped on real patients: no {PHANTOM_SAX_SEGMENTER} in this run")
            return None
        return predictor_class("segmentation")({"SAX": load_model(path, "SAX segmenter", "notebook 01")},
                                               model="phantom-only SAX segmenter")

    def _fine_tune(self, items: dict, folds: pd.Series, roles: dict, k: int) -> tuple[dict, list[dict]]:
        """Every method's phantom model fine-tuned on the training folds' sequences, the best epoch on the
        validation fold kept; the detectors and a log row per method."""
        p = self.p
        split = {s: next((r for r, fs in roles.items() if folds[s] in fs), "test") for s in items}
        seqs = [replace(it, split=split[s]) for s, it in items.items() if split[s] in ("train", "valid")]
        dls = dataloaders(seqs, bs=p["bs"], delta=p["delta"], upsilon=p["upsilon"], seed=seed_for(p["seed"], "real", k))
        found, log = {}, []
        for m in p["methods"]:
            with seeded(seed_for(p["seed"], "edes", "real", m, k)):
                learn = learner(dls, m, beta=p["beta"], alpha=p["alpha"], path=self.out, **self.model_kw)
                learn.model.load_state_dict(self.models[m].state_dict())
                best = BestWeights(patience=p["real_epochs"], min_epochs=1)
                with learn.no_bar(), learn.no_logging():
                    learn.fit_one_cycle(p["real_epochs"], p["real_lr"], cbs=[best])
            found[f"{m} (fine-tuned)"] = partial(predict, learn.model.eval(), size=p["size"], zoom=p["zoom"])
            log.append(dict(fold=k, method=m, best_epoch=best.best_epoch, valid_loss=float(best.best),
                            train=sum(s.split == "train" for s in seqs), valid=sum(s.split == "valid" for s in seqs)))
        return found, log

    def real_acdc(self) -> pd.DataFrame:
        """Every detector on ACDC patient090's SAX cine (labelled ED and ES; written): the Predictor's real check;
        `StudySkipped` without that cine."""
        from ...io.real import MANUAL, real_subjects

        cines = [c for s in real_subjects(self.p["data_dir"], ("SAX",)) if s.reference_is == MANUAL for c in s.cines]
        if not cines:
            raise StudySkipped("no full ACDC SAX cine (acdc/training/patientNNN/patientNNN_4d.nii.gz) under the data "
                               "root (set data_dir or $CMRLIB_DATA)")
        real = evaluate(self.found, cines)
        cols = ["method", "view", "n_frames", "ed", "es", "ed_pred", "es_pred", "fd_ed", "fd_es", "sec"]
        self.nb.table(real[cols], "real_acdc_patient090")
        fd = real.set_index("method")
        if "TempReg-Net" in fd.index:
            self.real_check = (f"one real ACDC SAX cine with labelled ED/ES: frame difference ED "
                               f"{fd.loc['TempReg-Net', 'fd_ed']:.0f}, ES {fd.loc['TempReg-Net', 'fd_es']:.0f}")
        return real[cols]

    def real_ukbb(self) -> pd.DataFrame:
        """Every detector on the UK Biobank demo's 2CH, 3CH and 4CH cines against the ED/ES that each subject's 4CH
        pseudo-labels imply (largest and smallest LV area; a network's labels, so a pseudo-reference; written with
        the curves); `StudySkipped` without the demo."""
        from ...io.real import PSEUDO, real_subjects

        lax = ("2CH", "3CH", "4CH")
        cines = pseudo_reference([c for s in real_subjects(self.p["data_dir"], lax) if s.reference_is == PSEUDO
                                  for c in s.cines])
        if not cines:
            raise StudySkipped("no UK Biobank demo cines with 4CH pseudo-labels under the data root")
        ukbb = evaluate(self.found, cines, total=len(cines), keep_curves=len(cines))
        ukbb["cine"] = [f"{c.subject} {c.view}" for c in cines for _ in self.found]
        cols = ["cine", "method", "n_frames", "ed", "es", "ed_pred", "es_pred", "fd_ed", "fd_es", "sec"]
        table = ukbb[cols].rename(columns={"ed": "ed_pseudo", "es": "es_pseudo"})
        self.nb.table(table, "real_ukbb_pseudo")
        self.nb.figure(curves_figure(ukbb, len(cines), mark_method="TempReg-Net", reference="pseudo"),
                       "02_ukbb_curves", "ED/ES detectors on the UK Biobank demo's long-axis cines, with the frames "
                       "the 4CH pseudo-labels imply (largest and smallest LV area)")
        self.real_pseudo = table
        return table

    PAPER_FIGURES = ("02_afd",)

    @classmethod
    def paper_figures(cls, run_dir):
        """The average absolute frame difference of each ED/ES method."""
        if (f := run_dir / "02" / "afd_table.csv").exists():
            yield "02_afd", afd_figure(pd.read_csv(f))

    def headline_tables(self):
        """Table 1 on the phantom's test split beside the paper's rows, and on the real SAX patients."""
        if (d := self.written("afd_table")) is not None:
            d = d[d["view"] == "all"][["method", "n", "aFD_ED", "aFD_ES"]].copy()
            d["paper aFD_ED"] = d["method"].map(lambda m: PAPER_AFD.get(m, (np.nan,))[0])
            d["paper aFD_ES"] = d["method"].map(lambda m: PAPER_AFD.get(m, (np.nan, np.nan))[1])
            yield ("headline_afd", "ED/ES frames: average absolute frame difference (phantom test, all views)",
                   d.round(2))
        if self.written("real_afd_table") is not None:
            yield ("real_afd_table", "ED/ES frames on the real SAX patients (cyclically shifted; fine-tuned rows scored "
                   "on held-out folds; 95 % CI), beside the paper's", None)

    def checks(self) -> pd.DataFrame:
        """The paper's aFD targets and ordering (written); TempReg-Net (or the last method) becomes the run's ED/ES
        Predictor with its frame size, zoom and real-data check."""
        allv, order, checks = self.allv, self.order, []
        if "TempReg-Net" in allv.index:
            paper_ed, paper_es = PAPER_AFD["TempReg-Net"]
            checks += [("TempReg-Net aFD ED (frames)", allv.loc["TempReg-Net", "aFD_ED"], "<=", paper_ed),
                       ("TempReg-Net aFD ES (frames)", allv.loc["TempReg-Net", "aFD_ES"], "<=", paper_es)]
        if len(order) == 3:
            checks.append(("paper's ordering: smallest step up in mean aFD", float(self.mean_fd[order].diff().min()),
                           ">", 0.0))
        if self.real_pseudo is not None and "TempReg-Net" in set(self.real_pseudo.method):
            worst = self.real_pseudo[self.real_pseudo.method == "TempReg-Net"][["fd_ed", "fd_es"]].to_numpy().max()
            checks.append(("TempReg-Net on every UKBB demo cine: largest frame difference from the 4CH "
                           "pseudo-labels' ED/ES", float(worst), "<=", 2))
        if self.real_table is not None:
            t = self.real_table.set_index("method")
            rows = [m for m in ("Segmentation (LV curve)", "CNN+Reg (fine-tuned)", "TempReg-Net w/o TSC (fine-tuned)",
                                "TempReg-Net (fine-tuned)") if m in t.index]
            if "TempReg-Net (fine-tuned)" in t.index:
                r, mean_fd = t.loc["TempReg-Net (fine-tuned)"], (t.aFD_ED + t.aFD_ES)[rows] / 2
                checks += [("real SAX patients: TempReg-Net aFD ED (frames)", r.aFD_ED, "<=", 0.5),
                           ("real SAX patients: TempReg-Net aFD ES (frames)", r.aFD_ES, "<=", 1.0),
                           ("real SAX patients: TempReg-Net's mean aFD minus the best of the other rows",
                            float(mean_fd["TempReg-Net (fine-tuned)"] - mean_fd.drop("TempReg-Net (fine-tuned)").min()),
                            "<", 0.0)]
        targets = self.targets(checks)
        self.write_predictor(self.real_check)
        return targets
