"""TempReg-Net's experiment (Kong et al., MICCAI 2016: Table 1, ED/ES frame detection) on the run's cines: the
sequences, every method trained (or reused), the average absolute frame difference per view on test, the
segmentation baseline through the run's segmentation Predictor, real cines, figures and the run's ED/ES
Predictor."""
from __future__ import annotations

from functools import cached_property, partial
from typing import ClassVar

import pandas as pd

from ...distributed import rank, world_size
from ...io.real import MANUAL, PSEUDO, rolled_cine
from ...learn import Fitted
from ...study import Study as Base
from ...study import StudySkipped, shows
from .data import SeqItem, Sequences, phantom_sequences, real_item, resampled
from .evaluate import (TestResults, beside_paper, ordering, phantom_checks, pseudo_reference, sharp_ed,
                       test_results)
from .figures import CAPTIONS as FIGURE_CAPTIONS
from .figures import afd_figure, curves_figure, real_figure
from .learner import DETECTORS, SETTINGS, fit, make_models
from .predict import predict, seg_detect
from .predictor import Predictor
from .real import (RealCines, RealResult, RealSax, Tuning, every_patient_network, fine_tuned_rows, fixed_rows,
                   labelled_rows, per_cine, pseudo_rows, real_checks, real_cines_result, shipped_lines,
                   shipped_predictor, trainings)

MODEL_KEYS = ("widths", "blocks", "hidden", "bidirectional", "cyclic", "motion", "dropout")

SEG_ROW = "Segmentation (LV curve)"  # the segmentation baseline: the run segmenter's LV volume curve


