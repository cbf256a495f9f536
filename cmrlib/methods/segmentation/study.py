"""The segmentation experiment (TernausNet11 per view; Table-1 measures) on the run's cohort: the phantom SAX and
long-axis models trained (or reused) and calibrated on validation, Dice per view and structure on test, ACDC
held out, phantom-to-real transfer and fine-tuning, the measures' agreement with their references, and the run's
segmentation Predictor."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import pandas as pd

from ... import plots, stats
from ...data import pick_subjects
from ...distributed import rank
from ...learn import Fitted
from ...longform import PHANTOM_REFERENCES, from_table1
from ...measure import UNITS, measure_pairs, subject_measures
from ...store import CohortStore
from ...study import Lazy, Study as Base, StudySkipped, shows
from ...utils import seed_for
from .crossfit import acdc_folds, fold_cines
from .crossfit import write as crossfit_write
from .evaluate import (choose_sax, dice_by_model, dice_by_view, evaluate, frame_scores, inference_table, model_table,
                       named_sax, ra_check, sax_sets, summarise)
from .figures import CAPTIONS as FIGURE_CAPTIONS
from .figures import case_panels
from .fitting import Maker, prior
from .learner import as_model, lax_real_settings, phantom_specs, sax_real_data, sax_real_settings
from .predict import predict_store, uncertainty_references
from .predictor import Predictor
from .real import (Agreed, RealLax, acdc_measures, acdc_store, agreed, fine_tune_vs_scratch, lax_on_phantom,
                   lax_scores, overshoot_line, sax_intervals, shipped_evidence)
from .recipes import recipe

OFF_CENTRE_MM = 60.0  # how far the inference comparison moves the field of view off ACDC's heart-centred frames


@dataclass(frozen=True)
class Scored:
    """A model on some cines: predictions by cine, Dice per frame (`scores`) and per structure (`table`); the
    model where it matters later."""

    pred: dict
    scores: pd.DataFrame
    table: pd.DataFrame
    model: object = None


@dataclass(frozen=True)
class CrossFit:
    """The cross-fitted SAX models: subject -> fold, the model by fold, every ACDC patient's out-of-fold labels
    scored against the manual masks, and their entropy sums by cine (`predict.add_entropy`)."""

    folds: dict
    models: dict
    scored: Scored
    entropy: dict


class Study(Base):
    """Notebook 01: one step per cell, its named pieces shared as cached properties (`outline()` lists both)."""

    method = "segmentation"
    number = "01"
    CAPTIONS = FIGURE_CAPTIONS
    GLANCE = dict(method="segmentation", headline="held-out ACDC Dice; LVEF MAE (points)", paper="– (none)",
                  phantom=[["SAX LV Dice", "phantom SAX LV Dice"]],
                  real=[[f"{s} Dice", f"ACDC out-of-fold {s} Dice"] for s in ("LV", "MYO", "RV")]
                  + [["LVEF MAE", "ACDC out-of-fold LVEF MAE (points)"]])
    BATCHES = ("bs",)
    PARAMS: ClassVar[dict] = {
        # study
        **Base.RUN,  # profile, seed, run_dir, figures_dir, budget_min
        "data_dir": None,  # real-data root; None: $CMRLIB_DATA (ACDC sections are skipped when absent)
        "max_test_cines": 1,  # phantom test cines scored per view (None: all)
        "acdc_store": None,  # ingested ACDC store; None: the cohort if 00 ingested ACDC, else ingest into {run_dir}/01/acdc
        "acdc_limit": 10,  # ingest only the first N ACDC patients (None: all 100)
        "n_finetune": 4,  # real patients in the fine-tune vs from-scratch comparison
        "retrain": False,  # True: train again even where {run_dir}/01/models holds a model trained with these settings
        # model
        "threads": 1,  # torch CPU threads (on a busy shared CPU, 2 threads run several times slower than 1)
        "workers": 1,  # Dask worker processes on this machine for the data-parallel steps (1: run them in this process)
        "scheduler": None,  # a Dask scheduler instead: address (tcp://host:8786) or scheduler file; "local": a LocalCluster
        "width": 0.125,  # TernausNet11 channel multiplier (1.0 is the paper's 64..512 encoder, 32 decoder filters)
        "size": 64,  # model grid side in px (multiple of 32)
        "spacing_mm": 3.6,  # model pixel spacing; size x spacing_mm is the field of view around the image centre
        "real_spacing_mm": None,  # pixel spacing of the models trained on ACDC (ACDC-only, phantom + ACDC); None: spacing_mm
        "crop_sax": None,  # SAX models train on windows of this many px round the heart (`HeartCrop`) and read whole frames; None: the whole canvas
        "tta": False,  # SAX models that learned from mirrored frames average their scores with the mirrored frame's (twice the inference time)
        "centred": False,  # SAX models read each cine round the heart its first frame shows, not round the frame's centre (one frame more)
        "bs": 16,
        "lr": 1e-2,
        "pretrained": False,  # ImageNet VGG11 encoder: needs width 1.0 and the weights in the local torch cache
        "bf16": True,  # bfloat16 autocast while training on the CPU (about 1.5-2x faster on AVX512-BF16 CPUs)
        "augmentation": {"sax": "randomised", "lax": "phantom", "acdc": "real", "sax_real": "randomised_mirrored", "lax_real": "randomised"},  # recipe per model: methods.segmentation.RECIPES
        "epochs_sax": 1,  # phantom SAX model
        "epochs_lax": 1,  # phantom long-axis (2CH + 4CH) model
        "calibrate_cines": 4,  # validation cines per view that calibrate each model's decision (per-class log-prior) and set its uncertainty yardstick; 0: off
        "balance_lax": True,  # long-axis model: class-weighted cross-entropy, so the small RV and RA are learned too
        "frame_step": 25,  # phantom training frames: every k-th frame of each cine, plus ED and ES
        "max_frames": None,  # at most this many training frames per model (a seeded subset; validation: a quarter); None: all
        "epochs_acdc": 1,  # the ACDC-only model, the yardstick the phantom + ACDC one is compared with; 0: none
        "epochs_finetune": 1,
        "epochs_lax_real": 1,  # the long-axis model fine-tuned on phantom + one UK Biobank demo subject's 4CH pseudo-labels; 0: none
        "lax_real_subject": "ukbb-demo-1",  # the demo subject it trains on; the other is held out and scored
        "real_share": 0.25,  # share of that model's training frames that are the demo's (cycled)
        "epochs_sax_real": 1,  # the SAX model fine-tuned on phantom + ACDC's training patients (manual masks); 0: none
        "sax_real_folds": 5,  # that recipe also trained once per fold of ACDC's patients, each read out of fold (the real SAX cohort's folds); 0: none
        "real_per_group": None,  # the real SAX cohort the folds follow: only the first patients of each diagnosis, as notebooks 02-08 read it
        "sax_real_share": 0.25,  # share of that model's training frames that are ACDC's (cycled)
        "sax_real_frames": None,  # at most this many phantom frames beside them (a seeded subset); None: max_frames
        "sax_real_schedule": "one_cycle",  # its learning-rate schedule: "one_cycle" (fastai's) or "poly" (nnU-Net's decay, after a 5 % warm-up)
        "phantom_margin": 0.02,  # with sax_predictor "best", a model may lose at most this much mean Dice on phantom validation cines
        "sax_predictor": "phantom",  # SAX model the run's segmentation Predictor carries: "phantom", "real" (phantom + ACDC), "acdc" (ACDC only) or "best" (the highest mean Dice on ACDC's validation patients)
        "lax_predictor": "phantom",  # long-axis model the run's segmentation Predictor carries: "phantom" or "real" (the fine-tuned one)
    }

    def __init__(self, params: dict, out=None):
        super().__init__(params, out)
        p = self.p
        (self.out / "models").mkdir(exist_ok=True)
        self.data_kw = dict(size=p["size"], spacing=p["spacing_mm"], bs=p["bs"], seed=p["seed"],
                            max_frames=p["max_frames"], progress=False)
        self.real_kw = {**self.data_kw, "spacing": p["real_spacing_mm"] or p["spacing_mm"]}  # models trained on ACDC
        self.model_kw = dict(width=p["width"], pretrained=p["pretrained"], bf16=p["bf16"], seed=p["seed"])
        self.crop_kw = {"crop": {"size": p["crop_sax"]}} if p["crop_sax"] else {}  # SAX training windows
        self.on_dask = dict(progress=False, scheduler=self.client)  # each cine one task where Dask runs
        self.reading = dict(self.on_dask, folder=self._labels_folder)  # a cine's labels kept in the run's store
        self.make = Maker(p, self.data_kw, self.model_kw, self.crop_kw, self.fit_or_reuse, self.nb.table,
                          self.nb.timer)  # every model made the one way (`fitting.Maker`)

    @cached_property
    def phantom_specs(self) -> dict[str, tuple]:
        """The phantom SAX and long-axis networks: name -> (file, settings, `fit_weights` spec)."""
        return phantom_specs(self.p, self.data_kw, self.model_kw, self.crop_kw, self.store.fingerprint(),
                             self.out / "models")

    @cached_property
    def phantom_weights(self) -> dict[str, dict]:
        """The phantom networks no file holds with their settings yet, trained side by side: name -> weights."""
        return self.make.side_by_side(self.phantom_specs, self.client, self.store, what="phantom networks")

    def make_phantom_models(self, finish=None) -> Fitted:
        """The phantom SAX model and the 2CH + 4CH model (reused when the run folder holds them with these
        settings; `finish`: `cmrlib fit`'s export); a summary row per model."""
        p, nets, rows = self.p, {}, []
        with self.nb.timer("phantom training (s)"):
            for name, (path, settings, spec) in self.phantom_specs.items():
                nets[name], row = self.make(name, self.store, spec["views"], spec["epochs"], name, path, settings,
                                            finish, dict(frame_step=p["frame_step"]), balance=spec["fit"]["balance"],
                                            weights=(lambda n=name: self.phantom_weights[n]) if finish is None
                                            else None)
                rows.append(row)
        return Fitted(nets, pd.DataFrame(rows))

    @cached_property
    def phantom_models(self) -> Fitted:
        """The phantom SAX model and the long-axis (2CH + 4CH) model, trained or reused, and their summary."""
        return self.make_phantom_models()

    fit = shows("phantom_models.log", "A summary row per phantom model (`reused` where loaded).")

    def train(self, finish=None, rows: int | None = None) -> list[dict]:
        """What `cmrlib fit segmentation` runs: both phantom models, exported by `finish`, then the run's
        segmentation Predictor (process 0; no real-data check: notebook 01 adds it)."""
        fitted = self.make_phantom_models(finish)
        if rank() == 0:
            self.write_predictor(fitted.nets["sax"], fitted.nets["lax"])
        return fitted.log.to_dict("records")

    def write_predictor(self, sax, lax, sax_store: CohortStore | None = None, real_check: str | None = None,
                        **provenance):
        """The run's segmentation Predictor from a SAX and a long-axis model, with each one's validation
        uncertainty yardstick (the SAX model's on `sax_store`, by default the cohort) and the real-data check behind
        it."""
        yardsticks = uncertainty_references({"SAX": (sax, sax_store or self.store, "SAX"),
                                             "LAX": (lax, self.store, ("2CH", "4CH"))}, self.p["calibrate_cines"])
        return self.nb.predictor(Predictor.from_models({"SAX": sax, "LAX": lax},
                                                       self.nb.provenance(self.store, real_check, **provenance),
                                                       yardsticks))

    # ------------------------------------------------------------ the phantom's test split

    @cached_property
    def phantom_test(self) -> Scored:
        """Both phantom models on the phantom's test cines: predictions, Dice per frame and per view and structure
        (written)."""
        store, m = self.store, self.phantom_models.nets
        with self.nb.timer("phantom inference + scoring (s)"):
            ids = store.select(["SAX", "2CH", "4CH"], "test", self.p["max_test_cines"])
            pred = {**predict_store(m["sax"], store, [i for i in ids if i.endswith("_SAX")], **self.reading),
                    **predict_store(m["lax"], store, [i for i in ids if not i.endswith("_SAX")], **self.reading)}
            scores = evaluate(store, pred)
            table = summarise(scores, by=("view", "structure"))
            self.nb.tables({"scores_phantom": scores, "dice_phantom": table}, index=("dice_phantom",))
        return Scored(pred, scores, table)

    def evaluate(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The phantom models' calibrated log-priors and their Dice per view and structure on the test cines."""
        priors = pd.DataFrame({name: prior(m) for name, m in self.phantom_models.nets.items()}).T.rename_axis("model")
        return priors, self.phantom_test.table

    def ra_check(self) -> pd.DataFrame:
        """4CH RA Dice over all frames, over frames with a true RA of at least 100 px, and frames without one
        (written)."""
        check = ra_check(self.phantom_test.scores)
        if check is None:
            raise StudySkipped("no 4CH test cine with a right atrium in this cohort")
        return self.nb.kept(check, "ra_check.csv", index=True)

    def cases_figure(self) -> None:
        """The best, median and worst phantom test frames by Dice."""
        t = self.phantom_test
        self._cases(self.store, t.pred, t.scores, "01_cases_phantom")

    def _cases(self, st: CohortStore | dict, pred: dict, scores: pd.DataFrame, name: str, **fields) -> None:
        ranked = frame_scores(scores)
        cases = case_panels(st, pred, ranked, plots.pick_cases(ranked["dice"]))
        self.figure(plots.cases_figure(**cases, score_name="mean Dice"), name, **fields)

    # ------------------------------------------------------------ ACDC

    @cached_property
    def acdc_cohort(self) -> CohortStore:
        """The ACDC store: `acdc_store`, the cohort when notebook 00 ingested ACDC, or ACDC ingested here from the
        data root; `StudySkipped` when there is none."""
        p = self.p

        def ingest_here(folder):
            from ...io import ingest

            with self.nb.timer("ACDC ingest (s)"):
                return ingest("acdc", folder, self.out / "acdc", limit=p["acdc_limit"], seed=p["seed"], **self.on_dask)
        return acdc_store(p["acdc_store"], self.store, p["data_dir"], ingest_here)

    def acdc(self) -> pd.DataFrame:
        """ACDC's patients per group and split."""
        return self.acdc_cohort.manifest().groupby(["group", "split"]).size().unstack(fill_value=0)

    @cached_property
    def acdc_held_out(self) -> list:
        """ACDC's held-out (test) SAX cines: every real Dice and measure the run reports is scored on them."""
        return self.acdc_cohort.select(view="SAX", split="test")

    @cached_property
    def acdc_model(self) -> Scored:
        """A SAX model trained on ACDC's training patients (or reused), on its held-out patients: predictions, Dice
        per frame and per structure (written); the model in `model`. `StudySkipped` with epochs_acdc=0."""
        acdc, p = self.acdc_cohort, self.p
        if not p["epochs_acdc"]:
            self.nb.forget("scores_acdc", "dice_acdc", "calibration_acdc")  # an earlier run's, in a reused folder
            raise StudySkipped("no ACDC-only SAX model (epochs_acdc=0; the paper profile trains it)")
        with self.nb.timer("ACDC training (s)"):
            settings = dict({**self.real_kw, **recipe(p["augmentation"]["acdc"])}, epochs=p["epochs_acdc"],
                            lr=p["lr"], calibrate_cines=p["calibrate_cines"], cohort=acdc.fingerprint(),
                            **self.model_kw)
            model, _ = self.make("acdc", acdc, ["SAX"], p["epochs_acdc"], "acdc",
                                 self.out / "models" / "seg_sax_acdc.model", settings, data_kw=self.real_kw)
        return self._acdc_scored(model, predict_store(model, acdc, self.acdc_held_out, **self.reading), "acdc")

    def _acdc_scored(self, model, pred: dict, name: str) -> Scored:
        """A SAX model's labels of ACDC cines scored against the manual masks: Dice per frame and per structure
        (written as scores_{name} and dice_{name})."""
        scores = evaluate(self.acdc_cohort, pred)
        table = summarise(scores, by=("structure",))
        self.nb.tables({f"scores_{name}": scores, f"dice_{name}": table}, index=(f"dice_{name}",))
        return Scored(pred, scores, table, model)

    @cached_property
    def held_out_preds(self) -> Lazy:
        """SAX model name -> its labels of ACDC's held-out patients, segmented once per study on first use."""
        return Lazy(lambda name: self.acdc_model.pred if name == "acdc" else
                    predict_store(self._sax_model(name), self.acdc_cohort, self.acdc_held_out, **self.reading))

    fit_acdc = shows("acdc_model.table", "The ACDC-only SAX model's Dice on ACDC's held-out patients.")

    @cached_property
    def sim2real(self) -> Scored:
        """The phantom SAX model on every ACDC cine: Dice per frame and per structure (written)."""
        acdc, model = self.acdc_cohort, self.phantom_models.nets["sax"]
        with self.nb.timer("sim-to-real (s)"):
            return self._acdc_scored(model, predict_store(model, acdc, acdc.select(view="SAX"), **self.reading),
                                     "sim2real")

    sim_to_real = shows("sim2real.table", "The phantom SAX model's Dice on every ACDC cine.")

    def fine_tune_vs_scratch(self) -> pd.DataFrame:
        """The phantom SAX model fine-tuned on a few ACDC patients against the same schedule from scratch, on the
        held-out patients (written)."""
        acdc, p = self.acdc_cohort, self.p
        with self.nb.timer("fine-tune vs scratch (s)"):
            few = pick_subjects(acdc, p["n_finetune"], split="train", by="group", seed=p["seed"])
            data = {**self.data_kw, **recipe(p["augmentation"]["acdc"]), **self.crop_kw}
            ft_table = fine_tune_vs_scratch(acdc, few, self.acdc_held_out, self.phantom_models.nets["sax"],
                                            p["epochs_finetune"], p["lr"], data, self.model_kw, self.reading)
        return self.nb.kept(ft_table, "finetune_vs_scratch.csv", index=True)

    def _sax_real_settings(self, train: list[str], calibrate: list[str] | None = None) -> dict:
        """What a network of the phantom + ACDC SAX recipe is trained with (its file's reuse key)."""
        return sax_real_settings(self.p, self.real_kw, self.model_kw, self.crop_kw, train, calibrate,
                                 self.store.fingerprint(), self.acdc_cohort.fingerprint())

    def _sax_real_networks(self) -> list[tuple[str, list[str], list[str] | None]]:
        """(name, ACDC training cines, calibration cines or None: ACDC validation) of every network of the recipe the
        run makes: the shipped one, then one per cross-fitted fold."""
        nets = [("sax_real", self._sax_real_train, None)] if self.p["epochs_sax_real"] else []
        return nets + [(f"sax_real_fold{f}", train, cal) for f, (train, cal, _) in self.crossfit_roles.items()]

    @cached_property
    def _sax_real_train(self) -> list[str]:
        """The shipped network's ACDC training cines: ACDC's training patients."""
        return [str(i) for i in self.acdc_cohort.select(view="SAX", split="train")]

    @cached_property
    def sax_real_weights(self) -> dict[str, dict]:
        """The recipe's networks no file holds with their settings yet (the shipped one and each fold's), trained
        side by side (`Maker.side_by_side`): name -> weights."""
        p, sax = self.p, as_model(self.phantom_models.nets["sax"]).state_dict()
        data, fit = sax_real_data(p, self.real_kw, self.crop_kw), dict(self.model_kw, schedule=p["sax_real_schedule"])
        specs = {name: (self.out / "models" / f"seg_{name}.model", self._sax_real_settings(train, cal),
                        dict(views=["SAX"], extra=train, epochs=p["epochs_sax_real"], init=sax, data=data, fit=fit))
                 for name, train, cal in self._sax_real_networks()}
        return self.make.side_by_side(specs, self.client, self.store, self.acdc_cohort, "phantom + ACDC SAX networks")

    @cached_property
    def sax_real_model(self):
        """The SAX model fine-tuned from the phantom one on the phantom's frames plus the ED/ES frames of ACDC's
        training patients with their manual masks (`_sax_real`), its decision calibrated on ACDC's validation
        patients (the real hearts it is shipped to read); `StudySkipped` with epochs_sax_real=0."""
        if not self.p["epochs_sax_real"]:
            raise StudySkipped("no phantom + ACDC SAX model (epochs_sax_real=0)")
        return self._sax_real("sax_real", self._sax_real_train)

    def _sax_real(self, name: str, train: list[str], calibrate: list[str] | None = None):
        """The phantom + ACDC SAX recipe: fine-tuned from the phantom model on the phantom's frames plus these ACDC
        cines' ED/ES frames with their manual masks (`sax_real_share` of the training frames, cycled; at most
        `sax_real_frames` phantom frames), under the SAX recipe, monitored on phantom validation only, its decision
        calibrated on ACDC cines `calibrate` (None: ACDC's validation patients); reused, or made from the weights
        `sax_real_weights` trained."""
        acdc, p = self.acdc_cohort, self.p
        model, _ = self.make(name, self.store, ["SAX"], p["epochs_sax_real"], "sax_real",
                             self.out / "models" / f"seg_{name}.model", self._sax_real_settings(train, calibrate),
                             weights=lambda: self.sax_real_weights[name], calibrate_on=acdc, calibrate_ids=calibrate,
                             data_kw=lambda: dict(sax_real_data(p, self.real_kw, self.crop_kw),
                                                  extra=[acdc.read(i) for i in train]))
        return model

    @cached_property
    def crossfit(self) -> CrossFit:
        """The shipped SAX recipe (`_sax_real`) trained once per fold of ACDC's patients (`crossfit.acdc_folds`:
        the real SAX cohort's folds), each calibrated on the other folds' validation patients and segmenting its own
        fold, so every ACDC patient's labels come from a model that never saw them; the folds and models written for
        notebooks 02-08 (`crossfit.load`), the labels scored (`scores_acdc_oof`, `dice_acdc_oof`). `StudySkipped`
        with sax_real_folds=0 or epochs_sax_real=0."""
        if not self.crossfit_roles:
            raise StudySkipped(f"no cross-fitted SAX models (sax_real_folds={self.p['sax_real_folds']}, "
                               f"epochs_sax_real={self.p['epochs_sax_real']})")
        models, pred, entropy = {}, {}, {}
        with self.nb.timer("cross-fitted SAX models (s)"):
            for fold, (train, calibrate, test) in self.crossfit_roles.items():
                models[fold] = self._sax_real(f"sax_real_fold{fold}", train, calibrate)
                pred |= predict_store(models[fold], self.acdc_cohort, test, entropy=entropy, **self.reading)
        folds = self.crossfit_folds
        crossfit_write(self.nb.run_dir, folds, {f: f"models/seg_sax_real_fold{f}.model" for f in models}, "sax_real")
        return CrossFit(folds, models, self._acdc_scored(None, pred, "acdc_oof"), entropy)

    @cached_property
    def crossfit_folds(self) -> dict[str, int]:
        """ACDC subject -> its cross-fitting fold (`crossfit.acdc_folds`: the real SAX cohort's folds)."""
        sax = self.acdc_cohort.manifest().query("view == 'SAX'")
        k = self.p["sax_real_folds"]
        return acdc_folds(dict(zip(sax.subject, sax.group)), self._cine_folds(k), k, self.p["seed"])

    @cached_property
    def crossfit_roles(self) -> dict[int, tuple[list[str], list[str], list[str]]]:
        """fold -> the ACDC cines its network trains on, calibrates on and segments (`crossfit.fold_cines`); empty
        with sax_real_folds=0 or epochs_sax_real=0."""
        acdc, p = self.acdc_cohort, self.p
        if not p["sax_real_folds"] or not p["epochs_sax_real"]:
            return {}
        return fold_cines(acdc.manifest(), self.crossfit_folds, acdc.splits(), p["sax_real_folds"])

    def _cine_folds(self, k: int) -> dict[str, int]:
        """The real SAX cohort's folds by subject (empty without the cohort), which the cross-fitted folds follow."""
        try:
            _, subjects = self.real_sax(k)
        except StudySkipped as e:
            print(f"cross-fitted folds dealt over ACDC alone: {e}")
            return {}
        return dict(zip(subjects.subject, subjects.fold))

    def cross_fitted(self) -> pd.DataFrame:
        """Every ACDC patient segmented by the fold model that never saw them: Dice per structure at ED and ES, and
        patients per fold."""
        c = self.crossfit
        print(pd.Series(c.folds).value_counts().sort_index().rename_axis("fold").rename("patients").to_string())
        return c.scored.table

    @cached_property
    def sax_models(self) -> pd.DataFrame:
        """The phantom-only, ACDC-only and phantom + ACDC SAX models on the phantom's SAX validation and test cines,
        ACDC's validation patients (where a model and a schedule are chosen) and its held-out patients (written):
        which model a SAX Predictor should carry."""
        acdc = self.acdc_cohort
        models = {"sax": self.phantom_models.nets["sax"]}
        if (only := self.optional("acdc_model")) is not None:
            models["acdc"] = only.model
        if (tuned := self.optional("sax_real_model")) is not None:
            models["sax_real"] = tuned
        sets, known = sax_sets(self.store, acdc, self.phantom_test.pred, self.p["calibrate_cines"] or None,
                               self.acdc_held_out, self.held_out_preds, models)
        return self.nb.kept(model_table(models, sets, known, self.client), "dice_sax_models.csv", index=True)

    @cached_property
    def shipped_sax(self) -> str:
        """The SAX model the run's Predictor carries (`sax_predictor`): 'best' is the highest mean Dice on ACDC's
        validation patients among the models that keep the phantom within `phantom_margin` of the phantom model's
        validation Dice (notebooks 02-07 also find the heart in phantom cines); no held-out patient takes part."""
        p, choice = self.p, self.p["sax_predictor"]
        if self.optional("acdc_cohort") is None:
            return "sax"
        if choice != "best":
            return named_sax(choice, choice == "acdc" and self.optional("acdc_model") is not None,
                             choice == "real" and self.optional("sax_real_model") is not None)
        best, t = choose_sax(self.sax_models, p["phantom_margin"])
        print(f"SAX model chosen on ACDC validation (mean Dice; phantom validation within {p['phantom_margin']} of "
              f"the phantom model's): {best}")
        print(t.round(4).to_string())
        return best

    @cached_property
    def inference(self) -> pd.DataFrame:
        """The shipped SAX model on ACDC's validation patients as it decides (each structure's largest connected
        component, read round the heart or the frame's centre as `centred` says), with mirrored test-time
        augmentation, without the largest-component filter, read the other way round, and with the field of view
        moved `OFF_CENTRE_MM` off the heart both ways (mean Dice per structure; written): what each choice buys."""
        acdc = self.acdc_cohort
        table = inference_table(self._sax_model(self.shipped_sax), acdc, acdc.select(view="SAX", split="valid"),
                                bool(self.p["centred"]), OFF_CENTRE_MM, self.client)
        return self.nb.kept(table, "tta_acdc_validation.csv", index=True)

    def _sax_model(self, name: str):
        """A SAX model by its row name in `sax_models`."""
        return {"sax": lambda: self.phantom_models.nets["sax"], "acdc": lambda: self.acdc_model.model,
                "sax_real": lambda: self.sax_real_model}[name]()

    def sax_real(self) -> pd.DataFrame:
        """Each SAX model's Dice on the phantom's validation and test cines and ACDC's validation and held-out
        patients; the model the run ships and what mirroring adds on ACDC's validation patients."""
        print(f"the run's SAX segmenter: {self.shipped_sax!r}")
        print(self.inference.round(4).to_string())
        return self.sax_models

    # ------------------------------------------------------------ measures against their references

    @cached_property
    def phantom_measures(self) -> pd.DataFrame:
        """Table-1 measures of the phantom's test subjects from their segmentations (written)."""
        return self.nb.kept(subject_measures(self.store, self.phantom_test.pred), "measures_phantom.csv")

    def phantom_agreement(self) -> pd.DataFrame:
        """The phantom test subjects' measures against its generating values (written with the figure)."""
        meas = self.phantom_measures
        pairs = measure_pairs(meas, ref="model")
        if not pairs:
            raise StudySkipped(f"fewer than 3 test subjects with every view ({len(meas)} subjects)")
        agree = self.nb.kept(stats.agreement_table(meas, pairs, units=UNITS), "agreement_phantom.csv", index=True)
        self.figure(plots.agreement_figure(meas, pairs, units=UNITS), "01_agreement_phantom")
        return agree

    @property
    def shipped_oof(self) -> CrossFit | None:
        """The cross-fitted models where they are the shipped SAX model's recipe (phantom + ACDC), so their
        out-of-fold labels are its evidence; else None."""
        if self.optional("acdc_cohort") is None or self.shipped_sax != "sax_real":
            return None
        return self.optional("crossfit")

    @cached_property
    def acdc_measures(self) -> Agreed:
        """Every measure in the run folder's long shape for notebook 07 (the phantom's, and ACDC's where there is an
        ACDC store: every patient out of fold where the shipped model's recipe is cross-fitted, else the held-out
        patients of the shipped model, or of the ACDC-only one where the phantom model ships), and ACDC's measures
        against its ground-truth masks with those a report withholds (written); `StudySkipped` without ACDC (the
        phantom's rows written first)."""
        long = [from_table1(self.phantom_measures, "phantom", "segmentation", PHANTOM_REFERENCES)]
        acdc = self.optional("acdc_cohort")
        meas = None
        if acdc is not None:
            oof = self.shipped_oof  # every patient held out from the model that read them, where the run has them
            meas = self.nb.kept(acdc_measures(acdc, oof.scored.pred if oof is not None else self.shipped_held_out.pred,
                                              oof.folds if oof is not None else None,
                                              oof.entropy if oof is not None else None), "measures_acdc.csv")
            long.append(from_table1(meas, "acdc", "segmentation", {"ref": "ground-truth masks"}))
        self.nb.table(pd.concat(long, ignore_index=True), "measures_long")  # the phantom's rows even without ACDC
        if meas is None:
            raise StudySkipped("no ACDC store in this run (see `acdc`)")
        a = agreed(meas)
        self.nb.tables({"agreement_acdc": a.table, "withheld_acdc": a.withheld}, index=("agreement_acdc",))
        return a

    @cached_property
    def shipped_held_out(self) -> Scored:
        """ACDC's held-out patients segmented by the SAX model the run ships and scored (written as
        `dice_acdc_shipped`); the ACDC-only model's labels where the run ships the phantom one and has it, so the
        real measures are a real-trained model's."""
        name = "acdc" if self.shipped_sax == "sax" and self.optional("acdc_model") is not None else self.shipped_sax
        return self._acdc_scored(self._sax_model(name), self.held_out_preds[name], "acdc_shipped")

    def acdc_agreement(self) -> pd.DataFrame:
        """ACDC's held-out measures against its ground-truth masks, with the figure and the shipped model's best,
        median and worst held-out frames."""
        a, t = self.acdc_measures, self.shipped_held_out
        print(overshoot_line(a.measures))
        if len(a.withheld):  # kept in the agreement: a failure is part of the pathway's error
            print(f"{len(a.withheld)} measures a patient report withholds as measurement failures:\n"
                  f"{a.withheld.round(1).to_string(index=False)}")
        self._cases(self.acdc_cohort, t.pred, t.scores, "01_cases_acdc")
        shown = {k: a.pairs[k] for k in ("LVEDV", "LVEF", "RVEDV", "LVM") if k in a.pairs}
        self.figure(plots.agreement_figure(a.measures, shown, units=UNITS), "01_agreement_acdc")
        return a.table

    # ------------------------------------------------------------ long-axis cines of real hearts

    def _fit_lax_real(self, cines: list):
        """The long-axis model fine-tuned from the phantom one on the phantom's frames plus every 4CH frame of one
        demo subject (`lax_real_subject`) with its pseudo-labels, under the `lax_real` recipe (bias field, noise,
        blur, lower resolution, rotation), monitored on the phantom's validation frames only: the demo's other
        subject stays unseen; None when there is none to train. The 2CH pseudo-labels mark the LA alone (the rest
        is unlabelled, not background), so they are not trained on."""
        p = self.p
        train = [c for c in cines if c.subject == p["lax_real_subject"] and c.view == "4CH"]
        if not p["epochs_lax_real"] or not train:
            print(f"no fine-tuned long-axis model (epochs_lax_real={p['epochs_lax_real']}, "
                  f"{len(train)} demo 4CH cines of {p['lax_real_subject']!r})")
            return None
        extra = dict(frame_step=p["frame_step"], extra=train, extra_share=p["real_share"])
        settings = lax_real_settings(p, self.data_kw, self.model_kw, [c.cine_id for c in train],
                                     self.store.fingerprint())
        with self.nb.timer("long-axis fine-tuning on the demo (s)"):
            model, _ = self.make("lax_real", self.store, ["2CH", "4CH"], p["epochs_lax_real"], "lax_real",
                                 self.out / "models" / "seg_lax_real.model", settings, data_kw=extra,
                                 balance=p["balance_lax"], init=self.phantom_models.nets["lax"])
        return model

    @cached_property
    def real_lax_models(self) -> RealLax:
        """The long-axis models on the UK Biobank demo's 2CH and 4CH cines, every frame, against the demo's
        segmentations, a network's (Bai et al. 2018), so a pseudo-reference (its 2CH has the LA alone): the
        phantom-only model, and the one fine-tuned on one demo subject (`_fit_lax_real`) with its training subject
        marked; that model's phantom test Dice beside the phantom-only one's (all written); `StudySkipped` without
        the demo."""
        found = self.real_found(("2CH", "4CH"), "UK Biobank demo 2CH/4CH cines with segmentations", labelled=True)
        cines = {f"{c.subject}_{c.view}": c for s in found for c in s.cines}
        models = {"lax": self.phantom_models.nets["lax"]}
        if (tuned := self._fit_lax_real(list(cines.values()))) is not None:
            models["lax_real"] = tuned
        preds, sc, table = lax_scores(models, cines, self.p["lax_real_subject"])
        self.nb.tables({"scores_ukbb_pseudo": sc, "dice_ukbb_pseudo": table}, index=("dice_ukbb_pseudo",))
        on_phantom = self._phantom_after_fine_tuning(tuned) if tuned is not None else None
        return RealLax(models, cines, preds, sc, table, on_phantom)

    def real_lax(self) -> pd.DataFrame:
        """The long-axis models' Dice on the demo's cines against its pseudo-labels, with the best, median and worst
        frames of the subjects the shown model never trained on."""
        r = self.real_lax_models
        shown = list(r.models)[-1]  # the fine-tuned model where there is one
        held = r.scores[(r.scores.model == shown) & ~r.scores.trained_on]
        self._cases({k: c for k, c in r.cines.items() if k in set(held.cine_id)}, r.preds[shown], held,
                    "01_cases_ukbb", n=shown)
        return r.table

    def lax_fine_tuning_cost(self) -> pd.DataFrame:
        """Phantom test Dice of the fine-tuned long-axis model beside the phantom-only one's: what the real frames
        cost on the phantom; `StudySkipped` without a fine-tuned model."""
        on_phantom = self.real_lax_models.on_phantom
        if on_phantom is None:
            raise StudySkipped("no long-axis model fine-tuned on a demo subject in this run")
        return on_phantom.unstack("model")

    def intervals(self, agree: Agreed) -> dict[str, dict]:
        """90 % conformal intervals of the shipped model's measures from the residuals of patients no model that
        read them trained on (written with their coverage leaving each patient out, and each fold or split calibrated
        on the others): every ACDC patient out of fold where the run has cross-fitted models (CV+ style), else ACDC's
        validation and held-out patients read by the shipped model; what the report prints beside a patient's number."""
        acdc, meas = self.acdc_cohort, agree.measures
        if "fold" not in meas:  # no cross-fitted models: the shipped model's validation patients join its held-out
            valid = predict_store(self._sax_model(self.shipped_sax), acdc, acdc.select(view="SAX", split="valid"),
                                  **self.reading)
            meas = pd.concat([subject_measures(acdc, valid), meas], ignore_index=True)
        t, cover, scaling, record = sax_intervals(meas, agree.pairs)
        self.nb.table(t, "intervals.csv", index=True)
        print(t.round(3).to_string())
        if cover is not None:
            self.nb.table(cover, "interval_coverage.csv")
            print(cover[cover.measure == "LVEF"].round(3).to_string(index=False))
        if scaling is not None:
            self.nb.table(scaling, "interval_scaling.csv")
            print(scaling[scaling.group == "all"].round(3).to_string(index=False))
        return record

    def _phantom_after_fine_tuning(self, tuned) -> pd.Series:
        """Phantom test Dice of the fine-tuned long-axis model beside the phantom-only one's (written): what the
        real frames cost on the phantom."""
        t = self.phantom_test
        on_phantom = lax_on_phantom(tuned, self.store, t.pred, t.scores, self.reading)
        self.nb.table(on_phantom.unstack("model"), "dice_phantom_lax_models.csv", index=True)
        return on_phantom

    PAPER_FIGURES = ("01_agreement_phantom",)

    @classmethod
    def paper_figures(cls, run_dir):
        """Agreement of the segmentation measures with the phantom's truths."""
        f = run_dir / "01" / "measures_phantom.csv"
        if f.exists() and (pairs := measure_pairs(m := pd.read_csv(f), ref="model")):
            yield "01_agreement_phantom", plots.agreement_figure(m, pairs, units=UNITS)

    def headline_tables(self):
        """Phantom test Dice (every frame) per view, and ACDC Dice (ED, ES) of the cross-fitted models out of fold,
        the shipped, the ACDC-only and the phantom-only SAX models (those the run has), each asked for by name."""
        yield ("headline_dice_phantom", "segmentation: phantom test Dice (every frame)",
               dice_by_view(self.phantom_test.table))
        oof, table = self.optional("crossfit"), lambda scored: scored.table if scored is not None else None
        acdc = dice_by_model({"cross-fitted, every patient out of fold": table(oof and oof.scored),
                              "shipped, held-out patients": table(self.optional("shipped_held_out")),
                              "ACDC-only, held-out patients": table(self.optional("acdc_model")),
                              "phantom-only, every ACDC patient": table(self.optional("sim2real"))})
        if acdc is not None:
            yield "headline_dice_acdc", "segmentation: ACDC Dice (ED, ES) of patients each model never trained on", acdc

    def checks(self) -> tuple[pd.DataFrame, pd.Series]:
        """The Dice and measure targets (written); the `sax_predictor` SAX model and the `lax_predictor` long-axis
        model become the run's segmentation Predictor with the real-data checks behind them. Targets and step
        timings."""
        p, acdc, real = self.p, self.optional("acdc_cohort"), self.optional("real_lax_models")
        lax = "lax_real" if p["lax_predictor"] == "real" and real is not None and "lax_real" in real.models else "lax"
        sax, agree = self.shipped_sax, self.optional("acdc_measures")
        intervals = self.intervals(agree) if agree is not None else {}
        shipped_real = sax != "sax"  # an ACDC-trained SAX model, with held-out patients of its own
        n_real = sum(split == "train" for split in acdc.splits().values()) if shipped_real else 0
        ev = shipped_evidence(sax, lax, p["lax_real_subject"], self.phantom_test.table, self.optional("acdc_model"),
                              self.sim2real if acdc is not None else None, real,
                              self.sax_models.loc[(sax, "ACDC held-out")] if shipped_real else None,
                              len(self.acdc_held_out) if shipped_real else 0, self.shipped_oof, agree, intervals,
                              n_real, seed_for(p["seed"], "01", "out of fold"))
        targets = self.targets(ev.checks)
        print(f"the run's segmentation Predictor: SAX {sax!r} model, long-axis {lax!r} model")
        self.write_predictor(self._sax_model(sax), real.models[lax] if lax == "lax_real" else
                             self.phantom_models.nets["lax"], acdc if shipped_real else None, ev.line, **ev.provenance)
        self.nb.save_timings()
        return targets, pd.Series(self.nb.timings)