class Study(Base):
    """Notebook 02: one step per cell, its named pieces shared as cached properties (`outline()` lists both)."""

    method = "edes"
    number = "02"
    CAPTIONS = FIGURE_CAPTIONS
    GLANCE = dict(method="TempReg-Net", headline="aFD ED / ES (frames)", paper="0.38 / 0.44",
                  phantom=[["ED", "TempReg-Net aFD ED (frames)"], ["ES", "TempReg-Net aFD ES (frames)"]],
                  real=[["fine-tuned TempReg-Net ES, out of fold",
                         "real SAX patients (*): fine-tuned TempReg-Net aFD ES*"],
                        ["the shipping rule's ES, nested cross-validation",
                         "real SAX patients: the shipping rule by nested cross-validation, aFD ES*"]])
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
        "real_frames": 30,  # real SAX patients: the fixed length TempReg-Net's resampled readings train and read at
        "short_frames": 20,  # real SAX patients: acquisitions with fewer frames are reported apart (ES is harder)
        "curve_smooth": [1, 3, 5],  # real SAX patients: circular moving averages of the LV volume curve, one chosen on validation
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
        unknown = [m for m in self.p["methods"] if m not in DETECTORS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {list(DETECTORS)}")
        self.model_kw = {k: self.p[k] for k in MODEL_KEYS}
        (self.out / "models").mkdir(exist_ok=True)

    @cached_property
    def sequences(self) -> Sequences:
        """The training and validation sequences (frames fitted and zoomed) and the test cines."""
        p = self.p
        return phantom_sequences(self.store, p["views"], p["max_cines"], p["size"], p["zoom"], p["bs"], p["delta"],
                                 p["upsilon"], p["seed"])

    def prepare(self) -> None:
        """The sequences' counts and frame range."""
        seq = self.sequences
        items = seq.items
        print(f"{sum(i.split == 'train' for i in items)} train, {sum(i.split == 'valid' for i in items)} valid, "
              f"{len(seq.test_ids)} test sequences; {min(i.n_frames for i in items)}-"
              f"{max(i.n_frames for i in items)} frames; prepared in {seq.seconds:.1f} s")

    def make_models(self, finish=None) -> Fitted:
        """Every method on the same sequences, seed and schedule, each reused when the run folder holds it with
        exactly these settings (`fit_or_reuse`; `finish`: `cmrlib fit`'s export, which gives the validation loss);
        the training table written."""
        p = self.p
        settings = lambda m: dict(method=m, **{k: p[k] for k in SETTINGS}, cohort=self.store.fingerprint(),
                                  **self.model_kw)
        train = lambda m: fit(self.sequences.dls, m, p["epochs"], p["lr"], p["seed"], beta=p["beta"], alpha=p["alpha"],
                              path=self.out, **self.model_kw)
        made = make_models(p["methods"], settings, train, self.out, finish, bool(p["retrain"]))
        self.nb.table(made.log, "training")
        return made

    @cached_property
    def models(self) -> Fitted:
        """Every method's network (trained, or reused from the run folder) and the training table."""
        return self.make_models()

    fit = shows("models.log", "The training table: per method its time, last validation loss and aFD; `reused` where "
                              "loaded.")

    def train(self, finish=None, rows: int | None = None) -> list[dict]:
        """What `cmrlib fit edes` runs: the models, exported by `finish`, then the run's ED/ES Predictor (process 0):
        the detector chosen on real patients where the data root has them and one process trains, else phantom
        TempReg-Net."""
        fitted = self.make_models(finish)  # saved in the run folder: `models` reads them back, never trains again
        if rank() == 0:  # the real section fine-tunes in one process (notebook 02 runs it; several processes: not)
            self.write_predictor(fitted.nets, self.optional("real_results") if world_size() <= 1 else None)
        return fitted.log.to_dict("records")

    def write_predictor(self, nets: dict, real: RealCines | None = None, check: str | None = None):
        """The run's ED/ES Predictor: the detector the rule picks on every real patient (`real_results`) with the
        rule's nested check; without real patients, TempReg-Net (or the last method trained) on the phantom with
        `check`."""
        p = self.p
        if real is None or real.choice.empty:
            exported = "TempReg-Net" if "TempReg-Net" in nets else p["methods"][-1]
            return self.nb.predictor(Predictor.from_model(nets[exported], exported, p["size"], p["zoom"],
                                                          provenance=self.nb.provenance(self.store, check)))
        return self.nb.predictor(shipped_predictor(
            real, lambda c, **more: self.nb.provenance(self.store, c, **more), p["size"], p["zoom"],
            lambda: self.segmentation().provenance.get("real_training"), lambda: self.real_network(real)))

    def real_network(self, real: RealCines):
        """TempReg-Net fine-tuned from its phantom model on every real SAX patient, as the shipped row's fine-tuning
        (`trainings`), for the folds' median best epoch (nothing left to choose on); and how many cines it learned
        from."""
        p, seqs = self.p, list(self.real_items[real.trained_as or "TempReg-Net"].values())
        start = self.models.nets["TempReg-Net"].state_dict()
        return every_patient_network(seqs, real.best_epochs, p["real_epochs"], start, p["bs"], p["delta"],
                                     p["upsilon"], p["seed"], self.tuning), len(seqs)

    @cached_property
    def detectors(self) -> dict:
        """Each method's ED/ES detector, after the segmentation baseline (the LV volume curve of the run's
        segmentation Predictor) when the run has one."""
        p = self.p
        found = {m: partial(predict, self.models.nets[m], size=p["size"], zoom=p["zoom"]) for m in p["methods"]}
        seg = self.segmenter_or_none("segmentation baseline")
        return found if seg is None else {SEG_ROW: partial(seg_detect, seg), **found}

    @cached_property
    def test_results(self) -> TestResults:
        """Every detector on the test cines: the predictions and the paper's Table 1 (aFD per method and view), with
        the volumes the frames imply on the phantom for notebook 07 (written)."""
        t = test_results(self.detectors, self.store, self.sequences.test_ids, self.p["n_show"])
        self.nb.table(t.per_cine.drop(columns="curve", errors="ignore"), "test_predictions")
        if t.implied is not None:  # what each method's frames cost in mL on the true volume curve
            self.nb.table(t.implied, "measures_long")
        self.nb.table(t.table, "afd_table")
        return t

    evaluate = shows("test_results.table", "The paper's Table 1 on the test cines.")

    def ordering(self) -> None:
        """TempReg-Net against the paper's aFD, and whether the paper's ordering of the three methods holds."""
        print(ordering(self.test_results))

    def sharp_ed(self) -> pd.DataFrame:
        """The table again on test cines whose true ED plateau is at most `sharp_plateau` frames (written);
        `StudySkipped` without true volume curves."""
        table = self.nb.kept(sharp_ed(self.test_results.per_cine, self.p["sharp_plateau"], list(self.detectors)),
                             "afd_table_sharp_ed")
        return table[table["view"] == "all"]

    def figures(self) -> None:
        """Predicted curves on test cines with the true ED and ES, and the aFD per method and view."""
        p, t = self.p, self.test_results
        self.figure(curves_figure(t.per_cine, p["n_show"], p["delta"], p["upsilon"], mark_method="TempReg-Net"),
                    "02_curves")
        self.figure(afd_figure(t.table), "02_afd")

    @cached_property
    def real_cines(self) -> RealSax:
        """The real SAX cohort (`Study.real_sax`), each cine rolled as every notebook rolls it (`io.real.rolled_cine`:
        ED is frame 0 in ACDC), its patients' folds and their prepared sequences; `StudySkipped` without the cohort."""
        p = self.p
        store, subjects = self.real_sax(p["real_folds"])
        cines = {r.subject: rolled_cine(store, r, p["seed"]) for r in subjects.itertuples()}
        items = {s: real_item(c, p["size"], p["zoom"]) for s, c in cines.items()}
        return RealSax(cines, subjects.set_index("subject")["fold"], items)

    @cached_property
    def real_items(self) -> dict[str, dict[str, SeqItem]]:
        """The real patients' sequences as each fine-tuning of `trainings` learns from them, by subject: the mid
        slice or every LV slice, prepared once, resampled where the fine-tuning reads a fixed length."""
        p, plain = self.p, self.real_cines.items
        every = {s: real_item(c, p["size"], p["zoom"], every_slice=True) for s, c in self.real_cines.cines.items()}
        return {name: {s: resampled(it, r.frames) if r.frames else it
                       for s, it in (every if r.every_slice else plain).items()}
                for name, r in trainings(p["real_frames"]).items()}

    @cached_property
    def tuning(self) -> Tuning:
        """How the phantom models are fine-tuned on real patients (`real.Tuning`)."""
        return Tuning.of(self.p, self.out, self.model_kw)

    @cached_property
    def real_results(self) -> RealCines:
        """The ED/ES detectors on real patients (`real_cines`), folds by patient: the phantom models alone, the seam
        control and the LV volume curves on every patient (`real.fixed_detectors`), each network fine-tuned on the
        training folds and scored on the test fold (`real.fine_tune_fold`); the detector the rule picks on every cine,
        and the rule scored by nested cross-validation (`real.ship`). Written; `StudySkipped` without the real
        cohort."""
        p = self.p
        cines, folds = self.real_cines.cines, self.real_cines.folds
        with self.nb.timer("real patients: phantom models and curves"):
            # each patient by the cross-fitted model that never saw it
            seg = self.segmenter_or_none("run segmenter's volume curve on real patients", real=True)
            parts = [fixed_rows(self.models.nets, p["methods"], p["size"], p["zoom"], self.phantom_segmenter, seg,
                                p["curve_smooth"], cines)]
        with self.nb.timer("real patients: fine-tuning"):
            tuned, logs = fine_tuned_rows(self.models.nets, p["methods"], self.real_items, cines, folds,
                                          p["real_folds"], self.tuning)
        res = per_cine(parts + tuned, cines, folds, p["short_frames"], p["curve_smooth"])
        self.nb.tables({"real_predictions": res.drop(columns="curve", errors="ignore"),
                        "real_training": pd.DataFrame(logs)})
        return self._real_tables(res, logs)

    def _real_tables(self, res: pd.DataFrame, logs: list[dict]) -> RealCines:
        """The real tables from the per-cine rows: every cine, the rule's pick on all of them and the rule scored by
        nested cross-validation (written, with the figure)."""
        p = self.p
        r = real_cines_result(res, logs, p["short_frames"], p["curve_smooth"], p["real_frames"], p["seed"],
                              p["real_folds"])
        self.nb.table(r.table, "real_afd_table")
        self.figure(real_figure(r.table, self.test_results.allv), "02_real_afd", n=res["cine_id"].nunique())
        if not r.choice.empty:
            self.nb.tables({"real_choice": r.choice, "real_choice_by_fold": r.picks, "real_afd_nested": r.procedure})
        return r

    real_patients = shows("real_results.table", "Table 1 on the real SAX patients, with 95 % CIs, as % of the cycle and "
                                                "as the share within one frame.")

    def real_shipped(self) -> pd.DataFrame:
        """The detector the rule picks on every real cine (shipped), its picks with each fold left out, and every
        detector beside the rule's nested row (paired differences with bootstrap 95 % CIs; negative: closer to the
        annotation than the rule)."""
        r = self.real_results
        if r.choice.empty:
            raise StudySkipped("no real patients in two or more folds to choose a detector on")
        print(shipped_lines(r))
        return r.procedure

    @cached_property
    def real_patient090(self) -> RealResult:
        """Every detector on ACDC patient090's SAX cine (labelled ED and ES; written): the Predictor's real check;
        `StudySkipped` without that cine."""
        found = self.real_found(("SAX",), "full ACDC SAX cine (acdc/training/patientNNN/patientNNN_4d.nii.gz)", MANUAL)
        cines = [c for s in found for c in s.cines]
        found = self.detectors
        if SEG_ROW in found:  # the patient read by the cross-fitted model that never saw it
            found = {**found, SEG_ROW: partial(seg_detect, self.real_segmenter())}
        table, check = labelled_rows(found, cines)
        self.nb.table(table, "real_acdc_patient090")
        return RealResult(table, check)

    real_acdc = shows("real_patient090.table", "Every detector on ACDC patient090's labelled SAX cine.")

    @cached_property
    def real_demo(self) -> pd.DataFrame:
        """Every detector on the UK Biobank demo's 2CH, 3CH and 4CH cines against the ED/ES that each subject's 4CH
        pseudo-labels imply (largest and smallest LV area; a network's labels, so a pseudo-reference; written with
        the curves); `StudySkipped` without the demo."""
        found = self.real_found(("2CH", "3CH", "4CH"), "UK Biobank demo cines with pseudo-labels", PSEUDO)
        cines = pseudo_reference([c for s in found for c in s.cines])
        if not cines:
            raise StudySkipped("no UK Biobank demo cines with 4CH pseudo-labels under the data root")
        ukbb, table = pseudo_rows(self.detectors, cines)
        self.nb.table(table, "real_ukbb_pseudo")
        self.figure(curves_figure(ukbb, len(cines), mark_method="TempReg-Net", reference="pseudo"), "02_ukbb_curves")
        return table

    real_ukbb = shows("real_demo", "Every detector on the UK Biobank demo's long-axis cines against their "
                                   "pseudo-labels' ED/ES.")

    PAPER_FIGURES = ("02_afd",)

    @classmethod
    def paper_figures(cls, run_dir):
        """The average absolute frame difference of each ED/ES method."""
        if (f := run_dir / "02" / "afd_table.csv").exists():
            yield "02_afd", afd_figure(pd.read_csv(f))

    def headline_tables(self):
        """Table 1 on the phantom's test split beside the paper's rows, and on the real SAX patients, each asked for
        by name."""
        if (t := self.optional("test_results")) is not None:
            yield ("headline_afd", "ED/ES frames: average absolute frame difference (phantom test, all views)",
                   beside_paper(t.table))
        if (real := self.optional("real_results")) is None:
            return
        yield ("real_afd_table", "ED/ES frames on the real SAX patients (cyclically shifted; fine-tuned rows scored on "
               "held-out folds; 95 % CI), beside the paper's", None)
        if not real.procedure.empty:
            yield ("real_afd_nested", "ED/ES frames on the real SAX patients (95 % CI): the shipping rule by nested "
                   "cross-validation (each fold read by the detector it picks on the other four) beside every "
                   "detector, paired, with bootstrap 95 % CIs", real.procedure)

    def checks(self) -> pd.DataFrame:
        """The paper's aFD targets and ordering, and the real patients' (written); the detector the rule picks on
        every real patient becomes the run's ED/ES Predictor with the rule's nested check (without real patients:
        phantom TempReg-Net with patient090's)."""
        phantom, demo, real = self.test_results, self.optional("real_demo"), self.optional("real_results")
        targets = self.targets(phantom_checks(phantom) + real_checks(demo, real))
        one = self.optional("real_patient090")
        self.write_predictor(self.models.nets, real, one.check if one is not None else None)
        return targets
